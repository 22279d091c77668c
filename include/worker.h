/* worker.h - one model instance: a thread that loads the module on its
 * device, warms it up, then runs batches from the model's queue and hands
 * each request its own rows of the outputs. */
#ifndef INFERD_WORKER_H
#define INFERD_WORKER_H

#include <stddef.h>

#include "model.h"

/* Start w's thread (w->model, device, index set). Returns 0 or -1 with err
 * set. Load failures are reported later through the model's state. */
int worker_start(struct worker *w, char *err, size_t err_len);

/* Join the thread (the queue must be closed) and free its resources. */
void worker_join(struct worker *w);

/* The 504 message for a request whose deadline passed in the queue. */
#define WORKER_DEADLINE_PASSED "the request's deadline passed while it was queued"

/* Finish a request that will not run: set status and message, call done. */
void worker_fail_request(struct infer_request *req, int status, const char *error);

#endif
