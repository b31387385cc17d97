/* engine.c - the tests' one engine runner (see engine.h).
 *
 * A failure noted off the main thread (t_require on the during thread, t_expect anywhere)
 * is kept in one process-wide slot, the first message with a count, and turned into a
 * Criterion failure on the main thread once the run's threads are joined. In a forked
 * child (child_ms) nothing may call Criterion: the child writes its result and any
 * failure into a shared mapping and exits, and the parent asserts.
 */
#include "tests/common/engine.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

/* How long t_push_all waits before it offers again what a full stage refused. */
#define T_PUSH_RETRY_MS 1
/* The exit status of a child whose run failed a check (the message is in the mapping). */
#define T_CHILD_FAILED 70

enum { T_MSG_MAX = 2048 };

/* The first failure noted off the main thread, and how many there were. */
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[T_MSG_MAX];
static int fail_count;

/* What a child running the engine hands back to its parent. */
typedef struct t_shared {
	t_run_t run;
	char fail[T_MSG_MAX]; /* non-empty: the child failed a check */
} t_shared_t;

/* In a forked child: where its result goes (NULL in the test process itself). */
static t_shared_t *child_out;

/* The during thread's state: the callback, and the public part it is handed. */
typedef struct during_run {
	t_during_t d;
	void (*fn)(t_during_t *d);
} during_run_t;

static _Thread_local during_run_t *this_during;

static bool on_main_thread(void)
{
	return gettid() == getpid();
}

static void note(const char *file, int line, const char *cond, const char *fmt, va_list ap)
{
	char msg[T_MSG_MAX / 2];
	vsnprintf(msg, sizeof(msg), fmt + 1, ap);
	pthread_mutex_lock(&fail_mu);
	if (fail_count++ == 0)
		snprintf(fail_msg, sizeof(fail_msg), "%s:%d: %s%s%s", file, line, cond, *msg ? ": " : "",
		         msg);
	pthread_mutex_unlock(&fail_mu);
}

/* Fail on the main thread with msg: a Criterion failure, or in a child, the message to
 * the parent and exit. */
static _Noreturn void fail_main(const char *msg)
{
	if (child_out) {
		snprintf(child_out->fail, sizeof(child_out->fail), "%s", msg);
		_exit(T_CHILD_FAILED);
	}
	cr_assert_fail("%s", msg);
	abort(); /* not reached: cr_assert_fail does not return */
}

void t_fail_at(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	note(file, line, cond, fmt, ap);
	va_end(ap);
	if (on_main_thread()) {
		char msg[T_MSG_MAX];
		pthread_mutex_lock(&fail_mu);
		snprintf(msg, sizeof(msg), "%s", fail_msg);
		fail_count = 0;
		pthread_mutex_unlock(&fail_mu);
		fail_main(msg);
	}
	if (this_during) {
		spate_engine_stop(this_during->d.e);
		pthread_exit(NULL);
	}
	pthread_mutex_lock(&fail_mu);
	fprintf(stderr, "t_require failed off the main and during threads: %s\n", fail_msg);
	pthread_mutex_unlock(&fail_mu);
	abort();
}

bool t_expect_at(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	note(file, line, cond, fmt, ap);
	va_end(ap);
	return false;
}

/* On the main thread, after the run's threads are joined: fail with what was noted. */
static void assert_nothing_noted(const t_run_t *r)
{
	char msg[T_MSG_MAX];
	pthread_mutex_lock(&fail_mu);
	int n = fail_count;
	if (n)
		snprintf(msg, sizeof(msg), "%.1500s (%d failed check%s in all; the run returned %s%s%.300s)",
		         fail_msg, n, n > 1 ? "s" : "", spate_err2name(r->rc), r->rc ? ": " : "",
		         r->rc ? r->err : "");
	fail_count = 0;
	pthread_mutex_unlock(&fail_mu);
	if (n)
		fail_main(msg);
}

void t_conf_set(spate_conf_t *c, const char *const *kv)
{
	char err[512];
	for (; kv && kv[0]; kv += 2) {
		t_require(kv[1], "conf key %s has no value", kv[0]);
		int rc = spate_conf_set(c, kv[0], kv[1], err, sizeof(err));
		t_require(rc == SPATE_CONF_OK, "%s=%s: %s", kv[0], kv[1], err);
	}
}

spate_conf_t *t_conf(const char *const *kv)
{
	spate_conf_t *c = spate_conf_new();
	t_require(c, "spate_conf_new: out of memory");
	t_conf_set(c, kv);
	return c;
}

static void *during_main(void *arg)
{
	this_during = arg;
	this_during->fn(&this_during->d);
	return NULL;
}

/* The run itself, on the calling thread; *r gets the result. */
static void run_here(const t_engine_opts_t *o, t_run_t *r)
{
	memset(r, 0, sizeof(*r));
	spate_conf_t *c = t_conf(o->conf);
	t_conf_set(c, o->conf_more);
	spate_engine_t *e = spate_engine_new(c, o->handler, r->err, sizeof(r->err));
	if (!e)
		spate_conf_destroy(c); /* still the caller's on failure */
	t_require(e, "spate_engine_new: %s", r->err);
	if (o->source)
		sp_engine_set_source_ops(e, o->source);
	r->rc = spate_engine_start(e, r->err, sizeof(r->err));
	if (r->rc == SPATE_OK) {
		r->started = true;
		if (o->started)
			o->started(e, o->arg);
		during_run_t dr = {.d = {.e = e, .arg = o->arg}, .fn = o->during};
		pthread_t th;
		if (o->during)
			t_require(pthread_create(&th, NULL, during_main, &dr) == 0, "pthread_create");
		r->rc = spate_engine_run(e, r->err, sizeof(r->err));
		atomic_store(&dr.d.ended, true);
		if (o->during)
			pthread_join(th, NULL);
		spate_engine_summary(e, &r->sum);
	}
	if (o->keep)
		r->e = e;
	else
		spate_engine_destroy(e);
	assert_nothing_noted(r);
}

/* The run in a forked child with a hard limit: a run that does not return is killed and
 * reported (hung) instead of hanging the test. */
static t_run_t run_in_child(const t_engine_opts_t *o)
{
	t_require(!o->keep, "keep and child_ms do not mix: the engine lives in the child");
	t_shared_t *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	t_require(sh != MAP_FAILED, "mmap");
	memset(sh, 0, sizeof(*sh));
	fflush(NULL);
	pid_t pid = fork();
	t_require(pid >= 0, "fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failing test */
		child_out = sh;
		run_here(o, &sh->run);
		_exit(0);
	}
	t_run_t r = {0};
	int status = -1;
	if (t_wait_exit(pid, o->child_ms, &status) != 0) {
		r.hung = true;
		r.rc = SPATE_ERR_TIMEOUT;
		snprintf(r.err, sizeof(r.err), "the run did not end within %d ms (killed)", o->child_ms);
		munmap(sh, sizeof(*sh));
		return r;
	}
	r = sh->run;
	char fail[T_MSG_MAX];
	snprintf(fail, sizeof(fail), "%s", sh->fail);
	munmap(sh, sizeof(*sh));
	t_require(!fail[0], "in the child running the engine: %s", fail);
	t_require(status == 0, "the child running the engine ended with status %d", status);
	return r;
}

t_run_t t_engine_run(const t_engine_opts_t *o)
{
	if (o->child_ms > 0)
		return run_in_child(o);
	t_run_t r;
	run_here(o, &r);
	return r;
}

int t_push_all(spate_engine_t *e, int32_t part, const spate_push_record_t *recs, size_t n)
{
	for (size_t off = 0; off < n;) {
		if (this_during && atomic_load(&this_during->d.ended))
			return SPATE_ERR_STATE;
		int k = spate_push(e, part, recs + off, n - off);
		if (k < 0)
			return k;
		if (k == 0)
			t_sleep_ms(T_PUSH_RETRY_MS);
		off += (size_t)k;
	}
	return 0;
}

static int first_snap_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	t_first_snap_t *f = opaque;
	if (!atomic_exchange(&f->called, true))
		f->snap = t_read_file(f->path, &f->snap_len);
	return f->inner ? f->inner->handle(f->inner->opaque, ctx, b) : SPATE_HANDLER_OK;
}

spate_handler_t t_first_snap_handler(t_first_snap_t *f)
{
	return (spate_handler_t){.version = SPATE_HANDLER_VERSION,
	                         .name = "first-snap",
	                         .handle = first_snap_handle,
	                         .opaque = f};
}
