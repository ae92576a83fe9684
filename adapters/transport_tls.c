/* SPDX-License-Identifier: Apache-2.0 */
/* transport_tls.c -- the TLS transport (transport.h): the listener's
 * handshake (daemon/tls.c) made a bufferevent_openssl over the accepted
 * socket; this wraps it for the adapter. Ending our direction sends
 * close_notify before the TCP half-close; the peer's identity comes from
 * its verified certificate. */
#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "listener.h"
#include "log.h"
#include "tls.h"

static SSL *transport_tls_ssl(struct transport *transport)
{
    return bufferevent_openssl_get_ssl(transport->stream);
}

/* close_notify, then the TCP half-close; reading goes on (linger) until the
 * peer's close_notify or EOF. One non-blocking attempt: on a full socket
 * the alert is dropped and the half-close still tells the peer. */
static int transport_tls_shutdown_write(struct transport *transport)
{
    SSL *ssl = transport_tls_ssl(transport);
    if (ssl && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    return shutdown(transport->fd, SHUT_WR);
}

/* The loop has stopped: write what is queued with SSL_write, once, without
 * waiting (bufferevent_openssl allows a moved write buffer). */
static void transport_tls_flush_now(struct transport *transport)
{
    SSL *ssl = transport_tls_ssl(transport);
    struct evbuffer *output = bufferevent_get_output(transport->stream);
    if (!ssl || !SSL_is_init_finished(ssl))
        return;
    struct evbuffer_iovec chunks[16];
    int n = evbuffer_peek(output, -1, NULL, chunks, 16);
    for (int i = 0; i < n && i < 16; i++) {
        if (chunks[i].iov_len == 0)
            continue;
        if (SSL_write(ssl, chunks[i].iov_base, (int)chunks[i].iov_len) <= 0) {
            log_debug("transport", "%s: final TLS flush failed", transport->peer);
            break;
        }
    }
    SSL_shutdown(ssl);
    ERR_clear_error();
}

static int transport_tls_peer_identity(struct transport *transport, char *out, size_t out_size)
{
    SSL *ssl = transport_tls_ssl(transport);
    return ssl ? tls_peer_identity(ssl, out, out_size) : 0;
}

static const struct transport_ops transport_tls_ops = {
    .name = "tls",
    .shutdown_write = transport_tls_shutdown_write,
    .flush_now = transport_tls_flush_now,
    .peer_identity = transport_tls_peer_identity,
};

int transport_open_tls(struct transport *transport, struct bufferevent *stream, evutil_socket_t fd,
                       const struct sockaddr *peer, int peer_len)
{
    if (peer && peer_len > 0)
        listener_format_address(peer, transport->peer, sizeof(transport->peer));
    else
        snprintf(transport->peer, sizeof(transport->peer), "(unknown)");
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
        int one = 1; /* as plain TCP: small frames should not wait for Nagle */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    transport->stream = stream;
    transport->fd = fd;
    transport->ws = NULL; /* transport_ws_stack may stack WebSocket on it (wss) */
    transport->ops = &transport_tls_ops;
    return 0;
}
