/* test_support.h - shared helpers for inferd's cmocka unit tests. */
#ifndef INFERD_TEST_SUPPORT_H
#define INFERD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "torch_shim.h"

#endif
