/* conn_guard.c - connection limits and header/body deadlines (see
 * conn_guard.h). Entries live in one list under one lock; the reaper thread
 * walks it ten times a second. A connection is ended by shutdown(): the
 * transport then sees it closed and closes the descriptor itself, after
 * conn_guard_close, so a descriptor is never shut after its reuse. */
#include "conn_guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define REAP_PERIOD_NS 100000000ull
#define REFUSAL_LOG_PERIOD_NS 1000000000ull

struct conn_entry {
    struct conn_entry *next;
    int fd;
    unsigned char addr[16]; /* IPv4 as v4-mapped IPv6 */
    enum conn_phase phase;
    uint64_t since_ns;
    bool shut; /* shut down by the guard: no longer counted */
};

static void addr_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static void addr_text(const unsigned char key[16], char *out, size_t len)
{
    static const unsigned char v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(key, v4_prefix, 12) == 0)
        inet_ntop(AF_INET, key + 12, out, (socklen_t)len);
    else
        inet_ntop(AF_INET6, key, out, (socklen_t)len);
}

/* Write what fits of a short answer (never blocks), read and drop what the
 * client already sent (a close with unread data would reset the connection
 * before the client reads the answer), and shut the socket down. */
static void end_connection(int fd, const char *answer)
{
    if (answer != NULL) {
        ssize_t w = send(fd, answer, strlen(answer), MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w; /* best effort: the connection ends either way */
        char buf[4096];
        for (int i = 0; i < 16 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
            ;
    }
    shutdown(fd, SHUT_RDWR);
}

static void shut_locked(struct conn_guard *g, struct conn_entry *e, const char *answer)
{
    end_connection(e->fd, answer);
    e->shut = true;
    g->n_open--;
    g->reaped++;
}

/* The oldest idle entry (of addr when not NULL), or NULL. */
static struct conn_entry *oldest_idle_locked(struct conn_guard *g, const unsigned char *addr)
{
    struct conn_entry *best = NULL;
    for (struct conn_entry *e = g->head; e != NULL; e = e->next)
        if (!e->shut && e->phase == CONN_IDLE && (addr == NULL || memcmp(e->addr, addr, 16) == 0) &&
            (best == NULL || e->since_ns < best->since_ns))
            best = e;
    return best;
}

static int count_addr_locked(struct conn_guard *g, const unsigned char *addr)
{
    int n = 0;
    for (struct conn_entry *e = g->head; e != NULL; e = e->next)
        n += !e->shut && memcmp(e->addr, addr, 16) == 0;
    return n;
}

#define REFUSAL_BODY_PER_ADDR "{\"error\":\"too many connections from your address; retry later\"}"
#define REFUSAL_BODY_TOTAL "{\"error\":\"the server has too many connections; retry later\"}"
static const char refusal_per_addr[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                       "Content-Type: application/json\r\n"
                                       "Retry-After: 1\r\n"
                                       "Connection: close\r\n"
                                       "Content-Length: 63\r\n\r\n" REFUSAL_BODY_PER_ADDR;
_Static_assert(sizeof REFUSAL_BODY_PER_ADDR - 1 == 63, "Content-Length above");
static const char refusal_total[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Retry-After: 1\r\n"
                                    "Connection: close\r\n"
                                    "Content-Length: 60\r\n\r\n" REFUSAL_BODY_TOTAL;
_Static_assert(sizeof REFUSAL_BODY_TOTAL - 1 == 60, "Content-Length above");

/* Make room under one limit: true when there is room (maybe after shutting
 * the oldest idle connection that counts against it). */
static bool make_room_locked(struct conn_guard *g, const unsigned char *addr, int used, int limit)
{
    if (used < limit)
        return true;
    struct conn_entry *idle = oldest_idle_locked(g, addr);
    if (idle == NULL)
        return false;
    shut_locked(g, idle, NULL);
    return true;
}

struct conn_entry *conn_guard_open(struct conn_guard *g, int fd, const struct sockaddr *addr)
{
    unsigned char key[16];
    addr_key(addr, key);
    const char *refusal = NULL;
    struct conn_entry *e = NULL;
    pthread_mutex_lock(&g->lock);
    if (!make_room_locked(g, key, count_addr_locked(g, key), g->limits.max_per_addr))
        refusal = refusal_per_addr;
    else if (!make_room_locked(g, NULL, g->n_open, g->limits.max_total))
        refusal = refusal_total;
    else if ((e = calloc(1, sizeof *e)) == NULL)
        refusal = refusal_total; /* out of memory: refuse rather than go unguarded */
    bool log_it = false;
    if (refusal != NULL) {
        g->refused++;
        uint64_t now = clock_now_ns();
        log_it = now - g->last_refusal_log_ns >= REFUSAL_LOG_PERIOD_NS;
        if (log_it)
            g->last_refusal_log_ns = now;
        end_connection(fd, refusal);
    } else {
        e->fd = fd;
        memcpy(e->addr, key, 16);
        e->phase = CONN_HEADER;
        e->since_ns = clock_now_ns();
        e->next = g->head;
        g->head = e;
        g->n_open++;
    }
    uint64_t refused = g->refused;
    pthread_mutex_unlock(&g->lock);
    if (log_it) { /* at most once a second: a flood must not flood the log */
        char text[INET6_ADDRSTRLEN];
        addr_text(key, text, sizeof text);
        log_msg(LOG_WARN, "connection from %s refused (503): %s; %llu refused since start", text,
                refusal == refusal_per_addr ? "--max-connections-per-address reached"
                                            : "--max-connections reached",
                (unsigned long long)refused);
    }
    return e;
}

void conn_guard_phase(struct conn_guard *g, struct conn_entry *e, enum conn_phase phase)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    e->phase = phase;
    e->since_ns = clock_now_ns();
    pthread_mutex_unlock(&g->lock);
}

void conn_guard_close(struct conn_guard *g, struct conn_entry *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    for (struct conn_entry **p = &g->head; *p != NULL; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    if (!e->shut)
        g->n_open--;
    pthread_mutex_unlock(&g->lock);
    free(e);
}

void conn_guard_counts(struct conn_guard *g, int *open, uint64_t *refused, uint64_t *reaped)
{
    pthread_mutex_lock(&g->lock);
    *open = g->n_open;
    *refused = g->refused;
    *reaped = g->reaped;
    pthread_mutex_unlock(&g->lock);
}

#define TIMEOUT_BODY "{\"error\":\"the request did not arrive within its time\"}\n"
static const char timeout_answer[] = "HTTP/1.1 408 Request Timeout\r\n"
                                     "Content-Type: application/json\r\n"
                                     "Connection: close\r\n"
                                     "Content-Length: 55\r\n\r\n" TIMEOUT_BODY;
_Static_assert(sizeof TIMEOUT_BODY - 1 == 55, "Content-Length above");

/* Shut every connection past its phase's deadline. Returns how many. */
static int reap_locked(struct conn_guard *g, uint64_t now)
{
    int n = 0;
    for (struct conn_entry *e = g->head; e != NULL; e = e->next) {
        if (e->shut || e->phase == CONN_BUSY)
            continue;
        uint64_t limit = e->phase == CONN_HEADER ? g->limits.header_ns
                         : e->phase == CONN_BODY ? g->limits.body_ns
                                                 : g->limits.idle_ns;
        if (now - e->since_ns < limit)
            continue;
        shut_locked(g, e, e->phase == CONN_IDLE ? NULL : timeout_answer);
        n += e->phase != CONN_IDLE;
    }
    return n;
}

static void *reaper_main(void *arg)
{
    struct conn_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->reaper.stop) {
        clock_cond_wait_until(&g->wake, &g->lock, clock_now_ns() + REAP_PERIOD_NS);
        if (g->reaper.stop)
            break;
        int n = reap_locked(g, clock_now_ns());
        if (n > 0) {
            pthread_mutex_unlock(&g->lock);
            log_msg(LOG_WARN,
                    "closed %d connection(s) whose header or body did not arrive in time (408)", n);
            pthread_mutex_lock(&g->lock);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int conn_guard_start(struct conn_guard *g, const struct conn_limits *limits, char *err,
                     size_t err_len)
{
    memset(g, 0, sizeof *g);
    g->limits = *limits;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        snprintf(err, err_len, "cannot create the connection guard's lock");
        return -1;
    }
    if (clock_cond_init(&g->wake) != 0) {
        snprintf(err, err_len, "cannot create the connection guard's condition");
        goto err_lock;
    }
    if (service_start(&g->reaper, &g->lock, &g->wake, NULL, reaper_main, g, "connection reaper",
                      err, err_len) != 0)
        goto err_cond;
    return 0;
err_cond:
    pthread_cond_destroy(&g->wake);
err_lock:
    pthread_mutex_destroy(&g->lock);
    return -1;
}

void conn_guard_stop(struct conn_guard *g)
{
    if (!g->reaper.running)
        return;
    service_stop(&g->reaper);
    while (g->head != NULL) {
        struct conn_entry *e = g->head;
        g->head = e->next;
        free(e);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
}
