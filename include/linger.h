/* linger.h - lingering close for early answers: a socket whose reply went
 * out before its request body was read is kept open, and what the client
 * still sends is read and dropped, so that a client that sends its whole
 * body before reading sees the reply instead of a connection reset (the
 * kernel resets a socket closed with unread data). nginx calls this
 * lingering close.
 *
 * libmicrohttpd 0.9.75 sends an early reply at once, stops reading, and
 * closes its descriptor after the reply: the caller hands linger_add a
 * duplicate of that descriptor, which keeps the socket open until the
 * client is done or a bound is reached:
 *  - LINGER_TIME_MS in all, LINGER_IDLE_MS without data;
 *  - LINGER_MAX_BYTES read;
 *  - LINGER_MAX_SOCKETS at once (beyond that a socket closes at once).
 * One thread polls them all. */
#ifndef INFERD_LINGER_H
#define INFERD_LINGER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "service.h"

#define LINGER_TIME_MS 10000
#define LINGER_IDLE_MS 2000
#define LINGER_MAX_BYTES ((uint64_t)256 << 20)
#define LINGER_MAX_SOCKETS 64

struct linger_socket {
    int fd;
    uint64_t since_ns, last_data_ns, bytes;
};

struct linger_pool {
    struct service svc;   /* the thread; svc.stop under lock */
    pthread_mutex_t lock; /* guards socks, n and svc.stop */
    int wake[2];          /* a pipe: a socket added, or stop */
    struct linger_socket socks[LINGER_MAX_SOCKETS];
    int n;
};

/* Start the thread. Returns 0, or -1 with err set. */
int linger_start(struct linger_pool *l, char *err, size_t err_len);

/* Take fd (a socket the caller no longer uses) and close it once the
 * client has stopped sending or a bound is reached. Closes it at once when
 * the lingerer is full or not running. */
void linger_add(struct linger_pool *l, int fd);

/* Stop the thread and close every socket still lingering. */
void linger_stop(struct linger_pool *l);

#endif
