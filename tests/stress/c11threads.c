/* c11threads.c - C11 threads on pthreads, preloaded into the TSan layer's spate runs.
 *
 * ThreadSanitizer intercepts pthread_create, pthread_mutex_* and pthread_cond_*, but not
 * the C11 functions glibc implements on them (thrd_create calls glibc's internal
 * __pthread_create_2_1, not the exported pthread_create). Debian's librdkafka 2.0.2
 * makes its threads with thrd_create, so TSan never sets up its state for them and the
 * first intercepted call in such a thread (a malloc) dies with a SEGV inside the TSan
 * runtime (google/sanitizers#1195 and #1603: TSan does not support C11 threads); its
 * mtx_* and cnd_* calls would be invisible too, so TSan would miss every
 * happens-before that librdkafka's locks give the data it hands to spate.
 *
 * Preloaded (LD_PRELOAD, scripts/tsan.sh), this library's definitions come before
 * libc's, and each one calls the exported pthread function, which TSan intercepts. They
 * do what glibc 2.36's do (nptl/thrd_create.c, mtx_init.c, cnd_timedwait.c ...), error
 * codes mapped as thrd_err_map does. Only the functions librdkafka imports are here
 * (nm -D librdkafka.so.1), plus thrd_detach and thrd_exit for symmetry with thrd_create.
 * This is test tooling for the TSan build only; nothing in libspate links it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

/* The prototypes come from threads.h; -Wmissing-prototypes is satisfied by it. */

static int err_map(int err)
{
	switch (err) {
	case 0:
		return thrd_success;
	case ENOMEM:
		return thrd_nomem;
	case ETIMEDOUT:
		return thrd_timedout;
	case EBUSY:
		return thrd_busy;
	default:
		return thrd_error;
	}
}

/* A C11 thread's function and argument, handed to the pthread that runs it. */
typedef struct start {
	thrd_start_t fn;
	void *arg;
} start_t;

static void *trampoline(void *p)
{
	start_t s = *(start_t *)p;
	free(p);
	/* a C11 thread returns an int: glibc carries it in the pointer (thrd_join) */
	return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
	start_t *s = malloc(sizeof(*s));
	if (!s)
		return thrd_nomem;
	s->fn = fn;
	s->arg = arg;
	int rc = pthread_create(thr, NULL, trampoline, s);
	if (rc)
		free(s);
	return err_map(rc);
}

int thrd_join(thrd_t thr, int *res)
{
	void *r;
	int rc = pthread_join(thr, &r);
	if (!rc && res)
		*res = (int)(intptr_t)r;
	return err_map(rc);
}

int thrd_detach(thrd_t thr)
{
	return err_map(pthread_detach(thr));
}

void thrd_exit(int res)
{
	pthread_exit((void *)(intptr_t)res);
}

int mtx_init(mtx_t *m, int type)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	if (type & mtx_recursive)
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
	pthread_mutexattr_destroy(&a);
	return err_map(rc);
}

int mtx_lock(mtx_t *m)
{
	return err_map(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
	return err_map(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_unlock(mtx_t *m)
{
	return err_map(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
	pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
	return err_map(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
	return err_map(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
	return err_map(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
	return err_map(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

/* ts is TIME_UTC (CLOCK_REALTIME), as pthread_cond_timedwait's default clock */
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
	return err_map(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
	pthread_cond_destroy((pthread_cond_t *)c);
}

void call_once(once_flag *flag, void (*fn)(void))
{
	pthread_once((pthread_once_t *)flag, fn);
}
