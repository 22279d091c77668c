/* v2_shm.c - v2 shared-memory parameters bound to a request (see
 * v2_shm.h). */
#include "v2_shm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A region status as the call's. */
static enum infer_status status_of(enum shm_status st)
{
    return st == SHM_INTERNAL ? INFER_INTERNAL : INFER_INVALID;
}

int v2_shm_input(struct shm_table *table, const struct shm_spec *spec, const char *name,
                 enum shim_dtype dtype, const int64_t *shape, int ndim, struct shm_view *view,
                 struct tensor *t, enum infer_status *status, char *err, size_t err_len)
{
    int64_t numel;
    size_t expect;
    *status = INFER_INVALID;
    if (shape_size(shape, ndim, dtype_size(dtype), &numel, &expect) != 0) {
        snprintf(err, err_len, "input \"%s\": its shape is too large", name);
        return -1;
    }
    if (spec->byte_size != (uint64_t)expect) {
        snprintf(err, err_len,
                 "input \"%s\": %s %llu does not match shape and datatype %s (%zu bytes)", name,
                 V2_SHM_BYTE_SIZE, (unsigned long long)spec->byte_size, dtype_name(dtype), expect);
        return -1;
    }
    enum shm_status st = shm_view_acquire(table, spec, view, err, err_len);
    if (st != SHM_OK) {
        size_t n = strlen(err);
        snprintf(err + n, err_len - n, " (input \"%s\")", name);
        *status = status_of(st);
        return -1;
    }
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof shape[0]);
    t->nbytes = expect;
    if (view->kind == SHM_SYSTEM && (uintptr_t)view->data % dtype_size(dtype) == 0) {
        t->data = view->data; /* no copy: the hold lasts until the request ends */
        t->memory = TENSOR_SHARED;
    } else {
        t->data = malloc(expect ? expect : 1);
        if (t->data == NULL) {
            snprintf(err, err_len, "out of memory");
            *status = INFER_INTERNAL;
            return -1;
        }
        if (shm_view_read(view, t->data, expect, err, err_len) != 0) {
            tensor_free(t);
            return -1;
        }
    }
    for (size_t i = 0; dtype == SHIM_BOOL && i < expect; i++) {
        if (((const uint8_t *)t->data)[i] > 1) {
            snprintf(err, err_len, "input \"%s\": BOOL byte %zu is not 0 or 1", name, i);
            tensor_free(t);
            return -1;
        }
    }
    return 0;
}

int v2_shm_output_acquire(struct shm_table *table, const struct shm_spec *spec,
                          struct shm_view *view, enum infer_status *status, char *err,
                          size_t err_len)
{
    enum shm_status st = shm_view_acquire(table, spec, view, err, err_len);
    if (st != SHM_OK) {
        *status = status_of(st);
        return -1;
    }
    return 0;
}

int v2_shm_check_inputs(const struct v2_shm *s, char *err, size_t err_len)
{
    for (int i = 0; i < MODEL_MAX_IO; i++)
        if (s->in[i].region != NULL && shm_view_check(&s->in[i], err, err_len) != 0)
            return -1;
    return 0;
}

enum infer_status v2_shm_output_write(const struct shm_view *view, const char *name,
                                      const struct tensor *t, char *err, size_t err_len)
{
    if ((uint64_t)t->nbytes > view->size) {
        snprintf(err, err_len,
                 "output \"%s\" needs %zu bytes but its %s in region \"%s\" is only %llu", name,
                 t->nbytes, V2_SHM_BYTE_SIZE, view->name, (unsigned long long)view->size);
        return INFER_INVALID;
    }
    if (shm_view_write(view, t->data, t->nbytes, err, err_len) != 0)
        return INFER_INTERNAL;
    return INFER_OK;
}

void v2_shm_release(struct v2_shm *s)
{
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        shm_view_release(&s->in[i]);
        shm_view_release(&s->out[i]);
    }
    s->any_in = false;
}
