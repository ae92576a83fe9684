/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_record.c -- encoding and decoding the definitions topic's
 * records and reading a RabbitMQ definitions export (definitions_record.h,
 * architecture §11). JSON through jansson; the binding key's argument
 * digest through OpenSSL's SHA-256. */
#include "definitions_record.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_COMPONENTS_MAX 7 /* binding/VHOST/SOURCE/q|e/DESTINATION/KEY/ARGS */
#define DIGEST_HEX 16        /* hex digits of SHA-256 kept in a binding key */

/* ---- keys --------------------------------------------------------------------- */

/* A growable string. */
struct text {
    char *data;
    size_t len, capacity;
    bool failed;
};

static void text_append(struct text *t, const char *bytes, size_t len)
{
    if (t->failed)
        return;
    if (t->len + len + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 64;
        while (capacity < t->len + len + 1)
            capacity *= 2;
        char *data = realloc(t->data, capacity);
        if (!data) {
            t->failed = true;
            return;
        }
        t->data = data;
        t->capacity = capacity;
    }
    memcpy(t->data + t->len, bytes, len);
    t->len += len;
    t->data[t->len] = '\0';
}

/* Append '/' (unless first) and `component` with '%' and '/' percent-encoded. */
static void key_component(struct text *t, const char *component)
{
    if (t->len)
        text_append(t, "/", 1);
    for (const char *c = component; *c; c++) {
        if (*c == '%')
            text_append(t, "%25", 3);
        else if (*c == '/')
            text_append(t, "%2F", 3);
        else
            text_append(t, c, 1);
    }
}

/* Split `key` on '/' into at most `max` percent-decoded components, each
 * malloc'd into parts. Returns the count, -1 when malformed or too many,
 * -2 out of memory. */
static int key_split(const char *key, size_t key_len, char **parts, int max)
{
    int count = 0;
    size_t at = 0;
    while (at <= key_len) {
        if (count == max)
            goto malformed;
        const char *slash = memchr(key + at, '/', key_len - at);
        size_t end = slash ? (size_t)(slash - key) : key_len;
        char *part = malloc(end - at + 1);
        if (!part) {
            for (int i = 0; i < count; i++)
                free(parts[i]);
            return -2;
        }
        size_t n = 0;
        for (size_t i = at; i < end; i++) {
            if (key[i] == '%') {
                if (i + 2 < end && key[i + 1] == '2' && (key[i + 2] == '5' || key[i + 2] == 'F')) {
                    part[n++] = key[i + 2] == '5' ? '%' : '/';
                    i += 2;
                    continue;
                }
                free(part);
                goto malformed;
            }
            if (key[i] == '\0') {
                free(part);
                goto malformed;
            }
            part[n++] = key[i];
        }
        part[n] = '\0';
        parts[count++] = part;
        if (!slash)
            break;
        at = end + 1;
    }
    return count;
malformed:
    for (int i = 0; i < count; i++)
        free(parts[i]);
    return -1;
}

/* The digest of a binding's arguments: 16 hex digits of SHA-256 over their
 * canonical JSON (sorted keys, compact), or "-" without arguments. */
static int arguments_digest(const json_t *arguments, char out[DIGEST_HEX + 1])
{
    if (!arguments || json_object_size(arguments) == 0) {
        strcpy(out, "-");
        return 0;
    }
    char *canonical = json_dumps(arguments, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    if (!canonical)
        return -1;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int ok = EVP_Digest(canonical, strlen(canonical), digest, &digest_len, EVP_sha256(), NULL);
    free(canonical);
    if (ok != 1 || digest_len < DIGEST_HEX / 2)
        return -1;
    for (int i = 0; i < DIGEST_HEX / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

static char *binding_key(const struct binding_spec *spec)
{
    char digest[DIGEST_HEX + 1];
    if (arguments_digest(spec->arguments, digest) < 0)
        return NULL;
    struct text t = {0};
    key_component(&t, "binding");
    key_component(&t, spec->vhost);
    key_component(&t, spec->source);
    key_component(&t, spec->destination_kind == BINDING_TO_EXCHANGE ? "e" : "q");
    key_component(&t, spec->destination);
    key_component(&t, spec->routing_key);
    key_component(&t, digest);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

static char *entity_key(const char *kind, const char *vhost, const char *name)
{
    struct text t = {0};
    key_component(&t, kind);
    key_component(&t, vhost);
    key_component(&t, name);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

char *definitions_record_exchange_key(const char *vhost, const char *name)
{
    return entity_key("exchange", vhost, name);
}

char *definitions_record_queue_key(const char *vhost, const char *name)
{
    return entity_key("queue", vhost, name);
}

char *definitions_record_binding_key(const struct binding_spec *spec) { return binding_key(spec); }

int definitions_record_key_parse(const char *key, size_t key_len,
                                 struct definitions_record_key *out)
{
    memset(out, 0, sizeof(*out));
    int count = key_split(key, key_len, out->parts, KEY_COMPONENTS_MAX);
    if (count < 0)
        return count;
    out->count = count;
    char **parts = out->parts;
    if (count == 3 && strcmp(parts[0], "exchange") == 0)
        out->kind = DEFINITIONS_RECORD_EXCHANGE;
    else if (count == 3 && strcmp(parts[0], "queue") == 0)
        out->kind = DEFINITIONS_RECORD_QUEUE;
    else if (count == 3 && strcmp(parts[0], "purge") == 0)
        out->kind = DEFINITIONS_RECORD_PURGE;
    else if (count == 7 && strcmp(parts[0], "binding") == 0 &&
             (strcmp(parts[3], "q") == 0 || strcmp(parts[3], "e") == 0)) {
        out->kind = DEFINITIONS_RECORD_BINDING;
        out->destination_kind = parts[3][0] == 'e' ? BINDING_TO_EXCHANGE : BINDING_TO_QUEUE;
        out->destination = parts[4];
        out->routing_key = parts[5];
    } else {
        definitions_record_key_free(out);
        return -1;
    }
    out->vhost = parts[1];
    out->name = parts[2];
    return 0;
}

void definitions_record_key_free(struct definitions_record_key *key)
{
    for (int i = 0; i < key->count; i++)
        free(key->parts[i]);
    memset(key, 0, sizeof(*key));
}

/* ---- values: specs to JSON ------------------------------------------------------- */

static json_t *arguments_or_empty(const json_t *arguments)
{
    return arguments ? json_deep_copy(arguments) : json_object();
}

/* Encode `object` (taken over) into *value; 0 or -1. */
static int encode(json_t *object, char *key, char **key_out, char **value_out)
{
    char *value = object ? json_dumps(object, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(object);
    if (!key || !value) {
        free(key);
        free(value);
        return -1;
    }
    *key_out = key;
    *value_out = value;
    return 0;
}

int definitions_record_exchange(const struct exchange_spec *spec, char **key, char **value)
{
    json_t *object = json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:o}", "name", spec->name, "vhost",
                               spec->vhost, "type", exchange_type_name(spec->type), "durable",
                               spec->durable, "auto_delete", spec->auto_delete, "internal",
                               spec->internal, "arguments", arguments_or_empty(spec->arguments));
    return encode(object, entity_key("exchange", spec->vhost, spec->name), key, value);
}

int definitions_record_queue(const struct queue_spec *spec, char **key, char **value)
{
    json_t *object =
        json_pack("{s:s, s:s, s:b, s:b, s:b, s:o}", "name", spec->name, "vhost", spec->vhost,
                  "durable", spec->durable, "auto_delete", spec->auto_delete, "exclusive",
                  spec->exclusive, "arguments", arguments_or_empty(spec->arguments));
    if (object && spec->owner && json_object_set_new(object, "owner", json_string(spec->owner))) {
        json_decref(object);
        object = NULL;
    }
    return encode(object, entity_key("queue", spec->vhost, spec->name), key, value);
}

int definitions_record_binding(const struct binding_spec *spec, char **key, char **value)
{
    json_t *object = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "source", spec->source, "vhost",
                               spec->vhost, "destination", spec->destination, "destination_type",
                               spec->destination_kind == BINDING_TO_EXCHANGE ? "exchange" : "queue",
                               "routing_key", spec->routing_key, "arguments",
                               arguments_or_empty(spec->arguments));
    return encode(object, binding_key(spec), key, value);
}

/* ---- values: JSON to specs (borrowing from the JSON) ------------------------------ */

/* Field `name` of `object` as a string (absent: `fallback`; NULL fallback:
 * required). -1 with err when of another type or missing. */
static int field_string(const json_t *object, const char *name, const char *fallback,
                        const char **out, char *err, size_t err_size)
{
    const json_t *value = json_object_get(object, name);
    if (!value && fallback) {
        *out = fallback;
        return 0;
    }
    if (!json_is_string(value)) {
        snprintf(err, err_size, "'%s' %s", name, value ? "must be a string" : "is missing");
        return -1;
    }
    *out = json_string_value(value);
    if (strlen(*out) != json_string_length(value)) {
        snprintf(err, err_size, "'%s' must not contain NUL", name);
        return -1;
    }
    return 0;
}

static int field_bool(const json_t *object, const char *name, bool *out, char *err, size_t err_size)
{
    const json_t *value = json_object_get(object, name);
    if (!value) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(value)) {
        snprintf(err, err_size, "'%s' must be true or false", name);
        return -1;
    }
    *out = json_is_true(value);
    return 0;
}

static int field_arguments(const json_t *object, json_t **out, char *err, size_t err_size)
{
    json_t *value = json_object_get(object, "arguments");
    if (value && !json_is_object(value)) {
        snprintf(err, err_size, "'arguments' must be an object");
        return -1;
    }
    *out = value;
    return 0;
}

/* `text` (a name from a record or an export: anyone's bytes) as it may
 * appear in a one-line message: at most 160 bytes, control characters and
 * DEL as \xNN, "..." when cut. Returns out. */
struct shown {
    char text[160 * 4 + 4];
};

static struct shown shown(const char *text)
{
    struct shown out;
    size_t n = 0, i = 0;
    for (; text[i] && i < 160; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(out.text + n, sizeof(out.text) - n, "\\x%02x", c);
        else
            out.text[n++] = (char)c;
    }
    if (text[i])
        n += (size_t)snprintf(out.text + n, sizeof(out.text) - n, "...");
    out.text[n] = '\0';
    return out;
}

static int exchange_from_json(const json_t *object, struct exchange_spec *spec, char *err,
                              size_t err_size)
{
    const char *type;
    memset(spec, 0, sizeof(*spec));
    if (!json_is_object(object)) {
        snprintf(err, err_size, "an exchange must be an object");
        return -1;
    }
    if (field_string(object, "name", NULL, &spec->name, err, err_size) < 0 ||
        field_string(object, "vhost", "/", &spec->vhost, err, err_size) < 0 ||
        field_string(object, "type", NULL, &type, err, err_size) < 0 ||
        field_bool(object, "durable", &spec->durable, err, err_size) < 0 ||
        field_bool(object, "auto_delete", &spec->auto_delete, err, err_size) < 0 ||
        field_bool(object, "internal", &spec->internal, err, err_size) < 0 ||
        field_arguments(object, &spec->arguments, err, err_size) < 0)
        return -1;
    if (exchange_type_parse(type, &spec->type) < 0) {
        snprintf(err, err_size,
                 "exchange '%s': type '%s' is not supported (direct, fanout, "
                 "topic or headers)",
                 shown(spec->name).text, shown(type).text);
        return -1;
    }
    return 0;
}

static int queue_from_json(const json_t *object, struct queue_spec *spec, char *err,
                           size_t err_size)
{
    memset(spec, 0, sizeof(*spec));
    if (!json_is_object(object)) {
        snprintf(err, err_size, "a queue must be an object");
        return -1;
    }
    if (field_string(object, "name", NULL, &spec->name, err, err_size) < 0 ||
        field_string(object, "vhost", "/", &spec->vhost, err, err_size) < 0 ||
        field_bool(object, "durable", &spec->durable, err, err_size) < 0 ||
        field_bool(object, "auto_delete", &spec->auto_delete, err, err_size) < 0 ||
        field_bool(object, "exclusive", &spec->exclusive, err, err_size) < 0 ||
        field_arguments(object, &spec->arguments, err, err_size) < 0)
        return -1;
    const json_t *owner = json_object_get(object, "owner");
    if (owner && field_string(object, "owner", NULL, &spec->owner, err, err_size) < 0)
        return -1;
    return 0;
}

static int binding_from_json(const json_t *object, struct binding_spec *spec, char *err,
                             size_t err_size)
{
    const char *kind;
    memset(spec, 0, sizeof(*spec));
    if (!json_is_object(object)) {
        snprintf(err, err_size, "a binding must be an object");
        return -1;
    }
    if (field_string(object, "source", NULL, &spec->source, err, err_size) < 0 ||
        field_string(object, "vhost", "/", &spec->vhost, err, err_size) < 0 ||
        field_string(object, "destination", NULL, &spec->destination, err, err_size) < 0 ||
        field_string(object, "destination_type", "queue", &kind, err, err_size) < 0 ||
        field_string(object, "routing_key", "", &spec->routing_key, err, err_size) < 0 ||
        field_arguments(object, &spec->arguments, err, err_size) < 0)
        return -1;
    if (strcmp(kind, "queue") == 0) {
        spec->destination_kind = BINDING_TO_QUEUE;
    } else if (strcmp(kind, "exchange") == 0) {
        spec->destination_kind = BINDING_TO_EXCHANGE;
    } else {
        snprintf(err, err_size, "'destination_type' must be queue or exchange, not '%s'",
                 shown(kind).text);
        return -1;
    }
    return 0;
}

/* ---- applying a record ------------------------------------------------------------ */

/* Finding the binding a tombstone's key names: its arguments are known
 * only by their digest. */
struct binding_removal {
    enum binding_destination kind;
    const char *destination, *routing_key, *digest;
    bool found;
    json_t *arguments; /* a copy of the found binding's (the model frees its own) */
    bool failed;
};

static bool binding_removal_match(const struct binding_spec *binding, void *opaque)
{
    struct binding_removal *removal = opaque;
    if (binding->destination_kind != removal->kind ||
        strcmp(binding->destination, removal->destination) != 0 ||
        strcmp(binding->routing_key, removal->routing_key) != 0)
        return true;
    char digest[DIGEST_HEX + 1];
    if (arguments_digest(binding->arguments, digest) < 0) {
        removal->failed = true;
        return false;
    }
    if (strcmp(digest, removal->digest) != 0)
        return true;
    removal->arguments = binding->arguments ? json_deep_copy(binding->arguments) : NULL;
    if (binding->arguments && !removal->arguments) {
        removal->failed = true;
        return false;
    }
    removal->found = true;
    return false;
}

static int apply_tombstone(struct definitions *definitions, char **parts, int count, char *err,
                           size_t err_size)
{
    if ((strcmp(parts[0], "exchange") == 0 || strcmp(parts[0], "queue") == 0) && count == 3) {
        if (parts[0][0] == 'e')
            definitions_remove_exchange(definitions, parts[1], parts[2]);
        else
            definitions_remove_queue(definitions, parts[1], parts[2]);
        return 0;
    }
    if (strcmp(parts[0], "purge") == 0 && count == 3) {
        definitions_apply_purge(definitions, parts[1], parts[2], NULL);
        return 0;
    }
    if (strcmp(parts[0], "binding") == 0 && count == 7 &&
        (strcmp(parts[3], "q") == 0 || strcmp(parts[3], "e") == 0)) {
        struct binding_removal removal = {
            .kind = parts[3][0] == 'e' ? BINDING_TO_EXCHANGE : BINDING_TO_QUEUE,
            .destination = parts[4],
            .routing_key = parts[5],
            .digest = parts[6],
        };
        definitions_bindings_from(definitions, parts[1], parts[2], binding_removal_match, &removal);
        if (removal.failed) {
            json_decref(removal.arguments);
            return -2;
        }
        if (removal.found) {
            struct binding_spec spec = {.vhost = parts[1],
                                        .source = parts[2],
                                        .destination_kind = removal.kind,
                                        .destination = parts[4],
                                        .routing_key = parts[5],
                                        .arguments = removal.arguments};
            definitions_remove_binding(definitions, &spec);
        }
        json_decref(removal.arguments);
        return 0;
    }
    snprintf(err, err_size, "a record key of an unknown form");
    return -1;
}

/* A purge record's "offsets": [{"topic": text, "partition": >= 0, "offset": >= 0}]. */
static bool purge_offsets_valid(const json_t *offsets, char *err, size_t err_size)
{
    size_t i;
    const json_t *entry;
    if (!json_is_array(offsets)) {
        snprintf(err, err_size, "a purge without an \"offsets\" array");
        return false;
    }
    json_array_foreach(offsets, i, entry)
    {
        const json_t *partition = json_object_get(entry, "partition");
        const json_t *offset = json_object_get(entry, "offset");
        if (!json_is_string(json_object_get(entry, "topic")) || !json_is_integer(partition) ||
            json_integer_value(partition) < 0 || json_integer_value(partition) > INT32_MAX ||
            !json_is_integer(offset) || json_integer_value(offset) < 0) {
            snprintf(err, err_size, "purge offsets[%zu] is not {topic, partition, offset}", i);
            return false;
        }
    }
    return true;
}

int definitions_record_purge(const char *vhost, const char *name, const json_t *offsets, char **key,
                             char **value)
{
    json_t *object =
        json_pack("{s:s, s:s, s:O}", "vhost", vhost, "name", name, "offsets", (json_t *)offsets);
    return encode(object, entity_key("purge", vhost, name), key, value);
}

int definitions_record_apply(struct definitions *definitions, const char *key, size_t key_len,
                             const char *value, size_t value_len, char *err, size_t err_size)
{
    char *parts[KEY_COMPONENTS_MAX];
    int count = key_split(key, key_len, parts, KEY_COMPONENTS_MAX);
    if (count == -2)
        return -2;
    if (count < 1) {
        snprintf(err, err_size, "a record key of an unknown form");
        return -1;
    }
    int rc;
    if (!value) {
        rc = apply_tombstone(definitions, parts, count, err, err_size);
        goto done;
    }
    json_error_t error;
    json_t *object = json_loadb(value, value_len, 0, &error);
    if (!object) {
        snprintf(err, err_size, "the value is not JSON: %s (at %d)", shown(error.text).text,
                 error.position);
        rc = -1;
        goto done;
    }
    rc = -1;
    if (strcmp(parts[0], "exchange") == 0 && count == 3) {
        struct exchange_spec spec;
        if (exchange_from_json(object, &spec, err, err_size) == 0)
            rc = definitions_apply_exchange(definitions, &spec) < 0 ? -2 : 0;
    } else if (strcmp(parts[0], "queue") == 0 && count == 3) {
        struct queue_spec spec;
        if (queue_from_json(object, &spec, err, err_size) == 0)
            rc = definitions_apply_queue(definitions, &spec) < 0 ? -2 : 0;
    } else if (strcmp(parts[0], "binding") == 0 && count == 7) {
        struct binding_spec spec;
        if (binding_from_json(object, &spec, err, err_size) == 0)
            rc = definitions_apply_binding(definitions, &spec) < 0 ? -2 : 0;
    } else if (strcmp(parts[0], "purge") == 0 && count == 3) {
        json_t *offsets = json_object_get(object, "offsets");
        if (purge_offsets_valid(offsets, err, err_size)) {
            definitions_apply_purge(definitions, parts[1], parts[2], offsets);
            rc = 0;
        }
    } else {
        snprintf(err, err_size, "a record key of an unknown form");
    }
    json_decref(object);
done:
    for (int i = 0; i < count; i++)
        free(parts[i]);
    return rc;
}

/* ---- a RabbitMQ definitions export ------------------------------------------------- */

/* One kind of entry of an export: how to read one and hand it on. */
union import_spec {
    const char *vhost;
    struct exchange_spec exchange;
    struct queue_spec queue;
    struct binding_spec binding;
};

static int vhost_from_json(const json_t *object, union import_spec *spec, char *err,
                           size_t err_size)
{
    return field_string(object, "name", NULL, &spec->vhost, err, err_size);
}

static int exchange_entry_read(const json_t *object, union import_spec *spec, char *err,
                               size_t err_size)
{
    return exchange_from_json(object, &spec->exchange, err, err_size);
}

static int queue_entry_read(const json_t *object, union import_spec *spec, char *err,
                            size_t err_size)
{
    return queue_from_json(object, &spec->queue, err, err_size);
}

static int binding_entry_read(const json_t *object, union import_spec *spec, char *err,
                              size_t err_size)
{
    return binding_from_json(object, &spec->binding, err, err_size);
}

static int import_hand_on(const struct definitions_import *import, size_t kind,
                          const union import_spec *spec)
{
    switch (kind) {
    case 0: return import->vhost ? import->vhost(spec->vhost, import->opaque) : 0;
    case 1: return import->exchange ? import->exchange(&spec->exchange, import->opaque) : 0;
    case 2: return import->queue ? import->queue(&spec->queue, import->opaque) : 0;
    default: return import->binding ? import->binding(&spec->binding, import->opaque) : 0;
    }
}

/* The arrays of an export, in the order they must be applied. */
static const struct {
    const char *name;
    int (*read)(const json_t *object, union import_spec *spec, char *err, size_t err_size);
} import_kinds[] = {
    {"vhosts", vhost_from_json},
    {"exchanges", exchange_entry_read},
    {"queues", queue_entry_read},
    {"bindings", binding_entry_read},
};

int definitions_import_json(const char *text, size_t len, struct definitions_import *import,
                            char *err, size_t err_size)
{
    json_error_t error;
    json_t *root = json_loadb(text, len, 0, &error);
    if (!root) {
        snprintf(err, err_size, "line %d: %s", error.line, shown(error.text).text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(err, err_size, "a definitions export is a JSON object");
        goto done;
    }
    static const char *const counted[] = {"users", "permissions"};
    size_t *counts[] = {&import->users, &import->permissions};
    for (size_t k = 0; k < 2; k++) {
        const json_t *array = json_object_get(root, counted[k]);
        if (array && !json_is_array(array)) {
            snprintf(err, err_size, "'%s' must be an array", counted[k]);
            goto done;
        }
        *counts[k] = json_array_size(array);
    }
    for (size_t k = 0; k < sizeof(import_kinds) / sizeof(import_kinds[0]); k++) {
        const json_t *array = json_object_get(root, import_kinds[k].name);
        if (array && !json_is_array(array)) {
            snprintf(err, err_size, "'%s' must be an array", import_kinds[k].name);
            goto done;
        }
        size_t i;
        const json_t *entry;
        json_array_foreach(array, i, entry)
        {
            union import_spec spec;
            char reason[256];
            if (import_kinds[k].read(entry, &spec, reason, sizeof(reason)) < 0) {
                snprintf(err, err_size, "%s[%zu]: %s", import_kinds[k].name, i, reason);
                goto done;
            }
            if (import_hand_on(import, k, &spec) < 0) {
                snprintf(err, err_size, "%s[%zu]: stopped", import_kinds[k].name, i);
                goto done;
            }
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}
