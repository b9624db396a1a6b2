/*
 * metrics.jsonl records (see sb/record.h): a fast hand-built writer for the hot path and a cJSON
 * reader for analysis, which also understands the Python harness's lines.
 */
#include "sb/record.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sb/util.h"

static const char *const kind_names[SB_ERRK_COUNT] = {
    [SB_ERRK_NONE] = "none",
    [SB_ERRK_CONNECT] = "connect",
    [SB_ERRK_TIMEOUT] = "timeout",
    [SB_ERRK_HTTP] = "http",
    [SB_ERRK_BAD_JSON] = "bad_json",
    [SB_ERRK_BAD_SSE] = "bad_sse",
    [SB_ERRK_STREAM_ERROR] = "stream_error",
    [SB_ERRK_TRUNCATED] = "truncated",
    [SB_ERRK_TOO_LARGE] = "too_large",
    [SB_ERRK_TRANSPORT] = "transport",
    [SB_ERRK_CANCELLED] = "cancelled",
};

const char *sb_error_kind_name(enum sb_error_kind k)
{
    return (k >= 0 && k < SB_ERRK_COUNT) ? kind_names[k] : "unknown";
}

enum sb_error_kind sb_error_kind_from_name(const char *name)
{
    for (int k = 0; k < SB_ERRK_COUNT; k++)
        if (strcmp(kind_names[k], name) == 0)
            return (enum sb_error_kind)k;
    return SB_ERRK_COUNT;
}

void sb_record_init(struct sb_record *r)
{
    memset(r, 0, sizeof(*r));
    r->rate = NAN;
    r->ts = NAN;
    r->lat_ttft_ms = r->lat_ttfb_ms = r->lat_first_chunk_ms = r->lat_e2e_ms =
        r->lat_sched_delay_ms = NAN;
    r->itl_mean_ms = r->itl_p50_ms = r->itl_p99_ms = r->itl_max_ms = r->tpot_ms = NAN;
    r->prompt_tokens = r->cached_tokens = -1;
}

/* ---- writer ---- */

static int add_str(struct sb_buf *b, const char *key, const char *v, bool null_if_empty)
{
    int rc = sb_buf_addf(b, ",\"%s\":", key);
    if (null_if_empty && !v[0])
        return rc | sb_buf_adds(b, "null");
    rc |= sb_buf_add(b, "\"", 1);
    rc |= sb_buf_add_json_escaped(b, v, strlen(v));
    return rc | sb_buf_add(b, "\"", 1);
}

static int add_num(struct sb_buf *b, const char *key, double v)
{
    if (isnan(v) || isinf(v))
        return sb_buf_addf(b, ",\"%s\":null", key);
    return sb_buf_addf(b, ",\"%s\":%.6f", key, v);
}

static int add_ns(struct sb_buf *b, const char *key, uint64_t v)
{
    if (!v)
        return sb_buf_addf(b, ",\"%s\":null", key);
    return sb_buf_addf(b, ",\"%s\":%llu", key, (unsigned long long)v);
}

static int add_count(struct sb_buf *b, const char *key, long long v)
{
    if (v < 0)
        return sb_buf_addf(b, ",\"%s\":null", key);
    return sb_buf_addf(b, ",\"%s\":%lld", key, v);
}

int sb_record_to_json(const struct sb_record *r, struct sb_buf *out)
{
    int rc = sb_buf_adds(out, "{\"run_id\":\"");
    rc |= sb_buf_add_json_escaped(out, r->run_id, strlen(r->run_id));
    rc |= sb_buf_add(out, "\"", 1);
    rc |= isnan(r->ts) ? sb_buf_adds(out, ",\"ts\":null") : sb_buf_addf(out, ",\"ts\":%.6f", r->ts);
    rc |= add_str(out, "stack", r->stack, false);
    rc |= add_str(out, "model", r->model, false);
    rc |= add_str(out, "workload", r->workload, false);
    rc |= add_str(out, "hypothesis", r->hypothesis, true);
    rc |= sb_buf_addf(out, ",\"phase\":\"%s\"", r->warmup ? "warmup" : "measure");
    if (r->phase_label[0])
        rc |= add_str(out, "phase_label", r->phase_label, false);
    rc |= sb_buf_addf(out, ",\"repetition\":%lld,\"context_tokens\":%lld,\"concurrency\":%lld",
                      r->repetition, r->context_tokens, r->concurrency);
    rc |= add_num(out, "rate", r->rate);
    rc |= sb_buf_addf(out, ",\"user\":%lld,\"req_idx\":%lld,\"seq\":%lld", r->user, r->req_idx,
                      r->seq);
    rc |= add_str(out, "request_id", r->request_id, false);
    rc |= add_str(out, "nonce", r->nonce, true);
    rc |= add_str(out, "prompt_hash", r->prompt_hash, false);
    rc |= sb_buf_addf(out, ",\"rc\":%d,\"ok\":%s", r->rc, r->ok ? "true" : "false");
    if (r->error == SB_ERRK_NONE)
        rc |= sb_buf_adds(out, ",\"error\":null");
    else
        rc |= sb_buf_addf(out, ",\"error\":\"%s\"", sb_error_kind_name(r->error));
    rc |= add_str(out, "error_msg", r->error_msg, true);
    rc |= add_ns(out, "t_sched_ns", r->t_sched_ns);
    rc |= add_ns(out, "t_send_ns", r->t_send_ns);
    rc |= add_ns(out, "t_first_byte_ns", r->t_first_byte_ns);
    rc |= add_ns(out, "t_first_event_ns", r->t_first_event_ns);
    rc |= add_ns(out, "t_first_token_ns", r->t_first_token_ns);
    rc |= add_ns(out, "t_last_byte_ns", r->t_last_byte_ns);
    rc |= add_ns(out, "server_recv_ns", r->server_recv_ns);
    rc |= add_ns(out, "server_first_token_ns", r->server_first_token_ns);
    rc |= add_num(out, "lat_ttft_ms", r->lat_ttft_ms);
    rc |= add_num(out, "lat_ttfb_ms", r->lat_ttfb_ms);
    rc |= add_num(out, "lat_first_chunk_ms", r->lat_first_chunk_ms);
    rc |= add_num(out, "lat_e2e_ms", r->lat_e2e_ms);
    rc |= add_num(out, "lat_sched_delay_ms", r->lat_sched_delay_ms);
    rc |= add_num(out, "itl_mean_ms", r->itl_mean_ms);
    rc |= add_num(out, "itl_p50_ms", r->itl_p50_ms);
    rc |= add_num(out, "itl_p99_ms", r->itl_p99_ms);
    rc |= add_num(out, "itl_max_ms", r->itl_max_ms);
    rc |= add_num(out, "tpot_ms", r->tpot_ms);
    rc |= sb_buf_addf(out, ",\"output_tokens\":%lld,\"tokens_src\":\"%s\",\"content_chunks\":%lld",
                      r->output_tokens, r->tokens_from_usage ? "usage" : "counted",
                      r->content_chunks);
    rc |= add_count(out, "prompt_tokens", r->prompt_tokens);
    rc |= add_count(out, "cached_tokens", r->cached_tokens);
    rc |= add_str(out, "finish_reason", r->finish_reason, true);
    rc |= sb_buf_adds(out, "}\n");
    return rc ? -1 : 0;
}

/* ---- reader ---- */

static void get_str(const cJSON *j, const char *k, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (cJSON_IsString(v))
        snprintf(dst, cap, "%s", v->valuestring);
}

static void get_double(const cJSON *j, const char *k, double *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (cJSON_IsNumber(v))
        *dst = v->valuedouble;
}

static void get_ll(const cJSON *j, const char *k, long long *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (cJSON_IsNumber(v))
        *dst = (long long)v->valuedouble;
}

static void get_ns(const cJSON *j, const char *k, uint64_t *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (cJSON_IsNumber(v) && v->valuedouble > 0)
        *dst = (uint64_t)v->valuedouble;
}

/* "2025-11-15T10:21:41.412Z" or "...+00:00" / "-05:30" / no zone (UTC) into unix seconds. */
static int parse_iso(const char *s, double *out)
{
    struct tm tm = {0};
    int consumed = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
        consumed == 0)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    double t = (double)timegm(&tm);
    const char *p = s + consumed;
    if (*p == '.') {
        double scale = 0.1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            t += (*p - '0') * scale;
    }
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1 && sscanf(p + 1, "%2d%2d", &hh, &mm) < 1)
            return -1;
        double off = hh * 3600.0 + mm * 60.0;
        t += *p == '+' ? -off : off;
    }
    *out = t;
    return 0;
}

int sb_record_from_json(const char *line, size_t len, struct sb_record *r, struct sb_err *err)
{
    sb_record_init(r);
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sb_err_set(err, "not a JSON object");
    }
    get_str(j, "run_id", r->run_id, sizeof(r->run_id));
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts");
    if (cJSON_IsNumber(ts))
        r->ts = ts->valuedouble;
    else if (cJSON_IsString(ts) && parse_iso(ts->valuestring, &r->ts) != 0)
        r->ts = NAN;
    get_str(j, "stack", r->stack, sizeof(r->stack));
    get_str(j, "model", r->model, sizeof(r->model));
    get_str(j, "workload", r->workload, sizeof(r->workload));
    get_str(j, "hypothesis", r->hypothesis, sizeof(r->hypothesis));
    const cJSON *phase = cJSON_GetObjectItemCaseSensitive(j, "phase");
    r->warmup = cJSON_IsString(phase) && strcmp(phase->valuestring, "warmup") == 0;
    get_str(j, "phase_label", r->phase_label, sizeof(r->phase_label));
    get_ll(j, "repetition", &r->repetition);
    get_ll(j, "context_tokens", &r->context_tokens);
    get_ll(j, "concurrency", &r->concurrency);
    get_double(j, "rate", &r->rate);
    get_ll(j, "user", &r->user);
    get_ll(j, "req_idx", &r->req_idx);
    get_ll(j, "seq", &r->seq);
    get_str(j, "request_id", r->request_id, sizeof(r->request_id));
    get_str(j, "nonce", r->nonce, sizeof(r->nonce));
    get_str(j, "prompt_hash", r->prompt_hash, sizeof(r->prompt_hash));
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(j, "rc");
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    if (cJSON_IsString(rc)) {
        /* The Python harness: "ok" / "error". */
        r->ok = strcmp(rc->valuestring, "ok") == 0;
        r->rc = r->ok ? 200 : 0;
        if (!r->ok)
            r->error = SB_ERRK_TRANSPORT;
    } else if (cJSON_IsNumber(rc)) {
        r->rc = (int)rc->valuedouble;
        r->ok = cJSON_IsBool(ok) ? cJSON_IsTrue(ok) : (r->rc >= 200 && r->rc < 300);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (cJSON_IsString(e)) {
        enum sb_error_kind k = sb_error_kind_from_name(e->valuestring);
        r->error = k == SB_ERRK_COUNT ? SB_ERRK_TRANSPORT : k;
        if (k == SB_ERRK_COUNT && !r->error_msg[0])
            snprintf(r->error_msg, sizeof(r->error_msg), "%s", e->valuestring);
    } else if (!r->ok && r->error == SB_ERRK_NONE && cJSON_IsNumber(rc)) {
        r->error = r->rc >= 400 ? SB_ERRK_HTTP : SB_ERRK_TRANSPORT;
    }
    get_str(j, "error_msg", r->error_msg, sizeof(r->error_msg));
    get_ns(j, "t_sched_ns", &r->t_sched_ns);
    get_ns(j, "t_send_ns", &r->t_send_ns);
    get_ns(j, "t_first_byte_ns", &r->t_first_byte_ns);
    get_ns(j, "t_first_event_ns", &r->t_first_event_ns);
    get_ns(j, "t_first_token_ns", &r->t_first_token_ns);
    get_ns(j, "t_last_byte_ns", &r->t_last_byte_ns);
    get_ns(j, "server_recv_ns", &r->server_recv_ns);
    get_ns(j, "server_first_token_ns", &r->server_first_token_ns);
    get_double(j, "lat_ttft_ms", &r->lat_ttft_ms);
    get_double(j, "lat_ttfb_ms", &r->lat_ttfb_ms);
    get_double(j, "lat_first_chunk_ms", &r->lat_first_chunk_ms);
    get_double(j, "lat_e2e_ms", &r->lat_e2e_ms);
    get_double(j, "lat_sched_delay_ms", &r->lat_sched_delay_ms);
    get_double(j, "itl_mean_ms", &r->itl_mean_ms);
    get_double(j, "itl_p50_ms", &r->itl_p50_ms);
    get_double(j, "itl_p99_ms", &r->itl_p99_ms);
    get_double(j, "itl_max_ms", &r->itl_max_ms);
    get_double(j, "tpot_ms", &r->tpot_ms);
    get_ll(j, "output_tokens", &r->output_tokens);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "tokens_src");
    r->tokens_from_usage = cJSON_IsString(src) && strcmp(src->valuestring, "usage") == 0;
    get_ll(j, "content_chunks", &r->content_chunks);
    get_ll(j, "prompt_tokens", &r->prompt_tokens);
    get_ll(j, "cached_tokens", &r->cached_tokens);
    get_str(j, "finish_reason", r->finish_reason, sizeof(r->finish_reason));
    cJSON_Delete(j);
    return 0;
}
