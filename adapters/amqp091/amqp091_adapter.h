/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_adapter.h -- the AMQP 0-9-1 adapter's descriptor and detector
 * (architecture §12). */
#ifndef KBRIDGE_AMQP091_ADAPTER_H
#define KBRIDGE_AMQP091_ADAPTER_H

#include <stddef.h>

#include "adapter.h"

/* The adapter registered as "amqp091" in adapters/registry.c. */
extern const struct adapter_ops amqp091_adapter_ops;

/* First bytes: YES for `AMQP 0 0 9 1`, MORE for a prefix of it, NO for
 * anything else (AMQP 1.0's headers included). Pure. */
enum adapter_detect amqp091_detect(const unsigned char *bytes, size_t len);

#endif
