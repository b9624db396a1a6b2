/*
 * Integration tests for `sparkbench run` against real `sparkbench mock` processes: chat and
 * completions, stream and not, every fault kind recorded with the right error kind (joined to the
 * mock's own log through X-Request-Id), no lost request, SIGINT mid-run, the open-loop rate, the
 * config file and the old flag spellings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

static const char *const fast_mock[] = {"--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "1",
                                        "--decode-per-seq-us",
                                        "0",
                                        NULL};

/* The paths every run test uses: a fresh directory, the run directory inside it, its
   metrics.jsonl, the endpoint URL of the mock on `port`, and the shipped prompts. */
struct run_paths {
    char *dir;
    char out_dir[512], mpath[600], url[160], prompts[512];
};

static void run_paths_init(struct run_paths *rp, int port, const char *api_path)
{
    rp->dir = sb_test_tmpdir("/tmp", "run");
    snprintf(rp->out_dir, sizeof(rp->out_dir), "%s/run", rp->dir);
    snprintf(rp->mpath, sizeof(rp->mpath), "%s/metrics.jsonl", rp->out_dir);
    snprintf(rp->url, sizeof(rp->url), "http://127.0.0.1:%d%s", port, api_path);
    snprintf(rp->prompts, sizeof(rp->prompts), "%s/inputs/prompts", srcdir);
}

static void run_paths_release(struct run_paths *rp)
{
    sb_test_rm_rf(rp->dir);
    free(rp->dir);
}

/* Runs `sparkbench run` with args (NULL-terminated); returns the exit code. */
static int run_cmd(const char *const *args, char **out, char **err)
{
    const char *argv[80];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "run";
    for (int i = 0; args[i] && n < 79; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sb_proc_run(argv, out, err);
}

struct lines {
    cJSON **v;
    int n;
};

static struct lines read_jsonl(const char *path)
{
    struct lines l;
    l.v = sb_test_read_jsonl(path, &l.n);
    return l;
}

static void free_lines(struct lines *l)
{
    sb_test_free_jsonl(l->v, l->n);
}

static void basic_case(const char *path, bool stream)
{
    char logpath[] = "/tmp/sbtest-runmock-XXXXXX";
    close(mkstemp(logpath));
    const char *margs[16];
    int n = 0;
    for (int i = 0; fast_mock[i]; i++)
        margs[n++] = fast_mock[i];
    margs[n++] = "--log";
    margs[n++] = logpath;
    margs[n] = NULL;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "run");
    char out_dir[512], url[128], prompts[512];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", mock.port, path);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *args[] = {"--endpoint",       url,
                          "--concurrency",    "4",
                          "--requests",       "40",
                          "--output-dir",     out_dir,
                          "--prompts-dir",    prompts,
                          "--run-id",         "t1",
                          "--hypothesis",     "H0",
                          "--nonce-per-user", stream ? "--stream" : "--no-stream",
                          "--model",          "sparkbench-mock",
                          "--quiet",          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_cmd(args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    char mpath[600];
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    struct lines l = read_jsonl(mpath);
    assert_int_equal(l.n, 40);
    char *log = sb_test_read_file(logpath);
    for (int i = 0; i < l.n; i++) {
        cJSON *j = l.v[i];
        assert_true(sb_test_true(j, "ok"));
        assert_int_equal((int)sb_test_num(j, "rc"), 200);
        assert_string_equal(sb_test_str(j, "run_id"), "t1");
        assert_string_equal(sb_test_str(j, "hypothesis"), "H0");
        assert_string_equal(sb_test_str(j, "phase"), "measure");
        assert_int_equal((int)sb_test_num(j, "context_tokens"), 256);
        assert_int_equal((int)sb_test_num(j, "concurrency"), 4);
        assert_int_equal((int)sb_test_num(j, "output_tokens"), 16);
        assert_string_equal(sb_test_str(j, "tokens_src"), "usage");
        assert_true(sb_test_num(j, "prompt_tokens") > 200);
        assert_true(sb_test_num(j, "lat_e2e_ms") > 0);
        assert_true(sb_test_num(j, "lat_ttfb_ms") <= sb_test_num(j, "lat_e2e_ms"));
        if (stream) {
            assert_true(sb_test_num(j, "lat_ttfb_ms") <= sb_test_num(j, "lat_ttft_ms"));
            assert_true(sb_test_num(j, "lat_first_chunk_ms") <= sb_test_num(j, "lat_ttft_ms"));
            assert_true(sb_test_num(j, "lat_ttft_ms") <= sb_test_num(j, "lat_e2e_ms"));
            assert_int_equal((int)sb_test_num(j, "content_chunks"), 16);
            assert_true(sb_test_num(j, "itl_p50_ms") >= 0);
            assert_true(sb_test_num(j, "tpot_ms") > 0);
            /* The client's first token comes after the server wrote it. */
            assert_true(sb_test_num(j, "t_first_token_ns") >=
                        sb_test_num(j, "server_first_token_ns"));
        }
        assert_non_null(sb_test_str(j, "nonce"));
        assert_int_equal(strlen(sb_test_str(j, "prompt_hash")), 16);
        /* The request id joins the record to the server's own log line. */
        const char *rid = sb_test_str(j, "request_id");
        assert_non_null(rid);
        char needle[200];
        snprintf(needle, sizeof(needle), "\"x_request_id\":\"%s\"", rid ? rid : "");
        assert_int_equal(sb_test_count(log, needle), 1);
    }
    free(log);
    free_lines(&l);
    /* run.json and config.yaml */
    char p2[600];
    snprintf(p2, sizeof(p2), "%s/run.json", out_dir);
    char *rj = sb_test_read_file(p2);
    cJSON *r = cJSON_Parse(rj);
    assert_non_null(r);
    cJSON *counts = cJSON_GetObjectItemCaseSensitive(r, "counts");
    assert_int_equal((int)sb_test_num(counts, "sent"), 40);
    assert_int_equal((int)sb_test_num(counts, "ok"), 40);
    assert_string_equal(sb_test_str(r, "exit_reason"), "completed");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(r, "clock_anchor"));
    cJSON_Delete(r);
    free(rj);
    snprintf(p2, sizeof(p2), "%s/config.yaml", out_dir);
    char *cy = sb_test_read_file(p2);
    assert_non_null(strstr(cy, "concurrency: 4"));
    assert_non_null(strstr(cy, "hypothesis: \"H0\""));
    free(cy);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
    unlink(logpath);
}

static void test_chat_stream(void **state)
{
    (void)state;
    basic_case("/v1/chat/completions", true);
}

static void test_completions_stream(void **state)
{
    (void)state;
    basic_case("/v1/completions", true);
}

static void test_non_stream(void **state)
{
    (void)state;
    basic_case("/v1/chat/completions", false);
    basic_case("/v1/completions", false);
}

/* The error kind the client must record for the fault the mock says it injected. */
static const char *expected_kind(const char *fault)
{
    if (!strcmp(fault, "429") || !strcmp(fault, "500") || !strcmp(fault, "503") ||
        !strcmp(fault, "trtllm_error"))
        return "http";
    if (!strcmp(fault, "close"))
        return "truncated";
    if (!strcmp(fault, "malformed"))
        return "bad_json";
    if (!strcmp(fault, "dynamo_error"))
        return "stream_error";
    return NULL; /* none, stall, slow_headers: the request succeeds */
}

static void test_faults_recorded(void **state)
{
    (void)state;
    char logpath[] = "/tmp/sbtest-faultlog-XXXXXX";
    close(mkstemp(logpath));
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--decode-base-ms",
                           "1",
                           "--fault-rate",
                           "0.6",
                           "--fault-kinds",
                           "all",
                           "--fault-stall-ms",
                           "30",
                           "--fault-slow-headers-ms",
                           "30",
                           "--log",
                           logpath,
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "run");
    char out_dir[512], url[128], prompts[512];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", mock.port);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *args[] = {"--endpoint",   url,     "--concurrency", "8",     "--requests", "300",
                          "--output-dir", out_dir, "--prompts-dir", prompts, "--quiet",    NULL};
    char *out = NULL, *err = NULL;
    int rc = run_cmd(args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    char mpath[600];
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    struct lines l = read_jsonl(mpath);
    struct lines server = read_jsonl(logpath);
    assert_int_equal(l.n, 300);      /* sent = ok + errors: nothing lost */
    assert_int_equal(server.n, 300); /* and the server saw each exactly once */
    int ok = 0, errors = 0, by_fault[16] = {0};
    for (int i = 0; i < l.n; i++) {
        const char *rid = sb_test_str(l.v[i], "request_id");
        const cJSON *srv = NULL;
        for (int k = 0; k < server.n && !srv; k++)
            if (!strcmp(sb_test_str(server.v[k], "x_request_id"), rid))
                srv = server.v[k];
        assert_non_null(srv);
        const char *fault = sb_test_str(srv, "fault");
        const char *want = expected_kind(fault);
        if (want) {
            errors++;
            assert_false(sb_test_true(l.v[i], "ok"));
            if (strcmp(sb_test_str(l.v[i], "error"), want) != 0)
                fail_msg("fault %s recorded as %s, want %s", fault, sb_test_str(l.v[i], "error"),
                         want);
            if (!strcmp(want, "http"))
                assert_int_equal((int)sb_test_num(l.v[i], "rc"), (int)sb_test_num(srv, "status"));
            assert_non_null(sb_test_str(l.v[i], "error_msg"));
        } else {
            ok++;
            if (!sb_test_true(l.v[i], "ok"))
                fail_msg("fault %s should succeed, got %s: %s", fault, sb_test_str(l.v[i], "error"),
                         sb_test_str(l.v[i], "error_msg"));
        }
        by_fault[strlen(fault) % 16]++;
    }
    assert_int_equal(ok + errors, 300);
    assert_true(errors > 100); /* 60 % faulty, 7 of 9 kinds fail */
    char p2[600];
    snprintf(p2, sizeof(p2), "%s/run.json", out_dir);
    char *rj = sb_test_read_file(p2);
    cJSON *r = cJSON_Parse(rj);
    cJSON *counts = cJSON_GetObjectItemCaseSensitive(r, "counts");
    assert_int_equal((int)sb_test_num(counts, "sent"), 300);
    assert_int_equal((int)sb_test_num(counts, "ok"), ok);
    assert_int_equal((int)sb_test_num(counts, "errors"), errors);
    cJSON_Delete(r);
    free(rj);
    free_lines(&l);
    free_lines(&server);
    free(out);
    free(err);
    sb_test_rm_rf(dir);
    free(dir);
    unlink(logpath);
}

static void test_sigint_mid_run(void **state)
{
    (void)state;
    const char *margs[] = {"--decode-base-ms", "20", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct run_paths rp;
    run_paths_init(&rp, mock.port, "/v1/completions");
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(bin, bin, "run", "--endpoint", rp.url, "--concurrency", "4", "--duration-s", "120",
              "--max-tokens", "4", "--output-dir", rp.out_dir, "--prompts-dir", rp.prompts,
              "--drain-s", "0.05", "--extra-body", "{\"min_tokens\": 1}", (char *)NULL);
        _exit(127);
    }
    /* Wait until some records are on disk (flushed at least once a second), then interrupt. */
    struct stat st;
    for (int i = 0; i < 1000; i++) {
        if (stat(rp.mpath, &st) == 0 && st.st_size > 0)
            break;
        usleep(10000);
    }
    assert_true(st.st_size > 0);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    struct lines l = read_jsonl(rp.mpath); /* every line parses: none torn */
    assert_true(l.n >= 4);
    int cancelled = 0;
    for (int i = 0; i < l.n; i++) {
        const char *e = sb_test_str(l.v[i], "error");
        cancelled += e && !strcmp(e, "cancelled");
    }
    char p2[600];
    snprintf(p2, sizeof(p2), "%s/run.json", rp.out_dir);
    char *rj = sb_test_read_file(p2);
    cJSON *r = cJSON_Parse(rj);
    assert_non_null(r);
    assert_string_equal(sb_test_str(r, "exit_reason"), "sigint");
    cJSON *counts = cJSON_GetObjectItemCaseSensitive(r, "counts");
    assert_int_equal((int)sb_test_num(counts, "sent"), l.n);
    assert_int_equal(
        (int)sb_test_num(cJSON_GetObjectItemCaseSensitive(counts, "errors_by_kind"), "cancelled"),
        cancelled);
    cJSON_Delete(r);
    free(rj);
    free_lines(&l);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_paths_release(&rp);
}

static void test_open_loop_rate(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct run_paths rp;
    run_paths_init(&rp, mock.port, "/v1/completions");
    const char *args[] = {"--endpoint",    rp.url,     "--rate",       "200",
                          "--arrival",     "constant", "--duration-s", "3",
                          "--max-tokens",  "4",        "--output-dir", rp.out_dir,
                          "--prompts-dir", rp.prompts, "--quiet",      NULL};
    char *out = NULL, *err = NULL;
    int rc = run_cmd(args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    struct lines l = read_jsonl(rp.mpath);
    double first = INFINITY, last = 0;
    for (int i = 0; i < l.n; i++) {
        double t = sb_test_num(l.v[i], "t_send_ns");
        first = t < first ? t : first;
        last = t > last ? t : last;
        assert_true(sb_test_true(l.v[i], "ok"));
    }
    double achieved = (l.n - 1) / ((last - first) / 1e9);
    print_message("open loop: %d requests, achieved %.2f req/s for a target of 200\n", l.n,
                  achieved);
    assert_true(fabs(achieved - 200) / 200 < 0.02);
    assert_int_equal(l.n, 600);
    free_lines(&l);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_paths_release(&rp);
}

static void test_config_errors_and_old_flags(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "run");
    char cfgpath[600];
    snprintf(cfgpath, sizeof(cfgpath), "%s/bad.yaml", dir);
    FILE *f = fopen(cfgpath, "w");
    fputs("run:\n  concurrency: 4\n  concurency: 8\n", f);
    fclose(f);
    const char *a1[] = {"--config", cfgpath, "--endpoint", "http://127.0.0.1:1", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_cmd(a1, &out, &err), 2);
    assert_non_null(strstr(err, cfgpath));
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "unknown key 'run.concurency'"));
    assert_non_null(strstr(err, "did you mean 'run.concurrency'"));
    free(out);
    free(err);
    f = fopen(cfgpath, "w");
    fputs("run:\n  concurrency: many\n", f);
    fclose(f);
    assert_int_equal(run_cmd(a1, &out, &err), 2);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "expected an integer"));
    free(out);
    free(err);

    /* The Python harness's spellings and config shape drive a real run. */
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    f = fopen(cfgpath, "w");
    fprintf(f,
            "stack: stackA_uma_only\nmodel:\n  name: sparkbench-mock\n  precision: fp4\n"
            "endpoint:\n  url: http://127.0.0.1:%d/v1/completions\n  protocol: openai\n"
            "runtime:\n  kv_sharing_enabled: false\n  kv_cache_tiers: []\n"
            "  nonce_per_user: true\ntelemetry:\n  collect_gpu: true\n",
            mock.port);
    fclose(f);
    char out_dir[600], prompt[600];
    snprintf(out_dir, sizeof(out_dir), "%s/old", dir);
    snprintf(prompt, sizeof(prompt), "%s/inputs/prompts/128_tokens.txt", srcdir);
    const char *a2[] = {"--config",
                        cfgpath,
                        "--context_tokens",
                        "128",
                        "--duration_s",
                        "0.3",
                        "--nonce_per_user",
                        "--prompt-file",
                        prompt,
                        "--output-dir",
                        out_dir,
                        "--max_input_len",
                        "100",
                        "--input_len_margin",
                        "10",
                        "--quiet",
                        NULL};
    int rc = run_cmd(a2, &out, &err);
    if (rc != 0)
        fail_msg("old-style run exited %d: %s", rc, err);
    char mpath[700];
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    struct lines l = read_jsonl(mpath);
    assert_true(l.n > 0);
    assert_string_equal(sb_test_str(l.v[0], "stack"), "stackA_uma_only");
    assert_string_equal(sb_test_str(l.v[0], "model"), "sparkbench-mock");
    assert_int_equal((int)sb_test_num(l.v[0], "context_tokens"), 128);
    /* Truncated to (100 - 10) tokens x 4 bytes plus the nonce tag. */
    assert_true(sb_test_num(l.v[0], "prompt_tokens") <= 90 + 8);
    free_lines(&l);
    free(out);
    free(err);
    /* An existing run directory is never appended to. */
    assert_int_equal(run_cmd(a2, &out, &err), 1);
    assert_non_null(strstr(err, "already exists"));
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

static void test_refused_connection(void **state)
{
    (void)state;
    /* Nobody listens on port 1: every request is a 'connect' error record, the run completes,
       and exits 3 with one line: nothing succeeded. */
    char *dir = sb_test_tmpdir("/tmp", "run");
    char out_dir[512], prompts[512], mpath[600];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *args[] = {"--endpoint",    "http://127.0.0.1:1/v1/completions",
                          "--requests",    "5",
                          "--output-dir",  out_dir,
                          "--prompts-dir", prompts,
                          "--quiet",       NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_cmd(args, &out, &err), 3);
    assert_non_null(strstr(err, "none of 5 requests succeeded (connect 5)"));
    struct lines l = read_jsonl(mpath);
    assert_int_equal(l.n, 5);
    for (int i = 0; i < l.n; i++) {
        assert_string_equal(sb_test_str(l.v[i], "error"), "connect");
        assert_int_equal((int)sb_test_num(l.v[i], "rc"), 0);
    }
    free_lines(&l);
    free(out);
    free(err);
    sb_test_rm_rf(dir);
    free(dir);
}

static void test_shipped_configs(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *margs[] = {"--decode-base-ms", "1", "--served-model-name",
                           "meta-llama/Llama-3.1-8B-Instruct,nvidia/Llama-3.3-70B-Instruct-FP4",
                           NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "run");
    static const char *const configs[] = {"stackB_h2b.yaml", "stackA_baseline.yaml"};
    for (size_t i = 0; i < 2; i++) {
        char cfg[512], url[128], out_dir[600], prompts[512], mpath[700];
        snprintf(cfg, sizeof(cfg), "%s/configs/%s", srcdir, configs[i]);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", mock.port,
                 i == 0 ? "/v1/chat/completions" : "/v1/completions");
        snprintf(out_dir, sizeof(out_dir), "%s/%zu", dir, i);
        snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
        snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
        const char *args[] = {"--config",   cfg, "--endpoint",   url,     "--requests",    "4",
                              "--warmup-s", "0", "--output-dir", out_dir, "--prompts-dir", prompts,
                              "--quiet",    NULL};
        char *out = NULL, *err = NULL;
        int rc = run_cmd(args, &out, &err);
        if (rc != 0)
            fail_msg("%s: exit %d: %s", configs[i], rc, err);
        free(out);
        free(err);
        struct lines l = read_jsonl(mpath);
        assert_int_equal(l.n, 4);
        assert_true(sb_test_true(l.v[0], "ok"));
        assert_string_equal(sb_test_str(l.v[0], "stack"), i == 0 ? "B" : "A");
        free_lines(&l);
    }
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

static void test_threads_and_too_large(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char *dir = sb_test_tmpdir("/tmp", "run");
    char out_dir[512], url[128], prompts[512], mpath[600];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", mock.port);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    /* Two event loops share the users; nothing is lost or duplicated. */
    snprintf(out_dir, sizeof(out_dir), "%s/threads", dir);
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    const char *a1[] = {"--endpoint", url,  "--threads",    "2",     "--concurrency", "6",
                        "--requests", "60", "--output-dir", out_dir, "--prompts-dir", prompts,
                        "--quiet",    NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_cmd(a1, &out, &err), 0);
    free(out);
    free(err);
    struct lines l = read_jsonl(mpath);
    assert_int_equal(l.n, 60);
    bool seen[60] = {false};
    for (int i = 0; i < l.n; i++) {
        int seq = (int)sb_test_num(l.v[i], "seq");
        assert_true(seq >= 0 && seq < 60);
        assert_false(seen[seq]);
        seen[seq] = true;
        assert_true(sb_test_true(l.v[i], "ok"));
    }
    free_lines(&l);
    /* A response over --max-response-bytes is an error record, not an allocation storm. */
    snprintf(out_dir, sizeof(out_dir), "%s/large", dir);
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    const char *a2[] = {"--endpoint",   url,     "--requests",           "3",
                        "--max-tokens", "200",   "--max-response-bytes", "4096",
                        "--output-dir", out_dir, "--prompts-dir",        prompts,
                        "--quiet",      NULL};
    assert_int_equal(run_cmd(a2, &out, &err), 3); /* nothing succeeded: exit 3 */
    assert_non_null(strstr(err, "(too_large 3)"));
    free(out);
    free(err);
    l = read_jsonl(mpath);
    assert_int_equal(l.n, 3);
    for (int i = 0; i < l.n; i++)
        assert_string_equal(sb_test_str(l.v[i], "error"), "too_large");
    free_lines(&l);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* The figures of a run's summary on stdout: "N sent, OK ok, E errors", "(n=K)", "lost L records".
 */
struct summary_figures {
    long long sent, ok, errors, n, lost;
};

static void parse_summary(const char *text, struct summary_figures *f)
{
    memset(f, 0, sizeof(*f));
    const char *p = strstr(text, " sent, ");
    assert_non_null(p);
    while (p > text && p[-1] >= '0' && p[-1] <= '9')
        p--;
    assert_int_equal(sscanf(p, "%lld sent, %lld ok, %lld errors", &f->sent, &f->ok, &f->errors), 3);
    p = strstr(text, "(n=");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "(n=%lld)", &f->n), 1);
    p = strstr(text, "lost ");
    if (p)
        assert_int_equal(sscanf(p, "lost %lld records", &f->lost), 1);
}

/* Lines of metrics.jsonl that are ok, measured and have an E2E: what the summary's n counts. */
static int count_measured_ok(const struct lines *l)
{
    int n = 0;
    for (int i = 0; i < l->n; i++)
        if (sb_test_true(l->v[i], "ok") && strcmp(sb_test_str(l->v[i], "phase"), "measure") == 0 &&
            !isnan(sb_test_num(l->v[i], "lat_e2e_ms")))
            n++;
    return n;
}

static void test_full_disk(void **state)
{
    (void)state;
    /* RLIMIT_FSIZE makes writes past 100 kB fail (EFBIG) like a full disk would (ENOSPC). */
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct run_paths rp;
    run_paths_init(&rp, mock.port, "/v1/completions");
    char errpath[600], outpath[600], jpath[600];
    snprintf(errpath, sizeof(errpath), "%s/stderr", rp.dir);
    snprintf(outpath, sizeof(outpath), "%s/stdout", rp.dir);
    snprintf(jpath, sizeof(jpath), "%s/run.json", rp.out_dir);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {100000, 100000};
        setrlimit(RLIMIT_FSIZE, &rl);
        signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead of killing us */
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        int ofd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(ofd, 1);
        execl(bin, bin, "run", "--endpoint", rp.url, "--concurrency", "4", "--requests", "5000",
              "--output-dir", rp.out_dir, "--prompts-dir", rp.prompts, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char *errtext = sb_test_read_file(errpath);
    assert_non_null(strstr(errtext, "metrics.jsonl"));
    assert_non_null(strstr(errtext, "File too large"));
    free(errtext);
    struct lines l = read_jsonl(rp.mpath); /* whatever was written is whole lines */
    assert_true(l.n > 0 && l.n < 5000);

    /* The summary counts exactly the records in the file and says how many were lost and why. */
    char *outtext = sb_test_read_file(outpath);
    struct summary_figures f;
    parse_summary(outtext, &f);
    if (f.ok + f.errors != l.n || f.n != count_measured_ok(&l))
        fail_msg("summary counts %lld ok + %lld errors (n=%lld) but metrics.jsonl holds %d lines "
                 "(%d measured ok)",
                 f.ok, f.errors, f.n, l.n, count_measured_ok(&l));
    assert_true(f.lost > 0);
    assert_int_equal(f.lost, f.sent - l.n);
    assert_non_null(strstr(outtext, "metrics.jsonl': File too large"));
    free(outtext);

    /* run.json (small enough to fit under the limit) says the same. */
    struct stat st;
    assert_int_equal(stat(jpath, &st), 0);
    assert_true(st.st_size > 0);
    char *jtext = sb_test_read_file(jpath);
    cJSON *j = cJSON_Parse(jtext);
    assert_non_null(j);
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(j, "counts");
    assert_int_equal((long long)sb_test_num(counts, "records_written"), l.n);
    assert_int_equal((long long)sb_test_num(counts, "records_lost"), f.lost);
    assert_int_equal(
        (long long)sb_test_num(counts, "ok") + (long long)sb_test_num(counts, "errors"), l.n);
    assert_int_equal((long long)sb_test_num(cJSON_GetObjectItemCaseSensitive(j, "e2e_ms"), "n"),
                     count_measured_ok(&l));
    cJSON_Delete(j);
    free(jtext);
    free_lines(&l);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_paths_release(&rp);
}

static void test_run_with_sysmon(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct run_paths rp;
    run_paths_init(&rp, mock.port, "/v1/completions");
    char spath[600];
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", rp.out_dir);
    const char *args[] = {"--endpoint",
                          rp.url,
                          "--concurrency",
                          "2",
                          "--duration-s",
                          "1",
                          "--sysmon",
                          "--sysmon-interval-ms",
                          "100",
                          "--output-dir",
                          rp.out_dir,
                          "--prompts-dir",
                          rp.prompts,
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_cmd(args, &out, &err), 0);
    free(out);
    free(err);
    struct lines m = read_jsonl(rp.mpath), t = read_jsonl(spath);
    assert_true(m.n > 0);
    assert_true(t.n >= 5); /* one second of 100 ms ticks */
    /* One clock: the telemetry window covers the requests' window. */
    double m_first = sb_test_num(m.v[0], "ts"), m_last = sb_test_num(m.v[m.n - 1], "ts");
    double t_first = sb_test_num(t.v[0], "ts"), t_last = sb_test_num(t.v[t.n - 1], "ts");
    print_message("requests %.3f..%.3f, telemetry %.3f..%.3f\n", m_first, m_last, t_first, t_last);
    assert_true(t_first <= m_first + 0.15); /* the first tick is the next grid point */
    assert_true(t_last >= m_last - 0.15);
    free_lines(&m);
    free_lines(&t);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_paths_release(&rp);
}

/* The config's telemetry: section reaches the sampler: Prometheus scrapes and dynkv.jsonl. */
static void test_run_sysmon_from_config(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct run_paths rp;
    run_paths_init(&rp, mock.port, "/v1/completions");
    char cfg[600], spath[600], dpath[600];
    snprintf(cfg, sizeof(cfg), "%s/telemetry.yaml", rp.dir);
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", rp.out_dir);
    snprintf(dpath, sizeof(dpath), "%s/dynkv.jsonl", rp.out_dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f,
            "dynamo:\n  kv_block_size_bytes: 131072\n"
            "telemetry:\n  sysmon: true\n  cadence_ms: 100\n  enable_dynkv: true\n"
            "  collect_gpu: false\n  endpoints:\n    - http://127.0.0.1:%d/metrics\n",
            mock.port);
    fclose(f);
    const char *args[] = {"--config",      cfg,        "--endpoint",    rp.url,
                          "--concurrency", "2",        "--duration-s",  "1",
                          "--output-dir",  rp.out_dir, "--prompts-dir", rp.prompts,
                          "--quiet",       NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_cmd(args, &out, &err), 0);
    assert_null(strstr(err, "gpu")); /* collect_gpu: false turns the source off silently */
    free(out);
    free(err);
    struct lines t = read_jsonl(spath), d = read_jsonl(dpath);
    assert_true(t.n >= 5);
    int scraped = 0;
    for (int i = 0; i < t.n; i++) {
        const cJSON *prom = cJSON_GetObjectItemCaseSensitive(t.v[i], "prom");
        const cJSON *sc = prom ? cJSON_GetObjectItemCaseSensitive(prom, "scrapes") : NULL;
        const cJSON *s0 = sc ? cJSON_GetArrayItem(sc, 0) : NULL;
        if (s0 && sb_test_true(s0, "ok"))
            scraped++;
    }
    assert_int_equal(scraped, t.n); /* every tick scraped the mock */
    assert_true(d.n >= 5);          /* enable_dynkv: a dynkv line per tick, nulls included */
    assert_int_equal((int)sb_test_num(d.v[0], "kv_block_size_bytes"), 131072);
    free_lines(&t);
    free_lines(&d);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    run_paths_release(&rp);
}

static void test_smoke(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", mock.port);
    const char *a1[] = {bin, "smoke", "--endpoint", url, "--model", "sparkbench-mock", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(a1, &out, &err), 0);
    assert_non_null(strstr(out, "ready for benchmarking"));
    assert_non_null(strstr(out, "role chunk first"));
    assert_non_null(strstr(out, "usage chunk (choices: [])"));
    free(out);
    free(err);
    const char *a2[] = {bin, "smoke", "--endpoint", url, "--model", "not-served", NULL};
    assert_int_equal(sb_proc_run(a2, &out, &err), 1);
    assert_non_null(strstr(out, "'not-served' is not among the served names"));
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    const char *a3[] = {bin, "smoke", "--endpoint", url, NULL}; /* nobody listens any more */
    assert_int_equal(sb_proc_run(a3, &out, &err), 1);
    assert_non_null(strstr(out, "NOT READY"));
    free(out);
    free(err);
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
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_completions_stream),
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_faults_recorded),
        cmocka_unit_test(test_sigint_mid_run),
        cmocka_unit_test(test_open_loop_rate),
        cmocka_unit_test(test_config_errors_and_old_flags),
        cmocka_unit_test(test_refused_connection),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_threads_and_too_large),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_run_with_sysmon),
        cmocka_unit_test(test_run_sysmon_from_config),
        cmocka_unit_test(test_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
