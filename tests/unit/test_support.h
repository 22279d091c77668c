/* test_support.h - shared helpers for inferd's cmocka unit tests. */
#ifndef INFERD_TEST_SUPPORT_H
#define INFERD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "torch_shim.h"

/* For the fuzzers: abort (a crash libFuzzer reports) when an invariant
 * does not hold. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
