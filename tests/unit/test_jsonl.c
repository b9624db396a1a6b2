/*
 * Unit tests for sb/jsonl.h: whole-line appends, batch flush thresholds, concurrent writers, disk
 * full and rollback of partial writes, and the tolerant streaming reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/jsonl.h"
#include "sb/util.h"

/* ---- helpers ---- */

static void temp_path(char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/sb_test_jsonl_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0644);
    assert_true(fd >= 0);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        assert_true(w > 0);
        done += (size_t)w;
    }
    assert_int_equal(close(fd), 0);
}

/* The whole file, NUL-terminated (test files are small or read once). */
static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct sb_buf b;
    sb_buf_init(&b, (size_t)1 << 30);
    char chunk[65536];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        assert_int_equal(sb_buf_add(&b, chunk, (size_t)r), 0);
    assert_int_equal(r, 0);
    close(fd);
    if (!b.data)
        assert_int_equal(sb_buf_add(&b, "", 0), 0);
    return sb_buf_detach(&b, len);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* ---- sink ---- */

static void test_sink_writes_lines(void **state)
{
    (void)state;
    static const struct {
        const char *writes[4];
        const char *want;
        uint64_t lines;
    } cases[] = {
        {{"{\"a\":1}\n"}, "{\"a\":1}\n", 1},
        {{"a\n", "b\nc\n", "d\n"}, "a\nb\nc\nd\n", 4},
        {{"", "x\n", ""}, "x\n", 1},
        {{"\n", "\n\n"}, "\n\n\n", 3},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64];
        temp_path(path, sizeof(path));
        struct sb_jsonl_sink s;
        struct sb_err err = {0};
        assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
        for (size_t k = 0; k < 4 && cases[i].writes[k]; k++)
            assert_int_equal(
                sb_jsonl_write_lines(&s, cases[i].writes[k], strlen(cases[i].writes[k]), &err), 0);
        assert_int_equal(s.lines_written, cases[i].lines);
        assert_int_equal(s.bytes_written, strlen(cases[i].want));
        assert_int_equal(sb_jsonl_close(&s, &err), 0);
        assert_int_equal(sb_jsonl_close(&s, &err), 0); /* closing twice is harmless */
        size_t len;
        char *got = read_file(path, &len);
        assert_string_equal(got, cases[i].want);
        free(got);
        unlink(path);
    }
}

static void test_sink_appends(void **state)
{
    (void)state;
    /* Opening an existing file appends to it. */
    char path[64];
    temp_path(path, sizeof(path));
    write_file(path, "old\n", 4);
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    assert_int_equal(sb_jsonl_write_lines(&s, "new\n", 4, &err), 0);
    assert_int_equal(sb_jsonl_close(&s, &err), 0);
    size_t len;
    char *got = read_file(path, &len);
    assert_string_equal(got, "old\nnew\n");
    free(got);
    unlink(path);
}

static void test_sink_rejects_partial(void **state)
{
    (void)state;
    static const char *const bad[] = {"abc", "a\nb", "{\"a\":1}"};
    char path[64];
    temp_path(path, sizeof(path));
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        sb_err_clear(&err);
        assert_int_equal(sb_jsonl_write_lines(&s, bad[i], strlen(bad[i]), &err), -1);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, "partial line"));
    }
    /* The batch refuses them too, and an empty "line". */
    struct sb_jsonl_batch b;
    sb_jsonl_batch_init(&b, &s, 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++)
        assert_int_equal(sb_jsonl_batch_add(&b, bad[i], strlen(bad[i]), 0, &err), -1);
    assert_int_equal(sb_jsonl_batch_add(&b, "", 0, 0, &err), -1);
    assert_int_equal(b.buf.len, 0);
    sb_jsonl_batch_release(&b);
    /* Refused writes do not poison the sink. */
    assert_int_equal(sb_jsonl_write_lines(&s, "ok\n", 3, &err), 0);
    assert_int_equal(sb_jsonl_close(&s, &err), 0);
    assert_int_equal(file_size(path), 3);
    unlink(path);
}

static void test_open_error(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/tmp/sb-no-such-dir-7f3a/metrics.jsonl",
        "/proc/version/metrics.jsonl",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(paths); i++) {
        struct sb_jsonl_sink s;
        struct sb_err err = {0};
        assert_int_equal(sb_jsonl_open(&s, paths[i], &err), -1);
        assert_non_null(strstr(err.msg, paths[i]));
        assert_int_equal(sb_jsonl_close(&s, &err), 0); /* nothing to close */
    }
}

static void test_dev_full(void **state)
{
    (void)state;
    if (access("/dev/full", W_OK) != 0)
        skip();
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, "/dev/full", &err), 0);
    assert_int_equal(sb_jsonl_write_lines(&s, "{\"a\":1}\n", 8, &err), -1);
    assert_non_null(strstr(err.msg, "cannot write '/dev/full'"));
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_true(s.failed);
    /* Later writes fail at once, with the same reason. */
    sb_err_clear(&err);
    assert_int_equal(sb_jsonl_write_lines(&s, "{\"b\":2}\n", 8, &err), -1);
    assert_non_null(strstr(err.msg, "/dev/full"));
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_int_equal(s.lines_written, 0);
    /* A batch surfaces the failure on its flush... */
    struct sb_jsonl_batch b;
    sb_jsonl_batch_init(&b, &s, 0);
    assert_int_equal(sb_jsonl_batch_add(&b, "x\n", 2, 1, &err), 0);
    sb_err_clear(&err);
    assert_int_equal(sb_jsonl_batch_add(&b, "y\n", 2, SB_JSONL_BATCH_NS, &err), -1);
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_int_equal(b.buf.len, 0);
    sb_jsonl_batch_release(&b);
    /* ... and close reports that lines were lost. */
    sb_err_clear(&err);
    assert_int_equal(sb_jsonl_close(&s, &err), -1);
    assert_non_null(strstr(err.msg, "/dev/full"));
}

static void test_partial_write_rolled_back(void **state)
{
    (void)state;
    /* RLIMIT_FSIZE makes the kernel accept part of a write and refuse the rest (EFBIG): the sink
     * must cut the file back to its last whole line, then save the whole lines that still fit. */
    char path[64];
    temp_path(path, sizeof(path));
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    char line[100];
    memset(line, 'x', sizeof(line));
    line[0] = '{';
    line[98] = '}';
    line[99] = '\n';
    for (int i = 0; i < 10; i++)
        assert_int_equal(sb_jsonl_write_lines(&s, line, sizeof(line), &err), 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 1550;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char batch[1000];
    for (int i = 0; i < 10; i++)
        memcpy(batch + i * 100, line, 100);
    int rc = sb_jsonl_write_lines(&s, batch, sizeof(batch), &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "File too large"));
    /* The batch was cut back, then the lines that still fit (5 of 100 bytes under the 1550-byte
       limit) were saved whole; the sixth would be torn, so it is not there. */
    assert_int_equal(file_size(path), 1500);
    assert_int_equal(s.lines_written, 15);
    sb_jsonl_close(&s, &err);
    unlink(path);
}

static void test_batch_thresholds(void **state)
{
    (void)state;
    static const struct {
        size_t line_len;  /* bytes added, '\n' included */
        uint64_t now_ns;  /* the time passed in */
        off_t file_after; /* file size after the add */
        uint64_t last_flush_after;
    } steps[] = {
        /* time: nothing until a full second after the start (t0 = 1000) */
        {100, 1000, 0, 1000},
        {100, 1000 + SB_JSONL_BATCH_NS - 1, 0, 1000},
        {100, 1000 + SB_JSONL_BATCH_NS, 300, 1000 + SB_JSONL_BATCH_NS},
        /* the clock restarts at the flush */
        {50, 1000 + SB_JSONL_BATCH_NS + 10, 300, 1000 + SB_JSONL_BATCH_NS},
        /* size: 64 KiB pending flushes at once, whatever the time */
        {SB_JSONL_BATCH_BYTES - 51, 1000 + SB_JSONL_BATCH_NS + 20, 300, 1000 + SB_JSONL_BATCH_NS},
        {1, 1000 + SB_JSONL_BATCH_NS + 30, 300 + SB_JSONL_BATCH_BYTES,
         1000 + SB_JSONL_BATCH_NS + 30},
        /* a time from before the last flush does not count as "a second later" */
        {10, 5, 300 + SB_JSONL_BATCH_BYTES, 1000 + SB_JSONL_BATCH_NS + 30},
    };
    char path[64];
    temp_path(path, sizeof(path));
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    struct sb_jsonl_batch b;
    sb_jsonl_batch_init(&b, &s, 1000);
    char *line = malloc(SB_JSONL_BATCH_BYTES);
    assert_non_null(line);
    for (size_t i = 0; i < SB_ARRAY_SIZE(steps); i++) {
        memset(line, 'a' + (int)i, steps[i].line_len - 1);
        line[steps[i].line_len - 1] = '\n';
        assert_int_equal(sb_jsonl_batch_add(&b, line, steps[i].line_len, steps[i].now_ns, &err), 0);
        if (file_size(path) != steps[i].file_after)
            fail_msg("step %zu: file %lld bytes, want %lld", i, (long long)file_size(path),
                     (long long)steps[i].file_after);
        assert_int_equal(b.last_flush_ns, steps[i].last_flush_after);
    }
    /* An explicit flush writes the rest and restarts the clock. */
    assert_int_equal(sb_jsonl_batch_flush(&b, 999999999999ull, &err), 0);
    assert_int_equal(file_size(path), 300 + SB_JSONL_BATCH_BYTES + 10);
    assert_int_equal(b.last_flush_ns, 999999999999ull);
    assert_int_equal(b.buf.len, 0);
    /* Flushing nothing is fine. */
    assert_int_equal(sb_jsonl_batch_flush(&b, 1, &err), 0);
    assert_int_equal(s.lines_written, SB_ARRAY_SIZE(steps));
    free(line);
    sb_jsonl_batch_release(&b);
    assert_int_equal(sb_jsonl_close(&s, &err), 0);
    unlink(path);
}

static void test_batch_oversized_line(void **state)
{
    (void)state;
    /* A line larger than the batch may hold goes straight through, after what is pending. */
    char path[64];
    temp_path(path, sizeof(path));
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    struct sb_jsonl_batch b;
    sb_jsonl_batch_init(&b, &s, 0);
    b.buf.max = 16; /* a tiny batch */
    assert_int_equal(sb_jsonl_batch_add(&b, "first\n", 6, 1, &err), 0);
    assert_int_equal(file_size(path), 0);
    assert_int_equal(sb_jsonl_batch_add(&b, "a-line-longer-than-sixteen\n", 27, 2, &err), 0);
    assert_int_equal(sb_jsonl_batch_add(&b, "last\n", 5, 3, &err), 0);
    assert_int_equal(sb_jsonl_batch_flush(&b, 4, &err), 0);
    size_t len;
    char *got = read_file(path, &len);
    assert_string_equal(got, "first\na-line-longer-than-sixteen\nlast\n");
    free(got);
    sb_jsonl_batch_release(&b);
    assert_int_equal(sb_jsonl_close(&s, &err), 0);
    unlink(path);
}

#define THREADS          4
#define LINES_PER_THREAD 10000

struct writer_arg {
    struct sb_jsonl_sink *sink;
    int id;
    int rc;
};

static void *writer_main(void *p)
{
    struct writer_arg *a = p;
    struct sb_jsonl_batch b;
    struct sb_err err = {0};
    sb_jsonl_batch_init(&b, a->sink, 0);
    char line[512];
    char pad[300];
    memset(pad, 'p', sizeof(pad));
    for (int i = 0; i < LINES_PER_THREAD && a->rc == 0; i++) {
        int padlen = (i * 37 + a->id * 11) % 257;
        int n = snprintf(line, sizeof(line), "{\"t\":%d,\"i\":%d,\"pad\":\"%.*s\"}\n", a->id, i,
                         padlen, pad);
        /* Fake time: a "second" passes every 997 lines, so both triggers fire. */
        uint64_t now = (uint64_t)(i / 997) * SB_JSONL_BATCH_NS;
        a->rc = sb_jsonl_batch_add(&b, line, (size_t)n, now, &err);
    }
    if (a->rc == 0)
        a->rc = sb_jsonl_batch_flush(&b, UINT64_MAX, &err);
    sb_jsonl_batch_release(&b);
    return NULL;
}

struct check_arg {
    unsigned char seen[THREADS][LINES_PER_THREAD];
    long dup;
};

static int check_line(char *line, size_t len, long lineno, void *arg)
{
    (void)lineno;
    struct check_arg *c = arg;
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t");
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, "i");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(j, "pad");
    int bad = 1;
    if (cJSON_IsNumber(t) && cJSON_IsNumber(i) && cJSON_IsString(pad) && t->valueint >= 0 &&
        t->valueint < THREADS && i->valueint >= 0 && i->valueint < LINES_PER_THREAD &&
        (int)strlen(pad->valuestring) == (i->valueint * 37 + t->valueint * 11) % 257) {
        bad = 0;
        if (c->seen[t->valueint][i->valueint]++)
            c->dup++;
    }
    cJSON_Delete(j);
    return bad;
}

static void test_threads(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof(path));
    struct sb_jsonl_sink s;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_open(&s, path, &err), 0);
    pthread_t th[THREADS];
    struct writer_arg args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (struct writer_arg){&s, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(args[t].rc, 0);
    }
    assert_int_equal(s.lines_written, THREADS * LINES_PER_THREAD);
    assert_int_equal(sb_jsonl_close(&s, &err), 0);

    struct check_arg *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    struct sb_jsonl_stats st;
    assert_int_equal(sb_jsonl_read(path, check_line, c, &st, &err), 0);
    assert_int_equal(st.lines, THREADS * LINES_PER_THREAD);
    assert_int_equal(st.bad_lines, 0);
    assert_int_equal(st.blank_lines, 0);
    assert_false(st.torn_last);
    assert_int_equal(c->dup, 0);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < LINES_PER_THREAD; i++)
            if (!c->seen[t][i])
                fail_msg("line t=%d i=%d missing", t, i);
    free(c);
    unlink(path);
}

/* ---- reader ---- */

/* Collects delivered lines as "a|b|c"; lines starting with "bad" are marked bad, "stop" aborts. */
struct collect {
    struct sb_buf out;
    long calls;
};

static int collect_line(char *line, size_t len, long lineno, void *arg)
{
    (void)lineno;
    struct collect *c = arg;
    c->calls++;
    assert_int_equal(strlen(line), len); /* NUL-terminated, no embedded '\n' */
    assert_null(memchr(line, '\n', len));
    if (strncmp(line, "stop", 4) == 0)
        return -7;
    if (c->out.len)
        sb_buf_add(&c->out, "|", 1);
    sb_buf_add(&c->out, line, len);
    line[0] = '#'; /* the callback may scribble on its line */
    return strncmp(line + 1, "ad", 2) == 0 && len >= 3 ? 1 : 0;
}

static void test_read_cases(void **state)
{
    (void)state;
    static const struct {
        const char *content;
        const char *delivered;
        long lines, blank, bad;
        long bad_lineno[3];
        bool torn;
        long torn_lineno;
    } cases[] = {
        {"", "", 0, 0, 0, {0}, false, 0},
        {"a\nb\n", "a|b", 2, 0, 0, {0}, false, 0},
        {"a\n\nb\n", "a|b", 2, 1, 0, {0}, false, 0},
        {"\n\n\n", "", 0, 3, 0, {0}, false, 0},
        {"a\n  \t\r\nb\r\n", "a|b", 2, 1, 0, {0}, false, 0},
        {"  a  \n", "  a  ", 1, 0, 0, {0}, false, 0},
        {"a\nb", "a", 1, 0, 0, {0}, true, 2},
        {"a\n\n{\"torn\":", "a", 1, 1, 0, {0}, true, 3},
        {"x", "", 0, 0, 0, {0}, true, 1},
        {"a\n   ", "a", 1, 1, 0, {0}, false, 0},
        {"ok\nbad1\nok\n\nbad2\n", "ok|bad1|ok|bad2", 2, 1, 2, {2, 5}, false, 0},
        {"bad\nbad\nbad\n", "bad|bad|bad", 0, 0, 3, {1, 2, 3}, false, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64];
        temp_path(path, sizeof(path));
        write_file(path, cases[i].content, strlen(cases[i].content));
        struct collect c = {0};
        sb_buf_init(&c.out, 1 << 20);
        struct sb_jsonl_stats st;
        struct sb_err err = {0};
        assert_int_equal(sb_jsonl_read(path, collect_line, &c, &st, &err), 0);
        const char *got = c.out.data ? c.out.data : "";
        if (strcmp(got, cases[i].delivered) != 0)
            fail_msg("case %zu: delivered '%s', want '%s'", i, got, cases[i].delivered);
        assert_int_equal(st.lines, cases[i].lines);
        assert_int_equal(st.blank_lines, cases[i].blank);
        assert_int_equal(st.bad_lines, cases[i].bad);
        for (long k = 0; k < cases[i].bad; k++)
            assert_int_equal(st.bad_lineno[k], cases[i].bad_lineno[k]);
        assert_int_equal(st.torn_last, cases[i].torn);
        assert_int_equal(st.torn_lineno, cases[i].torn_lineno);
        assert_int_equal(st.bytes, strlen(cases[i].content));
        sb_buf_release(&c.out);
        unlink(path);
    }
}

static void test_read_abort_and_bad_keep(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof(path));
    /* 12 bad lines: all counted, the first 8 numbers kept; then the callback stops the read. */
    struct sb_buf content;
    sb_buf_init(&content, 1 << 20);
    for (int i = 0; i < 12; i++)
        sb_buf_adds(&content, i % 2 ? "bad\n\n" : "bad\n");
    sb_buf_adds(&content, "stop\nnever\n");
    write_file(path, content.data, content.len);
    struct collect c = {0};
    sb_buf_init(&c.out, 1 << 20);
    struct sb_jsonl_stats st;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_read(path, collect_line, &c, &st, &err), -7);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "line 19"));
    assert_int_equal(c.calls, 13);
    assert_int_equal(st.bad_lines, 12);
    static const long want[SB_JSONL_BAD_KEEP] = {1, 2, 4, 5, 7, 8, 10, 11};
    for (int k = 0; k < SB_JSONL_BAD_KEEP; k++)
        assert_int_equal(st.bad_lineno[k], want[k]);
    sb_buf_release(&c.out);
    sb_buf_release(&content);
    unlink(path);
}

/* The reference content of line i of the big file: its number, then filler of varying length. */
static size_t big_line(long i, char *dst, size_t cap)
{
    size_t len;
    if (i == 300)
        len = (size_t)3 << 19; /* 1.5 MiB: spans at least one read boundary by itself */
    else
        len = 20 + (size_t)((i * 7919) % 9000);
    assert_true(len < cap);
    int n = snprintf(dst, cap, "%ld:", i);
    memset(dst + n, 'a' + (int)(i % 26), len - (size_t)n);
    dst[len] = '\0';
    return len;
}

struct big_check {
    long next;
    char *want;
    long mismatches;
};

static int check_big(char *line, size_t len, long lineno, void *arg)
{
    struct big_check *c = arg;
    size_t wl = big_line(c->next, c->want, (size_t)4 << 20);
    if (lineno != c->next + 1 || len != wl || memcmp(line, c->want, len) != 0)
        c->mismatches++;
    c->next++;
    return 0;
}

static void test_read_big(void **state)
{
    (void)state;
    char path[64];
    temp_path(path, sizeof(path));
    char *line = malloc((size_t)4 << 20);
    assert_non_null(line);
    struct sb_buf content;
    sb_buf_init(&content, (size_t)64 << 20);
    long nlines = 0;
    while (content.len < ((size_t)3 << 20) + 12345) {
        size_t len = big_line(nlines, line, (size_t)4 << 20);
        assert_int_equal(sb_buf_add(&content, line, len), 0);
        assert_int_equal(sb_buf_add(&content, "\n", 1), 0);
        nlines++;
    }
    assert_true(nlines > 300);
    write_file(path, content.data, content.len);
    struct big_check c = {0, line, 0};
    struct sb_jsonl_stats st;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_read(path, check_big, &c, &st, &err), 0);
    assert_int_equal(c.mismatches, 0);
    assert_int_equal(c.next, nlines);
    assert_int_equal(st.lines, nlines);
    assert_int_equal(st.bytes, content.len);
    assert_false(st.torn_last);
    free(line);
    sb_buf_release(&content);
    unlink(path);
}

static int count_only(char *line, size_t len, long lineno, void *arg)
{
    (void)line;
    (void)len;
    (void)lineno;
    (*(long *)arg)++;
    return 0;
}

static void test_read_too_long(void **state)
{
    (void)state;
    /* A line over 16 MiB is counted bad and skipped; one of exactly 16 MiB is delivered; an
     * over-long unterminated tail is torn. */
    static const struct {
        size_t long_len;
        bool terminated;
        long lines, bad;
        bool torn;
    } cases[] = {
        {SB_JSONL_LINE_MAX + 1, true, 2, 1, false},
        {SB_JSONL_LINE_MAX, true, 3, 0, false},
        {SB_JSONL_LINE_MAX + 5, false, 1, 0, true},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64];
        temp_path(path, sizeof(path));
        struct sb_buf content;
        sb_buf_init(&content, (size_t)64 << 20);
        sb_buf_adds(&content, "first\n");
        char *big = malloc(cases[i].long_len);
        assert_non_null(big);
        memset(big, 'x', cases[i].long_len);
        assert_int_equal(sb_buf_add(&content, big, cases[i].long_len), 0);
        free(big);
        if (cases[i].terminated)
            sb_buf_adds(&content, "\nlast\n");
        write_file(path, content.data, content.len);
        long calls = 0;
        struct sb_jsonl_stats st;
        struct sb_err err = {0};
        assert_int_equal(sb_jsonl_read(path, count_only, &calls, &st, &err), 0);
        assert_int_equal(calls, cases[i].lines);
        assert_int_equal(st.lines, cases[i].lines);
        assert_int_equal(st.bad_lines, cases[i].bad);
        if (cases[i].bad)
            assert_int_equal(st.bad_lineno[0], 2);
        assert_int_equal(st.torn_last, cases[i].torn);
        if (cases[i].torn)
            assert_int_equal(st.torn_lineno, 2);
        sb_buf_release(&content);
        unlink(path);
    }
}

static void test_read_missing(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/tmp/sb-no-such-dir-7f3a/metrics.jsonl",
        "/tmp/sb-no-such-file-7f3a.jsonl",
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(paths); i++) {
        long calls = 0;
        struct sb_jsonl_stats st;
        struct sb_err err = {0};
        assert_int_equal(sb_jsonl_read(paths[i], count_only, &calls, &st, &err), -1);
        assert_non_null(strstr(err.msg, paths[i]));
        assert_non_null(strstr(err.msg, "No such file or directory"));
        assert_int_equal(calls, 0);
    }
    /* A directory opens but cannot be read. */
    long calls = 0;
    struct sb_err err = {0};
    assert_int_equal(sb_jsonl_read("/tmp", count_only, &calls, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "cannot read '/tmp'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink_writes_lines),
        cmocka_unit_test(test_sink_appends),
        cmocka_unit_test(test_sink_rejects_partial),
        cmocka_unit_test(test_open_error),
        cmocka_unit_test(test_dev_full),
        cmocka_unit_test(test_partial_write_rolled_back),
        cmocka_unit_test(test_batch_thresholds),
        cmocka_unit_test(test_batch_oversized_line),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_read_cases),
        cmocka_unit_test(test_read_abort_and_bad_keep),
        cmocka_unit_test(test_read_big),
        cmocka_unit_test(test_read_too_long),
        cmocka_unit_test(test_read_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
