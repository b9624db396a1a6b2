/*
 * What `run` learns from its records beyond latencies, gathered per engine loop as requests finish
 * and merged after the join: each request's time in flight (for the open loop's measured mean
 * in-flight count), the ok completions and their output tokens (for the throughput of
 * sb/stats.h's struct sb_tput), and the server's prompt token counts (for the silent-truncation
 * warning).
 *
 * Memory is bounded in a run of any length: the measurement window's end is known only once
 * sending stops, so each finished request is kept as a span until sb_recstats_fold can tell that
 * it lies wholly before that end; then it is added to running sums and dropped. The engine folds
 * as it goes, so only the last few seconds of spans are held (see engine.c's maybe_fold). The
 * prompt counts go to a fixed-size histogram (sb/hist.h).
 */
#ifndef SB_RECSTATS_H
#define SB_RECSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/hist.h"
#include "sb/record.h"
#include "sb/stats.h"

/* One finished request not yet folded. */
struct sb_recstats_span {
    uint64_t send_ns, last_byte_ns; /* busy: [send, last_byte]; last_byte: the completion */
    long long output_tokens;        /* done: the ok request's tokens (< 0: not reported) */
    bool busy;                      /* sent, and a last byte came back */
    bool done;                      /* ok: counts towards throughput by its last byte */
};

struct sb_recstats {
    struct sb_recstats_span *span;
    size_t n_span, cap_span;
    /* Folded so far, against window start fold_w0_ns (0: nothing folded yet). */
    uint64_t fold_w0_ns;
    uint64_t busy_ns;                     /* in-flight time inside [fold_w0, end) */
    long long done_n, done_output_tokens; /* ok completions inside [fold_w0, end) */
    struct sb_hist prompt_tokens;         /* the server's prompt_tokens of measured ok records */
    long long truncated;                  /* measured ok records with server_truncated */
    /* The first request (lowest seq, warmup included) whose record has both the server's
       prompt_tokens and the client's exact count: the server's count less the client's (the chat
       template's overhead on chat). first_seq is its seq + 1; 0: none. */
    long long first_seq, first_diff;
    bool oom; /* a sample was dropped for want of memory */
};

void sb_recstats_init(struct sb_recstats *s);
void sb_recstats_release(struct sb_recstats *s);

/* Takes one finished record into s. */
void sb_recstats_add(struct sb_recstats *s, const struct sb_record *r);

/*
 * Adds the spans whose last byte came before horizon_ns to the running sums, clipped to a window
 * that starts at w0_ns, and drops them. The caller promises that the window's end will be at or
 * after horizon_ns and that w0_ns is the window's final start (the same at every call: a call with
 * another w0_ns folds nothing). Returns how many spans are left.
 */
size_t sb_recstats_fold(struct sb_recstats *s, uint64_t w0_ns, uint64_t horizon_ns);

/* Moves src's spans and sums into dst (src is left empty). */
void sb_recstats_merge(struct sb_recstats *dst, struct sb_recstats *src);

/*
 * The mean number of requests in flight over [w0_ns, w1_ns): the sum of each request's
 * [t_send, t_last_byte] clipped to the window, over the window's length (Little's law on the
 * measured intervals). A request that failed before any byte came back (no t_last_byte) is not
 * counted. NAN when the window is empty, or when w0_ns is not the start s was folded against.
 */
double sb_recstats_inflight_mean(const struct sb_recstats *s, uint64_t w0_ns, uint64_t w1_ns);

/* Counts s's ok completions into t (sb_tput_add on each, the folded ones as sums: t's window must
   start at the folded w0, as the engine's does). */
void sb_recstats_tput(const struct sb_recstats *s, struct sb_tput *t);

/* The median of the server's prompt_tokens (exact up to 511 tokens, within 0.1 % above: sb/hist.h);
   NAN when none. */
double sb_recstats_prompt_tokens_median(const struct sb_recstats *s);

#endif
