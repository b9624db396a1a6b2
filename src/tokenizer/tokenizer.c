/*
 * Byte-level BPE from a Hugging Face tokenizer.json, exact against the reference implementations.
 * Load: cJSON reads the file once; every token string is stored as the raw bytes it stands for (the
 * ByteLevel alphabet's "Ġ" is byte 0x20), so encoding never builds the byte-to-unicode string.
 * Encode: the input is made valid UTF-8 (U+FFFD per invalid subpart), split on added tokens
 * (leftmost, longest), each segment goes through the pre-tokenizer steps (PCRE2 Split regexes with
 * their HF behaviour, ByteLevel's prefix space and GPT-2 regex), and each pre-token becomes ids:
 * the whole piece when it is a vocabulary entry and ignore_merges is set, a cached answer when it
 * was seen before, otherwise the BPE merge loop (a binary heap of candidate pairs ordered by merge
 * rank, then position, as HF's word.rs does). The post-processor's template adds BOS.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "sb/tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOK_MAX_FILE      (512u << 20) /* largest tokenizer.json we read */
#define TOK_MAX_STEPS     8            /* pre-tokenizer steps after flattening Sequences */
#define TOK_MAX_TEMPLATE  8            /* special tokens around the sequence in the template */
#define TOK_CACHE_SLOTS   (1u << 17)   /* pre-token cache: slots (power of two) */
#define TOK_CACHE_MAX     (1u << 16)   /* entries before the cache is cleared */
#define TOK_CACHE_KEY_MAX 128          /* longer pre-tokens are not cached */
#define TOK_GPT2_REGEX                                                                             \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

enum tok_step_kind { STEP_SPLIT, STEP_BYTELEVEL, STEP_METASPACE };
enum tok_prepend { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
enum tok_behavior { BH_REMOVED, BH_ISOLATED, BH_MERGED_PREV, BH_MERGED_NEXT, BH_CONTIGUOUS };

struct tok_step {
    enum tok_step_kind kind;
    pcre2_code *re; /* Split, and ByteLevel with use_regex */
    enum tok_behavior behavior;
    bool invert;
    bool add_prefix_space; /* ByteLevel */
    char rep[8];           /* Metaspace: the replacement character (UTF-8) */
    enum tok_prepend prepend;
};

struct tok_span {
    uint32_t off, len;
};

struct tok_added {
    uint32_t off, len; /* content in the arena */
    int32_t id;
    bool lstrip, rstrip; /* the token takes the whitespace before / after it */
};

struct tok_merge {
    uint64_t key; /* left id << 32 | right id; 0 marks an empty slot (ids are offset by one) */
    uint32_t rank;
    int32_t id;
};

enum tok_norm_kind { NORM_PREPEND, NORM_REPLACE };

struct tok_norm {
    enum tok_norm_kind kind;
    char from[16], to[16]; /* Prepend: to; Replace: from -> to (literal strings) */
};

struct tok_cache_slot {
    uint32_t key_off, key_len; /* in cache_keys */
    uint32_t ids_off, nids;    /* in cache_ids */
    uint32_t used;
};

struct tok_heap_item {
    uint32_t rank, pos;
    int32_t left, right;
};

struct sb_tokenizer {
    char path[PATH_MAX];
    char *arena; /* every token string's bytes */
    size_t arena_len, arena_cap;
    struct tok_span *tokens; /* by id; len UINT32_MAX for an unused id */
    size_t ntokens;
    uint32_t *vmap; /* vocabulary hash: id + 1, 0 empty */
    size_t vmask;
    struct tok_merge *merges;
    size_t mmask;
    bool ignore_merges;
    bool byte_level;    /* token strings are in GPT-2's byte alphabet; symbols start as bytes */
    bool byte_fallback; /* SentencePiece-style: a character not in vocab becomes <0xXX> tokens */
    bool fuse_unk;
    int32_t unk_id;     /* -1: none */
    int32_t fb_id[256]; /* ids of <0x00>..<0xFF> with byte_fallback */
    int32_t byte_id[256];
    struct tok_norm norms[TOK_MAX_STEPS]; /* normalizer steps (Prepend, Replace) */
    size_t nnorms;
    struct sb_buf norm_a, norm_b;
    /* decoder (SentencePiece-style): Replace, ByteFallback, Fuse, Strip */
    char dec_from[16], dec_to[16];
    size_t dec_strip; /* leading dec_strip_c characters taken off the decoded text */
    char dec_strip_c;
    bool dec_bytefallback;
    bool dec_metaspace; /* Metaspace decoder: replacement -> ' ', none on the first token */
    char meta_rep[8];
    enum tok_prepend meta_prepend;
    struct tok_added *added; /* sorted by first byte, then longest first */
    size_t nadded;
    uint16_t added_first[257]; /* added[added_first[b] .. added_first[b+1]) start with byte b */
    struct tok_step steps[TOK_MAX_STEPS];
    size_t nsteps;
    pcre2_match_data *md;
    int32_t prefix[TOK_MAX_TEMPLATE], suffix[TOK_MAX_TEMPLATE];
    size_t nprefix, nsuffix;
    /* pre-token cache */
    struct tok_cache_slot *cache;
    size_t ncache;
    char *cache_keys;
    size_t cache_keys_len, cache_keys_cap;
    int32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
    /* scratch for one encode */
    struct sb_buf work;
    struct sb_buf clean; /* the input made valid UTF-8, when it was not */
    struct tok_span *pa, *pb;
    size_t pa_cap, pb_cap, npb_tmp;
    struct sb_ids count_ids;
    int32_t *sym;
    uint32_t *prev, *next;
    struct tok_heap_item *heap;
    size_t sym_cap, heap_cap;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int arena_add(struct sb_tokenizer *t, const void *s, size_t n, uint32_t *off)
{
    if (t->arena_len + n > UINT32_MAX ||
        grow((void **)&t->arena, &t->arena_cap, t->arena_len + n + 1, 1) != 0)
        return -1;
    memcpy(t->arena + t->arena_len, s, n);
    *off = (uint32_t)t->arena_len;
    t->arena_len += n;
    return 0;
}

/* GPT-2's bytes_to_unicode(): the byte each code point of the ByteLevel alphabet stands for, or -1.
 */
static int bytelevel_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256)
        return -1;
    /* bytes outside those ranges, in order, map to 256, 257, ... */
    uint32_t k = cp - 256, i = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            continue;
        if (i++ == k)
            return b;
    }
    return -1;
}

/* Decodes one UTF-8 sequence of valid UTF-8 s[0..n); returns its length (1 on a bad byte). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (len > n || len == 1) {
        *cp = 0xfffd;
        return 1;
    }
    uint32_t v = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++)
        v = (v << 6) | (s[i] & 0x3f);
    *cp = v;
    return len;
}

/* The byte-level token string s (UTF-8 of ByteLevel alphabet characters) as raw bytes in out;
   false when s holds a character outside the alphabet. */
static bool bytelevel_decode(const char *s, size_t n, struct sb_buf *out)
{
    sb_buf_reset(out);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_next(u + i, n - i, &cp);
        int b = bytelevel_byte(cp);
        if (b < 0)
            return false;
        unsigned char c = (unsigned char)b;
        if (sb_buf_add(out, &c, 1) != 0)
            return false;
    }
    return true;
}

/* Length of the valid UTF-8 prefix of s, WHATWG rules (no overlongs, surrogates, > U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else {
            *bad = 1;
            return i;
        }
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= n || s[i + k] < (k == 1 ? lo : 0x80) || s[i + k] > (k == 1 ? hi : 0xbf))
                break;
        }
        if (k <= need) {
            *bad = k; /* the maximal subpart: the lead and the continuation bytes that fit */
            return i;
        }
        i += need + 1;
    }
    *bad = 0;
    return i;
}

/* ---- vocabulary and merges ------------------------------------------------------------------- */

static int32_t vocab_find(const struct sb_tokenizer *t, const void *s, size_t n)
{
    if (!t->vmap)
        return -1;
    for (size_t i = tok_hash(s, n) & t->vmask;; i = (i + 1) & t->vmask) {
        uint32_t v = t->vmap[i];
        if (!v)
            return -1;
        const struct tok_span *sp = &t->tokens[v - 1];
        if (sp->len == n && memcmp(t->arena + sp->off, s, n) == 0)
            return (int32_t)(v - 1);
    }
}

static void vocab_insert(struct sb_tokenizer *t, int32_t id)
{
    const struct tok_span *sp = &t->tokens[id];
    size_t i = tok_hash(t->arena + sp->off, sp->len) & t->vmask;
    while (t->vmap[i])
        i = (i + 1) & t->vmask;
    t->vmap[i] = (uint32_t)id + 1;
}

static uint64_t merge_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static const struct tok_merge *merge_find(const struct sb_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = merge_key(a, b);
    for (size_t i = (key * 0x9e3779b97f4a7c15ull >> 20) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->merges[i].key == key)
            return &t->merges[i];
        if (!t->merges[i].key)
            return NULL;
    }
}

/* ---- loading --------------------------------------------------------------------------------- */

/* A power of two with n filling at most 3/4 of it (linear probing stays short). */
static size_t pow2_above(size_t n)
{
    size_t c = 16;
    while (c / 4 * 3 < n)
        c *= 2;
    return c;
}

static const char *json_type_name(const cJSON *o)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static int compile_regex(struct sb_tokenizer *t, const char *pattern, const char *field,
                         pcre2_code **out, struct sb_err *err)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return sb_err_set(err, "cannot compile %s regex in '%s' at offset %zu: %s", field, t->path,
                          (size_t)eo, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    *out = re;
    return 0;
}

static int json_literal(const cJSON *o, const char *field, char *out, size_t cap);

static int add_step(struct sb_tokenizer *t, const struct tok_step *s, struct sb_err *err)
{
    if (t->nsteps == TOK_MAX_STEPS)
        return sb_err_set(err, "too many pre_tokenizer steps in '%s' (at most %d)", t->path,
                          TOK_MAX_STEPS);
    t->steps[t->nsteps++] = *s;
    return 0;
}

static int load_pretokenizer(struct sb_tokenizer *t, const cJSON *p, bool *byte_level,
                             struct sb_err *err)
{
    const char *ty = json_type_name(p);
    if (!ty)
        return sb_err_set(err, "pre_tokenizer without a \"type\" in '%s'", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return sb_err_set(err, "pre_tokenizer Sequence without \"pretokenizers\" in '%s'",
                              t->path);
        const cJSON *e;
        cJSON_ArrayForEach(e, list)
        {
            if (load_pretokenizer(t, e, byte_level, err) != 0)
                return -1;
        }
        return 0;
    }
    struct tok_step s = {0};
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *bh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        s.kind = STEP_SPLIT;
        s.invert = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "invert"));
        if (!cJSON_IsString(bh))
            return sb_err_set(err, "pre_tokenizer Split without \"behavior\" in '%s'", t->path);
        size_t k = 0;
        while (k < 5 && strcmp(bh->valuestring, names[k]) != 0)
            k++;
        if (k == 5)
            return sb_err_set(err, "unsupported pre_tokenizer Split behavior '%s' in '%s'",
                              bh->valuestring, t->path);
        s.behavior = (enum tok_behavior)k;
        if (cJSON_IsString(re)) {
            if (compile_regex(t, re->valuestring, "pre_tokenizer Split", &s.re, err) != 0)
                return -1;
        } else if (cJSON_IsString(str)) {
            /* a literal: quote it for PCRE2 */
            int ec;
            PCRE2_SIZE eo;
            struct sb_buf q;
            sb_buf_init(&q, 1 << 16);
            sb_buf_adds(&q, "\\Q");
            sb_buf_adds(&q, str->valuestring);
            if (sb_buf_adds(&q, "\\E") != 0 || strstr(str->valuestring, "\\E")) {
                sb_buf_release(&q);
                return sb_err_set(err, "unsupported pre_tokenizer Split string in '%s'", t->path);
            }
            s.re = pcre2_compile((PCRE2_SPTR)q.data, q.len, PCRE2_UTF, &ec, &eo, NULL);
            sb_buf_release(&q);
            if (!s.re)
                return sb_err_set(err, "cannot compile pre_tokenizer Split string in '%s'",
                                  t->path);
        } else {
            return sb_err_set(err, "pre_tokenizer Split without a \"pattern\" in '%s'", t->path);
        }
        if (add_step(t, &s, err) != 0) {
            pcre2_code_free(s.re);
            return -1;
        }
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        *byte_level = true;
        s.kind = STEP_BYTELEVEL;
        s.behavior = BH_ISOLATED;
        s.add_prefix_space = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space"));
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if ((!ur || cJSON_IsTrue(ur)) &&
            compile_regex(t, TOK_GPT2_REGEX, "pre_tokenizer ByteLevel", &s.re, err) != 0)
            return -1;
        if (add_step(t, &s, err) != 0) {
            pcre2_code_free(s.re);
            return -1;
        }
        return 0;
    }
    if (strcmp(ty, "Metaspace") == 0) {
        /* spaces become the replacement, one is prepended (always, or on the text's first piece
           only), and the text is cut before each replacement (MergedWithNext) */
        s.kind = STEP_METASPACE;
        s.behavior = BH_MERGED_NEXT;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space");
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(p, "split");
        if (json_literal(p, "replacement", s.rep, sizeof(s.rep)) != 0 || !s.rep[0])
            return sb_err_set(err, "pre_tokenizer Metaspace without a \"replacement\" in '%s'",
                              t->path);
        if (cJSON_IsString(ps))
            s.prepend = strcmp(ps->valuestring, "first") == 0   ? PREPEND_FIRST
                        : strcmp(ps->valuestring, "never") == 0 ? PREPEND_NEVER
                                                                : PREPEND_ALWAYS;
        else
            s.prepend = aps && !cJSON_IsTrue(aps) ? PREPEND_NEVER : PREPEND_ALWAYS;
        if (!split || cJSON_IsTrue(split)) {
            int ec;
            PCRE2_SIZE eo;
            s.re = pcre2_compile((PCRE2_SPTR)s.rep, strlen(s.rep), PCRE2_LITERAL | PCRE2_UTF, &ec,
                                 &eo, NULL);
            if (!s.re)
                return sb_err_set(err, "bad pre_tokenizer Metaspace replacement in '%s'", t->path);
        }
        t->meta_prepend = s.prepend;
        snprintf(t->meta_rep, sizeof(t->meta_rep), "%s", s.rep);
        if (add_step(t, &s, err) != 0) {
            pcre2_code_free(s.re);
            return -1;
        }
        return 0;
    }
    return sb_err_set(err, "unsupported pre_tokenizer type '%s' in '%s'", ty, t->path);
}

static int32_t added_id_by_content(const struct sb_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].len == n && memcmp(t->arena + t->added[i].off, s, n) == 0)
            return t->added[i].id;
    return vocab_find(t, s, n);
}

static int load_postprocessor(struct sb_tokenizer *t, const cJSON *p, struct sb_err *err)
{
    if (!p || cJSON_IsNull(p))
        return 0;
    const char *ty = json_type_name(p);
    if (!ty)
        return sb_err_set(err, "post_processor without a \"type\" in '%s'", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "processors"))
        {
            if (load_postprocessor(t, e, err) != 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0)
        return 0; /* only trims offsets */
    if (strcmp(ty, "TemplateProcessing") != 0)
        return sb_err_set(err, "unsupported post_processor type '%s' in '%s'", ty, t->path);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single))
        return sb_err_set(err, "post_processor TemplateProcessing without \"single\" in '%s'",
                          t->path);
    bool seen_seq = false;
    const cJSON *e;
    t->nprefix = t->nsuffix = 0;
    cJSON_ArrayForEach(e, single)
    {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
            seen_seq = true;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (!cJSON_IsString(name))
            return sb_err_set(err, "post_processor template piece not understood in '%s'", t->path);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(specials, name->valuestring), "ids");
        const cJSON *id;
        size_t before = seen_seq ? t->nsuffix : t->nprefix;
        cJSON_ArrayForEach(id, ids)
        {
            int32_t *arr = seen_seq ? t->suffix : t->prefix;
            size_t *n = seen_seq ? &t->nsuffix : &t->nprefix;
            if (!cJSON_IsNumber(id) || *n == TOK_MAX_TEMPLATE)
                return sb_err_set(err, "post_processor special token '%s' not understood in '%s'",
                                  name->valuestring, t->path);
            /* An id the vocabulary lacks would be encoded and then fail to decode (found by
               tests/fuzz/fuzz_tokenizer.c: added_tokens misspelt, the template's id kept); the
               range check also keeps the cast below defined. */
            if (!(id->valuedouble >= 0 && id->valuedouble < (double)t->ntokens) ||
                id->valuedouble != (double)(int32_t)id->valuedouble)
                return sb_err_set(err,
                                  "post_processor special token '%s' has id %g, outside the "
                                  "vocabulary (%zu ids) in '%s'",
                                  name->valuestring, id->valuedouble, t->ntokens, t->path);
            arr[(*n)++] = (int32_t)id->valuedouble;
        }
        if ((seen_seq ? t->nsuffix : t->nprefix) == before) {
            int32_t id2 = added_id_by_content(t, name->valuestring);
            if (id2 < 0)
                return sb_err_set(err, "post_processor special token '%s' unknown in '%s'",
                                  name->valuestring, t->path);
            int32_t *arr = seen_seq ? t->suffix : t->prefix;
            size_t *n = seen_seq ? &t->nsuffix : &t->nprefix;
            if (*n == TOK_MAX_TEMPLATE)
                return sb_err_set(err, "post_processor template too long in '%s'", t->path);
            arr[(*n)++] = id2;
        }
    }
    return 0;
}

/* a literal string field (at most cap-1 bytes) into out */
static int json_literal(const cJSON *o, const char *field, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return -1;
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int load_normalizer(struct sb_tokenizer *t, const cJSON *n, struct sb_err *err)
{
    const char *ty = json_type_name(n);
    if (ty && strcmp(ty, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
        {
            if (load_normalizer(t, e, err) != 0)
                return -1;
        }
        return 0;
    }
    if (t->nnorms == TOK_MAX_STEPS)
        return sb_err_set(err, "too many normalizer steps in '%s'", t->path);
    struct tok_norm *m = &t->norms[t->nnorms];
    if (ty && strcmp(ty, "Prepend") == 0) {
        m->kind = NORM_PREPEND;
        if (json_literal(n, "prepend", m->to, sizeof(m->to)) != 0)
            return sb_err_set(err, "normalizer Prepend without a short \"prepend\" in '%s'",
                              t->path);
    } else if (ty && strcmp(ty, "Replace") == 0) {
        m->kind = NORM_REPLACE;
        if (json_literal(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String", m->from,
                         sizeof(m->from)) != 0 ||
            !m->from[0] || json_literal(n, "content", m->to, sizeof(m->to)) != 0)
            return sb_err_set(err,
                              "unsupported normalizer Replace (only a short String pattern) "
                              "in '%s'",
                              t->path);
    } else {
        return sb_err_set(err, "unsupported normalizer type '%s' in '%s'", ty ? ty : "?", t->path);
    }
    t->nnorms++;
    return 0;
}

static int load_decoder(struct sb_tokenizer *t, const cJSON *d, struct sb_err *err)
{
    if (!d || cJSON_IsNull(d))
        return 0;
    const char *ty = json_type_name(d);
    if (!ty)
        return sb_err_set(err, "decoder without a \"type\" in '%s'", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "decoders"))
        {
            if (load_decoder(t, e, err) != 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0 || strcmp(ty, "Fuse") == 0)
        return 0;
    if (strcmp(ty, "ByteFallback") == 0) {
        t->dec_bytefallback = true;
        return 0;
    }
    if (strcmp(ty, "Metaspace") == 0) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(d, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(d, "add_prefix_space");
        if (json_literal(d, "replacement", t->dec_from, sizeof(t->dec_from)) != 0 ||
            !t->dec_from[0])
            return sb_err_set(err, "decoder Metaspace without a \"replacement\" in '%s'", t->path);
        snprintf(t->dec_to, sizeof(t->dec_to), " ");
        t->dec_metaspace = cJSON_IsString(ps) ? strcmp(ps->valuestring, "never") != 0
                                              : !(aps && !cJSON_IsTrue(aps));
        return 0;
    }
    if (strcmp(ty, "Replace") == 0) {
        if (json_literal(cJSON_GetObjectItemCaseSensitive(d, "pattern"), "String", t->dec_from,
                         sizeof(t->dec_from)) != 0 ||
            !t->dec_from[0] || json_literal(d, "content", t->dec_to, sizeof(t->dec_to)) != 0)
            return sb_err_set(err,
                              "unsupported decoder Replace (only a short String pattern) "
                              "in '%s'",
                              t->path);
        return 0;
    }
    if (strcmp(ty, "Strip") == 0) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!cJSON_IsString(c) || strlen(c->valuestring) != 1 || !cJSON_IsNumber(start) ||
            start->valuedouble < 0 || (cJSON_IsNumber(stop) && stop->valuedouble != 0))
            return sb_err_set(err, "unsupported decoder Strip in '%s'", t->path);
        t->dec_strip_c = c->valuestring[0];
        t->dec_strip = (size_t)start->valuedouble;
        return 0;
    }
    return sb_err_set(err, "unsupported decoder type '%s' in '%s'", ty, t->path);
}

static int set_token(struct sb_tokenizer *t, int64_t id, const char *s, size_t n, bool overwrite)
{
    if (id < 0 || id >= (int64_t)t->ntokens)
        return -1;
    if (!overwrite && t->tokens[id].len != UINT32_MAX)
        return 0;
    uint32_t off;
    if (arena_add(t, s, n, &off) != 0)
        return -1;
    t->tokens[id].off = off;
    t->tokens[id].len = (uint32_t)n;
    return 0;
}

static int cmp_added(const void *a, const void *b, void *arena)
{
    const struct tok_added *x = a, *y = b;
    const unsigned char *ar = arena;
    if (ar[x->off] != ar[y->off])
        return ar[x->off] < ar[y->off] ? -1 : 1;
    return x->len > y->len ? -1 : x->len < y->len ? 1 : 0;
}

static int load_model(struct sb_tokenizer *t, const cJSON *root, bool byte_level,
                      struct sb_err *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(m))
        return sb_err_set(err, "no \"model\" in '%s'", t->path);
    const char *ty = json_type_name(m);
    if (ty && strcmp(ty, "BPE") != 0)
        return sb_err_set(err, "unsupported model type '%s' in '%s' (only BPE)", ty, t->path);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab))
        return sb_err_set(err, "model without a \"vocab\" object in '%s'", t->path);
    if (!cJSON_IsArray(merges))
        return sb_err_set(err, "model without a \"merges\" array in '%s'", t->path);
    t->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "byte_fallback"));
    t->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "fuse_unk"));
    static const char *const unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(m, unsupported[i]);
        if (o && !cJSON_IsNull(o) && !(cJSON_IsString(o) && !o->valuestring[0]))
            return sb_err_set(err, "unsupported model option %s in '%s'", unsupported[i], t->path);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return sb_err_set(err, "unsupported model option dropout in '%s'", t->path);
    if (byte_level && t->byte_fallback)
        return sb_err_set(err,
                          "unsupported model: byte_fallback with a ByteLevel pre_tokenizer in '%s'",
                          t->path);
    t->byte_level = byte_level;
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "ignore_merges"));

    /* ids: the largest of the vocabulary and the added tokens */
    int64_t maxid = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX - 1)
            return sb_err_set(err, "vocab entry '%.60s' has no valid id in '%s'",
                              e->string ? e->string : "", t->path);
        if ((int64_t)e->valuedouble > maxid)
            maxid = (int64_t)e->valuedouble;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    size_t nadded = 0;
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX - 1 ||
            !cJSON_IsString(content) || !content->valuestring[0])
            return sb_err_set(err,
                              "added_tokens entry %zu needs an \"id\" and a \"content\" in '%s'",
                              nadded, t->path);
        if ((int64_t)id->valuedouble > maxid)
            maxid = (int64_t)id->valuedouble;
        nadded++;
    }
    if (maxid < 0)
        return sb_err_set(err, "model has no tokens (empty \"vocab\", no \"added_tokens\") in '%s'",
                          t->path);
    size_t nv = (size_t)cJSON_GetArraySize(vocab);
    /* The id table is indexed by id: one stray id of 7e8 in a 100-byte file asked for 5.7 GB
       (found by tests/fuzz/fuzz_tokenizer). Real tokenizers number their entries densely (the
       added tokens follow the vocabulary), so ids far beyond the entry count are refused. */
    if ((uint64_t)maxid >= 4 * (uint64_t)(nv + nadded) + 1024)
        return sb_err_set(err,
                          "token id %lld is far beyond the %zu vocabulary and added_tokens "
                          "entries of '%s' (ids must number the entries, nearly without gaps)",
                          (long long)maxid, nv + nadded, t->path);
    t->ntokens = (size_t)(maxid + 1);
    /* calloc, not malloc: clang's analyzer cannot tie a vocab id to the loop below that sets
       every len, and reported t->tokens[id].len as uninitialised */
    t->tokens = calloc(t->ntokens, sizeof(*t->tokens));
    t->vmask = pow2_above(nv) - 1;
    t->vmap = calloc(t->vmask + 1, sizeof(*t->vmap));
    t->added = calloc(nadded ? nadded : 1, sizeof(*t->added));
    if (!t->tokens || !t->vmap || !t->added)
        return sb_err_set(err, "out of memory loading '%s'", t->path);
    for (size_t i = 0; i < t->ntokens; i++)
        t->tokens[i].len = UINT32_MAX;

    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    int rc = -1;
    cJSON_ArrayForEach(e, vocab)
    {
        int32_t id = (int32_t)e->valuedouble;
        /* an entry outside the ByteLevel alphabet ("a b", "[PAD] x") can never come out of the
           byte-level pre-tokenizer: HF decodes it as its own text, and so do we */
        bool alphabet = !t->byte_level || bytelevel_decode(e->string, strlen(e->string), &b);
        if (!t->byte_level) {
            sb_buf_reset(&b);
            sb_buf_adds(&b, e->string);
        }
        if (t->tokens[id].len != UINT32_MAX) {
            sb_err_set(err, "vocab id %d used twice in '%s'", id, t->path);
            goto out;
        }
        if ((alphabet ? set_token(t, id, b.data ? b.data : "", b.len, true)
                      : set_token(t, id, e->string, strlen(e->string), true)) != 0) {
            sb_err_set(err, "out of memory loading '%s'", t->path);
            goto out;
        }
        if (alphabet)
            vocab_insert(t, id);
    }
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        char fb[8];
        snprintf(fb, sizeof(fb), "<0x%02X>", c);
        t->byte_id[c] = vocab_find(t, &byte, 1);
        t->fb_id[c] = vocab_find(t, fb, strlen(fb));
    }
    t->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(m, "unk_token");
    if (cJSON_IsString(unk))
        t->unk_id = vocab_find(t, unk->valuestring, strlen(unk->valuestring));

    /* merges: "a b" strings or ["a", "b"] pairs; rank is the position */
    size_t nm = (size_t)cJSON_GetArraySize(merges);
    t->mmask = pow2_above(nm) - 1;
    t->merges = calloc(t->mmask + 1, sizeof(*t->merges));
    if (!t->merges) {
        sb_err_set(err, "out of memory loading '%s'", t->path);
        goto out;
    }
    struct sb_buf lb, rb;
    sb_buf_init(&lb, 1 << 16);
    sb_buf_init(&rb, 1 << 16);
    uint32_t rank = 0;
    cJSON_ArrayForEach(e, merges)
    {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                l = e->valuestring;
                ll = (size_t)(sp - l);
                r = sp + 1;
                rl = strlen(r);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            l = cJSON_GetArrayItem(e, 0)->valuestring;
            r = cJSON_GetArrayItem(e, 1)->valuestring;
            ll = strlen(l);
            rl = strlen(r);
        }
        int32_t a = -1, bb = -1, ab = -1;
        if (l && !t->byte_level) {
            sb_buf_reset(&lb);
            sb_buf_reset(&rb);
            sb_buf_add(&lb, l, ll);
            sb_buf_add(&rb, r, rl);
        } else if (l && (!bytelevel_decode(l, ll, &lb) || !bytelevel_decode(r, rl, &rb))) {
            rank++; /* a pair outside the alphabet can never apply */
            continue;
        }
        if (l) {
            a = vocab_find(t, lb.data ? lb.data : "", lb.len);
            bb = vocab_find(t, rb.data ? rb.data : "", rb.len);
            if (sb_buf_add(&lb, rb.data ? rb.data : "", rb.len) == 0)
                ab = vocab_find(t, lb.data ? lb.data : "", lb.len);
        }
        if (!l || a < 0 || bb < 0 || ab < 0) {
            sb_err_set(err, "merges entry %u is not a pair of vocabulary tokens in '%s'", rank,
                       t->path);
            sb_buf_release(&lb);
            sb_buf_release(&rb);
            goto out;
        }
        uint64_t key = merge_key(a, bb);
        size_t i = (key * 0x9e3779b97f4a7c15ull >> 20) & t->mmask;
        while (t->merges[i].key && t->merges[i].key != key)
            i = (i + 1) & t->mmask;
        if (!t->merges[i].key) { /* a repeated pair keeps its first (lowest) rank */
            t->merges[i].key = key;
            t->merges[i].rank = rank;
            t->merges[i].id = ab;
        }
        rank++;
    }
    sb_buf_release(&lb);
    sb_buf_release(&rb);

    /* added tokens: content verbatim (not byte-level); decode uses them for ids not in vocab */
    cJSON_ArrayForEach(e, added)
    {
        const char *content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        struct tok_added *a = &t->added[t->nadded++];
        if (arena_add(t, content, strlen(content), &a->off) != 0 ||
            set_token(t, id, content, strlen(content), false) != 0) {
            sb_err_set(err, "out of memory loading '%s'", t->path);
            goto out;
        }
        a->len = (uint32_t)strlen(content);
        a->id = id;
        a->lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "lstrip"));
        a->rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "rstrip"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "single_word"))) {
            sb_err_set(err, "unsupported added_tokens option single_word (token '%.60s') in '%s'",
                       content, t->path);
            goto out;
        }
    }
    qsort_r(t->added, t->nadded, sizeof(*t->added), cmp_added, t->arena);
    size_t k = 0;
    for (int c = 0; c <= 256; c++) {
        while (k < t->nadded && (unsigned char)t->arena[t->added[k].off] < c)
            k++;
        t->added_first[c] = (uint16_t)k;
    }
    if (t->nadded > UINT16_MAX) {
        sb_err_set(err, "too many added_tokens in '%s'", t->path);
        goto out;
    }
    rc = 0;
out:
    sb_buf_release(&b);
    return rc;
}

/*
 * SentencePiece-style files without a pre-tokenizer make the whole text one word: BPE over
 * megabytes in one piece, and no cache. When no vocabulary entry holds the space replacement R
 * ("▁") after another character, no token can span a point where R follows a non-R character,
 * so cutting there (before each run of R) gives exactly the same ids, in cacheable pieces.
 */
static int sp_auto_split(struct sb_tokenizer *t, const cJSON *root, struct sb_err *err)
{
    const char *r = NULL;
    for (size_t k = 0; k < t->nnorms; k++)
        if (t->norms[k].kind == NORM_REPLACE && strcmp(t->norms[k].from, " ") == 0)
            r = t->norms[k].to;
    if (t->byte_level || t->nsteps || !r || !*r || strchr(r, '\\'))
        return 0;
    size_t rl = strlen(r);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(root, "model"), "vocab"))
    {
        const char *k = e->string;
        for (const char *hit = strstr(k, r); hit; hit = strstr(hit + rl, r))
            if (hit > k && !((size_t)(hit - k) >= rl && memcmp(hit - rl, r, rl) == 0))
                return 0; /* "x▁" in a token: a cut there could change the ids */
    }
    char pat[64];
    snprintf(pat, sizeof(pat), "(?<!\\Q%s\\E)\\Q%s\\E", r, r);
    struct tok_step st = {.kind = STEP_SPLIT, .behavior = BH_MERGED_NEXT};
    if (compile_regex(t, pat, "implicit word", &st.re, err) != 0)
        return -1;
    if (add_step(t, &st, err) != 0) {
        pcre2_code_free(st.re);
        return -1;
    }
    return 0;
}

int sb_tokenizer_resolve(const char *spec, char *out, size_t outsz, struct sb_err *err)
{
    struct stat st;
    if (!spec || !*spec)
        return sb_err_set(err, "no tokenizer given");
    if (stat(spec, &st) == 0) {
        int n = S_ISDIR(st.st_mode) ? snprintf(out, outsz, "%s/tokenizer.json", spec)
                                    : snprintf(out, outsz, "%s", spec);
        if (n < 0 || (size_t)n >= outsz)
            return sb_err_set(err, "tokenizer path '%s' is too long", spec);
        if (stat(out, &st) != 0 || !S_ISREG(st.st_mode))
            return sb_err_set(err, "no tokenizer.json in directory '%s'", spec);
        return 0;
    }
    const char *slash = strchr(spec, '/');
    if (!slash || strchr(slash + 1, '/') || slash == spec || !slash[1] || spec[0] == '.')
        return sb_err_set(err,
                          "tokenizer '%s' is neither a file, a directory nor an ORG/NAME "
                          "Hugging Face repo id",
                          spec);
    /* the hub caches, in huggingface_hub's order */
    char roots[4][PATH_MAX];
    size_t nroots = 0;
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        snprintf(roots[nroots++], PATH_MAX, "%s", v);
    if ((v = getenv("HF_HOME")) && *v)
        snprintf(roots[nroots++], PATH_MAX, "%s/hub", v);
    if ((v = getenv("XDG_CACHE_HOME")) && *v)
        snprintf(roots[nroots++], PATH_MAX, "%s/huggingface/hub", v);
    if ((v = getenv("HOME")) && *v)
        snprintf(roots[nroots++], PATH_MAX, "%s/.cache/huggingface/hub", v);
    char looked[SB_ERR_MSG_MAX] = "";
    size_t llen = 0;
    for (size_t r = 0; r < nroots; r++) {
        char repo[PATH_MAX + 32], snap[PATH_MAX + 96], ref[128] = "";
        snprintf(repo, sizeof(repo), "%s/models--%.*s--%s", roots[r], (int)(slash - spec), spec,
                 slash + 1);
        int n = snprintf(looked + llen, sizeof(looked) - llen, "%s'%s/snapshots/*/tokenizer.json'",
                         llen ? ", " : "", repo);
        if (n > 0)
            llen = llen + (size_t)n < sizeof(looked) ? llen + (size_t)n : sizeof(looked) - 1;
        snprintf(snap, sizeof(snap), "%s/refs/main", repo);
        FILE *f = fopen(snap, "r");
        if (f) {
            if (fgets(ref, sizeof(ref), f))
                ref[strcspn(ref, "\r\n")] = '\0';
            fclose(f);
        }
        if (ref[0]) {
            n = snprintf(out, outsz, "%s/snapshots/%s/tokenizer.json", repo, ref);
            if (n > 0 && (size_t)n < outsz && stat(out, &st) == 0 && S_ISREG(st.st_mode))
                return 0;
        }
        snprintf(snap, sizeof(snap), "%s/snapshots", repo);
        DIR *d = opendir(snap);
        if (!d)
            continue;
        struct dirent *de;
        bool found = false;
        while (!found && (de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            n = snprintf(out, outsz, "%s/%s/tokenizer.json", snap, de->d_name);
            found = n > 0 && (size_t)n < outsz && stat(out, &st) == 0 && S_ISREG(st.st_mode);
        }
        closedir(d);
        if (found)
            return 0;
    }
    return sb_err_set(err, "tokenizer '%s' not found (never downloaded): looked for %s", spec,
                      nroots ? looked : "nothing (no HF_HUB_CACHE, HF_HOME or HOME)");
}

int sb_tokenizer_load(const char *spec, struct sb_tokenizer **out, struct sb_err *err)
{
    *out = NULL;
    struct sb_tokenizer *t = calloc(1, sizeof(*t));
    if (!t)
        return sb_err_set(err, "out of memory");
    sb_buf_init(&t->work, SIZE_MAX / 2);
    sb_buf_init(&t->clean, SIZE_MAX / 2);
    sb_buf_init(&t->norm_a, SIZE_MAX / 2);
    sb_buf_init(&t->norm_b, SIZE_MAX / 2);
    cJSON *root = NULL;
    struct sb_buf file;
    sb_buf_init(&file, TOK_MAX_FILE);
    if (sb_tokenizer_resolve(spec, t->path, sizeof(t->path), err) != 0)
        goto fail;
    if (sb_buf_add_file(&file, t->path) != 0) {
        sb_err_errno(err, errno, "cannot read '%s'", t->path);
        goto fail;
    }
    root = cJSON_ParseWithLength(file.data ? file.data : "", file.len);
    sb_buf_release(&file);
    if (!cJSON_IsObject(root)) {
        sb_err_set(err, "cannot parse '%s': not a JSON object", t->path);
        goto fail;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && load_normalizer(t, norm, err) != 0)
        goto fail;
    bool byte_level = false;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && load_pretokenizer(t, pre, &byte_level, err) != 0)
        goto fail;
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (json_type_name(dec) && strcmp(json_type_name(dec), "ByteLevel") == 0)
        byte_level = true;
    if (load_model(t, root, byte_level, err) != 0 ||
        load_postprocessor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err) != 0 ||
        load_decoder(t, dec, err) != 0 || sp_auto_split(t, root, err) != 0)
        goto fail;
    t->md = pcre2_match_data_create(1, NULL);
    t->cache = calloc(TOK_CACHE_SLOTS, sizeof(*t->cache));
    if (!t->md || !t->cache) {
        sb_err_set(err, "out of memory loading '%s'", t->path);
        goto fail;
    }
    cJSON_Delete(root);
    *out = t;
    return 0;
fail:
    sb_buf_release(&file);
    cJSON_Delete(root);
    sb_tokenizer_free(t);
    return -1;
}

void sb_tokenizer_free(struct sb_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nsteps; i++)
        pcre2_code_free(t->steps[i].re);
    pcre2_match_data_free(t->md);
    free(t->arena);
    free(t->tokens);
    free(t->vmap);
    free(t->merges);
    free(t->added);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    sb_buf_release(&t->work);
    sb_buf_release(&t->clean);
    sb_buf_release(&t->norm_a);
    sb_buf_release(&t->norm_b);
    sb_ids_release(&t->count_ids);
    free(t->pa);
    free(t->pb);
    free(t->sym);
    free(t->prev);
    free(t->next);
    free(t->heap);
    free(t);
}

const char *sb_tokenizer_path(const struct sb_tokenizer *t)
{
    return t->path;
}

size_t sb_tokenizer_vocab_size(const struct sb_tokenizer *t)
{
    return t->ntokens;
}

void sb_ids_release(struct sb_ids *ids)
{
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

static int ids_push(struct sb_ids *o, int32_t id)
{
    if (o->n == o->cap && grow((void **)&o->v, &o->cap, o->n + 1, sizeof(*o->v)) != 0)
        return -1;
    o->v[o->n++] = id;
    return 0;
}

/* ---- BPE ---------------------------------------------------------------------------------------
 */

static bool heap_less(const struct tok_heap_item *a, const struct tok_heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct tok_heap_item *h, size_t *n, struct tok_heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct tok_heap_item heap_pop(struct tok_heap_item *h, size_t *n)
{
    struct tok_heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

#define TOK_NONE UINT32_MAX

static void bpe_candidate(struct sb_tokenizer *t, size_t *nh, uint32_t pos)
{
    uint32_t nx = t->next[pos];
    if (nx == TOK_NONE)
        return;
    const struct tok_merge *m = merge_find(t, t->sym[pos], t->sym[nx]);
    if (m)
        heap_push(t->heap, nh, (struct tok_heap_item){m->rank, pos, t->sym[pos], t->sym[nx]});
}

/*
 * SentencePiece-style starting symbols of p[0..*n), in place of t->sym (n symbols at most): each
 * UTF-8 character's vocabulary id; one not in the vocabulary becomes its bytes' <0xXX> tokens with
 * byte_fallback, else the unknown token (consecutive ones fused with fuse_unk), as HF's BPE does.
 */
static int sp_symbols(struct sb_tokenizer *t, const unsigned char *p, size_t *n)
{
    size_t k = 0;
    bool last_unk = false;
    for (size_t i = 0; i < *n;) {
        uint32_t cp;
        size_t cl = utf8_next(p + i, *n - i, &cp);
        int32_t id = vocab_find(t, p + i, cl);
        if (id >= 0) {
            t->sym[k++] = id;
            last_unk = false;
        } else {
            bool all = t->byte_fallback;
            for (size_t j = 0; all && j < cl; j++)
                all = t->fb_id[p[i + j]] >= 0;
            if (all) {
                for (size_t j = 0; j < cl; j++)
                    t->sym[k++] = t->fb_id[p[i + j]];
                last_unk = false;
            } else if (t->unk_id >= 0 && !(t->fuse_unk && last_unk)) {
                t->sym[k++] = t->unk_id;
                last_unk = true;
            }
        }
        i += cl;
    }
    *n = k;
    return 0;
}

/* The ids of one pre-token (raw bytes) appended to out. */
static int bpe_piece(struct sb_tokenizer *t, const unsigned char *p, size_t n, struct sb_ids *out)
{
    if (t->ignore_merges || n == 1) {
        int32_t id = vocab_find(t, p, n);
        if (id >= 0)
            return ids_push(out, id);
    }
    if (grow((void **)&t->sym, &t->sym_cap, n, sizeof(*t->sym)) != 0 ||
        !(t->prev = realloc(t->prev, t->sym_cap * sizeof(*t->prev))) ||
        !(t->next = realloc(t->next, t->sym_cap * sizeof(*t->next))) ||
        grow((void **)&t->heap, &t->heap_cap, 2 * n + 1, sizeof(*t->heap)) != 0)
        return -1;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++)
            t->sym[i] = t->byte_id[p[i]];
    } else if (sp_symbols(t, p, &n) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        t->prev[i] = i ? (uint32_t)i - 1 : TOK_NONE;
        t->next[i] = i + 1 < n ? (uint32_t)i + 1 : TOK_NONE;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (t->sym[i] >= 0 && t->sym[i + 1] >= 0)
            bpe_candidate(t, &nh, (uint32_t)i);
    while (nh) {
        struct tok_heap_item it = heap_pop(t->heap, &nh);
        uint32_t nx = t->next[it.pos];
        if (t->sym[it.pos] != it.left || nx == TOK_NONE || t->sym[nx] != it.right)
            continue; /* stale: one side has merged since */
        t->sym[it.pos] = merge_find(t, it.left, it.right)->id;
        uint32_t nn = t->next[nx];
        t->next[it.pos] = nn;
        if (nn != TOK_NONE)
            t->prev[nn] = it.pos;
        t->sym[nx] = -2; /* dead */
        if (t->prev[it.pos] != TOK_NONE)
            bpe_candidate(t, &nh, t->prev[it.pos]);
        bpe_candidate(t, &nh, it.pos);
        if (nh + 2 > t->heap_cap &&
            grow((void **)&t->heap, &t->heap_cap, nh + 2, sizeof(*t->heap)) != 0)
            return -1;
    }
    for (uint32_t i = 0; i != TOK_NONE && i < n; i = t->next[i]) {
        if (t->sym[i] < 0)
            continue; /* a byte without a vocabulary entry: dropped, as HF does without unk */
        if (ids_push(out, t->sym[i]) != 0)
            return -1;
    }
    return 0;
}

static void cache_clear(struct sb_tokenizer *t)
{
    memset(t->cache, 0, TOK_CACHE_SLOTS * sizeof(*t->cache));
    t->ncache = 0;
    t->cache_keys_len = 0;
    t->cache_ids_len = 0;
}

static int encode_piece(struct sb_tokenizer *t, const unsigned char *p, size_t n,
                        struct sb_ids *out)
{
    if (n == 0)
        return 0;
    if (n > TOK_CACHE_KEY_MAX)
        return bpe_piece(t, p, n, out);
    size_t i = tok_hash(p, n) & (TOK_CACHE_SLOTS - 1);
    for (; t->cache[i].used; i = (i + 1) & (TOK_CACHE_SLOTS - 1)) {
        struct tok_cache_slot *s = &t->cache[i];
        if (s->key_len == n && memcmp(t->cache_keys + s->key_off, p, n) == 0) {
            if (out->n + s->nids > out->cap &&
                grow((void **)&out->v, &out->cap, out->n + s->nids, sizeof(*out->v)) != 0)
                return -1;
            if (s->nids) /* a cached piece without ids: out->v may be NULL (see below) */
                memcpy(out->v + out->n, t->cache_ids + s->ids_off, s->nids * sizeof(*out->v));
            out->n += s->nids;
            return 0;
        }
    }
    size_t before = out->n;
    if (bpe_piece(t, p, n, out) != 0)
        return -1;
    size_t nids = out->n - before;
    if (t->ncache >= TOK_CACHE_MAX) {
        cache_clear(t);
        i = tok_hash(p, n) & (TOK_CACHE_SLOTS - 1);
    }
    if (grow((void **)&t->cache_keys, &t->cache_keys_cap, t->cache_keys_len + n, 1) != 0 ||
        grow((void **)&t->cache_ids, &t->cache_ids_cap, t->cache_ids_len + nids,
             sizeof(*t->cache_ids)) != 0)
        return 0; /* not cached, still encoded */
    memcpy(t->cache_keys + t->cache_keys_len, p, n);
    /* A piece whose bytes the vocabulary lacks encodes to no ids, and out->v may then still be
       NULL: NULL + 0 is undefined (UBSan, found by tests/fuzz/fuzz_tokenizer.c). */
    if (nids)
        memcpy(t->cache_ids + t->cache_ids_len, out->v + before, nids * sizeof(*out->v));
    t->cache[i] = (struct tok_cache_slot){(uint32_t)t->cache_keys_len, (uint32_t)n,
                                          (uint32_t)t->cache_ids_len, (uint32_t)nids, 1};
    t->cache_keys_len += n;
    t->cache_ids_len += nids;
    t->ncache++;
    return 0;
}

/* ---- pre-tokenization ------------------------------------------------------------------------ */

static int span_push(struct tok_span **v, size_t *n, size_t *cap, uint32_t off, uint32_t len)
{
    if (*n == *cap && grow((void **)v, cap, *n + 1, sizeof(**v)) != 0)
        return -1;
    (*v)[(*n)++] = (struct tok_span){off, len};
    return 0;
}

/* Applies one Split step to piece (off, len) of the work buffer, appending to pb. */
static int split_piece(struct sb_tokenizer *t, const struct tok_step *s, uint32_t off, uint32_t len)
{
    const PCRE2_SPTR subj = (PCRE2_SPTR)t->work.data + off;
    size_t start = 0, pos = 0;
    /* pending: a piece waiting for MergedWithNext / Contiguous / MergedWithPrevious */
    bool have_last = false, last_is_match = false;
    uint32_t last_off = 0, last_len = 0;
#define EMIT(o, l, ismatch)                                                                        \
    do {                                                                                           \
        uint32_t o_ = (o), l_ = (l);                                                               \
        bool m_ = (ismatch) != s->invert;                                                          \
        if (l_ == 0)                                                                               \
            break;                                                                                 \
        switch (s->behavior) {                                                                     \
        case BH_REMOVED:                                                                           \
            if (!m_ && span_push(&t->pb, &np, &t->pb_cap, o_, l_) != 0)                            \
                return -1;                                                                         \
            break;                                                                                 \
        case BH_ISOLATED:                                                                          \
            if (span_push(&t->pb, &np, &t->pb_cap, o_, l_) != 0)                                   \
                return -1;                                                                         \
            break;                                                                                 \
        case BH_MERGED_PREV:                                                                       \
            if (m_ && have_last)                                                                   \
                last_len += l_;                                                                    \
            else {                                                                                 \
                if (have_last && span_push(&t->pb, &np, &t->pb_cap, last_off, last_len) != 0)      \
                    return -1;                                                                     \
                last_off = o_, last_len = l_, have_last = true;                                    \
            }                                                                                      \
            break;                                                                                 \
        case BH_MERGED_NEXT:                                                                       \
            if (have_last && last_is_match)                                                        \
                last_len += l_;                                                                    \
            else {                                                                                 \
                if (have_last && span_push(&t->pb, &np, &t->pb_cap, last_off, last_len) != 0)      \
                    return -1;                                                                     \
                last_off = o_, last_len = l_, have_last = true;                                    \
            }                                                                                      \
            last_is_match = m_;                                                                    \
            break;                                                                                 \
        case BH_CONTIGUOUS:                                                                        \
            if (have_last && last_is_match && m_)                                                  \
                last_len += l_;                                                                    \
            else {                                                                                 \
                if (have_last && span_push(&t->pb, &np, &t->pb_cap, last_off, last_len) != 0)      \
                    return -1;                                                                     \
                last_off = o_, last_len = l_, have_last = true;                                    \
            }                                                                                      \
            last_is_match = m_;                                                                    \
            break;                                                                                 \
        }                                                                                          \
    } while (0)
    size_t np = t->npb_tmp;
    while (pos <= len) {
        int rc = pcre2_match(s->re, subj, len, pos, PCRE2_NO_UTF_CHECK, t->md, NULL);
        if (rc < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing: step over one character */
            if (ms >= len)
                break;
            pos = ms + 1;
            while (pos < len && (subj[pos] & 0xc0) == 0x80)
                pos++;
            continue;
        }
        EMIT(off + (uint32_t)start, (uint32_t)(ms - start), false);
        EMIT(off + (uint32_t)ms, (uint32_t)(me - ms), true);
        start = pos = me;
    }
    EMIT(off + (uint32_t)start, (uint32_t)(len - start), false);
    if (have_last && span_push(&t->pb, &np, &t->pb_cap, last_off, last_len) != 0)
        return -1;
#undef EMIT
    t->npb_tmp = np;
    return 0;
}

/* The ids of a segment between added tokens: pre-tokenizer steps, then each piece's BPE. */
static const char *normalize(struct sb_tokenizer *t, const char *p, size_t *n);

/* Room for extra more bytes in the work buffer, so that appending a piece of it to itself cannot
   move the bytes being copied. */
static int work_reserve(struct sb_tokenizer *t, size_t extra)
{
    struct sb_buf *w = &t->work;
    if (w->len + extra + 1 <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + extra + 1)
        cap *= 2;
    char *d = realloc(w->data, cap);
    if (!d)
        return -1;
    w->data = d;
    w->cap = cap;
    return 0;
}

/* Metaspace on one piece: spaces become the replacement, which is prepended as the scheme says;
   the rewritten piece is appended to the work buffer. */
static int metaspace_piece(struct sb_tokenizer *t, const struct tok_step *s, struct tok_span *sp,
                           bool text_start)
{
    size_t rl = strlen(s->rep), spaces = 0;
    for (uint32_t i = 0; i < sp->len; i++)
        spaces += t->work.data[sp->off + i] == ' ';
    if (work_reserve(t, sp->len + (spaces + 1) * rl) != 0)
        return -1;
    const char *src = t->work.data + sp->off;
    bool starts = sp->len && (src[0] == ' ' || (sp->len >= rl && memcmp(src, s->rep, rl) == 0));
    bool prepend = !starts && (s->prepend == PREPEND_ALWAYS ||
                               (s->prepend == PREPEND_FIRST && text_start && sp->off == 0));
    size_t off = t->work.len;
    char *o = t->work.data + off;
    size_t k = 0;
    if (prepend)
        memcpy(o, s->rep, rl), k += rl;
    for (uint32_t i = 0; i < sp->len; i++) {
        if (src[i] == ' ')
            memcpy(o + k, s->rep, rl), k += rl;
        else
            o[k++] = src[i];
    }
    t->work.len += k;
    t->work.data[t->work.len] = '\0';
    *sp = (struct tok_span){(uint32_t)off, (uint32_t)k};
    return 0;
}

static int encode_segment(struct sb_tokenizer *t, const char *p, size_t n, bool text_start,
                          struct sb_ids *out)
{
    if (n == 0)
        return 0;
    if (t->nnorms && !(p = normalize(t, p, &n)))
        return -1;
    sb_buf_reset(&t->work);
    if (sb_buf_add(&t->work, p, n) != 0)
        return -1;
    size_t npa = 0;
    if (span_push(&t->pa, &npa, &t->pa_cap, 0, (uint32_t)n) != 0)
        return -1;
    for (size_t k = 0; k < t->nsteps; k++) {
        const struct tok_step *s = &t->steps[k];
        if (s->kind == STEP_BYTELEVEL && s->add_prefix_space) {
            for (size_t i = 0; i < npa; i++) {
                if (t->pa[i].len && t->work.data[t->pa[i].off] == ' ')
                    continue;
                size_t off = t->work.len;
                if (work_reserve(t, t->pa[i].len + 1) != 0 || sb_buf_add(&t->work, " ", 1) != 0 ||
                    sb_buf_add(&t->work, t->work.data + t->pa[i].off, t->pa[i].len) != 0)
                    return -1;
                t->pa[i] = (struct tok_span){(uint32_t)off, t->pa[i].len + 1};
            }
        }
        if (s->kind == STEP_METASPACE)
            for (size_t i = 0; i < npa; i++)
                if (metaspace_piece(t, s, &t->pa[i], text_start) != 0)
                    return -1;
        if (!s->re)
            continue;
        t->npb_tmp = 0;
        for (size_t i = 0; i < npa; i++)
            if (split_piece(t, s, t->pa[i].off, t->pa[i].len) != 0)
                return -1;
        struct tok_span *sw = t->pa;
        size_t cw = t->pa_cap;
        t->pa = t->pb;
        t->pa_cap = t->pb_cap;
        t->pb = sw;
        t->pb_cap = cw;
        npa = t->npb_tmp;
    }
    for (size_t i = 0; i < npa; i++)
        if (encode_piece(t, (const unsigned char *)t->work.data + t->pa[i].off, t->pa[i].len,
                         out) != 0)
            return -1;
    return 0;
}

/* The segment after the normalizer steps (Prepend, Replace), in norm_a / norm_b when changed. */
static const char *normalize(struct sb_tokenizer *t, const char *p, size_t *n)
{
    for (size_t k = 0; k < t->nnorms && *n; k++) {
        const struct tok_norm *m = &t->norms[k];
        struct sb_buf *o = p == t->norm_a.data ? &t->norm_b : &t->norm_a;
        sb_buf_reset(o);
        if (m->kind == NORM_PREPEND) {
            if (sb_buf_adds(o, m->to) != 0 || sb_buf_add(o, p, *n) != 0)
                return NULL;
        } else {
            size_t fl = strlen(m->from), i = 0;
            while (i < *n) {
                const char *hit = memmem(p + i, *n - i, m->from, fl);
                size_t upto = hit ? (size_t)(hit - p) : *n;
                if (sb_buf_add(o, p + i, upto - i) != 0 || (hit && sb_buf_adds(o, m->to) != 0))
                    return NULL;
                i = hit ? upto + fl : *n;
            }
        }
        p = o->data ? o->data : "";
        *n = o->len;
    }
    return p;
}

/* ASCII whitespace, what an added token's lstrip / rstrip take */
static bool tok_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* text made valid UTF-8 (each maximal invalid subpart becomes U+FFFD), in t->clean if changed */
static const char *clean_utf8(struct sb_tokenizer *t, const char *text, size_t *len)
{
    size_t bad, n = *len;
    size_t ok = utf8_valid_len((const unsigned char *)text, n, &bad);
    if (ok == n)
        return text;
    sb_buf_reset(&t->clean);
    size_t i = 0;
    while (i < n) {
        ok = utf8_valid_len((const unsigned char *)text + i, n - i, &bad);
        if (sb_buf_add(&t->clean, text + i, ok) != 0)
            return NULL;
        i += ok;
        if (i < n) {
            if (sb_buf_add(&t->clean, "\xef\xbf\xbd", 3) != 0)
                return NULL;
            i += bad;
        }
    }
    *len = t->clean.len;
    return t->clean.data;
}

int sb_tokenizer_encode(struct sb_tokenizer *t, const char *text, size_t len, bool add_bos,
                        struct sb_ids *out, struct sb_err *err)
{
    if (add_bos)
        for (size_t i = 0; i < t->nprefix; i++)
            if (ids_push(out, t->prefix[i]) != 0)
                return sb_err_set(err, "out of memory encoding %zu bytes", len);
    const char *s = len ? clean_utf8(t, text, &len) : "";
    if (!s)
        return sb_err_set(err, "out of memory encoding %zu bytes", len);
    size_t seg = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t lo = t->added_first[c], hi = t->added_first[c + 1];
        const struct tok_added *hit = NULL;
        for (size_t k = lo; k < hi; k++) {
            const struct tok_added *a = &t->added[k];
            if (a->len <= len - i && memcmp(t->arena + a->off, s + i, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t end = i;
        while (hit->lstrip && end > seg && tok_is_space(s[end - 1]))
            end--;
        if (encode_segment(t, s + seg, end - seg, seg == 0, out) != 0 ||
            ids_push(out, hit->id) != 0)
            return sb_err_set(err, "out of memory encoding %zu bytes", len);
        i += hit->len;
        while (hit->rstrip && i < len && tok_is_space(s[i]))
            i++;
        seg = i;
    }
    if (encode_segment(t, s + seg, len - seg, seg == 0, out) != 0)
        return sb_err_set(err, "out of memory encoding %zu bytes", len);
    if (add_bos)
        for (size_t k = 0; k < t->nsuffix; k++)
            if (ids_push(out, t->suffix[k]) != 0)
                return sb_err_set(err, "out of memory encoding %zu bytes", len);
    return 0;
}

int sb_tokenizer_count(struct sb_tokenizer *t, const char *text, size_t len, bool add_bos,
                       size_t *count, struct sb_err *err)
{
    t->count_ids.n = 0;
    if (sb_tokenizer_encode(t, text, len, add_bos, &t->count_ids, err) != 0)
        return -1;
    *count = t->count_ids.n;
    return 0;
}

/* Whether the 6 bytes at s are a byte-fallback token "<0xHH>" (its byte in *byte). Token text in
   the arena is not NUL-terminated, so no sscanf: it would read on to the next NUL (valgrind). */
static bool byte_token(const char *s, unsigned int *byte)
{
    if (memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return false;
    unsigned int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v * 16 + (unsigned int)d;
    }
    *byte = v;
    return true;
}

int sb_tokenizer_decode(const struct sb_tokenizer *t, const int32_t *ids, size_t n,
                        struct sb_buf *out, struct sb_err *err)
{
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->ntokens || t->tokens[ids[i]].len == UINT32_MAX)
            return sb_err_set(err, "token id %d is not in the vocabulary of '%s'", ids[i], t->path);
        const struct tok_span *sp = &t->tokens[ids[i]];
        const char *s = t->arena + sp->off;
        int rc = 0;
        unsigned int byte;
        if (t->byte_level) {
            rc = sb_buf_add(out, s, sp->len);
        } else if (t->dec_bytefallback && sp->len == 6 && byte_token(s, &byte)) {
            unsigned char c = (unsigned char)byte;
            rc = sb_buf_add(out, &c, 1);
        } else {
            size_t fl = strlen(t->dec_from), j = 0;
            while (rc == 0 && j < sp->len) {
                const char *hit = fl ? memmem(s + j, sp->len - j, t->dec_from, fl) : NULL;
                size_t upto = hit ? (size_t)(hit - s) : sp->len;
                rc = sb_buf_add(out, s + j, upto - j);
                if (rc == 0 && hit) /* Metaspace drops the first token's replacements */
                    rc = sb_buf_adds(out, t->dec_metaspace && i == 0 ? "" : t->dec_to);
                j = hit ? upto + fl : sp->len;
            }
        }
        if (rc != 0)
            return sb_err_set(err, "decoded text too long");
    }
    if (!t->byte_level && t->dec_strip) {
        size_t k = 0;
        while (k < t->dec_strip && k < out->len - start && out->data[start + k] == t->dec_strip_c)
            k++;
        memmove(out->data + start, out->data + start + k, out->len - start - k);
        out->len -= k;
        out->data[out->len] = '\0';
    }
    return 0;
}
