/* shape.c - dims arrays: counts, text, parsing and fitting (see shape.h). */
#include "shape.h"

#include <stdio.h>
#include <string.h>

#include "json_numbers.h"
#include "torch_shim.h"

int64_t shape_numel(const int64_t *shape, int ndim)
{
    int64_t n;
    return shim_shape_size(shape, ndim, 1, &n, NULL) == 0 ? n : -1;
}

int shape_size(const int64_t *shape, int ndim, size_t elem, int64_t *numel, size_t *nbytes)
{
    return shim_shape_size(shape, ndim, elem, numel, nbytes);
}

void shape_format(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
}

enum shape_parse shape_from_array(const struct num_array *a, int64_t min_dim, int max_dims,
                                  int64_t *dims, int *ndim)
{
    if (a == NULL || a->error[0] || a->ndim != 1 || a->has_bool || a->count > (size_t)max_dims)
        return SHAPE_NOT_LIST;
    for (size_t d = 0; d < a->count; d++) {
        double v = a->values[d];
        if (!(v >= (double)min_dim && v <= 1e12) || v != (double)(int64_t)v)
            return SHAPE_BAD_DIM;
        dims[d] = (int64_t)v;
    }
    *ndim = (int)a->count;
    return SHAPE_OK;
}

int shape_fit(const char *name, const int64_t *want_shape, int want_ndim, bool batching,
              int64_t *shape, int *ndim, char *err, size_t err_len)
{
    char want[128], got[128];
    shape_format(want_shape, want_ndim, want, sizeof want);
    if (*ndim == want_ndim - 1 && batching && *ndim > 1) {
        memmove(shape + 1, shape, (size_t)*ndim * sizeof shape[0]);
        shape[0] = 1; /* one sample without its batch dim */
        (*ndim)++;
    } else if (*ndim == 1 && want_ndim > 1) {
        int64_t per_sample = shape_numel(want_shape + 1, want_ndim - 1);
        for (int d = 1; d < want_ndim; d++)
            if (want_shape[d] < 0)
                per_sample = -1;
        if (per_sample <= 0) {
            snprintf(err, err_len,
                     "input \"%s\" has variable dims %s: send "
                     "nested arrays or a \"shape\"",
                     name, want);
            return -1;
        }
        if (shape[0] % per_sample != 0) {
            snprintf(err, err_len,
                     "%lld elements is not a whole number of samples "
                     "of %lld elements (input \"%s\" has shape %s)",
                     (long long)shape[0], (long long)per_sample, name, want);
            return -1;
        }
        shape[0] /= per_sample;
        memcpy(shape + 1, want_shape + 1, (size_t)(want_ndim - 1) * sizeof shape[0]);
        *ndim = want_ndim;
    }
    shape_format(shape, *ndim, got, sizeof got);
    if (*ndim != want_ndim) {
        snprintf(err, err_len,
                 "input \"%s\" has rank %d %s; the model takes "
                 "rank %d %s",
                 name, *ndim, got, want_ndim, want);
        return -1;
    }
    for (int d = 0; d < want_ndim; d++) {
        if (want_shape[d] > 0 && shape[d] != want_shape[d]) {
            snprintf(err, err_len, "input \"%s\" has shape %s; the model takes %s", name, got,
                     want);
            return -1;
        }
    }
    return 0;
}

bool shape_matches(const int64_t *want, int want_ndim, const int64_t *shape, int ndim)
{
    if (ndim != want_ndim)
        return false;
    for (int d = 0; d < want_ndim; d++)
        if (want[d] >= 0 && want[d] != shape[d])
            return false;
    return true;
}
