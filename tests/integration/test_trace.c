/*
 * Integration tests of trace replay (issue 13, "Trace replay"): `sparkbench run --workload trace`
 * against a real `sparkbench mock` whose KV cache is large enough to be unbounded.
 *
 * The 1,000-request slice (tests/data/trace/conversation_1000.jsonl: the first 1,000 lines of the
 * Mooncake conversation trace) is replayed at --trace-speed 1000 with --max-inflight 1: the open
 * loop then sends every request in trace order, each after the previous one finished, so every
 * block an earlier request computed is in the mock's cache when a later one arrives, and the
 * mock's prefix hits (usage cached_tokens) must equal the trace's own oracle computed here from
 * hash_ids at the mock's granularity (32-token blocks of 4 bytes a token; a reused last block
 * counts its whole 32-token blocks only). With more requests in flight the mock would only hit
 * blocks already computed, and the comparison would depend on timing. The mock draws an early
 * EOS with probability 0.5 per token, so outputs as long as the trace says show that ignore_eos
 * and min_tokens were sent and honoured. Nothing here is timed: schedules are compared as the
 * intended send stamps, which the client computes, never as measured delays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "proc.h"
#include "sb/err.h"
#include "sb/trace.h"

static const char *bin;
static const char *srcdir;
static char slice[700];

#define RUN_LIMIT_S 240.0
#define MOCK_BLOCK  32

/* A mock with no timing cost, a KV cache far above the slice's 13.7 M tokens, early EOS. */
static const char *const mock_args[] = {"--tier0-blocks",
                                        "2000000",
                                        "--prefill-base-ms",
                                        "0",
                                        "--prefill-per-token-us",
                                        "0",
                                        "--decode-base-ms",
                                        "0",
                                        "--decode-per-seq-us",
                                        "0",
                                        "--eos-prob",
                                        "0.5",
                                        NULL};

struct trace_line {
    double ts;
    long long in, out;
    long long *ids;
    size_t nids;
};

static struct trace_line *read_trace(const char *path, int *n)
{
    cJSON **v = sb_test_read_jsonl(path, n);
    struct trace_line *t = calloc((size_t)*n, sizeof(*t));
    assert_non_null(t);
    for (int i = 0; i < *n; i++) {
        t[i].ts = sb_test_num(v[i], "timestamp");
        t[i].in = (long long)sb_test_num(v[i], "input_length");
        t[i].out = (long long)sb_test_num(v[i], "output_length");
        const cJSON *ids = cJSON_GetObjectItem(v[i], "hash_ids");
        t[i].nids = (size_t)cJSON_GetArraySize(ids);
        t[i].ids = calloc(t[i].nids + 1, sizeof(long long));
        for (size_t j = 0; j < t[i].nids; j++)
            t[i].ids[j] = (long long)cJSON_GetArrayItem(ids, (int)j)->valuedouble;
    }
    sb_test_free_jsonl(v, *n);
    return t;
}

static void free_trace(struct trace_line *t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[i].ids);
    free(t);
}

/*
 * The oracle, written out plainly: for each request, its leading blocks whose ids appeared in an
 * earlier request (the Mooncake ids are prefix hashes, so an id stands for its whole prefix), each
 * worth its tokens (trace) or its whole mock blocks (mock). ids are below max_id.
 */
static void oracle(const struct trace_line *t, int n, long long *trace_hit, long long *mock_hit)
{
    long long max_id = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < t[i].nids; j++)
            if (t[i].ids[j] >= max_id)
                max_id = t[i].ids[j] + 1;
    char *seen = calloc((size_t)max_id + 1, 1);
    assert_non_null(seen);
    for (int i = 0; i < n; i++) {
        trace_hit[i] = mock_hit[i] = 0;
        for (size_t j = 0; j < t[i].nids && seen[t[i].ids[j]]; j++) {
            long long len = j + 1 < t[i].nids ? 512 : t[i].in - 512 * (long long)j;
            trace_hit[i] += len;
            mock_hit[i] += len / MOCK_BLOCK * MOCK_BLOCK;
        }
        for (size_t j = 0; j < t[i].nids; j++)
            seen[t[i].ids[j]] = 1;
    }
    free(seen);
}

/* Runs `run --workload trace` with args against the mock on port; returns its exit code. */
static int run_trace(const struct sb_run_paths *rp, const char *trace, const char *const *args,
                     char **err_out)
{
    const char *argv[64];
    int k = 0;
    const char *head[] = {bin,
                          "run",
                          "--endpoint",
                          rp->url,
                          "--output-dir",
                          rp->out,
                          "--model",
                          "sparkbench-mock",
                          "--workload",
                          "trace",
                          "--trace",
                          trace,
                          "--quiet",
                          "--no-server-state",
                          NULL};
    for (int i = 0; head[i]; i++)
        argv[k++] = head[i];
    for (int i = 0; args[i]; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    char *o = NULL, *e = NULL;
    int rc = sb_proc_run_limit(argv, &o, &e, RUN_LIMIT_S);
    free(o);
    if (err_out)
        *err_out = e;
    else
        free(e);
    return rc;
}

static int by_trace_idx(const void *a, const void *b)
{
    double x = sb_test_num(*(cJSON *const *)a, "trace_idx");
    double y = sb_test_num(*(cJSON *const *)b, "trace_idx");
    return x < y ? -1 : x > y;
}

static void test_replay_slice_matches_oracle(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, mock_args), 0);
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "trace", mock.port, "/v1/completions");
    const char *args[] = {"--trace-speed", "1000", "--max-inflight", "1", NULL};
    char *err = NULL;
    int rc = run_trace(&rp, slice, args, &err);
    if (rc != 0)
        fail_msg("run exit %d: %s", rc, err ? err : "");
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);

    int n = 0, nt = 0;
    struct trace_line *t = read_trace(slice, &nt);
    assert_int_equal(nt, 1000);
    cJSON **v = sb_test_read_jsonl(rp.metrics, &n);
    assert_int_equal(n, 1000);
    qsort(v, (size_t)n, sizeof(*v), by_trace_idx);
    long long *th = calloc((size_t)n, sizeof(long long)),
              *mh = calloc((size_t)n, sizeof(long long));
    oracle(t, n, th, mh);
    long long sum_cached = 0, sum_mock = 0, sum_trace = 0;
    uint64_t sched0 = 0, prev_send = 0;
    double prev_seq = -1;
    for (int i = 0; i < n; i++) {
        const cJSON *r = v[i];
        assert_true(sb_test_num(r, "trace_idx") == i);
        assert_true(sb_test_true(r, "ok"));
        assert_string_equal(sb_test_str(r, "workload"), "trace");
        /* in order: the i-th line is the i-th request sent */
        assert_true(sb_test_num(r, "seq") > prev_seq);
        prev_seq = sb_test_num(r, "seq");
        /* the schedule: timestamps / 1000 after the first line's, sent at or after it */
        uint64_t sched = (uint64_t)sb_test_num(r, "t_sched_ns");
        uint64_t send = (uint64_t)sb_test_num(r, "t_send_ns");
        if (i == 0)
            sched0 = sched;
        double want_ns = (t[i].ts - t[0].ts) * 1e6 / 1000.0;
        double got_ns = (double)(sched - sched0);
        if (fabs(got_ns - want_ns) > 2) /* the client rounds its summed gaps to a ns */
            fail_msg("line %d scheduled %.0f ns after the first, wanted %.0f", i, got_ns, want_ns);
        assert_true(send >= sched);
        assert_true(send >= prev_send);
        prev_send = send;
        /* the trace's lengths */
        assert_true(sb_test_num(r, "context_tokens") == (double)t[i].in);
        assert_true(sb_test_num(r, "prompt_tokens") == (double)t[i].in);
        if (sb_test_num(r, "output_tokens") != (double)t[i].out)
            fail_msg("line %d: %.0f output tokens, the trace says %lld (ignore_eos, min_tokens)", i,
                     sb_test_num(r, "output_tokens"), t[i].out);
        /* the oracle on the record, and the mock's hits */
        assert_true(sb_test_num(r, "reusable_tokens") == (double)th[i]);
        double dist = sb_test_num(r, "reuse_distance_tokens");
        assert_true(th[i] > 0 ? dist >= 0 : isnan(dist));
        if (sb_test_num(r, "cached_tokens") != (double)mh[i])
            fail_msg("line %d: the mock hit %.0f tokens, the oracle says %lld", i,
                     sb_test_num(r, "cached_tokens"), mh[i]);
        sum_cached += (long long)sb_test_num(r, "cached_tokens");
        sum_mock += mh[i];
        sum_trace += th[i];
    }
    print_message("slice: mock cached %lld tokens, oracle %lld at 32-token blocks, %lld at the "
                  "trace's tokens\n",
                  sum_cached, sum_mock, sum_trace);
    assert_int_equal(sum_trace, 2962776);
    cJSON *rj = sb_test_read_json(rp.runjson);
    const cJSON *tr = cJSON_GetObjectItem(rj, "trace");
    assert_non_null(tr);
    assert_true(sb_test_num(tr, "requests") == 1000);
    assert_true(sb_test_num(tr, "oracle_hit_tokens") == (double)sum_trace);
    assert_true(sb_test_num(tr, "input_tokens") == 13732944);
    assert_true(sb_test_num(tr, "block_tokens") == 512);
    assert_true(sb_test_num(tr, "speed") == 1000);
    assert_int_equal(strlen(sb_test_str(tr, "sha256")), 64);
    assert_string_equal(sb_test_str(cJSON_GetObjectItem(rj, "load"), "mode"), "open");
    assert_non_null(cJSON_GetObjectItem(rj, "client_lag"));
    cJSON_Delete(rj);
    free(th);
    free(mh);
    sb_test_free_jsonl(v, n);
    free_trace(t, nt);
    sb_run_paths_release(&rp);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* --requests, --duration-s and --trace-max-gap-s pick and move arrivals; --trace-force-output
   off leaves early EOS to the server. */
static void test_limits_and_gap_cap(void **state)
{
    (void)state;
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, mock_args), 0);
    char *dir = sb_test_tmpdir("/tmp", "tracelim");
    char small[600];
    snprintf(small, sizeof(small), "%s/small.jsonl", dir);
    write_text(
        small,
        "{\"timestamp\":0,\"input_length\":100,\"output_length\":200,\"hash_ids\":[0]}\n"
        "{\"timestamp\":100,\"input_length\":600,\"output_length\":200,\"hash_ids\":[0,1]}\n"
        "{\"timestamp\":3000,\"input_length\":10,\"output_length\":200,\"hash_ids\":[2]}\n"
        "{\"timestamp\":3100,\"input_length\":10,\"output_length\":200,\"hash_ids\":[3]}\n"
        "{\"timestamp\":60000,\"input_length\":10,\"output_length\":200,\"hash_ids\":[4]}\n");
    static const struct {
        const char *tag;
        const char *args[8];
        int records;
        double sched_ms[5]; /* intended sends after the first */
        bool full_output;
    } cases[] = {
        {"requests", {"--requests", "2", NULL}, 2, {0, 100}, true},
        {"gap cap", {"--trace-max-gap-s", "0.2", NULL}, 5, {0, 100, 300, 400, 600}, true},
        {"speed and duration",
         {"--trace-speed", "10", "--duration-s", "1", NULL},
         4,
         {0, 10, 300, 310},
         true},
        {"force off",
         {"--trace-max-gap-s", "0.05", "--trace-force-output", "off", NULL},
         5,
         {0, 50, 100, 150, 200},
         false},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct sb_run_paths rp;
        sb_run_paths_init(&rp, srcdir, "tracelim", mock.port, "/v1/completions");
        char *err = NULL;
        int rc = run_trace(&rp, small, cases[c].args, &err);
        if (rc != 0)
            fail_msg("%s: run exit %d: %s", cases[c].tag, rc, err ? err : "");
        free(err);
        int n = 0;
        cJSON **v = sb_test_read_jsonl(rp.metrics, &n);
        assert_int_equal(n, cases[c].records);
        qsort(v, (size_t)n, sizeof(*v), by_trace_idx);
        double s0 = sb_test_num(v[0], "t_sched_ns");
        int shorter = 0;
        for (int i = 0; i < n; i++) {
            assert_true(sb_test_num(v[i], "trace_idx") == i);
            double ms = (sb_test_num(v[i], "t_sched_ns") - s0) / 1e6;
            if (fabs(ms - cases[c].sched_ms[i]) > 1e-5)
                fail_msg("%s: request %d scheduled at %.6f ms, wanted %.3f", cases[c].tag, i, ms,
                         cases[c].sched_ms[i]);
            shorter += sb_test_num(v[i], "output_tokens") < 200;
        }
        if (cases[c].full_output)
            assert_int_equal(shorter, 0);
        else /* p = 0.5 per token: all five at 200 tokens is 2^-995 */
            assert_true(shorter > 0);
        /* request 1 reuses request 0's only block: 100 tokens, nothing in between */
        assert_true(sb_test_num(v[1], "reusable_tokens") == 100);
        assert_true(sb_test_num(v[1], "reuse_distance_tokens") == 0);
        assert_true(isnan(sb_test_num(v[0], "reuse_distance_tokens")));
        cJSON *rj = sb_test_read_json(rp.runjson);
        assert_true(sb_test_num(cJSON_GetObjectItem(rj, "trace"), "requests") == cases[c].records);
        cJSON_Delete(rj);
        sb_test_free_jsonl(v, n);
        sb_run_paths_release(&rp);
    }
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* A bad trace stops the run before anything is sent, naming file, line and field. */
static void test_bad_trace(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "tracebad");
    char bad[600];
    snprintf(bad, sizeof(bad), "%s/bad.jsonl", dir);
    write_text(bad,
               "{\"timestamp\":0,\"input_length\":100,\"output_length\":2,\"hash_ids\":[0]}\n"
               "{\"timestamp\":5,\"input_length\":1000,\"output_length\":2,\"hash_ids\":[0]}\n");
    struct sb_run_paths rp;
    sb_run_paths_init(&rp, srcdir, "tracebad", 9, "/v1/completions");
    const char *none[] = {NULL};
    char *err = NULL;
    assert_int_equal(run_trace(&rp, bad, none, &err), 1);
    char want[800];
    snprintf(want, sizeof(want), "%s:2: field 'hash_ids': 1 ids for input_length 1000", bad);
    if (!err || !strstr(err, want))
        fail_msg("stderr '%s' does not say '%s'", err ? err : "", want);
    free(err);
    /* no --trace at all */
    const char *argv[] = {bin,    "run",        "--endpoint", rp.url,    "--output-dir",
                          rp.out, "--workload", "trace",      "--quiet", "--no-server-state",
                          NULL};
    char *o = NULL;
    err = NULL;
    assert_int_equal(sb_proc_run_limit(argv, &o, &err, 30), 1);
    assert_non_null(strstr(err, "--workload trace needs --trace FILE"));
    free(o);
    free(err);
    sb_run_paths_release(&rp);
    sb_test_rm_rf(dir);
    free(dir);
}

/* trace-gen: the file parses back; arrivals at the rate asked; prefix popularity Zipf; about
   --reuse-prob of the requests continue an earlier one; the same seed, the same bytes. */
static void test_trace_gen(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "tracegen");
    char a[600], b[600], c[600];
    snprintf(a, sizeof(a), "%s/a.jsonl", dir);
    snprintf(b, sizeof(b), "%s/b.jsonl", dir);
    snprintf(c, sizeof(c), "%s/c.jsonl", dir);
    const char *common[] = {"--requests",
                            "20000",
                            "--rate",
                            "50",
                            "--prefixes",
                            "4",
                            "--prefix-tokens",
                            "1024",
                            "--prefix-zipf",
                            "1",
                            "--reuse-prob",
                            "0.4",
                            "--reuse-distance",
                            "exp:50000",
                            "--input-tokens",
                            "uniform:600:1400",
                            "--output-tokens",
                            "64",
                            NULL};
    const char *seeds[] = {"7", "7", "8"};
    const char *outs[] = {a, b, c};
    for (int k = 0; k < 3; k++) {
        const char *argv[40];
        int m = 0;
        argv[m++] = bin;
        argv[m++] = "trace-gen";
        argv[m++] = "--out";
        argv[m++] = outs[k];
        argv[m++] = "--seed";
        argv[m++] = seeds[k];
        for (int i = 0; common[i]; i++)
            argv[m++] = common[i];
        argv[m] = NULL;
        char *o = NULL, *e = NULL;
        int rc = sb_proc_run_limit(argv, &o, &e, 120);
        if (rc != 0)
            fail_msg("trace-gen exit %d: %s", rc, e ? e : "");
        assert_non_null(strstr(e, "20000 requests"));
        free(o), free(e);
    }
    char *ta = sb_test_read_file(a), *tb = sb_test_read_file(b), *tc = sb_test_read_file(c);
    assert_string_equal(ta, tb);      /* deterministic */
    assert_true(strcmp(ta, tc) != 0); /* another seed, another trace */
    free(ta), free(tb), free(tc);
    struct sb_trace t;
    struct sb_err err;
    if (sb_trace_load(a, 512, &t, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(t.n, 20000);
    double span_s = t.req[t.n - 1].ts_ms / 1000.0;
    double rate = (double)(t.n - 1) / span_s;
    print_message("trace-gen: %.2f req/s (asked 50)\n", rate);
    assert_true(rate > 47.5 && rate < 52.5); /* 20,000 exponential gaps: sd 0.7 % */
    /* prefix k's first block is id 2k; a continuation keeps its parent's prefix, so the
       popularity of every request's first block is the Zipf weights 1, 1/2, 1/3, 1/4 */
    long long first[4] = {0}, continued = 0;
    for (size_t i = 0; i < t.n; i++) {
        uint64_t id0 = t.ids[t.req[i].first_id];
        assert_true(id0 % 2 == 0 && id0 < 8);
        first[id0 / 2]++;
        assert_true(t.req[i].output_len == 64);
        long long fresh = t.req[i].input_len - 1024;
        continued += t.req[i].reusable_tokens > 1024;
        assert_true(fresh >= 600); /* at least its own new tokens */
    }
    double r1 = (double)first[0] / (double)first[1], r3 = (double)first[0] / (double)first[3];
    print_message("trace-gen: prefix shares %lld %lld %lld %lld (1 : %.2f : %.2f : %.2f)\n",
                  first[0], first[1], first[2], first[3], 1 / r1,
                  (double)first[2] / (double)first[0], 1 / r3);
    assert_true(r1 > 1.8 && r1 < 2.2);
    assert_true(r3 > 3.5 && r3 < 4.5);
    /* continuations: 40 % asked, less the early ones with no history that far back (every
       request has a whole block beyond the prefix, so a continuation reuses more than it) */
    double share = (double)continued / (double)t.n;
    print_message("trace-gen: %.3f of requests continue an earlier one (asked 0.4)\n", share);
    assert_true(share > 0.35 && share <= 0.41);
    sb_trace_release(&t);
    /* --duration-s cuts the arrivals */
    const char *argv[] = {bin,      "trace-gen", "--out",        a,    "--requests", "100000",
                          "--rate", "100",       "--duration-s", "10", NULL};
    char *o = NULL, *e = NULL;
    assert_int_equal(sb_proc_run_limit(argv, &o, &e, 120), 0);
    free(o), free(e);
    if (sb_trace_load(a, 512, &t, &err) != 0)
        fail_msg("%s", err.msg);
    assert_true(t.req[t.n - 1].ts_ms < 10000);
    assert_true(t.n > 900 && t.n < 1100);
    sb_trace_release(&t);
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
    snprintf(slice, sizeof(slice), "%s/tests/data/trace/conversation_1000.jsonl", srcdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_slice_matches_oracle),
        cmocka_unit_test(test_limits_and_gap_cap),
        cmocka_unit_test(test_bad_trace),
        cmocka_unit_test(test_trace_gen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
