/* v2_binding.c - the KServe v2 protocol bound to an inference call (see
 * v2_binding.h). */
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
    memset(b, 0, sizeof *b);
    b->cfg = cfg;
    b->max_image_pixels = max_image_pixels;
    b->v2 = v2;
    b->req = req;
    b->slot = -1;
    req->n_inputs = cfg->n_inputs;
}

/* Fail with status (err already set). */
static int fail(struct v2_binder *b, enum infer_status status)
{
    b->status = status;
    return -1;
}

/* The prepare hook of a v2 call with images or inputs in shared memory
 * (arg: its v2_request): check, on the stage thread, that the regions
 * still hold the inputs, then decode any images. */
static enum infer_status v2_prepare(struct infer_request *req, void *arg)
{
    struct v2_request *v2 = arg;
    if (v2->shm.any_in && v2_shm_check_inputs(&v2->shm, req->error, sizeof req->error) != 0)
        return INFER_INVALID;
    for (int i = 0; i < MODEL_MAX_IO; i++)
        if (v2->images.inputs[i] != NULL)
            return image_request_prepare(req, &v2->images);
    return INFER_OK;
}

int v2_bind_input(struct v2_binder *b, const char *name, const char *datatype, char *err,
                  size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    b->slot = -1;
    b->images = NULL;
    for (int i = 0; i < cfg->n_inputs; i++)
        if (strcmp(cfg->inputs[i].name, name) == 0)
            b->slot = i;
    if (b->slot < 0) {
        snprintf(err, err_len, "model %s has no input named \"%.64s\"", cfg->name, name);
        return fail(b, INFER_INVALID);
    }
    const struct io_spec *spec = &cfg->inputs[b->slot];
    if (tensor_is_set(&b->req->inputs[b->slot])) {
        snprintf(err, err_len, "input \"%s\" is given twice", spec->name);
        return fail(b, INFER_INVALID);
    }
    b->bytes = datatype != NULL && strcmp(datatype, "BYTES") == 0;
    if (b->bytes) {
        if (!spec->is_image) {
            snprintf(err, err_len,
                     "input \"%s\" is not declared as an image (no \"image\" in config.json): "
                     "BYTES is only for encoded images",
                     spec->name);
            return fail(b, INFER_UNSUPPORTED);
        }
        return 0;
    }
    if (datatype == NULL || dtype_from_name(datatype, &b->dtype) != 0) {
        snprintf(err, err_len,
                 "input \"%s\": \"datatype\" must be one of %s (or BYTES for an image input)",
                 spec->name, dtype_names_text());
        return fail(b, INFER_INVALID);
    }
    return 0;
}

int v2_bind_shape(struct v2_binder *b, const int64_t *shape, int ndim, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[b->slot].name;
    b->ndim = ndim;
    memcpy(b->shape, shape, (size_t)ndim * sizeof shape[0]);
    if (b->bytes) {
        b->numel = shape_numel(shape, ndim); /* -1 when too large: no count matches */
        return 0;
    }
    if (shape_size(shape, ndim, dtype_size(b->dtype), &b->numel, &b->nbytes) != 0) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\": shape %s of %s is too large", name, text,
                 dtype_name(b->dtype));
        return fail(b, INFER_INVALID);
    }
    return 0;
}

/* The image batch of the BYTES input being bound (made on first use). */
static struct image_batch *images_of(struct v2_binder *b, char *err, size_t err_len)
{
    if (b->images == NULL) {
        const struct io_spec *spec = &b->cfg->inputs[b->slot];
        b->images = image_request_slot(&b->v2->images, b->slot, &spec->image, b->max_image_pixels);
        if (b->images == NULL)
            snprintf(err, err_len, "out of memory");
    }
    return b->images;
}

int v2_bind_element(struct v2_binder *b, const uint8_t *data, size_t len, bool own, char *err,
                    size_t err_len)
{
    struct image_batch *images = images_of(b, err, err_len);
    if (images == NULL) {
        if (own)
            free((void *)data);
        return fail(b, INFER_INTERNAL);
    }
    if (image_batch_add(images, data, len, own) != 0) {
        snprintf(err, err_len, "input \"%s\": more than %d images", b->cfg->inputs[b->slot].name,
                 IMAGE_BATCH_MAX);
        return fail(b, INFER_INVALID);
    }
    return 0;
}

/* BYTES as raw data: each element a 4-byte little-endian length and that
 * many bytes. */
static int bind_raw_elements(struct v2_binder *b, const uint8_t *p, size_t size, char *err,
                             size_t err_len)
{
    const char *name = b->cfg->inputs[b->slot].name;
    const uint8_t *end = p + size;
    if (images_of(b, err, err_len) == NULL)
        return fail(b, INFER_INTERNAL);
    while (p < end) {
        if (end - p < 4) {
            snprintf(err, err_len, "input \"%s\": a BYTES element's 4-byte length is cut short",
                     name);
            return fail(b, INFER_INVALID);
        }
        uint32_t n =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        p += 4;
        if (n > (size_t)(end - p)) {
            snprintf(err, err_len,
                     "input \"%s\": a BYTES element declares %u bytes but %zu are left", name, n,
                     (size_t)(end - p));
            return fail(b, INFER_INVALID);
        }
        if (v2_bind_element(b, p, n, false, err, err_len) != 0)
            return -1;
        p += n;
    }
    return 0;
}

int v2_bind_raw(struct v2_binder *b, const void *data, size_t len, char *err, size_t err_len)
{
    static const uint8_t none[1];
    if (data == NULL) /* an empty bytes field (protobuf): no arithmetic on NULL */
        data = none;
    if (b->bytes)
        return bind_raw_elements(b, data, len, err, err_len);
    const char *name = b->cfg->inputs[b->slot].name;
    struct tensor *t = &b->req->inputs[b->slot];
    if (len != b->nbytes) {
        snprintf(err, err_len,
                 "input \"%s\": binary_data_size %zu does not match shape and "
                 "datatype %s (%zu bytes)",
                 name, len, dtype_name(b->dtype), b->nbytes);
        return fail(b, INFER_INVALID);
    }
    memset(t, 0, sizeof *t);
    t->dtype = b->dtype;
    t->ndim = b->ndim;
    memcpy(t->shape, b->shape, (size_t)b->ndim * sizeof b->shape[0]);
    t->nbytes = len;
    if ((uintptr_t)data % dtype_size(b->dtype) == 0) {
        t->data = (void *)data; /* no copy: the body outlives the call */
        t->memory = TENSOR_BODY;
    } else {
        t->data = malloc(len ? len : 1);
        if (t->data == NULL) {
            snprintf(err, err_len, "out of memory");
            return fail(b, INFER_INTERNAL);
        }
        memcpy(t->data, data, len);
    }
    for (size_t i = 0; b->dtype == SHIM_BOOL && i < len; i++) {
        if (((const uint8_t *)t->data)[i] > 1) {
            snprintf(err, err_len, "input \"%s\": BOOL byte %zu is not 0 or 1", name, i);
            tensor_free(t);
            return fail(b, INFER_INVALID);
        }
    }
    return 0;
}

int v2_bind_shm_input(struct v2_binder *b, const struct shm_spec *spec, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[b->slot].name;
    if (b->bytes) {
        snprintf(err, err_len, "input \"%s\": BYTES cannot come from shared memory", name);
        return fail(b, INFER_INVALID);
    }
    enum infer_status status = INFER_INVALID;
    if (v2_shm_input(b->shm, spec, name, b->dtype, b->shape, b->ndim, &b->v2->shm.in[b->slot],
                     &b->req->inputs[b->slot], &status, err, err_len) != 0)
        return fail(b, status);
    b->v2->shm.any_in = true;
    b->req->prepare = v2_prepare;
    b->req->prepare_arg = b->v2;
    return 0;
}

int v2_bind_values(struct v2_binder *b, struct tensor *values, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[b->slot].name;
    int64_t count = shape_numel(values->shape, values->ndim);
    if (count != b->numel) {
        char text[128];
        shape_format(b->shape, b->ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %lld values but shape %s holds %lld", name,
                 (long long)count, text, (long long)b->numel);
        tensor_free(values);
        return fail(b, INFER_INVALID);
    }
    struct tensor *t = &b->req->inputs[b->slot];
    *t = *values;
    t->ndim = b->ndim;
    memcpy(t->shape, b->shape, (size_t)b->ndim * sizeof b->shape[0]);
    return 0;
}

int v2_bind_input_end(struct v2_binder *b, char *err, size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    const struct io_spec *spec = &cfg->inputs[b->slot];
    struct tensor *t = &b->req->inputs[b->slot];
    if (b->bytes) {
        struct image_batch *images = images_of(b, err, err_len);
        if (images == NULL)
            return fail(b, INFER_INTERNAL);
        if (b->numel != images->n) {
            char text[128];
            shape_format(b->shape, b->ndim, text, sizeof text);
            snprintf(err, err_len, "input \"%s\" has %d BYTES elements but shape %s", spec->name,
                     images->n, text);
            return fail(b, INFER_INVALID);
        }
        enum infer_status status = image_batch_check(images, cfg->max_batch_size, t, err, err_len);
        if (status != INFER_OK)
            return fail(b, status);
        b->req->prepare = v2_prepare;
        b->req->prepare_arg = b->v2;
        return 0;
    }
    if (t->dtype != spec->dtype) {
        struct tensor converted;
        if (tensor_convert(t, spec->dtype, &converted, err, err_len) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, err_len - n, " (input \"%s\")", spec->name);
            return fail(b, INFER_INVALID);
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
        return fail(b, INFER_INVALID);
    }
    return 0;
}

int v2_bind_output(struct v2_binder *b, const char *name, bool binary, long long classification,
                   char *err, size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    struct infer_request *req = b->req;
    bool known = false;
    for (int o = 0; o < cfg->n_outputs; o++)
        known |= strcmp(cfg->outputs[o].name, name) == 0;
    if (!known || req->n_wanted == MODEL_MAX_IO) {
        snprintf(err, err_len, "model %s has no output named \"%.64s\"", cfg->name, name);
        return fail(b, INFER_INVALID);
    }
    if (classification < 0 || classification > V2_CLASSIFICATION_MAX) {
        snprintf(err, err_len, "output \"%.64s\": \"classification\" must be a positive integer",
                 name);
        return fail(b, INFER_INVALID);
    }
    struct infer_output_want *w = &req->wanted[req->n_wanted++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->binary = binary;
    w->classification = (int)classification;
    return 0;
}

int v2_bind_shm_output(struct v2_binder *b, const struct shm_spec *spec, char *err, size_t err_len)
{
    struct infer_request *req = b->req;
    int i = req->n_wanted - 1;
    if (i < 0) {
        snprintf(err, err_len, "a shared memory region names no output");
        return fail(b, INFER_INVALID);
    }
    struct infer_output_want *w = &req->wanted[i];
    if (w->binary || w->classification > 0) {
        snprintf(err, err_len,
                 "output \"%s\" names a shared memory region: it cannot also ask for "
                 "classification or binary_data",
                 w->name);
        return fail(b, INFER_INVALID);
    }
    enum infer_status status = INFER_INVALID;
    if (v2_shm_output_acquire(b->shm, spec, &b->v2->shm.out[i], &status, err, err_len) != 0)
        return fail(b, status);
    return 0;
}

int v2_bind_end(struct v2_binder *b, char *err, size_t err_len)
{
    const struct model_config *cfg = b->cfg;
    const struct infer_request *req = b->req;
    for (int i = 0; i < cfg->n_inputs; i++) {
        if (!tensor_is_set(&req->inputs[i])) {
            snprintf(err, err_len, "missing input \"%s\"", cfg->inputs[i].name);
            return fail(b, INFER_INVALID);
        }
        if (cfg->max_batch_size > 0 && req->inputs[i].shape[0] != req->inputs[0].shape[0]) {
            snprintf(err, err_len, "inputs disagree on the batch size (dim 0)");
            return fail(b, INFER_INVALID);
        }
    }
    return 0;
}

/* Index of the model's output called name, or -1. */
static int find_output(const struct infer_request *req, const char *name)
{
    for (int o = 0; o < req->n_outputs; o++)
        if (strcmp(req->output_names[o], name) == 0)
            return o;
    return -1;
}

enum infer_status v2_plan_outputs(const struct v2_request *v2, const struct infer_request *req,
                                  struct v2_output_plan *plan, int *n, char *err, size_t err_len)
{
    *n = 0;
    if (req->n_wanted == 0) {
        for (int o = 0; o < req->n_outputs; o++)
            plan[(*n)++] = (struct v2_output_plan){req->output_names[o], &req->outputs[o],
                                                   v2->binary_all, 0, NULL};
        return INFER_OK;
    }
    for (int i = 0; i < req->n_wanted; i++) {
        const struct infer_output_want *w = &req->wanted[i];
        int o = find_output(req, w->name);
        if (o < 0) {
            snprintf(err, err_len, "the model did not produce output \"%s\"", w->name);
            return INFER_INTERNAL;
        }
        const struct shm_view *shm = v2->shm.out[i].region != NULL ? &v2->shm.out[i] : NULL;
        plan[(*n)++] = (struct v2_output_plan){req->output_names[o], &req->outputs[o],
                                               (w->binary || v2->binary_all) && shm == NULL,
                                               shm == NULL ? w->classification : 0, shm};
    }
    return INFER_OK;
}

enum infer_status v2_classify_check(const struct tensor *t, const char *name, int *k, int64_t *rows,
                                    char *err, size_t err_len)
{
    bool floating = t->dtype == SHIM_FP32 || t->dtype == SHIM_FP64 || t->dtype == SHIM_FP16;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->ndim == 1 ? t->shape[0] : 0;
    if (!floating || cols <= 0 || cols > INT32_MAX) {
        snprintf(err, err_len,
                 "output \"%s\" cannot be classified: it must be a floating-point "
                 "[batch, classes] or [classes] tensor",
                 name);
        return INFER_INVALID;
    }
    if (*k > cols)
        *k = (int)cols;
    *rows = t->ndim == 2 ? t->shape[0] : 1;
    return INFER_OK;
}

/* What v2_classify's rows go to. */
struct classify_sink {
    const struct model_config *cfg;
    int64_t cols;
    void (*emit)(void *arg, const char *text, size_t len);
    void *arg;
};

static void classify_row(void *arg, int64_t row, const struct topk_entry *best, int n)
{
    const struct classify_sink *s = arg;
    bool labelled = s->cfg->n_labels == s->cols;
    (void)row;
    for (int j = 0; j < n; j++) {
        char text[320];
        int len = snprintf(text, sizeof text, "%f:%d%s%.256s", best[j].score, best[j].index,
                           labelled ? ":" : "", labelled ? s->cfg->labels[best[j].index] : "");
        if (len < 0)
            len = 0;
        if ((size_t)len >= sizeof text)
            len = (int)sizeof text - 1;
        s->emit(s->arg, text, (size_t)len);
    }
}

int v2_classify(const struct tensor *t, const struct model_config *cfg, int k,
                void (*emit)(void *arg, const char *text, size_t len), void *arg)
{
    struct classify_sink sink = {cfg, t->ndim == 2 ? t->shape[1] : t->shape[0], emit, arg};
    return tensor_topk_rows(t, k, 0, classify_row, &sink);
}

void v2_request_settle(struct v2_request *v2)
{
    if (v2)
        v2_shm_release(&v2->shm);
}

void v2_request_free(struct v2_request *v2)
{
    if (v2) {
        image_request_free(&v2->images);
        v2_shm_release(&v2->shm);
        free(v2);
    }
}
