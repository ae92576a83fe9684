/* SPDX-License-Identifier: Apache-2.0 */
/* registry.c -- the protocol adapters built into kbridged, and lookups in
 * any adapter registry (main passes the built-in one to the server; tests
 * pass their own, and their config sections). A new protocol is one line in
 * `builtin` below. */
#include "adapter.h"

#include <stdio.h>
#include <string.h>

extern const struct adapter_ops stomp_adapter_ops;
extern const struct adapter_ops amqp_adapter_ops;
extern const struct adapter_ops amqp091_adapter_ops;

static const struct adapter_ops *const builtin[] = {
    &stomp_adapter_ops,
    &amqp_adapter_ops,
    &amqp091_adapter_ops,
};

static const struct adapter_registry builtin_registry = {
    .adapters = builtin,
    .count = sizeof(builtin) / sizeof(builtin[0]),
};

const struct adapter_registry *adapter_registry_builtin(void) { return &builtin_registry; }

const struct adapter_ops *adapter_registry_find(const struct adapter_registry *registry,
                                                const char *name)
{
    for (size_t i = 0; i < registry->count; i++)
        if (strcmp(registry->adapters[i]->name, name) == 0)
            return registry->adapters[i];
    return NULL;
}

size_t adapter_registry_config_sections(const struct adapter_registry *registry,
                                        const struct config_section **out)
{
    size_t count = 0;
    for (size_t i = 0; i < registry->count; i++)
        if (registry->adapters[i]->config_section != NULL)
            out[count++] = registry->adapters[i]->config_section;
    return count;
}

void adapter_registry_names(const struct adapter_registry *registry, char *out, size_t out_size)
{
    size_t used = 0;
    if (out_size == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < registry->count && used < out_size; i++) {
        int n = snprintf(out + used, out_size - used, "%s%s", i ? ", " : "",
                         registry->adapters[i]->name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}
