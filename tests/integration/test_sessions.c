/*
 * Integration tests for `run --workload sessioned_chat` against real processes: a history that
 * grows by the server's real replies (a recording server on a thread of this test keeps every
 * request body), byte-identical synthetic prompts across runs, the oracle's reusable_tokens
 * against the mock's cached_tokens, the session order, --prime, --max-context end/slide, idle
 * parking, the working set in run.json and errors for bad option values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc.h"
#include "sb/buf.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S 240

/* ---- a recording chat server: keeps each request body, streams reply "R<i> \"q\"\n..." ---- */

#define MAX_BODIES 16

struct rec_server {
    int fd, port;
    char *bodies[MAX_BODIES];
    atomic_int n;
    atomic_bool stop;
    pthread_t thread;
};

static char *read_body(int c)
{
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    char tmp[65536];
    char *end = NULL;
    long want = -1;
    size_t head = 0;
    for (;;) {
        if (end && (long)(b.len - head) >= want)
            break;
        ssize_t r = read(c, tmp, sizeof(tmp));
        if (r <= 0) {
            sb_buf_release(&b);
            return NULL;
        }
        sb_buf_add(&b, tmp, (size_t)r);
        if (!end && (end = strstr(b.data, "\r\n\r\n"))) {
            head = (size_t)(end + 4 - b.data);
            want = 0;
            for (char *p = b.data; p < end; p = strstr(p, "\r\n") + 2)
                if (strncasecmp(p, "content-length:", 15) == 0)
                    want = strtol(p + 15, NULL, 10);
        }
    }
    /* Only the chat POSTs are kept; run's other requests (the server's /metrics before and
       after, for the cache state) get NULL. */
    char *body = strncmp(b.data, "POST ", 5) == 0 ? strndup(b.data + head, (size_t)want) : NULL;
    sb_buf_release(&b);
    return body;
}

static void *rec_main(void *arg)
{
    struct rec_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        char *body = read_body(c);
        if (body) {
            int i = atomic_fetch_add(&s->n, 1);
            if (i < MAX_BODIES)
                s->bodies[i] = body;
            else
                free(body);
            /* The reply in two content chunks, a quote and a newline in it (escaped when sent
               back), then usage. */
            char sse[1024];
            int n = snprintf(sse, sizeof(sse),
                             "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                             "\"assistant\"}}]}\n\n"
                             "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                             "\"R%d \\\"q\\\"\"}}]}\n\n"
                             "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                             "\"\\nend%d\"},\"finish_reason\":\"stop\"}]}\n\n"
                             "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
                             "\"completion_tokens\":3,\"total_tokens\":13}}\n\n"
                             "data: [DONE]\n\n",
                             i, i);
            char head[256];
            int hn = snprintf(head, sizeof(head),
                              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n",
                              n);
            sb_test_write_all(c, head, (size_t)hn);
            sb_test_write_all(c, sse, (size_t)n);
        } else {
            const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: "
                             "close\r\n\r\n";
            sb_test_write_all(c, nf, strlen(nf));
        }
        close(c);
    }
    return NULL;
}

static void rec_start(struct rec_server *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = sb_test_listen_loopback(16, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, rec_main, s), 0);
}

static void rec_stop(struct rec_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    for (int i = 0; i < MAX_BODIES; i++)
        free(s->bodies[i]);
}

/* ---- helpers ---- */

/* Runs `sparkbench run` with the common sessioned_chat arguments, then extra (NULL-terminated).
   Returns the exit code; *errout (may be NULL) gets stderr. */
static int run_sessions(const struct sb_run_paths *p, const char *const *extra, char **errout)
{
    const char *argv[80];
    int n = 0;
    const char *common[] = {
        bin,    "run",     "--endpoint",   p->url, "--workload", "sessioned_chat", "--output-dir",
        p->out, "--quiet", "--max-tokens", "16",   NULL};
    for (int i = 0; common[i]; i++)
        argv[n++] = common[i];
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, RUN_LIMIT_S);
    if (rc != 0 && !errout)
        print_message("run failed (%d): %s\n", rc, err ? err : "");
    free(out);
    if (errout)
        *errout = err;
    else
        free(err);
    return rc;
}

/* ---- tests ---- */

/* Turn k+1 of a session carries turn k's reply exactly as streamed (JSON-escaped again). */
static void test_history_server_grows(void **state)
{
    (void)state;
    struct rec_server s;
    rec_start(&s);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-hist", s.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "1",
                           "--turns",
                           "5",
                           "--requests",
                           "3",
                           "--system-tokens",
                           "8",
                           "--session-context-tokens",
                           "16",
                           "--turn-tokens",
                           "4",
                           "--history",
                           "server",
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(atomic_load(&s.n), 3);
    /* Turn 1: system and user only. */
    assert_null(strstr(s.bodies[0], "\"assistant\""));
    assert_non_null(strstr(s.bodies[0], "\"role\":\"system\""));
    /* Turn 2: turn 1's reply as an assistant message, then a new user message. */
    const char *r0 = "{\"role\":\"assistant\",\"content\":\"R0 \\\"q\\\"\\nend0\"}";
    const char *r1 = "{\"role\":\"assistant\",\"content\":\"R1 \\\"q\\\"\\nend1\"}";
    char *at = strstr(s.bodies[1], r0);
    if (!at)
        fail_msg("turn 2 lacks turn 1's reply: %s", s.bodies[1]);
    assert_non_null(strstr(at, "{\"role\":\"user\""));
    /* Turn 3: both replies, in order, and turn 2's prompt as its prefix. */
    char *a0 = strstr(s.bodies[2], r0), *a1 = strstr(s.bodies[2], r1);
    assert_non_null(a0);
    assert_non_null(a1);
    assert_true(a0 < a1);
    const char *m1 = strstr(s.bodies[1], "\"messages\":");
    const char *m2 = strstr(s.bodies[2], "\"messages\":");
    size_t pre = (size_t)(strstr(m1, r0) - m1) + strlen(r0);
    assert_memory_equal(m1, m2, pre);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sb_test_int(v[i], "session"), 0);
        assert_int_equal(sb_test_int(v[i], "turn"), i + 1);
    }
    /* history = the tokens before the new text; the new text of a later turn is its user text */
    assert_int_equal(sb_test_int(v[0], "history_tokens"), 0);
    assert_int_equal(sb_test_int(v[0], "new_tokens"), 8 + 16 + 4);
    assert_int_equal(sb_test_int(v[1], "new_tokens"), 4);
    assert_true(sb_test_int(v[2], "history_tokens") > sb_test_int(v[1], "history_tokens"));
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    rec_stop(&s);
}

static int strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* (session, turn) -> prompt_hash of a run's records, as "s:t=hash\n" lines sorted. */
static char *hash_map(const char *path, int *n)
{
    cJSON **v = sb_test_read_jsonl_by_seq(path, n);
    char **lines = calloc((size_t)*n, sizeof(char *));
    for (int i = 0; i < *n; i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%lld:%lld=%s\n", sb_test_int(v[i], "session"),
                 sb_test_int(v[i], "turn"), sb_test_str(v[i], "prompt_hash"));
        lines[i] = strdup(buf);
    }
    qsort(lines, (size_t)*n, sizeof(char *), strcmp_p);
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    for (int i = 0; i < *n; i++) {
        sb_buf_adds(&b, lines[i]);
        free(lines[i]);
    }
    free(lines);
    sb_test_free_jsonl(v, *n);
    return sb_buf_detach(&b, NULL);
}

/* Synthetic history: the same seed and salt give the same bytes per (session, turn); another
   salt gives other bytes. Two users, so the order of sends differs between runs. */
static void test_synthetic_identical(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--tier0-blocks", "100000", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    char *maps[3];
    const char *salts[] = {"c0ffee", "c0ffee", "beef"};
    for (int r = 0; r < 3; r++) {
        struct sb_run_paths p;
        sb_run_paths_init(&p, srcdir, "sess-syn", mock.port, "/v1/chat/completions");
        const char *extra[] = {"--sessions",
                               "3",
                               "--turns",
                               "3",
                               "--concurrency",
                               "2",
                               "--requests",
                               "9",
                               "--history",
                               "synthetic",
                               "--salt",
                               salts[r],
                               "--seed",
                               "7",
                               "--turn-tokens",
                               "8",
                               "--session-context-tokens",
                               "32",
                               "--system-tokens",
                               "16",
                               NULL};
        assert_int_equal(run_sessions(&p, extra, NULL), 0);
        int n;
        maps[r] = hash_map(p.metrics, &n);
        assert_int_equal(n, 9);
        sb_run_paths_release(&p);
    }
    assert_string_equal(maps[0], maps[1]);
    /* Another salt: not one (session, turn) has the same bytes. */
    char *a = maps[0], *b = maps[2];
    for (char *la = strtok_r(a, "\n", &a), *lb = strtok_r(b, "\n", &b); la && lb;
         la = strtok_r(NULL, "\n", &a), lb = strtok_r(NULL, "\n", &b))
        assert_string_not_equal(la, lb);
    for (int r = 0; r < 3; r++)
        free(maps[r]);
    sb_proc_stop(&mock, 15);
}

/* One user, a cache that holds everything, synthetic history: the mock's cached_tokens are the
   oracle's reusable_tokens cut to whole KV blocks of 32 tokens. */
static void test_cached_matches_oracle(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--tier0-blocks", "200000", "--kv-block-tokens", "32", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-oracle", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "4",
                           "--turns",
                           "5",
                           "--concurrency",
                           "1",
                           "--requests",
                           "20",
                           "--history",
                           "synthetic",
                           "--system-tokens",
                           "100",
                           "--session-context-tokens",
                           "300",
                           "--turn-tokens",
                           "50",
                           "--session-order",
                           "uniform",
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 20);
    long long reusable_sum = 0, cached_sum = 0;
    for (int i = 0; i < n; i++) {
        long long reuse = sb_test_int(v[i], "reusable_tokens"),
                  cached = sb_test_int(v[i], "cached_tokens");
        long long prompt = sb_test_int(v[i], "prompt_tokens");
        assert_true(sb_test_true(v[i], "ok"));
        /* the mock counts what the client estimated */
        assert_int_equal(prompt,
                         sb_test_int(v[i], "history_tokens") + sb_test_int(v[i], "new_tokens"));
        if (!(cached <= reuse && reuse - cached < 32))
            fail_msg("record %d (session %lld turn %lld): cached %lld, reusable %lld", i,
                     sb_test_int(v[i], "session"), sb_test_int(v[i], "turn"), cached, reuse);
        reusable_sum += reuse;
        cached_sum += cached;
    }
    print_message("oracle reusable %lld tokens, mock cached %lld tokens over %d requests\n",
                  reusable_sum, cached_sum, n);
    assert_true(cached_sum > 0);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* round_robin continues sessions in turn; zipf:1.5 favours the first ranks as 1/r^1.5 does. */
static void test_session_order(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *ma[] = {"--decode-base-ms", "0", "--prefill-base-ms", "0", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-rr", mock.port, "/v1/chat/completions");
    const char *rr[] = {"--sessions",
                        "5",
                        "--turns",
                        "100",
                        "--concurrency",
                        "1",
                        "--requests",
                        "15",
                        "--system-tokens",
                        "4",
                        "--session-context-tokens",
                        "4",
                        "--turn-tokens",
                        "4",
                        "--max-tokens",
                        "2",
                        NULL};
    assert_int_equal(run_sessions(&p, rr, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 15);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sb_test_int(v[i], "session"), i % 5);
        assert_int_equal(sb_test_int(v[i], "turn"), i / 5 + 1);
    }
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);

    sb_run_paths_init(&p, srcdir, "sess-zipf", mock.port, "/v1/chat/completions");
    const char *zf[] = {"--sessions",
                        "20",
                        "--turns",
                        "10000",
                        "--concurrency",
                        "1",
                        "--requests",
                        "400",
                        "--system-tokens",
                        "4",
                        "--session-context-tokens",
                        "4",
                        "--turn-tokens",
                        "4",
                        "--max-tokens",
                        "1",
                        "--session-order",
                        "zipf:1.5",
                        "--history",
                        "synthetic",
                        NULL};
    assert_int_equal(run_sessions(&p, zf, NULL), 0);
    v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 400);
    int count[20] = {0};
    for (int i = 0; i < n; i++) {
        long long s = sb_test_int(v[i], "session");
        assert_true(s >= 0 && s < 20);
        count[s]++;
    }
    /* p(rank r) = (r+1)^-1.5 / 2.18 (H(20, 1.5)): 0.46, 0.16, 0.09, ..., 0.04 for rank 5 */
    print_message("zipf:1.5 picks of ranks 0..4: %d %d %d %d %d\n", count[0], count[1], count[2],
                  count[3], count[4]);
    assert_true(count[0] > 140 && count[0] < 230);
    assert_true(count[0] > count[1] && count[1] > count[4]);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* --prime: every session's first turn first, as phase prime; then measured later turns only. */
static void test_prime(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-prime", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "6",
                           "--turns",
                           "10",
                           "--concurrency",
                           "3",
                           "--requests",
                           "8", /* measured turns: the prime's 6 are not counted */
                           "--prime",
                           "--system-tokens",
                           "8",
                           "--session-context-tokens",
                           "8",
                           "--turn-tokens",
                           "8",
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 14);
    bool seen[6] = {false};
    for (int i = 0; i < n; i++) {
        const char *phase = sb_test_str(v[i], "phase");
        long long s = sb_test_int(v[i], "session"), t = sb_test_int(v[i], "turn");
        if (i < 6) {
            assert_string_equal(phase, "prime");
            assert_int_equal(t, 1);
            assert_true(s >= 0 && s < 6 && !seen[s]);
            seen[s] = true;
        } else {
            assert_string_equal(phase, "measure");
            assert_true(t >= 2);
        }
    }
    cJSON *rj = sb_test_read_json(p.runjson);
    /* prime records are not measured */
    assert_int_equal((long long)sb_test_num(cJSON_GetObjectItem(rj, "counts"), "warmup"), 6);
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* --max-context 160: end replaces the session; slide drops its oldest turns (the prefix breaks:
   only the system prompt is reusable on the first turn after a slide). */
static void test_max_context(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    const char *policies[] = {"end", "slide"};
    for (int k = 0; k < 2; k++) {
        struct sb_run_paths p;
        sb_run_paths_init(&p, srcdir, "sess-ctx", mock.port, "/v1/chat/completions");
        const char *extra[] = {"--sessions",
                               "2",
                               "--turns",
                               "20",
                               "--concurrency",
                               "1",
                               "--requests",
                               "14",
                               "--system-tokens",
                               "16",
                               "--session-context-tokens",
                               "64",
                               "--turn-tokens",
                               "16",
                               "--max-tokens",
                               "16",
                               "--history",
                               "synthetic",
                               "--max-context",
                               "160",
                               "--context-policy",
                               policies[k],
                               NULL};
        assert_int_equal(run_sessions(&p, extra, NULL), 0);
        int n;
        cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
        assert_int_equal(n, 14);
        long long max_turn = 0, max_session = 0;
        bool slid = false;
        for (int i = 0; i < n; i++) {
            long long prompt =
                sb_test_int(v[i], "history_tokens") + sb_test_int(v[i], "new_tokens");
            assert_true(prompt <= 160);
            long long t = sb_test_int(v[i], "turn");
            if (t > max_turn)
                max_turn = t;
            if (sb_test_int(v[i], "session") > max_session)
                max_session = sb_test_int(v[i], "session");
            if (t > 1 && sb_test_int(v[i], "reusable_tokens") == 16)
                slid = true;
        }
        /* turns: 96, 128, 160 tokens; the 4th would be 192 */
        if (k == 0) {
            assert_int_equal(max_turn, 3);
            assert_true(max_session >= 2); /* ended sessions were replaced */
            assert_false(slid);
        } else {
            assert_true(max_turn > 3);
            assert_int_equal(max_session, 1);
            assert_true(slid);
        }
        sb_test_free_jsonl(v, n);
        sb_run_paths_release(&p);
    }
    sb_proc_stop(&mock, 15);
}

/* --idle-prob 1: every later turn comes after a parked idle period of at least --idle-s. */
static void test_idle_parking(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-idle", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "2",
                           "--turns",
                           "10",
                           "--concurrency",
                           "1",
                           "--requests",
                           "6",
                           "--system-tokens",
                           "8",
                           "--session-context-tokens",
                           "8",
                           "--turn-tokens",
                           "8",
                           "--idle-prob",
                           "1",
                           "--idle-s",
                           "0.05",
                           "--kv-bytes-per-token",
                           "1000",
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++) {
        const cJSON *parked = cJSON_GetObjectItem(v[i], "parked");
        if (sb_test_int(v[i], "turn") == 1) {
            assert_true(cJSON_IsFalse(parked));
            assert_true(cJSON_IsNull(cJSON_GetObjectItem(v[i], "idle_ms")));
        } else {
            assert_true(cJSON_IsTrue(parked));
            assert_true(sb_test_num(v[i], "idle_ms") >= 50);
        }
    }
    cJSON *rj = sb_test_read_json(p.runjson);
    cJSON *ws = cJSON_GetObjectItem(rj, "workload_state");
    assert_non_null(ws);
    assert_int_equal((long long)sb_test_num(ws, "sessions"), 2);
    assert_non_null(sb_test_str(ws, "salt"));
    assert_string_equal(sb_test_str(ws, "history"), "server");
    assert_true(sb_test_num(ws, "kv_bytes_per_token") == 1000);
    cJSON *arr = cJSON_GetObjectItem(ws, "working_set");
    int ns = cJSON_GetArraySize(arr);
    assert_true(ns >= 1);
    cJSON *last = cJSON_GetArrayItem(arr, ns - 1);
    assert_true(sb_test_num(last, "tokens") > 0);
    assert_true(sb_test_num(last, "bytes") == sb_test_num(last, "tokens") * 1000);
    cJSON_Delete(rj);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* Open loop on two threads with fewer sessions than arrivals can use: an arrival that finds no
   ready session waits for one (holding its slot), so a session never has two turns in flight and
   its turns go 1, 2, 3 in order. */
static void test_open_loop_waits(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, NULL), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-open", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "2",
                           "--turns",
                           "100",
                           "--rate",
                           "400",
                           "--threads",
                           "2",
                           "--requests",
                           "24",
                           "--think-ms",
                           "uniform:5:20",
                           "--system-tokens",
                           "8",
                           "--session-context-tokens",
                           "8",
                           "--turn-tokens",
                           "8",
                           "--session-order",
                           "uniform",
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 24);
    /* per session: turns 1..k each once, and each sent after the previous one's last byte */
    long long next_turn[2] = {1, 1};
    double last_end[2] = {0, 0};
    for (int t = 1; t <= 24; t++) {
        for (int i = 0; i < n; i++) {
            long long s = sb_test_int(v[i], "session");
            assert_true(s == 0 || s == 1);
            assert_true(sb_test_true(v[i], "ok"));
            if (sb_test_int(v[i], "turn") != t)
                continue;
            assert_int_equal(t, next_turn[s]++);
            assert_true(sb_test_num(v[i], "t_send_ns") > last_end[s]);
            last_end[s] = sb_test_num(v[i], "t_last_byte_ns");
        }
    }
    assert_int_equal(next_turn[0] + next_turn[1] - 2, 24);
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* With --tokenizer every message is exactly its length in tokens: the mock, counting with the same
   tokenizer inside the Llama 3 chat wrapper, sees the client's count plus the wrapper (1 + 5 a
   message + 4), and a first turn's new text is system + context + user. */
static void test_exact_lengths_tokenizer(void **state)
{
    (void)state;
    char tok[700];
    snprintf(tok, sizeof(tok), "%s/tests/.cache/tokenizers/llama3_1/tokenizer.json", srcdir);
    if (access(tok, R_OK) != 0) {
        print_message("no cached tokenizer at %s: skipped\n", tok);
        skip();
    }
    struct sb_proc mock;
    const char *ma[] = {"--tokenizer", tok, NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-tok", mock.port, "/v1/chat/completions");
    const char *extra[] = {"--sessions",
                           "2",
                           "--turns",
                           "4",
                           "--concurrency",
                           "1",
                           "--requests",
                           "6",
                           "--system-tokens",
                           "40",
                           "--session-context-tokens",
                           "100",
                           "--turn-tokens",
                           "20",
                           "--history",
                           "synthetic",
                           "--tokenizer",
                           tok,
                           NULL};
    assert_int_equal(run_sessions(&p, extra, NULL), 0);
    int n;
    cJSON **v = sb_test_read_jsonl_by_seq(p.metrics, &n);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++) {
        long long t = sb_test_int(v[i], "turn"), client = sb_test_int(v[i], "prompt_tokens_client");
        assert_int_equal(client,
                         sb_test_int(v[i], "history_tokens") + sb_test_int(v[i], "new_tokens"));
        if (t == 1)
            assert_int_equal(sb_test_int(v[i], "new_tokens"), 160);
        else
            assert_int_equal(sb_test_int(v[i], "new_tokens"), 20);
        long long messages = 2 * t; /* system, then user (+ assistant, user) per later turn */
        assert_int_equal(sb_test_int(v[i], "prompt_tokens") - client, 1 + 5 * messages + 4);
    }
    sb_test_free_jsonl(v, n);
    sb_run_paths_release(&p);
    sb_proc_stop(&mock, 15);
}

/* Bad values: exit 2, and the message names the option and the value. */
static void test_bad_options(void **state)
{
    (void)state;
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "sess-bad", 9, "/v1/chat/completions");
    static const struct {
        const char *opt, *val, *want;
        bool fixed; /* with the default workload */
    } cases[] = {
        {"--turns", "uniform:5", "--turns 'uniform:5'", false},
        {"--turns", "0", "--turns '0'", false},
        {"--session-order", "zipf:0", "--session-order 'zipf:0'", false},
        {"--session-order", "random", "--session-order 'random'", false},
        {"--salt", "xyz", "--salt 'xyz'", false},
        {"--idle-s", "lognormal:0:1", "--idle-s 'lognormal:0:1'", false},
        {"--think-ms", "fast", "--think-ms 'fast'", false},
        {"--think-ms", "uniform:1:2", "--think-ms 'uniform:1:2'", true},
        {"--max-context", "10", "--max-context 10", false},
        {"--history", "disk", "disk", false},
        {"--idle-prob", "2", "idle-prob", false},
        {"--concurrency", "200", "--concurrency 200 > --sessions 100", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {
            bin,          "run",        "--endpoint",
            p.url,        "--workload", cases[i].fixed ? "fixed_context" : "sessioned_chat",
            "--requests", "1",          "--output-dir",
            p.out,        cases[i].opt, cases[i].val,
            NULL};
        char *out = NULL, *err = NULL;
        int rc = sb_proc_run_limit(argv, &out, &err, 60);
        if (rc != 2 || !err || !strstr(err, cases[i].want))
            fail_msg("%s %s: exit %d, stderr: %s", cases[i].opt, cases[i].val, rc, err ? err : "");
        free(out);
        free(err);
    }
    sb_run_paths_release(&p);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BIN SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_server_grows),
        cmocka_unit_test(test_synthetic_identical),
        cmocka_unit_test(test_cached_matches_oracle),
        cmocka_unit_test(test_session_order),
        cmocka_unit_test(test_prime),
        cmocka_unit_test(test_max_context),
        cmocka_unit_test(test_idle_parking),
        cmocka_unit_test(test_open_loop_waits),
        cmocka_unit_test(test_exact_lengths_tokenizer),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
