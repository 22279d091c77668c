/* test_support.h - shared helpers for inferd's cmocka unit tests. */
#ifndef INFERD_TEST_SUPPORT_H
#define INFERD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "torch_shim.h"

static inline uint64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
