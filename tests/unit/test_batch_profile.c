/* test_batch_profile.c - batch sizes from a measured cost curve: the sizes
 * measured, the choice (smallest within tolerance of the best), sizes fixed
 * by config, padding targets, the measuring loop against a fake forward
 * (its cost curve known), its budget and errors, and the JSON form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "batch_profile.h"

static void test_sizes(void **state)
{
    (void)state;
    int s[BATCH_PROFILE_MAX];
    int n = batch_profile_sizes(32, s, BATCH_PROFILE_MAX);
    int want[] = {1, 2, 4, 8, 16, 32};
    assert_int_equal(n, 6);
    assert_memory_equal(s, want, sizeof want);
    n = batch_profile_sizes(12, s, BATCH_PROFILE_MAX);
    int want12[] = {1, 2, 4, 8, 12};
    assert_int_equal(n, 5);
    assert_memory_equal(s, want12, sizeof want12);
    assert_int_equal(batch_profile_sizes(1, s, BATCH_PROFILE_MAX), 1);
    assert_int_equal(s[0], 1);
    assert_int_equal(batch_profile_sizes(0, s, BATCH_PROFILE_MAX), 0);
    assert_int_equal(batch_profile_sizes(65536, s, 4), 4); /* never past cap */
}

static void curve(struct batch_profile *p, const int *sizes, const double *ms, int n)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < n; i++) {
        p->sizes[i] = sizes[i];
        p->ns_per_sample[i] = ms[i] * 1e6;
    }
    p->n = n;
}

static void test_choose(void **state)
{
    (void)state;
    struct batch_profile p;
    /* The ResNet-18 on 2 CPU cores: 58 ms at 1, 41 at 8, 43-47 above. */
    int sizes[] = {1, 2, 4, 8, 16, 32};
    double cpu[] = {58, 50, 44, 41, 43, 47};
    curve(&p, sizes, cpu, 6);
    batch_profile_choose(&p, 0.05);
    assert_int_equal(p.source, BATCH_PROFILE_MEASURED);
    assert_int_equal(p.limit, 8);
    int pref[] = {1, 2, 4, 8};
    assert_int_equal(p.n_preferred, 4);
    assert_memory_equal(p.preferred, pref, sizeof pref);
    /* Within 5% of the best: the smaller size wins. */
    double flat[] = {10, 6, 4.1, 4.05, 4.0, 3.99};
    curve(&p, sizes, flat, 6);
    batch_profile_choose(&p, 0.05);
    assert_int_equal(p.limit, 4);
    /* Still falling at the largest: the largest. */
    double gpu[] = {1.6, 0.8, 0.4, 0.2, 0.1, 0.05};
    curve(&p, sizes, gpu, 6);
    batch_profile_choose(&p, 0.05);
    assert_int_equal(p.limit, 32);
    assert_int_equal(p.n_preferred, 6);
    /* Batch 1 is best: no batching. */
    double one[] = {1, 2, 3, 4, 5, 6};
    curve(&p, sizes, one, 6);
    batch_profile_choose(&p, 0.05);
    assert_int_equal(p.limit, 1);
    assert_int_equal(p.n_preferred, 1);
    /* No curve: off. */
    curve(&p, sizes, one, 0);
    batch_profile_choose(&p, 0.05);
    assert_int_equal(p.source, BATCH_PROFILE_OFF);
    assert_int_equal(p.limit, 0);
}

static void test_fixed_and_pad(void **state)
{
    (void)state;
    struct batch_profile p;
    int sizes[] = {1, 4, 8};
    batch_profile_fixed(&p, sizes, 3);
    assert_int_equal(p.source, BATCH_PROFILE_CONFIG);
    assert_int_equal(p.limit, 8);
    assert_int_equal(batch_profile_pad_to(&p, 1), 1);
    assert_int_equal(batch_profile_pad_to(&p, 2), 4);
    assert_int_equal(batch_profile_pad_to(&p, 4), 4);
    assert_int_equal(batch_profile_pad_to(&p, 5), 8);
    assert_int_equal(batch_profile_pad_to(&p, 9), 9); /* a lone large request: as it is */
    batch_profile_fixed(&p, sizes, 0);
    assert_int_equal(p.source, BATCH_PROFILE_OFF);
    assert_int_equal(batch_profile_pad_to(&p, 3), 3);
}

/* A fake forward: fixed cost plus per-sample cost, so cost per sample
 * falls with the batch; past knee it rises again (cache pressure). */
struct fake {
    int calls[65];
    int fail_at;
    uint64_t per_call_ns;
};

static int fake_run(void *arg, int b, uint64_t *ns, char *err, size_t err_len)
{
    struct fake *f = arg;
    if (b == f->fail_at) {
        snprintf(err, err_len, "forward failed at %d", b);
        return -1;
    }
    f->calls[b]++;
    uint64_t per = b <= 8 ? 1000000 : 1000000 + (uint64_t)(b - 8) * 20000;
    *ns = 4000000 + per * (uint64_t)b;
    if (f->calls[b] == 1)
        *ns *= 10; /* the first call at a new shape is slow: never timed */
    f->per_call_ns += *ns;
    return 0;
}

static void test_measure(void **state)
{
    (void)state;
    struct fake f = {.fail_at = -1};
    struct batch_profile p;
    char err[128];
    assert_int_equal(
        batch_profile_measure(&p, 32, BATCH_PROFILE_BUDGET_NS, fake_run, &f, err, sizeof err), 0);
    assert_int_equal(p.n, 6);
    for (int i = 0; i < p.n; i++)
        assert_true(f.calls[p.sizes[i]] >= 4); /* two untimed, at least two timed */
    /* (4 + per*b)/b ms per sample: 5, 3, 2, 1.5, then 1.41 (16), 1.605 (32):
     * best at 16; 8 is 6% above it. */
    assert_true(p.ns_per_sample[0] > 4.9e6 && p.ns_per_sample[0] < 5.1e6);
    assert_int_equal(p.limit, 16);
    assert_false(p.budget_hit);
    /* An error stops it with the forward's message. */
    struct fake g = {.fail_at = 4};
    assert_int_equal(
        batch_profile_measure(&p, 32, BATCH_PROFILE_BUDGET_NS, fake_run, &g, err, sizeof err), -1);
    assert_string_equal(err, "forward failed at 4");
    /* No budget: size 1 only, and the limit is what was measured. */
    struct fake h = {.fail_at = -1};
    assert_int_equal(batch_profile_measure(&p, 32, 0, fake_run, &h, err, sizeof err), 0);
    assert_int_equal(p.n, 1);
    assert_true(p.budget_hit);
    assert_int_equal(p.limit, 1);
    assert_int_equal(h.calls[2], 0);
}

static void test_json(void **state)
{
    (void)state;
    struct batch_profile p;
    int sizes[] = {1, 2, 4};
    double ms[] = {3, 2, 1.5};
    curve(&p, sizes, ms, 3);
    batch_profile_choose(&p, 0.05);
    struct strbuf sb = {0};
    batch_profile_json(&p, &sb);
    assert_false(sb.failed);
    cJSON *j = cJSON_ParseWithLength(sb.data, sb.len);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "source")->valuestring, "measured");
    assert_int_equal(cJSON_GetObjectItem(j, "limit")->valueint, 4);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "preferred")), 3);
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "curve"), 2);
    assert_int_equal(cJSON_GetObjectItem(c, "batch")->valueint, 4);
    assert_true(cJSON_GetObjectItem(c, "ms_per_sample")->valuedouble == 1.5);
    cJSON_Delete(j);
    strbuf_free(&sb);
    char text[64];
    batch_profile_curve_text(&p, text, sizeof text);
    assert_string_equal(text, "1:3.000 2:2.000 4:1.500");
    char tiny[6];
    batch_profile_curve_text(&p, tiny, sizeof tiny); /* cut, terminated */
    assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),         cmocka_unit_test(test_choose),
        cmocka_unit_test(test_fixed_and_pad), cmocka_unit_test(test_measure),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
