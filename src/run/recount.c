/*
 * The run's counts and latency samples taken again from metrics.jsonl itself (see sb/engine.h).
 * The engine counts each request as it finishes, before its line reaches the disk; when the disk
 * fills, some of those lines are never written, and a summary from the engine's own counts would
 * report percentiles over records nobody can see. Reading the file back is the one way to count
 * exactly what was written, whichever loop's batch lost which lines; it is done only when lines
 * were lost, so an ordinary run never pays for it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sb/engine.h"
#include "sb/jsonl.h"
#include "sb/record.h"
#include "sb/util.h"

struct recount {
    struct sb_engine_result *res;
    long long records;
    struct sb_err *err;
};

/* The same accounting as the engine's finish_request, from one written line. */
static int on_line(char *line, size_t len, long lineno, void *arg)
{
    struct recount *rc = arg;
    struct sb_engine_result *res = rc->res;
    struct sb_record r;
    struct sb_err e;
    (void)lineno;
    if (sb_record_from_json(line, len, &r, &e) != 0)
        return 1; /* counted bad by the reader; not a record */
    rc->records++;
    sb_recstats_add(&res->rs, &r);
    if (r.warmup)
        res->warmup++;
    if (!r.ok) {
        res->errors[(int)r.error >= 0 && r.error < SB_ERRK_COUNT ? r.error : SB_ERRK_TRANSPORT]++;
        return 0;
    }
    res->ok++;
    sb_tput_add(&res->tput, (double)r.t_last_byte_ns / 1e9, r.output_tokens);
    if (r.warmup)
        return 0;
    if (!isnan(r.lat_ttft_ms))
        sb_hist_add(&res->ttft_ms, r.lat_ttft_ms);
    if (!isnan(r.lat_e2e_ms))
        sb_hist_add(&res->e2e_ms, r.lat_e2e_ms);
    if (res->ttft_ms.oom || res->e2e_ms.oom) {
        sb_err_set(rc->err, "out of memory counting the records of metrics.jsonl");
        return -1;
    }
    if (r.output_tokens > 0)
        res->output_tokens += r.output_tokens;
    return 0;
}

int sb_engine_result_recount(struct sb_engine_result *res, const char *metrics_path,
                             long long *records, struct sb_err *err)
{
    struct sb_engine_result fresh = *res;
    fresh.ok = fresh.warmup = fresh.output_tokens = 0;
    memset(fresh.errors, 0, sizeof(fresh.errors));
    sb_hist_init(&fresh.ttft_ms, 1e-3);
    sb_hist_init(&fresh.e2e_ms, 1e-3);
    sb_recstats_init(&fresh.rs);
    sb_tput_init(&fresh.tput, res->tput.from_s, res->tput.to_s);
    struct recount rc = {.res = &fresh, .err = err};
    sb_err_clear(err);
    struct sb_jsonl_stats st;
    if (sb_jsonl_read(metrics_path, on_line, &rc, &st, err) != 0) {
        sb_engine_result_release(&fresh);
        return -1;
    }
    sb_engine_result_release(res);
    *res = fresh;
    if (records)
        *records = rc.records;
    return 0;
}
