/* OpenAI-compatible request bodies and response decoding (see sb/openai.h). */
#include "sb/openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sb/util.h"

int sb_openai_api_from_url(const char *url, enum sb_api *api)
{
    size_t len = strcspn(url, "?#");
    while (len > 0 && url[len - 1] == '/')
        len--;
    static const struct {
        const char *suffix;
        enum sb_api api;
    } table[] = {{"/v1/chat/completions", SB_API_CHAT}, {"/v1/completions", SB_API_COMPLETIONS}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(table); i++) {
        size_t sl = strlen(table[i].suffix);
        if (len >= sl && memcmp(url + len - sl, table[i].suffix, sl) == 0) {
            *api = table[i].api;
            return 0;
        }
    }
    return -1;
}

static bool overridden(const cJSON *extra, const char *name)
{
    return extra && cJSON_GetObjectItemCaseSensitive(extra, name) != NULL;
}

int sb_openai_build_request(const struct sb_request_params *p, struct sb_buf *out,
                            struct sb_err *err)
{
    cJSON *extra = NULL;
    if (p->extra_json) {
        extra = cJSON_Parse(p->extra_json);
        if (!cJSON_IsObject(extra)) {
            cJSON_Delete(extra);
            return sb_err_set(err, "extra_body must be a JSON object, got '%.80s'", p->extra_json);
        }
    }
    int rc = 0;
    rc |= sb_buf_add(out, "{", 1);
    bool first = true;
#define SEP() (first ? (first = false, 0) : sb_buf_add(out, ",", 1))
    if (p->model && !overridden(extra, "model")) {
        rc |= SEP();
        rc |= sb_buf_adds(out, "\"model\":\"");
        rc |= sb_buf_add_json_escaped(out, p->model, strlen(p->model));
        rc |= sb_buf_add(out, "\"", 1);
    }
    if (p->api == SB_API_CHAT && !overridden(extra, "messages")) {
        rc |= SEP();
        rc |= sb_buf_adds(out, "\"messages\":[{\"role\":\"user\",\"content\":\"");
        rc |= sb_buf_add_json_escaped(out, p->prompt, p->prompt_len);
        rc |= sb_buf_adds(out, "\"}]");
    } else if (p->api == SB_API_COMPLETIONS && !overridden(extra, "prompt")) {
        rc |= SEP();
        rc |= sb_buf_adds(out, "\"prompt\":\"");
        rc |= sb_buf_add_json_escaped(out, p->prompt, p->prompt_len);
        rc |= sb_buf_add(out, "\"", 1);
    }
    if (p->max_tokens >= 0 && !overridden(extra, "max_tokens")) {
        rc |= SEP();
        rc |= sb_buf_addf(out, "\"max_tokens\":%lld", p->max_tokens);
    }
    if (!isnan(p->temperature) && !overridden(extra, "temperature")) {
        rc |= SEP();
        rc |= sb_buf_addf(out, "\"temperature\":%.17g", p->temperature);
    }
    if (!isnan(p->top_p) && !overridden(extra, "top_p")) {
        rc |= SEP();
        rc |= sb_buf_addf(out, "\"top_p\":%.17g", p->top_p);
    }
    if (!overridden(extra, "stream")) {
        rc |= SEP();
        rc |= sb_buf_adds(out, p->stream ? "\"stream\":true" : "\"stream\":false");
    }
    if (p->stream && p->include_usage && !overridden(extra, "stream_options")) {
        rc |= SEP();
        rc |= sb_buf_adds(out, "\"stream_options\":{\"include_usage\":true,"
                               "\"continuous_usage_stats\":false}");
    }
    if (extra) {
        for (cJSON *it = extra->child; it; it = it->next) {
            char *v = cJSON_PrintUnformatted(it);
            if (!v) {
                rc = -1;
                break;
            }
            rc |= SEP();
            rc |= sb_buf_add(out, "\"", 1);
            rc |= sb_buf_add_json_escaped(out, it->string, strlen(it->string));
            rc |= sb_buf_addf(out, "\":%s", v);
            cJSON_free(v);
        }
        cJSON_Delete(extra);
    }
#undef SEP
    rc |= sb_buf_add(out, "}", 1);
    if (rc)
        return sb_err_set(err, "request body too large");
    return 0;
}

void sb_chunk_init(struct sb_chunk *c)
{
    memset(c, 0, sizeof(*c));
    c->error_code = -1;
    c->prompt_tokens = c->completion_tokens = c->cached_tokens = -1;
    c->timings_prompt_n = c->timings_cache_n = c->timings_predicted_n = -1;
    c->timings_prompt_ms = c->timings_predicted_ms = NAN;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static long long int_of(const cJSON *v)
{
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
}

/* Length of a JSON string's decoded bytes (cJSON has already unescaped it). */
static size_t str_len(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring ? strlen(v->valuestring) : 0;
}

static void copy_str(char *dst, size_t cap, const cJSON *v)
{
    if (cJSON_IsString(v) && v->valuestring)
        snprintf(dst, cap, "%s", v->valuestring);
    else
        dst[0] = '\0';
}

static void read_error(const cJSON *holder, struct sb_chunk *c)
{
    c->is_error = true;
    const cJSON *m = get(holder, "message");
    if (cJSON_IsString(m))
        copy_str(c->error_msg, sizeof(c->error_msg), m);
    else if (cJSON_IsString(holder))
        copy_str(c->error_msg, sizeof(c->error_msg), holder);
    else
        snprintf(c->error_msg, sizeof(c->error_msg), "error without a message");
    copy_str(c->error_type, sizeof(c->error_type), get(holder, "type"));
    const cJSON *code = get(holder, "code");
    if (cJSON_IsNumber(code))
        c->error_code = (int)code->valuedouble;
    else if (cJSON_IsString(code)) {
        long long v;
        if (sb_parse_ll(code->valuestring, &v) == 0)
            c->error_code = (int)v;
    }
}

static int decode(const char *data, size_t len, struct sb_chunk *c, struct sb_err *err, bool whole)
{
    sb_chunk_init(c);
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sb_err_set(err, "not a JSON object: '%.80s'", data);
    }
    const cJSON *e = get(j, "error");
    const cJSON *obj = get(j, "object");
    if (e && !cJSON_IsNull(e))
        read_error(e, c);
    else if (cJSON_IsString(obj) && strcmp(obj->valuestring, "error") == 0)
        read_error(j, c);

    const cJSON *choices = get(j, "choices");
    const cJSON *ch0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    if (ch0) {
        c->has_choices = true;
        const cJSON *delta = get(ch0, "delta");
        const cJSON *message = get(ch0, "message");
        if (cJSON_IsObject(delta)) {
            c->content_len = str_len(get(delta, "content"));
            c->role_only = c->content_len == 0 && cJSON_IsString(get(delta, "role"));
        } else if (whole && cJSON_IsObject(message)) {
            c->content_len = str_len(get(message, "content"));
        }
        if (!c->content_len)
            c->content_len = str_len(get(ch0, "text"));
        copy_str(c->finish_reason, sizeof(c->finish_reason), get(ch0, "finish_reason"));
    }
    const cJSON *u = get(j, "usage");
    if (cJSON_IsObject(u)) {
        c->has_usage = true;
        c->prompt_tokens = int_of(get(u, "prompt_tokens"));
        c->completion_tokens = int_of(get(u, "completion_tokens"));
        c->cached_tokens = int_of(get(get(u, "prompt_tokens_details"), "cached_tokens"));
    }
    const cJSON *x = get(j, "x_mock");
    if (cJSON_IsObject(x)) {
        const cJSON *r = get(x, "recv_ns"), *f = get(x, "first_token_ns");
        c->server_recv_ns = cJSON_IsNumber(r) ? (uint64_t)r->valuedouble : 0;
        c->server_first_token_ns = cJSON_IsNumber(f) ? (uint64_t)f->valuedouble : 0;
    }
    const cJSON *t = get(j, "timings");
    if (cJSON_IsObject(t)) {
        c->has_timings = true;
        c->timings_prompt_n = int_of(get(t, "prompt_n"));
        c->timings_cache_n = int_of(get(t, "cache_n"));
        c->timings_predicted_n = int_of(get(t, "predicted_n"));
        const cJSON *pm = get(t, "prompt_ms"), *dm = get(t, "predicted_ms");
        c->timings_prompt_ms = cJSON_IsNumber(pm) ? pm->valuedouble : NAN;
        c->timings_predicted_ms = cJSON_IsNumber(dm) ? dm->valuedouble : NAN;
    }
    cJSON_Delete(j);
    return 0;
}

int sb_openai_decode_chunk(const char *data, size_t len, struct sb_chunk *out, struct sb_err *err)
{
    return decode(data, len, out, err, false);
}

int sb_openai_decode_response(const char *body, size_t len, struct sb_chunk *out,
                              struct sb_err *err)
{
    return decode(body, len, out, err, true);
}

void sb_openai_error_message(const char *body, size_t len, char *msg, size_t cap)
{
    if (cap == 0)
        return;
    struct sb_chunk c;
    struct sb_err e;
    if (len > 0 && decode(body, len, &c, &e, true) == 0 && c.is_error) {
        snprintf(msg, cap, "%s", c.error_msg);
        return;
    }
    size_t n = len < 200 ? len : 200;
    if (n > cap - 1)
        n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)body[i];
        msg[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    msg[n] = '\0';
    if (n == 0)
        snprintf(msg, cap, "(empty body)");
}
