/*
 * Unit tests for sb_analyze_outputs() on runs built in memory: the H0 CSV byte for byte,
 * uwork.txt and uwork.json for a knee, a knee at the first step (stale uwork.txt removed) and no
 * knee, verdicts.json, the report's escaping, and gnuplot: missing (CSV and .gp written, one
 * warning, no figure), failing (a warning naming the script), and present (SVG and PNG).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/analyze_out.h"
#include "sb/util.h"

#define NRUNS 6

struct fixture {
    char dir[64];
    char out[128], uwork[160];
    struct sb_run runs[NRUNS];
    char ids[NRUNS][32];
    struct sb_analyze_opts opts;
};

static void run_blank(struct sb_run *r, char *id, size_t idcap, size_t i)
{
    memset(r, 0, sizeof(*r));
    snprintf(id, idcap, "20250101_00000%zu_A_m", i);
    r->run_id = r->dir = id;
    r->stack = r->model = r->workload = r->hypothesis = r->phase = r->fio_profile =
        r->eviction_policy = (char *)"";
    r->context_tokens = r->concurrency = r->repetition = -1;
    r->rate = r->t0 = r->t1 = NAN;
    for (int m = 0; m < SB_LAT_N; m++)
        r->lat[m] = (struct sb_summary){0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    r->sysmon_aligned = r->dynkv_aligned = r->cadence_s = NAN;
    struct sb_tstat nan = {0, NAN, NAN, NAN, NAN};
    r->cpu_iowait = r->nvme_rps = r->nvme_rmbs = r->nvme_r_await = r->nvme_util = r->nvme_aqu =
        r->psi_io_some = r->gpu_util = r->mem_available = r->tier2_fetch_p95_ms = nan;
    for (int t = 0; t < 3; t++)
        r->tier_hits[t] = r->tier_misses[t] = r->tier_hit_ratio[t] = NAN;
    r->tier2_share = r->achieved_rps = r->output_tok_s = NAN;
}

/*
 * An H0 sweep of Stack A at concurrency 1 (two repetitions), 2, 4, 8, 16 with TTFT p50 10 and
 * p99 13 (mean of 12 and 14), 15, 18, 25, 30.25 (p50 10.5 there): over 2 x p50 from 8 on, so
 * the knee is 8 and U_work 4.
 */
static const struct {
    long long conc, rep;
    double p50, p95, p99, e50, e95, e99;
    size_t measured, errors;
} h0[NRUNS] = {
    {1, 1, 10, 11, 12, 100, 110, 120, 50, 0},  {1, 2, 10, 11, 14, 100, 110, 120, 50, 1},
    {2, 1, 10, 12, 15, 100, 115, 130, 100, 0}, {4, 1, 10, 14, 18, 100, 150, NAN, 100, 0},
    {8, 1, 10, 20, 25, 100, 150, NAN, 100, 0}, {16, 1, 10.5, 25, 30.25, 100, 150, NAN, 100, 0},
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/sbtest-outputs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->out, sizeof(f->out), "%s/analysis", f->dir);
    snprintf(f->uwork, sizeof(f->uwork), "%s/results/H0/uwork.txt", f->dir);
    for (size_t i = 0; i < NRUNS; i++) {
        struct sb_run *r = &f->runs[i];
        run_blank(r, f->ids[i], sizeof(f->ids[i]), i);
        r->hypothesis = (char *)"H0";
        r->stack = (char *)"A";
        r->model = (char *)"m";
        r->workload = (char *)"fixed_context";
        r->context_tokens = 1024;
        r->concurrency = h0[i].conc;
        r->repetition = h0[i].rep;
        r->lat[SB_LAT_TTFT].p50 = h0[i].p50;
        r->lat[SB_LAT_TTFT].p95 = h0[i].p95;
        r->lat[SB_LAT_TTFT].p99 = h0[i].p99;
        r->lat[SB_LAT_E2E].p50 = h0[i].e50;
        r->lat[SB_LAT_E2E].p95 = h0[i].e95;
        r->lat[SB_LAT_E2E].p99 = h0[i].e99;
        r->measured = h0[i].measured;
        r->errors = h0[i].errors;
        r->t1 = 1000 + (double)i;
    }
    f->opts.out_dir = f->out;
    f->opts.uwork_path = f->uwork;
    f->opts.knee_metric = SB_LAT_TTFT;
    f->opts.knee_ratio = 2.0;
    f->opts.kv_bytes_per_token = 131072;
    f->opts.gnuplot = (char *)"/nonexistent/gnuplot";
    f->opts.quiet = true;
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    struct sb_buf b;
    sb_buf_init(&b, 256u << 20);
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        assert_int_equal(sb_buf_add(&b, chunk, got), 0);
    fclose(fp);
    if (!b.data)
        sb_buf_add(&b, "", 0);
    return sb_buf_detach(&b, NULL);
}

static char *read_at(const struct fixture *f, const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", f->out, rel);
    return read_file(path);
}

static bool exists_at(const struct fixture *f, const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", f->out, rel);
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* Runs sb_analyze_outputs with stderr captured into *errtext (free it). */
static int outputs_capture(struct fixture *f, size_t n, char **errtext)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/stderr.txt", f->dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    struct sb_err err = {0};
    int rc = sb_analyze_outputs(f->runs, n, &f->opts, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (rc != 0)
        fprintf(stderr, "sb_analyze_outputs: %s\n", err.msg);
    *errtext = read_file(path);
    assert_non_null(*errtext);
    return rc;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_h0_csv_uwork_without_gnuplot(void **state)
{
    struct fixture *f = *state;
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    /* One warning for the missing gnuplot, not one per figure. */
    assert_int_equal(count(errtext, "gnuplot not found"), 1);
    assert_non_null(strstr(errtext, "/nonexistent/gnuplot"));
    free(errtext);

    char *csv = read_at(f, "figures/H0_latency_vs_concurrency.csv");
    assert_non_null(csv);
    const char *want =
        "series,stack,model,workload,context_tokens,concurrency,repetitions,measured,errors,"
        "ttft_p50_ms,ttft_p95_ms,ttft_p99_ms,ttft_p99_cov,e2e_p50_ms,e2e_p95_ms,e2e_p99_ms,"
        "e2e_p99_cov,knee_ratio,over\n"
        "H0 / A / m / fixed_context / ctx 1024,A,m,fixed_context,1024,1,2,100,1,10,11,13,"
        "0.1087856586,100,110,120,0,1.3,0\n"
        "H0 / A / m / fixed_context / ctx 1024,A,m,fixed_context,1024,2,1,100,0,10,12,15,,100,"
        "115,130,,1.5,0\n"
        "H0 / A / m / fixed_context / ctx 1024,A,m,fixed_context,1024,4,1,100,0,10,14,18,,100,"
        "150,,,1.8,0\n"
        "H0 / A / m / fixed_context / ctx 1024,A,m,fixed_context,1024,8,1,100,0,10,20,25,,100,"
        "150,,,2.5,1\n"
        "H0 / A / m / fixed_context / ctx 1024,A,m,fixed_context,1024,16,1,100,0,10.5,25,30.25,,"
        "100,150,,,2.880952381,1\n";
    assert_string_equal(csv, want);
    free(csv);

    /* The script is there, reading the CSV by its relative name; no figure was rendered. */
    char *gp = read_at(f, "figures/H0_latency_vs_concurrency.gp");
    assert_non_null(gp);
    assert_non_null(strstr(gp, "data = \"H0_latency_vs_concurrency.csv\""));
    assert_non_null(strstr(gp, "set terminal pngcairo"));
    assert_non_null(strstr(gp, "U_work = 4"));
    free(gp);
    assert_false(exists_at(f, "figures/H0_latency_vs_concurrency.svg"));
    assert_false(exists_at(f, "figures/H0_latency_vs_concurrency.png"));
    /* Only H0 has runs: no other hypothesis' files. */
    assert_false(exists_at(f, "figures/H2_p99_vs_context.csv"));
    assert_false(exists_at(f, "figures/H7_pred_vs_obs.csv"));

    char *txt = read_file(f->uwork);
    assert_non_null(txt);
    assert_string_equal(txt, "4\n");
    free(txt);

    char path[256];
    snprintf(path, sizeof(path), "%s/results/H0/uwork.json", f->dir);
    char *js = read_file(path);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    free(js);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "uwork")->valuedouble, 4);
    assert_string_equal(cJSON_GetObjectItem(root, "metric")->valuestring, "ttft");
    assert_int_equal(cJSON_GetObjectItem(root, "ratio")->valuedouble, 2);
    cJSON *groups = cJSON_GetObjectItem(root, "groups");
    assert_int_equal(cJSON_GetArraySize(groups), 1);
    cJSON *g = cJSON_GetArrayItem(groups, 0);
    assert_string_equal(cJSON_GetObjectItem(g, "status")->valuestring, "knee");
    assert_int_equal(cJSON_GetObjectItem(g, "knee")->valuedouble, 8);
    assert_int_equal(cJSON_GetObjectItem(g, "uwork")->valuedouble, 4);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g, "picked")));
    cJSON *steps = cJSON_GetObjectItem(g, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 5);
    static const double conc[5] = {1, 2, 4, 8, 16}, p99[5] = {13, 15, 18, 25, 30.25};
    static const bool over[5] = {false, false, false, true, true};
    for (int i = 0; i < 5; i++) {
        cJSON *s = cJSON_GetArrayItem(steps, i);
        assert_true(cJSON_GetObjectItem(s, "concurrency")->valuedouble == conc[i]);
        assert_true(cJSON_GetObjectItem(s, "p99_ms")->valuedouble == p99[i]);
        assert_true(cJSON_IsBool(cJSON_GetObjectItem(s, "over")));
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(s, "over")), over[i]);
    }
    assert_true(fabs(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 0), "ratio")->valuedouble -
                     1.3) < 1e-12);
    cJSON_Delete(root);

    /* verdicts.json: every gate, CoV from the concurrency-1 pair (10.9 % fails). */
    js = read_at(f, "figures/verdicts.json");
    assert_non_null(js);
    root = cJSON_Parse(js);
    free(js);
    assert_non_null(root);
    cJSON *gates = cJSON_GetObjectItem(root, "gates");
    assert_int_equal(cJSON_GetArraySize(gates), SB_GATE_N);
    cJSON *cov = cJSON_GetArrayItem(gates, SB_GATE_COV_P99);
    assert_string_equal(cJSON_GetObjectItem(cov, "gate")->valuestring, "cov_p99");
    assert_string_equal(cJSON_GetObjectItem(cov, "verdict")->valuestring, "FAIL");
    assert_string_equal(cJSON_GetObjectItem(cov, "reason")->valuestring, "above_threshold");
    assert_true(fabs(cJSON_GetObjectItem(cov, "value")->valuedouble - sqrt(2) / 13) < 1e-12);
    cJSON *al = cJSON_GetArrayItem(gates, SB_GATE_ALIGNED);
    assert_string_equal(cJSON_GetObjectItem(al, "verdict")->valuestring, "N-A");
    assert_string_equal(cJSON_GetObjectItem(al, "reason")->valuestring, "no_telemetry");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(al, "value")));
    cJSON *h2a = cJSON_GetArrayItem(gates, SB_GATE_H2A_NVME_FLAT);
    assert_string_equal(cJSON_GetObjectItem(h2a, "reason")->valuestring, "no_runs");
    cJSON_Delete(root);

    /* The report says U_work and points at the script it could not render. */
    char *md = read_at(f, "report.md");
    assert_non_null(md);
    assert_non_null(strstr(md, "U_work = 4"));
    assert_non_null(strstr(md, "gnuplot H0_latency_vs_concurrency.gp"));
    assert_non_null(strstr(md, "[H0_latency_vs_concurrency.csv](figures/"
                               "H0_latency_vs_concurrency.csv)"));
    assert_null(strstr(md, "![")); /* no figure to link */
    free(md);
    char *html = read_at(f, "report.html");
    assert_non_null(html);
    assert_non_null(strstr(html, "<!DOCTYPE html>"));
    assert_null(strstr(html, "<img"));
    assert_non_null(strstr(html, "class=\"FAIL\""));
    free(html);
}

static void test_uwork_knee_at_first_step(void **state)
{
    struct fixture *f = *state;
    /* Every step over 2 x p50: U_work undefined, and a stale uwork.txt must go. */
    for (size_t i = 0; i < NRUNS; i++)
        f->runs[i].lat[SB_LAT_TTFT].p99 = 50;
    char dir[200];
    snprintf(dir, sizeof(dir), "%s/results", f->dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof(dir), "%s/results/H0", f->dir);
    mkdir(dir, 0755);
    FILE *fp = fopen(f->uwork, "w");
    assert_non_null(fp);
    fputs("64\n", fp);
    fclose(fp);
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    assert_non_null(strstr(errtext, "no U_work"));
    assert_non_null(strstr(errtext, "knee at the first step"));
    free(errtext);
    assert_int_equal(access(f->uwork, F_OK), -1);

    char path[256];
    snprintf(path, sizeof(path), "%s/results/H0/uwork.json", f->dir);
    char *js = read_file(path);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    free(js);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(root, "uwork")));
    cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "groups"), 0);
    assert_string_equal(cJSON_GetObjectItem(g, "status")->valuestring, "knee_at_first_step");
    assert_int_equal(cJSON_GetObjectItem(g, "knee")->valuedouble, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(g, "uwork")));
    assert_non_null(strstr(cJSON_GetObjectItem(g, "note")->valuestring, "undefined"));
    cJSON_Delete(root);
}

/*
 * A llama.cpp-like sweep (issue 11 item 11): p99/p50 = 2.5 at every step, so the §2 rule says
 * "knee at the first step", while throughput stops rising from 4 to 8 users (3.9 -> 4.0 req/s,
 * p50 x 10). uwork.txt stays the rule's (none), uwork.json and the H0 figure carry the saturation
 * knee at 4, marked as disagreeing with the rule.
 */
static void test_uwork_saturation_beside_rule(void **state)
{
    struct fixture *f = *state;
    static const double p50[NRUNS] = {10, 10, 10, 12, 120, 240};
    static const double rps[NRUNS] = {1, 1, 2, 3.9, 4.0, 4.0};
    for (size_t i = 0; i < NRUNS; i++) {
        f->runs[i].lat[SB_LAT_TTFT].p50 = p50[i];
        f->runs[i].lat[SB_LAT_TTFT].p99 = 2.5 * p50[i];
        f->runs[i].achieved_rps = rps[i];
    }
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    free(errtext);
    assert_int_equal(access(f->uwork, F_OK), -1);

    char path[256];
    snprintf(path, sizeof(path), "%s/results/H0/uwork.json", f->dir);
    char *js = read_file(path);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    free(js);
    assert_non_null(root);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(root, "uwork")));
    assert_int_equal(cJSON_GetObjectItem(root, "saturation")->valuedouble, 4);
    assert_non_null(strstr(cJSON_GetObjectItem(root, "saturation_rule")->valuestring, "5 %"));
    cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "groups"), 0);
    assert_string_equal(cJSON_GetObjectItem(g, "status")->valuestring, "knee_at_first_step");
    cJSON *sat = cJSON_GetObjectItem(g, "saturation");
    assert_non_null(sat);
    assert_string_equal(cJSON_GetObjectItem(sat, "status")->valuestring, "saturation");
    assert_int_equal(cJSON_GetObjectItem(sat, "concurrency")->valuedouble, 4);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(sat, "rule_disagrees")));
    assert_non_null(strstr(cJSON_GetObjectItem(sat, "note")->valuestring, "blind"));
    cJSON *steps = cJSON_GetObjectItem(g, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 5);
    for (int i = 0; i < 5; i++) {
        cJSON *st = cJSON_GetArrayItem(steps, i);
        double x = cJSON_GetObjectItem(st, "concurrency")->valuedouble;
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(st, "saturated")), x == 4);
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(st, "achieved_rps")));
    }
    cJSON_Delete(root);

    char *gp = read_at(f, "figures/H0_latency_vs_concurrency.gp");
    assert_non_null(gp);
    assert_non_null(strstr(gp, "saturation knee 4"));
    assert_null(strstr(gp, "U_work ="));
    free(gp);
}

static void test_uwork_no_knee_and_newest_group(void **state)
{
    struct fixture *f = *state;
    /* Stack A: no knee (U_work = 16, the largest). Stack B at concurrency 1 and 2 only, older
     * runs: its U_work (2) does not reach uwork.txt, but uwork.json has both. */
    for (size_t i = 0; i < NRUNS; i++)
        f->runs[i].lat[SB_LAT_TTFT].p99 = 15;
    f->runs[0].stack = f->runs[1].stack = (char *)"B";
    f->runs[0].t1 = f->runs[1].t1 = 10;
    f->runs[1].concurrency = 2;
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    free(errtext);
    char *txt = read_file(f->uwork);
    assert_non_null(txt);
    assert_string_equal(txt, "16\n");
    free(txt);
    char path[256];
    snprintf(path, sizeof(path), "%s/results/H0/uwork.json", f->dir);
    char *js = read_file(path);
    cJSON *root = cJSON_Parse(js);
    free(js);
    assert_non_null(root);
    cJSON *groups = cJSON_GetObjectItem(root, "groups");
    assert_int_equal(cJSON_GetArraySize(groups), 2);
    cJSON *a = cJSON_GetArrayItem(groups, 0), *b = cJSON_GetArrayItem(groups, 1);
    assert_string_equal(cJSON_GetObjectItem(a, "stack")->valuestring, "A");
    assert_string_equal(cJSON_GetObjectItem(a, "status")->valuestring, "no_knee");
    assert_non_null(
        strstr(cJSON_GetObjectItem(a, "note")->valuestring, "no knee within the sweep"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "picked")));
    assert_string_equal(cJSON_GetObjectItem(b, "stack")->valuestring, "B");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(b, "picked")));
    assert_int_equal(cJSON_GetObjectItem(root, "uwork")->valuedouble, 16);
    cJSON_Delete(root);
}

/* Issue 10 item 15: 429s at 4, 8 and 16 users with fast latency: the knee is 4, U_work 2. */
static void test_uwork_errors(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < NRUNS; i++) {
        f->runs[i].lat[SB_LAT_TTFT].p99 = 15; /* never over 2 x p50 */
        if (f->runs[i].concurrency >= 4)
            f->runs[i].errors = 60; /* of 100 measured */
    }
    f->runs[5].exit_reason = (char *)"sigint"; /* flagged in the report's run table */
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    free(errtext);
    char *txt = read_file(f->uwork);
    assert_non_null(txt);
    print_message("uwork.txt: %s", txt);
    assert_string_equal(txt, "2\n");
    free(txt);
    char path[256];
    snprintf(path, sizeof(path), "%s/results/H0/uwork.json", f->dir);
    char *js = read_file(path);
    cJSON *root = cJSON_Parse(js);
    free(js);
    assert_non_null(root);
    assert_true(fabs(cJSON_GetObjectItem(root, "max_error_rate")->valuedouble - 0.01) < 1e-12);
    assert_non_null(strstr(cJSON_GetObjectItem(root, "rule")->valuestring, "failed"));
    cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "groups"), 0);
    const char *note = cJSON_GetObjectItem(g, "note")->valuestring;
    print_message("note: %s\n", note);
    assert_string_equal(note, "knee at concurrency 4 (60.0 % of its requests failed): U_work = 2");
    cJSON *steps = cJSON_GetObjectItem(g, "steps");
    /* concurrency 1 (two repetitions, 1 error in 100): exactly 1 %, not over */
    cJSON *s0 = cJSON_GetArrayItem(steps, 0);
    assert_true(fabs(cJSON_GetObjectItem(s0, "error_rate")->valuedouble - 0.01) < 1e-12);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(s0, "errors_over")));
    cJSON *s2 = cJSON_GetArrayItem(steps, 2);
    assert_int_equal(cJSON_GetObjectItem(s2, "concurrency")->valuedouble, 4);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(s2, "errors_over")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(s2, "over")));
    cJSON_Delete(root);
    char *html = read_at(f, "report.html");
    assert_non_null(html);
    assert_non_null(strstr(html, "<td>sigint</td>"));
    assert_non_null(strstr(html, "run_clean"));
    free(html);
}

static void test_escaping(void **state)
{
    struct fixture *f = *state;
    f->runs[2].run_id = (char *)"<script>alert('x')</script>&";
    f->runs[3].model = (char *)"org/model,v2";
    f->runs[4].phase = (char *)"*bold* _em_ keep_this";
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    free(errtext);
    char *html = read_at(f, "report.html");
    assert_non_null(html);
    assert_null(strstr(html, "<script>"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
    free(html);
    char *md = read_at(f, "report.md");
    assert_non_null(md);
    assert_non_null(strstr(md, "\\<script\\>"));
    /* Markdown markup is escaped, an underscore inside a word is left alone. */
    assert_non_null(strstr(md, "\\*bold\\* \\_em\\_ keep_this"));
    free(md);
    /* A comma in a CSV cell is quoted; the series label has it replaced. */
    char *csv = read_at(f, "figures/H0_latency_vs_concurrency.csv");
    assert_non_null(strstr(csv, ",\"org/model,v2\","));
    assert_non_null(strstr(csv, "H0 / A / org/model_v2 / fixed_context / ctx 1024,"));
    free(csv);
}

static void test_failing_gnuplot(void **state)
{
    struct fixture *f = *state;
    f->opts.gnuplot = (char *)"/bin/false";
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    assert_non_null(strstr(errtext, "gnuplot failed on"));
    assert_non_null(strstr(errtext, "H0_latency_vs_concurrency.gp' (exit 1)"));
    free(errtext);
    assert_true(exists_at(f, "figures/H0_latency_vs_concurrency.csv"));
    assert_false(exists_at(f, "figures/H0_latency_vs_concurrency.png"));
    assert_true(exists_at(f, "report.html"));
}

static void test_no_figures(void **state)
{
    struct fixture *f = *state;
    f->opts.gnuplot = (char *)"gnuplot";
    f->opts.no_figures = true;
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    assert_null(strstr(errtext, "warning"));
    free(errtext);
    assert_true(exists_at(f, "figures/H0_latency_vs_concurrency.gp"));
    assert_false(exists_at(f, "figures/H0_latency_vs_concurrency.svg"));
}

static void test_no_runs_and_stale_files(void **state)
{
    struct fixture *f = *state;
    /* Files an earlier analysis left for a kind that has no data now, and for H0's figure. */
    char path[512];
    snprintf(path, sizeof(path), "%s/figures", f->out);
    mkdir(f->out, 0755);
    mkdir(path, 0755);
    static const char *const stale[] = {"figures/H2_p99_vs_context.csv",
                                        "figures/H2_p99_vs_context.png",
                                        "figures/H0_latency_vs_concurrency.png"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(stale); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->out, stale[i]);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs("old\n", fp);
        fclose(fp);
    }
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    free(errtext);
    for (size_t i = 0; i < SB_ARRAY_SIZE(stale); i++)
        if (exists_at(f, stale[i]))
            fail_msg("stale '%s' left behind", stale[i]);

    /* No runs at all: no U_work, every gate N-A, a report that says so. */
    assert_int_equal(unlink(f->uwork), 0);
    assert_int_equal(outputs_capture(f, 0, &errtext), 0);
    free(errtext);
    assert_int_equal(access(f->uwork, F_OK), -1);
    assert_false(exists_at(f, "figures/H0_latency_vs_concurrency.csv"));
    char *md = read_at(f, "report.md");
    assert_non_null(md);
    assert_non_null(strstr(md, "0 runs."));
    assert_int_equal(count(md, "| N-A | "), SB_GATE_N);
    free(md);
}

static void test_with_gnuplot(void **state)
{
    struct fixture *f = *state;
    if (access("/usr/bin/gnuplot", X_OK) != 0)
        fail_msg("gnuplot missing: scripts/install-deps.sh installs gnuplot-nox");
    f->opts.gnuplot = (char *)"/usr/bin/gnuplot";
    char *errtext;
    assert_int_equal(outputs_capture(f, NRUNS, &errtext), 0);
    if (strstr(errtext, "warning"))
        fail_msg("unexpected warning: %s", errtext);
    free(errtext);
    char *svg = read_at(f, "figures/H0_latency_vs_concurrency.svg");
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg"));
    free(svg);
    char path[512];
    snprintf(path, sizeof(path), "%s/figures/H0_latency_vs_concurrency.png", f->out);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, fp), 8);
    fclose(fp);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    char *html = read_at(f, "report.html");
    assert_int_equal(count(html, "<img "), 1);
    assert_non_null(strstr(html, "src=\"data:image/svg+xml;base64,"));
    free(html);
    char *md = read_at(f, "report.md");
    assert_non_null(strstr(md, "](figures/H0_latency_vs_concurrency.png)"));
    free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_h0_csv_uwork_without_gnuplot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uwork_knee_at_first_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uwork_saturation_beside_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uwork_no_knee_and_newest_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uwork_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_gnuplot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_runs_and_stale_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_gnuplot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
