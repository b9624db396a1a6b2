/*
 * A growable byte buffer with a hard size limit (curl's dynbuf idea): growth past `max` fails
 * instead of eating memory, so a hostile peer cannot make us allocate without bound.
 * The buffer always keeps a NUL after the last byte.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stddef.h>

struct sb_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* largest len allowed */
};

/* Initialises an empty buffer that may grow to max bytes. */
void sb_buf_init(struct sb_buf *b, size_t max);
/* Frees the storage and leaves the buffer empty and reusable. */
void sb_buf_release(struct sb_buf *b);
/* Forgets the content, keeps the storage. */
void sb_buf_reset(struct sb_buf *b);
/* Appends bytes; returns 0, or -1 when the limit or memory would be exceeded (buffer unchanged). */
int sb_buf_add(struct sb_buf *b, const void *data, size_t len);
int sb_buf_adds(struct sb_buf *b, const char *s);
int sb_buf_addf(struct sb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string (escaped, no quotes). */
int sb_buf_add_json_escaped(struct sb_buf *b, const char *s, size_t len);
/* Drops the first n bytes. */
void sb_buf_consume(struct sb_buf *b, size_t n);
/* Hands the storage to the caller (free() it); the buffer is left empty. */
char *sb_buf_detach(struct sb_buf *b, size_t *len);
/* Appends the whole file at path to b. Returns 0, or -1 (cannot open or read it, errno kept, or
   over b's limit); what was read before a failure stays appended. */
int sb_buf_add_file(struct sb_buf *b, const char *path);

#endif
