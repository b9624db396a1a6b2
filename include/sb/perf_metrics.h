/*
 * TensorRT-LLM's per-request timings, joined to sparkbench's records after a run.
 *
 * trtllm-serve started with `return_perf_metrics: true` and `perf_metrics_max_requests: N` in its
 * --extra_llm_api_options keeps the last N finished requests and hands them out, and forgets them,
 * on GET /perf_metrics (NVIDIA/TensorRT-LLM tensorrt_llm/serve/openai_server.py get_perf_metrics,
 * _extract_metrics; shape in tensorrt_llm/serve/_perf_metrics_schema.py): a JSON list of
 * {"request_id": <executor id>, "perf_metrics": {"first_iter", "last_iter", "timing_metrics":
 * {"arrival_time", "first_scheduled_time", "first_token_time", "last_token_time" (steady-clock
 * seconds), ...}, "kv_cache_metrics": {...}}}. Its streamed chunks carry that executor id in their
 * "id": "chatcmpl-<id>" / "cmpl-<id>" (postprocess_handlers.py _ensure_stream_metadata), the
 * join key. Non-streaming responses (and streams of releases before that function) have a random
 * uuid id and match nothing.
 */
#ifndef SB_PERF_METRICS_H
#define SB_PERF_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/record.h"

/* One /perf_metrics entry: its request id as text, and the times derived from it (ms, NAN when
   the entry lacks a time point or the difference is negative). */
struct sb_perf_entry {
    char id[32];
    double queue_ms;  /* first_scheduled_time - arrival_time */
    double prompt_ms; /* first_token_time - first_scheduled_time (- arrival_time without it) */
    double decode_ms; /* last_token_time - first_token_time */
};

/* Entries sorted by id. */
struct sb_perf_table {
    struct sb_perf_entry *e;
    size_t n;
};

/*
 * Parses a GET /perf_metrics body into t (freshly allocated; release with sb_perf_table_release).
 * Entries without a request_id or timing_metrics (a disaggregated server's combined records) are
 * skipped. Returns 0, or -1 with err when the body is not a JSON list or memory runs out.
 */
int sb_perf_metrics_parse(const char *body, size_t len, struct sb_perf_table *t,
                          struct sb_err *err);
void sb_perf_table_release(struct sb_perf_table *t);

/* The executor request id a response id names ("chatcmpl-17" / "cmpl-17" -> "17"), or NULL. */
const char *sb_perf_id_of_response(const char *response_id);

/* Fills r's server_queue_ms/server_prompt_ms/server_decode_ms and server_timings_src
   "trtllm_perf_metrics" from the entry its response_id names; false when none does. */
bool sb_perf_apply(const struct sb_perf_table *t, struct sb_record *r);

/* What a join did. */
struct sb_perf_join {
    long long entries; /* in the table */
    long long records; /* lines of metrics.jsonl */
    long long matched; /* records given an entry's timings */
};

/*
 * Rewrites the metrics.jsonl at path with every record sb_perf_apply() matches, through a
 * temporary file renamed over it (the old file stays whole if anything fails). Lines that do not
 * parse are kept as they were. Returns 0 or -1 with err.
 */
int sb_perf_join_file(const char *path, const struct sb_perf_table *t, struct sb_perf_join *j,
                      struct sb_err *err);

/* GET <base_url>/perf_metrics once into out. Returns 0, or -1 with err (no answer, status not
   200). The server forgets what it returned. */
int sb_perf_metrics_fetch(const char *base_url, double timeout_s, struct sb_buf *out,
                          struct sb_err *err);

#endif
