/*
 * HTTP GETs of telemetry endpoints (Prometheus /metrics, TensorRT-LLM's JSON /metrics) for the
 * sysmon sources: one libcurl easy handle per URL, kept for the whole session so its connection is
 * reused (keep-alive), and one multi handle, the pool, shared by every source of the sampler. Each
 * tick every remote source adds its GETs to the pool (sb_scraper_start), the sampler runs them all
 * at once until they have finished or the tick's deadline has passed (sb_scrape_pool_run), and each
 * source collects its results (sb_scraper_finish): a tick waits for the slowest endpoint, never
 * for the sum of them, and never past its deadline. A GET still running at the deadline is
 * abandoned and recorded as late (ok false, late true); each GET also has a hard timeout. A failed
 * GET is a result (ok false, error says why), never an error of the scraper.
 *
 * Not thread-safe: a pool and its scrapers are driven from one thread (the sampler's).
 */
#ifndef SB_SCRAPE_H
#define SB_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

/* The multi handle every scraper of one sampler runs its GETs on. */
struct sb_scrape_pool {
    void *multi;     /* CURLM *, owned; NULL until the first scraper joins; holds the connections */
    bool curl_ready; /* curl_global_init() done, undone by the release */
};

/* One URL and the outcome of its latest GET. */
struct sb_scrape {
    char *url;          /* owned */
    void *easy;         /* CURL *, owned */
    struct sb_buf body; /* the latest reply's body (reset before each GET) */
    bool ok;            /* the latest GET got a 2xx reply and its whole body */
    bool late;          /* still running at the tick's deadline (abandoned), or timed out */
    bool running;       /* added to the pool and not finished yet */
    long status;        /* its HTTP status, 0 when no reply came */
    double ms;          /* how long it took (libcurl's total time; until abandoned when late) */
    uint64_t start_ns;  /* CLOCK_MONOTONIC when it was started */
    uint64_t done_ns;   /* CLOCK_MONOTONIC when it finished */
    char error[256];    /* why it failed ("" when ok): "http 404", curl's message, ... */
    bool too_large;     /* the body outgrew max_body (set while receiving) */
};

struct sb_scraper {
    struct sb_scrape_pool *pool; /* borrowed, outlives the scraper */
    struct sb_scrape *v;
    size_t n;
    size_t nlate;  /* GETs abandoned at the deadline by the latest sb_scraper_finish() */
    void *headers; /* struct curl_slist *, owned */
};

/* An empty pool (no allocation until a scraper joins it). */
void sb_scrape_pool_init(struct sb_scrape_pool *p);

/*
 * Runs every GET started on the pool until all have finished or CLOCK_MONOTONIC reaches
 * deadline_mono_ns, whichever comes first; what is still running then is left for the scrapers'
 * sb_scraper_finish() to abandon. Returns at once when nothing was started.
 */
void sb_scrape_pool_run(struct sb_scrape_pool *p, uint64_t deadline_mono_ns);

/* Frees the pool; every scraper on it must have been released first. */
void sb_scrape_pool_release(struct sb_scrape_pool *p);

/*
 * Prepares one easy handle per URL of the comma list urls (empty items skipped; at least one
 * needed) for GETs on pool. Every GET times out after timeout_ms (connect included), goes to the
 * URL directly (no proxy: telemetry endpoints are local) and sends "Accept: <accept>" when accept
 * is not NULL; a reply body over max_body bytes fails that GET. Returns 0, or -1 with err (no URL,
 * out of memory, libcurl cannot start); on failure s needs no release.
 */
int sb_scraper_init(struct sb_scraper *s, struct sb_scrape_pool *pool, const char *urls,
                    long timeout_ms, const char *accept, size_t max_body, struct sb_err *err);

/* Starts every URL's GET on the pool (the results are reset); sb_scrape_pool_run() runs them. */
void sb_scraper_start(struct sb_scraper *s);

/*
 * Collects the results into s->v[i]: a GET still running is abandoned (its connection closed)
 * and recorded as late, ok false, with the error saying so; s->nlate counts the late GETs (those
 * and any that hit their own timeout).
 */
void sb_scraper_finish(struct sb_scraper *s);

/* Closes the connections and frees everything but the pool; s may be released twice. */
void sb_scraper_release(struct sb_scraper *s);

#endif
