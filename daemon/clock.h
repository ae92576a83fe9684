/* SPDX-License-Identifier: Apache-2.0 */
/* clock.h -- the two clocks kbridge reads: monotonic milliseconds for
 * timeouts and intervals, wall-clock epoch milliseconds for what goes into
 * records (expires, dead-letter times, request ages). */
#ifndef KBRIDGE_CLOCK_H
#define KBRIDGE_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC (never jumps; for deadlines). */
uint64_t clock_monotonic_ms(void);
/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t clock_wall_ms(void);

#endif
