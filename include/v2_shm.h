/* v2_shm.h - the KServe v2 protocol's shared-memory parameters
 * (shared_memory_region, shared_memory_offset, shared_memory_byte_size) bound
 * to a request: read them from a tensor's JSON, point an input tensor at its
 * region, write an output into its region, echo them in the reply. The
 * holds it takes on regions last until v2_shm_release, when the request
 * ends. The region logic itself is shm_region.h's, which a gRPC wire form
 * calls the same way with a struct shm_spec read from its own parameters. */
#ifndef INFERD_V2_SHM_H
#define INFERD_V2_SHM_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "bounds.h"
#include "shm_region.h"
#include "strbuf.h"
#include "tensor.h"

/* A v2 request's holds on shared memory. */
struct v2_shm {
    struct shm_view in[MODEL_MAX_IO];  /* per model input slot */
    struct shm_view out[MODEL_MAX_IO]; /* per requested output, in request order */
    bool any_in;
};

/* Whether tensor (an input or a requested output, as JSON) names a region
 * in its "parameters": returns 1 with spec filled, 0 when it does not, -1
 * with err set when the parameters are malformed or conflict (an input that
 * also has "data" or binary_data_size; an output that asks for
 * classification or binary data). name is the tensor's, for messages. */
int v2_shm_spec_json(const cJSON *tensor, bool input, const char *name, struct shm_spec *spec,
                     char *err, size_t err_len);

/* Bind input name (dtype, shape) to spec's part of its region: take a hold
 * in *view and set t to point at the mapped bytes (borrowed; copied when
 * misaligned for dtype or in CUDA memory). The byte size must be the
 * tensor's exactly. Returns 0, or -1 with err set (*status: 400, or 500). */
int v2_shm_input(struct shm_table *table, const struct shm_spec *spec, const char *name,
                 enum shim_dtype dtype, const int64_t *shape, int ndim, struct shm_view *view,
                 struct tensor *t, int *status, char *err, size_t err_len);

/* Take a hold on an output's region (checked again, with its real size, by
 * v2_shm_output). Returns 0, or -1 with err set (*status 400). */
int v2_shm_output_acquire(struct shm_table *table, const struct shm_spec *spec,
                          struct shm_view *view, int *status, char *err, size_t err_len);

/* Before a worker reads the inputs: every input region still holds its
 * bytes. Returns 0 or -1 with err set. */
int v2_shm_check_inputs(const struct v2_shm *s, char *err, size_t err_len);

/* Write output name (t) into view. Returns 0, or 400 (the region is too
 * small: both sizes in err) or 500 (the region shrank or a copy failed)
 * with err set. Any wire form; it then echoes the view's parameters. */
int v2_shm_output_write(const struct shm_view *view, const char *name, const struct tensor *t,
                        char *err, size_t err_len);

/* v2_shm_output_write, then append the output's JSON entry (name,
 * datatype, shape and the shared-memory parameters; no data) to sb.
 * Returns as v2_shm_output_write. */
int v2_shm_output(const struct shm_view *view, const char *name, const struct tensor *t,
                  struct strbuf *sb, char *err, size_t err_len);

/* Drop every hold. */
void v2_shm_release(struct v2_shm *s);

#endif
