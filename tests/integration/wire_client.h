/*
 * A raw HTTP/1.x client for integration tests that check the mock's wire behaviour byte by byte
 * (framing, chunking, headers, connection close, arrival times of markers): plain sockets on
 * 127.0.0.1, no libcurl in between. Every call fails the running test on a socket error.
 */
#ifndef SB_TEST_WIRE_CLIENT_H
#define SB_TEST_WIRE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One response as read off the socket. */
struct wire_resp {
    char *raw; /* every byte of the response, headers included, NUL-terminated */
    size_t len, head_len;
    int status;
    long long content_length; /* -1 when absent */
    bool chunked, conn_close, eof;
    char *body; /* the body, de-chunked when chunked, NUL-terminated */
    size_t body_len;
    /* CLOCK_MONOTONIC when a marker (wire_read's marks) first appeared in the raw bytes */
    uint64_t mark_ns[4];
};

/* CLOCK_MONOTONIC in nanoseconds (the mock's stamps use the same clock). */
uint64_t sb_test_mono_ns(void);
/* A connected socket to 127.0.0.1:port. */
int wire_connect(int port);
/* Writes all of data. */
void wire_send(int fd, const char *data, size_t len);
void wire_resp_release(struct wire_resp *r);
/* Whether the header block head[0..head_len) has header name (case-insensitive) whose value starts
   with value (any value when value is NULL). */
bool header_is(const char *head, size_t head_len, const char *name, const char *value);
/*
 * Reads one whole response from fd (framed by Content-Length, chunked encoding or the close),
 * stamping when each of up to four marker strings (marks, NULL-terminated; may be NULL) first
 * shows up in the bytes received.
 */
void wire_read(int fd, struct wire_resp *r, const char *const *marks);
/* A POST with a JSON body on an open connection (HTTP/1.1 keep-alive). */
void wire_post(int fd, const char *path, const char *body);

#endif
