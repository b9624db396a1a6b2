/*
 * The mock's engine model, free of any I/O so it can be unit-tested: a continuous-batching
 * scheduler with `max_seqs` batch slots and a bounded FIFO waiting queue, advanced one iteration at
 * a time.
 *
 * Each iteration admits waiting sequences into free slots; its duration is the prefill time of
 * every sequence admitted in it (prefill_base_ms + prefill_per_token_us x uncached prompt tokens,
 * done one after another as on one GPU) plus one decode step (decode_base_ms + decode_per_seq_us x
 * sequences in the batch). When it ends, every sequence in the batch has produced one token; newly
 * admitted ones produce their first. The caller owns the clock: sb_mock_engine_begin() returns the
 * duration, the caller waits that long and calls sb_mock_engine_end().
 *
 * With a token budget (sb_mock_engine_set_budget(), vLLM's max_num_batched_tokens, TensorRT-LLM's
 * max_num_tokens) an iteration schedules at most that many tokens: first the running sequences in
 * admission order (one decode token each, or the next chunk of a prompt still being prefilled),
 * then waiting sequences while slots and budget last, the last one admitted taking what is left
 * (chunked prefill). A sequence produces its first token at the end of the iteration that
 * prefilled its last chunk; a prompt chunked over iterations costs the same prefill time in all,
 * spread over them (the base cost with the first chunk). The decode step counts the sequences that
 * produce a token. Budget 0 means no budget: every admitted prompt is prefilled at once.
 *
 * With variation (prefill_sd_frac, decode_sd_frac > 0; llm-d-inference-sim's prefill-time-std-dev
 * and inter-token-latency-std-dev as a fraction of the mean) each sequence's prefill time and each
 * decode step are scaled by a draw from the engine's own generator (sb_mock_draw_scale()), so the
 * same seed and the same arrivals give the same schedule. Fractions of 0 draw nothing.
 */
#ifndef SB_MOCK_MODEL_H
#define SB_MOCK_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/util.h"

struct sb_mock_timing {
    double prefill_base_ms;
    double prefill_per_token_us;
    double decode_base_ms;
    double decode_per_seq_us;
    double prefill_sd_frac; /* sd of a sequence's prefill time / its mean (0: exact) */
    double decode_sd_frac;  /* sd of a decode step / its mean (0: exact) */
};

/* The largest sd fraction llm-d-inference-sim accepts (its config check: "standard deviation
   cannot be more than 30% of" the mean); the option table uses it as the maximum. */
#define SB_MOCK_SD_FRAC_MAX 0.3

/*
 * A factor of mean 1 and standard deviation sd_frac, drawn from r as llm-d-inference-sim draws a
 * latency (RandomNormTruncated: a normal draw clamped to [0.3, 1.7] x the mean). Returns exactly 1
 * and draws nothing when sd_frac <= 0.
 */
double sb_mock_draw_scale(struct sb_rng *r, double sd_frac);

/* Prefill time of one sequence with `uncached_tokens` prompt tokens not served from a cache. */
uint64_t sb_mock_prefill_ns(const struct sb_mock_timing *t, long long uncached_tokens);
/* One decode step with `running` sequences in the batch (0 when the batch is empty). */
uint64_t sb_mock_decode_step_ns(const struct sb_mock_timing *t, size_t running);

enum sb_mock_seq_state {
    SB_SEQ_NEW,
    SB_SEQ_WAITING,
    SB_SEQ_RUNNING,
    SB_SEQ_DONE,
};

/* One request inside the engine; embedded in the caller's request context (owner). */
struct sb_mock_seq {
    enum sb_mock_seq_state state;
    long long uncached_tokens; /* prompt tokens that need prefill */
    long long prefill_left;    /* of which not yet prefilled (set at admission) */
    long long chunk_tokens;    /* prompt tokens prefilled in the current iteration */
    double prefill_scale;      /* this sequence's prefill-time factor (drawn at admission) */
    bool prefilling;           /* has a prefill chunk in the current iteration */
    bool emits;                /* produces a token when the current iteration ends */
    bool cancelled;            /* the client went away; dropped at the next iteration end */
    uint64_t enqueue_ns;       /* when submitted (for queue-time statistics) */
    uint64_t admit_ns;         /* when it got a batch slot */
    struct sb_mock_seq *next;  /* FIFO link while waiting */
    struct sb_mock_seq *prev;
    void *owner;
};

enum sb_mock_submit {
    SB_SUBMIT_QUEUED,   /* waiting for a slot (may be admitted at the next iteration start) */
    SB_SUBMIT_REJECTED, /* the waiting queue is full */
};

struct sb_mock_engine {
    struct sb_mock_timing timing;
    size_t max_seqs;
    size_t max_queue;
    long long max_batched_tokens; /* token budget per iteration; 0: none */
    struct sb_rng rng;            /* variation draws */
    struct sb_mock_seq **batch;   /* max_seqs slots, first nbatch used */
    size_t nbatch;
    struct sb_mock_seq *wait_head, *wait_tail;
    size_t nwaiting;
    bool in_iteration;
    uint64_t iterations;
    long long batched_tokens;  /* tokens scheduled in the current (or last) iteration */
    uint64_t chunked_prefills; /* prompt chunks that left part of their prompt for later */
};

/*
 * Called for each live sequence of the batch when an iteration ends. Returns true when the
 * sequence is finished (its slot is freed and the engine never touches it again, so the callback
 * may free it), false to keep it decoding.
 */
typedef bool (*sb_mock_token_fn)(struct sb_mock_seq *seq, uint64_t now_ns, void *arg);
/* Called for a cancelled sequence when the engine lets go of it (state already SB_SEQ_DONE). */
typedef void (*sb_mock_drop_fn)(struct sb_mock_seq *seq, void *arg);

int sb_mock_engine_init(struct sb_mock_engine *e, const struct sb_mock_timing *t, size_t max_seqs,
                        size_t max_queue);
void sb_mock_engine_release(struct sb_mock_engine *e);

/* Sets the token budget per iteration (0: none, the default). */
void sb_mock_engine_set_budget(struct sb_mock_engine *e, long long max_batched_tokens);

/* Reseeds the variation draws (init seeds with 0). */
void sb_mock_engine_seed(struct sb_mock_engine *e, uint64_t seed);

/* Appends seq to the waiting FIFO, or rejects it when max_queue are already waiting. */
enum sb_mock_submit sb_mock_engine_submit(struct sb_mock_engine *e, struct sb_mock_seq *seq,
                                          uint64_t now_ns);

/* True when there is work: a batch to decode or sequences waiting. */
bool sb_mock_engine_has_work(const struct sb_mock_engine *e);

/* Starts an iteration at now_ns: schedules the running sequences' tokens, admits waiting
   sequences into free slots under the budget, returns its duration. */
uint64_t sb_mock_engine_begin(struct sb_mock_engine *e, uint64_t now_ns);

/*
 * Asked about each sequence at the head of the queue before it is admitted. Returns the extra
 * nanoseconds its admission adds to the iteration (cache onboarding, adapter loading), and may
 * lower seq->uncached_tokens (a cached prefix needs no prefill); or SB_MOCK_ADMIT_WAIT when it does
 * not fit right now (KV blocks pinned by the running batch): it stays at the head of the queue and
 * nothing behind it is admitted in this iteration (FIFO).
 */
#define SB_MOCK_ADMIT_WAIT (-1)
typedef int64_t (*sb_mock_admit_fn)(struct sb_mock_seq *seq, void *arg);

/* sb_mock_engine_begin() with an admission hook (admit may be NULL). */
uint64_t sb_mock_engine_begin_with(struct sb_mock_engine *e, uint64_t now_ns,
                                   sb_mock_admit_fn admit, void *arg);

/* Ends the iteration: on_token for each live sequence that produced a token (a prompt still
   being prefilled, or left out by the budget, stays without one), drop for cancelled ones; frees
   slots. */
void sb_mock_engine_end(struct sb_mock_engine *e, uint64_t now_ns, sb_mock_token_fn on_token,
                        sb_mock_drop_fn drop, void *arg);

/*
 * Marks seq cancelled. A waiting sequence leaves the queue at once (returns true: the engine no
 * longer holds it); a running one is dropped at the end of the iteration (returns false).
 */
bool sb_mock_engine_cancel(struct sb_mock_engine *e, struct sb_mock_seq *seq);

#endif
