/* dtype.c - element types (see dtype.h). */
#include "dtype.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define DTYPE_NAME(name, ctype, torch) #name,
static const char *const dtype_names[SHIM_DTYPE_COUNT] = {SHIM_DTYPE_LIST(DTYPE_NAME)};
#undef DTYPE_NAME

#define DTYPE_SIZE(name, ctype, torch) sizeof(ctype),
static const size_t dtype_sizes[SHIM_DTYPE_COUNT] = {SHIM_DTYPE_LIST(DTYPE_SIZE)};
#undef DTYPE_SIZE

#define DTYPE_LISTED(name, ctype, torch) ", " #name
static const char names_text[] = SHIM_DTYPE_LIST(DTYPE_LISTED);
#undef DTYPE_LISTED

const char *dtype_names_text(void)
{
    return names_text + 2; /* past the first ", " */
}

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
    return (int)dtype >= 0 && dtype < SHIM_DTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

bool dtype_is_float(enum shim_dtype dtype)
{
    return dtype == SHIM_FP16 || dtype == SHIM_FP32 || dtype == SHIM_FP64;
}

float dtype_half_to_float(uint16_t h)
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

uint16_t dtype_double_to_half(double v)
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

int dtype_check(double v, enum shim_dtype dtype, size_t i, char *err, size_t err_len)
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

void dtype_store(void *data, size_t i, enum shim_dtype dtype, double v)
{
    switch (dtype) {
    case SHIM_BOOL: ((uint8_t *)data)[i] = v != 0.0; break;
    case SHIM_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case SHIM_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case SHIM_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case SHIM_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case SHIM_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
    case SHIM_FP16: ((uint16_t *)data)[i] = dtype_double_to_half(v); break;
    case SHIM_FP32: ((float *)data)[i] = (float)v; break;
    case SHIM_FP64: ((double *)data)[i] = v; break;
    default: break;
    }
}

double dtype_load(const void *data, size_t i, enum shim_dtype dtype)
{
    switch (dtype) {
    case SHIM_BOOL: return ((const uint8_t *)data)[i] != 0;
    case SHIM_UINT8: return ((const uint8_t *)data)[i];
    case SHIM_INT8: return ((const int8_t *)data)[i];
    case SHIM_INT16: return ((const int16_t *)data)[i];
    case SHIM_INT32: return ((const int32_t *)data)[i];
    case SHIM_INT64: return (double)((const int64_t *)data)[i];
    case SHIM_FP16: return dtype_half_to_float(((const uint16_t *)data)[i]);
    case SHIM_FP32: return ((const float *)data)[i];
    case SHIM_FP64: return ((const double *)data)[i];
    default: return 0;
    }
}
