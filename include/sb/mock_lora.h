/*
 * LoRA adapters for the mock, the way vLLM serves them (--lora-modules name=path,...,
 * --max-loras): at most max_loras adapters are resident; using one that is not loads it by really
 * reading its file (so adapter swaps show up as disk reads) plus a fixed lora_load_ms, and evicts
 * the least recently used resident adapter when the residency limit is reached.
 *
 * Ownership: sb_lora_init() hands back a set the caller releases with sb_lora_free(). Names
 * returned by sb_lora_name() are owned by the set and valid until sb_lora_free(). Not
 * thread-safe: one thread at a time (the mock's event loop).
 */
#ifndef SB_MOCK_LORA_H
#define SB_MOCK_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"

struct sb_lora; /* opaque */

/*
 * Parses modules, "name=path,name2=path2" (NULL or "" means no adapters; spaces around names and
 * paths are ignored), and creates each adapter file that does not exist yet with lora_bytes of
 * pattern data (its parent directory must exist). Existing files are used as they are, whatever
 * their size. max_loras must be at least 1, lora_load_ms finite and not negative.
 *
 * Errors name the bad item ("invalid lora module 'c': expected name=path"), the duplicate name or
 * the file that could not be created. Returns 0 and sets *out, or -1 with err filled and *out set
 * to NULL (files already created are left in place).
 */
int sb_lora_init(struct sb_lora **out, const char *modules, long long max_loras,
                 uint64_t lora_bytes, double lora_load_ms, struct sb_err *err);

/* Number of adapters, in the order they were listed. */
size_t sb_lora_count(const struct sb_lora *l);

/* Name of adapter i (< count), owned by l. */
const char *sb_lora_name(const struct sb_lora *l, size_t i);

/* Index of the adapter called name, or -1. */
int sb_lora_find(const struct sb_lora *l, const char *name);

/*
 * Makes adapter i resident. Warm (already resident): returns 0, sets *cold = false and makes it
 * the most recently used. Cold: reads the whole file with read() in 1 MiB pieces (the page cache
 * is not dropped: that is the caller's business), evicts the least recently used resident adapter
 * when max_loras are resident, sets *cold = true and returns the nanoseconds the read took plus
 * lora_load_ms; the caller delays the request by that much, nothing here sleeps. Returns -errno
 * when the file cannot be read (nothing is evicted or loaded then), -EINVAL for i out of range.
 * cold may be NULL; it is false after a failure.
 */
int64_t sb_lora_acquire(struct sb_lora *l, size_t i, bool *cold);

/* True when adapter i is resident. */
bool sb_lora_resident(const struct sb_lora *l, size_t i);

struct sb_lora_stats {
    uint64_t loads;      /* cold acquires that succeeded */
    uint64_t hits;       /* warm acquires */
    uint64_t evictions;  /* adapters pushed out by a load */
    uint64_t bytes_read; /* by loads */
};

/* Copies the counters into *out. */
void sb_lora_get_stats(const struct sb_lora *l, struct sb_lora_stats *out);

/* Frees l (NULL is ignored). The adapter files stay on disk. */
void sb_lora_free(struct sb_lora *l);

#endif
