/* SPDX-License-Identifier: Apache-2.0 */
/* worker.h -- the worker pool: a few threads for work that must not run on
 * the event loop (architecture §1: nothing on the loop blocks): password
 * hash checks, and Kafka's blocking calls (kafka_internal.h, kafka_submit). A job's `work` runs on
 * a worker thread and touches only the job's own data; its `done` runs later on the loop thread,
 * which owns everything else. Modelled on Redis's bio.c.
 *
 * Ownership: the pool owns its threads, its queues and the job records;
 * `arg` stays the submitter's. `done` is called exactly once per job, on
 * the loop, with cancelled == true when the job was cancelled (or the pool
 * is being freed): then it must only release `arg`, the owner is gone. */
#ifndef KBRIDGE_WORKER_H
#define KBRIDGE_WORKER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct worker_pool;
struct worker_job;

/* Completions run per loop iteration at most, so a burst of them does not
 * starve sockets and timers (the rest run on the next iteration). */
#define WORKER_COMPLETIONS_PER_RUN 64

/* Runs on a worker thread: only `arg` may be touched. */
typedef void (*worker_work_fn)(void *arg);
/* Runs on the loop thread once `work` has returned (or was skipped). */
typedef void (*worker_done_fn)(void *arg, bool cancelled);

/* Start `threads` (>= 1) threads whose completions are run on `base`.
 * NULL with err on failure. */
struct worker_pool *worker_pool_new(struct event_base *base, unsigned threads, char *err,
                                    size_t err_size);
/* Stop and join the threads, then call `done(arg, true)` for every job not
 * yet completed. A `done` called here may submit another job: its `done`
 * too runs (cancelled) before this returns. Loop thread only; NULL is fine. */
void worker_pool_free(struct worker_pool *pool);

/* Queue a job (loop thread only). `work` may be NULL: then `done` only runs
 * from the loop later, never inside this call, which gives callers one path
 * for answers that need no thread. NULL on allocation failure (nothing is
 * called then). The handle is valid until `done` has been called. */
struct worker_job *worker_submit(struct worker_pool *pool, worker_work_fn work, worker_done_fn done,
                                 void *arg);
/* The job's owner is going away (loop thread only): `work` is skipped when
 * it has not started (when it has, it finishes on its thread), and `done`
 * is called with cancelled == true. */
void worker_cancel(struct worker_job *job);

/* Jobs queued or running, and completions waiting for the loop. */
size_t worker_pool_pending(struct worker_pool *pool);

#endif
