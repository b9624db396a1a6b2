/*
 * A fixed-size log-linear histogram for latency-like samples (HDR histogram's layout), so a run
 * that lasts hours keeps its percentiles in constant memory instead of one double per request.
 * A sample v >= 0 is counted as the integer u = round(v / unit); u below 2^SB_HIST_SUB_BITS has a
 * bucket of its own (exact), above that each power of two is split into 2^SB_HIST_SUB_BITS equal
 * buckets, so a bucket is at most 1/512 of its value wide and a percentile read at the bucket's
 * middle is within 0.1 % (plus unit/2) of the exact one. Count, mean, min and max are exact (the
 * mean is a plain running sum, not numpy's pairwise one: it may differ in the last digits).
 * Values above 2^SB_HIST_TOP_BITS units land in the top bucket (max stays exact).
 */
#ifndef SB_HIST_H
#define SB_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "sb/stats.h"

#define SB_HIST_SUB_BITS 9
#define SB_HIST_TOP_BITS 40
#define SB_HIST_BUCKETS  ((SB_HIST_TOP_BITS - SB_HIST_SUB_BITS + 1) << SB_HIST_SUB_BITS)

struct sb_hist {
    double unit;     /* the value of one integer step (1e-3 for milliseconds kept to 1 us) */
    uint64_t *count; /* SB_HIST_BUCKETS counters (calloc'ed at the first sample) */
    uint64_t n;
    double sum, min, max;
    int oom; /* a sample was dropped for want of memory */
};

/* An empty histogram whose integer step is unit (> 0); allocates nothing yet. */
void sb_hist_init(struct sb_hist *h, double unit);
void sb_hist_release(struct sb_hist *h);

/* Counts v; NaN and negative values are ignored (callers drop NaNs as they do for sb_stats). */
void sb_hist_add(struct sb_hist *h, double v);

/* Adds src's counts into dst (same unit); src is left unchanged. Returns 0, -1 when out of memory.
 */
int sb_hist_merge(struct sb_hist *dst, const struct sb_hist *src);

/* The p-th percentile (0 <= p <= 100) as np.percentile's "linear" method places it between the two
   closest ranks, each rank read at its bucket's middle clamped to [min, max]. NAN when empty. */
double sb_hist_percentile(const struct sb_hist *h, double p);

/* n, mean, min, max and the percentiles of struct sb_summary (all NAN when empty). */
void sb_hist_summarize(const struct sb_hist *h, struct sb_summary *out);

#endif
