/*
 * Integration test for `sparkbench sysmon --prom` keeping every series of a scraped endpoint
 * (issue 11 item 7: it kept llamacpp:kv_cache_usage_ratio, 1 of llama.cpp's 12 series). A
 * scripted HTTP server on a thread of this process serves llama.cpp's /metrics page
 * (tests/data/prom/llamacpp.prom, written from llama.cpp's server.cpp metric definitions) with
 * the headers llama-server sends; sysmon scrapes it every 100 ms. The first good tick's
 * prom.raw must hold every series of the page with its value, later ticks only what changed
 * (nothing: an empty object), and prom.series must carry the llama.cpp named fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

/* The samples of a Prometheus page: "name[{labels}] value" lines, as name -> value. */
static int page_samples(const char *page, char names[][128], double *values, int cap)
{
    int n = 0;
    char *copy = strdup(page), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l && n < cap; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#' || !l[0])
            continue;
        char *sp = strrchr(l, ' ');
        assert_non_null(sp);
        snprintf(names[n], 128, "%.*s", (int)(sp - l), l);
        values[n++] = strtod(sp + 1, NULL);
    }
    free(copy);
    return n;
}

static void test_prom_keeps_every_series(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof(path), "%s/tests/data/prom/llamacpp.prom", srcdir);
    char *page = sb_test_read_file(path);
    assert_non_null(page);
    char names[64][128];
    double values[64];
    int nsamples = page_samples(page, names, values, 64);
    assert_int_equal(nsamples, 12);

    /* llama-server answers /metrics with text/plain; version=0.0.4 (server.cpp). */
    char *reply = malloc(strlen(page) + 256);
    assert_non_null(reply);
    snprintf(reply, strlen(page) + 256,
             "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\n"
             "Content-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(page), page);
    const struct sb_script_step steps[] = {{0, reply}, {0, NULL}};
    struct sb_script_server srv = {.steps = steps, .backlog = 16};
    assert_int_equal(sb_script_server_start(&srv), 0);

    char *out = sb_test_tmpdir("/tmp", "promraw");
    char url[128];
    sb_url(url, sizeof(url), srv.port, "/metrics");
    const char *argv[] = {
        bin,   "sysmon",       "--out", out,         "--prom", url, "--interval-ms",
        "100", "--duration-s", "0.65",  "--no-disk", NULL};
    char *o = NULL, *e = NULL;
    int rc = sb_proc_run_limit(argv, &o, &e, 20);
    sb_script_server_stop(&srv);
    if (rc != 0)
        fail_msg("sysmon exited %d: %s", rc, e ? e : "");

    snprintf(path, sizeof(path), "%s/sysmon.jsonl", out);
    int nl;
    cJSON **lines = sb_test_read_jsonl(path, &nl);
    int good = 0, full = 0, empty = 0;
    for (int i = 0; i < nl; i++) {
        const cJSON *prom = cJSON_GetObjectItemCaseSensitive(lines[i], "prom");
        if (!prom)
            continue;
        const cJSON *sc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(prom, "scrapes"), 0);
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sc, "ok")))
            continue;
        const cJSON *raw = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(prom, "raw"), 0);
        if (!cJSON_IsObject(raw))
            fail_msg("line %d: no prom.raw[0] object", i + 1);
        int members = cJSON_GetArraySize(raw);
        if (good == 0) {
            /* The first good scrape: every series with its value. */
            print_message("first good tick: %d of %d series kept\n", members, nsamples);
            assert_int_equal(members, nsamples);
            for (int k = 0; k < nsamples; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(raw, names[k]);
                if (!cJSON_IsNumber(v) || v->valuedouble != values[k])
                    fail_msg("series %s missing or wrong", names[k]);
            }
            full++;
            const cJSON *series = cJSON_GetObjectItemCaseSensitive(prom, "series");
            static const struct {
                const char *key;
                double value;
            } named[] = {{"llamacpp:requests_processing", 4},
                         {"llamacpp:requests_deferred", 3},
                         {"llamacpp:kv_cache_tokens", 4082},
                         {"llamacpp:kv_cache_usage_ratio", 0.996582}};
            for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(series, named[k].key);
                if (!cJSON_IsNumber(v) || v->valuedouble != named[k].value)
                    fail_msg("prom.series lacks %s", named[k].key);
            }
            /* A counter needs two pages: null on the first. */
            assert_true(cJSON_IsNull(
                cJSON_GetObjectItemCaseSensitive(series, "llamacpp:tokens_predicted_total_per_s")));
        } else {
            /* The same page again: nothing changed, nothing repeated. */
            assert_int_equal(members, 0);
            empty++;
        }
        good++;
    }
    print_message("%d good ticks: %d full, %d empty raw records\n", good, full, empty);
    assert_true(good >= 3);
    assert_int_equal(full, 1);
    sb_test_free_jsonl(lines, nl);
    free(o);
    free(e);
    free(reply);
    free(page);
    sb_test_rm_rf(out);
    free(out);
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
        cmocka_unit_test(test_prom_keeps_every_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
