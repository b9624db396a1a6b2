/*
 * Unit tests for the Prometheus text parser and snapshots (sb/prom.h). Tables of: captured and
 * hand-written pages (KVBM with both prefixes, Dynamo frontend, vLLM, the mock's own page) with
 * exact sample counts and spot values; small texts rendered back sample by sample (escapes,
 * specials, timestamps, whitespace, comments, TYPE resolution); malformed lines in strict and
 * lenient mode; snapshot sums, first-of-names and histogram quantiles checked against arithmetic
 * done by hand. Every text is fed from an exact-size allocation without a NUL, so the sanitizer
 * build catches any read past the bytes handed over.
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

#include <cjson/cJSON.h>

#include "sb/buf.h"
#include "sb/prom.h"
#include "sb/sysmon.h"
#include "sb/util.h"

/* ---- helpers ---- */

/* An exact-size, non-NUL-terminated copy of s[0..len). */
static char *exact_copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    if (len)
        memcpy(p, s, len);
    return p;
}

/* A fixture under tests/data/prom/, in an exact-size allocation. */
static char *read_fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/prom/%s", SB_TEST_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(sb_buf_add(&b, chunk, r), 0);
    fclose(f);
    char *p = exact_copy(b.data, b.len);
    *len = b.len;
    sb_buf_release(&b);
    return p;
}

static void render_value(struct sb_buf *b, double v)
{
    if (isnan(v))
        sb_buf_adds(b, "NaN");
    else if (isinf(v))
        sb_buf_adds(b, v > 0 ? "+Inf" : "-Inf");
    else
        sb_buf_addf(b, "%.17g", v);
}

/* Renders every sample as `name{a="v",...} value [@ts] type|` (label values raw, unescaped). */
static int render_cb(const struct sb_prom_sample *s, void *arg)
{
    struct sb_buf *b = arg;
    sb_buf_add(b, s->name, s->name_len);
    if (s->nlabels) {
        sb_buf_adds(b, "{");
        for (size_t i = 0; i < s->nlabels; i++) {
            if (i)
                sb_buf_adds(b, ",");
            sb_buf_add(b, s->labels[i].name, s->labels[i].name_len);
            sb_buf_adds(b, "=\"");
            sb_buf_add(b, s->labels[i].value, s->labels[i].value_len);
            sb_buf_adds(b, "\"");
        }
        sb_buf_adds(b, "}");
    }
    sb_buf_adds(b, " ");
    render_value(b, s->value);
    if (s->has_timestamp)
        sb_buf_addf(b, " @%lld", (long long)s->timestamp_ms);
    sb_buf_addf(b, " %s|", s->type);
    return 0;
}

static int render_help_cb(const char *name, size_t name_len, const char *help, size_t help_len,
                          void *arg)
{
    struct sb_buf *b = (struct sb_buf *)arg + 1; /* helps go to the second buffer */
    sb_buf_add(b, name, name_len);
    sb_buf_adds(b, ": ");
    sb_buf_add(b, help, help_len);
    sb_buf_adds(b, "|");
    return 0;
}

struct counts {
    size_t samples, helps;
};

static int count_cb(const struct sb_prom_sample *s, void *arg)
{
    (void)s;
    ((struct counts *)arg)->samples++;
    return 0;
}

static int count_help_cb(const char *name, size_t name_len, const char *help, size_t help_len,
                         void *arg)
{
    (void)name, (void)name_len, (void)help, (void)help_len;
    ((struct counts *)arg)->helps++;
    return 0;
}

static struct sb_prom_snapshot *snapshot_of(const char *text)
{
    size_t len = strlen(text);
    char *copy = exact_copy(text, len);
    struct sb_prom_snapshot *s = NULL;
    struct sb_err err;
    assert_int_equal(sb_prom_snapshot_parse(&s, copy, len, &err), 0);
    free(copy);
    assert_non_null(s);
    return s;
}

static struct sb_prom_snapshot *snapshot_fixture(const char *name)
{
    size_t len;
    char *text = read_fixture(name, &len);
    struct sb_prom_snapshot *s = NULL;
    struct sb_err err;
    assert_int_equal(sb_prom_snapshot_parse(&s, text, len, &err), 0);
    free(text);
    return s;
}

static const char *type_of(const struct sb_prom_snapshot *s, const char *name)
{
    for (size_t i = 0; i < sb_prom_snapshot_count(s); i++)
        if (strcmp(sb_prom_snapshot_sample(s, i)->name, name) == 0)
            return sb_prom_snapshot_sample(s, i)->type;
    return NULL;
}

#define Qw "Qwen/Qwen3-0.6B"
#define Ll "meta-llama/Llama-3.1-8B-Instruct"

/* ---- fixtures: counts and spot values ---- */

struct spot {
    const char *name; /* NULL ends the list */
    const char *pairs[4];
    size_t npairs;
    double value;
    const char *type;
};

static const struct fixture_case {
    const char *file;
    size_t samples, helps;
    struct spot spots[12]; /* ends at the first NULL name */
} fixture_cases[] = {
    {"kvbm.prom",
     8,
     8,
     {{"kvbm_offload_blocks_d2h", {0}, 0, 1432, "counter"},
      {"kvbm_offload_blocks_h2d", {0}, 0, 611, "counter"},
      {"kvbm_offload_blocks_d2d", {0}, 0, 0, "counter"},
      {"kvbm_onboard_blocks_h2d", {0}, 0, 384, "counter"},
      {"kvbm_onboard_blocks_d2d", {0}, 0, 96, "counter"},
      {"kvbm_matched_tokens", {0}, 0, 12544, "counter"},
      {"kvbm_host_cache_hit_rate", {0}, 0, 0.6875, "gauge"},
      {"kvbm_disk_cache_hit_rate", {0}, 0, 0.25, "gauge"}}},
    {"dynamo_kvbm.prom",
     8,
     8,
     {{"dynamo_kvbm_offload_blocks_d2h", {0}, 0, 2048, "counter"},
      {"dynamo_kvbm_offload_blocks_d2d", {0}, 0, 17, "counter"},
      {"dynamo_kvbm_onboard_blocks_d2d", {0}, 0, 128, "counter"},
      {"dynamo_kvbm_host_cache_hit_rate", {0}, 0, 0.5, "gauge"},
      {"dynamo_kvbm_disk_cache_hit_rate", {0}, 0, 0.125, "gauge"}}},
    {"dynamo_frontend.prom",
     48,
     7,
     {{"dynamo_frontend_inflight_requests", {"model", Qw}, 1, 3, "gauge"},
      {"dynamo_frontend_queued_requests", {"model", Ll}, 1, 2, "gauge"},
      {"dynamo_frontend_requests_total", {0}, 0, 150, "counter"},
      {"dynamo_frontend_time_to_first_token_seconds_bucket",
       {"model", Qw, "le", "0.1"},
       2,
       70,
       "histogram"},
      {"dynamo_frontend_time_to_first_token_seconds_bucket", {"le", "+Inf"}, 1, 150, "histogram"},
      {"dynamo_frontend_time_to_first_token_seconds_sum", {0}, 0, 13.25, "histogram"},
      {"dynamo_frontend_time_to_first_token_seconds_count", {"model", Ll}, 1, 50, "histogram"},
      {"dynamo_frontend_inter_token_latency_seconds_sum", {0}, 0, 614.4, "histogram"},
      {"dynamo_frontend_cached_sequence_length_bucket", {"le", "0"}, 1, 10, "histogram"}}},
    /* llama.cpp's 12 series, written from tools/server/server.cpp's metric definitions */
    {"llamacpp.prom",
     12,
     12,
     {{"llamacpp:prompt_tokens_total", {0}, 0, 33065, "counter"},
      {"llamacpp:n_decode_total", {0}, 0, 2210, "counter"},
      {"llamacpp:kv_cache_usage_ratio", {0}, 0, 0.996582, "gauge"},
      {"llamacpp:kv_cache_tokens", {0}, 0, 4082, "gauge"},
      {"llamacpp:requests_processing", {0}, 0, 4, "gauge"},
      {"llamacpp:requests_deferred", {0}, 0, 3, "gauge"}}},
    /* SGLang, from python/sglang/srt/metrics/collector.py */
    {"sglang.prom",
     15,
     10,
     {{"sglang:num_running_reqs", {"tp_rank", "0"}, 1, 6, "gauge"},
      {"sglang:num_queue_reqs", {0}, 0, 2, "gauge"},
      {"sglang:token_usage", {0}, 0, 0.28, "gauge"},
      {"sglang:generation_tokens_total", {0}, 0, 7.557572e+06, "counter"},
      {"sglang:time_to_first_token_seconds_count", {0}, 0, 20, "histogram"}}},
    {"vllm.prom",
     57,
     10,
     {{"vllm:num_requests_running", {"model_name", Ll}, 1, 4, "gauge"},
      {"vllm:num_requests_waiting", {"engine", "0"}, 1, 2, "gauge"},
      {"vllm:kv_cache_usage_perc", {0}, 0, 0.4375, "gauge"},
      {"vllm:prefix_cache_queries_total", {0}, 0, 81920, "counter"},
      {"vllm:prefix_cache_queries_created", {0}, 0, 1733312345.6789, "gauge"},
      {"vllm:prefix_cache_hits_total", {0}, 0, 40960, "counter"},
      {"vllm:time_to_first_token_seconds_bucket", {"le", "0.25"}, 1, 38, "histogram"},
      {"vllm:time_to_first_token_seconds_sum", {0}, 0, 5.125, "histogram"},
      {"python_gc_objects_collected_total", {0}, 0, 13628, "counter"}}},
    {"mock.prom",
     302,
     44,
     {{"mock:requests_total", {"outcome", "ok"}, 1, 4, "counter"},
      {"mock:generation_tokens_total", {0}, 0, 29, "counter"},
      {"dynamo_frontend_requests_total", {0}, 0, 4, "counter"},
      {"dynamo_frontend_time_to_first_token_seconds_bucket", {"le", "0.02"}, 1, 4, "histogram"},
      {"dynamo_frontend_time_to_first_token_seconds_bucket", {"le", "0.01"}, 1, 0, "histogram"},
      {"dynamo_frontend_inter_token_latency_seconds_count", {0}, 0, 25, "histogram"},
      {"kvbm_offload_blocks_d2h", {0}, 0, 0, "counter"},
      {"kvbm_host_cache_hit_rate", {0}, 0, 0, "gauge"},
      {"mock_kv_tier_capacity_blocks", {0}, 0, 192, "gauge"},
      {"mock_kv_block_size_bytes", {0}, 0, 65536, "gauge"}}},
};

static void test_fixtures(void **state)
{
    (void)state;
    for (size_t c = 0; c < SB_ARRAY_SIZE(fixture_cases); c++) {
        const struct fixture_case *fc = &fixture_cases[c];
        size_t len;
        char *text = read_fixture(fc->file, &len);
        struct counts n = {0};
        size_t bad = 99;
        struct sb_err err;
        int rc = sb_prom_parse_full(text, len, false, count_cb, count_help_cb, &n, &bad, &err);
        if (rc != 0)
            fail_msg("%s: %s", fc->file, err.msg);
        assert_int_equal(bad, 0);
        if (n.samples != fc->samples || n.helps != fc->helps)
            fail_msg("%s: %zu samples, %zu helps", fc->file, n.samples, n.helps);

        struct sb_prom_snapshot *s = NULL;
        assert_int_equal(sb_prom_snapshot_parse(&s, text, len, &err), 0);
        free(text); /* the snapshot must not point into the page */
        assert_int_equal(sb_prom_snapshot_count(s), fc->samples);
        assert_int_equal(sb_prom_snapshot_bad_lines(s), 0);
        for (const struct spot *sp = fc->spots; sp->name; sp++) {
            double v = -12345;
            if (!sb_prom_snapshot_sum(s, sp->name, sp->pairs, sp->npairs, &v))
                fail_msg("%s: no sample %s", fc->file, sp->name);
            if (fabs(v - sp->value) > 1e-9 * fabs(sp->value))
                fail_msg("%s: %s = %.17g, want %.17g", fc->file, sp->name, v, sp->value);
            const char *t = type_of(s, sp->name);
            assert_non_null(t);
            if (strcmp(t, sp->type) != 0)
                fail_msg("%s: %s has type %s, want %s", fc->file, sp->name, t, sp->type);
        }
        sb_prom_snapshot_free(s);
    }
}

/* Every truncation of a page parses leniently without reading past its end. */
static void test_fixture_truncations(void **state)
{
    (void)state;
    for (size_t c = 0; c < SB_ARRAY_SIZE(fixture_cases); c++) {
        size_t len;
        char *text = read_fixture(fixture_cases[c].file, &len);
        size_t step = len > 4096 ? 13 : 1;
        size_t total = 0;
        for (size_t cut = 0; cut <= len; cut += step) {
            char *part = exact_copy(text, cut);
            struct counts n = {0};
            size_t bad;
            struct sb_err err;
            assert_int_equal(sb_prom_parse(part, cut, true, count_cb, &n, &bad, &err), 0);
            assert_true(bad <= 1); /* only the cut line can be bad */
            assert_true(n.samples <= fixture_cases[c].samples);
            total += n.samples;
            free(part);
        }
        assert_true(total > 0);
        free(text);
    }
}

/* ---- small texts rendered back ---- */

static const struct render_case {
    const char *name;
    const char *text;
    const char *samples; /* render_cb output */
    const char *helps;   /* render_help_cb output */
} render_cases[] = {
    {"empty page", "", "", ""},
    {"blank lines only", "\n\n \t\n", "", ""},
    {"no trailing newline", "x 1", "x 1 untyped|", ""},
    {"many trailing newlines", "x 1\n\n\n", "x 1 untyped|", ""},
    {"crlf line ends", "# TYPE x gauge\r\nx 1\r\n", "x 1 gauge|", ""},
    {"help escapes", "# HELP x a\\\\b\\nc end\nx 1\n", "x 1 untyped|", "x: a\\b\nc end|"},
    {"help empty and plain", "# HELP x\n# HELP y text with \"quotes\" and {braces}\n", "",
     "x: |y: text with \"quotes\" and {braces}|"},
    {"label escapes", "x{p=\"a\\\\b\",q=\"say \\\"hi\\\"\",r=\"l1\\nl2\"} 1\n",
     "x{p=\"a\\b\",q=\"say \"hi\"\",r=\"l1\nl2\"} 1 untyped|", ""},
    {"escapes on two labels and a plain one between",
     "x{a=\"\\\\\",b=\"plain\",c=\"\\n\"} 2\ny{d=\"\\\"\"} 3\n",
     "x{a=\"\\\",b=\"plain\",c=\"\n\"} 2 untyped|y{d=\"\"\"} 3 untyped|", ""},
    {"label value with syntax characters", "x{a=\"}{,=# \"} 1\n", "x{a=\"}{,=# \"} 1 untyped|", ""},
    {"utf-8 label value", "x{m=\"m\xc3\xa9t\xc3\xa9o\"} 1\n",
     "x{m=\"m\xc3\xa9t\xc3\xa9o\"} 1 untyped|", ""},
    {"specials", "a NaN\nb +Inf\nc -Inf\nd Inf\ne -inf\nf nan\n",
     "a NaN untyped|b +Inf untyped|c -Inf untyped|d +Inf untyped|e -Inf untyped|f NaN untyped|",
     ""},
    {"numbers",
     "a 1.5e3\nb -0.25\nc 1e-7\nd .5\ne 5.\nf 12345678901234567890\ng 0.1\nh 1E+2\ni -0\n",
     "a 1500 untyped|b -0.25 untyped|c 9.9999999999999995e-08 untyped|d 0.5 untyped|e 5 "
     "untyped|f 1.2345678901234567e+19 untyped|g 0.10000000000000001 untyped|h 100 untyped|i "
     "-0 untyped|",
     ""},
    {"timestamps",
     "a 1 1700000000000\nb 2 -1500\nc 3 +7\nd 4 -9223372036854775808\ne 5 "
     "9223372036854775807\n",
     "a 1 @1700000000000 untyped|b 2 @-1500 untyped|c 3 @7 untyped|d 4 @-9223372036854775808 "
     "untyped|e 5 @9223372036854775807 untyped|",
     ""},
    {"whitespace everywhere", "  \t x \t { a = \"1\" , b=\"2\" , } \t 5 \t 10 \t\n",
     "x{a=\"1\",b=\"2\"} 5 @10 untyped|", ""},
    {"empty label set and trailing comma", "x{} 1\ny{a=\"1\",} 2\n",
     "x 1 untyped|y{a=\"1\"} 2 untyped|", ""},
    {"value right after the brace", "x{a=\"1\"}3\n", "x{a=\"1\"} 3 untyped|", ""},
    {"comments", "# just a comment\n#\n# HELP\n# TYPE y\n   # indented\n#HELP z tight\nz 1\n",
     "z 1 untyped|", "z: tight|"},
    {"colons in names", "# TYPE vllm:x gauge\nvllm:x{model_name=\"m\"} 4.0\n",
     "vllm:x{model_name=\"m\"} 4 gauge|", ""},
    {"histogram resolution",
     "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"
     "h_created 1.7e9\nh_other 1\nh_total 1\n",
     "h_bucket{le=\"1\"} 1 histogram|h_bucket{le=\"+Inf\"} 2 histogram|h_sum 3 histogram|h_count "
     "2 histogram|h_created 1700000000 histogram|h_other 1 untyped|h_total 1 untyped|",
     ""},
    {"summary resolution",
     "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\ns_bucket 4\ns_created 5\n",
     "s{quantile=\"0.5\"} 1 summary|s_sum 2 summary|s_count 3 summary|s_bucket 4 untyped|"
     "s_created 5 summary|",
     ""},
    {"counter resolution", "# TYPE c counter\nc_total 1\nc_created 2\nc_sum 3\nc 4\n",
     "c_total 1 counter|c_created 2 counter|c_sum 3 untyped|c 4 counter|", ""},
    {"gauge has no parts", "# TYPE g gauge\ng_sum 1\ng_count 2\ng_bucket 3\n",
     "g_sum 1 untyped|g_count 2 untyped|g_bucket 3 untyped|", ""},
    {"an exact TYPE wins over the family",
     "# TYPE g histogram\n# TYPE g_count gauge\ng_count 1\ng_sum 2\n",
     "g_count 1 gauge|g_sum 2 histogram|", ""},
    {"python _created with its own TYPE",
     "# TYPE r_total counter\nr_total 1\n# TYPE r_created gauge\nr_created 2\n",
     "r_total 1 counter|r_created 2 gauge|", ""},
    {"TYPE words are case-insensitive", "# TYPE x COUNTER\nx 1\n# TYPE u untyped\nu 2\n",
     "x 1 counter|u 2 untyped|", ""},
    {"a later TYPE changes a cached resolution", "h_bucket 1\n# TYPE h histogram\nh_bucket 2\n",
     "h_bucket 1 untyped|h_bucket 2 histogram|", ""},
};

static void test_render(void **state)
{
    (void)state;
    for (size_t c = 0; c < SB_ARRAY_SIZE(render_cases); c++) {
        const struct render_case *rc = &render_cases[c];
        size_t len = strlen(rc->text);
        char *text = exact_copy(rc->text, len);
        struct sb_buf out[2];
        sb_buf_init(&out[0], 1 << 20);
        sb_buf_init(&out[1], 1 << 20);
        sb_buf_adds(&out[0], "");
        sb_buf_adds(&out[1], "");
        size_t bad = 99;
        struct sb_err err;
        int r = sb_prom_parse_full(text, len, false, render_cb, render_help_cb, out, &bad, &err);
        if (r != 0)
            fail_msg("%s: %s", rc->name, err.msg);
        assert_int_equal(bad, 0);
        if (strcmp(out[0].data, rc->samples) != 0)
            fail_msg("%s: got samples\n%s\nwant\n%s", rc->name, out[0].data, rc->samples);
        if (strcmp(out[1].data, rc->helps) != 0)
            fail_msg("%s: got helps\n%s\nwant\n%s", rc->name, out[1].data, rc->helps);
        sb_buf_release(&out[0]);
        sb_buf_release(&out[1]);
        free(text);
    }
}

/* ---- malformed lines ---- */

static const struct bad_case {
    const char *name;
    const char *text;
    size_t line;         /* the first bad line */
    const char *problem; /* a substring of the message */
    size_t ok_samples;   /* samples delivered in lenient mode */
    size_t bad_lines;    /* lines skipped in lenient mode */
} bad_cases[] = {
    {"missing value", "a 1\nb\nc 3\n", 2, "missing value for 'b'", 2, 1},
    {"missing value after labels", "x{a=\"b\"}\n", 1, "missing value for 'x'", 0, 1},
    {"missing value, blanks only", "ok 1\nx   \t\n", 2, "missing value for 'x'", 1, 1},
    {"unterminated label value", "ok 1\nx{a=\"b} 1\nok 2\n", 2,
     "unterminated value of label 'a' of 'x'", 2, 1},
    {"unterminated after an escape", "x{a=\"b\\\"} 1\n", 1, "unterminated value of label 'a'", 0,
     1},
    {"backslash at the end of the line", "x{a=\"b\\", 1, "unterminated value of label 'a'", 0, 1},
    {"unterminated label set", "x{a=\"b\",\n", 1, "unterminated label set of 'x'", 0, 1},
    {"bad number", "ok 1\nx 1.2.3\n", 2, "bad value '1.2.3' for 'x'", 1, 1},
    {"bad number, word", "x abc\n", 1, "bad value 'abc'", 0, 1},
    {"bad number, no exponent digits", "x 1e\n", 1, "bad value '1e'", 0, 1},
    {"bad number, nan payload", "x nan(12)\n", 1, "bad value 'nan(12)'", 0, 1},
    {"bad number, overflow", "x 1e999\n", 1, "bad value '1e999'", 0, 1},
    {"bad timestamp", "x 1 12ab\n", 1, "bad timestamp '12ab' for 'x'", 0, 1},
    {"timestamp overflow", "x 1 9223372036854775808\n", 1, "bad timestamp", 0, 1},
    {"float timestamp", "x 1 1.5\n", 1, "bad timestamp '1.5'", 0, 1},
    {"text after timestamp", "x 1 2 3\n", 1, "unexpected text '3' after the timestamp of 'x'", 0,
     1},
    {"garbage", "a 1\n!!! garbage\nb 2\n", 2, "invalid metric name at '!!! garbage'", 2, 1},
    {"garbage words", "hello world\n", 1, "bad value 'world' for 'hello'", 0, 1},
    {"bad character in name", "x-y 1\n", 1, "invalid character '-' in metric name 'x'", 0, 1},
    {"digit first", "9x 1\n", 1, "invalid metric name at '9x 1'", 0, 1},
    {"bad label escape", "x{a=\"\\t\"} 1\n", 1, "invalid escape '\\t' in the value of label 'a'", 0,
     1},
    {"duplicate label", "x{a=\"1\",a=\"2\"} 1\n", 1, "duplicate label 'a' on 'x'", 0, 1},
    {"missing equals", "x{a \"b\"} 1\n", 1, "expected '=' after label 'a' of 'x'", 0, 1},
    {"missing quote", "x{a=b} 1\n", 1, "expected '\"' to open the value of label 'a'", 0, 1},
    {"missing comma", "x{a=\"b\" c=\"d\"} 1\n", 1, "expected ',' or '}' after label 'a'", 0, 1},
    {"bad label name", "x{1a=\"b\"} 1\n", 1, "invalid label name at '1a=", 0, 1},
    {"colon in label name", "x{a:b=\"c\"} 1\n", 1, "expected '=' after label 'a'", 0, 1},
    {"unknown type", "# TYPE x countr\nx 1\n", 1, "unknown metric type 'countr' for 'x'", 1, 1},
    {"text after type", "# TYPE x counter extra\n", 1, "unexpected text 'extra' after the type", 0,
     1},
    {"second TYPE", "# TYPE x gauge\nx 1\n# TYPE x counter\n", 3, "second TYPE line for 'x'", 1, 1},
    {"second HELP", "# HELP x one\n# HELP x two\nx 1\n", 2, "second HELP line for 'x'", 1, 1},
    {"bad HELP escape", "# HELP x a\\tb\n", 1, "invalid escape '\\t' in the HELP text of 'x'", 0,
     1},
    {"HELP ending in a backslash", "# HELP x a\\", 1, "unfinished escape", 0, 1},
    {"bad name in TYPE", "# TYPE 1x gauge\n", 1, "invalid metric name '1x gauge' in a TYPE line", 0,
     1},
    {"bad character in a HELP name", "# HELP x-y text\n", 1,
     "invalid metric name 'x-y text' in a HELP line", 0, 1},
    {"many bad lines, the first reported", "a 1\nbad line here\nb{ 2\nc 3\nd\n", 2,
     "bad value 'line'", 2, 3},
    {"bad line without a newline at the end", "a 1\nb 1 2 3", 2, "unexpected text", 1, 1},
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t c = 0; c < SB_ARRAY_SIZE(bad_cases); c++) {
        const struct bad_case *bc = &bad_cases[c];
        size_t len = strlen(bc->text);
        char *text = exact_copy(bc->text, len);
        char want[64];
        snprintf(want, sizeof(want), "line %zu: ", bc->line);

        struct counts n = {0};
        size_t bad = 99;
        struct sb_err err;
        int rc = sb_prom_parse(text, len, false, count_cb, &n, &bad, &err);
        if (rc != -1 || bad != 1 || err.code == 0)
            fail_msg("%s: strict rc %d bad %zu", bc->name, rc, bad);
        if (!strstr(err.msg, want) || !strstr(err.msg, bc->problem) ||
            strncmp(err.msg, "cannot parse prometheus text ", 29) != 0)
            fail_msg("%s: message '%s' lacks '%s' or '%s'", bc->name, err.msg, want, bc->problem);

        n = (struct counts){0};
        bad = 99;
        rc = sb_prom_parse(text, len, true, count_cb, &n, &bad, &err);
        if (rc != 0 || bad != bc->bad_lines || n.samples != bc->ok_samples)
            fail_msg("%s: lenient rc %d bad %zu samples %zu", bc->name, rc, bad, n.samples);
        assert_int_equal(err.code, 0);
        if (!strstr(err.msg, want) || !strstr(err.msg, bc->problem))
            fail_msg("%s: lenient message '%s'", bc->name, err.msg);

        struct sb_prom_snapshot *s = NULL;
        assert_int_equal(sb_prom_snapshot_parse(&s, text, len, &err), 0);
        assert_int_equal(sb_prom_snapshot_count(s), bc->ok_samples);
        assert_int_equal(sb_prom_snapshot_bad_lines(s), bc->bad_lines);
        sb_prom_snapshot_free(s);
        free(text);
    }
}

/* SB_PROM_MAX_LABELS labels are fine, one more makes the line bad; lines over the limit too. */
static void test_limits(void **state)
{
    (void)state;
    static const struct {
        size_t nlabels;
        int rc;
    } cases[] = {{0, 0}, {1, 0}, {SB_PROM_MAX_LABELS, 0}, {SB_PROM_MAX_LABELS + 1, -1}};
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sb_buf b;
        sb_buf_init(&b, 1 << 20);
        sb_buf_adds(&b, "x{");
        for (size_t i = 0; i < cases[c].nlabels; i++)
            sb_buf_addf(&b, "%sl%zu=\"v\\\\%zu\"", i ? "," : "", i, i);
        sb_buf_adds(&b, "} 1\n");
        struct counts n = {0};
        struct sb_err err;
        size_t bad;
        assert_int_equal(sb_prom_parse(b.data, b.len, false, count_cb, &n, &bad, &err),
                         cases[c].rc);
        assert_int_equal(n.samples, cases[c].rc == 0 ? 1 : 0);
        if (cases[c].rc)
            assert_non_null(strstr(err.msg, "more than 64 labels on 'x'"));
        sb_buf_release(&b);
    }
    /* A line one byte over SB_PROM_LINE_MAX, then a good line. */
    size_t len = SB_PROM_LINE_MAX + 1 + 4;
    char *text = malloc(len);
    assert_non_null(text);
    memset(text, 'a', SB_PROM_LINE_MAX + 1);
    memcpy(text + SB_PROM_LINE_MAX + 1, "\nb 1", 4);
    struct counts n = {0};
    struct sb_err err;
    size_t bad;
    assert_int_equal(sb_prom_parse(text, len, true, count_cb, &n, &bad, &err), 0);
    assert_int_equal(bad, 1);
    assert_int_equal(n.samples, 1);
    assert_non_null(strstr(err.msg, "line 1: line longer than"));
    free(text);
}

static int stop_cb(const struct sb_prom_sample *s, void *arg)
{
    (void)s;
    return ++*(int *)arg == 2 ? 7 : 0;
}

static int help_stop_cb(const char *name, size_t name_len, const char *help, size_t help_len,
                        void *arg)
{
    (void)name, (void)name_len, (void)help, (void)help_len, (void)arg;
    return 9;
}

/* A non-zero callback return stops the parse and comes back as the result. */
static void test_callback_stops(void **state)
{
    (void)state;
    const char *page = "a 1\nb 2\nc 3\n# HELP d x\nd 4\n";
    int seen = 0;
    size_t bad;
    struct sb_err err;
    assert_int_equal(sb_prom_parse(page, strlen(page), false, stop_cb, &seen, &bad, &err), 7);
    assert_int_equal(seen, 2);
    assert_int_equal(
        sb_prom_parse_full(page, strlen(page), true, NULL, help_stop_cb, NULL, &bad, &err), 9);
    /* A NULL callback just validates. */
    assert_int_equal(sb_prom_parse(page, strlen(page), false, NULL, NULL, &bad, &err), 0);
}

/* Many families push the table past its inline slots; types must survive the growth. */
static void test_many_families(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        sb_buf_addf(&b, "# HELP f%d help %d\n# TYPE f%d %s\nf%d%s 1\n", i, i, i,
                    i % 2 ? "histogram" : "counter", i, i % 2 ? "_count" : "_total");
    struct sb_prom_snapshot *s = snapshot_of(b.data);
    assert_int_equal(sb_prom_snapshot_count(s), 1000);
    for (int i = 0; i < 1000; i++) {
        const struct sb_prom_sample *x = sb_prom_snapshot_sample(s, (size_t)i);
        assert_string_equal(x->type, i % 2 ? "histogram" : "counter");
    }
    assert_null(sb_prom_snapshot_sample(s, 1000));
    sb_prom_snapshot_free(s);
    sb_buf_release(&b);
}

static void test_parse_value(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        double want; /* checked when rc is 0; NAN means isnan */
    } cases[] = {
        {"0", 0, 0},
        {"42", 0, 42},
        {"-3.5", 0, -3.5},
        {"+2", 0, 2},
        {"1e22", 0, 1e22},
        {"1e23", 0, 1e23},
        {"123456789012345678901234567890", 0, 123456789012345678901234567890.0},
        {"0.000000000000000000000000001", 0, 1e-27},
        {"4.9e-324", 0, 4.9e-324},
        {"1e-400", 0, 0},
        {"NaN", 0, NAN},
        {"+Inf", 0, INFINITY},
        {"-Inf", 0, -INFINITY},
        {"", -1, 0},
        {"-", -1, 0},
        {".", -1, 0},
        {" 1", -1, 0},
        {"1 ", -1, 0},
        {"1x", -1, 0},
        {"--1", -1, 0},
        {"1e+", -1, 0},
        {"nan(1)", -1, 0},
        {"1e400", -1, 0},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        size_t len = strlen(cases[c].text);
        char *text = exact_copy(cases[c].text, len);
        double v = -1;
        int rc = sb_prom_parse_value(text, len, &v);
        if (rc != cases[c].rc)
            fail_msg("'%s': rc %d", cases[c].text, rc);
        if (rc == 0 && !(isnan(cases[c].want) ? isnan(v) : v == cases[c].want))
            fail_msg("'%s': %.17g, want %.17g", cases[c].text, v, cases[c].want);
        free(text);
    }
}

/* ---- snapshot lookups ---- */

static void test_snapshot_sum(void **state)
{
    (void)state;
    struct sb_prom_snapshot *fe = snapshot_fixture("dynamo_frontend.prom");
    struct sb_prom_snapshot *vl = snapshot_fixture("vllm.prom");
    static const struct {
        int page; /* 0 frontend, 1 vllm */
        const char *name;
        const char *pairs[6];
        size_t npairs;
        bool found;
        double want;
    } cases[] = {
        /* 97 + 3 + 50 */
        {0, "dynamo_frontend_requests_total", {0}, 0, true, 150},
        {0, "dynamo_frontend_requests_total", {"model", Qw}, 1, true, 100},
        {0, "dynamo_frontend_requests_total", {"model", Qw, "status", "success"}, 2, true, 97},
        {0, "dynamo_frontend_requests_total", {"status", "success"}, 1, true, 147},
        {0, "dynamo_frontend_requests_total", {"status", "error"}, 1, true, 3},
        {0,
         "dynamo_frontend_requests_total",
         {"endpoint", "completions", "model", Ll, "request_type", "unary"},
         3,
         true,
         50},
        {0, "dynamo_frontend_requests_total", {"model", "nope"}, 1, false, 0},
        {0, "dynamo_frontend_requests_total", {"region", "eu"}, 1, false, 0},
        {0, "dynamo_frontend_requests_total", {"model", Qw, "status", "timeout"}, 2, false, 0},
        {0, "dynamo_frontend_request", {0}, 0, false, 0}, /* a prefix is not a name */
        {0, "dynamo_frontend_output_tokens_total", {0}, 0, true, 32000},
        {1, "vllm:num_requests_running", {"model_name", Ll}, 1, true, 4},
        {1, "vllm:num_requests_running", {"model_name", Qw}, 1, false, 0},
        /* 11234 + 2310 + 84 */
        {1, "python_gc_objects_collected_total", {0}, 0, true, 13628},
        {1, "python_gc_objects_collected_total", {"generation", "1"}, 1, true, 2310},
        {1, "vllm:num_requests_running", {"model_name", Ll, "engine", "0"}, 2, true, 4},
        {1, "vllm:num_requests_running", {"model_name", Ll, "engine", "1"}, 2, false, 0},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        double v = -1;
        bool found = sb_prom_snapshot_sum(cases[c].page ? vl : fe, cases[c].name, cases[c].pairs,
                                          cases[c].npairs, &v);
        if (found != cases[c].found)
            fail_msg("case %zu %s: found %d", c, cases[c].name, found);
        if (found ? v != cases[c].want : v != -1)
            fail_msg("case %zu %s: %.17g", c, cases[c].name, v);
    }
    assert_false(sb_prom_snapshot_sum(NULL, "x", NULL, 0, &(double){0}));
    sb_prom_snapshot_free(fe);
    sb_prom_snapshot_free(vl);
}

/* Escaped label values are stored unescaped and match unescaped filters. */
static void test_snapshot_escaped_labels(void **state)
{
    (void)state;
    struct sb_prom_snapshot *s =
        snapshot_of("x{path=\"C:\\\\tmp\",q=\"a \\\"b\\\"\"} 1\nx{path=\"/tmp\"} 2\n");
    static const char *const win[] = {"path", "C:\\tmp"};
    static const char *const quoted[] = {"q", "a \"b\""};
    double v = 0;
    assert_true(sb_prom_snapshot_sum(s, "x", win, 1, &v));
    assert_true(v == 1);
    assert_true(sb_prom_snapshot_sum(s, "x", quoted, 1, &v));
    assert_true(v == 1);
    assert_true(sb_prom_snapshot_sum(s, "x", NULL, 0, &v));
    assert_true(v == 3);
    const struct sb_prom_sample *x = sb_prom_snapshot_sample(s, 0);
    assert_int_equal(x->nlabels, 2);
    assert_string_equal(x->labels[1].value, "a \"b\"");
    assert_int_equal(x->labels[1].value_len, 5);
    sb_prom_snapshot_free(s);
}

static void test_snapshot_first(void **state)
{
    (void)state;
    static const char *const old_new[] = {"kvbm_onboard_blocks_d2d",
                                          "dynamo_kvbm_onboard_blocks_d2d"};
    static const char *const new_old[] = {"dynamo_kvbm_offload_blocks_h2d",
                                          "kvbm_offload_blocks_h2d"};
    static const struct {
        const char *file;
        const char *const *names;
        int hit; /* index into names, -1 for none */
        double want;
    } cases[] = {
        {"kvbm.prom", old_new, 0, 96},  {"dynamo_kvbm.prom", old_new, 1, 128},
        {"kvbm.prom", new_old, 1, 611}, {"dynamo_kvbm.prom", new_old, 0, 1024},
        {"mock.prom", old_new, 0, 0},   {"vllm.prom", old_new, -1, 0},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sb_prom_snapshot *s = snapshot_fixture(cases[c].file);
        double v = -1;
        const char *hit = sb_prom_snapshot_first(s, cases[c].names, 2, &v);
        if (cases[c].hit < 0) {
            assert_null(hit);
            assert_true(v == -1);
        } else {
            assert_ptr_equal(hit, cases[c].names[cases[c].hit]);
            if (v != cases[c].want)
                fail_msg("%s: %s = %g", cases[c].file, hit, v);
        }
        sb_prom_snapshot_free(s);
    }
    /* The first sample of a labelled name, in page order. */
    struct sb_prom_snapshot *s = snapshot_of("y{a=\"1\"} 5\ny{a=\"2\"} 6\n");
    static const char *const y[] = {"x", "y"};
    double v = 0;
    assert_ptr_equal(sb_prom_snapshot_first(s, y, 2, &v), y[1]);
    assert_true(v == 5);
    assert_null(sb_prom_snapshot_first(s, y, 1, &v));
    sb_prom_snapshot_free(s);
}

/* ---- histograms ---- */

#define INF INFINITY

static void test_buckets_quantile(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        struct sb_prom_bucket b[6];
        size_t n;
        double q, want; /* NAN means isnan */
    } cases[] = {
        /* total 10. q=0.5: rank 5 falls in (1,2] holding 6-2=4; 1 + (2-1)*(5-2)/4 = 1.75 */
        {"median", {{1, 2}, {2, 6}, {4, 10}, {INF, 10}}, 4, 0.5, 1.75},
        /* rank 1 in [0,1] holding 2: 0 + 1*1/2 = 0.5 */
        {"lowest bucket starts at 0", {{1, 2}, {2, 6}, {4, 10}, {INF, 10}}, 4, 0.1, 0.5},
        /* rank 9 in (2,4] holding 4, 3 into it: 2 + 2*3/4 = 3.5 */
        {"p90", {{1, 2}, {2, 6}, {4, 10}, {INF, 10}}, 4, 0.9, 3.5},
        /* rank 10 reaches the top of (2,4]: 2 + 2*4/4 = 4 */
        {"q=1", {{1, 2}, {2, 6}, {4, 10}, {INF, 10}}, 4, 1, 4},
        /* rank 0: first non-empty bucket [0,1], 0 + 1*0/2 = 0 */
        {"q=0", {{1, 2}, {2, 6}, {4, 10}, {INF, 10}}, 4, 0, 0},
        /* q=0 with empty low buckets: (1,2] is the first with counts, its lower bound 1 */
        {"q=0 skips empty buckets", {{1, 0}, {2, 6}, {INF, 6}}, 3, 0, 1},
        /* rank 5 > 2 lands in +Inf: the largest finite bound, 1 */
        {"rank in +Inf", {{1, 2}, {INF, 10}}, 2, 0.5, 1},
        {"all in +Inf", {{1, 0}, {INF, 5}}, 2, 0.5, 1},
        /* le <= 0 in the first bucket returns that bound */
        {"negative first bound", {{-1, 3}, {1, 4}, {INF, 4}}, 3, 0.5, -1},
        /* counts 5,3,6 become 5,5,6; rank 3 in [0,1] holding 5: 3/5 = 0.6 */
        {"made monotonic", {{1, 5}, {2, 3}, {INF, 6}}, 3, 0.5, 0.6},
        {"no +Inf bucket", {{1, 2}, {2, 4}}, 2, 0.5, NAN},
        {"one bucket", {{INF, 4}}, 1, 0.5, NAN},
        {"no observations", {{1, 0}, {2, 0}, {INF, 0}}, 3, 0.5, NAN},
        {"q below 0", {{1, 2}, {INF, 2}}, 2, -0.1, -INF},
        {"q above 1", {{1, 2}, {INF, 2}}, 2, 1.5, INF},
        {"q NaN", {{1, 2}, {INF, 2}}, 2, NAN, NAN},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        double v = sb_prom_buckets_quantile(cases[c].b, cases[c].n, cases[c].q);
        bool ok = isnan(cases[c].want)   ? isnan(v)
                  : isinf(cases[c].want) ? v == cases[c].want
                                         : fabs(v - cases[c].want) < 1e-12;
        if (!ok)
            fail_msg("%s: %.17g, want %.17g", cases[c].name, v, cases[c].want);
    }
}

static void test_snapshot_histogram(void **state)
{
    (void)state;
    struct sb_prom_snapshot *s = snapshot_fixture("dynamo_frontend.prom");
    struct sb_prom_histogram h;
    struct sb_err err;
    const char *fam = "dynamo_frontend_time_to_first_token_seconds";
    assert_int_equal(sb_prom_snapshot_histogram(s, fam, NULL, 0, &h, &err), 0);
    /* Both models summed by le: Qwen 0,2,10,30,70,90,98,100... + Llama 0,0,0,5,20,40,50,50... */
    static const struct sb_prom_bucket want[] = {
        {0.005, 0}, {0.01, 2}, {0.025, 10}, {0.05, 35}, {0.1, 90}, {0.25, 130},
        {0.5, 148}, {1, 150},  {2.5, 150},  {5, 150},   {10, 150}, {INF, 150},
    };
    assert_int_equal(h.nbuckets, SB_ARRAY_SIZE(want));
    for (size_t i = 0; i < SB_ARRAY_SIZE(want); i++) {
        assert_true(h.buckets[i].le == want[i].le);
        assert_true(h.buckets[i].count == want[i].count);
    }
    assert_true(h.sum == 13.25); /* 7.25 + 6 */
    assert_true(h.count == 150);

    static const char *const llama[] = {"model", Ll};
    assert_int_equal(sb_prom_snapshot_histogram(s, fam, llama, 1, &h, &err), 0);
    assert_int_equal(h.nbuckets, 12);
    assert_true(h.buckets[4].count == 20 && h.sum == 6 && h.count == 50);

    static const char *const nobody[] = {"model", "nobody"};
    assert_int_equal(sb_prom_snapshot_histogram(s, fam, nobody, 1, &h, &err), 0);
    assert_int_equal(h.nbuckets, 0);
    assert_int_equal(sb_prom_snapshot_histogram(s, "dynamo_frontend_time", NULL, 0, &h, &err), 0);
    assert_int_equal(h.nbuckets, 0);
    sb_prom_snapshot_free(s);

    /* Unreadable buckets are errors. */
    static const struct {
        const char *text, *problem;
    } bad[] = {
        {"h_bucket 1\n", "has no 'le' label"},
        {"h_bucket{le=\"fast\"} 1\n", "bad bound le='fast'"},
        {"h_bucket{le=\"NaN\"} 1\n", "bad bound le='NaN'"},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(bad); c++) {
        struct sb_prom_snapshot *b = snapshot_of(bad[c].text);
        assert_int_equal(sb_prom_snapshot_histogram(b, "h", NULL, 0, &h, &err), -1);
        assert_non_null(strstr(err.msg, bad[c].problem));
        assert_true(isnan(sb_prom_histogram_quantile(NULL, b, "h", 0.5)));
        sb_prom_snapshot_free(b);
    }
    struct sb_buf many;
    sb_buf_init(&many, 1 << 20);
    for (int i = 0; i <= SB_PROM_MAX_BUCKETS; i++)
        sb_buf_addf(&many, "h_bucket{le=\"%d\"} %d\n", i, i);
    struct sb_prom_snapshot *b = snapshot_of(many.data);
    assert_int_equal(sb_prom_snapshot_histogram(b, "h", NULL, 0, &h, &err), -1);
    assert_non_null(strstr(err.msg, "more than 128 bucket bounds"));
    sb_prom_snapshot_free(b);
    sb_buf_release(&many);
}

/* Quantiles of whole pages (a = NULL): arithmetic in the comments. */
static void test_histogram_quantile_fixtures(void **state)
{
    (void)state;
    static const struct {
        const char *file, *family;
        const char *pairs[2];
        size_t npairs;
        double q, want;
    } cases[] = {
        /* Qwen, 100 obs: rank 50 in (0.05,0.1] holding 70-30=40, 20 in: 0.05+0.05*20/40 */
        {"dynamo_frontend.prom",
         "dynamo_frontend_time_to_first_token_seconds",
         {"model", Qw},
         1,
         0.5,
         0.075},
        /* rank 90 in (0.1,0.25] holding 90-70=20, 20 in: 0.1+0.15*20/20 */
        {"dynamo_frontend.prom",
         "dynamo_frontend_time_to_first_token_seconds",
         {"model", Qw},
         1,
         0.9,
         0.25},
        /* rank 99 in (0.5,1] holding 100-98=2, 1 in: 0.5+0.5*1/2 */
        {"dynamo_frontend.prom",
         "dynamo_frontend_time_to_first_token_seconds",
         {"model", Qw},
         1,
         0.99,
         0.75},
        /* Llama, 50 obs: rank 25 in (0.1,0.25] holding 40-20=20, 5 in: 0.1+0.15*5/20 */
        {"dynamo_frontend.prom",
         "dynamo_frontend_time_to_first_token_seconds",
         {"model", Ll},
         1,
         0.5,
         0.1375},
        /* both, 150 obs: rank 75 in (0.05,0.1] holding 90-35=55, 40 in: 0.05+0.05*40/55 */
        {"dynamo_frontend.prom",
         "dynamo_frontend_time_to_first_token_seconds",
         {0},
         0,
         0.5,
         0.05 + 0.05 * 40.0 / 55.0},
        /* ITL, 25600 obs: rank 12800 in (0.01,0.05] holding 24000-1200=22800, 11600 in */
        {"dynamo_frontend.prom",
         "dynamo_frontend_inter_token_latency_seconds",
         {0},
         0,
         0.5,
         0.01 + 0.04 * 11600.0 / 22800.0},
        /* le="0" first bucket: rank 5 <= 10 in a bucket with le <= 0 returns 0 */
        {"dynamo_frontend.prom", "dynamo_frontend_cached_sequence_length", {0}, 0, 0.05, 0},
        /* rank 50 in (0,512] holding 60-10=50, 40 in: 512*40/50 */
        {"dynamo_frontend.prom", "dynamo_frontend_cached_sequence_length", {0}, 0, 0.5, 409.6},
        /* rank 95 > 60 lands in +Inf: 512 */
        {"dynamo_frontend.prom", "dynamo_frontend_cached_sequence_length", {0}, 0, 0.95, 512},
        /* vLLM, 40 obs: rank 30 in (0.1,0.25] holding 38-26=12, 4 in: 0.1+0.15*4/12 */
        {"vllm.prom", "vllm:time_to_first_token_seconds", {0}, 0, 0.75, 0.15},
        /* rank 20 reaches the top of (0.06,0.08] holding 20-12=8: 0.06+0.02*8/8 */
        {"vllm.prom", "vllm:time_to_first_token_seconds", {0}, 0, 0.5, 0.08},
        /* ITL 10200 obs: rank 5100 in (0.025,0.05] holding 9000-3000=6000, 2100 in */
        {"vllm.prom",
         "vllm:inter_token_latency_seconds",
         {0},
         0,
         0.5,
         0.025 + 0.025 * 2100.0 / 6000.0},
        /* mock: 4 obs all in (0.01,0.02]: rank 2, 0.01+0.01*2/4 */
        {"mock.prom", "dynamo_frontend_time_to_first_token_seconds", {0}, 0, 0.5, 0.015},
        {"mock.prom", "mock:time_to_first_token_seconds", {0}, 0, 0.5, 0.015},
        /* no observations */
        {"mock.prom", "mock_kv_tier_fetch_seconds", {0}, 0, 0.5, NAN},
        {"kvbm.prom", "dynamo_frontend_time_to_first_token_seconds", {0}, 0, 0.5, NAN},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sb_prom_snapshot *s = snapshot_fixture(cases[c].file);
        double v = cases[c].npairs
                       ? sb_prom_histogram_quantile_where(NULL, s, cases[c].family, cases[c].pairs,
                                                          1, cases[c].q)
                       : sb_prom_histogram_quantile(NULL, s, cases[c].family, cases[c].q);
        bool ok = isnan(cases[c].want) ? isnan(v) : fabs(v - cases[c].want) < 1e-12;
        if (!ok)
            fail_msg("%s %s q=%g: %.17g, want %.17g", cases[c].file, cases[c].family, cases[c].q, v,
                     cases[c].want);
        sb_prom_snapshot_free(s);
    }
}

/* Quantiles over the delta between two scrapes. */
static void test_histogram_quantile_delta(void **state)
{
    (void)state;
#define PAGE(b1, b2, b4, inf, sum)                                                                 \
    "# TYPE lat histogram\nlat_bucket{le=\"0.1\"} " b1 "\nlat_bucket{le=\"0.2\"} " b2              \
    "\nlat_bucket{le=\"0.4\"} " b4 "\nlat_bucket{le=\"+Inf\"} " inf "\nlat_sum " sum               \
    "\nlat_count " inf "\n"
    static const struct {
        const char *name;
        const char *a; /* NULL: no earlier scrape */
        const char *b;
        double q, want;
    } cases[] = {
        /* delta 0,10,30,30: rank 15 in (0.2,0.4] holding 20, 5 in: 0.2+0.2*5/20 = 0.25 */
        {"delta", PAGE("10", "20", "30", "30", "4"), PAGE("10", "30", "60", "60", "10"), 0.5, 0.25},
        /* b alone 10,30,60,60: rank 30 reaches the top of (0.1,0.2]: 0.1+0.1*20/20 = 0.2 */
        {"since start", NULL, PAGE("10", "30", "60", "60", "10"), 0.5, 0.2},
        /* delta 0,10,30,30: rank 27 in (0.2,0.4], 17 in: 0.2+0.2*17/20 = 0.37 */
        {"delta p90", PAGE("10", "20", "30", "30", "4"), PAGE("10", "30", "60", "60", "10"), 0.9,
         0.37},
        /* a holds more than b: a counter reset, so b alone, 2,4,6,6: rank 3 in (0.1,0.2]
         * holding 4-2=2, 1 in: 0.1+0.1*1/2 = 0.15 */
        {"counter reset", PAGE("10", "20", "30", "30", "4"), PAGE("2", "4", "6", "6", "1"), 0.5,
         0.15},
        {"no new observations", PAGE("10", "20", "30", "30", "4"),
         PAGE("10", "20", "30", "30", "4"), 0.5, NAN},
        /* the family appears only in b: b alone, as "since start" */
        {"family new in b", "other 1\n", PAGE("10", "30", "60", "60", "10"), 0.5, 0.2},
        {"family gone from b", PAGE("10", "20", "30", "30", "4"), "other 1\n", 0.5, NAN},
        /* a bound new in b counts 0 in a: a = 10,-,30,30 (no 0.2), b = 10,40,60,60; delta
         * 0,40,30,30 made monotonic 0,40,40,40: rank 20 in (0.1,0.2] holding 40, 20 in:
         * 0.1+0.1*20/40 = 0.15 */
        {"bound missing from a",
         "lat_bucket{le=\"0.1\"} 10\nlat_bucket{le=\"0.4\"} 30\nlat_bucket{le=\"+Inf\"} 30\n",
         PAGE("10", "40", "60", "60", "10"), 0.5, 0.15},
    };
#undef PAGE
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sb_prom_snapshot *a = cases[c].a ? snapshot_of(cases[c].a) : NULL;
        struct sb_prom_snapshot *b = snapshot_of(cases[c].b);
        double v = sb_prom_histogram_quantile(a, b, "lat", cases[c].q);
        bool ok = isnan(cases[c].want) ? isnan(v) : fabs(v - cases[c].want) < 1e-12;
        if (!ok)
            fail_msg("%s: %.17g, want %.17g", cases[c].name, v, cases[c].want);
        sb_prom_snapshot_free(a);
        sb_prom_snapshot_free(b);
    }

    /* The delta itself, _sum and _count included. */
    struct sb_prom_snapshot *a = snapshot_of("lat_bucket{le=\"1\"} 3\nlat_bucket{le=\"+Inf\"} "
                                             "4\nlat_sum 2.5\nlat_count 4\n");
    struct sb_prom_snapshot *b = snapshot_of("lat_bucket{le=\"1\"} 5\nlat_bucket{le=\"+Inf\"} "
                                             "9\nlat_sum 10\nlat_count 9\n");
    struct sb_prom_histogram ha, hb, d;
    struct sb_err err;
    assert_int_equal(sb_prom_snapshot_histogram(a, "lat", NULL, 0, &ha, &err), 0);
    assert_int_equal(sb_prom_snapshot_histogram(b, "lat", NULL, 0, &hb, &err), 0);
    sb_prom_histogram_delta(&d, &ha, &hb);
    assert_int_equal(d.nbuckets, 2);
    assert_true(d.buckets[0].le == 1 && d.buckets[0].count == 2);
    assert_true(isinf(d.buckets[1].le) && d.buckets[1].count == 5);
    assert_true(d.sum == 7.5 && d.count == 5);
    sb_prom_histogram_delta(&d, NULL, &hb);
    assert_true(d.buckets[1].count == 9 && d.sum == 10);
    sb_prom_snapshot_free(a);
    sb_prom_snapshot_free(b);
}

/* ---- every series of a page, per tick, changed ones only ---- */

/* The page with every line holding drop removed and the first "from" replaced by "to". */
static char *page_edit(const char *text, size_t len, const char *drop, const char *from,
                       const char *to, size_t *out_len)
{
    struct sb_buf b;
    sb_buf_init(&b, 16u << 20);
    bool replaced = false;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) + 1 : len - i;
        char line[4096];
        snprintf(line, sizeof(line), "%.*s", (int)n, text + i);
        i += n;
        if (drop && strstr(line, drop))
            continue;
        char *at = from && !replaced ? strstr(line, from) : NULL;
        if (at) {
            assert_int_equal(sb_buf_add(&b, line, (size_t)(at - line)), 0);
            assert_int_equal(sb_buf_adds(&b, to), 0);
            assert_int_equal(sb_buf_adds(&b, at + strlen(from)), 0);
            replaced = true;
        } else
            assert_int_equal(sb_buf_adds(&b, line), 0);
    }
    if (from)
        assert_true(replaced);
    *out_len = b.len;
    return sb_buf_detach(&b, NULL);
}

static struct sb_prom_snapshot *snapshot_text(const char *text, size_t len)
{
    struct sb_prom_snapshot *s = NULL;
    struct sb_err err;
    assert_int_equal(sb_prom_snapshot_parse(&s, text, len, &err), 0);
    return s;
}

/*
 * Issue 11 item 7: sysmon kept 1 of llama.cpp's 12 series. The raw record of a page holds every
 * series ("name{labels}" as on the page) on the first good scrape, then only those whose value
 * changed, with a series that disappeared as null.
 */
static void test_series_diff(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        size_t series;   /* distinct series on the page: all of them the first time */
        const char *key; /* one key as written */
        const char *from, *to, *drop;
        size_t changed;   /* in the diff against the edited page */
        const char *want; /* a fragment of that diff */
    } cases[] = {
        {"llamacpp.prom", 12, "\"llamacpp:requests_deferred\":3", "requests_processing 4",
         "requests_processing 2", "llamacpp:kv_cache_tokens", 2,
         "\"llamacpp:kv_cache_tokens\":4082"},
        {"vllm.prom", 57,
         "\"vllm:num_requests_waiting{engine=\\\"0\\\",model_name=\\\"meta-llama/"
         "Llama-3.1-8B-Instruct\\\"}\":2",
         "le=\"+Inf\"} 40.0", "le=\"+Inf\"} 41.0", NULL, 1, "le=\\\"+Inf\\\"}\":40"},
        {"sglang.prom", 15, "\"sglang:token_usage{model_name=", "7.557572e+06", "7.557472e+06",
         "sglang:cache_hit_rate", 2, "\"sglang:cache_hit_rate{"},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        size_t len, elen;
        char *text = read_fixture(cases[c].file, &len);
        char *edited = page_edit(text, len, cases[c].drop, cases[c].from, cases[c].to, &elen);
        struct sb_prom_snapshot *a = snapshot_text(text, len), *b = snapshot_text(edited, elen);
        struct sb_prom_series_set sa, sb;
        struct sb_err err;
        assert_int_equal(sb_prom_series_set_build(&sa, a, &err), 0);
        assert_int_equal(sb_prom_series_set_build(&sb, b, &err), 0);
        print_message("%s: %zu series\n", cases[c].file, sa.n);
        assert_int_equal(sa.n, cases[c].series);

        struct sb_buf out;
        sb_buf_init(&out, 16u << 20);
        size_t changed = 99;
        assert_int_equal(sb_prom_series_diff_json(NULL, &sa, &out, &changed), 0);
        assert_int_equal(changed, cases[c].series);
        assert_non_null(out.data);
        cJSON *j = cJSON_Parse(out.data);
        assert_non_null(j);
        assert_int_equal(cJSON_GetArraySize(j), (int)cases[c].series);
        cJSON_Delete(j);
        if (!strstr(out.data, cases[c].key))
            fail_msg("%s: no %s in %s", cases[c].file, cases[c].key, out.data);

        /* Unchanged: an empty object. */
        sb_buf_reset(&out);
        assert_int_equal(sb_prom_series_diff_json(&sa, &sa, &out, &changed), 0);
        assert_int_equal(changed, 0);
        assert_string_equal(out.data, "{}");

        /* From the fixture to its edit: the edited value, a dropped series as null. */
        sb_buf_reset(&out);
        assert_int_equal(sb_prom_series_diff_json(&sa, &sb, &out, &changed), 0);
        print_message("  diff: %s\n", out.data);
        assert_int_equal(changed, cases[c].changed);
        j = cJSON_Parse(out.data);
        assert_non_null(j);
        assert_int_equal(cJSON_GetArraySize(j), (int)cases[c].changed);
        cJSON_Delete(j);
        if (cases[c].drop)
            assert_non_null(strstr(out.data, "null"));
        /* Back again: the dropped series returns with its value. */
        sb_buf_reset(&out);
        assert_int_equal(sb_prom_series_diff_json(&sb, &sa, &out, &changed), 0);
        if (!strstr(out.data, cases[c].want))
            fail_msg("%s: no %s in %s", cases[c].file, cases[c].want, out.data);

        sb_buf_release(&out);
        sb_prom_series_set_release(&sa);
        sb_prom_series_set_release(&sb);
        sb_prom_snapshot_free(a);
        sb_prom_snapshot_free(b);
        free(text);
        free(edited);
    }

    /* Escaped label values, specials and a duplicate series (the last one wins). */
    const char *page = "x{a=\"q\\\"uote\",b=\"back\\\\slash\"} 1\ny NaN\nz +Inf\nw 1\nw 2\n";
    struct sb_prom_snapshot *s = snapshot_text(page, strlen(page));
    struct sb_prom_series_set set;
    struct sb_err err;
    assert_int_equal(sb_prom_series_set_build(&set, s, &err), 0);
    assert_int_equal(set.n, 4);
    struct sb_buf out;
    sb_buf_init(&out, 1u << 20);
    size_t changed;
    assert_int_equal(sb_prom_series_diff_json(NULL, &set, &out, &changed), 0);
    assert_string_equal(out.data,
                        "{\"w\":2,\"x{a=\\\"q\\\\\\\"uote\\\",b=\\\"back\\\\\\\\slash\\\"}\":1,"
                        "\"y\":\"NaN\",\"z\":\"+Inf\"}");
    /* NaN stays NaN: not a change. */
    sb_buf_reset(&out);
    assert_int_equal(sb_prom_series_diff_json(&set, &set, &out, &changed), 0);
    assert_int_equal(changed, 0);
    sb_buf_release(&out);
    sb_prom_series_set_release(&set);
    sb_prom_snapshot_free(s);
}

/*
 * The named fields: each known server's series mapped from a page and the one before it
 * (2 s apart): gauges as they are, counters as a rate, histograms as p50/p99 of the observations
 * between the two pages.
 */
static void test_series_mapping(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *drop, *from, *to; /* the previous page: the fixture edited */
        struct {
            const char *key;
            double value; /* NAN: null */
        } want[10];
    } cases[] = {
        {"llamacpp.prom",
         NULL,
         "tokens_predicted_total 7801",
         "tokens_predicted_total 7701",
         {{"llamacpp:requests_processing", 4},
          {"llamacpp:requests_deferred", 3},
          {"llamacpp:kv_cache_usage_ratio", 0.996582},
          {"llamacpp:kv_cache_tokens", 4082},
          {"llamacpp:tokens_predicted_total_per_s", 50},
          {"llamacpp:prompt_tokens_total_per_s", 0},
          {"llamacpp:n_decode_total_per_s", 0},
          {"llamacpp:prompt_tokens_seconds", 140.26},
          {"llamacpp:predicted_tokens_seconds", 25}}},
        {"vllm.prom",
         "vllm:time_to_first_token_seconds",
         "prefix_cache_hits_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
         "40960.0",
         "prefix_cache_hits_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} "
         "40000.0",
         {{"vllm:num_requests_running", 4},
          {"vllm:num_requests_waiting", 2},
          {"vllm:kv_cache_usage_perc", 0.4375},
          {"vllm:prefix_cache_hits_total_per_s", 480},
          {"vllm:prefix_cache_queries_total_per_s", 0},
          {"vllm:time_to_first_token_seconds_p50", 0.08},
          {"vllm:time_to_first_token_seconds_p99", 0.45},
          {"vllm:inter_token_latency_seconds_p50", NAN}}},
        {"sglang.prom",
         NULL,
         "7.557572e+06",
         "7.557472e+06",
         {{"sglang:num_running_reqs", 6},
          {"sglang:num_queue_reqs", 2},
          {"sglang:token_usage", 0.28},
          {"sglang:cache_hit_rate", 0.007507552643049313},
          {"sglang:num_used_tokens", 45279},
          {"sglang:generation_tokens_total_per_s", 50},
          {"sglang:time_to_first_token_seconds_p50", NAN}}},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        size_t len, plen;
        char *text = read_fixture(cases[c].file, &len);
        char *prev = page_edit(text, len, cases[c].drop, cases[c].from, cases[c].to, &plen);
        struct sb_prom_page page = {.prev = snapshot_text(prev, plen),
                                    .cur = snapshot_text(text, len),
                                    .prev_ns = 1000000000,
                                    .cur_ns = 3000000000};
        struct sb_buf out;
        sb_buf_init(&out, 1u << 20);
        assert_int_equal(sb_prom_series_render(&page, 1, &out), 0);
        assert_int_equal(sb_buf_adds(&out, "}"), 0);
        print_message("%s: %s\n", cases[c].file, out.data);
        assert_true(strncmp(out.data, "\"series\":{", 10) == 0);
        cJSON *j = cJSON_Parse(out.data + 9);
        assert_non_null(j);
        for (size_t k = 0; k < SB_ARRAY_SIZE(cases[c].want) && cases[c].want[k].key; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, cases[c].want[k].key);
            double want = cases[c].want[k].value;
            if (!v)
                fail_msg("%s: no field %s", cases[c].file, cases[c].want[k].key);
            if (isnan(want) ? !cJSON_IsNull(v)
                            : !cJSON_IsNumber(v) || fabs(v->valuedouble - want) > 1e-6 * fabs(want))
                fail_msg("%s: %s is %s", cases[c].file, cases[c].want[k].key,
                         cJSON_PrintUnformatted(v));
        }
        cJSON_Delete(j);
        sb_buf_release(&out);
        sb_prom_snapshot_free((struct sb_prom_snapshot *)page.prev);
        sb_prom_snapshot_free((struct sb_prom_snapshot *)page.cur);
        free(text);
        free(prev);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_fixture_truncations),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_many_families),
        cmocka_unit_test(test_parse_value),
        cmocka_unit_test(test_snapshot_sum),
        cmocka_unit_test(test_snapshot_escaped_labels),
        cmocka_unit_test(test_snapshot_first),
        cmocka_unit_test(test_buckets_quantile),
        cmocka_unit_test(test_snapshot_histogram),
        cmocka_unit_test(test_histogram_quantile_fixtures),
        cmocka_unit_test(test_histogram_quantile_delta),
        cmocka_unit_test(test_series_diff),
        cmocka_unit_test(test_series_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
