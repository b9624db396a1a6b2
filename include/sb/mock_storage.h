/*
 * The mock's storage side: the KV block/tier model (sb/mock_kvcache.h) on top of a real disk tier
 * (sb/mock_tier2.h), and LoRA adapters (sb/mock_lora.h), wired to the server's requests. The server
 * asks it three things: can this request ever fit (arrival), what does admitting it cost now
 * (iteration start: onboarding really reads/copies, adapters really load), and release.
 */
#ifndef SB_MOCK_STORAGE_H
#define SB_MOCK_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/mock_server.h"

struct sb_mock_storage;

/* What one request needs from storage; filled by sb_mock_storage_plan(), owned by the request. */
struct sb_mock_kvplan {
    uint64_t *hashes; /* prompt block hashes (malloc'ed; free with sb_mock_kvplan_release) */
    size_t nblocks;
    size_t extra_blocks; /* partial prompt block + generated tokens */
    int lora;            /* adapter index, -1 none */
    /* results of the admission */
    bool admitted;
    size_t hit[3], miss;
    uint64_t fetch_ns, disk_read_bytes;
    long long cached_tokens;
    bool lora_cold;
    int64_t lora_ns;
    size_t decode_blocks; /* reply blocks left cached at the end (sb_mock_storage_extend) */
};

/* Opens what cfg asks for (nothing when tier0_blocks is 0 and no adapters). Errors name the dir. */
int sb_mock_storage_open(struct sb_mock_storage **out, const struct sb_mock_config *cfg,
                         struct sb_err *err);
void sb_mock_storage_close(struct sb_mock_storage *st);

/* True when the KV model is on. */
bool sb_mock_storage_kv_enabled(const struct sb_mock_storage *st);

/* The adapter index for a model name, or -1. */
int sb_mock_storage_lora_find(const struct sb_mock_storage *st, const char *name);
size_t sb_mock_storage_lora_count(const struct sb_mock_storage *st);
const char *sb_mock_storage_lora_name(const struct sb_mock_storage *st, size_t i);

/*
 * Plans a request: block hashes of the prompt — over its token ids when the mock has a tokenizer
 * (ids not NULL: the blocks a real server would cache), else over its bytes at 4 a token — and
 * blocks for the generated tokens. Returns 0, or 1 when the request can never fit in tier 0 (the
 * caller refuses it).
 */
int sb_mock_storage_plan(struct sb_mock_storage *st, const char *prompt, size_t len,
                         const uint32_t *ids, size_t nids, long long prompt_tokens,
                         long long max_tokens, int lora, struct sb_mock_kvplan *plan,
                         struct sb_err *err);

/*
 * Admits a planned request (the engine's admission hook): pins its blocks, onboards cached ones,
 * loads its adapter. Returns the nanoseconds this adds to the iteration, or -1 when its blocks do
 * not fit next to the running batch right now (it waits). *uncached is lowered by the cached part.
 */
int64_t sb_mock_storage_admit(struct sb_mock_storage *st, uint64_t seq_id,
                              struct sb_mock_kvplan *plan, long long prompt_tokens,
                              long long *uncached);

/* The sequence left the batch: unpin its blocks. */
void sb_mock_storage_release(struct sb_mock_storage *st, uint64_t seq_id,
                             struct sb_mock_kvplan *plan);

/*
 * Decode-block caching (--cache-decode): before the release of a finished request, caches the
 * full blocks of its sequence as the next turn's prompt carries it — bytes (len, at 4 a token) or,
 * with a tokenizer, ids (not NULL) — cut by the caller to the tokens whose KV was computed. Does
 * nothing without the KV model, an admission or cache_decode. Returns 0 or -1 with err.
 */
int sb_mock_storage_extend(struct sb_mock_storage *st, uint64_t seq_id, struct sb_mock_kvplan *plan,
                           const char *bytes, size_t len, const uint32_t *ids, size_t nids,
                           struct sb_err *err);

/* Which tiers hold the planned prompt's prefix now (sb_kv_peek); all miss without a KV model. */
void sb_mock_storage_peek(const struct sb_mock_storage *st, const struct sb_mock_kvplan *plan,
                          size_t hit[3], size_t *miss);

/* Empties the prefix cache (sb_kv_reset); returns the tier copies dropped (0 without a KV model).
 */
uint64_t sb_mock_storage_reset(struct sb_mock_storage *st);

void sb_mock_kvplan_release(struct sb_mock_kvplan *plan);

/* Appends the KVBM-shaped, mock_kv_tier_* and LoRA series (Prometheus text). */
int sb_mock_storage_render(const struct sb_mock_storage *st, struct sb_buf *out);

#endif
