/*
 * Integration tests of what a real server says about itself (issue 11 items 4, 5, 9): llama.cpp's
 * "timings" kept in the records and turned into the client-side overhead by analyze, a prompt the
 * server cut silently (context shift) flagged in the records, run.json, one warning and analyze's
 * context axis, and an open-loop run's concurrency fields. llama.cpp's bytes come from a scripted
 * server (the shape confirmed in its tools/server/server-task.cpp); the open loop runs against the
 * real `sparkbench mock`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 60.0

static double num(const cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static const char *str(const cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static bool is_null(const cJSON *j, const char *k)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, k));
}

static cJSON *read_json(const char *path)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("cannot read '%s'", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j)
        fail_msg("'%s' is not JSON", path);
    return j;
}

/* The cell of column `col` in the first data row of a CSV without quoted commas ("" if none). */
static void csv_cell(const char *path, const char *col, char *out, size_t cap)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("cannot read '%s'", path);
    char *row = strchr(text, '\n');
    assert_non_null(row);
    *row++ = '\0';
    char *end = strchr(row, '\n');
    if (end)
        *end = '\0';
    int want = -1, i = 0;
    for (char *h = text, *next; h; h = next, i++) {
        next = strchr(h, ',');
        if (next)
            *next++ = '\0';
        if (strcmp(h, col) == 0)
            want = i;
    }
    if (want < 0)
        fail_msg("summary_v3.csv has no column '%s'", col);
    i = 0;
    out[0] = '\0';
    for (char *c = row, *next; c; c = next, i++) {
        next = strchr(c, ',');
        if (next)
            *next++ = '\0';
        if (i == want)
            snprintf(out, cap, "%s", c);
    }
    free(text);
}

static void run_analyze(const char *rundir, const char *andir)
{
    char uw[700];
    snprintf(uw, sizeof(uw), "%s/uwork.txt", andir);
    const char *argv[] = {bin,       "analyze", rundir,         "--out",   andir,
                          "--uwork", uw,        "--no-figures", "--quiet", NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, err);
    free(out);
    free(err);
}

/*
 * llama.cpp's chat stream with stream_options.include_usage: no role-only chunk, the content
 * chunks, the finish chunk, then one chunk with an empty "choices", "usage" (no cached-token
 * details) and "timings" (result_timings::to_json(): cache_n first), then [DONE]; the socket is
 * closed after it. prompt_tokens 4434 for a 65536-token prompt: context shift cut it silently.
 */
#define LLAMA_HEAD                                                                                 \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nServer: llama.cpp\r\n"                  \
    "Connection: close\r\n\r\n"
#define LLAMA_CHUNK(delta, finish)                                                                 \
    "data: {\"choices\":[{\"finish_reason\":" finish ",\"index\":0,\"delta\":" delta "}],"         \
    "\"created\":1763200000,\"id\":\"chatcmpl-q11\",\"model\":\"gpt-3.5-turbo\","                  \
    "\"system_fingerprint\":\"b6990-1d5ee6e0\",\"object\":\"chat.completion.chunk\"}\n\n"
#define LLAMA_LAST                                                                                 \
    "data: {\"choices\":[],\"created\":1763200000,\"id\":\"chatcmpl-q11\",\"model\":"              \
    "\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6990-1d5ee6e0\",\"object\":"                      \
    "\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":4434,"         \
    "\"total_tokens\":4436},\"timings\":{\"cache_n\":4096,\"prompt_n\":338,\"prompt_ms\":150.0,"   \
    "\"prompt_per_token_ms\":0.4438,\"prompt_per_second\":2253.3,\"predicted_n\":2,"               \
    "\"predicted_ms\":40.5,\"predicted_per_token_ms\":20.25,\"predicted_per_second\":49.38}}\n\n"  \
    "data: [DONE]\n\n"

static void test_llamacpp_timings_and_truncation(void **state)
{
    (void)state;
    /* The first token 200 ms after the headers; the server says its prefill took 150 ms. */
    struct sb_script_step steps[] = {{0, LLAMA_HEAD},
                                     {200, LLAMA_CHUNK("{\"content\":\"Hello\"}", "null")},
                                     {0, LLAMA_CHUNK("{\"content\":\" world\"}", "null")},
                                     {0, LLAMA_CHUNK("{}", "\"length\"") LLAMA_LAST},
                                     {0, NULL}};
    struct sb_script_server s = {.steps = steps, .backlog = 16, .close_after_response = true};
    assert_int_equal(sb_script_server_start(&s), 0);
    char *dir = sb_test_tmpdir("/tmp", "q11srv");
    char prompt[600], out_dir[600], metrics[700], runjson[700], an[700], csv[800], url[160];
    snprintf(prompt, sizeof(prompt), "%s/prompt.txt", dir);
    snprintf(out_dir, sizeof(out_dir), "%s/20261201_120000_H2A_stackA_L8B_ctx65536", dir);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", out_dir);
    snprintf(runjson, sizeof(runjson), "%s/run.json", out_dir);
    snprintf(an, sizeof(an), "%s/an", dir);
    snprintf(csv, sizeof(csv), "%s/figures/summary_v3.csv", an);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", s.port);
    /* 262144 bytes: about 65536 tokens at 4 bytes each. */
    FILE *f = fopen(prompt, "w");
    assert_non_null(f);
    for (int i = 0; i < 262144 / 8; i++)
        fputs("context ", f);
    fclose(f);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--output-dir",
                          out_dir,
                          "--prompt-file",
                          prompt,
                          "--requests",
                          "3",
                          "--context-tokens",
                          "65536",
                          "--max-tokens",
                          "2",
                          "--hypothesis",
                          "H2A",
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);

    int n = 0;
    cJSON **v = sb_test_read_jsonl(metrics, &n);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "ok")))
            fail_msg("record %d not ok: %s", i, str(v[i], "error_msg"));
        print_message("record %d: prompt_tokens %.0f server_prompt_n %.0f server_prompt_ms %.3f "
                      "server_decode_ms %.3f cached %.0f (%s) truncated %d ttft %.1f ms\n",
                      i, num(v[i], "prompt_tokens"), num(v[i], "server_prompt_n"),
                      num(v[i], "server_prompt_ms"), num(v[i], "server_decode_ms"),
                      num(v[i], "cached_tokens"), str(v[i], "cached_src"),
                      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "server_truncated")),
                      num(v[i], "lat_ttft_ms"));
        assert_true(num(v[i], "server_prompt_ms") == 150.0);
        assert_true(num(v[i], "server_prompt_n") == 338);
        assert_true(num(v[i], "server_decode_ms") == 40.5);
        assert_true(num(v[i], "server_predicted_n") == 2);
        assert_true(num(v[i], "server_cache_n") == 4096);
        assert_true(num(v[i], "cached_tokens") == 4096);
        assert_string_equal(str(v[i], "cached_src"), "timings");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "server_truncated")));
        assert_true(num(v[i], "lat_ttft_ms") >= 200);
    }
    sb_test_free_jsonl(v, n);

    /* One warning with both numbers, however many records. */
    print_message("stderr: %s", err);
    assert_int_equal(sb_test_count(err, "warning: the server counted"), 1);
    assert_non_null(strstr(err, "4434 prompt tokens"));
    assert_non_null(strstr(err, "about 65536 were sent"));
    cJSON *rj = read_json(runjson);
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(rj, "prompt");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pj, "server_truncated")));
    assert_true(num(pj, "server_prompt_tokens") == 4434);
    assert_true(num(pj, "estimated_tokens") == 65536);
    assert_true(num(pj, "server_truncated_records") == 3);
    cJSON_Delete(rj);

    /* analyze: the overhead column, the flag, and the server's count for the context axis. */
    run_analyze(out_dir, an);
    char cell[400];
    csv_cell(csv, "context_tokens_server", cell, sizeof(cell));
    print_message("context_tokens_server '%s'\n", cell);
    assert_string_equal(cell, "4434");
    csv_cell(csv, "server_truncated", cell, sizeof(cell));
    assert_string_equal(cell, "true");
    csv_cell(csv, "flags", cell, sizeof(cell));
    print_message("flags '%s'\n", cell);
    assert_non_null(strstr(cell, "server truncated the prompt"));
    csv_cell(csv, "n_client_overhead", cell, sizeof(cell));
    assert_string_equal(cell, "3");
    csv_cell(csv, "p50_client_overhead_ms", cell, sizeof(cell));
    print_message("p50 client overhead '%s' ms (TTFT >= 200 ms, prefill 150 ms)\n", cell);
    assert_true(cell[0] && strtod(cell, NULL) >= 50.0);
    char h2a[800];
    snprintf(h2a, sizeof(h2a), "%s/report.md", an);
    char *report = sb_test_read_file(h2a);
    assert_non_null(report);
    assert_non_null(strstr(report, "Server-side view"));
    free(report);

    free(out);
    free(err);
    sb_script_server_stop(&s);
    sb_test_rm_rf(dir);
    free(dir);
}

/* An open-loop run: concurrency null, max_inflight its own field, the measured mean in flight. */
static void test_open_loop_concurrency(void **state)
{
    (void)state;
    static const char *const mock_args[] = {"--prefill-base-ms", "5", "--decode-base-ms", "5",
                                            NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, mock_args), 0);
    char *dir = sb_test_tmpdir("/tmp", "q11ol");
    char out_dir[600], metrics[700], runjson[700], an[700], csv[800], url[160], prompts[600];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", out_dir);
    snprintf(runjson, sizeof(runjson), "%s/run.json", out_dir);
    snprintf(an, sizeof(an), "%s/an", dir);
    snprintf(csv, sizeof(csv), "%s/figures/summary_v3.csv", an);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/completions", mock.port);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--output-dir",
                          out_dir,
                          "--prompts-dir",
                          prompts,
                          "--rate",
                          "20",
                          "--max-inflight",
                          "1024",
                          "--duration-s",
                          "2",
                          "--max-tokens",
                          "4",
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    cJSON *rj = read_json(runjson);
    const cJSON *ld = cJSON_GetObjectItemCaseSensitive(rj, "load");
    double w0 = num(cJSON_GetObjectItemCaseSensitive(rj, "throughput"), "window_start_mono_ns");
    double w1 = num(cJSON_GetObjectItemCaseSensitive(rj, "throughput"), "window_end_mono_ns");
    double inflight = num(rj, "inflight_mean");
    assert_string_equal(str(ld, "mode"), "open");
    assert_true(is_null(ld, "concurrency"));
    assert_true(num(ld, "max_inflight") == 1024);
    assert_true(num(ld, "rate") == 20);

    /* The same mean from the records: their [t_send, t_last_byte] clipped to the window. */
    int n = 0;
    cJSON **v = sb_test_read_jsonl(metrics, &n);
    assert_true(n > 10);
    double busy = 0;
    for (int i = 0; i < n; i++) {
        assert_true(is_null(v[i], "concurrency"));
        assert_true(num(v[i], "max_inflight") == 1024);
        assert_true(num(v[i], "rate") == 20);
        double a = num(v[i], "t_send_ns"), b = num(v[i], "t_last_byte_ns");
        if (isnan(a) || isnan(b))
            continue;
        a = a > w0 ? a : w0;
        b = b < w1 ? b : w1;
        if (b > a)
            busy += b - a;
    }
    double want = busy / (w1 - w0);
    print_message("open loop 20 req/s, cap 1024: %d records, inflight_mean %.4f (records say "
                  "%.4f)\n",
                  n, inflight, want);
    assert_true(fabs(inflight - want) <= 1e-6 * (want > 1 ? want : 1));
    assert_true(inflight > 0 && inflight < 1024);
    sb_test_free_jsonl(v, n);

    run_analyze(out_dir, an);
    char cell[400];
    csv_cell(csv, "concurrency", cell, sizeof(cell));
    assert_string_equal(cell, "");
    csv_cell(csv, "max_inflight", cell, sizeof(cell));
    assert_string_equal(cell, "1024");
    csv_cell(csv, "inflight_mean", cell, sizeof(cell));
    print_message("summary_v3.csv: concurrency '', max_inflight 1024, inflight_mean '%s'\n", cell);
    assert_true(cell[0] && fabs(strtod(cell, NULL) - inflight) <= 1e-9 * (inflight + 1));
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamacpp_timings_and_truncation),
        cmocka_unit_test(test_open_loop_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
