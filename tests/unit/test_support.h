/* test_support.h - what the C unit tests (tests/unit) and the fuzzers
 * (tests/fuzz) share: CHECK, an assertion that aborts. */
#ifndef INFERD_TEST_SUPPORT_H
#define INFERD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "torch_shim.h"

/* Abort (a crash libFuzzer reports, a failure cmocka reports) when an
 * invariant does not hold. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
