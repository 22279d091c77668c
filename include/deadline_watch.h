/* deadline_watch.h - one thread that answers 504 for queued requests the
 * moment their deadline (--request-timeout-ms) passes, instead of when a
 * busy worker next takes from the queue. Workers still check deadlines as
 * they form a batch; this covers the time they are busy.
 *
 * It sleeps until the earliest queued deadline, or for one timeout when
 * nothing is queued: every request gets the same timeout, so one that
 * arrives during the sleep is not due before the watcher wakes. */
#ifndef INFERD_DEADLINE_WATCH_H
#define INFERD_DEADLINE_WATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "model.h"

struct deadline_watch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    bool stop;
    bool started;
    struct model *models; /* fixed for the watcher's life */
    int n_models;
    uint64_t timeout_ns;
};

/* Start watching models' queues. Returns 0, or -1 with err set. */
int deadline_watch_start(struct deadline_watch *w, struct model *models, int n_models,
                         uint64_t timeout_ns, char *err, size_t err_len);

/* Stop and join the thread (a no-op when it never started). Call before the
 * models' queues are destroyed. */
void deadline_watch_stop(struct deadline_watch *w);

#endif
