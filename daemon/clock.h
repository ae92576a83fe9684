/* SPDX-License-Identifier: Apache-2.0 */
/* clock.h -- the clocks kbridge reads: monotonic milliseconds for
 * timeouts and intervals (precise, or coarse for per-frame bookkeeping), wall-clock epoch
 * milliseconds for what goes into records (expires, dead-letter times, request ages). */
#ifndef KBRIDGE_CLOCK_H
#define KBRIDGE_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC (never jumps; for deadlines). */
uint64_t clock_monotonic_ms(void);
/* The same clock as the kernel last ticked it (CLOCK_MONOTONIC_COARSE: a
 * few ms behind at most, much cheaper to read): for bookkeeping done per
 * frame, such as a connection's last traffic for its heart-beats. Compare
 * its values only with each other. */
uint64_t clock_monotonic_coarse_ms(void);
/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t clock_wall_ms(void);

#endif
