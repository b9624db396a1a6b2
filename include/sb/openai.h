/*
 * The OpenAI-compatible wire format as the load generator needs it: request bodies for
 * /v1/completions and /v1/chat/completions, and decoding of streamed chunks, whole responses and
 * error bodies in every shape the servers of ../reference/server-facts.md produce (vLLM,
 * TensorRT-LLM's flat errors and null fields, Dynamo, llama.cpp timings, the mock's stamps).
 */
#ifndef SB_OPENAI_H
#define SB_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

enum sb_api {
    SB_API_COMPLETIONS,
    SB_API_CHAT,
};

/* The API a URL's path names (/v1/completions or /v1/chat/completions, query ignored): 0 or -1. */
int sb_openai_api_from_url(const char *url, enum sb_api *api);

struct sb_request_params {
    enum sb_api api;
    const char *model;  /* NULL: the field is omitted */
    const char *prompt; /* raw bytes (any UTF-8) */
    size_t prompt_len;
    long long max_tokens; /* < 0: omitted */
    double temperature;   /* NAN: omitted */
    double top_p;         /* NAN: omitted */
    bool stream;
    bool include_usage;     /* stream_options {include_usage, continuous_usage_stats: false};
                               only with stream (TensorRT-LLM rejects it otherwise) */
    const char *extra_json; /* NULL or a JSON object merged at the top level; a member named like
                               a built-in field replaces it */
};

/* Appends the request body to out. Fails when extra_json is not a JSON object. */
int sb_openai_build_request(const struct sb_request_params *p, struct sb_buf *out,
                            struct sb_err *err);

struct sb_chunk {
    bool is_error; /* {"error": {...}} or TensorRT-LLM's {"object": "error", ...} */
    char error_msg[256];
    char error_type[64];
    int error_code;         /* -1 when absent */
    bool role_only;         /* a chat delta with a role and no content */
    size_t content_len;     /* bytes of delta.content / text / message.content (0: none) */
    char finish_reason[24]; /* "" when null or absent */
    bool has_choices;       /* a non-empty choices array */
    bool has_usage;         /* a non-null usage object */
    long long prompt_tokens, completion_tokens, cached_tokens; /* -1 when absent */
    uint64_t server_recv_ns, server_first_token_ns;            /* the mock's x_mock stamps */
    bool has_timings;                                          /* llama.cpp's timings object */
    long long timings_prompt_n, timings_cache_n, timings_predicted_n;
    double timings_prompt_ms, timings_predicted_ms;
};

void sb_chunk_init(struct sb_chunk *c);

/* One SSE data payload (not "[DONE]"). Returns 0, or -1 when it is not a JSON object. */
int sb_openai_decode_chunk(const char *data, size_t len, struct sb_chunk *out, struct sb_err *err);

/* A whole non-streaming response body. Returns 0, or -1 when it is not a JSON object. */
int sb_openai_decode_response(const char *body, size_t len, struct sb_chunk *out,
                              struct sb_err *err);

/*
 * The message of an HTTP error body, from either error shape; for a body that is not JSON, its
 * first 200 bytes with control characters replaced by spaces. Never fails.
 */
void sb_openai_error_message(const char *body, size_t len, char *msg, size_t cap);

#endif
