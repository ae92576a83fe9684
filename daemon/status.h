/* SPDX-License-Identifier: Apache-2.0 */
/* status.h -- the cluster view through the status topic (architecture §9
 * "Cluster view", DESIGN §9; operations.md "The status topic"): every node
 * writes its own record (status_record.h) to `status.topic` every
 * `status.interval` and a tombstone when it drains, and reads every node's
 * record from the beginning (all partitions, no group) into a view the
 * admin API merges with this node's live state. No node-to-node protocol:
 * Kafka is the only link (DESIGN §1).
 *
 * Not part of readiness: a node whose status reader cannot start serves its
 * own view only (logged). Everything runs on the loop thread. Ownership: the
 * status owns its view, consumer and timers; it borrows the server. */
#ifndef KBRIDGE_STATUS_H
#define KBRIDGE_STATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct core_session_info;
struct event_base;
struct server;
struct status;
struct status_view;

/* Start writing and reading the status topic for `server` (borrowed; it
 * must outlive the status). NULL with err out of memory. */
struct status *status_new(struct event_base *base, struct server *server, char *err,
                          size_t err_size);
/* The node is draining: stop writing records and write the tombstone (the
 * drain waits for Kafka to confirm it with every other record). */
void status_drain(struct status *status);
/* Stop reading and free. NULL is fine. */
void status_free(struct status *status);

/* This node's record as of now, built live (what the next write would say;
 * its connections list is never truncated). Caller owns; NULL out of memory. */
json_t *status_local(struct status *status);
/* The other nodes' latest records (this node's own is left out: see
 * status_local). Owned by the status. */
const struct status_view *status_view_of(const struct status *status);
/* The expiry in force (status.expiry, or 3 x status.interval). */
uint64_t status_expiry_ms(const struct status *status);
/* The topic, and whether the reader is reading it (its lookup answered and
 * its partitions are assigned; until then the view is empty). */
const char *status_topic(const struct status *status);
bool status_reading(const struct status *status);

/* Wall clock, ms since the epoch: the view's time. */
int64_t status_now_ms(void);

/* Connection `info` of node `node` as /api/connections shows it (name
 * "NODE-ID"). Caller owns; NULL out of memory. */
json_t *status_connection_json(const char *node, const struct core_session_info *info);

#endif
