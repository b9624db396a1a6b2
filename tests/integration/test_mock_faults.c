/*
 * Integration tests for the mock's injected faults: each kind, on streaming and non-streaming
 * requests, looks on the wire the way the real failure does, and the choice of faulty requests
 * is reproducible under --seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin;

static const char *const stream_body =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"fault test\"}],\"max_tokens\":8,"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
static const char *const plain_body =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"fault test\"}],\"max_tokens\":8}";

static void start_fault_mock(struct sb_proc *p, const char *kind, const char *rate,
                             const char *seed)
{
    const char *args[] = {"--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          "--decode-base-ms",
                          "1",
                          "--decode-per-seq-us",
                          "0",
                          "--fault-rate",
                          rate,
                          "--fault-kinds",
                          kind,
                          "--fault-stall-ms",
                          "150",
                          "--fault-slow-headers-ms",
                          "150",
                          "--seed",
                          seed,
                          NULL};
    assert_int_equal(sb_proc_start_mock(p, bin, args), 0);
}

struct outcome {
    long status;
    int curl_rc;
    char *body;
};

static struct outcome request(int port, const char *body)
{
    char url[128];
    struct sb_stream s;
    sb_stream_init(&s, sb_url(url, sizeof(url), port, "/v1/chat/completions"), body);
    sb_streams_run(&s, 1, NULL, NULL);
    struct outcome o = {s.status, s.curl_rc, strdup(s.body.data ? s.body.data : "")};
    sb_stream_release(&s);
    return o;
}

/* Counts SSE data events whose JSON parses, and those that do not. */
static void count_events(const char *body, int *good, int *bad, int *content)
{
    char **ev;
    int n = sb_test_split_sse(body, &ev);
    *good = *bad = *content = 0;
    for (int i = 0; i < n; i++) {
        if (strncmp(ev[i], "data: {", 7) != 0)
            continue;
        cJSON *j = cJSON_Parse(ev[i] + 6);
        if (!j) {
            (*bad)++;
            continue;
        }
        (*good)++;
        cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"),
                                                    "content");
        if (cJSON_IsString(c) && c->valuestring[0])
            (*content)++;
        cJSON_Delete(j);
    }
    sb_strv_free(ev, n);
}

static void check_error_body(const char *body, long code, bool flat)
{
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    const cJSON *holder = flat ? j : cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_non_null(holder);
    if (flat)
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "error");
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(holder, "message")));
    assert_int_equal((long)cJSON_GetObjectItemCaseSensitive(holder, "code")->valuedouble, code);
    cJSON_Delete(j);
}

static void test_status_faults(void **state)
{
    (void)state;
    static const struct {
        const char *kind;
        long status;
        bool flat;
    } cases[] = {
        {"429", 429, false}, {"500", 500, false}, {"503", 503, false}, {"trtllm_error", 400, true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sb_proc p;
        start_fault_mock(&p, cases[i].kind, "1", "1");
        for (int stream = 0; stream < 2; stream++) {
            struct outcome o = request(p.port, stream ? stream_body : plain_body);
            assert_int_equal(o.curl_rc, CURLE_OK);
            assert_int_equal(o.status, cases[i].status);
            check_error_body(o.body, cases[i].status, cases[i].flat);
            free(o.body);
        }
        assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    }
}

static void test_close(void **state)
{
    (void)state;
    struct sb_proc p;
    start_fault_mock(&p, "close", "1", "1");
    struct outcome o = request(p.port, stream_body);
    /* Headers came (200) but the chunked body was cut: curl reports a transfer error. */
    assert_int_equal(o.status, 200);
    assert_true(o.curl_rc == CURLE_PARTIAL_FILE || o.curl_rc == CURLE_RECV_ERROR);
    assert_null(strstr(o.body, "[DONE]"));
    int good, bad, content;
    count_events(o.body, &good, &bad, &content);
    assert_true(content >= 1 && content < 8);
    free(o.body);
    o = request(p.port, plain_body);
    assert_int_not_equal(o.curl_rc, CURLE_OK); /* non-stream: connection closed, no reply */
    free(o.body);
    /* The server survives and keeps serving. */
    o = request(p.port, plain_body);
    assert_int_not_equal(o.curl_rc, CURLE_OK);
    free(o.body);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

static void test_stall_and_slow_headers(void **state)
{
    (void)state;
    const char *kinds[] = {"stall", "slow_headers"};
    for (int k = 0; k < 2; k++) {
        struct sb_proc p;
        start_fault_mock(&p, kinds[k], "1", "1");
        struct outcome o = request(p.port, stream_body);
        /* Late but whole: every token, the usage chunk and [DONE]. */
        assert_int_equal(o.curl_rc, CURLE_OK);
        assert_int_equal(o.status, 200);
        int good, bad, content;
        count_events(o.body, &good, &bad, &content);
        assert_int_equal(bad, 0);
        assert_int_equal(content, 8);
        assert_non_null(strstr(o.body, "data: [DONE]"));
        free(o.body);
        o = request(p.port, plain_body);
        assert_int_equal(o.status, 200);
        cJSON *j = cJSON_Parse(o.body);
        assert_non_null(j);
        cJSON_Delete(j);
        free(o.body);
        assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    struct sb_proc p;
    start_fault_mock(&p, "malformed", "1", "1");
    struct outcome o = request(p.port, stream_body);
    assert_int_equal(o.curl_rc, CURLE_OK);
    int good, bad, content;
    count_events(o.body, &good, &bad, &content);
    assert_int_equal(bad, 1);     /* exactly one event with broken JSON */
    assert_int_equal(content, 7); /* the other tokens arrive intact */
    assert_non_null(strstr(o.body, "data: [DONE]"));
    free(o.body);
    o = request(p.port, plain_body);
    assert_int_equal(o.status, 200);
    assert_null(cJSON_Parse(o.body)); /* truncated JSON body */
    free(o.body);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

static void test_dynamo_error(void **state)
{
    (void)state;
    struct sb_proc p;
    start_fault_mock(&p, "dynamo_error", "1", "1");
    struct outcome o = request(p.port, stream_body);
    assert_int_equal(o.curl_rc, CURLE_OK); /* the stream ends cleanly, with an error event */
    assert_int_equal(o.status, 200);
    assert_non_null(strstr(o.body, "event: error\n: "));
    assert_null(strstr(o.body, "[DONE]"));
    /* No data line follows the error event. */
    const char *ev = strstr(o.body, "event: error");
    assert_null(strstr(ev, "data:"));
    free(o.body);
    o = request(p.port, plain_body);
    assert_int_equal(o.status, 500);
    check_error_body(o.body, 500, false);
    free(o.body);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

/* Which of 40 sequential requests fail, as a bit mask. */
static uint64_t failure_pattern(const char *seed)
{
    struct sb_proc p;
    start_fault_mock(&p, "429,500,503", "0.3", seed);
    uint64_t mask = 0;
    for (int i = 0; i < 40; i++) {
        struct outcome o = request(p.port, plain_body);
        if (o.status != 200)
            mask |= 1ull << i;
        free(o.body);
    }
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    return mask;
}

static void test_deterministic_faults(void **state)
{
    (void)state;
    uint64_t a = failure_pattern("11"), b = failure_pattern("11"), c = failure_pattern("12");
    assert_int_equal(a, b);
    assert_int_not_equal(a, c);
    int n = __builtin_popcountll(a);
    assert_true(n >= 3 && n <= 25); /* about 30 % of 40 */
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_faults),          cmocka_unit_test(test_close),
        cmocka_unit_test(test_stall_and_slow_headers), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_dynamo_error),           cmocka_unit_test(test_deterministic_faults),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
