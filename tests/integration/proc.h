/*
 * Helpers for integration tests: start real `sparkbench` processes on ephemeral loopback ports,
 * stop them, and make plain HTTP requests with libcurl.
 */
#ifndef SB_TEST_PROC_H
#define SB_TEST_PROC_H

#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>

struct sb_proc {
    pid_t pid;
    int port;
    int out_fd; /* the child's stdout, after the port line */
};

/* execv(argv[0], argv), or, when SB_TEST_VALGRIND names a wrapper (scripts/valgrind-wrap.sh, set
   by make check-valgrind) and argv[0] is the sparkbench binary, execv of the wrapper with argv
   after it. Returns only when the exec failed. */
void sb_test_exec(const char *const *argv);
/* SB_TEST_TIME_SCALE (>= 1, default 1): the factor make check-valgrind sets so the helpers' hang
   guards (mock start-up, stop, sb_proc_run_limit) allow for valgrind's slowdown. */
double sb_test_time_scale(void);

/* Runs `bin mock --port 0 <args...>` (args NULL-terminated) and reads the port it prints. 0 or -1.
 */
int sb_proc_start_mock(struct sb_proc *p, const char *bin, const char *const *args);

/* Sends sig and waits. Returns the exit code, 128+signal if it died of one, -1 on error. */
int sb_proc_stop(struct sb_proc *p, int sig);

/* Runs a command to completion; returns its exit code (128+sig if killed), -1 on error. */
int sb_proc_run(const char *const *argv, char **out, char **err);
/* sb_proc_run with a limit: a command still running after limit_s seconds is killed (SIGKILL)
   and -2 is returned, so a hang fails its test instead of stalling the suite. */
int sb_proc_run_limit(const char *const *argv, char **out, char **err, double limit_s);

struct sb_http_resp {
    long status;
    char *body; /* NUL-terminated; free with sb_http_resp_release */
    size_t len;
    char *headers; /* raw header block */
    int curl_rc;   /* CURLcode */
};

/* One request on a fresh connection. method "GET"/"POST"/...; body may be NULL. */
int sb_http(const char *method, const char *url, const char *body, struct sb_http_resp *r);
void sb_http_resp_release(struct sb_http_resp *r);

/* "http://127.0.0.1:<port><path>" into buf. */
const char *sb_url(char *buf, size_t cap, int port, const char *path);

/* The paths of one `sparkbench run` in a test: a fresh directory "/tmp/sbtest-<tag>-XXXXXX", the
   run directory inside it, its metrics.jsonl and run.json, the shipped prompts under srcdir and
   the endpoint http://127.0.0.1:<port><api>. Release removes the directory. */
struct sb_run_paths {
    char *dir;
    char out[512], metrics[600], runjson[600], prompts[512], url[160];
};
void sb_run_paths_init(struct sb_run_paths *p, const char *srcdir, const char *tag, int port,
                       const char *api);
void sb_run_paths_release(struct sb_run_paths *p);

#endif

/*
 * Splits an SSE body as the mock writes it (events separated by a blank line) into events.
 * Returns the count; *events is a malloc'ed array of malloc'ed strings (free with sb_strv_free).
 */
int sb_test_split_sse(const char *body, char ***events);
void sb_strv_free(char **v, int n);

/* Reads a whole file into a malloc'ed NUL-terminated string; NULL on error. */
char *sb_test_read_file(const char *path);

/* Counts occurrences of needle in hay. */
int sb_test_count(const char *hay, const char *needle);

struct cJSON;

/* Parses every line of the JSONL file at path; fails the running test when the file cannot be
   read or a line is not JSON. Free with sb_test_free_jsonl. */
struct cJSON **sb_test_read_jsonl(const char *path, int *n);
/* Parses the JSON file at path; fails the running test when it cannot be read or parsed. Free
   with cJSON_Delete. */
struct cJSON *sb_test_read_json(const char *path);
/* Member k of object j: its number (NAN when absent or not a number), its string (NULL), or
   whether it is true. */
double sb_test_num(const struct cJSON *j, const char *k);
const char *sb_test_str(const struct cJSON *j, const char *k);
bool sb_test_true(const struct cJSON *j, const char *k);
void sb_test_free_jsonl(struct cJSON **v, int n);
/* sb_test_num as a whole number, -1 when absent or not a number. */
long long sb_test_int(const struct cJSON *j, const char *k);
/* sb_test_read_jsonl with the records sorted by their "seq" (free with sb_test_free_jsonl). */
struct cJSON **sb_test_read_jsonl_by_seq(const char *path, int *n);
/* The lines of the text file at path (a CSV: header first), empty lines skipped; fails the running
   test when it was not written. Free with sb_strv_free. */
char **sb_test_csv_lines(const char *path, int *n);
/* A socket listening on 127.0.0.1 at an ephemeral port (backlog as given) for a test's own
   server; *port gets the port. Fails the running test when any step fails. */
int sb_test_listen_loopback(int backlog, int *port);
/* Writes all n bytes to fd; false when a write fails or writes nothing. */
bool sb_test_write_all(int fd, const char *p, size_t n);

/* A new directory "<parent>/sbtest-<tag>-XXXXXX" (fails the test when it cannot be made); free
   the returned path. */
char *sb_test_tmpdir(const char *parent, const char *tag);
/* rm -rf dir. */
void sb_test_rm_rf(const char *dir);

/* The whole disk holding path (a partition resolved to its parent) by its own reading of
   /sys/dev/block, independent of the library's sb_blockdev_of_path; "" when none. */
void sb_test_disk_of(const char *path, char *out, size_t cap);

#include <stdbool.h>

#include "sb/buf.h"

/* One request of a concurrent batch driven by sb_streams_run(). */
struct sb_stream {
    void *easy;         /* CURL * */
    void *headers;      /* struct curl_slist * */
    struct sb_buf body; /* the response body as received */
    long status;
    int curl_rc;
    bool done;
};

/* Prepares s to POST body to url (a copy of body is kept by libcurl). */
void sb_stream_init(struct sb_stream *s, const char *url, const char *body);
void sb_stream_release(struct sb_stream *s);

/*
 * Runs n requests concurrently on one libcurl multi handle until all have finished. tick (may be
 * NULL) is called after every wake-up until it returns true.
 */
void sb_streams_run(struct sb_stream *s, int n, bool (*tick)(struct sb_stream *s, int n, void *arg),
                    void *arg);
