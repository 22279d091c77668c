/* tensor.h - inferd's tensor type (an owned, dense, row-major CPU buffer)
 * and its JSON codec: numeric arrays to typed tensors with range checks,
 * tensors to nested JSON arrays with shortest round-trip numbers. */
#ifndef INFERD_TENSOR_H
#define INFERD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json_numbers.h"
#include "strbuf.h"
#include "torch_shim.h"

#define TENSOR_MAX_DIMS SHIM_MAX_DIMS

struct tensor {
    enum shim_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void *data; /* owned, unless borrowed */
    size_t nbytes;
    bool borrowed; /* data points into memory someone else frees */
};

/* KServe v2 datatype names: "FP32" <-> SHIM_FP32 ... Returns 0 or -1. */
int dtype_from_name(const char *name, enum shim_dtype *out);
const char *dtype_name(enum shim_dtype dtype);
/* Bytes per element of dtype (0 for an invalid dtype). */
size_t dtype_size(enum shim_dtype dtype);

/* Product of the dims, or -1 on a negative dim or overflow. */
int64_t shape_numel(const int64_t *shape, int ndim);
/* "[1,28,28]" into buf. */
void shape_format(const int64_t *shape, int ndim, char *buf, size_t len);

/* Allocate an uninitialised tensor. Returns 0 or -1 (out of memory, or a
 * shape too large). */
int tensor_alloc(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape);
void tensor_free(struct tensor *t);

/* Element i of a buffer of dtype, as a double. */
double tensor_element(const void *data, size_t i, enum shim_dtype dtype);

/* Convert src to dtype into out (a new tensor). Refuses a value the target
 * cannot hold exactly in kind: out of range, a fraction for an integer type,
 * an integer beyond a float type's exact range, not 0/1 for BOOL, NaN/Inf for
 * integers. Floats narrowing to a smaller float type are rounded. Returns 0,
 * or -1 with err set. */
int tensor_convert(const struct tensor *src, enum shim_dtype dtype, struct tensor *out, char *err,
                   size_t err_len);
struct shim_tensor tensor_view(const struct tensor *t);

/* Convert a decoded JSON array to dtype, keeping its shape. Refuses values
 * the dtype cannot hold (out of range, fractional for integers, not 0/1 for
 * BOOL, true/false for numeric types). Returns 0, or -1 with err set. */
int tensor_from_num_array(const struct num_array *a, enum shim_dtype dtype, struct tensor *out,
                          char *err, size_t err_len);

/* Append rows [row0, row0+nrows) of view (split on dim 0) as a JSON array,
 * nested like the tensor (flat when nested is false). Non-finite floats are
 * written as null. Returns 0 or -1 (out of memory). */
int tensor_json_append(struct strbuf *sb, const struct shim_tensor *view, int64_t row0,
                       int64_t nrows, bool nested);

/* IEEE half -> float (exact), and double -> half rounded to nearest, ties
 * to even (infinity above 65504's rounding range, NaN kept). */
float half_to_float(uint16_t h);
uint16_t double_to_half(double v);

#endif
