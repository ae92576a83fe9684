/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_adapter.c -- the AMQP 0-9-1 adapter behind adapter.h
 * (architecture §12): its descriptor (name "amqp091", the first-bytes
 * detector that claims `AMQP 0 0 9 1`), its metrics and the scratch buffer
 * frames are encoded in; connections are the adapter base's
 * (connection.h) with the hooks of amqp091_connection_ops. */
#include <stdio.h>
#include <stdlib.h>

#include "amqp091_adapter.h"
#include "amqp091_config.h"
#include "amqp091_connection.h"
#include "metrics.h"

enum adapter_detect amqp091_detect(const unsigned char *bytes, size_t len)
{
    switch (amqp091_header_check(bytes, len)) {
    case AMQP091_HEADER_OK: return ADAPTER_DETECT_YES;
    case AMQP091_HEADER_NEED_MORE: return ADAPTER_DETECT_MORE;
    default: return ADAPTER_DETECT_NO;
    }
}

static struct adapter *amqp091_adapter_create(const struct adapter_context *context, char *err,
                                              size_t err_size)
{
    if (!amqp091_config_of(*context->config)) {
        snprintf(err, err_size, "amqp091: the configuration has no amqp091 section");
        return NULL;
    }
    struct amqp091_adapter *adapter = (struct amqp091_adapter *)adapter_base_new(
        sizeof(struct amqp091_adapter), context, &amqp091_connection_ops, err, err_size);
    if (!adapter)
        return NULL;
    struct metrics *metrics = context->metrics;
    adapter->frames_received =
        metrics_counter(metrics, "kbridge_amqp091_frames_received_total",
                        "AMQP 0-9-1 frames received from clients (heartbeats included).", NULL);
    adapter->frames_sent = metrics_counter(
        metrics, "kbridge_amqp091_frames_sent_total",
        "AMQP 0-9-1 method and content frame groups sent to clients (heartbeats not counted).",
        NULL);
    adapter->channel_errors =
        metrics_counter(metrics, "kbridge_amqp091_channel_errors_total",
                        "AMQP 0-9-1 channel exceptions sent (channel.close by the server).", NULL);
    adapter->connection_errors = metrics_counter(
        metrics, "kbridge_amqp091_connection_errors_total",
        "AMQP 0-9-1 connection exceptions sent (connection.close by the server).", NULL);
    adapter->heartbeat_timeouts =
        metrics_counter(metrics, "kbridge_amqp091_heartbeat_timeouts_total",
                        "AMQP 0-9-1 connections closed for missed client heartbeats.", NULL);
    adapter->scratch = malloc(AMQP091_FRAME_MAX_LIMIT);
    if (!adapter->frames_received || !adapter->frames_sent || !adapter->channel_errors ||
        !adapter->connection_errors || !adapter->heartbeat_timeouts || !adapter->scratch) {
        snprintf(err, err_size, "amqp091: out of memory creating the adapter");
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    return (struct adapter *)adapter;
}

/* connection_ops.adapter_free: every connection is gone. */
void amqp091_adapter_free(struct adapter_base *base)
{
    struct amqp091_adapter *adapter = (struct amqp091_adapter *)base;
    free(adapter->scratch);
    free(adapter);
}

const struct adapter_ops amqp091_adapter_ops = {
    .name = "amqp091",
    .title = "AMQP 0-9-1",
    .detect = amqp091_detect,
    .addresses = NULL,
    .config_section = &amqp091_config_section,
    .create = amqp091_adapter_create,
    .accept = adapter_base_accept,
    .reconfigure = adapter_base_reconfigure,
    .drain = adapter_base_drain,
    .connection_count = adapter_base_connection_count,
    .destroy = adapter_base_destroy,
};
