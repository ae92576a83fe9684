/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_connection.c -- one AMQP 0-9-1 client connection (architecture
 * §12): the protocol header, the frame loop over the adapter's own frame
 * layer (amqp091_frame.c), the connection class (Start/Start-Ok with PLAIN
 * and AMQPLAIN, and EXTERNAL on a TLS connection with a verified client
 * certificate; Tune/Tune-Ok, Open, Close/Close-Ok both ways), heartbeats,
 * writing frames and the orderly end of a connection. Channel frames go to
 * amqp091_channel.c.
 *
 *   HEADER --AMQP 0 0 9 1--> START_OK --Start-Ok--> AUTH --credentials ok--> TUNE_OK
 *     |  (another header: ours, then close)          |  (refused: Close 403)   |
 *     v                                              v                         v Tune-Ok
 *   CLOSING <--Close-Ok (or timeout)-- CLOSE_SENT <--error-- RUNNING <--Open-- OPEN
 *
 * Input is parsed only while the connection may take work: not while the
 * credentials are being checked, not while a channel's declare/bind/delete
 * waits for the definitions topic (that keeps every answer in the order of
 * the requests, as 0-9-1 wants), not while the connection's unconfirmed
 * publishes are at limits.max_unconfirmed (the client's TCP window fills),
 * not while draining. While input is not read the client's heartbeats are
 * not seen: the heartbeat check then counts the connection as alive. */
#include "amqp091_connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp091_config.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "version.h"

static void amqp091_process_input(struct amqp091_connection *connection);

static struct amqp091_connection *amqp091_connection_of(struct connection *base)
{
    return (struct amqp091_connection *)base;
}

static const struct config *amqp091_config(const struct amqp091_connection *connection)
{
    return adapter_base_config(&connection->adapter->base);
}

bool amqp091_connection_writable(const struct amqp091_connection *connection)
{
    return connection->state != AMQP091_STATE_CLOSING;
}

/* ---- writing ---------------------------------------------------------------------- */

static void amqp091_sent(struct amqp091_connection *connection)
{
    (*connection->adapter->frames_sent)++;
    connection->frames_out++;
    connection->last_sent_ms = clock_monotonic_ms();
    if (!connection->deliveries_blocked && connection_output_above_high(&connection->base))
        amqp091_connection_block_deliveries(connection, true);
}

int amqp091_send_method(struct amqp091_connection *connection, uint16_t channel,
                        amqp_method_number_t id, void *decoded)
{
    if (!amqp091_connection_writable(connection))
        return -1;
    uint8_t *out = connection->adapter->scratch;
    /* before Tune-Ok the spec's minimum bounds every frame */
    uint32_t frame_max = connection->frame_max ? connection->frame_max : AMQP091_FRAME_MIN_SIZE;
    int n = amqp091_method_encode(channel, id, decoded, out, frame_max);
    if (n < 0) {
        log_warn("amqp091", "%s: cannot encode %s for channel %u", connection->base.peer,
                 amqp_method_name(id), channel);
        return -1;
    }
    if (evbuffer_add(bufferevent_get_output(connection->base.transport.stream), out, (size_t)n) < 0)
        return -1;
    amqp091_sent(connection);
    return 0;
}

int amqp091_send_content(struct amqp091_connection *connection, uint16_t channel,
                         amqp_method_number_t id, void *method, const uint8_t *header_payload,
                         size_t header_len, amqp_basic_properties_t *properties, const void *body,
                         size_t body_len)
{
    if (amqp091_send_method(connection, channel, id, method) < 0)
        return -1;
    struct evbuffer *output = bufferevent_get_output(connection->base.transport.stream);
    uint8_t *out = connection->adapter->scratch;
    uint32_t frame_max = connection->frame_max;
    int n;
    if (header_payload) {
        if (header_len + AMQP091_FRAME_OVERHEAD > frame_max)
            return -1;
        amqp091_frame_header_write(out, AMQP091_FRAME_HEADER, channel, (uint32_t)header_len);
        memcpy(out + AMQP091_FRAME_HEADER_SIZE, header_payload, header_len);
        out[AMQP091_FRAME_HEADER_SIZE + header_len] = AMQP091_FRAME_END;
        n = (int)(header_len + AMQP091_FRAME_OVERHEAD);
    } else {
        n = amqp091_content_header_encode(channel, AMQP_BASIC_CLASS, body_len, properties, out,
                                          frame_max);
    }
    if (n < 0 || evbuffer_add(output, out, (size_t)n) < 0)
        return -1;
    size_t chunk_max = frame_max - AMQP091_FRAME_OVERHEAD;
    const uint8_t *at = body;
    for (size_t left = body_len; left > 0;) {
        size_t chunk = left < chunk_max ? left : chunk_max;
        uint8_t header[AMQP091_FRAME_HEADER_SIZE];
        static const uint8_t end = AMQP091_FRAME_END;
        amqp091_frame_header_write(header, AMQP091_FRAME_BODY, channel, (uint32_t)chunk);
        if (evbuffer_add(output, header, sizeof(header)) < 0 ||
            evbuffer_add(output, at, chunk) < 0 || evbuffer_add(output, &end, 1) < 0)
            return -1;
        at += chunk;
        left -= chunk;
    }
    amqp091_sent(connection);
    return 0;
}

static void amqp091_send_heartbeat(struct amqp091_connection *connection)
{
    if (!amqp091_connection_writable(connection))
        return;
    uint8_t frame[AMQP091_FRAME_OVERHEAD];
    amqp091_frame_header_write(frame, AMQP091_FRAME_HEARTBEAT, 0, 0);
    frame[AMQP091_FRAME_HEADER_SIZE] = AMQP091_FRAME_END;
    evbuffer_add(bufferevent_get_output(connection->base.transport.stream), frame, sizeof(frame));
    connection->last_sent_ms = clock_monotonic_ms();
}

/* ---- flow control ------------------------------------------------------------------ */

void amqp091_connection_block_deliveries(struct amqp091_connection *connection, bool blocked)
{
    connection->deliveries_blocked = blocked;
    struct u64_map *channels = &connection->channels;
    for (size_t i = 0; channels->slots && i <= channels->mask; i++) {
        struct amqp091_channel *channel = channels->slots[i].value;
        if (!channels->slots[i].key || !channel)
            continue;
        for (struct amqp091_consumer *c = channel->consumers; c; c = c->next)
            if (c->core && !c->getter && c->blocked != blocked) { /* a getter: its own */
                c->blocked = blocked;
                core_subscription_block(c->core, blocked);
            }
    }
}

static bool amqp091_may_parse(const struct amqp091_connection *connection)
{
    if (connection->state == AMQP091_STATE_CLOSING || connection->state == AMQP091_STATE_AUTH)
        return false;
    if (connection->state == AMQP091_STATE_CLOSE_SENT)
        return true; /* waiting for Close-Ok */
    return connection->waiting == 0 && !connection->publish_paused && !connection->publish_held &&
           !connection->adapter->base.draining;
}

void amqp091_connection_update_reading(struct amqp091_connection *connection)
{
    if (connection->state == AMQP091_STATE_CLOSING)
        return;
    struct bufferevent *stream = connection->base.transport.stream;
    bool want = amqp091_may_parse(connection);
    if (want && !connection->reading) {
        bufferevent_enable(stream, EV_READ);
        connection->reading = true;
        connection->last_received_ms = clock_monotonic_ms(); /* heartbeats were not seen */
        if (evbuffer_get_length(bufferevent_get_input(stream)) > 0)
            event_active(connection->process_event, EV_TIMEOUT, 0);
    } else if (!want && connection->reading) {
        bufferevent_disable(stream, EV_READ);
        connection->reading = false;
    }
}

static void amqp091_on_process(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp091_connection *connection = arg;
    if (connection->state != AMQP091_STATE_CLOSING && amqp091_may_parse(connection))
        amqp091_process_input(connection);
}

/* ---- closing ---------------------------------------------------------------------- */

static void amqp091_free_channels(struct amqp091_connection *connection)
{
    struct u64_map *channels = &connection->channels;
    bool found = true;
    while (found && channels->count > 0) { /* freeing shifts slots: scan again */
        found = false;
        for (size_t i = 0; channels->slots && i <= channels->mask; i++)
            if (channels->slots[i].key) {
                amqp091_channel_free(channels->slots[i].value);
                found = true;
                break;
            }
    }
    u64_map_free(channels);
}

/* Enter CLOSING and flush what is queued (connection_flush_then_close). */
static void amqp091_close(struct amqp091_connection *connection, const char *reason)
{
    if (connection->state == AMQP091_STATE_CLOSING)
        return;
    amqp091_connection_block_deliveries(connection, true);
    connection->state = AMQP091_STATE_CLOSING;
    connection->base.close_reason = reason;
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    if (connection->timer)
        event_del(connection->timer);
    bufferevent_disable(connection->base.transport.stream, EV_READ);
    connection->reading = false;
    connection_flush_then_close(&connection->base);
}

static void amqp091_on_timer(evutil_socket_t fd, short what, void *arg);

void amqp091_connection_error(struct amqp091_connection *connection, uint16_t code,
                              const char *text, amqp_method_number_t method)
{
    if (connection->state == AMQP091_STATE_CLOSING || connection->state == AMQP091_STATE_CLOSE_SENT)
        return;
    (*connection->adapter->connection_errors)++;
    log_info("amqp091", "%s: connection error %u: %s", connection->base.peer, code, text);
    amqp_connection_close_t close = {
        .reply_code = code,
        .reply_text = amqp_cstring_bytes(text),
        .class_id = (uint16_t)(method >> 16),
        .method_id = (uint16_t)(method & 0xffff),
    };
    if (connection->frame_max == 0)
        connection->frame_max = AMQP091_FRAME_MIN_SIZE;
    amqp091_send_method(connection, 0, AMQP_CONNECTION_CLOSE_METHOD, &close);
    amqp091_free_channels(connection); /* consumers end; unacked deliveries are released */
    amqp091_connection_block_deliveries(connection, true);
    connection->state = AMQP091_STATE_CLOSE_SENT;
    connection->base.close_reason = "connection error";
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    event_del(connection->timer);
    event_assign(connection->timer, connection->adapter->base.context.base, -1, 0, amqp091_on_timer,
                 connection);
    struct timeval wait = {AMQP091_CLOSE_OK_TIMEOUT_MS / 1000,
                           (AMQP091_CLOSE_OK_TIMEOUT_MS % 1000) * 1000};
    event_add(connection->timer, &wait);
    amqp091_connection_update_reading(connection);
}

/* ---- timers: handshake timeout, heartbeats, Close-Ok wait ---------------------------- */

static void amqp091_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp091_connection *connection = arg;
    if (connection->state == AMQP091_STATE_CLOSE_SENT) {
        amqp091_close(connection, "no Close-Ok from the client");
        return;
    }
    if (connection->state != AMQP091_STATE_RUNNING) {
        log_info("amqp091", "%s: handshake not finished within %llu ms (limits.handshake_timeout)",
                 connection->base.peer,
                 (unsigned long long)amqp091_config(connection)->limits.handshake_timeout_ms);
        amqp091_close(connection, "handshake timeout");
        return;
    }
    uint64_t now = clock_monotonic_ms();
    uint64_t interval = (uint64_t)connection->heartbeat_s * 1000;
    if (!connection->reading)
        connection->last_received_ms = now; /* we are not reading: nothing could be seen */
    if (now - connection->last_received_ms > 2 * interval) {
        (*connection->adapter->heartbeat_timeouts)++;
        log_info("amqp091", "%s: missed heartbeats from client, timeout: %us",
                 connection->base.peer, connection->heartbeat_s);
        amqp091_close(connection, "missed heartbeats");
        return;
    }
    if (now - connection->last_sent_ms >= interval / 2)
        amqp091_send_heartbeat(connection);
}

/* Heartbeats every heartbeat/2 (the spec: a peer is dead after two missed). */
static void amqp091_arm_heartbeat(struct amqp091_connection *connection)
{
    event_del(connection->timer);
    if (connection->heartbeat_s == 0)
        return;
    event_assign(connection->timer, connection->adapter->base.context.base, -1, EV_PERSIST,
                 amqp091_on_timer, connection);
    uint64_t ms = (uint64_t)connection->heartbeat_s * 500;
    struct timeval every = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(connection->timer, &every);
}

/* ---- the connection class ------------------------------------------------------------- */

/* A TLS client certificate (verified, or one that names no acceptable
 * user): EXTERNAL is offered, and refused with the reason when chosen. */
static bool amqp091_has_certificate(struct amqp091_connection *connection)
{
    char identity[256];
    return transport_peer_identity(&connection->base.transport, identity, sizeof(identity)) != 0;
}

static void amqp091_send_start(struct amqp091_connection *connection)
{
    /* RabbitMQ's capabilities, all built (exchange.bind: routing.md) */
    static const struct {
        const char *name;
        bool built;
    } capabilities[] = {
        {"publisher_confirms", true}, {"exchange_exchange_bindings", true},
        {"basic.nack", true},         {"consumer_cancel_notify", true},
        {"connection.blocked", true}, {"authentication_failure_close", true},
        {"per_consumer_qos", true},   {"direct_reply_to", true},
    };
    enum { CAPS = sizeof(capabilities) / sizeof(capabilities[0]) };
    amqp_table_entry_t caps[CAPS];
    for (size_t i = 0; i < CAPS; i++) {
        caps[i].key = amqp_cstring_bytes(capabilities[i].name);
        caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        caps[i].value.value.boolean = capabilities[i].built;
    }
    amqp_table_entry_t props[5];
    props[0].key = amqp_cstring_bytes("capabilities");
    props[0].value.kind = AMQP_FIELD_KIND_TABLE;
    props[0].value.value.table = (amqp_table_t){CAPS, caps};
    const char *const texts[][2] = {
        {"product", "kbridge"},
        {"version", KBRIDGE_VERSION},
        {"platform", "C11"},
        {"information", "AMQP 0-9-1 on Kafka: https://github.com/kbridge (first cut)"},
    };
    for (size_t i = 0; i < 4; i++) {
        props[i + 1].key = amqp_cstring_bytes(texts[i][0]);
        props[i + 1].value.kind = AMQP_FIELD_KIND_UTF8;
        props[i + 1].value.value.bytes = amqp_cstring_bytes(texts[i][1]);
    }
    amqp_connection_start_t start = {
        .version_major = 0,
        .version_minor = 9,
        .server_properties = {5, props},
        .mechanisms = amqp_cstring_bytes(
            amqp091_has_certificate(connection) ? "EXTERNAL PLAIN AMQPLAIN" : "PLAIN AMQPLAIN"),
        .locales = amqp_cstring_bytes("en_US"),
    };
    connection->frame_max = AMQP091_FRAME_MIN_SIZE; /* until Tune-Ok */
    amqp091_send_method(connection, 0, AMQP_CONNECTION_START_METHOD, &start);
    connection->state = AMQP091_STATE_START_OK;
}

/* AMQPLAIN's response: a field table without its length, LOGIN and PASSWORD
 * as long strings. Copies them (NUL-terminated) into login/password. */
static int amqp091_amqplain(amqp_bytes_t response, char *login, size_t login_size, char *password,
                            size_t password_size)
{
    const uint8_t *p = response.bytes;
    size_t left = response.len;
    login[0] = password[0] = '\0';
    while (left > 0) {
        size_t key_len = p[0];
        if (left < 1 + key_len + 1 + 4)
            return -1;
        const char *key = (const char *)p + 1;
        uint8_t kind = p[1 + key_len];
        if (kind != 'S')
            return -1;
        const uint8_t *l = p + 2 + key_len;
        size_t value_len = ((size_t)l[0] << 24) | ((size_t)l[1] << 16) | ((size_t)l[2] << 8) | l[3];
        size_t used = 2 + key_len + 4 + value_len;
        if (used > left)
            return -1;
        const char *value = (const char *)l + 4;
        if (key_len == 5 && memcmp(key, "LOGIN", 5) == 0)
            snprintf(login, login_size, "%.*s", (int)value_len, value);
        else if (key_len == 8 && memcmp(key, "PASSWORD", 8) == 0)
            snprintf(password, password_size, "%.*s", (int)value_len, value);
        p += used;
        left -= used;
    }
    return 0;
}

static void amqp091_auth_checked(void *opaque, int result, const char *user, const char *reason)
{
    struct amqp091_connection *connection = opaque;
    connection->auth = NULL;
    if (result != CORE_OK) {
        /* RabbitMQ's text; a refusal at a limit, or of a certificate, says
         * why (never which part of a password login was wrong: that reason
         * stays in the log) */
        char text[512];
        if (reason && (strstr(reason, "limits.") || strcmp(connection->mechanism, "EXTERNAL") == 0))
            snprintf(text, sizeof(text),
                     "ACCESS_REFUSED - Login was refused using authentication mechanism %s: %s",
                     connection->mechanism, reason);
        else
            snprintf(text, sizeof(text),
                     "ACCESS_REFUSED - Login was refused using authentication mechanism %s. For "
                     "details see the broker logfile.",
                     connection->mechanism);
        log_info("amqp091", "%s: login refused: %s", connection->base.peer,
                 reason ? reason : "bad credentials");
        connection->state = AMQP091_STATE_START_OK; /* the error path reads Close-Ok */
        amqp091_connection_error(connection, AMQP_ACCESS_REFUSED, text, 0);
        return;
    }
    connection->user = strdup(user);
    if (!connection->user) {
        amqp091_connection_error(connection, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                                 0);
        return;
    }
    const struct amqp091_config *config = amqp091_config_of(amqp091_config(connection));
    connection->offered_channel_max = (uint16_t)config->channel_max;
    connection->offered_frame_max = (uint32_t)config->frame_max;
    amqp_connection_tune_t tune = {
        .channel_max = connection->offered_channel_max,
        .frame_max = connection->offered_frame_max,
        .heartbeat = (uint16_t)(config->heartbeat_ms / 1000),
    };
    amqp091_send_method(connection, 0, AMQP_CONNECTION_TUNE_METHOD, &tune);
    connection->state = AMQP091_STATE_TUNE_OK;
    amqp091_connection_update_reading(connection);
}

/* Does the client announce capability `name` (client-properties'
 * capabilities table, a true boolean)? */
static bool amqp091_client_capability(const amqp_table_t *properties, const char *name)
{
    for (int i = 0; i < properties->num_entries; i++) {
        const amqp_table_entry_t *e = &properties->entries[i];
        if (e->key.len != 12 || memcmp(e->key.bytes, "capabilities", 12) != 0 ||
            e->value.kind != AMQP_FIELD_KIND_TABLE)
            continue;
        const amqp_table_t *caps = &e->value.value.table;
        for (int j = 0; j < caps->num_entries; j++)
            if (caps->entries[j].key.len == strlen(name) &&
                memcmp(caps->entries[j].key.bytes, name, strlen(name)) == 0)
                return caps->entries[j].value.kind == AMQP_FIELD_KIND_BOOLEAN &&
                       caps->entries[j].value.value.boolean;
    }
    return false;
}

void amqp091_connection_update_blocked(struct amqp091_connection *connection)
{
    bool blocked = connection->publish_paused || connection->publish_held;
    if (!connection->client_blocked_notify || connection->blocked_sent == blocked ||
        connection->state != AMQP091_STATE_RUNNING)
        return;
    connection->blocked_sent = blocked;
    if (blocked) {
        amqp_connection_blocked_t m = {
            .reason = amqp_cstring_bytes(
                connection->publish_held
                    ? "kbridge: Kafka's producer queue is full (waiting for Kafka)"
                    : "kbridge: unconfirmed publishes at limits.max_unconfirmed "
                      "(waiting for Kafka)")};
        amqp091_send_method(connection, 0, AMQP_CONNECTION_BLOCKED_METHOD, &m);
    } else {
        amqp_connection_unblocked_t m = {0};
        amqp091_send_method(connection, 0, AMQP_CONNECTION_UNBLOCKED_METHOD, &m);
    }
}

/* connection_ops.publish_retry */
static void amqp091_on_publish_retry(struct connection *base)
{
    amqp091_publish_retry((struct amqp091_connection *)base);
}

void amqp091_connection_hold_publish(struct amqp091_connection *connection, uint16_t channel)
{
    if (!connection->publish_held)
        log_debug("amqp091", "%s: channel %u: Kafka's producer queue is full, the publish waits",
                  connection->base.peer, channel);
    connection->publish_held = true;
    connection->held_channel = channel;
    connection_publish_hold(&connection->base);
    amqp091_connection_update_blocked(connection);
    amqp091_connection_update_reading(connection);
}

/* EXTERNAL (mTLS, as RabbitMQ's rabbitmq_auth_mechanism_ssl): the verified
 * client certificate's identity (subject CN, or the listener's configured
 * SAN) is the user; the response, when not empty, is an authzid that must
 * be that identity. Answered at once: nothing to hash. */
static void amqp091_external(struct amqp091_connection *connection, amqp_bytes_t response)
{
    char identity[256], user[256], reason[400];
    int has = transport_peer_identity(&connection->base.transport, identity, sizeof(identity));
    int rc = CORE_ERR_ACCESS;
    if (has < 0)
        snprintf(reason, sizeof(reason), "%s", identity);
    else if (response.len > 0 &&
             (response.len != strlen(identity) || memcmp(response.bytes, identity, response.len)))
        snprintf(reason, sizeof(reason),
                 "the EXTERNAL authorization identity is not the certificate's ('%s')", identity);
    else
        rc = core_authenticate_certificate(connection->adapter->base.context.core, identity, user,
                                           sizeof(user), reason, sizeof(reason));
    if (rc != CORE_OK) {
        amqp091_auth_checked(connection, rc, NULL, reason);
        return;
    }
    amqp091_auth_checked(connection, CORE_OK, user, NULL);
}

static void amqp091_start_ok(struct amqp091_connection *connection,
                             const amqp_connection_start_ok_t *start_ok)
{
    char login[256], password[256];
    connection->client_blocked_notify =
        amqp091_client_capability(&start_ok->client_properties, "connection.blocked");
    connection->client_cancel_notify =
        amqp091_client_capability(&start_ok->client_properties, "consumer_cancel_notify");
    snprintf(connection->mechanism, sizeof(connection->mechanism), "%.*s",
             (int)start_ok->mechanism.len, (const char *)start_ok->mechanism.bytes);
    int rc = -1;
    if (strcmp(connection->mechanism, "PLAIN") == 0) {
        /* authzid NUL authcid NUL password */
        const char *r = start_ok->response.bytes;
        size_t len = start_ok->response.len;
        const char *first = r ? memchr(r, '\0', len) : NULL;
        const char *second = first ? memchr(first + 1, '\0', len - (size_t)(first + 1 - r)) : NULL;
        if (second) {
            snprintf(login, sizeof(login), "%.*s", (int)(second - first - 1), first + 1);
            snprintf(password, sizeof(password), "%.*s", (int)(len - (size_t)(second + 1 - r)),
                     second + 1);
            rc = 0;
        }
    } else if (strcmp(connection->mechanism, "AMQPLAIN") == 0) {
        rc = amqp091_amqplain(start_ok->response, login, sizeof(login), password, sizeof(password));
    } else if (strcmp(connection->mechanism, "EXTERNAL") == 0 &&
               amqp091_has_certificate(connection)) {
        amqp091_external(connection, start_ok->response);
        return;
    } else {
        char text[192];
        snprintf(
            text, sizeof(text), "ACCESS_REFUSED - unsupported authentication mechanism '%s' (%s)",
            connection->mechanism,
            amqp091_has_certificate(connection) ? "EXTERNAL, PLAIN, AMQPLAIN" : "PLAIN, AMQPLAIN");
        amqp091_connection_error(connection, AMQP_ACCESS_REFUSED, text,
                                 AMQP_CONNECTION_START_OK_METHOD);
        return;
    }
    if (rc < 0) {
        amqp091_connection_error(connection, AMQP_SYNTAX_ERROR,
                                 "SYNTAX_ERROR - malformed authentication response",
                                 AMQP_CONNECTION_START_OK_METHOD);
        return;
    }
    connection->state = AMQP091_STATE_AUTH;
    connection->auth = core_authenticate_start_from(connection->adapter->base.context.core,
                                                    connection->base.peer, login[0] ? login : NULL,
                                                    password, amqp091_auth_checked, connection);
    memset(password, 0, sizeof(password));
    if (!connection->auth) {
        connection->state = AMQP091_STATE_START_OK;
        amqp091_connection_error(connection, AMQP_INTERNAL_ERROR,
                                 "INTERNAL_ERROR - cannot check the credentials", 0);
        return;
    }
    amqp091_connection_update_reading(connection);
}

static void amqp091_tune_ok(struct amqp091_connection *connection,
                            const amqp_connection_tune_ok_t *tune_ok)
{
    uint16_t channel_max = tune_ok->channel_max;
    uint32_t frame_max = tune_ok->frame_max;
    if (channel_max == 0 || channel_max > connection->offered_channel_max)
        channel_max = connection->offered_channel_max;
    if (frame_max == 0 || frame_max > connection->offered_frame_max)
        frame_max = connection->offered_frame_max;
    if (tune_ok->frame_max != 0 && tune_ok->frame_max < AMQP091_FRAME_MIN_SIZE) {
        char text[128];
        snprintf(text, sizeof(text), "NOT_ALLOWED - frame_max=%u < %u min size", tune_ok->frame_max,
                 AMQP091_FRAME_MIN_SIZE);
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text,
                                 AMQP_CONNECTION_TUNE_OK_METHOD);
        return;
    }
    connection->channel_max = channel_max;
    connection->frame_max = frame_max;
    connection->heartbeat_s = tune_ok->heartbeat; /* the client's choice, as RabbitMQ takes it */
    connection->state = AMQP091_STATE_OPEN;
}

/* The core closes the session (a reload no longer allows it, or an
 * administrator closed it through the admin API): connection.close with
 * CONNECTION_FORCED and the reason, as RabbitMQ closes a connection from its
 * management UI. */
static void amqp091_connection_revoked(void *opaque, const char *reason)
{
    struct amqp091_connection *connection = opaque;
    char text[400];
    snprintf(text, sizeof(text), "CONNECTION_FORCED - %s", reason);
    amqp091_connection_error(connection, AMQP_CONNECTION_FORCED, text, 0);
}

static void amqp091_open(struct amqp091_connection *connection, const amqp_connection_open_t *open)
{
    /* a shortstr: at most 255 bytes; a NUL byte in it is shown as '?' and
     * names no vhost (config names are C strings) */
    char vhost[256];
    size_t len = open->virtual_host.len < sizeof(vhost) ? open->virtual_host.len : 0;
    bool has_nul = false;
    for (size_t i = 0; i < len; i++) {
        char c = ((const char *)open->virtual_host.bytes)[i];
        has_nul |= c == '\0';
        vhost[i] = c ? c : '?';
    }
    vhost[len] = '\0';
    struct core *core = connection->adapter->base.context.core;
    /* §11's vhosts: a configured one */
    if (has_nul || !core_vhost_topic_prefix(core, vhost)) {
        char text[400];
        snprintf(text, sizeof(text), "NOT_ALLOWED - vhost %s not found", vhost);
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, AMQP_CONNECTION_OPEN_METHOD);
        return;
    }
    uint32_t most = 0;
    const char *limit = core_session_admit(core, connection->user, &most);
    if (limit) {
        char text[400];
        snprintf(text, sizeof(text),
                 "NOT_ALLOWED - too many connections: user '%s' has %u connections open already "
                 "(%s, every protocol together)",
                 connection->user, most, limit);
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, AMQP_CONNECTION_OPEN_METHOD);
        return;
    }
    connection->session =
        core_session_new(core, "amqp091", connection->user, NULL, connection->base.peer);
    if (!connection->session) {
        amqp091_connection_error(connection, AMQP_INTERNAL_ERROR,
                                 "INTERNAL_ERROR - cannot open a session", 0);
        return;
    }
    /* refused: "NOT_ALLOWED - access to vhost 'x' refused for user 'u'", as
     * RabbitMQ words it (auth.users[].vhosts) */
    char why[600];
    if (core_session_set_vhost(connection->session, vhost, why, sizeof(why)) != CORE_OK) {
        char text[700];
        snprintf(text, sizeof(text), "NOT_ALLOWED - %s", why);
        core_session_close(connection->session);
        connection->session = NULL;
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, AMQP_CONNECTION_OPEN_METHOD);
        return;
    }
    core_session_set_revoke(connection->session, amqp091_connection_revoked, connection);
    amqp_connection_open_ok_t open_ok = {.known_hosts = amqp_cstring_bytes("")};
    amqp091_send_method(connection, 0, AMQP_CONNECTION_OPEN_OK_METHOD, &open_ok);
    connection->state = AMQP091_STATE_RUNNING;
    amqp091_arm_heartbeat(connection);
    log_info("amqp091",
             "%s: connection open, user %s, vhost %s, channel_max %u, frame_max %u, "
             "heartbeat %us",
             connection->base.peer, connection->user, vhost, connection->channel_max,
             connection->frame_max, connection->heartbeat_s);
}

/* A method on channel 0. */
static void amqp091_connection_method(struct amqp091_connection *connection,
                                      const struct amqp091_method *method)
{
    if (method->id == AMQP_CONNECTION_CLOSE_METHOD) {
        if (connection->state != AMQP091_STATE_CLOSE_SENT) {
            const amqp_connection_close_t *close = method->decoded;
            log_info("amqp091", "%s: client closed the connection: %u %.*s", connection->base.peer,
                     close->reply_code, (int)close->reply_text.len,
                     (const char *)close->reply_text.bytes);
        }
        amqp_connection_close_ok_t close_ok = {0};
        amqp091_send_method(connection, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
        amqp091_close(connection, "closed by the client");
        return;
    }
    if (connection->state == AMQP091_STATE_CLOSE_SENT) {
        if (method->id == AMQP_CONNECTION_CLOSE_OK_METHOD)
            amqp091_close(connection, connection->base.close_reason);
        return; /* everything else is dropped until Close-Ok */
    }
    amqp_method_number_t expected = 0;
    switch (connection->state) {
    case AMQP091_STATE_START_OK: expected = AMQP_CONNECTION_START_OK_METHOD; break;
    case AMQP091_STATE_TUNE_OK: expected = AMQP_CONNECTION_TUNE_OK_METHOD; break;
    case AMQP091_STATE_OPEN: expected = AMQP_CONNECTION_OPEN_METHOD; break;
    default: break;
    }
    if (method->id == expected) {
        if (expected == AMQP_CONNECTION_START_OK_METHOD)
            amqp091_start_ok(connection, method->decoded);
        else if (expected == AMQP_CONNECTION_TUNE_OK_METHOD)
            amqp091_tune_ok(connection, method->decoded);
        else
            amqp091_open(connection, method->decoded);
        return;
    }
    if (connection->state == AMQP091_STATE_RUNNING && method->id == AMQP_CONNECTION_CLOSE_OK_METHOD)
        return;
    char text[192];
    snprintf(text, sizeof(text), "COMMAND_INVALID - unexpected method %s on channel 0",
             amqp_method_name(method->id));
    amqp091_connection_error(connection, AMQP_COMMAND_INVALID, text, method->id);
}

/* ---- reading ------------------------------------------------------------------------ */

/* One frame (its payload valid until the input is drained). */
static void amqp091_frame(struct amqp091_connection *connection, const struct amqp091_frame *frame)
{
    (*connection->adapter->frames_received)++;
    connection->frames_in++;
    if (frame->type == AMQP091_FRAME_HEARTBEAT)
        return;
    if (frame->channel != 0) {
        if (connection->state == AMQP091_STATE_CLOSE_SENT)
            return;
        if (connection->state != AMQP091_STATE_RUNNING) {
            amqp091_connection_error(
                connection, AMQP_CHANNEL_ERROR,
                "CHANNEL_ERROR - a channel frame before the connection is open", 0);
            return;
        }
        amqp091_channel_frame(connection, frame);
        return;
    }
    if (frame->type != AMQP091_FRAME_METHOD) {
        if (connection->state != AMQP091_STATE_CLOSE_SENT)
            amqp091_connection_error(connection, AMQP_UNEXPECTED_FRAME,
                                     "UNEXPECTED_FRAME - content frame on channel 0", 0);
        return;
    }
    struct amqp091_method method;
    struct amqp091_error error;
    recycle_amqp_pool(&connection->pool);
    if (amqp091_method_decode(frame, &connection->pool, &method, &error) < 0) {
        amqp091_connection_error(connection, error.code, error.text, 0);
        return;
    }
    amqp091_connection_method(connection, &method);
}

/* The 8-byte protocol header. Returns true when it was accepted. */
static bool amqp091_read_header(struct amqp091_connection *connection, struct evbuffer *input)
{
    uint8_t header[8];
    size_t have = evbuffer_get_length(input);
    size_t n = have < sizeof(header) ? have : sizeof(header);
    evbuffer_copyout(input, header, n);
    enum amqp091_header_status status = amqp091_header_check(header, n);
    if (status == AMQP091_HEADER_NEED_MORE)
        return false;
    evbuffer_drain(input, n);
    if (status == AMQP091_HEADER_MISMATCH) {
        /* the spec: answer with the header we speak, then close */
        evbuffer_add(bufferevent_get_output(connection->base.transport.stream),
                     amqp091_protocol_header, sizeof(amqp091_protocol_header));
        log_info("amqp091", "%s: not an AMQP 0-9-1 protocol header", connection->base.peer);
        amqp091_close(connection, "wrong protocol header");
        return false;
    }
    if (connection->refused) {
        connection->frame_max = AMQP091_FRAME_MIN_SIZE;
        char text[200];
        const char *limit =
            connection->refused_limit ? connection->refused_limit : "limits.max_connections";
        snprintf(
            text, sizeof(text), "NOT_ALLOWED - the server already has %u connections open (%s%s)",
            connection->refused_value, limit,
            strcmp(limit, "limits.max_connections_per_address") == 0 ? ", from this address"
                                                                     : ", every protocol together");
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, 0);
        return false;
    }
    amqp091_send_start(connection);
    return true;
}

static void amqp091_process_input(struct amqp091_connection *connection)
{
    struct evbuffer *input = bufferevent_get_input(connection->base.transport.stream);
    if (connection->state == AMQP091_STATE_HEADER && !amqp091_read_header(connection, input))
        return;
    while (amqp091_may_parse(connection)) {
        size_t available = evbuffer_get_length(input);
        if (available < AMQP091_FRAME_HEADER_SIZE)
            return;
        uint8_t head[AMQP091_FRAME_HEADER_SIZE];
        evbuffer_copyout(input, head, sizeof(head));
        uint64_t size = ((uint64_t)head[3] << 24) | ((uint64_t)head[4] << 16) |
                        ((uint64_t)head[5] << 8) | head[6];
        uint32_t frame_max = connection->frame_max ? connection->frame_max : AMQP091_FRAME_MIN_SIZE;
        size_t want = size + AMQP091_FRAME_OVERHEAD > frame_max
                          ? AMQP091_FRAME_HEADER_SIZE
                          : (size_t)size + AMQP091_FRAME_OVERHEAD;
        if (want > available)
            return; /* the rest of the frame has not arrived: no pull-up yet */
        const uint8_t *data = evbuffer_pullup(input, (ev_ssize_t)want);
        if (!data) {
            amqp091_connection_error(connection, AMQP_INTERNAL_ERROR,
                                     "INTERNAL_ERROR - out of memory", 0);
            return;
        }
        struct amqp091_frame frame;
        struct amqp091_error error;
        size_t consumed = 0;
        switch (amqp091_frame_parse(data, want, frame_max, &frame, &consumed, &error)) {
        case AMQP091_PARSE_NEED_MORE: return;
        case AMQP091_PARSE_ERROR:
            /* the stream cannot be resynchronised: Close, then end the
             * connection without waiting for Close-Ok (RabbitMQ does the same) */
            evbuffer_drain(input, available);
            amqp091_connection_error(connection, error.code, error.text, 0);
            amqp091_close(connection, "framing error");
            return;
        case AMQP091_PARSE_FRAME: break;
        }
        amqp091_frame(connection, &frame);
        if (connection->state == AMQP091_STATE_CLOSING) {
            evbuffer_drain(input, evbuffer_get_length(input));
            return;
        }
        evbuffer_drain(input, consumed);
    }
}

/* connection_ops.read */
static void amqp091_on_read(struct connection *base)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    connection->last_received_ms = clock_monotonic_ms();
    if (connection->state == AMQP091_STATE_CLOSING) {
        struct evbuffer *input = bufferevent_get_input(base->transport.stream);
        evbuffer_drain(input, evbuffer_get_length(input));
        return;
    }
    if (amqp091_may_parse(connection))
        amqp091_process_input(connection);
}

/* connection_ops.event: EOF, error or timeout before CLOSING. */
static void amqp091_on_event(struct connection *base, short events)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    if (connection->state != AMQP091_STATE_CLOSING) {
        const char *reason = (events & BEV_EVENT_ERROR) ? "socket error" : "closed by the client";
        if (connection->state == AMQP091_STATE_RUNNING)
            log_info("amqp091", "%s: client closed the socket without Close", base->peer);
        amqp091_connection_block_deliveries(connection, true);
        connection->state = AMQP091_STATE_CLOSING;
        base->close_reason = reason;
        core_authenticate_cancel(connection->auth);
        connection->auth = NULL;
    }
    connection_dispose(base);
}

static void amqp091_on_output_drained(struct connection *base)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    if (connection->state == AMQP091_STATE_RUNNING && connection->deliveries_blocked)
        amqp091_connection_block_deliveries(connection, false);
}

static void amqp091_on_drain(struct connection *base)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    if (!base->disused)
        amqp091_connection_update_reading(connection);
}

/* connection_ops.shutdown: Close 320, best effort. */
static void amqp091_on_shutdown(struct connection *base)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    if (connection->state == AMQP091_STATE_RUNNING) {
        amqp_connection_close_t close = {
            .reply_code = AMQP_CONNECTION_FORCED,
            .reply_text =
                amqp_cstring_bytes("CONNECTION_FORCED - broker forced connection closure with "
                                   "reason 'shutdown'"),
        };
        amqp091_send_method(connection, 0, AMQP_CONNECTION_CLOSE_METHOD, &close);
        amqp091_close(connection, "server shutting down");
    }
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void amqp091_open_connection(struct adapter_base *adapter_base, evutil_socket_t fd,
                                    const struct sockaddr *peer, int peer_len,
                                    struct bufferevent *tls_stream, bool refuse)
{
    struct amqp091_connection *connection = (struct amqp091_connection *)connection_new(
        adapter_base, sizeof(struct amqp091_connection), fd, peer, peer_len, tls_stream);
    if (!connection)
        return;
    connection->adapter = (struct amqp091_adapter *)adapter_base;
    connection->state = AMQP091_STATE_HEADER;
    connection->refused = refuse;
    connection->refused_limit = adapter_base->refusal;
    connection->refused_value = adapter_base->refusal_value;
    init_amqp_pool(&connection->pool, 4096);
    init_amqp_pool(&connection->deliver_pool, 4096);
    struct event_base *base = adapter_base->context.base;
    connection->timer = evtimer_new(base, amqp091_on_timer, connection);
    connection->process_event = event_new(base, -1, 0, amqp091_on_process, connection);
    if (!connection->timer || !connection->process_event) {
        connection->state = AMQP091_STATE_CLOSING;
        connection->base.close_reason = "out of memory";
        connection_dispose(&connection->base);
        return;
    }
    connection->last_received_ms = connection->last_sent_ms = clock_monotonic_ms();
    uint64_t handshake_ms = adapter_base_config(adapter_base)->limits.handshake_timeout_ms;
    struct timeval handshake = {(time_t)(handshake_ms / 1000),
                                (suseconds_t)(handshake_ms % 1000) * 1000};
    event_add(connection->timer, &handshake);
    log_info("amqp091", "%s: connection opened (%s)%s", connection->base.peer,
             transport_name(&connection->base.transport), refuse ? " (over max_connections)" : "");
    amqp091_connection_update_reading(connection);
}

static void amqp091_free_connection(struct connection *base)
{
    struct amqp091_connection *connection = amqp091_connection_of(base);
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    amqp091_free_channels(connection);
    core_session_close(connection->session);
    connection->session = NULL;
    if (connection->timer)
        event_free(connection->timer);
    if (connection->process_event)
        event_free(connection->process_event);
    empty_amqp_pool(&connection->pool);
    empty_amqp_pool(&connection->deliver_pool);
    connection_release(base);
    log_info("amqp091", "%s: connection closed (%s); user %s, %llu frame(s) in, %llu out",
             base->peer, base->close_reason ? base->close_reason : "closed",
             connection->user ? connection->user : "-", (unsigned long long)connection->frames_in,
             (unsigned long long)connection->frames_out);
    free(connection->user);
    free(connection);
}

const struct connection_ops amqp091_connection_ops = {
    .protocol = "amqp091",
    .open = amqp091_open_connection,
    .read = amqp091_on_read,
    .event = amqp091_on_event,
    .output_drained = amqp091_on_output_drained,
    .drain = amqp091_on_drain,
    .shutdown = amqp091_on_shutdown,
    .free = amqp091_free_connection,
    .adapter_free = amqp091_adapter_free,
    .publish_done = amqp091_publish_done,
    .publish_retry = amqp091_on_publish_retry,
};
