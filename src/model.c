/* model.c - model lifecycle: queue plus worker instances (see model.h). The
 * worker loop itself is in worker.c. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

int model_init(struct model *m, struct model_config *cfg, const struct inferd_config *server,
               char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg); /* ownership moved */
    metrics_model_init(&m->metrics);
    if (metrics_model_init_batches(&m->metrics, m->cfg.max_batch_size) != 0) {
        snprintf(err, err_len, "out of memory");
        model_config_free(&m->cfg);
        return -1;
    }
    if (worker_status_init(&m->instances) != 0) {
        snprintf(err, err_len, "cannot create a mutex");
        metrics_model_free(&m->metrics);
        model_config_free(&m->cfg);
        return -1;
    }
    if (batch_queue_init(&m->queue, server->max_queue, m->cfg.max_batch_size,
                         m->cfg.max_queue_delay_us) != 0) {
        snprintf(err, err_len, "cannot create the queue");
        worker_status_destroy(&m->instances);
        metrics_model_free(&m->metrics);
        model_config_free(&m->cfg);
        return -1;
    }
    batch_queue_set_adaptive(&m->queue, server->batch_wait == BATCH_WAIT_ADAPTIVE);
    int total = server->n_devices * m->cfg.instances_per_device;
    m->workers = calloc((size_t)total, sizeof *m->workers);
    if (m->workers == NULL) {
        snprintf(err, err_len, "out of memory");
        model_destroy(m);
        return -1;
    }
    for (int d = 0; d < server->n_devices; d++) {
        for (int i = 0; i < m->cfg.instances_per_device; i++) {
            struct worker *w = &m->workers[m->n_workers];
            w->cfg = &m->cfg;
            w->queue = &m->queue;
            w->metrics = &m->metrics;
            w->status = &m->instances;
            w->device = server->devices[d];
            w->index = m->n_workers++;
        }
    }
    return 0;
}

void model_acquire(struct model *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void model_release(struct model *m)
{
    void (*released)(void *) = m->released; /* m may be freed once refs is 0 */
    void *arg = m->released_arg;
    if (atomic_fetch_sub(&m->refs, 1) == 1 && released)
        released(arg);
}

double model_load_seconds(struct model *m)
{
    uint64_t ready = atomic_load(&m->instances.last_ready_ns);
    if (model_get_state(m) != MODEL_READY || ready < m->started_ns)
        return 0;
    return (double)(ready - m->started_ns) / 1e9;
}

void model_run(struct model *m)
{
    m->started_ns = clock_now_ns();
    for (int i = 0; i < m->n_workers; i++) {
        char err[256];
        if (worker_start(&m->workers[i], err, sizeof err) != 0) {
            worker_status_fail(&m->instances, err);
            log_msg(LOG_ERROR, "model %s instance %d: %s", m->cfg.name, i, err);
        }
    }
}

int model_init_failed(struct model *m, const char *name, const char *why)
{
    memset(m, 0, sizeof *m);
    snprintf(m->cfg.name, sizeof m->cfg.name, "%s", name);
    metrics_model_init(&m->metrics);
    if (worker_status_init(&m->instances) != 0)
        return -1;
    worker_status_fail(&m->instances, why);
    if (batch_queue_init(&m->queue, 1, 0, 0) != 0) {
        worker_status_destroy(&m->instances);
        return -1;
    }
    batch_queue_close(&m->queue);
    return 0;
}

enum model_state model_get_state(struct model *m)
{
    if (atomic_load(&m->instances.failed) > 0)
        return MODEL_FAILED;
    if (m->n_workers > 0 && atomic_load(&m->instances.ready) == m->n_workers)
        return MODEL_READY;
    return MODEL_LOADING;
}

void model_get_error(struct model *m, char *buf, size_t len)
{
    worker_status_error(&m->instances, buf, len);
}

const char *model_state_name(enum model_state state)
{
    switch (state) {
    case MODEL_LOADING: return "LOADING";
    case MODEL_READY: return "READY";
    case MODEL_FAILED: return "UNAVAILABLE";
    }
    return "?";
}

int model_pending(struct model *m)
{
    int n = batch_queue_length(&m->queue);
    for (int i = 0; i < m->n_workers; i++)
        n += atomic_load(&m->workers[i].stage.waiting);
    return n;
}

void model_close(struct model *m)
{
    batch_queue_close(&m->queue);
}

void model_join(struct model *m)
{
    for (int i = 0; i < m->n_workers; i++)
        worker_join(&m->workers[i]);
}

void model_destroy(struct model *m)
{
    for (int i = 0; i < m->n_workers; i++)
        worker_join(&m->workers[i]);
    free(m->workers);
    m->workers = NULL;
    batch_queue_destroy(&m->queue);
    worker_status_destroy(&m->instances);
    metrics_model_free(&m->metrics);
    model_config_free(&m->cfg);
}
