/* metrics.h - the server's counters and histograms, updated lock-free by
 * every thread and rendered in Prometheus text exposition format. */
#ifndef INFERD_METRICS_H
#define INFERD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "strbuf.h"

#define METRICS_MAX_BUCKETS 20
#define METRICS_STATUS_CODES 9

struct metrics_histogram {
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    int n_bounds;
    atomic_uint_least64_t counts[METRICS_MAX_BUCKETS + 1];
    atomic_uint_least64_t count;
    atomic_uint_least64_t sum_micro; /* sum, in millionths of the unit */
};

/* Per-model metrics. */
struct metrics_model {
    atomic_uint_least64_t requests_ok;
    atomic_uint_least64_t requests_failed[METRICS_STATUS_CODES];
    atomic_uint_least64_t inferences; /* samples run */
    atomic_uint_least64_t executions; /* forward calls */
    atomic_int_least64_t queue_pending;
    atomic_int_least64_t queue_capacity; /* --max-queue: 503 beyond it */
    struct metrics_histogram request_seconds, queue_seconds, compute_seconds, batch_size;
};

void metrics_model_init(struct metrics_model *m);
void metrics_observe(struct metrics_histogram *h, double value);
/* Count a finished request of a model by its HTTP status. */
void metrics_count_request(struct metrics_model *m, int status);

/* Append every model's metrics, family by family, in Prometheus text
 * format (HELP and TYPE lines included). */
void metrics_render_models(struct strbuf *sb, const char *const *names,
                           const struct metrics_model *const *ms, int n);

/* The status codes counted per model, in the order of requests_failed. */
extern const int metrics_status_codes[METRICS_STATUS_CODES];

#endif
