/*
 * `sparkbench run`: resolve the options, prepare the run directory (config.yaml), drive the engine
 * into metrics.jsonl, then write run.json and print the summary. Picks the exit code: 0 done,
 * 1 a fatal error (what was written stays; records a full disk refused are counted as lost and
 * left out of the summary) or no run.json, 2 bad usage, 3 the run measured too little: no request
 * succeeded, the error share exceeded --max-error-rate, or nothing could connect for
 * --connect-timeout-s (one line on stderr says which), 130/143 stopped by SIGINT/SIGTERM.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "sb/analyze_out.h"
#include "sb/build_info.h"
#include "sb/cmd.h"
#include "sb/engine.h"
#include "sb/jsonl.h"
#include "sb/openai.h"
#include "sb/run.h"
#include "sb/procfs.h"
#include "sb/perf_metrics.h"
#include "sb/server_cache.h"
#include "sb/stats.h"
#include "sb/sysmon.h"
#include "sb/util.h"
#include "sb/tokenizer.h"
#include "sb/sessions.h"
#include "sb/trace.h"
#include "sb/workload.h"
#include "sb/lora_select.h"
#include "sb/tls.h"

static void usage(FILE *f)
{
    fputs("usage: sparkbench run --endpoint URL [options]\n\n"
          "Drives an OpenAI-compatible endpoint and writes one record per request to\n"
          "<results-dir>/<run_id>/metrics.jsonl, with config.yaml and run.json beside it.\n"
          "Closed loop by default (--concurrency users, each sending its next request when the\n"
          "last one ends); --rate R switches to an open loop with R arrivals per second.\n"
          "Latencies are measured from each request's intended send time.\n\n"
          "options:\n",
          f);
    sb_opt_print_help(sb_run_options, sb_run_noptions, f);
}

/* Keeps letters, digits, '.', '_' and '-': a run id is a directory name. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            *s = '-';
}

/* The full endpoint URL and its API: from the path, or --api appended to a bare base URL. */
static int resolve_endpoint(const struct sb_run_config *cfg, char *url, size_t cap,
                            enum sb_api *api, struct sb_err *err)
{
    if (!cfg->endpoint || !*cfg->endpoint)
        return sb_err_set(err, "missing --endpoint (e.g. http://127.0.0.1:8355/v1/completions)");
    if (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0)
        return sb_err_set(err, "endpoint '%s' must start with http:// or https://", cfg->endpoint);
    enum sb_api from_url;
    if (sb_openai_api_from_url(cfg->endpoint, &from_url) == 0) {
        if ((cfg->api == SB_API_CHOICE_CHAT && from_url != SB_API_CHAT) ||
            (cfg->api == SB_API_CHOICE_COMPLETIONS && from_url != SB_API_COMPLETIONS))
            return sb_err_set(err, "--api %s contradicts the endpoint path '%s'",
                              cfg->api == SB_API_CHOICE_CHAT ? "chat" : "completions",
                              cfg->endpoint);
        *api = from_url;
        snprintf(url, cap, "%s", cfg->endpoint);
        return 0;
    }
    *api = cfg->api == SB_API_CHOICE_CHAT ? SB_API_CHAT : SB_API_COMPLETIONS;
    const char *suffix = *api == SB_API_CHAT ? "/v1/chat/completions" : "/v1/completions";
    size_t len = strlen(cfg->endpoint);
    while (len > 0 && cfg->endpoint[len - 1] == '/')
        len--;
    const char *host_end = strstr(cfg->endpoint, "://");
    host_end = host_end ? strchr(host_end + 3, '/') : NULL;
    if (host_end && (size_t)(host_end - cfg->endpoint) < len)
        return sb_err_set(err,
                          "endpoint path of '%s' names no API: use .../v1/completions or "
                          ".../v1/chat/completions, or a bare http://host:port with --api",
                          cfg->endpoint);
    snprintf(url, cap, "%.*s%s", (int)len, cfg->endpoint, suffix);
    return 0;
}

/* Bytes set aside for run.json (3-4 KiB in practice; more with long LoRA lists). */
#define RUN_JSON_RESERVE (64 * 1024)

/* config.yaml, rendered in memory and written atomically (never left empty or half-written). */
static int write_config(const struct sb_run_config *cfg, const char *dir, struct sb_err *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return sb_err_errno(err, errno, "cannot write '%s'", path);
    fprintf(f, "# Resolved configuration of this run (sparkbench %s); secrets are never written.\n",
            SB_VERSION);
    int rc = sb_opt_write_yaml(sb_run_options, sb_run_noptions, cfg, f);
    if (fclose(f) != 0 || rc != 0)
        rc = sb_err_errno(err, errno ? errno : ENOMEM, "cannot write '%s'", path);
    else
        rc = sb_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

static void iso_time(uint64_t real_ns, char *buf, size_t cap)
{
    time_t t = (time_t)(real_ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03uZ", base, (unsigned)((real_ns / 1000000ull) % 1000));
}

static double real_of(const struct sb_engine_result *res, uint64_t mono)
{
    return ((double)res->anchor_real_ns + ((double)mono - (double)res->anchor_mono_ns)) / 1e9;
}

static void add_summary(cJSON *o, const char *name, const struct sb_hist *h)
{
    struct sb_summary s;
    sb_hist_summarize(h, &s);
    cJSON *j = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(j, "n", (double)s.n);
    const struct {
        const char *k;
        double v;
    } f[] = {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90},
             {"p95", s.p95},   {"p99", s.p99}, {"max", s.max}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(f); i++) {
        if (isnan(f[i].v))
            cJSON_AddNullToObject(j, f[i].k);
        else
            cJSON_AddNumberToObject(j, f[i].k, f[i].v);
    }
}

/* What the records say beyond latencies: the load actually carried and the server's prompt
   counts (sb/recstats.h), worked out once for run.json and the printed warning. */
struct record_facts {
    double inflight_mean;        /* mean requests in flight over the measurement window */
    double server_prompt_tokens; /* median prompt_tokens the server reported (NAN: none) */
    bool server_truncated;       /* that median is far below what was sent (sb_prompt_truncated) */
    long long truncated_records; /* measured ok records marked server_truncated */
    long long prompt_records;    /* measured ok records with a prompt_tokens */
};

static void record_facts_of(struct sb_engine_result *er, const struct sb_workload *w,
                            struct record_facts *f)
{
    f->inflight_mean =
        sb_recstats_inflight_mean(&er->rs, er->t_measure_start_ns, er->t_measure_end_ns);
    f->prompt_records = (long long)er->rs.prompt_tokens.n;
    f->truncated_records = er->rs.truncated;
    f->server_prompt_tokens = sb_recstats_prompt_tokens_median(&er->rs);
    f->server_truncated =
        !isnan(f->server_prompt_tokens) &&
        sb_prompt_truncated((long long)llround(f->server_prompt_tokens),
                            w->exact_tokens > 0 ? w->exact_tokens : w->est_tokens);
}

/* What reached metrics.jsonl: the records written, and those lost (a full disk) and why. */
struct record_loss {
    long long written, lost;
    char why[4400]; /* names metrics.jsonl, whose path may be long */
};

/* What the server's own cache was before and after the run, and what cleared it. */
struct server_side {
    bool reset_asked, state_read;
    struct sb_cache_reset reset;
    struct sb_cache_state start, end;
    bool perf_asked; /* --server-perf-metrics */
    struct sb_perf_join perf;
    char perf_error[600]; /* "" when the join was done */
};

/* --server-perf-metrics: TensorRT-LLM's per-request timings into the records (sb/perf_metrics.h).
   Never fails the run: what happened goes to run.json and one line. */
static void join_perf_metrics(const char *base, const char *mpath, struct server_side *ss,
                              bool quiet)
{
    ss->perf_asked = true;
    struct sb_buf body;
    struct sb_perf_table t = {0};
    struct sb_err err = {0};
    if (sb_perf_metrics_fetch(base, 30, &body, &err) == 0 &&
        sb_perf_metrics_parse(body.data, body.len, &t, &err) == 0 &&
        sb_perf_join_file(mpath, &t, &ss->perf, &err) == 0) {
        if (!quiet)
            printf("server perf metrics: %lld entries, %lld of %lld records joined\n",
                   ss->perf.entries, ss->perf.matched, ss->perf.records);
        if (ss->perf.matched == 0)
            snprintf(ss->perf_error, sizeof(ss->perf_error),
                     "no entry matched a record's response id (streamed TensorRT-LLM "
                     "responses say chatcmpl-<request_id>; non-streaming ones carry a random id)");
    } else {
        snprintf(ss->perf_error, sizeof(ss->perf_error), "%s", err.msg);
    }
    if (ss->perf_error[0])
        fprintf(stderr, "sparkbench run: warning: --server-perf-metrics: %s\n", ss->perf_error);
    sb_perf_table_release(&t);
    sb_buf_release(&body);
}

static void add_cache_state(cJSON *o, const char *key, const struct sb_cache_state *st)
{
    cJSON *c = cJSON_AddObjectToObject(o, key);
    if (!st->read) {
        cJSON_AddNullToObject(c, "usage_ratio");
        cJSON_AddStringToObject(c, "error", st->error);
        return;
    }
    cJSON_AddStringToObject(c, "source", st->source);
    cJSON_AddStringToObject(c, "series", st->series);
    cJSON_AddItemToObject(c, "usage_ratio", sb_json_num_or_null(st->usage_ratio));
    cJSON_AddItemToObject(c, "cached_tokens", sb_json_num_or_null(st->cached_tokens));
}

/* "http://host:port" of an endpoint URL: where the server's own routes live. */
static void base_of(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - url) : strlen(url);
    snprintf(out, cap, "%.*s", (int)n, url);
}

/* run.json's "lora": the list, how adapters were picked and named, and requests per adapter. */
static void add_lora(cJSON *o, const struct sb_engine_params *ep, const struct sb_run_config *cfg)
{
    const struct sb_lora_list *l = ep->lora_list;
    long long *counts = calloc(l->n, sizeof(*counts));
    if (!counts)
        return;
    sb_lora_selector_counts(ep->lora, counts);
    cJSON *lo = cJSON_AddObjectToObject(o, "lora");
    cJSON_AddStringToObject(lo, "list", l->file);
    cJSON_AddStringToObject(lo, "mode", ep->lora_mode == SB_LORA_MODE_TRTLLM ? "trtllm" : "model");
    cJSON_AddStringToObject(lo, "select", cfg->lora_select);
    cJSON *arr = cJSON_AddArrayToObject(lo, "adapters");
    for (size_t i = 0; i < l->n; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", l->a[i].name);
        if (l->a[i].id >= 0)
            cJSON_AddNumberToObject(a, "id", (double)l->a[i].id);
        else
            cJSON_AddNullToObject(a, "id");
        if (l->a[i].path)
            cJSON_AddStringToObject(a, "path", l->a[i].path);
        else
            cJSON_AddNullToObject(a, "path");
        cJSON_AddNumberToObject(a, "requests", (double)counts[i]);
        cJSON_AddItemToArray(arr, a);
    }
    free(counts);
}

/* run.json "trace": what was replayed and what its own oracle says of it (sb/trace.h). */
static void add_trace_json(cJSON *o, const struct sb_workload *w, const struct sb_run_config *cfg)
{
    size_t n = 0, capped = 0;
    const struct sb_trace *t = sb_workload_trace_of(w, &n, &capped);
    if (!t)
        return;
    cJSON *j = cJSON_AddObjectToObject(o, "trace");
    cJSON_AddStringToObject(j, "file", t->path);
    cJSON_AddStringToObject(j, "sha256", t->sha256);
    cJSON_AddNumberToObject(j, "requests", (double)n);
    cJSON_AddNumberToObject(j, "lines", (double)t->n);
    cJSON_AddNumberToObject(j, "speed", cfg->trace_speed);
    cJSON_AddNumberToObject(j, "max_gap_s", cfg->trace_max_gap_s);
    cJSON_AddNumberToObject(j, "capped_gaps", (double)capped);
    cJSON_AddNumberToObject(j, "block_tokens", (double)t->block_tokens);
    cJSON_AddNumberToObject(j, "oracle_hit_tokens", (double)t->oracle_hit_tokens);
    cJSON_AddNumberToObject(j, "input_tokens", (double)t->input_tokens);
    cJSON_AddItemToObject(j, "oracle_hit_ratio",
                          sb_json_num_or_null(t->input_tokens > 0 ? (double)t->oracle_hit_tokens /
                                                                        (double)t->input_tokens
                                                                  : NAN));
    cJSON_AddBoolToObject(j, "force_output", cfg->trace_force_output == SB_TRACE_OUTPUT_ON);
}

static int write_run_json(const char *dir, const char *run_id, const char *url, int argc,
                          char **argv, const struct sb_engine_result *res, uint64_t wall_start,
                          uint64_t wall_end, const struct sb_workload *w,
                          const struct record_loss *loss, const struct server_side *ss,
                          const struct sb_run_config *cfg, const struct record_facts *facts,
                          const struct sb_engine_params *ep, struct sb_err *err)
{
    cJSON *o = cJSON_CreateObject();
    char t[64];
    cJSON_AddStringToObject(o, "run_id", run_id);
    cJSON_AddStringToObject(o, "endpoint", url);
    cJSON_AddBoolToObject(o, "tls_insecure", cfg->insecure);
    iso_time(wall_start, t, sizeof(t));
    cJSON_AddStringToObject(o, "start_time", t);
    iso_time(wall_end, t, sizeof(t));
    cJSON_AddStringToObject(o, "end_time", t);
    cJSON_AddNumberToObject(o, "start_ts", real_of(res, res->t_start_ns));
    cJSON_AddNumberToObject(o, "measure_start_ts", real_of(res, res->t_measure_start_ns));
    cJSON_AddNumberToObject(o, "measure_end_ts", real_of(res, res->t_measure_end_ns));
    cJSON_AddNumberToObject(o, "end_ts", real_of(res, res->t_end_ns));
    cJSON *tp = cJSON_AddObjectToObject(o, "throughput");
    cJSON_AddStringToObject(tp, "definition",
                            "ok requests whose last byte arrived in [window_start, window_end): "
                            "the sending period after ramp-up and warm-up, without the drain");
    cJSON_AddNumberToObject(tp, "window_start_mono_ns", (double)res->t_measure_start_ns);
    cJSON_AddNumberToObject(tp, "window_end_mono_ns", (double)res->t_measure_end_ns);
    cJSON_AddNumberToObject(tp, "window_s", sb_tput_window_s(&res->tput));
    cJSON_AddNumberToObject(tp, "completed", (double)res->tput.completed);
    cJSON_AddNumberToObject(tp, "output_tokens", (double)res->tput.output_tokens);
    cJSON_AddItemToObject(tp, "req_s", sb_json_num_or_null(sb_tput_req_s(&res->tput)));
    cJSON_AddItemToObject(tp, "tok_s", sb_json_num_or_null(sb_tput_tok_s(&res->tput)));
    cJSON *anchor = cJSON_AddObjectToObject(o, "clock_anchor");
    cJSON_AddNumberToObject(anchor, "monotonic_ns", (double)res->anchor_mono_ns);
    cJSON_AddNumberToObject(anchor, "realtime_ns", (double)res->anchor_real_ns);
    struct utsname u;
    if (uname(&u) == 0) {
        cJSON *h = cJSON_AddObjectToObject(o, "host");
        cJSON_AddStringToObject(h, "name", u.nodename);
        cJSON_AddStringToObject(h, "kernel", u.release);
        cJSON_AddStringToObject(h, "machine", u.machine);
        cJSON_AddNumberToObject(h, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    }
    cJSON *v = cJSON_AddObjectToObject(o, "versions");
    cJSON_AddStringToObject(v, "sparkbench", SB_VERSION);
    cJSON_AddStringToObject(v, "git", SB_GIT_REV);
    cJSON_AddStringToObject(v, "libcurl", curl_version_info(CURLVERSION_NOW)->version);
    cJSON_AddStringToObject(v, "cjson", cJSON_Version());
    cJSON *cmd = cJSON_AddArrayToObject(o, "command");
    cJSON_AddItemToArray(cmd, cJSON_CreateString("sparkbench"));
    for (int i = 0; i < argc; i++)
        cJSON_AddItemToArray(cmd, cJSON_CreateString(argv[i]));
    cJSON *wl = cJSON_AddObjectToObject(o, "prompt");
    cJSON_AddStringToObject(wl, "source", w->source ? w->source : "");
    cJSON_AddNumberToObject(wl, "bytes", (double)w->prompt_len);
    cJSON_AddNumberToObject(wl, "estimated_tokens", (double)w->est_tokens);
    cJSON_AddBoolToObject(wl, "truncated", w->truncated);
    /* Where the run's token counts came from, and the exact count of the base prompt. */
    char src[4200];
    if (w->tok)
        snprintf(src, sizeof(src), "tokenizer %s", sb_tokenizer_path(w->tok));
    else
        snprintf(src, sizeof(src), "estimate bytes/4");
    cJSON_AddStringToObject(wl, "tokens_src", src);
    cJSON_AddNumberToObject(wl, "context_tokens_nominal", (double)cfg->context_tokens);
    cJSON_AddItemToObject(wl, "exact_tokens",
                          w->exact_tokens >= 0 ? cJSON_CreateNumber((double)w->exact_tokens)
                                               : cJSON_CreateNull());
    /* The first request's server count less the client's: BOS handling on completions, the
       chat template's overhead on chat (the client cannot run the Jinja template). */
    if (res->rs.first_seq > 0) {
        cJSON_AddNumberToObject(wl, "server_minus_client_tokens", (double)res->rs.first_diff);
        if (cfg->api == SB_API_CHOICE_CHAT || strstr(url, "/chat/"))
            cJSON_AddNumberToObject(wl, "chat_template_overhead_tokens",
                                    (double)res->rs.first_diff);
    }
    if (w->trunc_from >= 0) {
        cJSON_AddNumberToObject(wl, "truncated_from_tokens", (double)w->trunc_from);
        cJSON_AddNumberToObject(wl, "truncated_to_tokens", (double)w->trunc_to);
    }
    /* What the server counted: far below the estimate means it cut the prompt silently. */
    cJSON_AddItemToObject(wl, "server_prompt_tokens",
                          sb_json_num_or_null(facts->server_prompt_tokens));
    cJSON_AddBoolToObject(wl, "server_truncated", facts->server_truncated);
    cJSON_AddNumberToObject(wl, "server_truncated_records", (double)facts->truncated_records);
    cJSON_AddNumberToObject(wl, "server_counted_records", (double)facts->prompt_records);
    cJSON_AddStringToObject(wl, "server_truncated_rule",
                            w->tok ? "median server prompt_tokens below 50 % of exact_tokens"
                                   : "median server prompt_tokens below 50 % of estimated_tokens "
                                     "(bytes/4)");
    /* The load: closed loop has users, open loop a rate and a cap; both have the in-flight
       count measured from the records' [t_send, t_last_byte] over the measurement window. */
    bool open_loop = cfg->rate > 0 || w->ops->arrival_ns;
    cJSON *ld = cJSON_AddObjectToObject(o, "load");
    cJSON_AddStringToObject(ld, "mode", open_loop ? "open" : "closed");
    cJSON_AddItemToObject(ld, "concurrency",
                          sb_json_num_or_null(open_loop ? NAN : (double)cfg->concurrency));
    cJSON_AddItemToObject(ld, "max_inflight",
                          sb_json_num_or_null(open_loop ? (double)cfg->max_inflight : NAN));
    cJSON_AddItemToObject(ld, "rate", sb_json_num_or_null(cfg->rate > 0 ? cfg->rate : NAN));
    add_trace_json(o, w, cfg);
    cJSON_AddItemToObject(o, "inflight_mean", sb_json_num_or_null(facts->inflight_mean));
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    long long errors = 0;
    for (int k = 1; k < SB_ERRK_COUNT; k++)
        errors += res->errors[k];
    cJSON_AddNumberToObject(c, "sent", (double)res->sent);
    cJSON_AddNumberToObject(c, "ok", (double)res->ok);
    cJSON_AddNumberToObject(c, "errors", (double)errors);
    cJSON_AddNumberToObject(c, "warmup", (double)res->warmup);
    cJSON_AddNumberToObject(c, "not_sent", (double)res->not_sent);
    cJSON_AddNumberToObject(c, "retried", (double)res->retried);
    cJSON_AddNumberToObject(c, "records_written", (double)loss->written);
    cJSON_AddNumberToObject(c, "records_lost", (double)loss->lost);
    cJSON *ek = cJSON_AddObjectToObject(c, "errors_by_kind");
    for (int k = 1; k < SB_ERRK_COUNT; k++)
        cJSON_AddNumberToObject(ek, sb_error_kind_name((enum sb_error_kind)k),
                                (double)res->errors[k]);
    cJSON *lag = cJSON_AddObjectToObject(o, "client_lag");
    long long measured = res->sent - res->warmup;
    cJSON_AddNumberToObject(lag, "late_sends", (double)res->late_sends);
    cJSON_AddNumberToObject(lag, "measured_sends", (double)measured);
    cJSON_AddNumberToObject(lag, "max_sched_delay_ms", res->max_sched_delay_ms);
    cJSON_AddBoolToObject(
        lag, "fell_behind",
        sb_client_fell_behind(res->late_sends, measured, res->max_sched_delay_ms));
    add_summary(o, "ttft_ms", &res->ttft_ms);
    add_summary(o, "e2e_ms", &res->e2e_ms);
    if (ss->reset_asked || ss->state_read) {
        cJSON *sc = cJSON_AddObjectToObject(o, "server_cache");
        if (ss->reset_asked) {
            cJSON *r = cJSON_AddObjectToObject(sc, "reset");
            cJSON_AddStringToObject(r, "method", ss->reset.method);
            cJSON_AddBoolToObject(r, "done", ss->reset.done);
            cJSON_AddStringToObject(r, "detail", ss->reset.detail);
        }
        if (ss->state_read) {
            add_cache_state(sc, "start", &ss->start);
            add_cache_state(sc, "end", &ss->end);
        }
    }
    if (ss->perf_asked) {
        cJSON *pm = cJSON_AddObjectToObject(o, "server_perf_metrics");
        cJSON_AddNumberToObject(pm, "entries", (double)ss->perf.entries);
        cJSON_AddNumberToObject(pm, "records", (double)ss->perf.records);
        cJSON_AddNumberToObject(pm, "matched", (double)ss->perf.matched);
        if (ss->perf_error[0])
            cJSON_AddStringToObject(pm, "error", ss->perf_error);
        else
            cJSON_AddNullToObject(pm, "error");
    }
    if (ep->lora)
        add_lora(o, ep, cfg);
    if (w->ops && w->ops->state_json)
        w->ops->state_json(w, o);
    cJSON_AddStringToObject(o, "exit_reason", sb_exit_reason_name(res->reason));
    if (res->fatal_msg[0])
        cJSON_AddStringToObject(o, res->reason == SB_EXIT_FATAL ? "fatal_error" : "stop_message",
                                res->fatal_msg);
    if (loss->lost > 0)
        cJSON_AddStringToObject(o, "records_lost_reason", loss->why);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char path[4200];
    snprintf(path, sizeof(path), "%s/run.json", dir);
    /* Atomically: a full disk leaves the previous run.json (or none), never an empty one. */
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX);
    int rc;
    if (!text || sb_buf_adds(&b, text) != 0 || sb_buf_adds(&b, "\n") != 0)
        rc = sb_err_set(err, "cannot write '%s': out of memory", path);
    else
        rc = sb_write_file_atomic(path, b.data, b.len, err);
    sb_buf_release(&b);
    free(text);
    return rc;
}

/* One line: the adapters' request counts (the first 8, then how many more). */
static void print_lora(const struct sb_engine_params *ep, const struct sb_run_config *cfg)
{
    const struct sb_lora_list *l = ep->lora_list;
    long long *counts = calloc(l->n, sizeof(*counts));
    if (!counts)
        return;
    sb_lora_selector_counts(ep->lora, counts);
    printf("  LoRA: %zu adapters, %s, %s mode:", l->n, cfg->lora_select,
           ep->lora_mode == SB_LORA_MODE_TRTLLM ? "trtllm" : "model");
    for (size_t i = 0; i < l->n && i < 8; i++)
        printf("%s %s %lld", i ? "," : "", l->a[i].name, counts[i]);
    if (l->n > 8)
        printf(", ... (%zu more; run.json lora)", l->n - 8);
    printf("\n");
    free(counts);
}

static void print_summary(const char *run_id, const char *dir, const struct sb_engine_result *res,
                          const struct sb_run_config *cfg, const struct record_facts *facts)
{
    long long errors = 0;
    for (int k = 1; k < SB_ERRK_COUNT; k++)
        errors += res->errors[k];
    printf("run %s: %lld sent, %lld ok, %lld errors", run_id, res->sent, res->ok, errors);
    if (errors) {
        printf(" (");
        bool first = true;
        for (int k = 1; k < SB_ERRK_COUNT; k++) {
            if (!res->errors[k])
                continue;
            printf("%s%s %lld", first ? "" : ", ", sb_error_kind_name((enum sb_error_kind)k),
                   res->errors[k]);
            first = false;
        }
        printf(")");
    }
    printf("\n");
    /* Throughput: completions inside the sending window, drain left out (sb/stats.h). */
    double window = sb_tput_window_s(&res->tput);
    double rps = sb_tput_req_s(&res->tput), tps = sb_tput_tok_s(&res->tput);
    if (isnan(rps)) /* e.g. stopped during warm-up: no window, no number (null in run.json) */
        printf("  measured nothing: the run ended before its measurement window began%s",
               res->warmup ? "" : "\n");
    else
        printf("  measured %.2f s: %.1f req/s achieved, %.1f output tok/s (%lld completed in the "
               "window)%s",
               window, rps, tps, res->tput.completed, res->warmup ? "" : "\n");
    if (res->warmup)
        printf(" (%lld warm-up/ramp requests excluded from the percentiles)\n", res->warmup);
    struct sb_summary st, se;
    sb_hist_summarize(&res->ttft_ms, &st);
    sb_hist_summarize(&res->e2e_ms, &se);
    printf("  TTFT p50 %.2f ms  p99 %.2f ms   E2E p50 %.2f ms  p99 %.2f ms   (n=%zu)\n", st.p50,
           st.p99, se.p50, se.p99, se.n);
    /* Open loop: being late is the client's failure. Closed loop: "late" is the gap between a
       completion and the same user's next send, a client overhead worth knowing when it grows. */
    long long measured = res->sent - res->warmup;
    double late_share = measured > 0 ? (double)res->late_sends / (double)measured : 0;
    if (sb_client_fell_behind(res->late_sends, measured, res->max_sched_delay_ms))
        printf("  WARNING: the client fell behind its schedule: %lld of %lld measured requests "
               "(%.1f %%) sent more than 1 ms late, max %.2f ms; their latency includes the wait\n",
               res->late_sends, measured, 100 * late_share, res->max_sched_delay_ms);
    else if (cfg->rate > 0 || res->late_sends > 0 ||
             (cfg->workload && !strcmp(cfg->workload, "trace")))
        printf("  client lag: %lld of %lld measured requests sent more than 1 ms late (max %.3f "
               "ms)\n",
               res->late_sends, measured, res->max_sched_delay_ms);
    if (cfg->rate > 0 && !isnan(facts->inflight_mean))
        printf("  open loop at %g req/s: %.2f requests in flight on average (cap %lld)\n",
               cfg->rate, facts->inflight_mean, cfg->max_inflight);
    if (res->not_sent)
        printf("  %lld scheduled requests were never sent (the run stopped first)\n",
               res->not_sent);
    if (res->retried)
        printf("  %lld requests died with a reused connection before any response byte and were "
               "sent again on a fresh one (retried: true; the retry is in their latency)\n",
               res->retried);
    printf("  -> %s/metrics.jsonl\n", dir);
}

/*
 * The run's error budget: 0 when it passes, else 3 with one line in why. No success at all always
 * fails (a run that measured nothing must not look like one that did); otherwise the failed share
 * of all records is held against --max-error-rate.
 */
static int error_budget(const struct sb_engine_result *res, double max_rate, char *why, size_t cap)
{
    long long errors = 0;
    for (int k = 1; k < SB_ERRK_COUNT; k++)
        errors += res->errors[k];
    long long records = res->ok + errors;
    if (records == 0 || errors == 0)
        return 0;
    char kinds[256] = "";
    size_t n = 0;
    for (int k = 1; k < SB_ERRK_COUNT && n < sizeof(kinds); k++)
        if (res->errors[k])
            n += (size_t)snprintf(kinds + n, sizeof(kinds) - n, "%s%s %lld", n ? ", " : "",
                                  sb_error_kind_name((enum sb_error_kind)k), res->errors[k]);
    double share = (double)errors / (double)records;
    if (res->ok == 0)
        snprintf(why, cap, "failed: none of %lld requests succeeded (%s)", records, kinds);
    else if (share > max_rate)
        snprintf(why, cap,
                 "failed: %lld of %lld requests failed (%.1f %%, over --max-error-rate %g): %s",
                 errors, records, 100 * share, max_rate, kinds);
    else
        return 0;
    return 3;
}

/* `run --sysmon`: the sampler on its own thread for the run's lifetime, on the same clocks. */
struct sysmon_thread {
    pthread_t thread;
    struct sb_sysmon_config cfg;
    char disks[128];
    volatile bool stop;
    int rc;
    struct sb_err err;
};

static void *sysmon_main(void *arg)
{
    struct sysmon_thread *t = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* signals are the engine's to handle */
    t->rc = sb_sysmon_run(&t->cfg, &t->stop, &t->err);
    return NULL;
}

/* Starts the sampler into dir; its disks are those holding the KV tier-2 path (first: sysmon's
 * "nvme", the device the KV reads hit) and dir. */
static int sysmon_start(struct sysmon_thread *t, const struct sb_run_config *cfg, char *dir)
{
    memset(t, 0, sizeof(*t));
    char a[32] = "", b[32] = "";
    struct sb_err e;
    sb_blockdev_of_path("/sys", dir, a, sizeof(a), &e);
    if (cfg->tier2_path)
        sb_blockdev_of_path("/sys", cfg->tier2_path, b, sizeof(b), &e);
    sb_sysmon_disk_list(b, a, t->disks, sizeof(t->disks));
    t->cfg.out_dir = dir;
    t->cfg.interval_ms = cfg->cadence_ms;
    t->cfg.disks = t->disks[0] ? t->disks : NULL;
    t->cfg.proc_root = cfg->sysmon_proc_root;
    t->cfg.sys_root = (char *)"/sys";
    t->cfg.no_gpu = !cfg->collect_gpu;
    t->cfg.no_disk = !cfg->enable_iostat || !cfg->collect_nvme;
    t->cfg.prom_urls = cfg->prom_urls;
    t->cfg.dynkv = cfg->enable_dynkv;
    t->cfg.kv_block_size_bytes = cfg->kv_block_size_bytes;
    t->cfg.trtllm_url = cfg->trtllm_url;
    t->cfg.pid_of = cfg->server_pids;
    return pthread_create(&t->thread, NULL, sysmon_main, t) == 0 ? 0 : -1;
}

int cmd_run(int argc, char **argv)
{
    struct sb_run_config cfg = {0};
    struct sb_opt_result res;
    struct sb_err err;
    struct sb_workload wl = {0};
    struct sb_tokenizer *tok = NULL;
    struct sb_jsonl_sink sink;
    bool sink_open = false;
    struct sb_engine_result er = {0};
    struct sb_lora_list lora_list = {0};
    struct sb_lora_selector *lora = NULL;
    char reserve[4200] = ""; /* room kept for run.json, freed just before it is written */
    int rc = 1;
    sb_err_clear(&err);
    /* SIGINT/SIGTERM stay pending until the engine's signalfd reads them, so one that comes
       while the run is set up (prompts, run directory, tokenizer, server probes) still ends in
       run.json and 130/143; before, it killed the process with config.yaml and no run.json. Every
       thread started later inherits the mask. */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    if (sb_cmd_parse("run", sb_run_options, sb_run_noptions, &cfg, argc, argv, usage, &res, &rc) !=
        0)
        goto out;
    /* Before any handle exists: the engine, the server probes and --sysmon's scrapes follow it. */
    sb_tls_set_insecure(cfg.insecure);
    if (sb_sessions_check_config(&cfg, &err) != 0) {
        rc = sb_usage_error("run", err.msg);
        goto out;
    }
    char url[4096];
    enum sb_api api = SB_API_COMPLETIONS;
    if (resolve_endpoint(&cfg, url, sizeof(url), &api, &err) != 0) {
        rc = sb_usage_error("run", err.msg);
        goto out;
    }
    bool is_trace = cfg.workload && strcmp(cfg.workload, "trace") == 0;
    if (cfg.duration_s <= 0 && cfg.requests <= 0 && !is_trace) {
        rc = sb_usage_error("run", "give --duration-s or --requests (or both)");
        goto out;
    }
    /* The LoRA suite's list and policy, checked before anything is sent or written. */
    struct sb_lora_policy pol;
    if (sb_lora_policy_parse(cfg.lora_select, &pol, &err) != 0) {
        rc = sb_usage_error("run", err.msg);
        goto out;
    }
    if (cfg.lora_list && *cfg.lora_list) {
        if (sb_lora_list_load(cfg.lora_list, &lora_list, &err) != 0 ||
            sb_lora_list_check_mode(&lora_list, (enum sb_lora_mode)cfg.lora_mode, &err) != 0 ||
            sb_lora_selector_new(&lora_list, &pol, (uint64_t)cfg.seed, &lora, &err) != 0) {
            fprintf(stderr, "sparkbench run: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        char name[64];
        free(cfg.lora_select); /* resolved, as config.yaml and run.json show it */
        cfg.lora_select = strdup(sb_lora_policy_name(&pol, name, sizeof(name)));
        if (!cfg.lora_select) {
            fprintf(stderr, "sparkbench run: out of memory\n");
            goto out;
        }
    }
    /* Loaded once: every count of the run comes from it (sb_workload_count). */
    if (cfg.tokenizer && *cfg.tokenizer && sb_tokenizer_load(cfg.tokenizer, &tok, &err) != 0) {
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
        goto out;
    }

    char run_id[256];
    if (cfg.run_id && *cfg.run_id) {
        snprintf(run_id, sizeof(run_id), "%s", cfg.run_id);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        char ts[32];
        strftime(ts, sizeof(ts), "%Y%m%d_%H%M%S", &tm);
        snprintf(run_id, sizeof(run_id), "%s_%s_%s", ts, cfg.stack ? cfg.stack : "stack",
                 cfg.model ? cfg.model : "model");
    }
    sanitize(run_id);
    free(cfg.run_id);
    cfg.run_id = strdup(run_id);

    char dir[4096];
    if (cfg.output_dir && *cfg.output_dir)
        snprintf(dir, sizeof(dir), "%s", cfg.output_dir);
    else
        snprintf(dir, sizeof(dir), "%s/%s", cfg.results_dir, run_id);

    /* The server's cache: cleared first when asked (before anything is written, so a failed
       reset leaves no run directory behind), and read before and after the run. */
    struct server_side ss = {.reset_asked =
                                 cfg.reset_cache || (cfg.reset_cache_cmd && *cfg.reset_cache_cmd),
                             .state_read = cfg.server_state};
    char base[1100];
    base_of(url, base, sizeof(base));
    if (ss.reset_asked) {
        if (sb_server_cache_reset(base, cfg.reset_cache_cmd, 10, &ss.reset, &err) != 0) {
            fprintf(stderr, "sparkbench run: %s\n", err.msg);
            rc = 1;
            goto out;
        }
        if (!cfg.quiet)
            printf("server cache cleared (%s: %s)\n", ss.reset.method, ss.reset.detail);
    }
    if (ss.state_read)
        sb_server_cache_read(base, 2, &ss.start);

    if (sb_workload_open(&wl, &cfg, tok, &err) != 0) {
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    if (wl.trunc_from >= 0) /* once per prompt */
        fprintf(stderr,
                "sparkbench run: note: prompt '%s' cut from %lld to its last %lld tokens "
                "(--max-input-len %lld - --input-len-margin %lld)\n",
                wl.source, wl.trunc_from, wl.trunc_to, cfg.max_input_len, cfg.input_len_margin);
    if (sb_mkdir_p(dir, &err) != 0) {
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
        goto out;
    }
    char mpath[4200];
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", dir);
    if (access(mpath, F_OK) == 0) {
        fprintf(stderr,
                "sparkbench run: '%s' already exists: choose another --run-id or --output-dir "
                "(a run never appends to an earlier one)\n",
                mpath);
        goto out;
    }
    if (write_config(&cfg, dir, &err) != 0 || sb_jsonl_open(&sink, mpath, &err) != 0) {
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
        goto out;
    }
    sink_open = true;
    /* A disk that fills up mid-run costs the records that no longer fit, but run.json (which
       counts them as lost) must still be written: blocks are set aside for it now and given back
       just before it is written. Best effort: without them a full disk loses run.json too. */
    snprintf(reserve, sizeof(reserve), "%s/.run.json.reserve", dir);
    int rfd = open(reserve, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool reserved = rfd >= 0 && posix_fallocate(rfd, 0, RUN_JSON_RESERVE) == 0;
    if (rfd >= 0)
        close(rfd);
    if (!reserved) {
        unlink(reserve);
        reserve[0] = '\0';
    }

    const char *key = cfg.api_key_env ? getenv(cfg.api_key_env) : NULL;
    struct sb_engine_params p = {
        .cfg = &cfg,
        .workload = &wl,
        .url = url,
        .api = api,
        .run_id = run_id,
        .model_sent = cfg.served_model ? cfg.served_model : cfg.model,
        .api_key = key,
        .sink = &sink,
        .progress = !cfg.quiet && isatty(2),
        .lora_list = lora ? &lora_list : NULL,
        .lora = lora,
        .lora_mode = cfg.lora_mode,
    };
    struct sysmon_thread sm;
    bool sm_running = cfg.sysmon && sysmon_start(&sm, &cfg, dir) == 0;
    if (cfg.sysmon && !sm_running)
        fprintf(stderr, "sparkbench run: cannot start the telemetry sampler\n");
    uint64_t wall_start = sb_real_ns();
    int erc = sb_engine_run(&p, &er, &err);
    if (sm_running) {
        sm.stop = true;
        pthread_join(sm.thread, NULL);
        if (sm.rc != 0)
            fprintf(stderr, "sparkbench run: telemetry: %s\n", sm.err.msg);
    }
    if (erc != 0) {
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
        goto out;
    }
    uint64_t wall_end = sb_real_ns();
    if (ss.state_read)
        sb_server_cache_read(base, 2, &ss.end);
    struct sb_err cerr;
    int close_rc = sb_jsonl_close(&sink, &cerr);
    sink_open = false;
    if (close_rc != 0 && er.reason != SB_EXIT_FATAL) {
        er.reason = SB_EXIT_FATAL;
        snprintf(er.fatal_msg, sizeof(er.fatal_msg), "%s", cerr.msg);
    }
    if (cfg.server_perf_metrics && close_rc == 0)
        join_perf_metrics(base, mpath, &ss, cfg.quiet);
    /* Every finished request made one record; those not in metrics.jsonl were lost (a full
       disk). Then the counts and percentiles are taken from the file: exactly what was written. */
    struct record_loss loss = {.written = (long long)sink.lines_written};
    long long records = er.ok;
    for (int k = 1; k < SB_ERRK_COUNT; k++)
        records += er.errors[k];
    if (records > loss.written) {
        if (sb_engine_result_recount(&er, mpath, &loss.written, &err) != 0)
            fprintf(stderr, "sparkbench run: cannot recount the records written: %s\n", err.msg);
        loss.lost = records - loss.written;
        if (sink.failed)
            snprintf(loss.why, sizeof(loss.why), "cannot write '%s': %s", mpath,
                     strerror(sink.failed_errno));
        else
            snprintf(loss.why, sizeof(loss.why), "%s", er.fatal_msg);
    }
    struct record_facts facts;
    record_facts_of(&er, &wl, &facts);
    if (reserve[0] && unlink(reserve) == 0)
        reserve[0] = '\0';
    bool json_failed = write_run_json(dir, run_id, url, argc, argv, &er, wall_start, wall_end, &wl,
                                      &loss, &ss, &cfg, &facts, &p, &err) != 0;
    if (json_failed)
        fprintf(stderr, "sparkbench run: %s\n", err.msg);
    if (!cfg.quiet)
        print_summary(run_id, dir, &er, &cfg, &facts);
    if (!cfg.quiet && lora)
        print_lora(&p, &cfg);
    if (facts.server_truncated) /* once per run, quiet or not: every figure depends on it */
        fprintf(stderr,
                "sparkbench run: warning: the server counted %.0f prompt tokens (median of %lld "
                "records) where about %lld were sent: it cut the prompt without an error "
                "(llama.cpp's context shift does); %lld records say server_truncated, and the "
                "results are for a %.0f-token context\n",
                facts.server_prompt_tokens, facts.prompt_records, wl.est_tokens,
                facts.truncated_records, facts.server_prompt_tokens);
    if (!cfg.quiet && loss.lost > 0)
        printf("  lost %lld records: %s (the counts and percentiles above are over the %lld "
               "records in metrics.jsonl)\n",
               loss.lost, loss.why, loss.written);
    switch (er.reason) {
    case SB_EXIT_FATAL:
        if (loss.lost > 0)
            fprintf(stderr,
                    "sparkbench run: stopped: %s (%lld records lost; the %lld written before are "
                    "kept in '%s')\n",
                    er.fatal_msg, loss.lost, loss.written, mpath);
        else
            fprintf(stderr,
                    "sparkbench run: stopped: %s (records written so far are kept in '%s')\n",
                    er.fatal_msg, mpath);
        rc = 1;
        break;
    case SB_EXIT_SIGINT:
        rc = 130;
        break;
    case SB_EXIT_SIGTERM:
        rc = 143;
        break;
    case SB_EXIT_UNREACHABLE:
    case SB_EXIT_REFUSED:
        fprintf(stderr, "sparkbench run: %s\n", er.fatal_msg);
        rc = 3;
        break;
    default: {
        char why[512];
        rc = error_budget(&er, cfg.max_error_rate, why, sizeof(why));
        if (rc != 0)
            fprintf(stderr, "sparkbench run: %s\n", why);
    }
    }
    if (json_failed && rc == 0)
        rc = 1; /* the run's record is incomplete without run.json */
out:
    if (sink_open)
        sb_jsonl_close(&sink, &err);
    sb_engine_result_release(&er);
    sb_workload_release(&wl);
    sb_lora_selector_free(lora);
    sb_lora_list_release(&lora_list);
    sb_tokenizer_free(tok);
    free(res.positional);
    sb_opt_release(sb_run_options, sb_run_noptions, &cfg);
    if (reserve[0])
        unlink(reserve);
    return rc;
}
