/* transport.h - what the server asks of every listener it runs (HTTP,
 * gRPC): start, begin a drain, wait until idle,
 * stop. The server keeps its listeners in one table and starts, drains and
 * stops them all the same way; a transport's own settings are given to it
 * before start. */
#ifndef INFERD_TRANSPORT_H
#define INFERD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

struct transport_ops {
    const char *name; /* for logs: "http" */
    /* Listen and serve. Returns 0, or -1 with err set (nothing running). */
    int (*start)(void *self, char *err, size_t err_len);
    /* Refuse new connections; accepted ones finish. */
    void (*drain_begin)(void *self);
    /* Calls begun and not yet answered. */
    int (*inflight)(void *self);
    /* Wait until inflight is 0 or deadline_ns (clock_now_ns) passes; true
     * when none is in flight. */
    bool (*wait_idle)(void *self, uint64_t deadline_ns);
    /* Stop serving (every queued call has ended) and free. */
    void (*stop)(void *self);
    /* Append its own metrics in Prometheus text (NULL: none). */
    void (*render_metrics)(void *self, struct strbuf *sb);
};

struct transport {
    const struct transport_ops *ops;
    void *self;
};

/* Start t[0..n) in order; on a failure, stop those started and return -1
 * with err set. */
int transport_start_all(const struct transport *t, int n, char *err, size_t err_len);

/* Begin every transport's drain. */
void transport_drain_begin_all(const struct transport *t, int n);

/* The calls in flight in all of them. */
int transport_inflight_all(const struct transport *t, int n);

/* Wait until all are idle or deadline_ns passes; true when all are. */
bool transport_wait_idle_all(const struct transport *t, int n, uint64_t deadline_ns);

/* Stop them, last started first. */
void transport_stop_all(const struct transport *t, int n);

#endif
