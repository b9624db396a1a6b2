/*
 * Unit tests for sb/hist.h: the fixed-size histogram's summaries against sb_stats_summarize on the
 * same samples (within the documented 0.1 % + unit/2), exact small integers, merging, the ends and
 * the edge cases (empty, NaN, negative, past the top bucket).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "sb/hist.h"
#include "sb/stats.h"

/* The documented bound: half a bucket (1/1024 of the value) plus half a unit. */
static void assert_near(double got, double want, double unit, const char *what, size_t i)
{
    double tol = fabs(want) / 1024.0 + unit / 2 + 1e-12;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s case %zu: got %.17g, want %.17g (+- %.3g)", what, i, got, want, tol);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform01(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void test_vs_exact(void **state)
{
    (void)state;
    /* kinds of sample sets: uniform ms, log-normal-ish ms spanning decades, a few points, ties */
    const struct {
        int kind;
        size_t n;
        double unit;
    } cases[] = {{0, 10000, 1e-3}, {1, 20000, 1e-3}, {0, 3, 1e-3},
                 {2, 5000, 1e-3},  {1, 7, 1},        {3, 4000, 1e-3}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].n;
        double *v = malloc(n * sizeof(*v));
        assert_non_null(v);
        struct sb_hist h;
        sb_hist_init(&h, cases[i].unit);
        for (size_t k = 0; k < n; k++) {
            double x;
            switch (cases[i].kind) {
            case 0:
                x = 50 + 500 * uniform01();
                break;
            case 1:
                x = exp(12 * uniform01() - 3);
                break; /* 0.05 ms .. 8 s */
            case 2:
                x = (double)(k % 4) * 100.0;
                break; /* heavy ties, zeros */
            default:
                x = 1e6 + 1e5 * uniform01();
                break; /* minutes */
            }
            v[k] = x;
            sb_hist_add(&h, x);
        }
        struct sb_summary want, got;
        sb_stats_summarize(v, n, &want);
        sb_hist_summarize(&h, &got);
        assert_int_equal(got.n, want.n);
        assert_true(got.min == want.min && got.max == want.max);
        assert_true(fabs(got.mean - want.mean) <= 1e-9 * fabs(want.mean));
        assert_near(got.p50, want.p50, cases[i].unit, "p50", i);
        assert_near(got.p90, want.p90, cases[i].unit, "p90", i);
        assert_near(got.p95, want.p95, cases[i].unit, "p95", i);
        assert_near(got.p99, want.p99, cases[i].unit, "p99", i);
        assert_near(got.p999, want.p999, cases[i].unit, "p999", i);
        sb_hist_release(&h);
        free(v);
    }
}

static void test_small_integers_exact(void **state)
{
    (void)state;
    /* below 2^SB_HIST_SUB_BITS units every value has its own bucket: numpy's numbers exactly */
    double v[] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 511};
    size_t n = sizeof(v) / sizeof(v[0]);
    struct sb_hist h;
    sb_hist_init(&h, 1);
    for (size_t i = 0; i < n; i++)
        sb_hist_add(&h, v[i]);
    sb_stats_sort(v, n);
    const double ps[] = {0, 10, 25, 50, 63.3, 90, 99, 100};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_true(sb_hist_percentile(&h, ps[i]) == sb_stats_percentile_sorted(v, n, ps[i]));
    sb_hist_release(&h);
}

static void test_merge(void **state)
{
    (void)state;
    struct sb_hist a, b, all;
    sb_hist_init(&a, 1e-3);
    sb_hist_init(&b, 1e-3);
    sb_hist_init(&all, 1e-3);
    for (int k = 0; k < 3000; k++) {
        double x = 1 + 1000 * uniform01();
        sb_hist_add(k % 3 ? &a : &b, x);
        sb_hist_add(&all, x);
    }
    struct sb_hist m;
    sb_hist_init(&m, 1e-3);
    assert_int_equal(sb_hist_merge(&m, &a), 0);
    assert_int_equal(sb_hist_merge(&m, &b), 0);
    struct sb_hist empty;
    sb_hist_init(&empty, 1e-3);
    assert_int_equal(sb_hist_merge(&m, &empty), 0); /* merging nothing changes nothing */
    struct sb_summary sm, sa;
    sb_hist_summarize(&m, &sm);
    sb_hist_summarize(&all, &sa);
    assert_int_equal(sm.n, 3000);
    assert_true(sm.min == sa.min && sm.max == sa.max && sm.p50 == sa.p50 && sm.p99 == sa.p99);
    assert_true(fabs(sm.mean - sa.mean) <= 1e-9 * sa.mean);
    sb_hist_release(&a);
    sb_hist_release(&b);
    sb_hist_release(&all);
    sb_hist_release(&m);
}

static void test_edges(void **state)
{
    (void)state;
    struct sb_hist h;
    sb_hist_init(&h, 1e-3);
    struct sb_summary s;
    sb_hist_summarize(&h, &s);
    assert_int_equal(s.n, 0);
    assert_true(isnan(s.mean) && isnan(s.p50) && isnan(s.max));
    assert_true(isnan(sb_hist_percentile(&h, 50)));
    sb_hist_add(&h, NAN);
    sb_hist_add(&h, -1);
    assert_int_equal(h.n, 0); /* ignored, as callers drop NaNs */
    sb_hist_add(&h, 42.5);
    assert_true(sb_hist_percentile(&h, 0) == 42.5 && sb_hist_percentile(&h, 100) == 42.5);
    assert_true(sb_hist_percentile(&h, 50) == 42.5);
    assert_true(isnan(sb_hist_percentile(&h, 101)) && isnan(sb_hist_percentile(&h, -1)));
    /* past the top bucket (2^40 us, 12.7 days): counted, and the max is still exact */
    sb_hist_add(&h, 1e13);
    sb_hist_add(&h, 3e13);
    assert_int_equal(h.n, 3);
    assert_true(sb_hist_percentile(&h, 100) == 3e13);
    double p50 = sb_hist_percentile(&h, 50);
    assert_true(p50 >= 42.5 && p50 <= 3e13);
    sb_hist_release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_exact),
        cmocka_unit_test(test_small_integers_exact),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
