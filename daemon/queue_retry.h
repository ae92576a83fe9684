/* SPDX-License-Identifier: Apache-2.0 */
/* queue_retry.h -- the plan of a queue's delayed redelivery (architecture
 * §13 "Delayed redelivery", docs/redelivery.md), with no I/O: how long the
 * Nth redelivery waits (queues.redelivery_delay: initial, multiplier, max,
 * ActiveMQ's RedeliveryPolicy) and which retry topic holds it
 * (queues.retry_topic), one topic per distinct delay so that records in a
 * retry topic's partition fall due in the order they were written. queue.c
 * produces released records there and reads them back with the queue's group. */
#ifndef KBRIDGE_QUEUE_RETRY_H
#define KBRIDGE_QUEUE_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_RETRY_LEVELS_MAX 32

struct queue_retry_plan {
    size_t level_count; /* 0: no delays, released records are redelivered at once */
    uint64_t delay_ms[QUEUE_RETRY_LEVELS_MAX];
    char *topics[QUEUE_RETRY_LEVELS_MAX]; /* Kafka topic of each level, owned */
};

/* Fill `plan` for queue `name`: level n (from 1) waits initial_ms *
 * multiplier^(n-1), at most max_ms; levels stop at the first that reaches
 * max_ms, at a multiplier of 1, at max_deliveries - 1 (no redelivery after
 * the last allowed delivery) or at QUEUE_RETRY_LEVELS_MAX. Topic names are
 * `prefix` + `pattern` with {name}, {n}, {index} (n - 1) and {delay} (ms)
 * replaced. initial_ms 0 gives an empty plan. 0, or -1 out of memory (the
 * plan is left empty). Free with queue_retry_plan_clear. */
int queue_retry_plan_init(struct queue_retry_plan *plan, const char *prefix, const char *pattern,
                          const char *name, uint64_t initial_ms, double multiplier, uint64_t max_ms,
                          uint32_t max_deliveries);
/* Free the plan's topic names and empty it. */
void queue_retry_plan_clear(struct queue_retry_plan *plan);
/* The level (0-based) a record released after its delivery_count-th
 * delivery goes to; only for a plan with levels. */
size_t queue_retry_level(const struct queue_retry_plan *plan, uint32_t delivery_count);
/* Is `topic` one of the plan's retry topics? */
bool queue_retry_is_topic(const struct queue_retry_plan *plan, const char *topic);
/* Parse a header's decimal digits (kbridge-deliver-at, kbridge-delivery-count):
 * 0 and *out, or -1 when empty, not all digits or above UINT64_MAX. */
int queue_retry_parse_decimal(const void *value, size_t len, uint64_t *out);

#endif
