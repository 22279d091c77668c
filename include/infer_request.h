/* infer_request.h - one inference request as it travels from an HTTP thread
 * through a model's queue to a worker, and its one exit: every queued
 * request, whatever its outcome (200, 4xx/5xx, 499, 503 on drain, 504 at the
 * deadline), ends in exactly one infer_request_finish call. */
#ifndef INFERD_INFER_REQUEST_H
#define INFERD_INFER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "tensor.h"

/* The status recorded for a request whose client left (nginx's code). */
#define INFER_STATUS_CLIENT_CLOSED 499

/* The 504 message for a request whose deadline passed in the queue. */
#define INFER_DEADLINE_PASSED "the request's deadline passed while it was queued"

struct infer_request {
    struct infer_request *next; /* queue link, owned by the queue */

    /* Set by the submitter. */
    struct tensor inputs[MODEL_MAX_IO];
    int n_inputs;
    int64_t samples; /* dim 0 of the inputs (1 for non-batching models) */
    uint64_t arrival_ns;
    uint64_t deadline_ns; /* 0: none */
    int client_fd;        /* the connection's socket, or -1 */
    /* Called once as the request joins its queue, with the queue's lock held
     * (NULL: nothing to do); the HTTP front end suspends the connection. */
    void (*queued)(struct infer_request *req);
    void (*done)(struct infer_request *req); /* called once, by infer_request_finish */
    void *owner;                             /* the submitter's, for the callbacks */
    /* Optional, run by the worker just before the forward (e.g. to decode
     * images into inputs whose shapes are already set): returns 0, or an
     * HTTP status with error set, which fails this request alone. */
    int (*prepare)(struct infer_request *req, void *arg);
    void *prepare_arg;

    /* Set before done() runs. */
    int status; /* HTTP status: 200, 4xx from prepare, 499, 500, 503, 504 */
    char error[256];
    struct tensor outputs[MODEL_MAX_IO]; /* a worker's, on 200 */
    char output_names[MODEL_MAX_IO][64];
    int n_outputs;
    int batch_samples; /* samples in the forward call it ran in */
    uint64_t queue_ns, compute_ns;
};

/* Check req's inputs as one unit of batching and set req->samples: every
 * input has at least one element, and for a batching model (max_batch > 0)
 * every input has the same dim 0, from 1 to max_batch samples; otherwise
 * samples is 1. model names the model in messages. Returns 0, or -1 with
 * err saying what is wrong (the client's error: a 400). Nothing downstream
 * (batcher, worker, split) has to handle an empty input. */
int infer_request_check(struct infer_request *req, int max_batch, const char *model, char *err,
                        size_t err_len);

/* End req: record status and error (NULL or "" for none; cut to fit) and
 * call req->done, which owns req from then on. Call it exactly once per
 * queued request, from whichever thread took the request off its queue. */
void infer_request_finish(struct infer_request *req, int status, const char *error);

/* Finish every request of a list linked by next with the same status and
 * error. */
void infer_request_finish_all(struct infer_request *list, int status, const char *error);

#endif
