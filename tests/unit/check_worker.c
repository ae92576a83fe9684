/* SPDX-License-Identifier: Apache-2.0 */
/* check_worker.c -- the worker pool (daemon/worker.c): jobs run on worker
 * threads, completions on the loop thread and never inside worker_submit,
 * a bounded number of completions per loop iteration, cancellation before
 * and during a job, and a free that joins the threads and releases every
 * job left. */
#include <check.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit_main.h"
#include "worker.h"

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    bool entered;
};

struct job {
    atomic_int worked;          /* times work ran */
    atomic_bool worked_on_loop; /* work ran on the loop thread (wrong) */
    int done;                   /* times done ran */
    bool cancelled;
    bool done_off_loop; /* done ran on another thread (wrong) */
    struct gate *gate;  /* work waits for it when set */
    struct worker_pool *pool;
    struct worker_job *cancel_in_done; /* done cancels this job */
    struct job *submit_in_done;        /* done submits this job to pool */
};

static pthread_t loop_thread;

static void gate_init(struct gate *gate)
{
    pthread_mutex_init(&gate->lock, NULL);
    pthread_cond_init(&gate->cond, NULL);
    gate->open = false;
    gate->entered = false;
}

static void gate_open(struct gate *gate)
{
    pthread_mutex_lock(&gate->lock);
    gate->open = true;
    pthread_cond_broadcast(&gate->cond);
    pthread_mutex_unlock(&gate->lock);
}

static void gate_wait_entered(struct gate *gate)
{
    pthread_mutex_lock(&gate->lock);
    while (!gate->entered)
        pthread_cond_wait(&gate->cond, &gate->lock);
    pthread_mutex_unlock(&gate->lock);
}

static void job_work(void *arg)
{
    struct job *job = arg;
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_store(&job->worked_on_loop, true);
    if (job->gate) {
        pthread_mutex_lock(&job->gate->lock);
        job->gate->entered = true;
        pthread_cond_broadcast(&job->gate->cond);
        while (!job->gate->open)
            pthread_cond_wait(&job->gate->cond, &job->gate->lock);
        pthread_mutex_unlock(&job->gate->lock);
    }
    atomic_fetch_add(&job->worked, 1);
}

static void job_done(void *arg, bool cancelled)
{
    struct job *job = arg;
    job->done++;
    job->cancelled = cancelled;
    if (!pthread_equal(pthread_self(), loop_thread))
        job->done_off_loop = true;
    if (job->cancel_in_done)
        worker_cancel(job->cancel_in_done);
    if (job->submit_in_done)
        worker_submit(job->pool, job_work, job_done, job->submit_in_done);
}

static int jobs_done(const struct job *jobs, size_t count)
{
    int done = 0;
    for (size_t i = 0; i < count; i++)
        done += jobs[i].done;
    return done;
}

/* Run the loop until `count` jobs are done (or 10 s pass). */
static void run_until_done(struct event_base *base, const struct job *jobs, size_t count)
{
    for (int i = 0; i < 10000 && jobs_done(jobs, count) < (int)count; i++) {
        struct timeval tick = {0, 1000};
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
}

static struct worker_pool *pool_new(struct event_base *base, unsigned threads)
{
    char err[256] = "";
    struct worker_pool *pool = worker_pool_new(base, threads, err, sizeof(err));
    ck_assert_msg(pool != NULL, "%s", err);
    return pool;
}

START_TEST(test_jobs_run_on_threads_and_complete_on_the_loop)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 3);
    enum { N = 100 };
    struct job *jobs = calloc(N, sizeof(*jobs));
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(worker_submit(pool, job_work, job_done, &jobs[i]));
    ck_assert_int_eq(jobs_done(jobs, N), 0); /* never inside worker_submit */
    ck_assert_uint_eq(worker_pool_pending(pool), N);
    run_until_done(base, jobs, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&jobs[i].worked), 1);
        ck_assert(!atomic_load(&jobs[i].worked_on_loop));
        ck_assert_int_eq(jobs[i].done, 1);
        ck_assert(!jobs[i].cancelled);
        ck_assert(!jobs[i].done_off_loop);
    }
    ck_assert_uint_eq(worker_pool_pending(pool), 0);
    worker_pool_free(pool);
    event_base_free(base);
    free(jobs);
}
END_TEST

START_TEST(test_job_without_work_completes_later_on_the_loop)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    struct job job = {0};
    ck_assert_ptr_nonnull(worker_submit(pool, NULL, job_done, &job));
    ck_assert_int_eq(job.done, 0);
    run_until_done(base, &job, 1);
    ck_assert_int_eq(job.done, 1);
    ck_assert(!job.cancelled);
    ck_assert(!job.done_off_loop);
    worker_pool_free(pool);
    event_base_free(base);
}
END_TEST

START_TEST(test_completions_are_bounded_per_loop_iteration)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    enum { N = WORKER_COMPLETIONS_PER_RUN * 3 + 5 };
    struct job *jobs = calloc(N, sizeof(*jobs));
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(worker_submit(pool, NULL, job_done, &jobs[i]));
    event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(jobs_done(jobs, N), WORKER_COMPLETIONS_PER_RUN);
    event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(jobs_done(jobs, N), 2 * WORKER_COMPLETIONS_PER_RUN);
    run_until_done(base, jobs, N);
    ck_assert_int_eq(jobs_done(jobs, N), N);
    worker_pool_free(pool);
    event_base_free(base);
    free(jobs);
}
END_TEST

START_TEST(test_cancel_before_start_skips_work)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    struct gate gate;
    gate_init(&gate);
    struct job jobs[3] = {{.gate = &gate}};
    ck_assert_ptr_nonnull(worker_submit(pool, job_work, job_done, &jobs[0]));
    gate_wait_entered(&gate); /* the only thread is busy */
    struct worker_job *second = worker_submit(pool, job_work, job_done, &jobs[1]);
    ck_assert_ptr_nonnull(worker_submit(pool, job_work, job_done, &jobs[2]));
    worker_cancel(second);
    gate_open(&gate);
    run_until_done(base, jobs, 3);
    ck_assert_int_eq(atomic_load(&jobs[0].worked), 1);
    ck_assert(!jobs[0].cancelled);
    ck_assert_int_eq(atomic_load(&jobs[1].worked), 0);
    ck_assert_int_eq(jobs[1].done, 1);
    ck_assert(jobs[1].cancelled);
    ck_assert_int_eq(atomic_load(&jobs[2].worked), 1);
    ck_assert(!jobs[2].cancelled);
    worker_pool_free(pool);
    event_base_free(base);
}
END_TEST

START_TEST(test_cancel_while_running_drops_the_completion)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 2);
    struct gate gate;
    gate_init(&gate);
    struct job job = {.gate = &gate};
    struct worker_job *handle = worker_submit(pool, job_work, job_done, &job);
    gate_wait_entered(&gate);
    worker_cancel(handle); /* the owner went away while the thread works */
    gate_open(&gate);
    run_until_done(base, &job, 1);
    ck_assert_int_eq(atomic_load(&job.worked), 1); /* finished on its thread */
    ck_assert_int_eq(job.done, 1);
    ck_assert(job.cancelled);
    worker_pool_free(pool);
    event_base_free(base);
}
END_TEST

START_TEST(test_cancel_from_a_completion_in_the_same_batch)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    struct job jobs[2] = {{0}};
    ck_assert_ptr_nonnull(worker_submit(pool, NULL, job_done, &jobs[0]));
    jobs[0].cancel_in_done = worker_submit(pool, NULL, job_done, &jobs[1]);
    run_until_done(base, jobs, 2);
    ck_assert(!jobs[0].cancelled);
    ck_assert(jobs[1].cancelled);
    worker_pool_free(pool);
    event_base_free(base);
}
END_TEST

START_TEST(test_free_joins_and_releases_every_job)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    struct gate gate;
    gate_init(&gate);
    enum { N = 6 };
    struct job jobs[N] = {{.gate = &gate}};
    for (int i = 0; i < N; i++)
        ck_assert_ptr_nonnull(worker_submit(pool, job_work, job_done, &jobs[i]));
    gate_wait_entered(&gate);
    gate_open(&gate); /* the first job finishes while the pool stops */
    worker_pool_free(pool);
    int worked = 0;
    for (int i = 0; i < N; i++) {
        worked += atomic_load(&jobs[i].worked);
        ck_assert_int_eq(jobs[i].done, 1);
        ck_assert(jobs[i].cancelled);
        ck_assert(!jobs[i].done_off_loop);
    }
    ck_assert_int_le(worked, N);
    ck_assert_int_ge(worked, 1);
    event_base_free(base);
}
END_TEST

/* A completion run by worker_pool_free may submit another job (Kafka's
 * lookups start the anchors that waited for them): that job too is
 * completed, cancelled, before the free returns. */
START_TEST(test_free_completes_jobs_submitted_by_completions)
{
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct worker_pool *pool = pool_new(base, 1);
    struct job chained[3] = {{0}};
    struct job first = {.pool = pool, .submit_in_done = &chained[0]};
    chained[0].pool = pool;
    chained[0].submit_in_done = &chained[1];
    chained[1].pool = pool;
    chained[1].submit_in_done = &chained[2];
    ck_assert_ptr_nonnull(worker_submit(pool, job_work, job_done, &first));
    worker_pool_free(pool);
    ck_assert_int_eq(first.done, 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(chained[i].done, 1);
        ck_assert(chained[i].cancelled);
        ck_assert(!chained[i].done_off_loop);
    }
    event_base_free(base);
}
END_TEST

START_TEST(test_zero_threads_is_an_error)
{
    struct event_base *base = event_base_new();
    char err[256] = "";
    ck_assert_ptr_null(worker_pool_new(base, 0, err, sizeof(err)));
    ck_assert_str_eq(err, "worker pool: at least one thread is needed");
    worker_pool_free(NULL);
    event_base_free(base);
}
END_TEST

static Suite *worker_suite(void)
{
    Suite *suite = suite_create("worker");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_jobs_run_on_threads_and_complete_on_the_loop);
    tcase_add_test(tc, test_job_without_work_completes_later_on_the_loop);
    tcase_add_test(tc, test_completions_are_bounded_per_loop_iteration);
    tcase_add_test(tc, test_cancel_before_start_skips_work);
    tcase_add_test(tc, test_cancel_while_running_drops_the_completion);
    tcase_add_test(tc, test_cancel_from_a_completion_in_the_same_batch);
    tcase_add_test(tc, test_free_joins_and_releases_every_job);
    tcase_add_test(tc, test_free_completes_jobs_submitted_by_completions);
    tcase_add_test(tc, test_zero_threads_is_an_error);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(worker_suite)
