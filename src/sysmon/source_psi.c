/*
 * sysmon source "psi": /proc/pressure/{cpu,memory,io} — the kernel's avg10 and the change of the
 * stall total over the tick (µs). Old kernels have no PSI: the source says so once and stays off.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"

static const char *const kinds[] = {"cpu", "memory", "io"};

struct psi_state {
    const struct sb_sysmon_config *cfg;
    struct sb_buf text;
    struct sb_psi prev[3];
    bool have_prev;
};

static int psi_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                    struct sb_err *err)
{
    struct psi_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    sb_buf_init(&st->text, 65536);
    src->state = st;
    if (sb_sysmon_read_file(cfg->proc_root, "pressure/io", &st->text) != 0) {
        snprintf(src->note, sizeof(src->note),
                 "no pressure stall information in '%s/pressure' (kernel without PSI)",
                 cfg->proc_root);
        return 1;
    }
    return 0;
}

static int add_line(struct sb_buf *b, const char *which, const struct sb_psi_line *cur,
                    const struct sb_psi_line *prev, bool have_prev, bool *first)
{
    if (!cur->present)
        return 0;
    int rc = sb_buf_addf(b, "%s\"%s_avg10\":%.2f", *first ? "" : ",", which, cur->avg10);
    *first = false;
    if (have_prev && prev->present)
        rc |= sb_buf_addf(b, ",\"%s_total_us\":%llu", which,
                          cur->total_us >= prev->total_us ? cur->total_us - prev->total_us : 0ull);
    return rc;
}

static int psi_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                      struct sb_buf *out)
{
    struct psi_state *st = src->state;
    (void)tick;
    struct sb_psi cur[3];
    struct sb_err err;
    for (int k = 0; k < 3; k++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "pressure/%s", kinds[k]);
        if (sb_sysmon_read_file(st->cfg->proc_root, rel, &st->text) != 0 ||
            sb_psi_parse(st->text.data, st->text.len, &cur[k], &err) != 0)
            return -1;
    }
    int rc = sb_buf_adds(out, "\"psi\":{");
    for (int k = 0; k < 3; k++) {
        bool first = true;
        rc |= sb_buf_addf(out, "%s\"%s\":{", k ? "," : "", kinds[k]);
        rc |= add_line(out, "some", &cur[k].some, &st->prev[k].some, st->have_prev, &first);
        rc |= add_line(out, "full", &cur[k].full, &st->prev[k].full, st->have_prev, &first);
        rc |= sb_buf_adds(out, "}");
    }
    rc |= sb_buf_adds(out, "}");
    for (int k = 0; k < 3; k++)
        st->prev[k] = cur[k];
    st->have_prev = true;
    return rc ? -1 : 0;
}

static void psi_close(struct sb_sysmon_source *src)
{
    struct psi_state *st = src->state;
    sb_buf_release(&st->text);
    free(st);
}

const struct sb_sysmon_source_ops sb_source_psi = {
    .name = "psi", .open = psi_open, .sample = psi_sample, .close = psi_close};
