/*
 * Two evbuffer hooks on every mock connection that put right what libevent 2.1's evhttp does on
 * its own, before the mock sees a request (see sb/mock_wire.h).
 *
 * Input: the hook runs as bytes arrive, before evhttp parses them, and follows the request framing
 * as evhttp 2.1.12 does (request line, the first Transfer-Encoding and Content-Length headers, a
 * body only for methods other than HEAD and TRACE, chunk sizes, trailers). On a chunk-size line it
 * turns the byte after the hex digits into a space when it is ';' or a tab: evhttp reads the size
 * with strtoll and accepts a space after it, ignoring the rest of the line. Data bytes are never
 * touched. When the framing stops making sense (evhttp is about to answer 400 and close), the
 * hook stops for that connection. The framing state is kept per file descriptor, reset by the
 * connection's first bytes, because evhttp gives the hooks no per-connection pointer of their own.
 *
 * Output: evhttp_send_error writes a fixed HTML page ("<HTML><HEAD>\n<TITLE>413 ..."); the mock
 * never writes HTML. When such a page lands in the output buffer, the hook swaps that response
 * (status line and headers included) for the JSON error shape before the socket write, which
 * happens later in the event loop.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/mock_wire.h"

#define LINE_CAP 256 /* bytes of a request line, header or chunk-size line looked at */

/* ---- input: chunk extensions ---- */

enum phase { PH_HEAD, PH_SIZE, PH_DATA, PH_TRAILER, PH_FIXED, PH_OFF };

/* Where evhttp's parser will be in one connection's request stream. */
struct track {
    const struct bufferevent *bev; /* the connection this slot belongs to now */
    size_t scan;                   /* bytes from the input's front already looked at */
    uint64_t left;                 /* PH_DATA, PH_FIXED: body bytes still to skip */
    enum phase phase;
    bool saw_line; /* the request line is in */
    bool may_body; /* evhttp 2.1.12 reads a body for every method but HEAD and TRACE */
    bool saw_te, saw_cl, chunked;
    int last;       /* the previous header line: 1 the first Transfer-Encoding, 2 the first
                       Content-Length, 0 another */
    long long clen; /* the first Content-Length; -1 none, -2 not a number */
};

/* Indexed by file descriptor (unique while a connection is open); one server per process. */
static struct track *tracks;
static size_t ntracks;

static void new_request(struct track *t)
{
    t->phase = PH_HEAD;
    t->saw_line = t->may_body = t->saw_te = t->saw_cl = t->chunked = false;
    t->last = 0;
    t->clen = -1;
    t->left = 0;
}

/* Writes a space over the input byte at off (in place: the buffer's length does not change, so
   no callback runs). */
static void patch_space(struct evbuffer *buf, size_t off)
{
    struct evbuffer_ptr p;
    struct evbuffer_iovec v;
    if (evbuffer_ptr_set(buf, &p, off, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_peek(buf, 1, &p, &v, 1) >= 1 && v.iov_len > 0)
        *(char *)v.iov_base = ' ';
}

static void header_line(struct track *t, const char *line, size_t len)
{
    if (line[0] == ' ' || line[0] == '\t') { /* obs-fold: evhttp appends it to the last value */
        if (t->last == 1)
            t->chunked = false;
        else if (t->last == 2)
            t->clen = -2;
        return;
    }
    const char *colon = strchr(line, ':');
    if (!colon) {
        t->phase = PH_OFF; /* evhttp answers 400 and closes */
        return;
    }
    size_t nl = (size_t)(colon - line);
    const char *v = colon + 1 + strspn(colon + 1, " ");
    char val[LINE_CAP];
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    memcpy(val, v, vl);
    val[vl] = '\0';
    t->last = 0;
    if (nl == 17 && strncasecmp(line, "Transfer-Encoding", nl) == 0 && !t->saw_te) {
        t->saw_te = true;
        t->last = 1;
        t->chunked = len < LINE_CAP - 1 && strcasecmp(val, "chunked") == 0;
    } else if (nl == 14 && strncasecmp(line, "Content-Length", nl) == 0 && !t->saw_cl) {
        char *end;
        long long n = strtoll(val, &end, 10);
        t->saw_cl = true;
        t->last = 2;
        t->clen = len >= LINE_CAP - 1 || !*val || *end || n < 0 ? -2 : n;
    }
}

/* One complete line of input: line is its first bytes (NUL-terminated), len its length without
   the end of line, at its offset in buf. */
static void on_line(struct track *t, struct evbuffer *buf, const char *line, size_t len, size_t at)
{
    switch (t->phase) {
    case PH_HEAD:
        if (!t->saw_line) {
            static const char *const with_body[] = {"GET",     "POST",  "PUT",    "DELETE",
                                                    "OPTIONS", "PATCH", "CONNECT"};
            size_t m = strcspn(line, " ");
            if (len == 0) {
                t->phase = PH_OFF; /* evhttp: 400 */
                return;
            }
            for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++)
                if (strlen(with_body[i]) == m && memcmp(line, with_body[i], m) == 0)
                    t->may_body = true;
            t->saw_line = true;
        } else if (len > 0) {
            header_line(t, line, len);
            // Two different evhttp rejections (this and clen == -2), kept apart for their reasons.
            // NOLINTNEXTLINE(bugprone-branch-clone)
        } else if (t->may_body && t->chunked && t->saw_cl) {
            t->phase = PH_OFF; /* evhttp: 400, both framings (request smuggling) */
        } else if (t->may_body && t->chunked) {
            t->phase = PH_SIZE;
        } else if (t->may_body && t->clen == -2) {
            t->phase = PH_OFF; /* evhttp: 400 */
        } else if (t->may_body && t->clen > 0) {
            t->phase = PH_FIXED;
            t->left = (uint64_t)t->clen;
        } else {
            new_request(t);
        }
        return;
    case PH_SIZE: {
        if (len == 0)
            return; /* the CRLF after a chunk's data: evhttp skips empty lines here */
        char *end;
        long long n = strtoll(line, &end, 16);
        size_t k = (size_t)(end - line);
        bool digits = k > 0 && end[-1] != ' ' && end[-1] != '\t';
        if (k >= LINE_CAP - 1 || n < 0) {
            t->phase = PH_OFF;
            return;
        }
        if (digits && (*end == ';' || *end == '\t')) {
            patch_space(buf, at + k); /* "5;ext" and "5\t;ext" read as "5 ..." */
        } else if (*end != '\0' && *end != ' ') {
            t->phase = PH_OFF; /* evhttp: malformed chunk size, 413 */
            return;
        }
        if (n == 0) {
            t->phase = PH_TRAILER;
        } else {
            t->phase = PH_DATA;
            t->left = (uint64_t)n;
        }
        return;
    }
    case PH_TRAILER:
        if (len == 0)
            new_request(t);
        return;
    default:
        return;
    }
}

/* Follows the framing over the bytes not yet looked at. */
static void scan(struct track *t, struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf);
    while (t->phase != PH_OFF && t->scan < len) {
        if (t->phase == PH_DATA || t->phase == PH_FIXED) {
            size_t n = len - t->scan;
            if (n > t->left)
                n = (size_t)t->left;
            t->scan += n;
            t->left -= n;
            if (t->left == 0) {
                if (t->phase == PH_DATA)
                    t->phase = PH_SIZE;
                else
                    new_request(t);
            }
            continue;
        }
        struct evbuffer_ptr at;
        size_t eol_len = 0;
        if (evbuffer_ptr_set(buf, &at, t->scan, EVBUFFER_PTR_SET) != 0)
            return;
        struct evbuffer_ptr eol = evbuffer_search_eol(buf, &at, &eol_len, EVBUFFER_EOL_CRLF);
        if (eol.pos < 0)
            return; /* the line is not complete yet */
        size_t n = (size_t)eol.pos - t->scan;
        char line[LINE_CAP];
        size_t c = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        if (evbuffer_copyout_from(buf, &at, line, c) != (ev_ssize_t)c)
            return;
        line[c] = '\0';
        size_t start = t->scan;
        t->scan = (size_t)eol.pos + eol_len;
        on_line(t, buf, line, n, start);
    }
}

static struct track *track_of(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || (size_t)fd >= ntracks || tracks[fd].bev != bev)
        return NULL;
    return &tracks[fd];
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct track *t = track_of(arg);
    if (!t || t->phase == PH_OFF)
        return;
    if (info->n_deleted > t->scan) {
        t->phase = PH_OFF; /* evhttp read bytes the hook had not seen: lost track */
        return;
    }
    t->scan -= info->n_deleted;
    if (info->n_added)
        scan(t, buf);
}

/* The connection's first bytes: claims the descriptor's slot, then hands over to on_input. */
static void on_first_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct bufferevent *bev = arg;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (!info->n_added || fd < 0)
        return;
    evbuffer_remove_cb(buf, on_first_input, arg);
    if ((size_t)fd >= ntracks) {
        size_t n = ntracks ? ntracks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct track *nt = realloc(tracks, n * sizeof(*nt));
        if (!nt)
            return; /* untracked: chunk extensions get evhttp's error, made JSON on output */
        memset(nt + ntracks, 0, (n - ntracks) * sizeof(*nt));
        tracks = nt;
        ntracks = n;
    }
    struct track *t = &tracks[fd];
    memset(t, 0, sizeof(*t));
    if (!evbuffer_add_cb(buf, on_input, bev))
        return;
    t->bev = bev;
    new_request(t);
    scan(t, buf);
}

void sb_mock_wire_release(void)
{
    free(tracks);
    tracks = NULL;
    ntracks = 0;
}

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
    /* What evhttp makes when there is no callback, plus the hooks. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    if (!evbuffer_add_cb(bufferevent_get_input(bev), on_first_input, bev) ||
        !evbuffer_add_cb(bufferevent_get_output(bev), on_output, NULL)) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}
