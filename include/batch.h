/* batch.h - one forward's inputs formed from several requests, and its
 * outputs split back: concatenating each input along dim 0, checking that
 * every output has the batch's rows, and copying each request's rows out.
 * Pure functions on tensors: the worker calls them around the forward, and
 * the whole-path fuzz target calls them around a cheap model. */
#ifndef INFERD_BATCH_H
#define INFERD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer_request.h"

/* Bytes that input i of the n requests takes, concatenated. */
size_t batch_input_bytes(struct infer_request *const *batch, int n, int i);

/* Concatenate input i of the n requests into dst (batch_input_bytes of
 * room) and describe it in view: the first request's dtype and dims, dim 0
 * total when batching. */
void batch_gather(struct infer_request *const *batch, int n, int i, int64_t total, bool batching,
                  void *dst, struct shim_tensor *view);

/* Whether every one of the n_out outputs has total rows in dim 0. Returns 0,
 * or -1 with err naming the first that does not. */
int batch_check_rows(const struct shim_tensor *out, int n_out, int64_t total, char *err,
                     size_t err_len);

/* Copy rows [row0, row0 + rows) of every output into req->outputs (all of
 * each output when whole: a batch of this request alone), named names[o].
 * Returns 0, or -1 with err set (out of memory, an output too short); the
 * outputs copied so far stay in req for the caller to free. */
int batch_split(const struct shim_tensor *out, const char *const *names, int n_out,
                struct infer_request *req, int64_t row0, int64_t rows, bool whole, char *err,
                size_t err_len);

#endif
