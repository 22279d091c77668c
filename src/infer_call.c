/* infer_call.c - an inference call bound to a model, submitted and
 * released (see infer_call.h). */
#include "infer_call.h"

#include <stdio.h>

#include "clock.h"
#include "model.h"
#include "redact.h"

void infer_call_bind(struct infer_request *req, struct model *m)
{
    req->model = m;
    req->model_name = m->cfg.name;
}

static void queue_full(const struct model *m, char *why, size_t why_len)
{
    snprintf(why, why_len, "model %s has %d requests queued, its limit; retry later", m->cfg.name,
             m->queue.capacity);
}

enum infer_status infer_call_available(const struct infer_request *req, int *retry_after_s,
                                       char *why, size_t why_len)
{
    struct model *m = req->model;
    char error[256];
    *retry_after_s = 1;
    switch (model_get_state(m)) {
    case MODEL_READY: break;
    case MODEL_LOADING:
        snprintf(why, why_len, "model %s is still loading", m->cfg.name);
        return INFER_UNAVAILABLE;
    case MODEL_FAILED:
        model_get_error(m, error, sizeof error);
        redact_paths(error); /* the log has the paths */
        snprintf(why, why_len, "model %s is not available: %s", m->cfg.name, error);
        *retry_after_s = 5;
        return INFER_UNAVAILABLE;
    }
    if (batch_queue_length(&m->queue) >= m->queue.capacity) {
        queue_full(m, why, why_len);
        return INFER_UNAVAILABLE;
    }
    return INFER_OK;
}

enum infer_status infer_call_check(struct infer_request *req, char *why, size_t why_len)
{
    const struct model *m = req->model;
    return infer_request_check(req, m->cfg.max_batch_size, m->cfg.name, why, why_len) == 0
               ? INFER_OK
               : INFER_INVALID;
}

enum infer_status infer_call_submit(struct infer_request *req, char *why, size_t why_len)
{
    struct model *m = req->model;
    req->arrival_ns = clock_now_ns();
    switch (batch_queue_submit(&m->queue, req)) {
    case SUBMIT_OK: return INFER_OK;
    case SUBMIT_FULL: queue_full(m, why, why_len); return INFER_UNAVAILABLE;
    default: snprintf(why, why_len, "the server is shutting down"); return INFER_UNAVAILABLE;
    }
}

void infer_call_release(struct infer_request *req)
{
    infer_request_free_tensors(req);
    if (req->model != NULL)
        model_release(req->model);
    req->model = NULL;
    req->model_name = NULL;
}
