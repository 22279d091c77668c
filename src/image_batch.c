/* image_batch.c - a request's images into one input tensor (see
 * image_batch.h). */
#include "image_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void image_batch_init(struct image_batch *b, const struct preprocess_spec *spec,
                      long long max_pixels)
{
    memset(b, 0, sizeof *b);
    b->spec = spec;
    b->max_pixels = max_pixels;
}

int image_batch_add(struct image_batch *b, const uint8_t *data, size_t len, bool own)
{
    if (b->n == IMAGE_BATCH_MAX) {
        if (own)
            free((void *)data);
        return -1;
    }
    b->data[b->n] = data;
    b->len[b->n] = len;
    b->owned[b->n] = own;
    b->n++;
    return 0;
}

/* " (image 3 of 5)" when there are several. */
static void which(const struct image_batch *b, int i, char *buf, size_t len)
{
    if (b->n > 1)
        snprintf(buf, len, " (image %d of %d)", i + 1, b->n);
    else
        buf[0] = '\0';
}

/* An image's refusal as a call's status. */
static enum infer_status status_of(enum image_status st)
{
    return st == IMAGE_UNSUPPORTED ? INFER_UNSUPPORTED : INFER_INVALID;
}

enum infer_status image_batch_check(struct image_batch *b, int max_batch, struct tensor *t,
                                    char *err, size_t err_len)
{
    bool batching = max_batch > 0;
    char where[48], why[256];
    if (b->n == 0) {
        snprintf(err, err_len, "no image in the request");
        return INFER_INVALID;
    }
    if (!batching && b->n > 1) {
        snprintf(err, err_len, "this model does not batch: send one image, not %d", b->n);
        return INFER_INVALID;
    }
    if (batching && b->n > max_batch) { /* before allocating for them */
        snprintf(err, err_len,
                 "%d images are over the model's max_batch_size of %d; split the request", b->n,
                 max_batch);
        return INFER_INVALID;
    }
    for (int i = 0; i < b->n; i++) {
        struct image_info info;
        enum image_status st =
            image_probe(b->data[i], b->len[i], b->max_pixels, &info, why, sizeof why);
        which(b, i, where, sizeof where);
        if (st != IMAGE_OK) {
            snprintf(err, err_len, "%s%s", why, where);
            return status_of(st);
        }
        int h, w;
        if (preprocess_check(b->spec, info.width, info.height, &h, &w, why, sizeof why) != 0) {
            snprintf(err, err_len, "%s%s", why, where);
            return INFER_INVALID;
        }
        if (i > 0 && (h != b->out_h || w != b->out_w)) {
            snprintf(err, err_len,
                     "images of one request must give the same size: image 1 gives %dx%d, "
                     "image %d gives %dx%d (declare a crop or a fixed resize)",
                     b->out_w, b->out_h, i + 1, w, h);
            return INFER_INVALID;
        }
        b->out_h = h;
        b->out_w = w;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    if (batching)
        shape[ndim++] = b->n;
    ndim += preprocess_sample_dims(b->spec, b->out_h, b->out_w, shape + ndim);
    if (tensor_defer(t, b->spec->dtype, ndim, shape) != 0) {
        snprintf(err, err_len, "a %d-image input is too large", b->n);
        return INFER_INTERNAL;
    }
    return INFER_OK;
}

enum infer_status image_batch_decode(const struct image_batch *b, struct tensor *t, char *err,
                                     size_t err_len)
{
    if (b->n < 1) {
        snprintf(err, err_len, "no images to decode");
        return INFER_INVALID;
    }
    size_t sample = t->nbytes / (size_t)b->n;
    char where[48], why[256];
    for (int i = 0; i < b->n; i++) {
        struct image img;
        which(b, i, where, sizeof where);
        enum image_status st = image_decode(b->data[i], b->len[i], b->spec->color, b->max_pixels,
                                            &img, why, sizeof why);
        if (st != IMAGE_OK) {
            snprintf(err, err_len, "%s%s", why, where);
            return status_of(st);
        }
        int rc =
            preprocess_run(b->spec, &img, (char *)t->data + (size_t)i * sample, why, sizeof why);
        image_free(&img);
        if (rc != 0) {
            snprintf(err, err_len, "%s%s", why, where);
            return INFER_INTERNAL;
        }
    }
    return INFER_OK;
}

void image_batch_free(struct image_batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (b->owned[i])
            free((void *)b->data[i]);
    b->n = 0;
}

struct image_batch *image_request_slot(struct image_request *r, int slot,
                                       const struct preprocess_spec *spec, long long max_pixels)
{
    if (r->inputs[slot] == NULL) {
        r->inputs[slot] = malloc(sizeof *r->inputs[slot]);
        if (r->inputs[slot] == NULL)
            return NULL;
        image_batch_init(r->inputs[slot], spec, max_pixels);
    }
    return r->inputs[slot];
}

enum infer_status image_request_prepare(struct infer_request *req, void *arg)
{
    struct image_request *r = arg;
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        if (r->inputs[i] == NULL)
            continue;
        struct tensor *t = &req->inputs[i];
        if (tensor_pending(t)) { /* no pooled buffer given: its own memory */
            struct tensor own;
            if (tensor_alloc(&own, t->dtype, t->ndim, t->shape) != 0) {
                snprintf(req->error, sizeof req->error, "out of memory for the images");
                return INFER_INTERNAL;
            }
            *t = own;
        }
        enum infer_status status =
            image_batch_decode(r->inputs[i], &req->inputs[i], req->error, sizeof req->error);
        if (status != INFER_OK)
            return status;
    }
    return INFER_OK;
}

void image_request_free(struct image_request *r)
{
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        if (r->inputs[i]) {
            image_batch_free(r->inputs[i]);
            free(r->inputs[i]);
            r->inputs[i] = NULL;
        }
    }
}
