/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_config.h -- the AMQP 0-9-1 adapter's own configuration keys:
 * the `amqp091` section of the file (amqp091_config_section, declared in
 * amqp091_adapter_ops) and the struct they fill. Private to
 * adapters/amqp091/. */
#ifndef KBRIDGE_AMQP091_CONFIG_H
#define KBRIDGE_AMQP091_CONFIG_H

#include <stdint.h>

struct config;
struct config_section;

/* The largest frame_max a config may offer: the adapter's encode buffer. */
#define AMQP091_FRAME_MAX_LIMIT (1024 * 1024)

/* The values of the `amqp091` section; owned by the config that holds it. */
struct amqp091_config {
    uint32_t channel_max;  /* amqp091.channel_max: offered in Tune, 2047 */
    uint64_t frame_max;    /* amqp091.frame_max: offered in Tune, 128 KiB */
    uint64_t heartbeat_ms; /* amqp091.heartbeat: offered in Tune, 60s (0: none) */
    uint64_t get_wait_ms;  /* amqp091.get_wait: basic.get waits this long for a message */
};

extern const struct config_section amqp091_config_section;

/* The `amqp091` section of `config` (the server adds it to every config it
 * runs with; amqp091_adapter_create checks it once). */
const struct amqp091_config *amqp091_config_of(const struct config *config);

#endif
