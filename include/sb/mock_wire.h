/*
 * The mock's HTTP/1.1 wire fixes under libevent 2.1's evhttp, which answers some requests itself
 * before any request callback runs and has no hook for that (no evhttp_set_errorcb in 2.1):
 *
 *  - every error page evhttp writes itself (400 for a malformed request line, header or
 *    Content-Length; 413 for a body over the limit or a bad chunk size; 417; 501 for an unknown
 *    method) is rewritten in the output buffer, before it reaches the socket, into the OpenAI
 *    error shape with Content-Type: application/json. Status, Date and Connection: close stay.
 *
 * The hook is an evbuffer callback on a plain socket bufferevent made by sb_mock_wire_bev, so
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

/* For evhttp_set_bevcb (arg unused): a socket bufferevent with no fd yet and the hook set.
   Returns NULL when out of memory (evhttp then makes a plain one, without the hook). */
struct bufferevent *sb_mock_wire_bev(struct event_base *base, void *arg);

#endif
