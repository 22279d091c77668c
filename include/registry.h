/* registry.h - the served models by name and version, and the lookups a
 * request makes (acquire, has, versions, snapshot, readiness).
 *
 * A model name maps to its served versions, each a struct model (model.h)
 * holding one reference from the registry. A request takes its own
 * reference with registry_acquire and drops it with model_release when it
 * ends, so a version is never freed while in use. What changes the table
 * (the start-up load, polls, explicit load and unload, freeing retired
 * versions) is the manager thread's job: registry_manager.h. What reads it
 * into text (the repository index, the per-model metrics) is
 * registry_render.h.
 *
 * Lock order: the registry's lock is taken before nothing else: it is never
 * held while calling into a model other than to count references or read
 * its state, nor while a job's done callback runs. */
#ifndef INFERD_REGISTRY_H
#define INFERD_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "service.h"

#define REGISTRY_SNAPSHOT_MAX 1024 /* most models one snapshot returns */

/* A version that failed to (re)load in the last attempt. */
struct registry_failure {
    int version;    /* 0: the model as a whole (config.json) */
    uint64_t stamp; /* what was tried: not retried by a poll until it changes */
    char why[256];
};

/* One model name. */
struct registry_entry {
    char name[MODEL_NAME_MAX];
    struct model *served[MODEL_MAX_VERSIONS]; /* ascending versions */
    uint64_t stamps[MODEL_MAX_VERSIONS];      /* what each served one was loaded from */
    int n_served;
    struct registry_failure failures[MODEL_MAX_VERSIONS + 1];
    int n_failures;
    bool unloaded;    /* explicitly unloaded: requests get 404 */
    bool placeholder; /* served[] holds start-up failures, not loaded versions */
    uint64_t load_failures;
};

struct registry_job; /* registry_manager.h */

struct registry {
    const struct inferd_config *cfg; /* repository, defaults, devices, mode */
    pthread_mutex_t lock;            /* guards everything below */
    /* CLOCK_MONOTONIC. Broadcast on every event the manager waits for: a
     * job, a rescan, a dropped last reference, an instance that became
     * ready or failed, stop. */
    pthread_cond_t wake;
    struct registry_entry *entries[MODEL_MAX_MODELS];
    int n_entries;
    struct model *retired; /* swapped out or unloaded, draining */
    /* The manager thread's state (registry_manager.c), under the same lock. */
    struct model *pending; /* start-up loads still to report in the log */
    struct registry_job *jobs, *jobs_tail;
    bool rescan;        /* SIGHUP in poll mode */
    struct service svc; /* the manager thread; svc.stop under lock */
};

/* An empty table for cfg's repository. Returns 0, or -1 with err set (the
 * lock or the condition variable could not be created). */
int registry_init(struct registry *r, const struct inferd_config *cfg, char *err, size_t err_len);

/* Close, join and free every model, served or retired, and the lock. Call
 * once the manager is stopped and no request holds a model. Cannot fail. */
void registry_destroy(struct registry *r);

/* The served version `version` of model name (0: the newest ready one, or
 * the newest when none is ready), with a reference for the caller to drop
 * with model_release. On failure returns NULL with a message for a 404 in
 * err. */
struct model *registry_acquire(struct registry *r, const char *name, int version, char *err,
                               size_t err_len);

/* Whether a model called name is in the registry (loaded or not). */
bool registry_has(struct registry *r, const char *name);

/* Up to max of model name's served versions, ascending, into out. Returns
 * the count (0 for an unknown name). */
int registry_versions(struct registry *r, const char *name, int *out, int max);

/* References to up to max models: every served version and, with
 * retired, those still draining. The caller drops each with
 * model_release. Returns the count; cannot fail. */
int registry_snapshot(struct registry *r, struct model **out, int max, bool retired);

/* Every served version ready, at least one served. */
bool registry_all_ready(struct registry *r);

/* ---- for the manager and the renderers: the lock must be held ---- */

/* The entry of name, or NULL when there is none. */
struct registry_entry *registry_find_locked(struct registry *r, const char *name);

/* A new empty entry for name. Returns NULL when the table is full or out
 * of memory. */
struct registry_entry *registry_add_locked(struct registry *r, const char *name);

/* Take e out of the table and free it (its versions must be gone). */
void registry_remove_locked(struct registry *r, struct registry_entry *e);

/* Move m to the retired list (the caller drops the registry's reference
 * after unlocking); the manager frees it once no one holds it. */
void registry_retire_locked(struct registry *r, struct model *m);

/* Record that version (0: the whole model) failed to load from stamp, and
 * count it in load_failures. A full list drops the record silently. */
void registry_entry_fail(struct registry_entry *e, int version, uint64_t stamp, const char *why);

/* e's last failure of version, or NULL when there is none. */
const struct registry_failure *registry_entry_failure(const struct registry_entry *e, int version);

/* The manager's wake-up, as a callback (arg: the registry): a model's
 * last reference dropped, or one of its instances became ready or failed.
 * Takes the lock: call it without holding it. */
void registry_wake(void *arg);

/* Close, join and free m (no reference left). Cannot fail. */
void registry_free_model(struct model *m);

#endif
