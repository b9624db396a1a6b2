/*
 * Integration tests of the mock's token budget, variation and early EOS as a real `sparkbench
 * mock` serves them: a prompt longer than --max-num-batched-tokens is prefilled in chunks over
 * several iterations (its /metrics counts them), the new options refuse values out of range with
 * the option or the profile's file and line named, and early EOS works with a closed loop of
 * `sparkbench run` users while ignore_eos keeps every reply at its exact length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 60.0

/* Checks the exposition format of the sample's line and returns its value (-1 when absent). */
static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            char *end;
            double v = strtod(line + n + 1, &end);
            assert_true(*end == '\n' || *end == '\0');
            return v;
        }
    }
    return -1;
}

static char *get_metrics(int port)
{
    char url[128];
    struct sb_http_resp r;
    assert_int_equal(sb_http("GET", sb_url(url, sizeof(url), port, "/metrics"), NULL, &r), 0);
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    sb_http_resp_release(&r);
    return body;
}

static void test_chunked_prefill(void **state)
{
    (void)state;
    /* No costs, so only the schedule is under test; a budget of 16 tokens. */
    const char *args[] = {"--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          "--decode-base-ms",
                          "0",
                          "--decode-per-seq-us",
                          "0",
                          "--max-num-batched-tokens",
                          "16",
                          "--prefill-sd-frac",
                          "0.3",
                          "--decode-sd-frac",
                          "0.3",
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    char *m = get_metrics(p.port);
    assert_true(metric(m, "mock:max_num_batched_tokens") == 16);
    assert_true(metric(m, "mock:chunked_prefills_total") == 0);
    free(m);

    /* 200 bytes: 50 prompt tokens (4 bytes a token). 16 + 16 + 16 leave some for later (three
       cut chunks), the last 2 tokens come with the first output token: 4 iterations, then 3
       decode steps for 4 tokens. */
    char body[400], prompt[201];
    memset(prompt, 'x', 200);
    prompt[200] = '\0';
    snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"max_tokens\":4}", prompt);
    char url[128];
    struct sb_http_resp r;
    assert_int_equal(sb_http("POST", sb_url(url, sizeof(url), p.port, "/v1/completions"), body, &r),
                     0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    assert_int_equal((int)sb_test_num(usage, "prompt_tokens"), 50);
    assert_int_equal((int)sb_test_num(usage, "completion_tokens"), 4);
    cJSON_Delete(j);
    sb_http_resp_release(&r);

    m = get_metrics(p.port);
    assert_true(metric(m, "mock:chunked_prefills_total") == 3);
    assert_true(metric(m, "mock:engine_iterations_total") == 7);
    assert_true(metric(m, "mock:iteration_batched_tokens") == 1); /* the last decode step */
    free(m);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

/* Runs `sparkbench mock ARGS...` expecting it to refuse to start; returns its stderr. */
static char *refused(const char *const *args)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "mock";
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run_limit(argv, &out, &err, 10), 2);
    free(out);
    assert_non_null(err);
    return err;
}

static void test_bad_values(void **state)
{
    (void)state;
    /* llm-d-inference-sim refuses a std dev over 30 % of the mean; so does the mock. */
    const char *a[] = {"--prefill-sd-frac", "0.5", NULL};
    char *err = refused(a);
    assert_non_null(strstr(err, "prefill-sd-frac"));
    assert_non_null(strstr(err, "out of range"));
    free(err);
    const char *b[] = {"--max-num-batched-tokens", "-1", NULL};
    err = refused(b);
    assert_non_null(strstr(err, "max-num-batched-tokens"));
    free(err);
    const char *c[] = {"--decode-sd-frac", "x", NULL};
    err = refused(c);
    assert_non_null(strstr(err, "decode-sd-frac"));
    free(err);

    char path[] = "/tmp/sbtest-budget-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "port: 0\nmax_num_batched_tokens: 512\ndecode_sd_frac: 0.31\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    const char *d[] = {"--profile", path, NULL};
    err = refused(d);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "decode_sd_frac"));
    free(err);
    unlink(path);
}

/* Output token counts of every measured ok record of a closed-loop run; returns how many. */
static int run_lengths(struct sb_run_paths *p, const char *extra_body, long long *len, int cap)
{
    const char *argv[40];
    int n = 0;
    const char *head[] = {bin, "run", "--endpoint", p->url, "--output-dir", p->out, "--prompts-dir",
                          p->prompts, "--concurrency", "4",
                          /* a count, not a duration: as many replies however slowly the run
                             goes (under valgrind a 1.5 s run got fewer than 20) */
                          "--requests", "100", "--max-tokens", "16", "--quiet", NULL};
    for (int i = 0; head[i]; i++)
        argv[n++] = head[i];
    if (extra_body) {
        argv[n++] = "--extra-body";
        argv[n++] = extra_body;
    }
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0)
        fail_msg("run exit %d: %s", rc, err ? err : "");
    free(out);
    free(err);
    int nrec = 0, got = 0;
    cJSON **v = sb_test_read_jsonl(p->metrics, &nrec);
    for (int i = 0; i < nrec && got < cap; i++) {
        cJSON *ok = cJSON_GetObjectItemCaseSensitive(v[i], "ok");
        assert_true(cJSON_IsTrue(ok));
        len[got++] = (long long)sb_test_num(v[i], "output_tokens");
    }
    sb_test_free_jsonl(v, nrec);
    sb_test_rm_rf(p->out);
    return got;
}

static void test_eos_closed_loop(void **state)
{
    (void)state;
    const char *margs[] = {"--eos-prob",
                           "0.2",
                           "--decode-base-ms",
                           "1",
                           "--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-sd-frac",
                           "0.2",
                           "--max-num-batched-tokens",
                           "256",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "eos", mock.port, "/v1/completions");
    static long long len[20000];

    /* Early EOS: every reply ends by 16, and a chance of 0.2 a token ends most before it
       (0.8^15: 3.5 % reach 16), so lengths spread over 1..16. */
    int n = run_lengths(&p, NULL, len, 20000);
    assert_int_equal(n, 100);
    long long lo = 99, hi = 0;
    int full = 0;
    for (int i = 0; i < n; i++) {
        assert_true(len[i] >= 1 && len[i] <= 16);
        lo = len[i] < lo ? len[i] : lo;
        hi = len[i] > hi ? len[i] : hi;
        full += len[i] == 16;
    }
    assert_true(lo < hi);
    assert_true(full < n / 2);

    /* ignore_eos: the same server, every reply exactly max_tokens long. */
    n = run_lengths(&p, "{\"ignore_eos\":true}", len, 20000);
    assert_int_equal(n, 100);
    for (int i = 0; i < n; i++)
        assert_int_equal(len[i], 16);

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
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_eos_closed_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
