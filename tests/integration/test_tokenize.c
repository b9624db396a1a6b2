/* Integration tests of `sparkbench tokenize`: counts, ids and decoded text of a case file with the
 * real Llama 3.1 tokenizer.json (tests/.cache, fetched by the setup/fetch_tokenizers fixture)
 * against the committed reference ids, and the exit codes and one-line messages of a bad tokenizer
 * file, a repo id missing from the HF cache and usage errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "proc.h"

static const char *bin;
static char tok[1024], vectors[1024], cases[1024];

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* The case's reference ids as the "[1,2,3]" line `--ids --no-bos` prints. */
static char *want_ids_line(const char *name, size_t *n)
{
    cJSON *v = sb_test_read_json(vectors);
    assert_non_null(v);
    const cJSON *c;
    char *line = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "cases"))
    {
        if (strcmp(cJSON_GetObjectItem(c, "name")->valuestring, name) != 0)
            continue;
        const cJSON *ids = cJSON_GetObjectItem(c, "ids");
        *n = (size_t)cJSON_GetArraySize(ids);
        line = cJSON_PrintUnformatted(ids);
    }
    cJSON_Delete(v);
    assert_non_null(line);
    return line;
}

static void test_tokenize_outputs(void **state)
{
    (void)state;
    char file[1100];
    snprintf(file, sizeof(file), "%s/code.txt", cases);
    size_t n = 0;
    char *want = want_ids_line("code.txt", &n);
    char *out = NULL, *err = NULL;

    const char *ids_nobos[] = {bin,     "tokenize", "--tokenizer", tok,
                               "--ids", "--no-bos", file,          NULL};
    assert_int_equal(sb_proc_run_limit(ids_nobos, &out, &err, 60), 0);
    char want_line[65536];
    snprintf(want_line, sizeof(want_line), "%s\n", want);
    assert_string_equal(out, want_line);
    free(out), free(err);

    char num[32];
    const char *count[] = {bin, "tokenize", "--tokenizer", tok, file, NULL};
    assert_int_equal(sb_proc_run_limit(count, &out, &err, 60), 0);
    snprintf(num, sizeof(num), "%zu\n", n + 1); /* BOS by the post-processor */
    assert_string_equal(out, num);
    free(out), free(err);

    const char *count_nobos[] = {bin,       "tokenize", "--tokenizer", tok,
                                 "--count", "--no-bos", file,          NULL};
    assert_int_equal(sb_proc_run_limit(count_nobos, &out, &err, 60), 0);
    snprintf(num, sizeof(num), "%zu\n", n);
    assert_string_equal(out, num);
    free(out), free(err);

    /* --decode of the ids gives the file back, byte for byte */
    char *dir = sb_test_tmpdir("/tmp", "tokenize");
    char idsfile[1100];
    snprintf(idsfile, sizeof(idsfile), "%s/ids.json", dir);
    write_file(idsfile, want);
    const char *decode[] = {bin, "tokenize", "--tokenizer", tok, "--decode", idsfile, NULL};
    assert_int_equal(sb_proc_run_limit(decode, &out, &err, 60), 0);
    char *text = sb_test_read_file(file);
    assert_string_equal(out, text);
    free(text), free(out), free(err);

    /* a directory holding tokenizer.json is a tokenizer too */
    char tokdir[1024];
    snprintf(tokdir, sizeof(tokdir), "%s", tok);
    *strrchr(tokdir, '/') = '\0';
    const char *bydir[] = {bin, "tokenize", "--tokenizer", tokdir, "--no-bos", file, NULL};
    assert_int_equal(sb_proc_run_limit(bydir, &out, &err, 60), 0);
    assert_string_equal(out, num);
    free(out), free(err);
    sb_test_rm_rf(dir);
    free(dir);
    free(want);
}

static void test_tokenize_errors(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "tokenize");
    char bad[1100], file[1100];
    snprintf(bad, sizeof(bad), "%s/tokenizer.json", dir);
    write_file(bad, "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}");
    snprintf(file, sizeof(file), "%s/code.txt", cases);
    static const struct {
        const char *args[6];
        int rc;
        const char *want;
    } rows[] = {
        {{"--tokenizer", "BAD", "FILE"}, 1, "unsupported model type 'Unigram'"},
        {{"--tokenizer", "no-such-org/no-such-model", "FILE"}, 1, "never downloaded"},
        {{"FILE"}, 2, "--tokenizer is required"},
        {{"--tokenizer", "TOK", "--ids", "--decode", "FILE"}, 2, "exclude each other"},
        {{"--tokenizer", "TOK", "/nonexistent/input.txt"},
         1,
         "cannot read '/nonexistent/input.txt'"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *argv[10] = {bin, "tokenize"};
        size_t k = 2;
        for (size_t j = 0; j < 6 && rows[i].args[j]; j++) {
            const char *a = rows[i].args[j];
            argv[k++] = strcmp(a, "BAD") == 0    ? bad
                        : strcmp(a, "TOK") == 0  ? tok
                        : strcmp(a, "FILE") == 0 ? file
                                                 : a;
        }
        char *out = NULL, *err = NULL;
        setenv("HF_HUB_CACHE", dir, 1);
        assert_int_equal(sb_proc_run_limit(argv, &out, &err, 60), rows[i].rc);
        if (!strstr(err, rows[i].want))
            fail_msg("row %zu: stderr '%s' lacks '%s'", i, err, rows[i].want);
        assert_int_equal(sb_test_count(err, "\n"), 1); /* one line */
        assert_string_equal(out, "");
        free(out), free(err);
    }
    unsetenv("HF_HUB_CACHE");
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
    snprintf(tok, sizeof(tok), "%s/tests/.cache/tokenizers/llama3_1/tokenizer.json", argv[2]);
    snprintf(vectors, sizeof(vectors), "%s/tests/data/tokenizer/llama3_1_vectors.json", argv[2]);
    snprintf(cases, sizeof(cases), "%s/tests/data/tokenizer/cases", argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_outputs),
        cmocka_unit_test(test_tokenize_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
