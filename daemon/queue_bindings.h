/* SPDX-License-Identifier: Apache-2.0 */
/* queue_bindings.h -- what a queue's consumer group reads and keeps when the
 * queue is bound to exchanges (architecture §11). Pure: computed from the
 * view of the definitions, no I/O.
 *
 * A queue always reads its own Kafka topic (the default exchange's binding,
 * `kafka.topic_prefix + NAME`, as before exchanges existed). Every binding on
 * a path into the queue (definitions_bindings_into) adds what its source
 * publishes to: an exchange's own topic (`prefix + EXCHANGE`), or, for
 * amq.topic (whose routing key names the topic), the topics its binding key
 * names (a literal topic, or a wildcard regex for `*` and `#`). Each record
 * read from such a topic is kept only when the queue's bindings match it:
 * definitions_reaches with the record's source exchange, its
 * `kbridge-routing-key` header (amq.topic: the topic's name) and headers.
 *
 * A direct exchange with a Kafka topic per routing key (definitions.h,
 * DEFINITIONS_TOPIC_PER_KEY) adds the topic `prefix + EXCHANGE.KEY` of each
 * binding key instead of its own topic; a record read there matches.
 *
 * Ownership: a struct queue_bindings owns its strings; free with
 * queue_bindings_clear. */
#ifndef KBRIDGE_QUEUE_BINDINGS_H
#define KBRIDGE_QUEUE_BINDINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "binding.h"

struct definitions;

struct queue_bindings {
    char **exchanges; /* sources with a topic of their own, sorted, each once */
    size_t exchange_count;
    char **patterns; /* amq.topic binding keys (topic names or wildcards), sorted, each once */
    size_t pattern_count;
    char **keyed; /* NAME.KEY topics of per-key direct exchanges (x-kbridge-topic-per-key) */
    size_t keyed_count;
};

/* Fill `out` (zeroed or cleared) from the bindings into `queue`. 0, or -1
 * when out of memory (`out` is left empty). */
int queue_bindings_compute(const struct definitions *definitions, const char *vhost,
                           const char *queue, struct queue_bindings *out);
/* Free the strings; `bindings` is empty afterwards. */
void queue_bindings_clear(struct queue_bindings *bindings);
/* No binding beyond the default exchange's: the queue reads only its own topic. */
bool queue_bindings_empty(const struct queue_bindings *bindings);
/* Do both read the same topics? */
bool queue_bindings_equal(const struct queue_bindings *a, const struct queue_bindings *b);

/* The consumer group's subscription: `own_topic` first, then prefix +
 * EXCHANGE for each exchange, then per pattern its literal topic or its
 * `^regex` (address_wildcard_regex). A pattern that is no legal topic name
 * is left out. *topics is a malloc'd array of malloc'd strings (free with
 * queue_bindings_free_topics). 0, or -1 when out of memory. */
int queue_bindings_topics(const struct queue_bindings *bindings, const char *prefix,
                          const char *own_topic, char ***topics, size_t *count);
void queue_bindings_free_topics(char **topics, size_t count);

/* Does a record read from Kafka topic `topic` (prefix included, not the
 * queue's own topic) reach `queue`: through the exchange whose topic it is
 * (with `routing_key` and `headers`), or through amq.topic with the topic's
 * name as its key? */
bool queue_bindings_match(const struct queue_bindings *bindings,
                          const struct definitions *definitions, const char *vhost,
                          const char *queue, const char *prefix, const char *topic,
                          const char *routing_key, const struct binding_header *headers,
                          size_t header_count);

#endif
