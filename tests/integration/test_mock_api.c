/*
 * Integration tests for the OpenAI request fields `sparkbench mock` honours (`stop`) or refuses
 * with a 400 naming the field (`n` > 1, `logprobs`, `echo`, `best_of`, ...), never silently
 * ignores; and for the small things a client sees on every response: `/health`'s content type and
 * response ids that differ across restarts.
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

#include "proc.h"

static const char *bin;

/* A zero-cost mock that echoes the prompt's words: the output text is known in advance. */
static const char *const echo_args[] = {"--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "0",
                                        "--decode-per-seq-us",
                                        "0",
                                        "--mode",
                                        "echo",
                                        NULL};

static int setup(void **state)
{
    struct sb_proc *p = calloc(1, sizeof(*p));
    if (sb_proc_start_mock(p, bin, echo_args) != 0) {
        free(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct sb_proc *p = *state;
    int rc = sb_proc_stop(p, SIGTERM);
    free(p);
    return rc == 0 ? 0 : -1;
}

static cJSON *post(int port, const char *path, const char *body, long want_status)
{
    char url[128];
    struct sb_http_resp r;
    sb_http("POST", sb_url(url, sizeof(url), port, path), body, &r);
    assert_int_equal(r.curl_rc, 0);
    if (r.status != want_status)
        fail_msg("status %ld, want %ld: %s", r.status, want_status, r.body);
    assert_non_null(strstr(r.headers, want_status == 200 && strstr(body, "\"stream\":true")
                                          ? "text/event-stream"
                                          : "application/json"));
    cJSON *j = want_status == 200 && strstr(body, "\"stream\":true") ? cJSON_CreateString(r.body)
                                                                     : cJSON_Parse(r.body);
    assert_non_null(j);
    sb_http_resp_release(&r);
    return j;
}

static const cJSON *choice0(const cJSON *j)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
}

static const char *str(const cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int completion_tokens(const cJSON *j)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    return (int)cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valuedouble;
}

/* `stop` ends generation at the first stop string, which is left out of the text (OpenAI, vLLM). */
static void test_stop_strings(void **state)
{
    struct sb_proc *p = *state;
    static const struct {
        const char *stop; /* the JSON value */
        const char *text;
        const char *finish;
        int tokens;
    } cases[] = {
        /* echo emits " alpha", " beta", " gamma", " delta", " alpha", ... */
        {"\"gamma\"", " alpha beta ", "stop", 3},
        {"[\"zzz\",\"ta ga\"]", " alpha be", "stop", 3},
        {"[\"delta\",\"beta\"]", " alpha ", "stop", 2},
        {"\"nowhere\"", " alpha beta gamma delta alpha beta", "length", 6},
        {"[]", " alpha beta gamma delta alpha beta", "length", 6},
        {"null", " alpha beta gamma delta alpha beta", "length", 6},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"prompt\":\"alpha beta gamma delta\",\"max_tokens\":6,\"stop\":%s}",
                 cases[i].stop);
        cJSON *j = post(p->port, "/v1/completions", body, 200);
        const cJSON *c = choice0(j);
        if (strcmp(str(c, "text"), cases[i].text) != 0)
            fail_msg("case %zu: text '%s', want '%s'", i, str(c, "text"), cases[i].text);
        assert_string_equal(str(c, "finish_reason"), cases[i].finish);
        assert_int_equal(completion_tokens(j), cases[i].tokens);
        cJSON_Delete(j);

        /* Streamed, the chunks' texts join to the same text: nothing of the stop string leaks. */
        snprintf(body, sizeof(body),
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"alpha beta gamma delta\"}],"
                 "\"max_tokens\":6,\"stop\":%s,\"stream\":true}",
                 cases[i].stop);
        j = post(p->port, "/v1/chat/completions", body, 200);
        char **ev;
        int n = sb_test_split_sse(j->valuestring, &ev);
        char joined[256] = "";
        const char *finish = NULL;
        cJSON *last = NULL;
        for (int k = 0; k < n; k++) {
            if (strncmp(ev[k], "data: {", 7) != 0)
                continue;
            cJSON *e = cJSON_Parse(ev[k] + 6);
            assert_non_null(e);
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice0(e), "delta");
            const char *t = str(d, "content");
            if (t)
                strncat(joined, t, sizeof(joined) - strlen(joined) - 1);
            if (str(choice0(e), "finish_reason")) {
                cJSON_Delete(last);
                last = e;
                finish = str(choice0(e), "finish_reason");
            } else {
                cJSON_Delete(e);
            }
        }
        if (strcmp(joined, cases[i].text) != 0)
            fail_msg("case %zu: streamed '%s', want '%s'", i, joined, cases[i].text);
        assert_non_null(finish);
        assert_string_equal(finish, cases[i].finish);
        cJSON_Delete(last);
        sb_strv_free(ev, n);
        cJSON_Delete(j);
    }
}

/* What the mock cannot do it refuses, naming the field: a client never gets less than it asked. */
static void test_unsupported_fields(void **state)
{
    struct sb_proc *p = *state;
    static const struct {
        const char *path, *extra, *param;
    } cases[] = {
        {"/v1/completions", "\"n\":2", "n"},
        {"/v1/chat/completions", "\"n\":3", "n"},
        {"/v1/completions", "\"logprobs\":1", "logprobs"},
        {"/v1/chat/completions", "\"logprobs\":true", "logprobs"},
        {"/v1/chat/completions", "\"top_logprobs\":2", "top_logprobs"},
        {"/v1/completions", "\"echo\":true", "echo"},
        {"/v1/completions", "\"best_of\":2", "best_of"},
        {"/v1/completions", "\"suffix\":\"x\"", "suffix"},
        {"/v1/completions", "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"},
        {"/v1/completions", "\"stop\":7", "stop"},
        {"/v1/completions", "\"n\":0", "n"},
        /* Found by tests/fuzz/fuzz_mock: numbers beyond long long were cast unchecked (UB). */
        {"/v1/completions", "\"n\":27777777777777777777777777777777777777777777", "n"},
        {"/v1/completions", "\"n\":1e300", "n"},
        {"/v1/completions", "\"max_tokens\":1e300", "max_tokens"},
        /* vLLM's SamplingParams._verify_args: 0 <= min_tokens <= max_tokens, else a 400. */
        {"/v1/completions", "\"min_tokens\":1e300", "min_tokens"},
        {"/v1/completions", "\"min_tokens\":-1", "min_tokens"},
        {"/v1/completions", "\"min_tokens\":1.5", "min_tokens"},
        {"/v1/completions", "\"max_tokens\":2,\"min_tokens\":3", "min_tokens"},
        {"/v1/completions", "\"min_tokens\":\"2\"", "min_tokens"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        if (strstr(cases[i].path, "chat"))
            snprintf(body, sizeof(body),
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", cases[i].extra);
        else
            snprintf(body, sizeof(body), "{\"prompt\":\"x\",%s}", cases[i].extra);
        cJSON *j = post(p->port, cases[i].path, body, 400);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (!str(e, "param") || strcmp(str(e, "param"), cases[i].param) != 0)
            fail_msg("case %zu: param '%s', want '%s'", i, str(e, "param"), cases[i].param);
        assert_string_equal(str(e, "type"), "invalid_request_error");
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", cases[i].param);
        assert_non_null(strstr(str(e, "message"), quoted));
        assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(e, "code")->valuedouble, 400);
        cJSON_Delete(j);
    }
    /* The defaults are accepted: n 1, logprobs false/null, echo false, best_of 1. */
    cJSON *j = post(p->port, "/v1/completions",
                    "{\"prompt\":\"x\",\"max_tokens\":2,\"n\":1,\"logprobs\":null,\"echo\":false,"
                    "\"best_of\":1}",
                    200);
    assert_int_equal(completion_tokens(j), 2);
    cJSON_Delete(j);
    j = post(p->port, "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2,"
             "\"logprobs\":false,\"n\":1}",
             200);
    assert_int_equal(completion_tokens(j), 2);
    cJSON_Delete(j);
}

static void test_health_content_type(void **state)
{
    struct sb_proc *p = *state;
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), p->port, "/health"), NULL, &r);
    assert_int_equal(r.status, 200);
    print_message("/health headers: %s\n", r.headers);
    /* Not libevent's default (text/html for an HTML page that is not there). */
    assert_non_null(strcasestr(r.headers, "\r\nContent-Type: text/plain"));
    sb_http_resp_release(&r);

    /* Unhealthy (still loading): an error, so the JSON error shape. */
    const char *args[] = {"--startup-ms", "600000", NULL};
    struct sb_proc q;
    assert_int_equal(sb_proc_start_mock(&q, bin, args), 0);
    sb_http("GET", sb_url(url, sizeof(url), q.port, "/health"), NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strcasestr(r.headers, "\r\nContent-Type: application/json"));
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_non_null(str(cJSON_GetObjectItemCaseSensitive(j, "error"), "message"));
    cJSON_Delete(j);
    sb_http_resp_release(&r);
    assert_int_equal(sb_proc_stop(&q, SIGTERM), 0);
}

static char *first_id(int port)
{
    cJSON *j = post(port, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", 200);
    char *id = strdup(str(j, "id"));
    cJSON_Delete(j);
    return id;
}

/* Two runs of the same mock must not hand out the same ids: a client joining logs of two runs
   by id would mix them. Faults and text stay fixed by --seed. */
static void test_ids_differ_across_restarts(void **state)
{
    (void)state;
    struct sb_proc a, b;
    assert_int_equal(sb_proc_start_mock(&a, bin, echo_args), 0);
    char *id_a = first_id(a.port);
    assert_int_equal(sb_proc_stop(&a, SIGTERM), 0);
    assert_int_equal(sb_proc_start_mock(&b, bin, echo_args), 0);
    char *id_b = first_id(b.port);
    char *id_b2 = first_id(b.port);
    assert_int_equal(sb_proc_stop(&b, SIGTERM), 0);
    print_message("ids: first run %s, second run %s\n", id_a, id_b);
    assert_int_equal(strncmp(id_a, "cmpl-", 5), 0);
    assert_string_not_equal(id_a, id_b);
    assert_string_not_equal(id_b, id_b2);
    free(id_a);
    free(id_b);
    free(id_b2);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stop_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_content_type, setup, teardown),
        cmocka_unit_test(test_ids_differ_across_restarts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
