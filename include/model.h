/* model.h - a served model at run time: its configuration, its queue, its
 * instances (one worker thread each, pinned to a device) and its metrics. */
#ifndef INFERD_MODEL_H
#define INFERD_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "batcher.h"
#include "config.h"
#include "metrics.h"
#include "model_repo.h"
#include "torch_shim.h"

enum model_state { MODEL_LOADING, MODEL_READY, MODEL_FAILED };

struct worker {
    pthread_t thread;
    bool started;
    struct model *model;
    int device; /* CONFIG_DEVICE_CPU or a CUDA ordinal */
    int index;  /* instance number within the model */
    shim_model *handle;
    void *staging[BATCH_MAX_IO]; /* batch inputs, reused; pinned on a GPU */
    size_t staging_cap[BATCH_MAX_IO];
    struct infer_request **batch; /* room for one batch's requests */
    int batch_cap;
    /* Answered requests on their way to the completion thread, which
     * encodes replies and resumes connections while the worker runs the
     * next batch. Lock order: the queue's lock is never held with this one. */
    pthread_t completer;
    bool completer_started;
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    struct infer_request *done_head, *done_tail;
    bool done_closing;
};

struct model {
    struct model_config cfg;
    struct batch_queue queue;
    struct worker *workers;
    int n_workers;
    atomic_int instances_ready;
    atomic_int instances_failed;
    pthread_mutex_t error_lock;
    char load_error[256]; /* the first instance failure */
    struct model_metrics metrics;
};

/* Take ownership of cfg, create the queue and the instances' slots (one
 * per instance per device); no thread starts yet. Returns 0, or -1 with err
 * set (then m holds nothing). */
int model_init(struct model *m, struct model_config *cfg, const struct inferd_config *server,
               char *err, size_t err_len);

/* Start the instance threads; they load and warm up in the background. An
 * instance that cannot start marks the model unavailable. */
void model_run(struct model *m);

/* Record a model whose folder could not be used (bad config.json): it is
 * listed as unavailable with why, and has no workers. Returns 0 or -1. */
int model_init_failed(struct model *m, const char *name, const char *why);

enum model_state model_get_state(struct model *m);
/* Copy the load error (empty when none). */
void model_get_error(struct model *m, char *buf, size_t len);
const char *model_state_name(enum model_state state);

/* Stop taking requests; workers finish what is queued, then exit. */
void model_close(struct model *m);
/* Wait for the workers to finish what is queued and exit (after
 * model_close); the model stays readable. */
void model_join(struct model *m);
/* Wait for the workers, then free everything. Call after model_close. */
void model_destroy(struct model *m);

#endif
