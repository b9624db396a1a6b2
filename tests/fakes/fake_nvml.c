/*
 * A stand-in for libnvidia-ml.so.1, built as libfakenvml.so, so that the gpu source can be tested
 * on machines without a GPU. It exports the NVML symbols the source looks up, declared through the
 * typedefs of sb/nvml_min.h (the compiler checks they match), and answers from environment
 * variables read at each call:
 *
 *   FAKE_NVML_INIT=fail          nvmlInit_v2 fails with NVML_ERROR_DRIVER_NOT_LOADED
 *   FAKE_NVML_COUNT=N            N GPUs (default 1)
 *   FAKE_NVML_FAIL=util,power    these calls fail with NVML_ERROR_UNKNOWN (util, mem, power,
 *                                temp, clock, name, or all)
 *   FAKE_NVML_UNSUPPORTED=mem    these calls answer NVML_ERROR_NOT_SUPPORTED (as GB10's memory)
 *   FAKE_NVML_FAIL_INDEX=i       FAKE_NVML_FAIL and FAKE_NVML_UNSUPPORTED hit only GPU i
 *   FAKE_NVML_MEM_V2=mismatch    nvmlDeviceGetMemoryInfo_v2 refuses the struct version (as a
 *                                driver with another struct layout would)
 *
 * GPU i reads: name "Fake GPU i", util 40 + 10i %, memory util 20 + i %, memory used (i + 1) GiB
 * of 96 GiB with 512 MiB reserved besides (v1's used includes it: (i + 1) GiB + 512 MiB), power
 * 150.5 + i W, temperature 50 + i C, SM clock 1500 + 10i MHz. fake_nvml_calls()
 * counts the per-GPU reading calls and fake_nvml_live() says how many nvmlInit_v2 calls are not
 * yet matched by nvmlShutdown, so a test can check what the source asked and that it shut down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/nvml_min.h"

sb_nvmlInit_v2_fn nvmlInit_v2;
sb_nvmlShutdown_fn nvmlShutdown;
sb_nvmlErrorString_fn nvmlErrorString;
sb_nvmlDeviceGetCount_v2_fn nvmlDeviceGetCount_v2;
sb_nvmlDeviceGetHandleByIndex_v2_fn nvmlDeviceGetHandleByIndex_v2;
sb_nvmlDeviceGetName_fn nvmlDeviceGetName;
sb_nvmlDeviceGetUtilizationRates_fn nvmlDeviceGetUtilizationRates;
sb_nvmlDeviceGetMemoryInfo_fn nvmlDeviceGetMemoryInfo;
sb_nvmlDeviceGetMemoryInfo_v2_fn nvmlDeviceGetMemoryInfo_v2;
sb_nvmlDeviceGetPowerUsage_fn nvmlDeviceGetPowerUsage;
sb_nvmlDeviceGetTemperature_fn nvmlDeviceGetTemperature;
sb_nvmlDeviceGetClockInfo_fn nvmlDeviceGetClockInfo;
int fake_nvml_live(void);
long fake_nvml_calls(void);

#define MAX_FAKE_GPUS 16
#define GIB           (1024ull * 1024 * 1024)
#define RESERVED      (512ull * 1024 * 1024)

/* Handles are pointers into this array (the struct stays incomplete for callers). */
static char devices[MAX_FAKE_GPUS];
static int live;
static long calls;

static nvmlDevice_t handle_of(unsigned i)
{
    return (nvmlDevice_t)(void *)&devices[i];
}

/* The GPU index behind a handle, or -1 for a handle this library did not give out. */
static int index_of(nvmlDevice_t d)
{
    const char *p = (const char *)(void *)d;
    if (p < devices || p >= devices + MAX_FAKE_GPUS)
        return -1;
    return (int)(p - devices);
}

static unsigned gpu_count(void)
{
    const char *s = getenv("FAKE_NVML_COUNT");
    long n = s ? strtol(s, NULL, 10) : 1;
    return n < 0 ? 0 : n > MAX_FAKE_GPUS ? MAX_FAKE_GPUS : (unsigned)n;
}

/* Whether the comma list in variable var names call (or "all"). */
static int listed(const char *var, const char *call)
{
    const char *s = getenv(var);
    size_t n = strlen(call);
    while (s && *s) {
        size_t len = strcspn(s, ",");
        if ((len == n && memcmp(s, call, n) == 0) || (len == 3 && memcmp(s, "all", 3) == 0))
            return 1;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* The answer of call for GPU i: success, or the failure the environment asks for. */
static nvmlReturn_t outcome(const char *call, int i)
{
    if (i < 0 || (unsigned)i >= gpu_count())
        return SB_NVML_ERROR_INVALID_ARG;
    const char *only = getenv("FAKE_NVML_FAIL_INDEX");
    if (only && *only && strtol(only, NULL, 10) != i)
        return SB_NVML_SUCCESS;
    if (listed("FAKE_NVML_UNSUPPORTED", call))
        return SB_NVML_ERROR_NOT_SUPPORTED;
    if (listed("FAKE_NVML_FAIL", call))
        return SB_NVML_ERROR_UNKNOWN;
    return SB_NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void)
{
    const char *s = getenv("FAKE_NVML_INIT");
    if (s && strcmp(s, "fail") == 0)
        return SB_NVML_ERROR_DRIVER_UNLOADED;
    live++;
    return SB_NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
    if (live == 0)
        return SB_NVML_ERROR_UNINITIALIZED;
    live--;
    return SB_NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case SB_NVML_SUCCESS:
        return "Success";
    case SB_NVML_ERROR_UNINITIALIZED:
        return "Uninitialized";
    case SB_NVML_ERROR_INVALID_ARG:
        return "Invalid Argument";
    case SB_NVML_ERROR_NOT_SUPPORTED:
        return "Not Supported";
    case SB_NVML_ERROR_DRIVER_UNLOADED:
        return "Driver Not Loaded";
    default:
        return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!live)
        return SB_NVML_ERROR_UNINITIALIZED;
    *count = gpu_count();
    return SB_NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!live)
        return SB_NVML_ERROR_UNINITIALIZED;
    if (index >= gpu_count())
        return SB_NVML_ERROR_INVALID_ARG;
    *device = handle_of(index);
    return SB_NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    int i = index_of(device);
    nvmlReturn_t rc = outcome("name", i);
    if (rc != SB_NVML_SUCCESS)
        return rc;
    int n = snprintf(name, length, "Fake GPU %d", i);
    /* NVML_ERROR_INSUFFICIENT_SIZE (7) in the real one */
    return n < 0 || (unsigned)n >= length ? SB_NVML_ERROR_INVALID_ARG : SB_NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    int i = index_of(device);
    nvmlReturn_t rc = outcome("util", i);
    calls++;
    if (rc == SB_NVML_SUCCESS)
        *utilization =
            (nvmlUtilization_t){.gpu = 40u + 10u * (unsigned)i, .memory = 20u + (unsigned)i};
    return rc;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    int i = index_of(device);
    nvmlReturn_t rc = outcome("mem", i);
    calls++;
    if (rc == SB_NVML_SUCCESS) {
        unsigned long long used = (unsigned long long)(i + 1) * GIB + RESERVED, total = 96 * GIB;
        *memory = (nvmlMemory_t){.total = total, .free = total - used, .used = used};
    }
    return rc;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    int i = index_of(device);
    nvmlReturn_t rc = outcome("mem", i);
    const char *v2 = getenv("FAKE_NVML_MEM_V2");
    calls++;
    if (rc == SB_NVML_SUCCESS &&
        (memory->version != SB_NVML_MEMORY_V2 || (v2 && strcmp(v2, "mismatch") == 0)))
        return SB_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (rc == SB_NVML_SUCCESS) {
        unsigned long long used = (unsigned long long)(i + 1) * GIB, total = 96 * GIB;
        *memory = (nvmlMemory_v2_t){.version = memory->version,
                                    .total = total,
                                    .reserved = RESERVED,
                                    .free = total - used - RESERVED,
                                    .used = used};
    }
    return rc;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *milliwatts)
{
    int i = index_of(device);
    nvmlReturn_t rc = outcome("power", i);
    calls++;
    if (rc == SB_NVML_SUCCESS)
        *milliwatts = 150500u + 1000u * (unsigned)i;
    return rc;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *celsius)
{
    int i = index_of(device);
    nvmlReturn_t rc =
        sensor == SB_NVML_TEMPERATURE_GPU ? outcome("temp", i) : SB_NVML_ERROR_INVALID_ARG;
    calls++;
    if (rc == SB_NVML_SUCCESS)
        *celsius = 50u + (unsigned)i;
    return rc;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *mhz)
{
    int i = index_of(device);
    nvmlReturn_t rc = type == SB_NVML_CLOCK_SM ? outcome("clock", i) : SB_NVML_ERROR_INVALID_ARG;
    calls++;
    if (rc == SB_NVML_SUCCESS)
        *mhz = 1500u + 10u * (unsigned)i;
    return rc;
}

int fake_nvml_live(void)
{
    return live;
}

long fake_nvml_calls(void)
{
    return calls;
}
