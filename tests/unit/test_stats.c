/*
 * Unit tests for sb/stats.h: percentiles against hand-computed numpy ("linear") values and a naive
 * reference, summaries, and the radix sort against qsort.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "sb/stats.h"
#include "sb/util.h"

#define TOL 1e-9

static void assert_close(double got, double want, const char *what, size_t i)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s case %zu: got %.17g, want NAN", what, i, got);
        return;
    }
    if (!(fabs(got - want) <= TOL))
        fail_msg("%s case %zu: got %.17g, want %.17g", what, i, got, want);
}

/* Values worked out by hand: position (n-1)*p/100 between sorted neighbours. */
static void test_percentile_table(void **state)
{
    (void)state;
    static const struct {
        double v[8];
        size_t n;
        double p, want;
    } cases[] = {
        /* n = 1: every percentile is the value */
        {{5}, 1, 0, 5},
        {{5}, 1, 50, 5},
        {{5}, 1, 99.9, 5},
        {{5}, 1, 100, 5},
        /* n = 2 */
        {{3, 1}, 2, 0, 1},
        {{3, 1}, 2, 50, 2},
        {{3, 1}, 2, 90, 2.8},
        {{3, 1}, 2, 95, 2.9},
        {{3, 1}, 2, 99, 2.98},
        {{3, 1}, 2, 99.9, 2.998},
        {{3, 1}, 2, 100, 3},
        /* n = 5, unsorted: sorted 1 3 7 15 20 */
        {{15, 1, 7, 3, 20}, 5, 0, 1},
        {{15, 1, 7, 3, 20}, 5, 10, 1.8},     /* pos 0.4 */
        {{15, 1, 7, 3, 20}, 5, 25, 3},       /* pos 1 */
        {{15, 1, 7, 3, 20}, 5, 50, 7},       /* pos 2 */
        {{15, 1, 7, 3, 20}, 5, 90, 18},      /* pos 3.6: 15 + 0.6 * 5 */
        {{15, 1, 7, 3, 20}, 5, 95, 19},      /* pos 3.8 */
        {{15, 1, 7, 3, 20}, 5, 99, 19.8},    /* pos 3.96 */
        {{15, 1, 7, 3, 20}, 5, 99.9, 19.98}, /* pos 3.996 */
        {{15, 1, 7, 3, 20}, 5, 100, 20},
        /* duplicates: 2 2 2 5 5 */
        {{5, 2, 2, 5, 2}, 5, 50, 2},
        {{5, 2, 2, 5, 2}, 5, 60, 3.2}, /* pos 2.4 */
        {{5, 2, 2, 5, 2}, 5, 70, 4.4}, /* pos 2.8 */
        {{5, 2, 2, 5, 2}, 5, 80, 5},   /* pos 3.2, between equal values */
        {{4, 4, 4, 4}, 4, 37.5, 4},
        /* negatives and mixed signs: -3 -2 -1 0.5 */
        {{-1, 0.5, -3, -2}, 4, 50, -1.5},                 /* pos 1.5 */
        {{-1, 0.5, -3, -2}, 4, 100.0 * 2.5 / 3.0, -0.25}, /* pos 2.5 */
        /* out of range or NaN p */
        {{1, 2}, 2, -0.1, NAN},
        {{1, 2}, 2, 100.1, NAN},
        {{1, 2}, 2, NAN, NAN},
        /* n = 0 */
        {{0}, 0, 50, NAN},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        double v[8];
        memcpy(v, cases[i].v, sizeof(v));
        sb_stats_sort(v, cases[i].n);
        assert_close(sb_stats_percentile_sorted(v, cases[i].n, cases[i].p), cases[i].want,
                     "percentile", i);
    }
}

/*
 * numpy's _lerp works from the upper neighbour when the fraction is >= 0.5 (b - (b-a)*(1-t)),
 * which differs from a + (b-a)*t in the last bit; matching the old harness means matching that.
 * Worked by hand: 0.9 - 0.3 = 0.6000000000000001, 0.9 - 0.6000000000000001 * 0.5 = 0.6 exactly,
 * where the one-sided form gives 0.6000000000000001.
 */
static void test_percentile_numpy_lerp(void **state)
{
    (void)state;
    static const struct {
        double v[3];
        size_t n;
        double p, want;
    } cases[] = {
        {{0.3, 0.9}, 2, 50, 0.6},
        {{0.1, 0.7}, 2, 50, 0.39999999999999997},
        {{0.1, 0.7}, 2, 70, 0.5199999999999999},
        {{0.1, 0.1, 0.7}, 3, 80, 0.46},
        {{0.3, 0.9}, 2, 40, 0.54}, /* below 0.5: from the lower side */
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        double got = sb_stats_percentile_sorted(cases[i].v, cases[i].n, cases[i].p);
        if (got != cases[i].want)
            fail_msg("case %zu: got %.17g, want %.17g (bit-exact)", i, got, cases[i].want);
    }
}

static void test_summary_table(void **state)
{
    (void)state;
    static const struct {
        double v[8];
        size_t n;
        double mean, min, max, p50, p90, p95, p99, p999;
    } cases[] = {
        {{0}, 0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN},
        {{42}, 1, 42, 42, 42, 42, 42, 42, 42, 42},
        {{15, 1, 7, 3, 20}, 5, 9.2, 1, 20, 7, 18, 19, 19.8, 19.98},
        {{3, 1}, 2, 2, 1, 3, 2, 2.8, 2.9, 2.98, 2.998},
        {{5, 2, 2, 5, 2}, 5, 3.2, 2, 5, 2, 5, 5, 5, 5},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        double v[8];
        memcpy(v, cases[i].v, sizeof(v));
        struct sb_summary s;
        memset(&s, 0, sizeof(s));
        sb_stats_summarize(v, cases[i].n, &s);
        assert_int_equal(s.n, cases[i].n);
        assert_close(s.mean, cases[i].mean, "mean", i);
        assert_close(s.min, cases[i].min, "min", i);
        assert_close(s.max, cases[i].max, "max", i);
        assert_close(s.p50, cases[i].p50, "p50", i);
        assert_close(s.p90, cases[i].p90, "p90", i);
        assert_close(s.p95, cases[i].p95, "p95", i);
        assert_close(s.p99, cases[i].p99, "p99", i);
        assert_close(s.p999, cases[i].p999, "p999", i);
        /* summarize leaves v sorted */
        for (size_t k = 1; k < cases[i].n; k++)
            assert_true(v[k - 1] <= v[k]);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The obvious formula on a qsort-ed copy: the reference the fast path must agree with. */
static double naive_percentile(const double *sorted, size_t n, double p)
{
    double pos = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - (double)lo);
}

/* Latency-like values: mostly small, a long tail, many exact duplicates, some negatives. */
static double sample(struct sb_rng *rng, int kind)
{
    double u = sb_rng_uniform(rng);
    switch (kind) {
    case 0:
        return -log(1.0 - u) * 50.0; /* exponential, mean 50 */
    case 1:
        return (double)sb_rng_below(rng, 20); /* heavy duplication */
    default:
        return (u - 0.5) * 1e6; /* both signs, wide */
    }
}

static void test_random_vs_naive(void **state)
{
    (void)state;
    static const double ps[] = {0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};
    static const struct {
        size_t n;
        int kind;
    } cases[] = {
        {100000, 0}, {100000, 1}, {100000, 2}, {65, 0}, {1000, 2}, {3, 1},
    };
    struct sb_rng rng;
    sb_rng_seed(&rng, 12345);
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        size_t n = cases[i].n;
        double *v = malloc(n * sizeof(double));
        double *ref = malloc(n * sizeof(double));
        assert_non_null(v);
        assert_non_null(ref);
        for (size_t k = 0; k < n; k++)
            v[k] = ref[k] = sample(&rng, cases[i].kind);
        qsort(ref, n, sizeof(double), cmp_double);
        sb_stats_sort(v, n);
        for (size_t k = 0; k < n; k++)
            if (v[k] != ref[k])
                fail_msg("case %zu: sorted[%zu] %.17g, want %.17g", i, k, v[k], ref[k]);
        for (size_t k = 0; k < SB_ARRAY_SIZE(ps); k++) {
            double got = sb_stats_percentile_sorted(v, n, ps[k]);
            double want = naive_percentile(ref, n, ps[k]);
            if (!(fabs(got - want) <= TOL * fmax(1.0, fabs(want))))
                fail_msg("case %zu p%g: got %.17g, want %.17g", i, ps[k], got, want);
        }
        free(v);
        free(ref);
    }
}

static void test_sort_edges(void **state)
{
    (void)state;
    /* Sizes around the insertion-sort cut-over and special values the radix keys must order. */
    static const size_t sizes[] = {0, 1, 2, 63, 64, 65, 257, 4096};
    static const double specials[] = {
        0.0,   -0.0,   INFINITY, -INFINITY, 1e-310 /* subnormal */, -1e-310, 1.0, -1.0,
        1e308, -1e308, 5e-324,   0.5,
    };
    struct sb_rng rng;
    sb_rng_seed(&rng, 99);
    for (size_t i = 0; i < SB_ARRAY_SIZE(sizes); i++) {
        size_t n = sizes[i];
        double *v = malloc((n ? n : 1) * sizeof(double));
        double *ref = malloc((n ? n : 1) * sizeof(double));
        assert_non_null(v);
        assert_non_null(ref);
        for (size_t k = 0; k < n; k++) {
            if (sb_rng_below(&rng, 3) == 0)
                v[k] = specials[sb_rng_below(&rng, SB_ARRAY_SIZE(specials))];
            else
                v[k] = sample(&rng, (int)(k % 3));
            ref[k] = v[k];
        }
        qsort(ref, n, sizeof(double), cmp_double);
        sb_stats_sort(v, n);
        for (size_t k = 0; k < n; k++)
            if (!(v[k] == ref[k])) /* -0.0 == 0.0: their relative order is free */
                fail_msg("size %zu: sorted[%zu] %.17g, want %.17g", n, k, v[k], ref[k]);
        /* -0.0 sorts before +0.0 */
        for (size_t k = 1; k < n; k++)
            if (v[k - 1] == 0.0 && v[k] == 0.0)
                assert_false(signbit(v[k]) && !signbit(v[k - 1]));
        free(v);
        free(ref);
    }
    /* Already sorted and reversed input. */
    double up[300], down[300];
    for (int k = 0; k < 300; k++) {
        up[k] = k * 0.5;
        down[k] = (299 - k) * 0.5;
    }
    sb_stats_sort(up, 300);
    sb_stats_sort(down, 300);
    for (int k = 0; k < 300; k++) {
        assert_true(up[k] == k * 0.5);
        assert_true(down[k] == k * 0.5);
    }
}

/* Throughput counts ok completions in [from, to): the end is open, the drain is out. */
static void test_tput_window(void **state)
{
    (void)state;
    struct sb_tput t;
    sb_tput_init(&t, 10.0, 12.0);
    const struct {
        double done;
        long long tokens;
    } adds[] = {{9.999, 5}, {10.0, 5}, {11.5, 7}, {11.999999, -1}, {12.0, 5}, {30.0, 5}};
    for (size_t i = 0; i < sizeof(adds) / sizeof(adds[0]); i++)
        sb_tput_add(&t, adds[i].done, adds[i].tokens);
    assert_int_equal(t.completed, 3);
    assert_int_equal(t.output_tokens, 12); /* a count not reported adds none */
    assert_true(sb_tput_window_s(&t) == 2.0);
    assert_true(sb_tput_req_s(&t) == 1.5);
    assert_true(sb_tput_tok_s(&t) == 6.0);
    sb_tput_init(&t, 5.0, 5.0);
    assert_true(sb_tput_window_s(&t) == 0 && isnan(sb_tput_req_s(&t)));
}

static void test_client_fell_behind(void **state)
{
    (void)state;
    const struct {
        long long late, sent;
        double max_ms;
        bool want;
    } cases[] = {
        {0, 1000, 500, false},  /* nothing late: max is the largest on-time delay */
        {10, 1000, 50, false},  /* 1 %, none past 100 ms */
        {11, 1000, 50, true},   /* over 1 % */
        {1, 1000, 100.5, true}, /* one far behind */
        {3, 0, 12.5, true},     /* late sends with no count of sent: behind */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (sb_client_fell_behind(cases[i].late, cases[i].sent, cases[i].max_ms) != cases[i].want)
            fail_msg("case %zu: want %d", i, cases[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_table),   cmocka_unit_test(test_percentile_numpy_lerp),
        cmocka_unit_test(test_summary_table),      cmocka_unit_test(test_random_vs_naive),
        cmocka_unit_test(test_sort_edges),         cmocka_unit_test(test_tput_window),
        cmocka_unit_test(test_client_fell_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
