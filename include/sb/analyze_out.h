/*
 * The output half of `sparkbench analyze` (sb_analyze_outputs() in sb/analyze.h), in five parts
 * that share struct sb_analysis:
 *
 *   knee.c    the rules as pure functions: the H0 knee / U_work rule, Pearson r with a
 *             least-squares line, the coefficient of variation;
 *   table.c   string tables that are both a CSV file and a report table;
 *   hypo.c    runs grouped into series (one curve: hypothesis, stack, model, workload and the
 *             settings the hypothesis holds fixed) of points (the repetitions of one setting),
 *             U_work for every H0 series, uwork.txt / uwork.json;
 *   plot.c    one table of figure kinds: each fills its CSV and writes a gnuplot script next to
 *             it, which gnuplot (fork/exec) renders to SVG and PNG;
 *   gates.c   the Test Plan §10 quality gates, verdicts.json;
 *   report.c  report.md and a self-contained report.html, and sb_analyze_outputs() itself.
 *
 * NAN means "not available" everywhere: an empty CSV cell, JSON null, "n/a" in the report.
 */
#ifndef SB_ANALYZE_OUT_H
#define SB_ANALYZE_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include "sb/analyze.h"
#include "sb/buf.h"
#include "sb/err.h"
#include "sb/util.h"

/* ---- rules (knee.c) ---- */

/* One step of a sweep for the knee rule. */
struct sb_knee_step {
    double x;   /* the sweep value (concurrency); NAN when unknown */
    double p50; /* of the knee metric, ms; NAN when not measured */
    double p99;
    double error_rate; /* failed / measured requests, 0..1; NAN when unknown */
    double rps; /* throughput: analyze's achieved_rps (sb/stats.h: ok completions in the window
                   without the drain, per second); NAN when unknown */
    /* filled by sb_knee_find(): */
    double ratio;     /* p99 / p50; NAN when either is NAN or p50 <= 0 */
    bool errors_over; /* error_rate > the rule's maximum: over the knee by itself */
    int over;         /* 1: p99 > k x p50 or errors_over, 0: not, -1: skipped (x unknown, or
                         p50 or p99 NAN without errors_over) */
    /* filled by sb_saturation_find(): */
    bool saturated; /* the saturation knee: the last step whose next one gained no throughput */
};

enum sb_knee_status {
    SB_KNEE_NO_STEPS, /* no step with x, p50 and p99 */
    SB_KNEE_FOUND,    /* knee at a later step; U_work is the step before it */
    SB_KNEE_AT_FIRST, /* the knee is the first step: U_work is undefined */
    SB_KNEE_NONE,     /* no two consecutive steps over: U_work is the largest x tested */
};

struct sb_knee {
    enum sb_knee_status status;
    double knee;      /* x of the knee step; NAN unless FOUND or AT_FIRST */
    double uwork;     /* x of U_work; NAN for NO_STEPS and AT_FIRST */
    size_t knee_idx;  /* index into the sorted steps; SIZE_MAX when there is no knee */
    size_t uwork_idx; /* SIZE_MAX when U_work is undefined */
};

/*
 * The Test Plan §2 rule, with failed requests. Sorts steps[0..n) by x (stable; NAN x last), marks
 * each step's ratio and over, and finds the knee: the first step where p99 > k x p50 holds for it
 * and for the next step, or, if that comes first, the first step whose error rate exceeds
 * max_error_rate (a step where requests fail, e.g. with 429, is past the knee however fast the
 * rest were; NAN max_error_rate: errors are not looked at). Steps skipped for a NAN x, or for a
 * NAN p50 or p99 without too many errors, are left out of the sequence (two over steps around a
 * skipped one are consecutive). U_work is the step before the knee; with no knee, the largest x.
 */
void sb_knee_find(struct sb_knee_step *steps, size_t n, double k, double max_error_rate,
                  struct sb_knee *out);

/* "no_steps", "knee", "knee_at_first_step", "no_knee". */
const char *sb_knee_status_name(enum sb_knee_status s);

/*
 * The saturation knee, printed beside the §2 rule because that rule is blind on a noisy server
 * (llama.cpp's TTFT p99/p50 is above 2 at one user, so every sweep "knees at the first step",
 * while the real queue, 4 -> 8 users on 4 slots, has p50 x 10 and a ratio of 1.8). It reads the
 * curve itself. Over the steps sorted by x that have an x, a throughput (rps) and a p50, for each
 * step s and the next such step n:
 *     rps(n) < (1 + g) x rps(s)    the added users bought under g more completions per second,
 *     p50(n) > (1 + g) x p50(s)    and they waited for it (the knee metric's p50 rose),
 * the saturation knee is the first s for which both hold: the most users the server serves
 * before it queues them. It is Little's law at work: in a closed loop N = X x R, so when the
 * throughput X stops following N the latency R takes the rise; throughput flat with latency flat
 * is not a queue (a client-bound or rate-limited run) and does not count. g is SB_SAT_MIN_GAIN.
 */
#define SB_SAT_MIN_GAIN 0.05

enum sb_sat_status {
    SB_SAT_NO_STEPS, /* fewer than two steps with x, rps and p50 */
    SB_SAT_FOUND,    /* throughput stopped rising after step x */
    SB_SAT_NONE,     /* throughput rose at every step: not saturated within the sweep */
};

struct sb_saturation {
    enum sb_sat_status status;
    double x;          /* the saturation knee's x; NAN unless FOUND */
    size_t idx;        /* its index into the sorted steps; SIZE_MAX unless FOUND */
    double gain;       /* rps(n) / rps(s) - 1 at the knee; NAN unless FOUND */
    double lat_growth; /* p50(n) / p50(s) - 1 at the knee; NAN unless FOUND */
};

/*
 * Finds the saturation knee (above) of steps[0..n) with gain threshold g (SB_SAT_MIN_GAIN),
 * sorting them by x as sb_knee_find() does and marking the knee step's saturated.
 */
void sb_saturation_find(struct sb_knee_step *steps, size_t n, double g, struct sb_saturation *out);

/* "no_steps", "saturation", "no_saturation". */
const char *sb_saturation_status_name(enum sb_sat_status s);

/* A least-squares line y = a + b x and Pearson's r over the pairs where neither is NAN. */
struct sb_fit {
    size_t n;    /* pairs used */
    double r;    /* NAN when n < 2 or x or y is constant */
    double a, b; /* NAN when n < 2 or x is constant */
};

void sb_fit_linear(const double *x, const double *y, size_t n, struct sb_fit *out);

/*
 * Coefficient of variation: sample standard deviation (n - 1 in the denominator) over the mean,
 * of the values in v[0..n) that are not NAN. NAN with fewer than two values or a mean of 0.
 */
double sb_cov(const double *v, size_t n);

/* The mean of the values that are not NAN; NAN when there are none. */
double sb_mean_finite(const double *v, size_t n);

/* ---- tables (table.c) ---- */

/*
 * A table of strings: a header and rows, filled cell by cell in column order. The first failure
 * (out of memory, a row with too many cells) is remembered and reported by sb_table_failed(), so
 * builders check once at the end.
 */
struct sb_table {
    size_t ncols;
    size_t nrows; /* data rows */
    size_t cap;   /* rows allocated */
    char **cells; /* (nrows + 1) x ncols, row 0 the header; "" for an empty cell */
    size_t cur;   /* next column of the last row */
    bool failed;
};

/* Starts a table with the given header (copied). Returns 0 or -1 (out of memory). */
int sb_table_init(struct sb_table *t, const char *const *header, size_t ncols);
void sb_table_release(struct sb_table *t);
/* Starts a new row of empty cells. */
void sb_table_row(struct sb_table *t);
/* Fills the next cell of the current row: a copy of s, NULL as "". */
void sb_table_str(struct sb_table *t, const char *s);
/* A number as "%.10g"; NAN or infinity as "". */
void sb_table_num(struct sb_table *t, double v);
/* A number with a fixed number of decimals ("%.*f"); NAN or infinity as "". */
void sb_table_fixed(struct sb_table *t, double v, int decimals);
/* A count; negative values (unknown) as "". */
void sb_table_int(struct sb_table *t, long long v);
/* printf-style. */
void sb_table_fmt(struct sb_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool sb_table_failed(const struct sb_table *t);
/* Row 0 is the header, rows 1..nrows the data. */
const char *sb_table_cell(const struct sb_table *t, size_t row, size_t col);
/* The column named name, or SIZE_MAX. */
size_t sb_table_col(const struct sb_table *t, const char *name);
/* Appends t as RFC 4180 CSV (cells with a comma, quote or line break quoted) to b. */
int sb_table_csv(const struct sb_table *t, struct sb_buf *b);

/* ---- grouping (hypo.c) ---- */

/* What a hypothesis sweeps: the x of its points. */
enum sb_xvar {
    SB_X_CONCURRENCY,
    SB_X_CONTEXT,
    SB_X_FIO,           /* baseline 0, moderate 1, heavy 2, anything else 3 */
    SB_X_WORKING_SET,   /* kv_working_set_bytes */
    SB_X_TIER_CAPACITY, /* tier0_bytes + tier1_bytes */
    SB_X_PHASE,         /* none: points ordered by phase label */
};

/* The repetitions of one setting: runs that differ only in run_id, directory and repetition. */
struct sb_point {
    size_t *runs; /* owned; indices into the analysed runs, by repetition */
    size_t nruns;
    double x; /* the series' sweep value; NAN when the runs do not say */
    /* means over repetitions of each run's value, NAN when none has one */
    double p50[SB_LAT_N], p95[SB_LAT_N], p99[SB_LAT_N];
    double p99_cov[SB_LAT_N];          /* sb_cov() of the repetitions' p99 */
    double p99_spread[SB_LAT_N];       /* max / min - 1 of the repetitions' p99; NAN below 2 */
    size_t p99_reps[SB_LAT_N];         /* repetitions with a p99 */
    size_t measured, errors, rejected; /* sums */
    double iowait, nvme_rps, nvme_rmbs, nvme_r_await, psi_io, gpu_util, fetch_p95; /* means */
    double achieved_rps;      /* mean of the repetitions' achieved_rps (sb/stats.h throughput) */
    double mem_available_min; /* bytes, min of mins */
    double tier_hit_ratio[3]; /* sum of hits / sum of (hits + misses) over repetitions */
    double tier2_share;       /* sum of tier-2 hits / sum of all tiers' hits */
    double t1;                /* the newest repetition's window end */
};

/* A curve: the points of one hypothesis, stack, model, workload and fixed settings. */
struct sb_series {
    char hypothesis[16];        /* canonical upper case: "H0", "H2B"; "" when the runs say none */
    const struct sb_run *first; /* borrowed: the labels of its first run */
    char label[256]; /* "A / model / workload" plus the fixed settings; no commas or quotes */
    enum sb_xvar xvar;
    struct sb_point *pts; /* owned, sorted by x (NAN last), then phase */
    size_t npts;
    double t1; /* the newest run's window end */
};

/* The knee rule over one H0 series. */
struct sb_uwork {
    const struct sb_series *series; /* borrowed from the analysis */
    struct sb_knee_step *steps;     /* owned, one per point, sorted */
    size_t nsteps;
    struct sb_knee knee;
    struct sb_saturation sat; /* the saturation knee, beside the rule */
};

/* A written figure (or table-only CSV), for the report. */
struct sb_figure {
    const char *stem;    /* file stem under <out_dir>/figures: "H0_latency_vs_concurrency" */
    const char *section; /* the report section: "H0", "H2", ... */
    const char *title;
    struct sb_table table; /* the CSV's content */
    bool has_plot;         /* a .gp script was written */
    bool svg, png;         /* the rendered files exist */
};

enum sb_verdict { SB_VERDICT_NA, SB_VERDICT_PASS, SB_VERDICT_FAIL };

/* One subject a gate looked at (a run, a point, a series). */
struct sb_gate_check {
    char subject[256];
    enum sb_verdict verdict;
    const char *reason; /* static: "ok", "below_threshold", ... */
    double value;       /* the number compared with the threshold, NAN when none */
    char detail[256];   /* the inputs, in words */
};

/* A quality gate: the verdict over its checks (FAIL if any fails, else PASS if any passes). */
struct sb_gate {
    const char *name; /* "aligned", "cov_p99", "reproducible", "h2a_nvme_flat", "h2b_tier2_hits",
                         "run_clean" */
    const char *rule; /* the rule in words */
    double threshold;
    enum sb_verdict verdict;
    const char *reason;
    double value;                 /* the worst check's value, NAN when none */
    struct sb_gate_check *checks; /* owned */
    size_t nchecks;
};

enum {
    SB_GATE_ALIGNED,
    SB_GATE_COV_P99,
    SB_GATE_REPRODUCIBLE,
    SB_GATE_H2A_NVME_FLAT,
    SB_GATE_H2B_TIER2_HITS,
    SB_GATE_RUN_CLEAN, /* each run ended as planned without client lag (run.json) */
    SB_GATE_N
};

/* Everything the outputs are made of. The runs and opts are borrowed for its lifetime. */
struct sb_analysis {
    const struct sb_run *runs;
    size_t nruns;
    const struct sb_analyze_opts *opts;
    int metric;            /* the knee metric, SB_LAT_TTFT or SB_LAT_E2E */
    double ratio;          /* the knee ratio (2.0 when opts leave it 0 or NAN) */
    double max_error_rate; /* the knee rule's maximum error rate (0.01 when opts leave it 0/NAN) */
    struct sb_series *series;
    size_t nseries;
    struct sb_uwork *uwork; /* one per H0 series */
    size_t nuwork;
    size_t uwork_pick;    /* the series whose U_work goes to uwork.txt (newest); SIZE_MAX none */
    struct sb_fit h7_fit; /* observed NVMe read MB/s = a + b x predicted */
    struct sb_fit h7_fetch_fit; /* p99 (knee metric) = a + b x tier-2 fetch p95 */
    struct sb_gate gates[SB_GATE_N];
    struct sb_figure *figs; /* owned, in figure-kind order */
    size_t nfigs;
    bool gnuplot_ok;           /* gnuplot was found and rendering was asked for */
    char gnuplot_version[128]; /* "gnuplot 5.4 patchlevel 4" or "" */
    char fig_dir[4096];        /* <out_dir>/figures */
    char **warnings;           /* owned: grouping warnings (a repetition number met twice in
                                  one point), printed on stderr and listed in the report */
    size_t nwarnings;
};

/*
 * Groups runs[0..n) into series and points, finds U_work for each H0 series and fits H7. an is
 * zeroed first; release it with sb_analysis_release() whatever this returns. 0 or -1 with err
 * (out of memory).
 */
int sb_analysis_build(struct sb_analysis *an, const struct sb_run *runs, size_t n,
                      const struct sb_analyze_opts *opts, struct sb_err *err);
void sb_analysis_release(struct sb_analysis *an);
/* Appends a printf-style warning to an->warnings. 0 or -1 (out of memory). */
int sb_analysis_warn(struct sb_analysis *an, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Where a point sits on its series, in words: "concurrency 16", "context 2048", "fio heavy". */
void sb_point_desc(const struct sb_analysis *an, const struct sb_series *s,
                   const struct sb_point *p, char *buf, size_t cap);

/* The canonical hypothesis of a run ("h2b" -> "H2B") into buf; "" when it has none. */
const char *sb_run_hypothesis(const struct sb_run *r, char *buf, size_t cap);
/* Whether the run is of stack s ('A' or 'B'): "A", "a", "stackA", "stack_a" ... */
bool sb_run_stack_is(const struct sb_run *r, char s);

/*
 * The knee rule over a series' points on metric (each point's error rate: errors / measured of its
 * runs), steps allocated into *steps (free()). 0 or -1 (out of memory).
 */
int sb_series_knee(const struct sb_series *s, int metric, double k, double max_error_rate,
                   struct sb_knee_step **steps, size_t *nsteps, struct sb_knee *out);

/* A point's failed / measured requests over its runs; NAN when none was measured. */
double sb_point_error_rate(const struct sb_point *p);

/* The rule in words, with the metric and ratio used. */
void sb_uwork_rule(const struct sb_analysis *an, char *buf, size_t cap);
/* The series' outcome in words: "knee at concurrency 16: U_work = 8", "no knee within ...". */
void sb_uwork_note(const struct sb_uwork *u, char *buf, size_t cap);
/* The saturation knee in words, with whether the §2 rule agrees ("saturation knee at
 * concurrency 4: ...; the rule is blind here: ..."). */
void sb_saturation_note(const struct sb_uwork *u, char *buf, size_t cap);
/* The saturation knee's definition in words. */
void sb_saturation_rule(char *buf, size_t cap);
/* Whether the §2 rule and the saturation knee disagree: the rule's knee is at the first step, or
 * its U_work (a knee found) and the saturation knee are not the same x, one of them undefined
 * included; the rule's "no knee" agrees with "throughput rose at every step". The sign that the
 * rule is blind on this server. */
bool sb_uwork_disagrees(const struct sb_uwork *u);

/*
 * Writes U_work: opts->uwork_path gets the picked series' U_work as one integer and a newline
 * (or is removed when that U_work is undefined, so a runner never reads a stale one), and
 * uwork.json next to it gets every H0 series' steps and result. Prints the rule's inputs on
 * stdout unless opts->quiet. Nothing at all without H0 runs; no files when uwork_path is NULL.
 * 0 or -1 with err.
 */
int sb_uwork_write(const struct sb_analysis *an, struct sb_err *err);

/* ---- figures (plot.c) ---- */

/*
 * Writes every figure kind that has data: <fig_dir>/<stem>.csv, <stem>.gp, and (gnuplot present
 * and opts->no_figures unset) <stem>.svg and <stem>.png, plus H7_fit.csv. A missing gnuplot is
 * one warning on stderr; a failing script a warning naming it. 0, or -1 with err when a file
 * cannot be written.
 */
int sb_figures_write(struct sb_analysis *an, struct sb_err *err);

/*
 * Runs argv (argv[0] looked up in PATH) in directory dir (NULL: ours), stdin from /dev/null,
 * stdout and stderr captured into out (may be NULL: discarded). Returns the exit status, 128 +
 * signal when killed, or 127 when it cannot be started.
 */
int sb_spawn_capture(const char *const *argv, const char *dir, struct sb_buf *out);

/* ---- gates (gates.c) ---- */

/* Evaluates every gate into an->gates. 0 or -1 with err (out of memory). */
int sb_gates_eval(struct sb_analysis *an, struct sb_err *err);
void sb_gates_release(struct sb_gate *gates, size_t n);
/* "PASS", "FAIL", "N-A". */
const char *sb_verdict_name(enum sb_verdict v);
/* Writes verdicts.json (every gate with its checks) to path. 0 or -1 with err. */
int sb_verdicts_write(const struct sb_analysis *an, const char *path, struct sb_err *err);

/* ---- report (report.c) ---- */

/* Writes <out_dir>/report.md and <out_dir>/report.html. 0 or -1 with err. */
int sb_report_write(const struct sb_analysis *an, struct sb_err *err);

struct cJSON;
/* A cJSON number, or JSON null for NAN/Inf (the outputs' "not available"). */
struct cJSON *sb_json_num_or_null(double v);

#endif
