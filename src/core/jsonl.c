/*
 * JSON Lines sink and reader (see sb/jsonl.h). The sink's one promise is that the file only ever
 * holds whole lines: it notes the file size under its lock before each write and truncates back
 * to it when the write fails part-way, so a full disk costs the lines that did not fit but never
 * leaves half a record for `analyze` to trip over. The reader is the other half of that bargain:
 * it streams files of any size in fixed reads and reports, rather than fails on, the blank, bad
 * and torn lines that crashed or killed writers leave behind.
 */
#include "sb/jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sb_jsonl_open(struct sb_jsonl_sink *s, const char *path, struct sb_err *err)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (strlen(path) >= sizeof(s->path))
        return sb_err_set(err, "cannot open '%s': path too long", path);
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0)
        return sb_err_errno(err, errno, "cannot open '%s'", path);
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

static uint64_t count_newlines(const char *p, size_t len)
{
    uint64_t n = 0;
    const char *end = p + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* Writes all of data; returns 0, or the errno of the failure (*done bytes made it). */
static int write_all(int fd, const char *data, size_t len, size_t *done)
{
    *done = 0;
    while (*done < len) {
        ssize_t w = write(fd, data + *done, len - *done);
        if (w > 0) {
            *done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        return w < 0 ? errno : EIO;
    }
    return 0;
}

int sb_jsonl_write_lines(struct sb_jsonl_sink *s, const char *data, size_t len, struct sb_err *err)
{
    if (len == 0)
        return 0;
    if (data[len - 1] != '\n')
        return sb_err_set(err, "cannot write '%s': refusing a partial line (no final newline)",
                          s->path);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->failed) {
        rc = sb_err_errno(err, s->failed_errno, "cannot write '%s' (an earlier write failed)",
                          s->path);
        goto out;
    }
    /* O_APPEND writes land at the end, so the end is where a rollback goes back to. Not seekable
     * (a pipe): -1, and a failure cannot be rolled back. */
    off_t before = lseek(s->fd, 0, SEEK_END);
    size_t done;
    int e = write_all(s->fd, data, len, &done);
    if (e == 0) {
        s->bytes_written += len;
        s->lines_written += count_newlines(data, len);
        goto out;
    }
    s->failed = true;
    s->failed_errno = e;
    if (before < 0 || (done > 0 && ftruncate(s->fd, before) != 0)) {
        int te = before < 0 ? ESPIPE : errno;
        rc = sb_err_set(err, "cannot write '%s': %s (and cannot remove the partial line: %s)",
                        s->path, strerror(e), strerror(te));
        goto out;
    }
    /* The batch did not fit: save what still fits, one whole line at a time, so a full disk
     * loses as few measured lines as possible and still never a torn one. */
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t ll = (size_t)(nl - (data + pos)) + 1;
        off_t at = lseek(s->fd, 0, SEEK_END);
        if (write_all(s->fd, data + pos, ll, &done) != 0) {
            if (done > 0 && ftruncate(s->fd, at) != 0)
                break;
            break;
        }
        s->bytes_written += ll;
        s->lines_written++;
        pos += ll;
    }
    rc = sb_err_errno(err, e, "cannot write '%s'", s->path);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sb_jsonl_close(struct sb_jsonl_sink *s, struct sb_err *err)
{
    if (s->fd < 0)
        return 0;
    int rc = 0;
    if (s->failed)
        rc = sb_err_errno(err, s->failed_errno,
                          "cannot write '%s' (lines after the failure were lost)", s->path);
    if (fsync(s->fd) != 0 && errno != EINVAL && errno != EROFS && rc == 0)
        rc = sb_err_errno(err, errno, "cannot sync '%s'", s->path);
    if (close(s->fd) != 0 && rc == 0)
        rc = sb_err_errno(err, errno, "cannot close '%s'", s->path);
    s->fd = -1;
    pthread_mutex_destroy(&s->lock);
    return rc;
}

void sb_jsonl_batch_init(struct sb_jsonl_batch *b, struct sb_jsonl_sink *sink, uint64_t now_ns)
{
    b->sink = sink;
    sb_buf_init(&b->buf, SB_JSONL_BATCH_MAX);
    b->last_flush_ns = now_ns;
}

int sb_jsonl_batch_flush(struct sb_jsonl_batch *b, uint64_t now_ns, struct sb_err *err)
{
    b->last_flush_ns = now_ns;
    if (b->buf.len == 0)
        return 0;
    int rc = sb_jsonl_write_lines(b->sink, b->buf.data, b->buf.len, err);
    sb_buf_reset(&b->buf);
    return rc;
}

int sb_jsonl_batch_add(struct sb_jsonl_batch *b, const char *line, size_t len, uint64_t now_ns,
                       struct sb_err *err)
{
    if (len == 0 || line[len - 1] != '\n')
        return sb_err_set(err, "cannot write '%s': refusing a partial line (no final newline)",
                          b->sink->path);
    if (sb_buf_add(&b->buf, line, len) != 0) {
        /* Over the batch limit (or out of memory): keep the order, write around the buffer. */
        if (sb_jsonl_batch_flush(b, now_ns, err) != 0)
            return -1;
        return sb_jsonl_write_lines(b->sink, line, len, err);
    }
    if (b->buf.len >= SB_JSONL_BATCH_BYTES ||
        (now_ns >= b->last_flush_ns && now_ns - b->last_flush_ns >= SB_JSONL_BATCH_NS))
        return sb_jsonl_batch_flush(b, now_ns, err);
    return 0;
}

void sb_jsonl_batch_release(struct sb_jsonl_batch *b)
{
    sb_buf_release(&b->buf);
}

/* ---- reader ---- */

static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

static void mark_bad(struct sb_jsonl_stats *st, long lineno)
{
    if (st->bad_lines < SB_JSONL_BAD_KEEP)
        st->bad_lineno[st->bad_lines] = lineno;
    st->bad_lines++;
}

struct reader {
    const char *path;
    int (*on_line)(char *line, size_t len, long lineno, void *arg);
    void *arg;
    struct sb_jsonl_stats *st;
    struct sb_err *err;
};

/* One complete line, NUL-terminated at line[len]. Returns 0 or the callback's negative value. */
static int deliver(struct reader *rd, char *line, size_t len, long lineno)
{
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (is_blank(line, len)) {
        rd->st->blank_lines++;
        return 0;
    }
    int v = rd->on_line(line, len, lineno, rd->arg);
    if (v < 0) {
        if (rd->err && rd->err->code == 0)
            sb_err_set(rd->err, "reading '%s' stopped at line %ld", rd->path, lineno);
        return v;
    }
    if (v > 0)
        mark_bad(rd->st, lineno);
    else
        rd->st->lines++;
    return 0;
}

int sb_jsonl_read(const char *path, int (*on_line)(char *line, size_t len, long lineno, void *arg),
                  void *arg, struct sb_jsonl_stats *st, struct sb_err *err)
{
    struct sb_jsonl_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    sb_err_clear(err);
    struct reader rd = {path, on_line, arg, st, err};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sb_err_errno(err, errno, "cannot open '%s'", path);
    char *buf = malloc(SB_JSONL_READ_CHUNK);
    if (!buf) {
        close(fd);
        return sb_err_set(err, "cannot read '%s': out of memory", path);
    }
    /* The start of a line that spans reads; `skipping` while inside an over-long line. */
    struct sb_buf carry;
    sb_buf_init(&carry, SB_JSONL_LINE_MAX);
    bool skipping = false;
    long lineno = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, SB_JSONL_READ_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = sb_err_errno(err, errno, "cannot read '%s'", path);
            goto out;
        }
        if (r == 0)
            break;
        st->bytes += (uint64_t)r;
        size_t n = (size_t)r, pos = 0;
        while (pos < n) {
            char *nl = memchr(buf + pos, '\n', n - pos);
            size_t seg = nl ? (size_t)(nl - (buf + pos)) : n - pos;
            bool too_long = skipping || carry.len + seg > SB_JSONL_LINE_MAX;
            if (!nl) {
                if (too_long) {
                    skipping = true;
                    sb_buf_reset(&carry);
                } else if (sb_buf_add(&carry, buf + pos, seg) != 0) {
                    rc = sb_err_set(err, "cannot read '%s': out of memory", path);
                    goto out;
                }
                break;
            }
            lineno++;
            if (too_long) {
                mark_bad(st, lineno);
                skipping = false;
                sb_buf_reset(&carry);
            } else if (carry.len > 0) {
                if (sb_buf_add(&carry, buf + pos, seg) != 0) {
                    rc = sb_err_set(err, "cannot read '%s': out of memory", path);
                    goto out;
                }
                rc = deliver(&rd, carry.data, carry.len, lineno);
                sb_buf_reset(&carry);
            } else {
                buf[pos + seg] = '\0'; /* over the '\n' */
                rc = deliver(&rd, buf + pos, seg, lineno);
            }
            if (rc < 0)
                goto out;
            pos += seg + 1;
        }
    }
    if (skipping || (carry.len > 0 && !is_blank(carry.data, carry.len))) {
        st->torn_last = true;
        st->torn_lineno = lineno + 1;
    } else if (carry.len > 0) {
        st->blank_lines++;
    }
out:
    free(buf);
    sb_buf_release(&carry);
    close(fd);
    return rc;
}
