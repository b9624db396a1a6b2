/*
 * The few NVML declarations that the gpu source needs, written out here so that building
 * sparkbench needs no CUDA toolkit: the library is dlopen'ed at run time (source_gpu.c) and the
 * symbols are looked up by name. Types, values and calling conventions are those of NVIDIA's
 * nvml.h (enums are int-sized; handles are opaque pointers). tests/fakes/fake_nvml.c declares its
 * functions through the same typedefs, so the compiler checks that the fake matches what the
 * source calls.
 */
#ifndef SB_NVML_MIN_H
#define SB_NVML_MIN_H

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct {
    unsigned int gpu;    /* percent of the last sample period a kernel was running */
    unsigned int memory; /* percent of it device memory was being read or written */
} nvmlUtilization_t;

typedef struct {
    unsigned long long total, free, used; /* bytes; used includes the driver's reservation */
} nvmlMemory_t;

/* nvmlDeviceGetMemoryInfo_v2 (drivers since R510): used excludes reserved, as nvidia-smi shows. */
typedef struct {
    unsigned int version; /* SB_NVML_MEMORY_V2 */
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

#define SB_NVML_SUCCESS                         0
#define SB_NVML_ERROR_UNINITIALIZED             1
#define SB_NVML_ERROR_INVALID_ARG               2
#define SB_NVML_ERROR_NOT_SUPPORTED             3 /* e.g. memory info on GB10's unified memory */
#define SB_NVML_ERROR_DRIVER_UNLOADED           9 /* NVML_ERROR_DRIVER_NOT_LOADED */
#define SB_NVML_ERROR_FUNCTION_NOT_FOUND        13
#define SB_NVML_ERROR_GPU_IS_LOST               15
#define SB_NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define SB_NVML_ERROR_UNKNOWN                   999
#define SB_NVML_TEMPERATURE_GPU                 0  /* nvmlTemperatureSensors_t */
#define SB_NVML_CLOCK_SM                        1  /* nvmlClockType_t */
#define SB_NVML_DEVICE_NAME_SIZE                96 /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
/* nvmlMemory_v2: NVML_STRUCT_VERSION(Memory, 2), the struct's size with the version in bits 24+ */
#define SB_NVML_MEMORY_V2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

/* Function types of the symbols looked up, named after them. */
typedef nvmlReturn_t sb_nvmlInit_v2_fn(void);
typedef nvmlReturn_t sb_nvmlShutdown_fn(void);
typedef const char *sb_nvmlErrorString_fn(nvmlReturn_t result);
typedef nvmlReturn_t sb_nvmlDeviceGetCount_v2_fn(unsigned int *count);
typedef nvmlReturn_t sb_nvmlDeviceGetHandleByIndex_v2_fn(unsigned int index, nvmlDevice_t *device);
typedef nvmlReturn_t sb_nvmlDeviceGetName_fn(nvmlDevice_t device, char *name, unsigned int length);
typedef nvmlReturn_t sb_nvmlDeviceGetUtilizationRates_fn(nvmlDevice_t device,
                                                         nvmlUtilization_t *utilization);
typedef nvmlReturn_t sb_nvmlDeviceGetMemoryInfo_fn(nvmlDevice_t device, nvmlMemory_t *memory);
typedef nvmlReturn_t sb_nvmlDeviceGetMemoryInfo_v2_fn(nvmlDevice_t device, nvmlMemory_v2_t *memory);
typedef nvmlReturn_t sb_nvmlDeviceGetPowerUsage_fn(nvmlDevice_t device, unsigned int *milliwatts);
typedef nvmlReturn_t sb_nvmlDeviceGetTemperature_fn(nvmlDevice_t device, int sensor,
                                                    unsigned int *celsius);
typedef nvmlReturn_t sb_nvmlDeviceGetClockInfo_fn(nvmlDevice_t device, int type, unsigned int *mhz);

#endif
