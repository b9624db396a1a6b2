/*
 * Unit tests for analyze's arithmetic (sb/analyze.h): the share of a window covered by telemetry
 * ticks, tick cadence, telemetry summaries with missing values, the rates and ratios derived from
 * counts, ISO-8601 times, and the number and CSV cell formats both output halves share.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "sb/analyze.h"
#include "sb/util.h"

#define TOL 1e-9

static void assert_near(double got, double want, const char *what, size_t i)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s case %zu: got %.17g, want NAN", what, i, got);
        return;
    }
    if (!(fabs(got - want) <= TOL))
        fail_msg("%s case %zu: got %.17g, want %.17g", what, i, got, want);
}

/* sb_lat_summarize (selection) gives sb_stats_summarize's (full sort) percentiles, bit for bit,
   on inputs that trouble quickselects: sorted, reversed, all equal, two values, organ pipes. */
static void test_lat_summarize_matches_sort(void **state)
{
    (void)state;
    struct sb_rng rng;
    sb_rng_seed(&rng, 5);
    static const size_t sizes[] = {1, 2, 3, 7, 31, 32, 33, 64, 100, 1000, 4097, 100000};
    for (size_t si = 0; si < SB_ARRAY_SIZE(sizes); si++) {
        size_t n = sizes[si];
        double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
        assert_non_null(a);
        assert_non_null(b);
        for (int shape = 0; shape < 6; shape++) {
            for (size_t i = 0; i < n; i++) {
                switch (shape) {
                case 0:
                    a[i] = sb_rng_uniform(&rng) * 1000;
                    break;
                case 1:
                    a[i] = (double)i;
                    break;
                case 2:
                    a[i] = (double)(n - i);
                    break;
                case 3:
                    a[i] = 42.5;
                    break;
                case 4:
                    a[i] = (double)sb_rng_below(&rng, 2);
                    break;
                default:
                    a[i] = (double)(i < n / 2 ? i : n - i);
                    break;
                }
            }
            memcpy(b, a, n * sizeof(double));
            struct sb_summary want, got;
            sb_stats_summarize(a, n, &want);
            sb_lat_summarize(b, n, &got);
            char w[64];
            snprintf(w, sizeof(w), "n %zu shape %d", n, shape);
            assert_int_equal(got.n, n);
            const double g[] = {got.p50, got.p90, got.p95, got.p99, got.p999, got.min, got.max};
            const double e[] = {want.p50,  want.p90, want.p95, want.p99,
                                want.p999, want.min, want.max};
            for (size_t k = 0; k < SB_ARRAY_SIZE(g); k++)
                if (memcmp(&g[k], &e[k], sizeof(double)) != 0)
                    fail_msg("%s stat %zu: %.17g, sorted %.17g", w, k, g[k], e[k]);
            if (!(fabs(got.mean - want.mean) <= 1e-12 * fabs(want.mean) + 1e-300))
                fail_msg("%s mean: %.17g, sorted %.17g", w, got.mean, want.mean);
        }
        free(a);
        free(b);
    }
    struct sb_summary none;
    sb_lat_summarize(NULL, 0, &none);
    assert_int_equal(none.n, 0);
    assert_true(isnan(none.p50) && isnan(none.mean) && isnan(none.max));
}

static void test_aligned_share(void **state)
{
    (void)state;
    static const struct {
        double ts[12];
        size_t n;
        double t0, t1, c, want;
    } cases[] = {
        /* every slot of [0, 1) has its tick: all of it */
        {{0.0, 0.2, 0.4, 0.6, 0.8}, 5, 0.0, 1.0, 0.2, 1.0},
        /* the tick at 0.4 missed: one slot of five */
        {{0.0, 0.2, 0.6, 0.8}, 4, 0.0, 1.0, 0.2, 0.8},
        /* ticks mid-slot, the window not on the grid */
        {{10.1, 10.3, 10.5, 10.7, 10.9}, 5, 10.05, 11.05, 0.2, 1.0},
        /* ticks cover only the second half */
        {{10.5, 10.7, 10.9}, 3, 10.0, 11.0, 0.2, 0.6},
        /* a last slot shorter than a cadence, covered: weighted by its length */
        {{0.0, 0.2, 0.4}, 3, 0.0, 0.5, 0.2, 1.0},
        /* ... and not covered: 0.4 of 0.5 */
        {{0.0, 0.2}, 2, 0.0, 0.5, 0.2, 0.8},
        /* a tick before the window and one after count for nothing */
        {{-0.1, 1.2}, 2, 0.0, 1.0, 0.2, 0.0},
        /* ticks every two cadences: half the slots */
        {{0.0, 0.4, 0.8}, 3, 0.0, 1.2, 0.2, 0.5},
        /* a tick a rounding error before the grid edge still opens its slot */
        {{1000.0, 1000.2 - 1e-12, 1000.4, 1000.6, 1000.8}, 5, 1000.0, 1001.0, 0.2, 1.0},
        /* no ticks */
        {{0}, 0, 0.0, 1.0, 0.2, 0.0},
        /* no window, or no cadence: not available */
        {{0.0}, 1, 1.0, 1.0, 0.2, NAN},
        {{0.0}, 1, NAN, 1.0, 0.2, NAN},
        {{0.0}, 1, 0.0, 1.0, 0.0, NAN},
        {{0.0}, 1, 0.0, 1.0, NAN, NAN},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_near(sb_aligned_share(cases[i].ts, cases[i].n, cases[i].t0, cases[i].t1, cases[i].c),
                    cases[i].want, "aligned", i);
}

static void test_cadence(void **state)
{
    (void)state;
    static const struct {
        double ts[8];
        size_t n;
        double want;
    } cases[] = {
        {{0, 0.2, 0.4, 0.6}, 4, 0.2},
        /* a gap (missed ticks) does not move the median */
        {{0, 0.2, 0.4, 1.4, 1.6, 1.8}, 6, 0.2},
        /* duplicates are not gaps */
        {{0, 0, 0.5, 0.5, 1.0}, 5, 0.5},
        {{0, 1, 3}, 3, 1.5},
        {{5}, 1, NAN},
        {{0}, 0, NAN},
        {{2, 2, 2}, 3, NAN},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_near(sb_cadence_of(cases[i].ts, cases[i].n), cases[i].want, "cadence", i);
}

static void test_tstat(void **state)
{
    (void)state;
    /* NaNs (a field missing from a tick) are left out; p95 by numpy's rule by hand */
    double v[] = {4, NAN, 1, 3, NAN, 2, 5};
    struct sb_tstat t;
    sb_tstat_of(v, SB_ARRAY_SIZE(v), &t);
    assert_int_equal(t.n, 5);
    assert_near(t.mean, 3, "mean", 0);
    assert_near(t.p95, 4.8, "p95", 0); /* position 3.8 in 1 2 3 4 5 */
    assert_near(t.min, 1, "min", 0);
    assert_near(t.max, 5, "max", 0);
    double none[] = {NAN, NAN};
    sb_tstat_of(none, 2, &t);
    assert_int_equal(t.n, 0);
    assert_true(isnan(t.mean) && isnan(t.p95) && isnan(t.min) && isnan(t.max));
    sb_tstat_of(NULL, 0, &t);
    assert_int_equal(t.n, 0);
    assert_true(isnan(t.mean));
}

static void test_derive(void **state)
{
    (void)state;
    struct sb_run r;
    memset(&r, 0, sizeof(r));
    struct sb_analyze_opts o = {0};
    o.kv_bytes_per_token = 1000;
    r.t0 = 100;
    r.t1 = 110;
    sb_tput_init(&r.tput, 100, 110); /* 25 completions, 400 tokens in 10 s */
    for (int i = 0; i < 25; i++)
        sb_tput_add(&r.tput, 100 + 0.4 * i, 16);
    sb_tput_add(&r.tput, 110, 16); /* the window's end is open: drain, not counted */
    r.concurrency = 8;
    r.context_tokens = 2048;
    r.tier_hits[0] = 90;
    r.tier_misses[0] = 10;
    r.tier_hits[1] = 5;
    r.tier_misses[1] = NAN; /* not exported: no ratio */
    r.tier_hits[2] = 5;
    r.tier_misses[2] = 0;
    sb_run_derive(&r, &o);
    assert_near(r.achieved_rps, 2.5, "rps", 0);
    assert_near(r.output_tok_s, 40, "tok/s", 0);
    assert_near(r.tier_hit_ratio[0], 0.9, "t0 ratio", 0);
    assert_true(isnan(r.tier_hit_ratio[1]));
    assert_near(r.tier_hit_ratio[2], 1.0, "t2 ratio", 0);
    assert_near(r.tier2_share, 0.05, "tier2 share", 0);
    assert_near(r.kv_working_set_bytes, 8.0 * 2048 * 1000, "working set", 0);
    /* no window, no tiers, unknown sizes: not available, never 0 */
    r.t0 = r.t1 = NAN;
    sb_tput_init(&r.tput, NAN, NAN);
    for (int k = 0; k < 3; k++)
        r.tier_hits[k] = r.tier_misses[k] = NAN;
    r.concurrency = -1;
    sb_run_derive(&r, &o);
    assert_true(isnan(r.achieved_rps) && isnan(r.output_tok_s));
    assert_true(isnan(r.tier_hit_ratio[0]) && isnan(r.tier2_share));
    assert_true(isnan(r.kv_working_set_bytes));
    /* tiers present but no hits at all: no share */
    r.tier_hits[0] = 0;
    r.tier_hits[2] = 0;
    sb_run_derive(&r, &o);
    assert_true(isnan(r.tier2_share));
}

static void test_iso8601(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        double want;
    } cases[] = {
        {"2025-11-15T09:46:40Z", 0, 1763199999.0 + 1},
        {"2025-11-15T09:46:40.500Z", 0, 1763200000.5},
        {"2025-11-15 09:46:40.25", 0, 1763200000.25}, /* no zone: UTC */
        {"2025-11-15T10:46:40+01:00", 0, 1763200000.0},
        {"2025-11-15T08:16:40-0130", 0, 1763200000.0},
        {"1970-01-01T00:16:40.000Z", 0, 1000.0},
        {"2025-11-15T09:46:40.412Z", 0, 1763200000.412},
        {"2025-11-15", -1, 0},
        {"2025-13-15T09:46:40Z", -1, 0},
        {"2025-11-15T09:46:40.Z", -1, 0},
        {"2025-11-15T09:46:40Zjunk", -1, 0},
        {"not a time at all", -1, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        double t = 0;
        int rc = sb_parse_iso8601(cases[i].s, &t);
        if (rc != cases[i].rc)
            fail_msg("case %zu '%s': rc %d, want %d", i, cases[i].s, rc, cases[i].rc);
        if (rc == 0 && t != cases[i].want)
            fail_msg("case %zu '%s': %.17g, want %.17g", i, cases[i].s, t, cases[i].want);
    }
}

static void test_fmt_double(void **state)
{
    (void)state;
    char buf[40];
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), NAN), "");
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), INFINITY), "");
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), 105.5), "105.5");
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), 4), "4");
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), 0.1), "0.1");
    assert_string_equal(sb_analyze_fmt_double(buf, sizeof(buf), 0.1 + 0.2), "0.30000000000000004");
    /* every double comes back from its text bit for bit */
    struct sb_rng rng;
    sb_rng_seed(&rng, 11);
    for (int i = 0; i < 100000; i++) {
        uint64_t bits = sb_rng_next(&rng);
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        if (i % 2)
            v = sb_rng_uniform(&rng) * 2e9; /* the magnitudes of times and latencies */
        sb_analyze_fmt_double(buf, sizeof(buf), v);
        double back = strtod(buf, NULL);
        if (memcmp(&back, &v, sizeof(v)) != 0)
            fail_msg("%.17g written as '%s' reads back as %.17g", v, buf, back);
    }
}

static void test_csv_cells(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"plain", "plain"},
        {"", ""},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"two\nlines", "\"two\nlines\""},
        {"cr\rhere", "\"cr\rhere\""},
        {"meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        sb_csv_put_str(f, cases[i].in);
        fclose(f);
        assert_string_equal(text, cases[i].want);
        free(text);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sb_csv_put_double(f, NAN);
    fputc(',', f);
    sb_csv_put_double(f, 2.5);
    fclose(f);
    assert_string_equal(text, ",2.5");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lat_summarize_matches_sort),
        cmocka_unit_test(test_aligned_share),
        cmocka_unit_test(test_cadence),
        cmocka_unit_test(test_tstat),
        cmocka_unit_test(test_derive),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_fmt_double),
        cmocka_unit_test(test_csv_cells),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
