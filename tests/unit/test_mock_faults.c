/*
 * Unit tests for sb/mock_faults.h: kind lists, the fault rate, determinism from the seed and the
 * request number, and where mid-stream faults strike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <cmocka.h>

#include "sb/mock_faults.h"
#include "sb/util.h"

static void test_fault_names(void **state)
{
    (void)state;
    static const struct {
        enum sb_fault_kind kind;
        const char *name;
    } cases[] = {
        {SB_FAULT_NONE, "none"},
        {SB_FAULT_429, "429"},
        {SB_FAULT_500, "500"},
        {SB_FAULT_503, "503"},
        {SB_FAULT_CLOSE, "close"},
        {SB_FAULT_STALL, "stall"},
        {SB_FAULT_MALFORMED, "malformed"},
        {SB_FAULT_SLOW_HEADERS, "slow_headers"},
        {SB_FAULT_DYNAMO_ERROR, "dynamo_error"},
        {SB_FAULT_TRTLLM_ERROR, "trtllm_error"},
        {SB_FAULT_COUNT, "unknown"},
    };
    assert_int_equal(SB_ARRAY_SIZE(cases), SB_FAULT_COUNT + 1);
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_string_equal(sb_fault_name(cases[i].kind), cases[i].name);
    /* Every name parses back to its kind. */
    for (int k = SB_FAULT_NONE + 1; k < SB_FAULT_COUNT; k++) {
        struct sb_fault_plan p;
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(sb_fault_plan_init(&p, 1, sb_fault_name((enum sb_fault_kind)k), 1, &err),
                         0);
        assert_int_equal(p.nkinds, 1);
        assert_int_equal(p.kinds[0], k);
    }
}

static void test_plan_init(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int nkinds;
        int kinds[SB_FAULT_COUNT];
        const char *msg; /* substring of the error */
    } cases[] = {
        {"429,close", 0, 2, {SB_FAULT_429, SB_FAULT_CLOSE}, NULL},
        {"close,429", 0, 2, {SB_FAULT_CLOSE, SB_FAULT_429}, NULL},
        {"stall", 0, 1, {SB_FAULT_STALL}, NULL},
        {"500,500,503,500", 0, 2, {SB_FAULT_500, SB_FAULT_503}, NULL},
        {"slow_headers,dynamo_error,trtllm_error,malformed",
         0,
         4,
         {SB_FAULT_SLOW_HEADERS, SB_FAULT_DYNAMO_ERROR, SB_FAULT_TRTLLM_ERROR, SB_FAULT_MALFORMED},
         NULL},
        {"429,", 0, 1, {SB_FAULT_429}, NULL},
        /* "all", and no list at all, mean every kind */
        {"all",
         0,
         9,
         {SB_FAULT_429, SB_FAULT_500, SB_FAULT_503, SB_FAULT_CLOSE, SB_FAULT_STALL,
          SB_FAULT_MALFORMED, SB_FAULT_SLOW_HEADERS, SB_FAULT_DYNAMO_ERROR, SB_FAULT_TRTLLM_ERROR},
         NULL},
        {"",
         0,
         9,
         {SB_FAULT_429, SB_FAULT_500, SB_FAULT_503, SB_FAULT_CLOSE, SB_FAULT_STALL,
          SB_FAULT_MALFORMED, SB_FAULT_SLOW_HEADERS, SB_FAULT_DYNAMO_ERROR, SB_FAULT_TRTLLM_ERROR},
         NULL},
        {"429,teapot,close", -1, 0, {0}, "unknown fault kind 'teapot'"},
        {"Close", -1, 0, {0}, "unknown fault kind 'Close'"},
        {"none", -1, 0, {0}, "unknown fault kind 'none'"},
        {"close,all", -1, 0, {0}, "unknown fault kind 'all'"},
        {"429,,close", -1, 0, {0}, "unknown fault kind ''"},
        {" 429", -1, 0, {0}, "unknown fault kind ' 429'"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_fault_plan p;
        struct sb_err err;
        sb_err_clear(&err);
        print_message("kinds '%s'\n", cases[i].in);
        assert_int_equal(sb_fault_plan_init(&p, 0.5, cases[i].in, 99, &err), cases[i].rc);
        if (cases[i].rc != 0) {
            assert_non_null(strstr(err.msg, cases[i].msg));
            assert_non_null(strstr(err.msg, "(known: 429, 500, 503, close"));
            continue;
        }
        assert_true(p.rate == 0.5);
        assert_int_equal(p.seed, 99);
        assert_int_equal(p.nkinds, cases[i].nkinds);
        for (int k = 0; k < p.nkinds; k++)
            assert_int_equal(p.kinds[k], cases[i].kinds[k]);
    }
    /* NULL is "all" too. */
    struct sb_fault_plan p;
    assert_int_equal(sb_fault_plan_init(&p, 0.1, NULL, 1, NULL), 0);
    assert_int_equal(p.nkinds, SB_FAULT_COUNT - 1);
}

static void test_rate_bounds(void **state)
{
    (void)state;
    struct sb_fault_plan p;
    assert_int_equal(sb_fault_plan_init(&p, 0, "all", 7, NULL), 0);
    for (uint64_t r = 0; r < 2000; r++) {
        struct sb_fault f = sb_fault_pick(&p, r, 100);
        assert_int_equal(f.kind, SB_FAULT_NONE);
        assert_int_equal(f.at_token, 0);
    }
    /* Rate 1: every request, and only kinds from the list, each of them seen. */
    assert_int_equal(sb_fault_plan_init(&p, 1, "503,stall,malformed", 7, NULL), 0);
    int seen[SB_FAULT_COUNT] = {0};
    for (uint64_t r = 0; r < 3000; r++) {
        struct sb_fault f = sb_fault_pick(&p, r, 100);
        assert_true(f.kind == SB_FAULT_503 || f.kind == SB_FAULT_STALL ||
                    f.kind == SB_FAULT_MALFORMED);
        seen[f.kind]++;
    }
    /* Uniform choice: each of three about 1000 times. */
    assert_true(seen[SB_FAULT_503] > 800 && seen[SB_FAULT_503] < 1200);
    assert_true(seen[SB_FAULT_STALL] > 800 && seen[SB_FAULT_STALL] < 1200);
    assert_true(seen[SB_FAULT_MALFORMED] > 800 && seen[SB_FAULT_MALFORMED] < 1200);
}

static void test_deterministic(void **state)
{
    (void)state;
    struct sb_fault_plan a, b, c;
    assert_int_equal(sb_fault_plan_init(&a, 0.3, "all", 1234, NULL), 0);
    assert_int_equal(sb_fault_plan_init(&b, 0.3, "all", 1234, NULL), 0);
    assert_int_equal(sb_fault_plan_init(&c, 0.3, "all", 1235, NULL), 0);
    int differ = 0;
    for (uint64_t r = 0; r < 1000; r++) {
        struct sb_fault fa = sb_fault_pick(&a, r, 50);
        struct sb_fault fb = sb_fault_pick(&b, r, 50);
        struct sb_fault fc = sb_fault_pick(&c, r, 50);
        assert_int_equal(fa.kind, fb.kind);
        assert_int_equal(fa.at_token, fb.at_token);
        /* Asking again for the same request gives the same answer (no hidden state). */
        struct sb_fault again = sb_fault_pick(&a, r, 50);
        assert_int_equal(again.kind, fa.kind);
        assert_int_equal(again.at_token, fa.at_token);
        differ += fa.kind != fc.kind || fa.at_token != fc.at_token;
    }
    assert_true(differ > 100);
}

static void test_observed_rate(void **state)
{
    (void)state;
    static const uint64_t seeds[] = {0, 1, 42, 0xdeadbeef};
    for (size_t s = 0; s < SB_ARRAY_SIZE(seeds); s++) {
        struct sb_fault_plan p;
        assert_int_equal(sb_fault_plan_init(&p, 0.1, "429,close", seeds[s], NULL), 0);
        int hits = 0;
        for (uint64_t r = 0; r < 10000; r++)
            hits += sb_fault_pick(&p, r, 10).kind != SB_FAULT_NONE;
        double rate = hits / 10000.0;
        print_message("seed %llu rate %.4f\n", (unsigned long long)seeds[s], rate);
        assert_true(rate >= 0.08 && rate <= 0.12);
    }
}

static void test_at_token(void **state)
{
    (void)state;
    static const struct {
        long long max_tokens;
        long long lo, hi; /* at_token range; 0 0 means always 0 */
    } cases[] = {
        {-1, 0, 0}, {0, 0, 0}, {1, 0, 0}, {2, 1, 1}, {3, 1, 2}, {16, 1, 15}, {1000, 1, 999},
    };
    struct sb_fault_plan p;
    assert_int_equal(sb_fault_plan_init(&p, 1, "close,stall", 3, NULL), 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        long long min_seen = cases[i].hi + 1, max_seen = -1;
        for (uint64_t r = 0; r < 2000; r++) {
            struct sb_fault f = sb_fault_pick(&p, r, cases[i].max_tokens);
            assert_int_not_equal(f.kind, SB_FAULT_NONE);
            assert_in_range(f.at_token, cases[i].lo, cases[i].hi);
            min_seen = f.at_token < min_seen ? f.at_token : min_seen;
            max_seen = f.at_token > max_seen ? f.at_token : max_seen;
        }
        /* Small ranges are covered end to end. */
        if (cases[i].hi <= 15) {
            assert_int_equal(min_seen, cases[i].lo);
            assert_int_equal(max_seen, cases[i].hi);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_names),   cmocka_unit_test(test_plan_init),
        cmocka_unit_test(test_rate_bounds),   cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_observed_rate), cmocka_unit_test(test_at_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
