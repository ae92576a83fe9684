/* config_table.h -- internal to the config module: the key table's row type
 * and the value syntax shared by config.c (loading) and config_table.c (the
 * table, the value checks and the Markdown reference). Not for other modules:
 * they use config.h. */
#ifndef KBRIDGE_CONFIG_TABLE_H
#define KBRIDGE_CONFIG_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_QUOTE_MAX 64   /* bytes of a value quoted in a message */
#define CONFIG_REASON_MAX 512 /* one reason written by a check function */
#define CONFIG_NAME_MAX 64    /* longest listener or protocol name */

enum config_type {
    CONFIG_TYPE_STRING,     /* char * */
    CONFIG_TYPE_BOOL,       /* bool */
    CONFIG_TYPE_UINT32,     /* uint32_t within [min, max] */
    CONFIG_TYPE_SIZE,       /* uint64_t bytes within [min, max] */
    CONFIG_TYPE_DURATION,   /* uint64_t milliseconds within [min, max] */
    CONFIG_TYPE_LOG_LEVEL,  /* enum log_level */
    CONFIG_TYPE_LOG_FORMAT, /* enum log_format */
    CONFIG_TYPE_PROPERTIES, /* struct config_properties: a map of scalars */
    CONFIG_TYPE_ADDRESS,    /* char *: "host:port" or "[IPv6]:port" (a listener's bind) */
    CONFIG_TYPE_NAMES,      /* char ** with a size_t count at count_offset; min/max: length */
    CONFIG_TYPE_LISTENERS,  /* struct config_listener * keyed by name, count at count_offset */
    CONFIG_TYPE_PATTERNS,   /* struct config_pattern * with a size_t count at count_offset */
    CONFIG_TYPE_USERS,      /* struct config_user * with a size_t count at count_offset */
};

enum {
    /* Read at start only: config_apply_live keeps the running value. */
    CONFIG_KEY_RESTART = 1 << 0,
    /* Must be present whenever the mapping that holds it is (a user's name,
     * a listener's bind). */
    CONFIG_KEY_REQUIRED = 1 << 1,
    /* Never quote the value in a message (password hashes). */
    CONFIG_KEY_SECRET = 1 << 2,
};

/* Extra validation of a string value: 0 if fine, else -1 and one sentence
 * (without the key) in reason. */
typedef int config_check_fn(const char *value, char *reason, size_t reason_size);

/* One key: everything the loader, config_free, config_apply_live and the
 * reference need to know about it. */
struct config_key {
    const char *name; /* dotted path from the table's root */
    enum config_type type;
    size_t offset;                 /* of the field in the table's struct */
    size_t count_offset;           /* PATTERNS, USERS: of the element count */
    uint64_t min, max;             /* numbers: of the value; strings, patterns: of the length */
    const char *default_value;     /* parsed like a value from the file; NULL: none */
    const char *default_doc;       /* the reference's text when default_value is NULL */
    unsigned flags;                /* CONFIG_KEY_* */
    config_check_fn *check;        /* STRING only; NULL: no extra check */
    const struct config_key *keys; /* USERS, LISTENERS: the keys of one element */
    size_t key_count;
    const char *description; /* Markdown for docs/configuration.md */
};

/* The keys of struct config, in the reference's order. */
extern const struct config_key config_keys[];
extern const size_t config_key_count;

/* A value quoted for a message, returned by value so it can sit in an
 * argument list: config_quote(text).text. */
struct config_text {
    char text[CONFIG_QUOTE_MAX * 4 + 16];
};

/* Quote `value` for a message: escapes '"', '\' and control characters and
 * cuts after CONFIG_QUOTE_MAX bytes (at a character boundary) with "...". */
struct config_text config_quote(const char *value);

/* Whole-text parsers: 0 ok, -1 not of that form, -2 too large for 64 bits. */
int config_read_number(const char *text, uint64_t *out);
int config_read_size(const char *text, uint64_t *out);
int config_read_duration(const char *text, uint64_t *out_ms);

/* "1MiB", "30m": the largest unit that divides the value; 0 prints as "0". */
void config_format_size(uint64_t bytes, char *out, size_t out_size);
void config_format_duration(uint64_t ms, char *out, size_t out_size);

/* A listener or protocol name: letters, digits, '_' and '-'. 0 ok, else -1
 * and a reason. */
int config_check_name(const char *value, char *reason, size_t reason_size);

/* "host:port" or "[IPv6]:port" with a port from min_port to 65535; shape only,
 * no name lookup. 0 ok, else -1 and a reason. */
int config_check_address(const char *value, unsigned min_port, char *reason, size_t reason_size);

#endif
