/*
 * The mock's HTTP/1.1 wire fixes under libevent 2.1's evhttp, which answers some requests itself
 * before any request callback runs and has no hook for that (no evhttp_set_errorcb in 2.1):
 *
 *  - chunk extensions (`5;foo=bar`) in a chunked request body, which RFC 9112 section 7.1.1 says a
 *    recipient must ignore, make evhttp's chunk-size parser fail (an HTML 413). An input hook
 *    follows the request framing and blanks the extension's first byte to a space, a form evhttp
 *    accepts, before evhttp reads the line.
 *  - every error page evhttp writes itself (400 for a malformed request line, header or
 *    Content-Length; 413 for a body over the limit or a bad chunk size; 417; 501 for an unknown
 *    method) is rewritten in the output buffer, before it reaches the socket, into the OpenAI
 *    error shape with Content-Type: application/json. Status, Date and Connection: close stay.
 *
 * Both hooks are evbuffer callbacks on a plain socket bufferevent made by sb_mock_wire_bev, so
 * nothing sits between evhttp and the socket (a filter bufferevent loses Connection: close
 * replies: evhttp shuts the socket down before the filter has flushed).
 */
#ifndef SB_MOCK_WIRE_H
#define SB_MOCK_WIRE_H

#include <stddef.h>

struct bufferevent;
struct event_base;

/* The largest request body the mock takes (evhttp_set_max_body_size). */
#define SB_MOCK_MAX_BODY_BYTES ((size_t)64 << 20)

/* For evhttp_set_bevcb (arg unused): a socket bufferevent with no fd yet and both hooks set.
   Returns NULL when out of memory (evhttp then makes a plain one, without the hooks). */
struct bufferevent *sb_mock_wire_bev(struct event_base *base, void *arg);

/* Frees the per-descriptor framing state; call after evhttp_free. */
void sb_mock_wire_release(void);

#endif
