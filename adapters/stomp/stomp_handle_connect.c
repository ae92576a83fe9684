/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_connect.c -- CONNECT and STOMP: version negotiation,
 * heart-beat negotiation, login/passcode against auth.users, the core
 * session, and the CONNECTED reply. `host` selects the vhost when it names
 * one in the config (`vhosts`, RabbitMQ's STOMP), else (clients send the TCP
 * host name there: `localhost`, `127.0.0.1`) the session is in vhost `/`, as
 * ActiveMQ ignores it (architecture §11 "Vhosts"); a vhost, `/` included,
 * that the user's auth.users[].vhosts lacks is refused with an ERROR naming
 * the vhost and the user; `client-id` is kept for
 * durable subscriptions.
 * Without `login`, on a TLS connection whose client certificate was
 * verified (mTLS), the certificate's identity is the user (no passcode). */
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "stomp_handlers.h"
#include "version.h"

#define STOMP_SUPPORTED_VERSIONS "1.0,1.1,1.2"

static void stomp_make_session_id(struct stomp_connection *connection)
{
    uint32_t random = 0;
    evutil_secure_rng_get_bytes(&random, sizeof(random));
    snprintf(connection->session_id, sizeof(connection->session_id), "kbridge-%llu-%08x",
             (unsigned long long)++connection->adapter->sessions, random);
}

/* A reload took the session's access (core_reconfigure): ERROR, then close. */
static void stomp_connect_revoked(void *opaque, const char *reason)
{
    struct stomp_connection *connection = opaque;
    struct stomp_error error = {0};
    stomp_fail_as(&error, STOMP_KIND_AUTH, "Access refused", "access revoked",
                  "The server configuration was reloaded and no longer allows this "
                  "connection: %s. Connect again with credentials it accepts.",
                  reason);
    stomp_send_error(connection, &error, NULL);
}

/* After the credentials were accepted: the session and CONNECTED. */
static int stomp_connect_finish(struct stomp_connection *connection, const char *user,
                                struct stomp_error *error)
{
    struct stomp_adapter *adapter = connection->adapter;
    enum stomp_version version = connection->connect->version;
    if (!(connection->user = strdup(user)))
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not accept the connection.");
    uint32_t most = 0;
    const char *limit = core_session_admit(adapter->base.context.core, user, &most);
    if (limit)
        return stomp_fail_as(error, STOMP_KIND_LIMIT, "Bad CONNECT", "too many connections",
                             "User '%s' has %u connections open already (%s, every protocol "
                             "together). Close one, or ask the operator to raise the limit.",
                             user, most, limit);
    connection->session = core_session_new(adapter->base.context.core, "stomp", user,
                                           connection->client_id, connection->base.peer);
    if (!connection->session)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "cannot open a session",
                          "The server could not open a session for this connection (out of "
                          "memory). Try again later.");
    /* no vhost named: "/", which the user's auth.users[].vhosts may lack */
    const char *vhost = connection->connect->vhost;
    char why[600];
    int rc = core_session_set_vhost(connection->session, vhost ? vhost : CORE_DEFAULT_VHOST, why,
                                    sizeof(why));
    if (rc == CORE_ERR_ACCESS)
        return stomp_fail(error, stomp_core_error(rc)->login, why,
                          "The server refused the CONNECT: %s (%s). Connect to a vhost the user "
                          "may use (the host header), or ask the operator to add it to the "
                          "user's auth.users[].vhosts.",
                          why,
                          vhost ? "the vhost the host header named"
                                : "no host header named a vhost, so the connection is in '/'");
    if (rc != CORE_OK)
        /* a reload removed it since CONNECT arrived */
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Bad CONNECT", "vhost not found",
                             "The host header named vhost '%s', which the server no longer "
                             "has (%s).",
                             vhost ? vhost : CORE_DEFAULT_VHOST, why);
    core_session_set_revoke(connection->session, stomp_connect_revoked, connection);
    stomp_make_session_id(connection);

    connection->state = STOMP_STATE_CONNECTED;
    connection->version = version;
    stomp_parser_set_version(connection->parser, version);
    stomp_connection_reconfigure(connection); /* full frame limits from now on */

    struct stomp_header headers[] = {
        stomp_header_make("version", stomp_version_name(version)),
        stomp_header_make("server", "kbridge/" KBRIDGE_VERSION),
        stomp_header_make("session", connection->session_id),
        stomp_header_make("heart-beat", connection->connect->heartbeat),
    };
    if (stomp_connection_write(connection, STOMP_COMMAND_CONNECTED, headers,
                               sizeof(headers) / sizeof(headers[0]), NULL, 0) < 0)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not answer CONNECT.");
    if (stomp_heartbeat_start(connection) < 0)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not start heart-beating.");
    log_debug("stomp", "%s: connected as %s, STOMP %s, session %s%s%s", connection->base.peer,
              connection->user, stomp_version_name(version), connection->session_id,
              connection->client_id ? ", client-id " : "",
              connection->client_id ? connection->client_id : "");
    return STOMP_OK;
}

/* The answer of core_authenticate_start (from the loop; never after the
 * connection started closing: that cancels the check). */
static void stomp_connect_checked(void *opaque, int result, const char *user, const char *reason)
{
    struct stomp_connection *connection = opaque;
    connection->auth = NULL;
    const char *login = connection->connect->login;
    struct stomp_error error = {0};
    int rc;
    if (result == CORE_OK)
        rc = stomp_connect_finish(connection, user, &error);
    else if (result == CORE_ERR_ACCESS)
        rc = stomp_fail_as(&error, stomp_core_error(result)->login, "Bad CONNECT",
                           "authentication failed",
                           "The server refused the CONNECT%s%s%s: %s. Check the login and "
                           "passcode headers against the users configured in kbridged "
                           "(auth.users).",
                           login ? " for login '" : "", login ? login : "", login ? "'" : "",
                           reason && reason[0] ? reason : "bad credentials");
    else
        rc = stomp_fail(&error, stomp_core_error(result)->login, "cannot check the credentials",
                        "The server could not check the credentials (%s). Try again later.",
                        reason ? reason : "internal error");
    if (rc != STOMP_OK) {
        stomp_send_error(connection, &error, connection->connect->receipt);
        return; /* connection->connect goes with the connection */
    }
    stomp_connect_wait_free(connection->connect); /* CONNECTED is sent */
    connection->connect = NULL;
    stomp_connection_update_reading(connection); /* frames sent behind CONNECT */
}

/* mTLS: CONNECT without login on a connection with a verified client
 * certificate; `identity` is its user name, or NULL with `why` (a
 * certificate that names no acceptable user). Answered at once. */
static int stomp_connect_certificate(struct stomp_connection *connection, const char *identity,
                                     const char *why, struct stomp_error *error)
{
    char user[256], reason[320];
    int rc = identity
                 ? core_authenticate_certificate(connection->adapter->base.context.core, identity,
                                                 user, sizeof(user), reason, sizeof(reason))
                 : CORE_ERR_ACCESS;
    if (!identity)
        snprintf(reason, sizeof(reason), "%s", why);
    if (rc != CORE_OK) {
        log_info("stomp", "%s: certificate login refused: %s", connection->base.peer, reason);
        return stomp_fail_as(error, stomp_core_error(rc)->login, "Bad CONNECT",
                             "authentication failed",
                             "The server refused the CONNECT: %s. Connect with a client "
                             "certificate of a user configured in kbridged (auth.users), or "
                             "with login and passcode headers.",
                             reason);
    }
    rc = stomp_connect_finish(connection, user, error);
    if (rc != STOMP_OK)
        return rc;
    stomp_connect_wait_free(connection->connect); /* CONNECTED is sent */
    connection->connect = NULL;
    return STOMP_OK;
}

int stomp_handle_connect(struct stomp_connection *connection, const struct stomp_frame *frame,
                         struct stomp_error *error)
{
    struct stomp_adapter *adapter = connection->adapter;
    if (connection->state != STOMP_STATE_CONNECTING)
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Bad CONNECT", "already connected",
                             "This connection already completed CONNECT; send it only once per "
                             "connection.");

    enum stomp_version version;
    const char *accept_version = stomp_frame_header_value(frame, "accept-version");
    if (stomp_version_negotiate(accept_version, &version) < 0) {
        stomp_fail_as(error, STOMP_KIND_UNSUPPORTED, "Version mismatch",
                      "supported versions: " STOMP_SUPPORTED_VERSIONS,
                      "The client offered accept-version:%s but this server speaks "
                      "STOMP " STOMP_SUPPORTED_VERSIONS ". Offer one of these versions.",
                      accept_version ? accept_version : "");
        error->version = STOMP_SUPPORTED_VERSIONS;
        return STOMP_FAILED;
    }

    char heartbeat[32];
    const char *heartbeat_header = stomp_frame_header_value(frame, "heart-beat");
    if (stomp_heartbeat_negotiate(connection, heartbeat_header, heartbeat, sizeof(heartbeat)) < 0)
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Bad CONNECT",
                             "malformed heart-beat header",
                             "The heart-beat header must be two non-negative integers in "
                             "milliseconds, 'cx,cy' (e.g. heart-beat:10000,10000); got '%s'.",
                             heartbeat_header);

    /* Kept for the answer; freed with the connection if anything below fails. */
    struct stomp_connect_wait *wait = calloc(1, sizeof(*wait));
    if (!wait)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not accept the connection.");
    stomp_connect_wait_free(connection->connect);
    connection->connect = wait;
    const char *client_id = stomp_frame_header_value(frame, "client-id");
    const char *receipt = stomp_frame_header_value(frame, "receipt");
    const char *host = stomp_frame_header_value(frame, "host");
    bool names_vhost = host && core_vhost_topic_prefix(adapter->base.context.core, host);
    if ((client_id && client_id[0] && !(connection->client_id = strdup(client_id))) ||
        (receipt && !(wait->receipt = strdup(receipt))) ||
        (names_vhost && !(wait->vhost = strdup(host))))
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not accept the connection.");
    wait->version = version;
    snprintf(wait->heartbeat, sizeof(wait->heartbeat), "%s", heartbeat);

    /* The password check runs on the worker pool: nothing more is parsed
     * (stomp_connection_may_parse) until stomp_connect_checked answers. */
    const char *login = stomp_frame_header_value(frame, "login");
    const char *passcode = stomp_frame_header_value(frame, "passcode");
    if (!login || !login[0]) {
        char identity[256];
        int has_identity =
            transport_peer_identity(&connection->base.transport, identity, sizeof(identity));
        if (has_identity != 0)
            return stomp_connect_certificate(connection, has_identity > 0 ? identity : NULL,
                                             identity, error);
    }
    if (login && !(wait->login = strdup(login)))
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not accept the connection.");
    connection->auth =
        core_authenticate_start_from(adapter->base.context.core, connection->base.peer, login,
                                     passcode, stomp_connect_checked, connection);
    if (!connection->auth)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not check the credentials. Try again later.");
    stomp_connection_update_reading(connection);
    return STOMP_PENDING;
}
