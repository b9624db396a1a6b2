/*
 * The SSE push parser (see sb/sse.h). Lines are found with memchr; a line that is whole inside
 * the fed buffer is processed in place, and only a line split across feeds is copied.
 */
#include "sb/sse.h"

#include <string.h>

void sb_sse_init(struct sb_sse *p, size_t max_event_bytes, sb_sse_cb cb, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->max = max_event_bytes;
    sb_buf_init(&p->line, max_event_bytes);
    sb_buf_init(&p->data, max_event_bytes);
    sb_buf_init(&p->type, 256);
    sb_buf_init(&p->comment, 1024);
}

static void clear_event(struct sb_sse *p)
{
    sb_buf_reset(&p->data);
    sb_buf_reset(&p->type);
    sb_buf_reset(&p->comment);
    p->has_data = p->has_type = p->has_comment = false;
}

void sb_sse_reset(struct sb_sse *p)
{
    sb_buf_reset(&p->line);
    clear_event(p);
    p->after_cr = false;
    p->bom_checked = false;
    p->bom_len = 0;
    p->events = p->comments = p->bytes = 0;
}

void sb_sse_release(struct sb_sse *p)
{
    sb_buf_release(&p->line);
    sb_buf_release(&p->data);
    sb_buf_release(&p->type);
    sb_buf_release(&p->comment);
}

static int dispatch(struct sb_sse *p)
{
    if (!p->has_data && !p->has_type) {
        clear_event(p);
        return 0;
    }
    struct sb_sse_event ev = {
        .type = p->type.data ? p->type.data : "",
        .type_len = p->type.len,
        .data = p->data.data ? p->data.data : "",
        .data_len = p->data.len,
        .has_data = p->has_data,
        .comment = p->has_comment ? (p->comment.data ? p->comment.data : "") : NULL,
        .comment_len = p->has_comment ? p->comment.len : 0,
    };
    /* data lines were appended with a trailing '\n': drop the last one */
    if (ev.has_data && ev.data_len > 0)
        ev.data_len--;
    p->events++;
    int rc = p->cb ? p->cb(&ev, p->arg) : 0;
    clear_event(p);
    return rc;
}

/* One complete line (without its terminator). */
static int process_line(struct sb_sse *p, const char *s, size_t len)
{
    if (len == 0)
        return dispatch(p);
    if (s[0] == ':') {
        p->comments++;
        size_t off = (len > 1 && s[1] == ' ') ? 2 : 1;
        sb_buf_reset(&p->comment);
        if (sb_buf_add(&p->comment, s + off, len - off) != 0)
            sb_buf_add(&p->comment, s + off, 1023 > len - off ? len - off : 1023);
        p->has_comment = true;
        return 0;
    }
    const char *colon = memchr(s, ':', len);
    size_t nl = colon ? (size_t)(colon - s) : len;
    const char *v = colon ? colon + 1 : s + len;
    size_t vl = colon ? len - nl - 1 : 0;
    if (vl > 0 && v[0] == ' ') {
        v++;
        vl--;
    }
    if (nl == 4 && memcmp(s, "data", 4) == 0) {
        if (sb_buf_add(&p->data, v, vl) != 0 || sb_buf_add(&p->data, "\n", 1) != 0)
            return SB_SSE_E2BIG;
        p->has_data = true;
    } else if (nl == 5 && memcmp(s, "event", 5) == 0) {
        sb_buf_reset(&p->type);
        if (sb_buf_add(&p->type, v, vl) != 0)
            return SB_SSE_E2BIG;
        p->has_type = vl > 0;
    }
    /* id, retry and unknown fields carry nothing the harness needs. */
    return 0;
}

int sb_sse_feed(struct sb_sse *p, const char *data, size_t len)
{
    p->bytes += len;
    size_t i = 0;
    if (!p->bom_checked) {
        /* A UTF-8 BOM at the very start is skipped; it may arrive split across feeds. */
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        while (i < len && p->bom_len < 3 && (unsigned char)data[i] == bom[p->bom_len]) {
            p->bom_len++;
            i++;
        }
        if (p->bom_len == 3) {
            p->bom_checked = true;
        } else if (i < len) {
            p->bom_checked = true; /* not a BOM: the bytes matched so far are content */
            if (p->bom_len && sb_buf_add(&p->line, bom, p->bom_len) != 0)
                return SB_SSE_E2BIG;
        } else {
            return 0;
        }
    }
    if (p->after_cr && i < len) {
        p->after_cr = false;
        if (data[i] == '\n')
            i++;
    }
    while (i < len) {
        const char *start = data + i;
        size_t rest = len - i;
        const char *nl = memchr(start, '\n', rest);
        const char *cr = memchr(start, '\r', nl ? (size_t)(nl - start) : rest);
        const char *end = cr ? cr : nl;
        if (!end) {
            if (sb_buf_add(&p->line, start, rest) != 0)
                return SB_SSE_E2BIG;
            return 0;
        }
        size_t ll = (size_t)(end - start);
        int rc;
        if (p->line.len) {
            if (sb_buf_add(&p->line, start, ll) != 0)
                return SB_SSE_E2BIG;
            rc = process_line(p, p->line.data, p->line.len);
            sb_buf_reset(&p->line);
        } else {
            if (ll > p->max)
                return SB_SSE_E2BIG;
            rc = process_line(p, start, ll);
        }
        i += ll + 1;
        if (end == cr) {
            if (i < len) {
                if (data[i] == '\n')
                    i++;
            } else {
                p->after_cr = true;
            }
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sb_sse_finish(struct sb_sse *p)
{
    int discarded = p->line.len > 0 || p->has_data || p->has_type;
    sb_buf_reset(&p->line);
    clear_event(p);
    p->after_cr = false;
    return discarded;
}
