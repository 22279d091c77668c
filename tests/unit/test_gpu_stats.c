/* test_gpu_stats.c - the inferd_gpu_* metric families: memory from the CUDA
 * runtime, utilisation from NVML matched by PCI bus id (not by index), and
 * nothing at all without a GPU. This machine has neither a GPU nor the
 * driver, so the two shim calls are defined here with fixed figures and NVML
 * is fake_nvml.c, loaded with dlopen exactly as the server loads the real
 * one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_stats.h"
#include "test_support.h"
#include "torch_shim.h"

#ifndef FAKE_NVML
#error "build with -DFAKE_NVML=\"path/to/libfake_nvml.so\""
#endif

#define GIB (1024ull * 1024 * 1024)

/* CUDA ordinal 0 is the device NVML lists second (86:00.0), ordinal 1 the
 * first (3b:00.0), as under CUDA_VISIBLE_DEVICES=1,0; ordinal 2 has no
 * NVML device; ordinal 3 does not exist. */
int shim_cuda_memory_info(int device, uint64_t *free_bytes, uint64_t *total_bytes)
{
    if (device < 0 || device > 2)
        return SHIM_ERR_DEVICE;
    *total_bytes = (uint64_t)(device + 1) * 16 * GIB;
    *free_bytes = *total_bytes - (uint64_t)(device + 1) * GIB;
    return SHIM_OK;
}

int shim_cuda_pci_bus_id(int device, char *buf, size_t len)
{
    static const char *ids[] = {"0000:86:00.0", "0000:3b:00.0", "0000:d8:00.0"};
    if (device < 0 || device > 2)
        return SHIM_ERR_DEVICE;
    snprintf(buf, len, "%s", ids[device]);
    return SHIM_OK;
}

static char *render(const int *devices, int n, const char *nvml)
{
    struct strbuf sb = {0};
    gpu_stats_render(&sb, devices, n, nvml, NULL);
    CHECK(!sb.failed);
    size_t len;
    char *text = strbuf_detach(&sb, &len);
    return text ? text : strdup("");
}

static void test_memory_and_utilization_by_bus_id(void **state)
{
    (void)state;
    void *fake = dlopen(FAKE_NVML, RTLD_NOW); /* held open to read its counter */
    assert_non_null(fake);
    int (*open_inits)(void) = (int (*)(void))dlsym(fake, "fake_nvml_open_inits");
    assert_non_null(open_inits);

    const int devices[] = {-1, 0, 1, 2, 3};
    char *text = render(devices, 5, FAKE_NVML);
    assert_non_null(strstr(text, "inferd_gpu_memory_used_bytes{gpu=\"0\"} 1073741824\n"));
    assert_non_null(strstr(text, "inferd_gpu_memory_total_bytes{gpu=\"0\"} 17179869184\n"));
    assert_non_null(strstr(text, "inferd_gpu_memory_used_bytes{gpu=\"1\"} 2147483648\n"));
    assert_non_null(strstr(text, "inferd_gpu_memory_total_bytes{gpu=\"2\"} 51539607552\n"));
    assert_null(strstr(text, "gpu=\"3\""));  /* no such device */
    assert_null(strstr(text, "gpu=\"-1\"")); /* the CPU entry */
    /* By bus id: ordinal 0 is NVML's 86:00.0 (82%), ordinal 1 is 3b:00.0. */
    assert_non_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"0\"} 0.82\n"));
    assert_non_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"1\"} 0.37\n"));
    assert_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"2\"}"));
    assert_non_null(strstr(text, "# TYPE inferd_gpu_utilization_ratio gauge\n"));
    assert_int_equal(open_inits(), 0); /* every nvmlInit_v2 had its nvmlShutdown */
    free(text);
    dlclose(fake);
}

/* promtool (Debian's prometheus package, which CI installs) accepts the
 * families on their own. */
static void test_families_pass_promtool(void **state)
{
    (void)state;
    const int devices[] = {0, 1, 2};
    char *text = render(devices, 3, FAKE_NVML);
    FILE *check = popen("promtool check metrics >/dev/null 2>&1", "w");
    assert_non_null(check);
    fputs(text, check);
    int status = pclose(check);
    assert_int_equal(status, 0);
    free(text);
}

static void test_without_nvml_memory_only(void **state)
{
    (void)state;
    const int devices[] = {0, 1};
    char *text = render(devices, 2, "libinferd-no-such-nvml.so.1");
    assert_non_null(strstr(text, "inferd_gpu_memory_used_bytes{gpu=\"1\"} 2147483648\n"));
    assert_null(strstr(text, "utilization"));
    free(text);
}

static void test_nvml_without_a_match_writes_no_family(void **state)
{
    (void)state;
    const int devices[] = {2}; /* d8:00.0: NVML does not know it */
    char *text = render(devices, 1, FAKE_NVML);
    assert_non_null(strstr(text, "inferd_gpu_memory_total_bytes{gpu=\"2\"}"));
    assert_null(strstr(text, "utilization")); /* no HELP/TYPE without a sample */
    free(text);
}

static void test_cpu_only_writes_nothing(void **state)
{
    (void)state;
    const int cpu_only[] = {-1};
    char *text = render(cpu_only, 1, FAKE_NVML);
    assert_string_equal(text, "");
    free(text);
    const int missing[] = {3, 7};
    text = render(missing, 2, FAKE_NVML);
    assert_string_equal(text, "");
    free(text);
}

static void test_visible_devices_parse(void **state)
{
    (void)state;
    struct gpu_visible_entry e[GPU_VISIBLE_MAX];
    assert_int_equal(gpu_visible_parse(NULL, e, GPU_VISIBLE_MAX), 0);
    assert_int_equal(gpu_visible_parse("", e, GPU_VISIBLE_MAX), 0);
    assert_int_equal(gpu_visible_parse("all", e, GPU_VISIBLE_MAX), 0);
    assert_int_equal(gpu_visible_parse("none", e, GPU_VISIBLE_MAX), 0);
    assert_int_equal(gpu_visible_parse("1, 0", e, GPU_VISIBLE_MAX), 2);
    assert_int_equal(e[0].kind, GPU_VISIBLE_INDEX);
    assert_int_equal(e[0].index, 1);
    assert_int_equal(e[1].index, 0);
    assert_int_equal(
        gpu_visible_parse("MIG-5ee1c0de-1111-2222-3333-444455556666", e, GPU_VISIBLE_MAX), 1);
    assert_int_equal(e[0].kind, GPU_VISIBLE_MIG_UUID);
    assert_string_equal(e[0].uuid, "MIG-5ee1c0de-1111-2222-3333-444455556666");
    /* The older form, and a whole GPU by UUID next to an index. */
    assert_int_equal(gpu_visible_parse("MIG-GPU-5ee1c0de-1111-2222-3333-444455556666/1/0,"
                                       "GPU-0a1b2c3d-1111-2222-3333-444455556666,2",
                                       e, GPU_VISIBLE_MAX),
                     3);
    assert_int_equal(e[0].kind, GPU_VISIBLE_MIG_UUID);
    assert_string_equal(e[0].uuid, "MIG-GPU-5ee1c0de-1111-2222-3333-444455556666/1/0");
    assert_int_equal(e[1].kind, GPU_VISIBLE_GPU_UUID);
    assert_int_equal(e[2].kind, GPU_VISIBLE_INDEX);
    assert_int_equal(e[2].index, 2);
    /* What it cannot read: no mapping. */
    assert_int_equal(gpu_visible_parse("0,,1", e, GPU_VISIBLE_MAX), -1);
    assert_int_equal(gpu_visible_parse("gpu0", e, GPU_VISIBLE_MAX), -1);
    assert_int_equal(gpu_visible_parse("-1", e, GPU_VISIBLE_MAX), -1);
    assert_int_equal(gpu_visible_parse("MIG-zz", e, GPU_VISIBLE_MAX), -1);
    assert_int_equal(gpu_visible_parse("0,1,2", e, 2), -1);
}

/* A MIG slice named in the visible devices: the slice's memory from its
 * NVML handle, no utilisation; a GPU in MIG mode without a UUID: the CUDA
 * runtime's memory, no utilisation either. */
static void test_mig_slices(void **state)
{
    (void)state;
    void *fake = dlopen(FAKE_NVML, RTLD_NOW);
    assert_non_null(fake);
    void (*set_mig)(int) = (void (*)(int))dlsym(fake, "fake_nvml_set_mig");
    assert_non_null(set_mig);
    const int devices[] = {0, 1};
    struct strbuf sb = {0};
    int slices =
        gpu_stats_render(&sb, devices, 2, FAKE_NVML, "MIG-5ee1c0de-1111-2222-3333-444455556666,1");
    assert_int_equal(slices, 1);
    char *text = strbuf_detach(&sb, &(size_t){0});
    assert_non_null(strstr(text, "inferd_gpu_memory_total_bytes{gpu=\"0\"} 21474836480\n"));
    assert_non_null(strstr(text, "inferd_gpu_memory_used_bytes{gpu=\"0\"} 3221225472\n"));
    assert_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"0\"}"));
    assert_non_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"1\"} 0.37\n"));
    free(text);

    set_mig(1); /* 86:00.0, ordinal 0, in MIG mode; no UUID given */
    struct strbuf sb2 = {0};
    slices = gpu_stats_render(&sb2, devices, 2, FAKE_NVML, NULL);
    assert_int_equal(slices, 1);
    text = strbuf_detach(&sb2, &(size_t){0});
    assert_non_null(strstr(text, "inferd_gpu_memory_total_bytes{gpu=\"0\"} 17179869184\n"));
    assert_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"0\"}"));
    assert_non_null(strstr(text, "inferd_gpu_utilization_ratio{gpu=\"1\"} 0.37\n"));
    free(text);
    set_mig(0);
    dlclose(fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_and_utilization_by_bus_id),
        cmocka_unit_test(test_families_pass_promtool),
        cmocka_unit_test(test_without_nvml_memory_only),
        cmocka_unit_test(test_nvml_without_a_match_writes_no_family),
        cmocka_unit_test(test_cpu_only_writes_nothing),
        cmocka_unit_test(test_visible_devices_parse),
        cmocka_unit_test(test_mig_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
