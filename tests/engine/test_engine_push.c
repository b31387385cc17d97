/* test_engine_push.c - end-to-end through the public API with the push source:
 * every record handled exactly once, per-key order with 2+ workers and
 * parallelization.factor 8, checkpoints resume after a restart, stop before start. */
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/engine.h"
#include "tests/common/util.h"

enum { KEYS = 97, PARTS = 3 };

typedef struct state {
	_Atomic uint32_t *seen;    /* per record id (value holds it) */
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
	t_expect((intptr_t)ctx != 0);
	atomic_fetch_add(&s->finis, 1);
}

static int h_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	state_t *s = opaque;
	t_expect((intptr_t)ctx != 0, "worker context not passed");
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		t_expect(r[i]->version == SPATE_RECORD_VERSION);
		unsigned id, key;
		if (!t_expect(sscanf(r[i]->value, "%u", &id) == 1) ||
		    !t_expect(sscanf(r[i]->key, "k%u", &key) == 1))
			continue;
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
		t_expect(!strcmp(idbuf, want), "record id %s, want %s", idbuf, want);
	}
	atomic_fetch_add(&s->handled, spate_batch_count(b));
	return SPATE_HANDLER_OK;
}

/* What a run pushes: n records with ids from start_id. */
typedef struct pusher {
	size_t n;
	size_t start_id;
} pusher_t;

/* During the run: the pusher's records in runs of 257 per partition, then push_close. */
static void push_ids(t_during_t *d)
{
	const pusher_t *p = d->arg;
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
			recs[k] = (spate_push_record_t){.key = keys[k],
			                                .key_len = (size_t)kl + 1,
			                                .value = vals[k],
			                                .value_len = (size_t)vl + 1};
		}
		int rc = t_push_all(d->e, part, recs, k);
		t_require(rc == 0, "push: %s", spate_err2str(rc));
		id += k;
	}
	spate_push_close(d->e);
}

/* The suite's engine over the push source, with the suite's handler on s and what o adds
 * (a pusher, a callback before the run); a store when not NULL. */
static t_run_t run(state_t *s, const char *store, int workers, int factor, t_engine_opts_t o)
{
	char parts[16], w[16], f[16];
	snprintf(parts, sizeof(parts), "%d", PARTS);
	snprintf(w, sizeof(w), "%d", workers);
	snprintf(f, sizeof(f), "%d", factor);
	/* min.concurrency: a fixed pool, so per-key order must hold with every worker taking
	 * lanes at once */
	const char *kv[] = {"source",
	                    "push",
	                    "push.partitions",
	                    parts,
	                    "max.concurrency",
	                    w,
	                    "min.concurrency",
	                    w,
	                    "parallelization.factor",
	                    f,
	                    "batch.size",
	                    "50",
	                    "stop.at.end",
	                    "true",
	                    "max.inflight.bytes",
	                    "1M",
	                    store ? "store" : NULL,
	                    store,
	                    NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION,
	                     .name = "test",
	                     .init = h_init,
	                     .handle = h_handle,
	                     .fini = h_fini,
	                     .opaque = s};
	o.conf = kv;
	o.handler = &h;
	return t_engine_run(&o);
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

Test(engine_push, every_record_exactly_once_in_key_order)
{
	state_t s;
	size_t n = 200000;
	reset_state(&s, n);
	pusher_t p = {n, 0};
	t_run_t r = run(&s, NULL, 3, 8, (t_engine_opts_t){.during = push_ids, .arg = &p});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, n);
	cr_assert_eq(atomic_load(&s.handled), n);
	cr_assert_eq(sum.failed, 0);
	cr_assert_eq(sum.dropped, 0);
	cr_assert_gt(sum.batches, n / 50 - 1);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&s.seen[i]), 1, "record %zu handled %u times", i,
		             atomic_load(&s.seen[i]));
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
	pusher_t p1 = {n, 0}, p2 = {n, n};
	t_run_t r = run(&s, store, 2, 4, (t_engine_opts_t){.during = push_ids, .arg = &p1});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	/* second run: push continues after the checkpoint; positions continue too */
	r = run(&s, store, 2, 4, (t_engine_opts_t){.during = push_ids, .arg = &p2});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, n);
	for (size_t i = 0; i < 2 * n; i++)
		cr_assert_eq(atomic_load(&s.seen[i]), 1, "record %zu handled %u times", i,
		             atomic_load(&s.seen[i]));
	/* the per-key order check spans both runs: positions kept increasing */
	cr_assert_eq(atomic_load(&s.order_violations), 0);
	free(s.seen);
	t_rmrf(dir);
}

static void stop_before_run(spate_engine_t *e, void *arg)
{
	spate_engine_stop(e);
}

Test(engine_push, stop_then_run_returns)
{
	state_t s;
	reset_state(&s, 10);
	t_run_t r = run(&s, NULL, 1, 1, (t_engine_opts_t){.started = stop_before_run, .keep = true});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(spate_push(r.e, 0, NULL, 0), 0);
	spate_engine_destroy(r.e);
	free(s.seen);
}

/* A handler call held until the test lets it go, and what it saw. */
typedef struct held {
	t_during_t *d;
	_Atomic bool in_call, release;
	_Atomic int calls;
	_Atomic uint64_t handled;
	_Atomic bool ended_before_done; /* the run had returned when the call finished */
} held_t;

static int held_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	held_t *h = opaque;
	atomic_fetch_add(&h->calls, 1);
	atomic_store(&h->in_call, true);
	while (!atomic_load(&h->release))
		t_sleep_ms(1);
	atomic_fetch_add(&h->handled, spate_batch_count(b));
	if (h->d && atomic_load(&h->d->ended))
		atomic_store(&h->ended_before_done, true);
	return SPATE_HANDLER_OK;
}

/* While it runs: 10 records pushed, then once their call is running, a stop; the call is
 * let go a moment later (a window for a run that returned without it to show). */
static void push_then_stop_mid_call(t_during_t *d)
{
	held_t *h = d->arg;
	h->d = d;
	spate_push_record_t recs[10];
	char vals[10][8];
	for (int i = 0; i < 10; i++) {
		snprintf(vals[i], sizeof(vals[i]), "%d", i);
		recs[i] = (spate_push_record_t){
		    .key = "k", .key_len = 1, .value = vals[i], .value_len = strlen(vals[i])};
	}
	t_require(t_push_all(d->e, 0, recs, 10) == 0);
	for (int64_t until = t_now_ms() + 60000; !atomic_load(&h->in_call) && t_now_ms() < until;)
		t_sleep_ms(1);
	t_require(atomic_load(&h->in_call), "the handler was not called in 60 s");
	spate_engine_stop(d->e);
	t_sleep_ms(100);
	atomic_store(&h->release, true);
}

/* A stop with a handler call running: the run returns only after that call finished, and
 * starts none after it (guarantee 8). */
Test(engine_push, stop_returns_after_the_running_call)
{
	const char *kv[] = {"source",
	                    "push",
	                    "push.partitions",
	                    "1",
	                    "max.concurrency",
	                    "1",
	                    "batch.size",
	                    "100",
	                    "batch.window.ms",
	                    "0",
	                    NULL};
	held_t h = {0};
	spate_handler_t hd = {
	    .version = SPATE_HANDLER_VERSION, .name = "held", .handle = held_handle, .opaque = &h};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = kv, .handler = &hd, .during = push_then_stop_mid_call, .arg = &h});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert(!atomic_load(&h.ended_before_done), "the run returned before the running call finished");
	cr_assert_geq(atomic_load(&h.calls), 1);
	cr_assert_eq(r.sum.records, atomic_load(&h.handled),
	             "the summary counts %llu, the handler finished %llu", (unsigned long long)r.sum.records,
	             (unsigned long long)atomic_load(&h.handled));
	cr_assert_gt(atomic_load(&h.handled), 0);
}

static void push_one_and_close(spate_engine_t *e, void *arg)
{
	t_require(spate_push(e, 1, arg, 1) == 1);
	spate_push_close(e);
}

Test(engine_push, a_record_larger_than_the_inflight_bound_is_an_error_naming_it)
{
	state_t s;
	reset_state(&s, 10);
	size_t big = 2 << 20;
	char *v = calloc(1, big);
	snprintf(v, 16, "0");
	spate_push_record_t rec = {.key = "k0", .key_len = 3, .value = v, .value_len = big};
	/* max.inflight.bytes=1M */
	t_run_t r = run(&s, NULL, 1, 1, (t_engine_opts_t){.started = push_one_and_close, .arg = &rec});
	cr_assert(r.started, "%s", r.err);
	cr_assert_eq(r.rc, SPATE_ERR_INVALID, "%s", r.err);
	cr_assert(strstr(r.err, "max.inflight.bytes") && strstr(r.err, "push/push/1 position 0"), "%s",
	          r.err);
	free(v);
	free(s.seen);
}

/* A push source that the application closed is finite: the run ends once everything
 * pushed is DONE, without stop.at.end (defect 8). spate_engine_run runs in a child with
 * a hard limit, so a run that keeps waiting fails the test instead of hanging it. */
Test(engine_push, a_closed_push_source_ends_the_run_without_stop_at_end, .timeout = 60)
{
	state_t s;
	reset_state(&s, 1000);
	const char *kv[] = {"source", "push", "push.partitions", "3", NULL};
	/* the suite's handler, with its init (h_handle checks the worker context) */
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "t", .init = h_init, .handle = h_handle, .opaque = &s};
	pusher_t p = {1000, 0};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = kv, .handler = &h, .during = push_ids, .arg = &p, .child_ms = 30000});
	cr_assert(!r.hung, "the run did not end after spate_push_close");
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(r.sum.records, 1000, "%llu records", (unsigned long long)r.sum.records);
	free(s.seen);
}
