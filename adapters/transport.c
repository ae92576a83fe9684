/* SPDX-License-Identifier: Apache-2.0 */
/* transport.c -- the transports under the adapters (transport.h): plain
 * TCP (a socket bufferevent over an accepted, non-blocking socket without
 * Nagle's delay) and what every kind shares; WebSocket is transport_ws.c. */
#include "transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "listener.h"
#include "log.h"
#include "transport_ws.h"

/* ---- plain TCP ------------------------------------------------------------------ */

static int transport_tcp_shutdown_write(struct transport *transport)
{
    return shutdown(transport->fd, SHUT_WR);
}

/* A socket bufferevent's output cannot be drained from outside while the
 * loop is stopped (its start is frozen), so peek and writev; the buffer is
 * freed right after anyway. */
static void transport_tcp_flush_now(struct transport *transport)
{
    struct evbuffer *output = bufferevent_get_output(transport->stream);
    struct evbuffer_iovec chunks[16];
    int n = evbuffer_peek(output, -1, NULL, chunks, 16);
    if (n <= 0)
        return;
    struct iovec iov[16];
    int count = n < 16 ? n : 16;
    for (int i = 0; i < count; i++) {
        iov[i].iov_base = chunks[i].iov_base;
        iov[i].iov_len = chunks[i].iov_len;
    }
    if (writev(transport->fd, iov, count) < 0)
        log_debug("transport", "%s: final flush failed: %s", transport->peer, strerror(errno));
}

static const struct transport_ops transport_tcp_ops = {
    .name = "tcp",
    .shutdown_write = transport_tcp_shutdown_write,
    .flush_now = transport_tcp_flush_now,
};

int transport_open_tcp(struct transport *transport, struct event_base *base, const char *protocol,
                       evutil_socket_t fd, const struct sockaddr *peer, int peer_len)
{
    transport->ops = NULL;
    transport->stream = NULL;
    transport->fd = -1;
    transport->ws = NULL;
    if (peer && peer_len > 0)
        listener_format_address(peer, transport->peer, sizeof(transport->peer));
    else
        snprintf(transport->peer, sizeof(transport->peer), "(unknown)");
    evutil_make_socket_nonblocking(fd);
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
        int one = 1; /* receipts, dispositions and small messages should not wait for Nagle */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    transport->stream = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!transport->stream) {
        log_error(protocol, "%s: cannot create a bufferevent", transport->peer);
        evutil_closesocket(fd);
        return -1;
    }
    transport->fd = fd;
    transport->ops = &transport_tcp_ops;
    return 0;
}

/* ---- any transport ---------------------------------------------------------------- */

const char *transport_name(const struct transport *transport)
{
    return transport->ops ? transport->ops->name : "none";
}

int transport_shutdown_write(struct transport *transport)
{
    if (!transport->ops || transport->fd < 0)
        return -1;
    return transport->ops->shutdown_write(transport);
}

void transport_flush_now(struct transport *transport)
{
    if (transport->ops && transport->fd >= 0)
        transport->ops->flush_now(transport);
}

int transport_peer_identity(struct transport *transport, char *out, size_t out_size)
{
    if (!transport->ops || !transport->ops->peer_identity)
        return 0;
    return transport->ops->peer_identity(transport, out, out_size);
}

void transport_close(struct transport *transport)
{
    if (transport->ws) {
        transport_ws_close(transport); /* the filter, the socket bufferevent under it */
        return;
    }
    if (transport->stream)
        bufferevent_free(transport->stream); /* BEV_OPT_CLOSE_ON_FREE: closes the socket */
    transport->stream = NULL;
    transport->fd = -1;
    transport->ops = NULL;
}
