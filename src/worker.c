/* worker.c - the instance thread: load, warm up, batch, forward, split (see
 * worker.h). */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "clock.h"
#include "log.h"
#include "shape.h"

int worker_status_init(struct worker_status *s)
{
    atomic_store(&s->ready, 0);
    atomic_store(&s->failed, 0);
    atomic_store(&s->last_ready_ns, 0);
    s->error[0] = '\0';
    s->changed = NULL;
    s->changed_arg = NULL;
    return pthread_mutex_init(&s->lock, NULL) == 0 ? 0 : -1;
}

void worker_status_destroy(struct worker_status *s)
{
    pthread_mutex_destroy(&s->lock);
}

void worker_status_fail(struct worker_status *s, const char *message)
{
    pthread_mutex_lock(&s->lock);
    if (s->error[0] == '\0')
        snprintf(s->error, sizeof s->error, "%s", message);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->failed, 1);
    if (s->changed)
        s->changed(s->changed_arg);
}

void worker_status_error(struct worker_status *s, char *buf, size_t len)
{
    pthread_mutex_lock(&s->lock);
    snprintf(buf, len, "%s", s->error);
    pthread_mutex_unlock(&s->lock);
}

static void record_failure(struct worker *w, const char *what, const char *why)
{
    char message[sizeof w->status->error];
    snprintf(message, sizeof message, "%s: %.200s", what, why); /* the log has it whole */
    worker_status_fail(w->status, message);
    log_msg(LOG_ERROR, "model %s instance %d: %s: %s", w->cfg->name, w->index, what, why);
}

static void device_name(int device, char *buf, size_t len)
{
    if (device == CONFIG_DEVICE_CPU)
        snprintf(buf, len, "cpu");
    else
        snprintf(buf, len, "cuda:%d", device);
}

/* What a warm-up call does with its zeros. */
enum warm_kind {
    WARM_FORWARD, /* run forward */
    WARM_CAPTURE, /* capture the model's CUDA graphs from those shapes */
    WARM_MEASURE, /* run forward measuring the GPU memory (w->gpu_memory_bytes) */
};

/* Forward once on zeros shaped like the declared inputs, batch dim = rows
 * (its time in *ns when ns is not NULL), or as kind says. */
static int warm_up_kind(struct worker *w, int64_t rows, enum warm_kind kind, uint64_t *ns,
                        char *err, size_t err_len)
{
    const struct model_config *cfg = w->cfg;
    struct tensor inputs[MODEL_MAX_IO];
    struct shim_tensor views[MODEL_MAX_IO];
    int rc = 0;
    for (int i = 0; i < cfg->n_inputs; i++) {
        int64_t shape[TENSOR_MAX_DIMS];
        for (int d = 0; d < cfg->inputs[i].ndim; d++)
            shape[d] = cfg->inputs[i].shape[d] > 0 ? cfg->inputs[i].shape[d] : d == 0 ? rows : 1;
        if (tensor_alloc(&inputs[i], cfg->inputs[i].dtype, cfg->inputs[i].ndim, shape) != 0) {
            for (int j = 0; j < i; j++)
                tensor_free(&inputs[j]);
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        memset(inputs[i].data, 0, inputs[i].nbytes);
        views[i] = tensor_view(&inputs[i]);
    }
    shim_outputs *out = NULL;
    uint64_t t0 = clock_now_ns();
    uint64_t bytes = 0;
    if (kind == WARM_CAPTURE)
        rc = shim_model_capture_graphs(w->handle, views, cfg->n_inputs, err, err_len) != 0 ? -1 : 0;
    else if (kind == WARM_MEASURE)
        rc = shim_model_gpu_memory(w->handle, views, cfg->n_inputs, &bytes, err, err_len);
    else if (shim_model_forward(w->handle, views, cfg->n_inputs, &out, err, err_len) != 0)
        rc = -1;
    if (kind == WARM_MEASURE) {
        w->gpu_memory_bytes = rc == 0 ? (int64_t)bytes : -1;
        if (rc == SHIM_ERR_DEVICE) { /* not measured: the instance serves all the same */
            log_msg(LOG_WARN, "model %s instance %d: GPU memory not measured: %s", cfg->name,
                    w->index, err);
            rc = 0;
        }
        rc = rc != 0 ? -1 : 0;
    }
    if (ns != NULL)
        *ns = clock_now_ns() - t0;
    shim_outputs_free(out);
    for (int i = 0; i < cfg->n_inputs; i++)
        tensor_free(&inputs[i]);
    return rc;
}

static int warm_up(struct worker *w, int64_t rows, bool capture, char *err, size_t err_len)
{
    return warm_up_kind(w, rows, capture ? WARM_CAPTURE : WARM_FORWARD, NULL, err, err_len);
}

/* batch_profile_run for the measuring at warm-up. */
static int timed_forward(void *arg, int b, uint64_t *ns, char *err, size_t err_len)
{
    return warm_up_kind(arg, b, WARM_FORWARD, ns, err, err_len);
}

/* The batch sizes this instance forms: fixed by config.json, else measured
 * (warm-up on, measuring on, a batching model), else up to max_batch_size.
 * Every size it will form has run once when it returns. Returns 0, or -1
 * with err set (a forward failed). */
static int choose_batch_sizes(struct worker *w, char *err, size_t err_len)
{
    const struct model_config *cfg = w->cfg;
    memset(&w->profile, 0, sizeof w->profile);
    if (cfg->n_preferred_batch_sizes > 0) {
        batch_profile_fixed(&w->profile, cfg->preferred_batch_sizes, cfg->n_preferred_batch_sizes);
        for (int i = 0; cfg->warmup && i < cfg->n_preferred_batch_sizes; i++)
            if (warm_up(w, cfg->preferred_batch_sizes[i], false, err, err_len) != 0)
                return -1;
        return 0;
    }
    if (cfg->warmup && cfg->measure_batch_sizes && cfg->max_batch_size > 1)
        return batch_profile_measure(&w->profile, cfg->max_batch_size, BATCH_PROFILE_BUDGET_NS,
                                     timed_forward, w, err, err_len);
    if (cfg->warmup && cfg->max_batch_size > 1)
        return warm_up(w, cfg->max_batch_size, false, err, err_len);
    return 0;
}

static void log_batch_sizes(const struct worker *w)
{
    const struct batch_profile *p = &w->profile;
    if (p->source == BATCH_PROFILE_OFF)
        return;
    char curve[512], preferred[128];
    size_t used = 0;
    preferred[0] = '\0';
    for (int i = 0; i < p->n_preferred && used < sizeof preferred; i++) {
        int n = snprintf(preferred + used, sizeof preferred - used, "%s%d", i ? "," : "",
                         p->preferred[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    batch_profile_curve_text(p, curve, sizeof curve);
    struct log_field fields[] = {
        {"model", LOG_STR, w->cfg->name, 0},
        {"instance", LOG_INT, NULL, w->index},
        {"source", LOG_STR, p->source == BATCH_PROFILE_CONFIG ? "config" : "measured", 0},
        {"max_batch", LOG_INT, NULL, p->limit},
        {"preferred", LOG_STR, preferred, 0},
        {"ms_per_sample", LOG_STR, curve, 0},
        {"padding", LOG_STR, w->stage.pad != NULL ? "on" : "off", 0},
    };
    log_fields(LOG_INFO, "batch sizes", fields, 7);
}

/* The bytes of one sample of each declared input (0 where a dim after the
 * batch is not fixed). */
static void sample_bytes(const struct model_config *cfg, size_t *out)
{
    for (int i = 0; i < cfg->n_inputs; i++) {
        const struct io_spec *in = &cfg->inputs[i];
        int first = cfg->max_batch_size > 0 ? 1 : 0;
        bool fixed = true;
        for (int d = first; d < in->ndim; d++)
            fixed = fixed && in->shape[d] >= 0;
        if (!fixed || shape_size(in->shape + first, in->ndim - first, dtype_size(in->dtype), NULL,
                                 &out[i]) != 0)
            out[i] = 0;
    }
}

/* Start the stage thread with this instance's batch sizes. Returns 0, or -1
 * with err set. */
static int start_stage(struct worker *w, char *err, size_t err_len)
{
    const struct model_config *cfg = w->cfg;
    bool pad = cfg->pad_batches == MODEL_PAD_ON ||
               (cfg->pad_batches == MODEL_PAD_AUTO && w->device != CONFIG_DEVICE_CPU);
    size_t bytes[MODEL_MAX_IO] = {0};
    sample_bytes(cfg, bytes);
    w->stage.queue = w->queue;
    w->stage.device = w->device;
    w->stage.max_batch_size = cfg->max_batch_size;
    w->stage.limit = w->profile.limit;
    w->stage.pad = pad && w->profile.n_preferred > 0 ? &w->profile : NULL;
    w->stage.batch_cap = w->batch_cap;
    return batch_stage_start(&w->stage, bytes, cfg->n_inputs, err, err_len);
}

/* Check the model's batching against the batch sizes its file accepts, when
 * the file records them (an AOTInductor package): a batching model must take
 * every batch from 1 to max_batch_size; a static batch runs one request at a
 * time (max_batch_size 0), at the package's own shape. Returns 0, or -1 with
 * err set. */
static int check_batch_range(struct worker *w, char *err, size_t err_len)
{
    const struct model_config *cfg = w->cfg;
    struct shim_model_info info;
    if (shim_model_describe(w->handle, &info) != 0 || info.batch_max == 0)
        return 0;
    if (info.batch_min == info.batch_max && cfg->max_batch_size > 0) {
        snprintf(err, err_len,
                 "the package has a static batch of %lld: set max_batch_size 0 in config.json "
                 "(one request at a time, shaped like the package)",
                 (long long)info.batch_max);
        return -1;
    }
    if (cfg->max_batch_size > 0 && info.batch_min > 1) {
        snprintf(err, err_len, "the package's batch range starts at %lld; batching needs 1",
                 (long long)info.batch_min);
        return -1;
    }
    if (cfg->max_batch_size > info.batch_max) {
        snprintf(err, err_len, "max_batch_size %d is above the package's batch maximum %lld",
                 cfg->max_batch_size, (long long)info.batch_max);
        return -1;
    }
    return 0;
}

_Static_assert(MODEL_MAX_IO <= SHIM_MAX_INPUTS, "every input needs a normalisation slot");

/* The shim's normalisation of each input whose image is normalised on the
 * device (the rest stay off). */
static void normalize_options(const struct model_config *cfg, struct shim_normalize *out)
{
    for (int i = 0; i < cfg->n_inputs; i++) {
        const struct io_spec *in = &cfg->inputs[i];
        if (!in->is_image || !in->image.on_device)
            continue;
        const struct preprocess_spec *p = &in->image;
        out[i].enabled = 1;
        out[i].dtype = p->model_dtype;
        out[i].channel_dim = p->layout == PREPROCESS_NCHW ? -3 : -1;
        out[i].channels = (int)p->color;
        out[i].scale = p->scale;
        memcpy(out[i].mean, p->mean, sizeof out[i].mean);
        memcpy(out[i].std, p->std, sizeof out[i].std);
    }
}

static int load_and_warm(struct worker *w)
{
    const struct model_config *cfg = w->cfg;
    char err[256], dev[32];
    device_name(w->device, dev, sizeof dev);
    struct shim_load_options opt = {
        .format = cfg->format,
        .device = w->device,
        .precision = cfg->precision,
        .channels_last = cfg->channels_last,
        .cudnn_benchmark = cfg->cudnn_benchmark,
        .n_cuda_graphs = cfg->n_cuda_graphs,
    };
    memcpy(opt.cuda_graphs, cfg->cuda_graphs, sizeof opt.cuda_graphs);
    normalize_options(cfg, opt.normalize);
    uint64_t t0 = clock_now_ns();
    if (shim_model_load(cfg->path, &opt, &w->handle, err, sizeof err) != 0) {
        record_failure(w, "load failed", err);
        return -1;
    }
    if (check_batch_range(w, err, sizeof err) != 0) {
        record_failure(w, "load failed", err);
        return -1;
    }
    uint64_t t1 = clock_now_ns();
    if ((cfg->warmup && warm_up(w, 1, false, err, sizeof err) != 0) ||
        choose_batch_sizes(w, err, sizeof err) != 0) {
        record_failure(w, "warm-up forward failed", err);
        return -1;
    }
    /* cuDNN's benchmark mode times its algorithms the first time it sees a
     * shape: with dynamic batching that is every batch size, so meet them
     * all here rather than in the middle of serving. */
    if (cfg->warmup && cfg->cudnn_benchmark && w->device != CONFIG_DEVICE_CPU) {
        for (int b = 2; b < cfg->max_batch_size; b++) {
            if (warm_up(w, b, false, err, sizeof err) != 0) {
                record_failure(w, "warm-up forward failed", err);
                return -1;
            }
        }
    }
    /* CUDA graphs are captured whether or not warm-up is on: they are how
     * the model runs. */
    if (cfg->n_cuda_graphs > 0 && warm_up(w, 1, true, err, sizeof err) != 0) {
        record_failure(w, "CUDA graph capture failed", err);
        return -1;
    }
    /* The GPU memory the instance needs, at the largest batch a request
     * may bring (its weights, graphs and that forward's workspace). */
    w->gpu_memory_bytes = -1;
    if (w->device != CONFIG_DEVICE_CPU &&
        warm_up_kind(w, cfg->max_batch_size > 0 ? cfg->max_batch_size : 1, WARM_MEASURE, NULL, err,
                     sizeof err) != 0) {
        record_failure(w, "warm-up forward failed", err);
        return -1;
    }
    uint64_t t2 = clock_now_ns();
    if (start_stage(w, err, sizeof err) != 0) {
        record_failure(w, "cannot start the instance", err);
        return -1;
    }
    atomic_store(&w->profile_ready, true);
    log_batch_sizes(w);
    struct log_field fields[] = {
        {"model", LOG_STR, cfg->name, 0},
        {"version", LOG_INT, NULL, cfg->version},
        {"instance", LOG_INT, NULL, w->index},
        {"device", LOG_STR, dev, 0},
        {"load_ms", LOG_MS, NULL, (int64_t)(t1 - t0)},
        {"warmup_ms", LOG_MS, NULL, (int64_t)(t2 - t1)},
        {"gpu_memory_bytes", LOG_INT, NULL, w->gpu_memory_bytes},
    };
    /* The memory figure only where it was measured (a GPU instance). */
    log_fields(LOG_INFO, "instance ready", fields, w->gpu_memory_bytes >= 0 ? 7 : 6);
    atomic_store(&w->status->last_ready_ns, clock_now_ns());
    atomic_fetch_add(&w->status->ready, 1);
    if (w->status->changed)
        w->status->changed(w->status->changed_arg);
    return 0;
}

/* The forward's outputs as views, named as config.json names them (else
 * as the model does). Returns their count, or -1 with err set. */
static int output_views(const struct worker *w, shim_outputs *out, struct shim_tensor *views,
                        const char **names, char *err, size_t err_len)
{
    int n = shim_outputs_count(out);
    if (n > MODEL_MAX_IO)
        n = MODEL_MAX_IO;
    for (int o = 0; o < n; o++) {
        if (shim_outputs_get(out, o, &views[o]) != 0) {
            snprintf(err, err_len, "output %d has an unsupported type", o);
            return -1;
        }
        names[o] = o < w->cfg->n_outputs ? w->cfg->outputs[o].name : shim_outputs_name(out, o);
    }
    return n;
}

static void free_outputs(struct infer_request *req)
{
    for (int o = 0; o < req->n_outputs; o++)
        tensor_free(&req->outputs[o]);
    req->n_outputs = 0;
}

/* Name the calling thread <kind><instance>-<model> (top -H, the GPU check's
 * CPU report): kind 'w' for the worker, 'c' for its completion thread. */
static void name_thread(const struct worker *w, char kind)
{
    char name[16];
    snprintf(name, sizeof name, "%c%u-%.10s", kind, (unsigned)w->index % 100u, w->cfg->name);
    pthread_setname_np(pthread_self(), name);
}

/* Queue an answered request for the completion thread. */
static void hand_off(struct worker *w, struct infer_request *req)
{
    req->next = NULL;
    pthread_mutex_lock(&w->done_lock);
    bool was_empty = w->done_head == NULL;
    if (was_empty)
        w->done_head = req;
    else
        w->done_tail->next = req;
    w->done_tail = req;
    pthread_mutex_unlock(&w->done_lock);
    if (was_empty)
        pthread_cond_signal(&w->done_cond);
}

/* The completion thread: call done() on each answered request, in order,
 * until the worker has exited and the list is empty. */
static void *completer_main(void *arg)
{
    struct worker *w = arg;
    name_thread(w, 'c');
    pthread_mutex_lock(&w->done_lock);
    for (;;) {
        while (w->done_head == NULL && !w->done_closing)
            pthread_cond_wait(&w->done_cond, &w->done_lock);
        struct infer_request *list = w->done_head;
        if (list == NULL)
            break; /* closing and nothing left */
        w->done_head = w->done_tail = NULL;
        pthread_mutex_unlock(&w->done_lock);
        while (list != NULL) {
            struct infer_request *req = list;
            list = req->next;
            req->next = NULL;
            infer_request_finish(req, req->status, NULL);
        }
        pthread_mutex_lock(&w->done_lock);
    }
    pthread_mutex_unlock(&w->done_lock);
    return NULL;
}

/* Run one staged batch: forward, split each request's rows out (padding
 * rows are never split out), record the execution, hand the answers on. */
static void run_staged(struct worker *w, struct stage_slot *slot)
{
    struct metrics_model *metrics = w->metrics;
    struct infer_request **batch = slot->reqs;
    int n = slot->n;
    int64_t total = slot->rows;
    char err[256] = "";
    shim_outputs *out = NULL;
    uint64_t t0 = clock_now_ns();
    int rc = shim_model_forward(w->handle, slot->views, slot->n_inputs, &out, err, sizeof err);
    uint64_t t1 = clock_now_ns();
    uint64_t compute = t1 - t0;
    uint64_t staging = slot->staged_ns - slot->taken_ns;
    struct shim_tensor outs[MODEL_MAX_IO];
    const char *names[MODEL_MAX_IO];
    int n_out = 0;
    if (rc == 0 && (n_out = output_views(w, out, outs, names, err, sizeof err)) < 0)
        rc = -1;
    if (rc == 0 && w->cfg->max_batch_size > 0)
        rc = batch_check_rows(outs, n_out, slot->padded_rows, err, sizeof err);
    atomic_fetch_add(&metrics->executions, 1);
    atomic_fetch_add(&metrics->inferences, (uint64_t)total);
    metrics_observe(&metrics->batch_size, (double)total);
    metrics_observe(&metrics->compute_seconds, (double)compute / 1e9);
    struct metrics_execution stats = {.samples = total, .input_ns = staging, .infer_ns = compute};
    int64_t row = 0;
    for (int r = 0; r < n; r++) {
        struct infer_request *req = batch[r];
        /* Waiting counts as queueing (in the queue, then staged while the
         * previous batch ran); staging the batch does not. */
        uint64_t waited = t0 - req->arrival_ns;
        req->queue_ns = waited > staging ? waited - staging : 0;
        req->batch_samples = (int)total;
        req->compute_ns = compute;
        metrics_observe(&metrics->queue_seconds, (double)req->queue_ns / 1e9);
        if (rc == 0 && batch_split(outs, names, n_out, req, row, req->samples, slot->whole, err,
                                   sizeof err) != 0)
            free_outputs(req);
        row += req->samples;
        if (rc == 0 && req->n_outputs > 0) {
            stats.requests++;
            stats.queue_ns += req->queue_ns;
        }
    }
    /* Recorded before any answer leaves, so a client that has its answer
     * sees it in the statistics. */
    stats.output_ns = clock_now_ns() - t1;
    if (stats.requests > 0)
        metrics_stats_execution(metrics, &stats);
    shim_outputs_free(out);
    /* The slot goes back before the answers leave, so that the stage can
     * fill it meanwhile; no input may point into it after that. */
    batch_stage_detach(slot);
    int answered = 0;
    for (int r = 0; r < n; r++) {
        struct infer_request *req = batch[r];
        if (rc == 0 && req->n_outputs > 0)
            w->batch[answered++] = req;
        else
            infer_request_finish(req, INFER_INTERNAL, err[0] ? err : "model failed");
    }
    batch_stage_release(&w->stage, slot);
    for (int r = 0; r < answered; r++) {
        w->batch[r]->status = INFER_OK;
        hand_off(w, w->batch[r]);
    }
}

static void close_completer(struct worker *w)
{
    pthread_mutex_lock(&w->done_lock);
    w->done_closing = true;
    pthread_mutex_unlock(&w->done_lock);
    pthread_cond_signal(&w->done_cond);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    name_thread(w, 'w');
    if (load_and_warm(w) != 0) {
        /* A failed instance still drains its share of the queue so that no
         * accepted request is left hanging. */
        int n;
        while ((n = batch_queue_take(w->queue, w->batch, w->batch_cap)) > 0) {
            char msg[512], why[256];
            worker_status_error(w->status, why, sizeof why);
            snprintf(msg, sizeof msg, "model %s is not available: %s", w->cfg->name, why);
            for (int r = 0; r < n; r++)
                infer_request_finish(w->batch[r], INFER_UNAVAILABLE, msg);
        }
        close_completer(w);
        return NULL;
    }
    struct stage_slot *slot;
    while ((slot = batch_stage_next(&w->stage)) != NULL) {
        /* It may have waited for the previous batch: its deadlines and
         * clients again, as the queue watcher checks queued requests. */
        if (batch_stage_prune(&w->stage, slot, clock_now_ns()) > 0)
            run_staged(w, slot);
        else
            batch_stage_release(&w->stage, slot);
    }
    batch_stage_join(&w->stage);
    close_completer(w);
    return NULL;
}

int worker_start(struct worker *w, char *err, size_t err_len)
{
    w->batch_cap = w->cfg->max_batch_size > 0 ? w->cfg->max_batch_size : 1;
    w->batch = calloc((size_t)w->batch_cap, sizeof *w->batch);
    if (w->batch == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (pthread_mutex_init(&w->done_lock, NULL) != 0 ||
        pthread_cond_init(&w->done_cond, NULL) != 0) {
        free(w->batch);
        w->batch = NULL;
        snprintf(err, err_len, "cannot create the completion lock");
        return -1;
    }
    if (pthread_create(&w->completer, NULL, completer_main, w) != 0) {
        free(w->batch);
        w->batch = NULL;
        snprintf(err, err_len, "cannot start a completion thread");
        return -1;
    }
    w->completer_started = true;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        close_completer(w);
        snprintf(err, err_len, "cannot start a worker thread");
        return -1; /* worker_join joins the completer and frees the rest */
    }
    w->started = true;
    return 0;
}

void worker_join(struct worker *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    w->started = false;
    if (w->completer_started) {
        pthread_join(w->completer, NULL);
        pthread_mutex_destroy(&w->done_lock);
        pthread_cond_destroy(&w->done_cond);
    }
    w->completer_started = false;
    batch_stage_join(&w->stage); /* started by the thread, which joins it: a no-op */
    shim_model_free(w->handle);
    w->handle = NULL;
    free(w->batch);
    w->batch = NULL;
}

int64_t worker_gpu_memory(struct worker *w)
{
    return atomic_load(&w->profile_ready) ? w->gpu_memory_bytes : -1;
}

void worker_describe_json(struct worker *w, struct strbuf *sb)
{
    char dev[32];
    device_name(w->device, dev, sizeof dev);
    strbuf_printf(sb, "{\"instance\":%d,\"device\":\"%s\"", w->index, dev);
    if (atomic_load(&w->profile_ready) && w->gpu_memory_bytes >= 0)
        strbuf_printf(sb, ",\"gpu_memory_bytes\":%lld", (long long)w->gpu_memory_bytes);
    if (atomic_load(&w->profile_ready)) {
        strbuf_puts(sb, ",\"batch_sizes\":");
        batch_profile_json(&w->profile, sb);
        strbuf_printf(sb,
                      ",\"padding\":%s,\"staged_requests\":%llu,\"input_bytes_copied\":%llu"
                      ",\"input_bytes_decoded_in_place\":%llu,\"padding_rows\":%llu",
                      w->stage.pad != NULL ? "true" : "false",
                      (unsigned long long)atomic_load(&w->stage.requests),
                      (unsigned long long)atomic_load(&w->stage.bytes_copied),
                      (unsigned long long)atomic_load(&w->stage.bytes_decoded),
                      (unsigned long long)atomic_load(&w->stage.padded_rows));
    }
    strbuf_puts(sb, "}");
}
