/*
 * dynkv.jsonl: the Test Plan's §6.4 line of KV-tier telemetry, computed from two Prometheus
 * scrapes (the previous and the current one) of the endpoints sysmon watches. Pure: no I/O, no
 * clock; the prom source (source_prom.c) scrapes, calls sb_dynkv_compute() and writes the line.
 *
 * Every value is a per-tick delta of counters. Where each comes from (one static table):
 *   KVBM (names with either prefix, kvbm_ or dynamo_kvbm_; meanings from KVBM's source, where
 *   "h2d offload" is CPU->disk despite its name):
 *     tier1.hits      = Δ onboard_blocks_h2d                 (host -> GPU)
 *     tier1.bytes_in  = Δ offload_blocks_d2h × block         (GPU -> host)
 *     tier1.bytes_out = Δ onboard_blocks_h2d × block
 *     tier2.hits      = Δ onboard_blocks_d2d                 (disk -> GPU)
 *     tier2.bytes_in  = Δ (offload_blocks_h2d + offload_blocks_d2d) × block   (host/GPU -> disk)
 *     tier2.bytes_out = Δ onboard_blocks_d2d × block
 *   the mock's ground truth (mock_kv_tier_*{tier="T"}, src/mock/storage.c), for what KVBM does not
 *   export, and for the fields above when no scrape carries KVBM's series:
 *     tierT.hits / misses / bytes_in / bytes_out = Δ mock_kv_tier_{hits,misses,bytes_in,
 *       bytes_out}_total{tier="T"}; evictions = Δ mock_kv_tier_evictions_total summed over tiers;
 *     tier2.fetch_p50/p95/p99_ms = quantiles of mock_kv_tier_fetch_seconds (the tier-2 block read
 *       latency histogram) over the observations made between the two scrapes, in ms.
 *   prefetches: no server exports it; always null.
 * KVBM and the mock's truth are never reconciled: a field KVBM covers comes from KVBM when any
 * scrape carries it.
 *
 * A field is null (never zero-filled, never invented) when no scrape carries its series, when
 * the scrape that carries it failed this tick or has no previous scrape to subtract, when a
 * counter went down (a reset: that tick is null, the next is a delta again), for bytes when the
 * block size is 0, and for a quantile when no observation fell in the tick.
 *
 * Several scrapes: each series is taken from the first scrape, in the order given, that carries
 * it (its current snapshot, or its previous one when this tick's GET failed), never summed over
 * scrapes: two URLs of one server (the mock's API port and its --metrics-port) must not count
 * twice. Watching several KVBM workers therefore needs one sysmon per worker.
 */
#ifndef SB_DYNKV_H
#define SB_DYNKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/prom.h"

/* The fields of one line, in the order they are written. */
enum sb_dynkv_field {
    SB_DYNKV_T0_HITS,
    SB_DYNKV_T0_MISSES,
    SB_DYNKV_T0_BYTES_IN,
    SB_DYNKV_T0_BYTES_OUT,
    SB_DYNKV_T1_HITS,
    SB_DYNKV_T1_MISSES,
    SB_DYNKV_T1_BYTES_IN,
    SB_DYNKV_T1_BYTES_OUT,
    SB_DYNKV_T2_HITS,
    SB_DYNKV_T2_MISSES,
    SB_DYNKV_T2_BYTES_IN,
    SB_DYNKV_T2_BYTES_OUT,
    SB_DYNKV_T2_FETCH_P50_MS,
    SB_DYNKV_T2_FETCH_P95_MS,
    SB_DYNKV_T2_FETCH_P99_MS,
    SB_DYNKV_EVICTIONS,
    SB_DYNKV_PREFETCHES,
    SB_DYNKV_NFIELDS
};

/* One endpoint's pair of scrapes. */
struct sb_dynkv_scrape {
    const struct sb_prom_snapshot *prev; /* the last successful scrape before cur; NULL: none */
    const struct sb_prom_snapshot *cur;  /* this tick's; NULL when this tick's GET failed */
};

struct sb_dynkv_value {
    bool valid;   /* false: null in the line */
    double value; /* when valid */
    char src[96]; /* the series it came from ("kvbm_onboard_blocks_d2d", ...); "" when null */
};

struct sb_dynkv_line {
    struct sb_dynkv_value f[SB_DYNKV_NFIELDS];
    uint64_t block_bytes; /* kv_block_size_bytes; 0: unknown (written as null) */
};

/* The field's key in the line's "src" map, e.g. "tier2.hits"; "" for an unknown field. */
const char *sb_dynkv_field_key(enum sb_dynkv_field f);

/*
 * Computes one line from n scrapes (see the rules above). block_bytes is the size of one KV block
 * (0: bytes from KVBM block counts are null). Cannot fail.
 */
void sb_dynkv_compute(const struct sb_dynkv_scrape *scrapes, size_t n, uint64_t block_bytes,
                      struct sb_dynkv_line *out);

/*
 * Appends the line as JSON with its '\n':
 *   {"ts":<ts_ns as unix seconds, 6 decimals>,"tier0":{"hits","misses","bytes_in","bytes_out"},
 *    "tier1":{...},"tier2":{...,"fetch_p50_ms","fetch_p95_ms","fetch_p99_ms"},
 *    "kv_block_size_bytes":..,"evictions":..,"prefetches":..,"src":{"tier2.hits":"...",...}}
 * src names only the non-null fields. Returns 0, or -1 when out is full.
 */
int sb_dynkv_render(const struct sb_dynkv_line *line, uint64_t ts_ns, struct sb_buf *out);

/* True when the snapshot holds any KV-tier series: kvbm_*, dynamo_kvbm_* or mock_kv_tier_*. */
bool sb_dynkv_has_kv_series(const struct sb_prom_snapshot *s);

#endif
