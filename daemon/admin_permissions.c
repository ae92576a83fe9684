/* SPDX-License-Identifier: Apache-2.0 */
/* admin_permissions.c -- the admin API's permissions resource, RabbitMQ's
 * GET /api/permissions[/VHOST/USER] built from the config in force: one
 * {user, vhost, configure, write, read} per user of auth.users and served
 * vhost (config `vhosts`) its auth.users[].vhosts allows (architecture §11
 * "Vhosts"). A user with per-vhost `permissions` (architecture §10) shows
 * them as written. Otherwise kbridge's ACLs are lists of POSIX regexes per
 * user, the same in every vhost: `write` is the `publish` list and `read` the `consume` list,
 * each joined into one regex ("(a)|(b)"; none: "", which RabbitMQ reads as
 * no access), `configure` the `consume` one (declares are checked against
 * it); `kbridge_publish` and `kbridge_consume` give the lists as written.
 * Administrator and monitoring users only (as RabbitMQ: users' permissions
 * are not for management users). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_internal.h"
#include "config.h"
#include "core.h"
#include "server.h"

/* The patterns as one POSIX regex (a new reference, NULL out of memory). */
static json_t *admin_permission_regex(const struct config_pattern *patterns, size_t count)
{
    if (count == 1)
        return json_string(patterns[0].source);
    size_t length = 1;
    for (size_t i = 0; i < count; i++)
        length += strlen(patterns[i].source) + 3;
    char *joined = malloc(length);
    if (!joined)
        return NULL;
    size_t used = 0;
    joined[0] = '\0';
    for (size_t i = 0; i < count; i++)
        used += (size_t)snprintf(joined + used, length - used, "%s(%s)", i ? "|" : "",
                                 patterns[i].source);
    json_t *regex = json_string(joined);
    free(joined);
    return regex;
}

static json_t *admin_permission_sources(const struct config_pattern *patterns, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++)
        if (json_array_append_new(list, json_string(patterns[i].source)) < 0) {
            json_decref(list);
            return NULL;
        }
    return list;
}

/* One permission in RabbitMQ's shape; NULL out of memory. A user with
 * per-vhost `permissions` shows its entry for the vhost as written. */
static json_t *admin_permission_json(const struct config_user *user, const char *vhost)
{
    const struct config_permission *entry = config_user_permission(user, vhost);
    if (entry)
        return json_pack("{s:s,s:s,s:o*,s:o*,s:o*}", "user", user->name, "vhost", vhost,
                         "configure",
                         admin_permission_regex(entry->configure, entry->configure_count), "write",
                         admin_permission_regex(entry->write, entry->write_count), "read",
                         admin_permission_regex(entry->read, entry->read_count));
    return json_pack("{s:s,s:s,s:o*,s:o*,s:o*,s:o*,s:o*}", "user", user->name, "vhost", vhost,
                     "configure", admin_permission_regex(user->consume, user->consume_count),
                     "write", admin_permission_regex(user->publish, user->publish_count), "read",
                     admin_permission_regex(user->consume, user->consume_count), "kbridge_publish",
                     admin_permission_sources(user->publish, user->publish_count),
                     "kbridge_consume",
                     admin_permission_sources(user->consume, user->consume_count));
}

void admin_permissions_route(struct admin_request *req)
{
    size_t n = req->segment_count;
    if (n != 2 && n != 4) {
        admin_no_route(req);
        return;
    }
    if (req->role != ADMIN_ROLE_ADMINISTRATOR && req->role != ADMIN_ROLE_MONITORING) {
        admin_error(req, 403, "Forbidden",
                    "/api/permissions needs the administrator or monitoring tag");
        return;
    }
    const struct config *config = core_config(server_core(req->api->server));
    const char *only_vhost = n == 4 ? req->segments[2] : NULL;
    const char *only_user = n == 4 ? req->segments[3] : NULL;
    json_t *list = json_array();
    for (size_t u = 0; list && u < config->auth.user_count; u++) {
        const struct config_user *user = &config->auth.users[u];
        if (only_user && strcmp(user->name, only_user) != 0)
            continue;
        for (size_t v = 0; list && v < config->vhost_count; v++) {
            const char *vhost = config->vhosts[v].name;
            if ((only_vhost && strcmp(vhost, only_vhost) != 0) ||
                !config_user_may_use_vhost(user, vhost))
                continue;
            json_t *permission = admin_permission_json(user, vhost);
            if (!permission || json_array_append_new(list, permission) < 0) {
                json_decref(list);
                list = NULL;
            }
        }
    }
    if (!list) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    if (n == 2) {
        admin_reply_new(req, list);
        return;
    }
    if (json_array_size(list) == 0) {
        json_decref(list);
        char reason[ADMIN_NAME_MAX * 2 + 100];
        snprintf(reason, sizeof(reason), "user '%s' has no permissions in vhost '%s'", only_user,
                 only_vhost);
        admin_error(req, 404, "Object Not Found", reason);
        return;
    }
    json_t *one = json_incref(json_array_get(list, 0));
    json_decref(list);
    admin_reply_new(req, one);
}
