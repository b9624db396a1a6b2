/*
 * Integration tests for how `sparkbench analyze` groups runs into repetitions (issue 11 item 8):
 * run directories written by this test into a temporary folder, each a config.yaml in the shape
 * `sparkbench run` writes (every resolved option), a run.json and a small metrics.jsonl. Runs that
 * differ in one setting that changes what is measured (stream, connection reuse, nonce mode,
 * max_tokens, think time, extra body, endpoint, arrival process) must land in separate groups,
 * not be averaged as repetitions of one point (which failed the CoV gate against llama.cpp);
 * runs that differ only in id, seed and repetition are one point; two runs of one point both
 * numbered repetition 1 are a warning on stderr and in the report, naming both.
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
#include <sys/stat.h>

#include "proc.h"

static const char *bin;

/* One run: its id, repetition, and at most two "key: value" lines replacing the template's. */
struct variant {
    const char *id;
    int repetition;
    const char *key, *value; /* a run: key replaced, or NULL */
    const char *label;       /* what its series label must show; NULL: the base series */
    const char *extra;       /* more lines of the run: section (sessioned_chat's options) */
};

static const struct variant variants[] = {
    {"20260101_000001_H0_A_m_rep1", 1, NULL, NULL, NULL, NULL},
    {"20260101_000002_H0_A_m_rep2", 2, "seed", "7", NULL,
     NULL}, /* another seed: still a repetition */
    {"20260101_000003_H0_A_m_rep1b", 1, NULL, NULL, NULL, NULL}, /* repetition 1 again: a warning */
    {"20260101_000004_H0_A_m_nostream", 1, "stream", "false", "stream=false", NULL},
    {"20260101_000005_H0_A_m_newconn", 1, "new_connection", "true", "new_connection=true", NULL},
    {"20260101_000006_H0_A_m_nonce", 1, "nonce_per_user", "true", "nonce_per_user=true", NULL},
    {"20260101_000007_H0_A_m_maxtok", 1, "max_tokens", "64", "max_tokens=64", NULL},
    {"20260101_000008_H0_A_m_think", 1, "think_ms", "100", "think_ms=100", NULL},
    {"20260101_000009_H0_A_m_port", 1, "endpoint", "\"http://127.0.0.1:9001/v1/completions\"",
     "endpoint=http://127.0.0.1:9001/v1/completions", NULL},
    {"20260101_000010_H0_A_m_ignore", 1, "extra_body", "{\"ignore_eos\": true}",
     "extra_body.ignore_eos=true", NULL},
    {"20260101_000011_H0_A_m_chat", 1, "api", "\"chat\"", "api=chat", NULL},
};
#define NVAR  (sizeof(variants) / sizeof(variants[0]))
#define NBASE 3 /* the first three are one point */

static const char *value_of(const struct variant *v, const char *key, const char *dflt)
{
    return v->key && strcmp(v->key, key) == 0 ? v->value : dflt;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A run directory as `sparkbench run` writes it, with the variant's setting changed. */
static void make_run(const char *root, const struct variant *v)
{
    char dir[600], path[700], text[16384];
    snprintf(dir, sizeof(dir), "%s/%s", root, v->id);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/config.yaml", dir);
    snprintf(text, sizeof(text),
             "# Resolved configuration of this run (sparkbench 0.1.0); secrets are never written.\n"
             "run:\n  id: \"%s\"\n  stack: \"A\"\n  model: \"m\"\n  served_model: null\n"
             "  workload: %s\n  context_tokens: 256\n  concurrency: 4\n"
             "  duration_s: 2\n  requests: 0\n  warmup_s: 0\n  ramp_up_s: 0\n  seed: %s\n"
             "  think_ms: %s\n  rate: 0\n  arrival: \"poisson\"\n  burstiness: 1\n"
             "  max_inflight: 1024\n  threads: 1\n  max_tokens: %s\n  temperature: 0\n"
             "  top_p: 1\n  stream: %s\n  api: %s\n  prompt_file: null\n"
             "  prompts_dir: \"inputs/prompts\"\n  nonce_per_user: %s\n"
             "  nonce_per_request: false\n  nonce_position: \"start\"\n  output_dir: \"%s\"\n"
             "  results_dir: \"results\"\n  new_connection: %s\n  timeout_s: 600\n"
             "  connect_timeout_s: 10\n  max_response_bytes: 16777216\n  drain_s: 10\n"
             "  max_input_len: 0\n  input_len_margin: 64\n  tokenizer: null\n"
             "  hypothesis: \"H0\"\n  phase: \"U4\"\n  repetition: %d\n  repetitions: 1\n%s"
             "server:\n  endpoint: %s\n  api_key_env: \"OPENAI_API_KEY\"\n  extra_body: %s\n"
             "telemetry:\n  cadence_ms: 200\n  sysmon: false\n  prom: []\nnotes: null\n",
             v->id, value_of(v, "workload", "\"fixed_context\""), value_of(v, "seed", "42"),
             value_of(v, "think_ms", "0"), value_of(v, "max_tokens", "16"),
             value_of(v, "stream", "true"), value_of(v, "api", "\"auto\""),
             value_of(v, "nonce_per_user", "false"), dir, value_of(v, "new_connection", "false"),
             v->repetition, v->extra ? v->extra : "",
             value_of(v, "endpoint", "\"http://127.0.0.1:9000/v1/completions\""),
             value_of(v, "extra_body", "{}"));
    write_text(path, text);

    snprintf(path, sizeof(path), "%s/run.json", dir);
    snprintf(text, sizeof(text),
             "{\"run_id\": \"%s\", \"start_ts\": 1000.0, \"measure_start_ts\": 1000.0, "
             "\"measure_end_ts\": 1002.0, \"end_ts\": 1002.5, \"exit_reason\": \"duration\", "
             "\"prompt\": {\"bytes\": 1029, \"estimated_tokens\": 258}}\n",
             v->id);
    write_text(path, text);

    /* Ten ok requests, TTFT 10..19 ms, spread over the window. */
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 10; i++)
        fprintf(f,
                "{\"run_id\":\"%s\",\"ts\":%.3f,\"phase\":\"measure\",\"rc\":200,\"ok\":true,"
                "\"error\":null,\"lat_ttft_ms\":%d,\"lat_e2e_ms\":%d,\"output_tokens\":16}\n",
                v->id, 1000.1 + 0.15 * i, 10 + i, 100 + i);
    assert_int_equal(fclose(f), 0);
}

/* Writes runs v[0..n) under <root>/results, runs `analyze` on them into <root>/analysis (out gets
   that path) with --uwork <root>/uwork.txt, and returns <root>/uwork.json parsed; *serr gets
   analyze's stderr. */
static cJSON *analyze_runs(const char *root, const struct variant *v, size_t n, char *out,
                           size_t cap, char **serr)
{
    char runs[300], uwork[300], path[400];
    snprintf(runs, sizeof(runs), "%s/results", root);
    snprintf(out, cap, "%s/analysis", root);
    snprintf(uwork, sizeof(uwork), "%s/uwork.txt", root);
    assert_int_equal(mkdir(runs, 0755), 0);
    for (size_t i = 0; i < n; i++)
        make_run(runs, &v[i]);

    const char *argv[] = {bin,       "analyze", runs,           "--out", out,
                          "--uwork", uwork,     "--no-figures", NULL};
    char *sout = NULL;
    int rc = sb_proc_run(argv, &sout, serr);
    free(sout);
    print_message("stderr:\n%s\n", *serr ? *serr : "");
    assert_int_equal(rc, 0);

    snprintf(path, sizeof(path), "%s/uwork.json", root);
    char *js = sb_test_read_file(path);
    assert_non_null(js);
    cJSON *j = cJSON_Parse(js);
    free(js);
    assert_non_null(j);
    return j;
}

static void test_settings_split_repetitions(void **state)
{
    (void)state;
    char *root = sb_test_tmpdir("/tmp", "groups");
    char out[300], path[400];
    char *serr = NULL;
    cJSON *j = analyze_runs(root, variants, NVAR, out, sizeof(out), &serr);

    /* uwork.json: one H0 group for the base runs (3 repetitions), one for each variant. */
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    print_message("%d H0 groups\n", cJSON_GetArraySize(groups));
    assert_int_equal(cJSON_GetArraySize(groups), (int)(NVAR - NBASE + 1));
    for (size_t i = NBASE; i < NVAR; i++) {
        int found = 0;
        cJSON *g;
        cJSON_ArrayForEach(g, groups)
        {
            const char *label = cJSON_GetObjectItem(g, "series")->valuestring;
            if (strstr(label, variants[i].label))
                found++;
        }
        if (found != 1)
            fail_msg("variant %s: %d series labelled '%s'", variants[i].id, found,
                     variants[i].label);
    }
    cJSON_Delete(j);

    /* The H0 table: the base point has 3 repetitions, every other point 1. */
    snprintf(path, sizeof(path), "%s/figures/H0_latency_vs_concurrency.csv", out);
    char *csv = sb_test_read_file(path);
    assert_non_null(csv);
    assert_int_equal(sb_test_count(csv, "\n"), (int)(NVAR - NBASE + 1) + 1);
    assert_int_equal(sb_test_count(csv, ",256,4,3,30,"), 1);
    assert_int_equal(sb_test_count(csv, ",256,4,1,10,"), (int)(NVAR - NBASE));
    free(csv);

    /* The duplicate repetition number is a warning naming both runs. */
    const char *dup = strstr(serr, "repetition 1");
    assert_non_null(dup);
    assert_non_null(strstr(serr, variants[0].id));
    assert_non_null(strstr(serr, variants[2].id));
    assert_int_equal(sb_test_count(serr, "both repetition"), 1);

    /* The report names the duplicate too. */
    snprintf(path, sizeof(path), "%s/report.md", out);
    char *md = sb_test_read_file(path);
    assert_non_null(md);
    assert_non_null(strstr(md, "both repetition 1"));
    free(md);

    free(serr);
    sb_test_rm_rf(root);
    free(root);
}

/* sessioned_chat's options as config.yaml writes them, with the sessions and salt given. */
#define SESS_LINES(n, salt)                                                                        \
    "  sessions: " #n "\n  session_order: \"zipf:1.0\"\n  system_tokens: 64\n"                     \
    "  session_context_tokens: 128\n  turn_tokens: 32\n  turns: \"8\"\n  history: \"server\"\n"    \
    "  max_context: 0\n  context_policy: \"end\"\n  idle_prob: 0\n  idle_s: \"60\"\n"              \
    "  idle_cap_s: 600\n  prime: true\n  salt: \"" salt "\"\n  kv_bytes_per_token: 0\n"

static const struct variant sess_variants[] = {
    {"20260101_000101_H0_A_m_s8rep1", 1, "workload", "\"sessioned_chat\"", NULL,
     SESS_LINES(8, "aa01")},
    /* another salt (each run draws its own): still a repetition */
    {"20260101_000102_H0_A_m_s8rep2", 2, "workload", "\"sessioned_chat\"", NULL,
     SESS_LINES(8, "bb02")},
    {"20260101_000103_H0_A_m_s64rep1", 1, "workload", "\"sessioned_chat\"", "sessions=64",
     SESS_LINES(64, "cc03")},
};

/* Runs that differ only in --sessions are two points, not repetitions of one (that failed the
   reproducible gate); runs that differ only in --salt are repetitions. */
static void test_sessions_split_groups(void **state)
{
    (void)state;
    char *root = sb_test_tmpdir("/tmp", "groups");
    char out[300], path[400];
    char *serr = NULL;
    size_t n = sizeof(sess_variants) / sizeof(sess_variants[0]);
    cJSON *j = analyze_runs(root, sess_variants, n, out, sizeof(out), &serr);
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    assert_int_equal(cJSON_GetArraySize(groups), 2);
    int with64 = 0;
    cJSON *g;
    cJSON_ArrayForEach(g, groups)
    {
        const char *label = cJSON_GetObjectItem(g, "series")->valuestring;
        print_message("series: %s\n", label);
        with64 += strstr(label, "sessions=64") != NULL;
        assert_null(strstr(label, "salt"));
    }
    assert_int_equal(with64, 1);
    cJSON_Delete(j);

    /* The 8-session point has its 2 repetitions, the 64-session point 1. */
    snprintf(path, sizeof(path), "%s/figures/H0_latency_vs_concurrency.csv", out);
    char *csv = sb_test_read_file(path);
    assert_non_null(csv);
    print_message("%s\n", csv);
    assert_int_equal(sb_test_count(csv, ",256,4,2,20,"), 1);
    assert_int_equal(sb_test_count(csv, ",256,4,1,10,"), 1);
    free(csv);
    free(serr);
    sb_test_rm_rf(root);
    free(root);
}

/* A trace replay's options as config.yaml writes them, at the speed given. */
#define TRACE_LINES(speed)                                                                         \
    "  trace: \"conv.jsonl\"\n  trace_speed: " #speed "\n  trace_max_gap_s: 0\n"                   \
    "  trace_block_tokens: 512\n  trace_force_output: \"on\"\n"

static const struct variant trace_variants[] = {
    {"20260101_000201_H0_A_m_t1rep1", 1, "workload", "\"trace\"", NULL, TRACE_LINES(1)},
    {"20260101_000202_H0_A_m_t1rep2", 2, "workload", "\"trace\"", NULL, TRACE_LINES(1)},
    {"20260101_000203_H0_A_m_t10rep1", 1, "workload", "\"trace\"", "trace_speed=10",
     TRACE_LINES(10)},
};

/* Trace replays at another speed are another point (they were averaged as repetitions), and a
   replay is open loop: config.yaml's concurrency (an unused default) is not its load. */
static void test_trace_split_groups(void **state)
{
    (void)state;
    char *root = sb_test_tmpdir("/tmp", "groups");
    char out[300], path[400];
    char *serr = NULL;
    size_t n = sizeof(trace_variants) / sizeof(trace_variants[0]);
    cJSON *j = analyze_runs(root, trace_variants, n, out, sizeof(out), &serr);
    cJSON *groups = cJSON_GetObjectItem(j, "groups");
    int with10 = 0;
    cJSON *g;
    cJSON_ArrayForEach(g, groups)
    {
        const char *label = cJSON_GetObjectItem(g, "series")->valuestring;
        print_message("series: %s\n", label);
        with10 += strstr(label, "trace_speed=10") != NULL;
    }
    assert_int_equal(with10, 1);
    cJSON_Delete(j);
    snprintf(path, sizeof(path), "%s/figures/summary_v3.csv", out);
    char *csv = sb_test_read_file(path);
    assert_non_null(csv);
    /* run_id,stack,model,workload,context_tokens,concurrency,...: concurrency empty */
    assert_int_equal(sb_test_count(csv, ",trace,256,,"), 3);
    free(csv);
    free(serr);
    sb_test_rm_rf(root);
    free(root);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings_split_repetitions),
        cmocka_unit_test(test_sessions_split_groups),
        cmocka_unit_test(test_trace_split_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
