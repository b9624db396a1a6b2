/*
 * The OpenAI-compatible wire format for the load generator: request bodies, and the decoding of
 * streamed chunks, whole responses and error bodies (sb/openai.h). Decoding runs once per streamed
 * token, so it goes through a single-pass scanner that validates the JSON strictly, records only
 * the members listed in the field tables below (pointers into the input, no copies, no
 * allocation), and skips the rest. Whatever the scanner is not sure of — invalid input, escaped
 * member names, \u0000, unpaired surrogates, deep nesting, long numbers, odd whitespace — it
 * declines, and cJSON decodes it instead. Both front ends fill the same slots through the same
 * tables, and one function turns slots into struct sb_chunk, so the two cannot disagree on what a
 * field means; the unit tests run every fixture through both. Request bodies are written directly
 * into the caller's buffer; extra_json is validated by the same scanner and copied byte for byte.
 */
#include "sb/openai.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

/* ---- URLs ---- */

int sb_openai_api_from_url(const char *url, enum sb_api *api)
{
    static const struct {
        const char *suffix;
        enum sb_api api;
    } routes[] = {
        {"/v1/chat/completions", SB_API_CHAT},
        {"/v1/completions", SB_API_COMPLETIONS},
    };
    if (!url)
        return -1;
    size_t len = strcspn(url, "?#");
    for (size_t i = 0; i < SB_ARRAY_SIZE(routes); i++) {
        size_t sl = strlen(routes[i].suffix);
        if (len >= sl && memcmp(url + len - sl, routes[i].suffix, sl) == 0) {
            if (api)
                *api = routes[i].api;
            return 0;
        }
    }
    return -1;
}

/* ---- small string helpers ---- */

/* The longest prefix of s[0..k) that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t k)
{
    size_t i = k;
    while (i > 0 && k - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return k;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > 1 && k - (i - 1) < need ? i - 1 : k;
}

/* At most the first 80 bytes of s for an error message: control characters as spaces. */
static const char *quote80(const char *s, size_t len, char buf[88])
{
    size_t n = len <= 80 ? len : utf8_cut(s, 80);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (n < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static bool is_json_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* ---- what we read: slots, and the tables that say where each slot comes from ---- */

enum jtype { JT_NONE, JT_NULL, JT_BOOL, JT_NUM, JT_STR, JT_ARR, JT_OBJ };

/* One recorded value. The scanner points into the input; cJSON's tree provides decoded strings
 * and parsed numbers. */
struct jval {
    const char *s; /* JT_STR: bytes (JSON escapes still in when esc); JT_NUM: the number's text
                      from the scanner, NULL from cJSON */
    size_t n;      /* JT_STR, JT_NUM: length of s; JT_ARR: number of elements */
    size_t dec;    /* JT_STR: decoded length in bytes */
    double d;      /* JT_NUM from cJSON */
    bool esc;
};

enum slot {
    S_ERROR,
    S_OBJECT,
    S_MESSAGE,
    S_TYPE,
    S_CODE,
    S_CHOICES,
    S_USAGE,
    S_XMOCK,
    S_TIMINGS,
    S_ERR_MESSAGE,
    S_ERR_TYPE,
    S_ERR_CODE,
    S_CHOICE0,
    S_DELTA,
    S_CMESSAGE,
    S_TEXT,
    S_FINISH,
    S_D_ROLE,
    S_D_CONTENT,
    S_D_REASONING,
    S_D_REASONING_CONTENT,
    S_M_CONTENT,
    S_M_REASONING,
    S_M_REASONING_CONTENT,
    S_U_PROMPT,
    S_U_COMPLETION,
    S_U_DETAILS,
    S_U_CACHED,
    S_X_RECV,
    S_X_FIRST,
    S_T_PROMPT_N,
    S_T_CACHE_N,
    S_T_PREDICTED_N,
    S_T_PROMPT_MS,
    S_T_PREDICTED_MS,
    S_ID,
    S_NVEXT,
    S_NV_TIMING,
    S_NV_WAIT,
    S_NV_PREFILL,
    S_NV_TTFT,
    S_NV_TOTAL,
    S_COUNT,
    S_NONE = 0xff
};

struct slots {
    uint8_t t[S_COUNT]; /* enum jtype; JT_NONE until the member is seen */
    struct jval v[S_COUNT];
};

enum desc_id {
    D_NONE,
    D_TOP,
    D_ERROR,
    D_CHOICE,
    D_DELTA,
    D_MESSAGE,
    D_USAGE,
    D_DETAILS,
    D_XMOCK,
    D_TIMINGS,
    D_NVEXT,
    D_NVTIMING,
    D_COUNT
};

/* A member we record: its slot, the table for its value when that is an object (or, for an
 * array, for its first element, which goes to elem). */
struct field {
    const char *key;
    uint8_t klen;
    uint8_t slot;
    uint8_t sub;  /* enum desc_id */
    uint8_t elem; /* enum slot, S_NONE if not an array we look into */
};

#define FIELD(k, s, d, e)                                                                          \
    {                                                                                              \
        k, sizeof(k) - 1, s, d, e                                                                  \
    }
#define LEAF(k, s) FIELD(k, s, D_NONE, S_NONE)

static const struct field top_fields[] = {
    FIELD("choices", S_CHOICES, D_CHOICE, S_CHOICE0),
    FIELD("usage", S_USAGE, D_USAGE, S_NONE),
    LEAF("object", S_OBJECT),
    FIELD("error", S_ERROR, D_ERROR, S_NONE),
    LEAF("message", S_MESSAGE),
    LEAF("type", S_TYPE),
    LEAF("code", S_CODE),
    FIELD("x_mock", S_XMOCK, D_XMOCK, S_NONE),
    FIELD("timings", S_TIMINGS, D_TIMINGS, S_NONE),
    LEAF("id", S_ID),
    FIELD("nvext", S_NVEXT, D_NVEXT, S_NONE),
};
static const struct field error_fields[] = {
    LEAF("message", S_ERR_MESSAGE),
    LEAF("type", S_ERR_TYPE),
    LEAF("code", S_ERR_CODE),
};
static const struct field choice_fields[] = {
    FIELD("delta", S_DELTA, D_DELTA, S_NONE),
    LEAF("text", S_TEXT),
    LEAF("finish_reason", S_FINISH),
    FIELD("message", S_CMESSAGE, D_MESSAGE, S_NONE),
};
static const struct field delta_fields[] = {
    LEAF("content", S_D_CONTENT),
    LEAF("role", S_D_ROLE),
    LEAF("reasoning", S_D_REASONING),
    LEAF("reasoning_content", S_D_REASONING_CONTENT),
};
static const struct field message_fields[] = {
    LEAF("content", S_M_CONTENT),
    LEAF("reasoning", S_M_REASONING),
    LEAF("reasoning_content", S_M_REASONING_CONTENT),
};
static const struct field usage_fields[] = {
    LEAF("prompt_tokens", S_U_PROMPT),
    LEAF("completion_tokens", S_U_COMPLETION),
    FIELD("prompt_tokens_details", S_U_DETAILS, D_DETAILS, S_NONE),
};
static const struct field details_fields[] = {
    LEAF("cached_tokens", S_U_CACHED),
};
static const struct field xmock_fields[] = {
    LEAF("recv_ns", S_X_RECV),
    LEAF("first_token_ns", S_X_FIRST),
};
static const struct field timings_fields[] = {
    LEAF("prompt_n", S_T_PROMPT_N),         LEAF("cache_n", S_T_CACHE_N),
    LEAF("predicted_n", S_T_PREDICTED_N),   LEAF("prompt_ms", S_T_PROMPT_MS),
    LEAF("predicted_ms", S_T_PREDICTED_MS),
};

/* Dynamo's NvExtResponse and its TimingInfo (lib/llm/src/protocols/openai/nvext.rs). */
static const struct field nvext_fields[] = {
    FIELD("timing", S_NV_TIMING, D_NVTIMING, S_NONE),
};
static const struct field nvtiming_fields[] = {
    LEAF("prefill_wait_time_ms", S_NV_WAIT),
    LEAF("prefill_time_ms", S_NV_PREFILL),
    LEAF("ttft_ms", S_NV_TTFT),
    LEAF("total_time_ms", S_NV_TOTAL),
};

struct desc {
    const struct field *f;
    size_t n;
};

#define DESC(a)                                                                                    \
    {                                                                                              \
        a, SB_ARRAY_SIZE(a)                                                                        \
    }
static const struct desc descs[D_COUNT] = {
    [D_TOP] = DESC(top_fields),           [D_ERROR] = DESC(error_fields),
    [D_CHOICE] = DESC(choice_fields),     [D_DELTA] = DESC(delta_fields),
    [D_MESSAGE] = DESC(message_fields),   [D_USAGE] = DESC(usage_fields),
    [D_DETAILS] = DESC(details_fields),   [D_XMOCK] = DESC(xmock_fields),
    [D_TIMINGS] = DESC(timings_fields),   [D_NVEXT] = DESC(nvext_fields),
    [D_NVTIMING] = DESC(nvtiming_fields),
};

/* ---- the scanner ---- */

#define SCAN_MAX_DEPTH 64
/* Longer numbers are left to cJSON when decoding (cJSON versions differ on them, and num_value()
 * copies the text into a small buffer). */
#define SCAN_MAX_NUMBER 63

struct scan {
    const unsigned char *p, *end, *start;
    unsigned depth;
    const char *why;  /* what was declined, at p */
    struct slots *sl; /* NULL: validate only */
};

static bool decline(struct scan *s, const char *why)
{
    s->why = why;
    return false;
}

static inline void skip_ws(struct scan *s)
{
    while (s->p < s->end && is_json_ws(*s->p))
        s->p++;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A string at s->p (the opening quote). v, when given, gets the body and its decoded length. */
static bool scan_string(struct scan *s, struct jval *v)
{
    const unsigned char *p = s->p + 1, *end = s->end, *body = p;
    size_t dec = 0;
    bool esc = false;
    for (;;) {
        const unsigned char *run = p;
        while (p < end && !(*p < 0x20 || *p == '"' || *p == '\\'))
            p++;
        dec += (size_t)(p - run);
        if (p >= end) {
            s->p = p;
            return decline(s, "unterminated string");
        }
        unsigned char c = *p;
        if (c == '"')
            break;
        s->p = p;
        if (c < 0x20)
            return decline(s, "control character in a string");
        esc = true;
        if (end - p < 2)
            return decline(s, "unterminated string");
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            dec++;
            p += 2;
            continue;
        case 'u':
            break;
        default:
            return decline(s, "invalid escape");
        }
        int cp = end - p >= 6 ? hex4(p + 2) : -1;
        if (cp < 0)
            return decline(s, "invalid \\u escape");
        /* \u0000 is valid, but cJSON would cut the string there: when decoding, leave it to
         * cJSON. Unpaired surrogates are declined everywhere: cJSON rejects them, and a request
         * body holding one is not portable JSON (RFC 8259 section 8.2). */
        if (cp == 0 && s->sl)
            return decline(s, "\\u0000 escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                dec += 4;
                p += 12;
                continue;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return decline(s, "unpaired surrogate");
        dec += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
        p += 6;
    }
    if (v) {
        v->s = (const char *)body;
        v->n = (size_t)(p - body);
        v->dec = dec;
        v->esc = esc;
    }
    s->p = p + 1;
    return true;
}

static inline bool is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* A number in RFC 8259 grammar at s->p. */
static bool scan_number(struct scan *s, struct jval *v)
{
    const unsigned char *p = s->p, *end = s->end, *start = p;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else if (is_digit(p, end)) {
        while (is_digit(p, end))
            p++;
    } else {
        s->p = p;
        return decline(s, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        if (!is_digit(p, end)) {
            s->p = p;
            return decline(s, "invalid number");
        }
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end)) {
            s->p = p;
            return decline(s, "invalid number");
        }
        while (is_digit(p, end))
            p++;
    }
    if (s->sl && p - start > SCAN_MAX_NUMBER)
        return decline(s, "number longer than 63 characters");
    if (v) {
        v->s = (const char *)start;
        v->n = (size_t)(p - start);
    }
    s->p = p;
    return true;
}

static bool scan_literal(struct scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return decline(s, "unexpected character");
    s->p += n;
    return true;
}

static const struct field *find_field(const struct desc *d, const unsigned char *key, size_t len)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->f[i].klen == len && d->f[i].key[0] == key[0] && memcmp(d->f[i].key, key, len) == 0)
            return &d->f[i];
    return NULL;
}

static bool scan_value(struct scan *s, const struct field *f);

/* An object at s->p; d lists the members to record (NULL: record nothing). */
static bool scan_object(struct scan *s, const struct desc *d)
{
    if (++s->depth > SCAN_MAX_DEPTH)
        return decline(s, "nesting deeper than 64");
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        if (s->p >= s->end || *s->p != '"')
            return decline(s, "expected a member name");
        const unsigned char *key_at = s->p;
        struct jval key;
        if (!scan_string(s, &key))
            return false;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return decline(s, "expected ':'");
        s->p++;
        skip_ws(s);
        const struct field *f = NULL;
        if (d) {
            if (key.esc) {
                s->p = key_at;
                return decline(s, "escaped member name");
            }
            f = find_field(d, (const unsigned char *)key.s, key.n);
            if (f && s->sl->t[f->slot] != JT_NONE)
                f = NULL; /* a repeated key: the first one counts, as in cJSON */
        }
        if (!scan_value(s, f))
            return false;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            skip_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            s->depth--;
            return true;
        }
        return decline(s, "expected ',' or '}'");
    }
}

/* An array at s->p; f, when given, says where its element count and first element go. */
static bool scan_array(struct scan *s, const struct field *f)
{
    if (++s->depth > SCAN_MAX_DEPTH)
        return decline(s, "nesting deeper than 64");
    s->p++;
    skip_ws(s);
    size_t count = 0;
    if (s->p < s->end && *s->p == ']') {
        s->p++;
    } else {
        for (;;) {
            const struct field *ef = NULL;
            struct field first;
            if (count == 0 && f && f->elem != S_NONE && s->p < s->end && *s->p == '{') {
                first = (struct field){NULL, 0, f->elem, f->sub, S_NONE};
                ef = &first;
            }
            if (!scan_value(s, ef))
                return false;
            count++;
            skip_ws(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                skip_ws(s);
                continue;
            }
            if (s->p < s->end && *s->p == ']') {
                s->p++;
                break;
            }
            return decline(s, "expected ',' or ']'");
        }
    }
    if (f)
        s->sl->v[f->slot].n = count;
    s->depth--;
    return true;
}

/* Any value at s->p, recorded into f's slot when f is given. */
static bool scan_value(struct scan *s, const struct field *f)
{
    if (s->p >= s->end)
        return decline(s, "truncated input");
    struct jval *v = f ? &s->sl->v[f->slot] : NULL;
    uint8_t t;
    bool ok;
    switch (*s->p) {
    case '{':
        t = JT_OBJ;
        /* an array field's table is for its first element, not for an object in its place */
        ok = scan_object(s, f && f->sub != D_NONE && f->elem == S_NONE ? &descs[f->sub] : NULL);
        break;
    case '[':
        t = JT_ARR;
        ok = scan_array(s, f);
        break;
    case '"':
        t = JT_STR;
        ok = scan_string(s, v);
        break;
    case 't':
        t = JT_BOOL;
        ok = scan_literal(s, "true", 4);
        break;
    case 'f':
        t = JT_BOOL;
        ok = scan_literal(s, "false", 5);
        break;
    case 'n':
        t = JT_NULL;
        ok = scan_literal(s, "null", 4);
        break;
    default:
        if (*s->p != '-' && (*s->p < '0' || *s->p > '9'))
            return decline(s, "unexpected character");
        t = JT_NUM;
        ok = scan_number(s, v);
        break;
    }
    if (ok && f)
        s->sl->t[f->slot] = t;
    return ok;
}

/* A whole document: one object, JSON whitespace around it. */
static bool scan_document(struct scan *s)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return decline(s, "not an object");
    if (!scan_object(s, &descs[D_TOP]))
        return false;
    skip_ws(s);
    if (s->p != s->end)
        return decline(s, "data after the object");
    return true;
}

/* ---- the cJSON front end: same tables, same slots ---- */

static void walk(const cJSON *obj, const struct desc *d, struct slots *sl);

static void take(struct slots *sl, uint8_t slot, uint8_t sub, uint8_t elem, const cJSON *it)
{
    struct jval *v = &sl->v[slot];
    if (cJSON_IsString(it) && it->valuestring) {
        sl->t[slot] = JT_STR;
        v->s = it->valuestring;
        v->n = v->dec = strlen(it->valuestring);
        v->esc = false;
    } else if (cJSON_IsNumber(it)) {
        sl->t[slot] = JT_NUM;
        v->s = NULL;
        v->d = it->valuedouble;
    } else if (cJSON_IsNull(it)) {
        sl->t[slot] = JT_NULL;
    } else if (cJSON_IsBool(it)) {
        sl->t[slot] = JT_BOOL;
    } else if (cJSON_IsArray(it)) {
        sl->t[slot] = JT_ARR;
        v->n = (size_t)cJSON_GetArraySize(it);
        if (elem != S_NONE && cJSON_IsObject(it->child))
            take(sl, elem, sub, S_NONE, it->child);
    } else if (cJSON_IsObject(it)) {
        sl->t[slot] = JT_OBJ;
        if (sub != D_NONE && elem == S_NONE)
            walk(it, &descs[sub], sl);
    }
}

static void walk(const cJSON *obj, const struct desc *d, struct slots *sl)
{
    for (size_t i = 0; i < d->n; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, d->f[i].key);
        if (it)
            take(sl, d->f[i].slot, d->f[i].sub, d->f[i].elem, it);
    }
}

/* ---- slots to struct sb_chunk: one set of rules for both front ends ---- */

/* Writes the decoded bytes of a scanned JSON string body (escapes validated) into dst, at most
 * cap; returns the count written. */
static size_t unescape(const char *s, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o == cap)                                                                              \
            return o;                                                                              \
        dst[o++] = (char)(c);                                                                      \
    } while (0)
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') {
            PUT(c);
            i++;
            continue;
        }
        char e = s[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *at = strchr(from, e);
            PUT(at ? to[at - from] : e);
            i += 2;
            continue;
        }
        unsigned cp = (unsigned)hex4((const unsigned char *)s + i + 2);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
            int lo = hex4((const unsigned char *)s + i + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp & 0x3FF) << 10) + ((unsigned)lo & 0x3FF);
                i += 6;
            }
        }
        if (cp < 0x80) {
            PUT(cp);
        } else if (cp < 0x800) {
            PUT(0xC0 | (cp >> 6));
            PUT(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            PUT(0xE0 | (cp >> 12));
            PUT(0x80 | ((cp >> 6) & 0x3F));
            PUT(0x80 | (cp & 0x3F));
        } else {
            PUT(0xF0 | (cp >> 18));
            PUT(0x80 | ((cp >> 12) & 0x3F));
            PUT(0x80 | ((cp >> 6) & 0x3F));
            PUT(0x80 | (cp & 0x3F));
        }
    }
#undef PUT
    return o;
}

/* Copies a string slot into dst (cap > 0), cut at a character boundary; "" for other types. */
static void copy_str(const struct slots *sl, int slot, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (sl->t[slot] != JT_STR)
        return;
    const struct jval *v = &sl->v[slot];
    size_t room = cap - 1, k;
    if (v->esc) {
        k = unescape(v->s, v->n, dst, room);
    } else {
        k = v->n < room ? v->n : room;
        memcpy(dst, v->s, k);
    }
    if (v->dec > room)
        k = utf8_cut(dst, k);
    dst[k] = '\0';
}

static bool str_equals(const struct slots *sl, int slot, const char *lit)
{
    if (sl->t[slot] != JT_STR)
        return false;
    const struct jval *v = &sl->v[slot];
    size_t n = strlen(lit);
    if (v->dec != n)
        return false;
    if (!v->esc)
        return memcmp(v->s, lit, n) == 0;
    char buf[32];
    return n < sizeof(buf) && unescape(v->s, v->n, buf, n) == n && memcmp(buf, lit, n) == 0;
}

static size_t str_len(const struct slots *sl, int slot)
{
    return sl->t[slot] == JT_STR ? sl->v[slot].dec : 0;
}

/* A number slot's value exactly as cJSON computes it (strtod of the text). */
static bool num_value(const struct slots *sl, int slot, double *out)
{
    if (sl->t[slot] != JT_NUM)
        return false;
    const struct jval *v = &sl->v[slot];
    if (!v->s) {
        *out = v->d;
        return true;
    }
    if (v->n <= 15) { /* plain integers this short are exact in a double: no strtod */
        uint64_t x = 0;
        size_t i = 0;
        while (i < v->n && v->s[i] >= '0' && v->s[i] <= '9')
            x = x * 10 + (uint64_t)(v->s[i++] - '0');
        if (i == v->n) {
            *out = (double)x;
            return true;
        }
    }
    char buf[SCAN_MAX_NUMBER + 1];
    memcpy(buf, v->s, v->n);
    buf[v->n] = '\0';
    *out = strtod(buf, NULL);
    return true;
}

/* A token count: a non-negative integer a double holds exactly, else -1. */
static long long count_of(const struct slots *sl, int slot)
{
    double d;
    if (!num_value(sl, slot, &d) || !(d >= 0 && d <= 9007199254740992.0) || d != floor(d))
        return -1;
    return (long long)d;
}

/* A nanosecond stamp: exact from the scanner's digits, else via the double; 0 when not a
 * non-negative integer below 2^64. */
static uint64_t ns_of(const struct slots *sl, int slot)
{
    const struct jval *v = &sl->v[slot];
    if (sl->t[slot] == JT_NUM && v->s && v->n <= 20) {
        uint64_t x = 0;
        size_t i = 0;
        bool overflow = false;
        for (; i < v->n && v->s[i] >= '0' && v->s[i] <= '9'; i++) {
            unsigned dgt = (unsigned)(v->s[i] - '0');
            if (x > (UINT64_MAX - dgt) / 10)
                overflow = true;
            x = x * 10 + dgt;
        }
        if (i == v->n && !overflow)
            return x;
    }
    double d;
    if (!num_value(sl, slot, &d) || !(d >= 0 && d < 18446744073709551616.0) || d != floor(d))
        return 0;
    return (uint64_t)d;
}

static double ms_of(const struct slots *sl, int slot)
{
    double d;
    return num_value(sl, slot, &d) && isfinite(d) ? d : NAN;
}

/* An error code: an integral number, or a string holding one ("400"); -1 otherwise. */
static int code_of(const struct slots *sl, int slot)
{
    double d;
    if (num_value(sl, slot, &d))
        return d >= INT_MIN && d <= INT_MAX && d == floor(d) ? (int)d : -1;
    char buf[24];
    long long v;
    if (sl->t[slot] != JT_STR || sl->v[slot].dec >= sizeof(buf))
        return -1;
    copy_str(sl, slot, buf, sizeof(buf));
    if (sb_parse_ll(buf, &v) != 0 || v < INT_MIN || v > INT_MAX)
        return -1;
    return (int)v;
}

/* c must be freshly initialised (sb_chunk_init). */
static void fill_chunk(const struct slots *sl, struct sb_chunk *c)
{
    const uint8_t *t = sl->t;

    if (t[S_ERROR] == JT_OBJ) {
        c->is_error = true;
        copy_str(sl, S_ERR_MESSAGE, c->error_msg, sizeof(c->error_msg));
        copy_str(sl, S_ERR_TYPE, c->error_type, sizeof(c->error_type));
        c->error_code = code_of(sl, S_ERR_CODE);
    } else if (t[S_ERROR] == JT_STR) {
        c->is_error = true;
        copy_str(sl, S_ERROR, c->error_msg, sizeof(c->error_msg));
    } else if (str_equals(sl, S_OBJECT, "error") ||
               (t[S_OBJECT] == JT_NONE && t[S_CHOICES] == JT_NONE && t[S_MESSAGE] == JT_STR)) {
        c->is_error = true;
        copy_str(sl, S_MESSAGE, c->error_msg, sizeof(c->error_msg));
        copy_str(sl, S_TYPE, c->error_type, sizeof(c->error_type));
        c->error_code = code_of(sl, S_CODE);
    }

    c->has_choices = t[S_CHOICES] == JT_ARR && sl->v[S_CHOICES].n > 0;
    static const uint8_t content_slots[] = {S_D_CONTENT, S_M_CONTENT, S_TEXT};
    for (size_t i = 0; i < SB_ARRAY_SIZE(content_slots); i++) {
        if (t[content_slots[i]] == JT_STR) {
            c->content_len = sl->v[content_slots[i]].dec;
            break;
        }
    }
    static const uint8_t reasoning_slots[] = {S_D_REASONING, S_D_REASONING_CONTENT, S_M_REASONING,
                                              S_M_REASONING_CONTENT};
    for (size_t i = 0; i < SB_ARRAY_SIZE(reasoning_slots); i++) {
        size_t n = str_len(sl, reasoning_slots[i]);
        if (n > c->reasoning_len)
            c->reasoning_len = n;
    }
    c->role_only = t[S_D_ROLE] == JT_STR && c->content_len == 0 && c->reasoning_len == 0;
    copy_str(sl, S_FINISH, c->finish_reason, sizeof(c->finish_reason));

    if (t[S_USAGE] == JT_OBJ) {
        c->has_usage = true;
        c->prompt_tokens = count_of(sl, S_U_PROMPT);
        c->completion_tokens = count_of(sl, S_U_COMPLETION);
        c->cached_tokens = count_of(sl, S_U_CACHED);
    }
    c->server_recv_ns = ns_of(sl, S_X_RECV);
    c->server_first_token_ns = ns_of(sl, S_X_FIRST);
    if (t[S_TIMINGS] == JT_OBJ) {
        c->has_timings = true;
        c->timings_prompt_n = count_of(sl, S_T_PROMPT_N);
        c->timings_cache_n = count_of(sl, S_T_CACHE_N);
        c->timings_predicted_n = count_of(sl, S_T_PREDICTED_N);
        c->timings_prompt_ms = ms_of(sl, S_T_PROMPT_MS);
        c->timings_predicted_ms = ms_of(sl, S_T_PREDICTED_MS);
    }
    copy_str(sl, S_ID, c->response_id, sizeof(c->response_id));
    if (t[S_NVEXT] == JT_OBJ && t[S_NV_TIMING] == JT_OBJ) {
        c->has_nvext_timing = true;
        c->nv_prefill_wait_ms = ms_of(sl, S_NV_WAIT);
        c->nv_prefill_ms = ms_of(sl, S_NV_PREFILL);
        c->nv_ttft_ms = ms_of(sl, S_NV_TTFT);
        c->nv_total_ms = ms_of(sl, S_NV_TOTAL);
    }
}

/* ---- decoding ---- */

void sb_chunk_init(struct sb_chunk *c)
{
    memset(c, 0, sizeof(*c));
    c->error_code = -1;
    c->prompt_tokens = c->completion_tokens = c->cached_tokens = -1;
    c->timings_prompt_n = c->timings_cache_n = c->timings_predicted_n = -1;
    c->timings_prompt_ms = c->timings_predicted_ms = NAN;
    c->nv_prefill_wait_ms = c->nv_prefill_ms = c->nv_ttft_ms = c->nv_total_ms = NAN;
}

static int decode_cjson(const char *what, const char *data, size_t len, struct sb_chunk *out,
                        struct sb_err *err)
{
    char q[88];
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (!root) {
        size_t at = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
        return sb_err_set(err, "invalid JSON at byte %zu of %s '%s'", at, what,
                          quote80(data, len, q));
    }
    int rc = 0;
    size_t at = (size_t)(end - data);
    while (at < len && is_json_ws((unsigned char)data[at]))
        at++;
    if (at < len) {
        rc = sb_err_set(err, "unexpected data at byte %zu of %s '%s'", at, what,
                        quote80(data, len, q));
    } else if (!cJSON_IsObject(root)) {
        rc = sb_err_set(err, "%s is not a JSON object: '%s'", what, quote80(data, len, q));
    } else {
        struct slots sl;
        memset(sl.t, 0, sizeof(sl.t));
        walk(root, &descs[D_TOP], &sl);
        fill_chunk(&sl, out);
    }
    cJSON_Delete(root);
    return rc;
}

static int decode(enum sb_openai_decoder decoder, const char *what, const char *data, size_t len,
                  struct sb_chunk *out, struct sb_err *err)
{
    sb_chunk_init(out);
    if (!data) {
        data = "";
        len = 0;
    }
    if (decoder != SB_OPENAI_DECODER_CJSON) {
        struct slots sl;
        memset(sl.t, 0, sizeof(sl.t));
        struct scan s = {.p = (const unsigned char *)data,
                         .end = (const unsigned char *)data + len,
                         .start = (const unsigned char *)data,
                         .sl = &sl};
        if (scan_document(&s)) {
            fill_chunk(&sl, out);
            return 0;
        }
        if (decoder == SB_OPENAI_DECODER_SCAN) {
            sb_err_set(err, "scanner declined %s at byte %zu: %s", what, (size_t)(s.p - s.start),
                       s.why);
            return SB_OPENAI_DECLINED;
        }
    }
    return decode_cjson(what, data, len, out, err);
}

int sb_openai_decode_chunk_with(enum sb_openai_decoder decoder, const char *data, size_t len,
                                struct sb_chunk *out, struct sb_err *err)
{
    return decode(decoder, "chunk", data, len, out, err);
}

int sb_openai_decode_chunk(const char *data, size_t len, struct sb_chunk *out, struct sb_err *err)
{
    return decode(SB_OPENAI_DECODER_AUTO, "chunk", data, len, out, err);
}

int sb_openai_decode_response(const char *body, size_t len, struct sb_chunk *out,
                              struct sb_err *err)
{
    return decode(SB_OPENAI_DECODER_AUTO, "response body", body, len, out, err);
}

/* ---- error bodies ---- */

/* Up to 200 bytes of s, control characters and whitespace runs folded into single spaces. */
static void printable_snippet(const char *s, size_t len, char *msg, size_t cap)
{
    size_t n = len <= 200 ? len : utf8_cut(s, 200);
    size_t o = 0;
    bool space = true; /* drops leading blanks */
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            if (!space)
                msg[o++] = ' ';
            space = true;
        } else {
            msg[o++] = (char)c;
            space = false;
        }
    }
    o = utf8_cut(msg, o);
    while (o > 0 && msg[o - 1] == ' ')
        o--;
    msg[o] = '\0';
}

/* FastAPI's {"detail": "text"} or {"detail": [{"msg": "text", ...}]} (request validation). */
static bool fastapi_detail(const char *body, size_t len, char *msg, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "detail");
    if (cJSON_IsArray(d))
        d = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "msg");
    bool ok = cJSON_IsString(d) && d->valuestring[0];
    if (ok)
        printable_snippet(d->valuestring, strlen(d->valuestring), msg, cap);
    cJSON_Delete(root);
    return ok;
}

void sb_openai_error_message(const char *body, size_t len, char *msg, size_t cap)
{
    if (!msg || cap == 0)
        return;
    msg[0] = '\0';
    if (!body)
        len = 0;
    size_t lead = 0;
    while (lead < len && (unsigned char)body[lead] <= 0x20)
        lead++;
    if (lead == len) {
        snprintf(msg, cap, "empty body");
        return;
    }
    struct sb_chunk c;
    if (sb_openai_decode_response(body, len, &c, NULL) == 0) {
        if (c.is_error && (c.error_msg[0] || c.error_type[0] || c.error_code >= 0)) {
            char line[400], code[24] = "";
            if (c.error_code >= 0)
                snprintf(code, sizeof(code), "code %d", c.error_code);
            const char *sep = c.error_type[0] && code[0] ? ", " : "";
            if (!c.error_type[0] && !code[0])
                snprintf(line, sizeof(line), "%s", c.error_msg);
            else if (c.error_msg[0])
                snprintf(line, sizeof(line), "%s (%s%s%s)", c.error_msg, c.error_type, sep, code);
            else
                snprintf(line, sizeof(line), "%s%s%s", c.error_type, sep, code);
            size_t n = strlen(line);
            if (n >= cap)
                n = utf8_cut(line, cap - 1);
            for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)line[i];
                msg[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
            }
            msg[n] = '\0';
            return;
        }
        if (fastapi_detail(body, len, msg, cap))
            return;
    }
    printable_snippet(body + lead, len - lead, msg, cap);
}

/* ---- request bodies ---- */

/* Built-in members extra_json may replace. */
enum {
    B_MODEL = 1 << 0,
    B_PROMPT = 1 << 1,
    B_MESSAGES = 1 << 2,
    B_MAX_TOKENS = 1 << 3,
    B_TEMPERATURE = 1 << 4,
    B_TOP_P = 1 << 5,
    B_STREAM = 1 << 6,
    B_STREAM_OPTIONS = 1 << 7,
    B_LORA_REQUEST = 1 << 8,
};

static const struct {
    const char *key;
    unsigned bit;
} builtins[] = {
    {"model", B_MODEL},
    {"prompt", B_PROMPT},
    {"messages", B_MESSAGES},
    {"max_tokens", B_MAX_TOKENS},
    {"temperature", B_TEMPERATURE},
    {"top_p", B_TOP_P},
    {"stream", B_STREAM},
    {"stream_options", B_STREAM_OPTIONS},
    {"lora_request", B_LORA_REQUEST},
};

/* One top-level member of extra_json: raw spans into it, and its decoded key. */
struct member {
    const char *raw_key, *val;
    size_t raw_key_len, val_len;
    size_t key_off, key_len; /* into extra.keys */
};

struct extra {
    struct member *m;
    size_t n, cap;
    char *keys; /* decoded keys, back to back */
    unsigned overrides;
};

static void extra_release(struct extra *x)
{
    free(x->m);
    free(x->keys);
}

static int extra_error(const struct scan *s, const char *json, size_t len, struct sb_err *err)
{
    char q[88];
    return sb_err_set(err, "invalid JSON at byte %zu of extra_json (%s): '%s'",
                      (size_t)(s->p - s->start), s->why, quote80(json, len, q));
}

/* Validates extra_json with the scanner and lists its members; x is zeroed first. */
static int parse_extra(const char *json, struct extra *x, struct sb_err *err)
{
    memset(x, 0, sizeof(*x));
    size_t len = strlen(json);
    char q[88];
    struct scan s = {.p = (const unsigned char *)json,
                     .end = (const unsigned char *)json + len,
                     .start = (const unsigned char *)json};
    skip_ws(&s);
    if (s.p == s.end)
        return 0;
    if (*s.p != '{') {
        if (!scan_value(&s, NULL))
            return extra_error(&s, json, len, err);
        return sb_err_set(err, "extra_json must be a JSON object, not '%s'", quote80(json, len, q));
    }
    x->keys = malloc(len + 1);
    if (!x->keys)
        return sb_err_set(err, "out of memory");
    size_t keys_len = 0;
    s.depth = 1;
    s.p++;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            struct jval key;
            if (s.p >= s.end || *s.p != '"') {
                decline(&s, "expected a member name");
                return extra_error(&s, json, len, err);
            }
            const unsigned char *key_at = s.p;
            if (!scan_string(&s, &key))
                return extra_error(&s, json, len, err);
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':') {
                decline(&s, "expected ':'");
                return extra_error(&s, json, len, err);
            }
            s.p++;
            skip_ws(&s);
            const unsigned char *val_at = s.p;
            if (!scan_value(&s, NULL))
                return extra_error(&s, json, len, err);
            if (x->n == x->cap) {
                size_t nc = x->cap ? x->cap * 2 : 8;
                struct member *nm = realloc(x->m, nc * sizeof(*nm));
                if (!nm)
                    return sb_err_set(err, "out of memory");
                x->m = nm;
                x->cap = nc;
            }
            struct member *m = &x->m[x->n++];
            m->raw_key = (const char *)key_at + 1;
            m->raw_key_len = key.n;
            m->val = (const char *)val_at;
            m->val_len = (size_t)(s.p - val_at);
            m->key_off = keys_len;
            m->key_len = key.esc ? unescape(key.s, key.n, x->keys + keys_len, key.dec) : key.n;
            if (!key.esc)
                memcpy(x->keys + keys_len, key.s, key.n);
            keys_len += m->key_len;
            skip_ws(&s);
            if (s.p < s.end && *s.p == ',') {
                s.p++;
                skip_ws(&s);
                continue;
            }
            if (s.p < s.end && *s.p == '}') {
                s.p++;
                break;
            }
            decline(&s, "expected ',' or '}'");
            return extra_error(&s, json, len, err);
        }
    }
    skip_ws(&s);
    if (s.p != s.end) {
        decline(&s, "data after the object");
        return extra_error(&s, json, len, err);
    }
    for (size_t i = 0; i < x->n; i++) {
        const char *ki = x->keys + x->m[i].key_off;
        size_t li = x->m[i].key_len;
        for (size_t j = 0; j < i; j++)
            if (x->m[j].key_len == li && memcmp(x->keys + x->m[j].key_off, ki, li) == 0)
                return sb_err_set(err, "duplicate key '%.*s' in extra_json", (int)li, ki);
        for (size_t b = 0; b < SB_ARRAY_SIZE(builtins); b++)
            if (strlen(builtins[b].key) == li && memcmp(builtins[b].key, ki, li) == 0)
                x->overrides |= builtins[b].bit;
    }
    return 0;
}

/* The shortest of %.15g / %.17g that reads back as d. */
static void format_double(char *buf, size_t cap, double d)
{
    snprintf(buf, cap, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, cap, "%.17g", d);
}

static int add_key(struct sb_buf *b, bool *first, const char *key)
{
    int rc = sb_buf_addf(b, "%s\"%s\":", *first ? "" : ",", key);
    *first = false;
    return rc;
}

int sb_openai_build_request(const struct sb_request_params *p, struct sb_buf *out,
                            struct sb_err *err)
{
    if (p->api != SB_API_COMPLETIONS && p->api != SB_API_CHAT)
        return sb_err_set(err, "unknown API %d", (int)p->api);
    if (!p->prompt && p->prompt_len > 0)
        return sb_err_set(err, "prompt is NULL but prompt_len is %zu", p->prompt_len);
    if (isinf(p->temperature) || isinf(p->top_p))
        return sb_err_set(err, "temperature and top_p must be finite or NAN (omitted)");

    struct extra x = {0};
    if (p->extra_json && parse_extra(p->extra_json, &x, err) != 0) {
        extra_release(&x);
        return -1;
    }
    const unsigned ov = x.overrides;
    const size_t start = out->len;
    const char *prompt = p->prompt ? p->prompt : "";
    bool first = true;
    char num[40];
    int rc = sb_buf_add(out, "{", 1);
    if (p->model && !(ov & B_MODEL)) {
        rc |= add_key(out, &first, "model");
        rc |= sb_buf_add(out, "\"", 1);
        rc |= sb_buf_add_json_escaped(out, p->model, strlen(p->model));
        rc |= sb_buf_add(out, "\"", 1);
    }
    if (p->api == SB_API_CHAT && !(ov & B_MESSAGES) && p->messages_json) {
        rc |= add_key(out, &first, "messages");
        rc |= sb_buf_add(out, p->messages_json, p->messages_len);
    } else if (p->api == SB_API_CHAT && !(ov & B_MESSAGES)) {
        rc |= add_key(out, &first, "messages");
        rc |= sb_buf_adds(out, "[{\"role\":\"user\",\"content\":\"");
        rc |= sb_buf_add_json_escaped(out, prompt, p->prompt_len);
        rc |= sb_buf_adds(out, "\"}]");
    } else if (p->api == SB_API_COMPLETIONS && !(ov & B_PROMPT)) {
        rc |= add_key(out, &first, "prompt");
        rc |= sb_buf_add(out, "\"", 1);
        rc |= sb_buf_add_json_escaped(out, prompt, p->prompt_len);
        rc |= sb_buf_add(out, "\"", 1);
    }
    if (p->max_tokens >= 0 && !(ov & B_MAX_TOKENS)) {
        rc |= add_key(out, &first, "max_tokens");
        rc |= sb_buf_addf(out, "%lld", p->max_tokens);
    }
    if (!isnan(p->temperature) && !(ov & B_TEMPERATURE)) {
        format_double(num, sizeof(num), p->temperature);
        rc |= add_key(out, &first, "temperature");
        rc |= sb_buf_adds(out, num);
    }
    if (!isnan(p->top_p) && !(ov & B_TOP_P)) {
        format_double(num, sizeof(num), p->top_p);
        rc |= add_key(out, &first, "top_p");
        rc |= sb_buf_adds(out, num);
    }
    if (!(ov & B_STREAM)) {
        rc |= add_key(out, &first, "stream");
        rc |= sb_buf_adds(out, p->stream ? "true" : "false");
    }
    if (p->stream && p->include_usage && !(ov & B_STREAM_OPTIONS)) {
        rc |= add_key(out, &first, "stream_options");
        rc |= sb_buf_adds(out, "{\"include_usage\":true,\"continuous_usage_stats\":false}");
    }
    if (p->lora_name && !(ov & B_LORA_REQUEST)) {
        /* TensorRT-LLM's LoRARequest (tensorrt_llm/executor/request.py: lora_name, lora_int_id,
           lora_path; the server checks that the path exists), the `lora_request` member of its
           CompletionRequest / ChatCompletionRequest (tensorrt_llm/serve/openai_protocol.py). */
        rc |= add_key(out, &first, "lora_request");
        rc |= sb_buf_adds(out, "{\"lora_name\":\"");
        rc |= sb_buf_add_json_escaped(out, p->lora_name, strlen(p->lora_name));
        rc |= sb_buf_addf(out, "\",\"lora_int_id\":%lld,\"lora_path\":\"", p->lora_id);
        const char *lp = p->lora_path ? p->lora_path : "";
        rc |= sb_buf_add_json_escaped(out, lp, strlen(lp));
        rc |= sb_buf_adds(out, "\"}");
    }
    for (size_t i = 0; i < x.n; i++) {
        const struct member *m = &x.m[i];
        rc |= sb_buf_adds(out, first ? "\"" : ",\"");
        first = false;
        rc |= sb_buf_add(out, m->raw_key, m->raw_key_len);
        rc |= sb_buf_add(out, "\":", 2);
        rc |= sb_buf_add(out, m->val, m->val_len);
    }
    rc |= sb_buf_add(out, "}", 1);
    extra_release(&x);
    if (rc != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return sb_err_set(err, "request body larger than the %zu-byte buffer limit", out->max);
    }
    return 0;
}
