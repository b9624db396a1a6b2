/*
 * Unit tests for the rules in src/analyze/knee.c: the Test Plan §2 knee / U_work rule on
 * table-driven curves, Pearson r and the least-squares line against hand-computed values, and
 * the coefficient of variation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "sb/analyze_out.h"
#include "sb/util.h"

#define N   NAN
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

static void test_knee_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n;
        double x[8], p50[8], p99[8];
        double k;
        enum sb_knee_status status;
        double knee, uwork;
    } cases[] = {
        {"knee at the fourth step",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, 10, 10},
         {12, 15, 18, 25, 30, 40},
         2,
         SB_KNEE_FOUND,
         8,
         4},
        {"knee at the first step",
         4,
         {1, 2, 4, 8},
         {10, 10, 10, 10},
         {25, 30, 40, 50},
         2,
         SB_KNEE_AT_FIRST,
         1,
         N},
        {"no knee", 4, {1, 2, 4, 8}, {10, 10, 10, 10}, {12, 15, 18, 19}, 2, SB_KNEE_NONE, N, 8},
        {"single over steps never consecutive",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, 10, 10},
         {12, 25, 12, 25, 12, 15},
         2,
         SB_KNEE_NONE,
         N,
         32},
        {"a lone over step, then two in a row",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, 10, 10},
         {12, 25, 12, 25, 25, 15},
         2,
         SB_KNEE_FOUND,
         8,
         4},
        {"only the last step over",
         5,
         {1, 2, 4, 8, 16},
         {10, 10, 10, 10, 10},
         {12, 12, 12, 12, 90},
         2,
         SB_KNEE_NONE,
         N,
         16},
        {"p99 exactly k x p50 is not over",
         4,
         {1, 2, 4, 8},
         {10, 10, 10, 10},
         {20, 20, 20, 20},
         2,
         SB_KNEE_NONE,
         N,
         8},
        {"NAN p50 step is skipped, its neighbours become consecutive",
         5,
         {1, 2, 4, 8, 16},
         {10, 10, N, 10, 10},
         {12, 25, 25, 25, 12},
         2,
         SB_KNEE_FOUND,
         2,
         1},
        {"NAN p50 before the knee: U_work is the last measured step",
         5,
         {1, 2, 4, 8, 16},
         {10, 10, N, 10, 10},
         {12, 12, 12, 25, 25},
         2,
         SB_KNEE_FOUND,
         8,
         2},
        {"unsorted input",
         6,
         {16, 1, 8, 2, 32, 4},
         {10, 10, 10, 10, 10, 10},
         {30, 12, 25, 15, 40, 18},
         2,
         SB_KNEE_FOUND,
         8,
         4},
        {"ratio 1.5",
         4,
         {1, 2, 4, 8},
         {10, 10, 10, 10},
         {12, 14, 16, 17},
         1.5,
         SB_KNEE_FOUND,
         4,
         2},
        {"unknown x sorts last and is skipped",
         4,
         {N, 1, 2, 4},
         {10, 10, 10, 10},
         {90, 12, 25, 25},
         2,
         SB_KNEE_FOUND,
         2,
         1},
        {"no step with data", 2, {1, 2}, {N, N}, {N, 3}, 2, SB_KNEE_NO_STEPS, N, N},
        {"no steps at all", 0, {0}, {0}, {0}, 2, SB_KNEE_NO_STEPS, N, N},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_knee_step steps[8];
        for (size_t k = 0; k < cases[i].n; k++)
            steps[k] = (struct sb_knee_step){
                .x = cases[i].x[k], .p50 = cases[i].p50[k], .p99 = cases[i].p99[k]};
        struct sb_knee knee;
        sb_knee_find(steps, cases[i].n, cases[i].k, 0.01, &knee);
        if (knee.status != cases[i].status)
            fail_msg("case %zu (%s): status %s, want %s", i, cases[i].name,
                     sb_knee_status_name(knee.status), sb_knee_status_name(cases[i].status));
        assert_close(knee.knee, cases[i].knee, cases[i].name, i);
        assert_close(knee.uwork, cases[i].uwork, cases[i].name, i);
        /* The indices point at the steps that carry those values, in sorted order. */
        if (!isnan(cases[i].knee))
            assert_close(steps[knee.knee_idx].x, cases[i].knee, "knee_idx", i);
        else
            assert_int_equal(knee.knee_idx, SIZE_MAX);
        if (!isnan(cases[i].uwork))
            assert_close(steps[knee.uwork_idx].x, cases[i].uwork, "uwork_idx", i);
        else
            assert_int_equal(knee.uwork_idx, SIZE_MAX);
        for (size_t k = 1; k < cases[i].n; k++)
            if (!isnan(steps[k].x) && !(isnan(steps[k - 1].x) || steps[k - 1].x <= steps[k].x))
                fail_msg("case %zu: steps not sorted at %zu", i, k);
    }
}

/*
 * The knee rule with failed requests: a step whose error rate exceeds the maximum (1 % by
 * default) is past the knee by itself, with or without a latency.
 */
static void test_knee_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n;
        double x[8], p50[8], p99[8];
        double k;
        enum sb_knee_status status;
        double knee, uwork;
        double err[8]; /* each step's error rate */
        double max_err;
    } cases[] = {
        {"H0 with 429s from 8 users on: past the knee whatever the latency",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, 10, 10},
         {12, 13, 14, 15, 16, 17},
         2,
         SB_KNEE_FOUND,
         8,
         4,
         {0, 0, 0, 0.6, 0.8, 0.9},
         0.01},
        {"every request failed from 16 on (no latency there), 0.5 % at 8 is under 1 %",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, N, N},
         {12, 13, 14, 15, N, N},
         2,
         SB_KNEE_FOUND,
         16,
         8,
         {0, 0, 0, 0.005, 1, 1},
         0.01},
        {"errors at the first step",
         4,
         {1, 2, 4, 8},
         {10, 10, 10, 10},
         {12, 12, 12, 12},
         2,
         SB_KNEE_AT_FIRST,
         1,
         N,
         {0.5, 0.5, 0.5, 0.5},
         0.01},
        {"the ratio knee comes before the errors",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 10, 10, 10, 10},
         {12, 13, 25, 25, 16, 17},
         2,
         SB_KNEE_FOUND,
         4,
         2,
         {0, 0, 0, 0, 0.5, 0.5},
         0.01},
        {"an error rate of exactly the maximum is not over; unknown rates are not looked at",
         4,
         {1, 2, 4, 8},
         {10, 10, 10, 10},
         {12, 12, 12, 12},
         2,
         SB_KNEE_NONE,
         N,
         8,
         {0.05, N, 0.05, 0.05},
         0.05},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_knee_step steps[8];
        for (size_t k = 0; k < cases[i].n; k++)
            steps[k] = (struct sb_knee_step){.x = cases[i].x[k],
                                             .p50 = cases[i].p50[k],
                                             .p99 = cases[i].p99[k],
                                             .error_rate = cases[i].err[k]};
        struct sb_knee knee;
        sb_knee_find(steps, cases[i].n, cases[i].k, cases[i].max_err, &knee);
        print_message("%s: %s, knee %g, U_work %g\n", cases[i].name,
                      sb_knee_status_name(knee.status), knee.knee, knee.uwork);
        if (knee.status != cases[i].status)
            fail_msg("case %zu (%s): status %s, want %s", i, cases[i].name,
                     sb_knee_status_name(knee.status), sb_knee_status_name(cases[i].status));
        assert_close(knee.knee, cases[i].knee, cases[i].name, i);
        assert_close(knee.uwork, cases[i].uwork, cases[i].name, i);
        /* A step with too many errors is marked so, and over, with or without a latency. */
        for (size_t k = 0; k < cases[i].n; k++) {
            bool want = steps[k].error_rate > cases[i].max_err;
            if (steps[k].errors_over != want || (want && steps[k].over != 1))
                fail_msg("case %zu (%s): step %zu errors_over %d over %d", i, cases[i].name, k,
                         steps[k].errors_over, steps[k].over);
        }
    }
    /* NAN as the maximum: errors are not looked at (the old rule). */
    struct sb_knee_step s[3] = {{.x = 1, .p50 = 10, .p99 = 12, .error_rate = 0.9},
                                {.x = 2, .p50 = 10, .p99 = 12, .error_rate = 0.9},
                                {.x = 4, .p50 = 10, .p99 = 12, .error_rate = 0.9}};
    struct sb_knee knee;
    sb_knee_find(s, 3, 2.0, NAN, &knee);
    assert_int_equal(knee.status, SB_KNEE_NONE);
    assert_false(s[0].errors_over);
}

static void test_knee_marks(void **state)
{
    (void)state;
    struct sb_knee_step s[4] = {
        {.x = 1, .p50 = 10, .p99 = 15},
        {.x = 2, .p50 = N, .p99 = 30},
        {.x = 4, .p50 = 10, .p99 = 25},
        {.x = 8, .p50 = 0, .p99 = 5},
    };
    struct sb_knee knee;
    sb_knee_find(s, 4, 2.0, 0.01, &knee);
    assert_close(s[0].ratio, 1.5, "ratio", 0);
    assert_int_equal(s[0].over, 0);
    assert_true(isnan(s[1].ratio));
    assert_int_equal(s[1].over, -1);
    assert_close(s[2].ratio, 2.5, "ratio", 2);
    assert_int_equal(s[2].over, 1);
    /* p50 of 0: no ratio, but 5 > 2 x 0 is over. */
    assert_true(isnan(s[3].ratio));
    assert_int_equal(s[3].over, 1);
    assert_int_equal(knee.status, SB_KNEE_FOUND);
    assert_close(knee.knee, 4, "knee", 0);
    assert_close(knee.uwork, 1, "uwork", 0);
    assert_string_equal(sb_knee_status_name(SB_KNEE_FOUND), "knee");
    assert_string_equal(sb_knee_status_name(SB_KNEE_AT_FIRST), "knee_at_first_step");
    assert_string_equal(sb_knee_status_name(SB_KNEE_NONE), "no_knee");
    assert_string_equal(sb_knee_status_name(SB_KNEE_NO_STEPS), "no_steps");
}

static void test_fit_table(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        double x[8], y[8];
        size_t used;
        double r, a, b;
    } cases[] = {
        /* means 3 and 4; Sxx 10, Sxy 6, Syy 6: b 0.6, a 2.2, r 6 / sqrt(60) */
        {5, {1, 2, 3, 4, 5}, {2, 4, 5, 4, 5}, 5, 0.7745966692414834, 2.2, 0.6},
        /* an exact line */
        {4, {0, 1, 2, 3}, {3, 5, 7, 9}, 4, 1, 3, 2},
        /* a falling line */
        {3, {1, 2, 3}, {9, 8, 7}, 3, -1, 10, -1},
        /* pairs with a NAN are left out */
        {7, {1, 2, N, 3, 4, 9, 5}, {2, 4, 7, 5, 4, N, 5}, 5, 0.7745966692414834, 2.2, 0.6},
        /* constant x: no line, no r */
        {3, {2, 2, 2}, {1, 2, 3}, 3, N, N, N},
        /* constant y: a flat line, r undefined */
        {3, {1, 2, 3}, {4, 4, 4}, 3, N, 4, 0},
        /* one pair */
        {1, {1}, {1}, 1, N, N, N},
        {0, {0}, {0}, 0, N, N, N},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_fit f;
        sb_fit_linear(cases[i].x, cases[i].y, cases[i].n, &f);
        assert_int_equal(f.n, cases[i].used);
        assert_close(f.r, cases[i].r, "r", i);
        assert_close(f.a, cases[i].a, "a", i);
        assert_close(f.b, cases[i].b, "b", i);
    }
}

static void test_cov_and_mean(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        double v[4];
        double cov, mean;
    } cases[] = {
        /* sd (n - 1) of 10, 12 is sqrt(2); mean 11 */
        {2, {10, 12}, 1.4142135623730951 / 11, 11},
        {3, {N, 4, 4}, 0, 4},
        {1, {5}, N, 5},
        {2, {N, N}, N, N},
        {2, {-1, 1}, N, 0},
        /* 2, 4, 6: sd 2, mean 4 */
        {3, {2, 4, 6}, 0.5, 4},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        assert_close(sb_cov(cases[i].v, cases[i].n), cases[i].cov, "cov", i);
        assert_close(sb_mean_finite(cases[i].v, cases[i].n), cases[i].mean, "mean", i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knee_table),   cmocka_unit_test(test_knee_errors),
        cmocka_unit_test(test_knee_marks),   cmocka_unit_test(test_fit_table),
        cmocka_unit_test(test_cov_and_mean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
