/* Integration tests of `sparkbench prompts` and of the shipped inputs/prompts/: every
 * <N>_tokens.txt holds exactly N tokens (no BOS) under the real Llama 3.1 tokenizer.json
 * (tests/.cache, fetched by the setup/fetch_tokenizers fixture), counted here with the library's
 * tokenizer; the output is the same for the same seed and differs for another; the text is varied
 * prose, not one paragraph repeated; MANIFEST.json names each file, its count and the tokenizer's
 * sha256 (checked against sha256sum); bad sizes are usage errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "sb/tokenizer.h"

static const char *bin, *srcdir;
static char tok[1024];

static size_t count_file(struct sb_tokenizer *t, const char *path)
{
    char *text = sb_test_read_file(path);
    if (!text)
        fail_msg("cannot read %s", path);
    size_t n = 0;
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_tokenizer_count(t, text, strlen(text), false, &n, &err), 0);
    free(text);
    return n;
}

static void sha256_of(const char *path, char hex[65])
{
    const char *argv[] = {"/usr/bin/sha256sum", path, NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run_limit(argv, &out, &err, 60), 0);
    assert_true(strlen(out) >= 64);
    memcpy(hex, out, 64);
    hex[64] = '\0';
    free(out), free(err);
}

/* Distinct sentences (split at ". ") over all sentences: one paragraph repeated gives a low ratio.
 */
static double distinct_ratio(const char *text)
{
    size_t cap = 4096, n = 0, distinct = 0;
    uint64_t *seen = calloc(cap, sizeof(*seen));
    const char *p = text;
    while (*p) {
        const char *e = strstr(p, ". ");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
        bool dup = false;
        for (size_t i = 0; i < distinct; i++)
            dup = dup || seen[i] == h;
        if (!dup && distinct < cap)
            seen[distinct++] = h;
        n++;
        p = e ? e + 2 : p + len;
    }
    free(seen);
    return n ? (double)distinct / (double)n : 0;
}

static void test_prompts_exact(void **state)
{
    (void)state;
    struct sb_tokenizer *t = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_tokenizer_load(tok, &t, &err), 0);
    char *dir = sb_test_tmpdir("/tmp", "prompts");
    char out1[1100], out2[1100], out3[1100], path[1200];
    snprintf(out1, sizeof(out1), "%s/a", dir);
    snprintf(out2, sizeof(out2), "%s/b", dir);
    snprintf(out3, sizeof(out3), "%s/c", dir);
    const char *sizes = "128,1000,1k,4096";
    const char *a1[] = {bin,       "prompts", "--tokenizer", tok, "--out", out1,
                        "--sizes", sizes,     "--seed",      "7", NULL};
    const char *a2[] = {bin,       "prompts", "--tokenizer", tok, "--out", out2,
                        "--sizes", sizes,     "--seed",      "7", NULL};
    const char *a3[] = {bin,       "prompts", "--tokenizer", tok, "--out", out3,
                        "--sizes", sizes,     "--seed",      "8", NULL};
    char *so = NULL, *se = NULL;
    for (int k = 0; k < 3; k++) {
        const char *const *argv = k == 0 ? a1 : k == 1 ? a2 : a3;
        int rc = sb_proc_run_limit(argv, &so, &se, 120);
        if (rc != 0)
            fail_msg("prompts exit %d: %s", rc, se ? se : "");
        free(so), free(se);
    }

    static const struct {
        const char *file;
        size_t tokens;
    } want[] = {{"128_tokens.txt", 128},
                {"1000_tokens.txt", 1000},
                {"1024_tokens.txt", 1024},
                {"1k_tokens.txt", 1024},
                {"4096_tokens.txt", 4096}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", out1, want[i].file);
        size_t n = count_file(t, path);
        if (n != want[i].tokens)
            fail_msg("%s: %zu tokens, want %zu", want[i].file, n, want[i].tokens);
        char *x = sb_test_read_file(path);
        snprintf(path, sizeof(path), "%s/%s", out2, want[i].file);
        char *y = sb_test_read_file(path);
        snprintf(path, sizeof(path), "%s/%s", out3, want[i].file);
        char *z = sb_test_read_file(path);
        assert_non_null(y);
        assert_non_null(z);
        assert_string_equal(x, y);     /* same seed, same bytes */
        assert_string_not_equal(x, z); /* another seed, another text */
        assert_int_equal(count_file(t, path), want[i].tokens);
        if (want[i].tokens == 4096 && distinct_ratio(x) < 0.9)
            fail_msg("4096_tokens.txt: only %.2f of its sentences are distinct", distinct_ratio(x));
        free(x), free(y), free(z);
    }

    /* MANIFEST.json */
    char hex[65];
    sha256_of(tok, hex);
    snprintf(path, sizeof(path), "%s/MANIFEST.json", out1);
    cJSON *m = sb_test_read_json(path);
    assert_non_null(m);
    const cJSON *tj = cJSON_GetObjectItem(m, "tokenizer");
    assert_non_null(tj);
    assert_string_equal(sb_test_str(tj, "sha256"), hex);
    assert_non_null(sb_test_str(tj, "name"));
    assert_true(strlen(sb_test_str(tj, "name")) > 0);
    assert_int_equal((int)sb_test_num(m, "seed"), 7);
    const cJSON *files = cJSON_GetObjectItem(m, "files");
    assert_int_equal(cJSON_GetArraySize(files), 5);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = false;
        const cJSON *f;
        cJSON_ArrayForEach(f, files)
        {
            if (strcmp(sb_test_str(f, "file"), want[i].file) != 0)
                continue;
            found = true;
            assert_int_equal((size_t)sb_test_num(f, "tokens"), want[i].tokens);
        }
        if (!found)
            fail_msg("MANIFEST.json lacks %s", want[i].file);
    }
    cJSON_Delete(m);
    sb_tokenizer_free(t);
    sb_test_rm_rf(dir);
    free(dir);
}

static void test_prompts_usage(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "prompts");
    static const struct {
        const char *args[6];
        int rc;
        const char *want;
    } rows[] = {
        {{"--out", "DIR"}, 2, "--tokenizer is required"},
        {{"--tokenizer", "TOK"}, 2, "--out is required"},
        {{"--tokenizer", "TOK", "--out", "DIR", "--sizes", "12x"}, 2, "'12x' is not a size"},
        {{"--tokenizer", "TOK", "--out", "DIR", "--sizes", "0"}, 2, "'0' is not a size"},
        {{"--tokenizer", "/nonexistent/tokenizer.json", "--out", "DIR"}, 1, "nonexistent"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *argv[10] = {bin, "prompts"};
        size_t k = 2;
        for (size_t j = 0; j < 6 && rows[i].args[j]; j++) {
            const char *a = rows[i].args[j];
            argv[k++] = strcmp(a, "TOK") == 0 ? tok : strcmp(a, "DIR") == 0 ? dir : a;
        }
        char *out = NULL, *err = NULL;
        assert_int_equal(sb_proc_run_limit(argv, &out, &err, 60), rows[i].rc);
        if (!strstr(err, rows[i].want))
            fail_msg("row %zu: stderr '%s' lacks '%s'", i, err, rows[i].want);
        assert_int_equal(sb_test_count(err, "\n"), 1);
        free(out), free(err);
    }
    sb_test_rm_rf(dir);
    free(dir);
}

/* N from "<N>_tokens.txt" or "<K>k_tokens.txt" (K * 1024); 0 for other names. */
static size_t size_of_name(const char *name)
{
    char *end;
    unsigned long long v = strtoull(name, &end, 10);
    if (end == name)
        return 0;
    if (*end == 'k') {
        v *= 1024;
        end++;
    }
    return strcmp(end, "_tokens.txt") == 0 ? (size_t)v : 0;
}

static void test_shipped_prompts_exact(void **state)
{
    (void)state;
    struct sb_tokenizer *t = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_tokenizer_load(tok, &t, &err), 0);
    char dirpath[1100], path[1400];
    snprintf(dirpath, sizeof(dirpath), "%s/inputs/prompts", srcdir);
    static const size_t plan[] = {128,   256,   512,   1024,  1536,  2048,  4096,  8192,
                                  10000, 12000, 14000, 15000, 16384, 32768, 64000, 65536};
    bool have[sizeof(plan) / sizeof(plan[0])] = {0};
    DIR *d = opendir(dirpath);
    assert_non_null(d);
    struct dirent *e;
    int nfiles = 0;
    while ((e = readdir(d)) != NULL) {
        size_t want = size_of_name(e->d_name);
        if (!want)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dirpath, e->d_name);
        size_t n = count_file(t, path);
        if (n != want)
            fail_msg("inputs/prompts/%s holds %zu tokens, not %zu", e->d_name, n, want);
        for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++)
            have[i] = have[i] || plan[i] == want;
        nfiles++;
    }
    closedir(d);
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++)
        if (!have[i])
            fail_msg("inputs/prompts/ has no %zu_tokens.txt", plan[i]);

    char hex[65];
    sha256_of(tok, hex);
    snprintf(path, sizeof(path), "%s/MANIFEST.json", dirpath);
    cJSON *m = sb_test_read_json(path);
    if (!m)
        fail_msg("cannot read %s", path);
    assert_string_equal(sb_test_str(cJSON_GetObjectItem(m, "tokenizer"), "sha256"), hex);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "files")), nfiles);
    cJSON_Delete(m);
    sb_tokenizer_free(t);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    snprintf(tok, sizeof(tok), "%s/tests/.cache/tokenizers/llama3_1/tokenizer.json", argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompts_exact),
        cmocka_unit_test(test_prompts_usage),
        cmocka_unit_test(test_shipped_prompts_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
