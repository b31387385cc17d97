/* test_engine_push.c - end-to-end through the public API with the push source:
 * every record handled exactly once, per-key order with 2+ workers and
 * parallelization.factor 8, checkpoints resume after a restart, stop before start. */
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/util.h"

enum { KEYS = 97, PARTS = 3 };

typedef struct state {
	_Atomic uint32_t *seen;   /* per record id (value holds it) */
	int64_t last[PARTS][KEYS]; /* last position seen per partition and key */
	_Atomic int order_violations;
	_Atomic uint64_t handled;
	_Atomic int inits, finis;
	size_t n;
} state_t;

static int h_init(void *opaque, int worker_id, void **ctx)
{
	state_t *s = opaque;
	atomic_fetch_add(&s->inits, 1);
	*ctx = (void *)(intptr_t)(worker_id + 1);
	return SPATE_OK;
}

static void h_fini(void *opaque, void *ctx)
{
	state_t *s = opaque;
	cr_assert_neq((intptr_t)ctx, 0);
	atomic_fetch_add(&s->finis, 1);
}

static int h_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	state_t *s = opaque;
	cr_assert_neq((intptr_t)ctx, 0, "worker context not passed");
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		cr_assert_eq(r[i]->version, SPATE_RECORD_VERSION);
		unsigned id, key;
		cr_assert_eq(sscanf(r[i]->value, "%u", &id), 1);
		cr_assert_eq(sscanf(r[i]->key, "k%u", &key), 1);
		atomic_fetch_add(&s->seen[id], 1);
		int p = r[i]->partition->partition;
		int64_t pos = (int64_t)r[i]->position.w[2];
		if (pos <= s->last[p][key])
			atomic_fetch_add(&s->order_violations, 1);
		s->last[p][key] = pos;
		/* ids are stable: source/topic/partition/position */
		char idbuf[128], want[128];
		spate_record_id(r[i], idbuf, sizeof(idbuf));
		snprintf(want, sizeof(want), "push/push/%d/%lld", p, (long long)pos);
		cr_assert_str_eq(idbuf, want);
	}
	atomic_fetch_add(&s->handled, spate_batch_count(b));
	return SPATE_HANDLER_OK;
}

typedef struct pusher {
	spate_engine_t *e;
	size_t n;
	size_t start_id;
} pusher_t;

static void *push_thread(void *arg)
{
	pusher_t *p = arg;
	enum { CHUNK = 257 };
	char vals[CHUNK][16], keys[CHUNK][16];
	spate_push_record_t recs[CHUNK];
	size_t id = p->start_id, end = p->start_id + p->n;
	while (id < end) {
		int part = (int)((id / CHUNK) % PARTS);
		size_t k = 0;
		for (; k < CHUNK && id + k < end; k++) {
			int vl = snprintf(vals[k], sizeof(vals[k]), "%zu", id + k);
			int kl = snprintf(keys[k], sizeof(keys[k]), "k%zu", (id + k) % KEYS);
			recs[k] = (spate_push_record_t){.key = keys[k], .key_len = (size_t)kl + 1,
			                                .value = vals[k], .value_len = (size_t)vl + 1};
		}
		size_t off = 0;
		while (off < k) {
			int n = spate_push(p->e, part, recs + off, k - off);
			cr_assert_geq(n, 0, "push: %s", spate_err2str(n));
			off += (size_t)n;
		}
		id += k;
	}
	spate_push_close(p->e);
	return NULL;
}

static spate_engine_t *make(state_t *s, const char *store, int workers, int factor)
{
	char err[512], v[32];
	spate_conf_t *c = spate_conf_new();
	cr_assert_eq(spate_conf_set(c, "source", "push", err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	snprintf(v, sizeof(v), "%d", PARTS);
	cr_assert_eq(spate_conf_set(c, "push.partitions", v, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	snprintf(v, sizeof(v), "%d", workers);
	cr_assert_eq(spate_conf_set(c, "max.concurrency", v, err, sizeof(err)), SPATE_CONF_OK);
	/* a fixed pool: per-key order must hold with every worker taking lanes at once */
	cr_assert_eq(spate_conf_set(c, "min.concurrency", v, err, sizeof(err)), SPATE_CONF_OK);
	snprintf(v, sizeof(v), "%d", factor);
	cr_assert_eq(spate_conf_set(c, "parallelization.factor", v, err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "batch.size", "50", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "stop.at.end", "true", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "max.inflight.bytes", "1M", err, sizeof(err)), SPATE_CONF_OK);
	if (store)
		cr_assert_eq(spate_conf_set(c, "store", store, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "test", .init = h_init,
	                     .handle = h_handle, .fini = h_fini, .opaque = s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	return e;
}

static void reset_state(state_t *s, size_t n)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->seen = calloc(n, sizeof(*s->seen));
	for (int p = 0; p < PARTS; p++)
		for (int k = 0; k < KEYS; k++)
			s->last[p][k] = -1;
}

static void run_once(state_t *s, spate_engine_t *e, size_t start, size_t n)
{
	pusher_t p = {e, n, start};
	pthread_t th;
	pthread_create(&th, NULL, push_thread, &p);
	char err[512];
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	pthread_join(th, NULL);
}

Test(engine_push, every_record_exactly_once_in_key_order)
{
	state_t s;
	size_t n = 200000;
	reset_state(&s, n);
	spate_engine_t *e = make(&s, NULL, 3, 8);
	run_once(&s, e, 0, n);
	spate_summary_t sum;
	spate_engine_summary(e, &sum);
	spate_engine_destroy(e);
	cr_assert_eq(sum.records, n);
	cr_assert_eq(atomic_load(&s.handled), n);
	cr_assert_eq(sum.failed, 0);
	cr_assert_eq(sum.dropped, 0);
	cr_assert_gt(sum.batches, n / 50 - 1);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&s.seen[i]), 1, "record %zu handled %u times", i, atomic_load(&s.seen[i]));
	cr_assert_eq(atomic_load(&s.order_violations), 0);
	cr_assert_eq(atomic_load(&s.inits), 3);
	cr_assert_eq(atomic_load(&s.finis), 3);
	free(s.seen);
}

Test(engine_push, checkpoints_resume_after_restart)
{
	char dir[64], store[128];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "file:%s/ckpt", dir);
	state_t s;
	size_t n = 30000;
	reset_state(&s, 2 * n);
	spate_engine_t *e = make(&s, store, 2, 4);
	run_once(&s, e, 0, n);
	spate_engine_destroy(e);
	/* second run: push continues after the checkpoint; positions continue too */
	e = make(&s, store, 2, 4);
	run_once(&s, e, n, n);
	spate_summary_t sum;
	spate_engine_summary(e, &sum);
	spate_engine_destroy(e);
	cr_assert_eq(sum.records, n);
	for (size_t i = 0; i < 2 * n; i++)
		cr_assert_eq(atomic_load(&s.seen[i]), 1, "record %zu handled %u times", i, atomic_load(&s.seen[i]));
	/* the per-key order check spans both runs: positions kept increasing */
	cr_assert_eq(atomic_load(&s.order_violations), 0);
	free(s.seen);
	t_rmrf(dir);
}

Test(engine_push, stop_then_run_returns_after_drain)
{
	state_t s;
	reset_state(&s, 10);
	spate_engine_t *e = make(&s, NULL, 1, 1);
	spate_engine_stop(e);
	char err[256];
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(spate_push(e, 0, NULL, 0), 0);
	spate_engine_destroy(e);
	free(s.seen);
}

Test(engine_push, a_record_larger_than_the_inflight_bound_is_an_error_naming_it)
{
	state_t s;
	reset_state(&s, 10);
	spate_engine_t *e = make(&s, NULL, 1, 1); /* max.inflight.bytes=1M */
	size_t big = 2 << 20;
	char *v = calloc(1, big);
	snprintf(v, 16, "0");
	spate_push_record_t r = {.key = "k0", .key_len = 3, .value = v, .value_len = big};
	cr_assert_eq(spate_push(e, 1, &r, 1), 1);
	spate_push_close(e);
	char err[512];
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_ERR_INVALID, "%s", err);
	cr_assert(strstr(err, "max.inflight.bytes") && strstr(err, "push/push/1 position 0"), "%s", err);
	spate_engine_destroy(e);
	free(v);
	free(s.seen);
}

/* A push source that the application closed is finite: the run ends once everything
 * pushed is DONE, without stop.at.end (defect 8). spate_engine_run runs in a child with
 * a hard limit, so a run that keeps waiting fails the test instead of hanging it. */
Test(engine_push, a_closed_push_source_ends_the_run_without_stop_at_end, .timeout = 60)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		state_t s;
		reset_state(&s, 1000);
		char err[512];
		spate_conf_t *c = spate_conf_new();
		if (spate_conf_set(c, "source", "push", err, sizeof(err)) ||
		    spate_conf_set(c, "push.partitions", "3", err, sizeof(err)))
			_exit(10);
		/* the suite's handler, with its init (h_handle checks the worker context) */
		spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "t", .init = h_init, .handle = h_handle,
		                     .opaque = &s};
		spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
		if (!e || spate_engine_start(e, err, sizeof(err)))
			_exit(11);
		pusher_t p = {e, 1000, 0};
		pthread_t th;
		pthread_create(&th, NULL, push_thread, &p);
		int rc = spate_engine_run(e, err, sizeof(err));
		pthread_join(th, NULL);
		spate_summary_t sum;
		spate_engine_summary(e, &sum);
		spate_engine_destroy(e);
		_exit(rc == SPATE_OK && sum.records == 1000 ? 0 : 12);
	}
	int status = -1;
	cr_assert_eq(t_wait_exit(pid, 30000, &status), 0, "the run did not end after spate_push_close");
	cr_assert_eq(status, 0, "status %d", status);
}
