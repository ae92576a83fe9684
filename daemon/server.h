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

struct config;
struct kafka;
struct listener;
struct metrics;
struct server;

/* Start a server from `config`, which the server takes over (freed by
 * server_free, or here on failure). Returns NULL with err filled in when a
 * listener cannot bind or the Kafka layer cannot be created. */
struct server *server_new(struct config *config, char *err, size_t err_size);

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
/* Seconds since start. */
double server_uptime_seconds(const struct server *server);
/* True once a drain (SIGTERM) has begun. */
bool server_is_draining(const struct server *server);
/* Number of client listeners started, and each one (name, bind, address). */
size_t server_listener_count(const struct server *server);
const struct listener *server_listener(const struct server *server, size_t index);
/* The ops HTTP listener's bound address, or NULL when it is not started. */
const char *server_http_address(const struct server *server);

#endif
