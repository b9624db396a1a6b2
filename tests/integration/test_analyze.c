/*
 * Integration tests for `sparkbench analyze` with real processes: a `sparkbench mock`, two
 * `sparkbench run --sysmon` steps of an H0 sweep, then `sparkbench analyze` on their results
 * directory. summary_v3.csv must have one row per run whose samples and p50 TTFT equal what this
 * test counts and computes from each metrics.jsonl itself; a PATH that does not exist is a usage
 * error naming it; a metrics.jsonl that is not JSON lines is named, exits 1, and the other runs
 * are still in the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

static const char *const fast_mock[] = {"--prefill-base-ms",
                                        "1",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "1",
                                        "--decode-per-seq-us",
                                        "0",
                                        NULL};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What this test reads from a metrics.jsonl on its own: the ok measured records' TTFTs. */
struct counted {
    int ok_measured;
    double *ttft;
    int nttft;
};

static struct counted count_metrics(const char *path)
{
    struct counted c = {0, NULL, 0};
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    int lines = sb_test_count(text, "\n");
    c.ttft = calloc((size_t)lines + 1, sizeof(double));
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const cJSON *phase = cJSON_GetObjectItemCaseSensitive(j, "phase");
        bool warm = cJSON_IsString(phase) && strcmp(phase->valuestring, "warmup") == 0;
        if (!warm && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"))) {
            c.ok_measured++;
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "lat_ttft_ms");
            if (cJSON_IsNumber(t))
                c.ttft[c.nttft++] = t->valuedouble;
        }
        cJSON_Delete(j);
    }
    free(text);
    return c;
}

/* numpy's linear percentile: sort, position (n-1)p/100, interpolate between neighbours. */
static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    double pos = (n - 1) * p / 100.0;
    int lo = (int)floor(pos);
    return lo + 1 < n ? v[lo] + (v[lo + 1] - v[lo]) * (pos - lo) : v[lo];
}

/* The CSV's rows as cells (no quoted commas in what these runs write). */
struct table {
    char *text;
    char **cells[8];
    int ncells[8];
    int nrows; /* header included */
};

static void table_read(struct table *t, const char *path)
{
    memset(t, 0, sizeof(*t));
    t->text = sb_test_read_file(path);
    assert_non_null(t->text);
    char *save = NULL;
    for (char *line = strtok_r(t->text, "\n", &save); line && t->nrows < 8;
         line = strtok_r(NULL, "\n", &save)) {
        char **cells = calloc(512, sizeof(char *));
        int n = 0;
        for (char *s = line; s && n < 512;) {
            cells[n++] = s;
            char *comma = strchr(s, ',');
            if (comma)
                *comma++ = '\0';
            s = comma;
        }
        t->cells[t->nrows] = cells;
        t->ncells[t->nrows++] = n;
    }
}

static void table_free(struct table *t)
{
    for (int i = 0; i < t->nrows; i++)
        free(t->cells[i]);
    free(t->text);
}

static int column(const struct table *t, const char *name)
{
    for (int i = 0; i < t->ncells[0]; i++)
        if (strcmp(t->cells[0][i], name) == 0)
            return i;
    fail_msg("no column '%s'", name);
    return -1;
}

/* The row whose run_id is id. */
static char **row_of(const struct table *t, const char *id)
{
    for (int r = 1; r < t->nrows; r++)
        if (strcmp(t->cells[r][0], id) == 0)
            return t->cells[r];
    fail_msg("no row for run '%s'", id);
    return NULL;
}

/* `sparkbench run` for one H0 step: concurrency n, phase U<n>, into results/<id>. */
static void run_step(int port, const char *results, const char *id, const char *conc)
{
    char url[128], prompts[600], phase[16], duration[32];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", port);
    /* 1.5 s natively; longer under valgrind (SB_TEST_TIME_SCALE, at most 4x), whose slowed
       `run` would otherwise measure few or no requests after the warmup. */
    double scale = sb_test_time_scale();
    snprintf(duration, sizeof(duration), "%.1f", 1.5 * (scale < 4 ? scale : 4));
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    snprintf(phase, sizeof(phase), "U%s", conc);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--stack",
                          "A",
                          "--model",
                          "sparkbench-mock",
                          "--context-tokens",
                          "256",
                          "--concurrency",
                          conc,
                          "--duration-s",
                          duration,
                          "--warmup-s",
                          "0.3",
                          "--hypothesis",
                          "H0",
                          "--phase",
                          phase,
                          "--run-id",
                          id,
                          "--results-dir",
                          results,
                          "--prompts-dir",
                          prompts,
                          "--sysmon",
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    if (rc != 0)
        fail_msg("sparkbench run exited %d: %s", rc, err ? err : "");
    free(out);
    free(err);
}

static int analyze(const char *const *args, char **out, char **err)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "analyze";
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sb_proc_run(argv, out, err);
}

static void test_sweep_analyzed(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char *dir = sb_test_tmpdir("/tmp", "analyze");
    char results[600], out_dir[600], uwork[600], csv[700];
    snprintf(results, sizeof(results), "%s/results", dir);
    snprintf(out_dir, sizeof(out_dir), "%s/analysis", dir);
    snprintf(uwork, sizeof(uwork), "%s/uwork.txt", dir);
    snprintf(csv, sizeof(csv), "%s/figures/summary_v3.csv", out_dir);
    assert_int_equal(mkdir(results, 0755), 0);
    static const char *const ids[2] = {"it_H0_stackA_mock_U1", "it_H0_stackA_mock_U4"};
    run_step(mock.port, results, ids[0], "1");
    run_step(mock.port, results, ids[1], "4");
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);

    const char *args[] = {results, "--out", out_dir, "--no-figures", "--uwork", uwork, NULL};
    char *out = NULL, *err = NULL;
    int rc = analyze(args, &out, &err);
    if (rc != 0)
        fail_msg("analyze exited %d: %s", rc, err ? err : "");
    assert_non_null(strstr(out, "2 runs loaded"));
    assert_non_null(strstr(out, "summary_v3.csv"));
    free(out);
    free(err);

    struct table t;
    table_read(&t, csv);
    assert_int_equal(t.nrows, 3); /* header and two runs */
    assert_string_equal(t.cells[0][0], "run_id");
    assert_string_equal(t.cells[0][13], "sysmon_samples");
    int c_samples = column(&t, "samples"), c_p50 = column(&t, "p50_ttft_ms");
    int c_sys = column(&t, "sysmon_samples"), c_hyp = column(&t, "hypothesis");
    int c_phase = column(&t, "phase"), c_aligned = column(&t, "sysmon_aligned");
    for (int k = 0; k < 2; k++) {
        char mpath[800], spath[800];
        snprintf(mpath, sizeof(mpath), "%s/%s/metrics.jsonl", results, ids[k]);
        snprintf(spath, sizeof(spath), "%s/%s/summary.json", results, ids[k]);
        struct counted c = count_metrics(mpath);
        assert_true(c.ok_measured > 0);
        char **row = row_of(&t, ids[k]);
        assert_int_equal(strtol(row[c_samples], NULL, 10), c.ok_measured);
        double want = percentile(c.ttft, c.nttft, 50);
        double got = strtod(row[c_p50], NULL);
        print_message("%s: %d ok measured, p50 TTFT %.6f (analyze %s)\n", ids[k], c.ok_measured,
                      want, row[c_p50]);
        assert_true(fabs(got - want) <= 1e-9 * fabs(want));
        assert_string_equal(row[c_hyp], "H0");
        assert_string_equal(row[c_phase], k ? "U4" : "U1");
        assert_true(strtol(row[c_sys], NULL, 10) > 0); /* run --sysmon ticks inside the window */
        /* A share, computed: how many ticks came on time depends on the machine's load, so no
           threshold (it was > 0.5: a timed assertion). */
        double aligned = strtod(row[c_aligned], NULL);
        assert_true(aligned >= 0 && aligned <= 1);
        struct stat st;
        assert_int_equal(stat(spath, &st), 0); /* each run's summary.json */
        free(c.ttft);
    }
    table_free(&t);

    /* A PATH that does not exist: usage error (2) naming it. */
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/no-such-results", dir);
    const char *args2[] = {missing, "--out", out_dir, "--no-figures", "--uwork", uwork, NULL};
    out = err = NULL;
    assert_int_equal(analyze(args2, &out, &err), 2);
    assert_non_null(strstr(err, "no-such-results"));
    free(out);
    free(err);

    /* A metrics.jsonl that is not JSON lines: named, exit 1, the other runs still analyzed. */
    char bad[700], cmd[1600];
    snprintf(bad, sizeof(bad), "%s/notjsonl", results);
    snprintf(cmd, sizeof(cmd), "cp -r '%s/tests/data/analyze/notjsonl' '%s'", srcdir, bad);
    assert_int_equal(system(cmd), 0);
    out = err = NULL;
    assert_int_equal(analyze(args, &out, &err), 1);
    assert_non_null(strstr(err, "notjsonl/metrics.jsonl"));
    assert_non_null(strstr(err, "not JSON lines"));
    assert_non_null(strstr(out, "2 runs loaded, 1 left out"));
    free(out);
    free(err);
    table_read(&t, csv);
    assert_int_equal(t.nrows, 3);
    row_of(&t, ids[0]);
    row_of(&t, ids[1]);
    table_free(&t);

    sb_test_rm_rf(dir);
    free(dir);
}

/* Bad usage: unknown options and values are refused with 2 before anything is read. */
static void test_usage(void **state)
{
    (void)state;
    const char *const cases[][3] = {
        {"--knee-metric", "p99", NULL},
        {"--knee-ratio", "0.5", NULL},
        {"--no-such-option", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL, *err = NULL;
        assert_int_equal(analyze(cases[i], &out, &err), 2);
        assert_non_null(strstr(err, "sparkbench analyze:"));
        free(out);
        free(err);
    }
    char *out = NULL, *err = NULL;
    const char *help[] = {"--help", NULL};
    assert_int_equal(analyze(help, &out, &err), 0);
    assert_non_null(strstr(out, "--kv-bytes-per-token"));
    free(out);
    free(err);
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
        cmocka_unit_test(test_sweep_analyzed),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
