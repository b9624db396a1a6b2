/*
 * Integration tests of what sparkbench promises about secrets and transport (README "Security"):
 * a canary API key and HF token reach the server's Authorization header and nothing else (no
 * results file, analysis, mock log, runner output, stdout or stderr); https endpoints are verified
 * unless --insecure says otherwise (recorded in run.json and config.yaml); the mock binds
 * 127.0.0.1 unless told otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

#define CANARY_KEY "sk-CANARY-7f3a9c1e5b2d4860"
#define CANARY_HF  "hf_CANARYtoken0d9e8f7a6b5c"

/* Counts the files under dir (recursively) that hold needle, appending their paths to hits. */
static int grep_tree(const char *dir, const char *needle, char *hits, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += grep_tree(path, needle, hits, cap);
        } else if (S_ISREG(st.st_mode)) {
            /* Whole bytes (memmem): a binary file or a NUL does not end the search. */
            FILE *f = fopen(path, "rb");
            bool found = false;
            if (f) {
                char *all = malloc((size_t)st.st_size + 1);
                size_t got = all ? fread(all, 1, (size_t)st.st_size, f) : 0;
                found = all && memmem(all, got, needle, strlen(needle)) != NULL;
                free(all);
                fclose(f);
            }
            if (found) {
                size_t used = strlen(hits);
                snprintf(hits + used, cap - used, " %s", path);
                n++;
            }
        }
    }
    closedir(d);
    return n;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0)
            n += S_ISDIR(st.st_mode) ? count_files(path) : 1;
    }
    closedir(d);
    return n;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text ? text : "", f);
    fclose(f);
}

static void assert_no_canary(const char *dir)
{
    char hits[8192] = "";
    int n = grep_tree(dir, CANARY_KEY, hits, sizeof(hits));
    n += grep_tree(dir, CANARY_HF, hits, sizeof(hits));
    if (n)
        fail_msg("the canary secret was written to%s", hits);
}

/* Answers every request with a refusal after noting whether it carried the canary key: the test
   proves the key was sent (so its absence from the files means something). */
static _Atomic int auth_seen;
static const char *refuse(struct sb_script_server *s, const char *head)
{
    (void)s;
    if (strstr(head, "Authorization: Bearer " CANARY_KEY))
        auth_seen++;
    return "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 42\r\n"
           "\r\n{\"error\":{\"message\":\"bad key\",\"code\":401}}";
}

static void test_canary_never_written(void **state)
{
    (void)state;
    setenv("SB_TEST_CANARY_KEY", CANARY_KEY, 1);
    setenv("HF_TOKEN", CANARY_HF, 1);
    setenv("HUGGING_FACE_HUB_TOKEN", CANARY_HF, 1);
    char *dir = sb_test_tmpdir("/tmp", "security");
    char mocklog[4200], results[4200], analysis[4200], prompts[4200];
    snprintf(mocklog, sizeof(mocklog), "%s/mock.log", dir);
    snprintf(results, sizeof(results), "%s/results", dir);
    snprintf(analysis, sizeof(analysis), "%s/analysis", dir);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    assert_int_equal(mkdir(results, 0755), 0);

    /* 1. A run with sysmon and --verbose against a mock with --log, one request in four failing. */
    const char *margs[] = {"--log",
                           mocklog,
                           "--fault-rate",
                           "0.25",
                           "--fault-kinds",
                           "500,close",
                           "--seed",
                           "3",
                           "--decode-base-ms",
                           "1",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char url[160];
    sb_url(url, sizeof(url), mock.port, "/v1/chat/completions");
    const char *run[] = {bin,
                         "run",
                         "--endpoint",
                         url,
                         "--api-key-env",
                         "SB_TEST_CANARY_KEY",
                         "--stack",
                         "A",
                         "--model",
                         "sparkbench-mock",
                         "--context-tokens",
                         "256",
                         "--concurrency",
                         "2",
                         "--requests",
                         "24",
                         "--hypothesis",
                         "H0",
                         "--run-id",
                         "canary",
                         "--results-dir",
                         results,
                         "--prompts-dir",
                         prompts,
                         "--sysmon",
                         "--verbose",
                         NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(run, &out, &err, 240);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    char path[4400];
    snprintf(path, sizeof(path), "%s/run.stdout", dir);
    write_text(path, out);
    snprintf(path, sizeof(path), "%s/run.stderr", dir);
    write_text(path, err);
    if (rc != 0 && rc != 3)
        fail_msg("sparkbench run exited %d: %s", rc, err);
    /* The faults happened and --verbose printed them: the failing path was exercised. */
    assert_non_null(strstr(err, "failed"));
    free(out);
    free(err);
    char *log = sb_test_read_file(mocklog);
    assert_non_null(log);
    assert_true(sb_test_count(log, "\n") >= 24);
    free(log);

    /* 2. analyze over it. */
    const char *ana[] = {bin, "analyze", results, "--out", analysis, "--no-figures", NULL};
    rc = sb_proc_run_limit(ana, &out, &err, 240);
    snprintf(path, sizeof(path), "%s/analyze.stdout", dir);
    write_text(path, out);
    snprintf(path, sizeof(path), "%s/analyze.stderr", dir);
    write_text(path, err);
    if (rc != 0)
        fail_msg("sparkbench analyze exited %d: %s", rc, err);
    free(out);
    free(err);

    /* 3. The key reached the server: a server that records the headers it gets refuses it. */
    struct sb_script_server ss = {.respond = refuse, .backlog = 16};
    assert_int_equal(sb_script_server_start(&ss), 0);
    char url2[160];
    sb_url(url2, sizeof(url2), ss.port, "/v1/chat/completions");
    char results2[4300];
    snprintf(results2, sizeof(results2), "%s/refused", dir);
    const char *run2[] = {bin,
                          "run",
                          "--endpoint",
                          url2,
                          "--api-key-env",
                          "SB_TEST_CANARY_KEY",
                          "--model",
                          "m",
                          "--requests",
                          "3",
                          "--run-id",
                          "refused",
                          "--results-dir",
                          results2,
                          "--prompts-dir",
                          prompts,
                          "--verbose",
                          NULL};
    rc = sb_proc_run_limit(run2, &out, &err, 240);
    sb_script_server_stop(&ss);
    snprintf(path, sizeof(path), "%s/refused.stdout", dir);
    write_text(path, out);
    snprintf(path, sizeof(path), "%s/refused.stderr", dir);
    write_text(path, err);
    assert_int_not_equal(rc, 0); /* nothing succeeded */
    assert_true(auth_seen >= 1);
    free(out);
    free(err);

    /* 4. A runner, --quick --mock, with the key in the variable runners read. */
    setenv("OPENAI_API_KEY", CANARY_KEY, 1);
    setenv("SPARKBENCH", bin, 1);
    char runner[4200], rres[4300], rana[4300];
    snprintf(runner, sizeof(runner), "%s/runs/run_H0_queue_knee.sh", srcdir);
    snprintf(rres, sizeof(rres), "%s/runner_results", dir);
    snprintf(rana, sizeof(rana), "%s/runner_analysis", dir);
    const char *rv[] = {"/bin/bash",
                        runner,
                        "--mock",
                        "--quick",
                        "--concurrency-list",
                        "1,2",
                        "--duration-s",
                        "1",
                        "--results-dir",
                        rres,
                        "--analysis-dir",
                        rana,
                        NULL};
    rc = sb_proc_run_limit(rv, &out, &err, 240);
    snprintf(path, sizeof(path), "%s/runner.stdout", dir);
    write_text(path, out);
    snprintf(path, sizeof(path), "%s/runner.stderr", dir);
    write_text(path, err);
    if (rc != 0)
        fail_msg("the H0 runner exited %d: %s", rc, err);
    free(out);
    free(err);

    /* 5. smoke and sysmon, the other commands a runner calls, with the key in their default
       variable; smoke's report and errors are its record. */
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    char base[160], sysd[4300];
    sb_url(base, sizeof(base), mock.port, "");
    const char *sm[] = {bin, "smoke", "--endpoint", base, "--model", "sparkbench-mock", NULL};
    rc = sb_proc_run_limit(sm, &out, &err, 240);
    snprintf(path, sizeof(path), "%s/smoke.stdout", dir);
    write_text(path, out);
    snprintf(path, sizeof(path), "%s/smoke.stderr", dir);
    write_text(path, err);
    free(out);
    free(err);
    snprintf(sysd, sizeof(sysd), "%s/sysmon", dir);
    char prom[200];
    sb_url(prom, sizeof(prom), mock.port, "/metrics");
    const char *sy[] = {
        bin,        "sysmon", "--out", sysd, "--duration-s", "0.5", "--interval-ms", "100",
        "--no-gpu", "--prom", prom,    NULL};
    rc = sb_proc_run_limit(sy, &out, &err, 240);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    snprintf(path, sizeof(path), "%s/sysmon.stderr", dir);
    write_text(path, err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    unsetenv("OPENAI_API_KEY");

    assert_true(count_files(dir) > 20); /* the search looked at something */
    /* ... and finds a canary where there is one. */
    char probe[4300], hits[4400] = "";
    snprintf(probe, sizeof(probe), "%s/probe.bin", dir);
    write_text(probe, "x\n" CANARY_KEY "\n");
    assert_int_equal(grep_tree(dir, CANARY_KEY, hits, sizeof(hits)), 1);
    unlink(probe);
    assert_no_canary(dir);
    sb_test_rm_rf(dir);
    free(dir);
}

/* A TLS server with a self-signed certificate (openssl s_server) on 127.0.0.1. */
struct tls_server {
    pid_t pid;
    int port;
};

static bool have_openssl(void)
{
    return system("command -v openssl >/dev/null 2>&1") == 0;
}

static void tls_start(struct tls_server *t, const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s/key.pem' -out '%s/cert.pem' "
             "-days 1 -subj /CN=localhost >/dev/null 2>&1",
             dir, dir);
    assert_int_equal(system(cmd), 0);
    char cert[4200], key[4200];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execlp("openssl", "openssl", "s_server", "-4", "-accept", "127.0.0.1:0", "-cert", cert,
               "-key", key, "-www", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    t->pid = pid;
    t->port = 0;
    /* "ACCEPT 127.0.0.1:PORT" once it listens. */
    char buf[512];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 30000) <= 0)
            break;
        ssize_t r = read(pfd[0], buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        const char *a = strstr(buf, "ACCEPT 127.0.0.1:");
        if (a && strchr(a, '\n')) {
            t->port = atoi(a + strlen("ACCEPT 127.0.0.1:"));
            break;
        }
    }
    close(pfd[0]);
    if (t->port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("openssl s_server did not start: %s", buf);
    }
}

static void tls_stop(struct tls_server *t)
{
    kill(t->pid, SIGTERM);
    waitpid(t->pid, NULL, 0);
}

static char *tls_run(const char *url, const char *results, const char *id, bool insecure, int *rc,
                     char **out)
{
    char prompts[4200];
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--model",
                          "m",
                          "--requests",
                          "2",
                          "--connect-timeout-s",
                          "60",
                          "--timeout-s",
                          "60",
                          "--run-id",
                          id,
                          "--results-dir",
                          results,
                          "--prompts-dir",
                          prompts,
                          "--verbose",
                          insecure ? "--insecure" : NULL,
                          NULL};
    char *err = NULL;
    *rc = sb_proc_run_limit(argv, out, &err, 120);
    return err;
}

static void test_tls_verified_by_default(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    char *dir = sb_test_tmpdir("/tmp", "tls");
    struct tls_server t;
    tls_start(&t, dir);
    char url[160];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1/chat/completions", t.port);
    char results[4200];
    snprintf(results, sizeof(results), "%s/results", dir);

    int rc;
    char *out = NULL;
    char *err = tls_run(url, results, "verified", false, &rc, &out);
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, -2);
    /* libcurl's words for an unknown issuer, and the endpoint, in the run's last line. */
    if (!strstr(err, "certificate") || !strstr(err, url))
        fail_msg("no certificate error naming %s: %s", url, err);
    char rj[4400];
    snprintf(rj, sizeof(rj), "%s/verified/run.json", results);
    cJSON *j = sb_test_read_json(rj);
    assert_false(sb_test_true(j, "tls_insecure"));
    cJSON_Delete(j);
    free(out);
    free(err);

    err = tls_run(url, results, "insecure", true, &rc, &out);
    /* s_server -www answers no POST, so the requests fail, but after a handshake: no certificate
       error anywhere. */
    if (strstr(err, "certificate") || strstr(err, "SSL"))
        fail_msg("--insecure still checked the certificate: %s", err);
    assert_int_not_equal(rc, -2);
    snprintf(rj, sizeof(rj), "%s/insecure/run.json", results);
    j = sb_test_read_json(rj);
    assert_true(sb_test_true(j, "tls_insecure"));
    cJSON_Delete(j);
    char cy[4400];
    snprintf(cy, sizeof(cy), "%s/insecure/config.yaml", results);
    char *yaml = sb_test_read_file(cy);
    assert_non_null(yaml);
    assert_non_null(strstr(yaml, "insecure: true"));
    free(yaml);
    char mj[4400];
    snprintf(mj, sizeof(mj), "%s/insecure/metrics.jsonl", results);
    int n;
    cJSON **recs = sb_test_read_jsonl(mj, &n);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        const char *m = sb_test_str(recs[i], "error_msg");
        if (m && (strstr(m, "certificate") || strstr(m, "SSL")))
            fail_msg("record %d: %s", i, m);
    }
    sb_test_free_jsonl(recs, n);
    free(out);
    free(err);
    tls_stop(&t);
    sb_test_rm_rf(dir);
    free(dir);
}

/* `sparkbench sysmon --prom https://...` verifies the scrape's certificate unless --insecure, and
   says so: the refused scrape is recorded with libcurl's certificate error; with --insecure the
   scrapes carry "insecure":true and stderr says the certificates were not checked. */
static void test_sysmon_tls(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    char *dir = sb_test_tmpdir("/tmp", "sysmontls");
    struct tls_server t;
    tls_start(&t, dir);
    char url[160];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/metrics", t.port);
    for (int insecure = 0; insecure < 2; insecure++) {
        /* A scrape the tick's deadline abandoned ("late") says nothing about the certificate: on a
           loaded machine (ASan, parallel tests) a handshake can take longer than the deadline, so
           sysmon runs again (a bounded number of times) until one scrape has finished. */
        char *o = NULL, *err = NULL, *text = NULL;
        for (int attempt = 0; attempt < 6; attempt++) {
            char out[4200], path[4400];
            snprintf(out, sizeof(out), "%s/%s%d", dir, insecure ? "insecure" : "verified", attempt);
            const char *argv[] = {bin,
                                  "sysmon",
                                  "--out",
                                  out,
                                  "--duration-s",
                                  "5.5",
                                  "--interval-ms",
                                  "2500",
                                  "--no-gpu",
                                  "--no-disk",
                                  "--prom",
                                  url,
                                  insecure ? "--insecure" : NULL,
                                  NULL};
            free(o);
            free(err);
            free(text);
            int rc = sb_proc_run_limit(argv, &o, &err, 120);
            print_message("sysmon --prom %s%s: exit %d: %s", url, insecure ? " --insecure" : "", rc,
                          err);
            assert_int_equal(rc, 0);
            snprintf(path, sizeof(path), "%s/sysmon.jsonl", out);
            text = sb_test_read_file(path);
            assert_non_null(text);
            if (sb_test_count(text, "\"url\":\"https") > sb_test_count(text, "\"late\":true"))
                break;
        }
        if (sb_test_count(text, "\"url\":\"https") <= sb_test_count(text, "\"late\":true"))
            fail_msg("no scrape of %s finished in 6 runs of sysmon: %s", url, err);
        if (!insecure) {
            if (!strstr(text, "certificate"))
                fail_msg("no certificate error for %s: %s", url, text);
            assert_null(strstr(text, "\"insecure\":true"));
        } else {
            if (strstr(err, "certificate problem") || strstr(text, "certificate problem") ||
                strstr(text, "SSL peer certificate"))
                fail_msg("--insecure still checked the certificate: %s", err);
            assert_non_null(strstr(err, "--insecure"));
            assert_non_null(strstr(text, "\"insecure\":true"));
        }
        free(text);
        free(o);
        free(err);
    }
    tls_stop(&t);
    sb_test_rm_rf(dir);
    free(dir);
}

/* `sparkbench smoke` against https: refused with a certificate error by default (exit 1), and
   with --insecure the handshake is made and the report says the certificate was not checked.
   s_server -www never answers a POST: --timeout-s 8 bounds each of smoke's probes (a limit, not
   an assertion). */
static void test_smoke_tls(void **state)
{
    (void)state;
    if (!have_openssl())
        skip();
    char *dir = sb_test_tmpdir("/tmp", "smoketls");
    struct tls_server t;
    tls_start(&t, dir);
    char url[160];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", t.port);
    for (int insecure = 0; insecure < 2; insecure++) {
        const char *argv[] = {bin,           "smoke",   "--endpoint",
                              url,           "--model", "m",
                              "--timeout-s", "8",       insecure ? "--insecure" : NULL,
                              NULL};
        char *o = NULL, *err = NULL;
        int rc = sb_proc_run_limit(argv, &o, &err, 300);
        print_message("smoke %s%s: exit %d\n%s%s", url, insecure ? " --insecure" : "", rc, o, err);
        assert_int_not_equal(rc, -2);
        if (!insecure) {
            assert_int_equal(rc, 1); /* s_server is no LLM server either way */
            if (!strstr(o, "certificate") || !strstr(o, "--insecure"))
                fail_msg("smoke: no certificate error with the --insecure hint: %s", o);
        } else {
            if (strstr(o, "certificate problem") || strstr(o, "SSL peer certificate"))
                fail_msg("smoke --insecure still checked the certificate: %s", o);
            assert_non_null(strstr(o, "not verified (--insecure)"));
            assert_non_null(strstr(o, "HTTP 200")); /* /health: a handshake was made */
        }
        free(o);
        free(err);
    }
    tls_stop(&t);
    sb_test_rm_rf(dir);
    free(dir);
}

/* Credentials in a URL (http://user:KEY@host) would be copied into config.yaml, run.json,
   sysmon.jsonl and every error message naming the URL: every URL option refuses them, naming the
   option (and the config's file and line), without printing them, before anything is written. */
static void test_no_credentials_in_urls(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "urlcred");
    const char *secret_url = "http://bob:sk-canary-url-4242@127.0.0.1:9/v1/chat/completions";
    const char *prom_url = "http://sk-canary-url-4242@127.0.0.1:9/metrics";
    char out_dir[512];
    snprintf(out_dir, sizeof(out_dir), "%s/res", dir);
    const char *cases[][12] = {
        {bin, "run", "--endpoint", secret_url, "--requests", "1", "--output-dir", out_dir, NULL},
        {bin, "run", "--endpoint", "http://127.0.0.1:9/v1/completions", "--sysmon", "--prom",
         prom_url, "--requests", "1", "--output-dir", out_dir, NULL},
        {bin, "run", "--endpoint", "http://127.0.0.1:9/v1/completions", "--sysmon",
         "--trtllm-metrics", prom_url, "--requests", "1", "--output-dir", out_dir, NULL},
        {bin, "sysmon", "--prom", prom_url, "--duration-s", "1", "--out", out_dir, NULL},
        {bin, "smoke", "--endpoint", secret_url, "--model", "m", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *o = NULL, *e = NULL;
        int rc = sb_proc_run_limit(cases[i], &o, &e, 60);
        print_message("case %zu: exit %d\n%s%s", i, rc, o, e);
        assert_int_equal(rc, 2);
        assert_null(strstr(o, "sk-canary-url"));
        assert_null(strstr(e, "sk-canary-url"));
        assert_non_null(strstr(e, "credentials"));
        free(o);
        free(e);
    }
    /* Nothing was written. */
    struct stat st;
    assert_int_not_equal(stat(out_dir, &st), 0);

    /* In a config: the file, the line and the key are named. */
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "%s/c.yaml", dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "server:\n  endpoint: %s\n", secret_url);
    fclose(f);
    const char *argv[] = {bin, "run",          "--config", cfg, "--requests",
                          "1", "--output-dir", out_dir,    NULL};
    char *o = NULL, *e = NULL;
    int rc = sb_proc_run_limit(argv, &o, &e, 60);
    print_message("config: exit %d\n%s", rc, e);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e, "line 2"));
    assert_non_null(strstr(e, "server.endpoint"));
    assert_null(strstr(e, "sk-canary-url"));
    free(o);
    free(e);
    sb_test_rm_rf(dir);
    free(dir);
}

/* The mock's listener is on 127.0.0.1 by default: its socket in /proc/net/tcp is 0100007F. */
static void test_mock_binds_loopback(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    char *tcp = sb_test_read_file("/proc/net/tcp");
    assert_non_null(tcp);
    char want[64], any[64];
    snprintf(want, sizeof(want), ": 0100007F:%04X 00000000:0000 0A", mock.port);
    snprintf(any, sizeof(any), ": 00000000:%04X 00000000:0000 0A", mock.port);
    bool loop = strstr(tcp, want) != NULL, wild = strstr(tcp, any) != NULL;
    free(tcp);
    char *tcp6 = sb_test_read_file("/proc/net/tcp6");
    char any6[80];
    snprintf(any6, sizeof(any6), ":%04X 00000000000000000000000000000000:0000 0A", mock.port);
    bool wild6 = tcp6 && strstr(tcp6, any6) != NULL;
    free(tcp6);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    assert_true(loop);
    assert_false(wild);
    assert_false(wild6);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mock_binds_loopback),  cmocka_unit_test(test_tls_verified_by_default),
        cmocka_unit_test(test_sysmon_tls),           cmocka_unit_test(test_smoke_tls),
        cmocka_unit_test(test_canary_never_written), cmocka_unit_test(test_no_credentials_in_urls),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
