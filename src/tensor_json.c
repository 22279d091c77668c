/* tensor_json.c - the JSON tensor codec (see tensor_json.h). */
#include "tensor_json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "numconv.h"

int tensor_json_from_array(const struct num_array *a, enum shim_dtype dtype, struct tensor *out,
                           char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    if (a->error[0]) {
        snprintf(err, err_len, "%s", a->error);
        return -1;
    }
    if (a->has_bool && dtype != SHIM_BOOL) {
        snprintf(err, err_len, "true/false given for a %s tensor", dtype_name(dtype));
        return -1;
    }
    if (tensor_alloc(out, dtype, a->ndim, a->shape) != 0) {
        snprintf(err, err_len, "tensor too large");
        return -1;
    }
    if (dtype == SHIM_FP32) { /* the hot path: one check, one store */
        float *dst = out->data;
        for (size_t i = 0; i < a->count; i++) {
            double v = a->values[i];
            if (!(fabs(v) <= FLT_MAX)) {
                dtype_check(v, dtype, i, err, err_len);
                tensor_free(out);
                return -1;
            }
            dst[i] = (float)v;
        }
        return 0;
    }
    if (dtype == SHIM_INT64 && a->exact_ints) { /* integers beyond 2^53: exact path */
        for (size_t i = 0; i < a->count; i++) {
            double v = a->values[i];
            if ((a->int64_overflow && i == a->int64_overflow_index) || v != floor(v)) {
                snprintf(err, err_len, "element %zu (%.17g) %s for INT64", i, v,
                         v != floor(v) ? "is not an integer" : "is out of range");
                tensor_free(out);
                return -1;
            }
            ((int64_t *)out->data)[i] = a->exact_ints[i];
        }
        return 0;
    }
    for (size_t i = 0; i < a->count; i++) {
        if (dtype_check(a->values[i], dtype, i, err, err_len) != 0) {
            tensor_free(out);
            return -1;
        }
        dtype_store(out->data, i, dtype, a->values[i]);
    }
    return 0;
}

/* Append element i of a buffer of dtype as JSON text. */
static int append_element(struct strbuf *sb, const void *data, size_t i, enum shim_dtype dtype)
{
    char buf[40];
    size_t n = 0;
    switch (dtype) {
    case SHIM_BOOL: return strbuf_puts(sb, ((const uint8_t *)data)[i] ? "true" : "false");
    case SHIM_UINT8: n = (size_t)snprintf(buf, sizeof buf, "%u", ((const uint8_t *)data)[i]); break;
    case SHIM_INT8: n = (size_t)snprintf(buf, sizeof buf, "%d", ((const int8_t *)data)[i]); break;
    case SHIM_INT16: n = (size_t)snprintf(buf, sizeof buf, "%d", ((const int16_t *)data)[i]); break;
    case SHIM_INT32: n = (size_t)snprintf(buf, sizeof buf, "%d", ((const int32_t *)data)[i]); break;
    case SHIM_INT64:
        n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)((const int64_t *)data)[i]);
        break;
    case SHIM_FP16:
        n = numconv_format_float(dtype_half_to_float(((const uint16_t *)data)[i]), buf, sizeof buf);
        break;
    case SHIM_FP32: n = numconv_format_float(((const float *)data)[i], buf, sizeof buf); break;
    case SHIM_FP64: n = numconv_format_double(((const double *)data)[i], buf, sizeof buf); break;
    default: return -1;
    }
    if (n == 0) /* not finite: JSON has no spelling for it */
        return strbuf_puts(sb, "null");
    return strbuf_append(sb, buf, n);
}

/* "[[],[]]" for shape [2,0]: nested brackets down to dim zero (the first
 * dim of size 0). */
static void empty_nested(struct strbuf *sb, const int64_t *shape, int zero, int d)
{
    strbuf_append(sb, "[", 1);
    for (int64_t i = 0; d < zero && i < shape[d]; i++) {
        if (i)
            strbuf_append(sb, ",", 1);
        empty_nested(sb, shape, zero, d + 1);
    }
    strbuf_append(sb, "]", 1);
}

int tensor_json_append(struct strbuf *sb, const struct shim_tensor *view, int64_t row0,
                       int64_t nrows, bool nested)
{
    int ndim = view->ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, view->shape, sizeof shape);
    if (ndim == 0) { /* a scalar */
        return append_element(sb, view->data, 0, view->dtype);
    }
    shape[0] = nrows;
    int64_t per_row = shape_numel(view->shape + 1, ndim - 1);
    int64_t count = per_row * nrows;
    size_t first = (size_t)(row0 * per_row);
    if (strbuf_reserve(sb, (size_t)count * 12 + 16) != 0)
        return -1;
    if (!nested) {
        strbuf_append(sb, "[", 1);
        for (int64_t i = 0; i < count; i++) {
            if (i)
                strbuf_append(sb, ",", 1);
            append_element(sb, view->data, first + (size_t)i, view->dtype);
        }
        return strbuf_append(sb, "]", 1);
    }
    /* Nested: open brackets where an index rolls over to 0, close where it
     * reaches its dim. */
    int64_t index[TENSOR_MAX_DIMS] = {0};
    if (count == 0) { /* some dim is 0: brackets down to it */
        int zero = 0;
        while (shape[zero] != 0)
            zero++;
        empty_nested(sb, shape, zero, 0);
        return sb->failed ? -1 : 0;
    }
    for (int d = 0; d < ndim; d++)
        strbuf_append(sb, "[", 1);
    for (int64_t i = 0; i < count; i++) {
        append_element(sb, view->data, first + (size_t)i, view->dtype);
        int d = ndim - 1;
        while (d >= 0 && ++index[d] == shape[d]) {
            index[d] = 0;
            strbuf_append(sb, "]", 1);
            d--;
        }
        if (d < 0)
            break;
        strbuf_append(sb, ",", 1);
        for (int open = d + 1; open < ndim; open++)
            strbuf_append(sb, "[", 1);
    }
    return sb->failed ? -1 : 0;
}
