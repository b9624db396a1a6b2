/*
 * `sparkbench smoke`: the manual bring-up check, done the way a benchmark will see the server.
 * Probes /health and /v1/models, sends one streamed completion and one streamed chat request,
 * then one completion with a long prompt (--long-prompt-tokens: where a server rejects, cuts or
 * fails a prompt it cannot hold, in the status or inside a 200 stream), probes whether a
 * kept-alive connection survives a streamed response, prints a timing line and the shape of each
 * stream, and warns about what would skew a benchmark. Exit 0 when the endpoint can be
 * benchmarked, 1 otherwise, 2 on bad usage.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sb/buf.h"
#include "sb/cmd.h"
#include "sb/openai.h"
#include "sb/opt.h"
#include "sb/sse.h"
#include "sb/tls.h"
#include "sb/tokenizer.h"
#include "sb/util.h"

struct smoke_config {
    char *endpoint;
    char *model;
    char *api_key_env;
    bool insecure;
    long long max_tokens;
    double timeout_s;
    char *extra_body;
    long long long_prompt_tokens;
    char *tokenizer;
    struct sb_tokenizer *tok; /* loaded from --tokenizer (not an option field) */
};

#define O(f) offsetof(struct smoke_config, f)
static const struct sb_opt smoke_options[] = {
    {.flag = "endpoint",
     .type = SB_OPT_STR,
     .offset = O(endpoint),
     .check = sb_url_check_no_credentials,
     .argname = "URL",
     .help = "server base URL or any of its /v1/... URLs"},
    {.flag = "model",
     .type = SB_OPT_STR,
     .offset = O(model),
     .argname = "NAME",
     .help = "model name to request and to look for in /v1/models"},
    {.flag = "api-key-env",
     .type = SB_OPT_STR,
     .offset = O(api_key_env),
     .def = "OPENAI_API_KEY",
     .argname = "VAR",
     .help = "environment variable with the API key"},
    {.flag = "insecure",
     .type = SB_OPT_BOOL,
     .offset = O(insecure),
     .help = "https: do not verify the server's certificate (verified by default)"},
    {.flag = "max-tokens",
     .type = SB_OPT_INT,
     .offset = O(max_tokens),
     .def = "32",
     .argname = "N",
     .help = "tokens to ask for",
     .min = 2,
     .max = 100000},
    {.flag = "timeout-s",
     .type = SB_OPT_DOUBLE,
     .offset = O(timeout_s),
     .def = "60",
     .argname = "S",
     .help = "per-request timeout",
     .min = 0.1,
     .max = 3600},
    {.flag = "extra-body",
     .type = SB_OPT_JSON,
     .offset = O(extra_body),
     .argname = "JSON",
     .help =
         "extra request fields, as `run --extra-body` sends them (ignore_eos, min_tokens, ...)"},
    {.flag = "long-prompt-tokens",
     .type = SB_OPT_INT,
     .offset = O(long_prompt_tokens),
     .def = "4096",
     .argname = "N",
     .help = "also send a prompt of about N tokens (4 bytes each) to see how the server treats a "
             "long one; 0 skips it",
     .min = 0,
     .max = 10000000},
    {.flag = "tokenizer",
     .type = SB_OPT_STR,
     .offset = O(tokenizer),
     .argname = "T",
     .help = "tokenizer.json, a directory holding one, or a cached HF repo id: compare the "
             "server's usage.prompt_tokens with the exact client count (BOS on completions, the "
             "chat template's overhead on chat; a larger gap means the wrong tokenizer)"},
};
#define NOPTS (sizeof(smoke_options) / sizeof(smoke_options[0]))

/* One probe's observations. */
struct probe {
    struct sb_sse sse;
    struct sb_buf body;
    uint64_t t0, t_first_byte, t_first_event, t_first_token, t_last_chunk, t_end;
    long status;
    bool is_sse, saw_done, role_chunk, usage_chunk, usage_on_content, stream_err, bad_json;
    bool cached_reported, timings_reported;
    bool conn_close; /* the response said Connection: close */
    long long content_chunks, usage_completion, usage_prompt, cached;
    double itl_sum_ms;
    char err[256];
};

static size_t probe_header(char *b, size_t s, size_t n, void *arg)
{
    struct probe *p = arg;
    size_t len = s * n;
    if (!p->t_first_byte)
        p->t_first_byte = sb_mono_ns();
    if (len > 13 && strncasecmp(b, "content-type:", 13) == 0)
        p->is_sse = strstr(b, "text/event-stream") != NULL;
    if (len > 11 && strncasecmp(b, "connection:", 11) == 0 && memmem(b, len, "close", 5))
        p->conn_close = true;
    return len;
}

static int probe_event(const struct sb_sse_event *ev, void *arg)
{
    struct probe *p = arg;
    uint64_t now = sb_mono_ns();
    if (!p->t_first_event)
        p->t_first_event = now;
    if (ev->error) { /* llama.cpp: an `error:` field inside the 200 stream */
        p->stream_err = true;
        sb_openai_error_message(ev->error, ev->error_len, p->err, sizeof(p->err));
        return 0;
    }
    if (ev->type_len == 5 && memcmp(ev->type, "error", 5) == 0) {
        p->stream_err = true;
        snprintf(p->err, sizeof(p->err), "event: error %.*s", (int)ev->comment_len,
                 ev->comment ? ev->comment : "");
        return 0;
    }
    if (!ev->has_data)
        return 0;
    size_t dl = ev->data_len;
    while (dl && ev->data[dl - 1] == ' ')
        dl--;
    if (dl == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        p->saw_done = true;
        return 0;
    }
    struct sb_chunk c;
    struct sb_err e;
    if (sb_openai_decode_chunk(ev->data, dl, &c, &e) != 0) {
        p->bad_json = true;
        snprintf(p->err, sizeof(p->err), "%.200s", e.msg);
        return 0;
    }
    if (c.is_error) {
        p->stream_err = true;
        snprintf(p->err, sizeof(p->err), "%s", c.error_msg);
    }
    if (c.role_only)
        p->role_chunk = true;
    if (c.content_len + c.reasoning_len > 0) { /* reasoning tokens are tokens too */
        if (!p->t_first_token)
            p->t_first_token = now;
        else
            p->itl_sum_ms += (double)(now - p->t_last_chunk) / 1e6;
        p->t_last_chunk = now;
        p->content_chunks++;
    }
    if (c.has_usage) {
        if (c.has_choices)
            p->usage_on_content = true;
        else
            p->usage_chunk = true;
        p->usage_completion = c.completion_tokens;
        p->usage_prompt = c.prompt_tokens;
        if (c.cached_tokens >= 0) {
            p->cached_reported = true;
            p->cached = c.cached_tokens;
        }
    }
    if (c.has_timings)
        p->timings_reported = true;
    return 0;
}

static size_t probe_write(char *b, size_t s, size_t n, void *arg)
{
    struct probe *p = arg;
    size_t len = s * n;
    if (p->is_sse)
        return sb_sse_feed(&p->sse, b, len) == 0 ? len : 0;
    return sb_buf_add(&p->body, b, len) == 0 ? len : 0;
}

/* One request on the easy handle c (its connection kept for the next request on c). */
static CURLcode request_on(CURL *c, const char *url, const char *body, const char *key,
                           double timeout, struct probe *p, double *connect_ms)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    char auth[1100];
    if (key && *key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    sb_tls_apply(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, probe_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, probe_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    p->t0 = sb_mono_ns();
    CURLcode rc = curl_easy_perform(c);
    p->t_end = sb_mono_ns();
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->status);
    curl_off_t conn_us = 0;
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &conn_us);
    if (connect_ms)
        *connect_ms = (double)conn_us / 1000.0;
    curl_slist_free_all(h);
    return rc;
}

static CURLcode do_request(const char *url, const char *body, const char *key, double timeout,
                           struct probe *p, double *connect_ms)
{
    CURL *c = curl_easy_init();
    CURLcode rc = request_on(c, url, body, key, timeout, p, connect_ms);
    curl_easy_cleanup(c);
    return rc;
}

static void probe_init(struct probe *p)
{
    memset(p, 0, sizeof(*p));
    sb_sse_init(&p->sse, 1u << 20, probe_event, p);
    sb_buf_init(&p->body, 16u << 20);
    p->usage_completion = p->usage_prompt = p->cached = -1;
}

static void probe_release(struct probe *p)
{
    sb_sse_release(&p->sse);
    sb_buf_release(&p->body);
}

static double ms(uint64_t a, uint64_t b)
{
    return a && b ? (double)(b - a) / 1e6 : -1;
}

static const char smoke_prompt[] =
    "You are helping test an inference server. Describe, in a few sentences, how a key-value "
    "cache for transformer attention can spill from GPU memory to host memory and then to an "
    "NVMe drive, and why that might change the time to the first token. Keep it short. "
    "Storage, cache tiers, prefill and decode are the words to use.";

/* Tokens a completions prompt may differ by and still be the same tokenizer (a doubled or
   missing BOS, an EOS some servers count). */
#define SAME_TOKENIZER_SLACK 2

/*
 * Prints the server's prompt count against the client's exact one (BOS per the post-processor):
 * on /v1/completions the difference is BOS handling, on chat the template's overhead. A
 * completions gap beyond SAME_TOKENIZER_SLACK, or a chat count below the text's, means another
 * tokenizer than the served model's: one warning with both numbers. Returns the warnings (0, 1).
 */
static int compare_counts(const struct smoke_config *cfg, enum sb_api api, const char *name,
                          const char *prompt, size_t len, long long server)
{
    size_t n = 0;
    struct sb_err err;
    if (sb_tokenizer_count(cfg->tok, prompt, len, true, &n, &err) != 0) {
        printf("  WARNING: cannot count the prompt: %s\n", err.msg);
        return 1;
    }
    long long client = (long long)n, diff = server - client;
    bool chat = api == SB_API_CHAT;
    printf("%-12s prompt tokens: server %lld, client %lld, difference %+lld (%s)\n", "", server,
           client, diff, chat ? "the chat template's overhead" : "BOS handling");
    if (server < client / 2) /* a cut prompt: the truncation warning says it */
        return 0;
    if (chat ? diff < 0 : (diff > SAME_TOKENIZER_SLACK || diff < -SAME_TOKENIZER_SLACK)) {
        printf(
            "  WARNING: %s: the server counts %lld prompt tokens where the tokenizer '%s' counts "
            "%lld: it is not the served model's tokenizer\n",
            name, server, sb_tokenizer_path(cfg->tok), client);
        return 1;
    }
    return 0;
}

/*
 * Streams one request; prints its line; returns the number of problems that block a benchmark.
 * long_tokens > 0: the long-prompt probe (a prompt of about that many tokens), whose problems are
 * warnings: they say which contexts the server can be benchmarked at, not whether it can be.
 */
static int stream_probe(const char *base, enum sb_api api, const struct smoke_config *cfg,
                        const char *key, int *warnings, long long long_tokens)
{
    const char *prompt = smoke_prompt;
    size_t prompt_len = sizeof(smoke_prompt) - 1;
    struct sb_buf long_prompt;
    sb_buf_init(&long_prompt, (size_t)1 << 30);
    if (long_tokens > 0) {
        /* A fresh tag first, so that no prefix cache serves it. */
        sb_buf_addf(&long_prompt, "[smoke %llx] ", (unsigned long long)sb_mono_ns());
        while (long_prompt.len < (size_t)long_tokens * 4)
            sb_buf_add(&long_prompt, smoke_prompt, sizeof(smoke_prompt) - 1);
        prompt = long_prompt.data;
        prompt_len = long_prompt.len;
    }
    char url[4200];
    snprintf(url, sizeof(url), "%s%s", base,
             api == SB_API_CHAT ? "/v1/chat/completions" : "/v1/completions");
    struct sb_request_params rp = {.api = api,
                                   .model = cfg->model,
                                   .prompt = prompt,
                                   .prompt_len = prompt_len,
                                   .max_tokens = cfg->max_tokens,
                                   .temperature = 0,
                                   .top_p = NAN,
                                   .stream = true,
                                   .include_usage = true,
                                   .extra_json = cfg->extra_body};
    struct sb_buf body;
    sb_buf_init(&body, (size_t)1 << 30);
    struct sb_err err;
    if (sb_openai_build_request(&rp, &body, &err) != 0) {
        printf("%-12s FAIL  %s\n", api == SB_API_CHAT ? "chat" : "completions", err.msg);
        sb_buf_release(&body);
        sb_buf_release(&long_prompt);
        return 1;
    }
    struct probe p;
    probe_init(&p);
    double connect_ms = 0;
    CURLcode rc = do_request(url, body.data, key, cfg->timeout_s, &p, &connect_ms);
    const char *name = long_tokens > 0      ? "long prompt"
                       : api == SB_API_CHAT ? "chat"
                                            : "completions";
    int blocking = 0, problems = 0;
    long long est = (long long)prompt_len / 4;
    if (long_tokens > 0)
        printf("%-12s about %lld prompt tokens (%zu bytes)\n", name, est, prompt_len);
    if (rc != CURLE_OK) {
        printf("%-12s FAIL  %s\n", name, curl_easy_strerror(rc));
        blocking++;
    } else if (p.status != 200) {
        char msg[256];
        sb_openai_error_message(p.body.data ? p.body.data : "", p.body.len, msg, sizeof(msg));
        printf("%-12s FAIL  HTTP %ld: %s\n", name, p.status, msg);
        blocking++;
    } else {
        long long chunks = p.content_chunks;
        printf("%-12s HTTP 200  connect %.2f ms  TTFB %.2f ms  first chunk %.2f ms  first token "
               "%.2f ms  ITL %.2f ms  E2E %.2f ms  tokens %lld%s\n",
               name, connect_ms, ms(p.t0, p.t_first_byte), ms(p.t0, p.t_first_event),
               ms(p.t0, p.t_first_token), chunks > 1 ? p.itl_sum_ms / (double)(chunks - 1) : 0,
               ms(p.t0, p.t_end), p.usage_completion >= 0 ? p.usage_completion : chunks,
               p.usage_completion >= 0 ? " (usage)" : " (counted)");
        printf("%-12s stream: %s, %s, %s%s%s\n", "",
               p.is_sse
                   ? (api == SB_API_CHAT ? (p.role_chunk ? "role chunk first" : "no role chunk")
                                         : "text chunks")
                   : "NOT an SSE stream",
               p.usage_chunk ? "usage chunk (choices: [])"
                             : (p.usage_on_content ? "usage on content chunks" : "no usage"),
               p.saw_done ? "[DONE]" : "no [DONE]",
               p.cached_reported ? ", cached_tokens reported" : "",
               p.timings_reported ? ", server timings reported" : "");
        if (!p.is_sse) {
            printf(
                "  WARNING: the server did not stream (Content-Type is not text/event-stream)\n");
            blocking++;
        }
        if (p.stream_err || p.bad_json) {
            printf("  ERROR: %s%s\n", p.stream_err ? "an error inside the 200 stream: " : "",
                   p.err);
            blocking++;
        }
        if (!p.saw_done && p.is_sse) {
            printf("  WARNING: the stream ended without data: [DONE]\n");
            (*warnings)++;
        }
        if (p.usage_completion < 0) {
            printf("  WARNING: no usage reported: output tokens will be counted from chunks, "
                   "which undercounts when a chunk carries several tokens\n");
            (*warnings)++;
        }
        if (p.usage_prompt >= 0 && p.usage_prompt < est / 2) {
            printf("  WARNING: the server reports %lld prompt tokens for a prompt of about %lld: "
                   "it may truncate prompts silently\n",
                   p.usage_prompt, est);
            (*warnings)++;
        }
        if (cfg->tok && p.usage_prompt >= 0)
            *warnings += compare_counts(cfg, api, name, prompt, prompt_len, p.usage_prompt);
        if (chunks == 0) {
            printf("  ERROR: no content tokens arrived\n");
            blocking++;
        }
    }
    problems = blocking;
    if (long_tokens > 0 && problems > 0) {
        /* Not a verdict on the server: the context a benchmark may use. */
        printf("  WARNING: a prompt of about %lld tokens does not get a normal answer: keep "
               "--context-tokens below what this server holds (sparkbench records such requests as "
               "errors, never as successes)\n",
               est);
        *warnings += problems;
        blocking = 0;
    }
    probe_release(&p);
    sb_buf_release(&body);
    sb_buf_release(&long_prompt);
    return blocking;
}

/*
 * Two short streamed requests on one connection, 100 ms apart: does the server keep a connection
 * it did not close explicitly? llama.cpp (cpp-httplib) advertises Keep-Alive but closes after
 * every stream; a load generator that reuses the connection at once then loses a race, and its
 * request dies unsent. A warning, not a blocking problem: `run` sends such a request again on a
 * fresh connection once (retried: true in its record), and --new-connection avoids reuse.
 */
static void reuse_probe(const char *base, const struct smoke_config *cfg, const char *key,
                        int *warnings)
{
    char url[4200];
    snprintf(url, sizeof(url), "%s/v1/completions", base);
    struct sb_request_params rp = {.api = SB_API_COMPLETIONS,
                                   .model = cfg->model,
                                   .prompt = "Say hi.",
                                   .prompt_len = 7,
                                   .max_tokens = 2,
                                   .temperature = 0,
                                   .top_p = NAN,
                                   .stream = true,
                                   .include_usage = true};
    struct sb_buf body;
    sb_buf_init(&body, 1u << 20);
    struct sb_err err;
    sb_openai_build_request(&rp, &body, &err);
    CURL *c = curl_easy_init();
    struct probe p1, p2;
    probe_init(&p1);
    probe_init(&p2);
    CURLcode rc1 = request_on(c, url, body.data, key, cfg->timeout_s, &p1, NULL);
    struct timespec pause = {0, 100000000L};
    nanosleep(&pause, NULL);
    CURLcode rc2 =
        rc1 == CURLE_OK ? request_on(c, url, body.data, key, cfg->timeout_s, &p2, NULL) : rc1;
    long connects = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    if (rc1 != CURLE_OK || rc2 != CURLE_OK) {
        printf("%-12s FAIL  %s\n", "keep-alive", curl_easy_strerror(rc1 != CURLE_OK ? rc1 : rc2));
    } else if (p1.conn_close) {
        printf("%-12s the server says Connection: close (no reuse)\n", "keep-alive");
    } else if (connects == 0) {
        printf("%-12s connection reused for a second stream\n", "keep-alive");
    } else {
        printf("%-12s WARNING: the server closed a kept-alive connection after a stream without "
               "saying Connection: close (llama.cpp does): a request sent on it at once dies "
               "unsent; run sends it again on a fresh connection (retried: true)\n",
               "keep-alive");
        (*warnings)++;
    }
    curl_easy_cleanup(c);
    probe_release(&p1);
    probe_release(&p2);
    sb_buf_release(&body);
}

static void usage(FILE *f)
{
    fputs("usage: sparkbench smoke --endpoint URL [--model M]\n\n"
          "Bring-up check: /health, /v1/models, one streamed completion and one streamed chat\n"
          "request with their timings and stream shape, a completion with a long prompt, a\n"
          "connection-reuse probe, and warnings about anything that would skew a benchmark.\n"
          "Exit 0 when the endpoint can be "
          "benchmarked, 1 otherwise.\n\n"
          "options:\n",
          f);
    sb_opt_print_help(smoke_options, NOPTS, f);
}

int cmd_smoke(int argc, char **argv)
{
    struct smoke_config cfg = {0};
    struct sb_opt_result res;
    int rc = 1;
    if (sb_cmd_parse("smoke", smoke_options, NOPTS, &cfg, argc, argv, usage, &res, &rc) != 0)
        goto out;
    sb_tls_set_insecure(cfg.insecure);
    if (!cfg.endpoint) {
        rc = sb_usage_error("smoke", "missing --endpoint");
        goto out;
    }
    /* The base URL: scheme://host:port, whatever path was given. */
    char base[4096];
    snprintf(base, sizeof(base), "%s", cfg.endpoint);
    char *scheme = strstr(base, "://");
    char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (slash)
        *slash = '\0';
    if (cfg.tokenizer && *cfg.tokenizer) {
        struct sb_err terr;
        if (sb_tokenizer_load(cfg.tokenizer, &cfg.tok, &terr) != 0) {
            fprintf(stderr, "sparkbench smoke: %s\n", terr.msg);
            rc = 2;
            goto out;
        }
    }
    const char *key = cfg.api_key_env ? getenv(cfg.api_key_env) : NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int blocking = 0, warnings = 0;
    char url[4200];
    struct probe p;

    /* The report is the record of a smoke test: it says when the certificate went unchecked. */
    bool https = strncmp(base, "https://", 8) == 0;
    if (https && cfg.insecure)
        printf("%-12s WARN  certificate not verified (--insecure)\n", "tls");
    probe_init(&p);
    snprintf(url, sizeof(url), "%s/health", base);
    CURLcode crc = do_request(url, NULL, key, cfg.timeout_s, &p, NULL);
    if (crc != CURLE_OK) {
        printf("%-12s FAIL  %s%s\n", "health", curl_easy_strerror(crc),
               crc == CURLE_PEER_FAILED_VERIFICATION ? " (--insecure skips the check)" : "");
        blocking++;
    } else {
        printf("%-12s HTTP %ld  %.2f ms\n", "health", p.status, ms(p.t0, p.t_end));
        if (p.status != 200) {
            printf("  ERROR: /health is not 200: the server is not ready\n");
            blocking++;
        }
    }
    probe_release(&p);

    probe_init(&p);
    snprintf(url, sizeof(url), "%s/v1/models", base);
    crc = do_request(url, NULL, key, cfg.timeout_s, &p, NULL);
    cJSON *j = crc == CURLE_OK && p.status == 200
                   ? cJSON_ParseWithLength(p.body.data ? p.body.data : "", p.body.len)
                   : NULL;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsArray(data)) {
        printf("%-12s FAIL  %s\n", "models",
               crc != CURLE_OK ? curl_easy_strerror(crc) : "no model list in the response");
        blocking++;
    } else {
        bool found = false;
        printf("%-12s", "models");
        const cJSON *m;
        cJSON_ArrayForEach(m, data)
        {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
            if (cJSON_IsString(id)) {
                printf(" %s", id->valuestring);
                found |= cfg.model && strcmp(cfg.model, id->valuestring) == 0;
            }
        }
        printf("\n");
        if (cfg.model && !found) {
            /* A warning: llama.cpp answers whatever name is sent; a server that refuses the
               name makes the probes below fail, and they count as blocking there. */
            printf("  WARNING: model '%s' is not among the served names\n", cfg.model);
            warnings++;
        } else if (!cfg.model) {
            const cJSON *first =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id");
            if (cJSON_IsString(first)) {
                cfg.model = strdup(first->valuestring);
                printf("  (using '%s'; pass --model to choose)\n", cfg.model);
            }
        }
    }
    cJSON_Delete(j);
    probe_release(&p);

    blocking += stream_probe(base, SB_API_COMPLETIONS, &cfg, key, &warnings, 0);
    blocking += stream_probe(base, SB_API_CHAT, &cfg, key, &warnings, 0);
    if (cfg.long_prompt_tokens > 0)
        blocking +=
            stream_probe(base, SB_API_COMPLETIONS, &cfg, key, &warnings, cfg.long_prompt_tokens);
    reuse_probe(base, &cfg, key, &warnings);
    printf("%s: %d blocking problem(s), %d warning(s)\n",
           blocking ? "NOT READY for benchmarking" : "ready for benchmarking", blocking, warnings);
    curl_global_cleanup();
    rc = blocking ? 1 : 0;
out:
    sb_tokenizer_free(cfg.tok);
    free(res.positional);
    sb_opt_release(smoke_options, NOPTS, &cfg);
    return rc;
}
