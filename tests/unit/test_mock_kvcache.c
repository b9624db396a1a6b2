/*
 * Unit tests for sb/mock_kvcache.h: chained block hashes, the eviction order of each policy on
 * scripted sequences with tiny tiers, pinning, the offload modes and the second-use filter, disk
 * read errors, a second pass over the same prompts served from disk, and the accounting identities
 * after a long random workload. The disk is a fake that counts calls, returns fixed nanoseconds,
 * and checks that only written slots are read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sb/mock_kvcache.h"
#include "sb/util.h"

#define T0 (1u << SB_KV_T0)
#define T1 (1u << SB_KV_T1)
#define T2 (1u << SB_KV_T2)

/* ---- a fake disk ---- */

struct fake_io {
    uint64_t nslots;
    uint64_t writes, reads; /* successful calls */
    uint64_t failed_writes, failed_reads;
    uint64_t bad_slot, unwritten_read; /* misuse by the cache; must stay 0 */
    int64_t write_ns, read_ns;
    bool fail_writes, fail_reads;
    uint8_t written[4096];
};

static int64_t fake_write(void *ctx, uint64_t slot)
{
    struct fake_io *f = ctx;
    if (slot >= f->nslots || slot >= sizeof(f->written)) {
        f->bad_slot++;
        return -1;
    }
    if (f->fail_writes) {
        f->failed_writes++;
        f->written[slot] = 0;
        return -5;
    }
    f->writes++;
    f->written[slot] = 1;
    return f->write_ns;
}

static int64_t fake_read(void *ctx, uint64_t slot)
{
    struct fake_io *f = ctx;
    if (slot >= f->nslots || slot >= sizeof(f->written)) {
        f->bad_slot++;
        return -1;
    }
    if (!f->written[slot])
        f->unwritten_read++;
    if (f->fail_reads) {
        f->failed_reads++;
        return -5;
    }
    f->reads++;
    return f->read_ns;
}

static struct sb_kv_cache *make(struct sb_kv_config cfg, struct fake_io *f)
{
    memset(f, 0, sizeof(*f));
    f->nslots = cfg.tier_blocks[SB_KV_T2];
    f->write_ns = 1000;
    f->read_ns = 2000;
    struct sb_kv_io io = {fake_write, fake_read, f};
    struct sb_kv_cache *kv = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    int rc = sb_kv_init(&kv, &cfg, &io, &err);
    if (rc != 0)
        fail_msg("sb_kv_init: %s", err.msg);
    assert_non_null(kv);
    return kv;
}

static struct sb_kv_config config(uint64_t t0, uint64_t t1, uint64_t t2, enum sb_kv_offload offload)
{
    struct sb_kv_config c = {
        .block_tokens = 32,
        .block_bytes = 4096,
        .tier_blocks = {t0, t1, t2},
        .offload = offload,
        .prefix_reuse = true,
    };
    return c;
}

static struct sb_kv_match admit(struct sb_kv_cache *kv, uint64_t seq, const uint64_t *h, size_t n,
                                size_t extra)
{
    struct sb_kv_match m;
    struct sb_err err;
    sb_err_clear(&err);
    int rc = sb_kv_admit(kv, seq, h, n, extra, &m, &err);
    if (rc != 0)
        fail_msg("sb_kv_admit(seq %llu) = %d: %s", (unsigned long long)seq, rc, err.msg);
    assert_int_equal(m.blocks, n);
    assert_int_equal(m.hit[0] + m.hit[1] + m.hit[2] + m.miss, n);
    return m;
}

/* Admits a one-sequence prompt and releases it at once. */
static struct sb_kv_match visit(struct sb_kv_cache *kv, uint64_t seq, const uint64_t *h, size_t n)
{
    struct sb_kv_match m = admit(kv, seq, h, n, 0);
    sb_kv_release(kv, seq);
    return m;
}

static struct sb_kv_match visit1(struct sb_kv_cache *kv, uint64_t seq, uint64_t h)
{
    return visit(kv, seq, &h, 1);
}

/* The identities that hold whatever happened. */
static void check_identities(struct sb_kv_cache *kv, const struct fake_io *f, uint64_t bb)
{
    struct sb_kv_tier_stats st[SB_KV_TIERS];
    struct sb_kv_kvbm k;
    sb_kv_get_stats(kv, st, &k);
    uint64_t in = 0, out = 0;
    for (int t = 0; t < SB_KV_TIERS; t++) {
        assert_int_equal(st[t].hits + st[t].misses, st[t].lookups);
        assert_int_equal(st[t].bytes_in, st[t].blocks_in * bb);
        assert_int_equal(st[t].bytes_out, st[t].blocks_out * bb);
        assert_true(st[t].used_blocks <= st[t].capacity_blocks);
        in += st[t].blocks_in;
        out += st[t].blocks_out;
    }
    assert_int_equal(in, out);
    assert_int_equal(st[0].blocks_in, k.onboard_h2d + k.onboard_d2d);
    assert_int_equal(st[0].blocks_out, k.offload_d2h + k.offload_d2d);
    assert_int_equal(st[1].blocks_in, k.offload_d2h);
    assert_int_equal(st[1].blocks_out, k.offload_h2d + k.onboard_h2d);
    assert_int_equal(st[2].blocks_in, k.offload_h2d + k.offload_d2d);
    assert_int_equal(st[2].blocks_out, k.onboard_d2d);
    assert_int_equal(f->writes, k.offload_h2d + k.offload_d2d);
    assert_int_equal(f->reads, k.onboard_d2d);
    assert_int_equal(f->bad_slot, 0);
    assert_int_equal(f->unwritten_read, 0);
    assert_true(k.host_cache_hit_rate >= 0 && k.host_cache_hit_rate <= 1);
    assert_true(k.disk_cache_hit_rate >= 0 && k.disk_cache_hit_rate <= 1);
}

/* ---- hashes ---- */

static void test_hash_prompt_lengths(void **state)
{
    (void)state;
    static char text[1024];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7) % 26);
    static const struct {
        size_t len;
        uint32_t block_tokens;
        size_t cap;
        size_t want;
    } cases[] = {
        {0, 4, 16, 0},   {15, 4, 16, 0},  {16, 4, 16, 1},    {47, 4, 16, 2},
        {48, 4, 16, 3},  {53, 4, 16, 3},  {1024, 4, 16, 16}, {1024, 4, 100, 64},
        {255, 0, 16, 1}, {256, 0, 16, 2}, {1024, 32, 2, 2},  {1024, 256, 16, 1},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        uint64_t h[128], full[128];
        size_t n = sb_kv_hash_prompt(text, cases[c].len, cases[c].block_tokens, h, cases[c].cap);
        assert_int_equal(n, cases[c].want);
        /* A prefix of the same text gives the leading hashes: a partial block or a smaller cap
           changes nothing before it. */
        size_t nf = sb_kv_hash_prompt(text, sizeof(text), cases[c].block_tokens, full, 128);
        assert_true(nf >= n);
        for (size_t i = 0; i < n; i++)
            assert_true(h[i] == full[i]);
    }
}

static void test_hash_prompt_chaining(void **state)
{
    (void)state;
    char base[256];
    for (size_t i = 0; i < sizeof(base); i++)
        base[i] = (char)('A' + (i * 11) % 23);
    uint64_t h0[16];
    size_t n = sb_kv_hash_prompt(base, sizeof(base), 8, h0, 16); /* 32-byte blocks */
    assert_int_equal(n, 8);
    static const size_t offsets[] = {0, 31, 32, 100, 200, 255};
    for (size_t c = 0; c < SB_ARRAY_SIZE(offsets); c++) {
        char changed[256];
        memcpy(changed, base, sizeof(base));
        changed[offsets[c]] ^= 1;
        uint64_t h1[16];
        assert_int_equal(sb_kv_hash_prompt(changed, sizeof(changed), 8, h1, 16), 8);
        size_t block = offsets[c] / 32;
        for (size_t i = 0; i < 8; i++) {
            if (i < block)
                assert_true(h1[i] == h0[i]);
            else
                assert_true(h1[i] != h0[i]);
        }
    }
    /* The same block content at two positions gives two hashes (chaining). */
    char same[64];
    memset(same, 'x', sizeof(same));
    uint64_t hs[2];
    assert_int_equal(sb_kv_hash_prompt(same, sizeof(same), 8, hs, 2), 2);
    assert_true(hs[0] != hs[1]);
}

static void test_hash_tokens(void **state)
{
    (void)state;
    uint32_t ids[100];
    for (uint32_t i = 0; i < 100; i++)
        ids[i] = i * 2654435761u;
    uint64_t h0[8], h1[8];
    assert_int_equal(sb_kv_hash_tokens(ids, 100, 32, h0, 8), 3); /* 96 tokens, 4 ignored */
    assert_int_equal(sb_kv_hash_tokens(ids, 96, 32, h1, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_true(h0[i] == h1[i]);
    assert_int_equal(sb_kv_hash_tokens(ids, 31, 32, h1, 8), 0);
    assert_int_equal(sb_kv_hash_tokens(ids, 100, 0, h1, 8), 3); /* default 32 */
    assert_int_equal(sb_kv_hash_tokens(ids, 100, 32, h1, 2), 2);
    static const size_t at[] = {0, 31, 32, 64, 95};
    for (size_t c = 0; c < SB_ARRAY_SIZE(at); c++) {
        uint32_t changed[100];
        memcpy(changed, ids, sizeof(ids));
        changed[at[c]] += 1;
        assert_int_equal(sb_kv_hash_tokens(changed, 100, 32, h1, 8), 3);
        for (size_t i = 0; i < 3; i++) {
            if (i < at[c] / 32)
                assert_true(h1[i] == h0[i]);
            else
                assert_true(h1[i] != h0[i]);
        }
    }
    /* Long blocks (more than one internal chunk) still depend on every token. */
    static uint32_t big[1200];
    uint64_t b0, b1;
    assert_int_equal(sb_kv_hash_tokens(big, 1200, 1100, &b0, 1), 1);
    big[1099] = 1;
    assert_int_equal(sb_kv_hash_tokens(big, 1200, 1100, &b1, 1), 1);
    assert_true(b0 != b1);
    /* Bytes and token ids are separate domains. */
    uint64_t hb;
    assert_int_equal(sb_kv_hash_prompt((const char *)ids, 128, 32, &hb, 1), 1);
    assert_true(hb != h0[0]);
}

/* ---- eviction order ---- */

/*
 * Scripts over single-letter blocks: "+X" admits a one-block sequence X (kept pinned), "-X"
 * releases it, "X" admits and releases at once, "#n" admits and releases a sequence of n private
 * generation blocks (forcing evictions). `evicted` lists, in order, the blocks that left tier 0.
 */
static void run_script(struct sb_kv_cache *kv, const char *script, char *evicted, size_t cap)
{
    size_t ne = 0;
    unsigned present[128] = {0};
    for (const char *p = script; *p; p++) {
        if (*p == ' ')
            continue;
        if (*p == '#') {
            size_t n = (size_t)(p[1] - '0');
            p++;
            admit(kv, 999, NULL, 0, n);
            sb_kv_release(kv, 999);
        } else if (*p == '+') {
            p++;
            uint64_t h = (uint64_t)*p;
            admit(kv, (uint64_t)*p, &h, 1, 0);
        } else if (*p == '-') {
            p++;
            sb_kv_release(kv, (uint64_t)*p);
        } else {
            visit1(kv, (uint64_t)*p, (uint64_t)*p);
        }
        for (int b = 'A'; b <= 'Z'; b++) {
            unsigned now = sb_kv_where(kv, (uint64_t)b) & T0;
            if (present[b] && !now && ne + 1 < cap)
                evicted[ne++] = (char)b;
            present[b] = now;
        }
    }
    evicted[ne] = 0;
}

static void test_eviction_order_tier0(void **state)
{
    (void)state;
    static const struct {
        enum sb_kv_policy policy;
        uint64_t cap;
        const char *script;
        const char *evicted;
    } cases[] = {
        /* A B A C: uses A=2 (last at step 3), B=1 (step 2), C=1 (step 4); then D and E. */
        {SB_KV_LRU, 3, "A B A C D E", "BA"},
        {SB_KV_FIFO, 3, "A B A C D E", "AB"},
        {SB_KV_LFU, 3, "A B A C D E", "BC"},
        /* A stays pinned through the churn and is never a victim; its use lasts until its
           release (lru, lfu tie-break), while fifo puts it back in its old place. */
        {SB_KV_LRU, 3, "+A B C D E F -A G", "BCDE"},
        {SB_KV_FIFO, 3, "+A B C D E F -A G", "BCDA"},
        {SB_KV_LFU, 3, "+A B C D E F -A G", "BCDE"},
        {SB_KV_LRU, 2, "+A B -A C", "B"},
        {SB_KV_FIFO, 2, "+A B -A C", "A"},
        /* lfu keeps the frequent block, lru keeps the recent ones */
        {SB_KV_LFU, 2, "A A A B C D", "BC"},
        {SB_KV_LRU, 2, "A A A B C D", "AB"},
        {SB_KV_FIFO, 2, "A A A B C D", "AB"},
        /* fifo ignores hits entirely */
        {SB_KV_FIFO, 2, "A B A A C", "A"},
        {SB_KV_LRU, 2, "A B A A C", "B"},
        /* private generation blocks evict too, oldest first */
        {SB_KV_LRU, 3, "A B C #2", "AB"},
        {SB_KV_LRU, 3, "A B C #3 D", "ABC"},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_config cfg = config(cases[c].cap, 0, 0, SB_KV_ON_EVICT);
        cfg.policy[0] = cases[c].policy;
        struct sb_kv_cache *kv = make(cfg, &f);
        char evicted[32];
        run_script(kv, cases[c].script, evicted, sizeof(evicted));
        if (strcmp(evicted, cases[c].evicted) != 0)
            fail_msg("case %zu (%s): evicted \"%s\", want \"%s\"", c, cases[c].script, evicted,
                     cases[c].evicted);
        struct sb_kv_tier_stats st[SB_KV_TIERS];
        sb_kv_get_stats(kv, st, NULL);
        assert_int_equal(st[0].evictions, strlen(cases[c].evicted));
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

/* Within one admission the later blocks count as less recent: a prefix loses its tail first. */
static void test_eviction_tail_first(void **state)
{
    (void)state;
    static const enum sb_kv_policy policies[] = {SB_KV_LRU, SB_KV_FIFO, SB_KV_LFU};
    for (size_t c = 0; c < SB_ARRAY_SIZE(policies); c++) {
        struct fake_io f;
        struct sb_kv_config cfg = config(4, 0, 0, SB_KV_ON_EVICT);
        cfg.policy[0] = policies[c];
        struct sb_kv_cache *kv = make(cfg, &f);
        const uint64_t a[3] = {101, 102, 103}, b = 200, d[2] = {301, 302};
        visit(kv, 1, a, 3);
        visit1(kv, 2, b);
        visit(kv, 3, d, 2); /* evicts two of A's three blocks: the last two */
        assert_int_equal(sb_kv_where(kv, 101), T0);
        assert_int_equal(sb_kv_where(kv, 102), 0);
        assert_int_equal(sb_kv_where(kv, 103), 0);
        assert_int_equal(sb_kv_where(kv, 200), T0);
        /* The surviving head still matches. */
        struct sb_kv_match m = visit(kv, 4, a, 3);
        assert_int_equal(m.hit[0], 1);
        assert_int_equal(m.miss, 2);
        sb_kv_free(kv);
    }
}

/* Lower tiers keep their own order: a hit served from tier 1 is a use there (not under fifo). */
static void test_eviction_order_tier1(void **state)
{
    (void)state;
    static const struct {
        enum sb_kv_policy policy;
        uint64_t victim;
    } cases[] = {
        {SB_KV_LRU, 'C'},
        {SB_KV_FIFO, 'B'},
        {SB_KV_LFU, 'C'},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_config cfg = config(2, 3, 0, SB_KV_ON_EVICT);
        cfg.policy[1] = cases[c].policy;
        struct sb_kv_cache *kv = make(cfg, &f);
        char evicted[32];
        /* A B C D leave A, B in tier 1; #2 pushes C, D down and A out: tier 1 = {B, C, D}. */
        run_script(kv, "A B C D #2", evicted, sizeof(evicted));
        assert_string_equal(evicted, "ABCD");
        assert_int_equal(sb_kv_where(kv, 'A'), 0);
        for (int b = 'B'; b <= 'D'; b++)
            assert_int_equal(sb_kv_where(kv, (uint64_t)b), T1);
        /* B is served from tier 1 (a use there), then E's eviction needs a tier-1 victim. */
        struct sb_kv_match m = visit1(kv, 10, 'B');
        assert_int_equal(m.hit[1], 1);
        assert_int_equal(sb_kv_where(kv, 'B'), T0 | T1);
        run_script(kv, "#2 E #2", evicted, sizeof(evicted));
        for (int b = 'B'; b <= 'E'; b++) {
            unsigned want = (uint64_t)b == cases[c].victim ? 0 : T1;
            if (sb_kv_where(kv, (uint64_t)b) != want)
                fail_msg("policy %d: block %c in tiers %u, want %u", (int)cases[c].policy, b,
                         sb_kv_where(kv, (uint64_t)b), want);
        }
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

/* ---- admission rules ---- */

static void test_no_prefix_reuse(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_config cfg = config(10, 20, 40, SB_KV_WRITE_THROUGH);
    cfg.prefix_reuse = false;
    struct sb_kv_cache *kv = make(cfg, &f);
    const uint64_t h[4] = {1, 2, 3, 4};
    for (uint64_t s = 0; s < 20; s++) {
        struct sb_kv_match m = admit(kv, s, h, 4, 2);
        assert_int_equal(m.hit[0] + m.hit[1] + m.hit[2], 0);
        assert_int_equal(m.miss, 4);
        struct sb_kv_tier_stats st[SB_KV_TIERS];
        sb_kv_get_stats(kv, st, NULL);
        assert_int_equal(st[0].used_blocks, 6);
        sb_kv_release(kv, s);
        sb_kv_get_stats(kv, st, NULL);
        assert_int_equal(st[0].used_blocks, 0);
    }
    for (uint64_t b = 1; b <= 4; b++)
        assert_int_equal(sb_kv_where(kv, b), 0);
    struct sb_kv_tier_stats st[SB_KV_TIERS];
    struct sb_kv_kvbm k;
    sb_kv_get_stats(kv, st, &k);
    for (int t = 0; t < SB_KV_TIERS; t++) {
        assert_int_equal(st[t].hits, 0);
        assert_int_equal(st[t].lookups, 0);
        assert_int_equal(st[t].blocks_in, 0);
    }
    assert_int_equal(k.matched_tokens, 0);
    assert_int_equal(f.writes + f.reads, 0);
    /* Private blocks still take tier-0 room: two sequences of 6 do not fit in 10. */
    struct sb_kv_match m;
    admit(kv, 100, h, 4, 2);
    assert_int_equal(sb_kv_admit(kv, 101, h, 4, 2, &m, NULL), SB_KV_NOFIT);
    sb_kv_free(kv);
}

struct snapshot {
    struct sb_kv_tier_stats st[SB_KV_TIERS];
    struct sb_kv_kvbm k;
    unsigned where[8];
    uint64_t writes, reads;
};

static void snap(struct sb_kv_cache *kv, const struct fake_io *f, struct snapshot *s)
{
    memset(s, 0, sizeof(*s));
    sb_kv_get_stats(kv, s->st, &s->k);
    for (int b = 0; b < 8; b++)
        s->where[b] = sb_kv_where(kv, (uint64_t)('A' + b));
    s->writes = f->writes;
    s->reads = f->reads;
}

static void test_nofit_changes_nothing(void **state)
{
    (void)state;
    /* Tier 0 holds 4; A B cached unpinned, C pinned by sequence 50 (+1 generation block). */
    static const struct {
        uint64_t blocks[6];
        size_t n, extra;
        int rc;
    } cases[] = {
        {{'D', 'E', 'F'}, 3, 0, SB_KV_NOFIT}, /* 3 new, 2 evictable + 0 free */
        {{'D', 'E'}, 2, 0, 0},
        {{'A', 'B'}, 2, 1, SB_KV_NOFIT}, /* A, B would be pinned: no room for the extra block */
        {{'A', 'B'}, 2, 0, 0},
        {{'C'}, 1, 2, 0}, /* C is shared with the pinned sequence */
        {{'C'}, 1, 3, SB_KV_NOFIT},
        {{'A', 'B', 'C', 'D', 'E'}, 5, 0, SB_KV_NOFIT}, /* longer than tier 0 */
        {{0}, 0, 5, SB_KV_NOFIT},
        {{'G', 'H'}, 2, 0, 0},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_cache *kv = make(config(4, 2, 8, SB_KV_ON_EVICT), &f);
        visit1(kv, 1, 'A');
        visit1(kv, 2, 'B');
        const uint64_t cseq = 'C';
        admit(kv, 50, &cseq, 1, 1);
        struct snapshot before, after;
        snap(kv, &f, &before);
        struct sb_kv_match m;
        struct sb_err err;
        sb_err_clear(&err);
        int rc = sb_kv_admit(kv, 7, cases[c].blocks, cases[c].n, cases[c].extra, &m, &err);
        if (rc != cases[c].rc)
            fail_msg("case %zu: rc %d, want %d (%s)", c, rc, cases[c].rc, err.msg);
        if (rc == SB_KV_NOFIT) {
            snap(kv, &f, &after);
            assert_memory_equal(&before, &after, sizeof(before));
            /* The id is still free. */
            admit(kv, 7, NULL, 0, 0);
        }
        /* The pinned block and its sequence survive either way. */
        assert_true(sb_kv_where(kv, 'C') & T0);
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

static void test_admit_errors(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(4, 0, 0, SB_KV_ON_EVICT), &f);
    const uint64_t h = 'A';
    admit(kv, 1, &h, 1, 0);
    struct snapshot before, after;
    snap(kv, &f, &before);
    struct sb_kv_match m;
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_kv_admit(kv, 1, &h, 1, 0, &m, &err), -1);
    assert_non_null(strstr(err.msg, "already admitted"));
    sb_err_clear(&err);
    assert_int_equal(sb_kv_admit(kv, 2, NULL, 3, 0, &m, &err), -1);
    assert_non_null(strstr(err.msg, "no hashes"));
    snap(kv, &f, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    sb_kv_release(kv, 12345); /* unknown: ignored */
    sb_kv_release(kv, 1);
    sb_kv_release(kv, 1);
    sb_kv_free(kv);
    sb_kv_free(NULL);
}

static void test_init_errors(void **state)
{
    (void)state;
    struct sb_kv_io io = {fake_write, fake_read, NULL};
    struct sb_kv_io half = {fake_write, NULL, NULL};
    static const struct {
        uint64_t tiers[3];
        int policy, offload;
        double fetch_us;
        int io; /* 0 none, 1 full, 2 missing read */
        const char *msg;
    } cases[] = {
        {{0, 1, 1}, 0, 0, 0, 1, "tier 0"},
        {{4, 0, 8}, 0, 0, 0, 0, "callbacks"},
        {{4, 0, 8}, 0, 0, 0, 2, "callbacks"},
        {{4, 0, 0}, 7, 0, 0, 0, "policy"},
        {{4, 0, 0}, 0, 9, 0, 0, "offload"},
        {{4, 4, 0}, 0, 0, -1, 0, "fetch"},
        {{UINT32_MAX, 0, 0}, 0, 0, 0, 0, "too large"},
        {{1u << 31, 1u << 31, 0}, 0, 0, 0, 0, "too large"},
        {{4, 0, 0}, 0, 0, 0, 0, NULL},
        {{4, 4, 8}, 2, 1, 1.5, 1, NULL},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sb_kv_config cfg = config(cases[c].tiers[0], cases[c].tiers[1], cases[c].tiers[2],
                                         (enum sb_kv_offload)cases[c].offload);
        cfg.policy[1] = (enum sb_kv_policy)cases[c].policy;
        cfg.tier1_fetch_us = cases[c].fetch_us;
        struct sb_kv_cache *kv = (struct sb_kv_cache *)&cfg; /* must be reset to NULL */
        struct sb_err err;
        sb_err_clear(&err);
        int rc = sb_kv_init(&kv, &cfg,
                            cases[c].io == 1   ? &io
                            : cases[c].io == 2 ? &half
                                               : NULL,
                            &err);
        if (cases[c].msg) {
            assert_int_equal(rc, -1);
            assert_null(kv);
            if (!strstr(err.msg, cases[c].msg))
                fail_msg("case %zu: '%s' lacks '%s'", c, err.msg, cases[c].msg);
        } else {
            assert_int_equal(rc, 0);
            assert_non_null(kv);
            sb_kv_free(kv);
        }
    }
}

/* ---- offload, filter, disk ---- */

static void test_offload_modes(void **state)
{
    (void)state;
    /* Three one-block prompts A B C through a tier 0 of 2 blocks; filter off. */
    static const struct {
        enum sb_kv_offload offload;
        uint64_t t1;
        uint64_t d2h, h2d, d2d;
        unsigned where_a;
    } cases[] = {
        {SB_KV_WRITE_THROUGH, 4, 3, 3, 0, T1 | T2}, /* copied down as computed; eviction drops */
        {SB_KV_ON_EVICT, 4, 1, 0, 0, T1},           /* only A was evicted, one tier down */
        {SB_KV_WRITE_THROUGH, 0, 0, 0, 3, T2},      /* no host tier: GPU -> disk */
        {SB_KV_ON_EVICT, 0, 0, 0, 1, T2},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_cache *kv = make(config(2, cases[c].t1, 8, cases[c].offload), &f);
        struct sb_kv_match m[3];
        uint64_t offload_ns = 0, wbytes = 0;
        for (int i = 0; i < 3; i++) {
            m[i] = visit1(kv, (uint64_t)i, (uint64_t)('A' + i));
            offload_ns += m[i].offload_ns;
            wbytes += m[i].disk_write_bytes;
        }
        struct sb_kv_tier_stats st[SB_KV_TIERS];
        struct sb_kv_kvbm k;
        sb_kv_get_stats(kv, st, &k);
        assert_int_equal(k.offload_d2h, cases[c].d2h);
        assert_int_equal(k.offload_h2d, cases[c].h2d);
        assert_int_equal(k.offload_d2d, cases[c].d2d);
        assert_int_equal(k.onboard_h2d + k.onboard_d2d, 0);
        assert_int_equal(sb_kv_where(kv, 'A'), cases[c].where_a);
        assert_int_equal(sb_kv_where(kv, 'C'), cases[c].offload == SB_KV_ON_EVICT
                                                   ? T0
                                                   : (T0 | (cases[c].t1 ? T1 : 0) | T2));
        assert_int_equal(st[0].evictions, 1);
        uint64_t disk = cases[c].h2d + cases[c].d2d;
        assert_int_equal(f.writes, disk);
        assert_int_equal(offload_ns, disk * 1000);
        assert_int_equal(wbytes, disk * 4096);
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

static void test_second_use_filter(void **state)
{
    (void)state;
    /* on_evict, tier 0 of 1 block, straight to disk: A is evicted twice. */
    static const struct {
        bool filter;
        uint64_t writes_after_first, writes_after_second;
        unsigned where_a_first;
    } cases[] = {
        {true, 0, 1, 0},
        {false, 1, 1, T2}, /* on disk at once; the second use hits disk, no new write */
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_config cfg = config(1, 0, 8, SB_KV_ON_EVICT);
        cfg.disk_second_use_filter = cases[c].filter;
        struct sb_kv_cache *kv = make(cfg, &f);
        visit1(kv, 1, 'A');
        visit1(kv, 2, 'B'); /* A evicted: first use only */
        assert_int_equal(f.writes, cases[c].writes_after_first);
        assert_int_equal(sb_kv_where(kv, 'A'), cases[c].where_a_first);
        struct sb_kv_match m = visit1(kv, 3, 'A'); /* second use */
        assert_int_equal(m.hit[2], cases[c].filter ? 0 : 1);
        visit1(kv, 4, 'C'); /* A evicted again: now it reaches disk */
        assert_true(sb_kv_where(kv, 'A') & T2);
        assert_int_equal(f.writes, cases[c].writes_after_second + (cases[c].filter ? 0 : 1));
        m = visit1(kv, 5, 'A');
        assert_int_equal(m.hit[2], 1);
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
    /* write_through: the second use (here a tier-0 hit) is what sends a block to disk. */
    for (int filter = 0; filter <= 1; filter++) {
        struct fake_io f;
        struct sb_kv_config cfg = config(4, 8, 16, SB_KV_WRITE_THROUGH);
        cfg.disk_second_use_filter = filter;
        struct sb_kv_cache *kv = make(cfg, &f);
        const uint64_t h[2] = {11, 12};
        visit(kv, 1, h, 2);
        struct sb_kv_kvbm k;
        sb_kv_get_stats(kv, NULL, &k);
        assert_int_equal(k.offload_d2h, 2);
        assert_int_equal(k.offload_h2d, filter ? 0 : 2);
        struct sb_kv_match m = visit(kv, 2, h, 2);
        assert_int_equal(m.hit[0], 2);
        assert_int_equal(m.disk_write_bytes, filter ? 2 * 4096 : 0);
        sb_kv_get_stats(kv, NULL, &k);
        assert_int_equal(k.offload_h2d, 2);
        assert_int_equal(k.offload_d2h, 2);
        assert_int_equal(sb_kv_where(kv, 11), T0 | T1 | T2);
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

static void test_disk_errors(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(2, 0, 8, SB_KV_ON_EVICT), &f);
    const uint64_t a[2] = {1, 2}, b[2] = {3, 4};
    visit(kv, 1, a, 2);
    visit(kv, 2, b, 2); /* a -> disk */
    assert_int_equal(sb_kv_where(kv, 1), T2);
    assert_int_equal(sb_kv_where(kv, 2), T2);
    struct sb_kv_tier_stats st0[SB_KV_TIERS], st1[SB_KV_TIERS];
    sb_kv_get_stats(kv, st0, NULL);
    f.fail_reads = true;
    struct sb_kv_match m = visit(kv, 3, a, 2);
    assert_int_equal(m.io_errors, 1);
    assert_int_equal(m.hit[2], 0);
    assert_int_equal(m.miss, 2); /* the match ends at the unreadable block */
    assert_int_equal(m.fetch_ns, 0);
    assert_int_equal(m.disk_read_bytes, 0);
    assert_int_equal(f.failed_reads, 1);
    sb_kv_get_stats(kv, st1, NULL);
    assert_int_equal(st1[2].lookups - st0[2].lookups, 1);
    assert_int_equal(st1[2].misses - st0[2].misses, 1);
    assert_int_equal(st1[2].hits, st0[2].hits);
    assert_int_equal(sb_kv_where(kv, 1), T0); /* dropped from disk, recomputed */
    assert_int_equal(sb_kv_where(kv, 2), T0 | T2);
    f.fail_reads = false;
    check_identities(kv, &f, 4096);

    /* A failed write leaves the block off disk and is counted. */
    f.fail_writes = true;
    m = visit(kv, 4, b, 2); /* b read back from disk; a evicted, its writes fail */
    assert_int_equal(m.hit[2], 2);
    assert_int_equal(m.fetch_ns, 2 * 2000);
    assert_int_equal(m.io_errors, 1); /* block 1; block 2 is still on disk */
    assert_int_equal(m.offload_ns, 0);
    assert_int_equal(sb_kv_where(kv, 1), 0);
    assert_int_equal(sb_kv_where(kv, 2), T2);
    f.fail_writes = false;
    check_identities(kv, &f, 4096);
    sb_kv_free(kv);
}

static void test_fetch_ns(void **state)
{
    (void)state;
    /* Disk: fetch_ns is exactly the io's ns. */
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(2, 0, 8, SB_KV_ON_EVICT), &f);
    f.read_ns = 777;
    f.write_ns = 333;
    const uint64_t a[2] = {1, 2}, b[2] = {3, 4};
    visit(kv, 1, a, 2);
    struct sb_kv_match m = visit(kv, 2, b, 2);
    assert_int_equal(m.offload_ns, 2 * 333);
    assert_int_equal(m.disk_write_bytes, 2 * 4096);
    m = visit(kv, 3, a, 2);
    assert_int_equal(m.hit[2], 2);
    assert_int_equal(m.fetch_ns, 2 * 777);
    assert_int_equal(m.disk_read_bytes, 2 * 4096);
    assert_int_equal(m.offload_ns, 2 * 333); /* b went down to make room */
    struct sb_kv_kvbm k;
    sb_kv_get_stats(kv, NULL, &k);
    assert_int_equal(k.onboard_d2d, 2);
    assert_int_equal(k.matched_tokens, 2 * 32);
    sb_kv_free(kv);

    /* Host: a real memcpy plus tier1_fetch_us per block. */
    struct sb_kv_config cfg = config(1, 4, 0, SB_KV_ON_EVICT);
    cfg.tier1_fetch_us = 50;
    cfg.block_bytes = 1 << 20;
    kv = make(cfg, &f);
    visit1(kv, 1, 'A');
    visit1(kv, 2, 'B');
    m = visit1(kv, 3, 'A');
    assert_int_equal(m.hit[1], 1);
    assert_true(m.fetch_ns >= 50000);
    assert_true(m.fetch_ns < 50000 + 1000000000ull);
    assert_int_equal(m.disk_read_bytes, 0);
    sb_kv_get_stats(kv, NULL, &k);
    assert_int_equal(k.onboard_h2d, 1);
    assert_int_equal(k.offload_d2h, 2); /* A, then B when A came back */
    sb_kv_free(kv);
}

static void test_hit_rate_window(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(1, 4, 0, SB_KV_ON_EVICT), &f);
    visit1(kv, 1, 'A');
    visit1(kv, 2, 'B');
    visit1(kv, 3, 'A'); /* from tier 1 */
    struct sb_kv_kvbm k;
    sb_kv_get_stats(kv, NULL, &k);
    assert_true(k.host_cache_hit_rate > 1.0 / 3 - 1e-12 && k.host_cache_hit_rate < 1.0 / 3 + 1e-12);
    assert_true(k.disk_cache_hit_rate == 0);
    /* The window holds 1000 admissions: 999 more misses keep the hit in it, the 1000th pushes
       it out. */
    uint64_t seq = 100;
    for (int i = 0; i < 999; i++, seq++)
        visit1(kv, seq, 1000 + seq);
    sb_kv_get_stats(kv, NULL, &k);
    assert_true(k.host_cache_hit_rate > 1e-3 - 1e-12 && k.host_cache_hit_rate < 1e-3 + 1e-12);
    visit1(kv, seq, 1000 + seq);
    sb_kv_get_stats(kv, NULL, &k);
    assert_true(k.host_cache_hit_rate == 0);
    sb_kv_free(kv);
}

static void test_second_pass_from_disk(void **state)
{
    (void)state;
    static const enum sb_kv_offload modes[] = {SB_KV_WRITE_THROUGH, SB_KV_ON_EVICT};
    for (size_t c = 0; c < SB_ARRAY_SIZE(modes); c++) {
        struct fake_io f;
        struct sb_kv_cache *kv = make(config(8, 16, 1024, modes[c]), &f);
        /* 30 prompts of 4 blocks, made from real text through the prompt hash. */
        uint64_t h[30][4];
        for (int p = 0; p < 30; p++) {
            char text[4 * 128 + 3];
            for (size_t i = 0; i < sizeof(text); i++)
                text[i] = (char)('a' + (i * 7) % 26);
            text[0] = (char)('A' + p); /* the first block differs, so every hash does */
            assert_int_equal(sb_kv_hash_prompt(text, sizeof(text), 32, h[p], 4), 4);
        }
        for (int p = 0; p < 30; p++) {
            struct sb_kv_match m = visit(kv, (uint64_t)p, h[p], 4);
            assert_int_equal(m.miss, 4);
        }
        size_t hit[SB_KV_TIERS] = {0}, miss = 0;
        uint64_t fetch = 0;
        for (int p = 0; p < 30; p++) {
            struct sb_kv_match m = visit(kv, (uint64_t)(100 + p), h[p], 4);
            for (int t = 0; t < SB_KV_TIERS; t++)
                hit[t] += m.hit[t];
            miss += m.miss;
            fetch += m.fetch_ns;
        }
        assert_int_equal(miss, 0);
        assert_true(hit[2] > 0);
        assert_int_equal(hit[0] + hit[1] + hit[2], 120);
        struct sb_kv_kvbm k;
        sb_kv_get_stats(kv, NULL, &k);
        assert_true(k.onboard_d2d > 0);
        assert_int_equal(k.onboard_d2d, hit[2]);
        assert_int_equal(k.onboard_h2d, hit[1]);
        assert_int_equal(f.reads, hit[2]);
        assert_true(fetch >= hit[2] * 2000);
        assert_int_equal(k.matched_tokens, (hit[1] + hit[2]) * 32);
        assert_true(k.disk_cache_hit_rate > 0);
        check_identities(kv, &f, 4096);
        sb_kv_free(kv);
    }
}

/* on_evict: the blocks this admission evicts from tier 0 go down only after it has read its own
   lower-tier blocks, so a full tier 1 does not lose them first. */
static void test_victims_go_down_after_onboarding(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(2, 2, 0, SB_KV_ON_EVICT), &f);
    const uint64_t a[2] = {1, 2}, b[2] = {3, 4};
    visit(kv, 1, a, 2);
    visit(kv, 2, b, 2);
    assert_int_equal(sb_kv_where(kv, 1), T1);
    assert_int_equal(sb_kv_where(kv, 2), T1);
    struct sb_kv_match m = visit(kv, 3, a, 2);
    assert_int_equal(m.hit[1], 2);
    assert_int_equal(sb_kv_where(kv, 1), T0);
    assert_int_equal(sb_kv_where(kv, 3), T1);
    assert_int_equal(sb_kv_where(kv, 4), T1);
    check_identities(kv, &f, 4096);
    sb_kv_free(kv);
}

/* ---- a long random workload ---- */

/*
 * A full tier 0 (and no lower tier) replaced whole by one admission: its 16 victims stay entries
 * until the new blocks are computed, so 32 entries live at once in a cache of 16 blocks. The
 * entry table was sized by capacity alone and this wrote past it (ASan: heap-buffer-overflow in
 * entry_new; seen with sessioned_chat on --tier0-blocks 64 and no tier 1 or 2).
 */
static void test_full_turnover_entries(void **state)
{
    (void)state;
    struct fake_io f;
    struct sb_kv_cache *kv = make(config(16, 0, 0, SB_KV_WRITE_THROUGH), &f);
    uint64_t a[16], b[16];
    for (int i = 0; i < 16; i++) {
        a[i] = 1000 + (uint64_t)i;
        b[i] = 2000 + (uint64_t)i;
    }
    for (int round = 0; round < 3; round++) {
        struct sb_kv_match m = visit(kv, 1, a, 16);
        assert_int_equal(m.miss, 16);
        m = visit(kv, 2, b, 16);
        assert_int_equal(m.miss, 16);
        m = visit(kv, 3, b, 16);
        assert_int_equal(m.hit[SB_KV_T0], 16);
    }
    check_identities(kv, &f, 4096);
    sb_kv_free(kv);
}

static void test_random_workload(void **state)
{
    (void)state;
    static const struct {
        enum sb_kv_policy p[3];
        enum sb_kv_offload offload;
        bool filter;
        uint64_t tiers[3];
    } cases[] = {
        {{SB_KV_LRU, SB_KV_LRU, SB_KV_LRU}, SB_KV_WRITE_THROUGH, true, {64, 256, 1024}},
        {{SB_KV_LRU, SB_KV_LRU, SB_KV_LRU}, SB_KV_ON_EVICT, false, {64, 128, 512}},
        {{SB_KV_FIFO, SB_KV_LFU, SB_KV_LRU}, SB_KV_ON_EVICT, true, {48, 64, 200}},
        {{SB_KV_LFU, SB_KV_FIFO, SB_KV_FIFO}, SB_KV_WRITE_THROUGH, false, {48, 64, 100}},
        {{SB_KV_LRU, SB_KV_LRU, SB_KV_LFU}, SB_KV_ON_EVICT, false, {64, 0, 300}},
        {{SB_KV_LRU, SB_KV_LRU, SB_KV_LRU}, SB_KV_ON_EVICT, false, {64, 100, 0}},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct fake_io f;
        struct sb_kv_config cfg =
            config(cases[c].tiers[0], cases[c].tiers[1], cases[c].tiers[2], cases[c].offload);
        memcpy(cfg.policy, cases[c].p, sizeof(cfg.policy));
        cfg.disk_second_use_filter = cases[c].filter;
        struct sb_kv_cache *kv = make(cfg, &f);
        struct sb_rng rng;
        sb_rng_seed(&rng, 42 + c);
        enum { LIVE = 6, MAXB = 24 };
        struct {
            uint64_t id;
            uint64_t h[MAXB];
            size_t n;
        } live[LIVE];
        size_t nlive = 0, nofit = 0, admitted = 0;
        uint64_t next_id = 1, unique = 1;
        size_t hit_sum[SB_KV_TIERS] = {0};
        uint64_t rbytes = 0, wbytes = 0, fetch = 0, matched = 0;
        while (admitted < 10000) {
            if (nlive == LIVE || (nlive > 0 && sb_rng_below(&rng, 2) == 0)) {
                size_t v = (size_t)sb_rng_below(&rng, nlive);
                sb_kv_release(kv, live[v].id);
                live[v] = live[--nlive];
                continue;
            }
            /* A shared document prefix of random length, sometimes a private tail. */
            uint64_t doc = sb_rng_below(&rng, 40);
            size_t n = 1 + (size_t)sb_rng_below(&rng, 16), tail = (size_t)sb_rng_below(&rng, 4);
            uint64_t h[MAXB];
            for (size_t i = 0; i < n; i++)
                h[i] = sb_mix64(doc * 1000 + i);
            for (size_t i = 0; i < tail; i++)
                h[n + i] = sb_mix64(unique++ | (1ull << 62));
            n += tail;
            size_t extra = (size_t)sb_rng_below(&rng, 6);
            struct snapshot before;
            snap(kv, &f, &before);
            struct sb_kv_match m;
            struct sb_err err;
            int rc = sb_kv_admit(kv, next_id, h, n, extra, &m, &err);
            assert_true(rc == 0 || rc == SB_KV_NOFIT);
            if (rc == SB_KV_NOFIT) {
                struct snapshot after;
                snap(kv, &f, &after);
                assert_memory_equal(&before, &after, sizeof(before));
                nofit++;
                if (nlive == 0)
                    fail_msg("a %zu+%zu block sequence does not fit an empty tier 0", n, extra);
                size_t v = (size_t)sb_rng_below(&rng, nlive);
                sb_kv_release(kv, live[v].id);
                live[v] = live[--nlive];
                continue;
            }
            admitted++;
            assert_int_equal(m.hit[0] + m.hit[1] + m.hit[2] + m.miss, n);
            for (int t = 0; t < SB_KV_TIERS; t++)
                hit_sum[t] += m.hit[t];
            rbytes += m.disk_read_bytes;
            wbytes += m.disk_write_bytes;
            fetch += m.fetch_ns;
            matched += (m.hit[1] + m.hit[2]) * 32;
            live[nlive].id = next_id++;
            memcpy(live[nlive].h, h, n * sizeof(h[0]));
            live[nlive].n = n;
            nlive++;
            /* Pinned blocks are never evicted: every live sequence's blocks are in tier 0. */
            for (size_t s = 0; s < nlive; s++)
                for (size_t i = 0; i < live[s].n; i++)
                    assert_true(sb_kv_where(kv, live[s].h[i]) & T0);
            if (admitted % 500 == 0)
                check_identities(kv, &f, 4096);
        }
        check_identities(kv, &f, 4096);
        struct sb_kv_tier_stats st[SB_KV_TIERS];
        struct sb_kv_kvbm k;
        sb_kv_get_stats(kv, st, &k);
        for (int t = 0; t < SB_KV_TIERS; t++)
            assert_int_equal(hit_sum[t], st[t].hits);
        assert_int_equal(rbytes, f.reads * 4096);
        assert_int_equal(wbytes, f.writes * 4096);
        assert_true(fetch >= f.reads * 2000); /* plus the real tier-1 memcpy time */
        if (!cases[c].tiers[1])
            assert_int_equal(fetch, f.reads * 2000);
        assert_int_equal(matched, k.matched_tokens);
        assert_true(st[0].hits > 0);
        if (cases[c].tiers[1])
            assert_true(st[1].hits > 0);
        if (cases[c].tiers[2])
            assert_true(st[2].hits > 0 && f.writes > 0);
        /* After every release nothing is pinned: tier 0 can be refilled entirely. */
        while (nlive)
            sb_kv_release(kv, live[--nlive].id);
        uint64_t *fill = malloc(cases[c].tiers[0] * sizeof(*fill));
        assert_non_null(fill);
        for (uint64_t i = 0; i < cases[c].tiers[0]; i++)
            fill[i] = sb_mix64(i | (1ull << 63));
        admit(kv, next_id, fill, cases[c].tiers[0], 0);
        sb_kv_get_stats(kv, st, NULL);
        assert_int_equal(st[0].used_blocks, cases[c].tiers[0]);
        check_identities(kv, &f, 4096);
        free(fill);
        sb_kv_free(kv);
    }
}

/*
 * sb_kv_reset (vLLM's reset_prefix_cache, SGLang's flush_cache): every unpinned copy leaves every
 * tier, blocks pinned by a running sequence stay in tier 0, and the next identical prompt misses.
 * For each eviction policy and offload mode.
 */
static void test_reset_drops_unpinned(void **state)
{
    (void)state;
    static const struct {
        enum sb_kv_policy policy;
        enum sb_kv_offload offload;
    } cases[] = {{SB_KV_LRU, SB_KV_WRITE_THROUGH}, {SB_KV_FIFO, SB_KV_WRITE_THROUGH},
                 {SB_KV_LFU, SB_KV_WRITE_THROUGH}, {SB_KV_LRU, SB_KV_ON_EVICT},
                 {SB_KV_FIFO, SB_KV_ON_EVICT},     {SB_KV_LFU, SB_KV_ON_EVICT}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct sb_kv_config cfg = config(8, 16, 32, cases[c].offload);
        for (int t = 0; t < SB_KV_TIERS; t++)
            cfg.policy[t] = cases[c].policy;
        cfg.disk_second_use_filter = false;
        struct fake_io f;
        struct sb_kv_cache *kv = make(cfg, &f);
        uint64_t pinned[2] = {101, 102}, cold[6] = {201, 202, 203, 204, 205, 206};
        visit(kv, 1, cold, 6);
        admit(kv, 2, cold, 6, 0); /* a second use: on_evict moves them down when evicted */
        sb_kv_release(kv, 2);
        admit(kv, 3, pinned, 2, 1);
        uint64_t dropped = sb_kv_reset(kv);
        assert_true(dropped >= 6);
        for (int i = 0; i < 6; i++)
            assert_int_equal(sb_kv_where(kv, cold[i]), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(sb_kv_where(kv, pinned[i]), 1u << SB_KV_T0);
        struct sb_kv_tier_stats st[SB_KV_TIERS];
        sb_kv_get_stats(kv, st, NULL);
        assert_int_equal(st[SB_KV_T0].used_blocks, 3); /* 2 pinned + 1 generation block */
        assert_int_equal(st[SB_KV_T1].used_blocks, 0);
        assert_int_equal(st[SB_KV_T2].used_blocks, 0);
        sb_kv_release(kv, 3);
        struct sb_kv_match m = visit(kv, 4, cold, 6);
        assert_int_equal(m.miss, 6);
        /* the tier-2 slots were given back: filling the disk tier again never runs out */
        for (uint64_t s = 10; s < 40; s++) {
            uint64_t h[4] = {s * 100 + 1, s * 100 + 2, s * 100 + 3, s * 100 + 4};
            visit(kv, s, h, 4);
        }
        assert_int_equal(f.bad_slot, 0);
        assert_int_equal(f.unwritten_read, 0);
        check_identities(kv, &f, cfg.block_bytes);
        sb_kv_free(kv);
    }
}

/* Decode-block caching: the blocks past the prompt become cached tier-0 blocks at the release,
   from the generation reservation then free room, never by evicting; a next turn reuses them. */
static void test_extend_caches_reply_blocks(void **state)
{
    (void)state;
    struct sb_kv_config cfg = config(8, 4, 0, SB_KV_WRITE_THROUGH);
    struct fake_io f;
    struct sb_kv_cache *kv = make(cfg, &f);
    struct sb_err err;
    sb_err_clear(&err);
    uint64_t turn[6] = {11, 12, 13, 14, 15, 16}; /* prompt 11-12, reply 13-15, next user 16 */
    admit(kv, 1, turn, 2, 2);
    size_t added = 99;
    assert_int_equal(sb_kv_extend(kv, 1, turn, 5, &added, &err), 0);
    assert_int_equal(added, 3); /* 2 generation blocks + 1 of free room */
    sb_kv_release(kv, 1);
    for (int i = 0; i < 5; i++)
        assert_true(sb_kv_where(kv, turn[i]) & T0);
    assert_true(sb_kv_where(kv, turn[4]) & T1); /* written through like a computed block */
    size_t hit[SB_KV_TIERS], miss;
    sb_kv_peek(kv, turn, 6, hit, &miss);
    assert_int_equal(hit[0], 5);
    assert_int_equal(miss, 1);
    struct sb_kv_match m = visit(kv, 2, turn, 6);
    assert_int_equal(m.hit[0], 5);
    assert_int_equal(m.miss, 1);

    /* a wrong prefix, an unknown sequence: errors, nothing changed */
    uint64_t other[3] = {91, 92, 93};
    admit(kv, 3, turn, 2, 1);
    assert_int_equal(sb_kv_extend(kv, 3, other, 3, &added, &err), -1);
    assert_non_null(strstr(err.msg, "not the prompt's"));
    assert_int_equal(sb_kv_extend(kv, 77, turn, 3, &added, &err), -1);
    sb_kv_release(kv, 3);
    assert_int_equal(sb_kv_where(kv, 93), 0);

    /* a full tier 0: only the reservation is used, nothing cached is evicted for the reply */
    struct sb_kv_cache *full = make(config(4, 0, 0, SB_KV_WRITE_THROUGH), &f);
    uint64_t a[4] = {1, 2, 3, 4}, b[2] = {7, 8};
    visit(full, 1, b, 2);
    admit(full, 2, a, 1, 1); /* 1 prompt + 1 generation + 2 cached = full */
    assert_int_equal(sb_kv_extend(full, 2, a, 4, &added, &err), 0);
    assert_int_equal(added, 1);
    sb_kv_release(full, 2);
    assert_true(sb_kv_where(full, 7) & T0);
    assert_true(sb_kv_where(full, 8) & T0);
    assert_int_equal(sb_kv_where(full, 3), 0);
    check_identities(full, &f, 4096);
    sb_kv_free(full);

    /* without prefix reuse nothing is cached */
    cfg.prefix_reuse = false;
    struct sb_kv_cache *off = make(cfg, &f);
    admit(off, 1, turn, 2, 2);
    assert_int_equal(sb_kv_extend(off, 1, turn, 5, &added, &err), 0);
    assert_int_equal(added, 0);
    sb_kv_release(off, 1);
    assert_int_equal(sb_kv_where(off, turn[3]), 0);
    sb_kv_free(off);
    sb_kv_free(kv);
}

/* The peek names the tier an admission would serve each prefix block from, and a modelled
   tier-2 cost is added to the measured read. */
static void test_peek_and_tier2_cost(void **state)
{
    (void)state;
    struct sb_kv_config cfg = config(2, 4, 8, SB_KV_WRITE_THROUGH);
    cfg.disk_second_use_filter = false;
    cfg.tier2_fetch_us = 500;
    struct fake_io f;
    struct sb_kv_cache *kv = make(cfg, &f);
    uint64_t a[2] = {1, 2}, b[2] = {3, 4}, c[2] = {5, 6};
    visit(kv, 1, a, 2);
    visit(kv, 2, b, 2); /* a leaves tier 0, stays in 1 and 2 */
    visit(kv, 3, c, 2); /* b leaves tier 0, a leaves tier 1 (lru): a only on disk */
    size_t hit[SB_KV_TIERS], miss;
    sb_kv_peek(kv, a, 2, hit, &miss);
    assert_int_equal(hit[2], 2);
    assert_int_equal(hit[0] + hit[1] + miss, 0);
    sb_kv_peek(kv, b, 2, hit, &miss);
    assert_int_equal(hit[1], 2);
    sb_kv_peek(kv, c, 2, hit, &miss);
    assert_int_equal(hit[0], 2);
    struct sb_kv_match m = visit(kv, 4, a, 2);
    assert_int_equal(m.hit[2], 2);
    assert_int_equal(m.fetch_ns, 2 * (2000 + 500000));
    sb_kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_prompt_lengths),
        cmocka_unit_test(test_hash_prompt_chaining),
        cmocka_unit_test(test_hash_tokens),
        cmocka_unit_test(test_eviction_order_tier0),
        cmocka_unit_test(test_eviction_tail_first),
        cmocka_unit_test(test_eviction_order_tier1),
        cmocka_unit_test(test_no_prefix_reuse),
        cmocka_unit_test(test_nofit_changes_nothing),
        cmocka_unit_test(test_admit_errors),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_offload_modes),
        cmocka_unit_test(test_second_use_filter),
        cmocka_unit_test(test_disk_errors),
        cmocka_unit_test(test_fetch_ns),
        cmocka_unit_test(test_hit_rate_window),
        cmocka_unit_test(test_second_pass_from_disk),
        cmocka_unit_test(test_victims_go_down_after_onboarding),
        cmocka_unit_test(test_random_workload),
        cmocka_unit_test(test_full_turnover_entries),
        cmocka_unit_test(test_reset_drops_unpinned),
        cmocka_unit_test(test_extend_caches_reply_blocks),
        cmocka_unit_test(test_peek_and_tier2_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
