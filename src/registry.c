/* registry.c - served models by name and version; loads, swaps, unloads
 * (see registry.h). */
#include "registry.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "redact.h"

#define WATCH_NS 5000000u /* how often a load in progress is looked at */

static void on_release(void *arg)
{
    struct registry *r = arg;
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* ---- building and freeing versions ---- */

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

/* A new model for cfg (taken over), not started. NULL with err set. */
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
    m->released = on_release;
    m->released_arg = r;
    return m;
}

/* A model listed as unavailable with why (start-up only). */
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
    m->released = on_release;
    m->released_arg = r;
    return m;
}

static void free_model(struct model *m)
{
    model_close(m);
    model_destroy(m);
    free(m);
}

/* ---- entries (the lock is held, or no other thread runs yet) ---- */

static struct registry_entry *find_entry(struct registry *r, const char *name)
{
    for (int i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i]->name, name) == 0)
            return r->entries[i];
    return NULL;
}

static struct registry_entry *add_entry(struct registry *r, const char *name)
{
    if (r->n_entries == MODEL_MAX_MODELS)
        return NULL;
    struct registry_entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    snprintf(e->name, sizeof e->name, "%s", name);
    r->entries[r->n_entries++] = e;
    return e;
}

static void add_failure(struct registry_entry *e, int version, uint64_t stamp, const char *why)
{
    if (e->n_failures == MODEL_MAX_VERSIONS + 1)
        return;
    struct registry_failure *f = &e->failures[e->n_failures++];
    f->version = version;
    f->stamp = stamp;
    snprintf(f->why, sizeof f->why, "%s", why);
    e->load_failures++;
}

static const struct registry_failure *failure_of(const struct registry_entry *e, int version)
{
    for (int i = 0; i < e->n_failures; i++)
        if (e->failures[i].version == version)
            return &e->failures[i];
    return NULL;
}

/* ---- what the repository wants ---- */

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

static int install_initial(struct registry *r, const char *name)
{
    struct registry_entry *e = add_entry(r, name);
    if (e == NULL)
        return -1;
    char why[256];
    struct model_config cfgs[MODEL_MAX_VERSIONS];
    char *text = model_repo_read_config(r->cfg->model_repository, name, why, sizeof why);
    int n = text ? wanted_versions(r, name, text, cfgs, why, sizeof why) : -1;
    if (n < 0) {
        log_msg(LOG_ERROR, "model %s: %s", name, why);
        add_failure(e, 0, 0, why);
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
            add_failure(e, version, stamp, why);
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

int registry_init(struct registry *r, const struct inferd_config *cfg, char *err, size_t err_len)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    char names[MODEL_MAX_MODELS][MODEL_NAME_MAX];
    int n = model_repo_list(cfg->model_repository, names, MODEL_MAX_MODELS, err, err_len);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, err_len, "no model folder with a config.json in %s", cfg->model_repository);
        return -1;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0 || clock_cond_init(&r->wake) != 0) {
        snprintf(err, err_len, "cannot create the registry's lock");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (install_initial(r, names[i]) != 0) {
            snprintf(err, err_len, "out of memory");
            registry_destroy(r);
            return -1;
        }
    }
    return 0;
}

/* ---- swaps (the manager thread) ---- */

/* Wait until no model in builds is still loading; false when asked to stop
 * first. */
static bool wait_loaded(struct registry *r, struct model **builds, int n)
{
    for (;;) {
        bool loading = false;
        for (int i = 0; i < n; i++)
            loading = loading || (builds[i] && model_get_state(builds[i]) == MODEL_LOADING);
        pthread_mutex_lock(&r->lock);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (!loading || stop)
            return !loading;
        struct timespec pause = {0, WATCH_NS};
        nanosleep(&pause, NULL);
    }
}

/* Retire models (the registry's references are dropped by the caller
 * after unlocking). Lock held. */
static void retire_locked(struct registry *r, struct model *m)
{
    m->next = r->retired;
    r->retired = m;
    m->started_ns = clock_now_ns(); /* from now on: when the drain began */
}

/* (Re)load model name from text (config.json's or an override): versions
 * whose files changed (all with force) are built beside the served ones;
 * each that warms up replaces its old one, in one step for the model.
 * Returns 0, or -1 with err set when something failed (what did load is
 * served, the rest stays as it was). */
static int reload(struct registry *r, const char *name, const char *text, bool force, char *err,
                  size_t err_len)
{
    struct model_config cfgs[MODEL_MAX_VERSIONS];
    char why[256];
    uint64_t t0 = clock_now_ns();
    int n = wanted_versions(r, name, text, cfgs, why, sizeof why);
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = find_entry(r, name);
    if (e == NULL)
        e = add_entry(r, name);
    if (e == NULL) {
        pthread_mutex_unlock(&r->lock);
        for (int i = 0; i < n; i++)
            model_config_free(&cfgs[i]);
        snprintf(err, err_len, "too many models (at most %d)", MODEL_MAX_MODELS);
        return -1;
    }
    if (n < 0) {
        uint64_t stamp = stamp_of(text, "");
        const struct registry_failure *f = failure_of(e, 0);
        bool again = f != NULL && f->stamp == stamp && !force;
        if (!again) {
            e->n_failures = 0;
            add_failure(e, 0, stamp, why);
        }
        pthread_mutex_unlock(&r->lock);
        if (!again)
            log_msg(LOG_ERROR, "model %s: load failed: %s; %s", name, why,
                    e->n_served ? "the served versions stay" : "nothing served");
        snprintf(err, err_len, "%s", why);
        return -1;
    }
    /* Decide what to build (the entry is only changed by this thread). */
    struct model *builds[MODEL_MAX_VERSIONS] = {0};
    uint64_t stamps[MODEL_MAX_VERSIONS];
    struct model *keep[MODEL_MAX_VERSIONS] = {0};
    int n_build = 0;
    int versions[MODEL_MAX_VERSIONS]; /* cfgs[i] is emptied when a build takes it */
    for (int i = 0; i < n; i++) {
        versions[i] = cfgs[i].version;
        stamps[i] = stamp_of(text, cfgs[i].path);
        for (int j = 0; j < e->n_served && !e->placeholder; j++)
            if (e->served[j]->cfg.version == cfgs[i].version && e->stamps[j] == stamps[i])
                keep[i] = e->served[j];
    }
    bool skip[MODEL_MAX_VERSIONS] = {0};
    for (int i = 0; i < n; i++) {
        const struct registry_failure *f = failure_of(e, cfgs[i].version);
        skip[i] = !force && keep[i] == NULL && f != NULL && f->stamp == stamps[i];
    }
    pthread_mutex_unlock(&r->lock);
    int failed = 0;
    char first_error[300] = "";
    struct registry_failure fails[MODEL_MAX_VERSIONS];
    int n_fails = 0;
    for (int i = 0; i < n; i++)
        if (skip[i])
            fails[n_fails++] = *failure_of(e, cfgs[i].version);
    int n_old_fails = n_fails;
    for (int i = 0; i < n; i++) {
        if ((keep[i] && !force) || skip[i]) {
            model_config_free(&cfgs[i]);
            continue;
        }
        keep[i] = NULL;
        int version = cfgs[i].version;
        builds[i] = build(r, &cfgs[i], why, sizeof why);
        if (builds[i] == NULL) {
            fails[n_fails++] = (struct registry_failure){version, stamps[i], ""};
            snprintf(fails[n_fails - 1].why, sizeof fails[0].why, "%s", why);
            continue;
        }
        model_run(builds[i]);
        n_build++;
    }
    if (n_build > 0 && !wait_loaded(r, builds, n)) {
        for (int i = 0; i < n; i++)
            if (builds[i])
                free_model(builds[i]);
        snprintf(err, err_len, "the server is shutting down");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (builds[i] == NULL || model_get_state(builds[i]) == MODEL_READY)
            continue;
        struct registry_failure *f = &fails[n_fails++];
        *f = (struct registry_failure){builds[i]->cfg.version, stamps[i], ""};
        model_get_error(builds[i], f->why, sizeof f->why);
        free_model(builds[i]);
        builds[i] = NULL;
    }
    /* The new served set: what loaded, what was kept, and the old version
     * wherever a rebuild failed. */
    struct model *next[MODEL_MAX_VERSIONS];
    uint64_t next_stamps[MODEL_MAX_VERSIONS];
    int n_next = 0;
    struct model *dropped[MODEL_MAX_VERSIONS];
    int n_dropped = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < n; i++) {
        struct model *m = builds[i] ? builds[i] : keep[i];
        uint64_t stamp = stamps[i];
        if (m == NULL && !e->placeholder) {
            for (int j = 0; j < e->n_served; j++) {
                if (e->served[j]->cfg.version == versions[i]) {
                    m = e->served[j];
                    stamp = e->stamps[j];
                }
            }
        }
        if (m != NULL) {
            next_stamps[n_next] = stamp;
            next[n_next++] = m;
        }
    }
    if (n_next == 0 && e->placeholder) { /* nothing better than the start-up failures */
        for (int j = 0; j < e->n_served; j++) {
            next_stamps[n_next] = e->stamps[j];
            next[n_next++] = e->served[j];
        }
    }
    bool placeholder = n_next > 0 && model_get_state(next[0]) == MODEL_FAILED;
    for (int j = 0; j < e->n_served; j++) {
        bool stays = false;
        for (int i = 0; i < n_next; i++)
            stays = stays || next[i] == e->served[j];
        if (!stays) {
            retire_locked(r, e->served[j]);
            dropped[n_dropped++] = e->served[j];
        }
    }
    memcpy(e->served, next, sizeof next[0] * (size_t)n_next);
    memcpy(e->stamps, next_stamps, sizeof next_stamps[0] * (size_t)n_next);
    e->n_served = n_next;
    e->placeholder = placeholder;
    e->unloaded = false;
    e->n_failures = 0;
    for (int i = 0; i < n_fails; i++) {
        add_failure(e, fails[i].version, fails[i].stamp, fails[i].why);
        if (i >= n_old_fails)
            failed++;
        else
            e->load_failures--; /* counted when it happened */
    }
    pthread_mutex_unlock(&r->lock);

    double took = (double)(clock_now_ns() - t0) / 1e9;
    for (int i = 0; i < n; i++) {
        if (builds[i] == NULL)
            continue;
        struct log_field fields[] = {
            {"model", LOG_STR, name, 0},
            {"version", LOG_INT, NULL, builds[i]->cfg.version},
            {"load_ms", LOG_MS, NULL, (int64_t)(model_load_seconds(builds[i]) * 1e9)},
            {"swap_ms", LOG_MS, NULL, (int64_t)(took * 1e9)},
            {"replaced", LOG_INT, NULL, 0},
        };
        for (int j = 0; j < n_dropped; j++)
            if (dropped[j]->cfg.version == builds[i]->cfg.version)
                fields[4].num = 1;
        log_fields(LOG_INFO, "model swapped in", fields, 5);
    }
    for (int i = n_old_fails; i < n_fails; i++) {
        log_msg(LOG_ERROR, "model %s version %d: load failed: %s; %s", name, fails[i].version,
                fails[i].why, "the previous version, if any, stays served");
        if (first_error[0] == '\0')
            snprintf(first_error, sizeof first_error, "version %d: %s", fails[i].version,
                     fails[i].why);
    }
    for (int i = 0; i < n_dropped; i++) {
        log_msg(LOG_INFO, "model %s version %d: swapped out, draining %d queued request(s)", name,
                dropped[i]->cfg.version, batch_queue_length(&dropped[i]->queue));
        model_release(dropped[i]);
    }
    if (failed) {
        snprintf(err, err_len, "%s", first_error[0] ? first_error : "load failed");
        return -1;
    }
    return 0;
}

/* Stop serving model name: its versions drain and are freed. forget: also
 * drop the entry (its folder is gone). Returns 0, or -1 when unknown. */
static int unload(struct registry *r, const char *name, bool forget)
{
    struct model *dropped[MODEL_MAX_VERSIONS];
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = find_entry(r, name);
    if (e == NULL) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    int n = e->n_served;
    for (int i = 0; i < n; i++) {
        dropped[i] = e->served[i];
        retire_locked(r, dropped[i]);
    }
    e->n_served = 0;
    e->unloaded = true;
    e->placeholder = false;
    e->n_failures = 0;
    if (forget) {
        for (int i = 0; i < r->n_entries; i++)
            if (r->entries[i] == e)
                r->entries[i] = r->entries[--r->n_entries];
        free(e);
    }
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < n; i++) {
        log_msg(LOG_INFO, "model %s version %d: unloaded, draining %d queued request(s)", name,
                dropped[i]->cfg.version, batch_queue_length(&dropped[i]->queue));
        model_release(dropped[i]);
    }
    return 0;
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
        reload(r, names[i], text, false, err, sizeof err);
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
    struct registry_entry *e = find_entry(r, name);
    if (e != NULL && e->n_served == 0) {
        for (int i = 0; i < r->n_entries; i++)
            if (r->entries[i] == e)
                r->entries[i] = r->entries[--r->n_entries];
        free(e);
    }
    pthread_mutex_unlock(&r->lock);
}

static void run_job(struct registry *r, struct registry_job *job)
{
    job->status = 200;
    job->message[0] = '\0';
    if (job->kind == REGISTRY_UNLOAD) {
        if (unload(r, job->name, false) != 0) {
            job->status = 404;
            snprintf(job->message, sizeof job->message, "no model named '%s' in the repository",
                     job->name);
        }
        return;
    }
    char err[512];
    char *text = job->config;
    if (text == NULL) {
        text = model_repo_read_config(r->cfg->model_repository, job->name, err, sizeof err);
        if (text == NULL) {
            log_msg(LOG_WARN, "model %s: load refused: %s", job->name, err);
            job->status = 404;
            snprintf(job->message, sizeof job->message, "model %s: %.300s", job->name, err);
            redact_paths(job->message);
            return;
        }
    }
    pthread_mutex_lock(&r->lock);
    bool existed = find_entry(r, job->name) != NULL;
    pthread_mutex_unlock(&r->lock);
    if (reload(r, job->name, text, true, err, sizeof err) != 0) {
        job->status = strstr(err, "shutting down") ? 503 : 400;
        snprintf(job->message, sizeof job->message, "model %s: %.300s", job->name, err);
        redact_paths(job->message);
        if (!existed)
            forget_if_empty(r, job->name);
    }
    if (text != job->config)
        free(text);
}

/* ---- the manager thread ---- */

/* Free the retired models no one holds any more, and log the start-up
 * loads that ended. Lock held; dropped while freeing. */
static void housekeeping_locked(struct registry *r)
{
    for (struct model **p = &r->retired; *p != NULL;) {
        struct model *m = *p;
        if (atomic_load(&m->refs) > 0) {
            p = &m->next;
            continue;
        }
        *p = m->next;
        pthread_mutex_unlock(&r->lock);
        double drained = (double)(clock_now_ns() - m->started_ns) / 1e9;
        char name[MODEL_NAME_MAX];
        int version = m->cfg.version;
        snprintf(name, sizeof name, "%s", m->cfg.name);
        free_model(m);
        /* Hand the version's memory back to the system: without this, the
         * malloc arenas of its exited threads keep it (the image path sets a
         * high trim threshold), and RSS grows with each reload. */
        malloc_trim(0);
        log_msg(LOG_INFO, "model %s version %d: freed after draining for %.3f s", name, version,
                drained);
        pthread_mutex_lock(&r->lock);
        p = &r->retired; /* the list may have changed */
    }
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
            struct registry_entry *e = find_entry(r, m->cfg.name);
            for (int j = 0; e != NULL && j < e->n_served; j++) {
                if (e->served[j] == m) {
                    add_failure(e, m->cfg.version, e->stamps[j], why);
                    e->placeholder = true;
                }
            }
            log_msg(LOG_ERROR, "model %s version %d: load failed: %s", m->cfg.name, m->cfg.version,
                    why);
        }
        pthread_mutex_unlock(&r->lock);
        model_release(m);
        pthread_mutex_lock(&r->lock);
        p = &r->pending;
    }
}

static void *manager_main(void *arg)
{
    struct registry *r = arg;
    const struct inferd_config *cfg = r->cfg;
    uint64_t poll_ns = (uint64_t)cfg->repository_poll_s * 1000000000u;
    uint64_t next_poll = clock_now_ns() + poll_ns;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        if (r->jobs != NULL) {
            struct registry_job *job = r->jobs;
            r->jobs = job->next;
            pthread_mutex_unlock(&r->lock);
            run_job(r, job);
            job->done(job);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        bool poll = cfg->model_control_mode == CONTROL_POLL;
        if (poll && (r->rescan || clock_now_ns() >= next_poll)) {
            r->rescan = false;
            pthread_mutex_unlock(&r->lock);
            rescan(r);
            next_poll = clock_now_ns() + poll_ns;
            pthread_mutex_lock(&r->lock);
            continue;
        }
        housekeeping_locked(r);
        if (r->stop || r->jobs != NULL || r->rescan)
            continue;
        uint64_t wake_at = clock_now_ns() + 1000000000u;
        if (poll && next_poll < wake_at)
            wake_at = next_poll;
        if (r->pending != NULL || r->retired != NULL)
            wake_at = clock_now_ns() + 10 * WATCH_NS;
        struct timespec until = clock_timespec(wake_at);
        pthread_cond_timedwait(&r->wake, &r->lock, &until);
    }
    /* Jobs that will not run end now. */
    struct registry_job *left = r->jobs;
    r->jobs = r->jobs_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    while (left != NULL) {
        struct registry_job *next = left->next;
        left->status = 503;
        snprintf(left->message, sizeof left->message, "the server is shutting down");
        left->done(left);
        left = next;
    }
    return NULL;
}

int registry_start(struct registry *r, char *err, size_t err_len)
{
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++) {
        struct registry_entry *e = r->entries[i];
        for (int j = 0; j < e->n_served; j++) {
            struct model *m = e->served[j];
            if (m->n_workers == 0)
                continue;
            model_run(m);
            model_acquire(m);
            m->next = r->pending;
            r->pending = m;
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (pthread_create(&r->thread, NULL, manager_main, r) != 0) {
        snprintf(err, err_len, "cannot start the model manager thread");
        return -1;
    }
    r->started = true;
    return 0;
}

void registry_stop(struct registry *r)
{
    if (!r->started)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    r->started = false;
    while (r->pending != NULL) {
        struct model *m = r->pending;
        r->pending = m->next;
        m->next = NULL;
        model_release(m);
    }
}

void registry_destroy(struct registry *r)
{
    registry_stop(r);
    for (int i = 0; i < r->n_entries; i++) {
        struct registry_entry *e = r->entries[i];
        for (int j = 0; j < e->n_served; j++)
            free_model(e->served[j]);
        free(e);
    }
    r->n_entries = 0;
    while (r->retired != NULL) {
        struct model *m = r->retired;
        r->retired = m->next;
        free_model(m);
    }
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
}

int registry_submit(struct registry *r, struct registry_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->stop || !r->started) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    if (r->jobs == NULL)
        r->jobs = job;
    else
        r->jobs_tail->next = job;
    r->jobs_tail = job;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void registry_request_rescan(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    r->rescan = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* ---- readers ---- */

struct model *registry_acquire(struct registry *r, const char *name, int version, char *err,
                               size_t err_len)
{
    struct model *m = NULL;
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = find_entry(r, name);
    if (e == NULL) {
        snprintf(err, err_len, "no model named '%s' in the repository", name);
    } else if (e->n_served == 0) {
        snprintf(err, err_len, "model '%s' is not loaded%s", name,
                 e->unloaded ? " (it was unloaded)" : "");
    } else if (version > 0) {
        for (int i = 0; i < e->n_served; i++)
            if (e->served[i]->cfg.version == version)
                m = e->served[i];
        if (m == NULL) {
            struct strbuf sb = {0};
            for (int i = 0; i < e->n_served; i++)
                strbuf_printf(&sb, "%s%d", i ? ", " : "", e->served[i]->cfg.version);
            snprintf(err, err_len, "model %s has no version %d (served: %s)", name, version,
                     sb.data ? sb.data : "");
            free(sb.data);
        }
    } else {
        m = e->served[e->n_served - 1];
        for (int i = e->n_served - 1; i >= 0; i--) {
            if (model_get_state(e->served[i]) == MODEL_READY) {
                m = e->served[i];
                break;
            }
        }
    }
    if (m != NULL)
        model_acquire(m);
    pthread_mutex_unlock(&r->lock);
    return m;
}

bool registry_has(struct registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    bool found = find_entry(r, name) != NULL;
    pthread_mutex_unlock(&r->lock);
    return found;
}

int registry_versions(struct registry *r, const char *name, int *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = find_entry(r, name);
    for (int i = 0; e != NULL && i < e->n_served && n < max; i++)
        out[n++] = e->served[i]->cfg.version;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int registry_snapshot(struct registry *r, struct model **out, int max, bool retired)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++)
        for (int j = 0; j < r->entries[i]->n_served && n < max; j++)
            out[n++] = r->entries[i]->served[j];
    for (struct model *m = r->retired; retired && m != NULL && n < max; m = m->next)
        out[n++] = m;
    for (int i = 0; i < n; i++)
        model_acquire(out[i]);
    pthread_mutex_unlock(&r->lock);
    return n;
}

bool registry_all_ready(struct registry *r)
{
    int served = 0;
    bool ready = true;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++) {
        for (int j = 0; j < r->entries[i]->n_served; j++) {
            served++;
            ready = ready && model_get_state(r->entries[i]->served[j]) == MODEL_READY;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return ready && served > 0;
}

static void index_row(struct strbuf *sb, bool *first, const char *name, int version,
                      const char *state, const char *reason)
{
    strbuf_puts(sb, *first ? "{\"name\":" : ",{\"name\":");
    *first = false;
    strbuf_json_string(sb, name);
    if (version > 0)
        strbuf_printf(sb, ",\"version\":\"%d\"", version);
    strbuf_printf(sb, ",\"state\":\"%s\"", state);
    if (reason != NULL && reason[0]) {
        char public_reason[320];
        snprintf(public_reason, sizeof public_reason, "%s", reason);
        redact_paths(public_reason); /* the log has the paths */
        strbuf_puts(sb, ",\"reason\":");
        strbuf_json_string(sb, public_reason);
    }
    strbuf_puts(sb, "}");
}

void registry_index_json(struct registry *r, struct strbuf *sb)
{
    bool first = true;
    strbuf_puts(sb, "[");
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++) {
        const struct registry_entry *e = r->entries[i];
        const struct registry_failure *whole = failure_of(e, 0);
        for (int j = 0; j < e->n_served; j++) {
            struct model *m = e->served[j];
            enum model_state state = model_get_state(m);
            char why[300] = "";
            const struct registry_failure *f = failure_of(e, m->cfg.version);
            if (state == MODEL_FAILED)
                model_get_error(m, why, sizeof why);
            else if (f != NULL || whole != NULL)
                snprintf(why, sizeof why, "the last load failed, this version stays served: %.240s",
                         f ? f->why : whole->why);
            index_row(sb, &first, e->name, m->cfg.version, model_state_name(state), why);
        }
        for (int k = 0; k < e->n_failures; k++) {
            const struct registry_failure *f = &e->failures[k];
            bool served = e->placeholder;
            for (int j = 0; j < e->n_served; j++)
                served = served || e->served[j]->cfg.version == f->version;
            if (!served && (f->version > 0 || e->n_served == 0))
                index_row(sb, &first, e->name, f->version, "UNAVAILABLE", f->why);
        }
        if (e->n_served == 0 && e->n_failures == 0)
            index_row(sb, &first, e->name, 0, "UNAVAILABLE", e->unloaded ? "unloaded" : "");
    }
    pthread_mutex_unlock(&r->lock);
    strbuf_puts(sb, "]");
}

void registry_render_metrics(struct registry *r, struct strbuf *sb)
{
    static const enum model_state states[] = {MODEL_LOADING, MODEL_READY, MODEL_FAILED};
    pthread_mutex_lock(&r->lock);
    strbuf_puts(sb, "# HELP inferd_model_load_failures_total Loads of the model (any version) "
                    "that failed.\n# TYPE inferd_model_load_failures_total counter\n");
    for (int i = 0; i < r->n_entries; i++)
        strbuf_printf(sb, "inferd_model_load_failures_total{model=\"%s\"} %llu\n",
                      r->entries[i]->name, (unsigned long long)r->entries[i]->load_failures);
    strbuf_puts(sb, "# HELP inferd_model_load_duration_seconds Time the served version took to "
                    "load and warm up.\n# TYPE inferd_model_load_duration_seconds gauge\n");
    for (int i = 0; i < r->n_entries; i++)
        for (int j = 0; j < r->entries[i]->n_served; j++)
            strbuf_printf(sb,
                          "inferd_model_load_duration_seconds{model=\"%s\",version=\"%d\"} %.6f\n",
                          r->entries[i]->name, r->entries[i]->served[j]->cfg.version,
                          model_load_seconds(r->entries[i]->served[j]));
    strbuf_puts(sb, "# HELP inferd_model_state The served version's state (1 for the current "
                    "one).\n# TYPE inferd_model_state gauge\n");
    for (int i = 0; i < r->n_entries; i++) {
        for (int j = 0; j < r->entries[i]->n_served; j++) {
            struct model *m = r->entries[i]->served[j];
            enum model_state now = model_get_state(m);
            for (size_t s = 0; s < sizeof states / sizeof states[0]; s++)
                strbuf_printf(sb,
                              "inferd_model_state{model=\"%s\",version=\"%d\",state=\"%s\"} %d\n",
                              r->entries[i]->name, m->cfg.version, model_state_name(states[s]),
                              now == states[s]);
        }
    }
    pthread_mutex_unlock(&r->lock);
}
