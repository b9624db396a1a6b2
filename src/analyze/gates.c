/*
 * The Test Plan §10 quality gates, one entry each in gate_kinds[]. A gate looks at subjects
 * (runs, points, series), gives each a check (PASS, FAIL or N-A with a reason code and the
 * numbers behind it), and its verdict is FAIL when any check fails, PASS when at least one
 * passes and none fails, and N-A otherwise: a gate never passes on no evidence. The choices the
 * Test Plan leaves open are made here and stated in each gate's rule text, which verdicts.json
 * and the report carry:
 *   - repetitions are runs equal in every label but run id and repetition (see hypo.c);
 *   - reproducibility is max / min - 1 of the repetitions' p99, so every pair is within 5 %;
 *   - the H2A "idle" reference is a Stack A run with phase "idle", else the H2A run with the
 *     lowest load (concurrency x context), and NVMe r/s counts as flat within 10 % of it or
 *     5 r/s, whichever is larger (an idle disk reads ~0 r/s, where 10 % means nothing);
 *   - the H2B knee is the §2 knee rule applied to the context sweep; without a knee, the largest
 *     context.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "sb/analyze_out.h"
#include "sb/util.h"

#define ALIGNED_MIN     0.95
#define COV_MAX         0.10
#define REPRO_MAX       0.05
#define NVME_FLAT_REL   0.10
#define NVME_FLAT_ABS   5.0 /* r/s */
#define TIER2_SHARE_MIN 0.20

struct gate_kind {
    const char *name;
    const char *rule;
    double threshold;
    bool worst_is_max; /* the gate's value is the largest check value (else the smallest) */
    int (*eval)(const struct sb_analysis *an, struct sb_gate *g);
};

static const char *str_or(const char *s, const char *dflt)
{
    return s && s[0] ? s : dflt;
}

/* Appends a check; NULL when out of memory. */
static struct sb_gate_check *add_check(struct sb_gate *g, const char *subject)
{
    struct sb_gate_check *c = realloc(g->checks, (g->nchecks + 1) * sizeof(*c));
    if (!c)
        return NULL;
    g->checks = c;
    c = &g->checks[g->nchecks++];
    memset(c, 0, sizeof(*c));
    size_t len = strnlen(subject, sizeof(c->subject) - 1);
    memcpy(c->subject, subject, len);
    c->subject[len] = '\0';
    c->value = NAN;
    c->verdict = SB_VERDICT_NA;
    c->reason = "no_telemetry";
    return c;
}

/* v with 3 decimals, or "n/a". */
static void fmt_num(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.3f", v);
    else
        snprintf(buf, cap, "n/a");
}

static int eval_aligned(const struct sb_analysis *an, struct sb_gate *g)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        struct sb_gate_check *c = add_check(g, str_or(r->run_id, r->dir));
        if (!c)
            return -1;
        bool b = sb_run_stack_is(r, 'B');
        double v = r->sysmon_aligned;
        if (b && !isnan(r->dynkv_aligned) && (isnan(v) || r->dynkv_aligned < v))
            v = r->dynkv_aligned;
        char s1[32], s2[32];
        fmt_num(s1, sizeof(s1), r->sysmon_aligned);
        fmt_num(s2, sizeof(s2), r->dynkv_aligned);
        /* Late and missed ticks are what kept the share down: say how many. */
        char ticks[96] = "";
        if (r->sysmon_late || r->sysmon_missed)
            snprintf(ticks, sizeof(ticks), " (%zu late, %zu missed ticks)", r->sysmon_late,
                     r->sysmon_missed);
        if (b)
            snprintf(c->detail, sizeof(c->detail), "sysmon %s%s, dynkv %s (stack B)", s1, ticks,
                     s2);
        else
            snprintf(c->detail, sizeof(c->detail), "sysmon %s%s", s1, ticks);
        if (isnan(v))
            continue; /* N-A, no_telemetry */
        c->value = v;
        c->verdict = v >= ALIGNED_MIN ? SB_VERDICT_PASS : SB_VERDICT_FAIL;
        c->reason = v >= ALIGNED_MIN ? "ok" : "below_threshold";
    }
    return 0;
}

/* cov_p99 and reproducible: one check per point, over its repetitions. */
static int eval_repetitions(const struct sb_analysis *an, struct sb_gate *g, bool cov)
{
    int m = an->metric;
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            char subject[512], where[128];
            sb_point_desc(an, se, p, where, sizeof(where));
            snprintf(subject, sizeof(subject), "%s @ %s", se->label, where);
            struct sb_gate_check *c = add_check(g, subject);
            if (!c)
                return -1;
            double v = cov ? p->p99_cov[m] : p->p99_spread[m];
            snprintf(c->detail, sizeof(c->detail), "%zu repetitions with a p99", p->p99_reps[m]);
            if (p->p99_reps[m] < 2) {
                c->reason = "no_repetitions";
                continue;
            }
            if (isnan(v)) {
                c->reason = "no_data";
                continue;
            }
            /* The repetitions' p99 range, for the detail. */
            double lo = INFINITY, hi = -INFINITY;
            for (size_t i = 0; i < p->nruns; i++) {
                double x = an->runs[p->runs[i]].lat[m].p99;
                if (isnan(x))
                    continue;
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
            snprintf(c->detail, sizeof(c->detail),
                     "%zu repetitions, p99 %.2f..%.2f ms, mean %.2f ms", p->p99_reps[m], lo, hi,
                     p->p99[m]);
            bool ok = cov ? v < COV_MAX : v <= REPRO_MAX;
            c->value = v;
            c->verdict = ok ? SB_VERDICT_PASS : SB_VERDICT_FAIL;
            c->reason = ok ? "ok" : "above_threshold";
        }
    }
    return 0;
}

static int eval_cov(const struct sb_analysis *an, struct sb_gate *g)
{
    return eval_repetitions(an, g, true);
}

static int eval_repro(const struct sb_analysis *an, struct sb_gate *g)
{
    return eval_repetitions(an, g, false);
}

static bool is_hyp(const struct sb_run *r, const char *h)
{
    char buf[16];
    return strcmp(sb_run_hypothesis(r, buf, sizeof(buf)), h) == 0;
}

static bool is_idle(const struct sb_run *r)
{
    return r->phase && strcasecmp(r->phase, "idle") == 0;
}

static double load_of(const struct sb_run *r)
{
    double c = r->concurrency > 0 ? (double)r->concurrency : 1;
    double x = r->context_tokens > 0 ? (double)r->context_tokens : 1;
    return c * x;
}

static int eval_nvme_flat(const struct sb_analysis *an, struct sb_gate *g)
{
    /* The reference: a Stack A "idle" run (H2A's first, newest), else H2A's lowest load. */
    size_t ref = SIZE_MAX;
    bool ref_idle = false;
    for (int pass = 0; pass < 2 && ref == SIZE_MAX; pass++)
        for (size_t i = 0; i < an->nruns; i++) {
            const struct sb_run *r = &an->runs[i];
            if (!is_idle(r) || sb_run_stack_is(r, 'B') || isnan(r->nvme_rps.mean) ||
                (pass == 0 && !is_hyp(r, "H2A")))
                continue;
            if (ref == SIZE_MAX || r->t1 > an->runs[ref].t1)
                ref = i;
            ref_idle = true;
        }
    size_t nh2a = 0;
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!is_hyp(r, "H2A") || sb_run_stack_is(r, 'B') || is_idle(r))
            continue;
        nh2a++;
        if (ref_idle || isnan(r->nvme_rps.mean))
            continue;
        if (ref == SIZE_MAX || load_of(r) < load_of(&an->runs[ref]) ||
            (load_of(r) == load_of(&an->runs[ref]) &&
             r->context_tokens < an->runs[ref].context_tokens))
            ref = i;
    }
    if (nh2a == 0)
        return 0; /* no checks: N-A, no_runs */
    double idle = ref != SIZE_MAX ? an->runs[ref].nvme_rps.mean : NAN;
    double tol = isnan(idle) ? NAN : fmax(NVME_FLAT_REL * idle, NVME_FLAT_ABS);
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!is_hyp(r, "H2A") || sb_run_stack_is(r, 'B') || is_idle(r) || i == ref)
            continue;
        struct sb_gate_check *c = add_check(g, str_or(r->run_id, r->dir));
        if (!c)
            return -1;
        if (isnan(r->nvme_rps.mean) || isnan(idle)) {
            snprintf(c->detail, sizeof(c->detail), "no NVMe r/s in %s",
                     isnan(r->nvme_rps.mean) ? "this run" : "any H2A run");
            continue;
        }
        double dev = fabs(r->nvme_rps.mean - idle);
        snprintf(c->detail, sizeof(c->detail),
                 "NVMe %.2f r/s vs %s %.2f r/s ('%s'), tolerance %.2f r/s", r->nvme_rps.mean,
                 ref_idle ? "idle" : "lowest-load run", idle, str_or(an->runs[ref].run_id, "?"),
                 tol);
        c->value = dev;
        c->verdict = dev <= tol ? SB_VERDICT_PASS : SB_VERDICT_FAIL;
        c->reason = dev <= tol ? "ok" : "above_threshold";
    }
    if (g->nchecks == 0) {
        /* A single H2A run that is its own reference: nothing to compare. */
        struct sb_gate_check *c = add_check(g, str_or(an->runs[ref].run_id, "?"));
        if (!c)
            return -1;
        c->reason = "no_reference";
        snprintf(c->detail, sizeof(c->detail),
                 "one H2A run and no idle run: it is its own reference");
    }
    return 0;
}

static int eval_tier2(const struct sb_analysis *an, struct sb_gate *g)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (strcmp(se->hypothesis, "H2B") != 0 || sb_run_stack_is(se->first, 'A') || !se->npts)
            continue;
        struct sb_gate_check *c = add_check(g, se->label);
        if (!c)
            return -1;
        struct sb_knee_step *steps;
        size_t nsteps;
        struct sb_knee knee;
        if (sb_series_knee(se, an->metric, an->ratio, an->max_error_rate, &steps, &nsteps, &knee) !=
            0)
            return -1;
        free(steps);
        /* Points are sorted by x like the steps, so the indices agree. */
        size_t idx = knee.knee_idx;
        const char *where = "knee";
        if (idx == SIZE_MAX) {
            where = "largest context, no knee";
            idx = knee.uwork_idx;
        }
        if (idx == SIZE_MAX) {
            idx = se->npts - 1;
            while (idx > 0 && isnan(se->pts[idx].x))
                idx--;
        }
        const struct sb_point *p = &se->pts[idx];
        char share[32];
        fmt_num(share, sizeof(share), p->tier2_share);
        snprintf(c->detail, sizeof(c->detail), "%s: context %.0f, tier-2 share of hits %s", where,
                 p->x, share);
        if (isnan(p->tier2_share))
            continue;
        c->value = p->tier2_share;
        bool ok = p->tier2_share >= TIER2_SHARE_MIN;
        c->verdict = ok ? SB_VERDICT_PASS : SB_VERDICT_FAIL;
        c->reason = ok ? "ok" : "below_threshold";
    }
    return 0;
}

static int eval_run_clean(const struct sb_analysis *an, struct sb_gate *g)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        struct sb_gate_check *c = add_check(g, str_or(r->run_id, r->dir));
        if (!c)
            return -1;
        c->reason = "no_run_json";
        const char *why = r->exit_reason ? r->exit_reason : "";
        if (!why[0] && r->late_sends < 0)
            continue; /* N-A: the old harness wrote no run.json */
        bool ended = !why[0] || strcmp(why, "completed") == 0 || strcmp(why, "duration") == 0;
        bool lag = r->fell_behind;
        char flags[160];
        sb_run_flags(r, flags, sizeof(flags));
        snprintf(c->detail, sizeof(c->detail), "exit_reason %s, %lld late sends%s%s",
                 why[0] ? why : "unknown", r->late_sends > 0 ? r->late_sends : 0,
                 flags[0] ? ": " : "", flags);
        c->value = r->late_sends > 0 ? (double)r->late_sends : 0;
        c->verdict = ended && !lag ? SB_VERDICT_PASS : SB_VERDICT_FAIL;
        c->reason = !ended ? (strcmp(why, "fatal") == 0 ? "fatal" : "interrupted")
                    : lag  ? "client_lag"
                           : "ok";
    }
    return 0;
}

static const struct gate_kind gate_kinds[SB_GATE_N] = {
    [SB_GATE_ALIGNED] = {.name = "aligned",
                         .rule = ">= 95 % of each run's window within one cadence of a telemetry "
                                 "tick on time (sysmon; and dynkv for Stack B): missed ticks and "
                                 "ticks read over half a cadence late count as not aligned; N-A "
                                 "without telemetry",
                         .threshold = ALIGNED_MIN,
                         .eval = eval_aligned},
    [SB_GATE_COV_P99] = {.name = "cov_p99",
                         .rule = "CoV(p99) = sample sd / mean of the repetitions' p99 < 10 % at "
                                 "every point; N-A below 2 repetitions",
                         .threshold = COV_MAX,
                         .worst_is_max = true,
                         .eval = eval_cov},
    [SB_GATE_REPRODUCIBLE] = {.name = "reproducible",
                              .rule = "max / min - 1 of the repetitions' p99 <= 5 % at every "
                                      "point (every pair within 5 %); N-A below 2 repetitions",
                              .threshold = REPRO_MAX,
                              .worst_is_max = true,
                              .eval = eval_repro},
    [SB_GATE_H2A_NVME_FLAT] = {.name = "h2a_nvme_flat",
                               .rule = "Stack A H2A: mean NVMe r/s within max(10 % of idle, 5 "
                                       "r/s) of idle; idle = a Stack A run with phase \"idle\", "
                                       "else the lowest-load H2A run (concurrency x context)",
                               .threshold = NVME_FLAT_REL,
                               .worst_is_max = true,
                               .eval = eval_nvme_flat},
    [SB_GATE_H2B_TIER2_HITS] = {.name = "h2b_tier2_hits",
                                .rule = "Stack B H2B: tier-2 share of KV hits >= 20 % at the "
                                        "knee of the context sweep (the knee rule on p99 / p50), "
                                        "else at the largest context",
                                .threshold = TIER2_SHARE_MIN,
                                .eval = eval_tier2},
    [SB_GATE_RUN_CLEAN] = {.name = "run_clean",
                           .rule =
                               "each run ended as planned (run.json exit_reason completed or "
                               "duration, not sigint, sigterm or fatal) with a client that kept "
                               "its schedule (client_lag.fell_behind false: at most 1 % of "
                               "the sends over 1 ms late, none over 100 ms): an interrupted run's "
                               "figures are partial, and a lagging "
                               "client measures itself; N-A without run.json",
                           .threshold = 0,
                           .worst_is_max = true,
                           .eval = eval_run_clean},
};

const char *sb_verdict_name(enum sb_verdict v)
{
    switch (v) {
    case SB_VERDICT_PASS:
        return "PASS";
    case SB_VERDICT_FAIL:
        return "FAIL";
    case SB_VERDICT_NA:
        break;
    }
    return "N-A";
}

static void summarize(struct sb_gate *g, bool worst_is_max)
{
    g->verdict = SB_VERDICT_NA;
    g->reason = g->nchecks ? g->checks[0].reason : "no_runs";
    g->value = NAN;
    const struct sb_gate_check *first_fail = NULL;
    for (size_t i = 0; i < g->nchecks; i++) {
        const struct sb_gate_check *c = &g->checks[i];
        if (c->verdict == SB_VERDICT_FAIL && !first_fail)
            first_fail = c;
        if (c->verdict == SB_VERDICT_PASS && g->verdict == SB_VERDICT_NA) {
            g->verdict = SB_VERDICT_PASS;
            g->reason = "ok";
        }
        if (!isnan(c->value) &&
            (isnan(g->value) || (worst_is_max ? c->value > g->value : c->value < g->value)))
            g->value = c->value;
    }
    if (first_fail) {
        g->verdict = SB_VERDICT_FAIL;
        g->reason = first_fail->reason;
    }
}

int sb_gates_eval(struct sb_analysis *an, struct sb_err *err)
{
    sb_gates_release(an->gates, SB_GATE_N);
    for (size_t i = 0; i < SB_GATE_N; i++) {
        const struct gate_kind *k = &gate_kinds[i];
        struct sb_gate *g = &an->gates[i];
        g->name = k->name;
        g->rule = k->rule;
        g->threshold = k->threshold;
        if (k->eval(an, g) != 0)
            return sb_err_set(err, "out of memory evaluating gate '%s'", k->name);
        summarize(g, k->worst_is_max);
    }
    return 0;
}

void sb_gates_release(struct sb_gate *gates, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(gates[i].checks);
        memset(&gates[i], 0, sizeof(gates[i]));
    }
}

int sb_verdicts_write(const struct sb_analysis *an, const char *path, struct sb_err *err)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return sb_err_set(err, "out of memory writing '%s'", path);
    cJSON_AddStringToObject(root, "metric", an->metric == SB_LAT_E2E ? "e2e" : "ttft");
    cJSON_AddItemToObject(root, "knee_ratio", sb_json_num_or_null(an->ratio));
    cJSON *gates = cJSON_AddArrayToObject(root, "gates");
    for (size_t i = 0; i < SB_GATE_N; i++) {
        const struct sb_gate *g = &an->gates[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(gates, o);
        cJSON_AddStringToObject(o, "gate", g->name ? g->name : "");
        cJSON_AddStringToObject(o, "verdict", sb_verdict_name(g->verdict));
        cJSON_AddStringToObject(o, "reason", g->reason ? g->reason : "no_runs");
        cJSON_AddItemToObject(o, "value", sb_json_num_or_null(g->value));
        cJSON_AddItemToObject(o, "threshold", sb_json_num_or_null(g->threshold));
        cJSON_AddStringToObject(o, "rule", g->rule ? g->rule : "");
        size_t count[3] = {0};
        for (size_t k = 0; k < g->nchecks; k++)
            count[g->checks[k].verdict]++;
        cJSON *cnt = cJSON_AddObjectToObject(o, "counts");
        cJSON_AddNumberToObject(cnt, "pass", (double)count[SB_VERDICT_PASS]);
        cJSON_AddNumberToObject(cnt, "fail", (double)count[SB_VERDICT_FAIL]);
        cJSON_AddNumberToObject(cnt, "na", (double)count[SB_VERDICT_NA]);
        cJSON *checks = cJSON_AddArrayToObject(o, "checks");
        for (size_t k = 0; k < g->nchecks; k++) {
            const struct sb_gate_check *c = &g->checks[k];
            cJSON *co = cJSON_CreateObject();
            cJSON_AddItemToArray(checks, co);
            cJSON_AddStringToObject(co, "subject", c->subject);
            cJSON_AddStringToObject(co, "verdict", sb_verdict_name(c->verdict));
            cJSON_AddStringToObject(co, "reason", c->reason);
            cJSON_AddItemToObject(co, "value", sb_json_num_or_null(c->value));
            cJSON_AddStringToObject(co, "detail", c->detail);
        }
    }
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    if (!js)
        return sb_err_set(err, "out of memory writing '%s'", path);
    struct sb_buf b;
    sb_buf_init(&b, 256u << 20);
    int rc = sb_buf_adds(&b, js) | sb_buf_adds(&b, "\n");
    cJSON_free(js);
    if (rc == 0)
        rc = sb_write_file_atomic(path, b.data, b.len, err);
    else
        sb_err_set(err, "out of memory writing '%s'", path);
    sb_buf_release(&b);
    return rc;
}
