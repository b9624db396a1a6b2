/*
 * Unit tests for analyze's loading half (sb/analyze.h): the fast metrics.jsonl scanner against
 * sb_record_from_json (tables, random records written by sb_record_to_json, and the same lines
 * broken at random), and the hand-made run directories in tests/data/analyze with known answers:
 * counts, windows, percentiles against a reference written here (qsort and numpy's formula),
 * warnings with their line numbers, telemetry means and p95s, aligned shares, dynkv sums and H7
 * points, a file split over threads giving the same answers, the run finder, summary_v3.csv's
 * header and cells, and summary.json's keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/analyze.h"
#include "sb/buf.h"
#include "sb/record.h"
#include "sb/util.h"
#include "../common/mrec_reference.h"

#define TOL   1e-9
#define DATA  SB_TEST_DATA_DIR "/analyze"
#define OURS  DATA "/20261201_100000_H0_stackA_L8B_U4"
#define OLD   DATA "/20251115_120000_H2B_stackB_L8B_ctx2048"
#define KV    DATA "/20261201_110000_H2B_stackB_L8B_ctx2048"
#define NOTJL DATA "/notjsonl"

/* ---- helpers ---- */

static void assert_near(double got, double want, const char *what)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s: got %.17g, want NAN", what, got);
        return;
    }
    double tol = TOL * (fabs(want) > 1 ? fabs(want) : 1);
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.17g, want %.17g", what, got, want);
}

static void assert_same_double(double got, double want, const char *what)
{
    if (isnan(got) && isnan(want))
        return;
    if (memcmp(&got, &want, sizeof(double)) != 0)
        fail_msg("%s: got %.17g, want %.17g (bit for bit)", what, got, want);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's "linear" percentile, written out plainly: sort, position (n-1)p/100, interpolate. */
static double ref_pct(const double *v, size_t n, double p)
{
    double *s = malloc(n * sizeof(double));
    assert_non_null(s);
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    double pos = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(pos);
    double r = lo + 1 < n ? s[lo] + (s[lo + 1] - s[lo]) * (pos - (double)lo) : s[lo];
    free(s);
    return r;
}

static double ref_mean(const double *v, size_t n)
{
    double t = 0;
    for (size_t i = 0; i < n; i++)
        t += v[i];
    return t / (double)n;
}

static void check_summary(const struct sb_summary *s, const double *v, size_t n, const char *what)
{
    char w[80];
    if (s->n != n)
        fail_msg("%s: n = %zu, want %zu", what, s->n, n);
    static const double ps[] = {50, 90, 95, 99, 99.9};
    const double got[] = {s->p50, s->p90, s->p95, s->p99, s->p999};
    for (size_t i = 0; i < 5; i++) {
        snprintf(w, sizeof(w), "%s p%g", what, ps[i]);
        assert_near(got[i], ref_pct(v, n, ps[i]), w);
    }
    snprintf(w, sizeof(w), "%s mean", what);
    assert_near(s->mean, ref_mean(v, n), w);
    double mn = v[0], mx = v[0];
    for (size_t i = 1; i < n; i++) {
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    snprintf(w, sizeof(w), "%s min", what);
    assert_near(s->min, mn, w);
    snprintf(w, sizeof(w), "%s max", what);
    assert_near(s->max, mx, w);
}

static void check_tstat(const struct sb_tstat *t, const double *v, size_t n, const char *what)
{
    char w[80];
    if (t->n != n)
        fail_msg("%s: n = %zu, want %zu", what, t->n, n);
    snprintf(w, sizeof(w), "%s mean", what);
    assert_near(t->mean, ref_mean(v, n), w);
    snprintf(w, sizeof(w), "%s p95", what);
    assert_near(t->p95, ref_pct(v, n, 95), w);
}

static bool has_warning(const struct sb_run *r, const char *a, const char *b)
{
    for (size_t i = 0; i < r->nwarnings; i++)
        if (strstr(r->warnings[i], a) && (!b || strstr(r->warnings[i], b)))
            return true;
    return false;
}

static void load_ok(const char *dir, struct sb_run *r)
{
    struct sb_err err;
    struct sb_analyze_opts o = {0};
    o.kv_bytes_per_token = 131072;
    if (sb_run_load(dir, &o, r, &err) != 0)
        fail_msg("sb_run_load(%s): %s", dir, err.msg);
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/sbtest-analyze-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sb_buf b;
    sb_buf_init(&b, 64u << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(sb_buf_add(&b, chunk, n), 0);
    fclose(f);
    sb_buf_add(&b, "", 0);
    size_t len;
    return sb_buf_detach(&b, &len);
}

/* ---- the scanner ---- */

/* A line through sb_metrics_parse_line (fast path, else the full parser). */
static int parse(struct sb_mscan *s, const char *text, struct sb_mrec *m, struct sb_err *err)
{
    size_t n = strlen(text);
    char *copy = malloc(n + 1);
    memcpy(copy, text, n + 1);
    int rc = sb_metrics_parse_line(s, copy, n, m, err);
    free(copy);
    return rc;
}

static void test_scan_table(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int rc;           /* sb_metrics_parse_line: 0 or -1 */
        int fast;         /* sb_mscan_line alone: 0 handled, 1 left to the full parser */
        double ttft, e2e; /* NAN: null/absent */
        int code;         /* rc */
        bool ok, warmup, has_phase;
        enum sb_error_kind kind;
        long long tokens;
    } cases[] = {
        /* ours */
        {"{\"phase\":\"measure\",\"rc\":200,\"ok\":true,\"error\":null,\"lat_ttft_ms\":12.5,"
         "\"lat_e2e_ms\":100.25,\"output_tokens\":16}",
         0, 0, 12.5, 100.25, 200, true, false, true, SB_ERRK_NONE, 16},
        {"{\"phase\":\"warmup\",\"rc\":429,\"ok\":false,\"error\":\"http\",\"lat_ttft_ms\":null,"
         "\"lat_e2e_ms\":1.5}",
         0, 0, NAN, 1.5, 429, false, true, true, SB_ERRK_HTTP, 0},
        {"{\"rc\":0,\"ok\":false,\"error\":\"timeout\"}", 0, 0, NAN, NAN, 0, false, false, false,
         SB_ERRK_TIMEOUT, 0},
        /* an error word from another writer reads as transport */
        {"{\"rc\":0,\"ok\":false,\"error\":\"reset\"}", 0, 0, NAN, NAN, 0, false, false, false,
         SB_ERRK_TRANSPORT, 0},
        /* whitespace everywhere, exponents, negative zero */
        {" { \"lat_ttft_ms\" : 1.25e2 , \"lat_e2e_ms\":-0.0, \"rc\" : 200 } ", 0, 0, 125, -0.0, 200,
         true, false, false, SB_ERRK_NONE, 0},
        /* the old harness: rc words, no phase, no ok */
        {"{\"run_id\": \"r\", \"ts\": 1731624500.412, \"lat_ttft_ms\": 311.4, \"lat_e2e_ms\": "
         "1890.2, \"rc\": \"ok\"}",
         0, 0, 311.4, 1890.2, 200, true, false, false, SB_ERRK_NONE, 0},
        {"{\"rc\": \"error\", \"lat_ttft_ms\": null}", 0, 0, NAN, NAN, 0, false, false, false,
         SB_ERRK_NONE, 0},
        /* an int rc and no ok: 2xx without an error kind is a success */
        {"{\"rc\": 200, \"lat_e2e_ms\": 5}", 0, 0, NAN, 5, 200, true, false, false, SB_ERRK_NONE,
         0},
        {"{\"rc\": 503, \"lat_e2e_ms\": 5}", 0, 0, NAN, 5, 503, false, false, false, SB_ERRK_NONE,
         0},
        /* left to the full parser, and read by it */
        {"{\"error_msg\":\"said \\\"no\\\"\",\"rc\":500,\"ok\":false,\"error\":\"http\"}", 0, 1,
         NAN, NAN, 500, false, false, false, SB_ERRK_HTTP, 0},
        {"{\"ts\":\"2025-11-15T10:21:41.412Z\",\"rc\":\"ok\",\"lat_ttft_ms\":3}", 0, 1, 3, NAN, 200,
         true, false, false, SB_ERRK_NONE, 0},
        {"{\"extra\":{\"a\":[1,2,{\"b\":null}]},\"rc\":200,\"ok\":true,\"output_tokens\":16.0}", 0,
         1, NAN, NAN, 200, true, false, false, SB_ERRK_NONE, 16},
        {"{}", 0, 0, NAN, NAN, 0, false, false, false, SB_ERRK_NONE, 0},
        /* broken */
        {"{\"rc\":200,\"ok\":true", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"rc\":200,,\"ok\":true}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"rc\":200}{", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"lat_ttft_ms\":01}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"lat_ttft_ms\":1.}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"ok\":tru}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"rc\":\"maybe\"}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"s\":\"tab\there\"}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"[1,2]", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"run_id,ts,lat_ttft_ms", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
        {"{\"ok\":\"yes\"}", -1, 1, 0, 0, 0, false, false, false, SB_ERRK_NONE, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        /* A fresh scanner and one that learned another line's keys first: same answers. */
        for (int warm = 0; warm < 2; warm++) {
            struct sb_mscan *s = sb_mscan_new(true);
            assert_non_null(s);
            struct sb_mrec m;
            struct sb_err err;
            if (warm)
                assert_int_equal(parse(s, cases[i].line, &m, &err) <= 0, 1);
            size_t n = strlen(cases[i].line);
            char *copy = strdup(cases[i].line);
            int fast = sb_mscan_line(s, copy, n, &m);
            if (!warm && fast != cases[i].fast)
                fail_msg("case %zu: sb_mscan_line gave %d, want %d", i, fast, cases[i].fast);
            free(copy);
            int rc = parse(s, cases[i].line, &m, &err);
            if (rc != cases[i].rc)
                fail_msg("case %zu (%s): rc %d, want %d (%s)", i, cases[i].line, rc, cases[i].rc,
                         err.msg);
            if (rc == 0) {
                char w[40];
                snprintf(w, sizeof(w), "case %zu ttft", i);
                assert_same_double(m.lat[SB_LAT_TTFT], cases[i].ttft, w);
                snprintf(w, sizeof(w), "case %zu e2e", i);
                assert_same_double(m.lat[SB_LAT_E2E], cases[i].e2e, w);
                if (m.rc != cases[i].code || m.ok != cases[i].ok || m.warmup != cases[i].warmup ||
                    m.has_phase != cases[i].has_phase || m.error != cases[i].kind ||
                    m.output_tokens != cases[i].tokens)
                    fail_msg("case %zu: rc %d ok %d warmup %d phase %d kind %d tokens %lld", i,
                             m.rc, m.ok, m.warmup, m.has_phase, m.error, m.output_tokens);
            } else if (err.msg[0] == '\0') {
                fail_msg("case %zu: a bad line without a reason", i);
            }
            sb_mscan_free(s);
        }
    }
}

/*
 * Lines after the first are compared with a recorded one and the keys whose bytes repeat are
 * taken as read there: a value that merely starts like the recorded one ("1" and "10", "12.5" and
 * "12.55", "null" and ...) must still be read as itself, on the fast path.
 */
static void test_scan_repeats(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        double ttft, e2e;
        int code;
        long long tokens;
    } lines[] = {
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5,\"lat_e2e_ms\":null,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\"}",
         12.5, NAN, 200, 1},
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5,\"lat_e2e_ms\":null,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\"}",
         12.5, NAN, 200, 1},
        {"{\"user\":1,\"seq\":10,\"lat_ttft_ms\":12.55,\"lat_e2e_ms\":null,\"rc\":2000,"
         "\"output_tokens\":16,\"z\":\"abc\"}",
         12.55, NAN, 2000, 16},
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5,\"lat_e2e_ms\":3,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\"}",
         12.5, 3, 200, 1},
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5e1,\"lat_e2e_ms\":null,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\"}",
         125, NAN, 200, 1},
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5,\"lat_e2e_ms\":null,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\" }",
         12.5, NAN, 200, 1},
        {"{\"user\":1,\"seq\":1,\"lat_ttft_ms\":12.5,\"lat_e2e_ms\":null,\"rc\":200,"
         "\"output_tokens\":1,\"z\":\"ab\"}",
         12.5, NAN, 200, 1},
    };
    struct sb_mscan *s = sb_mscan_new(false);
    /* Enough lines that the scanner records references and compares with them. */
    for (int round = 0; round < 3000; round++) {
        size_t i = (size_t)round % SB_ARRAY_SIZE(lines);
        char buf[256];
        int n = snprintf(buf, sizeof(buf), "%s", lines[i].line);
        struct sb_mrec m;
        if (sb_mscan_line(s, buf, (size_t)n, &m) != 0)
            fail_msg("round %d: line %zu left the fast path", round, i);
        char w[40];
        snprintf(w, sizeof(w), "round %d ttft", round);
        assert_same_double(m.lat[SB_LAT_TTFT], lines[i].ttft, w);
        snprintf(w, sizeof(w), "round %d e2e", round);
        assert_same_double(m.lat[SB_LAT_E2E], lines[i].e2e, w);
        assert_int_equal(m.rc, lines[i].code);
        assert_int_equal(m.output_tokens, lines[i].tokens);
    }
    sb_mscan_free(s);
}

/* Whether long double arithmetic carries its LDBL_MANT_DIG bits. The scanner rounds 18-digit
   numbers through long double (metrics_scan.c); valgrind computes x87 long double at 64-bit double
   precision (its manual, "Limitations"), where the bit-for-bit comparisons with strtod below fail
   for a reason outside the code, so under `make check-valgrind` those two tests skip themselves
   and the rest of this file still runs. */
static bool long_double_is_exact(void)
{
    volatile long double one = 1.0L, x = one + LDBL_EPSILON;
    return x != one;
}

static void skip_unless_exact_long_double(void)
{
    if (!long_double_is_exact()) {
        print_message("skipped: long double here has no %d-bit mantissa (valgrind?)\n",
                      LDBL_MANT_DIG);
        skip();
    }
}

/* Numbers read by the scanner are the doubles strtod reads, bit for bit. */
static void test_scan_numbers_exact(void **state)
{
    (void)state;
    skip_unless_exact_long_double();
    struct sb_rng rng;
    sb_rng_seed(&rng, 7);
    struct sb_mscan *s = sb_mscan_new(true);
    static const char *const fixed[] = {"0",
                                        "-0",
                                        "1",
                                        "0.1",
                                        "0.000001",
                                        "9007199254740993",
                                        "1796081262.23379421",
                                        "1796081270.50000000",
                                        "123456789012345678",
                                        "12345678901234567890",
                                        "1e22",
                                        "1e23",
                                        "4.9e-324",
                                        "2.2250738585072014e-308",
                                        "0.30000000000000004",
                                        "1763202101.4123456",
                                        "99999999999999999999.5",
                                        "1.7976931348623157e308",
                                        "5e-1",
                                        "0.0000000000000000000001"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(fixed) + 20000; i++) {
        char num[64];
        if (i < SB_ARRAY_SIZE(fixed)) {
            snprintf(num, sizeof(num), "%s", fixed[i]);
        } else {
            /* Decimals of the shapes the writer makes: ms with 6 places, unix times with up to
               8, and random digit strings up to 20 digits with a point anywhere. */
            int kind = (int)sb_rng_below(&rng, 3);
            if (kind == 0) {
                snprintf(num, sizeof(num), "%.6f", sb_rng_uniform(&rng) * 1e6);
            } else if (kind == 1) {
                snprintf(num, sizeof(num), "%.*f", (int)sb_rng_below(&rng, 9),
                         1.7e9 + sb_rng_uniform(&rng) * 1e8);
            } else {
                int nd = 1 + (int)sb_rng_below(&rng, 20), dot = (int)sb_rng_below(&rng, 21);
                size_t k = 0;
                num[k++] = (char)('1' + sb_rng_below(&rng, 9));
                for (int d = 1; d < nd; d++) {
                    if (d == dot)
                        num[k++] = '.';
                    num[k++] = (char)('0' + sb_rng_below(&rng, 10));
                }
                num[k] = '\0';
            }
        }
        char line[128];
        int n = snprintf(line, sizeof(line), "{\"ts\":%s,\"lat_e2e_ms\":%s}", num, num);
        struct sb_mrec m;
        struct sb_err err;
        if (sb_metrics_parse_line(s, line, (size_t)n, &m, &err) != 0)
            fail_msg("'%s' did not parse: %s", num, err.msg);
        double want = strtod(num, NULL);
        assert_same_double(m.lat[SB_LAT_E2E], want, num);
        assert_same_double(m.ts, want, num);
    }
    sb_mscan_free(s);
}

static void random_record(struct sb_rng *rng, struct sb_record *r, long seq)
{
    sb_record_init(r);
    snprintf(r->run_id, sizeof(r->run_id), "20261201_120000_H0_stackA_L8B_U%u",
             (unsigned)sb_rng_below(rng, 3));
    snprintf(r->stack, sizeof(r->stack), "A");
    snprintf(r->model, sizeof(r->model), "L8B");
    snprintf(r->workload, sizeof(r->workload), "fixed_context");
    snprintf(r->hypothesis, sizeof(r->hypothesis), "H0");
    if (sb_rng_below(rng, 4))
        snprintf(r->phase_label, sizeof(r->phase_label), "U8"); /* else omitted */
    r->repetition = 1;
    r->context_tokens = 2048;
    r->concurrency = 8;
    r->ts = 1796081270.0 + (double)seq * 0.001 + sb_rng_uniform(rng) * 1e-3;
    r->warmup = sb_rng_below(rng, 10) == 0;
    r->seq = seq;
    snprintf(r->request_id, sizeof(r->request_id), "%s-%ld", r->run_id, seq);
    snprintf(r->prompt_hash, sizeof(r->prompt_hash), "b619f1f26de685c3");
    int what = (int)sb_rng_below(rng, 10);
    if (what < 7) {
        r->rc = 200;
        r->ok = true;
        r->lat_ttft_ms = sb_rng_uniform(rng) * 1000;
        r->lat_ttfb_ms = sb_rng_uniform(rng) * 3;
        r->lat_e2e_ms = r->lat_ttft_ms + sb_rng_uniform(rng) * 1000;
        r->itl_mean_ms = sb_rng_uniform(rng) * 50;
        r->tpot_ms = r->itl_mean_ms + 0.01;
        r->output_tokens = 16;
        if (what == 6)
            r->lat_ttft_ms = NAN; /* a non-streaming request */
    } else {
        static const int rcs[] = {429, 503, 0};
        static const enum sb_error_kind kinds[] = {SB_ERRK_HTTP, SB_ERRK_HTTP, SB_ERRK_TIMEOUT};
        int k = what - 7;
        r->rc = rcs[k];
        r->error = kinds[k];
        snprintf(r->error_msg, sizeof(r->error_msg), k == 1 ? "said \"busy\"" : "queue full");
        r->lat_e2e_ms = sb_rng_uniform(rng) * 10;
    }
}

static void check_one(const char *line, size_t len, struct sb_mscan *s, bool with_ts,
                      const char *what);

/* The line through a scanner that reads "ts" and one that only checks it. */
static void check_against_reference(const char *line, size_t len, struct sb_mscan *const s[2],
                                    const char *what)
{
    check_one(line, len, s[0], true, what);
    check_one(line, len, s[1], false, what);
}

static void check_one(const char *line, size_t len, struct sb_mscan *s, bool with_ts,
                      const char *what)
{
    char *copy = malloc(len + 1);
    memcpy(copy, line, len);
    copy[len] = '\0';
    struct sb_mrec got = {0}, want = {0};
    struct sb_err err, werr;
    int g = sb_metrics_parse_line(s, copy, len, &got, &err);
    int w = mrec_reference(copy, len, &want, &werr);
    if (g == 0 && w != 0 && mrec_ignored_field_error(copy, len, werr.msg)) {
        free(copy); /* valid JSON; only a field analyze does not read has the wrong type */
        return;
    }
    if ((g == 0) != (w == 0))
        fail_msg("%s: scanner %d, reference %d (%s) for line: %s", what, g, w, werr.msg, copy);
    if (g == 0) {
        for (int i = 0; i < SB_LAT_N; i++)
            assert_same_double(got.lat[i], want.lat[i], what);
        if (with_ts)
            assert_same_double(got.ts, want.ts, what);
        else if (!isnan(got.ts))
            fail_msg("%s: ts read by a scanner not asked for it", what);
        if (got.rc != want.rc || got.ok != want.ok || got.warmup != want.warmup ||
            got.error != want.error || got.output_tokens != want.output_tokens)
            fail_msg("%s: rc %d/%d ok %d/%d warmup %d/%d kind %d/%d tokens %lld/%lld: %s", what,
                     got.rc, want.rc, got.ok, want.ok, got.warmup, want.warmup, got.error,
                     want.error, got.output_tokens, want.output_tokens, copy);
    }
    free(copy);
}

/*
 * Lines written by sb_record_to_json, one scanner over all of them (so the learned key order
 * and the comparison with the previous line are used), then the same lines cut short and with a
 * byte changed: the scanner and sb_record_from_json agree on which lines are records and on
 * every value.
 */
static void test_scan_against_record_parser(void **state)
{
    (void)state;
    skip_unless_exact_long_double();
    struct sb_rng rng;
    sb_rng_seed(&rng, 42);
    struct sb_mscan *scanners[2] = {sb_mscan_new(true), sb_mscan_new(false)};
    struct sb_mscan *s = scanners[0];
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    static const char flips[] = "{}[]\",:0123456789.-eE nulltrufas\\\t\x01\x80";
    for (long i = 0; i < 20000; i++) {
        struct sb_record r;
        random_record(&rng, &r, i);
        sb_buf_reset(&b);
        assert_int_equal(sb_record_to_json(&r, &b), 0);
        size_t len = b.len - 1; /* without '\n' */
        char what[64];
        snprintf(what, sizeof(what), "line %ld", i);
        /* The writer's own lines take the fast path (unless a string holds an escape). */
        struct sb_mrec fast;
        b.data[len] = '\0';
        if (!memchr(b.data, '\\', len) && sb_mscan_line(s, b.data, len, &fast) != 0)
            fail_msg("line %ld left the fast path: %s", i, b.data);
        check_against_reference(b.data, len, scanners, what);
        int mut = (int)sb_rng_below(&rng, 4);
        if (mut == 1) {
            size_t cut = (size_t)sb_rng_below(&rng, len);
            snprintf(what, sizeof(what), "line %ld cut at %zu", i, cut);
            check_against_reference(b.data, cut, scanners, what);
        } else if (mut == 2) {
            size_t at = (size_t)sb_rng_below(&rng, len);
            char saved = b.data[at];
            b.data[at] = flips[sb_rng_below(&rng, sizeof(flips) - 1)];
            snprintf(what, sizeof(what), "line %ld byte %zu", i, at);
            check_against_reference(b.data, len, scanners, what);
            b.data[at] = saved;
        } else if (mut == 3) {
            /* one byte more, anywhere (a space is still valid JSON between tokens) */
            size_t at = (size_t)sb_rng_below(&rng, len + 1);
            char line[8192];
            memcpy(line, b.data, at);
            line[at] = sb_rng_below(&rng, 2) ? ' ' : flips[sb_rng_below(&rng, sizeof(flips) - 1)];
            memcpy(line + at + 1, b.data + at, len - at);
            snprintf(what, sizeof(what), "line %ld inserted at %zu", i, at);
            check_against_reference(line, len + 1, scanners, what);
        }
    }
    sb_buf_release(&b);
    sb_mscan_free(scanners[0]);
    sb_mscan_free(scanners[1]);
}

/* ---- the run directories ---- */

/* The ok measured records of the Stack A fixture, as written by its generator. */
static const double fx_ttft[] = {120.5, 80.25, 100.0, 300.75, 95.125, 105.5, 250.0}; /* 1 null */
static const double fx_e2e[] = {500.0, 420.5, 480.25, 900.0, 450.0, 470.75, 460.0, 800.5};
static const double fx_ttfb[] = {1.5, 0.75, 1.25, 2.0, 1.0, 0.5, 1.75, 3.0};
static const double fx_itl[] = {25.0, 22.5, 24.0, 40.0, 23.0, 24.5, 23.5, 35.0};
static const double fx_tpot[] = {25.1, 22.6, 24.1, 40.1, 23.1, 24.6, 23.6, 35.1};

/* run.json's exit_reason and client_lag: read, and turned into the run's flags. */
static void test_exit_reason_and_client_lag(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char cmd[800], path[600];
    snprintf(cmd, sizeof(cmd), "cp '%s'/* '%s'/", OURS, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/run.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"run_id\":\"x_H0_stackA_L8B_U4\",\"measure_start_ts\":1000.0,\"end_ts\":1002.0,"
          "\"client_lag\":{\"late_sends\":3,\"max_sched_delay_ms\":12.5},"
          "\"exit_reason\":\"sigint\"}\n",
          f);
    assert_int_equal(fclose(f), 0);
    struct sb_run r;
    load_ok(dir, &r);
    char flags[128];
    sb_run_flags(&r, flags, sizeof(flags));
    print_message("exit_reason '%s', late_sends %lld, max %.1f ms: flags '%s'\n",
                  r.exit_reason ? r.exit_reason : "(null)", r.late_sends, r.max_sched_delay_ms,
                  flags);
    assert_string_equal(r.exit_reason, "sigint");
    assert_int_equal(r.late_sends, 3);
    assert_near(r.max_sched_delay_ms, 12.5, "max_sched_delay_ms");
    assert_string_equal(flags, "sigint; client lag (3 late sends; max 12.5 ms)");
    sb_run_release(&r);
    /* The fixture's own run.json says neither: unknown, no flag. */
    load_ok(OURS, &r);
    assert_string_equal(r.exit_reason, "");
    assert_int_equal(r.late_sends, -1);
    assert_string_equal(sb_run_flags(&r, flags, sizeof(flags)), "");
    sb_run_release(&r);
    rm_rf(dir);
    free(dir);
}

static void test_ours(void **state)
{
    (void)state;
    struct sb_run r;
    load_ok(OURS, &r);
    assert_string_equal(r.run_id, "20261201_100000_H0_stackA_L8B_U4");
    assert_string_equal(r.stack, "A");
    assert_string_equal(r.model, "L8B");
    assert_string_equal(r.workload, "fixed_context");
    assert_string_equal(r.hypothesis, "H0");
    assert_string_equal(r.phase, "U4");
    assert_int_equal(r.context_tokens, 256);
    assert_int_equal(r.concurrency, 4);
    assert_int_equal(r.repetition, 1);
    assert_true(isnan(r.rate));
    assert_false(r.old_format);
    /* the window is run.json's */
    assert_true(r.window_from_run_json);
    assert_near(r.t0, 1000.0, "t0");
    assert_near(r.t1, 1002.0, "t1");
    /* 16 records (2 warm-up, 8 ok, 6 failed), a blank line, 2 bad lines and a torn one */
    assert_true(r.metrics_file.present);
    assert_int_equal(r.metrics_file.lines, 16);
    assert_int_equal(r.metrics_file.blank_lines, 1);
    assert_int_equal(r.metrics_file.bad_lines, 3);
    assert_int_equal(r.warmup, 2);
    assert_int_equal(r.measured, 14);
    assert_int_equal(r.ok, 8);
    assert_int_equal(r.completed, 8);
    assert_int_equal(r.errors, 6);
    assert_int_equal(r.errors_by_kind[SB_ERRK_HTTP], 3);
    assert_int_equal(r.errors_by_kind[SB_ERRK_TIMEOUT], 1);
    assert_int_equal(r.errors_by_kind[SB_ERRK_STREAM_ERROR], 1);
    assert_int_equal(r.errors_by_kind[SB_ERRK_CANCELLED], 1);
    assert_int_equal(r.errors_by_kind[SB_ERRK_NONE], 0);
    assert_int_equal(r.rejected, 2); /* the 429 and the 503 */
    assert_int_equal(r.admitted, 9); /* 8 ok and the stream error inside a 200 */
    assert_int_equal(r.output_tokens, 128);
    /* Throughput counts ok completions inside [measure_start_ts, measure_end_ts) (sb/stats.h):
       7 measured requests end by 1002 (the one sent at 1001.75 ends at 1002.55, in the drain)
       and so do both warm-up requests (1000.9 and 1001.45): 9 of 16 tokens each in 2 s. */
    assert_int_equal(r.tput.completed, 9);
    assert_near(r.achieved_rps, 9 / 2.0, "achieved_rps");
    assert_near(r.output_tok_s, 9 * 16 / 2.0, "output_tok_s");
    /* percentiles of the ok measured records only (warm-up records are 900+ ms) */
    check_summary(&r.lat[SB_LAT_TTFT], fx_ttft, 7, "ttft");
    check_summary(&r.lat[SB_LAT_E2E], fx_e2e, 8, "e2e");
    check_summary(&r.lat[SB_LAT_TTFB], fx_ttfb, 8, "ttfb");
    check_summary(&r.lat[SB_LAT_ITL], fx_itl, 8, "itl");
    check_summary(&r.lat[SB_LAT_TPOT], fx_tpot, 8, "tpot");
    /* one value worked out by hand: 7 TTFTs sorted, p50 is the 4th */
    assert_near(r.lat[SB_LAT_TTFT].p50, 105.5, "ttft p50 by hand");
    /* the problems, by file and line */
    assert_true(has_warning(&r, "metrics.jsonl' line 13:", "invalid JSON"));
    assert_true(has_warning(&r, "metrics.jsonl' line 18:", "invalid JSON"));
    assert_true(has_warning(&r, "metrics.jsonl' line 20:", "torn"));
    assert_non_null(strstr(r.metrics_file.first_problem, "line 13"));
    /* sysmon: ticks 999.6 .. 1002.4 every 0.2 s, k = 0..14; the one at 1001.0 (k = 7) missed;
       the window holds k = 2..12; k = 4 has no nvme object, k = 9 the nested PSI shape */
    assert_true(r.sysmon_file.present);
    assert_int_equal(r.sysmon_samples, 10);
    assert_int_equal(r.sysmon_missed, 1);
    assert_near(r.cadence_s, 0.2, "cadence"); /* within 1e-9 of 0.2 */
    assert_near(r.sysmon_aligned, 0.9, "sysmon_aligned");
    double io[10], rps[9], rmbs[9], aw[9], ut[9], aq[9], psi[10], gpu[10];
    size_t n = 0, nn = 0;
    for (int k = 2; k <= 12; k++) {
        if (k == 7)
            continue;
        io[n] = k * 0.5;
        psi[n] = k * 0.25;
        gpu[n] = 50 + k;
        n++;
        if (k == 4)
            continue;
        rps[nn] = 100.0 * k;
        rmbs[nn] = 1.5 * k;
        aw[nn] = 0.1 * k;
        ut[nn] = 2.0 * k;
        aq[nn] = 0.05 * k;
        nn++;
    }
    check_tstat(&r.cpu_iowait, io, 10, "iowait");
    assert_near(r.cpu_iowait.mean, 3.5, "iowait mean by hand");
    assert_near(r.cpu_iowait.p95, 5.775, "iowait p95 by hand");
    check_tstat(&r.nvme_rps, rps, 9, "nvme rps");
    check_tstat(&r.nvme_rmbs, rmbs, 9, "nvme rMBs");
    check_tstat(&r.nvme_r_await, aw, 9, "nvme r_await");
    check_tstat(&r.nvme_util, ut, 9, "nvme util");
    check_tstat(&r.nvme_aqu, aq, 9, "nvme aqu-sz");
    check_tstat(&r.psi_io_some, psi, 10, "psi io");
    check_tstat(&r.gpu_util, gpu, 10, "gpu util");
    assert_near(r.mem_available.min, 24000000000.0 - 12 * 1000000.0, "MemAvailable min");
    /* no dynkv.jsonl: absent, not zero */
    assert_false(r.dynkv_file.present);
    assert_true(isnan(r.dynkv_aligned));
    assert_true(isnan(r.tier_hits[0]) && isnan(r.tier_hit_ratio[2]) && isnan(r.tier2_share));
    assert_int_equal(r.nh7, 0);
    assert_int_equal(r.kv_block_size_bytes, 65536);
    assert_near(r.kv_working_set_bytes, 4.0 * 256 * 131072, "working set");
    sb_run_release(&r);
}

static void test_old_harness(void **state)
{
    (void)state;
    struct sb_run r;
    load_ok(OLD, &r);
    assert_true(r.old_format);
    assert_string_equal(r.run_id, "20251115_120000_H2B_stackB_L8B_ctx2048");
    assert_string_equal(r.stack, "B");        /* the records say B (config: stackB_dynamo_tiered) */
    assert_string_equal(r.model, "L8B");      /* the records' label */
    assert_string_equal(r.hypothesis, "H2B"); /* from the run id */
    assert_string_equal(r.phase, "ctx2048");  /* the run id's last part */
    assert_string_equal(r.eviction_policy, "fifo");
    assert_int_equal(r.kv_block_size_bytes, 65536);
    assert_int_equal(r.tier0_bytes, 4ull << 30);
    assert_int_equal(r.tier1_bytes, 12ull << 30);
    assert_int_equal(r.tier2_bytes, 256ull << 30);
    assert_int_equal(r.repetition, -1);
    /* no phase field: every record is measured; rc "ok", 200 and "error", 500 */
    assert_int_equal(r.warmup, 0);
    assert_int_equal(r.measured, 9);
    assert_int_equal(r.ok, 7);
    assert_int_equal(r.errors, 2);
    assert_int_equal(r.errors_by_kind[SB_ERRK_NONE], 1); /* "error": no kind */
    assert_int_equal(r.errors_by_kind[SB_ERRK_HTTP], 1); /* 500 */
    static const double ttft[] = {311.4, 298.0, 350.25, 305.5, 420.0, 290.0, 333.0};
    static const double e2e[] = {1890.2, 1850.5, 2000.0, 1875.0, 2400.75, 1800.0, 1950.0};
    check_summary(&r.lat[SB_LAT_TTFT], ttft, 7, "old ttft");
    check_summary(&r.lat[SB_LAT_E2E], e2e, 7, "old e2e");
    assert_int_equal(r.lat[SB_LAT_TTFB].n, 0);
    assert_true(isnan(r.lat[SB_LAT_TTFB].p50));
    /* no run.json: the first to the last measured intended send, and the ok requests that end
       inside it: +0 s (1890.2 ms), +0.5 s (1850.5), +1 s (2000) and +2 s (1875); +2.5 s, +3 s and
       +4 s end after +4 s */
    assert_false(r.window_from_run_json);
    assert_near(r.t0, 1763200000.0, "old t0");
    assert_near(r.t1, 1763200004.0, "old t1");
    assert_int_equal(r.tput.completed, 4);
    assert_near(r.achieved_rps, 4 / 4.0, "old rps");
    /* sysmon with ISO-8601 times every 0.5 s from 09:46:40 = 1763200000: 9 inside the window
       (+0 .. +4 s) */
    assert_int_equal(r.sysmon_samples, 9);
    assert_near(r.cadence_s, 0.5, "old cadence");
    double io[9];
    for (int k = 0; k < 9; k++)
        io[k] = 1.0 + k;
    check_tstat(&r.cpu_iowait, io, 9, "old iowait");
    assert_int_equal(r.nvme_rps.n, 9);
    assert_int_equal(r.psi_io_some.n, 0);
    assert_true(isnan(r.psi_io_some.mean));
    sb_run_release(&r);
}

/*
 * Late ticks: 100 ms ticks at 100.0 + k/10, k = 0..29, window [100.5, 102.5] (20 slots). k = 10,
 * 11, 12 woke 90 ms late (late_ms 90); k = 16 comes from a sampler that hid its lateness (late_ms
 * 0.1, ts_actual 150 ms behind ts); k = 14 is missed; k = 25 (ts 102.5, on the window's edge) was
 * read at 102.59, after the window. A late tick is not aligned: it covers no slot, and is counted.
 */
static void test_late_ticks(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int k = 0; k < 30; k++) {
        double ts = 100.0 + k / 10.0, late = 0.0002, late_ms = 0.2;
        if (k == 14) {
            fprintf(f, "{\"ts\":%.6f,\"missed\":true}\n", ts);
            continue;
        }
        if ((k >= 10 && k <= 12) || k == 25)
            late = 0.09, late_ms = 90;
        if (k == 16)
            late = 0.15, late_ms = 0.1;
        fprintf(f, "{\"ts\":%.6f,\"ts_actual\":%.6f,\"late_ms\":%.3f,\"cpu\":{\"iowait\":%d}}\n",
                ts, ts + late, late_ms, k);
    }
    assert_int_equal(fclose(f), 0);
    struct sb_run r;
    memset(&r, 0, sizeof(r));
    r.t0 = 100.5;
    r.t1 = 102.5;
    r.sysmon_aligned = r.dynkv_aligned = r.cadence_s = r.cadence_dynkv_s = NAN;
    sb_run_read_telemetry(&r, path, "/nonexistent/dynkv.jsonl", 0.2);
    print_message("samples %zu, late %zu, missed %zu, aligned %.3f\n", r.sysmon_samples,
                  r.sysmon_late, r.sysmon_missed, r.sysmon_aligned);
    /* k = 5..24 read inside the window, but the missed k = 14 */
    assert_int_equal(r.sysmon_samples, 19);
    assert_int_equal(r.sysmon_missed, 1);
    assert_int_equal(r.sysmon_late, 4);
    /* on time: 20 slots less k = 10, 11, 12, 14, 16 */
    assert_near(r.sysmon_aligned, 15 / 20.0, "sysmon_aligned");
    /* the mean of the 19 readings in the window: (5 + ... + 24 - 14) / 19 */
    assert_near(r.cpu_iowait.mean, 276.0 / 19, "iowait mean");
    sb_run_release(&r);
    rm_rf(dir);
    free(dir);
}

static void test_partial_telemetry(void **state)
{
    (void)state;
    struct sb_run r;
    load_ok(KV, &r);
    assert_string_equal(r.stack, "B");
    assert_string_equal(r.hypothesis, "H2B");
    assert_string_equal(r.eviction_policy, "LRU");
    assert_int_equal(r.kv_block_size_bytes, 65536); /* "64KiB" */
    assert_near(r.t0, 2000.0, "t0");
    assert_near(r.t1, 2004.0, "t1");
    /* sysmon covers 2000.0 .. 2001.8 of [2000, 2004): half; dynkv 2001.0 .. 2003.8: 3/4 */
    assert_near(r.sysmon_aligned, 0.5, "sysmon aligned");
    assert_near(r.dynkv_aligned, 0.75, "dynkv aligned");
    assert_int_equal(r.sysmon_samples, 10);
    assert_int_equal(r.dynkv_samples, 15);
    assert_near(r.cadence_dynkv_s, 0.2, "dynkv cadence");
    /* sums over 15 ticks; tier 1 is null in one of them */
    assert_near(r.tier_hits[0], 1500, "t0 hits");
    assert_near(r.tier_misses[0], 150, "t0 misses");
    assert_near(r.tier_hits[1], 280, "t1 hits");
    assert_near(r.tier_misses[1], 70, "t1 misses");
    assert_near(r.tier_hits[2], 75, "t2 hits");
    assert_near(r.tier_misses[2], 0, "t2 misses");
    assert_near(r.tier_hit_ratio[0], 1500.0 / 1650.0, "t0 ratio");
    assert_near(r.tier_hit_ratio[1], 0.8, "t1 ratio");
    assert_near(r.tier_hit_ratio[2], 1.0, "t2 ratio");
    assert_near(r.tier2_share, 75.0 / (1500 + 280 + 75), "tier2 share");
    double fetch[15];
    for (int k = 0; k < 15; k++)
        fetch[k] = round((1.0 + 0.1 * k) * 10) / 10;
    check_tstat(&r.tier2_fetch_p95_ms, fetch, 15, "fetch p95");
    /* H7: tier-2 bytes out per 0.2 s tick as MB/s; the sysmon tick at the same time where
       there is one (2001.0 .. 2001.8: rMBs 25 .. 29) */
    assert_int_equal(r.nh7, 15);
    for (size_t k = 0; k < r.nh7; k++) {
        char w[40];
        snprintf(w, sizeof(w), "h7 %zu pred", k);
        assert_near(r.h7[k].pred_rmbs, 65536.0 * (double)(k + 1) / 0.2 / 1e6, w);
        snprintf(w, sizeof(w), "h7 %zu obs", k);
        assert_near(r.h7[k].obs_rmbs, k < 5 ? 25.0 + (double)k : NAN, w);
        snprintf(w, sizeof(w), "h7 %zu rps", k);
        assert_near(r.h7[k].obs_rps, k < 5 ? 1050.0 + 10.0 * (double)k : NAN, w);
        snprintf(w, sizeof(w), "h7 %zu fetch", k);
        assert_near(r.h7[k].fetch_p95_ms, fetch[k], w);
    }
    sb_run_release(&r);
}

static void test_not_jsonl(void **state)
{
    (void)state;
    struct sb_run r;
    struct sb_err err;
    struct sb_analyze_opts o = {0};
    assert_int_equal(sb_run_load(NOTJL, &o, &r, &err), -1);
    assert_non_null(strstr(err.msg, "notjsonl/metrics.jsonl"));
    assert_non_null(strstr(err.msg, "not JSON lines"));
    sb_run_release(&r);
    /* a missing metrics.jsonl is an error naming it too */
    assert_int_equal(sb_run_load(DATA, &o, &r, &err), -1);
    assert_non_null(strstr(err.msg, "metrics.jsonl"));
    sb_run_release(&r);
}

/* A file cut into parts read by several threads gives what one thread gives, line numbers too. */
static void test_split_same_answers(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct sb_rng rng;
    sb_rng_seed(&rng, 3);
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    long bad_at[3] = {777, 2500, 4999};
    for (long i = 1; i <= 5000; i++) {
        if (i == bad_at[0] || i == bad_at[1] || i == bad_at[2]) {
            fputs("{\"broken\":\n", f);
            continue;
        }
        if (i % 1000 == 0) {
            fputs("\n", f);
            continue;
        }
        struct sb_record r;
        random_record(&rng, &r, i);
        sb_buf_reset(&b);
        sb_record_to_json(&r, &b);
        fwrite(b.data, 1, b.len, f);
    }
    fputs("{\"torn\":1", f);
    fclose(f);
    sb_buf_release(&b);

    struct sb_run one, many;
    sb_analyze_set_split(1, 0);
    load_ok(dir, &one);
    sb_analyze_set_split(5, 4096);
    load_ok(dir, &many);
    sb_analyze_set_split(0, 0);
    assert_int_equal(one.metrics_file.lines, many.metrics_file.lines);
    assert_int_equal(one.metrics_file.bad_lines, 4);
    assert_int_equal(many.metrics_file.bad_lines, 4);
    assert_int_equal(one.metrics_file.blank_lines, 5);
    assert_int_equal(many.metrics_file.blank_lines, 5);
    assert_int_equal(one.measured, many.measured);
    assert_int_equal(one.warmup, many.warmup);
    assert_int_equal(one.ok, many.ok);
    assert_int_equal(one.errors, many.errors);
    assert_int_equal(one.rejected, many.rejected);
    for (int i = 0; i < SB_LAT_N; i++) {
        assert_int_equal(one.lat[i].n, many.lat[i].n);
        assert_same_double(one.lat[i].p50, many.lat[i].p50, "split p50");
        assert_same_double(one.lat[i].p999, many.lat[i].p999, "split p99.9");
        assert_same_double(one.lat[i].max, many.lat[i].max, "split max");
    }
    assert_same_double(one.t0, many.t0, "split t0");
    assert_same_double(one.t1, many.t1, "split t1");
    for (int k = 0; k < 3; k++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "metrics.jsonl' line %ld:", bad_at[k]);
        assert_true(has_warning(&one, needle, NULL));
        assert_true(has_warning(&many, needle, NULL));
    }
    assert_true(has_warning(&many, "metrics.jsonl' line 5001:", "torn"));
    assert_int_equal(one.nwarnings, many.nwarnings);
    sb_run_release(&one);
    sb_run_release(&many);
    rm_rf(dir);
    free(dir);
}

static void test_find_runs(void **state)
{
    (void)state;
    char *paths[] = {DATA};
    char **dirs;
    size_t n;
    struct sb_err err;
    assert_int_equal(sb_runs_find(paths, 1, &dirs, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(dirs[0], OLD);
    assert_string_equal(dirs[1], OURS);
    assert_string_equal(dirs[2], KV);
    assert_string_equal(dirs[3], NOTJL);
    sb_runs_free(dirs, n);
    /* a run given twice (itself and its parent, or its metrics.jsonl) is found once */
    char *twice[] = {OURS, DATA "/", OURS "/metrics.jsonl"};
    assert_int_equal(sb_runs_find(twice, 3, &dirs, &n, &err), 0);
    assert_int_equal(n, 4);
    sb_runs_free(dirs, n);
    /* a path given that does not exist is an error naming it */
    char *missing[] = {DATA, "/nonexistent/sb-results"};
    assert_int_equal(sb_runs_find(missing, 2, &dirs, &n, &err), -1);
    assert_non_null(strstr(err.msg, "'/nonexistent/sb-results'"));
    /* the defaults, results/ and runs/, may both be missing */
    char *dir = make_tmpdir();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(sb_runs_find(NULL, 0, &dirs, &n, &err), 0);
    assert_int_equal(n, 0);
    sb_runs_free(dirs, n);
    assert_int_equal(chdir(cwd), 0);
    rm_rf(dir);
    free(dir);
}

/* summary_v3.csv: the old columns first, in the old order, then the new ones. */
static const char *const csv_header =
    "run_id,stack,model,workload,context_tokens,concurrency,p50_ttft_ms,p95_ttft_ms,p99_ttft_ms,"
    "p50_e2e_ms,p95_e2e_ms,p99_e2e_ms,samples,sysmon_samples,stack_letter,"
    "hypothesis,phase,repetition,fio_profile,eviction_policy,rate,old_format,t0,t1,window_s,"
    "window_from_run_json,exit_reason,late_sends,max_sched_delay_ms,flags,lines,bad_lines,blank_"
    "lines,warmup,measured,errors,errors_unknown,"
    "errors_connect,errors_timeout,errors_http,errors_bad_json,errors_bad_sse,"
    "errors_stream_error,errors_truncated,errors_too_large,errors_transport,errors_cancelled,"
    "errors_empty_stream,"
    "admitted,completed,rejected,achieved_rps,output_tok_s,output_tokens,"
    "n_ttft,p90_ttft_ms,p999_ttft_ms,mean_ttft_ms,min_ttft_ms,max_ttft_ms,"
    "n_e2e,p90_e2e_ms,p999_e2e_ms,mean_e2e_ms,min_e2e_ms,max_e2e_ms,"
    "n_ttfb,p50_ttfb_ms,p90_ttfb_ms,p95_ttfb_ms,p99_ttfb_ms,p999_ttfb_ms,mean_ttfb_ms,"
    "min_ttfb_ms,max_ttfb_ms,"
    "n_itl,p50_itl_ms,p90_itl_ms,p95_itl_ms,p99_itl_ms,p999_itl_ms,mean_itl_ms,min_itl_ms,"
    "max_itl_ms,"
    "n_tpot,p50_tpot_ms,p90_tpot_ms,p95_tpot_ms,p99_tpot_ms,p999_tpot_ms,mean_tpot_ms,"
    "min_tpot_ms,max_tpot_ms,"
    "sysmon_window_samples,sysmon_missed,sysmon_late,sysmon_aligned,cadence_s,cpu_iowait_mean,cpu_"
    "iowait_p95,nvme_rps_"
    "mean,"
    "nvme_rps_p95,nvme_rmbs_mean,nvme_rmbs_p95,nvme_r_await_ms_mean,nvme_r_await_ms_p95,"
    "nvme_util_pct_mean,nvme_util_pct_p95,nvme_aqu_sz_mean,nvme_aqu_sz_p95,"
    "psi_io_some_avg10_mean,psi_io_some_avg10_p95,mem_available_min,mem_available_mean,"
    "gpu_util_mean,gpu_util_p95,"
    "dynkv_samples,dynkv_missed,dynkv_aligned,cadence_dynkv_s,"
    "tier0_hits,tier0_misses,tier0_hit_ratio,tier1_hits,tier1_misses,tier1_hit_ratio,"
    "tier2_hits,tier2_misses,tier2_hit_ratio,tier2_share,tier2_fetch_p95_ms_mean,"
    "tier2_fetch_p95_ms_p95,h7_points,kv_block_size_bytes,tier0_bytes,tier1_bytes,tier2_bytes,"
    "kv_working_set_bytes,max_inflight,inflight_mean,prompt_est_tokens,context_tokens_server,"
    "server_truncated,n_client_overhead,p50_client_overhead_ms,p99_client_overhead_ms,"
    "sessions,sess_records,prime_records,working_set_tokens_mean,working_set_tokens_max,"
    "oracle_hit_ratio,realized_hit_ratio,realized_over_oracle,dir,"
    "fio_read_mbs,fio_write_mbs,fio_read_iops,fio_write_iops,fio_read_clat_p99_ms,"
    "fio_write_clat_p99_ms";

/* Splits one CSV line (no quoted commas in these rows) into cells, in place. */
static int split_cells(char *line, char **cells, int max)
{
    int n = 0;
    for (char *s = line; s && n < max;) {
        cells[n++] = s;
        char *comma = strchr(s, ',');
        if (comma)
            *comma++ = '\0';
        s = comma;
    }
    return n;
}

static void test_summary_csv(void **state)
{
    (void)state;
    struct sb_run runs[3];
    load_ok(OURS, &runs[0]);
    load_ok(OLD, &runs[1]);
    load_ok(KV, &runs[2]);
    char *dir = make_tmpdir();
    char path[600];
    snprintf(path, sizeof(path), "%s/summary_v3.csv", dir);
    struct sb_err err;
    assert_int_equal(sb_summary_csv_write(path, runs, 3, &err), 0);
    char *text = read_all(path);
    assert_non_null(text);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(text, csv_header);
    /* sb_summary_columns is the same list */
    char joined[8192] = "";
    size_t used = 0;
    for (size_t i = 0; sb_summary_columns[i]; i++)
        used += (size_t)snprintf(joined + used, sizeof(joined) - used, "%s%s", i ? "," : "",
                                 sb_summary_columns[i]);
    assert_string_equal(joined, csv_header);
    /* three rows; the first one's cells */
    char *row = nl + 1;
    char *end = strchr(row, '\n');
    assert_non_null(end);
    *end = '\0';
    char *cells[256];
    int n = split_cells(row, cells, 256);
    int ncols = 0;
    while (sb_summary_columns[ncols])
        ncols++;
    assert_int_equal(n, ncols);
    assert_string_equal(cells[0], "20261201_100000_H0_stackA_L8B_U4");
    assert_string_equal(cells[1], "stackA"); /* the old column's meaning: the stack's name */
    assert_string_equal(cells[2], "L8B");
    assert_string_equal(cells[3], "fixed_context");
    assert_string_equal(cells[4], "256");
    assert_string_equal(cells[5], "4");
    assert_string_equal(cells[6], "105.5"); /* p50_ttft_ms */
    assert_string_equal(cells[12], "8");    /* samples: ok measured records */
    assert_string_equal(cells[13], "14"); /* sysmon_samples: every tick taken (15 less 1 missed) */
    assert_string_equal(cells[14], "A");  /* stack_letter */
    assert_string_equal(cells[15], "H0");
    assert_string_equal(cells[20], "");      /* rate: closed loop, NAN */
    assert_string_equal(cells[21], "false"); /* old_format */
    /* every number reads back as the double it came from */
    for (int i = 0; i < n; i++) {
        const char *name = sb_summary_columns[i];
        if (strcmp(name, "p95_e2e_ms") == 0)
            assert_true(strtod(cells[i], NULL) == runs[0].lat[SB_LAT_E2E].p95);
        if (strcmp(name, "cpu_iowait_p95") == 0)
            assert_true(strtod(cells[i], NULL) == runs[0].cpu_iowait.p95);
        if (strcmp(name, "sysmon_aligned") == 0)
            assert_true(strtod(cells[i], NULL) == runs[0].sysmon_aligned);
        if (strcmp(name, "achieved_rps") == 0)
            assert_string_equal(cells[i], "4.5");
        if (strcmp(name, "tier0_hits") == 0 || strcmp(name, "dynkv_aligned") == 0)
            assert_string_equal(cells[i], ""); /* no dynkv.jsonl: empty, not 0 */
        if (strcmp(name, "bad_lines") == 0)
            assert_string_equal(cells[i], "3");
        if (strcmp(name, "sessions") == 0 || strcmp(name, "oracle_hit_ratio") == 0 ||
            strcmp(name, "realized_over_oracle") == 0 ||
            strcmp(name, "working_set_tokens_mean") == 0)
            assert_string_equal(cells[i], ""); /* not a KV-reuse workload: empty, not 0 */
        if (strcmp(name, "errors_http") == 0)
            assert_string_equal(cells[i], "3");
        if (strcmp(name, "sysmon_window_samples") == 0)
            assert_string_equal(cells[i], "10"); /* the ticks inside the window */
        if (strcmp(name, "exit_reason") == 0 || strcmp(name, "late_sends") == 0 ||
            strcmp(name, "flags") == 0)
            assert_string_equal(cells[i], ""); /* the fixture's run.json says nothing */
    }
    /* 3 data rows */
    int rows = 0;
    for (char *p = end + 1; *p; p++)
        rows += *p == '\n';
    assert_int_equal(rows, 2);
    free(text);
    for (int i = 0; i < 3; i++)
        sb_run_release(&runs[i]);
    rm_rf(dir);
    free(dir);
}

static void test_summary_json(void **state)
{
    (void)state;
    struct sb_run r;
    load_ok(KV, &r);
    char *dir = make_tmpdir();
    char *orig = r.dir;
    r.dir = dir; /* write into a scratch directory, not the fixture */
    struct sb_err err;
    assert_int_equal(sb_run_summary_json_write(&r, &err), 0);
    r.dir = orig;
    char path[600];
    snprintf(path, sizeof(path), "%s/summary.json", dir);
    char *text = read_all(path);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    for (size_t i = 0; sb_summary_columns[i]; i++)
        if (!cJSON_GetObjectItemCaseSensitive(j, sb_summary_columns[i]))
            fail_msg("summary.json lacks '%s'", sb_summary_columns[i]);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "rate")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "cpu_iowait_mean")) == false);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "hypothesis")->valuestring, "H2B");
    assert_true(cJSON_GetObjectItemCaseSensitive(j, "p50_ttft_ms")->valuedouble ==
                r.lat[SB_LAT_TTFT].p50);
    assert_true(cJSON_GetObjectItemCaseSensitive(j, "dynkv_aligned")->valuedouble ==
                r.dynkv_aligned);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "samples")->valueint, 4);
    const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(j, "errors_by_kind");
    assert_true(cJSON_IsObject(kinds));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(kinds, "stream_error"));
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(files, "dynkv"), "present")));
    const cJSON *h7 = cJSON_GetObjectItemCaseSensitive(j, "h7");
    assert_int_equal(cJSON_GetArraySize(h7), 15);
    assert_true(
        cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(h7, 14), "obs_rmbs")));
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "warnings")));
    cJSON_Delete(j);
    free(text);
    sb_run_release(&r);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_table),
        cmocka_unit_test(test_scan_repeats),
        cmocka_unit_test(test_scan_numbers_exact),
        cmocka_unit_test(test_scan_against_record_parser),
        cmocka_unit_test(test_ours),
        cmocka_unit_test(test_exit_reason_and_client_lag),
        cmocka_unit_test(test_old_harness),
        cmocka_unit_test(test_partial_telemetry),
        cmocka_unit_test(test_late_ticks),
        cmocka_unit_test(test_not_jsonl),
        cmocka_unit_test(test_split_same_answers),
        cmocka_unit_test(test_find_runs),
        cmocka_unit_test(test_summary_csv),
        cmocka_unit_test(test_summary_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
