/* api_stats.c - per-model statistics (Triton's statistics extension) and
 * the effective model configuration. */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "model_config_json.h"
#include "redact.h"

static void put_duration(struct strbuf *sb, const char *name, const struct metrics_duration *d)
{
    strbuf_printf(sb, "\"%s\":{\"count\":%llu,\"ns\":%llu}", name,
                  (unsigned long long)atomic_load_explicit(&d->count, memory_order_relaxed),
                  (unsigned long long)atomic_load_explicit(&d->ns, memory_order_relaxed));
}

static void put_batch_phase(struct strbuf *sb, const char *name, uint64_t count,
                            const atomic_uint_least64_t *ns)
{
    strbuf_printf(sb, ",\"%s\":{\"count\":%llu,\"ns\":%llu}", name, (unsigned long long)count,
                  (unsigned long long)atomic_load_explicit(ns, memory_order_relaxed));
}

/* One $model_stat object. inferd has no response cache: cache_hit and
 * cache_miss are always zero, listed for clients that read them. */
static void put_model_stats(struct strbuf *sb, const struct model *m)
{
    const struct metrics_stats *s = &m->metrics.stats;
    strbuf_puts(sb, "{\"name\":");
    strbuf_json_string(sb, m->cfg.name);
    strbuf_printf(sb,
                  ",\"version\":\"%d\",\"last_inference\":%llu,\"inference_count\":%llu"
                  ",\"execution_count\":%llu,\"inference_stats\":{",
                  m->cfg.version, (unsigned long long)atomic_load(&s->last_inference_ms),
                  (unsigned long long)atomic_load(&s->inference_count),
                  (unsigned long long)atomic_load(&s->execution_count));
    put_duration(sb, "success", &s->success);
    strbuf_puts(sb, ",");
    put_duration(sb, "fail", &s->fail);
    strbuf_puts(sb, ",");
    put_duration(sb, "queue", &s->queue);
    strbuf_puts(sb, ",");
    put_duration(sb, "compute_input", &s->compute_input);
    strbuf_puts(sb, ",");
    put_duration(sb, "compute_infer", &s->compute_infer);
    strbuf_puts(sb, ",");
    put_duration(sb, "compute_output", &s->compute_output);
    strbuf_puts(sb, ",\"cache_hit\":{\"count\":0,\"ns\":0},\"cache_miss\":{\"count\":0,\"ns\":0}}"
                    ",\"batch_stats\":[");
    bool first = true;
    for (int b = 1; s->batches != NULL && b <= s->max_batch; b++) {
        const struct metrics_batch_stat *bs = &s->batches[b];
        uint64_t count = atomic_load_explicit(&bs->count, memory_order_relaxed);
        if (count == 0)
            continue;
        strbuf_printf(sb, "%s{\"batch_size\":%d", first ? "" : ",", b);
        put_batch_phase(sb, "compute_input", count, &bs->input_ns);
        put_batch_phase(sb, "compute_infer", count, &bs->infer_ns);
        put_batch_phase(sb, "compute_output", count, &bs->output_ns);
        strbuf_puts(sb, "}");
        first = false;
    }
    strbuf_puts(sb, "]}");
}

static enum route_outcome reply_stats(struct http_exchange *ex, struct model *only)
{
    struct server *srv = ex->srv;
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"model_stats\":[");
    if (only != NULL) {
        put_model_stats(&sb, only);
    } else {
        /* every served version (those swapped out and draining are not) */
        struct model *all[REGISTRY_SNAPSHOT_MAX];
        int n = registry_snapshot(&srv->registry, all, REGISTRY_SNAPSHOT_MAX, false);
        for (int i = 0; i < n; i++) {
            if (i)
                strbuf_puts(&sb, ",");
            put_model_stats(&sb, all[i]);
            model_release(all[i]);
        }
    }
    strbuf_puts(&sb, "]}");
    size_t len = 0;
    char *body = sb.failed ? (strbuf_free(&sb), NULL) : strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}

enum route_outcome api_models_stats(struct http_exchange *ex)
{
    return reply_stats(ex, NULL);
}

enum route_outcome api_model_stats(struct http_exchange *ex)
{
    struct model *m = api_lookup_version(ex);
    if (m == NULL)
        return ROUTE_REPLIED;
    reply_stats(ex, m);
    model_release(m);
    return ROUTE_REPLIED;
}

enum route_outcome api_model_config(struct http_exchange *ex)
{
    struct model *m = api_lookup_version(ex);
    if (m == NULL)
        return ROUTE_REPLIED;
    if (m->cfg.n_inputs == 0) { /* its config.json could not be used */
        char why[256];
        model_get_error(m, why, sizeof why);
        redact_paths(why); /* the log has the paths */
        http_reply_unavailable(ex, 5, "model %s has no usable configuration: %s", m->cfg.name, why);
        model_release(m);
        return ROUTE_REPLIED;
    }
    struct strbuf sb = {0};
    size_t len = 0;
    int rc = model_config_json(&m->cfg, &sb);
    if (rc == 0 && sb.len > 0) {
        /* The configuration, then what its instances measured and do. */
        sb.len--; /* the object's closing brace */
        strbuf_puts(&sb, ",\"instance_status\":[");
        for (int i = 0; i < m->n_workers; i++) {
            if (i)
                strbuf_puts(&sb, ",");
            worker_describe_json(&m->workers[i], &sb);
        }
        strbuf_puts(&sb, "]}");
    }
    model_release(m);
    char *body = rc != 0 || sb.failed ? (strbuf_free(&sb), NULL) : strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}
