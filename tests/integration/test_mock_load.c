/*
 * Integration tests for the mock under load: a thousand concurrent streams all complete with exact
 * token counts; never more than --max-num-seqs requests in service, and those beyond them queue
 * (the knee); a full waiting queue refuses with the configured status; SIGINT/SIGTERM mid-stream
 * end streams and exit 0.
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
#include <unistd.h>

#include "proc.h"
#include "sb/util.h"

static const char *bin;

static const char *const body8 =
    "{\"prompt\":\"concurrency test prompt\",\"max_tokens\":8,\"stream\":true,"
    "\"stream_options\":{\"include_usage\":true}}";

/* Content chunks and the usage chunk's completion_tokens of one completions stream. */
static void tokens_of(const char *body, int *chunks, int *usage)
{
    char **ev;
    int n = sb_test_split_sse(body, &ev);
    *chunks = 0;
    *usage = -1;
    for (int i = 0; i < n; i++) {
        if (strncmp(ev[i], "data: {", 7) != 0)
            continue;
        cJSON *j = cJSON_Parse(ev[i] + 6);
        assert_non_null(j);
        cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
        if (cJSON_IsObject(u))
            *usage = (int)cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valuedouble;
        else
            (*chunks)++;
        cJSON_Delete(j);
    }
    sb_strv_free(ev, n);
}

static void test_thousand_streams(void **state)
{
    (void)state;
    enum { N = 1000 };
    const char *args[] = {"--max-num-seqs",
                          "1024",
                          "--decode-base-ms",
                          "2",
                          "--decode-per-seq-us",
                          "0",
                          "--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    char url[128];
    sb_url(url, sizeof(url), p.port, "/v1/completions");
    struct sb_stream *s = calloc(N, sizeof(*s));
    for (int i = 0; i < N; i++)
        sb_stream_init(&s[i], url, body8);
    sb_streams_run(s, N, NULL, NULL);
    int complete = 0;
    for (int i = 0; i < N; i++) {
        int chunks, usage;
        assert_int_equal(s[i].curl_rc, CURLE_OK);
        assert_int_equal(s[i].status, 200);
        tokens_of(s[i].body.data, &chunks, &usage);
        assert_int_equal(chunks, 8);
        assert_int_equal(usage, 8);
        complete += strstr(s[i].body.data, "data: [DONE]") != NULL;
        sb_stream_release(&s[i]);
    }
    assert_int_equal(complete, N);
    free(s);
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), p.port, "/metrics"), NULL, &r);
    assert_non_null(strstr(r.body, "mock:requests_total{outcome=\"ok\"} 1000\n"));
    assert_non_null(strstr(r.body, "mock:generation_tokens_total 8000\n"));
    sb_http_resp_release(&r);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

/* The mock's stamps of one request (ns, its monotonic clock). */
struct stamps {
    double recv, admit, last;
};

/* Sends `conc` simultaneous requests of `tokens` tokens and reads back the mock's log line of
   each; returns their mean server-side end-to-end latency (ns). */
static double batch_run(const char *logpath, int port, int conc, int tokens, struct stamps *st)
{
    char url[128], body[128];
    sb_url(url, sizeof(url), port, "/v1/completions");
    snprintf(body, sizeof(body), "{\"prompt\":\"knee\",\"max_tokens\":%d,\"stream\":true}", tokens);
    struct sb_stream *s = calloc((size_t)conc, sizeof(*s));
    for (int i = 0; i < conc; i++)
        sb_stream_init(&s[i], url, body);
    FILE *f = fopen(logpath, "w"); /* truncate the mock's log (it appends) */
    fclose(f);
    sb_streams_run(s, conc, NULL, NULL);
    for (int i = 0; i < conc; i++) {
        assert_int_equal(s[i].status, 200);
        sb_stream_release(&s[i]);
    }
    free(s);
    /* The log line is written once the last byte is out, right after curl saw it: poll (a hang
       guard, scaled for valgrind; no assertion on how long it took). */
    char *log = NULL;
    int tries = (int)(500 * sb_test_time_scale());
    for (int t = 0; t < tries; t++) {
        free(log);
        log = sb_test_read_file(logpath);
        if (log && sb_test_count(log, "\n") >= conc)
            break;
        usleep(10000);
    }
    assert_int_equal(sb_test_count(log, "\n"), conc);
    double sum = 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        st[n].recv = cJSON_GetObjectItemCaseSensitive(j, "recv_ns")->valuedouble;
        st[n].admit = cJSON_GetObjectItemCaseSensitive(j, "admit_ns")->valuedouble;
        st[n].last = cJSON_GetObjectItemCaseSensitive(j, "last_token_ns")->valuedouble;
        assert_true(st[n].recv <= st[n].admit && st[n].admit < st[n].last);
        sum += st[n].last - st[n].recv;
        n++;
        cJSON_Delete(j);
    }
    free(log);
    return sum / conc;
}

/* The most requests in service (admitted, last token not yet out) at once. */
static int most_in_service(const struct stamps *st, int n)
{
    int most = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 0; j < n; j++)
            k += st[j].admit <= st[i].admit && st[i].admit < st[j].last;
        most = k > most ? k : most;
    }
    return most;
}

/* Requests passed over: waiting when another request was admitted after them, yet admitted later.
   The mock admits at iteration boundaries, first come first served, while a slot is free; so each
   such admission must have filled the last of the `slots`. */
static int passed_over(const struct stamps *st, int n, int slots)
{
    int q = 0;
    for (int i = 0; i < n; i++) {
        bool passed = false;
        for (int k = 0; k < n; k++) {
            if (!(st[i].recv < st[k].admit && st[k].admit < st[i].admit))
                continue;
            passed = true;
            int busy = 0;
            for (int j = 0; j < n; j++)
                busy += st[j].admit <= st[k].admit && st[k].admit < st[j].last;
            assert_int_equal(busy, slots);
        }
        q += passed;
    }
    return q;
}

/* The knee from the mock's own stamps, not from how long things took (no timed assertion: this
   runs under valgrind and on a loaded machine): never more than --max-num-seqs in service, and
   a request waits only while every slot is taken, and beyond the slots some do. */
static void test_queue_knee(void **state)
{
    (void)state;
    char logpath[] = "/tmp/sbtest-knee-XXXXXX";
    close(mkstemp(logpath));
    const char *args[] = {"--max-num-seqs",
                          "4",
                          "--decode-base-ms",
                          "10",
                          "--decode-per-seq-us",
                          "0",
                          "--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          "--log",
                          logpath,
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    /* 20 tokens of 10 ms: a slot stays taken 200 ms, long beside the time the 16 requests take
       to arrive together, so that some wait even when the mock runs slowly (under valgrind). */
    struct stamps st4[4], st16[16];
    double at4 = batch_run(logpath, p.port, 4, 20, st4);
    double at16 = batch_run(logpath, p.port, 16, 20, st16);
    print_message("mean e2e: %.1f ms at 4, %.1f ms at 16 (ratio %.2f)\n", at4 / 1e6, at16 / 1e6,
                  at16 / at4);
    assert_true(most_in_service(st4, 4) <= 4);
    assert_int_equal(most_in_service(st16, 16), 4);
    assert_int_equal(passed_over(st4, 4, 4), 0);
    int q16 = passed_over(st16, 16, 4);
    print_message("%d of 16 waited while the 4 slots were taken\n", q16);
    assert_true(q16 >= 1);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    unlink(logpath);
}

static void test_queue_full(void **state)
{
    (void)state;
    /* One slot, one waiting place: of 6 simultaneous requests 2 are served, 4 refused with 503. */
    const char *args[] = {
        "--max-num-seqs",   "1",  "--max-queue", "1", "--queue-full-status", "503",
        "--decode-base-ms", "20", NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    char url[128];
    sb_url(url, sizeof(url), p.port, "/v1/completions");
    struct sb_stream s[6];
    for (int i = 0; i < 6; i++)
        sb_stream_init(&s[i], url, "{\"prompt\":\"q\",\"max_tokens\":5}");
    sb_streams_run(s, 6, NULL, NULL);
    int ok = 0, refused = 0;
    for (int i = 0; i < 6; i++) {
        ok += s[i].status == 200;
        if (s[i].status == 503) {
            refused++;
            assert_non_null(strstr(s[i].body.data, "queue is full"));
        }
        sb_stream_release(&s[i]);
    }
    assert_int_equal(ok, 2);
    assert_int_equal(refused, 4);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

struct shutdown_ctx {
    struct sb_proc *p;
    int sig;
    bool sent;
};

/* Sends the signal once the running stream has delivered a few tokens. */
static bool signal_when_streaming(struct sb_stream *s, int n, void *arg)
{
    struct shutdown_ctx *c = arg;
    (void)n;
    if (!c->sent && s[0].body.data && sb_test_count(s[0].body.data, "data: {") >= 3) {
        kill(c->p->pid, c->sig);
        c->sent = true;
        return true;
    }
    return false;
}

static void test_clean_shutdown(void **state)
{
    (void)state;
    const int sigs[] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        /* One slot: request 0 streams (slowly), request 1 waits in the queue. */
        const char *args[] = {"--max-num-seqs", "1", "--decode-base-ms", "20", NULL};
        struct sb_proc p;
        assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
        char url[128];
        sb_url(url, sizeof(url), p.port, "/v1/completions");
        struct sb_stream s[2];
        sb_stream_init(&s[0], url, "{\"prompt\":\"long\",\"max_tokens\":100000,\"stream\":true}");
        sb_stream_init(&s[1], url, "{\"prompt\":\"waiting\",\"max_tokens\":4}");
        struct shutdown_ctx c = {&p, sigs[k], false};
        sb_streams_run(s, 2, signal_when_streaming, &c);
        assert_true(c.sent);
        /* The stream was ended (no [DONE]: it did not finish), the waiting request got 503. */
        assert_int_equal(s[0].status, 200);
        assert_int_equal(s[0].curl_rc, CURLE_OK);
        assert_null(strstr(s[0].body.data, "[DONE]"));
        assert_int_equal(s[1].status, 503);
        assert_non_null(strstr(s[1].body.data, "shutting down"));
        sb_stream_release(&s[0]);
        sb_stream_release(&s[1]);
        assert_int_equal(sb_proc_stop(&p, 0), 0); /* already exiting: just reap, exit code 0 */
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    sb_raise_nofile();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousand_streams),
        cmocka_unit_test(test_queue_knee),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_clean_shutdown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
