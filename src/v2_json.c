/* v2_json.c - the KServe v2 JSON wire form and the binary tensor data
 * extension, over the v2 binding (see v2_json.h). */
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

/* Fail with INFER_INVALID (err already set). */
static int invalid(struct v2_binder *b)
{
    b->status = INFER_INVALID;
    return -1;
}

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

/* A shared-memory byte-count parameter: absent gives 0 (or an error when
 * required). Returns 0 or -1 with err set. */
static int count_param(const cJSON *params, const char *key, bool required, const char *name,
                       uint64_t *out, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(params, key);
    if (item == NULL && !required) {
        *out = 0;
        return 0;
    }
    if (!cJSON_IsNumber(item) || shm_u64_from_double(item->valuedouble, out) != 0) {
        snprintf(err, err_len, "\"%s\": %s must be a byte count from 0 to 2^53%s", name, key,
                 item == NULL ? " (it is missing)" : "");
        return -1;
    }
    return 0;
}

int v2_json_shm_spec(const cJSON *tensor, bool input, const char *name, struct shm_spec *spec,
                     char *err, size_t err_len)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(tensor, "parameters");
    const cJSON *region = cJSON_GetObjectItemCaseSensitive(params, V2_SHM_REGION);
    if (region == NULL) {
        if (cJSON_GetObjectItemCaseSensitive(params, V2_SHM_BYTE_SIZE) != NULL ||
            cJSON_GetObjectItemCaseSensitive(params, V2_SHM_OFFSET) != NULL) {
            snprintf(err, err_len, "\"%s\": %s and %s need %s", name, V2_SHM_BYTE_SIZE,
                     V2_SHM_OFFSET, V2_SHM_REGION);
            return -1;
        }
        return 0;
    }
    memset(spec, 0, sizeof *spec);
    if (!cJSON_IsString(region) || !shm_name_valid(region->valuestring)) {
        snprintf(err, err_len,
                 "\"%s\": %s must name a region (1 to %d letters, digits, '.', '_' and '-')", name,
                 V2_SHM_REGION, SHM_NAME_MAX - 1);
        return -1;
    }
    snprintf(spec->name, sizeof spec->name, "%s", region->valuestring);
    if (count_param(params, V2_SHM_BYTE_SIZE, true, name, &spec->byte_size, err, err_len) != 0 ||
        count_param(params, V2_SHM_OFFSET, false, name, &spec->offset, err, err_len) != 0)
        return -1;
    if (input && (cJSON_GetObjectItemCaseSensitive(tensor, "data") != NULL ||
                  cJSON_GetObjectItemCaseSensitive(params, "binary_data_size") != NULL)) {
        snprintf(err, err_len,
                 "input \"%s\" names a shared memory region and also carries data in the body",
                 name);
        return -1;
    }
    if (!input && (cJSON_GetObjectItemCaseSensitive(params, "classification") != NULL ||
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "binary_data")))) {
        snprintf(err, err_len,
                 "output \"%s\" names a shared memory region: it cannot also ask for "
                 "classification or binary_data",
                 name);
        return -1;
    }
    return 1;
}

/* An input's "shape" into the binder. Returns 0, or -1 with err set. */
static int read_shape(struct v2_binder *b, const struct json_doc *doc, const cJSON *input,
                      const char *name, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(input, "shape");
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (item == NULL) {
        snprintf(err, err_len, "input \"%s\" needs a \"shape\"", name);
        return invalid(b);
    }
    if (!(cJSON_IsArray(item) && cJSON_GetArraySize(item) == 0)) { /* [] : a scalar */
        switch (shape_from_array(json_doc_array(doc, item), 0, TENSOR_MAX_DIMS, shape, &ndim)) {
        case SHAPE_OK: break;
        case SHAPE_NOT_LIST:
            snprintf(err, err_len,
                     "input \"%s\": \"shape\" must be an array of at most %d integers", name,
                     TENSOR_MAX_DIMS);
            return invalid(b);
        case SHAPE_BAD_DIM:
            snprintf(err, err_len, "input \"%s\": \"shape\" dims must be integers from 0 to 10^12",
                     name);
            return invalid(b);
        }
    }
    return v2_bind_shape(b, shape, ndim, err, err_len);
}

/* The elements of a JSON BYTES input: base64 strings, in a flat or nested
 * array (depth at most TENSOR_MAX_DIMS). Returns 0 or -1. */
static int read_base64(struct v2_binder *b, const cJSON *data, const char *name, int *count,
                       char *err, size_t err_len, int depth)
{
    const cJSON *item;
    if (!cJSON_IsArray(data) || depth > TENSOR_MAX_DIMS) {
        snprintf(err, err_len, "input \"%s\": BYTES \"data\" must be an array of base64 strings",
                 name);
        return invalid(b);
    }
    cJSON_ArrayForEach(item, data)
    {
        if (cJSON_IsArray(item)) {
            if (read_base64(b, item, name, count, err, err_len, depth + 1) != 0)
                return -1;
            continue;
        }
        if (!cJSON_IsString(item)) {
            snprintf(err, err_len,
                     "input \"%s\": BYTES \"data\" must be an array of base64 strings", name);
            return invalid(b);
        }
        size_t len = strlen(item->valuestring);
        uint8_t *bytes = malloc(base64_decoded_max(len));
        char why[128];
        long long n = bytes ? base64_decode(item->valuestring, len, bytes, why, sizeof why) : -1;
        if (n < 0) {
            free(bytes);
            snprintf(err, err_len, "input \"%s\": element %d: %s", name, *count + 1,
                     bytes ? why : "out of memory");
            b->status = bytes ? INFER_INVALID : INFER_INTERNAL;
            return -1;
        }
        ++*count;
        if (v2_bind_element(b, bytes, (size_t)n, true, err, err_len) != 0)
            return -1;
    }
    return 0;
}

/* One input's data: binary_data_size bytes of the binary part, or "data"
 * (numbers, or base64 strings for BYTES). */
static int read_data(struct v2_binder *b, const struct json_doc *doc, const cJSON *input,
                     const char *name, struct binary_cursor *bin, char *err, size_t err_len)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(input, "parameters");
    const cJSON *size_item = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(input, "data");
    if (size_item != NULL) {
        if (data != NULL && !b->bytes) {
            snprintf(err, err_len, "input \"%s\" has both \"data\" and binary_data_size", name);
            return invalid(b);
        }
        const char *start;
        size_t size;
        if (binary_take(bin, size_item, name, &start, &size, err, err_len) != 0)
            return invalid(b);
        return v2_bind_raw(b, start, size, err, err_len);
    }
    if (b->bytes) {
        int count = 0;
        return read_base64(b, data, name, &count, err, err_len, 1);
    }
    const struct num_array *a = json_doc_array(doc, data);
    if (a == NULL) {
        snprintf(err, err_len, "input \"%s\" needs \"data\": an array of %s values, nested or flat",
                 name, dtype_name(b->dtype));
        return invalid(b);
    }
    struct tensor values;
    if (tensor_json_from_array(a, b->dtype, &values, err, err_len) != 0) {
        size_t n = strlen(err);
        snprintf(err + n, err_len - n, " (input \"%s\")", name);
        return invalid(b);
    }
    return v2_bind_values(b, &values, err, err_len);
}

/* One element of "inputs". */
static int read_input(struct v2_binder *b, const struct json_doc *doc, const cJSON *input,
                      struct binary_cursor *bin, char *err, size_t err_len)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(input, "name");
    const cJSON *datatype = cJSON_GetObjectItemCaseSensitive(input, "datatype");
    if (!cJSON_IsString(name)) {
        snprintf(err, err_len, "every input needs a \"name\"");
        return invalid(b);
    }
    if (v2_bind_input(b, name->valuestring, cJSON_IsString(datatype) ? datatype->valuestring : NULL,
                      err, err_len) != 0)
        return -1;
    const char *declared = b->cfg->inputs[b->slot].name;
    struct shm_spec shm;
    int in_shm = v2_json_shm_spec(input, true, declared, &shm, err, err_len);
    if (in_shm < 0)
        return invalid(b);
    if (read_shape(b, doc, input, declared, err, err_len) != 0 ||
        (in_shm ? v2_bind_shm_input(b, &shm, err, err_len)
                : read_data(b, doc, input, declared, bin, err, err_len)) != 0)
        return -1;
    return v2_bind_input_end(b, err, err_len);
}

/* "outputs": names and their parameters. */
static int read_outputs(struct v2_binder *b, const cJSON *outputs, char *err, size_t err_len)
{
    const cJSON *out;
    if (outputs == NULL)
        return 0;
    if (!cJSON_IsArray(outputs)) {
        snprintf(err, err_len, "\"outputs\" must be an array of {\"name\": ...}");
        return invalid(b);
    }
    cJSON_ArrayForEach(out, outputs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(out, "name");
        if (!cJSON_IsString(name)) {
            snprintf(err, err_len, "each of \"outputs\" needs a \"name\"");
            return invalid(b);
        }
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(out, "parameters");
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(params, "classification");
        long long k = 0;
        if (cls != NULL)
            k = cJSON_IsNumber(cls) && cls->valuedouble >= 1 &&
                        cls->valuedouble <= V2_CLASSIFICATION_MAX &&
                        cls->valuedouble == (double)(int)cls->valuedouble
                    ? (long long)cls->valuedouble
                    : -1;
        struct shm_spec shm;
        int in_shm = v2_json_shm_spec(out, false, name->valuestring, &shm, err, err_len);
        if (in_shm < 0)
            return invalid(b);
        if (v2_bind_output(b, name->valuestring, param_true(params, "binary_data"), k, err,
                           err_len) != 0 ||
            (in_shm && v2_bind_shm_output(b, &shm, err, err_len) != 0))
            return -1;
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

/* The whole request into the binder. Returns 0 or -1 with err. */
static int read_request(struct v2_binder *b, const struct v2_body *body, char *err, size_t err_len)
{
    struct v2_request *v2 = b->v2;
    size_t json_len;
    struct binary_cursor bin = {NULL, NULL};
    if (split_body(body, &json_len, &bin, err, err_len) != 0)
        return invalid(b);
    if (json_len == 0) {
        snprintf(err, err_len, "empty request: send {\"inputs\": [...]}");
        return invalid(b);
    }
    struct json_doc doc;
    if (json_doc_parse(body->data, json_len, &doc, err, err_len) != 0)
        return invalid(b);
    int rc = -1;
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc.root, "inputs");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc.root, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc.root, "parameters");
    const cJSON *input;
    if (!cJSON_IsObject(doc.root) || !cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) == 0) {
        snprintf(err, err_len, "the body must be a JSON object with an \"inputs\" array");
        invalid(b);
        goto out;
    }
    if (id != NULL && !cJSON_IsString(id)) {
        snprintf(err, err_len, "\"id\" must be a string");
        invalid(b);
        goto out;
    }
    if (id) {
        snprintf(v2->id, sizeof v2->id, "%s", id->valuestring);
        v2->has_id = true;
    }
    v2->binary_all = param_true(params, "binary_data_output");
    if (read_outputs(b, cJSON_GetObjectItemCaseSensitive(doc.root, "outputs"), err, err_len) != 0)
        goto out;
    cJSON_ArrayForEach(input, inputs)
    {
        if (read_input(b, &doc, input, &bin, err, err_len) != 0)
            goto out;
    }
    if (v2_bind_end(b, err, err_len) != 0)
        goto out;
    if (bin.next != NULL && bin.next != bin.end) {
        snprintf(err, err_len, "%zu bytes of binary data after the last input",
                 (size_t)(bin.end - bin.next));
        invalid(b);
        goto out;
    }
    rc = 0;
out:
    json_doc_free(&doc);
    return rc;
}

int v2_json_decode(const struct model_config *cfg, long long max_image_pixels,
                   const struct v2_body *body, struct v2_request *v2, struct infer_request *req,
                   enum infer_status *status, char *err, size_t err_len)
{
    struct v2_binder b;
    v2_bind_begin(&b, cfg, max_image_pixels, v2, req);
    b.shm = body->shm;
    if (read_request(&b, body, err, err_len) != 0) {
        *status = b.status != INFER_OK ? b.status : INFER_INVALID;
        return -1;
    }
    return 0;
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

/* An output written into its shared-memory region: its entry echoes the
 * region's parameters and carries no data. */
static enum infer_status append_shm_output(struct strbuf *sb, const struct v2_output_plan *o,
                                           char *err, size_t err_len)
{
    enum infer_status rc = v2_shm_output_write(o->shm, o->name, o->t, err, err_len);
    if (rc != INFER_OK)
        return rc;
    char shape[128];
    shape_format(o->t->shape, o->t->ndim, shape, sizeof shape);
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, o->name);
    strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s,\"parameters\":{\"" V2_SHM_REGION "\":",
                  dtype_name(o->t->dtype), shape);
    strbuf_json_string(sb, o->shm->name);
    strbuf_printf(sb, ",\"" V2_SHM_BYTE_SIZE "\":%zu", o->t->nbytes);
    if (o->shm->offset != 0)
        strbuf_printf(sb, ",\"" V2_SHM_OFFSET "\":%llu", (unsigned long long)o->shm->offset);
    strbuf_puts(sb, "}}");
    return INFER_OK;
}

/* Where classification strings go: JSON strings in sb, or 4-byte-length-
 * prefixed elements in bin. */
struct class_sink {
    struct strbuf *sb, *bin;
    int n;
};

static void emit_class(void *arg, const char *text, size_t len)
{
    struct class_sink *s = arg;
    if (s->bin != NULL) {
        uint8_t le[4] = {(uint8_t)len, (uint8_t)(len >> 8), 0, 0};
        strbuf_append(s->bin, le, 4);
        strbuf_append(s->bin, text, len);
    } else {
        if (s->n++)
            strbuf_puts(s->sb, ",");
        strbuf_json_string(s->sb, text);
    }
}

/* A classified output as BYTES: into sb as JSON, or its strings into bin
 * when binary. */
static enum infer_status append_classification(struct strbuf *sb, struct strbuf *bin,
                                               const struct v2_output_plan *o,
                                               const struct model_config *cfg, char *err,
                                               size_t err_len)
{
    int k = o->classify;
    int64_t rows;
    enum infer_status status = v2_classify_check(o->t, o->name, &k, &rows, err, err_len);
    if (status != INFER_OK)
        return status;
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, o->name);
    if (o->t->ndim == 2)
        strbuf_printf(sb, ",\"datatype\":\"BYTES\",\"shape\":[%lld,%d]", (long long)rows, k);
    else
        strbuf_printf(sb, ",\"datatype\":\"BYTES\",\"shape\":[%d]", k);
    if (!o->binary)
        strbuf_puts(sb, ",\"data\":[");
    struct class_sink sink = {sb, o->binary ? bin : NULL, 0};
    if (v2_classify(o->t, cfg, k, emit_class, &sink) != 0) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    if (o->binary)
        strbuf_printf(sb, ",\"parameters\":{\"binary_data_size\":%zu}}", bin->len);
    else
        strbuf_puts(sb, "]}");
    return INFER_OK;
}

enum infer_status v2_json_encode(const struct v2_request *v2, const struct model_config *cfg,
                                 const struct infer_request *req, struct strbuf *sb,
                                 size_t *json_len, bool *any_binary, char *err, size_t err_len)
{
    struct v2_output_plan plan[MODEL_MAX_IO];
    int n = 0;
    *any_binary = false;
    enum infer_status rc = v2_plan_outputs(v2, req, plan, &n, err, err_len);
    if (rc != INFER_OK)
        return rc;
    strbuf_puts(sb, "{\"model_name\":");
    strbuf_json_string(sb, cfg->name);
    strbuf_printf(sb, ",\"model_version\":\"%d\"", cfg->version);
    if (v2->has_id) {
        strbuf_puts(sb, ",\"id\":");
        strbuf_json_string(sb, v2->id);
    }
    struct strbuf classes[MODEL_MAX_IO] = {{0}}; /* binary classification outputs */
    strbuf_puts(sb, ",\"outputs\":[");
    for (int i = 0; i < n && rc == INFER_OK; i++) {
        if (i)
            strbuf_puts(sb, ",");
        if (plan[i].shm != NULL)
            rc = append_shm_output(sb, &plan[i], err, err_len);
        else if (plan[i].classify > 0)
            rc = append_classification(sb, &classes[i], &plan[i], cfg, err, err_len);
        else
            append_output_json(sb, plan[i].name, plan[i].t, plan[i].binary);
        *any_binary |= plan[i].binary;
    }
    strbuf_puts(sb, "]}");
    *json_len = sb->len;
    for (int i = 0; i < n && rc == INFER_OK; i++) {
        if (plan[i].binary && plan[i].classify > 0)
            strbuf_append(sb, classes[i].data, classes[i].len);
        else if (plan[i].binary)
            strbuf_append(sb, plan[i].t->data, plan[i].t->nbytes);
    }
    for (int i = 0; i < n; i++)
        strbuf_free(&classes[i]);
    return rc;
}
