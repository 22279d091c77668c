/* server.c - start-up and shutdown of the whole server (see server.h):
 * devices, thread split, the model repository, the HTTP front end, and the
 * graceful drain. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

struct model *server_find_model(struct server *srv, const char *name)
{
    for (int i = 0; i < srv->n_models; i++)
        if (strcmp(srv->models[i].cfg.name, name) == 0)
            return &srv->models[i];
    return NULL;
}

bool server_draining(struct server *srv)
{
    return http_draining(&srv->http);
}

bool server_ready(struct server *srv)
{
    if (server_draining(srv) || srv->n_models == 0)
        return false;
    for (int i = 0; i < srv->n_models; i++)
        if (model_get_state(&srv->models[i]) != MODEL_READY)
            return false;
    return true;
}

/* Split the CPU cores among CPU instances so they do not oversubscribe. */
static int configure_threads(struct server *srv, char *err, size_t err_len)
{
    const struct inferd_config *cfg = &srv->cfg;
    int cpu_instances = 0;
    for (int d = 0; d < cfg->n_devices; d++)
        if (cfg->devices[d] == CONFIG_DEVICE_CPU)
            cpu_instances += cfg->instances_per_device;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    int intra = cpu_instances > 0 ? (int)(cores / cpu_instances) : 1;
    if (intra < 1)
        intra = 1;
    if (shim_set_threads(intra, 1, err, err_len) != 0)
        return -1;
    log_msg(LOG_INFO, "libtorch %s, %ld cores, %d intra-op thread(s) per instance",
            shim_torch_version(), cores, intra);
    for (int d = 0; cfg->gpu_memory_fraction > 0 && d < cfg->n_devices; d++) {
        if (cfg->devices[d] == CONFIG_DEVICE_CPU)
            continue;
        if (shim_set_gpu_memory_fraction(cfg->devices[d], cfg->gpu_memory_fraction, err, err_len) !=
            0)
            return -1;
    }
    return 0;
}

/* Read every model folder and start the models. A folder that fails is
 * listed as unavailable; only an unreadable repository is an error. */
static int load_repository(struct server *srv, char *err, size_t err_len)
{
    char names[MODEL_MAX_MODELS][MODEL_NAME_MAX];
    const struct inferd_config *cfg = &srv->cfg;
    int n = model_repo_list(cfg->model_repository, names, MODEL_MAX_MODELS, err, err_len);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, err_len, "no model folder with a config.json in %s", cfg->model_repository);
        return -1;
    }
    srv->models = calloc((size_t)n, sizeof *srv->models);
    if (srv->models == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct model_config mc;
        char why[256];
        struct model *m = &srv->models[srv->n_models];
        if (model_config_load(cfg->model_repository, names[i], cfg, &mc, why, sizeof why) != 0) {
            log_msg(LOG_ERROR, "model %s: %s", names[i], why);
            if (model_init_failed(m, names[i], why) == 0)
                srv->n_models++;
            continue;
        }
        if (model_init(m, &mc, cfg, why, sizeof why) != 0) {
            log_msg(LOG_ERROR, "model %s: %s", names[i], why);
            if (model_init_failed(m, names[i], why) == 0)
                srv->n_models++;
            continue;
        }
        srv->n_models++;
        log_msg(LOG_INFO,
                "model %s: %d instance(s) starting, max_batch_size %d, "
                "max_queue_delay_us %ld",
                names[i], m->n_workers, m->cfg.max_batch_size, m->cfg.max_queue_delay_us);
    }
    if (server_find_model(srv, cfg->default_model) == NULL)
        log_msg(LOG_WARN, "default model '%s' is not in %s: POST /predict will answer 404",
                cfg->default_model, cfg->model_repository);
    return 0;
}

static void stop_models(struct server *srv)
{
    for (int i = 0; i < srv->n_models; i++)
        model_close(&srv->models[i]);
    for (int i = 0; i < srv->n_models; i++)
        model_destroy(&srv->models[i]);
    free(srv->models);
    srv->models = NULL;
    srv->n_models = 0;
}

int server_start(struct server *srv, const struct inferd_config *cfg,
                 const struct route_def *routes, size_t n_routes, char *err, size_t err_len)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->start_ns = clock_now_ns();
    if (access_init(&srv->access, cfg->api_key_file, cfg->metrics_need_key, cfg->cors_allow_origin,
                    err, err_len) != 0)
        return -1;
    if (config_resolve_devices(&srv->cfg, shim_cuda_device_count(), err, err_len) != 0 ||
        configure_threads(srv, err, err_len) != 0 || load_repository(srv, err, err_len) != 0) {
        access_destroy(&srv->access);
        return -1;
    }
    /* The model list is complete and fixed before HTTP starts (the HTTP
     * threads read it without a lock); the models load and warm up in their
     * workers, started last, while liveness already answers. A port in use
     * fails before any model loads. */
    if (http_start(&srv->http, &srv->cfg, routes, n_routes, &srv->access, srv, err, err_len) != 0) {
        stop_models(srv);
        access_destroy(&srv->access);
        return -1;
    }
    if (queue_watch_start(&srv->queue_watch, srv->models, srv->n_models, err, err_len) != 0) {
        http_stop(&srv->http);
        stop_models(srv);
        access_destroy(&srv->access);
        return -1;
    }
    log_msg(LOG_INFO, "listening on %s:%d, %d HTTP thread(s)", srv->cfg.host, srv->http.bound_port,
            srv->cfg.http_threads);
    for (int i = 0; i < srv->n_models; i++)
        model_run(&srv->models[i]);
    return 0;
}

void server_drain_and_stop(struct server *srv)
{
    uint64_t t0 = clock_now_ns();
    /* Refuse new connections first, then report not ready: a client that
     * has seen readiness turn 503 can no longer connect. */
    http_drain_begin(&srv->http);
    log_msg(LOG_INFO, "draining: %d request(s) in flight, up to %d s",
            atomic_load(&srv->http.inflight), srv->cfg.drain_timeout_s);
    uint64_t deadline = t0 + (uint64_t)srv->cfg.drain_timeout_s * 1000000000u;
    bool clean = http_wait_idle(&srv->http, deadline);
    if (!clean) {
        int dropped = 0;
        for (int i = 0; i < srv->n_models; i++) {
            struct infer_request *all = batch_queue_steal_all(&srv->models[i].queue);
            for (const struct infer_request *r = all; r != NULL; r = r->next)
                dropped++;
            infer_request_finish_all(all, 503, "the server shut down before this request ran");
        }
        log_msg(LOG_WARN, "drain timeout: %d queued request(s) answered 503", dropped);
    }
    /* Close the queues (a request arriving now gets 503, "shutting down");
     * workers finish any batch in progress and resume its connections. The
     * models stay allocated until the HTTP threads are gone: a request on a
     * kept-alive connection may still look one up. */
    for (int i = 0; i < srv->n_models; i++)
        model_close(&srv->models[i]);
    for (int i = 0; i < srv->n_models; i++)
        model_join(&srv->models[i]);
    http_wait_idle(&srv->http, clock_now_ns() + 1000000000u);
    queue_watch_stop(&srv->queue_watch);
    http_stop(&srv->http);
    stop_models(srv);
    log_msg(LOG_INFO, "stopped after %.3f s drain%s", (double)(clock_now_ns() - t0) / 1e9,
            clean ? "" : " (timed out)");
    access_destroy(&srv->access);
}

void server_reload(struct server *srv)
{
    char err[512];
    if (!access_keys_on(&srv->access)) {
        log_msg(LOG_INFO, "SIGHUP: no --api-key-file, nothing to re-read");
        return;
    }
    if (access_reload(&srv->access, err, sizeof err) != 0)
        log_msg(LOG_ERROR, "SIGHUP: %s; the previous keys stay in force", err);
}
