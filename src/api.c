/* api.c - the route table and the helpers the handlers share (see api.h). */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "redact.h"

#define API_ROW(name, methods, pattern, accepts, access)                                           \
    {#name, methods, pattern, accepts, API_ACCESS_##access, api_##name},
const struct route_def api_routes[] = {API_ROUTES(API_ROW)};
#undef API_ROW
const size_t api_n_routes = sizeof api_routes / sizeof api_routes[0];

/* Model name at version ("" or NULL: the newest ready one). */
static struct model *lookup(struct http_exchange *ex, const char *name, const char *version)
{
    int v = 0;
    if (version != NULL && version[0]) {
        size_t n = strlen(version);
        if (n > 9 || version[0] == '0' || strspn(version, "0123456789") != n) {
            http_reply_error(ex, 404, "model %s has no version %s (versions are numbers from 1)",
                             name, version);
            return NULL;
        }
        v = atoi(version);
    }
    char why[512];
    struct model *m = registry_acquire(&ex->srv->registry, name, v, why, sizeof why);
    if (m == NULL) {
        http_reply_error(ex, 404, "%s", why);
        return NULL;
    }
    if (ex->model_ref != NULL)
        model_release(ex->model_ref);
    ex->model_ref = m;
    return m;
}

struct model *api_lookup_model(struct http_exchange *ex, const char *name)
{
    return lookup(ex, name, "");
}

struct model *api_lookup_version(struct http_exchange *ex)
{
    return lookup(ex, ex->route.model, ex->route.version);
}

bool api_model_available(struct http_exchange *ex, struct model *m)
{
    char why[256];
    switch (model_get_state(m)) {
    case MODEL_READY: break;
    case MODEL_LOADING:
        http_reply_unavailable(ex, 1, "model %s is still loading", m->cfg.name);
        return false;
    case MODEL_FAILED:
        model_get_error(m, why, sizeof why);
        redact_paths(why); /* the log has the paths */
        http_reply_unavailable(ex, 5, "model %s is not available: %s", m->cfg.name, why);
        return false;
    }
    if (batch_queue_length(&m->queue) >= m->queue.capacity) {
        http_reply_unavailable(ex, 1, "model %s has %d requests queued, its limit; retry later",
                               m->cfg.name, m->queue.capacity);
        return false;
    }
    return true;
}

enum route_outcome api_reply_json_text(struct http_exchange *ex, int status, const char *json)
{
    char *body = strdup(json);
    return http_reply_body(ex, status, body, body ? strlen(body) : 0, "application/json");
}
