/* tensor_json.h - the JSON tensor codec: decoded JSON numeric arrays
 * (json_numbers.h) to typed tensors with range checks, and tensors to
 * nested JSON arrays with shortest round-trip numbers. */
#ifndef INFERD_TENSOR_JSON_H
#define INFERD_TENSOR_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "json_numbers.h"
#include "strbuf.h"
#include "tensor.h"

/* Convert a decoded JSON array to dtype, keeping its shape. Refuses values
 * the dtype cannot hold (out of range, fractional for integers, not 0/1 for
 * BOOL, true/false for numeric types). Returns 0, or -1 with err set. */
int tensor_json_from_array(const struct num_array *a, enum shim_dtype dtype, struct tensor *out,
                           char *err, size_t err_len);

/* Append rows [row0, row0+nrows) of view (split on dim 0) as a JSON array,
 * nested like the tensor (flat when nested is false). Non-finite floats are
 * written as null. Returns 0 or -1 (out of memory). */
int tensor_json_append(struct strbuf *sb, const struct shim_tensor *view, int64_t row0,
                       int64_t nrows, bool nested);

#endif
