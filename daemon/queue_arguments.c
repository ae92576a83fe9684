/* SPDX-License-Identifier: Apache-2.0 */
/* queue_arguments.c -- check and parse a queue's RabbitMQ arguments into
 * struct queue_arguments (queue_arguments.h). One table says, per
 * argument, its type and whether kbridge honours it: an argument it does
 * not honour is refused by name, never accepted and ignored (issue 13,
 * item 5; docs/routing.md "Queue arguments"). */
#include "queue_arguments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum argument_kind {
    ARGUMENT_NON_NEGATIVE_INTEGER,
    ARGUMENT_POSITIVE_INTEGER,
    ARGUMENT_NAME, /* a string of at most QUEUE_ARGUMENTS_NAME_MAX bytes */
    ARGUMENT_BOOLEAN,
    ARGUMENT_ONE_OF,
};

static const struct {
    const char *name;
    enum argument_kind kind;
    const char *choices; /* ONE_OF: '|'-separated, also the message's text */
    const char *refused; /* NULL: honoured; else why kbridge refuses it */
} queue_arguments[] = {
    {"x-message-ttl", ARGUMENT_NON_NEGATIVE_INTEGER, NULL, NULL},
    {"x-expires", ARGUMENT_POSITIVE_INTEGER, NULL, NULL},
    {"x-dead-letter-exchange", ARGUMENT_NAME, NULL, NULL},
    {"x-dead-letter-routing-key", ARGUMENT_NAME, NULL, NULL},
    {"x-delivery-limit", ARGUMENT_NON_NEGATIVE_INTEGER, NULL, NULL},
    {"x-max-length", ARGUMENT_NON_NEGATIVE_INTEGER, NULL, NULL},
    {"x-max-length-bytes", ARGUMENT_NON_NEGATIVE_INTEGER, NULL, NULL},
    {"x-overflow", ARGUMENT_ONE_OF, "drop-head|reject-publish", NULL},
    {"x-single-active-consumer", ARGUMENT_BOOLEAN, NULL, NULL},
    {"x-queue-type", ARGUMENT_ONE_OF, "classic|quorum|stream", NULL},
    {"x-queue-mode", ARGUMENT_ONE_OF, "default|lazy", NULL},
};

#define QUEUE_ARGUMENT_COUNT (sizeof(queue_arguments) / sizeof(queue_arguments[0]))

static bool one_of(const char *choices, const char *value)
{
    size_t len = strlen(value);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t choice_len = bar ? (size_t)(bar - c) : strlen(c);
        if (choice_len == len && memcmp(c, value, len) == 0)
            return true;
        c += choice_len + (bar ? 1 : 0);
    }
    return false;
}

/* The text of a value for a message: 'text', 42, true. */
static void value_text(const json_t *value, char *out, size_t out_size)
{
    if (json_is_string(value)) {
        snprintf(out, out_size, "'%s'", json_string_value(value));
    } else {
        char *dumped = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(out, out_size, "%s", dumped ? dumped : "a value");
        free(dumped);
    }
}

/* Check one argument's type and range: NULL, or what it must be. */
static const char *argument_wanted(size_t i, const json_t *value)
{
    switch (queue_arguments[i].kind) {
    case ARGUMENT_NON_NEGATIVE_INTEGER:
        return json_is_integer(value) && json_integer_value(value) >= 0 ? NULL
                                                                        : "a non-negative integer";
    case ARGUMENT_POSITIVE_INTEGER:
        return json_is_integer(value) && json_integer_value(value) >= 1 ? NULL
                                                                        : "a positive integer";
    case ARGUMENT_NAME:
        return json_is_string(value) && json_string_length(value) <= QUEUE_ARGUMENTS_NAME_MAX
                   ? NULL
                   : "a string of at most 255 bytes";
    case ARGUMENT_BOOLEAN: return json_is_boolean(value) ? NULL : "true or false";
    case ARGUMENT_ONE_OF:
        return json_is_string(value) && one_of(queue_arguments[i].choices, json_string_value(value))
                   ? NULL
                   : queue_arguments[i].choices;
    }
    return "valid";
}

void queue_arguments_default(struct queue_arguments *out)
{
    memset(out, 0, sizeof(*out));
    out->message_ttl_ms = -1;
    out->expires_ms = -1;
    out->max_length = -1;
    out->max_length_bytes = -1;
    out->delivery_limit = -1;
    out->type = QUEUE_TYPE_CLASSIC;
}

/* Copy a checked name argument (its length is checked by argument_wanted). */
static void name_copy(char *out, const json_t *value)
{
    size_t len = json_string_length(value);
    memcpy(out, json_string_value(value), len);
    out[len] = '\0';
}

int queue_arguments_parse(const json_t *arguments, struct queue_arguments *out, char *err,
                          size_t err_size)
{
    queue_arguments_default(out);
    if (arguments && !json_is_object(arguments)) {
        snprintf(err, err_size, "queue arguments must be a table");
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)arguments, key, value)
    {
        size_t i = 0;
        while (i < QUEUE_ARGUMENT_COUNT && strcmp(queue_arguments[i].name, key) != 0)
            i++;
        if (i == QUEUE_ARGUMENT_COUNT) {
            snprintf(err, err_size,
                     "invalid arg '%s': kbridge does not support this queue argument", key);
            return -1;
        }
        const char *wanted = argument_wanted(i, value);
        if (wanted) {
            char got[128];
            value_text(value, got, sizeof(got));
            snprintf(err, err_size, "invalid arg '%s': %s, must be %s", key, got, wanted);
            return -1;
        }
        if (queue_arguments[i].refused) {
            snprintf(err, err_size, "invalid arg '%s': kbridge does not support it (%s)", key,
                     queue_arguments[i].refused);
            return -1;
        }
        if (strcmp(key, "x-message-ttl") == 0) {
            out->message_ttl_ms = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "x-max-length") == 0) {
            out->max_length = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "x-max-length-bytes") == 0) {
            out->max_length_bytes = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "x-overflow") == 0) {
            out->reject_publish = strcmp(json_string_value(value), "reject-publish") == 0;
        } else if (strcmp(key, "x-expires") == 0) {
            out->expires_ms = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "x-dead-letter-exchange") == 0) {
            out->has_dead_letter_exchange = true;
            name_copy(out->dead_letter_exchange, value);
        } else if (strcmp(key, "x-dead-letter-routing-key") == 0) {
            out->has_dead_letter_routing_key = true;
            name_copy(out->dead_letter_routing_key, value);
        } else if (strcmp(key, "x-delivery-limit") == 0) {
            out->delivery_limit = (int64_t)json_integer_value(value);
        } else if (strcmp(key, "x-single-active-consumer") == 0) {
            out->single_active_consumer = json_is_true(value);
        } else if (strcmp(key, "x-queue-type") == 0) {
            const char *type = json_string_value(value);
            out->type = strcmp(type, "stream") == 0   ? QUEUE_TYPE_STREAM
                        : strcmp(type, "quorum") == 0 ? QUEUE_TYPE_QUORUM
                                                      : QUEUE_TYPE_CLASSIC;
        } else if (strcmp(key, "x-queue-mode") == 0) {
            out->lazy = strcmp(json_string_value(value), "lazy") == 0;
        }
    }
    if (out->type == QUEUE_TYPE_STREAM) {
        /* what a stream does not have (RabbitMQ refuses the same): nothing
         * is consumed away, so nothing expires, overflows or dies */
        static const char *const not_for_streams[] = {"x-message-ttl",
                                                      "x-expires",
                                                      "x-max-length",
                                                      "x-max-length-bytes",
                                                      "x-overflow",
                                                      "x-dead-letter-exchange",
                                                      "x-dead-letter-routing-key",
                                                      "x-delivery-limit",
                                                      "x-single-active-consumer"};
        for (size_t i = 0; i < sizeof(not_for_streams) / sizeof(not_for_streams[0]); i++) {
            if (json_object_get(arguments, not_for_streams[i])) {
                snprintf(err, err_size,
                         "invalid arg '%s' for a stream queue: a stream keeps every message "
                         "(Kafka's retention decides; set it on the topic)",
                         not_for_streams[i]);
                return -1;
            }
        }
    }
    if (out->has_dead_letter_routing_key && !out->has_dead_letter_exchange) {
        snprintf(err, err_size,
                 "invalid arg 'x-dead-letter-routing-key': it requires x-dead-letter-exchange");
        return -1;
    }
    return 0;
}

uint32_t queue_arguments_max_deliveries(const struct queue_arguments *arguments,
                                        uint32_t max_deliveries)
{
    if (arguments->delivery_limit < 0)
        return max_deliveries;
    if (arguments->delivery_limit >= UINT32_MAX - 1)
        return UINT32_MAX;
    return (uint32_t)arguments->delivery_limit + 1;
}

bool queue_arguments_expired(const struct queue_arguments *arguments, int64_t timestamp_ms,
                             uint64_t now_ms)
{
    if (arguments->message_ttl_ms < 0 || timestamp_ms < 0)
        return false;
    return (int64_t)now_ms - timestamp_ms >= arguments->message_ttl_ms;
}

char *queue_arguments_x_death(const char *previous, size_t previous_len, const char *reason,
                              const char *queue, const char *exchange, const char *routing_key,
                              uint64_t time_s)
{
    json_t *deaths = previous ? json_loadb(previous, previous_len, 0, NULL) : NULL;
    if (!json_is_array(deaths)) {
        json_decref(deaths);
        deaths = json_array();
    }
    if (!deaths)
        return NULL;
    json_t *entry = NULL;
    size_t at;
    json_t *each;
    json_array_foreach(deaths, at, each)
    {
        if (json_is_object(each) && json_is_string(json_object_get(each, "queue")) &&
            strcmp(json_string_value(json_object_get(each, "queue")), queue) == 0 &&
            json_is_string(json_object_get(each, "reason")) &&
            strcmp(json_string_value(json_object_get(each, "reason")), reason) == 0) {
            entry = json_incref(each);
            json_array_remove(deaths, at);
            break;
        }
    }
    int failed = 0;
    if (entry) {
        json_int_t count = json_integer_value(json_object_get(entry, "count"));
        failed |= json_object_set_new(entry, "count", json_integer(count > 0 ? count + 1 : 1));
        failed |= json_object_set_new(entry, "time", json_integer((json_int_t)time_s));
    } else {
        entry = json_pack("{s:I, s:s, s:s, s:s, s:[s], s:I}", "count", (json_int_t)1, "reason",
                          reason, "queue", queue, "exchange", exchange, "routing-keys", routing_key,
                          "time", (json_int_t)time_s);
        failed |= !entry;
    }
    char *text = NULL;
    if (!failed && json_array_insert(deaths, 0, entry) == 0)
        text = json_dumps(deaths, JSON_COMPACT);
    json_decref(entry);
    json_decref(deaths);
    return text;
}
