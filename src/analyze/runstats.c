/*
 * The arithmetic of a run's figures (sb/analyze.h): telemetry summaries, tick cadence, the share
 * of the window the telemetry covers, and the rates and ratios derived from loaded counts. Kept
 * apart from the readers so that each rule can be tested on plain arrays.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "sb/analyze.h"

#define DEFAULT_KV_BYTES_PER_TOKEN 131072.0
#define MAX_SLOTS                  100000000.0 /* a window of 230 days at 200 ms */

static void insertion_sort(double *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static double median3(double a, double b, double c)
{
    if (a > b) {
        double t = a;
        a = b;
        b = t;
    }
    return c < a ? a : c > b ? b : c;
}

/*
 * Puts the order statistics ks[0..nk) (ascending indexes into v) in their places within
 * v[lo, hi), as a full sort would: quickselect for all of them at once (Hoare partitions, which
 * split runs of equal latencies evenly), small ranges sorted outright, and sb_stats_sort for a
 * range that has partitioned badly too often, so the worst case stays O(n log n).
 */
static void select_ranks(double *v, size_t lo, size_t hi, const size_t *ks, size_t nk, int depth)
{
    while (nk > 0 && hi - lo > 1) {
        size_t n = hi - lo;
        if (n <= 32) {
            insertion_sort(v + lo, n);
            return;
        }
        if (depth-- <= 0) {
            sb_stats_sort(v + lo, n);
            return;
        }
        /* Hoare's partition around a median of three: [lo, split) <= pivot <= [split, hi). The
           median of three values of the range keeps both sides non-empty. */
        double pivot = median3(v[lo], v[lo + n / 2], v[hi - 1]);
        size_t i = lo - 1, j = hi;
        for (;;) {
            do
                i++;
            while (v[i] < pivot);
            do
                j--;
            while (v[j] > pivot);
            if (i >= j)
                break;
            double t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        size_t split = j + 1;
        size_t a = 0;
        while (a < nk && ks[a] < split)
            a++;
        if (a > 0)
            select_ranks(v, lo, split, ks, a, depth);
        ks += a;
        nk -= a;
        lo = split;
    }
}

void sb_lat_summarize(double *v, size_t n, struct sb_summary *out)
{
    out->n = n;
    if (n == 0) {
        out->mean = out->min = out->max = out->p50 = out->p90 = out->p95 = out->p99 = out->p999 =
            NAN;
        return;
    }
    out->mean = sb_stats_pairwise_sum(v, n) / (double)n;
    double mn = v[0], mx = v[0];
    for (size_t i = 1; i < n; i++) {
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    out->min = mn;
    out->max = mx;
    static const double ps[5] = {50, 90, 95, 99, 99.9};
    double *dst[5] = {&out->p50, &out->p90, &out->p95, &out->p99, &out->p999};
    /* The two ranks each percentile interpolates between (sb_stats_percentile_sorted's),
       ascending as the percentiles are. */
    size_t ks[10];
    size_t nk = 0;
    for (int i = 0; i < 5; i++) {
        double pos = floor((double)(n - 1) * (ps[i] / 100.0));
        size_t lo = pos < (double)(n - 1) ? (size_t)pos : n - 1;
        ks[nk++] = lo;
        if (lo + 1 < n)
            ks[nk++] = lo + 1;
    }
    int depth = 2;
    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    select_ranks(v, 0, n, ks, nk, depth);
    for (int i = 0; i < 5; i++)
        *dst[i] = sb_stats_percentile_sorted(v, n, ps[i]);
}

void sb_tstat_of(double *v, size_t n, struct sb_tstat *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            v[k++] = v[i];
    struct sb_summary s;
    sb_stats_summarize(v, k, &s);
    out->n = k;
    out->mean = s.mean;
    out->p95 = s.p95;
    out->min = s.min;
    out->max = s.max;
}

double sb_cadence_of(const double *ts, size_t n)
{
    if (n < 2)
        return NAN;
    double *gaps = malloc((n - 1) * sizeof(double));
    if (!gaps)
        return NAN;
    size_t k = 0;
    for (size_t i = 1; i < n; i++) {
        double g = ts[i] - ts[i - 1];
        if (g > 0)
            gaps[k++] = g;
    }
    double c = NAN;
    if (k > 0) {
        sb_stats_sort(gaps, k);
        c = sb_stats_percentile_sorted(gaps, k, 50);
    }
    free(gaps);
    return c;
}

double sb_aligned_share(const double *ts, size_t n, double t0, double t1, double cadence)
{
    if (!(t1 > t0) || !(cadence > 0) || !isfinite(t1 - t0) || (t1 - t0) / cadence > MAX_SLOTS)
        return NAN;
    /* Slot edges move back by a millionth of a cadence: a tick on the grid opens its slot even
       when the arithmetic put it a rounding error before the edge. */
    double eps = cadence * 1e-6;
    double covered = 0;
    size_t j = 0; /* the first tick not before the current slot */
    for (size_t k = 0;; k++) {
        double s = t0 + (double)k * cadence;
        if (!(s < t1))
            break;
        double e = s + cadence;
        while (j < n && ts[j] < s - eps)
            j++;
        if (j < n && ts[j] < e - eps)
            covered += (e < t1 ? e : t1) - s;
    }
    return covered / (t1 - t0);
}

void sb_run_derive(struct sb_run *r, const struct sb_analyze_opts *opts)
{
    r->achieved_rps = sb_tput_req_s(&r->tput);
    r->output_tok_s = sb_tput_tok_s(&r->tput);
    double all_hits = 0;
    bool any = false;
    for (int k = 0; k < 3; k++) {
        double h = r->tier_hits[k], m = r->tier_misses[k];
        r->tier_hit_ratio[k] = !isnan(h) && !isnan(m) && h + m > 0 ? h / (h + m) : NAN;
        if (!isnan(h)) {
            all_hits += h;
            any = true;
        }
    }
    r->tier2_share =
        any && !isnan(r->tier_hits[2]) && all_hits > 0 ? r->tier_hits[2] / all_hits : NAN;
    double per_token = opts && opts->kv_bytes_per_token > 0 ? opts->kv_bytes_per_token
                                                            : DEFAULT_KV_BYTES_PER_TOKEN;
    r->kv_working_set_bytes = r->concurrency > 0 && r->context_tokens > 0
                                  ? (double)r->concurrency * (double)r->context_tokens * per_token
                                  : NAN;
}
