/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_handle_attach.c -- attach and detach. An attach is checked here
 * (address spelling per architecture §2, publish ACL, features that are not
 * built) and handed to amqp_link_in.c (the client sends to a target) or
 * amqp_link_out.c (the client receives from a source). A refused attach is
 * answered as the spec says: an attach with a null terminus, then a detach
 * carrying the error condition; the connection carries on. */
#include <proton/codec.h>
#include <proton/connection.h>
#include <proton/link.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_address.h"
#include "amqp_connection.h"
#include "config.h"
#include "core.h"
#include "log.h"

void amqp_link_refuse(struct amqp_connection *connection, pn_link_t *link,
                      enum amqp_error_kind kind, const char *condition, const char *format, ...)
{
    char description[512];
    va_list args;
    va_start(args, format);
    vsnprintf(description, sizeof(description), format, args);
    va_end(args);
    amqp_adapter_count_error(connection->adapter, kind);
    log_info("amqp", "%s: link '%s' refused with %s: %s", connection->base.peer, pn_link_name(link),
             condition, description);
    struct amqp_link *ours = pn_link_get_context(link);
    if (ours)
        amqp_link_free(ours);
    if (pn_link_state(link) & PN_LOCAL_UNINIT) {
        /* The answer to a refused attach has a null terminus on our side. */
        pn_terminus_set_type(pn_link_is_sender(link) ? pn_link_source(link) : pn_link_target(link),
                             PN_UNSPECIFIED);
        if (pn_link_is_sender(link))
            pn_terminus_copy(pn_link_target(link), pn_link_remote_target(link));
        else
            pn_terminus_copy(pn_link_source(link), pn_link_remote_source(link));
        pn_link_open(link);
    }
    pn_condition_set_name(pn_link_condition(link), condition);
    pn_condition_set_description(pn_link_condition(link), description);
    pn_link_close(link);
    amqp_connection_schedule(connection);
}

void amqp_link_free(struct amqp_link *link)
{
    struct amqp_connection *connection = link->connection;
    if (link->outgoing) {
        amqp_link_out_close(link);
    } else {
        amqp_publishes_detach(connection, link);
        amqp_link_in_forget_held(link);
    }
    pn_link_set_context(link->link, NULL);
    if (link->prev)
        link->prev->next = link->next;
    else
        connection->links = link->next;
    if (link->next)
        link->next->prev = link->prev;
    connection->link_count--;
    free(link);
}

/* The JMS selector filter as ActiveMQ, Artemis and Qpid JMS write it: a
 * described string whose descriptor is this symbol or this code. */
#define AMQP_SELECTOR_FILTER_SYMBOL "apache.org:selector-filter:string"
#define AMQP_SELECTOR_FILTER_CODE UINT64_C(0x0000468C00000004)

/* The selector of a filter-set entry's value (at `filter`'s cursor), or NULL
 * when it is another kind of filter. *out is malloc'd; -1 out of memory. */
static int amqp_attach_selector_filter(pn_data_t *filter, char **out)
{
    *out = NULL;
    if (pn_data_type(filter) != PN_DESCRIBED)
        return 0;
    pn_data_enter(filter);
    bool selector = false;
    if (pn_data_next(filter)) {
        if (pn_data_type(filter) == PN_SYMBOL) {
            pn_bytes_t name = pn_data_get_symbol(filter);
            selector = name.size == strlen(AMQP_SELECTOR_FILTER_SYMBOL) &&
                       memcmp(name.start, AMQP_SELECTOR_FILTER_SYMBOL, name.size) == 0;
        } else if (pn_data_type(filter) == PN_ULONG) {
            selector = pn_data_get_ulong(filter) == AMQP_SELECTOR_FILTER_CODE;
        }
    }
    int rc = 0;
    if (selector && pn_data_next(filter) && pn_data_type(filter) == PN_STRING) {
        pn_bytes_t text = pn_data_get_string(filter);
        *out = malloc(text.size + 1);
        if (!*out) {
            rc = -1;
        } else {
            memcpy(*out, text.start, text.size);
            (*out)[text.size] = '\0';
        }
    }
    pn_data_exit(filter);
    return rc;
}

/* RabbitMQ's stream filter: where a receiver starts reading (architecture
 * §13 "Replay"), a symbol-described value. */
#define AMQP_STREAM_OFFSET_FILTER_SYMBOL "rabbitmq:stream-offset-spec"

/* The x-stream-offset of a filter-set entry's value (at `filter`'s cursor)
 * as text, or NULL when it is another kind of filter: a string or symbol
 * (first, last, next, an interval), a long or ulong (an offset), a timestamp
 * (as RabbitMQ's clients send a time: epoch ms, written timestamp=SECONDS).
 * *out is malloc'd; -1 out of memory. */
static int amqp_attach_stream_offset_filter(pn_data_t *filter, char **out)
{
    *out = NULL;
    if (pn_data_type(filter) != PN_DESCRIBED)
        return 0;
    pn_data_enter(filter);
    bool stream = false;
    if (pn_data_next(filter) && pn_data_type(filter) == PN_SYMBOL) {
        pn_bytes_t name = pn_data_get_symbol(filter);
        stream = name.size == strlen(AMQP_STREAM_OFFSET_FILTER_SYMBOL) &&
                 memcmp(name.start, AMQP_STREAM_OFFSET_FILTER_SYMBOL, name.size) == 0;
    }
    char text[64] = "";
    if (stream && pn_data_next(filter)) {
        switch (pn_data_type(filter)) {
        case PN_STRING:
        case PN_SYMBOL: {
            pn_bytes_t value = pn_data_type(filter) == PN_STRING ? pn_data_get_string(filter)
                                                                 : pn_data_get_symbol(filter);
            snprintf(text, sizeof(text), "%.*s", (int)(value.size < 60 ? value.size : 60),
                     value.start);
            break;
        }
        case PN_LONG:
            snprintf(text, sizeof(text), "%lld", (long long)pn_data_get_long(filter));
            break;
        case PN_ULONG:
            snprintf(text, sizeof(text), "%llu", (unsigned long long)pn_data_get_ulong(filter));
            break;
        case PN_TIMESTAMP:
            snprintf(text, sizeof(text), "timestamp=%lld",
                     (long long)(pn_data_get_timestamp(filter) / 1000));
            break;
        default: snprintf(text, sizeof(text), "(a value of another type)"); break;
        }
    }
    pn_data_exit(filter);
    if (!stream)
        return 0;
    if (!(*out = strdup(text)))
        return -1;
    return 0;
}

/* The source's filter set: 0 when it has none, or only a JMS selector (then
 * in *selector) and RabbitMQ's stream offset (then in *stream_offset), each
 * malloc'd (a second one of a kind is not applied: refused); 1 when it has
 * filters kbridge does not apply (their keys in `names`); -1 out of memory. */
static int amqp_attach_filters(pn_terminus_t *source, char **selector, char **stream_offset,
                               char *names, size_t names_size)
{
    pn_data_t *filter = pn_terminus_filter(source);
    *selector = NULL;
    *stream_offset = NULL;
    names[0] = '\0';
    if (!filter || pn_data_size(filter) == 0)
        return 0;
    pn_data_rewind(filter);
    if (!pn_data_next(filter) || pn_data_type(filter) != PN_MAP) {
        pn_data_rewind(filter);
        return 0;
    }
    size_t count = pn_data_get_map(filter);
    pn_data_enter(filter);
    size_t used = 0;
    int rc = 0;
    for (size_t i = 0; i < count / 2 && pn_data_next(filter); i++) {
        pn_bytes_t key = {0, ""};
        if (pn_data_type(filter) == PN_SYMBOL)
            key = pn_data_get_symbol(filter);
        else if (pn_data_type(filter) == PN_STRING)
            key = pn_data_get_string(filter);
        if (!pn_data_next(filter))
            break;
        char *text = NULL, *offset = NULL;
        if (amqp_attach_selector_filter(filter, &text) < 0 ||
            (!text && amqp_attach_stream_offset_filter(filter, &offset) < 0)) {
            rc = -1;
            break;
        }
        if (text && !*selector) {
            *selector = text;
            continue;
        }
        if (offset && !*stream_offset) {
            *stream_offset = offset;
            continue;
        }
        free(text); /* a second one of a kind is not applied either */
        free(offset);
        int n = snprintf(names + used, names_size - used, "%s%.*s", used ? ", " : "", (int)key.size,
                         key.start);
        if (n > 0 && (size_t)n < names_size - used)
            used += (size_t)n;
        rc = 1;
    }
    pn_data_exit(filter);
    pn_data_rewind(filter);
    if (rc != 0) {
        free(*selector);
        free(*stream_offset);
        *selector = *stream_offset = NULL;
    }
    return rc;
}

/* Does the terminus list `name` among its capabilities (one symbol or an array)? */
static bool amqp_terminus_has_capability(pn_terminus_t *terminus, const char *name)
{
    pn_data_t *capabilities = pn_terminus_capabilities(terminus);
    if (!capabilities || pn_data_size(capabilities) == 0)
        return false;
    size_t name_len = strlen(name);
    bool found = false;
    pn_data_rewind(capabilities);
    if (pn_data_next(capabilities)) {
        if (pn_data_type(capabilities) == PN_SYMBOL) {
            pn_bytes_t symbol = pn_data_get_symbol(capabilities);
            found = symbol.size == name_len && memcmp(symbol.start, name, name_len) == 0;
        } else if (pn_data_type(capabilities) == PN_ARRAY) {
            size_t count = pn_data_get_array(capabilities);
            pn_data_enter(capabilities);
            for (size_t i = 0; i < count && !found && pn_data_next(capabilities); i++) {
                if (pn_data_type(capabilities) != PN_SYMBOL)
                    continue;
                pn_bytes_t symbol = pn_data_get_symbol(capabilities);
                found = symbol.size == name_len && memcmp(symbol.start, name, name_len) == 0;
            }
            pn_data_exit(capabilities);
        }
    }
    pn_data_rewind(capabilities);
    return found;
}

/* A plain NAME (no queue:// topic:// or /prefix/ spelling). */
static bool amqp_address_is_plain(const char *address)
{
    return address[0] != '/' && !strstr(address, "://");
}

static int amqp_attach_parse_address(struct amqp_connection *connection, pn_link_t *link,
                                     pn_terminus_t *terminus, const char *address,
                                     struct destination *destination, bool sending)
{
    char reason[256];
    if (amqp_terminus_has_capability(terminus, "shared") ||
        amqp_terminus_has_capability(terminus, "global")) {
        amqp_link_refuse(connection, link, AMQP_KIND_UNSUPPORTED, "amqp:not-implemented",
                         "shared subscriptions (capability 'shared'/'global') are not supported "
                         "yet; use a queue for competing consumers or a durable subscription");
        return -1;
    }
    if (address_parse(&amqp_addresses, address, destination, reason, sizeof(reason)) < 0) {
        amqp_link_refuse(connection, link, AMQP_KIND_ADDRESS, "amqp:not-found",
                         "%s. Addresses are NAME, queue://NAME, /queue/NAME, /queues/NAME, "
                         "topic://NAME, /topic/NAME, /exchanges/NAME/KEY or /exchanges/NAME, where "
                         "NAME is a legal Kafka topic name (A-Z a-z 0-9 . _ -, at most 249 "
                         "characters)",
                         reason);
        return -1;
    }
    if (strlen(address) >= CORE_REPLY_ADDRESS_MAX) { /* the link keeps it (amqp_link.address) */
        amqp_link_refuse(connection, link, AMQP_KIND_ADDRESS, "amqp:not-found",
                         "address '%.100s...' is longer than %d bytes", address,
                         CORE_REPLY_ADDRESS_MAX - 1);
        return -1;
    }
    if (destination->kind == DESTINATION_TEMP_QUEUE ||
        (destination->kind == DESTINATION_REPLY_QUEUE && !sending)) {
        amqp_link_refuse(connection, link, AMQP_KIND_UNSUPPORTED, "amqp:not-implemented",
                         "address '%s': a reply queue is received from only through the dynamic "
                         "source that created it",
                         address);
        return -1;
    }
    if (sending && destination->wildcard) {
        amqp_link_refuse(connection, link, AMQP_KIND_ADDRESS, "amqp:not-found",
                         "address '%s' contains the wildcard words * or #, which only receivers "
                         "may use; send to one topic name",
                         address);
        return -1;
    }
    /* Qpid JMS and Artemis clients name a topic by a plain address plus the
     * terminus capability "topic". */
    if (destination->kind == DESTINATION_QUEUE && amqp_address_is_plain(address) &&
        amqp_terminus_has_capability(terminus, "topic"))
        destination->kind = DESTINATION_TOPIC;
    return 0;
}

static struct amqp_link *amqp_attach_new_link(struct amqp_connection *connection, pn_link_t *link)
{
    struct amqp_link *ours = calloc(1, sizeof(*ours));
    if (!ours)
        return NULL;
    ours->connection = connection;
    ours->link = link;
    ours->outgoing = pn_link_is_sender(link);
    ours->number = ++connection->links_attached;
    ours->next = connection->links;
    if (connection->links)
        connection->links->prev = ours;
    connection->links = ours;
    connection->link_count++;
    pn_link_set_context(link, ours);
    return ours;
}

/* The client's sender: kbridge receives on a link to a target. */
static void amqp_attach_incoming(struct amqp_connection *connection, pn_link_t *link)
{
    pn_terminus_t *target = pn_link_remote_target(link);
    if (pn_terminus_get_type(target) == PN_COORDINATOR) {
        /* declare / discharge (amqp_tx.c) */
        struct amqp_link *ours = amqp_attach_new_link(connection, link);
        if (!ours) {
            amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:internal-error",
                             "out of memory");
            return;
        }
        ours->coordinator = true;
        snprintf(ours->address, sizeof(ours->address), "(coordinator)");
        amqp_link_in_open(ours);
        return;
    }
    const char *address = pn_terminus_get_address(target);
    struct destination destination;
    bool relay = !address || !*address;
    if (!relay) {
        if (amqp_attach_parse_address(connection, link, target, address, &destination, true) < 0)
            return;
        if (!core_may_publish(connection->session, &destination)) {
            amqp_link_refuse(connection, link, AMQP_KIND_ACL, "amqp:unauthorized-access",
                             "user '%s' may not publish to '%s' (auth.users publish ACL)",
                             connection->user, address);
            return;
        }
    }
    struct amqp_link *ours = amqp_attach_new_link(connection, link);
    if (!ours) {
        amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:internal-error",
                         "out of memory");
        return;
    }
    ours->relay = relay;
    if (!relay) {
        ours->destination = destination;
        snprintf(ours->address, sizeof(ours->address), "%s", address);
    }
    amqp_link_in_open(ours);
}

static void amqp_attach_outgoing_selected(struct amqp_connection *connection, pn_link_t *link,
                                          pn_terminus_t *source, const char *selector,
                                          const char *stream_offset);

/* The client's receiver: kbridge sends on a link from a source. */
static void amqp_attach_outgoing(struct amqp_connection *connection, pn_link_t *link)
{
    pn_terminus_t *source = pn_link_remote_source(link);
    char filters[256];
    char *selector = NULL, *stream_offset = NULL;
    int filtered = amqp_attach_filters(source, &selector, &stream_offset, filters, sizeof(filters));
    if (filtered < 0) {
        amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:internal-error",
                         "out of memory");
        return;
    }
    if (filtered > 0) {
        amqp_link_refuse(connection, link, AMQP_KIND_UNSUPPORTED, "amqp:not-implemented",
                         "source filters other than one JMS selector and one stream offset (%s) "
                         "are not supported: kbridge applies " AMQP_SELECTOR_FILTER_SYMBOL
                         " and " AMQP_STREAM_OFFSET_FILTER_SYMBOL "; attach without the others",
                         filters[0] ? filters : "filter");
        return;
    }
    amqp_attach_outgoing_selected(connection, link, source, selector, stream_offset);
    free(selector);
    free(stream_offset);
}

/* The client's receiver, its filters checked: `selector` (or NULL) is the
 * JMS selector the core applies, `stream_offset` (or NULL) where it starts
 * (architecture §13). */
static void amqp_attach_outgoing_selected(struct amqp_connection *connection, pn_link_t *link,
                                          pn_terminus_t *source, const char *selector,
                                          const char *stream_offset)
{
    if (pn_terminus_is_dynamic(source)) {
        /* A temporary queue: the address is ours to assign (in the attach answer). */
        struct amqp_link *ours = amqp_attach_new_link(connection, link);
        if (!ours) {
            amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:internal-error",
                             "out of memory");
            return;
        }
        ours->dynamic = true;
        amqp_link_out_open(ours, NULL, selector, stream_offset);
        return;
    }
    const char *address = pn_terminus_get_address(source);
    if (!address || !*address) {
        amqp_link_refuse(connection, link, AMQP_KIND_ADDRESS, "amqp:not-found",
                         "a receiver needs a source address (a queue or topic name)");
        return;
    }
    struct destination destination;
    if (amqp_attach_parse_address(connection, link, source, address, &destination, false) < 0)
        return;
    bool browse = pn_terminus_get_distribution_mode(source) == PN_DIST_MODE_COPY;
    if (browse && destination.kind != DESTINATION_QUEUE) {
        /* copy is browsing: a topic receiver takes nothing from anyone anyway,
         * but saying yes would promise a browse's end that never comes */
        amqp_link_refuse(connection, link, AMQP_KIND_UNSUPPORTED, "amqp:not-implemented",
                         "distribution-mode 'copy' (browsing) works on queues only; '%s' is not "
                         "a queue",
                         address);
        return;
    }
    const char *durable_name = NULL;
    if (destination.kind == DESTINATION_TOPIC &&
        (pn_terminus_get_durability(source) != PN_NONDURABLE ||
         pn_terminus_get_expiry_policy(source) == PN_EXPIRE_NEVER)) {
        if (!connection->container_id[0]) {
            amqp_link_refuse(connection, link, AMQP_KIND_ADDRESS, "amqp:invalid-field",
                             "a durable subscription needs a container-id on the connection");
            return;
        }
        durable_name = pn_link_name(link);
    }
    struct amqp_link *ours = amqp_attach_new_link(connection, link);
    if (!ours) {
        amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:internal-error",
                         "out of memory");
        return;
    }
    ours->destination = destination;
    snprintf(ours->address, sizeof(ours->address), "%s", address);
    ours->browse = browse;
    amqp_link_out_open(ours, durable_name, selector, stream_offset);
}

void amqp_handle_link_open(struct amqp_connection *connection, pn_link_t *link)
{
    if (!(pn_link_state(link) & PN_LOCAL_UNINIT))
        return;
    if (!connection->session) {
        amqp_link_refuse(connection, link, AMQP_KIND_INTERNAL, "amqp:illegal-state",
                         "the connection is not open");
        return;
    }
    if (connection->adapter->base.draining) {
        amqp_link_refuse(connection, link, AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded",
                         "the server is shutting down");
        return;
    }
    uint32_t most = adapter_base_config(&connection->adapter->base)->limits.max_subscriptions;
    if (connection->link_count >= most) {
        core_limit_refused(connection->adapter->base.context.core, CORE_LIMIT_SUBSCRIPTIONS);
        amqp_link_refuse(connection, link, AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded",
                         "too many links on this connection (at most %u: "
                         "limits.max_subscriptions)",
                         most);
        return;
    }
    if (pn_link_is_sender(link))
        amqp_attach_outgoing(connection, link);
    else
        amqp_attach_incoming(connection, link);
}

void amqp_handle_link_close(struct amqp_connection *connection, pn_link_t *link, bool closed)
{
    struct amqp_link *ours = pn_link_get_context(link);
    if (ours)
        amqp_link_free(ours);
    pn_state_t state = pn_link_state(link);
    if (!(state & PN_LOCAL_CLOSED)) {
        if (state & PN_LOCAL_UNINIT)
            pn_link_open(link);
        if (closed)
            pn_link_close(link);
        else
            pn_link_detach(link);
    }
    pn_link_free(link);
    amqp_connection_schedule(connection);
}
