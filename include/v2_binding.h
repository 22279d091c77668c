/* v2_binding.h - the KServe v2 inference protocol bound to an inference
 * call, apart from any wire form and any transport. Inputs are bound by
 * name: the datatype, the shape and its checked size, the data (raw bytes,
 * values, or BYTES elements taken as encoded images), conversion to the
 * declared datatype and the declared shape; the outputs asked for by name
 * (binary or not, classification); and once the call has run, which
 * outputs to send in what order, and their classification strings. A wire
 * form reads its own bytes and feeds a struct v2_binder, then writes what
 * v2_plan_outputs says: v2_json.h is the JSON form (with the binary tensor
 * data extension); a protobuf form fills the same binder. An input or an
 * output may name a shared-memory region instead (v2_shm.h): the wire form
 * reads the parameters, the binder takes the holds. Knows no HTTP and no
 * JSON; runs alone in unit tests and fuzz targets. */
#ifndef INFERD_V2_BINDING_H
#define INFERD_V2_BINDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image_batch.h"
#include "infer_request.h"
#include "model_repo.h"
#include "v2_shm.h"

/* The classification extension's largest k. */
#define V2_CLASSIFICATION_MAX 1000000

/* What a v2 request holds until its reply is encoded, beyond the call's
 * own fields (the outputs it wants are the call's: infer_request.wanted). */
struct v2_request {
    char id[256];
    bool has_id;
    bool binary_all;             /* binary_data_output */
    struct image_request images; /* BYTES inputs (encoded images) */
    struct v2_shm shm;           /* holds on shared-memory regions, until freed */
};

/* Binds one request's inputs and outputs to a call. Fields are private to
 * v2_binding.c except shm and status. */
struct v2_binder {
    const struct model_config *cfg;
    long long max_image_pixels;
    struct v2_request *v2;
    struct infer_request *req;
    struct shm_table *shm;    /* public: set by the wire form (NULL: shared memory off) */
    enum infer_status status; /* why the last call that failed did */
    /* The input being bound, from v2_bind_input to v2_bind_input_end. */
    int slot;
    bool bytes; /* BYTES: encoded images */
    enum shim_dtype dtype;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim;
    int64_t numel;
    size_t nbytes;
    struct image_batch *images;
};

/* Start binding a request for the model cfg into req (inputs, n_inputs,
 * the prepare hook for images and shared memory) and v2 (what the reply
 * must hold, zeroed); b->shm starts NULL. */
void v2_bind_begin(struct v2_binder *b, const struct model_config *cfg, long long max_image_pixels,
                   struct v2_request *v2, struct infer_request *req);

/* Each function below returns 0, or -1 with err set and b->status saying
 * why: INFER_INVALID (the client's error), INFER_UNSUPPORTED (BYTES for an
 * input that takes no images, an image format inferd does not read),
 * INFER_INTERNAL (out of memory). */

/* Begin input name, sent as datatype (NULL: none sent). */
int v2_bind_input(struct v2_binder *b, const char *name, const char *datatype, char *err,
                  size_t err_len);
/* Its shape (each dim from 0 to 10^12, as the wire form read them). */
int v2_bind_shape(struct v2_binder *b, const int64_t *shape, int ndim, char *err, size_t err_len);
/* Its data as bytes in the datatype's layout, borrowed when aligned (they
 * must outlive the call); for BYTES, elements of a 4-byte little-endian
 * length and that many bytes. */
int v2_bind_raw(struct v2_binder *b, const void *data, size_t len, char *err, size_t err_len);
/* Its data in spec's part of a registered region of b->shm (instead of
 * raw or values; not for BYTES): the byte size must be the shape's; a hold
 * on the region lasts until v2_request_free. */
int v2_bind_shm_input(struct v2_binder *b, const struct shm_spec *spec, char *err, size_t err_len);
/* Its data as values of the sent datatype (a tensor of b->dtype whose
 * shape is its element count): taken over, on failure too. */
int v2_bind_values(struct v2_binder *b, struct tensor *values, char *err, size_t err_len);
/* One BYTES element; own: freed with the call (on failure too). */
int v2_bind_element(struct v2_binder *b, const uint8_t *data, size_t len, bool own, char *err,
                    size_t err_len);
/* End the input: the element count against the shape and the images'
 * headers (BYTES), or conversion to the declared datatype and the declared
 * shape. */
int v2_bind_input_end(struct v2_binder *b, char *err, size_t err_len);

/* An output asked for (into the call's wanted list): name, binary,
 * classification (top k: 1 to V2_CLASSIFICATION_MAX; 0: none). */
int v2_bind_output(struct v2_binder *b, const char *name, bool binary, long long classification,
                   char *err, size_t err_len);
/* The output just asked for goes into spec's part of a registered region
 * of b->shm (held until v2_request_free), not into the reply: it may not
 * be binary or classified. Its size is checked when it is written. */
int v2_bind_shm_output(struct v2_binder *b, const struct shm_spec *spec, char *err, size_t err_len);

/* Every declared input given, and the same batch size (dim 0) for all. */
int v2_bind_end(struct v2_binder *b, char *err, size_t err_len);

/* One output to send. */
struct v2_output_plan {
    const char *name;
    const struct tensor *t;
    bool binary;
    int classify;               /* top k as BYTES strings; 0: the tensor itself */
    const struct shm_view *shm; /* non-NULL: write it there (v2_shm_output_write), echo the
                                   region's parameters, send no data */
};

/* The outputs of req to send as the call wants them (req->wanted; none:
 * every output, binary when v2 asked for binary_data_output), in order
 * (MODEL_MAX_IO at most).
 * Returns INFER_OK, or INFER_INTERNAL with err set (an output asked for
 * that the model did not produce). */
enum infer_status v2_plan_outputs(const struct v2_request *v2, const struct infer_request *req,
                                  struct v2_output_plan *plan, int *n, char *err, size_t err_len);

/* Whether output name's tensor t can be classified (a floating-point
 * [batch, classes] or [classes] tensor): sets *k to at most the class count
 * and *rows to the batch (1 for [classes]). Returns INFER_OK, or
 * INFER_INVALID with err set. */
enum infer_status v2_classify_check(const struct tensor *t, const char *name, int *k, int64_t *rows,
                                    char *err, size_t err_len);

/* Triton's classification: the top k of each row of t (checked above) as
 * strings "score:index[:label]" (the raw output value, not a softmax),
 * handed to emit row by row, highest first. Returns 0, or -1 when out of
 * memory. */
int v2_classify(const struct tensor *t, const struct model_config *cfg, int k,
                void (*emit)(void *arg, const char *text, size_t len), void *arg);

/* Free v2, the images it holds and its holds on shared memory (NULL:
 * nothing). */
void v2_request_free(struct v2_request *v2);
/* The reply is encoded (outputs written into their regions) and about to
 * leave: let go of the shared memory regions the call holds, so that a
 * client that unregisters a region as soon as it has the answer finds it
 * free. Idempotent; v2_request_free still frees the rest. */
void v2_request_settle(struct v2_request *v2);

#endif
