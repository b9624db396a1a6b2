/*
 * Percentiles exactly like numpy's default (method "linear": position (n-1)*p/100, linear
 * interpolation between the closest ranks), so numbers match what the Python harness reported on
 * the same data. Callers drop NaNs before calling.
 */
#ifndef SB_STATS_H
#define SB_STATS_H

#include <stddef.h>

/* Sorts ascending (radix sort on the IEEE-754 bits: O(n), no NaNs please). */
void sb_stats_sort(double *v, size_t n);

/* The p-th percentile (0..100) of sorted v; NAN when n == 0. */
double sb_stats_percentile_sorted(const double *sorted, size_t n, double p);

struct sb_summary {
    size_t n;
    double mean, min, max, p50, p90, p95, p99, p999;
};

/* Sorts v in place and fills out (NAN fields when n == 0). */
void sb_stats_summarize(double *v, size_t n, struct sb_summary *out);

#endif
