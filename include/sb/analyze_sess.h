/*
 * analyze's view of the KV-reuse workloads (issue 13): runs whose records carry the oracle fields
 * of sessioned_chat (session, turn, reusable_tokens, reuse_distance_tokens) or of trace replay
 * (reusable_tokens, reuse_distance_tokens). Per run it keeps TTFT by turn index and by reuse
 * distance (log-spaced bins), the oracle and realized prefix-hit ratios (overall, per turn, per
 * bin), the live working set from run.json's workload_state over the measured window, and the
 * tier capacities of the run's config in tokens, for the figures and summary_v3.csv columns.
 *
 * Which records count: a measured record (not ramp, warm-up or prime) that succeeded. TTFT
 * percentiles are over those with a TTFT; the hit sums over those with both cached_tokens (the
 * server's usage.prompt_tokens_details.cached_tokens) and reusable_tokens (the client's oracle),
 * the prompt sum over those of them that also have the server's prompt_tokens.
 */
#ifndef SB_ANALYZE_SESS_H
#define SB_ANALYZE_SESS_H

#include <stdbool.h>
#include <stddef.h>

/* One turn index, or one reuse-distance bin [lo, hi) tokens. */
struct sb_sess_group {
    double lo, hi;                        /* a turn: lo = hi = the turn */
    size_t n;                             /* records with a TTFT */
    double ttft_p50, ttft_p99, ttft_mean; /* ms; NAN when n == 0 */
    size_t nhit;                          /* records with cached_tokens and reusable_tokens */
    double cached, reusable;              /* their sums */
    double prompt;               /* sum of prompt_tokens over the nhit records that have one */
    size_t nprompt;              /* how many had one */
    double cached_p, reusable_p; /* cached / reusable sums over those same nprompt records */
};

struct sb_sess {
    bool present;   /* some record has session, turn or reusable_tokens */
    bool sessioned; /* some record has a session (sessioned_chat, or a trace's session_id) */
    size_t records; /* measured successful records with any of the fields */
    size_t prime;   /* records of phase "prime" (left out like warm-up) */
    struct sb_sess_group all; /* every counted record: lo = hi = NAN */
    /* all.cached / all.reusable etc. as ratios; NAN when a denominator is 0 or absent */
    double oracle_hit_ratio;     /* sum reusable / sum prompt: what an unbounded cache serves */
    double realized_hit_ratio;   /* sum cached / sum prompt: what the server served */
    double realized_over_oracle; /* sum cached / sum reusable */
    long long sessions;          /* run.json workload_state.sessions; -1 unknown */
    double kv_bytes_per_token;   /* run.json workload_state.kv_bytes_per_token, else analyze's
                                    --kv-bytes-per-token; NAN when neither */
    double ws_tokens_mean, ws_tokens_max; /* working_set[].tokens over the window; NAN unknown */
    size_t ws_points;                     /* working_set samples used */
    double tier_tokens[3];       /* config tier0/tier1 capacity_bytes, tier2 allocate_bytes, over
                                    kv_bytes_per_token; NAN when unknown */
    struct sb_sess_group *turns; /* owned, ascending turn */
    size_t nturns;
    struct sb_sess_group *dist; /* owned, ascending bins that hold records */
    size_t ndist;
};

struct sb_run;
struct sb_analyze_opts;

/*
 * Fills r->sess from <dir>/metrics.jsonl and <dir>/run.json when the records carry the fields
 * (looked for in the first lines; otherwise r->sess stays empty at once). Needs r's window (t0,
 * t1) and tier bytes loaded. Bad lines are skipped (the metrics reader has warned of them).
 * Returns 0, or -1 when out of memory.
 */
int sb_sess_load(struct sb_run *r, const char *dir, const struct sb_analyze_opts *opts);
/* Frees the arrays; s is left empty. */
void sb_sess_release(struct sb_sess *s);
/* Marks s empty (no fields, every number NAN or -1), as a fresh run has it. */
void sb_sess_init(struct sb_sess *s);

/*
 * The reuse-distance bin of d tokens (d >= 0): [0, 1) for 0, else [2^k, 2^(k+1)) with
 * 2^k <= d. Log-spaced, so the steps where a tier ends (capacities of 10^4..10^7 tokens) stay
 * visible on one axis.
 */
void sb_sess_dist_bin(double d, double *lo, double *hi);

/* The x at which a bin is drawn: sqrt(lo * hi), 0.5 for the zero bin. */
double sb_sess_bin_x(double lo, double hi);

#endif
