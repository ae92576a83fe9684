/* SPDX-License-Identifier: Apache-2.0 */
/* core_exchange.c -- publishing to an exchange (architecture §11): the
 * exchange is looked up in this node's view of the definitions and the
 * message routed through its bindings (definitions_route) only to decide
 * whether any queue wants it; what is written is one record on the
 * exchange's own Kafka topic (the vhost's topic prefix + NAME) with the routing
 * key in `kbridge-routing-key` and as the record key unless the message
 * brings its own. The queues bound to the exchange read that topic and
 * filter it (queue.c). Nothing is copied per queue.
 *
 * A direct exchange declared with `x-kbridge-topic-per-key: true` writes
 * each message to a topic of its routing key instead, the vhost's prefix +
 * `NAME.KEY`, so a queue bound with key K reads only NAME.K and filters
 * nothing (queue_bindings.c); it keeps unroutable messages unless
 * `x-kbridge-keep-unroutable: false` says otherwise, since its topics are
 * named for native Kafka readers too.
 *
 * The default exchange and amq.topic keep the topic-per-key mapping of §2:
 * the routing key names the Kafka topic (`/queue/x`, `/topic/x`, the default
 * exchange or amq.topic with key x, and native topic x are one stream), so
 * their messages are always written, whether or not a queue is declared.
 *
 * A message no queue would read goes to the exchange's alternate-exchange
 * (followed as RabbitMQ does, through chains, each exchange once); without
 * one it is written anyway when the exchange keeps unroutable messages
 * (argument `x-kbridge-keep-unroutable: true`, for native Kafka readers of
 * the topic), else reported CORE_UNROUTABLE to the adapter and counted in
 * kbridge_unroutable_total: never silently written where nobody reads. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "engine.h"
#include "log.h"
#include "record.h"

/* Alternate exchanges followed at most (RabbitMQ stops at a cycle; so do
 * we, and at this depth). */
#define CORE_EXCHANGE_MAX_HOPS 8

/* The exchange argument that keeps unroutable messages. */
#define CORE_KEEP_UNROUTABLE "x-kbridge-keep-unroutable"

/* Does the exchange keep messages that reach no queue? */
static bool core_exchange_keeps_unroutable(const struct exchange_definition *exchange)
{
    if (engine_exchange_is_topic_per_key(exchange->spec.name))
        return true;
    const json_t *keep = exchange->spec.arguments
                             ? json_object_get(exchange->spec.arguments, CORE_KEEP_UNROUTABLE)
                             : NULL;
    return exchange->topic_per_key ? !json_is_false(keep) : json_is_true(keep);
}

/* Publish through a topic-per-key exchange: the key is the topic's name. */
static int core_exchange_publish_by_key(struct core_session *session, const char *exchange,
                                        const char *key, size_t key_len,
                                        const struct core_message *message, core_publish_fn done,
                                        void *opaque, char *err, size_t err_size)
{
    struct destination destination = {
        .kind = exchange[0] == '\0' ? DESTINATION_QUEUE : DESTINATION_TOPIC,
    };
    if (key_len == 0 || key_len > ADDRESS_NAME_MAX || memchr(key, '\0', key_len)) {
        snprintf(err, err_size,
                 "the routing key of a message to exchange '%s' names a Kafka topic: it must be "
                 "1 to %d characters of A-Z a-z 0-9 . _ -",
                 exchange[0] ? exchange : "(default)", ADDRESS_NAME_MAX);
        return CORE_ERR_INVALID;
    }
    memcpy(destination.name, key, key_len);
    destination.name[key_len] = '\0';
    if (strchr(destination.name, '*') || strchr(destination.name, '#')) {
        snprintf(err, err_size, "cannot publish to a wildcard routing key (%s) of exchange '%s'",
                 destination.name, exchange[0] ? exchange : "(default)");
        return CORE_ERR_INVALID;
    }
    return core_publish(session, &destination, message, done, opaque, err, err_size);
}

/* The message's properties as the headers a headers exchange matches. */
static struct binding_header *core_exchange_headers(const struct core_message *message)
{
    struct binding_header *headers =
        calloc(message->property_count ? message->property_count : 1, sizeof(*headers));
    if (!headers)
        return NULL;
    for (size_t i = 0; i < message->property_count; i++)
        headers[i] =
            (struct binding_header){message->properties[i].name, message->properties[i].value,
                                    message->properties[i].value_len};
    return headers;
}

int core_exchange_publish(struct core_session *session, const struct destination *destination,
                          const struct core_message *message, core_publish_fn done, void *opaque,
                          char *err, size_t err_size)
{
    struct core *core = session->core;
    const struct config *config = core_config(core);
    const char *vhost = session->vhost;
    char key[ADDRESS_KEY_MAX + 1];
    size_t key_len = message->routing_key ? message->routing_key_len : 0;
    if (key_len > ADDRESS_KEY_MAX || (key_len && memchr(message->routing_key, '\0', key_len))) {
        snprintf(err, err_size, "a routing key is at most %d bytes of text", ADDRESS_KEY_MAX);
        return CORE_ERR_INVALID;
    }
    if (key_len)
        memcpy(key, message->routing_key, key_len);
    key[key_len] = '\0';

    const struct definitions *view = core_definitions(core);
    const struct exchange_definition *exchange =
        definitions_exchange(view, vhost, destination->name);
    if (!exchange) {
        snprintf(err, err_size, "no exchange '%s' in vhost '%s'", destination->name, vhost);
        return CORE_ERR_NOT_FOUND;
    }
    if (exchange->spec.internal) {
        snprintf(err, err_size, "exchange '%s' is internal: clients may not publish to it",
                 destination->name);
        return CORE_ERR_ACCESS;
    }
    if (engine_exchange_is_topic_per_key(exchange->spec.name))
        return core_exchange_publish_by_key(session, exchange->spec.name, key, key_len, message,
                                            done, opaque, err, err_size);
    if (!core_acl_allows(session, true, destination->name)) {
        snprintf(err, err_size, "user '%s' may not publish to exchange '%s'", session->user,
                 destination->name);
        return CORE_ERR_ACCESS;
    }
    if (core_check_message_size(config, message, err, err_size) != 0)
        return CORE_ERR_TOO_LARGE;

    struct binding_header *headers = core_exchange_headers(message);
    if (!headers) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    /* Where the message goes: the exchange itself when a queue is reached
     * (or it keeps unroutables), else its alternate exchange, and so on. */
    const struct exchange_definition *visited[CORE_EXCHANGE_MAX_HOPS];
    size_t hops = 0;
    const struct exchange_definition *target = NULL;
    for (const struct exchange_definition *at = exchange; at && hops < CORE_EXCHANGE_MAX_HOPS;) {
        bool seen = false;
        for (size_t i = 0; i < hops && !seen; i++)
            seen = visited[i] == at;
        if (seen)
            break; /* an alternate-exchange cycle */
        visited[hops++] = at;
        if (engine_exchange_is_topic_per_key(at->spec.name)) {
            target = at;
            break;
        }
        int reached = definitions_route(view, vhost, at->spec.name, key, headers,
                                        message->property_count, NULL, NULL);
        if (reached < 0) {
            free(headers);
            snprintf(err, err_size, "out of memory");
            return CORE_ERR_INTERNAL;
        }
        if (reached > 0) {
            target = at;
            break;
        }
        const struct exchange_definition *alternate =
            at->alternate_exchange ? definitions_exchange(view, vhost, at->alternate_exchange)
                                   : NULL;
        if (!alternate && core_exchange_keeps_unroutable(at)) {
            target = at;
            break;
        }
        at = alternate;
    }
    if (!target) {
        free(headers);
        (*core->unroutable)++;
        return core_publish_answer_later(session, CORE_UNROUTABLE, "no queue is bound to match it",
                                         done, opaque, err, err_size);
    }
    if (!engine_exchange_is_topic_per_key(target->spec.name)) {
        /* x-overflow reject-publish: one record serves every queue bound,
         * so a full one refuses the whole publish (core_publish checks
         * the topic-per-key exchanges) */
        const struct core_overflow_target route = {target->spec.name, key};
        bool refused;
        int rc = core_publish_overflow(session, vhost, &route, 1, headers, message->property_count,
                                       message->body_len, done, opaque, &refused, err, err_size);
        if (rc != CORE_OK || refused) {
            free(headers);
            return rc;
        }
    }
    free(headers);
    if (target != exchange)
        (*core->alternate_routed)++;
    if (engine_exchange_is_topic_per_key(target->spec.name))
        return core_exchange_publish_by_key(session, target->spec.name, key, key_len, message, done,
                                            opaque, err, err_size);
    struct destination exchange_destination = {.kind = DESTINATION_EXCHANGE};
    char topic[ADDRESS_NAME_MAX + 1];
    if (target->topic_per_key) {
        /* NAME.KEY: named as a topic destination, so it obeys the same rules */
        exchange_destination.kind = DESTINATION_TOPIC;
        if ((size_t)snprintf(exchange_destination.name, sizeof(exchange_destination.name), "%s.%s",
                             target->spec.name, key) >= sizeof(exchange_destination.name)) {
            snprintf(err, err_size,
                     "exchange '%s' has a Kafka topic per routing key, and '%s.%s' is too long "
                     "for a topic name",
                     target->spec.name, target->spec.name, key);
            return CORE_ERR_INVALID;
        }
    } else {
        snprintf(exchange_destination.name, sizeof(exchange_destination.name), "%s",
                 target->spec.name);
    }
    if (address_kafka_topic(&exchange_destination, session->topic_prefix, topic, sizeof(topic), err,
                            err_size) < 0)
        return CORE_ERR_INVALID;
    struct core_record_target record_target = {
        .topic = topic,
        .stats_kind = DESTINATION_EXCHANGE,
        .stats_name = target->spec.name,
        .routing_key = key,
        .routing_key_len = key_len,
    };
    return core_publish_record(session, &record_target, message, done, opaque, err, err_size);
}

/* ---- subscribing to an exchange ---------------------------------------------------- */

/* An exchange subscription being set up: its queue declared, then bound
 * (each answered once this node's reader applied it), then subscribed.
 * Owned by the session (session->exchange_ops) until the last answer. */
struct core_exchange_op {
    struct core_exchange_op *next, *prev; /* in session->exchange_ops */
    struct core_session *session;
    struct core_subscription *sub; /* NULL once the subscription ended first */
    bool declared;                 /* the queue exists: delete it if the subscription goes */
    char exchange[ADDRESS_NAME_MAX + 1];
    char key[ADDRESS_KEY_MAX + 1];
    char queue[ADDRESS_NAME_MAX + 1];
};

static void core_exchange_op_free(struct core_exchange_op *op)
{
    struct core_session *session = op->session;
    if (op->prev)
        op->prev->next = op->next;
    else
        session->exchange_ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (op->sub)
        op->sub->exchange_op = NULL;
    free(op);
}

/* No one waits for these answers (a queue deleted behind its subscription). */
static void core_exchange_ignore(void *opaque, int core_error, const char *reason, const char *name)
{
    (void)opaque;
    if (core_error != CORE_OK)
        log_warn("core", "auto-delete queue '%s' not deleted: %s", name, reason);
}

/* The subscription ended before its queue was set up: delete the queue. */
static void core_exchange_op_abandon(struct core_exchange_op *op)
{
    char err[256];
    if (op->declared && core_delete_queue(op->session, op->session->vhost, op->queue, false, false,
                                          core_exchange_ignore, NULL, err, sizeof(err)) != CORE_OK)
        log_warn("core", "auto-delete queue '%s' not deleted: %s", op->queue, err);
    core_exchange_op_free(op);
}

static void core_exchange_op_fail(struct core_exchange_op *op, int core_error, const char *what,
                                  const char *reason)
{
    struct core_subscription *sub = op->sub;
    char text[512];
    snprintf(text, sizeof(text), "cannot %s for exchange '%s': %s", what, op->exchange, reason);
    if (op->declared) {
        op->sub = NULL;
        sub->exchange_op = NULL;
        core_exchange_op_abandon(op); /* the queue goes with the failed subscription */
    } else {
        core_exchange_op_free(op);
    }
    sub->handlers.failed(sub->opaque, core_error, text); /* the adapter unsubscribes */
}

static void core_exchange_on_bound(void *opaque, int core_error, const char *reason,
                                   const char *name)
{
    struct core_exchange_op *op = opaque;
    struct core_subscription *sub = op->sub;
    if (!sub) {
        core_exchange_op_abandon(op);
        return;
    }
    if (core_error != CORE_OK) {
        core_exchange_op_fail(op, core_error, "bind its queue", reason);
        return;
    }
    char err[256] = "";
    struct destination queue = {.kind = DESTINATION_QUEUE};
    snprintf(queue.name, sizeof(queue.name), "%s", op->queue);
    core_exchange_op_free(op); /* sub->exchange_op is NULL now */
    int rc = core_subscription_attach(sub, &queue, err, sizeof(err));
    if (rc != CORE_OK) {
        char text[sizeof(queue.name) + sizeof(err) + 64]; /* both in whole, never cut */
        snprintf(text, sizeof(text), "cannot subscribe to queue '%s': %s", queue.name, err);
        core_exchange_auto_delete(sub->session, queue.name);
        sub->handlers.failed(sub->opaque, rc, text);
    }
}

static void core_exchange_on_declared(void *opaque, int core_error, const char *reason,
                                      const char *name)
{
    struct core_exchange_op *op = opaque;
    if (core_error == CORE_OK) {
        op->declared = true;
        snprintf(op->queue, sizeof(op->queue), "%s", name);
    }
    if (!op->sub) {
        core_exchange_op_abandon(op);
        return;
    }
    if (core_error != CORE_OK) {
        core_exchange_op_fail(op, core_error, "declare its queue", reason);
        return;
    }
    struct binding_spec binding = {
        .vhost = op->session->vhost,
        .source = op->exchange,
        .destination_kind = BINDING_TO_QUEUE,
        .destination = op->queue,
        .routing_key = op->key,
    };
    char err[256] = "";
    int rc = core_bind(op->session, &binding, core_exchange_on_bound, op, err, sizeof(err));
    if (rc != CORE_OK)
        core_exchange_op_fail(op, rc, "bind its queue", err);
}

int core_exchange_subscribe(struct core_subscription *sub, const char *exchange, const char *key,
                            char *err, size_t err_size)
{
    struct core_session *session = sub->session;
    const struct exchange_definition *definition =
        definitions_exchange(core_definitions(session->core), session->vhost, exchange);
    if (!definition) {
        snprintf(err, err_size, "no exchange '%s' in vhost '%s'", exchange, session->vhost);
        return CORE_ERR_NOT_FOUND;
    }
    if (strlen(key) > ADDRESS_KEY_MAX) {
        snprintf(err, err_size, "a binding key is at most %d bytes", ADDRESS_KEY_MAX);
        return CORE_ERR_INVALID;
    }
    struct core_exchange_op *op = calloc(1, sizeof(*op));
    if (!op) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    op->session = session;
    op->sub = sub;
    snprintf(op->exchange, sizeof(op->exchange), "%s", exchange);
    snprintf(op->key, sizeof(op->key), "%s", key);
    op->next = session->exchange_ops;
    if (op->next)
        op->next->prev = op;
    session->exchange_ops = op;
    sub->exchange_op = op;
    /* server-named, exclusive to this session, auto-delete (RabbitMQ's STOMP) */
    struct queue_spec queue = {
        .vhost = session->vhost,
        .name = "",
        .durable = false,
        .exclusive = true,
        .auto_delete = true,
    };
    int rc =
        core_declare_queue(session, &queue, false, core_exchange_on_declared, op, err, err_size);
    if (rc != CORE_OK)
        core_exchange_op_free(op);
    return rc;
}

void core_exchange_subscription_ended(struct core_subscription *sub)
{
    if (sub->exchange_op) {
        sub->exchange_op->sub = NULL; /* its next answer deletes the queue */
        sub->exchange_op = NULL;
    }
}

void core_exchange_session_closed(struct core_session *session)
{
    /* the declare API answers nothing after the session closed; its
     * exclusive queues are deleted with it (core_definitions.c) */
    while (session->exchange_ops)
        core_exchange_op_free(session->exchange_ops);
}

void core_exchange_auto_delete(struct core_session *session, const char *name)
{
    const struct queue_definition *queue =
        definitions_queue(core_definitions(session->core), session->vhost, name);
    if (!queue || !queue->spec.auto_delete)
        return;
    char err[256];
    if (core_delete_queue(session, session->vhost, name, false, false, core_exchange_ignore, NULL,
                          err, sizeof(err)) != CORE_OK)
        log_warn("core", "auto-delete queue '%s' not deleted: %s", name, err);
}

/* ---- queues named by address ------------------------------------------------------- */

static void core_exchange_declared_on_first_use(void *opaque, int core_error, const char *reason,
                                                const char *name)
{
    (void)opaque;
    if (core_error != CORE_OK)
        log_info("core", "queue '%s' not declared on first use: %s", name, reason);
}

int core_exchange_queue_first_use(struct core_session *session,
                                  const struct destination *destination, char *err, size_t err_size)
{
    int rc = core_queue_usable(session, session->vhost, destination->name, err, err_size);
    if (rc != CORE_OK)
        return rc;
    if (definitions_queue(core_definitions(session->core), session->vhost, destination->name))
        return CORE_OK;
    if (destination->existing) {
        snprintf(err, err_size, "no queue '%s' in vhost '%s'", destination->name, session->vhost);
        return CORE_ERR_NOT_FOUND;
    }
    /* Declared as RabbitMQ's STOMP does (durable), so AMQP 0-9-1 clients see
     * it; nobody waits: the queue works as a topic's group either way. */
    struct queue_spec queue = {.vhost = session->vhost, .name = destination->name, .durable = true};
    char why[256];
    if (core_declare_queue(session, &queue, false, core_exchange_declared_on_first_use, NULL, why,
                           sizeof(why)) != CORE_OK)
        log_info("core", "queue '%s' not declared on first use: %s", destination->name, why);
    return CORE_OK;
}
