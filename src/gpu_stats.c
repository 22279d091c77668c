/* gpu_stats.c - GPU memory and utilisation for /metrics (see gpu_stats.h).
 * NVML is optional: it is opened with dlopen on each scrape, so a host
 * without the NVIDIA driver library simply gets no utilisation figure. */
#include "gpu_stats.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#include "torch_shim.h"

#define NVML_SUCCESS 0

struct nvml_utilization {
    unsigned int gpu, memory;
};

struct nvml_api {
    int (*init)(void);
    int (*shutdown)(void);
    int (*handle_by_bus_id)(const char *pci_bus_id, void **device);
    int (*utilization)(void *device, struct nvml_utilization *util);
};

struct gpu_figures {
    int ordinal;
    uint64_t used, total;
    char pci_bus_id[32]; /* "" when the CUDA runtime did not give one */
    double utilization;  /* [0, 1], or -1 when NVML has no figure */
};

static bool nvml_resolve(void *lib, struct nvml_api *api)
{
    api->init = (int (*)(void))dlsym(lib, "nvmlInit_v2");
    api->shutdown = (int (*)(void))dlsym(lib, "nvmlShutdown");
    api->handle_by_bus_id =
        (int (*)(const char *, void **))dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    api->utilization =
        (int (*)(void *, struct nvml_utilization *))dlsym(lib, "nvmlDeviceGetUtilizationRates");
    return api->init && api->shutdown && api->handle_by_bus_id && api->utilization;
}

/* Fill in utilization for every GPU NVML knows. Returns how many it knew. */
static int nvml_read(const char *library, struct gpu_figures *gpus, int n)
{
    void *lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return 0;
    struct nvml_api api;
    int known = 0;
    if (nvml_resolve(lib, &api) && api.init() == NVML_SUCCESS) {
        for (int i = 0; i < n; i++) {
            void *device = NULL;
            struct nvml_utilization u;
            if (gpus[i].pci_bus_id[0] != '\0' &&
                api.handle_by_bus_id(gpus[i].pci_bus_id, &device) == NVML_SUCCESS &&
                api.utilization(device, &u) == NVML_SUCCESS && u.gpu <= 100) {
                gpus[i].utilization = u.gpu / 100.0;
                known++;
            }
        }
        api.shutdown(); /* NVML counts its inits: each one is paired */
    }
    dlclose(lib);
    return known;
}

void gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices,
                      const char *nvml_library)
{
    struct gpu_figures gpus[CONFIG_MAX_DEVICES];
    int n = 0;
    for (int i = 0; i < n_devices && n < CONFIG_MAX_DEVICES; i++) {
        uint64_t free_b = 0, total_b = 0;
        if (devices[i] < 0 || shim_cuda_memory_info(devices[i], &free_b, &total_b) != 0)
            continue;
        struct gpu_figures *g = &gpus[n++];
        g->ordinal = devices[i];
        g->total = total_b;
        g->used = total_b >= free_b ? total_b - free_b : 0;
        g->utilization = -1;
        if (shim_cuda_pci_bus_id(devices[i], g->pci_bus_id, sizeof g->pci_bus_id) != 0)
            g->pci_bus_id[0] = '\0';
    }
    if (n == 0)
        return;
    strbuf_puts(sb, "# HELP inferd_gpu_memory_used_bytes GPU memory in use (CUDA runtime).\n"
                    "# TYPE inferd_gpu_memory_used_bytes gauge\n");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_gpu_memory_used_bytes{gpu=\"%d\"} %llu\n", gpus[i].ordinal,
                      (unsigned long long)gpus[i].used);
    strbuf_puts(sb, "# HELP inferd_gpu_memory_total_bytes GPU memory in all (CUDA runtime).\n"
                    "# TYPE inferd_gpu_memory_total_bytes gauge\n");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_gpu_memory_total_bytes{gpu=\"%d\"} %llu\n", gpus[i].ordinal,
                      (unsigned long long)gpus[i].total);
    if (nvml_read(nvml_library, gpus, n) == 0)
        return;
    strbuf_puts(sb, "# HELP inferd_gpu_utilization_ratio GPU busy fraction over the last "
                    "sample period (NVML).\n# TYPE inferd_gpu_utilization_ratio gauge\n");
    for (int i = 0; i < n; i++)
        if (gpus[i].utilization >= 0)
            strbuf_printf(sb, "inferd_gpu_utilization_ratio{gpu=\"%d\"} %.2f\n", gpus[i].ordinal,
                          gpus[i].utilization);
}
