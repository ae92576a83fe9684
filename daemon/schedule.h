/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.h -- scheduled delivery's pure parts (architecture §13,
 * docs/redelivery.md "Scheduled delivery"): reading a client's delay or due
 * time, the delay topic's name, the scheduler's min-heap of held records by
 * due time, and a partition's window of offsets not yet forwarded (whose
 * lowest is the offset to commit). No I/O, no clock: callers pass `now`.
 * The Kafka side (the delay topic's consumer group, the timer, the
 * forwards) is daemon/scheduler.c. */
#ifndef KBRIDGE_SCHEDULE_H
#define KBRIDGE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

/* A decimal integer of `len` bytes (an optional sign, then 1-19 digits, no
 * spaces), as ActiveMQ's Long.parseLong reads AMQ_SCHEDULED_DELAY: 0 and
 * *value, or -1 when it is not one or does not fit in 63 bits. */
int schedule_parse_integer(const char *text, size_t len, int64_t *value);

/* The due time of a message sent at now_ms with a relative delay: 0 (send
 * now) for a delay <= 0, else now_ms + delay_ms (at most INT64_MAX). */
uint64_t schedule_due_after(int64_t delay_ms, uint64_t now_ms);

/* The due time of an absolute delivery time (epoch ms): 0 (send now) when
 * it is not after now_ms, else the time itself. */
uint64_t schedule_due_at(int64_t at_ms, uint64_t now_ms);

/* The Kafka topic of scheduled messages: kafka.topic_prefix +
 * scheduler.topic. 0, or -1 when it does not fit in `size`. */
int schedule_topic(const struct config *config, char *out, size_t size);

/* ---- the heap of held records ---- */

struct schedule_entry {
    uint64_t due; /* epoch ms */
    uint64_t seq; /* ties: the older first */
    void *item;   /* the caller's */
};

/* A binary min-heap of entries by (due, seq). Zero-initialised is empty. */
struct schedule_heap {
    struct schedule_entry *entries;
    size_t count;
    size_t cap;
    uint64_t next_seq;
};

/* Add `item` due at `due`. 0, or -1 out of memory (nothing added). */
int schedule_heap_push(struct schedule_heap *heap, uint64_t due, void *item);
/* The earliest entry, or NULL when empty. Valid until the next change. */
const struct schedule_entry *schedule_heap_peek(const struct schedule_heap *heap);
/* Remove the earliest entry and return its item (NULL when empty). */
void *schedule_heap_pop(struct schedule_heap *heap);
/* Remove every entry whose item `drop(item, arg)` says true for (drop may
 * free the item); returns how many went. */
size_t schedule_heap_remove_if(struct schedule_heap *heap, bool (*drop)(void *item, void *arg),
                               void *arg);
/* Free the heap's array (not the items). */
void schedule_heap_free(struct schedule_heap *heap);

/* ---- a partition's offsets not yet forwarded ---- */

/* The offsets a partition's scheduler has fetched and not yet seen
 * forwarded and confirmed, in fetch (ascending) order. Zero-initialised is
 * empty. */
struct schedule_window {
    int64_t *offsets; /* ring of `cap` slots: pending offsets, ascending */
    bool *done;
    size_t head;
    size_t count;
    size_t cap;
    int64_t next; /* the offset after the last one added; 0 before the first */
};

/* Track `offset` (greater than every offset added before). 0, or -1 out of
 * memory. */
int schedule_window_add(struct schedule_window *window, int64_t offset);
/* `offset` was forwarded and confirmed. True when it was tracked. */
bool schedule_window_done(struct schedule_window *window, int64_t offset);
/* The offset to commit: the lowest still pending, else `next` (-1 when
 * nothing was added). */
int64_t schedule_window_low(const struct schedule_window *window);
/* Forget everything (a revoked partition). */
void schedule_window_reset(struct schedule_window *window);
void schedule_window_free(struct schedule_window *window);

#endif
