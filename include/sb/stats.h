/*
 * Sorting and summary statistics for latency samples. Percentiles follow numpy's default
 * (np.percentile, method "linear": position (n-1)*p/100, linear interpolation between the two
 * closest ranks, the same rounding steps), so numbers match what the Python harness reported on
 * the same data. Callers drop NaNs before calling: a NaN has no rank.
 */
#ifndef SB_STATS_H
#define SB_STATS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Sorts v ascending: an LSD radix sort on the IEEE-754 bits (O(n), one n-element scratch
 * allocation; falls back to an in-place heapsort when that allocation fails) and insertion sort
 * for small n. -0.0 sorts before +0.0; NaNs, which callers should have dropped, end up at the
 * ends (by sign bit) rather than causing undefined behaviour.
 */
void sb_stats_sort(double *v, size_t n);

/*
 * The p-th percentile (0 <= p <= 100) of ascending sorted[0..n), exactly as numpy's
 * np.percentile(x, p) computes it. NAN when n == 0 or p is outside [0, 100] or NaN.
 */
double sb_stats_percentile_sorted(const double *sorted, size_t n, double p);

/* Sum of a[0..n) in numpy's order (pairwise: 8 accumulators in blocks of up to 128, halves
   above that), so a mean matches np.mean bit for bit. */
double sb_stats_pairwise_sum(const double *a, size_t n);

struct sb_summary {
    size_t n;
    double mean; /* pairwise summation, as numpy's mean does */
    double min, max, p50, p90, p95, p99, p999;
};

/* Sorts v in place and fills out (all doubles NAN when n == 0). */
void sb_stats_summarize(double *v, size_t n, struct sb_summary *out);

/*
 * Throughput, defined once: the requests that completed successfully inside the measured window
 * [from, to) -- the sending period after ramp-up and warm-up, without the drain after sending
 * stopped -- and their output tokens, divided by the window's length. A request counts by the
 * time its last byte arrived, whenever it was sent. `run` (summary and run.json) and `analyze`
 * both count with these functions, on the same clock (CLOCK_MONOTONIC seconds from the records'
 * t_last_byte_ns when run.json gives the window in that clock), so the two cannot disagree.
 */
struct sb_tput {
    double from_s, to_s;
    long long completed, output_tokens;
};

void sb_tput_init(struct sb_tput *t, double from_s, double to_s);
/* One successful request whose last byte came at done_s; tokens < 0 (not reported) adds none. */
void sb_tput_add(struct sb_tput *t, double done_s, long long output_tokens);
/* to - from; 0 for an empty or inverted window. */
double sb_tput_window_s(const struct sb_tput *t);
/* completed / window and output_tokens / window; NAN when the window is empty. */
double sb_tput_req_s(const struct sb_tput *t);
double sb_tput_tok_s(const struct sb_tput *t);

/*
 * Whether the client fell behind its schedule enough to doubt its numbers: more than 1 % of the
 * requests sent over 1 ms after their intended time, or any of them over 100 ms late. One rule
 * for run's warning, run.json's client_lag.fell_behind and analyze's run_clean gate and flags.
 */
bool sb_client_fell_behind(long long late_sends, long long sent, double max_sched_delay_ms);

#endif
