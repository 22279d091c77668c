/* dtype.h - the element types (KServe v2 datatypes, enum shim_dtype): names,
 * sizes, FP16 conversion, and reading, checking and storing one element.
 * Every table here is generated from shim_dtype_list.h, the list the shim
 * shares. */
#ifndef INFERD_DTYPE_H
#define INFERD_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "torch_shim.h"

/* "FP32" -> SHIM_FP32 ... Returns 0, or -1 for a name that is none. */
int dtype_from_name(const char *name, enum shim_dtype *out);
/* Every v2 name, in the list's order: "BOOL, UINT8, ..., FP64" (for
 * messages; generated from shim_dtype_list.h). */
const char *dtype_names_text(void);
/* The v2 name, or "?" for an invalid dtype. */
const char *dtype_name(enum shim_dtype dtype);
/* Bytes per element (0 for an invalid dtype). */
size_t dtype_size(enum shim_dtype dtype);
bool dtype_is_float(enum shim_dtype dtype);

/* IEEE half -> float (exact), and double -> half rounded to nearest, ties
 * to even (infinity above 65504's rounding range, NaN kept). */
float dtype_half_to_float(uint16_t h);
uint16_t dtype_double_to_half(double v);

/* Element i of a buffer of dtype, as a double (0 for an invalid dtype). */
double dtype_load(const void *data, size_t i, enum shim_dtype dtype);
/* Store v as element i of a buffer of dtype (v already checked). */
void dtype_store(void *data, size_t i, enum shim_dtype dtype, double v);
/* Whether dtype holds v: in range, an integer for integer types, 0 or 1
 * for BOOL, finite for every type. Returns 0, or -1 with err naming element
 * i and why. */
int dtype_check(double v, enum shim_dtype dtype, size_t i, char *err, size_t err_len);

#endif
