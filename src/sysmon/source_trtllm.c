/*
 * sysmon source "trtllm": TensorRT-LLM's /metrics, a JSON list of per-iteration stats that the
 * server drains on every GET. Polled every tick with the other remote sources (the GET bounded by
 * the tick's scrape deadline, min(0.8 x interval, 2 s) after its grid time), and every entry is
 * kept: one line per entry in <out>/trtllm.jsonl,
 *   {"ts":<the tick's grid time>,"entry":{...the entry as received...}}
 * (re-serialised compactly, keys and values unchanged). Entries whose numeric "iter" is not above
 * the highest seen so far are duplicates (a server that does not drain) and are dropped and
 * counted; a reply whose highest iter is below that mark means the server restarted, and the mark
 * starts over.
 *
 * The sysmon line gets
 *   "trtllm":{"entries":N,"iter":..,"active":..,"queued":..,"kv_used_blocks":..,
 *             "kv_free_blocks":..,"kv_hit_rate":..}
 * with N the entries that arrived this tick and the rest from the newest of them
 * (numActiveRequests, numQueuedRequests, kvCacheStats.usedNumBlocks/freeNumBlocks/cacheHitRate;
 * null when the entry lacks one). When the poll worked but nothing new arrived it is just
 * {"entries":0}: old values are never repeated. "dups" and "bad_replies" (cumulative) are added
 * once non-zero. When the poll failed, or the reply was not a JSON list, "trtllm" is absent from
 * that line (a poll that missed the tick's deadline names "trtllm" in the line's "late_sources");
 * the first of each is noticed once on stderr. An abandoned poll's entries are lost with it only
 * if the server drained them before the connection closed.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/jsonl.h"
#include "sb/scrape.h"
#include "sb/sysmon.h"

#define TRTLLM_MAX_REPLY (64u << 20)

struct trtllm_state {
    struct sb_scraper scraper;
    struct sb_jsonl_sink sink;
    bool sink_open;
    struct sb_buf lines; /* this tick's trtllm.jsonl lines */
    bool have_iter;
    double last_iter; /* the highest "iter" kept so far */
    uint64_t dups, bad_replies;
    bool noticed_fail, noticed_bad, noticed_write;
};

static int trtllm_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                       struct sb_err *err)
{
    if (!cfg->trtllm_url || !*cfg->trtllm_url)
        return 1; /* not asked for */
    struct trtllm_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    src->state = st;
    sb_buf_init(&st->lines, TRTLLM_MAX_REPLY * 2);
    /* A backstop only: the tick's scrape deadline (at most 0.8 x interval) comes first. */
    long timeout = cfg->interval_ms > 0 ? (long)cfg->interval_ms : 1;
    if (sb_scraper_init(&st->scraper, src->pool, cfg->trtllm_url, timeout, "application/json",
                        TRTLLM_MAX_REPLY, err) != 0)
        return -1;
    char path[4200];
    snprintf(path, sizeof(path), "%s/trtllm.jsonl", cfg->out_dir);
    if (sb_jsonl_open(&st->sink, path, err) != 0)
        return -1;
    st->sink_open = true;
    return 0;
}

/* The entry's number at key (NULL: not a number). */
static const cJSON *number_at(const cJSON *obj, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(x) ? x : NULL;
}

static int add_field(struct sb_buf *b, const char *key, const cJSON *x)
{
    if (!x || !isfinite(x->valuedouble))
        return sb_buf_addf(b, ",\"%s\":null", key);
    if (x->valuedouble == floor(x->valuedouble) && fabs(x->valuedouble) < 1e15)
        return sb_buf_addf(b, ",\"%s\":%.0f", key, x->valuedouble);
    return sb_buf_addf(b, ",\"%s\":%.6g", key, x->valuedouble);
}

/* Appends one trtllm.jsonl line for entry e. */
static int add_line(struct sb_buf *b, const struct sb_sysmon_tick *tick, const cJSON *e)
{
    char *text = cJSON_PrintUnformatted(e);
    if (!text)
        return -1;
    int rc = sb_buf_addf(b, "{\"ts\":%llu.%06llu,\"entry\":%s}\n",
                         (unsigned long long)(tick->sched_real_ns / 1000000000ull),
                         (unsigned long long)((tick->sched_real_ns % 1000000000ull) / 1000), text);
    free(text);
    return rc;
}

static int trtllm_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                         struct sb_buf *out)
{
    struct trtllm_state *st = src->state;
    struct sb_scrape *sc = &st->scraper.v[0];
    sb_scraper_finish(&st->scraper);
    src->late = sc->late;
    if (!sc->ok) {
        if (!st->noticed_fail)
            fprintf(stderr,
                    "sparkbench sysmon: trtllm: cannot poll '%s': %s (lines lack trtllm while "
                    "it fails; later failures are not reported)\n",
                    sc->url, sc->error);
        st->noticed_fail = true;
        return -1;
    }
    cJSON *list = cJSON_ParseWithLength(sc->body.data ? sc->body.data : "", sc->body.len);
    if (!cJSON_IsArray(list)) {
        st->bad_replies++;
        if (!st->noticed_bad)
            fprintf(stderr,
                    "sparkbench sysmon: trtllm: reply of '%s' is not a JSON list (counted in "
                    "bad_replies; later ones are not reported)\n",
                    sc->url);
        st->noticed_bad = true;
        cJSON_Delete(list);
        return -1;
    }

    /* A reply whose newest iteration is below the mark comes from a restarted server. */
    const cJSON *e;
    double reply_max = -INFINITY;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *it = number_at(e, "iter");
        if (it && it->valuedouble > reply_max)
            reply_max = it->valuedouble;
    }
    if (st->have_iter && reply_max != -INFINITY && reply_max < st->last_iter)
        st->have_iter = false;

    sb_buf_reset(&st->lines);
    const cJSON *newest = NULL;
    double newest_iter = -INFINITY, kept_max = -INFINITY;
    int n = 0, rc = 0;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *it = number_at(e, "iter");
        if (it && st->have_iter && it->valuedouble <= st->last_iter) {
            st->dups++;
            continue;
        }
        if (add_line(&st->lines, tick, e) != 0) {
            rc = -1;
            break;
        }
        n++;
        if (it && it->valuedouble > kept_max)
            kept_max = it->valuedouble;
        /* The newest is the highest iter; without iters, the last in the list. */
        if (!it || it->valuedouble >= newest_iter) {
            newest = e;
            newest_iter = it ? it->valuedouble : newest_iter;
        }
    }
    if (kept_max != -INFINITY) {
        st->last_iter = kept_max;
        st->have_iter = true;
    }
    struct sb_err err;
    if (st->sink_open && st->lines.len &&
        sb_jsonl_write_lines(&st->sink, st->lines.data, st->lines.len, &err) != 0) {
        if (!st->noticed_write)
            fprintf(stderr, "sparkbench sysmon: trtllm: %s (entries are lost from here)\n",
                    err.msg);
        st->noticed_write = true;
        rc = -1;
    }

    rc |= sb_buf_addf(out, "\"trtllm\":{\"entries\":%d", n);
    if (newest) {
        const cJSON *kv = cJSON_GetObjectItemCaseSensitive(newest, "kvCacheStats");
        rc |= add_field(out, "iter", number_at(newest, "iter"));
        rc |= add_field(out, "active", number_at(newest, "numActiveRequests"));
        rc |= add_field(out, "queued", number_at(newest, "numQueuedRequests"));
        rc |= add_field(out, "kv_used_blocks", number_at(kv, "usedNumBlocks"));
        rc |= add_field(out, "kv_free_blocks", number_at(kv, "freeNumBlocks"));
        rc |= add_field(out, "kv_hit_rate", number_at(kv, "cacheHitRate"));
    }
    if (st->dups)
        rc |= sb_buf_addf(out, ",\"dups\":%llu", (unsigned long long)st->dups);
    if (st->bad_replies)
        rc |= sb_buf_addf(out, ",\"bad_replies\":%llu", (unsigned long long)st->bad_replies);
    rc |= sb_buf_adds(out, "}");
    cJSON_Delete(list);
    return rc ? -1 : 0;
}

static void trtllm_start(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick)
{
    (void)tick;
    struct trtllm_state *st = src->state;
    sb_scraper_start(&st->scraper);
}

static void trtllm_close(struct sb_sysmon_source *src)
{
    struct trtllm_state *st = src->state;
    if (!st)
        return;
    if (st->sink_open) {
        struct sb_err err;
        if (sb_jsonl_close(&st->sink, &err) != 0)
            fprintf(stderr, "sparkbench sysmon: trtllm: %s\n", err.msg);
    }
    sb_scraper_release(&st->scraper);
    sb_buf_release(&st->lines);
    free(st);
    src->state = NULL;
}

const struct sb_sysmon_source_ops sb_source_trtllm = {.name = "trtllm",
                                                      .open = trtllm_open,
                                                      .sample = trtllm_sample,
                                                      .close = trtllm_close,
                                                      .start = trtllm_start};
