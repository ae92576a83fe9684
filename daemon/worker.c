/* SPDX-License-Identifier: Apache-2.0 */
/* worker.c -- the worker pool (worker.h): N threads taking jobs from one
 * FIFO queue, and the completions they queue back to the loop thread.
 * Modelled on Redis's bio.c.
 *
 * Owns: the threads, the job queue and the completion queue (both under
 * one mutex), a pipe whose read end is a persistent libevent read event,
 * and the job records.
 *
 *  - Submit (loop): the job goes on the queue and one thread is signalled.
 *    A job without `work` goes straight on the completion queue.
 *  - A thread takes the oldest job, runs `work` unless the job was
 *    cancelled before it started, puts the job on the completion queue and,
 *    when that queue was empty, writes one byte to the pipe to wake the loop
 *    (libevent's thread support is not enabled in kbridged, so no
 *    event_active from another thread).
 *  - The loop's read event empties the pipe and runs at most
 *    WORKER_COMPLETIONS_PER_RUN completions; when more are left it arms a
 *    zero-timeout timer (not event_active, whose callback libevent would
 *    run in the same pass), so they run on the next loop iteration, after
 *    the sockets that are ready. Completions of jobs without work start
 *    from that timer too.
 *  - Cancel (loop): an atomic flag. The thread skips `work` if it has not
 *    started; the completion still comes back and `done` sees
 *    cancelled == true, so the submitter's memory is freed but its owner is
 *    never called.
 *  - Free (loop): threads finish the job in hand and exit without taking
 *    another; they are joined; every job left (queued or completed) gets
 *    `done(arg, true)`, also one submitted by such a `done`.
 *
 * Worker threads block every signal (signals are for the loop) and run at
 * a lower priority (nice +WORKER_NICE): on a busy machine a login storm's
 * hashing yields the CPU to the loop rather than delaying every client. */
#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WORKER_NICE 10

struct worker_job {
    struct worker_job *next;
    worker_work_fn work;
    worker_done_fn done;
    void *arg;
    atomic_bool cancelled;
};

struct worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a job was queued, or stopping */
    struct worker_job *queue_head;
    struct worker_job *queue_tail;
    struct worker_job *done_head; /* completed, waiting for the loop */
    struct worker_job *done_tail;
    bool stopping;

    int pipe_read;
    int pipe_write;
    struct event *wakeup; /* the pipe's read end */
    struct event *again;  /* zero-timeout: completions left over, or queued by the loop */
    size_t pending;       /* loop only: submitted and not yet called back */

    pthread_t *threads;
    unsigned thread_count; /* started */
};

static void worker_append(struct worker_job **head, struct worker_job **tail,
                          struct worker_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

/* Lock held. True when the completion queue was empty (the loop needs a wake-up). */
static bool worker_complete_locked(struct worker_pool *pool, struct worker_job *job)
{
    bool was_empty = pool->done_head == NULL;
    worker_append(&pool->done_head, &pool->done_tail, job);
    return was_empty;
}

static void worker_wake_loop(struct worker_pool *pool)
{
    char byte = 1;
    /* Non-blocking: a full pipe already holds a wake-up. */
    while (write(pool->pipe_write, &byte, 1) < 0 && errno == EINTR) {
    }
}

static void *worker_thread(void *arg)
{
    struct worker_pool *pool = arg;
    /* Linux: nice is per thread. Best effort: unprivileged raising is allowed. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stopping && !pool->queue_head)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->stopping)
            break;
        struct worker_job *job = pool->queue_head;
        pool->queue_head = job->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pthread_mutex_unlock(&pool->lock);

        if (!atomic_load(&job->cancelled))
            job->work(job->arg);

        pthread_mutex_lock(&pool->lock);
        if (worker_complete_locked(pool, job))
            worker_wake_loop(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static void worker_run_done(struct worker_pool *pool, struct worker_job *job, bool force_cancel)
{
    bool cancelled = force_cancel || atomic_load(&job->cancelled);
    pool->pending--;
    job->done(job->arg, cancelled);
    free(job);
}

static void worker_run_later(struct worker_pool *pool)
{
    static const struct timeval now = {0, 0};
    event_add(pool->again, &now);
}

static void worker_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker_pool *pool = arg;
    char buffer[64];
    while (read(pool->pipe_read, buffer, sizeof(buffer)) > 0) {
    }
    pthread_mutex_lock(&pool->lock);
    struct worker_job *batch = pool->done_head;
    struct worker_job *last = NULL;
    unsigned taken = 0;
    for (struct worker_job *job = batch; job && taken < WORKER_COMPLETIONS_PER_RUN;
         job = job->next, taken++)
        last = job;
    if (last) {
        pool->done_head = last->next;
        if (!pool->done_head)
            pool->done_tail = NULL;
        last->next = NULL;
    } else {
        batch = NULL;
    }
    bool more = pool->done_head != NULL;
    pthread_mutex_unlock(&pool->lock);
    while (batch) {
        struct worker_job *next = batch->next;
        worker_run_done(pool, batch, false);
        batch = next;
    }
    if (more)
        worker_run_later(pool); /* the rest on the next iteration */
}

struct worker_pool *worker_pool_new(struct event_base *base, unsigned threads, char *err,
                                    size_t err_size)
{
    if (threads < 1) {
        snprintf(err, err_size, "worker pool: at least one thread is needed");
        return NULL;
    }
    struct worker_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        snprintf(err, err_size, "worker pool: out of memory");
        return NULL;
    }
    pool->pipe_read = pool->pipe_write = -1;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, err_size, "worker pool: pipe: %s", strerror(errno));
        worker_pool_free(pool);
        return NULL;
    }
    pool->pipe_read = fds[0];
    pool->pipe_write = fds[1];
    pool->wakeup = event_new(base, pool->pipe_read, EV_READ | EV_PERSIST, worker_on_wakeup, pool);
    pool->again = evtimer_new(base, worker_on_wakeup, pool);
    pool->threads = calloc(threads, sizeof(*pool->threads));
    if (!pool->wakeup || !pool->again || !pool->threads || event_add(pool->wakeup, NULL) < 0) {
        snprintf(err, err_size, "worker pool: out of memory");
        worker_pool_free(pool);
        return NULL;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited by the threads */
    int rc = 0;
    while (pool->thread_count < threads && (rc = pthread_create(&pool->threads[pool->thread_count],
                                                                NULL, worker_thread, pool)) == 0)
        pool->thread_count++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, err_size, "worker pool: cannot start a thread: %s", strerror(rc));
        worker_pool_free(pool);
        return NULL;
    }
    return pool;
}

void worker_pool_free(struct worker_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->thread_count; i++)
        pthread_join(pool->threads[i], NULL);
    /* No thread is left: no lock needed. Completed jobs first, then those
     * never started; a `done` may submit another job (Kafka's lookup
     * completions start the anchors that waited for them), which lands on
     * one of the lists and is run here too, so the tails are kept. */
    for (;;) {
        struct worker_job *job = pool->done_head;
        if (job) {
            pool->done_head = job->next;
            if (!pool->done_head)
                pool->done_tail = NULL;
        } else if ((job = pool->queue_head)) {
            pool->queue_head = job->next;
            if (!pool->queue_head)
                pool->queue_tail = NULL;
        } else {
            break;
        }
        worker_run_done(pool, job, true);
    }
    if (pool->wakeup)
        event_free(pool->wakeup);
    if (pool->again)
        event_free(pool->again);
    if (pool->pipe_read >= 0)
        close(pool->pipe_read);
    if (pool->pipe_write >= 0)
        close(pool->pipe_write);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

struct worker_job *worker_submit(struct worker_pool *pool, worker_work_fn work, worker_done_fn done,
                                 void *arg)
{
    struct worker_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    job->work = work;
    job->done = done;
    job->arg = arg;
    atomic_init(&job->cancelled, false);
    pool->pending++;
    pthread_mutex_lock(&pool->lock);
    if (work) {
        worker_append(&pool->queue_head, &pool->queue_tail, job);
        pthread_cond_signal(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    } else {
        bool wake = worker_complete_locked(pool, job);
        pthread_mutex_unlock(&pool->lock);
        if (wake)
            worker_run_later(pool); /* we are the loop thread */
    }
    return job;
}

void worker_cancel(struct worker_job *job)
{
    if (job)
        atomic_store(&job->cancelled, true);
}

size_t worker_pool_pending(struct worker_pool *pool) { return pool->pending; }
