/* shm_cuda.h - CUDA shared memory regions through the shim: the device check
 * and the register sequence, one for the HTTP endpoints (api_shm.c) and the
 * gRPC ones (grpc_shm.c), so that both transports check and answer alike. */
#ifndef INFERD_SHM_CUDA_H
#define INFERD_SHM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "shm_region.h"

/* Whether CUDA device device_id can take an IPC handle here. Returns
 * SHM_OK, or SHM_UNAVAILABLE (no CUDA in this build or machine) or
 * SHM_INVALID (no such device) with err set. */
enum shm_status shm_cuda_check(long long device_id, char *err, size_t err_len);

/* Open handle (SHM_CUDA_HANDLE bytes, a cudaIpcMemHandle_t) on device_id
 * (checked with shm_cuda_check) and register it as region name of
 * byte_size bytes in t. Returns SHM_OK, or a status with err set
 * (SHM_INVALID when the handle does not open). */
enum shm_status shm_cuda_register(struct shm_table *t, const char *name, int device_id,
                                  const uint8_t *handle, uint64_t byte_size, char *err,
                                  size_t err_len);

#endif
