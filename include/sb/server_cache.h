/*
 * The server's own KV / prefix cache, as the server says it: its state read from its metrics
 * page before and after a run (so run.json shows what a run inherited and what it left behind:
 * a llama.cpp server's slots keep their KV between runs, and a 128-token run after a 4096-token
 * one decoded 7x slower until they were erased), and a reset through the server's own endpoint
 * before measuring. Known servers (each from its own source or docs):
 *   vLLM      POST /reset_prefix_cache; vllm:kv_cache_usage_perc (0..1; older
 *             vllm:gpu_cache_usage_perc)
 *   SGLang    POST /flush_cache; sglang:token_usage (0..1)
 *   llama.cpp GET /slots, POST /slots/<id>?action=erase per slot (--slots);
 *             llamacpp:kv_cache_usage_ratio, llamacpp:kv_cache_tokens (--metrics)
 *   TensorRT-LLM: no reset endpoint; its JSON /metrics (a list of iteration stats, drained by
 *             every GET) carries kvCacheStats.usedNumBlocks / maxNumBlocks
 *   sparkbench mock: mock_kv_tier_used_blocks / mock_kv_tier_capacity_blocks{tier="0"}
 * Anything else can be reset by a command (--reset-cache-cmd).
 */
#ifndef SB_SERVER_CACHE_H
#define SB_SERVER_CACHE_H

#include <stdbool.h>

#include "sb/err.h"

struct sb_cache_state {
    bool read;            /* a metrics page was fetched and a known cache series found */
    char source[16];      /* "vllm", "sglang", "llamacpp", "trtllm", "mock" */
    char series[80];      /* the series (or JSON field) the usage came from */
    double usage_ratio;   /* share of the KV cache in use, 0..1; NAN when not exported */
    double cached_tokens; /* tokens held in the cache; NAN when not exported */
    char error[200];      /* why nothing was read (no page, no known series) */
};

/*
 * Reads <base_url>/metrics (base_url "http://host:port", no path) within timeout_s and fills st
 * from the first known server's series. Never fails: st->read says whether anything was found,
 * st->error why not.
 */
void sb_server_cache_read(const char *base_url, double timeout_s, struct sb_cache_state *st);

struct sb_cache_reset {
    bool done;       /* the cache was cleared (an endpoint answered 2xx, or the command exited 0) */
    char method[24]; /* "vllm", "sglang", "llamacpp", "command", "none" */
    char detail[400]; /* what was sent and answered, e.g. "POST /slots/0?action=erase: 200" */
};

/*
 * Clears the server's cache before a run: with cmd (not NULL or ""), runs it through /bin/sh and
 * expects exit 0; otherwise tries, in order, vLLM's, SGLang's and llama.cpp's endpoints on
 * base_url, stopping at the first that answers 2xx (a 404 or 405 means "not this server"; llama.cpp
 * erases every slot GET /slots lists). Returns 0 when done; -1 with err (and out filled with what
 * was tried) when nothing could clear it.
 */
int sb_server_cache_reset(const char *base_url, const char *cmd, double timeout_s,
                          struct sb_cache_reset *out, struct sb_err *err);

#endif
