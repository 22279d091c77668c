/* conn_guard.h - connection limits and deadlines against floods and slow
 * clients: a total and a per-address limit on open connections (idle
 * kept-alive ones give way to new ones), and deadlines for a request's whole
 * header and whole body that a byte now and then does not reset. It knows
 * sockets, not HTTP: the front end tells it each connection's phase. */
#ifndef INFERD_CONN_GUARD_H
#define INFERD_CONN_GUARD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "service.h"

/* Where a connection is; each phase starts its own clock. */
enum conn_phase {
    CONN_HEADER, /* accepted, its first request's header not complete: header deadline */
    CONN_BODY,   /* header complete, body arriving: body deadline */
    CONN_BUSY,   /* body complete: handled, queued for a model or answering: no deadline */
    CONN_IDLE,   /* kept alive after an answer: the idle deadline, and first to give way */
};

struct conn_limits {
    int max_total;      /* open connections in all */
    int max_per_addr;   /* open connections from one client address */
    uint64_t header_ns; /* from accept to a complete header */
    uint64_t body_ns;   /* from a complete header to a complete body */
    uint64_t idle_ns;   /* kept alive without a request */
};

struct conn_entry; /* private */

/* Fields are private. Lock order: the guard's lock, then the logger's. */
struct conn_guard {
    struct conn_limits limits;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct service reaper;   /* reaper.stop under lock */
    struct conn_entry *head; /* every connection until the transport closes it */
    int n_open;              /* entries not shut by the guard */
    uint64_t refused, reaped;
    uint64_t last_refusal_log_ns;
};

/* Start the guard and its reaper thread. Returns 0, or -1 with err set. */
int conn_guard_start(struct conn_guard *g, const struct conn_limits *limits, char *err,
                     size_t err_len);
/* Stop the reaper and free every entry (the transport has closed them). */
void conn_guard_stop(struct conn_guard *g);

/* A new connection on fd from addr. Returns its entry (CONN_HEADER), or
 * NULL when a limit refuses it: the guard has then written a 503 with
 * Retry-After and shut the socket down (the transport sees it closed and
 * must not call conn_guard_close for it). When a limit is reached, the
 * oldest idle connection (of that address for the per-address limit) is
 * shut to make room before a new one is refused; NULL also when out of
 * memory. */
struct conn_entry *conn_guard_open(struct conn_guard *g, int fd, const struct sockaddr *addr);
/* The connection moves to phase (its clock restarts). */
void conn_guard_phase(struct conn_guard *g, struct conn_entry *e, enum conn_phase phase);
/* The transport has closed the connection (its fd is not yet reused). */
void conn_guard_close(struct conn_guard *g, struct conn_entry *e);
/* Connections open now, and counts since start: refused, and shut for a
 * deadline or to make room. */
void conn_guard_counts(struct conn_guard *g, int *open, uint64_t *refused, uint64_t *reaped);

#endif
