/* SPDX-License-Identifier: Apache-2.0 */
/* listener.h -- TCP listening sockets for the client and ops listeners.
 *
 * listener_socket_open resolves a "host:port" / "[v6]:port" bind string,
 * binds and listens, and reports the address actually bound (port 0 picks a
 * free port). struct listener wraps such a socket in a libevent
 * evconnlistener and hands each accepted connection to its owner. */
#ifndef KBRIDGE_LISTENER_H
#define KBRIDGE_LISTENER_H

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct sockaddr;
struct listener;

/* Called on the loop for every accepted connection; the callee owns `fd`. */
typedef void (*listener_accept_fn)(void *opaque, evutil_socket_t fd, const struct sockaddr *peer,
                                   int peer_len);

/* Split "host:port" or "[v6]:port" into host and port. 0 ok, -1 with err. */
int listener_split_bind(const char *bind, char *host, size_t host_size, char *port,
                        size_t port_size, char *err, size_t err_size);

/* Open a non-blocking, close-on-exec listening socket on `bind`. On success
 * returns 0, stores the socket in *fd_out (caller owns it) and writes the bound
 * address ("127.0.0.1:40123") into `bound`. On failure returns -1 and writes
 * "cannot listen on BIND: reason" into err. Resolves names: startup only. */
int listener_socket_open(const char *bind, evutil_socket_t *fd_out, char *bound, size_t bound_size,
                         char *err, size_t err_size);

/* Reserve `bind` for worker processes that will share it (supervisor.c):
 * refuses a port another socket listens on (with SO_REUSEPORT or not), then
 * binds (without listening, so it takes no connections) an SO_REUSEPORT
 * socket on it. 0 with the socket
 * in *fd_out (caller owns it) and the concrete address ("127.0.0.1:40123",
 * port 0 resolved) in `bound`; -1 with err. */
int listener_socket_reserve(const char *bind, evutil_socket_t *fd_out, char *bound,
                            size_t bound_size, char *err, size_t err_size);

/* Bind `bind` and start accepting on `base`. `name` ("stomp") is used in
 * logs. `reuseport`: set SO_REUSEPORT (several worker processes listen on
 * one port; the kernel spreads connections). Returns NULL with err filled
 * on failure. Caller owns the result. */
struct listener *listener_new(struct event_base *base, const char *name, const char *bind,
                              bool reuseport, listener_accept_fn accept_fn, void *opaque, char *err,
                              size_t err_size);

/* The address actually bound ("127.0.0.1:40123"); owned by the listener. */
const char *listener_address(const struct listener *listener);
/* The configured bind string; owned by the listener. */
const char *listener_bind(const struct listener *listener);
/* The listener's name ("stomp"). */
const char *listener_name(const struct listener *listener);

/* Stop accepting (connections wait in the backlog) / accept again. */
void listener_pause(struct listener *listener);
void listener_resume(struct listener *listener);

/* Close the socket and free; NULL is fine. */
void listener_free(struct listener *listener);

/* Format a socket address as "ip:port" / "[ip6]:port" into buf. */
void listener_format_address(const struct sockaddr *addr, char *buf, size_t size);

#endif
