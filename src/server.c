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
#include "registry_manager.h"

bool server_draining(struct server *srv)
{
    return atomic_load(&srv->draining);
}

bool server_ready(struct server *srv)
{
    return !server_draining(srv) && registry_all_ready(&srv->registry);
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

/* Read every model folder (registry_manager_init) and say when the default model
 * is missing. A folder that fails is listed as unavailable; only an
 * unreadable repository is an error. */
static int load_repository(struct server *srv, char *err, size_t err_len)
{
    const struct inferd_config *cfg = &srv->cfg;
    if (registry_manager_init(&srv->registry, &srv->cfg, err, err_len) != 0)
        return -1;
    if (!registry_has(&srv->registry, cfg->default_model))
        log_msg(LOG_WARN, "default model '%s' is not in %s: POST /predict will answer 404",
                cfg->default_model, cfg->model_repository);
    return 0;
}

/* The admin token from --admin-token-file (access.h): one line, compared in
 * constant time, never logged. Returns 0, or -1 with err set. */
static int read_admin_token(struct server *srv, char *err, size_t err_len)
{
    const char *path = srv->cfg.admin_token_file;
    if (path[0] == '\0')
        return 0;
    if (access_read_admin_token(&srv->access, path, err, err_len) != 0)
        return -1;
    if (srv->cfg.model_control_mode != CONTROL_EXPLICIT && !srv->cfg.shared_memory)
        log_msg(LOG_WARN, "--admin-token-file is set but --model-control-mode is not explicit: "
                          "load and unload stay refused");
    return 0;
}

static void release_all(struct server *srv)
{
    registry_manager_destroy(&srv->registry);
    shm_table_destroy(&srv->shm);
    access_destroy(&srv->access);
}

int server_start(struct server *srv, const struct inferd_config *cfg,
                 const struct route_def *routes, size_t n_routes, char *err, size_t err_len)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->start_ns = clock_now_ns();
    if (shm_table_init(&srv->shm, cfg->shared_memory, cfg->shared_memory_max_regions,
                       (uint64_t)cfg->shared_memory_max_bytes) != 0) {
        snprintf(err, err_len, "cannot set up the shared memory table");
        return -1;
    }
    if (access_init(&srv->access, cfg->api_key_file, cfg->metrics_need_key, cfg->cors_allow_origin,
                    err, err_len) != 0) {
        shm_table_destroy(&srv->shm);
        return -1;
    }
    if (read_admin_token(srv, err, err_len) != 0) {
        access_destroy(&srv->access);
        shm_table_destroy(&srv->shm);
        return -1;
    }
    if (config_resolve_devices(&srv->cfg, shim_cuda_device_count(), err, err_len) != 0 ||
        configure_threads(srv, err, err_len) != 0 || load_repository(srv, err, err_len) != 0) {
        access_destroy(&srv->access);
        shm_table_destroy(&srv->shm);
        return -1;
    }
    /* The start-up models are known before HTTP starts; they load and warm
     * up in their workers, started last, while liveness already answers. A
     * port in use fails before any model loads. */
    http_init(&srv->http, &srv->cfg, routes, n_routes, &srv->access, srv);
    srv->transports[srv->n_transports++] = (struct transport){&http_transport, &srv->http};
    if (transport_start_all(srv->transports, srv->n_transports, err, err_len) != 0) {
        release_all(srv);
        return -1;
    }
    if (queue_watch_start(&srv->queue_watch, &srv->registry, err, err_len) != 0) {
        transport_stop_all(srv->transports, srv->n_transports);
        release_all(srv);
        return -1;
    }
    if (registry_manager_start(&srv->registry, err, err_len) != 0) {
        queue_watch_stop(&srv->queue_watch);
        transport_stop_all(srv->transports, srv->n_transports);
        release_all(srv);
        return -1;
    }
    static const char *const modes[] = {"none", "poll", "explicit"};
    log_msg(LOG_INFO, "listening on %s:%d, %d HTTP thread(s), model control mode %s", srv->cfg.host,
            srv->http.bound_port, srv->cfg.http_threads, modes[srv->cfg.model_control_mode]);
    return 0;
}

int server_add_transport(struct server *srv, const struct transport *t, char *err, size_t err_len)
{
    if (srv->n_transports == SERVER_MAX_TRANSPORTS) {
        snprintf(err, err_len, "too many transports (%d)", SERVER_MAX_TRANSPORTS);
        return -1;
    }
    if (transport_start_all(t, 1, err, err_len) != 0)
        return -1;
    srv->transports[srv->n_transports++] = *t;
    return 0;
}

void server_drain_and_stop(struct server *srv)
{
    uint64_t t0 = clock_now_ns();
    const struct transport *t = srv->transports;
    int n_t = srv->n_transports;
    /* Refuse new connections first, then report not ready: a client that
     * has seen readiness turn 503 can no longer connect. */
    transport_drain_begin_all(t, n_t);
    atomic_store(&srv->draining, true);
    log_msg(LOG_INFO, "draining: %d request(s) in flight, up to %d s",
            transport_inflight_all(t, n_t), srv->cfg.drain_timeout_s);
    uint64_t deadline = t0 + (uint64_t)srv->cfg.drain_timeout_s * 1000000000u;
    bool clean = transport_wait_idle_all(t, n_t, deadline);
    /* No more loads or unloads: a control request still waiting gets 503. */
    registry_manager_stop(&srv->registry);
    static struct model *all[REGISTRY_SNAPSHOT_MAX]; /* only the main thread drains */
    int n = registry_snapshot(&srv->registry, all, REGISTRY_SNAPSHOT_MAX, true);
    if (!clean) {
        int dropped = 0;
        for (int i = 0; i < n; i++) {
            struct infer_request *left = batch_queue_steal_all(&all[i]->queue);
            for (const struct infer_request *r = left; r != NULL; r = r->next)
                dropped++;
            infer_request_finish_all(left, INFER_UNAVAILABLE,
                                     "the server shut down before this request ran");
        }
        log_msg(LOG_WARN, "drain timeout: %d queued request(s) answered 503", dropped);
    }
    /* Close the queues (a request arriving now gets 503, "shutting down");
     * workers finish any batch in progress and resume its connections. The
     * models stay allocated until the HTTP threads are gone: a request on a
     * kept-alive connection may still look one up. */
    for (int i = 0; i < n; i++)
        model_close(all[i]);
    for (int i = 0; i < n; i++)
        model_join(all[i]);
    for (int i = 0; i < n; i++)
        model_release(all[i]);
    transport_wait_idle_all(t, n_t, clock_now_ns() + 1000000000u);
    queue_watch_stop(&srv->queue_watch);
    transport_stop_all(t, n_t);
    log_msg(LOG_INFO, "stopped after %.3f s drain%s", (double)(clock_now_ns() - t0) / 1e9,
            clean ? "" : " (timed out)");
    release_all(srv);
}

void server_reload(struct server *srv)
{
    char err[512];
    if (srv->cfg.model_control_mode == CONTROL_POLL) {
        log_msg(LOG_INFO, "SIGHUP: rescanning the model repository");
        registry_manager_rescan(&srv->registry);
    }
    if (!access_keys_on(&srv->access)) {
        log_msg(LOG_INFO, "SIGHUP: no --api-key-file, nothing to re-read");
        return;
    }
    if (access_reload(&srv->access, err, sizeof err) != 0)
        log_msg(LOG_ERROR, "SIGHUP: %s; the previous keys stay in force", err);
}
