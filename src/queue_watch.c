/* queue_watch.c - deadlines and departed clients of queued requests (see
 * queue_watch.h). */
#include "queue_watch.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "registry.h"

#define PERIOD_NS ((uint64_t)QUEUE_WATCH_PERIOD_MS * 1000000u)

/* Whether the client of req has left, as its transport tells. */
static bool client_gone(const struct infer_request *req, void *arg)
{
    (void)arg;
    return req->hooks != NULL && req->hooks->gone != NULL && req->hooks->gone(req);
}

/* One pass over every queue; returns the earliest deadline still queued, or
 * 0. */
static uint64_t sweep(struct queue_watch *w)
{
    static struct model *models[REGISTRY_SNAPSHOT_MAX]; /* only the watcher thread sweeps */
    uint64_t earliest = 0;
    int n = registry_snapshot(w->registry, models, REGISTRY_SNAPSHOT_MAX, true);
    for (int i = 0; i < n; i++) {
        struct batch_queue *q = &models[i]->queue;
        uint64_t next = 0;
        infer_request_finish_all(batch_queue_expire(q, clock_now_ns(), &next), INFER_DEADLINE,
                                 INFER_DEADLINE_PASSED);
        struct infer_request *gone = batch_queue_remove_if(q, client_gone, NULL);
        if (gone != NULL)
            log_msg(LOG_DEBUG, "model %s: dropped queued requests whose client left",
                    models[i]->cfg.name);
        infer_request_finish_all(gone, INFER_CANCELLED,
                                 "the client closed the connection while the request was queued");
        if (next != 0 && (earliest == 0 || next < earliest))
            earliest = next;
    }
    for (int i = 0; i < n; i++)
        model_release(models[i]);
    return earliest;
}

static void *watch_main(void *arg)
{
    struct queue_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->svc.stop) {
        pthread_mutex_unlock(&w->lock);
        uint64_t earliest = sweep(w);
        uint64_t wake_at = clock_now_ns() + PERIOD_NS;
        if (earliest != 0 && earliest < wake_at)
            wake_at = earliest;
        pthread_mutex_lock(&w->lock);
        if (!w->svc.stop)
            clock_cond_wait_until(&w->wake, &w->lock, wake_at);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int queue_watch_start(struct queue_watch *w, struct registry *registry, char *err, size_t err_len)
{
    memset(w, 0, sizeof *w);
    w->registry = registry;
    if (clock_cond_init(&w->wake) != 0) {
        snprintf(err, err_len, "cannot create the queue watcher");
        return -1;
    }
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pthread_cond_destroy(&w->wake);
        snprintf(err, err_len, "cannot create the queue watcher");
        return -1;
    }
    if (service_start(&w->svc, &w->lock, &w->wake, NULL, watch_main, w, "queue watcher", err,
                      err_len) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        return -1;
    }
    return 0;
}

void queue_watch_stop(struct queue_watch *w)
{
    if (!w->svc.running)
        return;
    service_stop(&w->svc);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
}
