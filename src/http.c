/* http.c - libmicrohttpd front end (see http.h). Polling threads only copy
 * bytes, route and hand off: models run on worker threads, which resume the
 * suspended connection when its reply is ready.
 *
 * Lock order: a model queue's lock, then libmicrohttpd's internal lock
 * (MHD_suspend_connection runs inside the queue's submit hook). Workers call
 * MHD_resume_connection holding no lock of ours. */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "queue_watch.h"

int http_reply_body(struct http_exchange *ex, int status, char *body, size_t len,
                    const char *content_type)
{
    free(ex->reply.body);
    ex->reply.body = NULL;
    if (body == NULL) {
        static const char oom[] = "{\"error\":\"out of memory building the reply\"}";
        body = strdup(oom);
        len = body ? strlen(body) : 0;
        status = 500;
        content_type = "application/json";
    }
    ex->reply.status = status;
    ex->reply.body = body;
    ex->reply.len = len;
    ex->reply.content_type = content_type;
    return 0;
}

int http_reply_error(struct http_exchange *ex, int status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    struct strbuf sb = {0};
    strbuf_puts(&sb, "{\"error\":");
    strbuf_json_string(&sb, message);
    strbuf_puts(&sb, "}");
    size_t len = 0;
    char *body = strbuf_detach(&sb, &len);
    return http_reply_body(ex, status, body, len, "application/json");
}

static void suspend_hook(void *arg)
{
    struct http_exchange *ex = arg;
    ex->phase = EX_QUEUED;
    MHD_suspend_connection(ex->conn);
}

/* Runs on a worker thread once ex->infer has a result. */
static void on_infer_done(struct infer_request *req)
{
    struct http_exchange *ex = req->owner;
    if (req->status == 200 && ex->encode) {
        ex->encode(ex);
    } else {
        http_reply_error(ex, req->status ? req->status : 500, "%s", req->error);
        if (req->status == 503)
            ex->reply.retry_after_s = 1;
    }
    ex->phase = EX_ANSWERED;
    MHD_resume_connection(ex->conn);
}

int http_submit(struct http_exchange *ex, struct model *m)
{
    struct infer_request *req = &ex->infer;
    const struct inferd_config *cfg = &ex->srv->cfg;
    ex->model = m;
    ex->infer_used = true;
    req->owner = ex;
    req->done = on_infer_done;
    req->arrival_ns = clock_now_ns();
    req->deadline_ns = cfg->request_timeout_ms > 0
                           ? ex->start_ns + (uint64_t)cfg->request_timeout_ms * 1000000u
                           : 0;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(ex->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    req->client_fd = info ? info->connect_fd : -1;
    int rc = batch_queue_submit(&m->queue, req, suspend_hook, ex);
    if (rc == SUBMIT_OK)
        return 1;
    if (rc == SUBMIT_FULL)
        http_reply_error(ex, 503, "model %s has %d requests queued, its limit; retry later",
                         m->cfg.name, m->queue.capacity);
    else
        http_reply_error(ex, 503, "the server is shutting down");
    ex->reply.retry_after_s = 1;
    return 0;
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

static struct http_exchange *begin_exchange(struct server *srv, struct MHD_Connection *conn,
                                            const char *url, const char *method)
{
    struct http_exchange *ex = calloc(1, sizeof *ex);
    if (ex == NULL)
        return NULL;
    ex->srv = srv;
    ex->conn = conn;
    ex->method = method;
    ex->start_ns = clock_now_ns();
    ex->reply.inference_header_len = -1;
    snprintf(ex->path, sizeof ex->path, "%s", url);
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
    if (id && valid_request_id(id)) {
        snprintf(ex->request_id, sizeof ex->request_id, "%s", id);
    } else {
        uint64_t seq = atomic_fetch_add(&srv->request_seq, 1);
        snprintf(ex->request_id, sizeof ex->request_id, "%08x-%012llx",
                 (unsigned)getpid() ^ (unsigned)(srv->start_ns >> 20), (unsigned long long)seq);
    }
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    snprintf(ex->content_type, sizeof ex->content_type, "%s", ct ? ct : "");
    const char *ihl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    ex->inference_header_len = -1;
    if (ihl) {
        char *end = NULL;
        long v = strtol(ihl, &end, 10);
        ex->inference_header_len = (end != ihl && *end == '\0' && v >= 0) ? v : -2;
    }
    atomic_fetch_add(&srv->inflight, 1);
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

/* Checks that can answer before the body is read. Returns 0 when the
 * request may go on, or an HTTP status with the reply set. */
static int precheck(struct http_exchange *ex)
{
    enum route_status rs = route_match(ex->method, ex->path, &ex->route);
    switch (rs) {
    case ROUTE_OK: break;
    case ROUTE_NOT_FOUND: return http_reply_error(ex, 404, "no endpoint at %s", ex->path), 404;
    case ROUTE_BAD_METHOD:
        http_reply_error(ex, 405, "%s takes %s, not %s", ex->path, ex->route.allow, ex->method);
        ex->reply.allow = ex->route.allow;
        return 405;
    case ROUTE_BAD_NAME:
        return http_reply_error(ex, 400,
                                "invalid model name in %s: use letters, "
                                "digits, '.', '_' and '-'",
                                ex->path),
               400;
    }
    if (!ex->route.has_body)
        return 0;
    const char *ct = ex->content_type;
    bool json = ct[0] == '\0' || media_type_is(ct, "application/json");
    bool binary =
        ex->route.endpoint == EP_MODEL_INFER && media_type_is(ct, "application/octet-stream");
    if (!json && !binary)
        return http_reply_error(ex, 415,
                                "unsupported Content-Type '%s': send "
                                "application/json",
                                ct),
               415;
    const char *cl =
        MHD_lookup_connection_value(ex->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long declared = cl ? strtoll(cl, NULL, 10) : 0;
    ex->content_length = declared > 0 ? (size_t)declared : 0;
    if (declared > ex->srv->cfg.max_body_bytes)
        return http_reply_error(ex, 413,
                                "request body of %s bytes is over the "
                                "limit of %ld bytes",
                                cl, ex->srv->cfg.max_body_bytes),
               413;
    return 0;
}

static int append_body(struct http_exchange *ex, const char *data, size_t n)
{
    if (ex->body_len + n > (size_t)ex->srv->cfg.max_body_bytes)
        return http_reply_error(ex, 413, "request body is over the limit of %ld bytes",
                                ex->srv->cfg.max_body_bytes),
               413;
    if (ex->body_len + n + 1 > ex->body_cap) {
        /* First chunk: room for the whole declared body at once. */
        size_t cap = ex->body_cap ? ex->body_cap : ex->content_length + 1;
        if (cap < 4096)
            cap = 4096;
        while (cap < ex->body_len + n + 1)
            cap *= 2;
        char *grown = realloc(ex->body, cap);
        if (grown == NULL)
            return http_reply_error(ex, 500, "out of memory reading the body"), 500;
        ex->body = grown;
        ex->body_cap = cap;
    }
    memcpy(ex->body + ex->body_len, data, n);
    ex->body_len += n;
    ex->body[ex->body_len] = '\0';
    return 0;
}

/* API keys and CORS, before routing (access.h). Returns 0 when the
 * request may go on, or the status of the reply it set: 204 for a CORS
 * preflight, 401 or 403. */
static int check_access(struct http_exchange *ex)
{
    struct MHD_Connection *c = ex->conn;
    struct access_request req = {
        .method = ex->method,
        .path = ex->path,
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
        .api_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key"),
        .origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"),
        .preflight_method =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Method"),
    };
    ex->access = access_check(&ex->srv->access, &req);
    const char *message;
    int status = access_status(ex->access.verdict, &message);
    if (status == 204)
        http_reply_body(ex, 204, calloc(1, 1), 0, NULL);
    else if (status != 0)
        http_reply_error(ex, status, "%s", message);
    return status;
}

static void add_access_header(void *ctx, const char *name, const char *value)
{
    MHD_add_response_header(ctx, name, value);
}

/* Run the endpoint. Returns 1 when the exchange was suspended. */
static int dispatch(struct http_exchange *ex)
{
    switch (ex->route.endpoint) {
    case EP_PREDICT: return api_predict(ex);
    case EP_HEALTH_LIVE: return api_health_live(ex);
    case EP_HEALTH_READY: return api_health_ready(ex);
    case EP_METRICS: return api_metrics(ex);
    case EP_SERVER_META: return api_server_meta(ex);
    case EP_REPOSITORY_INDEX: return api_repository_index(ex);
    case EP_MODEL_META: return api_model_meta(ex);
    case EP_MODEL_READY: return api_model_ready(ex);
    case EP_MODEL_INFER: return api_model_infer(ex);
    case EP_NONE: break;
    }
    return http_reply_error(ex, 404, "no endpoint at %s", ex->path);
}

static enum MHD_Result queue_reply(struct http_exchange *ex)
{
    struct http_reply *r = &ex->reply;
    if (r->body == NULL)
        http_reply_error(ex, 500, "internal error: no reply was produced");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        return MHD_NO;
    r->body = NULL; /* libmicrohttpd frees it */
    enum MHD_Result ok = MHD_YES;
    char number[32];
    if (r->content_type)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    ok &= MHD_add_response_header(resp, "X-Request-ID", ex->request_id);
    if (r->allow)
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->retry_after_s > 0) {
        snprintf(number, sizeof number, "%d", r->retry_after_s);
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, number);
    }
    if (r->inference_header_len >= 0) {
        snprintf(number, sizeof number, "%ld", r->inference_header_len);
        ok &= MHD_add_response_header(resp, "Inference-Header-Content-Length", number);
    }
    if (atomic_load(&ex->srv->draining))
        ok &= MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    access_reply_headers(&ex->srv->access, &ex->access, add_access_header, resp);
    if (ok == MHD_YES)
        ok = MHD_queue_response(ex->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    ex->reply_queued = true;
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct server *srv = cls;
    struct http_exchange *ex = *req_cls;
    (void)version;
    if (ex == NULL) {
        ex = begin_exchange(srv, conn, url, method);
        if (ex == NULL)
            return MHD_NO;
        *req_cls = ex;
        if (check_access(ex) != 0 || precheck(ex) != 0)
            return queue_reply(ex); /* answer before reading any body */
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
        if (ex->route.has_body && !ex->discarding && append_body(ex, upload_data, n) != 0)
            ex->discarding = true;
        return MHD_YES;
    }
    if (ex->phase == EX_READING && !ex->discarding && dispatch(ex) == 1)
        return MHD_YES; /* suspended; a worker resumes it */
    return queue_reply(ex);
}

static void access_log(const struct http_exchange *ex, uint64_t total_ns)
{
    if (!log_enabled(LOG_INFO))
        return;
    const struct infer_request *req = &ex->infer;
    struct log_field fields[] = {
        {"request_id", LOG_STR, ex->request_id, 0},
        {"method", LOG_STR, ex->method, 0},
        {"path", LOG_STR, ex->path, 0},
        {"status", LOG_INT, NULL, ex->reply.status},
        {"bytes_in", LOG_INT, NULL, (int64_t)ex->body_len},
        {"bytes_out", LOG_INT, NULL, (int64_t)ex->reply.len},
        {"model", LOG_STR, ex->model ? ex->model->cfg.name : "", 0},
        {"batch", LOG_INT, NULL, req->batch_samples},
        {"queue_ms", LOG_MS, NULL, (int64_t)req->queue_ns},
        {"compute_ms", LOG_MS, NULL, (int64_t)req->compute_ns},
        {"total_ms", LOG_MS, NULL, (int64_t)total_ns},
    };
    log_fields(LOG_INFO, "request", fields, (int)(sizeof fields / sizeof fields[0]));
}

static void free_exchange(struct http_exchange *ex)
{
    for (int i = 0; i < ex->infer.n_inputs; i++)
        tensor_free(&ex->infer.inputs[i]);
    for (int i = 0; i < ex->infer.n_outputs; i++)
        tensor_free(&ex->infer.outputs[i]);
    if (ex->api_free)
        ex->api_free(ex->api_state);
    free(ex->reply.body);
    free(ex->body);
    free(ex);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct http_exchange *ex = *req_cls;
    (void)conn;
    if (ex == NULL)
        return;
    *req_cls = NULL;
    if (ex->reply.status == 0) /* ended before any answer: say why, as nginx does */
        ex->reply.status =
            toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : HTTP_CLIENT_CLOSED_REQUEST;
    uint64_t total = clock_now_ns() - ex->start_ns;
    access_log(ex, total);
    if (ex->model) {
        model_metrics_request(&ex->model->metrics, ex->reply.status);
        histogram_observe(&ex->model->metrics.request_seconds, (double)total / 1e9);
    }
    free_exchange(ex);
    if (atomic_fetch_sub(&srv->inflight, 1) == 1) {
        pthread_mutex_lock(&srv->drain_lock);
        pthread_cond_broadcast(&srv->drain_cond);
        pthread_mutex_unlock(&srv->drain_lock);
    }
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

int http_start(struct server *srv, char *err, size_t err_len)
{
    const struct inferd_config *cfg = &srv->cfg;
    struct sockaddr_in addr4;
    struct sockaddr_in6 addr6;
    struct sockaddr *addr;
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
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_UNESCAPE_CALLBACK,
        unescape_path, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        snprintf(err, err_len, "cannot listen on %s:%d (port in use?)", cfg->host, cfg->port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->bound_port = info ? info->port : cfg->port;
    return 0;
}

void http_quiesce(struct server *srv)
{
    if (srv->daemon == NULL || srv->quiesced_fd >= 0)
        return;
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd == MHD_INVALID_SOCKET)
        return;
    /* libmicrohttpd's threads may still hold the descriptor until
     * MHD_stop_daemon, so it is closed only then; shutting the listening
     * socket down makes new connections refused now. (Connections already
     * waiting in its backlog are reset: they were never accepted.) */
    if (shutdown(fd, SHUT_RDWR) != 0)
        log_msg(LOG_WARN, "cannot shut the listening socket down: new connections will wait");
    srv->quiesced_fd = fd;
}

void http_stop(struct server *srv)
{
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    if (srv->quiesced_fd >= 0)
        close(srv->quiesced_fd);
    srv->quiesced_fd = -1;
}
