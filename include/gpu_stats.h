/* gpu_stats.h - per-GPU figures for /metrics: memory used and total from the
 * CUDA runtime (through the shim), utilisation from NVML when
 * libnvidia-ml.so.1 can be loaded at run time. */
#ifndef INFERD_GPU_STATS_H
#define INFERD_GPU_STATS_H

#include "strbuf.h"

/* Append the inferd_gpu_* families for the given CUDA ordinals (CPU entries,
 * negative, are skipped). Writes nothing when there is no GPU. */
void gpu_stats_render(struct strbuf *sb, const int *devices, int n_devices);

#endif
