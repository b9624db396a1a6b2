/*
 * The OpenAI-compatible wire format as the load generator speaks it: request bodies for
 * /v1/completions and /v1/chat/completions, and the decoding of streamed chunks, whole
 * non-streaming responses and HTTP error bodies from vLLM, TensorRT-LLM, Dynamo, llama.cpp and the
 * sparkbench mock (docs: shared/reference/server-facts.md).
 *
 * Nothing here does I/O or keeps state between calls; every function may run in several threads
 * at once. Decoding normally goes through a single-pass scanner that allocates nothing; input the
 * scanner declines (invalid JSON, rare constructs) is decoded by cJSON instead, which writes
 * cJSON's process-wide error pointer on every parse (cJSON 1.7.15) — harmless, but visible to a
 * thread sanitizer.
 */
#ifndef SB_OPENAI_H
#define SB_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

enum sb_api {
    SB_API_COMPLETIONS, /* POST /v1/completions, body "prompt" */
    SB_API_CHAT,        /* POST /v1/chat/completions, body "messages" */
};

/*
 * Picks the API from a URL (or bare path) whose path ends in /v1/completions or
 * /v1/chat/completions; the query and fragment are ignored, a trailing slash is not (servers
 * answer it with a redirect). Returns 0 and sets *api, or -1 when the path names neither or url
 * is NULL.
 */
int sb_openai_api_from_url(const char *url, enum sb_api *api);

/* What goes into one request body. All pointers are borrowed for the duration of the call. */
struct sb_request_params {
    enum sb_api api;
    const char *model;    /* NULL: "model" omitted */
    const char *prompt;   /* raw bytes, escaped on output; should be valid UTF-8 (servers reject */
    size_t prompt_len;    /* invalid UTF-8 with 400); NULL only with prompt_len 0 */
    long long max_tokens; /* < 0: omitted */
    double temperature;   /* NAN: omitted; must be finite otherwise */
    double top_p;         /* NAN: omitted; must be finite otherwise */
    bool stream;          /* always written, true or false */
    /* Adds "stream_options": {"include_usage": true, "continuous_usage_stats": false}, only when
     * stream is set (TensorRT-LLM rejects stream_options without stream and may default
     * continuous_usage_stats to true). */
    bool include_usage;
    /*
     * NULL, empty/whitespace, or the text of a JSON object whose members are appended at the top
     * level as they are written, byte for byte (extra_body: ignore_eos, min_tokens, lora_request,
     * seed...). A member named like a built-in field (model, prompt or messages, max_tokens,
     * temperature, top_p, stream, stream_options, lora_request) replaces it, so the body never
     * holds a key twice; a key repeated inside extra_json is an error.
     */
    const char *extra_json;
    /* Non-NULL: adds TensorRT-LLM's "lora_request": {"lora_name": lora_name, "lora_int_id":
     * lora_id, "lora_path": lora_path ("" when NULL)}; an extra_json "lora_request" replaces it. */
    const char *lora_name;
    long long lora_id;
    const char *lora_path;
    /* Chat only: a whole "messages" JSON array written as it is (sessioned_chat's history);
       NULL: one user message holding prompt. */
    const char *messages_json;
    size_t messages_len;
};

/*
 * Appends the request body to out: {"model", "prompt" (completions) or "messages":
 * [{"role":"user","content": prompt}] (chat), "max_tokens", "temperature", "top_p", "stream",
 * "stream_options", "lora_request", extra members}, each optional field as described above, numbers
 * written so that they parse back to the same double. Without extra_json no JSON library is
 * involved. Returns 0, or -1 with err filled when extra_json is not a JSON object (invalid JSON,
 * another kind of value, a duplicate key, an unpaired surrogate escape, nesting deeper than 64),
 * when a number is not finite, or when out's limit would be exceeded; on failure out is left as it
 * was.
 */
int sb_openai_build_request(const struct sb_request_params *p, struct sb_buf *out,
                            struct sb_err *err);

/* What one decoded chunk (or whole response) says. Strings are copied, truncated at a UTF-8
 * character boundary to fit. */
struct sb_chunk {
    /* An error object: nested {"error":{"message","type","code"}} (OpenAI, vLLM, llama.cpp),
     * {"error":"text"} (older Dynamo), flat {"object":"error","message","type","code"}
     * (TensorRT-LLM), or a bare {"message","type","code"} without "object" and "choices" (Dynamo
     * frontend's ErrorMessage). Fields are "" / -1 when absent. */
    bool is_error;
    char error_msg[256];
    char error_type[64];
    int error_code; /* -1 when absent or not an integer; "code" may be a number or a string */
    /* Chat chunk whose delta carries a role and neither content nor reasoning text (the first
     * chunk of a chat stream: not a token). */
    bool role_only;
    /* Decoded UTF-8 bytes of choices[0].delta.content (chat chunk), choices[0].message.content
     * (chat response) or choices[0].text (completions), the first of those that is a string;
     * 0 when absent, null or empty. */
    size_t content_len;
    /* Decoded bytes of reasoning text in choices[0].delta or .message: "reasoning" (newer
     * vLLM) or "reasoning_content" (older vLLM, DeepSeek convention), the longer of the two.
     * A reasoning model streams these before any content; they are tokens too. */
    size_t reasoning_len;
    char finish_reason[24]; /* choices[0].finish_reason; "" when null/absent */
    bool has_choices;       /* a "choices" array with at least one element */
    bool has_usage;         /* a non-null "usage" object */
    /* usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens:
     * -1 when absent or not a non-negative integer. */
    long long prompt_tokens, completion_tokens, cached_tokens;
    /* The mock's "x_mock": {"recv_ns", "first_token_ns"} stamps (server CLOCK_MONOTONIC); 0 when
     * absent. */
    uint64_t server_recv_ns, server_first_token_ns;
    /* llama.cpp "timings" {prompt_n, prompt_ms, predicted_n, predicted_ms, cache_n} (last chunk
     * of a stream): counts -1 and times NAN when absent. */
    bool has_timings;
    long long timings_prompt_n, timings_cache_n, timings_predicted_n;
    double timings_prompt_ms, timings_predicted_ms;
    /* The top-level "id" string ("" when absent): TensorRT-LLM's streams say "chatcmpl-<N>" /
     * "cmpl-<N>" with N its executor request id, the key of its GET /perf_metrics entries. */
    char response_id[64];
    /* Dynamo's "nvext":{"timing":{...}} (lib/llm/src/protocols/openai/nvext.rs TimingInfo, on
     * the chunk with the finish_reason when the request asked "nvext":{"extra_fields":
     * ["timing"]}): prefill_wait_time_ms, prefill_time_ms, ttft_ms, total_time_ms; NAN when
     * absent. */
    bool has_nvext_timing;
    double nv_prefill_wait_ms, nv_prefill_ms, nv_ttft_ms, nv_total_ms;
};

/* Sets every field to "absent": false, 0, "", -1 for counts and codes, NAN for times. */
void sb_chunk_init(struct sb_chunk *c);

/*
 * Decodes one SSE data payload (the caller handles "[DONE]" before calling). Whitespace around
 * the object is accepted (TensorRT-LLM writes "data: {..} "). Returns 0, or -1 when the payload
 * is not a JSON object, with err saying why and quoting at most its first 80 bytes. out is
 * always initialised first. Duplicate keys: the first one counts (as in cJSON).
 */
int sb_openai_decode_chunk(const char *data, size_t len, struct sb_chunk *out, struct sb_err *err);

/* Decodes a whole non-streaming response body the same way (messages say "response body"). */
int sb_openai_decode_response(const char *body, size_t len, struct sb_chunk *out,
                              struct sb_err *err);

/*
 * Writes a one-line description of an HTTP error body into msg (always NUL-terminated when
 * cap > 0, control characters turned into spaces):
 *   an error object (any shape above) -> "message (type, code N)", parts present only;
 *   FastAPI {"detail": "text" | [{"msg": "text"}, ...]} -> that text;
 *   an empty or all-whitespace body -> "empty body";
 *   anything else (HTML, plain text, other JSON) -> its first 200 bytes with control
 *   characters and whitespace runs folded into single spaces.
 * Never fails.
 */
void sb_openai_error_message(const char *body, size_t len, char *msg, size_t cap);

/*
 * The two decoders behind sb_openai_decode_chunk(), for tests and benchmarks that hold them
 * against each other. Production code calls sb_openai_decode_chunk() (SB_OPENAI_DECODER_AUTO).
 */
enum sb_openai_decoder {
    SB_OPENAI_DECODER_AUTO,  /* the scanner; cJSON for whatever it declines */
    SB_OPENAI_DECODER_SCAN,  /* the scanner alone: returns SB_OPENAI_DECLINED instead of falling
                                back (err then says what it declined and where) */
    SB_OPENAI_DECODER_CJSON, /* cJSON alone */
};
#define SB_OPENAI_DECLINED 1

/* sb_openai_decode_chunk() with a chosen decoder. Returns 0, -1, or SB_OPENAI_DECLINED. */
int sb_openai_decode_chunk_with(enum sb_openai_decoder decoder, const char *data, size_t len,
                                struct sb_chunk *out, struct sb_err *err);

#endif
