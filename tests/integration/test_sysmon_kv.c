/*
 * Integration tests for sysmon's server-side sources against the real mock:
 *   - prom + dynkv.jsonl: the Stack B small profile (tier 2 a real file under /var/tmp) serves a
 *     second pass over the same prompts from disk while `sysmon --prom` scrapes both of its ports
 *     every 100 ms; the tier-2 hits summed over dynkv.jsonl equal the mock's own tier-2 hit
 *     counter over the run (both ports carry it: it must not count twice), bytes are hits x the
 *     block size, the tier-2 file's disk shows reads in sysmon.jsonl, fetch p95 shows up, and
 *     dynkv.jsonl sits on sysmon's grid;
 *   - trtllm: the mock serving TensorRT-LLM's JSON /metrics (drained per GET); every iteration
 *     the mock ran appears exactly once in trtllm.jsonl (or in the drain after sysmon stopped);
 *   - a /metrics that is not JSON: counted, said once, never a crash or a trtllm.jsonl line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "proc.h"

#define BLOCK_BYTES 262144.0 /* configs/mock/stackB_small.yaml: kv_block_bytes 256KiB */

static const char *bin;
static const char *srcdir;

/* The value of one sample line ("name{labels} value") of a Prometheus page; -1 when absent. */
static double metric(const char *text, const char *sample)
{
    const char *p = text;
    size_t sl = strlen(sample);
    while ((p = strstr(p, sample))) {
        if ((p == text || p[-1] == '\n') && p[sl] == ' ')
            return strtod(p + sl + 1, NULL);
        p += sl;
    }
    return -1;
}

static char *get(int port, const char *path)
{
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), port, path), NULL, &r);
    assert_int_equal(r.status, 200);
    free(r.headers);
    return r.body;
}

/* The mock's second stdout line: its --metrics-port. */
static int read_metrics_port(const struct sb_proc *p)
{
    char line[32];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(p->out_fd, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    int port = (int)strtol(line, NULL, 10);
    assert_true(port > 0 && port != p->port);
    return port;
}

/* Starts `sparkbench sysmon <args>` with stderr into errpath. */
static void start_sysmon(struct sb_proc *p, const char *const *args, const char *errpath)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "sysmon";
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    p->port = 0;
    p->out_fd = -1;
}

static int count_lines(const char *path)
{
    char *text = sb_test_read_file(path);
    int n = text ? sb_test_count(text, "\n") : 0;
    free(text);
    return n;
}

/* Waits until path holds at least n lines (a guard of 30 s, not a timing assertion). */
static void wait_lines(const char *path, int n)
{
    for (int i = 0; i < 3000 && count_lines(path) < n; i++)
        usleep(10000);
    assert_true(count_lines(path) >= n);
}

static const cJSON *at(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* A distinct prompt of about `bytes` bytes for index i (as test_mock_storage makes them). */
static char *prompt_for(int i, size_t bytes)
{
    char *p = malloc(bytes + 1);
    size_t n = 0;
    while (n < bytes) {
        int w = snprintf(p + n, bytes + 1 - n, "doc%d storage tier block %zu. ", i, n);
        if (w <= 0)
            break;
        n += (size_t)w;
    }
    p[bytes] = '\0';
    return p;
}

static void complete(int port, const char *prompt, int max_tokens)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "prompt", prompt);
    cJSON_AddNumberToObject(b, "max_tokens", max_tokens);
    char *text = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    char url[128];
    struct sb_http_resp r;
    sb_http("POST", sb_url(url, sizeof(url), port, "/v1/completions"), text, &r);
    free(text);
    assert_int_equal(r.status, 200);
    sb_http_resp_release(&r);
}

static void test_dynkv_matches_mock_truth(void **state)
{
    (void)state;
    char kvdir[] = "/var/tmp/sbtest-kvsysmon-XXXXXX";
    char out[] = "/tmp/sbtest-kvsysmon-out-XXXXXX";
    assert_non_null(mkdtemp(kvdir));
    assert_non_null(mkdtemp(out));
    char profile[512], errpath[600], sysmon_path[600], dynkv_path[600];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackB_small.yaml", srcdir);
    snprintf(errpath, sizeof(errpath), "%s/sysmon.err", out);
    snprintf(sysmon_path, sizeof(sysmon_path), "%s/sysmon.jsonl", out);
    snprintf(dynkv_path, sizeof(dynkv_path), "%s/dynkv.jsonl", out);
    const char *margs[] = {"--profile", profile,          "--port", "0", "--tier2-path",
                           kvdir,       "--metrics-port", "0",      NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    int mport = read_metrics_port(&mock);
    char disk[64];
    sb_test_disk_of(kvdir, disk, sizeof(disk));

    char *m = get(mock.port, "/metrics");
    double hits_before = metric(m, "mock_kv_tier_hits_total{tier=\"2\"}");
    free(m);
    assert_true(hits_before >= 0);

    /* Both of the mock's ports carry the same series: dynkv must take them from one. */
    char url1[128], url2[128];
    sb_url(url1, sizeof(url1), mock.port, "/metrics");
    sb_url(url2, sizeof(url2), mport, "/metrics");
    const char *sargs[] = {"--out",
                           out,
                           "--prom",
                           url1,
                           "--prom",
                           url2,
                           "--kv-block-size-bytes",
                           "262144",
                           "--interval-ms",
                           "100",
                           "--disk",
                           disk[0] ? disk : "",
                           NULL};
    if (!disk[0])
        sargs[10] = NULL; /* no block device under /var/tmp: the default device */
    struct sb_proc sysmon;
    start_sysmon(&sysmon, sargs, errpath);
    wait_lines(dynkv_path, 2); /* the first scrapes are in before any request */

    enum { N = 12 };
    char *prompts[N];
    for (int i = 0; i < N; i++)
        prompts[i] = prompt_for(i, 3072); /* 24 blocks of 32 byte-level tokens each */
    for (int pass = 0; pass < 2; pass++)  /* the second pass is served from tier 2 */
        for (int i = 0; i < N; i++)
            complete(mock.port, prompts[i], 4);
    for (int i = 0; i < N; i++)
        free(prompts[i]);

    /* A few more ticks, so the last scrape comes after the last request. */
    wait_lines(dynkv_path, count_lines(dynkv_path) + 3);
    assert_int_equal(sb_proc_stop(&sysmon, SIGINT), 0);
    m = get(mock.port, "/metrics");
    double hits_after = metric(m, "mock_kv_tier_hits_total{tier=\"2\"}");
    double reads_after = metric(m, "mock_kv_tier_fetch_seconds_count");
    free(m);

    int nd, ns;
    cJSON **d = sb_test_read_jsonl(dynkv_path, &nd);
    cJSON **s = sb_test_read_jsonl(sysmon_path, &ns);
    double sum_hits = 0, sum_bytes_out = 0, p95_max = -1;
    int p95_lines = 0, null_lines = 0, failed_scrapes = 0;
    for (int i = 0; i < nd; i++) {
        const cJSON *t2 = at(d[i], "tier2");
        const cJSON *h = at(t2, "hits"), *bo = at(t2, "bytes_out"), *p95 = at(t2, "fetch_p95_ms");
        assert_true(cJSON_IsNumber(at(d[i], "ts")));
        assert_true(at(d[i], "kv_block_size_bytes")->valuedouble == BLOCK_BYTES);
        if (i == 0) {
            assert_true(cJSON_IsNull(h)); /* no earlier scrape to subtract */
            continue;
        }
        if (cJSON_IsNull(h)) {
            /* Only when the first URL's GET failed this tick (a loaded machine): its delta then
               lands in the next line, so the sum below still holds. */
            null_lines++;
            continue;
        }
        assert_true(cJSON_IsNumber(h));
        assert_true(cJSON_IsNumber(bo));
        assert_true(bo->valuedouble == h->valuedouble * BLOCK_BYTES);
        assert_string_equal(at(at(d[i], "src"), "tier2.hits")->valuestring,
                            "kvbm_onboard_blocks_d2d");
        sum_hits += h->valuedouble;
        sum_bytes_out += bo->valuedouble;
        if (cJSON_IsNumber(p95)) {
            p95_lines++;
            p95_max = fmax(p95_max, p95->valuedouble);
        }
    }
    /* dynkv.jsonl is on sysmon's grid: every dynkv ts is some sysmon line's ts. */
    for (int i = 0; i < nd; i++) {
        bool found = false;
        for (int k = 0; k < ns && !found; k++)
            found = fabs(at(s[k], "ts")->valuedouble - at(d[i], "ts")->valuedouble) < 1e-7;
        assert_true(found);
    }
    double rps_max = 0, req_rate_max = 0;
    for (int k = 0; k < ns; k++) {
        if (cJSON_IsTrue(at(s[k], "missed")))
            continue;
        const cJSON *prom = at(s[k], "prom");
        assert_non_null(prom);
        const cJSON *sc;
        cJSON_ArrayForEach(sc, at(prom, "scrapes")) failed_scrapes += !cJSON_IsTrue(at(sc, "ok"));
        const cJSON *rate = at(at(prom, "series"), "dynamo_frontend_requests_total_per_s");
        if (cJSON_IsNumber(rate))
            req_rate_max = fmax(req_rate_max, rate->valuedouble);
        const cJSON *dev = disk[0] ? at(at(s[k], "disks"), disk) : NULL;
        if (dev)
            rps_max = fmax(rps_max, at(dev, "rps")->valuedouble);
    }
    print_message("%d dynkv lines, %d sysmon lines: tier-2 hits %.0f (mock truth %.0f -> %.0f), "
                  "bytes out %.0f, fetch p95 on %d lines (max %.3f ms, %.0f reads), disk %s "
                  "max %.1f reads/s, requests max %.1f/s; %d failed scrapes, %d null lines\n",
                  nd, ns, sum_hits, hits_before, hits_after, sum_bytes_out, p95_lines, p95_max,
                  reads_after, disk[0] ? disk : "(none)", rps_max, req_rate_max, failed_scrapes,
                  null_lines);
    assert_true(null_lines <= failed_scrapes); /* a null tier-2 line only with a failed GET */
    assert_true(hits_after > hits_before);
    assert_true(sum_hits == hits_after - hits_before);
    assert_true(sum_bytes_out == sum_hits * BLOCK_BYTES);
    assert_true(p95_lines > 0 && p95_max > 0);
    assert_true(req_rate_max > 0);
    if (disk[0])
        assert_true(rps_max > 0); /* the O_DIRECT reads of tier 2 reached the device */
    else
        print_message("no block device under %s: disk check skipped\n", kvdir);
    sb_test_free_jsonl(d, nd);
    sb_test_free_jsonl(s, ns);

    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(kvdir);
    sb_test_rm_rf(out);
}

static void test_trtllm_every_iteration_once(void **state)
{
    (void)state;
    char out[] = "/tmp/sbtest-trtllm-XXXXXX";
    assert_non_null(mkdtemp(out));
    char profile[512], errpath[600], sysmon_path[600], trt_path[600];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackA.yaml", srcdir);
    snprintf(errpath, sizeof(errpath), "%s/sysmon.err", out);
    snprintf(sysmon_path, sizeof(sysmon_path), "%s/sysmon.jsonl", out);
    snprintf(trt_path, sizeof(trt_path), "%s/trtllm.jsonl", out);
    const char *margs[] = {"--profile",
                           profile,
                           "--port",
                           "0",
                           "--metrics-format",
                           "trtllm",
                           "--metrics-port",
                           "0",
                           "--decode-base-ms",
                           "2",
                           "--prefill-per-token-us",
                           "0",
                           "--served-model-name",
                           "m",
                           NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    int mport = read_metrics_port(&mock);
    char url[128];
    sb_url(url, sizeof(url), mock.port, "/metrics");
    const char *sargs[] = {"--out",         out,   "--trtllm",  url,
                           "--interval-ms", "100", "--no-disk", NULL};
    struct sb_proc sysmon;
    start_sysmon(&sysmon, sargs, errpath);
    wait_lines(sysmon_path, 2);

    /* Concurrent streams, then a few on their own: iterations with full and lone batches. */
    enum { C = 8 };
    struct sb_stream st[C];
    sb_url(url, sizeof(url), mock.port, "/v1/completions");
    for (int i = 0; i < C; i++)
        sb_stream_init(&st[i], url,
                       "{\"model\":\"m\",\"prompt\":\"count the iterations\",\"max_tokens\":24,"
                       "\"stream\":true}");
    sb_streams_run(st, C, NULL, NULL);
    for (int i = 0; i < C; i++) {
        assert_int_equal(st[i].status, 200);
        sb_stream_release(&st[i]);
    }
    for (int i = 0; i < 3; i++)
        complete(mock.port, "one more", 16);
    wait_lines(sysmon_path, count_lines(sysmon_path) + 3);
    assert_int_equal(sb_proc_stop(&sysmon, SIGINT), 0);

    /* What sysmon did not drain, and the mock's own count. */
    char *rest = get(mock.port, "/metrics");
    cJSON *tail = cJSON_Parse(rest);
    free(rest);
    assert_true(cJSON_IsArray(tail));
    char *m = get(mport, "/metrics");
    double iterations = metric(m, "mock:engine_iterations_total");
    double dropped = metric(m, "mock:trtllm_iterations_dropped_total");
    free(m);
    assert_true(iterations > C);
    assert_true(dropped == 0);

    int nt, ns;
    cJSON **t = sb_test_read_jsonl(trt_path, &nt);
    cJSON **s = sb_test_read_jsonl(sysmon_path, &ns);
    int total = nt + cJSON_GetArraySize(tail);
    char *seen = calloc((size_t)iterations + 1, 1);
    int active_max = 0;
    for (int i = 0; i < total; i++) {
        const cJSON *e = i < nt ? at(t[i], "entry") : cJSON_GetArrayItem(tail, i - nt);
        assert_true(cJSON_IsObject(e));
        double it = at(e, "iter")->valuedouble;
        assert_true(it >= 1 && it <= iterations);
        if (seen[(size_t)it])
            fail_msg("iteration %.0f appears twice", it);
        seen[(size_t)it] = 1;
        assert_true(at(at(e, "kvCacheStats"), "maxNumBlocks")->valuedouble == 4096);
        int active = (int)at(e, "numActiveRequests")->valuedouble;
        active_max = active > active_max ? active : active_max;
        if (i < nt) {
            /* On sysmon's grid. */
            bool found = false;
            for (int k = 0; k < ns && !found; k++)
                found = fabs(at(s[k], "ts")->valuedouble - at(t[i], "ts")->valuedouble) < 1e-7;
            assert_true(found);
        }
    }
    /* Each of the mock's iterations exactly once: as many distinct ids as it ran. */
    assert_int_equal(total, (int)iterations);
    int entries = 0;
    for (int k = 0; k < ns; k++) {
        const cJSON *tr = at(s[k], "trtllm");
        if (tr)
            entries += (int)at(tr, "entries")->valuedouble;
    }
    assert_int_equal(entries, nt); /* the sysmon lines count what trtllm.jsonl holds */
    print_message("%.0f iterations: %d in trtllm.jsonl over %d ticks, %d drained after; max "
                  "batch %d\n",
                  iterations, nt, ns, cJSON_GetArraySize(tail), active_max);
    assert_true(nt > 0);
    assert_true(active_max > 1);
    free(seen);
    cJSON_Delete(tail);
    sb_test_free_jsonl(t, nt);
    sb_test_free_jsonl(s, ns);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(out);
}

static void test_trtllm_not_json(void **state)
{
    (void)state;
    char out[] = "/tmp/sbtest-trtllm-bad-XXXXXX";
    assert_non_null(mkdtemp(out));
    struct sb_proc mock;
    const char *margs[] = {NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char url[128];
    sb_url(url, sizeof(url), mock.port, "/metrics"); /* Prometheus text, not JSON */
    const char *argv[] = {
        bin,  "sysmon",       "--out", out,         "--trtllm", url, "--interval-ms",
        "50", "--duration-s", "0.5",   "--no-disk", NULL};
    char *o = NULL, *e = NULL;
    assert_int_equal(sb_proc_run(argv, &o, &e), 0);
    assert_int_equal(sb_test_count(e, "is not a JSON list"), 1); /* said once */
    char path[600];
    snprintf(path, sizeof(path), "%s/trtllm.jsonl", out);
    assert_int_equal(count_lines(path), 0);
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", out);
    int ns;
    cJSON **s = sb_test_read_jsonl(path, &ns);
    assert_true(ns >= 3);
    for (int k = 0; k < ns; k++)
        assert_null(at(s[k], "trtllm")); /* absent, never zero-filled */
    sb_test_free_jsonl(s, ns);
    free(o);
    free(e);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(out);
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
        cmocka_unit_test(test_dynkv_matches_mock_truth),
        cmocka_unit_test(test_trtllm_every_iteration_once),
        cmocka_unit_test(test_trtllm_not_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
