/*
 * LoRA adapter residency for the mock (see sb/mock_lora.h). Its job is to make adapter swaps cost
 * what they cost on a real server: a real read of the adapter file from disk plus a fixed load
 * time, with least-recently-used eviction once max_loras adapters are resident. The list is parsed
 * completely before any file is touched, so a typo never leaves half-created files behind.
 */
#include "sb/mock_lora.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/util.h"

#define SB_LORA_CHUNK ((size_t)1 << 20)

struct sb_lora_adapter {
    char *name;
    char *path;
    bool resident;
    uint64_t last_use; /* tick of the last acquire; LRU victim has the smallest */
};

struct sb_lora {
    struct sb_lora_adapter *adapters;
    size_t count;
    size_t max_loras;
    size_t nresident;
    uint64_t tick;
    int64_t load_ns;
    unsigned char *chunk; /* SB_LORA_CHUNK bytes, reused by every load */
    struct sb_lora_stats stats;
};

/* A heap copy of s[0..len) without surrounding blanks. */
static char *dup_trimmed(const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner
   (l->adapters[i].name and path, sb_lora_free) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
/* Parses one "name=path" item into a. */
static int parse_item(struct sb_lora_adapter *a, const char *item, size_t len, struct sb_err *err)
{
    const char *eq = memchr(item, '=', len);
    if (!eq)
        return sb_err_set(err, "invalid lora module '%.*s': expected name=path", (int)len, item);
    a->name = dup_trimmed(item, (size_t)(eq - item));
    a->path = dup_trimmed(eq + 1, len - (size_t)(eq - item) - 1);
    if (!a->name || !a->path)
        return sb_err_set(err, "out of memory parsing lora module '%.*s'", (int)len, item);
    if (!a->name[0])
        return sb_err_set(err, "invalid lora module '%.*s': empty name", (int)len, item);
    if (!a->path[0])
        return sb_err_set(err, "invalid lora module '%.*s': empty path", (int)len, item);
    return 0;
}
#pragma GCC diagnostic pop

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner
   (l->adapters[i].name and path, sb_lora_free) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static int parse_modules(struct sb_lora *l, const char *modules, struct sb_err *err)
{
    size_t n = 1;
    for (const char *p = modules; *p; p++)
        n += *p == ',';
    if (n > INT_MAX)
        return sb_err_set(err, "too many lora modules");
    l->adapters = calloc(n, sizeof(*l->adapters));
    if (!l->adapters)
        return sb_err_set(err, "out of memory for %zu lora modules", n);
    const char *p = modules;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        size_t blank = 0;
        while (blank < len && (p[blank] == ' ' || p[blank] == '\t'))
            blank++;
        if (blank == len)
            return sb_err_set(err, "invalid lora modules '%s': empty item", modules);
        struct sb_lora_adapter *a = &l->adapters[l->count++];
        if (parse_item(a, p, len, err) != 0)
            return -1;
        for (size_t j = 0; j + 1 < l->count; j++)
            if (strcmp(l->adapters[j].name, a->name) == 0)
                return sb_err_set(err, "duplicate lora module name '%s' in '%s'", a->name, modules);
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}
#pragma GCC diagnostic pop

/* Writes bytes of pattern data into a new file at path; removes it again on failure. */
static int create_adapter(const char *path, uint64_t bytes, unsigned char *chunk,
                          struct sb_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return sb_err_errno(err, errno, "cannot create lora adapter file '%s'", path);
    for (size_t off = 0; off < SB_LORA_CHUNK; off += 8) {
        uint64_t w = sb_mix64(off / 8 + 0x10a4ULL);
        memcpy(chunk + off, &w, 8);
    }
    uint64_t done = 0;
    while (done < bytes) {
        size_t want = bytes - done < SB_LORA_CHUNK ? (size_t)(bytes - done) : SB_LORA_CHUNK;
        ssize_t w = write(fd, chunk, want);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            unlink(path);
            return sb_err_errno(err, e, "cannot write lora adapter file '%s'", path);
        }
        done += (uint64_t)w;
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(path);
        return sb_err_errno(err, e, "cannot write lora adapter file '%s'", path);
    }
    return 0;
}

static int ensure_adapter(const char *path, uint64_t bytes, unsigned char *chunk,
                          struct sb_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return sb_err_set(err, "cannot use lora adapter file '%s': not a regular file", path);
        return 0;
    }
    if (errno != ENOENT)
        return sb_err_errno(err, errno, "cannot use lora adapter file '%s'", path);
    return create_adapter(path, bytes, chunk, err);
}

int sb_lora_init(struct sb_lora **out, const char *modules, long long max_loras,
                 uint64_t lora_bytes, double lora_load_ms, struct sb_err *err)
{
    *out = NULL;
    if (max_loras < 1)
        return sb_err_set(err, "invalid max_loras '%lld': must be at least 1", max_loras);
    if (!isfinite(lora_load_ms) || lora_load_ms < 0 || lora_load_ms > 1e9)
        return sb_err_set(err, "invalid lora_load_ms '%g': must be 0 to 1e9", lora_load_ms);
    struct sb_lora *l = calloc(1, sizeof(*l));
    if (!l)
        return sb_err_set(err, "out of memory for lora adapters");
    l->max_loras = (uint64_t)max_loras > SIZE_MAX ? SIZE_MAX : (size_t)max_loras;
    l->load_ns = llround(lora_load_ms * 1e6);
    l->chunk = malloc(SB_LORA_CHUNK);
    int rc = -1;
    if (!l->chunk) {
        sb_err_set(err, "out of memory for lora adapters");
        goto out;
    }
    if (modules && modules[0] && parse_modules(l, modules, err) != 0)
        goto out;
    for (size_t i = 0; i < l->count; i++)
        if (ensure_adapter(l->adapters[i].path, lora_bytes, l->chunk, err) != 0)
            goto out;
    rc = 0;
out:
    if (rc != 0) {
        sb_lora_free(l);
        return -1;
    }
    *out = l;
    return 0;
}

size_t sb_lora_count(const struct sb_lora *l)
{
    return l->count;
}

const char *sb_lora_name(const struct sb_lora *l, size_t i)
{
    return i < l->count ? l->adapters[i].name : NULL;
}

int sb_lora_find(const struct sb_lora *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->adapters[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Reads the whole file; returns the bytes read or -errno. */
static int64_t read_whole(const char *path, unsigned char *chunk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, SB_LORA_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        total += r;
    }
    close(fd);
    return total;
}

int64_t sb_lora_acquire(struct sb_lora *l, size_t i, bool *cold)
{
    if (cold)
        *cold = false;
    if (i >= l->count)
        return -EINVAL;
    struct sb_lora_adapter *a = &l->adapters[i];
    if (a->resident) {
        a->last_use = ++l->tick;
        l->stats.hits++;
        return 0;
    }
    uint64_t t0 = sb_mono_ns();
    int64_t n = read_whole(a->path, l->chunk);
    uint64_t ns = sb_mono_ns() - t0;
    if (n < 0)
        return n;
    if (l->nresident >= l->max_loras) {
        struct sb_lora_adapter *victim = NULL;
        for (size_t j = 0; j < l->count; j++) {
            struct sb_lora_adapter *c = &l->adapters[j];
            if (c->resident && (!victim || c->last_use < victim->last_use))
                victim = c;
        }
        if (victim) {
            victim->resident = false;
            l->nresident--;
            l->stats.evictions++;
        }
    }
    a->resident = true;
    a->last_use = ++l->tick;
    l->nresident++;
    l->stats.loads++;
    l->stats.bytes_read += (uint64_t)n;
    if (cold)
        *cold = true;
    return (int64_t)ns + l->load_ns;
}

bool sb_lora_resident(const struct sb_lora *l, size_t i)
{
    return i < l->count && l->adapters[i].resident;
}

void sb_lora_get_stats(const struct sb_lora *l, struct sb_lora_stats *out)
{
    *out = l->stats;
}

void sb_lora_free(struct sb_lora *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++) {
        free(l->adapters[i].name);
        free(l->adapters[i].path);
    }
    free(l->adapters);
    free(l->chunk);
    free(l);
}
