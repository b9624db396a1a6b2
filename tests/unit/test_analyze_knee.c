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

/*
 * The saturation knee beside the §2 rule (issue 11 item 11): the first step after which
 * throughput gains under 5 % while the knee metric's p50 rises over 5 %. The first case is
 * llama.cpp on 4 slots: p99/p50 is above 2 from one user on (the §2 rule says "knee at the first
 * step"), the queue only forms from 4 to 8 users (p50 x 11, ratio 1.8, req/s flat), and the
 * saturation knee is 4. The second is a clean curve where both say 8.
 */
static void test_saturation_table(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n;
        double x[8], p50[8], p99[8], rps[8];
        enum sb_knee_status rule;
        double uwork;
        enum sb_sat_status status;
        double sat;
    } cases[] = {
        {"llama.cpp, 4 slots: noisy from step 1, throughput flat from 4 to 8",
         4,
         {1, 2, 4, 8},
         {40, 45, 60, 700},
         {100, 110, 150, 1260},
         {1.0, 1.9, 3.4, 3.45},
         SB_KNEE_AT_FIRST,
         N,
         SB_SAT_FOUND,
         4},
        {"clean curve: the rule and the saturation knee agree",
         6,
         {1, 2, 4, 8, 16, 32},
         {10, 10, 11, 12, 25, 50},
         {12, 14, 16, 20, 60, 120},
         {1, 2, 4, 7.9, 8.0, 8.1},
         SB_KNEE_FOUND,
         8,
         SB_SAT_FOUND,
         8},
        {"throughput rises at every step: not saturated within the sweep",
         4,
         {1, 2, 4, 8},
         {10, 11, 12, 14},
         {12, 13, 14, 16},
         {1, 2, 3.8, 7},
         SB_KNEE_NONE,
         8,
         SB_SAT_NONE,
         N},
        {"flat throughput with flat latency is not saturation (a client-bound run)",
         3,
         {1, 2, 4},
         {10, 10, 10},
         {12, 12, 12},
         {5, 5, 5},
         SB_KNEE_NONE,
         4,
         SB_SAT_NONE,
         N},
        {"a gain of exactly 5 % still counts as rising",
         3,
         {1, 2, 4},
         {10, 20, 40},
         {12, 24, 48},
         {4, 4.2, 4.2},
         SB_KNEE_NONE,
         4,
         SB_SAT_FOUND,
         2},
        {"a step without throughput is skipped; unsorted input",
         5,
         {8, 1, 4, 2, 16},
         {60, 10, 12, 11, 130},
         {70, 12, 14, 13, 150},
         {7.5, 1, N, 2, 7.6},
         SB_KNEE_NONE,
         16,
         SB_SAT_FOUND,
         8},
        {"one step: no curve", 1, {4}, {10}, {12}, {3}, SB_KNEE_NONE, 4, SB_SAT_NO_STEPS, N},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_knee_step steps[8];
        for (size_t k = 0; k < cases[i].n; k++)
            steps[k] = (struct sb_knee_step){.x = cases[i].x[k],
                                             .p50 = cases[i].p50[k],
                                             .p99 = cases[i].p99[k],
                                             .error_rate = 0,
                                             .rps = cases[i].rps[k]};
        struct sb_knee knee;
        struct sb_saturation sat;
        sb_knee_find(steps, cases[i].n, 2.0, 0.01, &knee);
        sb_saturation_find(steps, cases[i].n, SB_SAT_MIN_GAIN, &sat);
        print_message("%s: rule %s (U_work %g), saturation %s at %g\n", cases[i].name,
                      sb_knee_status_name(knee.status), knee.uwork,
                      sb_saturation_status_name(sat.status), sat.x);
        if (knee.status != cases[i].rule)
            fail_msg("case %zu (%s): rule %s", i, cases[i].name, sb_knee_status_name(knee.status));
        assert_close(knee.uwork, cases[i].uwork, cases[i].name, i);
        if (sat.status != cases[i].status)
            fail_msg("case %zu (%s): saturation %s", i, cases[i].name,
                     sb_saturation_status_name(sat.status));
        assert_close(sat.x, cases[i].sat, cases[i].name, i);
        if (sat.status == SB_SAT_FOUND) {
            if (sat.idx >= cases[i].n || steps[sat.idx].x != sat.x || !steps[sat.idx].saturated)
                fail_msg("case %zu (%s): saturation step not marked", i, cases[i].name);
            if (!(sat.gain < SB_SAT_MIN_GAIN) || !(sat.lat_growth > SB_SAT_MIN_GAIN))
                fail_msg("case %zu (%s): gain %g growth %g", i, cases[i].name, sat.gain,
                         sat.lat_growth);
        }
        for (size_t k = 0; k < cases[i].n; k++)
            if (steps[k].saturated != (sat.status == SB_SAT_FOUND && k == sat.idx))
                fail_msg("case %zu (%s): step %zu marked saturated", i, cases[i].name, k);
    }
    assert_string_equal(sb_saturation_status_name(SB_SAT_FOUND), "saturation");
    assert_string_equal(sb_saturation_status_name(SB_SAT_NONE), "no_saturation");
    assert_string_equal(sb_saturation_status_name(SB_SAT_NO_STEPS), "no_steps");
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
        cmocka_unit_test(test_cov_and_mean), cmocka_unit_test(test_saturation_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
