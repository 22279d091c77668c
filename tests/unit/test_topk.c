/* test_topk.c - topk_select: order, ties, k at and past the edges, NaN,
 * softmax, and that it agrees with a full sort on random rows. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "topk.h"

static void orders_and_breaks_ties_by_index(void **state)
{
    (void)state;
    double v[5] = {1.0, 3.0, 2.0, 3.0, -1.0};
    struct topk_entry best[5];
    assert_int_equal(topk_select(v, 5, 3, 0, best), 3);
    assert_int_equal(best[0].index, 1); /* a tie goes to the lower index */
    assert_int_equal(best[1].index, 3);
    assert_int_equal(best[2].index, 2);
    assert_float_equal(best[2].score, 2.0, 0);
    double same[4] = {7, 7, 7, 7};
    assert_int_equal(topk_select(same, 4, 2, 0, best), 2);
    assert_int_equal(best[0].index, 0);
    assert_int_equal(best[1].index, 1);
}

static void k_zero_n_and_past_n(void **state)
{
    (void)state;
    double v[4] = {0.5, -2.0, 9.0, 0.5};
    struct topk_entry best[4];
    assert_int_equal(topk_select(v, 4, 0, 0, best), 0);
    assert_int_equal(topk_select(v, 4, -3, 1, best), 0);
    assert_int_equal(topk_select(v, 0, 3, 0, best), 0);
    int want[4] = {2, 0, 3, 1};
    assert_int_equal(topk_select(v, 4, 4, 0, best), 4); /* k = n: a full sort */
    for (int j = 0; j < 4; j++)
        assert_int_equal(best[j].index, want[j]);
    assert_int_equal(topk_select(v, 4, 1000000, 0, best), 4); /* k > n: clamped */
    for (int j = 0; j < 4; j++)
        assert_int_equal(best[j].index, want[j]);
    assert_int_equal(topk_select(v, 4, 1, 0, best), 1);
    assert_int_equal(best[0].index, 2);
}

static void nan_ranks_last(void **state)
{
    (void)state;
    double v[5] = {NAN, 0.5, NAN, -INFINITY, 0.7};
    struct topk_entry best[5];
    assert_int_equal(topk_select(v, 5, 5, 0, best), 5);
    assert_int_equal(best[0].index, 4);
    assert_int_equal(best[1].index, 1);
    assert_int_equal(best[2].index, 3); /* -inf is a number: above NaN */
    assert_int_equal(best[3].index, 0); /* NaNs last, by index */
    assert_int_equal(best[4].index, 2);
    assert_int_equal(topk_select(v, 5, 2, 0, best), 2); /* a NaN never displaces */
    assert_int_equal(best[0].index, 4);
    assert_int_equal(best[1].index, 1);
    double all_nan[3] = {NAN, NAN, NAN};
    assert_int_equal(topk_select(all_nan, 3, 2, 0, best), 2);
    assert_int_equal(best[0].index, 0);
    assert_int_equal(best[1].index, 1);
    assert_int_equal(topk_select(v, 5, 2, 1, best), 2); /* softmax over a NaN: NaN */
    assert_true(isnan(best[0].score));
}

static void softmax_is_stable(void **state)
{
    (void)state;
    double v[5] = {1.0, 3.0, 2.0, 3.0, -1.0};
    struct topk_entry best[5];
    assert_int_equal(topk_select(v, 5, 9, 1, best), 5);
    double sum = 0;
    for (int i = 0; i < 5; i++)
        sum += exp(v[i]);
    for (int j = 0; j < 5; j++)
        assert_float_equal(best[j].score, exp(v[best[j].index]) / sum, 1e-12);
    double big[2] = {1000.0, 999.0}; /* stable: no overflow */
    assert_int_equal(topk_select(big, 2, 1, 1, best), 1);
    assert_float_equal(best[0].score, 1.0 / (1.0 + exp(-1.0)), 1e-12);
}

static int by_rank(const void *pa, const void *pb)
{
    const struct topk_entry *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->index - b->index;
}

/* Random rows with many ties, every k: the same as sorting everything. */
static void agrees_with_a_full_sort(void **state)
{
    (void)state;
    enum { N = 200 };
    double v[N];
    struct topk_entry all[N], best[N];
    srand(7);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) {
            v[i] = (double)(rand() % 37);
            all[i].index = i;
            all[i].score = v[i];
        }
        qsort(all, N, sizeof all[0], by_rank);
        for (int k = 1; k <= N; k += 1 + round) {
            assert_int_equal(topk_select(v, N, k, 0, best), k);
            for (int j = 0; j < k; j++) {
                assert_int_equal(best[j].index, all[j].index);
                assert_float_equal(best[j].score, all[j].score, 0);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orders_and_breaks_ties_by_index),
        cmocka_unit_test(k_zero_n_and_past_n),
        cmocka_unit_test(nan_ranks_last),
        cmocka_unit_test(softmax_is_stable),
        cmocka_unit_test(agrees_with_a_full_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
