/* SPDX-License-Identifier: Apache-2.0 */
/* admin_api.c -- the admin API (admin_api.h): authentication, routing and
 * the RabbitMQ-shaped resources, rendered with jansson.
 *
 * A request lives in a struct admin_request from admin_api_handle until its
 * reply: the password check runs on the worker pool
 * (core_authenticate_start_from), queue depths in Kafka worker jobs
 * (kafka_group_lag), declares and deletes go through the core's definitions
 * calls with a short-lived core session of the authenticated user (its ACLs
 * apply as to a protocol client). evhttp keeps a request whose client went
 * away until it is answered, so the reply is always sent; at shutdown
 * admin_api_free detaches every waiting request (their evhttp requests go
 * with evhttp_free) and the jobs still running free theirs when they end.
 *
 * Queue depth (architecture §9): "messages" = "messages_ready" = for every
 * partition of every topic the queue's group reads, the end offset minus
 * the committed offset (minus the log start when nothing is committed
 * yet). "consumers" sums every running node's subscribers: this node's
 * live, the others' from the status topic (admin_nodes.c, status.h), with a
 * per-node breakdown in "kbridge_nodes"; `?node=local` shows this node only.
 * /api/overview's totals and /api/connections are cluster-wide the same way.
 *
 * The dead-letter resources (/api/kbridge/dlq/...) live in admin_dlq.c;
 * admin_internal.h is what the two files share. */
#include "admin_api.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_auth.h"
#include "admin_internal.h"
#include "config.h"
#include "core.h"
#include "definitions.h"
#include "definitions_export.h"
#include "definitions_record.h"
#include "kafka.h"
#include "listener.h"
#include "log.h"
#include "queue_bindings.h"
#include "server.h"
#include "status.h"
#include "version.h"

/* ---- replies ------------------------------------------------------------- */

void admin_request_free(struct admin_request *req)
{
    if (req->api) {
        if (req->prev)
            req->prev->next = req->next;
        else
            req->api->pending = req->next;
        if (req->next)
            req->next->prev = req->prev;
    }
    core_authenticate_cancel(req->auth);
    core_import_cancel(req->import);
    core_session_close(req->session);
    for (size_t i = 0; i < req->segment_count; i++)
        free(req->segments[i]);
    json_decref(req->result);
    free(req);
}

static void admin_send(struct evhttp_request *request, int code, const char *reason,
                       const json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!out || (body && !text)) {
        if (out)
            evbuffer_free(out);
        free(text);
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_output_headers(request);
    if (text) {
        evbuffer_add_printf(out, "%s\n", text);
        evhttp_add_header(headers, "Content-Type", "application/json");
    }
    free(text);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (code == 401)
        evhttp_add_header(headers, "WWW-Authenticate", "Basic realm=\"kbridge\"");
    evhttp_send_reply(request, code, reason, out);
    evbuffer_free(out);
}

/* Answer (unless detached) and free the request. `body` is borrowed. */
void admin_reply(struct admin_request *req, int code, const char *reason, const json_t *body)
{
    if (req->request)
        admin_send(req->request, code, reason, body);
    admin_request_free(req);
}

/* RabbitMQ's error body: {"error": ..., "reason": ...}. */
void admin_error(struct admin_request *req, int code, const char *error, const char *reason)
{
    json_t *body = json_pack("{s:s,s:s}", "error", error, "reason", reason);
    admin_reply(req, code, error, body);
    json_decref(body);
}

void admin_reply_new(struct admin_request *req, json_t *body)
{
    if (!body) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    admin_reply(req, 200, "OK", body);
    json_decref(body);
}

/* A core error as an HTTP status. */
static void admin_core_error(struct admin_request *req, int core_error, const char *reason)
{
    switch (core_error) {
    case CORE_ERR_ACCESS: admin_error(req, 403, "Forbidden", reason); break;
    case CORE_ERR_NOT_FOUND: admin_error(req, 404, "Not Found", reason); break;
    case CORE_ERR_PRECONDITION:
    case CORE_ERR_INVALID: admin_error(req, 400, "Bad Request", reason); break;
    case CORE_ERR_LOCKED: admin_error(req, 409, "Conflict", reason); break;
    case CORE_ERR_UNSUPPORTED: admin_error(req, 501, "Not Implemented", reason); break;
    case CORE_ERR_BUSY:
    case CORE_ERR_UNAVAILABLE: admin_error(req, 503, "Service Unavailable", reason); break;
    default: admin_error(req, 500, "Internal Server Error", reason); break;
    }
}

/* ---- who may see what ------------------------------------------------------ */

const struct config_user *admin_user_entry(const struct admin_request *req)
{
    const struct config *config = core_config(server_core(req->api->server));
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (strcmp(config->auth.users[i].name, req->user) == 0)
            return &config->auth.users[i];
    return NULL;
}

/* May the request's user see entity `name` of `vhost`? Everyone but a
 * management user sees all; a management user what its consume patterns
 * (its read permission in the vhost) allow. */
bool admin_visible(const struct admin_request *req, const char *vhost, const char *name)
{
    if (req->role != ADMIN_ROLE_MANAGEMENT)
        return true;
    const struct config_user *entry = admin_user_entry(req);
    size_t count = 0;
    const struct config_pattern *patterns =
        entry ? config_user_patterns(entry, vhost, false, &count) : NULL;
    return config_patterns_match(patterns, count, name);
}

/* ---- overview, whoami, vhosts ------------------------------------------------------ */

static bool admin_count_queue(const struct queue_definition *queue, void *opaque)
{
    (void)queue;
    (*(size_t *)opaque)++;
    return true;
}

static bool admin_count_exchange(const struct exchange_definition *exchange, void *opaque)
{
    (void)exchange;
    (*(size_t *)opaque)++;
    return true;
}

static void admin_overview(struct admin_request *req)
{
    struct server *server = req->api->server;
    struct core *core = server_core(server);
    const struct config *config = server_config(server);
    struct kafka *kafka = server_kafka(server);
    struct admin_nodes nodes;
    if (admin_nodes_collect(req, NULL, &nodes) < 0) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    /* cluster totals over the running nodes; every node's listeners, named */
    struct admin_count {
        json_int_t connections, consumers;
    } count = {0}, local = {0};
    json_t *listeners = json_array(), *node_list = json_array();
    size_t running = 0;
    for (size_t i = 0; i < nodes.count; i++) {
        const struct admin_node *node = &nodes.items[i];
        json_array_append_new(node_list, admin_node_json(req, node));
        if (node->stale)
            continue;
        running++;
        json_int_t connections =
            json_integer_value(json_object_get(node->record, "connections_total"));
        json_int_t consumers = json_integer_value(json_object_get(node->record, "consumers_total"));
        count.connections += connections;
        count.consumers += consumers;
        if (node->local)
            local = (struct admin_count){connections, consumers};
        size_t index;
        json_t *listener;
        json_array_foreach(json_object_get(node->record, "listeners"), index, listener)
        {
            json_t *named = json_deep_copy(listener);
            json_object_set(named, "node", json_object_get(node->record, "node"));
            json_array_append_new(listeners, named);
        }
    }
    json_t *message_stats = admin_message_stats(&nodes, true);
    struct status *status = server_status(server);
    json_t *cluster = json_pack("{s:i,s:i,s:i,s:s?,s:b,s:I}", "nodes", (int)nodes.count, "running",
                                (int)running, "stale", (int)(nodes.count - running), "status_topic",
                                status ? status_topic(status) : NULL, "status_reading",
                                status && status_reading(status), "status_expiry_ms",
                                (json_int_t)(status ? status_expiry_ms(status) : 0));
    admin_nodes_release(&nodes);
    size_t queues = 0, exchanges = 0;
    definitions_each_queue(core_definitions(core), admin_count_queue, &queues);
    definitions_each_exchange(core_definitions(core), admin_count_exchange, &exchanges);
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I},s:o,s:{s:f,s:b,s:{s:s,s:b,s:b,s:s},"
        "s:{s:s,s:b}}}",
        "management_version", KBRIDGE_VERSION, "product_name", "kbridge", "product_version",
        KBRIDGE_VERSION, "node", config->node_id, "cluster_name", config->node_id,
        "rabbitmq_version", KBRIDGE_VERSION, "object_totals", "connections", count.connections,
        "channels", count.connections, "consumers", count.consumers, "queues", (json_int_t)queues,
        "exchanges", (json_int_t)exchanges, "listeners", listeners ? listeners : json_null(),
        "kbridge", "uptime_seconds", server_uptime_seconds(server), "draining",
        server_is_draining(server), "kafka", "bootstrap", kafka_bootstrap(kafka), "embedded",
        kafka_is_embedded(kafka), "ready", kafka_is_ready(kafka), "reason",
        kafka_not_ready_reason(kafka), "definitions", "topic", config->definitions.topic, "ready",
        core_definitions_ready(core));
    if (body) {
        json_object_set_new(body, "message_stats", message_stats ? message_stats : json_null());
        json_object_set_new(body, "nodes", node_list ? node_list : json_null());
        json_t *kbridge = json_object_get(body, "kbridge");
        json_object_set_new(kbridge, "cluster", cluster ? cluster : json_null());
        json_object_set_new(
            kbridge, "node_totals",
            json_pack("{s:I,s:I}", "connections", local.connections, "consumers", local.consumers));
    } else {
        json_decref(message_stats);
        json_decref(node_list);
        json_decref(cluster);
    }
    admin_reply_new(req, body);
}

static void admin_whoami(struct admin_request *req)
{
    const struct config_user *entry = admin_user_entry(req);
    json_t *tags = json_array();
    for (size_t i = 0; tags && entry && i < entry->tag_count; i++)
        json_array_append_new(tags, json_string(entry->tags[i]));
    admin_reply_new(req,
                    json_pack("{s:s,s:o,s:s}", "name", req->user, "tags", tags ? tags : json_null(),
                              "kbridge_role", admin_role_name(req->role)));
}

static bool admin_vhost_json(const char *vhost, void *opaque)
{
    json_array_append_new(opaque, json_pack("{s:s}", "name", vhost));
    return true;
}

static void admin_vhosts(struct admin_request *req)
{
    json_t *list = json_array();
    if (list)
        definitions_each_vhost(core_definitions(server_core(req->api->server)), admin_vhost_json,
                               list);
    admin_reply_new(req, list);
}

/* ---- connections ----------------------------------------------------------- */

/* Connections of every running node (this node's live, the others' as
 * their last status record lists them), in node order; a management user
 * sees its own only. `name`: that one only. `only`: ?node= (NULL: all). */
static json_t *admin_connection_list(struct admin_request *req, const char *only, const char *name)
{
    struct admin_nodes nodes;
    if (admin_nodes_collect(req, only, &nodes) < 0)
        return NULL;
    json_t *list = json_array();
    for (size_t i = 0; list && i < nodes.count; i++) {
        if (nodes.items[i].stale)
            continue;
        size_t index;
        json_t *connection;
        json_array_foreach(json_object_get(nodes.items[i].record, "connections"), index, connection)
        {
            const char *user = json_string_value(json_object_get(connection, "user"));
            const char *named = json_string_value(json_object_get(connection, "name"));
            if (req->role == ADMIN_ROLE_MANAGEMENT && (!user || strcmp(user, req->user) != 0))
                continue;
            if (name && (!named || strcmp(named, name) != 0))
                continue;
            json_array_append(list, connection);
        }
    }
    admin_nodes_release(&nodes);
    return list;
}

/* "NODE-ID" of this node: the session id, or 0. */
static uint64_t admin_connection_id(struct admin_request *req, const char *name)
{
    const char *node = core_config(server_core(req->api->server))->node_id;
    size_t len = strlen(node);
    if (strncmp(name, node, len) != 0 || name[len] != '-' || !name[len + 1])
        return 0;
    char *end = NULL;
    unsigned long long id = strtoull(name + len + 1, &end, 10);
    return *end ? 0 : (uint64_t)id;
}

static void admin_connections(struct admin_request *req)
{
    char *only = admin_query_value(req, "node");
    const char *name = req->segment_count == 3 ? req->segments[2] : NULL;
    json_t *list = admin_connection_list(req, only, name);
    free(only);
    admin_reply_list_or_one(req, list, name, "no such connection in the cluster view");
}

void admin_reply_list_or_one(struct admin_request *req, json_t *list, const char *name,
                             const char *not_found)
{
    if (name && list && json_array_size(list) == 0) {
        json_decref(list);
        admin_error(req, 404, "Object Not Found", not_found);
        return;
    }
    if (name && list) {
        json_t *one = json_incref(json_array_get(list, 0));
        json_decref(list);
        list = one;
    }
    admin_reply_new(req, list);
}

/* The node whose status record lists connection `name` (a new reference),
 * or NULL: its entry in the cluster view (admin_connection_list) names it. */
static json_t *admin_connection_node(struct admin_request *req, const char *name)
{
    json_t *list = admin_connection_list(req, NULL, name);
    json_t *node = json_incref(json_object_get(json_array_get(list, 0), "node"));
    json_decref(list);
    return node;
}

/* DELETE of a connection this node does not have: 409 naming the node
 * whose status record lists it (nodes do not talk to each other: DESIGN
 * §1; close it through that node's API), else 404. */
static void admin_connection_elsewhere(struct admin_request *req)
{
    json_t *node = admin_connection_node(req, req->segments[2]);
    if (!node) {
        admin_error(req, 404, "Object Not Found", "no such connection in the cluster view");
        return;
    }
    char reason[800];
    snprintf(reason, sizeof(reason),
             "connection '%.300s' is on node %.255s: close it through that node's admin API "
             "(kbridge nodes do not talk to each other)",
             req->segments[2], json_string_value(node));
    json_decref(node);
    admin_error(req, 409, "Conflict", reason);
}

static void admin_connection_close(struct admin_request *req)
{
    uint64_t id = admin_connection_id(req, req->segments[2]);
    const char *given =
        req->request
            ? evhttp_find_header(evhttp_request_get_input_headers(req->request), "X-Reason")
            : NULL;
    char reason[400];
    snprintf(reason, sizeof(reason), "%s (closed by %s through the admin API)",
             given && *given ? given : "connection closed by an administrator", req->user);
    int rc = id ? core_session_close_by_id(server_core(req->api->server), id, reason)
                : CORE_ERR_NOT_FOUND;
    if (rc == CORE_OK)
        admin_reply(req, 204, "No Content", NULL);
    else if (rc == CORE_ERR_NOT_FOUND)
        admin_connection_elsewhere(req);
    else
        admin_core_error(req, rc, "this connection's protocol cannot be closed from the API yet");
}

/* ---- exchanges, bindings ----------------------------------------------------- */

struct admin_list {
    struct admin_request *req;
    json_t *list;
    const char *vhost; /* NULL: all */
    const char *name;  /* NULL: all */
};

/* Parse a record's JSON value into the list. */
static void admin_list_add(struct admin_list *each, char *key, char *value)
{
    json_t *object = value ? json_loads(value, 0, NULL) : NULL;
    free(key);
    free(value);
    if (object && json_array_append_new(each->list, object) < 0)
        return;
}

static bool admin_exchange_json(const struct exchange_definition *exchange, void *opaque)
{
    struct admin_list *each = opaque;
    const struct exchange_spec *spec = &exchange->spec;
    if ((each->vhost && strcmp(spec->vhost, each->vhost) != 0) ||
        (each->name && strcmp(spec->name, each->name) != 0) ||
        !admin_visible(each->req, spec->vhost, spec->name))
        return true;
    char *key = NULL, *value = NULL;
    definitions_record_exchange(spec, &key, &value);
    admin_list_add(each, key, value);
    return true;
}

static bool admin_binding_json(const struct binding_spec *binding, void *opaque)
{
    struct admin_list *each = opaque;
    if ((each->vhost && strcmp(binding->vhost, each->vhost) != 0) ||
        !admin_visible(each->req, binding->vhost, binding->destination))
        return true;
    char *key = NULL, *value = NULL;
    definitions_record_binding(binding, &key, &value);
    json_t *before = json_array_get(each->list, json_array_size(each->list) - 1);
    admin_list_add(each, key, value);
    json_t *added = json_array_get(each->list, json_array_size(each->list) - 1);
    if (added && added != before) /* RabbitMQ's "properties_key": the key when no arguments */
        json_object_set_new(added, "properties_key",
                            json_string(binding->routing_key && binding->routing_key[0]
                                            ? binding->routing_key
                                            : "~")); /* RabbitMQ's for the empty key */
    return true;
}

static void admin_exchanges(struct admin_request *req)
{
    struct admin_list each = {req, json_array(), req->segment_count > 2 ? req->segments[2] : NULL,
                              req->segment_count > 3 ? req->segments[3] : NULL};
    if (each.list)
        definitions_each_exchange(core_definitions(server_core(req->api->server)),
                                  admin_exchange_json, &each);
    if (each.name && each.list) {
        json_t *one = json_incref(json_array_get(each.list, 0));
        json_decref(each.list);
        if (!one) {
            admin_error(req, 404, "Object Not Found", "Not Found");
            return;
        }
        each.list = one;
    }
    admin_reply_new(req, each.list);
}

static void admin_bindings(struct admin_request *req)
{
    struct admin_list each = {req, json_array(), req->segment_count > 2 ? req->segments[2] : NULL,
                              NULL};
    if (each.list)
        definitions_each_binding(core_definitions(server_core(req->api->server)),
                                 admin_binding_json, &each);
    admin_reply_new(req, each.list);
}

/* ---- queues ------------------------------------------------------------------ */

/* One queue whose depth is being looked up. */
struct admin_depth {
    struct admin_request *req;
    json_t *queue; /* borrowed from req->result */
    char *vhost, *name;
    bool dlq; /* the depth of the queue's dead-letter topic (admin_dlq.c's) */
};

static void admin_queues_finish(struct admin_request *req)
{
    if (req->single) {
        json_t *one = json_incref(json_array_get(req->result, 0));
        json_decref(req->result);
        req->result = NULL;
        if (!one) {
            admin_error(req, 404, "Object Not Found", "Not Found");
            return;
        }
        admin_reply_new(req, one);
        return;
    }
    json_t *list = req->result;
    req->result = NULL;
    admin_reply_new(req, list);
}

static void admin_depth_done(void *opaque, int err, const char *reason,
                             const struct kafka_partition_lag *parts, size_t count)
{
    struct admin_depth *depth = opaque;
    struct admin_request *req = depth->req;
    if (depth->dlq) {
        int64_t total = 0;
        for (size_t i = 0; !err && i < count; i++) {
            int64_t from = parts[i].committed > parts[i].low ? parts[i].committed : parts[i].low;
            total += parts[i].end > from ? parts[i].end - from : 0;
        }
        json_object_set_new(depth->queue, "kbridge_dlq_messages",
                            err ? json_null() : json_integer(total));
    } else if (err) {
        json_object_set_new(depth->queue, "messages", json_null());
        json_object_set_new(depth->queue, "messages_ready", json_null());
        json_object_set_new(depth->queue, "kbridge_depth_error", json_string(reason));
    } else {
        int64_t total = 0;
        json_t *partitions = json_array();
        const struct definitions *view =
            req->api ? core_definitions(server_core(req->api->server)) : NULL;
        for (size_t i = 0; view && i < count; i++) {
            int64_t from =
                core_queue_ready_from(view, depth->vhost, depth->name, parts[i].topic,
                                      parts[i].partition, parts[i].committed, parts[i].low);
            int64_t lag = parts[i].end > from ? parts[i].end - from : 0;
            total += lag;
            json_array_append_new(partitions,
                                  json_pack("{s:s,s:i,s:I,s:I,s:I}", "topic", parts[i].topic,
                                            "partition", (int)parts[i].partition, "committed",
                                            (json_int_t)parts[i].committed, "end",
                                            (json_int_t)parts[i].end, "lag", (json_int_t)lag));
        }
        json_object_set_new(depth->queue, "messages", json_integer(total));
        json_object_set_new(depth->queue, "messages_ready", json_integer(total));
        json_object_set_new(depth->queue, "kbridge_partitions",
                            partitions ? partitions : json_null());
    }
    free(depth->vhost);
    free(depth->name);
    free(depth);
    if (--req->jobs > 0)
        return;
    if (!req->api) { /* detached at shutdown */
        admin_request_free(req);
        return;
    }
    admin_queues_finish(req);
}

/* A queue listing: the list, and name -> [{node, consumers, in_flight}] of
 * the other running nodes (admin_queue_nodes; NULL: this node only). */
struct admin_queue_list {
    struct admin_list each; /* first: admin_queue_json gets this */
    json_t *remote;
};

static bool admin_queue_json(const struct queue_definition *queue, void *opaque)
{
    struct admin_list *each = opaque;
    const json_t *remote = ((struct admin_queue_list *)opaque)->remote;
    const struct queue_spec *spec = &queue->spec;
    if ((each->vhost && strcmp(spec->vhost, each->vhost) != 0) ||
        (each->name && strcmp(spec->name, each->name) != 0) ||
        !admin_visible(each->req, spec->vhost, spec->name))
        return true;
    char *key = NULL, *value = NULL;
    definitions_record_queue(spec, &key, &value);
    size_t before = json_array_size(each->list);
    admin_list_add(each, key, value);
    if (json_array_size(each->list) == before)
        return true;
    json_t *object = json_array_get(each->list, before);
    struct core *core = server_core(each->req->api->server);
    char group[ADDRESS_GROUP_ID_MAX + 1];
    if (address_group_id(spec->vhost, "q", spec->name, NULL, group, sizeof(group)) < 0)
        group[0] = '\0'; /* cannot happen: names and vhosts are bounded */
    const char *self = core_config(core)->node_id;
    size_t consumers = core_queue_consumer_count(core, spec->vhost, spec->name);
    json_t *by_node = json_array();
    json_array_append_new(by_node,
                          json_pack("{s:s,s:I,s:I,s:s,s:b}", "node", self, "consumers",
                                    (json_int_t)consumers, "in_flight",
                                    (json_int_t)core_queue_in_flight(core, spec->vhost, spec->name),
                                    "vhost", spec->vhost, "exclusive",
                                    core_queue_exclusive_consumer(core, spec->vhost, spec->name)));
    json_int_t total = (json_int_t)consumers;
    size_t index;
    json_t *other;
    json_array_foreach(json_object_get(remote, spec->name), index, other)
    {
        if (strcmp(json_string_value(json_object_get(other, "vhost")), spec->vhost) != 0)
            continue; /* the same name in another vhost */
        total += json_integer_value(json_object_get(other, "consumers"));
        json_array_append(by_node, other);
    }
    json_object_set_new(object, "node", json_string(self));
    json_object_set_new(object, "state", json_string("running"));
    json_object_set_new(object, "consumers", json_integer(total));
    json_object_set_new(object, "kbridge_consumers_scope",
                        json_string(remote ? "cluster" : "node"));
    json_object_set_new(object, "kbridge_nodes", by_node ? by_node : json_null());
    json_object_set_new(object, "kbridge_group", json_string(group));
    json_object_set_new(object, "type", json_string("classic"));
    return true;
}

/* Add kbridge_dlq_topic and, from a lookup, kbridge_dlq_messages (what its
 * group kbridge.dlq.NAME has not redriven or discarded) to `queue`. */
static void admin_queue_dlq_depth(struct admin_request *req, json_t *queue, const char *vhost,
                                  const char *name)
{
    char topic[ADMIN_NAME_MAX], group[ADDRESS_GROUP_ID_MAX + 1];
    if (admin_dlq_topic(server_config(req->api->server), vhost, name, topic, sizeof(topic)) < 0 ||
        admin_dlq_group(vhost, name, group, sizeof(group)) < 0)
        return;
    json_object_set_new(queue, "kbridge_dlq_topic", json_string(topic));
    struct admin_depth *depth = calloc(1, sizeof(*depth));
    if (!depth)
        return;
    *depth = (struct admin_depth){.req = req, .queue = queue, .dlq = true};
    depth->vhost = strdup(vhost);
    depth->name = strdup(name);
    char *topics[1] = {topic};
    req->jobs++;
    if (!depth->vhost || !depth->name ||
        kafka_group_lag(server_kafka(req->api->server), group, topics, 1, admin_depth_done, depth) <
            0) {
        req->jobs--;
        free(depth->vhost);
        free(depth->name);
        free(depth);
    }
}

/* name -> [{node, consumers, in_flight, vhost, exclusive}] over the other running nodes'
 * status records; NULL when `only` is "local" (or out of memory). */
static json_t *admin_queue_nodes(struct admin_request *req, const char *only)
{
    if (only && strcmp(only, "local") == 0)
        return NULL;
    struct admin_nodes nodes;
    if (admin_nodes_collect(req, NULL, &nodes) < 0)
        return NULL;
    json_t *map = json_object();
    for (size_t i = 0; map && i < nodes.count; i++) {
        const struct admin_node *node = &nodes.items[i];
        if (node->local || node->stale)
            continue;
        size_t index;
        json_t *queue;
        json_array_foreach(json_object_get(node->record, "queues"), index, queue)
        {
            const char *name = json_string_value(json_object_get(queue, "name"));
            if (!name)
                continue;
            json_t *list = json_object_get(map, name);
            if (!list) {
                list = json_array();
                json_object_set_new(map, name, list);
            }
            const json_t *vhost = json_object_get(queue, "vhost"); /* absent: "/" */
            json_array_append_new(
                list,
                json_pack("{s:O,s:O,s:O,s:s,s:b}", "node", json_object_get(node->record, "node"),
                          "consumers", json_object_get(queue, "consumers"), "in_flight",
                          json_object_get(queue, "in_flight"), "vhost",
                          json_is_string(vhost) ? json_string_value(vhost) : "/", "exclusive",
                          json_is_true(json_object_get(queue, "exclusive"))));
        }
    }
    admin_nodes_release(&nodes);
    return map;
}

static void admin_queues(struct admin_request *req)
{
    struct core *core = server_core(req->api->server);
    char *only = admin_query_value(req, "node");
    struct admin_queue_list queues = {{req, json_array(),
                                       req->segment_count > 2 ? req->segments[2] : NULL,
                                       req->segment_count > 3 ? req->segments[3] : NULL},
                                      admin_queue_nodes(req, only)};
    free(only);
    struct admin_list each = queues.each;
    if (!each.list) {
        json_decref(queues.remote);
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    definitions_each_queue(core_definitions(core), admin_queue_json, &queues);
    json_decref(queues.remote);
    req->result = each.list;
    req->single = each.name != NULL;
    size_t count = json_array_size(req->result);
    req->jobs = 1; /* held until every lookup is started */
    for (size_t i = 0; i < count; i++) {
        json_t *queue = json_array_get(req->result, i);
        const char *vhost = json_string_value(json_object_get(queue, "vhost"));
        const char *name = json_string_value(json_object_get(queue, "name"));
        const char *group = json_string_value(json_object_get(queue, "kbridge_group"));
        char **topics = NULL;
        size_t topic_count = 0;
        struct admin_depth *depth = calloc(1, sizeof(*depth));
        if (!depth || !vhost || !name || !group ||
            core_queue_topics(core, vhost, name, &topics, &topic_count) < 0) {
            free(depth);
            continue;
        }
        depth->req = req;
        depth->queue = queue;
        depth->vhost = strdup(vhost);
        depth->name = strdup(name);
        if (!depth->vhost || !depth->name) {
            free(depth->vhost);
            free(depth->name);
            free(depth);
            queue_bindings_free_topics(topics, topic_count);
            continue;
        }
        json_object_set_new(queue, "kbridge_topics", json_array());
        for (size_t t = 0; t < topic_count; t++)
            json_array_append_new(json_object_get(queue, "kbridge_topics"), json_string(topics[t]));
        req->jobs++;
        if (kafka_group_lag(server_kafka(req->api->server), group, topics, topic_count,
                            admin_depth_done, depth) < 0) {
            req->jobs--;
            free(depth->vhost);
            free(depth->name);
            free(depth);
        }
        queue_bindings_free_topics(topics, topic_count);
        admin_queue_dlq_depth(req, queue, vhost, name);
    }
    if (--req->jobs == 0)
        admin_queues_finish(req);
}

/* A definitions call finished: close the request's session and answer. */
static void admin_defined(void *opaque, int core_error, const char *reason, const char *name)
{
    (void)name;
    struct admin_request *req = opaque;
    if (core_error == CORE_OK) {
        bool created = req->method == EVHTTP_REQ_PUT || req->method == EVHTTP_REQ_POST;
        admin_reply(req, created ? 201 : 204, created ? "Created" : "No Content", NULL);
    } else {
        admin_core_error(req, core_error, reason);
    }
}

/* The request's session for a definitions call in the vhost the path names
 * (segments[2]): the user's permissions there decide, as a RabbitMQ
 * administrator's do in the management API. NULL with the reply sent (404
 * for an unknown vhost, 403 without access to it). */
static struct core_session *admin_session(struct admin_request *req)
{
    req->session =
        core_session_new(server_core(req->api->server), "http", req->user, NULL, req->peer);
    if (!req->session) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return NULL;
    }
    char err[300];
    int rc = core_session_set_vhost(req->session, req->segments[2], err, sizeof(err));
    if (rc != CORE_OK) {
        admin_core_error(req, rc, err);
        return NULL;
    }
    return req->session;
}

/* The request body as JSON (an empty body: an empty object). NULL with the
 * reply sent. */
json_t *admin_body(struct admin_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req->request);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return json_object();
    json_error_t error;
    json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &error);
    if (!body || !json_is_object(body)) {
        char reason[300];
        snprintf(reason, sizeof(reason), "the body is not a JSON object: %s",
                 body ? "another JSON value" : error.text);
        json_decref(body);
        admin_error(req, 400, "Bad Request", reason);
        return NULL;
    }
    return body;
}

static bool admin_query_true(struct admin_request *req, const char *name);

/* A boolean field: JSON true/false or, as rabbitmqadmin sends them, the
 * strings "true"/"false"; absent: `fallback`. */
static bool admin_bool(const json_t *body, const char *name, bool fallback)
{
    const json_t *value = json_object_get(body, name);
    if (json_is_boolean(value))
        return json_is_true(value);
    if (json_is_string(value))
        return strcmp(json_string_value(value), "true") == 0;
    return fallback;
}

/* The body's "arguments": an object, or NULL when absent, null or empty.
 * -1 with the reply sent when it is something else. */
static int admin_arguments(struct admin_request *req, json_t *body, json_t **out)
{
    json_t *arguments = json_object_get(body, "arguments");
    *out = json_is_object(arguments) && json_object_size(arguments) ? arguments : NULL;
    if (arguments && !json_is_object(arguments) && !json_is_null(arguments)) {
        admin_error(req, 400, "Bad Request", "\"arguments\" must be a JSON object");
        return -1;
    }
    return 0;
}

static void admin_exchange_declare(struct admin_request *req)
{
    json_t *body = admin_body(req);
    json_t *arguments = NULL;
    if (!body)
        return;
    const char *type_text = json_string_value(json_object_get(body, "type"));
    struct exchange_spec spec = {
        .vhost = req->segments[2],
        .name = req->segments[3],
        .durable = admin_bool(body, "durable", true),
        .auto_delete = admin_bool(body, "auto_delete", false),
        .internal = admin_bool(body, "internal", false),
    };
    char err[512] = "";
    if (!type_text || exchange_type_parse(type_text, &spec.type) < 0) {
        snprintf(err, sizeof(err),
                 "exchange type %s%s%s is not one kbridge has (direct, fanout, "
                 "topic, headers)",
                 type_text ? "'" : "", type_text ? type_text : "missing", type_text ? "'" : "");
        json_decref(body);
        admin_error(req, 400, "Bad Request", err);
        return;
    }
    if (admin_arguments(req, body, &arguments) < 0 || !admin_session(req)) {
        json_decref(body);
        return;
    }
    spec.arguments = arguments;
    int rc =
        core_declare_exchange(req->session, &spec, false, admin_defined, req, err, sizeof(err));
    json_decref(body);
    if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

static void admin_exchange_delete(struct admin_request *req)
{
    char err[512] = "";
    if (!definitions_exchange(core_definitions(server_core(req->api->server)), req->segments[2],
                              req->segments[3])) {
        admin_error(req, 404, "Object Not Found", "Not Found");
        return;
    }
    if (!admin_session(req))
        return;
    int rc = core_delete_exchange(req->session, req->segments[2], req->segments[3],
                                  admin_query_true(req, "if-unused"), admin_defined, req, err,
                                  sizeof(err));
    if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

/* POST /api/bindings/V/e/SOURCE/q|e/DESTINATION (bind) and DELETE
 * .../PROPERTIES_KEY (unbind; the key is the routing key, as RabbitMQ's
 * properties_key is for a binding without arguments). */
static void admin_binding_change(struct admin_request *req, bool bind)
{
    if (strcmp(req->segments[3], "e") != 0 ||
        (strcmp(req->segments[5], "q") != 0 && strcmp(req->segments[5], "e") != 0)) {
        admin_error(req, 404, "Object Not Found", "Not Found");
        return;
    }
    json_t *body = bind ? admin_body(req) : json_object();
    json_t *arguments = NULL;
    if (!body || admin_arguments(req, body, &arguments) < 0) {
        json_decref(body);
        return;
    }
    const char *key = !bind ? (strcmp(req->segments[7], "~") == 0 ? "" : req->segments[7])
                            : json_string_value(json_object_get(body, "routing_key"));
    struct binding_spec spec = {
        .vhost = req->segments[2],
        .source = req->segments[4],
        .destination_kind = req->segments[5][0] == 'q' ? BINDING_TO_QUEUE : BINDING_TO_EXCHANGE,
        .destination = req->segments[6],
        .routing_key = key ? key : "",
        .arguments = arguments,
    };
    char err[512] = "";
    if (!admin_session(req)) {
        json_decref(body);
        return;
    }
    int rc = bind ? core_bind(req->session, &spec, admin_defined, req, err, sizeof(err))
                  : core_unbind(req->session, &spec, admin_defined, req, err, sizeof(err));
    json_decref(body);
    if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

static void admin_queue_declare(struct admin_request *req)
{
    json_t *body = admin_body(req);
    if (!body)
        return;
    json_t *arguments = json_object_get(body, "arguments");
    if (arguments && !json_is_object(arguments) && !json_is_null(arguments)) {
        json_decref(body);
        admin_error(req, 400, "Bad Request", "\"arguments\" must be a JSON object");
        return;
    }
    struct queue_spec spec = {
        .vhost = req->segments[2],
        .name = req->segments[3],
        .durable = admin_bool(body, "durable", true),
        .auto_delete = admin_bool(body, "auto_delete", false),
        .arguments = json_is_object(arguments) && json_object_size(arguments) ? arguments : NULL,
    };
    char err[512] = "";
    if (!admin_session(req)) {
        json_decref(body);
        return;
    }
    int rc = core_declare_queue(req->session, &spec, false, admin_defined, req, err, sizeof(err));
    json_decref(body);
    if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

char *admin_query_value(struct admin_request *req, const char *name)
{
    const char *query =
        req->request ? evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->request)) : NULL;
    struct evkeyvalq params;
    if (!query || evhttp_parse_query_str(query, &params) < 0)
        return NULL;
    const char *value = evhttp_find_header(&params, name);
    char *copy = value ? strdup(value) : NULL;
    evhttp_clear_headers(&params);
    return copy;
}

static bool admin_query_true(struct admin_request *req, const char *name)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->request));
    struct evkeyvalq params;
    if (!query || evhttp_parse_query_str(query, &params) < 0)
        return false;
    const char *value = evhttp_find_header(&params, name);
    bool yes = value && strcmp(value, "true") == 0;
    evhttp_clear_headers(&params);
    return yes;
}

static void admin_queue_delete(struct admin_request *req)
{
    bool if_unused = admin_query_true(req, "if-unused");
    bool if_empty = admin_query_true(req, "if-empty");
    if (!definitions_queue(core_definitions(server_core(req->api->server)), req->segments[2],
                           req->segments[3])) {
        admin_error(req, 404, "Object Not Found", "Not Found");
        return;
    }
    char err[512] = "";
    if (!admin_session(req))
        return;
    int rc = core_delete_queue(req->session, req->segments[2], req->segments[3], if_unused,
                               if_empty, admin_defined, req, err, sizeof(err));
    if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

static void admin_purged(void *opaque, int core_error, const char *reason, uint64_t count)
{
    struct admin_request *req = opaque;
    if (core_error != CORE_OK) {
        admin_core_error(req, core_error, reason);
        return;
    }
    json_t *body = json_pack("{s:I}", "message_count", (json_int_t)count);
    admin_reply(req, 200, "OK", body);
    json_decref(body);
}

static void admin_queue_purge(struct admin_request *req)
{
    char err[512] = "";
    if (!admin_session(req))
        return;
    int rc = core_purge_queue(req->session, req->segments[2], req->segments[3], admin_purged, req,
                              err, sizeof(err));
    if (rc == CORE_ERR_NOT_FOUND)
        admin_error(req, 404, "Object Not Found", err);
    else if (rc != CORE_OK)
        admin_core_error(req, rc, err);
}

/* ---- definitions ------------------------------------------------------------- */

static void admin_definitions(struct admin_request *req)
{
    struct core *core = server_core(req->api->server);
    char *text = definitions_export_json(core_definitions(core), core_definitions_ready(core));
    json_t *body = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    admin_reply_new(req, body);
}

static void admin_imported(void *opaque, int core_error, const char *reason,
                           const struct core_import_counts *counts)
{
    struct admin_request *req = opaque;
    req->import = NULL;
    if (core_error != CORE_OK) {
        admin_core_error(req, core_error, reason);
        return;
    }
    json_t *body = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I}", "written", (json_int_t)counts->written, "unchanged",
        (json_int_t)counts->unchanged, "refused", (json_int_t)counts->refused, "skipped_vhost",
        (json_int_t)counts->skipped_vhost, "users_skipped", (json_int_t)counts->users,
        "permissions_skipped", (json_int_t)counts->permissions);
    admin_reply(req, 200, "OK", body);
    json_decref(body);
}

/* POST /api/definitions: the definitions.file loader over the body. */
static void admin_definitions_import(struct admin_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req->request);
    size_t len = evbuffer_get_length(in);
    char err[512] = "";
    int rc = CORE_ERR_INTERNAL;
    char label[400];
    snprintf(label, sizeof(label), "POST /api/definitions by %s", req->user);
    req->import = core_import_definitions(server_core(req->api->server),
                                          len ? (const char *)evbuffer_pullup(in, -1) : "", len,
                                          label, admin_imported, req, &rc, err, sizeof(err));
    if (!req->import)
        admin_core_error(req, rc, err);
}

/* ---- routing --------------------------------------------------------------------- */

static bool admin_is(const struct admin_request *req, size_t index, const char *text)
{
    return index < req->segment_count && strcmp(req->segments[index], text) == 0;
}

static void admin_route(struct admin_request *req)
{
    bool get = req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD;
    size_t n = req->segment_count;
    if (admin_is(req, 1, "overview") && n == 2 && get)
        admin_overview(req);
    else if (admin_is(req, 1, "whoami") && n == 2 && get)
        admin_whoami(req);
    else if (admin_is(req, 1, "vhosts") && n == 2 && get)
        admin_vhosts(req);
    else if (admin_is(req, 1, "nodes") && n <= 3 && get)
        admin_nodes_route(req);
    else if (admin_is(req, 1, "connections") && n <= 3 && get)
        admin_connections(req);
    else if (admin_is(req, 1, "connections") && n == 3 && req->method == EVHTTP_REQ_DELETE)
        admin_connection_close(req);
    else if (admin_is(req, 1, "exchanges") && n <= 4 && get)
        admin_exchanges(req);
    else if (admin_is(req, 1, "exchanges") && n == 4 && req->method == EVHTTP_REQ_PUT)
        admin_exchange_declare(req);
    else if (admin_is(req, 1, "exchanges") && n == 4 && req->method == EVHTTP_REQ_DELETE)
        admin_exchange_delete(req);
    else if (admin_is(req, 1, "bindings") && n == 7 && req->method == EVHTTP_REQ_POST)
        admin_binding_change(req, true);
    else if (admin_is(req, 1, "bindings") && n == 8 && req->method == EVHTTP_REQ_DELETE)
        admin_binding_change(req, false);
    else if (admin_is(req, 1, "bindings") && n <= 3 && get)
        admin_bindings(req);
    else if (admin_is(req, 1, "queues") && n <= 4 && get)
        admin_queues(req);
    else if (admin_is(req, 1, "queues") && n == 4 && req->method == EVHTTP_REQ_PUT)
        admin_queue_declare(req);
    else if (admin_is(req, 1, "queues") && n == 4 && req->method == EVHTTP_REQ_DELETE)
        admin_queue_delete(req);
    else if (admin_is(req, 1, "queues") && n == 5 && admin_is(req, 4, "contents") &&
             req->method == EVHTTP_REQ_DELETE)
        admin_queue_purge(req);
    else if (admin_is(req, 1, "kbridge") && admin_is(req, 2, "dlq"))
        admin_dlq_route(req);
    else if (admin_is(req, 1, "kbridge") && admin_is(req, 2, "shovels"))
        admin_shovel_route(req);
    else if (admin_is(req, 1, "permissions") && get)
        admin_permissions_route(req);
    else if (admin_is(req, 1, "definitions") && n == 2 && get)
        admin_definitions(req);
    else if (admin_is(req, 1, "definitions") && n == 2 && req->method == EVHTTP_REQ_POST)
        admin_definitions_import(req);
    else
        admin_no_route(req);
}

void admin_no_route(struct admin_request *req)
{
    admin_error(req, 404, "Object Not Found",
                "no such endpoint (the admin API is listed in docs/operations.md)");
}

/* ---- authentication ------------------------------------------------------------ */

static void admin_authenticated(void *opaque, int result, const char *user, const char *reason)
{
    struct admin_request *req = opaque;
    req->auth = NULL;
    if (result != CORE_OK || !user) {
        admin_error(req, 401, "Unauthorized", reason ? reason : "Login failed");
        return;
    }
    req->role = admin_role_of(admin_user_entry(req));
    bool change = !(req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD);
    if (!admin_role_allows(req->role, change)) {
        char text[400];
        snprintf(text, sizeof(text),
                 change ? "user %s (tags: %s) may not change anything: that takes the "
                          "administrator tag"
                        : "user %s (tags: %s) may not use the admin API: that takes the "
                          "administrator, monitoring or management tag",
                 req->user, admin_role_name(req->role));
        admin_error(req, 403, "Forbidden", text);
        return;
    }
    admin_route(req);
}

/* Split and decode the path ("/api/queues/%2F/q" -> api, queues, /, q).
 * -1 when it has too many segments or does not decode. */
static int admin_split(struct admin_request *req, const char *path)
{
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (req->segment_count == ADMIN_SEGMENTS_MAX || len >= ADMIN_NAME_MAX * 3)
            return -1;
        char raw[ADMIN_NAME_MAX * 3];
        memcpy(raw, p, len);
        raw[len] = '\0';
        size_t decoded_len = 0;
        char *decoded = evhttp_uridecode(raw, 0, &decoded_len);
        if (!decoded || decoded_len != strlen(decoded)) {
            free(decoded);
            return -1;
        }
        req->segments[req->segment_count++] = decoded;
        p += len;
        if (*p == '/')
            p++;
    }
    return 0;
}

bool admin_api_serves(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 && strcmp(path, "/api/status") != 0;
}

void admin_api_handle(struct admin_api *api, struct evhttp_request *request)
{
    struct admin_request *req = calloc(1, sizeof(*req));
    if (!req) {
        evhttp_send_error(request, 500, "out of memory");
        return;
    }
    req->api = api;
    req->request = request;
    req->method = evhttp_request_get_command(request);
    req->next = api->pending;
    if (api->pending)
        api->pending->prev = req;
    api->pending = req;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(request));
    if (!path || admin_split(req, path) < 0) {
        admin_error(req, 400, "Bad Request", "the path does not decode to a resource");
        return;
    }
    struct evhttp_connection *connection = evhttp_request_get_connection(request);
    char *host = NULL;
    ev_uint16_t port = 0;
    if (connection)
        evhttp_connection_get_peer(connection, &host, &port);
    snprintf(req->peer, sizeof(req->peer), "%s:%u", host ? host : "-", (unsigned)port);
    char password[1024];
    const char *header =
        evhttp_find_header(evhttp_request_get_input_headers(request), "Authorization");
    if (!header) {
        admin_error(req, 401, "Unauthorized", "the admin API needs HTTP basic credentials");
        return;
    }
    if (admin_basic_credentials(header, req->user, sizeof(req->user), password, sizeof(password)) <
        0) {
        admin_error(req, 401, "Unauthorized", "the Authorization header is not HTTP basic");
        return;
    }
    req->auth = core_authenticate_start_from(server_core(api->server), req->peer, req->user,
                                             password, admin_authenticated, req);
    OPENSSL_cleanse(password, sizeof(password));
    if (!req->auth)
        admin_error(req, 500, "Internal Server Error", "cannot check the credentials now");
}

struct admin_api *admin_api_new(struct server *server)
{
    struct admin_api *api = calloc(1, sizeof(*api));
    if (api)
        api->server = server;
    return api;
}

void admin_api_free(struct admin_api *api)
{
    if (!api)
        return;
    admin_dlq_shutdown(api);
    while (api->pending) {
        struct admin_request *req = api->pending;
        api->pending = req->next;
        req->api = NULL;
        req->request = NULL;
        req->next = req->prev = NULL;
        if (req->jobs == 0)
            admin_request_free(req); /* else the last job's answer frees it */
    }
    free(api);
}
