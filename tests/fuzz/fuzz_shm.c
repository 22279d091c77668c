/* fuzz_shm.c - libFuzzer target for shared memory region parameters and
 * offsets (shm_region.h, v2_json.h), on one real POSIX shared memory object
 * of 64 KiB made at start-up. The first byte picks the mode:
 *
 *   even: the rest is a v2 tensor's JSON; v2_json_shm_spec reads it (as an
 *         input and as an output) and a spec it accepts is acquired on a
 *         table holding region "r" ([4096, 4096 + 32768) of the object);
 *   odd:  the rest is a program of 18-byte steps (op, name, offset u64,
 *         size u64) that register, unregister, acquire (and read and write
 *         through), release and list regions of a table limited to 4
 *         regions and 128 KiB, at offsets and sizes from the input.
 *
 * Invariants: every view that is granted lies inside its region and inside
 * the object; a view outside is refused and holds nothing; a held region
 * is never unregistered; the table's counts match its status list; at the
 * end every hold is released and every region can be unregistered. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm_region.h"
#include "test_support.h"
#include "v2_json.h"

#define OBJECT_SIZE (64 * 1024)
#define MAX_VIEWS 8

static char key[64];

static void remove_object(void)
{
    shm_unlink(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(key, sizeof key, "/inferd-fuzz-shm-%d", (int)getpid());
    int fd = shm_open(key, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, OBJECT_SIZE) == 0);
    close(fd);
    atexit(remove_object);
    return 0;
}

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Check a granted view against its region's registered extent. */
static void check_view(struct shm_table *t, const struct shm_view *v, const struct shm_spec *s)
{
    struct shm_region_info info[1];
    enum shm_status st;
    char err[256];
    CHECK(v->region != NULL);
    CHECK(shm_status_list(t, SHM_SYSTEM, v->name, info, 1, &st, err, sizeof err) == 1);
    CHECK(s->offset <= info[0].byte_size && s->byte_size <= info[0].byte_size - s->offset);
    CHECK(info[0].offset + info[0].byte_size <= OBJECT_SIZE);
    CHECK(info[0].users >= 1);
    uint8_t buf[64];
    size_t n = v->size < sizeof buf ? (size_t)v->size : sizeof buf;
    CHECK(shm_view_read(v, buf, n, err, sizeof err) == 0);
    CHECK(shm_view_write(v, buf, n, err, sizeof err) == 0);
    if (v->size > 0) { /* the last byte is mapped too */
        volatile uint8_t last = v->data[v->size - 1];
        (void)last;
    }
    CHECK(shm_view_read(v, buf, (size_t)v->size + 1, err, sizeof err) == -1);
}

static void run_json(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    struct shm_table t;
    char err[256];
    CHECK(shm_table_init(&t, true, 4, OBJECT_SIZE) == 0);
    CHECK(shm_register_system(&t, "r", key, 4096, 32768, err, sizeof err) == SHM_OK);
    for (int input = 0; input < 2; input++) {
        struct shm_spec spec;
        err[0] = '\0';
        int rc = v2_json_shm_spec(root, input, "t", &spec, err, sizeof err);
        CHECK(rc == -1 || rc == 0 || rc == 1);
        CHECK(rc != -1 || err[0] != '\0');
        if (rc != 1)
            continue;
        CHECK(shm_name_valid(spec.name));
        struct shm_view v;
        enum shm_status st = shm_view_acquire(&t, &spec, &v, err, sizeof err);
        bool fits = strcmp(spec.name, "r") == 0 && spec.offset <= 32768 &&
                    spec.byte_size <= 32768 - spec.offset;
        CHECK((st == SHM_OK) == fits);
        if (st == SHM_OK) {
            check_view(&t, &v, &spec);
            shm_view_release(&v);
        } else {
            CHECK(v.region == NULL);
        }
    }
    cJSON_Delete(root);
    CHECK(shm_unregister(&t, SHM_SYSTEM, NULL, err, sizeof err) == SHM_OK);
    shm_table_destroy(&t);
}

static void run_program(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"a", "b", "c", "d", "e", "..", "a/b", ""};
    struct shm_table t;
    char err[256];
    CHECK(shm_table_init(&t, true, 4, 128 * 1024) == 0);
    struct shm_view views[MAX_VIEWS] = {{0}};
    for (size_t at = 0; at + 18 <= size; at += 18) {
        const uint8_t *p = data + at;
        const char *name = names[p[1] % 8];
        uint64_t offset = u64_at(p + 2), len = u64_at(p + 10);
        /* Keep some values small so that they land inside the object. */
        if (p[0] & 0x80) {
            offset %= OBJECT_SIZE + 2;
            len %= OBJECT_SIZE + 2;
        }
        struct shm_view *v = &views[p[1] % MAX_VIEWS];
        enum shm_status st;
        switch (p[0] % 5) {
        case 0:
            st = shm_register_system(&t, name, key, offset, len, err, sizeof err);
            if (st == SHM_OK)
                CHECK(len > 0 && offset <= OBJECT_SIZE && len <= OBJECT_SIZE - offset &&
                      shm_name_valid(name));
            break;
        case 1:
            st = shm_unregister(&t, SHM_SYSTEM, (p[0] & 0x40) ? NULL : name, err, sizeof err);
            if (st == SHM_OK) /* nothing unregistered is still held */
                for (int i = 0; i < MAX_VIEWS; i++)
                    CHECK(views[i].region == NULL ||
                          ((p[0] & 0x40) == 0 && strcmp(views[i].name, name) != 0));
            break;
        case 2: {
            if (v->region != NULL)
                shm_view_release(v);
            struct shm_spec spec;
            snprintf(spec.name, sizeof spec.name, "%s", name);
            spec.offset = offset;
            spec.byte_size = len;
            st = shm_view_acquire(&t, &spec, v, err, sizeof err);
            if (st == SHM_OK)
                check_view(&t, v, &spec);
            else
                CHECK(v->region == NULL);
            break;
        }
        case 3: shm_view_release(v); break;
        case 4: {
            struct shm_region_info info[4];
            int n = shm_status_list(&t, SHM_SYSTEM, NULL, info, 4, &st, err, sizeof err);
            CHECK(n == t.n_regions[SHM_SYSTEM] && n <= 4);
            uint64_t bytes = 0;
            for (int i = 0; i < n; i++)
                bytes += info[i].byte_size;
            CHECK(bytes == t.bytes[SHM_SYSTEM] && bytes <= 128 * 1024);
            break;
        }
        }
    }
    for (int i = 0; i < MAX_VIEWS; i++)
        shm_view_release(&views[i]);
    CHECK(shm_unregister(&t, SHM_SYSTEM, NULL, err, sizeof err) == SHM_OK);
    CHECK(t.n_regions[SHM_SYSTEM] == 0 && t.bytes[SHM_SYSTEM] == 0);
    shm_table_destroy(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        run_json(data + 1, size - 1);
    else
        run_program(data + 1, size - 1);
    return 0;
}
