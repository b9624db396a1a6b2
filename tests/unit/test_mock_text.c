/*
 * Unit tests for sb/mock_text.h: the prompt-token estimate and the token generator in lorem and
 * echo modes (determinism, shape of each token, wrapping, UTF-8-safe cutting of long words).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sb/mock_text.h"
#include "sb/util.h"

static void test_estimate_tokens(void **state)
{
    (void)state;
    static const struct {
        size_t bytes;
        long long want;
    } cases[] = {
        {0, 0}, {1, 1}, {3, 1}, {4, 1}, {5, 2}, {8, 2}, {9, 3}, {4000, 1000}, {4001, 1001},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_int_equal(sb_mock_estimate_tokens(cases[i].bytes), cases[i].want);
}

/* Checks the shape every token must have and returns its word (after the space). */
static const char *check_token(const char *buf, size_t len)
{
    assert_true(len >= 2);
    assert_int_equal(strlen(buf), len);
    assert_int_equal(buf[0], ' ');
    assert_int_not_equal(buf[1], ' ');
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        /* nothing that needs JSON escaping beyond plain text */
        assert_true(c >= 0x20 && c != '"' && c != '\\' && c != ' ');
    }
    return buf + 1;
}

static void test_lorem_deterministic(void **state)
{
    (void)state;
    static const char prompt[] = "Tell me about storage tiers.";
    static const char other_prompt[] = "Tell me about storage tiers!";
    struct sb_mock_textgen a, b, c, d;
    sb_mock_textgen_init(&a, SB_MOCK_LOREM, 42, prompt, strlen(prompt));
    sb_mock_textgen_init(&b, SB_MOCK_LOREM, 42, prompt, strlen(prompt));
    sb_mock_textgen_init(&c, SB_MOCK_LOREM, 43, prompt, strlen(prompt));
    sb_mock_textgen_init(&d, SB_MOCK_LOREM, 42, other_prompt, strlen(other_prompt));
    int differ_seed = 0, differ_prompt = 0, distinct = 0;
    char first[64] = "";
    for (int i = 0; i < 100; i++) {
        char ta[64], tb[64], tc[64], td[64];
        size_t la = sb_mock_textgen_next(&a, ta, sizeof(ta));
        size_t lb = sb_mock_textgen_next(&b, tb, sizeof(tb));
        sb_mock_textgen_next(&c, tc, sizeof(tc));
        sb_mock_textgen_next(&d, td, sizeof(td));
        check_token(ta, la);
        check_token(tc, strlen(tc));
        assert_int_equal(la, lb);
        assert_string_equal(ta, tb);
        differ_seed += strcmp(ta, tc) != 0;
        differ_prompt += strcmp(ta, td) != 0;
        if (i == 0)
            snprintf(first, sizeof(first), "%s", ta);
        else
            distinct += strcmp(ta, first) != 0;
    }
    assert_int_equal(a.index, 100);
    assert_true(differ_seed > 50);
    assert_true(differ_prompt > 50);
    assert_true(distinct > 50); /* not one word over and over */
}

static void test_lorem_small_buffer(void **state)
{
    (void)state;
    struct sb_mock_textgen g;
    char buf[4];
    sb_mock_textgen_init(&g, SB_MOCK_LOREM, 1, "x", 1);
    for (int i = 0; i < 50; i++) {
        size_t n = sb_mock_textgen_next(&g, buf, sizeof(buf));
        assert_true(n < sizeof(buf));
        check_token(buf, n);
    }
    /* Too small for a space and one byte: nothing written, but the stream still advances. */
    long long before = g.index;
    assert_int_equal(sb_mock_textgen_next(&g, buf, 1), 0);
    assert_int_equal(g.index, before + 1);
}

static void test_echo_cycles(void **state)
{
    (void)state;
    static const struct {
        const char *prompt;
        const char *want[8];
    } cases[] = {
        {"alpha beta gamma",
         {" alpha", " beta", " gamma", " alpha", " beta", " gamma", " alpha", " beta"}},
        {"  one\ttwo\n\nthree  ",
         {" one", " two", " three", " one", " two", " three", " one", " two"}},
        {"solo", {" solo", " solo", " solo", " solo", " solo", " solo", " solo", " solo"}},
        {"a b", {" a", " b", " a", " b", " a", " b", " a", " b"}},
        {"{\"k\":1}",
         {" {\"k\":1}", " {\"k\":1}", " {\"k\":1}", " {\"k\":1}", " {\"k\":1}", " {\"k\":1}",
          " {\"k\":1}", " {\"k\":1}"}},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_mock_textgen g;
        sb_mock_textgen_init(&g, SB_MOCK_ECHO, 7, cases[i].prompt, strlen(cases[i].prompt));
        for (size_t t = 0; t < 8; t++) {
            char buf[64];
            size_t n = sb_mock_textgen_next(&g, buf, sizeof(buf));
            assert_string_equal(buf, cases[i].want[t]);
            assert_int_equal(n, strlen(cases[i].want[t]));
        }
    }
    /* Only prompt_len bytes are read: the rest of the string is not part of the prompt. */
    struct sb_mock_textgen g;
    char buf[64];
    sb_mock_textgen_init(&g, SB_MOCK_ECHO, 7, "red green blue", 9);
    sb_mock_textgen_next(&g, buf, sizeof(buf));
    assert_string_equal(buf, " red");
    sb_mock_textgen_next(&g, buf, sizeof(buf));
    assert_string_equal(buf, " green");
    sb_mock_textgen_next(&g, buf, sizeof(buf));
    assert_string_equal(buf, " red");
}

/* The lorem vocabulary is lowercase ASCII words; none of the prompts below has one. */
static bool is_lorem_word(const char *w)
{
    for (const char *p = w; *p; p++)
        if (*p < 'a' || *p > 'z')
            return false;
    return *w != '\0' && strcmp(w, "ignored") != 0;
}

static void test_echo_fallback(void **state)
{
    (void)state;
    static const struct {
        const char *prompt;
        size_t len;
    } cases[] = {{"", 0}, {NULL, 0}, {" \t\n ", 4}, {"ignored", 0}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_mock_textgen echo, lorem;
        sb_mock_textgen_init(&echo, SB_MOCK_ECHO, 5, cases[i].prompt, cases[i].len);
        sb_mock_textgen_init(&lorem, SB_MOCK_LOREM, 5, cases[i].prompt, cases[i].len);
        for (int t = 0; t < 20; t++) {
            char a[64], b[64];
            size_t n = sb_mock_textgen_next(&echo, a, sizeof(a));
            sb_mock_textgen_next(&lorem, b, sizeof(b));
            assert_true(is_lorem_word(check_token(a, n)));
            /* Same seed and prompt: the fallback is exactly the lorem stream. */
            assert_string_equal(a, b);
        }
    }
}

static void test_echo_long_word(void **state)
{
    (void)state;
    /* 20 x "é" (2 bytes each) = 40 bytes, then "a" + 20 x "é" = 41 bytes. */
    char even[64] = "", odd[64] = "a", prompt[256];
    for (int i = 0; i < 20; i++) {
        strncat(even, "\xc3\xa9", sizeof(even) - strlen(even) - 1);
        strncat(odd, "\xc3\xa9", sizeof(odd) - strlen(odd) - 1);
    }
    static const char ascii[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"; /* 46 bytes */
    snprintf(prompt, sizeof(prompt), "%s %s %s short", even, odd, ascii);

    static const struct {
        size_t len;       /* expected token length, the space included */
        const char *word; /* expected prefix of the source word */
    } want[] = {
        {33, NULL}, /* 16 x "é" = 32 bytes: the cut at 32 falls between two characters */
        {32, NULL}, /* "a" + 15 x "é" = 31 bytes: byte 32 would split the 16th "é" */
        {33, NULL}, /* ASCII cut at exactly 32 */
        {6, " short"},
    };
    const char *src[] = {even, odd, ascii, NULL};
    struct sb_mock_textgen g;
    sb_mock_textgen_init(&g, SB_MOCK_ECHO, 1, prompt, strlen(prompt));
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < SB_ARRAY_SIZE(want); i++) {
            char buf[64];
            size_t n = sb_mock_textgen_next(&g, buf, sizeof(buf));
            assert_int_equal(n, want[i].len);
            assert_true(n - 1 <= 32);
            if (want[i].word) {
                assert_string_equal(buf, want[i].word);
                continue;
            }
            assert_memory_equal(buf + 1, src[i], n - 1);
            /* Valid UTF-8 end: the byte after the token in the source starts a character. */
            assert_int_not_equal((unsigned char)src[i][n - 1] & 0xC0, 0x80);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_tokens),    cmocka_unit_test(test_lorem_deterministic),
        cmocka_unit_test(test_lorem_small_buffer), cmocka_unit_test(test_echo_cycles),
        cmocka_unit_test(test_echo_fallback),      cmocka_unit_test(test_echo_long_word),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
