/* SPDX-License-Identifier: Apache-2.0 */
/* tsan_threads.c -- C11 threads on top of pthreads, in ThreadSanitizer builds
 * only (./configure --enable-tsan; empty otherwise).
 *
 * librdkafka starts its threads with C11 thrd_create and locks with mtx_* and
 * cnd_*. glibc (2.34+) implements those by calling its pthread internals
 * directly, which ThreadSanitizer's interceptors (GCC 12, LLVM 14) never see:
 * a librdkafka thread then has no TSan state and crashes in its first malloc,
 * and a hand-over through librdkafka's queues (delivery reports, log and
 * rebalance callbacks on its threads) would look like a race. Defined here,
 * in kbridged itself, these win over glibc's for librdkafka too, and go
 * through the intercepted pthread calls. configure links with
 * -Wl,-u,thrd_create so the linker takes this file out of daemon/libkbridge.a
 * (only shared libraries refer to these names). docs/testing.md "ThreadSanitizer". */
#if defined(__SANITIZE_THREAD__)
#define KBRIDGE_TSAN_THREADS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KBRIDGE_TSAN_THREADS 1
#endif
#endif

#ifdef KBRIDGE_TSAN_THREADS
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "glibc: mtx_t is a pthread mutex");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "glibc: cnd_t is a pthread condvar");
_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "glibc: thrd_t is a pthread_t");

static int thrd_result(int rc)
{
    switch (rc) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
    }
}

struct thrd_start {
    thrd_start_t func;
    void *arg;
};

static void *thrd_trampoline(void *p)
{
    struct thrd_start start = *(struct thrd_start *)p;
    free(p);
    return (void *)(intptr_t)start.func(start.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
    struct thrd_start *start = malloc(sizeof(*start));
    if (!start)
        return thrd_nomem;
    start->func = func;
    start->arg = arg;
    int rc = pthread_create((pthread_t *)thr, NULL, thrd_trampoline, start);
    if (rc != 0)
        free(start);
    return thrd_result(rc);
}

int thrd_join(thrd_t thr, int *res)
{
    void *value;
    int rc = pthread_join((pthread_t)thr, &value);
    if (rc == 0 && res)
        *res = (int)(intptr_t)value;
    return thrd_result(rc);
}

int thrd_detach(thrd_t thr) { return thrd_result(pthread_detach((pthread_t)thr)); }

int mtx_init(mtx_t *mtx, int type)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)mtx, &attr);
    pthread_mutexattr_destroy(&attr);
    return thrd_result(rc);
}

int mtx_lock(mtx_t *mtx) { return thrd_result(pthread_mutex_lock((pthread_mutex_t *)mtx)); }

int mtx_trylock(mtx_t *mtx) { return thrd_result(pthread_mutex_trylock((pthread_mutex_t *)mtx)); }

int mtx_timedlock(mtx_t *restrict mtx, const struct timespec *restrict ts)
{
    return thrd_result(pthread_mutex_timedlock((pthread_mutex_t *)mtx, ts));
}

int mtx_unlock(mtx_t *mtx) { return thrd_result(pthread_mutex_unlock((pthread_mutex_t *)mtx)); }

void mtx_destroy(mtx_t *mtx) { pthread_mutex_destroy((pthread_mutex_t *)mtx); }

int cnd_init(cnd_t *cond) { return thrd_result(pthread_cond_init((pthread_cond_t *)cond, NULL)); }

int cnd_signal(cnd_t *cond) { return thrd_result(pthread_cond_signal((pthread_cond_t *)cond)); }

int cnd_broadcast(cnd_t *cond)
{
    return thrd_result(pthread_cond_broadcast((pthread_cond_t *)cond));
}

int cnd_wait(cnd_t *cond, mtx_t *mtx)
{
    return thrd_result(pthread_cond_wait((pthread_cond_t *)cond, (pthread_mutex_t *)mtx));
}

int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx, const struct timespec *restrict ts)
{
    return thrd_result(pthread_cond_timedwait((pthread_cond_t *)cond, (pthread_mutex_t *)mtx, ts));
}

void cnd_destroy(cnd_t *cond) { pthread_cond_destroy((pthread_cond_t *)cond); }
#endif
