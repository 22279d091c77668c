/* service.c - a background thread's start and stop (see service.h). */
#include "service.h"

#include <stdio.h>

int service_start(struct service *s, pthread_mutex_t *lock, pthread_cond_t *wake,
                  void (*nudge)(void *arg), void *(*main)(void *arg), void *arg, const char *what,
                  char *err, size_t err_len)
{
    *s = (struct service){.lock = lock, .wake = wake, .nudge = nudge, .arg = arg};
    if (pthread_create(&s->thread, NULL, main, arg) != 0) {
        snprintf(err, err_len, "cannot start the %s thread", what);
        return -1;
    }
    s->running = true;
    return 0;
}

void service_stop(struct service *s)
{
    if (!s->running)
        return;
    pthread_mutex_lock(s->lock);
    s->stop = true;
    if (s->wake != NULL)
        pthread_cond_broadcast(s->wake);
    pthread_mutex_unlock(s->lock);
    if (s->nudge != NULL)
        s->nudge(s->arg);
    pthread_join(s->thread, NULL);
    s->running = false;
}
