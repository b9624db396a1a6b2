/*
 * Unit tests for H4's fio neighbour in analyze (sb/analyze_fio.h): fio's JSON output captured
 * from fio-3.33 running the configs/fio profiles (tests/data/fio: heavy, baseline, one stopped by
 * SIGINT whose output starts with fio's "terminating on signal" note, and a torn copy), a table of
 * broken and multi-job texts, and a run directory holding fio.json read by sb_run_load into the
 * summary (a torn or missing fio.json is a warning naming the file, never a failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "sb/analyze.h"
#include "sb/analyze_fio.h"
#include "sb/buf.h"

#define FIO_DATA SB_TEST_DATA_DIR "/fio"
#define RUN_DIR  SB_TEST_DATA_DIR "/analyze/20261201_100000_H0_stackA_L8B_U4"

static char *read_all(const char *path, size_t *len)
{
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    if (sb_buf_add_file(&b, path) != 0)
        fail_msg("cannot read '%s'", path);
    sb_buf_add(&b, "", 0);
    return sb_buf_detach(&b, len);
}

static void assert_near(double got, double want, const char *what)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s: got %.17g, want NAN", what, got);
        return;
    }
    if (!(fabs(got - want) <= 1e-9 * (fabs(want) > 1 ? fabs(want) : 1)))
        fail_msg("%s: got %.17g, want %.17g", what, got, want);
}

static void parse_file(const char *name, struct sb_fio_stats *s)
{
    char path[512], why[160];
    snprintf(path, sizeof(path), "%s/%s", FIO_DATA, name);
    size_t len;
    char *text = read_all(path, &len);
    if (sb_fio_parse(text, len, s, why, sizeof(why)) != 0)
        fail_msg("%s: %s", name, why);
    free(text);
}

/* The numbers fio printed (jobs[0].read/write: bw_bytes, iops, clat_ns.percentile 99.000000). */
static void test_captured(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        double rmbs, wmbs, riops, wiops, rp99, wp99;
    } cases[] = {
        {"heavy.json", 758.153885, 771.052101, 11568.510214, 11765.321375, 43.25376, 42.205184},
        /* no write I/O: bandwidth 0, no percentile (clat_ns N 0) */
        {"baseline.json", 0.040939, 0, 9.995002, 0, 5.537792, NAN},
        /* stopped by SIGINT: fio's note comes first in --output */
        {"interrupted.json", 50.03451, 16.88281, 763.466042, 257.611241, 5.210112, 15.532032},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sb_fio_stats s;
        parse_file(cases[i].file, &s);
        assert_true(s.present);
        assert_int_equal(s.jobs, 1);
        assert_near(s.read_mbs, cases[i].rmbs, cases[i].file);
        assert_near(s.write_mbs, cases[i].wmbs, cases[i].file);
        assert_near(s.read_iops, cases[i].riops, cases[i].file);
        assert_near(s.write_iops, cases[i].wiops, cases[i].file);
        assert_near(s.read_p99_ms, cases[i].rp99, cases[i].file);
        assert_near(s.write_p99_ms, cases[i].wp99, cases[i].file);
    }
}

#define DIR(bw, iops, n, p99)                                                                      \
    "{\"bw_bytes\": " #bw ", \"iops\": " #iops ", \"clat_ns\": {\"N\": " #n                        \
    ", \"percentile\": {\"99.000000\": " #p99 "}}}"

static void test_texts(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *why; /* a word the reason holds */
        double rmbs, wmbs, rp99;
    } cases[] = {
        {"", -1, "no JSON", NAN, NAN, NAN},
        {"fio: terminating on signal 2\n", -1, "no JSON", NAN, NAN, NAN},
        {"{\"jobs\": [", -1, "torn", NAN, NAN, NAN},
        {"[1, 2]\n", -1, "no JSON", NAN, NAN, NAN},
        {"{\"fio version\": \"fio-3.33\"}", -1, "jobs", NAN, NAN, NAN},
        {"{\"jobs\": []}", -1, "jobs", NAN, NAN, NAN},
        {"{\"jobs\": [{\"read\": {\"iops\": 1}, \"write\": {}}]}", -1, "bw_bytes", NAN, NAN, NAN},
        {"{\"jobs\": [{\"read\": " DIR(1000000, 10, 5, 2000000) "}]}", -1, "write", NAN, NAN, NAN},
        /* two jobs: bandwidths add, the worst p99 stands */
        {"{\"jobs\": [{\"read\": " DIR(1000000, 10, 5, 2000000) ", \"write\": " DIR(
             0, 0, 0, 0) "}, {\"read\": " DIR(3000000, 30, 5,
                                              7000000) ", \"write\": " DIR(500000, 5, 5,
                                                                           1000000) "}]}",
         0, "", 4, 0.5, 7},
        /* fio 2.x: "bw" in KiB/s */
        {"{\"jobs\": [{\"read\": {\"bw\": 1000, \"iops\": 1}, \"write\": {\"bw\": 0}}]}", 0, "",
         1.024, 0, NAN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sb_fio_stats s;
        char why[160];
        int rc = sb_fio_parse(cases[i].text, strlen(cases[i].text), &s, why, sizeof(why));
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, why);
        if (rc != 0) {
            if (!strstr(why, cases[i].why))
                fail_msg("case %zu: reason '%s' lacks '%s'", i, why, cases[i].why);
            assert_false(s.present);
        }
        assert_near(s.read_mbs, cases[i].rmbs, "read_mbs");
        assert_near(s.write_mbs, cases[i].wmbs, "write_mbs");
        assert_near(s.read_p99_ms, cases[i].rp99, "read_p99_ms");
    }
}

/* A copy of a fixture run directory, with fio.json from `fio_file` (NULL: none). */
static char *run_copy(const char *fio_file, const char *fio_profile)
{
    char tmpl[] = "/tmp/sbtest-fio-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s/run'", RUN_DIR, tmpl);
    assert_int_equal(system(cmd), 0);
    if (fio_file) {
        snprintf(cmd, sizeof(cmd), "cp '%s/%s' '%s/run/fio.json'", FIO_DATA, fio_file, tmpl);
        assert_int_equal(system(cmd), 0);
    }
    if (fio_profile) {
        snprintf(cmd, sizeof(cmd),
                 "sed -i 's/^  phase: .*/&\\n  fio_profile: %s/' '%s/run/config.yaml'", fio_profile,
                 tmpl);
        assert_int_equal(system(cmd), 0);
    }
    size_t n = strlen(tmpl) + 5;
    char *d = malloc(n);
    assert_non_null(d);
    snprintf(d, n, "%s/run", tmpl);
    return d;
}

static void rm_copy(char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(d) - 4), d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

static bool warned(const struct sb_run *r, const char *a, const char *b)
{
    for (size_t i = 0; i < r->nwarnings; i++)
        if (strstr(r->warnings[i], a) && strstr(r->warnings[i], b))
            return true;
    return false;
}

static void load(const char *dir, struct sb_run *r)
{
    struct sb_err err;
    struct sb_analyze_opts o = {0};
    o.kv_bytes_per_token = 131072;
    if (sb_run_load(dir, &o, r, &err) != 0)
        fail_msg("sb_run_load(%s): %s", dir, err.msg);
}

static void test_run_dir(void **state)
{
    (void)state;
    /* heavy: the numbers reach the run, its summary.json and summary_v3.csv */
    char *d = run_copy("heavy.json", "heavy");
    struct sb_run r;
    load(d, &r);
    assert_string_equal(r.fio_profile, "heavy");
    assert_true(r.fio.present);
    assert_near(r.fio.read_mbs, 758.153885, "read_mbs");
    assert_near(r.fio.write_p99_ms, 42.205184, "write_p99_ms");
    assert_false(warned(&r, "fio.json", ""));
    struct sb_err err;
    assert_int_equal(sb_run_summary_json_write(&r, &err), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/summary.json", d);
    size_t len;
    char *text = read_all(path, &len);
    assert_non_null(strstr(text, "\"fio_read_mbs\": 758.153885,"));
    assert_non_null(strstr(text, "\"fio_write_iops\": 11765.321375,"));
    free(text);
    snprintf(path, sizeof(path), "%s/summary_v3.csv", d);
    assert_int_equal(sb_summary_csv_write(path, &r, 1, &err), 0);
    text = read_all(path, &len);
    assert_non_null(strstr(text, ",fio_read_mbs,fio_write_mbs,fio_read_iops,fio_write_iops,"
                                 "fio_read_clat_p99_ms,fio_write_clat_p99_ms\n"));
    assert_non_null(
        strstr(text, ",758.153885,771.052101,11568.510214,11765.321375,43.25376,42.205184\n"));
    free(text);
    sb_run_release(&r);
    rm_copy(d);

    /* torn: a warning naming the file; the run loads, its fio numbers unknown */
    d = run_copy("torn.json", "heavy");
    load(d, &r);
    assert_false(r.fio.present);
    assert_true(isnan(r.fio.read_mbs));
    assert_true(warned(&r, "fio.json", "torn"));
    sb_run_release(&r);
    rm_copy(d);

    /* missing beside a fio profile: a warning; missing in a run without one: nothing */
    d = run_copy(NULL, "moderate");
    load(d, &r);
    assert_true(warned(&r, "fio.json", "moderate"));
    sb_run_release(&r);
    rm_copy(d);
    d = run_copy(NULL, NULL);
    load(d, &r);
    assert_string_equal(r.fio_profile, "");
    assert_false(warned(&r, "fio.json", ""));
    sb_run_release(&r);
    rm_copy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captured),
        cmocka_unit_test(test_texts),
        cmocka_unit_test(test_run_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
