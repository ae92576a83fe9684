/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_export.c -- the view as a RabbitMQ definitions export
 * (definitions_export.h). Each entity is written by the same encoder as its
 * record in the definitions topic (definitions_record.c), so the export and
 * the topic never disagree on a field. */
#include "definitions_export.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "definitions.h"
#include "definitions_record.h"
#include "version.h"

/* One entry of an export array and the record key it sorts by. */
struct export_entry {
    char *key;
    json_t *value;
};

struct export_list {
    struct export_entry *items;
    size_t count, capacity;
    bool failed;
};

/* Take a record's key and JSON value (both malloc'd, consumed). */
static void export_add(struct export_list *list, char *key, char *value)
{
    json_t *json = value ? json_loads(value, 0, NULL) : NULL;
    free(value);
    if (!key || !json) {
        free(key);
        json_decref(json);
        list->failed = true;
        return;
    }
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        struct export_entry *items = realloc(list->items, capacity * sizeof(*items));
        if (!items) {
            free(key);
            json_decref(json);
            list->failed = true;
            return;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = (struct export_entry){key, json};
}

static int export_compare(const void *a, const void *b)
{
    return strcmp(((const struct export_entry *)a)->key, ((const struct export_entry *)b)->key);
}

/* Sort by key into a JSON array (the list is emptied). NULL out of memory. */
static json_t *export_array(struct export_list *list)
{
    json_t *array = json_array();
    if (list->count)
        qsort(list->items, list->count, sizeof(*list->items), export_compare);
    for (size_t i = 0; i < list->count; i++) {
        if (array && json_array_append_new(array, list->items[i].value) < 0) {
            json_decref(array);
            array = NULL;
        } else if (!array) {
            json_decref(list->items[i].value);
        }
        free(list->items[i].key);
    }
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
    return array;
}

static bool export_exchange(const struct exchange_definition *exchange, void *opaque)
{
    if (exchange->builtin) /* left out, as RabbitMQ does */
        return true;
    char *key = NULL, *value = NULL;
    if (definitions_record_exchange(&exchange->spec, &key, &value) < 0)
        ((struct export_list *)opaque)->failed = true;
    export_add(opaque, key, value);
    return true;
}

static bool export_queue(const struct queue_definition *queue, void *opaque)
{
    char *key = NULL, *value = NULL;
    if (definitions_record_queue(&queue->spec, &key, &value) < 0)
        ((struct export_list *)opaque)->failed = true;
    export_add(opaque, key, value);
    return true;
}

static bool export_binding(const struct binding_spec *binding, void *opaque)
{
    char *key = NULL, *value = NULL;
    if (definitions_record_binding(binding, &key, &value) < 0)
        ((struct export_list *)opaque)->failed = true;
    export_add(opaque, key, value);
    return true;
}

static bool export_vhost(const char *vhost, void *opaque)
{
    char *key = strdup(vhost);
    json_t *entry = json_pack("{s:s}", "name", vhost);
    char *value = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    export_add(opaque, key, value);
    return true;
}

char *definitions_export_json(const struct definitions *view, bool ready)
{
    struct export_list lists[4] = {{0}};
    definitions_each_vhost(view, export_vhost, &lists[0]);
    definitions_each_exchange(view, export_exchange, &lists[1]);
    definitions_each_queue(view, export_queue, &lists[2]);
    definitions_each_binding(view, export_binding, &lists[3]);
    static const char *const names[] = {"vhosts", "exchanges", "queues", "bindings"};
    json_t *root = json_pack("{s:s,s:b}", "kbridge_version", KBRIDGE_VERSION, "ready", ready);
    bool failed = !root;
    for (size_t i = 0; i < 4; i++) {
        failed = failed || lists[i].failed;
        json_t *array = export_array(&lists[i]);
        if (!array || !root || json_object_set_new(root, names[i], array) < 0)
            failed = true;
    }
    char *text = failed ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}
