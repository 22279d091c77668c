/* batch_stage.h - the stage before an instance's forward, on its own
 * thread: while the instance runs one batch, the stage takes the next from
 * the model's queue, ends the requests whose deadline passed, decodes image
 * requests straight into a pooled batch buffer, copies each request's
 * tensors in as one contiguous run, and pads the batch with zero rows to a
 * preferred size when asked. Each instance has two slots (two batch buffers
 * per input, pinned on a GPU), allocated at start for the largest batch and
 * recycled: no allocation per request.
 *
 * Lock order: the stage's lock is never held while taking the queue's or
 * finishing a request. */
#ifndef INFERD_BATCH_STAGE_H
#define INFERD_BATCH_STAGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch_profile.h"
#include "batcher.h"
#include "infer_request.h"

#define BATCH_STAGE_SLOTS 2

enum stage_slot_state { STAGE_FREE = 0, STAGE_FILLING, STAGE_FULL, STAGE_RUNNING };

/* One staged batch. Read-only for the instance between batch_stage_next
 * and batch_stage_release. */
struct stage_slot {
    enum stage_slot_state state;
    struct infer_request **reqs; /* the live requests, in queue order */
    int n;
    int64_t rows;        /* their samples */
    int64_t padded_rows; /* the rows the forward sees (>= rows) */
    int n_inputs;
    struct shim_tensor views[MODEL_MAX_IO];
    bool whole;        /* views are the one request's own tensors */
    uint64_t taken_ns; /* when the batch left the queue */
    uint64_t staged_ns;
    void *buf[MODEL_MAX_IO]; /* the pooled batch buffers */
    size_t cap[MODEL_MAX_IO];
};

struct batch_stage {
    /* Set by the owner before batch_stage_start. */
    struct batch_queue *queue;
    int device;         /* SHIM_DEVICE_CPU or a CUDA ordinal: pinned buffers on a GPU */
    int max_batch_size; /* the model's (0: one request per forward) */
    int limit;          /* samples per batch (0: max_batch_size) */
    const struct batch_profile *pad; /* pad to its preferred sizes, or NULL */
    int batch_cap;                   /* requests per batch */
    /* Private. */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct stage_slot slots[BATCH_STAGE_SLOTS];
    int fill_next, use_next; /* slot indexes, in turn */
    bool drained;            /* the queue is closed and empty */
    /* Counters (read by anyone). */
    atomic_uint_least64_t requests;      /* staged requests */
    atomic_uint_least64_t bytes_copied;  /* request bytes copied into batch buffers */
    atomic_uint_least64_t bytes_decoded; /* image bytes decoded straight into them */
    atomic_uint_least64_t padded_rows;   /* zero rows added */
    atomic_int waiting; /* requests taken off the queue, not yet handed to the instance */
};

/* Allocate both slots' buffers for batches of the largest size (the bytes
 * of one sample of each input in sample_bytes, 0 where unknown: allocated
 * on first use) and start the thread. Returns 0, or -1 with err set. */
int batch_stage_start(struct batch_stage *s, const size_t *sample_bytes, int n_inputs, char *err,
                      size_t err_len);

/* Block until the next staged batch is ready and return its slot, or NULL
 * once the queue is closed and every batch has been handed out. */
struct stage_slot *batch_stage_next(struct batch_stage *s);

/* After the forward, before any of the slot's requests is finished: the
 * inputs that point into the slot's buffers point nowhere from now on. */
void batch_stage_detach(struct stage_slot *slot);

/* Just before the forward: end the slot's requests whose deadline passed
 * or whose client left while the batch waited (INFER_DEADLINE,
 * INFER_CANCELLED), keeping the rest contiguous and padded. Returns the
 * requests left (0: release the slot). */
int batch_stage_prune(struct batch_stage *s, struct stage_slot *slot, uint64_t now_ns);

/* Give a slot back after its forward (its buffers and request list are
 * reused at once: copy what is still needed first). */
void batch_stage_release(struct batch_stage *s, struct stage_slot *slot);

/* Join the thread (the queue must be closed) and free the buffers. */
void batch_stage_join(struct batch_stage *s);

/* Stage reqs[0..n) (taken from the queue at taken_ns) into slot: exposed
 * for tests; the thread calls it. Requests past their deadline or whose
 * prepare hook fails are finished here. Returns the live count (0: none
 * left), or -1 when out of memory (every request then finished). */
int batch_stage_fill(struct batch_stage *s, struct stage_slot *slot, struct infer_request **reqs,
                     int n, uint64_t taken_ns);

#endif
