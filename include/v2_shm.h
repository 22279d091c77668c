/* v2_shm.h - the KServe v2 protocol's shared-memory parameters
 * (shared_memory_region, shared_memory_offset, shared_memory_byte_size) bound
 * to a call, apart from any wire form: point an input tensor at its region
 * (memory TENSOR_SHARED), hold an output's region and write the output into
 * it. The holds it takes on regions last until v2_shm_release, when the
 * request ends. A wire form reads the parameters into a struct shm_spec
 * (v2_json.h: from a tensor's JSON "parameters"; a protobuf form from its
 * InferParameter map) and binds them through v2_binding.h's
 * v2_bind_shm_input and v2_bind_shm_output, which call this module; the
 * region logic itself is shm_region.h's. */
#ifndef INFERD_V2_SHM_H
#define INFERD_V2_SHM_H

#include <stdbool.h>
#include <stddef.h>

#include "bounds.h"
#include "infer_request.h"
#include "shm_region.h"
#include "tensor.h"

/* The parameters' names, the same in every wire form. */
#define V2_SHM_REGION "shared_memory_region"
#define V2_SHM_BYTE_SIZE "shared_memory_byte_size"
#define V2_SHM_OFFSET "shared_memory_offset"

/* A v2 request's holds on shared memory. */
struct v2_shm {
    struct shm_view in[MODEL_MAX_IO];  /* per model input slot */
    struct shm_view out[MODEL_MAX_IO]; /* per requested output, in request order */
    bool any_in;
};

/* Bind input name (dtype, shape) to spec's part of its region: take a hold
 * in *view and set t to point at the mapped bytes (memory TENSOR_SHARED;
 * copied to the heap when misaligned for dtype or in CUDA memory). The byte
 * size must be the tensor's exactly. Returns 0, or -1 with err set and
 * *status INFER_INVALID (the client's error) or INFER_INTERNAL. */
int v2_shm_input(struct shm_table *table, const struct shm_spec *spec, const char *name,
                 enum shim_dtype dtype, const int64_t *shape, int ndim, struct shm_view *view,
                 struct tensor *t, enum infer_status *status, char *err, size_t err_len);

/* Take a hold on an output's region (checked again, with its real size, by
 * v2_shm_output_write). Returns 0, or -1 with err set and *status as
 * v2_shm_input's. */
int v2_shm_output_acquire(struct shm_table *table, const struct shm_spec *spec,
                          struct shm_view *view, enum infer_status *status, char *err,
                          size_t err_len);

/* Before a worker reads the inputs: every input region still holds its
 * bytes. Returns 0 or -1 with err set. */
int v2_shm_check_inputs(const struct v2_shm *s, char *err, size_t err_len);

/* Write output name (t) into view. Returns INFER_OK, or INFER_INVALID (the
 * region is too small: both sizes in err) or INFER_INTERNAL (the region
 * shrank or a copy failed) with err set. Any wire form; it then echoes the
 * view's parameters in its own form. */
enum infer_status v2_shm_output_write(const struct shm_view *view, const char *name,
                                      const struct tensor *t, char *err, size_t err_len);

/* Drop every hold. */
void v2_shm_release(struct v2_shm *s);

#endif
