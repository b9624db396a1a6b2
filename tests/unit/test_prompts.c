/* Unit tests of the prompt sizes parser (digits, Kk aliases, refusals) and of SHA-256 against the
 * FIPS 180-4 / NIST example digests, the one-block-boundary lengths included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/prompts.h"
#include "sb/sha256.h"

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        long long n;
        bool alias;
    } rows[] = {
        {"128", 0, 128, false},        {"1536", 0, 1536, false},
        {"65536", 0, 65536, false},    {"1k", 0, 1024, true},
        {"64k", 0, 65536, true},       {"16K", 0, 16384, true},
        {"64", 0, 64, false},          {"63", -1, 0, false},
        {"0", -1, 0, false},           {"", -1, 0, false},
        {"k", -1, 0, false},           {"12x", -1, 0, false},
        {"1kk", -1, 0, false},         {"-5", -1, 0, false},
        {"99999999999", -1, 0, false}, {"16777216", 0, 16777216, false},
        {"16385k", -1, 0, false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        long long n = -1;
        bool alias = false;
        int rc = sb_prompts_parse_size(rows[i].in, &n, &alias);
        if (rc != rows[i].rc)
            fail_msg("'%s': rc %d, want %d", rows[i].in, rc, rows[i].rc);
        if (rc == 0 && (n != rows[i].n || alias != rows[i].alias))
            fail_msg("'%s': %lld alias=%d", rows[i].in, n, alias);
    }
}

static void hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha256(void **state)
{
    (void)state;
    char a56[57], a64[65], a119[120];
    memset(a56, 'a', 56), a56[56] = 0;
    memset(a64, 'a', 64), a64[64] = 0;
    memset(a119, 'a', 119), a119[119] = 0;
    static const char *abc2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const struct {
        const char *in;
        const char *want;
    } rows[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {abc2, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {a56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {a64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {a119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint8_t d[32];
        char got[65];
        sb_sha256(rows[i].in, strlen(rows[i].in), d);
        hex(d, got);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("row %zu (%zu bytes): %s, want %s", i, strlen(rows[i].in), got, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
