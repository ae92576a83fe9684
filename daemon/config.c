/* SPDX-License-Identifier: Apache-2.0 */
/* config.c -- loads kbridged's configuration: reads the YAML file, walks
 * libyaml's document against the key table (config_table.c) to fill a
 * struct config, frees it, and copies restart-only values on reload
 * (config_apply_live).
 *
 * DESIGN
 * ------
 * Loading applies each row's default by parsing its default text like a
 * value from the file, loads the YAML document (libyaml's document API, so
 * every node keeps its line), then walks the mappings: a key that names a row
 * is parsed by the row's type, a key that is a prefix of rows is a section to
 * walk into, anything else is an unknown key. The first error stops the load
 * and is written as "FILE:LINE: KEY: reason". config_free and
 * config_apply_live walk the same rows, so a new key needs no code here
 * unless it has a new type.
 *
 * Adapter sections (struct config_section) are tables of the same rows over
 * their own struct: a top-level key that is no shared key but names a section
 * the caller handed over is walked with the section's rows, and a shared
 * path that is a section's alias ("limits.heartbeat_min") is parsed with the
 * aliased row into the section's struct. This module never names an adapter. */
#include "config.h"
#include "config_import.h"
#include "config_table.h"

#include <errno.h>
#include <event2/util.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#define CONFIG_FILE_MAX (16u << 20) /* larger files are refused, not cut */
#define CONFIG_PATH_MAX 256         /* longest dotted key path ("auth.users[3].name") */
#define CONFIG_REGEX_COST_MAX 1000  /* most nodes a pattern may make regcomp build */
#define CONFIG_REGEX_DEPTH_MAX 64   /* deepest nesting of groups in a pattern */
#define CONFIG_REGEX_ANCHORS_MAX 4  /* most anchors (^ $ \b ...) in a row without a character */

/* State of one load: where messages go and the document being walked. */
struct config_parse {
    const char *file; /* name used in messages */
    yaml_document_t *document;
    yaml_node_t *root;     /* the document's root mapping, for alias conflicts */
    struct config *config; /* the config being loaded: its sections */
    char *err;
    size_t err_size;
};

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

static size_t config_line(const yaml_node_t *node) { return node->start_mark.line + 1; }

/* True for a plain empty scalar, "~" or "null": a key written without a value. */
static bool config_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *text = (const char *)node->data.scalar.value;
    return text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

/* What a node is, for "expected X, got Y". */
static struct config_text config_describe(const yaml_node_t *node)
{
    struct config_text out;
    if (node->type == YAML_MAPPING_NODE)
        snprintf(out.text, sizeof(out.text), "a mapping");
    else if (node->type == YAML_SEQUENCE_NODE)
        snprintf(out.text, sizeof(out.text), "a list");
    else if (config_is_null(node))
        snprintf(out.text, sizeof(out.text), "nothing");
    else
        return config_quote((const char *)node->data.scalar.value);
    return out;
}

/* Write "FILE:LINE: PATH: reason" into the caller's buffer (LINE left out
 * when 0, PATH when empty) and return -1, so callers can `return config_fail(...)`. */
static int config_fail(struct config_parse *parse, size_t line, const char *path, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static int config_fail(struct config_parse *parse, size_t line, const char *path, const char *fmt,
                       ...)
{
    if (parse->err == NULL || parse->err_size == 0)
        return -1;
    int n;
    if (line > 0)
        n = snprintf(parse->err, parse->err_size, "%s:%zu: ", parse->file, line);
    else
        n = snprintf(parse->err, parse->err_size, "%s: ", parse->file);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used < parse->err_size && path[0] != '\0') {
        n = snprintf(parse->err + used, parse->err_size - used, "%s: ", path);
        used += n < 0 ? 0 : (size_t)n;
    }
    if (used < parse->err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(parse->err + used, parse->err_size - used, fmt, ap);
        va_end(ap);
    }
    /* one error, one line, whatever a file name or library text holds */
    for (char *p = parse->err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return -1;
}

static int config_fail_memory(struct config_parse *parse)
{
    return config_fail(parse, 0, "", "out of memory");
}

/* Join a path and a key ("limits" + "max_headers"); -1 if it does not fit. */
static int config_join(char *out, size_t out_size, const char *prefix, const char *key)
{
    int n = prefix[0] != '\0' ? snprintf(out, out_size, "%s.%s", prefix, key)
                              : snprintf(out, out_size, "%s", key);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

/* A list element's path ("auth.users" + 2 -> "auth.users[2]"); -1 if it
 * does not fit. */
static int config_join_index(char *out, size_t out_size, const char *path, size_t index)
{
    int n = snprintf(out, out_size, "%s[%zu]", path, index);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Freeing and copying fields                                               */
/* ------------------------------------------------------------------------ */

static void *config_field(void *base, size_t offset) { return (char *)base + offset; }

static const void *config_const_field(const void *base, size_t offset)
{
    return (const char *)base + offset;
}

static void config_free_properties(struct config_properties *properties)
{
    for (size_t i = 0; i < properties->count; i++) {
        free(properties->items[i].name);
        free(properties->items[i].value);
    }
    free(properties->items);
    properties->items = NULL;
    properties->count = 0;
}

static void config_free_patterns(struct config_pattern *patterns, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(patterns[i].source);
        regfree(&patterns[i].regex);
    }
    free(patterns);
}

static void config_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* Free what the rows of `keys` own in `base` and reset those fields. */
static void config_free_fields(const struct config_key *keys, size_t key_count, void *base)
{
    for (size_t i = 0; i < key_count; i++) {
        const struct config_key *key = &keys[i];
        void *field = config_field(base, key->offset);
        switch (key->type) {
        case CONFIG_TYPE_STRING:
        case CONFIG_TYPE_ADDRESS: {
            char **string = field;
            free(*string);
            *string = NULL;
            break;
        }
        case CONFIG_TYPE_PROPERTIES: config_free_properties(field); break;
        case CONFIG_TYPE_NAMES: {
            char ***names = field;
            size_t *count = config_field(base, key->count_offset);
            config_free_names(*names, *count);
            *names = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_LISTENERS: {
            struct config_listener **listeners = field;
            size_t *count = config_field(base, key->count_offset);
            for (size_t l = 0; l < *count; l++) {
                free((*listeners)[l].name);
                config_free_fields(key->keys, key->key_count, &(*listeners)[l]);
            }
            free(*listeners);
            *listeners = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_VHOSTS: {
            struct config_vhost **vhosts = field;
            size_t *count = config_field(base, key->count_offset);
            for (size_t v = 0; v < *count; v++) {
                free((*vhosts)[v].name);
                config_free_fields(key->keys, key->key_count, &(*vhosts)[v]);
            }
            free(*vhosts);
            *vhosts = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_PATTERNS: {
            struct config_pattern **patterns = field;
            size_t *count = config_field(base, key->count_offset);
            config_free_patterns(*patterns, *count);
            *patterns = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_SHOVELS: {
            struct config_shovel **shovels = field;
            size_t *count = config_field(base, key->count_offset);
            for (size_t v = 0; v < *count; v++)
                config_free_fields(key->keys, key->key_count, &(*shovels)[v]);
            free(*shovels);
            *shovels = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_USERS: {
            struct config_user **users = field;
            size_t *count = config_field(base, key->count_offset);
            for (size_t u = 0; u < *count; u++)
                config_free_fields(key->keys, key->key_count, &(*users)[u]);
            free(*users);
            *users = NULL;
            *count = 0;
            break;
        }
        case CONFIG_TYPE_PERMISSIONS: {
            struct config_permission **permissions = field;
            size_t *count = config_field(base, key->count_offset);
            for (size_t p = 0; p < *count; p++) {
                free((*permissions)[p].vhost);
                config_free_fields(key->keys, key->key_count, &(*permissions)[p]);
            }
            free(*permissions);
            *permissions = NULL;
            *count = 0;
            break;
        }
        default: /* plain values own nothing */ break;
        }
    }
}

const struct config_vhost *config_vhost_find(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->vhost_count; i++)
        if (strcmp(config->vhosts[i].name, name) == 0)
            return &config->vhosts[i];
    return NULL;
}

bool config_listener_is_websocket(const struct config_listener *listener)
{
    return listener->transport != NULL && strcmp(listener->transport, "websocket") == 0;
}

const struct config_listener *config_listener_find(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->listener_count; i++)
        if (strcmp(config->listeners[i].name, name) == 0)
            return &config->listeners[i];
    return NULL;
}

const void *config_section_values(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->section_count; i++)
        if (strcmp(config->sections[i].section->name, name) == 0)
            return config->sections[i].values;
    return NULL;
}

static struct config_section_values *config_find_section(const struct config *config,
                                                         const char *name)
{
    for (size_t i = 0; i < config->section_count; i++)
        if (strcmp(config->sections[i].section->name, name) == 0)
            return &config->sections[i];
    return NULL;
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;
    for (size_t i = 0; i < config->section_count; i++) {
        const struct config_section *section = config->sections[i].section;
        if (config->sections[i].values != NULL)
            config_free_fields(section->keys, section->key_count, config->sections[i].values);
        free(config->sections[i].values);
    }
    free(config->sections);
    config_free_fields(config_keys, config_key_count, config);
    free(config->path);
    free(config);
}

static bool config_strings_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Bytes of a field that holds a plain value; 0 for fields that own memory. */
static size_t config_plain_size(enum config_type type)
{
    switch (type) {
    case CONFIG_TYPE_BOOL: return sizeof(bool);
    case CONFIG_TYPE_UINT32: return sizeof(uint32_t);
    case CONFIG_TYPE_SIZE:
    case CONFIG_TYPE_DURATION: return sizeof(uint64_t);
    case CONFIG_TYPE_LOG_LEVEL: return sizeof(enum log_level);
    case CONFIG_TYPE_LOG_FORMAT: return sizeof(enum log_format);
    default: return 0;
    }
}

static bool config_field_equal(const struct config_key *key, const void *a_base,
                               const void *b_base);

/* Listener lists: names, protocols and every string row of `key->keys`
 * (bind, transport, websocket.path, tls.*), websocket.max_message_size and
 * websocket.origins. */
static bool config_listeners_equal(const struct config_key *key, const struct config_listener *a,
                                   size_t a_count, const struct config_listener *b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++) {
        if (!config_strings_equal(a[i].name, b[i].name) ||
            a[i].protocol_count != b[i].protocol_count ||
            a[i].websocket.max_message_size != b[i].websocket.max_message_size ||
            a[i].websocket.origin_count != b[i].websocket.origin_count)
            return false;
        for (size_t p = 0; p < a[i].protocol_count; p++)
            if (!config_strings_equal(a[i].protocols[p], b[i].protocols[p]))
                return false;
        for (size_t o = 0; o < a[i].websocket.origin_count; o++)
            if (!config_strings_equal(a[i].websocket.origins[o], b[i].websocket.origins[o]))
                return false;
        for (size_t k = 0; k < key->key_count; k++)
            if ((key->keys[k].type == CONFIG_TYPE_STRING ||
                 key->keys[k].type == CONFIG_TYPE_ADDRESS) &&
                !config_field_equal(&key->keys[k], &a[i], &b[i]))
                return false;
    }
    return true;
}

static bool config_vhosts_equal(const struct config_vhost *a, size_t a_count,
                                const struct config_vhost *b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++)
        if (!config_strings_equal(a[i].name, b[i].name) ||
            !config_strings_equal(a[i].topic_prefix, b[i].topic_prefix))
            return false;
    return true;
}

/* Shovel lists: every row of every shovel (strings and plain values). */
static bool config_shovels_equal(const struct config_key *key, const struct config_shovel *a,
                                 size_t a_count, const struct config_shovel *b, size_t b_count)
{
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++)
        for (size_t k = 0; k < key->key_count; k++)
            if (!config_field_equal(&key->keys[k], &a[i], &b[i]))
                return false;
    return true;
}

/* `a` and `b` are the fields of `key` in two structs whose bases are
 * `a_base` and `b_base` (lists need their counts). */
static bool config_field_equal(const struct config_key *key, const void *a_base, const void *b_base)
{
    const void *a = config_const_field(a_base, key->offset);
    const void *b = config_const_field(b_base, key->offset);
    switch (key->type) {
    case CONFIG_TYPE_STRING:
    case CONFIG_TYPE_ADDRESS: return config_strings_equal(*(char *const *)a, *(char *const *)b);
    case CONFIG_TYPE_PROPERTIES: {
        const struct config_properties *pa = a, *pb = b;
        if (pa->count != pb->count)
            return false;
        for (size_t i = 0; i < pa->count; i++)
            if (strcmp(pa->items[i].name, pb->items[i].name) != 0 ||
                strcmp(pa->items[i].value, pb->items[i].value) != 0)
                return false;
        return true;
    }
    case CONFIG_TYPE_LISTENERS:
        return config_listeners_equal(
            key, *(struct config_listener *const *)a,
            *(const size_t *)config_const_field(a_base, key->count_offset),
            *(struct config_listener *const *)b,
            *(const size_t *)config_const_field(b_base, key->count_offset));
    case CONFIG_TYPE_VHOSTS:
        return config_vhosts_equal(*(struct config_vhost *const *)a,
                                   *(const size_t *)config_const_field(a_base, key->count_offset),
                                   *(struct config_vhost *const *)b,
                                   *(const size_t *)config_const_field(b_base, key->count_offset));
    case CONFIG_TYPE_NAMES: /* only inside listeners, compared there */
    case CONFIG_TYPE_SHOVELS:
        return config_shovels_equal(key, *(struct config_shovel *const *)a,
                                    *(const size_t *)config_const_field(a_base, key->count_offset),
                                    *(struct config_shovel *const *)b,
                                    *(const size_t *)config_const_field(b_base, key->count_offset));
    case CONFIG_TYPE_PATTERNS:
    case CONFIG_TYPE_USERS:
    case CONFIG_TYPE_PERMISSIONS:
        return true; /* lists are always live: never marked CONFIG_KEY_RESTART */
    default: return memcmp(a, b, config_plain_size(key->type)) == 0;
    }
}

/* strdup that keeps NULL as NULL; -1 when out of memory. */
static int config_copy_string(const char *source, char **out)
{
    *out = NULL;
    if (source == NULL)
        return 0;
    *out = strdup(source);
    return *out == NULL ? -1 : 0;
}

static int config_copy_properties(const struct config_properties *source,
                                  struct config_properties *out)
{
    struct config_properties copy = {NULL, 0};
    if (source->count > 0) {
        copy.items = calloc(source->count, sizeof(*copy.items));
        if (copy.items == NULL)
            return -1;
    }
    for (; copy.count < source->count; copy.count++) {
        struct config_property *item = &copy.items[copy.count];
        if (config_copy_string(source->items[copy.count].name, &item->name) < 0 ||
            config_copy_string(source->items[copy.count].value, &item->value) < 0) {
            free(item->name);
            config_free_properties(&copy);
            return -1;
        }
    }
    config_free_properties(out);
    *out = copy;
    return 0;
}

/* A deep copy of a listener list into *out (NULL when count is 0); -1 when
 * out of memory (nothing allocated then). */
static int config_copy_listeners(const struct config_key *key, const struct config_listener *source,
                                 size_t count, struct config_listener **out)
{
    *out = NULL;
    if (count == 0)
        return 0;
    struct config_listener *copy = calloc(count, sizeof(*copy));
    if (copy == NULL)
        return -1;
    size_t done = 0;
    for (; done < count; done++) {
        const struct config_listener *from = &source[done];
        struct config_listener *to = &copy[done];
        if (config_copy_string(from->name, &to->name) < 0 ||
            (to->protocols = calloc(from->protocol_count, sizeof(char *))) == NULL)
            break;
        size_t k = 0; /* bind, transport, websocket.path, tls.*: every string row */
        for (; k < key->key_count; k++) {
            const struct config_key *row = &key->keys[k];
            if ((row->type == CONFIG_TYPE_STRING || row->type == CONFIG_TYPE_ADDRESS) &&
                config_copy_string(*(char *const *)config_const_field(from, row->offset),
                                   (char **)config_field(to, row->offset)) < 0)
                break;
        }
        if (k < key->key_count)
            break;
        for (; to->protocol_count < from->protocol_count; to->protocol_count++)
            if (config_copy_string(from->protocols[to->protocol_count],
                                   &to->protocols[to->protocol_count]) < 0)
                break;
        if (to->protocol_count < from->protocol_count)
            break;
        to->websocket.max_message_size = from->websocket.max_message_size;
        if (from->websocket.origin_count > 0 &&
            (to->websocket.origins = calloc(from->websocket.origin_count, sizeof(char *))) == NULL)
            break;
        for (; to->websocket.origin_count < from->websocket.origin_count;
             to->websocket.origin_count++)
            if (config_copy_string(from->websocket.origins[to->websocket.origin_count],
                                   &to->websocket.origins[to->websocket.origin_count]) < 0)
                break;
        if (to->websocket.origin_count < from->websocket.origin_count)
            break;
    }
    if (done < count) {
        for (size_t l = 0; l <= done && l < count; l++) {
            free(copy[l].name);
            config_free_fields(key->keys, key->key_count, &copy[l]);
        }
        free(copy);
        return -1;
    }
    *out = copy;
    return 0;
}

/* A deep copy of a vhost list into *out (NULL when count is 0); -1 when out
 * of memory (nothing allocated then). */
static int config_copy_vhosts(const struct config_vhost *source, size_t count,
                              struct config_vhost **out)
{
    *out = NULL;
    if (count == 0)
        return 0;
    struct config_vhost *copy = calloc(count, sizeof(*copy));
    if (copy == NULL)
        return -1;
    for (size_t v = 0; v < count; v++) {
        if (config_copy_string(source[v].name, &copy[v].name) < 0 ||
            config_copy_string(source[v].topic_prefix, &copy[v].topic_prefix) < 0) {
            for (size_t f = 0; f <= v; f++) {
                free(copy[f].name);
                free(copy[f].topic_prefix);
            }
            free(copy);
            return -1;
        }
    }
    *out = copy;
    return 0;
}

/* Replace the field of `key` in `out_base` by a deep copy of the one in
 * `source_base`; on failure (-1, out of memory) it is unchanged. */
static int config_copy_field(const struct config_key *key, const void *source_base, void *out_base)
{
    const void *source = config_const_field(source_base, key->offset);
    void *out = config_field(out_base, key->offset);
    switch (key->type) {
    case CONFIG_TYPE_ADDRESS:
    case CONFIG_TYPE_STRING: {
        char *copy;
        if (config_copy_string(*(char *const *)source, &copy) < 0)
            return -1;
        free(*(char **)out);
        *(char **)out = copy;
        return 0;
    }
    case CONFIG_TYPE_PROPERTIES: return config_copy_properties(source, out);
    case CONFIG_TYPE_LISTENERS: {
        size_t count = *(const size_t *)config_const_field(source_base, key->count_offset);
        size_t *out_count = config_field(out_base, key->count_offset);
        struct config_listener *copy;
        if (config_copy_listeners(key, *(struct config_listener *const *)source, count, &copy) < 0)
            return -1;
        struct config_listener **listeners = out;
        for (size_t l = 0; l < *out_count; l++) {
            free((*listeners)[l].name);
            config_free_fields(key->keys, key->key_count, &(*listeners)[l]);
        }
        free(*listeners);
        *listeners = copy;
        *out_count = count;
        return 0;
    }
    case CONFIG_TYPE_VHOSTS: {
        size_t count = *(const size_t *)config_const_field(source_base, key->count_offset);
        size_t *out_count = config_field(out_base, key->count_offset);
        struct config_vhost *copy;
        if (config_copy_vhosts(*(struct config_vhost *const *)source, count, &copy) < 0)
            return -1;
        struct config_vhost **vhosts = out;
        for (size_t v = 0; v < *out_count; v++) {
            free((*vhosts)[v].name);
            free((*vhosts)[v].topic_prefix);
        }
        free(*vhosts);
        *vhosts = copy;
        *out_count = count;
        return 0;
    }
    case CONFIG_TYPE_NAMES: /* only inside listeners, copied there */
    case CONFIG_TYPE_SHOVELS: {
        size_t count = *(const size_t *)config_const_field(source_base, key->count_offset);
        size_t *out_count = config_field(out_base, key->count_offset);
        const struct config_shovel *from = *(struct config_shovel *const *)source;
        struct config_shovel *copy = count ? calloc(count, sizeof(*copy)) : NULL;
        if (count && !copy)
            return -1;
        for (size_t i = 0; i < count; i++)
            for (size_t k = 0; k < key->key_count; k++)
                if (config_copy_field(&key->keys[k], &from[i], &copy[i]) < 0) {
                    for (size_t j = 0; j <= i; j++)
                        config_free_fields(key->keys, key->key_count, &copy[j]);
                    free(copy);
                    return -1;
                }
        struct config_shovel **shovels = out;
        for (size_t i = 0; i < *out_count; i++)
            config_free_fields(key->keys, key->key_count, &(*shovels)[i]);
        free(*shovels);
        *shovels = copy;
        *out_count = count;
        return 0;
    }
    case CONFIG_TYPE_PATTERNS:
    case CONFIG_TYPE_USERS:
    case CONFIG_TYPE_PERMISSIONS:
        return 0; /* lists are always live: never marked CONFIG_KEY_RESTART */
    default: memcpy(out, source, config_plain_size(key->type)); return 0;
    }
}

/* One warning per listener added, removed or changed by a reload. */
static void config_warn_listeners(const struct config_key *key, const struct config *old,
                                  const struct config *out)
{
    for (size_t i = 0; i < old->listener_count; i++) {
        const struct config_listener *was = &old->listeners[i];
        const struct config_listener *now = config_listener_find(out, was->name);
        if (now == NULL || !config_listeners_equal(key, was, 1, now, 1))
            log_warn("config", "listeners.%s changed; restart kbridged to apply it", was->name);
    }
    for (size_t i = 0; i < out->listener_count; i++)
        if (config_listener_find(old, out->listeners[i].name) == NULL)
            log_warn("config", "listeners.%s changed; restart kbridged to apply it",
                     out->listeners[i].name);
}

void config_apply_live(const struct config *old, struct config *out)
{
    for (size_t i = 0; i < config_key_count; i++) {
        const struct config_key *key = &config_keys[i];
        if (!(key->flags & CONFIG_KEY_RESTART))
            continue;
        if (config_field_equal(key, old, out))
            continue;
        if (key->type == CONFIG_TYPE_LISTENERS)
            config_warn_listeners(key, old, out);
        else
            log_warn("config", "%s changed; restart kbridged to apply it", key->name);
        if (config_copy_field(key, old, out) < 0)
            log_error("config",
                      "out of memory keeping the running %s; the reloaded "
                      "configuration shows the new value",
                      key->name);
    }
    /* section keys: the same rule, per section both configs hold */
    for (size_t s = 0; s < out->section_count; s++) {
        const struct config_section *section = out->sections[s].section;
        const struct config_section_values *was = config_find_section(old, section->name);
        if (was == NULL || was->section != section)
            continue;
        for (size_t i = 0; i < section->key_count; i++) {
            const struct config_key *key = &section->keys[i];
            if (!(key->flags & CONFIG_KEY_RESTART) ||
                config_field_equal(key, was->values, out->sections[s].values))
                continue;
            log_warn("config", "%s.%s changed; restart kbridged to apply it", section->name,
                     key->name);
            if (config_copy_field(key, was->values, out->sections[s].values) < 0)
                log_error("config",
                          "out of memory keeping the running %s.%s; the reloaded "
                          "configuration shows the new value",
                          section->name, key->name);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Walking the YAML document                                                */
/* ------------------------------------------------------------------------ */

static int config_walk_mapping(struct config_parse *parse, yaml_node_t *node, size_t key_line,
                               const char *path, const char *relative,
                               const struct config_key *keys, size_t key_count, void *base);

static yaml_node_t *config_node(struct config_parse *parse, int index)
{
    return yaml_document_get_node(parse->document, index);
}

/* The scalar's text; an error if it holds a NUL byte (C would cut it there). */
static int config_scalar_text(struct config_parse *parse, yaml_node_t *node, const char *path,
                              const char **out)
{
    const char *text = (const char *)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length)
        return config_fail(parse, config_line(node), path, "contains a NUL character");
    *out = text;
    return 0;
}

/* Value node of `name` in a mapping node, or NULL. */
static yaml_node_t *config_mapping_get(struct config_parse *parse, yaml_node_t *mapping,
                                       const char *name)
{
    if (mapping->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = mapping->data.mapping.pairs.start;
         pair < mapping->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = config_node(parse, pair->key);
        if (key->type == YAML_SCALAR_NODE &&
            strcmp((const char *)key->data.scalar.value, name) == 0)
            return config_node(parse, pair->value);
    }
    return NULL;
}

struct config_seen_key {
    const char *name;
    size_t line;
    size_t index;
};

static int config_compare_seen_keys(const void *a, const void *b)
{
    const struct config_seen_key *ka = a, *kb = b;
    int order = strcmp(ka->name, kb->name);
    if (order != 0)
        return order;
    return ka->index < kb->index ? -1 : ka->index > kb->index;
}

/* Report the first repeated key of a mapping (the one seen earliest in the
 * file among second occurrences). Sorting keeps big property maps fast. */
static int config_check_duplicates(struct config_parse *parse, yaml_node_t *mapping,
                                   const char *path)
{
    size_t count = (size_t)(mapping->data.mapping.pairs.top - mapping->data.mapping.pairs.start);
    if (count < 2)
        return 0;
    struct config_seen_key *seen = malloc(count * sizeof(*seen));
    if (seen == NULL)
        return config_fail_memory(parse);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *key = config_node(parse, mapping->data.mapping.pairs.start[i].key);
        if (key->type != YAML_SCALAR_NODE)
            continue; /* reported by the walk */
        seen[used].name = (const char *)key->data.scalar.value;
        seen[used].line = config_line(key);
        seen[used].index = i;
        used++;
    }
    qsort(seen, used, sizeof(*seen), config_compare_seen_keys);
    const struct config_seen_key *first = NULL, *repeat = NULL;
    for (size_t i = 1; i < used; i++) {
        bool starts_group = i == 1 || strcmp(seen[i - 2].name, seen[i - 1].name) != 0;
        if (starts_group && strcmp(seen[i - 1].name, seen[i].name) == 0 &&
            (repeat == NULL || seen[i].index < repeat->index)) {
            first = &seen[i - 1];
            repeat = &seen[i];
        }
    }
    int rc = 0;
    if (repeat != NULL) {
        char key_path[CONFIG_PATH_MAX];
        if (config_join(key_path, sizeof(key_path), path, repeat->name) < 0)
            rc = config_fail(parse, repeat->line, path, "duplicate key %s (first on line %zu)",
                             config_quote(repeat->name).text, first->line);
        else
            rc = config_fail(parse, repeat->line, key_path, "duplicate key (first on line %zu)",
                             first->line);
    }
    free(seen);
    return rc;
}

/* What the file should hold for a scalar-typed key, for "expected X". */
static const char *config_type_expectation(enum config_type type)
{
    switch (type) {
    case CONFIG_TYPE_BOOL: return "true or false";
    case CONFIG_TYPE_UINT32: return "a number";
    case CONFIG_TYPE_SIZE: return "a size such as 1MiB";
    case CONFIG_TYPE_DURATION: return "a duration such as 10s";
    case CONFIG_TYPE_LOG_LEVEL: return "a log level";
    case CONFIG_TYPE_LOG_FORMAT: return "text or json";
    case CONFIG_TYPE_ADDRESS: return "host:port";
    default: return "a string";
    }
}

static int config_set_string(struct config_parse *parse, char **field, const char *text)
{
    char *copy = strdup(text);
    if (copy == NULL)
        return config_fail_memory(parse);
    free(*field);
    *field = copy;
    return 0;
}

/* Length bounds of strings and patterns. */
static int config_check_length(struct config_parse *parse, const struct config_key *key,
                               const char *text, size_t line, const char *path)
{
    size_t len = strlen(text);
    if (len < key->min) {
        if (key->min == 1)
            return config_fail(parse, line, path, "must not be empty");
        return config_fail(parse, line, path, "%s is too short (at least %" PRIu64 " characters)",
                           config_quote(text).text, key->min);
    }
    if (len > key->max && (key->flags & CONFIG_KEY_SECRET))
        return config_fail(parse, line, path, "is too long (at most %" PRIu64 " characters)",
                           key->max);
    if (len > key->max)
        return config_fail(parse, line, path, "%s is too long (at most %" PRIu64 " characters)",
                           config_quote(text).text, key->max);
    return 0;
}

/* Parse `text` as the value of a scalar-typed key and store it; used for
 * values from the file and for the table's defaults. */
static int config_set_scalar(struct config_parse *parse, const struct config_key *key,
                             const char *text, size_t line, const char *path, void *base)
{
    void *field = config_field(base, key->offset);
    char reason[CONFIG_REASON_MAX];
    char low[32], high[32];
    uint64_t number;
    int rc;

    switch (key->type) {
    case CONFIG_TYPE_STRING:
        if (config_check_length(parse, key, text, line, path) < 0)
            return -1;
        if (key->check != NULL && key->check(text, reason, sizeof(reason)) < 0)
            return config_fail(parse, line, path, "%s", reason);
        return config_set_string(parse, field, text);

    case CONFIG_TYPE_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "True") == 0 || strcmp(text, "TRUE") == 0)
            *(bool *)field = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "False") == 0 ||
                 strcmp(text, "FALSE") == 0)
            *(bool *)field = false;
        else
            return config_fail(parse, line, path, "%s is not a boolean (use true or false)",
                               config_quote(text).text);
        return 0;

    case CONFIG_TYPE_UINT32:
        rc = config_read_number(text, &number);
        if (rc == -1)
            return config_fail(parse, line, path,
                               "%s is not a number (expected %" PRIu64 " to %" PRIu64 ")",
                               config_quote(text).text, key->min, key->max);
        if (rc == -2 || number < key->min || number > key->max)
            return config_fail(parse, line, path, "%s is out of range (%" PRIu64 " to %" PRIu64 ")",
                               config_quote(text).text, key->min, key->max);
        *(uint32_t *)field = (uint32_t)number;
        return 0;

    case CONFIG_TYPE_SIZE:
        rc = config_read_size(text, &number);
        if (rc == -1)
            return config_fail(parse, line, path, "%s is not a size (use B, KiB, MiB or GiB)",
                               config_quote(text).text);
        if (rc == -2 || number < key->min || number > key->max) {
            config_format_size(key->min, low, sizeof(low));
            config_format_size(key->max, high, sizeof(high));
            return config_fail(parse, line, path, "%s is out of range (%s to %s)",
                               config_quote(text).text, low, high);
        }
        *(uint64_t *)field = number;
        return 0;

    case CONFIG_TYPE_DURATION:
        rc = config_read_duration(text, &number);
        if (rc == -1)
            return config_fail(parse, line, path,
                               "%s is not a duration (use ms, s, m or h; a bare number is "
                               "seconds)",
                               config_quote(text).text);
        if (rc == -2 || number < key->min || number > key->max) {
            config_format_duration(key->min, low, sizeof(low));
            config_format_duration(key->max, high, sizeof(high));
            return config_fail(parse, line, path, "%s is out of range (%s to %s)",
                               config_quote(text).text, low, high);
        }
        *(uint64_t *)field = number;
        return 0;

    case CONFIG_TYPE_LOG_LEVEL:
        if (log_level_parse(text, field) < 0)
            return config_fail(parse, line, path,
                               "%s is not a log level (use error, warn, info or debug)",
                               config_quote(text).text);
        return 0;

    case CONFIG_TYPE_LOG_FORMAT:
        if (log_format_parse(text, field) < 0)
            return config_fail(parse, line, path, "%s is not a log format (use text or json)",
                               config_quote(text).text);
        return 0;

    case CONFIG_TYPE_ADDRESS:
        if (config_check_address(text, 0, reason, sizeof(reason)) < 0)
            return config_fail(parse, line, path, "%s", reason);
        return config_set_string(parse, field, text);

    default: return config_fail(parse, line, path, "internal error: not a scalar key");
    }
}

static int config_parse_properties(struct config_parse *parse, yaml_node_t *node, const char *path,
                                   struct config_properties *properties)
{
    if (config_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_fail(parse, config_line(node), path,
                           "expected a mapping of librdkafka property names to values, got %s",
                           config_describe(node).text);
    if (config_check_duplicates(parse, node, path) < 0)
        return -1;
    size_t count = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    config_free_properties(properties);
    if (count == 0)
        return 0;
    properties->items = calloc(count, sizeof(*properties->items));
    if (properties->items == NULL)
        return config_fail_memory(parse);

    for (size_t i = 0; i < count; i++) {
        yaml_node_t *name_node = config_node(parse, node->data.mapping.pairs.start[i].key);
        yaml_node_t *value_node = config_node(parse, node->data.mapping.pairs.start[i].value);
        const char *name = NULL, *value = NULL;
        char property_path[CONFIG_PATH_MAX];
        if (name_node->type != YAML_SCALAR_NODE)
            return config_fail(parse, config_line(name_node), path,
                               "property names must be plain text, got %s",
                               config_describe(name_node).text);
        if (config_scalar_text(parse, name_node, path, &name) < 0)
            return -1;
        if (name[0] == '\0')
            return config_fail(parse, config_line(name_node), path,
                               "property names must not be empty");
        if (config_join(property_path, sizeof(property_path), path, name) < 0)
            return config_fail(parse, config_line(name_node), path, "property name %s is too long",
                               config_quote(name).text);
        if (strcmp(name, "bootstrap.servers") == 0)
            return config_fail(parse, config_line(name_node), property_path,
                               "set kafka.bootstrap instead");
        if (value_node->type != YAML_SCALAR_NODE)
            return config_fail(parse, config_line(value_node), property_path,
                               "expected a scalar value, got %s", config_describe(value_node).text);
        if (config_is_null(value_node))
            return config_fail(parse, config_line(name_node), property_path, "has no value");
        if (config_scalar_text(parse, value_node, property_path, &value) < 0)
            return -1;

        struct config_property *item = &properties->items[properties->count];
        item->name = strdup(name);
        item->value = strdup(value);
        properties->count++; /* counted even when half-filled so config_free frees it */
        if (item->name == NULL || item->value == NULL)
            return config_fail_memory(parse);
    }
    return 0;
}

static const char *config_regex_refusal(const char *re);

int config_pattern_compile(struct config_pattern *pattern, const char *source, char *reason,
                           size_t reason_size)
{
    const char *refusal = config_regex_refusal(source);
    if (refusal != NULL) {
        snprintf(reason, reason_size, "%s is too complex a regular expression: %s",
                 config_quote(source).text, refusal);
        return -1;
    }
    pattern->source = strdup(source);
    if (pattern->source == NULL) {
        snprintf(reason, reason_size, "out of memory");
        return -1;
    }
    int rc = regcomp(&pattern->regex, source, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char message[256];
        regerror(rc, &pattern->regex, message, sizeof(message));
        free(pattern->source);
        pattern->source = NULL;
        snprintf(reason, reason_size, "%s is not a valid regular expression: %s",
                 config_quote(source).text, message);
        return -1;
    }
    return 0;
}

/* A list of patterns; where the row allows an empty one (min 0, a
 * permission's), also a single string, and "" is no pattern (RabbitMQ's
 * "nothing"), never the regex that matches everything. */
static int config_parse_patterns(struct config_parse *parse, const struct config_key *key,
                                 yaml_node_t *node, const char *path, void *base)
{
    struct config_pattern **patterns = config_field(base, key->offset);
    size_t *count = config_field(base, key->count_offset);
    if (config_is_null(node))
        return 0;
    bool single = key->min == 0 && node->type == YAML_SCALAR_NODE;
    if (node->type != YAML_SEQUENCE_NODE && !single)
        return config_fail(parse, config_line(node), path,
                           "expected a list of regular expressions, got %s",
                           config_describe(node).text);
    size_t items =
        single ? 1 : (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    config_free_patterns(*patterns, *count);
    *patterns = NULL;
    *count = 0;
    if (items == 0)
        return 0;
    *patterns = calloc(items, sizeof(**patterns));
    if (*patterns == NULL)
        return config_fail_memory(parse);

    for (size_t i = 0; i < items; i++) {
        yaml_node_t *item = single ? node : config_node(parse, node->data.sequence.items.start[i]);
        char item_path[CONFIG_PATH_MAX], reason[CONFIG_REASON_MAX];
        const char *source = NULL;
        if (single)
            snprintf(item_path, sizeof(item_path), "%s", path);
        else if (config_join_index(item_path, sizeof(item_path), path, i) < 0)
            return config_fail(parse, config_line(item), path, "too many patterns");
        if (item->type != YAML_SCALAR_NODE || config_is_null(item))
            return config_fail(parse, config_line(item), item_path,
                               "expected a regular expression, got %s", config_describe(item).text);
        if (config_scalar_text(parse, item, item_path, &source) < 0 ||
            config_check_length(parse, key, source, config_line(item), item_path) < 0)
            return -1;
        if (source[0] == '\0')
            continue; /* min 0: "" allows nothing */
        if (config_pattern_compile(&(*patterns)[*count], source, reason, sizeof(reason)) < 0)
            return config_fail(parse, config_line(item), item_path, "%s", reason);
        (*count)++;
    }
    return 0;
}

/* What regex_shape tracks of one nesting level of a pattern (the whole
 * pattern, or one group while it is open). */
struct config_regex_level {
    double total;         /* nodes of the level so far */
    double last;          /* nodes of its last item (what a quantifier copies) */
    bool have_last;       /* there is a last item in the current branch */
    bool last_nullable;   /* that item can match the empty string */
    bool before_nullable; /* every item of the current branch before the last can */
    bool branch_nullable; /* every item of the current branch can */
    bool nullable;        /* some finished branch of the level can */
    int last_anchors;     /* most anchors in a row inside the last item */
    int run;              /* anchors in a row ending with the last item */
    int anchors;          /* most anchors in a row in each finished branch, summed */
    int branch_anchors;   /* most in the current branch */
};

/* Why glibc's regcomp would take too long or too much memory on the ERE
 * `re`, or NULL when it would not. Three shapes, all found by the config
 * fuzz target:
 *  - too many nodes: a repetition copies its operand (x+ is x x*, x{n,m} is
 *    m copies of x), so stacked or nested repetitions multiply ("a+++..."
 *    doubles per '+', which made regcomp allocate gigabytes); the estimate
 *    counts each repetition's own node too, and is bounded by
 *    CONFIG_REGEX_COST_MAX;
 *  - a repetition (*, +, {n,m} with m > 1) of something that can match the
 *    empty string ("(a*)*", "a?+", "(|x)*", "()*"): its copies are joined by
 *    epsilon edges into loops, and regcomp's epsilon closures
 *    (calc_eclosure_iter) recompute over them with a cost of a high power of
 *    their size: "((a*)*){0,999}" takes 2.3 s, "0" with 18 '?' and then
 *    "+++++" 44 s, one more '+' minutes. Refused whatever the size ('?' and
 *    {0,1} of such an operand add no loop and stay allowed, so PCRE's lazy
 *    ".*?" still loads; its possessive ".*+" does not);
 *  - anchors (^ $ \b \B \< \> \` \') that follow each other without a
 *    character between them: regcomp duplicates the closure behind each one
 *    for its constraint, so 200 "\b" in a row exhaust memory and 990 '^'
 *    take a second; at most CONFIG_REGEX_ANCHORS_MAX in such a run.
 * The parse is an approximation on the safe side (it over-counts); regcomp
 * still refuses what is not a valid ERE. */
static const char *config_regex_refusal(const char *re)
{
    static const char too_many_nodes[] = "its repetitions (stacked like '++', or nested) would "
                                         "compile to more than 1000 nodes";
    static const char empty_repeated[] = "it repeats something that can match the empty string "
                                         "(like '(a*)*', 'a?+' or '(|a)*'), which regcomp "
                                         "takes minutes to compile";
    static const char too_many_anchors[] = "it has more than 4 anchors (^, $, \\b, \\<, ...) "
                                           "with no character between them";
    _Static_assert(CONFIG_REGEX_COST_MAX == 1000 && CONFIG_REGEX_ANCHORS_MAX == 4,
                   "the messages above name the bounds");
    struct config_regex_level level[CONFIG_REGEX_DEPTH_MAX + 1];
    size_t depth = 0;
    memset(&level[0], 0, sizeof(level[0]));
    level[0].branch_nullable = level[0].before_nullable = true;
    for (const char *p = re; *p; p++) {
        struct config_regex_level *at = &level[depth];
        /* the item this character adds, unless it is a quantifier */
        double nodes = 1;
        bool nullable = false;
        int anchors = 0;
        if (*p == '\\') {
            if (p[1])
                p++;
            if (strchr("bB<>`'", *p) != NULL) {
                nullable = true;
                anchors = 1;
            }
        } else if (*p == '^' || *p == '$') {
            nullable = true;
            anchors = 1;
        } else if (*p == '[') { /* a bracket expression: one item */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p && *p != ']') {
                if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    const char *end = strchr(p + 2, p[1]);
                    p = end && end[1] == ']' ? end + 1 : p;
                }
                p++;
            }
            if (!*p)
                break; /* regcomp refuses it */
        } else if (*p == '(') {
            if (++depth > CONFIG_REGEX_DEPTH_MAX)
                return too_many_nodes;
            memset(&level[depth], 0, sizeof(level[depth]));
            level[depth].branch_nullable = level[depth].before_nullable = true;
            continue;
        } else if (*p == ')' && depth > 0) {
            /* the group is one item of the level around it */
            nodes = at->total > 1 ? at->total : 1;
            nullable = at->nullable || at->branch_nullable;
            anchors = at->anchors + at->branch_anchors;
            at = &level[--depth];
        } else if (*p == '|') {
            at->nullable = at->nullable || at->branch_nullable;
            at->anchors += at->branch_anchors;
            at->branch_anchors = 0;
            at->branch_nullable = at->before_nullable = true;
            at->have_last = false;
            at->last = 0;
            at->run = 0;
            continue;
        } else if (*p == '*' || *p == '?' || *p == '+' || *p == '{') {
            double factor; /* copies of the operand beyond the first, plus one */
            bool loops;    /* the repetition joins copies by an epsilon loop */
            bool empty;    /* the result can match the empty string */
            if (*p == '{') {
                char *end;
                unsigned long low = strtoul(p + 1, &end, 10);
                unsigned long high = low;
                bool unbounded = false;
                if (*end == ',') {
                    unbounded = end[1] == '}';
                    high = unbounded ? low : strtoul(end + 1, &end, 10);
                    if (unbounded)
                        end++;
                }
                if (*end != '}')
                    return too_many_nodes; /* regcomp refuses it, or it is huge */
                factor = (double)high + 1;
                loops = unbounded || high > 1;
                empty = low == 0;
                p = end;
            } else {
                factor = *p == '+' ? 2 : 1;
                loops = *p != '?';
                empty = *p != '+';
            }
            if (at->have_last && at->last_nullable && loops)
                return empty_repeated;
            /* each repetition adds a node with epsilon edges */
            double copied = at->last * factor + 1;
            at->total += copied - at->last;
            at->last = copied;
            if (at->total > CONFIG_REGEX_COST_MAX)
                return too_many_nodes;
            /* an item that can now be empty continues the run of anchors */
            at->last_nullable = at->last_nullable || empty;
            at->branch_nullable = at->before_nullable && at->last_nullable;
            continue;
        }
        /* append the item; anchors inside an item that cannot be empty may
         * still be in a row with the next one's ("(a^)^"): count them again */
        at->before_nullable = at->branch_nullable;
        at->branch_nullable = at->branch_nullable && nullable;
        if (!at->have_last)
            at->run = anchors;
        else
            at->run = (at->last_nullable ? at->run : at->last_anchors) + anchors;
        if (at->run > CONFIG_REGEX_ANCHORS_MAX)
            return too_many_anchors;
        if (at->run > at->branch_anchors)
            at->branch_anchors = at->run;
        at->have_last = true;
        at->last_nullable = nullable;
        at->last_anchors = anchors;
        at->total += nodes;
        at->last = nodes;
        if (at->total > CONFIG_REGEX_COST_MAX)
            return too_many_nodes;
    }
    return NULL;
}

static int config_apply_defaults(struct config_parse *parse, const struct config_key *keys,
                                 size_t key_count, void *base);

static int config_parse_users(struct config_parse *parse, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base)
{
    struct config_user **users = config_field(base, key->offset);
    size_t *count = config_field(base, key->count_offset);
    if (config_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(parse, config_line(node), path, "expected a list of users, got %s",
                           config_describe(node).text);
    size_t items = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (items == 0)
        return 0;
    *users = calloc(items, sizeof(**users));
    if (*users == NULL)
        return config_fail_memory(parse);

    for (size_t i = 0; i < items; i++) {
        yaml_node_t *item = config_node(parse, node->data.sequence.items.start[i]);
        char item_path[CONFIG_PATH_MAX];
        if (config_join_index(item_path, sizeof(item_path), path, i) < 0)
            return config_fail(parse, config_line(item), path, "too many users");
        if (item->type != YAML_MAPPING_NODE)
            return config_fail(parse, config_line(item), item_path,
                               "expected a mapping with name and password_hash, got %s",
                               config_describe(item).text);
        struct config_user *user = &(*users)[i];
        (*count)++; /* zeroed by calloc, so config_free copes with a half-read user */
        if (config_apply_defaults(parse, key->keys, key->key_count, user) < 0 ||
            config_walk_mapping(parse, item, config_line(item), item_path, "", key->keys,
                                key->key_count, user) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*users)[j].name, user->name) != 0)
                continue;
            yaml_node_t *earlier = config_node(parse, node->data.sequence.items.start[j]);
            char name_path[CONFIG_PATH_MAX];
            if (config_join(name_path, sizeof(name_path), item_path, "name") < 0)
                snprintf(name_path, sizeof(name_path), "%s", item_path);
            return config_fail(parse, config_line(config_mapping_get(parse, item, "name")),
                               name_path, "duplicate user %s (first on line %zu)",
                               config_quote(user->name).text,
                               config_line(config_mapping_get(parse, earlier, "name")));
        }
    }
    return 0;
}

/* A list of names (a listener's protocols); each checked like a STRING row. */
static int config_parse_names(struct config_parse *parse, const struct config_key *key,
                              yaml_node_t *node, const char *path, void *base)
{
    char ***names = config_field(base, key->offset);
    size_t *count = config_field(base, key->count_offset);
    char reason[CONFIG_REASON_MAX];
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(parse, config_line(node), path, "expected a list of names, got %s",
                           config_describe(node).text);
    size_t items = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (items == 0 && (key->flags & CONFIG_KEY_EMPTY_LIST)) {
        config_free_names(*names, *count);
        *count = 0;
        /* non-NULL: `[]` (none) is not the absent key (NULL) */
        if ((*names = calloc(1, sizeof(**names))) == NULL)
            return config_fail_memory(parse);
        return 0;
    }
    if (items == 0)
        return config_fail(parse, config_line(node), path, "must name at least one %s",
                           key->count_offset == offsetof(struct config_listener, protocol_count)
                               ? "protocol"
                               : "value");
    config_free_names(*names, *count);
    *count = 0;
    *names = calloc(items, sizeof(**names));
    if (*names == NULL)
        return config_fail_memory(parse);
    for (size_t i = 0; i < items; i++) {
        yaml_node_t *item = config_node(parse, node->data.sequence.items.start[i]);
        char item_path[CONFIG_PATH_MAX];
        const char *text = NULL;
        if (config_join_index(item_path, sizeof(item_path), path, i) < 0)
            return config_fail(parse, config_line(item), path, "too many names");
        if (item->type != YAML_SCALAR_NODE || config_is_null(item))
            return config_fail(parse, config_line(item), item_path, "expected a name, got %s",
                               config_describe(item).text);
        if (config_scalar_text(parse, item, item_path, &text) < 0 ||
            config_check_length(parse, key, text, config_line(item), item_path) < 0)
            return -1;
        if (key->check != NULL && key->check(text, reason, sizeof(reason)) < 0)
            return config_fail(parse, config_line(item), item_path, "%s", reason);
        for (size_t j = 0; j < i; j++)
            if (strcmp((*names)[j], text) == 0)
                return config_fail(parse, config_line(item), item_path, "%s is listed twice",
                                   config_quote(text).text);
        if (((*names)[i] = strdup(text)) == NULL)
            return config_fail_memory(parse);
        (*count)++;
    }
    return 0;
}

/* "HOST:PORT" (a host name, an IPv4 address or "[IPv6]") with a port
 * 1-65535; a name is looked up later, on the worker pool (shovel.h). */
static bool config_is_host_port(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1] || strlen(colon + 1) > 5)
        return false;
    if (text[0] == '[' ? colon[-1] != ']' || colon - text < 3
                       : memchr(text, ':', (size_t)(colon - text)) != NULL)
        return false;
    unsigned long port = 0;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        port = port * 10 + (unsigned long)(*c - '0');
    }
    return port >= 1 && port <= 65535;
}

/* One end of a shovel, at `end_path` ("shovels[0].source"): a kbridge
 * destination or a legacy broker, with the keys its protocol needs. */
static int config_check_shovel_end(struct config_parse *parse, size_t line, const char *end_path,
                                   const struct config_shovel_end *end)
{
    char key_path[CONFIG_PATH_MAX];
    if (end->protocol == NULL)
        return config_fail(parse, line, end_path,
                           "has no protocol: kbridge, or stomp or amqp for a legacy broker");
    bool kbridge = strcmp(end->protocol, "kbridge") == 0;
    bool amqp = strcmp(end->protocol, "amqp") == 0;
    if (!kbridge && !amqp && strcmp(end->protocol, "stomp") != 0) {
        snprintf(key_path, sizeof(key_path), "%s.protocol", end_path);
        return config_fail(parse, line, key_path,
                           "%s is not a shovel protocol (kbridge, stomp, amqp)",
                           config_quote(end->protocol).text);
    }
    snprintf(key_path, sizeof(key_path), "%s.destination", end_path);
    if (end->destination == NULL)
        return config_fail(parse, line, key_path, "is required");
    if (kbridge && strncmp(end->destination, "/queue/", 7) != 0 &&
        strncmp(end->destination, "/topic/", 7) != 0)
        return config_fail(parse, line, key_path,
                           "%s is not a kbridge destination: /queue/NAME or /topic/NAME",
                           config_quote(end->destination).text);
    if (!kbridge && !amqp && strncmp(end->destination, "/", 1) != 0)
        return config_fail(parse, line, key_path,
                           "%s is not a STOMP destination such as /queue/NAME",
                           config_quote(end->destination).text);
    const char *legacy_only = end->address         ? "address"
                              : end->login         ? "login"
                              : end->passcode      ? "passcode"
                              : end->passcode_file ? "passcode_file"
                              : end->host          ? "host"
                                                   : NULL;
    if (kbridge && legacy_only) {
        snprintf(key_path, sizeof(key_path), "%s.%s", end_path, legacy_only);
        return config_fail(parse, line, key_path,
                           "is for a legacy broker; the kbridge end has only protocol and "
                           "destination");
    }
    if (!kbridge && end->address == NULL) {
        snprintf(key_path, sizeof(key_path), "%s.address", end_path);
        return config_fail(parse, line, key_path, "is required: the broker's host:port");
    }
    if (!kbridge && !config_is_host_port(end->address)) {
        snprintf(key_path, sizeof(key_path), "%s.address", end_path);
        return config_fail(parse, line, key_path,
                           "%s is not HOST:PORT (rabbit.example:5672, 127.0.0.1:61613, "
                           "[::1]:5672)",
                           config_quote(end->address).text);
    }
    if (end->passcode && end->passcode_file) {
        snprintf(key_path, sizeof(key_path), "%s.passcode_file", end_path);
        return config_fail(parse, line, key_path, "and passcode are both set; keep one");
    }
    return 0;
}

/* A shovel moves between kbridge and one legacy broker: exactly one end is
 * kbridge. */
static int config_finish_shovel(struct config_parse *parse, size_t line, const char *item_path,
                                const struct config_shovel *shovel)
{
    char end_path[CONFIG_PATH_MAX];
    if (config_join(end_path, sizeof(end_path), item_path, "source") < 0 ||
        config_check_shovel_end(parse, line, end_path, &shovel->source) < 0)
        return -1;
    if (config_join(end_path, sizeof(end_path), item_path, "destination") < 0 ||
        config_check_shovel_end(parse, line, end_path, &shovel->destination) < 0)
        return -1;
    bool from_kbridge = strcmp(shovel->source.protocol, "kbridge") == 0;
    bool to_kbridge = strcmp(shovel->destination.protocol, "kbridge") == 0;
    if (from_kbridge == to_kbridge)
        return config_fail(parse, line, item_path,
                           from_kbridge ? "both ends are kbridge: one must be a legacy broker"
                                        : "neither end is kbridge: a shovel moves messages "
                                          "between kbridge and one legacy broker");
    if (shovel->reconnect_delay_max < shovel->reconnect_delay_initial)
        return config_fail(parse, line, item_path,
                           "reconnect_delay_max is below reconnect_delay_initial");
    return 0;
}

/* `shovels`: a list of mappings of the rows in key->keys, names unique. */
static int config_parse_shovels(struct config_parse *parse, const struct config_key *key,
                                yaml_node_t *node, const char *path, void *base)
{
    struct config_shovel **shovels = config_field(base, key->offset);
    size_t *count = config_field(base, key->count_offset);
    if (config_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail(parse, config_line(node), path, "expected a list of shovels, got %s",
                           config_describe(node).text);
    size_t items = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (items == 0)
        return 0;
    *shovels = calloc(items, sizeof(**shovels));
    if (*shovels == NULL)
        return config_fail_memory(parse);
    for (size_t i = 0; i < items; i++) {
        yaml_node_t *item = config_node(parse, node->data.sequence.items.start[i]);
        char item_path[CONFIG_PATH_MAX];
        if (config_join_index(item_path, sizeof(item_path), path, i) < 0)
            return config_fail(parse, config_line(item), path, "too many shovels");
        if (item->type != YAML_MAPPING_NODE)
            return config_fail(parse, config_line(item), item_path,
                               "expected a mapping with name, source and destination, got %s",
                               config_describe(item).text);
        struct config_shovel *shovel = &(*shovels)[i];
        (*count)++; /* zeroed by calloc, so config_free copes with a half-read shovel */
        if (config_apply_defaults(parse, key->keys, key->key_count, shovel) < 0 ||
            config_walk_mapping(parse, item, config_line(item), item_path, "", key->keys,
                                key->key_count, shovel) < 0 ||
            config_finish_shovel(parse, config_line(item), item_path, shovel) < 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp((*shovels)[j].name, shovel->name) == 0)
                return config_fail(parse, config_line(item), item_path, "duplicate shovel name %s",
                                   config_quote(shovel->name).text);
    }
    return 0;
}

/* `listeners`: a mapping of names to listener mappings (the rows in
 * key->keys); a listener without `protocols` serves the one named like it. */
/* A mapping of names to mappings of the rows in key->keys (listeners,
 * vhosts): an array of `item_size`-byte structs that begin with `char *name`
 * at key->offset, their count at key->count_offset. `what` names an item in
 * messages ("listener"); names are 1 to `name_max` bytes, and Kafka-safe
 * (config_check_name) when `check_name`. `finish` (may be NULL) checks or
 * completes an item after its rows were walked. */
struct config_named_mapping {
    const char *what;
    size_t item_size;
    size_t name_max;
    bool check_name;
    bool value_may_be_empty;
    int (*finish)(struct config_parse *parse, size_t line, const char *item_path, void *item);
};

static int config_parse_named_mapping(struct config_parse *parse, const struct config_key *key,
                                      yaml_node_t *node, const char *path, void *base,
                                      const struct config_named_mapping *shape)
{
    void **items_field = config_field(base, key->offset);
    size_t *count = config_field(base, key->count_offset);
    char reason[CONFIG_REASON_MAX];
    if (config_is_null(node))
        return 0;
    if (node->type != YAML_MAPPING_NODE)
        return config_fail(parse, config_line(node), path,
                           "expected a mapping of %s names to %ss, got %s", shape->what,
                           shape->what, config_describe(node).text);
    if (config_check_duplicates(parse, node, path) < 0)
        return -1;
    size_t items = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (items == 0)
        return 0;
    char *array = calloc(items, shape->item_size);
    if (array == NULL)
        return config_fail_memory(parse);
    *items_field = array;
    for (size_t i = 0; i < items; i++) {
        yaml_node_t *name_node = config_node(parse, node->data.mapping.pairs.start[i].key);
        yaml_node_t *value_node = config_node(parse, node->data.mapping.pairs.start[i].value);
        size_t line = config_line(name_node);
        const char *name = NULL;
        char item_path[CONFIG_PATH_MAX];
        if (name_node->type != YAML_SCALAR_NODE)
            return config_fail(parse, line, path, "%s names must be plain text, got %s",
                               shape->what, config_describe(name_node).text);
        if (config_scalar_text(parse, name_node, path, &name) < 0)
            return -1;
        if (name[0] == '\0' || strlen(name) > shape->name_max)
            return config_fail(parse, line, path, "%s name %s must be 1 to %zu characters",
                               shape->what, config_quote(name).text, shape->name_max);
        if (shape->check_name && config_check_name(name, reason, sizeof(reason)) < 0)
            return config_fail(parse, line, path, "%s", reason);
        if (config_join(item_path, sizeof(item_path), path, name) < 0)
            return config_fail(parse, line, path, "%s name %s is too long", shape->what,
                               config_quote(name).text);
        void *item = array + i * shape->item_size;
        (*count)++;              /* zeroed by calloc, so config_free copes with a half-read item */
        char **item_name = item; /* every such struct begins with its name */
        if ((*item_name = strdup(name)) == NULL)
            return config_fail_memory(parse);
        if (!(shape->value_may_be_empty && config_is_null(value_node)) &&
            config_walk_mapping(parse, value_node, line, item_path, "", key->keys, key->key_count,
                                item) < 0)
            return -1;
        if (shape->finish && shape->finish(parse, line, item_path, item) < 0)
            return -1;
    }
    return 0;
}

/* A listener without `protocols` speaks the protocol it is named after. */
static int config_finish_listener(struct config_parse *parse, size_t line, const char *item_path,
                                  void *item)
{
    (void)line;
    (void)item_path;
    struct config_listener *listener = item;
    if (listener->protocol_count > 0)
        return 0;
    listener->protocols = calloc(1, sizeof(char *));
    if (listener->protocols == NULL || (listener->protocols[0] = strdup(listener->name)) == NULL)
        return config_fail_memory(parse);
    listener->protocol_count = 1;
    return 0;
}

static int config_parse_listeners(struct config_parse *parse, const struct config_key *key,
                                  yaml_node_t *node, const char *path, void *base)
{
    static const struct config_named_mapping shape = {
        .what = "listener",
        .item_size = sizeof(struct config_listener),
        .name_max = CONFIG_NAME_MAX,
        .check_name = true,
        .finish = config_finish_listener,
    };
    return config_parse_named_mapping(parse, key, node, path, base, &shape);
}

static int config_finish_vhost(struct config_parse *parse, size_t line, const char *item_path,
                               void *item)
{
    const struct config_vhost *vhost = item;
    if (strcmp(vhost->name, "/") == 0 && vhost->topic_prefix != NULL)
        return config_fail(parse, line, item_path,
                           "the vhost / always uses kafka.topic_prefix; remove its "
                           "topic_prefix");
    return 0;
}

/* `vhosts`: a mapping of vhost names to mappings of the rows in key->keys.
 * Any non-empty name of at most 255 bytes ("/" included), as RabbitMQ allows;
 * config_resolve_vhosts fills the prefixes afterwards. */
static int config_parse_vhosts(struct config_parse *parse, const struct config_key *key,
                               yaml_node_t *node, const char *path, void *base)
{
    static const struct config_named_mapping shape = {
        .what = "vhost",
        .item_size = sizeof(struct config_vhost),
        .name_max = 255,
        .value_may_be_empty = true,
        .finish = config_finish_vhost,
    };
    return config_parse_named_mapping(parse, key, node, path, base, &shape);
}

/* A user's `permissions`: a mapping of vhost names to {configure, write,
 * read}; `{}` is kept apart from the absent key (non-NULL, count 0). */
static int config_parse_permissions(struct config_parse *parse, const struct config_key *key,
                                    yaml_node_t *node, const char *path, void *base)
{
    static const struct config_named_mapping shape = {
        .what = "vhost",
        .item_size = sizeof(struct config_permission),
        .name_max = 255,
        .value_may_be_empty = true,
    };
    if (config_parse_named_mapping(parse, key, node, path, base, &shape) < 0)
        return -1;
    struct config_permission **permissions = config_field(base, key->offset);
    if (*permissions == NULL && !config_is_null(node) &&
        (*permissions = calloc(1, sizeof(**permissions))) == NULL)
        return config_fail_memory(parse);
    return 0;
}

/* After parsing: "/" first (added when the file leaves it out), mapped to
 * kafka.topic_prefix; every other vhost's prefix set (kafka.topic_prefix +
 * NAME + "." unless given) and made of Kafka topic characters. */
static int config_resolve_vhosts(struct config_parse *parse, struct config *config)
{
    size_t root = config->vhost_count;
    for (size_t i = 0; i < config->vhost_count; i++)
        if (strcmp(config->vhosts[i].name, "/") == 0)
            root = i;
    if (root == config->vhost_count) {
        struct config_vhost *grown =
            realloc(config->vhosts, (config->vhost_count + 1) * sizeof(*grown));
        if (grown == NULL)
            return config_fail_memory(parse);
        config->vhosts = grown;
        memset(&grown[config->vhost_count], 0, sizeof(*grown));
        config->vhost_count++;
        if ((grown[root].name = strdup("/")) == NULL)
            return config_fail_memory(parse);
    }
    if (root != 0) { /* "/" first */
        struct config_vhost slash = config->vhosts[root];
        memmove(&config->vhosts[1], &config->vhosts[0], root * sizeof(slash));
        config->vhosts[0] = slash;
    }
    for (size_t i = 0; i < config->vhost_count; i++) {
        struct config_vhost *vhost = &config->vhosts[i];
        if (vhost->topic_prefix != NULL)
            continue;
        char prefix[600];
        const char *global = config->kafka.topic_prefix ? config->kafka.topic_prefix : "";
        if (i == 0)
            snprintf(prefix, sizeof(prefix), "%s", global);
        else
            snprintf(prefix, sizeof(prefix), "%s%s.", global, vhost->name);
        char reason[CONFIG_REASON_MAX], path[CONFIG_PATH_MAX];
        if (config_join(path, sizeof(path), "vhosts", vhost->name) < 0)
            snprintf(path, sizeof(path), "vhosts");
        if (strlen(prefix) > 200 || config_check_topic_chars(prefix, reason, sizeof(reason)) < 0)
            return config_fail(parse, 0, path,
                               "the vhost's name cannot stand in its topic prefix (%s): set "
                               "topic_prefix",
                               config_quote(prefix).text);
        if ((vhost->topic_prefix = strdup(prefix)) == NULL)
            return config_fail_memory(parse);
    }
    return 0;
}

/* Parse the value of a key found in the table. */
static int config_parse_value(struct config_parse *parse, const struct config_key *key,
                              yaml_node_t *node, size_t key_line, const char *path, void *base)
{
    switch (key->type) {
    case CONFIG_TYPE_PROPERTIES:
        return config_parse_properties(parse, node, path, config_field(base, key->offset));
    case CONFIG_TYPE_PATTERNS: return config_parse_patterns(parse, key, node, path, base);
    case CONFIG_TYPE_USERS: return config_parse_users(parse, key, node, path, base);
    case CONFIG_TYPE_PERMISSIONS: return config_parse_permissions(parse, key, node, path, base);
    case CONFIG_TYPE_SHOVELS: return config_parse_shovels(parse, key, node, path, base);
    case CONFIG_TYPE_NAMES: return config_parse_names(parse, key, node, path, base);
    case CONFIG_TYPE_LISTENERS: return config_parse_listeners(parse, key, node, path, base);
    case CONFIG_TYPE_VHOSTS: return config_parse_vhosts(parse, key, node, path, base);
    default: break;
    }
    const char *text = NULL;
    if (node->type != YAML_SCALAR_NODE)
        return config_fail(parse, config_line(node), path, "expected %s, got %s",
                           config_type_expectation(key->type), config_describe(node).text);
    if (config_is_null(node))
        return config_fail(parse, key_line, path, "has no value");
    if (config_scalar_text(parse, node, path, &text) < 0)
        return -1;
    return config_set_scalar(parse, key, text, config_line(node), path, base);
}

static const struct config_key *config_find_key(const struct config_key *keys, size_t key_count,
                                                const char *relative)
{
    for (size_t i = 0; i < key_count; i++)
        if (strcmp(keys[i].name, relative) == 0)
            return &keys[i];
    return NULL;
}

/* The name of the child of `parent` on the way to `name`, or NULL when
 * `name` is not below `parent` ("limits", "limits.max_headers" -> "max_headers"). */
static const char *config_child_name(const char *parent, const char *name, char *out,
                                     size_t out_size)
{
    size_t parent_len = strlen(parent);
    if (parent_len > 0) {
        if (strncmp(name, parent, parent_len) != 0 || name[parent_len] != '.')
            return NULL;
        name += parent_len + 1;
    }
    size_t len = strcspn(name, ".");
    if (len >= out_size)
        return NULL;
    memcpy(out, name, len);
    out[len] = '\0';
    return out;
}

/* True when some key lies below `relative`, which is then a section. */
static bool config_is_section(const struct config_key *keys, size_t key_count, const char *relative)
{
    size_t len = strlen(relative);
    for (size_t i = 0; i < key_count; i++)
        if (strncmp(keys[i].name, relative, len) == 0 && keys[i].name[len] == '.')
            return true;
    return false;
}

/* Edit distance of two short names; SIZE_MAX when either is long. */
static size_t config_edit_distance(const char *a, const char *b)
{
    size_t a_len = strlen(a), b_len = strlen(b);
    size_t row[65];
    if (a_len > 64 || b_len > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= b_len; j++)
        row[j] = j;
    for (size_t i = 1; i <= a_len; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b_len; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[b_len];
}

/* "unknown key", with a near name of the same mapping when there is one. */
static int config_fail_unknown(struct config_parse *parse, size_t line, const char *path,
                               const char *name, const char *relative,
                               const struct config_key *keys, size_t key_count)
{
    char best[64] = "", child[64];
    size_t best_score = SIZE_MAX;
    for (size_t i = 0; i < key_count; i++) {
        if (config_child_name(relative, keys[i].name, child, sizeof(child)) == NULL)
            continue;
        /* near: at most 2 edits from the key, or from its start ("max_frame",
         * "pasword" for "max_frame_size", "password_hash") */
        size_t score = config_edit_distance(name, child);
        size_t name_len = strlen(name);
        if (score > 2 && name_len >= 5 && strlen(child) > name_len) {
            char head[64];
            memcpy(head, child, name_len);
            head[name_len] = '\0';
            if (config_edit_distance(name, head) <= 2)
                score = 2;
        }
        if (score > 2)
            continue;
        if (score < best_score) {
            best_score = score;
            snprintf(best, sizeof(best), "%s", child);
        }
    }
    if (best[0] != '\0')
        return config_fail(parse, line, path, "unknown key (did you mean \"%s\"?)", best);
    return config_fail(parse, line, path, "unknown key");
}

/* A section key written in its former spelling (`path`, an alias's old_name):
 * parsed with the section's row into the section's values, after refusing a
 * file that writes both spellings; logs the deprecation. */
static int config_parse_alias(struct config_parse *parse, struct config_section_values *section,
                              const struct config_alias *alias, yaml_node_t *value_node,
                              size_t line, const char *path)
{
    char new_path[CONFIG_PATH_MAX];
    const struct config_key *key =
        config_find_key(section->section->keys, section->section->key_count, alias->key);
    if (key == NULL ||
        config_join(new_path, sizeof(new_path), section->section->name, alias->key) < 0)
        return config_fail(parse, line, path, "internal error: alias of an unknown key");
    yaml_node_t *section_node =
        parse->root != NULL ? config_mapping_get(parse, parse->root, section->section->name) : NULL;
    yaml_node_t *new_node =
        section_node != NULL ? config_mapping_get(parse, section_node, alias->key) : NULL;
    if (new_node != NULL)
        return config_fail(parse, line, path,
                           "is the former spelling of %s, which is set too (line %zu); keep "
                           "only %s",
                           new_path, config_line(new_node), new_path);
    log_warn("config", "%s:%zu: %s is deprecated; write %s instead", parse->file, line, path,
             new_path);
    return config_parse_value(parse, key, value_node, line, path, section->values);
}

/* Each user has exactly one of password_hash and password, and a
 * plaintext password only with auth.insecure_plaintext. */
static int config_check_user_secrets(struct config_parse *parse, const struct config *config)
{
    yaml_node_t *auth = config_mapping_get(parse, parse->root, "auth");
    yaml_node_t *users = auth != NULL ? config_mapping_get(parse, auth, "users") : NULL;
    for (size_t i = 0; i < config->auth.user_count; i++) {
        const struct config_user *user = &config->auth.users[i];
        yaml_node_t *item =
            users != NULL && users->type == YAML_SEQUENCE_NODE &&
                    i < (size_t)(users->data.sequence.items.top - users->data.sequence.items.start)
                ? config_node(parse, users->data.sequence.items.start[i])
                : NULL;
        yaml_node_t *plain = item != NULL ? config_mapping_get(parse, item, "password") : NULL;
        size_t line = plain != NULL ? config_line(plain) : item != NULL ? config_line(item) : 1;
        char path[CONFIG_PATH_MAX];
        snprintf(path, sizeof(path), "auth.users[%zu]", i);
        if (user->password == NULL && user->password_hash == NULL)
            return config_fail(parse, line, path, "missing required key \"password_hash\"");
        if (user->password != NULL && user->password_hash != NULL)
            return config_fail(parse, line, path, "set password_hash or password, not both");
        if (user->password != NULL && !config->auth.insecure_plaintext) {
            snprintf(path, sizeof(path), "auth.users[%zu].password", i);
            return config_fail(parse, line, path,
                               "plaintext passwords are refused; write its hash in "
                               "password_hash (kbridged --hash-password prints one), or set "
                               "auth.insecure_plaintext: true for tests");
        }
    }
    return 0;
}

/* A user with `permissions` has no publish, consume or vhosts, and its
 * permissions name configured vhosts. */
static int config_check_user_permissions(struct config_parse *parse, size_t i,
                                         const struct config_user *user, yaml_node_t *item)
{
    if (user->permissions == NULL)
        return 0;
    static const char *const others[] = {"publish", "consume", "vhosts"};
    bool set[] = {user->publish_count > 0, user->consume_count > 0, user->vhosts != NULL};
    char path[CONFIG_PATH_MAX];
    yaml_node_t *node = item != NULL ? config_mapping_get(parse, item, "permissions") : NULL;
    for (size_t k = 0; k < 3; k++) {
        if (!set[k])
            continue;
        snprintf(path, sizeof(path), "auth.users[%zu].%s", i, others[k]);
        return config_fail(parse, node != NULL ? config_line(node) : 0, path,
                           "set permissions (per vhost) or %s, not both", others[k]);
    }
    for (size_t p = 0; p < user->permission_count; p++) {
        const char *name = user->permissions[p].vhost;
        if (config_vhost_find(parse->config, name) != NULL || strcmp(name, "/") == 0)
            continue;
        snprintf(path, sizeof(path), "auth.users[%zu].permissions", i);
        return config_fail(parse, node != NULL ? config_line(node) : 0, path,
                           "no vhost %s in vhosts", config_quote(name).text);
    }
    return 0;
}

/* Each user's `vhosts` names configured vhosts ("/" always is one; the
 * file's vhosts are parsed by now, wherever they stand in it). */
static int config_check_user_vhosts(struct config_parse *parse, const struct config *config)
{
    yaml_node_t *auth = config_mapping_get(parse, parse->root, "auth");
    yaml_node_t *users = auth != NULL ? config_mapping_get(parse, auth, "users") : NULL;
    for (size_t i = 0; i < config->auth.user_count; i++) {
        const struct config_user *user = &config->auth.users[i];
        yaml_node_t *user_node =
            users != NULL && users->type == YAML_SEQUENCE_NODE &&
                    i < (size_t)(users->data.sequence.items.top - users->data.sequence.items.start)
                ? config_node(parse, users->data.sequence.items.start[i])
                : NULL;
        if (config_check_user_permissions(parse, i, user, user_node) < 0)
            return -1;
        for (size_t v = 0; v < user->vhost_count; v++) {
            const char *name = user->vhosts[v];
            if (strcmp(name, "/") == 0 || config_vhost_find(config, name) != NULL)
                continue;
            yaml_node_t *item = users != NULL && users->type == YAML_SEQUENCE_NODE &&
                                        i < (size_t)(users->data.sequence.items.top -
                                                     users->data.sequence.items.start)
                                    ? config_node(parse, users->data.sequence.items.start[i])
                                    : NULL;
            yaml_node_t *list = item != NULL ? config_mapping_get(parse, item, "vhosts") : NULL;
            yaml_node_t *entry = list != NULL && list->type == YAML_SEQUENCE_NODE &&
                                         v < (size_t)(list->data.sequence.items.top -
                                                      list->data.sequence.items.start)
                                     ? config_node(parse, list->data.sequence.items.start[v])
                                     : list;
            char path[CONFIG_PATH_MAX];
            snprintf(path, sizeof(path), "auth.users[%zu].vhosts[%zu]", i, v);
            return config_fail(parse, entry != NULL ? config_line(entry) : 0, path,
                               "no vhost %s in vhosts", config_quote(name).text);
        }
    }
    return 0;
}

const struct config_permission *config_user_permission(const struct config_user *user,
                                                       const char *vhost)
{
    for (size_t i = 0; i < user->permission_count; i++)
        if (strcmp(user->permissions[i].vhost, vhost) == 0)
            return &user->permissions[i];
    return NULL;
}

const struct config_pattern *config_user_patterns(const struct config_user *user, const char *vhost,
                                                  bool write, size_t *count)
{
    if (user->permissions == NULL) {
        *count = write ? user->publish_count : user->consume_count;
        return write ? user->publish : user->consume;
    }
    const struct config_permission *entry = config_user_permission(user, vhost);
    *count = entry == NULL ? 0 : write ? entry->write_count : entry->read_count;
    return entry == NULL ? NULL : write ? entry->write : entry->read;
}

bool config_patterns_match(const struct config_pattern *patterns, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (regexec(&patterns[i].regex, name, 0, NULL, 0) == 0)
            return true;
    return false;
}

bool config_user_may_use_vhost(const struct config_user *user, const char *vhost)
{
    if (user->permissions != NULL)
        return config_user_permission(user, vhost) != NULL;
    if (user->vhosts == NULL)
        return true;
    for (size_t i = 0; i < user->vhost_count; i++)
        if (strcmp(user->vhosts[i], vhost) == 0)
            return true;
    return false;
}

/* definitions.import_users: the file's users and permissions (config_import.c). */
static int config_load_imported_users(struct config_parse *parse, struct config *config)
{
    char reason[CONFIG_REASON_MAX];
    if (config->definitions.file == NULL)
        return config_fail(parse, 0, "definitions.import_users",
                           "needs definitions.file (the export to take users from)");
    if (config_import_users(config, reason, sizeof(reason)) < 0)
        return config_fail(parse, 0, "definitions.file", "%s", reason);
    return 0;
}

static int config_walk_pair(struct config_parse *parse, yaml_node_t *key_node,
                            yaml_node_t *value_node, const char *path, const char *relative,
                            const struct config_key *keys, size_t key_count, void *base)
{
    const char *name = NULL;
    char key_path[CONFIG_PATH_MAX], key_relative[CONFIG_PATH_MAX];
    size_t line = config_line(key_node);

    if (key_node->type != YAML_SCALAR_NODE)
        return config_fail(parse, line, path, "keys must be plain names, got %s",
                           config_describe(key_node).text);
    if (config_scalar_text(parse, key_node, path, &name) < 0)
        return -1;
    if (config_join(key_path, sizeof(key_path), path, name) < 0 ||
        config_join(key_relative, sizeof(key_relative), relative, name) < 0)
        return config_fail(parse, line, path, "unknown key %s", config_quote(name).text);
    /* "limits.max_headers: 5" is not a short form of the nested key */
    if (strchr(name, '.') != NULL)
        return config_fail(parse, line, key_path,
                           "unknown key (write nested keys as nested mappings)");

    const struct config_key *key = config_find_key(keys, key_count, key_relative);
    if (key != NULL)
        return config_parse_value(parse, key, value_node, line, key_path, base);
    if (config_is_section(keys, key_count, key_relative))
        return config_walk_mapping(parse, value_node, line, key_path, key_relative, keys, key_count,
                                   base);
    if (keys == config_keys && parse->config != NULL) {
        /* an adapter's section ("stomp"), or a former spelling of one of its keys */
        struct config_section_values *section =
            relative[0] == '\0' ? config_find_section(parse->config, name) : NULL;
        if (section != NULL)
            return config_walk_mapping(parse, value_node, line, key_path, "",
                                       section->section->keys, section->section->key_count,
                                       section->values);
        for (size_t s = 0; s < parse->config->section_count; s++) {
            section = &parse->config->sections[s];
            for (size_t a = 0; a < section->section->alias_count; a++)
                if (strcmp(section->section->aliases[a].old_name, key_relative) == 0)
                    return config_parse_alias(parse, section, &section->section->aliases[a],
                                              value_node, line, key_path);
        }
    }
    return config_fail_unknown(parse, line, key_path, name, relative, keys, key_count);
}

/* Walk a mapping (or a key written without a value, read as an empty one)
 * whose path is `path` for messages and `relative` within `keys`. */
static int config_walk_mapping(struct config_parse *parse, yaml_node_t *node, size_t key_line,
                               const char *path, const char *relative,
                               const struct config_key *keys, size_t key_count, void *base)
{
    if (node->type == YAML_MAPPING_NODE) {
        if (config_check_duplicates(parse, node, path) < 0)
            return -1;
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
            if (config_walk_pair(parse, config_node(parse, pair->key),
                                 config_node(parse, pair->value), path, relative, keys, key_count,
                                 base) < 0)
                return -1;
        }
    } else if (!config_is_null(node)) {
        return config_fail(parse, config_line(node), path, "expected a mapping, got %s",
                           config_describe(node).text);
    }

    /* required keys directly in this mapping (not in its sections) */
    size_t relative_len = strlen(relative);
    for (size_t i = 0; i < key_count; i++) {
        const char *name = keys[i].name;
        if (!(keys[i].flags & CONFIG_KEY_REQUIRED))
            continue;
        if (relative_len > 0) {
            if (strncmp(name, relative, relative_len) != 0 || name[relative_len] != '.')
                continue;
            name += relative_len + 1;
        }
        if (strchr(name, '.') == NULL && config_mapping_get(parse, node, name) == NULL)
            return config_fail(parse, key_line, path, "missing required key \"%s\"", name);
    }
    return 0;
}

static int config_apply_defaults(struct config_parse *parse, const struct config_key *keys,
                                 size_t key_count, void *base)
{
    for (size_t i = 0; i < key_count; i++)
        if (keys[i].default_value != NULL &&
            config_set_scalar(parse, &keys[i], keys[i].default_value, 0, keys[i].name, base) < 0)
            return -1;
    return 0;
}

/* Line of a byte offset, for libyaml reader errors which carry no mark. */
static size_t config_line_of_offset(const char *text, size_t len, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset && i < len; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

static int config_fail_yaml(struct config_parse *parse, const yaml_parser_t *parser,
                            const char *text, size_t len)
{
    const char *problem = parser->problem != NULL ? parser->problem : "unknown error";
    switch (parser->error) {
    case YAML_NO_ERROR: /* libyaml fails without a reason only when an allocation fails */
    case YAML_MEMORY_ERROR: return config_fail_memory(parse);
    case YAML_READER_ERROR:
        return config_fail(parse, config_line_of_offset(text, len, parser->problem_offset), "",
                           "syntax error: %s", problem);
    default:
        if (parser->context != NULL)
            return config_fail(parse, parser->problem_mark.line + 1, "",
                               "syntax error: %s (%s on line %zu)", problem, parser->context,
                               parser->context_mark.line + 1);
        return config_fail(parse, parser->problem_mark.line + 1, "", "syntax error: %s", problem);
    }
}

/* The host name as node_id when the file sets none; it must pass node_id's
 * own checks. */
static int config_default_node_id(struct config_parse *parse, struct config *config)
{
    char host[256];
    char reason[CONFIG_REASON_MAX];
    if (config->node_id != NULL)
        return 0;
    if (gethostname(host, sizeof(host)) != 0)
        return config_fail(parse, 0, "node_id", "not set, and the host name is unreadable (%s)",
                           strerror(errno));
    host[sizeof(host) - 1] = '\0';
    const struct config_key *key = config_find_key(config_keys, config_key_count, "node_id");
    if (host[0] == '\0' || strlen(host) > key->max ||
        (key->check != NULL && key->check(host, reason, sizeof(reason)) < 0))
        return config_fail(parse, 0, "node_id", "not set, and the host name %s cannot stand in",
                           config_quote(host).text);
    return config_set_string(parse, &config->node_id, host);
}

/* Parse `text` into `config`, whose defaults are already set. */
static int config_parse_document(struct config_parse *parse, const char *text, size_t len,
                                 struct config *config)
{
    yaml_parser_t parser;
    yaml_document_t document, next;
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        return config_fail_memory(parse);
    /* libyaml asserts on a NULL input, even an empty one */
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text != NULL ? text : ""),
                                 text != NULL ? len : 0);
    if (!yaml_parser_load(&parser, &document)) {
        rc = config_fail_yaml(parse, &parser, text, len);
        yaml_parser_delete(&parser);
        return rc;
    }

    yaml_node_t *root = yaml_document_get_root_node(&document);
    if (root != NULL) {
        /* one document per file: a second "---" is a mistake, not ignored */
        if (!yaml_parser_load(&parser, &next)) {
            rc = config_fail_yaml(parse, &parser, text, len);
        } else {
            yaml_node_t *next_root = yaml_document_get_root_node(&next);
            if (next_root != NULL)
                rc = config_fail(parse, config_line(next_root), "",
                                 "more than one YAML document (one configuration per file)");
            yaml_document_delete(&next);
        }
    }
    if (rc == 0 && root != NULL) {
        parse->document = &document;
        parse->root = root;
        parse->config = config;
        rc = config_walk_mapping(parse, root, 1, "", "", config_keys, config_key_count, config);
        if (rc == 0)
            rc = config_check_user_secrets(parse, config);
        if (rc == 0)
            rc = config_check_user_vhosts(parse, config);
        if (rc == 0 && config->definitions.import_users)
            rc = config_load_imported_users(parse, config);
        parse->document = NULL;
        parse->root = NULL;
        parse->config = NULL;
    }
    yaml_document_delete(&document);
    yaml_parser_delete(&parser);
    return rc;
}

/* Add the sections of `sections` that `config` lacks, each with its defaults. */
static int config_add_sections_parse(struct config_parse *parse, struct config *config,
                                     const struct config_section *const *sections, size_t count)
{
    char reason[CONFIG_REASON_MAX];
    for (size_t i = 0; i < count; i++) {
        const struct config_section *section = sections[i];
        const struct config_section_values *held = config_find_section(config, section->name);
        if (held != NULL && held->section != section)
            return config_fail(parse, 0, section->name,
                               "internal error: two config sections of this name");
        if (held != NULL)
            continue;
        if (section->name[0] == '\0' ||
            config_check_name(section->name, reason, sizeof(reason)) < 0)
            return config_fail(parse, 0, section->name,
                               "internal error: a config section needs a plain name");
        if (config_find_key(config_keys, config_key_count, section->name) != NULL ||
            config_is_section(config_keys, config_key_count, section->name))
            return config_fail(parse, 0, section->name,
                               "internal error: an adapter's config section is named like a "
                               "shared key");
        struct config_section_values *grown =
            realloc(config->sections, (config->section_count + 1) * sizeof(*grown));
        if (grown == NULL)
            return config_fail_memory(parse);
        config->sections = grown;
        struct config_section_values *added = &grown[config->section_count];
        added->section = section;
        added->values = calloc(1, section->size > 0 ? section->size : 1);
        if (added->values == NULL)
            return config_fail_memory(parse);
        config->section_count++;
        for (size_t k = 0; k < section->key_count; k++) {
            const struct config_key *key = &section->keys[k];
            char path[CONFIG_PATH_MAX];
            if (key->default_value == NULL)
                continue;
            if (config_join(path, sizeof(path), section->name, key->name) < 0)
                return config_fail(parse, 0, section->name, "internal error: key name too long");
            if (config_set_scalar(parse, key, key->default_value, 0, path, added->values) < 0)
                return -1;
        }
    }
    return 0;
}

int config_add_sections(struct config *config, const struct config_section *const *sections,
                        size_t count, char *err, size_t err_size)
{
    struct config_parse parse = {
        .file = config->path != NULL ? config->path : "config", .err = err, .err_size = err_size};
    return config_add_sections_parse(&parse, config, sections, count);
}

int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t err_size)
{
    return config_load_string_sections(name, yaml, len, NULL, 0, out, err, err_size);
}

int config_load_string_sections(const char *name, const char *yaml, size_t len,
                                const struct config_section *const *sections, size_t count,
                                struct config **out, char *err, size_t err_size)
{
    struct config_parse parse = {.file = name, .err = err, .err_size = err_size};
    *out = NULL;
    if (err != NULL && err_size > 0)
        err[0] = '\0';

    struct config *config = calloc(1, sizeof(*config));
    if (config == NULL)
        return config_fail_memory(&parse);
    if (config_apply_defaults(&parse, config_keys, config_key_count, config) < 0 ||
        config_add_sections_parse(&parse, config, sections, count) < 0 ||
        config_parse_document(&parse, yaml, len, config) < 0 ||
        config_default_node_id(&parse, config) < 0 || config_resolve_vhosts(&parse, config) < 0 ||
        config_set_string(&parse, &config->path, name) < 0) {
        config_free(config);
        return -1;
    }
    *out = config;
    return 0;
}

/* Read a whole file; refuses files over CONFIG_FILE_MAX rather than cutting. */
static int config_read_file(struct config_parse *parse, const char *path, char **out,
                            size_t *out_len)
{
    FILE *stream = fopen(path, "rb");
    if (stream == NULL)
        return config_fail(parse, 0, "", "cannot open: %s", strerror(errno));
    size_t capacity = 0, len = 0;
    char *text = NULL;
    for (;;) {
        if (len > CONFIG_FILE_MAX) {
            free(text);
            fclose(stream);
            return config_fail(parse, 0, "", "larger than 16MiB, not a configuration file");
        }
        if (len == capacity) {
            size_t grown = capacity == 0 ? 4096 : capacity * 2;
            char *bigger = realloc(text, grown);
            if (bigger == NULL) {
                free(text);
                fclose(stream);
                return config_fail_memory(parse);
            }
            text = bigger;
            capacity = grown;
        }
        size_t got = fread(text + len, 1, capacity - len, stream);
        len += got;
        if (got == 0) {
            if (ferror(stream)) {
                int error = errno;
                free(text);
                fclose(stream);
                return config_fail(parse, 0, "", "cannot read: %s", strerror(error));
            }
            break;
        }
    }
    fclose(stream);
    *out = text;
    *out_len = len;
    return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t err_size)
{
    return config_load_sections(path, NULL, 0, out, err, err_size);
}

int config_load_sections(const char *path, const struct config_section *const *sections,
                         size_t count, struct config **out, char *err, size_t err_size)
{
    struct config_parse parse = {.file = path, .err = err, .err_size = err_size};
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    if (config_read_file(&parse, path, &text, &len) < 0)
        return -1;
    int rc = config_load_string_sections(path, text, len, sections, count, out, err, err_size);
    free(text);
    return rc;
}
