/* SPDX-License-Identifier: Apache-2.0 */
/* queue_ready.c -- a queue member's ready count from its per-partition
 * figures (queue_ready.h; architecture §12 "basic.get-ok's message_count").
 * Owns nothing: pure arithmetic. */
#include "queue_ready.h"

uint64_t queue_ready_unread(const struct queue_ready_partition *partition)
{
    if (partition->end < 0 || partition->fetched < 0)
        return 0;
    int64_t from = partition->fetched;
    if (partition->position > from)
        from = partition->position;
    if (partition->purge_floor > from)
        from = partition->purge_floor;
    return partition->end > from ? (uint64_t)(partition->end - from) : 0;
}

uint64_t queue_ready_total(uint64_t available, uint64_t unread, int64_t max_length)
{
    uint64_t total = available + unread;
    if (total < available) /* cannot happen with offsets, but never wrap */
        total = UINT64_MAX;
    if (max_length >= 0 && total > (uint64_t)max_length)
        total = (uint64_t)max_length;
    return total;
}
