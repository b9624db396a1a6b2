/*
 * Integration tests for what `sparkbench mock` puts on the wire, read through a raw TCP socket so
 * nothing in between (libcurl's buffering, its own HTTP parser) hides it: when the bytes of the
 * first token leave (Nagle against the client's delayed ACK), when the chat role chunk is sent,
 * HTTP/1.0 framing, chunked request bodies, and the JSON shape of every error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
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

/* The "first_token_ns" of the x_mock stamp in an SSE body. */
static uint64_t stamp_first_token(const char *body)
{
    const char *p = strstr(body, "\"first_token_ns\":");
    assert_non_null(p);
    return strtoull(p + 17, NULL, 10);
}

/*
 * At concurrency 1 on a kept-alive connection, the first token must reach the client as soon as
 * the server writes it. With Nagle on, the token's small segment waits for the ACK of the headers
 * sent at admission, and the client delays that ACK (40 ms minimum on Linux).
 */
static void test_first_token_not_delayed(void **state)
{
    (void)state;
    const char *args[] = {"--prefill-base-ms",
                          "5",
                          "--prefill-per-token-us",
                          "0",
                          "--decode-base-ms",
                          "5",
                          "--decode-per-seq-us",
                          "0",
                          NULL};
    struct sb_proc p;
    start(&p, args);
    int fd = wire_connect(p.port);
    static const char *const marks[] = {"\"x_mock\"", NULL};
    double worst_ms = 0;
    for (int i = 0; i < 8; i++) {
        wire_post(fd, "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":3,\"stream\":true}");
        struct wire_resp r;
        wire_read(fd, &r, marks);
        assert_int_equal(r.status, 200);
        assert_true(r.chunked);
        assert_non_null(strstr(r.body, "data: [DONE]"));
        assert_true(r.mark_ns[0] > 0);
        uint64_t sent = stamp_first_token(r.body);
        assert_true(r.mark_ns[0] >= sent);
        double gap_ms = (double)(r.mark_ns[0] - sent) / 1e6;
        if (gap_ms > worst_ms)
            worst_ms = gap_ms;
        wire_resp_release(&r);
    }
    close(fd);
    stop(&p);
    /* Physical bound: a delayed ACK is at least 40 ms; a loopback write is microseconds. Under
       valgrind (SB_TEST_TIME_SCALE 20) the slowed mock's gap measured 65 ms on a loaded 2-core
       machine, TCP_NODELAY set all the same, so the bound scales with it and there catches only a
       gross stall: the native run is the check on delayed ACKs. */
    double bound_ms = 10.0 * sb_test_time_scale();
    print_message("worst first-token gap over 8 kept-alive requests: %.2f ms (bound %.0f ms)\n",
                  worst_ms, bound_ms);
    assert_true(worst_ms < bound_ms);
}

/*
 * vLLM and TensorRT-LLM send the chat role-only chunk with the first generated token, after the
 * prefill, not at admission: a client timing "the first chunk" must see the prefill in it.
 */
static void test_role_chunk_with_first_token(void **state)
{
    (void)state;
    /* 2,000 prompt bytes = 500 tokens at 400 us each: a 200 ms prefill. */
    const char *args[] = {"--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "400",
                          "--decode-base-ms",
                          "1",
                          "--decode-per-seq-us",
                          "0",
                          NULL};
    struct sb_proc p;
    start(&p, args);
    char body[2300];
    int n = snprintf(body, sizeof(body), "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 1999; i++)
        body[n++] = 'a' + (char)(i % 26);
    snprintf(body + n, sizeof(body) - (size_t)n, "\"}],\"max_tokens\":2,\"stream\":true}");
    int fd = wire_connect(p.port);
    static const char *const marks[] = {"\"role\":\"assistant\"", "\"x_mock\"", NULL};
    uint64_t t_send = sb_test_mono_ns();
    wire_post(fd, "/v1/chat/completions", body);
    struct wire_resp r;
    wire_read(fd, &r, marks);
    close(fd);
    stop(&p);
    assert_int_equal(r.status, 200);
    /* The role chunk still comes first in the stream... */
    const char *role = strstr(r.body, "\"role\":\"assistant\"");
    const char *first = strstr(r.body, "\"x_mock\"");
    assert_non_null(role);
    assert_non_null(first);
    assert_true(role < first);
    /* ...but leaves the server only once the first token exists (same clock, same host). */
    uint64_t first_token_ns = stamp_first_token(r.body);
    print_message("role chunk at +%.1f ms, first token made at +%.1f ms, received at +%.1f ms\n",
                  (double)(r.mark_ns[0] - t_send) / 1e6, (double)(first_token_ns - t_send) / 1e6,
                  (double)(r.mark_ns[1] - t_send) / 1e6);
    assert_true(r.mark_ns[0] >= first_token_ns);
    /* The prefill of 500 tokens lasts 200 ms: a physical lower bound for both. */
    assert_true(r.mark_ns[0] - t_send >= 200000000ull);
    wire_resp_release(&r);
}

/* The error object of a JSON error body; fails the test when the body is not one. */
static cJSON *error_of(const char *body, cJSON **root)
{
    *root = cJSON_Parse(body);
    assert_non_null(*root);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(*root, "error");
    assert_true(cJSON_IsObject(e));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type")));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(e, "param"));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "code")));
    return e;
}

/*
 * A request over the model's context is a client error (400, not retried), whatever the KV cache
 * could hold: vLLM checks the length when it builds the request, before any scheduling.
 */
static void test_context_limit_before_kv(void **state)
{
    (void)state;
    /* 4 blocks of 32 tokens = 128 tokens of KV; a context of 256 tokens. */
    const char *args[] = {
        "--tier0-blocks", "4", "--kv-block-tokens", "32", "--max-model-len", "256", NULL};
    struct sb_proc p;
    start(&p, args);
    char url[128];
    sb_url(url, sizeof(url), p.port, "/v1/completions");
    static const struct {
        int prompt_bytes;
        long status;
        const char *msg_part;
    } cases[] = {
        {2000, 400, "maximum context length"}, /* 500 + 16 tokens: over both limits */
        {800, 503, "KV cache"},                /* 200 + 16: within the context, over the KV */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[2200];
        int n = snprintf(body, sizeof(body), "{\"prompt\":\"");
        for (int k = 0; k < cases[i].prompt_bytes; k++)
            body[n++] = 'a' + (char)(k % 26);
        snprintf(body + n, sizeof(body) - (size_t)n, "\",\"max_tokens\":16}");
        struct sb_http_resp r;
        sb_http("POST", url, body, &r);
        if (r.status != cases[i].status)
            fail_msg("case %zu: status %ld, want %ld: %s", i, r.status, cases[i].status, r.body);
        cJSON *root;
        cJSON *e = error_of(r.body, &root);
        assert_non_null(
            strstr(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring, cases[i].msg_part));
        cJSON_Delete(root);
        sb_http_resp_release(&r);
    }
    stop(&p);
}

static void wire_post10(int fd, const char *body)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST /v1/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     strlen(body));
    wire_send(fd, head, (size_t)n);
    wire_send(fd, body, strlen(body));
}

/*
 * HTTP/1.0 has no chunked encoding: a stream's length is unknown, so the body must end with the
 * connection (Connection: close, no Content-Length). A keep-alive HTTP/1.0 request that is not
 * streamed keeps its connection and gets an exact Content-Length.
 */
static void test_http10_stream_closes(void **state)
{
    (void)state;
    const char *args[] = {"--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          "--decode-base-ms",
                          "0",
                          "--decode-per-seq-us",
                          "0",
                          NULL};
    struct sb_proc p;
    start(&p, args);
    int fd = wire_connect(p.port);
    struct wire_resp r;
    wire_post10(fd, "{\"prompt\":\"hi\",\"max_tokens\":3}");
    wire_read(fd, &r, NULL);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_true(r.content_length > 0);
    assert_int_equal((long long)r.body_len, r.content_length);
    assert_false(r.eof);
    wire_resp_release(&r);

    /* The same connection, now a stream. */
    wire_post10(fd, "{\"prompt\":\"hi\",\"max_tokens\":3,\"stream\":true}");
    wire_read(fd, &r, NULL);
    print_message("HTTP/1.0 stream: Content-Length %lld, close %d, %zu body bytes, eof %d\n",
                  r.content_length, r.conn_close, r.body_len, r.eof);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_int_equal(r.content_length, -1);
    assert_true(r.conn_close);
    assert_true(r.eof);
    assert_non_null(strstr(r.body, "data: [DONE]"));
    assert_int_equal(sb_test_count(r.body, "data: "), 4); /* 3 tokens + [DONE] */
    wire_resp_release(&r);
    close(fd);
    stop(&p);
}

/* Asserts a response is the mock's JSON error shape with the given status: application/json,
   {"error":{"message","type","param","code"}}, no HTML anywhere. */
static void assert_json_error(const struct wire_resp *r, int status)
{
    if (r->status != status)
        fail_msg("status %d, want %d: %s", r->status, status, r->raw);
    if (strstr(r->raw, "<HTML") || strstr(r->raw, "text/html"))
        fail_msg("an HTML error page: %s", r->raw);
    assert_true(header_is(r->raw, r->head_len, "Content-Type", "application/json"));
    cJSON *root;
    cJSON *e = error_of(r->body, &root);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(e, "code")->valueint, status);
    cJSON_Delete(root);
}

static const char *const fast_args[] = {"--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "0",
                                        "--decode-per-seq-us",
                                        "0",
                                        NULL};

/* Sends a raw request (head and body as given) on fd. */
static void wire_raw(int fd, const char *req)
{
    wire_send(fd, req, strlen(req));
}

/*
 * RFC 9112 section 7.1.1: a recipient must ignore chunk extensions it does not recognise
 * (`5;foo=bar`). h11/uvicorn and hyper accept them; libevent 2.1's parser rejects the size line.
 * The request must be served, and the connection must stay usable.
 */
static void test_chunk_extension_accepted(void **state)
{
    (void)state;
    struct sb_proc p;
    start(&p, fast_args);
    int fd = wire_connect(p.port);
    static const char body[] = "{\"prompt\":\"hello\",\"max_tokens\":3}";
    /* The body in three chunks: an extension with a value, BWS and a tab before the ';', a
       quoted value; the last chunk carries one too, and a trailer follows. */
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "a;foo=bar\r\n%.10s\r\n"
                     "A \t;name=\"v;1\"\r\n%.10s\r\n"
                     "%zx\t;x\r\n%s\r\n"
                     "0;last=1\r\nX-Trailer: t\r\n\r\n",
                     body, body + 10, strlen(body) - 20, body + 20);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    for (int round = 0; round < 2; round++) {
        wire_raw(fd, req);
        struct wire_resp r;
        wire_read(fd, &r, NULL);
        if (r.status != 200 || strstr(r.raw, "<HTML"))
            fail_msg("round %d: status %d: %s", round, r.status, r.raw);
        cJSON *root = cJSON_Parse(r.body);
        assert_non_null(root);
        assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "choices")));
        cJSON_Delete(root);
        assert_false(r.conn_close);
        wire_resp_release(&r);
    }
    /* A plain request on the same connection afterwards. */
    wire_post(fd, "/v1/completions", body);
    struct wire_resp r;
    wire_read(fd, &r, NULL);
    assert_int_equal(r.status, 200);
    wire_resp_release(&r);
    close(fd);
    stop(&p);
}

/*
 * A body over the mock's limit (64 MiB) gets a JSON 413, announced by Content-Length or by a
 * chunk size; libevent answers both before the mock sees the request.
 */
static void test_body_over_limit_json(void **state)
{
    (void)state;
    struct sb_proc p;
    start(&p, fast_args);
    static const char *const reqs[] = {
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000000\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5000000\r\n{\"pro",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        int fd = wire_connect(p.port);
        wire_raw(fd, reqs[i]);
        struct wire_resp r;
        wire_read(fd, &r, NULL);
        print_message("case %zu: %d, close %d\n", i, r.status, r.conn_close);
        assert_json_error(&r, 413);
        wire_resp_release(&r);
        close(fd);
    }
    stop(&p);
}

/*
 * Requests libevent's parser refuses before dispatching them (a malformed request line or header,
 * an unknown method, an Expect it cannot meet) get the JSON error shape too. The connection closes
 * afterwards, as libevent decides: the parser's position in the stream is lost.
 */
static void test_malformed_request_json(void **state)
{
    (void)state;
    struct sb_proc p;
    start(&p, fast_args);
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET /health HTTP/9.9\r\n\r\n", 400},
        {"GET /health HTTP/1.1\r\nNoColonHere\r\n\r\n", 400},
        {"POST /v1/completions HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", 400},
        {"BREW /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", 501},
        {"POST /v1/completions HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", 417},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = wire_connect(p.port);
        wire_raw(fd, cases[i].req);
        struct wire_resp r;
        wire_read(fd, &r, NULL);
        print_message("case %zu: %d\n", i, r.status);
        assert_json_error(&r, cases[i].status);
        wire_resp_release(&r);
        close(fd);
    }
    stop(&p);
}

/* The mock's own JSON errors keep an HTTP/1.1 connection open for the next request. */
static void test_keepalive_after_json_error(void **state)
{
    (void)state;
    struct sb_proc p;
    start(&p, fast_args);
    int fd = wire_connect(p.port);
    static const struct {
        const char *path, *body;
        int status;
    } seq[] = {
        {"/v1/completions", "{\"prompt\":", 400},
        {"/v1/nope", "{}", 404},
        {"/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":2}", 200},
    };
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        wire_post(fd, seq[i].path, seq[i].body);
        struct wire_resp r;
        wire_read(fd, &r, NULL);
        if (seq[i].status != 200)
            assert_json_error(&r, seq[i].status);
        else
            assert_int_equal(r.status, 200);
        assert_false(r.conn_close);
        assert_false(r.eof);
        wire_resp_release(&r);
    }
    close(fd);
    stop(&p);
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
        cmocka_unit_test(test_first_token_not_delayed),
        cmocka_unit_test(test_role_chunk_with_first_token),
        cmocka_unit_test(test_context_limit_before_kv),
        cmocka_unit_test(test_http10_stream_closes),
        cmocka_unit_test(test_chunk_extension_accepted),
        cmocka_unit_test(test_body_over_limit_json),
        cmocka_unit_test(test_malformed_request_json),
        cmocka_unit_test(test_keepalive_after_json_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
