/*
 * Integration tests for sessioned_chat across and around runs (issue 13, the end-to-end fixes):
 * the salt separates runs down to the shared system prompt, --prime happens before the measured
 * window (duration, schedule and working-set clock start when the last first turn is answered),
 * and with --history server on a mock that caches decode blocks the realized cached_tokens are
 * the oracle's reusable_tokens cut to whole KV blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 240

/* `sparkbench run` with the common sessioned_chat arguments, then extra (NULL-terminated). */
static int run_sessions(const struct sb_run_paths *p, const char *const *extra)
{
    const char *argv[80];
    int n = 0;
    const char *common[] = {
        bin,    "run",     "--endpoint",   p->url, "--workload", "sessioned_chat", "--output-dir",
        p->out, "--quiet", "--max-tokens", "16",   NULL};
    for (int i = 0; common[i]; i++)
        argv[n++] = common[i];
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        print_message("run failed (%d): %s\n", rc, err ? err : "");
    free(out);
    free(err);
    return rc;
}

/*
 * Three runs on one mock whose cache holds everything, one user, first turns only: a run with
 * another salt finds not one block of the run before (its first request's cached_tokens are 0,
 * the system prompt included); the same salt again finds its first prompt whole.
 */
static void test_salt_separates_runs(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--tier0-blocks", "100000", "--kv-block-tokens", "16", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    const char *salts[] = {"a1", "b2", "a1"};
    long long first_cached[3], first_prompt[3];
    for (int r = 0; r < 3; r++) {
        struct sb_run_paths p;
        sb_run_paths_init(&p, srcdir, "sess-salt", mock.port, "/v1/chat/completions");
        const char *extra[] = {"--sessions",
                               "2",
                               "--turns",
                               "1",
                               "--concurrency",
                               "1",
                               "--requests",
                               "2",
                               "--salt",
                               salts[r],
                               "--system-tokens",
                               "64",
                               "--session-context-tokens",
                               "32",
                               "--turn-tokens",
                               "16",
                               NULL};
        assert_int_equal(run_sessions(&p, extra), 0);
        int n;
        cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
        assert_int_equal(n, 2);
        assert_true(sb_test_true(v[0], "ok"));
        first_cached[r] = sb_test_int(v[0], "cached_tokens");
        first_prompt[r] = sb_test_int(v[0], "prompt_tokens");
        /* the oracle: nothing reusable in a run's first request, the system prompt after */
        assert_int_equal(sb_test_int(v[0], "reusable_tokens"), 0);
        assert_int_equal(sb_test_int(v[1], "reusable_tokens"), 64);
        print_message("run %d salt %s: first request cached %lld of %lld tokens\n", r, salts[r],
                      first_cached[r], first_prompt[r]);
        sb_test_free_jsonl(v, n);
        sb_run_paths_release(&p);
    }
    assert_int_equal(first_cached[0], 0);
    assert_int_equal(first_cached[1], 0); /* another salt: no block of run 0, not even the system */
    assert_true(first_cached[2] >= first_prompt[2] - 16); /* the same salt: run 0's prompt */
    sb_proc_stop(&mock, 15);
}

/*
 * --prime before the measured run: 24 first turns of 100 ms each on 2 users take longer than the
 * 1 s duration, which used to leave no measured window at all; now the window (throughput's and
 * measure_start_ts) starts after the last first turn's reply and is the whole duration, every
 * measured turn is scheduled in it, and the working set's clock starts there (prime samples are
 * negative). A second run: --requests counts measured turns only.
 */
static void test_prime_before_measure(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--prefill-base-ms", "100", "--decode-base-ms", "0", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-prime-dur", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "24",
                           "--turns",
                           "100",
                           "--concurrency",
                           "2",
                           "--prime",
                           "--duration-s",
                           "1",
                           "--system-tokens",
                           "16",
                           "--session-context-tokens",
                           "16",
                           "--turn-tokens",
                           "8",
                           NULL};
    assert_int_equal(run_sessions(&p, extra), 0);
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_non_null(rj);
    cJSON *tp = cJSON_GetObjectItem(rj, "throughput");
    double w0 = sb_test_num(tp, "window_start_mono_ns"), w1 = sb_test_num(tp, "window_end_mono_ns");
    double ms0 = sb_test_num(rj, "measure_start_ts"), st = sb_test_num(rj, "start_ts");
    print_message("prime %.3f s, measured window %.3f s of 1 s\n", ms0 - st, (w1 - w0) / 1e9);
    assert_true(w1 - w0 >= 1e9);
    assert_true(ms0 - st >= 24 / 2 * 0.1 - 0.01); /* the prime came first, outside the window */
    int n, nprime = 0, nmeasure = 0;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    for (int i = 0; i < n; i++) {
        const char *phase = sb_test_str(v[i], "phase");
        if (strcmp(phase, "prime") == 0) {
            nprime++;
            assert_true(sb_test_num(v[i], "t_last_byte_ns") <= w0);
        } else {
            assert_string_equal(phase, "measure");
            nmeasure++;
            assert_true(sb_test_num(v[i], "t_sched_ns") >= w0);
        }
    }
    assert_int_equal(nprime, 24);
    assert_true(nmeasure > 0);
    /* working_set: t_s from measure_start_ts, so the prime's samples are before 0 */
    cJSON *ws = cJSON_GetObjectItem(cJSON_GetObjectItem(rj, "workload_state"), "working_set");
    int neg = 0, pos = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, ws)
    {
        double t = sb_test_num(e, "t_s");
        neg += t < 0;
        pos += t >= 0;
        assert_true(t <= (w1 - w0) / 1e9 + 30);
    }
    assert_true(neg >= 1);
    assert_true(pos >= 1);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    sb_run_paths_release(&p);

    /* --requests 5 after a prime of 6: 5 measured turns */
    sb_run_paths_init(&p, srcdir, "sess-prime-req", mock.port, "/v1/chat/completions");
    const char *extra2[] = {
        "--sessions", "6",       "--turns",         "10", "--concurrency", "3", "--requests",
        "5",          "--prime", "--system-tokens", "8",  "--turn-tokens", "8", NULL};
    assert_int_equal(run_sessions(&p, extra2), 0);
    v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 11);
    for (int i = 0; i < n; i++)
        assert_string_equal(sb_test_str(v[i], "phase"), i < 6 ? "prime" : "measure");
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/*
 * Open loop, one session: 40 arrivals 25 ms apart (1 s), turns of at least 50 ms, so arrivals wait
 * for the session, which is in flight. A waiting arrival is woken when a turn ends, so it waits at
 * most once per turn end and once more: waits <= 40 x (turns + 1). Polling every millisecond (as
 * before) made it thousands.
 */
static void test_open_loop_wakes(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--prefill-base-ms", "50", "--decode-base-ms", "0", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-wake", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "1",
                           "--turns",
                           "1000",
                           "--rate",
                           "40",
                           "--arrival",
                           "constant",
                           "--duration-s",
                           "1",
                           "--system-tokens",
                           "8",
                           "--session-context-tokens",
                           "8",
                           "--turn-tokens",
                           "8",
                           NULL};
    assert_int_equal(run_sessions(&p, extra), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_true(n >= 2);
    for (int i = 0; i < n; i++)
        assert_int_equal(sb_test_int(v[i], "turn"), i + 1);
    cJSON *rj = sb_test_read_json(p.runjson);
    double waits = sb_test_num(cJSON_GetObjectItem(rj, "workload_state"), "waits");
    print_message("%g waits for a ready session, %d turns, 40 arrivals\n", waits, n);
    assert_true(waits >= 1);
    assert_true(waits <= 40.0 * (n + 1));
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* The --log line of the mock whose x_request_id is id (NULL when none). */
static cJSON *mock_log_line(const char *path, const char *id)
{
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    cJSON *found = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        if (strcmp(sb_test_str(j, "x_request_id"), id) == 0)
            found = j;
        else
            cJSON_Delete(j);
    }
    free(text);
    return found;
}

/*
 * --history server on a mock that caches decode blocks and holds everything: the realized
 * cached_tokens are exactly the oracle's reusable_tokens cut to whole KV blocks (the reply's KV
 * included, less its last sampled token, whose KV is never computed, when it ended by length),
 * and the mock's own tier hits (its --log line, as in x-mock-tier-hits) say the same.
 */
static void test_server_history_cached_exact(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "sess-dec");
    char logp[400];
    snprintf(logp, sizeof(logp), "%s/mock.log", dir);
    struct sb_proc mock;
    const char *ma[] = {"--tier0-blocks",
                        "100000",
                        "--kv-block-tokens",
                        "8",
                        "--cache-decode",
                        "--log",
                        logp,
                        NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-dec", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "3",
                           "--turns",
                           "6",
                           "--concurrency",
                           "1",
                           "--requests",
                           "18",
                           "--history",
                           "server",
                           "--system-tokens",
                           "40",
                           "--session-context-tokens",
                           "60",
                           "--turn-tokens",
                           "10",
                           NULL};
    assert_int_equal(run_sessions(&p, extra), 0);
    sb_proc_stop(&mock, 15); /* the log is complete once the mock has stopped */
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 18);
    long long prev_prompt[3] = {-1, -1, -1};
    int reply_reused = 0;
    long long cached_sum = 0, reuse_sum = 0;
    for (int i = 0; i < n; i++) {
        assert_true(sb_test_true(v[i], "ok"));
        long long reuse = sb_test_int(v[i], "reusable_tokens"),
                  cached = sb_test_int(v[i], "cached_tokens");
        long long s = sb_test_int(v[i], "session"), t = sb_test_int(v[i], "turn");
        if (cached != reuse / 8 * 8)
            fail_msg("record %d (session %lld turn %lld, %s): cached %lld, reusable %lld", i, s, t,
                     sb_test_str(v[i], "finish_reason"), cached, reuse);
        cJSON *lj = mock_log_line(logp, sb_test_str(v[i], "request_id"));
        assert_non_null(lj);
        assert_int_equal(sb_test_int(lj, "cached_tokens"), cached);
        assert_int_equal(sb_test_int(lj, "kv_hit_t0") * 8, cached);
        assert_int_equal(sb_test_int(lj, "kv_hit_t1") + sb_test_int(lj, "kv_hit_t2"), 0);
        cJSON_Delete(lj);
        if (s >= 0 && s < 3) {
            if (t > 1 && cached > prev_prompt[s] / 8 * 8)
                reply_reused++; /* more than the previous prompt: the reply's blocks */
            prev_prompt[s] = sb_test_int(v[i], "prompt_tokens");
        }
        cached_sum += cached;
        reuse_sum += reuse;
    }
    print_message("oracle reusable %lld, mock cached %lld tokens; %d turns reused reply KV\n",
                  reuse_sum, cached_sum, reply_reused);
    assert_true(reply_reused > 0);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BIN SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_salt_separates_runs),
        cmocka_unit_test(test_prime_before_measure),
        cmocka_unit_test(test_server_history_cached_exact),
        cmocka_unit_test(test_open_loop_wakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
