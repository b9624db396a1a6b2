/*
 * Every run config shipped in configs/<name>.yaml (the stack x model files; configs/mock/,
 * configs/fio/ and configs/engine/ hold other formats) loads, drives a one-second `sparkbench run`
 * against the mock, and is recorded in the run's config.yaml: each option read back from
 * config.yaml equals the file's, except the ones the test sets by flag. The stack files also carry
 * what the runners and analyze rely on: the stack letter of their name, the endpoint port of their
 * stack, and each stack's telemetry (TensorRT-LLM's JSON /metrics on A; KVBM's :6880 and the Dynamo
 * frontend's /metrics on B).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "sb/opt.h"
#include "sb/run.h"

static const char *bin;
static const char *srcdir;

/* Set by flag in the test's runs: their recorded values are the flags', not the file's. */
static const char *const overridden[] = {"run.id",          "server.endpoint", "run.duration_s",
                                         "run.warmup_s",    "run.output_dir",  "run.prompts_dir",
                                         "telemetry.sysmon"};

static bool is_overridden(const char *key)
{
    for (size_t i = 0; i < sizeof(overridden) / sizeof(overridden[0]); i++)
        if (strcmp(key, overridden[i]) == 0)
            return true;
    return false;
}

static void load(const char *path, struct sb_run_config *cfg)
{
    struct sb_err err;
    sb_err_clear(&err);
    memset(cfg, 0, sizeof(*cfg));
    if (sb_opt_defaults(sb_run_options, sb_run_noptions, cfg, &err) != 0 ||
        sb_opt_load_yaml(sb_run_options, sb_run_noptions, cfg, path, &err) != 0)
        fail_msg("%s", err.msg);
}

#define FIELD(obj, o, T) (*(T *)((char *)(obj) + (o)->offset))

/* Compares every YAML option of the two configs but the overridden ones; fails naming the file,
   the key and both values. */
static void compare(const char *file, struct sb_run_config *want, struct sb_run_config *got)
{
    for (size_t i = 0; i < sb_run_noptions; i++) {
        const struct sb_opt *o = &sb_run_options[i];
        if (!o->key || (o->flags & SB_OPT_SECRET) || is_overridden(o->key))
            continue;
        switch (o->type) {
        case SB_OPT_BOOL:
            if (FIELD(want, o, bool) != FIELD(got, o, bool))
                fail_msg("%s: %s is %d in the file, %d in config.yaml", file, o->key,
                         FIELD(want, o, bool), FIELD(got, o, bool));
            break;
        case SB_OPT_INT:
            if (FIELD(want, o, long long) != FIELD(got, o, long long))
                fail_msg("%s: %s is %lld in the file, %lld in config.yaml", file, o->key,
                         FIELD(want, o, long long), FIELD(got, o, long long));
            break;
        case SB_OPT_DOUBLE:
            if (FIELD(want, o, double) != FIELD(got, o, double))
                fail_msg("%s: %s is %g in the file, %g in config.yaml", file, o->key,
                         FIELD(want, o, double), FIELD(got, o, double));
            break;
        case SB_OPT_SIZE:
            if (FIELD(want, o, uint64_t) != FIELD(got, o, uint64_t))
                fail_msg("%s: %s is %llu in the file, %llu in config.yaml", file, o->key,
                         (unsigned long long)FIELD(want, o, uint64_t),
                         (unsigned long long)FIELD(got, o, uint64_t));
            break;
        case SB_OPT_ENUM:
            if (FIELD(want, o, int) != FIELD(got, o, int))
                fail_msg("%s: %s is #%d in the file, #%d in config.yaml", file, o->key,
                         FIELD(want, o, int), FIELD(got, o, int));
            break;
        case SB_OPT_STR:
        case SB_OPT_LIST:
        case SB_OPT_JSON: {
            /* an absent list or mapping is written as [] or {} */
            const char *none = o->type == SB_OPT_JSON ? "{}" : o->type == SB_OPT_LIST ? "" : NULL;
            const char *a = FIELD(want, o, char *), *b = FIELD(got, o, char *);
            if (none) {
                a = a ? a : none;
                b = b ? b : none;
            }
            if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
                fail_msg("%s: %s is '%s' in the file, '%s' in config.yaml", file, o->key,
                         a ? a : "(none)", b ? b : "(none)");
            break;
        }
        }
    }
}

/* The path of an http URL ("/v1/chat/completions"), or "" for none. */
static const char *url_path(const char *url)
{
    const char *p = url ? strstr(url, "://") : NULL;
    p = p ? strchr(p + 3, '/') : NULL;
    return p ? p : "";
}

static bool list_has(const char *list, const char *needle)
{
    return list && strstr(list, needle) != NULL;
}

/* What a stack file must say for the runners and analyze: stack letter, port, telemetry. */
static void check_stack_file(const char *name, const struct sb_run_config *c)
{
    bool a = strncmp(name, "stackA_", 7) == 0, b = strncmp(name, "stackB_", 7) == 0;
    if (!a && !b)
        return;
    if (!c->stack || strcmp(c->stack, a ? "A" : "B") != 0)
        fail_msg("%s: run.stack is '%s', not %s", name, c->stack ? c->stack : "", a ? "A" : "B");
    if (!c->endpoint || !strstr(c->endpoint, a ? ":8355/" : ":9000/"))
        fail_msg("%s: endpoint '%s' is not on the stack's port (%s)", name,
                 c->endpoint ? c->endpoint : "", a ? "8355" : "9000");
    if (strstr(name, "llama70b") && (!c->model || !strstr(c->model, "70B")))
        fail_msg("%s: model '%s' is not the 70B", name, c->model ? c->model : "");
    if (strstr(name, "llama8b") && (!c->model || !strstr(c->model, "8B")))
        fail_msg("%s: model '%s' is not the 8B", name, c->model ? c->model : "");
    if (!strstr(name, "llama"))
        return; /* the older stackA_baseline / stackB_h2b predate the telemetry keys */
    if (a && (!c->trtllm_url || strcmp(c->trtllm_url, "http://127.0.0.1:8355/metrics") != 0))
        fail_msg("%s: telemetry.trtllm_metrics is '%s'", name, c->trtllm_url ? c->trtllm_url : "");
    if (b && (!list_has(c->prom_urls, "http://127.0.0.1:6880/metrics") ||
              !list_has(c->prom_urls, "http://127.0.0.1:9000/metrics") || !c->enable_dynkv))
        fail_msg("%s: telemetry.prom '%s' lacks KVBM :6880 or the frontend's :9000/metrics, or "
                 "enable_dynkv is off",
                 name, c->prom_urls ? c->prom_urls : "");
    if (b && (c->tier0_capacity_bytes == 0 || c->tier1_capacity_bytes < c->tier0_capacity_bytes ||
              c->tier2_allocate_bytes < c->tier1_capacity_bytes || !c->tier2_path))
        fail_msg("%s: KVBM needs tier0 <= tier1 <= tier2 and a tier-2 path", name);
}

static void test_shipped_run_configs(void **state)
{
    (void)state;
    char pattern[600];
    snprintf(pattern, sizeof(pattern), "%s/configs/*.yaml", srcdir);
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    /* The four stack x model files the runners and the README name are there. */
    static const char *const must[] = {"stackA_llama70b.yaml", "stackA_llama8b.yaml",
                                       "stackB_llama70b.yaml", "stackB_llama8b.yaml"};
    for (size_t m = 0; m < sizeof(must) / sizeof(must[0]); m++) {
        bool found = false;
        for (size_t i = 0; i < g.gl_pathc; i++)
            found |= strcmp(strrchr(g.gl_pathv[i], '/') + 1, must[m]) == 0;
        if (!found)
            fail_msg("configs/%s is missing", must[m]);
    }

    struct sb_proc mock;
    const char *margs[] = {"--prefill-base-ms",
                           "0",
                           "--prefill-per-token-us",
                           "0",
                           "--decode-base-ms",
                           "1",
                           "--served-model-name",
                           "meta-llama/Llama-3.1-8B-Instruct,nvidia/Llama-3.3-70B-Instruct-FP4",
                           NULL};
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *dir = sb_test_tmpdir("/tmp", "configs");
    char prompts[512];
    snprintf(prompts, sizeof(prompts), "%s/inputs/prompts", srcdir);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *file = g.gl_pathv[i], *name = strrchr(file, '/') + 1;
        struct sb_run_config want, got;
        load(file, &want);
        check_stack_file(name, &want);
        char url[256], out_dir[700], recorded[800], mpath[800];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", mock.port, url_path(want.endpoint));
        snprintf(out_dir, sizeof(out_dir), "%s/%s", dir, name);
        snprintf(recorded, sizeof(recorded), "%s/config.yaml", out_dir);
        snprintf(mpath, sizeof(mpath), "%s/metrics.jsonl", out_dir);
        /* sysmon off: its scrapes of the real stacks' ports are not what is tested here */
        const char *argv[] = {bin,
                              "run",
                              "--config",
                              file,
                              "--endpoint",
                              url,
                              "--duration-s",
                              "1",
                              "--warmup-s",
                              "0",
                              "--no-sysmon",
                              "--output-dir",
                              out_dir,
                              "--prompts-dir",
                              prompts,
                              "--quiet",
                              NULL};
        char *out = NULL, *err = NULL;
        int rc = sb_proc_run(argv, &out, &err);
        if (rc != 0)
            fail_msg("%s: sparkbench run exited %d: %s", name, rc, err);
        free(out);
        free(err);
        int n = 0;
        cJSON **l = sb_test_read_jsonl(mpath, &n);
        if (n < 1 || !sb_test_true(l[0], "ok"))
            fail_msg("%s: no successful request in %s", name, mpath);
        assert_string_equal(sb_test_str(l[0], "stack"), want.stack);
        assert_string_equal(sb_test_str(l[0], "model"), want.model);
        sb_test_free_jsonl(l, n);
        load(recorded, &got);
        compare(name, &want, &got);
        assert_int_equal((int)got.duration_s, 1); /* the flag won over the file */
        sb_opt_release(sb_run_options, sb_run_noptions, &want);
        sb_opt_release(sb_run_options, sb_run_noptions, &got);
    }
    globfree(&g);
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
        cmocka_unit_test(test_shipped_run_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
