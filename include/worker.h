/* worker.h - one model instance: a thread that loads the model on its
 * device, warms it up, then runs batches from the model's queue and hands
 * each request its own rows of the outputs. A worker knows its model only
 * through the pieces below (config, queue, metrics, shared status), so the
 * model module builds on this one and not the other way round. */
#ifndef INFERD_WORKER_H
#define INFERD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "batch_profile.h"
#include "batch_stage.h"
#include "batcher.h"
#include "metrics.h"
#include "model_repo.h"
#include "strbuf.h"
#include "torch_shim.h"

/* What a model's instances report, shared by all of them: how many are
 * ready, how many failed, and the first failure's message. */
struct worker_status {
    atomic_int ready;
    atomic_int failed;
    atomic_uint_least64_t last_ready_ns; /* when the latest instance became ready */
    pthread_mutex_t lock;                /* guards error */
    char error[256];
    /* Called (without locks held) after an instance became ready or
     * failed, or NULL: the owner's wake-up. Set before the instances start. */
    void (*changed)(void *arg);
    void *changed_arg;
};

/* Returns 0 or -1 (the mutex could not be created). */
int worker_status_init(struct worker_status *s);
void worker_status_destroy(struct worker_status *s);
/* Count one failed instance; the first message is kept. */
void worker_status_fail(struct worker_status *s, const char *message);
/* Copy the first failure's message (empty when none). */
void worker_status_error(struct worker_status *s, char *buf, size_t len);

struct worker {
    pthread_t thread;
    bool started;
    /* Set by the owner before worker_start. */
    const struct model_config *cfg;
    struct batch_queue *queue;
    struct metrics_model *metrics;
    struct worker_status *status;
    int device; /* CONFIG_DEVICE_CPU or a CUDA ordinal */
    int index;  /* instance number within the model */
    /* The thread's own. */
    shim_model *handle;
    struct infer_request **batch; /* room for one batch's requests (a failed instance's) */
    int batch_cap;
    /* The batch sizes it forms (measured at warm-up, or from config.json);
     * written before profile_ready is set, read-only after. */
    struct batch_profile profile;
    /* The GPU memory it needs, measured at warm-up (shim_model_gpu_memory);
     * -1 on a CPU instance. Written before profile_ready is set. */
    int64_t gpu_memory_bytes;
    atomic_bool profile_ready;
    /* The thread that takes, decodes and copies the next batch while this
     * one runs the forward. */
    struct batch_stage stage;
    /* Answered requests on their way to the completion thread, which
     * finishes them (encodes replies, resumes connections) while the worker
     * runs the next batch. Lock order: the queue's lock is never held with
     * this one. */
    pthread_t completer;
    bool completer_started;
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    struct infer_request *done_head, *done_tail;
    bool done_closing;
};

/* Start w's thread (the fields the owner sets, above). Returns 0 or -1 with
 * err set. Load failures are reported later through w->status. */
int worker_start(struct worker *w, char *err, size_t err_len);

/* Join the thread (the queue must be closed) and free its resources. */
void worker_join(struct worker *w);

/* The GPU memory the instance measured at warm-up, in bytes, or -1 (not
 * ready yet, or a CPU instance: nothing is measured there). */
int64_t worker_gpu_memory(struct worker *w);

/* Append w as a JSON object: instance, device, the GPU memory it measured
 * (gpu_memory_bytes, GPU instances only) and, once it is ready, the
 * batch sizes it forms (batch_profile_json), whether it pads, and its
 * stage's counters (requests staged, request bytes copied into batch
 * buffers, image bytes decoded straight into them, padding rows). */
void worker_describe_json(struct worker *w, struct strbuf *sb);

#endif
