/* SPDX-License-Identifier: Apache-2.0 */
/* definitions.c -- the in-memory routing model (definitions.h, architecture
 * §11). Exchanges and queues live in two hash tables keyed by (vhost, name);
 * an entry may exist without a declaration while bindings name it (records
 * of different keys arrive in any order). Each exchange entry lists the
 * bindings it is the source of, each entry the bindings it is the
 * destination of, so routing and deletes touch only what they concern. */
#include "definitions.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_arguments.h"
#include "u64_map.h"

struct binding_node;

/* A growable array of borrowed binding pointers. */
struct binding_list {
    struct binding_node **items;
    size_t count, capacity;
};

/* What an exchange entry and a queue entry share, first in each: the name
 * and the chain of entries whose (vhost, name) hash to the same key. */
struct named {
    char *vhost, *name;
    uint64_t key;
    struct named *key_next; /* another entry with the same hash key */
};

struct exchange_entry {
    struct named base;
    struct exchange_definition *definition; /* NULL: named by bindings only */
    struct binding_list from;               /* bindings with this source */
    struct binding_list to;                 /* exchange-to-exchange bindings to it */
    unsigned visit;                         /* routing's visited mark */
    unsigned pins;                          /* > 0: a removal is using it, keep it */
};

struct queue_entry {
    struct named base;
    struct queue_definition *definition;
    struct binding_list to;
    unsigned visit;
    unsigned pins;
};

struct binding_node {
    struct binding_spec spec; /* strings and arguments owned */
    enum headers_match headers_mode;
    /* headers exchanges: the arguments as the matcher takes them, made once
     * (numbers and booleans as their JSON text, which is how record headers
     * carry them; JSON null is AMQP void: presence only) */
    struct binding_header *match_arguments;
    size_t match_argument_count;
    char **match_texts; /* owned texts of non-string values, match_argument_count long */
    struct exchange_entry *source;
    struct exchange_entry *to_exchange; /* one of these two */
    struct queue_entry *to_queue;
};

struct vhost_entry {
    char *name;
    struct vhost_entry *next;
};

struct definitions {
    struct u64_map exchanges; /* key -> struct exchange_entry chain */
    struct u64_map queues;    /* key -> struct queue_entry chain */
    struct vhost_entry *vhosts;
    unsigned visit; /* the current routing pass's mark */
};

/* ---- keys and tables -------------------------------------------------------- */

static uint64_t entry_key(const char *vhost, const char *name)
{
    size_t vhost_len = strlen(vhost), name_len = strlen(name);
    char stack[256];
    char *buf =
        vhost_len + name_len + 1 <= sizeof(stack) ? stack : malloc(vhost_len + name_len + 1);
    if (!buf) /* hash the name alone: a worse spread, still correct (entries compare both) */
        return u64_map_string_key(name, name_len);
    memcpy(buf, vhost, vhost_len);
    buf[vhost_len] = '\0'; /* a separator no name contains */
    memcpy(buf + vhost_len + 1, name, name_len);
    uint64_t key = u64_map_string_key(buf, vhost_len + 1 + name_len);
    if (buf != stack)
        free(buf);
    return key;
}

static struct named *named_find(const struct u64_map *map, const char *vhost, const char *name)
{
    for (struct named *n = u64_map_get(map, entry_key(vhost, name)); n; n = n->key_next)
        if (strcmp(n->vhost, vhost) == 0 && strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void named_free(struct named *n)
{
    if (n) {
        free(n->vhost);
        free(n->name);
        free(n);
    }
}

/* The entry of (vhost, name) in `map`, made (zeroed, `size` bytes of a struct
 * that starts with struct named) when absent. NULL when out of memory. */
static struct named *named_get(struct u64_map *map, size_t size, const char *vhost,
                               const char *name)
{
    struct named *found = named_find(map, vhost, name);
    if (found)
        return found;
    struct named *n = calloc(1, size);
    if (!n || u64_map_reserve(map) < 0 || !(n->vhost = strdup(vhost)) ||
        !(n->name = strdup(name))) {
        named_free(n);
        return NULL;
    }
    n->key = entry_key(vhost, name);
    n->key_next = u64_map_get(map, n->key); /* the new entry heads its key's chain */
    if (n->key_next)
        u64_map_remove(map, n->key);
    u64_map_put(map, n->key, n);
    return n;
}

/* Unlink `n` from its key's chain (the map holds the chain's head). */
static void named_unlink(struct u64_map *map, struct named *n)
{
    struct named *head = u64_map_get(map, n->key);
    if (head == n) {
        u64_map_remove(map, n->key);
        if (n->key_next)
            u64_map_put(map, n->key, n->key_next); /* a slot was just freed */
        return;
    }
    for (struct named *p = head; p; p = p->key_next) {
        if (p->key_next == n) {
            p->key_next = n->key_next;
            return;
        }
    }
}

static struct exchange_entry *exchange_entry_find(const struct definitions *definitions,
                                                  const char *vhost, const char *name)
{
    return (struct exchange_entry *)named_find(&definitions->exchanges, vhost, name);
}

static struct queue_entry *queue_entry_find(const struct definitions *definitions,
                                            const char *vhost, const char *name)
{
    return (struct queue_entry *)named_find(&definitions->queues, vhost, name);
}

static struct exchange_entry *exchange_entry_get(struct definitions *definitions, const char *vhost,
                                                 const char *name)
{
    return (struct exchange_entry *)named_get(&definitions->exchanges,
                                              sizeof(struct exchange_entry), vhost, name);
}

static struct queue_entry *queue_entry_get(struct definitions *definitions, const char *vhost,
                                           const char *name)
{
    return (struct queue_entry *)named_get(&definitions->queues, sizeof(struct queue_entry), vhost,
                                           name);
}

static int binding_list_add(struct binding_list *list, struct binding_node *binding)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 4;
        struct binding_node **items = realloc(list->items, capacity * sizeof(*items));
        if (!items)
            return -1;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = binding;
    return 0;
}

static void binding_list_remove(struct binding_list *list, const struct binding_node *binding)
{
    for (size_t i = 0; i < list->count; i++) {
        if (list->items[i] == binding) {
            memmove(&list->items[i], &list->items[i + 1],
                    (list->count - i - 1) * sizeof(list->items[0])); /* keep binding order */
            list->count--;
            return;
        }
    }
}

/* ---- definitions: owned copies ------------------------------------------------- */

static void exchange_definition_free(struct exchange_definition *d)
{
    if (!d)
        return;
    free((char *)d->spec.vhost);
    free((char *)d->spec.name);
    json_decref(d->spec.arguments);
    free(d);
}

static void queue_definition_free(struct queue_definition *d)
{
    if (!d)
        return;
    free((char *)d->spec.vhost);
    free((char *)d->spec.name);
    free((char *)d->spec.owner);
    json_decref(d->spec.arguments);
    json_decref(d->purge_offsets);
    free(d);
}

static void binding_free(struct binding_node *b)
{
    for (size_t i = 0; b->match_texts && i < b->match_argument_count; i++)
        free(b->match_texts[i]);
    free(b->match_texts);
    free(b->match_arguments);
    free((char *)b->spec.vhost);
    free((char *)b->spec.source);
    free((char *)b->spec.destination);
    free((char *)b->spec.routing_key);
    json_decref(b->spec.arguments);
    free(b);
}

/* A copy of `arguments` (NULL and an empty object both become NULL), or
 * -1 when out of memory. */
static int arguments_copy(const json_t *arguments, json_t **out)
{
    *out = NULL;
    if (!arguments || (json_is_object(arguments) && json_object_size(arguments) == 0))
        return 0;
    *out = json_deep_copy(arguments);
    return *out ? 0 : -1;
}

static bool arguments_equal(const json_t *a, const json_t *b)
{
    bool a_empty = !a || (json_is_object(a) && json_object_size(a) == 0);
    bool b_empty = !b || (json_is_object(b) && json_object_size(b) == 0);
    if (a_empty || b_empty)
        return a_empty && b_empty;
    return json_equal((json_t *)a, (json_t *)b);
}

/* ---- vhosts and built-in exchanges ------------------------------------------- */

static const struct {
    const char *name;
    enum exchange_type type;
} builtin_exchanges[] = {
    {"", EXCHANGE_DIRECT},
    {"amq.direct", EXCHANGE_DIRECT},
    {"amq.fanout", EXCHANGE_FANOUT},
    {"amq.topic", EXCHANGE_TOPIC},
    {"amq.headers", EXCHANGE_HEADERS},
    {"amq.match", EXCHANGE_HEADERS},
};

static bool is_builtin_name(const char *name)
{
    for (size_t i = 0; i < sizeof(builtin_exchanges) / sizeof(builtin_exchanges[0]); i++)
        if (strcmp(builtin_exchanges[i].name, name) == 0)
            return true;
    return false;
}

static bool has_reserved_prefix(const char *name) { return strncmp(name, "amq.", 4) == 0; }

bool definitions_vhost_known(const struct definitions *definitions, const char *vhost)
{
    for (const struct vhost_entry *v = definitions->vhosts; v; v = v->next)
        if (strcmp(v->name, vhost) == 0)
            return true;
    return false;
}

static int exchange_definition_set(struct exchange_entry *e, const struct exchange_spec *spec,
                                   bool builtin)
{
    struct exchange_definition *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->spec = *spec;
    d->spec.vhost = strdup(spec->vhost);
    d->spec.name = strdup(spec->name);
    d->spec.arguments = NULL;
    if (!d->spec.vhost || !d->spec.name ||
        arguments_copy(spec->arguments, &d->spec.arguments) < 0) {
        exchange_definition_free(d);
        return -1;
    }
    d->builtin = builtin;
    const json_t *alternate = json_object_get(d->spec.arguments, "alternate-exchange");
    d->alternate_exchange = json_is_string(alternate) ? json_string_value(alternate) : NULL;
    d->topic_per_key = d->spec.arguments &&
                       json_is_true(json_object_get(d->spec.arguments, DEFINITIONS_TOPIC_PER_KEY));
    exchange_definition_free(e->definition);
    e->definition = d;
    return 0;
}

int definitions_vhost_add(struct definitions *definitions, const char *vhost)
{
    if (definitions_vhost_known(definitions, vhost))
        return 0;
    struct vhost_entry *v = calloc(1, sizeof(*v));
    if (!v || !(v->name = strdup(vhost))) {
        free(v);
        return -1;
    }
    for (size_t i = 0; i < sizeof(builtin_exchanges) / sizeof(builtin_exchanges[0]); i++) {
        struct exchange_spec spec = {.vhost = vhost,
                                     .name = builtin_exchanges[i].name,
                                     .type = builtin_exchanges[i].type,
                                     .durable = true};
        struct exchange_entry *e = exchange_entry_get(definitions, vhost, spec.name);
        if (!e || exchange_definition_set(e, &spec, true) < 0) {
            free(v->name);
            free(v);
            return -1; /* entries made so far stay: harmless, built-ins again next time */
        }
    }
    v->next = definitions->vhosts;
    definitions->vhosts = v;
    return 0;
}

struct definitions *definitions_new(void) { return calloc(1, sizeof(struct definitions)); }

static void binding_unlink_and_free(struct binding_node *b)
{
    binding_list_remove(&b->source->from, b);
    if (b->to_exchange)
        binding_list_remove(&b->to_exchange->to, b);
    else
        binding_list_remove(&b->to_queue->to, b);
    binding_free(b);
}

void definitions_free(struct definitions *definitions)
{
    if (!definitions)
        return;
    /* Bindings first (each is in its source's `from` list exactly once). */
    struct u64_map *maps[] = {&definitions->exchanges, &definitions->queues};
    for (size_t m = 0; m < 2; m++) {
        struct u64_map *map = maps[m];
        for (size_t i = 0; map->slots && i <= map->mask; i++) {
            if (!map->slots[i].key)
                continue;
            if (m == 0) {
                for (struct exchange_entry *e = map->slots[i].value; e;
                     e = (struct exchange_entry *)e->base.key_next)
                    while (e->from.count)
                        binding_unlink_and_free(e->from.items[e->from.count - 1]);
            }
        }
    }
    for (size_t i = 0; definitions->exchanges.slots && i <= definitions->exchanges.mask; i++) {
        struct exchange_entry *e =
            definitions->exchanges.slots[i].key ? definitions->exchanges.slots[i].value : NULL;
        while (e) {
            struct exchange_entry *next = (struct exchange_entry *)e->base.key_next;
            exchange_definition_free(e->definition);
            free(e->from.items);
            free(e->to.items);
            named_free(&e->base);
            e = next;
        }
    }
    for (size_t i = 0; definitions->queues.slots && i <= definitions->queues.mask; i++) {
        struct queue_entry *q =
            definitions->queues.slots[i].key ? definitions->queues.slots[i].value : NULL;
        while (q) {
            struct queue_entry *next = (struct queue_entry *)q->base.key_next;
            queue_definition_free(q->definition);
            free(q->to.items);
            named_free(&q->base);
            q = next;
        }
    }
    u64_map_free(&definitions->exchanges);
    u64_map_free(&definitions->queues);
    while (definitions->vhosts) {
        struct vhost_entry *next = definitions->vhosts->next;
        free(definitions->vhosts->name);
        free(definitions->vhosts);
        definitions->vhosts = next;
    }
    free(definitions);
}

/* Drop an entry that has neither a definition nor bindings. */
static void exchange_entry_release(struct definitions *definitions, struct exchange_entry *e)
{
    if (e->definition || e->from.count || e->to.count || e->pins)
        return;
    named_unlink(&definitions->exchanges, &e->base);
    free(e->from.items);
    free(e->to.items);
    named_free(&e->base);
}

static void queue_entry_release(struct definitions *definitions, struct queue_entry *q)
{
    if (q->definition || q->to.count || q->pins)
        return;
    named_unlink(&definitions->queues, &q->base);
    free(q->to.items);
    named_free(&q->base);
}

/* ---- checks -------------------------------------------------------------------- */

static const char *yes_no(bool value) { return value ? "true" : "false"; }

/* "inequivalent arg 'NAME' for KIND 'X' in vhost 'V': received 'A' but current is 'B'" */
static enum definitions_status inequivalent(const char *arg, const char *kind, const char *name,
                                            const char *vhost, const char *received,
                                            const char *current, char *err, size_t err_size)
{
    snprintf(err, err_size,
             "inequivalent arg '%s' for %s '%s' in vhost '%s': received %s but current is %s", arg,
             kind, name, vhost, received, current);
    return DEFINITIONS_PRECONDITION_FAILED;
}

/* The text of one argument's value for a message: 'text', 42, true, or none. */
static void argument_text(const json_t *arguments, const char *name, char *out, size_t out_size)
{
    const json_t *value = json_object_get(arguments, name);
    if (!value) {
        snprintf(out, out_size, "none");
    } else if (json_is_string(value)) {
        snprintf(out, out_size, "'%s'", json_string_value(value));
    } else {
        char *dumped = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(out, out_size, "%s", dumped ? dumped : "a value");
        free(dumped);
    }
}

/* The first argument whose value differs between `received` and `current`. */
static enum definitions_status arguments_inequivalent(const json_t *received, const json_t *current,
                                                      const char *kind, const char *name,
                                                      const char *vhost, char *err, size_t err_size)
{
    const json_t *sides[2] = {received, current};
    for (size_t s = 0; s < 2; s++) {
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)sides[s], key, value)
        {
            const json_t *other = json_object_get(sides[1 - s], key);
            if (other && json_equal(value, (json_t *)other))
                continue;
            char got[128], have[128];
            argument_text(received, key, got, sizeof(got));
            argument_text(current, key, have, sizeof(have));
            return inequivalent(key, kind, name, vhost, got, have, err, err_size);
        }
    }
    return DEFINITIONS_OK;
}

/* A redeclare of something that exists: its three flags and its arguments,
 * received and current. */
struct redeclare {
    const char *kind, *vhost, *name;
    const char *const *flag_names;
    const bool *got, *have;
    const json_t *got_arguments, *have_arguments;
};

/* DEFINITIONS_OK when the redeclare matches, else PRECONDITION_FAILED
 * naming the first flag or argument that differs. */
static enum definitions_status redeclare_check(const struct redeclare *r, char *err,
                                               size_t err_size)
{
    for (size_t i = 0; i < 3; i++) {
        if (r->got[i] != r->have[i]) {
            char a[16], b[16];
            snprintf(a, sizeof(a), "'%s'", yes_no(r->got[i]));
            snprintf(b, sizeof(b), "'%s'", yes_no(r->have[i]));
            return inequivalent(r->flag_names[i], r->kind, r->name, r->vhost, a, b, err, err_size);
        }
    }
    if (!arguments_equal(r->got_arguments, r->have_arguments))
        return arguments_inequivalent(r->got_arguments, r->have_arguments, r->kind, r->name,
                                      r->vhost, err, err_size);
    return DEFINITIONS_OK;
}

static enum definitions_status check_exchange_arguments(const json_t *arguments,
                                                        enum exchange_type type, char *err,
                                                        size_t err_size)
{
    const char *key;
    json_t *value;
    if (arguments && !json_is_object(arguments)) {
        snprintf(err, err_size, "exchange arguments must be a table");
        return DEFINITIONS_PRECONDITION_FAILED;
    }
    json_object_foreach((json_t *)arguments, key, value)
    {
        if (strcmp(key, "alternate-exchange") == 0) {
            if (!json_is_string(value)) {
                snprintf(err, err_size, "invalid arg 'alternate-exchange': must be a string");
                return DEFINITIONS_PRECONDITION_FAILED;
            }
            continue;
        }
        if (strcmp(key, DEFINITIONS_TOPIC_PER_KEY) == 0) {
            /* kbridge's own: a Kafka topic per routing key (routing.md) */
            if (!json_is_boolean(value)) {
                snprintf(err, err_size, "invalid arg '%s': must be true or false",
                         DEFINITIONS_TOPIC_PER_KEY);
                return DEFINITIONS_PRECONDITION_FAILED;
            }
            if (json_is_true(value) && type != EXCHANGE_DIRECT) {
                snprintf(err, err_size,
                         "invalid arg '%s': only a direct exchange can have a Kafka topic per "
                         "routing key",
                         DEFINITIONS_TOPIC_PER_KEY);
                return DEFINITIONS_PRECONDITION_FAILED;
            }
            continue;
        }
        if (strcmp(key, "x-kbridge-keep-unroutable") == 0) {
            /* kbridge's own: write what reaches no queue anyway (routing.md) */
            if (!json_is_boolean(value)) {
                snprintf(err, err_size,
                         "invalid arg 'x-kbridge-keep-unroutable': must be true or false");
                return DEFINITIONS_PRECONDITION_FAILED;
            }
            continue;
        }
        snprintf(err, err_size, "invalid arg '%s': kbridge does not support this exchange argument",
                 key);
        return DEFINITIONS_PRECONDITION_FAILED;
    }
    return DEFINITIONS_OK;
}

enum definitions_status definitions_check_exchange(const struct definitions *definitions,
                                                   const struct exchange_spec *spec, bool passive,
                                                   bool *exists, char *err, size_t err_size)
{
    *exists = false;
    const struct exchange_definition *current =
        definitions_exchange(definitions, spec->vhost, spec->name);
    if (passive) {
        if (!current) {
            snprintf(err, err_size, "no exchange '%s' in vhost '%s'", spec->name, spec->vhost);
            return DEFINITIONS_NOT_FOUND;
        }
        *exists = true;
        return DEFINITIONS_OK;
    }
    if (!current) {
        if (has_reserved_prefix(spec->name) || spec->name[0] == '\0') {
            snprintf(err, err_size, "exchange name '%s' contains reserved prefix 'amq.*'",
                     spec->name);
            return DEFINITIONS_ACCESS_REFUSED;
        }
        return check_exchange_arguments(spec->arguments, spec->type, err, err_size);
    }
    *exists = true;
    const char *kind = "exchange";
    if (current->spec.type != spec->type) {
        char got[32], have[32];
        snprintf(got, sizeof(got), "'%s'", exchange_type_name(spec->type));
        snprintf(have, sizeof(have), "'%s'", exchange_type_name(current->spec.type));
        return inequivalent("type", kind, spec->name, spec->vhost, got, have, err, err_size);
    }
    static const char *const names[] = {"durable", "auto_delete", "internal"};
    bool got[] = {spec->durable, spec->auto_delete, spec->internal};
    bool have[] = {current->spec.durable, current->spec.auto_delete, current->spec.internal};
    struct redeclare redeclare = {kind, spec->vhost, spec->name,      names,
                                  got,  have,        spec->arguments, current->spec.arguments};
    return redeclare_check(&redeclare, err, err_size);
}

enum definitions_status definitions_check_queue(const struct definitions *definitions,
                                                const struct queue_spec *spec, bool passive,
                                                bool *exists, char *err, size_t err_size)
{
    *exists = false;
    const struct queue_definition *current =
        definitions_queue(definitions, spec->vhost, spec->name);
    if (current && current->spec.exclusive &&
        (!spec->owner || !current->spec.owner || strcmp(spec->owner, current->spec.owner) != 0)) {
        snprintf(err, err_size,
                 "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be "
                 "originally declared on another connection or the exclusive property value "
                 "does not match that of the original declaration.",
                 spec->name, spec->vhost);
        return DEFINITIONS_RESOURCE_LOCKED;
    }
    if (passive) {
        if (!current) {
            snprintf(err, err_size, "no queue '%s' in vhost '%s'", spec->name, spec->vhost);
            return DEFINITIONS_NOT_FOUND;
        }
        *exists = true;
        return DEFINITIONS_OK;
    }
    if (!current) {
        if (has_reserved_prefix(spec->name)) {
            snprintf(err, err_size, "queue name '%s' contains reserved prefix 'amq.*'", spec->name);
            return DEFINITIONS_ACCESS_REFUSED;
        }
        return definitions_check_queue_arguments(spec->arguments, err, err_size);
    }
    *exists = true;
    const char *kind = "queue";
    static const char *const names[] = {"durable", "exclusive", "auto_delete"};
    bool got[] = {spec->durable, spec->exclusive, spec->auto_delete};
    bool have[] = {current->spec.durable, current->spec.exclusive, current->spec.auto_delete};
    struct redeclare redeclare = {kind, spec->vhost, spec->name,      names,
                                  got,  have,        spec->arguments, current->spec.arguments};
    return redeclare_check(&redeclare, err, err_size);
}

enum definitions_status definitions_check_exchange_delete(const struct definitions *definitions,
                                                          const char *vhost, const char *name,
                                                          bool if_unused, char *err,
                                                          size_t err_size)
{
    if (name[0] == '\0') {
        snprintf(err, err_size, "operation not permitted on the default exchange");
        return DEFINITIONS_ACCESS_REFUSED;
    }
    if (is_builtin_name(name)) {
        snprintf(err, err_size, "deletion of system exchange '%s' in vhost '%s' not allowed", name,
                 vhost);
        return DEFINITIONS_ACCESS_REFUSED;
    }
    const struct exchange_entry *e = exchange_entry_find(definitions, vhost, name);
    if (!e || !e->definition) {
        snprintf(err, err_size, "no exchange '%s' in vhost '%s'", name, vhost);
        return DEFINITIONS_NOT_FOUND;
    }
    if (if_unused && e->from.count) {
        snprintf(err, err_size, "exchange '%s' in vhost '%s' in use", name, vhost);
        return DEFINITIONS_PRECONDITION_FAILED;
    }
    return DEFINITIONS_OK;
}

enum definitions_status definitions_check_binding(const struct definitions *definitions,
                                                  const struct binding_spec *spec, char *err,
                                                  size_t err_size)
{
    if (spec->source[0] == '\0' ||
        (spec->destination_kind == BINDING_TO_EXCHANGE && spec->destination[0] == '\0')) {
        snprintf(err, err_size, "operation not permitted on the default exchange");
        return DEFINITIONS_ACCESS_REFUSED;
    }
    if (!definitions_exchange(definitions, spec->vhost, spec->source)) {
        snprintf(err, err_size, "no exchange '%s' in vhost '%s'", spec->source, spec->vhost);
        return DEFINITIONS_NOT_FOUND;
    }
    if (spec->destination_kind == BINDING_TO_EXCHANGE
            ? !definitions_exchange(definitions, spec->vhost, spec->destination)
            : !definitions_queue(definitions, spec->vhost, spec->destination)) {
        snprintf(err, err_size, "no %s '%s' in vhost '%s'",
                 spec->destination_kind == BINDING_TO_EXCHANGE ? "exchange" : "queue",
                 spec->destination, spec->vhost);
        return DEFINITIONS_NOT_FOUND;
    }
    const json_t *match = json_object_get(spec->arguments, "x-match");
    enum headers_match mode;
    if (match && (!json_is_string(match) || headers_match_parse(json_string_value(match), &mode))) {
        snprintf(err, err_size,
                 "invalid x-match field value: expected all, any, all-with-x or any-with-x");
        return DEFINITIONS_PRECONDITION_FAILED;
    }
    return DEFINITIONS_OK;
}

/* One honoured queue argument: its name and what its value must be. */
enum definitions_status definitions_check_queue_arguments(const json_t *arguments, char *err,
                                                          size_t err_size)
{
    struct queue_arguments parsed;
    return queue_arguments_parse(arguments, &parsed, err, err_size) == 0
               ? DEFINITIONS_OK
               : DEFINITIONS_PRECONDITION_FAILED;
}

int definitions_generate_queue_name(char *out, size_t out_size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char random[16];
    if (RAND_bytes(random, sizeof(random)) != 1)
        return -1;
    /* 128 bits as 22 base64url characters (the last carries 2 bits) */
    char text[23];
    uint32_t bits = 0;
    int have = 0;
    size_t at = 0;
    for (size_t i = 0; i < sizeof(random); i++) {
        bits = (bits << 8) | random[i];
        have += 8;
        while (have >= 6) {
            text[at++] = alphabet[(bits >> (have - 6)) & 63];
            have -= 6;
        }
    }
    text[at++] = alphabet[(bits << (6 - have)) & 63];
    text[at] = '\0';
    int n = snprintf(out, out_size, "amq.gen-%s", text);
    return n > 0 && (size_t)n < out_size ? 0 : -1;
}

/* ---- applying ----------------------------------------------------------------- */

int definitions_apply_exchange(struct definitions *definitions, const struct exchange_spec *spec)
{
    if (definitions_vhost_add(definitions, spec->vhost) < 0)
        return -1;
    struct exchange_entry *e = exchange_entry_get(definitions, spec->vhost, spec->name);
    if (!e)
        return -1;
    if (e->definition && e->definition->builtin)
        return 0; /* built-ins are what they are */
    if (exchange_definition_set(e, spec, false) < 0) {
        exchange_entry_release(definitions, e);
        return -1;
    }
    return 0;
}

int definitions_apply_queue(struct definitions *definitions, const struct queue_spec *spec)
{
    if (definitions_vhost_add(definitions, spec->vhost) < 0)
        return -1;
    struct queue_entry *q = queue_entry_get(definitions, spec->vhost, spec->name);
    if (!q)
        return -1;
    struct queue_definition *d = calloc(1, sizeof(*d));
    if (!d)
        goto fail;
    d->spec = *spec;
    d->spec.vhost = strdup(spec->vhost);
    d->spec.name = strdup(spec->name);
    d->spec.owner = spec->owner ? strdup(spec->owner) : NULL;
    d->spec.arguments = NULL;
    if (!d->spec.vhost || !d->spec.name || (spec->owner && !d->spec.owner) ||
        arguments_copy(spec->arguments, &d->spec.arguments) < 0)
        goto fail;
    if (q->definition) /* a redeclare keeps the last purge */
        d->purge_offsets = json_incref(q->definition->purge_offsets);
    queue_definition_free(q->definition);
    q->definition = d;
    return 0;
fail:
    queue_definition_free(d);
    queue_entry_release(definitions, q);
    return -1;
}

/* Fill b->match_arguments from b->spec.arguments. 0, or -1 out of memory. */
static int binding_match_arguments_make(struct binding_node *b)
{
    size_t count = json_object_size(b->spec.arguments);
    if (count == 0)
        return 0;
    b->match_arguments = calloc(count, sizeof(*b->match_arguments));
    b->match_texts = calloc(count, sizeof(*b->match_texts));
    if (!b->match_arguments || !b->match_texts)
        return -1;
    const char *key;
    json_t *value;
    json_object_foreach(b->spec.arguments, key, value)
    {
        struct binding_header *argument = &b->match_arguments[b->match_argument_count];
        argument->name = key; /* owned by spec.arguments, which lives as long */
        if (json_is_string(value)) {
            argument->value = json_string_value(value);
            argument->value_len = json_string_length(value);
        } else if (!json_is_null(value)) {
            char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            if (!text)
                return -1;
            b->match_texts[b->match_argument_count] = text;
            argument->value = text;
            argument->value_len = strlen(text);
        }
        b->match_argument_count++;
    }
    return 0;
}

/* The binding in the model with the same identity as `spec` (RabbitMQ's:
 * source, destination, key and arguments), or NULL. */
static struct binding_node *binding_find(const struct definitions *definitions,
                                         const struct binding_spec *spec)
{
    const struct exchange_entry *source =
        exchange_entry_find(definitions, spec->vhost, spec->source);
    if (!source)
        return NULL;
    for (size_t i = 0; i < source->from.count; i++) {
        struct binding_node *b = source->from.items[i];
        if (b->spec.destination_kind == spec->destination_kind &&
            strcmp(b->spec.destination, spec->destination) == 0 &&
            strcmp(b->spec.routing_key, spec->routing_key) == 0 &&
            arguments_equal(b->spec.arguments, spec->arguments))
            return b;
    }
    return NULL;
}

int definitions_apply_binding(struct definitions *definitions, const struct binding_spec *spec)
{
    if (binding_find(definitions, spec))
        return 0;
    if (definitions_vhost_add(definitions, spec->vhost) < 0)
        return -1;
    struct binding_node *b = calloc(1, sizeof(*b));
    if (!b)
        return -1;
    b->spec = *spec;
    b->spec.vhost = strdup(spec->vhost);
    b->spec.source = strdup(spec->source);
    b->spec.destination = strdup(spec->destination);
    b->spec.routing_key = strdup(spec->routing_key);
    b->spec.arguments = NULL;
    b->headers_mode = HEADERS_MATCH_ALL;
    const json_t *match = json_object_get(spec->arguments, "x-match");
    if (json_is_string(match))
        (void)headers_match_parse(json_string_value(match), &b->headers_mode);
    if (!b->spec.vhost || !b->spec.source || !b->spec.destination || !b->spec.routing_key ||
        arguments_copy(spec->arguments, &b->spec.arguments) < 0 ||
        binding_match_arguments_make(b) < 0)
        goto fail;
    b->source = exchange_entry_get(definitions, spec->vhost, spec->source);
    if (!b->source)
        goto fail;
    if (spec->destination_kind == BINDING_TO_EXCHANGE)
        b->to_exchange = exchange_entry_get(definitions, spec->vhost, spec->destination);
    else
        b->to_queue = queue_entry_get(definitions, spec->vhost, spec->destination);
    if (!b->to_exchange && !b->to_queue)
        goto fail_entries;
    if (binding_list_add(&b->source->from, b) < 0)
        goto fail_entries;
    if (binding_list_add(b->to_exchange ? &b->to_exchange->to : &b->to_queue->to, b) < 0) {
        binding_list_remove(&b->source->from, b);
        goto fail_entries;
    }
    return 0;
fail_entries:
    if (b->to_exchange)
        exchange_entry_release(definitions, b->to_exchange);
    if (b->to_queue)
        queue_entry_release(definitions, b->to_queue);
    exchange_entry_release(definitions, b->source);
fail:
    binding_free(b);
    return -1;
}

static void binding_remove(struct definitions *definitions, struct binding_node *b)
{
    /* Pinned while in use: removing an auto-delete source below may remove
     * other bindings of the same entries. */
    struct exchange_entry *source = b->source;
    struct exchange_entry *to_exchange = b->to_exchange;
    struct queue_entry *to_queue = b->to_queue;
    source->pins++;
    if (to_exchange)
        to_exchange->pins++;
    if (to_queue)
        to_queue->pins++;
    binding_unlink_and_free(b);
    /* RabbitMQ: an auto-delete exchange goes when its last binding does */
    if (source->definition && source->definition->spec.auto_delete &&
        !source->definition->builtin && !source->from.count)
        definitions_remove_exchange(definitions, source->base.vhost, source->base.name);
    source->pins--;
    if (to_exchange)
        to_exchange->pins--;
    if (to_queue)
        to_queue->pins--;
    if (to_exchange && to_exchange != source)
        exchange_entry_release(definitions, to_exchange);
    if (to_queue)
        queue_entry_release(definitions, to_queue);
    exchange_entry_release(definitions, source);
}

void definitions_remove_binding(struct definitions *definitions, const struct binding_spec *spec)
{
    struct binding_node *b = binding_find(definitions, spec);
    if (b)
        binding_remove(definitions, b);
}

void definitions_remove_exchange(struct definitions *definitions, const char *vhost,
                                 const char *name)
{
    struct exchange_entry *e = exchange_entry_find(definitions, vhost, name);
    if (!e || (e->definition && e->definition->builtin))
        return;
    e->pins++;
    exchange_definition_free(e->definition);
    e->definition = NULL;
    /* bindings from it and to it go with it (RabbitMQ deletes them too) */
    while (e->from.count)
        binding_remove(definitions, e->from.items[0]);
    while (e->to.count)
        binding_remove(definitions, e->to.items[0]);
    e->pins--;
    exchange_entry_release(definitions, e);
}

void definitions_remove_queue(struct definitions *definitions, const char *vhost, const char *name)
{
    struct queue_entry *q = queue_entry_find(definitions, vhost, name);
    if (!q)
        return;
    q->pins++;
    queue_definition_free(q->definition);
    q->definition = NULL;
    while (q->to.count)
        binding_remove(definitions, q->to.items[0]);
    q->pins--;
    queue_entry_release(definitions, q);
}

void definitions_apply_purge(struct definitions *definitions, const char *vhost, const char *name,
                             json_t *offsets)
{
    struct queue_entry *q = queue_entry_find(definitions, vhost, name);
    if (!q || !q->definition)
        return;
    json_decref(q->definition->purge_offsets);
    q->definition->purge_offsets = json_incref(offsets);
}

/* ---- lookups --------------------------------------------------------------------- */

const struct exchange_definition *definitions_exchange(const struct definitions *definitions,
                                                       const char *vhost, const char *name)
{
    const struct exchange_entry *e = exchange_entry_find(definitions, vhost, name);
    return e ? e->definition : NULL;
}

const struct queue_definition *definitions_queue(const struct definitions *definitions,
                                                 const char *vhost, const char *name)
{
    const struct queue_entry *q = queue_entry_find(definitions, vhost, name);
    return q ? q->definition : NULL;
}

size_t definitions_exchange_binding_count(const struct definitions *definitions, const char *vhost,
                                          const char *name)
{
    const struct exchange_entry *e = exchange_entry_find(definitions, vhost, name);
    return e ? e->from.count : 0;
}

void definitions_bindings_from(const struct definitions *definitions, const char *vhost,
                               const char *exchange, definitions_binding_fn *each, void *opaque)
{
    const struct exchange_entry *e = exchange_entry_find(definitions, vhost, exchange);
    for (size_t i = 0; e && i < e->from.count; i++)
        if (!each(&e->from.items[i]->spec, opaque))
            return;
}

static void visit_begin(struct definitions *mutable);

/* The bindings into exchange `e`, and into their sources, backwards; false
 * when `each` stopped. */
static bool bindings_into_exchange(struct definitions *definitions, struct exchange_entry *e,
                                   definitions_binding_fn *each, void *opaque)
{
    if (e->visit == definitions->visit)
        return true;
    e->visit = definitions->visit;
    for (size_t i = 0; i < e->to.count; i++) {
        struct binding_node *b = e->to.items[i];
        if (!each(&b->spec, opaque) ||
            !bindings_into_exchange(definitions, b->source, each, opaque))
            return false;
    }
    return true;
}

void definitions_bindings_into(const struct definitions *definitions, const char *vhost,
                               const char *queue, definitions_binding_fn *each, void *opaque)
{
    struct queue_entry *q = queue_entry_find(definitions, vhost, queue);
    if (!q)
        return;
    struct definitions *mutable = (struct definitions *)definitions;
    visit_begin(mutable);
    for (size_t i = 0; i < q->to.count; i++) {
        struct binding_node *b = q->to.items[i];
        if (!each(&b->spec, opaque) || !bindings_into_exchange(mutable, b->source, each, opaque))
            return;
    }
}

void definitions_bindings_to(const struct definitions *definitions, const char *vhost,
                             enum binding_destination kind, const char *name,
                             definitions_binding_fn *each, void *opaque)
{
    const struct binding_list *to = NULL;
    if (kind == BINDING_TO_QUEUE) {
        const struct queue_entry *q = queue_entry_find(definitions, vhost, name);
        to = q ? &q->to : NULL;
    } else {
        const struct exchange_entry *e = exchange_entry_find(definitions, vhost, name);
        to = e ? &e->to : NULL;
    }
    for (size_t i = 0; to && i < to->count; i++)
        if (!each(&to->items[i]->spec, opaque))
            return;
}

void definitions_each_vhost(const struct definitions *definitions, definitions_vhost_fn *each,
                            void *opaque)
{
    for (const struct vhost_entry *v = definitions->vhosts; v; v = v->next)
        if (!each(v->name, opaque))
            return;
}

void definitions_each_exchange(const struct definitions *definitions, definitions_exchange_fn *each,
                               void *opaque)
{
    const struct u64_map *map = &definitions->exchanges;
    for (size_t i = 0; map->slots && i <= map->mask; i++) {
        if (!map->slots[i].key)
            continue;
        for (const struct exchange_entry *e = map->slots[i].value; e;
             e = (const struct exchange_entry *)e->base.key_next)
            if (e->definition && !each(e->definition, opaque))
                return;
    }
}

void definitions_each_queue(const struct definitions *definitions,
                            bool (*each)(const struct queue_definition *queue, void *opaque),
                            void *opaque)
{
    const struct u64_map *map = &definitions->queues;
    for (size_t i = 0; map->slots && i <= map->mask; i++) {
        if (!map->slots[i].key)
            continue;
        for (const struct queue_entry *q = map->slots[i].value; q;
             q = (const struct queue_entry *)q->base.key_next)
            if (q->definition && !each(q->definition, opaque))
                return;
    }
}

void definitions_each_binding(const struct definitions *definitions, definitions_binding_fn *each,
                              void *opaque)
{
    const struct u64_map *map = &definitions->exchanges;
    for (size_t i = 0; map->slots && i <= map->mask; i++) {
        if (!map->slots[i].key)
            continue;
        for (const struct exchange_entry *e = map->slots[i].value; e;
             e = (const struct exchange_entry *)e->base.key_next)
            for (size_t b = 0; b < e->from.count; b++)
                if (!each(&e->from.items[b]->spec, opaque))
                    return;
    }
}

/* ---- routing --------------------------------------------------------------------- */

/* Does the message match binding `b` of an exchange of `type`? */
static bool binding_matches(const struct binding_node *b, enum exchange_type type,
                            const char *routing_key, const struct binding_header *headers,
                            size_t header_count)
{
    switch (type) {
    case EXCHANGE_FANOUT: return true;
    case EXCHANGE_DIRECT: return strcmp(b->spec.routing_key, routing_key) == 0;
    case EXCHANGE_TOPIC:
        return binding_topic_match(b->spec.routing_key, strlen(b->spec.routing_key), routing_key,
                                   strlen(routing_key));
    case EXCHANGE_HEADERS:
        return binding_headers_match(b->headers_mode, b->match_arguments, b->match_argument_count,
                                     headers, header_count);
    }
    return false;
}

struct route_pass {
    struct definitions *definitions;
    const char *routing_key;
    const struct binding_header *headers;
    size_t header_count;
    definitions_queue_fn *each;
    void *opaque;
    int reached;
    bool stopped;
};

static void route_from(struct route_pass *pass, struct exchange_entry *e)
{
    if (!e->definition || e->visit == pass->definitions->visit || pass->stopped)
        return;
    e->visit = pass->definitions->visit;
    enum exchange_type type = e->definition->spec.type;
    for (size_t i = 0; i < e->from.count && !pass->stopped; i++) {
        struct binding_node *b = e->from.items[i];
        if (!binding_matches(b, type, pass->routing_key, pass->headers, pass->header_count))
            continue;
        if (b->to_exchange) {
            route_from(pass, b->to_exchange);
        } else if (b->to_queue->definition && b->to_queue->visit != pass->definitions->visit) {
            b->to_queue->visit = pass->definitions->visit;
            pass->reached++;
            if (pass->each && !pass->each(b->to_queue->definition, pass->opaque))
                pass->stopped = true;
        }
    }
}

/* Start a routing pass: a fresh visited mark. The marks are bookkeeping, not
 * part of the view, so const lookups may set them. */
static void visit_begin(struct definitions *mutable)
{
    if (++mutable->visit == 0) { /* wrapped: no mark may look current */
        for (size_t i = 0; mutable->exchanges.slots && i <= mutable->exchanges.mask; i++)
            for (struct exchange_entry *e =
                     mutable->exchanges.slots[i].key ? mutable->exchanges.slots[i].value : NULL;
                 e; e = (struct exchange_entry *)e->base.key_next)
                e->visit = 0;
        for (size_t i = 0; mutable->queues.slots && i <= mutable->queues.mask; i++)
            for (struct queue_entry *q =
                     mutable->queues.slots[i].key ? mutable->queues.slots[i].value : NULL;
                 q; q = (struct queue_entry *)q->base.key_next)
                q->visit = 0;
        mutable->visit = 1;
    }
}

int definitions_route(const struct definitions *definitions, const char *vhost,
                      const char *exchange, const char *routing_key,
                      const struct binding_header *headers, size_t header_count,
                      definitions_queue_fn *each, void *opaque)
{
    struct definitions *mutable = (struct definitions *)definitions;
    visit_begin(mutable);
    struct route_pass pass = {mutable, routing_key, headers, header_count, each, opaque, 0, false};
    if (exchange[0] == '\0') {
        /* the default exchange: every queue is bound to it by its own name */
        struct queue_entry *q = queue_entry_find(definitions, vhost, routing_key);
        if (q && q->definition) {
            pass.reached = 1;
            if (each)
                each(q->definition, opaque);
        }
        return pass.reached;
    }
    struct exchange_entry *e = exchange_entry_find(definitions, vhost, exchange);
    if (e)
        route_from(&pass, e);
    return pass.reached;
}

/* Does a message published to exchange `from` reach exchange `to`, through
 * exchange-to-exchange bindings followed backwards from `to`? */
static bool exchange_reaches(struct definitions *definitions, struct exchange_entry *from,
                             struct exchange_entry *to, const char *routing_key,
                             const struct binding_header *headers, size_t header_count)
{
    if (to == from)
        return true;
    if (to->visit == definitions->visit)
        return false;
    to->visit = definitions->visit;
    for (size_t i = 0; i < to->to.count; i++) {
        struct binding_node *b = to->to.items[i];
        if (b->source->definition &&
            binding_matches(b, b->source->definition->spec.type, routing_key, headers,
                            header_count) &&
            exchange_reaches(definitions, from, b->source, routing_key, headers, header_count))
            return true;
    }
    return false;
}

bool definitions_reaches(const struct definitions *definitions, const char *vhost,
                         const char *exchange, const char *queue, const char *routing_key,
                         const struct binding_header *headers, size_t header_count)
{
    struct queue_entry *q = queue_entry_find(definitions, vhost, queue);
    if (!q || !q->definition)
        return false;
    if (exchange[0] == '\0')
        return strcmp(routing_key, queue) == 0;
    struct exchange_entry *from = exchange_entry_find(definitions, vhost, exchange);
    if (!from || !from->definition)
        return false;
    /* Backwards from the queue: its bindings are few where an exchange's may be many. */
    struct definitions *mutable = (struct definitions *)definitions;
    visit_begin(mutable);
    for (size_t i = 0; i < q->to.count; i++) {
        struct binding_node *b = q->to.items[i];
        if (b->source->definition &&
            binding_matches(b, b->source->definition->spec.type, routing_key, headers,
                            header_count) &&
            exchange_reaches(mutable, from, b->source, routing_key, headers, header_count))
            return true;
    }
    return false;
}
