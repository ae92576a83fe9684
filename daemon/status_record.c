/* SPDX-License-Identifier: Apache-2.0 */
/* status_record.c -- status topic records and the per-node view
 * (status_record.h). The view is a list sorted by node name: a cluster has
 * a handful of nodes, and the admin API lists them in a stable order. */
#include "status_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_NODE_MAX 255 /* longest node id a record may carry */

static const char *const status_message_names[3] = {"publish", "deliver", "ack"};

json_t *status_record_new(const char *node, const char *version, int64_t started_at_ms,
                          int64_t updated_at_ms, uint64_t interval_ms)
{
    return json_pack("{s:i,s:s,s:s,s:I,s:I,s:I,s:[],s:[],s:I,s:I,s:b,s:I,s:[],s:{},s:{}}", "v",
                     STATUS_RECORD_VERSION, "node", node, "version", version, "started_at",
                     (json_int_t)started_at_ms, "updated_at", (json_int_t)updated_at_ms,
                     "interval_ms", (json_int_t)interval_ms, "listeners", "connections",
                     "connections_total", (json_int_t)0, "connections_listed", (json_int_t)0,
                     "connections_truncated", 0, "consumers_total", (json_int_t)0, "queues",
                     "totals", "rates");
}

static int status_add_integer(json_t *object, const char *name, json_int_t add)
{
    json_int_t now = json_integer_value(json_object_get(object, name));
    return json_object_set_new(object, name, json_integer(now + add));
}

int status_record_add_connection(json_t *record, json_t *connection, size_t max_listed)
{
    if (!connection)
        return -1;
    json_int_t subscriptions = json_integer_value(
        json_object_get(json_object_get(connection, "kbridge"), "subscriptions"));
    if (status_add_integer(record, "connections_total", 1) < 0 ||
        status_add_integer(record, "consumers_total", subscriptions) < 0) {
        json_decref(connection);
        return -1;
    }
    json_t *list = json_object_get(record, "connections");
    if (json_array_size(list) >= max_listed) {
        json_decref(connection);
        return json_object_set_new(record, "connections_truncated", json_true());
    }
    if (json_array_append_new(list, connection) < 0)
        return -1;
    return status_add_integer(record, "connections_listed", 1);
}

int status_record_add_queue(json_t *record, const char *vhost, const char *name, size_t consumers,
                            size_t in_flight, bool exclusive)
{
    json_t *queue = json_pack("{s:s,s:I,s:I,s:b}", "name", name, "consumers", (json_int_t)consumers,
                              "in_flight", (json_int_t)in_flight, "exclusive", exclusive);
    if (queue && vhost && json_object_set_new(queue, "vhost", json_string(vhost)) < 0) {
        json_decref(queue);
        return -1;
    }
    return json_array_append_new(json_object_get(record, "queues"), queue);
}

void status_record_queue(const json_t *record, const char *vhost, const char *name,
                         size_t *consumers, bool *exclusive)
{
    size_t index;
    const json_t *queue;
    json_array_foreach(json_object_get(record, "queues"), index, queue)
    {
        const char *its_name = json_string_value(json_object_get(queue, "name"));
        const json_t *its_vhost = json_object_get(queue, "vhost");
        const char *in = its_vhost ? json_string_value(its_vhost) : "/";
        if (!its_name || !in || strcmp(its_name, name) != 0 || strcmp(in, vhost) != 0)
            continue;
        json_int_t count = json_integer_value(json_object_get(queue, "consumers"));
        if (count > 0)
            *consumers += (size_t)count;
        if (json_is_true(json_object_get(queue, "exclusive")))
            *exclusive = true;
    }
}

int status_record_set_messages(json_t *record, const uint64_t totals[3], const double rates[3])
{
    json_t *t = json_object_get(record, "totals"), *r = json_object_get(record, "rates");
    for (size_t i = 0; i < 3; i++)
        if (json_object_set_new(t, status_message_names[i], json_integer((json_int_t)totals[i])) <
                0 ||
            json_object_set_new(r, status_message_names[i], json_real(rates[i])) < 0)
            return -1;
    return 0;
}

double status_rate(uint64_t before, uint64_t after, int64_t elapsed_ms)
{
    if (elapsed_ms <= 0 || after < before)
        return 0.0;
    return (double)(after - before) * 1000.0 / (double)elapsed_ms;
}

char *status_record_encode(const json_t *record) { return json_dumps(record, JSON_COMPACT); }

/* Is member `name` of `object` of type `type`? */
static bool status_has(const json_t *object, const char *name, json_type type)
{
    const json_t *member = json_object_get(object, name);
    return member && json_typeof(member) == type;
}

json_t *status_record_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                             char *err, size_t err_size)
{
    if (!key || key_len == 0 || key_len > STATUS_NODE_MAX) {
        snprintf(err, err_size, "a record without a node id as its key");
        return NULL;
    }
    if (!value) {
        snprintf(err, err_size, "a tombstone has no status");
        return NULL;
    }
    json_error_t error;
    json_t *record = json_loadb(value, value_len, JSON_REJECT_DUPLICATES, &error);
    if (!record) {
        snprintf(err, err_size, "not JSON: %s at byte %d", error.text, error.position);
        return NULL;
    }
    static const struct {
        const char *name;
        json_type type;
    } required[] = {
        {"v", JSON_INTEGER},          {"node", JSON_STRING},
        {"version", JSON_STRING},     {"started_at", JSON_INTEGER},
        {"updated_at", JSON_INTEGER}, {"listeners", JSON_ARRAY},
        {"connections", JSON_ARRAY},  {"connections_total", JSON_INTEGER},
        {"queues", JSON_ARRAY},
    };
    const char *why = NULL;
    if (!json_is_object(record))
        why = "not a JSON object";
    for (size_t i = 0; !why && i < sizeof(required) / sizeof(required[0]); i++)
        if (!status_has(record, required[i].name, required[i].type))
            why = required[i].name;
    if (why) {
        snprintf(err, err_size, "%s%s", json_is_object(record) ? "missing or mistyped: " : "", why);
        json_decref(record);
        return NULL;
    }
    if (json_integer_value(json_object_get(record, "v")) < STATUS_RECORD_VERSION) {
        snprintf(err, err_size, "unknown record version %lld",
                 (long long)json_integer_value(json_object_get(record, "v")));
        json_decref(record);
        return NULL;
    }
    const char *node = json_string_value(json_object_get(record, "node"));
    if (strlen(node) != key_len || memcmp(node, key, key_len) != 0) {
        snprintf(err, err_size, "node '%.255s' is not the record's key", node);
        json_decref(record);
        return NULL;
    }
    return record;
}

/* ---- the view ----------------------------------------------------------------- */

struct status_entry {
    struct status_entry *next; /* sorted by node */
    char *node;
    json_t *record;
    int64_t heard_ms;
};

struct status_view {
    struct status_entry *entries;
    size_t count;
};

struct status_view *status_view_new(void) { return calloc(1, sizeof(struct status_view)); }

static void status_entry_free(struct status_entry *entry)
{
    json_decref(entry->record);
    free(entry->node);
    free(entry);
}

void status_view_free(struct status_view *view)
{
    if (!view)
        return;
    while (view->entries) {
        struct status_entry *next = view->entries->next;
        status_entry_free(view->entries);
        view->entries = next;
    }
    free(view);
}

/* Where node `key` is or would be inserted. */
static struct status_entry **status_view_at(struct status_view *view, const char *key,
                                            size_t key_len, bool *found)
{
    struct status_entry **at = &view->entries;
    *found = false;
    for (; *at; at = &(*at)->next) {
        size_t len = strlen((*at)->node);
        int cmp = memcmp((*at)->node, key, len < key_len ? len : key_len);
        if (cmp == 0)
            cmp = len < key_len ? -1 : len > key_len ? 1 : 0;
        if (cmp == 0)
            *found = true;
        if (cmp >= 0)
            break;
    }
    return at;
}

int status_view_apply(struct status_view *view, const void *key, size_t key_len, const void *value,
                      size_t value_len, int64_t now_ms, bool backlog, char *err, size_t err_size)
{
    if (!key || key_len == 0) {
        snprintf(err, err_size, "a record without a node id as its key");
        return -1;
    }
    bool found;
    struct status_entry **at = status_view_at(view, key, key_len, &found);
    if (!value) {
        if (found) {
            struct status_entry *gone = *at;
            *at = gone->next;
            status_entry_free(gone);
            view->count--;
        }
        return 1;
    }
    json_t *record = status_record_decode(key, key_len, value, value_len, err, err_size);
    if (!record)
        return -1;
    int64_t heard_ms = now_ms;
    if (backlog) {
        int64_t updated = json_integer_value(json_object_get(record, "updated_at"));
        heard_ms = updated < now_ms ? updated : now_ms;
    }
    if (found) {
        json_decref((*at)->record);
        (*at)->record = record;
        (*at)->heard_ms = heard_ms;
        return 0;
    }
    struct status_entry *entry = calloc(1, sizeof(*entry));
    char *node = entry ? strndup(key, key_len) : NULL;
    if (!node) {
        free(entry);
        json_decref(record);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    *entry =
        (struct status_entry){.next = *at, .node = node, .record = record, .heard_ms = heard_ms};
    *at = entry;
    view->count++;
    return 0;
}

size_t status_view_expire(struct status_view *view, int64_t now_ms, uint64_t expiry_ms)
{
    size_t gone = 0;
    for (struct status_entry **at = &view->entries; *at;) {
        if (now_ms - (*at)->heard_ms > (int64_t)(2 * expiry_ms)) {
            struct status_entry *old = *at;
            *at = old->next;
            status_entry_free(old);
            view->count--;
            gone++;
        } else {
            at = &(*at)->next;
        }
    }
    return gone;
}

void status_view_each(const struct status_view *view, int64_t now_ms, uint64_t expiry_ms,
                      status_node_fn *fn, void *opaque)
{
    for (const struct status_entry *e = view->entries; e; e = e->next) {
        int64_t age = now_ms - e->heard_ms;
        if (!fn(opaque, e->record, age > (int64_t)expiry_ms, age < 0 ? 0 : age))
            return;
    }
}

size_t status_view_count(const struct status_view *view) { return view->count; }

void status_view_queue(const struct status_view *view, int64_t now_ms, uint64_t expiry_ms,
                       const char *vhost, const char *name, size_t *consumers, bool *exclusive)
{
    *consumers = 0;
    *exclusive = false;
    for (const struct status_entry *e = view->entries; e; e = e->next)
        if (now_ms - e->heard_ms <= (int64_t)expiry_ms) /* stale nodes do not hold queues */
            status_record_queue(e->record, vhost, name, consumers, exclusive);
}
