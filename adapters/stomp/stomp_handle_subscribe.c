/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_subscribe.c -- SUBSCRIBE, and the core's callbacks for a
 * subscription: deliver (one MESSAGE frame), ready (the SUBSCRIBE receipt)
 * and failed (ERROR).
 *
 * Headers understood: destination, id (required in 1.1/1.2; 1.0 defaults
 * it to the destination), ack (auto | client | client-individual),
 * prefetch (ActiveMQ activemq.prefetchSize, RabbitMQ prefetch-count; default
 * STOMP_DEFAULT_PREFETCH, capped at queues.max_in_flight; 0 means "as many as
 * allowed", as RabbitMQ's prefetch-count:0), durable topic subscriptions
 * (ActiveMQ activemq.subscriptionName, Artemis durable-subscription-name,
 * RabbitMQ durable:true or its alias persistent:true with id as the name).
 * The ActiveMQ and Artemis spellings need CONNECT client-id, which scopes
 * the name; RabbitMQ's work without one, as in RabbitMQ: the subscription
 * is then named by its topic and id (group kbridge.dsub.TOPIC.ID), shared by
 * every connection that uses the same pair, and UNSUBSCRIBE with
 * durable:true (or persistent:true) deletes it: its position is forgotten,
 * so the next SUBSCRIBE starts afresh. Boolean headers take true/false in
 * any case. `selector` (ActiveMQ) is a JMS selector over the message's
 * headers (architecture §13): on non-durable topic subscriptions; elsewhere,
 * and when it does not parse, an ERROR naming why (and where).
 *
 * MESSAGE frames carry: destination (as the client subscribed, or
 * /topic/NAME for a wildcard subscription), message-id (the record's
 * message-id header, else TOPIC-PARTITION-OFFSET), subscription, ack (1.2,
 * client modes: "S<subscription seq>-<delivery seq>"), redelivered (false on
 * the first delivery, true after it, as RabbitMQ), x-delivery-count (1 on the first delivery),
 * content-length, and every record header that record_header_delivered lets
 * through (architecture §3: not kbridge-amqp-* nor request-reply routing),
 * except names that would clash with the ones above. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "record.h"
#include "stomp_address.h"
#include "stomp_handlers.h"

bool stomp_durable_header(const struct stomp_frame *frame)
{
    bool durable = false, persistent = false;
    const char *text = stomp_frame_header_value(frame, "durable");
    if (text && stomp_bool_parse(text, &durable) < 0)
        durable = false; /* RabbitMQ too ignores what is neither true nor false */
    text = stomp_frame_header_value(frame, "persistent");
    if (text && stomp_bool_parse(text, &persistent) < 0)
        persistent = false;
    return durable || persistent;
}

/* ---- core callbacks ---------------------------------------------------------------- */

/* Headers the MESSAGE frame sets itself: record headers of these names are
 * not copied (the first would win and break ACKs or framing). */
static bool stomp_message_own_header(const char *name, size_t len)
{
    static const char *const own[] = {
        "destination", "message-id",       "subscription",   "ack",
        "redelivered", "x-delivery-count", "content-length", "receipt-id",
    };
    /* their lengths, once: this runs for every header of every delivery */
    static size_t own_len[sizeof(own) / sizeof(own[0])];
    if (!own_len[0])
        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
            own_len[i] = strlen(own[i]);
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own_len[i] == len && memcmp(own[i], name, len) == 0)
            return true;
    return false;
}

/* Can this record header travel in a MESSAGE of `version`? */
static bool stomp_message_header_ok(enum stomp_version version, const char *name, size_t name_len,
                                    const char *value, size_t value_len)
{
    /* kbridge's private headers stay private (architecture §3, record.h) */
    return record_header_delivered(name, name_len, RECORD_DELIVER_CLIENT) &&
           stomp_header_fits(version, name, name_len, value, value_len);
}

static void stomp_subscription_deliver(void *opaque, const struct core_delivery *delivery)
{
    struct stomp_subscription *sub = opaque;
    struct stomp_connection *connection = sub->connection;
    struct stomp_adapter *adapter = connection->adapter;
    if (connection->state != STOMP_STATE_CONNECTED)
        return; /* CLOSING: blocked already; unsettled deliveries are released at close */

    /* Record headers: count and size them, find message-id. */
    size_t record_headers = core_delivery_header_count(delivery);
    size_t text = 0;
    const char *record_message_id = NULL;
    size_t record_message_id_len = 0;
    for (size_t i = 0; i < record_headers; i++) {
        const char *name;
        const void *value;
        size_t value_len;
        if (core_delivery_header(delivery, i, &name, &value, &value_len) < 0)
            continue;
        text += strlen(name) + value_len + 2;
        if (!record_message_id && strcmp(name, "message-id") == 0 && value_len > 0 &&
            !memchr(value, '\0', value_len) &&
            stomp_message_header_ok(connection->version, name, 10, value, value_len)) {
            record_message_id = value;
            record_message_id_len = value_len;
        }
    }
    text += 2 * STOMP_DECIMAL_MAX + 2; /* the ack id */
    if (stomp_adapter_scratch_reserve(adapter, record_headers + 8, text + 1) < 0) {
        log_warn("stomp", "%s: out of memory building a MESSAGE for %s", connection->base.peer,
                 sub->destination_text);
        /* Never written: released undelivered (its delivery count is not
         * raised), auto-ack or not, as the AMQP adapter does
         * (amqp_link_out_release). */
        if (sub->core && delivery->id)
            core_settle(sub->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        return;
    }
    struct stomp_header *headers = adapter->scratch_headers;
    char *cursor = adapter->scratch_text;
    size_t count = 0;

    char destination[ADDRESS_NAME_MAX + 16];
    if (sub->destination.wildcard) {
        snprintf(destination, sizeof(destination), "/topic/%s", delivery->name);
        headers[count++] = stomp_header_make("destination", destination);
    } else {
        headers[count++] = stomp_header_make("destination", sub->destination_text);
    }

    char generated_id[ADDRESS_NAME_MAX + 48];
    const char *message_id;
    if (record_message_id) {
        memcpy(cursor, record_message_id, record_message_id_len);
        cursor[record_message_id_len] = '\0';
        message_id = cursor;
        cursor += record_message_id_len + 1;
    } else {
        snprintf(generated_id, sizeof(generated_id), "%s-%" PRId32 "-%" PRId64, delivery->topic,
                 delivery->partition, delivery->offset);
        message_id = generated_id;
    }
    headers[count++] = stomp_header_make("message-id", message_id);
    headers[count++] = stomp_header_make("subscription", sub->id);

    uint64_t seq = ++sub->next_seq;
    if (connection->version == STOMP_VERSION_1_2 && sub->ack_mode != STOMP_ACK_AUTO) {
        char ack_id[2 * STOMP_DECIMAL_MAX + 2]; /* S<subscription seq>-<delivery seq> */
        size_t len = 0;
        ack_id[len++] = 'S';
        len += stomp_decimal(ack_id + len, sub->seq);
        ack_id[len++] = '-';
        len += stomp_decimal(ack_id + len, seq);
        memcpy(cursor, ack_id, len + 1); /* the scratch text: it outlives this block */
        headers[count++] = (struct stomp_header){"ack", cursor, 3, len};
        cursor += len + 1;
    }
    /* Always present, as RabbitMQ sends it: false on the first delivery. */
    headers[count++] =
        stomp_header_make("redelivered", delivery->delivery_count > 1 ? "true" : "false");
    char delivery_count[STOMP_DECIMAL_MAX];
    headers[count++] =
        (struct stomp_header){"x-delivery-count", delivery_count, 16,
                              stomp_decimal(delivery_count, delivery->delivery_count)};

    for (size_t i = 0; i < record_headers; i++) {
        const char *name;
        const void *value;
        size_t value_len;
        if (core_delivery_header(delivery, i, &name, &value, &value_len) < 0)
            continue;
        size_t name_len = strlen(name);
        if (stomp_message_own_header(name, name_len) ||
            !stomp_message_header_ok(connection->version, name, name_len, value, value_len))
            continue;
        memcpy(cursor, value, value_len);
        cursor[value_len] = '\0';
        headers[count++] = (struct stomp_header){name, cursor, name_len, value_len};
        cursor += value_len + 1;
    }

    /* Track before writing: the write may block deliveries, never re-enter here. */
    struct stomp_unacked *unacked = NULL;
    if (sub->ack_mode != STOMP_ACK_AUTO && delivery->id != 0) {
        size_t id_len = strlen(message_id);
        unacked = malloc(sizeof(*unacked) + id_len + 1);
        if (!unacked || u64_map_reserve(&sub->unacked_by_seq) < 0) {
            free(unacked);
            log_warn("stomp", "%s: out of memory tracking a delivery", connection->base.peer);
            if (sub->core)
                core_settle(sub->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
            return;
        }
        unacked->delivery_id = delivery->id;
        unacked->seq = seq;
        memcpy(unacked->message_id, message_id, id_len + 1);
    }
    if (stomp_connection_write(connection, STOMP_COMMAND_MESSAGE, headers, count, delivery->body,
                               delivery->body_len) < 0) {
        free(unacked);
        if (sub->core && delivery->id) /* never written: as above */
            core_settle(sub->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        return;
    }
    if (unacked) {
        unacked->next = NULL;
        unacked->prev = sub->unacked_tail;
        if (sub->unacked_tail)
            sub->unacked_tail->next = unacked;
        else
            sub->unacked_head = unacked;
        sub->unacked_tail = unacked;
        sub->unacked_count++;
        u64_map_put(&sub->unacked_by_seq, seq, unacked); /* room reserved above */
    }
}

/* ActiveMQ's `browser:true` (any case). */
static bool stomp_browser_header(const struct stomp_frame *frame)
{
    const char *value = stomp_frame_header_value(frame, "browser");
    return value && strcasecmp(value, "true") == 0;
}

/* A browse delivered all that was ready: ActiveMQ's end-of-browse marker, a
 * MESSAGE with `browser:end` and no body. */
static void stomp_subscription_browse_end(void *opaque)
{
    struct stomp_subscription *sub = opaque;
    struct stomp_connection *connection = sub->connection;
    if (connection->state != STOMP_STATE_CONNECTED)
        return;
    char message_id[96];
    snprintf(message_id, sizeof(message_id), "browser-end-%s", sub->id);
    struct stomp_header headers[] = {
        stomp_header_make("destination", sub->destination_text),
        stomp_header_make("message-id", message_id),
        stomp_header_make("subscription", sub->id),
        stomp_header_make("browser", "end"),
    };
    stomp_connection_write(connection, STOMP_COMMAND_MESSAGE, headers,
                           sizeof(headers) / sizeof(headers[0]), "", 0);
}

static void stomp_subscription_ready(void *opaque)
{
    struct stomp_subscription *sub = opaque;
    struct stomp_connection *connection = sub->connection;
    sub->ready = true;
    if (sub->receipt) {
        if (connection->state == STOMP_STATE_CONNECTED)
            stomp_connection_send_receipt(connection, sub->receipt);
        free(sub->receipt);
        sub->receipt = NULL;
    }
    log_debug("stomp", "%s: subscription %s to %s is ready", connection->base.peer, sub->id,
              sub->destination_text);
}

/* The core gave up on the subscription. STOMP has no per-subscription
 * error: ERROR and close. core_unsubscribe happens when the connection is
 * freed (from the reap event, not inside this callback). */
static void stomp_subscription_failed(void *opaque, int core_error, const char *reason)
{
    struct stomp_subscription *sub = opaque;
    struct stomp_connection *connection = sub->connection;
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    const struct stomp_core_error *row = stomp_core_error(core_error);
    struct stomp_error error;
    char message[256];
    snprintf(message, sizeof(message), "subscription %.40s to %.60s failed: %.100s", sub->id,
             sub->destination_text, reason ? reason : "Kafka error");
    stomp_fail_as(&error, row->now, row->label, message,
                  "The subscription %s to %s cannot go on: %s. Unacknowledged messages will be "
                  "redelivered. Reconnect and subscribe again.",
                  sub->id, sub->destination_text, reason ? reason : "Kafka error");
    stomp_send_error(connection, &error, sub->receipt);
}

static const struct core_subscription_handlers stomp_subscription_handlers = {
    .deliver = stomp_subscription_deliver,
    .ready = stomp_subscription_ready,
    .failed = stomp_subscription_failed,
    .browse_end = stomp_subscription_browse_end,
};

/* ---- temporary queues ------------------------------------------------------------------ */

struct stomp_subscription *stomp_temp_queue(struct stomp_connection *connection,
                                            const char *destination_text, const char *id,
                                            enum stomp_ack_mode ack_mode, const char *receipt,
                                            struct stomp_error *error)
{
    for (struct stomp_subscription *sub = connection->subscriptions; sub; sub = sub->next)
        if (sub->temporary && strcmp(sub->destination_text, destination_text) == 0)
            return sub;
    struct destination destination;
    char reason[256] = "";
    if (address_parse(&stomp_addresses, destination_text, &destination, reason, sizeof(reason)) <
            0 ||
        destination.kind != DESTINATION_TEMP_QUEUE) {
        stomp_fail(error, STOMP_KIND_INVALID, reason[0] ? reason : "not a temporary queue",
                   "%s is not a temporary queue name: use /temp-queue/NAME.", destination_text);
        return NULL;
    }
    if (!id)
        id = destination_text;
    if (stomp_connection_find_subscription(connection, id)) {
        stomp_fail(error, STOMP_KIND_INVALID, "duplicate subscription id",
                   "This connection already has a subscription with id '%s'.", id);
        return NULL;
    }
    uint32_t most = adapter_base_config(&connection->adapter->base)->limits.max_subscriptions;
    if (connection->subscription_count >= most) {
        core_limit_refused(connection->adapter->base.context.core, CORE_LIMIT_SUBSCRIPTIONS);
        stomp_fail(error, STOMP_KIND_LIMIT, "too many subscriptions",
                   "A connection may hold at most %u subscriptions (limits.max_subscriptions; "
                   "temporary queues count).",
                   most);
        return NULL;
    }
    struct stomp_subscription *sub = calloc(1, sizeof(*sub));
    if (!sub || !(sub->id = strdup(id)) || !(sub->destination_text = strdup(destination_text)) ||
        (receipt && !(sub->receipt = strdup(receipt)))) {
        if (sub) {
            free(sub->id);
            free(sub->destination_text);
            free(sub);
        }
        stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                   "The server could not create the temporary queue.");
        return NULL;
    }
    sub->connection = connection;
    sub->destination = destination;
    sub->ack_mode = ack_mode;
    sub->settles = false; /* replies are at most once: nothing to settle in Kafka */
    sub->temporary = true;
    if (stomp_connection_add_subscription(connection, sub) < 0) {
        free(sub->id);
        free(sub->destination_text);
        free(sub->receipt);
        free(sub);
        stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                   "The server could not create the temporary queue.");
        return NULL;
    }
    struct core_subscribe_options options = {
        .auto_accept = true,
        .credit = STOMP_DEFAULT_PREFETCH,
    };
    int code = CORE_ERR_INTERNAL;
    char err[256] = "";
    struct core_subscription *core = core_subscribe_temporary(
        connection->session, &options, &stomp_subscription_handlers, sub, sub->reply_address,
        sizeof(sub->reply_address), &code, err, sizeof(err));
    if (!core) {
        stomp_subscription_remove(sub);
        stomp_fail(error, stomp_core_error(code)->now, "cannot create the temporary queue",
                   "The temporary queue %s could not be created: %s.", destination_text,
                   err[0] ? err : "refused");
        return NULL;
    }
    sub->core = core;
    if (connection->deliveries_blocked) {
        sub->blocked = true;
        core_subscription_block(core, true);
    }
    log_debug("stomp", "%s: temporary queue %s is %s", connection->base.peer, destination_text,
              sub->reply_address);
    return sub;
}

/* ---- SUBSCRIBE ---------------------------------------------------------------------- */

/* A decimal number 0..UINT32_MAX. */
static int stomp_parse_count(const char *text, uint32_t *out)
{
    if (!text || !*text)
        return -1;
    uint64_t value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        value = value * 10 + (uint64_t)(*p - '0');
        if (value > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)value;
    return 0;
}

int stomp_handle_subscribe(struct stomp_connection *connection, const struct stomp_frame *frame,
                           struct stomp_error *error)
{
    const struct config *config = stomp_adapter_config(connection->adapter);
    char message[256];

    const char *destination_text = stomp_frame_header_value(frame, "destination");
    if (!destination_text || !destination_text[0])
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing destination",
                             "SUBSCRIBE has no destination",
                             "Every SUBSCRIBE needs a destination header, e.g. "
                             "destination:/queue/orders or destination:/topic/prices.");
    const char *id = stomp_frame_header_value(frame, "id");
    if (!id || !id[0]) {
        if (connection->version != STOMP_VERSION_1_0)
            return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing header", "SUBSCRIBE has no id",
                                 "STOMP %s requires an id header on SUBSCRIBE; MESSAGE frames "
                                 "name it in their subscription header and UNSUBSCRIBE uses it.",
                                 stomp_version_name(connection->version));
        id = destination_text;
    }
    if (stomp_connection_find_subscription(connection, id)) {
        snprintf(message, sizeof(message), "duplicate subscription id '%s'", id);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Duplicated subscription identifier",
                             message,
                             "This connection already has a subscription with id '%s'. Use a "
                             "different id, or UNSUBSCRIBE it first.",
                             id);
    }
    uint32_t most = adapter_base_config(&connection->adapter->base)->limits.max_subscriptions;
    if (connection->subscription_count >= most) {
        core_limit_refused(connection->adapter->base.context.core, CORE_LIMIT_SUBSCRIPTIONS);
        return stomp_fail(error, STOMP_KIND_LIMIT, "too many subscriptions",
                          "A connection may hold at most %u subscriptions "
                          "(limits.max_subscriptions).",
                          most);
    }

    enum stomp_ack_mode ack_mode = STOMP_ACK_AUTO;
    const char *ack = stomp_frame_header_value(frame, "ack");
    if (!ack || strcmp(ack, "auto") == 0) {
        ack_mode = STOMP_ACK_AUTO;
    } else if (strcmp(ack, "client") == 0) {
        ack_mode = STOMP_ACK_CLIENT;
    } else if (strcmp(ack, "client-individual") == 0) {
        ack_mode = STOMP_ACK_CLIENT_INDIVIDUAL;
    } else {
        snprintf(message, sizeof(message), "invalid ack mode '%s'", ack);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid header", message,
                             "The ack header of SUBSCRIBE must be auto, client or "
                             "client-individual; got '%s'.",
                             ack);
    }

    uint32_t max_prefetch = config->queues.max_in_flight ? config->queues.max_in_flight : 1;
    uint32_t prefetch = STOMP_DEFAULT_PREFETCH;
    const char *prefetch_name = "activemq.prefetchSize";
    const char *prefetch_text = stomp_frame_header_value(frame, prefetch_name);
    if (!prefetch_text) {
        prefetch_name = "prefetch-count";
        prefetch_text = stomp_frame_header_value(frame, prefetch_name);
    }
    if (prefetch_text && stomp_parse_count(prefetch_text, &prefetch) < 0) {
        snprintf(message, sizeof(message), "invalid %s '%s'", prefetch_name, prefetch_text);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid header", message,
                             "%s must be a whole number of messages (0 means as many as the server "
                             "allows, %u); got '%s'.",
                             prefetch_name, max_prefetch, prefetch_text);
    }
    if (prefetch == 0 || prefetch > max_prefetch)
        prefetch = max_prefetch;

    struct destination destination;
    char reason[256] = "";
    if (address_parse(&stomp_addresses, destination_text, &destination, reason, sizeof(reason)) < 0)
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid destination", reason,
                             "%s. Destinations are /queue/NAME, /amq/queue/NAME, /topic/NAME or "
                             "/exchange/NAME/KEY; topic names and topic exchange keys may use the "
                             "wildcard words * (one word) and # (any number of words).",
                             reason);
    if (destination.kind == DESTINATION_TEMP_QUEUE) {
        /* ActiveMQ style: an explicit SUBSCRIBE names the temporary queue's
         * subscription id (RabbitMQ style needs none: see stomp_handle_send.c). */
        for (struct stomp_subscription *sub = connection->subscriptions; sub; sub = sub->next)
            if (sub->temporary && strcmp(sub->destination_text, destination_text) == 0)
                return stomp_fail(error, STOMP_KIND_INVALID, "temporary queue in use",
                                  "%s is already this connection's temporary queue (subscription "
                                  "'%s'); SUBSCRIBE to it before the first SEND that names it.",
                                  destination_text, sub->id);
        if (stomp_frame_header_value(frame, "selector"))
            return stomp_fail(error, STOMP_KIND_UNSUPPORTED,
                              "message selectors do not apply to temporary queues",
                              "%s is a temporary queue: every reply in it is for its requester. "
                              "SUBSCRIBE without a selector.",
                              destination_text);
        const char *receipt = stomp_frame_header_value(frame, "receipt");
        if (!stomp_temp_queue(connection, destination_text, id, ack_mode, receipt, error))
            return STOMP_FAILED;
        return receipt ? STOMP_PENDING : STOMP_OK;
    }
    if (destination.kind == DESTINATION_REPLY_QUEUE) {
        return stomp_fail(error, STOMP_KIND_UNSUPPORTED, "cannot subscribe to /reply-queue/",
                          "%s is the reply address of someone's temporary queue; only its "
                          "owner receives from it.",
                          destination_text);
    }

    /* Durable topic subscription: ActiveMQ, Artemis, RabbitMQ spellings. */
    const char *durable_name = stomp_frame_header_value(frame, "activemq.subscriptionName");
    if (!durable_name)
        durable_name = stomp_frame_header_value(frame, "durable-subscription-name");
    bool rabbit_durable = false;
    if (!durable_name && stomp_durable_header(frame)) {
        durable_name = id;
        rabbit_durable = true;
    }
    if (durable_name && !durable_name[0])
        durable_name = NULL;
    if (destination.kind != DESTINATION_TOPIC)
        durable_name = NULL; /* queues are durable anyway */
    if (durable_name && !connection->client_id && !rabbit_durable)
        return stomp_fail(error, STOMP_KIND_INVALID, "durable subscription needs client-id",
                          "A durable subscription ('%s' to %s) is identified by the "
                          "connection's client-id and the subscription name: send a client-id "
                          "header on CONNECT.",
                          durable_name, destination_text);

    struct stomp_subscription *sub = calloc(1, sizeof(*sub));
    const char *receipt = stomp_frame_header_value(frame, "receipt");
    if (!sub || !(sub->id = strdup(id)) || !(sub->destination_text = strdup(destination_text)) ||
        (receipt && !(sub->receipt = strdup(receipt)))) {
        if (sub) {
            free(sub->id);
            free(sub->destination_text);
            free(sub);
        }
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not create the subscription.");
    }
    sub->connection = connection;
    sub->destination = destination;
    sub->ack_mode = ack_mode;
    sub->settles = destination.kind != DESTINATION_TOPIC || durable_name != NULL;
    /* Linked before core_subscribe: ready/deliver may come before it returns. */
    if (stomp_connection_add_subscription(connection, sub) < 0) {
        free(sub->id);
        free(sub->destination_text);
        free(sub->receipt);
        free(sub);
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not create the subscription.");
    }

    struct core_subscribe_options options = {
        .auto_accept = ack_mode == STOMP_ACK_AUTO,
        .credit = prefetch,
        .durable_name = durable_name,
        .durable_by_destination = durable_name && !connection->client_id,
        /* /exchange/NAME/KEY: a queue of its own bound with KEY (RabbitMQ) */
        .binding_key = destination.key_at ? destination_text + destination.key_at : NULL,
        /* ActiveMQ's: a JMS selector over the message's headers */
        .selector = stomp_frame_header_value(frame, "selector"),
        /* RabbitMQ's (streams): replay a topic from first, last, an offset, a time */
        .stream_offset = stomp_frame_header_value(frame, "x-stream-offset"),
        /* ActiveMQ's queue browser: what is ready, not consumed, then browser:end */
        .browse = stomp_browser_header(frame),
    };
    int code = CORE_ERR_INTERNAL;
    char err[256] = "";
    struct core_subscription *core =
        core_subscribe(connection->session, &destination, &options, &stomp_subscription_handlers,
                       sub, &code, err, sizeof(err));
    if (!core) {
        stomp_subscription_remove(sub); /* no core side yet: only unlinks and frees */
        const char *why = err[0] ? err : "refused";
        switch (code) {
        case CORE_ERR_ACCESS:
            snprintf(message, sizeof(message), "not allowed to consume from %s", destination_text);
            return stomp_fail_as(error, stomp_core_error(code)->now, stomp_core_error(code)->label,
                                 message,
                                 "This user may not consume from %s (%s). The consume ACL of the "
                                 "user in kbridged's auth.users lists the destinations allowed.",
                                 destination_text, why);
        case CORE_ERR_INVALID:
        case CORE_ERR_UNSUPPORTED:
            return stomp_fail(error, stomp_core_error(code)->now, why,
                              "The subscription to %s was refused: %s.", destination_text, why);
        case CORE_ERR_NOT_FOUND:
        case CORE_ERR_PRECONDITION:
        case CORE_ERR_IN_USE: /* an exclusive consumer (architecture §12) */
        case CORE_ERR_LOCKED: /* RabbitMQ's label, as its STOMP gives it */
            return stomp_fail_as(error, stomp_core_error(code)->now, stomp_core_error(code)->label,
                                 why, "The subscription to %s was refused: %s.", destination_text,
                                 why);
        default:
            snprintf(message, sizeof(message), "cannot subscribe to %.100s: %.120s",
                     destination_text, why);
            return stomp_fail(error, stomp_core_error(code)->now, message,
                              "The subscription to %s could not be created: %s. Try again "
                              "later.",
                              destination_text, why);
        }
    }
    sub->core = core;
    /* browsing, a stream queue: its acks are accepted and settle nothing */
    sub->settles = sub->settles && core_subscription_settles(core);
    if (connection->deliveries_blocked && !sub->blocked) {
        sub->blocked = true;
        core_subscription_block(core, true);
    }
    log_debug("stomp", "%s: subscribed %s to %s (ack %s, prefetch %u%s%s)", connection->base.peer,
              sub->id, destination_text, ack ? ack : "auto", prefetch,
              durable_name ? ", durable " : "", durable_name ? durable_name : "");
    /* The RECEIPT comes from ready (maybe it already did). */
    return receipt ? STOMP_PENDING : STOMP_OK;
}
