/*
 * Unit tests for analyze's KV-reuse view (sb/analyze_sess.h) on hand-made runs with known answers
 * (tests/data/analyze_sess: a sessioned_chat run of 4 sessions and one of 8 whose TTFTs are
 * doubled): prime records left out like warm-up, TTFT per turn and per log2 reuse-distance bin,
 * the oracle and realized hit ratios overall, per turn and per bin, the working set over the
 * measured window from run.json, tier capacities in tokens; a trace-style run (reusable tokens
 * without sessions); a run of another workload left alone; the bins themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/analyze.h"
#include "sb/analyze_sess.h"

#define DATA SB_TEST_DATA_DIR "/analyze_sess"
#define S4   DATA "/20261205_090000_H5_stackB_mock_S4"
#define S8   DATA "/20261205_091000_H5_stackB_mock_S8"
#define H0   SB_TEST_DATA_DIR "/analyze/20261201_100000_H0_stackA_L8B_U4"

static void close_to(double a, double b, int line)
{
    if (!(fabs(a - b) < 1e-9 * (1 + fabs(b))))
        fail_msg("line %d: %.17g, want %.17g", line, a, b);
}
#define assert_close(a, b) close_to((a), (b), __LINE__)

static void load(const char *dir, struct sb_run *r)
{
    struct sb_analyze_opts o = {.kv_bytes_per_token = 131072};
    struct sb_err err;
    if (sb_run_load(dir, &o, r, &err) != 0)
        fail_msg("sb_run_load(%s): %s", dir, err.msg);
}

static void test_dist_bins(void **state)
{
    (void)state;
    static const struct {
        double d, lo, hi;
    } cases[] = {{0, 0, 1},          {0.5, 0, 1},        {1, 1, 2},
                 {3, 2, 4},          {1024, 1024, 2048}, {1500, 1024, 2048},
                 {2047, 1024, 2048}, {2048, 2048, 4096}, {1e6, 524288, 1048576}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double lo, hi;
        sb_sess_dist_bin(cases[i].d, &lo, &hi);
        if (lo != cases[i].lo || hi != cases[i].hi)
            fail_msg("bin of %g: [%g, %g), want [%g, %g)", cases[i].d, lo, hi, cases[i].lo,
                     cases[i].hi);
    }
    assert_close(sb_sess_bin_x(0, 1), 0.5);
    assert_close(sb_sess_bin_x(1024, 2048), sqrt(1024.0 * 2048.0));
}

/*
 * S4's records: 4 prime (TTFT 1000 ms, must not count), then measured
 *   s1 t2 ttft 10 prompt 1000 reusable 800 cached 800 distance 0
 *   s2 t2 ttft 20 prompt 1000 reusable 800 cached 600 distance 1500
 *   s3 t2 ttft 30 prompt 1000 reusable 800 cached 400 distance 3000
 *   s4 t2 ttft 40 prompt 1000 reusable 800 cached   0 distance 5000
 *   s1 t3 ttft 50 prompt 2000 reusable 1800 cached 1800 distance 1600
 *   s2 t3 failed (HTTP 500): left out
 *   s5 t1 ttft 100 prompt 600 reusable 200 cached 200 distance null (a fresh session)
 */
static void test_sessioned_run(void **state)
{
    (void)state;
    struct sb_run r;
    load(S4, &r);
    const struct sb_sess *s = &r.sess;
    assert_true(s->present);
    assert_true(s->sessioned);
    assert_int_equal(s->prime, 4);
    assert_int_equal(s->records, 6);
    /* prime is warm-up for the run's own statistics too */
    assert_int_equal(r.warmup, 4);
    assert_int_equal(r.lat[SB_LAT_TTFT].n, 6);
    assert_close(r.lat[SB_LAT_TTFT].max, 100);
    assert_close(s->all.ttft_p50, 35);

    assert_close(s->all.cached, 3800);
    assert_close(s->all.reusable, 5200);
    assert_close(s->all.prompt, 6600);
    assert_close(s->oracle_hit_ratio, 5200.0 / 6600.0);
    assert_close(s->realized_hit_ratio, 3800.0 / 6600.0);
    assert_close(s->realized_over_oracle, 3800.0 / 5200.0);

    assert_int_equal(s->nturns, 3);
    static const struct {
        double turn;
        size_t n;
        double p50, p99, cached, reusable;
    } turns[] = {{1, 1, 100, 100, 200, 200},
                 {2, 4, 25, 39.7, 1800, 3200}, /* numpy: 30 + 0.97 x 10 */
                 {3, 1, 50, 50, 1800, 1800}};
    for (size_t k = 0; k < 3; k++) {
        const struct sb_sess_group *g = &s->turns[k];
        assert_close(g->lo, turns[k].turn);
        assert_int_equal(g->n, turns[k].n);
        assert_close(g->ttft_p50, turns[k].p50);
        assert_close(g->ttft_p99, turns[k].p99);
        assert_close(g->cached, turns[k].cached);
        assert_close(g->reusable, turns[k].reusable);
    }

    assert_int_equal(s->ndist, 4);
    static const struct {
        double lo, hi;
        size_t n;
        double p50, cached, reusable;
    } bins[] = {{0, 1, 1, 10, 800, 800},
                {1024, 2048, 2, 35, 2400, 2600},
                {2048, 4096, 1, 30, 400, 800},
                {4096, 8192, 1, 40, 0, 800}};
    for (size_t k = 0; k < 4; k++) {
        const struct sb_sess_group *g = &s->dist[k];
        assert_close(g->lo, bins[k].lo);
        assert_close(g->hi, bins[k].hi);
        assert_int_equal(g->n, bins[k].n);
        assert_close(g->ttft_p50, bins[k].p50);
        assert_close(g->cached, bins[k].cached);
        assert_close(g->reusable, bins[k].reusable);
    }

    /* run.json: 4 sessions, 1024 bytes a token; working set samples at t_s 0..4 of -1..5, from
       measure_start_ts (working_set_t0): the measured window (S8 keeps the older start_ts form) */
    assert_int_equal(s->sessions, 4);
    assert_close(s->kv_bytes_per_token, 1024);
    assert_int_equal(s->ws_points, 5);
    assert_close(s->ws_tokens_mean, 400);
    assert_close(s->ws_tokens_max, 600);
    /* and H5's working set in bytes is the live one: no context to multiply here */
    assert_close(r.kv_working_set_bytes, 400.0 * 1024);
    /* config: tier0 1 MiB, tier1 4 MiB, tier2 allocate 16 MiB */
    assert_close(s->tier_tokens[0], 1024);
    assert_close(s->tier_tokens[1], 4096);
    assert_close(s->tier_tokens[2], 16384);
    sb_run_release(&r);

    load(S8, &r);
    assert_int_equal(r.sess.sessions, 8);
    assert_close(r.sess.ws_tokens_mean, 800);
    assert_close(r.sess.ws_tokens_max, 1200);
    assert_close(r.sess.turns[1].ttft_p99, 79.4);
    sb_run_release(&r);
}

/* Another workload's records print the fields as null, or lack them: nothing to show. */
static void test_other_workload_untouched(void **state)
{
    (void)state;
    struct sb_run r;
    load(H0, &r);
    assert_false(r.sess.present);
    assert_int_equal(r.sess.records, 0);
    assert_int_equal(r.sess.nturns + r.sess.ndist, 0);
    assert_true(isnan(r.sess.realized_over_oracle));
    assert_true(isnan(r.sess.ws_tokens_mean));
    assert_int_equal(r.sess.sessions, -1);
    assert_close(r.kv_working_set_bytes, 4.0 * 256 * 131072); /* concurrency x context x bytes */
    sb_run_release(&r);
}

/* Trace replay: reusable tokens and distances without sessions; no run.json, so the token size
   is analyze's --kv-bytes-per-token and there is no working set. A warm-up record is left out. */
static void test_trace_style_run(void **state)
{
    (void)state;
    char dir[] = "/tmp/sbtest-sess-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char *const lines[] = {
        "{\"ts\":1.0,\"rc\":200,\"ok\":true,\"phase\":\"warmup\",\"lat_ttft_ms\":500,"
        "\"prompt_tokens\":1024,\"cached_tokens\":0,\"reusable_tokens\":0,"
        "\"reuse_distance_tokens\":null,\"session\":null,\"turn\":null,\"trace_idx\":0}",
        "{\"ts\":2.0,\"rc\":200,\"ok\":true,\"phase\":\"measure\",\"lat_ttft_ms\":5,"
        "\"prompt_tokens\":1024,\"cached_tokens\":512,\"reusable_tokens\":512,"
        "\"reuse_distance_tokens\":100,\"session\":null,\"turn\":null,\"trace_idx\":1}",
        "{\"ts\":3.0,\"rc\":200,\"ok\":true,\"phase\":\"measure\",\"lat_ttft_ms\":9,"
        "\"prompt_tokens\":2048,\"cached_tokens\":0,\"reusable_tokens\":1536,"
        "\"reuse_distance_tokens\":100000,\"session\":null,\"turn\":null,\"trace_idx\":2}",
        "",
        "{\"ts\":4.0,\"rc\":200,\"ok\":true,\"phase\":\"measure\",\"lat_ttft_ms\":7,"
        "\"prompt_tokens\":512,\"cached_tokens\":null,\"reusable_tokens\":0,"
        "\"reuse_distance_tokens\":null,\"session\":null,\"turn\":null,\"trace_idx\":3}",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
    struct sb_run r;
    load(dir, &r);
    const struct sb_sess *s = &r.sess;
    assert_true(s->present);
    assert_false(s->sessioned);
    assert_int_equal(s->records, 3);
    assert_int_equal(s->nturns, 0);
    assert_int_equal(s->all.nhit, 2); /* the last has no cached_tokens */
    assert_close(s->realized_over_oracle, 512.0 / 2048.0);
    assert_close(s->oracle_hit_ratio, 2048.0 / 3072.0);
    assert_close(s->realized_hit_ratio, 512.0 / 3072.0);
    assert_int_equal(s->ndist, 2);
    assert_close(s->dist[0].lo, 64);
    assert_close(s->dist[1].lo, 65536);
    assert_close(s->dist[1].ttft_p50, 9);
    assert_true(isnan(s->ws_tokens_mean));
    assert_int_equal(s->sessions, -1);
    assert_close(s->kv_bytes_per_token, 131072);
    assert_true(isnan(s->tier_tokens[0])); /* no config */
    sb_run_release(&r);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dist_bins),
        cmocka_unit_test(test_sessioned_run),
        cmocka_unit_test(test_other_workload_untouched),
        cmocka_unit_test(test_trace_style_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
