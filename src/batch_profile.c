/* batch_profile.c - batch sizes from the measured cost of the forward (see
 * batch_profile.h). */
#include "batch_profile.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"

/* Measuring: two untimed calls per size first (TorchScript profiles a new
 * shape, then optimises for it), then rounds that time every size once
 * each, so that a busy spell on the machine hits every size alike; the
 * fastest call per size counts. At least SIZE_MIN_ROUNDS rounds, more (up
 * to SIZE_MAX_ROUNDS) while the timed calls have taken less than
 * SIZE_ENOUGH_NS in all and the budget lasts. Sizes whose warm-up would
 * start past half the budget are left out. */
#define SIZE_WARM_CALLS 2
#define SIZE_MIN_ROUNDS 2
#define SIZE_MAX_ROUNDS 64
#define SIZE_ENOUGH_NS 600000000ull

int batch_profile_sizes(int max_batch, int *sizes, int cap)
{
    int n = 0;
    for (int b = 1; b < max_batch && n < cap; b *= 2)
        sizes[n++] = b;
    if (max_batch >= 1 && n < cap)
        sizes[n++] = max_batch;
    return n;
}

void batch_profile_choose(struct batch_profile *p, double tolerance)
{
    p->limit = 0;
    p->n_preferred = 0;
    if (p->n == 0) {
        p->source = BATCH_PROFILE_OFF;
        return;
    }
    p->source = BATCH_PROFILE_MEASURED;
    double best = p->ns_per_sample[0];
    for (int i = 1; i < p->n; i++)
        if (p->ns_per_sample[i] < best)
            best = p->ns_per_sample[i];
    int chosen = p->n - 1;
    for (int i = 0; i < p->n; i++) {
        if (p->ns_per_sample[i] <= best * (1.0 + tolerance)) {
            chosen = i;
            break;
        }
    }
    for (int i = 0; i <= chosen; i++)
        p->preferred[p->n_preferred++] = p->sizes[i];
    p->limit = p->sizes[chosen];
}

void batch_profile_fixed(struct batch_profile *p, const int *sizes, int n)
{
    memset(p, 0, sizeof *p);
    if (n <= 0)
        return;
    if (n > BATCH_PROFILE_MAX)
        n = BATCH_PROFILE_MAX;
    p->source = BATCH_PROFILE_CONFIG;
    memcpy(p->preferred, sizes, (size_t)n * sizeof *sizes);
    p->n_preferred = n;
    p->limit = sizes[n - 1];
}

int batch_profile_measure(struct batch_profile *p, int max_batch, uint64_t budget_ns,
                          batch_profile_run run, void *arg, char *err, size_t err_len)
{
    int sizes[BATCH_PROFILE_MAX];
    int n = batch_profile_sizes(max_batch, sizes, BATCH_PROFILE_MAX);
    uint64_t best[BATCH_PROFILE_MAX] = {0};
    memset(p, 0, sizeof *p);
    uint64_t start = clock_now_ns(), ns;
    for (int i = 0; i < n; i++) {
        if (i > 0 && clock_now_ns() - start > budget_ns / 2) {
            p->budget_hit = true;
            n = i;
            break;
        }
        for (int k = 0; k < SIZE_WARM_CALLS; k++)
            if (run(arg, sizes[i], &ns, err, err_len) != 0)
                return -1;
    }
    uint64_t timed = 0;
    for (int round = 0; round < SIZE_MAX_ROUNDS; round++) {
        if (round >= SIZE_MIN_ROUNDS &&
            (timed >= SIZE_ENOUGH_NS || clock_now_ns() - start > budget_ns))
            break;
        for (int i = 0; i < n; i++) {
            if (run(arg, sizes[i], &ns, err, err_len) != 0)
                return -1;
            timed += ns;
            if (round == 0 || ns < best[i])
                best[i] = ns;
        }
    }
    for (int i = 0; i < n; i++) {
        p->sizes[i] = sizes[i];
        p->ns_per_sample[i] = (double)best[i] / sizes[i];
    }
    p->n = n;
    batch_profile_choose(p, BATCH_PROFILE_TOLERANCE);
    return 0;
}

int batch_profile_pad_to(const struct batch_profile *p, int rows)
{
    for (int i = 0; i < p->n_preferred; i++)
        if (p->preferred[i] >= rows)
            return p->preferred[i];
    return rows;
}

static const char *source_name(enum batch_profile_source s)
{
    return s == BATCH_PROFILE_MEASURED ? "measured" : s == BATCH_PROFILE_CONFIG ? "config" : "off";
}

void batch_profile_json(const struct batch_profile *p, struct strbuf *sb)
{
    strbuf_printf(sb, "{\"source\":\"%s\",\"limit\":%d,\"preferred\":[", source_name(p->source),
                  p->limit);
    for (int i = 0; i < p->n_preferred; i++)
        strbuf_printf(sb, i ? ",%d" : "%d", p->preferred[i]);
    strbuf_puts(sb, "],\"curve\":[");
    for (int i = 0; i < p->n; i++)
        strbuf_printf(sb, "%s{\"batch\":%d,\"ms_per_sample\":%.4f}", i ? "," : "", p->sizes[i],
                      p->ns_per_sample[i] / 1e6);
    strbuf_printf(sb, "],\"budget_hit\":%s}", p->budget_hit ? "true" : "false");
}

void batch_profile_curve_text(const struct batch_profile *p, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%d:%.3f", i ? " " : "", p->sizes[i],
                         p->ns_per_sample[i] / 1e6);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}
