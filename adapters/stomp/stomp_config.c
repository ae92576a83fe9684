/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_config.c -- the `stomp` config section: the keys only the STOMP
 * adapter reads (architecture "Adding a protocol or a transport": an
 * adapter's config section). They were shared keys once; their former
 * spellings (limits.heartbeat_min, queues.nack_requeue) stay accepted as
 * aliases, with a deprecation warning. */
#include "stomp_config.h"

#include <stddef.h>

#include "config.h"

static const struct config_key stomp_config_keys[] = {
    {
        .name = "heartbeat_min",
        .type = CONFIG_TYPE_DURATION,
        .offset = offsetof(struct stomp_config, heartbeat_min_ms),
        .min = 10,
        .max = 60 * 60 * 1000,
        .default_value = "100ms",
        .description = "Shortest STOMP heart-beat interval granted: a client asking for "
                       "heart-beats more often than this (in either direction) gets this "
                       "interval. Above `limits.heartbeat` it has no effect.",
    },
    {
        .name = "nack_requeue",
        .type = CONFIG_TYPE_BOOL,
        .offset = offsetof(struct stomp_config, nack_requeue),
        .default_value = "true",
        .description = "What a STOMP NACK without a `requeue` header does: `true` releases "
                       "the message for redelivery, `false` dead-letters it at once.",
    },
};

static const struct config_alias stomp_config_aliases[] = {
    {.old_name = "limits.heartbeat_min", .key = "heartbeat_min"},
    {.old_name = "queues.nack_requeue", .key = "nack_requeue"},
};

const struct config_section stomp_config_section = {
    .name = "stomp",
    .keys = stomp_config_keys,
    .key_count = sizeof(stomp_config_keys) / sizeof(stomp_config_keys[0]),
    .size = sizeof(struct stomp_config),
    .aliases = stomp_config_aliases,
    .alias_count = sizeof(stomp_config_aliases) / sizeof(stomp_config_aliases[0]),
};

const struct stomp_config *stomp_config_of(const struct config *config)
{
    return config_section_values(config, stomp_config_section.name);
}
