/*
 * The LoRA suite of `sparkbench run` (H1): the adapter list (--lora-list), the choice of an adapter
 * per request (--lora-select) and how the choice goes into the request body (--lora-mode).
 *
 * The choice is a function of the request's global sequence number and the seed alone, never of
 * the thread that sends it, so the sequence of adapters by `seq` is the same for any --threads.
 * Each request also gets its adapter's 1-based use count in that sequence (`adapter_use`: 1 is the
 * first use, the one a server must load cold).
 *
 * Ownership: sb_lora_list_load()/parse() fill a list released with sb_lora_list_release(); a
 * selector borrows its list (which must outlive it) and is freed with sb_lora_selector_free().
 */
#ifndef SB_LORA_SELECT_H
#define SB_LORA_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"
#include "sb/openai.h"

/* The longest adapter name (bytes): it fits a record's `adapter` and a request's `model`. */
#define SB_LORA_NAME_MAX 127

struct sb_lora_adapter {
    char *name;
    long long id; /* the list's id column; -1 when the line has none */
    char *path;   /* the list's path column; NULL when the line has none */
    long line;    /* where it was declared, for messages */
};

struct sb_lora_list {
    char *file; /* the list's path, for messages and run.json */
    struct sb_lora_adapter *a;
    size_t n;
};

/*
 * Parses a list: one adapter a line, `NAME [ID [PATH]]` separated by blanks; a `#` that starts a
 * field begins a comment to the end of the line; blank and comment-only lines are skipped. IDs are
 * integers 0..2^31-1. Errors name the file and line: a duplicate name or id (with the line of the
 * first), a bad id, a name over SB_LORA_NAME_MAX bytes or not valid UTF-8 printable text, a fourth
 * field, an empty list. name is the file name used in messages. 0, or -1 with err (out untouched).
 */
int sb_lora_list_parse(const char *text, size_t len, const char *name, struct sb_lora_list *out,
                       struct sb_err *err);
/* Reads the file at path and parses it as above. */
int sb_lora_list_load(const char *path, struct sb_lora_list *out, struct sb_err *err);
void sb_lora_list_release(struct sb_lora_list *l);

/*
 * How the adapter is named in a request.
 *   model: the adapter's name is the request's "model". vLLM resolves it so
 *     (vllm/entrypoints/openai/serving_engine.py _maybe_get_adapters: request.model ==
 *     lora.lora_name for each --lora-modules adapter); Dynamo registers each loaded LoRA as a
 *     model of /v1/models and routes by that name (docs.nvidia.com/dynamo, user-guides/LoRA
 *     Adapters; vLLM backend); SGLang takes "model": "BASE:ADAPTER" (its examples/runtime/lora.py,
 *     the adapter from --lora-paths NAME=PATH), so its list names are written that way.
 *   trtllm: "model" stays the base; TensorRT-LLM's CompletionRequest / ChatCompletionRequest take
 *     "lora_request": LoRARequest {lora_name: str, lora_int_id: int, lora_path: str}
 *     (tensorrt_llm/serve/openai_protocol.py, tensorrt_llm/executor/request.py, whose
 *     __post_init__ requires lora_path to exist on the server).
 */
enum sb_lora_mode {
    SB_LORA_MODE_MODEL,
    SB_LORA_MODE_TRTLLM,
};

/*
 * Checks that the list carries what the mode needs: trtllm needs an id and a path on every line
 * (the error names the first line without). 0 or -1 with err.
 */
int sb_lora_list_check_mode(const struct sb_lora_list *l, enum sb_lora_mode mode,
                            struct sb_err *err);

enum sb_lora_select_kind {
    SB_LORA_ROUND_ROBIN, /* adapter seq mod n */
    SB_LORA_UNIFORM,     /* each adapter 1/n, independently per request */
    SB_LORA_ZIPF,        /* the adapter of rank k (list order, from 1) with weight 1/k^s */
};

struct sb_lora_policy {
    enum sb_lora_select_kind kind;
    double s; /* zipf's exponent, > 0 */
};

/* Parses "round_robin", "uniform" or "zipf:S" (S > 0, finite). 0 or -1 with err naming it. */
int sb_lora_policy_parse(const char *text, struct sb_lora_policy *out, struct sb_err *err);
/* The policy as parsed text ("zipf:1.2") into buf; returns buf. */
const char *sb_lora_policy_name(const struct sb_lora_policy *p, char *buf, size_t cap);

struct sb_lora_selector; /* opaque */

/* A selector over list l (borrowed) with the policy and seed. 0 or -1 with err (out of memory). */
int sb_lora_selector_new(const struct sb_lora_list *l, const struct sb_lora_policy *p,
                         uint64_t seed, struct sb_lora_selector **out, struct sb_err *err);
void sb_lora_selector_free(struct sb_lora_selector *s);

/* The adapter (index into the list) of request seq: a pure function of the policy, seed and seq. */
size_t sb_lora_pick(const struct sb_lora_selector *s, long long seq);

/*
 * The adapter of request seq (>= 0) and its 1-based use count among requests 0..seq, into *idx
 * and *use. Thread-safe: any thread may ask for any seq in any order, and the answers are those of
 * the sequence, whichever order they come in. Each seq must be taken at most once.
 */
void sb_lora_selector_take(struct sb_lora_selector *s, long long seq, size_t *idx, long long *use);

/* Requests per adapter among those taken so far (every seq below the largest taken), into
 * counts[0..n). */
void sb_lora_selector_counts(struct sb_lora_selector *s, long long *counts);

/*
 * Names adapter idx in a request's parameters by mode: model mode sets rp->model to its name;
 * trtllm mode leaves rp->model (the base) and sets rp->lora_name / lora_id / lora_path.
 */
void sb_lora_apply(const struct sb_lora_list *l, enum sb_lora_mode mode, size_t idx,
                   struct sb_request_params *rp);

#endif
