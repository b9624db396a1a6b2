/* Bounded growable buffers: every append checks the limit before it allocates. */
#include "sb/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

void sb_buf_init(struct sb_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void sb_buf_release(struct sb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void sb_buf_reset(struct sb_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int grow(struct sb_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra || b->len + extra == SIZE_MAX)
        return -1; /* over the limit, or no room for the NUL */
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max < SIZE_MAX && cap > b->max + 1) /* max + 1 would wrap to 0 at SIZE_MAX */
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sb_buf_add(struct sb_buf *b, const void *data, size_t len)
{
    if (grow(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int sb_buf_adds(struct sb_buf *b, const char *s)
{
    return sb_buf_add(b, s, strlen(s));
}

int sb_buf_addf(struct sb_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return sb_buf_add(b, small, (size_t)n);
    if (grow(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int sb_buf_add_json_escaped(struct sb_buf *b, const char *s, size_t len)
{
    size_t need = sb_json_escape(NULL, 0, s, len);
    if (grow(b, need) != 0)
        return -1;
    sb_json_escape(b->data + b->len, need + 1, s, len);
    b->len += need;
    return 0;
}

void sb_buf_consume(struct sb_buf *b, size_t n)
{
    if (n >= b->len) {
        sb_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *sb_buf_detach(struct sb_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int sb_buf_add_file(struct sb_buf *b, const char *path)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return -1;
    char chunk[65536];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (sb_buf_add(b, chunk, got) != 0) {
            rc = -1;
            break;
        }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}
