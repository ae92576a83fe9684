/* SPDX-License-Identifier: Apache-2.0 */
/* core_publish.c -- the publish path (architecture §3-§4, "Data path of a
 * publish"): an adapter's message becomes one Kafka record (body verbatim,
 * key from the message or the kafka-key / JMSXGroupID / group-id properties,
 * one header per property as record.h allows, message-id generated when
 * absent, user-id set to the authenticated user, request-reply headers from
 * request_reply.c). The adapter's callback runs only from Kafka's delivery
 * report: nothing is confirmed before Kafka has it. A session that closes
 * first detaches its pending publishes so late reports go nowhere. A
 * message due later (core_message.deliver_at) goes to the delay topic with
 * kbridge-deliver-at / kbridge-deliver-to instead (architecture §13). */
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "kafka.h"
#include "record.h"
#include "request_reply.h"
#include "schedule.h"
#include "stats.h"

/* message-id, user-id, kbridge-reply-token, kafka_replyTopic, kafka_correlationId,
 * kbridge-routing-key, kbridge-deliver-at, kbridge-deliver-to */
#define CORE_MAX_PROPERTIES_EXTRA 8

struct core_publish_pending {
    struct core_publish_pending *next;
    struct core_publish_pending *prev;
    struct core_session *session; /* NULL once the session closed */
    struct destination_stats *stats;
    core_publish_fn done;
    void *opaque;
    int answer;                                /* the outcome to give on the next loop turn */
    const char *answer_reason;                 /* static text, or answer_owned */
    char *answer_owned;                        /* a copied reason, or NULL */
    struct core_publish_pending *confirm_next; /* in core->local_confirms */
    struct kafka_record *local_reply;          /* to deliver before the confirmation, or NULL */
    uint64_t *scheduled; /* kbridge_scheduled_total when written to the delay topic, or NULL */
};

void core_publish_forget_session(struct core_session *session)
{
    for (struct core_publish_pending *p = session->pending; p; p = p->next)
        p->session = NULL;
}

/* ---- publishing -------------------------------------------------------------------- */

/* splitmix64's finaliser: a bijection of 64-bit values that looks random. */
static uint64_t core_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A version-4-shaped UUID for message-id. Ids must be unique, not secret:
 * 128 random bits drawn once per process, mixed with a counter (122 bits
 * survive the version and variant bits: as unlikely to collide as random
 * UUIDs, within a process and across processes). One
 * RAND_bytes per message cost ~15% of the publish path (OpenSSL checks
 * getpid() on every call). */
static void core_uuid(char out[37])
{
    static uint64_t seed[2];
    static uint64_t counter;
    static bool seeded;
    if (!seeded) {
        if (RAND_bytes((unsigned char *)seed, sizeof(seed)) != 1) {
            seed[0] = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)time(NULL);
            seed[1] = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)clock();
        }
        seeded = true;
    }
    uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    uint64_t high = core_mix64(seed[0] ^ n);
    uint64_t low = core_mix64(seed[1] + n);
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(high >> (56 - 8 * i));
        bytes[8 + i] = (unsigned char)(low >> (56 - 8 * i));
    }
    bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
    bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[bytes[i] >> 4];
        *p++ = hex[bytes[i] & 0x0f];
    }
    *p = '\0';
}

/* The answer to a pending publish: unlink it from its session, count it,
 * call the adapter (unless the session closed), free it. */
static void core_publish_finish(struct core_publish_pending *pending, int code, const char *reason)
{
    struct core_session *session = pending->session;
    if (session) {
        session->unconfirmed--;
        if (pending->prev)
            pending->prev->next = pending->next;
        else
            session->pending = pending->next;
        if (pending->next)
            pending->next->prev = pending->prev;
        if (code == CORE_OK && pending->stats)
            (*pending->stats->published)++;
        if (code == CORE_OK && pending->scheduled)
            (*pending->scheduled)++;
        pending->done(pending->opaque, code, reason);
    }
    free(pending->answer_owned);
    free(pending);
}

static void core_on_publish_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    core_publish_finish(opaque, engine_error_from_kafka(err), err ? kafka_error_name(err) : "");
}

/* A new pending publish of `session`, not linked yet; NULL out of memory. */
static struct core_publish_pending *core_publish_pending_new(struct core_session *session,
                                                             struct destination_stats *stats,
                                                             core_publish_fn done, void *opaque)
{
    struct core_publish_pending *pending = calloc(1, sizeof(*pending));
    if (!pending)
        return NULL;
    pending->session = session;
    pending->stats = stats;
    pending->done = done;
    pending->opaque = opaque;
    return pending;
}

static void core_publish_pending_link(struct core_publish_pending *pending)
{
    struct core_session *session = pending->session;
    pending->next = session->pending;
    if (session->pending)
        session->pending->prev = pending;
    session->pending = pending;
    session->unconfirmed++;
}

/* ---- answers on the next loop turn: in-memory replies (architecture §7,
 * replies.local) and outcomes known at once (core_publish_answer_later) ---- */

/* The loop's next turn: deliver the local replies queued so far and give
 * every queued publish its answer, oldest first (to its publisher, if its
 * session is still open). */
static void core_on_local_confirms(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core *core = arg;
    struct core_publish_pending *list = core->local_confirms;
    core->local_confirms = core->local_confirms_tail = NULL;
    while (list) {
        struct core_publish_pending *next = list->confirm_next;
        if (list->local_reply)
            core->temporary_engine->ops->deliver_local(core->temporary_engine, list->local_reply);
        core_publish_finish(list, list->answer, list->answer_reason);
        list = next;
    }
}

/* Queue `pending` for core_on_local_confirms (never answered inside
 * core_publish: the adapter may not be ready for its callback yet).
 * CORE_OK, or CORE_ERR_INTERNAL with err when out of memory. */
static int core_publish_answer_next_turn(struct core *core, struct core_publish_pending *pending,
                                         char *err, size_t err_size)
{
    if (!core->local_confirm_event)
        core->local_confirm_event = event_new(core->base, -1, 0, core_on_local_confirms, core);
    if (!core->local_confirm_event) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    if (core->local_confirms_tail)
        core->local_confirms_tail->confirm_next = pending;
    else
        core->local_confirms = pending;
    core->local_confirms_tail = pending;
    event_active(core->local_confirm_event, EV_TIMEOUT, 0);
    return CORE_OK;
}

int core_publish_answer_later(struct core_session *session, int code, const char *reason,
                              core_publish_fn done, void *opaque, char *err, size_t err_size)
{
    if (session->txn_target) {
        /* a transaction's commit: nothing written; the commit tells the
         * adapter of an unroutable send (core_transaction_on_unroutable) */
        if (code == CORE_UNROUTABLE)
            session->txn_unroutable = true;
        return CORE_OK;
    }
    struct core_publish_pending *pending = core_publish_pending_new(session, NULL, done, opaque);
    if (!pending) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    pending->answer = code;
    pending->answer_owned = strdup(reason);
    if (!pending->answer_owned) {
        free(pending);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    pending->answer_reason = pending->answer_owned;
    int rc = core_publish_answer_next_turn(session->core, pending, err, err_size);
    if (rc != CORE_OK) {
        free(pending->answer_owned);
        free(pending);
        return rc;
    }
    core_publish_pending_link(pending);
    return CORE_OK;
}

void core_publish_free(struct core *core)
{
    while (core->local_confirms) {
        struct core_publish_pending *next = core->local_confirms->confirm_next;
        kafka_record_free(core->local_confirms->local_reply); /* NULL is fine */
        free(core->local_confirms->answer_owned);
        free(core->local_confirms); /* every session is closed: nobody to call */
        core->local_confirms = next;
    }
    if (core->local_confirm_event)
        event_free(core->local_confirm_event);
}

int core_publish_overflow(struct core_session *session, const char *vhost,
                          const struct core_overflow_target *targets, size_t target_count,
                          const struct binding_header *headers, size_t header_count,
                          size_t body_len, core_publish_fn done, void *opaque, bool *refused,
                          char *err, size_t err_size)
{
    *refused = false;
    char reason[512];
    int rc = core_overflow_check(session->core, vhost, targets, target_count, headers, header_count,
                                 body_len, reason, sizeof(reason));
    if (rc == CORE_OK)
        return CORE_OK;
    if (rc != CORE_ERR_FULL || session->txn_target) {
        /* a transaction's commit fails with the refusal of a send */
        snprintf(err, err_size, "%s", reason);
        return rc;
    }
    *refused = true; /* answered as Kafka's refusal would be: nack, ERROR, rejected */
    return core_publish_answer_later(session, CORE_ERR_FULL, reason, done, opaque, err, err_size);
}

/* A reply for a temporary queue of this node: on the next loop turn (never
 * inside core_publish: the requester may be the publishing connection), hand
 * the temporary-queue engine a record made here, as its reply reader would
 * get it from Kafka, and confirm the publish.
 * CORE_OK, or CORE_ERR_INTERNAL with err when out of memory. */
static int core_publish_local_reply(struct core *core, struct core_publish_pending *pending,
                                    const char *topic, const void *key, size_t key_len,
                                    const struct core_message *message,
                                    const struct kafka_header *headers, size_t count, char *err,
                                    size_t err_size)
{
    struct kafka_record *record =
        kafka_record_local(topic, key, key_len, message->body, message->body_len, headers, count);
    if (!record) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    pending->local_reply = record;
    pending->answer = CORE_OK;
    pending->answer_reason = "";
    int rc = core_publish_answer_next_turn(core, pending, err, err_size);
    if (rc != CORE_OK) {
        pending->local_reply = NULL;
        kafka_record_free(record);
    }
    return rc;
}

/* Queue the record in the producer; `pending` is confirmed from its
 * delivery report. CORE_OK, or the core error with err. */
static int core_publish_produce(struct core_session *session, const char *topic, const void *key,
                                size_t key_len, const struct core_message *message,
                                const struct kafka_header *headers, size_t count,
                                struct core_publish_pending *pending, char *err, size_t err_size)
{
    /* no key: one partition per producer, so its messages keep their order */
    uint32_t sticky = (uint32_t)(core_mix64(session->sticky_seed + message->producer) >> 32);
    int rc = kafka_produce(session->core->kafka, topic, -1, sticky ? sticky : 1, key, key_len,
                           message->body, message->body_len, headers, count,
                           core_on_publish_delivery, pending);
    if (rc == KAFKA_OK)
        return CORE_OK;
    if (rc == KAFKA_ERR_QUEUE_FULL) {
        snprintf(err, err_size, "Kafka producer queue is full; retry later");
        return CORE_ERR_BUSY;
    }
    snprintf(err, err_size, "Kafka refused the message for topic %s: %s", topic,
             kafka_error_name(rc));
    return engine_error_from_kafka(rc);
}

int core_check_message_size(const struct config *config, const struct core_message *message,
                            char *err, size_t err_size)
{
    if (message->body_len <= config->limits.max_message_size)
        return 0;
    snprintf(err, err_size,
             "message body of %zu bytes is larger than limits.max_message_size (%llu bytes)",
             message->body_len, (unsigned long long)config->limits.max_message_size);
    return -1;
}

static const struct core_property *core_find_property(const struct core_message *message,
                                                      const char *name)
{
    for (size_t i = 0; i < message->property_count; i++)
        if (strcmp(message->properties[i].name, name) == 0)
            return &message->properties[i];
    return NULL;
}

int core_publish(struct core_session *session, const struct destination *destination,
                 const struct core_message *message, core_publish_fn done, void *opaque, char *err,
                 size_t err_size)
{
    struct core *core = session->core;
    const struct config *config = core_config(core);
    char display[ADDRESS_NAME_MAX + 32];
    address_format(destination, display, sizeof(display));
    bool reply = destination->kind == DESTINATION_REPLY_QUEUE;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        return CORE_ERR_ACCESS;
    }
    if (destination->kind == DESTINATION_EXCHANGE)
        return core_exchange_publish(session, destination, message, done, opaque, err, err_size);
    if (destination->kind != DESTINATION_QUEUE && destination->kind != DESTINATION_TOPIC &&
        !reply) {
        snprintf(err, err_size, "publishing to %s is not supported yet", display);
        return CORE_ERR_UNSUPPORTED;
    }
    if (destination->wildcard) {
        snprintf(err, err_size, "cannot publish to a wildcard destination (%s)", display);
        return CORE_ERR_INVALID;
    }
    /* A reply goes to the reply topic of the node that owns the token; the
     * unguessable token is the permission. */
    struct destination reply_topic = {.kind = DESTINATION_TOPIC};
    if (reply) {
        if (request_reply_reply_topic(destination->name, reply_topic.name,
                                      sizeof(reply_topic.name)) < 0) {
            snprintf(err, err_size,
                     "%s is not a reply address kbridge made (expected /reply-queue/NODE.TOKEN)",
                     display);
            return CORE_ERR_INVALID;
        }
    } else if (request_reply_topic_is_reserved(core->request_reply, destination->name)) {
        snprintf(err, err_size,
                 "%s is kbridge's reply topic: send replies to the reply-to "
                 "address of the request",
                 display);
        return CORE_ERR_ACCESS;
    } else if (!core_acl_allows(session, true, destination->name)) {
        snprintf(err, err_size, "user '%s' may not publish to %s", session->user, display);
        return CORE_ERR_ACCESS;
    }
    if (core_check_message_size(config, message, err, err_size) != 0)
        return CORE_ERR_TOO_LARGE;
    char topic[ADDRESS_NAME_MAX + 1];
    /* a reply: the node's reply topic, under kafka.topic_prefix in every vhost */
    if (address_kafka_topic(reply ? &reply_topic : destination,
                            reply ? config->kafka.topic_prefix : session->topic_prefix, topic,
                            sizeof(topic), err, err_size) < 0)
        return CORE_ERR_INVALID;
    if (!reply) {
        /* /queue/X, /topic/X and native topic X are one stream: queue X
         * and the queues bound to amq.topic with a pattern matching X read
         * it (architecture §11) */
        const struct core_overflow_target targets[] = {{"", destination->name},
                                                       {"amq.topic", destination->name}};
        bool refused;
        int rc = core_publish_overflow(session, session->vhost, targets, 2, NULL, 0,
                                       message->body_len, done, opaque, &refused, err, err_size);
        if (rc != CORE_OK || refused)
            return rc;
    }
    struct core_record_target target = {
        .topic = topic,
        .stats_kind =
            destination->kind == DESTINATION_QUEUE ? DESTINATION_QUEUE : DESTINATION_TOPIC,
        .stats_name = reply ? reply_topic.name : destination->name,
        .reply_token = reply ? destination->name : NULL,
    };
    return core_publish_record(session, &target, message, done, opaque, err, err_size);
}

int core_publish_record(struct core_session *session, const struct core_record_target *target,
                        const struct core_message *message, core_publish_fn done, void *opaque,
                        char *err, size_t err_size)
{
    struct core *core = session->core;
    size_t count = 0;
    struct kafka_header *headers =
        calloc(message->property_count + CORE_MAX_PROPERTIES_EXTRA, sizeof(*headers));
    if (!headers) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    /* A request whose reply-to is a temporary queue: the headers a native
     * (Spring Kafka) responder needs, and the client's correlation-id kept
     * for replies that only copy kafka_correlationId back (architecture §7). */
    char reply_topic_full[ADDRESS_NAME_MAX + 1];
    char correlation[REPLY_TOKEN_MAX + REPLY_REQUEST_ID_LEN + 2];
    bool request =
        request_reply_request(core->request_reply, message, reply_topic_full,
                              sizeof(reply_topic_full), correlation, sizeof(correlation));
    bool has_message_id = false;
    for (size_t i = 0; i < message->property_count; i++) {
        const struct core_property *p = &message->properties[i];
        if (!record_header_from_client(p->name, strlen(p->name)))
            continue; /* user-id, kbridge-reply-*: never trusted from the client */
        if (request && (strcmp(p->name, RECORD_NATIVE_REPLY_TOPIC) == 0 ||
                        strcmp(p->name, RECORD_NATIVE_CORRELATION) == 0))
            continue; /* ours replace the client's */
        if (target->routing_key && strcmp(p->name, RECORD_ROUTING_KEY) == 0)
            continue; /* the exchange's routing key is the core's to write */
        if (strcmp(p->name, RECORD_HEADER_MESSAGE_ID) == 0)
            has_message_id = true;
        headers[count++] = (struct kafka_header){p->name, p->value, p->value_len};
    }
    char uuid[37];
    if (!has_message_id) {
        core_uuid(uuid);
        headers[count++] = (struct kafka_header){RECORD_HEADER_MESSAGE_ID, uuid, 36};
    }
    if (!session->anonymous)
        headers[count++] =
            (struct kafka_header){RECORD_HEADER_USER_ID, session->user, strlen(session->user)};
    if (target->reply_token)
        headers[count++] = (struct kafka_header){RECORD_REPLY_TOKEN, target->reply_token,
                                                 strlen(target->reply_token)};
    if (target->routing_key)
        headers[count++] =
            (struct kafka_header){RECORD_ROUTING_KEY, target->routing_key, target->routing_key_len};
    if (request) {
        headers[count++] = (struct kafka_header){RECORD_NATIVE_REPLY_TOPIC, reply_topic_full,
                                                 strlen(reply_topic_full)};
        headers[count++] =
            (struct kafka_header){RECORD_NATIVE_CORRELATION, correlation, strlen(correlation)};
    } else {
        /* A reply to a native requester (Spring's ReplyingKafkaTemplate) is
         * matched by kafka_correlationId: mirror the correlation-id into it. */
        const struct core_property *client =
            core_find_property(message, RECORD_HEADER_CORRELATION_ID);
        if (client && !core_find_property(message, RECORD_NATIVE_CORRELATION))
            headers[count++] =
                (struct kafka_header){RECORD_NATIVE_CORRELATION, client->value, client->value_len};
    }

    const void *key = message->key;
    size_t key_len = message->key_len;
    if (!key) {
        static const char *const key_names[] = RECORD_KEY_PROPERTIES;
        for (size_t i = 0; i < RECORD_KEY_PROPERTY_COUNT && !key; i++) {
            const struct core_property *p = core_find_property(message, key_names[i]);
            if (p) {
                key = p->value;
                key_len = p->value_len;
            }
        }
    }
    if (!key && target->routing_key_len > 0) {
        /* an exchange's record: keyed by its routing key (an empty key is
         * none: the producer's sticky partition keeps its order) */
        key = target->routing_key;
        key_len = target->routing_key_len;
    }

    /* Scheduled delivery (architecture §13): a message due later goes to
     * the delay topic now, with its due time and the topic it would have
     * gone to; a scheduler forwards it (key, value, the other headers) when
     * it is due. */
    const char *topic = target->topic;
    char delay_topic[ADDRESS_NAME_MAX + 1];
    char due_text[24];
    bool scheduled = message->deliver_at > clock_wall_ms();
    if (scheduled) {
        if (schedule_topic(core_config(core), delay_topic, sizeof(delay_topic)) < 0) {
            free(headers);
            snprintf(err, err_size, "the delay topic name (scheduler.topic) is too long");
            return CORE_ERR_INTERNAL;
        }
        snprintf(due_text, sizeof(due_text), "%llu", (unsigned long long)message->deliver_at);
        headers[count++] = (struct kafka_header){RECORD_DELIVER_AT, due_text, strlen(due_text)};
        headers[count++] =
            (struct kafka_header){RECORD_DELIVER_TO, target->topic, strlen(target->topic)};
        topic = delay_topic;
    }

    if (session->txn_target) {
        /* a transaction's commit (core_transaction.c): into its Kafka
         * transaction; commit_transaction is the one answer */
        uint32_t sticky = (uint32_t)(core_mix64(session->sticky_seed + message->producer) >> 32);
        int rc = kafka_txn_produce(session->txn_target, topic, sticky ? sticky : 1, key, key_len,
                                   message->body, message->body_len, headers, count);
        free(headers);
        if (rc == KAFKA_OK) {
            if (scheduled)
                (*core->scheduled)++; /* counted when written: a commit has no per-record report */
            return CORE_OK;
        }
        snprintf(err, err_size, "Kafka refused the message for topic %s: %s", topic,
                 kafka_error_name(rc));
        return engine_error_from_kafka(rc);
    }
    struct core_publish_pending *pending = core_publish_pending_new(
        session, stats_get(&core->stats, target->stats_kind, session->vhost, target->stats_name),
        done, opaque);
    if (!pending) {
        free(headers);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    if (scheduled)
        pending->scheduled = core->scheduled;
    bool local = !scheduled && target->reply_token && core_config(core)->replies.local &&
                 request_reply_token_is_local(core->request_reply, target->reply_token);
    int rc = local ? core_publish_local_reply(core, pending, target->topic, key, key_len, message,
                                              headers, count, err, err_size)
                   : core_publish_produce(session, topic, key, key_len, message, headers, count,
                                          pending, err, err_size);
    free(headers);
    if (rc != CORE_OK) {
        free(pending);
        return rc;
    }
    core_publish_pending_link(pending);
    return CORE_OK;
}
