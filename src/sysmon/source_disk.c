/*
 * sysmon source "disk": /proc/diskstats for the chosen devices with iostat -x arithmetic. The
 * first device also appears as "nvme" with the Test Plan's Appendix B names (rps, rMBs,
 * r_await_ms, aqu_sz, util_pct); every device appears under "disks" by name. By default the
 * devices are the ones holding the output directory, resolved through sysfs (partition -> disk).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"

#define MAX_DISKS 16

struct disk_state {
    const struct sb_sysmon_config *cfg;
    struct sb_buf text;
    char names[MAX_DISKS][32];
    int ndisks;
    struct sb_disk_counters prev[MAX_DISKS];
    bool have_prev[MAX_DISKS];
    uint64_t prev_ns;
};

static int disk_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                     struct sb_err *err)
{
    if (cfg->no_disk)
        return 1; /* turned off: no notice */
    struct disk_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    sb_buf_init(&st->text, 4u << 20);
    src->state = st;
    if (cfg->disks && *cfg->disks) {
        const char *p = cfg->disks;
        while (*p && st->ndisks < MAX_DISKS) {
            size_t len = strcspn(p, ",");
            if (len > 0 && len < sizeof(st->names[0]))
                snprintf(st->names[st->ndisks++], sizeof(st->names[0]), "%.*s", (int)len, p);
            p += len + (p[len] == ',');
        }
    } else if (sb_blockdev_of_path(cfg->sys_root, cfg->out_dir, st->names[0], sizeof(st->names[0]),
                                   err) == 0) {
        st->ndisks = 1;
    } else {
        snprintf(src->note, sizeof(src->note),
                 "no block device holds '%.60s' (%.120s); name one with --disk", cfg->out_dir,
                 err->msg);
        return 1;
    }
    if (sb_sysmon_read_file(cfg->proc_root, "diskstats", &st->text) != 0)
        return sb_err_set(err, "cannot read '%s/diskstats'", cfg->proc_root);
    return 0;
}

static int disk_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                       struct sb_buf *out)
{
    struct disk_state *st = src->state;
    struct sb_disk_counters *all = NULL;
    size_t n = 0;
    struct sb_err err;
    if (sb_sysmon_read_file(st->cfg->proc_root, "diskstats", &st->text) != 0 ||
        sb_diskstats_parse(st->text.data, st->text.len, &all, &n, &err) != 0) {
        free(all);
        return -1;
    }
    double dt = st->prev_ns ? (double)(tick->mono_ns - st->prev_ns) / 1e9 : 0;
    int rc = 0, shown = 0;
    for (int d = 0; d < st->ndisks; d++) {
        const struct sb_disk_counters *c = sb_diskstats_find(all, n, st->names[d]);
        if (!c)
            continue;
        if (st->have_prev[d] && dt > 0) {
            struct sb_disk_rates r;
            sb_disk_rates(&st->prev[d], c, dt, &r);
            if (shown == 0) {
                rc |= sb_buf_addf(out,
                                  "\"nvme\":{\"dev\":\"%s\",\"rps\":%.2f,\"rMBs\":%.3f,"
                                  "\"r_await_ms\":%.3f,\"aqu_sz\":%.3f,\"util_pct\":%.2f,"
                                  "\"wps\":%.2f,\"wMBs\":%.3f,\"w_await_ms\":%.3f,"
                                  "\"rareq_sz_kb\":%.2f,\"wareq_sz_kb\":%.2f},\"disks\":{",
                                  st->names[d], r.rps, r.rmbs, r.r_await_ms, r.aqu_sz, r.util_pct,
                                  r.wps, r.wmbs, r.w_await_ms, r.rareq_sz_kb, r.wareq_sz_kb);
            }
            rc |= sb_buf_addf(out,
                              "%s\"%s\":{\"rps\":%.2f,\"wps\":%.2f,\"rMBs\":%.3f,\"wMBs\":%.3f,"
                              "\"r_await_ms\":%.3f,\"w_await_ms\":%.3f,\"rareq_sz_kb\":%.2f,"
                              "\"wareq_sz_kb\":%.2f,\"aqu_sz\":%.3f,\"util_pct\":%.2f}",
                              shown ? "," : "", st->names[d], r.rps, r.wps, r.rmbs, r.wmbs,
                              r.r_await_ms, r.w_await_ms, r.rareq_sz_kb, r.wareq_sz_kb, r.aqu_sz,
                              r.util_pct);
            shown++;
        }
        st->prev[d] = *c;
        st->have_prev[d] = true;
    }
    if (shown)
        rc |= sb_buf_adds(out, "}");
    st->prev_ns = tick->mono_ns;
    free(all);
    return shown && !rc ? 0 : -1;
}

static void disk_close(struct sb_sysmon_source *src)
{
    struct disk_state *st = src->state;
    sb_buf_release(&st->text);
    free(st);
}

const struct sb_sysmon_source_ops sb_source_disk = {
    .name = "disk", .open = disk_open, .sample = disk_sample, .close = disk_close};
