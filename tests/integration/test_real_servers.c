/*
 * What real servers do on the wire that our mock does not (issue 11), reproduced byte for byte
 * with the scripted server: llama.cpp's `error:` SSE field inside a 200 stream (cpp-httplib's
 * server_sent_event(sink, "error", ...) then `data: [DONE]`), a 200 stream with nothing in it,
 * cpp-httplib closing a connection it advertised as kept alive (`Keep-Alive: timeout=5, max=100`)
 * after every stream, an endpoint nobody listens on, and a whole response in one write (the first
 * token and the last byte in the same libcurl callback). Each test runs the real `sparkbench run`
 * (or `smoke`) against it and reads what was recorded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 60.0 /* a run that has not ended by then hangs: the test fails */

/* `sparkbench run --endpoint URL --output-dir OUT --prompts-dir P --quiet <args>` with a limit. */
static int run_limited(const struct sb_run_paths *p, const char *const *args, char **out,
                       char **err)
{
    const char *argv[96];
    int n = 0;
    const char *head[] = {bin, "run", "--endpoint", p->url, "--output-dir", p->out, "--prompts-dir",
                          p->prompts, "--quiet",
                          /* scripted servers: no /metrics GETs among the requests counted */
                          "--no-server-state", NULL};
    for (int i = 0; head[i]; i++)
        argv[n++] = head[i];
    for (int i = 0; args[i] && n < 95; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = sb_proc_run_limit(argv, out, err, RUN_LIMIT_S);
    if (rc == -2)
        fail_msg("run still running after %.0f s (hung)", RUN_LIMIT_S);
    return rc;
}

static double count_of(const cJSON *runjson, const char *k)
{
    return sb_test_num(cJSON_GetObjectItemCaseSensitive(runjson, "counts"), k);
}

/* One HTTP/1.1 chunk holding payload, appended to out (cpp-httplib writes each sink.write() of
   llama.cpp as one chunk). */
static void add_chunk(char *out, size_t cap, const char *payload)
{
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%zx\r\n%s\r\n", strlen(payload), payload);
}

/* The response head of a llama.cpp stream (cpp-httplib: keep-alive advertised, chunked). */
static const char llamacpp_head[] = "HTTP/1.1 200 OK\r\n"
                                    "Connection: keep-alive\r\n"
                                    "Content-Type: text/event-stream\r\n"
                                    "Keep-Alive: timeout=5, max=100\r\n"
                                    "Server: llama.cpp\r\n"
                                    "Transfer-Encoding: chunked\r\n"
                                    "\r\n";

/* ---- item 1: an error inside a 200 stream, and a stream with nothing in it ---- */

static void run_stream_script(const struct sb_script_step *steps, const char *tag, int requests,
                              const char *want_kind, const char *want_msg)
{
    struct sb_script_server srv = {.steps = steps, .backlog = 16, .close_after_response = true};
    assert_int_equal(sb_script_server_start(&srv), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, tag, srv.port, "/v1/completions");
    char nreq[16];
    snprintf(nreq, sizeof(nreq), "%d", requests);
    const char *args[] = {"--requests", nreq, "--concurrency", "1", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    sb_script_server_stop(&srv);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    assert_int_equal(n, requests);
    int kind_ok = 0;
    for (int i = 0; i < n; i++) {
        const char *kind = sb_test_str(v[i], "error");
        print_message("%s: record %d ok=%d error=%s msg=%s\n", tag, i, sb_test_true(v[i], "ok"),
                      kind ? kind : "null",
                      sb_test_str(v[i], "error_msg") ? sb_test_str(v[i], "error_msg") : "");
        kind_ok += !sb_test_true(v[i], "ok") && kind && strcmp(kind, want_kind) == 0 &&
                   sb_test_str(v[i], "error_msg") &&
                   strstr(sb_test_str(v[i], "error_msg"), want_msg);
    }
    assert_int_equal(kind_ok, requests);
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_int_equal((int)count_of(rj, "ok"), 0);
    assert_int_equal((int)count_of(rj, "errors"), requests);
    /* Their latencies are not in the percentiles: nothing was measured. */
    assert_int_equal((int)sb_test_num(cJSON_GetObjectItemCaseSensitive(rj, "e2e_ms"), "n"), 0);
    cJSON_Delete(rj);
    /* Nothing succeeded: the run says so in its exit code, with one line. */
    if (rc != 3)
        fail_msg("exit %d, want 3: %s", rc, err ? err : "");
    assert_non_null(strstr(err, "none of"));
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

static void test_llamacpp_error_field(void **state)
{
    (void)state;
    /* llama.cpp (tools/server/server.cpp, handle_completions_impl): on a task error inside a
       stream it calls server_sent_event(sink, "error", error_data), which writes
       `error: <json>\n\n`, then `data: [DONE]\n\n` for the OpenAI-compatible routes. */
    static char body[1024];
    body[0] = '\0';
    add_chunk(body, sizeof(body),
              "error: {\"code\":400,\"message\":\"the request exceeds the available context size, "
              "try increasing it\",\"type\":\"exceed_context_size_error\"}\n\n");
    add_chunk(body, sizeof(body), "data: [DONE]\n\n");
    size_t n = strlen(body);
    snprintf(body + n, sizeof(body) - n, "0\r\n\r\n");
    const struct sb_script_step steps[] = {{0, llamacpp_head}, {0, body}, {0, NULL}};
    run_stream_script(steps, "llerr", 3, "stream_error", "exceeds the available context size");
}

static void test_empty_stream(void **state)
{
    (void)state;
    /* A 200 stream that says [DONE] and nothing else: no token, no usage. */
    static char body[256];
    body[0] = '\0';
    add_chunk(body, sizeof(body), "data: [DONE]\n\n");
    size_t n = strlen(body);
    snprintf(body + n, sizeof(body) - n, "0\r\n\r\n");
    const struct sb_script_step steps[] = {{0, llamacpp_head}, {0, body}, {0, NULL}};
    run_stream_script(steps, "empty", 2, "empty_stream", "no content and no usage");
}

/* ---- item 2: a kept-alive connection the server closes after each stream ---- */

static char keepalive_body[2048];

static const char *llamacpp_stream_body(void)
{
    keepalive_body[0] = '\0';
    add_chunk(
        keepalive_body, sizeof(keepalive_body),
        "data: {\"choices\":[{\"text\":\"Hello\",\"index\":0,\"logprobs\":null,"
        "\"finish_reason\":null}],\"created\":1700000000,\"model\":\"m\","
        "\"system_fingerprint\":\"b1\",\"object\":\"text_completion\",\"id\":\"cmpl-1\"}\n\n");
    add_chunk(keepalive_body, sizeof(keepalive_body),
              "data: {\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
              "\"finish_reason\":\"length\"}],\"created\":1700000000,\"model\":\"m\","
              "\"system_fingerprint\":\"b1\",\"object\":\"text_completion\",\"id\":\"cmpl-1\","
              "\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":9,\"total_tokens\":11},"
              "\"timings\":{\"prompt_n\":9,\"prompt_ms\":1.0,\"predicted_n\":2,"
              "\"predicted_ms\":2.0}}\n\n");
    add_chunk(keepalive_body, sizeof(keepalive_body), "data: [DONE]\n\n");
    size_t n = strlen(keepalive_body);
    snprintf(keepalive_body + n, sizeof(keepalive_body) - n, "0\r\n\r\n");
    return keepalive_body;
}

static void test_llamacpp_closes_kept_alive(void **state)
{
    (void)state;
    /* cpp-httplib advertises Keep-Alive on every response, but llama.cpp's chunked content
       provider returns false after sink.done(), which ends the keep-alive loop: the socket is
       closed after `0\r\n\r\n`. The HTTP thread of a busy server closes it a moment later, so a
       client that reuses the connection at once has already sent its next request: reset. */
    const struct sb_script_step steps[] = {
        {0, llamacpp_head}, {0, llamacpp_stream_body()}, {0, NULL}};
    struct sb_script_server srv = {
        .steps = steps, .backlog = 16, .close_after_response = true, .close_delay_ms = 50};
    assert_int_equal(sb_script_server_start(&srv), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "keepalive", srv.port, "/v1/completions");
    const int N = 20;
    const char *args[] = {"--requests", "20", "--concurrency", "1", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    sb_script_server_stop(&srv);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    assert_int_equal(n, N);
    int ok = 0, retried = 0;
    for (int i = 0; i < n; i++) {
        ok += sb_test_true(v[i], "ok");
        retried += sb_test_true(v[i], "retried");
        if (!sb_test_true(v[i], "ok"))
            print_message("record %d: %s: %s\n", i, sb_test_str(v[i], "error"),
                          sb_test_str(v[i], "error_msg"));
    }
    print_message("%d requests: %d ok, %d retried on a fresh connection; server read %d\n", N, ok,
                  retried, atomic_load(&srv.requests));
    assert_int_equal(ok, N);
    /* The requests that died with the connection never reached the server. */
    assert_int_equal(atomic_load(&srv.requests), N);
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_int_equal((int)count_of(rj, "retried"), retried);
    assert_int_equal((int)count_of(rj, "errors"), 0);
    cJSON_Delete(rj);
    /* libcurl retries a dead reused connection itself only 5 times per easy handle (7.88 never
       resets the count between transfers): with 19 reuses the engine's own retry must run. */
    assert_true(retried >= 1);
    assert_int_equal(rc, 0);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

/* ---- item 3: an endpoint nobody listens on ---- */

static void test_refused_port_bounded(void **state)
{
    (void)state;
    /* Port 1: connection refused at once. Before, 2 users sent ~30,000 requests a second. */
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "refused", 1, "/v1/completions");
    const char *args[] = {"--concurrency", "2", "--duration-s", "2", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    print_message("refused port, 2 users, 2 s: %d records, exit %d: %s", n, rc, err ? err : "");
    /* Each user backs off 50 ms, 100 ms, ... (jittered down to half): at most ~10 tries in 2 s. */
    assert_true(n >= 2);
    assert_true(n <= 40);
    for (int i = 0; i < n; i++)
        assert_string_equal(sb_test_str(v[i], "error"), "connect");
    assert_int_equal(rc, 3);
    assert_non_null(strstr(err, "none of"));
    assert_int_equal(sb_test_count(err, "\n"), 1); /* one line */
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

static void test_never_answered_stops(void **state)
{
    (void)state;
    /* A 60 s run against a dead endpoint stops after --connect-timeout-s with one message. */
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "unreach", 1, "/v1/completions");
    const char *args[] = {
        "--concurrency", "2", "--duration-s", "60", "--connect-timeout-s", "1", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    print_message("exit %d: %s", rc, err ? err : "");
    assert_int_equal(rc, 3);
    assert_non_null(strstr(err, "no answer from http://127.0.0.1:1/v1/completions"));
    assert_non_null(strstr(err, "Connection refused for 1 s; nothing was measured"));
    assert_int_equal(sb_test_count(err, "\n"), 1);
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "unreachable");
    assert_int_equal((int)count_of(rj, "ok"), 0);
    cJSON_Delete(rj);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

/* A wrong --model: every answer is a 404. Before, 4 users sent the same request for the whole
   duration (157,330 records of 404 in 8 s); now the run stops after the first 50 refusals. */
static void test_all_refused_stops(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "refused404", mock.port, "/v1/completions");
    const char *args[] = {"--model", "no-such-model", "--concurrency", "4", "--duration-s", "5",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    print_message("wrong model, 4 users, 5 s: %d records, exit %d: %s", n, rc, err ? err : "");
    assert_int_equal(rc, 3);
    assert_int_equal(sb_test_count(err, "\n"), 1); /* one line */
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "refused");
    cJSON_Delete(rj);
    assert_non_null(strstr(err, "refused"));
    assert_non_null(strstr(err, "404"));
    assert_non_null(strstr(err, "no-such-model")); /* the server's own words */
    /* 50 refusals, plus what was in flight when the run stopped */
    assert_true(n >= 50);
    assert_true(n <= 60);
    for (int i = 0; i < n; i++)
        assert_int_equal((int)sb_test_num(v[i], "rc"), 404);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

static void test_max_error_rate(void **state)
{
    (void)state;
    /* Half the requests get a 500: over --max-error-rate 0.2 the run fails, under 0.9 not. */
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--decode-base-ms",
                           "1",
                           "--fault-rate",
                           "0.5",
                           "--fault-kinds",
                           "500",
                           "--seed",
                           "7",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "maxerr", mock.port, "/v1/completions");
    const char *strict[] = {"--requests", "40", "--max-error-rate", "0.2", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, strict, &out, &err);
    print_message("--max-error-rate 0.2: exit %d: %s", rc, err ? err : "");
    assert_int_equal(rc, 3);
    assert_non_null(strstr(err, "--max-error-rate 0.2"));
    assert_int_equal(sb_test_count(err, "\n"), 1);
    free(out);
    free(err);
    sb_test_rm_rf(p.out);
    const char *lax[] = {"--requests", "40", "--max-error-rate", "0.9", NULL};
    out = err = NULL;
    rc = run_limited(&p, lax, &out, &err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_run_paths_release(&p);
}

/* ---- item 10: the first token and the last byte in one write ---- */

static void test_one_write_last_byte(void **state)
{
    (void)state;
    static const char body[] =
        "data: {\"choices\":[{\"text\":\"Hi\",\"index\":0,\"finish_reason\":null}]}\n\n"
        "data: {\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"length\"}],"
        "\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":9,\"total_tokens\":10}}\n\n"
        "data: [DONE]\n\n";
    static char whole[1024];
    snprintf(whole, sizeof(whole),
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    const struct sb_script_step steps[] = {{0, whole}, {0, NULL}};
    struct sb_script_server srv = {.steps = steps, .backlog = 16};
    assert_int_equal(sb_script_server_start(&srv), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "onewrite", srv.port, "/v1/completions");
    const char *args[] = {"--requests", "10", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    sb_script_server_stop(&srv);
    assert_int_equal(rc, 0);
    int n = 0, inverted = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
        assert_true(sb_test_true(v[i], "ok"));
        double ft = sb_test_num(v[i], "t_first_token_ns"), lb = sb_test_num(v[i], "t_last_byte_ns");
        inverted += ft > lb;
        assert_true(sb_test_num(v[i], "lat_ttft_ms") <= sb_test_num(v[i], "lat_e2e_ms"));
    }
    print_message("%d of %d records had the first token after the last byte\n", inverted, n);
    assert_int_equal(inverted, 0);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

/* ---- smoke: the connection-reuse probe ---- */

static void test_smoke_reuse_probe(void **state)
{
    (void)state;
    const struct sb_script_step steps[] = {
        {0, llamacpp_head}, {0, llamacpp_stream_body()}, {0, NULL}};
    struct sb_script_server srv = {.steps = steps, .backlog = 16, .close_after_response = true};
    assert_int_equal(sb_script_server_start(&srv), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
    const char *a1[] = {bin, "smoke", "--endpoint", url, "--model", "m", NULL};
    char *out = NULL, *err = NULL;
    sb_proc_run(a1, &out, &err);
    sb_script_server_stop(&srv);
    print_message("%s", out ? out : "");
    assert_non_null(strstr(out, "keep-alive"));
    assert_non_null(strstr(out, "WARNING: the server closed a kept-alive connection"));
    free(out);
    free(err);

    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", mock.port);
    out = err = NULL;
    const char *a2[] = {bin, "smoke", "--endpoint", url, "--model", "sparkbench-mock", NULL};
    assert_int_equal(sb_proc_run(a2, &out, &err), 0);
    assert_non_null(strstr(out, "connection reused"));
    assert_null(strstr(out, "closed a kept-alive connection"));
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
}

/* An endpoint that accepts and closes at once (a port proxy whose backend is down): it answers
   nothing, so it is backed off and stopped like a refused port, not flooded. */
static void test_accept_then_close_stops(void **state)
{
    (void)state;
    struct sb_script_step steps[] = {{0, NULL}};
    struct sb_script_server s = {.steps = steps, .backlog = 64, .close_after_response = true};
    assert_int_equal(sb_script_server_start(&s), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "acclose", s.port, "/v1/completions");
    const char *args[] = {
        "--concurrency", "2", "--duration-s", "60", "--connect-timeout-s", "1", NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    sb_script_server_stop(&s);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    print_message("accept-then-close: exit %d, %d records, server read %d requests: %s", rc, n,
                  atomic_load(&s.requests), err ? err : "");
    assert_int_equal(rc, 3);
    assert_non_null(strstr(err, "nothing was measured"));
    assert_true(n < 50); /* backed off: a handful, not thousands */
    cJSON *rj = sb_test_read_json(p.runjson);
    assert_string_equal(sb_test_str(rj, "exit_reason"), "unreachable");
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_run_paths_release(&p);
}

/* Every time a request went out again — libcurl's own retry of a dead reused connection or the
   engine's — is marked and counted: the server's request count equals the records plus the
   re-sends. The mock drops 30 % of the connections after reading the request. */
static void test_resends_counted(void **state)
{
    (void)state;
    char logpath[] = "/tmp/sbtest-resend-XXXXXX";
    close(mkstemp(logpath));
    const char *margs[] = {"--fault-rate", "0.3", "--fault-kinds", "close", "--seed", "5", "--log",
                           logpath,        NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "resend", mock.port, "/v1/completions");
    const char *args[] = {"--requests", "60", "--concurrency", "1", "--no-stream", "--max-tokens",
                          "5",          NULL};
    char *out = NULL, *err = NULL;
    int rc = run_limited(&p, args, &out, &err);
    (void)rc;
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    char *log = sb_test_read_file(logpath);
    int served = sb_test_count(log, "\n");
    int n = 0;
    cJSON **v = sb_test_read_jsonl(p.metrics, &n);
    int marked = 0;
    for (int i = 0; i < n; i++)
        marked += sb_test_true(v[i], "retried");
    cJSON *rj = sb_test_read_json(p.runjson);
    int resent = (int)sb_test_num(cJSON_GetObjectItemCaseSensitive(rj, "counts"), "retried");
    print_message("60 records, server saw %d requests, %d re-sends counted, %d records marked\n",
                  served, resent, marked);
    assert_int_equal(n, 60);
    assert_int_equal(served, n + resent);
    assert_true(marked <= resent && (resent == 0 || marked > 0));
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    free(log);
    unlink(logpath);
    free(out);
    free(err);
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
        cmocka_unit_test(test_llamacpp_error_field),
        cmocka_unit_test(test_empty_stream),
        cmocka_unit_test(test_llamacpp_closes_kept_alive),
        cmocka_unit_test(test_refused_port_bounded),
        cmocka_unit_test(test_all_refused_stops),
        cmocka_unit_test(test_never_answered_stops),
        cmocka_unit_test(test_max_error_rate),
        cmocka_unit_test(test_one_write_last_byte),
        cmocka_unit_test(test_smoke_reuse_probe),
        cmocka_unit_test(test_accept_then_close_stops),
        cmocka_unit_test(test_resends_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
