/*
 * metrics.jsonl records (see sb/record.h). One table lists every field once: its JSON name, how it
 * is stored and how "not measured" is written. The writer walks that table into a stack buffer
 * with hand-rolled integer and fixed-point formatting, because it runs once per request on the
 * load generator's hot path. The reader is a small strict JSON scanner for one flat object rather
 * than cJSON: it reads the nanosecond stamps as exact 64-bit integers (a double loses the last
 * digits once a host has been up for ~104 days) and it allocates nothing, which matters when
 * `analyze` loads millions of lines. It also accepts the old Python harness's lines (rc "ok" /
 * "error", ISO-8601 timestamps).
 */
#include "sb/record.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb/openai.h"
#include "sb/util.h"

static const char *const kind_names[SB_ERRK_COUNT] = {
    [SB_ERRK_NONE] = "none",
    [SB_ERRK_CONNECT] = "connect",
    [SB_ERRK_TIMEOUT] = "timeout",
    [SB_ERRK_HTTP] = "http",
    [SB_ERRK_BAD_JSON] = "bad_json",
    [SB_ERRK_BAD_SSE] = "bad_sse",
    [SB_ERRK_STREAM_ERROR] = "stream_error",
    [SB_ERRK_TRUNCATED] = "truncated",
    [SB_ERRK_TOO_LARGE] = "too_large",
    [SB_ERRK_TRANSPORT] = "transport",
    [SB_ERRK_CANCELLED] = "cancelled",
    [SB_ERRK_EMPTY_STREAM] = "empty_stream",
};

const char *sb_error_kind_name(enum sb_error_kind k)
{
    return ((int)k >= 0 && k < SB_ERRK_COUNT) ? kind_names[k] : "unknown";
}

enum sb_error_kind sb_error_kind_from_name(const char *name)
{
    for (int k = 0; k < SB_ERRK_COUNT; k++)
        if (strcmp(kind_names[k], name) == 0)
            return (enum sb_error_kind)k;
    return SB_ERRK_COUNT;
}

void sb_record_init(struct sb_record *r)
{
    memset(r, 0, sizeof(*r));
    r->rate = NAN;
    r->ts = NAN;
    r->lat_ttft_ms = r->lat_ttfb_ms = r->lat_first_chunk_ms = r->lat_e2e_ms =
        r->lat_sched_delay_ms = NAN;
    r->itl_mean_ms = r->itl_p50_ms = r->itl_p99_ms = r->itl_max_ms = r->tpot_ms = NAN;
    r->prompt_tokens = r->cached_tokens = r->prompt_tokens_client = -1;
    r->concurrency = r->max_inflight = -1;
    r->server_prompt_n = r->server_predicted_n = r->server_cache_n = -1;
    r->reusable_tokens = r->reuse_distance_tokens = r->trace_idx = -1;
    r->server_prompt_ms = r->server_decode_ms = r->server_queue_ms = NAN;
    r->adapter_use = -1;
    r->session = r->turn = r->history_tokens = r->new_tokens = r->reusable_tokens =
        r->reuse_distance_tokens = -1;
    r->idle_ms = NAN;
    r->parked = -1;
}

bool sb_prompt_truncated(long long reported, long long sent_est)
{
    return reported >= 0 && sent_est > 0 && (double)reported < 0.5 * (double)sent_est;
}

void sb_record_add_timings(struct sb_record *r, const struct sb_chunk *c)
{
    if (c->response_id[0] && !r->response_id[0])
        snprintf(r->response_id, sizeof(r->response_id), "%s", c->response_id);
    if (c->has_nvext_timing) {
        snprintf(r->server_timings_src, sizeof(r->server_timings_src), "dynamo_nvext");
        if (!isnan(c->nv_prefill_wait_ms))
            r->server_queue_ms = c->nv_prefill_wait_ms;
        if (!isnan(c->nv_prefill_ms))
            r->server_prompt_ms = c->nv_prefill_ms;
        else if (!isnan(c->nv_ttft_ms))
            r->server_prompt_ms = c->nv_ttft_ms;
        if (!isnan(c->nv_total_ms) && !isnan(c->nv_ttft_ms) && c->nv_total_ms >= c->nv_ttft_ms)
            r->server_decode_ms = c->nv_total_ms - c->nv_ttft_ms;
    }
    if (!c->has_timings)
        return;
    snprintf(r->server_timings_src, sizeof(r->server_timings_src), "llamacpp");
    if (c->timings_prompt_n >= 0)
        r->server_prompt_n = c->timings_prompt_n;
    if (!isnan(c->timings_prompt_ms))
        r->server_prompt_ms = c->timings_prompt_ms;
    if (c->timings_predicted_n >= 0)
        r->server_predicted_n = c->timings_predicted_n;
    if (!isnan(c->timings_predicted_ms))
        r->server_decode_ms = c->timings_predicted_ms;
    if (c->timings_cache_n >= 0)
        r->server_cache_n = c->timings_cache_n;
}

void sb_record_derive_server(struct sb_record *r, long long sent_est)
{
    if (r->cached_tokens >= 0) {
        if (!r->cached_src[0])
            snprintf(r->cached_src, sizeof(r->cached_src), "usage");
    } else if (r->server_cache_n >= 0) {
        r->cached_tokens = r->server_cache_n;
        snprintf(r->cached_src, sizeof(r->cached_src), "timings");
    } else if (r->prompt_tokens >= 0 && r->server_prompt_n >= 0 &&
               r->server_prompt_n <= r->prompt_tokens) {
        r->cached_tokens = r->prompt_tokens - r->server_prompt_n;
        snprintf(r->cached_src, sizeof(r->cached_src), "timings");
    }
    r->server_truncated = sb_prompt_truncated(
        r->prompt_tokens, r->prompt_tokens_client > 0 ? r->prompt_tokens_client : sent_est);
}

/* ---- the field table ---- */

enum field_type {
    F_STR,       /* char[]: always a string */
    F_STR_NULL,  /* char[]: null when empty */
    F_STR_OMIT,  /* char[]: left out when empty */
    F_LL,        /* long long */
    F_LL_NULL,   /* long long: null when -1 ("not reported") */
    F_U64,       /* uint64_t stamp: null when 0 */
    F_MS,        /* double, fixed 6 decimals: null when NAN */
    F_EXACT,     /* double, shortest text that reads back bit-exact: null when NAN */
    F_INT,       /* int (rc) */
    F_BOOL,      /* bool (ok, retried) */
    F_FLAG,      /* bool: true | false (any other bool field) */
    F_PHASE,     /* bool warmup (+ bool ramp): "ramp" | "warmup" | "measure" */
    F_TOKSRC,    /* bool tokens_from_usage: "usage" | "counted" */
    F_ERRKIND,   /* enum sb_error_kind: null for NONE */
    F_BOOL_NULL, /* signed char: -1 null, 0 false, 1 true */
};

struct field {
    const char *name;
    const char *lit; /* ,"name": */
    size_t name_len, lit_len;
    enum field_type type;
    size_t off, size;
};

#define FIELD_AS(key, member, t)                                                                   \
    {                                                                                              \
        key, ",\"" key "\":", sizeof(key) - 1, sizeof(",\"" key "\":") - 1, t,                     \
            offsetof(struct sb_record, member), sizeof(((struct sb_record *)0)->member)            \
    }
#define FIELD(member, t) FIELD_AS(#member, member, t)

/* In the order they are written. */
static const struct field fields[] = {
    FIELD(run_id, F_STR),
    FIELD(ts, F_EXACT),
    FIELD(stack, F_STR),
    FIELD(model, F_STR),
    FIELD(workload, F_STR),
    FIELD(hypothesis, F_STR),
    FIELD_AS("phase", warmup, F_PHASE),
    FIELD(phase_label, F_STR_OMIT),
    FIELD(repetition, F_LL),
    FIELD(context_tokens, F_LL),
    FIELD(context_tokens_nominal, F_LL),
    FIELD(concurrency, F_LL_NULL),
    FIELD(max_inflight, F_LL_NULL),
    FIELD(rate, F_EXACT),
    FIELD(user, F_LL),
    FIELD(req_idx, F_LL),
    FIELD(seq, F_LL),
    FIELD(request_id, F_STR),
    FIELD(response_id, F_STR_NULL),
    FIELD(nonce, F_STR_NULL),
    FIELD(prompt_hash, F_STR),
    FIELD(adapter, F_STR_NULL),
    FIELD(adapter_use, F_LL_NULL),
    FIELD(rc, F_INT),
    FIELD(ok, F_BOOL),
    FIELD(error, F_ERRKIND),
    FIELD(error_msg, F_STR_NULL),
    FIELD(retried, F_BOOL),
    FIELD(t_sched_ns, F_U64),
    FIELD(t_send_ns, F_U64),
    FIELD(t_first_byte_ns, F_U64),
    FIELD(t_first_event_ns, F_U64),
    FIELD(t_first_token_ns, F_U64),
    FIELD(t_last_byte_ns, F_U64),
    FIELD(server_recv_ns, F_U64),
    FIELD(server_first_token_ns, F_U64),
    FIELD(lat_ttft_ms, F_MS),
    FIELD(lat_ttfb_ms, F_MS),
    FIELD(lat_first_chunk_ms, F_MS),
    FIELD(lat_e2e_ms, F_MS),
    FIELD(lat_sched_delay_ms, F_MS),
    FIELD(itl_mean_ms, F_MS),
    FIELD(itl_p50_ms, F_MS),
    FIELD(itl_p99_ms, F_MS),
    FIELD(itl_max_ms, F_MS),
    FIELD(tpot_ms, F_MS),
    FIELD(output_tokens, F_LL),
    FIELD_AS("tokens_src", tokens_from_usage, F_TOKSRC),
    FIELD(content_chunks, F_LL),
    FIELD(prompt_tokens, F_LL_NULL),
    FIELD(prompt_tokens_client, F_LL_NULL),
    FIELD(cached_tokens, F_LL_NULL),
    FIELD(cached_src, F_STR_NULL),
    FIELD(finish_reason, F_STR_NULL),
    FIELD(server_prompt_n, F_LL_NULL),
    FIELD(server_prompt_ms, F_MS),
    FIELD(server_predicted_n, F_LL_NULL),
    FIELD(server_decode_ms, F_MS),
    FIELD(server_cache_n, F_LL_NULL),
    FIELD(server_queue_ms, F_MS),
    FIELD(server_timings_src, F_STR_NULL),
    FIELD(server_truncated, F_FLAG),
    FIELD(session, F_LL_NULL),
    FIELD(turn, F_LL_NULL),
    FIELD(history_tokens, F_LL_NULL),
    FIELD(new_tokens, F_LL_NULL),
    FIELD(reusable_tokens, F_LL_NULL),
    FIELD(reuse_distance_tokens, F_LL_NULL),
    FIELD(idle_ms, F_MS),
    FIELD(parked, F_BOOL_NULL),
    FIELD(trace_idx, F_LL_NULL),
};

#define AT(r, f, type)  ((type *)(void *)((char *)(r) + (f)->off))
#define CAT(r, f, type) ((const type *)(const void *)((const char *)(r) + (f)->off))

/* ---- writer ---- */

/*
 * The longest line: every string field escaped at 6 bytes a byte (\u00XX), plus keys and numbers.
 * sizeof(struct sb_record) * 6 bounds the strings with room to spare for the rest.
 */
#define LINE_MAX_BYTES (sizeof(struct sb_record) * 6 + 4096)

struct out {
    char *p, *end;
};

static void put(struct out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->p = o->end + 1; /* marks overflow; nothing more is written */
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static char *fmt_u64(char *end, uint64_t v)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

static void put_u64(struct out *o, uint64_t v, bool neg)
{
    char tmp[24];
    char *p = fmt_u64(tmp + sizeof(tmp), v);
    if (neg)
        *--p = '-';
    put(o, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void put_ll(struct out *o, long long v)
{
    /* 0 - (unsigned)v is well defined for LLONG_MIN too. */
    put_u64(o, v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v, v < 0);
}

static void put_printf6(struct out *o, double v)
{
    char tmp[400]; /* %.6f of DBL_MAX is 316 characters */
    int n = snprintf(tmp, sizeof(tmp), "%.6f", v);
    if (n > 0 && (size_t)n < sizeof(tmp))
        put(o, tmp, (size_t)n);
    else
        o->p = o->end + 1;
}

/*
 * Six decimals, like "%.6f" but without printf's cost: below 1e9 the value times 1e6 is an exact
 * enough integer (< 2^53) that rounding it gives the same digits as printf except, rarely, in the
 * last place of a tie; either way the text is within 1e-6 of v.
 */
static void put_fixed6(struct out *o, double v)
{
    double a = fabs(v);
    if (!(a < 1e9)) {
        put_printf6(o, v);
        return;
    }
    uint64_t u = (uint64_t)llround(a * 1e6);
    char tmp[32];
    char *end = tmp + sizeof(tmp);
    uint64_t frac = u % 1000000;
    char *p = end;
    for (int i = 0; i < 6; i++) {
        *--p = (char)('0' + frac % 10);
        frac /= 10;
    }
    *--p = '.';
    p = fmt_u64(p, u / 1000000);
    if (signbit(v))
        *--p = '-';
    put(o, p, (size_t)(end - p));
}

/* Fallback for put_exact: the shorter of %.15g / %.17g that reads back as the same double. */
static void put_exact_slow(struct out *o, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (n <= 0 || (size_t)n >= sizeof(tmp) || strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    if (n > 0 && (size_t)n < sizeof(tmp))
        put(o, tmp, (size_t)n);
    else
        o->p = o->end + 1;
}

/*
 * A decimal that reads back as exactly v, without printf or strtod for the values records hold
 * (unix seconds, integral rates). For 64 <= |v| < 2^53 with binary exponent e (|v| in
 * [2^(e-1), 2^e)) the spacing of doubles is ulp = 2^(e-53). Printing the fraction with
 * d = ceil((53-e)*log10(2)) + 1 digits puts 10^-d below ulp/10; the fraction (exact, as
 * v - floor(v) is) times 10^d (< 10^15) is off by at most 0.12 after the multiply, so the rounded
 * digits are within 0.62 * 10^-d < ulp/2 of v and strtod returns v. Trailing zeros are dropped.
 */
static void put_exact(struct out *o, double v)
{
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = fabs(v);
    if (!(a < 9007199254740992.0)) { /* 2^53 */
        put_exact_slow(o, v);
        return;
    }
    double ip = floor(a);
    if (ip == a) {
        put_u64(o, (uint64_t)a, signbit(v)); /* -0.0 as "-0" */
        return;
    }
    if (a < 64.0) {
        put_exact_slow(o, v);
        return;
    }
    int e;
    frexp(a, &e);
    int d = (int)ceil((53 - e) * 0.30102999566398120) + 1;
    if (d > 15) {
        put_exact_slow(o, v);
        return;
    }
    uint64_t whole = (uint64_t)ip;
    /* No carry into `whole`: the fraction is at most 1 - ulp, and 10^-d < ulp/10. */
    uint64_t frac = (uint64_t)llround((a - ip) * pow10[d]);
    while (d > 0 && frac % 10 == 0) {
        frac /= 10;
        d--;
    }
    char tmp[48];
    char *end = tmp + sizeof(tmp);
    char *p = end;
    for (int i = 0; i < d; i++) {
        *--p = (char)('0' + frac % 10);
        frac /= 10;
    }
    if (d > 0)
        *--p = '.';
    p = fmt_u64(p, whole);
    if (signbit(v))
        *--p = '-';
    put(o, p, (size_t)(end - p));
}

/* Plain ASCII text (the usual case) is copied; anything needing an escape, and any non-ASCII
   byte (which sb_json_escape checks is UTF-8, replacing what is not), goes through
   sb_json_escape. */
static bool needs_escape(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
            return true;
    }
    return false;
}

static void put_jstr(struct out *o, const char *s, size_t len)
{
    put(o, "\"", 1);
    if (o->p > o->end)
        return;
    if (!needs_escape(s, len)) {
        put(o, s, len);
        put(o, "\"", 1);
        return;
    }
    size_t room = (size_t)(o->end - o->p);
    size_t n = sb_json_escape(o->p, room, s, len);
    if (n >= room) { /* sb_json_escape needs room for its NUL too */
        o->p = o->end + 1;
        return;
    }
    o->p += n;
    put(o, "\"", 1);
}

int sb_record_to_json(const struct sb_record *r, struct sb_buf *out)
{
    char line[LINE_MAX_BYTES];
    struct out o = {line, line + sizeof(line)};
    put(&o, "{", 1);
    for (size_t i = 0; i < SB_ARRAY_SIZE(fields); i++) {
        const struct field *f = &fields[i];
        const char *s = NULL;
        size_t slen = 0;
        if (f->type == F_STR || f->type == F_STR_NULL || f->type == F_STR_OMIT) {
            s = CAT(r, f, char);
            slen = strnlen(s, f->size);
            if (slen == 0 && f->type == F_STR_OMIT)
                continue;
        }
        /* The first field has no leading comma. */
        if (i == 0)
            put(&o, f->lit + 1, f->lit_len - 1);
        else
            put(&o, f->lit, f->lit_len);
        switch (f->type) {
        case F_STR:
        case F_STR_OMIT:
            put_jstr(&o, s, slen);
            break;
        case F_STR_NULL:
            if (slen == 0)
                put(&o, "null", 4);
            else
                put_jstr(&o, s, slen);
            break;
        case F_LL:
            put_ll(&o, *CAT(r, f, long long));
            break;
        case F_LL_NULL: {
            long long v = *CAT(r, f, long long);
            if (v == -1)
                put(&o, "null", 4);
            else
                put_ll(&o, v);
            break;
        }
        case F_U64: {
            uint64_t v = *CAT(r, f, uint64_t);
            if (v == 0)
                put(&o, "null", 4);
            else
                put_u64(&o, v, false);
            break;
        }
        case F_MS:
        case F_EXACT: {
            double v = *CAT(r, f, double);
            if (!isfinite(v))
                put(&o, "null", 4);
            else if (f->type == F_MS)
                put_fixed6(&o, v);
            else
                put_exact(&o, v);
            break;
        }
        case F_INT:
            put_ll(&o, *CAT(r, f, int));
            break;
        case F_BOOL:
        case F_FLAG:
            if (*CAT(r, f, bool))
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            break;
        case F_BOOL_NULL: {
            signed char v = *CAT(r, f, signed char);
            if (v < 0)
                put(&o, "null", 4);
            else if (v)
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            break;
        }
        case F_PHASE:
            if (r->prime)
                put(&o, "\"prime\"", 7);
            else if (r->ramp)
                put(&o, "\"ramp\"", 6);
            else if (*CAT(r, f, bool))
                put(&o, "\"warmup\"", 8);
            else
                put(&o, "\"measure\"", 9);
            break;
        case F_TOKSRC:
            if (*CAT(r, f, bool))
                put(&o, "\"usage\"", 7);
            else
                put(&o, "\"counted\"", 9);
            break;
        case F_ERRKIND: {
            enum sb_error_kind k = *CAT(r, f, enum sb_error_kind);
            if (k == SB_ERRK_NONE) {
                put(&o, "null", 4);
            } else {
                const char *name = sb_error_kind_name(k);
                put_jstr(&o, name, strlen(name));
            }
            break;
        }
        }
    }
    put(&o, "}\n", 2);
    if (o.p > o.end)
        return -1;
    return sb_buf_add(out, line, (size_t)(o.p - line));
}

/* ---- reader: a strict scanner for one flat JSON object ---- */

#define MAX_DEPTH 64

struct scan {
    const char *start, *p, *end;
    const char *what; /* why scanning stopped, for the error message */
};

static int fail(struct scan *s, const char *what)
{
    if (!s->what)
        s->what = what;
    return -1;
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(struct scan *s, unsigned *out)
{
    if (s->end - s->p < 4)
        return fail(s, "a bad \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *s->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(s, "a bad \\u escape");
    }
    *out = v;
    return 0;
}

/* Where a decoded string goes: cap bytes including the NUL; dst NULL to only validate. */
struct sink {
    char *dst;
    size_t cap, len;
    bool truncated;
};

static void emit(struct sink *k, const char *b, size_t n)
{
    if (!k->dst)
        return;
    if (k->truncated || k->len + n + 1 > k->cap) {
        k->truncated = true; /* keep whole characters only */
        return;
    }
    memcpy(k->dst + k->len, b, n);
    k->len += n;
}

static size_t utf8_encode(unsigned cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* s->p at the opening quote. Raw UTF-8 is copied through in whole characters. */
static int scan_string(struct scan *s, struct sink *k)
{
    s->p++;
    for (;;) {
        const char *run = s->p;
        while (s->p < s->end && *s->p != '"' && *s->p != '\\' && (unsigned char)*s->p >= 0x20)
            s->p++;
        /* Copy the plain run a character at a time only when it does not fit. */
        if (k->dst && !k->truncated && k->len + (size_t)(s->p - run) + 1 > k->cap) {
            const char *q = run;
            while (q < s->p) {
                size_t cl = 1;
                unsigned char c = (unsigned char)*q;
                if (c >= 0xf0)
                    cl = 4;
                else if (c >= 0xe0)
                    cl = 3;
                else if (c >= 0xc0)
                    cl = 2;
                if (cl > (size_t)(s->p - q))
                    cl = (size_t)(s->p - q);
                emit(k, q, cl);
                q += cl;
            }
        } else {
            emit(k, run, (size_t)(s->p - run));
        }
        if (s->p >= s->end)
            return fail(s, "an unterminated string");
        char c = *s->p;
        if (c == '"') {
            s->p++;
            if (k->dst)
                k->dst[k->len] = '\0';
            return 0;
        }
        if (c != '\\')
            return fail(s, "a control character in a string");
        s->p++;
        if (s->p >= s->end)
            return fail(s, "an unterminated string");
        char e = *s->p++;
        char b[4];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            emit(k, &e, 1);
            break;
        case 'b':
            emit(k, "\b", 1);
            break;
        case 'f':
            emit(k, "\f", 1);
            break;
        case 'n':
            emit(k, "\n", 1);
            break;
        case 'r':
            emit(k, "\r", 1);
            break;
        case 't':
            emit(k, "\t", 1);
            break;
        case 'u': {
            unsigned cp = 0; /* hex4() sets it when it returns 0; clang's analyzer loses that */
            if (hex4(s, &cp) != 0)
                return -1;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(s, "a lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo = 0;
                if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                    return fail(s, "a lone high surrogate");
                s->p += 2;
                if (hex4(s, &lo) != 0)
                    return -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(s, "a lone high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            emit(k, b, utf8_encode(cp, b));
            break;
        }
        default:
            return fail(s, "a bad escape");
        }
    }
}

/* JSON number grammar; [*tok, s->p) is the text; *integer when it has no fraction or exponent. */
static int scan_number(struct scan *s, const char **tok, bool *integer)
{
    const char *p = s->p;
    *tok = p;
    *integer = true;
    if (p < s->end && *p == '-')
        p++;
    if (p >= s->end || *p < '0' || *p > '9')
        return fail(s, "a bad number");
    if (*p == '0')
        p++;
    else
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    if (p < s->end && *p == '.') {
        *integer = false;
        p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, "a bad number");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        *integer = false;
        p++;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= s->end || *p < '0' || *p > '9')
            return fail(s, "a bad number");
        while (p < s->end && *p >= '0' && *p <= '9')
            p++;
    }
    s->p = p;
    return 0;
}

static int scan_literal(struct scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return fail(s, "an unexpected character");
    s->p += n;
    return 0;
}

/* Validates and skips any value (nested objects and arrays included). */
static int skip_value(struct scan *s, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(s, "nesting too deep");
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, "a missing value");
    struct sink none = {0};
    const char *tok;
    bool integer;
    switch (*s->p) {
    case '"':
        return scan_string(s, &none);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    case '{':
    case '[': {
        char close = *s->p == '{' ? '}' : ']';
        bool obj = close == '}';
        s->p++;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (obj) {
                skip_ws(s);
                if (s->p >= s->end || *s->p != '"')
                    return fail(s, "a missing key");
                if (scan_string(s, &none) != 0)
                    return -1;
                skip_ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return fail(s, "a missing ':'");
                s->p++;
            }
            if (skip_value(s, depth + 1) != 0)
                return -1;
            skip_ws(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                continue;
            }
            if (s->p < s->end && *s->p == close) {
                s->p++;
                return 0;
            }
            return fail(s, obj ? "a missing ',' or '}'" : "a missing ',' or ']'");
        }
    }
    default:
        return scan_number(s, &tok, &integer);
    }
}

/* A scanned scalar: what kind, and where its text or decoded string is. */
enum vkind { V_NULL, V_BOOL, V_NUM, V_STR, V_OTHER };

struct value {
    enum vkind kind;
    bool b;
    const char *tok; /* V_NUM: the number's text */
    size_t toklen;
    bool integer;
};

static int parse_ll_text(const char *tok, size_t n, bool integer, long long *out)
{
    char tmp[64];
    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, tok, n);
    tmp[n] = '\0';
    if (integer) {
        errno = 0;
        char *end;
        long long v = strtoll(tmp, &end, 10);
        if (errno || *end)
            return -1;
        *out = v;
        return 0;
    }
    /* 4096.0 from a Python float is still a count. */
    double d = strtod(tmp, NULL);
    if (!(d >= -9.2e18 && d <= 9.2e18) || d != floor(d))
        return -1;
    *out = (long long)d;
    return 0;
}

static int parse_u64_text(const char *tok, size_t n, bool integer, uint64_t *out)
{
    char tmp[64];
    if (n >= sizeof(tmp) || tok[0] == '-')
        return -1;
    memcpy(tmp, tok, n);
    tmp[n] = '\0';
    if (integer) {
        errno = 0;
        char *end;
        unsigned long long v = strtoull(tmp, &end, 10);
        if (errno || *end)
            return -1;
        *out = v;
        return 0;
    }
    double d = strtod(tmp, NULL);
    if (!(d >= 0 && d < 1.8e19) || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static double parse_double_text(const char *tok, size_t n)
{
    char tmp[400];
    if (n >= sizeof(tmp))
        return NAN; /* not reached for any sane number; strtod needs a terminated copy */
    memcpy(tmp, tok, n);
    tmp[n] = '\0';
    return strtod(tmp, NULL);
}

static const struct field *find_field(const char *key, size_t len)
{
    for (size_t i = 0; i < SB_ARRAY_SIZE(fields); i++)
        if (fields[i].name_len == len && memcmp(fields[i].name, key, len) == 0)
            return &fields[i];
    return NULL;
}

struct parse_state {
    bool rc_from_word; /* rc was "ok"/"error" */
    bool have_ok;
};

/* Stores one value; the string of a string value is already decoded into sbuf. */
static int store(struct sb_record *r, const struct field *f, const struct value *v,
                 const char *sbuf, struct parse_state *ps, struct sb_err *err)
{
    bool is_null = v->kind == V_NULL;
    switch (f->type) {
    case F_STR:
    case F_STR_NULL:
    case F_STR_OMIT:
        if (is_null) {
            AT(r, f, char)[0] = '\0';
            return 0;
        }
        if (v->kind != V_STR)
            break;
        return 0; /* already decoded into the field, cut at a character boundary if too long */
    case F_LL:
    case F_LL_NULL:
        if (is_null) {
            if (f->type == F_LL_NULL)
                *AT(r, f, long long) = -1;
            return 0;
        }
        if (v->kind != V_NUM)
            break;
        if (parse_ll_text(v->tok, v->toklen, v->integer, AT(r, f, long long)) != 0)
            return sb_err_set(err, "field '%s' is not an integer in range", f->name);
        return 0;
    case F_U64:
        if (is_null) {
            *AT(r, f, uint64_t) = 0;
            return 0;
        }
        if (v->kind != V_NUM)
            break;
        if (parse_u64_text(v->tok, v->toklen, v->integer, AT(r, f, uint64_t)) != 0)
            return sb_err_set(err, "field '%s' is not a non-negative integer", f->name);
        return 0;
    case F_MS:
    case F_EXACT:
        if (is_null) {
            *AT(r, f, double) = NAN;
            return 0;
        }
        if (v->kind == V_NUM) {
            *AT(r, f, double) = parse_double_text(v->tok, v->toklen);
            return 0;
        }
        if (v->kind == V_STR && f->off == offsetof(struct sb_record, ts)) {
            if (sb_parse_iso8601(sbuf, &r->ts) != 0)
                return sb_err_set(err, "field 'ts' is not a number or an ISO-8601 time: '%s'",
                                  sbuf);
            return 0;
        }
        break;
    case F_INT: {
        if (is_null)
            return 0;
        if (v->kind == V_STR) {
            /* The Python harness wrote rc as "ok" / "error". */
            if (strcmp(sbuf, "ok") == 0 || strcmp(sbuf, "error") == 0) {
                bool ok = sbuf[0] == 'o';
                r->rc = ok ? 200 : 0;
                if (!ps->have_ok)
                    r->ok = ok;
                ps->rc_from_word = true;
                return 0;
            }
            return sb_err_set(err, "field 'rc' is neither a status code nor \"ok\"/\"error\": '%s'",
                              sbuf);
        }
        long long rc;
        if (v->kind != V_NUM)
            break;
        if (parse_ll_text(v->tok, v->toklen, v->integer, &rc) != 0 || rc < -2147483647 ||
            rc > 2147483647)
            return sb_err_set(err, "field 'rc' is not an integer in range");
        r->rc = (int)rc;
        return 0;
    }
    case F_BOOL:
        if (is_null)
            return 0;
        if (v->kind != V_BOOL)
            break;
        *AT(r, f, bool) = v->b;
        if (AT(r, f, bool) == &r->ok)
            ps->have_ok = true;
        return 0;
    case F_FLAG:
        if (is_null)
            return 0;
        if (v->kind != V_BOOL)
            break;
        *AT(r, f, bool) = v->b;
        return 0;
    case F_BOOL_NULL:
        if (is_null) {
            *AT(r, f, signed char) = -1;
            return 0;
        }
        if (v->kind != V_BOOL)
            break;
        *AT(r, f, signed char) = v->b ? 1 : 0;
        return 0;
    case F_PHASE:
        if (is_null)
            return 0;
        if (v->kind != V_STR)
            break;
        r->ramp = strcmp(sbuf, "ramp") == 0;
        r->prime = strcmp(sbuf, "prime") == 0;
        *AT(r, f, bool) = r->ramp || r->prime || strcmp(sbuf, "warmup") == 0;
        return 0;
    case F_TOKSRC:
        if (is_null)
            return 0;
        if (v->kind != V_STR)
            break;
        *AT(r, f, bool) = strcmp(sbuf, "usage") == 0;
        return 0;
    case F_ERRKIND: {
        if (is_null) {
            r->error = SB_ERRK_NONE;
            return 0;
        }
        if (v->kind != V_STR)
            break;
        enum sb_error_kind k = sb_error_kind_from_name(sbuf);
        if (k == SB_ERRK_COUNT) {
            /* An older or foreign error word: keep it readable as the message. */
            r->error = SB_ERRK_TRANSPORT;
            if (!r->error_msg[0])
                snprintf(r->error_msg, sizeof(r->error_msg), "%s", sbuf);
        } else {
            r->error = k;
        }
        return 0;
    }
    }
    return sb_err_set(err, "field '%s' has the wrong type", f->name);
}

/* Scans one scalar value into v; strings are decoded into dst (cap bytes). */
static int scan_scalar(struct scan *s, struct value *v, struct sink *k)
{
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, "a missing value");
    memset(v, 0, sizeof(*v));
    switch (*s->p) {
    case '"':
        v->kind = V_STR;
        return scan_string(s, k);
    case 't':
        v->kind = V_BOOL;
        v->b = true;
        return scan_literal(s, "true");
    case 'f':
        v->kind = V_BOOL;
        return scan_literal(s, "false");
    case 'n':
        v->kind = V_NULL;
        return scan_literal(s, "null");
    case '{':
    case '[':
        v->kind = V_OTHER;
        return skip_value(s, 1);
    default:
        v->kind = V_NUM;
        if (scan_number(s, &v->tok, &v->integer) != 0)
            return -1;
        v->toklen = (size_t)(s->p - v->tok);
        return 0;
    }
}

static bool is_string_field(const struct field *f)
{
    return f->type == F_STR || f->type == F_STR_NULL || f->type == F_STR_OMIT;
}

int sb_record_from_json(const char *line, size_t len, struct sb_record *r, struct sb_err *err)
{
    sb_record_init(r);
    struct scan s = {line, line, line + len, NULL};
    struct parse_state ps = {0};
    /* Scratch for string values that are not stored as they are (phase, rc, ts, error). */
    char word[SB_ERR_MSG_MAX / 2];
    skip_ws(&s);
    if (s.p >= s.end)
        return sb_err_set(err, "empty line, not a JSON object");
    if (*s.p != '{') {
        /* Tell "valid JSON but not an object" from garbage. */
        if (skip_value(&s, 0) == 0) {
            skip_ws(&s);
            if (s.p == s.end)
                return sb_err_set(err, "not a JSON object");
            fail(&s, "text after the value");
        }
        goto bad;
    }
    s.p++;
    skip_ws(&s);
    bool first = true;
    if (s.p < s.end && *s.p == '}') {
        s.p++;
        goto tail;
    }
    for (;;) {
        skip_ws(&s);
        if (s.p >= s.end || *s.p != '"') {
            fail(&s, first ? "a missing key or '}'" : "a missing key");
            goto bad;
        }
        first = false;
        char key[64];
        struct sink kk = {key, sizeof(key), 0, false};
        if (scan_string(&s, &kk) != 0)
            goto bad;
        skip_ws(&s);
        if (s.p >= s.end || *s.p != ':') {
            fail(&s, "a missing ':'");
            goto bad;
        }
        s.p++;
        const struct field *f = kk.truncated ? NULL : find_field(key, kk.len);
        if (!f) {
            if (skip_value(&s, 1) != 0)
                goto bad;
        } else {
            struct value v;
            struct sink vk;
            if (is_string_field(f))
                vk = (struct sink){AT(r, f, char), f->size, 0, false};
            else
                vk = (struct sink){word, sizeof(word), 0, false};
            if (scan_scalar(&s, &v, &vk) != 0)
                goto bad;
            if (store(r, f, &v, vk.dst, &ps, err) != 0)
                return -1;
        }
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        fail(&s, "a missing ',' or '}'");
        goto bad;
    }
tail:
    skip_ws(&s);
    if (s.p != s.end) {
        fail(&s, "text after the object");
        goto bad;
    }
    return 0;
bad:
    return sb_err_set(err, "invalid JSON at byte %zu: %s", (size_t)(s.p - s.start) + 1,
                      s.what ? s.what : "unexpected input");
}
