/* api.c - the route table and the helpers the handlers share (see api.h). */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#define API_ROW(name, methods, pattern, accepts) {#name, methods, pattern, accepts, api_##name},
const struct route_def api_routes[] = {API_ROUTES(API_ROW)};
#undef API_ROW
const size_t api_n_routes = sizeof api_routes / sizeof api_routes[0];

struct model *api_lookup_model(struct http_exchange *ex, const char *name)
{
    struct model *m = server_find_model(ex->srv, name);
    if (m == NULL)
        http_reply_error(ex, 404, "no model named '%s' in the repository", name);
    return m;
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
