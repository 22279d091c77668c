/* v2_binding.h - the KServe v2 inference protocol bound to an inference
 * request, apart from any wire form: v2 inputs (by name, datatype, shape,
 * and either little-endian bytes, values already read, or BYTES images),
 * requested outputs (binary, classification), the request id, and the
 * reply's outputs as a neutral list of named tensors and classification
 * strings. Knows neither HTTP nor JSON nor protobuf: the wire forms
 * (v2_json.h for HTTP, v2_proto.h for gRPC) read their bytes and call in
 * here, so both bind a request by the same rules and checked sizes. */
#ifndef INFERD_V2_BINDING_H
#define INFERD_V2_BINDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image_batch.h"
#include "infer_request.h"
#include "model_repo.h"
#include "strbuf.h"

#define V2_CLASSIFICATION_MAX 1000000 /* largest top k a client may ask for */

/* What a v2 request asked for, kept until its reply is encoded. */
struct v2_request {
    char id[256];
    bool has_id;
    int n_outputs;                    /* 0: every output */
    char outputs[MODEL_MAX_IO][64];   /* requested output names, in order */
    bool binary[MODEL_MAX_IO];        /* per requested output */
    bool binary_all;                  /* binary_data_output */
    int classification[MODEL_MAX_IO]; /* per requested output: top k as BYTES (0: off) */
    struct image_request images;      /* BYTES inputs (encoded images) */
};

/* One decode in progress: the model's declared inputs and outputs, and
 * what is being filled. */
struct v2_binder {
    const struct model_config *cfg;
    long long max_image_pixels;
    struct v2_request *v2;     /* starts zeroed */
    struct infer_request *req; /* inputs, n_inputs and the prepare hook */
};

/* Start binding a request for cfg into v2 and req. Cannot fail. */
void v2_bind_begin(struct v2_binder *b, const struct model_config *cfg, long long max_image_pixels,
                   struct v2_request *v2, struct infer_request *req);

/* Set the request id (cut to fit). */
void v2_bind_id(struct v2_binder *b, const char *id);

/* The slot of the model's input called name, not given before. Returns
 * INFER_OK, or INFER_INVALID with err set (unknown name, given twice). */
enum infer_status v2_bind_input_slot(struct v2_binder *b, const char *name, int *slot, char *err,
                                     size_t err_len);

/* The datatype of input slot from its v2 name (not BYTES). Returns INFER_OK
 * or INFER_INVALID with err set. */
enum infer_status v2_bind_dtype(struct v2_binder *b, int slot, const char *datatype,
                                enum shim_dtype *dtype, char *err, size_t err_len);

/* Input slot as shape (ndim dims) of dtype, from len little-endian bytes at
 * data: the size must match, BOOL bytes must be 0 or 1, then the tensor is
 * converted to the declared datatype and its shape checked. borrow: data
 * outlives the request and is used in place when aligned. Returns INFER_OK,
 * or INFER_INVALID / INFER_INTERNAL (out of memory) with err set. */
enum infer_status v2_bind_raw(struct v2_binder *b, int slot, enum shim_dtype dtype,
                              const int64_t *shape, int ndim, const void *data, size_t len,
                              bool borrow, char *err, size_t err_len);

/* Input slot from count values already read into *t (its dtype; taken over
 * and freed on failure): the count must match shape, then as v2_bind_raw. */
enum infer_status v2_bind_values(struct v2_binder *b, int slot, struct tensor *t, size_t count,
                                 const int64_t *shape, int ndim, char *err, size_t err_len);

/* A BYTES input at slot: the image batch its elements go into (with
 * image_batch_add), or NULL with *status and err set (INFER_UNSUPPORTED: the
 * input is not declared as an image; INFER_INTERNAL: out of memory). */
struct image_batch *v2_bind_images(struct v2_binder *b, int slot, enum infer_status *status,
                                   char *err, size_t err_len);

/* BYTES elements of a binary form: each a 4-byte little-endian length and
 * that many bytes, len bytes in all, added to batch (borrowed: data outlives
 * the request). Returns INFER_OK or INFER_INVALID with err set. */
enum infer_status v2_bind_image_elements(struct image_batch *batch, const char *name,
                                         const uint8_t *data, size_t len, char *err,
                                         size_t err_len);

/* Close the BYTES input at slot: shape must count its elements; the image
 * headers are checked and the input's tensor shaped (the worker decodes).
 * Returns INFER_OK, or a status with err set. */
enum infer_status v2_bind_images_end(struct v2_binder *b, int slot, const int64_t *shape, int ndim,
                                     char *err, size_t err_len);

/* A requested output: name must be one of the model's; classification 0
 * (off) or a top k from 1 to V2_CLASSIFICATION_MAX. Returns INFER_OK or
 * INFER_INVALID with err set. */
enum infer_status v2_bind_output(struct v2_binder *b, const char *name, bool binary,
                                 long long classification, char *err, size_t err_len);

/* Every declared input given, batch dims agreeing. Returns INFER_OK or
 * INFER_INVALID with err set. infer_request_check runs after this. */
enum infer_status v2_bind_end(struct v2_binder *b, char *err, size_t err_len);

/* One output of a reply, ready for a wire form. */
struct v2_output {
    const char *name;     /* the worker's */
    const char *datatype; /* "FP32", ..., "BYTES" for classification */
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim;
    bool binary;                 /* asked for as binary (a JSON form's choice) */
    const struct tensor *tensor; /* its data, NULL for classification */
    /* Classification: n_strings elements, each a 4-byte little-endian
     * length then the text "score:index[:label]". */
    struct strbuf strings;
    int n_strings;
};

/* The outputs of req's reply as v2 asked: out[0..*n). Returns INFER_OK, or
 * INFER_INVALID (classification of an output that is no [batch, classes]
 * float tensor), INFER_INTERNAL (an asked-for output is missing) with err
 * set. Free with v2_outputs_free in every case. */
enum infer_status v2_outputs(const struct v2_request *v2, const struct model_config *cfg,
                             const struct infer_request *req, struct v2_output out[MODEL_MAX_IO],
                             int *n, char *err, size_t err_len);
void v2_outputs_free(struct v2_output *out, int n);

/* Free v2 and the images it holds (NULL: nothing). */
void v2_request_free(struct v2_request *v2);

#endif
