/* registry.c - the served models by name and version, and their lookups
 * (see registry.h). */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "strbuf.h"

int registry_init(struct registry *r, const struct inferd_config *cfg, char *err, size_t err_len)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        snprintf(err, err_len, "cannot create the registry's lock");
        return -1;
    }
    if (clock_cond_init(&r->wake) != 0) {
        pthread_mutex_destroy(&r->lock);
        snprintf(err, err_len, "cannot create the registry's condition variable");
        return -1;
    }
    return 0;
}

void registry_free_model(struct model *m)
{
    model_close(m);
    model_destroy(m);
    free(m);
}

void registry_destroy(struct registry *r)
{
    for (int i = 0; i < r->n_entries; i++) {
        struct registry_entry *e = r->entries[i];
        for (int j = 0; j < e->n_served; j++)
            registry_free_model(e->served[j]);
        free(e);
    }
    r->n_entries = 0;
    while (r->retired != NULL) {
        struct model *m = r->retired;
        r->retired = m->next;
        registry_free_model(m);
    }
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
}

void registry_wake(void *arg)
{
    struct registry *r = arg;
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* ---- entries (the lock is held, or no other thread runs yet) ---- */

struct registry_entry *registry_find_locked(struct registry *r, const char *name)
{
    for (int i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i]->name, name) == 0)
            return r->entries[i];
    return NULL;
}

struct registry_entry *registry_add_locked(struct registry *r, const char *name)
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

void registry_remove_locked(struct registry *r, struct registry_entry *e)
{
    for (int i = 0; i < r->n_entries; i++) {
        if (r->entries[i] == e) {
            r->entries[i] = r->entries[--r->n_entries];
            break;
        }
    }
    free(e);
}

void registry_retire_locked(struct registry *r, struct model *m)
{
    m->next = r->retired;
    r->retired = m;
    m->started_ns = clock_now_ns(); /* from now on: when the drain began */
}

void registry_entry_fail(struct registry_entry *e, int version, uint64_t stamp, const char *why)
{
    if (e->n_failures == MODEL_MAX_VERSIONS + 1)
        return;
    struct registry_failure *f = &e->failures[e->n_failures++];
    f->version = version;
    f->stamp = stamp;
    snprintf(f->why, sizeof f->why, "%s", why);
    e->load_failures++;
}

const struct registry_failure *registry_entry_failure(const struct registry_entry *e, int version)
{
    for (int i = 0; i < e->n_failures; i++)
        if (e->failures[i].version == version)
            return &e->failures[i];
    return NULL;
}

/* ---- lookups ---- */

/* The served version of e numbered version; NULL with err set. */
static struct model *served_version(const struct registry_entry *e, int version, char *err,
                                    size_t err_len)
{
    for (int i = 0; i < e->n_served; i++)
        if (e->served[i]->cfg.version == version)
            return e->served[i];
    struct strbuf sb = {0};
    for (int i = 0; i < e->n_served; i++)
        strbuf_printf(&sb, "%s%d", i ? ", " : "", e->served[i]->cfg.version);
    snprintf(err, err_len, "model %s has no version %d (served: %s)", e->name, version,
             sb.data ? sb.data : "");
    free(sb.data);
    return NULL;
}

/* The newest ready served version of e, else its newest. */
static struct model *newest_ready(const struct registry_entry *e)
{
    for (int i = e->n_served - 1; i >= 0; i--)
        if (model_get_state(e->served[i]) == MODEL_READY)
            return e->served[i];
    return e->served[e->n_served - 1];
}

struct model *registry_acquire(struct registry *r, const char *name, int version, char *err,
                               size_t err_len)
{
    struct model *m = NULL;
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = registry_find_locked(r, name);
    if (e == NULL)
        snprintf(err, err_len, "no model named '%s' in the repository", name);
    else if (e->n_served == 0)
        snprintf(err, err_len, "model '%s' is not loaded%s", name,
                 e->unloaded ? " (it was unloaded)" : "");
    else if (version > 0)
        m = served_version(e, version, err, err_len);
    else
        m = newest_ready(e);
    if (m != NULL)
        model_acquire(m);
    pthread_mutex_unlock(&r->lock);
    return m;
}

bool registry_has(struct registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    bool found = registry_find_locked(r, name) != NULL;
    pthread_mutex_unlock(&r->lock);
    return found;
}

int registry_versions(struct registry *r, const char *name, int *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    struct registry_entry *e = registry_find_locked(r, name);
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
