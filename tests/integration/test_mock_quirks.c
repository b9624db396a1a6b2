/*
 * Integration tests for `sparkbench mock --quirks llamacpp` and the cache-reset endpoints, read off
 * a raw TCP socket where the wire itself is the point: the llama.cpp build of issue 11 answers an
 * over-long streamed prompt with HTTP 200 and an SSE `error:` line, advertises Keep-Alive on a
 * stream yet closes the socket after `data: [DONE]`, sends `timings` computed from its own clock,
 * a role chunk with `"content":null`, its `llamacpp:` Prometheus series, and slots that keep their
 * KV until `POST /slots/<id>?action=erase`. vLLM's `POST /reset_prefix_cache` and SGLang's
 * `POST /flush_cache` empty the prefix cache so an identical request misses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "wire_client.h"

static const char *bin;

/* Starts a mock with the given flags (NULL-terminated); fails the test when it cannot. */
static void start(struct sb_proc *p, const char *const *args)
{
    assert_int_equal(sb_proc_start_mock(p, bin, args), 0);
}

static void stop(struct sb_proc *p)
{
    assert_int_equal(sb_proc_stop(p, SIGTERM), 0);
}

/* A chat body whose prompt is `bytes` bytes as the mock counts it (content + one newline), i.e.
   bytes / 4 prompt tokens when bytes is a multiple of 4. Free the result. */
static char *chat_body(size_t bytes, long max_tokens, const char *extra)
{
    size_t cap = bytes + 512;
    char *b = malloc(cap);
    assert_non_null(b);
    int n = snprintf(b, cap, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (size_t i = 0; i + 1 < bytes; i++)
        b[n++] = (char)('a' + (char)(i % 26));
    snprintf(b + n, cap - (size_t)n, "\"}],\"max_tokens\":%ld%s%s}", max_tokens, extra ? "," : "",
             extra ? extra : "");
    return b;
}

/* The data: events of an SSE body, in order (the [DONE] line excluded), as JSON. */
static int data_events(const char *body, cJSON **out, int cap)
{
    int n = 0;
    for (const char *p = strstr(body, "data: "); p && n < cap; p = strstr(p + 1, "\ndata: ")) {
        if (*p == '\n')
            p++;
        if (strncmp(p, "data: [DONE]", 12) == 0)
            break;
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        char *line = strndup(p + 6, (size_t)(end - p - 6));
        out[n] = cJSON_Parse(line);
        if (!out[n])
            fail_msg("not JSON: %s", line);
        free(line);
        n++;
    }
    return n;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        fail_msg("'%s' is not a number", k);
    return v->valuedouble;
}

static cJSON *obj(const cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v)
        fail_msg("no '%s'", k);
    return v;
}

/* Waits for the server to close fd; true when read() saw EOF (or a reset) within limit_ms. */
static bool closed_within(int fd, int limit_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, limit_ms) != 1)
        return false;
    char c;
    ssize_t n = read(fd, &c, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/*
 * Item 1: prompt tokens >= the context with context shift off. The llama.cpp build of issue 11
 * (tools/server/server.cpp, handle_completions_impl: the error callback of
 * receive_cmpl_results_stream writes server_sent_event(sink, "error", ...), then "data: [DONE]")
 * answers a stream with HTTP 200 and an `error:` event; a plain request gets the JSON error with
 * status 400. 400 prompt bytes = 100 tokens against a 64-token context.
 */
static void test_context_error_in_200_stream(void **state)
{
    (void)state;
    const char *args[] = {"--quirks", "llamacpp", "--max-model-len", "64", NULL};
    struct sb_proc p;
    start(&p, args);
    char *body = chat_body(400, 4, "\"stream\":true");
    int fd = wire_connect(p.port);
    wire_post(fd, "/v1/chat/completions", body);
    struct wire_resp r;
    wire_read(fd, &r, NULL);
    close(fd);
    free(body);
    print_message("stream: HTTP %d, body: %s", r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.raw, r.head_len, "Content-Type", "text/event-stream"));
    static const char want[] =
        "error: {\"code\":400,\"message\":\"the request exceeds the available context size, try "
        "increasing it\",\"type\":\"exceed_context_size_error\",\"n_prompt_tokens\":100,"
        "\"n_ctx\":64}\n\ndata: [DONE]\n\n";
    assert_string_equal(r.body, want);
    assert_int_equal(r.body_len, strlen(want)); /* nothing after [DONE], not even a NUL */
    wire_resp_release(&r);

    body = chat_body(400, 4, NULL);
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(
        sb_http("POST", sb_url(url, sizeof(url), p.port, "/v1/chat/completions"), body, &h), 0);
    free(body);
    print_message("plain: HTTP %ld, body: %s\n", h.status, h.body);
    assert_int_equal(h.status, 400);
    assert_string_equal(h.body, "{\"error\":{\"code\":400,\"message\":\"the request exceeds the "
                                "available context size, try increasing it\",\"type\":"
                                "\"exceed_context_size_error\",\"n_prompt_tokens\":100,"
                                "\"n_ctx\":64}}");
    sb_http_resp_release(&h);
    stop(&p);
}

/*
 * Item 5: with --context-shift the build of issue 11's truncating server keeps n_keep (0) tokens
 * and the tail after erasing whole blocks of (n_ctx - n_keep) / 2: n_ctx 64, 100 prompt tokens:
 * blocks of 32, (100 - 32) / 32 = 2 erased, 36 kept, and usage says 36.
 */
static void test_context_shift_truncates(void **state)
{
    (void)state;
    const char *args[] = {"--quirks", "llamacpp", "--context-shift", "--max-model-len", "64", NULL};
    struct sb_proc p;
    start(&p, args);
    char *body = chat_body(400, 4, NULL);
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(
        sb_http("POST", sb_url(url, sizeof(url), p.port, "/v1/chat/completions"), body, &h), 0);
    free(body);
    stop(&p);
    print_message("HTTP %ld: %s\n", h.status, h.body);
    assert_int_equal(h.status, 200);
    cJSON *root = cJSON_Parse(h.body);
    assert_non_null(root);
    cJSON *usage = obj(root, "usage");
    assert_int_equal((int)num(usage, "prompt_tokens"), 36);
    assert_int_equal((int)num(usage, "completion_tokens"), 4);
    assert_int_equal((int)num(obj(root, "timings"), "prompt_n"), 36);
    cJSON_Delete(root);
    sb_http_resp_release(&h);
}

/*
 * Item 2: cpp-httplib advertises "Keep-Alive: timeout=5, max=100" on the stream's headers, yet
 * closes the socket once the chunked content provider has finished (llama.cpp's provider returns
 * false after sink.done(), which httplib's write_content_chunked treats as the end of the
 * connection). A plain JSON reply keeps the connection open.
 */
static void test_keepalive_advertised_then_closed(void **state)
{
    (void)state;
    const char *args[] = {"--quirks", "llamacpp", "--decode-base-ms", "1", NULL};
    struct sb_proc p;
    start(&p, args);
    int fd = wire_connect(p.port);
    /* a plain request first: the connection stays usable */
    wire_post(fd, "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":2}");
    struct wire_resp r;
    wire_read(fd, &r, NULL);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.raw, r.head_len, "Keep-Alive", "timeout=5, max=100"));
    assert_false(r.conn_close);
    wire_resp_release(&r);
    wire_post(fd, "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":3,\"stream\":true}");
    wire_read(fd, &r, NULL);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_true(header_is(r.raw, r.head_len, "Keep-Alive", "timeout=5, max=100"));
    assert_false(r.conn_close);
    assert_non_null(strstr(r.body, "data: [DONE]\n\n"));
    assert_int_equal(strlen(r.body), r.body_len); /* no NUL bytes in the stream */
    /* A hang guard, not a timing assertion: without the quirk the mock keeps it for an hour. */
    bool closed = closed_within(fd, 10000);
    print_message("stream said Keep-Alive: timeout=5, max=100; socket closed after [DONE]: %s\n",
                  closed ? "yes" : "no");
    assert_true(closed);
    wire_resp_release(&r);
    close(fd);
    stop(&p);
}

/* The chunk carrying `timings` and the checks shared by the stream and the plain reply. */
static void check_timings(const cJSON *t, long prompt_tokens, long completion_tokens,
                          const cJSON *logline)
{
    static const char *const fields[] = {"cache_n",
                                         "prompt_n",
                                         "prompt_ms",
                                         "prompt_per_token_ms",
                                         "prompt_per_second",
                                         "predicted_n",
                                         "predicted_ms",
                                         "predicted_per_token_ms",
                                         "predicted_per_second"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        (void)num(t, fields[i]);
    double cache_n = num(t, "cache_n"), prompt_n = num(t, "prompt_n");
    assert_true(cache_n + prompt_n == (double)prompt_tokens);
    assert_true(num(t, "predicted_n") == (double)completion_tokens);
    /* The server's clock as its own log stamps it: prompt time from admission to the first
       token, decode time from the first token to the last. Printed with 3 decimals. */
    double admit = num(logline, "admit_ns"), first = num(logline, "first_token_ns"),
           last = num(logline, "last_token_ns");
    double prompt_ms = num(t, "prompt_ms"), predicted_ms = num(t, "predicted_ms");
    print_message("timings prompt_ms %.3f (log %.3f), predicted_ms %.3f (log %.3f)\n", prompt_ms,
                  (first - admit) / 1e6, predicted_ms, (last - first) / 1e6);
    assert_true(fabs(prompt_ms - (first - admit) / 1e6) <= 0.001);
    assert_true(fabs(predicted_ms - (last - first) / 1e6) <= 0.001);
    assert_true(prompt_ms > 0 && predicted_ms > 0);
    assert_true(fabs(num(t, "prompt_per_token_ms") - prompt_ms / prompt_n) <= 1e-3);
    assert_true(fabs(num(t, "prompt_per_second") - 1e3 * prompt_n / prompt_ms) <=
                1e-3 * num(t, "prompt_per_second"));
    assert_true(fabs(num(t, "predicted_per_token_ms") - predicted_ms / (double)completion_tokens) <=
                1e-3);
    assert_true(
        fabs(num(t, "predicted_per_second") - 1e3 * (double)completion_tokens / predicted_ms) <=
        1e-3 * num(t, "predicted_per_second"));
}

/*
 * Item 4 and the chat chunks: llama.cpp's first chat chunk is {"role":"assistant","content":null}
 * (server_task_result_cmpl_partial::to_json_oaicompat_chat, "We have to send an initial update to
 * conform to openai behavior"), the final result adds a chunk with an empty delta and the
 * finish_reason, then with include_usage a chunk with "choices":[] and usage; `timings`
 * (result_timings::to_json) rides on the last one. A plain reply carries timings too.
 */
static void test_timings_and_chunks(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "quirks");
    char log[512];
    snprintf(log, sizeof(log), "%s/mock.jsonl", dir);
    const char *args[] = {
        "--quirks", "llamacpp", "--prefill-base-ms", "3", "--decode-base-ms", "2", "--log",
        log,        NULL};
    struct sb_proc p;
    start(&p, args);
    char *body = chat_body(400, 5, "\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    int fd = wire_connect(p.port);
    wire_post(fd, "/v1/chat/completions", body);
    free(body);
    struct wire_resp r;
    wire_read(fd, &r, NULL);
    close(fd);
    body = chat_body(400, 5, NULL);
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(
        sb_http("POST", sb_url(url, sizeof(url), p.port, "/v1/chat/completions"), body, &h), 0);
    free(body);
    stop(&p);
    int nlog;
    cJSON **lines = sb_test_read_jsonl(log, &nlog);
    assert_int_equal(nlog, 2);
    assert_int_equal(r.status, 200);
    cJSON *ev[32];
    int n = data_events(r.body, ev, 32);
    print_message("%d data events\n", n);
    assert_int_equal(n, 1 + 5 + 2); /* role, 5 tokens, finish, usage */
    /* the role chunk: role and a null content, nothing else */
    cJSON *d0 = obj(cJSON_GetArrayItem(obj(ev[0], "choices"), 0), "delta");
    assert_string_equal(cJSON_GetStringValue(obj(d0, "role")), "assistant");
    assert_true(cJSON_IsNull(obj(d0, "content")));
    /* token chunks carry content and no timings */
    for (int i = 1; i <= 5; i++) {
        cJSON *c = cJSON_GetArrayItem(obj(ev[i], "choices"), 0);
        assert_true(cJSON_IsString(obj(obj(c, "delta"), "content")));
        assert_true(cJSON_IsNull(obj(c, "finish_reason")));
        assert_null(cJSON_GetObjectItemCaseSensitive(ev[i], "timings"));
    }
    cJSON *fin = cJSON_GetArrayItem(obj(ev[6], "choices"), 0);
    assert_string_equal(cJSON_GetStringValue(obj(fin, "finish_reason")), "length");
    assert_int_equal(cJSON_GetArraySize(obj(fin, "delta")), 0);
    assert_int_equal(cJSON_GetArraySize(obj(ev[7], "choices")), 0);
    cJSON *usage = obj(ev[7], "usage");
    assert_int_equal((int)num(usage, "prompt_tokens"), 100);
    assert_int_equal((int)num(usage, "completion_tokens"), 5);
    check_timings(obj(ev[7], "timings"), 100, 5, lines[0]);
    for (int i = 0; i < n; i++)
        cJSON_Delete(ev[i]);
    wire_resp_release(&r);

    assert_int_equal(h.status, 200);
    cJSON *root = cJSON_Parse(h.body);
    assert_non_null(root);
    check_timings(obj(root, "timings"), 100, 5, lines[1]);
    cJSON_Delete(root);
    sb_http_resp_release(&h);
    sb_test_free_jsonl(lines, nlog);
    sb_test_rm_rf(dir);
    free(dir);
}

/*
 * llama.cpp's /metrics (--metrics) in the build of issue 11: twelve `llamacpp:` series, six
 * counters then six gauges, with the types llama.cpp declares; and /health 503 while loading
 * ({"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}).
 */
static void test_metrics_and_health(void **state)
{
    (void)state;
    /* 400 ms of loading for the first /health to land in, stretched like the hang guard below
       under valgrind (SB_TEST_TIME_SCALE), where the slowed mock took longer than that to answer */
    char startup[32];
    snprintf(startup, sizeof(startup), "%.0f", 400 * sb_test_time_scale());
    const char *args[] = {"--quirks", "llamacpp", "--startup-ms", startup, NULL};
    struct sb_proc p;
    start(&p, args);
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(sb_http("GET", sb_url(url, sizeof(url), p.port, "/health"), NULL, &h), 0);
    print_message("/health while loading: %ld %s\n", h.status, h.body);
    assert_int_equal(h.status, 503);
    assert_string_equal(h.body, "{\"error\":{\"code\":503,\"message\":\"Loading model\","
                                "\"type\":\"unavailable_error\"}}");
    sb_http_resp_release(&h);
    int guard = (int)(200 * sb_test_time_scale());
    for (int i = 0; i < guard; i++) { /* until loaded: a hang guard of 10 s (x the scale) */
        assert_int_equal(sb_http("GET", url, NULL, &h), 0);
        long st = h.status;
        sb_http_resp_release(&h);
        if (st == 200)
            break;
        usleep(50000);
    }
    char *body = chat_body(400, 4, NULL);
    assert_int_equal(
        sb_http("POST", sb_url(url, sizeof(url), p.port, "/v1/chat/completions"), body, &h), 0);
    assert_int_equal(h.status, 200);
    sb_http_resp_release(&h);
    free(body);
    assert_int_equal(sb_http("GET", sb_url(url, sizeof(url), p.port, "/metrics"), NULL, &h), 0);
    stop(&p);
    assert_int_equal(h.status, 200);
    static const struct {
        const char *name, *type;
    } series[] = {
        {"prompt_tokens_total", "counter"},    {"prompt_seconds_total", "counter"},
        {"tokens_predicted_total", "counter"}, {"tokens_predicted_seconds_total", "counter"},
        {"n_decode_total", "counter"},         {"n_busy_slots_per_decode", "counter"},
        {"prompt_tokens_seconds", "gauge"},    {"predicted_tokens_seconds", "gauge"},
        {"kv_cache_usage_ratio", "gauge"},     {"kv_cache_tokens", "gauge"},
        {"requests_processing", "gauge"},      {"requests_deferred", "gauge"},
    };
    int found = 0;
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "# TYPE llamacpp:%s %s\n", series[i].name, series[i].type);
        found += strstr(h.body, want) != NULL;
        if (!strstr(h.body, want))
            print_message("missing: %s", want);
    }
    print_message("%d of 12 llamacpp: series\n", found);
    assert_int_equal(found, 12);
    assert_non_null(strstr(h.body, "\nllamacpp:prompt_tokens_total 100\n"));
    assert_non_null(strstr(h.body, "\nllamacpp:tokens_predicted_total 4\n"));
    assert_non_null(strstr(h.body, "\nllamacpp:requests_processing 0\n"));
    /* the slot still holds the prompt and 3 of the 4 tokens (the last is never decoded) */
    assert_non_null(strstr(h.body, "\nllamacpp:kv_cache_tokens 103\n"));
    sb_http_resp_release(&h);
}

/* POSTs body to path and returns the parsed reply (status 200 asserted). */
static cJSON *post_json(int port, const char *path, const char *body)
{
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(sb_http("POST", sb_url(url, sizeof(url), port, path), body, &h), 0);
    if (h.status != 200)
        fail_msg("%s: HTTP %ld %s", path, h.status, h.body);
    cJSON *root = cJSON_Parse(h.body);
    if (!root)
        fail_msg("%s: not JSON: %s", path, h.body);
    sb_http_resp_release(&h);
    return root;
}

static int cached_of(const cJSON *reply)
{
    return (int)num(obj(obj(reply, "usage"), "prompt_tokens_details"), "cached_tokens");
}

/*
 * Issue 11 item 6: llama.cpp slots keep their KV between requests (an identical prompt reuses all
 * but its last token: cache_n 99 of 100), GET /slots lists them, and
 * POST /slots/<id>?action=erase answers {"id_slot":N,"n_erased":M}
 * (server_task_result_slot_erase::to_json) and empties the slot: the next request misses.
 */
static void test_slots_keep_and_erase(void **state)
{
    (void)state;
    const char *args[] = {"--quirks", "llamacpp", "--max-num-seqs", "2", NULL};
    struct sb_proc p;
    start(&p, args);
    char *body = chat_body(400, 4, NULL);
    cJSON *a = post_json(p.port, "/v1/chat/completions", body);
    cJSON *b = post_json(p.port, "/v1/chat/completions", body);
    int cold = (int)num(obj(a, "timings"), "cache_n"),
        warm = (int)num(obj(b, "timings"), "cache_n");
    assert_int_equal(cold, 0);
    assert_int_equal(warm, 99);
    assert_int_equal(cached_of(b), 99);
    assert_int_equal((int)num(obj(b, "timings"), "prompt_n"), 1);
    struct sb_http_resp h;
    char url[128];
    assert_int_equal(sb_http("GET", sb_url(url, sizeof(url), p.port, "/slots"), NULL, &h), 0);
    assert_int_equal(h.status, 200);
    cJSON *slots = cJSON_Parse(h.body);
    assert_true(cJSON_IsArray(slots));
    assert_int_equal(cJSON_GetArraySize(slots), 2);
    int erased_total = 0;
    for (int i = 0; i < 2; i++) {
        cJSON *s = cJSON_GetArrayItem(slots, i);
        assert_int_equal((int)num(s, "id"), i);
        assert_true(cJSON_IsFalse(obj(s, "is_processing")));
        char path[64];
        snprintf(path, sizeof(path), "/slots/%d?action=erase", i);
        cJSON *e = post_json(p.port, path, "");
        assert_int_equal((int)num(e, "id_slot"), i);
        erased_total += (int)num(e, "n_erased");
        cJSON_Delete(e);
    }
    sb_http_resp_release(&h);
    cJSON_Delete(slots);
    cJSON *c = post_json(p.port, "/v1/chat/completions", body);
    int after = (int)num(obj(c, "timings"), "cache_n");
    print_message("cache_n cold %d, warm %d, erased %d tokens, after erase %d\n", cold, warm,
                  erased_total, after);
    assert_int_equal(erased_total, 103);
    assert_int_equal(after, 0);
    assert_int_equal(cached_of(c), 0);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    free(body);
    stop(&p);
}

/*
 * Issue 11 item 6 for vLLM (POST /reset_prefix_cache: 200 with an empty body) and SGLang
 * (POST /flush_cache: 200 "Cache flushed..."): the KV model's cached blocks are dropped, so an
 * identical request after the reset reports no cached tokens.
 */
static void test_reset_endpoints(void **state)
{
    (void)state;
    const char *args[] = {"--tier0-blocks", "64", "--kv-block-tokens", "16", NULL};
    struct sb_proc p;
    start(&p, args);
    char *body = chat_body(400, 4, NULL);
    static const struct {
        const char *path, *reply;
    } resets[] = {{"/reset_prefix_cache", ""}, {"/flush_cache", "Cache flushed."}};
    for (size_t k = 0; k < 2; k++) {
        cJSON *a = post_json(p.port, "/v1/chat/completions", body);
        cJSON *b = post_json(p.port, "/v1/chat/completions", body);
        struct sb_http_resp h;
        char url[128];
        assert_int_equal(sb_http("POST", sb_url(url, sizeof(url), p.port, resets[k].path), "", &h),
                         0);
        assert_int_equal(h.status, 200);
        assert_true(strncmp(h.body, resets[k].reply, strlen(resets[k].reply)) == 0);
        if (!*resets[k].reply)
            assert_int_equal(h.len, 0);
        sb_http_resp_release(&h);
        cJSON *c = post_json(p.port, "/v1/chat/completions", body);
        print_message("%s: cached_tokens %d, %d, after the reset %d\n", resets[k].path,
                      cached_of(a), cached_of(b), cached_of(c));
        assert_true(cached_of(b) > 0);
        assert_int_equal(cached_of(c), 0);
        cJSON_Delete(a);
        cJSON_Delete(b);
        cJSON_Delete(c);
    }
    free(body);
    stop(&p);
}

/* Unknown quirk names are refused at start. */
static void test_unknown_quirk_refused(void **state)
{
    (void)state;
    const char *argv[] = {bin, "mock", "--port", "0", "--quirks", "llamacpp,nosuch", NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, 30);
    print_message("exit %d: %s", rc, err ? err : "");
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, -2);
    assert_non_null(strstr(err, "nosuch"));
    free(out);
    free(err);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_error_in_200_stream),
        cmocka_unit_test(test_context_shift_truncates),
        cmocka_unit_test(test_keepalive_advertised_then_closed),
        cmocka_unit_test(test_timings_and_chunks),
        cmocka_unit_test(test_metrics_and_health),
        cmocka_unit_test(test_slots_keep_and_erase),
        cmocka_unit_test(test_reset_endpoints),
        cmocka_unit_test(test_unknown_quirk_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
