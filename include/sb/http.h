/*
 * One plain HTTP request to a server's own route, outside the measured path (the server's cache
 * reset and state, TensorRT-LLM's /perf_metrics): libcurl easy, no proxy, a whole-request
 * timeout, the body collected into a buffer. The load itself never goes through here.
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stddef.h>

#include "sb/buf.h"

/*
 * Sends method ("GET", or "POST" with an empty JSON object as its body) to url within timeout_s
 * and appends the response body to out (a buffer the caller initialised; its limit bounds the
 * body). Returns the HTTP status; 0 when no response came back, with libcurl's reason in why.
 */
long sb_http_request(const char *method, const char *url, double timeout_s, struct sb_buf *out,
                     char *why, size_t why_cap);

#endif
