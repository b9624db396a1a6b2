/* Unit tests for sb/trace.h: the strict parser's errors (file:line:field), delay-derived
 * timestamps, the unbounded-cache oracle on a hand-made trace, the schedule's speed and gap cap,
 * and the block text: equal ids give equal bytes, a cut block is a prefix, and under the real
 * Llama 3.1 tokenizer (tests/.cache, the setup/fetch_tokenizers fixture) every block is exactly its
 * token count alone and concatenated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/tokenizer.h"
#include "sb/trace.h"
#include "sb/util.h"

#define LLAMA_JSON SB_TEST_DATA_DIR "/../.cache/tokenizers/llama3_1/tokenizer.json"
#define SLICE      SB_TEST_DATA_DIR "/trace/conversation_1000.jsonl"

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *msg; /* a part of the error */
    } cases[] = {
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}\nnot json\n",
         "t.jsonl:2: not a JSON object"},
        {"{\"timestamp\":0,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'input_length' missing"},
        {"{\"timestamp\":0,\"input_length\":10,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'output_length' missing"},
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":1}",
         "t.jsonl:1: field 'hash_ids' missing"},
        {"{\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'timestamp' missing"},
        {"{\"timestamp\":0,\"input_length\":-5,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'input_length' must be an integer >= 1"},
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":0,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'output_length' must be an integer >= 1"},
        {"{\"timestamp\":0,\"input_length\":10.5,\"output_length\":1,\"hash_ids\":[1]}",
         "field 'input_length' must be an integer >= 1"},
        {"{\"timestamp\":-1,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:1: field 'timestamp' must be a number of ms >= 0"},
        {"\n\n{\"timestamp\":0,\"input_length\":513,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:3: field 'hash_ids': 1 ids for input_length 513, which needs ceil(513 / 512) "
         "= 2"},
        {"{\"timestamp\":0,\"input_length\":512,\"output_length\":1,\"hash_ids\":[1,2]}",
         "field 'hash_ids': 2 ids for input_length 512"},
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":1,\"hash_ids\":[-1]}",
         "t.jsonl:1: field 'hash_ids': element 0 must be an integer >= 0"},
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":1,\"hash_ids\":\"x\"}",
         "field 'hash_ids' must be an array"},
        {"{\"timestamp\":5,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}\n"
         "{\"timestamp\":4,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1]}",
         "t.jsonl:2: field 'timestamp': 4 ms is before the previous line's 5 ms"},
        {"{\"timestamp\":0,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1],"
         "\"session_id\":[]}",
         "field 'session_id' must be a string or a number"},
        {"{\"input_length\":10,\"output_length\":1,\"hash_ids\":[1],\"delay\":-3}",
         "field 'delay' must be a number of ms >= 0"},
        {"\n  \n", "t.jsonl: no requests in the trace"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sb_trace t;
        struct sb_err err;
        sb_err_clear(&err);
        int rc = sb_trace_parse(cases[i].text, strlen(cases[i].text), "t.jsonl", 512, &t, &err);
        if (rc == 0)
            fail_msg("case %zu parsed; wanted '%s'", i, cases[i].msg);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, cases[i].msg);
        assert_null(t.req);
    }
}

static void parse_ok(const char *text, long long block, struct sb_trace *t)
{
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_trace_parse(text, strlen(text), "t.jsonl", block, t, &err) != 0)
        fail_msg("%s", err.msg);
}

/* Sessions and delays: a delay-only line is due `delay` ms after its session's previous line
   (the previous line when it has none); a torn last line without '\n' is a line. */
static void test_parse_delay_sessions(void **state)
{
    (void)state;
    struct sb_trace t;
    parse_ok("{\"timestamp\":100,\"input_length\":4,\"output_length\":2,\"hash_ids\":[1],"
             "\"session_id\":\"a\"}\n"
             "{\"timestamp\":150,\"input_length\":4,\"output_length\":2,\"hash_ids\":[2],"
             "\"session_id\":7}\n"
             "{\"delay\":500,\"input_length\":4,\"output_length\":2,\"hash_ids\":[1],"
             "\"session_id\":\"a\"}\n"
             "{\"delay\":25.5,\"input_length\":4,\"output_length\":3,\"hash_ids\":[3]}",
             512, &t);
    assert_int_equal(t.n, 4);
    assert_int_equal(t.sessions, 2);
    assert_true(t.req[0].session == t.req[2].session);
    assert_true(t.req[1].session != t.req[0].session);
    assert_int_equal(t.req[3].session, -1);
    assert_true(t.req[2].ts_ms == 600.0);
    assert_true(t.req[3].ts_ms == 625.5);
    assert_int_equal(t.req[3].output_len, 3);
    sb_trace_release(&t);
}

/* The oracle over a hand-made trace with 4-token blocks: chained matches, partial last blocks,
   distances in tokens of the requests in between. */
static void test_oracle(void **state)
{
    (void)state;
    struct sb_trace t;
    parse_ok(
        /* 0: nothing before it */
        "{\"timestamp\":0,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1,2,3]}\n"
        /* 1: blocks 1,2 reused (8 tokens), last used by 0, nothing in between */
        "{\"timestamp\":0,\"input_length\":9,\"output_length\":1,\"hash_ids\":[1,2,4]}\n"
        /* 2: unrelated */
        "{\"timestamp\":1,\"input_length\":3,\"output_length\":1,\"hash_ids\":[5]}\n"
        /* 3: request 0 again: 10 tokens (its 2-token last block too); block 3 last used by 0,
           then 1 (9 tokens) and 2 (3 tokens) */
        "{\"timestamp\":2,\"input_length\":10,\"output_length\":1,\"hash_ids\":[1,2,3]}\n"
        /* 4: block 1 only: 4 tokens, last used by 3 */
        "{\"timestamp\":3,\"input_length\":6,\"output_length\":1,\"hash_ids\":[1,6]}\n"
        /* 5: id 2 after another first block: a different prefix, nothing reusable */
        "{\"timestamp\":4,\"input_length\":8,\"output_length\":1,\"hash_ids\":[7,2]}\n"
        /* 6: a 2-token block... */
        "{\"timestamp\":5,\"input_length\":2,\"output_length\":1,\"hash_ids\":[8]}\n"
        /* 7: ...sent again in full: only its 2 tokens are cached, and the match ends there */
        "{\"timestamp\":6,\"input_length\":8,\"output_length\":1,\"hash_ids\":[8,9]}\n",
        4, &t);
    static const long long reusable[] = {0, 8, 0, 10, 4, 0, 0, 2};
    static const long long dist[] = {-1, 0, -1, 12, 0, -1, -1, 0};
    for (size_t i = 0; i < 8; i++) {
        if (t.req[i].reusable_tokens != reusable[i] || t.req[i].reuse_distance != dist[i])
            fail_msg("request %zu: reusable %lld distance %lld, wanted %lld %lld", i,
                     t.req[i].reusable_tokens, t.req[i].reuse_distance, reusable[i], dist[i]);
    }
    assert_int_equal(t.oracle_hit_tokens, 24);
    assert_int_equal(t.input_tokens, 56);
    /* Over the first 4 only. */
    struct sb_err err;
    assert_int_equal(sb_trace_oracle(&t, 4, &err), 0);
    assert_int_equal(t.oracle_hit_tokens, 18);
    assert_int_equal(t.input_tokens, 32);
    sb_trace_release(&t);
}

/* The shipped slice against a straightforward reading of "ids that appeared earlier" (the
   Mooncake ids are prefix hashes, so the chained oracle agrees), and its known totals. */
static void test_oracle_slice(void **state)
{
    (void)state;
    struct sb_trace t;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_trace_load(SLICE, 512, &t, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(t.n, 1000);
    assert_int_equal(strlen(t.sha256), 64);
    size_t cap = 1u << 20;
    uint8_t *seen = calloc(cap, 1);
    assert_non_null(seen);
    long long total = 0;
    for (size_t i = 0; i < t.n; i++) {
        const struct sb_trace_req *r = &t.req[i];
        long long hit = 0;
        for (size_t j = 0; j < r->nids; j++) {
            uint64_t id = t.ids[r->first_id + j];
            assert_true(id < cap);
            if (!seen[id])
                break;
            hit += j + 1 < r->nids ? 512 : r->input_len - 512 * (long long)j;
        }
        for (size_t j = 0; j < r->nids; j++)
            seen[t.ids[r->first_id + j]] = 1;
        assert_int_equal(r->reusable_tokens, hit);
        total += hit;
    }
    free(seen);
    assert_int_equal(t.oracle_hit_tokens, total);
    assert_int_equal(t.oracle_hit_tokens, 2962776);
    assert_int_equal(t.input_tokens, 13732944);
    sb_trace_release(&t);
}

static void test_schedule(void **state)
{
    (void)state;
    struct sb_trace t;
    parse_ok("{\"timestamp\":1000,\"input_length\":1,\"output_length\":1,\"hash_ids\":[1]}\n"
             "{\"timestamp\":2000,\"input_length\":1,\"output_length\":1,\"hash_ids\":[1]}\n"
             "{\"timestamp\":62000,\"input_length\":1,\"output_length\":1,\"hash_ids\":[1]}\n"
             "{\"timestamp\":62000,\"input_length\":1,\"output_length\":1,\"hash_ids\":[1]}\n"
             "{\"timestamp\":63000.5,\"input_length\":1,\"output_length\":1,\"hash_ids\":[1]}\n",
             512, &t);
    uint64_t s[5];
    /* speed 1, no cap: from the first request's time */
    assert_int_equal(sb_trace_schedule(&t, 1, 0, s), 0);
    assert_true(s[0] == 0 && s[1] == 1000000000ull && s[2] == 61000000000ull && s[3] == s[2] &&
                s[4] == 62000500000ull);
    /* speed 2, gaps over 10 s cut to 10 s: the rest moves earlier */
    assert_int_equal(sb_trace_schedule(&t, 2, 10, s), 1);
    assert_true(s[1] == 500000000ull);
    assert_true(s[2] == 10500000000ull);
    assert_true(s[3] == 10500000000ull);
    assert_true(s[4] == 11000250000ull);
    sb_trace_release(&t);
}

static void test_block_text(void **state)
{
    (void)state;
    struct sb_trace_words w;
    sb_trace_words_default(&w);
    struct sb_buf a, b, c;
    sb_buf_init(&a, SIZE_MAX);
    sb_buf_init(&b, SIZE_MAX);
    sb_buf_init(&c, SIZE_MAX);
    assert_int_equal(sb_trace_block_text(&w, 42, 7, 512, &a), 0);
    assert_int_equal(sb_trace_block_text(&w, 42, 7, 512, &b), 0);
    assert_int_equal(a.len, 2048);
    assert_memory_equal(a.data, b.data, a.len); /* equal ids, equal bytes */
    for (size_t i = 0; i < a.len; i += 4) {
        assert_true(a.data[i] == ' ');
        for (int k = 1; k < 4; k++)
            assert_true(a.data[i + k] >= 'a' && a.data[i + k] <= 'z');
    }
    assert_int_equal(sb_trace_block_text(&w, 42, 8, 512, &c), 0);
    assert_true(memcmp(a.data, c.data, 128) != 0); /* another id: not even one mock block alike */
    sb_buf_reset(&c);
    assert_int_equal(sb_trace_block_text(&w, 43, 7, 512, &c), 0);
    assert_true(memcmp(a.data, c.data, 128) != 0); /* another seed */
    /* a cut block is the first words of the full one, whatever the cut */
    for (long long n = 1; n < 512; n += 37) {
        sb_buf_reset(&c);
        assert_int_equal(sb_trace_block_text(&w, 42, 7, n, &c), 0);
        assert_int_equal(c.len, (size_t)n * 4);
        assert_memory_equal(c.data, a.data, c.len);
    }
    sb_buf_release(&a);
    sb_buf_release(&b);
    sb_buf_release(&c);
}

/* Under the real tokenizer: the block words are single tokens, blocks count exactly alone and
   together, and a whole trace prompt counts input_length (+ BOS). */
static void test_block_tokens(void **state)
{
    (void)state;
    struct sb_tokenizer *tok = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(LLAMA_JSON, &tok, &err) != 0)
        fail_msg("cannot load the Llama 3.1 tokenizer (make check fetches it): %s", err.msg);
    struct sb_trace_words w;
    long long bos = -1;
    if (sb_trace_words_init(&w, tok, 512, &bos, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(w.n, 128);
    assert_int_equal(bos, 1);
    struct sb_buf all, one;
    sb_buf_init(&all, SIZE_MAX);
    sb_buf_init(&one, SIZE_MAX);
    size_t n = 0, sum = 0;
    static const long long lens[] = {512, 512, 300, 512, 1, 512};
    for (size_t i = 0; i < 6; i++) {
        sb_buf_reset(&one);
        assert_int_equal(sb_trace_block_text(&w, 42, 100 + i, lens[i], &one), 0);
        assert_int_equal(sb_tokenizer_count(tok, one.data, one.len, false, &n, &err), 0);
        assert_int_equal(n, (size_t)lens[i]);
        sum += n;
        assert_int_equal(sb_buf_add(&all, one.data, one.len), 0);
    }
    assert_int_equal(sb_tokenizer_count(tok, all.data, all.len, false, &n, &err), 0);
    assert_int_equal(n, sum); /* no merge across any boundary */
    /* Whole prompts of the shipped slice: exactly input_length tokens, BOS on top. */
    struct sb_trace t;
    if (sb_trace_load(SLICE, 512, &t, &err) != 0)
        fail_msg("%s", err.msg);
    for (size_t i = 0; i < 20; i++) {
        sb_buf_reset(&all);
        assert_int_equal(sb_trace_prompt_text(&t, &w, 42, i, &all), 0);
        assert_int_equal(all.len, (size_t)t.req[i].input_len * 4);
        assert_int_equal(sb_tokenizer_count(tok, all.data, all.len, true, &n, &err), 0);
        assert_int_equal((long long)n, t.req[i].input_len + bos);
    }
    sb_trace_release(&t);
    sb_buf_release(&all);
    sb_buf_release(&one);
    sb_tokenizer_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_parse_delay_sessions),
        cmocka_unit_test(test_oracle),       cmocka_unit_test(test_oracle_slice),
        cmocka_unit_test(test_schedule),     cmocka_unit_test(test_block_text),
        cmocka_unit_test(test_block_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
