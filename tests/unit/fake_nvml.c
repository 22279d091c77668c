/* fake_nvml.c - a stand-in for the NVIDIA driver's libnvidia-ml.so.1, built
 * as a shared library for test_gpu_stats (this machine has no GPU driver).
 * It knows two devices by PCI bus id and counts init/shutdown so the test
 * can check that every init is paired. */
#include <string.h>
#include <strings.h>

struct fake_nvml_utilization {
    unsigned int gpu, memory;
};

static const struct {
    const char *bus_id;
    unsigned int busy_percent;
} devices[] = {{"00000000:3B:00.0", 37}, {"00000000:86:00.0", 82}};

static int open_inits;

int fake_nvml_open_inits(void)
{
    return open_inits;
}

int nvmlInit_v2(void)
{
    open_inits++;
    return 0;
}

int nvmlShutdown(void)
{
    if (open_inits == 0)
        return 1; /* NVML_ERROR_UNINITIALIZED */
    open_inits--;
    return 0;
}

int nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, void **device)
{
    if (open_inits == 0)
        return 1;
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        /* NVML accepts the short "0000:3b:00.0" form the CUDA runtime
         * writes, case-insensitively; compare from the bus number on. */
        const char *want = strchr(devices[i].bus_id, ':');
        const char *got = strchr(bus_id, ':');
        if (want && got && strcasecmp(want, got) == 0) {
            *device = (void *)&devices[i];
            return 0;
        }
    }
    return 6; /* NVML_ERROR_NOT_FOUND */
}

int nvmlDeviceGetUtilizationRates(void *device, struct fake_nvml_utilization *util)
{
    if (open_inits == 0 || device == NULL)
        return 1;
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++)
        if (device == (void *)&devices[i]) {
            util->gpu = devices[i].busy_percent;
            util->memory = 0;
            return 0;
        }
    return 2; /* NVML_ERROR_INVALID_ARGUMENT */
}

/* MIG: one slice, known by UUID, with its own memory; and a switch that
 * puts 86:00.0 (the second device) in MIG mode. */
#define FAKE_MIG_UUID "MIG-5ee1c0de-1111-2222-3333-444455556666"

struct fake_nvml_memory {
    unsigned long long total, free, used;
};

static int slice; /* its handle's address */
static int mig_mode_86;

void fake_nvml_set_mig(int on)
{
    mig_mode_86 = on;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **device)
{
    if (open_inits == 0)
        return 1;
    if (strcmp(uuid, FAKE_MIG_UUID) != 0)
        return 6; /* NVML_ERROR_NOT_FOUND */
    *device = &slice;
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *device, struct fake_nvml_memory *memory)
{
    if (open_inits == 0 || device != (void *)&slice)
        return 2;
    memory->total = 20ull << 30;
    memory->used = 3ull << 30;
    memory->free = memory->total - memory->used;
    return 0;
}

int nvmlDeviceGetMigMode(void *device, unsigned int *current, unsigned int *pending)
{
    if (open_inits == 0 || device == NULL || device == (void *)&slice)
        return 2;
    *current = *pending = device == (void *)&devices[1] ? (unsigned)mig_mode_86 : 0;
    return 0;
}
