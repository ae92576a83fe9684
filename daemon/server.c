/* SPDX-License-Identifier: Apache-2.0 */
/* server.c -- owns the daemon's loop and its lifecycle: start (listeners,
 * Kafka, ops HTTP, READY=1), signals (SIGHUP reload, SIGTERM/SIGINT drain),
 * the systemd watchdog, and the ordered shutdown.
 *
 * Drain: stop accepting, then keep the loop running (so delivery reports
 * still reach their clients) until no record is unconfirmed or
 * shutdown_grace has passed; a second signal stops at once. Consumers
 * commit their settled offsets when the Kafka layer closes them. */
#include "server.h"
#include "shovel.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "config.h"
#include "core.h"
#include "http.h"
#include "kafka.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "protocol_detect.h"
#include "scheduler.h"
#include "status.h"
#include "supervisor.h"
#include "tls.h"
#include "version.h"
#include "worker.h"

#define SERVER_DRAIN_CHECK_MS 20

/* An adapter of the registry; created only when some listener serves it. */
struct server_adapter {
    const struct adapter_ops *ops;
    struct adapter *adapter; /* NULL while no listener serves it */
    bool wanted;             /* some listener serves it: create at start */
};

/* A client listener and the adapters it hands connections to. */
struct server_listener {
    struct server *server;
    struct listener *listener;
    struct server_adapter **serves;        /* serve_count of server->adapters */
    const struct adapter_ops **candidates; /* their ops, for the detector */
    size_t serve_count;                    /* >= 1 */
    struct protocol_detector *detector;    /* when serve_count > 1, plain TCP */
    struct tls_context *tls;               /* listeners.NAME.tls; NULL: plain TCP */
    struct tls_acceptor *tls_acceptor;     /* with tls: handshakes (and detection) */
    /* Its entry in the config in force (listeners are restart-only: a
     * reload keeps them, at new addresses): see server_reload. */
    const struct config_listener *config;
};

struct server {
    struct event_base *base;
    struct config *config;
    struct metrics *metrics;
    struct kafka *kafka;
    struct ops_http *http;
    struct core *core;
    struct scheduler *scheduler;  /* scheduled delivery (scheduler.c); NULL when disabled */
    struct status *status;        /* the cluster view through the status topic (status.c) */
    struct worker_pool *workers;  /* password checks, Kafka calls */
    struct shovel_table *shovels; /* the shovels' status (shovel.h), filled by the adapters */
    const struct adapter_registry *registry;
    struct server_adapter *adapters;        /* registry->count, in the registry's order */
    const struct config_section **sections; /* the adapters' config sections, for reloads */
    size_t section_count;
    struct server_listener *listeners; /* client listeners, in the file's order */
    size_t listener_count;
    char *http_bind;              /* the ops listener's configured bind, NULL without one */
    struct tls_context *http_tls; /* the ops listener's TLS, NULL: plain HTTP */

    struct event *signal_term;
    struct event *signal_int;
    struct event *signal_hup;
    struct event *watchdog_timer;
    struct event *drain_timer;

    struct timespec started;
    struct timespec drain_started;
    bool draining;
    int exit_code;

    uint64_t *reloads;
    uint64_t *reload_failures;
    uint64_t *connections_refused;
    uint64_t *detect_failures[PROTOCOL_DETECT_FAILURE_COUNT];
};

static double timespec_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* ---- accessors ------------------------------------------------------------- */

const struct config *server_config(const struct server *server) { return server->config; }
struct kafka *server_kafka(const struct server *server) { return server->kafka; }
struct metrics *server_metrics(const struct server *server) { return server->metrics; }
struct core *server_core(const struct server *server) { return server->core; }
struct status *server_status(const struct server *server) { return server->status; }
struct shovel_table *server_shovels(const struct server *server) { return server->shovels; }
double server_uptime_seconds(const struct server *server)
{
    return timespec_seconds_since(&server->started);
}
bool server_is_draining(const struct server *server) { return server->draining; }
bool server_is_ready(const struct server *server)
{
    return !server->draining && server->kafka && kafka_is_ready(server->kafka) && server->core &&
           core_definitions_ready(server->core);
}

/* kbridge_ready: 1 while /readyz answers 200. */
static double server_ready_value(const struct server *server)
{
    return server_is_ready(server) ? 1.0 : 0.0;
}
size_t server_listener_count(const struct server *server) { return server->listener_count; }
const struct listener *server_listener(const struct server *server, size_t index)
{
    return index < server->listener_count ? server->listeners[index].listener : NULL;
}
const char *server_http_bind(const struct server *server) { return server->http_bind; }
const char *server_http_address(const struct server *server)
{
    return server->http ? ops_http_address(server->http) : NULL;
}

/* ---- client listeners -------------------------------------------------------- */

static bool server_is_ops(const char *protocol) { return strcmp(protocol, OPS_HTTP_PROTOCOL) == 0; }

int server_check_listeners(const struct config *config, const struct adapter_registry *registry,
                           char *err, size_t err_size)
{
    const struct config_listener *ops = NULL;
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct config_listener *listener = &config->listeners[i];
        bool defaulted =
            listener->protocol_count == 1 && strcmp(listener->protocols[0], listener->name) == 0;
        if (config_listener_is_websocket(listener) &&
            (listener->protocol_count != 1 || server_is_ops(listener->protocols[0]))) {
            snprintf(err, err_size,
                     "listeners.%s.transport: a websocket listener serves exactly one client "
                     "protocol (it lists %zu%s)",
                     listener->name, listener->protocol_count,
                     server_is_ops(listener->protocols[0]) ? ", the operations endpoint" : "");
            return -1;
        }
        for (size_t p = 0; p < listener->protocol_count; p++) {
            const char *protocol = listener->protocols[p];
            char key[160];
            if (defaulted)
                snprintf(key, sizeof(key), "listeners.%s", listener->name);
            else
                snprintf(key, sizeof(key), "listeners.%s.protocols[%zu]", listener->name, p);
            if (server_is_ops(protocol)) {
                if (listener->protocol_count > 1) {
                    snprintf(err, err_size,
                             "%s: \"%s\" (the operations endpoint) cannot share a listener", key,
                             protocol);
                    return -1;
                }
                if (ops) {
                    snprintf(err, err_size,
                             "%s: listeners.%s already serves \"%s\" (at most one listener "
                             "may)",
                             key, ops->name, protocol);
                    return -1;
                }
                ops = listener;
                continue;
            }
            if (!adapter_registry_find(registry, protocol)) {
                char names[256];
                adapter_registry_names(registry, names, sizeof(names));
                snprintf(err, err_size,
                         "%s: no protocol \"%s\" is built into kbridged (built in: %s; and %s, "
                         "the operations endpoint)",
                         key, protocol, names, OPS_HTTP_PROTOCOL);
                return -1;
            }
        }
    }
    return 0;
}

/* Refuse a connection at accept: log why and count it. */
static void server_refuse(struct server *server, evutil_socket_t fd, const struct sockaddr *peer,
                          const char *why)
{
    char address[80] = "(unknown)";
    if (peer)
        listener_format_address(peer, address, sizeof(address));
    (*server->connections_refused)++;
    log_warn("server", "connection from %s refused: %s", address, why);
    if (fd >= 0)
        evutil_closesocket(fd);
}

/* The detector, the TLS handshake or a plain listener of one adapter found
 * the connection's adapter; `stream` is the TLS stream (NULL: plain). */
static void server_hand_over_stream(void *opaque, size_t index, evutil_socket_t fd,
                                    const struct sockaddr *peer, int peer_len,
                                    struct bufferevent *stream)
{
    struct server_listener *entry = opaque;
    struct server_adapter *target = entry->serves[index];
    if (entry->server->draining) {
        if (stream) {
            bufferevent_free(stream); /* closes fd */
            fd = -1;
        }
        server_refuse(entry->server, fd, peer, "draining for shutdown");
        return;
    }
    target->ops->accept(target->adapter, fd, peer, peer_len, stream, entry->config);
}

static void server_hand_over(void *opaque, size_t index, evutil_socket_t fd,
                             const struct sockaddr *peer, int peer_len)
{
    server_hand_over_stream(opaque, index, fd, peer, peer_len, NULL);
}

static void server_on_accept(void *opaque, evutil_socket_t fd, const struct sockaddr *peer,
                             int peer_len)
{
    struct server_listener *entry = opaque;
    struct server *server = entry->server;
    if (server->draining) {
        server_refuse(server, fd, peer, "draining for shutdown");
        return;
    }
    if (entry->tls_acceptor) {
        const struct config *config = server->config;
        if (tls_acceptor_pending(entry->tls_acceptor) >= config->limits.max_connections) {
            server_refuse(server, fd, peer,
                          "limits.max_connections connections are already in their TLS "
                          "handshake");
            return;
        }
        tls_acceptor_add(entry->tls_acceptor, fd, peer, peer_len,
                         config->limits.tls_handshake_timeout_ms,
                         config->limits.protocol_detect_bytes);
        return;
    }
    if (!entry->detector) {
        server_hand_over(entry, 0, fd, peer, peer_len);
        return;
    }
    const struct config *config = server->config;
    if (protocol_detector_pending(entry->detector) >= config->limits.max_connections) {
        server_refuse(server, fd, peer,
                      "limits.max_connections connections are already waiting to name their "
                      "protocol");
        return;
    }
    protocol_detector_add(entry->detector, fd, peer, peer_len,
                          config->limits.protocol_detect_timeout_ms,
                          config->limits.protocol_detect_bytes);
}

/* Bind one client listener of the config and note the adapters it serves. */
static int server_listen(struct server *server, const struct config_listener *listener_config,
                         char *err, size_t err_size)
{
    struct server_listener *entry = &server->listeners[server->listener_count];
    size_t count = listener_config->protocol_count;
    entry->server = server;
    entry->config = listener_config;
    entry->serves = calloc(count, sizeof(*entry->serves));
    entry->candidates = calloc(count, sizeof(*entry->candidates));
    if (!entry->serves || !entry->candidates) {
        free(entry->serves);
        free(entry->candidates);
        snprintf(err, err_size, "listeners.%s: out of memory", listener_config->name);
        return -1;
    }
    server->listener_count++; /* from here server_free frees the entry */
    char protocols[256] = "";
    size_t used = 0;
    for (size_t p = 0; p < count; p++) {
        for (size_t a = 0; a < server->registry->count; a++) {
            if (strcmp(server->adapters[a].ops->name, listener_config->protocols[p]) != 0)
                continue;
            server->adapters[a].wanted = true;
            entry->serves[entry->serve_count] = &server->adapters[a];
            entry->candidates[entry->serve_count] = server->adapters[a].ops;
            entry->serve_count++;
        }
        int n = snprintf(protocols + used, sizeof(protocols) - used, "%s%s", p ? ", " : "",
                         listener_config->protocols[p]);
        if (n > 0 && (size_t)n < sizeof(protocols) - used)
            used += (size_t)n;
    }
    if (entry->serve_count != count) { /* server_check_listeners ran first */
        snprintf(err, err_size, "listeners.%s: unknown protocol", listener_config->name);
        return -1;
    }
    if (tls_configured(listener_config)) {
        entry->tls = tls_context_new(listener_config, server->metrics, err, err_size);
        if (!entry->tls)
            return -1;
        entry->tls_acceptor = tls_acceptor_new(server->base, entry->tls, entry->candidates, count,
                                               server->metrics, server_hand_over_stream, entry);
        if (!entry->tls_acceptor) {
            snprintf(err, err_size, "listeners.%s: out of memory", listener_config->name);
            return -1;
        }
    } else if (count > 1) {
        entry->detector =
            protocol_detector_new(server->base, listener_config->name, entry->candidates, count,
                                  server_hand_over, entry, server->detect_failures);
        if (!entry->detector) {
            snprintf(err, err_size, "listeners.%s: out of memory", listener_config->name);
            return -1;
        }
    }
    entry->listener =
        listener_new(server->base, listener_config->name, listener_config->bind,
                     server->config->processes != 1, server_on_accept, entry, err, err_size);
    if (!entry->listener)
        return -1;
    const char *tls_note = entry->tls ? ", TLS" : "";
    if (count > 1)
        log_info("server", "listener %s listening on %s (%s, by first bytes%s)",
                 listener_config->name, listener_address(entry->listener), protocols, tls_note);
    else if (config_listener_is_websocket(listener_config))
        log_info("server", "listener %s listening on %s (%s)", listener_config->name,
                 listener_address(entry->listener),
                 entry->tls ? "WebSocket over TLS: wss" : "WebSocket");
    else
        log_info("server", "listener %s listening on %s%s", listener_config->name,
                 listener_address(entry->listener), entry->tls ? " (TLS)" : "");
    return 0;
}

/* Bind every listener of the config: the client ones, then the ops one. */
static int server_listen_all(struct server *server, char *err, size_t err_size)
{
    const struct config *config = server->config;
    const struct config_listener *ops = NULL;
    if (config->listener_count > 0) {
        server->listeners = calloc(config->listener_count, sizeof(*server->listeners));
        if (!server->listeners) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct config_listener *listener = &config->listeners[i];
        if (server_is_ops(listener->protocols[0]))
            ops = listener;
        else if (server_listen(server, listener, err, err_size) < 0)
            return -1;
    }
    if (ops) {
        if (!(server->http_bind = strdup(ops->bind))) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        if (tls_configured(ops) &&
            !(server->http_tls = tls_context_new(ops, server->metrics, err, err_size)))
            return -1;
        server->http =
            ops_http_new(server->base, server, ops->bind, server->http_tls, err, err_size);
        if (!server->http)
            return -1;
        log_info("server", "listener %s listening on %s%s", ops->name,
                 ops_http_address(server->http), server->http_tls ? " (TLS)" : "");
    }
    return 0;
}

static int server_start_adapters(struct server *server, char *err, size_t err_size)
{
    struct adapter_context context = {
        .base = server->base,
        .core = server->core,
        .metrics = server->metrics,
        .config = &server->config,
        .shovels = server->shovels,
        .workers = server->workers,
    };
    for (size_t i = 0; i < server->registry->count; i++) {
        struct server_adapter *entry = &server->adapters[i];
        /* an adapter also runs the shovels of its protocol (architecture §15) */
        for (size_t v = 0; v < server->config->shovel_count && !entry->wanted; v++) {
            const struct config_shovel *shovel = &server->config->shovels[v];
            entry->wanted = strcmp(shovel->source.protocol, entry->ops->name) == 0 ||
                            strcmp(shovel->destination.protocol, entry->ops->name) == 0;
        }
        if (!entry->wanted)
            continue;
        entry->adapter = entry->ops->create(&context, err, err_size);
        if (!entry->adapter)
            return -1;
        log_debug("server", "adapter %s (%s) started", entry->ops->name, entry->ops->title);
    }
    return 0;
}

/* Every start and reload: plaintext passwords are in the file. */
static void server_warn_plaintext(const struct config *config)
{
    size_t plain = 0;
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (config->auth.users[i].password)
            plain++;
    if (plain > 0)
        log_warn("config",
                 "auth.insecure_plaintext: %zu user(s) of %s have plaintext passwords; anyone "
                 "who can read the file has them. Replace each with password_hash (kbridged "
                 "--hash-password) outside tests",
                 plain, config->path);
}

/* ---- reload ------------------------------------------------------------------ */

/* Re-read every TLS listener's certificate, key and CA files (the file
 * names are the running ones: listeners.* change only with a restart).
 * A listener whose files do not load keeps its running context. */
static void server_reload_tls(struct server *server)
{
    char err[1024];
    for (size_t i = 0; i <= server->listener_count; i++) {
        struct tls_context *tls =
            i < server->listener_count ? server->listeners[i].tls : server->http_tls;
        if (!tls)
            continue;
        if (tls_context_reload(tls, err, sizeof(err)) < 0) {
            (*server->reload_failures)++;
            log_error("config", "reload: keeping the running TLS certificate: %s", err);
        } else {
            log_info("config",
                     "listeners.%s: TLS certificate and key reloaded (expires in %.0f "
                     "days)",
                     tls_context_name(tls), tls_context_expiry_seconds(tls) / 86400.0);
        }
    }
}

static void server_reload(struct server *server)
{
    notify_reloading();
    char err[1024];
    struct config *fresh = NULL;
    log_info("config", "SIGHUP: reloading %s", server->config->path);
    if (config_load_sections(server->config->path, server->sections, server->section_count, &fresh,
                             err, sizeof(err)) < 0) {
        (*server->reload_failures)++;
        log_error("config", "reload failed, keeping the running configuration: %s", err);
        notify_ready("running; last reload failed");
        return;
    }
    supervisor_worker_config(fresh); /* a worker's node id and binds (processes > 1) */
    config_apply_live(server->config, fresh);
    server_warn_plaintext(fresh);
    server_reload_tls(server);
    struct config *old = server->config;
    server->config = fresh;
    for (size_t i = 0; i < server->listener_count; i++) /* the same listeners, in fresh */
        server->listeners[i].config =
            config_listener_find(fresh, listener_name(server->listeners[i].listener));
    kafka_set_config(server->kafka, fresh);
    core_reconfigure(server->core);
    for (size_t i = 0; i < server->registry->count; i++)
        if (server->adapters[i].adapter)
            server->adapters[i].ops->reconfigure(server->adapters[i].adapter);
    log_set_level(fresh->log.level);
    log_set_format(fresh->log.format);
    config_free(old);
    (*server->reloads)++;
    log_info("config", "configuration reloaded from %s", fresh->path);
    notify_ready("running; configuration reloaded");
}

/* ---- drain and signals ------------------------------------------------------ */

static void server_on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct server *server = arg;
    int unconfirmed = kafka_unconfirmed(server->kafka);
    double elapsed_ms = timespec_seconds_since(&server->drain_started) * 1000.0;
    if (unconfirmed == 0) {
        log_info("server", "drained: every record confirmed by Kafka");
        event_base_loopexit(server->base, NULL);
    } else if (elapsed_ms >= (double)server->config->shutdown_grace_ms) {
        log_warn("server", "shutdown_grace of %llu ms passed with %d record(s) unconfirmed",
                 (unsigned long long)server->config->shutdown_grace_ms, unconfirmed);
        event_base_loopexit(server->base, NULL);
    }
}

static void server_drain(struct server *server, const char *why)
{
    if (server->draining) {
        log_warn("server", "%s during drain: stopping now", why);
        event_base_loopbreak(server->base);
        return;
    }
    server->draining = true;
    clock_gettime(CLOCK_MONOTONIC, &server->drain_started);
    notify_stopping();
    log_info("server", "%s: draining (stop accepting, wait up to %llu ms for Kafka)", why,
             (unsigned long long)server->config->shutdown_grace_ms);
    for (size_t i = 0; i < server->listener_count; i++) {
        listener_pause(server->listeners[i].listener);
        if (server->listeners[i].detector) /* they sent no work yet */
            protocol_detector_close_all(server->listeners[i].detector);
        if (server->listeners[i].tls_acceptor)
            tls_acceptor_close_all(server->listeners[i].tls_acceptor);
    }
    for (size_t i = 0; i < server->registry->count; i++)
        if (server->adapters[i].adapter)
            server->adapters[i].ops->drain(server->adapters[i].adapter);
    core_drain(server->core);
    status_drain(server->status); /* the tombstone: other nodes drop this one at once */
    struct timeval interval = {0, SERVER_DRAIN_CHECK_MS * 1000};
    event_add(server->drain_timer, &interval);
    event_active(server->drain_timer, EV_TIMEOUT, 0);
}

static void server_on_signal(evutil_socket_t signal_number, short what, void *arg)
{
    struct server *server = arg;
    switch (signal_number) {
    case SIGHUP: server_reload(server); break;
    case SIGTERM: server_drain(server, "SIGTERM"); break;
    case SIGINT: server_drain(server, "SIGINT"); break;
    default: break;
    }
}

static void server_on_watchdog(evutil_socket_t fd, short what, void *arg) { notify_watchdog(); }

static void server_on_libevent_log(int severity, const char *message)
{
    enum log_level level = severity >= EVENT_LOG_ERR    ? LOG_LEVEL_ERROR
                           : severity == EVENT_LOG_WARN ? LOG_LEVEL_WARN
                           : severity == EVENT_LOG_MSG  ? LOG_LEVEL_INFO
                                                        : LOG_LEVEL_DEBUG;
    log_write(level, "libevent", "%s", message);
}

/* ---- lifecycle ------------------------------------------------------------------ */

struct server *server_new(struct config *config, const struct adapter_registry *registry, char *err,
                          size_t err_size)
{
    struct server *server = calloc(1, sizeof(*server));
    if (!server || server_check_listeners(config, registry, err, err_size) < 0) {
        if (!server)
            snprintf(err, err_size, "out of memory");
        free(server);
        config_free(config);
        return NULL;
    }
    server->config = config;
    server->registry = registry;
    clock_gettime(CLOCK_MONOTONIC, &server->started);
    /* Every adapter's config section, named like the adapter; a config
     * loaded without them gets their defaults. */
    server->sections = calloc(registry->count ? registry->count : 1, sizeof(*server->sections));
    if (!server->sections) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    server->section_count = adapter_registry_config_sections(registry, server->sections);
    for (size_t i = 0; i < registry->count; i++) {
        const struct config_section *section = registry->adapters[i]->config_section;
        if (section && strcmp(section->name, registry->adapters[i]->name) != 0) {
            snprintf(err, err_size, "adapter %s: its config section is called %s, not %s",
                     registry->adapters[i]->name, section->name, registry->adapters[i]->name);
            goto fail;
        }
    }
    if (config_add_sections(config, server->sections, server->section_count, err, err_size) < 0)
        goto fail;
    log_set_level(config->log.level);
    log_set_format(config->log.format);
    server_warn_plaintext(config);
    event_set_log_callback(server_on_libevent_log);
    signal(SIGPIPE, SIG_IGN);

    server->base = event_base_new();
    server->metrics = metrics_new();
    if (!server->base || !server->metrics) {
        snprintf(err, err_size, "cannot create the event loop");
        goto fail;
    }
    server->reloads = metrics_counter(server->metrics, "kbridge_config_reloads_total",
                                      "Successful configuration reloads (SIGHUP).", NULL);
    server->reload_failures =
        metrics_counter(server->metrics, "kbridge_config_reload_failures_total",
                        "Reloads refused because the new file was invalid.", NULL);
    server->connections_refused =
        metrics_counter(server->metrics, "kbridge_connections_refused_total",
                        "Client connections refused at accept.", NULL);
    if (!server->reloads || !server->reload_failures || !server->connections_refused ||
        metrics_gauge_callback(server->metrics, "kbridge_uptime_seconds",
                               "Seconds since kbridged started.", NULL,
                               (metrics_gauge_fn)server_uptime_seconds, server) < 0 ||
        metrics_gauge_callback(server->metrics, "kbridge_ready",
                               "1 while the node is ready (/readyz answers 200: Kafka reachable, "
                               "definitions read, not draining), else 0.",
                               NULL, (metrics_gauge_fn)server_ready_value, server) < 0) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < PROTOCOL_DETECT_FAILURE_COUNT; i++) {
        char labels[64];
        metrics_label(labels, sizeof(labels), "reason", protocol_detect_failure_name(i));
        server->detect_failures[i] = metrics_counter(
            server->metrics, "kbridge_protocol_detect_failures_total",
            "Connections to a listener of several protocols closed before their first bytes "
            "named one, by reason.",
            labels);
        if (!server->detect_failures[i]) {
            snprintf(err, err_size, "out of memory");
            goto fail;
        }
    }
    /* Every adapter's connection gauge, served or not, so dashboards see 0. */
    server->adapters = calloc(registry->count ? registry->count : 1, sizeof(*server->adapters));
    if (!server->adapters) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < registry->count; i++) {
        char labels[64];
        server->adapters[i].ops = registry->adapters[i];
        metrics_label(labels, sizeof(labels), "protocol", registry->adapters[i]->name);
        if (!metrics_gauge(server->metrics, "kbridge_connections", "Open client connections.",
                           labels)) {
            snprintf(err, err_size, "out of memory");
            goto fail;
        }
    }

    /* Listeners first: a port in use is a start-up error, before Kafka work. */
    if (server_listen_all(server, err, err_size) < 0)
        goto fail;

    /* The pool first: Kafka's blocking calls run on it (kafka_new starts the probe). */
    server->workers = worker_pool_new(server->base, config->workers.threads, err, err_size);
    if (!server->workers)
        goto fail;
    server->kafka =
        kafka_new(server->base, config, server->metrics, server->workers, err, err_size);
    if (!server->kafka)
        goto fail;
    server->core = core_new(server->base, &server->config, server->kafka, server->metrics,
                            server->workers, err, err_size);
    server->shovels = shovel_table_new(server->metrics);
    if (!server->shovels) {
        snprintf(err, err_size, "cannot create the shovel table (out of memory)");
        goto fail;
    }
    if (!server->core || server_start_adapters(server, err, err_size) < 0)
        goto fail;
    /* Scheduled delivery: the delay topic's reader (architecture §13); the
     * node's readiness does not wait for it. */
    if (config->scheduler.enabled) {
        server->scheduler =
            scheduler_new(server->base, config, server->kafka, server->metrics, err, err_size);
        if (!server->scheduler)
            goto fail;
    }

    /* The cluster view (architecture §9): not part of readiness. */
    server->status = status_new(server->base, server, err, err_size);
    if (!server->status)
        goto fail;

    server->signal_term = evsignal_new(server->base, SIGTERM, server_on_signal, server);
    server->signal_int = evsignal_new(server->base, SIGINT, server_on_signal, server);
    server->signal_hup = evsignal_new(server->base, SIGHUP, server_on_signal, server);
    server->drain_timer = event_new(server->base, -1, EV_PERSIST, server_on_drain_timer, server);
    if (!server->signal_term || !server->signal_int || !server->signal_hup ||
        !server->drain_timer || event_add(server->signal_term, NULL) < 0 ||
        event_add(server->signal_int, NULL) < 0 || event_add(server->signal_hup, NULL) < 0) {
        snprintf(err, err_size, "cannot install signal handlers");
        goto fail;
    }
    uint64_t watchdog_usec = notify_watchdog_usec();
    if (watchdog_usec > 0) {
        server->watchdog_timer =
            event_new(server->base, -1, EV_PERSIST, server_on_watchdog, server);
        uint64_t half = watchdog_usec / 2;
        struct timeval interval = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
        if (!server->watchdog_timer || event_add(server->watchdog_timer, &interval) < 0) {
            snprintf(err, err_size, "cannot arm the systemd watchdog timer");
            goto fail;
        }
        notify_watchdog();
        log_info("server", "systemd watchdog every %llu ms",
                 (unsigned long long)(watchdog_usec / 1000));
    }
    log_info("server", "kbridged %s started as node %s", KBRIDGE_VERSION, config->node_id);
    notify_ready("listening; Kafka readiness on /readyz");
    return server;
fail:
    server_free(server);
    return NULL;
}

int server_run(struct server *server)
{
    if (event_base_dispatch(server->base) < 0) {
        log_error("server", "event loop failed");
        return 1;
    }
    return server->exit_code;
}

void server_free(struct server *server)
{
    if (!server)
        return;
    if (server->watchdog_timer)
        event_free(server->watchdog_timer);
    if (server->drain_timer)
        event_free(server->drain_timer);
    if (server->signal_term)
        event_free(server->signal_term);
    if (server->signal_int)
        event_free(server->signal_int);
    if (server->signal_hup)
        event_free(server->signal_hup);
    for (size_t i = 0; i < server->listener_count; i++) {
        struct server_listener *entry = &server->listeners[i];
        listener_free(entry->listener);
        protocol_detector_free(entry->detector); /* closes connections still waiting */
        tls_acceptor_free(entry->tls_acceptor);
        tls_context_free(entry->tls); /* open connections hold their own SSL_CTX reference */
        free(entry->serves);
        free(entry->candidates);
    }
    free(server->listeners);
    for (size_t i = 0; server->adapters && i < server->registry->count; i++)
        if (server->adapters[i].adapter)
            server->adapters[i].ops->destroy(server->adapters[i].adapter);
    free(server->adapters);
    shovel_table_free(server->shovels); /* after the adapters: their shovels report into it */
    free(server->sections);
    free(server->http_bind);
    ops_http_free(server->http);
    tls_context_free(server->http_tls);
    scheduler_free(server->scheduler);
    status_free(server->status);
    core_free(server->core);
    /* After every owner of a job is gone, before Kafka: it completes every
     * job (Kafka's lookups, closes and probe use the producer). */
    worker_pool_free(server->workers);
    kafka_free(server->kafka);
    metrics_free(server->metrics);
    if (server->base)
        event_base_free(server->base);
    config_free(server->config);
    free(server);
}
