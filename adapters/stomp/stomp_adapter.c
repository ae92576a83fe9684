/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_adapter.c -- the STOMP adapter behind adapter.h: takes accepted
 * sockets (refusing those over limits.max_connections with an ERROR) and
 * registers the STOMP metrics, starts and stops the STOMP shovels
 * (stomp_shovel.c); the connection list, deferred free, reload,
 * drain and shutdown are the adapter base's (connection.h) with the hooks
 * in stomp_connection_ops. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "stomp_adapter.h"
#include "stomp_address.h"
#include "stomp_config.h"
#include "stomp_connection.h"
#include "stomp_detect.h"
#include "stomp_shovel.h"

static const char *const stomp_error_kind_names[STOMP_KIND_COUNT] = {
    [STOMP_KIND_PARSE] = "parse",
    [STOMP_KIND_AUTH] = "auth",
    [STOMP_KIND_ACL] = "acl",
    [STOMP_KIND_INVALID] = "invalid",
    [STOMP_KIND_UNSUPPORTED] = "unsupported",
    [STOMP_KIND_KAFKA] = "kafka",
    [STOMP_KIND_LIMIT] = "limit",
    [STOMP_KIND_HEARTBEAT] = "heartbeat",
    [STOMP_KIND_INTERNAL] = "internal",
};

const char *stomp_error_kind_name(enum stomp_error_kind kind)
{
    return kind < STOMP_KIND_COUNT ? stomp_error_kind_names[kind] : "internal";
}

const struct config *stomp_adapter_config(const struct stomp_adapter *adapter)
{
    return *adapter->base.context.config;
}

int stomp_adapter_scratch_reserve(struct stomp_adapter *adapter, size_t headers, size_t text)
{
    if (headers > adapter->scratch_headers_cap) {
        size_t cap = adapter->scratch_headers_cap ? adapter->scratch_headers_cap : 32;
        while (cap < headers)
            cap *= 2;
        struct stomp_header *grown =
            realloc(adapter->scratch_headers, cap * sizeof(*adapter->scratch_headers));
        if (!grown)
            return -1;
        adapter->scratch_headers = grown;
        adapter->scratch_headers_cap = cap;
    }
    if (text > adapter->scratch_text_cap) {
        size_t cap = adapter->scratch_text_cap ? adapter->scratch_text_cap : 4096;
        while (cap < text)
            cap *= 2;
        char *grown = realloc(adapter->scratch_text, cap);
        if (!grown)
            return -1;
        adapter->scratch_text = grown;
        adapter->scratch_text_cap = cap;
    }
    return 0;
}

/* ---- adapter_ops ------------------------------------------------------------------ */

static struct adapter *stomp_adapter_create(const struct adapter_context *context, char *err,
                                            size_t err_size)
{
    if (!stomp_config_of(*context->config)) {
        snprintf(err, err_size, "stomp: the configuration has no stomp section");
        return NULL;
    }
    struct stomp_adapter *adapter = (struct stomp_adapter *)adapter_base_new(
        sizeof(struct stomp_adapter), context, &stomp_connection_ops, err, err_size);
    if (!adapter)
        return NULL;
    struct metrics *metrics = context->metrics;
    char labels[64];
    adapter->frames_received =
        metrics_counter(metrics, "kbridge_stomp_frames_received_total",
                        "STOMP frames received from clients (heart-beats not counted).", NULL);
    adapter->frames_sent =
        metrics_counter(metrics, "kbridge_stomp_frames_sent_total",
                        "STOMP frames sent to clients (heart-beats not counted).", NULL);
    adapter->heartbeat_timeouts = metrics_counter(
        metrics, "kbridge_stomp_heartbeat_timeouts_total",
        "STOMP connections closed because the client missed its heart-beats.", NULL);
    bool ok = adapter->frames_received && adapter->frames_sent && adapter->heartbeat_timeouts;
    for (int kind = 0; kind < STOMP_KIND_COUNT && ok; kind++) {
        metrics_label(labels, sizeof(labels), "kind", stomp_error_kind_names[kind]);
        adapter->errors[kind] = metrics_counter(
            metrics, "kbridge_stomp_errors_total",
            "STOMP ERROR frames sent, by kind (every ERROR closes its connection).", labels);
        ok = adapter->errors[kind] != NULL;
    }
    if (!ok) {
        snprintf(err, err_size, "stomp: cannot register metrics (out of memory)");
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    if (stomp_shovels_start(adapter, &adapter->shovels, err, err_size) < 0) {
        stomp_shovels_stop(&adapter->shovels);
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    return (struct adapter *)adapter;
}

/* adapter_ops.drain: the shovels stop taking messages (stomp_shovels_drain),
 * then the client connections drain. */
static void stomp_adapter_drain(struct adapter *base)
{
    struct stomp_adapter *adapter = (struct stomp_adapter *)base;
    stomp_shovels_drain(adapter->shovels);
    adapter_base_drain(base);
}

static void stomp_adapter_destroy(struct adapter *base)
{
    struct stomp_adapter *adapter = (struct stomp_adapter *)base;
    stomp_shovels_stop(&adapter->shovels);
    adapter_base_destroy(base);
}

/* connection_ops.adapter_free: every connection is gone. */
void stomp_adapter_free(struct adapter_base *base)
{
    struct stomp_adapter *adapter = (struct stomp_adapter *)base;
    free(adapter->scratch_headers);
    free(adapter->scratch_text);
    free(adapter);
}

const struct adapter_ops stomp_adapter_ops = {
    .name = "stomp",
    .title = "STOMP 1.0-1.2",
    .detect = stomp_detect,
    .addresses = &stomp_addresses,
    .config_section = &stomp_config_section,
    .create = stomp_adapter_create,
    .accept = adapter_base_accept,
    .reconfigure = adapter_base_reconfigure,
    .drain = stomp_adapter_drain,
    .connection_count = adapter_base_connection_count,
    .destroy = stomp_adapter_destroy,
};
