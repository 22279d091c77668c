/* linger.c - lingering close for early answers (see linger.h). */
#include "linger.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

#define MS 1000000ull

/* Read and drop what is waiting on s. Returns false when the socket is
 * done with: end of stream, an error, or past the byte bound. */
static bool drain(struct linger_socket *s, uint64_t now)
{
    char buf[65536];
    for (int round = 0; round < 16; round++) { /* at most 1 MiB per wake-up */
        ssize_t got = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got > 0) {
            s->bytes += (uint64_t)got;
            s->last_data_ns = now;
            if (s->bytes > LINGER_MAX_BYTES)
                return false;
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return true;
        return false; /* 0: the client is done; < 0: reset or error */
    }
    return true;
}

static bool expired(const struct linger_socket *s, uint64_t now)
{
    return now - s->since_ns >= LINGER_TIME_MS * MS || now - s->last_data_ns >= LINGER_IDLE_MS * MS;
}

static void *linger_main(void *arg)
{
    struct linger_pool *l = arg;
    struct pollfd pfd[LINGER_MAX_SOCKETS + 1];
    pthread_mutex_lock(&l->lock);
    while (!l->svc.stop) {
        int n = l->n;
        pfd[0] = (struct pollfd){.fd = l->wake[0], .events = POLLIN};
        for (int i = 0; i < n; i++)
            pfd[i + 1] = (struct pollfd){.fd = l->socks[i].fd, .events = POLLIN};
        pthread_mutex_unlock(&l->lock);
        /* Only this thread removes sockets, so the first n stay put while
         * the lock is released; linger_add only appends. */
        int rc = poll(pfd, (nfds_t)n + 1, n > 0 ? 100 : -1);
        if (rc > 0 && (pfd[0].revents & POLLIN)) {
            char junk[64];
            while (read(l->wake[0], junk, sizeof junk) > 0) {
            }
        }
        uint64_t now = clock_now_ns();
        pthread_mutex_lock(&l->lock);
        int kept = 0;
        for (int i = 0; i < l->n; i++) {
            struct linger_socket *s = &l->socks[i];
            bool keep = true;
            if (i < n && pfd[i + 1].revents != 0)
                keep = drain(s, now);
            if (keep && expired(s, now))
                keep = false;
            if (keep)
                l->socks[kept++] = *s;
            else
                close(s->fd);
        }
        l->n = kept;
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* Wake the thread from its poll: stop is set. */
static void nudge(void *arg)
{
    struct linger_pool *l = arg;
    ssize_t w = write(l->wake[1], "", 1);
    (void)w; /* a full pipe already holds a wake-up */
}

int linger_start(struct linger_pool *l, char *err, size_t err_len)
{
    memset(l, 0, sizeof *l);
    l->wake[0] = l->wake[1] = -1;
    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, err_len, "cannot create the lingering-close pipe: %s", strerror(errno));
        return -1;
    }
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        snprintf(err, err_len, "cannot create the lingering-close lock");
        goto err;
    }
    if (service_start(&l->svc, &l->lock, NULL, nudge, linger_main, l, "lingering-close", err,
                      err_len) != 0) {
        pthread_mutex_destroy(&l->lock);
        goto err;
    }
    return 0;
err:
    close(l->wake[0]);
    close(l->wake[1]);
    l->wake[0] = l->wake[1] = -1;
    return -1;
}

void linger_add(struct linger_pool *l, int fd)
{
    if (fd < 0)
        return;
    bool taken = false;
    if (l->svc.running) {
        pthread_mutex_lock(&l->lock);
        if (!l->svc.stop && l->n < LINGER_MAX_SOCKETS) {
            uint64_t now = clock_now_ns();
            l->socks[l->n++] = (struct linger_socket){fd, now, now, 0};
            taken = true;
        }
        pthread_mutex_unlock(&l->lock);
    }
    if (!taken) {
        close(fd);
        return;
    }
    nudge(l);
}

void linger_stop(struct linger_pool *l)
{
    if (!l->svc.running)
        return;
    service_stop(&l->svc);
    for (int i = 0; i < l->n; i++)
        close(l->socks[i].fd);
    l->n = 0;
    pthread_mutex_destroy(&l->lock);
    close(l->wake[0]);
    close(l->wake[1]);
}
