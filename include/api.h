/* api.h - inferd's HTTP API: the route table built from api_routes.h, the
 * endpoint handlers (api_<name>, one per row, in the api_*.c files) and
 * the helpers they share. A handler reads the exchange (route, body) and
 * either sets its reply (ROUTE_REPLIED) or hands it to a model's queue with
 * http_submit (ROUTE_SUSPENDED). */
#ifndef INFERD_API_H
#define INFERD_API_H

#include <stdbool.h>
#include <stddef.h>

#include "api_routes.h"
#include "http.h"
#include "router.h"
#include "server.h"

#define API_DECLARE_HANDLER(name, methods, pattern, accepts, access)                               \
    enum route_outcome api_##name(struct http_exchange *ex);
API_ROUTES(API_DECLARE_HANDLER)
#undef API_DECLARE_HANDLER

/* The route table: one row per API_ROUTES line, in its order. */
extern const struct route_def api_routes[];
extern const size_t api_n_routes;

/* Find the model a request names (its newest ready version); sets a 404
 * reply and returns NULL when there is none. The exchange holds a reference
 * to it until it ends. */
struct model *api_lookup_model(struct http_exchange *ex, const char *name);

/* The model and version the route names ({model}, {version}: none for the
 * newest ready one); sets a 404 reply and returns NULL when that model or
 * version is not served. The exchange holds a reference, as above. */
struct model *api_lookup_version(struct http_exchange *ex);

/* Set the reply to a copy of a fixed JSON text. */
enum route_outcome api_reply_json_text(struct http_exchange *ex, int status, const char *json);

/* Whether m can take a request now; when it cannot (loading, failed, queue
 * full), sets a 503 reply with Retry-After and returns false. */
bool api_model_available(struct http_exchange *ex, struct model *m);

#endif
