/* service.h - the start and stop of a background thread that waits for
 * work or for its stop, shared by the queue watcher, the connection guard's
 * reaper, the lingerer and the registry's manager: the thread runs until
 * stop (read under the owner's lock) turns true; stopping sets it, wakes
 * the thread (the owner's condition variable, or its own nudge) and joins
 * it. */
#ifndef INFERD_SERVICE_H
#define INFERD_SERVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct service {
    pthread_mutex_t *lock;    /* the owner's: guards stop */
    pthread_cond_t *wake;     /* the owner's, broadcast on stop (NULL: none) */
    void (*nudge)(void *arg); /* run after stop is set, without the lock (NULL: none) */
    void *arg;                /* the thread's argument, and nudge's */
    pthread_t thread;
    bool stop;    /* read under *lock */
    bool running; /* between a successful service_start and service_stop */
};

/* Start main(arg) on a new thread with the owner's lock and condition
 * variable (wake may be NULL when nudge wakes the thread). Returns 0, or -1
 * with err saying "cannot start the <what> thread". */
int service_start(struct service *s, pthread_mutex_t *lock, pthread_cond_t *wake,
                  void (*nudge)(void *arg), void *(*main)(void *arg), void *arg, const char *what,
                  char *err, size_t err_len);

/* Set stop under the lock, wake the thread and join it. A no-op when it
 * is not running. */
void service_stop(struct service *s);

#endif
