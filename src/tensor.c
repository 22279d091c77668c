/* tensor.c - tensor allocation and the JSON codec (see tensor.h). */
#include "tensor.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numconv.h"

static const char *const dtype_names[SHIM_DTYPE_COUNT] = {
    "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
};

int dtype_from_name(const char *name, enum shim_dtype *out)
{
    for (int i = 0; i < SHIM_DTYPE_COUNT; i++) {
        if (strcmp(dtype_names[i], name) == 0) {
            *out = (enum shim_dtype)i;
            return 0;
        }
    }
    return -1;
}

const char *dtype_name(enum shim_dtype dtype)
{
    return (int)dtype >= 0 && dtype < SHIM_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

size_t dtype_size(enum shim_dtype dtype)
{
    static const size_t sizes[SHIM_DTYPE_COUNT] = {1, 1, 1, 2, 4, 8, 2, 4, 8};
    return (int)dtype >= 0 && dtype < SHIM_DTYPE_COUNT ? sizes[dtype] : 0;
}

int64_t shape_numel(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && n > INT64_MAX / shape[d]))
            return -1;
        n *= shape[d];
    }
    return n;
}

void shape_format(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

int tensor_alloc(struct tensor *t, enum shim_dtype dtype, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    int64_t numel = shape_numel(shape, ndim);
    size_t elem = dtype_size(dtype);
    if (numel < 0 || ndim > TENSOR_MAX_DIMS || elem == 0 || (uint64_t)numel > SIZE_MAX / elem)
        return -1;
    t->nbytes = (size_t)numel * elem;
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (t->data == NULL)
        return -1;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

void tensor_free(struct tensor *t)
{
    if (!t->borrowed)
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

float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        float f = ldexpf((float)mant, -24); /* zero or subnormal */
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t double_to_half(double v)
{
    /* Straight from the double, so that a value just past a tie between two
     * halves is not first rounded onto the tie by a float conversion. */
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    double a = fabs(v);
    if (isnan(v))
        return sign | 0x7e00;
    if (a >= 65520.0)
        return sign | 0x7c00;  /* rounds to infinity */
    if (a < 6.103515625e-05) { /* subnormal half: multiple of 2^-24 */
        return sign | (uint16_t)lrint(a * 16777216.0);
    }
    int e;
    double m = frexp(a, &e); /* a = m * 2^e, m in [0.5, 1); the scaling below is exact */
    uint32_t mant = (uint32_t)lrint((m * 2.0 - 1.0) * 1024.0); /* ties to even */
    int exp = e - 1 + 15;
    if (mant == 1024) {
        mant = 0;
        exp++;
    }
    return sign | (uint16_t)(exp << 10) | (uint16_t)mant;
}

/* Range of values each integer dtype holds. */
static bool int_range(enum shim_dtype dtype, double *lo, double *hi)
{
    switch (dtype) {
    case SHIM_UINT8:
        *lo = 0;
        *hi = 255;
        return true;
    case SHIM_INT8:
        *lo = -128;
        *hi = 127;
        return true;
    case SHIM_INT16:
        *lo = -32768;
        *hi = 32767;
        return true;
    case SHIM_INT32:
        *lo = -2147483648.0;
        *hi = 2147483647.0;
        return true;
    case SHIM_INT64:
        *lo = -9223372036854775808.0;
        *hi = 9223372036854775807.0;
        return true;
    default: return false;
    }
}

static int check_value(double v, enum shim_dtype dtype, size_t i, char *err, size_t err_len)
{
    double lo, hi;
    const char *why = NULL;
    if (dtype == SHIM_BOOL) {
        if (v != 0.0 && v != 1.0)
            why = "is not a BOOL (use true/false or 0/1)";
    } else if (int_range(dtype, &lo, &hi)) {
        if (!(v >= lo && v <= hi) || (dtype == SHIM_INT64 && v >= hi))
            why = "is out of range";
        else if (v != floor(v))
            why = "is not an integer";
    } else if (!isfinite(v)) {
        why = "is out of range";
    } else if (dtype == SHIM_FP32 && fabs(v) > FLT_MAX) {
        why = "is out of range";
    } else if (dtype == SHIM_FP16 && fabs(v) > 65504.0) {
        why = "is out of range";
    }
    if (why == NULL)
        return 0;
    snprintf(err, err_len, "element %zu (%.17g) %s for %s", i, v, why, dtype_name(dtype));
    return -1;
}

static void store_value(void *data, size_t i, enum shim_dtype dtype, double v)
{
    switch (dtype) {
    case SHIM_BOOL: ((uint8_t *)data)[i] = v != 0.0; break;
    case SHIM_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case SHIM_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case SHIM_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case SHIM_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case SHIM_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
    case SHIM_FP16: ((uint16_t *)data)[i] = double_to_half(v); break;
    case SHIM_FP32: ((float *)data)[i] = (float)v; break;
    case SHIM_FP64: ((double *)data)[i] = v; break;
    default: break;
    }
}

int tensor_from_num_array(const struct num_array *a, enum shim_dtype dtype, struct tensor *out,
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
                check_value(v, dtype, i, err, err_len);
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
        if (check_value(a->values[i], dtype, i, err, err_len) != 0) {
            tensor_free(out);
            return -1;
        }
        store_value(out->data, i, dtype, a->values[i]);
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
        n = numconv_format_float(half_to_float(((const uint16_t *)data)[i]), buf, sizeof buf);
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

double tensor_element(const void *data, size_t i, enum shim_dtype dtype)
{
    switch (dtype) {
    case SHIM_BOOL: return ((const uint8_t *)data)[i] != 0;
    case SHIM_UINT8: return ((const uint8_t *)data)[i];
    case SHIM_INT8: return ((const int8_t *)data)[i];
    case SHIM_INT16: return ((const int16_t *)data)[i];
    case SHIM_INT32: return ((const int32_t *)data)[i];
    case SHIM_INT64: return (double)((const int64_t *)data)[i];
    case SHIM_FP16: return half_to_float(((const uint16_t *)data)[i]);
    case SHIM_FP32: return ((const float *)data)[i];
    case SHIM_FP64: return ((const double *)data)[i];
    default: return 0;
    }
}

static bool is_float_dtype(enum shim_dtype dtype)
{
    return dtype == SHIM_FP16 || dtype == SHIM_FP32 || dtype == SHIM_FP64;
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
    bool from_int = !is_float_dtype(src->dtype) && src->dtype != SHIM_BOOL;
    for (size_t i = 0; i < count; i++) {
        double v = tensor_element(src->data, i, src->dtype);
        if (src->dtype == SHIM_INT64 && !is_float_dtype(dtype)) {
            int64_t exact = ((const int64_t *)src->data)[i];
            if (dtype == SHIM_INT64) {
                ((int64_t *)out->data)[i] = exact;
                continue;
            }
            v = (double)exact; /* fits a double exactly in every narrower range */
        }
        bool exact_loss = from_int && is_float_dtype(dtype) && fabs(v) > exact_int_limit(dtype);
        if (exact_loss || (is_float_dtype(src->dtype) && !isfinite(v) && !is_float_dtype(dtype))) {
            snprintf(err, err_len,
                     "element %zu (%.17g) cannot be converted from %s to %s without loss", i, v,
                     dtype_name(src->dtype), dtype_name(dtype));
            tensor_free(out);
            return -1;
        }
        if (!(is_float_dtype(dtype) && !isfinite(v)) &&
            check_value(v, dtype, i, err, err_len) != 0) {
            tensor_free(out);
            return -1;
        }
        store_value(out->data, i, dtype, v);
    }
    return 0;
}
