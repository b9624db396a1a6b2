/*
 * The Test Plan §9 figure checklist as one table of figure kinds. Each kind fills the table that
 * becomes its CSV in <out_dir>/figures (the data behind the figure, and the report's table) and
 * writes the body of a gnuplot script next to it; gnuplot renders the script to SVG and PNG.
 * The scripts read the CSV by relative name, so a user restyles a figure by editing <stem>.gp
 * and re-running `gnuplot <stem>.gp` inside figures/. gnuplot runs as a child process
 * (fork/exec) whose exit status is checked; without gnuplot the CSVs and scripts are still
 * written. Adding a figure is adding a kind: a table builder, a plot body, a line in kinds[].
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb/analyze_out.h"
#include "sb/util.h"

#define GP_MAX    (4u << 20)
#define CSV_MAX   (256u << 20)
#define SPAWN_MAX (64u << 10)

struct fig_kind {
    const char *stem;
    const char *section;
    const char *title;
    const char *const *header;
    size_t ncols;
    /* Fills the rows of t (header already there). 0 or -1 (out of memory). */
    int (*rows)(const struct sb_analysis *an, struct sb_table *t);
    /* Appends the plot commands for one output to gp; returns how many plots it drew (0: no
     * data worth a figure, no script written). NULL for a table-only kind. */
    int (*plot)(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp);
    int width, height; /* the plot's canvas, before the key under it */
    bool own_key;      /* the plot places its keys itself (multiplot panels) */
};

static const char *const lat_key[SB_LAT_N] = {"ttft", "e2e", "ttfb", "itl", "tpot"};
static const char *const lat_title[SB_LAT_N] = {"TTFT", "E2E", "TTFB", "ITL", "TPOT"};

/* ---- helpers ---- */

static bool hyp_in(const char *hyp, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(hyp, *set) == 0)
            return true;
    return false;
}

static const char *str_or(const char *s, const char *dflt)
{
    return s && s[0] ? s : dflt;
}

static double ll_or_nan(long long v)
{
    return v >= 0 ? (double)v : NAN;
}

static const char *col_name(int metric, const char *what, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s_%s_ms", lat_key[metric], what);
    return buf;
}

/* Appends s as a gnuplot double-quoted string. */
static void gp_str(struct sb_buf *gp, const char *s)
{
    sb_buf_adds(gp, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_buf_adds(gp, "\\");
        if ((unsigned char)*s >= 0x20)
            sb_buf_add(gp, s, 1);
    }
    sb_buf_adds(gp, "\"");
}

/* The distinct values of column col in row order (borrowed from t); count in *n. */
static size_t distinct(const struct sb_table *t, size_t col, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t r = 1; r <= t->nrows; r++) {
        const char *v = sb_table_cell(t, r, col);
        size_t k = 0;
        while (k < n && strcmp(out[k], v) != 0)
            k++;
        if (k == n && n < cap)
            out[n++] = v;
    }
    return n;
}

/* Whether some row with column key equal to val (key SIZE_MAX: any row) has both x and y. */
static bool has_xy(const struct sb_table *t, size_t key, const char *val, size_t x, size_t y)
{
    for (size_t r = 1; r <= t->nrows; r++)
        if ((key == SIZE_MAX || strcmp(sb_table_cell(t, r, key), val) == 0) &&
            sb_table_cell(t, r, x)[0] && sb_table_cell(t, r, y)[0])
            return true;
    return false;
}

/* "set logscale x 2" when every x is positive and they span a factor of 8 or more. */
/* The range of the numbers in column x; false when there are none. */
static bool col_range(const struct sb_table *t, size_t x, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t r = 1; r <= t->nrows; r++) {
        double v;
        if (sb_parse_double(sb_table_cell(t, r, x), &v) != 0 || !isfinite(v))
            continue;
        *lo = v < *lo ? v : *lo;
        *hi = v > *hi ? v : *hi;
    }
    return *lo <= *hi;
}

/* "set logscale x 2" when every x is positive and they span a factor of 8 or more; returns
 * whether it did. */
static bool gp_logx(struct sb_buf *gp, const struct sb_table *t, size_t x)
{
    double lo, hi;
    if (!col_range(t, x, &lo, &hi) || !(lo > 0) || hi < 8 * lo)
        return false;
    sb_buf_adds(gp, "set logscale x 2\n");
    return true;
}

static void gp_titles(struct sb_buf *gp, const char *title, const char *xl, const char *yl)
{
    sb_buf_adds(gp, "set title ");
    gp_str(gp, title);
    sb_buf_adds(gp, "\nset xlabel ");
    gp_str(gp, xl);
    sb_buf_adds(gp, "\nset ylabel ");
    gp_str(gp, yl);
    sb_buf_adds(gp, "\nset grid\n");
}

/* One clause "data skip 1 using X:(strcol(K) eq "v" ? column(Y) : NaN) ..."; key SIZE_MAX for
 * all rows. Columns are 0-based here, 1-based in gnuplot. */
static void gp_clause(struct sb_buf *gp, bool *first, size_t key, const char *val, size_t x,
                      size_t y, const char *style, const char *title)
{
    sb_buf_adds(gp, *first ? "plot " : ", \\\n     ");
    *first = false;
    if (key == SIZE_MAX)
        sb_buf_addf(gp, "data skip 1 using %zu:%zu", x + 1, y + 1);
    else {
        sb_buf_addf(gp, "data skip 1 using %zu:(strcol(%zu) eq ", x + 1, key + 1);
        gp_str(gp, val);
        sb_buf_addf(gp, " ? column(%zu) : NaN)", y + 1);
    }
    sb_buf_addf(gp, " %s title ", style);
    gp_str(gp, title);
}

/*
 * Lines of ys[0..ny) against x, one colour per value of column key ("series"), one dash type per
 * y. Returns the clauses written (the caller ends the plot line when > 0).
 */
static int gp_series_lines(struct sb_buf *gp, const struct sb_table *t, size_t key, size_t x,
                           const size_t *ys, const char *const *ynames, size_t ny, bool *first)
{
    const char *vals[64];
    size_t nv = distinct(t, key, vals, SB_ARRAY_SIZE(vals));
    int drawn = 0;
    for (size_t v = 0; v < nv; v++)
        for (size_t k = 0; k < ny; k++) {
            if (ys[k] == SIZE_MAX || !has_xy(t, key, vals[v], x, ys[k]))
                continue;
            char style[96], title[400];
            snprintf(style, sizeof(style), "with linespoints lw 2 pt %zu lc %zu dt %zu", k + 5,
                     v + 1, k + 1);
            snprintf(title, sizeof(title), "%s%s%s", vals[v], ynames[k][0] ? " " : "", ynames[k]);
            gp_clause(gp, first, key, vals[v], x, ys[k], style, title);
            drawn++;
        }
    return drawn;
}

/* ---- the tables ---- */

static const char *const h0_hyps[] = {"H0", NULL};

static int rows_h0(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h0_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->workload);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, (long long)p->nruns);
            sb_table_int(t, (long long)p->measured);
            sb_table_int(t, (long long)p->errors);
            for (int m = SB_LAT_TTFT; m <= SB_LAT_E2E; m++) {
                sb_table_num(t, p->p50[m]);
                sb_table_num(t, p->p95[m]);
                sb_table_num(t, p->p99[m]);
                sb_table_num(t, p->p99_cov[m]);
            }
            double p50 = p->p50[an->metric], p99 = p->p99[an->metric];
            sb_table_num(t, p50 > 0 ? p99 / p50 : NAN);
            if (isnan(p50) || isnan(p99))
                sb_table_str(t, "");
            else
                sb_table_str(t, p99 > an->ratio * p50 ? "1" : "0");
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static const char *const h0_header[] = {
    "series",      "stack",       "model",        "workload",   "context_tokens",
    "concurrency", "repetitions", "measured",     "errors",     "ttft_p50_ms",
    "ttft_p95_ms", "ttft_p99_ms", "ttft_p99_cov", "e2e_p50_ms", "e2e_p95_ms",
    "e2e_p99_ms",  "e2e_p99_cov", "knee_ratio",   "over"};

/* A vertical line at x in colour v + 1, dash type dt, labelled at graph height y0 + 0.05 v: right
 * of the line, or left of it in the right part of the plot. */
static void gp_marker(struct sb_buf *gp, double x, const char *text, int dt, size_t v, double y0,
                      bool logx, double lo, double hi)
{
    double pos = hi > lo ? (logx ? log(x / lo) / log(hi / lo) : (x - lo) / (hi - lo)) : 0;
    sb_buf_addf(gp,
                "set arrow from %.17g, graph 0 to %.17g, graph 1 nohead dt %d lw 2 lc %zu\n"
                "set label \"%s\" at %.17g, graph %.2f %s tc lt %zu\n",
                x, x, dt, v + 1, text, x, y0 + 0.05 * (double)v,
                pos > 0.6 ? "right offset char -0.5,0" : "left offset char 0.5,0", v + 1);
}

static int plot_h0(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c50[32], c95[32], c99[32], title[160], yl[64];
    size_t ys[3] = {sb_table_col(t, col_name(an->metric, "p50", c50, sizeof(c50))),
                    sb_table_col(t, col_name(an->metric, "p95", c95, sizeof(c95))),
                    sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)))};
    static const char *const names[3] = {"p50", "p95", "p99"};
    size_t x = sb_table_col(t, "concurrency"), key = sb_table_col(t, "series");
    snprintf(title, sizeof(title), "H0: %s p50 / p95 / p99 vs concurrency (knee: p99 > %g x p50)",
             lat_title[an->metric], an->ratio);
    snprintf(yl, sizeof(yl), "%s (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "concurrency (users)", yl);
    bool logx = gp_logx(gp, t, x);
    double lo, hi;
    col_range(t, x, &lo, &hi);
    /* U_work of each series as a dotted vertical line in its colour, its saturation knee as a
       dashed one. */
    const char *vals[64];
    size_t nv = distinct(t, key, vals, SB_ARRAY_SIZE(vals));
    sb_buf_adds(gp, "unset arrow\nunset label\n");
    for (size_t u = 0; u < an->nuwork; u++) {
        const struct sb_uwork *w = &an->uwork[u];
        for (size_t v = 0; v < nv; v++) {
            if (strcmp(vals[v], w->series->label) != 0)
                continue;
            char text[96];
            if (!isnan(w->knee.uwork)) {
                snprintf(text, sizeof(text), "U_work = %.0f (knee %.0f)", w->knee.uwork,
                         w->knee.knee);
                if (isnan(w->knee.knee))
                    snprintf(text, sizeof(text), "U_work = %.0f (no knee)", w->knee.uwork);
                gp_marker(gp, w->knee.uwork, text, 3, v, 0.04, logx, lo, hi);
            }
            /* The saturation knee beside it, dashed, and loud where the rule disagrees. */
            if (w->sat.status == SB_SAT_FOUND) {
                snprintf(text, sizeof(text), "saturation knee %.0f%s", w->sat.x,
                         sb_uwork_disagrees(w) ? " (rule blind)" : "");
                gp_marker(gp, w->sat.x, text, 2, v, 0.5, logx, lo, hi);
            }
        }
    }
    bool first = true;
    int n = gp_series_lines(gp, t, key, x, ys, names, 3, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h1_hyps[] = {"H1", NULL};
static const char *const h1_header[] = {
    "series", "stack",       "model",       "phase",      "repetitions", "measured",
    "errors", "ttft_p50_ms", "ttft_p99_ms", "e2e_p50_ms", "e2e_p99_ms",  "nvme_rmbs_mean"};

static int rows_h1(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h1_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->phase);
            sb_table_int(t, (long long)p->nruns);
            sb_table_int(t, (long long)p->measured);
            sb_table_int(t, (long long)p->errors);
            sb_table_num(t, p->p50[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p50[SB_LAT_E2E]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
            sb_table_num(t, p->nvme_rmbs);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

/* The LoRA suite's split: one row per run and adapter (then "*", all adapters), cold beside
   warm. Every run made with --lora-list, whatever its hypothesis label. */
static const char *const h1a_header[] = {"run_id",
                                         "hypothesis",
                                         "stack",
                                         "model",
                                         "phase",
                                         "adapter",
                                         "adapter_idx",
                                         "cold_requests",
                                         "cold_errors",
                                         "cold_ttft_p50_ms",
                                         "cold_ttft_p99_ms",
                                         "warm_requests",
                                         "warm_errors",
                                         "warm_ttft_p50_ms",
                                         "warm_ttft_p99_ms",
                                         "cold_minus_warm_p50_ms"};

static int rows_h1_adapters(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        char hyp[16];
        for (size_t a = 0; a < r->nlora; a++) {
            const struct sb_lora_split *ls = &r->lora[a];
            sb_table_row(t);
            sb_table_str(t, r->run_id);
            sb_table_str(t, sb_run_hypothesis(r, hyp, sizeof(hyp)));
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->phase);
            sb_table_str(t, ls->adapter);
            sb_table_int(t, (long long)a + 1);
            for (int k = 0; k < 2; k++) {
                sb_table_int(t, (long long)ls->n[k]);
                sb_table_int(t, (long long)ls->errors[k]);
                sb_table_num(t, ls->ttft[k].p50);
                sb_table_num(t, ls->ttft[k].p99);
            }
            sb_table_num(t, ls->ttft[0].p50 - ls->ttft[1].p50);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

/* Cold and warm TTFT p50 per adapter (x: the adapter, named on the axis), one colour per run. */
static int plot_h1_adapters(const struct sb_analysis *an, const struct sb_table *t,
                            struct sb_buf *gp)
{
    (void)an;
    size_t run = sb_table_col(t, "run_id"), name = sb_table_col(t, "adapter");
    size_t x = sb_table_col(t, "adapter_idx");
    size_t ys[2] = {sb_table_col(t, "cold_ttft_p50_ms"), sb_table_col(t, "warm_ttft_p50_ms")};
    gp_titles(gp, "H1: TTFT p50 of each adapter's first use (cold) and later uses (warm)",
              "adapter", "TTFT p50 (ms)");
    /* Tick labels from the first run's rows (the adapters of every run, when they share one). */
    sb_buf_adds(gp, "set xtics rotate by -30 (");
    const char *first_run = t->nrows ? sb_table_cell(t, 1, run) : "";
    bool firsttic = true;
    for (size_t r = 1; r <= t->nrows; r++) {
        if (strcmp(sb_table_cell(t, r, run), first_run) != 0)
            continue;
        sb_buf_adds(gp, firsttic ? "" : ", ");
        firsttic = false;
        const char *nm = sb_table_cell(t, r, name);
        gp_str(gp, strcmp(nm, "*") == 0 ? "all" : nm);
        sb_buf_addf(gp, " %s", sb_table_cell(t, r, x));
    }
    sb_buf_adds(gp, ")\nset offsets 0.5, 0.5, 0, 0\nset yrange [0:*]\n");
    static const char *const names[2] = {"cold", "warm"};
    const char *vals[64];
    size_t nv = distinct(t, run, vals, SB_ARRAY_SIZE(vals));
    bool first = true;
    int n = 0;
    for (size_t v = 0; v < nv; v++)
        for (int k = 0; k < 2; k++) {
            if (!has_xy(t, run, vals[v], x, ys[k]))
                continue;
            char style[96], title[400];
            snprintf(style, sizeof(style), "with points pt %d ps 1.6 lc %zu", k ? 6 : 7, v + 1);
            snprintf(title, sizeof(title), "%s %s", vals[v], names[k]);
            gp_clause(gp, &first, run, vals[v], x, ys[k], style, title);
            n++;
        }
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h2_hyps[] = {"H2A", "H2B", NULL};
static const char *const h2_header[] = {
    "series",        "hypothesis",          "stack",       "model",      "workload",
    "concurrency",   "context_tokens",      "repetitions", "measured",   "errors",
    "rejected",      "ttft_p50_ms",         "ttft_p99_ms", "e2e_p50_ms", "e2e_p99_ms",
    "nvme_rps_mean", "nvme_r_await_ms_mean"};

static int rows_h2(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h2_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, se->hypothesis);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->workload);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, (long long)p->nruns);
            sb_table_int(t, (long long)p->measured);
            sb_table_int(t, (long long)p->errors);
            sb_table_int(t, (long long)p->rejected);
            sb_table_num(t, p->p50[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p50[SB_LAT_E2E]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
            sb_table_num(t, p->nvme_rps);
            sb_table_num(t, p->nvme_r_await);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h2(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c99[32], title[160], yl[64];
    size_t ys[1] = {sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)))};
    static const char *const names[1] = {"p99"};
    size_t x = sb_table_col(t, "context_tokens");
    snprintf(title, sizeof(title), "H2A vs H2B: %s p99 vs context", lat_title[an->metric]);
    snprintf(yl, sizeof(yl), "%s p99 (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "context (tokens)", yl);
    gp_logx(gp, t, x);
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "series"), x, ys, names, 1, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h2b_hyps[] = {"H2B", NULL};
static const char *const h2b_header[] = {"series",          "stack",           "model",
                                         "workload",        "concurrency",     "context_tokens",
                                         "repetitions",     "tier0_hit_ratio", "tier1_hit_ratio",
                                         "tier2_hit_ratio", "tier2_share"};

static int rows_h2b(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h2b_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->workload);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, (long long)p->nruns);
            for (int i = 0; i < 3; i++)
                sb_table_num(t, p->tier_hit_ratio[i]);
            sb_table_num(t, p->tier2_share);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h2b(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    size_t ys[4] = {sb_table_col(t, "tier0_hit_ratio"), sb_table_col(t, "tier1_hit_ratio"),
                    sb_table_col(t, "tier2_hit_ratio"), sb_table_col(t, "tier2_share")};
    static const char *const names[4] = {"tier-0 hit ratio", "tier-1 hit ratio", "tier-2 hit ratio",
                                         "tier-2 share of hits"};
    size_t x = sb_table_col(t, "context_tokens");
    gp_titles(gp, "H2B: KV tier hit ratios vs context", "context (tokens)", "ratio");
    sb_buf_adds(gp, "set yrange [0:1.05]\n");
    gp_logx(gp, t, x);
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "series"), x, ys, names, 4, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h3_hyps[] = {"H3", "H2A", "H2B", NULL};
static const char *const h3_header[] = {"series",
                                        "hypothesis",
                                        "stack",
                                        "model",
                                        "concurrency",
                                        "context_tokens",
                                        "repetitions",
                                        "cpu_iowait_pct_mean",
                                        "nvme_rps_mean",
                                        "nvme_r_await_ms_mean",
                                        "mem_available_min_gib",
                                        "psi_io_some_mean",
                                        "ttft_p99_ms",
                                        "e2e_p99_ms"};

static int rows_h3(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h3_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, se->hypothesis);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, (long long)p->nruns);
            sb_table_num(t, p->iowait);
            sb_table_num(t, p->nvme_rps);
            sb_table_num(t, p->nvme_r_await);
            sb_table_num(t, p->mem_available_min / (1024.0 * 1024.0 * 1024.0));
            sb_table_num(t, p->psi_io);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h3(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    static const struct {
        const char *col, *title, *ylabel;
    } panels[] = {
        {"cpu_iowait_pct_mean", "CPU iowait", "iowait (%)"},
        {"nvme_rps_mean", "NVMe reads", "r/s"},
        {"mem_available_min_gib", "MemAvailable (minimum)", "GiB"},
        {"psi_io_some_mean", "PSI io some", "%"},
    };
    size_t x = sb_table_col(t, "context_tokens"), key = sb_table_col(t, "series");
    size_t use[4], nuse = 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(panels); i++)
        if (has_xy(t, SIZE_MAX, NULL, x, sb_table_col(t, panels[i].col)))
            use[nuse++] = i;
    if (!nuse)
        return 0;
    sb_buf_addf(gp,
                "set multiplot layout %d,%d title \"H3: OS counters, H2A (Stack A) vs H2B (Stack "
                "B), vs context\"\nset grid\nset key top left opaque font \",8\"\n"
                "set offsets graph 0.03, graph 0.03, graph 0.3, graph 0.05\n",
                nuse > 2 ? 2 : 1, nuse > 1 ? 2 : 1);
    gp_logx(gp, t, x);
    for (size_t i = 0; i < nuse; i++) {
        size_t y = sb_table_col(t, panels[use[i]].col);
        sb_buf_adds(gp, "set title ");
        gp_str(gp, panels[use[i]].title);
        sb_buf_adds(gp, "\nset xlabel \"context (tokens)\"\nset ylabel ");
        gp_str(gp, panels[use[i]].ylabel);
        sb_buf_adds(gp, "\n");
        bool first = true;
        static const char *const none[1] = {""};
        if (gp_series_lines(gp, t, key, x, &y, none, 1, &first))
            sb_buf_adds(gp, "\n");
    }
    sb_buf_adds(gp, "unset multiplot\n");
    return (int)nuse;
}

static const char *const h4_hyps[] = {"H4A", "H4B", NULL};
static const char *const h4_header[] = {"series",         "hypothesis",    "stack",
                                        "model",          "fio_profile",   "concurrency",
                                        "context_tokens", "repetitions",   "nvme_r_await_ms_mean",
                                        "nvme_rps_mean",  "ttft_p99_ms",   "e2e_p99_ms",
                                        "fio_read_mbs",   "fio_write_mbs", "fio_read_clat_p99_ms"};

/* The mean of one fio number over a point's runs (sb/analyze_fio.h), NAN when none has it. */
static double fio_mean(const struct sb_analysis *an, const struct sb_point *p, size_t off)
{
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < p->nruns; i++) {
        double v;
        memcpy(&v, (const char *)&an->runs[p->runs[i]].fio + off, sizeof(v));
        if (!isnan(v)) {
            sum += v;
            n++;
        }
    }
    return n ? sum / (double)n : NAN;
}

static int rows_h4(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h4_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, se->hypothesis);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, str_or(r->fio_profile, r->phase));
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, (long long)p->nruns);
            sb_table_num(t, p->nvme_r_await);
            sb_table_num(t, p->nvme_rps);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
            sb_table_num(t, fio_mean(an, p, offsetof(struct sb_fio_stats, read_mbs)));
            sb_table_num(t, fio_mean(an, p, offsetof(struct sb_fio_stats, write_mbs)));
            sb_table_num(t, fio_mean(an, p, offsetof(struct sb_fio_stats, read_p99_ms)));
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h4(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c99[32], title[160], yl[64];
    size_t y = sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)));
    size_t x = sb_table_col(t, "nvme_r_await_ms_mean"), key = sb_table_col(t, "series");
    size_t prof = sb_table_col(t, "fio_profile");
    snprintf(title, sizeof(title), "H4A / H4B: %s p99 vs NVMe r_await under fio contention",
             lat_title[an->metric]);
    snprintf(yl, sizeof(yl), "%s p99 (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "NVMe r_await, mean (ms)", yl);
    sb_buf_adds(gp, "set offsets graph 0.05, graph 0.15, graph 0.1, graph 0.05\n");
    bool first = true;
    static const char *const names[1] = {""};
    int n = gp_series_lines(gp, t, key, x, &y, names, 1, &first);
    if (!n)
        return 0;
    /* The fio profile next to each point. */
    const char *vals[64];
    size_t nv = distinct(t, key, vals, SB_ARRAY_SIZE(vals));
    for (size_t v = 0; v < nv; v++) {
        if (!has_xy(t, key, vals[v], x, y))
            continue;
        sb_buf_addf(gp, ", \\\n     data skip 1 using %zu:(strcol(%zu) eq ", x + 1, key + 1);
        gp_str(gp, vals[v]);
        sb_buf_addf(gp,
                    " ? column(%zu) : NaN):(strcol(%zu)) with labels offset char 1,1 tc lt "
                    "%zu notitle",
                    y + 1, prof + 1, v + 1);
    }
    sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h5_hyps[] = {"H5", NULL};
static const char *const h5_header[] = {"series",
                                        "stack",
                                        "model",
                                        "workload",
                                        "concurrency",
                                        "context_tokens",
                                        "kv_working_set_gib",
                                        "repetitions",
                                        "ttft_p95_ms",
                                        "ttft_p99_ms",
                                        "e2e_p95_ms",
                                        "e2e_p99_ms",
                                        "nvme_rps_mean"};

static int rows_h5(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h5_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_str(t, r->workload);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_num(t, p->x / (1024.0 * 1024.0 * 1024.0));
            sb_table_int(t, (long long)p->nruns);
            sb_table_num(t, p->p95[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p95[SB_LAT_E2E]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
            sb_table_num(t, p->nvme_rps);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h5(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c95[32], c99[32], title[160], yl[64];
    size_t ys[2] = {sb_table_col(t, col_name(an->metric, "p95", c95, sizeof(c95))),
                    sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)))};
    static const char *const names[2] = {"p95", "p99"};
    size_t x = sb_table_col(t, "kv_working_set_gib");
    snprintf(title, sizeof(title), "H5: %s p95 / p99 vs KV working set", lat_title[an->metric]);
    snprintf(yl, sizeof(yl), "%s (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "KV working set (GiB)", yl);
    gp_logx(gp, t, x);
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "series"), x, ys, names, 2, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h6_hyps[] = {"H6", NULL};
static const char *const h6_header[] = {
    "series", "stack", "model", "eviction_policy", "tier0_bytes", "tier1_bytes", "capacity_gib",
    "points", "sweep", "knee",  "uwork",           "ttft_p99_ms", "e2e_p99_ms",  "tier2_share"};

/* One H6 cell (the points of a series at one tier capacity): the knee over the sweep inside
 * it (concurrency when that varies, else context) and the point at its highest load. */
static int h6_cell(const struct sb_analysis *an, const struct sb_series *se, size_t from, size_t to,
                   struct sb_table *t)
{
    const struct sb_run *r0 = &an->runs[se->pts[from].runs[0]];
    bool conc_varies = false;
    for (size_t k = from; k < to; k++)
        if (an->runs[se->pts[k].runs[0]].concurrency != r0->concurrency)
            conc_varies = true;
    size_t n = to - from;
    struct sb_knee_step *steps = calloc(n, sizeof(*steps));
    if (!steps)
        return -1;
    size_t top = from;
    double top_x = -INFINITY;
    for (size_t k = from; k < to; k++) {
        const struct sb_run *r = &an->runs[se->pts[k].runs[0]];
        double x = ll_or_nan(conc_varies ? r->concurrency : r->context_tokens);
        steps[k - from] = (struct sb_knee_step){.x = x,
                                                .p50 = se->pts[k].p50[an->metric],
                                                .p99 = se->pts[k].p99[an->metric],
                                                .error_rate = sb_point_error_rate(&se->pts[k])};
        if (!isnan(x) && x > top_x) {
            top_x = x;
            top = k;
        }
    }
    struct sb_knee knee = {.status = SB_KNEE_NO_STEPS, .knee = NAN, .uwork = NAN};
    if (n >= 2)
        sb_knee_find(steps, n, an->ratio, an->max_error_rate, &knee);
    free(steps);
    const struct sb_point *p = &se->pts[top];
    sb_table_row(t);
    sb_table_str(t, se->label);
    sb_table_str(t, r0->stack);
    sb_table_str(t, r0->model);
    sb_table_str(t, str_or(r0->eviction_policy, "default"));
    sb_table_num(t, r0->tier0_bytes ? (double)r0->tier0_bytes : NAN);
    sb_table_num(t, r0->tier1_bytes ? (double)r0->tier1_bytes : NAN);
    sb_table_num(t, se->pts[from].x / (1024.0 * 1024.0 * 1024.0));
    sb_table_int(t, (long long)n);
    sb_table_str(t, n < 2 ? "" : conc_varies ? "concurrency" : "context_tokens");
    sb_table_num(t, knee.knee);
    sb_table_num(t, knee.uwork);
    sb_table_num(t, p->p99[SB_LAT_TTFT]);
    sb_table_num(t, p->p99[SB_LAT_E2E]);
    sb_table_num(t, p->tier2_share);
    return 0;
}

static int rows_h6(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h6_hyps))
            continue;
        size_t from = 0;
        for (size_t k = 1; k <= se->npts; k++) {
            bool same = k < se->npts && (se->pts[k].x == se->pts[from].x ||
                                         (isnan(se->pts[k].x) && isnan(se->pts[from].x)));
            if (same)
                continue;
            if (h6_cell(an, se, from, k, t) != 0)
                return -1;
            from = k;
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h6(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c99[32], title[160], yl[64];
    size_t y = sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)));
    size_t x = sb_table_col(t, "capacity_gib"), key = sb_table_col(t, "series");
    size_t kn = sb_table_col(t, "knee");
    snprintf(title, sizeof(title), "H6: %s p99 (highest load) and knee vs tier-0 + tier-1 capacity",
             lat_title[an->metric]);
    snprintf(yl, sizeof(yl), "%s p99 (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "tier-0 + tier-1 capacity (GiB)", yl);
    bool knees = has_xy(t, SIZE_MAX, NULL, x, kn);
    if (knees)
        sb_buf_adds(gp, "set y2label \"knee (sweep value)\"\nset y2tics\nset ytics nomirror\n"
                        "set y2range [0:*]\n");
    bool first = true;
    static const char *const p99name[1] = {"p99"};
    int n = gp_series_lines(gp, t, key, x, &y, p99name, 1, &first);
    const char *vals[64];
    size_t nv = knees ? distinct(t, key, vals, SB_ARRAY_SIZE(vals)) : 0;
    for (size_t v = 0; v < nv; v++) {
        if (!has_xy(t, key, vals[v], x, kn))
            continue;
        char style[96], ttl[320];
        snprintf(style, sizeof(style), "axes x1y2 with linespoints lw 2 pt 9 dt 2 lc %zu", v + 1);
        snprintf(ttl, sizeof(ttl), "%s knee", vals[v]);
        gp_clause(gp, &first, key, vals[v], x, kn, style, ttl);
        n++;
    }
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

/* The runs that carry H7's evidence. */
static const char *const h7_hyps[] = {"H7", "H2B", "H4B", NULL};
static const char *const h7_header[] = {"run_id",    "hypothesis", "stack",   "ts",
                                        "pred_rmbs", "obs_rmbs",   "obs_rps", "fetch_p95_ms"};

static int rows_h7(const struct sb_analysis *an, struct sb_table *t)
{
    char hyp[16];
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!hyp_in(sb_run_hypothesis(r, hyp, sizeof(hyp)), h7_hyps))
            continue;
        for (size_t k = 0; k < r->nh7 && r->h7; k++) {
            const struct sb_h7_point *h = &r->h7[k];
            sb_table_row(t);
            sb_table_str(t, r->run_id);
            sb_table_str(t, hyp);
            sb_table_str(t, r->stack);
            sb_table_fmt(t, "%.3f", h->ts);
            sb_table_num(t, h->pred_rmbs);
            sb_table_num(t, h->obs_rmbs);
            sb_table_num(t, h->obs_rps);
            sb_table_num(t, h->fetch_p95_ms);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

/* Points by hypothesis, the fit line, and y = x for reference. */
static int plot_scatter_fit(const struct sb_table *t, struct sb_buf *gp, size_t x, size_t y,
                            const struct sb_fit *fit, bool identity)
{
    size_t key = sb_table_col(t, "hypothesis");
    const char *vals[16];
    size_t nv = distinct(t, key, vals, SB_ARRAY_SIZE(vals));
    bool first = true;
    int n = 0;
    for (size_t v = 0; v < nv; v++) {
        if (!has_xy(t, key, vals[v], x, y))
            continue;
        char style[64];
        snprintf(style, sizeof(style), "with points pt 7 ps 0.8 lc %zu", v + 1);
        gp_clause(gp, &first, key, vals[v], x, y, style, vals[v]);
        n++;
    }
    if (!n)
        return 0;
    if (isfinite(fit->a) && isfinite(fit->b)) {
        sb_buf_addf(gp, ", \\\n     %.17g + %.17g * x with lines lw 2 lc rgb \"#000000\" title ",
                    fit->a, fit->b);
        char ttl[160];
        snprintf(ttl, sizeof(ttl), "fit y = %.4g + %.4g x (r = %.3f, n = %zu)", fit->a, fit->b,
                 fit->r, fit->n);
        gp_str(gp, ttl);
    }
    if (identity)
        sb_buf_adds(gp, ", \\\n     x with lines dt 2 lc rgb \"#888888\" title \"y = x\"");
    sb_buf_adds(gp, "\n");
    return n;
}

static int plot_h7(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char title[200];
    snprintf(title, sizeof(title),
             "H7: NVMe read MB/s, predicted from KV telemetry vs observed (Pearson r = %.3f)",
             an->h7_fit.r);
    gp_titles(gp, title, "predicted tier-2 read (MB/s)", "observed NVMe read (MB/s)");
    return plot_scatter_fit(t, gp, sb_table_col(t, "pred_rmbs"), sb_table_col(t, "obs_rmbs"),
                            &an->h7_fit, true);
}

static const char *const h7f_header[] = {"run_id",         "hypothesis",  "stack",
                                         "context_tokens", "concurrency", "fio_profile",
                                         "fetch_p95_ms",   "ttft_p99_ms", "e2e_p99_ms"};

static int rows_h7f(const struct sb_analysis *an, struct sb_table *t)
{
    char hyp[16];
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!hyp_in(sb_run_hypothesis(r, hyp, sizeof(hyp)), h7_hyps))
            continue;
        sb_table_row(t);
        sb_table_str(t, r->run_id);
        sb_table_str(t, hyp);
        sb_table_str(t, r->stack);
        sb_table_int(t, r->context_tokens);
        sb_table_int(t, r->concurrency);
        sb_table_str(t, r->fio_profile);
        sb_table_num(t, r->tier2_fetch_p95_ms.mean);
        sb_table_num(t, r->lat[SB_LAT_TTFT].p99);
        sb_table_num(t, r->lat[SB_LAT_E2E].p99);
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h7f(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char title[200], c99[32], yl[64];
    snprintf(title, sizeof(title), "H7: %s p99 vs tier-2 fetch p95, per run (Pearson r = %.3f)",
             lat_title[an->metric], an->h7_fetch_fit.r);
    snprintf(yl, sizeof(yl), "%s p99 (ms)", lat_title[an->metric]);
    gp_titles(gp, title, "tier-2 fetch p95, mean over the run (ms)", yl);
    return plot_scatter_fit(t, gp, sb_table_col(t, "fetch_p95_ms"),
                            sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99))),
                            &an->h7_fetch_fit, false);
}

static const char *const h7fit_header[] = {"relation", "x", "y", "n", "pearson_r", "a", "b"};

static int rows_h7fit(const struct sb_analysis *an, struct sb_table *t)
{
    char hyp[16], y[32];
    bool any = false;
    for (size_t i = 0; i < an->nruns && !any; i++)
        any = hyp_in(sb_run_hypothesis(&an->runs[i], hyp, sizeof(hyp)), h7_hyps);
    if (!any)
        return 0;
    const struct {
        const char *rel, *x, *y;
        const struct sb_fit *f;
    } rels[] = {
        {"observed_vs_predicted_nvme_read", "pred_rmbs", "obs_rmbs", &an->h7_fit},
        {"p99_vs_tier2_fetch_p95", "fetch_p95_ms", col_name(an->metric, "p99", y, sizeof(y)),
         &an->h7_fetch_fit},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(rels); i++) {
        sb_table_row(t);
        sb_table_str(t, rels[i].rel);
        sb_table_str(t, rels[i].x);
        sb_table_str(t, rels[i].y);
        sb_table_int(t, (long long)rels[i].f->n);
        sb_table_num(t, rels[i].f->r);
        sb_table_num(t, rels[i].f->a);
        sb_table_num(t, rels[i].f->b);
    }
    return sb_table_failed(t) ? -1 : 0;
}

static const char *const h8_hyps[] = {"H8A", "H8B", "H2A", "H2B", NULL};
static const char *const h8_header[] = {"series",
                                        "hypothesis",
                                        "stack",
                                        "model",
                                        "concurrency",
                                        "context_tokens",
                                        "repetitions",
                                        "ttft_p99_ms",
                                        "e2e_p99_ms",
                                        "cpu_iowait_pct_mean",
                                        "nvme_r_await_ms_mean"};

static int rows_h8(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        if (!hyp_in(se->hypothesis, h8_hyps))
            continue;
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            const struct sb_run *r = &an->runs[p->runs[0]];
            sb_table_row(t);
            sb_table_str(t, se->label);
            sb_table_str(t, se->hypothesis);
            sb_table_str(t, r->stack);
            sb_table_str(t, r->model);
            sb_table_int(t, r->concurrency);
            sb_table_int(t, r->context_tokens);
            sb_table_int(t, (long long)p->nruns);
            sb_table_num(t, p->p99[SB_LAT_TTFT]);
            sb_table_num(t, p->p99[SB_LAT_E2E]);
            sb_table_num(t, p->iowait);
            sb_table_num(t, p->nvme_r_await);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h8(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    char c99[32], title[160], xl[64];
    size_t x = sb_table_col(t, col_name(an->metric, "p99", c99, sizeof(c99)));
    size_t y = sb_table_col(t, "cpu_iowait_pct_mean"), aw = sb_table_col(t, "nvme_r_await_ms_mean");
    size_t key = sb_table_col(t, "series");
    snprintf(title, sizeof(title), "H8A / H8B: CPU iowait (and NVMe r_await) vs %s p99",
             lat_title[an->metric]);
    snprintf(xl, sizeof(xl), "%s p99 (ms)", lat_title[an->metric]);
    gp_titles(gp, title, xl, "CPU iowait, mean (%)");
    bool awaits = has_xy(t, SIZE_MAX, NULL, x, aw);
    if (awaits)
        sb_buf_adds(gp, "set y2label \"NVMe r_await, mean (ms)\"\nset y2tics\nset ytics nomirror\n"
                        "set y2range [0:*]\n");
    bool first = true;
    static const char *const iow[1] = {"iowait"};
    int n = gp_series_lines(gp, t, key, x, &y, iow, 1, &first);
    const char *vals[64];
    size_t nv = awaits ? distinct(t, key, vals, SB_ARRAY_SIZE(vals)) : 0;
    for (size_t v = 0; v < nv; v++) {
        if (!has_xy(t, key, vals[v], x, aw))
            continue;
        char style[96], ttl[320];
        snprintf(style, sizeof(style), "axes x1y2 with linespoints lw 1 pt 4 dt 2 lc %zu", v + 1);
        snprintf(ttl, sizeof(ttl), "%s r_await", vals[v]);
        gp_clause(gp, &first, key, vals[v], x, aw, style, ttl);
        n++;
    }
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

/* ---- the KV-reuse workloads: sessioned_chat and trace replay (sb/analyze_sess.h) ---- */

/* "stack / model / workload": what a run's curve is called in these figures. */
static void sess_label(const struct sb_run *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s / %s / %s", str_or(r->stack, "?"), str_or(r->model, "?"),
             str_or(r->workload, "?"));
}

static const char *const sess_turn_header[] = {"run_id",
                                               "series",
                                               "turn",
                                               "requests",
                                               "ttft_p50_ms",
                                               "ttft_p99_ms",
                                               "ttft_mean_ms",
                                               "cached_tokens",
                                               "reusable_tokens",
                                               "prompt_tokens",
                                               "oracle_hit_ratio",
                                               "realized_hit_ratio",
                                               "realized_over_oracle"};

/* The hit ratios of one group, as the summary's: over the records having every operand. */
static void sess_ratios(struct sb_table *t, const struct sb_sess_group *g)
{
    sb_table_num(t, g->nhit ? g->cached : NAN);
    sb_table_num(t, g->nhit ? g->reusable : NAN);
    sb_table_num(t, g->nprompt ? g->prompt : NAN);
    sb_table_num(t, g->prompt > 0 ? g->reusable_p / g->prompt : NAN);
    sb_table_num(t, g->prompt > 0 ? g->cached_p / g->prompt : NAN);
    sb_table_num(t, g->reusable > 0 ? g->cached / g->reusable : NAN);
}

/* The cells "requests" to "realized_over_oracle" of the turn and distance tables. */
static void sess_ttft_ratios(struct sb_table *t, const struct sb_sess_group *g)
{
    sb_table_int(t, (long long)g->n);
    sb_table_num(t, g->ttft_p50);
    sb_table_num(t, g->ttft_p99);
    sb_table_num(t, g->ttft_mean);
    sess_ratios(t, g);
}

static int rows_sess_turn(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        char label[400];
        sess_label(r, label, sizeof(label));
        for (size_t k = 0; k < r->sess.nturns; k++) {
            const struct sb_sess_group *g = &r->sess.turns[k];
            sb_table_row(t);
            sb_table_str(t, r->run_id);
            sb_table_str(t, label);
            sb_table_num(t, g->lo);
            sess_ttft_ratios(t, g);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_sess_turn(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    size_t ys[2] = {sb_table_col(t, "ttft_p50_ms"), sb_table_col(t, "ttft_p99_ms")};
    static const char *const names[2] = {"p50", "p99"};
    gp_titles(gp, "TTFT p50 / p99 per turn of a session", "turn", "TTFT (ms)");
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "run_id"), sb_table_col(t, "turn"), ys, names, 2,
                            &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const sess_dist_header[] = {"run_id",
                                               "series",
                                               "distance_lo_tokens",
                                               "distance_hi_tokens",
                                               "distance_x_tokens",
                                               "requests",
                                               "ttft_p50_ms",
                                               "ttft_p99_ms",
                                               "ttft_mean_ms",
                                               "cached_tokens",
                                               "reusable_tokens",
                                               "prompt_tokens",
                                               "oracle_hit_ratio",
                                               "realized_hit_ratio",
                                               "realized_over_oracle",
                                               "tier0_tokens",
                                               "tier1_tokens",
                                               "tier2_tokens",
                                               "kv_bytes_per_token"};

static int rows_sess_dist(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        char label[400];
        sess_label(r, label, sizeof(label));
        for (size_t k = 0; k < r->sess.ndist; k++) {
            const struct sb_sess_group *g = &r->sess.dist[k];
            sb_table_row(t);
            sb_table_str(t, r->run_id);
            sb_table_str(t, label);
            sb_table_num(t, g->lo);
            sb_table_num(t, g->hi);
            sb_table_num(t, sb_sess_bin_x(g->lo, g->hi));
            sess_ttft_ratios(t, g);
            for (int k2 = 0; k2 < 3; k2++)
                sb_table_num(t, r->sess.tier_tokens[k2]);
            sb_table_num(t, r->sess.kv_bytes_per_token);
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

/* The tier capacities (tokens) of the runs in the table, each once, as vertical lines; the x
 * range grows to show them. */
static void gp_tier_lines(struct sb_buf *gp, const struct sb_table *t, size_t x)
{
    static const char *const tier_rgb[3] = {"#2a7ab0", "#d0701a", "#555555"};
    double lo, hi;
    if (!col_range(t, x, &lo, &hi))
        return;
    double caps[64];
    int tiers[64];
    size_t nc = 0;
    for (int k = 0; k < 3; k++) {
        char col[32];
        snprintf(col, sizeof(col), "tier%d_tokens", k);
        size_t c = sb_table_col(t, col);
        for (size_t r = 1; c != SIZE_MAX && r <= t->nrows; r++) {
            double v;
            if (sb_parse_double(sb_table_cell(t, r, c), &v) != 0 || !(v > 0) || !isfinite(v))
                continue;
            size_t j = 0;
            while (j < nc && !(caps[j] == v && tiers[j] == k))
                j++;
            if (j == nc && nc < SB_ARRAY_SIZE(caps)) {
                caps[nc] = v;
                tiers[nc++] = k;
            }
        }
    }
    for (size_t j = 0; j < nc; j++) {
        lo = caps[j] < lo ? caps[j] : lo;
        hi = caps[j] > hi ? caps[j] : hi;
    }
    sb_buf_adds(gp, "set logscale x 2\n");
    sb_buf_addf(gp, "set xrange [%.17g:%.17g]\n", lo / 2, hi * 2);
    sb_buf_adds(gp, "unset arrow\nunset label\n");
    for (size_t j = 0; j < nc; j++) {
        char text[96];
        snprintf(text, sizeof(text), "tier %d holds %.0f tokens", tiers[j], caps[j]);
        /* label inside the plot, left of the line in its right part, one height per tier */
        double pos = log(caps[j] / (lo / 2)) / log(4 * hi / lo);
        sb_buf_addf(gp,
                    "set arrow from %.17g, graph 0 to %.17g, graph 1 nohead dt %d lw 2 lc rgb "
                    "\"%s\"\n"
                    "set label \"%s\" at %.17g, graph %.2f %s tc rgb \"%s\"\n",
                    caps[j], caps[j], 2 + tiers[j], tier_rgb[tiers[j]], text, caps[j],
                    0.95 - 0.06 * tiers[j],
                    pos > 0.6 ? "right offset char -0.5,0" : "left offset char 0.5,0",
                    tier_rgb[tiers[j]]);
    }
}

static int plot_sess_dist(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    size_t x = sb_table_col(t, "distance_x_tokens");
    size_t ys[2] = {sb_table_col(t, "ttft_p50_ms"), sb_table_col(t, "ttft_p99_ms")};
    static const char *const names[2] = {"p50", "p99"};
    gp_titles(gp, "TTFT vs reuse distance (log2 bins; dashed: tier capacities)",
              "reuse distance (tokens of other requests since the session's last turn)",
              "TTFT (ms)");
    gp_tier_lines(gp, t, x);
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "run_id"), x, ys, names, 2, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const sess_hit_header[] = {"run_id",
                                              "series",
                                              "scope",
                                              "key",
                                              "requests",
                                              "cached_tokens",
                                              "reusable_tokens",
                                              "prompt_tokens",
                                              "oracle_hit_ratio",
                                              "realized_hit_ratio",
                                              "realized_over_oracle",
                                              "distance_x_tokens"};

static void sess_hit_row(struct sb_table *t, const struct sb_run *r, const char *label,
                         const char *scope, const struct sb_sess_group *g, double key, double x)
{
    sb_table_row(t);
    sb_table_str(t, r->run_id);
    sb_table_str(t, label);
    sb_table_str(t, scope);
    sb_table_num(t, key);
    sb_table_int(t, (long long)g->nhit);
    sess_ratios(t, g);
    sb_table_num(t, x);
}

static int rows_sess_hit(const struct sb_analysis *an, struct sb_table *t)
{
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!r->sess.present)
            continue;
        char label[400];
        sess_label(r, label, sizeof(label));
        sess_hit_row(t, r, label, "all", &r->sess.all, NAN, NAN);
        for (size_t k = 0; k < r->sess.nturns; k++)
            sess_hit_row(t, r, label, "turn", &r->sess.turns[k], r->sess.turns[k].lo, NAN);
        for (size_t k = 0; k < r->sess.ndist; k++) {
            const struct sb_sess_group *g = &r->sess.dist[k];
            sess_hit_row(t, r, label, "distance", g, g->lo, sb_sess_bin_x(g->lo, g->hi));
        }
    }
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_sess_hit(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    size_t x = sb_table_col(t, "distance_x_tokens");
    size_t ys[2] = {sb_table_col(t, "oracle_hit_ratio"), sb_table_col(t, "realized_hit_ratio")};
    static const char *const names[2] = {"oracle", "realized"};
    gp_titles(gp, "Prefix-hit ratio vs reuse distance: oracle (unbounded cache) and realized",
              "reuse distance (tokens)", "hit ratio (tokens / prompt tokens)");
    gp_logx(gp, t, x);
    sb_buf_adds(gp, "set yrange [0:1.05]\n");
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "run_id"), x, ys, names, 2, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

static const char *const h5s_header[] = {
    "series",      "sessions",    "runs",       "working_set_tokens_mean", "working_set_tokens_max",
    "ttft_p50_ms", "ttft_p99_ms", "e2e_p99_ms", "realized_over_oracle"};

static int cmp_h5s(const void *a, const void *b, void *arg)
{
    const struct sb_run *runs = arg;
    const struct sb_run *x = &runs[*(const size_t *)a], *y = &runs[*(const size_t *)b];
    int c = strcmp(x->stack, y->stack);
    if (!c)
        c = strcmp(x->model, y->model);
    if (!c)
        c = strcmp(x->workload, y->workload);
    if (!c)
        c = (x->sess.sessions > y->sess.sessions) - (x->sess.sessions < y->sess.sessions);
    return c;
}

/* H5 from a sessions sweep: one point per (stack, model, workload, sessions), the runs of it
   averaged; x the live working set (run.json), y the TTFT p99 of the measured requests. */
static int rows_h5s(const struct sb_analysis *an, struct sb_table *t)
{
    size_t *idx = malloc((an->nruns ? an->nruns : 1) * sizeof(*idx));
    if (!idx)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < an->nruns; i++)
        if (an->runs[i].sess.sessioned && !isnan(an->runs[i].sess.ws_tokens_mean))
            idx[n++] = i;
    qsort_r(idx, n, sizeof(*idx), cmp_h5s, (void *)an->runs);
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && cmp_h5s(&idx[a], &idx[b], (void *)an->runs) == 0)
            b++;
        double v[6] = {0};
        size_t c[6] = {0};
        for (size_t k = a; k < b; k++) {
            const struct sb_run *r = &an->runs[idx[k]];
            const double x[6] = {r->sess.ws_tokens_mean,  r->sess.ws_tokens_max,
                                 r->lat[SB_LAT_TTFT].p50, r->lat[SB_LAT_TTFT].p99,
                                 r->lat[SB_LAT_E2E].p99,  r->sess.realized_over_oracle};
            for (int q = 0; q < 6; q++)
                if (!isnan(x[q])) {
                    v[q] += x[q];
                    c[q]++;
                }
        }
        const struct sb_run *r = &an->runs[idx[a]];
        char label[400];
        sess_label(r, label, sizeof(label));
        sb_table_row(t);
        sb_table_str(t, label);
        sb_table_int(t, r->sess.sessions);
        sb_table_int(t, (long long)(b - a));
        for (int q = 0; q < 6; q++)
            sb_table_num(t, c[q] ? v[q] / (double)c[q] : NAN);
        a = b;
    }
    free(idx);
    return sb_table_failed(t) ? -1 : 0;
}

static int plot_h5s(const struct sb_analysis *an, const struct sb_table *t, struct sb_buf *gp)
{
    (void)an;
    size_t x = sb_table_col(t, "working_set_tokens_mean");
    size_t ys[2] = {sb_table_col(t, "ttft_p50_ms"), sb_table_col(t, "ttft_p99_ms")};
    static const char *const names[2] = {"p50", "p99"};
    gp_titles(gp, "H5: TTFT p99 vs live KV working set (sessions sweep)",
              "working set (tokens held by live sessions, mean over the window)", "TTFT (ms)");
    gp_logx(gp, t, x);
    bool first = true;
    int n = gp_series_lines(gp, t, sb_table_col(t, "series"), x, ys, names, 2, &first);
    if (n)
        sb_buf_adds(gp, "\n");
    return n;
}

#define KIND(stem_, section_, title_, header_, rows_, plot_, w_, h_)                               \
    {                                                                                              \
        .stem = stem_, .section = section_, .title = title_, .header = header_,                    \
        .ncols = SB_ARRAY_SIZE(header_), .rows = rows_, .plot = plot_, .width = w_, .height = h_   \
    }

static const struct fig_kind kinds[] = {
    KIND("H0_latency_vs_concurrency", "H0", "H0: p50 / p95 / p99 vs concurrency", h0_header,
         rows_h0, plot_h0, 900, 560),
    KIND("H1_cold_vs_warm", "H1", "H1: cold vs warm LoRA", h1_header, rows_h1, NULL, 0, 0),
    KIND("H1_adapter_cold_warm", "H1", "H1: TTFT by adapter, first use (cold) vs later uses (warm)",
         h1a_header, rows_h1_adapters, plot_h1_adapters, 900, 560),
    KIND("H2_p99_vs_context", "H2", "H2A vs H2B: p99 vs context", h2_header, rows_h2, plot_h2, 900,
         560),
    KIND("H2B_tier_hits_vs_context", "H2", "H2B: tier hit ratios vs context", h2b_header, rows_h2b,
         plot_h2b, 900, 560),
    {.stem = "H3_os_counters",
     .section = "H3",
     .title = "H3: OS counters, H2A vs H2B",
     .header = h3_header,
     .ncols = SB_ARRAY_SIZE(h3_header),
     .rows = rows_h3,
     .plot = plot_h3,
     .width = 1000,
     .height = 760,
     .own_key = true},
    KIND("H4_p99_vs_r_await", "H4", "H4A / H4B: p99 vs NVMe r_await per fio profile", h4_header,
         rows_h4, plot_h4, 900, 560),
    KIND("H5_p99_vs_working_set", "H5", "H5: p99 vs KV working-set size", h5_header, rows_h5,
         plot_h5, 900, 560),
    KIND("H6_knee_vs_tier_capacity", "H6", "H6: knee and p99 vs tier capacity, per policy",
         h6_header, rows_h6, plot_h6, 900, 560),
    KIND("H7_pred_vs_obs", "H7", "H7: predicted vs observed NVMe reads", h7_header, rows_h7,
         plot_h7, 900, 560),
    KIND("H7_p99_vs_fetch_p95", "H7", "H7: p99 vs tier-2 fetch p95", h7f_header, rows_h7f, plot_h7f,
         900, 560),
    KIND("H7_fit", "H7", "H7: fits", h7fit_header, rows_h7fit, NULL, 0, 0),
    KIND("H8_iowait_vs_p99", "H8", "H8A / H8B: iowait vs p99", h8_header, rows_h8, plot_h8, 900,
         560),
    KIND("H5_p99_vs_session_working_set", "H5", "H5: TTFT p99 vs working set (sessions sweep)",
         h5s_header, rows_h5s, plot_h5s, 900, 560),
    KIND("SESS_ttft_by_turn", "SESS", "TTFT per turn index", sess_turn_header, rows_sess_turn,
         plot_sess_turn, 900, 560),
    KIND("SESS_ttft_vs_reuse_distance", "SESS", "TTFT vs reuse distance, tier capacities marked",
         sess_dist_header, rows_sess_dist, plot_sess_dist, 900, 560),
    KIND("SESS_hit_ratio", "SESS",
         "Oracle vs realized prefix-hit ratio (all, per turn, per "
         "reuse-distance bin)",
         sess_hit_header, rows_sess_hit, plot_sess_hit, 900, 560),
};

/* ---- gnuplot ---- */

int sb_spawn_capture(const char *const *argv, const char *dir, struct sb_buf *out)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return 127;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 127;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
            _exit(127);
        if (dir && chdir(dir) != 0)
            _exit(127);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char chunk[4096];
    for (;;) {
        ssize_t got = read(fds[0], chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (out)
            sb_buf_add(out, chunk, (size_t)got); /* past its limit the rest is dropped */
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 127;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}

/* Whether prog names an executable: a path, or a name found in PATH. */
static bool find_program(const char *prog)
{
    if (!prog || !prog[0])
        return false;
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char full[4096];
        if (snprintf(full, sizeof(full), "%.*s/%s", (int)len, len ? path : ".", prog) <
                (int)sizeof(full) &&
            access(full, X_OK) == 0)
            return true;
        path += len;
        if (*path == ':')
            path++;
    }
    return false;
}

/* The last non-empty line of text, for a one-line warning. */
static void last_line(const char *text, char *buf, size_t cap)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > text && start[-1] != '\n')
        start--;
    snprintf(buf, cap, "%.*s", (int)(end - start), start);
}

static bool file_nonempty(const char *dir, const char *stem, const char *ext)
{
    char path[4400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s.%s", dir, stem, ext);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* What remove_outputs() removes: the rendered files, also the script, also the CSV. */
enum stale { STALE_RENDERED = 2, STALE_SCRIPT = 3, STALE_ALL = 4 };

/*
 * Removes what an earlier analysis in the same directory may have left of a figure, so that
 * nothing stale is mistaken for this run's (a figure gnuplot did not redraw, a kind with no data
 * this time).
 */
static void remove_outputs(const char *dir, const char *stem, enum stale what)
{
    static const char *const exts[] = {"svg", "png", "gp", "csv"};
    char path[4400];
    for (size_t i = 0; i < (size_t)what; i++) {
        snprintf(path, sizeof(path), "%s/%s.%s", dir, stem, exts[i]);
        unlink(path);
    }
}

static void render(struct sb_analysis *an, struct sb_figure *f)
{
    char script[512];
    snprintf(script, sizeof(script), "%s.gp", f->stem);
    const char *argv[] = {an->opts->gnuplot ? an->opts->gnuplot : "gnuplot", script, NULL};
    struct sb_buf out;
    sb_buf_init(&out, SPAWN_MAX);
    int rc = sb_spawn_capture(argv, an->fig_dir, &out);
    f->svg = file_nonempty(an->fig_dir, f->stem, "svg");
    f->png = file_nonempty(an->fig_dir, f->stem, "png");
    if (rc != 0 || !f->svg || !f->png) {
        char line[300];
        last_line(out.data ? out.data : "", line, sizeof(line));
        fprintf(stderr, "sparkbench analyze: warning: gnuplot failed on '%s/%s' (exit %d)%s%s\n",
                an->fig_dir, script, rc, line[0] ? ": " : "", line);
    }
    sb_buf_release(&out);
}

static void gnuplot_version(struct sb_analysis *an)
{
    const char *argv[] = {an->opts->gnuplot ? an->opts->gnuplot : "gnuplot", "--version", NULL};
    struct sb_buf out;
    sb_buf_init(&out, SPAWN_MAX);
    if (sb_spawn_capture(argv, NULL, &out) == 0 && out.data)
        last_line(out.data, an->gnuplot_version, sizeof(an->gnuplot_version));
    sb_buf_release(&out);
}

static int write_script(const struct sb_analysis *an, const struct fig_kind *k,
                        const struct sb_table *t, struct sb_buf *gp, struct sb_buf *body,
                        int *plots)
{
    sb_buf_reset(gp);
    sb_buf_reset(body);
    *plots = k->plot(an, t, body);
    /* The key goes under the plot, one entry a row (two columns past six entries); the canvas
     * grows by its height so the plot keeps its size. */
    int entries = *plots > 0 ? *plots : 1;
    int cols = entries > 6 ? 2 : 1, rows = (entries + cols - 1) / cols;
    int height = k->height + (k->own_key ? 0 : 17 * rows);
    sb_buf_addf(gp,
                "# %s\n"
                "# Written by sparkbench analyze from %s.csv (%zu data rows).\n"
                "# Restyle by editing this file, then run `gnuplot %s.gp` in this directory:\n"
                "# it rewrites %s.svg and %s.png.\n"
                "data = \"%s.csv\"\n"
                "width = %d\n"
                "height = %d\n"
                "do for [fmt in \"svg png\"] {\n"
                "if (fmt eq \"svg\") {\n"
                "    set terminal svg size width,height noenhanced font \"sans,12\" background "
                "\"#ffffff\"\n"
                "} else {\n"
                "    set terminal pngcairo size width,height noenhanced font \"sans,10\" "
                "background \"#ffffff\"\n"
                "}\n"
                "set output \"%s.\".fmt\n"
                "reset\n"
                "set datafile separator comma\n"
                "set offsets graph 0.03, graph 0.03, graph 0.06, 0\n"
                "set yrange [0:*]\n",
                k->title, k->stem, t->nrows, k->stem, k->stem, k->stem, k->stem, k->width, height,
                k->stem);
    if (!k->own_key)
        sb_buf_addf(gp, "set key below vertical maxrows %d\nset bmargin %d\n", rows, rows + 4);
    sb_buf_add(gp, body->data ? body->data : "", body->len);
    sb_buf_adds(gp, "set output\n}\n");
    return gp->len >= gp->max || body->len >= body->max ? -1 : 0;
}

int sb_figures_write(struct sb_analysis *an, struct sb_err *err)
{
    const struct sb_analyze_opts *o = an->opts;
    int rc = -1;
    struct sb_buf csv, gp, body;
    sb_buf_init(&csv, CSV_MAX);
    sb_buf_init(&gp, GP_MAX);
    sb_buf_init(&body, GP_MAX);
    if (!o->out_dir || !o->out_dir[0]) {
        sb_err_set(err, "no output directory for the figures");
        goto out;
    }
    if ((size_t)snprintf(an->fig_dir, sizeof(an->fig_dir), "%s/figures", o->out_dir) >=
        sizeof(an->fig_dir)) {
        sb_err_set(err, "output directory name too long: '%s'", o->out_dir);
        goto out;
    }
    if (sb_mkdir_p(an->fig_dir, err) != 0)
        goto out;
    an->figs = calloc(SB_ARRAY_SIZE(kinds), sizeof(*an->figs));
    if (!an->figs) {
        sb_err_set(err, "out of memory making figures");
        goto out;
    }

    bool want_render = !o->no_figures;
    an->gnuplot_ok = want_render && find_program(o->gnuplot ? o->gnuplot : "gnuplot");
    if (want_render && !an->gnuplot_ok)
        fprintf(stderr,
                "sparkbench analyze: warning: gnuplot not found ('%s'): CSV files and .gp "
                "scripts written, figures not rendered\n",
                o->gnuplot ? o->gnuplot : "gnuplot");
    if (an->gnuplot_ok)
        gnuplot_version(an);

    for (size_t i = 0; i < SB_ARRAY_SIZE(kinds); i++) {
        const struct fig_kind *k = &kinds[i];
        struct sb_figure *f = &an->figs[an->nfigs];
        if (sb_table_init(&f->table, k->header, k->ncols) != 0) {
            sb_err_set(err, "out of memory making '%s'", k->stem);
            goto out;
        }
        an->nfigs++;
        f->stem = k->stem;
        f->section = k->section;
        f->title = k->title;
        if (k->rows(an, &f->table) != 0) {
            sb_err_set(err, "out of memory making '%s'", k->stem);
            goto out;
        }
        if (f->table.nrows == 0) {
            sb_table_release(&f->table);
            an->nfigs--;
            remove_outputs(an->fig_dir, k->stem, STALE_ALL);
            continue;
        }
        char path[4400];
        sb_buf_reset(&csv);
        snprintf(path, sizeof(path), "%s/%s.csv", an->fig_dir, k->stem);
        if (sb_table_csv(&f->table, &csv) != 0) {
            sb_err_set(err, "'%s' too large", path);
            goto out;
        }
        if (sb_write_file_atomic(path, csv.data ? csv.data : "", csv.len, err) != 0)
            goto out;
        if (!k->plot)
            continue;
        int plots = 0;
        if (write_script(an, k, &f->table, &gp, &body, &plots) != 0) {
            sb_err_set(err, "out of memory writing the script for '%s'", k->stem);
            goto out;
        }
        if (plots == 0) {
            remove_outputs(an->fig_dir, k->stem, STALE_SCRIPT);
            continue; /* nothing with both coordinates: the CSV alone */
        }
        snprintf(path, sizeof(path), "%s/%s.gp", an->fig_dir, k->stem);
        if (sb_write_file_atomic(path, gp.data, gp.len, err) != 0)
            goto out;
        f->has_plot = true;
        remove_outputs(an->fig_dir, k->stem, STALE_RENDERED);
        if (an->gnuplot_ok)
            render(an, f);
    }
    rc = 0;
out:
    sb_buf_release(&csv);
    sb_buf_release(&gp);
    sb_buf_release(&body);
    return rc;
}
