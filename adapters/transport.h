/* SPDX-License-Identifier: Apache-2.0 */
/* transport.h -- what carries a connection's bytes (architecture §14).
 *
 * An adapter reads and writes one stream, a bufferevent (`transport.stream`),
 * and never knows what is under it. The transport owns the socket, the
 * peer's text ("127.0.0.1:5555"), the end of our direction of the stream
 * (after the last frame is flushed) and the close; it names itself for
 * logs and metrics (transport_name). Kinds: plain TCP (transport_open_tcp:
 * a socket bufferevent) and TLS (transport_open_tls, adapters/
 * transport_tls.c: the bufferevent_openssl over the socket that the
 * listener's handshake made, daemon/tls.h); WebSocket (transport_ws_stack
 * in transport_ws.h: a filter bufferevent, framing by wslay) stacks on
 * either (ws, wss): the adapter still gets one bufferevent and these
 * calls. The peer's certificate identity (mTLS) is asked for through
 * transport_peer_identity, whatever the kind.
 *
 * Everything here runs on the loop thread. A struct transport is embedded
 * in its connection (no allocation of its own); it is valid from a
 * successful open until transport_close. */
#ifndef KBRIDGE_TRANSPORT_H
#define KBRIDGE_TRANSPORT_H

#include <event2/util.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
struct sockaddr;
struct transport;
struct transport_ws;

/* What differs between transports. Each kind has one static table. */
struct transport_ops {
    const char *name; /* "tcp": the transport in logs and metric labels */
    /* Our side is done (the last frame is flushed): tell the peer, keep
     * reading (TCP: shutdown(SHUT_WR); TLS: close_notify, then the same).
     * 0, or -1 when it cannot (the caller then closes at once). */
    int (*shutdown_write)(struct transport *transport);
    /* The loop has stopped (daemon shutdown): one non-blocking attempt to
     * write what is queued; nothing is waited for. */
    void (*flush_now)(struct transport *transport);
    /* Optional (NULL: never an identity): see transport_peer_identity. */
    int (*peer_identity)(struct transport *transport, char *out, size_t out_size);
};

struct transport {
    const struct transport_ops *ops; /* NULL until opened and after transport_close */
    struct bufferevent *stream;      /* what the adapter reads and writes; owned here */
    evutil_socket_t fd;              /* the socket under the stream; owned by it */
    char peer[64];                   /* "127.0.0.1:5555", or "(unknown)" */
    struct transport_ws *ws;         /* the WebSocket layer (transport_ws.c); NULL otherwise */
};

/* Plain TCP: take an accepted socket, write the peer's address into
 * transport->peer, make it non-blocking with TCP_NODELAY and wrap it in a
 * socket bufferevent that owns it. 0, or -1 (socket closed, logged under
 * `protocol`, nothing to close) on failure. */
int transport_open_tcp(struct transport *transport, struct event_base *base, const char *protocol,
                       evutil_socket_t fd, const struct sockaddr *peer, int peer_len);

/* TLS: take `stream`, the bufferevent_openssl over the accepted socket fd
 * whose handshake the listener finished (daemon/tls.h), and write the
 * peer's address into transport->peer. Returns 0 (it cannot fail; an int
 * like transport_open_tcp so connection_new treats both alike). */
int transport_open_tls(struct transport *transport, struct bufferevent *stream, evutil_socket_t fd,
                       const struct sockaddr *peer, int peer_len);

/* The user a verified client certificate names (listener's tls.identity)
 * into out: 1 found; 0 none (not TLS, or no verified certificate); -1 a
 * verified certificate that names no acceptable user (reason in out).
 * Through a WebSocket layer, the TLS transport under it is asked. */
int transport_peer_identity(struct transport *transport, char *out, size_t out_size);

/* The transport's static name ("tcp", "tls", "websocket", "wss"), "none"
 * when not open. */
const char *transport_name(const struct transport *transport);

/* See transport_ops.shutdown_write. -1 when not open. */
int transport_shutdown_write(struct transport *transport);

/* See transport_ops.flush_now. Nothing when not open. */
void transport_flush_now(struct transport *transport);

/* Free the stream and close the socket (what is still queued is dropped).
 * Safe on a transport that is not open, and twice. */
void transport_close(struct transport *transport);

#endif
