/*
 * What `run` learns from its records beyond latencies, gathered per engine loop as requests finish
 * and merged after the join: each request's time in flight (for the open loop's measured mean
 * in-flight count), and the server's prompt token counts (for the silent-truncation warning).
 */
#ifndef SB_RECSTATS_H
#define SB_RECSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/record.h"

struct sb_recstats {
    uint64_t (*busy)[2]; /* [t_send_ns, t_last_byte_ns] of every sent request with a last byte */
    size_t n_busy, cap_busy;
    double *prompt_tokens; /* the server's prompt_tokens of measured ok records */
    size_t n_prompt, cap_prompt;
    long long truncated; /* measured ok records with server_truncated */
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

/* Moves src's samples into dst (src is left empty). */
void sb_recstats_merge(struct sb_recstats *dst, struct sb_recstats *src);

/*
 * The mean number of requests in flight over [w0_ns, w1_ns): the sum of each request's
 * [t_send, t_last_byte] clipped to the window, over the window's length (Little's law on the
 * measured intervals). A request that failed before any byte came back (no t_last_byte) is not
 * counted. NAN when the window is empty.
 */
double sb_recstats_inflight_mean(const struct sb_recstats *s, uint64_t w0_ns, uint64_t w1_ns);

/* The median of the server's prompt_tokens (reorders the samples); NAN when none. */
double sb_recstats_prompt_tokens_median(struct sb_recstats *s);

#endif
