/* api_predict.c - POST /predict: the simple path to the default model.
 * {"inputs": <numbers, nested or flat>, "shape": [..] (optional)}, or an
 * image (image/jpeg, image/png, multipart/form-data with one or more
 * files) in; {"model", "outputs", "shape", "labels", "top_k"} out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "image_batch.h"
#include "json_numbers.h"
#include "shape.h"
#include "tensor_json.h"
#include "multipart.h"
#include "topk.h"

#define TOP_K_MAX 1000

/* What a /predict request keeps until its reply is encoded. */
struct predict_state {
    int top_k; /* 0: no top_k in the reply */
    struct image_request images;
};

static void predict_state_free(void *arg)
{
    struct predict_state *st = arg;
    if (st) {
        image_request_free(&st->images);
        free(st);
    }
}

/* Apply an explicit "shape" to t. Returns 0 or -1 with err set. */
static int apply_shape(const struct json_doc *doc, const cJSON *shape_item, struct tensor *t,
                       char *err, size_t err_len)
{
    int64_t dims[TENSOR_MAX_DIMS];
    int ndim = 0;
    switch (shape_from_array(json_doc_array(doc, shape_item), 1, TENSOR_MAX_DIMS, dims, &ndim)) {
    case SHAPE_OK: break;
    case SHAPE_NOT_LIST:
        snprintf(err, err_len, "\"shape\" must be an array of at most %d positive integers",
                 TENSOR_MAX_DIMS);
        return -1;
    case SHAPE_BAD_DIM:
        snprintf(err, err_len, "\"shape\" must be an array of positive integers");
        return -1;
    }
    int64_t want = shape_numel(dims, ndim);
    int64_t have = shape_numel(t->shape, t->ndim);
    if (want < 0) {
        snprintf(err, err_len, "\"shape\" holds too many elements");
        return -1;
    }
    if (want != have) {
        char text[128];
        shape_format(dims, ndim, text, sizeof text);
        snprintf(err, err_len, "\"shape\" %s holds %lld elements but \"inputs\" has %lld", text,
                 (long long)want, (long long)have);
        return -1;
    }
    t->ndim = ndim;
    memcpy(t->shape, dims, (size_t)ndim * sizeof dims[0]);
    return 0;
}

/* Decode the body into the call's single input. Returns 0, or -1 with err
 * set (a 400). */
static int decode_predict(struct http_exchange *ex, const struct model_config *cfg, char *err,
                          size_t err_len)
{
    struct json_doc doc;
    if (ex->body_len == 0) {
        snprintf(err, err_len, "empty request body: send {\"inputs\": [...]}");
        return -1;
    }
    if (json_doc_parse(ex->body, ex->body_len, &doc, err, err_len) != 0)
        return -1;
    int rc = -1;
    struct tensor *t = &ex->call->inputs[0];
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc.root, "inputs");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(doc.root, "shape");
    const struct num_array *values = json_doc_array(&doc, inputs);
    if (!cJSON_IsObject(doc.root)) {
        snprintf(err, err_len, "the body must be a JSON object with \"inputs\"");
    } else if (inputs == NULL) {
        snprintf(err, err_len, "missing \"inputs\": send {\"inputs\": [...]}");
    } else if (values == NULL) {
        snprintf(err, err_len,
                 cJSON_IsArray(inputs) && cJSON_GetArraySize(inputs) == 0
                     ? "\"inputs\" is empty"
                     : "\"inputs\" must be an array of numbers, nested or flat");
    } else if (tensor_json_from_array(values, cfg->inputs[0].dtype, t, err, err_len) == 0) {
        ex->call->n_inputs = 1;
        if ((shape == NULL || apply_shape(&doc, shape, t, err, err_len) == 0) &&
            shape_fit(cfg->inputs[0].name, cfg->inputs[0].shape, cfg->inputs[0].ndim,
                      cfg->max_batch_size > 0, t->shape, &t->ndim, err, err_len) == 0)
            rc = 0;
    }
    json_doc_free(&doc);
    return rc;
}

/* ?top_k=K, else the model's default. Returns INFER_OK, or INFER_INVALID with err set. */
static enum infer_status parse_top_k(struct http_exchange *ex, const struct model_config *cfg,
                                     int *k, char *err, size_t err_len)
{
    const char *q = http_query(ex, "top_k");
    *k = cfg->top_k;
    if (q == NULL)
        return INFER_OK;
    char *end = NULL;
    long v = strtol(q, &end, 10);
    if (end == q || *end != '\0' || v < 0 || v > TOP_K_MAX) {
        snprintf(err, err_len, "top_k must be an integer in [0, %d], got '%.32s'", TOP_K_MAX, q);
        return INFER_INVALID;
    }
    *k = (int)v;
    return INFER_OK;
}

static bool is_image_request(const char *content_type)
{
    return strncasecmp(content_type, "image/", 6) == 0 ||
           strncasecmp(content_type, "multipart/form-data", 19) == 0;
}

/* The files of a multipart body into b. Returns INFER_OK, or INFER_INVALID with err set. */
static enum infer_status add_multipart(struct http_exchange *ex, struct image_batch *b, char *err,
                                       size_t err_len)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    if (multipart_boundary(ex->content_type, boundary, err, err_len) != 0)
        return INFER_INVALID;
    enum { MAX_PARTS = 256 };
    struct multipart_part *parts = malloc(MAX_PARTS * sizeof *parts);
    if (parts == NULL) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    int n = multipart_parse((const uint8_t *)ex->body, ex->body_len, boundary, parts, MAX_PARTS,
                            err, err_len);
    enum infer_status status = n < 0 ? INFER_INVALID : INFER_OK;
    for (int i = 0; status == INFER_OK && i < n; i++) {
        if (!parts[i].is_file && strncasecmp(parts[i].content_type, "image/", 6) != 0)
            continue; /* a plain form field */
        if (image_batch_add(b, parts[i].data, parts[i].len, false) != 0) {
            snprintf(err, err_len, "more than %d images in one request", IMAGE_BATCH_MAX);
            status = INFER_INVALID;
        }
    }
    free(parts);
    if (status == INFER_OK && b->n == 0) {
        snprintf(err, err_len,
                 "multipart body has no file part: send the image as a file, "
                 "e.g. curl -F image=@photo.jpg");
        status = INFER_INVALID;
    }
    return status;
}

/* An image body (raw or multipart) into the model's image input: headers
 * checked here, pixels decoded by the worker (image_request_prepare).
 * Returns INFER_OK, or a status with err set. */
static enum infer_status decode_images(struct http_exchange *ex, const struct model_config *cfg,
                                       struct image_request *images, char *err, size_t err_len)
{
    const struct io_spec *spec = &cfg->inputs[0];
    if (!spec->is_image) {
        snprintf(err, err_len,
                 "model %s does not take images: its input \"%s\" declares no \"image\" "
                 "preprocessing in config.json; send {\"inputs\": [...]}",
                 cfg->name, spec->name);
        return INFER_UNSUPPORTED;
    }
    struct image_batch *b =
        image_request_slot(images, 0, &spec->image, ex->srv->cfg.max_image_pixels);
    if (b == NULL) {
        snprintf(err, err_len, "out of memory");
        return INFER_INTERNAL;
    }
    enum infer_status status;
    if (strncasecmp(ex->content_type, "multipart/", 10) == 0) {
        status = add_multipart(ex, b, err, err_len);
    } else {
        status = image_batch_add(b, (const uint8_t *)ex->body, ex->body_len, false) == 0
                     ? INFER_OK
                     : INFER_INTERNAL;
        if (ex->body_len == 0) {
            snprintf(err, err_len, "empty request body: send the image's bytes");
            status = INFER_INVALID;
        }
    }
    if (status == INFER_OK)
        status = image_batch_check(b, cfg->max_batch_size, &ex->call->inputs[0], err, err_len);
    if (status != INFER_OK)
        return status;
    ex->call->n_inputs = 1;
    ex->call->prepare = image_request_prepare;
    ex->call->prepare_arg = images;
    return INFER_OK;
}

/* Index of the largest value in row r of a [rows, cols] float tensor. */
static int row_argmax(const struct tensor *t, int64_t r)
{
    int64_t cols = t->shape[1], best = 0;
    double best_v = 0;
    for (int64_t c = 0; c < cols; c++) {
        size_t i = (size_t)(r * cols + c);
        double v = dtype_load(t->data, i, t->dtype);
        if (c == 0 || v > best_v) {
            best_v = v;
            best = c;
        }
    }
    return (int)best;
}

/* Where append_top_k's rows go. */
struct top_k_sink {
    struct strbuf *sb;
    const struct model_config *cfg;
    int64_t cols;
};

static void top_k_row(void *arg, int64_t row, const struct topk_entry *best, int n)
{
    const struct top_k_sink *s = arg;
    struct strbuf *sb = s->sb;
    strbuf_puts(sb, row ? ",[" : "[");
    for (int j = 0; j < n; j++) {
        strbuf_puts(sb, j ? ",{" : "{");
        if (s->cfg->n_labels == s->cols) {
            strbuf_puts(sb, "\"label\":");
            strbuf_json_string(sb, s->cfg->labels[best[j].index]);
            strbuf_puts(sb, ",");
        }
        if (isfinite(best[j].score))
            strbuf_printf(sb, "\"index\":%d,\"score\":%.7g}", best[j].index, best[j].score);
        else
            strbuf_printf(sb, "\"index\":%d,\"score\":null}", best[j].index);
    }
    strbuf_puts(sb, "]");
}

/* ,"top_k":[[{"label":..,"index":..,"score":..},..],..]: one list per
 * sample, softmax probabilities, highest first. Returns 0 or -1. */
static int append_top_k(struct strbuf *sb, const struct tensor *out, const struct model_config *cfg,
                        int k)
{
    struct top_k_sink sink = {sb, cfg, out->shape[1]};
    strbuf_puts(sb, ",\"top_k\":[");
    if (tensor_topk_rows(out, k, 1, top_k_row, &sink) != 0)
        return -1;
    strbuf_puts(sb, "]");
    return 0;
}

/* Worker thread: the first output becomes the reply. */
static void encode_predict(struct http_exchange *ex)
{
    struct api_call *c = api_call_of(ex);
    const struct model_config *cfg = &c->req.model->cfg;
    const struct tensor *out = &c->req.outputs[0];
    struct shim_tensor view = tensor_view(out);
    struct strbuf sb = {0};
    char shape[128];
    shape_format(out->shape, out->ndim, shape, sizeof shape);
    strbuf_puts(&sb, "{\"model\":");
    strbuf_json_string(&sb, cfg->name);
    strbuf_puts(&sb, ",\"outputs\":");
    tensor_json_append(&sb, &view, 0, out->ndim ? out->shape[0] : 1, true);
    strbuf_printf(&sb, ",\"shape\":%s", shape);
    if (cfg->n_labels > 0 && dtype_is_float(out->dtype) && out->ndim == 2 &&
        out->shape[1] == cfg->n_labels) {
        strbuf_puts(&sb, ",\"labels\":[");
        for (int64_t r = 0; r < out->shape[0]; r++) {
            if (r)
                strbuf_puts(&sb, ",");
            strbuf_json_string(&sb, cfg->labels[row_argmax(out, r)]);
        }
        strbuf_puts(&sb, "]");
    }
    const struct predict_state *st = c->state;
    if (st && st->top_k > 0 && dtype_is_float(out->dtype) && out->ndim == 2 &&
        append_top_k(&sb, out, cfg, st->top_k) != 0) {
        strbuf_free(&sb);
        http_reply_error(ex, 500, "out of memory encoding top_k");
        return;
    }
    strbuf_puts(&sb, "}");
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    http_reply_body(ex, 200, body, len, "application/json");
}

enum route_outcome api_predict(struct http_exchange *ex)
{
    struct model *m = api_lookup_model(ex, ex->srv->cfg.default_model);
    if (m == NULL)
        return ROUTE_REPLIED;
    struct api_call *c = api_call_begin(ex, m, encode_predict);
    if (c == NULL)
        return ROUTE_REPLIED;
    const struct model_config *cfg = &m->cfg;
    if (cfg->n_inputs != 1)
        return http_reply_error(ex, 400,
                                "model %s takes %d inputs: use "
                                "/v2/models/%s/infer",
                                cfg->name, cfg->n_inputs, cfg->name);
    struct predict_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return http_reply_error(ex, 500, "out of memory");
    c->state = st;
    c->state_free = predict_state_free;
    char err[400] = "";
    enum infer_status status = parse_top_k(ex, cfg, &st->top_k, err, sizeof err);
    if (status == INFER_OK)
        status = is_image_request(ex->content_type)
                     ? decode_images(ex, cfg, &st->images, err, sizeof err)
                 : decode_predict(ex, cfg, err, sizeof err) != 0 ? INFER_INVALID
                                                                 : INFER_OK;
    if (status != INFER_OK)
        return http_reply_status(ex, status, 1, err);
    return api_call_submit(ex, c);
}
