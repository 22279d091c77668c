/* topk.c - top-k classes with softmax (see topk.h). */
#include "topk.h"

#include <math.h>
#include <stdlib.h>

/* Whether a ranks before b: larger value first, then lower index; NaN last. */
static int better(double a, int ia, double b, int ib)
{
    if (isnan(b))
        return !isnan(a) || ia < ib;
    if (isnan(a))
        return 0;
    return a > b || (a == b && ia < ib);
}

int topk_select(const double *values, int n, int k, int softmax, struct topk_entry *out)
{
    if (k > n)
        k = n;
    if (k <= 0)
        return 0;
    int count = 0;
    /* Insertion into a sorted list of k: O(n k), fine for class counts. */
    for (int i = 0; i < n; i++) {
        double v = values[i];
        if (count == k && !better(v, i, out[k - 1].score, out[k - 1].index))
            continue;
        int pos = count < k ? count++ : k - 1;
        while (pos > 0 && better(v, i, out[pos - 1].score, out[pos - 1].index)) {
            out[pos] = out[pos - 1];
            pos--;
        }
        out[pos].index = i;
        out[pos].score = v;
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
