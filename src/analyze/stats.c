/*
 * Sorting and numpy-compatible percentiles (see sb/stats.h). `analyze` and the end-of-run summary
 * sort millions of latencies, so the sort is an LSD radix sort on the doubles' bit patterns mapped
 * to unsigned keys that order like the values; tiny arrays use insertion sort on the same keys and
 * a failed scratch allocation falls back to an in-place heapsort, so every path agrees on the
 * order and none needs a comparison callback. Percentiles repeat numpy's arithmetic step by step
 * (q = p/100, index (n-1)*q, its two-sided lerp) so that a report's p99 equals the old harness's
 * p99 to the last bit, not just to a tolerance.
 */
#include "sb/stats.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIGN_BIT     0x8000000000000000ull
#define RADIX_BITS   11
#define RADIX_SIZE   (1u << RADIX_BITS)
#define RADIX_PASSES 6 /* 6 * 11 >= 64 */
#define SMALL_N      64

/* Maps a double to an unsigned key with the same order: flip all bits of negatives, set the sign
 * bit of positives. */
static inline uint64_t key_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return (u & SIGN_BIT) ? ~u : (u | SIGN_BIT);
}

static inline double double_of(uint64_t k)
{
    uint64_t u = (k & SIGN_BIT) ? (k & ~SIGN_BIT) : ~k;
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void insertion_sort(double *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double x = v[i];
        uint64_t kx = key_of(x);
        size_t j = i;
        while (j > 0 && key_of(v[j - 1]) > kx) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static void sift_down(double *v, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && key_of(v[child + 1]) > key_of(v[child]))
            child++;
        if (key_of(v[root]) >= key_of(v[child]))
            return;
        double t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

static void heap_sort(double *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(v, i, n);
    for (size_t end = n; end-- > 1;) {
        double t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(v, 0, end);
    }
}

void sb_stats_sort(double *v, size_t n)
{
    if (n <= SMALL_N) {
        insertion_sort(v, n);
        return;
    }
    uint64_t *keys = malloc(n * sizeof(uint64_t));
    uint64_t *tmp = malloc(n * sizeof(uint64_t));
    size_t(*count)[RADIX_SIZE] = calloc(RADIX_PASSES, sizeof(*count));
    if (!keys || !tmp || !count) {
        free(keys);
        free(tmp);
        free(count);
        heap_sort(v, n);
        return;
    }
    /* One pass builds every digit's histogram. */
    for (size_t i = 0; i < n; i++) {
        uint64_t k = key_of(v[i]);
        keys[i] = k;
        for (int d = 0; d < RADIX_PASSES; d++)
            count[d][(k >> (d * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    }
    for (int d = 0; d < RADIX_PASSES; d++) {
        unsigned shift = (unsigned)(d * RADIX_BITS);
        size_t *c = count[d];
        /* Every key has the same digit here (common in the exponent bits): nothing to move. */
        if (c[(keys[0] >> shift) & (RADIX_SIZE - 1)] == n)
            continue;
        size_t sum = 0;
        for (size_t b = 0; b < RADIX_SIZE; b++) {
            size_t t = c[b];
            c[b] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++)
            tmp[c[(keys[i] >> shift) & (RADIX_SIZE - 1)]++] = keys[i];
        uint64_t *t = keys;
        keys = tmp;
        tmp = t;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = double_of(keys[i]);
    free(keys);
    free(tmp);
    free(count);
}

/* numpy's _lerp: a + (b-a)*t, computed from the b side when t >= 0.5 so that t = 1 gives b. */
static double lerp(double a, double b, double t)
{
    double diff = b - a;
    if (t >= 0.5)
        return b - diff * (1.0 - t);
    return a + diff * t;
}

double sb_stats_percentile_sorted(const double *sorted, size_t n, double p)
{
    if (n == 0 || !(p >= 0.0 && p <= 100.0))
        return NAN;
    double q = p / 100.0;
    double virt = (double)(n - 1) * q;
    if (virt >= (double)(n - 1))
        return sorted[n - 1];
    double below = floor(virt);
    size_t lo = (size_t)below;
    double gamma = virt - below;
    return lerp(sorted[lo], sorted[lo + 1], gamma);
}

/* numpy's pairwise summation: 8 accumulators in blocks of up to 128, halves above that. */
double sb_stats_pairwise_sum(const double *a, size_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (size_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        size_t i;
        for (i = 8; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + (size_t)j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return sb_stats_pairwise_sum(a, n2) + sb_stats_pairwise_sum(a + n2, n - n2);
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
    out->mean = sb_stats_pairwise_sum(v, n) / (double)n;
    out->min = v[0];
    out->max = v[n - 1];
    out->p50 = sb_stats_percentile_sorted(v, n, 50);
    out->p90 = sb_stats_percentile_sorted(v, n, 90);
    out->p95 = sb_stats_percentile_sorted(v, n, 95);
    out->p99 = sb_stats_percentile_sorted(v, n, 99);
    out->p999 = sb_stats_percentile_sorted(v, n, 99.9);
}

void sb_tput_init(struct sb_tput *t, double from_s, double to_s)
{
    t->from_s = from_s;
    t->to_s = to_s;
    t->completed = t->output_tokens = 0;
}

void sb_tput_add(struct sb_tput *t, double done_s, long long output_tokens)
{
    if (!(done_s >= t->from_s && done_s < t->to_s))
        return;
    t->completed++;
    if (output_tokens > 0)
        t->output_tokens += output_tokens;
}

double sb_tput_window_s(const struct sb_tput *t)
{
    double w = t->to_s - t->from_s;
    return w > 0 ? w : 0;
}

double sb_tput_req_s(const struct sb_tput *t)
{
    double w = sb_tput_window_s(t);
    return w > 0 ? (double)t->completed / w : NAN;
}

double sb_tput_tok_s(const struct sb_tput *t)
{
    double w = sb_tput_window_s(t);
    return w > 0 ? (double)t->output_tokens / w : NAN;
}

bool sb_client_fell_behind(long long late_sends, long long sent, double max_sched_delay_ms)
{
    if (late_sends <= 0)
        return false;
    double share = sent > 0 ? (double)late_sends / (double)sent : 1.0;
    return share > 0.01 || max_sched_delay_ms > 100;
}
