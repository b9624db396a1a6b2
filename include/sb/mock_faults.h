/*
 * Fault injection for CI replay: which requests fail and how, chosen deterministically from the
 * seed and the request's arrival number, so a replay with the same --seed hits the same requests.
 */
#ifndef SB_MOCK_FAULTS_H
#define SB_MOCK_FAULTS_H

#include <stdint.h>

#include "sb/err.h"

enum sb_fault_kind {
    SB_FAULT_NONE,
    SB_FAULT_429,          /* HTTP 429 with an OpenAI-style error body */
    SB_FAULT_500,          /* HTTP 500 with an OpenAI-style error body */
    SB_FAULT_503,          /* HTTP 503 with an OpenAI-style error body */
    SB_FAULT_CLOSE,        /* connection closed mid-stream */
    SB_FAULT_STALL,        /* stream pauses for stall_ms mid-stream, then goes on */
    SB_FAULT_MALFORMED,    /* one SSE event carries truncated JSON */
    SB_FAULT_SLOW_HEADERS, /* headers held back for slow_headers_ms */
    SB_FAULT_DYNAMO_ERROR, /* Dynamo's mid-stream `event: error` with a comment and no data */
    SB_FAULT_TRTLLM_ERROR, /* TensorRT-LLM's flat {"object":"error",...} body, HTTP 400 */
    SB_FAULT_COUNT,
};

struct sb_fault_plan {
    double rate;               /* probability that a request gets a fault */
    int kinds[SB_FAULT_COUNT]; /* the kinds to choose from, uniformly */
    int nkinds;
    uint64_t seed;
};

struct sb_fault {
    enum sb_fault_kind kind;
    long long at_token; /* mid-stream kinds act after this many content tokens were sent */
};

/* Parses a comma list of kind names ("429,close,stall" or "all"). Errors name the bad kind. */
int sb_fault_plan_init(struct sb_fault_plan *p, double rate, const char *kinds, uint64_t seed,
                       struct sb_err *err);

/* The fault for request number req_no (0-based arrival order) that will produce max_tokens. */
struct sb_fault sb_fault_pick(const struct sb_fault_plan *p, uint64_t req_no, long long max_tokens);

/* The kind's name as used on the command line ("slow_headers"), "none" for SB_FAULT_NONE. */
const char *sb_fault_name(enum sb_fault_kind k);

#endif
