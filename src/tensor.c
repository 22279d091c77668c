/* tensor.c - the tensor type: allocation, views, conversion (see
 * tensor.h). */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

int tensor_alloc(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    size_t elem = dtype_size(dtype);
    if (ndim > TENSOR_MAX_DIMS || elem == 0 || shape_size(shape, ndim, elem, NULL, &t->nbytes) != 0)
        return -1;
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (t->data == NULL)
        return -1;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

int tensor_defer(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    size_t elem = dtype_size(dtype);
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS || elem == 0 ||
        shape_size(shape, ndim, elem, NULL, &t->nbytes) != 0)
        return -1;
    t->dtype = dtype;
    t->ndim = ndim;
    t->memory = TENSOR_PINNED; /* a pooled batch buffer, the worker's */
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

void tensor_free(struct tensor *t)
{
    if (t->memory == TENSOR_HEAP)
        free(t->data);
    memset(t, 0, sizeof *t);
}

struct shim_tensor tensor_view(const struct tensor *t)
{
    struct shim_tensor v;
    v.dtype = t->dtype;
    v.ndim = t->ndim;
    memcpy(v.shape, t->shape, sizeof v.shape);
    v.data = t->data;
    v.nbytes = t->nbytes;
    return v;
}

/* Largest integer magnitude a float type holds exactly. */
static double exact_int_limit(enum shim_dtype dtype)
{
    return dtype == SHIM_FP16 ? 2048.0 : dtype == SHIM_FP32 ? 16777216.0 : 9007199254740992.0;
}

int tensor_convert(const struct tensor *src, enum shim_dtype dtype, struct tensor *out, char *err,
                   size_t err_len)
{
    if (tensor_alloc(out, dtype, src->ndim, src->shape) != 0) {
        snprintf(err, err_len, "tensor too large");
        return -1;
    }
    size_t count = (size_t)shape_numel(src->shape, src->ndim);
    bool from_int = !dtype_is_float(src->dtype) && src->dtype != SHIM_BOOL;
    for (size_t i = 0; i < count; i++) {
        double v = dtype_load(src->data, i, src->dtype);
        if (src->dtype == SHIM_INT64 && !dtype_is_float(dtype)) {
            int64_t exact = ((const int64_t *)src->data)[i];
            if (dtype == SHIM_INT64) {
                ((int64_t *)out->data)[i] = exact;
                continue;
            }
            v = (double)exact; /* fits a double exactly in every narrower range */
        }
        bool exact_loss = from_int && dtype_is_float(dtype) && fabs(v) > exact_int_limit(dtype);
        if (exact_loss || (dtype_is_float(src->dtype) && !isfinite(v) && !dtype_is_float(dtype))) {
            snprintf(err, err_len,
                     "element %zu (%.17g) cannot be converted from %s to %s without loss", i, v,
                     dtype_name(src->dtype), dtype_name(dtype));
            tensor_free(out);
            return -1;
        }
        if (!(dtype_is_float(dtype) && !isfinite(v)) &&
            dtype_check(v, dtype, i, err, err_len) != 0) {
            tensor_free(out);
            return -1;
        }
        dtype_store(out->data, i, dtype, v);
    }
    return 0;
}

int tensor_topk_rows(const struct tensor *t, int k, int softmax,
                     void (*emit)(void *arg, int64_t row, const struct topk_entry *best, int n),
                     void *arg)
{
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->ndim == 1 ? t->shape[0] : 0;
    int64_t n = cols > INT32_MAX ? INT32_MAX : cols; /* topk_select counts in an int */
    if (k > n)
        k = (int)n; /* as Triton's classification: at most every class */
    double *row = malloc((size_t)(n ? n : 1) * sizeof *row);
    struct topk_entry *best = malloc((size_t)(k > 0 ? k : 1) * sizeof *best);
    if (row == NULL || best == NULL) {
        free(row);
        free(best);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < n; c++)
            row[c] = dtype_load(t->data, (size_t)(r * cols + c), t->dtype);
        emit(arg, r, best, topk_select(row, (int)n, k, softmax, best));
    }
    free(row);
    free(best);
    return 0;
}
