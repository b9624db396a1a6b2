/*
 * sysmon source "prom": scrapes every --prom URL each tick (all at once with the other remote
 * sources, connections kept open, each GET bounded by the tick's scrape deadline, min(0.8 x
 * interval, 2 s) after its grid time), and adds to the sysmon line
 *   "prom":{"scrapes":[{"url","ok","ms","samples","bad_lines"} or {"url","ok":false,"ms","error"}
 *                      (with "late":true when it missed the deadline and was abandoned)],
 *           "series":{...}, "raw":[{...} or null per URL]}
 * where series holds the well-known serving metrics of one static table (sb_prom_series_render in
 * sb/sysmon.h): gauges as their current value, counters as a rate over the time between this
 * URL's last two good scrapes (key suffix _per_s), histograms as p50/p99 of what they observed in
 * that time (_p50, _p99). raw keeps every series of every page, however many, compactly: per URL
 * an object {"name{labels}": value} of the series whose value changed since that URL's last good
 * page (all of them on its first good page), a series that vanished as null, NaN and infinities
 * as strings; replaying the objects from the first line rebuilds every page's values at any tick. A
 * series is taken from the first URL, in --prom order, that carries it (never summed over URLs,
 * which may be two ports of one server); within that page its label sets are summed, or averaged
 * for ratios. A series whose URL failed this tick, or a counter with no earlier scrape or that went
 * down (a reset), is null; a series no URL ever carried is left out.
 *
 * It also writes <out>/dynkv.jsonl (sb/dynkv.h), one line per tick on the sysmon grid, from the
 * first tick on which a scrape carries KV-tier series (KVBM's or the mock's ground truth), or from
 * the first tick with --dynkv. A failed GET never stops sysmon: it is recorded as failed in that
 * tick's line, and the first failure of each URL is noticed once on stderr.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/dynkv.h"
#include "sb/jsonl.h"
#include "sb/prom.h"
#include "sb/scrape.h"
#include "sb/sysmon.h"
#include "sb/tls.h"
#include "sb/util.h"

#define PROM_MAX_PAGE (64u << 20)

enum series_kind {
    GAUGE_SUM,  /* current value, label sets summed */
    GAUGE_MEAN, /* current value, label sets averaged (ratios and percentages) */
    COUNTER,    /* rate per second between the last two scrapes, label sets summed */
    HISTOGRAM,  /* p50 and p99 of the observations between the last two scrapes */
};

/*
 * The named fields: the JSON key, the names a series goes by (first found wins: renamed or
 * re-prefixed series), its kind. Names and types as each server's source defines them:
 * llama.cpp tools/server/server.cpp (and server-task.cpp since the 2025 split), vLLM
 * vllm/v1/metrics/loggers.py, SGLang python/sglang/srt/metrics/collector.py, TensorRT-LLM
 * tensorrt_llm/metrics/collector.py (prefixed trtllm_ by Dynamo), Dynamo's frontend and
 * worker, KVBM. Every series of a page, named here or not, is also kept raw (prom_raw).
 */
static const struct prom_series {
    const char *key;
    const char *names[3];
    enum series_kind kind;
} series_table[] = {
    /* Dynamo frontend */
    {"dynamo_frontend_inflight_requests", {"dynamo_frontend_inflight_requests"}, GAUGE_SUM},
    {"dynamo_frontend_queued_requests", {"dynamo_frontend_queued_requests"}, GAUGE_SUM},
    {"dynamo_frontend_requests_total", {"dynamo_frontend_requests_total"}, COUNTER},
    {"dynamo_frontend_output_tokens_total", {"dynamo_frontend_output_tokens_total"}, COUNTER},
    /* Dynamo worker KV stats */
    {"dynamo_component_kvstats_active_blocks",
     {"dynamo_component_kvstats_active_blocks"},
     GAUGE_SUM},
    {"dynamo_component_kvstats_total_blocks", {"dynamo_component_kvstats_total_blocks"}, GAUGE_SUM},
    {"dynamo_component_kvstats_gpu_cache_usage_percent",
     {"dynamo_component_kvstats_gpu_cache_usage_percent"},
     GAUGE_MEAN},
    {"dynamo_component_kvstats_gpu_prefix_cache_hit_rate",
     {"dynamo_component_kvstats_gpu_prefix_cache_hit_rate"},
     GAUGE_MEAN},
    /* vLLM (v1 engine; gpu_* are the names before 0.10) */
    {"vllm:num_requests_running", {"vllm:num_requests_running"}, GAUGE_SUM},
    {"vllm:num_requests_waiting", {"vllm:num_requests_waiting"}, GAUGE_SUM},
    {"vllm:kv_cache_usage_perc",
     {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"},
     GAUGE_MEAN},
    {"vllm:prefix_cache_queries_total",
     {"vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"},
     COUNTER},
    {"vllm:prefix_cache_hits_total",
     {"vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"},
     COUNTER},
    {"vllm:num_preemptions_total", {"vllm:num_preemptions_total"}, COUNTER},
    {"vllm:prompt_tokens_total", {"vllm:prompt_tokens_total"}, COUNTER},
    {"vllm:generation_tokens_total", {"vllm:generation_tokens_total"}, COUNTER},
    {"vllm:request_success_total", {"vllm:request_success_total"}, COUNTER},
    {"vllm:time_to_first_token_seconds", {"vllm:time_to_first_token_seconds"}, HISTOGRAM},
    {"vllm:inter_token_latency_seconds",
     {"vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"},
     HISTOGRAM},
    {"vllm:request_queue_time_seconds", {"vllm:request_queue_time_seconds"}, HISTOGRAM},
    {"vllm:e2e_request_latency_seconds", {"vllm:e2e_request_latency_seconds"}, HISTOGRAM},
    /* SGLang */
    {"sglang:num_running_reqs", {"sglang:num_running_reqs"}, GAUGE_SUM},
    {"sglang:num_queue_reqs", {"sglang:num_queue_reqs"}, GAUGE_SUM},
    {"sglang:num_used_tokens", {"sglang:num_used_tokens"}, GAUGE_SUM},
    {"sglang:max_total_num_tokens", {"sglang:max_total_num_tokens"}, GAUGE_SUM},
    {"sglang:token_usage", {"sglang:token_usage"}, GAUGE_MEAN},
    {"sglang:cache_hit_rate", {"sglang:cache_hit_rate"}, GAUGE_MEAN},
    {"sglang:gen_throughput", {"sglang:gen_throughput"}, GAUGE_SUM},
    {"sglang:prompt_tokens_total", {"sglang:prompt_tokens_total"}, COUNTER},
    {"sglang:generation_tokens_total", {"sglang:generation_tokens_total"}, COUNTER},
    {"sglang:time_to_first_token_seconds", {"sglang:time_to_first_token_seconds"}, HISTOGRAM},
    {"sglang:inter_token_latency_seconds", {"sglang:inter_token_latency_seconds"}, HISTOGRAM},
    /* llama.cpp (kv_cache_* exist only before the 2025 server rewrite) */
    {"llamacpp:requests_processing", {"llamacpp:requests_processing"}, GAUGE_SUM},
    {"llamacpp:requests_deferred", {"llamacpp:requests_deferred"}, GAUGE_SUM},
    {"llamacpp:kv_cache_usage_ratio", {"llamacpp:kv_cache_usage_ratio"}, GAUGE_MEAN},
    {"llamacpp:kv_cache_tokens", {"llamacpp:kv_cache_tokens"}, GAUGE_SUM},
    {"llamacpp:prompt_tokens_seconds", {"llamacpp:prompt_tokens_seconds"}, GAUGE_MEAN},
    {"llamacpp:predicted_tokens_seconds", {"llamacpp:predicted_tokens_seconds"}, GAUGE_MEAN},
    {"llamacpp:n_busy_slots_per_decode", {"llamacpp:n_busy_slots_per_decode"}, GAUGE_MEAN},
    {"llamacpp:n_tokens_max", {"llamacpp:n_tokens_max"}, GAUGE_SUM},
    {"llamacpp:prompt_tokens_total", {"llamacpp:prompt_tokens_total"}, COUNTER},
    {"llamacpp:prompt_tokens_cached_total", {"llamacpp:prompt_tokens_cached_total"}, COUNTER},
    {"llamacpp:prompt_seconds_total", {"llamacpp:prompt_seconds_total"}, COUNTER},
    {"llamacpp:tokens_predicted_total", {"llamacpp:tokens_predicted_total"}, COUNTER},
    {"llamacpp:tokens_predicted_seconds_total",
     {"llamacpp:tokens_predicted_seconds_total"},
     COUNTER},
    {"llamacpp:n_decode_total", {"llamacpp:n_decode_total"}, COUNTER},
    /* TensorRT-LLM, as Dynamo re-exports it (trtllm_ since 1.1, trtllm: before) */
    {"trtllm_request_success_total",
     {"trtllm_request_success_total", "trtllm:request_success_total"},
     COUNTER},
    {"trtllm_time_to_first_token_seconds",
     {"trtllm_time_to_first_token_seconds", "trtllm:time_to_first_token_seconds"},
     HISTOGRAM},
    {"trtllm_time_per_output_token_seconds",
     {"trtllm_time_per_output_token_seconds", "trtllm:time_per_output_token_seconds"},
     HISTOGRAM},
    {"trtllm_request_queue_time_seconds",
     {"trtllm_request_queue_time_seconds", "trtllm:request_queue_time_seconds"},
     HISTOGRAM},
    /* KVBM's sliding-window hit rates, under either prefix */
    {"kvbm_host_cache_hit_rate",
     {"kvbm_host_cache_hit_rate", "dynamo_kvbm_host_cache_hit_rate"},
     GAUGE_MEAN},
    {"kvbm_disk_cache_hit_rate",
     {"kvbm_disk_cache_hit_rate", "dynamo_kvbm_disk_cache_hit_rate"},
     GAUGE_MEAN},
};

/* One URL's snapshots: cur is this tick's (NULL when its GET failed), prev the last good one. */
struct prom_url {
    struct sb_prom_snapshot *prev, *cur;
    struct sb_prom_series_set raw; /* every series of the last good page, for the diff */
    bool has_raw;
    uint64_t prev_ns, cur_ns; /* CLOCK_MONOTONIC when each GET finished */
    bool noticed;             /* its first failure was reported */
};

struct prom_state {
    const struct sb_sysmon_config *cfg;
    struct sb_scraper scraper;
    struct prom_url *u;
    struct sb_jsonl_sink dynkv;
    bool dynkv_open, dynkv_failed;
    struct sb_buf line; /* one dynkv.jsonl line */
    struct sb_dynkv_scrape *pairs;
    struct sb_prom_page *pages;
};

static int prom_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                     struct sb_err *err)
{
    if (!cfg->prom_urls || !*cfg->prom_urls) {
        if (cfg->dynkv)
            snprintf(src->note, sizeof(src->note), "--dynkv needs at least one --prom URL");
        return 1; /* not asked for */
    }
    struct prom_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    src->state = st;
    st->cfg = cfg;
    sb_buf_init(&st->line, 1u << 16);
    /* A backstop only: the tick's scrape deadline (at most 0.8 x interval) comes first. */
    long timeout = cfg->interval_ms > 0 ? (long)cfg->interval_ms : 1;
    if (sb_scraper_init(&st->scraper, src->pool, cfg->prom_urls, timeout,
                        "text/plain;version=0.0.4;q=0.9,*/*;q=0.1", PROM_MAX_PAGE, err) != 0)
        return -1;
    st->u = calloc(st->scraper.n, sizeof(*st->u));
    st->pairs = calloc(st->scraper.n, sizeof(*st->pairs));
    st->pages = calloc(st->scraper.n, sizeof(*st->pages));
    if (!st->u || !st->pairs || !st->pages)
        return sb_err_set(err, "out of memory");
    return 0;
}

/* Sum (or mean) over the label sets of the first of names found in s; for a histogram, whether
 * s has buckets of it (*out 0), and *found the name that matched. */
static bool page_value(const struct sb_prom_snapshot *s, const struct prom_series *ps, double *out,
                       const char **found)
{
    char bucket[160];
    for (size_t k = 0; k < SB_ARRAY_SIZE(ps->names) && ps->names[k]; k++) {
        const char *want = ps->names[k];
        if (ps->kind == HISTOGRAM) {
            snprintf(bucket, sizeof(bucket), "%s_bucket", ps->names[k]);
            want = bucket;
        }
        double sum = 0;
        size_t n = 0, count = sb_prom_snapshot_count(s);
        for (size_t i = 0; i < count; i++) {
            const struct sb_prom_sample *x = sb_prom_snapshot_sample(s, i);
            if (strcmp(x->name, want) == 0) {
                sum += x->value;
                n++;
            }
        }
        if (n) {
            *out = ps->kind == GAUGE_MEAN ? sum / (double)n : sum;
            if (found)
                *found = ps->names[k];
            return true;
        }
    }
    return false;
}

static int add_number(struct sb_buf *b, double v)
{
    if (!isfinite(v))
        return sb_buf_adds(b, "null");
    if (v == floor(v) && fabs(v) < 1e15)
        return sb_buf_addf(b, "%.0f", v);
    return sb_buf_addf(b, "%.6g", v);
}

int sb_prom_series_render(const struct sb_prom_page *pages, size_t n, struct sb_buf *out)
{
    int rc = sb_buf_adds(out, "\"series\":{");
    bool first = true;
    for (size_t t = 0; t < SB_ARRAY_SIZE(series_table); t++) {
        const struct prom_series *ps = &series_table[t];
        const struct sb_prom_page *carrier = NULL;
        double v = NAN;
        for (size_t i = 0; i < n && !carrier; i++) {
            const struct sb_prom_snapshot *latest = pages[i].cur ? pages[i].cur : pages[i].prev;
            if (latest && page_value(latest, ps, &v, NULL))
                carrier = &pages[i];
        }
        if (!carrier)
            continue;
        const char *name = NULL;
        double value = NAN, was;
        bool have = carrier->cur && page_value(carrier->cur, ps, &value, &name);
        if (ps->kind == HISTOGRAM) {
            /* Observations since the last good page only: none before the second page. */
            double q[2] = {NAN, NAN};
            if (have && carrier->prev) {
                q[0] = sb_prom_histogram_quantile(carrier->prev, carrier->cur, name, 0.5);
                q[1] = sb_prom_histogram_quantile(carrier->prev, carrier->cur, name, 0.99);
            }
            for (int k = 0; k < 2; k++) {
                rc |=
                    sb_buf_addf(out, "%s\"%s_%s\":", first ? "" : ",", ps->key, k ? "p99" : "p50");
                rc |= add_number(out, q[k]);
                first = false;
            }
            continue;
        }
        if (have && ps->kind == COUNTER) {
            double dt = (double)(carrier->cur_ns - carrier->prev_ns) / 1e9;
            if (carrier->prev && page_value(carrier->prev, ps, &was, NULL) && value >= was &&
                dt > 0)
                value = (value - was) / dt;
            else
                value = NAN; /* no earlier scrape, or a reset */
        }
        if (!have)
            value = NAN;
        rc |= sb_buf_addf(out, "%s\"%s%s\":", first ? "" : ",", ps->key,
                          ps->kind == COUNTER ? "_per_s" : "");
        rc |= add_number(out, value);
        first = false;
    }
    return rc | sb_buf_adds(out, "}");
}

/* Appends "series" from this tick's pages. */
static int add_series(struct prom_state *st, struct sb_buf *out)
{
    for (size_t i = 0; i < st->scraper.n; i++)
        st->pages[i] =
            (struct sb_prom_page){st->u[i].prev, st->u[i].cur, st->u[i].prev_ns, st->u[i].cur_ns};
    return sb_prom_series_render(st->pages, st->scraper.n, out);
}

/*
 * Appends ,"raw":[...]: for each URL in --prom order, an object of the series of this tick's page
 * whose value changed since its last good page (all of them on its first), a vanished series as
 * null; null for a URL whose GET failed. A page whose series cannot be kept (out of memory) is
 * written whole next time.
 */
static int add_raw(struct prom_state *st, struct sb_buf *out)
{
    int rc = sb_buf_adds(out, ",\"raw\":[");
    for (size_t i = 0; i < st->scraper.n; i++) {
        struct prom_url *u = &st->u[i];
        if (i)
            rc |= sb_buf_adds(out, ",");
        struct sb_prom_series_set set;
        struct sb_err err;
        if (!u->cur || sb_prom_series_set_build(&set, u->cur, &err) != 0) {
            rc |= sb_buf_adds(out, "null");
            continue;
        }
        size_t changed;
        rc |= sb_prom_series_diff_json(u->has_raw ? &u->raw : NULL, &set, out, &changed);
        if (u->has_raw)
            sb_prom_series_set_release(&u->raw);
        u->raw = set;
        u->has_raw = true;
    }
    return rc | sb_buf_adds(out, "]");
}

/* Opens dynkv.jsonl once KV series show up (or at once with --dynkv). */
static void dynkv_maybe_open(struct prom_state *st)
{
    if (st->dynkv_open || st->dynkv_failed)
        return;
    bool want = st->cfg->dynkv;
    for (size_t i = 0; i < st->scraper.n && !want; i++)
        want = sb_dynkv_has_kv_series(st->u[i].cur);
    if (!want)
        return;
    char path[4200];
    struct sb_err err;
    snprintf(path, sizeof(path), "%s/dynkv.jsonl", st->cfg->out_dir);
    if (sb_jsonl_open(&st->dynkv, path, &err) != 0) {
        st->dynkv_failed = true;
        fprintf(stderr, "sparkbench sysmon: prom: %s (no dynkv.jsonl)\n", err.msg);
        return;
    }
    st->dynkv_open = true;
}

static void dynkv_write(struct prom_state *st, const struct sb_sysmon_tick *tick)
{
    struct sb_dynkv_line line;
    struct sb_err err;
    for (size_t i = 0; i < st->scraper.n; i++) {
        st->pairs[i].prev = st->u[i].prev;
        st->pairs[i].cur = st->u[i].cur;
    }
    sb_dynkv_compute(st->pairs, st->scraper.n, st->cfg->kv_block_size_bytes, &line);
    sb_buf_reset(&st->line);
    if (sb_dynkv_render(&line, tick->sched_real_ns, &st->line) != 0)
        return;
    if (sb_jsonl_write_lines(&st->dynkv, st->line.data, st->line.len, &err) != 0) {
        /* The sink refuses every later write: say it once and stop trying. */
        fprintf(stderr, "sparkbench sysmon: prom: %s (dynkv.jsonl stops here)\n", err.msg);
        sb_jsonl_close(&st->dynkv, &err);
        st->dynkv_open = false;
        st->dynkv_failed = true;
    }
}

static int prom_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                       struct sb_buf *out)
{
    struct prom_state *st = src->state;
    sb_scraper_finish(&st->scraper);
    src->late = st->scraper.nlate > 0;
    int rc = sb_buf_adds(out, "\"prom\":{\"scrapes\":[");
    for (size_t i = 0; i < st->scraper.n; i++) {
        struct sb_scrape *sc = &st->scraper.v[i];
        struct prom_url *u = &st->u[i];
        struct sb_err err;
        if (sc->ok && sb_prom_snapshot_parse(&u->cur, sc->body.data ? sc->body.data : "",
                                             sc->body.len, &err) != 0) {
            sc->ok = false;
            snprintf(sc->error, sizeof(sc->error), "%.200s", err.msg);
        }
        if (sc->ok)
            u->cur_ns = sc->done_ns;
        rc |= sb_buf_addf(out, "%s{\"url\":\"", i ? "," : "");
        rc |= sb_buf_add_json_escaped(out, sc->url, strlen(sc->url));
        rc |= sb_buf_addf(out, "\",\"ok\":%s,\"ms\":%.3f", sc->ok ? "true" : "false", sc->ms);
        if (sb_tls_insecure() && strncmp(sc->url, "https://", 8) == 0)
            rc |= sb_buf_adds(out, ",\"insecure\":true"); /* the certificate went unchecked */
        if (sc->ok) {
            rc |= sb_buf_addf(out, ",\"samples\":%zu,\"bad_lines\":%zu}",
                              sb_prom_snapshot_count(u->cur), sb_prom_snapshot_bad_lines(u->cur));
            continue;
        }
        if (sc->late)
            rc |= sb_buf_adds(out, ",\"late\":true");
        rc |= sb_buf_adds(out, ",\"error\":\"");
        rc |= sb_buf_add_json_escaped(out, sc->error, strlen(sc->error));
        rc |= sb_buf_adds(out, "\"}");
        if (!u->noticed) {
            u->noticed = true;
            fprintf(stderr,
                    "sparkbench sysmon: prom: cannot scrape '%s': %s (recorded as a failed "
                    "scrape; later failures are not reported)\n",
                    sc->url, sc->error);
        }
    }
    rc |= sb_buf_adds(out, "],");
    rc |= add_series(st, out);
    rc |= add_raw(st, out);
    rc |= sb_buf_adds(out, "}");

    dynkv_maybe_open(st);
    if (st->dynkv_open)
        dynkv_write(st, tick);

    /* This tick's good pages become the previous ones; a failed URL keeps its last good page. */
    for (size_t i = 0; i < st->scraper.n; i++) {
        struct prom_url *u = &st->u[i];
        if (!u->cur)
            continue;
        sb_prom_snapshot_free(u->prev);
        u->prev = u->cur;
        u->prev_ns = u->cur_ns;
        u->cur = NULL;
    }
    return rc ? -1 : 0;
}

static void prom_start(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick)
{
    (void)tick;
    struct prom_state *st = src->state;
    sb_scraper_start(&st->scraper);
}

static void prom_close(struct sb_sysmon_source *src)
{
    struct prom_state *st = src->state;
    if (!st)
        return;
    for (size_t i = 0; st->u && i < st->scraper.n; i++) {
        sb_prom_snapshot_free(st->u[i].prev);
        sb_prom_snapshot_free(st->u[i].cur);
        if (st->u[i].has_raw)
            sb_prom_series_set_release(&st->u[i].raw);
    }
    if (st->dynkv_open) {
        struct sb_err err;
        if (sb_jsonl_close(&st->dynkv, &err) != 0)
            fprintf(stderr, "sparkbench sysmon: prom: %s\n", err.msg);
    }
    sb_scraper_release(&st->scraper);
    sb_buf_release(&st->line);
    free(st->u);
    free(st->pairs);
    free(st->pages);
    free(st);
    src->state = NULL;
}

const struct sb_sysmon_source_ops sb_source_prom = {.name = "prom",
                                                    .open = prom_open,
                                                    .sample = prom_sample,
                                                    .close = prom_close,
                                                    .start = prom_start};
