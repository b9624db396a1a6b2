/*
 * The mock's KV-cache disk tier (Dynamo KVBM spilling KV blocks to NVMe): one preallocated file of
 * fixed-size blocks addressed by slot number, written and read with pwrite/pread so the I/O really
 * reaches the disk (/proc/diskstats moves, a concurrent fio on the same disk slows it down).
 *
 * Ownership: sb_tier2_open() hands back a tier the caller releases with sb_tier2_close(). Strings
 * returned by the getters are owned by the tier and valid until sb_tier2_close(). A tier is not
 * thread-safe: it has one aligned I/O buffer, so calls must come from one thread at a time (the
 * mock's event loop).
 */
#ifndef SB_MOCK_TIER2_H
#define SB_MOCK_TIER2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"
#include "sb/mock_metrics.h"

struct sb_tier2; /* opaque */

struct sb_tier2_config {
    const char *dir;      /* an existing, writable directory; borrowed during open only */
    uint64_t block_bytes; /* size of one KV block on disk, at least 8 */
    uint64_t nblocks;     /* number of slots; the file is nblocks * block_bytes */
    bool direct;          /* try O_DIRECT; falls back to buffered I/O with a warning */
    bool keep;            /* keep the file on close (otherwise it is unlinked) */
};

/*
 * Creates <dir>/sparkbench-kv-<pid>.bin and preallocates nblocks * block_bytes with fallocate(0)
 * (posix_fallocate where the filesystem lacks it). A stale file of the same name left by a crashed
 * process is truncated and reused; one still open by another tier is refused (flock).
 *
 * Refuses, naming the dir, when dir is missing, is not a directory or is not writable, and when
 * statvfs shows less free space than the file needs (the message gives both byte counts).
 *
 * O_DIRECT is used only when cfg->direct is set, block_bytes is a multiple of 4096, the
 * filesystem is disk-backed (tmpfs/ramfs accept O_DIRECT on recent kernels but it means nothing
 * there) and accepts it (open and a probe read succeed). Otherwise the tier falls back to
 * buffered I/O and records a one-line warning, see sb_tier2_warning().
 *
 * Returns 0 and sets *out, or -1 with err filled and *out set to NULL.
 */
int sb_tier2_open(struct sb_tier2 **out, const struct sb_tier2_config *cfg, struct sb_err *err);

/*
 * Writes block_bytes of pattern data at slot * block_bytes (the first 8 bytes hold the slot number
 * in host byte order). Short writes and EINTR are retried. Returns the nanoseconds the write took
 * (CLOCK_MONOTONIC, at least 1), or -errno: -ERANGE for a slot past nblocks, -EIO for a write that
 * made no progress. A failed write forgets that the slot was written.
 */
int64_t sb_tier2_write(struct sb_tier2 *t, uint64_t slot);

/*
 * Reads the block at slot and checks that its first 8 bytes hold the slot number. Returns the
 * nanoseconds the read took (at least 1) and records them in the read histogram, or -errno:
 * -ERANGE for a slot past nblocks, -ENODATA for a slot never written (no I/O is done), -EIO when
 * the block on disk does not hold what was written or the file is shorter than expected. Every
 * error counts as a read error; callers treat any negative value as a miss.
 */
int64_t sb_tier2_read(struct sb_tier2 *t, uint64_t slot);

/* Adapters with the int64_t (*)(void *ctx, uint64_t slot) shape of an I/O callback table; ctx is
 * the struct sb_tier2 *. Same results as sb_tier2_write() / sb_tier2_read(). */
int64_t sb_tier2_io_write(void *ctx, uint64_t slot);
int64_t sb_tier2_io_read(void *ctx, uint64_t slot);

/* True when the file was opened with O_DIRECT (the page cache is bypassed). */
bool sb_tier2_is_direct(const struct sb_tier2 *t);

/* One-line reason O_DIRECT was asked for but not used, or NULL. Owned by t. */
const char *sb_tier2_warning(const struct sb_tier2 *t);

/* The backing file's path. Owned by t. */
const char *sb_tier2_path(const struct sb_tier2 *t);

struct sb_tier2_stats {
    uint64_t reads, writes; /* successful calls */
    uint64_t read_bytes, write_bytes;
    uint64_t read_errors, write_errors;
    uint64_t read_ns_total, write_ns_total; /* of the successful calls */
};

/* Copies the counters into *out. */
void sb_tier2_get_stats(const struct sb_tier2 *t, struct sb_tier2_stats *out);

/* Latency of successful reads in seconds, bounds from 10 us to 1 s. Owned by t; render it with
 * sb_histo_render(). */
const struct sb_histo *sb_tier2_read_histo(const struct sb_tier2 *t);

/*
 * The block device under the file, for diagnostics: st_dev -> /sys/dev/block/MAJ:MIN -> its name,
 * and the whole disk for a partition (nvme0n1p2 -> nvme0n1, vda1 -> vda), so it can be matched
 * against /proc/diskstats. NULL when there is none (tmpfs, overlay, btrfs subvolumes). Owned by t.
 */
const char *sb_tier2_device(const struct sb_tier2 *t);

/*
 * The disk name from the target of a /sys/dev/block/MAJ:MIN link (for example
 * "../../devices/pci0000:00/.../block/vda/vda1"): its last component, or the one before it when
 * partition is true. Writes a NUL-terminated name into out; returns 0, or -1 when the target has
 * no such component or the name does not fit. Does no I/O.
 */
int sb_tier2_disk_from_sysfs(const char *link_target, bool partition, char *out, size_t cap);

/* Closes the file and unlinks it unless the config said keep, then frees t. NULL is ignored. */
void sb_tier2_close(struct sb_tier2 *t);

#endif
