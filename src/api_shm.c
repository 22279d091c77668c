/* api_shm.c - the shared memory endpoints (Triton's system and CUDA shared
 * memory extensions): register, unregister and status of regions. Register
 * and unregister are admin routes (the admin token, or without a token file
 * a loopback client), checked before the handler runs; status needs what
 * inference needs. The region table is shm_region.h's; the shim opens CUDA
 * IPC handles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base64.h"
#include "log.h"
#include "shm_cuda.h"

/* A region status as HTTP's. */
static int http_status_of(enum shm_status st)
{
    switch (st) {
    case SHM_OK: return 200;
    case SHM_NOT_FOUND: return 404;
    case SHM_EXISTS:
    case SHM_BUSY: return 409;
    case SHM_INTERNAL: return 500;
    case SHM_OFF:
    case SHM_INVALID:
    case SHM_LIMIT:
    case SHM_UNAVAILABLE: return 400;
    }
    return 500;
}

static enum route_outcome reply_status(struct http_exchange *ex, enum shm_status st,
                                       const char *err)
{
    if (st == SHM_OK)
        return api_reply_json_text(ex, 200, "{}");
    return http_reply_error(ex, http_status_of(st), "%s", err);
}

/* The body as a JSON object, or NULL with a 400 reply set. */
static cJSON *parse_body(struct http_exchange *ex)
{
    cJSON *root = ex->body_len ? cJSON_ParseWithLength(ex->body, ex->body_len) : NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        http_reply_error(ex, 400, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A byte count member of root (absent: 0 unless required). Returns 0, or
 * -1 with a 400 reply set. */
static int count_member(struct http_exchange *ex, const cJSON *root, const char *key, bool required,
                        uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = 0;
    if (item == NULL && !required)
        return 0;
    if (!cJSON_IsNumber(item) || shm_u64_from_double(item->valuedouble, out) != 0) {
        http_reply_error(ex, 400, "\"%s\" must be a byte count from 0 to 2^53%s", key,
                         item == NULL ? " (it is missing)" : "");
        return -1;
    }
    return 0;
}

/* The shared memory table, or NULL with the "off" reply set. */
static struct shm_table *table_on(struct http_exchange *ex)
{
    if (ex->srv->shm.on)
        return &ex->srv->shm;
    http_reply_error(ex, 400, "shared memory is off: start inferd with --shared-memory");
    return NULL;
}

enum route_outcome api_sysshm_register(struct http_exchange *ex)
{
    struct shm_table *t = table_on(ex);
    cJSON *root = t ? parse_body(ex) : NULL;
    if (root == NULL)
        return ROUTE_REPLIED;
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "key");
    uint64_t offset, size;
    enum route_outcome out = ROUTE_REPLIED;
    if (!cJSON_IsString(key))
        http_reply_error(ex, 400, "\"key\" must be a string: the shared memory object's name");
    else if (count_member(ex, root, "offset", false, &offset) == 0 &&
             count_member(ex, root, "byte_size", true, &size) == 0) {
        char err[512] = "";
        enum shm_status st = shm_register_system(t, ex->route.region, key->valuestring, offset,
                                                 size, err, sizeof err);
        if (st == SHM_OK)
            log_msg(LOG_INFO, "registered system shared memory region %s (%llu bytes)",
                    ex->route.region, (unsigned long long)size);
        out = reply_status(ex, st, err);
    }
    cJSON_Delete(root);
    return out;
}

static enum route_outcome unregister(struct http_exchange *ex, enum shm_kind kind, const char *name)
{
    char err[512] = "";
    enum shm_status st = shm_unregister(&ex->srv->shm, kind, name, err, sizeof err);
    if (st == SHM_OK)
        log_msg(LOG_INFO, "unregistered %s shared memory region%s%s",
                kind == SHM_CUDA ? "CUDA" : "system", name ? " " : "s (all)", name ? name : "");
    return reply_status(ex, st, err);
}

enum route_outcome api_sysshm_unregister(struct http_exchange *ex)
{
    return unregister(ex, SHM_SYSTEM, ex->route.region);
}

enum route_outcome api_sysshm_unregister_all(struct http_exchange *ex)
{
    return unregister(ex, SHM_SYSTEM, NULL);
}

static enum route_outcome status(struct http_exchange *ex, enum shm_kind kind, const char *name)
{
    int most = ex->srv->shm.max_regions > 0 ? ex->srv->shm.max_regions : 1;
    struct shm_region_info *info = calloc((size_t)most, sizeof *info);
    if (info == NULL)
        return http_reply_error(ex, 500, "out of memory");
    char err[512] = "";
    enum shm_status st;
    int n = shm_status_list(&ex->srv->shm, kind, name, info, most, &st, err, sizeof err);
    if (n < 0) {
        free(info);
        return reply_status(ex, st, err);
    }
    struct strbuf sb = {0};
    strbuf_puts(&sb, "[");
    for (int i = 0; i < n && i < most; i++) {
        strbuf_puts(&sb, i ? ",{\"name\":" : "{\"name\":");
        strbuf_json_string(&sb, info[i].name);
        if (kind == SHM_SYSTEM) {
            strbuf_puts(&sb, ",\"key\":");
            strbuf_json_string(&sb, info[i].key);
            strbuf_printf(&sb, ",\"offset\":%llu", (unsigned long long)info[i].offset);
        } else {
            strbuf_printf(&sb, ",\"device_id\":%d", info[i].device_id);
        }
        strbuf_printf(&sb, ",\"byte_size\":%llu,\"in_use\":%d}",
                      (unsigned long long)info[i].byte_size, info[i].users);
    }
    strbuf_puts(&sb, "]");
    free(info);
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}

enum route_outcome api_sysshm_status(struct http_exchange *ex)
{
    return status(ex, SHM_SYSTEM, ex->route.region);
}

enum route_outcome api_sysshm_status_all(struct http_exchange *ex)
{
    return status(ex, SHM_SYSTEM, NULL);
}

/* Whether CUDA device_id can take an IPC handle; else sets the 400. */
static bool cuda_available(struct http_exchange *ex, int device_id)
{
    char err[256] = "";
    if (shm_cuda_check(device_id, err, sizeof err) == SHM_OK)
        return true;
    http_reply_error(ex, 400, "%s", err);
    return false;
}

/* The raw_handle's bytes (base64 in {"b64": ...}) into handle. Returns 0,
 * or -1 with a 400 reply set. */
static int read_handle(struct http_exchange *ex, const cJSON *root, uint8_t *handle)
{
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(root, "raw_handle");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(raw, "b64");
    if (!cJSON_IsString(b64) || strlen(b64->valuestring) > 4 * SHM_CUDA_HANDLE) {
        http_reply_error(ex, 400,
                         "\"raw_handle\" must be {\"b64\": the base64 of a %d-byte "
                         "cudaIpcMemHandle_t}",
                         SHM_CUDA_HANDLE);
        return -1;
    }
    size_t len = strlen(b64->valuestring);
    uint8_t bytes[4 * SHM_CUDA_HANDLE];
    char why[128];
    long long n = base64_decode(b64->valuestring, len, bytes, why, sizeof why);
    if (n != SHM_CUDA_HANDLE) {
        http_reply_error(ex, 400, "\"raw_handle\": %s",
                         n < 0 ? why : "a cudaIpcMemHandle_t is 64 bytes");
        return -1;
    }
    memcpy(handle, bytes, SHM_CUDA_HANDLE);
    return 0;
}

enum route_outcome api_cudashm_register(struct http_exchange *ex)
{
    struct shm_table *t = table_on(ex);
    cJSON *root = t ? parse_body(ex) : NULL;
    if (root == NULL)
        return ROUTE_REPLIED;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(root, "device_id");
    int device_id = cJSON_IsNumber(dev) && dev->valuedouble >= 0 && dev->valuedouble < 1024 &&
                            dev->valuedouble == (double)(int)dev->valuedouble
                        ? (int)dev->valuedouble
                        : -1;
    uint8_t handle[SHM_CUDA_HANDLE];
    uint64_t size;
    enum route_outcome out = ROUTE_REPLIED;
    if (!shm_name_valid(ex->route.region))
        http_reply_error(ex, 400,
                         "invalid shared memory region name: use 1 to %d letters, "
                         "digits, '.', '_' and '-'",
                         SHM_NAME_MAX - 1);
    else if (cuda_available(ex, device_id) && read_handle(ex, root, handle) == 0 &&
             count_member(ex, root, "byte_size", true, &size) == 0) {
        char err[512] = "";
        enum shm_status st =
            shm_cuda_register(t, ex->route.region, device_id, handle, size, err, sizeof err);
        out = reply_status(ex, st, err);
    }
    cJSON_Delete(root);
    return out;
}

enum route_outcome api_cudashm_unregister(struct http_exchange *ex)
{
    return unregister(ex, SHM_CUDA, ex->route.region);
}

enum route_outcome api_cudashm_unregister_all(struct http_exchange *ex)
{
    return unregister(ex, SHM_CUDA, NULL);
}

enum route_outcome api_cudashm_status(struct http_exchange *ex)
{
    return status(ex, SHM_CUDA, ex->route.region);
}

enum route_outcome api_cudashm_status_all(struct http_exchange *ex)
{
    return status(ex, SHM_CUDA, NULL);
}
