/* batcher.h - one bounded queue per model and the dynamic batching rule:
 * a worker takes the oldest requests whose samples fit max_batch_size, as
 * soon as the batch is full or max_queue_delay has passed since the OLDEST
 * queued request arrived. With the adaptive wait (the daemon's default), a
 * worker also takes an incomplete batch at once when the recent arrival
 * rate says no companion request is expected before that deadline: waiting
 * could then only add latency.
 *
 * Lock order: a queue's lock may be held while calling a request's queued
 * callback (which suspends an HTTP connection, taking libmicrohttpd's own
 * lock); nothing else is called with it held. */
#ifndef INFERD_BATCHER_H
#define INFERD_BATCHER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "infer_request.h"

/* The arrival-rate estimate behind the adaptive wait: a moving average of
 * the gaps between arrivals (each gap counted up to BATCH_RATE_GAP_CAP
 * delays, so that the first request after a quiet spell is not held and the
 * estimate recovers within a few arrivals). */
struct batch_rate {
    uint64_t last_arrival_ns; /* newest arrival seen, 0: none yet */
    uint64_t gap_ns;          /* average gap between arrivals */
    unsigned fruitless;       /* waits in a row that gathered no companion */
    unsigned skipped;         /* waits skipped for that since the last probe */
};

#define BATCH_RATE_GAP_CAP 4 /* in max_delay units */
/* After this many waits in a row that gathered nobody (a client that sends
 * its next request only after each answer looks busy but cannot send a
 * companion while its request waits), the queue stops waiting, but for one
 * probe in every BATCH_PROBE_EVERY batches, which notices a change of load;
 * a wait that gathers a companion starts the count again. */
#define BATCH_FRUITLESS_MAX 3
#define BATCH_PROBE_EVERY 16

/* Count an arrival at arrival_ns (any order; an earlier one counts as a
 * gap of 0). */
void batch_rate_arrival(struct batch_rate *r, uint64_t arrival_ns, uint64_t max_delay_ns);

/* The batching decision for an incomplete batch whose oldest request
 * arrived at oldest_ns: returns the time until which a worker should wait
 * for companions, or 0 to take the batch now (the delay has passed, or,
 * when adaptive, the next arrival is expected only after it). */
uint64_t batch_wait_until(const struct batch_rate *r, bool adaptive, uint64_t max_delay_ns,
                          uint64_t oldest_ns, uint64_t now_ns);
/* Adaptive only, before a wait that batch_wait_until asks for: true when
 * the recent waits gathered nobody and this one is skipped (not a probe). */
bool batch_rate_skip_wait(struct batch_rate *r);
/* Adaptive only, after a batch that waited: whether a companion joined. */
void batch_rate_waited(struct batch_rate *r, bool gathered);

struct batch_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct infer_request *head, *tail;
    int length;
    int capacity;
    int max_batch_size; /* 0: one request per forward */
    uint64_t max_delay_ns;
    bool closed;
    struct batch_rate rate; /* arrivals seen, for the adaptive wait */
    bool adaptive;          /* false: always wait up to max_delay_ns */
};

/* Returns 0 or -1 (pthread init failed). */
int batch_queue_init(struct batch_queue *q, int capacity, int max_batch_size, long max_delay_us);
void batch_queue_destroy(struct batch_queue *q);

/* Turn the adaptive wait on or off (off after init: always wait). */
void batch_queue_set_adaptive(struct batch_queue *q, bool adaptive);

enum submit_result { SUBMIT_OK = 0, SUBMIT_FULL = -1, SUBMIT_CLOSED = -2 };

/* Append req unless the queue is full or closed. req->queued, when set,
 * runs under the queue lock just before req is appended, and only then.
 * Returns a submit_result. */
int batch_queue_submit(struct batch_queue *q, struct infer_request *req);

/* Block until a batch is due, then move up to max requests into batch.
 * Returns the number taken (>= 1), or 0 once the queue is closed and
 * empty. */
int batch_queue_take(struct batch_queue *q, struct infer_request **batch, int max);

/* As batch_queue_take, with batches of at most max_samples samples (0, or
 * more than the queue's max_batch_size: that size). A batch is complete
 * when it holds max_samples. A request larger than max_samples (but within
 * max_batch_size) still runs, alone. */
int batch_queue_take_upto(struct batch_queue *q, struct infer_request **batch, int max,
                          int max_samples);

/* Remove every queued request whose deadline is at or before now_ns and
 * return them, linked by next, in queue order (NULL when none). Sets
 * *next_deadline_ns to the earliest deadline still queued, or 0. */
struct infer_request *batch_queue_expire(struct batch_queue *q, uint64_t now_ns,
                                         uint64_t *next_deadline_ns);

/* Remove every queued request for which gone(req, arg) is true (called with
 * the queue's lock held) and return them, linked by next, in queue order. */
struct infer_request *
batch_queue_remove_if(struct batch_queue *q,
                      bool (*gone)(const struct infer_request *req, void *arg), void *arg);

/* Stop accepting; workers still drain what is queued. */
void batch_queue_close(struct batch_queue *q);

/* Remove every queued request (for a drain that ran out of time). Returns
 * the list, linked by next. */
struct infer_request *batch_queue_steal_all(struct batch_queue *q);

int batch_queue_length(struct batch_queue *q);

/* Whether b can share a forward call with a: same dtypes and same dims
 * after the first. */
bool batch_compatible(const struct infer_request *a, const struct infer_request *b);

#endif
