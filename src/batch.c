/* batch.c - forming a batch and splitting its outputs (see batch.h). */
#include "batch.h"

#include <stdio.h>
#include <string.h>

size_t batch_input_bytes(struct infer_request *const *batch, int n, int i)
{
    size_t need = 0;
    for (int r = 0; r < n; r++)
        need += batch[r]->inputs[i].nbytes;
    return need;
}

void batch_gather(struct infer_request *const *batch, int n, int i, int64_t total, bool batching,
                  void *dst, struct shim_tensor *view)
{
    size_t offset = 0;
    for (int r = 0; r < n; r++) {
        memcpy((char *)dst + offset, batch[r]->inputs[i].data, batch[r]->inputs[i].nbytes);
        offset += batch[r]->inputs[i].nbytes;
    }
    *view = tensor_view(&batch[0]->inputs[i]);
    if (batching)
        view->shape[0] = total;
    view->data = dst;
    view->nbytes = offset;
}

int batch_check_rows(const struct shim_tensor *out, int n_out, int64_t total, char *err,
                     size_t err_len)
{
    for (int o = 0; o < n_out; o++) {
        if (out[o].ndim == 0 || out[o].shape[0] != total) {
            snprintf(err, err_len, "model output %d does not have the batch's %lld rows in dim 0",
                     o, (long long)total);
            return -1;
        }
    }
    return 0;
}

int batch_split(const struct shim_tensor *out, const char *const *names, int n_out,
                struct infer_request *req, int64_t row0, int64_t rows, bool whole, char *err,
                size_t err_len)
{
    if (n_out > MODEL_MAX_IO)
        n_out = MODEL_MAX_IO;
    for (int o = 0; o < n_out; o++) {
        const struct shim_tensor *v = &out[o];
        int64_t shape[TENSOR_MAX_DIMS];
        memcpy(shape, v->shape, sizeof shape);
        size_t offset = 0;
        if (!whole) {
            /* Every request has at least one row (infer_request_check) and
             * the bytes of a row come from the checked helper: no division
             * by the batch's rows. */
            size_t row_bytes = 0;
            if (v->ndim < 1 || row0 < 0 || rows < 0 || v->shape[0] - row0 < rows ||
                shape_size(v->shape + 1, v->ndim - 1, dtype_size(v->dtype), NULL, &row_bytes) !=
                    0) {
                snprintf(err, err_len, "output %d has %lld rows, not the batch's", o,
                         v->ndim ? (long long)v->shape[0] : 0LL);
                return -1;
            }
            shape[0] = rows;
            offset = row_bytes * (size_t)row0;
        }
        struct tensor *t = &req->outputs[o];
        if (tensor_alloc(t, v->dtype, v->ndim, shape) != 0) {
            snprintf(err, err_len, "out of memory copying outputs");
            return -1;
        }
        req->n_outputs = o + 1;
        if (offset > v->nbytes || t->nbytes > v->nbytes - offset) {
            snprintf(err, err_len, "output %d is shorter than its shape", o);
            return -1;
        }
        memcpy(t->data, (const char *)v->data + offset, t->nbytes);
        if (names[o] == NULL || names[o][0] == '\0')
            snprintf(req->output_names[o], sizeof req->output_names[o], "output__%d", o);
        else
            snprintf(req->output_names[o], sizeof req->output_names[o], "%s", names[o]);
    }
    return 0;
}
