/* test_batcher.c - batch_queue with real threads: capacity, close, the
 * dynamic batching rule (full batch now, else max_delay after the OLDEST
 * request's arrival), shape compatibility, the queued callback, and the
 * adaptive wait (its decisions on a fake clock, then in the queue). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batcher.h"
#include "test_support.h"

#define MS 1000000ull /* ns */

/* Slack for a loaded CI machine (and sanitizers): generous on purpose. */
#define SLACK_NS (400 * MS)

static void make_req(struct infer_request *r, int64_t samples, int64_t inner, enum shim_dtype dtype,
                     uint64_t arrival_ns)
{
    memset(r, 0, sizeof *r);
    r->n_inputs = 1;
    r->inputs[0].dtype = dtype;
    r->inputs[0].ndim = 2;
    r->inputs[0].shape[0] = samples;
    r->inputs[0].shape[1] = inner;
    r->samples = samples;
    r->arrival_ns = arrival_ns;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- a taker thread ---- */

struct taker {
    pthread_t thread;
    struct batch_queue *q;
    int max;
    int n;
    struct infer_request *batch[64];
    uint64_t started_ns, finished_ns;
    atomic_bool started;
};

static void *taker_main(void *arg)
{
    struct taker *t = arg;
    t->started_ns = clock_now_ns();
    atomic_store(&t->started, true);
    t->n = batch_queue_take(t->q, t->batch, t->max);
    t->finished_ns = clock_now_ns();
    return NULL;
}

static void taker_start(struct taker *t, struct batch_queue *q, int max)
{
    memset(t, 0, sizeof *t);
    t->q = q;
    t->max = max;
    assert_int_equal(pthread_create(&t->thread, NULL, taker_main, t), 0);
    while (!atomic_load(&t->started))
        sleep_ms(1);
    sleep_ms(30); /* let it block in take */
}

/* Join, failing (rather than hanging) when the taker is still blocked
 * after timeout_ms. */
static void taker_join(struct taker *t, unsigned timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = pthread_timedjoin_np(t->thread, NULL, &until);
    if (rc != 0) {
        batch_queue_close(t->q); /* unblock it before giving up */
        pthread_join(t->thread, NULL);
        fail_msg("batch_queue_take still blocked after %u ms", timeout_ms);
    }
}

/* ---- the queued callback ---- */

struct hook_probe {
    int calls;
    int lock_was_held;
    struct batch_queue *q;
};

static void hook(struct infer_request *req)
{
    struct hook_probe *p = req->owner;
    p->calls++;
    /* The hook runs under the queue lock. */
    if (pthread_mutex_trylock(&p->q->lock) == EBUSY)
        p->lock_was_held++;
    else
        pthread_mutex_unlock(&p->q->lock);
}

static const struct infer_hooks probe_hooks = {hook, NULL, NULL};

/* Submit r with the probe as its queued callback. */
static int submit_probed(struct batch_queue *q, struct infer_request *r, struct hook_probe *probe)
{
    r->hooks = &probe_hooks;
    r->owner = probe;
    return batch_queue_submit(q, r);
}

/* ---- tests ---- */

static void test_capacity(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 2, 8, 1000), 0);
    struct hook_probe probe = {.q = &q};
    struct infer_request r[3];
    for (int i = 0; i < 3; i++)
        make_req(&r[i], 1, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(submit_probed(&q, &r[0], &probe), SUBMIT_OK);
    assert_int_equal(submit_probed(&q, &r[1], &probe), SUBMIT_OK);
    assert_int_equal(batch_queue_length(&q), 2);
    assert_int_equal(submit_probed(&q, &r[2], &probe), SUBMIT_FULL);
    assert_int_equal(batch_queue_length(&q), 2);
    assert_int_equal(probe.calls, 2); /* not for the refused one */
    assert_int_equal(probe.lock_was_held, 2);

    /* Taking makes room again. */
    struct infer_request *batch[8];
    batch_queue_close(&q); /* no waiting: drain what is queued */
    assert_int_equal(batch_queue_take(&q, batch, 8), 2);
    assert_ptr_equal(batch[0], &r[0]);
    assert_ptr_equal(batch[1], &r[1]);
    assert_null(batch[0]->next);
    assert_null(batch[1]->next);
    assert_int_equal(batch_queue_length(&q), 0);
    batch_queue_destroy(&q);

    assert_int_equal(batch_queue_init(&q, 1, 8, 1000000), 0);
    r[0].hooks = r[1].hooks = NULL; /* no probe this time */
    assert_int_equal(batch_queue_submit(&q, &r[0]), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &r[1]), SUBMIT_FULL);
    assert_int_equal(batch_queue_length(&q), 1);
    batch_queue_destroy(&q);
}

static void test_closed(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 4, 8, 1000), 0);
    struct hook_probe probe = {.q = &q};
    struct infer_request r;
    make_req(&r, 1, 4, SHIM_FP32, clock_now_ns());
    batch_queue_close(&q);
    assert_int_equal(submit_probed(&q, &r, &probe), SUBMIT_CLOSED);
    assert_int_equal(probe.calls, 0);
    assert_int_equal(batch_queue_length(&q), 0);
    struct infer_request *batch[4];
    assert_int_equal(batch_queue_take(&q, batch, 4), 0);
    batch_queue_destroy(&q);

    /* Full and closed: closed wins, and still no hook. */
    assert_int_equal(batch_queue_init(&q, 1, 8, 1000), 0);
    struct infer_request r2;
    make_req(&r2, 1, 4, SHIM_FP32, clock_now_ns());
    r.hooks = NULL; /* no probe for the one that fills the queue */
    assert_int_equal(batch_queue_submit(&q, &r), SUBMIT_OK);
    batch_queue_close(&q);
    assert_int_equal(submit_probed(&q, &r2, &probe), SUBMIT_CLOSED);
    assert_int_equal(probe.calls, 0);
    assert_int_equal(batch_queue_take(&q, batch, 4), 1);
    assert_int_equal(batch_queue_take(&q, batch, 4), 0);
    batch_queue_destroy(&q);
}

/* A taker blocked with a long delay returns as soon as the queued samples
 * reach max_batch_size. */
static void test_full_batch_is_taken_at_once(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 4, 10 * 1000 * 1000), 0); /* 10 s */
    struct taker t;
    taker_start(&t, &q, 16);
    struct infer_request r[3];
    make_req(&r[0], 2, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &r[0]), SUBMIT_OK);
    sleep_ms(50);
    make_req(&r[1], 1, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &r[1]), SUBMIT_OK);
    sleep_ms(50);
    make_req(&r[2], 1, 4, SHIM_FP32, clock_now_ns());
    uint64_t filled = clock_now_ns();
    assert_int_equal(batch_queue_submit(&q, &r[2]), SUBMIT_OK);
    taker_join(&t, 5000);
    assert_int_equal(t.n, 3);
    assert_ptr_equal(t.batch[0], &r[0]);
    assert_ptr_equal(t.batch[1], &r[1]);
    assert_ptr_equal(t.batch[2], &r[2]);
    if (t.finished_ns - filled > SLACK_NS)
        fail_msg("full batch returned %.0f ms after it filled",
                 (double)(t.finished_ns - filled) / MS);
    assert_int_equal(batch_queue_length(&q), 0);

    /* Already full before take: no wait at all. */
    for (int i = 0; i < 2; i++) {
        make_req(&r[i], 2, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    struct infer_request *batch[16];
    uint64_t t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 16), 2);
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    batch_queue_destroy(&q);
}

/* A lone request waits max_delay (from its arrival), then goes alone. */
static void test_lone_request_waits_max_delay(void **state)
{
    (void)state;
    const uint64_t delay = 150 * MS;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, (long)(delay / 1000)), 0);
    struct infer_request r;
    uint64_t arrival = clock_now_ns();
    make_req(&r, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(batch_queue_submit(&q, &r), SUBMIT_OK);
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    uint64_t waited = clock_now_ns() - arrival;
    assert_ptr_equal(batch[0], &r);
    if (waited < delay || waited > delay + SLACK_NS)
        fail_msg("a lone request waited %.1f ms; max_delay is %.0f ms", (double)waited / MS,
                 (double)delay / MS);

    /* Same with the taker already blocked when it arrives. */
    struct taker t;
    taker_start(&t, &q, 8);
    arrival = clock_now_ns();
    make_req(&r, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(batch_queue_submit(&q, &r), SUBMIT_OK);
    taker_join(&t, 5000);
    assert_int_equal(t.n, 1);
    waited = t.finished_ns - arrival;
    if (waited < delay || waited > delay + SLACK_NS)
        fail_msg("a lone request waited %.1f ms; max_delay is %.0f ms", (double)waited / MS,
                 (double)delay / MS);

    /* A partial batch of several also goes after the delay. */
    struct infer_request rs[3];
    arrival = clock_now_ns();
    for (int i = 0; i < 3; i++) {
        make_req(&rs[i], 1, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &rs[i]), SUBMIT_OK);
    }
    assert_int_equal(batch_queue_take(&q, batch, 8), 3);
    waited = clock_now_ns() - arrival;
    assert_true(waited >= delay && waited <= delay + SLACK_NS);
    batch_queue_destroy(&q);
}

/* The delay runs from the OLDEST queued request's arrival_ns, not from when
 * take was called nor from the newest arrival. */
static void test_delay_counts_from_oldest_arrival(void **state)
{
    (void)state;
    const uint64_t delay = 1000 * MS;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, (long)(delay / 1000)), 0);
    struct infer_request *batch[8];

    /* Arrived two delays ago: due already. */
    struct infer_request r;
    make_req(&r, 1, 4, SHIM_FP32, clock_now_ns() - 2 * delay);
    assert_int_equal(batch_queue_submit(&q, &r), SUBMIT_OK);
    uint64_t t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    uint64_t took = clock_now_ns() - t0;
    if (took > 200 * MS)
        fail_msg("overdue request took %.0f ms", (double)took / MS);

    /* Arrived 900 ms ago: due in about 100 ms, not in 1000. */
    uint64_t arrival = clock_now_ns() - 900 * MS;
    make_req(&r, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(batch_queue_submit(&q, &r), SUBMIT_OK);
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    uint64_t now = clock_now_ns();
    assert_true(now - arrival >= delay);
    if (now - t0 > 700 * MS)
        fail_msg("took %.0f ms for a request due in 100 ms", (double)(now - t0) / MS);

    /* An old request and a fresh one: the batch is due by the old one. */
    struct infer_request old, fresh;
    make_req(&old, 1, 4, SHIM_FP32, clock_now_ns() - 2 * delay);
    make_req(&fresh, 1, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &old), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &fresh), SUBMIT_OK);
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 2);
    assert_true(clock_now_ns() - t0 < 200 * MS);
    assert_ptr_equal(batch[0], &old);
    assert_ptr_equal(batch[1], &fresh);

    /* Newer arrivals do not push the deadline back: a taker blocked on a
     * partial batch returns max_delay after its OLDEST request even while
     * more requests keep arriving. */
    struct taker t;
    taker_start(&t, &q, 8);
    arrival = clock_now_ns();
    make_req(&old, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(batch_queue_submit(&q, &old), SUBMIT_OK);
    struct infer_request later[4];
    for (int i = 0; i < 4; i++) {
        sleep_ms(150);
        make_req(&later[i], 1, 4, SHIM_FP32, clock_now_ns());
        if (batch_queue_submit(&q, &later[i]) != SUBMIT_OK)
            fail_msg("submit %d failed", i);
    }
    taker_join(&t, 5000);
    uint64_t waited = t.finished_ns - arrival;
    if (waited < delay || waited > delay + SLACK_NS)
        fail_msg("batch went %.0f ms after its oldest request; max_delay is 1000 ms",
                 (double)waited / MS);
    assert_in_range(t.n, 1, 5);
    assert_ptr_equal(t.batch[0], &old);
    batch_queue_destroy(&q);
}

/* Requests whose inputs differ past dim 0 (or in dtype, rank, count) never
 * share a batch; the head's batch goes at once when the next cannot join. */
static void test_incompatible_requests_not_batched(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0); /* 10 s */
    struct infer_request a, b, c;
    make_req(&a, 1, 3, SHIM_FP32, clock_now_ns());
    make_req(&b, 1, 4, SHIM_FP32, clock_now_ns());
    make_req(&c, 1, 3, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &a), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &b), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &c), SUBMIT_OK);
    struct infer_request *batch[8];
    uint64_t t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &a);
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &b);
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    batch_queue_close(&q);
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &c);
    assert_int_equal(batch_queue_take(&q, batch, 8), 0);
    batch_queue_destroy(&q);

    /* batch_compatible directly. */
    make_req(&a, 2, 3, SHIM_FP32, 0);
    make_req(&b, 5, 3, SHIM_FP32, 0);
    assert_true(batch_compatible(&a, &b)); /* dim 0 may differ */
    make_req(&b, 2, 3, SHIM_FP64, 0);
    assert_false(batch_compatible(&a, &b));
    make_req(&b, 2, 3, SHIM_FP32, 0);
    b.inputs[0].ndim = 3;
    b.inputs[0].shape[2] = 1;
    assert_false(batch_compatible(&a, &b));
    make_req(&b, 2, 3, SHIM_FP32, 0);
    b.n_inputs = 2;
    b.inputs[1] = b.inputs[0];
    assert_false(batch_compatible(&a, &b));
    a.n_inputs = 2;
    a.inputs[1] = a.inputs[0];
    assert_true(batch_compatible(&a, &b));
    b.inputs[1].shape[1] = 7;
    assert_false(batch_compatible(&a, &b));
    /* A 1-D input: nothing past dim 0 to compare. */
    make_req(&a, 2, 0, SHIM_INT64, 0);
    a.inputs[0].ndim = 1;
    make_req(&b, 3, 0, SHIM_INT64, 0);
    b.inputs[0].ndim = 1;
    assert_true(batch_compatible(&a, &b));

    /* Different dtypes in the queue. */
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    make_req(&a, 1, 3, SHIM_FP32, clock_now_ns());
    make_req(&b, 1, 3, SHIM_FP16, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &a), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &b), SUBMIT_OK);
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &a);
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    batch_queue_close(&q);
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    batch_queue_destroy(&q);
}

/* A next request that would overflow max_batch_size ends the batch now. */
static void test_batch_limits(void **state)
{
    (void)state;
    struct batch_queue q;
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_init(&q, 16, 4, 10 * 1000 * 1000), 0);
    struct infer_request a, b, big;
    make_req(&a, 3, 4, SHIM_FP32, clock_now_ns());
    make_req(&b, 2, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &a), SUBMIT_OK);
    assert_int_equal(batch_queue_submit(&q, &b), SUBMIT_OK);
    uint64_t t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &a);
    assert_true(clock_now_ns() - t0 < SLACK_NS);

    /* An oversized request (refused upstream, normally) runs alone, now. */
    make_req(&big, 6, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &big), SUBMIT_OK);
    /* b (2 samples) is at the head; big cannot join it. */
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &b);
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &big);
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    batch_queue_destroy(&q);

    /* take_upto's sample limit: a batch of that many goes at once, a larger
     * request (within max_batch_size) runs alone. */
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    struct infer_request u[4];
    make_req(&u[0], 1, 4, SHIM_FP32, clock_now_ns());
    make_req(&u[1], 1, 4, SHIM_FP32, clock_now_ns());
    make_req(&u[2], 1, 4, SHIM_FP32, clock_now_ns());
    make_req(&u[3], 5, 4, SHIM_FP32, clock_now_ns());
    for (int k = 0; k < 4; k++)
        assert_int_equal(batch_queue_submit(&q, &u[k]), SUBMIT_OK);
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take_upto(&q, batch, 8, 2), 2);
    assert_ptr_equal(batch[0], &u[0]);
    assert_int_equal(batch_queue_take_upto(&q, batch, 8, 2), 1); /* u[3] cannot join u[2] */
    assert_ptr_equal(batch[0], &u[2]);
    assert_int_equal(batch_queue_take_upto(&q, batch, 8, 2), 1);
    assert_ptr_equal(batch[0], &u[3]);
    assert_true(clock_now_ns() - t0 < SLACK_NS); /* none of them waited */
    batch_queue_destroy(&q);

    /* take's max caps the number of requests, and a batch of max requests
     * goes at once. */
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    struct infer_request r[5];
    for (int i = 0; i < 5; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    t0 = clock_now_ns();
    assert_int_equal(batch_queue_take(&q, batch, 2), 2);
    assert_ptr_equal(batch[0], &r[0]);
    assert_ptr_equal(batch[1], &r[1]);
    assert_int_equal(batch_queue_take(&q, batch, 2), 2);
    assert_ptr_equal(batch[0], &r[2]);
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    assert_int_equal(batch_queue_length(&q), 1);
    batch_queue_close(&q);
    assert_int_equal(batch_queue_take(&q, batch, 2), 1);
    assert_ptr_equal(batch[0], &r[4]);
    batch_queue_destroy(&q);
}

/* max_batch_size 0: one request per take, at once, in order. */
static void test_no_batching(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 0, 10 * 1000 * 1000), 0);
    struct infer_request r[3];
    for (int i = 0; i < 3; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    struct infer_request *batch[8];
    uint64_t t0 = clock_now_ns();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(batch_queue_take(&q, batch, 8), 1);
        assert_ptr_equal(batch[0], &r[i]);
        assert_null(batch[0]->next);
    }
    assert_true(clock_now_ns() - t0 < SLACK_NS);
    assert_int_equal(batch_queue_length(&q), 0);

    /* And a blocked taker gets a lone request at once. */
    struct taker t;
    taker_start(&t, &q, 8);
    make_req(&r[0], 1, 4, SHIM_FP32, clock_now_ns());
    uint64_t submitted = clock_now_ns();
    assert_int_equal(batch_queue_submit(&q, &r[0]), SUBMIT_OK);
    taker_join(&t, 5000);
    assert_int_equal(t.n, 1);
    assert_true(t.finished_ns - submitted < SLACK_NS);
    batch_queue_destroy(&q);
}

static void test_close_wakes_taker(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    struct taker t1, t2;
    taker_start(&t1, &q, 8);
    taker_start(&t2, &q, 8);
    uint64_t closed = clock_now_ns();
    batch_queue_close(&q);
    taker_join(&t1, 5000);
    taker_join(&t2, 5000);
    assert_int_equal(t1.n, 0);
    assert_int_equal(t2.n, 0);
    assert_true(t1.finished_ns - closed < SLACK_NS);
    batch_queue_destroy(&q);

    /* Closing a queue with a partial batch waiting for its delay hands it
     * over at once; then take returns 0. */
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    struct infer_request r[2];
    for (int i = 0; i < 2; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    taker_start(&t1, &q, 8); /* blocked in the 10 s wait */
    closed = clock_now_ns();
    batch_queue_close(&q);
    taker_join(&t1, 5000);
    assert_int_equal(t1.n, 2);
    assert_true(t1.finished_ns - closed < SLACK_NS);
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_take(&q, batch, 8), 0);
    assert_int_equal(batch_queue_take(&q, batch, 8), 0);
    batch_queue_destroy(&q);
}

static void test_steal_all(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, 10 * 1000 * 1000), 0);
    assert_null(batch_queue_steal_all(&q));
    struct infer_request r[3];
    for (int i = 0; i < 3; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, clock_now_ns());
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    struct infer_request *all = batch_queue_steal_all(&q);
    assert_ptr_equal(all, &r[0]);
    assert_ptr_equal(all->next, &r[1]);
    assert_ptr_equal(all->next->next, &r[2]);
    assert_null(r[2].next);
    assert_int_equal(batch_queue_length(&q), 0);
    /* The queue still works afterwards. */
    make_req(&r[0], 1, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(batch_queue_submit(&q, &r[0]), SUBMIT_OK);
    batch_queue_close(&q);
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &r[0]);
    assert_int_equal(batch_queue_take(&q, batch, 8), 0);
    batch_queue_destroy(&q);
}

/* Expiry removes exactly the requests whose deadline has passed, from any
 * position, keeps the rest in order (and the tail right for later
 * appends), and reports the earliest deadline left. */
static void test_expire(void **state)
{
    (void)state;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, 0), 0);
    uint64_t next = 99;
    assert_null(batch_queue_expire(&q, 1000, &next));
    assert_int_equal(next, 0);
    /* deadlines: 100, none, 300, 50, 200, 400 (last one expires later) */
    const uint64_t deadlines[] = {100, 0, 300, 50, 200, 400};
    struct infer_request r[7];
    for (int i = 0; i < 6; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, 10);
        r[i].deadline_ns = deadlines[i];
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    struct infer_request *gone = batch_queue_expire(&q, 200, &next);
    assert_ptr_equal(gone, &r[0]);
    assert_ptr_equal(gone->next, &r[3]);
    assert_ptr_equal(gone->next->next, &r[4]);
    assert_null(r[4].next);
    assert_int_equal(next, 300);
    assert_int_equal(batch_queue_length(&q), 3);
    /* Nothing more expires before 300; the last one (a tail) goes at 400. */
    assert_null(batch_queue_expire(&q, 299, &next));
    gone = batch_queue_expire(&q, 400, &next);
    assert_ptr_equal(gone, &r[2]);
    assert_ptr_equal(gone->next, &r[5]);
    assert_null(gone->next->next);
    assert_int_equal(next, 0); /* r[1] has no deadline */
    /* The tail is r[1] now: an append lands after it. */
    make_req(&r[6], 1, 4, SHIM_FP32, 10);
    assert_int_equal(batch_queue_submit(&q, &r[6]), SUBMIT_OK);
    batch_queue_close(&q);
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_take(&q, batch, 8), 2);
    assert_ptr_equal(batch[0], &r[1]);
    assert_ptr_equal(batch[1], &r[6]);
    assert_int_equal(batch_queue_take(&q, batch, 8), 0);
    batch_queue_destroy(&q);

    /* Expiring everything leaves an empty queue that still takes appends. */
    assert_int_equal(batch_queue_init(&q, 16, 8, 0), 0);
    for (int i = 0; i < 2; i++) {
        make_req(&r[i], 1, 4, SHIM_FP32, 10);
        r[i].deadline_ns = 5;
        assert_int_equal(batch_queue_submit(&q, &r[i]), SUBMIT_OK);
    }
    gone = batch_queue_expire(&q, 5, &next);
    assert_ptr_equal(gone, &r[0]);
    assert_int_equal(batch_queue_length(&q), 0);
    make_req(&r[2], 1, 4, SHIM_FP32, 10);
    assert_int_equal(batch_queue_submit(&q, &r[2]), SUBMIT_OK);
    batch_queue_close(&q);
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_ptr_equal(batch[0], &r[2]);
    batch_queue_destroy(&q);
}

/* Producers and consumers at once: every request is taken exactly once,
 * no batch is over max_batch_size samples, and the queue never holds more
 * than its capacity. */
enum { PRODUCERS = 3, PER_PRODUCER = 300, CONSUMERS = 2 };

struct stress {
    struct batch_queue q;
    struct infer_request reqs[PRODUCERS][PER_PRODUCER];
    atomic_int taken[PRODUCERS * PER_PRODUCER];
    atomic_int full_refusals;
    atomic_int oversized_batches;
    atomic_int hook_calls;
    int producer_id[PRODUCERS];
};
static struct stress *stress;

static void stress_hook(struct infer_request *req)
{
    (void)req;
    atomic_fetch_add(&stress->hook_calls, 1);
}

static const struct infer_hooks stress_hooks = {stress_hook, NULL, NULL};

static void *producer(void *arg)
{
    int id = *(int *)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        struct infer_request *r = &stress->reqs[id][i];
        make_req(r, 1 + (i % 3), 2 + (i % 2), SHIM_FP32, clock_now_ns());
        r->owner = (void *)(intptr_t)(id * PER_PRODUCER + i);
        r->hooks = &stress_hooks;
        while (batch_queue_submit(&stress->q, r) == SUBMIT_FULL) {
            atomic_fetch_add(&stress->full_refusals, 1);
            sched_yield();
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    struct infer_request *batch[16];
    int n;
    while ((n = batch_queue_take(&stress->q, batch, 16)) > 0) {
        int64_t samples = 0;
        for (int i = 0; i < n; i++) {
            samples += batch[i]->samples;
            atomic_fetch_add(&stress->taken[(intptr_t)batch[i]->owner], 1);
            if (i > 0 && !batch_compatible(batch[0], batch[i]))
                atomic_fetch_add(&stress->oversized_batches, 1000);
        }
        if (samples > 8)
            atomic_fetch_add(&stress->oversized_batches, 1);
    }
    return NULL;
}

static void test_concurrent_producers_consumers(void **state)
{
    (void)state;
    stress = calloc(1, sizeof *stress);
    assert_non_null(stress);
    assert_int_equal(batch_queue_init(&stress->q, 32, 8, 200), 0);
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(pthread_create(&cons[i], NULL, consumer, NULL), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        stress->producer_id[i] = i;
        assert_int_equal(pthread_create(&prod[i], NULL, producer, &stress->producer_id[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    batch_queue_close(&stress->q);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(cons[i], NULL);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        if (atomic_load(&stress->taken[i]) != 1)
            fail_msg("request %d taken %d times", i, atomic_load(&stress->taken[i]));
    assert_int_equal(atomic_load(&stress->oversized_batches), 0);
    assert_int_equal(atomic_load(&stress->hook_calls), PRODUCERS * PER_PRODUCER);
    assert_int_equal(batch_queue_length(&stress->q), 0);
    batch_queue_destroy(&stress->q);
    free(stress);
    stress = NULL;
}

/* ---- the adaptive wait: decisions on a fake clock ---- */

#define US 1000ull /* ns */

/* Feed arrivals every gap_ns from t0 (n of them); returns the last. */
static uint64_t arrive_every(struct batch_rate *r, uint64_t t0, uint64_t gap_ns, int n,
                             uint64_t delay_ns)
{
    uint64_t t = t0;
    for (int i = 0; i < n; i++, t += gap_ns)
        batch_rate_arrival(r, t, delay_ns);
    return t - gap_ns;
}

static void test_rate_estimate(void **state)
{
    (void)state;
    const uint64_t d = 1000 * US, t0 = 5000000 * US;
    struct batch_rate r = {0};
    batch_rate_arrival(&r, t0, d);
    assert_int_equal(r.gap_ns, BATCH_RATE_GAP_CAP * d); /* first: as after a quiet spell */
    uint64_t last = arrive_every(&r, t0 + 100 * US, 100 * US, 30, d);
    assert_true(r.gap_ns >= 100 * US && r.gap_ns < 120 * US);
    assert_int_equal(r.last_arrival_ns, last);
    /* An arrival older than the newest (submitted out of order) is a gap
     * of 0 and does not move the newest back. */
    batch_rate_arrival(&r, last - 50 * US, d);
    assert_true(r.gap_ns < 100 * US);
    assert_int_equal(r.last_arrival_ns, last);
    /* A quiet second: one arrival brings the estimate above the delay. */
    batch_rate_arrival(&r, last + 1000000 * US, d);
    assert_true(r.gap_ns > d);
    /* and a few fast arrivals bring it back below. */
    arrive_every(&r, last + 1000000 * US + 50 * US, 50 * US, 12, d);
    assert_true(r.gap_ns < d / 4);
}

static void test_wait_decisions(void **state)
{
    (void)state;
    const uint64_t d = 500 * US, t0 = 7000000 * US;

    /* A lone request after a quiet spell: taken now when adaptive, held
     * for the delay when not. */
    struct batch_rate quiet = {0};
    batch_rate_arrival(&quiet, t0, d);
    assert_int_equal(batch_wait_until(&quiet, true, d, t0, t0 + 20 * US), 0);
    assert_int_equal(batch_wait_until(&quiet, false, d, t0, t0 + 20 * US), t0 + d);

    /* One client at a time, 1.2 ms apart (slower than the delay): never
     * held. */
    struct batch_rate serial = {0};
    uint64_t t = arrive_every(&serial, t0, 1200 * US, 50, d);
    assert_int_equal(batch_wait_until(&serial, true, d, t, t + 30 * US), 0);

    /* Busy: one arrival every 100 us. Incomplete batches wait as before,
     * until oldest + delay, and no longer. */
    struct batch_rate busy = {0};
    t = arrive_every(&busy, t0, 100 * US, 50, d);
    assert_int_equal(batch_wait_until(&busy, true, d, t, t + 10 * US), t + d);
    assert_int_equal(batch_wait_until(&busy, true, d, t - 300 * US, t + 10 * US), t + 200 * US);
    assert_int_equal(batch_wait_until(&busy, true, d, t, t + d), 0);
    assert_int_equal(batch_wait_until(&busy, false, d, t, t + d), 0);

    /* Little of the delay left: wait only when the next arrival is
     * expected within it. The oldest came 400 us ago, 100 us remain. */
    struct batch_rate mid = {0};
    t = arrive_every(&mid, t0, 150 * US, 60, d); /* gap ~150 us > 100 us left */
    assert_int_equal(batch_wait_until(&mid, true, d, t - 400 * US, t), 0);
    assert_int_equal(batch_wait_until(&mid, false, d, t - 400 * US, t), t + 100 * US);
    t = arrive_every(&busy, t + 80 * US, 80 * US, 60, d); /* gap ~80 us < 100 us */
    assert_int_equal(batch_wait_until(&busy, true, d, t - 400 * US, t), t + 100 * US);

    /* No delay configured: never wait, whatever the rate. */
    assert_int_equal(batch_wait_until(&busy, true, 0, t, t), 0);
    assert_int_equal(batch_wait_until(&busy, false, 0, t, t), 0);
}

/* ---- the adaptive wait in the queue, real threads ---- */

static int submit(struct batch_queue *q, struct infer_request *r)
{
    r->hooks = NULL;
    return batch_queue_submit(q, r);
}

static void test_adaptive_lone_request_is_not_held(void **state)
{
    (void)state;
    const uint64_t delay = 1000 * MS;
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 16, 8, (long)(delay / 1000)), 0);
    batch_queue_set_adaptive(&q, true);
    struct taker t;
    taker_start(&t, &q, 8);
    struct infer_request r;
    uint64_t arrival = clock_now_ns();
    make_req(&r, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(submit(&q, &r), SUBMIT_OK);
    taker_join(&t, 5000);
    assert_int_equal(t.n, 1);
    uint64_t waited = t.finished_ns - arrival;
    if (waited >= SLACK_NS)
        fail_msg("a lone request on an idle queue was held %llu ms (delay %llu ms)",
                 (unsigned long long)(waited / MS), (unsigned long long)(delay / MS));
    /* The same queue with the adaptive wait off holds it for the delay. */
    batch_queue_set_adaptive(&q, false);
    arrival = clock_now_ns();
    make_req(&r, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(submit(&q, &r), SUBMIT_OK);
    struct infer_request *batch[8];
    assert_int_equal(batch_queue_take(&q, batch, 8), 1);
    assert_true(clock_now_ns() - arrival >= delay);
    batch_queue_destroy(&q);
}

static void test_adaptive_waits_under_load(void **state)
{
    (void)state;
    const uint64_t delay = 300 * MS;
    enum { PRIME = 30 };
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 64, PRIME, (long)(delay / 1000)), 0);
    batch_queue_set_adaptive(&q, true);
    /* A busy spell: 30 arrivals 1 ms apart, a full batch taken at once. */
    struct infer_request prime[PRIME];
    uint64_t base = clock_now_ns() - PRIME * MS;
    for (int i = 0; i < PRIME; i++) {
        make_req(&prime[i], 1, 4, SHIM_FP32, base + (uint64_t)i * MS);
        assert_int_equal(submit(&q, &prime[i]), SUBMIT_OK);
    }
    struct infer_request *batch[PRIME];
    assert_int_equal(batch_queue_take(&q, batch, PRIME), PRIME);
    /* Now a request while arrivals are frequent: it waits for a companion,
     * which joins it 50 ms later, and both leave at the first's deadline. */
    struct taker t;
    taker_start(&t, &q, PRIME);
    struct infer_request a, b;
    uint64_t arrival = clock_now_ns();
    make_req(&a, 1, 4, SHIM_FP32, arrival);
    assert_int_equal(submit(&q, &a), SUBMIT_OK);
    sleep_ms(50);
    make_req(&b, 1, 4, SHIM_FP32, clock_now_ns());
    assert_int_equal(submit(&q, &b), SUBMIT_OK);
    taker_join(&t, 5000);
    assert_int_equal(t.n, 2);
    assert_ptr_equal(t.batch[0], &a);
    assert_ptr_equal(t.batch[1], &b);
    uint64_t waited = t.finished_ns - arrival;
    assert_true(waited >= delay);
    assert_true(waited < delay + SLACK_NS);
    batch_queue_destroy(&q);
}

static void test_fruitless_waits_stop_then_probe(void **state)
{
    (void)state;
    struct batch_rate r = {0};
    for (int i = 0; i < BATCH_FRUITLESS_MAX; i++) {
        assert_false(batch_rate_skip_wait(&r));
        batch_rate_waited(&r, false);
    }
    /* Waits stop, but for one probe in every BATCH_PROBE_EVERY decisions. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < BATCH_PROBE_EVERY - 1; i++)
            assert_true(batch_rate_skip_wait(&r));
        assert_false(batch_rate_skip_wait(&r)); /* the probe: gathers nobody */
        batch_rate_waited(&r, false);
    }
    for (int i = 0; i < BATCH_PROBE_EVERY - 1; i++)
        assert_true(batch_rate_skip_wait(&r));
    assert_false(batch_rate_skip_wait(&r)); /* this probe gathers a companion */
    batch_rate_waited(&r, true);
    assert_false(batch_rate_skip_wait(&r)); /* waiting again */
    batch_rate_waited(&r, true);
    assert_false(batch_rate_skip_wait(&r));
}

/* One client that sends its next request only after each answer, faster
 * than the delay: its first waits gather nobody, then it is no longer held. */
static void test_adaptive_closed_loop_stops_waiting(void **state)
{
    (void)state;
    const uint64_t delay = 200 * MS;
    enum { PRIME = 30 };
    struct batch_queue q;
    assert_int_equal(batch_queue_init(&q, 64, PRIME, (long)(delay / 1000)), 0);
    batch_queue_set_adaptive(&q, true);
    struct infer_request prime[PRIME]; /* a busy spell: the estimate expects companions */
    uint64_t base = clock_now_ns() - PRIME * MS;
    for (int i = 0; i < PRIME; i++) {
        make_req(&prime[i], 1, 4, SHIM_FP32, base + (uint64_t)i * MS);
        assert_int_equal(submit(&q, &prime[i]), SUBMIT_OK);
    }
    struct infer_request *batch[PRIME];
    assert_int_equal(batch_queue_take(&q, batch, PRIME), PRIME);
    struct infer_request r;
    for (int i = 0; i < BATCH_FRUITLESS_MAX + 2; i++) {
        uint64_t arrival = clock_now_ns();
        make_req(&r, 1, 4, SHIM_FP32, arrival);
        assert_int_equal(submit(&q, &r), SUBMIT_OK);
        assert_int_equal(batch_queue_take(&q, batch, PRIME), 1);
        uint64_t held = clock_now_ns() - arrival;
        if (i < BATCH_FRUITLESS_MAX && held < delay)
            fail_msg("request %d was held %llu ms, not the delay", i,
                     (unsigned long long)(held / MS));
        if (i >= BATCH_FRUITLESS_MAX && held >= SLACK_NS)
            fail_msg("request %d was held %llu ms after %d fruitless waits", i,
                     (unsigned long long)(held / MS), BATCH_FRUITLESS_MAX);
    }
    batch_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_full_batch_is_taken_at_once),
        cmocka_unit_test(test_lone_request_waits_max_delay),
        cmocka_unit_test(test_delay_counts_from_oldest_arrival),
        cmocka_unit_test(test_incompatible_requests_not_batched),
        cmocka_unit_test(test_batch_limits),
        cmocka_unit_test(test_no_batching),
        cmocka_unit_test(test_close_wakes_taker),
        cmocka_unit_test(test_steal_all),
        cmocka_unit_test(test_expire),
        cmocka_unit_test(test_concurrent_producers_consumers),
        cmocka_unit_test(test_rate_estimate),
        cmocka_unit_test(test_wait_decisions),
        cmocka_unit_test(test_adaptive_lone_request_is_not_held),
        cmocka_unit_test(test_adaptive_waits_under_load),
        cmocka_unit_test(test_fruitless_waits_stop_then_probe),
        cmocka_unit_test(test_adaptive_closed_loop_stops_waiting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
