/* SPDX-License-Identifier: Apache-2.0 */
/* config_key.h -- the row type of a configuration key table: what one key
 * is called, its type, bounds, default, flags and description. The shared
 * table (config_table.c) and every adapter's config section (struct
 * config_section in config.h, declared by the adapter's descriptor) are
 * arrays of these rows; config.c loads, frees, compares and documents any
 * table of them. */
#ifndef KBRIDGE_CONFIG_KEY_H
#define KBRIDGE_CONFIG_KEY_H

#include <stddef.h>
#include <stdint.h>

enum config_type {
    CONFIG_TYPE_STRING,      /* char * */
    CONFIG_TYPE_BOOL,        /* bool */
    CONFIG_TYPE_UINT32,      /* uint32_t within [min, max] */
    CONFIG_TYPE_SIZE,        /* uint64_t bytes within [min, max] */
    CONFIG_TYPE_DURATION,    /* uint64_t milliseconds within [min, max] */
    CONFIG_TYPE_LOG_LEVEL,   /* enum log_level */
    CONFIG_TYPE_LOG_FORMAT,  /* enum log_format */
    CONFIG_TYPE_PROPERTIES,  /* struct config_properties: a map of scalars */
    CONFIG_TYPE_ADDRESS,     /* char *: "host:port" or "[IPv6]:port" (a listener's bind) */
    CONFIG_TYPE_NAMES,       /* char ** with a size_t count at count_offset; min/max: length */
    CONFIG_TYPE_LISTENERS,   /* struct config_listener * keyed by name, count at count_offset */
    CONFIG_TYPE_PATTERNS,    /* struct config_pattern * with a size_t count at count_offset */
    CONFIG_TYPE_USERS,       /* struct config_user * with a size_t count at count_offset */
    CONFIG_TYPE_VHOSTS,      /* struct config_vhost * keyed by name, count at count_offset */
    CONFIG_TYPE_SHOVELS,     /* struct config_shovel * with a size_t count at count_offset */
    CONFIG_TYPE_PERMISSIONS, /* struct config_permission * keyed by vhost (a user's) */
};

enum {
    /* Read at start only: config_apply_live keeps the running value. */
    CONFIG_KEY_RESTART = 1 << 0,
    /* Must be present whenever the mapping that holds it is (a user's name,
     * a listener's bind). */
    CONFIG_KEY_REQUIRED = 1 << 1,
    /* Never quote the value in a message (password hashes). */
    CONFIG_KEY_SECRET = 1 << 2,
    /* NAMES: `[]` is allowed and kept apart from an absent key: the field
     * is then a non-NULL array with a count of 0 (absent: NULL). */
    CONFIG_KEY_EMPTY_LIST = 1 << 3,
};

/* Extra validation of a string value: 0 if fine, else -1 and one sentence
 * (without the key) in reason. */
typedef int config_check_fn(const char *value, char *reason, size_t reason_size);

/* One key: everything the loader, config_free, config_apply_live and the
 * reference need to know about it. */
struct config_key {
    const char *name; /* dotted path from the table's root (a section's: from the section) */
    enum config_type type;
    size_t offset;                 /* of the field in the table's struct (a section's own) */
    size_t count_offset;           /* PATTERNS, USERS: of the element count */
    uint64_t min, max;             /* numbers: of the value; strings, patterns: of the length */
    const char *default_value;     /* parsed like a value from the file; NULL: none */
    const char *default_doc;       /* the reference's text when default_value is NULL */
    unsigned flags;                /* CONFIG_KEY_* */
    config_check_fn *check;        /* STRING only; NULL: no extra check */
    const struct config_key *keys; /* USERS, LISTENERS, VHOSTS: the keys of one element */
    size_t key_count;
    const char *description; /* Markdown for docs/configuration.md */
};

#endif
