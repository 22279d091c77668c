/* shm_cuda.c - CUDA shared memory regions through the shim: whether a device
 * can take an IPC handle, and opening one into the region table. */
#include "shm_cuda.h"

#include <stdio.h>

#include "log.h"
#include "torch_shim.h"

/* The shim's copies and close for CUDA regions. */
static int cuda_read(void *dst, const void *src, size_t n, int device, char *err, size_t err_len)
{
    return shim_cuda_copy_to_host(dst, src, n, device, err, err_len) == SHIM_OK ? 0 : -1;
}

static int cuda_write(void *dst, const void *src, size_t n, int device, char *err, size_t err_len)
{
    return shim_cuda_copy_to_device(dst, src, n, device, err, err_len) == SHIM_OK ? 0 : -1;
}

static const struct shm_device_ops cuda_ops = {cuda_read, cuda_write, shim_cuda_ipc_close};

enum shm_status shm_cuda_check(long long device_id, char *err, size_t err_len)
{
    int count = shim_built_with_cuda() ? shim_cuda_device_count() : 0;
    if (!shim_built_with_cuda())
        snprintf(err, err_len, "CUDA is not available: this inferd was built without CUDA");
    else if (count == 0)
        snprintf(err, err_len, "CUDA is not available: no CUDA device is visible");
    else if (device_id < 0 || device_id >= count) {
        snprintf(err, err_len, "\"device_id\" must be a CUDA device from 0 to %d", count - 1);
        return SHM_INVALID;
    } else
        return SHM_OK;
    return SHM_UNAVAILABLE;
}

enum shm_status shm_cuda_register(struct shm_table *t, const char *name, int device_id,
                                  const uint8_t *handle, uint64_t byte_size, char *err,
                                  size_t err_len)
{
    void *ptr = NULL;
    if (shim_cuda_ipc_open(handle, SHM_CUDA_HANDLE, device_id, &ptr, err, err_len) != SHIM_OK)
        return SHM_INVALID;
    enum shm_status st =
        shm_register_cuda(t, name, device_id, byte_size, ptr, &cuda_ops, err, err_len);
    if (st != SHM_OK)
        shim_cuda_ipc_close(ptr, device_id);
    else
        log_msg(LOG_INFO, "registered CUDA shared memory region %s (%llu bytes, GPU %d)", name,
                (unsigned long long)byte_size, device_id);
    return st;
}
