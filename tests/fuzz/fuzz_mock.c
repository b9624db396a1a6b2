/*
 * The mock's request parsing, end to end: two `sparkbench mock` servers run in threads of this
 * process (the default vLLM-like one, and one with the llama.cpp quirks), and each input is sent
 * to one of them over a loopback connection. The first byte picks the server and the shape:
 * a raw HTTP request (the wire fixes of src/mock/wire.c and evhttp's own parsing), or a JSON body
 * wrapped in a valid POST to /v1/completions or /v1/chat/completions (src/mock/server.c's body
 * parsing). The server shares this process, so ASan and UBSan see every request it handles; the
 * harness also checks that a wrapped body always gets an HTTP status line back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "sb/mock_server.h"
#include "sb/opt.h"
#include "sb/util.h"

struct server {
    struct sb_mock_config cfg;
    FILE *announce;
    int port;
};

static struct server servers[2];

static void *serve(void *arg)
{
    struct server *s = arg;
    struct sb_err err = {0};
    if (sb_mock_serve(&s->cfg, s->announce, &err) != 0)
        sb_fuzz_fail("mock did not start: %s", err.msg);
    return NULL;
}

static void start(struct server *s, const char *quirks)
{
    struct sb_err err = {0};
    if (sb_opt_defaults(sb_mock_options, sb_mock_noptions, &s->cfg, &err) != 0)
        sb_fuzz_fail("mock defaults: %s", err.msg);
    /* Fast and bounded: no modelled time, short contexts, so any request ends within ms. */
    if (sb_opt_set(sb_opt_find_key(sb_mock_options, sb_mock_noptions, "port"), &s->cfg, "0", "port",
                   &err) != 0)
        sb_fuzz_fail("port: %s", err.msg);
    s->cfg.prefill_base_ms = s->cfg.prefill_per_token_us = 0;
    s->cfg.decode_base_ms = s->cfg.decode_per_seq_us = 0;
    s->cfg.prefill_sd_frac = s->cfg.decode_sd_frac = 0;
    s->cfg.max_model_len = 256;
    s->cfg.default_max_tokens = 4;
    s->cfg.fault_rate = 0;
    if (quirks) {
        free(s->cfg.quirks);
        s->cfg.quirks = strdup(quirks);
    }
    int fd[2];
    if (pipe(fd) != 0)
        abort();
    s->announce = fdopen(fd[1], "w");
    pthread_t th;
    if (pthread_create(&th, NULL, serve, s) != 0)
        abort();
    pthread_detach(th);
    FILE *in = fdopen(fd[0], "r");
    if (!in || fscanf(in, "%d", &s->port) != 1)
        sb_fuzz_fail("mock announced no port");
    fclose(in);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    start(&servers[0], NULL);
    start(&servers[1], "llamacpp");
    return 0;
}

/* Waits up to ms for events on fd, through the SIGALRM that libFuzzer's -timeout watchdog sends
 * every second (it interrupts blocking calls with EINTR). Returns poll's result, 0 on timeout. */
static int wait_fd(int fd, short events, int ms)
{
    uint64_t end = sb_mono_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        uint64_t now = sb_mono_ns();
        int left = now >= end ? 0 : (int)((end - now) / 1000000u) + 1;
        int rc = poll(&pfd, 1, left);
        if (rc >= 0 || errno != EINTR)
            return rc;
    }
}

/* Sends req, half-closes when asked (a raw request may be incomplete: the FIN ends it; a
 * well-framed one is sent as curl does, without a FIN), and reads until the server closes or 8 s
 * pass (*timed_out then set). Every call is retried on EINTR (see wait_fd). Returns bytes read
 * into head (up to cap - 1, NUL-terminated). */
static size_t exchange(int port, const char *req, size_t len, bool half_close, char *head,
                       size_t cap, bool *timed_out)
{
    *timed_out = false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* An interrupted connect goes on in the background: wait for it, then ask again (EISCONN). */
    while (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EISCONN) {
        if (errno != EINTR && errno != EALREADY && errno != EINPROGRESS)
            sb_fuzz_fail("cannot connect to the mock: %s", strerror(errno));
        wait_fd(fd, POLLOUT, 1000);
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the server may close early on a bad request */
        off += (size_t)w;
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    size_t got = 0;
    char sink[4096];
    for (;;) {
        if (wait_fd(fd, POLLIN, 8000) <= 0) {
            *timed_out = true;
            break;
        }
        ssize_t r = recv(fd, sink, sizeof(sink), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r && got + 1 < cap; i++)
            head[got++] = sink[i];
    }
    head[got] = '\0';
    close(fd);
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct server *s = &servers[(data[0] >> 2) & 1];
    int shape = data[0] % 3;
    const char *body = (const char *)data + 1;
    size_t blen = size - 1;
    char head[64];
    bool timed_out;
    if (shape == 0) {
        exchange(s->port, body, blen, true, head, sizeof(head), &timed_out);
        return 0;
    }
    const char *path = shape == 1 ? "/v1/completions" : "/v1/chat/completions";
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr),
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      path, blen);
    char *req = malloc((size_t)hl + blen);
    if (!req)
        abort();
    memcpy(req, hdr, (size_t)hl);
    memcpy(req + hl, body, blen);
    size_t got = exchange(s->port, req, (size_t)hl + blen, false, head, sizeof(head), &timed_out);
    if (got == 0) {
        /* Once more on a fresh connection before calling it a failure: a loaded shared machine
           can hold the server thread off for a while; a request it never answers is the bug. */
        fprintf(stderr, "fuzz_mock: no reply (%s), retrying\n", timed_out ? "timeout" : "closed");
        got = exchange(s->port, req, (size_t)hl + blen, false, head, sizeof(head), &timed_out);
    }
    free(req);
    if (got > 0 && strncmp(head, "HTTP/1.1 ", 9) != 0)
        sb_fuzz_fail("reply does not start with a status line: %.20s", head);
    if (got == 0)
        sb_fuzz_fail("no reply to a well-framed POST %s (%s)", path,
                     timed_out ? "timed out" : "closed without a byte");
    return 0;
}
