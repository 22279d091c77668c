/* gpu_stats.c - GPU memory and utilisation for /metrics (see gpu_stats.h).
 * NVML is optional: it is opened with dlopen on each scrape, so a host
 * without the NVIDIA driver library simply gets no utilisation figure. Its
 * few prototypes are declared here, so that no NVML header is needed. */
#include "gpu_stats.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "torch_shim.h"

#define NVML_SUCCESS 0

struct nvml_utilization {
    unsigned int gpu, memory;
};

/* nvmlMemory_t (v1). */
struct nvml_memory {
    unsigned long long total, free, used;
};

#define NVML_DEVICE_MIG_ENABLE 1

struct nvml_api {
    int (*init)(void);
    int (*shutdown)(void);
    int (*handle_by_bus_id)(const char *pci_bus_id, void **device);
    int (*utilization)(void *device, struct nvml_utilization *util);
    /* Optional (MIG, drivers from R450 on): NULL when the library lacks them. */
    int (*handle_by_uuid)(const char *uuid, void **device);
    int (*memory)(void *device, struct nvml_memory *memory);
    int (*mig_mode)(void *device, unsigned int *current, unsigned int *pending);
};

struct gpu_figures {
    int ordinal;
    uint64_t used, total;
    char pci_bus_id[32]; /* "" when the CUDA runtime did not give one */
    double utilization;  /* [0, 1], or -1 when NVML has no figure */
    const char *mig;     /* the slice's "MIG-<uuid>" when its entry names one, else NULL */
    bool is_mig;         /* a MIG slice (named, or on a GPU in MIG mode) */
};

static bool nvml_resolve(void *lib, struct nvml_api *api)
{
    api->init = (int (*)(void))dlsym(lib, "nvmlInit_v2");
    api->shutdown = (int (*)(void))dlsym(lib, "nvmlShutdown");
    api->handle_by_bus_id =
        (int (*)(const char *, void **))dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    api->utilization =
        (int (*)(void *, struct nvml_utilization *))dlsym(lib, "nvmlDeviceGetUtilizationRates");
    api->handle_by_uuid = (int (*)(const char *, void **))dlsym(lib, "nvmlDeviceGetHandleByUUID");
    api->memory = (int (*)(void *, struct nvml_memory *))dlsym(lib, "nvmlDeviceGetMemoryInfo");
    api->mig_mode =
        (int (*)(void *, unsigned int *, unsigned int *))dlsym(lib, "nvmlDeviceGetMigMode");
    return api->init && api->shutdown && api->handle_by_bus_id && api->utilization;
}

/* One GPU's NVML figures: a named MIG slice's memory from its own handle;
 * MIG mode of the physical GPU; utilisation unless it is a slice. Returns
 * 1 when it set a utilisation, else 0. */
static int nvml_read_one(const struct nvml_api *api, struct gpu_figures *g)
{
    void *slice = NULL, *device = NULL;
    struct nvml_memory m;
    if (g->mig != NULL && api->handle_by_uuid && api->memory &&
        api->handle_by_uuid(g->mig, &slice) == NVML_SUCCESS &&
        api->memory(slice, &m) == NVML_SUCCESS && m.total > 0) {
        g->used = m.used;
        g->total = m.total;
    }
    if (g->pci_bus_id[0] == '\0' || api->handle_by_bus_id(g->pci_bus_id, &device) != NVML_SUCCESS)
        return 0;
    unsigned int current = 0, pending = 0;
    if (api->mig_mode && api->mig_mode(device, &current, &pending) == NVML_SUCCESS &&
        current == NVML_DEVICE_MIG_ENABLE)
        g->is_mig = true; /* whichever slice: the physical GPU's busy time is not its own */
    struct nvml_utilization u;
    if (g->is_mig || api->utilization(device, &u) != NVML_SUCCESS || u.gpu > 100)
        return 0;
    g->utilization = u.gpu / 100.0;
    return 1;
}

/* Fill in what NVML knows for every GPU. Returns how many utilisation
 * figures it found. */
static int nvml_read(const char *library, struct gpu_figures *gpus, int n)
{
    void *lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return 0;
    struct nvml_api api;
    int known = 0;
    if (nvml_resolve(lib, &api) && api.init() == NVML_SUCCESS) {
        for (int i = 0; i < n; i++)
            known += nvml_read_one(&api, &gpus[i]);
        api.shutdown(); /* NVML counts its inits: each one is paired */
    }
    dlclose(lib);
    return known;
}

/* Whether text (length len) is a UUID entry: its prefix, then hex digits
 * and dashes (and, in the older MIG form, '/' and digits). */
static bool uuid_like(const char *text, size_t len, const char *prefix)
{
    size_t p = strlen(prefix);
    if (len <= p || strncmp(text, prefix, p) != 0)
        return false;
    for (size_t i = p; i < len; i++)
        if (!isxdigit((unsigned char)text[i]) && text[i] != '-' && text[i] != '/' &&
            !(text[i] == 'G' || text[i] == 'P' || text[i] == 'U'))
            return false;
    return true;
}

int gpu_visible_parse(const char *visible, struct gpu_visible_entry *out, int max)
{
    if (visible == NULL)
        return 0;
    while (isspace((unsigned char)*visible))
        visible++;
    if (visible[0] == '\0' || strcmp(visible, "all") == 0 || strcmp(visible, "none") == 0 ||
        strcmp(visible, "void") == 0)
        return 0;
    int n = 0;
    const char *p = visible;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        if (n == max || len == 0 || len >= sizeof out[0].uuid)
            return -1;
        struct gpu_visible_entry *e = &out[n++];
        memset(e, 0, sizeof *e);
        if (uuid_like(p, len, "MIG-")) {
            e->kind = GPU_VISIBLE_MIG_UUID;
            memcpy(e->uuid, p, len);
        } else if (uuid_like(p, len, "GPU-")) {
            e->kind = GPU_VISIBLE_GPU_UUID;
            memcpy(e->uuid, p, len);
        } else {
            char digits[16];
            char *stop = NULL;
            if (len >= sizeof digits)
                return -1;
            memcpy(digits, p, len);
            digits[len] = '\0';
            long v = strtol(digits, &stop, 10);
            if (*stop != '\0' || v < 0 || v > 1024 || !isdigit((unsigned char)digits[0]))
                return -1;
            e->kind = GPU_VISIBLE_INDEX;
            e->index = (int)v;
        }
        if (end == NULL)
            return n;
        p = end + 1;
    }
}

int gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices, const char *nvml_library,
                     const char *visible)
{
    struct gpu_figures gpus[CONFIG_MAX_DEVICES];
    struct gpu_visible_entry entries[GPU_VISIBLE_MAX];
    int n_entries = gpu_visible_parse(visible, entries, GPU_VISIBLE_MAX);
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
        g->mig = NULL;
        g->is_mig = false;
        if (devices[i] < n_entries && entries[devices[i]].kind == GPU_VISIBLE_MIG_UUID) {
            g->mig = entries[devices[i]].uuid;
            g->is_mig = true;
        }
        if (shim_cuda_pci_bus_id(devices[i], g->pci_bus_id, sizeof g->pci_bus_id) != 0)
            g->pci_bus_id[0] = '\0';
    }
    if (n == 0)
        return 0;
    int known = nvml_read(nvml_library, gpus, n);
    int slices = 0;
    for (int i = 0; i < n; i++)
        slices += gpus[i].is_mig;
    strbuf_puts(sb, "# HELP inferd_gpu_memory_used_bytes GPU memory in use (CUDA runtime; a MIG "
                    "slice's from NVML).\n"
                    "# TYPE inferd_gpu_memory_used_bytes gauge\n");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_gpu_memory_used_bytes{gpu=\"%d\"} %llu\n", gpus[i].ordinal,
                      (unsigned long long)gpus[i].used);
    strbuf_puts(sb, "# HELP inferd_gpu_memory_total_bytes GPU memory in all (CUDA runtime; a MIG "
                    "slice's from NVML).\n"
                    "# TYPE inferd_gpu_memory_total_bytes gauge\n");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_gpu_memory_total_bytes{gpu=\"%d\"} %llu\n", gpus[i].ordinal,
                      (unsigned long long)gpus[i].total);
    if (known == 0)
        return slices;
    strbuf_puts(
        sb,
        "# HELP inferd_gpu_utilization_ratio GPU busy fraction over the last "
        "sample period (NVML; none for a MIG slice).\n# TYPE inferd_gpu_utilization_ratio gauge\n");
    for (int i = 0; i < n; i++)
        if (gpus[i].utilization >= 0)
            strbuf_printf(sb, "inferd_gpu_utilization_ratio{gpu=\"%d\"} %.2f\n", gpus[i].ordinal,
                          gpus[i].utilization);
    return slices;
}
