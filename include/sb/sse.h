/*
 * Server-Sent Events push parser (WHATWG rules plus the quirks real LLM servers have). The load
 * generator feeds it the response body as it arrives, split at any byte, and it calls back once per
 * dispatched event. It does no I/O, never reads outside the bytes it is given, and its memory is
 * bounded by max_event_bytes: a longer line, or an event whose data would grow longer, stops it
 * with SB_SSE_E2BIG instead of growing.
 *
 * Rules: lines end in CRLF, LF or CR (a CR ending one feed and an LF starting the next are one line
 * end); a UTF-8 BOM at the very start of the stream is skipped; a blank line ends an event block;
 * a line starting with ':' is a comment; `name:value` splits at the first colon and drops one
 * space after it, a line without a colon is a name with an empty value; `data` lines are joined
 * with '\n', `event` sets the type, `id`, `retry` and unknown names are accepted and ignored.
 * Values are passed through unchanged otherwise: TensorRT-LLM's `data: {json} ` keeps its trailing
 * space, and `data: [DONE]` is ordinary data here.
 *
 * Deliberate deviation from WHATWG: an event block that set a non-empty type but carried no data
 * line is still dispatched (has_data false), because Dynamo reports a mid-stream error as
 * `event: error` plus a `:` comment and no `data:` line, which a strict parser silently drops.
 * The block's last comment is handed over with every event for that reason. Likewise a field
 * named `error` is not dropped as an unknown field: llama.cpp reports an error inside a 200 stream
 * as `error: {json}` followed by a blank line (cpp-httplib's server_sent_event(sink, "error",
 * ...)), with no data line and no event type, so a block that carried an `error` field is
 * dispatched and its value handed over.
 */
#ifndef SB_SSE_H
#define SB_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"

#define SB_SSE_E2BIG  (-2) /* a line or an event's data exceeded max_event_bytes */
#define SB_SSE_ENOMEM (-3) /* an allocation failed (below the limit) */

/*
 * One dispatched event. Every pointer is borrowed from the parser and valid only until the
 * callback returns; data, type and comment are NUL-terminated at their length (the bytes
 * themselves may contain NULs if the server sent them).
 */
struct sb_sse_event {
    const char *type; /* "" (type_len 0) when the block had no non-empty event: field */
    size_t type_len;
    const char *data; /* data lines joined with '\n', no trailing '\n'; "" when has_data false */
    size_t data_len;
    bool has_data;       /* at least one data: field was seen (data_len may still be 0) */
    const char *comment; /* the block's last comment line (text after ':' minus one leading
                            space), or NULL when the block had none; a block runs from the
                            previous blank line, so a keep-alive `: ping` block never leaks into
                            the next event */
    size_t comment_len;
    const char *error; /* the block's last `error:` field value (llama.cpp's in-stream error), or
                          NULL when the block had none */
    size_t error_len;
};

/*
 * Called once per dispatched event. Returns 0 to continue; any other value stops the parser and
 * sb_sse_feed() returns it (use positive values so they cannot be mistaken for SB_SSE_E2BIG).
 */
typedef int (*sb_sse_cb)(const struct sb_sse_event *ev, void *arg);

/*
 * Parser state. The counters are for the caller to read; everything below them is internal.
 * One parser per stream; it is not thread-safe, and no two streams may share one concurrently.
 */
struct sb_sse {
    uint64_t events;   /* events dispatched to the callback since init/reset */
    uint64_t comments; /* comment lines seen since init/reset */
    uint64_t bytes;    /* bytes passed to sb_sse_feed() since init/reset */

    sb_sse_cb cb;
    void *arg;
    size_t max;            /* max_event_bytes */
    struct sb_buf line;    /* a line split across feeds, bounded by max */
    struct sb_buf data;    /* this block's data, joined form (no trailing '\n'), bounded by max */
    struct sb_buf type;    /* this block's event type */
    struct sb_buf comment; /* this block's last comment */
    struct sb_buf error;   /* this block's last error: field */
    int stop;              /* non-zero once stopped: sb_sse_feed() returns it until reset */
    unsigned char bom;     /* BOM bytes matched at stream start (0-2); 3 once decided */
    bool has_data, has_type, has_comment, has_error;
    bool after_cr; /* the last feed ended in CR: an LF starting the next one belongs to it */
    bool dropped;  /* input was thrown away by a stop; sb_sse_finish() reports it */
};

/*
 * Initialises p for a new stream: events are passed to cb(ev, arg) (cb may be NULL: events are
 * then only counted). max_event_bytes bounds the length of one line and of one event's joined
 * data. Allocates nothing yet.
 */
void sb_sse_init(struct sb_sse *p, size_t max_event_bytes, sb_sse_cb cb, void *arg);

/*
 * Parses len bytes (len 0 is fine), calling the callback for each event completed inside them.
 * Returns 0; SB_SSE_E2BIG when a line or an event's data exceeds max_event_bytes (nothing grows
 * past the limit); SB_SSE_ENOMEM; or the callback's non-zero return. Any non-zero return stops the
 * parser: the rest of this feed is dropped and later feeds return the same value at once, until
 * sb_sse_reset(). data is only read during the call.
 */
int sb_sse_feed(struct sb_sse *p, const char *data, size_t len);

/*
 * Ends the stream. A partial event (data or a type without the closing blank line), an
 * unterminated line, or input dropped by a stop is discarded, as WHATWG says; returns 1 when
 * something was discarded, else 0. A trailing comment or id without a blank line is not an event
 * and does not count. Call sb_sse_reset() before feeding another stream.
 */
int sb_sse_finish(struct sb_sse *p);

/* Makes p ready for a new stream (counters zeroed, stop cleared); keeps the memory. */
void sb_sse_reset(struct sb_sse *p);

/* Frees the memory. p may then be dropped, or sb_sse_reset() and fed again (it reallocates). */
void sb_sse_release(struct sb_sse *p);

#endif
