/* registry_manager.h - the thread that changes the registry (registry.h):
 * the start-up load, the repository poll, explicit load and unload jobs,
 * the swap without downtime, and freeing retired versions.
 *
 * A (re)load plans what to build (the versions whose files changed, all
 * of them when forced), builds them beside the served ones, waits until
 * they are warmed up, then swaps the served set in one step under the
 * registry's lock: new requests see only the new versions. The versions
 * swapped out (or unloaded) are retired: their instances finish every
 * request already queued, and the manager closes and frees each once its
 * last reference is gone. A failed load leaves the old versions serving;
 * the index and the log say why. Lock order: registry.h. */
#ifndef INFERD_REGISTRY_MANAGER_H
#define INFERD_REGISTRY_MANAGER_H

#include <stddef.h>

#include "infer_request.h"
#include "registry.h"

/* What a load or unload came to. Functions return 0 or one of the
 * negative codes, with a message in a buffer the caller owns. */
enum registry_job_kind { REGISTRY_LOAD, REGISTRY_UNLOAD };

/* A control request handed to the manager thread. */
struct registry_job {
    enum registry_job_kind kind;
    char name[MODEL_NAME_MAX];
    char *config; /* LOAD: config.json text to use instead of the file, or NULL (owned) */
    /* Set by the manager, then done(job) runs on its thread. */
    enum infer_status status; /* ok, invalid, not found, unavailable (stopping) */
    char message[512];        /* why, when status is not INFER_OK (no file paths) */
    void (*done)(struct registry_job *job);
    void *arg;
    struct registry_job *next;
};

/* Set up r for cfg and build every model's served versions from the
 * repository (their instances are not started yet). A model that cannot
 * be used is served as unavailable, with why. Returns 0, or -1 with err
 * set (an unreadable repository, no model in it, out of memory); r then
 * holds nothing. */
int registry_manager_init(struct registry *r, const struct inferd_config *cfg, char *err,
                          size_t err_len);

/* Start the served versions' instances and the manager thread (start-up
 * log lines, polls, jobs, freeing retired versions). Returns 0, or -1 with
 * err set (the thread could not start; the instances then still run and
 * registry_manager_destroy stops them). */
int registry_manager_start(struct registry *r, char *err, size_t err_len);

/* Stop the manager: jobs not yet run end with INFER_UNAVAILABLE. The
 * models stay. Safe to call twice, or when it never started. */
void registry_manager_stop(struct registry *r);

/* Stop the manager, then close, join and free every model (once no
 * request holds one). Cannot fail. */
void registry_manager_destroy(struct registry *r);

/* Hand job to the manager thread. Returns INFER_OK, or INFER_UNAVAILABLE when it
 * is stopping or not started (the job is then not taken). */
enum infer_status registry_manager_submit(struct registry *r, struct registry_job *job);

/* Ask for a rescan now (SIGHUP in poll mode). Cannot fail. */
void registry_manager_rescan(struct registry *r);

#endif
