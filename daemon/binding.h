/* SPDX-License-Identifier: Apache-2.0 */
/* binding.h -- RabbitMQ's exchange types as pure matchers (architecture §11).
 *
 * A queue bound to an exchange reads the exchange's Kafka topic and keeps the
 * records its bindings match: direct (the routing key equals the binding
 * key), fanout (everything), topic (the binding key is a pattern of
 * '.'-separated words where `*` is exactly one word and `#` zero or more)
 * and headers (`x-match` all / any / all-with-x / any-with-x over the
 * binding's arguments). No I/O, no allocation: the caller owns every string.
 * Semantics follow RabbitMQ's, including its corner cases: the empty routing
 * key has no words, "a." has two ("a" and ""), a binding argument without a
 * value matches on presence only, `all` with no arguments matches everything
 * and `any` with none matches nothing. */
#ifndef KBRIDGE_BINDING_H
#define KBRIDGE_BINDING_H

#include <stdbool.h>
#include <stddef.h>

enum exchange_type {
    EXCHANGE_DIRECT,
    EXCHANGE_FANOUT,
    EXCHANGE_TOPIC,
    EXCHANGE_HEADERS,
};

/* "direct", "fanout", "topic", "headers" -> *out and 0; anything else -1. */
int exchange_type_parse(const char *text, enum exchange_type *out);
/* The type's name ("direct"); a static string. */
const char *exchange_type_name(enum exchange_type type);

/* Does routing key `key` match topic binding `pattern` (RabbitMQ's topic
 * exchange rules)? Both are byte strings of the given lengths. */
bool binding_topic_match(const char *pattern, size_t pattern_len, const char *key, size_t key_len);

/* `x-match` of a headers binding. */
enum headers_match {
    HEADERS_MATCH_ALL,        /* every argument (not x-*) present and equal */
    HEADERS_MATCH_ANY,        /* at least one argument (not x-*) present and equal */
    HEADERS_MATCH_ALL_WITH_X, /* like all, x-* arguments (but x-match) count too */
    HEADERS_MATCH_ANY_WITH_X, /* like any, x-* arguments (but x-match) count too */
};

/* "all", "any", "all-with-x", "any-with-x" -> *out and 0; else -1. A binding
 * without x-match is "all". */
int headers_match_parse(const char *text, enum headers_match *out);

/* A name and a value: a binding argument or a message header. `value` NULL
 * is a value-less argument (AMQP void): it matches on the name's presence. */
struct binding_header {
    const char *name; /* NUL-terminated */
    const char *value;
    size_t value_len;
};

/* Does a message with `headers` match a headers binding with `arguments`
 * under `mode`? The binding's own "x-match" argument never takes part. When
 * a name occurs twice among the message's headers the first one counts. */
bool binding_headers_match(enum headers_match mode, const struct binding_header *arguments,
                           size_t argument_count, const struct binding_header *headers,
                           size_t header_count);

#endif
