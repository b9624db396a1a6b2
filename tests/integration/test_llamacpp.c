/*
 * `sparkbench run` and `smoke` against `sparkbench mock --quirks llamacpp`, the mock behaving as
 * the real llama-server of issue 11 did on the wire: an over-long prompt's error inside a 200
 * stream is a failure with the server's message, streams on connections the server closes after
 * [DONE] all succeed, the server's timings reach the records (the client-side overhead is what is
 * left of TTFT), a context-shifting server's silent truncation is flagged, and the run's cache
 * reset and cache state use the server's own routes.
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

static const char *bin;
static const char *srcdir;

struct run_dir {
    char *dir;
    char out[512], metrics[600], runjson[600], url[160], prompts[512];
};

static void run_dir_init(struct run_dir *d, int port)
{
    d->dir = sb_test_tmpdir("/tmp", "llamacpp");
    snprintf(d->out, sizeof(d->out), "%s/run", d->dir);
    snprintf(d->metrics, sizeof(d->metrics), "%s/metrics.jsonl", d->out);
    snprintf(d->runjson, sizeof(d->runjson), "%s/run.json", d->out);
    snprintf(d->url, sizeof(d->url), "http://127.0.0.1:%d/v1/chat/completions", port);
    snprintf(d->prompts, sizeof(d->prompts), "%s/inputs/prompts", srcdir);
}

static void run_dir_release(struct run_dir *d)
{
    sb_test_rm_rf(d->dir);
    free(d->dir);
}

static int run(const struct run_dir *d, const char *const *args, char **out, char **err)
{
    const char *argv[64] = {bin,    "run",           "--endpoint", d->url, "--output-dir",
                            d->out, "--prompts-dir", d->prompts};
    int n = 8;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sb_proc_run_limit(argv, out, err, 120);
}

static void test_timings_and_reset(void **state)
{
    (void)state;
    const char *margs[] = {"--quirks", "llamacpp", "--max-model-len", "4096", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct run_dir d;
    run_dir_init(&d, mock.port);
    const char *args[] = {
        "--requests", "4", "--concurrency", "1", "--context-tokens", "512", "--reset-cache",
        "--quiet",    NULL};
    char *out = NULL, *err = NULL;
    int rc = run(&d, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(d.metrics, &n);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        if (!sb_test_true(v[i], "ok"))
            fail_msg("record %d: %s", i, sb_test_str(v[i], "error_msg"));
        double ttft = sb_test_num(v[i], "lat_ttft_ms");
        double prefill = sb_test_num(v[i], "server_prompt_ms");
        print_message("record %d: TTFT %.3f ms, server prompt_ms %.3f (n %.0f), cached %.0f (%s)\n",
                      i, ttft, prefill, sb_test_num(v[i], "server_prompt_n"),
                      sb_test_num(v[i], "cached_tokens"), sb_test_str(v[i], "cached_src"));
        /* The server's prefill is inside the client's TTFT. */
        assert_false(isnan(prefill));
        assert_true(prefill <= ttft);
        assert_false(sb_test_true(v[i], "server_truncated"));
    }
    /* Same prompt every time: after the first, llama.cpp's slot serves the prefix. */
    assert_true(sb_test_num(v[3], "cached_tokens") > 0);
    sb_test_free_jsonl(v, n);
    cJSON *rj = sb_test_read_json(d.runjson);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(rj, "server_cache");
    const cJSON *reset = cJSON_GetObjectItemCaseSensitive(sc, "reset");
    assert_true(sb_test_true(reset, "done"));
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(sc, "end");
    print_message("cache: reset by %s; after the run %s %.4f, %.0f tokens\n",
                  sb_test_str(reset, "method"), sb_test_str(end, "series"),
                  sb_test_num(end, "usage_ratio"), sb_test_num(end, "cached_tokens"));
    assert_string_equal(sb_test_str(end, "source"), "llamacpp");
    assert_true(sb_test_num(end, "cached_tokens") > 0); /* the next run would inherit it */
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_dir_release(&d);
}

static void test_context_shift_truncation(void **state)
{
    (void)state;
    const char *margs[] = {"--quirks",        "llamacpp", "--context-shift",
                           "--max-model-len", "1024",     NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct run_dir d;
    run_dir_init(&d, mock.port);
    const char *args[] = {"--requests", "2", "--context-tokens", "4096", NULL};
    char *out = NULL, *err = NULL;
    int rc = run(&d, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    print_message("%s%s", out, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(d.metrics, &n);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) {
        assert_true(sb_test_true(v[i], "ok"));
        assert_true(sb_test_num(v[i], "prompt_tokens") < 1024);
        assert_true(sb_test_true(v[i], "server_truncated"));
    }
    sb_test_free_jsonl(v, n);
    cJSON *rj = sb_test_read_json(d.runjson);
    assert_true(sb_test_true(cJSON_GetObjectItemCaseSensitive(rj, "prompt"), "server_truncated"));
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_dir_release(&d);
}

static void test_error_in_stream(void **state)
{
    (void)state;
    const char *margs[] = {"--quirks", "llamacpp", "--max-model-len", "1024", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct run_dir d;
    run_dir_init(&d, mock.port);
    const char *args[] = {"--requests", "3", "--context-tokens", "4096", "--quiet", NULL};
    char *out = NULL, *err = NULL;
    int rc = run(&d, args, &out, &err);
    print_message("over-long prompts: exit %d: %s", rc, err);
    assert_int_equal(rc, 3); /* nothing succeeded */
    int n = 0;
    cJSON **v = sb_test_read_jsonl(d.metrics, &n);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        assert_false(sb_test_true(v[i], "ok"));
        assert_string_equal(sb_test_str(v[i], "error"), "stream_error");
        assert_non_null(strstr(sb_test_str(v[i], "error_msg"), "exceeds the available context"));
    }
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);

    /* smoke's long-prompt probe says so, with the server's words. */
    char url[100];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", mock.port);
    const char *sargv[] = {bin, "smoke", "--endpoint", url, "--long-prompt-tokens", "4096", NULL};
    rc = sb_proc_run_limit(sargv, &out, &err, 60);
    print_message("smoke exit %d:\n%s", rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ERROR: an error inside the 200 stream: the request exceeds"));
    assert_non_null(strstr(out, "keep-alive   WARNING: the server closed a kept-alive connection"));
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_dir_release(&d);
}

static void test_closed_after_done(void **state)
{
    (void)state;
    /* Keep-Alive advertised, the socket closed after every [DONE]: 30 back-to-back streams. */
    const char *margs[] = {"--quirks", "llamacpp", "--decode-base-ms", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct run_dir d;
    run_dir_init(&d, mock.port);
    const char *args[] = {"--requests",   "30", "--concurrency", "1",
                          "--max-tokens", "4",  "--quiet",       NULL};
    char *out = NULL, *err = NULL;
    int rc = run(&d, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    cJSON *rj = sb_test_read_json(d.runjson);
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(rj, "counts");
    print_message("30 streams on a server that closes after [DONE]: %.0f ok, %.0f errors, %.0f "
                  "retried\n",
                  sb_test_num(counts, "ok"), sb_test_num(counts, "errors"),
                  sb_test_num(counts, "retried"));
    assert_int_equal((int)sb_test_num(counts, "ok"), 30);
    assert_int_equal((int)sb_test_num(counts, "errors"), 0);
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_dir_release(&d);
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
        cmocka_unit_test(test_timings_and_reset),
        cmocka_unit_test(test_context_shift_truncation),
        cmocka_unit_test(test_error_in_stream),
        cmocka_unit_test(test_closed_after_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
