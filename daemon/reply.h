/* SPDX-License-Identifier: Apache-2.0 */
/* reply.h -- names for request-reply (architecture §7): the unguessable tokens of
 * temporary queues and the per-node reply topics they route through. Pure
 * functions apart from the random source: no I/O, no allocation.
 *
 * A token is "NODE.HEX": the node's name (made a legal topic-name word) and
 * 128 random bits as 32 lowercase hex digits, so a reply address
 * "/reply-queue/TOKEN" names the node whose reply topic
 * "kbridge.reply.NODE" carries the reply, and nobody can guess one. */
#ifndef KBRIDGE_REPLY_H
#define KBRIDGE_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define REPLY_RANDOM_HEX 32 /* 128 bits */
#define REPLY_NODE_MAX 160  /* node part of a token, after sanitising */
#define REPLY_TOKEN_MAX (REPLY_NODE_MAX + 1 + REPLY_RANDOM_HEX)
#define REPLY_TOPIC_BASE "kbridge.reply."
/* The routing header names are record.h's RECORD_REPLY_PREFIX and
 * RECORD_REPLY_TOKEN (the record contract, architecture §3). */

/* The node id as a topic-name word: characters outside [A-Za-z0-9_-] become
 * '_', at most REPLY_NODE_MAX characters ("" becomes "node"). 0, or -1 when
 * out is too small. */
int reply_node_word(const char *node_id, char *out, size_t out_size);
/* The reply topic of a node ("kbridge.reply.NODE", no prefix). 0 or -1. */
int reply_topic_name(const char *node_id, char *out, size_t out_size);
/* A fresh token for node_id from the kernel's random source. 0, or -1 with
 * errno set (no randomness, or out too small). */
int reply_token_new(const char *node_id, char *out, size_t out_size);
/* Check a token's shape and write its node word. 0, or -1 when it is not
 * "WORD.32-hex-digits". */
int reply_token_node(const char *token, char *node, size_t node_size);

#endif

/* ---- outstanding requests ------------------------------------------------------------
 * What a node remembers of each request it sent with a reply address: the
 * client's correlation-id, so that a reply from a native responder that
 * copies only kafka_correlationId back still carries the correlation-id the
 * requester expects. Bounded (the oldest is forgotten first) and expiring. */
#define REPLY_REQUEST_ID_LEN 32 /* hex digits of the request id */

struct reply_requests;

/* A table of at most `max` requests remembered for `ttl_ms`. NULL when out of memory. */
struct reply_requests *reply_requests_new(size_t max, uint64_t ttl_ms);
/* Free; NULL is fine. */
void reply_requests_free(struct reply_requests *requests);
/* Remember request `id` (REPLY_REQUEST_ID_LEN hex digits) with the client's
 * correlation-id (copied; may be empty). 0, or -1 when out of memory. */
int reply_requests_put(struct reply_requests *requests, const char *id, const char *correlation_id,
                       size_t correlation_id_len, uint64_t now_ms);
/* The correlation-id remembered for request `id` and when it was sent, or
 * NULL when unknown or expired. The pointer is valid until the next put. */
const char *reply_requests_find(struct reply_requests *requests, const char *id, uint64_t now_ms,
                                size_t *correlation_id_len, uint64_t *sent_ms);
/* Apply new bounds (a config reload); the oldest go at once when over. */
void reply_requests_configure(struct reply_requests *requests, size_t max, uint64_t ttl_ms);
/* Requests remembered now. */
size_t reply_requests_count(const struct reply_requests *requests);
