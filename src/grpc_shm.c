/* grpc_shm.c - the shared memory RPCs (see grpc_shm.h). protobuf-c
 * generates separate but alike types for the system and the CUDA
 * messages; one implementation serves both kinds, reaching the messages
 * through their descriptors, and a table (struct shm_rpcs) holds what
 * differs: the descriptors, a status row's fields, the register step. */
#include "grpc_shm.h"

#include <stdio.h>
#include <stdlib.h>

#include "grpc_reply.h"
#include "inference.pb-c.h"
#include "log.h"
#include "server.h"
#include "shm_cuda.h"

/* What tells a kind's RPCs apart. */
struct shm_rpcs {
    enum shm_kind kind;
    /* the requests and responses of Status, Register and Unregister */
    const ProtobufCMessageDescriptor *status_q, *status_r;
    const ProtobufCMessageDescriptor *register_q, *register_r;
    const ProtobufCMessageDescriptor *unregister_q, *unregister_r;
    /* Fill row (a status response's RegionStatus, initialised) from info. */
    void (*fill_row)(ProtobufCMessage *row, const struct shm_region_info *info);
    /* Register the region that q (a register_q) describes in t. Returns
     * SHM_OK, or a status with err set. */
    enum shm_status (*register_region)(struct shm_table *t, const ProtobufCMessage *q, char *err,
                                       size_t err_len);
};

/* The gRPC code of a region status (HTTP's api_shm.c answers the same
 * statuses with the same messages). */
static enum grpc_front_code shm_code(enum shm_status st)
{
    switch (st) {
    case SHM_OK: return GF_OK;
    case SHM_INVALID: return GF_INVALID_ARGUMENT;
    case SHM_NOT_FOUND: return GF_NOT_FOUND;
    case SHM_EXISTS: return GF_ALREADY_EXISTS;
    case SHM_LIMIT: return GF_RESOURCE_EXHAUSTED;
    case SHM_BUSY:
    case SHM_OFF:
    case SHM_UNAVAILABLE: return GF_FAILED_PRECONDITION;
    case SHM_INTERNAL: return GF_INTERNAL;
    }
    return GF_INTERNAL;
}

static void shm_fail(struct grpc_front_call *call, enum shm_status st, const char *err)
{
    grpc_front_answer(call, shm_code(st), err, NULL, 0);
}

static struct shm_table *table_of(struct grpc_front_call *call)
{
    struct server *srv = grpc_front_ctx(call);
    return &srv->shm;
}

/* The region table, or NULL with the call answered as HTTP's "off". */
static struct shm_table *shm_on(struct grpc_front_call *call)
{
    struct shm_table *t = table_of(call);
    if (t->on)
        return t;
    shm_fail(call, SHM_OFF, "shared memory is off: start inferd with --shared-memory");
    return NULL;
}

/* ---- messages through their descriptors ---- */

/* Where message m keeps its field called name (which its type has); for a
 * repeated field, the array, and in *count (unless count is NULL) where
 * it keeps their number. */
static void *field_of(ProtobufCMessage *m, const char *name, size_t **count)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (count != NULL)
        *count = (size_t *)((char *)m + f->quantifier_offset);
    return (char *)m + f->offset;
}

/* The region name every shared memory request carries ("": all). */
static const char *request_name(ProtobufCMessage *q)
{
    return *(char **)field_of(q, "name", NULL);
}

/* The descriptor of message type d's field called name (a message). */
static const ProtobufCMessageDescriptor *field_type(const ProtobufCMessageDescriptor *d,
                                                    const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(d, name)->descriptor;
}

/* Answer OK with an empty message of type d (the register and unregister
 * responses have no fields). */
static void answer_empty(struct grpc_front_call *call, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage r = PROTOBUF_C_MESSAGE_INIT(d);
    grpc_reply_message(call, &r);
}

/* ---- the RPCs, for either kind ---- */

/* The regions of kind called name ("": all) into a calloc'ed array (*n of
 * them), or NULL with the call answered. */
static struct shm_region_info *shm_list(struct grpc_front_call *call, enum shm_kind kind,
                                        const char *name, int *n)
{
    struct shm_table *t = table_of(call);
    int most = t->max_regions > 0 ? t->max_regions : 1;
    struct shm_region_info *info = calloc((size_t)most, sizeof *info);
    if (info == NULL) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
        return NULL;
    }
    char err[512] = "";
    enum shm_status st = SHM_INTERNAL;
    *n = shm_status_list(t, kind, name[0] ? name : NULL, info, most, &st, err, sizeof err);
    if (*n < 0) {
        free(info);
        shm_fail(call, st, err);
        return NULL;
    }
    if (*n > most)
        *n = most;
    return info;
}

/* Answer with k's status response for the n regions of info: its map
 * "regions" of entries (key: the region's name, value: its row). */
static void answer_status(struct grpc_front_call *call, const struct shm_rpcs *k,
                          const struct shm_region_info *info, int n)
{
    const ProtobufCMessageDescriptor *entry_d = field_type(k->status_r, "regions");
    const ProtobufCMessageDescriptor *row_d = field_type(entry_d, "value");
    char *r = calloc(1, k->status_r->sizeof_message);
    char *rows = calloc((size_t)n + 1, row_d->sizeof_message);
    char *entries = calloc((size_t)n + 1, entry_d->sizeof_message);
    ProtobufCMessage **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    if (r == NULL || rows == NULL || entries == NULL || ptrs == NULL) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
    } else {
        for (int i = 0; i < n; i++) {
            ProtobufCMessage *row = (ProtobufCMessage *)(rows + (size_t)i * row_d->sizeof_message);
            ProtobufCMessage *entry =
                (ProtobufCMessage *)(entries + (size_t)i * entry_d->sizeof_message);
            protobuf_c_message_init(row_d, row);
            k->fill_row(row, &info[i]);
            protobuf_c_message_init(entry_d, entry);
            *(char **)field_of(entry, "key", NULL) = (char *)info[i].name;
            *(ProtobufCMessage **)field_of(entry, "value", NULL) = row;
            ptrs[i] = entry;
        }
        ProtobufCMessage *reply = (ProtobufCMessage *)r;
        size_t *n_regions;
        protobuf_c_message_init(k->status_r, reply);
        *(ProtobufCMessage ***)field_of(reply, "regions", &n_regions) = ptrs;
        *n_regions = (size_t)n;
        grpc_reply_message(call, reply);
    }
    free(r);
    free(rows);
    free(entries);
    free(ptrs);
}

static void status_rpc(struct grpc_front_call *call, const struct shm_rpcs *k, const uint8_t *msg,
                       size_t len)
{
    ProtobufCMessage *q = protobuf_c_message_unpack(k->status_q, NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, k->status_q->short_name);
    int n = 0;
    struct shm_region_info *info = shm_list(call, k->kind, request_name(q), &n);
    if (info != NULL)
        answer_status(call, k, info, n);
    free(info);
    protobuf_c_message_free_unpacked(q, NULL);
}

static void register_rpc(struct grpc_front_call *call, const struct shm_rpcs *k, const uint8_t *msg,
                         size_t len)
{
    ProtobufCMessage *q = protobuf_c_message_unpack(k->register_q, NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, k->register_q->short_name);
    struct shm_table *t = shm_on(call);
    if (t != NULL) {
        char err[512] = "";
        enum shm_status st = k->register_region(t, q, err, sizeof err);
        if (st == SHM_OK)
            answer_empty(call, k->register_r);
        else
            shm_fail(call, st, err);
    }
    protobuf_c_message_free_unpacked(q, NULL);
}

/* Unregister the region the request names ("": every region of the kind). */
static void unregister_rpc(struct grpc_front_call *call, const struct shm_rpcs *k,
                           const uint8_t *msg, size_t len)
{
    ProtobufCMessage *q = protobuf_c_message_unpack(k->unregister_q, NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, k->unregister_q->short_name);
    const char *name = request_name(q);
    char err[512] = "";
    enum shm_status st =
        shm_unregister(table_of(call), k->kind, name[0] ? name : NULL, err, sizeof err);
    if (st != SHM_OK) {
        shm_fail(call, st, err);
    } else {
        log_msg(LOG_INFO, "unregistered %s shared memory region%s%s",
                k->kind == SHM_CUDA ? "CUDA" : "system", name[0] ? " " : "s (all)", name);
        answer_empty(call, k->unregister_r);
    }
    protobuf_c_message_free_unpacked(q, NULL);
}

/* ---- system regions ---- */

static void system_row(ProtobufCMessage *m, const struct shm_region_info *info)
{
    Inference__SystemSharedMemoryStatusResponse__RegionStatus *row = (void *)m;
    row->name = (char *)info->name;
    row->key = (char *)info->key;
    row->offset = info->offset;
    row->byte_size = info->byte_size;
}

static enum shm_status system_register(struct shm_table *t, const ProtobufCMessage *m, char *err,
                                       size_t err_len)
{
    const Inference__SystemSharedMemoryRegisterRequest *q = (const void *)m;
    enum shm_status st =
        shm_register_system(t, q->name, q->key, q->offset, q->byte_size, err, err_len);
    if (st == SHM_OK)
        log_msg(LOG_INFO, "registered system shared memory region %s (%llu bytes)", q->name,
                (unsigned long long)q->byte_size);
    return st;
}

static const struct shm_rpcs system_rpcs = {
    SHM_SYSTEM,
    &inference__system_shared_memory_status_request__descriptor,
    &inference__system_shared_memory_status_response__descriptor,
    &inference__system_shared_memory_register_request__descriptor,
    &inference__system_shared_memory_register_response__descriptor,
    &inference__system_shared_memory_unregister_request__descriptor,
    &inference__system_shared_memory_unregister_response__descriptor,
    system_row,
    system_register,
};

/* ---- CUDA regions ---- */

static void cuda_row(ProtobufCMessage *m, const struct shm_region_info *info)
{
    Inference__CudaSharedMemoryStatusResponse__RegionStatus *row = (void *)m;
    row->name = (char *)info->name;
    row->device_id = (uint64_t)info->device_id;
    row->byte_size = info->byte_size;
}

static enum shm_status cuda_register(struct shm_table *t, const ProtobufCMessage *m, char *err,
                                     size_t err_len)
{
    const Inference__CudaSharedMemoryRegisterRequest *q = (const void *)m;
    enum shm_status st;
    if (!shm_name_valid(q->name)) {
        snprintf(err, err_len,
                 "invalid shared memory region name: use 1 to %d letters, digits, '.', '_' and "
                 "'-'",
                 SHM_NAME_MAX - 1);
        return SHM_INVALID;
    }
    if ((st = shm_cuda_check(q->device_id, err, err_len)) != SHM_OK)
        return st; /* no CUDA here, or no such device */
    if (q->raw_handle.len != SHM_CUDA_HANDLE) {
        snprintf(err, err_len, "raw_handle must be a %d-byte cudaIpcMemHandle_t", SHM_CUDA_HANDLE);
        return SHM_INVALID;
    }
    return shm_cuda_register(t, q->name, (int)q->device_id, q->raw_handle.data, q->byte_size, err,
                             err_len);
}

static const struct shm_rpcs cuda_rpcs = {
    SHM_CUDA,
    &inference__cuda_shared_memory_status_request__descriptor,
    &inference__cuda_shared_memory_status_response__descriptor,
    &inference__cuda_shared_memory_register_request__descriptor,
    &inference__cuda_shared_memory_register_response__descriptor,
    &inference__cuda_shared_memory_unregister_request__descriptor,
    &inference__cuda_shared_memory_unregister_response__descriptor,
    cuda_row,
    cuda_register,
};

/* ---- the handlers ---- */

void grpc_shm_system_status(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    status_rpc(call, &system_rpcs, msg, len);
}

void grpc_shm_system_register(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    register_rpc(call, &system_rpcs, msg, len);
}

void grpc_shm_system_unregister(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    unregister_rpc(call, &system_rpcs, msg, len);
}

void grpc_shm_cuda_status(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    status_rpc(call, &cuda_rpcs, msg, len);
}

void grpc_shm_cuda_register(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    register_rpc(call, &cuda_rpcs, msg, len);
}

void grpc_shm_cuda_unregister(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    unregister_rpc(call, &cuda_rpcs, msg, len);
}
