/*
 * A scripted HTTP server for integration tests of behaviours that real servers show and our mock
 * does not (an interim 103 before the answer, a listener whose accept queue is full, a socket
 * closed right after a response or a moment later): it runs on a thread of the test process,
 * listens on 127.0.0.1 on an ephemeral port, reads each request (headers and Content-Length body)
 * and writes the scripted steps, each after its delay.
 */
#ifndef SB_TEST_SCRIPT_SERVER_H
#define SB_TEST_SCRIPT_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sb_script_step {
    int delay_ms;      /* wait before writing bytes */
    const char *bytes; /* NUL-terminated; NULL ends the script */
};

struct sb_script_server;

/* A route-aware answer: the whole response for one request (its request line and headers in
   head, NUL-terminated), written at once; the string must stay valid until the next call. */
typedef const char *(*sb_script_respond)(struct sb_script_server *s, const char *head);

struct sb_script_server {
    /* set before sb_script_server_start */
    const struct sb_script_step *steps; /* written for every request, in order */
    sb_script_respond respond;          /* when set, answers instead of steps */
    void *arg;                          /* for respond */
    int backlog;                        /* listen() backlog */
    int accept_delay_ms;                /* before the first accept() */
    bool close_after_response;          /* close the socket after the last step */
    int close_delay_ms; /* with close_after_response: wait this long before closing, without
                           reading (a loaded server's HTTP thread closes a moment after its last
                           byte; a request the client sent meanwhile is then reset) */

    /* filled by the server */
    int port;
    int listen_fd;
    uint64_t first_accept_ns; /* CLOCK_MONOTONIC of the first accept() call */
    _Atomic int requests;     /* requests read (a connection that sent nothing is not one) */
    char log[8192];           /* "METHOD /path\n" per request, in order (read after stop) */
    _Atomic bool stop;
    pthread_t thread;
};

/* Binds, listens and starts the thread. 0, or -1 with errno. */
int sb_script_server_start(struct sb_script_server *s);

/* Stops the thread and closes every socket. */
void sb_script_server_stop(struct sb_script_server *s);

#endif
