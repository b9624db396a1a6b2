/*
 * Runs grouped the way the Test Plan's hypotheses read them (§2, §8). Each hypothesis sweeps one
 * variable (concurrency for H0, context for H2A/H2B, the fio profile for H4, the KV working set
 * for H5, tier capacity for H6) and holds others fixed; a series is one curve of that sweep (one
 * hypothesis, stack, model, workload and fixed setting), and a point is one setting of it: the
 * runs that differ only in their id and repetition number, aggregated as the mean of the
 * repetitions' per-run numbers (their p99 spread and CoV feed the gates). Then the H0 knee rule
 * per series, the one U_work that runners read (uwork.txt), and the H7 fits.
 */
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb/analyze_out.h"
#include "sb/util.h"

/* Settings that split a hypothesis' runs into separate curves. */
enum {
    FIX_CONCURRENCY = 1u << 0,
    FIX_CONTEXT = 1u << 1,
    FIX_RATE = 1u << 2,
    FIX_POLICY = 1u << 3,
};

/* What each hypothesis sweeps and holds fixed; unknown hypotheses sweep concurrency. */
static const struct sweep {
    const char *hyp;
    enum sb_xvar x;
    unsigned fixed;
} sweeps[] = {
    {"H0", SB_X_CONCURRENCY, FIX_CONTEXT | FIX_RATE},
    {"H1", SB_X_PHASE, FIX_CONCURRENCY | FIX_CONTEXT | FIX_RATE},
    {"H2A", SB_X_CONTEXT, FIX_CONCURRENCY | FIX_RATE},
    {"H2B", SB_X_CONTEXT, FIX_CONCURRENCY | FIX_RATE},
    {"H3", SB_X_CONTEXT, FIX_CONCURRENCY | FIX_RATE},
    {"H4A", SB_X_FIO, FIX_CONCURRENCY | FIX_CONTEXT | FIX_RATE},
    {"H4B", SB_X_FIO, FIX_CONCURRENCY | FIX_CONTEXT | FIX_RATE},
    {"H5", SB_X_WORKING_SET, FIX_RATE},
    {"H6", SB_X_TIER_CAPACITY, FIX_POLICY},
    {"H7", SB_X_CONTEXT, FIX_CONCURRENCY | FIX_RATE},
    {"H8A", SB_X_CONCURRENCY, FIX_CONTEXT | FIX_RATE},
    {"H8B", SB_X_CONCURRENCY, FIX_CONTEXT | FIX_RATE},
};
static const struct sweep sweep_default = {"", SB_X_CONCURRENCY, FIX_CONTEXT | FIX_RATE};

static const char *const fio_order[] = {"baseline", "moderate", "heavy"};

static const struct sweep *sweep_of(const char *hyp)
{
    for (size_t i = 0; i < SB_ARRAY_SIZE(sweeps); i++)
        if (strcmp(sweeps[i].hyp, hyp) == 0)
            return &sweeps[i];
    return &sweep_default;
}

/* The position of hyp in the Test Plan's order; unknown ones after, by name. */
static size_t hyp_rank(const char *hyp)
{
    for (size_t i = 0; i < SB_ARRAY_SIZE(sweeps); i++)
        if (strcmp(sweeps[i].hyp, hyp) == 0)
            return i;
    return SB_ARRAY_SIZE(sweeps);
}

const char *sb_run_hypothesis(const struct sb_run *r, char *buf, size_t cap)
{
    const char *s = r->hypothesis ? r->hypothesis : "";
    while (isspace((unsigned char)*s))
        s++;
    size_t n = 0;
    for (; s[n] && !isspace((unsigned char)s[n]) && n + 1 < cap; n++)
        buf[n] = (char)toupper((unsigned char)s[n]);
    if (cap)
        buf[n < cap ? n : cap - 1] = '\0';
    return buf;
}

bool sb_run_stack_is(const struct sb_run *r, char s)
{
    const char *p = r->stack ? r->stack : "";
    if (strncasecmp(p, "stack", 5) == 0)
        p += 5;
    while (*p == '_' || *p == '-' || *p == ' ')
        p++;
    return toupper((unsigned char)p[0]) == toupper((unsigned char)s) && p[1] == '\0';
}

static const char *str_or(const char *s, const char *dflt)
{
    return s && s[0] ? s : dflt;
}

static bool same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static bool same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The run's fio profile: its label, else its phase when that names one. */
static const char *fio_profile_of(const struct sb_run *r)
{
    if (r->fio_profile && r->fio_profile[0])
        return r->fio_profile;
    return r->phase ? r->phase : "";
}

static double working_set_of(const struct sb_run *r, const struct sb_analyze_opts *opts)
{
    if (r->kv_working_set_bytes > 0)
        return r->kv_working_set_bytes;
    if (r->concurrency > 0 && r->context_tokens > 0 && opts->kv_bytes_per_token > 0)
        return (double)r->concurrency * (double)r->context_tokens * opts->kv_bytes_per_token;
    return NAN;
}

static double x_of(const struct sb_run *r, enum sb_xvar x, const struct sb_analyze_opts *opts)
{
    switch (x) {
    case SB_X_CONCURRENCY:
        return r->concurrency >= 0 ? (double)r->concurrency : NAN;
    case SB_X_CONTEXT:
        /* A server that cut the prompt silently measured its own count, not the one asked for. */
        if (r->server_truncated && !isnan(r->context_tokens_server))
            return r->context_tokens_server;
        return r->context_tokens >= 0 ? (double)r->context_tokens : NAN;
    case SB_X_FIO: {
        const char *p = fio_profile_of(r);
        for (size_t i = 0; i < SB_ARRAY_SIZE(fio_order); i++)
            if (strcasecmp(p, fio_order[i]) == 0)
                return (double)i;
        return (double)SB_ARRAY_SIZE(fio_order);
    }
    case SB_X_WORKING_SET:
        return working_set_of(r, opts);
    case SB_X_TIER_CAPACITY:
        return r->tier0_bytes + r->tier1_bytes > 0 ? (double)(r->tier0_bytes + r->tier1_bytes)
                                                   : NAN;
    case SB_X_PHASE:
        break;
    }
    return NAN;
}

/* Whether a and b are repetitions of one setting: equal in everything but id and repetition. */
static bool same_setting(const struct sb_run *a, const struct sb_run *b)
{
    return same_str(a->stack, b->stack) && same_str(a->model, b->model) &&
           same_str(a->workload, b->workload) && same_str(a->phase, b->phase) &&
           same_str(a->fio_profile, b->fio_profile) &&
           same_str(a->eviction_policy, b->eviction_policy) &&
           a->context_tokens == b->context_tokens && a->concurrency == b->concurrency &&
           same_num(a->rate, b->rate) && a->tier0_bytes == b->tier0_bytes &&
           a->tier1_bytes == b->tier1_bytes && a->tier2_bytes == b->tier2_bytes &&
           same_num(a->kv_working_set_bytes, b->kv_working_set_bytes) &&
           same_str(a->settings, b->settings);
}

/* The length of settings without its "key=..." line (the whole text when it has none), and
 * where that line starts. */
static size_t settings_cut(const char *settings, const char *key, size_t *line_at, size_t *line_len)
{
    size_t n = strlen(settings), klen = strlen(key);
    *line_at = n;
    *line_len = 0;
    for (size_t at = 0; at < n;) {
        const char *nl = strchr(settings + at, '\n');
        size_t len = nl ? (size_t)(nl - (settings + at)) + 1 : n - at;
        if (len > klen && strncmp(settings + at, key, klen) == 0 && settings[at + klen] == '=') {
            *line_at = at;
            *line_len = len;
            break;
        }
        at += len;
    }
    return n - *line_len;
}

/* Whether settings a and b are equal but for key's line. */
static bool same_settings_but(const char *a, const char *b, const char *key)
{
    a = a ? a : "";
    b = b ? b : "";
    size_t ai, al, bi, bl;
    if (settings_cut(a, key, &ai, &al) != settings_cut(b, key, &bi, &bl))
        return false;
    size_t i = 0, j = 0;
    for (;;) {
        if (i == ai)
            i += al;
        if (j == bi)
            j += bl;
        if (!a[i] || !b[j])
            return !a[i] && !b[j];
        if (a[i++] != b[j++])
            return false;
    }
}

/* Whether a and b lie on one curve of hypothesis sweep sw. */
static bool same_series(const struct sb_run *a, const struct sb_run *b, const struct sweep *sw)
{
    /* A streaming and a non-streaming sweep (or any other setting apart) are two curves. A context
       sweep reads one prompt file per context, so the prompt's size changes along it by design:
       it still tells two points apart (same_setting), never two curves. */
    if (!same_str(a->stack, b->stack) || !same_str(a->model, b->model) ||
        !same_str(a->workload, b->workload))
        return false;
    if (sw->x == SB_X_CONTEXT ? !same_settings_but(a->settings, b->settings, "prompt.bytes")
                              : !same_str(a->settings, b->settings))
        return false;
    if ((sw->fixed & FIX_CONCURRENCY) && a->concurrency != b->concurrency)
        return false;
    if ((sw->fixed & FIX_CONTEXT) && a->context_tokens != b->context_tokens)
        return false;
    if ((sw->fixed & FIX_RATE) && !same_num(a->rate, b->rate))
        return false;
    if ((sw->fixed & FIX_POLICY) && !same_str(a->eviction_policy, b->eviction_policy))
        return false;
    return true;
}

/* Appends s to the label, with the characters a CSV cell or a gnuplot string would need to
 * escape replaced by '_'. */
static void label_add(char *label, size_t cap, const char *s)
{
    size_t n = strlen(label);
    for (; *s && n + 1 < cap; s++)
        label[n++] = ((unsigned char)*s < 0x20 || strchr(",\"'\\`", *s)) ? '_' : *s;
    label[n] = '\0';
}

static void series_label(struct sb_series *s, const struct sweep *sw)
{
    const struct sb_run *r = s->first;
    char part[96];
    s->label[0] = '\0';
    label_add(s->label, sizeof(s->label), s->hypothesis[0] ? s->hypothesis : "?");
    label_add(s->label, sizeof(s->label), " / ");
    label_add(s->label, sizeof(s->label), str_or(r->stack, "?"));
    label_add(s->label, sizeof(s->label), " / ");
    label_add(s->label, sizeof(s->label), str_or(r->model, "?"));
    label_add(s->label, sizeof(s->label), " / ");
    label_add(s->label, sizeof(s->label), str_or(r->workload, "?"));
    if ((sw->fixed & FIX_CONCURRENCY) && r->concurrency >= 0) {
        snprintf(part, sizeof(part), " / c %lld", r->concurrency);
        label_add(s->label, sizeof(s->label), part);
    }
    if ((sw->fixed & FIX_CONTEXT) && r->context_tokens >= 0) {
        snprintf(part, sizeof(part), " / ctx %lld", r->context_tokens);
        label_add(s->label, sizeof(s->label), part);
    }
    if ((sw->fixed & FIX_RATE) && !isnan(r->rate)) {
        snprintf(part, sizeof(part), " / rate %g", r->rate);
        label_add(s->label, sizeof(s->label), part);
    }
    if (sw->fixed & FIX_POLICY) {
        label_add(s->label, sizeof(s->label), " / ");
        label_add(s->label, sizeof(s->label), str_or(r->eviction_policy, "default"));
    }
}

static double max_finite(double a, double b)
{
    if (isnan(a))
        return b;
    if (isnan(b))
        return a;
    return a > b ? a : b;
}

/* The double at byte offset off inside a run: the aggregates read fields by offset so that one
 * loop serves them all. */
static double run_field(const struct sb_run *r, size_t off)
{
    double d;
    memcpy(&d, (const char *)r + off, sizeof(d));
    return d;
}

/* Fills v with the field at off of each of p's runs and returns their mean. */
static double mean_of(const struct sb_point *p, const struct sb_run *runs, size_t off, double *v)
{
    for (size_t i = 0; i < p->nruns; i++)
        v[i] = run_field(&runs[p->runs[i]], off);
    return sb_mean_finite(v, p->nruns);
}

#define LAT_OFF(m, field)                                                                          \
    (offsetof(struct sb_run, lat) + (size_t)(m) * sizeof(struct sb_summary) +                      \
     offsetof(struct sb_summary, field))
#define TSTAT_MEAN_OFF(field) (offsetof(struct sb_run, field) + offsetof(struct sb_tstat, mean))

/* Fills p's aggregates from its runs. v is scratch of p->nruns doubles. */
static void point_aggregate(struct sb_point *p, const struct sb_run *runs, double *v)
{
    size_t n = p->nruns;
    for (int m = 0; m < SB_LAT_N; m++) {
        p->p50[m] = mean_of(p, runs, LAT_OFF(m, p50), v);
        p->p95[m] = mean_of(p, runs, LAT_OFF(m, p95), v);
        p->p99[m] = mean_of(p, runs, LAT_OFF(m, p99), v);
        p->p99_cov[m] = sb_cov(v, n);
        double lo = NAN, hi = NAN;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (isnan(v[i]))
                continue;
            k++;
            lo = isnan(lo) || v[i] < lo ? v[i] : lo;
            hi = isnan(hi) || v[i] > hi ? v[i] : hi;
        }
        p->p99_reps[m] = k;
        p->p99_spread[m] = k >= 2 && lo > 0 ? hi / lo - 1 : NAN;
    }
    p->iowait = mean_of(p, runs, TSTAT_MEAN_OFF(cpu_iowait), v);
    p->nvme_rps = mean_of(p, runs, TSTAT_MEAN_OFF(nvme_rps), v);
    p->nvme_rmbs = mean_of(p, runs, TSTAT_MEAN_OFF(nvme_rmbs), v);
    p->nvme_r_await = mean_of(p, runs, TSTAT_MEAN_OFF(nvme_r_await), v);
    p->psi_io = mean_of(p, runs, TSTAT_MEAN_OFF(psi_io_some), v);
    p->gpu_util = mean_of(p, runs, TSTAT_MEAN_OFF(gpu_util), v);
    p->fetch_p95 = mean_of(p, runs, TSTAT_MEAN_OFF(tier2_fetch_p95_ms), v);
    p->achieved_rps = mean_of(p, runs, offsetof(struct sb_run, achieved_rps), v);
    p->mem_available_min = NAN;
    p->t1 = NAN;
    p->measured = p->errors = p->rejected = 0;
    double hits[3] = {0}, tot[3] = {0};
    bool have[3] = {false};
    for (size_t i = 0; i < n; i++) {
        const struct sb_run *r = &runs[p->runs[i]];
        p->measured += r->measured;
        p->errors += r->errors;
        p->rejected += r->rejected;
        double mn = r->mem_available.min;
        if (!isnan(mn) && (isnan(p->mem_available_min) || mn < p->mem_available_min))
            p->mem_available_min = mn;
        p->t1 = max_finite(p->t1, r->t1);
        for (int t = 0; t < 3; t++)
            if (!isnan(r->tier_hits[t]) && !isnan(r->tier_misses[t])) {
                hits[t] += r->tier_hits[t];
                tot[t] += r->tier_hits[t] + r->tier_misses[t];
                have[t] = true;
            }
    }
    double all_hits = 0;
    for (int t = 0; t < 3; t++) {
        p->tier_hit_ratio[t] = have[t] && tot[t] > 0 ? hits[t] / tot[t] : NAN;
        all_hits += hits[t];
    }
    /* Without per-tier sums (a loader that only has the shares), fall back to the runs' own. */
    if (have[2] && all_hits > 0)
        p->tier2_share = hits[2] / all_hits;
    else {
        for (size_t i = 0; i < n; i++)
            v[i] = runs[p->runs[i]].tier2_share;
        p->tier2_share = sb_mean_finite(v, n);
    }
    for (int t = 0; t < 3; t++)
        if (isnan(p->tier_hit_ratio[t])) {
            for (size_t i = 0; i < n; i++)
                v[i] = runs[p->runs[i]].tier_hit_ratio[t];
            p->tier_hit_ratio[t] = sb_mean_finite(v, n);
        }
}

static int cmp_nan_last(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

/* Orders points by x, then by the settings a series may still vary, then phase. */
static int point_cmp(const struct sb_point *a, const struct sb_point *b, const struct sb_run *runs)
{
    const struct sb_run *ra = &runs[a->runs[0]], *rb = &runs[b->runs[0]];
    int c = cmp_nan_last(a->x, b->x);
    if (!c)
        c = (ra->concurrency > rb->concurrency) - (ra->concurrency < rb->concurrency);
    if (!c)
        c = (ra->context_tokens > rb->context_tokens) - (ra->context_tokens < rb->context_tokens);
    if (!c)
        c = strcmp(str_or(ra->phase, ""), str_or(rb->phase, ""));
    return c;
}

static int run_order(const struct sb_run *a, const struct sb_run *b)
{
    int c = (a->repetition > b->repetition) - (a->repetition < b->repetition);
    return c ? c : strcmp(str_or(a->run_id, ""), str_or(b->run_id, ""));
}

static int series_cmp(const struct sb_series *a, const struct sb_series *b)
{
    size_t ra = hyp_rank(a->hypothesis), rb = hyp_rank(b->hypothesis);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    int c = strcmp(a->hypothesis, b->hypothesis);
    return c ? c : strcmp(a->label, b->label);
}

/* Adds run i to its series and point, creating them. */
static int place_run(struct sb_analysis *an, size_t i, size_t *series_cap)
{
    const struct sb_run *r = &an->runs[i];
    char hyp[16];
    sb_run_hypothesis(r, hyp, sizeof(hyp));
    const struct sweep *sw = sweep_of(hyp);
    struct sb_series *s = NULL;
    for (size_t k = 0; k < an->nseries && !s; k++)
        if (strcmp(an->series[k].hypothesis, hyp) == 0 && same_series(an->series[k].first, r, sw))
            s = &an->series[k];
    if (!s) {
        if (an->nseries == *series_cap) {
            size_t cap = *series_cap ? *series_cap * 2 : 8;
            struct sb_series *ns = realloc(an->series, cap * sizeof(*ns));
            if (!ns)
                return -1;
            an->series = ns;
            *series_cap = cap;
        }
        s = &an->series[an->nseries++];
        memset(s, 0, sizeof(*s));
        snprintf(s->hypothesis, sizeof(s->hypothesis), "%s", hyp);
        s->first = r;
        s->xvar = sw->x;
        s->t1 = NAN;
        series_label(s, sw);
    }
    s->t1 = max_finite(s->t1, r->t1);
    struct sb_point *p = NULL;
    for (size_t k = 0; k < s->npts && !p; k++)
        if (same_setting(&an->runs[s->pts[k].runs[0]], r))
            p = &s->pts[k];
    if (!p) {
        struct sb_point *np = realloc(s->pts, (s->npts + 1) * sizeof(*np));
        if (!np)
            return -1;
        s->pts = np;
        p = &s->pts[s->npts++];
        memset(p, 0, sizeof(*p));
        p->x = x_of(r, s->xvar, an->opts);
    }
    size_t *nr = realloc(p->runs, (p->nruns + 1) * sizeof(*nr));
    if (!nr)
        return -1;
    p->runs = nr;
    /* Keep repetitions in order as they arrive. */
    size_t at = p->nruns;
    while (at > 0 && run_order(r, &an->runs[p->runs[at - 1]]) < 0) {
        p->runs[at] = p->runs[at - 1];
        at--;
    }
    p->runs[at] = i;
    p->nruns++;
    return 0;
}

double sb_point_error_rate(const struct sb_point *p)
{
    return p->measured ? (double)p->errors / (double)p->measured : NAN;
}

int sb_series_knee(const struct sb_series *s, int metric, double k, double max_error_rate,
                   struct sb_knee_step **steps, size_t *nsteps, struct sb_knee *out)
{
    *steps = calloc(s->npts ? s->npts : 1, sizeof(**steps));
    *nsteps = 0;
    if (!*steps)
        return -1;
    for (size_t i = 0; i < s->npts; i++)
        (*steps)[i] = (struct sb_knee_step){.x = s->pts[i].x,
                                            .p50 = s->pts[i].p50[metric],
                                            .p99 = s->pts[i].p99[metric],
                                            .error_rate = sb_point_error_rate(&s->pts[i]),
                                            .rps = s->pts[i].achieved_rps};
    *nsteps = s->npts;
    sb_knee_find(*steps, *nsteps, k, max_error_rate, out);
    return 0;
}

static bool hyp_in(const char *hyp, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(hyp, *set) == 0)
            return true;
    return false;
}

/* Hypotheses whose runs carry H7's KV-to-storage evidence. */
static const char *const h7_hyps[] = {"H7", "H2B", "H4B", NULL};

static int fit_h7(struct sb_analysis *an)
{
    size_t cap = 0, m = 0;
    for (size_t i = 0; i < an->nruns; i++)
        cap += an->runs[i].nh7;
    double *x = malloc((cap + an->nruns + 1) * sizeof(double));
    double *y = malloc((cap + an->nruns + 1) * sizeof(double));
    int rc = -1;
    if (!x || !y)
        goto out;
    char hyp[16];
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!hyp_in(sb_run_hypothesis(r, hyp, sizeof(hyp)), h7_hyps))
            continue;
        for (size_t k = 0; k < r->nh7 && r->h7; k++) {
            x[m] = r->h7[k].pred_rmbs;
            y[m++] = r->h7[k].obs_rmbs;
        }
    }
    sb_fit_linear(x, y, m, &an->h7_fit);
    m = 0;
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!hyp_in(sb_run_hypothesis(r, hyp, sizeof(hyp)), h7_hyps))
            continue;
        x[m] = r->tier2_fetch_p95_ms.mean;
        y[m++] = r->lat[an->metric].p99;
    }
    sb_fit_linear(x, y, m, &an->h7_fetch_fit);
    rc = 0;
out:
    free(x);
    free(y);
    return rc;
}

/* The value of key in a settings text ("key=value" lines): *val and *vlen; false when absent. */
static bool setting_find(const char *settings, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key);
    for (const char *l = settings ? settings : ""; *l;) {
        size_t len = strcspn(l, "\n");
        if (len > klen && strncmp(l, key, klen) == 0 && l[klen] == '=') {
            *val = l + klen + 1;
            *vlen = len - klen - 1;
            return true;
        }
        l += len + (l[len] == '\n');
    }
    return false;
}

/* The value of key into buf; "unset" when absent. */
static const char *setting_value(const char *settings, const char *key, char *buf, size_t cap)
{
    const char *v;
    size_t n;
    if (setting_find(settings, key, &v, &n))
        snprintf(buf, cap, "%.*s", (int)n, v);
    else
        snprintf(buf, cap, "unset");
    return buf;
}

static bool setting_has(const char *settings, const char *key)
{
    const char *v;
    size_t n;
    return setting_find(settings, key, &v, &n);
}

/* In the group of series with one label (members[0..m), in series order), the most common value
 * of key (ties: the first member's) into buf. */
static void setting_mode(const struct sb_series *series, const size_t *members, size_t m,
                         const char *key, char *buf, size_t cap)
{
    size_t best = 0;
    char a[512], b[512];
    for (size_t x = 0; x < m; x++) {
        size_t count = 0;
        setting_value(series[members[x]].first->settings, key, a, sizeof(a));
        for (size_t y = 0; y < m; y++)
            count += strcmp(a, setting_value(series[members[y]].first->settings, key, b,
                                             sizeof(b))) == 0;
        if (count > best) {
            best = count;
            snprintf(buf, cap, "%s", a);
        }
    }
}

/*
 * Series whose labels came out equal differ in r->settings: each gets " / key=value" for every
 * setting where it holds another value than the most common one among them (ties: the first
 * series' value), so that a streaming sweep and a --no-stream one read "... / stream=false" and
 * the common one keeps its plain label. Keys lose their "run." / "server." section.
 */
static int labels_disambiguate(struct sb_analysis *an)
{
    size_t n = an->nseries;
    char(*base)[sizeof(an->series[0].label)] = malloc((n ? n : 1) * sizeof(*base));
    size_t *members = malloc((n ? n : 1) * sizeof(*members));
    if (!base || !members) {
        free(base);
        free(members);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(base[i], an->series[i].label, sizeof(base[i]));
    char key[256], mine[512], mode[512], part[800];
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        for (size_t j = 0; j < n; j++)
            if (strcmp(base[j], base[i]) == 0)
                members[m++] = j;
        if (m < 2)
            continue;
        struct sb_series *si = &an->series[i];
        for (size_t x = 0; x < m; x++) {
            const char *set = an->series[members[x]].first->settings;
            for (const char *l = set ? set : ""; *l;) {
                size_t len = strcspn(l, "\n"), eq = strcspn(l, "=");
                const char *line = l;
                l += len + (l[len] == '\n');
                if (eq >= len || eq >= sizeof(key))
                    continue;
                snprintf(key, sizeof(key), "%.*s", (int)eq, line);
                bool seen = false; /* an earlier member has it: handled there */
                for (size_t y = 0; y < x && !seen; y++)
                    seen = setting_has(an->series[members[y]].first->settings, key);
                if (seen)
                    continue;
                setting_mode(an->series, members, m, key, mode, sizeof(mode));
                setting_value(si->first->settings, key, mine, sizeof(mine));
                if (strcmp(mine, mode) == 0)
                    continue;
                const char *shown = key;
                if (strncmp(shown, "run.", 4) == 0)
                    shown += 4;
                else if (strncmp(shown, "server.", 7) == 0)
                    shown += 7;
                snprintf(part, sizeof(part), " / %s=%s", shown, mine);
                label_add(si->label, sizeof(si->label), part);
            }
        }
    }
    free(base);
    free(members);
    return 0;
}

/* Repetition numbers met twice in one point: a warning naming both runs (they are averaged as
 * two repetitions, which the CoV gate then reads). */
static int warn_duplicate_repetitions(struct sb_analysis *an)
{
    char where[160];
    for (size_t s = 0; s < an->nseries; s++) {
        const struct sb_series *se = &an->series[s];
        for (size_t k = 0; k < se->npts; k++) {
            const struct sb_point *p = &se->pts[k];
            for (size_t a = 0; a < p->nruns; a++)
                for (size_t b = a + 1; b < p->nruns; b++) {
                    const struct sb_run *ra = &an->runs[p->runs[a]], *rb = &an->runs[p->runs[b]];
                    if (ra->repetition < 0 || ra->repetition != rb->repetition)
                        continue;
                    sb_point_desc(an, se, p, where, sizeof(where));
                    if (sb_analysis_warn(an,
                                         "runs '%s' and '%s' are both repetition %lld of '%s' at "
                                         "%s: averaged as two repetitions (give each run its own "
                                         "--repetition)",
                                         ra->run_id, rb->run_id, ra->repetition, se->label,
                                         where) != 0)
                        return -1;
                }
        }
    }
    return 0;
}

int sb_analysis_warn(struct sb_analysis *an, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char **w = realloc(an->warnings, (an->nwarnings + 1) * sizeof(*w));
    if (!w)
        return -1;
    an->warnings = w;
    if (!(w[an->nwarnings] = strdup(msg)))
        return -1;
    an->nwarnings++;
    return 0;
}

int sb_analysis_build(struct sb_analysis *an, const struct sb_run *runs, size_t n,
                      const struct sb_analyze_opts *opts, struct sb_err *err)
{
    memset(an, 0, sizeof(*an));
    an->runs = runs;
    an->nruns = n;
    an->opts = opts;
    an->metric = opts->knee_metric == SB_LAT_E2E ? SB_LAT_E2E : SB_LAT_TTFT;
    an->ratio = opts->knee_ratio > 0 ? opts->knee_ratio : 2.0;
    an->max_error_rate = opts->knee_max_error_rate > 0 ? opts->knee_max_error_rate : 0.01;
    an->uwork_pick = SIZE_MAX;
    an->h7_fit = an->h7_fetch_fit = (struct sb_fit){0, NAN, NAN, NAN};
    size_t series_cap = 0;
    for (size_t i = 0; i < n; i++)
        if (place_run(an, i, &series_cap) != 0)
            return sb_err_set(err, "out of memory grouping runs");
    if (labels_disambiguate(an) != 0)
        return sb_err_set(err, "out of memory grouping runs");

    size_t vmax = 1;
    for (size_t s = 0; s < an->nseries; s++)
        for (size_t k = 0; k < an->series[s].npts; k++)
            vmax = an->series[s].pts[k].nruns > vmax ? an->series[s].pts[k].nruns : vmax;
    double *v = malloc(vmax * sizeof(double));
    if (!v)
        return sb_err_set(err, "out of memory grouping runs");
    for (size_t s = 0; s < an->nseries; s++) {
        struct sb_series *se = &an->series[s];
        for (size_t k = 0; k < se->npts; k++)
            point_aggregate(&se->pts[k], runs, v);
        /* Insertion sort: tens of points. */
        for (size_t k = 1; k < se->npts; k++) {
            struct sb_point p = se->pts[k];
            size_t j = k;
            while (j > 0 && point_cmp(&p, &se->pts[j - 1], runs) < 0) {
                se->pts[j] = se->pts[j - 1];
                j--;
            }
            se->pts[j] = p;
        }
    }
    free(v);
    for (size_t s = 1; s < an->nseries; s++) {
        struct sb_series x = an->series[s];
        size_t j = s;
        while (j > 0 && series_cmp(&x, &an->series[j - 1]) < 0) {
            an->series[j] = an->series[j - 1];
            j--;
        }
        an->series[j] = x;
    }

    for (size_t s = 0; s < an->nseries; s++)
        if (strcmp(an->series[s].hypothesis, "H0") == 0)
            an->nuwork++;
    if (an->nuwork) {
        an->uwork = calloc(an->nuwork, sizeof(*an->uwork));
        if (!an->uwork) {
            an->nuwork = 0;
            return sb_err_set(err, "out of memory finding the knee");
        }
    }
    size_t u = 0;
    for (size_t s = 0; s < an->nseries && u < an->nuwork; s++) {
        const struct sb_series *se = &an->series[s];
        if (strcmp(se->hypothesis, "H0") != 0)
            continue;
        struct sb_uwork *w = &an->uwork[u];
        w->series = se;
        if (sb_series_knee(se, an->metric, an->ratio, an->max_error_rate, &w->steps, &w->nsteps,
                           &w->knee) != 0)
            return sb_err_set(err, "out of memory finding the knee");
        sb_saturation_find(w->steps, w->nsteps, SB_SAT_MIN_GAIN, &w->sat);
        /* The newest series wins; on a tie, or without window ends, the first one stays. */
        double best = an->uwork_pick == SIZE_MAX ? NAN : an->uwork[an->uwork_pick].series->t1;
        if (an->uwork_pick == SIZE_MAX || (!isnan(se->t1) && (isnan(best) || se->t1 > best)))
            an->uwork_pick = u;
        u++;
    }
    if (fit_h7(an) != 0)
        return sb_err_set(err, "out of memory fitting h7");
    if (warn_duplicate_repetitions(an) != 0)
        return sb_err_set(err, "out of memory grouping runs");
    return 0;
}

void sb_analysis_release(struct sb_analysis *an)
{
    for (size_t s = 0; s < an->nseries; s++) {
        for (size_t k = 0; k < an->series[s].npts; k++)
            free(an->series[s].pts[k].runs);
        free(an->series[s].pts);
    }
    free(an->series);
    for (size_t u = 0; u < an->nuwork; u++)
        free(an->uwork[u].steps);
    free(an->uwork);
    sb_gates_release(an->gates, SB_GATE_N);
    for (size_t f = 0; f < an->nfigs; f++)
        sb_table_release(&an->figs[f].table);
    free(an->figs);
    for (size_t i = 0; i < an->nwarnings; i++)
        free(an->warnings[i]);
    free(an->warnings);
    memset(an, 0, sizeof(*an));
}

/* A label count for words: "16", or "?" when unknown. */
static const char *count_or_q(long long v, char *buf, size_t cap)
{
    if (v >= 0)
        snprintf(buf, cap, "%lld", v);
    else
        snprintf(buf, cap, "?");
    return buf;
}

void sb_point_desc(const struct sb_analysis *an, const struct sb_series *s,
                   const struct sb_point *p, char *buf, size_t cap)
{
    const struct sb_run *r = &an->runs[p->runs[0]];
    char a[32], b[32];
    switch (s->xvar) {
    case SB_X_CONCURRENCY:
        snprintf(buf, cap, "concurrency %s", count_or_q(r->concurrency, a, sizeof(a)));
        return;
    case SB_X_CONTEXT:
        snprintf(buf, cap, "context %s", count_or_q(r->context_tokens, a, sizeof(a)));
        return;
    case SB_X_FIO:
        snprintf(buf, cap, "fio %s", str_or(fio_profile_of(r), "?"));
        return;
    case SB_X_WORKING_SET:
        snprintf(buf, cap, "working set %.3g GiB", p->x / (1024.0 * 1024.0 * 1024.0));
        return;
    case SB_X_TIER_CAPACITY:
        snprintf(buf, cap, "tier-0+1 %.3g GiB, concurrency %s, context %s",
                 p->x / (1024.0 * 1024.0 * 1024.0), count_or_q(r->concurrency, a, sizeof(a)),
                 count_or_q(r->context_tokens, b, sizeof(b)));
        return;
    case SB_X_PHASE:
        break;
    }
    snprintf(buf, cap, "phase %s", str_or(r->phase, "?"));
}

/* ---- U_work ---- */

static const char *metric_name(int m)
{
    return m == SB_LAT_E2E ? "e2e" : "ttft";
}

void sb_uwork_note(const struct sb_uwork *u, char *buf, size_t cap)
{
    /* A knee set by failed requests says so: its latency may look fine. */
    char why[96] = "";
    if (u->knee.knee_idx != SIZE_MAX && u->steps[u->knee.knee_idx].errors_over)
        snprintf(why, sizeof(why), " (%.1f %% of its requests failed)",
                 100 * u->steps[u->knee.knee_idx].error_rate);
    switch (u->knee.status) {
    case SB_KNEE_FOUND:
        snprintf(buf, cap, "knee at concurrency %.0f%s: U_work = %.0f", u->knee.knee, why,
                 u->knee.uwork);
        break;
    case SB_KNEE_AT_FIRST:
        snprintf(buf, cap,
                 "knee at the first step (concurrency %.0f)%s: U_work is undefined; extend the "
                 "sweep below it",
                 u->knee.knee, why);
        break;
    case SB_KNEE_NONE:
        snprintf(buf, cap,
                 "no knee within the sweep: U_work = %.0f, the largest concurrency tested",
                 u->knee.uwork);
        break;
    case SB_KNEE_NO_STEPS:
        snprintf(buf, cap, "no step has a concurrency, p50 and p99: U_work is undefined");
        break;
    }
}

bool sb_uwork_disagrees(const struct sb_uwork *u)
{
    if (u->sat.status == SB_SAT_NO_STEPS || u->knee.status == SB_KNEE_NO_STEPS)
        return false; /* nothing to compare */
    if (u->knee.status == SB_KNEE_AT_FIRST)
        return true; /* the rule found no usable step; the curve has one or never saturated */
    /* The rule's "no knee" and "throughput rose at every step" agree; else the two x must. */
    double rule = u->knee.status == SB_KNEE_FOUND ? u->knee.uwork : NAN;
    double sat = u->sat.status == SB_SAT_FOUND ? u->sat.x : NAN;
    return !same_num(rule, sat);
}

void sb_saturation_note(const struct sb_uwork *u, char *buf, size_t cap)
{
    char rule[160] = "";
    if (sb_uwork_disagrees(u)) {
        if (u->knee.status == SB_KNEE_AT_FIRST)
            snprintf(rule, sizeof(rule),
                     "; the rule is blind here: p99/p50 is over its ratio from the first step on");
        else
            snprintf(rule, sizeof(rule), "; the rule's U_work differs: check the curve");
    } else if (u->sat.status == SB_SAT_FOUND)
        snprintf(rule, sizeof(rule), "; the rule agrees");
    switch (u->sat.status) {
    case SB_SAT_FOUND:
        snprintf(buf, cap,
                 "saturation knee at concurrency %.0f: the next step gained %+.1f %% req/s while "
                 "p50 rose %+.0f %%%s",
                 u->sat.x, 100 * u->sat.gain, 100 * u->sat.lat_growth, rule);
        return;
    case SB_SAT_NONE:
        snprintf(buf, cap, "no saturation knee: throughput rose at every step%s", rule);
        return;
    case SB_SAT_NO_STEPS:
        break;
    }
    snprintf(buf, cap, "no saturation knee: fewer than two steps with a throughput and a p50");
}

void sb_saturation_rule(char *buf, size_t cap)
{
    snprintf(buf, cap,
             "saturation knee: the first step after which the next step gains under %g %% "
             "throughput (achieved_rps: ok completions in the window without the drain, per "
             "second) while the knee metric's p50 rises over %g %%; printed beside the rule, "
             "which it does not replace",
             100 * SB_SAT_MIN_GAIN, 100 * SB_SAT_MIN_GAIN);
}

void sb_uwork_rule(const struct sb_analysis *an, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "knee: the first concurrency where %s p99 > %g x p50 for two consecutive steps "
             "(steps sorted by concurrency), or an earlier step where over %g %% of the measured "
             "requests failed; U_work: the step before the knee",
             metric_name(an->metric), an->ratio, 100 * an->max_error_rate);
}

static cJSON *uwork_json(const struct sb_analysis *an)
{
    cJSON *root = cJSON_CreateObject();
    char text[512];
    sb_uwork_rule(an, text, sizeof(text));
    cJSON_AddStringToObject(root, "rule", text);
    cJSON_AddStringToObject(root, "metric", metric_name(an->metric));
    cJSON_AddItemToObject(root, "ratio", sb_json_num_or_null(an->ratio));
    cJSON_AddItemToObject(root, "max_error_rate", sb_json_num_or_null(an->max_error_rate));
    // The picked group's figures, read without a NULL-tested pointer into an->uwork: clang's
    // analyzer took "pick is NULL" to mean "an->uwork is NULL" and then flagged the loop below.
    double pick_uwork = NAN, pick_sat = NAN;
    const char *pick_series = "";
    if (an->uwork_pick < an->nuwork) {
        const struct sb_uwork *pick = &an->uwork[an->uwork_pick];
        pick_uwork = pick->knee.uwork;
        pick_series = pick->series->label;
        if (pick->sat.status == SB_SAT_FOUND)
            pick_sat = pick->sat.x;
    }
    cJSON_AddItemToObject(root, "uwork", sb_json_num_or_null(pick_uwork));
    cJSON_AddStringToObject(root, "series", pick_series);
    sb_saturation_rule(text, sizeof(text));
    cJSON_AddStringToObject(root, "saturation_rule", text);
    cJSON_AddItemToObject(root, "saturation_min_gain", sb_json_num_or_null(SB_SAT_MIN_GAIN));
    cJSON_AddItemToObject(root, "saturation", sb_json_num_or_null(pick_sat));
    cJSON_AddStringToObject(root, "pick",
                            "uwork.txt holds the U_work of the series whose newest run ended last");
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    for (size_t u = 0; u < an->nuwork; u++) {
        const struct sb_uwork *w = &an->uwork[u];
        const struct sb_run *r = w->series->first;
        cJSON *g = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, g);
        cJSON_AddStringToObject(g, "series", w->series->label);
        cJSON_AddStringToObject(g, "stack", str_or(r->stack, ""));
        cJSON_AddStringToObject(g, "model", str_or(r->model, ""));
        cJSON_AddStringToObject(g, "workload", str_or(r->workload, ""));
        cJSON_AddItemToObject(
            g, "context_tokens",
            sb_json_num_or_null(r->context_tokens >= 0 ? (double)r->context_tokens : NAN));
        cJSON_AddItemToObject(g, "newest_t1", sb_json_num_or_null(w->series->t1));
        cJSON_AddBoolToObject(g, "picked", u == an->uwork_pick);
        cJSON_AddStringToObject(g, "status", sb_knee_status_name(w->knee.status));
        cJSON_AddItemToObject(g, "knee", sb_json_num_or_null(w->knee.knee));
        cJSON_AddItemToObject(g, "uwork", sb_json_num_or_null(w->knee.uwork));
        sb_uwork_note(w, text, sizeof(text));
        cJSON_AddStringToObject(g, "note", text);
        cJSON *sat = cJSON_AddObjectToObject(g, "saturation");
        cJSON_AddStringToObject(sat, "status", sb_saturation_status_name(w->sat.status));
        cJSON_AddItemToObject(sat, "concurrency", sb_json_num_or_null(w->sat.x));
        cJSON_AddItemToObject(sat, "rps_gain", sb_json_num_or_null(w->sat.gain));
        cJSON_AddItemToObject(sat, "p50_growth", sb_json_num_or_null(w->sat.lat_growth));
        cJSON_AddBoolToObject(sat, "rule_disagrees", sb_uwork_disagrees(w));
        sb_saturation_note(w, text, sizeof(text));
        cJSON_AddStringToObject(sat, "note", text);
        cJSON *steps = cJSON_AddArrayToObject(g, "steps");
        for (size_t k = 0; k < w->nsteps; k++) {
            const struct sb_knee_step *s = &w->steps[k];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(steps, o);
            cJSON_AddItemToObject(o, "concurrency", sb_json_num_or_null(s->x));
            cJSON_AddItemToObject(o, "p50_ms", sb_json_num_or_null(s->p50));
            cJSON_AddItemToObject(o, "p99_ms", sb_json_num_or_null(s->p99));
            cJSON_AddItemToObject(o, "ratio", sb_json_num_or_null(s->ratio));
            cJSON_AddItemToObject(o, "error_rate", sb_json_num_or_null(s->error_rate));
            cJSON_AddBoolToObject(o, "errors_over", s->errors_over);
            cJSON_AddItemToObject(o, "achieved_rps", sb_json_num_or_null(s->rps));
            cJSON_AddBoolToObject(o, "saturated", s->saturated);
            cJSON_AddItemToObject(o, "over",
                                  s->over < 0 ? cJSON_CreateNull() : cJSON_CreateBool(s->over));
        }
    }
    return root;
}

/* "%.2f", or "n/a" for NAN. */
static const char *fmt2(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.2f", v);
    else
        snprintf(buf, cap, "n/a");
    return buf;
}

static void print_uwork(const struct sb_analysis *an, const char *txt_path)
{
    char text[512], a[32], b[32], c[32], d[32], e[32], f[32];
    sb_uwork_rule(an, text, sizeof(text));
    printf("U_work rule: %s\n", text);
    sb_saturation_rule(text, sizeof(text));
    printf("beside it, the %s\n", text);
    for (size_t u = 0; u < an->nuwork; u++) {
        const struct sb_uwork *w = &an->uwork[u];
        printf("%s%s\n", w->series->label, u == an->uwork_pick ? "  [uwork.txt]" : "");
        printf("  %11s %10s %10s %8s %8s %9s  %s\n", "concurrency", "p50_ms", "p99_ms", "p99/p50",
               "errors%", "req/s", "over");
        for (size_t k = 0; k < w->nsteps; k++) {
            const struct sb_knee_step *s = &w->steps[k];
            if (isfinite(s->x))
                snprintf(a, sizeof(a), "%.0f", s->x);
            else
                snprintf(a, sizeof(a), "n/a");
            printf("  %11s %10s %10s %8s %8s %9s  %s%s%s\n", a, fmt2(b, sizeof(b), s->p50),
                   fmt2(c, sizeof(c), s->p99), fmt2(d, sizeof(d), s->ratio),
                   fmt2(e, sizeof(e), 100 * s->error_rate), fmt2(f, sizeof(f), s->rps),
                   s->over < 0      ? "n/a"
                   : s->errors_over ? "yes (errors)"
                   : s->over        ? "yes"
                                    : "no",
                   k == w->knee.knee_idx ? "  <- knee" : "", s->saturated ? "  <- saturation" : "");
        }
        sb_uwork_note(w, text, sizeof(text));
        printf("  %s\n", text);
        /* Beside the rule, where throughput stopped growing: on a noisy server the ratio is over
           from the first step, and past saturation a closed loop queues every user alike, so p50
           climbs with p99 and the ratio can stay under it. */
        sb_saturation_note(w, text, sizeof(text));
        printf("  %s%s\n", sb_uwork_disagrees(w) ? "warning: " : "", text);
    }
    if (an->uwork_pick != SIZE_MAX && txt_path) {
        const struct sb_uwork *w = &an->uwork[an->uwork_pick];
        if (!isnan(w->knee.uwork))
            printf("U_work = %.0f -> %s\n", w->knee.uwork, txt_path);
    }
}

/* Writes uwork.json next to txt and txt itself (or removes a stale one); *wrote says whether
 * txt now holds a U_work. */
static int write_uwork_files(const struct sb_analysis *an, const char *txt, bool *wrote,
                             struct sb_err *err)
{
    char dir[4096], json_path[4200];
    *wrote = false;
    if ((size_t)snprintf(dir, sizeof(dir), "%s", txt) >= sizeof(dir))
        return sb_err_set(err, "path too long: '%s'", txt);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    snprintf(json_path, sizeof(json_path), "%s/uwork.json", dir);
    if (sb_mkdir_p(dir, err) != 0)
        return -1;

    cJSON *root = uwork_json(an);
    char *js = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!js)
        return sb_err_set(err, "out of memory writing '%s'", json_path);
    int rc = -1;
    struct sb_buf b;
    sb_buf_init(&b, 64u << 20);
    if (sb_buf_adds(&b, js) != 0 || sb_buf_adds(&b, "\n") != 0) {
        sb_err_set(err, "out of memory writing '%s'", json_path);
        goto out;
    }
    if (sb_write_file_atomic(json_path, b.data, b.len, err) != 0)
        goto out;

    const struct sb_uwork *w = &an->uwork[an->uwork_pick];
    if (isnan(w->knee.uwork)) {
        if (unlink(txt) != 0 && errno != ENOENT) {
            sb_err_errno(err, errno, "cannot remove stale '%s'", txt);
            goto out;
        }
        char note[512];
        sb_uwork_note(w, note, sizeof(note));
        fprintf(stderr, "sparkbench analyze: warning: no U_work for '%s' (%s); '%s' not written\n",
                w->series->label, note, txt);
    } else {
        char line[64];
        int n = snprintf(line, sizeof(line), "%lld\n", (long long)llround(w->knee.uwork));
        if (sb_write_file_atomic(txt, line, (size_t)n, err) != 0)
            goto out;
        *wrote = true;
    }
    rc = 0;
out:
    sb_buf_release(&b);
    cJSON_free(js);
    return rc;
}

int sb_uwork_write(const struct sb_analysis *an, struct sb_err *err)
{
    const char *txt = an->opts->uwork_path;
    bool wrote = false;
    if (an->nuwork == 0)
        return 0;
    if (txt && txt[0] && write_uwork_files(an, txt, &wrote, err) != 0)
        return -1;
    if (!an->opts->quiet)
        print_uwork(an, wrote ? txt : NULL);
    return 0;
}
