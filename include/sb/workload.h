/*
 * Workloads: where prompts come from. A workload is a const ops table (habit 3); `fixed_context`
 * sends one prompt file to every user, with an optional per-user or per-request nonce tag.
 */
#ifndef SB_WORKLOAD_H
#define SB_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/record.h"
#include "sb/run.h"
#include "sb/tokenizer.h"

struct sb_sessions;
struct cJSON;
struct sb_record;

struct sb_workload {
    const struct sb_workload_ops *ops;
    struct sb_sessions *sess; /* sessioned_chat's shared state (owned; NULL otherwise) */
    const struct sb_run_config *cfg;
    char *prompt; /* the base prompt bytes (owned) */
    size_t prompt_len;
    char *source;         /* the file it came from (owned) */
    long long est_tokens; /* estimated tokens of the base prompt (bytes / 4) */
    bool truncated;       /* cut to --max-input-len - --input-len-margin */

    /* Exact counts, with a tokenizer (sb_workload_open()'s tok; NULL: none, counts -1). */
    struct sb_tokenizer *tok; /* borrowed; used under tc's lock by every loop thread */
    struct sb_tokcount *tc;   /* owned: the lock and the nonce-edge state (workload.c) */
    long long exact_tokens;   /* tokens of the base prompt, BOS included (-1: no tokenizer) */
    long long trunc_from;     /* tokens of the prompt text before its tail was kept (-1: not cut) */
    long long trunc_to;       /* tokens of the kept text (no BOS) */
    void *priv;               /* the workload's own state (owned; freed by ops->release) */
};

/* The prompt of one request, built into caller-owned storage. */
struct sb_prompt {
    struct sb_buf text;
    char nonce[40]; /* "" when no nonce */
    bool messages;  /* text is a chat "messages" JSON array (sessioned_chat), not prompt text */
    char hash[20];  /* 16 hex digits of a hash of the exact bytes */
    long long max_tokens; /* this request's max_tokens; -1: --max-tokens */
    struct sb_buf extra;  /* this request's extra fields (a JSON object); empty: --extra-body */
};

/*
 * What a stateful workload (sessioned_chat) sent in one request: which session and turn, and the
 * client's oracle of what a prefix cache could hold (copied into the record, sb/sessions.h).
 */
struct sb_turn {
    long long slot; /* session slot; -1: none */
    long long session, turn;
    long long history_tokens, new_tokens, reusable_tokens, reuse_distance_tokens;
    long long prompt_tokens; /* exact with a tokenizer (chat template not included), else -1 */
    long long est_tokens;    /* the prompt's tokens, exact or estimated */
    double idle_ms;          /* NAN on a first turn */
    bool parked, prime;
    bool want_reply;       /* --history server: the engine collects the streamed reply text */
    size_t reply_last_len; /* bytes of the reply's last streamed chunk (0: not streamed) */
};

struct sb_workload_ops {
    const char *name;
    int (*init)(struct sb_workload *w, struct sb_err *err);
    /* Builds the prompt of request `req_idx` of user `user` into p. */
    int (*prompt)(const struct sb_workload *w, long long user, long long req_idx,
                  struct sb_prompt *p, struct sb_err *err);
    /* True when every request of a user has the same prompt (bodies can be built once). */
    int (*per_user_constant)(const struct sb_workload *w);

    /* Stateful workloads only (NULL otherwise). Thread-safe: sessions are shared by the loops. */
    /* Picks the next turn at now_ns and builds its messages into p (p->messages set): 0; 1 when
       no session is ready (*ready_ns: when to ask again); 3 in the --prime stage when every
       first turn is handed out (the asking user's part of the prime is over); -1 with err. */
    int (*next)(const struct sb_workload *w, uint64_t now_ns, struct sb_prompt *p,
                struct sb_turn *t, uint64_t *ready_ns, struct sb_err *err);
    /* The turn's outcome (rec NULL: never sent) and, when t->want_reply, the reply text. */
    void (*done)(const struct sb_workload *w, const struct sb_turn *t, const struct sb_record *rec,
                 const char *reply, size_t reply_len, uint64_t now_ns);
    /* The measured run begins (after the --prime stage, if any): its window starts at
       measure_start_ns (run.json's measure_start_ts, after ramp-up and warm-up). */
    void (*measure_begins)(const struct sb_workload *w, uint64_t measure_start_ns);
    /* Adds the workload's own object(s) to run.json. */
    void (*state_json)(const struct sb_workload *w, struct cJSON *run);
    /* Optional. A schedule of the workload's own (trace replay): arrival k is due this many ns
       after the run's start, UINT64_MAX when there is no arrival k. The run is then open loop
       with these arrivals instead of --rate's, and req_idx is the arrival's index. */
    uint64_t (*arrival_ns)(const struct sb_workload *w, long long k);
    /* Optional. Fills the workload's fields of request req_idx's record (after its prompt was
       built and counted). */
    void (*annotate)(const struct sb_workload *w, long long req_idx, struct sb_record *rec);
    /* Optional. Frees priv. */
    void (*release)(struct sb_workload *w);
};

extern const struct sb_workload_ops sb_workload_fixed_context;
extern const struct sb_workload_ops sb_workload_sessioned_chat; /* src/run/sessions.c */
extern const struct sb_workload_ops sb_workload_trace;          /* workload_trace.c */

struct sb_trace;
/* The trace a `trace` workload replays (NULL for any other workload), the requests the run may
   send (*n_replay: the file cut by --requests and --duration-s) and the gaps --trace-max-gap-s
   capped. Either out pointer may be NULL. */
const struct sb_trace *sb_workload_trace_of(const struct sb_workload *w, size_t *n_replay,
                                            size_t *capped);

/*
 * Finds the workload named in cfg->workload and initialises it. Errors name the workload/file.
 * tok (borrowed, may be NULL) gives exact counts and a --max-input-len cut in tokens: the prompt
 * keeps its last N - M tokens (w->trunc_from / trunc_to say what was cut); without it, 4 bytes a
 * token.
 */
int sb_workload_open(struct sb_workload *w, const struct sb_run_config *cfg,
                     struct sb_tokenizer *tok, struct sb_err *err);

/*
 * The exact token count of a built prompt (BOS per the post-processor), into *out; -1 without a
 * tokenizer. Thread-safe. The shared prompt is counted at open; a nonce costs the tokens of the
 * prompt's edge only (checked against a full count on the first prompts).
 */
int sb_workload_count(const struct sb_workload *w, const struct sb_prompt *p, long long *out,
                      struct sb_err *err);
void sb_workload_release(struct sb_workload *w);

void sb_prompt_init(struct sb_prompt *p);
void sb_prompt_release(struct sb_prompt *p);

#endif
