/*
 * The mock's storage side (see sb/mock_storage.h): turns a request into KV blocks, admits it
 * through the tier model (whose tier 2 is a real file read and written with O_DIRECT), loads its
 * LoRA adapter, and renders the telemetry a real Stack B exports — KVBM's counters with KVBM's
 * meanings — plus ground-truth per-tier series (mock_kv_tier_*) to check the harness against.
 */
#include "sb/mock_storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/mock_kvcache.h"
#include "sb/mock_lora.h"
#include "sb/mock_metrics.h"
#include "sb/mock_tier2.h"
#include "sb/util.h"

struct sb_mock_storage {
    const struct sb_mock_config *cfg;
    struct sb_kv_cache *kv;
    struct sb_tier2 *t2;
    struct sb_lora *lora;
    uint32_t block_tokens;
    uint64_t tier0_blocks;
    uint64_t nofit_rejects, waits;
};

int sb_mock_storage_open(struct sb_mock_storage **out, const struct sb_mock_config *cfg,
                         struct sb_err *err)
{
    struct sb_mock_storage *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    st->block_tokens = (uint32_t)cfg->kv_block_tokens;
    st->tier0_blocks = (uint64_t)cfg->tier0_blocks;
    if (cfg->tier0_blocks > 0) {
        uint64_t t2_blocks = (uint64_t)cfg->tier2_blocks;
        if (cfg->tier2_bytes > 0)
            t2_blocks = cfg->tier2_bytes / cfg->kv_block_bytes;
        struct sb_kv_io io = {0};
        if (t2_blocks > 0) {
            struct sb_tier2_config tc = {.dir = cfg->tier2_path,
                                         .block_bytes = cfg->kv_block_bytes,
                                         .nblocks = t2_blocks,
                                         .direct = cfg->tier2_direct,
                                         .keep = cfg->keep_tier2};
            if (sb_tier2_open(&st->t2, &tc, err) != 0)
                goto fail;
            if (sb_tier2_warning(st->t2))
                fprintf(stderr, "sparkbench mock: warning: %s\n", sb_tier2_warning(st->t2));
            io.write_block = sb_tier2_io_write;
            io.read_block = sb_tier2_io_read;
            io.ctx = st->t2;
        }
        struct sb_kv_config kc = {
            .block_tokens = st->block_tokens,
            .block_bytes = cfg->kv_block_bytes,
            .tier_blocks = {(uint64_t)cfg->tier0_blocks, (uint64_t)cfg->tier1_blocks, t2_blocks},
            .policy = {(enum sb_kv_policy)cfg->tier_policy[0],
                       (enum sb_kv_policy)cfg->tier_policy[1],
                       (enum sb_kv_policy)cfg->tier_policy[2]},
            .offload = (enum sb_kv_offload)cfg->offload,
            .disk_second_use_filter = cfg->disk_offload_filter,
            .prefix_reuse = cfg->prefix_reuse,
            .tier1_fetch_us = cfg->tier1_fetch_us,
            .tier2_fetch_us = cfg->tier2_fetch_us,
        };
        if (sb_kv_init(&st->kv, &kc, &io, err) != 0)
            goto fail;
    }
    if (cfg->lora_modules && *cfg->lora_modules &&
        sb_lora_init(&st->lora, cfg->lora_modules, cfg->max_loras, cfg->lora_bytes,
                     cfg->lora_load_ms, err) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    sb_mock_storage_close(st);
    return -1;
}

void sb_mock_storage_close(struct sb_mock_storage *st)
{
    if (!st)
        return;
    if (st->kv)
        sb_kv_free(st->kv);
    if (st->t2)
        sb_tier2_close(st->t2);
    if (st->lora)
        sb_lora_free(st->lora);
    free(st);
}

bool sb_mock_storage_kv_enabled(const struct sb_mock_storage *st)
{
    return st && st->kv;
}

int sb_mock_storage_lora_find(const struct sb_mock_storage *st, const char *name)
{
    return st && st->lora ? sb_lora_find(st->lora, name) : -1;
}

size_t sb_mock_storage_lora_count(const struct sb_mock_storage *st)
{
    return st && st->lora ? sb_lora_count(st->lora) : 0;
}

const char *sb_mock_storage_lora_name(const struct sb_mock_storage *st, size_t i)
{
    return sb_lora_name(st->lora, i);
}

int sb_mock_storage_plan(struct sb_mock_storage *st, const char *prompt, size_t len,
                         const uint32_t *ids, size_t nids, long long prompt_tokens,
                         long long max_tokens, int lora, struct sb_mock_kvplan *plan,
                         struct sb_err *err)
{
    memset(plan, 0, sizeof(*plan));
    plan->lora = lora;
    if (!st || !st->kv)
        return 0;
    size_t cap = (ids ? nids : len / 4) / (size_t)st->block_tokens + 1;
    plan->hashes = malloc(cap * sizeof(uint64_t));
    if (!plan->hashes)
        return sb_err_set(err, "out of memory");
    plan->nblocks = ids ? sb_kv_hash_tokens(ids, nids, st->block_tokens, plan->hashes, cap)
                        : sb_kv_hash_prompt(prompt, len, st->block_tokens, plan->hashes, cap);
    long long rest = prompt_tokens - (long long)plan->nblocks * st->block_tokens;
    if (rest < 0)
        rest = 0;
    plan->extra_blocks =
        (size_t)((rest + max_tokens + st->block_tokens - 1) / (long long)st->block_tokens);
    if ((uint64_t)(plan->nblocks + plan->extra_blocks) > st->tier0_blocks) {
        st->nofit_rejects++;
        return 1;
    }
    return 0;
}

int64_t sb_mock_storage_admit(struct sb_mock_storage *st, uint64_t seq_id,
                              struct sb_mock_kvplan *plan, long long prompt_tokens,
                              long long *uncached)
{
    int64_t cost = 0;
    if (st && st->kv) {
        struct sb_kv_match m;
        struct sb_err err;
        int rc =
            sb_kv_admit(st->kv, seq_id, plan->hashes, plan->nblocks, plan->extra_blocks, &m, &err);
        if (rc == SB_KV_NOFIT) {
            st->waits++;
            return -1;
        }
        if (rc == 0) {
            plan->admitted = true;
            for (int t = 0; t < 3; t++)
                plan->hit[t] = m.hit[t];
            plan->miss = m.miss;
            plan->fetch_ns = m.fetch_ns;
            plan->disk_read_bytes = m.disk_read_bytes;
            long long cached = (long long)(m.hit[0] + m.hit[1] + m.hit[2]) * st->block_tokens;
            if (cached > prompt_tokens)
                cached = prompt_tokens;
            plan->cached_tokens = cached;
            *uncached = prompt_tokens - cached;
            cost += (int64_t)m.fetch_ns;
        } else {
            fprintf(stderr, "sparkbench mock: KV admission failed: %s\n", err.msg);
        }
    }
    if (st && st->lora && plan->lora >= 0) {
        bool cold = false;
        int64_t ns = sb_lora_acquire(st->lora, (size_t)plan->lora, &cold);
        if (ns > 0) {
            plan->lora_ns = ns;
            plan->lora_cold = cold;
            cost += ns;
        }
    }
    return cost;
}

void sb_mock_storage_release(struct sb_mock_storage *st, uint64_t seq_id,
                             struct sb_mock_kvplan *plan)
{
    if (st && st->kv && plan->admitted) {
        sb_kv_release(st->kv, seq_id);
        plan->admitted = false;
    }
}

void sb_mock_storage_peek(const struct sb_mock_storage *st, const struct sb_mock_kvplan *plan,
                          size_t hit[3], size_t *miss)
{
    hit[0] = hit[1] = hit[2] = 0;
    *miss = plan->nblocks;
    if (st && st->kv)
        sb_kv_peek(st->kv, plan->hashes, plan->nblocks, hit, miss);
}

int sb_mock_storage_extend(struct sb_mock_storage *st, uint64_t seq_id, struct sb_mock_kvplan *plan,
                           const char *bytes, size_t len, const uint32_t *ids, size_t nids,
                           struct sb_err *err)
{
    if (!st || !st->kv || !plan->admitted || !st->cfg->cache_decode)
        return 0;
    size_t cap = (ids ? nids : len / 4) / (size_t)st->block_tokens + 1;
    uint64_t *h = malloc(cap * sizeof(*h));
    if (!h)
        return sb_err_set(err, "out of memory");
    size_t n = ids ? sb_kv_hash_tokens(ids, nids, st->block_tokens, h, cap)
                   : sb_kv_hash_prompt(bytes, len, st->block_tokens, h, cap);
    size_t added = 0;
    int rc = sb_kv_extend(st->kv, seq_id, h, n, &added, err);
    free(h);
    if (rc == 0)
        plan->decode_blocks = added;
    return rc;
}

uint64_t sb_mock_storage_reset(struct sb_mock_storage *st)
{
    return st && st->kv ? sb_kv_reset(st->kv) : 0;
}

void sb_mock_kvplan_release(struct sb_mock_kvplan *plan)
{
    free(plan->hashes);
    plan->hashes = NULL;
}

static int counter(struct sb_buf *b, const char *name, const char *help, uint64_t v)
{
    return sb_buf_addf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                       (unsigned long long)v);
}

static int gauge(struct sb_buf *b, const char *name, const char *help, double v)
{
    return sb_buf_addf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.6g\n", name, help, name, name, v);
}

int sb_mock_storage_render(const struct sb_mock_storage *st, struct sb_buf *out)
{
    int rc = 0;
    if (!st)
        return 0;
    if (st->kv) {
        struct sb_kv_tier_stats ts[SB_KV_TIERS];
        struct sb_kv_kvbm k;
        sb_kv_get_stats(st->kv, ts, &k);
        /* KVBM's own names, no labels, no _total suffix (lib/llm/src/block_manager/metrics). */
        rc |= counter(out, "kvbm_offload_blocks_d2h", "Blocks offloaded from device to host.",
                      k.offload_d2h);
        rc |= counter(out, "kvbm_offload_blocks_h2d", "Blocks offloaded from host to disk.",
                      k.offload_h2d);
        rc |= counter(out, "kvbm_offload_blocks_d2d", "Blocks offloaded from device to disk.",
                      k.offload_d2d);
        rc |= counter(out, "kvbm_onboard_blocks_h2d", "Blocks onboarded from host to device.",
                      k.onboard_h2d);
        rc |= counter(out, "kvbm_onboard_blocks_d2d", "Blocks onboarded from disk to device.",
                      k.onboard_d2d);
        rc |= counter(out, "kvbm_matched_tokens", "Prompt tokens matched in the cache.",
                      k.matched_tokens);
        rc |= gauge(out, "kvbm_host_cache_hit_rate", "Host tier hit rate (sliding window).",
                    k.host_cache_hit_rate);
        rc |= gauge(out, "kvbm_disk_cache_hit_rate", "Disk tier hit rate (sliding window).",
                    k.disk_cache_hit_rate);
        static const struct {
            const char *name, *help, *type;
            size_t off;
        } series[] = {
            {"mock_kv_tier_lookups_total", "Block lookups per tier.", "counter",
             offsetof(struct sb_kv_tier_stats, lookups)},
            {"mock_kv_tier_hits_total", "Block hits per tier.", "counter",
             offsetof(struct sb_kv_tier_stats, hits)},
            {"mock_kv_tier_misses_total", "Block misses per tier.", "counter",
             offsetof(struct sb_kv_tier_stats, misses)},
            {"mock_kv_tier_blocks_in_total", "Blocks moved into the tier.", "counter",
             offsetof(struct sb_kv_tier_stats, blocks_in)},
            {"mock_kv_tier_blocks_out_total", "Blocks moved out of the tier.", "counter",
             offsetof(struct sb_kv_tier_stats, blocks_out)},
            {"mock_kv_tier_bytes_in_total", "Bytes moved into the tier.", "counter",
             offsetof(struct sb_kv_tier_stats, bytes_in)},
            {"mock_kv_tier_bytes_out_total", "Bytes moved out of the tier.", "counter",
             offsetof(struct sb_kv_tier_stats, bytes_out)},
            {"mock_kv_tier_evictions_total", "Blocks evicted from the tier.", "counter",
             offsetof(struct sb_kv_tier_stats, evictions)},
            {"mock_kv_tier_used_blocks", "Blocks held by the tier.", "gauge",
             offsetof(struct sb_kv_tier_stats, used_blocks)},
            {"mock_kv_tier_capacity_blocks", "Capacity of the tier in blocks.", "gauge",
             offsetof(struct sb_kv_tier_stats, capacity_blocks)},
        };
        for (size_t i = 0; i < SB_ARRAY_SIZE(series); i++) {
            rc |= sb_buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", series[i].name, series[i].help,
                              series[i].name, series[i].type);
            for (int t = 0; t < SB_KV_TIERS; t++) {
                uint64_t v;
                memcpy(&v, (const char *)&ts[t] + series[i].off, sizeof(v));
                rc |= sb_buf_addf(out, "%s{tier=\"%d\"} %llu\n", series[i].name, t,
                                  (unsigned long long)v);
            }
        }
        rc |= gauge(out, "mock_kv_block_size_bytes", "Bytes per KV block.",
                    (double)st->cfg->kv_block_bytes);
        rc |= counter(out, "mock_kv_waits_total",
                      "Admissions deferred because the batch's blocks filled tier 0.", st->waits);
        rc |= counter(out, "mock_kv_nofit_rejects_total",
                      "Requests refused because their blocks can never fit in tier 0.",
                      st->nofit_rejects);
    }
    if (st->t2) {
        struct sb_tier2_stats t;
        sb_tier2_get_stats(st->t2, &t);
        rc |= counter(out, "mock_kv_tier2_read_bytes_total", "Bytes read from the disk tier.",
                      t.read_bytes);
        rc |= counter(out, "mock_kv_tier2_write_bytes_total", "Bytes written to the disk tier.",
                      t.write_bytes);
        rc |= counter(out, "mock_kv_tier2_io_errors_total", "Failed disk-tier reads and writes.",
                      t.read_errors + t.write_errors);
        rc |= sb_histo_render(sb_tier2_read_histo(st->t2), "mock_kv_tier_fetch_seconds",
                              "Tier-2 block read latency, seconds (measured pread).", out);
    }
    if (st->lora) {
        struct sb_lora_stats l;
        sb_lora_get_stats(st->lora, &l);
        rc |= counter(out, "mock_lora_loads_total", "Adapter loads (cold).", l.loads);
        rc |= counter(out, "mock_lora_hits_total", "Adapter uses that found it resident.", l.hits);
        rc |= counter(out, "mock_lora_evictions_total", "Adapters evicted.", l.evictions);
        rc |= counter(out, "mock_lora_read_bytes_total", "Adapter file bytes read.", l.bytes_read);
    }
    return rc ? -1 : 0;
}
