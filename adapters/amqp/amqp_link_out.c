/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_link_out.c -- links on which the client receives: a core
 * subscription per link (queue, topic, durable topic), deliveries encoded as
 * AMQP messages (amqp_convert.c), link credit and drain, and the client's
 * outcomes mapped to the core's (architecture §5):
 *
 *   accepted                          -> accept
 *   released, modified                -> release, not counted (the client did
 *                                        not try it: AMQP says delivery-count
 *                                        stays)
 *   modified{delivery-failed}         -> release, counted towards max_deliveries
 *   rejected, modified{undeliverable-here}
 *                                     -> reject: dead-lettered at once, the
 *                                        reason taken from the error condition
 *   settled without an outcome        -> accept (the default outcome)
 *
 * A receiver whose snd-settle-mode is `settled` gets pre-settled deliveries
 * and the core settles them as they are sent (auto-ack). The attach is
 * answered only when the core says the subscription is positioned, so a
 * topic receiver misses nothing published after its attach completed.
 *
 * Drain: when the client asks to drain, deliveries continue while there is
 * credit; once AMQP_DRAIN_QUIET_MS pass without one (nothing more is
 * available), the rest of the credit is consumed (pn_link_drained). */
#include <event2/event.h>
#include <proton/codec.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/terminus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_connection.h"
#include "amqp_convert.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "record.h"

_Static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "delivery ids are kept in pointers");

void amqp_link_out_update_block(struct amqp_link *link)
{
    if (!link->core || link->closed)
        return;
    bool blocked =
        !link->ready || link->connection->output_blocked || pn_link_credit(link->link) <= 0;
    if (blocked == link->blocked)
        return;
    link->blocked = blocked;
    core_subscription_block(link->core, blocked);
}

static void amqp_link_out_release(struct amqp_link *link, uint64_t id)
{
    if (id && link->core)
        core_settle(link->core, id, QUEUE_RELEASE_UNDELIVERED, NULL);
}

static void amqp_link_out_deliver(void *opaque, const struct core_delivery *delivery)
{
    struct amqp_link *link = opaque;
    struct amqp_connection *connection = link->connection;
    struct amqp_adapter *adapter = connection->adapter;
    pn_link_t *pl = link->link;
    if (link->closed || !link->ready || pn_link_credit(pl) <= 0) {
        amqp_link_out_release(link, delivery->id);
        amqp_link_out_update_block(link);
        return;
    }

    char err[256] = "";
    pn_message_t *message = adapter->message;
    if (amqp_adapter_message_from_delivery(adapter, delivery, err, sizeof(err)) < 0) {
        log_warn("amqp", "%s: cannot convert %s[%d]@%lld for delivery: %s", connection->base.peer,
                 delivery->topic, (int)delivery->partition, (long long)delivery->offset, err);
        amqp_link_out_release(link, delivery->id);
        return;
    }
    size_t size = adapter->buffer_cap;
    int rc;
    while ((rc = pn_message_encode(message, adapter->buffer, &size)) == PN_OVERFLOW) {
        if (amqp_adapter_buffer_reserve(adapter, adapter->buffer_cap * 2) < 0)
            break;
        size = adapter->buffer_cap;
    }
    if (rc != 0) {
        log_warn("amqp", "%s: cannot encode %s[%d]@%lld: %s", connection->base.peer,
                 delivery->topic, (int)delivery->partition, (long long)delivery->offset,
                 pn_code(rc));
        amqp_link_out_release(link, delivery->id);
        return;
    }
    uint64_t tag = ++connection->next_tag;
    pn_delivery_t *pd = pn_delivery(pl, pn_dtag((const char *)&tag, sizeof(tag)));
    pn_link_send(pl, adapter->buffer, size);
    pn_link_advance(pl);
    if (link->auto_accept)
        pn_delivery_settle(pd); /* the core settled it as it was sent */
    else
        pn_delivery_set_context(pd, (void *)(uintptr_t)delivery->id);
    connection->transfers_out++;
    (*adapter->transfers_sent)++;
    if (link->drain_timer && evtimer_pending(link->drain_timer, NULL)) {
        struct timeval tv = {0, AMQP_DRAIN_QUIET_MS * 1000};
        evtimer_add(link->drain_timer, &tv);
    }
    if (pn_link_credit(pl) <= 0)
        amqp_link_out_update_block(link);
    amqp_connection_schedule(connection);
}

/* The subscription is positioned: answer the attach. */
static void amqp_link_out_ready(void *opaque)
{
    struct amqp_link *link = opaque;
    if (link->closed || link->ready)
        return;
    pn_link_t *pl = link->link;
    link->ready = true;
    pn_terminus_copy(pn_link_source(pl), pn_link_remote_source(pl));
    pn_terminus_copy(pn_link_target(pl), pn_link_remote_target(pl));
    if (link->dynamic) {
        pn_terminus_set_address(pn_link_source(pl), link->address);
        pn_terminus_set_dynamic(pn_link_source(pl), true);
        pn_terminus_set_durability(pn_link_source(pl), PN_NONDURABLE);
        pn_terminus_set_expiry_policy(pn_link_source(pl), PN_EXPIRE_WITH_LINK);
    }
    pn_link_set_snd_settle_mode(pl, link->auto_accept ? PN_SND_SETTLED : PN_SND_UNSETTLED);
    pn_link_set_rcv_settle_mode(pl, PN_RCV_FIRST);
    pn_link_open(pl);
    log_info("amqp", "%s: link '%s' receives from '%s'%s", link->connection->base.peer,
             pn_link_name(pl), link->address, link->auto_accept ? " (pre-settled)" : "");
    amqp_link_out_update_block(link);
    amqp_connection_schedule(link->connection);
}

/* The core gave up on the subscription: refuse or detach the link with the
 * reason; our side is freed from the connection's run loop (not inside this
 * callback). */
static void amqp_link_out_failed(void *opaque, int core_error, const char *reason)
{
    struct amqp_link *link = opaque;
    struct amqp_connection *connection = link->connection;
    if (link->closed)
        return;
    pn_link_t *pl = link->link;
    char description[512];
    snprintf(description, sizeof(description),
             "the subscription to '%s' cannot go on: %s; unsettled messages will be redelivered",
             link->address, reason ? reason : "Kafka error");
    const struct amqp_error *error = &amqp_core_error(core_error)->attach;
    /* what was there is gone (a deleted queue, routing.md "Purge and delete"):
     * RabbitMQ's condition for it */
    static const struct amqp_error deleted = {AMQP_KIND_ADDRESS, "amqp:resource-deleted"};
    if (core_error == CORE_ERR_NOT_FOUND && link->ready)
        error = &deleted;
    amqp_adapter_count_error(connection->adapter, error->kind);
    log_info("amqp", "%s: link '%s' detached: %s", connection->base.peer, pn_link_name(pl),
             description);
    if (pn_link_state(pl) & PN_LOCAL_UNINIT) {
        pn_terminus_set_type(pn_link_source(pl), PN_UNSPECIFIED);
        pn_terminus_copy(pn_link_target(pl), pn_link_remote_target(pl));
        pn_link_open(pl);
    }
    amqp_condition_set(pn_link_condition(pl), error->condition, "%s", description);
    pn_link_close(pl);
    link->closed = true;
    amqp_connection_schedule(connection);
}

static const struct core_subscription_handlers amqp_link_out_handlers = {
    .deliver = amqp_link_out_deliver,
    .ready = amqp_link_out_ready,
    .failed = amqp_link_out_failed,
};

static void amqp_link_out_on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_link *link = arg;
    if (link->closed || !pn_link_get_drain(link->link))
        return;
    pn_link_drained(link->link);
    amqp_link_out_update_block(link);
    amqp_connection_schedule(link->connection);
}

int amqp_link_out_open(struct amqp_link *link, const char *durable_name, const char *selector,
                       const char *stream_offset)
{
    struct amqp_connection *connection = link->connection;
    pn_link_t *pl = link->link;
    link->auto_accept = pn_link_remote_snd_settle_mode(pl) == PN_SND_SETTLED;
    link->blocked = false;
    link->drain_timer =
        evtimer_new(connection->adapter->base.context.base, amqp_link_out_on_drain_timer, link);
    if (!link->drain_timer) {
        amqp_link_refuse(connection, pl, AMQP_KIND_INTERNAL, "amqp:internal-error",
                         "out of memory");
        return -1;
    }
    struct core_subscribe_options options = {
        .auto_accept = link->auto_accept,
        .credit = AMQP_OUT_PREFETCH_MAX,
        .durable_name = durable_name,
        .selector = selector,           /* parsed by the core during the call */
        .stream_offset = stream_offset, /* likewise */
        .browse = link->browse,
        /* /exchange(s)/NAME/KEY: a queue of its own bound with KEY */
        .binding_key = link->destination.key_at ? link->address + link->destination.key_at : NULL,
    };
    int code = 0;
    char err[256] = "";
    struct core_subscription *subscription =
        link->dynamic ? core_subscribe_temporary(connection->session, &options,
                                                 &amqp_link_out_handlers, link, link->address,
                                                 sizeof(link->address), &code, err, sizeof(err))
                      : core_subscribe(connection->session, &link->destination, &options,
                                       &amqp_link_out_handlers, link, &code, err, sizeof(err));
    if (!subscription) {
        struct amqp_error error = amqp_core_error(code)->attach;
        if (code == CORE_ERR_ACCESS)
            amqp_link_refuse(connection, pl, error.kind, error.condition,
                             "user '%s' may not consume from '%s': %s", connection->user,
                             link->address, err);
        else
            amqp_link_refuse(connection, pl, error.kind, error.condition,
                             "cannot receive from '%s': %s", link->address, err);
        return -1;
    }
    link->core = subscription;
    amqp_link_out_update_block(link);
    return 0;
}

void amqp_link_out_flow(struct amqp_link *link)
{
    if (pn_link_get_drain(link->link) && link->drain_timer) {
        struct timeval tv = {0, AMQP_DRAIN_QUIET_MS * 1000};
        evtimer_add(link->drain_timer, &tv);
    }
    amqp_link_out_update_block(link);
}

void amqp_link_out_disposition(struct amqp_link *link, pn_delivery_t *delivery)
{
    bool settled = pn_delivery_settled(delivery);
    uint64_t state = pn_delivery_remote_state(delivery);
    if (!settled && (state == 0 || state == PN_RECEIVED))
        return; /* progress only, no outcome yet */
    uint64_t id = (uint64_t)(uintptr_t)pn_delivery_get_context(delivery);
    int held = amqp_tx_settle(link, delivery, id); /* transactional-state (amqp_tx.c) */
    if (held == 2)
        return;
    if (held == 1) {
        pn_delivery_settle(delivery);
        amqp_connection_schedule(link->connection);
        return;
    }
    enum queue_outcome outcome = QUEUE_ACCEPT;
    char reason[512] = "";
    pn_disposition_t *remote = pn_delivery_remote(delivery);
    switch (state) {
    case PN_RELEASED: outcome = QUEUE_RELEASE_UNDELIVERED; break;
    case PN_MODIFIED:
        if (pn_disposition_is_undeliverable(remote)) {
            outcome = QUEUE_REJECT;
            snprintf(reason, sizeof(reason), "modified with undeliverable-here by the client");
        } else if (pn_disposition_is_failed(remote)) {
            outcome = QUEUE_RELEASE;
        } else {
            outcome = QUEUE_RELEASE_UNDELIVERED;
        }
        break;
    case PN_REJECTED: {
        outcome = QUEUE_REJECT;
        pn_condition_t *condition = pn_disposition_condition(remote);
        if (condition && pn_condition_is_set(condition)) {
            const char *name = pn_condition_get_name(condition);
            const char *description = pn_condition_get_description(condition);
            snprintf(reason, sizeof(reason), "rejected by the client: %s%s%s", name ? name : "",
                     description && *description ? ": " : "", description ? description : "");
        } else {
            snprintf(reason, sizeof(reason), "rejected by the client");
        }
        break;
    }
    default: outcome = QUEUE_ACCEPT; break; /* accepted, or settled without an outcome */
    }
    if (id && link->core)
        core_settle(link->core, id, outcome, reason[0] ? reason : NULL);
    pn_delivery_settle(delivery);
    amqp_connection_schedule(link->connection);
}

void amqp_link_out_close(struct amqp_link *link)
{
    if (link->core) {
        core_unsubscribe(link->core); /* unsettled deliveries are released */
        link->core = NULL;
    }
    if (link->drain_timer) {
        event_free(link->drain_timer);
        link->drain_timer = NULL;
    }
    link->closed = true;
}
