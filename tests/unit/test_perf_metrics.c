/*
 * Unit tests of TensorRT-LLM's GET /perf_metrics decoding and its join to records
 * (sb/perf_metrics.h). The fixture is shaped as NVIDIA/TensorRT-LLM
 * tensorrt_llm/serve/openai_server.py get_perf_metrics writes it (and _perf_metrics_schema.py
 * WorkerPerfMetrics types it): request_id the executor's integer, steady-clock seconds in
 * timing_metrics, kv_cache_metrics beside them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/perf_metrics.h"
#include "sb/util.h"

#define ENTRY(id, arr, sch, ft, lt)                                                                \
    "{\"request_id\":" id ",\"perf_metrics\":{\"first_iter\":3,\"last_iter\":19,"                  \
    "\"timing_metrics\":{\"server_arrival_time\":null,\"arrival_time\":" arr                       \
    ",\"first_scheduled_time\":" sch ",\"first_token_time\":" ft                                   \
    ",\"server_first_token_time\":null,\"last_token_time\":" lt "},"                               \
    "\"kv_cache_metrics\":{\"num_total_allocated_blocks\":2,\"num_new_allocated_blocks\":2,"       \
    "\"num_reused_blocks\":0,\"num_missed_blocks\":2}}}"

static const char body[] = "[" ENTRY("17", "1000.5", "1000.51", "1000.55", "1000.75") "," ENTRY(
    "3", "1000.0", "1000.0", "1000.125",
    "1000.625") ","
                /* a disaggregated server's combined record: no request_id / timing_metrics at the
                   top */
                "{\"ctx_server\":\"a\",\"gen_server\":\"b\",\"disagg_server_arrival_time\":1.0}"
                "]";

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-6;
}

static void test_parse(void **state)
{
    (void)state;
    struct sb_perf_table t;
    struct sb_err err = {0};
    assert_int_equal(sb_perf_metrics_parse(body, strlen(body), &t, &err), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.e[0].id, "17"); /* sorted as text */
    assert_true(near(t.e[0].queue_ms, 10.0));
    assert_true(near(t.e[0].prompt_ms, 40.0));
    assert_true(near(t.e[0].decode_ms, 200.0));
    assert_string_equal(t.e[1].id, "3");
    assert_true(near(t.e[1].queue_ms, 0.0));
    assert_true(near(t.e[1].prompt_ms, 125.0));
    assert_true(near(t.e[1].decode_ms, 500.0));
    sb_perf_table_release(&t);

    assert_int_equal(sb_perf_metrics_parse("[]", 2, &t, &err), 0);
    assert_int_equal(t.n, 0);
    sb_perf_table_release(&t);
    assert_int_equal(sb_perf_metrics_parse("{\"detail\":\"Not Found\"}", 22, &t, &err), -1);
    assert_non_null(strstr(err.msg, "not a JSON list"));
}

static void test_response_ids(void **state)
{
    (void)state;
    static const struct {
        const char *rid, *want;
    } cases[] = {
        {"chatcmpl-17", "17"},
        {"cmpl-3", "3"},
        {"chatcmpl-9f86d081884c7d659a2feaa0c55ad015", NULL}, /* non-streaming: a uuid */
        {"chatcmpl-", NULL},
        {"", NULL},
        {"resp-17", NULL},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        const char *got = sb_perf_id_of_response(cases[i].rid);
        if (cases[i].want ? !got || strcmp(got, cases[i].want) != 0 : got != NULL)
            fail_msg("'%s': got '%s'", cases[i].rid, got ? got : "(null)");
    }
}

static void test_apply(void **state)
{
    (void)state;
    struct sb_perf_table t;
    struct sb_err err = {0};
    assert_int_equal(sb_perf_metrics_parse(body, strlen(body), &t, &err), 0);
    struct sb_record r;
    sb_record_init(&r);
    snprintf(r.response_id, sizeof(r.response_id), "cmpl-3");
    assert_true(sb_perf_apply(&t, &r));
    assert_true(near(r.server_prompt_ms, 125.0));
    assert_true(near(r.server_decode_ms, 500.0));
    assert_true(near(r.server_queue_ms, 0.0));
    assert_string_equal(r.server_timings_src, "trtllm_perf_metrics");
    sb_record_init(&r);
    snprintf(r.response_id, sizeof(r.response_id), "chatcmpl-4");
    assert_false(sb_perf_apply(&t, &r));
    assert_true(isnan(r.server_prompt_ms));
    sb_perf_table_release(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_response_ids),
        cmocka_unit_test(test_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
