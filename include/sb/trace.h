/*
 * Request traces in the Mooncake format (kvcache-ai/Mooncake FAST25-release/traces): one JSON
 * object a line with `timestamp` (ms from the trace's start), `input_length` and `output_length`
 * (tokens) and `hash_ids` (one id per block of block_tokens prompt tokens, the last block holding
 * 1..block_tokens of them; equal ids are the same text, so a reusable prefix), optionally
 * `session_id` and `delay` (AIPerf's multi-turn fields). This module loads and checks a trace,
 * works out what an unbounded prefix cache would reuse (the trace's own oracle), turns timestamps
 * into a replay schedule and synthesizes the prompt text of a block.
 *
 * Parsing is strict: every line is checked and the first problem is an error naming
 * file:line:field. Timestamps must not go backwards (line order is send order, and the oracle's
 * "earlier" means earlier in the file). A line without `timestamp` but with `delay` is due `delay`
 * ms after the previous line of its session (or the previous line when it has none): an open-loop
 * reading of AIPerf's "wait delay ms before this turn", which does not wait for the answer.
 */
#ifndef SB_TRACE_H
#define SB_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/tokenizer.h"

#define SB_TRACE_BLOCK_TOKENS 512 /* Mooncake's block */

struct sb_trace_req {
    double ts_ms;              /* arrival, ms from the trace's start */
    long long input_len;       /* prompt tokens */
    long long output_len;      /* tokens to generate */
    size_t first_id, nids;     /* its hash ids: ids[first_id .. first_id + nids) */
    long long session;         /* index of its session_id among the trace's sessions; -1: none */
    long long reusable_tokens; /* oracle: leading tokens an unbounded prefix cache holds */
    long long reuse_distance;  /* oracle: input tokens of the requests sent since the last one
                                  that used the longest reused block; -1 when nothing is reusable */
};

struct sb_trace {
    char *path;               /* owned; "" for a parsed buffer named by the caller */
    char sha256[65];          /* of the file's bytes */
    struct sb_trace_req *req; /* owned, n of them, in file order */
    size_t n;
    uint64_t *ids; /* owned: every request's hash ids back to back */
    size_t nids;
    long long block_tokens;
    long long sessions;          /* distinct session_id values */
    long long input_tokens;      /* sum of input_len */
    long long oracle_hit_tokens; /* sum of reusable_tokens */
};

/*
 * Parses text[0..len) (JSON Lines; blank lines skipped, a last line without '\n' accepted) into t,
 * whose oracle fields are filled (sb_trace_oracle). name is used in errors: "name:LINE: field
 * 'hash_ids': ...". Errors: invalid JSON, a missing or mistyped field, a negative or fractional
 * length, input_length 0, len(hash_ids) != ceil(input_length / block_tokens), a negative or
 * non-integer hash id, a timestamp before the previous line's, an empty trace. Returns 0, or -1
 * with err (t left empty).
 */
int sb_trace_parse(const char *text, size_t len, const char *name, long long block_tokens,
                   struct sb_trace *t, struct sb_err *err);

/* Reads and parses the file at path (sb_trace_parse), with its sha256. */
int sb_trace_load(const char *path, long long block_tokens, struct sb_trace *t, struct sb_err *err);

void sb_trace_release(struct sb_trace *t);

/*
 * The trace's own oracle, over its first n requests (n <= t->n) in file order: a request's
 * reusable tokens are its leading blocks already sent by an earlier request with the same prefix
 * (chained: block j matches only when blocks 0..j match, as servers' prefix caches do; for the
 * Mooncake traces, whose ids are prefix hashes, this is "ids that appeared earlier"), each counted
 * for as many of its tokens as were sent before (a block first sent as a shorter last block is
 * reusable for that length only, and the match ends there). The reuse distance is the sum of
 * input_len of the requests between the last one that used the longest reused block and this one.
 * Fills req[i].reusable_tokens / reuse_distance and t->oracle_hit_tokens / input_tokens (over the
 * n). Returns 0 or -1 (out of memory).
 */
int sb_trace_oracle(struct sb_trace *t, size_t n, struct sb_err *err);

/*
 * The replay schedule: out[k] = nanoseconds after the first request's send at which request k is
 * due, for k < t->n. Gaps between consecutive timestamps are divided by speed (> 0) and then, when
 * max_gap_s > 0, capped at max_gap_s, which moves every later request earlier. Returns the number
 * of gaps that were capped.
 */
size_t sb_trace_schedule(const struct sb_trace *t, double speed, double max_gap_s, uint64_t *out);

/*
 * Block text. Every block is a sequence of words " xyz": 4 bytes each, and each one token under
 * every byte-level BPE tokenizer checked (a space and three lowercase letters pre-tokenize alone
 * and are in the vocabulary), so a block of N tokens is exactly 4N bytes: N tokens with a
 * tokenizer, and N tokens by the 4-bytes-a-token estimate the mock uses without one. A block
 * starts with a space and ends with a letter, so the pre-tokenizer splits between two blocks and
 * they never merge. The words of block `id` come from a generator seeded by (seed, id): equal ids
 * give byte-identical blocks; a cut block is the first `tokens` words of the full one.
 */
struct sb_trace_words {
    char w[128][4]; /* " xyz" */
    unsigned n;     /* words in use (<= 128) */
};

/* The built-in words (no tokenizer). */
void sb_trace_words_default(struct sb_trace_words *w);

/*
 * The built-in words that tok encodes as one token each (tok may be NULL: all of them), then
 * checks the block rule on tok: a block alone, two blocks concatenated and a cut block must have
 * exactly block_tokens, 2 * block_tokens and 7 tokens. *bos gets the tokens the post-processor
 * adds (BOS), 0 without tok. Errors name the tokenizer and what did not hold.
 */
int sb_trace_words_init(struct sb_trace_words *w, struct sb_tokenizer *tok, long long block_tokens,
                        long long *bos, struct sb_err *err);

/* Appends the first `tokens` words of block `id` (seed: the run's --seed). */
int sb_trace_block_text(const struct sb_trace_words *w, uint64_t seed, uint64_t id,
                        long long tokens, struct sb_buf *out);

/*
 * Appends the whole prompt of request i: its blocks, each block_tokens tokens but the last, which
 * holds the rest of input_len.
 */
int sb_trace_prompt_text(const struct sb_trace *t, const struct sb_trace_words *w, uint64_t seed,
                         size_t i, struct sb_buf *out);

#endif
