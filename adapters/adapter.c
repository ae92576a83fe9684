/* adapter.c -- what every protocol adapter does the same way with an
 * accepted socket: name the peer, make the socket non-blocking without
 * Nagle's delay, and wrap it in a bufferevent that owns it; and how much
 * output a connection may hold before its deliveries stop. */
#include "adapter.h"

#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "listener.h"
#include "log.h"

struct bufferevent *adapter_socket_open(struct event_base *base, const char *protocol,
                                        evutil_socket_t fd, const struct sockaddr *peer,
                                        int peer_len, char *peer_text, size_t peer_text_size)
{
    if (peer && peer_len > 0)
        listener_format_address(peer, peer_text, peer_text_size);
    else
        snprintf(peer_text, peer_text_size, "(unknown)");
    evutil_make_socket_nonblocking(fd);
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
        int one = 1; /* receipts, dispositions and small messages should not wait for Nagle */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        log_error(protocol, "%s: cannot create a bufferevent", peer_text);
        evutil_closesocket(fd);
    }
    return bev;
}

size_t adapter_output_high(uint64_t max_frame_size)
{
    uint64_t high = ADAPTER_OUTPUT_HIGH_FRAMES * max_frame_size;
    if (high > ADAPTER_OUTPUT_HIGH_MAX)
        high = ADAPTER_OUTPUT_HIGH_MAX;
    return high > ADAPTER_OUTPUT_HIGH_MIN ? (size_t)high : (size_t)ADAPTER_OUTPUT_HIGH_MIN;
}
