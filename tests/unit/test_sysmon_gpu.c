/*
 * Unit tests for the sysmon gpu source (source_gpu.c), driven through its ops table against the
 * fake NVML of tests/fakes/fake_nvml.c (SB_FAKE_NVML_LIB, steered by FAKE_NVML_* variables): the
 * values of every field, null for a call that failed on one GPU, DGX Spark's NOT_SUPPORTED memory
 * info (null, "unsupported", and not asked again), the v1 memory call when v2 is refused, no
 * object when every call fails, the notes for
 * a missing library, a library without the symbols and a failed nvmlInit, --no-gpu's silence, and
 * nvmlShutdown at close. The test dlopens the fake itself (the same handle as the source's) to
 * read its call counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sysmon.h"

#define GIB (1024.0 * 1024 * 1024)
#define MIB (1024.0 * 1024)

static int (*fake_live)(void);
static long (*fake_calls)(void);
static void *fake_handle;

static int group_setup(void **state)
{
    (void)state;
    fake_handle = dlopen(SB_FAKE_NVML_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!fake_handle) {
        fprintf(stderr, "cannot load the fake NVML: %s\n", dlerror());
        return -1;
    }
    void *live = dlsym(fake_handle, "fake_nvml_live");
    void *calls = dlsym(fake_handle, "fake_nvml_calls");
    if (!live || !calls)
        return -1;
    memcpy(&fake_live, &live, sizeof(live));
    memcpy(&fake_calls, &calls, sizeof(calls));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dlclose(fake_handle);
    return 0;
}

/* Every test starts from a healthy single-GPU fake. */
static int reset_env(void **state)
{
    (void)state;
    unsetenv("FAKE_NVML_INIT");
    unsetenv("FAKE_NVML_COUNT");
    unsetenv("FAKE_NVML_FAIL");
    unsetenv("FAKE_NVML_UNSUPPORTED");
    unsetenv("FAKE_NVML_FAIL_INDEX");
    unsetenv("FAKE_NVML_MEM_V2");
    return 0;
}

static struct sb_sysmon_config fake_cfg(void)
{
    return (struct sb_sysmon_config){.nvml_lib = SB_FAKE_NVML_LIB, .proc_root = "/proc"};
}

/* Samples src once; returns its "gpu" object (the caller deletes *doc), or NULL when the source
 * returned -1 (then it must have appended nothing). */
static const cJSON *sample(struct sb_sysmon_source *src, cJSON **doc)
{
    struct sb_buf out;
    sb_buf_init(&out, 1u << 20);
    sb_buf_adds(&out, "{");
    struct sb_sysmon_tick tick = {.mono_ns = 1000000000ull, .sched_real_ns = 1, .real_ns = 1};
    int rc = src->ops->sample(src, &tick, &out);
    *doc = NULL;
    if (rc != 0) {
        assert_int_equal(rc, -1);
        assert_int_equal(out.len, 1); /* nothing half-written */
        sb_buf_release(&out);
        return NULL;
    }
    sb_buf_adds(&out, "}");
    *doc = cJSON_Parse(out.data);
    if (!*doc)
        fail_msg("unparseable gpu object: %s", out.data);
    sb_buf_release(&out);
    const cJSON *gpu = cJSON_GetObjectItemCaseSensitive(*doc, "gpu");
    assert_non_null(gpu);
    return gpu;
}

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f)
        fail_msg("no field '%s'", key);
    return f;
}

static void assert_num(const cJSON *o, const char *key, double want)
{
    const cJSON *f = field(o, key);
    if (!cJSON_IsNumber(f))
        fail_msg("'%s' is not a number", key);
    if (fabs(f->valuedouble - want) > 1e-6 * (fabs(want) + 1))
        fail_msg("'%s' is %.6f, want %.6f", key, f->valuedouble, want);
}

static void assert_null_field(const cJSON *o, const char *key)
{
    if (!cJSON_IsNull(field(o, key)))
        fail_msg("'%s' should be null", key);
}

static const cJSON *gpu_at(const cJSON *gpu, int i)
{
    const cJSON *gpus = field(gpu, "gpus");
    assert_true(cJSON_IsArray(gpus));
    const cJSON *g = cJSON_GetArrayItem(gpus, i);
    assert_non_null(g);
    return g;
}

/* What fake_nvml.c reports for GPU i when every call succeeds. */
static void assert_healthy_gpu(const cJSON *g, int i)
{
    char name[32];
    snprintf(name, sizeof(name), "Fake GPU %d", i);
    assert_num(g, "index", i);
    assert_string_equal(field(g, "name")->valuestring, name);
    assert_num(g, "util", 40 + 10 * i);
    assert_num(g, "mem_util", 20 + i);
    assert_num(g, "mem_used_bytes", (i + 1) * GIB); /* v2: without the reservation */
    assert_num(g, "mem_total_bytes", 96 * GIB);
    assert_num(g, "mem_reserved_bytes", 512 * MIB);
    assert_num(g, "power_w", 150.5 + i);
    assert_num(g, "temp_c", 50 + i);
    assert_num(g, "sm_clock_mhz", 1500 + 10 * i);
}

static void test_two_gpus(void **state)
{
    (void)state;
    setenv("FAKE_NVML_COUNT", "2", 1);
    struct sb_sysmon_config cfg = fake_cfg();
    struct sb_sysmon_source src = {.ops = &sb_source_gpu};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    assert_int_equal(fake_live(), 1);
    cJSON *doc;
    const cJSON *gpu = sample(&src, &doc);
    assert_non_null(gpu);
    assert_num(gpu, "count", 2);
    assert_num(gpu, "util", 45.0);                 /* mean of 40 and 50 */
    assert_num(gpu, "mem_used_bytes", 3 * GIB);    /* 1 + 2 GiB */
    assert_num(gpu, "mem_total_bytes", 192 * GIB); /* 2 x 96 GiB */
    assert_num(gpu, "power_w", 302.0);             /* 150.5 + 151.5 W (from mW) */
    assert_string_equal(field(gpu, "mem_src")->valuestring, "nvml");
    assert_int_equal(cJSON_GetArraySize(field(gpu, "gpus")), 2);
    assert_healthy_gpu(gpu_at(gpu, 0), 0);
    assert_healthy_gpu(gpu_at(gpu, 1), 1);
    cJSON_Delete(doc);
    src.ops->close(&src);
    assert_int_equal(fake_live(), 0); /* nvmlShutdown at close */
}

/* DGX Spark: GB10 answers NOT_SUPPORTED for memory info. */
static void test_memory_unsupported(void **state)
{
    (void)state;
    setenv("FAKE_NVML_UNSUPPORTED", "mem", 1);
    struct sb_sysmon_config cfg = fake_cfg();
    struct sb_sysmon_source src = {.ops = &sb_source_gpu};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    for (int tick = 0; tick < 2; tick++) {
        long before = fake_calls();
        cJSON *doc;
        const cJSON *gpu = sample(&src, &doc);
        assert_non_null(gpu);
        /* util, power, temp, clock every tick; mem only until it said NOT_SUPPORTED */
        assert_int_equal(fake_calls() - before, tick == 0 ? 5 : 4);
        assert_string_equal(field(gpu, "mem_src")->valuestring, "unsupported");
        assert_null_field(gpu, "mem_used_bytes");
        assert_null_field(gpu, "mem_total_bytes");
        assert_num(gpu, "util", 40);
        assert_num(gpu, "power_w", 150.5);
        const cJSON *g = gpu_at(gpu, 0);
        assert_null_field(g, "mem_used_bytes");
        assert_null_field(g, "mem_total_bytes");
        assert_null_field(g, "mem_reserved_bytes");
        assert_num(g, "util", 40);
        assert_num(g, "temp_c", 50);
        assert_num(g, "sm_clock_mhz", 1500);
        cJSON_Delete(doc);
    }
    src.ops->close(&src);
}

/* A call failing on one GPU: null there (not 0), and the machine-wide figure null too. */
static void test_one_gpu_call_fails(void **state)
{
    (void)state;
    static const struct {
        const char *call;
        const char *gpu_keys[3];
        const char *total_key; /* the aggregate that must turn null */
    } cases[] = {
        {"util", {"util", "mem_util", NULL}, "util"},
        {"mem", {"mem_used_bytes", "mem_total_bytes", "mem_reserved_bytes"}, "mem_used_bytes"},
        {"power", {"power_w", NULL, NULL}, "power_w"},
        {"temp", {"temp_c", NULL, NULL}, NULL},
        {"clock", {"sm_clock_mhz", NULL, NULL}, NULL},
        {"name", {"name", NULL, NULL}, NULL},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        setenv("FAKE_NVML_COUNT", "2", 1);
        setenv("FAKE_NVML_FAIL", cases[c].call, 1);
        setenv("FAKE_NVML_FAIL_INDEX", "1", 1);
        struct sb_sysmon_config cfg = fake_cfg();
        struct sb_sysmon_source src = {.ops = &sb_source_gpu};
        struct sb_err err;
        assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
        cJSON *doc;
        const cJSON *gpu = sample(&src, &doc);
        assert_non_null(gpu);
        assert_healthy_gpu(gpu_at(gpu, 0), 0);
        const cJSON *g1 = gpu_at(gpu, 1);
        for (int k = 0; k < 3 && cases[c].gpu_keys[k]; k++)
            assert_null_field(g1, cases[c].gpu_keys[k]);
        if (cases[c].total_key)
            assert_null_field(gpu, cases[c].total_key);
        /* an error is not NOT_SUPPORTED: the memory still comes from NVML */
        assert_string_equal(field(gpu, "mem_src")->valuestring, "nvml");
        if (strcmp(cases[c].call, "temp") == 0)
            assert_num(gpu, "power_w", 302.0); /* the others are untouched */
        cJSON_Delete(doc);
        src.ops->close(&src);
    }
}

/* A driver whose nvmlDeviceGetMemoryInfo_v2 refuses the struct: v1 from then on, whose used
 * includes the reservation, which is then unknown (null). */
static void test_memory_v1_fallback(void **state)
{
    (void)state;
    setenv("FAKE_NVML_MEM_V2", "mismatch", 1);
    struct sb_sysmon_config cfg = fake_cfg();
    struct sb_sysmon_source src = {.ops = &sb_source_gpu};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    for (int tick = 0; tick < 2; tick++) {
        long before = fake_calls();
        cJSON *doc;
        const cJSON *gpu = sample(&src, &doc);
        assert_non_null(gpu);
        /* v2 is tried once only: util, v2 + v1, power, temp, clock; then v1 alone */
        assert_int_equal(fake_calls() - before, tick == 0 ? 6 : 5);
        assert_num(gpu, "mem_used_bytes", 1 * GIB + 512 * MIB);
        assert_num(gpu, "mem_total_bytes", 96 * GIB);
        assert_string_equal(field(gpu, "mem_src")->valuestring, "nvml");
        assert_num(gpu_at(gpu, 0), "mem_used_bytes", 1 * GIB + 512 * MIB);
        assert_null_field(gpu_at(gpu, 0), "mem_reserved_bytes");
        cJSON_Delete(doc);
    }
    src.ops->close(&src);
}

static void test_every_call_fails(void **state)
{
    (void)state;
    setenv("FAKE_NVML_COUNT", "2", 1);
    setenv("FAKE_NVML_FAIL", "all", 1);
    struct sb_sysmon_config cfg = fake_cfg();
    struct sb_sysmon_source src = {.ops = &sb_source_gpu};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    cJSON *doc;
    assert_null(sample(&src, &doc)); /* -1: the line lacks "gpu" this tick */
    /* it recovers the next tick */
    unsetenv("FAKE_NVML_FAIL");
    const cJSON *gpu = sample(&src, &doc);
    assert_non_null(gpu);
    assert_num(gpu, "count", 2);
    assert_num(gpu, "util", 45.0);
    cJSON_Delete(doc);
    src.ops->close(&src);
}

/* open returns 1 with a note that says why (or none for --no-gpu), holding nothing. */
static void test_not_available(void **state)
{
    (void)state;
    static const struct {
        const char *lib;
        const char *init;  /* FAKE_NVML_INIT */
        const char *count; /* FAKE_NVML_COUNT */
        bool no_gpu;
        const char *note[2]; /* substrings the note must hold; {NULL}: empty note */
    } cases[] = {
        {"/nonexistent/libnvidia-ml.so.1",
         NULL,
         NULL,
         false,
         {"NVML not available (", "/nonexistent/libnvidia-ml.so.1"}},
        {SB_FAKE_NVML_LIB, "fail", NULL, false, {"NVML not available (", "Driver Not Loaded"}},
        {SB_FAKE_NVML_LIB, NULL, "0", false, {"no usable GPU", NULL}},
        {"libc.so.6", NULL, NULL, false, {"NVML not available (", "lacks nvmlInit_v2"}},
        {SB_FAKE_NVML_LIB, NULL, NULL, true, {NULL, NULL}},                 /* --no-gpu */
        {"/nonexistent/libnvidia-ml.so.1", NULL, NULL, true, {NULL, NULL}}, /* --no-gpu */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        reset_env(NULL);
        if (cases[c].init)
            setenv("FAKE_NVML_INIT", cases[c].init, 1);
        if (cases[c].count)
            setenv("FAKE_NVML_COUNT", cases[c].count, 1);
        struct sb_sysmon_config cfg = fake_cfg();
        cfg.nvml_lib = (char *)cases[c].lib;
        cfg.no_gpu = cases[c].no_gpu;
        struct sb_sysmon_source src = {.ops = &sb_source_gpu};
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(src.ops->open(&src, &cfg, &err), 1);
        assert_null(src.state);           /* nothing for close to release */
        assert_int_equal(fake_live(), 0); /* an nvmlInit that worked was shut down */
        if (!cases[c].note[0]) {
            assert_string_equal(src.note, "");
            continue;
        }
        for (int k = 0; k < 2 && cases[c].note[k]; k++)
            if (!strstr(src.note, cases[c].note[k]))
                fail_msg("case %zu: note '%s' lacks '%s'", c, src.note, cases[c].note[k]);
    }
}

/* Without --nvml-lib the source asks for libnvidia-ml.so.1: absent here, or a real GPU. */
static void test_default_library(void **state)
{
    (void)state;
    struct sb_sysmon_config cfg = {.proc_root = "/proc"};
    struct sb_sysmon_source src = {.ops = &sb_source_gpu};
    struct sb_err err;
    int rc = src.ops->open(&src, &cfg, &err);
    if (rc == 1) {
        assert_non_null(strstr(src.note, "libnvidia-ml.so.1"));
        return;
    }
    assert_int_equal(rc, 0);
    cJSON *doc;
    const cJSON *gpu = sample(&src, &doc);
    if (gpu) {
        assert_true(field(gpu, "count")->valuedouble >= 1);
        cJSON_Delete(doc);
    }
    src.ops->close(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_two_gpus, reset_env),
        cmocka_unit_test_setup(test_memory_unsupported, reset_env),
        cmocka_unit_test_setup(test_one_gpu_call_fails, reset_env),
        cmocka_unit_test_setup(test_memory_v1_fallback, reset_env),
        cmocka_unit_test_setup(test_every_call_fails, reset_env),
        cmocka_unit_test_setup(test_not_available, reset_env),
        cmocka_unit_test_setup(test_default_library, reset_env),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
