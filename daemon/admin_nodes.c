/* SPDX-License-Identifier: Apache-2.0 */
/* admin_nodes.c -- the admin API's cluster view (architecture §9 "Cluster
 * view"): every node's record, this node's built live (status_local) and
 * the others' from the status topic (status_view_of), for /api/nodes and
 * for the cluster totals, connections and consumers admin_api.c shows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_internal.h"
#include "config.h"
#include "core.h"
#include "server.h"
#include "status.h"
#include "status_record.h"

static bool admin_nodes_add(struct admin_nodes *nodes, json_t *record, bool local, bool stale,
                            int64_t age_ms)
{
    struct admin_node *grown = realloc(nodes->items, (nodes->count + 1) * sizeof(*grown));
    if (!grown)
        return false;
    nodes->items = grown;
    nodes->items[nodes->count++] = (struct admin_node){record, local, stale, age_ms};
    return true;
}

struct admin_nodes_walk {
    struct admin_nodes *nodes;
    const char *only;
    bool failed;
};

static bool admin_nodes_other(void *opaque, const json_t *record, bool stale, int64_t age_ms)
{
    struct admin_nodes_walk *walk = opaque;
    const char *name = json_string_value(json_object_get(record, "node"));
    if (walk->only && (strcmp(walk->only, "local") == 0 || strcmp(walk->only, name) != 0))
        return true;
    json_t *copy = json_incref((json_t *)record);
    if (!admin_nodes_add(walk->nodes, copy, false, stale, age_ms)) {
        json_decref(copy);
        walk->failed = true;
        return false;
    }
    return true;
}

int admin_nodes_collect(struct admin_request *req, const char *only, struct admin_nodes *out)
{
    *out = (struct admin_nodes){0};
    struct server *server = req->api->server;
    struct status *status = server_status(server);
    const char *self = server_config(server)->node_id;
    if (!only || strcmp(only, "local") == 0 || strcmp(only, self) == 0) {
        json_t *local = status ? status_local(status) : NULL;
        if (!local || !admin_nodes_add(out, local, true, false, 0)) {
            json_decref(local);
            return -1;
        }
    }
    if (!status)
        return 0;
    struct admin_nodes_walk walk = {out, only, false};
    status_view_each(status_view_of(status), status_now_ms(), status_expiry_ms(status),
                     admin_nodes_other, &walk);
    if (walk.failed) {
        admin_nodes_release(out);
        return -1;
    }
    return 0;
}

void admin_nodes_release(struct admin_nodes *nodes)
{
    for (size_t i = 0; i < nodes->count; i++)
        json_decref(nodes->items[i].record);
    free(nodes->items);
    *nodes = (struct admin_nodes){0};
}

static json_int_t admin_int(const json_t *object, const char *name)
{
    return json_integer_value(json_object_get(object, name));
}

/* RabbitMQ's {"NAME": count, "NAME_details": {"rate": r}} for one counter. */
static void admin_message_stat(json_t *stats, const char *name, json_int_t count, double rate)
{
    char details[64];
    snprintf(details, sizeof(details), "%s_details", name);
    json_object_set_new(stats, name, json_integer(count));
    json_object_set_new(stats, details, json_pack("{s:f}", "rate", rate));
}

json_t *admin_message_stats(const struct admin_nodes *nodes, bool running_only)
{
    static const char *const ours[3] = {"publish", "deliver", "ack"};
    static const char *const rabbit[3] = {"publish", "deliver_get", "ack"};
    json_t *stats = json_object();
    for (size_t k = 0; stats && k < 3; k++) {
        json_int_t count = 0;
        double rate = 0;
        for (size_t i = 0; i < nodes->count; i++) {
            if (running_only && nodes->items[i].stale)
                continue;
            const json_t *record = nodes->items[i].record;
            count += admin_int(json_object_get(record, "totals"), ours[k]);
            rate += json_number_value(json_object_get(json_object_get(record, "rates"), ours[k]));
        }
        admin_message_stat(stats, rabbit[k], count, rate);
    }
    return stats;
}

json_t *admin_node_json(const struct admin_request *req, const struct admin_node *node)
{
    const json_t *r = node->record;
    json_int_t started = admin_int(r, "started_at"), updated = admin_int(r, "updated_at");
    json_int_t uptime = node->local ? (json_int_t)(server_uptime_seconds(req->api->server) * 1000)
                                    : updated - started;
    struct admin_nodes one = {(struct admin_node *)node, 1};
    json_t *listeners = json_deep_copy(json_object_get(r, "listeners"));
    json_t *result = json_pack(
        "{s:O,s:s,s:b,s:I,s:o,s:{s:O,s:I,s:I,s:I,s:b,s:b,s:I,s:I,s:I,s:b,s:I,s:O,s:o}}", "name",
        json_object_get(r, "node"), "type", "disc", "running", !node->stale, "uptime", uptime,
        "message_stats", admin_message_stats(&one, false), "kbridge", "version",
        json_object_get(r, "version"), "started_at", started, "updated_at", updated, "age_ms",
        (json_int_t)node->age_ms, "stale", node->stale, "this_node", node->local, "connections",
        admin_int(r, "connections_total"), "connections_listed", admin_int(r, "connections_listed"),
        "consumers", admin_int(r, "consumers_total"), "connections_truncated",
        json_is_true(json_object_get(r, "connections_truncated")), "interval_ms",
        admin_int(r, "interval_ms"), "queues", json_object_get(r, "queues"), "listeners",
        listeners ? listeners : json_array());
    if (result && req->role == ADMIN_ROLE_MANAGEMENT) /* queue names it may not see */
        json_object_del(json_object_get(result, "kbridge"), "queues");
    return result;
}

void admin_nodes_route(struct admin_request *req)
{
    const char *name = req->segment_count == 3 ? req->segments[2] : NULL;
    if (req->role == ADMIN_ROLE_MANAGEMENT) { /* as RabbitMQ: nodes are for monitoring */
        admin_error(req, 403, "Forbidden", "/api/nodes needs the monitoring or administrator tag");
        return;
    }
    struct admin_nodes nodes;
    if (admin_nodes_collect(req, name, &nodes) < 0) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < nodes.count; i++)
        json_array_append_new(list, admin_node_json(req, &nodes.items[i]));
    admin_nodes_release(&nodes);
    admin_reply_list_or_one(req, list, name, "no such node in the cluster view");
}
