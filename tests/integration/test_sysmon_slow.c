/*
 * Integration test for `sparkbench sysmon` against slow telemetry endpoints: two Prometheus
 * /metrics and TensorRT-LLM endpoints that answer after 150 ms and one that answers at once,
 * scraped every 100 ms. The
 * endpoints are tiny HTTP servers on threads of this process (127.0.0.1, ephemeral ports). The
 * grid must hold (ts = a multiple of the interval, one interval apart, ts_actual - ts = late_ms),
 * the slow scrapes must be recorded as late in their tick's line rather than delay it, the fast
 * endpoint must be scraped fine in every tick, and --duration-s must end the run on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;

/* ---- a /metrics server whose every reply comes delay_ms late -------------------------------- */

struct slow_server {
    int fd, port;
    long delay_ms;
    pthread_t thread;
    atomic_int conns; /* connection threads still running */
    atomic_bool stop;
    atomic_int requests;
};

struct slow_conn {
    struct slow_server *s;
    int fd;
};

static void *slow_conn_main(void *arg)
{
    struct slow_conn *c = arg;
    char req[4096];
    size_t len = 0;
    while (len < sizeof(req) - 1) {
        ssize_t k = recv(c->fd, req + len, sizeof(req) - 1 - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    if (len > 0) {
        atomic_fetch_add(&c->s->requests, 1);
        struct timespec d = {c->s->delay_ms / 1000, (c->s->delay_ms % 1000) * 1000000L};
        while (nanosleep(&d, &d) == -1 && errno == EINTR)
            ;
        static const char body[] = "# TYPE vllm:num_requests_running gauge\n"
                                   "vllm:num_requests_running 3\n";
        char reply[512];
        int n = snprintf(reply, sizeof(reply),
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);
        /* The client may have given up on it: a failed send is no concern here. */
        (void)send(c->fd, reply, (size_t)n, MSG_NOSIGNAL);
    }
    close(c->fd);
    atomic_fetch_sub(&c->s->conns, 1);
    free(c);
    return NULL;
}

static void *slow_accept_main(void *arg)
{
    struct slow_server *s = arg;
    while (!atomic_load(&s->stop)) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shut down */
        }
        struct slow_conn *c = malloc(sizeof(*c));
        pthread_t t;
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        atomic_fetch_add(&s->conns, 1);
        if (pthread_create(&t, NULL, slow_conn_main, c) != 0) {
            atomic_fetch_sub(&s->conns, 1);
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static void slow_server_start(struct slow_server *s, long delay_ms)
{
    memset(s, 0, sizeof(*s));
    s->delay_ms = delay_ms;
    s->fd = sb_test_listen_loopback(64, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, slow_accept_main, s), 0);
}

static void slow_server_stop(struct slow_server *s)
{
    atomic_store(&s->stop, true);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
    /* Connection threads end within one delay; wait for them (a safety net of 10 s). */
    for (int i = 0; i < 1000 && atomic_load(&s->conns) > 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&s->conns), 0);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const cJSON *at(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* Two 150 ms endpoints (one --prom, the --trtllm) and a fast --prom at a 100 ms interval for
 * 1.5 s. */
static void test_slow_prom_keeps_grid(void **state)
{
    (void)state;
    struct slow_server slow[2], fast;
    slow_server_start(&slow[0], 150);
    slow_server_start(&slow[1], 150);
    slow_server_start(&fast, 0);
    char *dir = sb_test_tmpdir("/tmp", "sysmon-slow");
    char path[600], urls[256], trtllm[128];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    snprintf(urls, sizeof(urls), "http://127.0.0.1:%d/metrics,http://127.0.0.1:%d/metrics",
             slow[0].port, fast.port);
    snprintf(trtllm, sizeof(trtllm), "http://127.0.0.1:%d/metrics", slow[1].port);
    const double duration = 1.5;
    const char *argv[] = {bin,        "sysmon",        "--out",    dir,         "--duration-s",
                          "1.5",      "--interval-ms", "100",      "--prom",    urls,
                          "--trtllm", trtllm,          "--no-gpu", "--no-disk", NULL};
    double t0 = mono_s();
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    double took = mono_s() - t0;
    slow_server_stop(&slow[0]);
    slow_server_stop(&slow[1]);
    slow_server_stop(&fast);
    assert_int_equal(rc, 0);

    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    int live = 0, late_scrapes = 0, late_sources = 0, fast_ok = 0, missed = 0;
    double prev = 0, max_drift = 0, max_late = 0;
    for (int i = 0; i < n; i++) {
        double ts = at(v[i], "ts")->valuedouble;
        /* On the grid: a multiple of 0.1 s, one interval after the previous line. */
        assert_true(fabs(ts * 10 - round(ts * 10)) < 1e-4);
        if (i)
            assert_true(fabs(ts - prev - 0.1) < 1e-4);
        prev = ts;
        if (cJSON_IsTrue(at(v[i], "missed"))) {
            missed++;
            continue;
        }
        live++;
        double actual = at(v[i], "ts_actual")->valuedouble;
        double late_ms = at(v[i], "late_ms")->valuedouble;
        /* late_ms is how far ts_actual is behind ts (both read when the tick woke). */
        double drift = actual - ts;
        if (fabs(drift - late_ms / 1000) > max_drift)
            max_drift = fabs(drift - late_ms / 1000);
        max_late = late_ms > max_late ? late_ms : max_late;
        const cJSON *scrapes = at(at(v[i], "prom"), "scrapes");
        assert_int_equal(cJSON_GetArraySize(scrapes), 2);
        const cJSON *sc = cJSON_GetArrayItem(scrapes, 0);
        assert_true(cJSON_IsFalse(at(sc, "ok")));
        late_scrapes += cJSON_IsTrue(at(sc, "late"));
        fast_ok += cJSON_IsTrue(at(cJSON_GetArrayItem(scrapes, 1), "ok"));
        /* Both slow sources are named in the tick's late_sources. */
        const cJSON *ls = at(v[i], "late_sources");
        int named = 0;
        for (const cJSON *x = ls ? ls->child : NULL; x; x = x->next)
            named += cJSON_IsString(x) &&
                     (strcmp(x->valuestring, "prom") == 0 || strcmp(x->valuestring, "trtllm") == 0);
        late_sources += named == 2;
        assert_null(at(v[i], "trtllm")); /* no reply in time: nothing to say about it */
    }
    print_message("%d lines (%d missed), run took %.3f s for %.1f s; max |ts_actual - ts - "
                  "late_ms| %.1f ms, max late_ms %.1f; %d late slow scrapes, %d ticks naming both "
                  "late sources, fast ok in %d of %d\n",
                  n, missed, took, duration, max_drift * 1000, max_late, late_scrapes, late_sources,
                  fast_ok, live);
    /* 1.5 s of 100 ms ticks; the lines (missed ones included) cover the duration. */
    assert_true(n >= 13 && n <= 17);
    assert_true(max_drift < 0.010);
    /* Every slow scrape of every tick is recorded as late, the fast one is never held up. */
    assert_int_equal(late_scrapes, live);
    assert_int_equal(late_sources, live);
    assert_int_equal(fast_ok, live);
    /* The run ends on time: generous, a whole second past the duration. */
    assert_true(took < duration + 1.0);
    assert_true(atomic_load(&fast.requests) >= live);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_prom_keeps_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
