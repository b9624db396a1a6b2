/*
 * Integration tests for the LoRA suite (H1): `sparkbench run --lora-list` against a real
 * `sparkbench mock --lora-modules` holding every adapter (--max-loras as many, so the only cold
 * loads are first uses). Both modes (the adapter as "model"; TensorRT-LLM's lora_request with the
 * base model), both loop kinds, the three policies (round_robin's exact sequence, zipf:1.2's rank
 * shares, uniform's flat shares; the sequence by request number the same for 1 and 3 threads),
 * one cold record per adapter that is the mock's one cold load of it (its --log line names the
 * adapter and says lora_cold), bad lists refused naming file and line, and analyze's H1 split
 * by adapter and first use. Lists are written by the test; nothing is read from ../shared.
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
#include <unistd.h>

#include "proc.h"
#include "sb/util.h"

#define RUN_LIMIT_S 120.0
#define NAD         4
#define LOAD_MS     30 /* the mock's lora_load_ms: a cold TTFT is at least this */

static const char *bin;
static const char *srcdir;

struct env {
    char *dir;
    char list[600], bad[600], log[600];
    struct sb_proc mock;
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A mock serving adapters ad0..ad3 (files in dir, made by the mock), all resident at once. */
static void env_start(struct env *e, const char *tag)
{
    e->dir = sb_test_tmpdir("/tmp", tag);
    snprintf(e->list, sizeof(e->list), "%s/loras.txt", e->dir);
    snprintf(e->bad, sizeof(e->bad), "%s/bad.txt", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/mock.log", e->dir);
    char modules[2048] = "", list[2048] = "# adapters for the H1 test\n\n";
    for (int i = 0; i < NAD; i++) {
        char m[300], l[300];
        snprintf(m, sizeof(m), "%sad%d=%s/ad%d.bin", i ? "," : "", i, e->dir, i);
        snprintf(l, sizeof(l), "ad%d %d %s/ad%d.bin   # rank %d\n", i, i + 1, e->dir, i, i + 1);
        strncat(modules, m, sizeof(modules) - strlen(modules) - 1);
        strncat(list, l, sizeof(list) - strlen(list) - 1);
    }
    write_file(e->list, list);
    char maxl[8], loadms[8];
    snprintf(maxl, sizeof(maxl), "%d", NAD);
    snprintf(loadms, sizeof(loadms), "%d", LOAD_MS);
    const char *margs[] = {"--lora-modules",
                           modules,
                           "--max-loras",
                           maxl,
                           "--lora-bytes",
                           "64KiB",
                           "--lora-load-ms",
                           loadms,
                           "--log",
                           e->log,
                           "--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-base-ms",
                           "1",
                           "--decode-per-seq-us",
                           "0",
                           NULL};
    assert_int_equal(sb_proc_start_mock(&e->mock, bin, margs), 0);
}

static void env_stop(struct env *e)
{
    assert_int_equal(sb_proc_stop(&e->mock, SIGTERM), 0);
    sb_test_rm_rf(e->dir);
    free(e->dir);
}

/* `sparkbench run` into dir/<name> against api with args; its exit code, stderr into *err. */
static int run_into(const struct env *e, const char *name, const char *api, const char *const *args,
                    char *out, size_t outcap, char **err)
{
    char url[160];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", e->mock.port, api);
    snprintf(out, outcap, "%s/%s", e->dir, name);
    char prompts[600];
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *argv[96];
    int n = 0;
    const char *head[] = {bin,   "run",           "--endpoint", url,       "--output-dir",
                          out,   "--prompts-dir", prompts,      "--quiet", "--context-tokens",
                          "128", "--max-tokens",  "2",          "--seed",  "42",
                          NULL};
    for (int i = 0; head[i]; i++)
        argv[n++] = head[i];
    for (int i = 0; args[i] && n < 95; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *o = NULL;
    int rc = sb_proc_run_limit(argv, &o, err, RUN_LIMIT_S);
    free(o);
    if (rc == -2)
        fail_msg("run %s: still running after %.0f s", name, RUN_LIMIT_S);
    return rc;
}

/* What one run did, by seq. */
struct seen {
    int n;
    int adapter[4096]; /* index of "adNN", -1 none */
    long long use[4096];
    double ttft[4096];
    char reqid[4096][64];
    long long count[NAD], cold[NAD];
};

static void read_run(const char *out, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    char path[700];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(path, &n);
    assert_true(n > 0 && n <= 4096);
    s->n = n;
    for (int i = 0; i < n; i++) {
        if (!sb_test_true(v[i], "ok"))
            fail_msg("record %d failed: %s", i, sb_test_str(v[i], "error_msg"));
        long long seq = (long long)sb_test_num(v[i], "seq");
        assert_true(seq >= 0 && seq < n);
        const char *ad = sb_test_str(v[i], "adapter");
        assert_non_null(ad);
        assert_true(strncmp(ad, "ad", 2) == 0);
        int a = (int)strtol(ad + 2, NULL, 10);
        assert_true(a >= 0 && a < NAD);
        s->adapter[seq] = a;
        s->use[seq] = (long long)sb_test_num(v[i], "adapter_use");
        s->ttft[seq] = sb_test_num(v[i], "lat_ttft_ms");
        snprintf(s->reqid[seq], sizeof(s->reqid[seq]), "%s", sb_test_str(v[i], "request_id"));
        s->count[a]++;
        s->cold[a] += s->use[seq] == 1;
    }
    sb_test_free_jsonl(v, n);
    /* Uses count up by adapter in seq order. */
    long long c[NAD] = {0};
    for (int q = 0; q < n; q++)
        assert_int_equal(s->use[q], ++c[s->adapter[q]]);
    for (int a = 0; a < NAD; a++)
        assert_int_equal(s->cold[a], s->count[a] ? 1 : 0);
    /* run.json counts the requests of each adapter. */
    snprintf(path, sizeof(path), "%s/run.json", out);
    cJSON *rj = sb_test_read_json(path);
    cJSON *lo = cJSON_GetObjectItemCaseSensitive(rj, "lora");
    assert_true(cJSON_IsObject(lo));
    cJSON *ads = cJSON_GetObjectItemCaseSensitive(lo, "adapters");
    assert_int_equal(cJSON_GetArraySize(ads), NAD);
    for (int a = 0; a < NAD; a++) {
        cJSON *it = cJSON_GetArrayItem(ads, a);
        char want[16];
        snprintf(want, sizeof(want), "ad%d", a);
        assert_string_equal(sb_test_str(it, "name"), want);
        assert_int_equal((long long)sb_test_num(it, "requests"), s->count[a]);
        assert_int_equal((long long)sb_test_num(it, "id"), a + 1);
    }
    cJSON_Delete(rj);
}

/*
 * The mock's --log lines of these requests (by X-Request-Id): each names the record's adapter
 * (the mock's index of it: modules were listed in the list's order); cold loads, one per adapter.
 * exact: the cold loads are exactly the records with adapter_use 1. Returns lines matched.
 */
static int check_mock_log(const char *logpath, const struct seen *s, bool exact)
{
    int n = 0, matched = 0, cold = 0;
    cJSON **v = sb_test_read_jsonl(logpath, &n);
    for (int i = 0; i < n; i++) {
        const char *xid = sb_test_str(v[i], "x_request_id");
        int q = -1;
        for (int k = 0; xid && k < s->n && q < 0; k++)
            if (strcmp(s->reqid[k], xid) == 0)
                q = k;
        if (q < 0)
            continue; /* another run's request */
        matched++;
        double lora = sb_test_num(v[i], "lora");
        if (lora != s->adapter[q])
            fail_msg("request %s: the mock loaded adapter %g, the record says ad%d", xid, lora,
                     s->adapter[q]);
        bool lc = sb_test_true(v[i], "lora_cold");
        cold += lc;
        if (lc)
            assert_true(sb_test_num(v[i], "lora_load_ns") >= LOAD_MS * 1e6);
        if (exact && lc != (s->use[q] == 1))
            fail_msg("request %s: mock cold %d, adapter_use %lld", xid, lc, s->use[q]);
    }
    sb_test_free_jsonl(v, n);
    int adapters = 0;
    for (int a = 0; a < NAD; a++)
        adapters += s->count[a] > 0;
    assert_int_equal(cold, adapters);
    return matched;
}

static void test_round_robin_model_mode(void **state)
{
    (void)state;
    struct env e;
    env_start(&e, "lora-rr");
    char out[700];
    char *err = NULL;
    /* 3 users < 4 adapters: a first use is always the first to reach the mock. */
    const char *args[] = {
        "--lora-list",   e.list, "--lora-select", "round_robin", "--requests", "40",
        "--concurrency", "3",    "--threads",     "2",           NULL};
    int rc = run_into(&e, "rr", "/v1/completions", args, out, sizeof(out), &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    free(err);
    struct seen *s = calloc(1, sizeof(*s));
    read_run(out, s);
    assert_int_equal(s->n, 40);
    for (int q = 0; q < 40; q++) {
        assert_int_equal(s->adapter[q], q % NAD);
        assert_int_equal(s->use[q], q / NAD + 1);
        if (s->use[q] == 1) /* the load is inside the first use's TTFT */
            assert_true(s->ttft[q] >= LOAD_MS);
    }
    assert_int_equal(check_mock_log(e.log, s, true), 40);

    /* analyze: the H1 split, one row per adapter and one for all, 1 cold and 9 warm each. */
    char adir[800], csv[900];
    snprintf(adir, sizeof(adir), "%s/analysis", e.dir);
    const char *aargv[] = {bin, "analyze", out, "--out", adir, "--no-figures", "--quiet", NULL};
    char *aout = NULL, *aerr = NULL;
    rc = sb_proc_run_limit(aargv, &aout, &aerr, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, aerr);
    free(aout);
    free(aerr);
    snprintf(csv, sizeof(csv), "%s/figures/H1_adapter_cold_warm.csv", adir);
    char *text = sb_test_read_file(csv);
    assert_non_null(text);
    assert_non_null(strstr(text, "adapter,adapter_idx,cold_requests,cold_errors,cold_ttft_p50_ms"));
    int rows = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "run_id,", 7) == 0)
            continue;
        /* run_id,hypothesis,stack,model,phase,adapter,idx,cold_n,cold_err,cold_p50,... */
        char *f[16] = {0};
        int nf = 0;
        for (char *p = line; nf < 16; nf++) {
            f[nf] = p;
            char *c = strchr(p, ',');
            if (!c) {
                nf++;
                break;
            }
            *c = '\0';
            p = c + 1;
        }
        assert_int_equal(nf, 16);
        bool all = strcmp(f[5], "*") == 0;
        assert_int_equal(strtol(f[7], NULL, 10), all ? NAD : 1);
        assert_int_equal(strtol(f[11], NULL, 10), all ? 36 : 9);
        assert_int_equal(strtol(f[8], NULL, 10) + strtol(f[12], NULL, 10), 0);
        assert_true(strtod(f[9], NULL) >= LOAD_MS); /* cold p50 */
        rows++;
    }
    assert_int_equal(rows, NAD + 1);
    free(text);
    free(s);
    env_stop(&e);
}

static void test_zipf_trtllm_mode(void **state)
{
    (void)state;
    struct env e;
    env_start(&e, "lora-zipf");
    char out[700];
    char *err = NULL;
    /* TensorRT-LLM: the base model stays the mock's own, lora_request names the adapter. */
    const char *args[] = {"--model",
                          "sparkbench-mock",
                          "--lora-list",
                          e.list,
                          "--lora-mode",
                          "trtllm",
                          "--lora-select",
                          "zipf:1.2",
                          "--requests",
                          "800",
                          "--concurrency",
                          "8",
                          "--threads",
                          "2",
                          NULL};
    int rc = run_into(&e, "zipf", "/v1/chat/completions", args, out, sizeof(out), &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    free(err);
    struct seen *s = calloc(1, sizeof(*s));
    read_run(out, s);
    assert_int_equal(s->n, 800);
    double h = 0;
    for (int k = 1; k <= NAD; k++)
        h += pow(k, -1.2);
    for (int a = 0; a < NAD; a++) {
        double share = (double)s->count[a] / 800.0, want = pow(a + 1, -1.2) / h;
        print_message("zipf:1.2 rank %d: %lld requests (%.3f; expected %.3f)\n", a + 1, s->count[a],
                      share, want);
        /* sd of a share over 800 requests is at most 0.018 */
        if (fabs(share - want) > 0.06)
            fail_msg("rank %d: share %.3f, expected %.3f", a + 1, share, want);
        if (a > 0 && s->count[a] >= s->count[a - 1])
            fail_msg("rank %d has %lld requests, rank %d %lld", a + 1, s->count[a], a,
                     s->count[a - 1]);
    }
    assert_int_equal(check_mock_log(e.log, s, false), 800);
    free(s);
    env_stop(&e);
}

static void test_uniform_open_loop_threads(void **state)
{
    (void)state;
    struct env e;
    env_start(&e, "lora-uni");
    struct seen *s1 = calloc(1, sizeof(*s1)), *s3 = calloc(1, sizeof(*s3));
    char out[700];
    char *err = NULL;
    /* Open loop, one thread and three: the same adapter for every request number; a nonce per
       request, so each body is built for its request (not one shared body per adapter). */
    const char *a1[] = {"--lora-list", e.list, "--lora-select",       "uniform",
                        "--rate",      "400",  "--requests",          "400",
                        "--threads",   "1",    "--nonce-per-request", NULL};
    int rc = run_into(&e, "uni1", "/v1/completions", a1, out, sizeof(out), &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    free(err);
    read_run(out, s1);
    assert_int_equal(check_mock_log(e.log, s1, false), 400);
    const char *a3[] = {"--lora-list", e.list, "--lora-select",       "uniform",
                        "--rate",      "400",  "--requests",          "400",
                        "--threads",   "3",    "--nonce-per-request", NULL};
    rc = run_into(&e, "uni3", "/v1/completions", a3, out, sizeof(out), &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    free(err);
    read_run(out, s3);
    assert_int_equal(s1->n, 400);
    assert_int_equal(s3->n, 400);
    for (int q = 0; q < 400; q++) {
        assert_int_equal(s1->adapter[q], s3->adapter[q]);
        assert_int_equal(s1->use[q], s3->use[q]);
    }
    for (int a = 0; a < NAD; a++) {
        double share = (double)s1->count[a] / 400.0;
        print_message("uniform ad%d: %lld requests (%.3f)\n", a, s1->count[a], share);
        if (fabs(share - 0.25) > 0.08) /* sd 0.022 */
            fail_msg("ad%d: share %.3f, expected 0.25", a, share);
    }
    free(s1);
    free(s3);
    env_stop(&e);
}

static void test_bad_lists(void **state)
{
    (void)state;
    struct env e;
    env_start(&e, "lora-bad");
    char out[700], path[800];
    char *err = NULL;
    static const struct {
        const char *text;
        const char *mode;
        int rc;
        const char *want;
    } cases[] = {
        {"a 1 /x\n# c\na 2 /y\n", "model", 1, "bad.txt' line 3: duplicate adapter name 'a'"},
        {"a 1 /x\nb one /y\n", "model", 1, "bad.txt' line 2: bad id 'one'"},
        {"a 1 /x\n\nb\n", "trtllm", 1,
         "bad.txt' line 3: --lora-mode trtllm needs an id and a path"},
        {"\n# none\n", "model", 1, "bad.txt': no adapters"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        write_file(e.bad, cases[i].text);
        const char *args[] = {"--lora-list", e.bad, "--lora-mode", cases[i].mode,
                              "--requests",  "1",   NULL};
        int rc = run_into(&e, "bad", "/v1/completions", args, out, sizeof(out), &err);
        if (rc != cases[i].rc || !err || !strstr(err, cases[i].want))
            fail_msg("case %zu: exit %d, stderr '%s', expected %d and '%s'", i, rc, err ? err : "",
                     cases[i].rc, cases[i].want);
        free(err);
        err = NULL;
        snprintf(path, sizeof(path), "%s/metrics.jsonl", out);
        assert_int_not_equal(access(path, F_OK), 0); /* refused before anything was sent */
    }
    const char *sel[] = {"--lora-list", e.list, "--lora-select", "zipf:-1", "--requests",
                         "1",           NULL};
    assert_int_equal(run_into(&e, "bad", "/v1/completions", sel, out, sizeof(out), &err), 2);
    assert_non_null(strstr(err, "invalid --lora-select 'zipf:-1'"));
    free(err);
    env_stop(&e);
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
        cmocka_unit_test(test_round_robin_model_mode),
        cmocka_unit_test(test_zipf_trtllm_mode),
        cmocka_unit_test(test_uniform_open_loop_threads),
        cmocka_unit_test(test_bad_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
