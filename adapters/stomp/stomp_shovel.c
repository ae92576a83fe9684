/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_shovel.c -- a shovel whose legacy end is a STOMP broker
 * (architecture §15): one STOMP 1.2 client connection (a libevent
 * bufferevent and the frame codec of stomp_frame.c) and one core session.
 *
 * Legacy -> kbridge: SUBSCRIBE ack:client-individual with prefetch-count /
 * activemq.prefetchSize = prefetch; each MESSAGE goes through core_publish
 * (the STOMP SEND path's call, headers kept as properties, the source's
 * message-id as kbridge-shovel-source-message-id), and its ACK is sent only
 * from the publish's confirmation: nothing is acknowledged at the source
 * before Kafka has it. A refused publish closes the connection (the broker
 * redelivers everything unacknowledged) and reconnects after the back-off.
 *
 * Kbridge -> legacy: a core subscription with credit = prefetch; each
 * delivery is SENT with a receipt header, and settled (accepted) only when
 * the broker's RECEIPT for it arrives. Losing the connection ends the
 * subscription, which releases what was not confirmed (redelivered on the
 * next subscription).
 *
 * Owns: struct stomp_shovel (its strings, parser, bufferevent, timer,
 * session, subscription) and its pending publishes/sends. */
#include "stomp_shovel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "record.h"
#include "shovel.h"
#include "stomp_adapter.h"
#include "stomp_address.h"
#include "stomp_frame.h"

#define SHOVEL_SOURCE_ID_HEADER "kbridge-shovel-source-message-id"
/* How long a stopping shovel waits for the socket to take its last frames,
 * and then for the broker to close (shovel_socket_flush, _linger). */
#define STOMP_SHOVEL_LINGER_MS 1000

enum stomp_shovel_phase {
    SHOVEL_PHASE_WAITING,    /* no connection; the retry timer is armed */
    SHOVEL_PHASE_CONNECTING, /* TCP connect under way */
    SHOVEL_PHASE_LOGIN,      /* CONNECT sent, waiting for CONNECTED */
    SHOVEL_PHASE_OPEN,       /* subscribed / sending */
    SHOVEL_PHASE_DRAINING,   /* SIGTERM: unsubscribed, still acknowledging what Kafka confirms */
    SHOVEL_PHASE_STOPPED,    /* never reconnects */
};

/* A publish handed to the core, waiting for Kafka (legacy -> kbridge). */
struct shovel_publish {
    struct shovel_publish *next, *prev;
    struct stomp_shovel *shovel;
    uint64_t connection; /* the connection its MESSAGE came on */
    char ack[];          /* the MESSAGE's ack id */
};

/* A delivery SENT to the broker, waiting for its RECEIPT (kbridge -> legacy). */
struct shovel_send {
    struct shovel_send *next;
    uint64_t delivery; /* core delivery id to settle */
    uint64_t receipt;  /* our receipt number */
};

struct stomp_shovel {
    struct stomp_shovel *next;
    struct stomp_adapter *adapter;
    struct shovel_status *status;
    struct shovel_settings settings; /* copies of the config, back-off (shovel.h) */
    struct destination kbridge_destination;

    struct core_session *session;
    struct core_subscription *subscription; /* kbridge -> legacy, while open */
    bool subscription_ready;
    struct bufferevent *bev;
    struct stomp_parser *parser;
    struct event *retry_timer;
    struct shovel_prepare *prepare; /* resolving the address, reading passcode_file */
    bool prepared;                  /* `target` holds this connect's address */
    struct sockaddr_storage target;
    int target_len;
    enum stomp_shovel_phase phase;
    uint64_t connection; /* serial of the current connection */
    struct shovel_publish *publishes;
    struct shovel_send *sends, *sends_tail;
    uint64_t next_receipt;
    bool blocking; /* the failure being handled is kbridge's refusal (state blocked) */
};

static void shovel_connect(struct stomp_shovel *shovel);

/* ---- connection lifecycle --------------------------------------------------------- */

static void shovel_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stomp_shovel *shovel = arg;
    shovel_status_reconnect(shovel->status);
    shovel_connect(shovel);
}

/* Forget the kbridge -> legacy sends of the lost connection: their
 * deliveries are released by core_unsubscribe. */
static void shovel_forget_sends(struct stomp_shovel *shovel)
{
    while (shovel->sends) {
        struct shovel_send *send = shovel->sends;
        shovel->sends = send->next;
        free(send);
    }
    shovel->sends_tail = NULL;
}

/* Drop the connection (if any) and, unless stopped, try again after the
 * back-off. `error` is the reason, logged and shown as last_error. */
static void shovel_lost(struct stomp_shovel *shovel, const char *error)
{
    bool blocking = shovel->blocking;
    shovel->blocking = false;
    shovel_prepare_cancel(shovel->prepare);
    shovel->prepare = NULL;
    shovel->prepared = false; /* resolved again at the next connect */
    if (shovel->bev) {
        bufferevent_free(shovel->bev);
        shovel->bev = NULL;
    }
    if (shovel->subscription) {
        core_unsubscribe(shovel->subscription); /* releases what had no RECEIPT */
        shovel->subscription = NULL;
        shovel->subscription_ready = false;
    }
    shovel_forget_sends(shovel);
    stomp_parser_free(shovel->parser);
    shovel->parser = NULL;
    shovel->connection++; /* confirmations of the old connection's publishes ack nothing */
    if (shovel->phase == SHOVEL_PHASE_STOPPED || shovel->phase == SHOVEL_PHASE_DRAINING) {
        shovel->phase = SHOVEL_PHASE_STOPPED;
        return;
    }
    shovel->phase = SHOVEL_PHASE_WAITING;
    uint64_t wait = shovel_backoff_next(&shovel->settings);
    log_warn("shovel", "%s: %s; reconnecting in %" PRIu64 " ms", shovel->settings.name, error,
             wait);
    shovel_status_set(shovel->status, blocking ? SHOVEL_BLOCKED : SHOVEL_CONNECTING, error);
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
    event_add(shovel->retry_timer, &tv);
}

/* The kbridge end refused (a publish, the subscription): state blocked
 * until the next connection runs, and the same reconnect as any failure
 * (what was not acknowledged comes back from the source). */
static void shovel_blocked(struct stomp_shovel *shovel, const char *error)
{
    shovel->blocking = true;
    shovel_lost(shovel, error);
}

/* Write one frame to the broker; false (and the connection is dropped) on failure. */
static bool shovel_write(struct stomp_shovel *shovel, enum stomp_command command,
                         const struct stomp_header *headers, size_t count, const void *body,
                         size_t body_len)
{
    if (stomp_frame_write(bufferevent_get_output(shovel->bev), STOMP_VERSION_1_2, command, headers,
                          count, body, body_len, body_len > 0) < 0) {
        shovel_lost(shovel, "out of memory writing a frame");
        return false;
    }
    return true;
}

#define HEADER(n, v) ((struct stomp_header){(n), (v), sizeof(n) - 1, strlen(v)})

/* ---- legacy -> kbridge ------------------------------------------------------------ */

static void shovel_publish_unlink(struct stomp_shovel *shovel, struct shovel_publish *publish)
{
    if (publish->prev)
        publish->prev->next = publish->next;
    else
        shovel->publishes = publish->next;
    if (publish->next)
        publish->next->prev = publish->prev;
}

/* core_publish_fn: Kafka has the record (or refused it). */
static void shovel_published(void *opaque, int err, const char *reason)
{
    struct shovel_publish *publish = opaque;
    struct stomp_shovel *shovel = publish->shovel;
    shovel_publish_unlink(shovel, publish);
    bool current = publish->connection == shovel->connection && shovel->bev &&
                   (shovel->phase == SHOVEL_PHASE_OPEN || shovel->phase == SHOVEL_PHASE_DRAINING);
    if (err == CORE_OK || err == CORE_UNROUTABLE) {
        if (current) {
            struct stomp_header ack = HEADER("id", publish->ack);
            if (shovel_write(shovel, STOMP_COMMAND_ACK, &ack, 1, NULL, 0)) {
                shovel_status_moved(shovel->status);
                shovel_backoff_reset(&shovel->settings); /* it works again */
            }
        }
        /* else: its connection is gone; the broker redelivers it (a duplicate) */
    } else if (current) {
        char error[SHOVEL_ERROR_MAX];
        snprintf(error, sizeof(error), "Kafka refused a message for %s: %s",
                 shovel->settings.kbridge_text, reason ? reason : "no reason given");
        shovel_blocked(shovel, error); /* unacknowledged messages come back after the reconnect */
    }
    free(publish);
}

static bool shovel_frame_level(const char *name)
{
    static const char *const names[] = {"destination", "content-length", "subscription",
                                        "ack",         "message-id",     "receipt",
                                        "transaction", "redelivered"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static void shovel_on_message(struct stomp_shovel *shovel, const struct stomp_frame *frame)
{
    const char *ack = stomp_frame_header_value(frame, "ack");
    const char *message_id = stomp_frame_header_value(frame, "message-id");
    if (!ack)
        ack = message_id;
    if (!ack) {
        shovel_lost(shovel, "the broker sent a MESSAGE without ack or message-id header");
        return;
    }
    const char *redelivered = stomp_frame_header_value(frame, "redelivered");
    if (redelivered && strcmp(redelivered, "true") == 0)
        shovel_status_duplicate(shovel->status);

    struct core_property *properties = calloc(frame->header_count + 1, sizeof(*properties));
    size_t ack_len = strlen(ack);
    struct shovel_publish *publish = calloc(1, sizeof(*publish) + ack_len + 1);
    if (!properties || !publish) {
        free(properties);
        free(publish);
        shovel_lost(shovel, "out of memory");
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < frame->header_count; i++) {
        const struct stomp_header *header = &frame->headers[i];
        if (shovel_frame_level(header->name) ||
            !record_header_from_client(header->name, header->name_len))
            continue;
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(frame->headers[j].name, header->name) == 0;
        if (!repeated)
            properties[count++] =
                (struct core_property){header->name, header->value, header->value_len};
    }
    if (message_id)
        properties[count++] =
            (struct core_property){SHOVEL_SOURCE_ID_HEADER, message_id, strlen(message_id)};
    struct core_message message = {
        .body = frame->body,
        .body_len = frame->body_len,
        .properties = properties,
        .property_count = count,
    };
    publish->shovel = shovel;
    publish->connection = shovel->connection;
    memcpy(publish->ack, ack, ack_len + 1);
    publish->next = shovel->publishes;
    if (shovel->publishes)
        shovel->publishes->prev = publish;
    shovel->publishes = publish;
    char err[256] = "";
    int rc = core_publish(shovel->session, &shovel->kbridge_destination, &message, shovel_published,
                          publish, err, sizeof(err));
    free(properties);
    if (rc != CORE_OK) {
        shovel_publish_unlink(shovel, publish);
        free(publish);
        char error[SHOVEL_ERROR_MAX];
        snprintf(error, sizeof(error), "kbridge refused a message for %s: %s",
                 shovel->settings.kbridge_text, err[0] ? err : "refused");
        shovel_blocked(shovel, error);
    }
}

/* ---- kbridge -> legacy ------------------------------------------------------------ */

/* Record headers not passed on in a SEND: frame-level ones, and user-id,
 * which RabbitMQ checks against the login (the shovel's own user sends). */
static bool shovel_send_refused(const char *name)
{
    static const char *const names[] = {"destination", "receipt",    "content-length",
                                        "transaction", "user-id",    "subscription",
                                        "ack",         "redelivered"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static void shovel_deliver(void *opaque, const struct core_delivery *delivery)
{
    struct stomp_shovel *shovel = opaque;
    if (!shovel->bev || shovel->phase != SHOVEL_PHASE_OPEN)
        return; /* not settled: released with the subscription */
    size_t total = core_delivery_header_count(delivery);
    struct stomp_header *headers = calloc(total + 3, sizeof(*headers));
    char **texts = calloc(total + 1, sizeof(*texts));
    struct shovel_send *send = calloc(1, sizeof(*send));
    char receipt[32];
    bool ok = headers && texts && send;
    size_t count = 0;
    for (size_t i = 0; ok && i < total; i++) {
        const char *name;
        const void *value;
        size_t value_len;
        if (core_delivery_header(delivery, i, &name, &value, &value_len) < 0)
            continue;
        size_t name_len = strlen(name);
        if (!record_header_delivered(name, name_len, RECORD_DELIVER_CLIENT) ||
            !stomp_header_fits(STOMP_VERSION_1_2, name, name_len, value, value_len) ||
            shovel_send_refused(name))
            continue;
        if (!(texts[i] = strndup(value, value_len))) {
            ok = false;
            break;
        }
        /* brokers refuse message-id on SEND (RabbitMQ: "not allowed"): kept under our name */
        if (strcmp(name, "message-id") == 0)
            headers[count++] = (struct stomp_header){SHOVEL_SOURCE_ID_HEADER, texts[i],
                                                     strlen(SHOVEL_SOURCE_ID_HEADER), value_len};
        else
            headers[count++] = (struct stomp_header){name, texts[i], name_len, value_len};
    }
    if (ok) {
        send->delivery = delivery->id;
        send->receipt = ++shovel->next_receipt;
        snprintf(receipt, sizeof(receipt), "shovel-%" PRIu64, send->receipt);
        headers[count++] = HEADER("destination", shovel->settings.legacy_destination);
        headers[count++] = HEADER("receipt", receipt);
        ok = stomp_frame_write(bufferevent_get_output(shovel->bev), STOMP_VERSION_1_2,
                               STOMP_COMMAND_SEND, headers, count, delivery->body,
                               delivery->body_len, true) == 0;
    }
    for (size_t i = 0; texts && i < total; i++)
        free(texts[i]);
    free(texts);
    free(headers);
    if (!ok) {
        free(send);
        shovel_lost(shovel, "out of memory sending a message");
        return;
    }
    if (shovel->sends_tail)
        shovel->sends_tail->next = send;
    else
        shovel->sends = send;
    shovel->sends_tail = send;
}

static void shovel_subscription_ready(void *opaque)
{
    struct stomp_shovel *shovel = opaque;
    shovel->subscription_ready = true;
    shovel_status_set(shovel->status, SHOVEL_RUNNING, NULL);
}

static void shovel_subscription_failed(void *opaque, int error, const char *reason)
{
    struct stomp_shovel *shovel = opaque;
    char text[SHOVEL_ERROR_MAX];
    snprintf(text, sizeof(text), "the subscription to %s failed (%d): %s",
             shovel->settings.kbridge_text, error, reason ? reason : "no reason given");
    shovel_blocked(shovel, text);
}

/* A RECEIPT: settle the delivery it confirms (and, STOMP receipts being in
 * order, nothing else is owed before it). */
static void shovel_on_receipt(struct stomp_shovel *shovel, const struct stomp_frame *frame)
{
    const char *id = stomp_frame_header_value(frame, "receipt-id");
    uint64_t number = 0;
    if (!id || sscanf(id, "shovel-%" SCNu64, &number) != 1)
        return;
    struct shovel_send **at = &shovel->sends, *prev = NULL;
    while (*at && (*at)->receipt != number) {
        prev = *at;
        at = &(*at)->next;
    }
    struct shovel_send *send = *at;
    if (!send)
        return;
    *at = send->next;
    if (shovel->sends_tail == send)
        shovel->sends_tail = prev;
    /* a non-durable topic's deliveries have nothing to settle (id 0) */
    bool settles = shovel->subscription && core_subscription_settles(shovel->subscription);
    if (shovel->subscription && (!settles || core_settle(shovel->subscription, send->delivery,
                                                         QUEUE_ACCEPT, NULL) == CORE_OK)) {
        shovel_status_moved(shovel->status);
        shovel_backoff_reset(&shovel->settings); /* it works again */
    }
    free(send);
}

/* ---- frames from the broker ------------------------------------------------------- */

static void shovel_on_connected(struct stomp_shovel *shovel, const struct stomp_frame *frame)
{
    stomp_parser_set_version(shovel->parser, STOMP_VERSION_1_2);
    shovel->phase = SHOVEL_PHASE_OPEN;
    /* We asked for the broker's heart-beats (CONNECT heart-beat:0,N): it
     * sends every max(its sx, N) ms when both are > 0; silence for three of
     * those means the connection is dead (no RST after a network failure). */
    uint32_t sx = 0, sy = 0;
    const char *heartbeat = stomp_frame_header_value(frame, "heart-beat");
    struct timeval *read_timeout = NULL, tv;
    if (shovel->settings.heartbeat_ms > 0 && heartbeat &&
        stomp_heartbeat_parse(heartbeat, &sx, &sy) == 0 && sx > 0) {
        uint64_t interval = sx > shovel->settings.heartbeat_ms ? sx : shovel->settings.heartbeat_ms;
        uint64_t limit = 3 * interval;
        tv = (struct timeval){(time_t)(limit / 1000), (suseconds_t)((limit % 1000) * 1000)};
        read_timeout = &tv;
    }
    struct timeval write_timeout = {(time_t)(shovel->settings.timeout_ms / 1000),
                                    (suseconds_t)((shovel->settings.timeout_ms % 1000) * 1000)};
    bufferevent_set_timeouts(shovel->bev, read_timeout, &write_timeout);
    /* the back-off restarts from reconnect_delay_initial once a message moves
     * (a broker that accepts the login and then refuses keeps backing off) */
    if (shovel->settings.to_kbridge) {
        char prefetch[16];
        snprintf(prefetch, sizeof(prefetch), "%" PRIu32, shovel->settings.prefetch);
        struct stomp_header headers[] = {
            HEADER("id", "shovel"),
            HEADER("destination", shovel->settings.legacy_destination),
            HEADER("ack", "client-individual"),
            HEADER("prefetch-count", prefetch),
            HEADER("activemq.prefetchSize", prefetch),
        };
        if (shovel_write(shovel, STOMP_COMMAND_SUBSCRIBE, headers, 5, NULL, 0))
            shovel_status_set(shovel->status, SHOVEL_RUNNING, NULL);
        return;
    }
    struct core_subscribe_options options = {.credit = shovel->settings.prefetch};
    static const struct core_subscription_handlers handlers = {
        .deliver = shovel_deliver,
        .ready = shovel_subscription_ready,
        .failed = shovel_subscription_failed,
    };
    int code = 0;
    char err[256] = "";
    shovel->subscription = core_subscribe(shovel->session, &shovel->kbridge_destination, &options,
                                          &handlers, shovel, &code, err, sizeof(err));
    if (!shovel->subscription) {
        char text[SHOVEL_ERROR_MAX];
        snprintf(text, sizeof(text), "cannot subscribe to %s: %s", shovel->settings.kbridge_text,
                 err);
        shovel_blocked(shovel, text);
    }
}

/* One frame; false when the connection was dropped. */
static bool shovel_on_frame(struct stomp_shovel *shovel, const struct stomp_frame *frame)
{
    uint64_t connection = shovel->connection;
    switch (frame->command) {
    case STOMP_COMMAND_CONNECTED:
        if (shovel->phase == SHOVEL_PHASE_LOGIN)
            shovel_on_connected(shovel, frame);
        break;
    case STOMP_COMMAND_MESSAGE:
        if (shovel->settings.to_kbridge && shovel->phase == SHOVEL_PHASE_OPEN)
            shovel_on_message(shovel, frame);
        break;
    case STOMP_COMMAND_RECEIPT:
        if (!shovel->settings.to_kbridge)
            shovel_on_receipt(shovel, frame);
        break;
    case STOMP_COMMAND_ERROR: {
        const char *message = stomp_frame_header_value(frame, "message");
        char text[SHOVEL_ERROR_MAX];
        snprintf(text, sizeof(text), "the broker sent ERROR: %s%s%.200s",
                 message ? message : "(no message header)", frame->body_len ? ": " : "",
                 frame->body);
        shovel_lost(shovel, text);
        break;
    }
    default: break;
    }
    return shovel->connection == connection && shovel->bev != NULL;
}

static void shovel_on_read(struct bufferevent *bev, void *arg)
{
    struct stomp_shovel *shovel = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(input);
        if (len == 0)
            return;
        const char *data = (const char *)evbuffer_pullup(input, -1);
        size_t consumed = 0;
        struct stomp_frame *frame = NULL;
        char err[256] = "";
        enum stomp_parse_status status =
            stomp_parse(shovel->parser, data, len, &consumed, &frame, err, sizeof(err));
        if (status == STOMP_PARSE_NEED_MORE)
            return;
        if (status == STOMP_PARSE_ERROR) {
            char text[SHOVEL_ERROR_MAX];
            snprintf(text, sizeof(text), "cannot parse the broker's frames: %s", err);
            shovel_lost(shovel, text);
            return;
        }
        evbuffer_drain(input, consumed);
        if (status == STOMP_PARSE_FRAME) {
            bool alive = shovel_on_frame(shovel, frame);
            stomp_frame_free(frame);
            if (!alive)
                return;
        }
    }
}

static void shovel_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct stomp_shovel *shovel = arg;
    if (what & BEV_EVENT_CONNECTED) {
        shovel->phase = SHOVEL_PHASE_LOGIN;
        struct stomp_header headers[5];
        size_t count = 0;
        headers[count++] = HEADER("accept-version", "1.2");
        headers[count++] = HEADER("host", shovel->settings.host ? shovel->settings.host : "/");
        char heartbeat[32];
        snprintf(heartbeat, sizeof(heartbeat), "0,%" PRIu64, shovel->settings.heartbeat_ms);
        headers[count++] = HEADER("heart-beat", heartbeat);
        if (shovel->settings.login)
            headers[count++] = HEADER("login", shovel->settings.login);
        if (shovel->settings.passcode)
            headers[count++] = HEADER("passcode", shovel->settings.passcode);
        shovel_write(shovel, STOMP_COMMAND_CONNECT, headers, count, NULL, 0);
        return;
    }
    char text[SHOVEL_ERROR_MAX];
    if (what & BEV_EVENT_EOF)
        snprintf(text, sizeof(text), "%s closed the connection", shovel->settings.address);
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(text, sizeof(text), "%s: no %s within the time allowed", shovel->settings.address,
                 (what & BEV_EVENT_WRITING)            ? "progress writing or connecting"
                 : shovel->phase == SHOVEL_PHASE_LOGIN ? "CONNECTED frame"
                                                       : "heart-beat or frame");
    else
        snprintf(text, sizeof(text), "connection to %s failed: %s", shovel->settings.address,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    shovel_lost(shovel, text);
}

/* The address resolved and the passcode_file read on the worker pool
 * (shovel_prepare_start): connect now. */
static void shovel_prepared(void *opaque, struct shovel_target *target, const char *error)
{
    struct stomp_shovel *shovel = opaque;
    shovel->prepare = NULL;
    if (!target) {
        shovel_lost(shovel, error);
        return;
    }
    shovel->target = target->address;
    shovel->target_len = target->address_len;
    if (target->passcode) {
        shovel_settings_set_passcode(&shovel->settings, target->passcode);
        target->passcode = NULL;
    }
    shovel->prepared = true;
    shovel_connect(shovel);
}

static void shovel_connect(struct stomp_shovel *shovel)
{
    const struct config *config = stomp_adapter_config(shovel->adapter);
    struct stomp_limits limits = {
        .max_frame_size = config->limits.max_message_size + 65536,
        .max_headers = 1024,
        .max_header_length = 65536,
    };
    char err[SHOVEL_ERROR_MAX];
    if (!shovel->prepared) { /* first off the loop: the address, the passcode */
        shovel->phase = SHOVEL_PHASE_CONNECTING;
        shovel->prepare =
            shovel_prepare_start(shovel->adapter->base.context.workers, &shovel->settings,
                                 shovel_prepared, shovel, err, sizeof(err));
        if (!shovel->prepare)
            shovel_lost(shovel, err);
        return;
    }
    shovel->prepared = false;
    shovel->parser = stomp_parser_new(&limits);
    shovel->bev =
        bufferevent_socket_new(shovel->adapter->base.context.base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!shovel->parser || !shovel->bev) {
        shovel_lost(shovel, "out of memory");
        return;
    }
    shovel->phase = SHOVEL_PHASE_CONNECTING;
    bufferevent_setcb(shovel->bev, shovel_on_read, NULL, shovel_on_event, shovel);
    struct timeval io_timeout = {(time_t)(shovel->settings.timeout_ms / 1000),
                                 (suseconds_t)((shovel->settings.timeout_ms % 1000) * 1000)};
    bufferevent_set_timeouts(shovel->bev, &io_timeout, &io_timeout);
    bufferevent_enable(shovel->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(shovel->bev, (struct sockaddr *)&shovel->target,
                                   shovel->target_len) < 0) {
        snprintf(err, sizeof(err), "cannot connect to %s", shovel->settings.address);
        shovel_lost(shovel, err);
    }
}

/* ---- start and stop --------------------------------------------------------------- */

static void shovel_free(struct stomp_shovel *shovel)
{
    if (shovel->bev && shovel->phase != SHOVEL_PHASE_CONNECTING) {
        /* the ACKs written since the drain leave before the socket closes,
         * then DISCONNECT: the broker handles the frames in order and closes
         * after it, so once it has closed, it has every ACK (what it misses
         * is redelivered: a duplicate) */
        size_t waiting = 0;
        for (struct shovel_publish *publish = shovel->publishes; publish; publish = publish->next)
            waiting += publish->connection == shovel->connection;
        struct stomp_header receipt = HEADER("receipt", "shovel-stop");
        bool closed = false;
        size_t unsent = 1;
        if (stomp_frame_write(bufferevent_get_output(shovel->bev), STOMP_VERSION_1_2,
                              STOMP_COMMAND_DISCONNECT, &receipt, 1, NULL, 0, false) == 0) {
            unsent = shovel_socket_flush(shovel->bev, STOMP_SHOVEL_LINGER_MS);
            closed = unsent == 0 &&
                     shovel_socket_linger(shovel->bev, STOMP_SHOVEL_LINGER_MS, NULL, NULL);
        }
        if (waiting > 0)
            log_warn("shovel",
                     "%s: stopped with %zu message(s) still waiting for Kafka; the broker "
                     "delivers them again",
                     shovel->settings.name, waiting);
        if (!closed && shovel->settings.to_kbridge)
            log_warn("shovel",
                     "%s: the broker did not close the connection within %d ms after "
                     "DISCONNECT; the ACKs sent last may be lost, their messages come again",
                     shovel->settings.name, STOMP_SHOVEL_LINGER_MS);
    }
    shovel->phase = SHOVEL_PHASE_STOPPED;
    shovel_lost(shovel, "stopped");
    /* pending publishes: their confirmations never come once the session closes */
    while (shovel->publishes) {
        struct shovel_publish *publish = shovel->publishes;
        shovel->publishes = publish->next;
        free(publish);
    }
    core_session_close(shovel->session);
    if (shovel->retry_timer)
        event_free(shovel->retry_timer);
    shovel_settings_clear(&shovel->settings);
    free(shovel);
}

static struct stomp_shovel *shovel_new(struct stomp_adapter *adapter,
                                       const struct config_shovel *config, char *err,
                                       size_t err_size)
{
    struct stomp_shovel *shovel = calloc(1, sizeof(*shovel));
    if (!shovel) {
        snprintf(err, err_size, "shovel %s: out of memory", config->name);
        return NULL;
    }
    shovel->adapter = adapter;
    if (shovel_settings_copy(&shovel->settings, config, err, err_size) < 0) {
        free(shovel);
        return NULL;
    }
    shovel->retry_timer = evtimer_new(adapter->base.context.base, shovel_on_retry, shovel);
    if (!shovel->retry_timer) {
        snprintf(err, err_size, "shovel %s: out of memory", config->name);
        shovel_free(shovel);
        return NULL;
    }
    if (shovel_kbridge_open(&shovel->settings, config, &stomp_addresses, adapter->base.context.core,
                            adapter->base.context.shovels, &shovel->kbridge_destination,
                            &shovel->session, &shovel->status, err, err_size) < 0) {
        shovel_free(shovel);
        return NULL;
    }
    return shovel;
}

int stomp_shovels_start(struct stomp_adapter *adapter, struct stomp_shovel **list, char *err,
                        size_t err_size)
{
    const struct config *config = stomp_adapter_config(adapter);
    if (!adapter->base.context.shovels)
        return 0; /* a test's server without a shovel table */
    for (size_t i = 0; i < config->shovel_count; i++) {
        const struct config_shovel *entry = &config->shovels[i];
        if (strcmp(entry->source.protocol, "stomp") != 0 &&
            strcmp(entry->destination.protocol, "stomp") != 0)
            continue;
        struct stomp_shovel *shovel = shovel_new(adapter, entry, err, err_size);
        if (!shovel)
            return -1;
        shovel->next = *list;
        *list = shovel;
        log_info("shovel", "%s: %s -> %s, prefetch %" PRIu32, shovel->settings.name,
                 shovel->status->source, shovel->status->destination, shovel->settings.prefetch);
        shovel_connect(shovel);
    }
    return 0;
}

void stomp_shovels_drain(struct stomp_shovel *list)
{
    for (struct stomp_shovel *shovel = list; shovel; shovel = shovel->next) {
        event_del(shovel->retry_timer);
        if (shovel->settings.to_kbridge && shovel->bev && shovel->phase == SHOVEL_PHASE_OPEN) {
            /* no UNSUBSCRIBE: RabbitMQ refuses ACKs of a cancelled subscription;
             * MESSAGEs arriving from now on are left unacknowledged (redelivered) */
            shovel->phase = SHOVEL_PHASE_DRAINING;
            shovel_status_set(shovel->status, SHOVEL_CONNECTING, "draining (SIGTERM)");
            continue;
        }
        /* nothing to wait for (towards a broker, unconfirmed SENDs are released) */
        shovel->phase = SHOVEL_PHASE_STOPPED;
        shovel_lost(shovel, "draining (SIGTERM)");
        shovel_status_set(shovel->status, SHOVEL_CONNECTING, "draining (SIGTERM)");
    }
}

void stomp_shovels_stop(struct stomp_shovel **list)
{
    while (*list) {
        struct stomp_shovel *shovel = *list;
        *list = shovel->next;
        shovel_free(shovel);
    }
}
