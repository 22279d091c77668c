/* registry.h - the served models, by name and version, and how they change
 * at run time: the start-up load, the repository poll, explicit load and
 * unload, and the swap without downtime.
 *
 * A model name maps to its served versions, each a struct model (model.h)
 * holding one reference from the registry. A request takes its own
 * reference with registry_acquire and drops it with model_release when it
 * ends, so a version is never freed while in use. A (re)load builds the new
 * versions beside the old ones and waits until they are warmed up, then
 * swaps the served set in one step under the lock: new requests see only
 * the new versions. The versions swapped out (or unloaded) are retired:
 * their instances finish every request already queued, and the manager
 * thread closes and frees each once its last reference is gone. A failed
 * load leaves the old versions serving; the index and the log say why.
 *
 * Lock order: the registry's lock is taken before nothing else: it is never
 * held while calling into a model other than to count references, nor
 * while a job's done callback runs. */
#ifndef INFERD_REGISTRY_H
#define INFERD_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"
#include "strbuf.h"

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

enum registry_job_kind { REGISTRY_LOAD, REGISTRY_UNLOAD };

/* A control request handed to the manager thread. */
struct registry_job {
    enum registry_job_kind kind;
    char name[MODEL_NAME_MAX];
    char *config; /* LOAD: config.json text to use instead of the file, or NULL (owned) */
    /* Set by the manager, then done(job) runs on its thread. */
    int status; /* HTTP status: 200, 400, 404, 503 */
    char message[512];
    void (*done)(struct registry_job *job);
    void *arg;
    struct registry_job *next;
};

struct registry {
    const struct inferd_config *cfg; /* repository, defaults, devices, mode */
    pthread_mutex_t lock;            /* guards everything below */
    pthread_cond_t wake;             /* CLOCK_MONOTONIC: jobs, rescans, releases, stop */
    struct registry_entry *entries[MODEL_MAX_MODELS];
    int n_entries;
    struct model *retired; /* swapped out or unloaded, draining */
    struct model *pending; /* start-up loads still to report in the log */
    struct registry_job *jobs, *jobs_tail;
    bool rescan; /* SIGHUP in poll mode */
    bool stop;
    pthread_t thread;
    bool started;
};

/* Read the repository and build every model's served versions (their
 * instances are not started yet). A model that cannot be used is served as
 * unavailable, with why. Returns 0, or -1 with err set (an unreadable
 * repository, or no model in it). */
int registry_init(struct registry *r, const struct inferd_config *cfg, char *err, size_t err_len);

/* Start the served versions' instances and the manager thread (start-up
 * log lines, polls, jobs, freeing retired versions). Returns 0, or -1 with
 * err set. */
int registry_start(struct registry *r, char *err, size_t err_len);

/* Stop the manager: jobs not yet run end with 503. The models stay. */
void registry_stop(struct registry *r);

/* Close, join and free every model (after registry_stop, once no request
 * holds one). */
void registry_destroy(struct registry *r);

/* The served version `version` of model name (0: the newest ready one, or
 * the newest when none is ready), with a reference for the caller to drop
 * with model_release. NULL with a message for a 404 in err when there is
 * none. */
struct model *registry_acquire(struct registry *r, const char *name, int version, char *err,
                               size_t err_len);

/* Whether a model called name is in the registry (loaded or not). */
bool registry_has(struct registry *r, const char *name);

/* Up to max of model name's served versions, ascending, into out. Returns
 * the count. */
int registry_versions(struct registry *r, const char *name, int *out, int max);

/* References to up to max models: every served version and, with
 * retired, those still draining. The caller drops each with
 * model_release. Returns the count. */
int registry_snapshot(struct registry *r, struct model **out, int max, bool retired);

/* Every served version ready, at least one served. */
bool registry_all_ready(struct registry *r);

/* Append the repository index (Triton's): a JSON array of
 * {"name", "version", "state", "reason"} rows. */
void registry_index_json(struct registry *r, struct strbuf *sb);

/* Append the per-model metrics that outlive versions (load failures, load
 * durations, states), in Prometheus text format. */
void registry_render_metrics(struct registry *r, struct strbuf *sb);

/* Hand job to the manager thread. Returns 0, or -1 when it is stopping
 * (the job is then not taken). */
int registry_submit(struct registry *r, struct registry_job *job);

/* Ask for a rescan now (SIGHUP in poll mode). */
void registry_request_rescan(struct registry *r);

#endif
