/* infer_request.h - one inference call, whatever transport made it: the
 * model it runs on, its request id and deadline, its inputs, its result
 * (status, message, outputs, timings), as it travels from a transport's
 * thread through a model's queue to a worker, and its one exit: every
 * queued call, whatever its outcome (ok, invalid, cancelled, unavailable on
 * drain, deadline), ends in exactly one infer_request_finish call. The
 * transport owns it (not its connection's state: a separate allocation, made
 * only for inference) and attaches itself through struct infer_hooks;
 * infer_call.h binds it to a model and submits it. */
#ifndef INFERD_INFER_REQUEST_H
#define INFERD_INFER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "tensor.h"

/* The 504 message for a request whose deadline passed in the queue. */
#define INFER_DEADLINE_PASSED "the request's deadline passed while it was queued"

/* What became of a request: the one status every layer below the
 * transports uses. Each transport maps it to its own codes in one place
 * (HTTP: http.c's status_of). */
enum infer_status {
    INFER_OK = 0,
    INFER_INVALID,     /* the client's input is wrong */
    INFER_UNSUPPORTED, /* a format inferd does not take (an image type, a content type) */
    INFER_NOT_FOUND,   /* no such model, version or output */
    INFER_UNAVAILABLE, /* queue full, loading, draining: retry later */
    INFER_DEADLINE,    /* its deadline passed before it ran */
    INFER_CANCELLED,   /* its client left while it was queued */
    INFER_INTERNAL,    /* the model or the server failed */
};

/* "ok", "invalid", ...: for logs. */
const char *infer_status_name(enum infer_status s);

struct infer_request;
struct model;

/* An output the client asked for. */
struct infer_output_want {
    char name[64];
    bool binary;        /* as raw bytes (a wire form's binary part), not as text */
    int classification; /* its top k classes instead of the tensor; 0: the tensor */
};

/* How a transport follows its requests. */
struct infer_hooks {
    /* As the request joins its queue, with the queue's lock held (NULL:
     * nothing to do); the HTTP front end suspends its connection here. */
    void (*queued)(struct infer_request *req);
    /* Whether the request's client has left (NULL: never asked); called by
     * the queue watcher, which then ends it INFER_CANCELLED. */
    bool (*gone)(const struct infer_request *req);
    /* Called once, by infer_request_finish; owns req from then on. */
    void (*done)(struct infer_request *req);
};

struct infer_request {
    struct infer_request *next; /* queue link, owned by the queue */

    /* Set by the submitter. */
    struct model *model;    /* a reference the call holds (infer_call_bind) */
    const char *model_name; /* the model's, while the call holds it */
    const char *request_id; /* the transport's, for logs ("" when none) */
    struct tensor inputs[MODEL_MAX_IO];
    int n_inputs;
    /* The outputs wanted, in order (none: every output, as the model
     * gives them). */
    struct infer_output_want wanted[MODEL_MAX_IO];
    int n_wanted;
    int64_t samples;                 /* dim 0 of the inputs (1 for non-batching models) */
    uint64_t arrival_ns;             /* as it joined its queue (infer_call_submit) */
    uint64_t deadline_ns;            /* 0: none */
    const struct infer_hooks *hooks; /* the transport's */
    void *owner;                     /* the transport's, for its hooks */
    /* Optional, run by the worker just before the forward (e.g. to decode
     * images into inputs whose shapes are already set): returns INFER_OK, or
     * a status with error set, which fails this request alone. */
    enum infer_status (*prepare)(struct infer_request *req, void *arg);
    void *prepare_arg;

    /* Set before done() runs. */
    enum infer_status status;
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

/* Free req's input and output tensors (the model reference is
 * infer_call_release's). */
void infer_request_free_tensors(struct infer_request *req);

/* End req: record status and error (NULL or "" for none; cut to fit) and
 * call req->hooks->done, which owns req from then on. Call it exactly once per
 * queued request, from whichever thread took the request off its queue. */
void infer_request_finish(struct infer_request *req, enum infer_status status, const char *error);

/* Finish every request of a list linked by next with the same status and
 * error. */
void infer_request_finish_all(struct infer_request *list, enum infer_status status,
                              const char *error);

#endif
