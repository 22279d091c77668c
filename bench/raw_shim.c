/* raw_shim.c - raw forward throughput of one model through inferd's shim, with
 * no HTTP, queue or batcher: T threads, each with its own instance (its own
 * CUDA stream on a GPU, as inferd's workers), each running forward on a batch
 * of B random inputs from a pinned staging buffer, for S seconds. This is the
 * ceiling inferd is measured against (tests/gpu/run.sh).
 *
 *   raw_shim --model M.pt --shape 3,224,224 [--device 0|cpu] [--batches 1,8,32]
 *            [--threads 1,2] [--seconds 3] [--fp16] [--channels-last]
 *            [--graphs 1,2,4,8] [--cudnn-benchmark]
 *
 * Prints one line per (threads, batch):
 *   RAW batch=B threads=T img_s=X p50_ms=Y mean_ms=Z forwards=N
 * (p50/mean: one forward's wall time, input copy and output copy included).
 * Exit status 1 with a message when the model cannot load or run.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "torch_shim.h"

#define MAX_LIST 16
#define MAX_SAMPLES 200000

struct run {
    const char *model;
    struct shim_load_options opt;
    int64_t shape[SHIM_MAX_DIMS];
    int ndim;
    int batch;
    double seconds;
    pthread_barrier_t *start;
    /* results */
    long forwards;
    double *lat_ms;
    int n_lat;
    double elapsed;
    char err[256];
    int failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static void *bench_thread(void *arg)
{
    struct run *r = arg;
    shim_model *m = NULL;
    struct shim_tensor in = {.dtype = SHIM_FP32, .ndim = r->ndim + 1};
    in.shape[0] = r->batch;
    size_t n = (size_t)r->batch;
    for (int d = 0; d < r->ndim; d++) {
        in.shape[d + 1] = r->shape[d];
        n *= (size_t)r->shape[d];
    }
    in.nbytes = n * sizeof(float);
    void *buf = NULL;
    int ok = shim_host_alloc(in.nbytes, r->opt.device, &buf) == 0 &&
             shim_model_load(r->model, &r->opt, &m, r->err, sizeof r->err) == 0;
    if (ok) {
        float *f = buf;
        unsigned seed = 12345u + (unsigned)r->batch;
        for (size_t i = 0; i < n; i++)
            f[i] = (float)rand_r(&seed) / (float)RAND_MAX;
        in.data = buf;
        struct shim_tensor tmpl = in;
        tmpl.shape[0] = 1;
        ok = shim_model_capture_graphs(m, &tmpl, 1, r->err, sizeof r->err) == 0;
    }
    /* warm-up: a few forwards at this batch size */
    for (int i = 0; ok && i < 5; i++) {
        shim_outputs *out = NULL;
        ok = shim_model_forward(m, &in, 1, &out, r->err, sizeof r->err) == 0;
        shim_outputs_free(out);
    }
    if (!ok && r->err[0] == '\0')
        snprintf(r->err, sizeof r->err, "out of memory");
    r->failed = !ok;
    pthread_barrier_wait(r->start);
    double t0 = now_s(), t = t0;
    while (ok && t - t0 < r->seconds) {
        shim_outputs *out = NULL;
        ok = shim_model_forward(m, &in, 1, &out, r->err, sizeof r->err) == 0;
        shim_outputs_free(out);
        double t1 = now_s();
        if (r->n_lat < MAX_SAMPLES)
            r->lat_ms[r->n_lat++] = (t1 - t) * 1e3;
        t = t1;
        r->forwards++;
    }
    r->failed |= !ok;
    r->elapsed = t - t0;
    shim_model_free(m);
    shim_host_free(buf, r->opt.device);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run T threads at batch B; prints the RAW line. Returns 0 or -1. */
static int measure(struct run *tmpl, int threads, int batch)
{
    struct run runs[MAX_LIST];
    pthread_t tid[MAX_LIST];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    int rc = 0;
    for (int t = 0; t < threads; t++) {
        runs[t] = *tmpl;
        runs[t].batch = batch;
        runs[t].start = &start;
        runs[t].lat_ms = malloc(MAX_SAMPLES * sizeof(double));
        if (runs[t].lat_ms == NULL || pthread_create(&tid[t], NULL, bench_thread, &runs[t]) != 0) {
            fprintf(stderr, "raw_shim: cannot start a thread\n");
            exit(1);
        }
    }
    long forwards = 0;
    double img_s = 0;
    static double all[MAX_SAMPLES * 2];
    int n_all = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (runs[t].failed) {
            fprintf(stderr, "raw_shim: batch %d: %s\n", batch, runs[t].err);
            rc = -1;
        }
        forwards += runs[t].forwards;
        if (runs[t].elapsed > 0)
            img_s += (double)runs[t].forwards * batch / runs[t].elapsed;
        for (int i = 0; i < runs[t].n_lat && n_all < MAX_SAMPLES * 2; i++)
            all[n_all++] = runs[t].lat_ms[i];
        free(runs[t].lat_ms);
    }
    pthread_barrier_destroy(&start);
    if (rc != 0 || n_all == 0)
        return -1;
    qsort(all, (size_t)n_all, sizeof all[0], cmp_double);
    double sum = 0;
    for (int i = 0; i < n_all; i++)
        sum += all[i];
    printf("RAW batch=%d threads=%d img_s=%.1f p50_ms=%.3f mean_ms=%.3f forwards=%ld\n", batch,
           threads, img_s, all[n_all / 2], sum / n_all, forwards);
    fflush(stdout);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: raw_shim --model FILE --shape C,H,W [--device 0|cpu] [--batches "
                    "1,8] [--threads 1,2] [--seconds S] [--fp16] [--channels-last] [--graphs "
                    "1,2,4,8] [--cudnn-benchmark]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct run tmpl = {.seconds = 3, .opt = {.device = SHIM_DEVICE_CPU}};
    int64_t batches[MAX_LIST] = {1}, threads[MAX_LIST] = {1}, graphs[SHIM_MAX_GRAPHS];
    int n_batches = 1, n_threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--fp16") == 0) {
            tmpl.opt.precision = SHIM_PRECISION_FP16;
        } else if (strcmp(a, "--channels-last") == 0) {
            tmpl.opt.channels_last = 1;
        } else if (strcmp(a, "--cudnn-benchmark") == 0) {
            tmpl.opt.cudnn_benchmark = 1;
        } else if (v == NULL) {
            usage();
        } else if (strcmp(a, "--model") == 0) {
            tmpl.model = v, i++;
        } else if (strcmp(a, "--device") == 0) {
            tmpl.opt.device = strcmp(v, "cpu") == 0 ? SHIM_DEVICE_CPU : atoi(v), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            tmpl.seconds = atof(v), i++;
        } else if (strcmp(a, "--shape") == 0) {
            if ((tmpl.ndim = parse_list(v, tmpl.shape, SHIM_MAX_DIMS - 1)) <= 0)
                usage();
            i++;
        } else if (strcmp(a, "--batches") == 0) {
            if ((n_batches = parse_list(v, batches, MAX_LIST)) <= 0)
                usage();
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if ((n_threads = parse_list(v, threads, MAX_LIST)) <= 0)
                usage();
            i++;
        } else if (strcmp(a, "--graphs") == 0) {
            int n = parse_list(v, graphs, SHIM_MAX_GRAPHS);
            if (n <= 0)
                usage();
            tmpl.opt.n_cuda_graphs = n;
            for (int k = 0; k < n; k++)
                tmpl.opt.cuda_graphs[k] = (int)graphs[k];
            i++;
        } else {
            usage();
        }
    }
    if (tmpl.model == NULL || tmpl.ndim == 0)
        usage();
    char err[256];
    if (shim_set_threads(1, 1, err, sizeof err) != 0) {
        fprintf(stderr, "raw_shim: %s\n", err);
        return 1;
    }
    int rc = 0;
    for (int t = 0; t < n_threads; t++)
        for (int b = 0; b < n_batches; b++)
            if (threads[t] > MAX_LIST || measure(&tmpl, (int)threads[t], (int)batches[b]) != 0)
                rc = 1;
    return rc;
}
