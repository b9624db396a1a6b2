/*
 * Unit tests for the quality gates (src/analyze/gates.c) on runs built in memory: each gate's
 * PASS, FAIL and N-A with the reason code and the number behind it, and how repetitions are
 * grouped into points (src/analyze/hypo.c).
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

#include "sb/analyze_out.h"
#include "sb/util.h"

#define MAXRUNS 16

static char run_ids[MAXRUNS][32];

static void tstat_nan(struct sb_tstat *t)
{
    t->n = 0;
    t->mean = t->p95 = t->min = t->max = NAN;
}

/* A run as the loader leaves one with nothing measured: labels "", counts -1, numbers NAN. */
static void run_blank(struct sb_run *r, size_t i)
{
    memset(r, 0, sizeof(*r));
    snprintf(run_ids[i], sizeof(run_ids[i]), "run%zu", i);
    r->run_id = run_ids[i];
    r->dir = run_ids[i];
    r->stack = r->model = r->workload = r->hypothesis = r->phase = r->fio_profile =
        r->eviction_policy = (char *)"";
    r->context_tokens = r->concurrency = r->repetition = -1;
    r->rate = NAN;
    r->t0 = r->t1 = NAN;
    for (int m = 0; m < SB_LAT_N; m++) {
        r->lat[m].n = 0;
        r->lat[m].mean = r->lat[m].min = r->lat[m].max = r->lat[m].p50 = r->lat[m].p90 =
            r->lat[m].p95 = r->lat[m].p99 = r->lat[m].p999 = NAN;
    }
    r->sysmon_aligned = r->dynkv_aligned = r->cadence_s = NAN;
    struct sb_tstat *ts[] = {
        &r->cpu_iowait, &r->nvme_rps,    &r->nvme_rmbs, &r->nvme_r_await,  &r->nvme_util,
        &r->nvme_aqu,   &r->psi_io_some, &r->gpu_util,  &r->mem_available, &r->tier2_fetch_p95_ms};
    for (size_t k = 0; k < SB_ARRAY_SIZE(ts); k++)
        tstat_nan(ts[k]);
    for (int t = 0; t < 3; t++)
        r->tier_hits[t] = r->tier_misses[t] = r->tier_hit_ratio[t] = NAN;
    r->tier2_share = NAN;
    r->achieved_rps = r->output_tok_s = NAN;
}

static void run_set(struct sb_run *r, const char *hyp, const char *stack, long long conc,
                    long long ctx, long long rep, double p50, double p99)
{
    r->hypothesis = (char *)hyp;
    r->stack = (char *)stack;
    r->model = (char *)"m";
    r->workload = (char *)"fixed_context";
    r->concurrency = conc;
    r->context_tokens = ctx;
    r->repetition = rep;
    r->lat[SB_LAT_TTFT].p50 = p50;
    r->lat[SB_LAT_TTFT].p99 = p99;
    r->measured = r->ok = 100;
}

static struct sb_analyze_opts opts_default(void)
{
    struct sb_analyze_opts o = {0};
    o.knee_metric = SB_LAT_TTFT;
    o.knee_ratio = 2.0;
    o.kv_bytes_per_token = 131072;
    o.quiet = true;
    return o;
}

/* Builds the analysis over runs and evaluates the gates; the caller releases an. */
static void eval(struct sb_analysis *an, struct sb_run *runs, size_t n,
                 const struct sb_analyze_opts *o)
{
    struct sb_err err = {0};
    assert_int_equal(sb_analysis_build(an, runs, n, o, &err), 0);
    assert_int_equal(sb_gates_eval(an, &err), 0);
}

static const struct sb_gate_check *check_of(const struct sb_gate *g, const char *subject)
{
    for (size_t i = 0; i < g->nchecks; i++)
        if (strcmp(g->checks[i].subject, subject) == 0)
            return &g->checks[i];
    fail_msg("gate %s has no check for '%s'", g->name, subject);
    return NULL;
}

static void assert_gate(const struct sb_gate *g, enum sb_verdict v, const char *reason)
{
    if (g->verdict != v || strcmp(g->reason, reason) != 0)
        fail_msg("gate %s: %s/%s, want %s/%s", g->name, sb_verdict_name(g->verdict), g->reason,
                 sb_verdict_name(v), reason);
}

static void test_no_runs(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_analysis an;
    eval(&an, NULL, 0, &o);
    for (size_t i = 0; i < SB_GATE_N; i++) {
        assert_gate(&an.gates[i], SB_VERDICT_NA, "no_runs");
        assert_int_equal(an.gates[i].nchecks, 0);
        assert_true(isnan(an.gates[i].value));
    }
    assert_string_equal(an.gates[SB_GATE_ALIGNED].name, "aligned");
    assert_string_equal(an.gates[SB_GATE_COV_P99].name, "cov_p99");
    assert_string_equal(an.gates[SB_GATE_REPRODUCIBLE].name, "reproducible");
    assert_string_equal(an.gates[SB_GATE_H2A_NVME_FLAT].name, "h2a_nvme_flat");
    assert_string_equal(an.gates[SB_GATE_H2B_TIER2_HITS].name, "h2b_tier2_hits");
    assert_string_equal(an.gates[SB_GATE_RUN_CLEAN].name, "run_clean");
    sb_analysis_release(&an);
}

/* run_clean: a run stopped by SIGINT, a fatal error or with client lag FAILs; unknown is N-A. */
static void test_run_clean(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[4];
    for (size_t i = 0; i < 4; i++) {
        run_blank(&runs[i], i);
        run_set(&runs[i], "H0", "A", (long long)(1 << i), 1024, 1, 10, 12);
        runs[i].late_sends = -1;
        runs[i].exit_reason = (char *)"";
    }
    struct sb_analysis an;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_RUN_CLEAN], SB_VERDICT_NA, "no_run_json");
    sb_analysis_release(&an);

    runs[0].exit_reason = (char *)"completed";
    runs[0].late_sends = 0;
    runs[1].exit_reason = (char *)"duration";
    runs[1].late_sends = 0;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_RUN_CLEAN], SB_VERDICT_PASS, "ok");
    sb_analysis_release(&an);

    runs[2].exit_reason = (char *)"sigint";
    runs[2].late_sends = 0;
    runs[3].exit_reason = (char *)"completed";
    runs[3].late_sends = 7;
    runs[3].max_sched_delay_ms = 40;
    runs[3].fell_behind = true; /* as run.json's client_lag.fell_behind says (sb/stats.h) */
    runs[1].late_sends = 2;     /* a couple of late sends alone are not a lagging client */
    runs[1].max_sched_delay_ms = 3;
    eval(&an, runs, 4, &o);
    assert_int_equal(check_of(&an.gates[SB_GATE_RUN_CLEAN], "run1")->verdict, SB_VERDICT_PASS);
    assert_gate(&an.gates[SB_GATE_RUN_CLEAN], SB_VERDICT_FAIL, "interrupted");
    const struct sb_gate_check *c = check_of(&an.gates[SB_GATE_RUN_CLEAN], "run2");
    assert_int_equal(c->verdict, SB_VERDICT_FAIL);
    assert_string_equal(c->reason, "interrupted");
    assert_non_null(strstr(c->detail, "sigint"));
    c = check_of(&an.gates[SB_GATE_RUN_CLEAN], "run3");
    print_message("run3: %s / %s\n", c->reason, c->detail);
    assert_int_equal(c->verdict, SB_VERDICT_FAIL);
    assert_string_equal(c->reason, "client_lag");
    assert_non_null(strstr(c->detail, "7 late sends"));
    assert_int_equal(check_of(&an.gates[SB_GATE_RUN_CLEAN], "run0")->verdict, SB_VERDICT_PASS);
    sb_analysis_release(&an);
}

static void test_aligned(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[4];
    for (size_t i = 0; i < 4; i++) {
        run_blank(&runs[i], i);
        run_set(&runs[i], "H0", "A", (long long)(1 << i), 1024, 1, 10, 12);
    }
    struct sb_analysis an;

    /* No telemetry anywhere: N-A. */
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_ALIGNED], SB_VERDICT_NA, "no_telemetry");
    assert_int_equal(an.gates[SB_GATE_ALIGNED].nchecks, 4);
    sb_analysis_release(&an);

    /* Two good runs, one without telemetry: PASS with the worst value. */
    runs[0].sysmon_aligned = 0.99;
    runs[1].sysmon_aligned = 0.96;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_ALIGNED], SB_VERDICT_PASS, "ok");
    assert_true(fabs(an.gates[SB_GATE_ALIGNED].value - 0.96) < 1e-12);
    assert_int_equal(check_of(&an.gates[SB_GATE_ALIGNED], "run2")->verdict, SB_VERDICT_NA);
    sb_analysis_release(&an);

    /* One run below 95 %: FAIL. */
    runs[2].sysmon_aligned = 0.90;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_ALIGNED], SB_VERDICT_FAIL, "below_threshold");
    assert_true(fabs(an.gates[SB_GATE_ALIGNED].value - 0.90) < 1e-12);
    const struct sb_gate_check *c = check_of(&an.gates[SB_GATE_ALIGNED], "run2");
    assert_int_equal(c->verdict, SB_VERDICT_FAIL);
    assert_string_equal(c->reason, "below_threshold");
    sb_analysis_release(&an);

    /* Stack B counts its dynkv file too; Stack A ignores one. */
    runs[2].sysmon_aligned = 0.99;
    runs[3].stack = (char *)"B";
    runs[3].sysmon_aligned = 0.99;
    runs[3].dynkv_aligned = 0.50;
    runs[0].dynkv_aligned = 0.10;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_ALIGNED], SB_VERDICT_FAIL, "below_threshold");
    assert_int_equal(check_of(&an.gates[SB_GATE_ALIGNED], "run0")->verdict, SB_VERDICT_PASS);
    c = check_of(&an.gates[SB_GATE_ALIGNED], "run3");
    assert_int_equal(c->verdict, SB_VERDICT_FAIL);
    assert_true(fabs(c->value - 0.50) < 1e-12);
    assert_non_null(strstr(c->detail, "dynkv 0.500"));
    sb_analysis_release(&an);

    /* Late and missed ticks are not aligned; the check says how many there were. */
    runs[3].stack = (char *)"A";
    runs[1].sysmon_aligned = 0.80;
    runs[1].sysmon_late = 3;
    runs[1].sysmon_missed = 1;
    eval(&an, runs, 4, &o);
    c = check_of(&an.gates[SB_GATE_ALIGNED], "run1");
    print_message("run1: %s\n", c->detail);
    assert_int_equal(c->verdict, SB_VERDICT_FAIL);
    assert_non_null(strstr(c->detail, "3 late"));
    assert_non_null(strstr(c->detail, "1 missed"));
    assert_null(strstr(check_of(&an.gates[SB_GATE_ALIGNED], "run0")->detail, "late"));
    sb_analysis_release(&an);
}

static void test_repetitions(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[3];
    struct sb_analysis an;
    for (size_t i = 0; i < 3; i++)
        run_blank(&runs[i], i);

    /* One run per point: N-A for both gates. */
    run_set(&runs[0], "H0", "A", 1, 1024, 1, 10, 100);
    run_set(&runs[1], "H0", "A", 2, 1024, 1, 10, 100);
    eval(&an, runs, 2, &o);
    assert_gate(&an.gates[SB_GATE_COV_P99], SB_VERDICT_NA, "no_repetitions");
    assert_gate(&an.gates[SB_GATE_REPRODUCIBLE], SB_VERDICT_NA, "no_repetitions");
    assert_int_equal(an.gates[SB_GATE_COV_P99].nchecks, 2);
    sb_analysis_release(&an);

    /* Two repetitions 100 and 104: CoV 2.83/102 = 2.8 %, spread 4 %: both pass. */
    run_set(&runs[1], "H0", "A", 1, 1024, 2, 10, 104);
    eval(&an, runs, 2, &o);
    assert_int_equal(an.nseries, 1);
    assert_int_equal(an.series[0].npts, 1);
    assert_int_equal(an.series[0].pts[0].nruns, 2);
    assert_true(fabs(an.series[0].pts[0].p99[SB_LAT_TTFT] - 102) < 1e-9);
    assert_gate(&an.gates[SB_GATE_COV_P99], SB_VERDICT_PASS, "ok");
    assert_true(fabs(an.gates[SB_GATE_COV_P99].value - sqrt(8.0) / 102) < 1e-12);
    assert_gate(&an.gates[SB_GATE_REPRODUCIBLE], SB_VERDICT_PASS, "ok");
    assert_true(fabs(an.gates[SB_GATE_REPRODUCIBLE].value - 0.04) < 1e-12);
    sb_analysis_release(&an);

    /* 100 and 106: CoV 4.1 % passes, the 6 % spread fails reproducibility. */
    runs[1].lat[SB_LAT_TTFT].p99 = 106;
    eval(&an, runs, 2, &o);
    assert_gate(&an.gates[SB_GATE_COV_P99], SB_VERDICT_PASS, "ok");
    assert_gate(&an.gates[SB_GATE_REPRODUCIBLE], SB_VERDICT_FAIL, "above_threshold");
    sb_analysis_release(&an);

    /* 100, 130 and a third at another point: CoV 18.9 % fails; the lone point stays N-A. */
    runs[1].lat[SB_LAT_TTFT].p99 = 130;
    run_set(&runs[2], "H0", "A", 4, 1024, 1, 10, 100);
    eval(&an, runs, 3, &o);
    assert_gate(&an.gates[SB_GATE_COV_P99], SB_VERDICT_FAIL, "above_threshold");
    assert_int_equal(an.gates[SB_GATE_COV_P99].nchecks, 2);
    const struct sb_gate_check *c =
        check_of(&an.gates[SB_GATE_COV_P99], "H0 / A / m / fixed_context / ctx 1024 @ "
                                             "concurrency 4");
    assert_int_equal(c->verdict, SB_VERDICT_NA);
    assert_string_equal(c->reason, "no_repetitions");
    sb_analysis_release(&an);

    /* The E2E metric is used when asked for: E2E p99 is absent, so no repetition has one. */
    o.knee_metric = SB_LAT_E2E;
    eval(&an, runs, 3, &o);
    assert_gate(&an.gates[SB_GATE_COV_P99], SB_VERDICT_NA, "no_repetitions");
    sb_analysis_release(&an);
}

static void test_h2a_nvme_flat(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[5];
    struct sb_analysis an;
    for (size_t i = 0; i < 5; i++)
        run_blank(&runs[i], i);

    /* No H2A runs. */
    run_set(&runs[0], "H0", "A", 1, 1024, 1, 10, 12);
    eval(&an, runs, 1, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_NA, "no_runs");
    sb_analysis_release(&an);

    /* H2A runs without NVMe telemetry. */
    run_set(&runs[0], "H2A", "A", 4, 256, 1, 10, 12);
    run_set(&runs[1], "H2A", "A", 4, 1024, 1, 10, 12);
    eval(&an, runs, 2, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_NA, "no_telemetry");
    sb_analysis_release(&an);

    /* One H2A run and no idle run: it is its own reference. */
    runs[0].nvme_rps.mean = 1.0;
    eval(&an, runs, 1, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_NA, "no_reference");
    sb_analysis_release(&an);

    /* Reference = the lowest load (256 tokens, 1 r/s); tolerance max(0.1, 5) = 5 r/s. */
    runs[1].nvme_rps.mean = 3.0;
    run_set(&runs[2], "H2A", "A", 4, 2048, 1, 10, 12);
    runs[2].nvme_rps.mean = 5.5;
    eval(&an, runs, 3, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_PASS, "ok");
    assert_int_equal(an.gates[SB_GATE_H2A_NVME_FLAT].nchecks, 2);
    assert_true(fabs(an.gates[SB_GATE_H2A_NVME_FLAT].value - 4.5) < 1e-12);
    sb_analysis_release(&an);

    /* 50 r/s at 2048 tokens is not flat. */
    runs[2].nvme_rps.mean = 50;
    eval(&an, runs, 3, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_FAIL, "above_threshold");
    const struct sb_gate_check *c = check_of(&an.gates[SB_GATE_H2A_NVME_FLAT], "run2");
    assert_true(fabs(c->value - 49) < 1e-12);
    assert_non_null(strstr(c->detail, "lowest-load run"));
    sb_analysis_release(&an);

    /* An idle run (Stack A, phase idle) at 100 r/s sets the reference: tolerance 10 r/s, so
     * 105 and 108 pass and the 256-token run (1 r/s) fails. A Stack B H2A run is ignored. */
    run_set(&runs[3], "H2A", "A", 0, 0, 1, 10, 12);
    runs[3].phase = (char *)"idle";
    runs[3].nvme_rps.mean = 100;
    runs[0].nvme_rps.mean = 1;
    runs[1].nvme_rps.mean = 105;
    runs[2].nvme_rps.mean = 108;
    run_set(&runs[4], "H2A", "B", 4, 4096, 1, 10, 12);
    runs[4].nvme_rps.mean = 900;
    eval(&an, runs, 5, &o);
    assert_gate(&an.gates[SB_GATE_H2A_NVME_FLAT], SB_VERDICT_FAIL, "above_threshold");
    assert_int_equal(an.gates[SB_GATE_H2A_NVME_FLAT].nchecks, 3);
    assert_int_equal(check_of(&an.gates[SB_GATE_H2A_NVME_FLAT], "run0")->verdict, SB_VERDICT_FAIL);
    assert_int_equal(check_of(&an.gates[SB_GATE_H2A_NVME_FLAT], "run1")->verdict, SB_VERDICT_PASS);
    c = check_of(&an.gates[SB_GATE_H2A_NVME_FLAT], "run2");
    assert_int_equal(c->verdict, SB_VERDICT_PASS);
    assert_non_null(strstr(c->detail, "idle 100.00 r/s"));
    sb_analysis_release(&an);
}

static void test_h2b_tier2_hits(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[4];
    struct sb_analysis an;
    static const long long ctx[4] = {256, 512, 1024, 2048};
    static const double p99[4] = {12, 15, 25, 30}; /* p50 10: the knee is at 1024 */
    static const double share[4] = {0.0, 0.05, 0.30, 0.45};
    for (size_t i = 0; i < 4; i++) {
        run_blank(&runs[i], i);
        run_set(&runs[i], "H2B", "B", 8, ctx[i], 1, 10, p99[i]);
    }

    /* No H2B runs. */
    eval(&an, runs, 0, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_NA, "no_runs");
    sb_analysis_release(&an);

    /* H2B runs without KV telemetry. */
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_NA, "no_telemetry");
    sb_analysis_release(&an);

    /* 30 % tier-2 share at the knee (1024 tokens): PASS. */
    for (size_t i = 0; i < 4; i++)
        runs[i].tier2_share = share[i];
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_PASS, "ok");
    assert_true(fabs(an.gates[SB_GATE_H2B_TIER2_HITS].value - 0.30) < 1e-12);
    assert_non_null(
        strstr(an.gates[SB_GATE_H2B_TIER2_HITS].checks[0].detail, "knee: context 1024"));
    sb_analysis_release(&an);

    /* 10 % at the knee: FAIL, even though the largest context has more. */
    runs[2].tier2_share = 0.10;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_FAIL, "below_threshold");
    sb_analysis_release(&an);

    /* No knee: the largest context (45 %) decides. */
    for (size_t i = 0; i < 4; i++)
        runs[i].lat[SB_LAT_TTFT].p99 = 12;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_PASS, "ok");
    assert_true(fabs(an.gates[SB_GATE_H2B_TIER2_HITS].value - 0.45) < 1e-12);
    assert_non_null(strstr(an.gates[SB_GATE_H2B_TIER2_HITS].checks[0].detail, "no knee"));
    sb_analysis_release(&an);

    /* Per-tier hit sums take precedence over the runs' shares: 10 of 100 hits on tier 2. */
    runs[3].tier_hits[0] = 60;
    runs[3].tier_hits[1] = 30;
    runs[3].tier_hits[2] = 10;
    for (int t = 0; t < 3; t++)
        runs[3].tier_misses[t] = 10;
    eval(&an, runs, 4, &o);
    assert_gate(&an.gates[SB_GATE_H2B_TIER2_HITS], SB_VERDICT_FAIL, "below_threshold");
    assert_true(fabs(an.gates[SB_GATE_H2B_TIER2_HITS].value - 0.10) < 1e-12);
    assert_true(fabs(an.series[0].pts[3].tier_hit_ratio[2] - 0.5) < 1e-12);
    sb_analysis_release(&an);
}

static void test_grouping(void **state)
{
    (void)state;
    struct sb_analyze_opts o = opts_default();
    struct sb_run runs[6];
    struct sb_analysis an;
    struct sb_err err = {0};
    for (size_t i = 0; i < 6; i++)
        run_blank(&runs[i], i);
    /* Two stacks' H0 sweeps, given out of order, with one repetition pair; hypothesis and
     * stack spelled loosely. */
    run_set(&runs[0], "h0", "A", 4, 1024, 2, 10, 14);
    run_set(&runs[1], "H0", "stackA", 1, 1024, 1, 10, 12); /* a different stack label */
    run_set(&runs[2], "H0", "A", 1, 1024, 1, 10, 12);
    run_set(&runs[3], "H0", "A", 4, 1024, 1, 10, 16);
    run_set(&runs[4], "H0", "B", 2, 1024, 1, 10, 12);
    run_set(&runs[5], "H2A", "A", 4, 2048, 1, 10, 12);
    runs[4].t1 = 2000;
    runs[0].t1 = 1000;
    assert_int_equal(sb_analysis_build(&an, runs, 6, &o, &err), 0);
    /* Series: H0 A, H0 B, H0 stackA, then H2A. */
    assert_int_equal(an.nseries, 4);
    assert_string_equal(an.series[0].hypothesis, "H0");
    assert_string_equal(an.series[0].label, "H0 / A / m / fixed_context / ctx 1024");
    assert_int_equal(an.series[0].npts, 2);
    assert_true(an.series[0].pts[0].x == 1 && an.series[0].pts[1].x == 4);
    assert_int_equal(an.series[0].pts[1].nruns, 2);
    /* Repetitions in order: repetition 1 (run3) before 2 (run0). */
    assert_int_equal(an.series[0].pts[1].runs[0], 3);
    assert_int_equal(an.series[0].pts[1].runs[1], 0);
    assert_true(fabs(an.series[0].pts[1].p99[SB_LAT_TTFT] - 15) < 1e-12);
    assert_string_equal(an.series[3].hypothesis, "H2A");
    assert_string_equal(an.series[3].label, "H2A / A / m / fixed_context / c 4");
    assert_true(sb_run_stack_is(&runs[1], 'A'));
    assert_false(sb_run_stack_is(&runs[1], 'B'));
    /* U_work for every H0 series; uwork.txt takes the newest (stack B, t1 2000). */
    assert_int_equal(an.nuwork, 3);
    assert_int_not_equal(an.uwork_pick, SIZE_MAX);
    assert_string_equal(an.uwork[an.uwork_pick].series->first->stack, "B");
    sb_analysis_release(&an);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_runs),       cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_run_clean),     cmocka_unit_test(test_repetitions),
        cmocka_unit_test(test_h2a_nvme_flat), cmocka_unit_test(test_h2b_tier2_hits),
        cmocka_unit_test(test_grouping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
