/*
 * The scripted HTTP server of script_server.h: one thread, one connection at a time (the tests
 * that use it drive one request at a time), requests read whole before the script is written.
 */
#include "script_server.h"
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits up to ms for fd to become readable, watching the stop flag. 1 readable, 0 stopped. */
static int wait_readable(struct sb_script_server *s, int fd)
{
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 50);
        if (n > 0)
            return 1;
    }
    return 0;
}

/*
 * Reads one request (headers, then Content-Length bytes) into buf: the request line and headers
 * stay there, NUL-terminated; a body larger than what is left of buf (a long prompt) is read and
 * dropped. 1 read, 0 EOF or stop, -1 error.
 */
static int read_request(struct sb_script_server *s, int fd, char *buf, size_t cap)
{
    size_t len = 0;  /* bytes in buf (headers and the start of the body) */
    size_t seen = 0; /* bytes of the request read in all */
    size_t need = 0; /* total bytes once the headers are known */
    char scratch[16384];
    for (;;) {
        if (need && seen >= need)
            return 1;
        if (!wait_readable(s, fd))
            return 0;
        ssize_t n;
        if (need) /* the rest of a body: read and dropped, the headers stay as they are */
            n = read(fd, scratch, sizeof(scratch));
        else
            n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            return n == 0 ? 0 : -1;
        seen += (size_t)n;
        if (need)
            continue;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) {
            if (len >= cap - 1)
                return -1; /* headers longer than the buffer */
            continue;
        }
        size_t body = 0;
        for (char *p = buf; p && p < end;) {
            if (strncasecmp(p, "content-length:", 15) == 0)
                body = (size_t)strtoul(p + 15, NULL, 10);
            p = strstr(p, "\r\n");
            if (p)
                p += 2;
        }
        need = (size_t)(end + 4 - buf) + body;
        end[4] = '\0'; /* the body is not the responders' business */
    }
}

static void *serve(void *arg)
{
    struct sb_script_server *s = arg;
    if (s->accept_delay_ms > 0)
        sleep_ms(s->accept_delay_ms);
    while (!atomic_load(&s->stop)) {
        if (!wait_readable(s, s->listen_fd))
            break;
        if (!s->first_accept_ns)
            s->first_accept_ns = mono_ns();
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        static char req[65536]; /* one server thread */
        while (read_request(s, fd, req, sizeof(req)) == 1) {
            atomic_fetch_add(&s->requests, 1);
            char *eol = strstr(req, "\r\n");
            size_t ll = eol ? (size_t)(eol - req) : 0, have = strlen(s->log);
            char *sp = memchr(req, ' ', ll);
            char *sp2 = sp ? memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - req)) : NULL;
            if (sp2 && have + (size_t)(sp2 - req) + 2 < sizeof(s->log)) {
                memcpy(s->log + have, req, (size_t)(sp2 - req));
                s->log[have + (size_t)(sp2 - req)] = '\n';
                s->log[have + (size_t)(sp2 - req) + 1] = '\0';
            }
            bool ok = true;
            if (s->respond) {
                const char *r = s->respond(s, req);
                ok = r && sb_test_write_all(fd, r, strlen(r));
                if (!ok || s->close_after_response)
                    break;
                continue;
            }
            for (const struct sb_script_step *st = s->steps; ok && st->bytes; st++) {
                if (st->delay_ms > 0)
                    sleep_ms(st->delay_ms);
                ok = sb_test_write_all(fd, st->bytes, strlen(st->bytes));
            }
            if (!ok || s->close_after_response) {
                if (ok && s->close_delay_ms > 0)
                    sleep_ms(s->close_delay_ms);
                break;
            }
        }
        close(fd);
    }
    return NULL;
}

int sb_script_server_start(struct sb_script_server *s)
{
    s->port = 0;
    s->first_accept_ns = 0;
    s->log[0] = '\0';
    atomic_store(&s->requests, 0);
    atomic_store(&s->stop, false);
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0)
        return -1;
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->listen_fd, s->backlog) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &al) != 0) {
        close(s->listen_fd);
        return -1;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        close(s->listen_fd);
        return -1;
    }
    return 0;
}

void sb_script_server_stop(struct sb_script_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}
