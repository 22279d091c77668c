/* model.h - one loaded version of a model at run time: its configuration,
 * its queue, its instances (one worker thread each, pinned to a device) and
 * its metrics; reference-counted, so that a version swapped out or unloaded
 * is freed only once the last request using it has ended. */
#ifndef INFERD_MODEL_H
#define INFERD_MODEL_H

#include <stdatomic.h>
#include <stdint.h>

#include "batcher.h"
#include "config.h"
#include "metrics.h"
#include "model_repo.h"
#include "worker.h"

enum model_state { MODEL_LOADING, MODEL_READY, MODEL_FAILED };

struct model {
    struct model_config cfg;
    struct batch_queue queue;
    struct worker *workers;
    int n_workers;
    struct worker_status instances; /* ready and failed counts, first failure */
    struct metrics_model metrics;
    /* References: the registry's while the version is served, and one per
     * request or reader using it (model_acquire/model_release). */
    atomic_int refs;
    void (*released)(void *arg); /* called when refs reaches 0 (may be NULL) */
    void *released_arg;
    uint64_t started_ns; /* when model_run started the instances */
    struct model *next;  /* the owner's list link */
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

/* Take a reference (the caller already holds one, or the owner's lock). */
void model_acquire(struct model *m);
/* Drop a reference; the last one calls m->released. */
void model_release(struct model *m);

/* Seconds from model_run until every instance was ready (0 until then). */
double model_load_seconds(struct model *m);

enum model_state model_get_state(struct model *m);
/* Copy the load error (empty when none). */
void model_get_error(struct model *m, char *buf, size_t len);
const char *model_state_name(enum model_state state);

/* Requests waiting to run: queued, or taken by an instance's stage and not
 * yet in its forward. */
int model_pending(struct model *m);

/* Stop taking requests; workers finish what is queued, then exit. */
void model_close(struct model *m);
/* Wait for the workers to finish what is queued and exit (after
 * model_close); the model stays readable. */
void model_join(struct model *m);
/* Wait for the workers, then free everything. Call after model_close. */
void model_destroy(struct model *m);

#endif
