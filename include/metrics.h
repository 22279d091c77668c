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

/* A count and a cumulative duration (Triton's statistics extension). */
struct metrics_duration {
    atomic_uint_least64_t count;
    atomic_uint_least64_t ns;
};

/* Successful executions of one batch size, and their time in each phase. */
struct metrics_batch_stat {
    atomic_uint_least64_t count;
    atomic_uint_least64_t input_ns, infer_ns, output_ns;
};

/* What GET /v2/models/<name>/stats reports (Triton's statistics extension).
 * success and fail count answers to the model's requests; queue and the
 * compute_* durations are per successful request (each request of a batch
 * adds the batch's durations, as Triton does); batches is per execution. */
struct metrics_stats {
    struct metrics_duration success, fail;
    struct metrics_duration queue, compute_input, compute_infer, compute_output;
    atomic_uint_least64_t inference_count;   /* samples of successful executions */
    atomic_uint_least64_t execution_count;   /* successful executions */
    atomic_uint_least64_t last_inference_ms; /* wall clock, ms since the epoch; 0: none */
    struct metrics_batch_stat *batches;      /* [0..max_batch], by samples; NULL: none */
    int max_batch;
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
    struct metrics_stats stats;
};

void metrics_model_init(struct metrics_model *m);
/* Make room for per-batch-size statistics of batches of 1..max_batch samples.
 * Returns 0, or -1 when out of memory (then no batch is recorded). */
int metrics_model_init_batches(struct metrics_model *m, int max_batch);
/* Free what metrics_model_init_batches allocated. */
void metrics_model_free(struct metrics_model *m);
void metrics_observe(struct metrics_histogram *h, double value);
/* Count a finished request of a model by its HTTP status. */
void metrics_count_request(struct metrics_model *m, int status);

/* Record a finished request in the statistics: a success (2xx) or a
 * failure, and its time from arrival to answer. */
void metrics_stats_request(struct metrics_model *m, int status, uint64_t ns);

/* One successful execution of samples samples, and the time it spent
 * preparing inputs, in the forward call and extracting outputs. */
struct metrics_execution {
    int64_t samples;
    uint64_t input_ns, infer_ns, output_ns;
    uint64_t requests; /* requests it answered */
    uint64_t queue_ns; /* their queue times, summed */
};
/* Record it (per-request durations count once for each of its requests). */
void metrics_stats_execution(struct metrics_model *m, const struct metrics_execution *e);

/* Append every model's metrics, family by family, in Prometheus text
 * format (HELP and TYPE lines included). labels[i] is model i's label set
 * without braces, e.g. model="fashion_mnist",version="1". */
void metrics_render_models(struct strbuf *sb, const char *const *labels,
                           const struct metrics_model *const *ms, int n);

/* The status codes counted per model, in the order of requests_failed. */
extern const int metrics_status_codes[METRICS_STATUS_CODES];

#endif
