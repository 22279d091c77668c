/* grpc_front.c - the gRPC front end on gRPC's C core (see grpc_front.h).
 *
 * Every call is a struct grpc_front_call whose life is counted in refs: one
 * for the call itself, dropped when its final status has been sent, and one
 * for each batch of operations in flight on the completion queue. Threads
 * take events off one completion queue; each event's tag names the call and
 * the function that continues it. Handlers answer from any thread (a model
 * worker): grpc_call_start_batch is thread-safe, and a call has at most one
 * send batch in flight because a handler answers once per message.
 *
 * The drain. gRPC's core ends CANCELLED every call it has not handed to
 * us when the server shuts down, and every stream that reaches it after
 * grpc_server_shutdown_and_notify, even one sent before the client could
 * read the GOAWAY (it cannot serve a stream that arrives in the graceful
 * GOAWAY's window, nor answer it UNAVAILABLE); a proxy that has streamed
 * the call's body can then neither resend it nor tell its client to. So
 * the server is not shut down while a connection is open: a drain keeps
 * taking calls and answers each new one UNAVAILABLE (a status clients
 * retry; the probes, open methods, still answer, "not ready"), lets the
 * calls in flight finish, then closes every connection (nothing is in
 * flight: a call on its way gets the closed connection, which a proxy
 * answers 502 and a client reads UNAVAILABLE) and only then shuts the
 * server down, which stops the listener with no connection left for the
 * core to cancel a call on.
 *
 * Lock order: a model queue's lock, then none of ours (the hooks that run
 * under it only read atomics). The state's lock is taken before the core's
 * own (a drain cancels waiting streams under it) and never held while a
 * handler or a tag's function runs. */
#include "grpc_front.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"

#define GF_MAX_THREADS 256
#define GF_CODES 17 /* gRPC's status codes are 0..16 */
/* Keepalive: ping an idle client every minute (load balancers drop silent
 * connections), give up after 20 s without an answer; clients may ping
 * every 10 s, with or without calls, without being sent away. */
#define GF_KEEPALIVE_MS 60000
#define GF_KEEPALIVE_TIMEOUT_MS 20000
#define GF_CLIENT_PING_MIN_MS 10000

struct gf_tag {
    void (*fn)(void *arg, bool ok);
    void *arg;
};

struct grpc_front_state {
    const struct inferd_config *cfg;
    struct access *access;
    void *ctx;
    grpc_front_stream_error_fn stream_error;
    grpc_server *server;
    grpc_completion_queue *cq;
    struct grpc_method methods[GRPC_FRONT_MAX_METHODS];
    void *handles[GRPC_FRONT_MAX_METHODS];
    int n_methods;
    pthread_t threads[GF_MAX_THREADS];
    int n_threads;
    atomic_bool draining; /* new calls are answered UNAVAILABLE; streams end */
    atomic_int inflight;  /* calls taken to be served and not yet freed */
    pthread_mutex_t lock;
    pthread_cond_t cond;                  /* inflight reached 0, or the shutdown finished */
    bool shutdown_started, shutdown_done; /* connections closed, shutdown begun (under lock) */
    struct grpc_front_call *streams;      /* open streams, linked by next (under lock) */
    struct gf_tag shutdown_tag;
    /* Calls by method (the last row: unknown methods) and status code. */
    atomic_uint_least64_t calls[GRPC_FRONT_MAX_METHODS + 1][GF_CODES];
};

struct grpc_front_call {
    struct grpc_front_state *s;
    int method; /* index into s->methods, or -1: a method not served */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* methods not served only */
    grpc_byte_buffer *payload; /* a unary call's message */
    grpc_byte_buffer *recv;    /* a stream's next message */
    struct gf_tag t_new, t_close, t_send, t_recv;
    atomic_int refs;
    int cancelled;          /* RECV_CLOSE_ON_SERVER's answer */
    bool counted;           /* in s->inflight (a call a drain refused is not) */
    atomic_bool gone;       /* the client cancelled or left */
    bool initial_sent;      /* initial metadata sent (streams) */
    bool final;             /* the batch in flight sends the final status */
    grpc_byte_buffer *send; /* the message in flight */
    grpc_slice status_text;
    grpc_op ops[4];
    uint64_t start_ns; /* the call's, or its current stream message's */
    size_t bytes_in;   /* the current message's */
    size_t bytes_out;  /* the current answer's */
    char model[64];
    int version;
    char peer[96];
    struct grpc_front_call *next, *prev; /* in s->streams (streams only) */
    bool listed;                         /* in s->streams */
    atomic_bool waiting;                 /* a stream waiting for its client's next message */
};

const char *grpc_front_code_name(enum grpc_front_code code)
{
    static const char *const names[GF_CODES] = {"OK",
                                                "CANCELLED",
                                                "UNKNOWN",
                                                "INVALID_ARGUMENT",
                                                "DEADLINE_EXCEEDED",
                                                "NOT_FOUND",
                                                "ALREADY_EXISTS",
                                                "PERMISSION_DENIED",
                                                "RESOURCE_EXHAUSTED",
                                                "FAILED_PRECONDITION",
                                                "ABORTED",
                                                "OUT_OF_RANGE",
                                                "UNIMPLEMENTED",
                                                "INTERNAL",
                                                "UNAVAILABLE",
                                                "DATA_LOSS",
                                                "UNAUTHENTICATED"};
    return (unsigned)code < GF_CODES ? names[code] : "UNKNOWN";
}

static void on_new(void *arg, bool ok);
static void on_close(void *arg, bool ok);
static void on_send(void *arg, bool ok);
static void on_recv(void *arg, bool ok);

static void free_call(struct grpc_front_call *c)
{
    grpc_metadata_array_destroy(&c->md);
    if (c->method < 0)
        grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* Drop one reference; the last frees the call and counts it out. */
static void unref_call(struct grpc_front_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    struct grpc_front_state *s = c->s;
    if (c->listed) {
        pthread_mutex_lock(&s->lock);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->streams = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&s->lock);
    }
    bool counted = c->counted;
    free_call(c);
    if (counted && atomic_fetch_sub(&s->inflight, 1) == 1) {
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
}

/* Start a batch of n ops on c with tag t, holding a reference for it.
 * Returns 0, or -1 (logged; the reference is dropped again). */
static int start_batch(struct grpc_front_call *c, size_t n, struct gf_tag *t)
{
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, c->ops, n, t, NULL);
    if (e == GRPC_CALL_OK)
        return 0;
    log_msg(LOG_ERROR, "grpc: a batch of %zu op(s) was refused (%d)", n, (int)e);
    atomic_fetch_sub(&c->refs, 1);
    return -1;
}

/* Ask the core for the next call of method i (-1: of any method not
 * served). Also while draining, until the connections are closed: a call
 * left unmatched would be ended CANCELLED by the core at shutdown (see the
 * drain above). Once the server is shut down the core fails new requests
 * (on_new sees !ok). */
static void request_call(struct grpc_front_state *s, int i)
{
    struct grpc_front_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        log_msg(LOG_ERROR, "grpc: out of memory: %s calls are no longer taken",
                i < 0 ? "unknown" : s->methods[i].name);
        return;
    }
    c->s = s;
    c->method = i;
    c->t_new = (struct gf_tag){on_new, c};
    c->t_close = (struct gf_tag){on_close, c};
    c->t_send = (struct gf_tag){on_send, c};
    c->t_recv = (struct gf_tag){on_recv, c};
    atomic_init(&c->refs, 1);
    grpc_metadata_array_init(&c->md);
    grpc_call_error e;
    if (i < 0) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq,
                                     &c->t_new);
    } else {
        e = grpc_server_request_registered_call(
            s->server, s->handles[i], &c->call, &c->deadline, &c->md,
            s->methods[i].streaming ? NULL : &c->payload, s->cq, s->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        free_call(c);
        if (!atomic_load(&s->draining))
            log_msg(LOG_ERROR, "grpc: cannot take calls (%d)", (int)e);
    }
}

/* The value of metadata key (lower case, as HTTP/2 sends it) into out
 * (cut to fit), or NULL when absent. */
static const char *metadata(const grpc_metadata_array *md, const char *key, char *out,
                            size_t out_len)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) != klen || memcmp(GRPC_SLICE_START_PTR(*k), key, klen) != 0)
            continue;
        const grpc_slice *v = &md->metadata[i].value;
        size_t n = GRPC_SLICE_LENGTH(*v);
        if (n >= out_len)
            n = out_len - 1;
        memcpy(out, GRPC_SLICE_START_PTR(*v), n);
        out[n] = '\0';
        return out;
    }
    return NULL;
}

/* The core names peers "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000". */
static bool peer_loopback(const char *peer)
{
    return strncmp(peer, "ipv4:127.", 9) == 0 || strncmp(peer, "ipv6:[::1]", 10) == 0 ||
           strncmp(peer, "ipv6:[::ffff:127.", 17) == 0 || strncmp(peer, "unix:", 5) == 0;
}

/* The call's access verdict as a code (GF_OK: go on) and message. */
static enum grpc_front_code check_access(struct grpc_front_call *c, const char **message)
{
    struct grpc_front_state *s = c->s;
    char auth[ACCESS_KEY_MAX + 64], key[ACCESS_KEY_MAX + 1];
    struct access_request r = {
        .method = "POST",
        .authorization = metadata(&c->md, "authorization", auth, sizeof auth),
        .api_key = metadata(&c->md, "x-api-key", key, sizeof key),
        .loopback = peer_loopback(c->peer),
    };
    struct access_result verdict = access_check(s->access, s->methods[c->method].access, &r);
    *message = access_message(verdict.verdict);
    switch (verdict.verdict) {
    case ACCESS_GO_ON:
    case ACCESS_PREFLIGHT: return GF_OK; /* no preflight in gRPC */
    case ACCESS_NO_KEY:
    case ACCESS_BAD_KEY: return GF_UNAUTHENTICATED;
    default: return GF_PERMISSION_DENIED;
    }
}

/* The bytes of buffer, flattened into a new malloc'd block. Returns NULL
 * when out of memory (or when the message is empty: *len is then 0 and
 * the result a 1-byte block). */
static uint8_t *flatten(grpc_byte_buffer *buffer, size_t *len)
{
    grpc_byte_buffer_reader reader;
    *len = 0;
    if (buffer == NULL)
        return calloc(1, 1);
    if (!grpc_byte_buffer_reader_init(&reader, buffer))
        return NULL;
    size_t total = grpc_byte_buffer_length(buffer);
    uint8_t *out = malloc(total ? total : 1);
    grpc_slice slice;
    while (out && grpc_byte_buffer_reader_next(&reader, &slice)) {
        size_t n = GRPC_SLICE_LENGTH(slice);
        if (*len + n <= total)
            memcpy(out + *len, GRPC_SLICE_START_PTR(slice), n);
        *len += n;
        grpc_slice_unref(slice);
    }
    grpc_byte_buffer_reader_destroy(&reader);
    if (out && *len != total) {
        free(out);
        return NULL;
    }
    return out;
}

/* Run the handler on one message. */
static void dispatch(struct grpc_front_call *c, grpc_byte_buffer *buffer)
{
    size_t len;
    uint8_t *msg = flatten(buffer, &len);
    c->bytes_in = len;
    c->start_ns = clock_now_ns();
    c->model[0] = '\0';
    if (msg == NULL) {
        grpc_front_answer(c, GF_INTERNAL, "out of memory reading the request", NULL, 0);
        return;
    }
    c->s->methods[c->method].handler(c, msg, len);
    free(msg);
}

/* Start reading a stream's next message. Returns 0 or -1. */
static int read_next(struct grpc_front_call *c)
{
    memset(c->ops, 0, sizeof c->ops);
    c->ops[0].op = GRPC_OP_RECV_MESSAGE;
    c->ops[0].data.recv_message.recv_message = &c->recv;
    atomic_store(&c->waiting, true);
    if (start_batch(c, 1, &c->t_recv) == 0)
        return 0;
    atomic_store(&c->waiting, false);
    return -1;
}

static void on_new(void *arg, bool ok)
{
    struct grpc_front_call *c = arg;
    struct grpc_front_state *s = c->s;
    if (!ok) { /* the server is shutting down */
        free_call(c);
        return;
    }
    request_call(s, c->method); /* the next one */
    /* A drain answers new calls at once, except the open probes (they say
     * "not ready"): what it waits for are the calls taken before it. */
    bool refuse =
        atomic_load(&s->draining) && c->method >= 0 && s->methods[c->method].access != ACCESS_OPEN;
    c->counted = !refuse;
    if (c->counted)
        atomic_fetch_add(&s->inflight, 1);
    c->start_ns = clock_now_ns();
    char *peer = grpc_call_get_peer(c->call);
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "");
    gpr_free(peer);
    memset(c->ops, 0, sizeof c->ops);
    c->ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    c->ops[0].data.recv_close_on_server.cancelled = &c->cancelled;
    start_batch(c, 1, &c->t_close);
    if (c->method < 0) {
        grpc_front_answer(c, GF_UNIMPLEMENTED, "inferd does not implement this method", NULL, 0);
        return;
    }
    if (refuse) {
        c->final = true; /* a stream too: end the call */
        grpc_front_answer(c, GF_UNAVAILABLE, "the server is shutting down: retry", NULL, 0);
        return;
    }
    const char *why;
    enum grpc_front_code code = check_access(c, &why);
    if (code != GF_OK) {
        c->final = true; /* not a stream message: end the call */
        grpc_front_answer(c, code, why, NULL, 0);
        return;
    }
    if (!s->methods[c->method].streaming) {
        dispatch(c, c->payload);
        return;
    }
    pthread_mutex_lock(&s->lock); /* a drain ends it when it waits for a message */
    c->next = s->streams;
    if (c->next)
        c->next->prev = c;
    s->streams = c;
    c->listed = true;
    pthread_mutex_unlock(&s->lock);
    read_next(c);
}

static void on_close(void *arg, bool ok)
{
    struct grpc_front_call *c = arg;
    (void)ok;
    if (c->cancelled)
        atomic_store(&c->gone, true);
    unref_call(c);
}

/* Send the final status (code, message) on c; its completion drops the
 * call's own reference. */
static void send_status(struct grpc_front_call *c, enum grpc_front_code code, const char *message)
{
    size_t n = 0;
    memset(c->ops, 0, sizeof c->ops);
    if (!c->initial_sent) {
        c->ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_sent = true;
    }
    c->status_text = grpc_slice_from_copied_string(message);
    c->ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    c->ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    c->ops[n].data.send_status_from_server.status_details = &c->status_text;
    n++;
    c->final = true;
    if (start_batch(c, n, &c->t_send) != 0) {
        grpc_slice_unref(c->status_text);
        unref_call(c); /* the call's own reference */
    }
}

static void on_recv(void *arg, bool ok)
{
    struct grpc_front_call *c = arg;
    atomic_store(&c->waiting, false);
    if (!ok || c->recv == NULL) { /* the client closed its side, or the call ended */
        send_status(c, GF_OK, "");
    } else {
        grpc_byte_buffer *msg = c->recv;
        c->recv = NULL;
        dispatch(c, msg);
        grpc_byte_buffer_destroy(msg);
    }
    unref_call(c);
}

/* One access log line and the metrics of an answer. */
static void account(struct grpc_front_call *c, enum grpc_front_code code)
{
    struct grpc_front_state *s = c->s;
    int row = c->method < 0 ? s->n_methods : c->method;
    atomic_fetch_add(&s->calls[row][(unsigned)code < GF_CODES ? code : GF_UNKNOWN], 1);
    if (!log_enabled(LOG_INFO))
        return;
    struct log_field fields[] = {
        {"protocol", LOG_STR, "grpc", 0},
        {"method", LOG_STR, c->method < 0 ? "(not served)" : s->methods[c->method].name, 0},
        {"status", LOG_STR, grpc_front_code_name(code), 0},
        {"bytes_in", LOG_INT, NULL, (int64_t)c->bytes_in},
        {"bytes_out", LOG_INT, NULL, (int64_t)c->bytes_out},
        {"model", LOG_STR, c->model, 0},
        {"total_ms", LOG_MS, NULL, (int64_t)(clock_now_ns() - c->start_ns)},
    };
    log_fields(LOG_INFO, "request", fields, (int)(sizeof fields / sizeof fields[0]));
}

void grpc_front_answer(struct grpc_front_call *c, enum grpc_front_code code, const char *message,
                       uint8_t *body, size_t len)
{
    struct grpc_front_state *s = c->s;
    bool stream = c->method >= 0 && s->methods[c->method].streaming && !c->final;
    if (stream && code != GF_OK) { /* a stream's failed message: a response with the error */
        free(body);
        body = NULL;
        if (s->stream_error == NULL || s->stream_error(message, &body, &len) != 0) {
            account(c, code);
            send_status(c, GF_INTERNAL, "out of memory");
            return;
        }
    }
    c->bytes_out = code == GF_OK || stream ? len : 0;
    account(c, code);
    if (code != GF_OK && !stream) {
        free(body);
        send_status(c, code, message);
        return;
    }
    grpc_slice slice = body ? grpc_slice_new(body, len, free) : grpc_empty_slice();
    c->send = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    size_t n = 0;
    memset(c->ops, 0, sizeof c->ops);
    if (!c->initial_sent) {
        c->ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_sent = true;
    }
    c->ops[n].op = GRPC_OP_SEND_MESSAGE;
    c->ops[n++].data.send_message.send_message = c->send;
    if (!stream) {
        c->status_text = grpc_slice_from_static_string("");
        c->ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        c->ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        c->ops[n++].data.send_status_from_server.status_details = &c->status_text;
        c->final = true;
    }
    if (start_batch(c, n, &c->t_send) != 0) {
        grpc_byte_buffer_destroy(c->send);
        c->send = NULL;
        if (c->final)
            unref_call(c);
        else
            send_status(c, GF_INTERNAL, "the response could not be sent");
    }
}

static void on_send(void *arg, bool ok)
{
    struct grpc_front_call *c = arg;
    if (c->send) {
        grpc_byte_buffer_destroy(c->send);
        c->send = NULL;
    }
    if (c->final) {
        grpc_slice_unref(c->status_text);
        unref_call(c); /* the call's own reference */
    } else if (!ok) {
        send_status(c, GF_CANCELLED, "the stream broke");
    } else if (atomic_load(&c->s->draining)) {
        send_status(c, GF_UNAVAILABLE, "the server is shutting down");
    } else if (read_next(c) != 0) { /* the next message of the stream */
        send_status(c, GF_INTERNAL, "the stream could not be read");
    }
    unref_call(c); /* this batch's */
}

void *grpc_front_ctx(const struct grpc_front_call *c)
{
    return c->s->ctx;
}

bool grpc_front_streaming(const struct grpc_front_call *c)
{
    return c->method >= 0 && c->s->methods[c->method].streaming;
}

uint64_t grpc_front_deadline_ns(const struct grpc_front_call *c)
{
    gpr_timespec d = c->deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return 0;
    gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
    int64_t ns = (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
    return clock_now_ns() + (uint64_t)(ns > 0 ? ns : 1);
}

bool grpc_front_gone(const struct grpc_front_call *c)
{
    return atomic_load(&c->gone);
}

void grpc_front_note_model(struct grpc_front_call *c, const char *model, int version)
{
    snprintf(c->model, sizeof c->model, "%s", model);
    c->version = version;
}

static void on_shutdown(void *arg, bool ok)
{
    struct grpc_front_state *s = arg;
    (void)ok;
    pthread_mutex_lock(&s->lock);
    s->shutdown_done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *poll_thread(void *arg)
{
    struct grpc_front_state *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct gf_tag *t = ev.tag;
            t->fn(t->arg, ev.success != 0);
        }
    }
    return NULL;
}

/* A whole PEM file, NUL-terminated. Returns NULL with err set. */
static char *read_pem(const char *path, const char *what, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct strbuf sb = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && sb.len < (1u << 20))
        strbuf_append(&sb, chunk, n);
    fclose(f);
    size_t len;
    char *text = strbuf_detach(&sb, &len);
    if (text == NULL || len == 0) {
        free(text);
        snprintf(err, err_len, "%s %s is empty or unreadable", what, path);
        return NULL;
    }
    return text;
}

/* The listener's credentials: TLS from cfg's files, else plain. */
static grpc_server_credentials *credentials(const struct inferd_config *cfg, char *err,
                                            size_t err_len)
{
    bool cert = cfg->grpc_tls_cert[0] != '\0', key = cfg->grpc_tls_key[0] != '\0';
    if (!cert && !key)
        return grpc_insecure_server_credentials_create();
    if (cert != key) {
        snprintf(err, err_len, "--grpc-tls-cert and --grpc-tls-key go together");
        return NULL;
    }
    char *chain = read_pem(cfg->grpc_tls_cert, "--grpc-tls-cert", err, err_len);
    char *pkey = chain ? read_pem(cfg->grpc_tls_key, "--grpc-tls-key", err, err_len) : NULL;
    grpc_server_credentials *creds = NULL;
    if (pkey) {
        grpc_ssl_pem_key_cert_pair pair = {pkey, chain};
        creds = grpc_ssl_server_credentials_create_ex(
            NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
        if (creds == NULL)
            snprintf(err, err_len, "the gRPC TLS certificate or key was refused");
    }
    free(chain);
    if (pkey) {
        memset(pkey, 0, strlen(pkey));
        free(pkey);
    }
    return creds;
}

static grpc_server *create_server(const struct inferd_config *cfg)
{
    grpc_arg args[7];
    int n = 0;
    long max = cfg->max_body_bytes < INT_MAX ? cfg->max_body_bytes : INT_MAX;
#define INT_ARG(k, v)                                                                              \
    args[n].type = GRPC_ARG_INTEGER;                                                               \
    args[n].key = (char *)(k);                                                                     \
    args[n++].value.integer = (int)(v)
    INT_ARG(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max);
    INT_ARG(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, -1);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIME_MS, GF_KEEPALIVE_MS);
    INT_ARG(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, GF_KEEPALIVE_TIMEOUT_MS);
    INT_ARG(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    INT_ARG(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, GF_CLIENT_PING_MIN_MS);
    INT_ARG(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
#undef INT_ARG
    grpc_channel_args channel_args = {(size_t)n, args};
    return grpc_server_create(&channel_args, NULL);
}

/* Bind, register and start; threads not yet. Returns 0 or -1 with err. */
static int listen_and_register(struct grpc_front_state *s, char *err, size_t err_len)
{
    const struct inferd_config *cfg = s->cfg;
    s->server = create_server(cfg);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    if (s->server == NULL || s->cq == NULL) {
        snprintf(err, err_len, "cannot create the gRPC server");
        return -1;
    }
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (int i = 0; i < s->n_methods; i++) {
        s->handles[i] = grpc_server_register_method(s->server, s->methods[i].path, NULL,
                                                    s->methods[i].streaming
                                                        ? GRPC_SRM_PAYLOAD_NONE
                                                        : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                                    0);
        if (s->handles[i] == NULL) {
            snprintf(err, err_len, "cannot register gRPC method %s", s->methods[i].path);
            return -1;
        }
    }
    grpc_server_credentials *creds = credentials(cfg, err, err_len);
    if (creds == NULL)
        return -1;
    char addr[300];
    snprintf(addr, sizeof addr, strchr(cfg->host, ':') ? "[%s]:%d" : "%s:%d", cfg->host,
             cfg->grpc_port);
    int port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        snprintf(err, err_len, "cannot listen for gRPC on %s (in use, or a bad address)", addr);
        return -1;
    }
    grpc_server_start(s->server);
    return port;
}

/* Free what start made, after a failure before any thread ran. */
static void destroy_unstarted(struct grpc_front_state *s, bool started)
{
    if (s->server) {
        if (started) {
            grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
            grpc_server_cancel_all_calls(s->server);
            /* drain the queue ourselves: no thread runs yet */
            for (;;) {
                grpc_event ev = grpc_completion_queue_next(
                    s->cq,
                    gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                 gpr_time_from_millis(2000, GPR_TIMESPAN)),
                    NULL);
                if (ev.type != GRPC_OP_COMPLETE)
                    break;
                struct gf_tag *t = ev.tag;
                t->fn(t->arg, ev.success != 0);
                if (t == &s->shutdown_tag)
                    break;
            }
        }
        grpc_server_destroy(s->server);
    }
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    grpc_shutdown_blocking();
}

void grpc_front_init(struct grpc_front *g, const struct inferd_config *cfg,
                     const struct grpc_method *methods, int n, struct access *access, void *ctx,
                     grpc_front_stream_error_fn stream_error)
{
    memset(g, 0, sizeof *g);
    g->cfg = cfg;
    g->methods = methods;
    g->n_methods = n;
    g->access = access;
    g->ctx = ctx;
    g->stream_error = stream_error;
}

static int grpc_front_start(void *self, char *err, size_t err_len)
{
    struct grpc_front *g = self;
    const struct inferd_config *cfg = g->cfg;
    const struct grpc_method *methods = g->methods;
    int n = g->n_methods;
    g->s = NULL;
    g->bound_port = 0;
    if (cfg->grpc_port == 0)
        return 0;
    if (n > GRPC_FRONT_MAX_METHODS) {
        snprintf(err, err_len, "too many gRPC methods (%d)", n);
        return -1;
    }
    struct grpc_front_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    s->cfg = cfg;
    s->access = g->access;
    s->ctx = g->ctx;
    s->stream_error = g->stream_error;
    memcpy(s->methods, methods, (size_t)n * sizeof methods[0]);
    s->n_methods = n;
    s->shutdown_tag = (struct gf_tag){on_shutdown, s};
    if (pthread_mutex_init(&s->lock, NULL) != 0 || clock_cond_init(&s->cond) != 0) {
        free(s);
        snprintf(err, err_len, "cannot create the gRPC front end's lock");
        return -1;
    }
    grpc_init();
    int port = listen_and_register(s, err, err_len);
    if (port < 0) {
        destroy_unstarted(s, false);
        return -1;
    }
    for (int i = -1; i < n; i++)
        request_call(s, i);
    int want = cfg->grpc_threads > 0 ? cfg->grpc_threads : cfg->http_threads;
    for (; s->n_threads < want && s->n_threads < GF_MAX_THREADS; s->n_threads++) {
        if (pthread_create(&s->threads[s->n_threads], NULL, poll_thread, s) != 0)
            break;
    }
    if (s->n_threads == 0) {
        snprintf(err, err_len, "cannot start the gRPC threads");
        destroy_unstarted(s, true);
        return -1;
    }
    g->s = s;
    g->bound_port = port;
    log_msg(LOG_INFO, "gRPC listening on %s:%d (%s), %d thread(s), messages up to %ld bytes",
            cfg->host, port, cfg->grpc_tls_cert[0] ? "TLS" : "plain", s->n_threads,
            cfg->max_body_bytes);
    return 0;
}

static void grpc_front_drain_begin(void *self)
{
    struct grpc_front *g = self;
    struct grpc_front_state *s = g->s;
    if (s == NULL)
        return;
    /* No shutdown yet (see the drain above): new calls are refused from
     * now on, those in flight go on. A stream waiting for its client's next
     * message ends now; one with a message in progress ends after its
     * answer (on_send). */
    atomic_store(&s->draining, true);
    pthread_mutex_lock(&s->lock);
    for (struct grpc_front_call *c = s->streams; c != NULL; c = c->next)
        if (atomic_load(&c->waiting))
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAVAILABLE,
                                         "the server is shutting down", NULL);
    pthread_mutex_unlock(&s->lock);
}

/* The end of a drain, once: close every connection, then shut the server
 * down (the listener stops; no connection is left on which the core could
 * cancel a call it did not hand over). Calls still in flight, if any (the
 * drain timed out), end with their connection. grpc.h calls
 * grpc_server_cancel_all_calls "only usable after shutdown"; in the core
 * inferd builds on (1.51, Debian 12) it disconnects every connection of the
 * server and changes nothing else, and the shutdown after it works as
 * usual: that disconnect is what is needed before the shutdown here. */
static void close_connections(struct grpc_front_state *s)
{
    pthread_mutex_lock(&s->lock);
    bool first = !s->shutdown_started;
    s->shutdown_started = true;
    pthread_mutex_unlock(&s->lock);
    if (!first)
        return;
    atomic_store(&s->draining, true);
    grpc_server_cancel_all_calls(s->server);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    /* A connection accepted between the two (its streams would be ended
     * CANCELLED): closed too. */
    grpc_server_cancel_all_calls(s->server);
}

static bool grpc_front_wait_idle(void *self, uint64_t deadline_ns)
{
    struct grpc_front *g = self;
    struct grpc_front_state *s = g->s;
    if (s == NULL)
        return true;
    pthread_mutex_lock(&s->lock);
    uint64_t now;
    while (atomic_load(&s->inflight) > 0 && (now = clock_now_ns()) < deadline_ns) {
        uint64_t wake_at = now + 50000000u; /* re-check every 50 ms */
        clock_cond_wait_until(&s->cond, &s->lock, wake_at < deadline_ns ? wake_at : deadline_ns);
    }
    bool idle = atomic_load(&s->inflight) == 0;
    pthread_mutex_unlock(&s->lock);
    if (idle && atomic_load(&s->draining))
        close_connections(s);
    return idle;
}

static void grpc_front_stop(void *self)
{
    struct grpc_front *g = self;
    struct grpc_front_state *s = g->s;
    if (s == NULL)
        return;
    grpc_front_drain_begin(g);
    close_connections(s);
    uint64_t deadline = clock_now_ns() + 5000000000u;
    pthread_mutex_lock(&s->lock);
    uint64_t now;
    while (!s->shutdown_done && (now = clock_now_ns()) < deadline)
        clock_cond_wait_until(&s->cond, &s->lock, now + 50000000u); /* re-check every 50 ms */
    bool done = s->shutdown_done;
    pthread_mutex_unlock(&s->lock);
    if (!done)
        log_msg(LOG_WARN, "grpc: %d call(s) still open at stop", atomic_load(&s->inflight));
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    for (int i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    g->s = NULL;
    grpc_shutdown_blocking();
}

static void grpc_front_render_metrics(void *self, struct strbuf *sb)
{
    struct grpc_front *g = self;
    struct grpc_front_state *s = g->s;
    if (s == NULL)
        return;
    strbuf_puts(sb, "# HELP inferd_grpc_calls_total gRPC answers (unary calls and stream "
                    "messages) by method and status code.\n"
                    "# TYPE inferd_grpc_calls_total counter\n");
    for (int i = 0; i <= s->n_methods; i++) {
        for (int code = 0; code < GF_CODES; code++) {
            uint64_t v = atomic_load(&s->calls[i][code]);
            if (v == 0)
                continue;
            strbuf_printf(sb,
                          "inferd_grpc_calls_total{protocol=\"grpc\",method=\"%s\",code=\"%s\"} "
                          "%llu\n",
                          i < s->n_methods ? s->methods[i].name : "other",
                          grpc_front_code_name((enum grpc_front_code)code), (unsigned long long)v);
        }
    }
}

static int grpc_front_inflight(void *self)
{
    struct grpc_front *g = self;
    return g->s ? atomic_load(&g->s->inflight) : 0;
}

const struct transport_ops grpc_front_transport = {
    .name = "grpc",
    .start = grpc_front_start,
    .drain_begin = grpc_front_drain_begin,
    .inflight = grpc_front_inflight,
    .wait_idle = grpc_front_wait_idle,
    .stop = grpc_front_stop,
    .render_metrics = grpc_front_render_metrics,
};
