/*
 * `sparkbench run`: the resolved options of a run (one option table for flags and YAML) and the
 * entry point of the load generator engine.
 */
#ifndef SB_RUN_H
#define SB_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"
#include "sb/opt.h"

enum sb_arrival_kind {
    SB_ARRIVAL_POISSON,
    SB_ARRIVAL_CONSTANT,
    SB_ARRIVAL_GAMMA,
};

enum sb_api_choice {
    SB_API_AUTO, /* from the URL path, completions when the path names no API */
    SB_API_CHOICE_COMPLETIONS,
    SB_API_CHOICE_CHAT,
};

enum sb_nonce_position {
    SB_NONCE_START,
    SB_NONCE_END,
};

enum sb_history {
    SB_HISTORY_SERVER,
    SB_HISTORY_SYNTHETIC,
};

enum sb_ctx_policy {
    SB_CTX_END,
    SB_CTX_SLIDE,
};

enum sb_trace_output {
    SB_TRACE_OUTPUT_ON,
    SB_TRACE_OUTPUT_OFF,
};

struct sb_run_config {
    char *config;
    /* run: */
    char *run_id;
    char *stack;
    char *model;
    char *served_model;
    char *workload;
    /* --workload trace (sb/trace.h) */
    char *trace;
    double trace_speed;
    double trace_max_gap_s;
    long long trace_block_tokens;
    int trace_force_output; /* SB_TRACE_OUTPUT_ON: ignore_eos + min_tokens = output_length */
    long long context_tokens;
    long long concurrency;
    double duration_s;
    long long requests;
    double warmup_s;
    double ramp_up_s;
    long long seed;
    double think_ms;     /* from think_ms_spec when it is a number (sb_sessions_check_config) */
    char *think_ms_spec; /* --think-ms as given: a number or a distribution */
    double rate;
    /* sessioned_chat (sb/sessions.h) */
    long long sessions;
    char *session_order;
    long long system_tokens;
    long long session_context_tokens;
    long long turn_tokens;
    char *turns;
    int history; /* SB_HISTORY_* */
    long long max_context;
    int context_policy; /* SB_CTX_* */
    double idle_prob;
    char *idle_s;
    double idle_cap_s;
    bool prime;
    char *salt;
    double kv_bytes_per_token;
    int arrival;
    double burstiness;
    long long max_inflight;
    long long threads;
    long long max_tokens;
    double temperature;
    double top_p;
    bool stream;
    int api;
    char *prompt_file;
    char *prompts_dir;
    bool nonce_per_user;
    bool nonce_per_request;
    int nonce_position;
    char *output_dir;
    char *results_dir;
    bool new_connection;
    bool reset_cache;
    char *reset_cache_cmd;
    bool server_state;
    bool server_perf_metrics; /* GET /perf_metrics after the run, joined to the records */
    double timeout_s;
    double connect_timeout_s;
    double max_error_rate;
    uint64_t max_response_bytes;
    double drain_s;
    long long max_input_len;
    long long input_len_margin;
    char *tokenizer;
    char *hypothesis;
    char *phase;
    char *fio_profile; /* H4 label: the fio neighbour beside the run */
    long long repetition;
    long long repetitions;
    bool quiet;
    bool verbose;
    /* server: */
    char *endpoint;
    char *api_key_env;
    bool insecure; /* https: skip certificate checks (sb/tls.h); run.json tls_insecure */
    char *extra_body;
    /* dynamo: (recorded for sysmon/analyze) */
    uint64_t kv_block_size_bytes;
    char *eviction_policy;
    uint64_t tier0_capacity_bytes;
    uint64_t tier1_capacity_bytes;
    char *tier2_path;
    uint64_t tier2_allocate_bytes;
    /* telemetry: */
    long long cadence_ms;
    char *sysmon_proc_root; /* --sysmon reads /proc here (sysmon's --proc-root) */
    bool enable_dynkv;
    bool enable_iostat;
    bool collect_gpu;
    bool collect_nvme;
    bool sysmon;       /* sample host telemetry into the run directory during the run */
    char *prom_urls;   /* Prometheus /metrics to scrape (KVBM, Dynamo frontend, vLLM) */
    char *trtllm_url;  /* TensorRT-LLM's JSON /metrics, drained into trtllm.jsonl */
    char *server_pids; /* --pid-of names of the server's processes, for I/O attribution */
    /* model / endpoint / runtime facts from the Python harness's config files */
    char *model_precision;
    long long model_max_num_tokens;
    char *endpoint_protocol;
    bool kv_sharing_enabled;
    char *kv_cache_tiers;
    char *notes;
    /* LoRA suite (H1): the adapter list, how each request picks one, how it is named */
    char *lora_list;
    char *lora_select;
    int lora_mode; /* enum sb_lora_mode (sb/lora_select.h) */
};

extern const struct sb_opt sb_run_options[];
extern const size_t sb_run_noptions;

#endif
