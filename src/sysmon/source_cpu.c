/* sysmon source "cpu": /proc/stat deltas as percent of all CPU time (mpstat's arithmetic). */
#include <stdlib.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"

struct cpu_state {
    const struct sb_sysmon_config *cfg;
    struct sb_buf text;
    struct sb_proc_stat prev;
    bool have_prev;
};

static int cpu_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                    struct sb_err *err)
{
    struct cpu_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    sb_buf_init(&st->text, 1u << 20);
    src->state = st;
    if (sb_sysmon_read_file(cfg->proc_root, "stat", &st->text) != 0)
        return sb_err_set(err, "cannot read '%s/stat'", cfg->proc_root);
    return 0;
}

static int add_pct(struct sb_buf *b, const struct sb_cpu_pct *p)
{
    /* Guest time is taken out of user and nice (mpstat): the ten fields add up to 100. */
    return sb_buf_addf(b,
                       "{\"user\":%.2f,\"nice\":%.2f,\"system\":%.2f,\"iowait\":%.2f,\"irq\":%.2f,"
                       "\"softirq\":%.2f,\"steal\":%.2f,\"guest\":%.2f,\"guest_nice\":%.2f,"
                       "\"idle\":%.2f}",
                       p->user, p->nice, p->system, p->iowait, p->irq, p->softirq, p->steal,
                       p->guest, p->guest_nice, p->idle);
}

static int cpu_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                      struct sb_buf *out)
{
    struct cpu_state *st = src->state;
    (void)tick;
    struct sb_proc_stat cur = {0};
    struct sb_err err;
    if (sb_sysmon_read_file(st->cfg->proc_root, "stat", &st->text) != 0 ||
        sb_procstat_parse(st->text.data, st->text.len, &cur, &err) != 0) {
        sb_procstat_release(&cur);
        return -1;
    }
    int rc = -1;
    if (st->have_prev) {
        /* The first tick has no interval to measure over: it carries no cpu object. */
        struct sb_cpu_pct p;
        sb_cpu_pct(&st->prev.all, &cur.all, &p);
        rc = sb_buf_adds(out, "\"cpu\":") | add_pct(out, &p);
        if (rc == 0 && st->cfg->per_cpu && cur.ncpus == st->prev.ncpus) {
            rc |= sb_buf_adds(out, ",\"cpus\":[");
            for (int i = 0; i < cur.ncpus; i++) {
                sb_cpu_pct(&st->prev.cpus[i], &cur.cpus[i], &p);
                rc |= (i ? sb_buf_adds(out, ",") : 0) | add_pct(out, &p);
            }
            rc |= sb_buf_adds(out, "]");
        }
    }
    sb_procstat_release(&st->prev);
    st->prev = cur;
    st->have_prev = true;
    return rc ? -1 : 0;
}

static void cpu_close(struct sb_sysmon_source *src)
{
    struct cpu_state *st = src->state;
    sb_procstat_release(&st->prev);
    sb_buf_release(&st->text);
    free(st);
}

const struct sb_sysmon_source_ops sb_source_cpu = {
    .name = "cpu", .open = cpu_open, .sample = cpu_sample, .close = cpu_close};
