/* registry_manager.c - start-up loads, reloads (plan, build, swap),
 * unloads, polls, and the manager thread that runs them (see
 * registry_manager.h). */
#include "registry_manager.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "redact.h"

/* The longest the manager sleeps without an event: a backstop for the
 * poll clock, not a poll (every event broadcasts the registry's wake). */
#define IDLE_NS 1000000000u

/* ---- building versions ---- */

/* What a version is loaded from: the config text and the model file's
 * identity (device, inode, size, modification time). */
static uint64_t stamp_of(const char *config_text, const char *path)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)config_text; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    struct stat st;
    if (stat(path, &st) == 0) {
        uint64_t parts[] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
                            (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            h = (h ^ parts[i]) * 1099511628211u;
    }
    return h;
}

/* A new model for cfg (taken over), not started. Its last reference and
 * each instance that becomes ready or fails wake the manager. On failure
 * returns NULL with err set. */
static struct model *build(struct registry *r, struct model_config *cfg, char *err, size_t err_len)
{
    struct model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        model_config_free(cfg);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    if (model_init(m, cfg, r->cfg, err, err_len) != 0) {
        free(m);
        return NULL;
    }
    atomic_store(&m->refs, 1);
    m->released = registry_wake;
    m->released_arg = r;
    m->instances.changed = registry_wake;
    m->instances.changed_arg = r;
    return m;
}

/* A model listed as unavailable with why (start-up only). NULL when out
 * of memory. */
static struct model *build_failed(struct registry *r, const char *name, int version,
                                  const char *why)
{
    struct model *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    if (model_init_failed(m, name, why) != 0) {
        free(m);
        return NULL;
    }
    m->cfg.version = version;
    atomic_store(&m->refs, 1);
    m->released = registry_wake;
    m->released_arg = r;
    return m;
}

/* The versions of model name to serve and their configs (parsed from
 * text). Returns the count, or -1 with err set. */
static int wanted_versions(struct registry *r, const char *name, const char *text,
                           struct model_config *cfgs, char *err, size_t err_len)
{
    char model_dir[2048];
    snprintf(model_dir, sizeof model_dir, "%s/%s", r->cfg->model_repository, name);
    struct model_config base;
    if (model_config_parse(text, model_dir, name, r->cfg, &base, err, err_len) != 0)
        return -1;
    struct model_version_policy policy = base.policy;
    model_config_free(&base);
    int on_disk[64], wanted[MODEL_MAX_VERSIONS];
    bool flat = false;
    int n = model_repo_versions(model_dir, on_disk, 64, &flat, err, err_len);
    if (n < 0)
        return -1;
    int k = flat ? 1 : model_version_select(&policy, on_disk, n, wanted);
    if (flat)
        wanted[0] = 1;
    for (int i = 0; i < k; i++) {
        char why[256];
        if (model_config_parse_version(text, model_dir, flat ? 0 : wanted[i], name, r->cfg,
                                       &cfgs[i], why, sizeof why) != 0) {
            snprintf(err, err_len, "version %d: %.200s", wanted[i], why);
            for (int j = 0; j < i; j++)
                model_config_free(&cfgs[j]);
            return -1;
        }
    }
    if (k == 0) {
        snprintf(err, err_len, "no version folder matches the version policy");
        return -1;
    }
    return k;
}

/* ---- start-up ---- */

/* Build model name's versions into a new entry; a version that cannot be
 * built is served as unavailable. Returns 0, or -1 when out of memory or
 * the table is full. */
static int install_initial(struct registry *r, const char *name)
{
    struct registry_entry *e = registry_add_locked(r, name);
    if (e == NULL)
        return -1;
    char why[256];
    struct model_config cfgs[MODEL_MAX_VERSIONS];
    char *text = model_repo_read_config(r->cfg->model_repository, name, why, sizeof why);
    int n = text ? wanted_versions(r, name, text, cfgs, why, sizeof why) : -1;
    if (n < 0) {
        log_msg(LOG_ERROR, "model %s: %s", name, why);
        registry_entry_fail(e, 0, 0, why);
        e->placeholder = true;
        e->served[0] = build_failed(r, name, 1, why);
        e->n_served = e->served[0] != NULL;
        free(text);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        int version = cfgs[i].version;
        uint64_t stamp = stamp_of(text, cfgs[i].path);
        struct model *m = build(r, &cfgs[i], why, sizeof why);
        if (m == NULL) {
            log_msg(LOG_ERROR, "model %s version %d: %s", name, version, why);
            registry_entry_fail(e, version, stamp, why);
            e->placeholder = true;
            m = build_failed(r, name, version, why);
            if (m == NULL)
                continue;
        } else {
            log_msg(LOG_INFO,
                    "model %s version %d: %d instance(s) starting, max_batch_size %d, "
                    "max_queue_delay_us %ld",
                    name, version, m->n_workers, m->cfg.max_batch_size, m->cfg.max_queue_delay_us);
        }
        e->stamps[e->n_served] = stamp;
        e->served[e->n_served++] = m;
    }
    free(text);
    return 0;
}

int registry_manager_init(struct registry *r, const struct inferd_config *cfg, char *err,
                          size_t err_len)
{
    char names[MODEL_MAX_MODELS][MODEL_NAME_MAX];
    int n = model_repo_list(cfg->model_repository, names, MODEL_MAX_MODELS, err, err_len);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, err_len, "no model folder with a config.json in %s", cfg->model_repository);
        return -1;
    }
    if (registry_init(r, cfg, err, err_len) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (install_initial(r, names[i]) != 0) {
            snprintf(err, err_len, "out of memory");
            registry_destroy(r);
            return -1;
        }
    }
    return 0;
}

/* ---- reload: plan, build, swap ---- */

/* One reload of one model: what the repository wants, and what becomes of
 * each wanted version. Lives on the manager thread's stack. */
struct reload {
    const char *name;
    bool force;               /* rebuild every version, retry every failure (an explicit load) */
    uint64_t t0;              /* when it began */
    struct registry_entry *e; /* changed only by the manager thread */
    int n;                    /* wanted versions */
    struct model_config cfgs[MODEL_MAX_VERSIONS]; /* emptied when a build takes one */
    int versions[MODEL_MAX_VERSIONS];
    uint64_t stamps[MODEL_MAX_VERSIONS];
    struct model *keep[MODEL_MAX_VERSIONS];   /* served and unchanged: stays */
    bool skip[MODEL_MAX_VERSIONS];            /* failed before, unchanged: not retried */
    struct model *builds[MODEL_MAX_VERSIONS]; /* new, and ready */
    /* This attempt's failures: first the skipped ones (already counted),
     * from n_old_fails on the new ones. */
    struct registry_failure fails[MODEL_MAX_VERSIONS];
    int n_fails, n_old_fails;
    struct model *dropped[MODEL_MAX_VERSIONS]; /* retired by the swap */
    int n_dropped;
};

static void add_fail(struct reload *rl, int version, uint64_t stamp, const char *why)
{
    struct registry_failure *f = &rl->fails[rl->n_fails++];
    f->version = version;
    f->stamp = stamp;
    snprintf(f->why, sizeof f->why, "%s", why);
}

/* config.json (or the version folders) cannot be used: record it on the
 * entry, unless a poll already did for the same text. Lock held; dropped.
 * Returns INFER_INVALID with err set. */
static enum infer_status plan_failed_unlock(struct registry *r, struct reload *rl, const char *text,
                                            const char *why, char *err, size_t err_len)
{
    struct registry_entry *e = rl->e;
    uint64_t stamp = stamp_of(text, "");
    const struct registry_failure *f = registry_entry_failure(e, 0);
    bool again = f != NULL && f->stamp == stamp && !rl->force;
    if (!again) {
        e->n_failures = 0;
        registry_entry_fail(e, 0, stamp, why);
    }
    bool serving = e->n_served > 0;
    pthread_mutex_unlock(&r->lock);
    if (!again)
        log_msg(LOG_ERROR, "model %s: load failed: %s; %s", rl->name, why,
                serving ? "the served versions stay" : "nothing served");
    snprintf(err, err_len, "%s", why);
    return INFER_INVALID;
}

/* Plan: the versions the repository wants (from text) and, for each,
 * whether the served one stays (unchanged, not forced) or an unchanged
 * failure is not retried (not forced). Creates the entry of a new name.
 * Returns INFER_OK, or INFER_INVALID with err set (a bad config.json or
 * version folder, a full table). */
static enum infer_status reload_plan(struct registry *r, struct reload *rl, const char *text,
                                     char *err, size_t err_len)
{
    char why[256];
    rl->n = wanted_versions(r, rl->name, text, rl->cfgs, why, sizeof why);
    pthread_mutex_lock(&r->lock);
    rl->e = registry_find_locked(r, rl->name);
    if (rl->e == NULL)
        rl->e = registry_add_locked(r, rl->name);
    if (rl->e == NULL) {
        pthread_mutex_unlock(&r->lock);
        for (int i = 0; i < rl->n; i++)
            model_config_free(&rl->cfgs[i]);
        snprintf(err, err_len, "too many models (at most %d)", MODEL_MAX_MODELS);
        return INFER_INVALID;
    }
    if (rl->n < 0)
        return plan_failed_unlock(r, rl, text, why, err, err_len);
    const struct registry_entry *e = rl->e;
    for (int i = 0; i < rl->n; i++) {
        rl->versions[i] = rl->cfgs[i].version;
        rl->stamps[i] = stamp_of(text, rl->cfgs[i].path);
        for (int j = 0; j < e->n_served && !e->placeholder; j++)
            if (e->served[j]->cfg.version == rl->versions[i] && e->stamps[j] == rl->stamps[i])
                rl->keep[i] = e->served[j];
        const struct registry_failure *f = registry_entry_failure(e, rl->versions[i]);
        rl->skip[i] = !rl->force && rl->keep[i] == NULL && f != NULL && f->stamp == rl->stamps[i];
        if (rl->skip[i])
            rl->fails[rl->n_fails++] = *f;
    }
    rl->n_old_fails = rl->n_fails;
    pthread_mutex_unlock(&r->lock);
    return INFER_OK;
}

static bool any_loading(struct model *const *models, int n)
{
    for (int i = 0; i < n; i++)
        if (models[i] != NULL && model_get_state(models[i]) == MODEL_LOADING)
            return true;
    return false;
}

/* Wait until none of models is still loading: each instance that becomes
 * ready or fails broadcasts the registry's wake (build). Returns INFER_OK, or
 * INFER_UNAVAILABLE when the manager is asked to stop first. */
static enum infer_status wait_loaded(struct registry *r, struct model *const *models, int n)
{
    pthread_mutex_lock(&r->lock);
    while (!r->svc.stop && any_loading(models, n)) {
        clock_cond_wait_until(&r->wake, &r->lock, clock_now_ns() + IDLE_NS);
    }
    bool loading = any_loading(models, n);
    pthread_mutex_unlock(&r->lock);
    return loading ? INFER_UNAVAILABLE : INFER_OK;
}

/* Build: start each planned version beside the served ones and wait until
 * every one is ready or failed; a failed one is freed and recorded in
 * rl->fails. Returns INFER_OK, or INFER_UNAVAILABLE with err set (the manager is
 * stopping: nothing built is kept, the entry is unchanged). */
static enum infer_status reload_build(struct registry *r, struct reload *rl, char *err,
                                      size_t err_len)
{
    int n_build = 0;
    for (int i = 0; i < rl->n; i++) {
        if ((rl->keep[i] && !rl->force) || rl->skip[i]) {
            model_config_free(&rl->cfgs[i]);
            continue;
        }
        rl->keep[i] = NULL;
        char why[256];
        rl->builds[i] = build(r, &rl->cfgs[i], why, sizeof why);
        if (rl->builds[i] == NULL) {
            add_fail(rl, rl->versions[i], rl->stamps[i], why);
            continue;
        }
        model_run(rl->builds[i]);
        n_build++;
    }
    if (n_build > 0 && wait_loaded(r, rl->builds, rl->n) != INFER_OK) {
        for (int i = 0; i < rl->n; i++) {
            if (rl->builds[i] != NULL)
                registry_free_model(rl->builds[i]);
            rl->builds[i] = NULL;
        }
        snprintf(err, err_len, "the server is shutting down");
        return INFER_UNAVAILABLE;
    }
    for (int i = 0; i < rl->n; i++) {
        struct model *m = rl->builds[i];
        if (m == NULL || model_get_state(m) == MODEL_READY)
            continue;
        char why[256];
        model_get_error(m, why, sizeof why);
        add_fail(rl, m->cfg.version, rl->stamps[i], why);
        registry_free_model(m);
        rl->builds[i] = NULL;
    }
    return INFER_OK;
}

/* The served set after the reload: what loaded, what was kept, and the old
 * version wherever a rebuild failed; the start-up failures when there is
 * nothing better. Lock held. Returns the count. */
static int next_served_locked(const struct reload *rl, struct model **next, uint64_t *stamps)
{
    const struct registry_entry *e = rl->e;
    int n = 0;
    for (int i = 0; i < rl->n; i++) {
        struct model *m = rl->builds[i] ? rl->builds[i] : rl->keep[i];
        uint64_t stamp = rl->stamps[i];
        for (int j = 0; m == NULL && !e->placeholder && j < e->n_served; j++) {
            if (e->served[j]->cfg.version == rl->versions[i]) {
                m = e->served[j];
                stamp = e->stamps[j];
            }
        }
        if (m != NULL) {
            stamps[n] = stamp;
            next[n++] = m;
        }
    }
    if (n == 0 && e->placeholder) {
        for (int j = 0; j < e->n_served; j++) {
            stamps[n] = e->stamps[j];
            next[n++] = e->served[j];
        }
    }
    return n;
}

/* Swap: install the new served set in one step, retire the versions that
 * left it (into rl->dropped: the registry's references are dropped after
 * unlocking), and keep this attempt's failures on the entry. */
static void reload_swap(struct registry *r, struct reload *rl)
{
    struct model *next[MODEL_MAX_VERSIONS];
    uint64_t next_stamps[MODEL_MAX_VERSIONS];
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = rl->e;
    int n_next = next_served_locked(rl, next, next_stamps);
    for (int j = 0; j < e->n_served; j++) {
        bool stays = false;
        for (int i = 0; i < n_next; i++)
            stays = stays || next[i] == e->served[j];
        if (!stays) {
            registry_retire_locked(r, e->served[j]);
            rl->dropped[rl->n_dropped++] = e->served[j];
        }
    }
    memcpy(e->served, next, sizeof next[0] * (size_t)n_next);
    memcpy(e->stamps, next_stamps, sizeof next_stamps[0] * (size_t)n_next);
    e->n_served = n_next;
    e->placeholder = n_next > 0 && model_get_state(next[0]) == MODEL_FAILED;
    e->unloaded = false;
    e->n_failures = 0;
    for (int i = 0; i < rl->n_fails; i++) {
        registry_entry_fail(e, rl->fails[i].version, rl->fails[i].stamp, rl->fails[i].why);
        if (i < rl->n_old_fails)
            e->load_failures--; /* counted when it happened */
    }
    pthread_mutex_unlock(&r->lock);
}

/* Log what the reload did and drop the registry's references to the
 * retired versions. Returns INFER_OK, or INFER_INVALID with err set to the
 * first new failure. */
static enum infer_status reload_report(struct reload *rl, char *err, size_t err_len)
{
    double took = (double)(clock_now_ns() - rl->t0) / 1e9;
    for (int i = 0; i < rl->n; i++) {
        if (rl->builds[i] == NULL)
            continue;
        struct log_field fields[] = {
            {"model", LOG_STR, rl->name, 0},
            {"version", LOG_INT, NULL, rl->builds[i]->cfg.version},
            {"load_ms", LOG_MS, NULL, (int64_t)(model_load_seconds(rl->builds[i]) * 1e9)},
            {"swap_ms", LOG_MS, NULL, (int64_t)(took * 1e9)},
            {"replaced", LOG_INT, NULL, 0},
        };
        for (int j = 0; j < rl->n_dropped; j++)
            if (rl->dropped[j]->cfg.version == rl->builds[i]->cfg.version)
                fields[4].num = 1;
        log_fields(LOG_INFO, "model swapped in", fields, 5);
    }
    for (int i = rl->n_old_fails; i < rl->n_fails; i++)
        log_msg(LOG_ERROR, "model %s version %d: load failed: %s; %s", rl->name,
                rl->fails[i].version, rl->fails[i].why,
                "the previous version, if any, stays served");
    for (int i = 0; i < rl->n_dropped; i++) {
        log_msg(LOG_INFO, "model %s version %d: swapped out, draining %d queued request(s)",
                rl->name, rl->dropped[i]->cfg.version, batch_queue_length(&rl->dropped[i]->queue));
        model_release(rl->dropped[i]);
    }
    if (rl->n_fails == rl->n_old_fails)
        return INFER_OK;
    snprintf(err, err_len, "version %d: %s", rl->fails[rl->n_old_fails].version,
             rl->fails[rl->n_old_fails].why);
    return INFER_INVALID;
}

/* (Re)load model name from text (config.json's or an override): plan,
 * build, swap. Returns INFER_OK, or a status with err set when
 * something failed (what did load is served, the rest stays as it was). */
static enum infer_status reload(struct registry *r, const char *name, const char *text, bool force,
                                char *err, size_t err_len)
{
    struct reload rl = {.name = name, .force = force, .t0 = clock_now_ns()};
    enum infer_status rc = reload_plan(r, &rl, text, err, err_len);
    if (rc == INFER_OK)
        rc = reload_build(r, &rl, err, err_len);
    if (rc != INFER_OK)
        return rc;
    reload_swap(r, &rl);
    return reload_report(&rl, err, err_len);
}

/* ---- unload and poll ---- */

/* Stop serving model name: its versions drain and are freed. forget: also
 * drop the entry (its folder is gone). Returns INFER_OK, or INFER_NOT_FOUND
 * when the name is unknown. */
static enum infer_status unload(struct registry *r, const char *name, bool forget)
{
    struct model *dropped[MODEL_MAX_VERSIONS];
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = registry_find_locked(r, name);
    if (e == NULL) {
        pthread_mutex_unlock(&r->lock);
        return INFER_NOT_FOUND;
    }
    int n = e->n_served;
    for (int i = 0; i < n; i++) {
        dropped[i] = e->served[i];
        registry_retire_locked(r, dropped[i]);
    }
    e->n_served = 0;
    e->unloaded = true;
    e->placeholder = false;
    e->n_failures = 0;
    if (forget)
        registry_remove_locked(r, e);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < n; i++) {
        log_msg(LOG_INFO, "model %s version %d: unloaded, draining %d queued request(s)", name,
                dropped[i]->cfg.version, batch_queue_length(&dropped[i]->queue));
        model_release(dropped[i]);
    }
    return INFER_OK;
}

/* Poll: (re)load every model folder whose files changed; unload those gone. */
static void rescan(struct registry *r)
{
    char names[MODEL_MAX_MODELS][MODEL_NAME_MAX];
    char err[512];
    int n = model_repo_list(r->cfg->model_repository, names, MODEL_MAX_MODELS, err, sizeof err);
    if (n < 0) {
        log_msg(LOG_ERROR, "repository poll: %s; nothing changed", err);
        return;
    }
    char gone[MODEL_MAX_MODELS][MODEL_NAME_MAX];
    int n_gone = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++) {
        bool present = false;
        for (int j = 0; j < n && !present; j++)
            present = strcmp(names[j], r->entries[i]->name) == 0;
        if (!present)
            snprintf(gone[n_gone++], MODEL_NAME_MAX, "%s", r->entries[i]->name);
    }
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < n_gone; i++)
        unload(r, gone[i], true);
    for (int i = 0; i < n; i++) {
        char *text = model_repo_read_config(r->cfg->model_repository, names[i], err, sizeof err);
        if (text == NULL)
            continue; /* being replaced: the next poll sees it */
        reload(r, names[i], text, false, err, sizeof err); /* logged; the next poll retries */
        free(text);
    }
}

/* A load that failed for a model the registry did not know leaves no entry
 * behind: otherwise failed loads of made-up names fill the table until a
 * restart. An entry that serves something (a version that loaded, or a
 * placeholder) stays. */
static void forget_if_empty(struct registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = registry_find_locked(r, name);
    if (e != NULL && e->n_served == 0)
        registry_remove_locked(r, e);
    pthread_mutex_unlock(&r->lock);
}

/* Run job; sets its status and message (never a file path). */
static void run_job(struct registry *r, struct registry_job *job)
{
    job->status = INFER_OK;
    job->message[0] = '\0';
    if (job->kind == REGISTRY_UNLOAD) {
        job->status = unload(r, job->name, false);
        if (job->status != INFER_OK)
            snprintf(job->message, sizeof job->message, "no model named '%s' in the repository",
                     job->name);
        return;
    }
    char err[512];
    char *text = job->config;
    if (text == NULL) {
        text = model_repo_read_config(r->cfg->model_repository, job->name, err, sizeof err);
        if (text == NULL) {
            log_msg(LOG_WARN, "model %s: load refused: %s", job->name, err);
            job->status = INFER_NOT_FOUND;
            snprintf(job->message, sizeof job->message, "model %s: %.300s", job->name, err);
            redact_paths(job->message);
            return;
        }
    }
    pthread_mutex_lock(&r->lock);
    bool existed = registry_find_locked(r, job->name) != NULL;
    pthread_mutex_unlock(&r->lock);
    enum infer_status rc = reload(r, job->name, text, true, err, sizeof err);
    if (rc != INFER_OK) {
        job->status = rc;
        snprintf(job->message, sizeof job->message, "model %s: %.300s", job->name, err);
        redact_paths(job->message);
        if (!existed)
            forget_if_empty(r, job->name);
    }
    if (text != job->config)
        free(text);
}

/* ---- the manager thread ---- */

/* Free the retired models no one holds any more. Lock held; dropped while
 * freeing. Returns whether it dropped the lock. */
static bool free_retired_locked(struct registry *r)
{
    bool unlocked = false;
    for (struct model **p = &r->retired; *p != NULL;) {
        struct model *m = *p;
        if (atomic_load(&m->refs) > 0) {
            p = &m->next;
            continue;
        }
        *p = m->next;
        pthread_mutex_unlock(&r->lock);
        unlocked = true;
        double drained = (double)(clock_now_ns() - m->started_ns) / 1e9;
        char name[MODEL_NAME_MAX];
        int version = m->cfg.version;
        snprintf(name, sizeof name, "%s", m->cfg.name);
        registry_free_model(m);
        /* Hand the version's memory back to the system: without this, the
         * malloc arenas of its exited threads keep it (the image path sets a
         * high trim threshold), and RSS grows with each reload. */
        malloc_trim(0);
        log_msg(LOG_INFO, "model %s version %d: freed after draining for %.3f s", name, version,
                drained);
        pthread_mutex_lock(&r->lock);
        p = &r->retired; /* the list may have changed */
    }
    return unlocked;
}

/* Log the start-up loads that ended, and record the failed ones. Lock
 * held; dropped to release each. Returns whether it dropped the lock. */
static bool report_pending_locked(struct registry *r)
{
    bool unlocked = false;
    for (struct model **p = &r->pending; *p != NULL;) {
        struct model *m = *p;
        enum model_state state = model_get_state(m);
        if (state == MODEL_LOADING) {
            p = &m->next;
            continue;
        }
        *p = m->next;
        m->next = NULL;
        if (state == MODEL_READY) {
            log_msg(LOG_INFO, "model %s version %d: loaded in %.3f s", m->cfg.name, m->cfg.version,
                    model_load_seconds(m));
        } else {
            char why[256];
            model_get_error(m, why, sizeof why);
            struct registry_entry *e = registry_find_locked(r, m->cfg.name);
            for (int j = 0; e != NULL && j < e->n_served; j++) {
                if (e->served[j] == m) {
                    registry_entry_fail(e, m->cfg.version, e->stamps[j], why);
                    e->placeholder = true;
                }
            }
            log_msg(LOG_ERROR, "model %s version %d: load failed: %s", m->cfg.name, m->cfg.version,
                    why);
        }
        pthread_mutex_unlock(&r->lock);
        unlocked = true;
        model_release(m);
        pthread_mutex_lock(&r->lock);
        p = &r->pending;
    }
    return unlocked;
}

/* Jobs that will not run end now, with INFER_UNAVAILABLE. Lock held;
 * dropped. */
static void refuse_jobs_unlock(struct registry *r)
{
    struct registry_job *left = r->jobs;
    r->jobs = r->jobs_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    while (left != NULL) {
        struct registry_job *next = left->next;
        left->status = INFER_UNAVAILABLE;
        snprintf(left->message, sizeof left->message, "the server is shutting down");
        left->done(left);
        left = next;
    }
}

static void *manager_main(void *arg)
{
    struct registry *r = arg;
    const struct inferd_config *cfg = r->cfg;
    bool poll = cfg->model_control_mode == CONTROL_POLL;
    uint64_t poll_ns = (uint64_t)cfg->repository_poll_s * 1000000000u;
    uint64_t next_poll = clock_now_ns() + poll_ns;
    pthread_mutex_lock(&r->lock);
    while (!r->svc.stop) {
        if (r->jobs != NULL) {
            struct registry_job *job = r->jobs;
            r->jobs = job->next;
            pthread_mutex_unlock(&r->lock);
            run_job(r, job);
            job->done(job);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        if (poll && (r->rescan || clock_now_ns() >= next_poll)) {
            r->rescan = false;
            pthread_mutex_unlock(&r->lock);
            rescan(r);
            next_poll = clock_now_ns() + poll_ns;
            pthread_mutex_lock(&r->lock);
            continue;
        }
        /* Wait only after a pass that held the lock throughout: an event
         * broadcast while it was dropped would otherwise be missed. */
        bool unlocked = free_retired_locked(r);
        unlocked = report_pending_locked(r) || unlocked;
        if (unlocked)
            continue;
        uint64_t wake_at = clock_now_ns() + IDLE_NS;
        if (poll && next_poll < wake_at)
            wake_at = next_poll;
        clock_cond_wait_until(&r->wake, &r->lock, wake_at);
    }
    refuse_jobs_unlock(r);
    return NULL;
}

int registry_manager_start(struct registry *r, char *err, size_t err_len)
{
    struct model *start[MODEL_MAX_MODELS * MODEL_MAX_VERSIONS];
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++) {
        struct registry_entry *e = r->entries[i];
        for (int j = 0; j < e->n_served; j++) {
            struct model *m = e->served[j];
            if (m->n_workers == 0)
                continue;
            model_acquire(m);
            m->next = r->pending;
            r->pending = m;
            start[n++] = m;
        }
    }
    pthread_mutex_unlock(&r->lock);
    /* Without the lock: an instance that cannot start reports at once
     * through registry_wake, which takes it. */
    for (int i = 0; i < n; i++)
        model_run(start[i]);
    return service_start(&r->svc, &r->lock, &r->wake, NULL, manager_main, r, "model manager", err,
                         err_len);
}

void registry_manager_stop(struct registry *r)
{
    if (!r->svc.running)
        return;
    service_stop(&r->svc);
    while (r->pending != NULL) {
        struct model *m = r->pending;
        r->pending = m->next;
        m->next = NULL;
        model_release(m);
    }
}

void registry_manager_destroy(struct registry *r)
{
    registry_manager_stop(r);
    registry_destroy(r);
}

enum infer_status registry_manager_submit(struct registry *r, struct registry_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->svc.stop || !r->svc.running) {
        pthread_mutex_unlock(&r->lock);
        return INFER_UNAVAILABLE;
    }
    if (r->jobs == NULL)
        r->jobs = job;
    else
        r->jobs_tail->next = job;
    r->jobs_tail = job;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    return INFER_OK;
}

void registry_manager_rescan(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    r->rescan = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
}
