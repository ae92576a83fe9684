/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_shovel.h -- shovels whose legacy end speaks AMQP 1.0 (architecture
 * §15): kbridged as an AMQP 1.0 client of another broker (proton's
 * connection driver over a libevent bufferevent), moving messages between
 * one of its queues and a kbridge destination. Lives with the AMQP adapter
 * because it uses proton and amqp_convert.h, which daemon/ may not include;
 * the adapter starts them in create and stops them in drain/destroy. Status
 * goes to the server's table (daemon/shovel.h). Loop thread only. */
#ifndef KBRIDGE_AMQP_SHOVEL_H
#define KBRIDGE_AMQP_SHOVEL_H

#include <stddef.h>

struct amqp_adapter;
struct amqp_shovel;

/* Start every shovel of the config in force whose legacy end is `amqp`
 * (each connects at once, after reading its passcode_file on the worker
 * pool, and reconnects with back-off). 0, or -1 with err (out of memory, a
 * bad kbridge destination); what started is kept in *list and stopped by
 * amqp_shovels_stop. */
int amqp_shovels_start(struct amqp_adapter *adapter, struct amqp_shovel **list, char *err,
                       size_t err_size);

/* SIGTERM: a shovel from a broker takes no more messages (no more credit;
 * those arriving stay unsettled) but keeps its connection to accept what
 * Kafka confirms while the server waits for Kafka; a shovel towards a broker
 * closes at once (its deliveries without an outcome are released). None
 * reconnects. */
void amqp_shovels_drain(struct amqp_shovel *list);

/* Stop and free every shovel of *list: the dispositions already decided are
 * written (best effort), connections closed (the broker redelivers what it
 * had no outcome for; kbridge deliveries without the broker's `accepted` are
 * released), sessions closed. */
void amqp_shovels_stop(struct amqp_shovel **list);

#endif
