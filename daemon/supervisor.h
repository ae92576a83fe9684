/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor.h -- `processes: N`: one kbridged supervisor forks N worker
 * processes, each a whole node (`{node_id}-{i}`) sharing the client ports
 * with SO_REUSEPORT (architecture "Processes").
 *
 * The supervisor holds no Kafka handle, no thread and no client: it
 * reserves the client ports, forks the workers before anything else starts,
 * forwards SIGTERM/SIGINT/SIGHUP to them, restarts a worker that dies with
 * back-off and tells systemd READY=1 once every worker is ready. */
#ifndef KBRIDGE_SUPERVISOR_H
#define KBRIDGE_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>

struct config;

/* The number of processes `config` asks for: `processes`, or the online
 * CPUs for 0 (at least 1). */
uint32_t supervisor_process_count(const struct config *config);

/* What a config with `count` processes must also satisfy (a shared Kafka,
 * node ids and ops ports that fit every worker). 0 ok, -1 with err. Run by
 * --check-config too. */
int supervisor_check_config(const struct config *config, uint32_t count, char *err,
                            size_t err_size);

/* Run as the supervisor of `count` (> 1) workers; takes `config`.
 * In the supervisor: returns its exit code (0 when every worker stopped
 * cleanly on a signal, 1 when a port could not be reserved, a worker could
 * not be forked or workers kept failing) with *worker_config NULL, config
 * freed. In a worker: returns 0 with *worker_config set to `config` with the
 * worker's identity applied (supervisor_worker_config); the caller runs the
 * server on it and owns it. */
int supervisor_run(struct config *config, uint32_t count, struct config **worker_config);

/* In a worker process: give `config` (a fresh load on SIGHUP) this worker's
 * node id, its client binds (the ports the supervisor reserved) and its ops
 * port (configured port + index). In a single process it only resolves
 * `processes: 0` to the count, as main does at start. */
void supervisor_worker_config(struct config *config);

/* In a worker process, once the server's signal handlers are installed (or
 * it failed to start): unblock the signals the supervisor blocked, so one
 * passed on before now is handled. Nothing in a single process. */
void supervisor_worker_serving(void);

#endif
