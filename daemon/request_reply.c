/* SPDX-License-Identifier: Apache-2.0 */
/* request_reply.c -- request-reply's state and decisions (architecture §7,
 * request_reply.h): the outstanding-request table and its metrics, the
 * headers of requests and replies, and the temporary queues by token. */
#include "request_reply.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "u64_map.h"

struct request_reply {
    struct config *const *config;
    struct reply_requests *requests; /* outstanding requests (reply.h) */
    /* temporary queues: token key -> chain of request_reply_temp_queue */
    struct u64_map temp_queues;
    size_t temp_queue_count;
    uint64_t *requests_total; /* publishes with a /reply-queue/ reply-to */
    uint64_t *replies_routed;
    uint64_t *replies_dropped;         /* reason="unknown-token" */
    uint64_t *replies_dropped_expired; /* reason="expired" */
    struct metrics_histogram *reply_latency;
    char correlation_scratch[256]; /* correlation-id of the message being delivered */
    char reply_to_scratch[ADDRESS_NAME_MAX + 16];
};

#define REPLY_DROPPED_HELP                                                                         \
    "Replies read from this node's reply topic that reached nobody: the temporary queue is "       \
    "gone, or the token is unknown or forged."

struct request_reply *request_reply_new(struct config *const *config, struct metrics *metrics,
                                        char *err, size_t err_size)
{
    struct request_reply *rr = calloc(1, sizeof(*rr));
    if (!rr) {
        snprintf(err, err_size, "request-reply: out of memory");
        return NULL;
    }
    rr->config = config;
    rr->requests_total = metrics_counter(
        metrics, "kbridge_requests_total",
        "Messages published with a temporary queue as reply-to (request-reply requests).", NULL);
    rr->replies_routed = metrics_counter(metrics, "kbridge_replies_routed_total",
                                         "Replies read from this node's reply topic and "
                                         "delivered to a temporary queue.",
                                         NULL);
    char labels[64];
    metrics_label(labels, sizeof(labels), "reason", "unknown-token");
    rr->replies_dropped =
        metrics_counter(metrics, "kbridge_replies_dropped_total", REPLY_DROPPED_HELP, labels);
    metrics_label(labels, sizeof(labels), "reason", "expired");
    rr->replies_dropped_expired =
        metrics_counter(metrics, "kbridge_replies_dropped_total", REPLY_DROPPED_HELP, labels);
    static const double latency_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                            0.1,   0.25,  0.5,   1,    2.5,   10};
    rr->reply_latency = metrics_histogram(
        metrics, "kbridge_reply_latency_seconds",
        "Time from a request's publish to its reply arriving on this node's reply topic.", NULL,
        latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    rr->requests =
        reply_requests_new((*config)->replies.max_outstanding, (*config)->replies.remember_ms);
    if (!rr->requests_total || !rr->replies_routed || !rr->replies_dropped ||
        !rr->replies_dropped_expired || !rr->reply_latency || !rr->requests) {
        snprintf(err, err_size, "request-reply: out of memory");
        request_reply_free(rr);
        return NULL;
    }
    return rr;
}

void request_reply_free(struct request_reply *rr)
{
    if (!rr)
        return;
    reply_requests_free(rr->requests);
    u64_map_free(&rr->temp_queues);
    free(rr);
}

void request_reply_reconfigure(struct request_reply *rr)
{
    const struct config *config = *rr->config;
    reply_requests_configure(rr->requests, config->replies.max_outstanding,
                             config->replies.remember_ms);
}

/* ---- publishing ---------------------------------------------------------------------- */

bool request_reply_topic_is_reserved(const struct request_reply *rr, const char *topic)
{
    const char *prefix = (*rr->config)->kafka.topic_prefix;
    size_t prefix_len = strlen(prefix);
    if (strncmp(topic, prefix, prefix_len) == 0)
        topic += prefix_len;
    return strncmp(topic, REPLY_TOPIC_BASE, strlen(REPLY_TOPIC_BASE)) == 0;
}

int request_reply_reply_topic(const char *token, char *name, size_t name_size)
{
    char node[REPLY_NODE_MAX + 1];
    if (reply_token_node(token, node, sizeof(node)) < 0 ||
        reply_topic_name(node, name, name_size) < 0)
        return -1;
    return 0;
}

bool request_reply_token_is_local(const struct request_reply *rr, const char *token)
{
    char node[REPLY_NODE_MAX + 1], own[REPLY_NODE_MAX + 1];
    return reply_token_node(token, node, sizeof(node)) == 0 &&
           reply_node_word((*rr->config)->node_id, own, sizeof(own)) == 0 && strcmp(node, own) == 0;
}

static const struct core_property *request_reply_property(const struct core_message *message,
                                                          const char *name)
{
    for (size_t i = 0; i < message->property_count; i++)
        if (strcmp(message->properties[i].name, name) == 0)
            return &message->properties[i];
    return NULL;
}

/* The id of a request: derived from its token and correlation-id when it
 * has one (so that a bridge responder's reply, which carries both, finds
 * the request again), else random. */
static void request_reply_request_id(const char *token, const struct core_property *correlation,
                                     char out[REPLY_REQUEST_ID_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    bool derived = false;
    if (correlation && correlation->value_len > 0) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        derived = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(ctx, token, strlen(token)) == 1 &&
                  EVP_DigestUpdate(ctx, ":", 1) == 1 &&
                  EVP_DigestUpdate(ctx, correlation->value, correlation->value_len) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 &&
                  digest_len >= REPLY_REQUEST_ID_LEN / 2;
        EVP_MD_CTX_free(ctx);
    }
    if (!derived && RAND_bytes(digest, REPLY_REQUEST_ID_LEN / 2) != 1)
        for (size_t i = 0; i < REPLY_REQUEST_ID_LEN / 2; i++)
            digest[i] = (unsigned char)random();
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < REPLY_REQUEST_ID_LEN / 2; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[REPLY_REQUEST_ID_LEN] = '\0';
}

bool request_reply_request(struct request_reply *rr, const struct core_message *message,
                           char *reply_topic, size_t reply_topic_size, char *correlation,
                           size_t correlation_size)
{
    const struct core_property *reply_to = request_reply_property(message, RECORD_HEADER_REPLY_TO);
    static const char prefix[] = "/reply-queue/";
    if (!reply_to || reply_to->value_len <= sizeof(prefix) - 1 ||
        reply_to->value_len - (sizeof(prefix) - 1) > REPLY_TOKEN_MAX ||
        memcmp(reply_to->value, prefix, sizeof(prefix) - 1) != 0)
        return false;
    char token[REPLY_TOKEN_MAX + 1];
    size_t token_len = reply_to->value_len - (sizeof(prefix) - 1);
    memcpy(token, reply_to->value + sizeof(prefix) - 1, token_len);
    token[token_len] = '\0';
    char node[REPLY_NODE_MAX + 1], name[ADDRESS_NAME_MAX + 1];
    if (reply_token_node(token, node, sizeof(node)) < 0 ||
        reply_topic_name(node, name, sizeof(name)) < 0)
        return false;
    int n =
        snprintf(reply_topic, reply_topic_size, "%s%s", (*rr->config)->kafka.topic_prefix, name);
    if (n < 0 || (size_t)n >= reply_topic_size)
        return false;
    const struct core_property *client =
        request_reply_property(message, RECORD_HEADER_CORRELATION_ID);
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    request_reply_request_id(token, client, request_id);
    n = snprintf(correlation, correlation_size, "%s:%s", token, request_id);
    if (n < 0 || (size_t)n >= correlation_size)
        return false;
    if (reply_requests_put(rr->requests, request_id, client ? client->value : "",
                           client ? client->value_len : 0, clock_wall_ms()) < 0)
        log_warn("request-reply", "out of memory remembering a request; a native reply will lack "
                                  "its " RECORD_HEADER_CORRELATION_ID);
    (*rr->requests_total)++;
    return true;
}

/* ---- temporary queues ------------------------------------------------------------------ */

static uint64_t request_reply_token_key(const char *token, size_t length)
{
    return u64_map_string_key(token, length);
}

struct request_reply_temp_queue *request_reply_temp_queue(const struct request_reply *rr,
                                                          const char *token, size_t length)
{
    for (struct request_reply_temp_queue *temp =
             u64_map_get(&rr->temp_queues, request_reply_token_key(token, length));
         temp; temp = temp->same_key)
        if (strlen(temp->token) == length && memcmp(temp->token, token, length) == 0)
            return temp;
    return NULL;
}

int request_reply_temp_queue_add(struct request_reply *rr, struct request_reply_temp_queue *temp)
{
    uint64_t key = request_reply_token_key(temp->token, strlen(temp->token));
    struct request_reply_temp_queue *first = u64_map_get(&rr->temp_queues, key);
    if (first) { /* another token with the same key: chain behind it */
        temp->same_key = first->same_key;
        first->same_key = temp;
    } else {
        if (u64_map_reserve(&rr->temp_queues) != 0)
            return -1;
        temp->same_key = NULL;
        u64_map_put(&rr->temp_queues, key, temp);
    }
    rr->temp_queue_count++;
    return 0;
}

void request_reply_temp_queue_remove(struct request_reply *rr,
                                     struct request_reply_temp_queue *temp)
{
    uint64_t key = request_reply_token_key(temp->token, strlen(temp->token));
    struct request_reply_temp_queue *first = u64_map_get(&rr->temp_queues, key);
    if (first == temp) {
        u64_map_remove(&rr->temp_queues, key);
        if (temp->same_key && u64_map_reserve(&rr->temp_queues) == 0)
            u64_map_put(&rr->temp_queues, key, temp->same_key);
    } else {
        for (struct request_reply_temp_queue *at = first; at; at = at->same_key)
            if (at->same_key == temp) {
                at->same_key = temp->same_key;
                break;
            }
    }
    temp->same_key = NULL;
    rr->temp_queue_count--;
}

size_t request_reply_temp_queue_count(const struct request_reply *rr)
{
    return rr->temp_queue_count;
}

/* ---- records of the reply topic and deliveries ---------------------------------------- */

const char *request_reply_token(const struct kafka_record *record, size_t *length)
{
    size_t value_len;
    const char *value = record_header_find(record, RECORD_REPLY_TOKEN, &value_len);
    if (value) {
        *length = value_len;
        return value;
    }
    value = record_header_find(record, RECORD_NATIVE_CORRELATION, &value_len);
    const char *colon = value ? memchr(value, ':', value_len) : NULL;
    if (!colon || colon == value)
        return NULL;
    *length = (size_t)(colon - value);
    return value;
}

void request_reply_count_expired(struct request_reply *rr) { (*rr->replies_dropped_expired)++; }

/* When was the request this reply answers sent? By the request id in a
 * kafka_correlationId "TOKEN:REQUEST", else by token and correlation-id. */
static bool request_reply_sent(struct request_reply *rr, const struct kafka_record *record,
                               uint64_t now, uint64_t *sent_ms)
{
    size_t len, correlation_len;
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    const char *value = record_header_find(record, RECORD_NATIVE_CORRELATION, &len);
    const char *colon = value ? memchr(value, ':', len) : NULL;
    if (colon && (size_t)(value + len - colon - 1) == REPLY_REQUEST_ID_LEN) {
        memcpy(request_id, colon + 1, REPLY_REQUEST_ID_LEN);
        request_id[REPLY_REQUEST_ID_LEN] = '\0';
        if (reply_requests_find(rr->requests, request_id, now, &correlation_len, sent_ms))
            return true;
    }
    const char *token = record_header_find(record, RECORD_REPLY_TOKEN, &len);
    struct core_property correlation = {RECORD_HEADER_CORRELATION_ID, NULL, 0};
    correlation.value =
        record_header_find(record, RECORD_HEADER_CORRELATION_ID, &correlation.value_len);
    char token_text[REPLY_TOKEN_MAX + 1];
    if (!token || len > REPLY_TOKEN_MAX || !correlation.value || correlation.value_len == 0)
        return false;
    memcpy(token_text, token, len);
    token_text[len] = '\0';
    request_reply_request_id(token_text, &correlation, request_id);
    return reply_requests_find(rr->requests, request_id, now, &correlation_len, sent_ms) != NULL;
}

void request_reply_count(struct request_reply *rr, const struct kafka_record *record, bool routed)
{
    if (!routed) {
        (*rr->replies_dropped)++;
        return;
    }
    (*rr->replies_routed)++;
    uint64_t now = clock_wall_ms(), sent = 0;
    if (request_reply_sent(rr, record, now, &sent) && now >= sent)
        metrics_histogram_observe(rr->reply_latency, (double)(now - sent) / 1000.0);
}

void request_reply_complete_reply(struct request_reply *rr, struct core_delivery *delivery)
{
    size_t len;
    if (record_header_find(delivery->record, RECORD_HEADER_CORRELATION_ID, &len))
        return; /* the responder kept it */
    const char *value = record_header_find(delivery->record, RECORD_NATIVE_CORRELATION, &len);
    const char *colon = value ? memchr(value, ':', len) : NULL;
    if (!colon || (size_t)(value + len - colon - 1) != REPLY_REQUEST_ID_LEN)
        return;
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    memcpy(request_id, colon + 1, REPLY_REQUEST_ID_LEN);
    request_id[REPLY_REQUEST_ID_LEN] = '\0';
    size_t correlation_len = 0;
    const char *correlation =
        reply_requests_find(rr->requests, request_id, clock_wall_ms(), &correlation_len, NULL);
    if (!correlation || correlation_len == 0 || correlation_len >= sizeof(rr->correlation_scratch))
        return;
    memcpy(rr->correlation_scratch, correlation, correlation_len);
    delivery->extra[delivery->extra_count++] = (struct core_property){
        RECORD_HEADER_CORRELATION_ID, rr->correlation_scratch, correlation_len};
}

void request_reply_complete_request(struct request_reply *rr, struct core_delivery *delivery)
{
    size_t topic_len, correlation_len, len;
    const char *topic = record_header_find(delivery->record, RECORD_NATIVE_REPLY_TOPIC, &topic_len);
    if (!topic || topic_len == 0 ||
        record_header_find(delivery->record, RECORD_HEADER_REPLY_TO, &len))
        return; /* not a native request, or it names its reply-to itself */
    const char *prefix = (*rr->config)->kafka.topic_prefix;
    size_t prefix_len = strlen(prefix);
    if (topic_len > prefix_len && memcmp(topic, prefix, prefix_len) == 0) {
        topic += prefix_len;
        topic_len -= prefix_len;
    }
    int n = snprintf(rr->reply_to_scratch, sizeof(rr->reply_to_scratch), "/queue/%.*s",
                     (int)topic_len, topic);
    if (n < 0 || (size_t)n >= sizeof(rr->reply_to_scratch))
        return;
    delivery->extra[delivery->extra_count++] =
        (struct core_property){RECORD_HEADER_REPLY_TO, rr->reply_to_scratch, (size_t)n};
    const char *correlation =
        record_header_find(delivery->record, RECORD_NATIVE_CORRELATION, &correlation_len);
    if (correlation && !record_header_find(delivery->record, RECORD_HEADER_CORRELATION_ID, &len) &&
        correlation_len < sizeof(rr->correlation_scratch)) {
        memcpy(rr->correlation_scratch, correlation, correlation_len);
        delivery->extra[delivery->extra_count++] = (struct core_property){
            RECORD_HEADER_CORRELATION_ID, rr->correlation_scratch, correlation_len};
    }
}
