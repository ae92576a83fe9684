/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_address.h -- how STOMP clients write destinations (architecture §2):
 * the spelling table the STOMP adapter parses `destination` headers with. */
#ifndef KBRIDGE_STOMP_ADDRESS_H
#define KBRIDGE_STOMP_ADDRESS_H

#include "address.h"

/* /queue/NAME, /amq/queue/NAME -> queue; /topic/NAME, /exchange/amq.topic/NAME
 * -> topic; /temp-queue/NAME -> temp; /reply-queue/TOKEN -> reply. Static. */
extern const struct address_spelling stomp_addresses;

#endif
