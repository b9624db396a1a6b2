/*
 * The KV cache's disk tier for the mock (see sb/mock_tier2.h). It exists so that a simulated KVBM
 * spill really costs disk I/O: one preallocated file, fixed-size blocks written with pwrite and
 * read back with pread, each call timed with CLOCK_MONOTONIC, optionally with O_DIRECT so the page
 * cache cannot hide the device. Every block carries its slot number in its first 8 bytes so a read
 * can tell a block that was overwritten behind our back from the one we wrote.
 */
#include "sb/mock_tier2.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "sb/util.h"

#define SB_TIER2_ALIGN     4096u
#define SB_TIER2_MAX_BLOCK ((uint64_t)1 << 30)

/* 10 us (a page-cache hit) .. 1 s (a disk drowned by fio). */
static const double read_bounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                     0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                     0.1,     0.25,     0.5,     1.0};

struct sb_tier2 {
    int fd;      /* the descriptor I/O goes through (O_DIRECT or not) */
    int lock_fd; /* holds the flock; the same as fd when I/O is buffered */
    char *path;
    bool direct;
    bool keep;
    uint64_t block_bytes;
    uint64_t nblocks;
    unsigned char *wbuf; /* pattern data, aligned; only the slot word changes */
    unsigned char *rbuf; /* aligned read buffer */
    uint8_t *written;    /* one bit per slot */
    struct sb_tier2_stats stats;
    struct sb_histo read_histo;
    char warning[256];
    char device[64];
};

static bool slot_written(const struct sb_tier2 *t, uint64_t slot)
{
    return (t->written[slot / 8] >> (slot % 8)) & 1u;
}

static void slot_mark(struct sb_tier2 *t, uint64_t slot, bool on)
{
    uint8_t bit = (uint8_t)(1u << (slot % 8));
    if (on)
        t->written[slot / 8] |= bit;
    else
        t->written[slot / 8] &= (uint8_t)~bit;
}

/* Returns 0 or -errno; a call that moves no bytes is -EIO so the loop cannot spin. */
static int full_pwrite(int fd, const unsigned char *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, off + (off_t)done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        done += (size_t)w;
    }
    return 0;
}

/* Returns 0 or -errno; end of file before len bytes is -EIO (the file was truncated). */
static int full_pread(int fd, unsigned char *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, buf + done, len - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        done += (size_t)r;
    }
    return 0;
}

int sb_tier2_disk_from_sysfs(const char *link_target, bool partition, char *out, size_t cap)
{
    if (!link_target || !out || cap == 0)
        return -1;
    size_t end = strlen(link_target);
    for (int level = 0; level < (partition ? 2 : 1); level++) {
        if (level > 0) {
            /* step to the parent: drop the last component */
            while (end > 0 && link_target[end - 1] != '/')
                end--;
        }
        while (end > 0 && link_target[end - 1] == '/')
            end--;
    }
    size_t start = end;
    while (start > 0 && link_target[start - 1] != '/')
        start--;
    size_t len = end - start;
    if (len == 0 || len >= cap)
        return -1;
    if ((len == 1 && link_target[start] == '.') ||
        (len == 2 && link_target[start] == '.' && link_target[start + 1] == '.'))
        return -1;
    memcpy(out, link_target + start, len);
    out[len] = '\0';
    return 0;
}

/* Fills t->device from the file's st_dev; leaves it empty for anonymous devices. */
static void find_device(struct sb_tier2 *t)
{
    struct stat st;
    if (fstat(t->fd, &st) != 0 || major(st.st_dev) == 0)
        return;
    char link[64];
    snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    char target[PATH_MAX];
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return;
    target[n] = '\0';
    char part[96];
    snprintf(part, sizeof(part), "%s/partition", link);
    bool partition = access(part, F_OK) == 0;
    if (sb_tier2_disk_from_sysfs(target, partition, t->device, sizeof(t->device)) != 0)
        t->device[0] = '\0';
}

/* Refuses dirs that are missing, not directories, not writable or too full. */
static int check_dir(const char *dir, uint64_t need, struct sb_err *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return sb_err_errno(err, errno, "cannot use '%s' for the kv disk tier", dir);
    if (!S_ISDIR(st.st_mode))
        return sb_err_set(err, "cannot use '%s' for the kv disk tier: not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return sb_err_errno(err, errno, "cannot use '%s' for the kv disk tier: not writable", dir);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return sb_err_errno(err, errno, "cannot query free space of '%s'", dir);
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (avail < need)
        return sb_err_set(err,
                          "not enough free space in '%s' for the kv disk tier: need %" PRIu64
                          " bytes, %" PRIu64 " available",
                          dir, need, avail);
    return 0;
}

/* Preallocates so later writes never hit ENOSPC and the blocks are laid out once. */
static int preallocate(int fd, const char *path, const char *dir, uint64_t total,
                       struct sb_err *err)
{
    if (fallocate(fd, 0, 0, (off_t)total) == 0)
        return 0;
    int e = errno;
    if (e == EOPNOTSUPP || e == ENOSYS)
        e = posix_fallocate(fd, 0, (off_t)total);
    if (e == 0)
        return 0;
    if (e == ENOSPC)
        return sb_err_set(err,
                          "not enough free space in '%s' for the kv disk tier: need %" PRIu64
                          " bytes (fallocate of '%s' failed)",
                          dir, total, path);
    return sb_err_errno(err, e, "cannot preallocate %" PRIu64 " bytes for '%s'", total, path);
}

/* Why O_DIRECT cannot be used for this config before trying it, or NULL. */
static const char *direct_refusal(const struct sb_tier2_config *cfg)
{
    if (cfg->block_bytes % SB_TIER2_ALIGN != 0)
        return "block size is not a multiple of 4096";
    struct statfs fs;
    if (statfs(cfg->dir, &fs) == 0) {
        if (fs.f_type == TMPFS_MAGIC)
            return "tmpfs is memory, not a disk";
        if (fs.f_type == RAMFS_MAGIC)
            return "ramfs is memory, not a disk";
    }
    return NULL;
}

/* Switches t to an O_DIRECT descriptor when the filesystem takes it; otherwise sets the warning.
 */
static void try_direct(struct sb_tier2 *t, const struct sb_tier2_config *cfg)
{
    const char *why = direct_refusal(cfg);
    if (why) {
        snprintf(t->warning, sizeof(t->warning),
                 "O_DIRECT not used for '%s': %s (block %" PRIu64 " bytes); using buffered I/O",
                 cfg->dir, why, cfg->block_bytes);
        return;
    }
    int fd = open(t->path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        snprintf(t->warning, sizeof(t->warning),
                 "O_DIRECT not used for '%s': open refused it (%s); using buffered I/O", cfg->dir,
                 strerror(errno));
        return;
    }
    /* Some filesystems accept the flag at open and refuse the first aligned I/O. */
    int rc = full_pread(fd, t->rbuf, (size_t)t->block_bytes, 0);
    if (rc < 0) {
        snprintf(t->warning, sizeof(t->warning),
                 "O_DIRECT not used for '%s': a probe read failed (%s); using buffered I/O",
                 cfg->dir, strerror(-rc));
        close(fd);
        return;
    }
    t->fd = fd;
    t->direct = true;
}

/* Cheap, not compressible by accident, filled once. */
static void fill_pattern(unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len; off += 8) {
        uint64_t w = sb_mix64(off / 8 + 0x5b4b56ULL);
        size_t n = len - off < 8 ? len - off : 8;
        memcpy(buf + off, &w, n);
    }
}

int sb_tier2_open(struct sb_tier2 **out, const struct sb_tier2_config *cfg, struct sb_err *err)
{
    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->dir[0])
        return sb_err_set(err, "missing directory for the kv disk tier");
    if (cfg->block_bytes < 8 || cfg->block_bytes > SB_TIER2_MAX_BLOCK)
        return sb_err_set(
            err, "invalid block size '%" PRIu64 "' for the kv disk tier: must be 8 bytes to 1 GiB",
            cfg->block_bytes);
    if (cfg->nblocks == 0 || cfg->nblocks > (uint64_t)INT64_MAX / cfg->block_bytes)
        return sb_err_set(err,
                          "invalid block count '%" PRIu64
                          "' for the kv disk tier: must be at least 1 and fit in a file",
                          cfg->nblocks);
    uint64_t total = cfg->nblocks * cfg->block_bytes;
    if (check_dir(cfg->dir, total, err) != 0)
        return -1;

    int rc = -1;
    bool owns_file = false;
    struct sb_tier2 *t = calloc(1, sizeof(*t));
    if (!t)
        return sb_err_set(err, "out of memory for the kv disk tier");
    t->fd = -1;
    t->lock_fd = -1;
    t->keep = cfg->keep;
    t->block_bytes = cfg->block_bytes;
    t->nblocks = cfg->nblocks;
    sb_histo_init(&t->read_histo, read_bounds, SB_ARRAY_SIZE(read_bounds));

    size_t plen = strlen(cfg->dir) + 64;
    t->path = malloc(plen);
    size_t buflen =
        (size_t)((cfg->block_bytes + SB_TIER2_ALIGN - 1) / SB_TIER2_ALIGN) * SB_TIER2_ALIGN;
    void *wbuf = NULL, *rbuf = NULL;
    int ew = posix_memalign(&wbuf, SB_TIER2_ALIGN, buflen);
    int er = posix_memalign(&rbuf, SB_TIER2_ALIGN, buflen);
    t->wbuf = ew == 0 ? wbuf : NULL;
    t->rbuf = er == 0 ? rbuf : NULL;
    t->written = calloc((size_t)((cfg->nblocks + 7) / 8), 1);
    if (!t->path || !t->wbuf || !t->rbuf || !t->written) {
        sb_err_set(err, "out of memory for the kv disk tier in '%s'", cfg->dir);
        goto out;
    }
    fill_pattern(t->wbuf, buflen);
    snprintf(t->path, plen, "%s/sparkbench-kv-%ld.bin", cfg->dir, (long)getpid());

    t->lock_fd = open(t->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->lock_fd < 0) {
        sb_err_errno(err, errno, "cannot create kv disk tier file '%s'", t->path);
        goto out;
    }
    if (flock(t->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            sb_err_set(err, "cannot create kv disk tier file '%s': in use by another tier",
                       t->path);
        else
            sb_err_errno(err, errno, "cannot lock kv disk tier file '%s'", t->path);
        goto out;
    }
    owns_file = true;
    /* A file of our name and no lock is a leftover from a crashed process with our pid. */
    if (ftruncate(t->lock_fd, 0) != 0) {
        sb_err_errno(err, errno, "cannot truncate kv disk tier file '%s'", t->path);
        goto out;
    }
    if (preallocate(t->lock_fd, t->path, cfg->dir, total, err) != 0)
        goto out;
    t->fd = t->lock_fd;
    if (cfg->direct)
        try_direct(t, cfg);
    find_device(t);
    rc = 0;
out:
    if (rc != 0) {
        if (owns_file)
            unlink(t->path);
        t->keep = true; /* already handled */
        sb_tier2_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

int64_t sb_tier2_write(struct sb_tier2 *t, uint64_t slot)
{
    if (slot >= t->nblocks) {
        t->stats.write_errors++;
        return -ERANGE;
    }
    memcpy(t->wbuf, &slot, sizeof(slot));
    uint64_t t0 = sb_mono_ns();
    int rc = full_pwrite(t->fd, t->wbuf, (size_t)t->block_bytes, (off_t)(slot * t->block_bytes));
    uint64_t ns = sb_mono_ns() - t0;
    if (rc < 0) {
        /* Part of the block may have landed: its content is unknown now. */
        slot_mark(t, slot, false);
        t->stats.write_errors++;
        return rc;
    }
    if (ns == 0)
        ns = 1;
    slot_mark(t, slot, true);
    t->stats.writes++;
    t->stats.write_bytes += t->block_bytes;
    t->stats.write_ns_total += ns;
    return (int64_t)ns;
}

int64_t sb_tier2_read(struct sb_tier2 *t, uint64_t slot)
{
    if (slot >= t->nblocks) {
        t->stats.read_errors++;
        return -ERANGE;
    }
    if (!slot_written(t, slot)) {
        t->stats.read_errors++;
        return -ENODATA;
    }
    uint64_t t0 = sb_mono_ns();
    int rc = full_pread(t->fd, t->rbuf, (size_t)t->block_bytes, (off_t)(slot * t->block_bytes));
    uint64_t ns = sb_mono_ns() - t0;
    if (rc < 0) {
        t->stats.read_errors++;
        return rc;
    }
    uint64_t got;
    memcpy(&got, t->rbuf, sizeof(got));
    if (got != slot) {
        t->stats.read_errors++;
        return -EIO;
    }
    if (ns == 0)
        ns = 1;
    t->stats.reads++;
    t->stats.read_bytes += t->block_bytes;
    t->stats.read_ns_total += ns;
    sb_histo_observe(&t->read_histo, (double)ns / 1e9);
    return (int64_t)ns;
}

int64_t sb_tier2_io_write(void *ctx, uint64_t slot)
{
    return sb_tier2_write(ctx, slot);
}

int64_t sb_tier2_io_read(void *ctx, uint64_t slot)
{
    return sb_tier2_read(ctx, slot);
}

bool sb_tier2_is_direct(const struct sb_tier2 *t)
{
    return t->direct;
}

const char *sb_tier2_warning(const struct sb_tier2 *t)
{
    return t->warning[0] ? t->warning : NULL;
}

const char *sb_tier2_path(const struct sb_tier2 *t)
{
    return t->path;
}

void sb_tier2_get_stats(const struct sb_tier2 *t, struct sb_tier2_stats *out)
{
    *out = t->stats;
}

const struct sb_histo *sb_tier2_read_histo(const struct sb_tier2 *t)
{
    return &t->read_histo;
}

const char *sb_tier2_device(const struct sb_tier2 *t)
{
    return t->device[0] ? t->device : NULL;
}

void sb_tier2_close(struct sb_tier2 *t)
{
    if (!t)
        return;
    if (t->fd >= 0 && t->fd != t->lock_fd)
        close(t->fd);
    /* Unlink while still holding the lock so no other tier can adopt the file in between. */
    if (!t->keep && t->path)
        unlink(t->path);
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    free(t->path);
    free(t->wbuf);
    free(t->rbuf);
    free(t->written);
    free(t);
}
