/* SPDX-License-Identifier: Apache-2.0 */
/* request_reply.h -- request-reply in the core (architecture §7): the state
 * a node keeps for it and every decision about it, so that neither the
 * publish path nor the engines know how replies are routed.
 *
 *   publish of a request (reply-to /reply-queue/TOKEN): request_reply_request
 *     adds kafka_replyTopic and kafka_correlationId "TOKEN:REQUEST" for native
 *     responders and remembers the client's correlation-id under REQUEST;
 *   publish of a reply (to /reply-queue/TOKEN): request_reply_reply_topic
 *     names the owning node's reply topic; the core adds kbridge-reply-token;
 *   a record on this node's reply topic: request_reply_token reads its token,
 *     request_reply_temp_queue finds the temporary queue (O(1)), and
 *     request_reply_count counts it routed or dropped;
 *   a delivery: request_reply_complete_reply / _complete_request add the
 *     correlation-id and reply-to a bridge client expects.
 *
 * Names (tokens, reply topics) are reply.h's; header names are record.h's.
 * Loop thread only. */
#ifndef KBRIDGE_REQUEST_REPLY_H
#define KBRIDGE_REQUEST_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"

struct config;
struct core_delivery;
struct core_message;
struct kafka_record;
struct metrics;
struct metrics_histogram;
struct reply_requests;

/* A temporary queue as request_reply_temp_queue finds it: embedded in the
 * engine's subscriber state, which owns the token string. */
struct request_reply_temp_queue {
    const char *token;
    struct request_reply_temp_queue *same_key; /* next whose token has the same map key */
};

struct request_reply;

/* The node's request-reply state; metric series registered in `metrics`,
 * bounds read from *config (replies.*). NULL with err on failure. */
struct request_reply *request_reply_new(struct config *const *config, struct metrics *metrics,
                                        char *err, size_t err_size);
/* Free; NULL is fine. Temporary queues must have been removed. */
void request_reply_free(struct request_reply *rr);
/* Apply reloaded bounds (replies.max_outstanding, replies.remember). */
void request_reply_reconfigure(struct request_reply *rr);

/* ---- publishing ---- */

/* Is the Kafka topic (prefix included or not) one of kbridge's reply topics? */
bool request_reply_topic_is_reserved(const struct request_reply *rr, const char *topic);
/* The reply topic (no prefix) of the node that owns reply token `token`. 0,
 * or -1 when it is not a token kbridge made. */
int request_reply_reply_topic(const char *token, char *name, size_t name_size);
/* Does reply token `token` name a temporary queue of this node (its node
 * word is this node's)? Such a reply may be delivered in memory
 * (replies.local). */
bool request_reply_token_is_local(const struct request_reply *rr, const char *token);
/* If the message's reply-to is a reply address (/reply-queue/TOKEN): write
 * the full reply topic and a kafka_correlationId "TOKEN:REQUEST", remember
 * REQUEST with the client's correlation-id and return true. */
bool request_reply_request(struct request_reply *rr, const struct core_message *message,
                           char *reply_topic, size_t reply_topic_size, char *correlation,
                           size_t correlation_size);

/* ---- temporary queues ---- */

/* Register a temporary queue by its token (temp->token set). 0, or -1 when
 * out of memory. */
int request_reply_temp_queue_add(struct request_reply *rr, struct request_reply_temp_queue *temp);
/* Unregister it. */
void request_reply_temp_queue_remove(struct request_reply *rr,
                                     struct request_reply_temp_queue *temp);
/* The temporary queue of token[0..length), or NULL. O(1). */
struct request_reply_temp_queue *request_reply_temp_queue(const struct request_reply *rr,
                                                          const char *token, size_t length);
/* Temporary queues registered now. */
size_t request_reply_temp_queue_count(const struct request_reply *rr);

/* ---- records of the reply topic and deliveries ---- */

/* The token a reply record is routed to: header kbridge-reply-token, or the
 * TOKEN of a kafka_correlationId "TOKEN:REQUEST" copied back by a native
 * responder (pointing into the record, *length bytes), or NULL. */
const char *request_reply_token(const struct kafka_record *record, size_t *length);
/* A record read from this node's reply topic: count it routed or dropped
 * (and time its round trip when its request is remembered). */
void request_reply_count(struct request_reply *rr, const struct kafka_record *record, bool routed);
/* A reply that expired before its temporary queue could take it. */
void request_reply_count_expired(struct request_reply *rr);
/* A reply about to be delivered to a temporary queue: add the requester's
 * correlation-id when the record has none but names a remembered request.
 * The added value lives in rr until the next call. */
void request_reply_complete_reply(struct request_reply *rr, struct core_delivery *delivery);
/* A native request (kafka_replyTopic, no reply-to) about to be delivered:
 * add reply-to /queue/REPLYTOPIC and, when it has none, the correlation-id
 * from kafka_correlationId. Values live in rr until the next call. */
void request_reply_complete_request(struct request_reply *rr, struct core_delivery *delivery);

#endif
