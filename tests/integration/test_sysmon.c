/*
 * Integration tests for `sparkbench sysmon`: ticks on wall-clock multiples of the interval, the
 * Appendix B objects present, disk traffic made with dd visible in the disk source, SIGINT ends it
 * cleanly with whole lines.
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
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;

static cJSON **read_lines(const char *path, int *n)
{
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    int cap = 64;
    cJSON **v = malloc(sizeof(cJSON *) * (size_t)cap);
    *n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (!j)
            fail_msg("unparseable line: %.200s", line);
        if (*n == cap) {
            cap *= 2;
            v = realloc(v, sizeof(cJSON *) * (size_t)cap);
        }
        v[(*n)++] = j;
    }
    free(text);
    return v;
}

static void free_lines(cJSON **v, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(v[i]);
    free(v);
}

static void test_grid_and_sources(void **state)
{
    (void)state;
    char dir[] = "/var/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[600], path[700], ddfile[700], ddof[720];
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", out);
    snprintf(ddfile, sizeof(ddfile), "%s/dd.bin", dir);
    snprintf(ddof, sizeof(ddof), "of=%s", ddfile);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "sysmon", "--out", out, "--duration-s", "1.5", "--interval-ms", "100",
              (char *)NULL);
        _exit(127);
    }
    usleep(300000);
    /* 32 MiB of direct writes on the same disk while sysmon watches. */
    const char *dd[] = {"/bin/dd",  "if=/dev/zero", ddof,          "bs=1M",
                        "count=32", "oflag=direct", "status=none", NULL};
    assert_int_equal(sb_proc_run(dd, NULL, NULL), 0);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int n;
    cJSON **v = read_lines(path, &n);
    assert_true(n >= 13 && n <= 17); /* 1.5 s of 100 ms ticks */
    double prev = 0, wmbs_max = 0;
    for (int i = 0; i < n; i++) {
        double ts = cJSON_GetObjectItemCaseSensitive(v[i], "ts")->valuedouble;
        /* On the grid: a multiple of 0.1 s, one interval after the previous tick. */
        assert_true(fabs(ts * 10 - round(ts * 10)) < 1e-4);
        if (i)
            assert_true(fabs(ts - prev - 0.1) < 1e-4);
        prev = ts;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "missed")))
            continue;
        assert_true(cJSON_GetObjectItemCaseSensitive(v[i], "ts_actual")->valuedouble >= ts);
        const cJSON *mem = cJSON_GetObjectItemCaseSensitive(v[i], "mem");
        assert_non_null(mem);
        assert_true(cJSON_GetObjectItemCaseSensitive(mem, "MemTotal")->valuedouble > 0);
        assert_true(cJSON_GetObjectItemCaseSensitive(mem, "MemAvailable")->valuedouble > 0);
        const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(v[i], "cpu");
        if (i == 0) {
            assert_null(cpu); /* no interval to measure over yet */
            continue;
        }
        assert_non_null(cpu);
        double sum = 0;
        for (const cJSON *f = cpu->child; f; f = f->next)
            sum += f->valuedouble;
        assert_true(fabs(sum - 100) < 0.5);
        const cJSON *nvme = cJSON_GetObjectItemCaseSensitive(v[i], "nvme");
        if (nvme) {
            double w = cJSON_GetObjectItemCaseSensitive(nvme, "wMBs")->valuedouble;
            wmbs_max = w > wmbs_max ? w : wmbs_max;
        }
    }
    print_message("%d ticks, max write rate seen %.1f MB/s\n", n, wmbs_max);
    assert_true(wmbs_max > 1.0); /* dd's direct writes showed up */
    free_lines(v, n);
    unlink(ddfile);
    unlink(path);
    rmdir(out);
    rmdir(dir);
}

static void test_sigint(void **state)
{
    (void)state;
    char dir[] = "/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "sysmon", "--out", dir, "--interval-ms", "50", (char *)NULL);
        _exit(127);
    }
    usleep(400000);
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int n;
    cJSON **v = read_lines(path, &n);
    assert_true(n >= 3);
    free_lines(v, n);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_and_sources),
        cmocka_unit_test(test_sigint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
