/*
 * Integration test for `sparkbench analyze` on the KV-reuse workloads (issue 13): the hand-made
 * sessioned_chat sweep in tests/data/analyze_sess (4 and 8 sessions) gives the H5 table of TTFT
 * p99 against the live working set, the per-turn, reuse-distance and hit-ratio tables with their
 * gnuplot scripts (tier capacities drawn as vertical lines), the summary_v3.csv columns, and the
 * report's section; a run of another workload in the same analysis adds no row to any of them.
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

#include "proc.h"

static const char *bin;
static const char *srcdir;

/* Cell col (0-based) of a CSV line without quoted commas, into buf. */
static const char *cell(const char *line, int col, char *buf, size_t cap)
{
    const char *p = line;
    for (int c = 0; c < col && p; c++) {
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        fail_msg("no column %d in '%s'", col, line);
    size_t len = strcspn(p, ",");
    snprintf(buf, cap, "%.*s", (int)len, p);
    return buf;
}

static int col_of(const char *header, const char *name)
{
    char buf[128];
    for (int c = 0; c < 400; c++) {
        const char *p = header;
        for (int k = 0; k < c && p; k++) {
            p = strchr(p, ',');
            p = p ? p + 1 : NULL;
        }
        if (!p)
            break;
        if (strcmp(cell(header, c, buf, sizeof(buf)), name) == 0)
            return c;
    }
    fail_msg("no column '%s'", name);
    return -1;
}

static double num_at(char **lines, int row, const char *name)
{
    char buf[128];
    return strtod(cell(lines[row], col_of(lines[0], name), buf, sizeof(buf)), NULL);
}

static void test_sessions_sweep(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "ansess");
    char data[600], other[600], out[650], path[800];
    /* analyze writes summary.json into each run directory: work on copies */
    snprintf(data, sizeof(data), "%s/runs", dir);
    snprintf(other, sizeof(other), "%s/h0", dir);
    char cmd[2000];
    snprintf(cmd, sizeof(cmd),
             "cp -r '%s/tests/data/analyze_sess' '%s' && mkdir -p '%s' && cp -r "
             "'%s/tests/data/analyze/20261201_100000_H0_stackA_L8B_U4' '%s/'",
             srcdir, data, other, srcdir, other);
    assert_int_equal(system(cmd), 0);
    snprintf(out, sizeof(out), "%s/analysis", dir);
    char uwork[700];
    snprintf(uwork, sizeof(uwork), "%s/uwork.txt", dir);
    const char *argv[] = {bin,       "analyze", data,      other, "--out", out, "--no-figures",
                          "--uwork", uwork,     "--quiet", NULL};
    char *so = NULL, *se = NULL;
    int rc = sb_proc_run(argv, &so, &se);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, se);
    free(so);
    free(se);

    /* H5: one point per sessions value, x the live working set over the window */
    int n;
    snprintf(path, sizeof(path), "%s/figures/H5_p99_vs_session_working_set.csv", out);
    char **h5 = sb_test_csv_lines(path, &n);
    assert_int_equal(n, 3);
    assert_true(num_at(h5, 1, "sessions") == 4 && num_at(h5, 2, "sessions") == 8);
    assert_true(num_at(h5, 1, "working_set_tokens_mean") == 400);
    assert_true(num_at(h5, 2, "working_set_tokens_mean") == 800);
    assert_true(num_at(h5, 2, "working_set_tokens_max") == 1200);
    assert_true(fabs(num_at(h5, 1, "ttft_p99_ms") - 97.5) < 1e-9);
    assert_true(fabs(num_at(h5, 2, "ttft_p99_ms") - 195) < 1e-9);
    sb_strv_free(h5, n);
    snprintf(path, sizeof(path), "%s/figures/H5_p99_vs_session_working_set.gp", out);
    char *gp = sb_test_read_file(path);
    assert_non_null(gp);
    free(gp);

    /* per turn: three turns of each run, none of the H0 run */
    snprintf(path, sizeof(path), "%s/figures/SESS_ttft_by_turn.csv", out);
    char **turns = sb_test_csv_lines(path, &n);
    assert_int_equal(n, 1 + 6);
    assert_true(fabs(num_at(turns, 2, "ttft_p99_ms") - 39.7) < 1e-9);
    assert_true(fabs(num_at(turns, 2, "realized_over_oracle") - 0.5625) < 1e-9);
    sb_strv_free(turns, n);

    /* reuse distance: four bins each, tier capacities in tokens, and the lines in the script */
    snprintf(path, sizeof(path), "%s/figures/SESS_ttft_vs_reuse_distance.csv", out);
    char **dist = sb_test_csv_lines(path, &n);
    assert_int_equal(n, 1 + 8);
    assert_true(num_at(dist, 2, "distance_lo_tokens") == 1024);
    assert_true(num_at(dist, 2, "ttft_p50_ms") == 35);
    assert_true(num_at(dist, 1, "tier0_tokens") == 1024);
    assert_true(num_at(dist, 1, "tier2_tokens") == 16384);
    sb_strv_free(dist, n);
    snprintf(path, sizeof(path), "%s/figures/SESS_ttft_vs_reuse_distance.gp", out);
    gp = sb_test_read_file(path);
    assert_non_null(gp);
    assert_non_null(strstr(gp, "set arrow from 1024, graph 0 to 1024, graph 1"));
    assert_non_null(strstr(gp, "tier 1 holds 4096 tokens"));
    assert_non_null(strstr(gp, "tier 2 holds 16384 tokens"));
    free(gp);

    /* hit ratios: all, turns and bins of each run */
    snprintf(path, sizeof(path), "%s/figures/SESS_hit_ratio.csv", out);
    char **hit = sb_test_csv_lines(path, &n);
    assert_int_equal(n, 1 + 2 * (1 + 3 + 4));
    assert_non_null(strstr(hit[1], ",all,"));
    assert_true(fabs(num_at(hit, 1, "realized_over_oracle") - 3800.0 / 5200.0) < 1e-9);
    assert_true(fabs(num_at(hit, 1, "oracle_hit_ratio") - 5200.0 / 6600.0) < 1e-9);
    sb_strv_free(hit, n);

    /* summary_v3.csv: the columns, empty for the H0 run */
    snprintf(path, sizeof(path), "%s/figures/summary_v3.csv", out);
    char **sum = sb_test_csv_lines(path, &n);
    assert_int_equal(n, 4);
    char buf[128];
    int c = col_of(sum[0], "realized_over_oracle"), id = col_of(sum[0], "run_id");
    for (int r = 1; r < n; r++) {
        bool h0 = strstr(cell(sum[r], id, buf, sizeof(buf)), "_H0_") != NULL;
        cell(sum[r], c, buf, sizeof(buf));
        if (h0)
            assert_string_equal(buf, "");
        else
            assert_true(fabs(strtod(buf, NULL) - 3800.0 / 5200.0) < 1e-9);
    }
    sb_strv_free(sum, n);

    snprintf(path, sizeof(path), "%s/report.md", out);
    char *md = sb_test_read_file(path);
    assert_non_null(md);
    assert_non_null(strstr(md, "KV reuse: sessions and traces"));
    assert_non_null(strstr(md, "TTFT vs reuse distance"));
    free(md);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
