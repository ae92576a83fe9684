/* SPDX-License-Identifier: Apache-2.0 */
/* queue_arguments.h -- a queue's RabbitMQ arguments (x-message-ttl,
 * x-dead-letter-exchange, ...) checked and parsed once into a plain struct
 * that the queue engine reads (architecture §11, docs/routing.md "Queue
 * arguments"). Pure: no I/O. The check a declare makes
 * (definitions_check_queue_arguments) is queue_arguments_parse. */
#ifndef KBRIDGE_QUEUE_ARGUMENTS_H
#define KBRIDGE_QUEUE_ARGUMENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* AMQP 0-9-1 short strings: exchange names and routing keys */
#define QUEUE_ARGUMENTS_NAME_MAX 255

enum queue_type {
    QUEUE_TYPE_CLASSIC, /* also what no x-queue-type means */
    QUEUE_TYPE_QUORUM,  /* accepted; behaves as classic (Kafka replicates) */
    /* a RabbitMQ stream (architecture §13 "Stream queues"): its topic, read
     * by every consumer from its x-stream-offset, nothing consumed away */
    QUEUE_TYPE_STREAM,
};

struct queue_arguments {
    int64_t message_ttl_ms; /* x-message-ttl; -1: none */
    int64_t expires_ms;     /* x-expires; -1: none */
    int64_t max_length;     /* x-max-length; -1: none */
    /* x-max-length-bytes; -1: none. Kafka does not tell a queue's ready bytes:
     * checked on an estimate (ready records x their mean body size,
     * architecture §5 "x-max-length") */
    int64_t max_length_bytes;
    /* x-overflow reject-publish: publishes are refused at the limit
     * (core_overflow.c), else drop-head at delivery (queue.c) */
    bool reject_publish;
    /* x-dead-letter-exchange ("" is the default exchange) */
    bool has_dead_letter_exchange;
    char dead_letter_exchange[QUEUE_ARGUMENTS_NAME_MAX + 1];
    /* x-dead-letter-routing-key; absent: the message's own key */
    bool has_dead_letter_routing_key;
    char dead_letter_routing_key[QUEUE_ARGUMENTS_NAME_MAX + 1];
    int64_t delivery_limit;      /* x-delivery-limit; -1: none (queues.max_deliveries) */
    bool single_active_consumer; /* x-single-active-consumer: one consumer per node gets all */
    enum queue_type type;        /* x-queue-type */
    bool lazy;                   /* x-queue-mode lazy: accepted, no effect */
};

/* The arguments of a queue declared without any. */
void queue_arguments_default(struct queue_arguments *out);

/* Check `arguments` (a JSON object, or NULL for none) and fill *out. 0, or
 * -1 with RabbitMQ's text in err naming the argument ("invalid arg
 * 'x-message-ttl': -1, must be a non-negative integer"; an argument
 * kbridge does not honour is refused by name). */
int queue_arguments_parse(const json_t *arguments, struct queue_arguments *out, char *err,
                          size_t err_size);

/* How many deliveries a record of the queue gets before it is dead-lettered:
 * x-delivery-limit N allows N returned deliveries (N + 1 in all, as quorum
 * queues count), else `max_deliveries` (queues.max_deliveries). */
uint32_t queue_arguments_max_deliveries(const struct queue_arguments *arguments,
                                        uint32_t max_deliveries);

/* Has a record with Kafka timestamp `timestamp_ms` (-1: none) outlived
 * x-message-ttl at `now_ms`? False without a TTL or a timestamp. */
bool queue_arguments_expired(const struct queue_arguments *arguments, int64_t timestamp_ms,
                             uint64_t now_ms);

/* Dead-letter reasons as RabbitMQ names them (x-death "reason"). */
#define QUEUE_DEATH_REJECTED "rejected"
#define QUEUE_DEATH_EXPIRED "expired"
#define QUEUE_DEATH_DELIVERY_LIMIT "delivery_limit"
#define QUEUE_DEATH_MAXLEN "maxlen"

/* RabbitMQ's x-death table as JSON text: `previous` (the record's x-death
 * header, `previous_len` bytes; NULL or not a JSON array: none) with this
 * death added: the entry of the same queue and reason gets count + 1 and
 * moves first, else a new entry {"count": 1, "reason", "queue", "exchange",
 * "routing-keys": [routing_key], "time": time_s} goes first. Malloc'd (the
 * caller frees), NULL when out of memory. */
char *queue_arguments_x_death(const char *previous, size_t previous_len, const char *reason,
                              const char *queue, const char *exchange, const char *routing_key,
                              uint64_t time_s);

#endif
