/* SPDX-License-Identifier: Apache-2.0 */
/* core_subscription.c -- the core's delivery layer (architecture §5-§7,
 * "Data path of a delivery"): subscriptions of a session, handed to the
 * engine that serves them (engine.h: queue, topic, temporary queue), the
 * ready/blocked gate in front of every delivery (the client's block, not
 * ready yet, or the session at limits.max_unacked: unsettled deliveries
 * of all its subscriptions together), settlement, and the headers of a
 * delivery as adapters read them. Engines call back only
 * through the engine_context filled by core_subscription_context. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "kafka.h"
#include "log.h"
#include "record.h"
#include "reply.h"
#include "request_reply.h"
#include "selector.h"

/* ---- deliveries -------------------------------------------------------------------- */

size_t core_delivery_header_count(const struct core_delivery *delivery)
{
    return kafka_record_header_count(delivery->record) + delivery->extra_count;
}

int core_delivery_header(const struct core_delivery *delivery, size_t index, const char **name,
                         const void **value, size_t *value_len)
{
    size_t count = kafka_record_header_count(delivery->record);
    if (index >= count && index - count < delivery->extra_count) {
        *name = delivery->extra[index - count].name;
        *value = delivery->extra[index - count].value;
        *value_len = delivery->extra[index - count].value_len;
        return 0;
    }
    return kafka_record_header(delivery->record, index, name, value, value_len);
}

/* ---- subscriptions ------------------------------------------------------------------ */

/* Apply the effective block state (client's block, or not ready yet) to the
 * engine (its `block` op); unblocking may deliver at once. */
static void core_subscription_apply_block(struct core_subscription *sub)
{
    bool blocked = sub->client_blocked || !sub->ready_sent || sub->session->unacked_stopped;
    if (sub->blocked == blocked)
        return;
    sub->blocked = blocked;
    if (sub->attached)
        sub->engine->ops->block(sub, blocked);
}

static void core_on_ready_event(evutil_socket_t fd, short what, void *arg)
{
    struct core_subscription *sub = arg;
    if (sub->ready_sent)
        return;
    sub->ready_sent = true;
    sub->handlers.ready(sub->opaque);
    core_subscription_apply_block(sub);
}

/* ---- limits.max_unacked ---- */

static bool core_unacked_full(const struct core_session *session)
{
    return session->unacked >= core_config(session->core)->limits.max_unacked;
}

/* Below the limit again: unblock the session's subscriptions (on a later
 * loop turn than the settlement, so an engine is never re-entered from a
 * delivery it is making). */
static void core_on_unacked_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_session *session = arg;
    if (!session->unacked_stopped || core_unacked_full(session))
        return;
    session->unacked_stopped = false;
    for (struct core_subscription *sub = session->subscriptions, *next; sub; sub = next) {
        next = sub->next;
        if (session->unacked_stopped)
            break; /* an unblocked subscription's deliveries filled it again */
        core_subscription_apply_block(sub);
    }
}

/* A counted delivery went out: at the limit, block every subscription. */
static void core_unacked_delivered(struct core_subscription *sub)
{
    struct core_session *session = sub->session;
    if (session->unacked_stopped || !core_unacked_full(session))
        return;
    session->unacked_stopped = true;
    core_limit_refused(session->core, CORE_LIMIT_UNACKED);
    log_debug("core", "%s: %u unsettled deliveries (limits.max_unacked): deliveries stop",
              session->peer, session->unacked);
    for (struct core_subscription *s = session->subscriptions; s; s = s->next)
        core_subscription_apply_block(s);
}

/* `count` of the subscription's deliveries were settled (or dropped with it). */
static void core_unacked_settled(struct core_subscription *sub, uint32_t count)
{
    struct core_session *session = sub->session;
    if (count > sub->unacked)
        count = sub->unacked;
    sub->unacked -= count;
    session->unacked = session->unacked > count ? session->unacked - count : 0;
    if (!session->unacked_stopped || core_unacked_full(session))
        return;
    if (!session->unacked_event)
        session->unacked_event =
            event_new(session->core->base, -1, 0, core_on_unacked_event, session);
    if (session->unacked_event)
        event_active(session->unacked_event, EV_TIMEOUT, 0);
    else
        core_on_unacked_event(-1, 0, session); /* out of memory: at once */
}

void core_unacked_session_closed(struct core_session *session)
{
    if (session->unacked_event)
        event_free(session->unacked_event);
    session->unacked_event = NULL;
}

/* ---- what engines call (engine_context) ---- */

/* Positioned: the ready callback runs on the next loop turn. */
static void core_subscription_schedule_ready(struct core_subscription *sub)
{
    if (!sub->ready_sent)
        event_active(sub->ready_event, EV_TIMEOUT, 0);
}

static void core_subscription_deliver(struct core_subscription *sub,
                                      const struct core_delivery *delivery)
{
    bool counted = sub->counts_unacked && delivery->id != 0;
    if (counted) { /* before: the adapter may settle it inside deliver */
        sub->unacked++;
        sub->session->unacked++;
    }
    sub->handlers.deliver(sub->opaque, delivery);
    if (counted)
        core_unacked_delivered(sub);
}

static void core_subscription_failed(struct core_subscription *sub, int error, const char *reason)
{
    sub->handlers.failed(sub->opaque, error, reason);
}

static void core_subscription_browse_end(struct core_subscription *sub)
{
    if (sub->handlers.browse_end)
        sub->handlers.browse_end(sub->opaque);
}

static bool core_subscription_may_consume_topic(struct core_subscription *sub, const char *topic)
{
    return core_session_may_consume_topic(sub->session, topic);
}

void core_subscription_context(struct engine_context *context)
{
    context->ready = core_subscription_schedule_ready;
    context->deliver = core_subscription_deliver;
    context->failed = core_subscription_failed;
    context->browse_end = core_subscription_browse_end;
    context->may_consume_topic = core_subscription_may_consume_topic;
}

/* The engine that serves a subscription (architecture "Engines"). */
static struct engine *core_subscription_engine(struct core *core,
                                               const struct destination *destination,
                                               const struct core_subscribe_options *options,
                                               const char *reply_token)
{
    const char *durable_name = options->durable_name;
    if (reply_token)
        return core->temporary_engine;
    if (options->browse)
        return core->topic_engine; /* a group-less read of the queue's topic */
    if (destination->kind == DESTINATION_QUEUE && options->stream_offset)
        return core->topic_engine; /* a stream queue: its topic, read from an offset */
    if (destination->kind == DESTINATION_QUEUE || durable_name)
        return core->queue_engine;
    return core->topic_engine;
}

/* Allocate a subscription for `engine`, not attached, not linked. NULL with
 * err and *error_code. */
static struct core_subscription *core_subscription_new(
    struct core_session *session, struct engine *engine, const struct destination *destination,
    const struct core_subscribe_options *options, const struct core_subscription_handlers *handlers,
    void *opaque, const char *reply_token, int *error_code, char *err, size_t err_size)
{
    struct core *core = session->core;
    /* one allocation: the subscription and its engine's state */
    struct core_subscription *sub = calloc(1, sizeof(*sub) + engine->ops->state_size);
    if (!sub || !(sub->ready_event = event_new(core->base, -1, 0, core_on_ready_event, sub)) ||
        (options->durable_name && !(sub->durable_name = strdup(options->durable_name))) ||
        (reply_token && !(sub->reply_token = strdup(reply_token)))) {
        if (sub && sub->ready_event)
            event_free(sub->ready_event);
        if (sub)
            free(sub->durable_name);
        free(sub);
        snprintf(err, err_size, "out of memory");
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    sub->session = session;
    sub->client_id = session->client_id;
    sub->vhost = session->vhost;
    sub->topic_prefix = session->topic_prefix;
    sub->destination = *destination;
    sub->options = *options;
    sub->options.durable_name = sub->durable_name;
    sub->options.binding_key = NULL;
    sub->options.selector = NULL;      /* parsed into sub->selector by core_subscribe */
    sub->options.stream_offset = NULL; /* parsed into sub->stream_offset by core_subscribe */
    if (sub->options.credit == 0)
        sub->options.credit = 1;
    sub->handlers = *handlers;
    sub->opaque = opaque;
    sub->blocked = true; /* until ready: see core_subscription_apply_block */
    sub->counts_unacked = !options->auto_accept && engine->ops->settle != NULL;
    sub->engine = engine;
    sub->engine_state = sub->engine_storage;
    return sub;
}

static void core_subscription_free(struct core_subscription *sub)
{
    selector_free(sub->selector);
    event_free(sub->ready_event);
    free(sub->durable_name);
    free(sub->reply_token);
    free(sub);
}

/* Is `sub` an exclusive consumer of a queue (core_exclusive.c)? */
static bool core_subscription_exclusive(const struct core_subscription *sub)
{
    return sub->options.exclusive_consumer && sub->destination.kind == DESTINATION_QUEUE &&
           !sub->durable_name;
}

static void core_subscription_link(struct core_subscription *sub)
{
    struct core_session *session = sub->session;
    sub->next = session->subscriptions;
    if (session->subscriptions)
        session->subscriptions->prev = sub;
    session->subscriptions = sub;
}

int core_subscription_attach(struct core_subscription *sub, const struct destination *destination,
                             char *err, size_t err_size)
{
    struct engine *engine = sub->session->core->queue_engine;
    if (destination->kind != DESTINATION_QUEUE || sub->engine != engine) {
        snprintf(err, err_size, "internal error: only queues are attached later");
        return CORE_ERR_INTERNAL;
    }
    sub->destination = *destination;
    int rc = engine->ops->subscribe(engine, sub, err, err_size);
    if (rc == CORE_OK) {
        sub->attached = true;
        core_queue_expiry_in_use(sub->session->core, sub->vhost, destination->name);
    }
    return rc;
}

/* Allocate a subscription (it owns `selector`, parsed, or NULL: freed also
 * on failure; `stream_offset`, parsed, or NULL, is copied) and hand it to
 * its engine. */
static struct core_subscription *
core_subscription_start(struct core_session *session, const struct destination *destination,
                        const struct core_subscribe_options *options,
                        const struct stream_offset *stream_offset, struct selector *selector,
                        const struct core_subscription_handlers *handlers, void *opaque,
                        const char *reply_token, int *error_code, char *err, size_t err_size)
{
    struct core *core = session->core;
    struct engine *engine = core_subscription_engine(core, destination, options, reply_token);
    struct core_subscription *sub =
        core_subscription_new(session, engine, destination, options, handlers, opaque, reply_token,
                              error_code, err, err_size);
    if (!sub) {
        selector_free(selector);
        return NULL;
    }
    sub->selector = selector; /* before the engine sees it: a queue asks it at once */
    if (stream_offset) {
        sub->replay = true;
        sub->stream_offset = *stream_offset;
    }
    int rc = engine->ops->subscribe(engine, sub, err, err_size);
    if (rc != CORE_OK) {
        core_subscription_free(sub);
        *error_code = rc;
        return NULL;
    }
    sub->attached = true;
    core_subscription_link(sub);
    if (destination->kind == DESTINATION_QUEUE && !options->durable_name)
        core_queue_expiry_in_use(core, session->vhost, destination->name); /* x-expires */
    return sub;
}

/* options->selector parsed (architecture §13): 0 with *out (NULL without
 * one), or -1 with the error code and reason (a bad selector names the
 * position). */
static int core_selector_parse(const struct core_subscribe_options *options, struct selector **out,
                               int *error_code, char *err, size_t err_size)
{
    *out = NULL;
    if (!options->selector)
        return 0;
    char why[256];
    if (!(*out = selector_parse(options->selector, why, sizeof(why)))) {
        snprintf(err, err_size, "bad selector: %s", why);
        *error_code = strcmp(why, "out of memory") == 0 ? CORE_ERR_INTERNAL : CORE_ERR_INVALID;
        return -1;
    }
    return 0;
}

/* Is queue `name` a stream (x-queue-type stream, architecture §13 "Stream
 * queues") in the definitions view? */
static bool core_queue_is_stream(struct core *core, const char *vhost, const char *name)
{
    const struct queue_definition *definition =
        definitions_queue(core_definitions(core), vhost, name);
    const json_t *type =
        definition ? json_object_get(definition->spec.arguments, "x-queue-type") : NULL;
    return type && json_is_string(type) && strcmp(json_string_value(type), "stream") == 0;
}

/* Does the queue read its own topic only (no bindings to other exchanges)?
 * CORE_OK, or an error with the reason naming what would need it. */
static int core_queue_reads_own_topic(struct core_session *session,
                                      const struct destination *destination, const char *display,
                                      const char *what, char *err, size_t err_size)
{
    char **topics = NULL;
    size_t count = 0;
    if (core_queue_topics(session->core, session->vhost, destination->name, &topics, &count) < 0) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    for (size_t i = 0; i < count; i++)
        free(topics[i]);
    free(topics);
    if (count > 1) {
        snprintf(err, err_size,
                 "%s a queue bound to exchanges is not built yet; %s reads %zu topics", what,
                 display, count);
        return CORE_ERR_UNSUPPORTED;
    }
    return CORE_OK;
}

/* Can `destination` be browsed: a queue reading its own topic only (a
 * browse reads that topic from the group's committed offsets), without a
 * durable name or a replay start? CORE_OK or an error with the reason. */
static int core_browse_check(struct core_session *session, const struct destination *destination,
                             const struct core_subscribe_options *options, const char *display,
                             char *err, size_t err_size)
{
    if (destination->kind != DESTINATION_QUEUE || options->durable_name || options->stream_offset) {
        snprintf(err, err_size, "browsing works on queues only; %s is not one", display);
        return CORE_ERR_UNSUPPORTED;
    }
    return core_queue_reads_own_topic(session, destination, display, "browsing", err, err_size);
}

/* An exchange subscription (RabbitMQ's STOMP /exchange/NAME/KEY): a topic
 * subscription for the topic-per-key amq.topic, else its own server-named,
 * exclusive, auto-delete queue bound with the key (core_exchange_subscribe:
 * declared and bound through the declare API, attached when both are
 * applied; `ready` follows from the queue engine), deleted with the
 * subscription. */
static struct core_subscription *
core_subscribe_exchange(struct core_session *session, const struct destination *exchange,
                        const struct core_subscribe_options *options,
                        const struct core_subscription_handlers *handlers, void *opaque,
                        int *error_code, char *err, size_t err_size)
{
    const char *key = options->binding_key ? options->binding_key : "";
    struct core_subscribe_options plain = *options;
    plain.binding_key = NULL;
    plain.durable_name = NULL;
    if (engine_exchange_is_topic_per_key(exchange->name)) {
        struct destination topic;
        static const struct address_prefix by_key_prefix[] = {
            {"", DESTINATION_TOPIC, false},
        };
        static const struct address_spelling by_key = {by_key_prefix, 1, false,
                                                       "a topic name as the key"};
        if (address_parse(&by_key, key, &topic, err, err_size) < 0) {
            *error_code = CORE_ERR_INVALID;
            return NULL;
        }
        if (exchange->name[0] == '\0')
            topic.kind = DESTINATION_QUEUE;
        return core_subscribe(session, &topic, &plain, handlers, opaque, error_code, err, err_size);
    }
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    /* reading an exchange is consuming from it; the server-named queue made
     * for the subscription is the session's own */
    if (!core_acl_allows(session, false, exchange->name)) {
        snprintf(err, err_size, "user '%s' may not consume from exchange '%s'", session->user,
                 exchange->name);
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (options->stream_offset) {
        snprintf(err, err_size,
                 "x-stream-offset (replay) works on stream queues and non-durable "
                 "subscriptions to one topic only so far; exchange '%s' is not a topic",
                 exchange->name);
        *error_code = CORE_ERR_UNSUPPORTED;
        return NULL;
    }
    struct selector *selector;
    if (core_selector_parse(options, &selector, error_code, err, err_size) < 0)
        return NULL;
    struct core_subscription *sub =
        core_subscription_new(session, session->core->queue_engine, exchange, &plain, handlers,
                              opaque, NULL, error_code, err, err_size);
    if (!sub) {
        selector_free(selector);
        return NULL;
    }
    sub->selector = selector; /* the queue engine sees it when the queue is attached */
    int rc = core_exchange_subscribe(sub, exchange->name, key, err, err_size);
    if (rc != CORE_OK) {
        core_subscription_free(sub);
        *error_code = rc;
        return NULL;
    }
    core_subscription_link(sub);
    return sub;
}

struct core_subscription *core_subscribe(struct core_session *session,
                                         const struct destination *destination,
                                         const struct core_subscribe_options *options,
                                         const struct core_subscription_handlers *handlers,
                                         void *opaque, int *error_code, char *err, size_t err_size)
{
    char display[ADDRESS_NAME_MAX + 32];
    address_format(destination, display, sizeof(display));
    *error_code = CORE_OK;
    if (destination->kind == DESTINATION_EXCHANGE)
        return core_subscribe_exchange(session, destination, options, handlers, opaque, error_code,
                                       err, err_size);
    if (destination->kind != DESTINATION_QUEUE && destination->kind != DESTINATION_TOPIC) {
        snprintf(err, err_size, "subscribing to %s is not supported yet", display);
        *error_code = CORE_ERR_UNSUPPORTED;
        return NULL;
    }
    if (destination->kind == DESTINATION_QUEUE && options->durable_name) {
        snprintf(err, err_size, "durable subscriptions are for topics; %s is a queue", display);
        *error_code = CORE_ERR_INVALID;
        return NULL;
    }
    if (options->durable_name && !session->client_id && !options->durable_by_destination) {
        snprintf(err, err_size,
                 "a durable subscription needs a client-id on CONNECT (it names the subscription "
                 "together with the subscription name)");
        *error_code = CORE_ERR_INVALID;
        return NULL;
    }
    if (!core_acl_allows(session, false, destination->name) &&
        !(destination->kind == DESTINATION_QUEUE &&
          core_session_owns_exclusive(session, session->vhost, destination->name))) {
        snprintf(err, err_size, "user '%s' may not consume from %s", session->user, display);
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (!destination->wildcard &&
        request_reply_topic_is_reserved(session->core->request_reply, destination->name)) {
        snprintf(err, err_size,
                 "%s is kbridge's reply topic: replies reach only the temporary "
                 "queue they are for",
                 display);
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (destination->kind == DESTINATION_QUEUE && !destination->wildcard) {
        int rc = core_exclusive_check(session, destination->name, options->exclusive_consumer, err,
                                      err_size);
        if (rc != CORE_OK) {
            *error_code = rc;
            return NULL;
        }
    }
    if (options->browse) {
        int rc = core_browse_check(session, destination, options, display, err, err_size);
        if (rc != CORE_OK) {
            *error_code = rc;
            return NULL;
        }
    }
    /* A stream queue is read like a topic replay, from x-stream-offset
     * ("next" when absent, as RabbitMQ): every consumer reads everything,
     * nothing is consumed away (architecture §13 "Stream queues"). */
    bool stream_queue = destination->kind == DESTINATION_QUEUE && !options->browse &&
                        core_queue_is_stream(session->core, session->vhost, destination->name);
    struct core_subscribe_options stream_options;
    if (stream_queue) {
        int rc =
            core_queue_reads_own_topic(session, destination, display, "reading", err, err_size);
        if (rc != CORE_OK) {
            *error_code = rc;
            return NULL;
        }
        stream_options = *options;
        if (!stream_options.stream_offset)
            stream_options.stream_offset = "next";
        options = &stream_options;
    }
    struct stream_offset stream_offset;
    if (options->stream_offset) {
        if ((destination->kind != DESTINATION_TOPIC && !stream_queue) || destination->wildcard ||
            options->durable_name) {
            snprintf(err, err_size,
                     "x-stream-offset (replay) works on stream queues and non-durable "
                     "subscriptions to one topic only so far; %s is %s",
                     display,
                     destination->kind != DESTINATION_TOPIC ? "not a topic or a stream queue"
                     : destination->wildcard                ? "a wildcard"
                                                            : "a durable subscription");
            *error_code = CORE_ERR_UNSUPPORTED;
            return NULL;
        }
        char why[256];
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (stream_offset_parse(options->stream_offset,
                                (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, &stream_offset,
                                why, sizeof(why)) < 0) {
            snprintf(err, err_size, "bad x-stream-offset: %s", why);
            *error_code = CORE_ERR_INVALID;
            return NULL;
        }
    }
    struct selector *selector;
    if (core_selector_parse(options, &selector, error_code, err, err_size) < 0)
        return NULL;
    if (destination->kind == DESTINATION_QUEUE && !stream_queue) {
        int rc = core_exchange_queue_first_use(session, destination, err, err_size);
        if (rc != CORE_OK) {
            selector_free(selector);
            *error_code = rc;
            return NULL;
        }
    }
    struct core_subscription *sub = core_subscription_start(
        session, destination, options, options->stream_offset ? &stream_offset : NULL, selector,
        handlers, opaque, NULL, error_code, err, err_size);
    if (sub && core_subscription_exclusive(sub))
        core_exclusive_changed(session->core); /* the other nodes should know soon */
    return sub;
}

struct core_subscription *
core_subscribe_temporary(struct core_session *session, const struct core_subscribe_options *options,
                         const struct core_subscription_handlers *handlers, void *opaque,
                         char *address, size_t address_size, int *error_code, char *err,
                         size_t err_size)
{
    const struct config *config = core_config(session->core);
    char token[REPLY_TOKEN_MAX + 1];
    struct destination destination = {.kind = DESTINATION_TOPIC};
    *error_code = CORE_OK;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (reply_token_new(config->node_id, token, sizeof(token)) < 0 ||
        reply_topic_name(config->node_id, destination.name, sizeof(destination.name)) < 0) {
        snprintf(err, err_size, "cannot make a temporary queue name: %s", strerror(errno));
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    int n = snprintf(address, address_size, "/reply-queue/%s", token);
    if (n < 0 || (size_t)n >= address_size) {
        snprintf(err, err_size, "temporary queue address does not fit");
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    if (options->selector) {
        snprintf(err, err_size,
                 "message selectors do not apply to temporary queues: their replies are all "
                 "for the requester");
        *error_code = CORE_ERR_UNSUPPORTED;
        return NULL;
    }
    struct core_subscribe_options temporary = *options;
    temporary.durable_name = NULL;
    return core_subscription_start(session, &destination, &temporary, NULL, NULL, handlers, opaque,
                                   token, error_code, err, err_size);
}

void core_subscription_block(struct core_subscription *sub, bool blocked)
{
    sub->client_blocked = blocked;
    core_subscription_apply_block(sub);
}

uint64_t core_subscription_ready_count(const struct core_subscription *sub)
{
    if (!sub->attached || !sub->engine->ops->ready_count)
        return 0;
    return sub->engine->ops->ready_count(sub);
}

bool core_subscription_settles(const struct core_subscription *sub)
{
    return sub->engine->ops->settle != NULL;
}

int core_settle(struct core_subscription *sub, uint64_t id, enum queue_outcome outcome,
                const char *reason)
{
    if (!sub->attached)
        return CORE_ERR_INVALID; /* an exchange subscription still being set up: no deliveries */
    if (!sub->engine->ops->settle)
        return CORE_OK; /* non-durable topic deliveries need no settlement */
    /* counted as settled even when the engine no longer knows it (a late
     * settle after a rebalance): the client settles each delivery once */
    if (sub->counts_unacked && id != 0)
        core_unacked_settled(sub, 1);
    int rc = sub->engine->ops->settle(sub, id, outcome, reason);
    if (rc != CORE_OK)
        (*sub->session->core->late_settles)++;
    return rc;
}

/* End a subscription; `forget`: its engine also deletes what it named. */
static void core_subscription_end(struct core_subscription *sub, bool forget)
{
    struct core_session *session = sub->session;
    core_transaction_subscription_ended(sub);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        session->subscriptions = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    /* the last local subscriber of an auto-delete queue deletes it */
    bool last_of_queue = sub->attached && sub->destination.kind == DESTINATION_QUEUE &&
                         !sub->durable_name && sub->engine->ops->subscriber_count(sub) == 1;
    if (sub->attached)
        sub->engine->ops->unsubscribe(sub, forget);
    else
        core_exchange_subscription_ended(sub); /* still being set up */
    if (sub->unacked > 0)                      /* released by the engine: no longer the client's */
        core_unacked_settled(sub, sub->unacked);
    if (last_of_queue) {
        core_exchange_auto_delete(session, sub->destination.name);
        core_queue_expiry_unused(session->core, sub->vhost, sub->destination.name); /* x-expires */
    }
    bool exclusive = core_subscription_exclusive(sub);
    struct core *core = session->core;
    core_subscription_free(sub);
    if (exclusive)
        core_exclusive_changed(core); /* the queue is free again: tell the other nodes */
}

void core_unsubscribe_forget(struct core_subscription *sub) { core_subscription_end(sub, true); }

void core_unsubscribe(struct core_subscription *sub) { core_subscription_end(sub, false); }
