/*
 * The fault matrix: `sparkbench run` against a mock that misbehaves in one way at a time, and the
 * run's own environment failing (signals at several moments, a file-size limit, an unwritable or
 * impossible results directory, a missing prompt, config errors of every kind, a telemetry
 * endpoint that never answers, /proc files missing). For each: every request is accounted for
 * (run.json's sent = ok + errors = the lines of metrics.jsonl), every line parses, every error
 * record has the kind the fault calls for, `analyze` accepts the run, and the exit code, run.json's
 * exit_reason and stderr say what happened. test_mock_faults.c checks the faults on the wire and
 * test_run.c a mixed-fault run joined to the mock's log; this file runs one fault kind per run.
 * No assertion is on timing: sleeps only pick moments, and limits only turn a hang into a failure.
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
#include <errno.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

static const cJSON *at(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* `sparkbench run <args>` with a hang guard; returns the exit code. */
static int run_sb(const char *const *args, char **out, char **err)
{
    const char *argv[80];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 79; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = sb_proc_run_limit(argv, out, err, 120);
    if (rc == -2)
        fail_msg("'%s %s' still running after 120 s", bin, args[0]);
    return rc;
}

/*
 * What one run left, checked for consistency: run.json parses, its counts add up (sent = ok +
 * errors, errors_by_kind sums to errors) and match metrics.jsonl line for line (every line
 * parses: sb_test_read_jsonl fails the test otherwise). Fills the counts; returns run.json.
 */
struct tally {
    int lines, ok, errors;
    int by_kind_lines; /* error lines whose kind is `want` */
};

static cJSON *check_run(const struct sb_run_paths *rp, const char *want_kind, struct tally *t)
{
    memset(t, 0, sizeof(*t));
    cJSON *rj = sb_test_read_json(rp->runjson);
    const cJSON *c = at(rj, "counts");
    assert_non_null(c);
    long long sent = sb_test_int(c, "sent"), ok = sb_test_int(c, "ok"),
              errors = sb_test_int(c, "errors");
    int n = 0;
    cJSON **v = sb_test_read_jsonl(rp->metrics, &n);
    t->lines = n;
    for (int i = 0; i < n; i++) {
        if (sb_test_true(v[i], "ok")) {
            t->ok++;
            continue;
        }
        t->errors++;
        const char *e = sb_test_str(v[i], "error");
        assert_non_null(e);
        assert_non_null(sb_test_str(v[i], "error_msg"));
        if (want_kind && strcmp(e, want_kind) != 0)
            fail_msg("line %d: error '%s' (%s), want '%s'", i + 1, e,
                     sb_test_str(v[i], "error_msg"), want_kind);
        t->by_kind_lines += want_kind != NULL;
    }
    sb_test_free_jsonl(v, n);
    if (sent != ok + errors || ok != t->ok || errors != t->errors || sent != n)
        fail_msg("run.json: sent %lld, ok %lld, errors %lld; metrics.jsonl: %d lines, %d ok, %d "
                 "errors",
                 sent, ok, errors, n, t->ok, t->errors);
    long long sum = 0;
    for (const cJSON *k = at(c, "errors_by_kind") ? at(c, "errors_by_kind")->child : NULL; k;
         k = k->next)
        sum += (long long)k->valuedouble;
    assert_int_equal(sum, errors);
    if (want_kind && errors)
        assert_int_equal(sb_test_int(at(c, "errors_by_kind"), want_kind), errors);
    return rj;
}

/* `sparkbench analyze` accepts the run: exit 0 and the run's summary.json parses. */
static void check_analyze(const struct sb_run_paths *rp)
{
    char an[600], sj[700];
    snprintf(an, sizeof(an), "%s/analysis", rp->dir);
    const char *args[] = {"analyze", rp->out, "--out", an, NULL};
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, err);
    snprintf(sj, sizeof(sj), "%s/summary.json", rp->out);
    cJSON_Delete(sb_test_read_json(sj));
    free(out);
    free(err);
}

/* ---- one fault kind per run ----------------------------------------------------------------- */

struct fault_case {
    const char *kinds;    /* --fault-kinds; NULL: no fault */
    const char *rate;     /* --fault-rate */
    const char *want;     /* the error kind of every failed record; NULL: all succeed */
    const char *extra[6]; /* extra run flags, NULL-terminated */
    int rc;               /* expected exit code */
    const char *stderr_has;
};

static void fault_case_run(const struct fault_case *fc)
{
    const char *margs[24] = {"--prefill-base-ms",
                             "0",
                             "--prefill-per-token-us",
                             "0",
                             "--decode-base-ms",
                             "1",
                             "--decode-per-seq-us",
                             "0",
                             "--fault-stall-ms",
                             "3000",
                             "--fault-slow-headers-ms",
                             "3000",
                             "--seed",
                             "7",
                             NULL};
    int m = 14;
    if (fc->kinds) {
        margs[m++] = "--fault-kinds";
        margs[m++] = fc->kinds;
        margs[m++] = "--fault-rate";
        margs[m++] = fc->rate;
    }
    margs[m] = NULL;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "matrix", mock.port, "/v1/chat/completions");
    const char *args[40] = {"run",
                            "--endpoint",
                            rp.url,
                            "--concurrency",
                            "4",
                            "--requests",
                            "16",
                            "--stream",
                            "--warmup-s",
                            "0",
                            "--output-dir",
                            rp.out,
                            "--prompts-dir",
                            rp.prompts,
                            "--connect-timeout-s",
                            "30"};
    int a = 16;
    for (int i = 0; fc->extra[i]; i++)
        args[a++] = fc->extra[i];
    args[a] = NULL;
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    if (rc != fc->rc)
        fail_msg("fault %s at %s: exit %d, want %d: %s", fc->kinds ? fc->kinds : "none", fc->rate,
                 rc, fc->rc, err);
    if (fc->stderr_has && !strstr(err, fc->stderr_has))
        fail_msg("fault %s: stderr lacks '%s': %s", fc->kinds, fc->stderr_has, err);
    struct tally t;
    cJSON *rj = check_run(&rp, fc->want, &t);
    assert_int_equal(t.lines, 16);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "completed");
    if (fc->want)
        assert_true(t.errors > 0);
    else
        assert_int_equal(t.errors, 0);
    /* The summary line says the same: counts, and the errors by kind. */
    char line[200];
    if (fc->want)
        snprintf(line, sizeof(line), "16 sent, %d ok, %d errors (%s %d)", t.ok, t.errors, fc->want,
                 t.errors);
    else
        snprintf(line, sizeof(line), "16 sent, 16 ok, 0 errors\n");
    if (!strstr(out, line))
        fail_msg("fault %s: the summary lacks '%s': %s", fc->kinds ? fc->kinds : "none", line, out);
    print_message("fault %-12s rate %-3s -> exit %d, %d ok, %d errors (%s)\n",
                  fc->kinds ? fc->kinds : "none", fc->rate ? fc->rate : "-", rc, t.ok, t.errors,
                  fc->want ? fc->want : "-");
    cJSON_Delete(rj);
    check_analyze(&rp);
    free(out);
    free(err);
    sb_run_paths_release(&rp);
}

static void test_each_fault_kind(void **state)
{
    (void)state;
    static const struct fault_case cases[] = {
        {"429", "0.5", "http", {NULL}, 0, NULL},
        {"500", "0.5", "http", {NULL}, 0, NULL},
        {"503", "0.5", "http", {NULL}, 0, NULL},
        {"trtllm_error", "0.5", "http", {NULL}, 0, NULL},
        {"close", "0.5", "truncated", {NULL}, 0, NULL},
        {"malformed", "0.5", "bad_json", {NULL}, 0, NULL},
        {"dynamo_error", "0.5", "stream_error", {NULL}, 0, NULL},
        /* 3 s stalls and slow headers against a 0.5 s request timeout. */
        {"stall", "0.5", "timeout", {"--timeout-s", "0.5", NULL}, 0, NULL},
        {"slow_headers", "0.5", "timeout", {"--timeout-s", "0.5", NULL}, 0, NULL},
        /* Every request fails: exit 3, one line naming the kind. */
        {"500", "1", "http", {NULL}, 3, "none of 16 requests succeeded (http 16)"},
        /* Over the error budget. */
        {"503", "0.5", "http", {"--max-error-rate", "0.1", NULL}, 3, "over --max-error-rate"},
        /* An oversized response (no fault from the mock). */
        {NULL,
         NULL,
         "too_large",
         {"--max-tokens", "200", "--max-response-bytes", "4096", NULL},
         3,
         "(too_large 16)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        fault_case_run(&cases[i]);
}

/* ---- the server killed with SIGKILL mid-run and restarted on the same port ------------------- */

static pid_t spawn_run(const char *const *args, const char *errpath)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        int fd = errpath ? open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644) : devnull;
        dup2(fd, 2);
        const char *argv[60];
        int n = 0;
        argv[n++] = bin;
        for (int i = 0; args[i] && n < 59; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid (SIGKILL after limit_s, failing the test); the exit code, 128+sig if killed. */
static int wait_limit(pid_t pid, double limit_s)
{
    int status;
    for (int i = 0; i < (int)(limit_s * 100); i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("process %d still running after %.0f s", (int)pid, limit_s);
    return -1;
}

static long long lines_in(const char *path)
{
    char *s = sb_test_read_file(path);
    if (!s)
        return 0;
    long long n = sb_test_count(s, "\n");
    free(s);
    return n;
}

static void test_server_killed_and_restarted(void **state)
{
    (void)state;
    const char *m1[] = {"--decode-base-ms", "5", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m1), 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", mock.port);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "killed", mock.port, "/v1/chat/completions");
    const char *args[] = {"run",
                          "--endpoint",
                          rp.url,
                          "--concurrency",
                          "4",
                          "--requests",
                          "300",
                          "--stream",
                          "--max-tokens",
                          "32",
                          "--warmup-s",
                          "0",
                          "--output-dir",
                          rp.out,
                          "--prompts-dir",
                          rp.prompts,
                          "--quiet",
                          NULL};
    pid_t pid = spawn_run(args, NULL);
    /* Kill the server once some records are written (flushed at least once a second). */
    for (int i = 0; i < 3000 && lines_in(rp.metrics) < 8; i++)
        usleep(10000);
    assert_true(lines_in(rp.metrics) >= 8);
    kill(mock.pid, SIGKILL);
    waitpid(mock.pid, NULL, 0);
    close(mock.out_fd);
    usleep(300000); /* some sends meet a closed port */
    const char *m2[] = {"--decode-base-ms", "5", "--port", port, NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, m2), 0);
    assert_int_equal(mock.port, atoi(port));
    int rc = wait_limit(pid, 120);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    assert_int_equal(rc, 0); /* some failed, most succeeded: within the default budget */
    struct tally t;
    cJSON *rj = check_run(&rp, NULL, &t);
    assert_int_equal(t.lines, 300);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "completed");
    /* The requests cut by the kill and those refused while it was down are errors of the kinds
       a dead server makes, and the run went on after the restart. */
    const cJSON *ek = at(at(rj, "counts"), "errors_by_kind");
    long long dead = 0;
    for (const cJSON *k = ek ? ek->child : NULL; k; k = k->next) {
        if (k->valuedouble > 0 && strcmp(k->string, "truncated") && strcmp(k->string, "connect") &&
            strcmp(k->string, "transport")) {
            char *text = sb_test_read_file(rp.metrics);
            char *line = text ? strstr(text, k->string) : NULL;
            fail_msg("error kind %s after a server kill: %.600s", k->string, line ? line : "");
        }
        dead += (long long)k->valuedouble;
    }
    print_message("server killed and restarted: %d ok, %d errors\n", t.ok, t.errors);
    assert_true(dead > 0);
    assert_true(t.ok > 8);
    cJSON_Delete(rj);
    check_analyze(&rp);
    sb_run_paths_release(&rp);
}

/* ---- SIGINT and SIGTERM at several moments ----------------------------------------------------
 */

/* One run stopped by sig at a moment: delay_us >= 0 microseconds after the start, or -1 as soon
   as the run directory exists, -2 as soon as metrics.jsonl exists, -3 once records are on disk.
   It exits 130/143, run.json says why, every request is accounted for and the only errors are
   the requests it cancelled. */
static void signal_at(int port, int sig, long delay_us)
{
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "signal", port, "/v1/completions");
    const char *args[] = {
        "run",  "--endpoint",    rp.url,     "--concurrency", "4",    "--duration-s",
        "60",   "--max-tokens",  "8",        "--drain-s",     "0.05", "--output-dir",
        rp.out, "--prompts-dir", rp.prompts, "--quiet",       NULL};
    pid_t pid = spawn_run(args, NULL);
    struct stat st;
    if (delay_us >= 0)
        usleep((useconds_t)delay_us);
    else if (delay_us == -1)
        for (int i = 0; i < 30000 && stat(rp.out, &st) != 0; i++)
            usleep(1000);
    else if (delay_us == -2)
        for (int i = 0; i < 30000 && stat(rp.metrics, &st) != 0; i++)
            usleep(1000);
    else
        for (int i = 0; i < 3000 && lines_in(rp.metrics) < 4; i++)
            usleep(10000);
    kill(pid, sig);
    int rc = wait_limit(pid, 60);
    const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    print_message("%s at moment %ld (<0: a file event, else us): exit %d\n", name, delay_us, rc);
    /* Before main() installs nothing and blocks nothing (the loader's first tens of ms), a
       signal kills the process as the default action does: no run directory, nothing lost. */
    if (rc == 128 + sig && stat(rp.out, &st) != 0) {
        sb_run_paths_release(&rp);
        return;
    }
    if (rc != (sig == SIGTERM ? 143 : 130))
        fail_msg("%s after %ld us: exit %d", name, delay_us, rc);
    struct tally t;
    cJSON *rj = check_run(&rp, NULL, &t);
    assert_string_equal(sb_test_str(rj, "exit_reason"), sig == SIGTERM ? "sigterm" : "sigint");
    /* A stopped run's failures are the requests it cancelled. */
    const cJSON *ek = at(at(rj, "counts"), "errors_by_kind");
    for (const cJSON *k = ek ? ek->child : NULL; k; k = k->next)
        if (k->valuedouble > 0 && strcmp(k->string, "cancelled") != 0)
            fail_msg("%s after a signal: %g", k->string, k->valuedouble);
    cJSON_Delete(rj);
    if (t.lines > 0)
        check_analyze(&rp);
    sb_run_paths_release(&rp);
}

static void test_signals_at_moments(void **state)
{
    (void)state;
    const char *m[] = {"--decode-base-ms", "5", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    /* Moments: as soon as the run directory exists (the run is still setting up), as soon as
       metrics.jsonl exists, once records are on disk, and after fixed delays. */
    static const long delays_us[] = {-1, -2, -3, 150000, 400000};
    for (int s = 0; s < 2; s++)
        for (size_t d = 0; d < sizeof(delays_us) / sizeof(delays_us[0]); d++)
            signal_at(mock.port, s ? SIGTERM : SIGINT, delays_us[d]);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
}

/* SIGINT or SIGTERM at random moments in the first second (SB_TEST_SEED replays a failure; the
   seed is printed). */
static void test_signals_at_random_moments(void **state)
{
    (void)state;
    const char *env = getenv("SB_TEST_SEED");
    unsigned seed =
        env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    print_message("signals at random moments: SB_TEST_SEED=%u\n", seed);
    srand(seed);
    const char *m[] = {"--decode-base-ms", "5", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    for (int i = 0; i < 8; i++) {
        long delay_us = (long)(rand() % 1000000);
        signal_at(mock.port, rand() % 2 ? SIGTERM : SIGINT, delay_us);
    }
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
}

/* run holds SIGINT/SIGTERM blocked for its signalfd; a --reset-cache-cmd (which may start a
   server) must not inherit that, or SIGTERM could never stop what it started. (It does not today:
   the command's /bin/sh starts with an empty mask; this keeps it so.) */
static void test_reset_cmd_signals_unblocked(void **state)
{
    (void)state;
    const char *m[] = {"--decode-base-ms", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "resetcmd", mock.port, "/v1/completions");
    char cmd[700], maskfile[600];
    snprintf(maskfile, sizeof(maskfile), "%s/sigblk", rp.dir);
    snprintf(cmd, sizeof(cmd), "grep SigBlk /proc/self/status > %s", maskfile);
    const char *args[] = {"run",      "--endpoint",        rp.url, "--requests",
                          "2",        "--output-dir",      rp.out, "--prompts-dir",
                          rp.prompts, "--reset-cache-cmd", cmd,    "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    char *text = sb_test_read_file(maskfile);
    assert_non_null(text);
    unsigned long long mask = 0;
    assert_int_equal(sscanf(text, "SigBlk: %llx", &mask), 1);
    if (mask & ((1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1))))
        fail_msg("--reset-cache-cmd ran with SIGINT/SIGTERM blocked: %s", text);
    free(text);
    free(out);
    free(err);
    sb_run_paths_release(&rp);
}

/* ---- the results directory: full, impossible ------------------------------------------------- */

/* Runs with RLIMIT_FSIZE at limit bytes (writes past it fail with EFBIG, as ENOSPC would): a
   non-zero exit, stderr naming the file that could not be written, what was written parses. */
static void test_file_size_limits(void **state)
{
    (void)state;
    const char *m[] = {"--decode-base-ms", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    /* 0: not even config.yaml; 2000: config.yaml fits, metrics.jsonl does not for long. */
    static const long limits[] = {0, 2000, 20000};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct sb_run_paths rp;
        sb_run_paths_init(&rp, srcdir, "fsize", mock.port, "/v1/completions");
        /* stderr through a pipe: the limit holds for every file the child writes. */
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        if (pid == 0) {
            struct rlimit rl = {(rlim_t)limits[i], (rlim_t)limits[i]};
            setrlimit(RLIMIT_FSIZE, &rl);
            signal(SIGXFSZ, SIG_IGN);
            dup2(pfd[1], 2);
            close(pfd[0]);
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 1);
            execl(bin, bin, "run", "--endpoint", rp.url, "--concurrency", "4", "--requests", "2000",
                  "--max-tokens", "4", "--output-dir", rp.out, "--prompts-dir", rp.prompts,
                  (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        char errtext[8192];
        size_t len = 0;
        ssize_t k;
        while (len < sizeof(errtext) - 1 &&
               (k = read(pfd[0], errtext + len, sizeof(errtext) - 1 - len)) > 0)
            len += (size_t)k;
        errtext[len] = '\0';
        close(pfd[0]);
        int rc = wait_limit(pid, 120);
        print_message("file size limit %ld: exit %d: %s", limits[i], rc, errtext);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(errtext, "File too large"));
        assert_true(strstr(errtext, "config.yaml") || strstr(errtext, "metrics.jsonl") ||
                    strstr(errtext, "run.json"));
        struct stat st;
        if (stat(rp.metrics, &st) == 0) {
            int n = 0;
            cJSON **v = sb_test_read_jsonl(rp.metrics, &n); /* whole lines only */
            assert_true(n < 2000);
            sb_test_free_jsonl(v, n);
        }
        sb_run_paths_release(&rp);
    }
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
}

/* As root a mode bit stops nothing, so the unwritable directories are impossible paths: one under
   a regular file (ENOTDIR), one under /proc (nothing can be made there). */
static void test_unwritable_results_dir(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "rodir");
    char file[600], under[700], prompts[600];
    snprintf(file, sizeof(file), "%s/file", dir);
    fclose(fopen(file, "w"));
    snprintf(under, sizeof(under), "%s/run", file);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *paths[] = {under, "/proc/sbtest-no-such/run", file};
    const char *why[] = {"Not a directory", "No such file or directory", NULL};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {"run",
                              "--endpoint",
                              "http://127.0.0.1:1/v1/completions",
                              "--requests",
                              "1",
                              "--output-dir",
                              paths[i],
                              "--prompts-dir",
                              prompts,
                              "--quiet",
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = run_sb(args, &out, &err);
        print_message("--output-dir %s: exit %d: %s", paths[i], rc, err);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, i == 1 ? "/proc/sbtest-no-such" : paths[i]));
        if (why[i])
            assert_non_null(strstr(err, why[i]));
        free(out);
        free(err);
    }
    sb_test_rm_rf(dir);
    free(dir);
}

/* A real full filesystem and a real read-only one: a small tmpfs mounted by the test (root with
   CAP_SYS_ADMIN; skipped elsewhere, where the RLIMIT_FSIZE and impossible-path cases above still
   run). Unmounted by the teardown whatever happens. */
static char mnt_dir[600];

static int mount_teardown(void **state)
{
    (void)state;
    if (mnt_dir[0]) {
        umount2(mnt_dir, MNT_DETACH);
        rmdir(mnt_dir);
        mnt_dir[0] = '\0';
    }
    return 0;
}

static bool mount_tmpfs(const char *tag, unsigned long flags, const char *opts)
{
    char *d = sb_test_tmpdir("/tmp", tag);
    snprintf(mnt_dir, sizeof(mnt_dir), "%s", d);
    free(d);
    if (mount("tmpfs", mnt_dir, "tmpfs", flags, opts) != 0) {
        print_message("cannot mount a tmpfs on %s (%s): skipped\n", mnt_dir, strerror(errno));
        rmdir(mnt_dir);
        mnt_dir[0] = '\0';
        return false;
    }
    return true;
}

/* The results directory on a filesystem that fills up mid-run (ENOSPC): exit 1, stderr names the
   file and says why, metrics.jsonl holds whole lines only, every record measured is either in it
   or counted as lost, and run.json (the run's own record, in the room run kept for it) is written
   and says so. */
static void test_full_filesystem(void **state)
{
    (void)state;
    if (!mount_tmpfs("fullfs", 0, "size=160k,mode=0755"))
        skip();
    const char *m[] = {"--decode-base-ms", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    char url[160], outd[700], prompts[600], metrics[800], runjson[800];
    sb_url(url, sizeof(url), mock.port, "/v1/completions");
    snprintf(outd, sizeof(outd), "%s/run", mnt_dir);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", outd);
    snprintf(runjson, sizeof(runjson), "%s/run.json", outd);
    const char *args[] = {"run",   "--endpoint",
                          url,     "--concurrency",
                          "4",     "--requests",
                          "20000", "--max-tokens",
                          "4",     "--output-dir",
                          outd,    "--prompts-dir",
                          prompts, NULL};
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    print_message("full tmpfs: exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    assert_int_equal(rc, 1);
    if (!strstr(err, "metrics.jsonl") || !strstr(err, "No space left on device"))
        fail_msg("stderr does not name metrics.jsonl and ENOSPC: %s", err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(metrics, &n); /* whole lines only */
    sb_test_free_jsonl(v, n);
    assert_true(n > 0 && n < 20000);
    /* The records that did not fit are counted, not dropped silently: every request sent is in
       metrics.jsonl or among the lost. */
    const char *sent_at = strstr(out, " sent, "), *lost_at = strstr(out, "lost ");
    assert_non_null(sent_at);
    assert_non_null(lost_at);
    while (sent_at > out && sent_at[-1] >= '0' && sent_at[-1] <= '9')
        sent_at--;
    long long sent = atoll(sent_at), lost = atoll(lost_at + 5);
    if (lost <= 0 || sent != n + lost)
        fail_msg("%lld sent, %d lines in metrics.jsonl, %lld lost: %s", sent, n, lost, out);
    struct stat st;
    if (stat(runjson, &st) != 0)
        fail_msg("no run.json on the full filesystem: %s", err);
    cJSON *rj = sb_test_read_json(runjson);
    const cJSON *c = at(rj, "counts");
    /* run.json's ok and errors are over the records in the file; sent counts the lost too. */
    assert_int_equal(sb_test_int(c, "ok") + sb_test_int(c, "errors"), n);
    assert_int_equal(sb_test_int(c, "records_lost"), lost);
    assert_int_equal(sb_test_int(c, "sent"), n + lost);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "fatal");
    cJSON_Delete(rj);
    free(out);
    free(err);
}

/* A results directory on a read-only filesystem (EROFS, which stops root too): exit 1 before
   anything is sent, naming the directory and the reason. */
static void test_read_only_filesystem(void **state)
{
    (void)state;
    if (!mount_tmpfs("rofs", MS_RDONLY, "size=64k"))
        skip();
    char outd[700], prompts[600];
    snprintf(outd, sizeof(outd), "%s/run", mnt_dir);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *roots[] = {outd, mnt_dir};
    for (int i = 0; i < 2; i++) {
        const char *args[] = {"run",
                              "--endpoint",
                              "http://127.0.0.1:1/v1/completions",
                              "--requests",
                              "1",
                              "--output-dir",
                              roots[i],
                              "--prompts-dir",
                              prompts,
                              "--quiet",
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = run_sb(args, &out, &err);
        print_message("read-only --output-dir %s: exit %d: %s", roots[i], rc, err);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, mnt_dir));
        assert_non_null(strstr(err, "Read-only file system"));
        free(out);
        free(err);
    }
}

static void test_missing_prompt(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "noprompt");
    char out1[600], out2[600];
    snprintf(out1, sizeof(out1), "%s/a", dir);
    snprintf(out2, sizeof(out2), "%s/b", dir);
    const char *a1[] = {"run",
                        "--endpoint",
                        "http://127.0.0.1:1/v1/completions",
                        "--requests",
                        "1",
                        "--output-dir",
                        out1,
                        "--prompt-file",
                        "/nonexistent/sb-prompt.txt",
                        "--quiet",
                        NULL};
    const char *a2[] = {"run",
                        "--endpoint",
                        "http://127.0.0.1:1/v1/completions",
                        "--requests",
                        "1",
                        "--output-dir",
                        out2,
                        "--prompts-dir",
                        "/nonexistent/sb-prompts",
                        "--context-tokens",
                        "512",
                        "--quiet",
                        NULL};
    const char *const *all[] = {a1, a2};
    const char *named[] = {"/nonexistent/sb-prompt.txt", "/nonexistent/sb-prompts/512_tokens.txt"};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int rc = run_sb(all[i], &out, &err);
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, named[i]));
        assert_non_null(strstr(err, "No such file or directory"));
        free(out);
        free(err);
    }
    sb_test_rm_rf(dir);
    free(dir);
}

/* Config errors of every kind: each exits 2 naming the file, the line and the key. */
static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *line, *says;
    } cases[] = {
        {"run:\n  concurrency: [1, 2\n", "line 3", "did not find expected ','"},   /* bad YAML */
        {"run:\n\tconcurrency: 4\n", "line 2", "cannot start any token"},          /* a tab */
        {"\"unterminated\n", "line 2", "unexpected end of stream"},                /* bad YAML */
        {"bogus:\n  x: 1\n", "line 1", "unknown key 'bogus'"},                     /* unknown */
        {"run:\n  concurrency: 4\n  concurrency: 5\n", "line 3", "duplicate key"}, /* twice */
        {"run: 5\n", "line 1", "key 'run' is a section"},                          /* wrong type */
        {"run:\n  stream: maybe\n", "line 2", "'run.stream': expected a boolean"},
        {"run:\n  rate: fast\n", "line 2", "'run.rate': expected a number"},
        {"run:\n  max_error_rate: 2\n", "line 2", "'run.max_error_rate' is out of range"},
        {"run:\n  timeout_s: -1\n", "line 2", "'run.timeout_s' is out of range"},
        {"run:\n  arrival: weird\n", "line 2", "'run.arrival': expected one of"},
        {"run:\n  workload: nosuch\n", "line 2", "'run.workload': expected one of"},
        /* Values whose syntax a parser checks (not a choice list): each names the key too. */
        {"run:\n  lora_select: bogus\n", "line 2",
         "key 'run.lora_select': invalid --lora-select 'bogus'"},
        {"run:\n  lora_select: zipf:-1\n", "line 2", "key 'run.lora_select'"},
        {"run:\n  session_order: random\n", "line 2", "key 'run.session_order'"},
        {"run:\n  turns: uniform:5\n", "line 2", "key 'run.turns'"},
        {"run:\n  think_ms: fast\n", "line 2", "key 'run.think_ms'"},
        {"run:\n  idle_s: lognormal:0:1\n", "line 2", "key 'run.idle_s'"},
        {"run:\n  salt: xyz\n", "line 2", "key 'run.salt'"},
        {"server:\n  endpoint: ftp://127.0.0.1:1/v1/completions\n", "line 2",
         "key 'server.endpoint': endpoint 'ftp://"},
        /* Wrong shapes and the other types. */
        {"run:\n  rate:\n    x: 1\n", "line 3", "key 'run.rate' takes a number"},
        {"run:\n  max_response_bytes: lots\n", "line 2", "'run.max_response_bytes'"},
        {"server:\n  extra_body: 5\n", "line 2", "'server.extra_body'"},
        {"run:\n  concurrency: 0\n", "line 2", "'run.concurrency' is out of range"},
    };
    char *dir = sb_test_tmpdir("/tmp", "cfgerr");
    char cfg[600], outd[600];
    snprintf(cfg, sizeof(cfg), "%s/bad.yaml", dir);
    snprintf(outd, sizeof(outd), "%s/run", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *f = fopen(cfg, "w");
        fputs(cases[i].yaml, f);
        fclose(f);
        const char *args[] = {"run",
                              "--config",
                              cfg,
                              "--endpoint",
                              "http://127.0.0.1:1/v1/completions",
                              "--requests",
                              "1",
                              "--output-dir",
                              outd,
                              "--quiet",
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = run_sb(args, &out, &err);
        if (rc != 2 || !strstr(err, cfg) || !strstr(err, cases[i].line) ||
            !strstr(err, cases[i].says))
            fail_msg("config %zu: exit %d, want 2 naming '%s', %s and '%s': %s", i, rc, cfg,
                     cases[i].line, cases[i].says, err);
        struct stat st;
        assert_int_not_equal(stat(outd, &st), 0); /* nothing was written */
        free(out);
        free(err);
    }
    /* A config that does not exist, and one that is a directory. */
    const char *missing[] = {"/nonexistent/sb.yaml", dir};
    for (int i = 0; i < 2; i++) {
        const char *args[] = {"run", "--config", missing[i], "--requests", "1", NULL};
        char *out = NULL, *err = NULL;
        assert_int_equal(run_sb(args, &out, &err), 2);
        assert_non_null(strstr(err, missing[i]));
        free(out);
        free(err);
    }
    sb_test_rm_rf(dir);
    free(dir);
}

/* ---- telemetry ------------------------------------------------------------------------------- */

/* The sysmon.jsonl lines are one interval apart on the grid (missed ticks included) and every
   live tick has the sources named in `need`. Returns the number of lines. */
static int check_grid(const char *path, double interval_s, const char *const *need)
{
    int n = 0;
    cJSON **v = sb_test_read_jsonl(path, &n);
    double prev = 0;
    for (int i = 0; i < n; i++) {
        double ts = sb_test_num(v[i], "ts");
        assert_false(isnan(ts));
        assert_true(fabs(ts / interval_s - round(ts / interval_s)) < 1e-3);
        if (i && fabs(ts - prev - interval_s) > 1e-4)
            fail_msg("%s line %d: ts %.6f is %.6f s after the previous, want %.3f", path, i + 1, ts,
                     ts - prev, interval_s);
        prev = ts;
        if (sb_test_true(v[i], "missed") || i == 0)
            continue; /* the first tick has no deltas yet */
        for (int k = 0; need && need[k]; k++)
            if (!at(v[i], need[k]))
                fail_msg("%s line %d has no '%s'", path, i + 1, need[k]);
    }
    sb_test_free_jsonl(v, n);
    return n;
}

/* A --prom and --trtllm-metrics endpoint that accepts (the kernel completes the handshake into the
   backlog) and never answers: the run finishes, and sysmon keeps its grid with the other sources
   in every tick. */
static void test_hung_telemetry_endpoint(void **state)
{
    (void)state;
    int hport;
    int hfd = sb_test_listen_loopback(64, &hport);
    const char *m[] = {"--decode-base-ms", "5", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "hungprom", mock.port, "/v1/completions");
    char prom[128], spath[600];
    snprintf(prom, sizeof(prom), "http://127.0.0.1:%d/metrics", hport);
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", rp.out);
    const char *args[] = {"run",
                          "--endpoint",
                          rp.url,
                          "--concurrency",
                          "2",
                          "--duration-s",
                          "1.5",
                          "--max-tokens",
                          "4",
                          "--sysmon",
                          "--sysmon-interval-ms",
                          "100",
                          "--prom",
                          prom,
                          "--trtllm-metrics",
                          prom,
                          "--output-dir",
                          rp.out,
                          "--prompts-dir",
                          rp.prompts,
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    close(hfd);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    if (rc != 0)
        fail_msg("run with a hung --prom exited %d: %s", rc, err);
    static const char *const need[] = {"cpu", "mem", NULL};
    int n = check_grid(spath, 0.1, need);
    print_message("hung --prom: %d sysmon lines on the 100 ms grid\n", n);
    assert_true(n >= 3);
    struct tally t;
    cJSON_Delete(check_run(&rp, NULL, &t));
    assert_int_equal(t.errors, 0);
    check_analyze(&rp);
    free(out);
    free(err);
    sb_run_paths_release(&rp);
}

static void copy_file(const char *from, const char *to)
{
    char *s = sb_test_read_file(from);
    assert_non_null(s);
    FILE *f = fopen(to, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
    free(s);
}

/* /proc files missing from the start (their sources are named and turned off; the others keep the
   grid) and vanishing mid-run (the ticks go on without them). */
static void test_proc_files_missing(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "noproc");
    char root[600], from[600], to[700], out1[600], out2[600], spath[700];
    snprintf(root, sizeof(root), "%s/proc", dir);
    mkdir(root, 0755);
    snprintf(from, sizeof(from), "%s/tests/data/proc/stat_4cpu_guest.txt", srcdir);
    snprintf(to, sizeof(to), "%s/stat", root);
    copy_file(from, to);
    snprintf(out1, sizeof(out1), "%s/a", dir);
    const char *a1[] = {"sysmon", "--out",       out1, "--duration-s", "0.6", "--interval-ms",
                        "100",    "--proc-root", root, "--no-gpu",     NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(run_sb(a1, &out, &err), 0);
    print_message("only stat: %s", err);
    assert_non_null(strstr(err, "meminfo"));
    assert_non_null(strstr(err, "diskstats"));
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", out1);
    static const char *const cpu[] = {"cpu", NULL};
    assert_true(check_grid(spath, 0.1, cpu) >= 3);
    free(out);
    free(err);

    /* All present at the start, stat and meminfo removed while it runs. */
    copy_file("/proc/meminfo", (snprintf(to, sizeof(to), "%s/meminfo", root), to));
    copy_file("/proc/diskstats", (snprintf(to, sizeof(to), "%s/diskstats", root), to));
    snprintf(out2, sizeof(out2), "%s/b", dir);
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", out2);
    const char *a2[] = {"sysmon", "--out",       out2, "--duration-s", "1.2",       "--interval-ms",
                        "100",    "--proc-root", root, "--no-gpu",     "--no-disk", NULL};
    pid_t pid = spawn_run(a2, NULL);
    for (int i = 0; i < 3000 && lines_in(spath) < 3; i++)
        usleep(10000);
    snprintf(to, sizeof(to), "%s/meminfo", root);
    unlink(to);
    snprintf(to, sizeof(to), "%s/stat", root);
    unlink(to);
    assert_int_equal(wait_limit(pid, 60), 0);
    int n = check_grid(spath, 0.1, NULL);
    print_message("stat and meminfo removed mid-run: %d lines on the grid\n", n);
    assert_true(n >= 4);
    sb_test_rm_rf(dir);
    free(dir);
}

/* The same through `run --sysmon` (--sysmon-proc-root, sysmon's --proc-root): a /proc without
   meminfo and diskstats costs those sources, named on stderr, not the run or the grid. */
static void test_run_sysmon_proc_files_missing(void **state)
{
    (void)state;
    const char *m[] = {"--decode-base-ms", "5", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, m), 0);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "runnoproc", mock.port, "/v1/completions");
    char root[600], from[600], to[700], spath[600];
    snprintf(root, sizeof(root), "%s/proc", rp.dir);
    assert_int_equal(mkdir(root, 0755), 0);
    snprintf(from, sizeof(from), "%s/tests/data/proc/stat_4cpu_guest.txt", srcdir);
    snprintf(to, sizeof(to), "%s/stat", root);
    copy_file(from, to);
    snprintf(spath, sizeof(spath), "%s/sysmon.jsonl", rp.out);
    const char *args[] = {"run",
                          "--endpoint",
                          rp.url,
                          "--concurrency",
                          "2",
                          "--duration-s",
                          "1",
                          "--max-tokens",
                          "4",
                          "--sysmon",
                          "--sysmon-interval-ms",
                          "100",
                          "--sysmon-proc-root",
                          root,
                          "--output-dir",
                          rp.out,
                          "--prompts-dir",
                          rp.prompts,
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_sb(args, &out, &err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    print_message("run --sysmon, /proc with only stat: exit %d: %s", rc, err);
    if (rc != 0)
        fail_msg("run --sysmon with /proc files missing exited %d: %s", rc, err);
    assert_non_null(strstr(err, "meminfo"));
    static const char *const cpu[] = {"cpu", NULL};
    assert_true(check_grid(spath, 0.1, cpu) >= 3);
    struct tally t;
    cJSON_Delete(check_run(&rp, NULL, &t));
    assert_int_equal(t.errors, 0);
    check_analyze(&rp);
    free(out);
    free(err);
    sb_run_paths_release(&rp);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_fault_kind),
        cmocka_unit_test(test_server_killed_and_restarted),
        cmocka_unit_test(test_signals_at_moments),
        cmocka_unit_test(test_signals_at_random_moments),
        cmocka_unit_test(test_reset_cmd_signals_unblocked),
        cmocka_unit_test(test_file_size_limits),
        cmocka_unit_test(test_unwritable_results_dir),
        cmocka_unit_test_teardown(test_full_filesystem, mount_teardown),
        cmocka_unit_test_teardown(test_read_only_filesystem, mount_teardown),
        cmocka_unit_test(test_missing_prompt),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_hung_telemetry_endpoint),
        cmocka_unit_test(test_proc_files_missing),
        cmocka_unit_test(test_run_sysmon_proc_files_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
