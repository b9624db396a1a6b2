/*
 * The dynkv.jsonl mapping (see sb/dynkv.h): one table says where each field of the Test Plan's
 * §6.4 line comes from; two scrapes in, one line out, no I/O.
 */
#include "sb/dynkv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sb/util.h"

/* Where one field comes from. A field KVBM covers lists its counters (summed, without prefix);
   the mock's ground truth is the fallback, and the only source of the rest. */
struct dynkv_rule {
    const char *key;
    const char *kvbm[2]; /* KVBM counters summed, names after the kvbm_ prefix; NULL: none */
    bool kvbm_bytes;     /* KVBM counts blocks: multiply by the block size */
    const char *mock;    /* the mock's counter, or the histogram family when quantile > 0 */
    const char *tier;    /* the mock series' tier label; NULL: summed over every tier */
    double quantile;     /* > 0: a quantile of the `mock` histogram over the tick, in ms */
};

static const struct dynkv_rule rules[SB_DYNKV_NFIELDS] = {
    [SB_DYNKV_T0_HITS] = {"tier0.hits", {NULL}, false, "mock_kv_tier_hits_total", "0", 0},
    [SB_DYNKV_T0_MISSES] = {"tier0.misses", {NULL}, false, "mock_kv_tier_misses_total", "0", 0},
    [SB_DYNKV_T0_BYTES_IN] =
        {"tier0.bytes_in", {NULL}, false, "mock_kv_tier_bytes_in_total", "0", 0},
    [SB_DYNKV_T0_BYTES_OUT] =
        {"tier0.bytes_out", {NULL}, false, "mock_kv_tier_bytes_out_total", "0", 0},
    [SB_DYNKV_T1_HITS] =
        {"tier1.hits", {"onboard_blocks_h2d"}, false, "mock_kv_tier_hits_total", "1", 0},
    [SB_DYNKV_T1_MISSES] = {"tier1.misses", {NULL}, false, "mock_kv_tier_misses_total", "1", 0},
    [SB_DYNKV_T1_BYTES_IN] =
        {"tier1.bytes_in", {"offload_blocks_d2h"}, true, "mock_kv_tier_bytes_in_total", "1", 0},
    [SB_DYNKV_T1_BYTES_OUT] =
        {"tier1.bytes_out", {"onboard_blocks_h2d"}, true, "mock_kv_tier_bytes_out_total", "1", 0},
    [SB_DYNKV_T2_HITS] =
        {"tier2.hits", {"onboard_blocks_d2d"}, false, "mock_kv_tier_hits_total", "2", 0},
    [SB_DYNKV_T2_MISSES] = {"tier2.misses", {NULL}, false, "mock_kv_tier_misses_total", "2", 0},
    [SB_DYNKV_T2_BYTES_IN] = {"tier2.bytes_in",
                              {"offload_blocks_h2d", "offload_blocks_d2d"},
                              true,
                              "mock_kv_tier_bytes_in_total",
                              "2",
                              0},
    [SB_DYNKV_T2_BYTES_OUT] =
        {"tier2.bytes_out", {"onboard_blocks_d2d"}, true, "mock_kv_tier_bytes_out_total", "2", 0},
    [SB_DYNKV_T2_FETCH_P50_MS] =
        {"tier2.fetch_p50_ms", {NULL}, false, "mock_kv_tier_fetch_seconds", NULL, 0.50},
    [SB_DYNKV_T2_FETCH_P95_MS] =
        {"tier2.fetch_p95_ms", {NULL}, false, "mock_kv_tier_fetch_seconds", NULL, 0.95},
    [SB_DYNKV_T2_FETCH_P99_MS] =
        {"tier2.fetch_p99_ms", {NULL}, false, "mock_kv_tier_fetch_seconds", NULL, 0.99},
    [SB_DYNKV_EVICTIONS] = {"evictions", {NULL}, false, "mock_kv_tier_evictions_total", NULL, 0},
    /* Neither KVBM nor the mock exports prefetches. */
    [SB_DYNKV_PREFETCHES] = {"prefetches", {NULL}, false, NULL, NULL, 0},
};

/* KVBM's two spellings, the one in its code first. */
static const char *const kvbm_prefixes[] = {"kvbm_", "dynamo_kvbm_"};

const char *sb_dynkv_field_key(enum sb_dynkv_field f)
{
    return (unsigned)f < SB_DYNKV_NFIELDS ? rules[f].key : "";
}

/* The value of counter `name` in s, restricted to tier="<tier>" when tier is not NULL. */
static bool value_of(const struct sb_prom_snapshot *s, const char *name, const char *tier,
                     double *out)
{
    const char *pair[2] = {"tier", tier};
    return s && sb_prom_snapshot_sum(s, name, tier ? pair : NULL, tier ? 1 : 0, out);
}

/* The scrape's latest snapshot: this tick's, or the last good one when this tick's GET failed. */
static const struct sb_prom_snapshot *latest(const struct sb_dynkv_scrape *sc)
{
    return sc->cur ? sc->cur : sc->prev;
}

/* The first scrape that carries series `name` (tier as in value_of()), or NULL. */
static const struct sb_dynkv_scrape *carrier(const struct sb_dynkv_scrape *v, size_t n,
                                             const char *name, const char *tier)
{
    double x;
    for (size_t i = 0; i < n; i++)
        if (value_of(latest(&v[i]), name, tier, &x))
            return &v[i];
    return NULL;
}

/* Δ over sc of the sum of counters names[0..k); false (null) when sc failed this tick, has no
   previous scrape, lacks one of them, or one went down (a reset). */
static bool delta(const struct sb_dynkv_scrape *sc, const char *const *names, size_t k,
                  const char *tier, double *out)
{
    if (!sc->cur || !sc->prev)
        return false;
    double sum = 0;
    for (size_t i = 0; i < k; i++) {
        double a, b;
        if (!value_of(sc->prev, names[i], tier, &a) || !value_of(sc->cur, names[i], tier, &b) ||
            !(b >= a))
            return false;
        sum += b - a;
    }
    if (!isfinite(sum))
        return false;
    *out = sum;
    return true;
}

/* The field from KVBM's counters. Returns false when no scrape carries them (the caller falls
   back to the mock's series); true otherwise, with v valid or null. */
static bool from_kvbm(const struct dynkv_rule *r, const struct sb_dynkv_scrape *v, size_t n,
                      uint64_t block_bytes, struct sb_dynkv_value *out)
{
    if (!r->kvbm[0])
        return false;
    /* The first scrape carrying the first counter, under the first prefix it has. */
    const struct sb_dynkv_scrape *sc = NULL;
    const char *prefix = NULL;
    for (size_t i = 0; i < n && !sc; i++) {
        for (size_t p = 0; p < SB_ARRAY_SIZE(kvbm_prefixes) && !sc; p++) {
            char name[48];
            double x;
            snprintf(name, sizeof(name), "%s%s", kvbm_prefixes[p], r->kvbm[0]);
            if (value_of(latest(&v[i]), name, NULL, &x)) {
                sc = &v[i];
                prefix = kvbm_prefixes[p];
            }
        }
    }
    if (!sc)
        return false;
    char names[2][48];
    const char *ptrs[2];
    size_t k = 0;
    for (; k < SB_ARRAY_SIZE(r->kvbm) && r->kvbm[k]; k++) {
        snprintf(names[k], sizeof(names[k]), "%s%s", prefix, r->kvbm[k]);
        ptrs[k] = names[k];
    }
    if (k == 1)
        snprintf(out->src, sizeof(out->src), "%s", names[0]);
    else
        snprintf(out->src, sizeof(out->src), "%s+%s", names[0], names[1]);
    double d;
    if ((r->kvbm_bytes && block_bytes == 0) || !delta(sc, ptrs, k, NULL, &d)) {
        out->src[0] = '\0';
        return true;
    }
    out->valid = true;
    out->value = r->kvbm_bytes ? d * (double)block_bytes : d;
    return true;
}

/* The field from the mock's ground truth (counter delta or histogram quantile). */
static void from_mock(const struct dynkv_rule *r, const struct sb_dynkv_scrape *v, size_t n,
                      struct sb_dynkv_value *out)
{
    if (!r->mock)
        return;
    if (r->quantile > 0) {
        char count[128];
        snprintf(count, sizeof(count), "%s_count", r->mock);
        const struct sb_dynkv_scrape *sc = carrier(v, n, count, NULL);
        if (!sc || !sc->cur || !sc->prev)
            return;
        double q = sb_prom_histogram_quantile(sc->prev, sc->cur, r->mock, r->quantile);
        if (!isfinite(q))
            return;
        out->valid = true;
        out->value = q * 1000.0;
        snprintf(out->src, sizeof(out->src), "%s", r->mock);
        return;
    }
    const struct sb_dynkv_scrape *sc = carrier(v, n, r->mock, r->tier);
    double d;
    if (!sc || !delta(sc, &r->mock, 1, r->tier, &d))
        return;
    out->valid = true;
    out->value = d;
    if (r->tier)
        snprintf(out->src, sizeof(out->src), "%s{tier=\"%s\"}", r->mock, r->tier);
    else
        snprintf(out->src, sizeof(out->src), "%s", r->mock);
}

void sb_dynkv_compute(const struct sb_dynkv_scrape *scrapes, size_t n, uint64_t block_bytes,
                      struct sb_dynkv_line *out)
{
    memset(out, 0, sizeof(*out));
    out->block_bytes = block_bytes;
    for (size_t f = 0; f < SB_DYNKV_NFIELDS; f++) {
        const struct dynkv_rule *r = &rules[f];
        if (!from_kvbm(r, scrapes, n, block_bytes, &out->f[f]))
            from_mock(r, scrapes, n, &out->f[f]);
    }
}

static int add_value(struct sb_buf *b, const char *key, const struct sb_dynkv_value *v)
{
    if (!v->valid)
        return sb_buf_addf(b, "\"%s\":null", key);
    if (v->value == floor(v->value) && fabs(v->value) < 1e15)
        return sb_buf_addf(b, "\"%s\":%.0f", key, v->value);
    return sb_buf_addf(b, "\"%s\":%.6g", key, v->value);
}

int sb_dynkv_render(const struct sb_dynkv_line *line, uint64_t ts_ns, struct sb_buf *out)
{
    static const char *const tier_keys[] = {"hits", "misses", "bytes_in", "bytes_out"};
    static const char *const fetch_keys[] = {"fetch_p50_ms", "fetch_p95_ms", "fetch_p99_ms"};
    int rc = sb_buf_addf(out, "{\"ts\":%llu.%06llu", (unsigned long long)(ts_ns / 1000000000ull),
                         (unsigned long long)((ts_ns % 1000000000ull) / 1000));
    for (int t = 0; t < 3; t++) {
        rc |= sb_buf_addf(out, ",\"tier%d\":{", t);
        for (int k = 0; k < 4; k++) {
            if (k)
                rc |= sb_buf_adds(out, ",");
            rc |= add_value(out, tier_keys[k], &line->f[SB_DYNKV_T0_HITS + 4 * t + k]);
        }
        for (int k = 0; t == 2 && k < 3; k++) {
            rc |= sb_buf_adds(out, ",");
            rc |= add_value(out, fetch_keys[k], &line->f[SB_DYNKV_T2_FETCH_P50_MS + k]);
        }
        rc |= sb_buf_adds(out, "}");
    }
    if (line->block_bytes)
        rc |= sb_buf_addf(out, ",\"kv_block_size_bytes\":%llu",
                          (unsigned long long)line->block_bytes);
    else
        rc |= sb_buf_adds(out, ",\"kv_block_size_bytes\":null");
    rc |= sb_buf_adds(out, ",");
    rc |= add_value(out, "evictions", &line->f[SB_DYNKV_EVICTIONS]);
    rc |= sb_buf_adds(out, ",");
    rc |= add_value(out, "prefetches", &line->f[SB_DYNKV_PREFETCHES]);
    rc |= sb_buf_adds(out, ",\"src\":{");
    bool first = true;
    for (size_t f = 0; f < SB_DYNKV_NFIELDS; f++) {
        const struct sb_dynkv_value *v = &line->f[f];
        if (!v->valid)
            continue;
        rc |= sb_buf_addf(out, "%s\"%s\":\"", first ? "" : ",", rules[f].key);
        rc |= sb_buf_add_json_escaped(out, v->src, strlen(v->src));
        rc |= sb_buf_adds(out, "\"");
        first = false;
    }
    rc |= sb_buf_adds(out, "}}\n");
    return rc ? -1 : 0;
}

bool sb_dynkv_has_kv_series(const struct sb_prom_snapshot *s)
{
    static const char *const prefixes[] = {"kvbm_", "dynamo_kvbm_", "mock_kv_tier_"};
    size_t n = s ? sb_prom_snapshot_count(s) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct sb_prom_sample *x = sb_prom_snapshot_sample(s, i);
        for (size_t p = 0; p < SB_ARRAY_SIZE(prefixes); p++)
            if (strncmp(x->name, prefixes[p], strlen(prefixes[p])) == 0)
                return true;
    }
    return false;
}
