/* gpu_stats.h - per-GPU figures for /metrics: memory used and total from the
 * CUDA runtime (through the shim) or from NVML for a MIG slice, utilisation
 * from NVML when the NVIDIA driver's libnvidia-ml.so.1 can be loaded at run
 * time (none for a MIG slice). */
#ifndef INFERD_GPU_STATS_H
#define INFERD_GPU_STATS_H

#include "strbuf.h"

/* The driver's NVML library, opened with dlopen on each scrape. */
#define GPU_STATS_NVML_LIBRARY "libnvidia-ml.so.1"

/* Append the inferd_gpu_* families for the given CUDA ordinals (CPU entries,
 * negative, are skipped), MIG slices as below. Writes nothing when there is no GPU. nvml_library
 * is what dlopen is given (GPU_STATS_NVML_LIBRARY in the server). A CUDA
 * ordinal is matched to its NVML device by PCI bus id, not by index: the
 * two orders differ under CUDA_VISIBLE_DEVICES and CUDA's default
 * fastest-first ordering. */
int gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices, const char *nvml_library,
                     const char *visible);

/* gpu_stats_render's MIG awareness. visible is CUDA_VISIBLE_DEVICES (else
 * NVIDIA_VISIBLE_DEVICES, as the container runtime sets it; NULL when
 * neither is set): CUDA ordinal k is its entry k. A GPU is a MIG slice when
 * its entry is "MIG-<uuid>" (or the older "MIG-GPU-<uuid>/<gi>/<ci>"), or
 * when NVML says MIG mode is on for the physical GPU it sits on. For a
 * slice named by UUID the memory comes from NVML's MIG device handle
 * (nvmlDeviceGetHandleByUUID; else the CUDA runtime's, which inside a MIG
 * instance is the slice's too), and utilisation is left out: NVML reports
 * none per slice, and the physical GPU's would be every slice's together.
 * Returns how many GPUs were MIG slices (the caller logs why once). */

enum gpu_visible_kind { GPU_VISIBLE_INDEX, GPU_VISIBLE_GPU_UUID, GPU_VISIBLE_MIG_UUID };

struct gpu_visible_entry {
    enum gpu_visible_kind kind;
    int index;     /* GPU_VISIBLE_INDEX */
    char uuid[96]; /* the UUID as written ("GPU-...", "MIG-..."), else "" */
};

#define GPU_VISIBLE_MAX 16

/* Parse a visible-devices list ("0,1", "GPU-<uuid>", "MIG-<uuid>", mixed,
 * spaces around entries ignored) into out (at most max entries). Returns
 * the count; 0 for NULL, "", "all", "none" or "void" (no mapping: ordinals
 * are CUDA's own); -1 for an entry it cannot read (too long, empty, not a
 * number or a UUID): the caller then assumes no mapping either. */
int gpu_visible_parse(const char *visible, struct gpu_visible_entry *out, int max);

#endif
