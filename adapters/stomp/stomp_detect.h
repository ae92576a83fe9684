/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_detect.h -- does a connection's first bytes open a STOMP session?
 * (the STOMP adapter's first-bytes detector, adapter.h). */
#ifndef KBRIDGE_STOMP_DETECT_H
#define KBRIDGE_STOMP_DETECT_H

#include <stddef.h>

#include "adapter.h"

/* YES for a CONNECT or STOMP command line (after any blank lines: STOMP
 * heart-beats), MORE for a prefix of one, NO otherwise. Pure. */
enum adapter_detect stomp_detect(const unsigned char *bytes, size_t len);

#endif
