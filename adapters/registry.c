/* registry.c -- the protocol adapters built into kbridged, by listener name. */
#include "adapter.h"

#include <string.h>

extern const struct adapter_ops stomp_adapter_ops;
extern const struct adapter_ops amqp_adapter_ops;

static const struct adapter_ops *const adapters[] = {
    &stomp_adapter_ops,
    &amqp_adapter_ops,
};

const struct adapter_ops *adapter_find(const char *name)
{
    for (size_t i = 0; i < sizeof(adapters) / sizeof(adapters[0]); i++)
        if (strcmp(adapters[i]->name, name) == 0)
            return adapters[i];
    return NULL;
}
