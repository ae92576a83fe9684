/* SPDX-License-Identifier: Apache-2.0 */
/* tls.c -- TLS on the listeners (tls.h): SSL_CTX per listener from its
 * `tls:` keys (TLS 1.2+, client-certificate policy, ciphers), rebuilt on
 * SIGHUP and swapped for new connections; the certificate expiry gauge;
 * the accept-side handshake with its deadline (and decrypted first-bytes
 * detection on a listener of several protocols); client-certificate
 * identities; the ops HTTP listener's bufferevent callback. */
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "protocol_detect.h"

#define TLS_PASSWORD_MAX 1024
#define TLS_DETECT_BUFFER_MAX 4096

enum tls_identity { TLS_IDENTITY_CN, TLS_IDENTITY_SAN_EMAIL, TLS_IDENTITY_SAN_DNS };

/* The identity mode rides on each SSL_CTX as its app data (a pointer into
 * this array), so an SSL finds it without its listener. */
static const enum tls_identity tls_identity_modes[] = {TLS_IDENTITY_CN, TLS_IDENTITY_SAN_EMAIL,
                                                       TLS_IDENTITY_SAN_DNS};

struct tls_context {
    char *name; /* the listener's */
    char *cert, *key, *key_password_file, *ca, *ciphers;
    int verify_mode;  /* SSL_VERIFY_* */
    int min_version;  /* TLS1_2_VERSION, TLS1_3_VERSION */
    size_t identity;  /* index into tls_identity_modes */
    SSL_CTX *ctx;     /* for new connections; open ones hold their own reference */
    time_t not_after; /* the served certificate's */
};

bool tls_configured(const struct config_listener *listener) { return listener->tls.cert != NULL; }

/* OpenSSL's queued errors as one reason ("...: no such file"), emptied. */
static void tls_openssl_reason(char *out, size_t size)
{
    unsigned long code = ERR_get_error();
    unsigned long last = code;
    while ((code = ERR_get_error()) != 0) /* the first is usually the root cause */
        (void)code;
    if (last == 0)
        snprintf(out, size, "unknown OpenSSL error");
    else
        ERR_error_string_n(last, out, size);
}

static int tls_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)rwflag;
    const char *password = userdata;
    if (!password)
        return 0;
    int len = (int)strlen(password);
    if (len > size)
        return 0;
    memcpy(buf, password, (size_t)len);
    return len;
}

/* The first line of `path` into out. 0, or -1 with err. */
static int tls_read_password_file(const char *path, char *out, size_t size, char *err,
                                  size_t err_size)
{
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(err, err_size, "cannot read %s: %m", path);
        return -1;
    }
    if (!fgets(out, (int)size, file))
        out[0] = '\0';
    fclose(file);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* A new SSL_CTX from the context's files. NULL with err naming the key. */
static SSL_CTX *tls_ctx_build(struct tls_context *tls, time_t *not_after, char *err,
                              size_t err_size)
{
    char reason[256];
    char password[TLS_PASSWORD_MAX] = "";
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, err_size, "listeners.%s.tls: cannot create an OpenSSL context", tls->name);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tls->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections hold no TLS buffers */
    /* No session tickets (TLS 1.3 sends them right after the handshake): a
     * client reading and writing one TLS socket from two threads (stomp.py's
     * receiver thread and its CONNECT) races on them in its OpenSSL and loses
     * the CONNECT now and then. Resumption saves little for long-lived
     * connections. */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_app_data(ctx, (void *)&tls_identity_modes[tls->identity]);
    if (tls->ciphers && SSL_CTX_set_cipher_list(ctx, tls->ciphers) != 1) {
        tls_openssl_reason(reason, sizeof(reason));
        snprintf(err, err_size, "listeners.%s.tls.ciphers: no usable cipher in \"%s\" (%s)",
                 tls->name, tls->ciphers, reason);
        goto fail;
    }
    if (tls->key_password_file) {
        if (tls_read_password_file(tls->key_password_file, password, sizeof(password), reason,
                                   sizeof(reason)) < 0) {
            snprintf(err, err_size, "listeners.%s.tls.key_password_file: %s", tls->name, reason);
            goto fail;
        }
        SSL_CTX_set_default_passwd_cb(ctx, tls_password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, password);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
        tls_openssl_reason(reason, sizeof(reason));
        snprintf(err, err_size, "listeners.%s.tls.cert: cannot load %s: %s", tls->name, tls->cert,
                 reason);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1) {
        tls_openssl_reason(reason, sizeof(reason));
        snprintf(err, err_size, "listeners.%s.tls.key: cannot load %s: %s", tls->name, tls->key,
                 reason);
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    OPENSSL_cleanse(password, sizeof(password));
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, err_size, "listeners.%s.tls.key: %s is not the key of %s", tls->name,
                 tls->key, tls->cert);
        goto fail;
    }
    if (tls->ca) {
        if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1) {
            tls_openssl_reason(reason, sizeof(reason));
            snprintf(err, err_size, "listeners.%s.tls.ca: cannot load %s: %s", tls->name, tls->ca,
                     reason);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, tls->verify_mode, NULL);
    /* one session id context per listener, so resumption works with verify */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)tls->name,
                                   (unsigned)strnlen(tls->name, SSL_MAX_SID_CTX_LENGTH));
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    *not_after = 0;
    if (cert) {
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
            *not_after = timegm(&tm);
    }
    ERR_clear_error();
    return ctx;
fail:
    OPENSSL_cleanse(password, sizeof(password));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static double tls_expiry_gauge(void *arg) { return tls_context_expiry_seconds(arg); }

static int tls_strdup(const char *source, char **out)
{
    *out = NULL;
    if (!source)
        return 0;
    *out = strdup(source);
    return *out ? 0 : -1;
}

struct tls_context *tls_context_new(const struct config_listener *listener, struct metrics *metrics,
                                    char *err, size_t err_size)
{
    const char *verify = listener->tls.verify ? listener->tls.verify : "none";
    const char *identity = listener->tls.identity ? listener->tls.identity : "cn";
    if (!listener->tls.key) {
        snprintf(err, err_size, "listeners.%s.tls.key: required with tls.cert", listener->name);
        return NULL;
    }
    if (strcmp(verify, "none") != 0 && !listener->tls.ca) {
        snprintf(err, err_size,
                 "listeners.%s.tls.ca: required with tls.verify: %s (the CA client "
                 "certificates must chain to)",
                 listener->name, verify);
        return NULL;
    }
    struct tls_context *tls = calloc(1, sizeof(*tls));
    if (!tls || tls_strdup(listener->name, &tls->name) < 0 ||
        tls_strdup(listener->tls.cert, &tls->cert) < 0 ||
        tls_strdup(listener->tls.key, &tls->key) < 0 ||
        tls_strdup(listener->tls.key_password_file, &tls->key_password_file) < 0 ||
        tls_strdup(listener->tls.ca, &tls->ca) < 0 ||
        tls_strdup(listener->tls.ciphers, &tls->ciphers) < 0) {
        snprintf(err, err_size, "listeners.%s.tls: out of memory", listener->name);
        tls_context_free(tls);
        return NULL;
    }
    tls->verify_mode = strcmp(verify, "required") == 0
                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                       : strcmp(verify, "optional") == 0 ? SSL_VERIFY_PEER
                                                         : SSL_VERIFY_NONE;
    tls->min_version = listener->tls.min_version && strcmp(listener->tls.min_version, "1.3") == 0
                           ? TLS1_3_VERSION
                           : TLS1_2_VERSION;
    tls->identity = strcmp(identity, "san_email") == 0 ? 1
                    : strcmp(identity, "san_dns") == 0 ? 2
                                                       : 0;
    tls->ctx = tls_ctx_build(tls, &tls->not_after, err, err_size);
    if (!tls->ctx) {
        tls_context_free(tls);
        return NULL;
    }
    if (metrics) {
        char labels[96];
        metrics_label(labels, sizeof(labels), "listener", tls->name);
        if (metrics_gauge_callback(metrics, "kbridge_tls_certificate_expiry_seconds",
                                   "Seconds until the listener's served certificate expires "
                                   "(notAfter; negative once expired).",
                                   labels, tls_expiry_gauge, tls) < 0) {
            snprintf(err, err_size, "listeners.%s.tls: out of memory", listener->name);
            tls_context_free(tls);
            return NULL;
        }
    }
    return tls;
}

int tls_context_reload(struct tls_context *tls, char *err, size_t err_size)
{
    time_t not_after;
    SSL_CTX *fresh = tls_ctx_build(tls, &not_after, err, err_size);
    if (!fresh)
        return -1;
    SSL_CTX_free(tls->ctx); /* open connections hold their own references */
    tls->ctx = fresh;
    tls->not_after = not_after;
    return 0;
}

SSL *tls_context_ssl_new(struct tls_context *tls) { return SSL_new(tls->ctx); }

double tls_context_expiry_seconds(const struct tls_context *tls)
{
    return difftime(tls->not_after, time(NULL));
}

const char *tls_context_name(const struct tls_context *tls) { return tls->name; }

void tls_context_free(struct tls_context *tls)
{
    if (!tls)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls->name);
    free(tls->cert);
    free(tls->key);
    free(tls->key_password_file);
    free(tls->ca);
    free(tls->ciphers);
    free(tls);
}

/* ---- identities ------------------------------------------------------------------ */

/* A user name as config_check_user_name allows: printable, no space or ':'. */
static bool tls_identity_acceptable(const unsigned char *text, int len)
{
    if (len <= 0 || len > 255)
        return false;
    for (int i = 0; i < len; i++)
        if (text[i] <= ' ' || text[i] >= 0x7f || text[i] == ':')
            return false;
    return true;
}

int tls_peer_identity(SSL *ssl, char *out, size_t out_size)
{
    X509 *cert = SSL_get_peer_certificate(ssl);
    if (!cert)
        return 0;
    if (SSL_get_verify_result(ssl) != X509_V_OK || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
        X509_free(cert);
        return 0;
    }
    const enum tls_identity *mode = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    enum tls_identity identity = mode ? *mode : TLS_IDENTITY_CN;
    const unsigned char *text = NULL;
    int len = -1;
    unsigned char *cn_utf8 = NULL;
    GENERAL_NAMES *names = NULL;
    const char *field = "subject CN";
    if (identity == TLS_IDENTITY_CN) {
        X509_NAME *subject = X509_get_subject_name(cert);
        int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (index >= 0) {
            ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
            len = ASN1_STRING_to_UTF8(&cn_utf8, data);
            text = cn_utf8;
        }
    } else {
        int want = identity == TLS_IDENTITY_SAN_EMAIL ? GEN_EMAIL : GEN_DNS;
        field = identity == TLS_IDENTITY_SAN_EMAIL ? "email SAN" : "DNS SAN";
        names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
            if (name->type != want)
                continue;
            text = ASN1_STRING_get0_data(name->d.ia5);
            len = ASN1_STRING_length(name->d.ia5);
            break;
        }
    }
    int rc;
    if (!text || len < 0) {
        snprintf(out, out_size, "the client certificate has no %s", field);
        rc = -1;
    } else if (!tls_identity_acceptable(text, len) || memchr(text, '\0', (size_t)len)) {
        snprintf(out, out_size, "the client certificate's %s is not a valid user name", field);
        rc = -1;
    } else if ((size_t)len >= out_size) {
        snprintf(out, out_size, "the client certificate's %s is too long", field);
        rc = -1;
    } else {
        memcpy(out, text, (size_t)len);
        out[len] = '\0';
        rc = 1;
    }
    OPENSSL_free(cn_utf8);
    GENERAL_NAMES_free(names);
    X509_free(cert);
    return rc;
}

const char *tls_version(SSL *ssl) { return SSL_get_version(ssl); }

/* ---- the accept-side handshake ------------------------------------------------------ */

struct tls_pending {
    struct tls_acceptor *acceptor;
    struct tls_pending *prev, *next;
    struct bufferevent *stream; /* owns the socket and the SSL */
    evutil_socket_t fd;
    struct event *deadline;
    struct sockaddr_storage peer;
    int peer_len;
    char peer_text[80];
    uint32_t max_bytes;
    bool handshaken;
};

struct tls_acceptor {
    struct event_base *base;
    struct tls_context *tls;
    const struct adapter_ops *const *candidates;
    size_t candidate_count;
    tls_accept_fn found;
    void *opaque;
    struct tls_pending *pending;
    size_t pending_count;
    uint64_t *failures[TLS_ACCEPT_FAILURE_COUNT];
};

static const char *const tls_failure_names[TLS_ACCEPT_FAILURE_COUNT] = {"handshake", "timeout",
                                                                        "closed", "unknown"};

/* Unlink and free; the stream (and socket) too unless taken (stream NULL). */
static void tls_pending_free(struct tls_pending *pending)
{
    struct tls_acceptor *acceptor = pending->acceptor;
    if (pending->prev)
        pending->prev->next = pending->next;
    else
        acceptor->pending = pending->next;
    if (pending->next)
        pending->next->prev = pending->prev;
    acceptor->pending_count--;
    if (pending->deadline)
        event_free(pending->deadline);
    if (pending->stream)
        bufferevent_free(pending->stream); /* BEV_OPT_CLOSE_ON_FREE: the SSL and the socket */
    free(pending);
}

static void tls_pending_fail(struct tls_pending *pending, enum tls_accept_failure failure,
                             const char *why)
{
    struct tls_acceptor *acceptor = pending->acceptor;
    (*acceptor->failures[failure])++;
    if (failure == TLS_ACCEPT_CLOSED)
        log_debug("tls", "listener %s: connection from %s %s", acceptor->tls->name,
                  pending->peer_text, why);
    else
        log_warn("tls", "listener %s: connection from %s closed: %s", acceptor->tls->name,
                 pending->peer_text, why);
    tls_pending_free(pending);
}

/* Hand the connection to candidates[index]. */
static void tls_pending_found(struct tls_pending *pending, size_t index)
{
    struct tls_acceptor *acceptor = pending->acceptor;
    struct bufferevent *stream = pending->stream;
    evutil_socket_t fd = pending->fd;
    struct sockaddr_storage peer = pending->peer;
    int peer_len = pending->peer_len;
    bufferevent_setcb(stream, NULL, NULL, NULL, NULL);
    bufferevent_disable(stream, EV_READ);
    bufferevent_setwatermark(stream, EV_READ, 0, 0);
    pending->stream = NULL;
    tls_pending_free(pending);
    acceptor->found(acceptor->opaque, index, fd, (struct sockaddr *)&peer, peer_len, stream);
}

static void tls_pending_on_read(struct bufferevent *stream, void *arg)
{
    struct tls_pending *pending = arg;
    struct tls_acceptor *acceptor = pending->acceptor;
    struct evbuffer *input = bufferevent_get_input(stream);
    size_t len = evbuffer_get_length(input);
    if (len > pending->max_bytes)
        len = pending->max_bytes;
    unsigned char *bytes = evbuffer_pullup(input, (ev_ssize_t)len);
    if (!bytes || len == 0)
        return;
    int pick = protocol_detect_pick(acceptor->candidates, acceptor->candidate_count, bytes, len,
                                    pending->max_bytes);
    if (pick == PROTOCOL_DETECT_MORE) {
        log_debug("tls", "listener %s: %s: %zu byte(s) do not tell the protocol yet",
                  acceptor->tls->name, pending->peer_text, len);
        return;
    }
    if (pick == PROTOCOL_DETECT_NONE) {
        char why[160];
        snprintf(why, sizeof(why), "its first %zu byte(s) are none of the protocols served here",
                 len);
        tls_pending_fail(pending, TLS_ACCEPT_UNKNOWN, why);
        return;
    }
    tls_pending_found(pending, (size_t)pick);
}

static void tls_pending_on_event(struct bufferevent *stream, short events, void *arg)
{
    struct tls_pending *pending = arg;
    struct tls_acceptor *acceptor = pending->acceptor;
    if (events & BEV_EVENT_CONNECTED) {
        pending->handshaken = true;
        SSL *ssl = bufferevent_openssl_get_ssl(stream);
        log_debug("tls", "listener %s: %s: %s handshake done", acceptor->tls->name,
                  pending->peer_text, ssl ? SSL_get_version(ssl) : "?");
        if (acceptor->candidate_count == 1) {
            tls_pending_found(pending, 0);
            return;
        }
        bufferevent_setwatermark(stream, EV_READ, 0, pending->max_bytes);
        bufferevent_enable(stream, EV_READ);
        return;
    }
    if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    unsigned long code = bufferevent_get_openssl_error(stream);
    while (code != 0 && bufferevent_get_openssl_error(stream) != 0) {
    }
    /* The peer went away (a probe that only fetched the certificate, or a
     * client that gave up): not a failed handshake. libevent reports a
     * socket error as SSL_get_error's SSL_ERROR_SYSCALL (library 0). */
    bool closed = pending->handshaken || code == 0 || ERR_GET_LIB(code) == 0 ||
                  ERR_GET_LIB(code) == ERR_LIB_SYS ||
                  (ERR_GET_LIB(code) == ERR_LIB_SSL &&
                   ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    if (!closed) {
        char reason[256];
        ERR_error_string_n(code, reason, sizeof(reason));
        char why[320];
        snprintf(why, sizeof(why), "TLS handshake failed: %s", reason);
        tls_pending_fail(pending, TLS_ACCEPT_HANDSHAKE, why);
        return;
    }
    tls_pending_fail(pending, TLS_ACCEPT_CLOSED,
                     pending->handshaken ? "closed before sending a protocol header"
                                         : "closed during the TLS handshake");
}

static void tls_pending_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tls_pending *pending = arg;
    tls_pending_fail(pending, TLS_ACCEPT_TIMEOUT,
                     pending->handshaken
                         ? "no protocol header before limits.tls_handshake_timeout"
                         : "TLS handshake not finished within limits.tls_handshake_timeout");
}

struct tls_acceptor *tls_acceptor_new(struct event_base *base, struct tls_context *tls,
                                      const struct adapter_ops *const *candidates, size_t count,
                                      struct metrics *metrics, tls_accept_fn found, void *opaque)
{
    struct tls_acceptor *acceptor = calloc(1, sizeof(*acceptor));
    if (!acceptor)
        return NULL;
    acceptor->base = base;
    acceptor->tls = tls;
    acceptor->candidates = candidates;
    acceptor->candidate_count = count;
    acceptor->found = found;
    acceptor->opaque = opaque;
    for (size_t i = 0; i < TLS_ACCEPT_FAILURE_COUNT; i++) {
        char labels[160], reason[64];
        metrics_label(labels, sizeof(labels), "listener", tls->name);
        metrics_label(reason, sizeof(reason), "reason", tls_failure_names[i]);
        size_t used = strlen(labels);
        snprintf(labels + used, sizeof(labels) - used, ",%s", reason);
        acceptor->failures[i] = metrics_counter(
            metrics, "kbridge_tls_handshake_failures_total",
            "TLS connections closed before reaching a protocol, by listener and reason.", labels);
        if (!acceptor->failures[i]) {
            free(acceptor);
            return NULL;
        }
    }
    return acceptor;
}

void tls_acceptor_add(struct tls_acceptor *acceptor, evutil_socket_t fd,
                      const struct sockaddr *peer, int peer_len, uint64_t timeout_ms,
                      uint32_t max_bytes)
{
    char peer_text[80] = "(unknown)";
    if (peer && peer_len > 0)
        listener_format_address(peer, peer_text, sizeof(peer_text));
    struct tls_pending *pending = calloc(1, sizeof(*pending));
    SSL *ssl = pending ? tls_context_ssl_new(acceptor->tls) : NULL;
    if (!ssl) {
        log_error("tls", "listener %s: out of memory accepting %s", acceptor->tls->name, peer_text);
        free(pending);
        evutil_closesocket(fd);
        return;
    }
    pending->acceptor = acceptor;
    pending->fd = fd;
    pending->max_bytes = max_bytes > TLS_DETECT_BUFFER_MAX ? TLS_DETECT_BUFFER_MAX : max_bytes;
    memcpy(pending->peer_text, peer_text, sizeof(peer_text));
    if (peer && peer_len > 0 && (size_t)peer_len <= sizeof(pending->peer)) {
        memcpy(&pending->peer, peer, (size_t)peer_len);
        pending->peer_len = peer_len;
    }
    evutil_make_socket_nonblocking(fd);
    pending->next = acceptor->pending;
    if (acceptor->pending)
        acceptor->pending->prev = pending;
    acceptor->pending = pending;
    acceptor->pending_count++;
    pending->stream = bufferevent_openssl_socket_new(
        acceptor->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    pending->deadline = evtimer_new(acceptor->base, tls_pending_on_deadline, pending);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    if (!pending->stream || !pending->deadline || evtimer_add(pending->deadline, &tv) < 0) {
        log_error("tls", "listener %s: out of memory accepting %s", acceptor->tls->name, peer_text);
        if (!pending->stream) {
            SSL_free(ssl);
            evutil_closesocket(fd);
        }
        tls_pending_free(pending);
        return;
    }
    /* close_notify is sent by the transport on shutdown; a free is abrupt */
    bufferevent_openssl_set_allow_dirty_shutdown(pending->stream, 1);
    bufferevent_setcb(pending->stream, tls_pending_on_read, NULL, tls_pending_on_event, pending);
    bufferevent_enable(pending->stream, EV_READ | EV_WRITE);
}

size_t tls_acceptor_pending(const struct tls_acceptor *acceptor) { return acceptor->pending_count; }

void tls_acceptor_close_all(struct tls_acceptor *acceptor)
{
    while (acceptor && acceptor->pending)
        tls_pending_free(acceptor->pending);
}

void tls_acceptor_free(struct tls_acceptor *acceptor)
{
    if (!acceptor)
        return;
    tls_acceptor_close_all(acceptor);
    free(acceptor);
}

/* ---- the ops HTTP listener ------------------------------------------------------------ */

struct bufferevent *tls_http_bevcb(struct event_base *base, void *tls_context)
{
    SSL *ssl = tls_context_ssl_new(tls_context);
    if (!ssl)
        return NULL;
    struct bufferevent *stream = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!stream)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(stream, 1);
    return stream;
}
