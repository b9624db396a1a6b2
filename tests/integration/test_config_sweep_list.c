/*
 * A config in the Test Plan's section 13 shape carries a sweep (run.context_tokens: [256, ...]),
 * which one `sparkbench run` cannot take. With --context-tokens on the command line the flag picks
 * the point (the runners pass it for every point) and the run goes ahead; without it the run is
 * refused with one line naming the file, the line, the key and the list, saying a run takes one
 * value and which runner sweeps it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

static void must_contain(const char *text, const char *want)
{
    if (!text || !strstr(text, want))
        fail_msg("expected '%s' in: %s", want, text ? text : "(nothing)");
}

static void test_list_without_flag_is_refused(void **state)
{
    (void)state;
    char cfg[600];
    snprintf(cfg, sizeof(cfg), "%s/tests/data/configs/testplan13_h2b.yaml", srcdir);
    /* The endpoint is never reached: the config is refused before anything is sent. */
    const char *argv[] = {bin,
                          "run",
                          "--config",
                          cfg,
                          "--endpoint",
                          "http://127.0.0.1:9/v1/chat/completions",
                          "--duration-s",
                          "1",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    assert_int_equal(rc, 2);
    must_contain(err, cfg);
    must_contain(err, "line 9");
    must_contain(err, "run.context_tokens");
    must_contain(err, "[256, 512, 1024, 2048, 4096]");
    must_contain(err, "one value");
    must_contain(err, "--context-tokens");
    must_contain(err, "runs/run_H2B_");
    free(out);
    free(err);
}

static void test_flag_overrides_list(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--decode-base-ms",
                           "1",
                           "--served-model-name",
                           "nvidia/Llama-3.3-70B-Instruct-FP4",
                           NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "sweeplist");
    char cfg[600], url[128], out_dir[700], prompts[600], recorded[800];
    snprintf(cfg, sizeof(cfg), "%s/tests/data/configs/testplan13_h2b.yaml", srcdir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/chat/completions", mock.port);
    snprintf(out_dir, sizeof(out_dir), "%s/run", dir);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    snprintf(recorded, sizeof(recorded), "%s/config.yaml", out_dir);
    /* The old harness's --context_tokens spelling counts as the flag too. */
    const char *argv[] = {bin,
                          "run",
                          "--config",
                          cfg,
                          "--endpoint",
                          url,
                          "--model",
                          "nvidia/Llama-3.3-70B-Instruct-FP4",
                          "--context_tokens",
                          "512",
                          "--concurrency",
                          "2",
                          "--duration-s",
                          "1",
                          "--warmup-s",
                          "0",
                          "--no-sysmon",
                          "--output-dir",
                          out_dir,
                          "--prompts-dir",
                          prompts,
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run(argv, &out, &err);
    if (rc != 0)
        fail_msg("sparkbench run exited %d: %s", rc, err);
    free(out);
    free(err);
    FILE *f = fopen(recorded, "r");
    assert_non_null(f);
    char line[512];
    bool found = false;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "context_tokens:") && strstr(line, "512"))
            found = true;
    fclose(f);
    if (!found)
        fail_msg("%s does not record context_tokens 512", recorded);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
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
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_without_flag_is_refused),
        cmocka_unit_test(test_flag_overrides_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
