/*
 * TensorRT-LLM's GET /perf_metrics joined to metrics.jsonl (sb/perf_metrics.h). The body is read
 * once after the run with libcurl and cJSON (it is small: at most perf_metrics_max_requests
 * entries); each entry becomes three durations keyed by its executor request id, sorted so that a
 * record's lookup is a binary search. The join rewrites metrics.jsonl record by record through
 * sb_record_from_json / sb_record_to_json into a temporary file renamed over the original, so
 * `analyze` reads the server's times from the same fields as llama.cpp's and a failure leaves the
 * run's records untouched.
 */
#include "sb/perf_metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/http.h"

#define BODY_MAX (256u << 20)

static double num_of(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) ? x->valuedouble : NAN;
}

/* (b - a) seconds in ms; NAN unless both are set (> 0: an unset steady-clock point is 0) and
   b >= a. */
static double span_ms(double a, double b)
{
    return a > 0 && b > 0 && b >= a ? (b - a) * 1000.0 : NAN;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct sb_perf_entry *)a)->id, ((const struct sb_perf_entry *)b)->id);
}

int sb_perf_metrics_parse(const char *body, size_t len, struct sb_perf_table *t, struct sb_err *err)
{
    t->e = NULL;
    t->n = 0;
    cJSON *root = cJSON_ParseWithLength(body ? body : "", body ? len : 0);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return sb_err_set(err, "GET /perf_metrics: not a JSON list");
    }
    int n = cJSON_GetArraySize(root);
    t->e = calloc(n > 0 ? (size_t)n : 1, sizeof(*t->e));
    if (!t->e) {
        cJSON_Delete(root);
        return sb_err_set(err, "out of memory");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "request_id");
        const cJSON *pm = cJSON_GetObjectItemCaseSensitive(it, "perf_metrics");
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(pm, "timing_metrics");
        if (!cJSON_IsObject(tm))
            continue;
        struct sb_perf_entry *e = &t->e[t->n];
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 9e15 &&
            id->valuedouble == floor(id->valuedouble))
            snprintf(e->id, sizeof(e->id), "%.0f", id->valuedouble);
        else if (cJSON_IsString(id) && strlen(id->valuestring) < sizeof(e->id))
            snprintf(e->id, sizeof(e->id), "%s", id->valuestring);
        else
            continue;
        double arr = num_of(tm, "arrival_time"), sch = num_of(tm, "first_scheduled_time");
        double ft = num_of(tm, "first_token_time"), lt = num_of(tm, "last_token_time");
        e->queue_ms = span_ms(arr, sch);
        e->prompt_ms = !isnan(sch) ? span_ms(sch, ft) : span_ms(arr, ft);
        e->decode_ms = span_ms(ft, lt);
        t->n++;
    }
    cJSON_Delete(root);
    qsort(t->e, t->n, sizeof(*t->e), by_id);
    return 0;
}

void sb_perf_table_release(struct sb_perf_table *t)
{
    free(t->e);
    t->e = NULL;
    t->n = 0;
}

const char *sb_perf_id_of_response(const char *rid)
{
    const char *p = NULL;
    if (strncmp(rid, "chatcmpl-", 9) == 0)
        p = rid + 9;
    else if (strncmp(rid, "cmpl-", 5) == 0)
        p = rid + 5;
    if (!p || !*p)
        return NULL;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return NULL; /* a uuid: a response of a server that does not use the executor id */
    return p;
}

bool sb_perf_apply(const struct sb_perf_table *t, struct sb_record *r)
{
    const char *id = sb_perf_id_of_response(r->response_id);
    if (!id || strlen(id) >= sizeof(t->e[0].id) || t->n == 0)
        return false;
    struct sb_perf_entry key;
    snprintf(key.id, sizeof(key.id), "%s", id);
    const struct sb_perf_entry *e = bsearch(&key, t->e, t->n, sizeof(*t->e), by_id);
    if (!e)
        return false;
    r->server_queue_ms = e->queue_ms;
    r->server_prompt_ms = e->prompt_ms;
    r->server_decode_ms = e->decode_ms;
    snprintf(r->server_timings_src, sizeof(r->server_timings_src), "trtllm_perf_metrics");
    return true;
}

int sb_perf_join_file(const char *path, const struct sb_perf_table *t, struct sb_perf_join *j,
                      struct sb_err *err)
{
    memset(j, 0, sizeof(*j));
    j->entries = (long long)t->n;
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.join.tmp", path);
    FILE *in = fopen(path, "r");
    if (!in)
        return sb_err_set(err, "cannot read '%s': %s", path, strerror(errno));
    FILE *out = fopen(tmp, "w");
    if (!out) {
        int e = errno;
        fclose(in);
        return sb_err_set(err, "cannot write '%s': %s", tmp, strerror(e));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    bool ok = true;
    struct sb_record *r = malloc(sizeof(*r));
    if (!r)
        ok = false;
    while (ok && (n = getline(&line, &cap, in)) > 0) {
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        j->records++;
        struct sb_err perr;
        if (sb_record_from_json(line, len, r, &perr) == 0 && sb_perf_apply(t, r)) {
            sb_buf_reset(&b);
            if (sb_record_to_json(r, &b) != 0) {
                ok = false;
                break;
            }
            j->matched++;
            ok = fwrite(b.data, 1, b.len, out) == b.len;
        } else {
            ok = fwrite(line, 1, len, out) == len && fputc('\n', out) != EOF;
        }
    }
    free(r);
    free(line);
    sb_buf_release(&b);
    ok = ok && !ferror(in) && fflush(out) == 0 && fsync(fileno(out)) == 0;
    int e = errno;
    fclose(in);
    if (fclose(out) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return sb_err_set(err, "cannot rewrite '%s' with the server's timings: %s", path,
                          strerror(e));
    }
    return 0;
}

int sb_perf_metrics_fetch(const char *base_url, double timeout_s, struct sb_buf *out,
                          struct sb_err *err)
{
    char url[1200], why[160] = "";
    snprintf(url, sizeof(url), "%s/perf_metrics", base_url);
    sb_buf_init(out, BODY_MAX);
    long status = sb_http_request("GET", url, timeout_s, out, why, sizeof(why));
    if (status == 0)
        return sb_err_set(err, "GET %s: %s", url, why);
    if (status != 200)
        return sb_err_set(err, "GET %s: HTTP %ld", url, status);
    return 0;
}
