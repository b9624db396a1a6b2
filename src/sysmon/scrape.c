/*
 * Telemetry GETs for the sysmon sources (see sb/scrape.h): easy handles kept across ticks on one
 * multi handle shared by every source, so each endpoint's connection stays open, all endpoints of
 * a tick are asked at once, and the tick's deadline bounds them all. A GET that misses the deadline
 * is removed from the multi handle (libcurl closes its connection) rather than waited for.
 */
#include "sb/scrape.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/tls.h"
#include "sb/util.h"

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sb_scrape *sc = arg;
    size_t len = size * nmemb;
    if (sb_buf_add(&sc->body, ptr, len) != 0) {
        sc->too_large = true;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static int count_urls(const char *urls)
{
    int n = 0;
    for (const char *p = urls; *p;) {
        size_t len = strcspn(p, ",");
        n += len > 0;
        p += len + (p[len] == ',');
    }
    return n;
}

void sb_scrape_pool_init(struct sb_scrape_pool *p)
{
    memset(p, 0, sizeof(*p));
}

/* libcurl and the multi handle, on the first scraper that joins. */
static int pool_ready(struct sb_scrape_pool *p, struct sb_err *err)
{
    if (p->multi)
        return 0;
    if (!p->curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return sb_err_set(err, "cannot initialise libcurl");
        p->curl_ready = true;
    }
    if (!(p->multi = curl_multi_init()))
        return sb_err_set(err, "out of memory");
    return 0;
}

void sb_scrape_pool_release(struct sb_scrape_pool *p)
{
    if (p->multi)
        curl_multi_cleanup(p->multi);
    if (p->curl_ready)
        curl_global_cleanup();
    memset(p, 0, sizeof(*p));
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (s->v[i].url) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
int sb_scraper_init(struct sb_scraper *s, struct sb_scrape_pool *pool, const char *urls,
                    long timeout_ms, const char *accept, size_t max_body, struct sb_err *err)
{
    memset(s, 0, sizeof(*s));
    int n = urls ? count_urls(urls) : 0;
    if (n == 0)
        return sb_err_set(err, "no url to scrape");
    if (pool_ready(pool, err) != 0)
        return -1;
    s->pool = pool;
    s->v = calloc((size_t)n, sizeof(*s->v));
    if (!s->v)
        goto oom;
    if (accept) {
        char h[256];
        snprintf(h, sizeof(h), "Accept: %s", accept);
        if (!(s->headers = curl_slist_append(NULL, h)))
            goto oom;
    }
    for (const char *p = urls; *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            struct sb_scrape *sc = &s->v[s->n++];
            sb_buf_init(&sc->body, max_body);
            sc->url = strndup(p, len);
            CURL *e = curl_easy_init();
            sc->easy = e;
            if (!sc->url || !e)
                goto oom;
            curl_easy_setopt(e, CURLOPT_URL, sc->url);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_PROXY, "");
            sb_tls_apply(e);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
            curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
            curl_easy_setopt(e, CURLOPT_USERAGENT, "sparkbench-sysmon");
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(e, CURLOPT_WRITEDATA, sc);
            curl_easy_setopt(e, CURLOPT_PRIVATE, sc);
            if (s->headers)
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)s->headers);
        }
        p += len + (p[len] == ',');
    }
    return 0;
oom:
    sb_scraper_release(s);
    return sb_err_set(err, "out of memory");
}
#pragma GCC diagnostic pop

/* Fills sc's result from a finished transfer. */
static void finish(struct sb_scrape *sc, CURLcode rc)
{
    CURL *e = sc->easy;
    sc->running = false;
    sc->done_ns = sb_mono_ns();
    curl_off_t us = 0;
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
    sc->ms = (double)us / 1000.0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &sc->status);
    if (rc != CURLE_OK) {
        if (sc->too_large)
            snprintf(sc->error, sizeof(sc->error), "reply over %zu bytes", sc->body.max);
        else
            snprintf(sc->error, sizeof(sc->error), "%s", curl_easy_strerror(rc));
        sc->error[0] = (char)tolower((unsigned char)sc->error[0]); /* "couldn't connect ..." */
        sc->late = rc == CURLE_OPERATION_TIMEDOUT;
    } else if (sc->status < 200 || sc->status > 299) {
        snprintf(sc->error, sizeof(sc->error), "http %ld", sc->status);
    } else {
        sc->ok = true;
        sc->error[0] = '\0';
    }
}

void sb_scraper_start(struct sb_scraper *s)
{
    uint64_t now = sb_mono_ns();
    for (size_t i = 0; i < s->n; i++) {
        struct sb_scrape *sc = &s->v[i];
        sb_buf_reset(&sc->body);
        sc->ok = false;
        sc->late = false;
        sc->too_large = false;
        sc->status = 0;
        sc->ms = 0;
        sc->start_ns = now;
        sc->done_ns = 0;
        sc->running = curl_multi_add_handle(s->pool->multi, sc->easy) == CURLM_OK;
        /* Overwritten when the transfer finishes; stays when the multi loop itself fails. */
        snprintf(sc->error, sizeof(sc->error), "%s",
                 sc->running ? "transfer did not finish" : "cannot start the request");
    }
}

void sb_scrape_pool_run(struct sb_scrape_pool *p, uint64_t deadline_mono_ns)
{
    CURLM *m = p->multi;
    if (!m)
        return;
    int running = 0;
    for (;;) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct sb_scrape *sc = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sc);
            if (sc && sc->running)
                finish(sc, msg->data.result);
        }
        uint64_t now = sb_mono_ns();
        if (!running || now >= deadline_mono_ns)
            break;
        int wait_ms = (int)((deadline_mono_ns - now + 999999) / 1000000);
        if (curl_multi_poll(m, NULL, 0, wait_ms, NULL) != CURLM_OK)
            break;
    }
}

void sb_scraper_finish(struct sb_scraper *s)
{
    uint64_t now = sb_mono_ns();
    s->nlate = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct sb_scrape *sc = &s->v[i];
        if (sc->running) {
            /* Abandoned: removing a running transfer closes its connection. */
            sc->running = false;
            sc->late = true;
            sc->ok = false;
            sc->ms = (double)(now - sc->start_ns) / 1e6;
            snprintf(sc->error, sizeof(sc->error), "no reply by the tick's deadline (%.0f ms)",
                     sc->ms);
        }
        s->nlate += sc->late;
        /* Removing a finished handle keeps its connection in the pool for the next round. */
        curl_multi_remove_handle(s->pool->multi, sc->easy);
    }
}

void sb_scraper_release(struct sb_scraper *s)
{
    for (size_t i = 0; s->v && i < s->n; i++) {
        struct sb_scrape *sc = &s->v[i];
        if (sc->easy) {
            if (s->pool && s->pool->multi)
                curl_multi_remove_handle(s->pool->multi, sc->easy);
            curl_easy_cleanup(sc->easy);
        }
        free(sc->url);
        sb_buf_release(&sc->body);
    }
    free(s->v);
    if (s->headers)
        curl_slist_free_all(s->headers);
    memset(s, 0, sizeof(*s));
}
