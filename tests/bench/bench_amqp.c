/* SPDX-License-Identifier: Apache-2.0 */
/* bench_amqp.c -- kbridge-bench's AMQP 1.0 client: Qpid Proton's connection
 * driver over one non-blocking socket per session, SASL ANONYMOUS or PLAIN.
 * Publishers send unsettled transfers with a window (confirmed = accepted)
 * or pre-settled ones; consumers grant credit (the prefetch) and accept each
 * message; request-reply uses a dynamic receiver for the replies. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#define AMQP_OPEN_TIMEOUT_NS (30 * (int64_t)1000000000)
#define AMQP_MAX_REPLY_LINKS 16

struct amqp_client {
    int fd;
    pn_connection_driver_t driver;
    pn_session_t *session;
    char error[BENCH_ERROR_SIZE];
    int failed;
};

typedef void (*amqp_event_handler)(struct amqp_client *client, pn_event_t *event, void *context);

static void client_fail_condition(struct amqp_client *client, const char *what,
                                  pn_condition_t *condition)
{
    if (client->failed)
        return;
    client->failed = 1;
    if (condition && pn_condition_is_set(condition))
        snprintf(client->error, sizeof(client->error), "%s: %s: %s", what,
                 pn_condition_get_name(condition),
                 pn_condition_get_description(condition) ? pn_condition_get_description(condition)
                                                         : "");
    else
        snprintf(client->error, sizeof(client->error), "%s", what);
}

/* Handle the events every session treats the same, then hand each to handler. */
static void dispatch(struct amqp_client *client, amqp_event_handler handler, void *context)
{
    pn_event_t *event;
    while ((event = pn_connection_driver_next_event(&client->driver))) {
        switch (pn_event_type(event)) {
        case PN_TRANSPORT_ERROR:
            client_fail_condition(client, "transport error",
                                  pn_transport_condition(pn_event_transport(event)));
            break;
        case PN_CONNECTION_REMOTE_CLOSE:
            client_fail_condition(client, "the server closed the connection",
                                  pn_connection_remote_condition(pn_event_connection(event)));
            break;
        case PN_LINK_REMOTE_CLOSE:
        case PN_LINK_REMOTE_DETACH:
            client_fail_condition(client, "the server closed a link",
                                  pn_link_remote_condition(pn_event_link(event)));
            break;
        default: break;
        }
        if (handler)
            handler(client, event, context);
    }
}

/* Move bytes both ways, waiting up to timeout_ms; then dispatch events. */
static int pump(struct amqp_client *client, int timeout_ms, amqp_event_handler handler,
                void *context)
{
    dispatch(client, handler, context);
    if (client->failed)
        return -1;
    int64_t now_ms = bench_now_ns() / 1000000;
    int64_t deadline = pn_transport_tick(client->driver.transport, now_ms);
    if (deadline > 0 && deadline - now_ms < timeout_ms)
        timeout_ms = (int)(deadline - now_ms);
    pn_bytes_t out = pn_connection_driver_write_buffer(&client->driver);
    struct pollfd pfd = {.fd = client->fd, .events = POLLIN | (out.size ? POLLOUT : 0)};
    int ready = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (ready < 0 && errno != EINTR) {
        snprintf(client->error, sizeof(client->error), "poll: %s", strerror(errno));
        return -1;
    }
    if (ready > 0 && (pfd.revents & POLLOUT) && out.size) {
        ssize_t n = write(client->fd, out.start, out.size);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(client->error, sizeof(client->error), "write: %s", strerror(errno));
            return -1;
        }
        if (n > 0)
            pn_connection_driver_write_done(&client->driver, (size_t)n);
    }
    if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
        for (int i = 0; i < 16; i++) {
            pn_rwbytes_t in = pn_connection_driver_read_buffer(&client->driver);
            if (in.size == 0)
                break;
            ssize_t n = read(client->fd, in.start, in.size);
            if (n == 0) {
                pn_connection_driver_read_close(&client->driver);
                dispatch(client, handler, context);
                if (!client->failed)
                    snprintf(client->error, sizeof(client->error),
                             "the server closed the connection");
                return -1;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                snprintf(client->error, sizeof(client->error), "read: %s", strerror(errno));
                return -1;
            }
            pn_connection_driver_read_done(&client->driver, (size_t)n);
            if ((size_t)n < in.size)
                break;
        }
    }
    dispatch(client, handler, context);
    return client->failed ? -1 : 0;
}

static void client_close(struct amqp_client *client)
{
    if (client->fd >= 0) {
        pn_connection_driver_destroy(&client->driver);
        close(client->fd);
    }
    client->fd = -1;
}

/* Connect, SASL and open a connection and one session. */
static int client_open(struct amqp_client *client, const struct bench_options *options,
                       const char *container)
{
    memset(client, 0, sizeof(*client));
    client->fd =
        bench_tcp_connect(options->host, options->port, client->error, sizeof(client->error));
    if (client->fd < 0)
        return -1;
    fcntl(client->fd, F_SETFL, fcntl(client->fd, F_GETFL) | O_NONBLOCK);
    if (pn_connection_driver_init(&client->driver, NULL, NULL) != 0) {
        close(client->fd);
        client->fd = -1;
        snprintf(client->error, sizeof(client->error), "cannot create a proton connection");
        return -1;
    }
    pn_connection_t *connection = client->driver.connection;
    pn_connection_set_container(connection, container);
    pn_connection_set_hostname(connection, options->host);
    pn_sasl_t *sasl = pn_sasl(client->driver.transport);
    if (options->user) {
        pn_connection_set_user(connection, options->user);
        pn_connection_set_password(connection, options->password ? options->password : "");
        pn_sasl_allowed_mechs(sasl, "PLAIN");
        pn_sasl_set_allow_insecure_mechs(sasl, true);
    } else {
        pn_sasl_allowed_mechs(sasl, "ANONYMOUS");
    }
    pn_connection_open(connection);
    client->session = pn_session(connection);
    pn_session_open(client->session);
    int64_t deadline = bench_now_ns() + AMQP_OPEN_TIMEOUT_NS;
    while (!(pn_connection_state(connection) & PN_REMOTE_ACTIVE)) {
        if (pump(client, 100, NULL, NULL) != 0) {
            client_close(client);
            return -1;
        }
        if (bench_now_ns() > deadline) {
            snprintf(client->error, sizeof(client->error), "no open from the server within 30 s");
            client_close(client);
            return -1;
        }
    }
    return 0;
}

/* Close the connection and wait for the server's close (30 s at most). */
static void client_close_gracefully(struct amqp_client *client)
{
    pn_connection_close(client->driver.connection);
    int64_t deadline = bench_now_ns() + AMQP_OPEN_TIMEOUT_NS;
    while (!(pn_connection_state(client->driver.connection) & PN_REMOTE_CLOSED) &&
           bench_now_ns() < deadline) {
        if (pump(client, 100, NULL, NULL) != 0)
            break;
    }
}

static pn_link_t *open_sender(struct amqp_client *client, const char *name, const char *address,
                              int presettled)
{
    pn_link_t *link = pn_sender(client->session, name);
    pn_terminus_set_address(pn_link_target(link), address);
    pn_terminus_set_address(pn_link_source(link), name);
    pn_link_set_snd_settle_mode(link, presettled ? PN_SND_SETTLED : PN_SND_UNSETTLED);
    pn_link_open(link);
    return link;
}

static pn_link_t *open_receiver(struct amqp_client *client, const char *name, const char *address,
                                int credit)
{
    pn_link_t *link = pn_receiver(client->session, name);
    if (address)
        pn_terminus_set_address(pn_link_source(link), address);
    else
        pn_terminus_set_dynamic(pn_link_source(link), true);
    pn_link_open(link);
    pn_link_flow(link, credit);
    return link;
}

static int wait_attached(struct amqp_client *client, pn_link_t *link)
{
    int64_t deadline = bench_now_ns() + AMQP_OPEN_TIMEOUT_NS;
    while (!(pn_link_state(link) & PN_REMOTE_ACTIVE)) {
        if (pump(client, 100, NULL, NULL) != 0)
            return -1;
        if (bench_now_ns() > deadline) {
            snprintf(client->error, sizeof(client->error), "no attach from the server in 30 s");
            return -1;
        }
    }
    return 0;
}

static void amqp_queue_address(char *buf, size_t buf_size, const char *queue)
{
    snprintf(buf, buf_size, "/queue/%s", queue);
}

/* Encoder of bench messages: one pn_message_t reused. */
struct encoder {
    pn_message_t *message;
    char *body;
    char *encoded;
    size_t encoded_cap;
};

static int encoder_init(struct encoder *encoder, size_t size)
{
    encoder->message = pn_message();
    encoder->body = malloc(size);
    encoder->encoded_cap = size + 1024;
    encoder->encoded = malloc(encoder->encoded_cap);
    return encoder->message && encoder->body && encoder->encoded ? 0 : -1;
}

static void encoder_free(struct encoder *encoder)
{
    if (encoder->message)
        pn_message_free(encoder->message);
    free(encoder->body);
    free(encoder->encoded);
}

/* Encode message seq (reply_to/correlation may be NULL); returns its size or -1. */
static ssize_t encode_message(struct encoder *encoder, struct bench_session *session, uint64_t seq,
                              const char *to, const char *reply_to, const char *correlation)
{
    const struct bench_options *options = session->options;
    char key[32];
    bench_message_format(options, session->tag, seq, encoder->body, key, sizeof(key));
    pn_message_t *message = encoder->message;
    pn_message_clear(message);
    pn_message_set_durable(message, true);
    if (to)
        pn_message_set_address(message, to);
    if (reply_to)
        pn_message_set_reply_to(message, reply_to);
    if (correlation) {
        pn_atom_t id = {.type = PN_STRING};
        id.u.as_bytes = pn_bytes(strlen(correlation), correlation);
        pn_message_set_correlation_id(message, id);
    }
    pn_data_t *properties = pn_message_properties(message);
    pn_data_put_map(properties);
    pn_data_enter(properties);
    pn_data_put_string(properties, pn_bytes(9, "kafka-key"));
    pn_data_put_string(properties, pn_bytes(strlen(key), key));
    pn_data_exit(properties);
    pn_data_t *body = pn_message_body(message);
    pn_data_put_binary(body, pn_bytes(options->size, encoder->body));
    size_t size = encoder->encoded_cap;
    if (pn_message_encode(message, encoder->encoded, &size) != 0)
        return -1;
    return (ssize_t)size;
}

static void send_encoded(pn_link_t *link, uint64_t tag, const char *data, size_t size,
                         int presettled)
{
    pn_delivery_t *delivery = pn_delivery(link, pn_dtag((const char *)&tag, sizeof(tag)));
    pn_link_send(link, data, size);
    pn_link_advance(link);
    if (presettled)
        pn_delivery_settle(delivery);
}

/* ---- publish ------------------------------------------------------------------------------ */

struct publish_state {
    struct bench_session *session;
};

static void publish_handler(struct amqp_client *client, pn_event_t *event, void *context)
{
    (void)client;
    struct publish_state *state = context;
    if (pn_event_type(event) != PN_DELIVERY)
        return;
    pn_delivery_t *delivery = pn_event_delivery(event);
    if (!pn_delivery_updated(delivery))
        return;
    uint64_t outcome = pn_delivery_remote_state(delivery);
    if (outcome == PN_ACCEPTED)
        state->session->confirmed++;
    else if (outcome != 0)
        state->session->refused++;
    if (outcome != 0)
        pn_delivery_settle(delivery);
}

static int amqp_publish(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    int presettled = options->confirm && strcmp(options->confirm, "presettled") == 0;
    if (options->confirm && !presettled && strcmp(options->confirm, "unsettled") != 0)
        return bench_fail(session, "confirm '%s' is not unsettled or presettled for AMQP",
                          options->confirm);
    struct amqp_client client;
    if (client_open(&client, options, "kbridge-bench-publisher") != 0)
        return bench_fail(session, "%s", client.error);
    struct encoder encoder = {0};
    if (encoder_init(&encoder, options->size) != 0) {
        encoder_free(&encoder);
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    pn_link_t *link = open_sender(&client, "bench-publisher", session->destination, presettled);
    struct publish_state state = {.session = session};
    int rc = wait_attached(&client, link);
    uint64_t window = options->window > 0 ? (uint64_t)options->window : UINT64_MAX;
    session->start_ns = bench_now_ns();
    while (rc == 0 && (presettled ? session->sent < session->count
                                  : session->confirmed + session->refused < session->count)) {
        while (session->sent < session->count && pn_link_credit(link) > 0 &&
               (presettled || session->sent - session->confirmed - session->refused < window) &&
               pn_connection_driver_write_buffer(&client.driver).size < 1024 * 1024) {
            if (session->rate > 0 &&
                bench_now_ns() <
                    session->start_ns + (int64_t)((double)session->sent * 1e9 / session->rate))
                break;
            ssize_t size = encode_message(&encoder, session, session->first_seq + session->sent,
                                          NULL, NULL, NULL);
            if (size < 0) {
                rc = bench_fail(session, "cannot encode message %" PRIu64, session->sent);
                break;
            }
            send_encoded(link, session->sent, encoder.encoded, (size_t)size, presettled);
            session->sent++;
        }
        if (rc != 0)
            break;
        if (pump(&client, session->rate > 0 ? 1 : 100, publish_handler, &state) != 0)
            rc = bench_fail(session, "%s", client.error);
    }
    if (rc == 0 && presettled) {
        /* everything written; the server's close comes after it read it all */
        while (pn_connection_driver_write_buffer(&client.driver).size && rc == 0)
            if (pump(&client, 100, NULL, NULL) != 0)
                rc = bench_fail(session, "%s", client.error);
        client_close_gracefully(&client);
        session->confirmed = session->sent;
    } else if (rc == 0) {
        client_close_gracefully(&client);
    }
    session->end_ns = bench_now_ns();
    encoder_free(&encoder);
    client_close(&client);
    return rc;
}

/* ---- consume ------------------------------------------------------------------------------ */

struct receive_state {
    struct bench_session *session;
    pn_message_t *message;
    char *buffer;
    size_t buffer_cap;
    int credit;
    int64_t last_ns;
    /* responder only */
    struct amqp_client *client;
    struct encoder *encoder;
    struct {
        char address[256];
        pn_link_t *link;
    } replies[AMQP_MAX_REPLY_LINKS];
    int reply_count;
    uint64_t reply_tag;
};

/* Read a complete delivery into the state's buffer and decode it. Returns the
 * message body (bytes) or an empty pn_bytes when undecodable. */
static pn_bytes_t receive_message(struct receive_state *state, pn_delivery_t *delivery)
{
    pn_link_t *link = pn_delivery_link(delivery);
    size_t pending = pn_delivery_pending(delivery);
    if (pending + 1 > state->buffer_cap) {
        char *grown = realloc(state->buffer, pending + 1);
        if (!grown)
            return pn_bytes(0, NULL);
        state->buffer = grown;
        state->buffer_cap = pending + 1;
    }
    ssize_t n = pn_link_recv(link, state->buffer, pending);
    pn_link_advance(link);
    if (n < 0)
        return pn_bytes(0, NULL);
    pn_message_clear(state->message);
    if (pn_message_decode(state->message, state->buffer, (size_t)n) != 0)
        return pn_bytes(0, NULL);
    pn_data_t *body = pn_message_body(state->message);
    pn_data_rewind(body);
    if (!pn_data_next(body))
        return pn_bytes(0, NULL);
    if (pn_data_type(body) == PN_BINARY)
        return pn_data_get_binary(body);
    if (pn_data_type(body) == PN_STRING)
        return pn_data_get_string(body);
    return pn_bytes(0, NULL);
}

static void consume_handler(struct amqp_client *client, pn_event_t *event, void *context)
{
    (void)client;
    struct receive_state *state = context;
    if (pn_event_type(event) != PN_DELIVERY)
        return;
    pn_delivery_t *delivery = pn_event_delivery(event);
    pn_link_t *link = pn_delivery_link(delivery);
    if (!pn_link_is_receiver(link) || !pn_delivery_readable(delivery) ||
        pn_delivery_partial(delivery))
        return;
    pn_bytes_t body = receive_message(state, delivery);
    state->last_ns = bench_now_ns();
    bench_tracker_record(state->session->tracker, body.start ? body.start : "", body.size,
                         pn_message_get_delivery_count(state->message) > 0, state->last_ns);
    pn_delivery_update(delivery, PN_ACCEPTED);
    pn_delivery_settle(delivery);
    if (pn_link_credit(link) < state->credit / 2)
        pn_link_flow(link, state->credit - pn_link_credit(link));
}

static int receive_state_init(struct receive_state *state, struct bench_session *session,
                              int credit)
{
    memset(state, 0, sizeof(*state));
    state->session = session;
    state->message = pn_message();
    state->credit = credit > 0 ? credit : 100;
    state->last_ns = bench_now_ns();
    return state->message ? 0 : -1;
}

static void receive_state_free(struct receive_state *state)
{
    if (state->message)
        pn_message_free(state->message);
    free(state->buffer);
}

static int amqp_consume(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct amqp_client client;
    if (client_open(&client, options, "kbridge-bench-consumer") != 0)
        return bench_fail(session, "%s", client.error);
    struct receive_state state;
    if (receive_state_init(&state, session, options->prefetch) != 0) {
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    open_receiver(&client, "bench-consumer", session->destination, state.credit);
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    int rc = 0;
    session->start_ns = bench_now_ns();
    state.last_ns = session->start_ns;
    while (session->tracker->unique < session->tracker->expected) {
        if (pump(&client, 50, consume_handler, &state) != 0) {
            rc = bench_fail(session, "%s", client.error);
            break;
        }
        if (bench_now_ns() - state.last_ns > idle_ns)
            break; /* quiet: the tracker reports what is missing */
    }
    session->end_ns = state.last_ns;
    if (rc == 0) {
        /* the dispositions go out before the close, which the server answers */
        client_close_gracefully(&client);
    }
    receive_state_free(&state);
    client_close(&client);
    return rc;
}

/* ---- request-reply ------------------------------------------------------------------------ */

static pn_link_t *reply_link(struct receive_state *state, const char *address)
{
    for (int i = 0; i < state->reply_count; i++)
        if (strcmp(state->replies[i].address, address) == 0)
            return state->replies[i].link;
    if (state->reply_count == AMQP_MAX_REPLY_LINKS || strlen(address) >= 256)
        return NULL;
    char name[64];
    snprintf(name, sizeof(name), "bench-reply-%d", state->reply_count);
    pn_link_t *link = open_sender(state->client, name, address, 0);
    snprintf(state->replies[state->reply_count].address, 256, "%s", address);
    state->replies[state->reply_count].link = link;
    state->reply_count++;
    return link;
}

static void respond_handler(struct amqp_client *client, pn_event_t *event, void *context)
{
    struct receive_state *state = context;
    if (pn_event_type(event) != PN_DELIVERY)
        return;
    pn_delivery_t *delivery = pn_event_delivery(event);
    pn_link_t *link = pn_delivery_link(delivery);
    if (pn_link_is_sender(link)) {
        if (pn_delivery_updated(delivery) && pn_delivery_remote_state(delivery))
            pn_delivery_settle(delivery);
        return;
    }
    if (!pn_delivery_readable(delivery) || pn_delivery_partial(delivery))
        return;
    pn_bytes_t body = receive_message(state, delivery);
    state->last_ns = bench_now_ns();
    const char *reply_to = pn_message_get_reply_to(state->message);
    pn_atom_t correlation = pn_message_get_correlation_id(state->message);
    pn_link_t *reply = reply_to ? reply_link(state, reply_to) : NULL;
    if (reply && body.start) {
        /* the reply: the request's body and correlation-id */
        pn_message_t *message = state->encoder->message;
        pn_message_clear(message);
        pn_message_set_address(message, reply_to);
        pn_message_set_correlation_id(message, correlation);
        pn_data_put_binary(pn_message_body(message), body);
        size_t size = state->encoder->encoded_cap;
        if (pn_message_encode(message, state->encoder->encoded, &size) == 0) {
            send_encoded(reply, state->reply_tag++, state->encoder->encoded, size, 0);
            state->session->sent++;
        }
    }
    (void)client;
    pn_delivery_update(delivery, PN_ACCEPTED);
    pn_delivery_settle(delivery);
    if (pn_link_credit(link) < state->credit / 2)
        pn_link_flow(link, state->credit - pn_link_credit(link));
}

static int amqp_respond(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct amqp_client client;
    if (client_open(&client, options, "kbridge-bench-responder") != 0)
        return bench_fail(session, "%s", client.error);
    struct receive_state state;
    struct encoder encoder = {0};
    if (receive_state_init(&state, session, 100) != 0 ||
        encoder_init(&encoder, options->size + 256) != 0) {
        receive_state_free(&state);
        encoder_free(&encoder);
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    state.client = &client;
    state.encoder = &encoder;
    open_receiver(&client, "bench-responder", session->destination, state.credit);
    int rc = 0;
    while (!*session->stop) {
        if (pump(&client, 50, respond_handler, &state) != 0) {
            rc = bench_fail(session, "%s", client.error);
            break;
        }
    }
    receive_state_free(&state);
    encoder_free(&encoder);
    client_close(&client);
    return rc;
}

/* The requester: settle the outcomes of its requests, record the replies. */
static void request_handler(struct amqp_client *client, pn_event_t *event, void *context)
{
    if (pn_event_type(event) == PN_DELIVERY && pn_link_is_sender(pn_event_link(event))) {
        pn_delivery_t *delivery = pn_event_delivery(event);
        if (pn_delivery_updated(delivery) && pn_delivery_remote_state(delivery))
            pn_delivery_settle(delivery);
        return;
    }
    consume_handler(client, event, context);
}

static int amqp_request(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct amqp_client client;
    if (client_open(&client, options, "kbridge-bench-requester") != 0)
        return bench_fail(session, "%s", client.error);
    struct receive_state state;
    struct encoder encoder = {0};
    if (receive_state_init(&state, session, options->window > 0 ? options->window * 2 : 100) != 0 ||
        encoder_init(&encoder, options->size) != 0) {
        receive_state_free(&state);
        encoder_free(&encoder);
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    pn_link_t *replies = open_receiver(&client, "bench-replies", NULL, state.credit);
    pn_link_t *requests = open_sender(&client, "bench-requests", session->destination, 0);
    int rc = wait_attached(&client, replies);
    if (rc == 0)
        rc = wait_attached(&client, requests);
    const char *reply_to = rc == 0 ? pn_terminus_get_address(pn_link_remote_source(replies)) : NULL;
    if (rc == 0 && !reply_to)
        rc = -1, snprintf(client.error, sizeof(client.error), "no address for the dynamic source");
    if (rc != 0) {
        receive_state_free(&state);
        encoder_free(&encoder);
        client_close(&client);
        return bench_fail(session, "%s", client.error);
    }
    char reply_address[256];
    snprintf(reply_address, sizeof(reply_address), "%s", reply_to);
    uint64_t window = options->window > 0 ? (uint64_t)options->window : 1;
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    struct bench_tracker *tracker = session->tracker;
    session->start_ns = bench_now_ns();
    state.last_ns = session->start_ns;
    while (tracker->unique < session->count) {
        while (session->sent < session->count && session->sent - tracker->unique < window &&
               pn_link_credit(requests) > 0) {
            char correlation[32];
            snprintf(correlation, sizeof(correlation), "c%" PRIu64, session->sent);
            ssize_t size =
                encode_message(&encoder, session, session->sent, NULL, reply_address, correlation);
            if (size < 0) {
                rc = bench_fail(session, "cannot encode a request");
                break;
            }
            send_encoded(requests, session->sent, encoder.encoded, (size_t)size, 0);
            session->sent++;
        }
        if (rc != 0)
            break;
        if (pump(&client, 50, request_handler, &state) != 0) {
            rc = bench_fail(session, "%s", client.error);
            break;
        }
        if (bench_now_ns() - state.last_ns > idle_ns)
            break; /* replies stopped: the tracker reports what is missing */
    }
    session->end_ns = state.last_ns;
    session->confirmed = tracker->unique;
    receive_state_free(&state);
    encoder_free(&encoder);
    client_close(&client);
    return rc;
}

const struct bench_protocol bench_amqp = {
    .name = "amqp",
    .queue_address = amqp_queue_address,
    .publish = amqp_publish,
    .consume = amqp_consume,
    .respond = amqp_respond,
    .request = amqp_request,
    .open_idle = NULL,
};
