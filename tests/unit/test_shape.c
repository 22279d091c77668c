/* test_shape.c - the checked size helper (shape_size, shape_numel) and
 * infer_request_check: overflow of the count and of the bytes, negative
 * dims, empty inputs, batch bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "infer_request.h"
#include "shape.h"

static void test_sizes(void **state)
{
    (void)state;
    int64_t n;
    size_t bytes;
    const int64_t img[] = {2, 1, 28, 28};
    assert_int_equal(shape_size(img, 4, 4, &n, &bytes), 0);
    assert_int_equal(n, 2 * 28 * 28);
    assert_int_equal(bytes, 2 * 28 * 28 * 4);
    assert_int_equal(shape_size(img, 0, 4, &n, &bytes), 0); /* a scalar */
    assert_int_equal(n, 1);
    assert_int_equal(bytes, 4);
    const int64_t empty[] = {0, 1, 28, 28};
    assert_int_equal(shape_size(empty, 4, 4, &n, &bytes), 0);
    assert_int_equal(n, 0);
    assert_int_equal(bytes, 0);
}

static void test_overflow(void **state)
{
    (void)state;
    size_t bytes = 123;
    /* 2^62 elements fit int64_t; 2^64 bytes wrap size_t to 0. */
    const int64_t wrap_bytes[] = {1, 1, INT64_C(2147483648), INT64_C(2147483648)};
    assert_int_equal(shape_numel(wrap_bytes, 4), INT64_C(1) << 62);
    assert_int_equal(shape_size(wrap_bytes, 4, 4, NULL, &bytes), -1);
    assert_int_equal(bytes, 123); /* untouched on failure */
    /* 2^64 elements wrap the count to 0. */
    const int64_t wrap_count[] = {INT64_C(4294967296), INT64_C(4294967296)};
    assert_int_equal(shape_numel(wrap_count, 2), -1);
    assert_int_equal(shape_size(wrap_count, 2, 1, NULL, NULL), -1);
    /* Just over INT64_MAX elements. */
    const int64_t over[] = {2, INT64_C(3037000500), INT64_C(3037000500)};
    assert_int_equal(shape_numel(over, 3), -1);
    /* A zero dim makes any other dim harmless. */
    const int64_t zero[] = {INT64_MAX, 0, INT64_MAX};
    assert_int_equal(shape_numel(zero, 3), 0);
    const int64_t negative[] = {1, -1};
    assert_int_equal(shape_numel(negative, 2), -1);
    assert_int_equal(shape_size(negative, -1, 1, NULL, NULL), -1);
}

static struct infer_request *request(int n, const int64_t (*shapes)[4])
{
    static struct infer_request req;
    memset(&req, 0, sizeof req);
    req.n_inputs = n;
    for (int i = 0; i < n; i++) {
        req.inputs[i].ndim = 4;
        memcpy(req.inputs[i].shape, shapes[i], sizeof shapes[i]);
    }
    return &req;
}

static void test_check(void **state)
{
    (void)state;
    char err[256];
    const int64_t ok[][4] = {{3, 1, 28, 28}, {3, 2, 2, 2}};
    struct infer_request *req = request(2, ok);
    assert_int_equal(infer_request_check(req, 8, "m", err, sizeof err), 0);
    assert_int_equal(req->samples, 3);
    assert_int_equal(infer_request_check(req, 0, "m", err, sizeof err), 0);
    assert_int_equal(req->samples, 1);
    assert_int_equal(infer_request_check(req, 2, "m", err, sizeof err), -1);
    assert_non_null(strstr(err, "max_batch_size of 2"));

    const int64_t empty[][4] = {{0, 1, 28, 28}};
    assert_int_equal(infer_request_check(request(1, empty), 8, "m", err, sizeof err), -1);
    assert_non_null(strstr(err, "no elements"));
    const int64_t empty_inner[][4] = {{1, 1, 0, 5}};
    assert_int_equal(infer_request_check(request(1, empty_inner), 0, "m", err, sizeof err), -1);
    const int64_t huge[][4] = {{1, INT64_C(4294967296), INT64_C(4294967296), 1}};
    assert_int_equal(infer_request_check(request(1, huge), 8, "m", err, sizeof err), -1);
    const int64_t disagree[][4] = {{2, 1, 1, 1}, {3, 1, 1, 1}};
    assert_int_equal(infer_request_check(request(2, disagree), 8, "m", err, sizeof err), -1);
    assert_non_null(strstr(err, "dim 0"));
    assert_int_equal(infer_request_check(request(0, ok), 8, "m", err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
