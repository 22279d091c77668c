/* v2_binding.c - the KServe v2 protocol bound to an inference request
 * (see v2_binding.h). */
#include "v2_binding.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json_numbers.h"
#include "shape.h"
#include "tensor_json.h"
#include "topk.h"

/* What the decoder works with. */
struct v2_decoder {
    const struct model_config *cfg;
    long long max_image_pixels;
    struct v2_request *v2;
    struct infer_request *req;
    struct shm_table *shm; /* NULL: shared memory off */
};

static bool param_true(const cJSON *params, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, key));
}

/* The binary part of the body: [start, end), consumed in input order. */
struct binary_cursor {
    const char *next, *end;
};

/* Take the next binary_data_size bytes (size_item) of input name from the
 * body's binary part: *start and *size. Returns 0, or -1 with err when the
 * request has no binary part, the size is not a byte count, or the body holds
 * fewer bytes. */
static int binary_take(struct binary_cursor *bin, const cJSON *size_item, const char *name,
                       const char **start, size_t *size, char *err, size_t err_len)
{
    if (bin->next == NULL) {
        snprintf(err, err_len,
                 "input \"%s\" has binary_data_size but the request has no "
                 "Inference-Header-Content-Length header",
                 name);
        return -1;
    }
    double d = cJSON_IsNumber(size_item) ? size_item->valuedouble : -1;
    if (!(d >= 0) || d >= 0x1p63 || d != (double)(size_t)d) {
        snprintf(err, err_len, "input \"%s\": binary_data_size must be a byte count", name);
        return -1;
    }
    size_t left = (size_t)(bin->end - bin->next);
    if ((size_t)d > left) {
        snprintf(err, err_len,
                 "input \"%s\": body truncated: %zu bytes of binary data left, %zu needed", name,
                 left, (size_t)d);
        return -1;
    }
    *start = bin->next;
    *size = (size_t)d;
    bin->next += *size;
    return 0;
}

static int parse_shape(const struct json_doc *doc, const cJSON *item, int64_t *shape, int *ndim,
                       const char *name, char *err, size_t err_len)
{
    if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 0) {
        *ndim = 0; /* a scalar */
        return 0;
    }
    switch (shape_from_array(json_doc_array(doc, item), 0, TENSOR_MAX_DIMS, shape, ndim)) {
    case SHAPE_OK: return 0;
    case SHAPE_NOT_LIST:
        snprintf(err, err_len, "input \"%s\": \"shape\" must be an array of at most %d integers",
                 name, TENSOR_MAX_DIMS);
        return -1;
    case SHAPE_BAD_DIM:
        snprintf(err, err_len, "input \"%s\": \"shape\" dims must be integers from 0 to 10^12",
                 name);
        return -1;
    }
    return -1;
}

/* Decode the data of one input into t (in the request's datatype). */
static int decode_input_data(const struct json_doc *doc, const cJSON *input, const char *name,
                             enum shim_dtype dtype, const int64_t *shape, int ndim,
                             struct binary_cursor *bin, struct tensor *t, char *err, size_t err_len)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(input, "parameters");
    const cJSON *size_item = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(input, "data");
    int64_t numel;
    size_t expect;
    if (shape_size(shape, ndim, dtype_size(dtype), &numel, &expect) != 0) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\": shape %s of %s is too large", name, text,
                 dtype_name(dtype));
        return -1;
    }
    if (size_item != NULL) {
        if (data != NULL) {
            snprintf(err, err_len, "input \"%s\" has both \"data\" and binary_data_size", name);
            return -1;
        }
        const char *start;
        size_t size;
        if (binary_take(bin, size_item, name, &start, &size, err, err_len) != 0)
            return -1;
        if (size != expect) {
            snprintf(err, err_len,
                     "input \"%s\": binary_data_size %zu does not match shape and "
                     "datatype %s (%zu bytes)",
                     name, size, dtype_name(dtype), expect);
            return -1;
        }
        memset(t, 0, sizeof *t);
        t->dtype = dtype;
        t->ndim = ndim;
        memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
        t->nbytes = expect;
        if ((uintptr_t)start % dtype_size(dtype) == 0) {
            t->data = (void *)start; /* no copy: the body outlives the request */
            t->borrowed = true;
        } else {
            t->data = malloc(expect ? expect : 1);
            if (t->data == NULL) {
                snprintf(err, err_len, "out of memory");
                return -1;
            }
            memcpy(t->data, start, expect);
        }
        for (size_t i = 0; dtype == SHIM_BOOL && i < expect; i++) {
            if (((const uint8_t *)t->data)[i] > 1) {
                snprintf(err, err_len, "input \"%s\": BOOL byte %zu is not 0 or 1", name, i);
                tensor_free(t);
                return -1;
            }
        }
        return 0;
    }
    const struct num_array *a = json_doc_array(doc, data);
    if (a == NULL) {
        snprintf(err, err_len, "input \"%s\" needs \"data\": an array of %s values, nested or flat",
                 name, dtype_name(dtype));
        return -1;
    }
    if (tensor_json_from_array(a, dtype, t, err, err_len) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, err_len - n, " (input \"%s\")", name);
        return -1;
    }
    if ((int64_t)a->count != numel) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %zu values but shape %s holds %lld", name,
                 a->count, text, (long long)numel);
        tensor_free(t);
        return -1;
    }
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
    return 0;
}

/* The elements of a binary BYTES input: each a 4-byte little-endian length
 * and that many bytes, size bytes in all. Returns 0 or -1 with err. */
static int add_binary_images(struct image_batch *b, struct binary_cursor *bin,
                             const cJSON *size_item, const char *name, char *err, size_t err_len)
{
    const char *start;
    size_t size;
    if (binary_take(bin, size_item, name, &start, &size, err, err_len) != 0)
        return -1;
    const uint8_t *p = (const uint8_t *)start, *end = p + size;
    while (p < end) {
        if (end - p < 4) {
            snprintf(err, err_len, "input \"%s\": a BYTES element's 4-byte length is cut short",
                     name);
            return -1;
        }
        uint32_t n =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        p += 4;
        if (n > (size_t)(end - p)) {
            snprintf(err, err_len,
                     "input \"%s\": a BYTES element declares %u bytes but %zu are left", name, n,
                     (size_t)(end - p));
            return -1;
        }
        if (image_batch_add(b, p, n, false) != 0) {
            snprintf(err, err_len, "input \"%s\": more than %d images", name, IMAGE_BATCH_MAX);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* The elements of a JSON BYTES input: base64 strings, in a flat or nested
 * array (depth at most TENSOR_MAX_DIMS). Returns 0 or -1. */
static int add_base64_images(struct image_batch *b, const cJSON *data, const char *name, char *err,
                             size_t err_len, int depth)
{
    const cJSON *item;
    if (!cJSON_IsArray(data) || depth > TENSOR_MAX_DIMS) {
        snprintf(err, err_len, "input \"%s\": BYTES \"data\" must be an array of base64 strings",
                 name);
        return -1;
    }
    cJSON_ArrayForEach(item, data)
    {
        if (cJSON_IsArray(item)) {
            if (add_base64_images(b, item, name, err, err_len, depth + 1) != 0)
                return -1;
            continue;
        }
        if (!cJSON_IsString(item)) {
            snprintf(err, err_len,
                     "input \"%s\": BYTES \"data\" must be an array of base64 strings", name);
            return -1;
        }
        size_t len = strlen(item->valuestring);
        uint8_t *bytes = malloc(base64_decoded_max(len));
        char why[128];
        long long n = bytes ? base64_decode(item->valuestring, len, bytes, why, sizeof why) : -1;
        if (n < 0) {
            free(bytes);
            snprintf(err, err_len, "input \"%s\": element %d: %s", name, b->n + 1,
                     bytes ? why : "out of memory");
            return -1;
        }
        if (image_batch_add(b, bytes, (size_t)n, true) != 0) {
            snprintf(err, err_len, "input \"%s\": more than %d images", name, IMAGE_BATCH_MAX);
            return -1;
        }
    }
    return 0;
}

/* An input's "shape", parsed. Returns 0, or -1 with err set. */
static int input_shape(const struct json_doc *doc, const cJSON *input, const char *name,
                       int64_t *shape, int *ndim, char *err, size_t err_len)
{
    const cJSON *shape_item = cJSON_GetObjectItemCaseSensitive(input, "shape");
    if (shape_item == NULL) {
        snprintf(err, err_len, "input \"%s\" needs a \"shape\"", name);
        return -1;
    }
    return parse_shape(doc, shape_item, shape, ndim, name, err, err_len);
}

/* A BYTES input: encoded images for an input declared as an image. The
 * headers are checked here; the worker decodes (image_request_prepare). */
static int decode_image_input(struct v2_decoder *dc, const struct json_doc *doc, const cJSON *input,
                              int slot, struct binary_cursor *bin, char *err, size_t err_len)
{
    const struct model_config *cfg = dc->cfg;
    const struct io_spec *spec = &cfg->inputs[slot];
    struct v2_request *v2 = dc->v2;
    if (!spec->is_image) {
        snprintf(err, err_len,
                 "input \"%s\" is not declared as an image (no \"image\" in config.json): "
                 "BYTES is only for encoded images",
                 spec->name);
        v2->status = 415;
        return -1;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(doc, input, spec->name, shape, &ndim, err, err_len) != 0)
        return -1;
    struct image_batch *b =
        image_request_slot(&v2->images, slot, &spec->image, dc->max_image_pixels);
    if (b == NULL) {
        snprintf(err, err_len, "out of memory");
        v2->status = 500;
        return -1;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(input, "parameters");
    const cJSON *size_item = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
    int rc = size_item ? add_binary_images(b, bin, size_item, spec->name, err, err_len)
                       : add_base64_images(b, cJSON_GetObjectItemCaseSensitive(input, "data"),
                                           spec->name, err, err_len, 1);
    if (rc != 0)
        return -1;
    if (shape_numel(shape, ndim) != b->n) {
        char text[128];
        shape_format(shape, ndim, text, sizeof text);
        snprintf(err, err_len, "input \"%s\" has %d BYTES elements but shape %s", spec->name, b->n,
                 text);
        return -1;
    }
    int status = image_batch_check(b, cfg->max_batch_size, &dc->req->inputs[slot], err, err_len);
    if (status != 0) {
        v2->status = status;
        return -1;
    }
    dc->req->prepare = image_request_prepare;
    dc->req->prepare_arg = &v2->images;
    return 0;
}

/* Decode, convert and check one request input against its declared spec. */
static int decode_input(struct v2_decoder *dc, const struct json_doc *doc, const cJSON *input,
                        struct binary_cursor *bin, char *err, size_t err_len)
{
    const struct model_config *cfg = dc->cfg;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(input, "name");
    const cJSON *dtype_item = cJSON_GetObjectItemCaseSensitive(input, "datatype");
    if (!cJSON_IsString(name)) {
        snprintf(err, err_len, "every input needs a \"name\"");
        return -1;
    }
    int slot = -1;
    for (int i = 0; i < cfg->n_inputs; i++)
        if (strcmp(cfg->inputs[i].name, name->valuestring) == 0)
            slot = i;
    if (slot < 0) {
        snprintf(err, err_len, "model %s has no input named \"%.64s\"", cfg->name,
                 name->valuestring);
        return -1;
    }
    const struct io_spec *spec = &cfg->inputs[slot];
    struct tensor *t = &dc->req->inputs[slot];
    if (t->data != NULL) {
        snprintf(err, err_len, "input \"%s\" is given twice", spec->name);
        return -1;
    }
    struct shm_spec shm;
    int in_shm = v2_shm_spec_json(input, true, spec->name, &shm, err, err_len);
    if (in_shm < 0)
        return -1;
    if (cJSON_IsString(dtype_item) && strcmp(dtype_item->valuestring, "BYTES") == 0) {
        if (in_shm) {
            snprintf(err, err_len, "input \"%s\": BYTES cannot come from shared memory",
                     spec->name);
            return -1;
        }
        return decode_image_input(dc, doc, input, slot, bin, err, err_len);
    }
    enum shim_dtype dtype;
    if (!cJSON_IsString(dtype_item) || dtype_from_name(dtype_item->valuestring, &dtype) != 0) {
        snprintf(err, err_len,
                 "input \"%s\": \"datatype\" must be one of BOOL, UINT8, INT8, "
                 "INT16, INT32, INT64, FP16, FP32, FP64 (or BYTES for an image input)",
                 spec->name);
        return -1;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(doc, input, spec->name, shape, &ndim, err, err_len) != 0)
        return -1;
    if (in_shm
            ? v2_shm_input(dc->shm, &shm, spec->name, dtype, shape, ndim, &dc->v2->shm.in[slot], t,
                           &dc->v2->status, err, err_len)
            : decode_input_data(doc, input, spec->name, dtype, shape, ndim, bin, t, err, err_len))
        return -1;
    dc->v2->shm.any_in |= in_shm > 0;
    if (dtype != spec->dtype) {
        struct tensor converted;
        if (tensor_convert(t, spec->dtype, &converted, err, err_len) != 0) {
            size_t n = strlen(err);
            snprintf(err + n, err_len - n, " (input \"%s\")", spec->name);
            return -1;
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
        return -1;
    }
    return 0;
}

static int decode_outputs(struct v2_decoder *dc, const cJSON *outputs, struct v2_request *v2,
                          char *err, size_t err_len)
{
    const struct model_config *cfg = dc->cfg;
    const cJSON *out;
    if (outputs == NULL)
        return 0;
    if (!cJSON_IsArray(outputs)) {
        snprintf(err, err_len, "\"outputs\" must be an array of {\"name\": ...}");
        return -1;
    }
    cJSON_ArrayForEach(out, outputs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "name");
        if (!cJSON_IsString(name)) {
            snprintf(err, err_len, "each of \"outputs\" needs a \"name\"");
            return -1;
        }
        bool known = false;
        for (int o = 0; o < cfg->n_outputs; o++)
            known |= strcmp(cfg->outputs[o].name, name->valuestring) == 0;
        if (!known || v2->n_outputs == MODEL_MAX_IO) {
            snprintf(err, err_len, "model %s has no output named \"%.64s\"", cfg->name,
                     name->valuestring);
            return -1;
        }
        snprintf(v2->outputs[v2->n_outputs], sizeof v2->outputs[0], "%s", name->valuestring);
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(out, "parameters");
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(params, "classification");
        v2->binary[v2->n_outputs] = param_true(params, "binary_data");
        if (cls != NULL) {
            if (!cJSON_IsNumber(cls) || cls->valuedouble < 1 || cls->valuedouble > 1000000 ||
                cls->valuedouble != (double)(int)cls->valuedouble) {
                snprintf(err, err_len,
                         "output \"%.64s\": \"classification\" must be a positive integer",
                         name->valuestring);
                return -1;
            }
            v2->classification[v2->n_outputs] = (int)cls->valuedouble;
        }
        struct shm_spec shm;
        int in_shm = v2_shm_spec_json(out, false, name->valuestring, &shm, err, err_len);
        if (in_shm < 0 ||
            (in_shm > 0 && v2_shm_output_acquire(dc->shm, &shm, &v2->shm.out[v2->n_outputs],
                                                 &v2->status, err, err_len) != 0))
            return -1;
        v2->n_outputs++;
    }
    return 0;
}

/* Split the body into its JSON part and its binary part (bin, empty without
 * the V2_HEADER_LENGTH header). Returns 0, or -1 with err set. */
static int split_body(const struct v2_body *body, size_t *json_len, struct binary_cursor *bin,
                      char *err, size_t err_len)
{
    const char *text = body->header_length;
    *json_len = body->len;
    if (text == NULL) {
        if (body->binary) {
            snprintf(err, err_len, "binary requests need an %s header", V2_HEADER_LENGTH);
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < 0) {
        snprintf(err, err_len, "%s must be a byte count", V2_HEADER_LENGTH);
        return -1;
    }
    if ((unsigned long)v > body->len) {
        snprintf(err, err_len, "%s %ld is larger than the body (%zu bytes)", V2_HEADER_LENGTH, v,
                 body->len);
        return -1;
    }
    *json_len = (size_t)v;
    bin->next = body->data + *json_len;
    bin->end = body->data + body->len;
    return 0;
}

/* The prepare hook of a request with inputs in shared memory (arg: its
 * v2_request): check, on the worker, that their regions still hold them,
 * then decode any images. */
static enum infer_status v2_prepare(struct infer_request *req, void *arg)
{
    struct v2_request *v2 = arg;
    if (v2_shm_check_inputs(&v2->shm, req->error, sizeof req->error) != 0)
        return INFER_INVALID;
    for (int i = 0; i < MODEL_MAX_IO; i++)
        if (v2->images.inputs[i] != NULL)
            return image_request_prepare(req, &v2->images);
    return INFER_OK;
}

/* Decode a whole v2 request into dc->req. Returns 0 or -1 with err. */
static int decode_v2(struct v2_decoder *dc, const struct v2_body *body, char *err, size_t err_len)
{
    const struct model_config *cfg = dc->cfg;
    struct v2_request *v2 = dc->v2;
    size_t json_len;
    struct binary_cursor bin = {NULL, NULL};
    if (split_body(body, &json_len, &bin, err, err_len) != 0)
        return -1;
    if (json_len == 0) {
        snprintf(err, err_len, "empty request: send {\"inputs\": [...]}");
        return -1;
    }
    struct json_doc doc;
    if (json_doc_parse(body->data, json_len, &doc, err, err_len) != 0)
        return -1;
    int rc = -1;
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc.root, "inputs");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc.root, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc.root, "parameters");
    const cJSON *input;
    if (!cJSON_IsObject(doc.root) || !cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) == 0) {
        snprintf(err, err_len, "the body must be a JSON object with an \"inputs\" array");
        goto out;
    }
    if (id != NULL && !cJSON_IsString(id)) {
        snprintf(err, err_len, "\"id\" must be a string");
        goto out;
    }
    if (id) {
        snprintf(v2->id, sizeof v2->id, "%s", id->valuestring);
        v2->has_id = true;
    }
    v2->binary_all = param_true(params, "binary_data_output");
    if (decode_outputs(dc, cJSON_GetObjectItemCaseSensitive(doc.root, "outputs"), v2, err,
                       err_len) != 0)
        goto out;
    dc->req->n_inputs = cfg->n_inputs;
    cJSON_ArrayForEach(input, inputs)
    {
        if (decode_input(dc, &doc, input, &bin, err, err_len) != 0)
            goto out;
    }
    for (int i = 0; i < cfg->n_inputs; i++) {
        if (dc->req->inputs[i].data == NULL) {
            snprintf(err, err_len, "missing input \"%s\"", cfg->inputs[i].name);
            goto out;
        }
        if (cfg->max_batch_size > 0 && dc->req->inputs[i].shape[0] != dc->req->inputs[0].shape[0]) {
            snprintf(err, err_len, "inputs disagree on the batch size (dim 0)");
            goto out;
        }
    }
    if (bin.next != NULL && bin.next != bin.end) {
        snprintf(err, err_len, "%zu bytes of binary data after the last input",
                 (size_t)(bin.end - bin.next));
        goto out;
    }
    if (v2->shm.any_in) {
        dc->req->prepare = v2_prepare;
        dc->req->prepare_arg = v2;
    }
    rc = 0;
out:
    json_doc_free(&doc);
    return rc;
}

static void append_output_json(struct strbuf *sb, const char *name, const struct tensor *t,
                               bool binary)
{
    char shape[128];
    struct shim_tensor view = tensor_view(t);
    shape_format(t->shape, t->ndim, shape, sizeof shape);
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, name);
    strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s", dtype_name(t->dtype), shape);
    if (binary) {
        strbuf_printf(sb, ",\"parameters\":{\"binary_data_size\":%zu}}", t->nbytes);
        return;
    }
    strbuf_puts(sb, ",\"data\":");
    tensor_json_append(sb, &view, 0, t->ndim ? t->shape[0] : 1, false);
    strbuf_puts(sb, "}");
}

/* Triton's classification extension: the top k of each row of t as BYTES
 * strings "score:index[:label]" (the raw output value, not a softmax),
 * into sb as JSON, or into bin as 4-byte-length-prefixed elements when
 * binary. Returns 0, or -1 with err set. */
static int append_classification(struct strbuf *sb, struct strbuf *bin, const char *name,
                                 const struct tensor *t, const struct model_config *cfg, int k,
                                 bool binary, char *err, size_t err_len)
{
    bool floating = t->dtype == SHIM_FP32 || t->dtype == SHIM_FP64 || t->dtype == SHIM_FP16;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->ndim == 1 ? t->shape[0] : 0;
    if (!floating || cols <= 0 || cols > INT32_MAX) {
        snprintf(err, err_len,
                 "output \"%s\" cannot be classified: it must be a floating-point "
                 "[batch, classes] or [classes] tensor",
                 name);
        return -1;
    }
    if (k > cols)
        k = (int)cols;
    double *row = malloc((size_t)cols * sizeof *row);
    struct topk_entry *best = malloc((size_t)k * sizeof *best);
    if (row == NULL || best == NULL) {
        free(row);
        free(best);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, name);
    if (t->ndim == 2)
        strbuf_printf(sb, ",\"datatype\":\"BYTES\",\"shape\":[%lld,%d]", (long long)rows, k);
    else
        strbuf_printf(sb, ",\"datatype\":\"BYTES\",\"shape\":[%d]", k);
    if (!binary)
        strbuf_puts(sb, ",\"data\":[");
    size_t bin_start = bin->len;
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
            if (binary) {
                uint8_t le[4] = {(uint8_t)len, (uint8_t)(len >> 8), 0, 0};
                strbuf_append(bin, le, 4);
                strbuf_append(bin, text, (size_t)len);
            } else {
                if (r || j)
                    strbuf_puts(sb, ",");
                strbuf_json_string(sb, text);
            }
        }
    }
    if (binary)
        strbuf_printf(sb, ",\"parameters\":{\"binary_data_size\":%zu}}", bin->len - bin_start);
    else
        strbuf_puts(sb, "]}");
    free(row);
    free(best);
    return 0;
}

/* Index of the worker's output called name, or -1. */
static int find_output(const struct infer_request *req, const char *name)
{
    for (int o = 0; o < req->n_outputs; o++)
        if (strcmp(req->output_names[o], name) == 0)
            return o;
    return -1;
}

int v2_decode(const struct model_config *cfg, long long max_image_pixels,
              const struct v2_body *body, struct v2_request *v2, struct infer_request *req,
              int *status, char *err, size_t err_len)
{
    struct v2_decoder dc = {cfg, max_image_pixels, v2, req, body->shm};
    v2->status = 0;
    if (decode_v2(&dc, body, err, err_len) != 0) {
        *status = v2->status ? v2->status : 400;
        return -1;
    }
    return 0;
}

int v2_encode(const struct v2_request *v2, const struct model_config *cfg,
              const struct infer_request *req, struct strbuf *sb, size_t *json_len,
              bool *any_binary, char *err, size_t err_len)
{
    int order[MODEL_MAX_IO], n = 0;
    int classify[MODEL_MAX_IO] = {0};
    bool binary[MODEL_MAX_IO];
    *any_binary = false;
    if (v2->n_outputs == 0) {
        for (int o = 0; o < req->n_outputs; o++) {
            order[n] = o;
            binary[n++] = v2->binary_all;
        }
    } else {
        for (int i = 0; i < v2->n_outputs; i++) {
            int o = find_output(req, v2->outputs[i]);
            if (o < 0) {
                snprintf(err, err_len, "the model did not produce output \"%s\"", v2->outputs[i]);
                return 500;
            }
            order[n] = o;
            classify[n] = v2->classification[i];
            binary[n++] = (v2->binary[i] || v2->binary_all) && v2->shm.out[i].region == NULL;
        }
    }
    strbuf_puts(sb, "{\"model_name\":");
    strbuf_json_string(sb, cfg->name);
    strbuf_printf(sb, ",\"model_version\":\"%d\"", cfg->version);
    if (v2->has_id) {
        strbuf_puts(sb, ",\"id\":");
        strbuf_json_string(sb, v2->id);
    }
    struct strbuf classes[MODEL_MAX_IO] = {{0}}; /* binary classification outputs */
    int rc = 0;
    strbuf_puts(sb, ",\"outputs\":[");
    for (int i = 0; i < n && rc == 0; i++) {
        if (i)
            strbuf_puts(sb, ",");
        if (v2->n_outputs > 0 && v2->shm.out[i].region != NULL)
            rc = v2_shm_output(&v2->shm.out[i], req->output_names[order[i]],
                               &req->outputs[order[i]], sb, err, err_len);
        else if (classify[i] > 0)
            rc = append_classification(sb, &classes[i], req->output_names[order[i]],
                                       &req->outputs[order[i]], cfg, classify[i], binary[i], err,
                                       err_len) != 0
                     ? 400
                     : 0;
        else
            append_output_json(sb, req->output_names[order[i]], &req->outputs[order[i]], binary[i]);
        *any_binary |= binary[i];
    }
    strbuf_puts(sb, "]}");
    *json_len = sb->len;
    for (int i = 0; i < n && rc == 0; i++) {
        if (binary[i] && classify[i] > 0)
            strbuf_append(sb, classes[i].data, classes[i].len);
        else if (binary[i])
            strbuf_append(sb, req->outputs[order[i]].data, req->outputs[order[i]].nbytes);
    }
    for (int i = 0; i < n; i++)
        strbuf_free(&classes[i]);
    return rc;
}

void v2_request_free(struct v2_request *v2)
{
    if (v2) {
        image_request_free(&v2->images);
        v2_shm_release(&v2->shm);
        free(v2);
    }
}
