/* api_routes.h - inferd's HTTP API, one row per endpoint:
 *
 *   ROUTE(name, methods, path pattern, body media types or NULL, access)
 *
 * access is who may call it (access.h): open (anyone), metrics (anyone,
 * or a key with --metrics-need-key), key (an API key when --api-key-file
 * is set), admin (the admin token, or without --admin-token-file a
 * loopback client; no API key).
 *
 * The handler of a row is api_<name> (an api_*.c file). api.c turns the
 * rows into the route table the HTTP front end dispatches through, and
 * declares the handlers; the router's tests read the same rows. The order
 * matters only where two patterns match the same path: the first wins
 * (/v2/models/stats is every model's statistics, as in Triton, not the
 * metadata of a model called "stats").
 * Pattern syntax: router.h. */
#ifndef INFERD_API_ROUTES_H
#define INFERD_API_ROUTES_H

#define API_JSON "application/json"
#define API_BINARY "application/octet-stream"
/* Encoded images, for models whose input declares "image" preprocessing. */
#define API_IMAGES "image/jpeg, image/png, multipart/form-data"

/* The access column's words as access levels (access.h). */
#define API_ACCESS_open ACCESS_OPEN
#define API_ACCESS_metrics ACCESS_METRICS
#define API_ACCESS_key ACCESS_KEY
#define API_ACCESS_admin ACCESS_ADMIN

/* clang-format off */
#define API_ROUTES(ROUTE)                                                                        \
    ROUTE(predict,          "POST",            "/predict",      API_JSON ", " API_IMAGES, key)   \
    ROUTE(health_live,      "GET, HEAD",       "/v2/health/live",      NULL, open)               \
    ROUTE(health_ready,     "GET, HEAD",       "/v2/health/ready",     NULL, open)               \
    ROUTE(metrics,          "GET, HEAD",       "/metrics",             NULL, metrics)            \
    ROUTE(server_meta,      "GET, HEAD",       "/v2",                  NULL, key)                \
    ROUTE(repository_index, "GET, HEAD, POST", "/v2/repository/index", NULL, key)                \
    ROUTE(models_stats,     "GET, HEAD",  "/v2/models/stats",                              NULL, key) \
    ROUTE(repository_load,  "POST", "/v2/repository/models/{model}/load",   API_JSON, admin)     \
    ROUTE(repository_unload, "POST", "/v2/repository/models/{model}/unload", API_JSON, admin)    \
    ROUTE(model_meta,       "GET, HEAD",  "/v2/models/{model}[/versions/{version}]",       NULL, key) \
    ROUTE(model_ready,      "GET, HEAD",  "/v2/models/{model}[/versions/{version}]/ready", NULL, key) \
    ROUTE(model_stats,      "GET, HEAD",  "/v2/models/{model}[/versions/{version}]/stats", NULL, key) \
    ROUTE(model_config,     "GET, HEAD",  "/v2/models/{model}[/versions/{version}]/config", NULL, key) \
    ROUTE(model_infer,      "POST",       "/v2/models/{model}[/versions/{version}]/infer",           \
          API_JSON ", " API_BINARY, key)                                                         \
    ROUTE(sysshm_status_all, "GET, HEAD", "/v2/systemsharedmemory/status",       NULL, key)      \
    ROUTE(sysshm_status,     "GET, HEAD", "/v2/systemsharedmemory/region/{region}/status", NULL, key) \
    ROUTE(sysshm_register,   "POST", "/v2/systemsharedmemory/region/{region}/register", API_JSON, admin) \
    ROUTE(sysshm_unregister, "POST", "/v2/systemsharedmemory/region/{region}/unregister", API_JSON, admin) \
    ROUTE(sysshm_unregister_all, "POST", "/v2/systemsharedmemory/unregister",   API_JSON, admin)  \
    ROUTE(cudashm_status_all, "GET, HEAD", "/v2/cudasharedmemory/status",         NULL, key)      \
    ROUTE(cudashm_status,     "GET, HEAD", "/v2/cudasharedmemory/region/{region}/status", NULL, key) \
    ROUTE(cudashm_register,   "POST", "/v2/cudasharedmemory/region/{region}/register", API_JSON, admin) \
    ROUTE(cudashm_unregister, "POST", "/v2/cudasharedmemory/region/{region}/unregister", API_JSON, admin) \
    ROUTE(cudashm_unregister_all, "POST", "/v2/cudasharedmemory/unregister",     API_JSON, admin)
/* clang-format on */

#endif
