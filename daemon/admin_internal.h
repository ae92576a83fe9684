/* SPDX-License-Identifier: Apache-2.0 */
/* admin_internal.h -- what the files of the admin API share (admin_api.c:
 * authentication, routing, the RabbitMQ-shaped resources; admin_dlq.c: the
 * dead-letter resources under /api/kbridge/dlq; admin_nodes.c, admin_shovel.c,
 * admin_permissions.c: /api/nodes, /api/kbridge/shovels, /api/permissions).
 * Nothing else includes it.
 *
 * A struct admin_request lives from admin_api_handle until its reply
 * (admin_reply and the helpers built on it free it). A request waiting for
 * jobs counts them in `jobs`; admin_api_free detaches such a request
 * (api and request NULL) and the last job's answer frees it. */
#ifndef KBRIDGE_ADMIN_INTERNAL_H
#define KBRIDGE_ADMIN_INTERNAL_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "admin_auth.h"

#define ADMIN_SEGMENTS_MAX 8
#define ADMIN_NAME_MAX 512

struct admin_dlq_run;
struct config;
struct config_user;
struct core_auth;
struct core_import;
struct core_session;
struct server;

struct admin_api {
    struct server *server;
    struct admin_request *pending;  /* doubly linked */
    struct admin_dlq_run *dlq_runs; /* redrives and discards running (admin_dlq.c) */
};

struct admin_request {
    struct admin_request *next, *prev;
    struct admin_api *api;          /* NULL once detached (shutdown) */
    struct evhttp_request *request; /* NULL once detached */
    enum evhttp_cmd_type method;
    struct core_auth *auth;
    char user[256];
    char peer[80];
    enum admin_role role;
    char *segments[ADMIN_SEGMENTS_MAX]; /* decoded path segments after "/" */
    size_t segment_count;
    struct core_session *session; /* declares and deletes */
    struct core_import *import;   /* POST /api/definitions */
    /* queue listings waiting for their depths */
    json_t *result;
    bool single; /* answer result's only element, not the array */
    size_t jobs;
};
/* 404 for a path or method the admin API does not serve (its reason is not
 * RabbitMQ's "Not Found" of a missing object, so the two can be told apart). */
void admin_no_route(struct admin_request *req);

/* Free a request without answering (a detached one whose last job ended). */
void admin_request_free(struct admin_request *req);
/* Answer (unless detached) and free the request. `body` is borrowed. */
void admin_reply(struct admin_request *req, int code, const char *reason, const json_t *body);
/* RabbitMQ's error body {"error", "reason"}, then free the request. */
void admin_error(struct admin_request *req, int code, const char *error, const char *reason);
/* 200 with `body` (taken; NULL: 500 out of memory), then free the request. */
void admin_reply_new(struct admin_request *req, json_t *body);
/* Answer a list (owned, NULL: out of memory), or with `name` its one
 * element (the list filtered to it), or 404 with `not_found` when it is
 * empty. */
void admin_reply_list_or_one(struct admin_request *req, json_t *list, const char *name,
                             const char *not_found);
/* The request's user's auth.users entry, or NULL. */
const struct config_user *admin_user_entry(const struct admin_request *req);
/* May the request's user see entity `name` (management users: what they may consume)? */
bool admin_visible(const struct admin_request *req, const char *vhost, const char *name);
/* The request body as a JSON object (empty: {}); NULL with the reply sent. */
json_t *admin_body(struct admin_request *req);
/* The query parameter `name` (malloc'd, caller frees) or NULL. */
char *admin_query_value(struct admin_request *req, const char *name);

/* admin_dlq.c: serve /api/kbridge/dlq/VHOST/QUEUE[/...] (segments 0..2 are
 * api, kbridge, dlq). */
void admin_dlq_route(struct admin_request *req);
/* admin_shovel.c: serve /api/kbridge/shovels[/NAME] (segments 0..2 are api,
 * kbridge, shovels). */
void admin_shovel_route(struct admin_request *req);
/* admin_permissions.c: serve GET /api/permissions[/VHOST/USER] (segments 0..1
 * are api, permissions): RabbitMQ's permissions built from auth.users. */
void admin_permissions_route(struct admin_request *req);
/* Queue `name`'s dead-letter topic in `vhost` as daemon/queue.c names it
 * (the vhost's topic prefix + queues.dead_letter_topic with {name}
 * replaced); -1 when it does not fit in out or the vhost is not configured. */
int admin_dlq_topic(const struct config *config, const char *vhost, const char *name, char *out,
                    size_t out_size);
/* The DLQ's own consumer group: kbridge.dlq.NAME in vhost "/", else
 * kbridge.v.VHOST/dlq.NAME (address_group_id); -1 when it does not fit. */
int admin_dlq_group(const char *vhost, const char *name, char *out, size_t out_size);
/* Shutdown, before the waiting requests are detached: stop what waits on a
 * timer (its request answered 503), leave running jobs to end on their own. */
void admin_dlq_shutdown(struct admin_api *api);

/* ---- the cluster view (admin_nodes.c) ---------------------------------------- */

/* One node's record (status_record.h) as the API shows it. */
struct admin_node {
    json_t *record; /* a reference held by the list */
    bool local;     /* this node: built live, never stale */
    bool stale;     /* not heard of for status.expiry: not running */
    int64_t age_ms;
};
struct admin_nodes {
    struct admin_node *items; /* this node first, then the others by name */
    size_t count;
};
/* Every node's record: this node's (live) and the status topic's others.
 * `only`: NULL all, "local" this node, else that node. 0, or -1 out of memory. */
int admin_nodes_collect(struct admin_request *req, const char *only, struct admin_nodes *out);
void admin_nodes_release(struct admin_nodes *nodes);
/* RabbitMQ's message_stats (publish, deliver_get, ack, each with _details.rate)
 * summed over `nodes` (`running_only`: leaving stale ones out). New reference. */
json_t *admin_message_stats(const struct admin_nodes *nodes, bool running_only);
/* A node as /api/nodes shows it. New reference, NULL out of memory. */
json_t *admin_node_json(const struct admin_request *req, const struct admin_node *node);
/* GET /api/nodes[/NAME]. */
void admin_nodes_route(struct admin_request *req);

#endif
