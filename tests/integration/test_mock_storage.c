/*
 * Integration tests for the storage-aware mock: a Stack B small profile whose second pass over the
 * same prompts is served from the disk tier (block-device reads in /proc/diskstats, KVBM counters
 * in /metrics, TTFT above a tier-0 pass); Stack A refusing work whose KV cannot fit and never
 * touching the disk; LoRA adapters whose cold load shows in TTFT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Sectors read so far by a disk (field 3 after the name in /proc/diskstats). */
static long long sectors_read(const char *disk)
{
    FILE *f = fopen("/proc/diskstats", "r");
    char line[512];
    long long v = -1;
    while (f && fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        char name[64];
        unsigned long long r, rm, sr;
        if (sscanf(line, "%u %u %63s %llu %llu %llu", &maj, &min, name, &r, &rm, &sr) == 6 &&
            strcmp(name, disk) == 0)
            v = (long long)sr;
    }
    if (f)
        fclose(f);
    return v;
}

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

static char *get_metrics(int port)
{
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), port, "/metrics"), NULL, &r);
    assert_int_equal(r.status, 200);
    free(r.headers);
    return r.body;
}

/* A distinct prompt of about `bytes` bytes for index i. */
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

static long status_of(int port, const char *model, const char *prompt, int max_tokens,
                      char **body_out)
{
    cJSON *b = cJSON_CreateObject();
    if (model)
        cJSON_AddStringToObject(b, "model", model);
    cJSON_AddStringToObject(b, "prompt", prompt);
    cJSON_AddNumberToObject(b, "max_tokens", max_tokens);
    char *text = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    char url[128];
    struct sb_http_resp r;
    sb_http("POST", sb_url(url, sizeof(url), port, "/v1/completions"), text, &r);
    free(text);
    long st = r.status;
    if (body_out)
        *body_out = strdup(r.body);
    sb_http_resp_release(&r);
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Server-side TTFT and fetch figures of the log's lines, in order. */
struct logline {
    double ttft_ms;
    long long hit2, hit0, fetch_ns, disk_read;
    bool lora_cold;
    long long lora_ns;
};

static int read_log(const char *path, struct logline *out, int cap)
{
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && n < cap;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const cJSON *ft = cJSON_GetObjectItemCaseSensitive(j, "first_token_ns");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(j, "recv_ns");
        struct logline *l = &out[n++];
        memset(l, 0, sizeof(*l));
        l->ttft_ms = cJSON_IsNumber(ft) ? (ft->valuedouble - rv->valuedouble) / 1e6 : -1;
        const cJSON *x;
        if ((x = cJSON_GetObjectItemCaseSensitive(j, "kv_hit_t2")))
            l->hit2 = (long long)x->valuedouble;
        if ((x = cJSON_GetObjectItemCaseSensitive(j, "kv_hit_t0")))
            l->hit0 = (long long)x->valuedouble;
        if ((x = cJSON_GetObjectItemCaseSensitive(j, "fetch_ns")))
            l->fetch_ns = (long long)x->valuedouble;
        if ((x = cJSON_GetObjectItemCaseSensitive(j, "disk_read_bytes")))
            l->disk_read = (long long)x->valuedouble;
        if ((x = cJSON_GetObjectItemCaseSensitive(j, "lora_load_ns")))
            l->lora_ns = (long long)x->valuedouble;
        l->lora_cold = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "lora_cold"));
        cJSON_Delete(j);
    }
    free(text);
    return n;
}

static void test_stack_b_second_pass_from_disk(void **state)
{
    (void)state;
    char *kvdir = sb_test_tmpdir("/var/tmp", "kv");
    char logpath[] = "/tmp/sbtest-kvlog-XXXXXX";
    close(mkstemp(logpath));
    char profile[512];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackB_small.yaml", srcdir);
    const char *args[] = {"--profile", profile, "--port", "0", "--tier2-path",
                          kvdir,       "--log", logpath,  NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    assert_int_equal(count_entries(kvdir), 1); /* the preallocated tier-2 file */
    char disk[64];
    sb_test_disk_of(kvdir, disk, sizeof(disk));
    enum { N = 12 };
    char *prompts[N];
    for (int i = 0; i < N; i++)
        prompts[i] = prompt_for(i, 3072); /* 24 blocks of 32 byte-level tokens each */
    for (int i = 0; i < N; i++) /* first pass: computed, written through to tier 1 and disk */
        assert_int_equal(status_of(p.port, NULL, prompts[i], 4, NULL), 200);
    long long before = disk[0] ? sectors_read(disk) : -1;
    for (int i = 0; i < N; i++) /* second pass: the early prompts left tiers 0 and 1 */
        assert_int_equal(status_of(p.port, NULL, prompts[i], 4, NULL), 200);
    long long after = disk[0] ? sectors_read(disk) : -1;
    for (int k = 0; k < 5; k++) /* a tier-0 pass: the last prompt again and again */
        assert_int_equal(status_of(p.port, NULL, prompts[N - 1], 4, NULL), 200);

    char *m = get_metrics(p.port);
    double onboard_d2d = metric(m, "kvbm_onboard_blocks_d2d");
    double t2_hits = metric(m, "mock_kv_tier_hits_total{tier=\"2\"}");
    double t2_read = metric(m, "mock_kv_tier2_read_bytes_total");
    double lookups0 = metric(m, "mock_kv_tier_lookups_total{tier=\"0\"}");
    double hits0 = metric(m, "mock_kv_tier_hits_total{tier=\"0\"}");
    double miss0 = metric(m, "mock_kv_tier_misses_total{tier=\"0\"}");
    print_message("tier-2 hits %.0f, onboard_d2d %.0f, tier-2 read bytes %.0f, disk %s sectors "
                  "read +%lld\n",
                  t2_hits, onboard_d2d, t2_read, disk[0] ? disk : "(none)", after - before);
    assert_true(onboard_d2d > 0);
    assert_true(t2_hits > 0);
    assert_true(t2_read >= t2_hits * 256 * 1024); /* bytes = blocks x block size */
    assert_true(hits0 + miss0 == lookups0);
    assert_non_null(strstr(m, "mock_kv_tier_fetch_seconds_count "));
    free(m);
    if (disk[0])
        assert_true(after > before); /* O_DIRECT reads reached the block device */
    else
        print_message("no block device under %s: diskstats check skipped\n", kvdir);

    struct logline l[64];
    int n = read_log(logpath, l, 64);
    assert_int_equal(n, 2 * N + 5);
    double from_disk[N], tier0[5];
    int n_disk = 0;
    for (int i = N; i < 2 * N; i++) {
        if (l[i].hit2 > 0) {
            assert_true(l[i].disk_read > 0);
            assert_true(l[i].fetch_ns > 0);
            from_disk[n_disk++] = l[i].ttft_ms;
        }
    }
    for (int i = 2 * N; i < n; i++) {
        assert_true(l[i].hit0 > 0);
        tier0[i - 2 * N] = l[i].ttft_ms;
    }
    assert_true(n_disk > 0);
    /* Medians, so one scheduling hiccup on a busy CI machine cannot decide it. */
    qsort(from_disk, (size_t)n_disk, sizeof(double), cmp_double);
    qsort(tier0, 5, sizeof(double), cmp_double);
    double med_disk = from_disk[n_disk / 2], med_t0 = tier0[2];
    print_message("TTFT median: %.2f ms served from tier 2 (%d requests), %.2f ms from tier 0\n",
                  med_disk, n_disk, med_t0);
    assert_true(med_disk > med_t0);
    for (int i = 0; i < N; i++)
        free(prompts[i]);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    assert_int_equal(count_entries(kvdir), 0); /* removed on clean exit */
    sb_test_rm_rf(kvdir);
    free(kvdir);
    unlink(logpath);
}

static void test_stack_a_rejects_and_never_writes(void **state)
{
    (void)state;
    char *kvdir = sb_test_tmpdir("/var/tmp", "kv");
    char profile[512];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackA.yaml", srcdir);
    /* 64 blocks of 32 tokens: 2,048 tokens of prompt + output at most. */
    const char *args[] = {"--profile",
                          profile,
                          "--port",
                          "0",
                          "--tier2-path",
                          kvdir,
                          "--tier0-blocks",
                          "64",
                          "--decode-base-ms",
                          "1",
                          "--prefill-per-token-us",
                          "0",
                          "--served-model-name",
                          "m",
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    char *small = prompt_for(1, 1024), *big = prompt_for(2, 16384);
    char *body = NULL;
    assert_int_equal(status_of(p.port, "m", small, 8, NULL), 200);
    assert_int_equal(status_of(p.port, "m", big, 8, &body), 503);
    assert_non_null(strstr(body, "KV cache too small"));
    free(body);
    /* The same small prompt twice: no prefix reuse on Stack A. */
    assert_int_equal(status_of(p.port, "m", small, 8, NULL), 200);
    char *m = get_metrics(p.port);
    assert_true(metric(m, "mock_kv_tier_hits_total{tier=\"0\"}") == 0);
    assert_true(metric(m, "kvbm_offload_blocks_d2d") == 0);
    assert_true(metric(m, "kvbm_offload_blocks_h2d") == 0);
    assert_null(strstr(m, "mock_kv_tier2_write_bytes_total"));
    assert_true(metric(m, "mock_kv_nofit_rejects_total") == 1);
    free(m);
    assert_int_equal(count_entries(kvdir), 0); /* no disk tier, ever */
    free(small);
    free(big);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    sb_test_rm_rf(kvdir);
    free(kvdir);
}

/* TTFT of one streamed request: client-side (send to first token) and server-side (receive to
   first token, from the x_mock stamps of the first content chunk; same clock). */
static void ttft_ms(int port, const char *body, double *client, double *server)
{
    char url[128];
    struct sb_stream s;
    sb_stream_init(&s, sb_url(url, sizeof(url), port, "/v1/completions"), body);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t0 = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
    sb_streams_run(&s, 1, NULL, NULL);
    assert_int_equal(s.status, 200);
    const char *f = strstr(s.body.data, "\"first_token_ns\":");
    const char *r = strstr(s.body.data, "\"recv_ns\":");
    assert_non_null(f);
    assert_non_null(r);
    double first = strtod(f + 17, NULL), recv = strtod(r + 10, NULL);
    *client = (first - t0) / 1e6;
    *server = (first - recv) / 1e6;
    sb_stream_release(&s);
}

static void test_lora_cold_warm(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "kv");
    char mods[700];
    snprintf(mods, sizeof(mods), "finance=%s/finance.bin,legal=%s/legal.bin", dir, dir);
    const char *args[] = {"--lora-modules",
                          mods,
                          "--max-loras",
                          "1",
                          "--lora-load-ms",
                          "60",
                          "--lora-bytes",
                          "32MiB",
                          "--decode-base-ms",
                          "2",
                          "--prefill-base-ms",
                          "0",
                          "--prefill-per-token-us",
                          "0",
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), p.port, "/v1/models"), NULL, &r);
    assert_non_null(strstr(r.body, "\"id\":\"finance\""));
    assert_non_null(strstr(r.body, "\"parent\":\"sparkbench-mock\""));
    sb_http_resp_release(&r);
    const char *vllm = "{\"model\":\"finance\",\"prompt\":\"q\",\"max_tokens\":2,\"stream\":true}";
    const char *trt = "{\"model\":\"sparkbench-mock\",\"prompt\":\"q\",\"max_tokens\":2,"
                      "\"stream\":true,\"lora_request\":{\"lora_name\":\"legal\","
                      "\"lora_int_id\":2,\"lora_path\":\"x\"}}";
    double cold, warm, cold_trt, cold_again, s_cold, s_warm, s_cold_trt, s_cold_again;
    ttft_ms(p.port, vllm, &cold, &s_cold);
    ttft_ms(p.port, vllm, &warm, &s_warm);
    ttft_ms(p.port, trt, &cold_trt, &s_cold_trt); /* evicts finance (max_loras 1) */
    ttft_ms(p.port, vllm, &cold_again, &s_cold_again);
    print_message("client TTFT: cold %.2f ms, warm %.2f ms, cold via lora_request %.2f ms, cold "
                  "after eviction %.2f ms (server side: %.2f, %.2f, %.2f, %.2f)\n",
                  cold, warm, cold_trt, cold_again, s_cold, s_warm, s_cold_trt, s_cold_again);
    /* A cold load costs the file read plus lora_load_ms (60) inside the admitting iteration,
       whose end is an absolute deadline: server-side TTFT grows by at least that. */
    assert_true(s_cold - s_warm >= 60.0);
    assert_true(s_cold_trt - s_warm >= 60.0);
    assert_true(s_cold_again - s_warm >= 60.0);
    assert_true(cold > warm + 50.0); /* and the client sees it */
    char *m = get_metrics(p.port);
    assert_true(metric(m, "mock_lora_loads_total") == 3);
    assert_true(metric(m, "mock_lora_hits_total") == 1);
    assert_true(metric(m, "mock_lora_evictions_total") == 2);
    free(m);
    assert_int_equal(status_of(p.port, "nope", "q", 2, NULL), 404);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

static void test_metrics_port(void **state)
{
    (void)state;
    const char *args[] = {"--tier0-blocks", "64", "--metrics-port", "0", NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    /* The second stdout line is the metrics port. */
    char line[32];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(p.out_fd, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    int mport = atoi(line);
    assert_true(mport > 0 && mport != p.port);
    assert_int_equal(status_of(p.port, NULL, "hello storage", 4, NULL), 200);
    char *m = get_metrics(mport);
    assert_true(metric(m, "kvbm_matched_tokens") >= 0);
    assert_true(metric(m, "mock:requests_total{outcome=\"ok\"}") == 1);
    free(m);
    char url[128];
    struct sb_http_resp r;
    sb_http("GET", sb_url(url, sizeof(url), mport, "/v1/models"), NULL, &r);
    assert_int_equal(r.status, 404); /* that port serves /metrics only */
    sb_http_resp_release(&r);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

static void test_stack_b_profile_starts(void **state)
{
    (void)state;
    char *kvdir = sb_test_tmpdir("/var/tmp", "kv");
    char profile[512];
    snprintf(profile, sizeof(profile), "%s/configs/mock/stackB.yaml", srcdir);
    /* The shipped profile, with a smaller disk tier than its 1 GiB. */
    const char *args[] = {"--profile", profile,         "--port", "0", "--tier2-path",
                          kvdir,       "--tier2-bytes", "64MiB",  NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    assert_int_equal(count_entries(kvdir), 1);
    char *m = get_metrics(p.port);
    assert_true(metric(m, "mock_kv_tier_capacity_blocks{tier=\"2\"}") == 1024);
    free(m);
    assert_int_equal(sb_proc_stop(&p, SIGINT), 0);
    assert_int_equal(count_entries(kvdir), 0);
    sb_test_rm_rf(kvdir);
    free(kvdir);
}

static void test_bad_tier2_dir(void **state)
{
    (void)state;
    const char *argv[] = {bin,  "mock",         "--tier0-blocks",  "16", "--tier2-blocks",
                          "16", "--tier2-path", "/nonexistent/kv", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(argv, &out, &err), 1);
    assert_non_null(strstr(err, "/nonexistent/kv"));
    free(out);
    free(err);
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
        cmocka_unit_test(test_stack_b_second_pass_from_disk),
        cmocka_unit_test(test_stack_a_rejects_and_never_writes),
        cmocka_unit_test(test_lora_cold_warm),
        cmocka_unit_test(test_metrics_port),
        cmocka_unit_test(test_stack_b_profile_starts),
        cmocka_unit_test(test_bad_tier2_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
