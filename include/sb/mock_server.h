/*
 * `sparkbench mock`: a simulated OpenAI-compatible LLM server on libevent's evhttp, driven by the
 * engine model of sb/mock_model.h. One event loop serves every connection.
 */
#ifndef SB_MOCK_SERVER_H
#define SB_MOCK_SERVER_H

#include <stddef.h>
#include <stdio.h>

#include "sb/err.h"
#include "sb/opt.h"

/* Every knob of the mock; filled through sb_mock_options (flags and YAML profile). */
struct sb_mock_config {
    char *profile;
    char *description;
    char *host;
    long long port;
    long long startup_ms;
    char *served_model_names; /* comma list; the first is the default */
    int mode;                 /* enum sb_mock_mode */
    long long seed;
    double prefill_base_ms;
    double prefill_per_token_us;
    double decode_base_ms;
    double decode_per_seq_us;
    long long max_num_seqs;
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
