/*
 * Unit tests for the dynkv.jsonl mapping (sb/dynkv.h): pairs of scrapes from fixtures written
 * from KVBM's, Dynamo's and vLLM's real series (tests/data/prom/) go in, one line comes out, and
 * every field is checked against arithmetic done by hand: KVBM block deltas with both prefixes,
 * bytes = blocks x the block size, the mock's ground truth for misses, tier 0, evictions and the
 * tier-2 fetch quantiles, KVBM winning over a disagreeing mock, the mock as fallback without
 * KVBM, nulls for absent series, a failed or first scrape and a counter reset, the src map, and
 * the rendered JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>

#include "sb/buf.h"
#include "sb/dynkv.h"
#include "sb/prom.h"
#include "sb/util.h"

#define B64K  65536.0
#define B128K 131072.0
#define B256K 262144.0

/* A snapshot of fixture tests/data/prom/<name>; lines containing drop (when not NULL) are left
   out, to make a page without one family. */
static struct sb_prom_snapshot *load(const char *name, const char *drop)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/prom/%s", SB_TEST_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    char line[4096];
    while (fgets(line, sizeof(line), f))
        if (!drop || !strstr(line, drop))
            assert_int_equal(sb_buf_adds(&b, line), 0);
    fclose(f);
    struct sb_prom_snapshot *s = NULL;
    struct sb_err err;
    assert_int_equal(sb_prom_snapshot_parse(&s, b.data ? b.data : "", b.len, &err), 0);
    assert_int_equal(sb_prom_snapshot_bad_lines(s), 0);
    sb_buf_release(&b);
    return s;
}

/* What one field should be: NAN for null, with the series it came from. */
struct expect {
    enum sb_dynkv_field f;
    double value;
    const char *src;
};

static void check(const struct sb_dynkv_line *l, const struct expect *e, size_t n)
{
    bool seen[SB_DYNKV_NFIELDS] = {false};
    for (size_t i = 0; i < n; i++) {
        const struct sb_dynkv_value *v = &l->f[e[i].f];
        seen[e[i].f] = true;
        if (isnan(e[i].value)) {
            if (v->valid)
                fail_msg("%s: expected null, got %g from %s", sb_dynkv_field_key(e[i].f), v->value,
                         v->src);
            assert_string_equal(v->src, "");
            continue;
        }
        if (!v->valid)
            fail_msg("%s: expected %g, got null", sb_dynkv_field_key(e[i].f), e[i].value);
        if (fabs(v->value - e[i].value) > 1e-9 * fmax(1.0, fabs(e[i].value)))
            fail_msg("%s: expected %.9g, got %.9g", sb_dynkv_field_key(e[i].f), e[i].value,
                     v->value);
        assert_string_equal(v->src, e[i].src);
    }
    /* Every field not listed must be null. */
    for (int f = 0; f < SB_DYNKV_NFIELDS; f++)
        if (!seen[f] && l->f[f].valid)
            fail_msg("%s: expected null, got %g", sb_dynkv_field_key((enum sb_dynkv_field)f),
                     l->f[f].value);
}

static void compute1(const char *a, const char *b, uint64_t block, struct sb_dynkv_line *l)
{
    struct sb_prom_snapshot *pa = load(a, NULL), *pb = load(b, NULL);
    struct sb_dynkv_scrape sc = {pa, pb};
    sb_dynkv_compute(&sc, 1, block, l);
    sb_prom_snapshot_free(pa);
    sb_prom_snapshot_free(pb);
}

static void test_kvbm_prefix(void **state)
{
    (void)state;
    /* kvbm.prom -> kvbm_next.prom: d2h +68, h2d +29, d2d +3, onboard h2d +16, onboard d2d +10. */
    struct sb_dynkv_line l;
    compute1("kvbm.prom", "kvbm_next.prom", 65536, &l);
    const struct expect e[] = {
        {SB_DYNKV_T1_HITS, 16, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T1_BYTES_IN, 68 * B64K, "kvbm_offload_blocks_d2h"},
        {SB_DYNKV_T1_BYTES_OUT, 16 * B64K, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T2_HITS, 10, "kvbm_onboard_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_IN, (29 + 3) * B64K, "kvbm_offload_blocks_h2d+kvbm_offload_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_OUT, 10 * B64K, "kvbm_onboard_blocks_d2d"},
    };
    check(&l, e, SB_ARRAY_SIZE(e)); /* misses, tier 0, evictions, fetch: no source, null */
    assert_int_equal(l.block_bytes, 65536);
}

static void test_dynamo_kvbm_prefix(void **state)
{
    (void)state;
    /* dynamo_kvbm.prom -> _next: d2h +52, h2d +6, d2d +3, onboard h2d +18, onboard d2d +7. */
    struct sb_dynkv_line l;
    compute1("dynamo_kvbm.prom", "dynamo_kvbm_next.prom", 131072, &l);
    const struct expect e[] = {
        {SB_DYNKV_T1_HITS, 18, "dynamo_kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T1_BYTES_IN, 52 * B128K, "dynamo_kvbm_offload_blocks_d2h"},
        {SB_DYNKV_T1_BYTES_OUT, 18 * B128K, "dynamo_kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T2_HITS, 7, "dynamo_kvbm_onboard_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_IN, 9 * B128K,
         "dynamo_kvbm_offload_blocks_h2d+dynamo_kvbm_offload_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_OUT, 7 * B128K, "dynamo_kvbm_onboard_blocks_d2d"},
    };
    check(&l, e, SB_ARRAY_SIZE(e));
}

static void test_block_size_unknown(void **state)
{
    (void)state;
    struct sb_dynkv_line l;
    compute1("kvbm.prom", "kvbm_next.prom", 0, &l);
    const struct expect e[] = {
        {SB_DYNKV_T1_HITS, 16, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T2_HITS, 10, "kvbm_onboard_blocks_d2d"},
    };
    check(&l, e, SB_ARRAY_SIZE(e)); /* every byte field null */
}

static void test_counter_reset(void **state)
{
    (void)state;
    struct sb_dynkv_line l;
    /* The worker restarted between the scrapes: every counter went down, every field null. */
    compute1("kvbm_next.prom", "kvbm_restart.prom", 65536, &l);
    check(&l, NULL, 0);
    /* The tick after: a delta again (restart -> kvbm.prom: onboard d2d 0 -> 96, h2d 1 -> 384,
       offload d2h 5 -> 1432, h2d 2 -> 611, d2d 0 -> 0). */
    compute1("kvbm_restart.prom", "kvbm.prom", 65536, &l);
    const struct expect e[] = {
        {SB_DYNKV_T1_HITS, 383, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T1_BYTES_IN, 1427 * B64K, "kvbm_offload_blocks_d2h"},
        {SB_DYNKV_T1_BYTES_OUT, 383 * B64K, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T2_HITS, 96, "kvbm_onboard_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_IN, 609 * B64K, "kvbm_offload_blocks_h2d+kvbm_offload_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_OUT, 96 * B64K, "kvbm_onboard_blocks_d2d"},
    };
    check(&l, e, SB_ARRAY_SIZE(e));
}

/* The mock's page: KVBM counters plus its ground truth. Between mock_kv_a and mock_kv_b:
   KVBM d2h +20, h2d +8, d2d +0, onboard h2d +6, onboard d2d +12; mock hits {+60, +6, +11},
   misses {+30, +24, +12}, bytes_in {+18, +20, +8} blocks, bytes_out {+20, +6, +11} blocks,
   evictions {+20, +4, +1}; 12 tier-2 reads: 4 in (0.1, 0.25] ms, 8 in (0.25, 0.5] ms. */
static void test_mock_ground_truth(void **state)
{
    (void)state;
    struct sb_dynkv_line l;
    compute1("mock_kv_a.prom", "mock_kv_b.prom", 262144, &l);
    /* Quantiles as PromQL interpolates: rank q x 12 inside the (0.25, 0.5] ms bucket, which
       starts at cumulative 4 and holds 8: 0.25 + 0.25 x (12q - 4) / 8. */
    const struct expect e[] = {
        {SB_DYNKV_T0_HITS, 60, "mock_kv_tier_hits_total{tier=\"0\"}"},
        {SB_DYNKV_T0_MISSES, 30, "mock_kv_tier_misses_total{tier=\"0\"}"},
        {SB_DYNKV_T0_BYTES_IN, 18 * B256K, "mock_kv_tier_bytes_in_total{tier=\"0\"}"},
        {SB_DYNKV_T0_BYTES_OUT, 20 * B256K, "mock_kv_tier_bytes_out_total{tier=\"0\"}"},
        {SB_DYNKV_T1_HITS, 6, "kvbm_onboard_blocks_h2d"},
        {SB_DYNKV_T1_MISSES, 24, "mock_kv_tier_misses_total{tier=\"1\"}"},
        {SB_DYNKV_T1_BYTES_IN, 20 * B256K, "kvbm_offload_blocks_d2h"},
        {SB_DYNKV_T1_BYTES_OUT, 6 * B256K, "kvbm_onboard_blocks_h2d"},
        /* KVBM says 12, the mock's truth 11: not reconciled, KVBM's is taken. */
        {SB_DYNKV_T2_HITS, 12, "kvbm_onboard_blocks_d2d"},
        {SB_DYNKV_T2_MISSES, 12, "mock_kv_tier_misses_total{tier=\"2\"}"},
        {SB_DYNKV_T2_BYTES_IN, 8 * B256K, "kvbm_offload_blocks_h2d+kvbm_offload_blocks_d2d"},
        {SB_DYNKV_T2_BYTES_OUT, 12 * B256K, "kvbm_onboard_blocks_d2d"},
        {SB_DYNKV_T2_FETCH_P50_MS, 0.3125, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_T2_FETCH_P95_MS, 0.48125, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_T2_FETCH_P99_MS, 0.49625, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_EVICTIONS, 25, "mock_kv_tier_evictions_total"},
        {SB_DYNKV_PREFETCHES, NAN, NULL}, /* nobody exports it */
    };
    check(&l, e, SB_ARRAY_SIZE(e));
}

static void test_mock_without_kvbm(void **state)
{
    (void)state;
    /* The same pages without KVBM's series: the mock's truth fills the fields KVBM covers. */
    struct sb_prom_snapshot *a = load("mock_kv_a.prom", "kvbm_"),
                            *b = load("mock_kv_b.prom", "kvbm_");
    struct sb_dynkv_scrape sc = {a, b};
    struct sb_dynkv_line l;
    sb_dynkv_compute(&sc, 1, 262144, &l);
    const struct expect e[] = {
        {SB_DYNKV_T0_HITS, 60, "mock_kv_tier_hits_total{tier=\"0\"}"},
        {SB_DYNKV_T0_MISSES, 30, "mock_kv_tier_misses_total{tier=\"0\"}"},
        {SB_DYNKV_T0_BYTES_IN, 18 * B256K, "mock_kv_tier_bytes_in_total{tier=\"0\"}"},
        {SB_DYNKV_T0_BYTES_OUT, 20 * B256K, "mock_kv_tier_bytes_out_total{tier=\"0\"}"},
        {SB_DYNKV_T1_HITS, 6, "mock_kv_tier_hits_total{tier=\"1\"}"},
        {SB_DYNKV_T1_MISSES, 24, "mock_kv_tier_misses_total{tier=\"1\"}"},
        {SB_DYNKV_T1_BYTES_IN, 20 * B256K, "mock_kv_tier_bytes_in_total{tier=\"1\"}"},
        {SB_DYNKV_T1_BYTES_OUT, 6 * B256K, "mock_kv_tier_bytes_out_total{tier=\"1\"}"},
        {SB_DYNKV_T2_HITS, 11, "mock_kv_tier_hits_total{tier=\"2\"}"},
        {SB_DYNKV_T2_MISSES, 12, "mock_kv_tier_misses_total{tier=\"2\"}"},
        {SB_DYNKV_T2_BYTES_IN, 8 * B256K, "mock_kv_tier_bytes_in_total{tier=\"2\"}"},
        {SB_DYNKV_T2_BYTES_OUT, 11 * B256K, "mock_kv_tier_bytes_out_total{tier=\"2\"}"},
        {SB_DYNKV_T2_FETCH_P50_MS, 0.3125, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_T2_FETCH_P95_MS, 0.48125, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_T2_FETCH_P99_MS, 0.49625, "mock_kv_tier_fetch_seconds"},
        {SB_DYNKV_EVICTIONS, 25, "mock_kv_tier_evictions_total"},
    };
    check(&l, e, SB_ARRAY_SIZE(e));
    /* No reads between two equal pages: the quantiles are null, the deltas 0. */
    struct sb_dynkv_scrape same = {b, b};
    sb_dynkv_compute(&same, 1, 262144, &l);
    assert_false(l.f[SB_DYNKV_T2_FETCH_P95_MS].valid);
    assert_true(l.f[SB_DYNKV_T2_HITS].valid);
    assert_true(l.f[SB_DYNKV_T2_HITS].value == 0);
    sb_prom_snapshot_free(a);
    sb_prom_snapshot_free(b);
}

static void test_pages_without_kv(void **state)
{
    (void)state;
    /* A Dynamo frontend page and a vLLM page carry no KV-tier series: every field null. */
    static const char *const pages[] = {"dynamo_frontend.prom", "vllm.prom"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(pages); i++) {
        struct sb_dynkv_line l;
        compute1(pages[i], pages[i], 65536, &l);
        check(&l, NULL, 0);
        struct sb_prom_snapshot *s = load(pages[i], NULL);
        assert_false(sb_dynkv_has_kv_series(s));
        sb_prom_snapshot_free(s);
    }
    static const char *const kv_pages[] = {"kvbm.prom", "dynamo_kvbm.prom", "mock_kv_a.prom",
                                           "mock.prom"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(kv_pages); i++) {
        struct sb_prom_snapshot *s = load(kv_pages[i], NULL);
        assert_true(sb_dynkv_has_kv_series(s));
        sb_prom_snapshot_free(s);
    }
    struct sb_prom_snapshot *m = load("mock_kv_a.prom", "kvbm_");
    assert_true(sb_dynkv_has_kv_series(m)); /* mock_kv_tier_* alone counts */
    sb_prom_snapshot_free(m);
    assert_false(sb_dynkv_has_kv_series(NULL));
}

static void test_several_scrapes(void **state)
{
    (void)state;
    struct sb_prom_snapshot *fa = load("dynamo_frontend.prom", NULL);
    struct sb_prom_snapshot *ka = load("kvbm.prom", NULL), *kb = load("kvbm_next.prom", NULL);
    struct sb_prom_snapshot *da = load("dynamo_kvbm.prom", NULL),
                            *db = load("dynamo_kvbm_next.prom", NULL);
    struct sb_dynkv_line l;

    /* The frontend first, KVBM second: KVBM's series come from the second URL. */
    struct sb_dynkv_scrape v1[] = {{fa, fa}, {ka, kb}};
    sb_dynkv_compute(v1, 2, 65536, &l);
    assert_true(l.f[SB_DYNKV_T2_HITS].valid && l.f[SB_DYNKV_T2_HITS].value == 10);

    /* Two URLs carrying KVBM: the first wins, nothing is summed. */
    struct sb_dynkv_scrape v2[] = {{ka, kb}, {da, db}};
    sb_dynkv_compute(v2, 2, 65536, &l);
    assert_true(l.f[SB_DYNKV_T2_HITS].value == 10);
    assert_string_equal(l.f[SB_DYNKV_T2_HITS].src, "kvbm_onboard_blocks_d2d");

    /* The first URL's GET failed this tick: its fields are null, not taken from the second
       (which would count a later tick's delta twice). */
    struct sb_dynkv_scrape v3[] = {{ka, NULL}, {da, db}};
    sb_dynkv_compute(v3, 2, 65536, &l);
    check(&l, NULL, 0);

    /* The first scrape of a URL has nothing to subtract. */
    struct sb_dynkv_scrape v4[] = {{NULL, kb}};
    sb_dynkv_compute(v4, 1, 65536, &l);
    check(&l, NULL, 0);

    /* No scrape at all. */
    sb_dynkv_compute(NULL, 0, 65536, &l);
    check(&l, NULL, 0);

    sb_prom_snapshot_free(fa);
    sb_prom_snapshot_free(ka);
    sb_prom_snapshot_free(kb);
    sb_prom_snapshot_free(da);
    sb_prom_snapshot_free(db);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(x));
    return x->valuedouble;
}

static void test_render(void **state)
{
    (void)state;
    struct sb_dynkv_line l;
    compute1("mock_kv_a.prom", "mock_kv_b.prom", 262144, &l);
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    assert_int_equal(sb_dynkv_render(&l, 1731624501123000000ull, &b), 0);
    assert_true(b.len > 2 && b.data[b.len - 1] == '\n');
    assert_null(memchr(b.data, '\n', b.len - 1)); /* one line */
    assert_int_equal(strncmp(b.data, "{\"ts\":1731624501.123000,\"tier0\":{", 33), 0);
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(j, "tier0");
    const cJSON *t1 = cJSON_GetObjectItemCaseSensitive(j, "tier1");
    const cJSON *t2 = cJSON_GetObjectItemCaseSensitive(j, "tier2");
    assert_true(num(t0, "hits") == 60 && num(t0, "misses") == 30);
    assert_true(num(t1, "bytes_in") == 20 * B256K && num(t1, "bytes_out") == 6 * B256K);
    assert_true(num(t2, "hits") == 12 && num(t2, "bytes_out") == 12 * B256K);
    assert_true(fabs(num(t2, "fetch_p95_ms") - 0.48125) < 1e-9);
    assert_int_equal(cJSON_GetArraySize(t0), 4);
    assert_int_equal(cJSON_GetArraySize(t2), 7);
    assert_true(num(j, "kv_block_size_bytes") == 262144);
    assert_true(num(j, "evictions") == 25);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "prefetches")));
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "src");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(src, "tier2.hits")->valuestring,
                        "kvbm_onboard_blocks_d2d");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(src, "tier0.hits")->valuestring,
                        "mock_kv_tier_hits_total{tier=\"0\"}");
    assert_null(cJSON_GetObjectItemCaseSensitive(src, "prefetches")); /* null: not named */
    assert_int_equal(cJSON_GetArraySize(src), SB_DYNKV_NFIELDS - 1);
    cJSON_Delete(j);

    /* A line with nothing known: every value null, an empty src map, block size null. */
    compute1("vllm.prom", "vllm.prom", 0, &l);
    sb_buf_reset(&b);
    assert_int_equal(sb_dynkv_render(&l, 5000000ull, &b), 0);
    j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_true(fabs(num(j, "ts") - 0.005) < 1e-9);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "kv_block_size_bytes")));
    assert_true(cJSON_IsNull(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "tier2"), "hits")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "src")), 0);
    cJSON_Delete(j);
    sb_buf_release(&b);
}

static void test_field_keys(void **state)
{
    (void)state;
    assert_string_equal(sb_dynkv_field_key(SB_DYNKV_T0_HITS), "tier0.hits");
    assert_string_equal(sb_dynkv_field_key(SB_DYNKV_T2_BYTES_IN), "tier2.bytes_in");
    assert_string_equal(sb_dynkv_field_key(SB_DYNKV_T2_FETCH_P99_MS), "tier2.fetch_p99_ms");
    assert_string_equal(sb_dynkv_field_key(SB_DYNKV_PREFETCHES), "prefetches");
    assert_string_equal(sb_dynkv_field_key(SB_DYNKV_NFIELDS), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvbm_prefix),
        cmocka_unit_test(test_dynamo_kvbm_prefix),
        cmocka_unit_test(test_block_size_unknown),
        cmocka_unit_test(test_counter_reset),
        cmocka_unit_test(test_mock_ground_truth),
        cmocka_unit_test(test_mock_without_kvbm),
        cmocka_unit_test(test_pages_without_kv),
        cmocka_unit_test(test_several_scrapes),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_field_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
