/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_handle_open.c -- the client's open frame: SASL has authenticated the
 * transport by now (or it skipped SASL and anonymous access is on), so the
 * core session is created here and our open goes back with the node's
 * container id and the ANONYMOUS-RELAY capability (JMS and RabbitMQ 4
 * clients look for it before sending with a null target). A connection over
 * limits.max_connections, or one that arrives while draining, is opened and
 * closed at once with the reason. The open's hostname `vhost:NAME`
 * (RabbitMQ's form) puts the session in vhost NAME (unknown: closed with
 * amqp:not-found naming it); any other hostname is the vhost `/`
 * (architecture §11 "Vhosts"). A vhost the user's auth.users[].vhosts lacks,
 * `/` included, is closed with amqp:unauthorized-access naming it. */
#include <event2/event.h>
#include <proton/codec.h>
#include <proton/connection.h>
#include <proton/transport.h>
#include <stdio.h>
#include <string.h>

#include "amqp_connection.h"
#include "build-config.h"
#include "config.h"
#include "core.h"
#include "log.h"

static void amqp_open_describe_server(pn_connection_t *pc, const struct config *config)
{
    pn_connection_set_container(pc, config->node_id ? config->node_id : "kbridge");
    pn_data_t *capabilities = pn_connection_offered_capabilities(pc);
    pn_data_clear(capabilities);
    pn_data_put_array(capabilities, false, PN_SYMBOL);
    pn_data_enter(capabilities);
    pn_data_put_symbol(capabilities, pn_bytes(strlen("ANONYMOUS-RELAY"), "ANONYMOUS-RELAY"));
    pn_data_exit(capabilities);
    pn_data_t *properties = pn_connection_properties(pc);
    pn_data_clear(properties);
    pn_data_put_map(properties);
    pn_data_enter(properties);
    pn_data_put_symbol(properties, pn_bytes(strlen("product"), "product"));
    pn_data_put_string(properties, pn_bytes(strlen("kbridge"), "kbridge"));
    pn_data_put_symbol(properties, pn_bytes(strlen("version"), "version"));
    pn_data_put_string(properties, pn_bytes(strlen(PACKAGE_VERSION), PACKAGE_VERSION));
    pn_data_exit(properties);
}

/* A reload took the session's access (core_reconfigure): close the
 * connection with amqp:unauthorized-access. */
static void amqp_handle_revoked(void *opaque, const char *reason)
{
    struct amqp_connection *connection = opaque;
    amqp_adapter_count_error(connection->adapter, AMQP_KIND_AUTH);
    connection->base.close_reason = "access revoked by a reload";
    char description[256];
    snprintf(description, sizeof(description),
             "access revoked: the server configuration was reloaded and %s", reason);
    amqp_connection_close(connection, "amqp:unauthorized-access", description);
}

/* The vhost the open's hostname names ("vhost:NAME"), or NULL: "/". */
static const char *amqp_open_vhost(pn_connection_t *pc)
{
    const char *hostname = pn_connection_remote_hostname(pc);
    if (!hostname || strncmp(hostname, "vhost:", 6) != 0)
        return NULL;
    return hostname + 6;
}

void amqp_handle_connection_open(struct amqp_connection *connection)
{
    struct amqp_adapter *adapter = connection->adapter;
    const struct config *config = amqp_adapter_config(adapter);
    pn_connection_t *pc = connection->driver.connection;
    if (!(pn_connection_state(pc) & PN_LOCAL_UNINIT))
        return;
    amqp_open_describe_server(pc, config);

    if (connection->refused) {
        amqp_adapter_count_error(adapter, AMQP_KIND_LIMIT);
        char description[256];
        const char *limit =
            connection->refused_limit ? connection->refused_limit : "limits.max_connections";
        snprintf(description, sizeof(description),
                 "too many connections: this server has %u connections open already (%s%s); "
                 "try again later",
                 connection->refused_value, limit,
                 strcmp(limit, "limits.max_connections_per_address") == 0
                     ? ", from this address"
                     : ", every protocol together");
        connection->base.close_reason = "over a connection limit";
        amqp_connection_close(connection, "amqp:resource-limit-exceeded", description);
        return;
    }
    if (adapter->base.draining) {
        connection->base.close_reason = "server shutting down";
        amqp_connection_close(connection, "amqp:connection:forced", "the server is shutting down");
        return;
    }

    const char *user = pn_transport_get_user(connection->driver.transport);
    if (!user || !*user) {
        /* No SASL layer: amqp_sasl_install lets that through only when
         * anonymous access is on. */
        char reason[128];
        int rc = core_authenticate_anonymous(adapter->base.context.core, connection->user,
                                             sizeof(connection->user), reason, sizeof(reason));
        if (rc != CORE_OK) {
            struct amqp_error error = amqp_core_error(rc)->login;
            amqp_adapter_count_error(adapter, error.kind);
            connection->base.close_reason = "authentication required";
            amqp_connection_close(connection, error.condition, reason);
            return;
        }
    } else {
        snprintf(connection->user, sizeof(connection->user), "%s", user);
    }
    const char *container = pn_connection_remote_container(pc);
    snprintf(connection->container_id, sizeof(connection->container_id), "%s",
             container ? container : "");
    uint32_t most = 0;
    const char *limit = core_session_admit(adapter->base.context.core, connection->user, &most);
    if (limit) {
        char description[256];
        snprintf(description, sizeof(description),
                 "too many connections: user '%s' has %u connections open already (%s, every "
                 "protocol together)",
                 connection->user, most, limit);
        amqp_adapter_count_error(adapter, AMQP_KIND_LIMIT);
        connection->base.close_reason = "over limits.max_connections_per_user";
        amqp_connection_close(connection, "amqp:resource-limit-exceeded", description);
        return;
    }
    connection->session = core_session_new(
        adapter->base.context.core, "amqp", connection->user,
        connection->container_id[0] ? connection->container_id : NULL, connection->base.peer);
    if (!connection->session) {
        amqp_adapter_count_error(adapter, AMQP_KIND_INTERNAL);
        amqp_connection_close(connection, "amqp:internal-error",
                              "the server could not open a session (out of memory)");
        return;
    }
    /* no vhost:NAME: "/", which the user's auth.users[].vhosts may lack */
    const char *vhost = amqp_open_vhost(pc);
    char why[600];
    int rc = core_session_set_vhost(connection->session, vhost ? vhost : CORE_DEFAULT_VHOST, why,
                                    sizeof(why));
    if (rc != CORE_OK) {
        core_session_close(connection->session);
        connection->session = NULL;
        /* access: amqp:unauthorized-access; unknown: amqp:not-found */
        struct amqp_error error = amqp_core_error(rc)->now;
        amqp_adapter_count_error(adapter, error.kind);
        connection->base.close_reason =
            rc == CORE_ERR_ACCESS ? "vhost access refused" : "unknown vhost";
        char description[sizeof(why) + 300];
        if (vhost)
            snprintf(description, sizeof(description), "%s (the open's hostname 'vhost:%.255s')",
                     why, vhost);
        else
            snprintf(description, sizeof(description),
                     "%s (the open's hostname names no vhost:NAME, so the connection is in '/')",
                     why);
        amqp_connection_close(connection, error.condition, description);
        return;
    }
    core_session_set_revoke(connection->session, amqp_handle_revoked, connection);
    evtimer_del(connection->open_timer);
    pn_connection_open(pc);
    log_info("amqp", "%s: open as '%s', container '%s', vhost '%s'", connection->base.peer,
             connection->user, connection->container_id, core_session_vhost(connection->session));
}
