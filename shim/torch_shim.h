/* torch_shim.h - plain-C interface over libtorch: load a model file (one of
 * the formats in shim/runtime_*.cpp) on a device, run forward, hand back
 * output tensors. The only C++ in inferd lives behind this header; no C++
 * exception ever crosses it.
 *
 * Every function that can fail returns 0 on success or a negative code, and
 * writes a one-line message into the caller's err buffer (always terminated).
 */
#ifndef INFERD_TORCH_SHIM_H
#define INFERD_TORCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "shim_dtype_list.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHIM_MAX_DIMS 8
#define SHIM_DEVICE_CPU (-1)

enum shim_status {
    SHIM_OK = 0,
    SHIM_ERR_ARG = -1,     /* bad argument from the caller */
    SHIM_ERR_LOAD = -2,    /* the file could not be loaded */
    SHIM_ERR_FORWARD = -3, /* forward threw: shape error, model bug, OOM */
    SHIM_ERR_OUTPUT = -4,  /* forward returned something that is not tensors */
    SHIM_ERR_DEVICE = -5,  /* device missing or not supported by this build */
};

/* Element types: SHIM_BOOL = 0, ... in shim_dtype_list.h's order. */
#define SHIM_DTYPE_ENUM(name, ctype, torch) SHIM_##name,
enum shim_dtype { SHIM_DTYPE_LIST(SHIM_DTYPE_ENUM) SHIM_DTYPE_COUNT };
#undef SHIM_DTYPE_ENUM

/* A borrowed view of a dense, row-major, CPU-resident tensor. */
struct shim_tensor {
    enum shim_dtype dtype;
    int ndim;
    int64_t shape[SHIM_MAX_DIMS];
    const void *data;
    size_t nbytes;
};

/* The one checked size computation for a shape that came from a client:
 * the element count (product of the dims) and the byte size (count times
 * elem). Returns 0 with *numel and *nbytes set, or -1 when a dim is negative
 * or the count overflows int64_t or the bytes overflow size_t. numel or
 * nbytes may be NULL. Inline and plain C, so that the daemon (shape.h) and
 * the shim's own check share it. */
static inline int shim_shape_size(const int64_t *shape, int ndim, size_t elem, int64_t *numel,
                                  size_t *nbytes)
{
    uint64_t n = 1;
    size_t bytes;
    if (ndim < 0)
        return -1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[d], &n))
            return -1;
    }
    if (n > (uint64_t)INT64_MAX || n > (uint64_t)SIZE_MAX ||
        __builtin_mul_overflow((size_t)n, elem, &bytes))
        return -1;
    if (numel != NULL)
        *numel = (int64_t)n;
    if (nbytes != NULL)
        *nbytes = bytes;
    return 0;
}

typedef struct shim_model shim_model; /* one loaded module on one device */

enum shim_precision {
    SHIM_PRECISION_FP32 = 0, /* IEEE fp32: TF32 tensor cores stay off */
    SHIM_PRECISION_FP16,     /* module and inputs in half; outputs back in FP32 */
};

#define SHIM_MAX_GRAPHS 16
#define SHIM_MAX_INPUTS 8

/* An input whose pixels arrive as UINT8 and are normalised on the model's
 * device: out = (pixel * scale - mean[c]) / std[c], computed in float32
 * (FP64 for an FP64 model) and then cast to the model's precision, c being
 * the index along the channel dimension. */
struct shim_normalize {
    int enabled;
    enum shim_dtype dtype; /* what the model takes: FP32, FP16 or FP64 */
    int channel_dim;       /* counted from the end: -3 (NCHW) or -1 (NHWC) */
    int channels;          /* 1 or 3 */
    double scale;
    double mean[3], std[3];
};

/* How to load one instance. Every speed setting is off when zeroed. */
struct shim_load_options {
    const char *format; /* "torchscript", ...; NULL: from the file name */
    int device;         /* SHIM_DEVICE_CPU or a CUDA ordinal */
    enum shim_precision precision;
    int channels_last;   /* 4-d weights and inputs in NHWC memory order */
    int cudnn_benchmark; /* let cuDNN time its algorithms (process-wide) */
    int n_cuda_graphs;   /* batch sizes to capture, ascending (GPU only) */
    int cuda_graphs[SHIM_MAX_GRAPHS];
    /* Per input (by position): normalised on the device when enabled; such
     * an input must then be given to forward as UINT8. */
    struct shim_normalize normalize[SHIM_MAX_INPUTS];
};
typedef struct shim_outputs shim_outputs; /* the tensors one forward returned */

/* Number of CUDA devices libtorch sees (0 on a CPU-only build). */
int shim_cuda_device_count(void);

/* 1 when this build has its CUDA code compiled in. */
int shim_built_with_cuda(void);

/* libtorch's version string, e.g. "1.13.1". */
const char *shim_torch_version(void);

/* Set libtorch's intra-op thread count (process-wide) and, once, its inter-op
 * thread count (0 leaves one unchanged). */
int shim_set_threads(int intra_op, int inter_op, char *err, size_t err_len);

/* Cap this process's share of a GPU's memory (0 < fraction <= 1). */
int shim_set_gpu_memory_fraction(int device, double fraction, char *err, size_t err_len);

/* Host memory for staging inputs: page-locked (pinned) when device is a
 * GPU, so that the copy to the device is a direct DMA; plain malloc on CPU.
 * Returns 0 or -1. Free with shim_host_free (NULL is fine). */
int shim_host_alloc(size_t bytes, int device, void **out);
void shim_host_free(void *ptr, int device);

/* Free and total memory of a CUDA device, from the CUDA runtime. Returns 0,
 * or SHIM_ERR_DEVICE on a CPU-only build or a bad ordinal. */
int shim_cuda_memory_info(int device, uint64_t *free_bytes, uint64_t *total_bytes);

/* The PCI bus id of a CUDA device ("0000:3b:00.0"), from the CUDA runtime,
 * NUL-terminated in buf. Returns 0, or SHIM_ERR_DEVICE on a CPU-only build
 * or a bad ordinal. */
int shim_cuda_pci_bus_id(int device, char *buf, size_t len);

/* CUDA IPC, for the CUDA shared memory extension: open another process's
 * cudaIpcMemHandle_t (handle_len bytes) on device into *dev_ptr; close it;
 * copy n bytes between a device pointer and host memory (synchronous).
 * Each returns 0, or SHIM_ERR_DEVICE with err set (on a CPU-only build:
 * "CUDA is not available in this build"), SHIM_ERR_ARG for a bad handle. */
int shim_cuda_ipc_open(const void *handle, size_t handle_len, int device, void **dev_ptr, char *err,
                       size_t err_len);
void shim_cuda_ipc_close(void *dev_ptr, int device);
int shim_cuda_copy_to_host(void *dst, const void *dev_src, size_t n, int device, char *err,
                           size_t err_len);
int shim_cuda_copy_to_device(void *dev_dst, const void *src, size_t n, int device, char *err,
                             size_t err_len);

/* Load the model file at path onto opt->device in eval mode, with opt's
 * precision and memory format. The format comes from the file's extension
 * (see shim_format_of). On failure *out is NULL and err says why. */
int shim_model_load(const char *path, const struct shim_load_options *opt, shim_model **out,
                    char *err, size_t err_len);

/* The format that would load path, e.g. "torchscript", and its KServe v2
 * platform name in *platform (both static strings). Returns 0, or
 * SHIM_ERR_LOAD with err set when no format in this build takes the file. */
int shim_format_of(const char *path, const char **format, const char **platform, char *err,
                   size_t err_len);

/* What a loaded model says about itself. */
struct shim_model_info {
    const char *format;   /* "torchscript", "aoti" (static string) */
    const char *platform; /* its KServe v2 platform name (static string) */
    /* The batch sizes the model file accepts, when it records them (an
     * AOTInductor package exported by models/export_pt2.py); 0 and 0 when
     * it does not. batch_min == batch_max: a static batch. */
    int64_t batch_min, batch_max;
};

/* Describe a loaded model. Returns 0, or SHIM_ERR_ARG with info zeroed. */
int shim_model_describe(const shim_model *model, struct shim_model_info *info);

/* Capture one CUDA graph per batch size in the load options, shaped like
 * inputs (a template whose dim 0 is replaced by each batch size; its data is
 * not read). Later forwards of at most the largest captured batch replay
 * the smallest graph that holds them, padding the batch. Does nothing on a
 * CPU instance or without graph sizes. Returns 0, or a negative code with
 * err set. */
int shim_model_capture_graphs(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                              char *err, size_t err_len);

/* The GPU memory this instance needs, in bytes, measured from libtorch's
 * CUDA caching allocator (bytes allocated, not cached): its weights (the
 * growth over shim_model_load), its CUDA graphs' memory pool (the growth
 * over shim_model_capture_graphs) and the workspace of one forward shaped
 * like inputs (the peak over the allocation before it: activations,
 * cuBLAS/cuDNN workspaces). Each window holds a per-device lock against the
 * other instances' loads, captures and measurements; another instance's
 * forward in flight at the same time is counted too (an over-estimate).
 * Returns 0 with *bytes set, SHIM_ERR_DEVICE with err set on a CPU
 * instance, a build without CUDA or when the allocator's statistics cannot
 * be read (nothing is measured), or SHIM_ERR_FORWARD with err set (the
 * forward failed). */
int shim_model_gpu_memory(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                          uint64_t *bytes, char *err, size_t err_len);

/* Free a model (NULL is fine). */
void shim_model_free(shim_model *model);

/* Run forward on n_inputs tensors (copied to the model's device). On success
 * *out holds every output tensor on the CPU: a single tensor, the elements of
 * a tuple or list, or the values of a dict (named by their keys). */
int shim_model_forward(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                       shim_outputs **out, char *err, size_t err_len);

int shim_outputs_count(const shim_outputs *outputs);
/* Borrowed view of output i, valid until shim_outputs_free. */
int shim_outputs_get(const shim_outputs *outputs, int i, struct shim_tensor *view);
/* Name of output i: the dict key, or "" for positional outputs. */
const char *shim_outputs_name(const shim_outputs *outputs, int i);
void shim_outputs_free(shim_outputs *outputs);

/* Size in bytes of one element of dtype (0 for an invalid dtype). */
size_t shim_dtype_size(enum shim_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
