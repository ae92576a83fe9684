/* SPDX-License-Identifier: Apache-2.0 */
/* config_table.h -- internal to the config module: the key table's row type
 * and the value syntax shared by config.c (loading) and config_table.c (the
 * table, the value checks and the Markdown reference). Not for other modules:
 * they use config.h (adapters declare their section's rows with config_key.h). */
#ifndef KBRIDGE_CONFIG_TABLE_H
#define KBRIDGE_CONFIG_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "config_key.h"

#define CONFIG_QUOTE_MAX 64   /* bytes of a value quoted in a message */
#define CONFIG_REASON_MAX 512 /* one reason written by a check function */
#define CONFIG_NAME_MAX 64    /* longest listener or protocol name */

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

/* A user name: no spaces, ':' or control characters. 0 ok, else -1 and a
 * reason. */
int config_check_user_name(const char *value, char *reason, size_t reason_size);

/* One of RabbitMQ's user tags the admin API knows (administrator,
 * monitoring, management, policymaker). 0 ok, else -1 and a reason. */
int config_check_user_tag(const char *value, char *reason, size_t reason_size);

/* Kafka topic name characters only (A-Z a-z 0-9 . _ -). 0 ok, else -1 and a
 * reason. */
int config_check_topic_chars(const char *value, char *reason, size_t reason_size);

/* "host:port" or "[IPv6]:port" with a port from min_port to 65535; shape only,
 * no name lookup. 0 ok, else -1 and a reason. */
int config_check_address(const char *value, unsigned min_port, char *reason, size_t reason_size);

#endif
