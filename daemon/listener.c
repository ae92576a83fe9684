/* SPDX-License-Identifier: Apache-2.0 */
/* listener.c -- binds listening sockets (with errors that name the address
 * and the reason), shared by the worker processes with SO_REUSEPORT when
 * `processes` > 1 (architecture "Processes"), and runs them on libevent's
 * evconnlistener. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

struct listener {
    char *name;
    char *bind;
    char address[80];
    struct evconnlistener *evlistener;
    listener_accept_fn accept_fn;
    void *opaque;
};

int listener_split_bind(const char *bind, char *host, size_t host_size, char *port,
                        size_t port_size, char *err, size_t err_size)
{
    const char *host_start = bind;
    const char *host_end;
    const char *port_start;
    if (bind[0] == '[') {
        host_start = bind + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':') {
            snprintf(err, err_size, "bad address \"%s\": expected [IPv6]:PORT", bind);
            return -1;
        }
        port_start = host_end + 2;
    } else {
        host_end = strrchr(bind, ':');
        if (!host_end) {
            snprintf(err, err_size, "bad address \"%s\": expected HOST:PORT", bind);
            return -1;
        }
        port_start = host_end + 1;
    }
    size_t host_len = (size_t)(host_end - host_start);
    size_t port_len = strlen(port_start);
    if (host_len == 0 || port_len == 0 || host_len >= host_size || port_len >= port_size) {
        snprintf(err, err_size, "bad address \"%s\": expected HOST:PORT", bind);
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(port, port_start, port_len + 1);
    return 0;
}

void listener_format_address(const struct sockaddr *addr, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(buf, size, "(family %d)", addr->sa_family);
    }
}

/* Socket options of listener_socket_bind. */
enum {
    LISTENER_LISTEN = 1,    /* listen(2) after bind */
    LISTENER_REUSEPORT = 2, /* SO_REUSEPORT: share the port with the other workers */
};

/* Resolve `bind_address`, bind the first address that takes it (and listen
 * with LISTENER_LISTEN); 0 with the socket and bound address, -1 with err. */
static int listener_socket_bind(const char *bind_address, int options, evutil_socket_t *fd_out,
                                char *bound, size_t bound_size, char *err, size_t err_size)
{
    char host[256], port[16], why[160];
    if (listener_split_bind(bind_address, host, sizeof(host), port, sizeof(port), why,
                            sizeof(why)) < 0) {
        snprintf(err, err_size, "cannot listen on %s: %s", bind_address, why);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &found);
    if (gai != 0) {
        snprintf(err, err_size, "cannot listen on %s: %s", bind_address, gai_strerror(gai));
        return -1;
    }
    int last_errno = 0;
    evutil_socket_t fd = -1;
    for (struct addrinfo *ai = found; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if ((options & LISTENER_REUSEPORT) &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
            continue;
        }
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            (!(options & LISTENER_LISTEN) || listen(fd, 1024) == 0))
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd < 0) {
        snprintf(err, err_size, "cannot listen on %s: %s", bind_address, strerror(last_errno));
        return -1;
    }
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof(addr);
    if (getsockname(fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        snprintf(err, err_size, "cannot listen on %s: getsockname: %s", bind_address,
                 strerror(errno));
        close(fd);
        return -1;
    }
    listener_format_address((struct sockaddr *)&addr, bound, bound_size);
    *fd_out = fd;
    return 0;
}

int listener_socket_open(const char *bind_address, evutil_socket_t *fd_out, char *bound,
                         size_t bound_size, char *err, size_t err_size)
{
    return listener_socket_bind(bind_address, LISTENER_LISTEN, fd_out, bound, bound_size, err,
                                err_size);
}

int listener_socket_reserve(const char *bind_address, evutil_socket_t *fd_out, char *bound,
                            size_t bound_size, char *err, size_t err_size)
{
    /* First without SO_REUSEPORT: a port another process listens on (shared
     * or not) is refused here, as a single process would be; port 0 picks.
     * Both binds set SO_REUSEADDR (as every listener does, for TIME_WAIT), so
     * a port merely bound, not listened on, does not count as in use. */
    evutil_socket_t probe;
    char picked[80];
    if (listener_socket_bind(bind_address, 0, &probe, picked, sizeof(picked), err, err_size) < 0)
        return -1;
    close(probe);
    char why[300];
    if (listener_socket_bind(picked, LISTENER_REUSEPORT, fd_out, bound, bound_size, why,
                             sizeof(why)) < 0) {
        snprintf(err, err_size, "%s (reserving %s for the worker processes)", why, picked);
        return -1;
    }
    return 0;
}

static void listener_on_accept(struct evconnlistener *evlistener, evutil_socket_t fd,
                               struct sockaddr *peer, int peer_len, void *arg)
{
    struct listener *listener = arg;
    listener->accept_fn(listener->opaque, fd, peer, peer_len);
}

static void listener_on_error(struct evconnlistener *evlistener, void *arg)
{
    struct listener *listener = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep the listener, the loop retries on next readiness */
    log_error("listener", "%s listener on %s: accept failed: %s", listener->name, listener->address,
              evutil_socket_error_to_string(err));
}

struct listener *listener_new(struct event_base *base, const char *name, const char *bind,
                              bool reuseport, listener_accept_fn accept_fn, void *opaque, char *err,
                              size_t err_size)
{
    struct listener *listener = calloc(1, sizeof(*listener));
    if (!listener || !(listener->name = strdup(name)) || !(listener->bind = strdup(bind))) {
        snprintf(err, err_size, "%s listener: out of memory", name);
        goto fail;
    }
    evutil_socket_t fd;
    char why[300];
    int options = LISTENER_LISTEN | (reuseport ? LISTENER_REUSEPORT : 0);
    if (listener_socket_bind(bind, options, &fd, listener->address, sizeof(listener->address), why,
                             sizeof(why)) < 0) {
        snprintf(err, err_size, "listeners.%s: %s", name, why);
        goto fail;
    }
    listener->accept_fn = accept_fn;
    listener->opaque = opaque;
    listener->evlistener = evconnlistener_new(
        base, listener_on_accept, listener, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!listener->evlistener) {
        close(fd);
        snprintf(err, err_size, "listeners.%s: cannot watch socket on %s", name, listener->address);
        goto fail;
    }
    evconnlistener_set_error_cb(listener->evlistener, listener_on_error);
    return listener;
fail:
    listener_free(listener);
    return NULL;
}

const char *listener_address(const struct listener *listener) { return listener->address; }
const char *listener_bind(const struct listener *listener) { return listener->bind; }
const char *listener_name(const struct listener *listener) { return listener->name; }

void listener_pause(struct listener *listener) { evconnlistener_disable(listener->evlistener); }
void listener_resume(struct listener *listener) { evconnlistener_enable(listener->evlistener); }

void listener_free(struct listener *listener)
{
    if (!listener)
        return;
    if (listener->evlistener)
        evconnlistener_free(listener->evlistener);
    free(listener->name);
    free(listener->bind);
    free(listener);
}
