/*
 * Unit tests for the SSE push parser (sb/sse.h). A table of server captures and hand-made streams,
 * each fed whole, one byte at a time, split at every offset into two feeds, split at every pair
 * of offsets (short streams), and cut at random places; every way must give the same events, feed
 * result and finish result. Each piece is fed from its own exact-size allocation so that the
 * sanitizer build catches any read past the bytes handed over. Then the callback stop, the size
 * limit with a 10 MB hostile stream, and reuse after reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sb/sse.h"
#include "sb/util.h"

#define DEFAULT_MAX (64u << 10)
#define MAX_WANT    12
#define MAX_GOT     64
#define PAIR_LIMIT  256 /* streams up to this length are also split at every pair of offsets */

/* One expected event; type is "" for none, data NULL for has_data false, comment and error NULL
   for none. */
struct want {
    const char *type;
    const char *data;
    const char *comment;
    const char *error;
};

struct sse_case {
    const char *name;
    const char *file; /* fixture under tests/data/sse/, or NULL to use text */
    const char *text;
    size_t max;               /* max_event_bytes; 0 means DEFAULT_MAX */
    int feed_rc;              /* the first non-zero sb_sse_feed() result expected, 0 for none */
    int finish_rc;            /* what sb_sse_finish() returns */
    uint64_t comments;        /* comment lines counted (checked when feed_rc is 0) */
    struct want ev[MAX_WANT]; /* ends at the first entry whose type is NULL */
};

/* Common prefixes of the captured chunks (the fixtures hold them in full). */
#define VLLM_HEAD                                                                                  \
    "{\"id\":\"chatcmpl-8f3c2a1b9d0e4c7fa6b5e4d3c2b1a098\",\"object\":\"chat.completion.chunk\","  \
    "\"created\":1733312345,\"model\":\"meta-llama/Llama-3.1-8B-Instruct\","
#define TRT_HEAD                                                                                   \
    "{\"id\":\"chatcmpl-1d2e3f4a5b6c\",\"object\":\"chat.completion.chunk\",\"created\":"          \
    "1733312345,\"model\":\"llama-3.1-8b\","
#define DYN_HEAD                                                                                   \
    "{\"id\":\"chatcmpl-0a1b2c3d\",\"object\":\"chat.completion.chunk\",\"created\":1733312345,"   \
    "\"model\":\"Qwen/Qwen3-0.6B\","
#define DELTA(d, fr)                                                                               \
    "\"choices\":[{\"index\":0,\"delta\":" d ",\"logprobs\":null,\"finish_reason\":" fr "}]}"

/* The same two events in every line-ending style. */
/* clang-format off */
#define TWO_EVENTS {"a", "1", NULL}, {"", "2\n3", NULL}
/* clang-format on */

static const struct sse_case cases[] = {
    /* ---- server captures ---- */
    {.name = "vllm chat: role chunk, content, usage, [DONE]",
     .file = "vllm_chat_usage.sse",
     .ev = {{"", VLLM_HEAD DELTA("{\"role\":\"assistant\",\"content\":\"\"}", "null"), NULL},
            {"", VLLM_HEAD DELTA("{\"content\":\"Hello\"}", "null"), NULL},
            {"", VLLM_HEAD DELTA("{\"content\":\", w\xc3\xb6rld \xf0\x9f\x8c\x8d\"}", "null"),
             NULL},
            {"", VLLM_HEAD DELTA("{\"content\":\"!\"}", "\"stop\""), NULL},
            {"",
             VLLM_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":17,"
                       "\"completion_tokens\":5}}",
             NULL},
            {"", "[DONE]", NULL}}},
    {.name = "trt-llm: first chunk keeps its trailing space",
     .file = "trtllm_chat_first_chunk.sse",
     .ev = {{"", TRT_HEAD DELTA("{\"role\":\"assistant\",\"content\":null}", "null") " ", NULL},
            {"", TRT_HEAD DELTA("{\"content\":\"Hi\"}", "null"), NULL},
            {"", TRT_HEAD DELTA("{\"content\":\" there\"}", "\"length\""), NULL},
            {"",
             TRT_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"total_tokens\":9,"
                      "\"completion_tokens\":2}}",
             NULL},
            {"", "[DONE]", NULL}}},
    {.name = "dynamo: event: error with a comment and no data",
     .file = "dynamo_error_event.sse",
     .comments = 1,
     .ev = {{"", DYN_HEAD DELTA("{\"role\":\"assistant\",\"content\":\"\"}", "null"), NULL},
            {"", DYN_HEAD DELTA("{\"content\":\"The\"}", "null"), NULL},
            {"error", NULL, "Stream ended before generation completed: worker disconnected"}}},
    {.name = "dynamo order: comment before event: error",
     .text = ": backend failed\nevent: error\n\n",
     .comments = 1,
     .ev = {{"error", NULL, "backend failed"}}},
    {.name = "llama.cpp: an error field, then [DONE]",
     .text = "error: {\"code\":400,\"message\":\"the request exceeds the available context "
             "size, try increasing it\",\"type\":\"exceed_context_size_error\"}\n\n"
             "data: [DONE]\n\n",
     .ev = {{"", NULL, NULL,
             "{\"code\":400,\"message\":\"the request exceeds the available context size, try "
             "increasing it\",\"type\":\"exceed_context_size_error\"}"},
            {"", "[DONE]", NULL, NULL}}},
    {.name = "error field beside data, the last one kept, and an empty one",
     .text = "error: a\nerror: b\ndata: x\n\nerror\n\n",
     .ev = {{"", "x", NULL, "b"}, {"", NULL, NULL, ""}}},
    {.name = "error field without its blank line is discarded",
     .text = "data: 1\n\nerror: cut",
     .finish_rc = 1,
     .ev = {{"", "1", NULL, NULL}}},
    {.name = "event: error with data",
     .text = "event: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n",
     .ev = {{"error", "{\"error\":{\"message\":\"x\"}}", NULL}}},

    /* ---- line endings ---- */
    {.name = "lf only", .text = "event: a\ndata: 1\n\ndata: 2\ndata: 3\n\n", .ev = {TWO_EVENTS}},
    {.name = "crlf",
     .text = "event: a\r\ndata: 1\r\n\r\ndata: 2\r\ndata: 3\r\n\r\n",
     .ev = {TWO_EVENTS}},
    {.name = "cr only", .text = "event: a\rdata: 1\r\rdata: 2\rdata: 3\r\r", .ev = {TWO_EVENTS}},
    {.name = "mixed endings",
     .text = "event: a\r\ndata: 1\n\rdata: 2\rdata: 3\r\n\n",
     .ev = {TWO_EVENTS}},
    {.name = "lf cr is two line ends", .text = "data: x\n\r", .ev = {{"", "x", NULL}}},
    {.name = "cr cr at the very end", .text = "data: x\r\r", .ev = {{"", "x", NULL}}},
    {.name = "crlf crlf counts once each",
     .text = "data: a\r\n\r\n\r\ndata: b\r\n\r\n",
     .ev = {{"", "a", NULL}, {"", "b", NULL}}},

    /* ---- fields ---- */
    {.name = "multi-line data joined with newline",
     .text = "data: line1\ndata: line2\ndata:\ndata: line4\n\n",
     .ev = {{"", "line1\nline2\n\nline4", NULL}}},
    {.name = "comments ignored, the last one of the block exposed",
     .text = ": first\ndata: x\n:  last one \n\n:\n\ndata: y\n\n",
     .comments = 3,
     .ev = {{"", "x", " last one "}, {"", "y", NULL}}},
    {.name = "keep-alive comments only", .text = ": ping\n\n: ping\n\n", .comments = 2},
    {.name = "field without colon",
     .text = "data\n\nevent\ndata: z\n\n",
     .ev = {{"", "", NULL}, {"", "z", NULL}}},
    {.name = "data: without space", .text = "data:nospace\n\n", .ev = {{"", "nospace", NULL}}},
    {.name = "data: two spaces keeps one",
     .text = "data:  two spaces\n\n",
     .ev = {{"", " two spaces", NULL}}},
    {.name = "colons in the value", .text = "data: a:b: c\n\n", .ev = {{"", "a:b: c", NULL}}},
    {.name = "empty data line dispatches empty data", .text = "data:\n\n", .ev = {{"", "", NULL}}},
    {.name = "[DONE] is plain data", .text = "data: [DONE]\n\n", .ev = {{"", "[DONE]", NULL}}},
    {.name = "id and retry accepted and ignored",
     .text =
         "id: 42\nretry: 3000\nevent: update\ndata: payload\nid\nretry: x\n\nid: 7\n\nretry: 5\n\n",
     .ev = {{"update", "payload", NULL}}},
    {.name = "unknown and near-miss field names ignored",
     .text = "Data: a\ndata : b\ndatum: c\nfoo: d\nevents: e\n\n"},
    {.name = "event type alone dispatches",
     .text = "event: ping\n\n",
     .ev = {{"ping", NULL, NULL}}},
    {.name = "empty event type is no type", .text = "event:\n\nevent: x\nevent:\n\n"},
    {.name = "last event field wins",
     .text = "event: a\nevent: b\ndata: d\n\n",
     .ev = {{"b", "d", NULL}}},
    {.name = "several events and spare blank lines",
     .text = "\n\ndata: 1\n\n\n\ndata: 2\n\ndata: 3\n\n\n",
     .ev = {{"", "1", NULL}, {"", "2", NULL}, {"", "3", NULL}}},
    {.name = "utf-8 passes through",
     .text = "data: \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\n\n",
     .ev = {{"", "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80", NULL}}},

    /* ---- BOM ---- */
    {.name = "leading bom skipped",
     .text = "\xEF\xBB\xBF"
             "data: bom\n\n",
     .ev = {{"", "bom", NULL}}},
    {.name = "bom before a comment",
     .text = "\xEF\xBB\xBF: hi\ndata: x\n\n",
     .comments = 1,
     .ev = {{"", "x", "hi"}}},
    {.name = "only the first bom is skipped",
     .text = "\xEF\xBB\xBF\xEF\xBB\xBF"
             "data: x\n\ndata: y\n\n",
     .ev = {{"", "y", NULL}}},
    {.name = "bom later in the stream is content",
     .text = "data: a\n\n\xEF\xBB\xBF"
             "data: b\n\n",
     .ev = {{"", "a", NULL}}},
    {.name = "bom prefix that is no bom is content",
     .text = "\xEF\xBB"
             "data: x\n\ndata: y\n\n",
     .ev = {{"", "y", NULL}}},
    {.name = "bom only", .text = "\xEF\xBB\xBF"},
    {.name = "truncated bom at eof", .text = "\xEF\xBB", .finish_rc = 1},

    /* ---- end of stream ---- */
    {.name = "empty stream", .text = ""},
    {.name = "blank lines only", .text = "\n\r\n\r\r\n"},
    {.name = "complete stream", .text = "data: a\n\n", .ev = {{"", "a", NULL}}},
    {.name = "partial event at eof discarded",
     .text = "data: a\n\ndata: partial\n",
     .finish_rc = 1,
     .ev = {{"", "a", NULL}}},
    {.name = "unterminated line at eof discarded",
     .text = "data: a\n\ndata: parti",
     .finish_rc = 1,
     .ev = {{"", "a", NULL}}},
    {.name = "event type without blank line discarded", .text = "event: error\n", .finish_rc = 1},
    {.name = "trailing comment and id are no event",
     .text = "data: a\n\n: bye\nid: 3\n",
     .comments = 1,
     .ev = {{"", "a", NULL}}},

    /* ---- limits (max 16 bytes per line and per event's data) ---- */
    {.name = "line of exactly max",
     .text = "data:0123456789a\r\n\r\n",
     .max = 16,
     .ev = {{"", "0123456789a", NULL}}},
    {.name = "line over max",
     .text = "data: 1\n\ndata:0123456789ab\n\ndata: 3\n\n",
     .max = 16,
     .feed_rc = SB_SSE_E2BIG,
     .finish_rc = 1,
     .ev = {{"", "1", NULL}}},
    {.name = "joined data of exactly max",
     .text = "data:0123456789a\ndata:0123\n\n",
     .max = 16,
     .ev = {{"", "0123456789a\n0123", NULL}}},
    {.name = "joined data over max",
     .text = "data:0123456789a\ndata:01234\n\ndata: 3\n\n",
     .max = 16,
     .feed_rc = SB_SSE_E2BIG,
     .finish_rc = 1},
    {.name = "comment over max",
     .text = ": 0123456789abcdef\ndata: x\n\n",
     .max = 16,
     .feed_rc = SB_SSE_E2BIG,
     .finish_rc = 1},
    {.name = "unterminated line over max",
     .text = "data: 1\n\ndata: 0123456789abcdefghij",
     .max = 16,
     .feed_rc = SB_SSE_E2BIG,
     .finish_rc = 1,
     .ev = {{"", "1", NULL}}},
};

/* ---- recording callback ---- */

struct got {
    char *type, *data, *comment, *error;
    size_t type_len, data_len, comment_len, error_len;
    bool has_data;
};

struct recorder {
    struct got ev[MAX_GOT];
    size_t n;
    size_t stop_at; /* return stop_rc from this event on (1-based); 0 never */
    int stop_rc;
};

/* Copies a borrowed string, checking the promised NUL after it. */
static char *dup_borrowed(const char *s, size_t n)
{
    assert_non_null(s);
    assert_int_equal(s[n], '\0');
    char *c = malloc(n + 1);
    assert_non_null(c);
    memcpy(c, s, n + 1);
    return c;
}

static int record(const struct sb_sse_event *ev, void *arg)
{
    struct recorder *r = arg;
    assert_true(r->n < MAX_GOT);
    struct got *g = &r->ev[r->n++];
    g->type = dup_borrowed(ev->type, ev->type_len);
    g->type_len = ev->type_len;
    g->data = dup_borrowed(ev->data, ev->data_len);
    g->data_len = ev->data_len;
    g->has_data = ev->has_data;
    if (!ev->has_data)
        assert_int_equal(ev->data_len, 0);
    g->comment = ev->comment ? dup_borrowed(ev->comment, ev->comment_len) : NULL;
    g->comment_len = ev->comment_len;
    g->error = ev->error ? dup_borrowed(ev->error, ev->error_len) : NULL;
    g->error_len = ev->error_len;
    return r->stop_at && r->n >= r->stop_at ? r->stop_rc : 0;
}

static void recorder_free(struct recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].type);
        free(r->ev[i].data);
        free(r->ev[i].comment);
        free(r->ev[i].error);
    }
    r->n = 0;
}

/* ---- running a case ---- */

static char *load_fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/sse/%s", SB_TEST_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open fixture '%s'", path);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Feeds from an allocation of exactly n bytes (NULL for none), so over-reads are caught. */
static int feed_exact(struct sb_sse *p, const char *s, size_t n)
{
    if (n == 0)
        return sb_sse_feed(p, NULL, 0);
    char *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, s, n);
    int rc = sb_sse_feed(p, copy, n);
    free(copy);
    return rc;
}

static size_t want_count(const struct sse_case *c)
{
    size_t n = 0;
    while (n < MAX_WANT && c->ev[n].type)
        n++;
    return n;
}

static bool same(const char *want, const char *got, size_t got_len)
{
    return strlen(want) == got_len && memcmp(want, got, got_len) == 0;
}

static void compare(const struct sse_case *c, const struct recorder *r, const char *how)
{
    size_t n = want_count(c);
    if (r->n != n)
        fail_msg("'%s' (%s): %zu events, want %zu", c->name, how, r->n, n);
    for (size_t i = 0; i < n; i++) {
        const struct want *w = &c->ev[i];
        const struct got *g = &r->ev[i];
        if (!same(w->type, g->type, g->type_len))
            fail_msg("'%s' (%s) event %zu: type '%s', want '%s'", c->name, how, i, g->type,
                     w->type);
        if (w->data ? !g->has_data || !same(w->data, g->data, g->data_len) : g->has_data)
            fail_msg("'%s' (%s) event %zu: data %s'%s', want '%s'", c->name, how, i,
                     g->has_data ? "" : "(none) ", g->data, w->data ? w->data : "(none)");
        if (w->comment ? !g->comment || !same(w->comment, g->comment, g->comment_len)
                       : g->comment != NULL)
            fail_msg("'%s' (%s) event %zu: comment '%s', want '%s'", c->name, how, i,
                     g->comment ? g->comment : "(none)", w->comment ? w->comment : "(none)");
        if (w->error ? !g->error || !same(w->error, g->error, g->error_len) : g->error != NULL)
            fail_msg("'%s' (%s) event %zu: error '%s', want '%s'", c->name, how, i,
                     g->error ? g->error : "(none)", w->error ? w->error : "(none)");
    }
}

/*
 * Feeds s cut at the ascending offsets cuts[0..ncuts) and checks everything the case promises.
 * With reuse non-NULL that parser (whose callback argument is rec) is reset and used, else a
 * fresh one is made.
 */
static void run_cuts(const struct sse_case *c, const char *s, size_t len, const size_t *cuts,
                     size_t ncuts, const char *how, struct sb_sse *reuse, struct recorder *rec)
{
    struct recorder local = {.n = 0}, *r = reuse ? rec : &local;
    struct sb_sse fresh, *p = reuse ? reuse : &fresh;
    if (reuse)
        sb_sse_reset(p);
    else
        sb_sse_init(p, c->max ? c->max : DEFAULT_MAX, record, &local);
    int first = 0;
    size_t prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        int rc = feed_exact(p, s + prev, end - prev);
        if (first == 0)
            first = rc;
        else if (rc != first)
            fail_msg("'%s' (%s): feed returned %d after %d", c->name, how, rc, first);
        prev = end;
    }
    if (first != c->feed_rc)
        fail_msg("'%s' (%s): feed returned %d, want %d", c->name, how, first, c->feed_rc);
    int fin = sb_sse_finish(p);
    if (fin != c->finish_rc)
        fail_msg("'%s' (%s): finish returned %d, want %d", c->name, how, fin, c->finish_rc);
    compare(c, r, how);
    assert_int_equal(p->events, r->n);
    assert_int_equal(p->bytes, len);
    if (c->feed_rc == 0 && p->comments != c->comments)
        fail_msg("'%s' (%s): %llu comments, want %llu", c->name, how,
                 (unsigned long long)p->comments, (unsigned long long)c->comments);
    recorder_free(r);
    if (!reuse)
        sb_sse_release(p);
}

static void test_streams(void **state)
{
    (void)state;
    char how[64];
    for (size_t ci = 0; ci < SB_ARRAY_SIZE(cases); ci++) {
        const struct sse_case *c = &cases[ci];
        size_t len;
        char *s;
        if (c->file) {
            s = load_fixture(c->file, &len);
        } else {
            len = strlen(c->text);
            s = malloc(len + 1);
            assert_non_null(s);
            memcpy(s, c->text, len + 1);
        }

        /* (a) whole, then again on the same parser after reset */
        struct sb_sse reused;
        struct recorder dummy = {.n = 0};
        sb_sse_init(&reused, c->max ? c->max : DEFAULT_MAX, record, &dummy);
        run_cuts(c, s, len, NULL, 0, "whole", NULL, NULL);
        run_cuts(c, s, len, NULL, 0, "whole, reused", &reused, &dummy);
        run_cuts(c, s, len, NULL, 0, "whole, reused twice", &reused, &dummy);
        sb_sse_release(&reused);

        /* (b) one byte at a time */
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        run_cuts(c, s, len, cuts, len > 0 ? len - 1 : 0, "bytewise", NULL, NULL);

        /* (c) two feeds, split at every offset (0 and len give an empty feed) */
        for (size_t k = 0; k <= len; k++) {
            snprintf(how, sizeof(how), "split at %zu", k);
            run_cuts(c, s, len, &k, 1, how, NULL, NULL);
        }

        /* (d) three feeds, every pair of offsets, for short streams */
        if (len <= PAIR_LIMIT) {
            for (size_t a = 0; a <= len; a++) {
                for (size_t b = a; b <= len; b++) {
                    size_t two[2] = {a, b};
                    snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
                    run_cuts(c, s, len, two, 2, how, NULL, NULL);
                }
            }
        }

        /* (e) random cuts, including empty feeds */
        struct sb_rng rng;
        sb_rng_seed(&rng, 0x55e + ci);
        for (int round = 0; round < 50 && len > 0; round++) {
            size_t n = 0, at = 0;
            while (n < len) {
                at += (size_t)sb_rng_below(&rng, 8);
                if (at >= len)
                    break;
                cuts[n++] = at;
            }
            snprintf(how, sizeof(how), "random round %d", round);
            run_cuts(c, s, len, cuts, n, how, NULL, NULL);
        }
        free(cuts);
        free(s);
    }
}

/* ---- stopping from the callback ---- */

static void test_callback_stop(void **state)
{
    (void)state;
    static const char stream[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    const size_t len = sizeof(stream) - 1;
    struct recorder r = {.stop_at = 2, .stop_rc = 7};
    struct sb_sse p;
    sb_sse_init(&p, DEFAULT_MAX, record, &r);

    /* Stops after the second event; the third is never reported, and the parser stays stopped. */
    assert_int_equal(sb_sse_feed(&p, stream, len), 7);
    assert_int_equal(r.n, 2);
    assert_int_equal(p.events, 2);
    assert_int_equal(sb_sse_feed(&p, "data: 4\n\n", 9), 7);
    assert_int_equal(sb_sse_feed(&p, NULL, 0), 7);
    assert_int_equal(r.n, 2);
    assert_int_equal(sb_sse_finish(&p), 1); /* "data: 3" was dropped */
    recorder_free(&r);

    /* Reset clears the stop. */
    r.stop_at = 0;
    sb_sse_reset(&p);
    assert_int_equal(sb_sse_feed(&p, stream, len), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(sb_sse_finish(&p), 0);
    recorder_free(&r);

    /* A stop on the last event of the stream drops nothing, however the stream is split; the
     * stopping feed is the one that completed the event. */
    r.stop_at = 3;
    r.stop_rc = -100;
    for (size_t k = 0; k <= len; k++) {
        sb_sse_reset(&p);
        int rc1 = feed_exact(&p, stream, k);
        int rc2 = feed_exact(&p, stream + k, len - k);
        assert_int_equal(k == len ? rc1 : rc2, -100);
        if (k < len)
            assert_int_equal(rc1, 0);
        assert_int_equal(r.n, 3);
        assert_int_equal(sb_sse_finish(&p), 0);
        recorder_free(&r);
    }

    /* A stop in the middle, split at every offset: always two events, always -100. */
    r.stop_at = 2;
    for (size_t k = 0; k <= len; k++) {
        sb_sse_reset(&p);
        int rc1 = feed_exact(&p, stream, k);
        int rc2 = feed_exact(&p, stream + k, len - k);
        assert_int_equal(rc2, -100);
        assert_true(rc1 == 0 || rc1 == -100);
        assert_int_equal(r.n, 2);
        assert_int_equal(sb_sse_finish(&p), 1);
        recorder_free(&r);
    }
    sb_sse_release(&p);
}

/* ---- bounded memory ---- */

static void test_e2big_long_line(void **state)
{
    (void)state;
    const size_t big = 10u << 20, max = 64u << 10, chunk = 1024;
    char *x = malloc(big);
    assert_non_null(x);
    memset(x, 'x', big);
    memcpy(x, "data: ", 6);
    struct recorder r = {.n = 0};
    struct sb_sse p;
    sb_sse_init(&p, max, record, &r);

    /* Whole: refused before anything is copied. */
    assert_int_equal(sb_sse_feed(&p, x, big), SB_SSE_E2BIG);
    assert_int_equal(p.line.cap, 0);
    assert_int_equal(sb_sse_feed(&p, "\n\ndata: y\n\n", 11), SB_SSE_E2BIG);
    assert_int_equal(r.n, 0);
    assert_int_equal(sb_sse_finish(&p), 1);

    /* In 1 KB chunks: refused as soon as the line passes the limit; nothing grows after. */
    sb_sse_reset(&p);
    size_t off = 0;
    int rc = 0;
    while (off < big && rc == 0) {
        rc = sb_sse_feed(&p, x + off, chunk);
        off += chunk;
    }
    assert_int_equal(rc, SB_SSE_E2BIG);
    assert_true(off <= max + chunk);
    size_t cap = p.line.cap;
    assert_true(cap <= max + 1);
    for (; off < big; off += chunk)
        assert_int_equal(sb_sse_feed(&p, x + off, chunk), SB_SSE_E2BIG);
    assert_int_equal(p.line.cap, cap);
    assert_true(p.data.cap <= max + 1);
    assert_int_equal(p.bytes, big);
    assert_int_equal(r.n, 0);
    assert_int_equal(sb_sse_finish(&p), 1);

    /* The parser is usable again after a reset. */
    sb_sse_reset(&p);
    assert_int_equal(sb_sse_feed(&p, "data: ok\n\n", 10), 0);
    assert_int_equal(r.n, 1);
    recorder_free(&r);
    sb_sse_release(&p);
    free(x);
}

static void test_e2big_accumulated_data(void **state)
{
    (void)state;
    const size_t max = 64u << 10, lines = 100, line_len = 1007; /* "data: " + 1000 + "\n" */
    char *s = malloc(lines * line_len);
    assert_non_null(s);
    for (size_t i = 0; i < lines; i++) {
        char *l = s + i * line_len;
        memcpy(l, "data: ", 6);
        memset(l + 6, 'a' + (int)(i % 26), 1000);
        l[line_len - 1] = '\n';
    }
    const size_t total = lines * line_len;
    struct recorder r = {.n = 0};
    struct sb_sse p;
    sb_sse_init(&p, max, record, &r);
    const size_t chunks[] = {1, 1024, total};
    for (size_t ci = 0; ci < SB_ARRAY_SIZE(chunks); ci++) {
        const size_t chunk = chunks[ci];
        sb_sse_reset(&p);
        size_t off = 0;
        int rc = 0;
        while (off < total && rc == 0) {
            size_t n = total - off < chunk ? total - off : chunk;
            rc = sb_sse_feed(&p, s + off, n);
            off += n;
        }
        assert_int_equal(rc, SB_SSE_E2BIG);
        assert_true(p.data.cap <= max + 1);
        assert_true(p.data.len <= max);
        assert_true(p.line.cap <= max + 1);
        assert_int_equal(r.n, 0);
        assert_int_equal(sb_sse_finish(&p), 1);
    }
    sb_sse_release(&p);
    free(s);
}

/* ---- reuse ---- */

static void test_release_and_reuse(void **state)
{
    (void)state;
    struct recorder r = {.n = 0};
    struct sb_sse p;
    sb_sse_init(&p, DEFAULT_MAX, record, &r);
    assert_int_equal(sb_sse_feed(&p, ": hi\ndata: a\r", 13), 0);
    assert_int_equal(p.comments, 1);
    assert_int_equal(p.bytes, 13);
    sb_sse_release(&p);

    /* After release and reset nothing of the old stream remains (not even the pending CR). */
    sb_sse_reset(&p);
    assert_int_equal(p.events + p.comments + p.bytes, 0);
    assert_int_equal(sb_sse_feed(&p,
                                 "\n\xEF\xBB\xBF"
                                 "data: b\n\n",
                                 13),
                     0);
    assert_int_equal(r.n, 0); /* the LF was a blank line; the BOM was content, not a BOM */
    assert_int_equal(sb_sse_finish(&p), 0);
    sb_sse_reset(&p);
    assert_int_equal(sb_sse_feed(&p,
                                 "\xEF\xBB\xBF"
                                 "data: b\n\n",
                                 12),
                     0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "b");
    assert_null(r.ev[0].comment);
    recorder_free(&r);
    sb_sse_release(&p);
    sb_sse_release(&p); /* twice is harmless */
}

static void test_no_callback(void **state)
{
    (void)state;
    struct sb_sse p;
    sb_sse_init(&p, DEFAULT_MAX, NULL, NULL);
    assert_int_equal(sb_sse_feed(&p, "data: a\n\nevent: e\n\n", 19), 0);
    assert_int_equal(p.events, 2);
    sb_sse_release(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams),           cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_e2big_long_line),   cmocka_unit_test(test_e2big_accumulated_data),
        cmocka_unit_test(test_release_and_reuse), cmocka_unit_test(test_no_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
