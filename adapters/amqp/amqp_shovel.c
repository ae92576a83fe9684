/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_shovel.c -- a shovel whose legacy end is an AMQP 1.0 broker
 * (architecture §15): one client connection (a libevent bufferevent under
 * proton's connection driver, SASL PLAIN with login/passcode or ANONYMOUS),
 * one session, one link, and one core session.
 *
 * Legacy -> kbridge: a receiving link from the broker's address, unsettled
 * (snd-settle-mode unsettled, rcv-settle-mode first), credit = prefetch
 * minus what is unsettled. Each message is converted by amqp_convert.c (as a
 * client's transfer) and goes through core_publish; the `accepted`
 * disposition (settled) is sent only from the publish's confirmation, i.e.
 * after Kafka has the record. A refused publish is settled `modified
 * delivery-failed` and the connection dropped and retried (the broker
 * redelivers what it had no outcome for). A delivery the broker marks as
 * redelivered (delivery-count > 0, or a header with first-acquirer false)
 * is counted as a duplicate.
 *
 * Kbridge -> legacy: a sending link to the broker's address and a core
 * subscription with credit = prefetch, blocked while the broker gives no
 * link credit. Each delivery is converted back to an AMQP message and sent
 * unsettled; the broker's outcome settles it in kbridge: accepted -> accept,
 * released/modified -> release (delivered again), rejected -> reject
 * (dead-letter path), logged with the broker's condition. Losing the
 * connection ends the subscription, which releases what had no outcome.
 *
 * Before every connect the address is resolved and a passcode_file read on
 * the worker pool (shovel_prepare_start, shovel.h): nothing blocks the loop.
 *
 * Owns: struct amqp_shovel (settings, bufferevent, driver, timers, session,
 * subscription) and its publishes waiting for Kafka. */
#include "amqp_shovel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <inttypes.h>
#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "amqp_adapter.h"
#include "amqp_address.h"
#include "amqp_convert.h"
#include "clock.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "record.h"
#include "shovel.h"

/* How long a stopping shovel waits for the socket to take its last frames,
 * and then for the broker to close (shovel_socket_flush, _linger). */
#define AMQP_SHOVEL_LINGER_MS 1000

enum amqp_shovel_phase {
    AMQP_SHOVEL_WAITING,    /* no connection; the retry timer (or the passcode job) runs */
    AMQP_SHOVEL_CONNECTING, /* TCP connect under way */
    AMQP_SHOVEL_OPENING,    /* SASL, open, attach sent; waiting for the broker's attach */
    AMQP_SHOVEL_OPEN,       /* the link is attached: messages move */
    AMQP_SHOVEL_DRAINING,   /* SIGTERM: no more credit, still accepting what Kafka confirms */
    AMQP_SHOVEL_STOPPED,    /* never reconnects */
};

/* A message handed to the core, waiting for Kafka (legacy -> kbridge). */
struct amqp_shovel_publish {
    struct amqp_shovel_publish *next, *prev;
    struct amqp_shovel *shovel;
    uint64_t connection;     /* the connection its transfer came on */
    pn_delivery_t *delivery; /* valid while that connection is the current one */
};

struct amqp_shovel {
    struct amqp_shovel *next;
    struct amqp_adapter *adapter;
    struct shovel_status *status;
    struct shovel_settings settings;
    struct destination kbridge_destination;
    struct sockaddr_storage sockaddr;
    int sockaddr_len;
    char hostname[300]; /* the open frame's hostname */
    char link_name[96];

    struct core_session *session;
    struct core_subscription *subscription; /* kbridge -> legacy, while open */
    bool subscription_ready;
    bool subscription_blocked;
    struct bufferevent *bev;
    pn_connection_driver_t driver;
    bool driver_ok;
    pn_link_t *link;
    struct event *retry_timer;
    struct event *tick_timer;
    struct event *process_event;
    struct shovel_prepare *prepare; /* resolving the address, reading passcode_file */
    bool prepared;                  /* `sockaddr` holds this connect's address */
    enum amqp_shovel_phase phase;
    uint64_t connection; /* serial of the current connection */
    uint64_t next_tag;
    struct amqp_shovel_publish *publishes;
    bool blocking; /* the failure being handled is kbridge's refusal (state blocked) */
};

static void amqp_shovel_connect(struct amqp_shovel *shovel);
static void amqp_shovel_run(struct amqp_shovel *shovel);

static void amqp_shovel_timeval(uint64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* ---- connection lifecycle ------------------------------------------------------------ */

static void amqp_shovel_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_shovel *shovel = arg;
    shovel_status_reconnect(shovel->status);
    amqp_shovel_connect(shovel);
}

/* Move what proton has to write into the bufferevent, then write the
 * bufferevent's output to the socket now, waiting for the socket at most
 * timeout_ms (before the connection is dropped on purpose). Returns the
 * bytes left unwritten. */
static size_t amqp_shovel_flush_now(struct amqp_shovel *shovel, uint64_t timeout_ms)
{
    if (!shovel->bev)
        return 0;
    struct evbuffer *output = bufferevent_get_output(shovel->bev);
    if (shovel->driver_ok) {
        pn_bytes_t pending;
        while ((pending = pn_connection_driver_write_buffer(&shovel->driver)).size > 0) {
            if (evbuffer_add(output, pending.start, pending.size) < 0)
                break;
            pn_connection_driver_write_done(&shovel->driver, pending.size);
        }
    }
    if (shovel->phase == AMQP_SHOVEL_CONNECTING)
        return evbuffer_get_length(output);
    return shovel_socket_flush(shovel->bev, timeout_ms);
}

/* shovel_goodbye_fn while stopping: the broker's bytes go through proton;
 * true once its close frame came (it answers ours, the last frame we sent,
 * so it has read everything before it). */
static bool amqp_shovel_heard_close(void *opaque, const char *bytes, size_t size)
{
    struct amqp_shovel *shovel = opaque;
    pn_connection_driver_t *driver = &shovel->driver;
    for (;;) {
        pn_event_t *event;
        while ((event = pn_connection_driver_next_event(driver)))
            if (pn_event_type(event) == PN_CONNECTION_REMOTE_CLOSE ||
                pn_event_type(event) == PN_TRANSPORT_CLOSED)
                return true;
        if (size == 0)
            return false;
        pn_rwbytes_t space = pn_connection_driver_read_buffer(driver);
        if (space.size == 0)
            return true; /* proton reads no more: nothing left to wait for */
        size_t take = size < space.size ? size : space.size;
        memcpy(space.start, bytes, take);
        pn_connection_driver_read_done(driver, take);
        bytes += take;
        size -= take;
    }
}

/* Drop the connection (if any) and, unless stopped, try again after the
 * back-off. `error` is the reason, logged and shown as last_error. */
static void amqp_shovel_lost(struct amqp_shovel *shovel, const char *error)
{
    bool blocking = shovel->blocking;
    shovel->blocking = false;
    shovel_prepare_cancel(shovel->prepare);
    shovel->prepare = NULL;
    shovel->prepared = false; /* resolved again at the next connect */
    if (shovel->subscription) {
        core_unsubscribe(shovel->subscription); /* releases what had no outcome */
        shovel->subscription = NULL;
        shovel->subscription_ready = false;
        shovel->subscription_blocked = false;
    }
    for (struct amqp_shovel_publish *publish = shovel->publishes; publish; publish = publish->next)
        publish->delivery = NULL; /* freed with the driver; the broker redelivers them */
    if (shovel->bev) {
        bufferevent_free(shovel->bev);
        shovel->bev = NULL;
    }
    if (shovel->driver_ok) {
        pn_connection_driver_destroy(&shovel->driver);
        shovel->driver_ok = false;
    }
    shovel->link = NULL;
    if (shovel->tick_timer)
        evtimer_del(shovel->tick_timer);
    if (shovel->process_event)
        event_del(shovel->process_event);
    shovel->connection++; /* confirmations of the old connection's publishes settle nothing */
    if (shovel->phase == AMQP_SHOVEL_STOPPED || shovel->phase == AMQP_SHOVEL_DRAINING) {
        shovel->phase = AMQP_SHOVEL_STOPPED;
        return;
    }
    shovel->phase = AMQP_SHOVEL_WAITING;
    uint64_t wait = shovel_backoff_next(&shovel->settings);
    log_warn("shovel", "%s: %s; reconnecting in %" PRIu64 " ms", shovel->settings.name, error,
             wait);
    shovel_status_set(shovel->status, blocking ? SHOVEL_BLOCKED : SHOVEL_CONNECTING, error);
    struct timeval tv;
    amqp_shovel_timeval(wait, &tv);
    event_add(shovel->retry_timer, &tv);
}

/* The kbridge end refused (a publish, the subscription): state blocked
 * until the next connection runs, and the same reconnect as any failure. */
static void amqp_shovel_blocked(struct amqp_shovel *shovel, const char *error)
{
    amqp_shovel_flush_now(shovel, 0); /* the outcomes decided so far, as the socket takes them */
    shovel->blocking = true;
    amqp_shovel_lost(shovel, error);
}

/* Run proton soon (a zero-timeout event: many core callbacks, one write). */
static void amqp_shovel_schedule(struct amqp_shovel *shovel)
{
    if (shovel->driver_ok)
        event_active(shovel->process_event, EV_TIMEOUT, 0);
}

/* "NAME: DESCRIPTION" of a proton condition, or `fallback`. */
static void amqp_shovel_condition_text(pn_condition_t *condition, const char *what,
                                       const char *fallback, char *out, size_t out_size)
{
    if (condition && pn_condition_is_set(condition)) {
        const char *name = pn_condition_get_name(condition);
        const char *description = pn_condition_get_description(condition);
        snprintf(out, out_size, "%s: %s%s%s", what, name ? name : "error",
                 description && *description ? ": " : "", description ? description : "");
    } else {
        snprintf(out, out_size, "%s: %s", what, fallback);
    }
}

/* ---- legacy -> kbridge ----------------------------------------------------------------- */

/* Credit = prefetch minus what is unsettled on the link (none while draining). */
static void amqp_shovel_update_credit(struct amqp_shovel *shovel)
{
    if (!shovel->link || shovel->phase != AMQP_SHOVEL_OPEN || !shovel->settings.to_kbridge)
        return;
    int owed = pn_link_credit(shovel->link) + pn_link_unsettled(shovel->link);
    int want = (int)shovel->settings.prefetch - owed;
    int step = (int)shovel->settings.prefetch / 4; /* top up by quarters of prefetch */
    if (want > 0 && want >= (step > 0 ? step : 1))
        pn_link_flow(shovel->link, want);
}

static void amqp_shovel_publish_unlink(struct amqp_shovel *shovel,
                                       struct amqp_shovel_publish *publish)
{
    if (publish->prev)
        publish->prev->next = publish->next;
    else
        shovel->publishes = publish->next;
    if (publish->next)
        publish->next->prev = publish->prev;
}

/* Settle a received delivery `modified delivery-failed`: the broker may
 * deliver it again (to us after the reconnect). */
static void amqp_shovel_give_back(pn_delivery_t *delivery)
{
    pn_disposition_set_failed(pn_delivery_local(delivery), true);
    pn_delivery_update(delivery, PN_MODIFIED);
    pn_delivery_settle(delivery);
}

/* core_publish_fn: Kafka has the record (or refused it). */
static void amqp_shovel_published(void *opaque, int err, const char *reason)
{
    struct amqp_shovel_publish *publish = opaque;
    struct amqp_shovel *shovel = publish->shovel;
    amqp_shovel_publish_unlink(shovel, publish);
    bool current =
        publish->connection == shovel->connection && publish->delivery && shovel->driver_ok;
    pn_delivery_t *delivery = publish->delivery;
    free(publish);
    if (!current)
        return; /* its connection is gone: the broker redelivers it (a duplicate) */
    if (err == CORE_OK || err == CORE_UNROUTABLE) {
        pn_delivery_update(delivery, PN_ACCEPTED);
        pn_delivery_settle(delivery);
        shovel_status_moved(shovel->status);
        shovel_backoff_reset(&shovel->settings); /* it works again */
        amqp_shovel_update_credit(shovel);
        amqp_shovel_schedule(shovel);
        return;
    }
    amqp_shovel_give_back(delivery);
    char error[SHOVEL_ERROR_MAX];
    snprintf(error, sizeof(error), "Kafka refused a message for %s: %s",
             shovel->settings.kbridge_text, reason ? reason : "no reason given");
    amqp_shovel_blocked(shovel, error);
}

/* Did the broker mark the transfer as a redelivery? delivery-count > 0, or a
 * header section (the encoded message starts with it: descriptor 0x70) whose
 * first-acquirer is false (a message without a header says nothing). */
static bool amqp_shovel_redelivered(pn_message_t *message, const char *bytes, size_t size)
{
    if (pn_message_get_delivery_count(message) > 0)
        return true;
    bool has_header = size >= 3 && bytes[0] == 0x00 && bytes[1] == 0x53 && bytes[2] == 0x70;
    return has_header && !pn_message_is_first_acquirer(message);
}

static void amqp_shovel_on_transfer(struct amqp_shovel *shovel, pn_delivery_t *delivery)
{
    struct amqp_adapter *adapter = shovel->adapter;
    if (!pn_delivery_readable(delivery) || pn_delivery_partial(delivery))
        return; /* proton keeps the frames until the last one */
    size_t pending = pn_delivery_pending(delivery);
    if (amqp_adapter_buffer_reserve(adapter, pending + 1) < 0) {
        amqp_shovel_lost(shovel, "out of memory reading a message");
        return;
    }
    size_t size = 0;
    for (;;) {
        ssize_t n = pn_link_recv(shovel->link, adapter->buffer + size, adapter->buffer_cap - size);
        if (n <= 0)
            break;
        size += (size_t)n;
        if (size == adapter->buffer_cap &&
            amqp_adapter_buffer_reserve(adapter, adapter->buffer_cap * 2) < 0)
            break;
    }
    pn_link_advance(shovel->link);
    if (shovel->phase != AMQP_SHOVEL_OPEN)
        return; /* draining: left unsettled, the broker delivers it again */
    pn_message_t *message = adapter->message;
    pn_message_clear(message);
    char err[256] = "";
    struct amqp_record record;
    if (pn_message_decode(message, adapter->buffer, size) != 0) {
        snprintf(err, sizeof(err), "cannot decode a message from the broker: %s",
                 pn_error_text(pn_message_error(message)));
        amqp_shovel_give_back(delivery);
        amqp_shovel_blocked(shovel, err);
        return;
    }
    if (amqp_shovel_redelivered(message, adapter->buffer, size))
        shovel_status_duplicate(shovel->status);
    if (amqp_record_from_message(message, &record, err, sizeof(err)) < 0) {
        char text[SHOVEL_ERROR_MAX];
        snprintf(text, sizeof(text), "cannot convert a message from the broker: %s", err);
        amqp_shovel_give_back(delivery);
        amqp_shovel_blocked(shovel, text);
        return;
    }
    struct amqp_shovel_publish *publish = calloc(1, sizeof(*publish));
    if (!publish) {
        amqp_record_release(&record);
        amqp_shovel_give_back(delivery);
        amqp_shovel_blocked(shovel, "out of memory");
        return;
    }
    struct core_message core_message = {
        .key = record.key,
        .key_len = record.key_len,
        .body = record.body,
        .body_len = record.body_len,
        .properties = record.properties,
        .property_count = record.property_count,
        .deliver_at = record.deliver_at,
    };
    publish->shovel = shovel;
    publish->connection = shovel->connection;
    publish->delivery = delivery;
    publish->next = shovel->publishes;
    if (shovel->publishes)
        shovel->publishes->prev = publish;
    shovel->publishes = publish;
    int rc = core_publish(shovel->session, &shovel->kbridge_destination, &core_message,
                          amqp_shovel_published, publish, err, sizeof(err));
    amqp_record_release(&record);
    if (rc != CORE_OK) {
        amqp_shovel_publish_unlink(shovel, publish);
        free(publish);
        amqp_shovel_give_back(delivery);
        char text[SHOVEL_ERROR_MAX];
        snprintf(text, sizeof(text), "kbridge refused a message for %s: %s",
                 shovel->settings.kbridge_text, err[0] ? err : "refused");
        amqp_shovel_blocked(shovel, text);
    }
}

/* ---- kbridge -> legacy ----------------------------------------------------------------- */

/* The core may deliver while the subscription is ready and the broker
 * gives credit. */
static void amqp_shovel_update_block(struct amqp_shovel *shovel)
{
    if (!shovel->subscription)
        return;
    bool blocked = !shovel->subscription_ready || !shovel->link ||
                   shovel->phase != AMQP_SHOVEL_OPEN || pn_link_credit(shovel->link) <= 0;
    if (blocked == shovel->subscription_blocked)
        return;
    shovel->subscription_blocked = blocked;
    core_subscription_block(shovel->subscription, blocked);
}

static void amqp_shovel_release(struct amqp_shovel *shovel, uint64_t id)
{
    if (id && shovel->subscription)
        core_settle(shovel->subscription, id, QUEUE_RELEASE_UNDELIVERED, NULL);
}

static void amqp_shovel_deliver(void *opaque, const struct core_delivery *delivery)
{
    struct amqp_shovel *shovel = opaque;
    struct amqp_adapter *adapter = shovel->adapter;
    if (!shovel->link || shovel->phase != AMQP_SHOVEL_OPEN || pn_link_credit(shovel->link) <= 0) {
        amqp_shovel_release(shovel, delivery->id);
        amqp_shovel_update_block(shovel);
        return;
    }
    char err[256] = "";
    pn_message_t *message = adapter->message;
    if (amqp_adapter_message_from_delivery(adapter, delivery, err, sizeof(err)) < 0) {
        log_warn("shovel", "%s: cannot convert %s[%d]@%lld: %s", shovel->settings.name,
                 delivery->topic, (int)delivery->partition, (long long)delivery->offset, err);
        amqp_shovel_release(shovel, delivery->id);
        return;
    }
    /* RabbitMQ checks user-id against the login: the shovel's own login sends */
    pn_message_set_user_id(message, pn_bytes(0, NULL));
    /* the broker's address is the link's target, not the record's old `to` */
    pn_message_set_address(message, NULL);
    size_t size = adapter->buffer_cap;
    int rc;
    while ((rc = pn_message_encode(message, adapter->buffer, &size)) == PN_OVERFLOW) {
        if (amqp_adapter_buffer_reserve(adapter, adapter->buffer_cap * 2) < 0)
            break;
        size = adapter->buffer_cap;
    }
    if (rc != 0) {
        log_warn("shovel", "%s: cannot encode %s[%d]@%lld: %s", shovel->settings.name,
                 delivery->topic, (int)delivery->partition, (long long)delivery->offset,
                 pn_code(rc));
        amqp_shovel_release(shovel, delivery->id);
        return;
    }
    uint64_t tag = ++shovel->next_tag;
    pn_delivery_t *pd = pn_delivery(shovel->link, pn_dtag((const char *)&tag, sizeof(tag)));
    pn_link_send(shovel->link, adapter->buffer, size);
    pn_link_advance(shovel->link);
    pn_delivery_set_context(pd, (void *)(uintptr_t)delivery->id);
    if (pn_link_credit(shovel->link) <= 0)
        amqp_shovel_update_block(shovel);
    amqp_shovel_schedule(shovel);
}

/* The broker's outcome for a transfer we sent. */
static void amqp_shovel_on_outcome(struct amqp_shovel *shovel, pn_delivery_t *delivery)
{
    bool settled = pn_delivery_settled(delivery);
    uint64_t state = pn_delivery_remote_state(delivery);
    if (!settled && (state == 0 || state == PN_RECEIVED))
        return; /* no outcome yet */
    uint64_t id = (uint64_t)(uintptr_t)pn_delivery_get_context(delivery);
    pn_disposition_t *remote = pn_delivery_remote(delivery);
    enum queue_outcome outcome = QUEUE_ACCEPT;
    char reason[512] = "";
    switch (state) {
    case PN_RELEASED: outcome = QUEUE_RELEASE_UNDELIVERED; break;
    case PN_MODIFIED:
        outcome = pn_disposition_is_failed(remote) ? QUEUE_RELEASE : QUEUE_RELEASE_UNDELIVERED;
        break;
    case PN_REJECTED:
        outcome = QUEUE_REJECT;
        amqp_shovel_condition_text(pn_disposition_condition(remote), "rejected by the broker",
                                   "no condition given", reason, sizeof(reason));
        log_warn("shovel", "%s: %s rejected a message for %s (dead-lettered in kbridge): %s",
                 shovel->settings.name, shovel->settings.address,
                 shovel->settings.legacy_destination, reason);
        break;
    default: break; /* accepted, or settled without an outcome (the default: accepted) */
    }
    bool settles = shovel->subscription && core_subscription_settles(shovel->subscription);
    if (shovel->subscription &&
        (!settles || !id ||
         core_settle(shovel->subscription, id, outcome, reason[0] ? reason : NULL) == CORE_OK)) {
        if (outcome == QUEUE_ACCEPT) {
            shovel_status_moved(shovel->status);
            shovel_backoff_reset(&shovel->settings); /* it works again */
        }
    }
    pn_delivery_settle(delivery);
}

static void amqp_shovel_subscription_ready(void *opaque)
{
    struct amqp_shovel *shovel = opaque;
    shovel->subscription_ready = true;
    shovel_status_set(shovel->status, SHOVEL_RUNNING, NULL);
    amqp_shovel_update_block(shovel);
}

static void amqp_shovel_subscription_failed(void *opaque, int error, const char *reason)
{
    struct amqp_shovel *shovel = opaque;
    char text[SHOVEL_ERROR_MAX];
    snprintf(text, sizeof(text), "the subscription to %s failed (%d): %s",
             shovel->settings.kbridge_text, error, reason ? reason : "no reason given");
    amqp_shovel_blocked(shovel, text);
}

/* ---- the broker's events ----------------------------------------------------------------- */

/* The broker attached our link: messages may move. A null terminus is
 * its refusal (RabbitMQ: the detach with the reason follows). */
static void amqp_shovel_on_attached(struct amqp_shovel *shovel)
{
    pn_link_t *link = shovel->link;
    pn_terminus_t *remote =
        shovel->settings.to_kbridge ? pn_link_remote_source(link) : pn_link_remote_target(link);
    if (pn_terminus_get_type(remote) == PN_UNSPECIFIED)
        return; /* refused: the detach says why */
    shovel->phase = AMQP_SHOVEL_OPEN;
    /* from now on proton's idle-timeout watches the broker; a write may take connect_timeout */
    struct timeval write_timeout;
    amqp_shovel_timeval(shovel->settings.timeout_ms, &write_timeout);
    bufferevent_set_timeouts(shovel->bev, NULL, &write_timeout);
    if (shovel->settings.to_kbridge) {
        shovel_status_set(shovel->status, SHOVEL_RUNNING, NULL);
        amqp_shovel_update_credit(shovel);
        return;
    }
    struct core_subscribe_options options = {.credit = shovel->settings.prefetch};
    static const struct core_subscription_handlers handlers = {
        .deliver = amqp_shovel_deliver,
        .ready = amqp_shovel_subscription_ready,
        .failed = amqp_shovel_subscription_failed,
    };
    int code = 0;
    char err[256] = "";
    shovel->subscription = core_subscribe(shovel->session, &shovel->kbridge_destination, &options,
                                          &handlers, shovel, &code, err, sizeof(err));
    if (!shovel->subscription) {
        char text[SHOVEL_ERROR_MAX];
        snprintf(text, sizeof(text), "cannot subscribe to %s: %s", shovel->settings.kbridge_text,
                 err);
        amqp_shovel_blocked(shovel, text);
        return;
    }
    /* the core's own gate holds deliveries until ready; ours (core_subscription_block)
     * starts open: close it until the subscription is ready and the broker gives credit */
    shovel->subscription_blocked = false;
    amqp_shovel_update_block(shovel);
}

static void amqp_shovel_dispatch(struct amqp_shovel *shovel, pn_event_t *event)
{
    char text[SHOVEL_ERROR_MAX];
    switch (pn_event_type(event)) {
    case PN_LINK_REMOTE_OPEN:
        if (pn_event_link(event) == shovel->link && shovel->phase == AMQP_SHOVEL_OPENING)
            amqp_shovel_on_attached(shovel);
        break;
    case PN_LINK_FLOW:
        if (pn_event_link(event) == shovel->link && !shovel->settings.to_kbridge)
            amqp_shovel_update_block(shovel);
        break;
    case PN_DELIVERY: {
        pn_delivery_t *delivery = pn_event_delivery(event);
        if (pn_delivery_link(delivery) != shovel->link)
            break;
        if (shovel->settings.to_kbridge)
            amqp_shovel_on_transfer(shovel, delivery);
        else
            amqp_shovel_on_outcome(shovel, delivery);
        break;
    }
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        snprintf(text, sizeof(text), "the broker detached the link %s %s",
                 shovel->settings.to_kbridge ? "from" : "to", shovel->settings.legacy_destination);
        amqp_shovel_condition_text(pn_link_remote_condition(pn_event_link(event)), text,
                                   "no condition given", text, sizeof(text));
        amqp_shovel_lost(shovel, text);
        break;
    case PN_SESSION_REMOTE_CLOSE:
        amqp_shovel_condition_text(pn_session_remote_condition(pn_event_session(event)),
                                   "the broker ended the session", "no condition given", text,
                                   sizeof(text));
        amqp_shovel_lost(shovel, text);
        break;
    case PN_CONNECTION_REMOTE_CLOSE:
        amqp_shovel_condition_text(pn_connection_remote_condition(pn_event_connection(event)),
                                   "the broker closed the connection", "no condition given", text,
                                   sizeof(text));
        amqp_shovel_lost(shovel, text);
        break;
    case PN_TRANSPORT_ERROR:
        amqp_shovel_condition_text(pn_transport_condition(pn_event_transport(event)),
                                   shovel->settings.address, "transport error", text, sizeof(text));
        amqp_shovel_lost(shovel, text);
        break;
    default: break;
    }
}

static void amqp_shovel_run(struct amqp_shovel *shovel)
{
    if (!shovel->driver_ok || !shovel->bev)
        return;
    uint64_t connection = shovel->connection;
    pn_connection_driver_t *driver = &shovel->driver;
    struct evbuffer *output = bufferevent_get_output(shovel->bev);
    for (int rounds = 0; rounds < 1000; rounds++) {
        bool progress = false;
        pn_event_t *event;
        while ((event = pn_connection_driver_next_event(driver))) {
            amqp_shovel_dispatch(shovel, event);
            if (shovel->connection != connection)
                return; /* dropped */
            progress = true;
        }
        pn_bytes_t pending = pn_connection_driver_write_buffer(driver);
        if (pending.size > 0) {
            if (evbuffer_add(output, pending.start, pending.size) < 0) {
                amqp_shovel_lost(shovel, "out of memory queueing output");
                return;
            }
            pn_connection_driver_write_done(driver, pending.size);
            progress = true;
        }
        if (!progress)
            break;
    }
    if (pn_connection_driver_finished(driver)) {
        amqp_shovel_lost(shovel, "the connection ended");
        return;
    }
    int64_t now = (int64_t)clock_monotonic_ms();
    int64_t deadline = pn_transport_tick(driver->transport, now);
    if (deadline > 0) {
        struct timeval tv;
        amqp_shovel_timeval((uint64_t)(deadline > now ? deadline - now : 0), &tv);
        evtimer_add(shovel->tick_timer, &tv);
    }
}

static void amqp_shovel_on_process(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    amqp_shovel_run(arg);
}

static void amqp_shovel_on_read(struct bufferevent *bev, void *arg)
{
    struct amqp_shovel *shovel = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    uint64_t connection = shovel->connection;
    while (shovel->connection == connection && shovel->driver_ok &&
           evbuffer_get_length(input) > 0) {
        if (pn_connection_driver_read_closed(&shovel->driver)) {
            evbuffer_drain(input, evbuffer_get_length(input));
            break;
        }
        pn_rwbytes_t space = pn_connection_driver_read_buffer(&shovel->driver);
        if (space.size == 0) {
            amqp_shovel_run(shovel);
            if (shovel->connection != connection || !shovel->driver_ok)
                return;
            space = pn_connection_driver_read_buffer(&shovel->driver);
            if (space.size == 0)
                break;
        }
        int n = evbuffer_remove(input, space.start, space.size);
        if (n <= 0)
            break;
        pn_connection_driver_read_done(&shovel->driver, (size_t)n);
        amqp_shovel_run(shovel);
    }
}

/* The TCP connection is up: SASL, open, a session and the link. */
static void amqp_shovel_open(struct amqp_shovel *shovel)
{
    struct shovel_settings *settings = &shovel->settings;
    if (pn_connection_driver_init(&shovel->driver, NULL, NULL) != 0) {
        amqp_shovel_lost(shovel, "cannot create the AMQP connection (out of memory)");
        return;
    }
    shovel->driver_ok = true;
    shovel->phase = AMQP_SHOVEL_OPENING;
    pn_connection_t *connection = shovel->driver.connection;
    pn_transport_t *transport = shovel->driver.transport;
    char container[96];
    snprintf(container, sizeof(container), "kbridge-shovel-%s", settings->name);
    pn_connection_set_container(connection, container);
    pn_connection_set_hostname(connection, shovel->hostname);
    pn_sasl_t *sasl = pn_sasl(transport);
    if (settings->login) {
        pn_connection_set_user(connection, settings->login);
        pn_connection_set_password(connection, settings->passcode ? settings->passcode : "");
        pn_sasl_allowed_mechs(sasl, "PLAIN");
    } else {
        pn_sasl_allowed_mechs(sasl, "ANONYMOUS");
    }
    pn_sasl_set_allow_insecure_mechs(sasl, true); /* PLAIN over TCP, as the STOMP login */
    uint64_t idle = settings->heartbeat_ms;
    pn_transport_set_idle_timeout(transport, idle > UINT32_MAX ? UINT32_MAX : (pn_millis_t)idle);
    pn_connection_open(connection);
    pn_session_t *session = pn_session(connection);
    pn_session_open(session);
    if (settings->to_kbridge) {
        shovel->link = pn_receiver(session, shovel->link_name);
        pn_terminus_set_address(pn_link_source(shovel->link), settings->legacy_destination);
        pn_terminus_set_address(pn_link_target(shovel->link), settings->kbridge_text);
    } else {
        shovel->link = pn_sender(session, shovel->link_name);
        pn_terminus_set_address(pn_link_source(shovel->link), settings->kbridge_text);
        pn_terminus_set_address(pn_link_target(shovel->link), settings->legacy_destination);
    }
    pn_link_set_snd_settle_mode(shovel->link, PN_SND_UNSETTLED);
    pn_link_set_rcv_settle_mode(shovel->link, PN_RCV_FIRST);
    pn_link_open(shovel->link);
    if (pn_connection_driver_bind(&shovel->driver) != 0) {
        amqp_shovel_lost(shovel, "cannot bind the AMQP transport");
        return;
    }
    amqp_shovel_run(shovel);
}

static void amqp_shovel_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct amqp_shovel *shovel = arg;
    if (what & BEV_EVENT_CONNECTED) {
        amqp_shovel_open(shovel);
        return;
    }
    char text[SHOVEL_ERROR_MAX];
    if (what & BEV_EVENT_EOF) {
        if (shovel->driver_ok) { /* what proton makes of the end (a close it read, SASL) */
            uint64_t connection = shovel->connection;
            pn_connection_driver_read_close(&shovel->driver);
            amqp_shovel_run(shovel);
            if (shovel->connection != connection)
                return;
        }
        snprintf(text, sizeof(text), "%s closed the connection", shovel->settings.address);
    } else if (what & BEV_EVENT_TIMEOUT) {
        snprintf(text, sizeof(text), "%s: no %s within the time allowed", shovel->settings.address,
                 (what & BEV_EVENT_WRITING)             ? "progress writing or connecting"
                 : shovel->phase == AMQP_SHOVEL_OPENING ? "SASL outcome, open or attach"
                                                        : "frame");
    } else {
        snprintf(text, sizeof(text), "connection to %s failed: %s", shovel->settings.address,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    amqp_shovel_lost(shovel, text);
}

static void amqp_shovel_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    amqp_shovel_run(arg);
}

/* The address resolved and the passcode_file read on the worker pool
 * (shovel_prepare_start): connect now. */
static void amqp_shovel_prepared(void *opaque, struct shovel_target *target, const char *error)
{
    struct amqp_shovel *shovel = opaque;
    shovel->prepare = NULL;
    if (!target) {
        amqp_shovel_lost(shovel, error);
        return;
    }
    shovel->sockaddr = target->address;
    shovel->sockaddr_len = target->address_len;
    if (target->passcode) {
        shovel_settings_set_passcode(&shovel->settings, target->passcode);
        target->passcode = NULL;
    }
    shovel->prepared = true;
    amqp_shovel_connect(shovel);
}

static void amqp_shovel_connect(struct amqp_shovel *shovel)
{
    if (shovel->phase == AMQP_SHOVEL_STOPPED || shovel->phase == AMQP_SHOVEL_DRAINING)
        return;
    if (!shovel->prepared) { /* first off the loop: the address, the passcode */
        char err[SHOVEL_ERROR_MAX];
        shovel->prepare =
            shovel_prepare_start(shovel->adapter->base.context.workers, &shovel->settings,
                                 amqp_shovel_prepared, shovel, err, sizeof(err));
        if (!shovel->prepare)
            amqp_shovel_lost(shovel, err);
        return;
    }
    shovel->prepared = false; /* resolved again at the next connect */
    shovel->bev =
        bufferevent_socket_new(shovel->adapter->base.context.base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!shovel->bev) {
        amqp_shovel_lost(shovel, "out of memory");
        return;
    }
    shovel->phase = AMQP_SHOVEL_CONNECTING;
    bufferevent_setcb(shovel->bev, amqp_shovel_on_read, NULL, amqp_shovel_on_event, shovel);
    struct timeval io_timeout;
    amqp_shovel_timeval(shovel->settings.timeout_ms, &io_timeout);
    bufferevent_set_timeouts(shovel->bev, &io_timeout, &io_timeout);
    bufferevent_enable(shovel->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(shovel->bev, (struct sockaddr *)&shovel->sockaddr,
                                   shovel->sockaddr_len) < 0) {
        char err[SHOVEL_ERROR_MAX];
        snprintf(err, sizeof(err), "cannot connect to %s", shovel->settings.address);
        amqp_shovel_lost(shovel, err);
    }
}

/* ---- start and stop ----------------------------------------------------------------- */

static void amqp_shovel_free(struct amqp_shovel *shovel)
{
    shovel_prepare_cancel(shovel->prepare);
    shovel->prepare = NULL;
    if (shovel->driver_ok && shovel->bev && shovel->phase != AMQP_SHOVEL_CONNECTING) {
        /* the outcomes decided since the drain leave before the socket closes
         * (best effort; what does not fit is redelivered: a duplicate) */
        size_t waiting = 0;
        for (struct amqp_shovel_publish *publish = shovel->publishes; publish;
             publish = publish->next)
            waiting += publish->delivery != NULL;
        pn_connection_close(shovel->driver.connection);
        size_t unsent = amqp_shovel_flush_now(shovel, AMQP_SHOVEL_LINGER_MS);
        bool closed = unsent == 0 && shovel_socket_linger(shovel->bev, AMQP_SHOVEL_LINGER_MS,
                                                          amqp_shovel_heard_close, shovel);
        if (waiting > 0)
            log_warn("shovel",
                     "%s: stopped with %zu message(s) still waiting for Kafka; the broker "
                     "delivers them again",
                     shovel->settings.name, waiting);
        if (!closed)
            log_warn("shovel",
                     "%s: the broker did not answer the close within %d ms (%zu byte(s) "
                     "unsent); the outcomes sent last may be lost, their messages come again",
                     shovel->settings.name, AMQP_SHOVEL_LINGER_MS, unsent);
    }
    shovel->phase = AMQP_SHOVEL_STOPPED;
    amqp_shovel_lost(shovel, "stopped");
    /* pending publishes: their confirmations never come once the session closes */
    while (shovel->publishes) {
        struct amqp_shovel_publish *publish = shovel->publishes;
        shovel->publishes = publish->next;
        free(publish);
    }
    core_session_close(shovel->session);
    if (shovel->retry_timer)
        event_free(shovel->retry_timer);
    if (shovel->tick_timer)
        event_free(shovel->tick_timer);
    if (shovel->process_event)
        event_free(shovel->process_event);
    shovel_settings_clear(&shovel->settings);
    free(shovel);
}

/* The open frame's hostname: `host`, else the address without its port. */
static void amqp_shovel_hostname(struct amqp_shovel *shovel)
{
    const char *address = shovel->settings.address;
    if (shovel->settings.host) {
        snprintf(shovel->hostname, sizeof(shovel->hostname), "%s", shovel->settings.host);
        return;
    }
    const char *colon = strrchr(address, ':');
    size_t length = colon ? (size_t)(colon - address) : strlen(address);
    if (length >= 2 && address[0] == '[' && address[length - 1] == ']') {
        address++;
        length -= 2;
    }
    snprintf(shovel->hostname, sizeof(shovel->hostname), "%.*s", (int)length, address);
}

static struct amqp_shovel *amqp_shovel_new(struct amqp_adapter *adapter,
                                           const struct config_shovel *config, char *err,
                                           size_t err_size)
{
    struct amqp_shovel *shovel = calloc(1, sizeof(*shovel));
    if (!shovel) {
        snprintf(err, err_size, "shovels %s: out of memory", config->name);
        return NULL;
    }
    shovel->adapter = adapter;
    if (shovel_settings_copy(&shovel->settings, config, err, err_size) < 0) {
        free(shovel);
        return NULL;
    }
    struct event_base *base = adapter->base.context.base;
    shovel->retry_timer = evtimer_new(base, amqp_shovel_on_retry, shovel);
    shovel->tick_timer = evtimer_new(base, amqp_shovel_on_tick, shovel);
    shovel->process_event = event_new(base, -1, 0, amqp_shovel_on_process, shovel);
    if (!shovel->retry_timer || !shovel->tick_timer || !shovel->process_event) {
        snprintf(err, err_size, "shovels %s: out of memory", config->name);
        amqp_shovel_free(shovel);
        return NULL;
    }
    snprintf(shovel->link_name, sizeof(shovel->link_name), "kbridge-shovel-%s",
             shovel->settings.name);
    amqp_shovel_hostname(shovel);
    if (shovel_kbridge_open(&shovel->settings, config, &amqp_addresses, adapter->base.context.core,
                            adapter->base.context.shovels, &shovel->kbridge_destination,
                            &shovel->session, &shovel->status, err, err_size) < 0) {
        amqp_shovel_free(shovel);
        return NULL;
    }
    return shovel;
}

int amqp_shovels_start(struct amqp_adapter *adapter, struct amqp_shovel **list, char *err,
                       size_t err_size)
{
    const struct config *config = amqp_adapter_config(adapter);
    if (!adapter->base.context.shovels)
        return 0; /* a test's server without a shovel table */
    for (size_t i = 0; i < config->shovel_count; i++) {
        const struct config_shovel *entry = &config->shovels[i];
        if (strcmp(entry->source.protocol, "amqp") != 0 &&
            strcmp(entry->destination.protocol, "amqp") != 0)
            continue;
        struct amqp_shovel *shovel = amqp_shovel_new(adapter, entry, err, err_size);
        if (!shovel)
            return -1;
        shovel->next = *list;
        *list = shovel;
        log_info("shovel", "%s: %s -> %s over AMQP 1.0, prefetch %" PRIu32, shovel->settings.name,
                 shovel->status->source, shovel->status->destination, shovel->settings.prefetch);
        amqp_shovel_connect(shovel);
    }
    return 0;
}

void amqp_shovels_drain(struct amqp_shovel *list)
{
    for (struct amqp_shovel *shovel = list; shovel; shovel = shovel->next) {
        event_del(shovel->retry_timer);
        if (shovel->settings.to_kbridge && shovel->driver_ok && shovel->phase == AMQP_SHOVEL_OPEN) {
            /* no detach: the broker would refuse outcomes on a detached link;
             * no more credit, and transfers arriving now stay unsettled */
            shovel->phase = AMQP_SHOVEL_DRAINING;
            shovel_status_set(shovel->status, SHOVEL_CONNECTING, "draining (SIGTERM)");
            continue;
        }
        /* nothing to wait for (towards a broker, deliveries without an outcome are released) */
        shovel_prepare_cancel(shovel->prepare);
        shovel->prepare = NULL;
        shovel->phase = AMQP_SHOVEL_STOPPED;
        amqp_shovel_lost(shovel, "draining (SIGTERM)");
        shovel_status_set(shovel->status, SHOVEL_CONNECTING, "draining (SIGTERM)");
    }
}

void amqp_shovels_stop(struct amqp_shovel **list)
{
    while (*list) {
        struct amqp_shovel *shovel = *list;
        *list = shovel->next;
        amqp_shovel_free(shovel);
    }
}
