/*
 * Unit tests for the mock's metrics port thread (src/mock/metrics_port.c): a scrape is answered
 * while the engine's loop is blocked (here: never run, as during an iteration's disk reads) with
 * the last page that loop rendered, and with a fresh page once the loop runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb/mock_metrics_port.h"

static atomic_int counter;

/* Runs on the engine's loop only: the value the test has set. */
static void render(void *ctx, struct sb_buf *out)
{
    (void)ctx;
    sb_buf_addf(out, "kvbm_onboard_blocks_d2d %d\n", atomic_load(&counter));
}

/* Non-blocking, as the mock's own listeners: evhttp accepts until EAGAIN. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

struct scrape {
    int port;
    const char *path;
    char reply[4096];
    atomic_bool done;
};

/* GET path over a fresh connection; the whole reply into s->reply. A socket timeout of 30 s
   bounds a hang (a failure, not a timing assertion). */
static void *scrape_main(void *arg)
{
    struct scrape *s = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        char req[256];
        int len = snprintf(req, sizeof(req),
                           "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", s->path);
        if (write(fd, req, (size_t)len) == len) {
            ssize_t r;
            while (n + 1 < sizeof(s->reply) &&
                   (r = read(fd, s->reply + n, sizeof(s->reply) - 1 - n)) > 0)
                n += (size_t)r;
        }
    }
    s->reply[n] = '\0';
    close(fd);
    atomic_store(&s->done, true);
    return NULL;
}

static void test_answers_while_engine_blocked(void **state)
{
    (void)state;
    struct event_base *engine = event_base_new();
    assert_non_null(engine);
    int port;
    int fd = listener(&port);
    atomic_store(&counter, 7);
    struct sb_metrics_port *p = NULL;
    struct sb_err err;
    assert_int_equal(sb_metrics_port_start(&p, engine, fd, render, NULL, &err), 0);

    /* The engine's loop never runs: the scrape still gets the page rendered at start. */
    atomic_store(&counter, 8);
    struct scrape s = {.port = port, .path = "/metrics"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, scrape_main, &s), 0);
    pthread_join(t, NULL);
    print_message("blocked: %s\n", s.reply);
    assert_non_null(strstr(s.reply, "HTTP/1.1 200"));
    assert_non_null(strstr(s.reply, "kvbm_onboard_blocks_d2d 7\n"));

    /* With the loop running, the page is rendered for the scrape: the new value. */
    struct scrape s2 = {.port = port, .path = "/metrics"};
    assert_int_equal(pthread_create(&t, NULL, scrape_main, &s2), 0);
    while (!atomic_load(&s2.done))
        event_base_loop(engine, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    pthread_join(t, NULL);
    print_message("running: %s\n", s2.reply);
    assert_non_null(strstr(s2.reply, "HTTP/1.1 200"));
    assert_non_null(strstr(s2.reply, "kvbm_onboard_blocks_d2d 8\n"));

    /* Only /metrics. */
    struct scrape s3 = {.port = port, .path = "/v1/models"};
    assert_int_equal(pthread_create(&t, NULL, scrape_main, &s3), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(s3.reply, "HTTP/1.1 404"));

    sb_metrics_port_stop(p);
    event_base_free(engine);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_while_engine_blocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
