/* Unit tests for sb/util.h and sb/buf.h: parsing, escaping, UTF-8 cuts, atomic writes, the
 * generator, bounded buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/util.h"

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } cases[] = {
        {"4096", 0, 4096},
        {"4k", 0, 4096},
        {"64KiB", 0, 65536},
        {"8GiB", 0, 8ull << 30},
        {"1.5GB", 0, 3ull << 29},
        {"2 MiB", 0, 2u << 20},
        {"12x", -1, 0},
        {"", -1, 0},
        {"-5", -1, 0},
        {"1T", 0, 1ull << 40},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        uint64_t v = 0;
        assert_int_equal(sb_parse_size(cases[i].in, &v), cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(v, cases[i].want);
    }
}

static void test_parse_numbers(void **state)
{
    (void)state;
    long long v;
    double d;
    bool b;
    assert_int_equal(sb_parse_ll("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(sb_parse_ll("42x", &v), -1);
    assert_int_equal(sb_parse_ll("", &v), -1);
    assert_int_equal(sb_parse_ll("99999999999999999999", &v), -1);
    assert_int_equal(sb_parse_double("2.5", &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(sb_parse_double("nan", &d), -1);
    assert_int_equal(sb_parse_bool("Yes", &b), 0);
    assert_true(b);
    assert_int_equal(sb_parse_bool("off", &b), 0);
    assert_false(b);
    assert_int_equal(sb_parse_bool("maybe", &b), -1);
}

static void test_json_escape(void **state)
{
    (void)state;
    char out[64];
    const char in[] = "a\"b\\c\nd\x01";
    size_t n = sb_json_escape(out, sizeof(out), in, strlen(in));
    assert_string_equal(out, "a\\\"b\\\\c\\nd\\u0001");
    assert_int_equal(n, strlen(out));
    /* Too small: truncated but terminated, and the needed size is returned. */
    char small[4];
    assert_int_equal(sb_json_escape(small, sizeof(small), in, strlen(in)), n);
    assert_int_equal(strlen(small), 3);
}

static void test_utf8_truncate(void **state)
{
    (void)state;
    /* The longest prefix of at most max bytes that ends on a character boundary. */
    static const struct {
        const char *s;
        size_t max, want;
    } cases[] = {
        {"abc", 5, 3},
        {"abc", 2, 2},
        {"a\xc3\xa9", 2, 1},                /* inside a 2-byte character */
        {"a\xc3\xa9", 3, 3},                /* fits */
        {"\xe2\x82\xac\xe2\x82\xac", 4, 3}, /* inside the second 3-byte character */
        {"\xe2\x82\xac\xe2\x82\xac", 5, 3}, /* ... at its last byte */
        {"\xe2\x82\xac\xe2\x82\xac", 2, 0}, /* inside the first */
        {"\xf0\x9f\x98\x80z", 3, 0},        /* inside a 4-byte character */
        {"\xf0\x9f\x98\x80z", 4, 4},        /* right after it */
        {"a\x80\x80\x80\x80\x80", 4, 4},    /* stray continuation bytes: no character to keep */
        {"\xc3\xa9\xc3\xa9", 0, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        size_t got = sb_utf8_truncate(cases[i].s, strlen(cases[i].s), cases[i].max);
        if (got != cases[i].want)
            fail_msg("case %zu: %zu, want %zu", i, got, cases[i].want);
    }
    /* The copy: 300 bytes of "\xc3\xa9" into 256 bytes keeps 127 whole characters. */
    char src[301], dst[256];
    for (int i = 0; i < 300; i += 2)
        memcpy(src + i, "\xc3\xa9", 2);
    src[300] = '\0';
    assert_int_equal(sb_utf8_copy(dst, sizeof(dst), src, 300), 254);
    assert_int_equal(strlen(dst), 254);
    assert_memory_equal(dst, src, 254);
    /* "\xe2\x82\xac" * 100 into 256: 85 characters (255 bytes) fit exactly. */
    for (int i = 0; i < 300; i += 3)
        memcpy(src + i, "\xe2\x82\xac", 3);
    assert_int_equal(sb_utf8_copy(dst, sizeof(dst), src, 300), 255);
    assert_int_equal(sb_utf8_copy(dst, 3, src, 300), 0);
    assert_string_equal(dst, "");
    assert_int_equal(sb_utf8_copy(dst, sizeof(dst), "short", 5), 5);
    assert_string_equal(dst, "short");
}

static void test_json_escape_invalid_utf8(void **state)
{
    (void)state;
    /* Valid UTF-8 passes through; each maximal invalid subpart becomes U+FFFD (Unicode's
       "substitution of maximal subparts"), so the output is always valid UTF-8. */
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"\xc3", "\xef\xbf\xbd"},
        {"\xc3(", "\xef\xbf\xbd("},
        {"\xe2\x82", "\xef\xbf\xbd"},
        {"\xe2\x82z", "\xef\xbf\xbdz"},
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\x9f\xbf", "\xed\x9f\xbf"},         /* U+D7FF, just below the surrogates */
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"}, /* U+10FFFF */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\x80", "\xef\xbf\xbd"},
        {"a\"\xff\n", "a\\\"\xef\xbf\xbd\\n"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char out[64];
        size_t n = sb_json_escape(out, sizeof(out), cases[i].in, strlen(cases[i].in));
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu: got '%s'", i, out);
        assert_int_equal(n, strlen(cases[i].want));
        assert_int_equal(sb_json_escape(NULL, 0, cases[i].in, strlen(cases[i].in)), n);
    }
}

static void test_write_file_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/sbtest-atomic-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/run.json", dir);
    struct sb_err err = {0};
    assert_int_equal(sb_write_file_atomic(path, "old\n", 4, &err), 0);
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    assert_int_equal(sb_buf_add_file(&b, path), 0);
    assert_string_equal(b.data, "old\n");

    /* The disk "fills" (RLIMIT_FSIZE: writes past 16 bytes fail with EFBIG): the old content
       stays whole, no temporary file is left, the error names the file. */
    char big[4096];
    memset(big, 'n', sizeof(big));
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 16;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = sb_write_file_atomic(path, big, sizeof(big), &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "File too large"));
    sb_buf_reset(&b);
    assert_int_equal(sb_buf_add_file(&b, path), 0);
    assert_string_equal(b.data, "old\n");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 1);

    /* A directory that does not exist: an error naming the file, nothing created. */
    char nodir[96];
    snprintf(nodir, sizeof(nodir), "%s/missing/run.json", dir);
    assert_int_equal(sb_write_file_atomic(nodir, "x", 1, &err), -1);
    assert_non_null(strstr(err.msg, nodir));

    /* And the new content replaces the old when it fits. */
    assert_int_equal(sb_write_file_atomic(path, big, sizeof(big), &err), 0);
    sb_buf_reset(&b);
    assert_int_equal(sb_buf_add_file(&b, path), 0);
    assert_int_equal(b.len, sizeof(big));
    sb_buf_release(&b);
    unlink(path);
    rmdir(dir);
}

static void test_rng_deterministic(void **state)
{
    (void)state;
    struct sb_rng a, b, c;
    sb_rng_seed(&a, 7);
    sb_rng_seed(&b, 7);
    sb_rng_seed(&c, 8);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = sb_rng_next(&a);
        assert_int_equal(x, sb_rng_next(&b));
        same_c += x == sb_rng_next(&c);
    }
    assert_int_equal(same_c, 0);
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        double u = sb_rng_uniform(&a);
        assert_true(u >= 0 && u < 1);
        sum += u;
    }
    assert_true(sum / 10000 > 0.45 && sum / 10000 < 0.55);
    for (int i = 0; i < 1000; i++)
        assert_true(sb_rng_below(&a, 7) < 7);
}

static void test_buf_limit(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 10);
    assert_int_equal(sb_buf_adds(&b, "hello"), 0);
    assert_int_equal(sb_buf_addf(&b, "%d", 12345), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "hello12345");
    assert_int_equal(sb_buf_adds(&b, "x"), -1); /* over the limit: refused, unchanged */
    assert_int_equal(b.len, 10);
    sb_buf_consume(&b, 5);
    assert_string_equal(b.data, "12345");
    size_t len;
    char *p = sb_buf_detach(&b, &len);
    assert_int_equal(len, 5);
    assert_null(b.data);
    free(p);
    /* An unbounded buffer (max SIZE_MAX) grows like any other: the cap clamp must not wrap. */
    sb_buf_init(&b, SIZE_MAX);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sb_buf_adds(&b, "0123456789"), 0);
    assert_int_equal(b.len, 1000);
    assert_true(b.cap > 1000);
    assert_int_equal(sb_buf_add(&b, "x", SIZE_MAX - b.len), -1); /* no room for the NUL */
    sb_buf_release(&b);
    /* Whole files: appended; a missing one fails; the limit holds. */
    char path[] = "/tmp/sb_test_util_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abcdef", 6), 6);
    close(fd);
    sb_buf_init(&b, 8);
    assert_int_equal(sb_buf_adds(&b, ">"), 0);
    assert_int_equal(sb_buf_add_file(&b, path), 0);
    assert_string_equal(b.data, ">abcdef");
    assert_int_equal(sb_buf_add_file(&b, path), -1); /* 13 bytes would pass the limit of 8 */
    assert_int_equal(sb_buf_add_file(&b, "/nonexistent-dir/x"), -1);
    sb_buf_release(&b);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_utf8_truncate),
        cmocka_unit_test(test_json_escape_invalid_utf8),
        cmocka_unit_test(test_write_file_atomic),
        cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_buf_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
