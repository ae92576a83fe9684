/* SPDX-License-Identifier: Apache-2.0 */
/* queue_bindings.c -- a queue's topics and record filter from its bindings
 * (architecture §11; interface and terms in queue_bindings.h). */
#include "queue_bindings.h"

#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "definitions.h"
#include "engine.h"

/* A sorted set of strings, grown as needed. */
struct string_set {
    char **items;
    size_t count, capacity;
    bool failed; /* out of memory */
};

static void string_set_add(struct string_set *set, const char *text)
{
    size_t at = 0;
    while (at < set->count) {
        int order = strcmp(set->items[at], text);
        if (order == 0)
            return;
        if (order > 0)
            break;
        at++;
    }
    if (set->failed)
        return;
    if (set->count == set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 4;
        char **grown = realloc(set->items, capacity * sizeof(*grown));
        if (!grown) {
            set->failed = true;
            return;
        }
        set->items = grown;
        set->capacity = capacity;
    }
    char *copy = strdup(text);
    if (!copy) {
        set->failed = true;
        return;
    }
    memmove(&set->items[at + 1], &set->items[at], (set->count - at) * sizeof(*set->items));
    set->items[at] = copy;
    set->count++;
}

static void strings_free(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

struct compute_pass {
    const struct definitions *definitions;
    const char *vhost;
    struct string_set exchanges;
    struct string_set patterns;
    struct string_set keyed;
};

static bool compute_binding(const struct binding_spec *binding, void *opaque)
{
    struct compute_pass *pass = opaque;
    if (binding->source[0] == '\0')
        return true; /* nothing binds from the default exchange */
    const struct exchange_definition *source =
        definitions_exchange(pass->definitions, pass->vhost, binding->source);
    if (engine_exchange_is_topic_per_key(binding->source)) {
        string_set_add(&pass->patterns, binding->routing_key);
    } else if (source && source->topic_per_key) {
        /* its topic for this key: read exactly what the binding matches */
        size_t len = strlen(binding->source) + 1 + strlen(binding->routing_key) + 1;
        char *topic = malloc(len);
        if (!topic) {
            pass->keyed.failed = true;
            return false;
        }
        snprintf(topic, len, "%s.%s", binding->source, binding->routing_key);
        string_set_add(&pass->keyed, topic);
        free(topic);
    } else {
        string_set_add(&pass->exchanges, binding->source);
    }
    return !pass->exchanges.failed && !pass->patterns.failed && !pass->keyed.failed;
}

int queue_bindings_compute(const struct definitions *definitions, const char *vhost,
                           const char *queue, struct queue_bindings *out)
{
    struct compute_pass pass = {.definitions = definitions, .vhost = vhost};
    definitions_bindings_into(definitions, vhost, queue, compute_binding, &pass);
    if (pass.exchanges.failed || pass.patterns.failed || pass.keyed.failed) {
        strings_free(pass.exchanges.items, pass.exchanges.count);
        strings_free(pass.patterns.items, pass.patterns.count);
        strings_free(pass.keyed.items, pass.keyed.count);
        *out = (struct queue_bindings){0};
        return -1;
    }
    *out = (struct queue_bindings){
        .exchanges = pass.exchanges.items,
        .exchange_count = pass.exchanges.count,
        .patterns = pass.patterns.items,
        .pattern_count = pass.patterns.count,
        .keyed = pass.keyed.items,
        .keyed_count = pass.keyed.count,
    };
    return 0;
}

void queue_bindings_clear(struct queue_bindings *bindings)
{
    strings_free(bindings->exchanges, bindings->exchange_count);
    strings_free(bindings->patterns, bindings->pattern_count);
    strings_free(bindings->keyed, bindings->keyed_count);
    *bindings = (struct queue_bindings){0};
}

bool queue_bindings_empty(const struct queue_bindings *bindings)
{
    return bindings->exchange_count == 0 && bindings->pattern_count == 0 &&
           bindings->keyed_count == 0;
}

static bool strings_equal(char *const *a, size_t a_count, char *const *b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

bool queue_bindings_equal(const struct queue_bindings *a, const struct queue_bindings *b)
{
    return strings_equal(a->exchanges, a->exchange_count, b->exchanges, b->exchange_count) &&
           strings_equal(a->patterns, a->pattern_count, b->patterns, b->pattern_count) &&
           strings_equal(a->keyed, a->keyed_count, b->keyed, b->keyed_count);
}

void queue_bindings_free_topics(char **topics, size_t count) { strings_free(topics, count); }

int queue_bindings_topics(const struct queue_bindings *bindings, const char *prefix,
                          const char *own_topic, char ***topics, size_t *count)
{
    size_t most = 1 + bindings->exchange_count + bindings->pattern_count + bindings->keyed_count;
    char **list = calloc(most, sizeof(*list));
    size_t used = 0;
    if (!list)
        return -1;
    if (!(list[used++] = strdup(own_topic)))
        goto fail;
    for (size_t i = 0; i < bindings->exchange_count; i++) {
        struct destination exchange = {.kind = DESTINATION_EXCHANGE};
        char topic[ADDRESS_NAME_MAX + 1];
        if (strlen(bindings->exchanges[i]) > ADDRESS_NAME_MAX)
            continue;
        strcpy(exchange.name, bindings->exchanges[i]);
        if (address_kafka_topic(&exchange, prefix, topic, sizeof(topic), NULL, 0) < 0)
            continue; /* not a legal Kafka topic name: nothing can be published to it */
        if (!(list[used++] = strdup(topic)))
            goto fail;
    }
    for (size_t i = 0; i < bindings->pattern_count; i++) {
        const char *pattern = bindings->patterns[i];
        char topic[ADDRESS_NAME_MAX * 4 + 8];
        struct destination literal = {.kind = DESTINATION_TOPIC};
        bool wildcard = strchr(pattern, '*') || strchr(pattern, '#');
        if (wildcard) {
            if (address_wildcard_regex(pattern, prefix, topic, sizeof(topic)) < 0)
                continue;
        } else {
            if (strlen(pattern) > ADDRESS_NAME_MAX)
                continue;
            strcpy(literal.name, pattern);
            if (address_kafka_topic(&literal, prefix, topic, sizeof(topic), NULL, 0) < 0)
                continue;
        }
        if (!(list[used++] = strdup(topic)))
            goto fail;
    }
    for (size_t i = 0; i < bindings->keyed_count; i++) {
        struct destination keyed = {.kind = DESTINATION_TOPIC};
        char topic[ADDRESS_NAME_MAX + 1];
        if (strlen(bindings->keyed[i]) > ADDRESS_NAME_MAX)
            continue;
        strcpy(keyed.name, bindings->keyed[i]);
        if (address_kafka_topic(&keyed, prefix, topic, sizeof(topic), NULL, 0) < 0)
            continue; /* no message can be published with that key */
        if (!(list[used++] = strdup(topic)))
            goto fail;
    }
    *topics = list;
    *count = used;
    return 0;
fail:
    strings_free(list, used);
    return -1;
}

bool queue_bindings_match(const struct queue_bindings *bindings,
                          const struct definitions *definitions, const char *vhost,
                          const char *queue, const char *prefix, const char *topic,
                          const char *routing_key, const struct binding_header *headers,
                          size_t header_count)
{
    size_t prefix_len = prefix ? strlen(prefix) : 0;
    if (strncmp(topic, prefix ? prefix : "", prefix_len) != 0)
        return false;
    const char *name = topic + prefix_len;
    /* A per-key exchange's topic holds only messages with the key a binding
     * into the queue names: reading it is matching. */
    for (size_t i = 0; i < bindings->keyed_count; i++)
        if (strcmp(bindings->keyed[i], name) == 0)
            return true;
    for (size_t i = 0; i < bindings->exchange_count; i++)
        if (strcmp(bindings->exchanges[i], name) == 0 &&
            definitions_reaches(definitions, vhost, name, queue, routing_key, headers,
                                header_count))
            return true;
    return bindings->pattern_count > 0 &&
           definitions_reaches(definitions, vhost, "amq.topic", queue, name, headers, header_count);
}
