/* Unit tests for sb/util.h and sb/buf.h: parsing, escaping, the generator, bounded buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <cmocka.h>

#include "sb/buf.h"
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
        cmocka_unit_test(test_parse_size),  cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_json_escape), cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_buf_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
