/*
 * The log-linear histogram of sb/hist.h: what `run` keeps of each request's TTFT and E2E (and the
 * server's prompt counts) for its end-of-run summary. Before it, every sample was kept in a
 * growing array of doubles (with the completions and in-flight intervals of sb/recstats.h, 56
 * bytes a request): 1.4 MiB a minute of RSS at 1,000 streams in bench/soak.sh.
 */
#include "sb/hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUB (1ull << SB_HIST_SUB_BITS)
#define TOP (1ull << SB_HIST_TOP_BITS)

void sb_hist_init(struct sb_hist *h, double unit)
{
    memset(h, 0, sizeof(*h));
    h->unit = unit > 0 ? unit : 1;
    h->min = h->max = NAN;
}

void sb_hist_release(struct sb_hist *h)
{
    free(h->count);
    sb_hist_init(h, h->unit);
}

static size_t bucket_of(uint64_t u)
{
    if (u < SUB)
        return (size_t)u;
    if (u >= TOP)
        u = TOP - 1;
    int e = 63 - __builtin_clzll(u); /* e >= SB_HIST_SUB_BITS */
    uint64_t sub = u >> (e - SB_HIST_SUB_BITS);
    return ((size_t)(e - SB_HIST_SUB_BITS + 1) << SB_HIST_SUB_BITS) + (size_t)(sub - SUB);
}

/* The middle of the integers bucket b holds, in units. */
static double bucket_mid(size_t b)
{
    if (b < SUB)
        return (double)b;
    size_t g = b >> SB_HIST_SUB_BITS;
    int shift = (int)g - 1;
    uint64_t low = ((uint64_t)(b & (SUB - 1)) + SUB) << shift;
    uint64_t width = 1ull << shift;
    return (double)low + (double)(width - 1) / 2.0;
}

static int ensure(struct sb_hist *h)
{
    if (!h->count)
        h->count = calloc(SB_HIST_BUCKETS, sizeof(*h->count));
    return h->count ? 0 : -1;
}

void sb_hist_add(struct sb_hist *h, double v)
{
    if (!(v >= 0))
        return;
    if (ensure(h) != 0) {
        h->oom = 1;
        return;
    }
    double u = nearbyint(v / h->unit);
    h->count[bucket_of(u >= (double)TOP ? TOP - 1 : (uint64_t)u)]++;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (h->n == 0 || v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
}

int sb_hist_merge(struct sb_hist *dst, const struct sb_hist *src)
{
    dst->oom |= src->oom;
    if (src->n == 0)
        return 0;
    if (ensure(dst) != 0) {
        dst->oom = 1;
        return -1;
    }
    for (size_t b = 0; b < SB_HIST_BUCKETS; b++)
        dst->count[b] += src->count[b];
    if (dst->n == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->n == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->n += src->n;
    dst->sum += src->sum;
    return 0;
}

/* The value of the sample of 0-based rank k: exact at both ends, else its bucket's middle. */
static double rank_value(const struct sb_hist *h, uint64_t k, size_t *b_io, uint64_t *below_io)
{
    if (k == 0)
        return h->min;
    if (k >= h->n - 1)
        return h->max;
    /* The scan goes on from where the previous rank stopped: ranks are asked in ascending order. */
    size_t b = *b_io;
    uint64_t below = *below_io;
    while (b < SB_HIST_BUCKETS && below + h->count[b] <= k)
        below += h->count[b++];
    *b_io = b;
    *below_io = below;
    double v = bucket_mid(b) * h->unit;
    return v < h->min ? h->min : v > h->max ? h->max : v;
}

/* numpy's _lerp (as sb_stats_percentile_sorted computes it). */
static double lerp(double a, double b, double t)
{
    double diff = b - a;
    if (t >= 0.5)
        return b - diff * (1.0 - t);
    return a + diff * t;
}

double sb_hist_percentile(const struct sb_hist *h, double p)
{
    if (h->n == 0 || !h->count || !(p >= 0.0 && p <= 100.0))
        return NAN;
    double virt = (double)(h->n - 1) * (p / 100.0);
    if (virt >= (double)(h->n - 1))
        return h->max;
    double below_r = floor(virt);
    uint64_t lo = (uint64_t)below_r;
    size_t b = 0;
    uint64_t below = 0;
    double a = rank_value(h, lo, &b, &below);
    double c = rank_value(h, lo + 1, &b, &below);
    return lerp(a, c, virt - below_r);
}

void sb_hist_summarize(const struct sb_hist *h, struct sb_summary *out)
{
    out->n = (size_t)h->n;
    if (h->n == 0) {
        out->mean = out->min = out->max = out->p50 = out->p90 = out->p95 = out->p99 = out->p999 =
            NAN;
        return;
    }
    out->mean = h->sum / (double)h->n;
    out->min = h->min;
    out->max = h->max;
    out->p50 = sb_hist_percentile(h, 50);
    out->p90 = sb_hist_percentile(h, 90);
    out->p95 = sb_hist_percentile(h, 95);
    out->p99 = sb_hist_percentile(h, 99);
    out->p999 = sb_hist_percentile(h, 99.9);
}
