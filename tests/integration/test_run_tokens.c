/*
 * Integration tests of exact token counts in runs (issue 12, "Counts in runs"): `sparkbench run
 * --tokenizer` against a real `sparkbench mock` puts on every record the client's exact count of
 * the prompt it sent (nonce included, BOS per the post-processor), equal to what `sparkbench
 * tokenize` counts for the same text; context_tokens becomes that count with the nominal size
 * beside it; run.json says where the counts came from; --max-input-len N --input-len-margin M keeps
 * the last N - M tokens of the prompt and the nonce. The real Llama 3.1 tokenizer.json comes from
 * the setup/fetch_tokenizers fixture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;
static const char *api_path = "/v1/completions"; /* run_tok's endpoint path */
static char tok[1024];

#define RUN_LIMIT_S 60.0

/* `sparkbench tokenize --count [--no-bos]` of text, through a file. */
static long long count_of(const char *dir, const char *text, size_t len, bool bos)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/count.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    const char *argv[] = {
        bin, "tokenize", "--tokenizer", tok, "--count", bos ? path : "--no-bos", bos ? NULL : path,
        NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run_limit(argv, &out, &err, 60), 0);
    long long n = strtoll(out, NULL, 10);
    free(out), free(err);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    char *s = sb_test_read_file(path);
    assert_non_null(s);
    *len = strlen(s);
    return s;
}

/* Runs `run --tokenizer` with args against the mock; returns the records (and run.json in *rj). */
static cJSON **run_tok(const char *dir, int port, const char *const *args, int *n, cJSON **rj)
{
    char url[160], out[600], metrics[700], runjson[700], prompts[600];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, api_path);
    snprintf(out, sizeof(out), "%s/run", dir);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", out);
    snprintf(runjson, sizeof(runjson), "%s/run.json", out);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *argv[64];
    int k = 0;
    const char *head[] = {
        bin,           "run", "--endpoint", url, "--output-dir", out, "--prompts-dir", prompts,
        "--tokenizer", tok,   "--quiet",    NULL};
    for (int i = 0; head[i]; i++)
        argv[k++] = head[i];
    for (int i = 0; args[i]; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    char *o = NULL, *e = NULL;
    int rc = sb_proc_run_limit(argv, &o, &e, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("run exit %d: %s", rc, e ? e : "");
    free(o), free(e);
    *rj = sb_test_read_json(runjson);
    assert_non_null(*rj);
    cJSON **v = sb_test_read_jsonl(metrics, n);
    assert_non_null(v);
    assert_true(*n > 0);
    return v;
}

static const char *const fast_mock[] = {
    "--prefill-base-ms", "0", "--prefill-per-token-us", "0", "--decode-base-ms", "1", NULL};

/* Every record's prompt_tokens_client is tokenize's count of "[session NONCE] " + the prompt file,
   for the shared prompt (no nonce) and for per-request nonces at the start and at the end. */
static void test_run_exact_counts(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char *dir = sb_test_tmpdir("/tmp", "rtok");
    char pf[700];
    snprintf(pf, sizeof(pf), "%s/inputs/prompts/1024_tokens.txt", srcdir);
    size_t blen = 0;
    char *body = slurp(pf, &blen);
    long long body_bos = count_of(dir, body, blen, true);

    struct {
        const char *args[12];
        int nonce; /* 0 none, 1 start, 2 end */
    } rows[] = {
        {{"--context-tokens", "1024", "--concurrency", "2", "--requests", "4", NULL}, 0},
        {{"--context-tokens", "1024", "--concurrency", "2", "--requests", "6",
          "--nonce-per-request", NULL},
         1},
        {{"--context-tokens", "1024", "--concurrency", "2", "--requests", "6",
          "--nonce-per-request", "--nonce-position", "end", NULL},
         2},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int n = 0;
        cJSON *rj = NULL;
        cJSON **v = run_tok(dir, mock.port, rows[i].args, &n, &rj);
        const cJSON *wl = cJSON_GetObjectItem(rj, "prompt");
        const char *src = sb_test_str(wl, "tokens_src");
        assert_non_null(src);
        assert_true(strncmp(src, "tokenizer ", 10) == 0);
        for (int j = 0; j < n; j++) {
            long long want = body_bos;
            const char *nonce = sb_test_str(v[j], "nonce");
            if (rows[i].nonce) {
                assert_non_null(nonce);
                size_t cap = blen + 64;
                char *t = malloc(cap);
                int m = rows[i].nonce == 1 ? snprintf(t, cap, "[session %s] %s", nonce, body)
                                           : snprintf(t, cap, "%s [session %s]", body, nonce);
                want = count_of(dir, t, (size_t)m, true);
                free(t);
            }
            long long got = (long long)sb_test_num(v[j], "prompt_tokens_client");
            if (got != want)
                fail_msg("row %zu record %d: prompt_tokens_client %lld, tokenize says %lld", i, j,
                         got, want);
            assert_int_equal((long long)sb_test_num(v[j], "context_tokens"), want);
            assert_int_equal((long long)sb_test_num(v[j], "context_tokens_nominal"), 1024);
        }
        /* analyze puts the run at the exact count on its context axis */
        char out[700], sj[800];
        snprintf(out, sizeof(out), "%s/run", dir);
        const char *an[] = {bin, "analyze", out, NULL};
        char *o = NULL, *e = NULL;
        if (sb_proc_run_limit(an, &o, &e, RUN_LIMIT_S) != 0)
            fail_msg("analyze: %s", e ? e : "");
        free(o), free(e);
        snprintf(sj, sizeof(sj), "%s/summary.json", out);
        cJSON *sum = sb_test_read_json(sj);
        assert_non_null(sum);
        long long axis = (long long)sb_test_num(sum, "context_tokens");
        if (axis != body_bos)
            fail_msg("row %zu: analyze's context_tokens %lld, want the exact %lld", i, axis,
                     body_bos);
        cJSON_Delete(sum);
        sb_test_free_jsonl(v, n);
        cJSON_Delete(rj);
        sb_test_rm_rf(out);
    }
    free(body);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* --max-input-len 300 --input-len-margin 20: the prompt keeps its last 280 tokens (the tail of the
   file), and the nonce is placed after the cut. */
static void test_run_truncate_tokens(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char *dir = sb_test_tmpdir("/tmp", "rtrunc");
    char pf[700];
    snprintf(pf, sizeof(pf), "%s/inputs/prompts/1024_tokens.txt", srcdir);
    size_t blen = 0;
    char *body = slurp(pf, &blen);
    const char *args[] = {"--context-tokens",   "1024", "--concurrency",       "1",
                          "--requests",         "3",    "--max-input-len",     "300",
                          "--input-len-margin", "20",   "--nonce-per-request", NULL};
    int n = 0;
    cJSON *rj = NULL;
    cJSON **v = run_tok(dir, mock.port, args, &n, &rj);
    const cJSON *wl = cJSON_GetObjectItem(rj, "prompt");
    assert_true(sb_test_true(wl, "truncated"));
    long long kept = (long long)sb_test_num(wl, "bytes");
    assert_true(kept > 0 && (size_t)kept < blen);
    const char *tail = body + blen - (size_t)kept;
    long long tail_tokens = count_of(dir, tail, (size_t)kept, false);
    if (tail_tokens != 280)
        fail_msg("kept tail is %lld tokens, want 280", tail_tokens);
    for (int j = 0; j < n; j++) {
        const char *nonce = sb_test_str(v[j], "nonce");
        assert_non_null(nonce);
        char *t = malloc((size_t)kept + 64);
        int m = snprintf(t, (size_t)kept + 64, "[session %s] %s", nonce, tail);
        long long want = count_of(dir, t, (size_t)m, true);
        free(t);
        assert_int_equal((long long)sb_test_num(v[j], "prompt_tokens_client"), want);
    }
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    free(body);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* Runs smoke --tokenizer against a mock started with margs; returns its stdout. */
static char *smoke_out(const char *const *margs)
{
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char url[160];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", mock.port);
    const char *argv[] = {
        bin, "smoke",        "--endpoint", url, "--tokenizer", tok, "--long-prompt-tokens",
        "0", "--max-tokens", "4",          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("smoke exit %d: %s%s", rc, out ? out : "", err ? err : "");
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    return out;
}

/* smoke --tokenizer against a mock counting with the same tokenizer: completions agree (+0: the
   same BOS), chat differs by the Llama 3 wrapper's tokens less the BOS the client counted, and no
   warning; against a mock that estimates bytes / 4, one warning naming both numbers. */
static void test_smoke_overhead(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "stok");
    const char *wrap = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n";
    long long overhead = count_of(dir, wrap, strlen(wrap), false) - 1;
    assert_true(overhead > 5);

    const char *same[] = {"--tokenizer", tok, "--decode-base-ms", "1", NULL};
    char *out = smoke_out(same);
    print_message("%s", out);
    assert_non_null(strstr(out, "difference +0 (BOS handling)"));
    char want[128];
    snprintf(want, sizeof(want), "difference %+lld (the chat template's overhead)", overhead);
    if (!strstr(out, want))
        fail_msg("no '%s' in:\n%s", want, out);
    assert_null(strstr(out, "not the served model's tokenizer"));
    free(out);

    const char *est[] = {"--decode-base-ms", "1", NULL};
    out = smoke_out(est);
    print_message("%s", out);
    assert_int_equal(sb_test_count(out, "not the served model's tokenizer"), 1);
    assert_non_null(strstr(out, "WARNING: completions: the server counts "));
    free(out);
    sb_test_rm_rf(dir);
    free(dir);
}

/* A run against a mock with the same tokenizer: the server's prompt_tokens equal the client's
   on /v1/completions (both count BOS once). */
static void test_mock_exact_usage(void **state)
{
    (void)state;
    const char *margs[] = {"--tokenizer", tok, "--decode-base-ms", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "mtok");
    const char *args[] = {"--context-tokens", "4096", "--concurrency",    "2",
                          "--requests",       "4",    "--nonce-per-user", NULL};
    int n = 0;
    cJSON *rj = NULL;
    cJSON **v = run_tok(dir, mock.port, args, &n, &rj);
    for (int j = 0; j < n; j++) {
        long long server = (long long)sb_test_num(v[j], "prompt_tokens");
        long long client = (long long)sb_test_num(v[j], "prompt_tokens_client");
        if (server != client)
            fail_msg("record %d: mock counted %lld, client %lld", j, server, client);
    }
    /* completions: the first request's server count less the client's is 0 */
    const cJSON *pr = cJSON_GetObjectItem(rj, "prompt");
    assert_int_equal((long long)sb_test_num(pr, "server_minus_client_tokens"), 0);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    char out[700];
    snprintf(out, sizeof(out), "%s/run", dir);
    sb_test_rm_rf(out);

    /* chat: run.json records the template's overhead, measured on the first request */
    const char *wrap = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n";
    long long overhead = count_of(dir, wrap, strlen(wrap), false) - 1;
    api_path = "/v1/chat/completions";
    v = run_tok(dir, mock.port, args, &n, &rj);
    api_path = "/v1/completions";
    pr = cJSON_GetObjectItem(rj, "prompt");
    const cJSON *oh = cJSON_GetObjectItem(pr, "chat_template_overhead_tokens");
    if (!cJSON_IsNumber(oh) || (long long)oh->valuedouble != overhead)
        fail_msg("run.json prompt.chat_template_overhead_tokens %s, want %lld",
                 oh ? cJSON_PrintUnformatted(oh) : "missing", overhead);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* With a tokenizer the mock's KV blocks are the server's: hashed over the prompt's token ids, so
   a 1024-token prompt (+ BOS) leaves floor(1025 / 16) = 64 full blocks cached in tier 0, where
   the byte estimate made 70 of the same file. */
static void test_mock_kv_blocks_exact(void **state)
{
    (void)state;
    const char *margs[] = {
        "--tokenizer", tok, "--tier0-blocks", "4096", "--kv-block-tokens", "16", "--decode-base-ms",
        "1",           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "mkv");
    const char *args[] = {"--context-tokens", "1024", "--requests", "1", "--max-tokens", "4", NULL};
    int n = 0;
    cJSON *rj = NULL;
    cJSON **v = run_tok(dir, mock.port, args, &n, &rj);
    assert_int_equal((int)sb_test_num(v[0], "prompt_tokens"), 1025);
    char url[100];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", mock.port);
    struct sb_http_resp r;
    assert_int_equal(sb_http("GET", url, NULL, &r), 0);
    const char *at = strstr(r.body, "mock_kv_tier_used_blocks{tier=\"0\"} ");
    assert_non_null(at);
    long used = strtol(at + strlen("mock_kv_tier_used_blocks{tier=\"0\"} "), NULL, 10);
    print_message("tier-0 blocks cached after a 1025-token prompt: %ld (16 tokens a block)\n",
                  used);
    assert_int_equal(used, 64);
    sb_http_resp_release(&r);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
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
    snprintf(tok, sizeof(tok), "%s/tests/.cache/tokenizers/llama3_1/tokenizer.json", srcdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_exact_counts),     cmocka_unit_test(test_run_truncate_tokens),
        cmocka_unit_test(test_smoke_overhead),       cmocka_unit_test(test_mock_exact_usage),
        cmocka_unit_test(test_mock_kv_blocks_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
