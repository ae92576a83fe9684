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
 * yet). "consumers" counts this node's subscribers only: a cluster-wide
 * status topic is a later step.
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

/* May the request's user see entity `name`? Everyone but a management user
 * sees all; a management user what its consume patterns allow. */
bool admin_visible(const struct admin_request *req, const char *name)
{
    if (req->role != ADMIN_ROLE_MANAGEMENT)
        return true;
    const struct config_user *entry = admin_user_entry(req);
    for (size_t i = 0; entry && i < entry->consume_count; i++)
        if (regexec(&entry->consume[i].regex, name, 0, NULL, 0) == 0)
            return true;
    return false;
}

/* ---- overview, whoami, vhosts ------------------------------------------------------ */

struct admin_count {
    size_t connections, consumers;
};

static bool admin_count_session(const struct core_session_info *info, void *opaque)
{
    struct admin_count *count = opaque;
    if (strcmp(info->protocol, "http") != 0) {
        count->connections++;
        count->consumers += info->subscriptions;
    }
    return true;
}

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

static json_t *admin_listener_json(const char *node, const char *protocol, const char *address)
{
    const char *colon = strrchr(address, ':');
    char host[80];
    snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - address) : 0, address);
    return json_pack("{s:s,s:s,s:s,s:i}", "node", node, "protocol", protocol, "ip_address", host,
                     "port", colon ? atoi(colon + 1) : 0);
}

static void admin_overview(struct admin_request *req)
{
    struct server *server = req->api->server;
    struct core *core = server_core(server);
    const struct config *config = server_config(server);
    struct kafka *kafka = server_kafka(server);
    struct admin_count count = {0};
    core_each_session(core, admin_count_session, &count);
    size_t queues = 0, exchanges = 0;
    definitions_each_queue(core_definitions(core), admin_count_queue, &queues);
    definitions_each_exchange(core_definitions(core), admin_count_exchange, &exchanges);
    json_t *listeners = json_array();
    for (size_t i = 0; listeners && i < server_listener_count(server); i++) {
        const struct listener *listener = server_listener(server, i);
        json_array_append_new(listeners,
                              admin_listener_json(config->node_id, listener_name(listener),
                                                  listener_address(listener)));
    }
    if (listeners)
        json_array_append_new(
            listeners, admin_listener_json(config->node_id, "http", server_http_address(server)));
    json_t *body = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:i,s:i,s:i,s:i,s:i},s:o,s:{s:f,s:b,s:{s:s,s:b,s:b,s:s},"
        "s:{s:s,s:b}}}",
        "management_version", KBRIDGE_VERSION, "product_name", "kbridge", "product_version",
        KBRIDGE_VERSION, "node", config->node_id, "cluster_name", config->node_id,
        "rabbitmq_version", KBRIDGE_VERSION, "object_totals", "connections",
        (json_int_t)count.connections, "channels", (json_int_t)count.connections, "consumers",
        (json_int_t)count.consumers, "queues", (json_int_t)queues, "exchanges",
        (json_int_t)exchanges, "listeners", listeners ? listeners : json_null(), "kbridge",
        "uptime_seconds", server_uptime_seconds(server), "draining", server_is_draining(server),
        "kafka", "bootstrap", kafka_bootstrap(kafka), "embedded", kafka_is_embedded(kafka), "ready",
        kafka_is_ready(kafka), "reason", kafka_not_ready_reason(kafka), "definitions", "topic",
        config->definitions.topic, "ready", core_definitions_ready(core));
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

struct admin_connections {
    struct admin_request *req;
    json_t *list;
    uint64_t only; /* 0: all */
};

static bool admin_connection_json(const struct core_session_info *info, void *opaque)
{
    struct admin_connections *each = opaque;
    if (strcmp(info->protocol, "http") == 0)
        return true; /* the API's own short-lived sessions */
    if (each->only && info->id != each->only)
        return true;
    if (each->req->role == ADMIN_ROLE_MANAGEMENT && strcmp(info->user, each->req->user) != 0)
        return true;
    const char *node = core_config(server_core(each->req->api->server))->node_id;
    char name[300], host[80];
    snprintf(name, sizeof(name), "%s-%llu", node, (unsigned long long)info->id);
    const char *colon = strrchr(info->peer, ':');
    const char *start = info->peer[0] == '[' ? info->peer + 1 : info->peer;
    int host_len = colon && colon > start ? (int)(colon - start) : (int)strlen(start);
    if (host_len > 0 && start[host_len - 1] == ']')
        host_len--;
    snprintf(host, sizeof(host), "%.*s", host_len, start);
    json_t *connection = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:s,s:i,s:s*,s:{s:i,s:i}}", "name", name, "node", node,
        "user", info->user, "protocol", info->protocol, "vhost", "/", "peer_host", host,
        "peer_port", colon ? atoi(colon + 1) : 0, "connected_at", (json_int_t)info->connected_ms,
        "state", "running", "channels", 1, "client_id", info->client_id, "kbridge", "subscriptions",
        (json_int_t)info->subscriptions, "unconfirmed", (json_int_t)info->unconfirmed);
    if (connection)
        json_array_append_new(each->list, connection);
    return true;
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
    struct admin_connections each = {req, json_array(), 0};
    if (req->segment_count == 3) {
        each.only = admin_connection_id(req, req->segments[2]);
        if (!each.only) {
            json_decref(each.list);
            admin_error(req, 404, "Object Not Found", "no such connection on this node");
            return;
        }
    }
    if (each.list)
        core_each_session(server_core(req->api->server), admin_connection_json, &each);
    if (req->segment_count == 3 && each.list && json_array_size(each.list) == 0) {
        json_decref(each.list);
        admin_error(req, 404, "Object Not Found", "no such connection on this node");
        return;
    }
    if (req->segment_count == 3 && each.list) {
        json_t *one = json_incref(json_array_get(each.list, 0));
        json_decref(each.list);
        each.list = one;
    }
    admin_reply_new(req, each.list);
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
        admin_error(req, 404, "Object Not Found", "no such connection on this node");
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
        !admin_visible(each->req, spec->name))
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
        !admin_visible(each->req, binding->destination))
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

static bool admin_queue_json(const struct queue_definition *queue, void *opaque)
{
    struct admin_list *each = opaque;
    const struct queue_spec *spec = &queue->spec;
    if ((each->vhost && strcmp(spec->vhost, each->vhost) != 0) ||
        (each->name && strcmp(spec->name, each->name) != 0) ||
        !admin_visible(each->req, spec->name))
        return true;
    char *key = NULL, *value = NULL;
    definitions_record_queue(spec, &key, &value);
    size_t before = json_array_size(each->list);
    admin_list_add(each, key, value);
    if (json_array_size(each->list) == before)
        return true;
    json_t *object = json_array_get(each->list, before);
    struct core *core = server_core(each->req->api->server);
    char group[ADMIN_NAME_MAX + 16];
    snprintf(group, sizeof(group), "kbridge.q.%s", spec->name);
    json_object_set_new(object, "node", json_string(core_config(core)->node_id));
    json_object_set_new(object, "state", json_string("running"));
    json_object_set_new(object, "consumers",
                        json_integer((json_int_t)core_queue_consumer_count(core, spec->name)));
    json_object_set_new(object, "kbridge_consumers_scope", json_string("node"));
    json_object_set_new(object, "kbridge_group", json_string(group));
    json_object_set_new(object, "type", json_string("classic"));
    return true;
}

/* Add kbridge_dlq_topic and, from a lookup, kbridge_dlq_messages (what its
 * group kbridge.dlq.NAME has not redriven or discarded) to `queue`. */
static void admin_queue_dlq_depth(struct admin_request *req, json_t *queue, const char *vhost,
                                  const char *name)
{
    char topic[ADMIN_NAME_MAX], group[ADMIN_NAME_MAX + 16];
    if (admin_dlq_topic(server_config(req->api->server), name, topic, sizeof(topic)) < 0)
        return;
    admin_dlq_group(name, group, sizeof(group));
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

static void admin_queues(struct admin_request *req)
{
    struct core *core = server_core(req->api->server);
    struct admin_list each = {req, json_array(), req->segment_count > 2 ? req->segments[2] : NULL,
                              req->segment_count > 3 ? req->segments[3] : NULL};
    if (!each.list) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    definitions_each_queue(core_definitions(core), admin_queue_json, &each);
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

/* The request's session for a definitions call; NULL with the reply sent. */
static struct core_session *admin_session(struct admin_request *req)
{
    req->session =
        core_session_new(server_core(req->api->server), "http", req->user, NULL, req->peer);
    if (!req->session)
        admin_error(req, 500, "Internal Server Error", "out of memory");
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
    else if (admin_is(req, 1, "definitions") && n == 2 && get)
        admin_definitions(req);
    else if (admin_is(req, 1, "definitions") && n == 2 && req->method == EVHTTP_REQ_POST)
        admin_definitions_import(req);
    else
        admin_error(req, 404, "Object Not Found", "Not Found");
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
