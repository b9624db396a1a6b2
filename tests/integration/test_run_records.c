/*
 * Integration tests for what `sparkbench run` writes when the server or the disk misbehaves: a
 * canned HTTP server on 127.0.0.1 (a thread of this test, not the mock, so it can send bytes no
 * real server should: invalid UTF-8, control characters, error messages longer than a record's
 * field) must still give metrics.jsonl lines that are valid UTF-8 JSON; and a run on a really
 * full filesystem (a 64 KiB tmpfs in a private mount namespace; skipped where mounting is not
 * permitted) must count only the records that reached the file and never leave run.json empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/utf8_strict.h"
#include "proc.h"
#include "sb/util.h"

static const char *bin;
static const char *srcdir;

/* ---- a canned HTTP server: response i % n to the i-th request, then close ---- */

struct canned {
    const char *status;       /* "200 OK" */
    const char *content_type; /* "text/event-stream" */
    const char *body;
    size_t body_len;
};

struct canned_server {
    int fd, port;
    const struct canned *replies;
    size_t nreplies;
    atomic_uint served;
    atomic_bool stop;
    pthread_t thread;
};

/* Reads one request (headers, then Content-Length bytes of body). 0, or -1 on EOF/error. */
static int read_request(int c)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len == sizeof(buf) - 1)
            return -1;
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t have = len - (size_t)(end + 4 - buf);
    long want = 0;
    for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
        if (strncasecmp(p, "content-length:", 15) == 0)
            want = strtol(p + 15, NULL, 10);
    while ((long)have < want) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    return 0;
}

static void *canned_main(void *arg)
{
    struct canned_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (read_request(c) == 0) {
            unsigned i = atomic_fetch_add(&s->served, 1);
            const struct canned *r = &s->replies[i % s->nreplies];
            char head[256];
            int n = snprintf(head, sizeof(head),
                             "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n",
                             r->status, r->content_type, r->body_len);
            sb_test_write_all(c, head, (size_t)n);
            sb_test_write_all(c, r->body, r->body_len);
        }
        close(c);
    }
    return NULL;
}

static void canned_start(struct canned_server *s, const struct canned *replies, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->replies = replies;
    s->nreplies = n;
    s->fd = sb_test_listen_loopback(16, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, canned_main, s), 0);
}

static void canned_stop(struct canned_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* Appends reps copies of unit to b. */
static void add_rep(struct sb_buf *b, const char *unit, int reps)
{
    for (int i = 0; i < reps; i++)
        assert_int_equal(sb_buf_adds(b, unit), 0);
}

/* The raw lines of a file: every one must be strict UTF-8 and one JSON object; returns them
   parsed, indexed by their "seq" minus the smallest seq. */
static int check_lines(const char *path, cJSON **by_seq, int max)
{
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    int n = 0;
    long long seq0 = -1;
    cJSON *all[64];
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl); /* whole lines only */
        size_t len = (size_t)(nl - p), bad = 0;
        if (!sb_test_utf8_valid(p, len, &bad))
            fail_msg("line %d is not valid UTF-8 at byte %zu of %zu", n + 1, bad, len);
        cJSON *j = cJSON_ParseWithLength(p, len);
        if (!j)
            fail_msg("line %d is not JSON", n + 1);
        assert_true(n < 64);
        all[n++] = j;
        long long s = (long long)cJSON_GetObjectItemCaseSensitive(j, "seq")->valuedouble;
        if (seq0 < 0 || s < seq0)
            seq0 = s;
        p = nl + 1;
    }
    free(text);
    for (int i = 0; i < max; i++)
        by_seq[i] = NULL;
    for (int i = 0; i < n; i++) {
        long long s = (long long)cJSON_GetObjectItemCaseSensitive(all[i], "seq")->valuedouble;
        assert_true(s - seq0 < max);
        by_seq[s - seq0] = all[i];
    }
    return n;
}

static const char *jstr(const cJSON *j, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void test_server_strings_valid_utf8(void **state)
{
    (void)state;
    /* 0: Dynamo's `event: error` whose comment is 300 bytes of "é" (byte 255 is mid-character).
       1: an `event: error` whose data is raw invalid bytes, a control character, then 290 bytes
          of "€".
       2: a stream whose finish_reason (24 bytes) is \u0001 and 10 "€" (31 bytes).
       3: HTTP 500 with a non-JSON body of invalid bytes.
       4: HTTP 500 with an OpenAI error body whose message is 300 bytes of "é". */
    struct sb_buf b0, b1, b3, b4;
    sb_buf_init(&b0, 1 << 16);
    sb_buf_init(&b1, 1 << 16);
    sb_buf_init(&b3, 1 << 16);
    sb_buf_init(&b4, 1 << 16);
    sb_buf_adds(&b0, "event: error\n: ");
    add_rep(&b0, "\xc3\xa9", 150);
    sb_buf_adds(&b0, "\n\n");
    sb_buf_adds(&b1, "event: error\ndata: \xff\xfe oops \x01 ");
    add_rep(&b1, "\xe2\x82\xac", 97);
    sb_buf_adds(&b1, "\n\n");
    const char b2[] =
        "data: {\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,"
        "\"text\":\"hi\",\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,"
        "\"text\":\"\",\"finish_reason\":\"\\u0001\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
        "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\"}]}\n\n"
        "data: [DONE]\n\n";
    sb_buf_adds(&b3, "\xff\xfe internal \xc3\x28 error \xe2\x82");
    sb_buf_adds(&b4, "{\"error\":{\"message\":\"");
    add_rep(&b4, "\xc3\xa9", 150);
    sb_buf_adds(&b4, "\",\"type\":\"internal_error\"}}");
    const struct canned replies[] = {
        {"200 OK", "text/event-stream", b0.data, b0.len},
        {"200 OK", "text/event-stream", b1.data, b1.len},
        {"200 OK", "text/event-stream", b2, sizeof(b2) - 1},
        {"500 Internal Server Error", "text/plain", b3.data, b3.len},
        {"500 Internal Server Error", "application/json", b4.data, b4.len},
    };
    struct canned_server srv;
    canned_start(&srv, replies, SB_ARRAY_SIZE(replies));

    char *dir = sb_test_tmpdir("/tmp", "records");
    char out_dir[512], mpath[600], url[160], prompts[512];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/completions", srv.port);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    /* Labels from the command line longer than their fields: --model (128 bytes) as 100 "€",
       --hypothesis (64) as 40 "é". */
    char model[301] = "", hypo[81] = "";
    for (int i = 0; i < 100; i++)
        memcpy(model + 3 * i, "\xe2\x82\xac", 4);
    for (int i = 0; i < 40; i++)
        memcpy(hypo + 2 * i, "\xc3\xa9", 3);
    const char *argv[] = {bin, "run", "--endpoint", url, "--concurrency", "1", "--requests", "5",
                          "--output-dir", out_dir, "--prompts-dir", prompts, "--model", model,
                          "--hypothesis", hypo, "--quiet",
                          /* the canned server answers completions only: no /metrics GETs */
                          "--no-server-state", NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    canned_stop(&srv);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    free(out);
    free(err);
    assert_int_equal(atomic_load(&srv.served), 5);

    cJSON *rec[5];
    assert_int_equal(check_lines(mpath, rec, 5), 5);
    for (int i = 0; i < 5; i++)
        assert_non_null(rec[i]);

    /* The labels cut on a character boundary: 42 whole "€" (126 bytes), 31 whole "é". */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(strlen(jstr(rec[i], "model")), 126);
        assert_memory_equal(jstr(rec[i], "model"), model, 126);
        assert_int_equal(strlen(jstr(rec[i], "hypothesis")), 62);
        assert_memory_equal(jstr(rec[i], "hypothesis"), hypo, 62);
    }

    /* 0: cut on the character boundary: 127 whole "é", no replacement character. */
    const char *m0 = jstr(rec[0], "error_msg");
    assert_non_null(m0);
    assert_string_equal(jstr(rec[0], "error"), "stream_error");
    assert_int_equal(strlen(m0), 254);
    for (int i = 0; i < 254; i += 2)
        assert_memory_equal(m0 + i, "\xc3\xa9", 2);

    /* 1: invalid bytes as U+FFFD, the control character kept (escaped on the line), and the cut
       at a boundary: the message ends with a whole "€". */
    const char *m1 = jstr(rec[1], "error_msg");
    assert_non_null(m1);
    assert_memory_equal(m1, "\xef\xbf\xbd\xef\xbf\xbd oops \x01 \xe2\x82\xac", 15);
    size_t l1 = strlen(m1);
    assert_true(l1 >= 252);
    assert_memory_equal(m1 + l1 - 3, "\xe2\x82\xac", 3);

    /* 2: a success whose finish_reason keeps the control character and 7 whole "€". */
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec[2], "ok")))
        fail_msg("record 2 failed: %s: %s", jstr(rec[2], "error"), jstr(rec[2], "error_msg"));
    const char *f2 = jstr(rec[2], "finish_reason");
    assert_non_null(f2);
    assert_int_equal(strlen(f2), 22);
    assert_memory_equal(f2, "\x01\xe2\x82\xac", 4);

    /* 3: the non-JSON body's invalid bytes replaced; 4: the JSON message cut on a boundary. */
    const char *m3 = jstr(rec[3], "error_msg");
    assert_non_null(m3);
    assert_non_null(strstr(m3, "internal"));
    assert_non_null(strstr(m3, "\xef\xbf\xbd"));
    const char *m4 = jstr(rec[4], "error_msg");
    assert_non_null(m4);
    assert_memory_equal(m4, "\xc3\xa9\xc3\xa9", 4);

    for (int i = 0; i < 5; i++)
        cJSON_Delete(rec[i]);
    sb_buf_release(&b0);
    sb_buf_release(&b1);
    sb_buf_release(&b3);
    sb_buf_release(&b4);
    sb_test_rm_rf(dir);
    free(dir);
}

static const char *const fast_mock[] = {"--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "1",
                                        "--decode-per-seq-us",
                                        "0",
                                        NULL};

/* "N sent, OK ok, E errors" and "lost L records" from a run's summary. */
static void summary_counts(const char *text, long long *sent, long long *ok, long long *errors,
                           long long *lost)
{
    const char *p = strstr(text, " sent, ");
    assert_non_null(p);
    while (p > text && p[-1] >= '0' && p[-1] <= '9')
        p--;
    assert_int_equal(sscanf(p, "%lld sent, %lld ok, %lld errors", sent, ok, errors), 3);
    *lost = 0;
    p = strstr(text, "lost ");
    if (p)
        assert_int_equal(sscanf(p, "lost %lld records", lost), 1);
}

static void test_full_tmpfs(void **state)
{
    (void)state;
    /* A private mount namespace: the tmpfs vanishes with this process whatever happens. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        print_message("cannot make a private mount namespace (%s): skipped\n", strerror(errno));
        skip();
    }
    char *dir = sb_test_tmpdir("/tmp", "fullfs");
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        print_message("cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        sb_test_rm_rf(dir);
        free(dir);
        skip();
    }
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, fast_mock), 0);
    char out_dir[512], mpath[600], jpath[600], cpath[600], url[160], prompts[512];
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
    snprintf(jpath, sizeof(jpath), "%s/run.json", out_dir);
    snprintf(cpath, sizeof(cpath), "%s/config.yaml", out_dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/completions", mock.port);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    const char *argv[] = {bin,          "run",  "--endpoint",   url,     "--concurrency", "4",
                          "--requests", "5000", "--output-dir", out_dir, "--prompts-dir", prompts,
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "metrics.jsonl"));
    assert_non_null(strstr(err, "No space left on device"));

    /* Whole, valid lines only; the summary counts exactly those and says what was lost. */
    int lines = 0;
    char *text = sb_test_read_file(mpath);
    assert_non_null(text);
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_true(lines > 0 && lines < 5000);
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
    long long sent, ok, errors, lost;
    summary_counts(out, &sent, &ok, &errors, &lost);
    if (ok + errors != lines)
        fail_msg("summary counts %lld ok + %lld errors, metrics.jsonl holds %d lines", ok, errors,
                 lines);
    assert_int_equal(lost, sent - lines);
    assert_true(lost > 0);

    /* run.json: written whole, or (the disk being full) absent and named in the error; never
       empty or half-written, and no temporary file left behind. */
    struct stat st;
    if (stat(jpath, &st) == 0) {
        assert_true(st.st_size > 0);
        char *j = sb_test_read_file(jpath);
        cJSON *o = cJSON_Parse(j);
        assert_non_null(o);
        cJSON_Delete(o);
        free(j);
    } else {
        assert_int_equal(errno, ENOENT);
        assert_non_null(strstr(err, "run.json"));
    }
    struct sb_buf names;
    sb_buf_init(&names, 1 << 16);
    DIR *d = opendir(out_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            sb_buf_addf(&names, "%s ", e->d_name);
    closedir(d);
    if (strstr(names.data, ".tmp"))
        fail_msg("a temporary file was left behind: %s", names.data);
    sb_buf_release(&names);
    /* config.yaml was written before the disk filled and stays whole. */
    assert_int_equal(stat(cpath, &st), 0);
    assert_true(st.st_size > 0);
    free(out);
    free(err);
    umount2(dir, MNT_DETACH);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_strings_valid_utf8),
        cmocka_unit_test(test_full_tmpfs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
