/* shm_region.h - shared-memory regions that clients register (Triton's
 * system and CUDA shared memory extensions), apart from any transport: a
 * table of named regions with limits on their number and bytes, reference
 * counts held by the requests that use them, and checked resolution of a
 * (region, offset, byte size) triple into memory. HTTP and gRPC handlers
 * call the same functions and map enum shm_status to their own codes.
 *
 * Safety rules the module enforces: names and keys carry no path
 * characters; every offset and size is checked against the region with
 * overflow-free arithmetic; a region in use by a request cannot be
 * unregistered (SHM_BUSY), so its mapping outlives every request holding
 * it; and a system region's object is fstat'ed at each use before it is
 * touched, so a region shrunk underneath is an error, not a SIGBUS. What
 * remains: a truncation after the last check and while the memory is
 * copied (into a batch buffer, or an output into the region) can still
 * fault the process; only a process allowed to resize the object can do
 * that.
 *
 * Lock order: the table's lock is a leaf; no other lock is taken under it
 * except a CUDA region's close hook at unregister. */
#ifndef INFERD_SHM_REGION_H
#define INFERD_SHM_REGION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define SHM_NAME_MAX 64    /* region names: 1..63 of [A-Za-z0-9._-], not "." or ".." */
#define SHM_KEY_MAX 256    /* shm_open keys: an optional leading '/', then as names */
#define SHM_CUDA_HANDLE 64 /* sizeof(cudaIpcMemHandle_t) */

enum shm_kind { SHM_SYSTEM, SHM_CUDA };

/* What an operation came to; each transport maps it to its codes. */
enum shm_status {
    SHM_OK = 0,
    SHM_OFF,         /* the server runs without --shared-memory */
    SHM_INVALID,     /* a bad name, key, offset or size; out of range */
    SHM_NOT_FOUND,   /* no region of that name (and kind) */
    SHM_EXISTS,      /* a region of that name is registered already */
    SHM_BUSY,        /* in use by a request: not unregistered */
    SHM_LIMIT,       /* past the region count or byte limit */
    SHM_UNAVAILABLE, /* CUDA is not available in this build or machine */
    SHM_INTERNAL,    /* the system refused (shm_open, mmap, out of memory) */
};

/* "ok", "off", ...: for logs and tests. */
const char *shm_status_name(enum shm_status s);

/* How the server reaches a CUDA region's memory: supplied by the caller
 * (the shim, in the API layer), so that this module needs no CUDA. Each
 * returns 0 or -1 with err set. */
struct shm_device_ops {
    int (*read)(void *host_dst, const void *dev_src, size_t n, int device, char *err,
                size_t err_len);
    int (*write)(void *dev_dst, const void *host_src, size_t n, int device, char *err,
                 size_t err_len);
    void (*close)(void *dev_ptr, int device);
};

struct shm_region; /* private to shm_region.c */

struct shm_table {
    pthread_mutex_t lock;
    struct shm_region *head; /* guarded by lock */
    int n_regions[2];        /* per kind, guarded by lock */
    uint64_t bytes[2];       /* mapped bytes per kind, guarded by lock */
    bool on;                 /* read-only after init */
    int max_regions;         /* both kinds together */
    uint64_t max_bytes;      /* both kinds together */
};

/* A registered region as status reports it. */
struct shm_region_info {
    char name[SHM_NAME_MAX];
    enum shm_kind kind;
    char key[SHM_KEY_MAX]; /* system */
    uint64_t offset;       /* system: into the object */
    uint64_t byte_size;
    int device_id; /* CUDA */
    int users;     /* requests holding it now */
};

/* A request's hold on part of a region: [data, data + size) is valid until
 * shm_view_release. For a CUDA region data is a device pointer. */
struct shm_view {
    struct shm_region *region; /* NULL: none */
    enum shm_kind kind;
    uint8_t *data;
    uint64_t size;
    uint64_t offset; /* as the request gave it */
    int device_id;
    char name[SHM_NAME_MAX];
};

/* A region reference as a request states it (shared_memory_region,
 * shared_memory_offset, shared_memory_byte_size), from any wire form. */
struct shm_spec {
    char name[SHM_NAME_MAX];
    uint64_t offset;
    uint64_t byte_size;
};

/* Set up t; on false every register and use gets SHM_OFF, as does a NULL
 * table in every function below that takes one. Returns 0 or -1 (the mutex
 * failed). */
int shm_table_init(struct shm_table *t, bool on, int max_regions, uint64_t max_bytes);
/* Unmap and close every region (no request may hold one any more). */
void shm_table_destroy(struct shm_table *t);

bool shm_name_valid(const char *name);
bool shm_key_valid(const char *key);

/* Map [offset, offset + byte_size) of the POSIX shared memory object key
 * (its size checked with fstat) as region name. Returns SHM_OK, or a status
 * with err set: SHM_OFF, SHM_INVALID (name, key, size 0, range past the
 * object's end, no such key), SHM_EXISTS, SHM_LIMIT, SHM_INTERNAL. */
enum shm_status shm_register_system(struct shm_table *t, const char *name, const char *key,
                                    uint64_t offset, uint64_t byte_size, char *err, size_t err_len);

/* Enter an opened CUDA IPC mapping dev_ptr of byte_size bytes on device as
 * region name; ops->close runs at unregister. On failure the caller still
 * owns dev_ptr. Returns SHM_OK, or SHM_OFF, SHM_INVALID, SHM_EXISTS,
 * SHM_LIMIT, SHM_INTERNAL with err set. */
enum shm_status shm_register_cuda(struct shm_table *t, const char *name, int device_id,
                                  uint64_t byte_size, void *dev_ptr,
                                  const struct shm_device_ops *ops, char *err, size_t err_len);

/* Unregister region name of kind (NULL: every region of kind). A region a
 * request holds is not unregistered: SHM_BUSY (for all: nothing is
 * unregistered when any is busy). Returns SHM_OK, or SHM_OFF, SHM_NOT_FOUND,
 * SHM_BUSY, SHM_INVALID with err set. */
enum shm_status shm_unregister(struct shm_table *t, enum shm_kind kind, const char *name, char *err,
                               size_t err_len);

/* The regions of kind (name NULL: all of them, by name) into out (at most
 * max). Returns how many there are (may exceed max), or -1 with err set
 * (off, or no region called name: *status says which). */
int shm_status_list(struct shm_table *t, enum shm_kind kind, const char *name,
                    struct shm_region_info *out, int max, enum shm_status *status, char *err,
                    size_t err_len);

/* Parse a JSON-style number (a double, as cJSON gives it) as a byte count
 * or offset: an integer from 0 to 2^53. Returns 0 or -1. */
int shm_u64_from_double(double d, uint64_t *out);

/* Take a hold on spec's part of its region for a request: the region must
 * exist, spec's offset and byte size lie within it, and (system) the object
 * still be at least as large as the mapping. Returns SHM_OK with *v set,
 * or SHM_OFF, SHM_NOT_FOUND, SHM_INVALID with err set (v cleared). */
enum shm_status shm_view_acquire(struct shm_table *t, const struct shm_spec *spec,
                                 struct shm_view *v, char *err, size_t err_len);

/* Check, just before touching v, that its object has not shrunk below the
 * mapping. Returns 0 or -1 with err set. */
int shm_view_check(const struct shm_view *v, char *err, size_t err_len);

/* Copy n bytes at v's start into host memory dst / from src into v, after
 * shm_view_check (and for CUDA through the device ops). n must be at most
 * v->size. Returns 0 or -1 with err set. */
int shm_view_read(const struct shm_view *v, void *dst, size_t n, char *err, size_t err_len);
int shm_view_write(const struct shm_view *v, const void *src, size_t n, char *err, size_t err_len);

/* Drop v's hold (a cleared view: nothing). */
void shm_view_release(struct shm_view *v);

/* Prometheus gauges: regions and mapped bytes per kind. */
void shm_render_metrics(struct shm_table *t, struct strbuf *sb);

#endif
