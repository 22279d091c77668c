/* api_predict.c - POST /predict: the simple JSON path to the default model.
 * {"inputs": <numbers, nested or flat>, "shape": [..] (optional)} in;
 * {"model", "outputs", "shape", "labels"} out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_numbers.h"
#include "shape.h"
#include "tensor_json.h"

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

/* Decode the body into ex->infer's single input. Returns 0, or -1 with err
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
    struct tensor *t = &ex->infer.inputs[0];
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
        ex->infer.n_inputs = 1;
        if ((shape == NULL || apply_shape(&doc, shape, t, err, err_len) == 0) &&
            shape_fit(cfg->inputs[0].name, cfg->inputs[0].shape, cfg->inputs[0].ndim,
                      cfg->max_batch_size > 0, t->shape, &t->ndim, err, err_len) == 0)
            rc = 0;
    }
    json_doc_free(&doc);
    return rc;
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

/* Worker thread: the first output becomes the reply. */
static void encode_predict(struct http_exchange *ex)
{
    const struct model_config *cfg = &ex->model->cfg;
    const struct tensor *out = &ex->infer.outputs[0];
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
    ex->model = m; /* from here on, every answer counts in m's metrics */
    if (!api_model_available(ex, m))
        return ROUTE_REPLIED;
    const struct model_config *cfg = &m->cfg;
    if (cfg->n_inputs != 1)
        return http_reply_error(ex, 400,
                                "model %s takes %d inputs: use "
                                "/v2/models/%s/infer",
                                cfg->name, cfg->n_inputs, cfg->name);
    char err[320] = "";
    if (decode_predict(ex, cfg, err, sizeof err) != 0)
        return http_reply_error(ex, 400, "%s", err);
    struct tensor *t = &ex->infer.inputs[0];
    ex->infer.samples = cfg->max_batch_size > 0 ? t->shape[0] : 1;
    if (cfg->max_batch_size > 0 && t->shape[0] > cfg->max_batch_size)
        return http_reply_error(ex, 400,
                                "batch of %lld samples is over model %s's "
                                "max_batch_size of %d; split the request",
                                (long long)t->shape[0], cfg->name, cfg->max_batch_size);
    ex->encode = encode_predict;
    return http_submit(ex, m);
}
