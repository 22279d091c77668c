/* queue_watch.h - one thread that looks after requests waiting in the model
 * queues while the workers are busy:
 *  - a request whose deadline (--request-timeout-ms) passes gets its 504 at
 *    that moment, not when a worker next takes from the queue;
 *  - a request whose client has closed the connection is dropped (499 in
 *    the access log and metrics) instead of being run for nobody.
 * Workers still check deadlines as they form a batch.
 *
 * It wakes every QUEUE_WATCH_PERIOD_MS, or sooner for the earliest queued
 * deadline. Whether a client has left is asked of its transport (the
 * call's gone hook: HTTP peeks at the suspended connection's socket, which
 * libmicrohttpd does not poll; end of stream or a reset means gone, as
 * nginx reads it). */
#ifndef INFERD_QUEUE_WATCH_H
#define INFERD_QUEUE_WATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service.h"

struct registry;

#define QUEUE_WATCH_PERIOD_MS 100

struct queue_watch {
    struct service svc; /* the thread; svc.stop under lock */
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* CLOCK_MONOTONIC */
    struct registry *registry; /* whose models' queues, served or draining */
};

/* Start watching the queues of the registry's models. Returns 0, or -1
 * with err set. */
int queue_watch_start(struct queue_watch *w, struct registry *registry, char *err, size_t err_len);

/* Stop and join the thread (a no-op when it never started). Call before the
 * models' queues are destroyed. */
void queue_watch_stop(struct queue_watch *w);

#endif
