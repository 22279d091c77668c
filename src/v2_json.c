/* v2_json.c - the KServe v2 JSON wire form and binary tensor data
 * extension on the wire-neutral binding (see v2_json.h). */
#include "v2_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json_numbers.h"
#include "shape.h"
#include "tensor_json.h"

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

/* An input's "shape", parsed. Returns 0, or -1 with err set. */
static int input_shape(const struct json_doc *doc, const cJSON *input, const char *name,
                       int64_t *shape, int *ndim, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(input, "shape");
    if (item == NULL) {
        snprintf(err, err_len, "input \"%s\" needs a \"shape\"", name);
        return -1;
    }
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

/* Bind the data of one tensor input at slot (in the request's datatype). */
static enum infer_status decode_input_data(struct v2_binder *b, const struct json_doc *doc,
                                           const cJSON *input, int slot, enum shim_dtype dtype,
                                           const int64_t *shape, int ndim,
                                           struct binary_cursor *bin, char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
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
        return INFER_INVALID;
    }
    if (size_item != NULL) {
        if (data != NULL) {
            snprintf(err, err_len, "input \"%s\" has both \"data\" and binary_data_size", name);
            return INFER_INVALID;
        }
        const char *start;
        size_t size;
        if (binary_take(bin, size_item, name, &start, &size, err, err_len) != 0)
            return INFER_INVALID;
        if (size != expect) {
            snprintf(err, err_len,
                     "input \"%s\": binary_data_size %zu does not match shape and "
                     "datatype %s (%zu bytes)",
                     name, size, dtype_name(dtype), expect);
            return INFER_INVALID;
        }
        return v2_bind_raw(b, slot, dtype, shape, ndim, start, size, true, err, err_len);
    }
    const struct num_array *a = json_doc_array(doc, data);
    if (a == NULL) {
        snprintf(err, err_len, "input \"%s\" needs \"data\": an array of %s values, nested or flat",
                 name, dtype_name(dtype));
        return INFER_INVALID;
    }
    struct tensor t;
    if (tensor_json_from_array(a, dtype, &t, err, err_len) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, err_len - n, " (input \"%s\")", name);
        return INFER_INVALID;
    }
    return v2_bind_values(b, slot, &t, a->count, shape, ndim, err, err_len);
}

/* The elements of a JSON BYTES input: base64 strings, in a flat or nested
 * array (depth at most TENSOR_MAX_DIMS). Returns 0 or -1. */
static int add_base64_images(struct image_batch *batch, const cJSON *data, const char *name,
                             char *err, size_t err_len, int depth)
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
            if (add_base64_images(batch, item, name, err, err_len, depth + 1) != 0)
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
            snprintf(err, err_len, "input \"%s\": element %d: %s", name, batch->n + 1,
                     bytes ? why : "out of memory");
            return -1;
        }
        if (image_batch_add(batch, bytes, (size_t)n, true) != 0) {
            snprintf(err, err_len, "input \"%s\": more than %d images", name, IMAGE_BATCH_MAX);
            return -1;
        }
    }
    return 0;
}

/* A BYTES input: encoded images for an input declared as an image. */
static enum infer_status decode_image_input(struct v2_binder *b, const struct json_doc *doc,
                                            const cJSON *input, int slot, struct binary_cursor *bin,
                                            char *err, size_t err_len)
{
    const char *name = b->cfg->inputs[slot].name;
    enum infer_status status = INFER_INVALID;
    struct image_batch *batch = v2_bind_images(b, slot, &status, err, err_len);
    if (batch == NULL)
        return status;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(doc, input, name, shape, &ndim, err, err_len) != 0)
        return INFER_INVALID;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(input, "parameters");
    const cJSON *size_item = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
    if (size_item) {
        const char *start;
        size_t size;
        if (binary_take(bin, size_item, name, &start, &size, err, err_len) != 0)
            return INFER_INVALID;
        status = v2_bind_image_elements(batch, name, (const uint8_t *)start, size, err, err_len);
        if (status != INFER_OK)
            return status;
    } else if (add_base64_images(batch, cJSON_GetObjectItemCaseSensitive(input, "data"), name, err,
                                 err_len, 1) != 0) {
        return INFER_INVALID;
    }
    return v2_bind_images_end(b, slot, shape, ndim, err, err_len);
}

/* Decode, convert and check one request input against its declared spec. */
static enum infer_status decode_input(struct v2_binder *b, const struct json_doc *doc,
                                      const cJSON *input, struct binary_cursor *bin, char *err,
                                      size_t err_len)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(input, "name");
    const cJSON *dtype_item = cJSON_GetObjectItemCaseSensitive(input, "datatype");
    if (!cJSON_IsString(name)) {
        snprintf(err, err_len, "every input needs a \"name\"");
        return INFER_INVALID;
    }
    int slot;
    enum infer_status s = v2_bind_input_slot(b, name->valuestring, &slot, err, err_len);
    if (s != INFER_OK)
        return s;
    if (cJSON_IsString(dtype_item) && strcmp(dtype_item->valuestring, "BYTES") == 0)
        return decode_image_input(b, doc, input, slot, bin, err, err_len);
    enum shim_dtype dtype;
    s = v2_bind_dtype(b, slot, cJSON_IsString(dtype_item) ? dtype_item->valuestring : NULL, &dtype,
                      err, err_len);
    if (s != INFER_OK)
        return s;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (input_shape(doc, input, b->cfg->inputs[slot].name, shape, &ndim, err, err_len) != 0)
        return INFER_INVALID;
    return decode_input_data(b, doc, input, slot, dtype, shape, ndim, bin, err, err_len);
}

static enum infer_status decode_outputs(struct v2_binder *b, const cJSON *outputs, char *err,
                                        size_t err_len)
{
    const cJSON *out;
    if (outputs == NULL)
        return INFER_OK;
    if (!cJSON_IsArray(outputs)) {
        snprintf(err, err_len, "\"outputs\" must be an array of {\"name\": ...}");
        return INFER_INVALID;
    }
    cJSON_ArrayForEach(out, outputs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "name");
        if (!cJSON_IsString(name)) {
            snprintf(err, err_len, "each of \"outputs\" needs a \"name\"");
            return INFER_INVALID;
        }
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(out, "parameters");
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(params, "classification");
        long long k = 0;
        if (cls != NULL) {
            if (!cJSON_IsNumber(cls) || cls->valuedouble < 1 ||
                cls->valuedouble > V2_CLASSIFICATION_MAX ||
                cls->valuedouble != (double)(int)cls->valuedouble) {
                snprintf(err, err_len,
                         "output \"%.64s\": \"classification\" must be a positive integer",
                         name->valuestring);
                return INFER_INVALID;
            }
            k = (long long)cls->valuedouble;
        }
        enum infer_status s = v2_bind_output(b, name->valuestring,
                                             param_true(params, "binary_data"), k, err, err_len);
        if (s != INFER_OK)
            return s;
    }
    return INFER_OK;
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

/* Bind the parsed document's id, outputs and inputs. */
static enum infer_status decode_doc(struct v2_binder *b, const struct json_doc *doc,
                                    struct binary_cursor *bin, char *err, size_t err_len)
{
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc->root, "inputs");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc->root, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc->root, "parameters");
    const cJSON *input;
    if (!cJSON_IsObject(doc->root) || !cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) == 0) {
        snprintf(err, err_len, "the body must be a JSON object with an \"inputs\" array");
        return INFER_INVALID;
    }
    if (id != NULL && !cJSON_IsString(id)) {
        snprintf(err, err_len, "\"id\" must be a string");
        return INFER_INVALID;
    }
    if (id)
        v2_bind_id(b, id->valuestring);
    b->v2->binary_all = param_true(params, "binary_data_output");
    enum infer_status s =
        decode_outputs(b, cJSON_GetObjectItemCaseSensitive(doc->root, "outputs"), err, err_len);
    if (s != INFER_OK)
        return s;
    cJSON_ArrayForEach(input, inputs)
    {
        s = decode_input(b, doc, input, bin, err, err_len);
        if (s != INFER_OK)
            return s;
    }
    s = v2_bind_end(b, err, err_len);
    if (s != INFER_OK)
        return s;
    if (bin->next != NULL && bin->next != bin->end) {
        snprintf(err, err_len, "%zu bytes of binary data after the last input",
                 (size_t)(bin->end - bin->next));
        return INFER_INVALID;
    }
    return INFER_OK;
}

enum infer_status v2_json_decode(const struct model_config *cfg, long long max_image_pixels,
                                 const struct v2_body *body, struct v2_request *v2,
                                 struct infer_request *req, char *err, size_t err_len)
{
    struct v2_binder b;
    v2_bind_begin(&b, cfg, max_image_pixels, v2, req);
    size_t json_len;
    struct binary_cursor bin = {NULL, NULL};
    if (split_body(body, &json_len, &bin, err, err_len) != 0)
        return INFER_INVALID;
    if (json_len == 0) {
        snprintf(err, err_len, "empty request: send {\"inputs\": [...]}");
        return INFER_INVALID;
    }
    struct json_doc doc;
    if (json_doc_parse(body->data, json_len, &doc, err, err_len) != 0)
        return INFER_INVALID;
    enum infer_status s = decode_doc(&b, &doc, &bin, err, err_len);
    json_doc_free(&doc);
    return s;
}

/* One output's JSON object; its binary part, if any, goes after the JSON. */
static void append_output_json(struct strbuf *sb, const struct v2_output *o)
{
    char shape[128];
    shape_format(o->shape, o->ndim, shape, sizeof shape);
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, o->name);
    strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s", o->datatype, shape);
    if (o->binary) {
        size_t size = o->tensor ? o->tensor->nbytes : o->strings.len;
        strbuf_printf(sb, ",\"parameters\":{\"binary_data_size\":%zu}}", size);
        return;
    }
    strbuf_puts(sb, ",\"data\":");
    if (o->tensor) {
        struct shim_tensor view = tensor_view(o->tensor);
        tensor_json_append(sb, &view, 0, o->tensor->ndim ? o->tensor->shape[0] : 1, false);
    } else {
        const uint8_t *p = (const uint8_t *)o->strings.data;
        strbuf_puts(sb, "[");
        for (int i = 0; i < o->n_strings; i++) {
            size_t len = (size_t)p[0] | (size_t)p[1] << 8;
            char text[320];
            memcpy(text, p + 4, len);
            text[len] = '\0';
            if (i)
                strbuf_puts(sb, ",");
            strbuf_json_string(sb, text);
            p += 4 + len;
        }
        strbuf_puts(sb, "]");
    }
    strbuf_puts(sb, "}");
}

enum infer_status v2_json_encode(const struct v2_request *v2, const struct model_config *cfg,
                                 const struct infer_request *req, struct strbuf *sb,
                                 size_t *json_len, bool *any_binary, char *err, size_t err_len)
{
    struct v2_output out[MODEL_MAX_IO];
    int n = 0;
    *any_binary = false;
    enum infer_status s = v2_outputs(v2, cfg, req, out, &n, err, err_len);
    if (s != INFER_OK) {
        v2_outputs_free(out, n);
        return s;
    }
    strbuf_puts(sb, "{\"model_name\":");
    strbuf_json_string(sb, cfg->name);
    strbuf_printf(sb, ",\"model_version\":\"%d\"", cfg->version);
    if (v2->has_id) {
        strbuf_puts(sb, ",\"id\":");
        strbuf_json_string(sb, v2->id);
    }
    strbuf_puts(sb, ",\"outputs\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            strbuf_puts(sb, ",");
        append_output_json(sb, &out[i]);
        *any_binary |= out[i].binary;
    }
    strbuf_puts(sb, "]}");
    *json_len = sb->len;
    for (int i = 0; i < n; i++) {
        if (out[i].binary && out[i].tensor)
            strbuf_append(sb, out[i].tensor->data, out[i].tensor->nbytes);
        else if (out[i].binary)
            strbuf_append(sb, out[i].strings.data, out[i].strings.len);
    }
    v2_outputs_free(out, n);
    return INFER_OK;
}
