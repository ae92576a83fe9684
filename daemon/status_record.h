/* SPDX-License-Identifier: Apache-2.0 */
/* status_record.h -- the records of the status topic and the view a node
 * builds from them (architecture §9 "Cluster view", operations.md "The
 * status topic"). Pure: no I/O, no clock (callers pass times), unit-tested.
 *
 * A record is keyed by its node id; its value is one JSON object:
 *   {"v": 1, "node", "version", "started_at", "updated_at" (ms since the
 *    epoch), "interval_ms", "listeners": [{protocol, ip_address, port}],
 *    "connections": [objects shaped as /api/connections'],
 *    "connections_total", "connections_listed", "connections_truncated",
 *    "consumers_total", "queues": [{name, vhost, consumers, in_flight,
 *    exclusive}] (vhost absent: "/"; exclusive absent: false, as records
 *    written before these fields say),
 *    "totals": {publish, deliver, ack}, "rates": {publish, deliver, ack}}
 * A null value (tombstone) is a node that stopped cleanly.
 *
 * Ownership: records are jansson objects; functions say what they take. The
 * view owns its copies of the records it keeps. */
#ifndef KBRIDGE_STATUS_RECORD_H
#define KBRIDGE_STATUS_RECORD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATUS_RECORD_VERSION 1

/* A new record of node `node` with empty lists and zero counts. NULL out of
 * memory. The caller owns it. */
json_t *status_record_new(const char *node, const char *version, int64_t started_at_ms,
                          int64_t updated_at_ms, uint64_t interval_ms);
/* Count connection `connection` (taken, even on failure) in the record and
 * list it while fewer than `max_listed` are listed; past that it is only
 * counted and "connections_truncated" becomes true. Its "kbridge.subscriptions"
 * adds to "consumers_total". 0, or -1 out of memory. */
int status_record_add_connection(json_t *record, json_t *connection, size_t max_listed);
/* Add queue `name` of `vhost` (NULL: none written, read as "/"): its
 * consumers and in-flight messages on this node and whether one of them is
 * an exclusive consumer (architecture §12). 0 or -1. */
int status_record_add_queue(json_t *record, const char *vhost, const char *name, size_t consumers,
                            size_t in_flight, bool exclusive);
/* Add to *consumers the consumers `record` lists for queue `name` of
 * `vhost`, and set *exclusive when one of its entries says "exclusive"
 * (records older than the field say nothing: false; an entry without
 * "vhost" is of vhost "/"). */
void status_record_queue(const json_t *record, const char *vhost, const char *name,
                         size_t *consumers, bool *exclusive);
/* Set the message counters (since start) and their rates per second. 0 or -1. */
int status_record_set_messages(json_t *record, const uint64_t totals[3], const double rates[3]);

/* Messages per second between two readings of a counter `elapsed_ms` apart
 * (0 when no time passed or the counter went back). */
double status_rate(uint64_t before, uint64_t after, int64_t elapsed_ms);

/* The record as compact JSON text (malloc'd, caller frees), NULL out of memory. */
char *status_record_encode(const json_t *record);
/* Read a record: value must be a JSON object of a known shape whose "node"
 * is the key. The object (caller owns), or NULL with the reason in err. */
json_t *status_record_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                             char *err, size_t err_size);

/* ---- the view: the latest record of every node -------------------------------- */

struct status_view;

/* An empty view; NULL out of memory. */
struct status_view *status_view_new(void);
void status_view_free(struct status_view *view);

/* Apply a record read from the topic: a tombstone (value NULL) forgets the
 * node; anything else is decoded and kept as the node's latest, heard at
 * `now_ms` (the reader's clock). A `backlog` record (in the topic before the
 * reader started) counts as heard at its own updated_at, never later than
 * now_ms: a node killed long ago is not fresh for a reader starting now.
 * 0 kept, 1 forgotten, -1 unreadable (reason in err; the view is unchanged). */
int status_view_apply(struct status_view *view, const void *key, size_t key_len, const void *value,
                      size_t value_len, int64_t now_ms, bool backlog, char *err, size_t err_size);

/* Forget the nodes not heard of for more than 2 x `expiry_ms` at `now_ms`
 * (a node killed without a tombstone). How many were forgotten. */
size_t status_view_expire(struct status_view *view, int64_t now_ms, uint64_t expiry_ms);

/* One node of the view, in name order: `stale` when it was not heard of for
 * more than `expiry_ms`. Return false to stop. */
typedef bool status_node_fn(void *opaque, const json_t *record, bool stale, int64_t age_ms);
void status_view_each(const struct status_view *view, int64_t now_ms, uint64_t expiry_ms,
                      status_node_fn *fn, void *opaque);
/* Consumers of queue `name` of `vhost` over the view's live nodes (heard of
 * within `expiry_ms` of `now_ms`; stale ones are left out), and whether one
 * of them has an exclusive consumer of it (status_record_queue). */
void status_view_queue(const struct status_view *view, int64_t now_ms, uint64_t expiry_ms,
                       const char *vhost, const char *name, size_t *consumers, bool *exclusive);
/* Nodes in the view (fresh and stale). */
size_t status_view_count(const struct status_view *view);

#endif
