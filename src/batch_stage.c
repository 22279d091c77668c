/* batch_stage.c - the stage thread before an instance's forward: take,
 * decode, copy, pad, hand over (see batch_stage.h). */
#include "batch_stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "clock.h"
#include "shape.h"

/* Bytes of one row (dim 0 index) of t, from the checked helper; 0 for a
 * tensor without a batch dim. Returns 0 or -1 (too large). */
static int row_bytes(const struct tensor *t, size_t *out)
{
    *out = 0;
    if (t->ndim < 1)
        return 0;
    return shape_size(t->shape + 1, t->ndim - 1, dtype_size(t->dtype), NULL, out);
}

/* Make slot's buffer for input i hold at least need bytes (pinned on a
 * GPU). Returns 0 or -1. */
static int reserve(struct batch_stage *s, struct stage_slot *slot, int i, size_t need)
{
    if (slot->buf[i] != NULL && slot->cap[i] >= need)
        return 0;
    shim_host_free(slot->buf[i], s->device);
    slot->buf[i] = NULL;
    slot->cap[i] = 0;
    if (shim_host_alloc(need ? need : 1, s->device, &slot->buf[i]) != 0)
        return -1;
    slot->cap[i] = need;
    return 0;
}

static int64_t padded(const struct batch_stage *s, int64_t rows)
{
    if (s->pad == NULL || s->max_batch_size == 0 || rows > INT32_MAX)
        return rows;
    return batch_profile_pad_to(s->pad, (int)rows);
}

/* Room in every input's buffer for the n requests, padded. Returns 0 or
 * -1. */
static int reserve_all(struct batch_stage *s, struct stage_slot *slot, struct infer_request **reqs,
                       int n, int64_t rows)
{
    for (int i = 0; i < reqs[0]->n_inputs; i++) {
        size_t row, pad_bytes = 0, need = batch_input_bytes(reqs, n, i);
        int64_t extra = padded(s, rows) - rows;
        if (row_bytes(&reqs[0]->inputs[i], &row) != 0 ||
            __builtin_mul_overflow(row, (size_t)extra, &pad_bytes) ||
            __builtin_add_overflow(need, pad_bytes, &need) || reserve(s, slot, i, need) != 0)
            return -1;
    }
    return 0;
}

/* Point req's pending inputs into the buffers at off, run its prepare hook
 * (the images decode there), and copy its other inputs in. Returns
 * INFER_OK, or the hook's status (req->error set; its pending inputs are
 * pending again). */
static enum infer_status stage_request(struct batch_stage *s, struct stage_slot *slot,
                                       struct infer_request *req, const size_t *off)
{
    bool into[MODEL_MAX_IO] = {false};
    for (int i = 0; i < req->n_inputs; i++) {
        if (tensor_pending(&req->inputs[i])) {
            req->inputs[i].data = (char *)slot->buf[i] + off[i];
            into[i] = true;
        }
    }
    enum infer_status status = req->prepare ? req->prepare(req, req->prepare_arg) : INFER_OK;
    if (status != INFER_OK) {
        for (int i = 0; i < req->n_inputs; i++)
            if (into[i])
                req->inputs[i].data = NULL;
        return status;
    }
    for (int i = 0; i < req->n_inputs; i++) {
        const struct tensor *t = &req->inputs[i];
        if (into[i]) {
            atomic_fetch_add(&s->bytes_decoded, t->nbytes);
        } else if ((const char *)t->data != (const char *)slot->buf[i] + off[i]) {
            memcpy((char *)slot->buf[i] + off[i], t->data, t->nbytes); /* one run per request */
            atomic_fetch_add(&s->bytes_copied, t->nbytes);
        }
    }
    return INFER_OK;
}

/* Describe the staged inputs (the first request's dtypes and dims, dim 0
 * padded_rows when batching) and zero the padding rows. */
static void finish_views(struct batch_stage *s, struct stage_slot *slot, const size_t *off)
{
    const struct infer_request *first = slot->reqs[0];
    int64_t extra = slot->padded_rows - slot->rows;
    for (int i = 0; i < slot->n_inputs; i++) {
        size_t row = 0;
        (void)row_bytes(&first->inputs[i], &row); /* checked by reserve_all */
        size_t pad_bytes = row * (size_t)extra;
        memset((char *)slot->buf[i] + off[i], 0, pad_bytes);
        slot->views[i] = tensor_view(&first->inputs[i]);
        if (s->max_batch_size > 0)
            slot->views[i].shape[0] = slot->padded_rows;
        slot->views[i].data = slot->buf[i];
        slot->views[i].nbytes = off[i] + pad_bytes;
    }
    if (extra > 0)
        atomic_fetch_add(&s->padded_rows, (uint64_t)extra);
}

int batch_stage_fill(struct batch_stage *s, struct stage_slot *slot, struct infer_request **reqs,
                     int n, uint64_t taken_ns)
{
    int live = 0;
    int64_t rows = 0;
    for (int r = 0; r < n; r++) {
        struct infer_request *req = reqs[r];
        if (req->deadline_ns && taken_ns > req->deadline_ns) {
            atomic_fetch_sub(&s->waiting, 1);
            infer_request_finish(req, INFER_DEADLINE, INFER_DEADLINE_PASSED);
            continue;
        }
        req->queue_ns = taken_ns > req->arrival_ns ? taken_ns - req->arrival_ns : 0;
        rows += req->samples;
        reqs[live++] = req;
    }
    slot->n = 0;
    slot->taken_ns = taken_ns;
    if (live == 0)
        return 0;
    slot->n_inputs = reqs[0]->n_inputs;
    /* One request on the CPU: its tensors go in as they are. On a GPU they
     * always pass through the pinned buffers. */
    if (live == 1 && s->device == SHIM_DEVICE_CPU && reqs[0]->prepare == NULL &&
        padded(s, rows) == rows) {
        slot->reqs[0] = reqs[0];
        slot->n = 1;
        slot->rows = slot->padded_rows = rows;
        slot->whole = true;
        for (int i = 0; i < slot->n_inputs; i++)
            slot->views[i] = tensor_view(&reqs[0]->inputs[i]);
        atomic_fetch_add(&s->requests, 1);
        slot->staged_ns = clock_now_ns();
        return 1;
    }
    if (reserve_all(s, slot, reqs, live, rows) != 0) {
        atomic_fetch_sub(&s->waiting, live);
        for (int r = 0; r < live; r++)
            infer_request_finish(reqs[r], INFER_INTERNAL, "out of memory forming a batch");
        return -1;
    }
    size_t off[MODEL_MAX_IO] = {0};
    slot->rows = 0;
    for (int r = 0; r < live; r++) {
        struct infer_request *req = reqs[r];
        enum infer_status status = stage_request(s, slot, req, off);
        if (status != INFER_OK) {
            char why[sizeof req->error];
            memcpy(why, req->error, sizeof why);
            atomic_fetch_sub(&s->waiting, 1);
            infer_request_finish(req, status, why);
            continue;
        }
        for (int i = 0; i < slot->n_inputs; i++)
            off[i] += req->inputs[i].nbytes;
        slot->rows += req->samples;
        slot->reqs[slot->n++] = req; /* slot->reqs may be reqs: n <= r */
    }
    if (slot->n == 0)
        return 0;
    slot->whole = false;
    slot->padded_rows = padded(s, slot->rows); /* <= the rows reserved for */
    finish_views(s, slot, off);
    atomic_fetch_add(&s->requests, (uint64_t)slot->n);
    slot->staged_ns = clock_now_ns();
    return slot->n;
}

/* Whether req must not run: its deadline passed, or its client left (the
 * transport's gone hook, as the queue watcher asks while it is queued). */
static enum infer_status still_wanted(const struct infer_request *req, uint64_t now_ns)
{
    if (req->deadline_ns && now_ns > req->deadline_ns)
        return INFER_DEADLINE;
    if (req->hooks != NULL && req->hooks->gone != NULL && req->hooks->gone(req))
        return INFER_CANCELLED;
    return INFER_OK;
}

int batch_stage_prune(struct batch_stage *s, struct stage_slot *slot, uint64_t now_ns)
{
    size_t off[MODEL_MAX_IO] = {0}, src[MODEL_MAX_IO] = {0};
    int kept = 0, n = slot->n;
    int64_t rows = 0;
    for (int r = 0; r < n; r++) {
        struct infer_request *req = slot->reqs[r];
        enum infer_status why = still_wanted(req, now_ns);
        for (int i = 0; i < slot->n_inputs && !slot->whole; i++) {
            const char *at = (const char *)slot->buf[i] + src[i];
            bool inside = req->inputs[i].data == at; /* decoded in place */
            if (why != INFER_OK) {
                if (inside)
                    req->inputs[i].data = NULL;
            } else if (off[i] != src[i]) { /* close the gap a dropped request left */
                memmove((char *)slot->buf[i] + off[i], at, req->inputs[i].nbytes);
                if (inside)
                    req->inputs[i].data = (char *)slot->buf[i] + off[i];
            }
            src[i] += req->inputs[i].nbytes;
            if (why == INFER_OK)
                off[i] += req->inputs[i].nbytes;
        }
        if (why != INFER_OK) {
            if (slot->state != STAGE_RUNNING) /* the instance has not counted it out */
                atomic_fetch_sub(&s->waiting, 1);
            infer_request_finish(req, why,
                                 why == INFER_DEADLINE
                                     ? INFER_DEADLINE_PASSED
                                     : "the client closed the connection while the request was "
                                       "queued");
            continue;
        }
        rows += req->samples;
        slot->reqs[kept++] = req;
    }
    slot->n = kept;
    if (kept < n && kept > 0 && !slot->whole) {
        slot->rows = rows;
        slot->padded_rows = padded(s, rows);
        finish_views(s, slot, off);
    }
    return kept;
}

/* How often a staged batch waiting for the instance is checked for
 * clients that left (deadlines are met on time). */
#define WATCH_NS 100000000ull

/* The stage's lock held: wait until the slot to fill next is free. While a
 * staged batch waits for the instance, end its requests as their deadlines
 * pass or their clients leave, as the queue watcher does for queued ones
 * (a batch emptied that way is filled again first). */
static void wait_for_free_slot(struct batch_stage *s)
{
    for (;;) {
        if (s->slots[s->fill_next].state == STAGE_FREE)
            return;
        struct stage_slot *waiting = &s->slots[s->use_next];
        if (waiting->state != STAGE_FULL) {
            pthread_cond_wait(&s->changed, &s->lock);
            continue;
        }
        uint64_t wake = clock_now_ns() + WATCH_NS;
        for (int r = 0; r < waiting->n; r++) {
            uint64_t d = waiting->reqs[r]->deadline_ns;
            if (d != 0 && d + 1 < wake)
                wake = d + 1; /* just past it */
        }
        clock_cond_wait_until(&s->changed, &s->lock, wake);
        if (waiting->state != STAGE_FULL || clock_now_ns() < wake)
            continue;                   /* taken, or woken early: look again */
        waiting->state = STAGE_FILLING; /* the instance waits meanwhile */
        pthread_mutex_unlock(&s->lock);
        int live = batch_stage_prune(s, waiting, clock_now_ns());
        pthread_mutex_lock(&s->lock);
        if (live > 0) {
            waiting->state = STAGE_FULL;
        } else {
            waiting->state = STAGE_FREE;
            s->fill_next = (int)(waiting - s->slots);
        }
        pthread_cond_broadcast(&s->changed);
    }
}

static void *stage_main(void *arg)
{
    struct batch_stage *s = arg;
    /* The thread inherits its instance's name, w<instance>-<model>: call it
     * s<instance>-<model>, so that top -H (and the tests that count an
     * instance's OpenMP threads by that name) tell the two apart. */
    char name[16];
    if (pthread_getname_np(pthread_self(), name, sizeof name) == 0 && name[0] == 'w') {
        name[0] = 's';
        pthread_setname_np(pthread_self(), name);
    }
    for (;;) {
        pthread_mutex_lock(&s->lock);
        wait_for_free_slot(s);
        struct stage_slot *slot = &s->slots[s->fill_next];
        slot->state = STAGE_FILLING;
        pthread_mutex_unlock(&s->lock);
        int live = 0;
        while (live <= 0) {
            int n = batch_queue_take_upto(s->queue, slot->reqs, s->batch_cap, s->limit);
            atomic_fetch_add(&s->waiting, n);
            if (n == 0) { /* closed and empty */
                pthread_mutex_lock(&s->lock);
                slot->state = STAGE_FREE;
                s->drained = true;
                pthread_cond_broadcast(&s->changed);
                pthread_mutex_unlock(&s->lock);
                return NULL;
            }
            live = batch_stage_fill(s, slot, slot->reqs, n, clock_now_ns());
        }
        pthread_mutex_lock(&s->lock);
        slot->state = STAGE_FULL;
        s->fill_next = (s->fill_next + 1) % BATCH_STAGE_SLOTS;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
    }
}

struct stage_slot *batch_stage_next(struct batch_stage *s)
{
    pthread_mutex_lock(&s->lock);
    struct stage_slot *slot = &s->slots[s->use_next];
    /* Slots fill and empty in turn: once the stage has drained, the next
     * slot is full or there is nothing left. */
    while (slot->state != STAGE_FULL && !s->drained)
        pthread_cond_wait(&s->changed, &s->lock);
    if (slot->state != STAGE_FULL) {
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    slot->state = STAGE_RUNNING;
    atomic_fetch_sub(&s->waiting, slot->n);
    s->use_next = (s->use_next + 1) % BATCH_STAGE_SLOTS;
    pthread_mutex_unlock(&s->lock);
    return slot;
}

void batch_stage_detach(struct stage_slot *slot)
{
    for (int r = 0; r < slot->n && !slot->whole; r++) {
        struct infer_request *req = slot->reqs[r];
        for (int i = 0; i < req->n_inputs && i < slot->n_inputs; i++) {
            uintptr_t p = (uintptr_t)req->inputs[i].data, b = (uintptr_t)slot->buf[i];
            if (req->inputs[i].memory != TENSOR_HEAP && p >= b && p < b + slot->cap[i])
                req->inputs[i].data = NULL;
        }
    }
}

void batch_stage_release(struct batch_stage *s, struct stage_slot *slot)
{
    pthread_mutex_lock(&s->lock);
    slot->n = 0;
    slot->state = STAGE_FREE;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

static void free_slots(struct batch_stage *s)
{
    for (int k = 0; k < BATCH_STAGE_SLOTS; k++) {
        struct stage_slot *slot = &s->slots[k];
        for (int i = 0; i < MODEL_MAX_IO; i++) {
            shim_host_free(slot->buf[i], s->device);
            slot->buf[i] = NULL;
            slot->cap[i] = 0;
        }
        free(slot->reqs);
        slot->reqs = NULL;
    }
}

int batch_stage_start(struct batch_stage *s, const size_t *sample_bytes, int n_inputs, char *err,
                      size_t err_len)
{
    s->fill_next = s->use_next = 0;
    s->drained = false;
    atomic_store(&s->requests, 0);
    atomic_store(&s->bytes_copied, 0);
    atomic_store(&s->bytes_decoded, 0);
    atomic_store(&s->padded_rows, 0);
    atomic_store(&s->waiting, 0);
    size_t rows = s->max_batch_size > 0 ? (size_t)s->max_batch_size : 1;
    for (int k = 0; k < BATCH_STAGE_SLOTS; k++) {
        struct stage_slot *slot = &s->slots[k];
        memset(slot, 0, sizeof *slot);
        slot->reqs = calloc((size_t)s->batch_cap, sizeof *slot->reqs);
        bool ok = slot->reqs != NULL;
        for (int i = 0; ok && i < n_inputs; i++) {
            size_t need;
            if (sample_bytes[i] > 0 && !__builtin_mul_overflow(sample_bytes[i], rows, &need))
                ok = reserve(s, slot, i, need) == 0;
        }
        if (!ok) {
            free_slots(s);
            snprintf(err, err_len, "out of memory for the batch buffers");
            return -1;
        }
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free_slots(s);
        snprintf(err, err_len, "cannot create the stage's lock");
        return -1;
    }
    if (clock_cond_init(&s->changed) != 0) {
        pthread_mutex_destroy(&s->lock);
        free_slots(s);
        snprintf(err, err_len, "cannot create the stage's condition");
        return -1;
    }
    if (pthread_create(&s->thread, NULL, stage_main, s) != 0) {
        pthread_cond_destroy(&s->changed);
        pthread_mutex_destroy(&s->lock);
        free_slots(s);
        snprintf(err, err_len, "cannot start the stage thread");
        return -1;
    }
    s->started = true;
    return 0;
}

void batch_stage_join(struct batch_stage *s)
{
    if (!s->started)
        return;
    pthread_join(s->thread, NULL);
    s->started = false;
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free_slots(s);
}
