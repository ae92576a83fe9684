/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_adapter.c -- the AMQP 1.0 adapter behind adapter.h: takes accepted
 * sockets (those over limits.max_connections are opened and closed with
 * amqp:resource-limit-exceeded), registers the AMQP metrics and keeps the
 * one table from core errors to AMQP conditions, starts and stops the AMQP
 * 1.0 shovels (amqp_shovel.c); the connection list, deferred free, drain
 * and shutdown are the adapter base's (connection.h) with the hooks in
 * amqp_connection_ops. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_adapter.h"
#include "amqp_address.h"
#include "amqp_connection.h"
#include "amqp_convert.h"
#include "amqp_detect.h"
#include "amqp_shovel.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "record.h"

static const char *const amqp_error_kind_names[AMQP_KIND_COUNT] = {
    [AMQP_KIND_DECODE] = "decode",
    [AMQP_KIND_AUTH] = "auth",
    [AMQP_KIND_ACL] = "acl",
    [AMQP_KIND_ADDRESS] = "address",
    [AMQP_KIND_UNSUPPORTED] = "unsupported",
    [AMQP_KIND_KAFKA] = "kafka",
    [AMQP_KIND_LIMIT] = "limit",
    [AMQP_KIND_INTERNAL] = "internal",
};

const struct config *amqp_adapter_config(const struct amqp_adapter *adapter)
{
    return adapter_base_config(&adapter->base);
}

/* The one table from core outcomes to AMQP errors, used by every place that
 * maps one (rejected transfers, refused attaches, failed logins). "now": the
 * core refused a transfer; "later": Kafka did not store an accepted transfer
 * (docs/amqp.md: amqp:internal-error naming the Kafka error); "attach": the
 * core refused a receiving link's subscription, or ended it later (the
 * subscription's `failed`: BUSY is a slow subscriber ended by
 * topics.slow_subscriber); "login": SASL or an
 * anonymous open. */
static const struct amqp_core_error amqp_core_errors[CORE_ERROR_ROWS] = {
    [-CORE_ERR_ACCESS] = {{AMQP_KIND_ACL, "amqp:unauthorized-access"},
                          {AMQP_KIND_ACL, "amqp:unauthorized-access"},
                          {AMQP_KIND_ACL, "amqp:unauthorized-access"},
                          {AMQP_KIND_AUTH, "amqp:unauthorized-access"}},
    [-CORE_ERR_INVALID] = {{AMQP_KIND_ADDRESS, "amqp:invalid-field"},
                           {AMQP_KIND_KAFKA, "amqp:internal-error"},
                           {AMQP_KIND_ADDRESS, "amqp:invalid-field"},
                           {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_TOO_LARGE] = {{AMQP_KIND_LIMIT, "amqp:link:message-size-exceeded"},
                             {AMQP_KIND_LIMIT, "amqp:link:message-size-exceeded"},
                             {AMQP_KIND_KAFKA, "amqp:internal-error"},
                             {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_BUSY] = {{AMQP_KIND_KAFKA, "amqp:resource-limit-exceeded"},
                        {AMQP_KIND_KAFKA, "amqp:internal-error"},
                        {AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded"},
                        {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_UNAVAILABLE] = {{AMQP_KIND_KAFKA, "amqp:resource-limit-exceeded"},
                               {AMQP_KIND_KAFKA, "amqp:internal-error"},
                               {AMQP_KIND_KAFKA, "amqp:internal-error"},
                               {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_UNSUPPORTED] = {{AMQP_KIND_UNSUPPORTED, "amqp:not-implemented"},
                               {AMQP_KIND_KAFKA, "amqp:internal-error"},
                               {AMQP_KIND_UNSUPPORTED, "amqp:not-implemented"},
                               {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_INTERNAL] = {{AMQP_KIND_INTERNAL, "amqp:internal-error"},
                            {AMQP_KIND_KAFKA, "amqp:internal-error"},
                            {AMQP_KIND_KAFKA, "amqp:internal-error"},
                            {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_NOT_FOUND] = {{AMQP_KIND_ADDRESS, "amqp:not-found"},
                             {AMQP_KIND_ADDRESS, "amqp:not-found"},
                             {AMQP_KIND_ADDRESS, "amqp:not-found"},
                             {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_PRECONDITION] = {{AMQP_KIND_ADDRESS, "amqp:precondition-failed"},
                                {AMQP_KIND_ADDRESS, "amqp:precondition-failed"},
                                {AMQP_KIND_ADDRESS, "amqp:precondition-failed"},
                                {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_LOCKED] = {{AMQP_KIND_ADDRESS, "amqp:resource-locked"},
                          {AMQP_KIND_ADDRESS, "amqp:resource-locked"},
                          {AMQP_KIND_ADDRESS, "amqp:resource-locked"},
                          {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    [-CORE_ERR_FULL] = {{AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded"},
                        {AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded"},
                        {AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded"},
                        {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
    /* a queue in exclusive use: the spec's condition for "another client is
     * working with it" */
    [-CORE_ERR_IN_USE] = {{AMQP_KIND_ACL, "amqp:resource-locked"},
                          {AMQP_KIND_ACL, "amqp:resource-locked"},
                          {AMQP_KIND_ACL, "amqp:resource-locked"},
                          {AMQP_KIND_INTERNAL, "amqp:internal-error"}},
};

const struct amqp_core_error *amqp_core_error(int core_error)
{
    return &amqp_core_errors[core_error_row(core_error)];
}

int amqp_adapter_buffer_reserve(struct amqp_adapter *adapter, size_t size)
{
    if (size <= adapter->buffer_cap)
        return 0;
    size_t cap = adapter->buffer_cap ? adapter->buffer_cap : 64 * 1024;
    while (cap < size)
        cap *= 2;
    char *grown = realloc(adapter->buffer, cap);
    if (!grown)
        return -1;
    adapter->buffer = grown;
    adapter->buffer_cap = cap;
    return 0;
}

/* Headers of one record given to the converter; records from kbridge never
 * have this many. */
#define AMQP_DELIVERY_HEADERS_MAX 1024

int amqp_adapter_message_from_delivery(struct amqp_adapter *adapter,
                                       const struct core_delivery *delivery, char *err,
                                       size_t err_size)
{
    struct core_property headers[AMQP_DELIVERY_HEADERS_MAX];
    size_t count = core_delivery_header_count(delivery);
    if (count > AMQP_DELIVERY_HEADERS_MAX)
        count = AMQP_DELIVERY_HEADERS_MAX;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t value_len;
        /* kbridge-amqp-* go to the converter, which decodes them (architecture §3) */
        if (core_delivery_header(delivery, i, &name, &value, &value_len) == 0 &&
            record_header_delivered(name, strlen(name), RECORD_DELIVER_AMQP_DATA))
            headers[used++] = (struct core_property){name, value, value_len};
    }
    struct amqp_record_view view = {
        .key = delivery->key,
        .key_len = delivery->key_len,
        .body = delivery->body,
        .body_len = delivery->body_len,
        .headers = headers,
        .header_count = used,
        .timestamp_ms = delivery->timestamp_ms,
        .delivery_count = delivery->delivery_count,
    };
    return amqp_message_from_record(&view, adapter->message, err, err_size);
}

void amqp_adapter_count_error(struct amqp_adapter *adapter, enum amqp_error_kind kind)
{
    if (kind < AMQP_KIND_COUNT && adapter->errors[kind])
        (*adapter->errors[kind])++;
}

/* ---- adapter_ops ------------------------------------------------------------------------ */

static struct adapter *amqp_adapter_create(const struct adapter_context *context, char *err,
                                           size_t err_size)
{
    struct amqp_adapter *adapter = (struct amqp_adapter *)adapter_base_new(
        sizeof(struct amqp_adapter), context, &amqp_connection_ops, err, err_size);
    if (!adapter)
        return NULL;
    struct metrics *metrics = context->metrics;
    char labels[64];
    adapter->transfers_received =
        metrics_counter(metrics, "kbridge_amqp_transfers_received_total",
                        "AMQP messages (complete transfers) received from clients.", NULL);
    adapter->transfers_sent = metrics_counter(metrics, "kbridge_amqp_transfers_sent_total",
                                              "AMQP messages sent to clients.", NULL);
    bool ok = adapter->transfers_received && adapter->transfers_sent;
    for (int kind = 0; kind < AMQP_KIND_COUNT && ok; kind++) {
        metrics_label(labels, sizeof(labels), "kind", amqp_error_kind_names[kind]);
        adapter->errors[kind] = metrics_counter(
            metrics, "kbridge_amqp_errors_total",
            "AMQP error conditions sent (connection, link or rejected delivery), by kind.", labels);
        ok = adapter->errors[kind] != NULL;
    }
    adapter->message = pn_message();
    if (!ok || !adapter->message || amqp_adapter_buffer_reserve(adapter, 64 * 1024) < 0) {
        snprintf(err, err_size, "amqp: cannot register metrics (out of memory)");
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    if (amqp_shovels_start(adapter, &adapter->shovels, err, err_size) < 0) {
        amqp_shovels_stop(&adapter->shovels);
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    return (struct adapter *)adapter;
}

/* adapter_ops.drain: the shovels stop taking messages (amqp_shovels_drain),
 * then the client connections drain. */
static void amqp_adapter_drain(struct adapter *base)
{
    struct amqp_adapter *adapter = (struct amqp_adapter *)base;
    amqp_shovels_drain(adapter->shovels);
    adapter_base_drain(base);
}

static void amqp_adapter_destroy(struct adapter *base)
{
    struct amqp_adapter *adapter = (struct amqp_adapter *)base;
    amqp_shovels_stop(&adapter->shovels);
    adapter_base_destroy(base);
}

/* connection_ops.adapter_free: every connection is gone. */
void amqp_adapter_free(struct adapter_base *base)
{
    struct amqp_adapter *adapter = (struct amqp_adapter *)base;
    if (adapter->message)
        pn_message_free(adapter->message);
    free(adapter->buffer);
    free(adapter);
}

const struct adapter_ops amqp_adapter_ops = {
    .name = "amqp",
    .title = "AMQP 1.0",
    .detect = amqp_detect,
    .addresses = &amqp_addresses,
    .create = amqp_adapter_create,
    .accept = adapter_base_accept,
    .reconfigure = adapter_base_reconfigure,
    .drain = amqp_adapter_drain,
    .connection_count = adapter_base_connection_count,
    .destroy = amqp_adapter_destroy,
};
