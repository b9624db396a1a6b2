/*
 * Prometheus text exposition format 0.0.4 (see sb/prom.h): a line-at-a-time parser over a page
 * already in memory, built to run every 200 ms against the Dynamo frontend, KVBM and vLLM pages
 * without allocating per sample, and to lose only the bad line, not the page, when a server
 * writes something odd. Metric families live in a small open-addressing table (names point into
 * the page) so that x_bucket/x_sum/x_count/x_created/x_total samples find the TYPE of x. On top
 * sits the snapshot: a page copied into one allocation for sums, renamed-series lookups and
 * PromQL-style histogram quantiles over the delta between two scrapes.
 */
#include "sb/prom.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/util.h"

/* ---- numbers ---- */

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* strtod follows LC_NUMERIC; the format is always "C", whatever the program's locale. */
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The general case: specials, long mantissas, big exponents, hex. */
static int parse_value_slow(const char *s, size_t len, double *out)
{
    char buf[128];
    if (len >= sizeof(buf))
        return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '(' || s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
            s[i] == '\v' || s[i] == '\f' || s[i] == '\0')
            return -1; /* strtod would skip blanks or read "nan(...)": Go reads neither */
    memcpy(buf, s, len);
    buf[len] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    char *end;
    errno = 0;
    double v = c_locale ? strtod_l(buf, &end, c_locale) : strtod(buf, &end);
    if (end != buf + len)
        return -1;
    if (errno == ERANGE && isinf(v))
        return -1; /* overflow; underflow to 0 or a subnormal is fine */
    *out = v;
    return 0;
}

int sb_prom_parse_value(const char *s, size_t len, double *out)
{
    if (len == 0)
        return -1;
    /* Fast path (Clinger): at most 19 digits and a small exponent convert exactly with one
     * multiplication or division, which covers nearly every value a server writes. */
    size_t i = 0;
    bool neg = false;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t mant = 0;
    int ndigits = 0, exp10 = 0;
    while (i < len && is_digit(s[i])) {
        mant = mant * 10 + (uint64_t)(s[i] - '0');
        ndigits++;
        i++;
        if (ndigits > 19)
            return parse_value_slow(s, len, out);
    }
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_digit(s[i])) {
            mant = mant * 10 + (uint64_t)(s[i] - '0');
            ndigits++;
            exp10--;
            i++;
            if (ndigits > 19)
                return parse_value_slow(s, len, out);
        }
    }
    if (ndigits == 0)
        return parse_value_slow(s, len, out); /* "NaN", "+Inf", or not a number */
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        int e = 0, edigits = 0;
        while (i < len && is_digit(s[i])) {
            e = e * 10 + (s[i] - '0');
            edigits++;
            i++;
            if (edigits > 4)
                return parse_value_slow(s, len, out);
        }
        if (edigits == 0)
            return -1;
        exp10 += eneg ? -e : e;
    }
    if (i != len)
        return parse_value_slow(s, len, out);
    double v;
    if (mant == 0)
        v = 0.0;
    else if (mant <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22)
        v = exp10 < 0 ? (double)mant / pow10_exact[-exp10] : (double)mant * pow10_exact[exp10];
    else
        return parse_value_slow(s, len, out);
    *out = neg ? -v : v;
    return 0;
}

/* Signed 64-bit decimal milliseconds, as Go's ParseInt. */
static int parse_timestamp(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (len && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return -1;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

/* ---- metric families ---- */

enum fam_type { FT_NONE, FT_COUNTER, FT_GAUGE, FT_HISTOGRAM, FT_SUMMARY, FT_UNTYPED };

static const char *const type_names[] = {
    [FT_NONE] = "untyped",        [FT_COUNTER] = "counter", [FT_GAUGE] = "gauge",
    [FT_HISTOGRAM] = "histogram", [FT_SUMMARY] = "summary", [FT_UNTYPED] = "untyped",
};

struct fam {
    const char *name; /* into the page; NULL marks a free slot */
    size_t len;
    uint64_t hash;
    unsigned char type; /* enum fam_type; FT_NONE until a TYPE line */
    bool has_help;
};

#define FAM_INLINE 256 /* slots on the stack: 128 names before the table touches the heap */

struct famtab {
    struct fam *slots;
    size_t cap; /* power of two */
    size_t n;
    struct fam inl[FAM_INLINE];
};

static void famtab_init(struct famtab *t)
{
    memset(t->inl, 0, sizeof(t->inl));
    t->slots = t->inl;
    t->cap = FAM_INLINE;
    t->n = 0;
}

static void famtab_release(struct famtab *t)
{
    if (t->slots != t->inl)
        free(t->slots);
    t->slots = NULL;
}

static struct fam *famtab_find(const struct famtab *t, const char *name, size_t len, uint64_t h)
{
    for (size_t i = (size_t)h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        struct fam *f = &t->slots[i];
        if (!f->name || (f->hash == h && f->len == len && memcmp(f->name, name, len) == 0))
            return f;
    }
}

/* The family named name, added when missing. NULL when memory runs out. */
static struct fam *famtab_get(struct famtab *t, const char *name, size_t len)
{
    uint64_t h = sb_hash64(name, len, 0);
    struct fam *f = famtab_find(t, name, len, h);
    if (f->name)
        return f;
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap * 2;
        struct fam *ns = calloc(ncap, sizeof(*ns));
        if (!ns)
            return NULL;
        struct famtab grown = {.slots = ns, .cap = ncap, .n = t->n};
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].name)
                *famtab_find(&grown, t->slots[i].name, t->slots[i].len, t->slots[i].hash) =
                    t->slots[i];
        if (t->slots != t->inl)
            free(t->slots);
        t->slots = ns;
        t->cap = ncap;
        f = famtab_find(t, name, len, h);
    }
    *f = (struct fam){.name = name, .len = len, .hash = h};
    t->n++;
    return f;
}

static const struct fam *famtab_lookup(const struct famtab *t, const char *name, size_t len)
{
    const struct fam *f = famtab_find(t, name, len, sb_hash64(name, len, 0));
    return f->name ? f : NULL;
}

/* ---- the parser ---- */

enum line_rc { LINE_OK, LINE_BAD, LINE_STOP, LINE_FATAL };

struct parser {
    bool lenient;
    sb_prom_cb cb;
    sb_prom_help_cb help_cb;
    void *arg;
    struct sb_err *err;
    size_t lineno;
    int stop; /* the callback's non-zero return */
    struct famtab fams;
    /* Unescaped label values and HELP text of the current line; reserved to the line's length
     * at its first escape, so pointers handed out earlier on the line stay valid. */
    char *scratch;
    size_t scratch_cap, scratch_used, scratch_line;
    /* The last sample name resolved and its type: histograms repeat x_bucket many times. */
    const char *last_name;
    size_t last_len;
    const char *last_type;
    char problem[256];
    struct sb_prom_label labels[SB_PROM_MAX_LABELS];
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || is_digit(c);
}

static bool is_label_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_label_char(char c)
{
    return is_label_start(c) || is_digit(c);
}

/* Subjects quoted in messages are cut to this many bytes. */
#define QUOTE_MAX 64
#define Q(s, n)   (int)((n) > QUOTE_MAX ? QUOTE_MAX : (n)), (s)

static enum line_rc bad(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static enum line_rc bad(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->problem, sizeof(p->problem), fmt, ap);
    va_end(ap);
    return LINE_BAD;
}

/* Room for line_len more unescaped bytes on this line. -1 when memory runs out. */
static int scratch_reserve(struct parser *p, size_t line_len)
{
    if (p->scratch_line != p->lineno) {
        p->scratch_line = p->lineno;
        p->scratch_used = 0;
    }
    if (p->scratch_used + line_len <= p->scratch_cap)
        return 0;
    if (p->scratch_used != 0)
        return 0; /* reserved at this line's first escape, which covered the whole line */
    size_t cap = p->scratch_cap ? p->scratch_cap : 256;
    while (cap < line_len)
        cap *= 2;
    char *ns = realloc(p->scratch, cap);
    if (!ns)
        return -1;
    p->scratch = ns;
    p->scratch_cap = cap;
    return 0;
}

static const char *resolve_type(struct parser *p, const char *name, size_t len)
{
    if (p->last_name && p->last_len == len && memcmp(p->last_name, name, len) == 0)
        return p->last_type;
    static const struct {
        const char *suffix;
        size_t len;
        unsigned types; /* bit per enum fam_type the base family may have */
    } suffixes[] = {
        {"_bucket", 7, 1u << FT_HISTOGRAM},
        {"_sum", 4, 1u << FT_HISTOGRAM | 1u << FT_SUMMARY},
        {"_count", 6, 1u << FT_HISTOGRAM | 1u << FT_SUMMARY},
        {"_created", 8, 1u << FT_HISTOGRAM | 1u << FT_SUMMARY | 1u << FT_COUNTER},
        {"_total", 6, 1u << FT_COUNTER},
    };
    const char *type = type_names[FT_NONE];
    const struct fam *f = famtab_lookup(&p->fams, name, len);
    if (f && f->type != FT_NONE) {
        type = type_names[f->type];
    } else {
        for (size_t i = 0; i < SB_ARRAY_SIZE(suffixes); i++) {
            size_t sl = suffixes[i].len;
            if (len <= sl || memcmp(name + len - sl, suffixes[i].suffix, sl) != 0)
                continue;
            const struct fam *base = famtab_lookup(&p->fams, name, len - sl);
            if (base && (suffixes[i].types & (1u << base->type)))
                type = type_names[base->type];
            break;
        }
    }
    p->last_name = name;
    p->last_len = len;
    p->last_type = type;
    return type;
}

/* HELP docstring: \\ and \n are the only escapes. */
static enum line_rc parse_help(struct parser *p, const char *name, size_t nlen, const char *s,
                               size_t len)
{
    const char *text = s;
    size_t tlen = len;
    if (memchr(s, '\\', len)) {
        if (scratch_reserve(p, len) != 0) {
            sb_err_set(p->err, "out of memory parsing prometheus text line %zu", p->lineno);
            return LINE_FATAL;
        }
        char *d = p->scratch + p->scratch_used;
        size_t n = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] != '\\') {
                d[n++] = s[i];
                continue;
            }
            if (++i == len)
                return bad(p, "unfinished escape at the end of the HELP text of '%.*s'",
                           Q(name, nlen));
            if (s[i] == '\\')
                d[n++] = '\\';
            else if (s[i] == 'n')
                d[n++] = '\n';
            else
                return bad(p, "invalid escape '\\%c' in the HELP text of '%.*s'", s[i],
                           Q(name, nlen));
        }
        text = d;
        tlen = n;
        p->scratch_used += n;
    }
    struct fam *f = famtab_get(&p->fams, name, nlen);
    if (!f) {
        sb_err_set(p->err, "out of memory parsing prometheus text line %zu", p->lineno);
        return LINE_FATAL;
    }
    if (f->has_help)
        return bad(p, "second HELP line for '%.*s'", Q(name, nlen));
    f->has_help = true;
    if (p->help_cb) {
        int rc = p->help_cb(name, nlen, text, tlen, p->arg);
        if (rc) {
            p->stop = rc;
            return LINE_STOP;
        }
    }
    return LINE_OK;
}

static enum line_rc parse_type(struct parser *p, const char *name, size_t nlen, const char *s,
                               size_t len)
{
    size_t i = 0;
    while (i < len && !is_blank(s[i]))
        i++;
    size_t tlen = i;
    while (i < len && is_blank(s[i]))
        i++;
    if (i < len)
        return bad(p, "unexpected text '%.*s' after the type of '%.*s'", Q(s + i, len - i),
                   Q(name, nlen));
    enum fam_type t = FT_NONE;
    for (int k = FT_COUNTER; k <= FT_UNTYPED; k++)
        if (strlen(type_names[k]) == tlen && strncasecmp(type_names[k], s, tlen) == 0)
            t = (enum fam_type)k;
    if (t == FT_NONE)
        return bad(p, "unknown metric type '%.*s' for '%.*s'", Q(s, tlen), Q(name, nlen));
    struct fam *f = famtab_get(&p->fams, name, nlen);
    if (!f) {
        sb_err_set(p->err, "out of memory parsing prometheus text line %zu", p->lineno);
        return LINE_FATAL;
    }
    if (f->type != FT_NONE)
        return bad(p, "second TYPE line for '%.*s'", Q(name, nlen));
    f->type = (unsigned char)t;
    p->last_name = NULL; /* a cached resolution may have changed */
    return LINE_OK;
}

/* l[i] is the character after '#'. */
static enum line_rc parse_comment(struct parser *p, const char *l, size_t ll, size_t i)
{
    while (i < ll && is_blank(l[i]))
        i++;
    size_t ks = i;
    while (i < ll && !is_blank(l[i]))
        i++;
    bool help = i - ks == 4 && memcmp(l + ks, "HELP", 4) == 0;
    bool type = i - ks == 4 && memcmp(l + ks, "TYPE", 4) == 0;
    if (!help && !type)
        return LINE_OK; /* a plain comment */
    while (i < ll && is_blank(l[i]))
        i++;
    if (i == ll)
        return LINE_OK; /* "# HELP" alone: expfmt reads it as a comment too */
    size_t ns = i;
    if (!is_name_start(l[i]))
        return bad(p, "invalid metric name '%.*s' in a %s line", Q(l + i, ll - i),
                   help ? "HELP" : "TYPE");
    while (i < ll && is_name_char(l[i]))
        i++;
    if (i < ll && !is_blank(l[i]))
        return bad(p, "invalid metric name '%.*s' in a %s line", Q(l + ns, ll - ns),
                   help ? "HELP" : "TYPE");
    size_t nlen = i - ns;
    while (i < ll && is_blank(l[i]))
        i++;
    if (help)
        return parse_help(p, l + ns, nlen, l + i, ll - i);
    if (i == ll)
        return LINE_OK; /* "# TYPE name" without a type: ignored, as expfmt does */
    return parse_type(p, l + ns, nlen, l + i, ll - i);
}

/* Reads one label value from l[*pi] (just past the opening quote) to its closing quote. */
static enum line_rc parse_label_value(struct parser *p, const char *l, size_t ll, size_t *pi,
                                      const char *lname, size_t lnlen, const char *name,
                                      size_t nlen, const char **out, size_t *out_len)
{
    size_t i = *pi, vs = i;
    while (i < ll && l[i] != '"' && l[i] != '\\')
        i++;
    if (i < ll && l[i] == '"') {
        *out = l + vs;
        *out_len = i - vs;
        *pi = i + 1;
        return LINE_OK;
    }
    if (i < ll) { /* an escape: unescape into the scratch */
        if (scratch_reserve(p, ll) != 0) {
            sb_err_set(p->err, "out of memory parsing prometheus text line %zu", p->lineno);
            return LINE_FATAL;
        }
        char *d = p->scratch + p->scratch_used;
        size_t n = i - vs;
        memcpy(d, l + vs, n);
        while (i < ll && l[i] != '"') {
            if (l[i] != '\\') {
                d[n++] = l[i++];
                continue;
            }
            if (++i == ll)
                break;
            char c = l[i++];
            if (c == '\\' || c == '"')
                d[n++] = c;
            else if (c == 'n')
                d[n++] = '\n';
            else
                return bad(p, "invalid escape '\\%c' in the value of label '%.*s' of '%.*s'", c,
                           Q(lname, lnlen), Q(name, nlen));
        }
        if (i < ll) {
            *out = d;
            *out_len = n;
            p->scratch_used += n;
            *pi = i + 1;
            return LINE_OK;
        }
    }
    return bad(p, "unterminated value of label '%.*s' of '%.*s'", Q(lname, lnlen), Q(name, nlen));
}

static enum line_rc parse_labels(struct parser *p, const char *l, size_t ll, size_t *pi,
                                 const char *name, size_t nlen, size_t *nlabels)
{
    size_t i = *pi, n = 0;
    while (i < ll && is_blank(l[i]))
        i++;
    for (;;) {
        if (i == ll)
            return bad(p, "unterminated label set of '%.*s'", Q(name, nlen));
        if (l[i] == '}') {
            i++;
            break;
        }
        size_t ls = i;
        if (!is_label_start(l[i]))
            return bad(p, "invalid label name at '%.*s' in '%.*s'", Q(l + i, ll - i),
                       Q(name, nlen));
        while (i < ll && is_label_char(l[i]))
            i++;
        size_t lnlen = i - ls;
        while (i < ll && is_blank(l[i]))
            i++;
        if (i == ll || l[i] != '=')
            return bad(p, "expected '=' after label '%.*s' of '%.*s'", Q(l + ls, lnlen),
                       Q(name, nlen));
        i++;
        while (i < ll && is_blank(l[i]))
            i++;
        if (i == ll || l[i] != '"')
            return bad(p, "expected '\"' to open the value of label '%.*s' of '%.*s'",
                       Q(l + ls, lnlen), Q(name, nlen));
        i++;
        const char *v = NULL;
        size_t vlen = 0;
        enum line_rc rc = parse_label_value(p, l, ll, &i, l + ls, lnlen, name, nlen, &v, &vlen);
        if (rc != LINE_OK)
            return rc;
        if (n == SB_PROM_MAX_LABELS)
            return bad(p, "more than %d labels on '%.*s'", SB_PROM_MAX_LABELS, Q(name, nlen));
        for (size_t k = 0; k < n; k++)
            if (p->labels[k].name_len == lnlen && memcmp(p->labels[k].name, l + ls, lnlen) == 0)
                return bad(p, "duplicate label '%.*s' on '%.*s'", Q(l + ls, lnlen), Q(name, nlen));
        p->labels[n++] = (struct sb_prom_label){
            .name = l + ls, .name_len = lnlen, .value = v, .value_len = vlen};
        while (i < ll && is_blank(l[i]))
            i++;
        if (i < ll && l[i] == ',') {
            i++;
            while (i < ll && is_blank(l[i]))
                i++;
            continue;
        }
        if (i < ll && l[i] == '}') {
            i++;
            break;
        }
        if (i == ll)
            return bad(p, "unterminated label set of '%.*s'", Q(name, nlen));
        return bad(p, "expected ',' or '}' after label '%.*s' of '%.*s'", Q(l + ls, lnlen),
                   Q(name, nlen));
    }
    *pi = i;
    *nlabels = n;
    return LINE_OK;
}

/* l[i] starts the metric name. */
static enum line_rc parse_sample(struct parser *p, const char *l, size_t ll, size_t i)
{
    size_t ns = i;
    if (!is_name_start(l[i]))
        return bad(p, "invalid metric name at '%.*s'", Q(l + i, ll - i));
    while (i < ll && is_name_char(l[i]))
        i++;
    const char *name = l + ns;
    size_t nlen = i - ns;
    if (i < ll && !is_blank(l[i]) && l[i] != '{')
        return bad(p, "invalid character '%c' in metric name '%.*s'", l[i], Q(name, nlen));
    while (i < ll && is_blank(l[i]))
        i++;
    size_t nlabels = 0;
    if (i < ll && l[i] == '{') {
        i++;
        enum line_rc rc = parse_labels(p, l, ll, &i, name, nlen, &nlabels);
        if (rc != LINE_OK)
            return rc;
        while (i < ll && is_blank(l[i]))
            i++;
    }
    size_t vs = i;
    while (i < ll && !is_blank(l[i]))
        i++;
    if (vs == i)
        return bad(p, "missing value for '%.*s'", Q(name, nlen));
    struct sb_prom_sample s = {
        .name = name,
        .name_len = nlen,
        .labels = p->labels,
        .nlabels = nlabels,
    };
    if (sb_prom_parse_value(l + vs, i - vs, &s.value) != 0)
        return bad(p, "bad value '%.*s' for '%.*s'", Q(l + vs, i - vs), Q(name, nlen));
    while (i < ll && is_blank(l[i]))
        i++;
    if (i < ll) {
        size_t ts = i;
        while (i < ll && !is_blank(l[i]))
            i++;
        if (parse_timestamp(l + ts, i - ts, &s.timestamp_ms) != 0)
            return bad(p, "bad timestamp '%.*s' for '%.*s'", Q(l + ts, i - ts), Q(name, nlen));
        s.has_timestamp = true;
        while (i < ll && is_blank(l[i]))
            i++;
        if (i < ll)
            return bad(p, "unexpected text '%.*s' after the timestamp of '%.*s'", Q(l + i, ll - i),
                       Q(name, nlen));
    }
    s.type = resolve_type(p, name, nlen);
    if (p->cb) {
        int rc = p->cb(&s, p->arg);
        if (rc) {
            p->stop = rc;
            return LINE_STOP;
        }
    }
    return LINE_OK;
}

static enum line_rc parse_line(struct parser *p, const char *l, size_t ll)
{
    if (ll > SB_PROM_LINE_MAX)
        return bad(p, "line longer than %u bytes", SB_PROM_LINE_MAX);
    size_t i = 0;
    while (i < ll && is_blank(l[i]))
        i++;
    if (i == ll)
        return LINE_OK;
    if (l[i] == '#')
        return parse_comment(p, l, ll, i + 1);
    return parse_sample(p, l, ll, i);
}

int sb_prom_parse_full(const char *text, size_t len, bool lenient, sb_prom_cb cb,
                       sb_prom_help_cb help_cb, void *arg, size_t *bad_lines, struct sb_err *err)
{
    struct parser *p = malloc(sizeof(*p));
    if (!p)
        return sb_err_set(err, "out of memory parsing prometheus text");
    p->lenient = lenient;
    p->cb = cb;
    p->help_cb = help_cb;
    p->arg = arg;
    p->err = err;
    p->lineno = 0;
    p->stop = 0;
    famtab_init(&p->fams);
    p->scratch = NULL;
    p->scratch_cap = p->scratch_used = 0;
    p->scratch_line = 0;
    p->last_name = NULL;
    p->problem[0] = '\0';

    size_t nbad = 0, pos = 0;
    int ret = 0;
    sb_err_clear(err);
    while (pos < len) {
        const char *l = text + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - l) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll && l[ll - 1] == '\r')
            ll--;
        p->lineno++;
        enum line_rc rc = parse_line(p, l, ll);
        if (rc == LINE_OK)
            continue;
        if (rc == LINE_STOP) {
            ret = p->stop;
            break;
        }
        if (rc == LINE_FATAL) {
            ret = -1;
            break;
        }
        if (!lenient) {
            nbad++;
            ret =
                sb_err_set(err, "cannot parse prometheus text line %zu: %s", p->lineno, p->problem);
            break;
        }
        if (nbad++ == 0 && err) {
            sb_err_set(err, "skipped prometheus text line %zu: %s", p->lineno, p->problem);
            err->code = 0;
        }
    }
    if (bad_lines)
        *bad_lines = nbad;
    famtab_release(&p->fams);
    free(p->scratch);
    free(p);
    return ret;
}

int sb_prom_parse(const char *text, size_t len, bool lenient, sb_prom_cb cb, void *arg,
                  size_t *bad_lines, struct sb_err *err)
{
    return sb_prom_parse_full(text, len, lenient, cb, NULL, arg, bad_lines, err);
}

/* ---- snapshots ---- */

struct sb_prom_snapshot {
    size_t nsamples;
    size_t bad_lines;
    struct sb_prom_sample *samples; /* then the labels, then the strings, all in this block */
};

/* First pass: how much to allocate. */
struct snap_count {
    size_t nsamples, nlabels, bytes;
};

static int snap_count_cb(const struct sb_prom_sample *s, void *arg)
{
    struct snap_count *c = arg;
    c->nsamples++;
    c->nlabels += s->nlabels;
    c->bytes += s->name_len + 1;
    for (size_t i = 0; i < s->nlabels; i++)
        c->bytes += s->labels[i].name_len + 1 + s->labels[i].value_len + 1;
    return 0;
}

/* Second pass: copy into the block. */
struct snap_fill {
    struct sb_prom_snapshot *snap;
    struct sb_prom_label *labels;
    char *strings;
    struct snap_count room, used;
};

static const char *snap_copy(struct snap_fill *f, const char *s, size_t len)
{
    char *d = f->strings + f->used.bytes;
    memcpy(d, s, len);
    d[len] = '\0';
    f->used.bytes += len + 1;
    return d;
}

static int snap_fill_cb(const struct sb_prom_sample *s, void *arg)
{
    struct snap_fill *f = arg;
    struct snap_count need = {1, s->nlabels, s->name_len + 1};
    for (size_t i = 0; i < s->nlabels; i++)
        need.bytes += s->labels[i].name_len + 1 + s->labels[i].value_len + 1;
    if (f->used.nsamples + need.nsamples > f->room.nsamples ||
        f->used.nlabels + need.nlabels > f->room.nlabels ||
        f->used.bytes + need.bytes > f->room.bytes)
        return 1; /* the two passes disagree: cannot happen, refuse rather than overrun */
    struct sb_prom_label *labels = f->labels + f->used.nlabels;
    for (size_t i = 0; i < s->nlabels; i++) {
        labels[i].name = snap_copy(f, s->labels[i].name, s->labels[i].name_len);
        labels[i].name_len = s->labels[i].name_len;
        labels[i].value = snap_copy(f, s->labels[i].value, s->labels[i].value_len);
        labels[i].value_len = s->labels[i].value_len;
    }
    f->used.nlabels += s->nlabels;
    struct sb_prom_sample *d = &f->snap->samples[f->used.nsamples++];
    *d = *s;
    d->name = snap_copy(f, s->name, s->name_len);
    d->labels = s->nlabels ? labels : NULL;
    return 0;
}

int sb_prom_snapshot_parse(struct sb_prom_snapshot **out, const char *text, size_t len,
                           struct sb_err *err)
{
    *out = NULL;
    struct snap_count c = {0};
    size_t bad_lines = 0;
    if (sb_prom_parse(text, len, true, snap_count_cb, &c, &bad_lines, err) != 0)
        return -1;
    size_t head = sizeof(struct sb_prom_snapshot);
    size_t samples = c.nsamples * sizeof(struct sb_prom_sample);
    size_t labels = c.nlabels * sizeof(struct sb_prom_label);
    if (c.nsamples > SIZE_MAX / 4 / sizeof(struct sb_prom_sample) ||
        c.nlabels > SIZE_MAX / 4 / sizeof(struct sb_prom_label) || c.bytes > SIZE_MAX / 4)
        return sb_err_set(err, "prometheus page too large for a snapshot");
    char *block = malloc(head + samples + labels + c.bytes);
    if (!block)
        return sb_err_set(err, "out of memory for a prometheus snapshot of %zu samples",
                          c.nsamples);
    struct sb_prom_snapshot *snap = (struct sb_prom_snapshot *)(void *)block;
    snap->nsamples = c.nsamples;
    snap->bad_lines = bad_lines;
    snap->samples = (struct sb_prom_sample *)(void *)(block + head);
    struct snap_fill f = {
        .snap = snap,
        .labels = (struct sb_prom_label *)(void *)(block + head + samples),
        .strings = block + head + samples + labels,
        .room = c,
    };
    struct sb_err ignored;
    if (sb_prom_parse(text, len, true, snap_fill_cb, &f, NULL, &ignored) != 0 ||
        f.used.nsamples != c.nsamples) {
        free(block);
        return sb_err_set(err, "prometheus snapshot: the page read differently the second time");
    }
    *out = snap;
    return 0;
}

void sb_prom_snapshot_free(struct sb_prom_snapshot *s)
{
    free(s);
}

size_t sb_prom_snapshot_count(const struct sb_prom_snapshot *s)
{
    return s ? s->nsamples : 0;
}

size_t sb_prom_snapshot_bad_lines(const struct sb_prom_snapshot *s)
{
    return s ? s->bad_lines : 0;
}

const struct sb_prom_sample *sb_prom_snapshot_sample(const struct sb_prom_snapshot *s, size_t i)
{
    return s && i < s->nsamples ? &s->samples[i] : NULL;
}

static bool name_is(const struct sb_prom_sample *s, const char *name, size_t len)
{
    return s->name_len == len && memcmp(s->name, name, len) == 0;
}

/* Does the sample carry every pair of label_pairs (name, value, name, value, ...)? */
static bool has_labels(const struct sb_prom_sample *s, const char *const *pairs, size_t npairs)
{
    for (size_t k = 0; k < npairs; k++) {
        const char *ln = pairs[2 * k], *lv = pairs[2 * k + 1];
        size_t lnlen = strlen(ln), lvlen = strlen(lv);
        bool found = false;
        for (size_t i = 0; i < s->nlabels && !found; i++)
            found = s->labels[i].name_len == lnlen && memcmp(s->labels[i].name, ln, lnlen) == 0 &&
                    s->labels[i].value_len == lvlen && memcmp(s->labels[i].value, lv, lvlen) == 0;
        if (!found)
            return false;
    }
    return true;
}

bool sb_prom_snapshot_sum(const struct sb_prom_snapshot *s, const char *name,
                          const char *const *label_pairs, size_t npairs, double *out)
{
    if (!s || !name)
        return false;
    size_t len = strlen(name);
    double sum = 0;
    bool any = false;
    for (size_t i = 0; i < s->nsamples; i++) {
        const struct sb_prom_sample *x = &s->samples[i];
        if (name_is(x, name, len) && has_labels(x, label_pairs, npairs)) {
            sum += x->value;
            any = true;
        }
    }
    if (any)
        *out = sum;
    return any;
}

const char *sb_prom_snapshot_first(const struct sb_prom_snapshot *s, const char *const *names,
                                   size_t nnames, double *out)
{
    if (!s)
        return NULL;
    for (size_t n = 0; n < nnames; n++) {
        size_t len = strlen(names[n]);
        for (size_t i = 0; i < s->nsamples; i++) {
            if (name_is(&s->samples[i], names[n], len)) {
                *out = s->samples[i].value;
                return names[n];
            }
        }
    }
    return NULL;
}

/* ---- histograms ---- */

/* Is the sample named family + suffix? */
static bool name_is_part(const struct sb_prom_sample *s, const char *family, size_t flen,
                         const char *suffix, size_t slen)
{
    return s->name_len == flen + slen && memcmp(s->name, family, flen) == 0 &&
           memcmp(s->name + flen, suffix, slen) == 0;
}

static int add_bucket(struct sb_prom_histogram *h, double le, double count)
{
    size_t j = 0;
    while (j < h->nbuckets && h->buckets[j].le < le)
        j++;
    if (j < h->nbuckets && h->buckets[j].le == le) {
        h->buckets[j].count += count;
        return 0;
    }
    if (h->nbuckets == SB_PROM_MAX_BUCKETS)
        return -1;
    memmove(&h->buckets[j + 1], &h->buckets[j], (h->nbuckets - j) * sizeof(h->buckets[0]));
    h->buckets[j] = (struct sb_prom_bucket){.le = le, .count = count};
    h->nbuckets++;
    return 0;
}

int sb_prom_snapshot_histogram(const struct sb_prom_snapshot *s, const char *family,
                               const char *const *label_pairs, size_t npairs,
                               struct sb_prom_histogram *h, struct sb_err *err)
{
    h->nbuckets = 0;
    h->sum = h->count = 0;
    if (!s)
        return 0;
    size_t flen = strlen(family);
    for (size_t i = 0; i < s->nsamples; i++) {
        const struct sb_prom_sample *x = &s->samples[i];
        if (x->name_len < flen || memcmp(x->name, family, flen) != 0 ||
            !has_labels(x, label_pairs, npairs))
            continue;
        if (name_is_part(x, family, flen, "_sum", 4)) {
            h->sum += x->value;
        } else if (name_is_part(x, family, flen, "_count", 6)) {
            h->count += x->value;
        } else if (name_is_part(x, family, flen, "_bucket", 7)) {
            const struct sb_prom_label *le = NULL;
            for (size_t k = 0; k < x->nlabels && !le; k++)
                if (x->labels[k].name_len == 2 && memcmp(x->labels[k].name, "le", 2) == 0)
                    le = &x->labels[k];
            if (!le)
                return sb_err_set(err, "histogram bucket of '%s' has no 'le' label", family);
            double bound;
            if (sb_prom_parse_value(le->value, le->value_len, &bound) != 0 || isnan(bound))
                return sb_err_set(err, "histogram bucket of '%s' has a bad bound le='%s'", family,
                                  le->value);
            if (add_bucket(h, bound, x->value) != 0)
                return sb_err_set(err, "histogram '%s' has more than %d bucket bounds", family,
                                  SB_PROM_MAX_BUCKETS);
        }
    }
    return 0;
}

void sb_prom_histogram_delta(struct sb_prom_histogram *out, const struct sb_prom_histogram *a,
                             const struct sb_prom_histogram *b)
{
    *out = *b;
    if (!a || a->nbuckets == 0)
        return;
    double ta = a->buckets[a->nbuckets - 1].count;
    double tb = b->nbuckets ? b->buckets[b->nbuckets - 1].count : 0;
    if (tb < ta || b->count < a->count)
        return; /* counters reset between the scrapes: b counts from zero */
    for (size_t i = 0; i < out->nbuckets; i++)
        for (size_t j = 0; j < a->nbuckets; j++)
            if (a->buckets[j].le == out->buckets[i].le) {
                out->buckets[i].count -= a->buckets[j].count;
                break;
            }
    out->sum -= a->sum;
    out->count -= a->count;
}

double sb_prom_buckets_quantile(const struct sb_prom_bucket *b, size_t n, double q)
{
    if (isnan(q))
        return NAN;
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    if (n < 2 || n > SB_PROM_MAX_BUCKETS || !(isinf(b[n - 1].le) && b[n - 1].le > 0))
        return NAN;
    /* PromQL's ensureMonotonic: a bucket never holds less than the one below it. */
    double c[SB_PROM_MAX_BUCKETS];
    double max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        c[i] = b[i].count > max ? b[i].count : max;
        max = c[i];
    }
    double total = c[n - 1];
    if (!(total > 0))
        return NAN;
    double rank = q * total;
    size_t j = 0;
    while (j < n - 1 && !(c[j] >= rank && c[j] > 0))
        j++;
    if (j == n - 1)
        return b[n - 2].le;
    if (j == 0 && b[0].le <= 0)
        return b[0].le;
    double start = 0, end = b[j].le, count = c[j];
    if (j > 0) {
        start = b[j - 1].le;
        count -= c[j - 1];
        rank -= c[j - 1];
    }
    return start + (end - start) * (rank / count);
}

double sb_prom_histogram_quantile_where(const struct sb_prom_snapshot *a,
                                        const struct sb_prom_snapshot *b, const char *family,
                                        const char *const *label_pairs, size_t npairs, double q)
{
    /* Three histograms are 6 KB: on the heap, since sysmon may call this from a small stack. */
    /* calloc: clang's analyzer reported h[1] (filled by sb_prom_snapshot_histogram) as unset */
    struct sb_prom_histogram *h = calloc(3, sizeof(*h));
    if (!h)
        return NAN;
    double v = NAN;
    struct sb_err err;
    if (sb_prom_snapshot_histogram(b, family, label_pairs, npairs, &h[1], &err) != 0 ||
        h[1].nbuckets == 0)
        goto out;
    if (a && sb_prom_snapshot_histogram(a, family, label_pairs, npairs, &h[0], &err) != 0)
        goto out;
    sb_prom_histogram_delta(&h[2], a ? &h[0] : NULL, &h[1]);
    v = sb_prom_buckets_quantile(h[2].buckets, h[2].nbuckets, q);
out:
    free(h);
    return v;
}

double sb_prom_histogram_quantile(const struct sb_prom_snapshot *a,
                                  const struct sb_prom_snapshot *b, const char *family, double q)
{
    return sb_prom_histogram_quantile_where(a, b, family, NULL, 0, q);
}

/* ---- every series of a page ---- */

/* Appends a label value escaped as the format writes it (\\, \" and \n). */
static int add_label_escaped(struct sb_buf *b, const char *v)
{
    int rc = 0;
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            rc |= sb_buf_add(b, "\\", 1);
        if (*v == '\n')
            rc |= sb_buf_adds(b, "\\n");
        else
            rc |= sb_buf_add(b, v, 1);
    }
    return rc;
}

static int series_cmp(const void *a, const void *b, void *arg)
{
    const struct sb_prom_series_set *set = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(set->keys + set->off[x], set->keys + set->off[y]);
    return c ? c : (x > y) - (x < y); /* page order among equal keys: the last one is kept */
}

void sb_prom_series_set_release(struct sb_prom_series_set *set)
{
    free(set->keys);
    free(set->off);
    free(set->val);
    memset(set, 0, sizeof(*set));
}

int sb_prom_series_set_build(struct sb_prom_series_set *set, const struct sb_prom_snapshot *s,
                             struct sb_err *err)
{
    memset(set, 0, sizeof(*set));
    size_t n = sb_prom_snapshot_count(s);
    struct sb_buf keys;
    sb_buf_init(&keys, SIZE_MAX / 2);
    size_t *off = malloc((n ? n : 1) * sizeof(*off));
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    double *val = malloc((n ? n : 1) * sizeof(*val));
    int rc = -1;
    if (!off || !order || !val)
        goto out;
    int brc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sb_prom_sample *x = &s->samples[i]; /* i < n: never the accessor's NULL */
        off[i] = keys.len;
        brc |= sb_buf_adds(&keys, x->name);
        for (size_t l = 0; l < x->nlabels; l++) {
            brc |= sb_buf_addf(&keys, "%s%s=\"", l ? "," : "{", x->labels[l].name);
            brc |= add_label_escaped(&keys, x->labels[l].value);
            brc |= sb_buf_adds(&keys, "\"");
        }
        if (x->nlabels)
            brc |= sb_buf_adds(&keys, "}");
        brc |= sb_buf_add(&keys, "", 1);
        order[i] = i;
    }
    if (brc)
        goto out;
    set->keys = keys.data;
    set->off = off;
    qsort_r(order, n, sizeof(*order), series_cmp, set);
    /* Keep the last of equal keys, in sorted order. */
    size_t *soff = malloc((n ? n : 1) * sizeof(*soff));
    double *sval = malloc((n ? n : 1) * sizeof(*sval));
    if (!soff || !sval) {
        free(soff);
        free(sval);
        set->keys = NULL;
        set->off = NULL;
        goto out;
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        if (m && strcmp(keys.data + soff[m - 1], keys.data + off[i]) == 0)
            m--;
        soff[m] = off[i];
        sval[m++] = sb_prom_snapshot_sample(s, i)->value;
    }
    free(off);
    off = NULL;
    set->off = soff;
    set->val = sval;
    set->n = m;
    keys.data = NULL; /* now set's */
    rc = 0;
out:
    if (rc != 0) {
        sb_err_set(err, "out of memory keeping prometheus series");
        memset(set, 0, sizeof(*set));
    }
    sb_buf_release(&keys);
    free(off);
    free(order);
    free(val);
    return rc;
}

/* A value as JSON: the shortest decimal that reads back exactly, or "NaN"/"+Inf"/"-Inf". */
static int add_series_value(struct sb_buf *b, double v)
{
    if (isnan(v))
        return sb_buf_adds(b, "\"NaN\"");
    if (isinf(v))
        return sb_buf_adds(b, v > 0 ? "\"+Inf\"" : "\"-Inf\"");
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return sb_buf_adds(b, tmp);
}

static int add_member(struct sb_buf *out, const char *key, bool present, double v, bool *first)
{
    int rc = sb_buf_adds(out, *first ? "\"" : ",\"");
    *first = false;
    rc |= sb_buf_add_json_escaped(out, key, strlen(key));
    rc |= sb_buf_adds(out, "\":");
    return rc | (present ? add_series_value(out, v) : sb_buf_adds(out, "null"));
}

static bool same_value(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

int sb_prom_series_diff_json(const struct sb_prom_series_set *prev,
                             const struct sb_prom_series_set *cur, struct sb_buf *out,
                             size_t *nchanged)
{
    static const struct sb_prom_series_set none = {0};
    if (!prev)
        prev = &none;
    size_t i = 0, j = 0, n = 0;
    bool first = true;
    int rc = sb_buf_adds(out, "{");
    /* A merge of two sorted key lists. */
    while (i < prev->n || j < cur->n) {
        int c = i == prev->n  ? 1
                : j == cur->n ? -1
                              : strcmp(prev->keys + prev->off[i], cur->keys + cur->off[j]);
        if (c < 0) { /* gone */
            rc |= add_member(out, prev->keys + prev->off[i], false, 0, &first);
            n++;
            i++;
        } else if (c > 0) { /* new */
            rc |= add_member(out, cur->keys + cur->off[j], true, cur->val[j], &first);
            n++;
            j++;
        } else {
            if (!same_value(prev->val[i], cur->val[j])) {
                rc |= add_member(out, cur->keys + cur->off[j], true, cur->val[j], &first);
                n++;
            }
            i++;
            j++;
        }
    }
    rc |= sb_buf_adds(out, "}");
    *nchanged = n;
    return rc ? -1 : 0;
}
