/* infer_request.c - the one exit of a queued inference request (see
 * infer_request.h). */
#include "infer_request.h"

#include <stdio.h>
#include <string.h>

int infer_request_check(struct infer_request *req, int max_batch, const char *model, char *err,
                        size_t err_len)
{
    char text[128];
    if (req->n_inputs < 1) {
        snprintf(err, err_len, "the request has no inputs");
        return -1;
    }
    for (int i = 0; i < req->n_inputs; i++) {
        const struct tensor *t = &req->inputs[i];
        int64_t numel = shape_numel(t->shape, t->ndim);
        if (numel <= 0) {
            shape_format(t->shape, t->ndim, text, sizeof text);
            snprintf(err, err_len, "input %d has shape %s: %s", i, text,
                     numel == 0 ? "no elements; send at least one sample" : "too many elements");
            return -1;
        }
        if (max_batch > 0 && (t->ndim < 1 || t->shape[0] != req->inputs[0].shape[0])) {
            snprintf(err, err_len, "inputs disagree on the batch size (dim 0)");
            return -1;
        }
    }
    req->samples = 1;
    if (max_batch <= 0)
        return 0;
    req->samples = req->inputs[0].shape[0];
    if (req->samples > max_batch) {
        snprintf(err, err_len,
                 "batch of %lld samples is over model %s's max_batch_size of %d; split the "
                 "request",
                 (long long)req->samples, model, max_batch);
        return -1;
    }
    return 0;
}

void infer_request_free_tensors(struct infer_request *req)
{
    for (int i = 0; i < req->n_inputs; i++)
        tensor_free(&req->inputs[i]);
    for (int i = 0; i < req->n_outputs; i++)
        tensor_free(&req->outputs[i]);
    req->n_inputs = req->n_outputs = 0;
}

const char *infer_status_name(enum infer_status s)
{
    switch (s) {
    case INFER_OK: return "ok";
    case INFER_INVALID: return "invalid";
    case INFER_UNSUPPORTED: return "unsupported";
    case INFER_NOT_FOUND: return "not found";
    case INFER_UNAVAILABLE: return "unavailable";
    case INFER_DEADLINE: return "deadline";
    case INFER_CANCELLED: return "cancelled";
    case INFER_INTERNAL: return "internal";
    }
    return "internal";
}

void infer_request_finish(struct infer_request *req, enum infer_status status, const char *error)
{
    size_t n = error ? strnlen(error, sizeof req->error - 1) : 0;
    req->status = status;
    if (n)
        memcpy(req->error, error, n);
    req->error[n] = '\0';
    req->hooks->done(req);
}

void infer_request_finish_all(struct infer_request *list, enum infer_status status,
                              const char *error)
{
    while (list != NULL) {
        struct infer_request *next = list->next;
        infer_request_finish(list, status, error);
        list = next;
    }
}
