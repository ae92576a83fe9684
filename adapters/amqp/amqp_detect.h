/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_detect.h -- does a connection's first bytes open an AMQP 1.0
 * connection? (the AMQP adapter's first-bytes detector, adapter.h). */
#ifndef KBRIDGE_AMQP_DETECT_H
#define KBRIDGE_AMQP_DETECT_H

#include <stdbool.h>
#include <stddef.h>

#include "adapter.h"

/* YES for the AMQP 1.0 protocol header "AMQP" id major minor revision with
 * id 0 (AMQP) or 3 (SASL) and version 1.0.0; MORE for a prefix of one; NO
 * otherwise, including AMQP 0-9-1's "AMQP\0\0\x09\x01" and TLS (id 2, which
 * kbridged does not offer). Pure. */
enum adapter_detect amqp_detect(const unsigned char *bytes, size_t len);

#endif
