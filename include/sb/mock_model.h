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
 */
#ifndef SB_MOCK_MODEL_H
#define SB_MOCK_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sb_mock_timing {
    double prefill_base_ms;
    double prefill_per_token_us;
    double decode_base_ms;
    double decode_per_seq_us;
};

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
    bool prefilling;           /* admitted in the current iteration: pays prefill */
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
    struct sb_mock_seq **batch; /* max_seqs slots, first nbatch used */
    size_t nbatch;
    struct sb_mock_seq *wait_head, *wait_tail;
    size_t nwaiting;
    bool in_iteration;
    uint64_t iterations;
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

/* Appends seq to the waiting FIFO, or rejects it when max_queue are already waiting. */
enum sb_mock_submit sb_mock_engine_submit(struct sb_mock_engine *e, struct sb_mock_seq *seq,
                                          uint64_t now_ns);

/* True when there is work: a batch to decode or sequences waiting. */
bool sb_mock_engine_has_work(const struct sb_mock_engine *e);

/* Starts an iteration at now_ns: admits waiting sequences into free slots, returns its duration. */
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

/* Ends the iteration: on_token for each live sequence, drop for cancelled ones; frees slots. */
void sb_mock_engine_end(struct sb_mock_engine *e, uint64_t now_ns, sb_mock_token_fn on_token,
                        sb_mock_drop_fn drop, void *arg);

/*
 * Marks seq cancelled. A waiting sequence leaves the queue at once (returns true: the engine no
 * longer holds it); a running one is dropped at the end of the iteration (returns false).
 */
bool sb_mock_engine_cancel(struct sb_mock_engine *e, struct sb_mock_seq *seq);

#endif
