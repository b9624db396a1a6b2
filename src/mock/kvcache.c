/*
 * The mock's KV block/tier model (see sb/mock_kvcache.h): decides, for every admitted prompt, which
 * blocks are reused from which tier and what gets evicted, offloaded and onboarded, so that the
 * mock can charge realistic prefill and I/O time and export KVBM-shaped counters. Blocks are
 * entries in one growable array, found through a chained hash table keyed by block hash; each tier
 * orders its evictable entries in a binary min-heap (lru: last use, fifo: insertion, lfu: uses
 * then last use), which keeps every operation O(log n) even though pinned tier-0 blocks and blocks
 * held by an admission in flight must stay out of eviction's reach. Nothing here does I/O except
 * through the caller's struct sb_kv_io.
 */
#include "sb/mock_kvcache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

#define NIL         UINT32_MAX
#define RATE_WINDOW 1000 /* KVBM's DEFAULT_MAX_RECENT_REQUESTS */
#define W_NONE      0xff /* where[]: block not served from any tier */
#define BIT(t)      (1u << (t))

struct kv_entry {
    uint64_t hash;
    uint64_t tick[SB_KV_TIERS]; /* lru/lfu: last use in the tier; fifo: insertion */
    uint32_t uses[SB_KV_TIERS]; /* uses in the tier since it entered it (lfu) */
    uint32_t pos[SB_KV_TIERS];  /* index in the tier's heap, NIL when not evictable there */
    uint32_t next;              /* hash chain, or free list */
    uint32_t pins;              /* live sequences using it (+1 while moving between tiers) */
    uint32_t slot;              /* tier-2 slot while in tier 2 */
    uint8_t tiers;              /* BIT(t) for each tier holding it */
};

struct kv_heap {
    uint32_t *idx;
    uint32_t len, cap;
};

struct kv_seq {
    uint64_t id;
    uint32_t *blocks; /* entry of each prompt block (prefix_reuse only) */
    uint32_t nblocks;
    uint64_t private_blocks; /* uncached tier-0 blocks: generation, or the prompt without reuse */
    uint32_t next;
};

struct kv_freq {
    uint64_t hash;
    uint32_t count;
};

struct kv_rate {
    uint32_t host, disk, total;
};

struct sb_kv_cache {
    struct sb_kv_config cfg;
    struct sb_kv_io io;
    uint64_t cap[SB_KV_TIERS], used[SB_KV_TIERS];
    struct sb_kv_tier_stats st[SB_KV_TIERS];
    struct sb_kv_kvbm kvbm;
    uint64_t tick;

    struct kv_entry *ent;
    uint32_t ent_len, ent_cap, ent_max, ent_free, ent_count;
    uint32_t *bucket; /* entry chains by hash, nbucket a power of two */
    uint32_t nbucket;
    struct kv_heap heap[SB_KV_TIERS];

    uint32_t *slot_free; /* stack of freed tier-2 slots */
    uint32_t nslot_free, slot_free_cap;
    uint64_t slot_fresh; /* slots [slot_fresh, cap[2]) were never used */

    struct kv_freq *freq; /* lossy use counts for the second-use filter */
    uint64_t freq_mask;

    struct kv_seq *seq;
    uint32_t seq_len, seq_cap, seq_free, seq_count;
    uint32_t *seq_bucket;
    uint32_t nseq_bucket;

    uint8_t *where; /* admission scratch: tier serving each block */
    size_t where_cap;

    unsigned char *t1_src, *t1_dst; /* tier-1 copies */

    struct kv_rate win[RATE_WINDOW];
    size_t win_pos, win_len;
    uint64_t win_host, win_disk, win_total;
};

/* Grows *p (elements of size elem, capacity *cap) to hold at least want, doubling. */
static int grow(void **p, uint32_t *cap, uint64_t want, size_t elem)
{
    if (want <= *cap)
        return 0;
    if (want > UINT32_MAX)
        return -1;
    uint64_t n = *cap ? *cap : 16;
    while (n < want)
        n *= 2;
    if (n > UINT32_MAX)
        n = UINT32_MAX;
    void *q = realloc(*p, (size_t)n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- entries and the hash table ---- */

static uint32_t bucket_of(uint64_t hash, uint32_t nbucket)
{
    return (uint32_t)(sb_mix64(hash) & (nbucket - 1));
}

static uint32_t entry_find(const struct sb_kv_cache *kv, uint64_t hash)
{
    for (uint32_t i = kv->bucket[bucket_of(hash, kv->nbucket)]; i != NIL; i = kv->ent[i].next)
        if (kv->ent[i].hash == hash)
            return i;
    return NIL;
}

static int rehash(struct sb_kv_cache *kv, uint32_t nbucket)
{
    uint32_t *b = malloc((size_t)nbucket * sizeof(*b));
    if (!b)
        return -1;
    for (uint32_t i = 0; i < nbucket; i++)
        b[i] = NIL;
    for (uint32_t o = 0; o < kv->nbucket; o++) {
        uint32_t i = kv->bucket[o];
        while (i != NIL) {
            uint32_t next = kv->ent[i].next;
            uint32_t h = bucket_of(kv->ent[i].hash, nbucket);
            kv->ent[i].next = b[h];
            b[h] = i;
            i = next;
        }
    }
    free(kv->bucket);
    kv->bucket = b;
    kv->nbucket = nbucket;
    return 0;
}

/* Makes room for `more` new entries so that entry_new cannot fail. */
static int entry_reserve(struct sb_kv_cache *kv, uint64_t more)
{
    uint64_t live = (uint64_t)kv->ent_count + more;
    if (live > kv->ent_max)
        live = kv->ent_max;
    if (grow((void **)&kv->ent, &kv->ent_cap, min_u64(kv->ent_max, kv->ent_len + more),
             sizeof(*kv->ent)) < 0)
        return -1;
    uint64_t nb = kv->nbucket;
    while (nb < live && nb < (1ull << 31))
        nb *= 2;
    if (nb != kv->nbucket && rehash(kv, (uint32_t)nb) < 0)
        return -1;
    return 0;
}

static uint32_t entry_new(struct sb_kv_cache *kv, uint64_t hash)
{
    uint32_t i;
    if (kv->ent_free != NIL) {
        i = kv->ent_free;
        kv->ent_free = kv->ent[i].next;
    } else {
        i = kv->ent_len++;
    }
    struct kv_entry *e = &kv->ent[i];
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    for (int t = 0; t < SB_KV_TIERS; t++)
        e->pos[t] = NIL;
    e->slot = NIL;
    uint32_t b = bucket_of(hash, kv->nbucket);
    e->next = kv->bucket[b];
    kv->bucket[b] = i;
    kv->ent_count++;
    return i;
}

/* Forgets an entry that no tier holds and no sequence uses. */
static void entry_maybe_free(struct sb_kv_cache *kv, uint32_t i)
{
    struct kv_entry *e = &kv->ent[i];
    if (e->tiers || e->pins)
        return;
    uint32_t *link = &kv->bucket[bucket_of(e->hash, kv->nbucket)];
    while (*link != i)
        link = &kv->ent[*link].next;
    *link = e->next;
    e->next = kv->ent_free;
    kv->ent_free = i;
    kv->ent_count--;
}

/* ---- per-tier eviction heaps ---- */

static bool evict_before(const struct sb_kv_cache *kv, int t, uint32_t a, uint32_t b)
{
    const struct kv_entry *ea = &kv->ent[a], *eb = &kv->ent[b];
    if (kv->cfg.policy[t] == SB_KV_LFU && ea->uses[t] != eb->uses[t])
        return ea->uses[t] < eb->uses[t];
    return ea->tick[t] < eb->tick[t];
}

static void heap_set(struct sb_kv_cache *kv, int t, uint32_t at, uint32_t i)
{
    kv->heap[t].idx[at] = i;
    kv->ent[i].pos[t] = at;
}

static void heap_up(struct sb_kv_cache *kv, int t, uint32_t at)
{
    struct kv_heap *h = &kv->heap[t];
    uint32_t i = h->idx[at];
    while (at > 0) {
        uint32_t parent = (at - 1) / 2;
        if (!evict_before(kv, t, i, h->idx[parent]))
            break;
        heap_set(kv, t, at, h->idx[parent]);
        at = parent;
    }
    heap_set(kv, t, at, i);
}

static void heap_down(struct sb_kv_cache *kv, int t, uint32_t at)
{
    struct kv_heap *h = &kv->heap[t];
    uint32_t i = h->idx[at];
    for (;;) {
        uint32_t c = 2 * at + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len && evict_before(kv, t, h->idx[c + 1], h->idx[c]))
            c++;
        if (!evict_before(kv, t, h->idx[c], i))
            break;
        heap_set(kv, t, at, h->idx[c]);
        at = c;
    }
    heap_set(kv, t, at, i);
}

/* Capacity was reserved by the admission (or covers every block of the tier). */
static void heap_push(struct sb_kv_cache *kv, int t, uint32_t i)
{
    struct kv_heap *h = &kv->heap[t];
    h->idx[h->len] = i;
    kv->ent[i].pos[t] = h->len;
    heap_up(kv, t, h->len++);
}

static void heap_remove(struct sb_kv_cache *kv, int t, uint32_t i)
{
    struct kv_heap *h = &kv->heap[t];
    uint32_t at = kv->ent[i].pos[t];
    kv->ent[i].pos[t] = NIL;
    uint32_t last = h->idx[--h->len];
    if (at == h->len)
        return;
    heap_set(kv, t, at, last);
    heap_up(kv, t, at);
    heap_down(kv, t, kv->ent[last].pos[t]);
}

static uint32_t heap_pop(struct sb_kv_cache *kv, int t)
{
    uint32_t i = kv->heap[t].idx[0];
    heap_remove(kv, t, i);
    return i;
}

/* ---- tier moves ---- */

/* A use of entry i in tier t (it must be out of the tier's heap). */
static void touch(struct sb_kv_cache *kv, int t, uint32_t i, uint64_t tick)
{
    struct kv_entry *e = &kv->ent[i];
    e->uses[t]++;
    if (kv->cfg.policy[t] != SB_KV_FIFO)
        e->tick[t] = tick;
}

static int next_tier(const struct sb_kv_cache *kv, int t)
{
    for (int d = t + 1; d < SB_KV_TIERS; d++)
        if (kv->cap[d])
            return d;
    return -1;
}

static void count_copy(struct sb_kv_cache *kv, int from, int to)
{
    uint64_t bb = kv->cfg.block_bytes;
    kv->st[from].blocks_out++;
    kv->st[from].bytes_out += bb;
    kv->st[to].blocks_in++;
    kv->st[to].bytes_in += bb;
    if (from == SB_KV_T0 && to == SB_KV_T1)
        kv->kvbm.offload_d2h++;
    else if (from == SB_KV_T1 && to == SB_KV_T2)
        kv->kvbm.offload_h2d++;
    else if (from == SB_KV_T0 && to == SB_KV_T2)
        kv->kvbm.offload_d2d++;
    else if (from == SB_KV_T1 && to == SB_KV_T0)
        kv->kvbm.onboard_h2d++;
    else if (from == SB_KV_T2 && to == SB_KV_T0)
        kv->kvbm.onboard_d2d++;
}

static void freq_bump(struct sb_kv_cache *kv, uint64_t hash)
{
    struct kv_freq *f = &kv->freq[sb_mix64(hash ^ 0x9e3779b97f4a7c15ull) & kv->freq_mask];
    if (f->hash == hash && f->count) {
        if (f->count < UINT32_MAX)
            f->count++;
    } else {
        f->hash = hash;
        f->count = 1;
    }
}

/* The second-use filter: may this block go to disk? */
static bool disk_allowed(const struct sb_kv_cache *kv, uint64_t hash)
{
    if (!kv->freq)
        return true;
    const struct kv_freq *f = &kv->freq[sb_mix64(hash ^ 0x9e3779b97f4a7c15ull) & kv->freq_mask];
    return f->hash == hash && f->count >= 2;
}

static uint32_t slot_take(struct sb_kv_cache *kv)
{
    if (kv->nslot_free)
        return kv->slot_free[--kv->nslot_free];
    return (uint32_t)kv->slot_fresh++;
}

static void slot_give(struct sb_kv_cache *kv, uint32_t slot)
{
    kv->slot_free[kv->nslot_free++] = slot; /* capacity reserved per admission */
}

static void evict_one(struct sb_kv_cache *kv, int t, struct sb_kv_match *m);

/*
 * Copies entry i from tier `from` into lower tier t (1 or 2), evicting there when full. Returns
 * false when the tier cannot take it (everything there is held, or the disk write failed).
 */
static bool tier_insert(struct sb_kv_cache *kv, int t, uint32_t i, int from, struct sb_kv_match *m)
{
    if (kv->used[t] >= kv->cap[t]) {
        if (kv->heap[t].len == 0)
            return false;
        evict_one(kv, t, m);
    }
    struct kv_entry *e = &kv->ent[i];
    if (t == SB_KV_T2) {
        uint32_t slot = slot_take(kv);
        int64_t ns = kv->io.write_block(kv->io.ctx, slot);
        if (ns < 0) {
            m->io_errors++;
            slot_give(kv, slot);
            return false;
        }
        m->offload_ns += (uint64_t)ns;
        m->disk_write_bytes += kv->cfg.block_bytes;
        e->slot = slot;
    }
    e->tiers |= BIT(t);
    kv->used[t]++;
    e->uses[t] = 0;
    e->tick[t] = kv->tick++;
    heap_push(kv, t, i);
    count_copy(kv, from, t);
    return true;
}

/* Evicts tier t's first victim (its heap is not empty); on_evict copies it one tier down. */
static void evict_one(struct sb_kv_cache *kv, int t, struct sb_kv_match *m)
{
    uint32_t i = heap_pop(kv, t);
    struct kv_entry *e = &kv->ent[i];
    e->tiers &= (uint8_t)~BIT(t);
    kv->used[t]--;
    kv->st[t].evictions++;
    if (t == SB_KV_T2) {
        slot_give(kv, e->slot);
        e->slot = NIL;
    }
    if (kv->cfg.offload == SB_KV_ON_EVICT) {
        int d = next_tier(kv, t);
        if (d >= 0 && !(e->tiers & BIT(d)) && (d != SB_KV_T2 || disk_allowed(kv, e->hash))) {
            e->pins++; /* in transit: the cascade below must not free it */
            tier_insert(kv, d, i, t, m);
            kv->ent[i].pins--;
        }
    }
    entry_maybe_free(kv, i);
}

/* Pins a cached tier-0 entry for a sequence; a new pin is a use. */
static void pin(struct sb_kv_cache *kv, uint32_t i, uint64_t tick)
{
    if (kv->ent[i].pins++ == 0)
        heap_remove(kv, SB_KV_T0, i);
    touch(kv, SB_KV_T0, i, tick);
}

/* Puts entry i (not in tier 0) into tier 0, pinned; the room was made by the admission. */
static void t0_add_pinned(struct sb_kv_cache *kv, uint32_t i, uint64_t tick)
{
    struct kv_entry *e = &kv->ent[i];
    e->tiers |= BIT(SB_KV_T0);
    e->uses[SB_KV_T0] = 0;
    e->tick[SB_KV_T0] = tick;
    e->pins++;
    kv->used[SB_KV_T0]++;
    touch(kv, SB_KV_T0, i, tick);
}

/* The walk asked tiers 0..hit_tier for a block and found it in hit_tier (W_NONE: nowhere). */
static void count_lookups(struct sb_kv_cache *kv, int hit_tier)
{
    for (int t = 0; t < SB_KV_TIERS; t++) {
        if (!kv->cap[t])
            continue;
        kv->st[t].lookups++;
        if (t == hit_tier) {
            kv->st[t].hits++;
            return;
        }
        kv->st[t].misses++;
    }
}

static uint64_t tier1_copy_ns(struct sb_kv_cache *kv)
{
    uint64_t ns = 0;
    if (kv->t1_src) {
        uint64_t start = sb_mono_ns();
        memcpy(kv->t1_dst, kv->t1_src, (size_t)kv->cfg.block_bytes);
        ns = sb_mono_ns() - start;
    }
    return ns + (uint64_t)llround(kv->cfg.tier1_fetch_us * 1000.0);
}

static void rate_record(struct sb_kv_cache *kv, size_t host, size_t disk, size_t total)
{
    if (kv->win_len == RATE_WINDOW) {
        struct kv_rate *old = &kv->win[kv->win_pos];
        kv->win_host -= old->host;
        kv->win_disk -= old->disk;
        kv->win_total -= old->total;
    } else {
        kv->win_len++;
    }
    kv->win[kv->win_pos] = (struct kv_rate){(uint32_t)host, (uint32_t)disk, (uint32_t)total};
    kv->win_host += (uint32_t)host;
    kv->win_disk += (uint32_t)disk;
    kv->win_total += (uint32_t)total;
    kv->win_pos = (kv->win_pos + 1) % RATE_WINDOW;
}

/* ---- sequences ---- */

static uint32_t seq_find(const struct sb_kv_cache *kv, uint64_t id)
{
    if (!kv->nseq_bucket)
        return NIL;
    for (uint32_t i = kv->seq_bucket[bucket_of(id, kv->nseq_bucket)]; i != NIL; i = kv->seq[i].next)
        if (kv->seq[i].id == id)
            return i;
    return NIL;
}

/* Room for one more sequence, so that seq_add cannot fail. */
static int seq_reserve(struct sb_kv_cache *kv)
{
    if (kv->seq_free == NIL &&
        grow((void **)&kv->seq, &kv->seq_cap, (uint64_t)kv->seq_len + 1, sizeof(*kv->seq)) < 0)
        return -1;
    if (kv->seq_count + 1 <= kv->nseq_bucket)
        return 0;
    uint32_t nb = kv->nseq_bucket ? kv->nseq_bucket * 2 : 64;
    uint32_t *b = malloc((size_t)nb * sizeof(*b));
    if (!b)
        return -1;
    for (uint32_t i = 0; i < nb; i++)
        b[i] = NIL;
    for (uint32_t o = 0; o < kv->nseq_bucket; o++) {
        uint32_t i = kv->seq_bucket[o];
        while (i != NIL) {
            uint32_t next = kv->seq[i].next;
            uint32_t h = bucket_of(kv->seq[i].id, nb);
            kv->seq[i].next = b[h];
            b[h] = i;
            i = next;
        }
    }
    free(kv->seq_bucket);
    kv->seq_bucket = b;
    kv->nseq_bucket = nb;
    return 0;
}

static struct kv_seq *seq_add(struct sb_kv_cache *kv, uint64_t id)
{
    uint32_t i;
    if (kv->seq_free != NIL) {
        i = kv->seq_free;
        kv->seq_free = kv->seq[i].next;
    } else {
        i = kv->seq_len++;
    }
    struct kv_seq *s = &kv->seq[i];
    memset(s, 0, sizeof(*s));
    s->id = id;
    uint32_t b = bucket_of(id, kv->nseq_bucket);
    s->next = kv->seq_bucket[b];
    kv->seq_bucket[b] = i;
    kv->seq_count++;
    return s;
}

/* ---- public API ---- */

int sb_kv_init(struct sb_kv_cache **out, const struct sb_kv_config *cfg, const struct sb_kv_io *io,
               struct sb_err *err)
{
    *out = NULL;
    if (cfg->tier_blocks[SB_KV_T0] == 0)
        return sb_err_set(err, "kv cache: tier 0 needs at least one block");
    uint64_t total = 0;
    for (int t = 0; t < SB_KV_TIERS; t++) {
        if (cfg->tier_blocks[t] >= UINT32_MAX || total + cfg->tier_blocks[t] >= UINT32_MAX)
            return sb_err_set(err, "kv cache: total capacity is too large (at most %u blocks)",
                              UINT32_MAX - 1);
        total += cfg->tier_blocks[t];
        if ((unsigned)cfg->policy[t] > SB_KV_LFU)
            return sb_err_set(err, "kv cache: unknown eviction policy %d for tier %d",
                              (int)cfg->policy[t], t);
    }
    if ((unsigned)cfg->offload > SB_KV_ON_EVICT)
        return sb_err_set(err, "kv cache: unknown offload policy %d", (int)cfg->offload);
    if (!(cfg->tier1_fetch_us >= 0) || !isfinite(cfg->tier1_fetch_us))
        return sb_err_set(err, "kv cache: tier-1 fetch cost must be a finite number >= 0");
    if (cfg->tier_blocks[SB_KV_T2] && (!io || !io->write_block || !io->read_block))
        return sb_err_set(err, "kv cache: a disk tier needs read and write callbacks");
    if (cfg->tier_blocks[SB_KV_T1] && cfg->block_bytes > SIZE_MAX / 2)
        return sb_err_set(err, "kv cache: block size %llu is too large",
                          (unsigned long long)cfg->block_bytes);

    struct sb_kv_cache *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return sb_err_set(err, "kv cache: out of memory");
    kv->cfg = *cfg;
    if (!kv->cfg.block_tokens)
        kv->cfg.block_tokens = 32;
    if (io)
        kv->io = *io;
    kv->ent_free = NIL;
    kv->seq_free = NIL;
    kv->ent_max = (uint32_t)total;
    for (int t = 0; t < SB_KV_TIERS; t++) {
        kv->cap[t] = cfg->tier_blocks[t];
        kv->st[t].capacity_blocks = cfg->tier_blocks[t];
    }
    if (rehash(kv, 1024) < 0)
        goto oom;
    if (kv->cap[SB_KV_T2] && cfg->disk_second_use_filter) {
        uint64_t n = 1024;
        while (n < total && n < (1u << 22))
            n *= 2;
        kv->freq = calloc((size_t)n, sizeof(*kv->freq));
        if (!kv->freq)
            goto oom;
        kv->freq_mask = n - 1;
    }
    if (kv->cap[SB_KV_T1] && cfg->block_bytes) {
        kv->t1_src = malloc((size_t)cfg->block_bytes);
        kv->t1_dst = malloc((size_t)cfg->block_bytes);
        if (!kv->t1_src || !kv->t1_dst)
            goto oom;
        memset(kv->t1_src, 0x5a, (size_t)cfg->block_bytes);
        memset(kv->t1_dst, 0, (size_t)cfg->block_bytes);
    }
    *out = kv;
    return 0;
oom:
    sb_kv_free(kv);
    return sb_err_set(err, "kv cache: out of memory");
}

void sb_kv_free(struct sb_kv_cache *kv)
{
    if (!kv)
        return;
    for (uint32_t i = 0; i < kv->seq_len; i++)
        free(kv->seq[i].blocks); /* NULL for free records */
    free(kv->seq);
    free(kv->seq_bucket);
    free(kv->ent);
    free(kv->bucket);
    for (int t = 0; t < SB_KV_TIERS; t++)
        free(kv->heap[t].idx);
    free(kv->slot_free);
    free(kv->freq);
    free(kv->where);
    free(kv->t1_src);
    free(kv->t1_dst);
    free(kv);
}

static size_t hash_chain(const unsigned char *p, size_t len, size_t block_len, uint64_t seed,
                         uint64_t *out, size_t cap)
{
    size_t n = 0;
    uint64_t h = seed;
    for (size_t off = 0; n < cap && block_len <= len - off; off += block_len) {
        h = sb_mix64(sb_hash64(p + off, block_len, h));
        out[n++] = h;
    }
    return n;
}

size_t sb_kv_hash_prompt(const char *bytes, size_t len, uint32_t block_tokens, uint64_t *out,
                         size_t cap)
{
    size_t bt = block_tokens ? block_tokens : 32;
    if (!bytes)
        return 0;
    return hash_chain((const unsigned char *)bytes, len, bt * 4, 0x6b762d6279746573ull, out, cap);
}

size_t sb_kv_hash_tokens(const uint32_t *ids, size_t n, uint32_t block_tokens, uint64_t *out,
                         size_t cap)
{
    size_t bt = block_tokens ? block_tokens : 32;
    size_t count = 0;
    uint64_t h = 0x6b762d746f6b656eull;
    unsigned char buf[4 * 256];
    for (size_t off = 0; ids && count < cap && bt <= n - off; off += bt) {
        /* Little-endian bytes, so hashes do not depend on the host; hashed in chunks. */
        uint64_t bh = h;
        for (size_t k = 0; k < bt;) {
            size_t chunk = bt - k < 256 ? bt - k : 256;
            for (size_t j = 0; j < chunk; j++) {
                uint32_t v = ids[off + k + j];
                buf[4 * j] = (unsigned char)v;
                buf[4 * j + 1] = (unsigned char)(v >> 8);
                buf[4 * j + 2] = (unsigned char)(v >> 16);
                buf[4 * j + 3] = (unsigned char)(v >> 24);
            }
            bh = sb_hash64(buf, 4 * chunk, bh ^ 0xcbf29ce484222325ull);
            k += chunk;
        }
        h = sb_mix64(bh);
        out[count++] = h;
    }
    return count;
}

/* Reserves everything an admission of n blocks may allocate, so that it cannot fail midway. */
static int admit_reserve(struct sb_kv_cache *kv, size_t n, size_t extra)
{
    if (n > UINT32_MAX)
        return -1;
    uint64_t moves = 4 * (uint64_t)n + 2 * (uint64_t)extra; /* blocks that may enter a tier */
    if (entry_reserve(kv, n) < 0 || seq_reserve(kv) < 0)
        return -1;
    uint64_t cached0 = kv->used[SB_KV_T0];
    if (grow((void **)&kv->heap[SB_KV_T0].idx, &kv->heap[SB_KV_T0].cap,
             min_u64(kv->cap[SB_KV_T0], cached0 + n), sizeof(uint32_t)) < 0)
        return -1;
    for (int t = SB_KV_T1; t < SB_KV_TIERS; t++)
        if (kv->cap[t] && grow((void **)&kv->heap[t].idx, &kv->heap[t].cap,
                               min_u64(kv->cap[t], kv->heap[t].len + moves), sizeof(uint32_t)) < 0)
            return -1;
    if (kv->cap[SB_KV_T2] &&
        grow((void **)&kv->slot_free, &kv->slot_free_cap,
             min_u64(kv->cap[SB_KV_T2], kv->slot_fresh + moves), sizeof(uint32_t)) < 0)
        return -1;
    if (n > kv->where_cap) {
        uint8_t *w = realloc(kv->where, n);
        if (!w)
            return -1;
        kv->where = w;
        kv->where_cap = n;
    }
    return 0;
}

int sb_kv_admit(struct sb_kv_cache *kv, uint64_t seq_id, const uint64_t *hashes, size_t nblocks,
                size_t extra_blocks, struct sb_kv_match *m, struct sb_err *err)
{
    memset(m, 0, sizeof(*m));
    m->blocks = nblocks;
    if (nblocks && !hashes)
        return sb_err_set(err, "kv cache: sequence %llu has %zu blocks but no hashes",
                          (unsigned long long)seq_id, nblocks);
    if (seq_find(kv, seq_id) != NIL)
        return sb_err_set(err, "kv cache: sequence %llu is already admitted",
                          (unsigned long long)seq_id);
    const bool reuse = kv->cfg.prefix_reuse;
    const uint64_t cap0 = kv->cap[SB_KV_T0];
    if (nblocks > cap0 || extra_blocks > cap0)
        return SB_KV_NOFIT;

    /* Will it fit? Every block not in tier 0 needs a place there; this prompt's own unpinned
       tier-0 blocks will be pinned, so they are not evictable. */
    uint64_t need = extra_blocks, mine_evictable = 0;
    if (reuse) {
        for (size_t i = 0; i < nblocks; i++) {
            uint32_t j = entry_find(kv, hashes[i]);
            if (j != NIL && (kv->ent[j].tiers & BIT(SB_KV_T0)))
                mine_evictable += kv->ent[j].pins == 0;
            else
                need++;
        }
    } else {
        need += nblocks;
    }
    uint64_t room = cap0 - kv->used[SB_KV_T0] + kv->heap[SB_KV_T0].len;
    if (mine_evictable > room || need > room - mine_evictable)
        return SB_KV_NOFIT;

    uint32_t *blocks = NULL;
    if (admit_reserve(kv, nblocks, extra_blocks) < 0 ||
        (reuse && nblocks && !(blocks = malloc(nblocks * sizeof(*blocks)))))
        return sb_err_set(err, "kv cache: out of memory admitting sequence %llu",
                          (unsigned long long)seq_id);

    /* From here on nothing can fail. Ticks: later blocks of the prompt count as less recent. */
    const uint64_t tick0 = kv->tick;
    kv->tick += nblocks;
#define TICK(i) (tick0 + nblocks - 1 - (i))
    uint8_t *where = kv->where;
    size_t match = 0;
    if (reuse) {
        /* Plan the match; pin what tier 0 holds and hold lower-tier matches out of eviction. */
        for (size_t i = 0; i < nblocks; i++) {
            uint32_t j = entry_find(kv, hashes[i]);
            blocks[i] = j;
            where[i] = W_NONE;
            if (kv->freq)
                freq_bump(kv, hashes[i]);
            if (j == NIL)
                continue;
            unsigned tiers = kv->ent[j].tiers;
            if (tiers & BIT(SB_KV_T0)) {
                pin(kv, j, TICK(i));
                where[i] = SB_KV_T0;
                match += match == i;
            } else if (match == i) {
                int t = (tiers & BIT(SB_KV_T1)) ? SB_KV_T1 : SB_KV_T2;
                if (kv->ent[j].pos[t] != NIL) { /* NIL: a repeated hash, already held */
                    heap_remove(kv, t, j);
                    where[i] = (uint8_t)t;
                    match++;
                }
            }
        }
    }

    while (cap0 - kv->used[SB_KV_T0] < need && kv->heap[SB_KV_T0].len)
        evict_one(kv, SB_KV_T0, m);

    /* Onboard the matched prefix. */
    size_t stop = match;
    for (size_t i = 0; i < match; i++) {
        uint32_t j = blocks[i];
        int t = where[i];
        if (t == SB_KV_T0) {
            count_lookups(kv, t);
            m->hit[t]++;
            continue;
        }
        if (t == SB_KV_T1) {
            m->fetch_ns += tier1_copy_ns(kv);
        } else {
            int64_t ns = kv->io.read_block(kv->io.ctx, kv->ent[j].slot);
            if (ns < 0) {
                /* Unreadable: the block leaves the disk tier and the match ends here. */
                count_lookups(kv, W_NONE);
                m->io_errors++;
                kv->ent[j].tiers &= (uint8_t)~BIT(SB_KV_T2);
                kv->used[SB_KV_T2]--;
                slot_give(kv, kv->ent[j].slot);
                kv->ent[j].slot = NIL;
                where[i] = W_NONE;
                stop = i;
                break;
            }
            m->fetch_ns += (uint64_t)ns;
            m->disk_read_bytes += kv->cfg.block_bytes;
        }
        count_lookups(kv, t);
        touch(kv, t, j, TICK(i));
        heap_push(kv, t, j);
        t0_add_pinned(kv, j, TICK(i));
        count_copy(kv, t, SB_KV_T0);
        m->hit[t]++;
    }
    if (stop == match && match < nblocks && reuse)
        count_lookups(kv, W_NONE);
    for (size_t i = stop + 1; i < match; i++) {
        if (where[i] == SB_KV_T1 || where[i] == SB_KV_T2) {
            heap_push(kv, where[i], blocks[i]);
            where[i] = W_NONE;
        }
    }
    m->miss = nblocks - stop;

    /* Compute the rest. */
    uint64_t private_blocks = extra_blocks;
    if (reuse) {
        for (size_t i = stop; i < nblocks; i++) {
            if (where[i] == SB_KV_T0)
                continue;
            uint32_t j = entry_find(kv, hashes[i]);
            if (j != NIL && (kv->ent[j].tiers & BIT(SB_KV_T0))) {
                pin(kv, j, TICK(i)); /* a repeated hash within the prompt */
                blocks[i] = j;
                continue;
            }
            if (j == NIL)
                j = entry_new(kv, hashes[i]);
            blocks[i] = j;
            t0_add_pinned(kv, j, TICK(i));
            if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T1] &&
                !(kv->ent[j].tiers & BIT(SB_KV_T1)))
                tier_insert(kv, SB_KV_T1, j, SB_KV_T0, m);
        }
        if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T2]) {
            for (size_t i = 0; i < nblocks; i++) {
                uint32_t j = blocks[i];
                unsigned tiers = kv->ent[j].tiers;
                if (!(tiers & BIT(SB_KV_T2)) && disk_allowed(kv, hashes[i]))
                    tier_insert(kv, SB_KV_T2, j, (tiers & BIT(SB_KV_T1)) ? SB_KV_T1 : SB_KV_T0, m);
            }
        }
        if (kv->cap[SB_KV_T1] || kv->cap[SB_KV_T2]) {
            size_t asked = nblocks - m->hit[SB_KV_T0];
            if (asked)
                rate_record(kv, m->hit[SB_KV_T1], m->hit[SB_KV_T2], asked);
        }
        kv->kvbm.matched_tokens +=
            (uint64_t)(m->hit[SB_KV_T1] + m->hit[SB_KV_T2]) * kv->cfg.block_tokens;
    } else {
        private_blocks += nblocks;
    }
#undef TICK
    kv->used[SB_KV_T0] += private_blocks;

    struct kv_seq *s = seq_add(kv, seq_id);
    s->blocks = blocks;
    s->nblocks = reuse ? (uint32_t)nblocks : 0;
    s->private_blocks = private_blocks;
    return 0;
}

void sb_kv_release(struct sb_kv_cache *kv, uint64_t seq_id)
{
    uint32_t si = seq_find(kv, seq_id);
    if (si == NIL)
        return;
    struct kv_seq *s = &kv->seq[si];
    for (uint32_t k = s->nblocks; k-- > 0;) {
        uint32_t j = s->blocks[k];
        if (--kv->ent[j].pins == 0)
            heap_push(kv, SB_KV_T0, j);
    }
    kv->used[SB_KV_T0] -= s->private_blocks;
    free(s->blocks);
    s->blocks = NULL;

    uint32_t *link = &kv->seq_bucket[bucket_of(seq_id, kv->nseq_bucket)];
    while (*link != si)
        link = &kv->seq[*link].next;
    *link = s->next;
    s->next = kv->seq_free;
    kv->seq_free = si;
    kv->seq_count--;
}

unsigned sb_kv_where(const struct sb_kv_cache *kv, uint64_t hash)
{
    uint32_t j = entry_find(kv, hash);
    return j == NIL ? 0 : kv->ent[j].tiers;
}

void sb_kv_get_stats(const struct sb_kv_cache *kv, struct sb_kv_tier_stats out[SB_KV_TIERS],
                     struct sb_kv_kvbm *kvbm)
{
    if (out) {
        for (int t = 0; t < SB_KV_TIERS; t++) {
            out[t] = kv->st[t];
            out[t].used_blocks = kv->used[t];
        }
    }
    if (kvbm) {
        *kvbm = kv->kvbm;
        kvbm->host_cache_hit_rate =
            kv->win_total ? (double)kv->win_host / (double)kv->win_total : 0.0;
        kvbm->disk_cache_hit_rate =
            kv->win_total ? (double)kv->win_disk / (double)kv->win_total : 0.0;
    }
}
