/* shm_region.c - registered shared-memory regions (see shm_region.h). */
#include "shm_region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct shm_region {
    struct shm_region *next;
    struct shm_region_info info; /* info.users guarded by the table's lock */
    int fd;                      /* system: the object, for fstat at use; else -1 */
    void *map;                   /* system: the mapping (page-aligned) */
    size_t map_len;
    uint8_t *base;                    /* the region's first byte (host or device) */
    const struct shm_device_ops *ops; /* CUDA */
    struct shm_table *table;          /* whose lock guards info.users */
};

static const char *const kind_names[] = {"system", "cuda"};

const char *shm_status_name(enum shm_status s)
{
    switch (s) {
    case SHM_OK: return "ok";
    case SHM_OFF: return "off";
    case SHM_INVALID: return "invalid";
    case SHM_NOT_FOUND: return "not_found";
    case SHM_EXISTS: return "exists";
    case SHM_BUSY: return "busy";
    case SHM_LIMIT: return "limit";
    case SHM_UNAVAILABLE: return "unavailable";
    case SHM_INTERNAL: return "internal";
    }
    return "?";
}

int shm_table_init(struct shm_table *t, bool on, int max_regions, uint64_t max_bytes)
{
    memset(t, 0, sizeof *t);
    t->on = on;
    t->max_regions = max_regions;
    t->max_bytes = max_bytes;
    return pthread_mutex_init(&t->lock, NULL) == 0 ? 0 : -1;
}

static void region_free(struct shm_region *r)
{
    if (r->info.kind == SHM_SYSTEM) {
        if (r->map != NULL)
            munmap(r->map, r->map_len);
        if (r->fd >= 0)
            close(r->fd);
    } else if (r->ops != NULL && r->ops->close != NULL) {
        r->ops->close(r->base, r->info.device_id);
    }
    free(r);
}

void shm_table_destroy(struct shm_table *t)
{
    struct shm_region *r = t->head;
    while (r != NULL) {
        struct shm_region *next = r->next;
        region_free(r);
        r = next;
    }
    t->head = NULL;
    pthread_mutex_destroy(&t->lock);
}

/* 1..max-1 bytes of [A-Za-z0-9._-], not "." or "..". */
static bool plain_name(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n + 1 >= max)
            return false;
    }
    return n > 0 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

bool shm_name_valid(const char *name)
{
    return name != NULL && plain_name(name, SHM_NAME_MAX);
}

bool shm_key_valid(const char *key)
{
    if (key == NULL)
        return false;
    return plain_name(key[0] == '/' ? key + 1 : key, SHM_KEY_MAX - 1);
}

int shm_u64_from_double(double d, uint64_t *out)
{
    if (!(d >= 0) || d > 0x1p53 || d != (double)(uint64_t)d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Whether [offset, offset + size) lies within [0, total): no overflow. */
static bool in_range(uint64_t offset, uint64_t size, uint64_t total)
{
    return offset <= total && size <= total - offset;
}

static struct shm_region *find(struct shm_table *t, const char *name)
{
    for (struct shm_region *r = t->head; r != NULL; r = r->next)
        if (strcmp(r->info.name, name) == 0)
            return r;
    return NULL;
}

/* Under the lock: may a region of size bytes called name join? */
static enum shm_status admit(struct shm_table *t, const char *name, uint64_t size, char *err,
                             size_t err_len)
{
    if (find(t, name) != NULL) {
        snprintf(err, err_len,
                 "shared memory region \"%s\" is already registered: unregister it first", name);
        return SHM_EXISTS;
    }
    int n = t->n_regions[SHM_SYSTEM] + t->n_regions[SHM_CUDA];
    uint64_t bytes = t->bytes[SHM_SYSTEM] + t->bytes[SHM_CUDA];
    if (n >= t->max_regions) {
        snprintf(err, err_len,
                 "%d shared memory regions are registered, the most allowed "
                 "(--shared-memory-max-regions)",
                 n);
        return SHM_LIMIT;
    }
    if (size > t->max_bytes || bytes > t->max_bytes - size) {
        snprintf(err, err_len,
                 "registering %llu more bytes would pass the %llu bytes allowed in all "
                 "(--shared-memory-max-bytes; %llu registered)",
                 (unsigned long long)size, (unsigned long long)t->max_bytes,
                 (unsigned long long)bytes);
        return SHM_LIMIT;
    }
    return SHM_OK;
}

static enum shm_status check_on(const struct shm_table *t, const char *name, char *err,
                                size_t err_len)
{
    if (t == NULL || !t->on) {
        snprintf(err, err_len, "shared memory is off: start inferd with --shared-memory");
        return SHM_OFF;
    }
    if (name != NULL && !shm_name_valid(name)) {
        snprintf(err, err_len,
                 "invalid shared memory region name: use 1 to %d letters, digits, '.', '_' "
                 "and '-'",
                 SHM_NAME_MAX - 1);
        return SHM_INVALID;
    }
    return SHM_OK;
}

/* Add r (its info filled) to the table, or say why not. Takes r on success. */
static enum shm_status insert(struct shm_table *t, struct shm_region *r, char *err, size_t err_len)
{
    pthread_mutex_lock(&t->lock);
    enum shm_status st = admit(t, r->info.name, r->info.byte_size, err, err_len);
    if (st == SHM_OK) {
        r->table = t;
        r->next = t->head;
        t->head = r;
        t->n_regions[r->info.kind]++;
        t->bytes[r->info.kind] += r->info.byte_size;
    }
    pthread_mutex_unlock(&t->lock);
    return st;
}

/* Open and map the object for a system region into r. Returns SHM_OK or a
 * status with err set. */
static enum shm_status map_object(struct shm_region *r, char *err, size_t err_len)
{
    const struct shm_region_info *in = &r->info;
    char path[SHM_KEY_MAX + 1];
    snprintf(path, sizeof path, "%s%s", in->key[0] == '/' ? "" : "/", in->key);
    r->fd = shm_open(path, O_RDWR, 0);
    if (r->fd < 0) {
        int e = errno;
        snprintf(err, err_len, "cannot open shared memory key \"%s\": %s", in->key, strerror(e));
        return e == ENOENT || e == EACCES || e == EINVAL || e == ENAMETOOLONG ? SHM_INVALID
                                                                              : SHM_INTERNAL;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        snprintf(err, err_len, "cannot stat shared memory key \"%s\": %s", in->key,
                 strerror(errno));
        return SHM_INTERNAL;
    }
    if (!in_range(in->offset, in->byte_size, (uint64_t)st.st_size)) {
        snprintf(err, err_len,
                 "shared memory key \"%s\" holds %lld bytes: offset %llu + byte_size %llu "
                 "does not fit",
                 in->key, (long long)st.st_size, (unsigned long long)in->offset,
                 (unsigned long long)in->byte_size);
        return SHM_INVALID;
    }
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = in->offset - in->offset % (uint64_t)(page > 0 ? page : 4096);
    uint64_t lead = in->offset - start;
    if (in->byte_size > SIZE_MAX - lead) {
        snprintf(err, err_len, "byte_size %llu is too large", (unsigned long long)in->byte_size);
        return SHM_INVALID;
    }
    r->map_len = (size_t)(lead + in->byte_size);
    void *map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, (off_t)start);
    if (map == MAP_FAILED) {
        snprintf(err, err_len, "cannot map shared memory key \"%s\": %s", in->key, strerror(errno));
        return SHM_INTERNAL;
    }
    r->map = map;
    r->base = (uint8_t *)map + lead;
    return SHM_OK;
}

enum shm_status shm_register_system(struct shm_table *t, const char *name, const char *key,
                                    uint64_t offset, uint64_t byte_size, char *err, size_t err_len)
{
    enum shm_status st = check_on(t, name, err, err_len);
    if (st != SHM_OK)
        return st;
    if (!shm_key_valid(key)) {
        snprintf(err, err_len,
                 "invalid shared memory key: an optional leading '/' then 1 to %d letters, "
                 "digits, '.', '_' and '-' (no other '/')",
                 SHM_KEY_MAX - 3);
        return SHM_INVALID;
    }
    if (byte_size == 0) {
        snprintf(err, err_len, "byte_size must be at least 1");
        return SHM_INVALID;
    }
    /* Refuse a duplicate or a region past the limits before mapping. */
    pthread_mutex_lock(&t->lock);
    st = admit(t, name, byte_size, err, err_len);
    pthread_mutex_unlock(&t->lock);
    if (st != SHM_OK)
        return st;
    struct shm_region *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, err_len, "out of memory");
        return SHM_INTERNAL;
    }
    r->fd = -1;
    snprintf(r->info.name, sizeof r->info.name, "%s", name);
    snprintf(r->info.key, sizeof r->info.key, "%s", key);
    r->info.kind = SHM_SYSTEM;
    r->info.offset = offset;
    r->info.byte_size = byte_size;
    r->info.device_id = -1;
    st = map_object(r, err, err_len);
    if (st == SHM_OK)
        st = insert(t, r, err, err_len); /* a racing twin may have won */
    if (st != SHM_OK)
        region_free(r);
    return st;
}

enum shm_status shm_register_cuda(struct shm_table *t, const char *name, int device_id,
                                  uint64_t byte_size, void *dev_ptr,
                                  const struct shm_device_ops *ops, char *err, size_t err_len)
{
    enum shm_status st = check_on(t, name, err, err_len);
    if (st != SHM_OK)
        return st;
    if (byte_size == 0 || dev_ptr == NULL || device_id < 0) {
        snprintf(err, err_len, "a CUDA region needs a device_id >= 0 and a byte_size >= 1");
        return SHM_INVALID;
    }
    struct shm_region *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, err_len, "out of memory");
        return SHM_INTERNAL;
    }
    r->fd = -1;
    snprintf(r->info.name, sizeof r->info.name, "%s", name);
    r->info.kind = SHM_CUDA;
    r->info.byte_size = byte_size;
    r->info.device_id = device_id;
    r->base = dev_ptr;
    r->ops = ops;
    st = insert(t, r, err, err_len);
    if (st != SHM_OK)
        free(r); /* dev_ptr stays the caller's */
    return st;
}

/* Under the lock: unlink r from the table. */
static void unlink_region(struct shm_table *t, struct shm_region *r)
{
    for (struct shm_region **p = &t->head; *p != NULL; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    t->n_regions[r->info.kind]--;
    t->bytes[r->info.kind] -= r->info.byte_size;
}

enum shm_status shm_unregister(struct shm_table *t, enum shm_kind kind, const char *name, char *err,
                               size_t err_len)
{
    enum shm_status st = check_on(t, name, err, err_len);
    if (st != SHM_OK)
        return st;
    struct shm_region *gone = NULL; /* freed after the lock */
    pthread_mutex_lock(&t->lock);
    if (name != NULL) {
        struct shm_region *r = find(t, name);
        if (r == NULL || r->info.kind != kind) {
            snprintf(err, err_len, "no %s shared memory region \"%s\" is registered",
                     kind_names[kind], name);
            st = SHM_NOT_FOUND;
        } else if (r->info.users > 0) {
            snprintf(err, err_len,
                     "shared memory region \"%s\" is in use by %d request(s): unregister it "
                     "after they end",
                     name, r->info.users);
            st = SHM_BUSY;
        } else {
            unlink_region(t, r);
            r->next = NULL;
            gone = r;
        }
    } else {
        for (struct shm_region *r = t->head; r != NULL && st == SHM_OK; r = r->next) {
            if (r->info.kind == kind && r->info.users > 0) {
                snprintf(err, err_len,
                         "shared memory region \"%s\" is in use by %d request(s): nothing was "
                         "unregistered",
                         r->info.name, r->info.users);
                st = SHM_BUSY;
            }
        }
        for (struct shm_region *r = t->head, *next; r != NULL && st == SHM_OK; r = next) {
            next = r->next;
            if (r->info.kind == kind) {
                unlink_region(t, r);
                r->next = gone;
                gone = r;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    while (gone != NULL) {
        struct shm_region *next = gone->next;
        region_free(gone);
        gone = next;
    }
    return st;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct shm_region_info *)a)->name,
                  ((const struct shm_region_info *)b)->name);
}

int shm_status_list(struct shm_table *t, enum shm_kind kind, const char *name,
                    struct shm_region_info *out, int max, enum shm_status *status, char *err,
                    size_t err_len)
{
    *status = check_on(t, name, err, err_len);
    if (*status != SHM_OK)
        return -1;
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (struct shm_region *r = t->head; r != NULL; r = r->next) {
        if (r->info.kind != kind || (name != NULL && strcmp(r->info.name, name) != 0))
            continue;
        if (n < max)
            out[n] = r->info;
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    if (name != NULL && n == 0) {
        snprintf(err, err_len, "no %s shared memory region \"%s\" is registered", kind_names[kind],
                 name);
        *status = SHM_NOT_FOUND;
        return -1;
    }
    qsort(out, (size_t)(n < max ? n : max), sizeof *out, by_name);
    return n;
}

enum shm_status shm_view_acquire(struct shm_table *t, const struct shm_spec *spec,
                                 struct shm_view *v, char *err, size_t err_len)
{
    memset(v, 0, sizeof *v);
    enum shm_status st = check_on(t, spec->name, err, err_len);
    if (st != SHM_OK)
        return st;
    pthread_mutex_lock(&t->lock);
    struct shm_region *r = find(t, spec->name);
    if (r == NULL) {
        snprintf(err, err_len, "no shared memory region \"%s\" is registered", spec->name);
        st = SHM_NOT_FOUND;
    } else if (!in_range(spec->offset, spec->byte_size, r->info.byte_size)) {
        snprintf(err, err_len,
                 "shared_memory_offset %llu + shared_memory_byte_size %llu is past the end of "
                 "region \"%s\" (%llu bytes)",
                 (unsigned long long)spec->offset, (unsigned long long)spec->byte_size, spec->name,
                 (unsigned long long)r->info.byte_size);
        st = SHM_INVALID;
    } else {
        r->info.users++;
        v->region = r;
        v->kind = r->info.kind;
        v->data = r->base + spec->offset;
        v->size = spec->byte_size;
        v->offset = spec->offset;
        v->device_id = r->info.device_id;
        snprintf(v->name, sizeof v->name, "%s", r->info.name);
    }
    pthread_mutex_unlock(&t->lock);
    if (st == SHM_OK && shm_view_check(v, err, err_len) != 0) {
        shm_view_release(v);
        st = SHM_INVALID;
    }
    return st;
}

int shm_view_check(const struct shm_view *v, char *err, size_t err_len)
{
    const struct shm_region *r = v->region;
    if (r == NULL || r->info.kind != SHM_SYSTEM)
        return 0;
    struct stat st;
    uint64_t end = r->info.offset + r->info.byte_size; /* checked at register */
    if (fstat(r->fd, &st) != 0 || (uint64_t)st.st_size < end) {
        snprintf(err, err_len,
                 "shared memory region \"%s\" was shrunk to %lld bytes under the server: it "
                 "needs %llu; register it again",
                 r->info.name, (long long)st.st_size, (unsigned long long)end);
        return -1;
    }
    return 0;
}

int shm_view_read(const struct shm_view *v, void *dst, size_t n, char *err, size_t err_len)
{
    if (n > v->size) {
        snprintf(err, err_len, "read past the shared memory view");
        return -1;
    }
    if (shm_view_check(v, err, err_len) != 0)
        return -1;
    if (v->kind == SHM_CUDA)
        return v->region->ops->read(dst, v->data, n, v->device_id, err, err_len);
    memcpy(dst, v->data, n);
    return 0;
}

int shm_view_write(const struct shm_view *v, const void *src, size_t n, char *err, size_t err_len)
{
    if (n > v->size) {
        snprintf(err, err_len, "write past the shared memory view");
        return -1;
    }
    if (shm_view_check(v, err, err_len) != 0)
        return -1;
    if (v->kind == SHM_CUDA)
        return v->region->ops->write(v->data, src, n, v->device_id, err, err_len);
    memcpy(v->data, src, n);
    return 0;
}

void shm_view_release(struct shm_view *v)
{
    struct shm_region *r = v->region;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->table->lock);
    r->info.users--;
    pthread_mutex_unlock(&r->table->lock);
    memset(v, 0, sizeof *v);
}

void shm_render_metrics(struct shm_table *t, struct strbuf *sb)
{
    pthread_mutex_lock(&t->lock);
    int n[2] = {t->n_regions[0], t->n_regions[1]};
    uint64_t bytes[2] = {t->bytes[0], t->bytes[1]};
    pthread_mutex_unlock(&t->lock);
    strbuf_puts(sb, "# HELP inferd_shared_memory_regions Registered shared memory regions.\n"
                    "# TYPE inferd_shared_memory_regions gauge\n");
    for (int k = 0; k < 2; k++)
        strbuf_printf(sb, "inferd_shared_memory_regions{kind=\"%s\"} %d\n", kind_names[k], n[k]);
    strbuf_puts(sb, "# HELP inferd_shared_memory_bytes Bytes of registered shared memory regions.\n"
                    "# TYPE inferd_shared_memory_bytes gauge\n");
    for (int k = 0; k < 2; k++)
        strbuf_printf(sb, "inferd_shared_memory_bytes{kind=\"%s\"} %llu\n", kind_names[k],
                      (unsigned long long)bytes[k]);
}
