/* http.c - libmicrohttpd front end (see http.h): the daemon, exchanges,
 * bodies, access and routing, attached calls, sending the reply (the
 * replies themselves: http_reply.c). Polling threads only copy bytes,
 * route and hand off: models run on worker threads, which resume the
 * suspended connection when its reply is ready.
 *
 * Lock order: a model queue's lock, then libmicrohttpd's internal lock
 * (MHD_suspend_connection runs in on_queued, under the queue's lock). Workers call
 * MHD_resume_connection holding no lock of ours. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

const char *http_request_header(struct http_exchange *ex, const char *name)
{
    return MHD_lookup_connection_value(ex->conn, MHD_HEADER_KIND, name);
}

/* Runs under the model queue's lock as the request joins the queue. */
static void on_queued(struct infer_request *req)
{
    struct http_exchange *ex = req->owner;
    ex->phase = EX_QUEUED;
    MHD_suspend_connection(ex->conn);
}

/* Runs on a worker thread once the call has a result. */
static void on_infer_done(struct infer_request *req)
{
    struct http_exchange *ex = req->owner;
    if (req->status == INFER_OK)
        ex->call_ops->encode(ex);
    else
        http_reply_status(ex, req->status, 1, req->error);
    http_reply_compress(ex); /* here, off the polling threads */
    ex->phase = EX_ANSWERED;
    MHD_resume_connection(ex->conn);
}

void http_suspend(struct http_exchange *ex)
{
    ex->phase = EX_QUEUED;
    MHD_suspend_connection(ex->conn);
}

void http_resume(struct http_exchange *ex)
{
    ex->phase = EX_ANSWERED;
    MHD_resume_connection(ex->conn);
}

bool http_peer_loopback(struct http_exchange *ex)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL)
        return false;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Whether the client of a queued request has closed its connection: recv
 * peeks without taking anything; 0 is end of stream, and a reset reads as
 * an error. Bytes waiting (a pipelined request) or nothing yet (EAGAIN)
 * mean still there. */
static bool client_gone(const struct infer_request *req)
{
    const struct http_exchange *ex = req->owner;
    if (ex->client_fd < 0)
        return false;
    char byte;
    ssize_t n = recv(ex->client_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static const struct infer_hooks http_hooks = {on_queued, client_gone, on_infer_done};

void http_attach_call(struct http_exchange *ex, struct infer_request *call,
                      const struct http_call_ops *ops)
{
    const struct inferd_config *cfg = ex->front->cfg;
    ex->call = call;
    ex->call_ops = ops;
    call->owner = ex;
    call->hooks = &http_hooks;
    call->request_id = ex->request_id;
    call->deadline_ns = cfg->request_timeout_ms > 0
                            ? ex->start_ns + (uint64_t)cfg->request_timeout_ms * 1000000u
                            : 0;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    ex->client_fd = info ? info->connect_fd : -1;
}

const char *http_query(const struct http_exchange *ex, const char *key)
{
    return MHD_lookup_connection_value(ex->conn, MHD_GET_ARGUMENT_KIND, key);
}

static bool valid_request_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("-_.:", *p)))
            return false;
    return true;
}

static struct http_exchange *begin_exchange(struct http_front *h, struct MHD_Connection *conn,
                                            const char *url, const char *method)
{
    struct http_exchange *ex = calloc(1, sizeof *ex);
    if (ex == NULL)
        return NULL;
    ex->front = h;
    ex->srv = h->srv;
    ex->conn = conn;
    ex->method = method;
    ex->start_ns = clock_now_ns();
    ex->client_fd = -1;
    snprintf(ex->path, sizeof ex->path, "%s", url);
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
    if (id && valid_request_id(id)) {
        snprintf(ex->request_id, sizeof ex->request_id, "%s", id);
    } else {
        uint64_t seq = atomic_fetch_add(&h->request_seq, 1);
        snprintf(ex->request_id, sizeof ex->request_id, "%08x-%012llx",
                 (unsigned)getpid() ^ (unsigned)(h->start_ns >> 20), (unsigned long long)seq);
    }
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    snprintf(ex->content_type, sizeof ex->content_type, "%s", ct ? ct : "");
    ex->accept_gzip = encoding_accepts_gzip(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING));
    atomic_fetch_add(&h->inflight, 1);
    return ex;
}

/* The media type without parameters, e.g. "application/json". */
static bool media_type_is(const char *content_type, const char *type)
{
    size_t n = strlen(type);
    if (strncasecmp(content_type, type, n) != 0)
        return false;
    char next = content_type[n];
    return next == '\0' || next == ';' || next == ' ';
}

/* The media type of content_type among the comma-separated accepted ones
 * (copied into out), the first one when content_type is empty. Returns
 * false when it is none of them. */
static bool match_body_type(const char *accepts, const char *content_type, char *out, size_t len)
{
    for (const char *p = accepts; *p;) {
        size_t n = strcspn(p, ",");
        if (n < len) {
            memcpy(out, p, n);
            out[n] = '\0';
            if (content_type[0] == '\0' || media_type_is(content_type, out))
                return true;
        }
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    out[0] = '\0';
    return false;
}

/* A body's Content-Encoding: gzip and deflate get an inflater (the limit
 * applies to the inflated size), identity nothing; anything else is a 415.
 * Returns true when the reply is set. */
static bool precheck_encoding(struct http_exchange *ex)
{
    const char *value = http_request_header(ex, MHD_HTTP_HEADER_CONTENT_ENCODING);
    enum encoding coding;
    if (value == NULL)
        return false;
    if (encoding_parse(value, &coding) != 0) {
        http_reply_error(ex, 415,
                         "unsupported Content-Encoding '%.64s': send gzip, deflate or none", value);
        return true;
    }
    if (coding == ENCODING_IDENTITY)
        return false;
    ex->inflater = inflater_new(coding, (size_t)ex->front->cfg->max_body_bytes);
    if (ex->inflater == NULL) {
        http_reply_error(ex, 500, "out of memory starting to inflate the body");
        return true;
    }
    return false;
}

/* Checks that can answer before the body is read: route (as matched
 * into ex->route), method, content type, declared length, content coding.
 * Returns true when the reply is set. */
static bool precheck(struct http_exchange *ex, enum route_status routed)
{
    struct http_front *h = ex->front;
    const struct route_def *def;
    switch (routed) {
    case ROUTE_OK: break;
    case ROUTE_NOT_FOUND: http_reply_error(ex, 404, "no endpoint at %s", ex->path); return true;
    case ROUTE_BAD_METHOD:
        def = ex->route.def;
        http_reply_error(ex, 405, "%s takes %s, not %s", ex->path, def->methods, ex->method);
        http_reply_header(ex, MHD_HTTP_HEADER_ALLOW, def->methods);
        return true;
    case ROUTE_BAD_NAME:
        http_reply_error(ex, 400,
                         "invalid model or region name in %s: use letters, digits, '.', '_' and "
                         "'-'",
                         ex->path);
        return true;
    }
    def = ex->route.def;
    if (!route_takes_body(&ex->route))
        return false;
    if (!match_body_type(def->accepts, ex->content_type, ex->body_type, sizeof ex->body_type)) {
        http_reply_error(ex, 415, "unsupported Content-Type '%s': send one of %s", ex->content_type,
                         def->accepts);
        return true;
    }
    const char *cl = http_request_header(ex, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long declared = cl ? strtoll(cl, NULL, 10) : 0;
    ex->content_length = declared > 0 ? (size_t)declared : 0;
    if (declared > h->cfg->max_body_bytes) {
        http_reply_error(ex, 413, "request body of %s bytes is over the limit of %ld bytes", cl,
                         h->cfg->max_body_bytes);
        return true;
    }
    return precheck_encoding(ex);
}

/* The binary tensor extension's header: the length of the JSON part that
 * precedes the tensors' bytes in the body. */
#define BINARY_HEADER_LENGTH "Inference-Header-Content-Length"
#define BODY_ALIGN 16 /* what malloc gives; a multiple of every element size */

/* Where the body starts in its allocation: so that the bytes after a binary
 * request's JSON part land aligned, and its tensors can be used where they
 * lie instead of copied (v2_bind_raw copies a misaligned one). */
static size_t body_lead(struct http_exchange *ex)
{
    const char *v = http_request_header(ex, BINARY_HEADER_LENGTH);
    size_t n = 0;
    if (v == NULL || *v == '\0')
        return 0;
    for (; *v >= '0' && *v <= '9'; v++) {
        n = n * 10 + (size_t)(*v - '0');
        if (n > ex->content_length)
            return 0; /* the decoder refuses it: no use aligning */
    }
    return (BODY_ALIGN - n % BODY_ALIGN) % BODY_ALIGN;
}

/* Append a chunk of the body. Returns 0, or -1 with the reply set (413,
 * or 500 when out of memory). */
static int append_body(struct http_exchange *ex, const char *data, size_t n)
{
    long limit = ex->front->cfg->max_body_bytes;
    ex->wire_len += n;
    if (ex->inflater != NULL) {
        char err[256];
        if (ex->wire_len > (size_t)limit) {
            http_reply_error(ex, 413, "request body is over the limit of %ld bytes", limit);
            return -1;
        }
        switch (inflater_feed(ex->inflater, data, n, &ex->body, &ex->body_len, &ex->body_cap, err,
                              sizeof err)) {
        case INFLATE_OK: return 0;
        case INFLATE_TOO_BIG:
            http_reply_error(ex, 413, "%s, the limit (--max-body-bytes %ld)", err, limit);
            return -1;
        case INFLATE_CORRUPT: http_reply_error(ex, 400, "%s", err); return -1;
        default: http_reply_error(ex, 500, "%s", err); return -1;
        }
    }
    if (ex->body_len + n > (size_t)limit) {
        http_reply_error(ex, 413, "request body is over the limit of %ld bytes", limit);
        return -1;
    }
    if (ex->body_len + n + 1 > ex->body_cap) {
        /* First chunk: room for the whole declared body at once. */
        size_t cap = ex->body_cap ? ex->body_cap : ex->content_length + 1;
        if (cap < 4096)
            cap = 4096;
        while (cap < ex->body_len + n + 1)
            cap *= 2;
        if (ex->body == NULL)
            ex->body_lead = body_lead(ex);
        char *grown = realloc(ex->body ? ex->body - ex->body_lead : NULL, ex->body_lead + cap);
        if (grown == NULL) {
            http_reply_error(ex, 500, "out of memory reading the body");
            return -1;
        }
        ex->body = grown + ex->body_lead;
        ex->body_cap = cap;
    }
    memcpy(ex->body + ex->body_len, data, n);
    ex->body_len += n;
    ex->body[ex->body_len] = '\0';
    return 0;
}

/* API keys, the admin token and CORS, for the matched route's access
 * level, before the route's own errors (access.h). Returns true when the
 * reply is set: 204 for a CORS preflight, 401 or 403. */
static bool check_access(struct http_exchange *ex)
{
    enum access_level level = route_access(&ex->route);
    struct access_request req = {
        .method = ex->method,
        .authorization = http_request_header(ex, "Authorization"),
        .api_key = http_request_header(ex, "X-API-Key"),
        .origin = http_request_header(ex, "Origin"),
        .preflight_method = http_request_header(ex, "Access-Control-Request-Method"),
        .loopback = level == ACCESS_ADMIN && http_peer_loopback(ex),
    };
    ex->access = access_check(ex->front->access, level, &req);
    enum access_verdict v = ex->access.verdict;
    switch (v) {
    case ACCESS_GO_ON: return false;
    case ACCESS_PREFLIGHT: http_reply_body(ex, 204, calloc(1, 1), 0, NULL); return true;
    case ACCESS_NO_KEY:
    case ACCESS_BAD_KEY: http_reply_error(ex, 401, "%s", access_message(v)); return true;
    case ACCESS_BAD_ORIGIN:
    case ACCESS_NO_TOKEN:
    case ACCESS_NOT_LOCAL: http_reply_error(ex, 403, "%s", access_message(v)); return true;
    }
    http_reply_error(ex, 500, "%s", access_message(v));
    return true;
}

static void add_access_header(void *ctx, const char *name, const char *value)
{
    MHD_add_response_header(ctx, name, value);
}

/* Tell the call's handler of the answer, once. */
static void count_answer(struct http_exchange *ex)
{
    if (ex->call_ops == NULL || ex->answer_counted)
        return;
    ex->answer_counted = true;
    ex->call_ops->answered(ex);
}

static enum MHD_Result queue_reply(struct http_exchange *ex)
{
    struct http_reply *r = &ex->reply;
    if (r->body == NULL)
        http_reply_error(ex, 500, "internal error: no reply was produced");
    http_reply_compress(ex);
    /* Before the answer leaves: a client that has it sees it counted. */
    count_answer(ex);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        return MHD_NO;
    r->body = NULL; /* libmicrohttpd frees it */
    enum MHD_Result ok = MHD_YES;
    if (r->content_type)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    ok &= MHD_add_response_header(resp, "X-Request-ID", ex->request_id);
    for (int i = 0; i < r->n_headers; i++)
        ok &= MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    if (r->gzipped)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    if (r->content_type && strncmp(r->content_type, "application/json", 16) == 0)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    if (atomic_load(&ex->front->draining) || ex->lingering)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    access_reply_headers(ex->front->access, &ex->access, add_access_header, resp);
    if (ok == MHD_YES)
        ok = MHD_queue_response(ex->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    ex->reply_queued = true;
    return ok;
}

/* An answer before the body: libmicrohttpd sends it, reads no more and
 * closes, which resets a client still sending (the kernel resets a socket
 * closed with unread data) before it reads the answer. When a body is to
 * follow, a duplicate of the socket goes to the lingerer, which keeps it
 * open and drops what still arrives, within bounds (linger.h). */
static void linger_if_body_follows(struct http_exchange *ex)
{
    struct MHD_Connection *c = ex->conn;
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if ((cl == NULL || strtoll(cl, NULL, 10) <= 0) && te == NULL)
        return;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL)
        return;
    int fd = fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return;
    /* The connection must end with this answer (libmicrohttpd 0.9.75 closes
     * it anyway); a kept-alive one would share its bytes with the lingerer. */
    ex->lingering = true;
    linger_add(&ex->front->linger, fd);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_front *h = cls;
    struct http_exchange *ex = *req_cls;
    (void)version;
    if (ex == NULL) {
        ex = begin_exchange(h, conn, url, method);
        if (ex == NULL)
            return MHD_NO;
        *req_cls = ex;
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        ex->conn_entry = info ? info->socket_context : NULL;
        enum route_status routed =
            route_match(h->routes, h->n_routes, ex->method, ex->path, &ex->route);
        if (check_access(ex) || precheck(ex, routed)) {
            conn_guard_phase(&h->guard, ex->conn_entry, CONN_BUSY);
            linger_if_body_follows(ex);
            return queue_reply(ex); /* answer before reading any body */
        }
        conn_guard_phase(&h->guard, ex->conn_entry, CONN_BODY); /* the body's deadline */
        return MHD_YES;
    }
    if (ex->reply_queued) { /* an early answer: drop what still arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        /* Past the limit (a chunked body has no Content-Length to refuse
         * early): the rest is read and dropped, and the error answered once
         * the body has ended, since libmicrohttpd takes no reply mid-body. */
        if (route_takes_body(&ex->route) && !ex->discarding && append_body(ex, upload_data, n) != 0)
            ex->discarding = true;
        return MHD_YES;
    }
    if (ex->phase == EX_READING)
        conn_guard_phase(&h->guard, ex->conn_entry, CONN_BUSY); /* the body is complete */
    if (ex->phase == EX_READING && !ex->discarding && ex->inflater != NULL) {
        char err[256];
        if (inflater_finish(ex->inflater, err, sizeof err) != INFLATE_OK) {
            http_reply_error(ex, 400, "%s", err);
            ex->discarding = true;
        }
        inflater_free(ex->inflater); /* its 32 KiB window is no longer needed */
        ex->inflater = NULL;
    }
    if (ex->phase == EX_READING && !ex->discarding && ex->route.def->handler(ex) == ROUTE_SUSPENDED)
        return MHD_YES; /* a worker resumes it */
    return queue_reply(ex);
}

static void access_log(const struct http_exchange *ex, uint64_t total_ns)
{
    if (!log_enabled(LOG_INFO))
        return;
    static const struct infer_request none;
    const struct infer_request *req = ex->call ? ex->call : &none;
    struct log_field fields[] = {
        {"protocol", LOG_STR, "http", 0},
        {"request_id", LOG_STR, ex->request_id, 0},
        {"method", LOG_STR, ex->method, 0},
        {"path", LOG_STR, ex->path, 0},
        {"status", LOG_INT, NULL, ex->reply.status},
        {"bytes_in", LOG_INT, NULL, (int64_t)ex->body_len},
        {"bytes_out", LOG_INT, NULL, (int64_t)ex->reply.len},
        {"model", LOG_STR, req->model_name ? req->model_name : "", 0},
        {"batch", LOG_INT, NULL, req->batch_samples},
        {"queue_ms", LOG_MS, NULL, (int64_t)req->queue_ns},
        {"compute_ms", LOG_MS, NULL, (int64_t)req->compute_ns},
        {"total_ms", LOG_MS, NULL, (int64_t)total_ns},
    };
    log_fields(LOG_INFO, "request", fields, (int)(sizeof fields / sizeof fields[0]));
}

static void free_exchange(struct http_exchange *ex)
{
    inflater_free(ex->inflater);
    free(ex->reply.body);
    if (ex->body != NULL)
        free(ex->body - ex->body_lead);
    free(ex);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_front *h = cls;
    struct http_exchange *ex = *req_cls;
    (void)conn;
    if (ex == NULL)
        return;
    *req_cls = NULL;
    if (ex->reply.status == 0) /* ended before any answer: say why, as nginx does */
        ex->reply.status =
            toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : HTTP_STATUS_CLIENT_CLOSED;
    /* Kept alive (or closing): the idle deadline, and first to give way. */
    conn_guard_phase(&h->guard, ex->conn_entry, CONN_IDLE);
    uint64_t total = clock_now_ns() - ex->start_ns;
    count_answer(ex); /* an exchange that ended without an answer */
    access_log(ex, total);
    if (ex->call_ops)
        ex->call_ops->ended(ex, total);
    free_exchange(ex);
    if (atomic_fetch_sub(&h->inflight, 1) == 1) {
        pthread_mutex_lock(&h->idle_lock);
        pthread_cond_broadcast(&h->idle_cond);
        pthread_mutex_unlock(&h->idle_lock);
    }
}

/* Every connection enters the guard as libmicrohttpd accepts it (refused
 * ones are answered 503 and shut down there, and get no entry) and leaves
 * it as libmicrohttpd closes it, before its descriptor is closed. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_front *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        /* Copy each answer before the next call: libmicrohttpd 1.0 answers
         * both from one union in the connection, so the second call
         * overwrites the first (the descriptor read as part of a pointer). */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = info ? info->connect_fd : -1;
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *addr = info ? info->client_addr : NULL;
        *socket_context = fd >= 0 ? conn_guard_open(&h->guard, fd, addr) : NULL;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_guard_close(&h->guard, *socket_context);
        *socket_context = NULL;
    }
}

/* Enough descriptors for the connection limit: raise the soft limit towards
 * the hard one when it is lower (a warning when even that is short). */
static void raise_fd_limit(rlim_t wanted)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= wanted)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < wanted ? rl.rlim_max : wanted;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < wanted)
        log_msg(LOG_WARN,
                "only %llu file descriptors for --max-connections: connections past that wait",
                (unsigned long long)rl.rlim_cur);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode %HH escapes in place. An escaped NUL or '/' becomes 0x01, a byte no
 * route or model name accepts, so "/v2/models/a%2Fb" and "a%00b" are refused
 * as bad names instead of being cut short or read as a deeper path. */
static size_t unescape_path(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *out = s;
    for (const char *in = s; *in; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0) {
            char c = (char)(hi * 16 + lo);
            *out++ = (c == '\0' || c == '/') ? '\x01' : c;
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/* libmicrohttpd's per-connection pool: headers plus the read buffer. It is
 * zeroed whole after every request (0.9.75), so it costs every request in
 * proportion to its size: at 256 KiB that was a quarter of the server's
 * own instructions per /predict request (bench/RESULTS.md, callgrind).
 * 64 KiB holds any header set we accept and reads large bodies in 64 KiB
 * chunks. */
#define HTTP_CONNECTION_POOL_BYTES (64 * 1024)

/* A kept-alive connection idles this long at most: above nginx's upstream
 * keepalive_timeout (60 s at most in our templates), so nginx closes first. */
#define HTTP_IDLE_TIMEOUT_S 120u

void http_init(struct http_front *h, const struct inferd_config *cfg,
               const struct route_def *routes, size_t n_routes, struct access *access,
               struct server *srv)
{
    memset(h, 0, sizeof *h);
    h->cfg = cfg;
    h->routes = routes;
    h->n_routes = n_routes;
    h->srv = srv;
    h->access = access;
    h->quiesced_fd = -1;
}

static int http_start(void *self, char *err, size_t err_len)
{
    struct http_front *h = self;
    const struct inferd_config *cfg = h->cfg;
    struct sockaddr_in addr4;
    struct sockaddr_in6 addr6;
    struct sockaddr *addr;
    h->start_ns = clock_now_ns();
    /* poll(), not epoll: with MHD_USE_EPOLL, libmicrohttpd 0.9.75 did not
     * notice a client that closed right after sending headers or part of a
     * body (the close arriving with the data): the exchange stayed open
     * until shutdown and held the drain to its timeout. poll() sees it, and
     * measured as fast (bench/RESULTS.md). */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
    memset(&addr4, 0, sizeof addr4);
    memset(&addr6, 0, sizeof addr6);
    if (inet_pton(AF_INET, cfg->host, &addr4.sin_addr) == 1) {
        addr4.sin_family = AF_INET;
        addr4.sin_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&addr4;
    } else if (inet_pton(AF_INET6, cfg->host, &addr6.sin6_addr) == 1) {
        addr6.sin6_family = AF_INET6;
        addr6.sin6_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&addr6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_len, "--host: '%s' is not an IPv4 or IPv6 address", cfg->host);
        return -1;
    }
    if (pthread_mutex_init(&h->idle_lock, NULL) != 0) {
        snprintf(err, err_len, "cannot create the drain lock");
        return -1;
    }
    if (clock_cond_init(&h->idle_cond) != 0) {
        pthread_mutex_destroy(&h->idle_lock);
        snprintf(err, err_len, "cannot create the drain lock");
        return -1;
    }
    if (linger_start(&h->linger, err, err_len) != 0) {
        pthread_cond_destroy(&h->idle_cond);
        pthread_mutex_destroy(&h->idle_lock);
        return -1;
    }
    const struct conn_limits limits = {
        .max_total = cfg->max_connections,
        .max_per_addr = cfg->max_connections_per_address,
        .header_ns = (uint64_t)cfg->header_timeout_s * 1000000000u,
        .body_ns = (uint64_t)cfg->body_timeout_s * 1000000000u,
        .idle_ns = (uint64_t)HTTP_IDLE_TIMEOUT_S * 1000000000u,
    };
    if (conn_guard_start(&h->guard, &limits, err, err_len) != 0) {
        linger_stop(&h->linger);
        pthread_cond_destroy(&h->idle_cond);
        pthread_mutex_destroy(&h->idle_lock);
        return -1;
    }
    /* libmicrohttpd's own limit, split between its threads, is only a
     * backstop: the guard decides, and answers 503, below it. Room for the
     * refused and the shut connections it has not yet closed. */
    unsigned mhd_limit = 2u * (unsigned)cfg->max_connections + 64u;
    raise_fd_limit((rlim_t)mhd_limit + 256);
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_POOL_BYTES,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_path, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)1024, MHD_OPTION_END);
    if (h->daemon == NULL) {
        pthread_cond_destroy(&h->idle_cond);
        pthread_mutex_destroy(&h->idle_lock);
        snprintf(err, err_len, "cannot listen on %s:%d (port in use?)", cfg->host, cfg->port);
        conn_guard_stop(&h->guard);
        linger_stop(&h->linger);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->bound_port = info ? info->port : cfg->port;
    return 0;
}

static void http_drain_begin(void *self)
{
    struct http_front *h = self;
    if (h->daemon != NULL && h->quiesced_fd < 0) {
        MHD_socket fd = MHD_quiesce_daemon(h->daemon);
        if (fd != MHD_INVALID_SOCKET) {
            /* libmicrohttpd's threads may still hold the descriptor until
             * MHD_stop_daemon, so it is closed only then; shutting the
             * listening socket down makes new connections refused now.
             * (Connections already waiting in its backlog are reset: they
             * were never accepted.) */
            if (shutdown(fd, SHUT_RDWR) != 0)
                log_msg(LOG_WARN,
                        "cannot shut the listening socket down: new connections will wait");
            h->quiesced_fd = fd;
        }
    }
    /* Only now report draining: a client that has seen readiness turn 503
     * can no longer connect. */
    atomic_store(&h->draining, true);
}

static int http_inflight(void *self)
{
    struct http_front *h = self;
    return atomic_load(&h->inflight);
}

static bool http_wait_idle(void *self, uint64_t deadline_ns)
{
    struct http_front *h = self;
    pthread_mutex_lock(&h->idle_lock);
    uint64_t now;
    while (atomic_load(&h->inflight) > 0 && (now = clock_now_ns()) < deadline_ns) {
        uint64_t wake_at = now + 50000000u; /* re-check every 50 ms */
        clock_cond_wait_until(&h->idle_cond, &h->idle_lock,
                              wake_at < deadline_ns ? wake_at : deadline_ns);
    }
    bool idle = atomic_load(&h->inflight) == 0;
    pthread_mutex_unlock(&h->idle_lock);
    return idle;
}

static void http_stop(void *self)
{
    struct http_front *h = self;
    if (h->daemon == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    conn_guard_stop(&h->guard);
    linger_stop(&h->linger);
    if (h->quiesced_fd >= 0)
        close(h->quiesced_fd);
    h->quiesced_fd = -1;
    pthread_cond_destroy(&h->idle_cond);
    pthread_mutex_destroy(&h->idle_lock);
}

static void http_render_metrics(void *self, struct strbuf *sb)
{
    struct http_front *h = self;
    int open;
    uint64_t refused, reaped;
    conn_guard_counts(&h->guard, &open, &refused, &reaped);
    strbuf_printf(sb,
                  "# HELP inferd_http_connections_open HTTP connections open (under "
                  "--max-connections).\n"
                  "# TYPE inferd_http_connections_open gauge\n"
                  "inferd_http_connections_open %d\n"
                  "# HELP inferd_http_connections_refused_total HTTP connections refused with 503 "
                  "(--max-connections or --max-connections-per-address reached).\n"
                  "# TYPE inferd_http_connections_refused_total counter\n"
                  "inferd_http_connections_refused_total %llu\n"
                  "# HELP inferd_http_connections_cut_total HTTP connections closed by the server: "
                  "header or body past its deadline (408), or idle and closed to make room.\n"
                  "# TYPE inferd_http_connections_cut_total counter\n"
                  "inferd_http_connections_cut_total %llu\n",
                  open, (unsigned long long)refused, (unsigned long long)reaped);
}

const struct transport_ops http_transport = {
    .name = "http",
    .start = http_start,
    .drain_begin = http_drain_begin,
    .inflight = http_inflight,
    .wait_idle = http_wait_idle,
    .stop = http_stop,
    .render_metrics = http_render_metrics,
};
