/*
 * The Server-Sent Events push parser behind sb/sse.h. It sits on the load generator's hot path:
 * every chunk of every stream passes through it, so it finds line ends with memchr and keeps each
 * scan's answer until the position passes it. That way every byte is scanned a bounded number of
 * times whatever the mix of CR, LF and CRLF (a CR-only stream does not rescan the rest of the
 * buffer for an LF on every line). A line lying whole in the fed buffer is parsed in place; only
 * the one line a feed boundary splits is copied into the line buffer. A data value is copied once,
 * into the event's data buffer, which is what lets the callback rely on a NUL-terminated string
 * however the stream was split. Limits are checked before anything grows.
 */
#include "sb/sse.h"

#include <string.h>

#define BOM_DONE 3 /* p->bom once the start of the stream has been decided */

static const char utf8_bom[3] = {'\xEF', '\xBB', '\xBF'};

void sb_sse_init(struct sb_sse *p, size_t max_event_bytes, sb_sse_cb cb, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->max = max_event_bytes;
    sb_buf_init(&p->line, max_event_bytes);
    sb_buf_init(&p->data, max_event_bytes);
    sb_buf_init(&p->type, max_event_bytes);
    sb_buf_init(&p->comment, max_event_bytes);
    sb_buf_init(&p->error, max_event_bytes);
}

static void clear_block(struct sb_sse *p)
{
    sb_buf_reset(&p->data);
    sb_buf_reset(&p->type);
    sb_buf_reset(&p->comment);
    sb_buf_reset(&p->error);
    p->has_data = p->has_type = p->has_comment = p->has_error = false;
}

void sb_sse_reset(struct sb_sse *p)
{
    sb_buf_reset(&p->line);
    clear_block(p);
    p->stop = 0;
    p->bom = 0;
    p->after_cr = p->dropped = false;
    p->events = p->comments = p->bytes = 0;
}

void sb_sse_release(struct sb_sse *p)
{
    sb_buf_release(&p->line);
    sb_buf_release(&p->data);
    sb_buf_release(&p->type);
    sb_buf_release(&p->comment);
    sb_buf_release(&p->error);
}

/* Appends with the limit checked first, so that hitting it and running out of memory differ. */
static int buf_add(struct sb_buf *b, const char *s, size_t n)
{
    if (n > b->max - b->len)
        return SB_SSE_E2BIG;
    return sb_buf_add(b, s, n) == 0 ? 0 : SB_SSE_ENOMEM;
}

static int buf_set(struct sb_buf *b, const char *s, size_t n)
{
    sb_buf_reset(b);
    return buf_add(b, s, n);
}

/*
 * A blank line ends the block. The callback's non-zero answer is recorded in p->stop here, which
 * is how sb_sse_feed() tells a requested stop from a parser error.
 */
static int end_block(struct sb_sse *p)
{
    int rc = 0;
    if (p->has_data || p->has_type || p->has_error) {
        struct sb_sse_event ev = {
            .type = p->has_type ? p->type.data : "",
            .type_len = p->has_type ? p->type.len : 0,
            .data = p->has_data ? p->data.data : "",
            .data_len = p->has_data ? p->data.len : 0,
            .has_data = p->has_data,
            .comment = p->has_comment ? p->comment.data : NULL,
            .comment_len = p->has_comment ? p->comment.len : 0,
            .error = p->has_error ? (p->error.data ? p->error.data : "") : NULL,
            .error_len = p->has_error ? p->error.len : 0,
        };
        p->events++;
        if (p->cb)
            rc = p->cb(&ev, p->arg);
        p->stop = rc;
    }
    clear_block(p);
    return rc;
}

/* One complete line, without its terminator; n <= p->max. */
static int process_line(struct sb_sse *p, const char *s, size_t n)
{
    if (n == 0)
        return end_block(p);
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *v = s + n;
    size_t vn = 0;
    if (colon) {
        v = colon + 1;
        vn = n - name_len - 1;
        if (vn > 0 && *v == ' ') {
            v++;
            vn--;
        }
    }
    if (name_len == 0) {
        /* A comment: the harness keeps the last one of the block (Dynamo's error text). */
        p->comments++;
        p->has_comment = true;
        return buf_set(&p->comment, v, vn);
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        if (!p->has_data) {
            p->has_data = true;
            return buf_add(&p->data, v, vn);
        }
        /* Joined form is kept as it grows: '\n' goes before a line, never after the last. */
        if (vn >= p->data.max - p->data.len)
            return SB_SSE_E2BIG;
        if (sb_buf_add(&p->data, "\n", 1) != 0 || sb_buf_add(&p->data, v, vn) != 0)
            return SB_SSE_ENOMEM;
        return 0;
    }
    if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        /* An empty type means "message", the same as no event: field at all. */
        p->has_type = vn > 0;
        return buf_set(&p->type, v, vn);
    }
    if (name_len == 5 && memcmp(s, "error", 5) == 0) {
        /* llama.cpp's in-stream error: `error: {"code":400,"message":...}`. */
        p->has_error = true;
        return buf_set(&p->error, v, vn);
    }
    /* id, retry and other unknown fields carry nothing the harness needs. */
    return 0;
}

/* Offset of the first c in buf[from, len), or len. from < len. */
static inline size_t scan(const char *buf, size_t from, size_t len, char c)
{
    const char *q = memchr(buf + from, c, len - from);
    return q ? (size_t)(q - buf) : len;
}

/* Stops the parser on rc. A parser error always loses input; a requested stop only when bytes of
 * this feed are left unread. */
static int halt(struct sb_sse *p, int rc, bool unread)
{
    if (p->stop != rc || unread)
        p->dropped = true;
    p->stop = rc;
    return rc;
}

int sb_sse_feed(struct sb_sse *p, const char *buf, size_t len)
{
    p->bytes += len;
    if (p->stop) {
        if (len)
            p->dropped = true;
        return p->stop;
    }
    size_t i = 0;
    int rc;
    if (p->bom != BOM_DONE) {
        /* The BOM may itself arrive split; bytes that turn out not to be one are line content. */
        while (i < len && p->bom < 3 && buf[i] == utf8_bom[p->bom]) {
            p->bom++;
            i++;
        }
        if (p->bom < 3) {
            if (i == len)
                return 0;
            if (p->bom > 0 && (rc = buf_add(&p->line, utf8_bom, p->bom)) != 0)
                return halt(p, rc, true);
        }
        p->bom = BOM_DONE;
    }
    if (i < len && p->after_cr) {
        p->after_cr = false;
        if (buf[i] == '\n')
            i++;
    }
    if (i >= len)
        return 0;
    size_t lf = scan(buf, i, len, '\n');
    size_t cr = scan(buf, i, len, '\r');
    while (i < len) {
        if (lf < i)
            lf = scan(buf, i, len, '\n');
        if (cr < i)
            cr = scan(buf, i, len, '\r');
        size_t eol = lf < cr ? lf : cr;
        if (eol == len) {
            rc = buf_add(&p->line, buf + i, len - i);
            return rc ? halt(p, rc, true) : 0;
        }
        size_t n = eol - i;
        if (p->line.len > 0) {
            rc = buf_add(&p->line, buf + i, n);
            if (rc == 0)
                rc = process_line(p, p->line.data, p->line.len);
            sb_buf_reset(&p->line);
        } else {
            rc = n > p->max ? SB_SSE_E2BIG : process_line(p, buf + i, n);
        }
        i = eol + 1;
        if (eol == cr) {
            if (i == len)
                p->after_cr = true;
            else if (buf[i] == '\n')
                i++;
        }
        if (rc != 0)
            return halt(p, rc, i < len);
    }
    return 0;
}

int sb_sse_finish(struct sb_sse *p)
{
    bool discarded = p->dropped || p->line.len > 0 || p->has_data || p->has_type || p->has_error ||
                     (p->bom > 0 && p->bom < BOM_DONE);
    sb_buf_reset(&p->line);
    clear_block(p);
    p->after_cr = false;
    p->dropped = false;
    return discarded ? 1 : 0;
}
