/*
 * The sysmon sampler (see sb/sysmon.h): absolute deadlines on a wall-clock-aligned grid, one JSON
 * line per tick, missed ticks written as such. Re-anchors every tick on CLOCK_REALTIME so the grid
 * stays on wall-clock multiples of the interval, and sleeps on CLOCK_MONOTONIC so clock steps do
 * not stretch or squeeze a tick. A tick's deadline is its grid time even when it is already past
 * (never "now"), so lateness is measured and written rather than absorbed into a drifting grid.
 * Within a tick the remote sources' GETs start first, the local sources are read while they run,
 * and the GETs get until the tick's scrape deadline (grid time + sb_sysmon_scrape_budget_ns()).
 */
#include "sb/sysmon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sb/jsonl.h"
#include "sb/scrape.h"
#include "sb/util.h"

static const struct sb_sysmon_source_ops *const all_sources[] = {
    &sb_source_cpu, &sb_source_mem,  &sb_source_psi,  &sb_source_disk,
    &sb_source_gpu, &sb_source_proc, &sb_source_prom, &sb_source_trtllm};

uint64_t sb_sysmon_next_grid(uint64_t real_ns, uint64_t interval_ns)
{
    return (real_ns / interval_ns + 1) * interval_ns;
}

uint64_t sb_sysmon_scrape_budget_ns(uint64_t interval_ns)
{
    uint64_t b = interval_ns / 5 * 4;
    return b < 2000000000ull ? b : 2000000000ull;
}

static void sleep_until(uint64_t mono_ns, volatile bool *stop)
{
    struct timespec ts = {(time_t)(mono_ns / 1000000000ull), (long)(mono_ns % 1000000000ull)};
    while (!*stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int add_ts(struct sb_buf *b, const char *key, uint64_t real_ns)
{
    return sb_buf_addf(b, "\"%s\":%llu.%06llu", key, (unsigned long long)(real_ns / 1000000000ull),
                       (unsigned long long)((real_ns % 1000000000ull) / 1000));
}

/* Appends the sample of src (a leading comma), or nothing when it has none this tick. */
static void add_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                       struct sb_buf *line)
{
    size_t mark = line->len;
    sb_buf_adds(line, ",");
    if (src->ops->sample(src, tick, line) != 0) {
        line->len = mark; /* absent this tick, never zero-filled */
        line->data[mark] = '\0';
    }
}

int sb_sysmon_run(const struct sb_sysmon_config *cfg, volatile bool *stop, struct sb_err *err)
{
    struct sb_sysmon_source src[SB_ARRAY_SIZE(all_sources)];
    size_t nsrc = SB_ARRAY_SIZE(all_sources);
    struct sb_scrape_pool pool;
    struct sb_jsonl_sink sink;
    char path[4200];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", cfg->out_dir);
    if (sb_jsonl_open(&sink, path, err) != 0)
        return -1;
    sb_scrape_pool_init(&pool);
    bool remote = false;
    for (size_t i = 0; i < nsrc; i++) {
        memset(&src[i], 0, sizeof(src[i]));
        src[i].ops = all_sources[i];
        src[i].pool = &pool;
        struct sb_err e;
        sb_err_clear(&e);
        int rc = src[i].ops->open(&src[i], cfg, &e);
        src[i].enabled = rc == 0;
        remote |= src[i].enabled && src[i].ops->start;
        if (rc < 0 || (rc > 0 && src[i].note[0])) /* an empty note: not asked for, no notice */
            fprintf(stderr, "sparkbench sysmon: %s: %s (source off)\n", src[i].ops->name,
                    rc > 0 ? src[i].note : e.msg);
    }
    uint64_t iv = (uint64_t)cfg->interval_ms * 1000000ull;
    uint64_t budget = sb_sysmon_scrape_budget_ns(iv);
    uint64_t start = sb_real_ns();
    uint64_t sched = sb_sysmon_next_grid(start, iv);
    uint64_t end = cfg->duration_s > 0 ? start + (uint64_t)(cfg->duration_s * 1e9) : 0;
    struct sb_buf line;
    sb_buf_init(&line, 1u << 20);
    int rc = 0;
    while (!*stop && (!end || sched <= end)) {
        /* Re-anchor on the wall clock every tick; sleep on the monotonic one. The deadline is
           the grid time itself, in the past when the previous tick overran. */
        uint64_t real = sb_real_ns(), mono = sb_mono_ns();
        uint64_t deadline = sched >= real ? mono + (sched - real) : mono - (real - sched);
        sleep_until(deadline, stop);
        if (*stop)
            break;
        uint64_t now_mono = sb_mono_ns(), now_real = sb_real_ns();
        sb_buf_reset(&line);
        if (now_mono >= deadline + iv) {
            /* Woke a whole interval late or more: the ticks it skipped are written as missed. */
            uint64_t missed = (now_mono - deadline) / iv;
            for (uint64_t k = 0; k < missed && (!end || sched <= end); k++) {
                sb_buf_adds(&line, "{");
                add_ts(&line, "ts", sched);
                sb_buf_adds(&line, ",\"missed\":true}\n");
                sched += iv;
                deadline += iv;
            }
            if (end && sched > end) {
                rc = sb_jsonl_write_lines(&sink, line.data, line.len, err);
                break;
            }
        }
        sb_buf_adds(&line, "{");
        add_ts(&line, "ts", sched);
        sb_buf_adds(&line, ",");
        add_ts(&line, "ts_actual", now_real);
        sb_buf_addf(&line, ",\"late_ms\":%.3f",
                    now_mono > deadline ? (double)(now_mono - deadline) / 1e6 : 0.0);
        const struct sb_sysmon_tick tick = {now_mono, sched, now_real};
        /* Remote GETs first, local readings while they run, then the GETs' results. */
        for (size_t i = 0; i < nsrc; i++)
            if (src[i].enabled && src[i].ops->start)
                src[i].ops->start(&src[i], &tick);
        for (size_t i = 0; i < nsrc; i++)
            if (src[i].enabled && !src[i].ops->start)
                add_sample(&src[i], &tick, &line);
        if (remote)
            sb_scrape_pool_run(&pool, deadline + budget);
        size_t nlate = 0;
        for (size_t i = 0; i < nsrc; i++) {
            if (!src[i].enabled || !src[i].ops->start)
                continue;
            src[i].late = false;
            add_sample(&src[i], &tick, &line);
            nlate += src[i].late;
        }
        if (nlate) {
            sb_buf_adds(&line, ",\"late_sources\":[");
            for (size_t i = 0, k = 0; i < nsrc; i++)
                if (src[i].enabled && src[i].late)
                    sb_buf_addf(&line, "%s\"%s\"", k++ ? "," : "", src[i].ops->name);
            sb_buf_adds(&line, "]");
        }
        sb_buf_adds(&line, "}\n");
        if (sb_jsonl_write_lines(&sink, line.data, line.len, err) != 0) {
            rc = -1;
            break;
        }
        sched += iv;
    }
    for (size_t i = 0; i < nsrc; i++)
        if (src[i].state && src[i].ops->close)
            src[i].ops->close(&src[i]);
    sb_scrape_pool_release(&pool);
    sb_buf_release(&line);
    struct sb_err cerr;
    if (sb_jsonl_close(&sink, &cerr) != 0 && rc == 0) {
        *err = cerr;
        rc = -1;
    }
    return rc;
}

int sb_sysmon_read_file(const char *root, const char *rel, struct sb_buf *out)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    sb_buf_reset(out);
    return sb_buf_add_file(out, path);
}
