/* metrics.c - counters and histograms in Prometheus text format (see
 * metrics.h). Values are atomics: no lock on any request path. */
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const int metrics_status_codes[METRICS_STATUS_CODES] = {400, 404, 413, 415, 499, 500, 503, 504, 0};

static const double seconds_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

static void histogram_init(struct metrics_histogram *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n;
}

void metrics_model_init(struct metrics_model *m)
{
    memset(m, 0, sizeof *m);
    int ns = (int)(sizeof seconds_bounds / sizeof seconds_bounds[0]);
    histogram_init(&m->request_seconds, seconds_bounds, ns);
    histogram_init(&m->queue_seconds, seconds_bounds, ns);
    histogram_init(&m->compute_seconds, seconds_bounds, ns);
    histogram_init(&m->batch_size, batch_bounds,
                   (int)(sizeof batch_bounds / sizeof batch_bounds[0]));
}

int metrics_model_init_batches(struct metrics_model *m, int max_batch)
{
    if (max_batch < 1)
        max_batch = 1;
    m->stats.batches = calloc((size_t)max_batch + 1, sizeof *m->stats.batches);
    if (m->stats.batches == NULL)
        return -1;
    m->stats.max_batch = max_batch;
    return 0;
}

void metrics_model_free(struct metrics_model *m)
{
    free(m->stats.batches);
    m->stats.batches = NULL;
    m->stats.max_batch = 0;
}

void metrics_observe(struct metrics_histogram *h, double value)
{
    int i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    atomic_fetch_add(&h->counts[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_micro, (uint64_t)(value * 1e6 + 0.5));
}

void metrics_count_request(struct metrics_model *m, int status)
{
    if (status < 400) {
        atomic_fetch_add(&m->requests_ok, 1);
        return;
    }
    int i = 0;
    while (i < METRICS_STATUS_CODES - 1 && metrics_status_codes[i] != status)
        i++;
    atomic_fetch_add(&m->requests_failed[i], 1); /* last slot: other codes */
}

static void add_duration(struct metrics_duration *d, uint64_t count, uint64_t ns)
{
    atomic_fetch_add_explicit(&d->count, count, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->ns, ns, memory_order_relaxed);
}

void metrics_stats_request(struct metrics_model *m, int status, uint64_t ns)
{
    add_duration(status >= 200 && status < 300 ? &m->stats.success : &m->stats.fail, 1, ns);
}

void metrics_stats_execution(struct metrics_model *m, const struct metrics_execution *e)
{
    struct metrics_stats *s = &m->stats;
    uint64_t r = e->requests;
    add_duration(&s->queue, r, e->queue_ns);
    add_duration(&s->compute_input, r, r * e->input_ns);
    add_duration(&s->compute_infer, r, r * e->infer_ns);
    add_duration(&s->compute_output, r, r * e->output_ns);
    atomic_fetch_add_explicit(&s->inference_count, (uint64_t)e->samples, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->execution_count, 1, memory_order_relaxed);
    if (s->batches != NULL && e->samples >= 1 && e->samples <= s->max_batch) {
        struct metrics_batch_stat *b = &s->batches[e->samples];
        atomic_fetch_add_explicit(&b->input_ns, e->input_ns, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->infer_ns, e->infer_ns, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->output_ns, e->output_ns, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->count, 1, memory_order_relaxed);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store_explicit(&s->last_inference_ms,
                          (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u,
                          memory_order_relaxed);
}

static void family_header(struct strbuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_histogram(struct strbuf *sb, const char *name, const struct metrics_histogram *h,
                             const char *model)
{
    uint64_t cumulative = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        cumulative += atomic_load(&h->counts[i]);
        if (i < h->n_bounds)
            strbuf_printf(sb, "%s_bucket{%s,le=\"%g\"} %llu\n", name, model, h->bounds[i],
                          (unsigned long long)cumulative);
        else
            strbuf_printf(sb, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, model,
                          (unsigned long long)cumulative);
    }
    strbuf_printf(sb, "%s_sum{%s} %.6f\n", name, model, (double)atomic_load(&h->sum_micro) / 1e6);
    strbuf_printf(sb, "%s_count{%s} %llu\n", name, model, (unsigned long long)cumulative);
}

static void render_requests(struct strbuf *sb, const struct metrics_model *m, const char *model)
{
    strbuf_printf(sb, "inferd_requests_total{%s,status=\"200\"} %llu\n", model,
                  (unsigned long long)atomic_load(&m->requests_ok));
    for (int i = 0; i < METRICS_STATUS_CODES; i++) {
        char code[16];
        if (metrics_status_codes[i])
            snprintf(code, sizeof code, "%d", metrics_status_codes[i]);
        else
            strcpy(code, "other");
        strbuf_printf(sb, "inferd_requests_total{%s,status=\"%s\"} %llu\n", model, code,
                      (unsigned long long)atomic_load(&m->requests_failed[i]));
    }
}

void metrics_render_models(struct strbuf *sb, const char *const *names, /* label sets */
                           const struct metrics_model *const *ms, int n)
{
    family_header(sb, "inferd_requests_total", "counter",
                  "Requests answered per model, by HTTP status.");
    for (int i = 0; i < n; i++)
        render_requests(sb, ms[i], names[i]);
    family_header(sb, "inferd_inferences_total", "counter", "Samples run through the model.");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_inferences_total{%s} %llu\n", names[i],
                      (unsigned long long)atomic_load(&ms[i]->inferences));
    family_header(sb, "inferd_executions_total", "counter", "Forward calls (batches) run.");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_executions_total{%s} %llu\n", names[i],
                      (unsigned long long)atomic_load(&ms[i]->executions));
    family_header(sb, "inferd_queue_pending_requests", "gauge",
                  "Requests waiting in the model's queue.");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_queue_pending_requests{%s} %lld\n", names[i],
                      (long long)atomic_load(&ms[i]->queue_pending));
    family_header(sb, "inferd_queue_capacity_requests", "gauge",
                  "Most requests the model's queue holds; beyond it, 503.");
    for (int i = 0; i < n; i++)
        strbuf_printf(sb, "inferd_queue_capacity_requests{%s} %lld\n", names[i],
                      (long long)atomic_load(&ms[i]->queue_capacity));
    static const struct {
        const char *name, *help;
        size_t offset;
    } hists[] = {
        {"inferd_request_duration_seconds", "Time from request arrival to answer.",
         offsetof(struct metrics_model, request_seconds)},
        {"inferd_queue_duration_seconds", "Time requests waited in the queue.",
         offsetof(struct metrics_model, queue_seconds)},
        {"inferd_compute_duration_seconds", "Time of one forward call.",
         offsetof(struct metrics_model, compute_seconds)},
        {"inferd_batch_size", "Samples per forward call.",
         offsetof(struct metrics_model, batch_size)},
    };
    for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
        family_header(sb, hists[h].name, "histogram", hists[h].help);
        for (int i = 0; i < n; i++)
            render_histogram(
                sb, hists[h].name,
                (const struct metrics_histogram *)((const char *)ms[i] + hists[h].offset),
                names[i]);
    }
}
