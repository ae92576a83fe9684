/* SPDX-License-Identifier: Apache-2.0 */
/* transport_ws.h -- the WebSocket transport (architecture §14): an adapter's
 * stream carried in WebSocket messages (RFC 6455), as RabbitMQ's Web-STOMP
 * carries STOMP.
 *
 * transport_ws_stack stacks a filter bufferevent on an opened transport's
 * bufferevent (TCP: the socket one, ws; TLS: the OpenSSL one, wss); the
 * filter is what the adapter reads and writes (transport.stream), so the
 * adapter is the same as on TCP. The layer first answers the HTTP upgrade request
 * (transport_ws_handshake: path, Origin allow-list, version, subprotocol;
 * a refusal is an HTTP error response, flushed, then the adapter sees EOF);
 * after the 101 response wslay does the framing: every text or binary
 * message's payload is appended to the adapter's input, pings are answered,
 * a message over the listener's websocket.max_message_size gets close 1009,
 * a close frame is answered and ends the stream (EOF to the adapter). The
 * adapter's output goes out once per loop iteration as one message (text
 * when it is valid UTF-8, else binary). An upgrade not complete within
 * limits.handshake_timeout ends the stream with BEV_EVENT_TIMEOUT.
 *
 * The layer writes to the bufferevent under the filter and never touches the
 * socket itself (it ends our side and flushes through the transport under),
 * so it sits on a TLS transport as well as a TCP one (transport_ws_stack).
 *
 * Everything runs on the loop thread. */
#ifndef KBRIDGE_TRANSPORT_WS_H
#define KBRIDGE_TRANSPORT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct config;
struct config_listener;

/* The subprotocols a WebSocket listener accepts, the server's preference
 * last (a client's first offered match is chosen). */
#define TRANSPORT_WS_SUBPROTOCOLS "v10.stomp, v11.stomp, v12.stomp"

/* The longest upgrade request head accepted (request line and headers). */
#define TRANSPORT_WS_HEAD_MAX 8192

/* What an upgrade request is checked against. */
struct transport_ws_policy {
    const char *path;                /* "/ws" */
    const char *const *origins;      /* allowed Origin values (case-insensitive); */
    size_t origin_count;             /* 0: any origin */
    const char *const *subprotocols; /* supported, e.g. {"v10.stomp", "v11.stomp", ...} */
    size_t subprotocol_count;
};

/* Answer one HTTP upgrade request: `head` is its request line and headers
 * (len bytes, through the blank line). Writes the complete HTTP response
 * into `response` (NUL-terminated; a 101 with Sec-WebSocket-Accept and the
 * chosen Sec-WebSocket-Protocol, or an error with a one-line text body) and
 * returns its status: 101 (upgrade), 400 (malformed, not an upgrade, no
 * supported subprotocol offered), 403 (Origin not allowed), 404 (another
 * path), 405 (not GET), 426 (not an upgrade, or Sec-WebSocket-Version is
 * not 13). `why` gets a
 * sentence for the log (also on 101: the subprotocol chosen or "none").
 * Pure; `response` needs 1024 bytes. */
int transport_ws_handshake(const char *head, size_t len, const struct transport_ws_policy *policy,
                           char *response, size_t response_size, char *why, size_t why_size);

/* An HTTP error response (Connection: close) with `why` and a newline as its
 * text body, into `response`; returns `status`. `extra_headers` is "" or
 * complete header lines. */
int transport_ws_refuse(char *response, size_t response_size, int status, const char *reason,
                        const char *extra_headers, const char *why);

/* Stack the WebSocket layer on an open transport (TCP; TLS for wss): its
 * stream goes under a filter bufferevent, which becomes transport.stream;
 * the transport under is kept (its shutdown_write ends our side after the
 * close frame, its flush_now and close are used by this layer's). The
 * listener's options (path, origins, max message size) are read from the
 * config in force (`*config`, listener `listener_name`) when the request
 * arrives; `handshake_timeout_ms` bounds the upgrade. 0, or -1 (the
 * transport closed, logged under `protocol`). */
int transport_ws_stack(struct transport *transport, struct event_base *base, const char *protocol,
                       struct config *const *config, const char *listener_name,
                       uint64_t handshake_timeout_ms);

/* transport_close for a WebSocket transport: free the layer and the filter,
 * then close the transport under. */
void transport_ws_close(struct transport *transport);

#endif
