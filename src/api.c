/* api.c - the route table and the helpers the handlers share (see api.h). */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "infer_call.h"

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

/* Once, as the answer leaves: the model's statistics. */
static void call_answered(struct http_exchange *ex)
{
    struct api_call *c = api_call_of(ex);
    if (c->state_settle)
        c->state_settle(c->state);
    metrics_stats_request(&c->req.model->metrics, ex->reply.status, clock_now_ns() - ex->start_ns);
}

/* As the exchange ends: the model's request metrics, then the call freed. */
static void call_ended(struct http_exchange *ex, uint64_t total_ns)
{
    struct api_call *c = api_call_of(ex);
    struct metrics_model *metrics = &c->req.model->metrics;
    metrics_count_request(metrics, ex->reply.status);
    metrics_observe(&metrics->request_seconds, (double)total_ns / 1e9);
    if (c->state_free)
        c->state_free(c->state);
    infer_call_release(&c->req);
    free(c);
    ex->call = NULL;
}

/* Worker thread: the protocol's encoder (the one table serves every
 * protocol; the encoder rides in the call). */
static void call_encode(struct http_exchange *ex)
{
    struct api_call *c = api_call_of(ex);
    c->encode(ex);
}

static const struct http_call_ops call_ops = {call_encode, call_answered, call_ended};

struct api_call *api_call_begin(struct http_exchange *ex, struct model *m,
                                void (*encode)(struct http_exchange *ex))
{
    struct api_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        model_release(m);
        http_reply_error(ex, 500, "out of memory");
        return NULL;
    }
    infer_call_bind(&c->req, m);
    c->encode = encode;
    http_attach_call(ex, &c->req, &call_ops);
    char why[512];
    int retry_after_s;
    enum infer_status s = infer_call_available(&c->req, &retry_after_s, why, sizeof why);
    if (s != INFER_OK) {
        http_reply_status(ex, s, retry_after_s, why);
        return NULL;
    }
    return c;
}

enum route_outcome api_call_submit(struct http_exchange *ex, struct api_call *c)
{
    char why[512];
    enum infer_status s = infer_call_check(&c->req, why, sizeof why);
    if (s == INFER_OK)
        s = infer_call_submit(&c->req, why, sizeof why);
    return s == INFER_OK ? ROUTE_SUSPENDED : http_reply_status(ex, s, 1, why);
}

enum route_outcome api_reply_json_text(struct http_exchange *ex, int status, const char *json)
{
    char *body = strdup(json);
    return http_reply_body(ex, status, body, body ? strlen(body) : 0, "application/json");
}
