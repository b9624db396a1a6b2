/*
 * The mock's KV-cache block and tier model: where each block of a prompt's KV cache lives (tier 0
 * GPU, tier 1 host memory, tier 2 disk), which blocks a new request can reuse, and what moving
 * them between tiers costs. Pure logic: the disk tier is reached only through the caller's
 * struct sb_kv_io callbacks, the KV data itself is never stored (tier-1 copies are a real memcpy
 * between two buffers of block_bytes so that they cost what a host copy costs).
 *
 * Blocks are named by chained hashes (sb_kv_hash_prompt): a block matches only when everything
 * before it matches. One block may be resident in several tiers at once (write-through, or a block
 * onboarded from a lower tier, which keeps its lower copy). Each tier is an independent cache with
 * its own capacity and eviction policy that sees only its own uses:
 *   - tier 0: a use is a hit served from tier 0 or a new pin (every admission pins all its blocks);
 *     a pinned block is in use until its sequence is released, so its release is its last use;
 *   - tier 1/2: a use is a hit served from that tier; entering the tier is not a use.
 * lru evicts the least recently used, fifo the first inserted (a block unpinned later keeps its
 * place), lfu the fewest uses since the block entered the tier (ties: least recent). Within one
 * admission or release the later blocks of the prompt count as the less recent (and, for fifo, the
 * earlier inserted) ones, so under pressure a cached prefix loses its tail before its head (vLLM
 * frees a sequence's blocks in reverse order for the same reason).
 *
 * Tier-2 slots: the cache owns slot numbers [0, tier_blocks[2]). A block entering tier 2 takes a
 * free slot and is written there with io.write_block (a failed write leaves the block off disk and
 * frees the slot); it is read back with io.read_block on the same slot; when it leaves tier 2
 * (evicted, or dropped after a failed read) its slot becomes free and the next block written may
 * reuse it. A slot is read only after a successful write of the block that holds it.
 *
 * Not thread-safe: one cache is driven from one thread (the mock's event loop).
 */
#ifndef SB_MOCK_KVCACHE_H
#define SB_MOCK_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"

enum sb_kv_policy { SB_KV_LRU, SB_KV_FIFO, SB_KV_LFU };
enum sb_kv_offload { SB_KV_WRITE_THROUGH, SB_KV_ON_EVICT };
enum { SB_KV_T0, SB_KV_T1, SB_KV_T2, SB_KV_TIERS };

/*
 * The disk tier, supplied by the caller. Each returns the nanoseconds the I/O took (measured by the
 * backend), or a negative value on an I/O error. slot is in [0, tier_blocks[2]). Both callbacks
 * are required when tier_blocks[2] > 0 and unused otherwise.
 */
struct sb_kv_io {
    int64_t (*write_block)(void *ctx, uint64_t slot);
    int64_t (*read_block)(void *ctx, uint64_t slot);
    void *ctx; /* borrowed; must stay valid until sb_kv_free() */
};

struct sb_kv_config {
    uint32_t block_tokens;             /* tokens per block (default 32 when 0) */
    uint64_t block_bytes;              /* bytes of KV per block (kv_block_bytes) */
    uint64_t tier_blocks[SB_KV_TIERS]; /* capacities; tier0 > 0; tier1/tier2 0 = tier absent */
    enum sb_kv_policy policy[SB_KV_TIERS];
    /* write_through: a block is copied down to tier 1 when it is first computed and to tier 2 (from
       tier 1 when it is there, else from tier 0) at every admission that uses it while it is not on
       disk, subject to the second-use filter; evictions just drop the copy. on_evict: a block
       evicted from a tier is copied to the next present tier below unless already there (tier 2
       subject to the filter); a block evicted from the last tier is dropped. */
    enum sb_kv_offload offload;
    bool
        disk_second_use_filter; /* KVBM default: a block goes to disk only from its second use on */
    bool prefix_reuse;          /* false: nothing is ever matched or cached (Stack A "KV sharing
                                   off"); the prompt's blocks are private to the sequence */
    double tier1_fetch_us;      /* cost per tier-1 block on top of the real memcpy */
    double tier2_fetch_us;      /* cost per tier-2 block on top of the measured read (a slower
                                   device than the machine's) */
};

struct sb_kv_cache; /* opaque */

/*
 * Creates a cache for cfg (copied) and io (copied; io may be NULL when tier 2 is absent). Memory
 * grows with the blocks actually cached, up to about 100 bytes per block of total capacity (never
 * block_bytes per block), plus two buffers of block_bytes when tier 1 is present. Total capacity
 * must stay below 2^32 - 1 blocks. Returns 0 and sets *out (free with sb_kv_free), or -1 with err
 * filled and *out NULL.
 */
int sb_kv_init(struct sb_kv_cache **out, const struct sb_kv_config *cfg, const struct sb_kv_io *io,
               struct sb_err *err);
/* Frees the cache (NULL is fine). Live sequences are dropped; no I/O is done. */
void sb_kv_free(struct sb_kv_cache *kv);

/*
 * Chained block hashes of a prompt: tokens are a deterministic byte-level split (4 bytes per token,
 * the same rule as the prompt-token estimate), full blocks only (a partial last block is ignored);
 * h_i = hash(h_{i-1}, bytes of block i), so a block matches only when everything before it
 * matches. Returns the number of hashes written (<= cap; the first cap blocks when there are more).
 * block_tokens 0 means 32.
 */
size_t sb_kv_hash_prompt(const char *bytes, size_t len, uint32_t block_tokens, uint64_t *out,
                         size_t cap);
/* The same over exact token ids (hashed in a separate domain: never equal to the byte variant). */
size_t sb_kv_hash_tokens(const uint32_t *ids, size_t n, uint32_t block_tokens, uint64_t *out,
                         size_t cap);

struct sb_kv_match {
    size_t blocks;           /* prompt blocks looked up */
    size_t hit[SB_KV_TIERS]; /* prefix blocks served from each tier */
    size_t miss;             /* blocks to compute (prefill); blocks == hit[0..2] + miss */
    uint64_t
        fetch_ns; /* tier-1 copies (real memcpy + tier1_fetch_us) + tier-2 reads (the io's ns) */
    uint64_t disk_read_bytes, disk_write_bytes; /* by this call */
    uint64_t offload_ns;                        /* time of the disk writes done by this call */
    int io_errors; /* failed tier-2 reads and writes; a failed read counts as a miss */
};

#define SB_KV_NOFIT 1

/*
 * Admission of sequence seq_id with the prompt's block hashes (nblocks of them, borrowed for the
 * call; assumed distinct, as chained hashes are) and extra_blocks more for generated tokens (never
 * cached).
 *
 * Walks the prompt block by block, serving each from the fastest tier holding it and stopping at
 * the first block cached nowhere. Makes room in tier 0 by evicting unpinned cached blocks, onboards
 * the tier-1 hits (memcpy + tier1_fetch_us) and the tier-2 hits (io.read_block on the block's
 * slot; a failed read drops the block from tier 2 and ends the match there: it and every later
 * block are computed), and pins every block of the sequence in tier 0 until sb_kv_release().
 * Computed blocks become cached in tier 0 (only with prefix_reuse). Only then do this call's tier-0
 * victims go down a tier (on_evict), so their way down cannot push out the blocks just read.
 *
 * m (required) is overwritten with what this call did. Returns 0; SB_KV_NOFIT, with nothing
 * changed, when tier 0 cannot hold the sequence's blocks + extra_blocks even after evicting
 * everything unpinned; or -1 with err (seq_id already admitted, hashes NULL with nblocks > 0, out
 * of memory), nothing changed either.
 */
int sb_kv_admit(struct sb_kv_cache *kv, uint64_t seq_id, const uint64_t *hashes, size_t nblocks,
                size_t extra_blocks, struct sb_kv_match *m, struct sb_err *err);

/*
 * Caches what admitted sequence seq_id computed past its prompt (decode-block caching, as vLLM
 * does: vllm/v1/core/kv_cache_manager.py, KVCacheManager.allocate_slots, runs every step with
 * num_tokens_to_cache = min(total_computed_tokens + num_new_tokens, request.num_tokens) and
 * coordinator.cache_blocks(request, num_tokens_to_cache), generated tokens included, so the full
 * blocks of a reply outlive the request; the last sampled token is never fed back, so its KV is
 * never computed). hashes
 * (borrowed) is the chain over the sequence as the next turn's prompt will carry it; its first
 * blocks must be the prompt's. Blocks past the prompt's become cached tier-0 blocks, taken from
 * the sequence's generation blocks, then from free tier-0 room (nothing is evicted), pinned
 * until sb_kv_release(); a block already cached is shared instead. Written through to tiers 1
 * and 2 (subject to the second-use filter) like a prompt block its admission computed. *added: the
 * blocks appended. Returns 0 (also without prefix_reuse, adding nothing), or -1 with err (unknown
 * sequence, a prefix that is not the prompt's, out of memory), nothing changed.
 */
int sb_kv_extend(struct sb_kv_cache *kv, uint64_t seq_id, const uint64_t *hashes, size_t n,
                 size_t *added, struct sb_err *err);

/*
 * What sb_kv_admit would serve from each tier now, without changing anything: hit[t] prefix
 * blocks from tier t (the fastest holding each), *miss the rest.
 */
void sb_kv_peek(const struct sb_kv_cache *kv, const uint64_t *hashes, size_t nblocks,
                size_t hit[SB_KV_TIERS], size_t *miss);

/* The sequence finished: unpin its blocks (cached ones stay, generation blocks are freed). An
 * unknown seq_id is ignored. */
void sb_kv_release(struct sb_kv_cache *kv, uint64_t seq_id);

/*
 * Drops every block no sequence is using from every tier (vLLM's reset_prefix_cache, SGLang's
 * flush_cache): blocks pinned by admitted sequences stay. Returns the number of tier copies
 * dropped. Not counted as evictions.
 */
uint64_t sb_kv_reset(struct sb_kv_cache *kv);

/* Bit t (1 << SB_KV_Tt) set for each tier that holds the block now; 0 when it is cached nowhere. */
unsigned sb_kv_where(const struct sb_kv_cache *kv, uint64_t hash);

/*
 * Per-tier totals since sb_kv_init. lookups/hits/misses: the admission walk asking this tier for a
 * block (hits + misses == lookups; nothing is looked up without prefix_reuse). blocks_in/out:
 * blocks copied into/out of this tier from/to another tier (computing a block is not a copy), so
 * the sums over tiers of blocks_in and blocks_out are equal; bytes are blocks * block_bytes.
 * evictions: blocks removed to make room. used_blocks: blocks held now (tier 0 includes pinned and
 * private generation blocks), never above capacity_blocks.
 */
struct sb_kv_tier_stats {
    uint64_t lookups, hits, misses, blocks_in, blocks_out, bytes_in, bytes_out, evictions,
        used_blocks, capacity_blocks;
};
/*
 * KVBM-shaped totals with KVBM's meanings. matched_tokens counts tokens served from tiers 1 and 2
 * (KVBM's "external" tokens). The hit rates are KVBM's: over the last 1000 admissions that asked
 * tiers 1/2 for anything, blocks served from the tier / prompt blocks not served from tier 0.
 */
struct sb_kv_kvbm {
    uint64_t offload_d2h /* tier0->tier1 */, offload_h2d /* tier1->tier2 (CPU->disk) */,
        offload_d2d /* tier0->tier2 (GPU->disk) */, onboard_h2d /* tier1->tier0 */,
        onboard_d2d /* tier2->tier0 (disk->GPU) */, matched_tokens;
    double host_cache_hit_rate, disk_cache_hit_rate; /* 0..1 */
};
/* Copies the totals out; either pointer may be NULL. */
void sb_kv_get_stats(const struct sb_kv_cache *kv, struct sb_kv_tier_stats out[SB_KV_TIERS],
                     struct sb_kv_kvbm *kvbm);

#endif
