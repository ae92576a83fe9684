/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_address.c -- the STOMP destination spellings (RabbitMQ's), passed to
 * the protocol-neutral parser in daemon/address.c. The first prefix of each
 * kind is the one address_spell writes. `/exchange/amq.topic/NAME` is a topic
 * (amq.topic keeps the topic-per-key mapping, architecture §11); any other
 * `/exchange/NAME[/KEY]` is an exchange. */
#include "stomp_address.h"

static const struct address_prefix stomp_prefixes[] = {
    {"/queue/", DESTINATION_QUEUE, false},
    {"/amq/queue/", DESTINATION_QUEUE, true},
    {"/topic/", DESTINATION_TOPIC, false},
    {"/exchange/amq.topic/", DESTINATION_TOPIC, false},
    {"/temp-queue/", DESTINATION_TEMP_QUEUE, false},
    {"/reply-queue/", DESTINATION_REPLY_QUEUE, false},
    {"/exchange/", DESTINATION_EXCHANGE, false},
};

const struct address_spelling stomp_addresses = {
    .prefixes = stomp_prefixes,
    .prefix_count = sizeof(stomp_prefixes) / sizeof(stomp_prefixes[0]),
    .bare_is_queue = false,
    .forms = "use /queue/NAME, /amq/queue/NAME, /topic/NAME, /exchange/NAME/KEY, "
             "/temp-queue/NAME or /reply-queue/TOKEN",
};
