/* image_batch.h - the encoded images of one request turned into one input
 * tensor: a cheap header check of every image (run where the request is
 * parsed), then the decode and preprocessing into the tensor's rows (run
 * later, on a model's worker thread, off the HTTP polling threads). */
#ifndef INFERD_IMAGE_BATCH_H
#define INFERD_IMAGE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infer_request.h"
#include "preprocess.h"
#include "tensor.h"

#define IMAGE_BATCH_MAX 1024

struct image_batch {
    const struct preprocess_spec *spec;
    long long max_pixels;
    int n;
    const uint8_t *data[IMAGE_BATCH_MAX]; /* encoded images */
    size_t len[IMAGE_BATCH_MAX];
    bool owned[IMAGE_BATCH_MAX]; /* data is ours to free */
    int out_h, out_w;            /* per sample, after image_batch_check */
};

/* Start an empty batch for an input described by spec. */
void image_batch_init(struct image_batch *b, const struct preprocess_spec *spec,
                      long long max_pixels);

/* Add one encoded image (borrowed, or owned when own: freed with the batch,
 * also when this fails). Returns 0, or -1 when the batch is full. */
int image_batch_add(struct image_batch *b, const uint8_t *data, size_t len, bool own);

/* Check the image count against max_batch (the model's max_batch_size;
 * 0: a model that does not batch takes one image), every image's header
 * (format, size, pixel limit: no decoding), that all give the same output
 * size, and shape t: [n, dims...] when batching, else one sample
 * [dims...], its data still to come (tensor_defer: a worker points it into
 * its pooled batch buffer). The pixels are written by image_batch_decode.
 * Returns INFER_OK, or INFER_INVALID, INFER_UNSUPPORTED or INFER_INTERNAL
 * with err set. */
enum infer_status image_batch_check(struct image_batch *b, int max_batch, struct tensor *t,
                                    char *err, size_t err_len);

/* Decode and preprocess every image into t's rows. Returns INFER_OK, or a
 * status as image_batch_check's with err naming the image. */
enum infer_status image_batch_decode(const struct image_batch *b, struct tensor *t, char *err,
                                     size_t err_len);

void image_batch_free(struct image_batch *b);

/* A request's image inputs: one batch per input slot, NULL for the slots
 * that take tensors. */
struct image_request {
    struct image_batch *inputs[MODEL_MAX_IO];
};

/* The batch for slot (allocated on first use, for spec). Returns NULL when
 * out of memory. */
struct image_batch *image_request_slot(struct image_request *r, int slot,
                                       const struct preprocess_spec *spec, long long max_pixels);

/* infer_request's prepare hook (arg: the struct image_request): decode
 * every image input into req->inputs (into the memory its data points to;
 * a tensor still pending gets its own). Returns INFER_OK, or INFER_INVALID
 * (a corrupt image), INFER_UNSUPPORTED (a format it does not read) or
 * INFER_INTERNAL with req->error set. Runs on the worker thread. */
enum infer_status image_request_prepare(struct infer_request *req, void *arg);

/* Free the batches (not r itself). */
void image_request_free(struct image_request *r);

#endif
