/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_shovel.h -- shovels whose legacy end speaks STOMP (architecture
 * §15): kbridged as a STOMP 1.2 client of another broker, moving messages
 * between one of its queues and a kbridge destination. Lives with the STOMP
 * adapter because it uses the STOMP frame codec (stomp_frame.h), which
 * daemon/ may not include; the adapter starts them in create and stops them
 * in drain/destroy. Status goes to the server's table (daemon/shovel.h).
 * Loop thread only. */
#ifndef KBRIDGE_STOMP_SHOVEL_H
#define KBRIDGE_STOMP_SHOVEL_H

#include <stddef.h>

struct stomp_adapter;
struct stomp_shovel;

/* Start every shovel of the config in force whose legacy end is `stomp`
 * (each connects at once and reconnects with back-off). 0, or -1 with err
 * (out of memory, an unreadable passcode_file, a bad kbridge destination);
 * what started is kept in *list and stopped by stomp_shovels_stop. */
int stomp_shovels_start(struct stomp_adapter *adapter, struct stomp_shovel **list, char *err,
                        size_t err_size);

/* SIGTERM: a shovel from a broker takes no more messages (those arriving
 * stay unacknowledged), but keeps its connection to ACK what Kafka confirms while the
 * server waits for Kafka; a shovel towards a broker closes at once (its
 * unconfirmed deliveries are released). None reconnects. */
void stomp_shovels_drain(struct stomp_shovel *list);

/* Stop and free every shovel of *list: connections closed (what the legacy
 * source had not seen acknowledged it redelivers; kbridge deliveries not
 * confirmed by a RECEIPT are released), sessions closed. */
void stomp_shovels_stop(struct stomp_shovel **list);

#endif
