/*
 * The KV-reuse view of a run (sb/analyze_sess.h): a second pass over metrics.jsonl for runs whose
 * records carry the oracle fields, kept apart from the fast metrics scanner so that the other
 * workloads' runs pay one look at their first lines and nothing more. Success, phase and TTFT
 * come from sb_metrics_parse_line (the one definition analyze uses everywhere), which also
 * validates the line; the oracle fields from a key search in it.
 */
#include "sb/analyze_sess.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/analyze.h"
#include "sb/buf.h"
#include "sb/stats.h"
#include "sb/util.h"

#define SNIFF_LINES  32
#define PRIME        "\"phase\":\"prime\""
#define RUN_JSON_MAX (64u << 20)

/* One counted record. NAN: the field was null or absent. */
struct srec {
    double turn, dist, ttft, cached, reusable, prompt;
};

void sb_sess_init(struct sb_sess *s)
{
    memset(s, 0, sizeof(*s));
    s->all.lo = s->all.hi = NAN;
    s->all.ttft_p50 = s->all.ttft_p99 = s->all.ttft_mean = NAN;
    s->oracle_hit_ratio = s->realized_hit_ratio = s->realized_over_oracle = NAN;
    s->sessions = -1;
    s->kv_bytes_per_token = s->ws_tokens_mean = s->ws_tokens_max = NAN;
    for (int t = 0; t < 3; t++)
        s->tier_tokens[t] = NAN;
}

void sb_sess_release(struct sb_sess *s)
{
    free(s->turns);
    free(s->dist);
    sb_sess_init(s);
}

void sb_sess_dist_bin(double d, double *lo, double *hi)
{
    if (!(d >= 1)) {
        *lo = 0;
        *hi = 1;
        return;
    }
    int e;
    frexp(d, &e); /* d = m * 2^e, 0.5 <= m < 1: 2^(e-1) <= d < 2^e */
    *lo = ldexp(1, e - 1);
    *hi = ldexp(1, e);
}

double sb_sess_bin_x(double lo, double hi)
{
    return lo > 0 ? sqrt(lo * hi) : 0.5;
}

static double num_or_nan(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/*
 * The number under key in a flat JSON object line, NAN when absent, null or not a number. A key
 * search is exact on valid JSON: inside a string every quote is escaped, so `"key":` can only be
 * a key (our records are flat objects). The line was validated by sb_metrics_parse_line first.
 */
static double line_num(const char *line, size_t len, const char *key)
{
    char pat[64];
    int pl = snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = memmem(line, len, pat, (size_t)pl);
    if (!p)
        return NAN;
    p += pl;
    while (*p == ' ')
        p++;
    if (*p != '-' && (*p < '0' || *p > '9'))
        return NAN;
    char *end;
    double v = strtod(p, &end);
    return end > p && isfinite(v) ? v : NAN;
}

/* Whether the line's record has one of the workloads' fields set. */
static bool carries_fields(const cJSON *j)
{
    return !isnan(num_or_nan(j, "session")) || !isnan(num_or_nan(j, "turn")) ||
           !isnan(num_or_nan(j, "reusable_tokens"));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ratio(double num, double den)
{
    return den > 0 && !isnan(num) ? num / den : NAN;
}

/* Adds one record to a group's sums; its TTFT goes to v (the caller summarizes). */
static void group_add(struct sb_sess_group *g, const struct srec *x)
{
    if (!isnan(x->cached) && !isnan(x->reusable)) {
        g->nhit++;
        g->cached += x->cached;
        g->reusable += x->reusable;
        if (!isnan(x->prompt)) {
            g->nprompt++;
            g->prompt += x->prompt;
            g->cached_p += x->cached;
            g->reusable_p += x->reusable;
        }
    }
}

static void group_ttft(struct sb_sess_group *g, double *v, size_t n)
{
    struct sb_summary s;
    sb_stats_summarize(v, n, &s);
    g->n = n;
    g->ttft_p50 = s.p50;
    g->ttft_p99 = s.p99;
    g->ttft_mean = s.mean;
}

/*
 * Groups recs by key (turn or distance bin) into *out. key() gives a record's group (NAN: none)
 * and its upper edge. 0 or -1 (out of memory).
 */
static int group_by(const struct srec *recs, size_t n, bool by_turn, struct sb_sess_group **out,
                    size_t *nout)
{
    *out = NULL;
    *nout = 0;
    double *keys = malloc((n ? n : 1) * sizeof(*keys));
    double *v = malloc((n ? n : 1) * sizeof(*v));
    if (!keys || !v)
        goto oom;
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        double k = by_turn ? recs[i].turn : recs[i].dist;
        if (isnan(k))
            continue;
        if (!by_turn) {
            double hi;
            sb_sess_dist_bin(k, &k, &hi);
        }
        keys[nk++] = k;
    }
    qsort(keys, nk, sizeof(*keys), cmp_double);
    size_t ng = 0;
    for (size_t i = 0; i < nk; i++)
        if (i == 0 || keys[i] != keys[i - 1])
            keys[ng++] = keys[i];
    struct sb_sess_group *g = calloc(ng ? ng : 1, sizeof(*g));
    if (!g)
        goto oom;
    for (size_t k = 0; k < ng; k++) {
        g[k].lo = keys[k];
        if (by_turn)
            g[k].hi = keys[k];
        else
            sb_sess_dist_bin(keys[k], &g[k].lo, &g[k].hi);
        size_t nv = 0;
        for (size_t i = 0; i < n; i++) {
            double key = by_turn ? recs[i].turn : recs[i].dist, hi;
            if (isnan(key))
                continue;
            if (!by_turn)
                sb_sess_dist_bin(key, &key, &hi);
            if (key != keys[k])
                continue;
            group_add(&g[k], &recs[i]);
            if (!isnan(recs[i].ttft))
                v[nv++] = recs[i].ttft;
        }
        group_ttft(&g[k], v, nv);
    }
    free(keys);
    free(v);
    *out = g;
    *nout = ng;
    return 0;
oom:
    free(keys);
    free(v);
    return -1;
}

/* run.json: sessions, kv_bytes_per_token and the working set over the measured window. */
static void read_workload_state(struct sb_sess *s, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/run.json", dir);
    struct sb_buf text;
    sb_buf_init(&text, RUN_JSON_MAX);
    if (sb_buf_add_file(&text, path) != 0) {
        sb_buf_release(&text);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(text.data ? text.data : "", text.len);
    sb_buf_release(&text);
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(j, "workload_state");
    if (!cJSON_IsObject(ws)) {
        cJSON_Delete(j);
        return;
    }
    double n = num_or_nan(ws, "sessions");
    if (n >= 0)
        s->sessions = (long long)n;
    double kb = num_or_nan(ws, "kv_bytes_per_token");
    if (kb > 0)
        s->kv_bytes_per_token = kb;
    /* t_s counts from the ts that working_set_t0 names: measure_start_ts (sparkbench writes
       that, src/run/sessions.c), or start_ts (runs written before it said). The measured window
       in the same terms. */
    const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(ws, "working_set_t0");
    double start = num_or_nan(j, cJSON_IsString(t0) ? t0->valuestring : "start_ts");
    double w0 = num_or_nan(j, "measure_start_ts") - start;
    double w1 = num_or_nan(j, "measure_end_ts") - start;
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(ws, "working_set");
    for (int pass = 0; pass < 2 && s->ws_points == 0; pass++) {
        /* pass 0: the samples inside the window; pass 1 (none there, or no window): all */
        double sum = 0, max = -INFINITY;
        size_t k = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, pts)
        {
            double t = num_or_nan(p, "t_s"), tok = num_or_nan(p, "tokens");
            if (isnan(tok) || (pass == 0 && !(t >= w0 && t <= w1)))
                continue;
            sum += tok;
            max = tok > max ? tok : max;
            k++;
        }
        if (k) {
            s->ws_points = k;
            s->ws_tokens_mean = sum / (double)k;
            s->ws_tokens_max = max;
        }
    }
    cJSON_Delete(j);
}

/* Reads the counted records of path into *out; sets present/sessioned/prime. */
static int read_records(struct sb_sess *s, const char *path, struct srec **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    struct sb_mscan *sc = sb_mscan_new(false);
    char *line = NULL;
    size_t cap = 0, n = 0, rcap = 0, seen = 0;
    struct srec *recs = NULL;
    int rc = 0;
    if (!sc) {
        rc = -1;
        goto out;
    }
    /* A look at the first lines decides: other workloads write these fields as null. */
    bool any = false;
    ssize_t len;
    while (seen < SNIFF_LINES && (len = getline(&line, &cap, f)) > 0) {
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (j) {
            seen++;
            any |= carries_fields(j);
        }
        cJSON_Delete(j);
    }
    if (!any)
        goto out;
    s->present = true;
    rewind(f);
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        struct sb_mrec m;
        struct sb_err err;
        if (sb_metrics_parse_line(sc, line, (size_t)len, &m, &err) != 0)
            continue;
        const size_t ul = (size_t)len;
        if (memmem(line, ul, PRIME, sizeof(PRIME) - 1))
            s->prime++;
        double session = line_num(line, ul, "session"), turn = line_num(line, ul, "turn");
        double reusable = line_num(line, ul, "reusable_tokens");
        s->sessioned |= !isnan(session);
        if (!m.warmup && m.ok && (!isnan(session) || !isnan(turn) || !isnan(reusable))) {
            if (n == rcap) {
                size_t nc = rcap ? 2 * rcap : 1024;
                struct srec *q = realloc(recs, nc * sizeof(*q));
                if (!q) {
                    rc = -1;
                    goto out;
                }
                recs = q;
                rcap = nc;
            }
            recs[n++] = (struct srec){
                .turn = turn,
                .dist = line_num(line, ul, "reuse_distance_tokens"),
                .ttft = m.lat[SB_LAT_TTFT],
                .cached = line_num(line, ul, "cached_tokens"),
                .reusable = reusable,
                .prompt = m.prompt_tokens >= 0 ? (double)m.prompt_tokens : NAN,
            };
        }
    }
out:
    free(line);
    sb_mscan_free(sc);
    fclose(f);
    if (rc != 0) {
        free(recs);
        return -1;
    }
    *out = recs;
    *nout = n;
    return 0;
}

int sb_sess_load(struct sb_run *r, const char *dir, const struct sb_analyze_opts *opts)
{
    struct sb_sess *s = &r->sess;
    sb_sess_release(s);
    char path[4200];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    struct srec *recs = NULL;
    size_t n = 0;
    if (read_records(s, path, &recs, &n) != 0)
        return -1;
    if (!s->present)
        return 0;
    s->records = n;
    double *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        free(recs);
        return -1;
    }
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        group_add(&s->all, &recs[i]);
        if (!isnan(recs[i].ttft))
            v[nv++] = recs[i].ttft;
    }
    group_ttft(&s->all, v, nv);
    free(v);
    s->oracle_hit_ratio = ratio(s->all.reusable_p, s->all.prompt);
    s->realized_hit_ratio = ratio(s->all.cached_p, s->all.prompt);
    s->realized_over_oracle = ratio(s->all.cached, s->all.reusable);
    int rc = group_by(recs, n, true, &s->turns, &s->nturns);
    if (rc == 0)
        rc = group_by(recs, n, false, &s->dist, &s->ndist);
    free(recs);
    read_workload_state(s, dir);
    if (isnan(s->kv_bytes_per_token) && opts && opts->kv_bytes_per_token > 0)
        s->kv_bytes_per_token = opts->kv_bytes_per_token;
    /* H5's x for the other workloads is concurrency x context x bytes a token; a sessions run
       has a measured one: the live sessions' tokens. */
    if (isnan(r->kv_working_set_bytes) && s->ws_tokens_mean >= 0 && s->kv_bytes_per_token > 0)
        r->kv_working_set_bytes = s->ws_tokens_mean * s->kv_bytes_per_token;
    const uint64_t bytes[3] = {r->tier0_bytes, r->tier1_bytes, r->tier2_bytes};
    for (int t = 0; t < 3; t++)
        if (bytes[t] > 0 && s->kv_bytes_per_token > 0)
            s->tier_tokens[t] = (double)bytes[t] / s->kv_bytes_per_token;
    return rc;
}
