/* SPDX-License-Identifier: Apache-2.0 */
/* admin_api.h -- the admin API on the ops HTTP listener (architecture §9,
 * docs/operations.md "Admin API"): RabbitMQ's management API shapes
 * (/api/overview, /api/whoami, /api/connections, /api/queues,
 * /api/exchanges, /api/bindings, /api/definitions) and kbridge's own under
 * /api/kbridge/ (dead letters: admin_dlq.c), behind HTTP basic
 * authentication against auth.users and their tags (admin_auth.h). JSON
 * through jansson. Owned by the ops listener (http.c). */
#ifndef KBRIDGE_ADMIN_API_H
#define KBRIDGE_ADMIN_API_H

#include <stdbool.h>

struct evhttp_request;
struct server;
struct admin_api;

/* A new API serving `server` (borrowed; outlives the result). NULL out of
 * memory. */
struct admin_api *admin_api_new(struct server *server);
/* Is `path` one of the API's (under /api/, but not /api/status, which
 * stays a probe)? */
bool admin_api_serves(const char *path);
/* Answer `request` (now or later, on the loop): authenticate it, check the
 * user's tags against the method, then serve it. */
void admin_api_handle(struct admin_api *api, struct evhttp_request *request);
/* Forget every request still waiting (their evhttp requests are freed by
 * evhttp_free, which must follow) and free. NULL is fine. */
void admin_api_free(struct admin_api *api);

#endif
