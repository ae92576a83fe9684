/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_config.c -- libFuzzer target for the config loader (daemon/config.c
 * and the key table, daemon/config_table.c): a YAML file as an operator
 * writes it, through libyaml into struct config.
 *
 * The input is the file's text. It is loaded with
 * config_load_string_sections and one demo section (the shape an adapter
 * declares, with an alias), so sections, aliases and section defaults are
 * reached too. A refusal must leave a one-line printable message naming the
 * file ("fuzz.yaml..."). A config that loads must hold what the loader
 * promises (every listener has a name, a bind and at least one protocol;
 * bounded numbers within their rows' bounds; the section's values present),
 * must load the same way a second time, and the reload path must take it:
 * config_apply_live(first, second) copies the restart-only keys (listeners
 * included) into the second, after which both still describe the same
 * listeners. Also built by `make check` with replay_main.c, which runs this
 * over tests/fuzz/corpus/config without clang. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

struct demo_section {
    uint32_t count;
    char *label;
    uint64_t wait_ms;
};

static const struct config_key demo_keys[] = {
    {.name = "count",
     .type = CONFIG_TYPE_UINT32,
     .offset = offsetof(struct demo_section, count),
     .min = 1,
     .max = 100,
     .default_value = "5",
     .description = "a count"},
    {.name = "label",
     .type = CONFIG_TYPE_STRING,
     .offset = offsetof(struct demo_section, label),
     .min = 1,
     .max = 32,
     .default_value = "demo",
     .description = "a label"},
    {.name = "wait",
     .type = CONFIG_TYPE_DURATION,
     .offset = offsetof(struct demo_section, wait_ms),
     .min = 1,
     .max = 60000,
     .default_value = "1s",
     .flags = CONFIG_KEY_RESTART,
     .description = "a wait"},
};

static const struct config_alias demo_aliases[] = {{"limits.demo_count", "count"}};

static const struct config_section demo_section = {
    .name = "demo",
    .title = "Demo",
    .keys = demo_keys,
    .key_count = sizeof(demo_keys) / sizeof(demo_keys[0]),
    .size = sizeof(struct demo_section),
    .aliases = demo_aliases,
    .alias_count = 1,
};

static const struct config_section *const sections[] = {&demo_section};

static void check_message(const char *err)
{
    size_t len = strlen(err);
    FUZZ_CHECK(len > 0, "a refusal without a message");
    FUZZ_CHECK(strncmp(err, "fuzz.yaml", 9) == 0, "the message does not name the file: %s", err);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(err[i] != '\n' && err[i] != '\r', "a message of several lines: %s", err);
}

static void check_config(const struct config *config)
{
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct config_listener *listener = &config->listeners[i];
        FUZZ_CHECK(listener->name && listener->name[0], "listener %zu has no name", i);
        FUZZ_CHECK(listener->bind && listener->bind[0], "listener %s has no bind", listener->name);
        FUZZ_CHECK(listener->protocol_count >= 1, "listener %s serves nothing", listener->name);
        FUZZ_CHECK(config_listener_find(config, listener->name) == listener,
                   "listener %s is not found by name (listed twice?)", listener->name);
        if (listener->transport)
            FUZZ_CHECK(strcmp(listener->transport, "tcp") == 0 ||
                           strcmp(listener->transport, "websocket") == 0,
                       "transport %s passed", listener->transport);
        for (size_t o = 0; o < listener->websocket.origin_count; o++)
            FUZZ_CHECK(strncmp(listener->websocket.origins[o], "http", 4) == 0, "origin %s passed",
                       listener->websocket.origins[o]);
    }
    FUZZ_CHECK(config->limits.max_connections >= 1 && config->limits.max_connections <= 1000000,
               "limits.max_connections %u out of bounds", config->limits.max_connections);
    FUZZ_CHECK(config->limits.handshake_timeout_ms >= 100 &&
                   config->limits.handshake_timeout_ms <= 30000,
               "limits.handshake_timeout %llu out of bounds",
               (unsigned long long)config->limits.handshake_timeout_ms);
    FUZZ_CHECK(config->kafka.bootstrap != NULL, "no kafka.bootstrap");
    for (size_t u = 0; u < config->auth.user_count; u++)
        FUZZ_CHECK(config->auth.users[u].name != NULL, "user %zu has no name", u);
    const struct demo_section *demo = config_section_values(config, "demo");
    FUZZ_CHECK(demo != NULL, "the demo section is missing");
    FUZZ_CHECK(demo->count >= 1 && demo->count <= 100, "demo.count %u", demo->count);
    FUZZ_CHECK(demo->label != NULL, "demo.label has no value");
}

static bool same_listeners(const struct config *a, const struct config *b)
{
    if (a->listener_count != b->listener_count)
        return false;
    for (size_t i = 0; i < a->listener_count; i++) {
        const struct config_listener *x = &a->listeners[i], *y = &b->listeners[i];
        if (strcmp(x->name, y->name) != 0 || strcmp(x->bind, y->bind) != 0 ||
            x->protocol_count != y->protocol_count ||
            x->websocket.origin_count != y->websocket.origin_count ||
            x->websocket.max_message_size != y->websocket.max_message_size ||
            (x->transport == NULL) != (y->transport == NULL) ||
            (x->transport && strcmp(x->transport, y->transport) != 0))
            return false;
        for (size_t p = 0; p < x->protocol_count; p++)
            if (strcmp(x->protocols[p], y->protocols[p]) != 0)
                return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) { /* deprecation and reload warnings would flood the output */
        log_set_level(LOG_LEVEL_ERROR);
        quiet = true;
    }
    const char *yaml = (const char *)data;
    struct config *first = NULL, *second = NULL;
    char err[1024] = "";
    if (config_load_string_sections("fuzz.yaml", yaml, size, sections, 1, &first, err,
                                    sizeof(err)) < 0) {
        FUZZ_CHECK(first == NULL, "a refusal returned a config");
        check_message(err);
        return 0;
    }
    FUZZ_CHECK(first != NULL, "success without a config");
    check_config(first);
    char err2[1024] = "";
    int again = config_load_string_sections("fuzz.yaml", yaml, size, sections, 1, &second, err2,
                                            sizeof(err2));
    FUZZ_CHECK(again == 0, "the same text failed a second time: %s", err2);
    config_apply_live(first, second);
    check_config(second);
    FUZZ_CHECK(same_listeners(first, second), "a reload changed the listeners");
    config_free(first);
    config_free(second);
    return 0;
}
