/* gpu_stats.c - GPU memory and utilisation for /metrics (see gpu_stats.h).
 * NVML is optional: it is opened with dlopen on each scrape, so a host
 * without the NVIDIA driver library simply gets no utilisation figure. */
#include "gpu_stats.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#include "torch_shim.h"

struct nvml_utilization {
    unsigned int gpu, memory;
};

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_handle_fn)(unsigned int index, void **device);
typedef int (*nvml_util_fn)(void *device, struct nvml_utilization *util);

/* GPU utilisation in [0, 1] of device, or -1 when NVML is unavailable. */
static double nvml_utilization(void *lib, int device)
{
    nvml_init_fn init = (nvml_init_fn)dlsym(lib, "nvmlInit_v2");
    nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_util_fn util = (nvml_util_fn)dlsym(lib, "nvmlDeviceGetUtilizationRates");
    void *dev = NULL;
    struct nvml_utilization u;
    if (!init || !handle || !util || init() != 0 || handle((unsigned)device, &dev) != 0 ||
        util(dev, &u) != 0)
        return -1;
    return u.gpu / 100.0;
}

void gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices)
{
    uint64_t used[CONFIG_MAX_DEVICES], total[CONFIG_MAX_DEVICES];
    bool known[CONFIG_MAX_DEVICES] = {false};
    int gpus = 0;
    for (int i = 0; i < n_devices && i < CONFIG_MAX_DEVICES; i++) {
        uint64_t free_b;
        known[i] = devices[i] >= 0 && shim_cuda_memory_info(devices[i], &free_b, &total[i]) == 0;
        used[i] = known[i] ? total[i] - free_b : 0;
        gpus += known[i];
    }
    if (gpus == 0)
        return;
    strbuf_puts(sb, "# HELP inferd_gpu_memory_used_bytes GPU memory in use (CUDA runtime).\n"
                    "# TYPE inferd_gpu_memory_used_bytes gauge\n");
    for (int i = 0; i < n_devices && i < CONFIG_MAX_DEVICES; i++)
        if (known[i])
            strbuf_printf(sb, "inferd_gpu_memory_used_bytes{gpu=\"%d\"} %llu\n", devices[i],
                          (unsigned long long)used[i]);
    strbuf_puts(sb, "# HELP inferd_gpu_memory_total_bytes GPU memory in all (CUDA runtime).\n"
                    "# TYPE inferd_gpu_memory_total_bytes gauge\n");
    for (int i = 0; i < n_devices && i < CONFIG_MAX_DEVICES; i++)
        if (known[i])
            strbuf_printf(sb, "inferd_gpu_memory_total_bytes{gpu=\"%d\"} %llu\n", devices[i],
                          (unsigned long long)total[i]);
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return;
    strbuf_puts(sb, "# HELP inferd_gpu_utilization_ratio GPU busy fraction over the last "
                    "sample period (NVML).\n# TYPE inferd_gpu_utilization_ratio gauge\n");
    for (int i = 0; i < n_devices && i < CONFIG_MAX_DEVICES; i++) {
        double u = known[i] ? nvml_utilization(lib, devices[i]) : -1;
        if (u >= 0)
            strbuf_printf(sb, "inferd_gpu_utilization_ratio{gpu=\"%d\"} %.2f\n", devices[i], u);
    }
    dlclose(lib);
}
