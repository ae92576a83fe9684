/* SPDX-License-Identifier: Apache-2.0 */
/* clock.c -- monotonic and wall-clock milliseconds (see clock.h). */
#include "clock.h"

#include <time.h>

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t clock_monotonic_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

uint64_t clock_monotonic_coarse_ms(void) { return clock_ms(CLOCK_MONOTONIC_COARSE); }

uint64_t clock_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }
