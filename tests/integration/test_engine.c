/*
 * Integration tests of the load generator's engine as a reviewer found it wanting: --threads runs
 * that must end (and answer SIGTERM), throughput over a window without the drain (the same number
 * in run.json, run's summary and analyze), one in-flight limit and one arrival schedule shared by
 * every thread, the send stamp taken when the request leaves, TTFB of the final response (not of
 * an interim 103), and --ramp-up-s. Real `sparkbench mock` / `run` / `analyze` processes, and a
 * scripted server for what the mock does not do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 60.0 /* a run that has not ended by then hangs: the test fails */

static const char *const fast_mock[] = {"--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "1",
                                        "--decode-per-seq-us",
                                        "0",
                                        NULL};

/* `sparkbench run --endpoint URL --output-dir OUT --prompts-dir P --quiet <args>` with a limit. */
static int run_limited(const struct sb_run_paths *p, const char *const *args, char **out,
                       char **err)
{
    const char *argv[96];
    int n = 0;
    const char *head[] = {bin,    "run",           "--endpoint", p->url, "--output-dir",
                          p->out, "--prompts-dir", p->prompts,   NULL};
    for (int i = 0; head[i]; i++)
        argv[n++] = head[i];
    for (int i = 0; args[i] && n < 95; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sb_proc_run_limit(argv, out, err, RUN_LIMIT_S);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- 1. --threads runs end, and answer signals ---- */

static void expect_clean_end(const struct sb_run_paths *p, const char *const *args, const char *why)
{
    char *out = NULL, *err = NULL;
    int rc = run_limited(p, args, &out, &err);
    if (rc == -2)
        fail_msg("%s: still running after %.0f s (hung)", why, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("%s: exit %d: %s", why, rc, err ? err : "");
    cJSON *rj = sb_test_read_json(p->runjson);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "duration");
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p->metrics, &n);
    assert_int_equal((int)sb_test_num(cJSON_GetObjectItemCaseSensitive(rj, "counts"), "sent"), n);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    free(out);
    free(err);
    sb_test_rm_rf(p->out);
}

static void test_threads_end(void **state)
{
    (void)state;
    /* Early EOS: users finish at different times, so loops end at different times. */
    const char *margs[] = {"--eos-prob", "0.3", "--decode-base-ms", "2", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "thr", mock.port, "/v1/completions");
    const char *closed[] = {"--concurrency", "2",   "--threads", "2",
                            "--duration-s",  "1.5", "--quiet",   NULL};
    for (int i = 0; i < 4; i++)
        expect_clean_end(&p, closed, "closed loop, 2 users on 2 threads");
    const char *open[] = {"--rate",    "100", "--arrival",    "gamma", "--burstiness", "0.1",
                          "--threads", "8",   "--duration-s", "1.5",   "--quiet",      NULL};
    for (int i = 0; i < 2; i++)
        expect_clean_end(&p, open, "open loop, gamma 0.1 on 8 threads");
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

static pid_t spawn_run(const struct sb_run_paths *p, const char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        const char *argv[96];
        int n = 0;
        const char *head[] = {bin,    "run",           "--endpoint", p->url, "--output-dir",
                              p->out, "--prompts-dir", p->prompts,   NULL};
        for (int i = 0; head[i]; i++)
            argv[n++] = head[i];
        for (int i = 0; args[i] && n < 95; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to limit_s; its exit code, 128+signal, or -2 after killing a hung one. */
static int wait_limited(pid_t pid, double limit_s)
{
    int status = 0;
    for (int i = 0; i < (int)(limit_s * 100); i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -2;
}

static void wait_for_records(const char *path)
{
    struct stat st = {0};
    for (int i = 0; i < 1000; i++) {
        if (stat(path, &st) == 0 && st.st_size > 0)
            return;
        usleep(10000);
    }
    fail_msg("no records in '%s' after 10 s", path);
}

/* Waits (up to 20 s) until the mock reports n requests running. */
static void wait_running(int port, int n)
{
    char url[100], want[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    snprintf(want, sizeof(want), "mock:num_requests_running %d\n", n);
    for (int i = 0; i < 2000; i++) {
        struct sb_http_resp r;
        bool seen = sb_http("GET", url, NULL, &r) == 0 && r.body && strstr(r.body, want);
        sb_http_resp_release(&r);
        if (seen)
            return;
        usleep(10000);
    }
    fail_msg("the mock never had %d requests running", n);
}

static void test_threads_signals(void **state)
{
    (void)state;
    /* Slow streams (20 tokens x 100 ms): a drain of 60 s would outlast the test's limits. */
    const char *margs[] = {"--decode-base-ms", "100", "--prefill-base-ms", "0", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sig", mock.port, "/v1/completions");

    /* SIGTERM ends a 4-thread run: 143, run.json written. */
    const char *a1[] = {
        "--concurrency", "8", "--threads", "4", "--duration-s", "120", "--max-tokens", "2",
        "--drain-s",     "5", NULL};
    pid_t pid = spawn_run(&p, a1);
    wait_for_records(p.metrics);
    kill(pid, SIGTERM);
    int rc = wait_limited(pid, 20);
    assert_int_equal(rc, 143);
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "sigterm");
    cJSON_Delete(rj);
    sb_test_rm_rf(p.out);

    /* A second SIGINT abandons a long drain: 130 well before the 60 s drain would end. */
    const char *a2[] = {"--concurrency",
                        "4",
                        "--threads",
                        "2",
                        "--duration-s",
                        "120",
                        "--max-tokens",
                        "40",
                        "--drain-s",
                        "60",
                        "--extra-body",
                        "{\"ignore_eos\": true}",
                        NULL};
    pid = spawn_run(&p, a2);
    /* Signal only once the 4 requests are at the server (each takes 4 s): the run's signal
       handling is set up by then (a fixed sleep raced a slow start under ASan). */
    wait_running(mock.port, 4);
    kill(pid, SIGINT);
    usleep(300000);
    kill(pid, SIGINT);
    rc = wait_limited(pid, 20);
    assert_int_equal(rc, 130);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    int cancelled = 0;
    for (int i = 0; i < n; i++)
        cancelled += sb_test_str(v[i], "error") && !strcmp(sb_test_str(v[i], "error"), "cancelled");
    assert_int_equal(cancelled, 4); /* every in-flight request is a record */
    sb_test_free_jsonl(v, n);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* ---- 2. throughput: completions inside a window without the drain ---- */

static void test_throughput_window(void **state)
{
    (void)state;
    /* 20 tokens at 20 ms a step: ~0.4 s a request, so the drain is long enough to matter. */
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-base-ms",
                           "20",
                           "--decode-per-seq-us",
                           "0",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "tput", mock.port, "/v1/completions");
    const char *args[] = {
        "--concurrency", "4", "--max-tokens", "20", "--duration-s", "3", "--warmup-s", "1", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    cJSON *rj = sb_test_read_json(p.runjson);
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(rj, "throughput");
    if (!cJSON_IsObject(tp))
        fail_msg("run.json has no throughput object");
    double w0 = sb_test_num(tp, "window_start_mono_ns"), w1 = sb_test_num(tp, "window_end_mono_ns");
    /* The window is the measured sending period: duration minus warm-up, not the drain. */
    assert_true(fabs((w1 - w0) / 1e9 - 2.0) < 1e-9);
    assert_true(fabs(sb_test_num(tp, "window_s") - 2.0) < 1e-9);
    assert_true(
        fabs(sb_test_num(rj, "measure_end_ts") - sb_test_num(rj, "measure_start_ts") - 2.0) < 1e-6);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    int inside = 0, tokens = 0;
    double last_done = 0;
    for (int i = 0; i < n; i++) {
        double done = sb_test_num(v[i], "t_last_byte_ns");
        if (done > last_done)
            last_done = done;
        if (sb_test_true(v[i], "ok") && done >= w0 && done < w1) {
            inside++;
            tokens += (int)sb_test_num(v[i], "output_tokens");
        }
    }
    assert_true(last_done > w1); /* there was a drain, and it is left out */
    assert_int_equal((int)sb_test_num(tp, "completed"), inside);
    assert_int_equal((int)sb_test_num(tp, "output_tokens"), tokens);
    double rps = inside / 2.0;
    print_message("throughput: %d completions in the 2 s window: %.3f req/s (run.json %.3f)\n",
                  inside, rps, sb_test_num(tp, "req_s"));
    assert_true(fabs(sb_test_num(tp, "req_s") - rps) < 1e-9);
    assert_true(fabs(sb_test_num(tp, "tok_s") - tokens / 2.0) < 1e-9);
    /* The summary line prints the same figure. */
    char want[64];
    snprintf(want, sizeof(want), "%.1f req/s achieved", rps);
    if (!strstr(out, want))
        fail_msg("summary does not say '%s':\n%s", want, out);

    /* analyze computes the same number from the same records. */
    char an[600], uw[600];
    snprintf(an, sizeof(an), "%s/an", p.dir);
    snprintf(uw, sizeof(uw), "%s/uwork.txt", p.dir);
    const char *aargv[] = {bin,       "analyze", p.out,          "--out",   an,
                           "--uwork", uw,        "--no-figures", "--quiet", NULL};
    char *aout = NULL, *aerr = NULL;
    rc = sb_proc_run_limit(aargv, &aout, &aerr, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, aerr);
    char sj[700];
    snprintf(sj, sizeof(sj), "%s/summary.json", p.out);
    cJSON *s = sb_test_read_json(sj);
    const cJSON *rates = s;
    if (isnan(sb_test_num(rates, "achieved_rps")))
        rates = cJSON_GetObjectItemCaseSensitive(s, "rates");
    print_message("analyze: achieved_rps %.6f, output_tok_s %.6f\n",
                  sb_test_num(rates, "achieved_rps"), sb_test_num(rates, "output_tok_s"));
    assert_true(fabs(sb_test_num(rates, "achieved_rps") - rps) < 1e-9);
    assert_true(fabs(sb_test_num(rates, "output_tok_s") - tokens / 2.0) < 1e-9);
    cJSON_Delete(s);
    free(aout);
    free(aerr);
    sb_test_free_jsonl(v, n);
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* ---- 3. one in-flight limit and one arrival schedule across threads ---- */

/* The most requests in flight at once, from each record's [t_send_ns, t_last_byte_ns]. */
static int max_overlap(cJSON **v, int n)
{
    double *ev = malloc((size_t)(2 * n + 1) * sizeof(double));
    int k = 0;
    for (int i = 0; i < n; i++) {
        double s = sb_test_num(v[i], "t_send_ns"), e = sb_test_num(v[i], "t_last_byte_ns");
        if (isnan(s) || isnan(e))
            continue;
        ev[k++] = s * 2 + 1; /* odd: a start; ends sort first on equal times */
        ev[k++] = e * 2;
    }
    qsort(ev, (size_t)k, sizeof(double), cmp_double);
    int cur = 0, best = 0;
    for (int i = 0; i < k; i++) {
        cur += fmod(ev[i], 2) != 0 ? 1 : -1;
        best = cur > best ? cur : best;
    }
    free(ev);
    return best;
}

static void test_shared_inflight_limit(void **state)
{
    (void)state;
    /* 0.5 s a request at 40 arrivals/s: demand is ~20 in flight, the limit is 10. */
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-base-ms",
                           "50",
                           "--decode-per-seq-us",
                           "0",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "infl", mock.port, "/v1/completions");
    const char *threads[] = {"1", "3", "4"};
    for (size_t t = 0; t < 3; t++) {
        const char *args[] = {"--rate",         "40",  "--arrival",    "constant",
                              "--max-inflight", "10",  "--threads",    threads[t],
                              "--duration-s",   "1.5", "--max-tokens", "10",
                              "--quiet",        NULL};
        char *out = NULL, *err = NULL;
        int rc = run_limited(&p, args, &out, &err);
        if (rc != 0)
            fail_msg("run exited %d: %s", rc, err);
        int n = 0;
        cJSON **v = sb_test_read_jsonl(p.metrics, &n);
        int m = max_overlap(v, n);
        print_message("--max-inflight 10 on %s threads: at most %d in flight (%d requests)\n",
                      threads[t], m, n);
        assert_int_equal(m, 10);
        sb_test_free_jsonl(v, n);
        free(out);
        free(err);
        sb_test_rm_rf(p.out);
    }
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* The sorted gaps between intended send times of a run. */
static double *sched_gaps(const char *metrics, int *ngaps)
{
    int n = 0;
    cJSON **v = sb_test_read_jsonl(metrics, &n);
    double *t = malloc((size_t)(n + 1) * sizeof(double));
    for (int i = 0; i < n; i++)
        t[i] = sb_test_num(v[i], "t_sched_ns");
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    for (int i = 1; i < n; i++)
        t[i - 1] = t[i] - t[i - 1];
    *ngaps = n > 0 ? n - 1 : 0;
    sb_test_free_jsonl(v, n);
    return t;
}

static double cv_of(const double *g, int n)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += g[i];
    double mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (g[i] - mean) * (g[i] - mean);
    return sqrt(s2 / n) / mean;
}

static void test_one_arrival_schedule(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sched", mock.port, "/v1/completions");
    double *gaps[2];
    int ngaps[2];
    const char *threads[] = {"1", "8"};
    for (int t = 0; t < 2; t++) {
        const char *args[] = {"--rate",       "300", "--arrival", "gamma",    "--burstiness", "0.1",
                              "--seed",       "7",   "--threads", threads[t], "--duration-s", "2",
                              "--max-tokens", "2",   "--quiet",   NULL};
        char *out = NULL, *err = NULL;
        int rc = run_limited(&p, args, &out, &err);
        if (rc != 0)
            fail_msg("run exited %d: %s", rc, err);
        gaps[t] = sched_gaps(p.metrics, &ngaps[t]);
        print_message("gamma k=0.1 on %s thread(s): %d arrivals, CV of gaps %.2f\n", threads[t],
                      ngaps[t] + 1, cv_of(gaps[t], ngaps[t]));
        free(out);
        free(err);
        sb_test_rm_rf(p.out);
    }
    /* The same seed draws the same schedule, however many threads send it. */
    assert_int_equal(ngaps[0], ngaps[1]);
    for (int i = 0; i < ngaps[0]; i++)
        if (gaps[0][i] != gaps[1][i])
            fail_msg("gap %d differs: %.0f ns on 1 thread, %.0f ns on 8", i, gaps[0][i],
                     gaps[1][i]);
    assert_true(cv_of(gaps[1], ngaps[1]) > 2.0); /* CV of a gamma k=0.1 is 3.16 */
    free(gaps[0]);
    free(gaps[1]);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* ---- 4. the send stamp is when the request leaves ---- */

static char completion_body[] =
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}";

static void ok_response(char *buf, size_t cap)
{
    snprintf(buf, cap,
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(completion_body), completion_body);
}

/* One request to a listener whose accept queue is full for 1.5 s (the client's SYN waits until
   the queue drains); extra: more run flags. Returns the record and run.json (free both). */
static void late_send_run(const char *const *extra, cJSON **rec, cJSON **rj,
                          uint64_t *first_accept_ns)
{
    char resp[1024];
    ok_response(resp, sizeof(resp));
    struct sb_script_step steps[] = {{0, resp}, {0, NULL}};
    struct sb_script_server s = {
        .steps = steps, .backlog = 0, .accept_delay_ms = 1500, .close_after_response = true};
    assert_int_equal(sb_script_server_start(&s), 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(filler, (struct sockaddr *)&a, sizeof(a)), 0);
    close(filler); /* still queued: accept() takes it and reads EOF */
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "send", s.port, "/v1/completions");
    const char *args[16] = {"--requests", "1", "--no-stream", "--quiet", "--no-server-state"};
    for (int i = 0, n = 5; extra[i] && n < 15; i++)
        args[n++] = extra[i];
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    assert_int_equal(n, 1);
    *rec = v[0];
    free(v);
    *rj = sb_test_read_json(p.runjson);
    *first_accept_ns = s.first_accept_ns;
    free(out);
    free(err);
    sb_script_server_stop(&s);
    sb_run_paths_release(&p);
}

static void test_send_stamp(void **state)
{
    (void)state;
    cJSON *rec, *rj;
    uint64_t first_accept;
    const char *none[] = {NULL};
    late_send_run(none, &rec, &rj, &first_accept);
    assert_true(sb_test_true(rec, "ok"));
    double sched = sb_test_num(rec, "t_sched_ns"), send = sb_test_num(rec, "t_send_ns");
    print_message("accept queue full for 1.5 s: sched delay %.1f ms, sent %.1f ms after the "
                  "listener first accepted\n",
                  sb_test_num(rec, "lat_sched_delay_ms"), (send - (double)first_accept) / 1e6);
    /* The request cannot have left before the listener made room for its connection. */
    assert_true(send >= (double)first_accept);
    assert_true(sb_test_num(rec, "lat_sched_delay_ms") >= 1000);
    assert_true(fabs((send - sched) / 1e6 - sb_test_num(rec, "lat_sched_delay_ms")) < 0.001);
    /* A measured request that waited: the client fell behind, and run.json says so. */
    const cJSON *lag = cJSON_GetObjectItemCaseSensitive(rj, "client_lag");
    assert_int_equal((int)sb_test_num(lag, "late_sends"), 1);
    assert_true(sb_test_true(lag, "fell_behind"));
    cJSON_Delete(rec);
    cJSON_Delete(rj);

    /* The same wait in warm-up is not the measurement's lag (a start-up burst of connects). */
    const char *warm[] = {"--warmup-s", "30", NULL};
    late_send_run(warm, &rec, &rj, &first_accept);
    assert_string_equal(sb_test_str(rec, "phase"), "warmup");
    assert_true(sb_test_num(rec, "lat_sched_delay_ms") >= 1000);
    lag = cJSON_GetObjectItemCaseSensitive(rj, "client_lag");
    assert_int_equal((int)sb_test_num(lag, "late_sends"), 0);
    assert_false(sb_test_true(lag, "fell_behind"));
    cJSON_Delete(rec);
    cJSON_Delete(rj);
}

/* ---- 5. TTFB is the final response's first byte ---- */

static void test_ttfb_after_interim(void **state)
{
    (void)state;
    char resp[1024];
    ok_response(resp, sizeof(resp));
    struct sb_script_step steps[] = {
        {0, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"},
        {300, resp},
        {0, NULL}};
    struct sb_script_server s = {.steps = steps, .backlog = 16};
    assert_int_equal(sb_script_server_start(&s), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "ttfb", s.port, "/v1/completions");
    const char *args[] = {"--requests", "1", "--no-stream", "--quiet", "--no-server-state", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    assert_int_equal(n, 1);
    if (!sb_test_true(v[0], "ok"))
        fail_msg("not ok: %s", sb_test_str(v[0], "error_msg"));
    print_message("103 at once, 200 after 300 ms: TTFB %.1f ms, E2E %.1f ms\n",
                  sb_test_num(v[0], "lat_ttfb_ms"), sb_test_num(v[0], "lat_e2e_ms"));
    assert_true(sb_test_num(v[0], "lat_ttfb_ms") >= 300);
    assert_true(sb_test_num(v[0], "lat_ttfb_ms") <= sb_test_num(v[0], "lat_e2e_ms"));
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_script_server_stop(&s);
    sb_run_paths_release(&p);
}

/* ---- 8. --ramp-up-s ---- */

static void test_ramp_up(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "ramp", mock.port, "/v1/completions");

    /* Closed loop: user i starts at i x ramp / users. */
    const char *a1[] = {"--concurrency", "4", "--ramp-up-s", "2",  "--duration-s", "3",
                        "--max-tokens",  "2", "--think-ms",  "50", "--quiet",      NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, a1, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    double first[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    for (int i = 0; i < n; i++) {
        int u = (int)sb_test_num(v[i], "user");
        assert_true(u >= 0 && u < 4);
        double t = sb_test_num(v[i], "t_sched_ns");
        first[u] = t < first[u] ? t : first[u];
    }
    double t0 = first[0];
    for (int u = 0; u < 4; u++)
        assert_true(fabs(first[u] - t0 - u * 0.5e9) < 1.0); /* intended times: exact */
    int ramp = 0, measure = 0;
    for (int i = 0; i < n; i++) {
        const char *ph = sb_test_str(v[i], "phase");
        bool in_ramp = sb_test_num(v[i], "t_sched_ns") < t0 + 2e9;
        assert_string_equal(ph, in_ramp ? "ramp" : "measure");
        ramp += in_ramp;
        measure += !in_ramp;
    }
    assert_true(ramp > 0 && measure > 0);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_test_rm_rf(p.out);

    /* Open loop: the rate climbs linearly, so the ramp's first second gets a quarter of its
       arrivals (Lambda(t) = R t^2 / 2T). */
    const char *a2[] = {"--rate",       "100", "--arrival",    "constant", "--ramp-up-s", "2",
                        "--duration-s", "3",   "--max-tokens", "2",        "--quiet",     NULL};
    rc = run_limited(&p, a2, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    v = sb_test_read_jsonl(p.metrics, &n);
    t0 = INFINITY;
    for (int i = 0; i < n; i++)
        t0 = fmin(t0, sb_test_num(v[i], "t_sched_ns"));
    int per_s[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        int s = (int)((sb_test_num(v[i], "t_sched_ns") - t0) / 1e9);
        if (s >= 0 && s < 3)
            per_s[s]++;
    }
    print_message("rate 100 ramped over 2 s: %d, %d, %d arrivals in seconds 1-3\n", per_s[0],
                  per_s[1], per_s[2]);
    assert_true(abs(per_s[0] - 25) <= 1);
    assert_true(abs(per_s[1] - 75) <= 1);
    assert_true(abs(per_s[2] - 100) <= 1);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* Open loop, the window ends when sending did: with a backlog (2 in flight at 500/s), the last
   requests leave long after their intended times, and they are still the sending period. */
static void test_open_loop_window_to_last_send(void **state)
{
    (void)state;
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-base-ms",
                           "5",
                           "--decode-per-seq-us",
                           "0",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "olwin", mock.port, "/v1/completions");
    const char *args[] = {"--rate",    "500", "--requests",   "50", "--max-inflight", "2",
                          "--threads", "8",   "--max-tokens", "3",  "--quiet",        NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    double last_send = 0, last_sched = 0;
    for (int i = 0; i < n; i++) {
        last_send = fmax(last_send, sb_test_num(v[i], "t_send_ns"));
        last_sched = fmax(last_sched, sb_test_num(v[i], "t_sched_ns"));
    }
    cJSON *rj = sb_test_read_json(p.runjson);
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(rj, "throughput");
    double w1 = sb_test_num(tp, "window_end_mono_ns");
    print_message("last intended send +%.1f ms, last actual send +%.1f ms, window end +%.1f ms "
                  "(from the last intended send); %.0f completed in the window\n",
                  0.0, (last_send - last_sched) / 1e6, (w1 - last_sched) / 1e6,
                  sb_test_num(tp, "completed"));
    assert_int_equal(n, 50);
    assert_true(w1 >= last_send);
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* Open loop on many threads ends at its duration: a loop does not sleep until its next arrival
   when that arrival is past the end (at 1 req/s on 16 loops, each loop's next one is ~16 s off). */
static void test_open_loop_threads_end_on_time(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "oltail", mock.port, "/v1/completions");
    const char *args[] = {"--rate",       "1", "--duration-s", "2", "--threads", "16",
                          "--max-tokens", "2", "--quiet",      NULL};
    const char *argv[32] = {bin,   "run",           "--endpoint", p.url, "--output-dir",
                            p.out, "--prompts-dir", p.prompts};
    int k = 8;
    for (int i = 0; args[i]; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    char *out = NULL, *err = NULL;
    /* 2 s of sending and a few ms of requests: 8 s is four times that, and the old tail was
       17-21 s. */
    int rc = sb_proc_run_limit(argv, &out, &err, 8);
    if (rc == -2)
        fail_msg("a 2 s open-loop run on 16 threads was still running after 8 s");
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
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
        cmocka_unit_test(test_threads_end),
        cmocka_unit_test(test_threads_signals),
        cmocka_unit_test(test_throughput_window),
        cmocka_unit_test(test_shared_inflight_limit),
        cmocka_unit_test(test_one_arrival_schedule),
        cmocka_unit_test(test_send_stamp),
        cmocka_unit_test(test_ttfb_after_interim),
        cmocka_unit_test(test_ramp_up),
        cmocka_unit_test(test_open_loop_window_to_last_send),
        cmocka_unit_test(test_open_loop_threads_end_on_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
