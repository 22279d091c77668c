/* batcher.c - bounded per-model queue and dynamic batch forming (see
 * batcher.h). */
#include "batcher.h"

#include <string.h>

#include "clock.h"

int batch_queue_init(struct batch_queue *q, int capacity, int max_batch_size, long max_delay_us)
{
    memset(q, 0, sizeof *q);
    q->capacity = capacity;
    q->max_batch_size = max_batch_size;
    q->max_delay_ns = (uint64_t)max_delay_us * 1000u;
    if (clock_cond_init(&q->changed) != 0)
        return -1;
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        pthread_cond_destroy(&q->changed);
        return -1;
    }
    return 0;
}

void batch_queue_set_adaptive(struct batch_queue *q, bool adaptive)
{
    pthread_mutex_lock(&q->lock);
    q->adaptive = adaptive;
    pthread_mutex_unlock(&q->lock);
}

void batch_rate_arrival(struct batch_rate *r, uint64_t arrival_ns, uint64_t max_delay_ns)
{
    uint64_t cap = max_delay_ns * BATCH_RATE_GAP_CAP;
    uint64_t gap = cap;
    if (r->last_arrival_ns != 0)
        gap = arrival_ns > r->last_arrival_ns ? arrival_ns - r->last_arrival_ns : 0;
    if (gap > cap)
        gap = cap;
    /* A quarter of the newest gap: the estimate follows a change of load
     * within a few arrivals. The first arrival starts it at the cap. */
    r->gap_ns = r->last_arrival_ns == 0 ? gap : r->gap_ns - r->gap_ns / 4 + gap / 4;
    if (arrival_ns > r->last_arrival_ns)
        r->last_arrival_ns = arrival_ns;
}

uint64_t batch_wait_until(const struct batch_rate *r, bool adaptive, uint64_t max_delay_ns,
                          uint64_t oldest_ns, uint64_t now_ns)
{
    uint64_t due = oldest_ns + max_delay_ns;
    if (now_ns >= due)
        return 0;
    if (adaptive) {
        /* The next arrival is expected one average gap after the newer of
         * the last arrival and now. */
        uint64_t from = r->last_arrival_ns > now_ns ? r->last_arrival_ns : now_ns;
        if (from + r->gap_ns > due)
            return 0;
    }
    return due;
}

bool batch_rate_skip_wait(struct batch_rate *r)
{
    if (r->fruitless < BATCH_FRUITLESS_MAX)
        return false;
    if (++r->skipped >= BATCH_PROBE_EVERY) {
        r->skipped = 0;
        return false; /* a probe */
    }
    return true;
}

void batch_rate_waited(struct batch_rate *r, bool gathered)
{
    if (gathered) {
        r->fruitless = 0;
        r->skipped = 0;
    } else if (r->fruitless < BATCH_FRUITLESS_MAX) {
        r->fruitless++;
    }
}

void batch_queue_destroy(struct batch_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->changed);
}

int batch_queue_submit(struct batch_queue *q, struct infer_request *req)
{
    pthread_mutex_lock(&q->lock);
    int rc = SUBMIT_OK;
    if (q->closed) {
        rc = SUBMIT_CLOSED;
    } else if (q->length >= q->capacity) {
        rc = SUBMIT_FULL;
    } else {
        if (req->hooks != NULL && req->hooks->queued != NULL)
            req->hooks->queued(req);
        batch_rate_arrival(&q->rate, req->arrival_ns, q->max_delay_ns);
        req->next = NULL;
        if (q->tail)
            q->tail->next = req;
        else
            q->head = req;
        q->tail = req;
        q->length++;
    }
    pthread_mutex_unlock(&q->lock);
    /* Signalled after the unlock: a worker woken while the lock is still
     * held would only block on it again (two more context switches). */
    if (rc == SUBMIT_OK)
        pthread_cond_signal(&q->changed);
    return rc;
}

bool batch_compatible(const struct infer_request *a, const struct infer_request *b)
{
    if (a->n_inputs != b->n_inputs)
        return false;
    for (int i = 0; i < a->n_inputs; i++) {
        const struct tensor *x = &a->inputs[i], *y = &b->inputs[i];
        if (x->dtype != y->dtype || x->ndim != y->ndim ||
            memcmp(x->shape + 1, y->shape + 1, (size_t)(x->ndim - 1) * sizeof x->shape[0]) != 0)
            return false;
    }
    return true;
}

/* How many requests from the head form the next batch, and whether that
 * batch is complete (no later request could join it). Lock held. */
static int batch_prefix(const struct batch_queue *q, int max, int max_samples, bool *complete)
{
    if (q->max_batch_size == 0) {
        *complete = true;
        return 1;
    }
    int n = 0;
    int64_t samples = 0;
    const struct infer_request *r = q->head;
    while (r && n < max && samples + r->samples <= max_samples && batch_compatible(q->head, r)) {
        samples += r->samples;
        n++;
        r = r->next;
    }
    if (n == 0) { /* an oversized request (refused upstream): run it alone */
        *complete = true;
        return 1;
    }
    *complete = r != NULL || n == max || samples == max_samples;
    return n;
}

int batch_queue_take(struct batch_queue *q, struct infer_request **batch, int max)
{
    return batch_queue_take_upto(q, batch, max, 0);
}

int batch_queue_take_upto(struct batch_queue *q, struct infer_request **batch, int max,
                          int max_samples)
{
    if (max_samples <= 0 || max_samples > q->max_batch_size)
        max_samples = q->max_batch_size;
    pthread_mutex_lock(&q->lock);
    int n = 0;
    int before_wait = -1; /* the batch's requests when it first waited */
    for (;;) {
        while (q->head == NULL && !q->closed)
            pthread_cond_wait(&q->changed, &q->lock);
        if (q->head == NULL)
            break; /* closed and empty */
        bool complete;
        n = batch_prefix(q, max, max_samples, &complete);
        if (complete || q->closed)
            break;
        uint64_t due = batch_wait_until(&q->rate, q->adaptive, q->max_delay_ns, q->head->arrival_ns,
                                        clock_now_ns());
        if (due == 0)
            break;
        if (before_wait < 0) {
            if (q->adaptive && batch_rate_skip_wait(&q->rate))
                break;
            before_wait = n;
        }
        clock_cond_wait_until(&q->changed, &q->lock, due);
        n = 0; /* re-evaluate: another worker may have taken the head */
    }
    if (before_wait >= 0 && q->adaptive && n > 0)
        batch_rate_waited(&q->rate, n > before_wait);
    for (int i = 0; i < n; i++) {
        batch[i] = q->head;
        q->head = q->head->next;
        batch[i]->next = NULL;
    }
    if (q->head == NULL)
        q->tail = NULL;
    q->length -= n;
    bool more = q->head != NULL;
    pthread_mutex_unlock(&q->lock);
    if (more)
        pthread_cond_signal(&q->changed); /* more work for another worker */
    return n;
}

struct infer_request *
batch_queue_remove_if(struct batch_queue *q,
                      bool (*gone)(const struct infer_request *req, void *arg), void *arg)
{
    struct infer_request *removed = NULL, **removed_tail = &removed;
    struct infer_request *kept_last = NULL;
    pthread_mutex_lock(&q->lock);
    struct infer_request **link = &q->head;
    while (*link != NULL) {
        struct infer_request *r = *link;
        if (gone(r, arg)) {
            *link = r->next;
            r->next = NULL;
            *removed_tail = r;
            removed_tail = &r->next;
            q->length--;
        } else {
            kept_last = r;
            link = &r->next;
        }
    }
    q->tail = kept_last;
    pthread_mutex_unlock(&q->lock);
    return removed;
}

struct expiry {
    uint64_t now_ns;
    uint64_t next_ns; /* earliest deadline kept, 0: none */
};

static bool expired(const struct infer_request *req, void *arg)
{
    struct expiry *e = arg;
    if (req->deadline_ns == 0)
        return false;
    if (req->deadline_ns <= e->now_ns)
        return true;
    if (e->next_ns == 0 || req->deadline_ns < e->next_ns)
        e->next_ns = req->deadline_ns;
    return false;
}

struct infer_request *batch_queue_expire(struct batch_queue *q, uint64_t now_ns,
                                         uint64_t *next_deadline_ns)
{
    struct expiry e = {now_ns, 0};
    struct infer_request *removed = batch_queue_remove_if(q, expired, &e);
    *next_deadline_ns = e.next_ns;
    return removed;
}

void batch_queue_close(struct batch_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

struct infer_request *batch_queue_steal_all(struct batch_queue *q)
{
    pthread_mutex_lock(&q->lock);
    struct infer_request *all = q->head;
    q->head = q->tail = NULL;
    q->length = 0;
    pthread_mutex_unlock(&q->lock);
    return all;
}

int batch_queue_length(struct batch_queue *q)
{
    pthread_mutex_lock(&q->lock);
    int n = q->length;
    pthread_mutex_unlock(&q->lock);
    return n;
}
