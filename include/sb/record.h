/*
 * One request's result: the line `sparkbench run` writes to metrics.jsonl and `analyze` reads back.
 * Field names follow the Test Plan's Appendix B (run_id, ts, stack, model, context_tokens,
 * concurrency, lat_ttft_ms, lat_e2e_ms, rc) plus what the load generator measures.
 *
 * Raw clock stamps are CLOCK_MONOTONIC nanoseconds (0 = not reached); the lat_* fields are derived
 * from them, all measured from the intended send time (t_sched_ns). NAN in a double means "not
 * measured" and is written as JSON null; -1 in a count means "not reported".
 */
#ifndef SB_RECORD_H
#define SB_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

/* Why a request failed; SB_ERRK_NONE for a success. Names are what metrics.jsonl says. */
enum sb_error_kind {
    SB_ERRK_NONE,
    SB_ERRK_CONNECT,  /* connection refused / unreachable / DNS */
    SB_ERRK_TIMEOUT,  /* request or connect timeout */
    SB_ERRK_HTTP,     /* HTTP status >= 400 (rc says which; error_msg keeps the server's message) */
    SB_ERRK_BAD_JSON, /* a response or SSE payload that is not the JSON expected */
    SB_ERRK_BAD_SSE,  /* an SSE stream that breaks the protocol (oversized event, wrong type) */
    SB_ERRK_STREAM_ERROR, /* the server reported an error inside a 200 stream */
    SB_ERRK_TRUNCATED,    /* the stream ended before data: [DONE] / the body was cut */
    SB_ERRK_TOO_LARGE,    /* the response exceeded --max-response-bytes */
    SB_ERRK_TRANSPORT,    /* any other transfer failure (reset, TLS, ...) */
    SB_ERRK_CANCELLED,    /* still in flight when the run stopped (drain expired) */
    SB_ERRK_EMPTY_STREAM, /* a 200 stream that ended with no content and no usage */
    SB_ERRK_COUNT,
};

const char *sb_error_kind_name(enum sb_error_kind k);
/* SB_ERRK_COUNT when the name is unknown. */
enum sb_error_kind sb_error_kind_from_name(const char *name);

#define SB_RECORD_STR 64

struct sb_record {
    /* labels, the same on every line of a run */
    char run_id[128];
    char stack[SB_RECORD_STR];
    char model[128];
    char workload[SB_RECORD_STR];
    char hypothesis[SB_RECORD_STR];
    char phase_label[SB_RECORD_STR]; /* --phase, a free label for the sweep step ("" = none) */
    long long repetition;
    long long context_tokens; /* tokens sent: exact with --tokenizer, else the nominal size */
    long long context_tokens_nominal; /* the prompt file's nominal size (--context-tokens) */
    long long concurrency;            /* closed-loop users; -1 (null) in open loop */
    long long max_inflight;           /* open loop: --max-inflight; -1 (null) in closed loop */
    double rate;                      /* open-loop target req/s; NAN in closed loop */

    /* identity */
    double ts;   /* unix seconds of the intended send */
    bool warmup; /* left out of the measurement: "phase": "warmup" (or "ramp") | "measure" */
    bool ramp;   /* sent during --ramp-up-s: "phase": "ramp" (warmup is true as well) */
    long long user;
    long long req_idx;    /* index of this request within its user */
    long long seq;        /* global request number */
    char request_id[160]; /* the X-Request-Id sent */
    char response_id[64]; /* the response's own "id" (first one seen); "" (null) when none */
    char nonce[40];
    char prompt_hash[20]; /* short hash of the exact prompt bytes */

    /* outcome */
    int rc; /* HTTP status; 0 for transport failures */
    bool ok;
    enum sb_error_kind error;
    char error_msg[256]; /* server's or libcurl's message */
    bool retried; /* the first attempt died with a reused connection before any response byte and
                     was sent again on a fresh one (its cost is in the latencies) */

    /* raw stamps (CLOCK_MONOTONIC ns) */
    uint64_t t_sched_ns, t_send_ns, t_first_byte_ns, t_first_event_ns, t_first_token_ns,
        t_last_byte_ns;
    uint64_t server_recv_ns, server_first_token_ns; /* the mock's stamps when present */

    /* derived latencies (ms from t_sched_ns; NAN = not reached) */
    double lat_ttft_ms, lat_ttfb_ms, lat_first_chunk_ms, lat_e2e_ms, lat_sched_delay_ms;
    double itl_mean_ms, itl_p50_ms, itl_p99_ms, itl_max_ms, tpot_ms;

    /* tokens */
    long long output_tokens;
    bool tokens_from_usage; /* "tokens_src": "usage" | "counted" */
    long long content_chunks;
    long long prompt_tokens; /* -1 = not reported */
    /* The client's exact count of the prompt text it sent (nonce and BOS included), with
       --tokenizer; -1 (null) without one. */
    long long prompt_tokens_client;
    long long cached_tokens; /* -1 = not reported */
    /* Where cached_tokens came from: "usage" (usage.prompt_tokens_details.cached_tokens),
       "timings" (llama.cpp: timings.cache_n, else prompt_tokens - timings.prompt_n); "" (null)
       when not known. */
    char cached_src[12];
    char finish_reason[24];

    /* The server's own timings of this request, where its response carries them (llama.cpp's
       "timings" on the last chunk; vLLM and TensorRT-LLM put none in a response): counts -1 and
       times NAN when absent. */
    long long server_prompt_n;    /* tokens the server prefilled (timings.prompt_n) */
    double server_prompt_ms;      /* its prefill time (timings.prompt_ms) */
    long long server_predicted_n; /* tokens it decoded (timings.predicted_n) */
    double server_decode_ms;      /* its decode time (timings.predicted_ms) */
    long long server_cache_n;     /* prompt tokens it took from its cache (timings.cache_n) */
    double server_queue_ms;       /* arrival to first scheduling (TensorRT-LLM, Dynamo) */
    /* Where the server_* times came from: "llamacpp" (timings), "dynamo_nvext" (nvext.timing),
       "trtllm_perf_metrics" (GET /perf_metrics joined after the run); "" (null) when none. */
    char server_timings_src[24];
    /* The server counted far fewer prompt tokens than were sent (sb_prompt_truncated): it cut
       the prompt (llama.cpp's context shift) without saying so. */
    bool server_truncated;

    /* LoRA suite: the adapter named by the request ("" = null: none), and its 1-based use count
       in the run's request sequence at send time (1: its first use, cold); -1 (null) without. */
    char adapter[128];
    long long adapter_use;
    /* sessioned_chat: the client's oracle of what it sent before (sb/sessions.h, README
       "sessioned_chat"); -1 / NAN (null) for other workloads. */
    long long session, turn;
    long long history_tokens, new_tokens, reusable_tokens, reuse_distance_tokens;
    double idle_ms;      /* since the session's previous reply; NAN on a first turn */
    signed char parked;  /* -1 (null), 0 or 1: parked by --idle-prob before this turn */
    bool prime;          /* sent by --prime: "phase": "prime" (warmup is true as well) */
    long long trace_idx; /* trace replay: 0-based line index of the request; -1: null */
};

/*
 * The silent-truncation rule: true when the server's prompt token count (reported >= 0) is below
 * half of what was sent (sent_est > 0: the client's exact count with a tokenizer, else the
 * workload's estimate, bytes / 4). Half leaves room for any tokenizer's disagreement with bytes / 4
 * on ordinary text, and a cut prompt (a context of 4096 holding a 65536-token prompt) is far below.
 */
bool sb_prompt_truncated(long long reported, long long sent_est);

struct sb_chunk;
/* Copies a decoded chunk's server timings into r's server_* fields: llama.cpp "timings"
   (prompt_ms, predicted_ms), Dynamo "nvext.timing" (server_queue_ms = prefill_wait_time_ms,
   server_prompt_ms = prefill_time_ms, else ttft_ms when the frontend saw no prefill start;
   server_decode_ms = total_time_ms - ttft_ms), and the response "id" when r has none yet. */
void sb_record_add_timings(struct sb_record *r, const struct sb_chunk *c);

/*
 * Settles what follows from a finished request's server fields: cached_tokens from the timings
 * when the usage gave none (cached_src says which), and server_truncated against the exact
 * prompt_tokens_client when the record has one, else sent_est (sb_prompt_truncated; <= 0:
 * unknown, never truncated).
 */
void sb_record_derive_server(struct sb_record *r, long long sent_est);

/* Resets r to "nothing measured": zeros, NAN latencies, -1 counts, empty strings. */
void sb_record_init(struct sb_record *r);

/* Appends r as one JSON object and a '\n' to out. Returns 0 or -1 (buffer limit). */
int sb_record_to_json(const struct sb_record *r, struct sb_buf *out);

/*
 * Parses one metrics.jsonl line (ours, or the old Python harness's, whose rc is "ok"/"error")
 * into r. Unknown fields are ignored; a missing field keeps its sb_record_init() value.
 */
int sb_record_from_json(const char *line, size_t len, struct sb_record *r, struct sb_err *err);

#endif
