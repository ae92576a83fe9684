/* SPDX-License-Identifier: Apache-2.0 */
/* http.h -- the ops HTTP listener (libevent evhttp): the probes /healthz,
 * /readyz, /metrics (Prometheus text) and /api/status (JSON), read-only and
 * unauthenticated, and the authenticated admin API under /api/
 * (admin_api.h), which may change state. */
#ifndef KBRIDGE_HTTP_H
#define KBRIDGE_HTTP_H

#include <stddef.h>

struct event_base;
struct server;
struct ops_http;

/* The protocol name of the ops endpoint in `listeners.NAME.protocols` (the
 * default of `listeners.http`); the daemon's own, not an adapter. */
#define OPS_HTTP_PROTOCOL "http"

struct tls_context;

/* Bind `bind` and serve the ops endpoints for `server`, over TLS when `tls`
 * (the listener's context, daemon/tls.h; owned by the caller, outliving
 * the result) is not NULL. Returns NULL with err filled when the address
 * cannot be bound. Caller owns the result. */
struct ops_http *ops_http_new(struct event_base *base, struct server *server, const char *bind,
                              struct tls_context *tls, char *err, size_t err_size);
/* The address actually bound ("127.0.0.1:15672"). Owned by the listener. */
const char *ops_http_address(const struct ops_http *http);
/* Stop serving and free; NULL is fine. */
void ops_http_free(struct ops_http *http);

#endif
