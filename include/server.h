/* server.h - the running server: configuration, the models it serves, the
 * HTTP front end, readiness and the drain on shutdown. */
#ifndef INFERD_SERVER_H
#define INFERD_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"
#include "config.h"
#include "http.h"
#include "model.h"
#include "queue_watch.h"
#include "registry.h"
#include "router.h"
#include "shm_region.h"
#include "transport.h"

#define SERVER_MAX_TRANSPORTS 4

struct server {
    struct inferd_config cfg;
    struct registry registry;       /* the served models, by name and version */
    struct queue_watch queue_watch; /* deadlines and departed clients */
    struct access access;           /* API keys, the admin token and CORS */
    struct http_front http;
    /* Every listener, started, drained and stopped alike (http first). */
    struct transport transports[SERVER_MAX_TRANSPORTS];
    int n_transports;
    atomic_bool draining;
    atomic_bool mig_noted; /* the MIG slices' missing utilisation was logged */
    struct shm_table shm;  /* registered shared-memory regions (--shared-memory) */
    uint64_t start_ns;
};

/* Resolve devices, load the repository, start the transports (HTTP routing
 * through the n_routes rows of routes) and the models' workers. Returns 0,
 * or -1 with err set (nothing left running). */
int server_start(struct server *srv, const struct inferd_config *cfg,
                 const struct route_def *routes, size_t n_routes, char *err, size_t err_len);

/* Start one more transport after server_start (gRPC: its settings given
 * to it before) and add it to those server_drain_and_stop drains and stops.
 * Returns 0, or -1 with err set (the table is full, or its start failed:
 * nothing of it left running). */
int server_add_transport(struct server *srv, const struct transport *t, char *err, size_t err_len);

/* Graceful stop: readiness 503, refuse new connections, let accepted
 * requests finish (up to drain_timeout_s), then stop everything. */
void server_drain_and_stop(struct server *srv);

/* SIGHUP: re-read the API key file (on failure the old keys stay and the
 * reason is logged); in poll mode, rescan the model repository now. */
void server_reload(struct server *srv);

/* Every model loaded and warmed up, and not draining. */
bool server_ready(struct server *srv);

/* The drain on shutdown has begun. */
bool server_draining(struct server *srv);

#endif
