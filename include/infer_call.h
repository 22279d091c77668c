/* infer_call.h - an inference call's life above its model's queue, the same
 * for every transport: bound to a model (the call holds a reference), asked
 * whether that model takes calls now, submitted to its queue, and released
 * (tensors freed, reference dropped). The transport creates the call
 * (infer_request.h), fills its inputs and hooks, and maps the statuses
 * returned here to its own codes. */
#ifndef INFERD_INFER_CALL_H
#define INFERD_INFER_CALL_H

#include <stddef.h>

#include "infer_request.h"

struct model;

/* Bind req to m, taking over the caller's reference to m (released by
 * infer_call_release). */
void infer_call_bind(struct infer_request *req, struct model *m);

/* Whether req's model takes a call now. Returns INFER_OK, or
 * INFER_UNAVAILABLE with why set and *retry_after_s the seconds a client
 * should wait (loading, failed, queue full). */
enum infer_status infer_call_available(const struct infer_request *req, int *retry_after_s,
                                       char *why, size_t why_len);

/* Check req's inputs as one unit of batching against its model's
 * max_batch_size (infer_request_check). Returns INFER_OK, or INFER_INVALID
 * with why set. */
enum infer_status infer_call_check(struct infer_request *req, char *why, size_t why_len);

/* Queue req on its model (req->hooks and req->owner set): from INFER_OK on,
 * req ends in one infer_request_finish call. Otherwise INFER_UNAVAILABLE
 * (queue full, or the model is stopping) with why set, and nothing queued. */
enum infer_status infer_call_submit(struct infer_request *req, char *why, size_t why_len);

/* Free req's tensors and drop its model reference (req itself stays). */
void infer_call_release(struct infer_request *req);

#endif
