/* api_server.c - server-level endpoints: liveness, readiness, metrics,
 * server metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "gpu_stats.h"
#include "log.h"
#include "registry_render.h"
#include "version.h"

enum route_outcome api_health_live(struct http_exchange *ex)
{
    return api_reply_json_text(ex, 200, "{\"live\":true}");
}

enum route_outcome api_health_ready(struct http_exchange *ex)
{
    struct server *srv = ex->srv;
    if (server_ready(srv))
        return api_reply_json_text(ex, 200, "{\"ready\":true}");
    if (server_draining(srv))
        return http_reply_unavailable(ex, 1, "the server is draining before shutdown");
    return http_reply_unavailable(ex, 1,
                                  "not every model is loaded and warmed up; see "
                                  "/v2/repository/index");
}

enum route_outcome api_metrics(struct http_exchange *ex)
{
    struct server *srv = ex->srv;
    struct strbuf sb = {0};
    enum { MOST = MODEL_MAX_MODELS * MODEL_MAX_VERSIONS };
    char(*text)[MODEL_NAME_MAX + 32] = calloc(MOST, sizeof *text); /* label sets */
    const char **labels = calloc(MOST, sizeof *labels);
    const struct metrics_model **ms = calloc(MOST, sizeof *ms);
    if (text == NULL || labels == NULL || ms == NULL) {
        free(text);
        free(labels);
        free(ms);
        return http_reply_error(ex, 500, "out of memory");
    }
    struct model *models[MOST];
    int n = registry_snapshot(&srv->registry, models, MOST, false);
    for (int i = 0; i < n; i++) {
        struct model *m = models[i];
        atomic_store(&m->metrics.queue_pending, model_pending(m));
        atomic_store(&m->metrics.queue_capacity, m->queue.capacity);
        snprintf(text[i], sizeof text[i], "model=\"%s\",version=\"%d\"", m->cfg.name,
                 m->cfg.version);
        labels[i] = text[i];
        ms[i] = &m->metrics;
    }
    metrics_render_models(&sb, labels, ms, n);
    registry_render_metrics(&srv->registry, &sb);
    shm_render_metrics(&srv->shm, &sb);
    for (int i = 0; i < srv->n_transports; i++)
        if (srv->transports[i].ops->render_metrics)
            srv->transports[i].ops->render_metrics(srv->transports[i].self, &sb);
    for (int i = 0; i < n; i++)
        model_release(models[i]);
    free(text);
    free(labels);
    free(ms);
    strbuf_printf(
        &sb,
        "# HELP inferd_uptime_seconds Seconds since the server started.\n"
        "# TYPE inferd_uptime_seconds gauge\n"
        "inferd_uptime_seconds %.3f\n"
        "# HELP inferd_build_info Version of inferd and of libtorch.\n"
        "# TYPE inferd_build_info gauge\n"
        "inferd_build_info{version=\"%s\",libtorch=\"%s\",cuda=\"%s\"} 1\n"
        "# HELP inferd_log_dropped_lines_total Log lines dropped because stdout was slow.\n"
        "# TYPE inferd_log_dropped_lines_total counter\n"
        "inferd_log_dropped_lines_total %llu\n",
        (double)(clock_now_ns() - srv->start_ns) / 1e9, INFERD_VERSION, shim_torch_version(),
        shim_built_with_cuda() ? "yes" : "no", (unsigned long long)log_dropped_lines());
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (visible == NULL)
        visible = getenv("NVIDIA_VISIBLE_DEVICES");
    int slices = gpu_stats_render(&sb, srv->cfg.devices, srv->cfg.n_devices, GPU_STATS_NVML_LIBRARY,
                                  visible);
    if (slices > 0 && !atomic_exchange(&srv->mig_noted, true))
        log_msg(LOG_INFO,
                "%d GPU(s) here are MIG slices: their memory is the slice's, and "
                "inferd_gpu_utilization_ratio is left out for them (NVML gives no utilisation per "
                "slice, and the physical GPU's is every slice's together)",
                slices);
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

enum route_outcome api_server_meta(struct http_exchange *ex)
{
    struct strbuf sb = {0};
    strbuf_printf(&sb,
                  "{\"name\":\"inferd\",\"version\":\"%s\",\"extensions\":"
                  "[\"binary_tensor_data\",\"classification\",\"model_repository\","
                  "\"statistics\",\"model_configuration\"%s]}",
                  INFERD_VERSION,
                  !ex->srv->shm.on ? ""
                  : shim_built_with_cuda() && shim_cuda_device_count() > 0
                      ? ",\"system_shared_memory\",\"cuda_shared_memory\""
                      : ",\"system_shared_memory\"");
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, 200, body, len, "application/json");
}
