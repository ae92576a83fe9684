/* SPDX-License-Identifier: Apache-2.0 */
/* echo_adapter.h -- a dummy third protocol for tests: proves that a new
 * adapter needs no change under daemon/ (issue 12 item 1). The client opens
 * with the line "ECHO", gets "HELLO" back (its config section's
 * echo.greeting), and every further line is echoed.
 * No core, no Kafka: it only uses what adapter.h gives every adapter. */
#ifndef KBRIDGE_ECHO_ADAPTER_H
#define KBRIDGE_ECHO_ADAPTER_H

#include "adapter.h"

/* The descriptor a test puts in its adapter registry ("echo"). Static. */
extern const struct adapter_ops echo_adapter_ops;

#endif
