/* SPDX-License-Identifier: Apache-2.0 */
/* queue_ready.h -- how many messages of a queue are ready on this node's
 * member of its consumer group (architecture §12 "basic.get-ok's
 * message_count"), with no I/O: the arithmetic queue.c applies to the
 * figures it keeps per partition and to librdkafka's cached end offsets.
 *
 * Ready, as RabbitMQ counts it: neither delivered and waiting for its
 * outcome (unacked) nor settled. On a partition this member holds that is
 * every offset from where the queue goes on reading (after the last record
 * it was handed, past control records the consumer skipped, and past a
 * purge's end) up to the partition's end as the last fetch response saw it,
 * plus the records fetched and still available in the queue's buffer
 * (queue_state's available count, released ones included). */
#ifndef KBRIDGE_QUEUE_READY_H
#define KBRIDGE_QUEUE_READY_H

#include <stdint.h>

/* One partition of the member, as queue.c knows it. -1 in any field: not known. */
struct queue_ready_partition {
    int64_t end;         /* end offset (high watermark; the last stable offset under
                            read_committed) as the consumer's last fetch saw it */
    int64_t fetched;     /* after the last record the queue was handed since assignment */
    int64_t position;    /* the consumer's position: after what it handed out, past
                            control records (transaction markers) */
    int64_t purge_floor; /* the queue's last purge's end offset on this partition */
};

/* Offsets of the partition the queue has not read yet and will hand out:
 * end - max(fetched, position, purge_floor), 0 when that is negative. 0
 * when the end or `fetched` is unknown: with nothing read since assignment
 * where reading starts is not known without asking Kafka (the position may
 * still be a previous assignment's; it moves with the first record read). */
uint64_t queue_ready_unread(const struct queue_ready_partition *partition);

/* The member's ready count: `available` (fetched, waiting for a consumer)
 * plus `unread` (queue_ready_unread summed over its partitions), at most
 * `max_length` when it is >= 0 (x-max-length drop-head: records beyond it
 * are dropped as they reach the head). */
uint64_t queue_ready_total(uint64_t available, uint64_t unread, int64_t max_length);

#endif
