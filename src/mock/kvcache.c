/*
 * The mock's KV block/tier model (see sb/mock_kvcache.h): decides, for every admitted prompt, which
 * blocks are reused from which tier and what gets evicted, offloaded and onboarded, so that the
 * mock can charge realistic prefill and I/O time and export KVBM-shaped counters. Blocks are
 * entries in one growable array, found through a chained hash table keyed by block hash. Each tier
 * orders its evictable entries in an intrusive list (lru, and fifo below tier 0: O(1) per block)
 * or a binary min-heap (lfu, and tier-0 fifo, whose pinned blocks must return to their place:
 * O(log n)). Pinned tier-0 blocks are out of the order until their release. Nothing here does I/O
 * except through the caller's struct sb_kv_io.
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
    uint64_t tick[SB_KV_TIERS];    /* heap key: lfu last use, tier-0 fifo insertion */
    uint32_t uses[SB_KV_TIERS];    /* uses in the tier since it entered it (lfu) */
    uint32_t link[SB_KV_TIERS][2]; /* list: prev, next; heap: position */
    uint32_t next;                 /* hash chain, or free list */
    uint32_t pins;                 /* live sequences using it (+1 while moving between tiers) */
    uint32_t slot;                 /* tier-2 slot while in tier 2 */
    uint8_t tiers;                 /* BIT(t) for each tier holding it */
};

struct kv_order {
    bool heap;
    uint32_t len;        /* evictable entries (tier 0: cached and unpinned) */
    uint32_t head, tail; /* list */
    uint32_t *idx;       /* heap */
    uint32_t cap;
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
    struct kv_order order[SB_KV_TIERS];

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
    uint32_t *pending; /* admission scratch: tier-0 victims on their way down */
    uint32_t pending_cap;

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

/* ---- per-tier eviction order ---- */

/*
 * lru (every tier) and fifo (tiers 1-2) keep a list: head is the next victim, tail the most recent.
 * lfu needs (uses, last use) and tier-0 fifo needs blocks unpinned long after their insertion to
 * go back to their place: both keep a min-heap instead.
 */
static bool order_is_heap(const struct sb_kv_config *cfg, int t)
{
    return cfg->policy[t] == SB_KV_LFU || (t == SB_KV_T0 && cfg->policy[t] == SB_KV_FIFO);
}

static bool evict_before(const struct sb_kv_cache *kv, int t, uint32_t a, uint32_t b)
{
    const struct kv_entry *ea = &kv->ent[a], *eb = &kv->ent[b];
    if (kv->cfg.policy[t] == SB_KV_LFU && ea->uses[t] != eb->uses[t])
        return ea->uses[t] < eb->uses[t];
    return ea->tick[t] < eb->tick[t];
}

static void heap_set(struct sb_kv_cache *kv, int t, uint32_t at, uint32_t i)
{
    kv->order[t].idx[at] = i;
    kv->ent[i].link[t][0] = at;
}

static void heap_up(struct sb_kv_cache *kv, int t, uint32_t at)
{
    struct kv_order *h = &kv->order[t];
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
    struct kv_order *h = &kv->order[t];
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

/* Makes entry i evictable in tier t (the heap's room was reserved by the admission). */
static void order_add(struct sb_kv_cache *kv, int t, uint32_t i)
{
    struct kv_order *o = &kv->order[t];
    struct kv_entry *e = &kv->ent[i];
    if (o->heap) {
        o->idx[o->len] = i;
        e->link[t][0] = o->len;
        heap_up(kv, t, o->len++);
        return;
    }
    e->link[t][0] = o->tail;
    e->link[t][1] = NIL;
    if (o->tail != NIL)
        kv->ent[o->tail].link[t][1] = i;
    else
        o->head = i;
    o->tail = i;
    o->len++;
}

static void order_del(struct sb_kv_cache *kv, int t, uint32_t i)
{
    struct kv_order *o = &kv->order[t];
    struct kv_entry *e = &kv->ent[i];
    o->len--;
    if (o->heap) {
        uint32_t at = e->link[t][0];
        uint32_t last = o->idx[o->len];
        if (at == o->len)
            return;
        heap_set(kv, t, at, last);
        heap_up(kv, t, at);
        heap_down(kv, t, kv->ent[last].link[t][0]);
        return;
    }
    uint32_t prev = e->link[t][0], next = e->link[t][1];
    if (prev != NIL)
        kv->ent[prev].link[t][1] = next;
    else
        o->head = next;
    if (next != NIL)
        kv->ent[next].link[t][0] = prev;
    else
        o->tail = prev;
}

/* The next victim of tier t (its order is not empty). */
static uint32_t order_victim(const struct sb_kv_cache *kv, int t)
{
    const struct kv_order *o = &kv->order[t];
    return o->heap ? o->idx[0] : o->head;
}

/* A hit on entry i while it stays evictable in lower tier t. */
static void order_use(struct sb_kv_cache *kv, int t, uint32_t i)
{
    struct kv_entry *e = &kv->ent[i];
    enum sb_kv_policy p = kv->cfg.policy[t];
    if (p == SB_KV_FIFO)
        return;
    e->uses[t]++;
    e->tick[t] = kv->tick++;
    if (kv->order[t].heap) {
        heap_down(kv, t, e->link[t][0]); /* the key only grew */
    } else if (kv->order[t].tail != i) {
        order_del(kv, t, i);
        order_add(kv, t, i);
    }
}

/* ---- tier moves ---- */

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
 * false when the disk write failed.
 */
static bool tier_insert(struct sb_kv_cache *kv, int t, uint32_t i, int from, struct sb_kv_match *m)
{
    if (kv->used[t] >= kv->cap[t])
        evict_one(kv, t, m); /* lower tiers pin nothing: everything there is evictable */
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
    order_add(kv, t, i);
    count_copy(kv, from, t);
    return true;
}

/* After entry i left tier t: on_evict copies it to the next tier down unless it is there. */
static void demote(struct sb_kv_cache *kv, int t, uint32_t i, struct sb_kv_match *m)
{
    if (kv->cfg.offload != SB_KV_ON_EVICT)
        return;
    int d = next_tier(kv, t);
    struct kv_entry *e = &kv->ent[i];
    if (d >= 0 && !(e->tiers & BIT(d)) && (d != SB_KV_T2 || disk_allowed(kv, e->hash)))
        tier_insert(kv, d, i, t, m);
}

/* Evicts the victim of lower tier t at once (tier 0 defers its victims, see sb_kv_admit). */
static void evict_one(struct sb_kv_cache *kv, int t, struct sb_kv_match *m)
{
    uint32_t i = order_victim(kv, t);
    order_del(kv, t, i);
    struct kv_entry *e = &kv->ent[i];
    e->tiers &= (uint8_t)~BIT(t);
    kv->used[t]--;
    kv->st[t].evictions++;
    if (t == SB_KV_T2) {
        slot_give(kv, e->slot);
        e->slot = NIL;
    }
    e->pins++; /* in transit: the cascade below must not free it */
    demote(kv, t, i, m);
    kv->ent[i].pins--;
    entry_maybe_free(kv, i);
}

/* Pins a cached tier-0 entry for a sequence; a new pin is a use. */
static void pin(struct sb_kv_cache *kv, uint32_t i)
{
    if (kv->ent[i].pins++ == 0)
        order_del(kv, SB_KV_T0, i);
    kv->ent[i].uses[SB_KV_T0]++;
}

/* Puts entry i (not in tier 0) into tier 0, pinned; the room was made by the admission. */
static void t0_add_pinned(struct sb_kv_cache *kv, uint32_t i, uint64_t tick)
{
    struct kv_entry *e = &kv->ent[i];
    e->tiers |= BIT(SB_KV_T0);
    e->uses[SB_KV_T0] = 1;
    e->tick[SB_KV_T0] = tick;
    e->pins++;
    kv->used[SB_KV_T0]++;
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
    if (total + cfg->tier_blocks[SB_KV_T0] >= UINT32_MAX) /* the entries, see ent_max */
        return sb_err_set(err, "kv cache: total capacity is too large (at most %u blocks)",
                          UINT32_MAX - 1 - (uint32_t)cfg->tier_blocks[SB_KV_T0]);
    if ((unsigned)cfg->offload > SB_KV_ON_EVICT)
        return sb_err_set(err, "kv cache: unknown offload policy %d", (int)cfg->offload);
    if (!(cfg->tier1_fetch_us >= 0) || !isfinite(cfg->tier1_fetch_us))
        return sb_err_set(err, "kv cache: tier-1 fetch cost must be a finite number >= 0");
    if (!(cfg->tier2_fetch_us >= 0) || !isfinite(cfg->tier2_fetch_us))
        return sb_err_set(err, "kv cache: tier-2 fetch cost must be a finite number >= 0");
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
    for (int t = 0; t < SB_KV_TIERS; t++) {
        kv->order[t].heap = order_is_heap(cfg, t);
        kv->order[t].head = kv->order[t].tail = NIL;
    }
    /* An admission's tier-0 victims stay entries (in transit) until its new blocks have
       entries too, so up to tier 0's capacity more than all tiers hold can be live at once. */
    kv->ent_max = (uint32_t)(total + cfg->tier_blocks[SB_KV_T0]);
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
        free(kv->order[t].idx);
    free(kv->slot_free);
    free(kv->freq);
    free(kv->where);
    free(kv->pending);
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
static int admit_reserve(struct sb_kv_cache *kv, size_t n, size_t extra, uint64_t need)
{
    if (n > UINT32_MAX)
        return -1;
    uint64_t moves = 4 * (uint64_t)n + 2 * (uint64_t)extra; /* blocks that may enter a tier */
    if (entry_reserve(kv, n) < 0 || seq_reserve(kv) < 0)
        return -1;
    for (int t = 0; t < SB_KV_TIERS; t++) {
        struct kv_order *o = &kv->order[t];
        /* tier 0: every cached block may become evictable at its release */
        uint64_t want = t == SB_KV_T0 ? kv->used[t] + n : o->len + moves;
        if (kv->cap[t] && o->heap &&
            grow((void **)&o->idx, &o->cap, min_u64(kv->cap[t], want), sizeof(uint32_t)) < 0)
            return -1;
    }
    if (kv->cap[SB_KV_T2] &&
        grow((void **)&kv->slot_free, &kv->slot_free_cap,
             min_u64(kv->cap[SB_KV_T2], kv->slot_fresh + moves), sizeof(uint32_t)) < 0)
        return -1;
    if (grow((void **)&kv->pending, &kv->pending_cap, need, sizeof(uint32_t)) < 0)
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
    uint64_t room = cap0 - kv->used[SB_KV_T0] + kv->order[SB_KV_T0].len;
    if (mine_evictable > room || need > room - mine_evictable)
        return SB_KV_NOFIT;

    uint32_t *blocks = NULL;
    if (admit_reserve(kv, nblocks, extra_blocks, need) < 0 ||
        (reuse && nblocks && !(blocks = malloc(nblocks * sizeof(*blocks)))))
        return sb_err_set(err, "kv cache: out of memory admitting sequence %llu",
                          (unsigned long long)seq_id);

    /* From here on nothing can fail. Later blocks of the prompt get older fifo ticks, and every
       loop that orders blocks in a tier runs from the last block to the first, so that under
       pressure a cached prefix loses its tail before its head. */
    const uint64_t tick0 = kv->tick;
    kv->tick += nblocks;
    uint8_t *where = kv->where;
    size_t match = 0;
    if (reuse) {
        /* Plan the match; pin what tier 0 holds. */
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
                pin(kv, j);
                where[i] = SB_KV_T0;
            } else if (match == i) {
                where[i] = (tiers & BIT(SB_KV_T1)) ? SB_KV_T1 : SB_KV_T2;
            }
            match += match == i;
        }
    }

    /* Make room in tier 0. The victims go down only after the onboarding, so their way down
       cannot evict the lower-tier blocks this prompt is about to read. */
    uint32_t npending = 0;
    while (cap0 - kv->used[SB_KV_T0] < need && kv->order[SB_KV_T0].len) {
        uint32_t j = order_victim(kv, SB_KV_T0);
        order_del(kv, SB_KV_T0, j);
        kv->ent[j].tiers &= (uint8_t)~BIT(SB_KV_T0);
        kv->ent[j].pins++; /* in transit */
        kv->used[SB_KV_T0]--;
        kv->st[SB_KV_T0].evictions++;
        kv->pending[npending++] = j;
    }

    /* Onboard the matched prefix. */
    size_t stop = match;
    for (size_t i = 0; i < match; i++) {
        uint32_t j = blocks[i];
        int t = where[i];
        if (t != SB_KV_T0 && (kv->ent[j].tiers & BIT(SB_KV_T0))) {
            pin(kv, j); /* a repeated hash, onboarded a moment ago */
            t = where[i] = SB_KV_T0;
        }
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
                order_del(kv, SB_KV_T2, j);
                kv->ent[j].tiers &= (uint8_t)~BIT(SB_KV_T2);
                kv->used[SB_KV_T2]--;
                slot_give(kv, kv->ent[j].slot);
                kv->ent[j].slot = NIL;
                where[i] = W_NONE;
                stop = i;
                break;
            }
            m->fetch_ns += (uint64_t)ns + (uint64_t)llround(kv->cfg.tier2_fetch_us * 1000.0);
            m->disk_read_bytes += kv->cfg.block_bytes;
        }
        count_lookups(kv, t);
        t0_add_pinned(kv, j, tick0 + nblocks - 1 - i);
        count_copy(kv, t, SB_KV_T0);
        m->hit[t]++;
    }
    if (reuse && stop == match && match < nblocks)
        count_lookups(kv, W_NONE);
    for (size_t i = stop; i-- > 0;)
        if (where[i] == SB_KV_T1 || where[i] == SB_KV_T2)
            order_use(kv, where[i], blocks[i]);
    m->miss = nblocks - stop;

    /* Compute the rest. */
    uint64_t private_blocks = extra_blocks;
    if (reuse) {
        for (size_t i = nblocks; i-- > stop;) {
            if (where[i] == SB_KV_T0)
                continue;
            uint32_t j = entry_find(kv, hashes[i]);
            if (j != NIL && (kv->ent[j].tiers & BIT(SB_KV_T0))) {
                pin(kv, j); /* a repeated hash within the prompt */
                blocks[i] = j;
                continue;
            }
            if (j == NIL)
                j = entry_new(kv, hashes[i]);
            blocks[i] = j;
            t0_add_pinned(kv, j, tick0 + nblocks - 1 - i);
            if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T1] &&
                !(kv->ent[j].tiers & BIT(SB_KV_T1)))
                tier_insert(kv, SB_KV_T1, j, SB_KV_T0, m);
        }
    } else {
        private_blocks += nblocks;
    }

    for (uint32_t k = 0; k < npending; k++) {
        uint32_t j = kv->pending[k];
        demote(kv, SB_KV_T0, j, m);
        kv->ent[j].pins--;
        entry_maybe_free(kv, j);
    }

    if (reuse) {
        if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T2]) {
            for (size_t i = nblocks; i-- > 0;) {
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
    }
    kv->used[SB_KV_T0] += private_blocks;

    struct kv_seq *s = seq_add(kv, seq_id);
    s->blocks = blocks;
    s->nblocks = reuse ? (uint32_t)nblocks : 0;
    s->private_blocks = private_blocks;
    return 0;
}

int sb_kv_extend(struct sb_kv_cache *kv, uint64_t seq_id, const uint64_t *hashes, size_t n,
                 size_t *added, struct sb_err *err)
{
    *added = 0;
    uint32_t si = seq_find(kv, seq_id);
    if (si == NIL)
        return sb_err_set(err, "kv cache: sequence %llu is not admitted",
                          (unsigned long long)seq_id);
    struct kv_seq *s = &kv->seq[si];
    if (!kv->cfg.prefix_reuse || n <= s->nblocks)
        return 0;
    if (!hashes)
        return sb_err_set(err, "kv cache: sequence %llu extended without hashes",
                          (unsigned long long)seq_id);
    for (uint32_t i = 0; i < s->nblocks; i++)
        if (kv->ent[s->blocks[i]].hash != hashes[i])
            return sb_err_set(err,
                              "kv cache: sequence %llu: block %u of the extension is not "
                              "the prompt's",
                              (unsigned long long)seq_id, i);
    /* The sequence's own generation blocks become cached ones, then free tier-0 room (the
       mock's words are not 4-byte tokens, so a reply's bytes can outgrow its reservation);
       nothing is evicted for it. */
    size_t more = n - s->nblocks;
    uint64_t room = s->private_blocks + (kv->cap[SB_KV_T0] - kv->used[SB_KV_T0]);
    if (more > room)
        more = (size_t)room;
    if (more == 0)
        return 0;
    if (admit_reserve(kv, more, 0, 0) < 0)
        return sb_err_set(err, "kv cache: out of memory extending sequence %llu",
                          (unsigned long long)seq_id);
    s = &kv->seq[si]; /* admit_reserve may have moved the sequence table */
    uint32_t *blocks = realloc(s->blocks, (s->nblocks + more) * sizeof(*blocks));
    if (!blocks)
        return sb_err_set(err, "kv cache: out of memory extending sequence %llu",
                          (unsigned long long)seq_id);
    s->blocks = blocks;
    for (size_t k = 0; k < more; k++) {
        uint64_t h = hashes[s->nblocks];
        uint32_t j = entry_find(kv, h);
        if (kv->freq)
            freq_bump(kv, h);
        if (j != NIL && (kv->ent[j].tiers & BIT(SB_KV_T0))) {
            pin(kv, j); /* another sequence cached the same text first: ours stays private */
        } else {
            if (j == NIL)
                j = entry_new(kv, h);
            if (s->private_blocks) {
                s->private_blocks--;
                kv->used[SB_KV_T0]--;
            }
            t0_add_pinned(kv, j, kv->tick++);
            struct sb_kv_match m;
            memset(&m, 0, sizeof(m));
            if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T1] &&
                !(kv->ent[j].tiers & BIT(SB_KV_T1)))
                tier_insert(kv, SB_KV_T1, j, SB_KV_T0, &m);
            /* and to disk as an admission writes its computed blocks, through the filter */
            if (kv->cfg.offload == SB_KV_WRITE_THROUGH && kv->cap[SB_KV_T2] &&
                !(kv->ent[j].tiers & BIT(SB_KV_T2)) && disk_allowed(kv, h))
                tier_insert(kv, SB_KV_T2, j,
                            (kv->ent[j].tiers & BIT(SB_KV_T1)) ? SB_KV_T1 : SB_KV_T0, &m);
        }
        s->blocks[s->nblocks++] = j;
    }
    *added = more;
    return 0;
}

void sb_kv_release(struct sb_kv_cache *kv, uint64_t seq_id)
{
    uint32_t si = seq_find(kv, seq_id);
    if (si == NIL)
        return;
    struct kv_seq *s = &kv->seq[si];
    /* A block is in use until its release, which is its last use (lru, lfu tie-break); the last
       block of the prompt goes back first, as the least recent. */
    bool fifo = kv->cfg.policy[SB_KV_T0] == SB_KV_FIFO;
    for (uint32_t k = s->nblocks; k-- > 0;) {
        uint32_t j = s->blocks[k];
        if (--kv->ent[j].pins == 0) {
            if (!fifo)
                kv->ent[j].tick[SB_KV_T0] = kv->tick++;
            order_add(kv, SB_KV_T0, j);
        }
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
uint64_t sb_kv_reset(struct sb_kv_cache *kv)
{
    uint64_t dropped = 0;
    for (int t = SB_KV_TIERS - 1; t >= 0; t--) {
        /* Each tier's order holds exactly its evictable (unpinned) copies. */
        while (kv->order[t].len > 0) {
            uint32_t i = order_victim(kv, t);
            order_del(kv, t, i);
            struct kv_entry *e = &kv->ent[i];
            e->tiers &= (uint8_t)~BIT(t);
            kv->used[t]--;
            if (t == SB_KV_T2) {
                slot_give(kv, e->slot);
                e->slot = NIL;
            }
            dropped++;
            entry_maybe_free(kv, i);
        }
    }
    return dropped;
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

void sb_kv_peek(const struct sb_kv_cache *kv, const uint64_t *hashes, size_t nblocks,
                size_t hit[SB_KV_TIERS], size_t *miss)
{
    for (int t = 0; t < SB_KV_TIERS; t++)
        hit[t] = 0;
    size_t i = 0;
    for (; kv->cfg.prefix_reuse && i < nblocks; i++) {
        uint32_t j = entry_find(kv, hashes[i]);
        unsigned tiers = j == NIL ? 0 : kv->ent[j].tiers;
        if (!tiers)
            break;
        hit[(tiers & BIT(SB_KV_T0)) ? SB_KV_T0 : (tiers & BIT(SB_KV_T1)) ? SB_KV_T1 : SB_KV_T2]++;
    }
    *miss = nblocks - i;
}
