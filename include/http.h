/* http.h - the libmicrohttpd front end: per-request state (an exchange),
 * body accumulation, routing, replies, and the hand-off of inference work
 * to a model's queue with suspend/resume. Endpoint handlers (api_*.c) see
 * only the exchange. */
#ifndef INFERD_HTTP_H
#define INFERD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "batcher.h"
#include "router.h"
#include "server.h"

struct MHD_Connection;

struct http_reply {
    int status;
    char *body; /* malloc'd, handed to libmicrohttpd */
    size_t len;
    const char *content_type;
    const char *allow;         /* for 405 */
    int retry_after_s;         /* 503: > 0 adds Retry-After */
    long inference_header_len; /* v2 binary replies: >= 0 adds the header */
};

struct http_exchange {
    struct server *srv;
    struct MHD_Connection *conn;
    const char *method;
    char path[512];
    struct route route;
    struct access_result access; /* API key and CORS verdict */
    char request_id[72];
    char content_type[128];
    long inference_header_len; /* request's Inference-Header-Content-Length, -1 if absent */
    size_t content_length;     /* as declared (0 when absent); bounded by the limit */
    char *body;
    size_t body_len, body_cap;
    uint64_t start_ns;
    enum { EX_READING, EX_QUEUED, EX_ANSWERED } phase;
    bool reply_queued;
    bool discarding; /* the body broke a limit: drop the rest, then reply */
    struct http_reply reply;

    /* Inference hand-off. */
    struct model *model;
    struct infer_request infer;
    bool infer_used;
    void (*encode)(struct http_exchange *ex); /* worker: outputs -> reply */
    void *api_state;                          /* the handler's own, freed by api_free */
    void (*api_free)(void *state);
};

/* Start listening on cfg host/port. Returns 0 or -1 with err set. */
int http_start(struct server *srv, char *err, size_t err_len);
/* Stop accepting new connections (existing ones finish). */
void http_quiesce(struct server *srv);
void http_stop(struct server *srv);

/* Set the reply to a JSON error {"error": "..."}; returns 0. */
int http_reply_error(struct http_exchange *ex, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set the reply to body (taking ownership; NULL means out of memory). */
int http_reply_body(struct http_exchange *ex, int status, char *body, size_t len,
                    const char *content_type);

/* Queue ex->infer on model m and suspend the connection until a worker has
 * run it and encode() has set the reply. When the queue is full or closed
 * the reply is set at once (503 with Retry-After). Returns 1 when
 * suspended, 0 when a reply is ready. */
int http_submit(struct http_exchange *ex, struct model *m);

#endif
