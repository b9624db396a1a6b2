/* sysmon source "prom": placeholder until it is written (off, silently). */
#include "sb/sysmon.h"

static int prom_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                     struct sb_err *err)
{
    (void)src;
    (void)cfg;
    (void)err;
    return 1;
}

static int prom_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                       struct sb_buf *out)
{
    (void)src;
    (void)tick;
    (void)out;
    return -1;
}

const struct sb_sysmon_source_ops sb_source_prom = {
    .name = "prom", .open = prom_open, .sample = prom_sample, .close = NULL};
