/* clock.h - monotonic time in nanoseconds, for deadlines and durations. */
#ifndef INFERD_CLOCK_H
#define INFERD_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Absolute CLOCK_MONOTONIC timespec for a time in ns (for cond waits). */
static inline struct timespec clock_timespec(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    return ts;
}

/* Initialise a condition variable whose timed waits take clock_timespec
 * (CLOCK_MONOTONIC) deadlines. Returns 0 or an errno value. */
static inline int clock_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

/* Wait on cond (made by clock_cond_init; lock held) until it is signalled
 * or clock_now_ns() reaches deadline_ns. A wakeup may be spurious or for
 * another waiter: callers re-check their condition in a loop. Returns 0
 * when woken, ETIMEDOUT once the deadline has passed (at once if it
 * already had), or another errno value from pthread_cond_timedwait. */
static inline int clock_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock,
                                        uint64_t deadline_ns)
{
    struct timespec until = clock_timespec(deadline_ns);
    return pthread_cond_timedwait(cond, lock, &until);
}

#endif
