/*
 * HTTP GETs of telemetry endpoints (Prometheus /metrics, TensorRT-LLM's JSON /metrics) for the
 * sysmon sources: one libcurl easy handle per URL, kept for the whole session so its connection is
 * reused (keep-alive), and one multi handle that runs every URL's GET at once, so a tick waits for
 * the slowest endpoint rather than for the sum of them. Each GET has a hard timeout; a failed GET
 * is a result (ok false, error says why), never an error of the scraper.
 *
 * Not thread-safe: one scraper is driven from one thread (the sampler's).
 */
#ifndef SB_SCRAPE_H
#define SB_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

/* One URL and the outcome of its latest GET. */
struct sb_scrape {
    char *url;          /* owned */
    void *easy;         /* CURL *, owned */
    struct sb_buf body; /* the latest reply's body (reset before each GET) */
    bool ok;            /* the latest GET got a 2xx reply and its whole body */
    long status;        /* its HTTP status, 0 when no reply came */
    double ms;          /* how long it took (libcurl's total time) */
    uint64_t done_ns;   /* CLOCK_MONOTONIC when it finished */
    char error[256];    /* why it failed ("" when ok): "http 404", curl's message, ... */
    bool too_large;     /* the body outgrew max_body (set while receiving) */
};

struct sb_scraper {
    void *multi; /* CURLM *, owned; holds the connection pool between GETs */
    struct sb_scrape *v;
    size_t n;
    void *headers;   /* struct curl_slist *, owned */
    bool curl_ready; /* curl_global_init() done, undone by the release */
};

/*
 * Prepares one easy handle per URL of the comma list urls (empty items skipped; at least one
 * needed). Every GET times out after timeout_ms (connect included), goes to the URL directly (no
 * proxy: telemetry endpoints are local) and sends "Accept: <accept>" when accept is not NULL; a
 * reply body over max_body bytes fails that GET. Returns 0, or -1 with err (no URL, out of
 * memory); on failure s needs no release.
 */
int sb_scraper_init(struct sb_scraper *s, const char *urls, long timeout_ms, const char *accept,
                    size_t max_body, struct sb_err *err);

/* GETs every URL at once and returns when all have finished or timed out; the results are in
 * s->v[i]. */
void sb_scraper_run(struct sb_scraper *s);

/* Closes the connections and frees everything; s may be released twice. */
void sb_scraper_release(struct sb_scraper *s);

#endif
