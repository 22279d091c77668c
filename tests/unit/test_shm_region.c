/* test_shm_region.c - the shared memory region table (shm_region.h) on real
 * POSIX shared memory objects: names and keys, register limits and
 * duplicates, checked views (offsets, overflow), holds that block
 * unregister, a shrunk object refused before it is touched, CUDA regions
 * through stand-in device ops, status lists and metrics; and the v2
 * parameter reader (v2_shm.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm_region.h"
#include "test_support.h"
#include "v2_json.h"

#define MIB (1024 * 1024)

/* A fresh shared memory object of size bytes, its key in key. */
static int make_object(char *key, size_t len, size_t size)
{
    snprintf(key, len, "/inferd-test-%d-%d", (int)getpid(), rand());
    int fd = shm_open(key, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)size) == 0);
    return fd;
}

static void test_names_and_keys(void **state)
{
    (void)state;
    assert_true(shm_name_valid("a"));
    assert_true(shm_name_valid("in_put-0.x"));
    char long_name[SHM_NAME_MAX + 1];
    memset(long_name, 'a', sizeof long_name);
    long_name[SHM_NAME_MAX - 1] = '\0';
    assert_true(shm_name_valid(long_name)); /* 63 bytes */
    long_name[SHM_NAME_MAX - 1] = 'a';
    long_name[SHM_NAME_MAX] = '\0';
    assert_false(shm_name_valid(long_name));
    const char *bad_names[] = {"", ".", "..", "a/b", "/a", "a b", "a\\b", "é", "a\n", NULL};
    for (int i = 0; bad_names[i]; i++)
        assert_false(shm_name_valid(bad_names[i]));
    assert_false(shm_name_valid(NULL));
    assert_true(shm_key_valid("/psm_1234"));
    assert_true(shm_key_valid("psm_1234"));
    const char *bad_keys[] = {"", "/", "//a", "/a/b", "/..", "..", "/.", "../x", "a b", NULL};
    for (int i = 0; bad_keys[i]; i++)
        assert_false(shm_key_valid(bad_keys[i]));
    uint64_t v;
    assert_int_equal(shm_u64_from_double(0, &v), 0);
    assert_int_equal(shm_u64_from_double(0x1p53, &v), 0);
    assert_true(v == (1ull << 53));
    assert_int_equal(shm_u64_from_double(0x1p53 + 2, &v), -1);
    assert_int_equal(shm_u64_from_double(-1, &v), -1);
    assert_int_equal(shm_u64_from_double(0.5, &v), -1);
    assert_int_equal(shm_u64_from_double(0.0 / 0.0, &v), -1);
    assert_int_equal(shm_u64_from_double(1e300, &v), -1);
}

static void test_off(void **state)
{
    (void)state;
    struct shm_table t;
    char err[256];
    assert_int_equal(shm_table_init(&t, false, 4, MIB), 0);
    assert_int_equal(shm_register_system(&t, "r", "/k", 0, 1, err, sizeof err), SHM_OFF);
    assert_non_null(strstr(err, "--shared-memory"));
    struct shm_spec spec = {"r", 0, 1};
    struct shm_view v;
    assert_int_equal(shm_view_acquire(&t, &spec, &v, err, sizeof err), SHM_OFF);
    assert_null(v.region);
    enum shm_status st;
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, NULL, NULL, 0, &st, err, sizeof err), -1);
    assert_int_equal(st, SHM_OFF);
    shm_table_destroy(&t);
    /* No table at all (a transport without one): off as well. */
    assert_int_equal(shm_view_acquire(NULL, &spec, &v, err, sizeof err), SHM_OFF);
    assert_int_equal(shm_register_system(NULL, "r", "/k", 0, 1, err, sizeof err), SHM_OFF);
    assert_int_equal(shm_unregister(NULL, SHM_SYSTEM, NULL, err, sizeof err), SHM_OFF);
    assert_int_equal(shm_status_list(NULL, SHM_CUDA, NULL, NULL, 0, &st, err, sizeof err), -1);
    enum infer_status status = INFER_OK;
    struct tensor tensor;
    int64_t shape[1] = {1};
    struct shm_spec four = {"r", 0, 4};
    assert_int_equal(
        v2_shm_input(NULL, &four, "t", SHIM_FP32, shape, 1, &v, &tensor, &status, err, sizeof err),
        -1);
    assert_int_equal(status, INFER_INVALID);
}

static void test_register_views_unregister(void **state)
{
    (void)state;
    char key[64], err[256];
    int fd = make_object(key, sizeof key, 3 * 4096);
    uint8_t *mine = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(mine != MAP_FAILED);
    for (int i = 0; i < 3 * 4096; i++)
        mine[i] = (uint8_t)i;
    struct shm_table t;
    assert_int_equal(shm_table_init(&t, true, 4, MIB), 0);
    /* Past the object: by size, by offset, by an overflowing sum. */
    assert_int_equal(shm_register_system(&t, "r", key, 0, 3 * 4096 + 1, err, sizeof err),
                     SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r", key, 3 * 4096, 1, err, sizeof err), SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r", key, UINT64_MAX, 2, err, sizeof err),
                     SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r", key, 0, 0, err, sizeof err), SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r", "/inferd-no-such", 0, 1, err, sizeof err),
                     SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r/x", key, 0, 1, err, sizeof err), SHM_INVALID);
    assert_int_equal(shm_register_system(&t, "r", "/x/../y", 0, 1, err, sizeof err), SHM_INVALID);
    /* An unaligned offset into the object. */
    assert_int_equal(shm_register_system(&t, "r", key, 4097, 8000, err, sizeof err), SHM_OK);
    assert_int_equal(shm_register_system(&t, "r", key, 0, 10, err, sizeof err), SHM_EXISTS);
    struct shm_view v, w;
    struct shm_spec spec = {"r", 3, 100};
    assert_int_equal(shm_view_acquire(&t, &spec, &v, err, sizeof err), SHM_OK);
    assert_int_equal(v.data[0], (uint8_t)(4097 + 3));
    assert_int_equal(v.size, 100);
    /* Out of range views: never held. */
    struct shm_spec past[] = {{"r", 0, 8001},       {"r", 8000, 1},       {"r", 8001, 0},
                              {"r", UINT64_MAX, 2}, {"r", 1, UINT64_MAX}, {"nope", 0, 1}};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        enum shm_status st = shm_view_acquire(&t, &past[i], &w, err, sizeof err);
        assert_int_equal(st, i == 5 ? SHM_NOT_FOUND : SHM_INVALID);
        assert_null(w.region);
    }
    struct shm_spec edge = {"r", 8000, 0};
    assert_int_equal(shm_view_acquire(&t, &edge, &w, err, sizeof err), SHM_OK);
    /* Held: unregister refuses, by name and all at once. */
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "r", err, sizeof err), SHM_BUSY);
    assert_non_null(strstr(err, "in use by 2"));
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, NULL, err, sizeof err), SHM_BUSY);
    struct shm_region_info info[4];
    enum shm_status st;
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, "r", info, 4, &st, err, sizeof err), 1);
    assert_int_equal(info[0].users, 2);
    assert_int_equal(info[0].offset, 4097);
    /* Reads and writes through the view go to the object. */
    uint8_t buf[4] = {9, 8, 7, 6};
    assert_int_equal(shm_view_write(&v, buf, 4, err, sizeof err), 0);
    assert_int_equal(mine[4097 + 3], 9);
    assert_int_equal(shm_view_write(&v, buf, 101, err, sizeof err), -1);
    assert_int_equal(shm_view_read(&v, buf, 2, err, sizeof err), 0);
    assert_int_equal(buf[1], 8);
    shm_view_release(&v);
    shm_view_release(&w);
    shm_view_release(&w); /* a released view is cleared: nothing */
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, "r", info, 4, &st, err, sizeof err), 1);
    assert_int_equal(info[0].users, 0);
    assert_int_equal(shm_unregister(&t, SHM_CUDA, "r", err, sizeof err), SHM_NOT_FOUND);
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "r", err, sizeof err), SHM_OK);
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "r", err, sizeof err), SHM_NOT_FOUND);
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, NULL, info, 4, &st, err, sizeof err), 0);
    shm_table_destroy(&t);
    munmap(mine, 3 * 4096);
    close(fd);
    shm_unlink(key);
}

static void test_limits(void **state)
{
    (void)state;
    char key[64], err[256];
    int fd = make_object(key, sizeof key, 4096);
    struct shm_table t;
    assert_int_equal(shm_table_init(&t, true, 2, 5000), 0);
    assert_int_equal(shm_register_system(&t, "a", key, 0, 4096, err, sizeof err), SHM_OK);
    assert_int_equal(shm_register_system(&t, "b", key, 0, 1000, err, sizeof err), SHM_LIMIT);
    assert_non_null(strstr(err, "--shared-memory-max-bytes"));
    assert_int_equal(shm_register_system(&t, "b", key, 0, 904, err, sizeof err), SHM_OK);
    assert_int_equal(shm_register_system(&t, "c", key, 0, 1, err, sizeof err), SHM_LIMIT);
    assert_non_null(strstr(err, "--shared-memory-max-regions"));
    struct shm_region_info info[1];
    enum shm_status st;
    /* More regions than room: the count, and the first by name. */
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, NULL, info, 1, &st, err, sizeof err), 2);
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, NULL, err, sizeof err), SHM_OK);
    assert_int_equal(shm_register_system(&t, "c", key, 0, 4096, err, sizeof err), SHM_OK);
    shm_table_destroy(&t); /* unmaps what is left */
    close(fd);
    shm_unlink(key);
}

static void test_shrunk_object(void **state)
{
    (void)state;
    char key[64], err[256];
    int fd = make_object(key, sizeof key, 8192);
    struct shm_table t;
    assert_int_equal(shm_table_init(&t, true, 4, MIB), 0);
    assert_int_equal(shm_register_system(&t, "s", key, 0, 8192, err, sizeof err), SHM_OK);
    struct shm_spec spec = {"s", 0, 16};
    struct shm_view v, w;
    assert_int_equal(shm_view_acquire(&t, &spec, &v, err, sizeof err), SHM_OK);
    CHECK(ftruncate(fd, 100) == 0);
    /* Every use checks first: no SIGBUS, an error. */
    uint8_t buf[16] = {0};
    assert_int_equal(shm_view_check(&v, err, sizeof err), -1);
    assert_non_null(strstr(err, "shrunk"));
    assert_int_equal(shm_view_read(&v, buf, 16, err, sizeof err), -1);
    assert_int_equal(shm_view_write(&v, buf, 16, err, sizeof err), -1);
    assert_int_equal(shm_view_acquire(&t, &spec, &w, err, sizeof err), SHM_INVALID);
    assert_null(w.region);
    /* Grown back, it works again. */
    CHECK(ftruncate(fd, 8192) == 0);
    assert_int_equal(shm_view_write(&v, buf, 16, err, sizeof err), 0);
    shm_view_release(&v);
    /* Removed (unlinked) underneath: the mapping stays valid. */
    shm_unlink(key);
    assert_int_equal(shm_view_acquire(&t, &spec, &v, err, sizeof err), SHM_OK);
    assert_int_equal(shm_view_read(&v, buf, 16, err, sizeof err), 0);
    shm_view_release(&v);
    shm_table_destroy(&t);
    close(fd);
}

/* Stand-in device ops: "device memory" is host memory, counted. */
static int dev_reads, dev_writes, dev_closes;
static int fake_read(void *dst, const void *src, size_t n, int device, char *err, size_t len)
{
    (void)device, (void)err, (void)len;
    memcpy(dst, src, n);
    dev_reads++;
    return 0;
}
static int fake_write(void *dst, const void *src, size_t n, int device, char *err, size_t len)
{
    (void)device, (void)err, (void)len;
    memcpy(dst, src, n);
    dev_writes++;
    return 0;
}
static void fake_close(void *ptr, int device)
{
    (void)ptr, (void)device;
    dev_closes++;
}
static const struct shm_device_ops fake_ops = {fake_read, fake_write, fake_close};

static void test_cuda_regions(void **state)
{
    (void)state;
    static uint8_t device_mem[256];
    char err[256];
    struct shm_table t;
    assert_int_equal(shm_table_init(&t, true, 4, MIB), 0);
    assert_int_equal(shm_register_cuda(&t, "g", 1, 0, device_mem, &fake_ops, err, sizeof err),
                     SHM_INVALID);
    assert_int_equal(
        shm_register_cuda(&t, "g", 1, sizeof device_mem, device_mem, &fake_ops, err, sizeof err),
        SHM_OK);
    assert_int_equal(shm_register_cuda(&t, "g", 1, 8, device_mem, &fake_ops, err, sizeof err),
                     SHM_EXISTS);
    struct shm_spec spec = {"g", 16, 32};
    struct shm_view v;
    assert_int_equal(shm_view_acquire(&t, &spec, &v, err, sizeof err), SHM_OK);
    assert_int_equal(v.kind, SHM_CUDA);
    assert_int_equal(v.device_id, 1);
    uint8_t in[4] = {1, 2, 3, 4}, out[4];
    assert_int_equal(shm_view_write(&v, in, 4, err, sizeof err), 0);
    assert_int_equal(shm_view_read(&v, out, 4, err, sizeof err), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(device_mem[17], 2);
    assert_int_equal(dev_reads + dev_writes, 2);
    /* A system unregister does not see it; CUDA status does. */
    char err2[256];
    assert_int_equal(shm_unregister(&t, SHM_SYSTEM, "g", err2, sizeof err2), SHM_NOT_FOUND);
    struct shm_region_info info[2];
    enum shm_status st;
    assert_int_equal(shm_status_list(&t, SHM_CUDA, NULL, info, 2, &st, err, sizeof err), 1);
    assert_int_equal(info[0].device_id, 1);
    assert_int_equal(shm_status_list(&t, SHM_SYSTEM, NULL, info, 2, &st, err, sizeof err), 0);
    assert_int_equal(shm_unregister(&t, SHM_CUDA, "g", err, sizeof err), SHM_BUSY);
    shm_view_release(&v);
    struct strbuf sb = {0};
    shm_render_metrics(&t, &sb);
    assert_non_null(strstr(sb.data, "inferd_shared_memory_regions{kind=\"cuda\"} 1\n"));
    assert_non_null(strstr(sb.data, "inferd_shared_memory_bytes{kind=\"cuda\"} 256\n"));
    assert_non_null(strstr(sb.data, "inferd_shared_memory_regions{kind=\"system\"} 0\n"));
    strbuf_free(&sb);
    assert_int_equal(shm_unregister(&t, SHM_CUDA, NULL, err, sizeof err), SHM_OK);
    assert_int_equal(dev_closes, 1);
    shm_table_destroy(&t);
}

static int spec_of(const char *json, bool input, struct shm_spec *spec, char *err, size_t len)
{
    cJSON *root = cJSON_Parse(json);
    CHECK(root != NULL);
    int rc = v2_json_shm_spec(root, input, "t", spec, err, len);
    cJSON_Delete(root);
    return rc;
}

static void test_v2_parameters(void **state)
{
    (void)state;
    struct shm_spec spec;
    char err[256];
    assert_int_equal(spec_of("{\"name\":\"t\"}", true, &spec, err, sizeof err), 0);
    assert_int_equal(spec_of("{\"parameters\":{\"shared_memory_region\":\"r\","
                             "\"shared_memory_byte_size\":64,\"shared_memory_offset\":8}}",
                             true, &spec, err, sizeof err),
                     1);
    assert_string_equal(spec.name, "r");
    assert_true(spec.byte_size == 64 && spec.offset == 8);
    assert_int_equal(spec_of("{\"parameters\":{\"shared_memory_region\":\"r\","
                             "\"shared_memory_byte_size\":64}}",
                             false, &spec, err, sizeof err),
                     1);
    assert_true(spec.offset == 0);
    const char *bad[] = {
        "{\"parameters\":{\"shared_memory_region\":\"r\"}}",
        "{\"parameters\":{\"shared_memory_byte_size\":4}}",
        "{\"parameters\":{\"shared_memory_offset\":4}}",
        "{\"parameters\":{\"shared_memory_region\":\"a/b\",\"shared_memory_byte_size\":4}}",
        "{\"parameters\":{\"shared_memory_region\":7,\"shared_memory_byte_size\":4}}",
        "{\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":-4}}",
        "{\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":4.5}}",
        "{\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":1e20}}",
        "{\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":\"4\"}}",
        "{\"parameters\":{\"shared_memory_region\":\"r\",\"shared_memory_byte_size\":4,"
        "\"shared_memory_offset\":-1}}",
        "{\"data\":[1],\"parameters\":{\"shared_memory_region\":\"r\","
        "\"shared_memory_byte_size\":4}}",
        "{\"parameters\":{\"binary_data_size\":4,\"shared_memory_region\":\"r\","
        "\"shared_memory_byte_size\":4}}",
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        if (spec_of(bad[i], true, &spec, err, sizeof err) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(spec_of("{\"parameters\":{\"classification\":2,\"shared_memory_region\":"
                             "\"r\",\"shared_memory_byte_size\":4}}",
                             false, &spec, err, sizeof err),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_keys),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_register_views_unregister),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_shrunk_object),
        cmocka_unit_test(test_cuda_regions),
        cmocka_unit_test(test_v2_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
