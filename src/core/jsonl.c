/* JSON Lines sink and reader (see sb/jsonl.h). */
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
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s->fd < 0)
        return sb_err_errno(err, errno, "cannot open '%s'", path);
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

int sb_jsonl_write_lines(struct sb_jsonl_sink *s, const char *data, size_t len, struct sb_err *err)
{
    if (len == 0)
        return 0;
    if (data[len - 1] != '\n')
        return sb_err_set(err, "refusing to write a partial line to '%s'", s->path);
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->failed) {
        rc = sb_err_set(err, "cannot write '%s': an earlier write failed", s->path);
        goto out;
    }
    off_t before = lseek(s->fd, 0, SEEK_END);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(s->fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            /* Roll back the part of this batch that made it, so no line is torn. */
            if (before >= 0 && ftruncate(s->fd, before) != 0) {
                /* nothing more can be done; the reader tolerates a torn last line */
            }
            s->failed = true;
            rc = sb_err_errno(err, e, "cannot write '%s'", s->path);
            goto out;
        }
        done += (size_t)w;
    }
    s->bytes_written += len;
    for (size_t i = 0; i < len; i++)
        s->lines_written += data[i] == '\n';
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sb_jsonl_close(struct sb_jsonl_sink *s, struct sb_err *err)
{
    if (s->fd < 0)
        return 0;
    int rc = 0;
    if (fsync(s->fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = sb_err_errno(err, errno, "cannot flush '%s'", s->path);
    if (close(s->fd) != 0 && rc == 0)
        rc = sb_err_errno(err, errno, "cannot close '%s'", s->path);
    s->fd = -1;
    pthread_mutex_destroy(&s->lock);
    return rc;
}

void sb_jsonl_batch_init(struct sb_jsonl_batch *b, struct sb_jsonl_sink *sink, uint64_t now_ns)
{
    b->sink = sink;
    sb_buf_init(&b->buf, 1u << 26);
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
        return sb_err_set(err, "a JSONL line must end in a newline");
    if (sb_buf_add(&b->buf, line, len) != 0) {
        if (sb_jsonl_batch_flush(b, now_ns, err) != 0)
            return -1;
        return sb_jsonl_write_lines(b->sink, line, len, err);
    }
    if (b->buf.len >= SB_JSONL_BATCH_BYTES || now_ns - b->last_flush_ns >= SB_JSONL_BATCH_NS)
        return sb_jsonl_batch_flush(b, now_ns, err);
    return 0;
}

void sb_jsonl_batch_release(struct sb_jsonl_batch *b)
{
    sb_buf_release(&b->buf);
}

#define READ_CHUNK (1u << 20)
#define MAX_LINE   (16u << 20)

int sb_jsonl_read(const char *path, int (*on_line)(char *line, size_t len, long lineno, void *arg),
                  void *arg, struct sb_jsonl_stats *st, struct sb_err *err)
{
    memset(st, 0, sizeof(*st));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sb_err_errno(err, errno, "cannot open '%s'", path);
    char *buf = malloc(READ_CHUNK);
    struct sb_buf carry;
    sb_buf_init(&carry, MAX_LINE);
    long lineno = 0;
    bool skipping = false; /* inside an over-long line */
    int rc = 0;
    if (!buf) {
        close(fd);
        return sb_err_set(err, "out of memory");
    }
    for (;;) {
        ssize_t r = read(fd, buf, READ_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = sb_err_errno(err, errno, "cannot read '%s'", path);
            goto out;
        }
        if (r == 0)
            break;
        size_t pos = 0;
        while (pos < (size_t)r) {
            char *nl = memchr(buf + pos, '\n', (size_t)r - pos);
            size_t seg = nl ? (size_t)(nl - (buf + pos)) : (size_t)r - pos;
            if (!nl) {
                if (!skipping && sb_buf_add(&carry, buf + pos, seg) != 0) {
                    skipping = true;
                    sb_buf_reset(&carry);
                }
                break;
            }
            lineno++;
            char *line;
            size_t len;
            if (skipping) {
                skipping = false;
                sb_buf_reset(&carry);
                st->bad_lines++;
                if (st->bad_lines <= 8)
                    st->bad_lineno[st->bad_lines - 1] = lineno;
                pos += seg + 1;
                continue;
            }
            if (carry.len) {
                if (sb_buf_add(&carry, buf + pos, seg) != 0) {
                    sb_buf_reset(&carry);
                    st->bad_lines++;
                    if (st->bad_lines <= 8)
                        st->bad_lineno[st->bad_lines - 1] = lineno;
                    pos += seg + 1;
                    continue;
                }
                line = carry.data;
                len = carry.len;
            } else {
                line = buf + pos;
                len = seg;
                line[len] = '\0'; /* overwrites the '\n' */
            }
            while (len > 0 && line[len - 1] == '\r')
                line[--len] = '\0';
            size_t k = 0;
            while (k < len && (line[k] == ' ' || line[k] == '\t'))
                k++;
            if (k == len) {
                st->blank_lines++;
            } else {
                int v = on_line(line, len, lineno, arg);
                if (v < 0) {
                    rc = v;
                    goto out;
                }
                if (v == 1) {
                    st->bad_lines++;
                    if (st->bad_lines <= 8)
                        st->bad_lineno[st->bad_lines - 1] = lineno;
                } else {
                    st->lines++;
                }
            }
            sb_buf_reset(&carry);
            pos += seg + 1;
        }
    }
    if (carry.len > 0 || skipping) {
        size_t k = 0;
        while (k < carry.len &&
               (carry.data[k] == ' ' || carry.data[k] == '\t' || carry.data[k] == '\r'))
            k++;
        if (k < carry.len || skipping) {
            st->torn_last = true;
            st->torn_lineno = lineno + 1;
        }
    }
out:
    free(buf);
    sb_buf_release(&carry);
    close(fd);
    return rc;
}
