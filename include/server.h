/* server.h - the running server: configuration, the models it serves, the
 * HTTP front end, readiness and the drain on shutdown. */
#ifndef INFERD_SERVER_H
#define INFERD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "access.h"
#include "config.h"
#include "model.h"
#include "queue_watch.h"

struct MHD_Daemon;

struct server {
    struct inferd_config cfg;
    struct model *models;
    int n_models;
    struct queue_watch queue_watch; /* deadlines and departed clients */
    struct access access;           /* API keys and CORS */
    struct MHD_Daemon *daemon;
    int quiesced_fd; /* the listening socket after http_quiesce, else -1 */
    int bound_port;
    atomic_bool draining;
    atomic_int inflight; /* requests begun and not yet completed */
    pthread_mutex_t drain_lock;
    pthread_cond_t drain_cond;
    uint64_t start_ns;
    atomic_uint_least64_t request_seq; /* for generated request IDs */
};

/* Resolve devices, load the repository and start the models' workers and
 * the HTTP daemon. Returns 0, or -1 with err set (nothing left running). */
int server_start(struct server *srv, const struct inferd_config *cfg, char *err, size_t err_len);

/* Graceful stop: readiness 503, refuse new connections, let accepted
 * requests finish (up to drain_timeout_s), then stop everything. */
void server_drain_and_stop(struct server *srv);

/* SIGHUP: re-read the API key file. On failure the old keys stay and the
 * reason is logged. */
void server_reload(struct server *srv);

/* The model called name, or NULL. */
struct model *server_find_model(struct server *srv, const char *name);

/* Every model loaded and warmed up, and not draining. */
bool server_ready(struct server *srv);

#endif
