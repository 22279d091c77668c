/* v2_proto.c - the KServe v2 protobuf wire form on the wire-neutral binding
 * (see v2_proto.h). */
#include "v2_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "shape.h"
#include "strbuf.h"

#define DIM_MAX 1000000000000LL /* as the JSON form: dims from 0 to 10^12 */

/* Fail as the client's error (err already set). */
static int invalid(struct v2_binder *b)
{
    b->status = INFER_INVALID;
    return -1;
}

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

/* The input being bound from its typed contents, each value checked for
 * the sent datatype. Returns 0, or -1 with err set and b->status. */
static int bind_contents(struct v2_binder *b, const Inference__InferTensorContents *c, char *err,
                         size_t err_len)
{
    const char *name = b->cfg->inputs[b->slot].name;
    enum shim_dtype dtype = b->dtype;
    struct typed_list list = typed_list_of(c, dtype);
    if (list.load == NULL || list.n != contents_count(c)) {
        snprintf(err, err_len, "input \"%s\": %s values go in contents.%s", name, dtype_name(dtype),
                 list.field);
        return invalid(b);
    }
    /* Check the count against the shape before allocating. */
    if ((int64_t)list.n != b->numel) {
        char text[128];
        shape_format(b->shape, b->ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %zu values but shape %s holds %lld", name, list.n,
                 text, (long long)b->numel);
        return invalid(b);
    }
    struct tensor t;
    int64_t flat = (int64_t)list.n;
    if (tensor_alloc(&t, dtype, 1, &flat) != 0) {
        snprintf(err, err_len, "out of memory");
        b->status = INFER_INTERNAL;
        return -1;
    }
    if (dtype == SHIM_INT64 && list.n) /* exact, past 2^53 too */
        memcpy(t.data, c->int64_contents, list.n * sizeof(int64_t));
    for (size_t i = 0; dtype != SHIM_INT64 && i < list.n; i++) {
        double v = list.load(c, i);
        if (dtype_check(v, dtype, i, err, err_len) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, err_len - n, " (input \"%s\")", name);
            tensor_free(&t);
            return invalid(b);
        }
        dtype_store(t.data, i, dtype, v);
    }
    return v2_bind_values(b, &t, err, err_len);
}

/* The BYTES input being bound (encoded images) from
 * contents.bytes_contents, borrowed from the message. */
static int bind_byte_contents(struct v2_binder *b, const Inference__InferTensorContents *c,
                              char *err, size_t err_len)
{
    if (c == NULL || c->n_bytes_contents != contents_count(c)) {
        snprintf(err, err_len, "input \"%s\": BYTES values go in contents.bytes_contents",
                 b->cfg->inputs[b->slot].name);
        return invalid(b);
    }
    static const uint8_t none[1];
    for (size_t i = 0; i < c->n_bytes_contents; i++) {
        const uint8_t *data = c->bytes_contents[i].data ? c->bytes_contents[i].data : none;
        if (v2_bind_element(b, data, c->bytes_contents[i].len, false, err, err_len) != 0)
            return -1;
    }
    return 0;
}

/* One of a tensor's InferParameter map entries by key (NULL: absent). The
 * input and output entry types are the same but for their names. */
#define FIND_PARAM(t, key_)                                                                        \
    do {                                                                                           \
        for (size_t p_ = 0; p_ < (t)->n_parameters; p_++)                                          \
            if (strcmp((t)->parameters[p_]->key, (key_)) == 0)                                     \
                found = (t)->parameters[p_]->value;                                                \
    } while (0)

static const Inference__InferParameter *
input_param(const Inference__ModelInferRequest__InferInputTensor *in, const char *key)
{
    const Inference__InferParameter *found = NULL;
    FIND_PARAM(in, key);
    return found;
}

static const Inference__InferParameter *
output_param(const Inference__ModelInferRequest__InferRequestedOutputTensor *out, const char *key)
{
    const Inference__InferParameter *found = NULL;
    FIND_PARAM(out, key);
    return found;
}

/* A byte count parameter (int64_param from 0, or uint64_param, up to 2^53
 * as the JSON form): absent gives 0, or an error when required. Returns 0 or
 * -1 with err set. */
static int count_param(const Inference__InferParameter *v, const char *key, bool required,
                       const char *name, uint64_t *out, char *err, size_t err_len)
{
    const uint64_t most = (uint64_t)1 << 53;
    *out = 0;
    if (v == NULL && !required)
        return 0;
    if (v && v->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM &&
        v->int64_param >= 0 && (uint64_t)v->int64_param <= most) {
        *out = (uint64_t)v->int64_param;
        return 0;
    }
    if (v &&
        v->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM &&
        v->uint64_param <= most) {
        *out = v->uint64_param;
        return 0;
    }
    snprintf(err, err_len, "\"%s\": %s must be an int64_param byte count from 0 to 2^53%s", name,
             key, v == NULL ? " (it is missing)" : "");
    return -1;
}

/* A tensor's shared-memory parameters (region, byte size, offset as
 * found) into spec. Returns 1 (in a region), 0 (not), or -1 with err set. */
static int shm_spec_of(const Inference__InferParameter *region,
                       const Inference__InferParameter *size,
                       const Inference__InferParameter *offset, const char *name,
                       struct shm_spec *spec, char *err, size_t err_len)
{
    if (region == NULL) {
        if (size != NULL || offset != NULL) {
            snprintf(err, err_len, "\"%s\": %s and %s need %s", name, V2_SHM_BYTE_SIZE,
                     V2_SHM_OFFSET, V2_SHM_REGION);
            return -1;
        }
        return 0;
    }
    memset(spec, 0, sizeof *spec);
    if (region->parameter_choice_case !=
            INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM ||
        !shm_name_valid(region->string_param)) {
        snprintf(err, err_len,
                 "\"%s\": %s must be a string_param naming a region (1 to %d letters, digits, "
                 "'.', '_' and '-')",
                 name, V2_SHM_REGION, SHM_NAME_MAX - 1);
        return -1;
    }
    snprintf(spec->name, sizeof spec->name, "%s", region->string_param);
    if (count_param(size, V2_SHM_BYTE_SIZE, true, name, &spec->byte_size, err, err_len) != 0 ||
        count_param(offset, V2_SHM_OFFSET, false, name, &spec->offset, err, err_len) != 0)
        return -1;
    return 1;
}

static int input_shm_spec(const Inference__ModelInferRequest__InferInputTensor *in,
                          const char *name, struct shm_spec *spec, char *err, size_t err_len)
{
    return shm_spec_of(input_param(in, V2_SHM_REGION), input_param(in, V2_SHM_BYTE_SIZE),
                       input_param(in, V2_SHM_OFFSET), name, spec, err, err_len);
}

/* One input: from its region when its parameters name one (shm: the spec,
 * else NULL), from raw (its raw_input_contents entry) when the request has
 * raw contents, else from its typed contents. Returns 0, or -1 with err set
 * and b->status. */
static int bind_input(struct v2_binder *b, const Inference__ModelInferRequest__InferInputTensor *in,
                      const struct shm_spec *shm, const ProtobufCBinaryData *raw, char *err,
                      size_t err_len)
{
    if (v2_bind_input(b, in->name, in->datatype[0] ? in->datatype : NULL, err, err_len) != 0)
        return -1;
    const char *name = b->cfg->inputs[b->slot].name;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(in, name, shape, &ndim, err, err_len) != 0)
        return invalid(b);
    if (v2_bind_shape(b, shape, ndim, err, err_len) != 0)
        return -1;
    int rc;
    if (shm != NULL && ((raw != NULL && raw->len != 0) ||
                        (in->contents != NULL && contents_count(in->contents) != 0))) {
        snprintf(err, err_len,
                 "input \"%s\" names a shared memory region and also carries data in the request",
                 name);
        rc = invalid(b);
    } else if (shm != NULL)
        rc = v2_bind_shm_input(b, shm, err, err_len);
    else if (raw != NULL)
        rc = v2_bind_raw(b, raw->data, raw->len, err, err_len);
    else if (b->bytes)
        rc = bind_byte_contents(b, in->contents, err, err_len);
    else if (in->contents == NULL) {
        snprintf(err, err_len, "input \"%s\" has neither raw_input_contents nor contents", name);
        rc = invalid(b);
    } else
        rc = bind_contents(b, in->contents, err, err_len);
    if (rc != 0)
        return -1;
    return v2_bind_input_end(b, err, err_len);
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

/* Read msg into b. raw_input_contents has an entry for every input (an
 * input in a region: an empty one), or only for those not in a region, in
 * order (as Triton's clients send it). Returns 0, or -1 with err set and
 * b->status. */
static int read_request(struct v2_binder *b, const Inference__ModelInferRequest *msg, char *err,
                        size_t err_len)
{
    if (msg->id[0]) {
        snprintf(b->v2->id, sizeof b->v2->id, "%s", msg->id);
        b->v2->has_id = true;
    }
    if (msg->n_inputs == 0) {
        snprintf(err, err_len, "the request has no inputs");
        return invalid(b);
    }
    if (msg->n_inputs > MODEL_MAX_IO) {
        snprintf(err, err_len, "the request has %zu inputs (at most %d)", msg->n_inputs,
                 MODEL_MAX_IO);
        return invalid(b);
    }
    struct shm_spec specs[MODEL_MAX_IO];
    bool in_shm[MODEL_MAX_IO];
    size_t n_shm = 0;
    for (size_t i = 0; i < msg->n_inputs; i++) {
        const char *name = msg->inputs[i]->name;
        int rc = input_shm_spec(msg->inputs[i], name, &specs[i], err, err_len);
        if (rc < 0)
            return invalid(b);
        in_shm[i] = rc == 1;
        n_shm += in_shm[i];
    }
    bool every = msg->n_raw_input_contents == msg->n_inputs;
    if (msg->n_raw_input_contents != 0 && !every &&
        msg->n_raw_input_contents != msg->n_inputs - n_shm) {
        snprintf(err, err_len,
                 "raw_input_contents has %zu entries for %zu inputs (%zu in shared memory)",
                 msg->n_raw_input_contents, msg->n_inputs, n_shm);
        return invalid(b);
    }
    for (size_t o = 0; o < msg->n_outputs; o++) {
        const Inference__ModelInferRequest__InferRequestedOutputTensor *out = msg->outputs[o];
        long long k;
        if (output_classification(out, &k, err, err_len) != INFER_OK)
            return invalid(b);
        struct shm_spec spec;
        int rc = shm_spec_of(output_param(out, V2_SHM_REGION), output_param(out, V2_SHM_BYTE_SIZE),
                             output_param(out, V2_SHM_OFFSET), out->name, &spec, err, err_len);
        if (rc < 0)
            return invalid(b);
        if (rc == 1 && k != 0) {
            snprintf(err, err_len,
                     "output \"%.64s\" names a shared memory region: it cannot also ask for "
                     "classification",
                     out->name);
            return invalid(b);
        }
        /* protobuf outputs are raw bytes (binary), or written into a region */
        if (v2_bind_output(b, out->name, rc == 0, k, err, err_len) != 0 ||
            (rc == 1 && v2_bind_shm_output(b, &spec, err, err_len) != 0))
            return -1;
    }
    size_t next_raw = 0;
    for (size_t i = 0; i < msg->n_inputs; i++) {
        const ProtobufCBinaryData *raw = NULL;
        if (msg->n_raw_input_contents != 0 && (every || !in_shm[i]))
            raw = &msg->raw_input_contents[every ? i : next_raw++];
        if (bind_input(b, msg->inputs[i], in_shm[i] ? &specs[i] : NULL, raw, err, err_len) != 0)
            return -1;
    }
    return v2_bind_end(b, err, err_len);
}

enum infer_status v2_proto_decode(const struct model_config *cfg, long long max_image_pixels,
                                  struct shm_table *shm, const Inference__ModelInferRequest *msg,
                                  struct v2_request *v2, struct infer_request *req, char *err,
                                  size_t err_len)
{
    struct v2_binder b;
    v2_bind_begin(&b, cfg, max_image_pixels, v2, req);
    b.shm = shm;
    return read_request(&b, msg, err, err_len) == 0 ? INFER_OK : b.status;
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

static void emit_class(void *arg, const char *text, size_t len)
{
    struct strbuf *sb = arg;
    uint8_t le[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
    strbuf_append(sb, le, 4);
    strbuf_append(sb, text, len);
}

/* Output o of the reply: its tensor row and its raw bytes (a classified
 * output's strings go into strings, which the caller frees). */
static enum infer_status encode_output(const struct v2_output_plan *o,
                                       const struct model_config *cfg,
                                       Inference__ModelInferResponse__InferOutputTensor *row,
                                       int64_t *shape, ProtobufCBinaryData *raw,
                                       struct strbuf *strings, char *err, size_t err_len)
{
    Inference__ModelInferResponse__InferOutputTensor init =
        INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    *row = init;
    row->name = (char *)o->name;
    row->shape = shape;
    if (o->classify == 0) {
        row->datatype = (char *)dtype_name(o->t->dtype);
        row->n_shape = (size_t)o->t->ndim;
        memcpy(shape, o->t->shape, (size_t)o->t->ndim * sizeof shape[0]);
        raw->data = o->t->data;
        raw->len = o->t->nbytes;
        return INFER_OK;
    }
    int k = o->classify;
    int64_t rows;
    enum infer_status s = v2_classify_check(o->t, o->name, &k, &rows, err, err_len);
    if (s != INFER_OK)
        return s;
    if (v2_classify(o->t, cfg, k, emit_class, strings) != 0 || strings->failed) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    row->datatype = "BYTES";
    row->n_shape = o->t->ndim == 2 ? 2 : 1;
    shape[0] = o->t->ndim == 2 ? rows : k;
    shape[1] = k;
    raw->data = (uint8_t *)strings->data;
    raw->len = strings->len;
    return INFER_OK;
}

/* An output's shared-memory parameters as its reply entry echoes them. */
struct shm_echo {
    Inference__ModelInferResponse__InferOutputTensor__ParametersEntry entry[3], *ptrs[3];
    Inference__InferParameter value[3];
};

/* Output o written into its region: its row carries the region's
 * parameters (byte size: the output's) and raw no bytes. */
static enum infer_status encode_shm_output(const struct v2_output_plan *o,
                                           Inference__ModelInferResponse__InferOutputTensor *row,
                                           int64_t *shape, ProtobufCBinaryData *raw,
                                           struct shm_echo *echo, char *err, size_t err_len)
{
    enum infer_status s = v2_shm_output_write(o->shm, o->name, o->t, err, err_len);
    if (s != INFER_OK)
        return s;
    Inference__ModelInferResponse__InferOutputTensor init =
        INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    *row = init;
    row->name = (char *)o->name;
    row->datatype = (char *)dtype_name(o->t->dtype);
    row->n_shape = (size_t)o->t->ndim;
    memcpy(shape, o->t->shape, (size_t)o->t->ndim * sizeof shape[0]);
    row->shape = shape;
    static const char *const keys[3] = {V2_SHM_REGION, V2_SHM_BYTE_SIZE, V2_SHM_OFFSET};
    int n = o->shm->offset != 0 ? 3 : 2;
    for (int i = 0; i < n; i++) {
        Inference__ModelInferResponse__InferOutputTensor__ParametersEntry e =
            INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__PARAMETERS_ENTRY__INIT;
        Inference__InferParameter v = INFERENCE__INFER_PARAMETER__INIT;
        echo->value[i] = v;
        echo->entry[i] = e;
        echo->entry[i].key = (char *)keys[i];
        echo->entry[i].value = &echo->value[i];
        echo->ptrs[i] = &echo->entry[i];
    }
    echo->value[0].parameter_choice_case =
        INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
    echo->value[0].string_param = (char *)o->shm->name;
    echo->value[1].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    echo->value[1].int64_param = (int64_t)o->t->nbytes;
    echo->value[2].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    echo->value[2].int64_param = (int64_t)o->shm->offset;
    row->n_parameters = (size_t)n;
    row->parameters = echo->ptrs;
    raw->data = NULL;
    raw->len = 0;
    return INFER_OK;
}

enum infer_status v2_proto_encode(const struct v2_request *v2, const struct model_config *cfg,
                                  const struct infer_request *req, bool stream, uint8_t **out,
                                  size_t *len, char *err, size_t err_len)
{
    struct v2_output_plan plan[MODEL_MAX_IO];
    Inference__ModelInferResponse__InferOutputTensor tensors[MODEL_MAX_IO];
    Inference__ModelInferResponse__InferOutputTensor *tensor_ptrs[MODEL_MAX_IO];
    int64_t shapes[MODEL_MAX_IO][TENSOR_MAX_DIMS];
    ProtobufCBinaryData raw[MODEL_MAX_IO];
    struct strbuf strings[MODEL_MAX_IO] = {0};
    struct shm_echo echo[MODEL_MAX_IO];
    int n = 0;
    *out = NULL;
    enum infer_status s = v2_plan_outputs(v2, req, plan, &n, err, err_len);
    for (int i = 0; s == INFER_OK && i < n; i++) {
        if (plan[i].shm != NULL)
            s = encode_shm_output(&plan[i], &tensors[i], shapes[i], &raw[i], &echo[i], err,
                                  err_len);
        else
            s = encode_output(&plan[i], cfg, &tensors[i], shapes[i], &raw[i], &strings[i], err,
                              err_len);
        tensor_ptrs[i] = &tensors[i];
    }
    if (s == INFER_OK) {
        char version[16];
        snprintf(version, sizeof version, "%d", cfg->version);
        Inference__ModelInferResponse reply = INFERENCE__MODEL_INFER_RESPONSE__INIT;
        reply.model_name = (char *)cfg->name;
        reply.model_version = version;
        reply.id = (char *)(v2->has_id ? v2->id : "");
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
        if (rc != 0) {
            snprintf(err, err_len, "out of memory");
            s = INFER_INTERNAL;
        }
    }
    for (int i = 0; i < n; i++)
        strbuf_free(&strings[i]);
    return s;
}

int v2_proto_stream_error(const char *message, uint8_t **out, size_t *len)
{
    Inference__ModelStreamInferResponse wrap = INFERENCE__MODEL_STREAM_INFER_RESPONSE__INIT;
    wrap.error_message = (char *)message;
    return v2_proto_pack(&wrap.base, out, len);
}
