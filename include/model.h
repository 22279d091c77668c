/* model.h - a served model at run time: its configuration, its queue, its
 * instances (one worker thread each, pinned to a device) and its metrics. */
#ifndef INFERD_MODEL_H
#define INFERD_MODEL_H

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
