/*
 * sysmon source "gpu": per-GPU utilisation, memory, power, temperature and SM clock through NVML,
 * dlopen'ed at run time (no build dependency on CUDA; the declarations are in sb/nvml_min.h), so
 * one binary runs on GPU and GPU-less machines alike. A call that fails for one GPU in one tick
 * makes that field null there, never 0. A call that answers NOT_SUPPORTED is not asked again: on
 * DGX Spark's GB10 the memory info is such a call (its memory is the host's, which the mem source
 * reports), so the memory fields are null and "mem_src" says "unsupported". The machine-wide
 * figures (mean util, summed memory and power) are null unless every GPU gave its part, since a
 * sum over some GPUs would read as a drop. Memory comes from nvmlDeviceGetMemoryInfo_v2 when the
 * driver has it: its "used" leaves out the driver's reservation, as nvidia-smi's memory.used does,
 * and the reservation is "mem_reserved_bytes"; older drivers give the v1 "used", reservation
 * included, and a null reservation.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/nvml_min.h"
#include "sb/sysmon.h"

#define DEFAULT_LIB "libnvidia-ml.so.1"
#define MAX_GPUS    64

struct nvml_api {
    sb_nvmlInit_v2_fn *init;
    sb_nvmlShutdown_fn *shutdown;
    sb_nvmlErrorString_fn *error_string;
    sb_nvmlDeviceGetCount_v2_fn *get_count;
    sb_nvmlDeviceGetHandleByIndex_v2_fn *get_handle;
    sb_nvmlDeviceGetName_fn *get_name;
    sb_nvmlDeviceGetUtilizationRates_fn *get_util;
    sb_nvmlDeviceGetMemoryInfo_fn *get_mem;
    sb_nvmlDeviceGetMemoryInfo_v2_fn *get_mem_v2; /* NULL: a driver before R510 */
    sb_nvmlDeviceGetPowerUsage_fn *get_power;
    sb_nvmlDeviceGetTemperature_fn *get_temp;
    sb_nvmlDeviceGetClockInfo_fn *get_clock;
};

/* The symbols looked up, with where each goes in struct nvml_api. */
static const struct {
    const char *name;
    size_t off;
} nvml_symbols[] = {
    {"nvmlInit_v2", offsetof(struct nvml_api, init)},
    {"nvmlShutdown", offsetof(struct nvml_api, shutdown)},
    {"nvmlErrorString", offsetof(struct nvml_api, error_string)},
    {"nvmlDeviceGetCount_v2", offsetof(struct nvml_api, get_count)},
    {"nvmlDeviceGetHandleByIndex_v2", offsetof(struct nvml_api, get_handle)},
    {"nvmlDeviceGetName", offsetof(struct nvml_api, get_name)},
    {"nvmlDeviceGetUtilizationRates", offsetof(struct nvml_api, get_util)},
    {"nvmlDeviceGetMemoryInfo", offsetof(struct nvml_api, get_mem)},
    {"nvmlDeviceGetPowerUsage", offsetof(struct nvml_api, get_power)},
    {"nvmlDeviceGetTemperature", offsetof(struct nvml_api, get_temp)},
    {"nvmlDeviceGetClockInfo", offsetof(struct nvml_api, get_clock)},
};

/* The per-tick calls of one GPU. */
enum gpu_call { CALL_UTIL, CALL_MEM, CALL_POWER, CALL_TEMP, CALL_CLOCK, NCALLS };

struct gpu_dev {
    unsigned index; /* NVML's */
    nvmlDevice_t handle;
    char name[SB_NVML_DEVICE_NAME_SIZE]; /* "" when NVML would not say */
    bool unsupported[NCALLS];            /* answered NOT_SUPPORTED once: not asked again */
    bool mem_v1;                         /* the v2 memory call is refused: use v1 */
    /* this tick's readings; ok[c] says whether call c gave one */
    bool ok[NCALLS];
    nvmlUtilization_t util;
    nvmlMemory_t mem;
    unsigned long long mem_reserved;
    bool have_reserved;
    unsigned power_mw, temp_c, sm_mhz;
};

struct gpu_state {
    void *lib;
    struct nvml_api api;
    bool inited; /* nvmlInit_v2 succeeded: nvmlShutdown is owed */
    unsigned ndev;
    struct gpu_dev dev[MAX_GPUS];
};

static const char *nvml_strerror(const struct gpu_state *st, nvmlReturn_t rc)
{
    const char *s = st->api.error_string ? st->api.error_string(rc) : NULL;
    return s ? s : "unknown error";
}

static void gpu_release(struct gpu_state *st)
{
    if (st->inited)
        st->api.shutdown();
    if (st->lib)
        dlclose(st->lib);
    free(st);
}

/* gcc -fanalyzer: GCC 12 takes the memcpy of &sym, just assigned from dlsym(), for a read of
   uninitialised memory */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-use-of-uninitialized-value"
static int gpu_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                    struct sb_err *err)
{
    if (cfg->no_gpu)
        return 1; /* turned off: no notice */
    const char *path = cfg->nvml_lib && *cfg->nvml_lib ? cfg->nvml_lib : DEFAULT_LIB;
    struct gpu_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!st->lib) {
        const char *why = dlerror();
        snprintf(src->note, sizeof(src->note), "NVML not available (%.200s)", why ? why : path);
        goto off;
    }
    for (size_t i = 0; i < sizeof(nvml_symbols) / sizeof(nvml_symbols[0]); i++) {
        void *sym = dlsym(st->lib, nvml_symbols[i].name);
        if (!sym) {
            snprintf(src->note, sizeof(src->note), "NVML not available ('%.120s' lacks %s)", path,
                     nvml_symbols[i].name);
            goto off;
        }
        /* POSIX guarantees a data pointer from dlsym converts to the function it names. */
        memcpy((char *)&st->api + nvml_symbols[i].off, &sym, sizeof(sym));
    }
    void *v2 = dlsym(st->lib, "nvmlDeviceGetMemoryInfo_v2");
    if (v2)
        memcpy(&st->api.get_mem_v2, &v2, sizeof(v2));
    nvmlReturn_t rc = st->api.init();
    if (rc != SB_NVML_SUCCESS) {
        snprintf(src->note, sizeof(src->note), "NVML not available (nvmlInit_v2: %.160s)",
                 nvml_strerror(st, rc));
        goto off;
    }
    st->inited = true;
    unsigned count = 0;
    rc = st->api.get_count(&count);
    if (rc != SB_NVML_SUCCESS) {
        snprintf(src->note, sizeof(src->note), "NVML cannot count GPUs (%.160s)",
                 nvml_strerror(st, rc));
        goto off;
    }
    for (unsigned i = 0; i < count && st->ndev < MAX_GPUS; i++) {
        struct gpu_dev *d = &st->dev[st->ndev];
        /* A GPU this process may not use (cgroup, lost) is left out; the others are watched. */
        if (st->api.get_handle(i, &d->handle) != SB_NVML_SUCCESS)
            continue;
        d->index = i;
        if (st->api.get_name(d->handle, d->name, sizeof(d->name)) != SB_NVML_SUCCESS)
            d->name[0] = '\0';
        d->name[sizeof(d->name) - 1] = '\0';
        st->ndev++;
    }
    if (st->ndev == 0) {
        snprintf(src->note, sizeof(src->note), "NVML sees no usable GPU (%u reported)", count);
        goto off;
    }
    src->state = st;
    return 0;
off:
    gpu_release(st);
    return 1;
}
#pragma GCC diagnostic pop

/* Records the outcome of call c on d: true when it gave a reading. */
static bool took(struct gpu_dev *d, enum gpu_call c, nvmlReturn_t rc)
{
    if (rc == SB_NVML_ERROR_NOT_SUPPORTED)
        d->unsupported[c] = true;
    d->ok[c] = rc == SB_NVML_SUCCESS;
    return d->ok[c];
}

/* Memory through v2 while the driver takes it, else v1. */
static nvmlReturn_t read_mem(const struct nvml_api *a, struct gpu_dev *d)
{
    d->have_reserved = false;
    if (a->get_mem_v2 && !d->mem_v1) {
        nvmlMemory_v2_t m = {.version = SB_NVML_MEMORY_V2};
        nvmlReturn_t rc = a->get_mem_v2(d->handle, &m);
        if (rc == SB_NVML_SUCCESS) {
            d->mem = (nvmlMemory_t){.total = m.total, .free = m.free, .used = m.used};
            d->mem_reserved = m.reserved;
            d->have_reserved = true;
            return rc;
        }
        if (rc != SB_NVML_ERROR_ARGUMENT_VERSION_MISMATCH && rc != SB_NVML_ERROR_FUNCTION_NOT_FOUND)
            return rc;
        d->mem_v1 = true;
    }
    return a->get_mem(d->handle, &d->mem);
}

static void read_gpu(const struct gpu_state *st, struct gpu_dev *d)
{
    const struct nvml_api *a = &st->api;
    memset(d->ok, 0, sizeof(d->ok));
    if (!d->unsupported[CALL_UTIL])
        took(d, CALL_UTIL, a->get_util(d->handle, &d->util));
    if (!d->unsupported[CALL_MEM])
        took(d, CALL_MEM, read_mem(a, d));
    if (!d->unsupported[CALL_POWER])
        took(d, CALL_POWER, a->get_power(d->handle, &d->power_mw));
    if (!d->unsupported[CALL_TEMP])
        took(d, CALL_TEMP, a->get_temp(d->handle, SB_NVML_TEMPERATURE_GPU, &d->temp_c));
    if (!d->unsupported[CALL_CLOCK])
        took(d, CALL_CLOCK, a->get_clock(d->handle, SB_NVML_CLOCK_SM, &d->sm_mhz));
}

/* `,"key":<v>` with v as an integer, or null when !ok. */
static int add_u64(struct sb_buf *out, const char *key, bool ok, unsigned long long v)
{
    if (!ok)
        return sb_buf_addf(out, ",\"%s\":null", key);
    return sb_buf_addf(out, ",\"%s\":%llu", key, v);
}

/* `,"key":<v>` with v to `decimals` places, or null when !ok. */
static int add_fixed(struct sb_buf *out, const char *key, bool ok, double v, int decimals)
{
    if (!ok)
        return sb_buf_addf(out, ",\"%s\":null", key);
    return sb_buf_addf(out, ",\"%s\":%.*f", key, decimals, v);
}

static int gpu_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                      struct sb_buf *out)
{
    struct gpu_state *st = src->state;
    (void)tick;
    unsigned readings = 0, n = st->ndev;
    unsigned n_util = 0, n_mem = 0, n_power = 0;
    double util_sum = 0, power_sum = 0;
    unsigned long long used_sum = 0, total_sum = 0;
    bool mem_unsupported = false;
    for (unsigned i = 0; i < n; i++) {
        struct gpu_dev *d = &st->dev[i];
        read_gpu(st, d);
        for (int c = 0; c < NCALLS; c++)
            readings += d->ok[c];
        mem_unsupported |= d->unsupported[CALL_MEM];
        if (d->ok[CALL_UTIL]) {
            n_util++;
            util_sum += d->util.gpu;
        }
        if (d->ok[CALL_MEM]) {
            n_mem++;
            used_sum += d->mem.used;
            total_sum += d->mem.total;
        }
        if (d->ok[CALL_POWER]) {
            n_power++;
            power_sum += d->power_mw / 1000.0;
        }
    }
    if (readings == 0)
        return -1; /* nothing this tick: the line lacks "gpu" */

    int rc = sb_buf_addf(out, "\"gpu\":{\"count\":%u", n);
    rc |= add_fixed(out, "util", n_util == n, n ? util_sum / n : 0, 1);
    rc |= add_u64(out, "mem_used_bytes", n_mem == n, used_sum);
    rc |= add_u64(out, "mem_total_bytes", n_mem == n, total_sum);
    rc |= sb_buf_addf(out, ",\"mem_src\":\"%s\"", mem_unsupported ? "unsupported" : "nvml");
    rc |= add_fixed(out, "power_w", n_power == n, power_sum, 3);
    rc |= sb_buf_adds(out, ",\"gpus\":[");
    for (unsigned i = 0; i < n; i++) {
        const struct gpu_dev *d = &st->dev[i];
        rc |= sb_buf_addf(out, "%s{\"index\":%u,\"name\":", i ? "," : "", d->index);
        if (d->name[0])
            rc |= sb_buf_adds(out, "\"") | sb_buf_add_json_escaped(out, d->name, strlen(d->name)) |
                  sb_buf_adds(out, "\"");
        else
            rc |= sb_buf_adds(out, "null");
        rc |= add_u64(out, "util", d->ok[CALL_UTIL], d->util.gpu);
        rc |= add_u64(out, "mem_util", d->ok[CALL_UTIL], d->util.memory);
        rc |= add_u64(out, "mem_used_bytes", d->ok[CALL_MEM], d->mem.used);
        rc |= add_u64(out, "mem_total_bytes", d->ok[CALL_MEM], d->mem.total);
        rc |= add_u64(out, "mem_reserved_bytes", d->ok[CALL_MEM] && d->have_reserved,
                      d->mem_reserved);
        rc |= add_fixed(out, "power_w", d->ok[CALL_POWER], d->power_mw / 1000.0, 3);
        rc |= add_u64(out, "temp_c", d->ok[CALL_TEMP], d->temp_c);
        rc |= add_u64(out, "sm_clock_mhz", d->ok[CALL_CLOCK], d->sm_mhz);
        rc |= sb_buf_adds(out, "}");
    }
    rc |= sb_buf_adds(out, "]}");
    return rc ? -1 : 0;
}

static void gpu_close(struct sb_sysmon_source *src)
{
    gpu_release(src->state);
    src->state = NULL;
}

const struct sb_sysmon_source_ops sb_source_gpu = {
    .name = "gpu", .open = gpu_open, .sample = gpu_sample, .close = gpu_close};
