/*
 * Integration test for how `sparkbench analyze` draws a context sweep (issue 14, CI replay):
 * H2A, H2B and H7 sweep context_tokens, and each context is its own prompt file, so run.json's
 * prompt.bytes differs from point to point by design. Those runs are one curve per stack: the
 * prompt size must not split a context sweep into one single-point series per context (the
 * replay's H2B figure showed four one-point "curves" and no rise could be read off it). Two
 * prompt files of different sizes at one context are still two points, never averaged as
 * repetitions of one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proc.h"

static const char *bin;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A run directory with the context and prompt size given, ten ok requests. */
static void make_run(const char *root, const char *hyp, int ctx, int bytes, const char *tag)
{
    char id[128], dir[600], path[700], text[4096];
    snprintf(id, sizeof(id), "20260101_000000_%s_stackB_m_ctx%d%s_r1", hyp, ctx, tag);
    snprintf(dir, sizeof(dir), "%s/%s", root, id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    snprintf(text, sizeof(text),
             "run:\n  id: \"%s\"\n  stack: \"B\"\n  model: \"m\"\n  workload: \"fixed_context\"\n"
             "  context_tokens: %d\n  concurrency: 4\n  duration_s: 2\n  seed: 42\n"
             "  max_tokens: 16\n  stream: true\n  nonce_per_user: true\n  hypothesis: \"%s\"\n"
             "  phase: \"ctx%d\"\n  repetition: 1\n"
             "server:\n  endpoint: \"http://127.0.0.1:9000/v1/chat/completions\"\n",
             id, ctx, hyp, ctx);
    write_text(path, text);
    snprintf(path, sizeof(path), "%s/run.json", dir);
    snprintf(text, sizeof(text),
             "{\"run_id\": \"%s\", \"start_ts\": 1000.0, \"measure_start_ts\": 1000.0, "
             "\"measure_end_ts\": 1002.0, \"end_ts\": 1002.5, \"exit_reason\": \"duration\", "
             "\"prompt\": {\"bytes\": %d, \"estimated_tokens\": %d}}\n",
             id, bytes, bytes / 4);
    write_text(path, text);
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 10; i++)
        fprintf(f,
                "{\"run_id\":\"%s\",\"ts\":%.3f,\"phase\":\"measure\",\"rc\":200,\"ok\":true,"
                "\"error\":null,\"lat_ttft_ms\":%d,\"lat_e2e_ms\":%d,\"output_tokens\":16}\n",
                id, 1000.1 + 0.15 * i, ctx / 10 + i, ctx / 5 + i);
    assert_int_equal(fclose(f), 0);
}

/* The distinct values of the first column of csv's data rows. */
static int distinct_series(const char *csv)
{
    char seen[16][512];
    int n = 0;
    const char *l = strchr(csv, '\n');
    while (l && l[1]) {
        l++;
        const char *end = l[0] == '"' ? strchr(l + 1, '"') : strchr(l, ',');
        assert_non_null(end);
        size_t len = (size_t)(end - l);
        char cell[512];
        snprintf(cell, sizeof(cell), "%.*s", (int)(len < 511 ? len : 511), l);
        int k = 0;
        while (k < n && strcmp(seen[k], cell) != 0)
            k++;
        if (k == n && n < 16)
            snprintf(seen[n++], sizeof(seen[0]), "%s", cell);
        l = strchr(l, '\n');
    }
    return n;
}

static char *analyze_csv(const char *root, const char *stem)
{
    char runs[300], out[300], uwork[300], path[500];
    snprintf(runs, sizeof(runs), "%s/results", root);
    snprintf(out, sizeof(out), "%s/analysis", root);
    snprintf(uwork, sizeof(uwork), "%s/uwork.txt", root);
    const char *argv[] = {bin,       "analyze", runs,      "--out",        out,
                          "--uwork", uwork,     "--quiet", "--no-figures", NULL};
    char *sout = NULL, *serr = NULL;
    int rc = sb_proc_run(argv, &sout, &serr);
    print_message("stderr:\n%s\n", serr ? serr : "");
    free(sout);
    free(serr);
    assert_int_equal(rc, 0);
    snprintf(path, sizeof(path), "%s/figures/%s.csv", out, stem);
    char *csv = sb_test_read_file(path);
    assert_non_null(csv);
    print_message("%s.csv:\n%s\n", stem, csv);
    return csv;
}

static void test_context_sweep_is_one_series(void **state)
{
    (void)state;
    char *root = sb_test_tmpdir("/tmp", "sweeps");
    char runs[300];
    snprintf(runs, sizeof(runs), "%s/results", root);
    assert_int_equal(mkdir(runs, 0755), 0);
    /* prompt sizes as inputs/prompts holds them: about 4.5 bytes a token */
    static const int ctx[] = {256, 1024, 2048, 4096};
    static const int bytes[] = {1134, 4503, 9271, 18780};
    for (size_t i = 0; i < 4; i++)
        make_run(runs, "H2B", ctx[i], bytes[i], "");
    char *csv = analyze_csv(root, "H2_p99_vs_context");
    assert_int_equal(sb_test_count(csv, "\n"), 5);
    assert_int_equal(distinct_series(csv), 1);
    free(csv);
    sb_test_rm_rf(root);
    free(root);
}

/* Two prompt files of different sizes at one context are two points (one row each), not
   repetitions of one point. */
static void test_other_prompt_same_context_splits(void **state)
{
    (void)state;
    char *root = sb_test_tmpdir("/tmp", "sweeps");
    char runs[300];
    snprintf(runs, sizeof(runs), "%s/results", root);
    assert_int_equal(mkdir(runs, 0755), 0);
    make_run(runs, "H2B", 1024, 4503, "");
    make_run(runs, "H2B", 2048, 9271, "");
    make_run(runs, "H2B", 1024, 5000, "b");
    make_run(runs, "H2B", 2048, 9900, "b");
    char *csv = analyze_csv(root, "H2_p99_vs_context");
    assert_int_equal(sb_test_count(csv, "\n"), 5);
    assert_int_equal(sb_test_count(csv, ",fixed_context,4,1024,1,"), 2);
    assert_int_equal(sb_test_count(csv, ",fixed_context,4,2048,1,"), 2);
    free(csv);
    sb_test_rm_rf(root);
    free(root);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BIN [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_sweep_is_one_series),
        cmocka_unit_test(test_other_prompt_same_context_splits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
