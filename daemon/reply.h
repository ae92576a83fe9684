/* reply.h -- names for request-reply (DESIGN §7): the unguessable tokens of
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

#define REPLY_RANDOM_HEX 32 /* 128 bits */
#define REPLY_NODE_MAX 160  /* node part of a token, after sanitising */
#define REPLY_TOKEN_MAX (REPLY_NODE_MAX + 1 + REPLY_RANDOM_HEX)
#define REPLY_TOPIC_BASE "kbridge.reply."
#define REPLY_TOKEN_HEADER "kbridge-reply-token" /* internal: stripped before delivery */

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
