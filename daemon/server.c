/* server.c -- owns the daemon's loop and its lifecycle: start (listeners,
 * Kafka, ops HTTP, READY=1), signals (SIGHUP reload, SIGTERM/SIGINT drain),
 * the systemd watchdog, and the ordered shutdown.
 *
 * Drain: stop accepting, then keep the loop running (so delivery reports
 * still reach their clients) until no record is unconfirmed or
 * shutdown_grace has passed; a second signal stops at once. Consumers
 * commit their settled offsets when the Kafka layer closes them. */
#include "server.h"

#include <errno.h>
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
#include "version.h"
#include "worker.h"

#define SERVER_DRAIN_CHECK_MS 20
#define SERVER_MAX_LISTENERS 2

struct server {
    struct event_base *base;
    struct config *config;
    struct metrics *metrics;
    struct kafka *kafka;
    struct ops_http *http;
    struct core *core;
    struct worker_pool *workers;                      /* password checks, Kafka calls */
    struct listener *listeners[SERVER_MAX_LISTENERS]; /* client protocols */
    struct adapter *adapters[SERVER_MAX_LISTENERS];   /* serving listeners[i] */
    const struct adapter_ops *adapter_ops[SERVER_MAX_LISTENERS];
    size_t listener_count;

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
double server_uptime_seconds(const struct server *server)
{
    return timespec_seconds_since(&server->started);
}
bool server_is_draining(const struct server *server) { return server->draining; }
size_t server_listener_count(const struct server *server) { return server->listener_count; }
const struct listener *server_listener(const struct server *server, size_t index)
{
    return index < server->listener_count ? server->listeners[index] : NULL;
}
const char *server_http_address(const struct server *server)
{
    return server->http ? ops_http_address(server->http) : NULL;
}

/* ---- client listeners -------------------------------------------------------- */

/* A listener slot: the server and the index of the listener. */
struct server_slot {
    struct server *server;
    size_t index;
};
static struct server_slot server_slots[SERVER_MAX_LISTENERS];

static void server_on_accept(void *opaque, evutil_socket_t fd, const struct sockaddr *peer,
                             int peer_len)
{
    struct server_slot *slot = opaque;
    struct server *server = slot->server;
    char address[80];
    if (server->draining || !server->adapters[slot->index]) {
        listener_format_address(peer, address, sizeof(address));
        (*server->connections_refused)++;
        log_warn("server", "connection from %s refused: %s", address,
                 server->draining ? "draining for shutdown"
                                  : "no adapter for this protocol is built into kbridged");
        evutil_closesocket(fd);
        return;
    }
    server->adapter_ops[slot->index]->accept(server->adapters[slot->index], fd, peer, peer_len);
}

static int server_listen(struct server *server, const char *name,
                         const struct config_listener *listener_config, char *err, size_t err_size)
{
    if (!listener_config->enabled)
        return 0;
    size_t index = server->listener_count;
    server_slots[index] = (struct server_slot){server, index};
    struct listener *listener = listener_new(server->base, name, listener_config->bind,
                                             server_on_accept, &server_slots[index], err, err_size);
    if (!listener)
        return -1;
    server->listeners[index] = listener;
    server->adapter_ops[index] = adapter_find(name);
    server->listener_count++;
    log_info("server", "listener %s listening on %s", name, listener_address(listener));
    return 0;
}

static int server_start_adapters(struct server *server, char *err, size_t err_size)
{
    struct adapter_context context = {
        .base = server->base,
        .core = server->core,
        .metrics = server->metrics,
        .config = &server->config,
    };
    for (size_t i = 0; i < server->listener_count; i++) {
        const struct adapter_ops *ops = server->adapter_ops[i];
        if (!ops) {
            log_warn("server",
                     "listener %s: no adapter for this protocol is built in yet; "
                     "connections will be refused",
                     listener_name(server->listeners[i]));
            continue;
        }
        server->adapters[i] = ops->create(&context, err, err_size);
        if (!server->adapters[i])
            return -1;
    }
    return 0;
}

/* ---- reload ------------------------------------------------------------------ */

static void server_reload(struct server *server)
{
    notify_reloading();
    char err[1024];
    struct config *fresh = NULL;
    log_info("config", "SIGHUP: reloading %s", server->config->path);
    if (config_load(server->config->path, &fresh, err, sizeof(err)) < 0) {
        (*server->reload_failures)++;
        log_error("config", "reload failed, keeping the running configuration: %s", err);
        notify_ready("running; last reload failed");
        return;
    }
    config_apply_live(server->config, fresh);
    struct config *old = server->config;
    server->config = fresh;
    kafka_set_config(server->kafka, fresh);
    core_reconfigure(server->core);
    for (size_t i = 0; i < server->listener_count; i++)
        if (server->adapters[i])
            server->adapter_ops[i]->reconfigure(server->adapters[i]);
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
        listener_pause(server->listeners[i]);
        if (server->adapters[i])
            server->adapter_ops[i]->drain(server->adapters[i]);
    }
    core_drain(server->core);
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

struct server *server_new(struct config *config, char *err, size_t err_size)
{
    struct server *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(err, err_size, "out of memory");
        config_free(config);
        return NULL;
    }
    server->config = config;
    clock_gettime(CLOCK_MONOTONIC, &server->started);
    log_set_level(config->log.level);
    log_set_format(config->log.format);
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
                               (metrics_gauge_fn)server_uptime_seconds, server) < 0) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    static const char *const protocols[] = {"stomp", "amqp"};
    for (size_t i = 0; i < 2; i++) {
        char labels[64];
        metrics_label(labels, sizeof(labels), "protocol", protocols[i]);
        if (!metrics_gauge(server->metrics, "kbridge_connections", "Open client connections.",
                           labels)) {
            snprintf(err, err_size, "out of memory");
            goto fail;
        }
    }

    /* Listeners first: a port in use is a start-up error, before Kafka work. */
    if (server_listen(server, "stomp", &config->listeners.stomp, err, err_size) < 0 ||
        server_listen(server, "amqp", &config->listeners.amqp, err, err_size) < 0)
        goto fail;
    if (config->listeners.http.enabled) {
        server->http =
            ops_http_new(server->base, server, config->listeners.http.bind, err, err_size);
        if (!server->http)
            goto fail;
        log_info("server", "listener http listening on %s", ops_http_address(server->http));
    }

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
    if (!server->core || server_start_adapters(server, err, err_size) < 0)
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
        if (server->adapters[i])
            server->adapter_ops[i]->destroy(server->adapters[i]);
        listener_free(server->listeners[i]);
    }
    ops_http_free(server->http);
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
