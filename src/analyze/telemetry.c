/*
 * Telemetry for analyze (sb_run_read_telemetry in sb/analyze.h): sysmon.jsonl and dynkv.jsonl
 * read into tick arrays and joined with the run's measurement window. These files hold one line
 * per 200 ms tick (18 000 an hour), so each line goes through cJSON. Ticks are taken by their grid
 * time "ts" (a number, or ISO-8601 text in the old harness's files); {"missed": true} lines mark
 * ticks the sampler could not take. A sysmon tick is late when it was read more than half a
 * cadence after its grid time ("late_ms", or ts_actual - ts when that is larger: an older sampler
 * let its grid drift behind the clock with late_ms near 0). An on-time tick stands for its grid
 * time; a late one for the time it was read ("ts_actual"), which decides whether it is inside the
 * run's window. A late tick's readings are real and count in the statistics, but it stands for no
 * slot of the grid: it is counted (sysmon_late) and left out of the aligned share, like a missed
 * one. A file that is absent leaves every figure it feeds NAN;
 * bad lines become warnings, as in metrics.jsonl.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb/analyze.h"
#include "sb/util.h"
#include "sb/jsonl.h"

/* The sysmon fields analyze summarizes. */
enum sfield { S_IOWAIT, S_RPS, S_RMBS, S_RAWAIT, S_UTIL, S_AQU, S_PSI_IO, S_GPU, S_MEMAVAIL, S_N };

struct stick {
    double ts;
    double ts_actual; /* when it was read; ts when the line does not say */
    double late_s;    /* how long after ts it was read, 0 when the line does not say */
    bool missed;
    double f[S_N];
};

struct dtick {
    double ts;
    bool missed;
    double hits[3], misses[3];
    double t2_bytes_out, t2_fetch_p95;
};

/* What a reader callback collects: ticks, and the first bad line's reason. */
struct tread {
    bool dynkv;
    struct stick *s;
    struct dtick *d;
    size_t n, cap;
    long first_bad_line;
    char first_bad[160];
    bool oom;
};

static const cJSON *child(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static double num_of(const cJSON *x)
{
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* o.a.b as a number; NAN when absent, null or not a number. */
static double num2(const cJSON *o, const char *a, const char *b)
{
    return num_of(child(child(o, a), b));
}

static double gpu_util(const cJSON *o)
{
    const cJSON *g = child(o, "gpu");
    if (cJSON_IsArray(g))
        g = cJSON_GetArrayItem(g, 0); /* one GPU on the machines of the Test Plan */
    static const char *const names[] = {"util", "util_pct", "util_gpu"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        double v = num_of(child(g, names[i]));
        if (!isnan(v))
            return v;
    }
    return NAN;
}

static int tick_ts(const cJSON *o, double *ts)
{
    const cJSON *t = child(o, "ts");
    if (cJSON_IsNumber(t)) {
        *ts = t->valuedouble;
        return 0;
    }
    if (cJSON_IsString(t))
        return sb_parse_iso8601(t->valuestring, ts);
    return -1;
}

static int grow(struct tread *t)
{
    if (t->n < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 256;
    if (t->dynkv) {
        struct dtick *d = realloc(t->d, cap * sizeof(*d));
        if (!d)
            return -1;
        t->d = d;
    } else {
        struct stick *s = realloc(t->s, cap * sizeof(*s));
        if (!s)
            return -1;
        t->s = s;
    }
    t->cap = cap;
    return 0;
}

static int bad(struct tread *t, long lineno, const char *why)
{
    if (t->first_bad_line == 0) {
        t->first_bad_line = lineno;
        snprintf(t->first_bad, sizeof(t->first_bad), "%s", why);
    }
    return 1;
}

static int on_tick(char *line, size_t len, long lineno, void *arg)
{
    struct tread *t = arg;
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return bad(t, lineno, "not a JSON object");
    }
    double ts;
    if (tick_ts(o, &ts) != 0) {
        cJSON_Delete(o);
        return bad(t, lineno, "no 'ts' (a number or an ISO-8601 time)");
    }
    if (grow(t) != 0) {
        cJSON_Delete(o);
        t->oom = true;
        return -1;
    }
    bool missed = cJSON_IsTrue(child(o, "missed"));
    if (t->dynkv) {
        struct dtick *d = &t->d[t->n++];
        static const char *const tiers[3] = {"tier0", "tier1", "tier2"};
        d->ts = ts;
        d->missed = missed;
        for (int i = 0; i < 3; i++) {
            d->hits[i] = num2(o, tiers[i], "hits");
            d->misses[i] = num2(o, tiers[i], "misses");
        }
        d->t2_bytes_out = num2(o, "tier2", "bytes_out");
        d->t2_fetch_p95 = num2(o, "tier2", "fetch_p95_ms");
    } else {
        struct stick *s = &t->s[t->n++];
        s->ts = ts;
        s->missed = missed;
        double actual = num_of(child(o, "ts_actual")), late_ms = num_of(child(o, "late_ms"));
        s->ts_actual = isfinite(actual) ? actual : ts;
        s->late_s = isfinite(late_ms) && late_ms > 0 ? late_ms / 1000 : 0;
        if (s->ts_actual - ts > s->late_s)
            s->late_s = s->ts_actual - ts;
        s->f[S_IOWAIT] = num2(o, "cpu", "iowait");
        s->f[S_RPS] = num2(o, "nvme", "rps");
        s->f[S_RMBS] = num2(o, "nvme", "rMBs");
        s->f[S_RAWAIT] = num2(o, "nvme", "r_await_ms");
        s->f[S_UTIL] = num2(o, "nvme", "util_pct");
        s->f[S_AQU] = num2(o, "nvme", "aqu_sz");
        /* Ours: psi.io.some_avg10; the nested shape psi.io.some.avg10 reads too. */
        const cJSON *io = child(child(o, "psi"), "io");
        s->f[S_PSI_IO] = num_of(child(io, "some_avg10"));
        if (isnan(s->f[S_PSI_IO]))
            s->f[S_PSI_IO] = num2(io, "some", "avg10");
        s->f[S_GPU] = gpu_util(o);
        s->f[S_MEMAVAIL] = num2(o, "mem", "MemAvailable");
    }
    cJSON_Delete(o);
    return 0;
}

static int cmp_stick(const void *a, const void *b)
{
    double x = ((const struct stick *)a)->ts, y = ((const struct stick *)b)->ts;
    return (x > y) - (x < y);
}

static int cmp_dtick(const void *a, const void *b)
{
    double x = ((const struct dtick *)a)->ts, y = ((const struct dtick *)b)->ts;
    return (x > y) - (x < y);
}

/* Reads one telemetry file into t and fr; false when it is absent or unreadable. */
static bool read_ticks(struct sb_run *r, const char *path, struct tread *t,
                       struct sb_file_report *fr)
{
    struct sb_jsonl_stats st;
    struct sb_err err;
    const char *name = t->dynkv ? "dynkv.jsonl" : "sysmon.jsonl";
    int rc = sb_jsonl_read(path, on_tick, t, &st, &err);
    if (rc != 0) {
        if (t->oom)
            sb_run_warn(r, "cannot read '%s': out of memory", path);
        else if (access(path, F_OK) == 0)
            sb_run_warn(r, "%s", err.msg);
        return false;
    }
    fr->present = true;
    fr->lines = (size_t)st.lines + (size_t)st.bad_lines;
    fr->bad_lines = (size_t)st.bad_lines + (st.torn_last ? 1 : 0);
    fr->blank_lines = (size_t)st.blank_lines;
    if (t->first_bad_line > 0) {
        snprintf(fr->first_problem, sizeof(fr->first_problem), "%s line %ld: %s", name,
                 t->first_bad_line, t->first_bad);
        sb_run_warn(r, "'%s' line %ld: %s", path, t->first_bad_line, t->first_bad);
        if (st.bad_lines > 1)
            sb_run_warn(r, "'%s': %ld bad lines in all", path, st.bad_lines);
    }
    if (st.torn_last) {
        if (!fr->first_problem[0])
            snprintf(fr->first_problem, sizeof(fr->first_problem),
                     "%s line %ld: torn last line (no final newline)", name, st.torn_lineno);
        sb_run_warn(r, "'%s' line %ld: torn last line (no final newline), not read", path,
                    st.torn_lineno);
    }
    if (t->n == 0 && fr->bad_lines > 0)
        sb_run_warn(r, "'%s' is not JSON lines: no tick of it reads", path);
    if (t->dynkv)
        qsort(t->d, t->n, sizeof(*t->d), cmp_dtick);
    else
        qsort(t->s, t->n, sizeof(*t->s), cmp_stick);
    return true;
}

static bool in_window(const struct sb_run *r, double ts)
{
    return ts >= r->t0 && ts <= r->t1;
}

/* The cadence from every tick's grid time (missed ones included), else the default. */
static double cadence_from(double *ts, size_t n, double def)
{
    double c = sb_cadence_of(ts, n);
    return isnan(c) ? def : c;
}

static bool tick_late(const struct stick *k, double cadence)
{
    return k->late_s > cadence / 2;
}

/* The time a live tick stands for: its grid time, or when it was read if that was late. */
static double tick_time(const struct stick *k, double cadence)
{
    return tick_late(k, cadence) ? k->ts_actual : k->ts;
}

static void join_sysmon(struct sb_run *r, const struct tread *t, double def_cadence)
{
    double *ts = malloc((t->n ? t->n : 1) * sizeof(double));
    double *v = malloc((t->n ? t->n : 1) * sizeof(double));
    if (!ts || !v) {
        sb_run_warn(r, "cannot join sysmon.jsonl: out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++)
        ts[i] = t->s[i].ts;
    r->cadence_s = sb_cadence_of(ts, t->n);
    double c = isnan(r->cadence_s) ? def_cadence : r->cadence_s;
    size_t live = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct stick *k = &t->s[i];
        if (k->missed) {
            r->sysmon_missed += in_window(r, k->ts);
            continue;
        }
        bool late = tick_late(k, c);
        if (!late)
            ts[live++] = k->ts; /* on time: it stands for its grid slot */
        if (in_window(r, tick_time(k, c))) {
            r->sysmon_samples++;
            r->sysmon_late += late;
        }
    }
    r->sysmon_aligned = sb_aligned_share(ts, live, r->t0, r->t1, c);
    struct sb_tstat *dst[S_N] = {
        [S_IOWAIT] = &r->cpu_iowait,   [S_RPS] = &r->nvme_rps,   [S_RMBS] = &r->nvme_rmbs,
        [S_RAWAIT] = &r->nvme_r_await, [S_UTIL] = &r->nvme_util, [S_AQU] = &r->nvme_aqu,
        [S_PSI_IO] = &r->psi_io_some,  [S_GPU] = &r->gpu_util,   [S_MEMAVAIL] = &r->mem_available,
    };
    for (int f = 0; f < S_N; f++) {
        size_t n = 0;
        for (size_t i = 0; i < t->n; i++)
            if (!t->s[i].missed && in_window(r, tick_time(&t->s[i], c)))
                v[n++] = t->s[i].f[f];
        sb_tstat_of(v, n, dst[f]);
    }
out:
    free(ts);
    free(v);
}

/* The live sysmon tick nearest ts within half a cadence, or NULL. */
static const struct stick *sysmon_at(const struct tread *s, double ts, double cadence)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->s[mid].ts < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    const struct stick *best = NULL;
    double best_d = cadence / 2;
    for (size_t i = lo > 0 ? lo - 1 : 0; i < s->n && i <= lo + 1; i++) {
        double d = fabs(s->s[i].ts - ts);
        if (!s->s[i].missed && d <= best_d) {
            best = &s->s[i];
            best_d = d;
        }
    }
    return best;
}

static void join_dynkv(struct sb_run *r, const struct tread *t, const struct tread *s,
                       double def_cadence)
{
    double *ts = malloc((t->n ? t->n : 1) * sizeof(double));
    double *v = malloc((t->n ? t->n : 1) * sizeof(double));
    if (!ts || !v) {
        sb_run_warn(r, "cannot join dynkv.jsonl: out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++)
        ts[i] = t->d[i].ts;
    r->cadence_dynkv_s = sb_cadence_of(ts, t->n);
    double c = cadence_from(ts, t->n, isnan(r->cadence_s) ? def_cadence : r->cadence_s);
    double sys_c = isnan(r->cadence_s) ? c : r->cadence_s;
    size_t live = 0, nfetch = 0, nh7 = 0;
    bool have_h[3] = {false, false, false}, have_m[3] = {false, false, false};
    double hits[3] = {0, 0, 0}, misses[3] = {0, 0, 0};
    for (size_t i = 0; i < t->n; i++) {
        const struct dtick *d = &t->d[i];
        if (d->missed) {
            r->dynkv_missed += in_window(r, d->ts);
            continue;
        }
        ts[live++] = d->ts;
        if (!in_window(r, d->ts))
            continue;
        r->dynkv_samples++;
        for (int k = 0; k < 3; k++) {
            if (!isnan(d->hits[k])) {
                hits[k] += d->hits[k];
                have_h[k] = true;
            }
            if (!isnan(d->misses[k])) {
                misses[k] += d->misses[k];
                have_m[k] = true;
            }
        }
        v[nfetch++] = d->t2_fetch_p95;
        nh7 += !isnan(d->t2_bytes_out);
    }
    r->dynkv_aligned = sb_aligned_share(ts, live, r->t0, r->t1, c);
    for (int k = 0; k < 3; k++) {
        r->tier_hits[k] = have_h[k] ? hits[k] : NAN;
        r->tier_misses[k] = have_m[k] ? misses[k] : NAN;
    }
    sb_tstat_of(v, nfetch, &r->tier2_fetch_p95_ms);
    if (nh7 == 0)
        goto out;
    r->h7 = calloc(nh7, sizeof(*r->h7));
    if (!r->h7) {
        sb_run_warn(r, "cannot join dynkv.jsonl: out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct dtick *d = &t->d[i];
        if (d->missed || !in_window(r, d->ts) || isnan(d->t2_bytes_out))
            continue;
        struct sb_h7_point *h = &r->h7[r->nh7++];
        const struct stick *o = s->n ? sysmon_at(s, d->ts, sys_c) : NULL;
        h->ts = d->ts;
        h->pred_rmbs = d->t2_bytes_out / c / 1e6;
        h->obs_rmbs = o ? o->f[S_RMBS] : NAN;
        h->obs_rps = o ? o->f[S_RPS] : NAN;
        h->fetch_p95_ms = d->t2_fetch_p95;
    }
out:
    free(ts);
    free(v);
}

void sb_run_read_telemetry(struct sb_run *r, const char *sysmon_path, const char *dynkv_path,
                           double default_cadence_s)
{
    struct tread s = {0}, d = {0};
    d.dynkv = true;
    bool have_s = read_ticks(r, sysmon_path, &s, &r->sysmon_file);
    bool have_d = read_ticks(r, dynkv_path, &d, &r->dynkv_file);
    bool window = r->t1 > r->t0;
    for (size_t i = 0; i < s.n; i++)
        r->sysmon_ticks += !s.s[i].missed; /* the old column: every tick, window or not */
    if (have_s && window)
        join_sysmon(r, &s, default_cadence_s);
    if (have_d && window)
        join_dynkv(r, &d, &s, default_cadence_s);
    if ((have_s || have_d) && !window)
        sb_run_warn(r,
                    "'%s': no measurement window (no run.json and no measured record with a "
                    "ts): telemetry not joined",
                    r->dir);
    free(s.s);
    free(d.d);
}
