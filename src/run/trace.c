/*
 * Mooncake request traces (see sb/trace.h): a strict line-by-line loader, the trace's own
 * unbounded-cache oracle, the replay schedule and the block text that makes equal hash ids equal
 * bytes on the wire.
 *
 * The oracle keys a block by its chain (the ids of every block up to it), as a server's prefix
 * cache does, in one open-addressing table of (chain key, tokens sent, last request that used it).
 */
#include "sb/trace.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sha256.h"
#include "sb/util.h"

/* ---- parsing ---- */

/* A JSON number that is an integer in [lo, 2^53]: its value, or -1 with why filled. */
static int json_int(const cJSON *v, long long lo, long long *out, const char **why)
{
    if (!cJSON_IsNumber(v)) {
        *why = "must be a number";
        return -1;
    }
    double d = v->valuedouble;
    if (!(d >= (double)lo) || d > 9007199254740992.0 || d != floor(d)) {
        *why = lo > 0 ? "must be an integer >= 1" : "must be an integer >= 0";
        return -1;
    }
    *out = (long long)d;
    return 0;
}

/* Session ids seen so far: 64-bit hash of the id's text -> (index, last arrival). */
struct sess_map {
    uint64_t *key;
    long long *idx;
    double *last_ms;
    size_t cap, n;
};

static long long sess_find(struct sess_map *m, uint64_t key, bool *fresh)
{
    if (m->n * 2 >= m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 64;
        struct sess_map nm = {calloc(nc, sizeof(uint64_t)), calloc(nc, sizeof(long long)),
                              calloc(nc, sizeof(double)), nc, m->n};
        if (!nm.key || !nm.idx || !nm.last_ms) {
            free(nm.key), free(nm.idx), free(nm.last_ms);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i])
                continue;
            size_t j = m->key[i] & (nc - 1);
            while (nm.key[j])
                j = (j + 1) & (nc - 1);
            nm.key[j] = m->key[i], nm.idx[j] = m->idx[i], nm.last_ms[j] = m->last_ms[i];
        }
        free(m->key), free(m->idx), free(m->last_ms);
        *m = nm;
    }
    key = key ? key : 1;
    size_t j = key & (m->cap - 1);
    while (m->key[j] && m->key[j] != key)
        j = (j + 1) & (m->cap - 1);
    *fresh = !m->key[j];
    if (*fresh) {
        m->key[j] = key;
        m->idx[j] = (long long)m->n++;
        m->last_ms[j] = NAN;
    }
    return (long long)j;
}

static void sess_release(struct sess_map *m)
{
    free(m->key), free(m->idx), free(m->last_ms);
}

void sb_trace_release(struct sb_trace *t)
{
    free(t->path);
    free(t->req);
    free(t->ids);
    memset(t, 0, sizeof(*t));
}

/* One line into t (appended). Errors name name:line and the field. */
static int parse_line(const char *s, size_t len, const char *name, size_t line,
                      long long block_tokens, struct sb_trace *t, size_t *cap_req, size_t *cap_ids,
                      struct sess_map *sm, struct sb_err *err)
{
    cJSON *o = cJSON_ParseWithLength(s, len);
    const char *why = NULL, *field = NULL;
    int rc = -1;
    if (!o || !cJSON_IsObject(o)) {
        sb_err_set(err, "%s:%zu: not a JSON object", name, line);
        goto out;
    }
    struct sb_trace_req r = {.session = -1, .reuse_distance = -1};
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(o, "delay");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(o, "session_id");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input_length");
    const cJSON *outl = cJSON_GetObjectItemCaseSensitive(o, "output_length");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "hash_ids");
    if (!in) {
        field = "input_length", why = "missing";
        goto bad;
    }
    if (json_int(in, 1, &r.input_len, &why) != 0) {
        field = "input_length";
        goto bad;
    }
    if (!outl) {
        field = "output_length", why = "missing";
        goto bad;
    }
    if (json_int(outl, 1, &r.output_len, &why) != 0) {
        field = "output_length";
        goto bad;
    }
    if (!ids) {
        field = "hash_ids", why = "missing";
        goto bad;
    }
    if (!cJSON_IsArray(ids)) {
        field = "hash_ids", why = "must be an array of integers";
        goto bad;
    }
    double delay_ms = NAN;
    if (delay && !cJSON_IsNull(delay)) {
        if (!cJSON_IsNumber(delay) || !(delay->valuedouble >= 0) || isinf(delay->valuedouble)) {
            field = "delay", why = "must be a number of ms >= 0";
            goto bad;
        }
        delay_ms = delay->valuedouble;
    }
    long long slot = -1;
    if (sid && !cJSON_IsNull(sid)) {
        char num[64];
        const char *key = NULL;
        if (cJSON_IsString(sid)) {
            key = sid->valuestring;
        } else if (cJSON_IsNumber(sid)) {
            snprintf(num, sizeof(num), "%.17g", sid->valuedouble);
            key = num;
        } else {
            field = "session_id", why = "must be a string or a number";
            goto bad;
        }
        bool fresh;
        slot = sess_find(sm, sb_hash64(key, strlen(key), 0x5e55), &fresh);
        if (slot < 0) {
            sb_err_set(err, "out of memory");
            goto out;
        }
        r.session = sm->idx[slot];
    }
    double prev_ms = t->n ? t->req[t->n - 1].ts_ms : 0;
    if (ts && !cJSON_IsNull(ts)) {
        if (!cJSON_IsNumber(ts) || !(ts->valuedouble >= 0) || isinf(ts->valuedouble)) {
            field = "timestamp", why = "must be a number of ms >= 0";
            goto bad;
        }
        r.ts_ms = ts->valuedouble;
    } else if (!isnan(delay_ms)) {
        double base = slot >= 0 && !isnan(sm->last_ms[slot]) ? sm->last_ms[slot] : prev_ms;
        r.ts_ms = base + delay_ms;
    } else {
        field = "timestamp", why = "missing (and no 'delay' to derive it from)";
        goto bad;
    }
    if (t->n && r.ts_ms < prev_ms) {
        sb_err_set(err,
                   "%s:%zu: field 'timestamp': %.17g ms is before the previous line's %.17g ms "
                   "(a trace is replayed in file order: sort it by timestamp)",
                   name, line, r.ts_ms, prev_ms);
        goto out;
    }
    if (slot >= 0)
        sm->last_ms[slot] = r.ts_ms;
    size_t nids = (size_t)cJSON_GetArraySize(ids);
    size_t want = (size_t)((r.input_len + block_tokens - 1) / block_tokens);
    if (nids != want) {
        sb_err_set(err,
                   "%s:%zu: field 'hash_ids': %zu ids for input_length %lld, which needs "
                   "ceil(%lld / %lld) = %zu (--trace-block-tokens %lld)",
                   name, line, nids, r.input_len, r.input_len, block_tokens, want, block_tokens);
        goto out;
    }
    if (t->nids + nids > *cap_ids) {
        size_t nc = *cap_ids ? *cap_ids * 2 : 4096;
        while (nc < t->nids + nids)
            nc *= 2;
        uint64_t *ni = realloc(t->ids, nc * sizeof(*ni));
        if (!ni) {
            sb_err_set(err, "out of memory");
            goto out;
        }
        t->ids = ni;
        *cap_ids = nc;
    }
    r.first_id = t->nids;
    r.nids = nids;
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ids)
    {
        long long v;
        if (json_int(e, 0, &v, &why) != 0) {
            sb_err_set(err, "%s:%zu: field 'hash_ids': element %zu %s", name, line, k, why);
            goto out;
        }
        t->ids[t->nids + k++] = (uint64_t)v;
    }
    t->nids += nids;
    if (t->n == *cap_req) {
        size_t nc = *cap_req ? *cap_req * 2 : 1024;
        struct sb_trace_req *nr = realloc(t->req, nc * sizeof(*nr));
        if (!nr) {
            sb_err_set(err, "out of memory");
            goto out;
        }
        t->req = nr;
        *cap_req = nc;
    }
    t->req[t->n++] = r;
    rc = 0;
    goto out;
bad:
    sb_err_set(err, "%s:%zu: field '%s' %s", name, line, field, why);
out:
    cJSON_Delete(o);
    return rc;
}

int sb_trace_parse(const char *text, size_t len, const char *name, long long block_tokens,
                   struct sb_trace *t, struct sb_err *err)
{
    memset(t, 0, sizeof(*t));
    if (block_tokens < 1)
        return sb_err_set(err, "block tokens must be >= 1");
    t->block_tokens = block_tokens;
    size_t cap_req = 0, cap_ids = 0, line = 0;
    struct sess_map sm = {0};
    const char *p = text, *end = text + len;
    int rc = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        const char *a = p, *b = le;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (a < b && (rc = parse_line(a, (size_t)(b - a), name, line, block_tokens, t, &cap_req,
                                      &cap_ids, &sm, err)) != 0)
            break;
        p = nl ? nl + 1 : end;
    }
    t->sessions = (long long)sm.n;
    sess_release(&sm);
    if (rc == 0 && t->n == 0)
        rc = sb_err_set(err, "%s: no requests in the trace", name);
    if (rc == 0)
        rc = sb_trace_oracle(t, t->n, err);
    if (rc != 0) {
        sb_trace_release(t);
        return -1;
    }
    t->path = strdup(name);
    return 0;
}

int sb_trace_load(const char *path, long long block_tokens, struct sb_trace *t, struct sb_err *err)
{
    struct sb_buf b;
    sb_buf_init(&b, (size_t)4 << 30);
    if (sb_buf_add_file(&b, path) != 0) {
        sb_buf_release(&b);
        memset(t, 0, sizeof(*t));
        return sb_err_errno(err, errno ? errno : EIO, "cannot read trace '%s'", path);
    }
    int rc = sb_trace_parse(b.data ? b.data : "", b.len, path, block_tokens, t, err);
    if (rc == 0) {
        uint8_t d[32];
        sb_sha256(b.data ? b.data : "", b.len, d);
        for (int i = 0; i < 32; i++)
            snprintf(t->sha256 + 2 * i, 3, "%02x", d[i]);
    }
    sb_buf_release(&b);
    return rc;
}

/* ---- the oracle ---- */

struct block_map {
    uint64_t *key;
    long long *tokens; /* most tokens of the block sent so far */
    size_t *last;      /* the last request that used it */
    size_t cap, n;
};

static size_t bm_slot(const struct block_map *m, uint64_t key)
{
    size_t j = (size_t)key & (m->cap - 1);
    while (m->key[j] && m->key[j] != key)
        j = (j + 1) & (m->cap - 1);
    return j;
}

int sb_trace_oracle(struct sb_trace *t, size_t n, struct sb_err *err)
{
    if (n > t->n)
        n = t->n;
    struct block_map m = {0};
    m.cap = 1024;
    while (m.cap < t->nids * 2 + 2)
        m.cap *= 2;
    m.key = calloc(m.cap, sizeof(uint64_t));
    m.tokens = calloc(m.cap, sizeof(long long));
    m.last = calloc(m.cap, sizeof(size_t));
    /* cum[i]: input tokens of requests 0..i-1, for the distances */
    long long *cum = malloc((n + 1) * sizeof(long long));
    if (!m.key || !m.tokens || !m.last || !cum) {
        free(m.key), free(m.tokens), free(m.last), free(cum);
        return sb_err_set(err, "out of memory");
    }
    t->input_tokens = t->oracle_hit_tokens = 0;
    cum[0] = 0;
    for (size_t i = 0; i < n; i++) {
        struct sb_trace_req *r = &t->req[i];
        const uint64_t *ids = t->ids + r->first_id;
        r->reusable_tokens = 0;
        r->reuse_distance = -1;
        uint64_t key = 0x7ace;
        bool matching = true;
        size_t longest = (size_t)-1;
        for (size_t j = 0; j < r->nids; j++) {
            long long len =
                j + 1 < r->nids ? t->block_tokens : r->input_len - t->block_tokens * (long long)j;
            key = sb_mix64(key ^ sb_mix64(ids[j] + 0x9e3779b97f4a7c15ull));
            if (!key)
                key = 1;
            size_t s = bm_slot(&m, key);
            if (matching && m.key[s]) {
                long long got = m.tokens[s] < len ? m.tokens[s] : len;
                r->reusable_tokens += got;
                longest = m.last[s];
                if (got < len)
                    matching = false; /* the rest of this block was never sent */
            } else {
                matching = false;
            }
            if (!m.key[s]) {
                m.key[s] = key;
                m.tokens[s] = 0;
                m.n++;
            }
            if (len > m.tokens[s])
                m.tokens[s] = len;
            m.last[s] = i;
        }
        if (longest != (size_t)-1)
            r->reuse_distance = cum[i] - cum[longest + 1];
        cum[i + 1] = cum[i] + r->input_len;
        t->input_tokens += r->input_len;
        t->oracle_hit_tokens += r->reusable_tokens;
    }
    free(m.key), free(m.tokens), free(m.last), free(cum);
    return 0;
}

/* ---- schedule ---- */

size_t sb_trace_schedule(const struct sb_trace *t, double speed, double max_gap_s, uint64_t *out)
{
    size_t capped = 0;
    double at_ns = 0;
    for (size_t k = 0; k < t->n; k++) {
        if (k > 0) {
            double gap_ns = (t->req[k].ts_ms - t->req[k - 1].ts_ms) * 1e6 / speed;
            if (max_gap_s > 0 && gap_ns > max_gap_s * 1e9) {
                gap_ns = max_gap_s * 1e9;
                capped++;
            }
            at_ns += gap_ns;
        }
        out[k] = (uint64_t)llround(at_ns);
    }
    return capped;
}

/* ---- block text ---- */

/* Three-letter words that are one token (with their leading space) in the Llama 3 / 3.1 and
   gpt-oss vocabularies, checked with `sparkbench tokenize`; any tokenizer is checked again at
   load (sb_trace_words_init). */
static const char *const builtin_words[128] = {
    "act", "add", "age", "ago", "aid", "aim", "air", "all", "and", "any", "are", "arm", "art",
    "ask", "bad", "bag", "bar", "bay", "bed", "bid", "big", "bit", "bow", "box", "boy", "bus",
    "but", "buy", "can", "cap", "car", "cat", "cow", "cry", "cup", "cut", "dam", "day", "did",
    "dig", "dog", "dot", "dry", "due", "ear", "eat", "egg", "end", "eye", "fan", "far", "fat",
    "fee", "few", "fit", "fix", "fly", "fog", "for", "fun", "fur", "gap", "gas", "get", "guy",
    "gym", "has", "hat", "hay", "her", "him", "hip", "his", "hit", "hot", "how", "hug", "ice",
    "ill", "ink", "its", "jar", "jet", "job", "joy", "key", "lab", "lap", "law", "lay", "leg",
    "let", "lid", "lie", "lip", "log", "lot", "low", "mad", "man", "map", "mat", "may", "mix",
    "mud", "net", "new", "nor", "not", "now", "nut", "oak", "odd", "off", "oil", "old", "one",
    "our", "out", "own", "pan", "pay", "pen", "per", "pet", "pig", "pin", "pit",
};

void sb_trace_words_default(struct sb_trace_words *w)
{
    for (unsigned i = 0; i < 128; i++) {
        w->w[i][0] = ' ';
        memcpy(w->w[i] + 1, builtin_words[i], 3);
    }
    w->n = 128;
}

int sb_trace_block_text(const struct sb_trace_words *w, uint64_t seed, uint64_t id,
                        long long tokens, struct sb_buf *out)
{
    if (tokens <= 0)
        return 0;
    size_t at = out->len;
    /* One 64-bit draw gives 9 words of 7 bits; a chunk holds whole draws, so a cut block is the
       first words of the full one whatever its length. */
    char chunk[36 * 8];
    uint64_t x = sb_mix64(seed ^ sb_mix64(id ^ 0xb10cb10cull));
    long long left = tokens;
    while (left > 0) {
        size_t k = 0;
        while (left > 0 && k + 36 <= sizeof(chunk)) {
            x = sb_mix64(x);
            for (int b = 0; b < 9 && left > 0; b++, left--, k += 4)
                memcpy(chunk + k, w->w[((x >> (7 * b)) & 127) % w->n], 4);
        }
        if (sb_buf_add(out, chunk, k) != 0) {
            out->len = at;
            return -1;
        }
    }
    return 0;
}

int sb_trace_prompt_text(const struct sb_trace *t, const struct sb_trace_words *w, uint64_t seed,
                         size_t i, struct sb_buf *out)
{
    const struct sb_trace_req *r = &t->req[i];
    const uint64_t *ids = t->ids + r->first_id;
    for (size_t j = 0; j < r->nids; j++) {
        long long len =
            j + 1 < r->nids ? t->block_tokens : r->input_len - t->block_tokens * (long long)j;
        if (sb_trace_block_text(w, seed, ids[j], len, out) != 0)
            return -1;
    }
    return 0;
}

int sb_trace_words_init(struct sb_trace_words *w, struct sb_tokenizer *tok, long long block_tokens,
                        long long *bos, struct sb_err *err)
{
    sb_trace_words_default(w);
    *bos = 0;
    if (!tok)
        return 0;
    size_t n = 0;
    if (sb_tokenizer_count(tok, "", 0, true, &n, err) != 0)
        return -1;
    *bos = (long long)n;
    unsigned keep = 0;
    for (unsigned i = 0; i < w->n; i++) {
        if (sb_tokenizer_count(tok, w->w[i], 4, false, &n, err) != 0)
            return -1;
        if (n == 1)
            memcpy(w->w[keep++], w->w[i], 4);
    }
    w->n = keep;
    if (keep < 16)
        return sb_err_set(err,
                          "tokenizer '%s' has only %u of the trace's 128 block words as single "
                          "tokens: blocks of an exact token count cannot be built with it",
                          sb_tokenizer_path(tok), keep);
    /* Blocks alone, concatenated, and cut must count exactly. */
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX);
    int rc = 0;
    const struct {
        uint64_t id;
        long long tokens;
    } parts[] = {{1, block_tokens}, {2, block_tokens}, {3, 7}};
    size_t want = 0, got = 0;
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        size_t before = b.len;
        if (sb_trace_block_text(w, 42, parts[i].id, parts[i].tokens, &b) != 0) {
            rc = sb_err_set(err, "out of memory");
            break;
        }
        if ((rc = sb_tokenizer_count(tok, b.data + before, b.len - before, false, &got, err)) != 0)
            break;
        if ((long long)got != parts[i].tokens)
            rc = sb_err_set(err,
                            "tokenizer '%s': a trace block of %lld words is %zu tokens, not "
                            "%lld",
                            sb_tokenizer_path(tok), parts[i].tokens, got, parts[i].tokens);
        want += (size_t)parts[i].tokens;
    }
    if (rc == 0 && (rc = sb_tokenizer_count(tok, b.data, b.len, false, &got, err)) == 0 &&
        got != want)
        rc = sb_err_set(err,
                        "tokenizer '%s': trace blocks merge across their boundary (%zu tokens "
                        "together, %zu apart)",
                        sb_tokenizer_path(tok), got, want);
    sb_buf_release(&b);
    return rc;
}
