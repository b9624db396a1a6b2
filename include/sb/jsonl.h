/*
 * JSON Lines files. The sink appends whole lines only: a failed write (disk full, I/O error) is
 * rolled back with ftruncate so the file never ends in a torn line, and everything written before
 * stays. Per-thread batches keep the lock off the hot path and flush at least once a second.
 * The reader streams a file and tolerates blank, bad and torn lines, counting each by line number.
 */
#ifndef SB_JSONL_H
#define SB_JSONL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

struct sb_jsonl_sink {
    int fd;
    char path[4096];
    pthread_mutex_t lock;
    bool failed;            /* a write failed: later writes fail at once */
    uint64_t lines_written; /* lines as counted by '\n' */
    uint64_t bytes_written;
};

/* Opens path for appending (created 0644). The error names the path. */
int sb_jsonl_open(struct sb_jsonl_sink *s, const char *path, struct sb_err *err);

/* Writes one or more whole lines (len > 0, last byte '\n'). Thread-safe. */
int sb_jsonl_write_lines(struct sb_jsonl_sink *s, const char *data, size_t len, struct sb_err *err);

/* fsync and close. */
int sb_jsonl_close(struct sb_jsonl_sink *s, struct sb_err *err);

#define SB_JSONL_BATCH_BYTES (64u * 1024u)
#define SB_JSONL_BATCH_NS    1000000000ull

/* A thread's pending lines for one sink. */
struct sb_jsonl_batch {
    struct sb_jsonl_sink *sink;
    struct sb_buf buf;
    uint64_t last_flush_ns;
};

void sb_jsonl_batch_init(struct sb_jsonl_batch *b, struct sb_jsonl_sink *sink, uint64_t now_ns);
/* Adds one whole line; flushes when >= 64 KiB are pending or >= 1 s passed since the last flush. */
int sb_jsonl_batch_add(struct sb_jsonl_batch *b, const char *line, size_t len, uint64_t now_ns,
                       struct sb_err *err);
int sb_jsonl_batch_flush(struct sb_jsonl_batch *b, uint64_t now_ns, struct sb_err *err);
void sb_jsonl_batch_release(struct sb_jsonl_batch *b);

struct sb_jsonl_stats {
    long lines; /* non-blank lines delivered */
    long blank_lines;
    long bad_lines;     /* lines the callback marked bad */
    long bad_lineno[8]; /* the first few bad line numbers (1-based) */
    bool torn_last;     /* the file did not end in '\n': its last line was not delivered */
    long torn_lineno;
};

/*
 * Streams path line by line. on_line gets each non-blank line NUL-terminated in a buffer valid
 * during the call (lineno 1-based) and returns 0 to go on, 1 to count the line bad, < 0 to abort
 * (returned). A line over 16 MiB counts as bad. Returns 0, -1 when the file cannot be read.
 */
int sb_jsonl_read(const char *path, int (*on_line)(char *line, size_t len, long lineno, void *arg),
                  void *arg, struct sb_jsonl_stats *st, struct sb_err *err);

#endif
