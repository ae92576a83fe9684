/* SPDX-License-Identifier: Apache-2.0 */
/* definitions.h -- RabbitMQ's routing model as kbridge holds it in memory
 * (architecture §11): vhosts' exchanges, queues and bindings, the built-in
 * exchanges, the precondition checks of a declare, and routing a message
 * through exchanges (incl. exchange-to-exchange bindings) to queues.
 *
 * The view is built only from the definitions topic: a declare is checked
 * against it (definitions_check_*), written to Kafka as a record
 * (definitions_record.h), and applied when this node's reader gets the
 * record back (definitions_apply_*), the same path as every other node's
 * records. Applying is an upsert and never fails on content: the topic is the
 * truth, in its order. No I/O here.
 *
 * Ownership: a `struct definitions` owns copies of every string and
 * argument table it is given; lookups return borrowed pointers valid until
 * the next apply/remove. */
#ifndef KBRIDGE_DEFINITIONS_H
#define KBRIDGE_DEFINITIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "binding.h"

struct definitions;

/* The outcome of a check, named after the AMQP 0-9-1 reply codes a client
 * gets for it (the adapters map them to their protocol's errors). */
enum definitions_status {
    DEFINITIONS_OK = 0,
    DEFINITIONS_NOT_FOUND,           /* 404: no such exchange/queue */
    DEFINITIONS_PRECONDITION_FAILED, /* 406: redeclared differently, bad argument */
    DEFINITIONS_ACCESS_REFUSED,      /* 403: reserved name, default exchange */
    DEFINITIONS_RESOURCE_LOCKED,     /* 405: another connection's exclusive queue */
    DEFINITIONS_NO_MEMORY,
};

/* An exchange as declared. `arguments` is a JSON object (NULL: none). */
struct exchange_spec {
    const char *vhost;
    const char *name;
    enum exchange_type type;
    bool durable, auto_delete, internal;
    json_t *arguments; /* borrowed by specs; owned (a copy) once applied */
};

/* A queue as declared. `owner` names the connection of an exclusive queue
 * ("NODE/CONNECTION-ID"); NULL for others. */
struct queue_spec {
    const char *vhost;
    const char *name;
    bool durable, exclusive, auto_delete;
    json_t *arguments;
    const char *owner;
};

enum binding_destination {
    BINDING_TO_QUEUE,
    BINDING_TO_EXCHANGE,
};

struct binding_spec {
    const char *vhost;
    const char *source; /* exchange */
    enum binding_destination destination_kind;
    const char *destination;
    const char *routing_key;
    json_t *arguments; /* headers exchanges: x-match and the headers to match */
};

/* What the model keeps of an exchange and a queue (read-only to callers). */
/* A direct exchange's argument (kbridge's own, boolean): one Kafka topic per
 * routing key, `NAME.KEY`, instead of one topic for the whole exchange, so a
 * bound queue reads only its keys' topics (architecture §11, routing.md). */
#define DEFINITIONS_TOPIC_PER_KEY "x-kbridge-topic-per-key"

struct exchange_definition {
    struct exchange_spec spec;       /* strings and arguments owned by the model */
    const char *alternate_exchange;  /* arguments' "alternate-exchange", or NULL */
    bool topic_per_key;              /* DEFINITIONS_TOPIC_PER_KEY: writes PREFIX+NAME.KEY */
    enum headers_match headers_mode; /* unused unless type is headers */
    bool builtin;                    /* the default exchange and amq.* */
};

struct queue_definition {
    struct queue_spec spec;
    /* The last purge (architecture §11 "Purge"): [{topic, partition,
     * offset}], the end offsets the queue's group skips to; NULL: never
     * purged. Kept across redeclares, gone with the queue. */
    json_t *purge_offsets;
};

/* An empty model with no vhost. NULL when out of memory. Free with
 * definitions_free. */
struct definitions *definitions_new(void);
void definitions_free(struct definitions *definitions);

/* Make `vhost` known, with its built-in exchanges (the default exchange "",
 * amq.direct, amq.fanout, amq.topic, amq.headers, amq.match). Applying
 * anything in a vhost also makes it known. 0, or -1 out of memory. */
int definitions_vhost_add(struct definitions *definitions, const char *vhost);
/* Is `vhost` known? */
bool definitions_vhost_known(const struct definitions *definitions, const char *vhost);

/* ---- checks of a declare, delete or bind against the current view ------------ */

/* Is declaring `spec` allowed? DEFINITIONS_OK when the exchange is new (or
 * `passive` is false and it exists with the same properties: then
 * *exists is set). Else a status and RabbitMQ's message in err, e.g.
 * "inequivalent arg 'type' for exchange 'logs' in vhost '/': received
 * 'fanout' but current is 'direct'". `passive`: only check that it exists. */
enum definitions_status definitions_check_exchange(const struct definitions *definitions,
                                                   const struct exchange_spec *spec, bool passive,
                                                   bool *exists, char *err, size_t err_size);

/* The same for a queue; `spec->owner` is the declaring connection (an
 * exclusive queue of another owner is RESOURCE_LOCKED). Queue arguments are
 * checked by definitions_check_queue_arguments. */
enum definitions_status definitions_check_queue(const struct definitions *definitions,
                                                const struct queue_spec *spec, bool passive,
                                                bool *exists, char *err, size_t err_size);

/* May the exchange be deleted (not the default or an amq.* exchange; with
 * `if_unused`, not while it is a binding's source)? */
enum definitions_status definitions_check_exchange_delete(const struct definitions *definitions,
                                                          const char *vhost, const char *name,
                                                          bool if_unused, char *err,
                                                          size_t err_size);

/* Do the binding's source and destination exist, and may it be made
 * (nothing binds to or from the default exchange)? Also for unbind. */
enum definitions_status definitions_check_binding(const struct definitions *definitions,
                                                  const struct binding_spec *spec, char *err,
                                                  size_t err_size);

/* Queue arguments kbridge honours, each of the right type and range; any
 * other argument is refused by name (never silently ignored): see
 * queue_arguments_parse. */
enum definitions_status definitions_check_queue_arguments(const json_t *arguments, char *err,
                                                          size_t err_size);

/* A server-named queue's name: "amq.gen-" and 22 URL-safe base64 characters
 * of random bytes, into out (at least 31 bytes). 0, or -1 when no
 * randomness could be had. */
int definitions_generate_queue_name(char *out, size_t out_size);

/* ---- applying what the definitions topic says --------------------------------- */

/* Upsert an exchange / a queue / a binding. 0, or -1 when out of memory
 * (the model is unchanged). A binding whose source or destination is
 * unknown is kept: definitions may arrive in any order across keys. */
int definitions_apply_exchange(struct definitions *definitions, const struct exchange_spec *spec);
int definitions_apply_queue(struct definitions *definitions, const struct queue_spec *spec);
int definitions_apply_binding(struct definitions *definitions, const struct binding_spec *spec);

/* Remove an exchange or a queue and every binding from or to it (RabbitMQ
 * deletes them with it), or one binding. Absent: nothing happens. Built-in
 * exchanges are never removed. */
void definitions_remove_exchange(struct definitions *definitions, const char *vhost,
                                 const char *name);
void definitions_remove_queue(struct definitions *definitions, const char *vhost, const char *name);
void definitions_remove_binding(struct definitions *definitions, const struct binding_spec *spec);
/* Record a purge of a queue: `offsets` (borrowed; a reference is kept) as
 * its purge_offsets. A queue not in the view: nothing happens. */
void definitions_apply_purge(struct definitions *definitions, const char *vhost, const char *name,
                             json_t *offsets);

/* ---- lookups -------------------------------------------------------------------- */

/* Borrowed; NULL when absent. Built-in exchanges are found in every vhost. */
const struct exchange_definition *definitions_exchange(const struct definitions *definitions,
                                                       const char *vhost, const char *name);
const struct queue_definition *definitions_queue(const struct definitions *definitions,
                                                 const char *vhost, const char *name);
/* How many bindings have the exchange as their source. */
size_t definitions_exchange_binding_count(const struct definitions *definitions, const char *vhost,
                                          const char *name);

/* Called with each binding (borrowed, valid during the call); return false
 * to stop early. */
typedef bool definitions_binding_fn(const struct binding_spec *binding, void *opaque);

/* Call `each` for every binding whose source is `exchange`, in the order
 * they were made. */
void definitions_bindings_from(const struct definitions *definitions, const char *vhost,
                               const char *exchange, definitions_binding_fn *each, void *opaque);

/* Call `each` for every binding on a path into queue `queue`: its own
 * bindings, the exchange-to-exchange bindings into their sources, and so on
 * backwards (each exchange followed once, so cycles end). What a queue's
 * consumer group must read (architecture §11): the topics of these
 * bindings' sources. */
void definitions_bindings_into(const struct definitions *definitions, const char *vhost,
                               const char *queue, definitions_binding_fn *each, void *opaque);

/* Bindings whose destination is queue / exchange `name`, in no set order. */
void definitions_bindings_to(const struct definitions *definitions, const char *vhost,
                             enum binding_destination kind, const char *name,
                             definitions_binding_fn *each, void *opaque);

/* Walks of the whole model, for exports and /api/definitions, in no set
 * order; `each` returns false to stop, and must not change the model. Only
 * declared entities (built-in exchanges included: see ->builtin). */
typedef bool definitions_exchange_fn(const struct exchange_definition *exchange, void *opaque);
typedef bool definitions_vhost_fn(const char *vhost, void *opaque);
void definitions_each_vhost(const struct definitions *definitions, definitions_vhost_fn *each,
                            void *opaque);
void definitions_each_exchange(const struct definitions *definitions, definitions_exchange_fn *each,
                               void *opaque);
void definitions_each_queue(const struct definitions *definitions,
                            bool (*each)(const struct queue_definition *queue, void *opaque),
                            void *opaque);
/* Every binding (also those whose source or destination is not declared). */
void definitions_each_binding(const struct definitions *definitions, definitions_binding_fn *each,
                              void *opaque);

/* ---- routing --------------------------------------------------------------------- */

/* Called once per queue a message reaches; return false to stop early. */
typedef bool definitions_queue_fn(const struct queue_definition *queue, void *opaque);

/* Route a message published to `exchange` with `routing_key` and
 * `headers` (for headers exchanges) through the bindings, following
 * exchange-to-exchange bindings (each exchange at most once), and call
 * `each` for every queue it reaches (each queue once). The default exchange
 * ("") reaches the queue named by the routing key. Alternate exchanges are
 * not followed: see definitions_alternate. Returns the number of queues
 * reached, or -1 when out of memory. */
int definitions_route(const struct definitions *definitions, const char *vhost,
                      const char *exchange, const char *routing_key,
                      const struct binding_header *headers, size_t header_count,
                      definitions_queue_fn *each, void *opaque);

/* Does a message published to `exchange` reach queue `queue` (through any
 * chain of bindings)? The consumer side's filter (architecture §11). */
bool definitions_reaches(const struct definitions *definitions, const char *vhost,
                         const char *exchange, const char *queue, const char *routing_key,
                         const struct binding_header *headers, size_t header_count);

#endif
