/*
 * The server's cache state and reset (sb/server_cache.h): plain libcurl easy requests to the
 * server's own endpoints, one at a time, before and after a run (never during one).
 */
#include "sb/server_cache.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "sb/buf.h"
#include "sb/http.h"
#include "sb/prom.h"

#define PAGE_MAX (16u << 20)

/* ---- state ---- */

static bool from_prom(const char *page, size_t len, struct sb_cache_state *st)
{
    struct sb_prom_snapshot *s = NULL;
    struct sb_err err;
    if (sb_prom_snapshot_parse(&s, page, len, &err) != 0)
        return false;
    static const struct {
        const char *source, *usage, *tokens;
    } known[] = {
        {"llamacpp", "llamacpp:kv_cache_usage_ratio", "llamacpp:kv_cache_tokens"},
        {"vllm", "vllm:kv_cache_usage_perc", NULL},
        {"vllm", "vllm:gpu_cache_usage_perc", NULL},
        {"sglang", "sglang:token_usage", NULL},
    };
    bool found = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !found; i++) {
        double v;
        if (!sb_prom_snapshot_sum(s, known[i].usage, NULL, 0, &v))
            continue;
        found = true;
        snprintf(st->source, sizeof(st->source), "%s", known[i].source);
        snprintf(st->series, sizeof(st->series), "%s", known[i].usage);
        st->usage_ratio = v;
        if (known[i].tokens && sb_prom_snapshot_sum(s, known[i].tokens, NULL, 0, &v))
            st->cached_tokens = v;
    }
    if (!found) {
        const char *tier0[] = {"tier", "0"};
        double used, cap;
        if (sb_prom_snapshot_sum(s, "mock_kv_tier_used_blocks", tier0, 1, &used) &&
            sb_prom_snapshot_sum(s, "mock_kv_tier_capacity_blocks", tier0, 1, &cap)) {
            found = true;
            snprintf(st->source, sizeof(st->source), "mock");
            snprintf(st->series, sizeof(st->series), "mock_kv_tier_used_blocks{tier=\"0\"}");
            st->usage_ratio = cap > 0 ? used / cap : NAN;
        }
    }
    sb_prom_snapshot_free(s);
    return found;
}

/* TensorRT-LLM's JSON /metrics: the newest iteration's kvCacheStats. */
static bool from_trtllm(const char *page, size_t len, struct sb_cache_state *st)
{
    cJSON *j = cJSON_ParseWithLength(page, len);
    bool found = false;
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 0;
    const cJSON *kv =
        n > 0 ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j, n - 1), "kvCacheStats")
              : NULL;
    const cJSON *used = cJSON_GetObjectItemCaseSensitive(kv, "usedNumBlocks");
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(kv, "maxNumBlocks");
    const cJSON *tpb = cJSON_GetObjectItemCaseSensitive(kv, "tokensPerBlock");
    if (cJSON_IsNumber(used) && cJSON_IsNumber(max)) {
        found = true;
        snprintf(st->source, sizeof(st->source), "trtllm");
        snprintf(st->series, sizeof(st->series), "kvCacheStats.usedNumBlocks/maxNumBlocks");
        st->usage_ratio = max->valuedouble > 0 ? used->valuedouble / max->valuedouble : NAN;
        if (cJSON_IsNumber(tpb))
            st->cached_tokens = used->valuedouble * tpb->valuedouble;
    }
    cJSON_Delete(j);
    return found;
}

void sb_server_cache_read(const char *base_url, double timeout_s, struct sb_cache_state *st)
{
    memset(st, 0, sizeof(*st));
    st->usage_ratio = st->cached_tokens = NAN;
    char url[1200];
    snprintf(url, sizeof(url), "%s/metrics", base_url);
    struct sb_buf page;
    sb_buf_init(&page, PAGE_MAX);
    char why[160] = "";
    long status = sb_http_request("GET", url, timeout_s, &page, why, sizeof(why));
    if (status != 200) {
        if (status)
            snprintf(st->error, sizeof(st->error), "GET /metrics: HTTP %ld", status);
        else
            snprintf(st->error, sizeof(st->error), "GET /metrics: %s", why);
    } else {
        const char *p = page.data ? page.data : "";
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            p++;
        st->read = *p == '[' ? from_trtllm(page.data, page.len, st)
                             : from_prom(page.data ? page.data : "", page.len, st);
        if (!st->read)
            snprintf(st->error, sizeof(st->error), "GET /metrics: no known KV cache series");
    }
    sb_buf_release(&page);
}

/* ---- reset ---- */

static void add_detail(struct sb_cache_reset *out, const char *what, long status, const char *why)
{
    size_t n = strlen(out->detail);
    if (n + 1 >= sizeof(out->detail))
        return;
    if (status)
        snprintf(out->detail + n, sizeof(out->detail) - n, "%s%s: %ld", n ? "; " : "", what,
                 status);
    else
        snprintf(out->detail + n, sizeof(out->detail) - n, "%s%s: %s", n ? "; " : "", what, why);
}

/* llama.cpp: every slot that GET /slots lists is erased. 1 done, 0 not this server, -1 failed. */
static int reset_llamacpp(const char *base, double timeout_s, struct sb_cache_reset *out)
{
    char url[1300], why[160] = "";
    snprintf(url, sizeof(url), "%s/slots", base);
    struct sb_buf page;
    sb_buf_init(&page, PAGE_MAX);
    long st = sb_http_request("GET", url, timeout_s, &page, why, sizeof(why));
    add_detail(out, "GET /slots", st, why);
    cJSON *j = st == 200 ? cJSON_ParseWithLength(page.data ? page.data : "", page.len) : NULL;
    sb_buf_release(&page);
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return 0;
    }
    int rc = 1, n = 0;
    const cJSON *slot;
    cJSON_ArrayForEach(slot, j)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(slot, "id");
        if (!cJSON_IsNumber(id))
            continue;
        char what[64];
        snprintf(what, sizeof(what), "POST /slots/%d?action=erase", id->valueint);
        snprintf(url, sizeof(url), "%s/slots/%d?action=erase", base, id->valueint);
        struct sb_buf body;
        sb_buf_init(&body, PAGE_MAX);
        long est = sb_http_request("POST", url, timeout_s, &body, why, sizeof(why));
        sb_buf_release(&body);
        add_detail(out, what, est, why);
        if (est < 200 || est > 299)
            rc = -1;
        n++;
    }
    cJSON_Delete(j);
    return n > 0 ? rc : -1;
}

int sb_server_cache_reset(const char *base_url, const char *cmd, double timeout_s,
                          struct sb_cache_reset *out, struct sb_err *err)
{
    memset(out, 0, sizeof(*out));
    if (cmd && *cmd) {
        snprintf(out->method, sizeof(out->method), "command");
        int status = system(cmd);
        int code = status == -1 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128);
        snprintf(out->detail, sizeof(out->detail), "%s: exit %d", cmd, code);
        out->done = code == 0;
        if (!out->done)
            return sb_err_set(err, "--reset-cache-cmd '%s' failed (exit %d)", cmd, code);
        return 0;
    }
    static const struct {
        const char *method, *path;
    } posts[] = {{"vllm", "/reset_prefix_cache"}, {"sglang", "/flush_cache"}};
    for (size_t i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
        char url[1300], why[160] = "", what[64];
        snprintf(url, sizeof(url), "%s%s", base_url, posts[i].path);
        snprintf(what, sizeof(what), "POST %s", posts[i].path);
        struct sb_buf body;
        sb_buf_init(&body, PAGE_MAX);
        long st = sb_http_request("POST", url, timeout_s, &body, why, sizeof(why));
        sb_buf_release(&body);
        add_detail(out, what, st, why);
        if (st >= 200 && st <= 299) {
            snprintf(out->method, sizeof(out->method), "%s", posts[i].method);
            out->done = true;
            return 0;
        }
        if (st == 0) /* nothing answered at all: no point trying the others */
            break;
    }
    int lr = reset_llamacpp(base_url, timeout_s, out);
    if (lr != 0) {
        snprintf(out->method, sizeof(out->method), "llamacpp");
        out->done = lr > 0;
        if (out->done)
            return 0;
        return sb_err_set(err, "cannot erase the llama.cpp server's slots (%s)", out->detail);
    }
    snprintf(out->method, sizeof(out->method), "none");
    return sb_err_set(err,
                      "cannot reset the server's cache: no known endpoint answered (%s); give "
                      "--reset-cache-cmd for this server",
                      out->detail);
}
