/* batch_profile.h - the batch sizes an instance forms, chosen from the
 * measured cost of its forward: at warm-up each instance times the forward
 * at batch 1, 2, 4, ... up to max_batch_size, and batches up to the
 * smallest size whose cost per sample is within a few percent of the best
 * (larger batches only add latency), padding to the measured sizes where
 * padding is on. A config.json can fix the sizes instead
 * ("preferred_batch_sizes") or turn measuring off. */
#ifndef INFERD_BATCH_PROFILE_H
#define INFERD_BATCH_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define BATCH_PROFILE_MAX 24
/* A batch size is good enough when its cost per sample is at most this
 * much above the best measured. */
#define BATCH_PROFILE_TOLERANCE 0.05
/* Time one instance may spend measuring at warm-up (the sizes left when it
 * runs out are not used). */
#define BATCH_PROFILE_BUDGET_NS (20ull * 1000000000ull)

enum batch_profile_source {
    BATCH_PROFILE_OFF = 0, /* no sizes: batches up to max_batch_size */
    BATCH_PROFILE_MEASURED,
    BATCH_PROFILE_CONFIG, /* config.json's preferred_batch_sizes */
};

struct batch_profile {
    enum batch_profile_source source;
    int n;                        /* sizes measured */
    int sizes[BATCH_PROFILE_MAX]; /* ascending */
    double ns_per_sample[BATCH_PROFILE_MAX];
    bool budget_hit; /* measuring stopped before max_batch_size */
    int limit;       /* the largest batch to form; 0: max_batch_size */
    int n_preferred;
    int preferred[BATCH_PROFILE_MAX]; /* ascending, the last is limit */
};

/* The sizes to measure for max_batch: 1, 2, 4, ... below it, then
 * max_batch itself. Writes at most cap; returns the count. */
int batch_profile_sizes(int max_batch, int *sizes, int cap);

/* From p's curve (n, sizes, ns_per_sample): limit = the smallest size
 * whose cost per sample is within tolerance of the best; preferred = the
 * measured sizes up to limit. Sets source to MEASURED; with no curve, OFF. */
void batch_profile_choose(struct batch_profile *p, double tolerance);

/* Sizes fixed by config (ascending, each in [1, max_batch]): limit = the
 * largest, preferred = them. With n == 0, OFF. */
void batch_profile_fixed(struct batch_profile *p, const int *sizes, int n);

/* One timed forward at batch b: returns 0 with *ns set, or -1 with err set. */
typedef int (*batch_profile_run)(void *arg, int b, uint64_t *ns, char *err, size_t err_len);

/* Measure the forward with run at each size of batch_profile_sizes(max_batch):
 * two untimed calls per size (a new shape), then rounds timing every size
 * once each (the fastest call per size counts): at least two rounds, more
 * while the timed calls have taken under 0.6 s and budget_ns has not
 * passed. Sizes whose warm-up would start past half the budget are left
 * out (budget_hit; size 1 is always measured). Then chooses
 * (batch_profile_choose). Returns 0, or -1 with err set (a forward
 * failed). */
int batch_profile_measure(struct batch_profile *p, int max_batch, uint64_t budget_ns,
                          batch_profile_run run, void *arg, char *err, size_t err_len);

/* The rows a batch of rows samples is padded to: the smallest preferred size
 * that holds it, or rows itself when none does (or there are none). */
int batch_profile_pad_to(const struct batch_profile *p, int rows);

/* Append p as a JSON object: {"source":..,"limit":..,"preferred":[..],
 * "curve":[{"batch":b,"ms_per_sample":x},..],"budget_hit":..}. */
void batch_profile_json(const struct batch_profile *p, struct strbuf *sb);

/* One line for the log: "1:58.1 2:45.0 4:41.2 ..." (batch:ms per sample). */
void batch_profile_curve_text(const struct batch_profile *p, char *buf, size_t len);

#endif
