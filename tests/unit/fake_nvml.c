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
