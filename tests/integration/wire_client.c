/*
 * The raw HTTP/1.x test client of wire_client.h.
 */
#include "wire_client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t sb_test_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int wire_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

void wire_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        assert_true(w > 0);
        data += w;
        len -= (size_t)w;
    }
}

void wire_resp_release(struct wire_resp *r)
{
    free(r->raw);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

bool header_is(const char *head, size_t head_len, const char *name, const char *value)
{
    size_t nl = strlen(name);
    const char *end = head + head_len;
    for (const char *p = strstr(head, "\r\n"); p && p + 2 < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            if (!value || strncasecmp(v, value, strlen(value)) == 0)
                return true;
        }
    }
    return false;
}

/* Decodes a chunked body from raw; returns true once the last chunk and the trailers are in. */
static bool dechunk(const char *raw, size_t len, struct wire_resp *r)
{
    size_t pos = 0;
    char *out = malloc(len + 1);
    size_t olen = 0;
    for (;;) {
        const char *eol = memmem(raw + pos, len - pos, "\r\n", 2);
        if (!eol)
            break;
        char *end;
        unsigned long n = strtoul(raw + pos, &end, 16);
        pos = (size_t)(eol - raw) + 2;
        if (n == 0) {
            const char *fin = memmem(raw + pos - 2, len - pos + 2, "\r\n\r\n", 4);
            if (!fin)
                break;
            out[olen] = '\0';
            free(r->body);
            r->body = out;
            r->body_len = olen;
            return true;
        }
        if (len - pos < n + 2)
            break;
        memcpy(out + olen, raw + pos, n);
        olen += n;
        pos += n + 2;
    }
    free(out);
    return false;
}

/*
 * Reads one whole response from fd (framed by Content-Length, chunked encoding or the close),
 * stamping when each of up to four marker strings first shows up in the bytes received.
 */
void wire_read(int fd, struct wire_resp *r, const char *const *marks)
{
    memset(r, 0, sizeof(*r));
    size_t cap = 1 << 16;
    r->raw = malloc(cap);
    r->content_length = -1;
    for (;;) {
        if (r->len + 4096 + 1 > cap) {
            cap *= 2;
            r->raw = realloc(r->raw, cap);
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        /* A guard against a hung test, not a timing assertion. */
        assert_true(poll(&pfd, 1, 60000) == 1);
        ssize_t n = read(fd, r->raw + r->len, cap - r->len - 1);
        uint64_t now = sb_test_mono_ns();
        assert_true(n >= 0);
        if (n == 0) {
            r->eof = true;
            break;
        }
        r->len += (size_t)n;
        r->raw[r->len] = '\0';
        for (int i = 0; marks && marks[i] && i < 4; i++)
            if (!r->mark_ns[i] && strstr(r->raw, marks[i]))
                r->mark_ns[i] = now;
        if (!r->head_len) {
            char *e = strstr(r->raw, "\r\n\r\n");
            if (!e)
                continue;
            r->head_len = (size_t)(e - r->raw) + 4;
            assert_int_equal(sscanf(r->raw, "HTTP/1.%*d %d", &r->status), 1);
            r->chunked = header_is(r->raw, r->head_len, "Transfer-Encoding", "chunked");
            r->conn_close = header_is(r->raw, r->head_len, "Connection", "close");
            char *cl = strcasestr(r->raw, "\r\nContent-Length:");
            if (cl && cl < e)
                r->content_length = strtoll(cl + 17, NULL, 10);
        }
        const char *body = r->raw + r->head_len;
        size_t blen = r->len - r->head_len;
        if (r->chunked && dechunk(body, blen, r))
            break;
        if (!r->chunked && r->content_length >= 0 && (long long)blen >= r->content_length)
            break;
    }
    if (!r->body) {
        size_t blen = r->head_len ? r->len - r->head_len : 0;
        if (r->content_length >= 0 && (long long)blen > r->content_length)
            blen = (size_t)r->content_length;
        r->body = strndup(r->raw + r->head_len, blen);
        r->body_len = blen;
    }
}

/* A POST with a JSON body on an open connection (HTTP/1.1 keep-alive). */
void wire_post(int fd, const char *path, const char *body)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, strlen(body));
    wire_send(fd, head, (size_t)n);
    wire_send(fd, body, strlen(body));
}
