/*
 * Per-run outputs of analyze (sb/analyze.h): analysis/figures/summary_v3.csv, one row per run, and
 * each run's summary.json (the old backfill_summary.py's job). One column table lists every
 * figure once, with its name and where it lives in struct sb_run, and both writers walk it, so the
 * CSV and the JSON always say the same thing. The old process_results.py's fourteen columns come
 * first, in its order and with its meanings, so scripts that read them by position and joins
 * across old and new CSVs keep working: "stack" is the stack's name ("stackA"; the bare letter
 * is "stack_letter") and "sysmon_samples" counts every tick taken (the window's are
 * "sysmon_window_samples"), and "concurrency" keeps meaning closed-loop users: it is empty for an
 * open-loop run, whose cap is "max_inflight" and whose measured mean in-flight count is
 * "inflight_mean" (a join on concurrency never pairs an open-loop run with a closed-loop one).
 * "context_tokens_server" is the server's median prompt_tokens; "server_truncated" says it cut
 * the prompt. "*_client_overhead_ms" is client TTFT minus the server's own prefill time over the
 * records that carry both (llama.cpp's timings.prompt_ms). "fio_*" (after "dir") are H4's noisy
 * neighbour as its fio.json tells: MB/s (1e6 bytes), IOPS and completion-latency p99. Numbers are
 * written as the shortest text that reads back as the same double; "not available" is an empty cell
 * and a JSON null, never 0.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/analyze.h"
#include "sb/analyze_out.h"

enum ctype {
    C_STR,       /* char *, "" for unknown */
    C_LL,        /* long long, -1 for unknown */
    C_SIZE,      /* size_t count */
    C_U64,       /* uint64_t */
    C_U64_KNOWN, /* uint64_t, 0 for unknown */
    C_DBL,       /* double, NAN for unknown */
    C_BOOL,      /* bool */
    C_WINDOW,    /* t1 - t0 */
    C_STACK_OLD, /* the stack as the old harness named it: "stackA" for the letter "A" */
    C_FLAGS,     /* sb_run_flags() */
};

struct column {
    const char *name;
    enum ctype type;
    size_t off;
};

#define LAT_OLD(X, L, name)                                                                        \
    X("n_" name, C_SIZE, lat[L].n)                                                                 \
    X("p90_" name "_ms", C_DBL, lat[L].p90)                                                        \
    X("p999_" name "_ms", C_DBL, lat[L].p999)                                                      \
    X("mean_" name "_ms", C_DBL, lat[L].mean)                                                      \
    X("min_" name "_ms", C_DBL, lat[L].min)                                                        \
    X("max_" name "_ms", C_DBL, lat[L].max)

#define LAT_NEW(X, L, name)                                                                        \
    X("n_" name, C_SIZE, lat[L].n)                                                                 \
    X("p50_" name "_ms", C_DBL, lat[L].p50)                                                        \
    X("p90_" name "_ms", C_DBL, lat[L].p90)                                                        \
    X("p95_" name "_ms", C_DBL, lat[L].p95)                                                        \
    X("p99_" name "_ms", C_DBL, lat[L].p99)                                                        \
    X("p999_" name "_ms", C_DBL, lat[L].p999)                                                      \
    X("mean_" name "_ms", C_DBL, lat[L].mean)                                                      \
    X("min_" name "_ms", C_DBL, lat[L].min)                                                        \
    X("max_" name "_ms", C_DBL, lat[L].max)

#define TSTAT(X, name, m)                                                                          \
    X(name "_mean", C_DBL, m.mean)                                                                 \
    X(name "_p95", C_DBL, m.p95)

#define TIER(X, k)                                                                                 \
    X("tier" #k "_hits", C_DBL, tier_hits[k])                                                      \
    X("tier" #k "_misses", C_DBL, tier_misses[k])                                                  \
    X("tier" #k "_hit_ratio", C_DBL, tier_hit_ratio[k])

/* Every column, in order. The first fourteen are process_results.py's. */
#define COLUMNS(X)                                                                                 \
    X("run_id", C_STR, run_id)                                                                     \
    X("stack", C_STACK_OLD, stack)                                                                 \
    X("model", C_STR, model)                                                                       \
    X("workload", C_STR, workload)                                                                 \
    X("context_tokens", C_LL, context_tokens)                                                      \
    X("concurrency", C_LL, concurrency)                                                            \
    X("p50_ttft_ms", C_DBL, lat[SB_LAT_TTFT].p50)                                                  \
    X("p95_ttft_ms", C_DBL, lat[SB_LAT_TTFT].p95)                                                  \
    X("p99_ttft_ms", C_DBL, lat[SB_LAT_TTFT].p99)                                                  \
    X("p50_e2e_ms", C_DBL, lat[SB_LAT_E2E].p50)                                                    \
    X("p95_e2e_ms", C_DBL, lat[SB_LAT_E2E].p95)                                                    \
    X("p99_e2e_ms", C_DBL, lat[SB_LAT_E2E].p99)                                                    \
    X("samples", C_SIZE, ok)                                                                       \
    X("sysmon_samples", C_SIZE, sysmon_ticks)                                                      \
    X("stack_letter", C_STR, stack)                                                                \
    X("hypothesis", C_STR, hypothesis)                                                             \
    X("phase", C_STR, phase)                                                                       \
    X("repetition", C_LL, repetition)                                                              \
    X("fio_profile", C_STR, fio_profile)                                                           \
    X("eviction_policy", C_STR, eviction_policy)                                                   \
    X("rate", C_DBL, rate)                                                                         \
    X("old_format", C_BOOL, old_format)                                                            \
    X("t0", C_DBL, t0)                                                                             \
    X("t1", C_DBL, t1)                                                                             \
    X("window_s", C_WINDOW, t0)                                                                    \
    X("window_from_run_json", C_BOOL, window_from_run_json)                                        \
    X("exit_reason", C_STR, exit_reason)                                                           \
    X("late_sends", C_LL, late_sends)                                                              \
    X("max_sched_delay_ms", C_DBL, max_sched_delay_ms)                                             \
    X("flags", C_FLAGS, exit_reason)                                                               \
    X("lines", C_SIZE, metrics_file.lines)                                                         \
    X("bad_lines", C_SIZE, metrics_file.bad_lines)                                                 \
    X("blank_lines", C_SIZE, metrics_file.blank_lines)                                             \
    X("warmup", C_SIZE, warmup)                                                                    \
    X("measured", C_SIZE, measured)                                                                \
    X("errors", C_SIZE, errors)                                                                    \
    X("errors_unknown", C_SIZE, errors_by_kind[SB_ERRK_NONE])                                      \
    X("errors_connect", C_SIZE, errors_by_kind[SB_ERRK_CONNECT])                                   \
    X("errors_timeout", C_SIZE, errors_by_kind[SB_ERRK_TIMEOUT])                                   \
    X("errors_http", C_SIZE, errors_by_kind[SB_ERRK_HTTP])                                         \
    X("errors_bad_json", C_SIZE, errors_by_kind[SB_ERRK_BAD_JSON])                                 \
    X("errors_bad_sse", C_SIZE, errors_by_kind[SB_ERRK_BAD_SSE])                                   \
    X("errors_stream_error", C_SIZE, errors_by_kind[SB_ERRK_STREAM_ERROR])                         \
    X("errors_truncated", C_SIZE, errors_by_kind[SB_ERRK_TRUNCATED])                               \
    X("errors_too_large", C_SIZE, errors_by_kind[SB_ERRK_TOO_LARGE])                               \
    X("errors_transport", C_SIZE, errors_by_kind[SB_ERRK_TRANSPORT])                               \
    X("errors_cancelled", C_SIZE, errors_by_kind[SB_ERRK_CANCELLED])                               \
    X("errors_empty_stream", C_SIZE, errors_by_kind[SB_ERRK_EMPTY_STREAM])                         \
    X("admitted", C_SIZE, admitted)                                                                \
    X("completed", C_SIZE, completed)                                                              \
    X("rejected", C_SIZE, rejected)                                                                \
    X("achieved_rps", C_DBL, achieved_rps)                                                         \
    X("output_tok_s", C_DBL, output_tok_s)                                                         \
    X("output_tokens", C_U64, output_tokens)                                                       \
    LAT_OLD(X, SB_LAT_TTFT, "ttft")                                                                \
    LAT_OLD(X, SB_LAT_E2E, "e2e")                                                                  \
    LAT_NEW(X, SB_LAT_TTFB, "ttfb")                                                                \
    LAT_NEW(X, SB_LAT_ITL, "itl")                                                                  \
    LAT_NEW(X, SB_LAT_TPOT, "tpot")                                                                \
    X("sysmon_window_samples", C_SIZE, sysmon_samples)                                             \
    X("sysmon_missed", C_SIZE, sysmon_missed)                                                      \
    X("sysmon_late", C_SIZE, sysmon_late)                                                          \
    X("sysmon_aligned", C_DBL, sysmon_aligned)                                                     \
    X("cadence_s", C_DBL, cadence_s)                                                               \
    TSTAT(X, "cpu_iowait", cpu_iowait)                                                             \
    TSTAT(X, "nvme_rps", nvme_rps)                                                                 \
    TSTAT(X, "nvme_rmbs", nvme_rmbs)                                                               \
    TSTAT(X, "nvme_r_await_ms", nvme_r_await)                                                      \
    TSTAT(X, "nvme_util_pct", nvme_util)                                                           \
    TSTAT(X, "nvme_aqu_sz", nvme_aqu)                                                              \
    TSTAT(X, "psi_io_some_avg10", psi_io_some)                                                     \
    X("mem_available_min", C_DBL, mem_available.min)                                               \
    X("mem_available_mean", C_DBL, mem_available.mean)                                             \
    TSTAT(X, "gpu_util", gpu_util)                                                                 \
    X("dynkv_samples", C_SIZE, dynkv_samples)                                                      \
    X("dynkv_missed", C_SIZE, dynkv_missed)                                                        \
    X("dynkv_aligned", C_DBL, dynkv_aligned)                                                       \
    X("cadence_dynkv_s", C_DBL, cadence_dynkv_s)                                                   \
    TIER(X, 0)                                                                                     \
    TIER(X, 1)                                                                                     \
    TIER(X, 2)                                                                                     \
    X("tier2_share", C_DBL, tier2_share)                                                           \
    TSTAT(X, "tier2_fetch_p95_ms", tier2_fetch_p95_ms)                                             \
    X("h7_points", C_SIZE, nh7)                                                                    \
    X("kv_block_size_bytes", C_U64_KNOWN, kv_block_size_bytes)                                     \
    X("tier0_bytes", C_U64_KNOWN, tier0_bytes)                                                     \
    X("tier1_bytes", C_U64_KNOWN, tier1_bytes)                                                     \
    X("tier2_bytes", C_U64_KNOWN, tier2_bytes)                                                     \
    X("kv_working_set_bytes", C_DBL, kv_working_set_bytes)                                         \
    X("max_inflight", C_LL, max_inflight)                                                          \
    X("inflight_mean", C_DBL, inflight_mean)                                                       \
    X("prompt_est_tokens", C_DBL, prompt_est_tokens)                                               \
    X("context_tokens_server", C_DBL, context_tokens_server)                                       \
    X("server_truncated", C_BOOL, server_truncated)                                                \
    X("n_client_overhead", C_SIZE, client_overhead.n)                                              \
    X("p50_client_overhead_ms", C_DBL, client_overhead.p50)                                        \
    X("p99_client_overhead_ms", C_DBL, client_overhead.p99)                                        \
    X("sessions", C_LL, sess.sessions)                                                             \
    X("sess_records", C_SIZE, sess.records)                                                        \
    X("prime_records", C_SIZE, sess.prime)                                                         \
    X("working_set_tokens_mean", C_DBL, sess.ws_tokens_mean)                                       \
    X("working_set_tokens_max", C_DBL, sess.ws_tokens_max)                                         \
    X("oracle_hit_ratio", C_DBL, sess.oracle_hit_ratio)                                            \
    X("realized_hit_ratio", C_DBL, sess.realized_hit_ratio)                                        \
    X("realized_over_oracle", C_DBL, sess.realized_over_oracle)                                    \
    X("dir", C_STR, dir)                                                                           \
    X("fio_read_mbs", C_DBL, fio.read_mbs)                                                         \
    X("fio_write_mbs", C_DBL, fio.write_mbs)                                                       \
    X("fio_read_iops", C_DBL, fio.read_iops)                                                       \
    X("fio_write_iops", C_DBL, fio.write_iops)                                                     \
    X("fio_read_clat_p99_ms", C_DBL, fio.read_p99_ms)                                              \
    X("fio_write_clat_p99_ms", C_DBL, fio.write_p99_ms)

#define AS_COLUMN(n, t, m) {n, t, offsetof(struct sb_run, m)},
#define AS_NAME(n, t, m)   n,

static const struct column columns[] = {COLUMNS(AS_COLUMN)};
const char *const sb_summary_columns[] = {COLUMNS(AS_NAME) NULL};

#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

/* ---- formatting ---- */

const char *sb_analyze_fmt_double(char *buf, size_t cap, double v)
{
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (!isfinite(v))
        return buf;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

void sb_csv_put_str(FILE *f, const char *s)
{
    if (!s || strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s ? s : "", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void sb_csv_put_double(FILE *f, double v)
{
    char buf[40];
    fputs(sb_analyze_fmt_double(buf, sizeof(buf), v), f);
}

#define FIELD(r, c, type) (*(const type *)(const void *)((const char *)(r) + (c)->off))

/*
 * One cell's text into buf; *is_str says it is a string (quoted in JSON). "" means unknown (an
 * empty CSV cell, JSON null) for every type but C_STR.
 */
static const char *cell(const struct sb_run *r, const struct column *c, char *buf, size_t cap,
                        bool *is_str)
{
    *is_str = false;
    buf[0] = '\0';
    switch (c->type) {
    case C_STR:
        *is_str = true;
        return FIELD(r, c, char *) ? FIELD(r, c, char *) : "";
    case C_LL: {
        long long v = FIELD(r, c, long long);
        if (v >= 0)
            snprintf(buf, cap, "%lld", v);
        return buf;
    }
    case C_SIZE:
        snprintf(buf, cap, "%zu", FIELD(r, c, size_t));
        return buf;
    case C_U64:
    case C_U64_KNOWN: {
        uint64_t v = FIELD(r, c, uint64_t);
        if (v > 0 || c->type == C_U64)
            snprintf(buf, cap, "%llu", (unsigned long long)v);
        return buf;
    }
    case C_DBL:
        return sb_analyze_fmt_double(buf, cap, FIELD(r, c, double));
    case C_BOOL:
        snprintf(buf, cap, "%s", FIELD(r, c, bool) ? "true" : "false");
        return buf;
    case C_WINDOW:
        return sb_analyze_fmt_double(buf, cap, r->t1 > r->t0 ? r->t1 - r->t0 : NAN);
    case C_STACK_OLD: {
        /* The loader reads "stackA" as "A"; the old column said "stackA", and joins on it. */
        const char *v = FIELD(r, c, char *) ? FIELD(r, c, char *) : "";
        *is_str = true;
        if (isalpha((unsigned char)v[0]) && v[1] == '\0')
            snprintf(buf, cap, "stack%s", v);
        else
            snprintf(buf, cap, "%s", v);
        return buf;
    }
    case C_FLAGS:
        *is_str = true;
        return sb_run_flags(r, buf, cap);
    }
    return buf;
}

/* ---- summary_v3.csv ---- */

int sb_summary_csv_write(const char *path, const struct sb_run *runs, size_t n, struct sb_err *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return sb_err_set(err, "cannot write '%s': out of memory", path);
    for (size_t i = 0; i < NCOLUMNS; i++)
        fprintf(f, "%s%s", i ? "," : "", columns[i].name);
    fputc('\n', f);
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < NCOLUMNS; i++) {
            char buf[400];
            bool is_str;
            const char *v = cell(&runs[k], &columns[i], buf, sizeof(buf), &is_str);
            if (i)
                fputc(',', f);
            sb_csv_put_str(f, v);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(text);
        return sb_err_set(err, "cannot write '%s': out of memory", path);
    }
    int rc = sb_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

/* ---- summary.json ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    char buf[40];
    sb_analyze_fmt_double(buf, sizeof(buf), v);
    fputs(buf[0] ? buf : "null", f);
}

static void json_file_report(FILE *f, const char *name, const struct sb_file_report *fr, bool last)
{
    fprintf(f, "    \"%s\": {\"present\": %s, \"lines\": %zu, \"bad_lines\": %zu, ", name,
            fr->present ? "true" : "false", fr->lines, fr->bad_lines);
    fprintf(f, "\"blank_lines\": %zu, \"first_problem\": ", fr->blank_lines);
    if (fr->first_problem[0])
        json_str(f, fr->first_problem);
    else
        fputs("null", f);
    fprintf(f, "}%s\n", last ? "" : ",");
}

int sb_run_summary_json_write(const struct sb_run *r, struct sb_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/summary.json", r->dir) >= (int)sizeof(path))
        return sb_err_set(err, "cannot write summary.json in '%s': path too long", r->dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return sb_err_set(err, "cannot write '%s': out of memory", path);
    fputs("{\n", f);
    for (size_t i = 0; i < NCOLUMNS; i++) {
        char buf[400];
        bool is_str;
        const char *v = cell(r, &columns[i], buf, sizeof(buf), &is_str);
        fprintf(f, "  \"%s\": ", columns[i].name);
        if (is_str)
            json_str(f, v);
        else
            fputs(v[0] ? v : "null", f);
        fputs(",\n", f);
    }
    fputs("  \"errors_by_kind\": {", f);
    for (int k = 0; k < SB_ERRK_COUNT; k++)
        fprintf(f, "%s\"%s\": %zu", k ? ", " : "",
                k == SB_ERRK_NONE ? "unknown" : sb_error_kind_name((enum sb_error_kind)k),
                r->errors_by_kind[k]);
    fputs("},\n  \"files\": {\n", f);
    json_file_report(f, "metrics", &r->metrics_file, false);
    json_file_report(f, "sysmon", &r->sysmon_file, false);
    json_file_report(f, "dynkv", &r->dynkv_file, true);
    fputs("  },\n  \"h7\": [", f);
    for (size_t i = 0; i < r->nh7; i++) {
        const struct sb_h7_point *h = &r->h7[i];
        fputs(i ? ",\n    {\"ts\": " : "\n    {\"ts\": ", f);
        json_num(f, h->ts);
        fputs(", \"pred_rmbs\": ", f);
        json_num(f, h->pred_rmbs);
        fputs(", \"obs_rmbs\": ", f);
        json_num(f, h->obs_rmbs);
        fputs(", \"obs_rps\": ", f);
        json_num(f, h->obs_rps);
        fputs(", \"fetch_p95_ms\": ", f);
        json_num(f, h->fetch_p95_ms);
        fputs("}", f);
    }
    fputs(r->nh7 ? "\n  ],\n  \"warnings\": [" : "],\n  \"warnings\": [", f);
    for (size_t i = 0; i < r->nwarnings; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        json_str(f, r->warnings[i]);
    }
    fputs(r->nwarnings ? "\n  ]\n}\n" : "]\n}\n", f);
    if (fclose(f) != 0) {
        free(text);
        return sb_err_set(err, "cannot write '%s': out of memory", path);
    }
    int rc = sb_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}
