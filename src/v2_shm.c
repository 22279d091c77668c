/* v2_shm.c - v2 shared-memory parameters bound to a request (see
 * v2_shm.h). */
#include "v2_shm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P_REGION "shared_memory_region"
#define P_SIZE "shared_memory_byte_size"
#define P_OFFSET "shared_memory_offset"

/* A byte-count parameter: absent gives fallback (or an error when
 * required). Returns 0 or -1 with err set. */
static int count_param(const cJSON *params, const char *key, bool required, const char *name,
                       uint64_t *out, char *err, size_t err_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(params, key);
    if (item == NULL && !required) {
        *out = 0;
        return 0;
    }
    if (!cJSON_IsNumber(item) || shm_u64_from_double(item->valuedouble, out) != 0) {
        snprintf(err, err_len, "\"%s\": %s must be a byte count from 0 to 2^53%s", name, key,
                 item == NULL ? " (it is missing)" : "");
        return -1;
    }
    return 0;
}

int v2_shm_spec_json(const cJSON *tensor, bool input, const char *name, struct shm_spec *spec,
                     char *err, size_t err_len)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(tensor, "parameters");
    const cJSON *region = cJSON_GetObjectItemCaseSensitive(params, P_REGION);
    if (region == NULL) {
        if (cJSON_GetObjectItemCaseSensitive(params, P_SIZE) != NULL ||
            cJSON_GetObjectItemCaseSensitive(params, P_OFFSET) != NULL) {
            snprintf(err, err_len, "\"%s\": %s and %s need %s", name, P_SIZE, P_OFFSET, P_REGION);
            return -1;
        }
        return 0;
    }
    memset(spec, 0, sizeof *spec);
    if (!cJSON_IsString(region) || !shm_name_valid(region->valuestring)) {
        snprintf(err, err_len,
                 "\"%s\": %s must name a region (1 to %d letters, digits, '.', '_' and '-')", name,
                 P_REGION, SHM_NAME_MAX - 1);
        return -1;
    }
    snprintf(spec->name, sizeof spec->name, "%s", region->valuestring);
    if (count_param(params, P_SIZE, true, name, &spec->byte_size, err, err_len) != 0 ||
        count_param(params, P_OFFSET, false, name, &spec->offset, err, err_len) != 0)
        return -1;
    if (input && (cJSON_GetObjectItemCaseSensitive(tensor, "data") != NULL ||
                  cJSON_GetObjectItemCaseSensitive(params, "binary_data_size") != NULL)) {
        snprintf(err, err_len,
                 "input \"%s\" names a shared memory region and also carries data in the body",
                 name);
        return -1;
    }
    if (!input && (cJSON_GetObjectItemCaseSensitive(params, "classification") != NULL ||
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "binary_data")))) {
        snprintf(err, err_len,
                 "output \"%s\" names a shared memory region: it cannot also ask for "
                 "classification or binary_data",
                 name);
        return -1;
    }
    return 1;
}

/* A region status as the client's HTTP-style status. */
static int status_of(enum shm_status st)
{
    return st == SHM_INTERNAL ? 500 : 400;
}

int v2_shm_input(struct shm_table *table, const struct shm_spec *spec, const char *name,
                 enum shim_dtype dtype, const int64_t *shape, int ndim, struct shm_view *view,
                 struct tensor *t, int *status, char *err, size_t err_len)
{
    int64_t numel;
    size_t expect;
    *status = 400;
    if (shape_size(shape, ndim, dtype_size(dtype), &numel, &expect) != 0) {
        snprintf(err, err_len, "input \"%s\": its shape is too large", name);
        return -1;
    }
    if (spec->byte_size != (uint64_t)expect) {
        snprintf(err, err_len,
                 "input \"%s\": %s %llu does not match shape and datatype %s (%zu bytes)", name,
                 P_SIZE, (unsigned long long)spec->byte_size, dtype_name(dtype), expect);
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
        t->borrowed = true;
    } else {
        t->data = malloc(expect ? expect : 1);
        if (t->data == NULL) {
            snprintf(err, err_len, "out of memory");
            *status = 500;
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
                          struct shm_view *view, int *status, char *err, size_t err_len)
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

int v2_shm_output_write(const struct shm_view *view, const char *name, const struct tensor *t,
                        char *err, size_t err_len)
{
    if ((uint64_t)t->nbytes > view->size) {
        snprintf(err, err_len,
                 "output \"%s\" needs %zu bytes but its %s in region \"%s\" is only %llu", name,
                 t->nbytes, P_SIZE, view->name, (unsigned long long)view->size);
        return 400;
    }
    if (shm_view_write(view, t->data, t->nbytes, err, err_len) != 0)
        return 500;
    return 0;
}

int v2_shm_output(const struct shm_view *view, const char *name, const struct tensor *t,
                  struct strbuf *sb, char *err, size_t err_len)
{
    int rc = v2_shm_output_write(view, name, t, err, err_len);
    if (rc != 0)
        return rc;
    char shape[128];
    shape_format(t->shape, t->ndim, shape, sizeof shape);
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, name);
    strbuf_printf(sb, ",\"datatype\":\"%s\",\"shape\":%s,\"parameters\":{\"" P_REGION "\":",
                  dtype_name(t->dtype), shape);
    strbuf_json_string(sb, view->name);
    strbuf_printf(sb, ",\"" P_SIZE "\":%zu", t->nbytes);
    if (view->offset != 0)
        strbuf_printf(sb, ",\"" P_OFFSET "\":%llu", (unsigned long long)view->offset);
    strbuf_puts(sb, "}}");
    return 0;
}

void v2_shm_release(struct v2_shm *s)
{
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        shm_view_release(&s->in[i]);
        shm_view_release(&s->out[i]);
    }
    s->any_in = false;
}
