/*
 * Server-Sent Events push parser (WHATWG rules plus the quirks real LLM servers have): feed it
 * bytes as they arrive, split anywhere, and it calls back once per dispatched event. It does no
 * I/O and its buffers are bounded by max_event_bytes.
 *
 * Deliberate deviation: an event whose type was set but which carried no data line is still
 * dispatched (has_data false), because Dynamo reports mid-stream errors as `event: error` followed
 * by a `:` comment and no `data:` line, which a strict parser would silently drop.
 */
#ifndef SB_SSE_H
#define SB_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"

#define SB_SSE_E2BIG (-2) /* a line or an event's data exceeded max_event_bytes */

struct sb_sse_event {
    const char *type; /* "" (type_len 0) when no event: field was seen */
    size_t type_len;
    const char *data; /* data lines joined with '\n', no trailing '\n'; valid during the call */
    size_t data_len;
    bool has_data;       /* at least one data: field was seen */
    const char *comment; /* the last comment line since the previous dispatch (text after ':'
                            minus one leading space), or NULL */
    size_t comment_len;
};

/* Returns 0 to continue; non-zero stops the parser and sb_sse_feed() returns it. */
typedef int (*sb_sse_cb)(const struct sb_sse_event *ev, void *arg);

struct sb_sse {
    sb_sse_cb cb;
    void *arg;
    size_t max;
    struct sb_buf line; /* a line being assembled across feeds */
    struct sb_buf data; /* the event's data so far */
    struct sb_buf type;
    struct sb_buf comment;
    bool has_data, has_type, has_comment;
    bool after_cr; /* the previous feed ended in CR: a leading LF belongs to it */
    bool bom_checked;
    unsigned char bom_len; /* BOM bytes matched so far at the start of the stream */
    uint64_t events, comments, bytes;
};

void sb_sse_init(struct sb_sse *p, size_t max_event_bytes, sb_sse_cb cb, void *arg);

/* Feeds bytes. Returns 0, SB_SSE_E2BIG, or the callback's non-zero return. */
int sb_sse_feed(struct sb_sse *p, const char *data, size_t len);

/*
 * Ends the stream: a partial event (fields without the blank line) or an unterminated line is
 * discarded, as WHATWG says. Returns 1 when something was discarded, else 0.
 */
int sb_sse_finish(struct sb_sse *p);

/* Ready for a new stream; keeps the memory. */
void sb_sse_reset(struct sb_sse *p);
void sb_sse_release(struct sb_sse *p);

#endif
