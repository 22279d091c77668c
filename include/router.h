/* router.h - maps a method and path to an endpoint of inferd's HTTP API, or
 * to the error it deserves (404, 405 with Allow, 400 for a bad model name). */
#ifndef INFERD_ROUTER_H
#define INFERD_ROUTER_H

#include <stdbool.h>

#include "model_repo.h"

enum endpoint {
    EP_NONE,
    EP_PREDICT,          /* POST /predict */
    EP_HEALTH_LIVE,      /* GET /v2/health/live */
    EP_HEALTH_READY,     /* GET /v2/health/ready */
    EP_METRICS,          /* GET /metrics */
    EP_SERVER_META,      /* GET /v2 */
    EP_REPOSITORY_INDEX, /* GET|POST /v2/repository/index */
    EP_MODEL_META,       /* GET /v2/models/{name}[/versions/{v}] */
    EP_MODEL_READY,      /* GET /v2/models/{name}[/versions/{v}]/ready */
    EP_MODEL_INFER,      /* POST /v2/models/{name}[/versions/{v}]/infer */
};

enum route_status {
    ROUTE_OK = 0,
    ROUTE_NOT_FOUND = 404,
    ROUTE_BAD_METHOD = 405,
    ROUTE_BAD_NAME = 400,
};

struct route {
    enum endpoint endpoint;
    char model[MODEL_NAME_MAX]; /* for /v2/models/... */
    char version[32];           /* empty when not given */
    const char *allow;          /* the methods the path takes (for 405) */
    bool has_body;              /* the endpoint reads a request body */
};

/* Match method and path (without the query string). Returns a
 * route_status; out->allow is set for ROUTE_OK and ROUTE_BAD_METHOD. */
enum route_status route_match(const char *method, const char *path, struct route *out);

const char *endpoint_name(enum endpoint ep);

#endif
