/* http.h - the libmicrohttpd front end: per-request state (an exchange),
 * body accumulation, dispatch through a route table, replies, and the
 * hand-off of inference work to a model's queue with suspend/resume. It
 * knows no endpoint and no protocol: handlers (api.h) see the exchange,
 * read the headers they own with http_request_header, and answer with the
 * http_reply_* functions. */
#ifndef INFERD_HTTP_H
#define INFERD_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "config.h"
#include "conn_guard.h"
#include "encoding.h"
#include "infer_request.h"
#include "linger.h"
#include "router.h"

struct MHD_Connection;
struct MHD_Daemon;
struct model;
struct server;

/* The front end's state. Fields are private to http.c unless marked. */
struct http_front {
    const struct inferd_config *cfg; /* host, port, threads, body and time limits */
    const struct route_def *routes;
    size_t n_routes;
    struct server *srv;    /* handed to handlers as ex->srv */
    struct access *access; /* API keys and CORS, checked before routing */
    struct MHD_Daemon *daemon;
    int quiesced_fd;           /* the listening socket after http_drain_begin, else -1 */
    int bound_port;            /* public, read-only: the port it listens on */
    struct linger_pool linger; /* sockets of early answers, read until the client stops */
    struct conn_guard guard;   /* connection limits, header and body deadlines */
    atomic_bool draining;
    atomic_int inflight; /* exchanges begun and not yet completed */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond; /* inflight reached 0 */
    uint64_t start_ns;
    atomic_uint_least64_t request_seq; /* for generated request IDs */
};

#define HTTP_REPLY_MAX_HEADERS 6

/* The status recorded for an exchange whose client left (nginx's code). */
#define HTTP_STATUS_CLIENT_CLOSED 499

/* JSON replies at least this long go out gzip-compressed to clients that
 * accept it (Accept-Encoding: gzip); smaller ones gain too little. */
#define HTTP_GZIP_MIN_BYTES 1024

struct http_header {
    const char *name; /* a string that outlives the reply */
    char value[256];
};

struct http_reply {
    int status; /* 0 until a reply is set */
    char *body; /* malloc'd, handed to libmicrohttpd */
    size_t len;
    const char *content_type;
    struct http_header headers[HTTP_REPLY_MAX_HEADERS]; /* beyond the usual ones */
    int n_headers;
    bool gzipped; /* body is gzip-compressed (Content-Encoding: gzip) */
};

struct http_exchange {
    struct http_front *front;
    struct server *srv; /* for handlers */
    struct MHD_Connection *conn;
    struct conn_entry *conn_entry; /* its connection's in the guard (NULL: none) */
    const char *method;
    char path[512];
    struct route route;
    struct access_result access; /* API key and CORS verdict */
    char request_id[72];
    char content_type[128]; /* as sent, "" when absent */
    char body_type[64];     /* the row's media type the body matched (routes with a body) */
    size_t content_length;  /* as declared (0 when absent); bounded by the limit */
    char *body;             /* inflated when it came gzip- or deflate-encoded */
    size_t body_len, body_cap;
    size_t wire_len;           /* body bytes as received */
    struct inflater *inflater; /* a gzip or deflate body, while it arrives */
    bool accept_gzip;          /* the client takes gzip replies */
    bool stats_counted;        /* the answer is in the model's statistics */
    uint64_t start_ns;
    enum { EX_READING, EX_QUEUED, EX_ANSWERED } phase;
    bool reply_queued;
    bool lingering;  /* an early answer whose socket the lingerer reads: close after it */
    bool discarding; /* the body broke a limit: drop the rest, then reply */
    struct http_reply reply;

    /* Inference hand-off. */
    struct model *model;     /* set by a handler: the answer counts in its metrics */
    struct model *model_ref; /* a reference the handler took, dropped as the exchange ends */
    struct infer_request infer;
    int client_fd;                            /* its socket while queued, else -1 */
    void (*encode)(struct http_exchange *ex); /* worker thread: outputs -> reply */
    void *api_state;                          /* the handler's own, freed by api_free */
    void (*api_free)(void *state);
};

/* Listen on cfg's host and port, check every request against access, and
 * dispatch through routes (n rows); srv is handed to handlers. Returns 0,
 * or -1 with err set (nothing left running). */
int http_start(struct http_front *h, const struct inferd_config *cfg,
               const struct route_def *routes, size_t n_routes, struct access *access,
               struct server *srv, char *err, size_t err_len);
/* Begin a drain: refuse new connections (accepted ones finish), then mark
 * the front end draining (replies close their connections). */
void http_drain_begin(struct http_front *h);
bool http_draining(struct http_front *h);
/* Wait until no exchange is in flight or deadline_ns (clock_now_ns) passes.
 * Returns true when none is. */
bool http_wait_idle(struct http_front *h, uint64_t deadline_ns);
/* Stop the daemon (every connection must have been resumed) and free. */
void http_stop(struct http_front *h);

/* Set the reply to a JSON error {"error": "..."}. */
enum route_outcome http_reply_error(struct http_exchange *ex, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set the reply to 503 with Retry-After: retry_after_s and a JSON error. */
enum route_outcome http_reply_unavailable(struct http_exchange *ex, int retry_after_s,
                                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Set the reply to body (taking ownership; NULL means out of memory: a
 * 500). A new reply drops the headers added to the one before. */
enum route_outcome http_reply_body(struct http_exchange *ex, int status, char *body, size_t len,
                                   const char *content_type);
/* Add a header to the current reply (value is copied). Returns 0, or -1
 * when there is no room or the value is too long. */
int http_reply_header(struct http_exchange *ex, const char *name, const char *value);

/* A request header's value, or NULL when absent. */
const char *http_request_header(struct http_exchange *ex, const char *name);

/* The value of query parameter key (?key=value), or NULL. */
const char *http_query(const struct http_exchange *ex, const char *key);

/* For a handler whose answer comes from another thread: suspend the
 * connection (the handler then returns ROUTE_SUSPENDED); that thread sets
 * the reply and calls http_resume. */
void http_suspend(struct http_exchange *ex);
void http_resume(struct http_exchange *ex);

/* Whether the client is on a loopback address (127.0.0.0/8, ::1). */
bool http_peer_loopback(struct http_exchange *ex);

/* The HTTP status of an inference status: the one place they are mapped. */
int http_status_of(enum infer_status s);

/* Queue ex->infer on model m and suspend the connection until a worker has
 * run it and encode() has set the reply. When the queue is full or closed
 * the reply is set at once (503 with Retry-After). */
enum route_outcome http_submit(struct http_exchange *ex, struct model *m);

#endif
