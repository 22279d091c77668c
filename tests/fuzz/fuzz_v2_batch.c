/* fuzz_v2_batch.c - the whole path of several v2 requests, fuzzed together:
 * each decoded (v2_json on v2_binding) and checked (infer_request_check), queued in one
 * model queue (batcher), taken as batches, their images decoded (prepare),
 * concatenated (batch_gather), run through a cheap model, split back
 * (batch_split) and encoded (v2_json_encode). So the arithmetic across the
 * requests of one batch is fuzzed too.
 *
 * Input: byte 0 picks the model (fuzz_v2_models.h, batching ones), the rest
 * is up to 4 request bodies separated by "\n#\n", each sent with its JSON
 * part's length as Inference-Header-Content-Length when it holds a NUL
 * byte (the JSON ends there) and as plain JSON otherwise.
 *
 * The cheap model: every output row r is [s_r, s_r + 1, ...] where s_r is
 * the sum of row r of input 0. Checked: each request gets exactly its own
 * rows back (batched equals unbatched), and the encoded reply's JSON part
 * lies within the reply. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "batcher.h"
#include "fuzz_v2_models.h"
#include "shape.h"
#include "v2_json.h"

#define MAX_REQUESTS 4

struct call {
    struct infer_request req;
    struct v2_request *v2;
    char header[24];
};

/* Sum of each of the rows rows of t (rows x per elements). */
static double row_sum(const void *data, enum shim_dtype dtype, size_t row, size_t per)
{
    double s = 0;
    for (size_t k = 0; k < per; k++)
        s += dtype_load(data, row * per + k, dtype);
    return s;
}

/* Run the cheap model on input view x: out[o] is [rows, cols_o] FP32. */
static int cheap_forward(const struct model_config *cfg, const struct shim_tensor *x,
                         struct tensor *out)
{
    int64_t rows = x->shape[0];
    size_t per = rows > 0 ? x->nbytes / dtype_size(x->dtype) / (size_t)rows : 0;
    for (int o = 0; o < cfg->n_outputs; o++) {
        int64_t cols = cfg->outputs[o].ndim == 2 && cfg->outputs[o].shape[1] > 0
                           ? cfg->outputs[o].shape[1]
                           : 1;
        int64_t shape[2] = {rows, cols};
        if (tensor_alloc(&out[o], SHIM_FP32, 2, shape) != 0)
            return -1;
        for (int64_t r = 0; r < rows; r++) {
            double s = row_sum(x->data, x->dtype, (size_t)r, per);
            for (int64_t c = 0; c < cols; c++)
                ((float *)out[o].data)[r * cols + c] = (float)(s + (double)c);
        }
    }
    return 0;
}

/* Check a request's split outputs against the cheap model on its input
 * alone. */
static void check_own_rows(const struct model_config *cfg, struct infer_request *req)
{
    struct shim_tensor x = tensor_view(&req->inputs[0]);
    struct tensor alone[MODEL_MAX_IO] = {{0}};
    CHECK(cheap_forward(cfg, &x, alone) == 0);
    CHECK(req->n_outputs == cfg->n_outputs);
    for (int o = 0; o < cfg->n_outputs; o++) {
        CHECK(req->outputs[o].nbytes == alone[o].nbytes);
        CHECK(memcmp(req->outputs[o].shape, alone[o].shape, sizeof alone[o].shape) == 0);
        CHECK(memcmp(req->outputs[o].data, alone[o].data, alone[o].nbytes) == 0);
        tensor_free(&alone[o]);
    }
}

static void run_batch(const struct model_config *cfg, struct infer_request **batch, int n)
{
    int live = 0;
    int64_t total = 0;
    for (int r = 0; r < n; r++) {
        struct infer_request *req = batch[r];
        if (req->prepare == NULL || req->prepare(req, req->prepare_arg) == 0) {
            batch[live++] = req;
            total += req->samples;
        }
    }
    if (live == 0)
        return;
    struct shim_tensor views[MODEL_MAX_IO];
    void *staging[MODEL_MAX_IO] = {0};
    for (int i = 0; i < batch[0]->n_inputs; i++) {
        size_t need = batch_input_bytes(batch, live, i);
        staging[i] = malloc(need ? need : 1);
        CHECK(staging[i] != NULL);
        batch_gather(batch, live, i, total, true, staging[i], &views[i]);
        CHECK(views[i].nbytes == need && views[i].shape[0] == total);
    }
    struct tensor out[MODEL_MAX_IO] = {{0}};
    CHECK(cheap_forward(cfg, &views[0], out) == 0);
    struct shim_tensor outs[MODEL_MAX_IO];
    const char *names[MODEL_MAX_IO];
    for (int o = 0; o < cfg->n_outputs; o++) {
        outs[o] = tensor_view(&out[o]);
        names[o] = cfg->outputs[o].name;
    }
    char err[256];
    CHECK(batch_check_rows(outs, cfg->n_outputs, total, err, sizeof err) == 0);
    int64_t row = 0;
    for (int r = 0; r < live; r++) {
        CHECK(batch_split(outs, names, cfg->n_outputs, batch[r], row, batch[r]->samples, live == 1,
                          err, sizeof err) == 0);
        row += batch[r]->samples;
        check_own_rows(cfg, batch[r]);
        struct call *c = (struct call *)batch[r];
        struct strbuf sb = {0};
        size_t json_len = 0;
        bool any_binary = false;
        enum infer_status status =
            v2_json_encode(c->v2, cfg, batch[r], &sb, &json_len, &any_binary, err, sizeof err);
        CHECK(status == INFER_OK || err[0] != '\0');
        CHECK(status != 0 || (json_len >= 2 && json_len <= sb.len));
        strbuf_free(&sb);
    }
    CHECK(row == total);
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        free(staging[i]);
        tensor_free(&out[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int batching[] = {0, 1, 2, 3};
    if (size < 1)
        return 0;
    const struct model_config *cfg = &fuzz_v2_models()[batching[data[0] % 4]];
    /* An exact-size copy, so that ASan sees any read past a body. */
    char *text = malloc(size - 1 ? size - 1 : 1);
    struct call *calls = calloc(MAX_REQUESTS, sizeof *calls);
    CHECK(text != NULL && calls != NULL);
    memcpy(text, data + 1, size - 1);
    struct batch_queue q;
    CHECK(batch_queue_init(&q, MAX_REQUESTS, cfg->max_batch_size, 0) == 0);
    size_t at = 0, len = size - 1;
    for (int n = 0; n < MAX_REQUESTS && at <= len; n++) {
        const char *start = text + at;
        const char *sep = memmem(start, len - at, "\n#\n", 3);
        size_t body_len = sep ? (size_t)(sep - start) : len - at;
        at += body_len + 3;
        struct call *c = &calls[n];
        c->v2 = calloc(1, sizeof *c->v2);
        CHECK(c->v2 != NULL);
        const char *nul = memchr(start, '\0', body_len);
        if (nul)
            snprintf(c->header, sizeof c->header, "%zu", (size_t)(nul - start));
        struct v2_body body = {start, body_len, nul ? c->header : NULL, nul != NULL};
        char err[400];
        if (v2_json_decode(cfg, FUZZ_V2_MAX_PIXELS, &body, c->v2, &c->req, err, sizeof err) ==
                INFER_OK &&
            infer_request_check(&c->req, cfg->max_batch_size, cfg->name, err, sizeof err) == 0)
            CHECK(batch_queue_submit(&q, &c->req) == SUBMIT_OK);
    }
    batch_queue_close(&q);
    struct infer_request *batch[MAX_REQUESTS];
    int n;
    while ((n = batch_queue_take(&q, batch, MAX_REQUESTS)) > 0)
        run_batch(cfg, batch, n);
    batch_queue_destroy(&q);
    for (int r = 0; r < MAX_REQUESTS; r++) {
        for (int i = 0; i < MODEL_MAX_IO; i++) {
            tensor_free(&calls[r].req.inputs[i]);
            tensor_free(&calls[r].req.outputs[i]);
        }
        v2_request_free(calls[r].v2);
    }
    free(calls);
    free(text);
    return 0;
}
