/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_config.c -- the `amqp091` config section: the limits an AMQP
 * 0-9-1 connection negotiates in Tune/Tune-Ok (architecture "Adding a
 * protocol": an adapter's config section). Read when a connection is
 * tuned, so a reload applies to connections opened after it. */
#include "amqp091_config.h"

#include <stddef.h>

#include "config.h"

static const struct config_key amqp091_config_keys[] = {
    {
        .name = "channel_max",
        .type = CONFIG_TYPE_UINT32,
        .offset = offsetof(struct amqp091_config, channel_max),
        .min = 1,
        .max = 65535,
        .default_value = "2047",
        .description = "Most channels an AMQP 0-9-1 connection may open, offered in "
                       "connection.tune (a client may ask for fewer; RabbitMQ's default). "
                       "Opening a channel above it closes the connection with 530 NOT_ALLOWED.",
    },
    {
        .name = "frame_max",
        .type = CONFIG_TYPE_SIZE,
        .offset = offsetof(struct amqp091_config, frame_max),
        .min = 4096,
        .max = AMQP091_FRAME_MAX_LIMIT,
        .default_value = "128KiB",
        .description = "Largest AMQP 0-9-1 frame, offered in connection.tune (a client may ask "
                       "for less; RabbitMQ's default). A larger frame closes the connection with "
                       "501 FRAME_ERROR; message bodies travel in as many frames as they need "
                       "(their size is bounded by `limits.max_message_size`).",
    },
    {
        .name = "heartbeat",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct amqp091_config, heartbeat_ms),
        .min = 0,
        .max = 65535 * 1000ULL,
        .default_value = "60s",
        .description = "AMQP 0-9-1 heartbeat interval offered in connection.tune, in whole "
                       "seconds; the client's answer in tune-ok is used (0 turns heartbeats "
                       "off). A connection silent for two intervals is closed.",
    },
    {
        .name = "get_wait",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct amqp091_config, get_wait_ms),
        .min = 1,
        .max = 60 * 1000ULL,
        .default_value = "200ms",
        .description = "How long a basic.get waits for a message of its queue before it is "
                       "answered get-empty, once the channel reads the queue (the first get of a "
                       "queue on a channel also waits for its consumer group to be assigned). "
                       "Kafka cannot say cheaply that a queue is empty: this is the wait.",
    },
};

const struct config_section amqp091_config_section = {
    .name = "amqp091",
    .keys = amqp091_config_keys,
    .key_count = sizeof(amqp091_config_keys) / sizeof(amqp091_config_keys[0]),
    .size = sizeof(struct amqp091_config),
};

const struct amqp091_config *amqp091_config_of(const struct config *config)
{
    return config_section_values(config, amqp091_config_section.name);
}
