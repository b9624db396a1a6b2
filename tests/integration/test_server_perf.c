/*
 * Integration test of --server-perf-metrics against a scripted trtllm-serve: its streamed
 * completions say "id":"cmpl-<executor request id>" (NVIDIA/TensorRT-LLM
 * tensorrt_llm/serve/postprocess_handlers.py _ensure_stream_metadata) and GET /perf_metrics answers
 * the list openai_server.py get_perf_metrics writes ({"request_id": <int>, "perf_metrics":
 * {"timing_metrics": {arrival_time, first_scheduled_time, first_token_time, last_token_time}, ...}}
 * in steady-clock seconds). After the run the records whose id an entry names carry the server's
 * queue, prefill and decode times; the one it does not name stays null; run.json counts the join.
 * A non-streaming run (random uuid ids, as TensorRT-LLM's ChatCompletionResponse default) joins
 * nothing, says so, and still exits 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

static char resp[8192];
static atomic_int posts;
static atomic_bool streaming; /* what the run under test asks for (the head holds no body) */

static const char *reply(int status, const char *ctype, const char *body)
{
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", status,
             status == 200 ? "OK" : "Not Found", ctype, strlen(body), body);
    return resp;
}

#define ENTRY(id, arr, sch, ft, lt)                                                                \
    "{\"request_id\":" id ",\"perf_metrics\":{\"first_iter\":3,\"last_iter\":19,"                  \
    "\"timing_metrics\":{\"server_arrival_time\":null,\"arrival_time\":" arr                       \
    ",\"first_scheduled_time\":" sch ",\"first_token_time\":" ft                                   \
    ",\"server_first_token_time\":null,\"last_token_time\":" lt "},"                               \
    "\"kv_cache_metrics\":{\"num_total_allocated_blocks\":2,\"num_new_allocated_blocks\":2,"       \
    "\"num_reused_blocks\":0,\"num_missed_blocks\":2}}}"

static const char perf_body[] =
    "[" ENTRY("17", "5000.5", "5000.51", "5000.55",
              "5000.75") "," ENTRY("18", "5001.0", "5001.0", "5001.125", "5001.625") "]";

static const char *respond(struct sb_script_server *s, const char *head)
{
    (void)s;
    char b[2048];
    if (strncmp(head, "POST /v1/completions ", 21) == 0) {
        int id = 17 + atomic_fetch_add(&posts, 1);
        if (!atomic_load(&streaming)) {
            snprintf(
                b, sizeof(b),
                "{\"id\":\"cmpl-9f86d081884c7d659a2feaa0c55ad015\",\"object\":"
                "\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
                "\"text\":\"hi\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":5,"
                "\"completion_tokens\":1,\"total_tokens\":6}}");
            return reply(200, "application/json", b);
        }
        snprintf(b, sizeof(b),
                 "data: {\"id\":\"cmpl-%d\",\"object\":\"text_completion\",\"created\":1,\"model\":"
                 "\"m\",\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":null}]}\n\n"
                 "data: {\"id\":\"cmpl-%d\",\"object\":\"text_completion\",\"created\":1,\"model\":"
                 "\"m\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"
                 "data: {\"id\":\"cmpl-%d\",\"object\":\"text_completion\",\"created\":1,\"model\":"
                 "\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,"
                 "\"total_tokens\":6}}\n\ndata: [DONE]\n\n",
                 id, id, id);
        return reply(200, "text/event-stream", b);
    }
    if (strncmp(head, "GET /perf_metrics ", 18) == 0)
        return reply(200, "application/json", perf_body);
    return reply(404, "application/json", "{\"detail\":\"Not Found\"}");
}

struct fixture {
    struct sb_script_server srv;
    char *dir;
    char out[512], url[160], prompts[512], path[700];
};

static void fixture_start(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    atomic_store(&posts, 0);
    fx->srv.respond = respond;
    fx->srv.backlog = 16;
    assert_int_equal(sb_script_server_start(&fx->srv), 0);
    fx->dir = sb_test_tmpdir("/tmp", "perf");
    snprintf(fx->out, sizeof(fx->out), "%s/run", fx->dir);
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/v1/completions", fx->srv.port);
    snprintf(fx->prompts, sizeof(fx->prompts), "%s/inputs/prompts", srcdir);
}

static void fixture_stop(struct fixture *fx)
{
    sb_script_server_stop(&fx->srv);
    sb_test_rm_rf(fx->dir);
    free(fx->dir);
}

static int run(struct fixture *fx, const char *stream_flag, char **out, char **err)
{
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          fx->url,
                          "--output-dir",
                          fx->out,
                          "--prompts-dir",
                          fx->prompts,
                          "--requests",
                          "3",
                          "--server-perf-metrics",
                          stream_flag,
                          NULL};
    return sb_proc_run_limit(argv, out, err, 60);
}

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-3;
}

static void test_streamed_records_joined(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx);
    char *out = NULL, *err = NULL;
    atomic_store(&streaming, true);
    int rc = run(&fx, "--stream", &out, &err);
    print_message("rc %d\n%s\n%s\n", rc, out, err);
    assert_int_equal(rc, 0);
    snprintf(fx.path, sizeof(fx.path), "%s/metrics.jsonl", fx.out);
    int n = 0;
    cJSON **v = sb_test_read_jsonl(fx.path, &n);
    assert_int_equal(n, 3);
    int joined = 0;
    for (int i = 0; i < n; i++) {
        const char *rid = sb_test_str(v[i], "response_id");
        assert_non_null(rid);
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(v[i], "server_timings_src");
        double pms = sb_test_num(v[i], "server_prompt_ms");
        double qms = sb_test_num(v[i], "server_queue_ms");
        double dms = sb_test_num(v[i], "server_decode_ms");
        if (strcmp(rid, "cmpl-17") == 0) {
            assert_true(near(qms, 10.0) && near(pms, 40.0) && near(dms, 200.0));
            assert_string_equal(src->valuestring, "trtllm_perf_metrics");
            joined++;
        } else if (strcmp(rid, "cmpl-18") == 0) {
            assert_true(near(qms, 0.0) && near(pms, 125.0) && near(dms, 500.0));
            joined++;
        } else {
            assert_string_equal(rid, "cmpl-19");
            assert_true(isnan(pms) && isnan(dms));
            assert_true(cJSON_IsNull(src));
        }
    }
    assert_int_equal(joined, 2);
    sb_test_free_jsonl(v, n);
    snprintf(fx.path, sizeof(fx.path), "%s/run.json", fx.out);
    cJSON *j = sb_test_read_json(fx.path);
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(j, "server_perf_metrics");
    assert_non_null(pm);
    assert_true(sb_test_num(pm, "entries") == 2);
    assert_true(sb_test_num(pm, "records") == 3);
    assert_true(sb_test_num(pm, "matched") == 2);
    cJSON_Delete(j);
    assert_non_null(strstr(out, "2 of 3 records joined"));
    free(out);
    free(err);
    fixture_stop(&fx);
}

static void test_non_streaming_joins_nothing(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx);
    char *out = NULL, *err = NULL;
    atomic_store(&streaming, false);
    int rc = run(&fx, "--no-stream", &out, &err);
    print_message("rc %d\n%s\n%s\n", rc, out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(err, "no entry matched"));
    snprintf(fx.path, sizeof(fx.path), "%s/run.json", fx.out);
    cJSON *j = sb_test_read_json(fx.path);
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(j, "server_perf_metrics");
    assert_true(sb_test_num(pm, "matched") == 0);
    assert_true(sb_test_num(pm, "records") == 3);
    cJSON_Delete(j);
    free(out);
    free(err);
    fixture_stop(&fx);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    bin = argv[1];
    srcdir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_records_joined),
        cmocka_unit_test(test_non_streaming_joins_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
