/*
 * The labels the H4 and H6 runners give `sparkbench run` (--fio-profile, --eviction-policy,
 * --tier0-capacity-bytes, --tier1-capacity-bytes, --tier2-path) reach config.yaml as the keys
 * analyze reads (run.fio_profile, dynamo.eviction_policy, dynamo.tier0/1.capacity_bytes,
 * dynamo.tier2.path), and analyze puts them in summary.json: the H4 fio profile, the H6 policy
 * and tier bytes (its x axis), and a fio.json beside the run as the fio_* columns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin, *srcdir;

static void test_labels_reach_summary(void **state)
{
    (void)state;
    struct sb_proc mock;
    const char *margs[] = {"--decode-base-ms", "1", NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    struct sb_run_paths p;
    sb_run_paths_init(&p, srcdir, "labels", mock.port, "/v1/chat/completions");
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          p.url,
                          "--output-dir",
                          p.out,
                          "--prompts-dir",
                          p.prompts,
                          "--requests",
                          "4",
                          "--concurrency",
                          "2",
                          "--quiet",
                          "--hypothesis",
                          "H4B",
                          "--phase",
                          "heavy",
                          "--fio-profile",
                          "heavy",
                          "--eviction-policy",
                          "lfu",
                          "--tier0-capacity-bytes",
                          "4MiB",
                          "--tier1-capacity-bytes",
                          "8MiB",
                          "--tier2-path",
                          "/var/tmp",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, 60);
    if (rc != 0)
        fail_msg("run exit %d: %s", rc, err ? err : "");
    free(out);
    free(err);
    char path[700];
    snprintf(path, sizeof(path), "%s/config.yaml", p.out);
    char *yaml = sb_test_read_file(path);
    assert_non_null(yaml);
    assert_non_null(strstr(yaml, "fio_profile: \"heavy\""));
    assert_non_null(strstr(yaml, "eviction_policy: \"lfu\""));
    assert_non_null(strstr(yaml, "capacity_bytes: 4194304"));
    assert_non_null(strstr(yaml, "capacity_bytes: 8388608"));
    free(yaml);

    /* fio.json beside the run, as runs/_fio.sh leaves it */
    char cmd[1600];
    snprintf(cmd, sizeof(cmd), "cp '%s/tests/data/fio/heavy.json' '%s/fio.json'", srcdir, p.out);
    assert_int_equal(system(cmd), 0);
    char an[600];
    snprintf(an, sizeof(an), "%s/analysis", p.dir);
    const char *aargv[] = {bin, "analyze", p.out, "--out", an, "--no-figures", "--quiet", NULL};
    rc = sb_proc_run_limit(aargv, &out, &err, 60);
    if (rc != 0)
        fail_msg("analyze exit %d: %s", rc, err ? err : "");
    free(out);
    free(err);
    snprintf(path, sizeof(path), "%s/summary.json", p.out);
    cJSON *j = sb_test_read_json(path);
    assert_string_equal(sb_test_str(j, "fio_profile"), "heavy");
    assert_string_equal(sb_test_str(j, "eviction_policy"), "lfu");
    assert_true(sb_test_num(j, "tier0_bytes") == 4194304);
    assert_true(sb_test_num(j, "tier1_bytes") == 8388608);
    assert_true(sb_test_num(j, "fio_read_mbs") == 758.153885);
    assert_true(sb_test_num(j, "fio_write_clat_p99_ms") == 42.205184);
    cJSON_Delete(j);
    sb_run_paths_release(&p);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
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
        cmocka_unit_test(test_labels_reach_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
