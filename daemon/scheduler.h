/* SPDX-License-Identifier: Apache-2.0 */
/* scheduler.h -- the node's scheduler of scheduled delivery (architecture
 * §13, docs/redelivery.md "Scheduled delivery"): a member of
 * scheduler.group reading the delay topic (kafka.topic_prefix +
 * scheduler.topic), holding its records in memory by due time (at most
 * scheduler.max_held, then its partitions pause until half are gone) and
 * forwarding each, when due, to the topic its kbridge-deliver-to header
 * names (same key, value and headers, minus kbridge-deliver-at/-to). Per
 * partition it stores the lowest offset not yet forwarded and confirmed,
 * so a restart or a rebalance goes on from there (at-least-once). A failed
 * forward is retried with a back-off, never dropped. Started by server.c
 * unless scheduler.enabled is false; no readiness of its own. */
#ifndef KBRIDGE_SCHEDULER_H
#define KBRIDGE_SCHEDULER_H

#include <stddef.h>

struct config;
struct event_base;
struct kafka;
struct metrics;
struct scheduler;

/* Start the scheduler: ensure the delay topic exists (created with
 * scheduler.partitions partitions where the broker allows CreateTopics;
 * retried every second while Kafka cannot answer), then join the group.
 * `config` must outlive it (its scheduler.* keys need a restart). NULL
 * with err filled when out of memory or the topic name is too long.
 * Caller owns the result (scheduler_free). */
struct scheduler *scheduler_new(struct event_base *base, const struct config *config,
                                struct kafka *kafka, struct metrics *metrics, char *err,
                                size_t err_size);

/* Records held (waiting or being forwarded). */
size_t scheduler_held(const struct scheduler *scheduler);

/* Leave the group (committing the stored offsets: what was forwarded and
 * confirmed) and free everything held; records not forwarded stay in the
 * delay topic for the next owner. Before kafka_free. NULL is fine. */
void scheduler_free(struct scheduler *scheduler);

#endif
