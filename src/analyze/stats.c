/* Sorting and numpy-compatible percentiles (see sb/stats.h). */
#include "sb/stats.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Maps a double's bits to an unsigned key that sorts in the same order. */
static inline uint64_t key_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

static inline double double_of(uint64_t k)
{
    uint64_t u = (k & 0x8000000000000000ull) ? (k & ~0x8000000000000000ull) : ~k;
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void sb_stats_sort(double *v, size_t n)
{
    if (n < 256) {
        qsort(v, n, sizeof(double), cmp_double);
        return;
    }
    /* LSD radix sort, 11 bits a pass, skipping passes where every key has the same digit. */
    uint64_t *a = malloc(n * sizeof(uint64_t)), *b = malloc(n * sizeof(uint64_t));
    if (!a || !b) {
        free(a);
        free(b);
        qsort(v, n, sizeof(double), cmp_double);
        return;
    }
    for (size_t i = 0; i < n; i++)
        a[i] = key_of(v[i]);
    size_t count[2048];
    for (int shift = 0; shift < 64; shift += 11) {
        memset(count, 0, sizeof(count));
        for (size_t i = 0; i < n; i++)
            count[(a[i] >> shift) & 0x7ff]++;
        if (count[(a[0] >> shift) & 0x7ff] == n)
            continue;
        size_t sum = 0;
        for (size_t d = 0; d < 2048; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[count[(a[i] >> shift) & 0x7ff]++] = a[i];
        uint64_t *t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = double_of(a[i]);
    free(a);
    free(b);
}

double sb_stats_percentile_sorted(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    double pos = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double frac = pos - (double)lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

void sb_stats_summarize(double *v, size_t n, struct sb_summary *out)
{
    out->n = n;
    if (n == 0) {
        out->mean = out->min = out->max = out->p50 = out->p90 = out->p95 = out->p99 = out->p999 =
            NAN;
        return;
    }
    sb_stats_sort(v, n);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    out->mean = sum / (double)n;
    out->min = v[0];
    out->max = v[n - 1];
    out->p50 = sb_stats_percentile_sorted(v, n, 50);
    out->p90 = sb_stats_percentile_sorted(v, n, 90);
    out->p95 = sb_stats_percentile_sorted(v, n, 95);
    out->p99 = sb_stats_percentile_sorted(v, n, 99);
    out->p999 = sb_stats_percentile_sorted(v, n, 99.9);
}
