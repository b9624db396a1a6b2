/*
 * Unit tests for sb/lora_select.h, the LoRA suite of `run`: the list's format and its errors (each
 * naming file and line), the policy's spellings, the per-request choice (round robin exact,
 * uniform and zipf shares from a fixed seed, the same sequence whatever order and threads ask
 * in), the use counts, the request body each mode makes, and the records' adapter fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "sb/lora_select.h"
#include "sb/openai.h"
#include "sb/record.h"
#include "sb/util.h"

static int parse(const char *text, struct sb_lora_list *l, struct sb_err *err)
{
    return sb_lora_list_parse(text, strlen(text), "loras.txt", l, err);
}

static void test_list_shapes(void **state)
{
    (void)state;
    struct sb_lora_list l;
    struct sb_err err;
    /* The shape of the reference list: names only. */
    assert_int_equal(parse("adapter_finance_v1\nadapter_legal_v2\nadapter_customer_support_v4\n"
                           "adapter_summarization_v3",
                           &l, &err),
                     0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.a[3].name, "adapter_summarization_v3");
    assert_int_equal(l.a[0].id, -1);
    assert_null(l.a[0].path);
    assert_string_equal(l.file, "loras.txt");
    sb_lora_list_release(&l);

    /* Ids, paths, comments, blank lines, tabs and CRLF. */
    assert_int_equal(parse("# adapters for H1\n\n  sql 1 /loras/sql\r\n\tchat\t2   # no path\n"
                           "code 0 /loras/code # trailing\n#last\n",
                           &l, &err),
                     0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.a[0].name, "sql");
    assert_int_equal(l.a[0].id, 1);
    assert_string_equal(l.a[0].path, "/loras/sql");
    assert_int_equal(l.a[0].line, 3);
    assert_string_equal(l.a[1].name, "chat");
    assert_int_equal(l.a[1].id, 2);
    assert_null(l.a[1].path);
    assert_int_equal(l.a[2].id, 0);
    assert_string_equal(l.a[2].path, "/loras/code");
    assert_int_equal(l.a[2].line, 5);
    /* trtllm needs id and path on every line: "chat" (line 4) has no path. */
    assert_int_equal(sb_lora_list_check_mode(&l, SB_LORA_MODE_MODEL, &err), 0);
    assert_int_equal(sb_lora_list_check_mode(&l, SB_LORA_MODE_TRTLLM, &err), -1);
    assert_non_null(strstr(err.msg, "'loras.txt' line 4"));
    assert_non_null(strstr(err.msg, "'chat'"));
    sb_lora_list_release(&l);
}

static void test_list_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want; /* in the message */
    } cases[] = {
        {"a\nb\na\n", "line 3: duplicate adapter name 'a' (first on line 1)"},
        {"a 1\nb 1\n", "line 2: duplicate id 1 (first on line 1, adapter 'a')"},
        {"a x\n", "line 1: bad id 'x'"},
        {"a -1\n", "line 1: bad id '-1'"},
        {"a 1.5\n", "line 1: bad id '1.5'"},
        {"a\n\nb 99999999999\n", "line 3: bad id '99999999999'"},
        {"a 1 /p extra\n", "line 1: 4 fields"},
        {"# nothing\n\n", "no adapters"},
        {"", "no adapters"},
        {"a\x01z\n", "line 1: adapter name is not printable UTF-8"},
        {"\xff\xfe\n", "line 1: adapter name is not printable UTF-8"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_lora_list l = {0};
        struct sb_err err = {0};
        if (parse(cases[i].text, &l, &err) == 0)
            fail_msg("case %zu parsed", i);
        if (!strstr(err.msg, cases[i].want) || !strstr(err.msg, "'loras.txt'"))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        assert_null(l.a);
    }
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct sb_lora_list l;
    struct sb_err err;
    assert_int_equal(parse(longname, &l, &err), -1);
    assert_non_null(strstr(err.msg, "longer than 127 bytes"));
    /* A missing file names itself. */
    assert_int_equal(sb_lora_list_load("/nonexistent/loras.txt", &l, &err), -1);
    assert_non_null(strstr(err.msg, "'/nonexistent/loras.txt'"));
}

static void test_policy_parse(void **state)
{
    (void)state;
    struct sb_lora_policy p;
    struct sb_err err;
    char buf[64];
    assert_int_equal(sb_lora_policy_parse("round_robin", &p, &err), 0);
    assert_int_equal(p.kind, SB_LORA_ROUND_ROBIN);
    assert_int_equal(sb_lora_policy_parse("uniform", &p, &err), 0);
    assert_int_equal(p.kind, SB_LORA_UNIFORM);
    assert_int_equal(sb_lora_policy_parse("zipf:1.2", &p, &err), 0);
    assert_int_equal(p.kind, SB_LORA_ZIPF);
    assert_true(p.s == 1.2);
    assert_string_equal(sb_lora_policy_name(&p, buf, sizeof(buf)), "zipf:1.2");
    static const char *const bad[] = {"",         "zipf",     "zipf:",   "zipf:0", "zipf:-1",
                                      "zipf:nan", "zipf:inf", "zipf:1x", "random", "Uniform"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(bad); i++) {
        if (sb_lora_policy_parse(bad[i], &p, &err) == 0)
            fail_msg("'%s' parsed", bad[i]);
        assert_non_null(strstr(err.msg, "--lora-select"));
    }
}

static struct sb_lora_list make_list(size_t n)
{
    struct sb_lora_list l;
    struct sb_err err;
    char text[4096] = "";
    for (size_t i = 0; i < n; i++) {
        char line[128];
        snprintf(line, sizeof(line), "ad%zu %zu /loras/ad%zu\n", i, i + 1, i);
        strncat(text, line, sizeof(text) - strlen(text) - 1);
    }
    assert_int_equal(parse(text, &l, &err), 0);
    return l;
}

static struct sb_lora_selector *make_sel(const struct sb_lora_list *l, const char *how,
                                         uint64_t seed)
{
    struct sb_lora_policy p;
    struct sb_err err;
    struct sb_lora_selector *s;
    assert_int_equal(sb_lora_policy_parse(how, &p, &err), 0);
    assert_int_equal(sb_lora_selector_new(l, &p, seed, &s, &err), 0);
    return s;
}

static void test_round_robin(void **state)
{
    (void)state;
    struct sb_lora_list l = make_list(4);
    struct sb_lora_selector *s = make_sel(&l, "round_robin", 42);
    for (long long seq = 0; seq < 20; seq++) {
        size_t i;
        long long use;
        sb_lora_selector_take(s, seq, &i, &use);
        assert_int_equal(i, (size_t)(seq % 4));
        assert_int_equal(use, seq / 4 + 1);
    }
    long long counts[4];
    sb_lora_selector_counts(s, counts);
    for (int i = 0; i < 4; i++)
        assert_int_equal(counts[i], 5);
    sb_lora_selector_free(s);
    sb_lora_list_release(&l);
}

/* Shares of n requests of each adapter. */
static void shares(struct sb_lora_selector *s, size_t nad, long long n, double *out)
{
    long long *c = calloc(nad, sizeof(*c));
    for (long long q = 0; q < n; q++)
        c[sb_lora_pick(s, q)]++;
    for (size_t i = 0; i < nad; i++)
        out[i] = (double)c[i] / (double)n;
    free(c);
}

static void test_distributions(void **state)
{
    (void)state;
    struct sb_lora_list l = make_list(5);
    double sh[5];
    const long long n = 200000;
    /* uniform: 1/5 each, within 1 % (the binomial sd is 0.09 %) */
    struct sb_lora_selector *s = make_sel(&l, "uniform", 7);
    shares(s, 5, n, sh);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(sh[i] - 0.2) < 0.01);
    sb_lora_selector_free(s);
    /* zipf:1.2: rank k has 1/k^1.2 / H; ordered by rank and within 1 % of the share */
    s = make_sel(&l, "zipf:1.2", 7);
    shares(s, 5, n, sh);
    double h = 0;
    for (int k = 1; k <= 5; k++)
        h += pow(k, -1.2);
    for (int i = 0; i < 5; i++) {
        double want = pow(i + 1, -1.2) / h;
        if (fabs(sh[i] - want) > 0.01)
            fail_msg("rank %d: share %.4f, expected %.4f", i + 1, sh[i], want);
        if (i > 0)
            assert_true(sh[i] < sh[i - 1]);
    }
    sb_lora_selector_free(s);
    /* Another seed, another sequence; the same seed, the same one. */
    struct sb_lora_selector *a = make_sel(&l, "uniform", 1), *b = make_sel(&l, "uniform", 2),
                            *c = make_sel(&l, "uniform", 1);
    int differ = 0;
    for (long long q = 0; q < 100; q++) {
        differ += sb_lora_pick(a, q) != sb_lora_pick(b, q);
        assert_int_equal(sb_lora_pick(a, q), sb_lora_pick(c, q));
    }
    assert_true(differ > 50);
    sb_lora_selector_free(a);
    sb_lora_selector_free(b);
    sb_lora_selector_free(c);
    sb_lora_list_release(&l);
}

#define NSEQ 20000

struct taker {
    struct sb_lora_selector *s;
    long long from, step;
    size_t *idx;
    long long *use;
};

static void *take_some(void *arg)
{
    struct taker *t = arg;
    /* Backwards within its share, so seqs arrive far out of order. */
    long long last = t->from;
    while (last + t->step < NSEQ)
        last += t->step;
    for (long long q = last; q >= t->from; q -= t->step)
        sb_lora_selector_take(t->s, q, &t->idx[q], &t->use[q]);
    return NULL;
}

static void test_order_free(void **state)
{
    (void)state;
    struct sb_lora_list l = make_list(3);
    size_t *idx0 = calloc(NSEQ, sizeof(size_t)), *idx1 = calloc(NSEQ, sizeof(size_t));
    long long *use0 = calloc(NSEQ, sizeof(long long)), *use1 = calloc(NSEQ, sizeof(long long));
    /* In order, one thread: the reference. */
    struct sb_lora_selector *s = make_sel(&l, "zipf:1.2", 99);
    long long seen[3] = {0};
    for (long long q = 0; q < NSEQ; q++) {
        sb_lora_selector_take(s, q, &idx0[q], &use0[q]);
        assert_int_equal(use0[q], ++seen[idx0[q]]); /* uses count up per adapter */
    }
    sb_lora_selector_free(s);
    /* Four threads, each backwards over its share (the ring is outrun: recounted). */
    s = make_sel(&l, "zipf:1.2", 99);
    pthread_t th[4];
    struct taker tk[4];
    for (int i = 0; i < 4; i++) {
        tk[i] = (struct taker){s, i, 4, idx1, use1};
        pthread_create(&th[i], NULL, take_some, &tk[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (long long q = 0; q < NSEQ; q++) {
        assert_int_equal(idx0[q], idx1[q]);
        assert_int_equal(use0[q], use1[q]);
    }
    long long counts[3];
    sb_lora_selector_counts(s, counts);
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], seen[i]);
    sb_lora_selector_free(s);
    free(idx0);
    free(idx1);
    free(use0);
    free(use1);
    sb_lora_list_release(&l);
}

static cJSON *body_of(const struct sb_lora_list *l, enum sb_lora_mode mode, size_t idx,
                      const char *extra)
{
    struct sb_request_params rp = {.api = SB_API_COMPLETIONS,
                                   .model = "base",
                                   .prompt = "p",
                                   .prompt_len = 1,
                                   .max_tokens = 4,
                                   .temperature = NAN,
                                   .top_p = NAN,
                                   .extra_json = extra};
    sb_lora_apply(l, mode, idx, &rp);
    struct sb_buf b;
    struct sb_err err;
    sb_buf_init(&b, 1 << 20);
    assert_int_equal(sb_openai_build_request(&rp, &b, &err), 0);
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    assert_non_null(j);
    sb_buf_release(&b);
    return j;
}

static void test_request_bodies(void **state)
{
    (void)state;
    struct sb_lora_list l;
    struct sb_err err;
    assert_int_equal(parse("sql 7 /loras/s\"ql\nchat\n", &l, &err), 0);
    /* model mode: the adapter is the model, nothing else added. */
    cJSON *j = body_of(&l, SB_LORA_MODE_MODEL, 1, NULL);
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "chat");
    assert_null(cJSON_GetObjectItem(j, "lora_request"));
    cJSON_Delete(j);
    /* trtllm mode: the base model stays, lora_request as TensorRT-LLM's LoRARequest. */
    j = body_of(&l, SB_LORA_MODE_TRTLLM, 0, NULL);
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "base");
    cJSON *lr = cJSON_GetObjectItem(j, "lora_request");
    assert_true(cJSON_IsObject(lr));
    assert_string_equal(cJSON_GetObjectItem(lr, "lora_name")->valuestring, "sql");
    assert_true(cJSON_GetObjectItem(lr, "lora_int_id")->valuedouble == 7);
    assert_string_equal(cJSON_GetObjectItem(lr, "lora_path")->valuestring, "/loras/s\"ql");
    assert_int_equal(cJSON_GetArraySize(lr), 3);
    cJSON_Delete(j);
    /* An extra_body lora_request replaces ours: never a key twice. */
    j = body_of(&l, SB_LORA_MODE_TRTLLM, 0, "{\"lora_request\":{\"lora_name\":\"x\"}}");
    int n = 0;
    for (cJSON *it = j->child; it; it = it->next)
        n += strcmp(it->string, "lora_request") == 0;
    assert_int_equal(n, 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "lora_request"), "lora_name")->valuestring, "x");
    cJSON_Delete(j);
    sb_lora_list_release(&l);
}

static void test_record_fields(void **state)
{
    (void)state;
    struct sb_record a, b;
    struct sb_buf line;
    struct sb_err err;
    sb_buf_init(&line, 1 << 20);
    /* Without an adapter both are null. */
    sb_record_init(&a);
    assert_int_equal(sb_record_to_json(&a, &line), 0);
    assert_non_null(strstr(line.data, "\"adapter\":null,\"adapter_use\":null"));
    assert_int_equal(sb_record_from_json(line.data, line.len, &b, &err), 0);
    assert_string_equal(b.adapter, "");
    assert_int_equal(b.adapter_use, -1);
    /* With one they read back. */
    sb_buf_reset(&line);
    snprintf(a.adapter, sizeof(a.adapter), "adapter_legal_v2");
    a.adapter_use = 1;
    assert_int_equal(sb_record_to_json(&a, &line), 0);
    assert_non_null(strstr(line.data, "\"adapter\":\"adapter_legal_v2\",\"adapter_use\":1"));
    assert_int_equal(sb_record_from_json(line.data, line.len, &b, &err), 0);
    assert_string_equal(b.adapter, "adapter_legal_v2");
    assert_int_equal(b.adapter_use, 1);
    sb_buf_release(&line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_shapes),    cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_policy_parse),   cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_distributions),  cmocka_unit_test(test_order_free),
        cmocka_unit_test(test_request_bodies), cmocka_unit_test(test_record_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
