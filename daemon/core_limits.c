/* SPDX-License-Identifier: Apache-2.0 */
/* core_limits.c -- the limits that span every protocol (architecture §10):
 * open client connections in all (limits.max_connections), per source
 * address (limits.max_connections_per_address) and per user
 * (limits.max_connections_per_user), and failed logins per source address
 * in a minute (limits.max_auth_failures_per_minute). Counts are kept by
 * name (an address's host part, a user) in u64 maps of small entries; each
 * refusal is counted in kbridge_limit_refusals_total{limit=...}, also those
 * adapters make per connection (core_limit_refused) and the stops of
 * limits.max_unacked (kept in core_subscription.c). Protocol-
 * free: adapters ask and say the refusal in their protocol. Loop thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "metrics.h"
#include "u64_map.h"

#define CORE_LIMIT_WINDOW_MS 60000 /* the auth-failure window */

/* One name's counts; entries of one u64 key (a hash collision) are chained. */
struct core_limit_entry {
    struct core_limit_entry *next;
    uint32_t count;           /* open connections or sessions */
    uint32_t failures;        /* failed logins in the window */
    uint64_t window_start_ms; /* when the window of `failures` began */
    char name[];              /* the host or user */
};

static const char *const core_limit_names[CORE_LIMIT_COUNT] = {
    [CORE_LIMIT_CONNECTIONS] = "max_connections",
    [CORE_LIMIT_PER_ADDRESS] = "max_connections_per_address",
    [CORE_LIMIT_PER_USER] = "max_connections_per_user",
    [CORE_LIMIT_AUTH_FAILURES] = "max_auth_failures_per_minute",
    [CORE_LIMIT_SUBSCRIPTIONS] = "max_subscriptions",
    [CORE_LIMIT_CHANNELS] = "channel_max",
    [CORE_LIMIT_UNACKED] = "max_unacked",
};

const char *core_limit_name(enum core_limit limit)
{
    return limit < CORE_LIMIT_COUNT ? core_limit_names[limit] : "unknown";
}

void core_limit_refused(struct core *core, enum core_limit limit)
{
    if (limit < CORE_LIMIT_COUNT)
        (*core->limits.refusals[limit])++;
}

int core_limits_init(struct core *core)
{
    for (size_t i = 0; i < CORE_LIMIT_COUNT; i++) {
        char labels[80];
        metrics_label(labels, sizeof(labels), "limit", core_limit_names[i]);
        core->limits.refusals[i] =
            metrics_counter(core->metrics, "kbridge_limit_refusals_total",
                            "Connections, logins, subscriptions and channels refused at a "
                            "limit, and deliveries stopped at limits.max_unacked.",
                            labels);
        if (!core->limits.refusals[i])
            return -1;
    }
    return 0;
}

static void core_limits_free_map(struct u64_map *map)
{
    if (map->slots)
        for (size_t i = 0; i <= map->mask; i++)
            for (struct core_limit_entry *e = map->slots[i].value, *next; e; e = next) {
                next = e->next;
                free(e);
            }
    u64_map_free(map);
}

void core_limits_free(struct core *core)
{
    core_limits_free_map(&core->limits.by_address);
    core_limits_free_map(&core->limits.by_user);
}

/* The host part of "127.0.0.1:5555" / "[::1]:5555" into out. */
static void core_limits_host(const char *peer, char *out, size_t out_size)
{
    const char *start = peer;
    size_t len = strlen(peer);
    if (peer[0] == '[') {
        const char *close = strchr(peer, ']');
        start = peer + 1;
        len = close ? (size_t)(close - start) : len - 1;
    } else {
        const char *colon = strrchr(peer, ':');
        if (colon)
            len = (size_t)(colon - peer);
    }
    snprintf(out, out_size, "%.*s", (int)len, start);
}

/* The entry for `name` in `map`, created (count 0) when `create`; NULL when
 * absent or out of memory. */
static struct core_limit_entry *core_limits_entry(struct u64_map *map, const char *name,
                                                  bool create)
{
    size_t len = strlen(name);
    uint64_t key = u64_map_string_key(name, len);
    struct core_limit_entry *first = u64_map_get(map, key);
    for (struct core_limit_entry *e = first; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    if (!create)
        return NULL;
    struct core_limit_entry *entry = calloc(1, sizeof(*entry) + len + 1);
    if (!entry || (!first && u64_map_reserve(map) < 0)) {
        free(entry);
        return NULL;
    }
    memcpy(entry->name, name, len + 1);
    entry->next = first;
    if (first)
        u64_map_remove(map, key);
    u64_map_put(map, key, entry);
    return entry;
}

/* Forget an entry that holds nothing any more. */
static void core_limits_drop_idle(struct u64_map *map, struct core_limit_entry *entry)
{
    if (entry->count > 0 || entry->failures > 0)
        return;
    uint64_t key = u64_map_string_key(entry->name, strlen(entry->name));
    struct core_limit_entry *first = u64_map_get(map, key);
    struct core_limit_entry **link = &first;
    while (*link && *link != entry)
        link = &(*link)->next;
    if (!*link)
        return;
    *link = entry->next;
    u64_map_remove(map, key);
    if (first) {
        u64_map_reserve(map); /* cannot fail: a slot was just freed */
        u64_map_put(map, key, first);
    }
    free(entry);
}

static const char *core_limits_refuse(struct core *core, enum core_limit limit, uint32_t value,
                                      uint32_t *limit_value)
{
    (*core->limits.refusals[limit])++;
    if (limit_value)
        *limit_value = value;
    switch (limit) {
    case CORE_LIMIT_CONNECTIONS: return "limits.max_connections";
    case CORE_LIMIT_PER_ADDRESS: return "limits.max_connections_per_address";
    case CORE_LIMIT_PER_USER: return "limits.max_connections_per_user";
    default: return "limits.max_auth_failures_per_minute";
    }
}

const char *core_connection_admit(struct core *core, const char *peer, uint32_t *limit_value)
{
    const struct config *config = core_config(core);
    if (core->limits.connections >= config->limits.max_connections)
        return core_limits_refuse(core, CORE_LIMIT_CONNECTIONS, config->limits.max_connections,
                                  limit_value);
    char host[64];
    core_limits_host(peer, host, sizeof(host));
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_address, host, true);
    uint32_t per_address = config->limits.max_connections_per_address;
    if (entry && per_address > 0 && entry->count >= per_address)
        return core_limits_refuse(core, CORE_LIMIT_PER_ADDRESS, per_address, limit_value);
    if (entry)
        entry->count++; /* out of memory: admitted, not counted (release finds none) */
    core->limits.connections++;
    return NULL;
}

void core_connection_release(struct core *core, const char *peer)
{
    if (core->limits.connections > 0)
        core->limits.connections--;
    char host[64];
    core_limits_host(peer, host, sizeof(host));
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_address, host, false);
    if (entry && entry->count > 0) {
        entry->count--;
        core_limits_drop_idle(&core->limits.by_address, entry);
    }
}

uint64_t core_connection_count(const struct core *core) { return core->limits.connections; }

const char *core_session_admit(struct core *core, const char *user, uint32_t *limit_value)
{
    uint32_t per_user = core_config(core)->limits.max_connections_per_user;
    if (per_user == 0)
        return NULL;
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_user, user, false);
    if (entry && entry->count >= per_user)
        return core_limits_refuse(core, CORE_LIMIT_PER_USER, per_user, limit_value);
    return NULL;
}

void core_limits_session_opened(struct core *core, const char *user)
{
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_user, user, true);
    if (entry)
        entry->count++;
}

void core_limits_session_closed(struct core *core, const char *user)
{
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_user, user, false);
    if (entry && entry->count > 0) {
        entry->count--;
        core_limits_drop_idle(&core->limits.by_user, entry);
    }
}

/* The address's failure window, restarted when a minute has passed. */
static struct core_limit_entry *core_limits_window(struct core *core, const char *peer, bool create)
{
    char host[64];
    core_limits_host(peer, host, sizeof(host));
    struct core_limit_entry *entry = core_limits_entry(&core->limits.by_address, host, create);
    uint64_t now = clock_monotonic_ms();
    if (entry && entry->failures > 0 && now - entry->window_start_ms >= CORE_LIMIT_WINDOW_MS) {
        entry->failures = 0;
        if (!create) {
            core_limits_drop_idle(&core->limits.by_address, entry);
            return NULL;
        }
    }
    if (entry && entry->failures == 0)
        entry->window_start_ms = now;
    return entry;
}

const char *core_auth_throttled(struct core *core, const char *peer, uint32_t *limit_value)
{
    uint32_t most = core_config(core)->limits.max_auth_failures_per_minute;
    if (most == 0 || !peer)
        return NULL;
    struct core_limit_entry *entry = core_limits_window(core, peer, false);
    if (entry && entry->failures >= most)
        return core_limits_refuse(core, CORE_LIMIT_AUTH_FAILURES, most, limit_value);
    return NULL;
}

void core_limits_auth_failed(struct core *core, const char *peer)
{
    if (!peer || core_config(core)->limits.max_auth_failures_per_minute == 0)
        return;
    struct core_limit_entry *entry = core_limits_window(core, peer, true);
    if (entry && entry->failures < UINT32_MAX)
        entry->failures++;
}
