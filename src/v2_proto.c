/* v2_proto.c - the KServe v2 protobuf wire form on the wire-neutral binding
 * (see v2_proto.h). */
#include "v2_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shape.h"

#define DIM_MAX 1000000000000LL /* as the JSON form: dims from 0 to 10^12 */

/* An input's shape: at most TENSOR_MAX_DIMS dims from 0 to 10^12. Returns
 * 0, or -1 with err set. */
static int input_shape(const Inference__ModelInferRequest__InferInputTensor *in, const char *name,
                       int64_t *shape, int *ndim, char *err, size_t err_len)
{
    if (in->n_shape > TENSOR_MAX_DIMS) {
        snprintf(err, err_len, "input \"%s\": \"shape\" must have at most %d dims", name,
                 TENSOR_MAX_DIMS);
        return -1;
    }
    for (size_t d = 0; d < in->n_shape; d++) {
        if (in->shape[d] < 0 || in->shape[d] > DIM_MAX) {
            snprintf(err, err_len, "input \"%s\": \"shape\" dims must be integers from 0 to 10^12",
                     name);
            return -1;
        }
        shape[d] = in->shape[d];
    }
    *ndim = (int)in->n_shape;
    return 0;
}

/* The typed contents list that holds dtype's values: its count, and a
 * loader of value i as a double. */
struct typed_list {
    size_t n;
    const char *field;
    double (*load)(const Inference__InferTensorContents *c, size_t i);
};

static double load_bool(const Inference__InferTensorContents *c, size_t i)
{
    return c->bool_contents[i] ? 1 : 0;
}
static double load_int(const Inference__InferTensorContents *c, size_t i)
{
    return c->int_contents[i];
}
static double load_int64(const Inference__InferTensorContents *c, size_t i)
{
    return (double)c->int64_contents[i];
}
static double load_uint(const Inference__InferTensorContents *c, size_t i)
{
    return c->uint_contents[i];
}
static double load_fp32(const Inference__InferTensorContents *c, size_t i)
{
    return c->fp32_contents[i];
}
static double load_fp64(const Inference__InferTensorContents *c, size_t i)
{
    return c->fp64_contents[i];
}

static struct typed_list typed_list_of(const Inference__InferTensorContents *c,
                                       enum shim_dtype dtype)
{
    switch (dtype) {
    case SHIM_BOOL: return (struct typed_list){c->n_bool_contents, "bool_contents", load_bool};
    case SHIM_INT8:
    case SHIM_INT16:
    case SHIM_INT32: return (struct typed_list){c->n_int_contents, "int_contents", load_int};
    case SHIM_INT64: return (struct typed_list){c->n_int64_contents, "int64_contents", load_int64};
    case SHIM_UINT8: return (struct typed_list){c->n_uint_contents, "uint_contents", load_uint};
    case SHIM_FP16:
    case SHIM_FP32: return (struct typed_list){c->n_fp32_contents, "fp32_contents", load_fp32};
    case SHIM_FP64: return (struct typed_list){c->n_fp64_contents, "fp64_contents", load_fp64};
    default: break;
    }
    return (struct typed_list){0, "contents", NULL};
}

/* How many values c holds in all its lists. */
static size_t contents_count(const Inference__InferTensorContents *c)
{
    return c->n_bool_contents + c->n_int_contents + c->n_int64_contents + c->n_uint_contents +
           c->n_uint64_contents + c->n_fp32_contents + c->n_fp64_contents + c->n_bytes_contents;
}

/* Input slot from its typed contents, each value checked for dtype. */
static enum infer_status bind_contents(struct v2_binder *b, int slot, enum shim_dtype dtype,
                                       const Inference__InferTensorContents *c,
                                       const int64_t *shape, int ndim, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
    struct typed_list list = typed_list_of(c, dtype);
    if (list.load == NULL || list.n != contents_count(c)) {
        snprintf(err, err_len, "input \"%s\": %s values go in contents.%s", name, dtype_name(dtype),
                 list.field);
        return INFER_INVALID;
    }
    /* Check the count against the shape before allocating. */
    if (shape_numel(shape, ndim) != (int64_t)list.n) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %zu values but shape %s holds %lld", name, list.n,
                 text, (long long)shape_numel(shape, ndim));
        return INFER_INVALID;
    }
    struct tensor t;
    int64_t flat = (int64_t)list.n;
    if (tensor_alloc(&t, dtype, 1, &flat) != 0) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    if (dtype == SHIM_INT64 && list.n) /* exact, past 2^53 too */
        memcpy(t.data, c->int64_contents, list.n * sizeof(int64_t));
    for (size_t i = 0; dtype != SHIM_INT64 && i < list.n; i++) {
        double v = list.load(c, i);
        if (dtype_check(v, dtype, i, err, err_len) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, err_len - n, " (input \"%s\")", name);
            tensor_free(&t);
            return INFER_INVALID;
        }
        dtype_store(t.data, i, dtype, v);
    }
    return v2_bind_values(b, slot, &t, list.n, shape, ndim, err, err_len);
}

/* A BYTES input: encoded images, from raw (length-prefixed elements) or
 * from contents.bytes_contents. */
static enum infer_status bind_images(struct v2_binder *b, int slot,
                                     const Inference__ModelInferRequest__InferInputTensor *in,
                                     const ProtobufCBinaryData *raw, const int64_t *shape, int ndim,
                                     char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
    enum infer_status s = INFER_INVALID;
    struct image_batch *batch = v2_bind_images(b, slot, &s, err, err_len);
    if (batch == NULL)
        return s;
    if (raw != NULL) {
        s = v2_bind_image_elements(batch, name, raw->data, raw->len, err, err_len);
        if (s != INFER_OK)
            return s;
    } else {
        const Inference__InferTensorContents *c = in->contents;
        if (c == NULL || c->n_bytes_contents != contents_count(c)) {
            snprintf(err, err_len, "input \"%s\": BYTES values go in contents.bytes_contents",
                     name);
            return INFER_INVALID;
        }
        for (size_t i = 0; i < c->n_bytes_contents; i++) {
            if (image_batch_add(batch, c->bytes_contents[i].data, c->bytes_contents[i].len,
                                false) != 0) {
                snprintf(err, err_len, "input \"%s\": more than %d images", name, IMAGE_BATCH_MAX);
                return INFER_INVALID;
            }
        }
    }
    return v2_bind_images_end(b, slot, shape, ndim, err, err_len);
}

static enum infer_status bind_input(struct v2_binder *b,
                                    const Inference__ModelInferRequest__InferInputTensor *in,
                                    const ProtobufCBinaryData *raw, char *err, size_t err_len)
{
    int slot;
    enum infer_status s = v2_bind_input_slot(b, in->name, &slot, err, err_len);
    if (s != INFER_OK)
        return s;
    const char *name = b->cfg->inputs[slot].name;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(in, name, shape, &ndim, err, err_len) != 0)
        return INFER_INVALID;
    if (strcmp(in->datatype, "BYTES") == 0)
        return bind_images(b, slot, in, raw, shape, ndim, err, err_len);
    enum shim_dtype dtype;
    s = v2_bind_dtype(b, slot, in->datatype, &dtype, err, err_len);
    if (s != INFER_OK)
        return s;
    if (raw != NULL)
        return v2_bind_raw(b, slot, dtype, shape, ndim, raw->data, raw->len, true, err, err_len);
    if (in->contents == NULL) {
        snprintf(err, err_len, "input \"%s\" has neither raw_input_contents nor contents", name);
        return INFER_INVALID;
    }
    return bind_contents(b, slot, dtype, in->contents, shape, ndim, err, err_len);
}

/* The "classification" parameter of a requested output: 0 when absent. */
static enum infer_status
output_classification(const Inference__ModelInferRequest__InferRequestedOutputTensor *out,
                      long long *k, char *err, size_t err_len)
{
    *k = 0;
    for (size_t p = 0; p < out->n_parameters; p++) {
        const Inference__InferParameter *v = out->parameters[p]->value;
        if (strcmp(out->parameters[p]->key, "classification") != 0)
            continue;
        long long n = -1;
        if (v &&
            v->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM)
            n = v->int64_param;
        else if (v &&
                 v->parameter_choice_case ==
                     INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM &&
                 v->uint64_param <= V2_CLASSIFICATION_MAX)
            n = (long long)v->uint64_param;
        if (n < 1 || n > V2_CLASSIFICATION_MAX) {
            snprintf(err, err_len,
                     "output \"%.64s\": \"classification\" must be a positive integer", out->name);
            return INFER_INVALID;
        }
        *k = n;
    }
    return INFER_OK;
}

enum infer_status v2_proto_decode(const struct model_config *cfg, long long max_image_pixels,
                                  const Inference__ModelInferRequest *msg, struct v2_request *v2,
                                  struct infer_request *req, char *err, size_t err_len)
{
    struct v2_binder b;
    v2_bind_begin(&b, cfg, max_image_pixels, v2, req);
    if (msg->id[0])
        v2_bind_id(&b, msg->id);
    if (msg->n_inputs == 0) {
        snprintf(err, err_len, "the request has no inputs");
        return INFER_INVALID;
    }
    if (msg->n_raw_input_contents != 0 && msg->n_raw_input_contents != msg->n_inputs) {
        snprintf(err, err_len, "raw_input_contents has %zu entries for %zu inputs",
                 msg->n_raw_input_contents, msg->n_inputs);
        return INFER_INVALID;
    }
    enum infer_status s;
    for (size_t o = 0; o < msg->n_outputs; o++) {
        long long k;
        s = output_classification(msg->outputs[o], &k, err, err_len);
        if (s == INFER_OK)
            s = v2_bind_output(&b, msg->outputs[o]->name, true, k, err, err_len);
        if (s != INFER_OK)
            return s;
    }
    for (size_t i = 0; i < msg->n_inputs; i++) {
        const ProtobufCBinaryData *raw =
            msg->n_raw_input_contents ? &msg->raw_input_contents[i] : NULL;
        s = bind_input(&b, msg->inputs[i], raw, err, err_len);
        if (s != INFER_OK)
            return s;
    }
    return v2_bind_end(&b, err, err_len);
}

int v2_proto_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    *out = malloc(*len ? *len : 1);
    if (*out == NULL)
        return -1;
    protobuf_c_message_pack(msg, *out);
    return 0;
}

enum infer_status v2_proto_encode(const struct v2_request *v2, const struct model_config *cfg,
                                  const struct infer_request *req, bool stream, uint8_t **out,
                                  size_t *len, char *err, size_t err_len)
{
    struct v2_output outs[MODEL_MAX_IO];
    Inference__ModelInferResponse__InferOutputTensor tensors[MODEL_MAX_IO];
    Inference__ModelInferResponse__InferOutputTensor *tensor_ptrs[MODEL_MAX_IO];
    ProtobufCBinaryData raw[MODEL_MAX_IO];
    int n = 0;
    *out = NULL;
    enum infer_status s = v2_outputs(v2, cfg, req, outs, &n, err, err_len);
    if (s != INFER_OK) {
        v2_outputs_free(outs, n);
        return s;
    }
    char version[16];
    snprintf(version, sizeof version, "%d", cfg->version);
    Inference__ModelInferResponse reply = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    reply.model_name = (char *)cfg->name;
    reply.model_version = version;
    reply.id = (char *)(v2->has_id ? v2->id : "");
    for (int i = 0; i < n; i++) {
        Inference__ModelInferResponse__InferOutputTensor init =
            INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
        tensors[i] = init;
        tensors[i].name = (char *)outs[i].name;
        tensors[i].datatype = (char *)outs[i].datatype;
        tensors[i].n_shape = (size_t)outs[i].ndim;
        tensors[i].shape = outs[i].shape;
        tensor_ptrs[i] = &tensors[i];
        raw[i].data = outs[i].tensor ? outs[i].tensor->data : (uint8_t *)outs[i].strings.data;
        raw[i].len = outs[i].tensor ? outs[i].tensor->nbytes : outs[i].strings.len;
    }
    reply.n_outputs = (size_t)n;
    reply.outputs = tensor_ptrs;
    reply.n_raw_output_contents = (size_t)n;
    reply.raw_output_contents = raw;
    int rc;
    if (stream) {
        Inference__ModelStreamInferResponse wrap = INFERENCE__MODEL_STREAM_INFER_RESPONSE__INIT;
        wrap.infer_response = &reply;
        rc = v2_proto_pack(&wrap.base, out, len);
    } else {
        rc = v2_proto_pack(&reply.base, out, len);
    }
    v2_outputs_free(outs, n);
    if (rc != 0) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    return INFER_OK;
}

int v2_proto_stream_error(const char *message, uint8_t **out, size_t *len)
{
    Inference__ModelStreamInferResponse wrap = INFERENCE__MODEL_STREAM_INFER_RESPONSE__INIT;
    wrap.error_message = (char *)message;
    return v2_proto_pack(&wrap.base, out, len);
}
