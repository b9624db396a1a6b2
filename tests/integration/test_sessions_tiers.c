/*
 * Integration test of issue 13's "Done when": with zipf order and more sessions than tier 0
 * holds, the mock's tier-1/2 hits rise and TTFT rises with reuse distance. Real `sparkbench mock`
 * (a small tier 0, a tier 1, a tier-2 file in the test's directory, --log) and `sparkbench run
 * --workload sessioned_chat` processes; every record is joined to the mock's log line by its
 * request id. TTFT is judged by the mock's modelled fetch cost (fetch_ns: the fixed per-block
 * tier-1/tier-2 cost, large here, plus the real copy or read), which depends only on the tiers
 * that served the blocks, so nothing here is timed. A mock without tiers 1 and 2 is the control:
 * the same workload gets no tier-1/2 hit and no fetch cost, so a mock that ignored its tiers
 * fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

#define RUN_LIMIT_S  240
#define BLOCK_TOKENS "16"
#define TIER0_BLOCKS "64"
#define NBINS        4

/* What one run saw, joined with the mock's log. */
struct tier_run {
    long long hit[3], miss;  /* blocks over every request */
    long long bin_lo[NBINS]; /* reuse distance where each bin starts */
    double bin_fetch[NBINS]; /* median fetch_ns per reused block of the bin's requests */
    double bin_ttft[NBINS];  /* median TTFT, ms: printed, never asserted (timing) */
    long long bin_hit[NBINS][3];
    int requests;
};

static const cJSON *log_of(cJSON **lines, int n, const char *id)
{
    for (int i = 0; i < n; i++) {
        const char *x = sb_test_str(lines[i], "x_request_id");
        if (x && id && strcmp(x, id) == 0)
            return lines[i];
    }
    return NULL;
}

struct later_turn {
    long long dist;
    double fetch_per_block;
    double ttft_ms;
    long long hit[3];
};

static int by_dist(const void *a, const void *b)
{
    const struct later_turn *x = a, *y = b;
    return (x->dist > y->dist) - (x->dist < y->dist);
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), by_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * A fresh mock with tiers 1 and 2 of t1 and t2 blocks, one run of `sessions` sessions on it with
 * run id `id` under dir, the mock stopped (its log is then complete), and the join. The run
 * directory is left in dir for analyze.
 */
static void tier_run(const char *dir, const char *id, const char *sessions, const char *t1,
                     const char *t2, struct tier_run *r)
{
    memset(r, 0, sizeof(*r));
    char logp[600], out[600], url[160], metrics[700];
    snprintf(logp, sizeof(logp), "%s/mock-%s.log", dir, id);
    snprintf(out, sizeof(out), "%s/%s", dir, id);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", out);
    struct sb_proc mock;
    /* Large fixed fetch costs, so fetch_ns is decided by the tiers and not by the copy or read;
       no disk filter, so every computed block reaches tier 2 (the filter's default would keep
       first uses, the prime's prompts included, off the disk). Prefill and decode are cheap so
       the run is quick. */
    const char *ma[] = {"--kv-block-tokens",
                        BLOCK_TOKENS,
                        "--tier0-blocks",
                        TIER0_BLOCKS,
                        "--tier1-blocks",
                        t1,
                        "--tier2-blocks",
                        t2,
                        "--tier2-path",
                        dir,
                        "--tier1-fetch-us",
                        "500",
                        "--tier2-fetch-us",
                        "2000",
                        "--no-disk-offload-filter",
                        "--prefill-base-ms",
                        "1",
                        "--decode-base-ms",
                        "1",
                        "--decode-per-seq-us",
                        "0",
                        "--log",
                        logp,
                        NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, ma), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", mock.port);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--workload",
                          "sessioned_chat",
                          "--output-dir",
                          out,
                          "--run-id",
                          id,
                          "--quiet",
                          "--max-tokens",
                          "16",
                          "--sessions",
                          sessions,
                          "--turns",
                          "6",
                          "--session-order",
                          "zipf:1.0",
                          "--history",
                          "synthetic",
                          "--prime",
                          "--seed",
                          "7",
                          "--salt",
                          "5e55",
                          "--system-tokens",
                          "32",
                          "--session-context-tokens",
                          "64",
                          "--turn-tokens",
                          "16",
                          "--requests",
                          "200",
                          "--concurrency",
                          "4",
                          NULL};
    char *so = NULL, *se = NULL;
    int rc = sb_proc_run_limit(argv, &so, &se, RUN_LIMIT_S);
    sb_proc_stop(&mock, 15);
    if (rc != 0)
        fail_msg("run %s exited %d: %s", id, rc, se ? se : "");
    free(so);
    free(se);

    int nl, nr;
    cJSON **lines = sb_test_read_jsonl(logp, &nl); /* the mock's --log */
    cJSON **recs = sb_test_read_jsonl(metrics, &nr);
    struct later_turn *lt = calloc((size_t)nr, sizeof(*lt));
    assert_non_null(lt);
    int nlt = 0;
    for (int i = 0; i < nr; i++) {
        const cJSON *rec = recs[i];
        assert_true(sb_test_true(rec, "ok"));
        const char *rid = sb_test_str(rec, "request_id");
        const cJSON *l = log_of(lines, nl, rid);
        if (!l)
            fail_msg("run %s: no mock log line has x_request_id '%s'", id, rid ? rid : "(null)");
        long long h[3] = {sb_test_int(l, "kv_hit_t0"), sb_test_int(l, "kv_hit_t1"),
                          sb_test_int(l, "kv_hit_t2")};
        long long miss = sb_test_int(l, "kv_miss"), fetch = sb_test_int(l, "fetch_ns");
        assert_true(h[0] >= 0 && h[1] >= 0 && h[2] >= 0 && miss >= 0 && fetch >= 0);
        /* the client's cached_tokens are the mock's hits of all tiers */
        assert_int_equal(sb_test_int(rec, "cached_tokens"),
                         (h[0] + h[1] + h[2]) * atoi(BLOCK_TOKENS));
        for (int t = 0; t < 3; t++)
            r->hit[t] += h[t];
        r->miss += miss;
        /* Later turns: their reuse distance is the session's own; a first turn's is the shared
           system prompt's, 0. */
        if (strcmp(sb_test_str(rec, "phase"), "measure") == 0 && sb_test_int(rec, "turn") > 1) {
            struct later_turn *x = &lt[nlt++];
            x->dist = sb_test_int(rec, "reuse_distance_tokens");
            assert_true(x->dist >= 0);
            long long reused = h[0] + h[1] + h[2];
            x->fetch_per_block = reused ? (double)fetch / (double)reused : 0;
            x->ttft_ms = sb_test_num(rec, "lat_ttft_ms");
            memcpy(x->hit, h, sizeof(h));
        }
    }
    r->requests = nr;
    assert_true(nlt >= 4 * NBINS);
    /* Quartiles of the later turns by reuse distance. */
    qsort(lt, (size_t)nlt, sizeof(*lt), by_dist);
    double *v = calloc((size_t)nlt, sizeof(*v));
    assert_non_null(v);
    for (int b = 0; b < NBINS; b++) {
        int lo = b * nlt / NBINS, hi = (b + 1) * nlt / NBINS;
        r->bin_lo[b] = lt[lo].dist;
        for (int k = lo; k < hi; k++) {
            v[k - lo] = lt[k].fetch_per_block;
            for (int t = 0; t < 3; t++)
                r->bin_hit[b][t] += lt[k].hit[t];
        }
        r->bin_fetch[b] = median(v, hi - lo);
        for (int k = lo; k < hi; k++)
            v[k - lo] = lt[k].ttft_ms;
        r->bin_ttft[b] = median(v, hi - lo);
    }
    free(v);
    free(lt);
    sb_test_free_jsonl(recs, nr);
    sb_test_free_jsonl(lines, nl);

    long long all = r->hit[0] + r->hit[1] + r->hit[2];
    print_message("%s: %d requests, hits t0 %lld t1 %lld t2 %lld (t1+t2 share %.3f), miss %lld\n",
                  id, r->requests, r->hit[0], r->hit[1], r->hit[2],
                  all ? (double)(r->hit[1] + r->hit[2]) / (double)all : 0.0, r->miss);
    for (int b = 0; b < NBINS; b++) {
        long long bh = r->bin_hit[b][0] + r->bin_hit[b][1] + r->bin_hit[b][2];
        print_message("  distance >= %6lld tokens: median fetch %.0f ns per reused block, TTFT "
                      "p50 %.2f ms, hits t0 %lld t1 %lld t2 %lld (t0 share %.3f)\n",
                      r->bin_lo[b], r->bin_fetch[b], r->bin_ttft[b], r->bin_hit[b][0],
                      r->bin_hit[b][1], r->bin_hit[b][2],
                      bh ? (double)r->bin_hit[b][0] / (double)bh : 0.0);
    }
}

static double t0_share(const long long h[3])
{
    long long all = h[0] + h[1] + h[2];
    return all ? (double)h[0] / (double)all : NAN;
}

/* Cell col (0-based) of a CSV line without quoted commas, into buf ("" when absent). */
static const char *cell(const char *line, int col, char *buf, size_t cap)
{
    const char *p = line;
    for (int c = 0; c < col && p; c++) {
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        p = "";
    snprintf(buf, cap, "%.*s", (int)strcspn(p, ","), p);
    return buf;
}

static int col_of(const char *header, const char *name)
{
    char buf[128];
    int ncol = 1 + sb_test_count(header, ",");
    for (int c = 0; c < ncol; c++)
        if (strcmp(cell(header, c, buf, sizeof(buf)), name) == 0)
            return c;
    fail_msg("no column '%s' in '%s'", name, header);
    return -1;
}

/* Rows of run id (and of scope when not NULL); *roo gets the last one's realized_over_oracle. */
static int rows_of(char **lines, int n, const char *id, const char *scope, double *roo)
{
    char buf[128];
    int idc = col_of(lines[0], "run_id"), rc = col_of(lines[0], "realized_over_oracle");
    int sc = scope ? col_of(lines[0], "scope") : -1;
    int k = 0;
    for (int i = 1; i < n; i++) {
        if (strcmp(cell(lines[i], idc, buf, sizeof(buf)), id) != 0)
            continue;
        if (scope && strcmp(cell(lines[i], sc, buf, sizeof(buf)), scope) != 0)
            continue;
        k++;
        if (roo)
            *roo = strtod(cell(lines[i], rc, buf, sizeof(buf)), NULL);
    }
    return k;
}

static void test_tiers_fill_with_sessions(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "sess-tiers");
    struct tier_run few, many, ctl;
    /* 4 sessions of at most ~13 blocks: they fit in tier 0's 64 blocks together. 64 sessions
       need well over 1000; tier 2 (768) holds most of them, not all, so the longest distances
       also miss. */
    tier_run(dir, "tiers-few", "4", "128", "768", &few);
    tier_run(dir, "tiers-many", "64", "128", "768", &many);
    tier_run(dir, "tiers-ctl", "64", "0", "0", &ctl);

    /* few sessions: every reused block from tier 0 */
    assert_true(few.hit[0] > 0);
    assert_true(t0_share(few.hit) >= 0.95);
    /* many: tiers 1 and 2 serve a real share of the reuse */
    assert_true(many.hit[1] > 0);
    assert_true(many.hit[2] > 0);
    assert_true(t0_share(many.hit) < t0_share(few.hit));
    assert_true(t0_share(many.hit) < 0.9);
    /* the control: the same workload on a mock with no tier 1 or 2 gets no such hit */
    assert_int_equal(ctl.hit[1] + ctl.hit[2], 0);
    for (int b = 0; b < NBINS; b++)
        assert_true(ctl.bin_fetch[b] == 0);
    assert_true(ctl.miss > many.miss); /* what tiers 1 and 2 served is recomputed */

    /* TTFT's modelled part rises with reuse distance: the shortest distances are served by tier
       0 (no fetch), the longest by tier 2 (the dearest per block) */
    assert_true(many.bin_lo[NBINS - 1] > many.bin_lo[0]);
    assert_true(many.bin_fetch[0] < many.bin_fetch[1]);
    assert_true(many.bin_fetch[0] < many.bin_fetch[NBINS - 1]);
    assert_true(many.bin_fetch[NBINS - 1] >= 1000.0 * 1000); /* tier 2's 2000 us, mostly */
    assert_true(t0_share(many.bin_hit[0]) > t0_share(many.bin_hit[NBINS - 1]));
    assert_true(many.bin_hit[NBINS - 1][2] > many.bin_hit[NBINS - 1][1]);

    /* analyze: both runs in the reuse-distance and hit-ratio tables; the realized share of the
       oracle's reuse is lower with many sessions (tier 2 lost some of it) */
    char runs[700], out[700], uwork[700], path[900];
    snprintf(runs, sizeof(runs), "%s/runs", dir);
    snprintf(out, sizeof(out), "%s/analysis", dir);
    snprintf(uwork, sizeof(uwork), "%s/uwork.txt", dir);
    char cmd[3000];
    snprintf(cmd, sizeof(cmd), "mkdir '%s' && mv '%s/tiers-few' '%s/tiers-many' '%s/'", runs, dir,
             dir, runs);
    assert_int_equal(system(cmd), 0);
    const char *av[] = {bin,       "analyze", runs,      "--out", out, "--no-figures",
                        "--uwork", uwork,     "--quiet", NULL};
    char *so = NULL, *se = NULL;
    int rc = sb_proc_run(av, &so, &se);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, se ? se : "");
    free(so);
    free(se);
    int n;
    snprintf(path, sizeof(path), "%s/figures/SESS_ttft_vs_reuse_distance.csv", out);
    char **dist = sb_test_csv_lines(path, &n);
    assert_true(rows_of(dist, n, "tiers-few", NULL, NULL) >= 1);
    assert_true(rows_of(dist, n, "tiers-many", NULL, NULL) >
                rows_of(dist, n, "tiers-few", NULL, NULL));
    sb_strv_free(dist, n);
    snprintf(path, sizeof(path), "%s/figures/SESS_hit_ratio.csv", out);
    char **hit = sb_test_csv_lines(path, &n);
    double roo_few = NAN, roo_many = NAN;
    assert_int_equal(rows_of(hit, n, "tiers-few", "all", &roo_few), 1);
    assert_int_equal(rows_of(hit, n, "tiers-many", "all", &roo_many), 1);
    print_message("analyze: realized_over_oracle few %.4f, many %.4f\n", roo_few, roo_many);
    assert_true(roo_few > 0.99);
    assert_true(roo_many < roo_few);
    sb_strv_free(hit, n);

    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BIN SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiers_fill_with_sessions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
