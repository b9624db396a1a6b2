/*
 * A strict UTF-8 validator for tests, written from RFC 3629 section 4 independently of the
 * library's own decoder: no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no truncated sequences. Python's json reader and every other strict consumer of
 * metrics.jsonl reject what this rejects.
 */
#ifndef SB_TEST_UTF8_STRICT_H
#define SB_TEST_UTF8_STRICT_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is valid UTF-8; otherwise false with *bad_at the first bad byte's offset. */
static inline bool sb_test_utf8_valid(const char *str, size_t n, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
        if (c < 0x80)
            need = 0;
        else if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            goto bad;
        }
        if (n - i - 1 < need)
            goto bad;
        for (size_t k = 1; k <= need; k++) {
            unsigned char b = s[i + k];
            unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (b < l || b > h)
                goto bad;
        }
        i += need + 1;
    }
    return true;
bad:
    if (bad_at)
        *bad_at = i;
    return false;
}

#endif
