/*
 * The mock's /metrics port on its own thread (see sb/mock_metrics_port.h). The thread never reads
 * the engine's state: it asks the engine's loop for a page through a pipe and waits for it on a
 * condition variable with a deadline, so the page is always rendered on the loop that owns the
 * state, and a scrape is answered whether or not that loop is free.
 */
#include "sb/mock_metrics_port.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sb_metrics_port {
    pthread_t thread;
    bool started;
    struct event_base *base; /* the thread's */
    struct evhttp *http;
    struct event *stop_check;
    struct event *render_ev; /* on the engine's loop */
    int pipe_fd[2];          /* thread -> engine loop: "render a page" */
    sb_metrics_render_fn render;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *page; /* the newest page; mu */
    size_t len;
    unsigned long long gen; /* pages rendered; mu */
    atomic_bool stop;
};

/* On the engine's loop: one page per wake-up, however many scrapes asked. */
static void on_render(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct sb_metrics_port *p = arg;
    char drain[64];
    while (read(fd, drain, sizeof(drain)) > 0)
        ;
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    p->render(p->ctx, &b);
    char *page = malloc(b.len + 1);
    if (page) {
        memcpy(page, b.data ? b.data : "", b.len);
        page[b.len] = '\0';
    }
    pthread_mutex_lock(&p->mu);
    if (page) {
        free(p->page);
        p->page = page;
        p->len = b.len;
    }
    p->gen++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    sb_buf_release(&b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct sb_metrics_port *p = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (!uri || strncmp(uri, "/metrics", 8) != 0 || (uri[8] != '\0' && uri[8] != '?')) {
        evhttp_send_error(req, 404, "this port serves /metrics only");
        return;
    }
    pthread_mutex_lock(&p->mu);
    unsigned long long gen = p->gen;
    pthread_mutex_unlock(&p->mu);
    ssize_t w;
    do
        w = write(p->pipe_fd[1], "r", 1);
    while (w < 0 && errno == EINTR); /* EAGAIN: a request is pending already */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SB_METRICS_PORT_FRESH_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    struct evbuffer *body = evbuffer_new();
    pthread_mutex_lock(&p->mu);
    while (p->gen == gen && !atomic_load(&p->stop))
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
            break; /* the engine's loop is busy (a disk read): the last page it rendered */
    if (body && p->page)
        evbuffer_add(body, p->page, p->len);
    pthread_mutex_unlock(&p->mu);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", body);
    if (body)
        evbuffer_free(body);
}

static void on_stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sb_metrics_port *p = arg;
    if (atomic_load(&p->stop))
        event_base_loopbreak(p->base);
}

static void *port_main(void *arg)
{
    struct sb_metrics_port *p = arg;
    event_base_dispatch(p->base);
    return NULL;
}

void sb_metrics_port_stop(struct sb_metrics_port *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->thread, NULL);
    if (p->http)
        evhttp_free(p->http);
    if (p->stop_check)
        event_free(p->stop_check);
    if (p->base)
        event_base_free(p->base);
    if (p->render_ev)
        event_free(p->render_ev);
    for (int i = 0; i < 2; i++)
        if (p->pipe_fd[i] >= 0)
            close(p->pipe_fd[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->page);
    free(p);
}

int sb_metrics_port_start(struct sb_metrics_port **out, struct event_base *main_base, int fd,
                          sb_metrics_render_fn render, void *ctx, struct sb_err *err)
{
    *out = NULL;
    struct sb_metrics_port *p = calloc(1, sizeof(*p));
    if (!p) {
        close(fd);
        return sb_err_set(err, "out of memory for the metrics port");
    }
    p->pipe_fd[0] = p->pipe_fd[1] = -1;
    p->render = render;
    p->ctx = ctx;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->stop, false);
    struct timeval tick = {0, 100 * 1000};
    if (pipe2(p->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        close(fd);
        sb_err_errno(err, errno, "cannot make the metrics port's pipe");
        goto fail;
    }
    p->render_ev = event_new(main_base, p->pipe_fd[0], EV_READ | EV_PERSIST, on_render, p);
    p->base = event_base_new();
    p->http = p->base ? evhttp_new(p->base) : NULL;
    if (!p->render_ev || event_add(p->render_ev, NULL) != 0 || !p->http ||
        !evhttp_accept_socket_with_handle(p->http, fd)) {
        close(fd);
        sb_err_set(err, "cannot serve the metrics port");
        goto fail;
    }
    evhttp_set_gencb(p->http, on_request, p);
    p->stop_check = event_new(p->base, -1, EV_PERSIST, on_stop_check, p);
    if (!p->stop_check || event_add(p->stop_check, &tick) != 0) {
        sb_err_set(err, "cannot serve the metrics port");
        goto fail;
    }
    on_render(p->pipe_fd[0], EV_READ, p); /* a page before the first scrape */
    if (pthread_create(&p->thread, NULL, port_main, p) != 0) {
        sb_err_set(err, "cannot start the metrics port's thread");
        goto fail;
    }
    p->started = true;
    *out = p;
    return 0;
fail:
    sb_metrics_port_stop(p);
    return -1;
}
