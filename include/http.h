/* http.h - the libmicrohttpd front end: per-request state (an exchange),
 * body accumulation, dispatch through a route table, replies, and the
 * attachment of an inference call (infer_request.h) with suspend/resume
 * while it is queued. It knows no endpoint, no protocol and no model:
 * handlers (api.h) see the exchange, read the headers they own with
 * http_request_header, answer with the http_reply_* functions, and attach a
 * call with http_attach_call; the call's status becomes an HTTP code in one
 * place (http_reply_status). */
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
#include "transport.h"

struct MHD_Connection;
struct MHD_Daemon;
struct server;
struct http_exchange;

/* A handler's hooks for the inference call it attached to an exchange. */
struct http_call_ops {
    /* Worker thread, the call ended INFER_OK: set the reply from its
     * outputs. */
    void (*encode)(struct http_exchange *ex);
    /* Once, as the answer is about to leave (or the exchange ends without
     * one): count it. */
    void (*answered)(struct http_exchange *ex);
    /* As the exchange ends (total_ns after it began): free the call. */
    void (*ended)(struct http_exchange *ex, uint64_t total_ns);
};

/* The front end's state. Fields are private to http.c unless marked. */
struct http_front {
    const struct inferd_config *cfg; /* host, port, threads, body and time limits */
    const struct route_def *routes;
    size_t n_routes;
    struct server *srv;    /* handed to handlers as ex->srv */
    struct access *access; /* API keys and CORS, checked before routing */
    struct MHD_Daemon *daemon;
    int quiesced_fd;           /* the listening socket once draining, else -1 */
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
    size_t body_lead;          /* body's offset in its allocation (aligns a binary part) */
    size_t wire_len;           /* body bytes as received */
    struct inflater *inflater; /* a gzip or deflate body, while it arrives */
    bool accept_gzip;          /* the client takes gzip replies */
    bool answer_counted;       /* call_ops->answered has run */
    uint64_t start_ns;
    enum { EX_READING, EX_QUEUED, EX_ANSWERED } phase;
    bool reply_queued;
    bool lingering;  /* an early answer whose socket the lingerer reads: close after it */
    bool discarding; /* the body broke a limit: drop the rest, then reply */
    struct http_reply reply;

    /* An inference call (http_attach_call), NULL for other requests. */
    struct infer_request *call;
    const struct http_call_ops *call_ops;
    int client_fd; /* its socket once a call is attached, else -1 */
};

/* Set up h to listen on cfg's host and port, check every request against
 * access, and dispatch through routes (n rows); srv is handed to handlers.
 * Nothing runs until the transport starts. */
void http_init(struct http_front *h, const struct inferd_config *cfg,
               const struct route_def *routes, size_t n_routes, struct access *access,
               struct server *srv);

/* The front end as a transport (self: a struct http_front after
 * http_init). start: listen (-1 with err set, nothing left running);
 * drain_begin: refuse new connections (accepted ones finish), then mark
 * the front end draining (replies close their connections); inflight and
 * wait_idle: exchanges begun and not completed; stop: stop the daemon
 * (every connection must have been resumed) and free. */
extern const struct transport_ops http_transport;

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

/* The front end's own (http.c, http_reply.c): gzip a JSON reply of at least
 * HTTP_GZIP_MIN_BYTES for a client that accepts it; left as it is when
 * compressing fails or does not shrink it. */
void http_reply_compress(struct http_exchange *ex);

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

/* Attach call to ex with the handler's ops: the call's hooks become the
 * front end's (queued: suspend the connection; gone: the client closed;
 * done: ops->encode or the status as the reply, then resume), its request
 * id and deadline ex's. The handler then submits it (infer_call_submit) and
 * returns ROUTE_SUSPENDED, or sets a reply. ops->ended frees it. */
void http_attach_call(struct http_exchange *ex, struct infer_request *call,
                      const struct http_call_ops *ops);

/* Set the reply for a status other than INFER_OK and its message: the one
 * place an infer_status becomes an HTTP code (503 with Retry-After:
 * retry_after_s; a 500's message loses server paths). */
enum route_outcome http_reply_status(struct http_exchange *ex, enum infer_status status,
                                     int retry_after_s, const char *message);

#endif
