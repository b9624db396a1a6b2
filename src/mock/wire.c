/*
 * An evbuffer hook on every mock connection's output that puts right what libevent 2.1's evhttp
 * does on its own, before the mock sees a request (see sb/mock_wire.h).
 *
 * evhttp_send_error writes a fixed HTML page ("<HTML><HEAD>\n<TITLE>413 ..."); the mock never
 * writes HTML. When such a page lands in the output buffer, the hook swaps that response (status
 * line and headers included) for the JSON error shape before the socket write, which happens
 * later in the event loop.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/mock_wire.h"

/* ---- output: evhttp's HTML error pages ---- */

static const char html_page[] = "<HTML><HEAD>\n<TITLE>";
#define HTML_MAX 1024 /* evhttp's error page and its headers are a few hundred bytes */

/* The last occurrence of needle in hay[0, n), or NULL. */
static const char *last_of(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* The JSON error response for evhttp's page: head is its status line and headers (hl bytes, the
   blank line included), status its code. */
static void json_reply(struct evbuffer *out, const char *head, size_t hl, int status)
{
    const char *type = "BadRequestError", *msg;
    char m413[160];
    switch (status) {
    case 400:
        msg = "malformed HTTP request: bad request line, header or Content-Length";
        break;
    case 413:
        snprintf(m413, sizeof(m413),
                 "request body over the %zu-byte limit, or a malformed chunk size line",
                 SB_MOCK_MAX_BODY_BYTES);
        msg = m413;
        break;
    case 417:
        msg = "unsupported Expect header (only 100-continue is)";
        break;
    case 501:
        type = "NotImplementedError";
        msg = "method not implemented";
        break;
    default:
        type = "internal_error";
        msg = "the HTTP layer refused the request";
        break;
    }
    char body[320];
    int bl = snprintf(body, sizeof(body),
                      "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":%d}}",
                      msg, type, status);
    /* The status line and the headers but Content-Type and Content-Length, as evhttp wrote them. */
    const char *end = head + hl - 2; /* the blank line */
    for (const char *p = head; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        if (p == head || (strncasecmp(p, "Content-Type:", 13) != 0 &&
                          strncasecmp(p, "Content-Length:", 15) != 0))
            evbuffer_add(out, p, (size_t)(next - p));
        p = next;
    }
    evbuffer_add_printf(out, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", bl,
                        body);
}

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)arg;
    size_t len = evbuffer_get_length(buf), plen = sizeof(html_page) - 1;
    if (info->n_added < plen || info->n_added > HTML_MAX || info->n_added > len)
        return;
    size_t body_at = len - info->n_added; /* evhttp adds the page in one piece, last */
    char tail[2 * HTML_MAX + 1];
    size_t before = body_at < HTML_MAX ? body_at : HTML_MAX, n = before + info->n_added;
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(buf, &p, body_at - before, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &p, tail, n) != (ev_ssize_t)n)
        return;
    tail[n] = '\0';
    const char *page = tail + before;
    if (memcmp(page, html_page, plen) != 0)
        return;
    /* The page's own headers: the last status line before it, ending in the blank line, with
       evhttp_send_error's Content-Type (no other header can hold "HTTP/1."). */
    const char *head = last_of(tail, before, "HTTP/1.");
    if (!head)
        return;
    size_t hl = (size_t)(page - head);
    if (hl < 4 || memcmp(page - 4, "\r\n\r\n", 4) != 0 ||
        !last_of(head, hl, "\r\nContent-Type: text/html\r\n"))
        return;
    int status = (int)strtol(page + plen, NULL, 10);
    struct evbuffer *keep = evbuffer_new(), *rep = evbuffer_new();
    if (!keep || !rep) {
        if (keep)
            evbuffer_free(keep);
        if (rep)
            evbuffer_free(rep);
        return;
    }
    json_reply(rep, head, hl, status);
    /* No way to cut an evbuffer's tail: move what precedes the response aside, empty the buffer,
       put both back. The adds re-enter this hook, which finds no page in them. */
    size_t start = body_at - hl;
    evbuffer_remove_buffer(buf, keep, start);
    evbuffer_drain(buf, evbuffer_get_length(buf));
    evbuffer_add_buffer(buf, keep);
    evbuffer_add_buffer(buf, rep);
    evbuffer_free(keep);
    evbuffer_free(rep);
}

struct bufferevent *sb_mock_wire_bev(struct event_base *base, void *arg)
{
    (void)arg;
    /* What evhttp makes when there is no callback, plus the hook. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    if (!evbuffer_add_cb(bufferevent_get_output(bev), on_output, NULL)) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}
