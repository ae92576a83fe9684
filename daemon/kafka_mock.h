/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_mock.h -- librdkafka's in-memory mock cluster (a real Kafka
 * wire-protocol broker) behind a small API, plus the text commands that
 * inject faults into it. Used by `kafka.bootstrap: embedded` inside kbridged
 * and by the standalone kbridge-devkafka tool.
 *
 * The mock runs on librdkafka's own threads; these calls are safe from any
 * one thread. Data lives in memory only (about 5 MiB kept per partition). */
#ifndef KBRIDGE_KAFKA_MOCK_H
#define KBRIDGE_KAFKA_MOCK_H

#include <stddef.h>

struct kafka_mock;

/* Start a mock cluster of `brokers` brokers (1..32) listening on 127.0.0.1
 * ephemeral ports. `default_partitions` (>= 1) is used for topics created
 * through kafka_mock_topic_create with partitions <= 0. Returns NULL and
 * fills err on failure. The caller owns the result (kafka_mock_stop). */
struct kafka_mock *kafka_mock_start(int brokers, int default_partitions, char *err,
                                    size_t err_size);

/* The bootstrap list ("127.0.0.1:p1,127.0.0.1:p2"); owned by the mock. */
const char *kafka_mock_bootstraps(const struct kafka_mock *mock);

/* Create `topic` with `partitions` partitions (<= 0: the default) and
 * replication factor min(3, brokers). 0 ok, -1 with err filled. */
int kafka_mock_topic_create(struct kafka_mock *mock, const char *topic, int partitions, char *err,
                            size_t err_size);

/* Run one fault-injection command line (grammar in docs/devkafka.md):
 *   broker ID down | broker ID up | broker ID rtt MS
 *   errors REQUEST COUNT ERROR     (REQUEST: name like Produce or ApiKey number;
 *                                   ERROR: name like NOT_LEADER_FOR_PARTITION or number)
 *   clear REQUEST
 *   topic create NAME [PARTITIONS [REPLICATION]]
 *   leader TOPIC PARTITION BROKER
 *   coordinator group|txn KEY BROKER
 *   ping
 * Writes "ok" or "error: reason" (one line, no newline) into reply.
 * Returns 0 when the command was carried out, -1 otherwise. */
int kafka_mock_command(struct kafka_mock *mock, const char *line, char *reply, size_t reply_size);

/* Stop the cluster and free everything; NULL is fine. */
void kafka_mock_stop(struct kafka_mock *mock);

#endif
