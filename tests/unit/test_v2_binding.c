/* test_v2_binding.c - the wire-neutral v2 binding (v2_binding.h) alone:
 * inputs from raw bytes and from values, their checks (name, twice, size,
 * BOOL bytes, conversion, shape), requested outputs and classification,
 * the missing-input and batch-dim rules, and the reply's neutral outputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "v2_binding.h"

static const char *const TWO_IO =
    "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"b\",\"datatype\":\"INT64\",\"shape\":[-1,4]}],"
    "\"outputs\":[{\"name\":\"sum\",\"datatype\":\"FP32\",\"shape\":[-1,4]},"
    "{\"name\":\"prod_sum\",\"datatype\":\"FP32\",\"shape\":[-1,1]}],\"max_batch_size\":8}";

struct fixture {
    struct model_config cfg;
    struct v2_request v2;
    struct infer_request req;
    struct v2_binder b;
    char err[256];
};

static struct fixture *setup(void)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct inferd_config defaults;
    config_defaults(&defaults);
    assert_int_equal(model_config_parse(TWO_IO, "/nonexistent/m", "two_io", &defaults, &f->cfg,
                                        f->err, sizeof f->err),
                     0);
    v2_bind_begin(&f->b, &f->cfg, 1000, &f->v2, &f->req);
    return f;
}

static void teardown(struct fixture *f)
{
    for (int i = 0; i < MODEL_MAX_IO; i++) {
        tensor_free(&f->req.inputs[i]);
        tensor_free(&f->req.outputs[i]);
    }
    image_request_free(&f->v2.images);
    model_config_free(&f->cfg);
    free(f);
}

static void test_raw_inputs_bind_and_convert(void **state)
{
    (void)state;
    struct fixture *f = setup();
    const int64_t shape[] = {2, 4};
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t b32[8] = {1, -2, 3, -4, 5, -6, 7, -8}; /* INT32 sent for an INT64 input */
    int slot;
    assert_int_equal(v2_bind_input_slot(&f->b, "a", &slot, f->err, sizeof f->err), INFER_OK);
    assert_int_equal(slot, 0);
    assert_int_equal(
        v2_bind_raw(&f->b, 0, SHIM_FP32, shape, 2, a, sizeof a, true, f->err, sizeof f->err),
        INFER_OK);
    assert_true(f->req.inputs[0].borrowed && f->req.inputs[0].data == (void *)a);
    assert_int_equal(v2_bind_input_slot(&f->b, "a", &slot, f->err, sizeof f->err),
                     INFER_INVALID); /* twice */
    assert_non_null(strstr(f->err, "twice"));
    assert_int_equal(
        v2_bind_raw(&f->b, 1, SHIM_INT32, shape, 2, b32, sizeof b32, true, f->err, sizeof f->err),
        INFER_OK);
    assert_int_equal(f->req.inputs[1].dtype, SHIM_INT64);
    assert_int_equal(((int64_t *)f->req.inputs[1].data)[7], -8);
    assert_int_equal(v2_bind_end(&f->b, f->err, sizeof f->err), INFER_OK);
    teardown(f);
}

static void test_raw_inputs_refused(void **state)
{
    (void)state;
    struct fixture *f = setup();
    const int64_t shape[] = {2, 4}, wide[] = {2, 5}, huge[] = {INT64_C(1) << 40, INT64_C(1) << 40};
    float a[8] = {0};
    uint8_t bools[8] = {0, 1, 2, 0, 0, 0, 0, 0};
    int slot;
    assert_int_equal(v2_bind_input_slot(&f->b, "zz", &slot, f->err, sizeof f->err), INFER_INVALID);
    assert_int_equal(
        v2_bind_raw(&f->b, 0, SHIM_FP32, shape, 2, a, sizeof a - 4, true, f->err, sizeof f->err),
        INFER_INVALID); /* 28 bytes for 32 */
    assert_int_equal(
        v2_bind_raw(&f->b, 0, SHIM_FP32, huge, 2, a, sizeof a, true, f->err, sizeof f->err),
        INFER_INVALID);
    assert_non_null(strstr(f->err, "too large"));
    assert_int_equal(v2_bind_raw(&f->b, 0, SHIM_BOOL, shape, 2, bools, sizeof bools, true, f->err,
                                 sizeof f->err),
                     INFER_INVALID);
    assert_non_null(strstr(f->err, "BOOL"));
    float w[10] = {0};
    assert_int_equal(
        v2_bind_raw(&f->b, 0, SHIM_FP32, wide, 2, w, sizeof w, true, f->err, sizeof f->err),
        INFER_INVALID);
    assert_non_null(strstr(f->err, "the model takes"));
    teardown(f);
}

static void test_values_and_the_end_rules(void **state)
{
    (void)state;
    struct fixture *f = setup();
    const int64_t two[] = {2, 4}, three[] = {3, 4};
    struct tensor t;
    int64_t flat = 8;
    assert_int_equal(tensor_alloc(&t, SHIM_FP64, 1, &flat), 0);
    assert_int_equal(v2_bind_values(&f->b, 0, &t, 7, two, 2, f->err, sizeof f->err),
                     INFER_INVALID); /* 7 values for 8 */
    assert_int_equal(tensor_alloc(&t, SHIM_FP64, 1, &flat), 0);
    memset(t.data, 0, t.nbytes);
    assert_int_equal(v2_bind_values(&f->b, 0, &t, 8, two, 2, f->err, sizeof f->err), INFER_OK);
    assert_int_equal(f->req.inputs[0].dtype, SHIM_FP32);
    assert_int_equal(v2_bind_end(&f->b, f->err, sizeof f->err), INFER_INVALID);
    assert_non_null(strstr(f->err, "missing input \"b\""));
    int64_t twelve = 12;
    assert_int_equal(tensor_alloc(&t, SHIM_INT64, 1, &twelve), 0);
    memset(t.data, 0, t.nbytes);
    assert_int_equal(v2_bind_values(&f->b, 1, &t, 12, three, 2, f->err, sizeof f->err), INFER_OK);
    assert_int_equal(v2_bind_end(&f->b, f->err, sizeof f->err), INFER_INVALID);
    assert_non_null(strstr(f->err, "batch size"));
    teardown(f);
}

static void test_outputs_and_classification(void **state)
{
    (void)state;
    struct fixture *f = setup();
    assert_int_equal(v2_bind_output(&f->b, "nope", true, 0, f->err, sizeof f->err), INFER_INVALID);
    assert_int_equal(
        v2_bind_output(&f->b, "sum", true, V2_CLASSIFICATION_MAX + 1, f->err, sizeof f->err),
        INFER_INVALID);
    assert_int_equal(v2_bind_output(&f->b, "sum", false, 2, f->err, sizeof f->err), INFER_OK);
    assert_int_equal(v2_bind_output(&f->b, "prod_sum", true, 0, f->err, sizeof f->err), INFER_OK);
    /* what a worker would give: sum [1,4], prod_sum [1,1] */
    const int64_t s4[] = {1, 4}, s1[] = {1, 1};
    assert_int_equal(tensor_alloc(&f->req.outputs[0], SHIM_FP32, 2, s4), 0);
    assert_int_equal(tensor_alloc(&f->req.outputs[1], SHIM_FP32, 2, s1), 0);
    float *sum = f->req.outputs[0].data;
    sum[0] = 0.5f, sum[1] = 3.0f, sum[2] = -1.0f, sum[3] = 2.0f;
    strcpy(f->req.output_names[0], "sum");
    strcpy(f->req.output_names[1], "prod_sum");
    f->req.n_outputs = 2;
    struct v2_output out[MODEL_MAX_IO];
    int n = 0;
    assert_int_equal(v2_outputs(&f->v2, &f->cfg, &f->req, out, &n, f->err, sizeof f->err),
                     INFER_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].datatype, "BYTES");
    assert_int_equal(out[0].ndim, 2);
    assert_int_equal(out[0].shape[0], 1);
    assert_int_equal(out[0].shape[1], 2);
    assert_int_equal(out[0].n_strings, 2);
    const char *first = out[0].strings.data;
    assert_int_equal((unsigned char)first[0], strlen("3.000000:1"));
    assert_memory_equal(first + 4, "3.000000:1", strlen("3.000000:1"));
    assert_true(out[1].tensor == &f->req.outputs[1] && out[1].binary);
    v2_outputs_free(out, n);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_inputs_bind_and_convert),
        cmocka_unit_test(test_raw_inputs_refused),
        cmocka_unit_test(test_values_and_the_end_rules),
        cmocka_unit_test(test_outputs_and_classification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
