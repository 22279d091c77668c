/* topk.h - the k most likely classes of a row of scores: softmax over the
 * row, then the k largest, highest first (ties: the lower index first; NaN
 * ranks below every number), in O(n log k) time. */
#ifndef INFERD_TOPK_H
#define INFERD_TOPK_H

#include <stddef.h>
#include <stdint.h>

struct topk_entry {
    int index;
    double score; /* softmax probability, or the raw value */
};

/* Fill out (room for min(k, n) entries) with the min(k, n) best of the n
 * values, best first (a k over n is clamped to n, as Triton does; k <= 0
 * gives none). Scores are the values (raw when softmax is 0,
 * else softmax probabilities, computed stably in double; a NaN value makes
 * every probability NaN). Returns the count written; it cannot fail. */
int topk_select(const double *values, int n, int k, int softmax, struct topk_entry *out);

#endif
