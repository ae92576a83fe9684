/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_config.h -- the STOMP adapter's own configuration keys: the `stomp`
 * section of the file (stomp_config_section, declared in stomp_adapter_ops)
 * and the struct they fill. Private to adapters/stomp/. */
#ifndef KBRIDGE_STOMP_CONFIG_H
#define KBRIDGE_STOMP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct config_section;

/* The values of the `stomp` section; owned by the config that holds it. */
struct stomp_config {
    uint64_t heartbeat_min_ms; /* stomp.heartbeat_min: floor of a granted heart-beat, 100ms */
    bool nack_requeue;         /* stomp.nack_requeue: NACK without `requeue` releases, true */
};

/* The `stomp` section: its rows, defaults and former spellings. */
extern const struct config_section stomp_config_section;

/* The `stomp` section of `config`. The server adds the section to every
 * config it runs with, so this is never NULL there (stomp_adapter_create
 * checks it once). */
const struct stomp_config *stomp_config_of(const struct config *config);

#endif
