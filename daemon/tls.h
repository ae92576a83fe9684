/* SPDX-License-Identifier: Apache-2.0 */
/* tls.h -- TLS on the listeners (architecture §14): one listener's server
 * context (certificate, key, client-certificate policy, versions, ciphers)
 * built from its `tls:` keys and rebuilt on SIGHUP, the accept-side
 * handshake of a new connection (with a deadline, and on a listener of
 * several protocols the wait for the first decrypted bytes that tell the
 * protocol), and the identity a verified client certificate carries (mTLS).
 *
 * OpenSSL through libevent's bufferevent_openssl: a connection's stream is
 * a bufferevent_openssl over the accepted socket, handed to the adapter with
 * the handshake done; the adapter's transport (adapters/transport_tls.c)
 * wraps it. A reload swaps the context new connections get; open
 * connections keep the one they were made with (each SSL holds a reference).
 *
 * Everything runs on the loop thread. */
#ifndef KBRIDGE_TLS_H
#define KBRIDGE_TLS_H

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

struct bufferevent;
struct config_listener;
struct event_base;
struct metrics;
struct sockaddr;
struct tls_context;
struct tls_acceptor;
typedef struct ssl_st SSL;

/* ---- a listener's context ------------------------------------------------------ */

/* Is TLS configured on this listener (tls.cert set)? */
bool tls_configured(const struct config_listener *listener);

/* Check and load `listener`'s tls keys (reads the files): NULL with err
 * naming the key, the file and OpenSSL's reason. The context keeps copies of
 * the file names (reloads re-read the same files). `metrics` (may be NULL)
 * gets kbridge_tls_certificate_expiry_seconds{listener=NAME}. Caller owns. */
struct tls_context *tls_context_new(const struct config_listener *listener, struct metrics *metrics,
                                    char *err, size_t err_size);

/* SIGHUP: re-read the certificate, key and CA files into a new SSL_CTX for
 * new connections. 0, or -1 with err (the running context is kept). */
int tls_context_reload(struct tls_context *tls, char *err, size_t err_size);

/* A new SSL object (server side) on the current context; caller owns it
 * (or the bufferevent it is given to). NULL when out of memory. */
SSL *tls_context_ssl_new(struct tls_context *tls);

/* Seconds from now until the served certificate's notAfter (negative once
 * expired). */
double tls_context_expiry_seconds(const struct tls_context *tls);

/* The listener's name ("stomp"). */
const char *tls_context_name(const struct tls_context *tls);

/* Free; SSL objects made from it stay valid. NULL is fine. */
void tls_context_free(struct tls_context *tls);

/* ---- a connection's identity ------------------------------------------------------ */

/* The user name a verified client certificate of `ssl` carries, by its
 * listener's tls.identity (subject CN, first email or DNS SAN), into out:
 * 1 found; 0 no verified client certificate (nothing written); -1 a
 * verified certificate without that field or with a name that cannot be a
 * user (a sentence for logs in out). */
int tls_peer_identity(SSL *ssl, char *out, size_t out_size);

/* "TLSv1.3": the negotiated version, for logs. */
const char *tls_version(SSL *ssl);

/* ---- the accept-side handshake ---------------------------------------------------- */

/* Why a TLS connection went to no adapter; indexes the counters. */
enum tls_accept_failure {
    TLS_ACCEPT_HANDSHAKE, /* the handshake failed (bad version, unknown CA, no cert...) */
    TLS_ACCEPT_TIMEOUT,   /* no handshake (or no first bytes) before the deadline */
    TLS_ACCEPT_CLOSED,    /* closed before the handshake finished */
    TLS_ACCEPT_UNKNOWN,   /* shared listener: first bytes match no protocol */
    TLS_ACCEPT_FAILURE_COUNT,
};

/* The connection is ready for candidates[index]: `stream` (a
 * bufferevent_openssl over fd, handshake done, callbacks cleared; any
 * bytes read are in its input) is the callee's from now on. */
typedef void (*tls_accept_fn)(void *opaque, size_t index, evutil_socket_t fd,
                              const struct sockaddr *peer, int peer_len,
                              struct bufferevent *stream);

/* Handshakes for the listener whose context is `tls`, choosing among
 * `candidates` (count >= 1; with one, no bytes are waited for; the array
 * must outlive the acceptor) like protocol_detect does, on decrypted
 * bytes. kbridge_tls_handshake_failures_total{listener,reason} is
 * registered in `metrics`. NULL when out of memory. */
struct tls_acceptor *tls_acceptor_new(struct event_base *base, struct tls_context *tls,
                                      const struct adapter_ops *const *candidates, size_t count,
                                      struct metrics *metrics, tls_accept_fn found, void *opaque);

/* Take the accepted socket `fd` (owned from now on) and run the handshake,
 * closing it after timeout_ms; a shared listener peeks at most max_bytes. */
void tls_acceptor_add(struct tls_acceptor *acceptor, evutil_socket_t fd,
                      const struct sockaddr *peer, int peer_len, uint64_t timeout_ms,
                      uint32_t max_bytes);

/* Connections still in their handshake (or waiting for first bytes). */
size_t tls_acceptor_pending(const struct tls_acceptor *acceptor);

/* Close every pending connection (drain). */
void tls_acceptor_close_all(struct tls_acceptor *acceptor);

/* Close every pending connection and free; NULL is fine. */
void tls_acceptor_free(struct tls_acceptor *acceptor);

/* ---- the ops HTTP listener -------------------------------------------------------- */

/* A bufferevent_openssl (accepting, fd set later by evhttp) on the current
 * context, for evhttp_set_bevcb: its signature is evhttp's. */
struct bufferevent *tls_http_bevcb(struct event_base *base, void *tls_context);

#endif
