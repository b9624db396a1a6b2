/*
 * The fast path of metrics.jsonl reading (see sb_mscan_line in sb/analyze.h). `analyze` reads
 * files of millions of ~1 KB lines, of which it needs thirteen fields; a general JSON parser spends
 * most of its time on the other forty. This scanner checks the whole line but decodes only those
 * fields, and it uses what lines of one writer share. It learns the first line's key order: later
 * lines have the same keys in the same order, so each key is checked with three 8-byte compares
 * instead of being scanned and looked up. And it keeps one recent line (re-recorded every 1024
 * lines) as a reference: where a run of keys and values repeats the reference's bytes exactly
 * (the labels, rc, ok, error, counts: half of a line), the run is taken as read there, checked by
 * comparing words, since equal bytes in the same place parse the same way. Strings and digit runs
 * are scanned eight bytes at a time. Whatever the scanner does not handle itself (escapes, nested
 * values, ISO-8601 times, broken lines) it hands back, and sb_metrics_parse_line passes the line
 * to sb_record_from_json, which knows the whole grammar and words the error of a bad line.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sb/analyze.h"

/* The fields decoded; everything else is validated and skipped. */
enum mfield {
    MF_OTHER = -1,
    MF_TTFT = SB_LAT_TTFT,
    MF_E2E = SB_LAT_E2E,
    MF_TTFB = SB_LAT_TTFB,
    MF_ITL = SB_LAT_ITL,
    MF_TPOT = SB_LAT_TPOT,
    MF_TS = SB_LAT_N,
    MF_OK,
    MF_RC,
    MF_PHASE,
    MF_ERROR,
    MF_OUTPUT_TOKENS,
    MF_DONE, /* t_last_byte_ns */
    MF_PROMPT_TOKENS,
    MF_SERVER_PROMPT_MS,
};

#define TMPL_KEYS    96
#define TMPL_KEY_MAX 24   /* `"key":` bytes, at most */
#define VIEW_MAX     4096 /* a longer line is never the reference */

/*
 * One learned key: its `"name":` bytes as three 8-byte words taken at offsets inside the key
 * (overlapping for keys under 24 bytes; all at 0 and masked for keys under 8), so that a match
 * costs three loads and one branch whatever the key's length. Longer keys are not learned.
 */
struct tkey {
    uint64_t w[3];
    uint64_t mask;
    uint8_t off[3];
    uint8_t len, need; /* need: bytes that must be readable at p (8 for short keys) */
    int8_t field;
};

/* A decoded field's value as the state change it makes, so that a later line can repeat it. */
struct segval {
    double d;     /* latencies, ts */
    long long ll; /* output_tokens */
    int rc;
    bool set;  /* ok / rc / phase: not null */
    bool a, b; /* ok: value; rc: a word, "ok"; phase: "warmup" */
    enum sb_error_kind err;
};

/* One line's layout by template key: where each key starts and its value ends, and its value. */
struct lineview {
    char bytes[VIEW_MAX];
    size_t len;
    bool valid; /* a whole line whose keys were the template's, in order */
    uint32_t start[TMPL_KEYS], vend[TMPL_KEYS];
    struct segval val[TMPL_KEYS];
};

struct sb_mscan {
    bool need_ts;
    bool learned; /* the template is frozen after the first line */
    size_t nkeys;
    struct tkey keys[TMPL_KEYS];
    char lit[TMPL_KEYS][TMPL_KEY_MAX + 8]; /* the keys' bytes, for a line's last few bytes */
    struct lineview view[2];               /* the reference line's and the one being recorded */
    int ref;                               /* view[ref] is the reference when valid */
    unsigned since_ref;                    /* lines since the reference was recorded */
    uint8_t retry[TMPL_KEYS]; /* compare key i with the reference (its value was the same) */
};

struct sb_mscan *sb_mscan_new(bool need_ts)
{
    struct sb_mscan *s = calloc(1, sizeof(*s));
    if (s)
        s->need_ts = need_ts;
    return s;
}

void sb_mscan_free(struct sb_mscan *s)
{
    free(s);
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SB_SWAR 1
#define ONES    0x0101010101010101ull
#define HIGHS   0x8080808080808080ull

/* Flags (high bit) the bytes of v equal to zero; the lowest flag is exact, higher ones may be
   false positives after a true one, which is all a "first such byte" search needs. */
static inline uint64_t zero_bytes(uint64_t v)
{
    return (v - ONES) & ~v & HIGHS;
}
#endif

/* The first byte of [p, end) that ends a plain string run: '"', '\\' or a control character
   (the line's terminating NUL is one, so the scan always stops by end). */
static inline const char *string_stop(const char *p, const char *end)
{
#ifdef SB_SWAR
    while (end - p >= 8) {
        uint64_t v = load64(p);
        uint64_t m = zero_bytes(v ^ (ONES * '"')) | zero_bytes(v ^ (ONES * '\\')) |
                     ((v - ONES * 0x20) & ~v & HIGHS);
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#else
    (void)end;
#endif
    while (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

static inline bool is_digit(char c)
{
    return (unsigned)(c - '0') < 10u;
}

/* The end of the run of ASCII digits at p (the line's NUL stops it). */
static inline const char *digits_end(const char *p, const char *end)
{
#ifdef SB_SWAR
    while (end - p >= 8) {
        /* Digits become 0..9; a byte above 9 (high bit included) is the first non-digit. */
        uint64_t x = load64(p) ^ (ONES * '0');
        uint64_t m = ((x + ONES * 0x76) | x) & HIGHS;
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#else
    (void)end;
#endif
    while (is_digit(*p))
        p++;
    return p;
}

/* Checks and skips a JSON number at *pp. 0, or -1 when there is none. */
static inline __attribute__((always_inline)) int skip_number(const char **pp, const char *end)
{
    const char *p = *pp;
    if (*p == '-')
        p++;
    if (!is_digit(*p))
        return -1;
    p = *p == '0' ? p + 1 : digits_end(p, end);
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return -1;
        p = digits_end(p, end);
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!is_digit(*p))
            return -1;
        p = digits_end(p, end);
    }
    *pp = p;
    return 0;
}

/* The exact powers of ten a double holds (Clinger's fast path). */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if LDBL_MANT_DIG > DBL_MANT_DIG
/*
 * m x 10^e10 through long double, for mantissas of 54 to 64 bits such as the 18 digits of a unix
 * time with nanoseconds. 10^|e10| <= 10^27 is exact in a 64-bit mantissa, so the one operation is
 * correctly rounded to long double; rounding that to double again is correct unless the first
 * result sits exactly halfway between two doubles (no other point of the double grid can lie
 * between the exact value and its nearest long double). That case returns -1.
 */
static int ld_scale(uint64_t m, int e10, double *out)
{
    static const long double p10[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                      1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                      1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                      1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    if (e10 < -27 || e10 > 27 || LDBL_MANT_DIG < 64)
        return -1;
    long double x = (long double)m;
    x = e10 < 0 ? x / p10[-e10] : x * p10[e10];
#if LDBL_MANT_DIG == 64 && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* x87 extended: the 64-bit significand is the first 8 bytes; the 11 bits a double drops
       being exactly 10000000000 is the halfway case. */
    uint64_t sig;
    memcpy(&sig, &x, sizeof(sig));
    if ((sig & 0x7ff) == 0x400)
        return -1;
#else
    int e;
    long double scaled = ldexpl(frexpl(x, &e), DBL_MANT_DIG);
    if (scaled - floorl(scaled) == 0.5L)
        return -1;
#endif
    *out = (double)x;
    return 0;
}
#else
static int ld_scale(uint64_t m, int e10, double *out)
{
    (void)m;
    (void)e10;
    (void)out;
    return -1;
}
#endif

/* strtod on the number text [start, stop): the rare numbers the fast paths do not take. */
static __attribute__((noinline, cold)) int parse_number_slow(const char *start, const char *stop,
                                                             double *out)
{
    char tmp[64];
    size_t n = (size_t)(stop - start);
    if (n >= sizeof(tmp))
        return -1; /* absurdly long: left to the full parser */
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

#ifdef SB_SWAR
/* How many ASCII digits w (8 bytes of text) starts with, 0..8. */
static inline unsigned lead_digits(uint64_t w)
{
    uint64_t x = w ^ (ONES * '0');
    uint64_t m = ((x + ONES * 0x76) | x) & HIGHS;
    return m ? (unsigned)__builtin_ctzll(m) >> 3 : 8;
}

/* The value of the first n (1..8) bytes of w, all ASCII digits (simdjson's eight-digit parse
   after shifting the rest out). */
static inline uint64_t digit_word(uint64_t w, unsigned n)
{
    w <<= 8 * (8 - n);
    w = (w & 0x0F0F0F0F0F0F0F0Full) * 2561 >> 8;
    w = (w & 0x00FF00FF00FF00FFull) * 6553601 >> 16;
    return (w & 0x0000FFFF0000FFFFull) * 42949672960001ull >> 32 & 0xFFFFFFFFull;
}
#endif

/* The value of the n <= 19 ASCII digits at q. Reads 8 bytes at a time when end allows. */
static inline uint64_t digits_value(const char *q, size_t n, const char *end)
{
    uint64_t v = 0;
#ifdef SB_SWAR
    static const uint64_t scale[9] = {1,      10,      100,      1000,     10000,
                                      100000, 1000000, 10000000, 100000000};
    while (n > 0 && end - q >= 8) {
        unsigned take = n < 8 ? (unsigned)n : 8;
        v = v * scale[take] + digit_word(load64(q), take);
        q += take;
        n -= take;
    }
#else
    (void)end;
#endif
    for (; n > 0; n--, q++)
        v = v * 10 + (uint64_t)(*q - '0');
    return v;
}

/*
 * A JSON number at *pp into *out, exactly as strtod reads it: up to 19 digits with a mantissa up
 * to 2^53 and a power of ten up to 22 is one correctly rounded multiply or divide of two exact
 * doubles (Clinger); longer mantissas go through ld_scale; the rest through strtod. Returns 0, or
 * -1 when there is no number.
 */
static int parse_number(const char **pp, const char *end, double *out)
{
    const char *p = *pp, *start = p;
#ifdef SB_SWAR
    /* The usual shape, "123.456789": each digit run read as one word (up to 7 digits). */
    if (end - p >= 18) {
        const char *q = p + (*p == '-');
        uint64_t w = load64(q);
        unsigned n1 = lead_digits(w);
        if (n1 >= 1 && n1 < 8 && (q[0] != '0' || n1 == 1)) {
            uint64_t m = digit_word(w, n1);
            int exp10 = 0;
            q += n1;
            if (*q == '.') {
                uint64_t w2 = load64(q + 1);
                unsigned n2 = lead_digits(w2);
                if (n2 >= 1 && n2 < 8) {
                    static const uint64_t scale[8] = {1,     10,     100,     1000,
                                                      10000, 100000, 1000000, 10000000};
                    m = m * scale[n2] + digit_word(w2, n2);
                    exp10 = -(int)n2;
                    q += 1 + n2;
                } else {
                    q = NULL;
                }
            }
            if (q && *q != 'e' && *q != 'E') {
                double d = (double)m; /* m < 10^14: exact */
                d = exp10 < 0 ? d / pow10_exact[-exp10] : d;
                *out = *p == '-' ? -d : d;
                *pp = q;
                return 0;
            }
        }
    }
#endif
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!is_digit(*p))
        return -1;
    const char *ia = p;
    p = *p == '0' ? p + 1 : digits_end(p, end);
    const char *ib = p, *fa = p, *fb = p;
    if (*p == '.') {
        fa = ++p;
        if (!is_digit(*p))
            return -1;
        p = fb = digits_end(p, end);
    }
    int exp10 = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        int esign = 1;
        if (*p == '+' || *p == '-')
            esign = *p++ == '-' ? -1 : 1;
        if (!is_digit(*p))
            return -1;
        const char *ea = p;
        p = digits_end(p, end);
        if (p - ea > 6)
            goto slow;
        for (const char *q = ea; q < p; q++)
            exp10 = exp10 * 10 + (*q - '0');
        exp10 *= esign;
    }
    *pp = p;
    size_t ni = (size_t)(ib - ia), nf = (size_t)(fb - fa);
    if (ni + nf > 19)
        goto slow; /* (leading zeros of 0.000x count here too: rare enough for strtod) */
    static const uint64_t pow10_u64[20] = {1ull,
                                           10ull,
                                           100ull,
                                           1000ull,
                                           10000ull,
                                           100000ull,
                                           1000000ull,
                                           10000000ull,
                                           100000000ull,
                                           1000000000ull,
                                           10000000000ull,
                                           100000000000ull,
                                           1000000000000ull,
                                           10000000000000ull,
                                           100000000000000ull,
                                           1000000000000000ull,
                                           10000000000000000ull,
                                           100000000000000000ull,
                                           1000000000000000000ull,
                                           10000000000000000000ull};
    uint64_t m = digits_value(ia, ni, end) * pow10_u64[nf] + digits_value(fa, nf, end);
    exp10 -= (int)nf;
    double d;
    if (m <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        d = (double)m;
        d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
    } else if (ld_scale(m, exp10, &d) != 0) {
        goto slow;
    }
    *out = neg ? -d : d;
    return 0;
slow:
    *pp = p;
    return parse_number_slow(start, p, out);
}

/* A string value without escapes at *pp (the opening quote): its body is [*s, *s + *n). */
static inline int scan_plain_string(const char **pp, const char *end, const char **s, size_t *n)
{
    const char *b = *pp + 1;
    const char *q = string_stop(b, end);
    if (*q != '"')
        return -1;
    *s = b;
    *n = (size_t)(q - b);
    *pp = q + 1;
    return 0;
}

static inline bool word_is(const char *s, size_t n, const char *w, size_t wn)
{
    return n == wn && memcmp(s, w, wn) == 0;
}

/* The field a key names. */
static int8_t field_of(const char *k, size_t n)
{
    switch (n) {
    case 2:
        if (k[0] == 't' && k[1] == 's')
            return MF_TS;
        if (k[0] == 'o' && k[1] == 'k')
            return MF_OK;
        if (k[0] == 'r' && k[1] == 'c')
            return MF_RC;
        break;
    case 5:
        if (memcmp(k, "phase", 5) == 0)
            return MF_PHASE;
        if (memcmp(k, "error", 5) == 0)
            return MF_ERROR;
        break;
    case 7:
        if (memcmp(k, "tpot_ms", 7) == 0)
            return MF_TPOT;
        break;
    case 10:
        if (memcmp(k, "lat_e2e_ms", 10) == 0)
            return MF_E2E;
        break;
    case 11:
        if (memcmp(k, "lat_ttft_ms", 11) == 0)
            return MF_TTFT;
        if (memcmp(k, "lat_ttfb_ms", 11) == 0)
            return MF_TTFB;
        if (memcmp(k, "itl_mean_ms", 11) == 0)
            return MF_ITL;
        break;
    case 13:
        if (memcmp(k, "output_tokens", 13) == 0)
            return MF_OUTPUT_TOKENS;
        if (memcmp(k, "prompt_tokens", 13) == 0)
            return MF_PROMPT_TOKENS;
        break;
    case 16:
        if (memcmp(k, "server_prompt_ms", 16) == 0)
            return MF_SERVER_PROMPT_MS;
        break;
    case 14:
        if (memcmp(k, "t_last_byte_ns", 14) == 0)
            return MF_DONE;
        break;
    default:
        break;
    }
    return MF_OTHER;
}

static void learn_key(struct sb_mscan *s, const char *lit, size_t len, int8_t field)
{
    if (s->nkeys >= TMPL_KEYS || len > TMPL_KEY_MAX)
        return;
    char *l = s->lit[s->nkeys];
    struct tkey *k = &s->keys[s->nkeys++];
    memset(k, 0, sizeof(*k));
    memset(l, 0, TMPL_KEY_MAX + 8);
    memcpy(l, lit, len);
    unsigned char mask[8] = {0};
    memset(mask, 0xff, len < 8 ? len : 8);
    memcpy(&k->mask, mask, sizeof(mask));
    if (len >= 8) {
        size_t last = len - 8;
        k->off[1] = (uint8_t)(last < 8 ? last : 8);
        k->off[2] = (uint8_t)last;
    }
    for (int i = 0; i < 3; i++)
        k->w[i] = load64(l + k->off[i]);
    k->len = (uint8_t)len;
    k->need = (uint8_t)(len < 8 ? 8 : len);
    k->field = field;
}

/* Whether p starts with learned key i (its `"name":` bytes), reading no further than end. */
static inline bool key_matches(const struct sb_mscan *s, size_t i, const char *p, const char *end)
{
    const struct tkey *k = &s->keys[i];
    if ((size_t)(end - p) < k->need)
        return (size_t)(end - p) >= k->len && memcmp(p, s->lit[i], k->len) == 0;
    uint64_t d = (load64(p) ^ k->w[0]) | (load64(p + k->off[1]) ^ k->w[1]) |
                 (load64(p + k->off[2]) ^ k->w[2]);
    return (d & k->mask) == 0;
}

static inline const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static inline bool lit4(const char *p, char a, char b, char c, char d)
{
    return p[0] == a && p[1] == b && p[2] == c && p[3] == d;
}

/* true / false / null at *pp: 1 true, 0 false, 2 null, -1 none of them. */
static inline int scan_literal(const char **pp)
{
    const char *p = *pp;
    if (lit4(p, 'n', 'u', 'l', 'l')) {
        *pp = p + 4;
        return 2;
    }
    if (lit4(p, 't', 'r', 'u', 'e')) {
        *pp = p + 4;
        return 1;
    }
    if (p[0] == 'f' && lit4(p + 1, 'a', 'l', 's', 'e')) {
        *pp = p + 5;
        return 0;
    }
    return -1;
}

/* A count: an integer literal in range (a fraction or an exponent is the full parser's). */
static int scan_count(const char **pp, long long *out)
{
    const char *p = *pp;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!is_digit(*p) || (*p == '0' && is_digit(p[1])))
        return -1;
    long long v = 0;
    for (int n = 0; is_digit(*p); p++, n++) {
        if (n >= 18)
            return -1; /* out of the fast path's range: the full parser decides */
        v = v * 10 + (*p - '0');
    }
    if (*p == '.' || *p == 'e' || *p == 'E')
        return -1; /* "16.0": the full parser takes integral floats */
    *out = neg ? -v : v;
    *pp = p;
    return 0;
}

/* What a line says about its outcome, settled once the whole object is read. */
struct outcome {
    bool have_ok, okv;     /* "ok": true|false */
    bool rc_word, word_ok; /* rc was "ok"/"error" */
};

/*
 * Decodes the value of a field other than the latencies at *pp into *v (kept out of the scan
 * loop, which runs for every key). Returns 0, or -1 for anything left to the full parser.
 */
static __attribute__((noinline)) int decode_field(const struct sb_mscan *s, int field,
                                                  const char **pp, const char *end,
                                                  struct segval *v)
{
    const char *p = *pp;
    const char *w;
    size_t wn;
    memset(v, 0, sizeof(*v));
    switch (field) {
    case MF_TS:
        v->d = NAN;
        if (*p == 'n') {
            if (scan_literal(&p) != 2)
                return -1;
        } else if (s->need_ts ? parse_number(&p, end, &v->d) != 0 : skip_number(&p, end) != 0) {
            return -1; /* an ISO-8601 string, or not a time at all */
        }
        break;
    case MF_DONE: {
        v->d = NAN;
        long long ns;
        if (*p == 'n') {
            if (scan_literal(&p) != 2)
                return -1;
        } else if (scan_count(&p, &ns) != 0 || ns < 0) {
            return -1;
        } else {
            v->d = (double)ns;
        }
        break;
    }
    case MF_OK: {
        int b = scan_literal(&p);
        if (b < 0)
            return -1;
        v->set = b != 2;
        v->a = b == 1;
        break;
    }
    case MF_RC:
        if (*p == '"') {
            if (scan_plain_string(&p, end, &w, &wn) != 0)
                return -1;
            if (!word_is(w, wn, "ok", 2) && !word_is(w, wn, "error", 5))
                return -1;
            v->set = v->a = true;
            v->b = w[0] == 'o';
            v->rc = v->b ? 200 : 0;
        } else if (*p == 'n') {
            if (scan_literal(&p) != 2)
                return -1;
        } else {
            long long n;
            if (scan_count(&p, &n) != 0 || n < -2147483647 || n > 2147483647)
                return -1;
            v->set = true;
            v->rc = (int)n;
        }
        break;
    case MF_PHASE:
        if (*p == '"') {
            if (scan_plain_string(&p, end, &w, &wn) != 0)
                return -1;
            v->set = true;
            v->a = word_is(w, wn, "warmup", 6) || word_is(w, wn, "ramp", 4) ||
                   word_is(w, wn, "prime", 5);
        } else if (scan_literal(&p) != 2) {
            return -1;
        }
        break;
    case MF_ERROR:
        v->err = SB_ERRK_NONE;
        if (*p == '"') {
            char name[24];
            if (scan_plain_string(&p, end, &w, &wn) != 0)
                return -1;
            enum sb_error_kind kind = SB_ERRK_COUNT;
            if (wn < sizeof(name)) {
                memcpy(name, w, wn);
                name[wn] = '\0';
                kind = sb_error_kind_from_name(name);
            }
            /* An older or foreign word reads as transport, as sb_record_from_json has it. */
            v->err = kind == SB_ERRK_COUNT ? SB_ERRK_TRANSPORT : kind;
        } else if (scan_literal(&p) != 2) {
            return -1;
        }
        break;
    case MF_OUTPUT_TOKENS:
    case MF_PROMPT_TOKENS:
        if (*p == 'n') {
            if (scan_literal(&p) != 2) /* null leaves the count as it was */
                return -1;
        } else {
            if (scan_count(&p, &v->ll) != 0)
                return -1;
            v->set = true;
        }
        break;
    case MF_SERVER_PROMPT_MS:
        v->d = NAN;
        if (*p == 'n') {
            if (scan_literal(&p) != 2)
                return -1;
        } else if (parse_number(&p, end, &v->d) != 0) {
            return -1;
        }
        break;
    default:
        return -1;
    }
    *pp = p;
    return 0;
}

/* Applies a decoded value to the record, as reading it where it stands does. */
static void apply_field(int field, const struct segval *v, struct sb_mrec *m, struct outcome *o)
{
    switch (field) {
    case MF_TTFT:
    case MF_E2E:
    case MF_TTFB:
    case MF_ITL:
    case MF_TPOT:
        m->lat[field] = v->d;
        break;
    case MF_TS:
        m->ts = v->d;
        break;
    case MF_OK:
        if (v->set) {
            o->have_ok = true;
            o->okv = v->a;
        }
        break;
    case MF_RC:
        if (v->set)
            m->rc = v->rc;
        if (v->a) {
            o->rc_word = true;
            o->word_ok = v->b;
        }
        break;
    case MF_PHASE:
        if (v->set) {
            m->warmup = v->a;
            m->has_phase = true;
        }
        break;
    case MF_ERROR:
        m->error = v->err;
        break;
    case MF_OUTPUT_TOKENS:
        if (v->set)
            m->output_tokens = v->ll;
        break;
    case MF_PROMPT_TOKENS:
        m->prompt_tokens = v->set ? v->ll : -1;
        break;
    case MF_SERVER_PROMPT_MS:
        m->server_prompt_ms = v->d;
        break;
    case MF_DONE:
        m->t_done_ns = v->d;
        break;
    default:
        break;
    }
}

/* How many bytes a[0..n) and b[0..n) have in common from the start. */
static inline size_t common_prefix(const char *a, const char *b, size_t n)
{
    size_t i = 0;
#ifdef SB_SWAR
    for (; i + 8 <= n; i += 8) {
        uint64_t x = load64(a + i) ^ load64(b + i);
        if (x)
            return i + ((size_t)__builtin_ctzll(x) >> 3);
    }
#endif
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

#define REF_LINES 1024 /* a new reference line every so many lines */

/*
 * The line's keys from template key ki on whose bytes repeat the reference line's, from p: taken
 * as they were read there. The bytes from a key's start to its value's end were checked when the
 * reference was scanned from the same state (a key expected), so equal bytes need no second
 * look, and their values are the reference's. Returns how many keys were taken (0: none); *pend
 * is then just past the last one's value.
 */
static size_t repeat_keys(struct sb_mscan *s, size_t ki, const char *p, const char *end,
                          struct sb_mrec *m, struct outcome *o, const char **pend)
{
    const struct lineview *rv = &s->view[s->ref];
    size_t q = rv->start[ki];
    size_t room = (size_t)(end - p), have = rv->len - q;
    size_t c = common_prefix(p, rv->bytes + q, room < have ? room : have);
    size_t j = ki;
    /* A key is taken when the bytes agree up to its value's end and one byte beyond it (the
       separator): without that byte, "user":1 would match the start of "user":10. */
    while (j < s->nkeys && rv->vend[j] - q < c) {
        if (s->keys[j].field != MF_OTHER)
            apply_field(s->keys[j].field, &rv->val[j], m, o);
        j++;
    }
    if (j == ki) {
        s->retry[ki] = 0; /* this key's value changes: stop comparing it until the next reference */
        return 0;
    }
    *pend = p + (rv->vend[j - 1] - q);
    return j - ki;
}

int sb_mscan_line(struct sb_mscan *s, const char *line, size_t len, struct sb_mrec *m)
{
    const char *p = line, *end = line + len;
    struct outcome o = {false, false, false, false};
    m->ts = NAN;
    m->t_done_ns = NAN;
    for (int i = 0; i < SB_LAT_N; i++)
        m->lat[i] = NAN;
    m->output_tokens = 0;
    m->prompt_tokens = -1;
    m->server_prompt_ms = NAN;
    m->rc = 0;
    m->ok = m->warmup = m->has_phase = false;
    m->error = SB_ERRK_NONE;

    bool learning = !s->learned;
    if (learning)
        s->nkeys = 0;                    /* a first line that failed part-way taught nothing */
    size_t nk = learning ? 0 : s->nkeys; /* template keys to match against */
    size_t ki = 0;                       /* the template key expected next */
    /* Now and then a line is recorded as the reference the lines after it are compared with. */
    bool valid_ref = s->view[s->ref].valid;
    bool recording = !learning && (!valid_ref || ++s->since_ref >= REF_LINES);
    bool delta = !learning && !recording && valid_ref;
    bool in_order = recording; /* every key so far was the template's next one */
    struct lineview *cv = &s->view[s->ref ^ 1];
    p = skip_ws(p);
    if (*p != '{')
        return 1;
    p = skip_ws(p + 1);
    if (*p == '}') {
        p++;
        goto tail;
    }
    for (;;) {
        if (delta && ki < nk && s->retry[ki]) {
            size_t taken = repeat_keys(s, ki, p, end, m, &o, &p);
            if (taken > 0) {
                ki += taken;
                goto after_value;
            }
        }
        int field;
        const char *kstart = p;
        if (ki < nk && key_matches(s, ki, p, end)) {
            field = s->keys[ki].field;
            p += s->keys[ki].len;
            ki++;
        } else {
            const char *lit = p, *k;
            size_t kn;
            if (*p != '"' || scan_plain_string(&p, end, &k, &kn) != 0)
                return 1;
            field = field_of(k, kn);
            if (*p == ':') {
                p++;
                if (learning)
                    learn_key(s, lit, (size_t)(p - lit), (int8_t)field);
            } else {
                p = skip_ws(p);
                if (*p != ':')
                    return 1;
                p++;
            }
            in_order = false;
            /* Back in step with the template after an unexpected key (an omitted field). */
            for (size_t j = 0; j < nk; j++)
                if (key_matches(s, j, lit, end)) {
                    ki = j + 1;
                    break;
                }
        }
        if ((unsigned char)*p <= ' ')
            p = skip_ws(p);
        struct segval v;
        if (field == MF_OTHER) {
            /* Checked and skipped: most values of a line. */
            if (*p == '"') {
                const char *q = string_stop(p + 1, end);
                if (*q != '"')
                    return 1; /* an escape, a control character or the end: the full parser's */
                p = q + 1;
            } else if (*p == 'n' || *p == 't' || *p == 'f') {
                if (scan_literal(&p) < 0)
                    return 1;
            } else if (skip_number(&p, end) != 0) {
                return 1; /* nested values are the full parser's */
            }
        } else if (field == MF_TS && !s->need_ts && *p != 'n' && *p != '"') {
            if (skip_number(&p, end) != 0) /* a time nobody asked for: checked, not read */
                return 1;
            v = (struct segval){.d = NAN};
        } else if (field < SB_LAT_N) {
            v = (struct segval){.d = NAN};
            if (*p == 'n') {
                if (!lit4(p, 'n', 'u', 'l', 'l'))
                    return 1;
                p += 4;
            } else if (parse_number(&p, end, &v.d) != 0) {
                return 1;
            }
            m->lat[field] = v.d;
        } else {
            if (decode_field(s, field, &p, end, &v) != 0)
                return 1;
            apply_field(field, &v, m, &o);
        }
        if (in_order) {
            cv->start[ki - 1] = (uint32_t)(kstart - line);
            cv->vend[ki - 1] = (uint32_t)(p - line);
            if (field != MF_OTHER)
                cv->val[ki - 1] = v;
        }
    after_value:
        if (*p == ',') {
            p++;
        } else {
            p = skip_ws(p);
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',')
                return 1;
            p++;
        }
        if ((unsigned char)*p <= ' ')
            p = skip_ws(p);
    }
tail:
    p = skip_ws(p);
    if (p != end)
        return 1;
    if (learning)
        s->learned = true;
    /* This line is the next one's to compare with when its keys were the template's. */
    if (recording && in_order && ki == nk && nk > 0 && len <= VIEW_MAX) {
        memcpy(cv->bytes, line, len);
        cv->len = len;
        cv->valid = true;
        s->ref ^= 1;
        s->since_ref = 0;
        memset(s->retry, 1, sizeof(s->retry));
    }
    if (o.have_ok)
        m->ok = o.okv;
    else if (o.rc_word)
        m->ok = o.word_ok;
    else
        m->ok = m->rc >= 200 && m->rc <= 299 && m->error == SB_ERRK_NONE;
    return 0;
}

int sb_metrics_parse_line(struct sb_mscan *s, const char *line, size_t len, struct sb_mrec *m,
                          struct sb_err *err)
{
    if (sb_mscan_line(s, line, len, m) == 0)
        return 0;
    struct sb_record r;
    if (sb_record_from_json(line, len, &r, err) != 0)
        return -1;
    m->ts = s->need_ts ? r.ts : NAN;
    m->lat[SB_LAT_TTFT] = r.lat_ttft_ms;
    m->lat[SB_LAT_E2E] = r.lat_e2e_ms;
    m->lat[SB_LAT_TTFB] = r.lat_ttfb_ms;
    m->lat[SB_LAT_ITL] = r.itl_mean_ms;
    m->lat[SB_LAT_TPOT] = r.tpot_ms;
    m->output_tokens = r.output_tokens;
    m->prompt_tokens = r.prompt_tokens;
    m->server_prompt_ms = r.server_prompt_ms;
    m->t_done_ns = r.t_last_byte_ns ? (double)r.t_last_byte_ns : NAN;
    m->rc = r.rc;
    m->warmup = r.warmup;
    /* sb_record_from_json does not say whether the line had a phase or an ok field: a line that
       needs this path and has either is a rare one, and these guesses agree with the scanner for
       every line our writer and the old harness produce. */
    m->has_phase = r.warmup || strstr(line, "\"phase\"") != NULL;
    m->error = r.error;
    m->ok = r.ok || (r.error == SB_ERRK_NONE && r.rc >= 200 && r.rc <= 299);
    return 0;
}
