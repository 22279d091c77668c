/* tensor.h - inferd's tensor type: a dense, row-major CPU buffer of one
 * element type, with its shape and where its memory lives; allocation,
 * views for the shim, and conversion between element types. Codecs build
 * on it (tensor_json.h). */
#ifndef INFERD_TENSOR_H
#define INFERD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "shape.h"
#include "torch_shim.h"

#define TENSOR_MAX_DIMS SHIM_MAX_DIMS

/* Where a tensor's bytes live, and so who frees them: tensor_free frees
 * only TENSOR_HEAP's. */
enum tensor_memory {
    TENSOR_HEAP = 0, /* its own allocation */
    TENSOR_BODY,     /* in the request body the transport received (borrowed) */
    TENSOR_PINNED,   /* in a worker's pinned staging slot (borrowed) */
    TENSOR_SHARED,   /* in a client's registered shared-memory region (borrowed) */
};

struct tensor {
    enum shim_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void *data;
    size_t nbytes;
    enum tensor_memory memory;
};

/* Allocate an uninitialised tensor. Returns 0 or -1 (out of memory, or a
 * shape too large). */
int tensor_alloc(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape);
void tensor_free(struct tensor *t);

/* A tensor whose shape is known and whose data is written later, into memory
 * someone else provides (a worker's pooled batch buffer): data NULL,
 * borrowed. Returns 0 or -1 (a shape too large). */
int tensor_defer(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape);

/* Whether t has a shape but no data yet (tensor_defer). */
static inline bool tensor_pending(const struct tensor *t)
{
    return t->data == NULL && t->ndim > 0;
}

/* Whether t was given at all: data, or a shape waiting for it. */
static inline bool tensor_is_set(const struct tensor *t)
{
    return t->data != NULL || t->ndim > 0;
}

/* Convert src to dtype into out (a new tensor). Refuses a value the target
 * cannot hold exactly in kind: out of range, a fraction for an integer type,
 * an integer beyond a float type's exact range, not 0/1 for BOOL, NaN/Inf for
 * integers. Floats narrowing to a smaller float type are rounded. Returns 0,
 * or -1 with err set. */
int tensor_convert(const struct tensor *src, enum shim_dtype dtype, struct tensor *out, char *err,
                   size_t err_len);
struct shim_tensor tensor_view(const struct tensor *t);

struct topk_entry;

/* The top k of each row of t (a [rows, cols] tensor; a 1-D one is one row;
 * cols at most INT32_MAX), best first, as topk_select gives them (raw
 * values, or softmax probabilities when softmax): emit(arg, row, best, n)
 * once per row, n = min(k, cols). Returns 0, or -1 when out of memory. */
int tensor_topk_rows(const struct tensor *t, int k, int softmax,
                     void (*emit)(void *arg, int64_t row, const struct topk_entry *best, int n),
                     void *arg);

#endif
