/*
 * Integration tests for `sparkbench mock` over real HTTP: every route, chat and completions,
 * stream and non-stream, the usage chunk, error shapes, fidelity stamps, determinism, profiles,
 * the request log and the Prometheus exposition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

/* A zero-cost mock: every test here is about protocol, not timing. */
static const char *const fast[] = {"--prefill-base-ms",
                                   "0",
                                   "--prefill-per-token-us",
                                   "0",
                                   "--decode-base-ms",
                                   "0",
                                   "--decode-per-seq-us",
                                   "0",
                                   NULL};

struct fixture {
    struct sb_proc mock;
    char logpath[64];
};

static int start_with(void **state, const char *const *extra)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->logpath, sizeof(f->logpath), "/tmp/sbtest-mocklog-XXXXXX");
    int fd = mkstemp(f->logpath);
    close(fd);
    const char *args[40];
    int n = 0;
    for (int i = 0; fast[i]; i++)
        args[n++] = fast[i];
    args[n++] = "--log";
    args[n++] = f->logpath;
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (sb_proc_start_mock(&f->mock, bin, args) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return start_with(state, NULL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = sb_proc_stop(&f->mock, SIGTERM);
    unlink(f->logpath);
    free(f);
    return rc == 0 ? 0 : -1; /* a clean shutdown is part of every test */
}

static cJSON *post_json(struct fixture *f, const char *path, const char *body, long want_status)
{
    char url[128];
    struct sb_http_resp r;
    sb_http("POST", sb_url(url, sizeof(url), f->mock.port, path), body, &r);
    assert_int_equal(r.curl_rc, 0);
    assert_int_equal(r.status, want_status);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    sb_http_resp_release(&r);
    return j;
}

static const char *str_at(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static double num_at(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

static void test_health_models_version(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), f->mock.port, "/health"), NULL, &r);
    assert_int_equal(r.status, 200);
    sb_http_resp_release(&r);
    sb_http("GET", sb_url(url, sizeof(url), f->mock.port, "/v1/models"), NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_string_equal(str_at(j, "object", NULL), "list");
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    assert_int_equal(cJSON_GetArraySize(data), 1);
    assert_string_equal(str_at(cJSON_GetArrayItem(data, 0), "id", NULL), "sparkbench-mock");
    cJSON_Delete(j);
    sb_http_resp_release(&r);
    sb_http("GET", sb_url(url, sizeof(url), f->mock.port, "/version"), NULL, &r);
    assert_int_equal(r.status, 200);
    sb_http_resp_release(&r);
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    char url[128];
    struct sb_http_resp r;
    static const struct {
        const char *method, *path, *body;
        long status;
        const char *msg_part;
    } cases[] = {
        {"GET", "/nope", NULL, 404, "no such route"},
        {"POST", "/v1/models", "{}", 405, "method not allowed"},
        {"GET", "/v1/completions", NULL, 405, "method not allowed"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\"", 400, "malformed JSON"},
        {"POST", "/v1/completions", "[1,2]", 400, "JSON object"},
        {"POST", "/v1/completions", "{\"max_tokens\":4}", 400, "'prompt'"},
        {"POST", "/v1/chat/completions", "{\"messages\":[]}", 400, "'messages'"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"model\":\"other\"}", 404,
         "does not exist"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2.5}", 400, "max_tokens"},
        {"POST", "/v1/completions",
         "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400, "stream=True"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":200000}", 400,
         "maximum context length"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sb_http(cases[i].method, sb_url(url, sizeof(url), f->mock.port, cases[i].path),
                cases[i].body, &r);
        assert_int_equal(r.status, cases[i].status);
        cJSON *j = cJSON_Parse(r.body);
        assert_non_null(j);
        const char *msg = str_at(j, "error", "message");
        assert_non_null(msg);
        if (!strstr(msg, cases[i].msg_part))
            fail_msg("case %zu: message '%s' lacks '%s'", i, msg, cases[i].msg_part);
        assert_int_equal((long)num_at(j, "error", "code"), cases[i].status);
        cJSON_Delete(j);
        sb_http_resp_release(&r);
    }
}

/* Streams one request and returns its SSE events; checks headers and the stamp header. */
static int stream(struct fixture *f, const char *path, const char *body, char ***events,
                  char **headers)
{
    char url[128];
    struct sb_http_resp r;
    sb_http("POST", sb_url(url, sizeof(url), f->mock.port, path), body, &r);
    assert_int_equal(r.curl_rc, 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "text/event-stream"));
    assert_non_null(strstr(r.headers, "x-mock-recv-ns: "));
    int n = sb_test_split_sse(r.body, events);
    if (headers)
        *headers = strdup(r.headers);
    sb_http_resp_release(&r);
    return n;
}

static void test_chat_stream_usage(void **state)
{
    struct fixture *f = *state;
    char **ev;
    int n = stream(f, "/v1/chat/completions",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hello world\"}],\"max_tokens\":"
                   "7,\"stream\":true,\"stream_options\":{\"include_usage\":true,"
                   "\"continuous_usage_stats\":false}}",
                   &ev, NULL);
    /* role chunk + 7 content chunks + usage chunk + [DONE] */
    assert_int_equal(n, 10);
    cJSON *role = cJSON_Parse(ev[0] + 6);
    cJSON *ch0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(role, "choices"), 0);
    assert_string_equal(str_at(ch0, "delta", "role"), "assistant");
    assert_string_equal(str_at(ch0, "delta", "content"), "");
    cJSON_Delete(role);
    for (int i = 1; i <= 7; i++) {
        assert_memory_equal(ev[i], "data: {", 7);
        cJSON *c = cJSON_Parse(ev[i] + 6);
        assert_non_null(c);
        assert_string_equal(str_at(c, "object", NULL), "chat.completion.chunk");
        cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "choices"), 0);
        const char *content = str_at(ch, "delta", "content");
        assert_non_null(content);
        assert_true(strlen(content) > 1);
        cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (i < 7)
            assert_true(cJSON_IsNull(fr));
        else
            assert_string_equal(fr->valuestring, "length");
        /* The first content chunk carries the server's stamps. */
        cJSON *stamp = cJSON_GetObjectItemCaseSensitive(c, "x_mock");
        if (i == 1) {
            assert_non_null(stamp);
            assert_true(num_at(stamp, "first_token_ns", NULL) >= num_at(stamp, "recv_ns", NULL));
        } else {
            assert_null(stamp);
        }
        cJSON_Delete(c);
    }
    cJSON *u = cJSON_Parse(ev[8] + 6);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(u, "choices")), 0);
    assert_int_equal((int)num_at(u, "usage", "completion_tokens"), 7);
    assert_int_equal((int)num_at(u, "usage", "prompt_tokens"), 3); /* 12 bytes / 4 */
    assert_int_equal((int)num_at(u, "usage", "total_tokens"), 10);
    cJSON_Delete(u);
    assert_string_equal(ev[9], "data: [DONE]");
    sb_strv_free(ev, n);
}

static void test_chat_stream_no_usage(void **state)
{
    struct fixture *f = *state;
    char **ev;
    int n = stream(f, "/v1/chat/completions",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3,"
                   "\"stream\":true}",
                   &ev, NULL);
    assert_int_equal(n, 5); /* role + 3 + [DONE] */
    for (int i = 0; i < n; i++)
        assert_null(strstr(ev[i], "\"usage\""));
    sb_strv_free(ev, n);
}

static void test_completions_stream(void **state)
{
    struct fixture *f = *state;
    char **ev;
    int n = stream(f, "/v1/completions",
                   "{\"prompt\":\"one two three four\",\"max_tokens\":5,\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}",
                   &ev, NULL);
    assert_int_equal(n, 7); /* 5 text chunks + usage + [DONE]; no role chunk */
    for (int i = 0; i < 5; i++) {
        cJSON *c = cJSON_Parse(ev[i] + 6);
        assert_string_equal(str_at(c, "object", NULL), "text_completion");
        assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "usage")));
        cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "choices"), 0);
        assert_true(strlen(str_at(ch, "text", NULL)) > 1);
        cJSON_Delete(c);
    }
    cJSON *u = cJSON_Parse(ev[5] + 6);
    assert_int_equal((int)num_at(u, "usage", "completion_tokens"), 5);
    assert_int_equal((int)num_at(u, "usage", "prompt_tokens"), 5); /* 18 bytes / 4 rounded up */
    cJSON_Delete(u);
    assert_string_equal(ev[6], "data: [DONE]");
    sb_strv_free(ev, n);
}

static int count_words(const char *s)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p == ' ';
    return n;
}

static void test_non_stream(void **state)
{
    struct fixture *f = *state;
    cJSON *j = post_json(f, "/v1/chat/completions",
                         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                         "\"text\":\"abcdefgh\"}]}],\"max_tokens\":9}",
                         200);
    assert_string_equal(str_at(j, "object", NULL), "chat.completion");
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    assert_string_equal(str_at(ch, "message", "role"), "assistant");
    assert_int_equal(count_words(str_at(ch, "message", "content")), 9);
    assert_string_equal(str_at(ch, "finish_reason", NULL), "length");
    assert_int_equal((int)num_at(j, "usage", "completion_tokens"), 9);
    assert_int_equal((int)num_at(j, "usage", "prompt_tokens"), 3); /* "abcdefgh\n" */
    cJSON_Delete(j);

    j = post_json(f, "/v1/completions", "{\"prompt\":[1,2,3,4,5,6],\"max_tokens\":2}", 200);
    assert_int_equal((int)num_at(j, "usage", "prompt_tokens"), 6); /* token ids count exactly */
    ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    assert_int_equal(count_words(str_at(ch, "text", NULL)), 2);
    cJSON_Delete(j);

    /* No max_tokens: the configured default (16). */
    j = post_json(f, "/v1/completions", "{\"prompt\":\"x\"}", 200);
    assert_int_equal((int)num_at(j, "usage", "completion_tokens"), 16);
    cJSON_Delete(j);
}

static char *text_of(struct fixture *f, const char *prompt)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"max_tokens\":12}", prompt);
    cJSON *j = post_json(f, "/v1/completions", body, 200);
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    char *t = strdup(str_at(ch, "text", NULL));
    cJSON_Delete(j);
    return t;
}

static void test_deterministic_text(void **state)
{
    struct fixture *f = *state;
    char *a = text_of(f, "same prompt"), *b = text_of(f, "same prompt");
    char *c = text_of(f, "another prompt");
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    /* Another seed, another text for the same prompt. */
    const char *extra[] = {"--seed", "7", NULL};
    void *st2;
    assert_int_equal(start_with(&st2, extra), 0);
    char *d = text_of(st2, "same prompt");
    assert_string_not_equal(a, d);
    assert_int_equal(teardown(&st2), 0);
    free(a);
    free(b);
    free(c);
    free(d);
}

static void test_echo_eos_ignore(void **state)
{
    (void)state;
    const char *extra[] = {"--mode", "echo", "--eos-prob", "1", NULL};
    void *st;
    assert_int_equal(start_with(&st, extra), 0);
    struct fixture *f = st;
    cJSON *j = post_json(f, "/v1/completions",
                         "{\"prompt\":\"alpha beta\",\"max_tokens\":10,\"min_tokens\":3}", 200);
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    assert_string_equal(str_at(ch, "text", NULL), " alpha beta alpha");
    assert_string_equal(str_at(ch, "finish_reason", NULL), "stop");
    assert_int_equal((int)num_at(j, "usage", "completion_tokens"), 3);
    cJSON_Delete(j);
    j = post_json(f, "/v1/completions",
                  "{\"prompt\":\"alpha beta\",\"max_tokens\":10,\"ignore_eos\":true}", 200);
    assert_int_equal((int)num_at(j, "usage", "completion_tokens"), 10);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    assert_string_equal(str_at(ch, "finish_reason", NULL), "length");
    cJSON_Delete(j);
    assert_int_equal(teardown(&st), 0);
}

static void test_startup_unavailable(void **state)
{
    (void)state;
    const char *extra[] = {"--startup-ms", "600000", NULL};
    void *st;
    assert_int_equal(start_with(&st, extra), 0);
    struct fixture *f = st;
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), f->mock.port, "/health"), NULL, &r);
    assert_int_equal(r.status, 503);
    sb_http_resp_release(&r);
    cJSON *j = post_json(f, "/v1/completions", "{\"prompt\":\"x\"}", 503);
    assert_non_null(strstr(str_at(j, "error", "message"), "loading"));
    cJSON_Delete(j);
    assert_int_equal(teardown(&st), 0);
}

/* Checks the exposition format line by line and returns the value of one sample. */
static double metric(const char *text, const char *sample)
{
    double v = -1;
    char *copy = strdup(text);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
            continue;
        }
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        char *end;
        double x = strtod(sp + 1, &end);
        assert_true(*end == '\0');
        /* name[{labels}] */
        for (const char *c = line; c < sp && *c != '{'; c++)
            assert_true((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                        *c == ':' || (*c >= '0' && *c <= '9'));
        if ((size_t)(sp - line) == strlen(sample) && strncmp(line, sample, strlen(sample)) == 0)
            v = x;
    }
    free(copy);
    return v;
}

static void test_metrics_and_log(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++) {
        cJSON *j = post_json(f, "/v1/completions", "{\"prompt\":\"abcd\",\"max_tokens\":4}", 200);
        cJSON_Delete(j);
    }
    cJSON *j = post_json(f, "/v1/completions", "{bad", 400);
    cJSON_Delete(j);
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), f->mock.port, "/metrics"), NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "text/plain; version=0.0.4"));
    assert_true(metric(r.body, "mock:requests_total{outcome=\"ok\"}") == 3);
    assert_true(metric(r.body, "mock:requests_total{outcome=\"invalid\"}") == 1);
    assert_true(metric(r.body, "mock:generation_tokens_total") == 12);
    assert_true(metric(r.body, "mock:prompt_tokens_total") == 3);
    assert_true(metric(r.body, "mock:time_to_first_token_seconds_count") == 3);
    assert_true(metric(r.body, "mock:time_to_first_token_seconds_bucket{le=\"+Inf\"}") == 3);
    assert_true(metric(r.body, "mock:inter_token_latency_seconds_count") == 9);
    assert_true(metric(r.body, "mock:num_requests_running") == 0);
    sb_http_resp_release(&r);

    char *log = sb_test_read_file(f->logpath);
    assert_non_null(log);
    assert_int_equal(sb_test_count(log, "\n"), 4);
    char *save = NULL;
    int ok = 0;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *l = cJSON_Parse(line);
        assert_non_null(l);
        if (strcmp(str_at(l, "outcome", NULL), "ok") == 0) {
            ok++;
            assert_int_equal((int)num_at(l, "completion_tokens", NULL), 4);
            assert_true(num_at(l, "first_token_ns", NULL) >= num_at(l, "recv_ns", NULL));
            assert_true(num_at(l, "last_byte_ns", NULL) >= num_at(l, "last_token_ns", NULL));
        }
        cJSON_Delete(l);
    }
    assert_int_equal(ok, 3);
    free(log);
}

static void test_request_id_echo(void **state)
{
    struct fixture *f = *state;
    /* curl via the command line would do; use the helper with a header through the body API. */
    char url[128];
    sb_url(url, sizeof(url), f->mock.port, "/v1/completions");
    const char *argv[] = {"/usr/bin/curl",
                          "-s",
                          "-i",
                          "-H",
                          "X-Request-Id: run42-7",
                          "-d",
                          "{\"prompt\":\"x\",\"max_tokens\":1}",
                          url,
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(argv, &out, &err), 0);
    assert_non_null(strstr(out, "X-Request-Id: run42-7"));
    free(out);
    free(err);
}

static void test_profile_and_bad_config(void **state)
{
    (void)state;
    char profile[512];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackB.yaml", srcdir);
    /* Flags after the profile win: the port and the timings come from the command line. */
    const char *extra[] = {"--profile", profile, "--port", "0", "--decode-base-ms", "0", NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, extra), 0);
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), p.port, "/v1/models"), NULL, &r);
    assert_non_null(strstr(r.body, "meta-llama/Llama-3.1-8B-Instruct"));
    sb_http_resp_release(&r);
    assert_int_equal(sb_proc_stop(&p, SIGINT), 0);

    char bad[] = "/tmp/sbtest-badprofile-XXXXXX";
    int fd = mkstemp(bad);
    const char *text = "port: 0\nmax_num_seq: 4\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    const char *argv[] = {bin, "mock", "--profile", bad, NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(argv, &out, &err), 2);
    assert_non_null(strstr(err, bad));
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "unknown key 'max_num_seq'"));
    assert_non_null(strstr(err, "did you mean 'max_num_seqs'"));
    free(out);
    free(err);
    unlink(bad);

    const char *argv2[] = {bin, "mock", "--max-num-seqs", "0", NULL};
    assert_int_equal(sb_proc_run(argv2, &out, &err), 2);
    assert_non_null(strstr(err, "out of range"));
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
        cmocka_unit_test_setup_teardown(test_health_models_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_stream_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_stream_no_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completions_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_and_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id_echo, setup, teardown),
        cmocka_unit_test(test_echo_eos_ignore),
        cmocka_unit_test(test_startup_unavailable),
        cmocka_unit_test(test_profile_and_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
