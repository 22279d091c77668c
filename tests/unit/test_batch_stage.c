/* test_batch_stage.c - the stage before the forward, on the CPU: requests
 * concatenated into the pooled buffer (one run each, bytes counted), one
 * request passed through without a copy, images decoded straight into the
 * buffer, a failed decode or a passed deadline ending that request alone
 * with the rest kept contiguous, padding rows zeroed, and the thread:
 * batches no larger than the limit, handed over in order, until the queue
 * closes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_stage.h"
#include "clock.h"

/* The shim's host memory, without libtorch: plain malloc, as on a CPU. */
static int host_allocs;
int shim_host_alloc(size_t bytes, int device, void **out)
{
    (void)device;
    host_allocs++;
    *out = malloc(bytes);
    return *out ? 0 : -1;
}

void shim_host_free(void *ptr, int device)
{
    (void)device;
    free(ptr);
}

#define COLS 3
#define MAX_REQS 16

struct fake_req {
    struct infer_request req;
    int done;
    enum infer_status status;
    float seed;       /* first value of its rows */
    bool fail_decode; /* its prepare hook fails */
};

static void on_done(struct infer_request *req)
{
    struct fake_req *f = (struct fake_req *)req;
    f->done++;
    f->status = req->status;
}

static const struct infer_hooks hooks = {.done = on_done};

static void fill_rows(float *p, int64_t rows, float seed)
{
    for (int64_t k = 0; k < rows * COLS; k++)
        p[k] = seed + (float)k;
}

/* A tensor request of rows x COLS FP32 values seed, seed+1, ... */
static void make_tensor_req(struct fake_req *f, int64_t rows, float seed)
{
    memset(f, 0, sizeof *f);
    int64_t shape[2] = {rows, COLS};
    assert_int_equal(tensor_alloc(&f->req.inputs[0], SHIM_FP32, 2, shape), 0);
    fill_rows(f->req.inputs[0].data, rows, seed);
    f->req.n_inputs = 1;
    f->req.samples = rows;
    f->req.hooks = &hooks;
    f->req.arrival_ns = clock_now_ns();
    f->seed = seed;
}

/* A prepare hook standing in for image decoding: writes the rows into the
 * memory the input points to, or fails. */
static enum infer_status fake_decode(struct infer_request *req, void *arg)
{
    struct fake_req *f = arg;
    if (f->fail_decode) {
        snprintf(req->error, sizeof req->error, "corrupt image");
        return INFER_INVALID;
    }
    assert_non_null(req->inputs[0].data);
    fill_rows(req->inputs[0].data, req->samples, f->seed);
    return INFER_OK;
}

/* An image-like request: shape known, data deferred to the stage. */
static void make_image_req(struct fake_req *f, int64_t rows, float seed, bool fail)
{
    memset(f, 0, sizeof *f);
    int64_t shape[2] = {rows, COLS};
    assert_int_equal(tensor_defer(&f->req.inputs[0], SHIM_FP32, 2, shape), 0);
    assert_true(tensor_pending(&f->req.inputs[0]));
    f->req.n_inputs = 1;
    f->req.samples = rows;
    f->req.hooks = &hooks;
    f->req.prepare = fake_decode;
    f->req.prepare_arg = f;
    f->req.arrival_ns = clock_now_ns();
    f->seed = seed;
    f->fail_decode = fail;
}

static void free_req(struct fake_req *f)
{
    tensor_free(&f->req.inputs[0]);
}

static void stage_init(struct batch_stage *s, struct stage_slot *slot, int max_batch)
{
    memset(s, 0, sizeof *s);
    memset(slot, 0, sizeof *slot);
    s->device = SHIM_DEVICE_CPU;
    s->max_batch_size = max_batch;
    s->batch_cap = MAX_REQS;
    slot->reqs = calloc(MAX_REQS, sizeof *slot->reqs);
    assert_non_null(slot->reqs);
}

static void slot_free(struct stage_slot *slot)
{
    for (int i = 0; i < MODEL_MAX_IO; i++)
        free(slot->buf[i]);
    free(slot->reqs);
}

/* The staged rows of input 0 are the requests' rows in order. */
static void check_rows(const struct stage_slot *slot, struct fake_req **expect, int n)
{
    const float *p = slot->views[0].data;
    int64_t row = 0;
    for (int r = 0; r < n; r++) {
        assert_ptr_equal(slot->reqs[r], &expect[r]->req);
        for (int64_t k = 0; k < expect[r]->req.samples * COLS; k++)
            assert_true(p[row * COLS + k] == expect[r]->seed + (float)k);
        row += expect[r]->req.samples;
    }
    assert_int_equal(slot->rows, row);
}

static void test_concatenates_tensor_requests(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct fake_req a, b, c;
    make_tensor_req(&a, 1, 100);
    make_tensor_req(&b, 2, 200);
    make_tensor_req(&c, 1, 300);
    struct infer_request *reqs[] = {&a.req, &b.req, &c.req};
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 3, clock_now_ns()), 3);
    assert_false(slot.whole);
    assert_int_equal(slot.views[0].shape[0], 4);
    assert_int_equal(slot.views[0].shape[1], COLS);
    assert_int_equal(slot.padded_rows, 4);
    assert_int_equal(slot.views[0].nbytes, 4 * COLS * sizeof(float));
    struct fake_req *expect[] = {&a, &b, &c};
    check_rows(&slot, expect, 3);
    assert_int_equal(atomic_load(&s.bytes_copied), 4 * COLS * sizeof(float));
    assert_int_equal(atomic_load(&s.bytes_decoded), 0);
    assert_int_equal(a.done + b.done + c.done, 0); /* nobody finished yet */
    free_req(&a), free_req(&b), free_req(&c);
    slot_free(&slot);
}

static void test_one_request_is_not_copied(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct fake_req a;
    make_tensor_req(&a, 2, 1);
    struct infer_request *reqs[] = {&a.req};
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 1, clock_now_ns()), 1);
    assert_true(slot.whole);
    assert_ptr_equal(slot.views[0].data, a.req.inputs[0].data);
    assert_int_equal(atomic_load(&s.bytes_copied), 0);
    /* On a GPU the same request goes through the (pinned) buffer. */
    s.device = 0;
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 1, clock_now_ns()), 1);
    assert_false(slot.whole);
    assert_ptr_not_equal(slot.views[0].data, a.req.inputs[0].data);
    struct fake_req *expect[] = {&a};
    check_rows(&slot, expect, 1);
    free_req(&a);
    slot_free(&slot);
}

static void test_images_decode_into_the_buffer(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct fake_req a, b, c;
    make_image_req(&a, 2, 10, false);
    make_tensor_req(&b, 1, 20);
    make_image_req(&c, 3, 30, false);
    struct infer_request *reqs[] = {&a.req, &b.req, &c.req};
    int allocs = host_allocs;
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 3, clock_now_ns()), 3);
    assert_int_equal(host_allocs, allocs + 1); /* the buffer, once */
    struct fake_req *expect[] = {&a, &b, &c};
    check_rows(&slot, expect, 3);
    /* The images were written where they belong: no copy. */
    assert_ptr_equal(a.req.inputs[0].data, slot.buf[0]);
    assert_ptr_equal(c.req.inputs[0].data, (char *)slot.buf[0] + 3 * COLS * sizeof(float));
    assert_int_equal(atomic_load(&s.bytes_decoded), 5 * COLS * sizeof(float));
    assert_int_equal(atomic_load(&s.bytes_copied), 1 * COLS * sizeof(float));
    /* The same sizes again: the buffer is reused, nothing allocated. */
    make_image_req(&a, 2, 11, false);
    make_image_req(&c, 3, 31, false);
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 3, clock_now_ns()), 3);
    assert_int_equal(host_allocs, allocs + 1);
    check_rows(&slot, expect, 3);
    batch_stage_detach(&slot);
    assert_null(a.req.inputs[0].data);
    assert_null(c.req.inputs[0].data);
    assert_non_null(b.req.inputs[0].data); /* its own memory: untouched */
    free_req(&a), free_req(&b), free_req(&c);
    slot_free(&slot);
}

static void test_a_failed_decode_ends_that_request_alone(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct fake_req a, b, c, d;
    make_image_req(&a, 1, 10, false);
    make_image_req(&b, 2, 20, true);
    make_tensor_req(&c, 1, 30);
    make_tensor_req(&d, 1, 40);
    d.req.deadline_ns = 1; /* long past */
    struct infer_request *reqs[] = {&a.req, &b.req, &c.req, &d.req};
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 4, clock_now_ns()), 2);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.status, INFER_INVALID);
    assert_string_equal(b.req.error, "corrupt image");
    assert_null(b.req.inputs[0].data); /* points nowhere into the buffer */
    assert_int_equal(d.done, 1);
    assert_int_equal(d.status, INFER_DEADLINE);
    assert_int_equal(a.done + c.done, 0);
    struct fake_req *expect[] = {&a, &c};
    check_rows(&slot, expect, 2); /* contiguous: no hole where b was */
    assert_int_equal(slot.views[0].shape[0], 2);
    free_req(&a), free_req(&b), free_req(&c), free_req(&d);
    slot_free(&slot);
}

static void test_padding_rows_are_zero(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct batch_profile pad;
    int sizes[] = {1, 4, 8};
    batch_profile_fixed(&pad, sizes, 3);
    s.pad = &pad;
    /* First a full batch of non-zero rows, so the buffer holds old data. */
    struct fake_req full;
    make_tensor_req(&full, 8, 1);
    struct fake_req other;
    make_tensor_req(&other, 0 + 1, 5); /* needs two requests: not whole */
    full.req.samples = 7;
    full.req.inputs[0].shape[0] = 7;
    full.req.inputs[0].nbytes = 7 * COLS * sizeof(float);
    struct infer_request *first[] = {&full.req, &other.req};
    assert_int_equal(batch_stage_fill(&s, &slot, first, 2, clock_now_ns()), 2);
    assert_int_equal(slot.padded_rows, 8);
    /* Now three rows: padded to 4, the fourth all zeros. */
    struct fake_req a, b;
    make_tensor_req(&a, 2, 100);
    make_tensor_req(&b, 1, 200);
    struct infer_request *reqs[] = {&a.req, &b.req};
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 2, clock_now_ns()), 2);
    assert_int_equal(slot.rows, 3);
    assert_int_equal(slot.padded_rows, 4);
    assert_int_equal(slot.views[0].shape[0], 4);
    assert_int_equal(slot.views[0].nbytes, 4 * COLS * sizeof(float));
    struct fake_req *expect[] = {&a, &b};
    check_rows(&slot, expect, 2);
    const float *p = slot.views[0].data;
    for (int k = 3 * COLS; k < 4 * COLS; k++)
        assert_true(p[k] == 0.0f);
    assert_int_equal(atomic_load(&s.padded_rows), 1); /* 7+1 rows needed none */
    /* One request of one row on the CPU with padding to 1: still whole. */
    struct fake_req one;
    make_tensor_req(&one, 1, 7);
    struct infer_request *alone[] = {&one.req};
    assert_int_equal(batch_stage_fill(&s, &slot, alone, 1, clock_now_ns()), 1);
    assert_true(slot.whole);
    free_req(&full), free_req(&other), free_req(&a), free_req(&b), free_req(&one);
    slot_free(&slot);
}

static bool gone_flag(const struct infer_request *req)
{
    return ((const struct fake_req *)req)->fail_decode; /* reused: "its client left" */
}

static const struct infer_hooks gone_hooks = {.done = on_done, .gone = gone_flag};

static void test_prune_before_the_forward(void **state)
{
    (void)state;
    struct batch_stage s;
    struct stage_slot slot;
    stage_init(&s, &slot, 8);
    struct batch_profile pad;
    int sizes[] = {2, 8};
    batch_profile_fixed(&pad, sizes, 2);
    s.pad = &pad;
    struct fake_req a, b, c, d;
    make_image_req(&a, 2, 10, false);
    make_tensor_req(&b, 1, 20);
    make_image_req(&c, 1, 30, false);
    make_tensor_req(&d, 2, 40);
    struct infer_request *reqs[] = {&a.req, &b.req, &c.req, &d.req};
    assert_int_equal(batch_stage_fill(&s, &slot, reqs, 4, clock_now_ns()), 4);
    assert_int_equal(slot.padded_rows, 8);
    /* Nothing to drop: unchanged. */
    assert_int_equal(batch_stage_prune(&s, &slot, clock_now_ns()), 4);
    assert_int_equal(slot.rows, 6);
    /* a's deadline passes and b's client leaves while the batch waits. */
    a.req.deadline_ns = clock_now_ns();
    b.req.hooks = &gone_hooks;
    b.fail_decode = true;
    assert_int_equal(batch_stage_prune(&s, &slot, clock_now_ns() + 1), 2);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, INFER_DEADLINE);
    assert_null(a.req.inputs[0].data);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.status, INFER_CANCELLED);
    assert_int_equal(c.done + d.done, 0);
    struct fake_req *expect[] = {&c, &d};
    check_rows(&slot, expect, 2);                        /* moved to the front, contiguous */
    assert_ptr_equal(c.req.inputs[0].data, slot.buf[0]); /* still its rows */
    assert_int_equal(slot.padded_rows, 8);               /* 3 rows: padded to 8 */
    const float *p = slot.views[0].data;
    for (int k = 3 * COLS; k < 8 * COLS; k++)
        assert_true(p[k] == 0.0f);
    assert_int_equal(slot.views[0].shape[0], 8);
    /* Everyone gone: nothing left to run. */
    c.req.deadline_ns = d.req.deadline_ns = 1;
    assert_int_equal(batch_stage_prune(&s, &slot, clock_now_ns()), 0);
    assert_int_equal(c.done + d.done, 2);
    free_req(&a), free_req(&b), free_req(&c), free_req(&d);
    slot_free(&slot);
}

/* ---- the thread ---- */

static void test_thread_batches_up_to_the_limit(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 64, 8, 0), 0);
    struct fake_req reqs[10];
    for (int k = 0; k < 10; k++) {
        make_tensor_req(&reqs[k], 1, (float)(k * 10));
        assert_int_equal(batch_queue_submit(&q, &reqs[k].req), SUBMIT_OK);
    }
    struct batch_stage s;
    memset(&s, 0, sizeof s);
    s.queue = &q;
    s.device = SHIM_DEVICE_CPU;
    s.max_batch_size = 8;
    s.limit = 3;
    s.batch_cap = 8;
    size_t sample = COLS * sizeof(float);
    char err[128];
    assert_int_equal(batch_stage_start(&s, &sample, 1, err, sizeof err), 0);
    int seen = 0;
    while (seen < 10) {
        struct stage_slot *slot = batch_stage_next(&s);
        assert_non_null(slot);
        assert_true(slot->rows >= 1 && slot->rows <= 3);
        for (int r = 0; r < slot->n; r++) /* in queue order */
            assert_ptr_equal(slot->reqs[r], &reqs[seen + r].req);
        const float *p = slot->views[0].data;
        assert_true(p[0] == (float)(seen * 10));
        seen += slot->n;
        batch_stage_detach(slot);
        batch_stage_release(&s, slot);
    }
    batch_queue_close(&q);
    assert_null(batch_stage_next(&s));
    batch_stage_join(&s);
    assert_int_equal(atomic_load(&s.waiting), 0); /* every one handed over */
    for (int k = 0; k < 10; k++) {
        assert_int_equal(reqs[k].done, 0);
        free_req(&reqs[k]);
    }
    batch_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concatenates_tensor_requests),
        cmocka_unit_test(test_one_request_is_not_copied),
        cmocka_unit_test(test_images_decode_into_the_buffer),
        cmocka_unit_test(test_a_failed_decode_ends_that_request_alone),
        cmocka_unit_test(test_padding_rows_are_zero),
        cmocka_unit_test(test_prune_before_the_forward),
        cmocka_unit_test(test_thread_batches_up_to_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
