/* grpc_front.h - the gRPC front end on gRPC's C core: a listener (TLS when
 * given a certificate), completion-queue threads, calls of a method table
 * (unary and bidirectional streams), API keys from metadata checked by
 * access.h, message limits, deadlines, cancellation, and the drain. It
 * knows no service and no model: methods (grpc_service.h) get a call and
 * the request message's bytes, and answer with grpc_front_answer, from any
 * thread. gRPC's C core API changes between versions: this module alone
 * includes it. */
#ifndef INFERD_GRPC_FRONT_H
#define INFERD_GRPC_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "config.h"
#include "transport.h"

/* gRPC's status codes (the protocol's numbers), as methods answer them. */
enum grpc_front_code {
    GF_OK = 0,
    GF_CANCELLED = 1,
    GF_UNKNOWN = 2,
    GF_INVALID_ARGUMENT = 3,
    GF_DEADLINE_EXCEEDED = 4,
    GF_NOT_FOUND = 5,
    GF_ALREADY_EXISTS = 6,
    GF_PERMISSION_DENIED = 7,
    GF_RESOURCE_EXHAUSTED = 8,
    GF_FAILED_PRECONDITION = 9,
    GF_UNIMPLEMENTED = 12,
    GF_INTERNAL = 13,
    GF_UNAVAILABLE = 14,
    GF_UNAUTHENTICATED = 16,
};

/* The name of a code ("OK", "NOT_FOUND", ...), for logs and metrics. */
const char *grpc_front_code_name(enum grpc_front_code code);

struct grpc_front_call; /* one call: private to grpc_front.c */

/* One method: its full path, who may call it, and its handler. The
 * handler reads the request message from msg (len bytes, valid during the
 * call only) and answers the call exactly once with grpc_front_answer, now
 * or later from another thread. A streaming method's handler runs once per
 * message of the stream; each answer is that message's response, sent in
 * order before the next message is read. */
struct grpc_method {
    const char *path; /* "/inference.GRPCInferenceService/ModelInfer" */
    const char *name; /* "ModelInfer": in logs and metrics */
    enum access_level access;
    bool streaming;
    void (*handler)(struct grpc_front_call *call, const uint8_t *msg, size_t len);
};

#define GRPC_FRONT_MAX_METHODS 32

struct grpc_front_state; /* the C core's objects: private to grpc_front.c */

/* A stream's failed message as its response bytes (the service's, e.g. a
 * ModelStreamInferResponse with error_message): returns 0 with *out
 * malloc'd, or -1 when out of memory. */
typedef int (*grpc_front_stream_error_fn)(const char *message, uint8_t **out, size_t *len);

/* The front end's state. Fields are private to grpc_front.c unless marked. */
struct grpc_front {
    const struct inferd_config *cfg; /* host, grpc_port, threads, limits, TLS files */
    const struct grpc_method *methods;
    int n_methods;
    struct access *access; /* API keys, checked before a method runs */
    void *ctx;             /* what grpc_front_ctx gives handlers */
    grpc_front_stream_error_fn stream_error;
    struct grpc_front_state *s; /* NULL: not running */
    int bound_port;             /* public, read-only: the port it listens on */
};

/* Set up g to listen on cfg's host and grpc_port with cfg's threads, limits
 * and TLS files, serving the n methods (at most GRPC_FRONT_MAX_METHODS;
 * others answer UNIMPLEMENTED) with access's keys; ctx is what
 * grpc_front_ctx gives handlers, stream_error makes a stream's failed
 * message. Nothing runs until the transport starts. */
void grpc_front_init(struct grpc_front *g, const struct inferd_config *cfg,
                     const struct grpc_method *methods, int n, struct access *access, void *ctx,
                     grpc_front_stream_error_fn stream_error);

/* The front end as a transport (self: a struct grpc_front after
 * grpc_front_init). start: listen (-1 with err set, nothing left running;
 * grpc_port 0: nothing runs); drain_begin: calls that arrive from now on
 * are answered UNAVAILABLE (the open probes still answer), calls in flight
 * go on, streams end with UNAVAILABLE after the response in progress;
 * inflight and wait_idle: calls taken before the drain and not yet freed,
 * and once none is left, wait_idle closes every connection and then
 * stops the listener (see grpc_front.c on why in that order); stop: the
 * same for what is left, then stop the threads and free; render_metrics:
 * calls by method and code. */
extern const struct transport_ops grpc_front_transport;

/* Answer call: code with message (for the client; cut to fit) and, when
 * code is GF_OK, body (len bytes, taken over: freed here whatever happens;
 * NULL for an empty message). On a stream, a failure is sent as a response
 * message made by the front's stream_error, and the stream goes on. Call once per handler run, from
 * any thread. */
void grpc_front_answer(struct grpc_front_call *call, enum grpc_front_code code, const char *message,
                       uint8_t *body, size_t len);

/* What a handler may ask of its call. */
void *grpc_front_ctx(const struct grpc_front_call *call);
bool grpc_front_streaming(const struct grpc_front_call *call);
/* The client's deadline as clock_now_ns time, 0 when it set none. */
uint64_t grpc_front_deadline_ns(const struct grpc_front_call *call);
/* Whether the client has cancelled the call or gone away. */
bool grpc_front_gone(const struct grpc_front_call *call);
/* Tell the front which model the current answer belongs to (for the
 * access log line), and what it ran: model name and version. */
void grpc_front_note_model(struct grpc_front_call *call, const char *model, int version);

#endif
