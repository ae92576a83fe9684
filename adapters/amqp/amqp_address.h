/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_address.h -- how AMQP 1.0 clients write addresses (architecture §2):
 * the spelling table the AMQP adapter parses link addresses with. */
#ifndef KBRIDGE_AMQP_ADDRESS_H
#define KBRIDGE_AMQP_ADDRESS_H

#include "address.h"

/* NAME, queue://NAME, /queue/NAME, /queues/NAME -> queue; topic://NAME,
 * /topic/NAME, /exchanges/amq.topic/NAME -> topic; /reply-queue/TOKEN ->
 * reply. Static. */
extern const struct address_spelling amqp_addresses;

#endif
