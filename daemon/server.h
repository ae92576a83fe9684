/* SPDX-License-Identifier: Apache-2.0 */
/* server.h -- the running daemon: the libevent loop and everything it owns
 * (config, metrics, Kafka layer, listeners, ops HTTP, signals, watchdog).
 *
 * Lifecycle: server_new binds every configured listener and starts the
 * Kafka layer (which may not be ready yet), server_run dispatches the loop
 * until a drain completes, server_free releases everything. Signals only
 * set work for the loop: SIGHUP reloads, SIGTERM/SIGINT drain. */
#ifndef KBRIDGE_SERVER_H
#define KBRIDGE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct adapter_registry;
struct config;
struct core;
struct kafka;
struct listener;
struct metrics;
struct server;
struct status;
struct shovel_table;

/* Check that every protocol `config`'s listeners name is an adapter of
 * `registry` or the ops endpoint (OPS_HTTP_PROTOCOL, alone on its listener,
 * on at most one). 0 ok; -1 with err naming the key and the built-in
 * adapters. kbridged --check-config runs it too. */
int server_check_listeners(const struct config *config, const struct adapter_registry *registry,
                           char *err, size_t err_size);

/* Start a server from `config`, which the server takes over (freed by
 * server_free, or here on failure), serving the adapters of `registry`
 * (main passes adapter_registry_builtin(); it must outlive the server).
 * Returns NULL with err filled in when a listener names a protocol not in
 * the registry, a listener cannot bind or the Kafka layer cannot be
 * created. */
struct server *server_new(struct config *config, const struct adapter_registry *registry, char *err,
                          size_t err_size);

/* Run the loop until drained. Returns the process exit code (0 clean). */
int server_run(struct server *server);

/* Free the server and all it owns; NULL is fine. Blocks while librdkafka
 * shuts down. */
void server_free(struct server *server);

/* ---- read access for the ops endpoints ---------------------------------- */

/* The configuration in force (replaced on reload; do not keep the pointer). */
const struct config *server_config(const struct server *server);
struct kafka *server_kafka(const struct server *server);
struct metrics *server_metrics(const struct server *server);
/* The core (its definitions view and readiness, for /readyz and /api/definitions). */
struct core *server_core(const struct server *server);
/* The cluster view (status.h); NULL before it started. */
struct status *server_status(const struct server *server);
/* The shovels' status table (shovel.h; never NULL once started). */
struct shovel_table *server_shovels(const struct server *server);
/* Seconds since start. */
double server_uptime_seconds(const struct server *server);
/* True once a drain (SIGTERM) has begun. */
bool server_is_draining(const struct server *server);
/* Ready to serve: Kafka reachable, the definitions topic read, not draining
 * (what /readyz answers 200 for). */
bool server_is_ready(const struct server *server);
/* Number of client listeners started, and each one (name, bind, address),
 * in the config file's order. */
size_t server_listener_count(const struct server *server);
const struct listener *server_listener(const struct server *server, size_t index);
/* The ops HTTP listener's configured bind, or NULL when it is not started. */
const char *server_http_bind(const struct server *server);
/* The ops HTTP listener's bound address, or NULL when it is not started. */
const char *server_http_address(const struct server *server);

#endif
