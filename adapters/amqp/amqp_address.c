/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_address.c -- the AMQP 1.0 address spellings (Artemis', Qpid's and
 * RabbitMQ's: its v2 forms /queues/NAME, /exchanges/NAME[/KEY] and its v1
 * forms /queue/NAME, /amq/queue/NAME, /topic/KEY, /exchange/NAME[/KEY]),
 * passed to the protocol-neutral parser in daemon/address.c. A bare NAME is
 * a queue. `/exchanges/NAME` without KEY takes the key from the message's
 * subject (amqp_link_in.c). */
#include "amqp_address.h"

static const struct address_prefix amqp_prefixes[] = {
    {"queue://", DESTINATION_QUEUE, false},
    {"/queue/", DESTINATION_QUEUE, false},
    {"/queues/", DESTINATION_QUEUE, false},
    {"/amq/queue/", DESTINATION_QUEUE, true},
    {"topic://", DESTINATION_TOPIC, false},
    {"/topic/", DESTINATION_TOPIC, false},
    {"/exchanges/amq.topic/", DESTINATION_TOPIC, false},
    {"/exchange/amq.topic/", DESTINATION_TOPIC, false},
    {"/reply-queue/", DESTINATION_REPLY_QUEUE, false},
    {"/exchanges/", DESTINATION_EXCHANGE, false},
    {"/exchange/", DESTINATION_EXCHANGE, false},
};

const struct address_spelling amqp_addresses = {
    .prefixes = amqp_prefixes,
    .prefix_count = sizeof(amqp_prefixes) / sizeof(amqp_prefixes[0]),
    .bare_is_queue = true,
    .forms = "use NAME, queue://NAME, /queue/NAME, /queues/NAME, topic://NAME, /topic/NAME, "
             "/exchanges/NAME/KEY, /exchanges/NAME or /reply-queue/TOKEN",
};
