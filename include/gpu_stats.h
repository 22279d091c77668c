/* gpu_stats.h - per-GPU figures for /metrics: memory used and total from the
 * CUDA runtime (through the shim), utilisation from NVML when the NVIDIA
 * driver's libnvidia-ml.so.1 can be loaded at run time. */
#ifndef INFERD_GPU_STATS_H
#define INFERD_GPU_STATS_H

#include "strbuf.h"

/* The driver's NVML library, opened with dlopen on each scrape. */
#define GPU_STATS_NVML_LIBRARY "libnvidia-ml.so.1"

/* Append the inferd_gpu_* families for the given CUDA ordinals (CPU entries,
 * negative, are skipped). Writes nothing when there is no GPU. nvml_library
 * is what dlopen is given (GPU_STATS_NVML_LIBRARY in the server). A CUDA
 * ordinal is matched to its NVML device by PCI bus id, not by index: the
 * two orders differ under CUDA_VISIBLE_DEVICES and CUDA's default
 * fastest-first ordering. */
void gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices,
                      const char *nvml_library);

#endif
