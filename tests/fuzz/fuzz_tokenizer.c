/*
 * The tokenizer (sb/tokenizer.h). The first byte picks what the rest is:
 *  - even: text encoded with a real byte-level BPE tokenizer.json (Llama 3.1 from tests/.cache,
 *    or $SB_FUZZ_TOKENIZER). Valid UTF-8 must decode back to exactly the same bytes. Invalid
 *    UTF-8 is made valid first (U+FFFD per invalid subpart, as src/tokenizer/tokenizer.c says and
 *    as HF's Rust &str input forces), so there the decoded text must be valid UTF-8 and must
 *    itself round-trip exactly. The count must equal the encoded length and every id must be
 *    below the vocabulary size.
 *  - odd: a tokenizer.json itself, loaded; when it loads, a fixed text and the input's own bytes
 *    are encoded and decoded (no round trip is promised for an arbitrary vocabulary).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "sb/tokenizer.h"

#ifndef SB_FUZZ_TOKENIZER
#define SB_FUZZ_TOKENIZER ""
#endif

static struct sb_tokenizer *real;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = getenv("SB_FUZZ_TOKENIZER");
    if (!path || !*path)
        path = SB_FUZZ_TOKENIZER;
    struct stat st;
    struct sb_err err = {0};
    if (!*path || stat(path, &st) != 0)
        fprintf(stderr,
                "fuzz_tokenizer: no tokenizer.json at '%s' (scripts/fetch-test-"
                "tokenizers.sh fetches it): round trips not fuzzed\n",
                path);
    else if (sb_tokenizer_load(path, &real, &err) != 0)
        sb_fuzz_fail("cannot load '%s': %s", path, err.msg);
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static void encode_decode(struct sb_tokenizer *tok, const char *text, size_t len, bool round_trip);

/* The round-trip property of the header comment, on the real tokenizer. */
static void check_round_trip(struct sb_tokenizer *tok, const char *text, size_t len)
{
    if (valid_utf8((const unsigned char *)text, len)) {
        encode_decode(tok, text, len, true);
        return;
    }
    struct sb_ids ids = {0};
    struct sb_err err = {0};
    struct sb_buf once;
    sb_buf_init(&once, 64u << 20);
    if (sb_tokenizer_encode(tok, text, len, false, &ids, &err) != 0 ||
        sb_tokenizer_decode(tok, ids.v, ids.n, &once, &err) != 0)
        sb_fuzz_fail("encode/decode failed: %s", err.msg);
    if (!valid_utf8((const unsigned char *)once.data, once.len))
        sb_fuzz_fail("invalid UTF-8 in, invalid UTF-8 out");
    encode_decode(tok, once.data ? once.data : "", once.len, true);
    sb_buf_release(&once);
    sb_ids_release(&ids);
}

static void encode_decode(struct sb_tokenizer *tok, const char *text, size_t len, bool round_trip)
{
    struct sb_ids ids = {0};
    struct sb_err err = {0};
    bool bos = len > 0 && (text[0] & 2);
    if (sb_tokenizer_encode(tok, text, len, bos, &ids, &err) != 0)
        sb_fuzz_fail("encode failed: %s", err.msg);
    size_t count = 0;
    if (sb_tokenizer_count(tok, text, len, bos, &count, &err) != 0 || count != ids.n)
        sb_fuzz_fail("count %zu, encode gave %zu ids", count, ids.n);
    size_t vocab = sb_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || (size_t)ids.v[i] >= vocab)
            sb_fuzz_fail("id %d outside the vocabulary (%zu)", (int)ids.v[i], vocab);
    struct sb_buf out;
    sb_buf_init(&out, 64u << 20);
    /* Without the special tokens, so that the decoded text is the input alone. */
    if (!bos) {
        if (sb_tokenizer_decode(tok, ids.v, ids.n, &out, &err) != 0)
            sb_fuzz_fail("decode failed: %s", err.msg);
        if (round_trip && (out.len != len || (len && memcmp(out.data, text, len) != 0))) {
            size_t k = 0;
            while (k < len && k < out.len && out.data[k] == text[k])
                k++;
            fprintf(stderr, "first difference at byte %zu:", k);
            for (size_t j = k; j < k + 8 && j < len; j++)
                fprintf(stderr, " %02x", (unsigned char)text[j]);
            fprintf(stderr, " became");
            for (size_t j = k; j < k + 8 && j < out.len; j++)
                fprintf(stderr, " %02x", (unsigned char)out.data[j]);
            fputc('\n', stderr);
            sb_fuzz_fail("round trip changed %zu bytes into %zu", len, out.len);
        }
    }
    sb_buf_release(&out);
    sb_ids_release(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *p = malloc(size);
    if (!p)
        abort();
    memcpy(p, data + 1, size - 1);
    if (!(data[0] & 1)) {
        if (real)
            check_round_trip(real, p, size - 1);
    } else {
        const char *path = sb_fuzz_file("tokenizer.json", data + 1, size - 1);
        struct sb_tokenizer *tok = NULL;
        struct sb_err err = {0};
        if (sb_tokenizer_load(path, &tok, &err) == 0) {
            static const char text[] = "aab ab a\xc3\xa9 <s>\n\xff";
            encode_decode(tok, text, sizeof(text) - 1, false);
            encode_decode(tok, p, size - 1 < 256 ? size - 1 : 256, false);
            sb_tokenizer_free(tok);
        } else if (err.msg[0] == '\0') {
            sb_fuzz_fail("load failed without a message");
        }
    }
    free(p);
    return 0;
}
