/* grpc_service.c - inference.GRPCInferenceService and grpc.health.v1.Health
 * on the gRPC front end (see grpc_service.h). */
#include "grpc_service.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "grpc_reply.h"
#include "grpc_shm.h"
#include "infer_call.h"
#include "health.pb-c.h"
#include "redact.h"
#include "registry_manager.h"
#include "registry_render.h"
#include "server.h"
#include "shm_cuda.h"
#include "v2_proto.h"
#include "version.h"

#define SERVICE "/inference.GRPCInferenceService/"

/* The gRPC code of an inference status: the one place they are mapped. */
static enum grpc_front_code code_of(enum infer_status s)
{
    switch (s) {
    case INFER_OK: return GF_OK;
    case INFER_INVALID:
    case INFER_UNSUPPORTED: return GF_INVALID_ARGUMENT;
    case INFER_NOT_FOUND: return GF_NOT_FOUND;
    case INFER_UNAVAILABLE: return GF_UNAVAILABLE;
    case INFER_DEADLINE: return GF_DEADLINE_EXCEEDED;
    case INFER_CANCELLED: return GF_CANCELLED;
    case INFER_INTERNAL: return GF_INTERNAL;
    }
    return GF_INTERNAL;
}

/* The HTTP status the same outcome would have had: the model's metrics
 * and statistics count answers by it, whatever the protocol. */
static int http_like(enum grpc_front_code code)
{
    switch (code) {
    case GF_OK: return 200;
    case GF_INVALID_ARGUMENT: return 400;
    case GF_NOT_FOUND: return 404;
    case GF_CANCELLED: return 499;
    case GF_UNAVAILABLE: return 503;
    case GF_DEADLINE_EXCEEDED: return 504;
    default: return 500;
    }
}

static struct server *server_of(struct grpc_front_call *call)
{
    return grpc_front_ctx(call);
}

/* Model name at version ("": the newest ready one), with a reference, or
 * NULL with the call answered NOT_FOUND. */
static struct model *lookup(struct grpc_front_call *call, const char *name, const char *version)
{
    char why[512];
    int v = 0;
    if (version[0]) {
        size_t n = strlen(version);
        if (n > 9 || version[0] == '0' || strspn(version, "0123456789") != n) {
            snprintf(why, sizeof why,
                     "model %.200s has no version %.16s (versions are numbers from 1)", name,
                     version);
            grpc_front_answer(call, GF_NOT_FOUND, why, NULL, 0);
            return NULL;
        }
        v = atoi(version);
    }
    struct model *m = registry_acquire(&server_of(call)->registry, name, v, why, sizeof why);
    if (m == NULL)
        grpc_front_answer(call, GF_NOT_FOUND, why, NULL, 0);
    return m;
}

/* ---- health and metadata ---- */

static void server_live(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    (void)msg, (void)len;
    Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    r.live = true;
    grpc_reply_message(call, &r.base);
}

static void server_ready_rpc(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    (void)msg, (void)len;
    Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
    r.ready = server_ready(server_of(call));
    grpc_reply_message(call, &r.base);
}

static void model_ready(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__ModelReadyRequest *q = inference__model_ready_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "ModelReadyRequest");
    struct model *m = lookup(call, q->name, q->version);
    if (m != NULL) {
        Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
        r.ready = model_get_state(m) == MODEL_READY && !server_draining(server_of(call));
        grpc_reply_message(call, &r.base);
        model_release(m);
    }
    inference__model_ready_request__free_unpacked(q, NULL);
}

static void server_metadata(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    (void)msg, (void)len;
    static char *extensions[] = {
        "binary_tensor_data",  "classification",       "model_repository",  "statistics",
        "model_configuration", "system_shared_memory", "cuda_shared_memory"};
    Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    r.name = "inferd";
    r.version = (char *)INFERD_VERSION;
    /* as HTTP's: the shared memory ones with --shared-memory, CUDA's where
     * a device can take a handle */
    char err[256];
    r.n_extensions = !server_of(call)->shm.on                       ? 5
                     : shm_cuda_check(0, err, sizeof err) == SHM_OK ? 7
                                                                    : 6;
    r.extensions = extensions;
    grpc_reply_message(call, &r.base);
}

/* Tensor metadata rows for specs (shapes point into specs). */
static void tensor_rows(const struct io_spec *specs, int n,
                        Inference__ModelMetadataResponse__TensorMetadata *rows,
                        Inference__ModelMetadataResponse__TensorMetadata **ptrs)
{
    for (int i = 0; i < n; i++) {
        Inference__ModelMetadataResponse__TensorMetadata init =
            INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT;
        rows[i] = init;
        rows[i].name = (char *)specs[i].name;
        rows[i].datatype = (char *)dtype_name(specs[i].dtype);
        rows[i].n_shape = (size_t)specs[i].ndim;
        rows[i].shape = (int64_t *)specs[i].shape;
        ptrs[i] = &rows[i];
    }
}

static void model_metadata(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__ModelMetadataRequest *q = inference__model_metadata_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "ModelMetadataRequest");
    struct model *m = lookup(call, q->name, q->version);
    if (m != NULL) {
        Inference__ModelMetadataResponse__TensorMetadata in[MODEL_MAX_IO], out[MODEL_MAX_IO];
        Inference__ModelMetadataResponse__TensorMetadata *in_p[MODEL_MAX_IO], *out_p[MODEL_MAX_IO];
        int versions[MODEL_MAX_VERSIONS];
        char text[MODEL_MAX_VERSIONS][16];
        char *version_p[MODEL_MAX_VERSIONS];
        int nv = registry_versions(&server_of(call)->registry, m->cfg.name, versions,
                                   MODEL_MAX_VERSIONS);
        for (int i = 0; i < nv; i++) {
            snprintf(text[i], sizeof text[i], "%d", versions[i]);
            version_p[i] = text[i];
        }
        Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
        r.name = m->cfg.name;
        r.n_versions = (size_t)nv;
        r.versions = version_p;
        r.platform = (char *)(m->cfg.platform ? m->cfg.platform : "");
        tensor_rows(m->cfg.inputs, m->cfg.n_inputs, in, in_p);
        tensor_rows(m->cfg.outputs, m->cfg.n_outputs, out, out_p);
        r.n_inputs = (size_t)m->cfg.n_inputs;
        r.inputs = in_p;
        r.n_outputs = (size_t)m->cfg.n_outputs;
        r.outputs = out_p;
        grpc_reply_message(call, &r.base);
        model_release(m);
    }
    inference__model_metadata_request__free_unpacked(q, NULL);
}

/* ---- ModelConfig ---- */

static Inference__DataType data_type(enum shim_dtype d)
{
    switch (d) {
    case SHIM_BOOL: return INFERENCE__DATA_TYPE__TYPE_BOOL;
    case SHIM_UINT8: return INFERENCE__DATA_TYPE__TYPE_UINT8;
    case SHIM_INT8: return INFERENCE__DATA_TYPE__TYPE_INT8;
    case SHIM_INT16: return INFERENCE__DATA_TYPE__TYPE_INT16;
    case SHIM_INT32: return INFERENCE__DATA_TYPE__TYPE_INT32;
    case SHIM_INT64: return INFERENCE__DATA_TYPE__TYPE_INT64;
    case SHIM_FP16: return INFERENCE__DATA_TYPE__TYPE_FP16;
    case SHIM_FP32: return INFERENCE__DATA_TYPE__TYPE_FP32;
    case SHIM_FP64: return INFERENCE__DATA_TYPE__TYPE_FP64;
    default: break;
    }
    return INFERENCE__DATA_TYPE__TYPE_INVALID;
}

/* Dims of spec without the batch dimension (dim 0) when batching; an
 * image input takes BYTES (TYPE_STRING) of one element per sample. */
static size_t config_dims(const struct io_spec *spec, bool batching, const int64_t **dims)
{
    int skip = batching && spec->ndim > 0 ? 1 : 0;
    *dims = spec->shape + skip;
    return (size_t)(spec->ndim - skip);
}

static void model_config(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__ModelConfigRequest *q = inference__model_config_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "ModelConfigRequest");
    struct model *m = lookup(call, q->name, q->version);
    inference__model_config_request__free_unpacked(q, NULL);
    if (m == NULL)
        return;
    const struct model_config *mc = &m->cfg;
    const struct inferd_config *sc = &server_of(call)->cfg;
    bool batching = mc->max_batch_size > 0;
    Inference__ModelInput in[MODEL_MAX_IO], *in_p[MODEL_MAX_IO];
    Inference__ModelOutput out[MODEL_MAX_IO], *out_p[MODEL_MAX_IO];
    for (int i = 0; i < mc->n_inputs; i++) {
        Inference__ModelInput init = INFERENCE__MODEL_INPUT__INIT;
        in[i] = init;
        in[i].name = (char *)mc->inputs[i].name;
        in[i].data_type = data_type(mc->inputs[i].dtype);
        in[i].n_dims = config_dims(&mc->inputs[i], batching, (const int64_t **)&in[i].dims);
        in_p[i] = &in[i];
    }
    for (int i = 0; i < mc->n_outputs; i++) {
        Inference__ModelOutput init = INFERENCE__MODEL_OUTPUT__INIT;
        out[i] = init;
        out[i].name = (char *)mc->outputs[i].name;
        out[i].data_type = data_type(mc->outputs[i].dtype);
        out[i].n_dims = config_dims(&mc->outputs[i], batching, (const int64_t **)&out[i].dims);
        out_p[i] = &out[i];
    }
    Inference__ModelInstanceGroup groups[CONFIG_MAX_DEVICES], *group_p[CONFIG_MAX_DEVICES];
    int32_t gpus[CONFIG_MAX_DEVICES];
    char names[CONFIG_MAX_DEVICES][MODEL_NAME_MAX + 16];
    for (int d = 0; d < sc->n_devices; d++) {
        Inference__ModelInstanceGroup init = INFERENCE__MODEL_INSTANCE_GROUP__INIT;
        groups[d] = init;
        snprintf(names[d], sizeof names[d], "%.100s_%d", mc->name, d);
        groups[d].name = names[d];
        groups[d].count = mc->instances_per_device;
        if (sc->devices[d] == CONFIG_DEVICE_CPU) {
            groups[d].kind = INFERENCE__MODEL_INSTANCE_GROUP__KIND__KIND_CPU;
        } else {
            groups[d].kind = INFERENCE__MODEL_INSTANCE_GROUP__KIND__KIND_GPU;
            gpus[d] = sc->devices[d];
            groups[d].n_gpus = 1;
            groups[d].gpus = &gpus[d];
        }
        group_p[d] = &groups[d];
    }
    Inference__ModelDynamicBatching dynamic = INFERENCE__MODEL_DYNAMIC_BATCHING__INIT;
    dynamic.max_queue_delay_microseconds = (uint64_t)mc->max_queue_delay_us;
    Inference__ModelConfig config = INFERENCE__MODEL_CONFIG__INIT;
    config.name = (char *)mc->name;
    config.platform = (char *)(mc->platform ? mc->platform : "");
    config.backend = "pytorch";
    config.max_batch_size = mc->max_batch_size;
    config.n_input = (size_t)mc->n_inputs;
    config.input = in_p;
    config.n_output = (size_t)mc->n_outputs;
    config.output = out_p;
    config.n_instance_group = (size_t)sc->n_devices;
    config.instance_group = group_p;
    if (batching)
        config.dynamic_batching = &dynamic;
    Inference__ModelConfigResponse r = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
    r.config = &config;
    grpc_reply_message(call, &r.base);
    model_release(m);
}

/* ---- statistics ---- */

static void duration(Inference__StatisticDuration *d, const struct metrics_duration *m)
{
    Inference__StatisticDuration init = INFERENCE__STATISTIC_DURATION__INIT;
    *d = init;
    d->count = atomic_load(&m->count);
    d->ns = atomic_load(&m->ns);
}

struct stats_row {
    Inference__ModelStatistics row;
    Inference__InferStatistics infer;
    Inference__StatisticDuration d[6];
    char version[16];
};

static void stats_row(struct stats_row *s, struct model *m)
{
    const struct metrics_stats *st = &m->metrics.stats;
    Inference__ModelStatistics init = INFERENCE__MODEL_STATISTICS__INIT;
    Inference__InferStatistics infer_init = INFERENCE__INFER_STATISTICS__INIT;
    s->row = init;
    s->infer = infer_init;
    duration(&s->d[0], &st->success);
    duration(&s->d[1], &st->fail);
    duration(&s->d[2], &st->queue);
    duration(&s->d[3], &st->compute_input);
    duration(&s->d[4], &st->compute_infer);
    duration(&s->d[5], &st->compute_output);
    s->infer.success = &s->d[0];
    s->infer.fail = &s->d[1];
    s->infer.queue = &s->d[2];
    s->infer.compute_input = &s->d[3];
    s->infer.compute_infer = &s->d[4];
    s->infer.compute_output = &s->d[5];
    snprintf(s->version, sizeof s->version, "%d", m->cfg.version);
    s->row.name = m->cfg.name;
    s->row.version = s->version;
    s->row.last_inference = atomic_load(&st->last_inference_ms);
    s->row.inference_count = atomic_load(&st->inference_count);
    s->row.execution_count = atomic_load(&st->execution_count);
    s->row.inference_stats = &s->infer;
}

static void model_statistics(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__ModelStatisticsRequest *q =
        inference__model_statistics_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "ModelStatisticsRequest");
    struct model **models = calloc(REGISTRY_SNAPSHOT_MAX, sizeof *models);
    struct stats_row *rows = calloc(REGISTRY_SNAPSHOT_MAX, sizeof *rows);
    Inference__ModelStatistics **ptrs = calloc(REGISTRY_SNAPSHOT_MAX, sizeof *ptrs);
    int n = 0;
    if (models == NULL || rows == NULL || ptrs == NULL) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
    } else if (q->name[0]) {
        struct model *m = lookup(call, q->name, q->version);
        if (m != NULL)
            models[n++] = m;
    } else {
        n = registry_snapshot(&server_of(call)->registry, models, REGISTRY_SNAPSHOT_MAX, false);
    }
    if (models && rows && ptrs && (n > 0 || !q->name[0])) {
        for (int i = 0; i < n; i++) {
            stats_row(&rows[i], models[i]);
            ptrs[i] = &rows[i].row;
        }
        Inference__ModelStatisticsResponse r = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
        r.n_model_stats = (size_t)n;
        r.model_stats = ptrs;
        grpc_reply_message(call, &r.base);
    }
    for (int i = 0; i < n; i++)
        model_release(models[i]);
    free(models);
    free(rows);
    free(ptrs);
    inference__model_statistics_request__free_unpacked(q, NULL);
}

/* ---- repository ---- */

/* The repository index, rendered once (as for HTTP) and read back. */
static void repository_index(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__RepositoryIndexRequest *q =
        inference__repository_index_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "RepositoryIndexRequest");
    bool ready_only = q->ready;
    inference__repository_index_request__free_unpacked(q, NULL);
    struct strbuf sb = {0};
    registry_render_index(&server_of(call)->registry, &sb);
    cJSON *list = sb.data ? cJSON_ParseWithLength(sb.data, sb.len) : NULL;
    strbuf_free(&sb);
    int n = cJSON_GetArraySize(list);
    Inference__RepositoryIndexResponse__ModelIndex *rows = calloc((size_t)n + 1, sizeof *rows);
    Inference__RepositoryIndexResponse__ModelIndex **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    if (!cJSON_IsArray(list) || rows == NULL || ptrs == NULL) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
    } else {
        int k = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list)
        {
            const char *f[4] = {"name", "version", "state", "reason"};
            char *v[4];
            for (int j = 0; j < 4; j++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(item, f[j]);
                v[j] = cJSON_IsString(x) ? x->valuestring : "";
            }
            if (ready_only && strcmp(v[2], "READY") != 0)
                continue;
            Inference__RepositoryIndexResponse__ModelIndex init =
                INFERENCE__REPOSITORY_INDEX_RESPONSE__MODEL_INDEX__INIT;
            rows[k] = init;
            rows[k].name = v[0];
            rows[k].version = v[1];
            rows[k].state = v[2];
            rows[k].reason = v[3];
            ptrs[k] = &rows[k];
            k++;
        }
        Inference__RepositoryIndexResponse r = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
        r.n_models = (size_t)k;
        r.models = ptrs;
        grpc_reply_message(call, &r.base);
    }
    free(rows);
    free(ptrs);
    cJSON_Delete(list);
}

/* Runs on the manager thread when a load or unload is done. */
static void job_done(struct registry_job *job)
{
    struct grpc_front_call *call = job->arg;
    if (job->status == INFER_OK && job->kind == REGISTRY_LOAD) {
        Inference__RepositoryModelLoadResponse r = INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
        grpc_reply_message(call, &r.base);
    } else if (job->status == INFER_OK) {
        Inference__RepositoryModelUnloadResponse r =
            INFERENCE__REPOSITORY_MODEL_UNLOAD_RESPONSE__INIT;
        grpc_reply_message(call, &r.base);
    } else {
        grpc_front_answer(call, code_of(job->status), job->message, NULL, 0);
    }
    free(job->config);
    free(job);
}

/* Queue a load or unload of name (config: an override, taken over). */
static void submit_job(struct grpc_front_call *call, enum registry_job_kind kind, const char *name,
                       char *config)
{
    struct server *srv = server_of(call);
    if (srv->cfg.model_control_mode != CONTROL_EXPLICIT) {
        free(config);
        grpc_front_answer(call, GF_PERMISSION_DENIED,
                          "model control is off: start inferd with --model-control-mode explicit "
                          "to load and unload models",
                          NULL, 0);
        return;
    }
    struct registry_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        free(config);
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    job->kind = kind;
    snprintf(job->name, sizeof job->name, "%s", name);
    job->config = config;
    job->done = job_done;
    job->arg = call;
    enum infer_status st = registry_manager_submit(&srv->registry, job);
    if (st != INFER_OK) {
        free(job->config);
        free(job);
        grpc_front_answer(call, code_of(st), "the server is shutting down", NULL, 0);
    }
}

static void repository_load(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__RepositoryModelLoadRequest *q =
        inference__repository_model_load_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "RepositoryModelLoadRequest");
    char *config = NULL;
    bool bad = false;
    for (size_t i = 0; i < q->n_parameters; i++) {
        const Inference__ModelRepositoryParameter *p = q->parameters[i]->value;
        if (strcmp(q->parameters[i]->key, "config") != 0)
            continue;
        if (p && p->parameter_choice_case ==
                     INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_STRING_PARAM) {
            free(config);
            config = strdup(p->string_param);
            bad = config == NULL;
        } else {
            bad = true;
        }
    }
    if (bad) {
        free(config);
        grpc_front_answer(call, GF_INVALID_ARGUMENT,
                          "parameter \"config\" must be a config.json as a string", NULL, 0);
    } else {
        submit_job(call, REGISTRY_LOAD, q->model_name, config);
    }
    inference__repository_model_load_request__free_unpacked(q, NULL);
}

static void repository_unload(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Inference__RepositoryModelUnloadRequest *q =
        inference__repository_model_unload_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "RepositoryModelUnloadRequest");
    submit_job(call, REGISTRY_UNLOAD, q->model_name, NULL);
    inference__repository_model_unload_request__free_unpacked(q, NULL);
}

/* ---- inference ---- */

/* One ModelInfer request (or one message of a stream) as an inference call
 * (infer_call.h): bound to its model, submitted to its queue like HTTP's,
 * answered from its done hook. */
struct grpc_infer {
    struct infer_request req;
    struct grpc_front_call *call;
    struct v2_request *v2;
    Inference__ModelInferRequest *msg; /* inputs may point into it */
    uint64_t start_ns;
};

/* Release the call (tensors, model reference) and free gi. */
static void infer_free(struct grpc_infer *gi)
{
    infer_call_release(&gi->req);
    v2_request_free(gi->v2);
    if (gi->msg)
        inference__model_infer_request__free_unpacked(gi->msg, NULL);
    free(gi);
}

/* Answer gi's call with status (its message; on INFER_OK the body, taken
 * over) and end gi; counts the answer in the model's metrics. The one
 * place an inference's status becomes a gRPC code. */
static void infer_answer(struct grpc_infer *gi, enum infer_status status, const char *message,
                         uint8_t *body, size_t len)
{
    enum grpc_front_code code = code_of(status);
    struct model *m = gi->req.model;
    char text[512];
    snprintf(text, sizeof text, "%s", message ? message : "");
    if (status == INFER_INTERNAL)
        redact_paths(text); /* libtorch's text may name files of this server's */
    if (m != NULL) {
        int http = http_like(code);
        uint64_t total = clock_now_ns() - gi->start_ns;
        metrics_stats_request(&m->metrics, http, total);
        metrics_count_request(&m->metrics, http);
        metrics_observe(&m->metrics.request_seconds, (double)total / 1e9);
        grpc_front_note_model(gi->call, m->cfg.name, m->cfg.version);
    }
    v2_request_settle(gi->v2); /* the regions are free before the client has the answer */
    grpc_front_answer(gi->call, code, text, status == INFER_OK ? body : NULL,
                      status == INFER_OK ? len : 0);
    if (status != INFER_OK)
        free(body);
    infer_free(gi);
}

/* The queue watcher asks: the client cancelled or left (the call then ends
 * INFER_CANCELLED). */
static bool infer_gone(const struct infer_request *req)
{
    const struct grpc_infer *gi = req->owner;
    return grpc_front_gone(gi->call);
}

/* Runs on a worker thread (or the queue watcher) once req has a result. */
static void infer_done(struct infer_request *req)
{
    struct grpc_infer *gi = req->owner;
    if (req->status != INFER_OK)
        return infer_answer(gi, req->status, req->error, NULL, 0);
    uint8_t *body = NULL;
    size_t len = 0;
    char err[256] = "";
    enum infer_status s =
        v2_proto_encode(gi->v2, &req->model->cfg, req, grpc_front_streaming(gi->call), &body, &len,
                        err, sizeof err);
    infer_answer(gi, s, err, body, len);
}

/* queued: nothing to do (a gRPC call needs no suspending; gone is asked). */
static const struct infer_hooks infer_hooks = {NULL, infer_gone, infer_done};

/* The call's deadline: the client's or --request-timeout-ms's, the
 * earlier; 0 for none. */
static uint64_t infer_deadline(const struct grpc_infer *gi, const struct server *srv)
{
    uint64_t client = grpc_front_deadline_ns(gi->call);
    uint64_t ours = srv->cfg.request_timeout_ms > 0
                        ? gi->start_ns + (uint64_t)srv->cfg.request_timeout_ms * 1000000u
                        : 0;
    return client && (!ours || client < ours) ? client : ours;
}

static void model_infer(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    struct server *srv = server_of(call);
    struct grpc_infer *gi = calloc(1, sizeof *gi);
    if (gi == NULL) {
        grpc_front_answer(call, GF_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    gi->call = call;
    gi->start_ns = clock_now_ns();
    gi->msg = inference__model_infer_request__unpack(NULL, len, msg);
    if (gi->msg == NULL) {
        infer_free(gi);
        return grpc_reply_invalid(call, "ModelInferRequest");
    }
    struct model *m = lookup(call, gi->msg->model_name, gi->msg->model_version);
    if (m == NULL) {
        infer_free(gi);
        return;
    }
    struct infer_request *req = &gi->req;
    infer_call_bind(req, m);
    char why[512];
    int retry_after_s;
    enum infer_status s = infer_call_available(req, &retry_after_s, why, sizeof why);
    if (s != INFER_OK)
        return infer_answer(gi, s, why, NULL, 0);
    gi->v2 = calloc(1, sizeof *gi->v2);
    if (gi->v2 == NULL)
        return infer_answer(gi, INFER_INTERNAL, "out of memory", NULL, 0);
    s = v2_proto_decode(&m->cfg, srv->cfg.max_image_pixels, &srv->shm, gi->msg, gi->v2, req, why,
                        sizeof why);
    if (s == INFER_OK)
        s = infer_call_check(req, why, sizeof why);
    if (s != INFER_OK)
        return infer_answer(gi, s, why, NULL, 0);
    req->request_id = gi->v2->has_id ? gi->v2->id : "";
    req->owner = gi;
    req->hooks = &infer_hooks;
    req->deadline_ns = infer_deadline(gi, srv);
    s = infer_call_submit(req, why, sizeof why);
    if (s != INFER_OK)
        infer_answer(gi, s, why, NULL, 0);
    /* else infer_done answers */
}

int grpc_service_stream_error(const char *message, uint8_t **out, size_t *len)
{
    return v2_proto_stream_error(message, out, len);
}

/* ---- grpc.health.v1.Health ---- */

static void health_check(struct grpc_front_call *call, const uint8_t *msg, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *q =
        grpc__health__v1__health_check_request__unpack(NULL, len, msg);
    if (q == NULL)
        return grpc_reply_invalid(call, "HealthCheckRequest");
    bool known = q->service[0] == '\0' || strcmp(q->service, "inference.GRPCInferenceService") == 0;
    if (!known) {
        grpc_front_answer(call, GF_NOT_FOUND, "unknown service", NULL, 0);
    } else {
        Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        r.status = server_ready(server_of(call))
                       ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                       : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        grpc_reply_message(call, &r.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(q, NULL);
}

const struct grpc_method grpc_service_methods[] = {
    {SERVICE "ServerLive", "ServerLive", ACCESS_OPEN, false, server_live},
    {SERVICE "ServerReady", "ServerReady", ACCESS_OPEN, false, server_ready_rpc},
    {SERVICE "ModelReady", "ModelReady", ACCESS_KEY, false, model_ready},
    {SERVICE "ServerMetadata", "ServerMetadata", ACCESS_KEY, false, server_metadata},
    {SERVICE "ModelMetadata", "ModelMetadata", ACCESS_KEY, false, model_metadata},
    {SERVICE "ModelInfer", "ModelInfer", ACCESS_KEY, false, model_infer},
    {SERVICE "ModelStreamInfer", "ModelStreamInfer", ACCESS_KEY, true, model_infer},
    {SERVICE "ModelConfig", "ModelConfig", ACCESS_KEY, false, model_config},
    {SERVICE "ModelStatistics", "ModelStatistics", ACCESS_KEY, false, model_statistics},
    {SERVICE "RepositoryIndex", "RepositoryIndex", ACCESS_KEY, false, repository_index},
    {SERVICE "RepositoryModelLoad", "RepositoryModelLoad", ACCESS_ADMIN, false, repository_load},
    {SERVICE "RepositoryModelUnload", "RepositoryModelUnload", ACCESS_ADMIN, false,
     repository_unload},
    {SERVICE "SystemSharedMemoryStatus", "SystemSharedMemoryStatus", ACCESS_KEY, false,
     grpc_shm_system_status},
    {SERVICE "SystemSharedMemoryRegister", "SystemSharedMemoryRegister", ACCESS_ADMIN, false,
     grpc_shm_system_register},
    {SERVICE "SystemSharedMemoryUnregister", "SystemSharedMemoryUnregister", ACCESS_ADMIN, false,
     grpc_shm_system_unregister},
    {SERVICE "CudaSharedMemoryStatus", "CudaSharedMemoryStatus", ACCESS_KEY, false,
     grpc_shm_cuda_status},
    {SERVICE "CudaSharedMemoryRegister", "CudaSharedMemoryRegister", ACCESS_ADMIN, false,
     grpc_shm_cuda_register},
    {SERVICE "CudaSharedMemoryUnregister", "CudaSharedMemoryUnregister", ACCESS_ADMIN, false,
     grpc_shm_cuda_unregister},
    {"/grpc.health.v1.Health/Check", "HealthCheck", ACCESS_OPEN, false, health_check},
};
const int grpc_service_n_methods = sizeof grpc_service_methods / sizeof grpc_service_methods[0];

int grpc_service_start(struct grpc_front *g, struct server *srv, char *err, size_t err_len)
{
    grpc_front_init(g, &srv->cfg, grpc_service_methods, grpc_service_n_methods, &srv->access, srv,
                    grpc_service_stream_error);
    if (srv->cfg.grpc_port == 0)
        return 0;
    struct transport t = {&grpc_front_transport, g};
    return server_add_transport(srv, &t, err, err_len);
}
