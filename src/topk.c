/* topk.c - top-k classes with softmax (see topk.h).
 *
 * Selection keeps the k best seen so far in a binary heap whose root is the
 * worst of them: each of the n values costs one comparison with the root,
 * and O(log k) more when it enters. The k survivors are then sorted by
 * popping the heap. O(n log k) time, no memory beyond out. */
#include "topk.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

/* Whether a ranks before b: larger value first, then lower index; NaN last
 * (NaNs among themselves by index). */
static bool better(double a, int ia, double b, int ib)
{
    if (isnan(b))
        return !isnan(a) || ia < ib;
    if (isnan(a))
        return false;
    return a > b || (a == b && ia < ib);
}

static bool entry_better(const struct topk_entry *a, const struct topk_entry *b)
{
    return better(a->score, a->index, b->score, b->index);
}

/* Restore the heap (root: the worst entry) below position i of h[0..count). */
static void sift_down(struct topk_entry *h, int count, int i)
{
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < count && entry_better(&h[worst], &h[l]))
            worst = l;
        if (r < count && entry_better(&h[worst], &h[r]))
            worst = r;
        if (worst == i)
            return;
        struct topk_entry t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static void sift_up(struct topk_entry *h, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!entry_better(&h[parent], &h[i]))
            return;
        struct topk_entry t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

int topk_select(const double *values, int n, int k, int softmax, struct topk_entry *out)
{
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
    int count = 0;
    for (int i = 0; i < n; i++) {
        double v = values[i];
        if (count < k) {
            out[count].index = i;
            out[count].score = v;
            sift_up(out, count++);
        } else if (better(v, i, out[0].score, out[0].index)) {
            out[0].index = i;
            out[0].score = v;
            sift_down(out, count, 0);
        }
    }
    /* Heap sort: the worst goes to the end, so out ends best first. */
    for (int end = count - 1; end > 0; end--) {
        struct topk_entry t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(out, end, 0);
    }
    if (softmax) {
        double max = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
            if (values[i] > max)
                max = values[i];
        for (int i = 0; i < n; i++)
            sum += exp(values[i] - max);
        for (int j = 0; j < count; j++)
            out[j].score = exp(out[j].score - max) / sum;
    }
    return count;
}
