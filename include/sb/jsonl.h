/*
 * JSON Lines files: an append-only sink for writers and a tolerant streaming reader.
 *
 * The sink appends whole lines only. A failed write (disk full, I/O error) is rolled back with
 * ftruncate to the size the file had before that call, so the file never ends in a torn line and
 * everything written before stays; the sink then remembers the failure and refuses later writes.
 * Writers on the hot path collect lines in a per-thread struct sb_jsonl_batch, which takes the
 * sink's lock once per 64 KiB or once a second rather than once per line.
 *
 * The reader streams a file in 1 MiB reads and tolerates what a crashed or full-disk writer
 * leaves behind: blank lines are skipped, lines the caller cannot parse are counted by line
 * number, and a last line without its '\n' (torn) is reported and never delivered.
 */
#ifndef SB_JSONL_H
#define SB_JSONL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

#define SB_JSONL_PATH_MAX 4096

struct sb_jsonl_sink {
    int fd;                       /* -1 once closed */
    char path[SB_JSONL_PATH_MAX]; /* for error messages */
    pthread_mutex_t lock;         /* held only around the write itself */
    bool failed;                  /* a write failed: later writes fail at once */
    int failed_errno;             /* why, for the fail-fast message */
    uint64_t lines_written;       /* whole lines in the file from this sink */
    uint64_t bytes_written;
};

/*
 * Opens path for appending (O_APPEND, created 0644, close-on-exec) and initialises s. On failure
 * the message names the path and s needs no close.
 */
int sb_jsonl_open(struct sb_jsonl_sink *s, const char *path, struct sb_err *err);

/*
 * Appends data[0..len): one or more whole lines, the last byte '\n' (anything else is refused and
 * nothing is written; len 0 is a no-op). Thread-safe. Short writes and EINTR are retried; when a
 * write fails the file is truncated back to its size before this call, the sink is marked failed
 * and the message reads "cannot write '<path>': <strerror>". Returns 0 or -1.
 */
int sb_jsonl_write_lines(struct sb_jsonl_sink *s, const char *data, size_t len, struct sb_err *err);

/*
 * fsyncs and closes the file and destroys the lock; s must not be used by any thread afterwards.
 * Returns -1 when fsync or close fails, or when an earlier write failed (so a caller that only
 * checks close still learns that records were lost). fsync's EINVAL/EROFS (files such as
 * /dev/null that cannot be synced) are not errors. Closing a closed sink is a no-op.
 */
int sb_jsonl_close(struct sb_jsonl_sink *s, struct sb_err *err);

#define SB_JSONL_BATCH_BYTES (64u * 1024u) /* flush once this much is pending */
#define SB_JSONL_BATCH_NS    1000000000ull /* ... or once this long passed since the last */
#define SB_JSONL_BATCH_MAX   (16u << 20)   /* most bytes a batch holds before writing around */

/*
 * One thread's pending lines for one sink; the thread owns it, so adding takes no lock. The
 * fields may be set directly (sink, buf via sb_buf_init, last_flush_ns) or with
 * sb_jsonl_batch_init().
 */
struct sb_jsonl_batch {
    struct sb_jsonl_sink *sink; /* borrowed; must outlive the batch's last flush */
    struct sb_buf buf;
    uint64_t last_flush_ns; /* CLOCK_MONOTONIC of the last flush (or of init) */
};

/* Starts an empty batch for sink; now_ns is the caller's CLOCK_MONOTONIC. */
void sb_jsonl_batch_init(struct sb_jsonl_batch *b, struct sb_jsonl_sink *sink, uint64_t now_ns);

/*
 * Adds one whole line (len > 0, ending in '\n'; otherwise refused). Flushes through the sink when
 * the batch then holds >= SB_JSONL_BATCH_BYTES or now_ns - last_flush_ns >= SB_JSONL_BATCH_NS.
 * now_ns is passed in (no clock is read here). A line that does not fit the batch's buffer is
 * written after flushing what is pending. Returns 0, or -1 when a flush failed.
 */
int sb_jsonl_batch_add(struct sb_jsonl_batch *b, const char *line, size_t len, uint64_t now_ns,
                       struct sb_err *err);

/*
 * Writes what is pending (if anything) and sets last_flush_ns = now_ns. The pending lines are
 * dropped whether or not the write succeeded: a failed sink refuses every later write anyway.
 */
int sb_jsonl_batch_flush(struct sb_jsonl_batch *b, uint64_t now_ns, struct sb_err *err);

/* Frees the buffer without writing; flush first to keep the lines. */
void sb_jsonl_batch_release(struct sb_jsonl_batch *b);

#define SB_JSONL_READ_CHUNK (1u << 20)  /* bytes per read() */
#define SB_JSONL_LINE_MAX   (16u << 20) /* longer lines are counted bad and skipped */
#define SB_JSONL_BAD_KEEP   8

struct sb_jsonl_stats {
    long lines;                         /* non-blank lines the callback accepted (returned 0) */
    long blank_lines;                   /* empty or only spaces, tabs and '\r' */
    long bad_lines;                     /* marked bad by the callback, or too long */
    long bad_lineno[SB_JSONL_BAD_KEEP]; /* the first bad line numbers (1-based) */
    bool torn_last;                     /* the file did not end in '\n' */
    long torn_lineno;                   /* the torn line's number (not delivered) */
    uint64_t bytes;                     /* bytes read */
};

/*
 * Streams path line by line (1 MiB reads; a line may span reads), calling on_line for each
 * non-blank line and filling st (may be NULL, else reset first). on_line gets the line without its
 * '\n' (and without one trailing '\r'), NUL-terminated in the reader's own buffer, which it may
 * modify; the pointer is valid only during the call. lineno is 1-based. on_line returns 0 to go
 * on, 1 to count the line bad, < 0 to stop reading. A torn last line with non-blank content sets
 * st->torn_last/torn_lineno and is not delivered; a line over SB_JSONL_LINE_MAX is counted bad
 * and skipped. Returns 0; -1 when the file cannot be opened or read (the message names it); or
 * the callback's negative value, with err filled by this function only when the callback left
 * err->code at 0 (pass err through arg to report your own message).
 */
int sb_jsonl_read(const char *path, int (*on_line)(char *line, size_t len, long lineno, void *arg),
                  void *arg, struct sb_jsonl_stats *st, struct sb_err *err);

#endif
