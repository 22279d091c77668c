/* v2_binding.c - the KServe v2 protocol bound to an inference request,
 * apart from its wire forms (see v2_binding.h). */
#include "v2_binding.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shape.h"
#include "topk.h"

void v2_bind_begin(struct v2_binder *b, const struct model_config *cfg, long long max_image_pixels,
                   struct v2_request *v2, struct infer_request *req)
{
    b->cfg = cfg;
    b->max_image_pixels = max_image_pixels;
    b->v2 = v2;
    b->req = req;
    req->n_inputs = cfg->n_inputs;
}

void v2_bind_id(struct v2_binder *b, const char *id)
{
    snprintf(b->v2->id, sizeof b->v2->id, "%s", id);
    b->v2->has_id = true;
}

enum infer_status v2_bind_input_slot(struct v2_binder *b, const char *name, int *slot, char *err,
                                     size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    *slot = -1;
    for (int i = 0; i < cfg->n_inputs; i++)
        if (strcmp(cfg->inputs[i].name, name) == 0)
            *slot = i;
    if (*slot < 0) {
        snprintf(err, err_len, "model %s has no input named \"%.64s\"", cfg->name, name);
        return INFER_INVALID;
    }
    if (b->req->inputs[*slot].data != NULL) {
        snprintf(err, err_len, "input \"%s\" is given twice", cfg->inputs[*slot].name);
        return INFER_INVALID;
    }
    return INFER_OK;
}

enum infer_status v2_bind_dtype(struct v2_binder *b, int slot, const char *datatype,
                                enum shim_dtype *dtype, char *err, size_t err_len)
{
    if (datatype == NULL || dtype_from_name(datatype, dtype) != 0) {
        snprintf(err, err_len,
                 "input \"%s\": \"datatype\" must be one of BOOL, UINT8, INT8, "
                 "INT16, INT32, INT64, FP16, FP32, FP64 (or BYTES for an image input)",
                 b->cfg->inputs[slot].name);
        return INFER_INVALID;
    }
    return INFER_OK;
}

/* The bytes shape holds of dtype into *numel and *expect. Returns 0, or -1
 * with err set when the size overflows. */
static int checked_size(const char *name, enum shim_dtype dtype, const int64_t *shape, int ndim,
                        int64_t *numel, size_t *expect, char *err, size_t err_len)
{
    if (shape_size(shape, ndim, dtype_size(dtype), numel, expect) == 0)
        return 0;
    char text[128];
    shape_format(shape, ndim, text, sizeof text);
    snprintf(err, err_len, "input \"%s\": shape %s of %s is too large", name, text,
             dtype_name(dtype));
    return -1;
}

/* Convert input slot to its declared datatype and check its shape. */
static enum infer_status convert_and_check(struct v2_binder *b, int slot, char *err, size_t err_len)
{
    const struct io_spec *spec = &b->cfg->inputs[slot];
    struct tensor *t = &b->req->inputs[slot];
    if (t->dtype != spec->dtype) {
        struct tensor converted;
        if (tensor_convert(t, spec->dtype, &converted, err, err_len) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, err_len - n, " (input \"%s\")", spec->name);
            return INFER_INVALID;
        }
        tensor_free(t);
        *t = converted;
    }
    if (!shape_matches(spec->shape, spec->ndim, t->shape, t->ndim)) {
        char got[128], want[128];
        shape_format(t->shape, t->ndim, got, sizeof got);
        shape_format(spec->shape, spec->ndim, want, sizeof want);
        snprintf(err, err_len, "input \"%s\" has shape %s; the model takes %s", spec->name, got,
                 want);
        return INFER_INVALID;
    }
    return INFER_OK;
}

enum infer_status v2_bind_raw(struct v2_binder *b, int slot, enum shim_dtype dtype,
                              const int64_t *shape, int ndim, const void *data, size_t len,
                              bool borrow, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
    struct tensor *t = &b->req->inputs[slot];
    int64_t numel;
    size_t expect;
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
        snprintf(err, err_len, "input \"%s\": \"shape\" must have at most %d dims", name,
                 TENSOR_MAX_DIMS);
        return INFER_INVALID;
    }
    if (checked_size(name, dtype, shape, ndim, &numel, &expect, err, err_len) != 0)
        return INFER_INVALID;
    if (len != expect) {
        snprintf(err, err_len,
                 "input \"%s\": %zu bytes of data do not match shape and datatype %s (%zu bytes)",
                 name, len, dtype_name(dtype), expect);
        return INFER_INVALID;
    }
    for (size_t i = 0; dtype == SHIM_BOOL && i < len; i++) {
        if (((const uint8_t *)data)[i] > 1) {
            snprintf(err, err_len, "input \"%s\": BOOL byte %zu is not 0 or 1", name, i);
            return INFER_INVALID;
        }
    }
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
    t->nbytes = expect;
    if (borrow && data != NULL && (uintptr_t)data % dtype_size(dtype) == 0) {
        t->data = (void *)data; /* no copy: the body outlives the request */
        t->borrowed = true;
    } else {
        t->data = malloc(expect ? expect : 1);
        if (t->data == NULL) {
            snprintf(err, err_len, "out of memory");
            return INFER_INTERNAL;
        }
        if (expect)
            memcpy(t->data, data, expect);
    }
    return convert_and_check(b, slot, err, err_len);
}

enum infer_status v2_bind_values(struct v2_binder *b, int slot, struct tensor *t, size_t count,
                                 const int64_t *shape, int ndim, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
    int64_t numel;
    size_t expect;
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
        tensor_free(t);
        snprintf(err, err_len, "input \"%s\": \"shape\" must have at most %d dims", name,
                 TENSOR_MAX_DIMS);
        return INFER_INVALID;
    }
    if (checked_size(name, t->dtype, shape, ndim, &numel, &expect, err, err_len) != 0) {
        tensor_free(t);
        return INFER_INVALID;
    }
    if ((int64_t)count != numel) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %zu values but shape %s holds %lld", name, count,
                 text, (long long)numel);
        tensor_free(t);
        return INFER_INVALID;
    }
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
    b->req->inputs[slot] = *t;
    return convert_and_check(b, slot, err, err_len);
}

struct image_batch *v2_bind_images(struct v2_binder *b, int slot, enum infer_status *status,
                                   char *err, size_t err_len)
{
    const struct io_spec *spec = &b->cfg->inputs[slot];
    if (!spec->is_image) {
        snprintf(err, err_len,
                 "input \"%s\" is not declared as an image (no \"image\" in config.json): "
                 "BYTES is only for encoded images",
                 spec->name);
        *status = INFER_UNSUPPORTED;
        return NULL;
    }
    struct image_batch *batch =
        image_request_slot(&b->v2->images, slot, &spec->image, b->max_image_pixels);
    if (batch == NULL) {
        snprintf(err, err_len, "out of memory");
        *status = INFER_INTERNAL;
    }
    return batch;
}

enum infer_status v2_bind_image_elements(struct image_batch *batch, const char *name,
                                         const uint8_t *data, size_t len, char *err, size_t err_len)
{
    if (len == 0) /* no elements (data may be NULL) */
        return INFER_OK;
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        if (end - p < 4) {
            snprintf(err, err_len, "input \"%s\": a BYTES element's 4-byte length is cut short",
                     name);
            return INFER_INVALID;
        }
        uint32_t n =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        p += 4;
        if (n > (size_t)(end - p)) {
            snprintf(err, err_len,
                     "input \"%s\": a BYTES element declares %u bytes but %zu are left", name, n,
                     (size_t)(end - p));
            return INFER_INVALID;
        }
        if (image_batch_add(batch, p, n, false) != 0) {
            snprintf(err, err_len, "input \"%s\": more than %d images", name, IMAGE_BATCH_MAX);
            return INFER_INVALID;
        }
        p += n;
    }
    return INFER_OK;
}

/* image_batch_check's status (400, 415, 500) as an inference status. */
static enum infer_status image_status(int status)
{
    return status == 415 ? INFER_UNSUPPORTED : status == 500 ? INFER_INTERNAL : INFER_INVALID;
}

enum infer_status v2_bind_images_end(struct v2_binder *b, int slot, const int64_t *shape, int ndim,
                                     char *err, size_t err_len)
{
    const struct io_spec *spec = &b->cfg->inputs[slot];
    const struct image_batch *batch = b->v2->images.inputs[slot];
    if (batch == NULL) {
        snprintf(err, err_len, "input \"%s\" has no BYTES elements", spec->name);
        return INFER_INVALID;
    }
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS || shape_numel(shape, ndim) != batch->n) {
        char text[128] = "(too many dims)";
        if (ndim >= 0 && ndim <= TENSOR_MAX_DIMS)
            shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %d BYTES elements but shape %s", spec->name,
                 batch->n, text);
        return INFER_INVALID;
    }
    int status = image_batch_check(b->v2->images.inputs[slot], b->cfg->max_batch_size,
                                   &b->req->inputs[slot], err, err_len);
    if (status != 0)
        return image_status(status);
    b->req->prepare = image_request_prepare;
    b->req->prepare_arg = &b->v2->images;
    return INFER_OK;
}

enum infer_status v2_bind_output(struct v2_binder *b, const char *name, bool binary,
                                 long long classification, char *err, size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    struct v2_request *v2 = b->v2;
    bool known = false;
    for (int o = 0; o < cfg->n_outputs; o++)
        known |= strcmp(cfg->outputs[o].name, name) == 0;
    if (!known || v2->n_outputs == MODEL_MAX_IO) {
        snprintf(err, err_len, "model %s has no output named \"%.64s\"", cfg->name, name);
        return INFER_INVALID;
    }
    if (classification < 0 || classification > V2_CLASSIFICATION_MAX) {
        snprintf(err, err_len, "output \"%.64s\": \"classification\" must be a positive integer",
                 name);
        return INFER_INVALID;
    }
    snprintf(v2->outputs[v2->n_outputs], sizeof v2->outputs[0], "%s", name);
    v2->binary[v2->n_outputs] = binary;
    v2->classification[v2->n_outputs] = (int)classification;
    v2->n_outputs++;
    return INFER_OK;
}

enum infer_status v2_bind_end(struct v2_binder *b, char *err, size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    const struct infer_request *req = b->req;
    for (int i = 0; i < cfg->n_inputs; i++) {
        if (req->inputs[i].data == NULL) {
            snprintf(err, err_len, "missing input \"%s\"", cfg->inputs[i].name);
            return INFER_INVALID;
        }
        if (cfg->max_batch_size > 0 && req->inputs[i].shape[0] != req->inputs[0].shape[0]) {
            snprintf(err, err_len, "inputs disagree on the batch size (dim 0)");
            return INFER_INVALID;
        }
    }
    return INFER_OK;
}

/* Triton's classification extension: the top k of each row of t as BYTES
 * strings "score:index[:label]" (the raw output value, not a softmax), each
 * after its 4-byte little-endian length, into out. Returns INFER_OK, or a
 * status with err set. */
static enum infer_status classify(struct v2_output *out, const struct tensor *t,
                                  const struct model_config *cfg, int k, char *err, size_t err_len)
{
    bool floating = t->dtype == SHIM_FP32 || t->dtype == SHIM_FP64 || t->dtype == SHIM_FP16;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->ndim == 1 ? t->shape[0] : 0;
    if (!floating || cols <= 0 || cols > INT32_MAX) {
        snprintf(err, err_len,
                 "output \"%s\" cannot be classified: it must be a floating-point "
                 "[batch, classes] or [classes] tensor",
                 out->name);
        return INFER_INVALID;
    }
    if (k > cols)
        k = (int)cols;
    out->datatype = "BYTES";
    out->ndim = t->ndim == 2 ? 2 : 1;
    out->shape[0] = t->ndim == 2 ? rows : k;
    out->shape[1] = k;
    double *row = malloc((size_t)cols * sizeof *row);
    struct topk_entry *best = malloc((size_t)k * sizeof *best);
    if (row == NULL || best == NULL) {
        free(row);
        free(best);
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    int rc = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            row[c] = dtype_load(t->data, (size_t)(r * cols + c), t->dtype);
        int n = topk_select(row, (int)cols, k, 0, best);
        for (int j = 0; j < n; j++) {
            char text[320];
            int len = snprintf(text, sizeof text, "%f:%d%s%.256s", best[j].score, best[j].index,
                               cfg->n_labels == cols ? ":" : "",
                               cfg->n_labels == cols ? cfg->labels[best[j].index] : "");
            if (len < 0)
                len = 0;
            if ((size_t)len >= sizeof text)
                len = (int)sizeof text - 1;
            uint8_t le[4] = {(uint8_t)len, (uint8_t)(len >> 8), 0, 0};
            rc |= strbuf_append(&out->strings, le, 4);
            rc |= strbuf_append(&out->strings, text, (size_t)len);
            out->n_strings++;
        }
    }
    free(row);
    free(best);
    if (rc != 0) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    return INFER_OK;
}

/* Index of the worker's output called name, or -1. */
static int find_output(const struct infer_request *req, const char *name)
{
    for (int o = 0; o < req->n_outputs; o++)
        if (strcmp(req->output_names[o], name) == 0)
            return o;
    return -1;
}

enum infer_status v2_outputs(const struct v2_request *v2, const struct model_config *cfg,
                             const struct infer_request *req, struct v2_output out[MODEL_MAX_IO],
                             int *n, char *err, size_t err_len)
{
    int count = v2->n_outputs ? v2->n_outputs : req->n_outputs;
    *n = 0;
    for (int i = 0; i < count && i < MODEL_MAX_IO; i++) {
        int o = i;
        if (v2->n_outputs) {
            o = find_output(req, v2->outputs[i]);
            if (o < 0) {
                snprintf(err, err_len, "the model did not produce output \"%s\"", v2->outputs[i]);
                return INFER_INTERNAL;
            }
        }
        const struct tensor *t = &req->outputs[o];
        struct v2_output *p = &out[(*n)++];
        memset(p, 0, sizeof *p);
        p->name = req->output_names[o];
        p->binary = v2->binary_all || (v2->n_outputs && v2->binary[i]);
        int k = v2->n_outputs ? v2->classification[i] : 0;
        if (k > 0) {
            enum infer_status s = classify(p, t, cfg, k, err, err_len);
            if (s != INFER_OK)
                return s;
            continue;
        }
        p->datatype = dtype_name(t->dtype);
        p->ndim = t->ndim;
        memcpy(p->shape, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        p->tensor = t;
    }
    return INFER_OK;
}

void v2_outputs_free(struct v2_output *out, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_free(&out[i].strings);
}

void v2_request_free(struct v2_request *v2)
{
    if (v2) {
        image_request_free(&v2->images);
        free(v2);
    }
}
