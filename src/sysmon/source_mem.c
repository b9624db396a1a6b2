/* sysmon source "mem": /proc/meminfo in bytes (fields the kernel does not show are left out). */
#include <stdlib.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"

struct mem_state {
    const struct sb_sysmon_config *cfg;
    struct sb_buf text;
};

static int mem_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                    struct sb_err *err)
{
    struct mem_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    sb_buf_init(&st->text, 1u << 20);
    src->state = st;
    if (sb_sysmon_read_file(cfg->proc_root, "meminfo", &st->text) != 0)
        return sb_err_set(err, "cannot read '%s/meminfo'", cfg->proc_root);
    return 0;
}

static int mem_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                      struct sb_buf *out)
{
    struct mem_state *st = src->state;
    (void)tick;
    struct sb_meminfo m;
    struct sb_err err;
    if (sb_sysmon_read_file(st->cfg->proc_root, "meminfo", &st->text) != 0 ||
        sb_meminfo_parse(st->text.data, st->text.len, &m, &err) != 0)
        return -1;
    const struct {
        const char *name;
        long long v;
    } f[] = {{"MemTotal", m.mem_total},  {"MemFree", m.mem_free}, {"MemAvailable", m.mem_available},
             {"Buffers", m.buffers},     {"Cached", m.cached},    {"Dirty", m.dirty},
             {"Writeback", m.writeback}, {"Shmem", m.shmem},      {"SwapTotal", m.swap_total},
             {"SwapFree", m.swap_free}};
    int rc = sb_buf_adds(out, "\"mem\":{");
    bool first = true;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].v < 0)
            continue;
        rc |= sb_buf_addf(out, "%s\"%s\":%lld", first ? "" : ",", f[i].name, f[i].v);
        first = false;
    }
    rc |= sb_buf_adds(out, "}");
    return rc ? -1 : 0;
}

static void mem_close(struct sb_sysmon_source *src)
{
    struct mem_state *st = src->state;
    sb_buf_release(&st->text);
    free(st);
}

const struct sb_sysmon_source_ops sb_source_mem = {
    .name = "mem", .open = mem_open, .sample = mem_sample, .close = mem_close};
