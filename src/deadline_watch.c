/* deadline_watch.c - 504 for queued requests at their deadline (see
 * deadline_watch.h). */
#include "deadline_watch.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "worker.h"

/* Answer what expired in every queue; returns the earliest deadline still
 * queued anywhere, or 0. */
static uint64_t expire_all(struct deadline_watch *w)
{
    uint64_t earliest = 0;
    for (int i = 0; i < w->n_models; i++) {
        uint64_t next = 0;
        struct infer_request *r = batch_queue_expire(&w->models[i].queue, clock_now_ns(), &next);
        while (r != NULL) {
            struct infer_request *following = r->next;
            worker_fail_request(r, 504, "the request's deadline passed while it was queued");
            r = following;
        }
        if (next != 0 && (earliest == 0 || next < earliest))
            earliest = next;
    }
    return earliest;
}

static void *watch_main(void *arg)
{
    struct deadline_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        uint64_t earliest = expire_all(w);
        uint64_t wake_at = clock_now_ns() + w->timeout_ns;
        if (earliest != 0 && earliest < wake_at)
            wake_at = earliest;
        struct timespec until = clock_timespec(wake_at);
        pthread_mutex_lock(&w->lock);
        if (!w->stop)
            pthread_cond_timedwait(&w->wake, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int deadline_watch_start(struct deadline_watch *w, struct model *models, int n_models,
                         uint64_t timeout_ns, char *err, size_t err_len)
{
    memset(w, 0, sizeof *w);
    w->models = models;
    w->n_models = n_models;
    w->timeout_ns = timeout_ns;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        snprintf(err, err_len, "cannot create the deadline watcher");
        return -1;
    }
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        snprintf(err, err_len, "cannot create the deadline watcher");
        return -1;
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pthread_cond_destroy(&w->wake);
        snprintf(err, err_len, "cannot create the deadline watcher");
        return -1;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        snprintf(err, err_len, "cannot start the deadline watcher thread");
        return -1;
    }
    w->started = true;
    return 0;
}

void deadline_watch_stop(struct deadline_watch *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    w->started = false;
}
