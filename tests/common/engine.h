/* engine.h - the tests' one engine runner, and failures that are safe off the main thread.
 *
 * t_engine_run() is what a test that drives a whole pipeline through the public API
 * needs: a conf from key, value pairs (a bad key or value fails the test, naming it),
 * spate_engine_new with an optional handler, an optional source override
 * (sp_engine_set_source_ops), start, and spate_engine_run on the calling thread while an
 * optional "during" callback runs on a second thread (pushing records, sampling stats,
 * stopping); then the summary, and destroy. It hands back the run's result code and the
 * summary; the test asserts on them. With child_ms the same run happens in a forked child
 * with a hard limit, so a run that never returns fails the test instead of hanging it.
 *
 * Criterion's asserts belong to the test's main thread: a failed one jumps back to where
 * the test started, which another thread cannot do. Code that runs elsewhere checks with
 * t_require (the during thread: it stops the engine and ends that thread) or t_expect
 * (any thread, a handler's too: noted, and the code goes on); t_engine_run then fails the
 * test with the first message, on the main thread, after joining the threads. On the main
 * thread t_require is an ordinary failed assertion.
 */
#ifndef SPATE_TESTS_ENGINE_H
#define SPATE_TESTS_ENGINE_H

#include <spate/spate.h>

#include "engine/spi/sp_spi.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a during callback gets: the running engine and the test's argument. */
typedef struct t_during {
	spate_engine_t *e;
	void *arg;         /* t_engine_opts_t.arg */
	atomic_bool ended; /* spate_engine_run has returned (a sampler stops then) */
} t_during_t;

typedef struct t_engine_opts {
	const char *const *conf; /* key, value pairs, NULL-terminated */
	const char *const
	    *conf_more; /* more pairs, set after conf (a test's own after its suite's); may be NULL */
	const spate_handler_t *handler; /* NULL: the conf's handler key */
	const sp_source_ops_t *source;  /* NULL: the conf's source key; else sp_engine_set_source_ops */
	/* On the main thread, after a successful start and before the run (a push before
	 * the run, a stop before it, a state that needs the engine). */
	void (*started)(spate_engine_t *e, void *arg);
	/* On a second thread while spate_engine_run runs; the runner joins it after the run
	 * returned, so a callback that ends the run itself (push_close, stop) or waits for
	 * d->ended is needed for a run without an end of its own. */
	void (*during)(t_during_t *d);
	void *arg;    /* for started and during */
	bool keep;    /* leave the engine to the caller (t_run_t.e), who destroys it */
	int child_ms; /* > 0: run in a forked child, killed after child_ms (then t_run_t.hung) */
} t_engine_opts_t;

typedef struct t_run {
	int rc;              /* spate_engine_start's error, else spate_engine_run's result */
	char err[1024];      /* its message */
	bool started;        /* spate_engine_start succeeded */
	spate_summary_t sum; /* after the run (zeros when the start failed) */
	spate_engine_t *e;   /* with keep: the engine, to destroy; else NULL */
	bool hung;           /* child_ms: the child did not end in time and was killed */
} t_run_t;

/* A conf from NULL-terminated key, value pairs; a pair spate_conf_set refuses fails the
 * test, naming the key, the value and why. kv may be NULL (an empty conf). */
spate_conf_t *t_conf(const char *const *kv);
/* Set more pairs on c, as t_conf does. */
void t_conf_set(spate_conf_t *c, const char *const *kv);

/* Run an engine as o says (see the top of this file). Fails the test on the main thread
 * when the conf is refused, spate_engine_new fails, or a t_require / t_expect failed on
 * any thread meanwhile; a start or run error is only returned (rc, err). */
t_run_t t_engine_run(const t_engine_opts_t *o);

/* Push n records into partition part, retrying what the push source did not take yet
 * (a full stage takes fewer, or none, until the engine polls it) until every one is
 * taken. Returns 0, spate_push's negative error, or SPATE_ERR_STATE when called from a
 * during thread whose run has returned (nothing would take the rest). Any thread. */
int t_push_all(spate_engine_t *e, int32_t part, const spate_push_record_t *recs, size_t n);

/* A handler that copies a file (a file store's) at its first call, then runs inner (NULL:
 * every batch OK): what the guarantee 6 tests compare with, the store as it was before any
 * record reached a handler. t_first_snap_handler(f) is the spate_handler_t of f. */
typedef struct t_first_snap {
	const char *path;               /* the file to copy */
	const spate_handler_t *inner;   /* run for every batch; NULL: SPATE_HANDLER_OK */
	atomic_bool called;
	char *snap; /* the file at the first call (NULL: none); the caller frees it */
	size_t snap_len;
} t_first_snap_t;
spate_handler_t t_first_snap_handler(t_first_snap_t *f);

/* t_require(cond, "format", ...): when cond is false, fail. On the main thread: a failed
 * Criterion assertion. On a during thread: the message is noted, the engine is stopped
 * and the thread ends (pthread_exit); t_engine_run fails the test after joining it. On
 * any other thread (a worker running a handler: use t_expect there) the process aborts
 * with the message. The message is optional; the format must be a string literal. */
#define t_require(cond, ...) ((cond) ? (void)0 : t_fail_at(__FILE__, __LINE__, #cond, "x" __VA_ARGS__))
/* t_expect(cond, "format", ...): when cond is false, note the failure and go on; true
 * when cond held. Any thread; t_engine_run fails the test with the first one noted. */
#define t_expect(cond, ...) ((cond) ? true : t_expect_at(__FILE__, __LINE__, #cond, "x" __VA_ARGS__))

/* What the two macros call (fmt starts with a character that is skipped, so that an
 * empty message is a valid format). */
_Noreturn void t_fail_at(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool t_expect_at(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
