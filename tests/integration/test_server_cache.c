/*
 * Integration tests of the server-cache state and reset around a run (issue: a llama.cpp server's
 * slots kept 4,082 tokens after 4096-token runs and a following 128-token run decoded 7x slower):
 * run.json records the server's KV cache usage at start and end, and --reset-cache clears it
 * through the server's own endpoint before measuring — vLLM's POST /reset_prefix_cache,
 * SGLang's POST /flush_cache, llama.cpp's POST /slots/<id>?action=erase for every slot GET /slots
 * lists — or --reset-cache-cmd. Scripted servers answer as those servers do (routes and bodies
 * from their docs, see sb/server_cache.h); the built-in mock's own series are read too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "script_server.h"

static const char *bin;
static const char *srcdir;

static const char completion_body[] =
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"text\":\"hi\",\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}";

/* Which server the scripted one plays. */
enum flavour { VLLM, LLAMACPP, NONE };

static char resp[4096];

static const char *reply(int status, const char *ctype, const char *body)
{
    const char *reason = status == 200 ? "OK" : "Not Found";
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", status, reason,
             ctype, strlen(body), body);
    return resp;
}

static const char *not_found(void)
{
    return reply(404, "application/json", "{\"error\":{\"message\":\"Not Found\",\"code\":404}}");
}

static bool starts(const char *head, const char *line)
{
    return strncmp(head, line, strlen(line)) == 0;
}

static const char *respond(struct sb_script_server *s, const char *head)
{
    enum flavour f = *(const enum flavour *)s->arg;
    if (starts(head, "POST /v1/completions "))
        return reply(200, "application/json", completion_body);
    if (f == VLLM) {
        if (starts(head, "POST /reset_prefix_cache "))
            return reply(200, "application/json", "{}");
        if (starts(head, "GET /metrics "))
            return reply(200, "text/plain; version=0.0.4",
                         "# TYPE vllm:kv_cache_usage_perc gauge\n"
                         "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\n");
    }
    if (f == LLAMACPP) {
        if (starts(head, "GET /slots "))
            return reply(200, "application/json",
                         "[{\"id\":0,\"id_task\":-1,\"n_ctx\":4096,\"is_processing\":false},"
                         "{\"id\":1,\"id_task\":-1,\"n_ctx\":4096,\"is_processing\":false}]");
        if (starts(head, "POST /slots/0?action=erase "))
            return reply(200, "application/json", "{\"id_slot\":0,\"n_erased\":4082}");
        if (starts(head, "POST /slots/1?action=erase "))
            return reply(200, "application/json", "{\"id_slot\":1,\"n_erased\":0}");
        if (starts(head, "GET /metrics "))
            return reply(200, "text/plain; version=0.0.4",
                         "# TYPE llamacpp:kv_cache_usage_ratio gauge\n"
                         "llamacpp:kv_cache_usage_ratio 0.4982\n"
                         "# TYPE llamacpp:kv_cache_tokens gauge\n"
                         "llamacpp:kv_cache_tokens 4082\n");
    }
    return not_found();
}

struct fixture {
    struct sb_script_server srv;
    enum flavour f;
    char *dir;
    char out[512], url[160], prompts[512], runjson[600];
};

static void fixture_start(struct fixture *fx, enum flavour f)
{
    memset(fx, 0, sizeof(*fx));
    fx->f = f;
    fx->srv.respond = respond;
    fx->srv.arg = &fx->f;
    fx->srv.backlog = 16;
    assert_int_equal(sb_script_server_start(&fx->srv), 0);
    fx->dir = sb_test_tmpdir("/tmp", "cache");
    snprintf(fx->out, sizeof(fx->out), "%s/run", fx->dir);
    snprintf(fx->runjson, sizeof(fx->runjson), "%s/run.json", fx->out);
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d/v1/completions", fx->srv.port);
    snprintf(fx->prompts, sizeof(fx->prompts), "%s/inputs/prompts", srcdir);
}

static void fixture_stop(struct fixture *fx)
{
    sb_script_server_stop(&fx->srv);
    sb_test_rm_rf(fx->dir);
    free(fx->dir);
}

static int run(struct fixture *fx, const char *extra1, const char *extra2, char **out, char **err)
{
    const char *argv[] = {bin,     "run",           "--endpoint", fx->url,       "--output-dir",
                          fx->out, "--prompts-dir", fx->prompts,  "--no-stream", "--requests",
                          "2",     extra1,          extra2,       NULL};
    return sb_proc_run_limit(argv, out, err, 60);
}

static const cJSON *at(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

static void test_vllm_reset_and_state(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, VLLM);
    char *out = NULL, *err = NULL;
    int rc = run(&fx, "--reset-cache", NULL, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    cJSON *rj = sb_test_read_json(fx.runjson);
    const cJSON *sc = at(rj, "server_cache", NULL);
    assert_non_null(sc);
    assert_string_equal(at(sc, "reset", "method")->valuestring, "vllm");
    assert_true(cJSON_IsTrue(at(sc, "reset", "done")));
    assert_string_equal(at(sc, "start", "source")->valuestring, "vllm");
    assert_true(at(sc, "start", "usage_ratio")->valuedouble == 0.25);
    assert_true(at(sc, "end", "usage_ratio")->valuedouble == 0.25);
    /* The reset went out before the first measured request. */
    print_message("vLLM requests:\n%s", fx.srv.log);
    const char *reset = strstr(fx.srv.log, "POST /reset_prefix_cache");
    const char *first = strstr(fx.srv.log, "POST /v1/completions");
    assert_non_null(reset);
    assert_non_null(first);
    assert_true(reset < first);
    cJSON_Delete(rj);
    free(out);
    free(err);
    fixture_stop(&fx);
}

static void test_llamacpp_slots_erased(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, LLAMACPP);
    char *out = NULL, *err = NULL;
    int rc = run(&fx, "--reset-cache", NULL, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    print_message("llama.cpp requests:\n%s", fx.srv.log);
    cJSON *rj = sb_test_read_json(fx.runjson);
    const cJSON *sc = at(rj, "server_cache", NULL);
    assert_string_equal(at(sc, "reset", "method")->valuestring, "llamacpp");
    assert_true(cJSON_IsTrue(at(sc, "reset", "done")));
    assert_non_null(strstr(fx.srv.log, "POST /slots/0?action=erase"));
    assert_non_null(strstr(fx.srv.log, "POST /slots/1?action=erase"));
    assert_true(strstr(fx.srv.log, "POST /slots/1?action=erase") <
                strstr(fx.srv.log, "POST /v1/completions"));
    /* What the run inherited: the slots' tokens as the server's metrics say. */
    assert_string_equal(at(sc, "start", "source")->valuestring, "llamacpp");
    assert_true(at(sc, "start", "cached_tokens")->valuedouble == 4082);
    cJSON_Delete(rj);
    free(out);
    free(err);
    fixture_stop(&fx);
}

static void test_no_reset_endpoint(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, NONE);
    char *out = NULL, *err = NULL;
    int rc = run(&fx, "--reset-cache", NULL, &out, &err);
    print_message("no endpoint: exit %d: %s", rc, err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "--reset-cache-cmd"));
    struct stat st;
    assert_int_not_equal(stat(fx.out, &st), 0); /* nothing measured, nothing left behind */
    assert_null(strstr(fx.srv.log, "POST /v1/completions"));
    free(out);
    free(err);

    /* A command does it instead; what was done is recorded. */
    char cmd[700], mark[600];
    snprintf(mark, sizeof(mark), "%s/reset-ran", fx.dir);
    snprintf(cmd, sizeof(cmd), "--reset-cache-cmd=touch '%s'", mark);
    rc = run(&fx, cmd, NULL, &out, &err);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    assert_int_equal(stat(mark, &st), 0);
    cJSON *rj = sb_test_read_json(fx.runjson);
    assert_string_equal(at(at(rj, "server_cache", NULL), "reset", "method")->valuestring,
                        "command");
    /* No /metrics here: the state says why it is unknown. */
    assert_true(cJSON_IsNull(at(at(rj, "server_cache", NULL), "start", "usage_ratio")));
    assert_non_null(strstr(at(at(rj, "server_cache", NULL), "start", "error")->valuestring, "404"));
    cJSON_Delete(rj);
    free(out);
    free(err);
    fixture_stop(&fx);
}

static void test_mock_state(void **state)
{
    (void)state;
    const char *margs[] = {"--tier0-blocks", "64", "--kv-block-tokens", "16", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "cachemock");
    char outd[512], url[160], prompts[512], rjp[600];
    snprintf(outd, sizeof(outd), "%s/run", dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/completions", mock.port);
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    snprintf(rjp, sizeof(rjp), "%s/run.json", outd);
    const char *argv[] = {bin,
                          "run",
                          "--endpoint",
                          url,
                          "--output-dir",
                          outd,
                          "--prompts-dir",
                          prompts,
                          "--requests",
                          "3",
                          "--context-tokens",
                          "256",
                          "--quiet",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sb_proc_run_limit(argv, &out, &err, 60);
    if (rc != 0)
        fail_msg("run exited %d: %s", rc, err);
    cJSON *rj = sb_test_read_json(rjp);
    const cJSON *sc = at(rj, "server_cache", NULL);
    assert_string_equal(at(sc, "start", "source")->valuestring, "mock");
    double u0 = at(sc, "start", "usage_ratio")->valuedouble;
    double u1 = at(sc, "end", "usage_ratio")->valuedouble;
    print_message("mock tier 0 usage: %.3f before, %.3f after\n", u0, u1);
    assert_true(u0 == 0);
    assert_true(u1 > 0); /* the run's prompt stays cached after it: the next run inherits it */
    cJSON_Delete(rj);
    free(out);
    free(err);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_reset_and_state),
        cmocka_unit_test(test_llamacpp_slots_erased),
        cmocka_unit_test(test_no_reset_endpoint),
        cmocka_unit_test(test_mock_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
