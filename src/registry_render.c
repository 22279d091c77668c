/* registry_render.c - the repository index and the per-model metrics
 * (see registry_render.h). */
#include "registry_render.h"

#include <stdio.h>

#include "redact.h"

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

/* e's rows: each served version, each failed version not served, or one
 * UNAVAILABLE row when there is neither. Lock held. */
static void index_entry(struct strbuf *sb, bool *first, const struct registry_entry *e)
{
    const struct registry_failure *whole = registry_entry_failure(e, 0);
    for (int j = 0; j < e->n_served; j++) {
        struct model *m = e->served[j];
        enum model_state state = model_get_state(m);
        char why[300] = "";
        const struct registry_failure *f = registry_entry_failure(e, m->cfg.version);
        if (state == MODEL_FAILED)
            model_get_error(m, why, sizeof why);
        else if (f != NULL || whole != NULL)
            snprintf(why, sizeof why, "the last load failed, this version stays served: %.240s",
                     f ? f->why : whole->why);
        index_row(sb, first, e->name, m->cfg.version, model_state_name(state), why);
    }
    for (int k = 0; k < e->n_failures; k++) {
        const struct registry_failure *f = &e->failures[k];
        bool served = e->placeholder;
        for (int j = 0; j < e->n_served; j++)
            served = served || e->served[j]->cfg.version == f->version;
        if (!served && (f->version > 0 || e->n_served == 0))
            index_row(sb, first, e->name, f->version, "UNAVAILABLE", f->why);
    }
    if (e->n_served == 0 && e->n_failures == 0)
        index_row(sb, first, e->name, 0, "UNAVAILABLE", e->unloaded ? "unloaded" : "");
}

void registry_render_index(struct registry *r, struct strbuf *sb)
{
    bool first = true;
    strbuf_puts(sb, "[");
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_entries; i++)
        index_entry(sb, &first, r->entries[i]);
    pthread_mutex_unlock(&r->lock);
    strbuf_puts(sb, "]");
}

/* inferd_model_state: one line per served version and state, 1 for the
 * current one. Lock held. */
static void state_lines(struct strbuf *sb, const struct registry_entry *e)
{
    static const enum model_state states[] = {MODEL_LOADING, MODEL_READY, MODEL_FAILED};
    for (int j = 0; j < e->n_served; j++) {
        struct model *m = e->served[j];
        enum model_state now = model_get_state(m);
        for (size_t s = 0; s < sizeof states / sizeof states[0]; s++)
            strbuf_printf(sb, "inferd_model_state{model=\"%s\",version=\"%d\",state=\"%s\"} %d\n",
                          e->name, m->cfg.version, model_state_name(states[s]), now == states[s]);
    }
}

/* inferd_model_instance_gpu_memory_bytes: one line per GPU instance of m
 * that measured its memory (none on the CPU). Lock held. */
static void instance_memory_lines(struct strbuf *sb, const char *name, struct model *m)
{
    for (int k = 0; k < m->n_workers; k++) {
        struct worker *w = &m->workers[k];
        int64_t bytes = worker_gpu_memory(w);
        if (bytes < 0)
            continue;
        strbuf_printf(sb,
                      "inferd_model_instance_gpu_memory_bytes{model=\"%s\",version=\"%d\","
                      "instance=\"%d\",device=\"cuda:%d\"} %lld\n",
                      name, m->cfg.version, w->index, w->device, (long long)bytes);
    }
}

void registry_render_metrics(struct registry *r, struct strbuf *sb)
{
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
    strbuf_puts(sb, "# HELP inferd_model_instance_gpu_memory_bytes GPU memory an instance "
                    "needs, measured at warm-up: weights, CUDA graphs and the largest batch's "
                    "workspace.\n# TYPE inferd_model_instance_gpu_memory_bytes gauge\n");
    for (int i = 0; i < r->n_entries; i++)
        for (int j = 0; j < r->entries[i]->n_served; j++)
            instance_memory_lines(sb, r->entries[i]->name, r->entries[i]->served[j]);
    strbuf_puts(sb, "# HELP inferd_model_state The served version's state (1 for the current "
                    "one).\n# TYPE inferd_model_state gauge\n");
    for (int i = 0; i < r->n_entries; i++)
        state_lines(sb, r->entries[i]);
    pthread_mutex_unlock(&r->lock);
}
