/*
 * `sparkbench mock`: a simulated OpenAI-compatible LLM server on libevent's evhttp, driven by the
 * engine model of sb/mock_model.h. One event loop serves every connection.
 */
#ifndef SB_MOCK_SERVER_H
#define SB_MOCK_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sb/err.h"
#include "sb/opt.h"

/* What GET /metrics on the API port answers. */
enum sb_mock_metrics_format {
    SB_MOCK_METRICS_PROMETHEUS, /* Prometheus text (vLLM, Dynamo, KVBM and mock_* series) */
    SB_MOCK_METRICS_TRTLLM,     /* TensorRT-LLM's JSON list of per-iteration stats, drained by
                                   every GET (--metrics-port keeps serving Prometheus text) */
};

/* Real servers' behaviours the mock can copy (--quirks), as bits. */
enum sb_mock_quirk {
    SB_MOCK_QUIRK_LLAMACPP = 1u << 0, /* llama.cpp llama-server as issue 11 met it */
};

/* Parses a comma list of quirk names into *out (bits of enum sb_mock_quirk); NULL or "" is none.
   Returns 0, or -1 with err naming the unknown quirk. */
int sb_mock_quirks_parse(const char *list, unsigned *out, struct sb_err *err);

/* Every knob of the mock; filled through sb_mock_options (flags and YAML profile). */
struct sb_mock_config {
    char *profile;
    char *description;
    char *host;
    long long port;
    long long startup_ms;
    char *quirks;             /* comma list of enum sb_mock_quirk names */
    bool context_shift;       /* llamacpp: truncate over-long prompts instead of refusing */
    char *served_model_names; /* comma list; the first is the default */
    /* tokenizer.json (a path, a directory or a cached HF repo id): usage counts and KV blocks in
       real tokens, chat requests with the Llama 3 chat wrapper's tokens; NULL: bytes / 4 */
    char *tokenizer;
    int mode; /* enum sb_mock_mode */
    long long seed;
    double prefill_base_ms;
    double prefill_per_token_us;
    double decode_base_ms;
    double decode_per_seq_us;
    double prefill_sd_frac; /* llm-d-inference-sim's prefill-time-std-dev / the mean */
    double decode_sd_frac;  /* its inter-token-latency-std-dev / the mean */
    long long max_num_seqs;
    long long max_num_batched_tokens; /* token budget per iteration; 0: none */
    long long max_queue;
    int queue_full_status; /* index into {"429", "503"} */
    long long max_model_len;
    long long default_max_tokens;
    double eos_prob;
    double fault_rate;
    char *fault_kinds;
    long long fault_stall_ms;
    long long fault_slow_headers_ms;
    char *log_path;
    /* KV cache model (tier0_blocks 0: no KV model at all, the fast path) */
    long long kv_block_tokens;
    uint64_t kv_block_bytes;
    long long tier0_blocks, tier1_blocks, tier2_blocks;
    uint64_t tier2_bytes; /* when set, tier2_blocks = tier2_bytes / kv_block_bytes */
    char *tier2_path;
    int tier_policy[3];       /* enum sb_kv_policy */
    int offload;              /* enum sb_kv_offload */
    bool disk_offload_filter; /* KVBM's "second use" filter before disk */
    bool prefix_reuse;
    double tier1_fetch_us;
    double tier2_fetch_us; /* modelled cost per tier-2 block on top of the measured read */
    bool cache_decode;     /* a finished reply's full blocks stay cached (vLLM) */
    bool tier2_direct;
    bool keep_tier2;
    int kv_full_status;     /* index into {"503", "429"}: a request whose KV can never fit */
    long long metrics_port; /* -1: none; 0: a free port, printed as the second stdout line */
    int metrics_format;     /* enum sb_mock_metrics_format */
    /* LoRA */
    char *lora_modules;
    long long max_loras;
    uint64_t lora_bytes;
    double lora_load_ms;
};

extern const struct sb_opt sb_mock_options[];
extern const size_t sb_mock_noptions;

/*
 * Binds, writes the bound port as the first line of `announce` (flushed), and serves until SIGINT
 * or SIGTERM, then stops accepting, ends open streams and returns 0. Returns -1 with err filled
 * when it cannot start.
 */
int sb_mock_serve(const struct sb_mock_config *cfg, FILE *announce, struct sb_err *err);

#endif
