/* api.h - inferd's HTTP API: the route table built from api_routes.h, the
 * endpoint handlers (api_<name>, one per row, in the api_*.c files) and
 * the helpers they share. A handler reads the exchange (route, body) and
 * either sets its reply (ROUTE_REPLIED) or begins an inference call
 * (api_call_begin), fills its inputs and submits it (api_call_submit:
 * ROUTE_SUSPENDED until a worker has run it). */
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
 * reply and returns NULL when there is none. The caller holds a reference
 * to it: model_release, or api_call_begin takes it over. */
struct model *api_lookup_model(struct http_exchange *ex, const char *name);

/* The model and version the route names ({model}, {version}: none for the
 * newest ready one); sets a 404 reply and returns NULL when that model or
 * version is not served. A reference, as above. */
struct model *api_lookup_version(struct http_exchange *ex);

/* An HTTP inference call: the call, and its protocol's state until the
 * reply is encoded. */
struct api_call {
    struct infer_request req;                 /* first: ex->call points here */
    void (*encode)(struct http_exchange *ex); /* worker thread: outputs -> reply */
    void *state;                              /* the protocol's (v2_request, predict_state) */
    void (*state_free)(void *state);
    void (*state_settle)(void *state); /* optional: as the answer leaves (lets go of
                                        * what the client may reuse once answered) */
};

/* Begin an inference call on m for ex, taking over the reference to m:
 * from here on every answer counts in m's metrics, and encode (worker
 * thread) sets the reply from its outputs. Checks that m takes calls now.
 * Returns the call, or NULL with the reply set (503 unavailable, 500 out
 * of memory). */
struct api_call *api_call_begin(struct http_exchange *ex, struct model *m,
                                void (*encode)(struct http_exchange *ex));

/* The call ex carries (api_call_begin's). */
static inline struct api_call *api_call_of(struct http_exchange *ex)
{
    return (struct api_call *)ex->call;
}

/* Check the call's inputs against its model and queue it: ROUTE_SUSPENDED,
 * or ROUTE_REPLIED with the reply set (400, 503). */
enum route_outcome api_call_submit(struct http_exchange *ex, struct api_call *c);

/* Set the reply to a copy of a fixed JSON text. */
enum route_outcome api_reply_json_text(struct http_exchange *ex, int status, const char *json);

#endif
