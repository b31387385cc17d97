/* two_engines.c - two engines in one process, for the ThreadSanitizer layer (scripts/tsan.sh).
 *
 * Criterion cannot run under ThreadSanitizer (its arena fails to map, Criterion #274), so
 * this is a plain program: it checks its own results and exits 1 on a wrong count, 0
 * when every check held. Usage: two_engines DIR (DIR: an empty directory for the DLQ).
 *
 * What runs at once, each engine on its own thread (spate_engine_start and _run):
 *  - engine A: source=push, 4 partitions, parallelization.factor 2, three pusher threads,
 *    a handler that fails poison records as items (report.item.failures, two retries,
 *    short backoff, no DLQ: they are dropped and counted), min.concurrency 0 with a short
 *    scale.down.idle.ms (workers stop and start again, each running the handler's init and
 *    fini), stop.at.end after spate_push_close: it ends by itself once everything is DONE;
 *  - engine B: source=push, 2 partitions, two pusher threads that push until the run is
 *    over, a handler that fails a whole batch holding a poison record (bisect.on.error,
 *    one retry, a DLQ in the embedded log), stopped with spate_engine_stop from another
 *    thread once it has DONE STOP_AFTER records;
 *  - a thread that reads spate_engine_stats and spate_engine_summary of both engines in
 *    a loop while they run.
 * Then engine C, whose handler's init fails on worker 1: its run must end with
 * SPATE_ERR_HANDLER naming worker 1.
 *
 * Lanes are the unit of exclusion: the handler keeps a plain (non-atomic) count per
 * partition and key, which only the worker holding that key's lane touches. Its total
 * must equal an atomic count of the same calls, and ThreadSanitizer reports any two
 * workers that touch one lane without the engine's hand-off between them.
 */
#include <spate/spate.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Record ids per pusher of engine A, and pushers per engine. */
enum { A_PER_PUSHER = 3000, A_PUSHERS = 3, A_PARTS = 4, B_PUSHERS = 2, B_PARTS = 2 };
/* Every POISON_EVERY-th record is poison. */
enum { POISON_EVERY = 50 };
/* Keys per partition (records of one key share a lane). */
enum { KEYS = 31 };
/* Engine B is stopped once this many of its records are DONE. */
enum { STOP_AFTER = 2000 };
/* Records per spate_push call. */
enum { PUSH_BURST = 64 };
/* Most record ids engine B may see (its pushers stop at this many each). */
enum { B_MAX_PER_PUSHER = 1 << 20 };

static _Atomic int failures; /* checks that failed (any thread) */

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "two_engines: FAILED: " __VA_ARGS__);                                \
			fputc('\n', stderr);                                                                 \
			failures++;                                                                          \
		}                                                                                            \
	} while (0)

typedef struct hstate {
	const char *name;
	bool whole_batch;       /* fail the whole batch (B) instead of items (A) */
	int fail_init_worker;   /* init fails on this worker id (-1: never) */
	size_t ids;             /* size of seen */
	_Atomic uint32_t *seen; /* per record id: successful handler calls */
	_Atomic uint64_t calls; /* records handed to the handler, in all */
	_Atomic uint64_t ok, poison_failed, bad_ctx;
	_Atomic int inits, finis;
	uint64_t touch[8][KEYS]; /* plain: only the lane's worker touches [partition][key] */
} hstate_t;

typedef struct wctx {
	int worker_id;
	uint64_t batches; /* this worker's own: no other thread may touch it */
} wctx_t;

static int h_init(void *opaque, int worker_id, void **ctx)
{
	hstate_t *s = opaque;
	if (worker_id == s->fail_init_worker)
		return SPATE_ERR_INVALID;
	wctx_t *w = calloc(1, sizeof(*w));
	if (!w)
		return SPATE_ERR_NOMEM;
	w->worker_id = worker_id;
	*ctx = w;
	atomic_fetch_add(&s->inits, 1);
	return SPATE_OK;
}

static void h_fini(void *opaque, void *ctx)
{
	hstate_t *s = opaque;
	free(ctx);
	atomic_fetch_add(&s->finis, 1);
}

/* The record's id and whether it is poison, from its value "ID" or "ID poison". */
static bool parse(const spate_record_t *r, size_t *id, bool *poison)
{
	char buf[48];
	size_t n = r->value_len < sizeof(buf) - 1 ? r->value_len : sizeof(buf) - 1;
	memcpy(buf, r->value, n);
	buf[n] = 0;
	char *end;
	*id = strtoul(buf, &end, 10);
	*poison = strstr(buf, "poison") != NULL;
	return end != buf;
}

static int h_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	hstate_t *s = opaque;
	wctx_t *w = ctx;
	if (!w)
		atomic_fetch_add(&s->bad_ctx, 1);
	else
		w->batches++;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *r = spate_batch_records(b);
	bool any_poison = false;
	for (size_t i = 0; i < n; i++) {
		size_t id;
		bool poison;
		if (!parse(r[i], &id, &poison) || id >= s->ids) {
			atomic_fetch_add(&s->bad_ctx, 1);
			continue;
		}
		unsigned key = (unsigned)(id % KEYS);
		int p = r[i]->partition->partition;
		s->touch[p & 7][key]++;
		if (poison) {
			any_poison = true;
			if (!s->whole_batch)
				spate_batch_fail_item(b, i, "poison");
		}
	}
	atomic_fetch_add(&s->calls, n);
	if (s->whole_batch && any_poison) {
		spate_batch_set_error(b, "a poison record in the batch");
		atomic_fetch_add(&s->poison_failed, 1);
		return SPATE_HANDLER_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		size_t id;
		bool poison;
		if (parse(r[i], &id, &poison) && id < s->ids && !poison)
			atomic_fetch_add(&s->seen[id], 1);
		else if (poison)
			atomic_fetch_add(&s->poison_failed, 1);
	}
	atomic_fetch_add(&s->ok, n);
	return any_poison ? SPATE_HANDLER_ITEM_FAILURES : SPATE_HANDLER_OK;
}

static spate_conf_t *conf_of(const char *const *kv)
{
	spate_conf_t *c = spate_conf_new();
	if (!c)
		return NULL;
	for (; kv[0]; kv += 2) {
		char err[512];
		if (spate_conf_set(c, kv[0], kv[1], err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "two_engines: %s=%s: %s\n", kv[0], kv[1], err);
			spate_conf_destroy(c);
			return NULL;
		}
	}
	return c;
}

/* One engine and the thread that runs it. */
typedef struct run {
	const char *name;
	spate_engine_t *e;
	pthread_t th;
	_Atomic int started; /* 0 not yet, 1 started, -1 start failed */
	_Atomic bool over;   /* spate_engine_run returned */
	int rc;
	char err[512];
} run_t;

static void *engine_main(void *arg)
{
	run_t *r = arg;
	r->rc = spate_engine_start(r->e, r->err, sizeof(r->err));
	atomic_store(&r->started, r->rc == SPATE_OK ? 1 : -1);
	if (r->rc == SPATE_OK)
		r->rc = spate_engine_run(r->e, r->err, sizeof(r->err));
	atomic_store(&r->over, true);
	return NULL;
}

static bool wait_started(run_t *r)
{
	while (!atomic_load(&r->started))
		sched_yield();
	return atomic_load(&r->started) > 0;
}

typedef struct pusher {
	run_t *run;
	int index, parts;
	size_t first_id, count; /* ids first_id .. first_id+count-1 */
	bool until_over;        /* push until the run is over (at most count) */
	size_t pushed, poison;
} pusher_t;

static void *push_main(void *arg)
{
	pusher_t *p = arg;
	if (!wait_started(p->run))
		return NULL;
	char vals[PUSH_BURST][32], keys[PUSH_BURST][16];
	spate_push_record_t recs[PUSH_BURST];
	size_t id = p->first_id, end = p->first_id + p->count;
	while (id < end && !(p->until_over && atomic_load(&p->run->over))) {
		size_t k = 0;
		for (; k < PUSH_BURST && id + k < end; k++) {
			size_t x = id + k;
			bool poison = x % POISON_EVERY == POISON_EVERY - 1;
			int vl = snprintf(vals[k], sizeof(vals[k]), "%zu%s", x, poison ? " poison" : "");
			int kl = snprintf(keys[k], sizeof(keys[k]), "k%zu", x % KEYS);
			recs[k] = (spate_push_record_t){
			    .key = keys[k], .key_len = (size_t)kl, .value = vals[k], .value_len = (size_t)vl};
		}
		/* one partition per key, so a key's records keep one lane */
		size_t off = 0;
		while (off < k) {
			int part = (int)((id + off) % KEYS % (size_t)p->parts);
			/* the run of records with this partition starting at off */
			size_t len = 1;
			while (off + len < k && (int)((id + off + len) % KEYS % (size_t)p->parts) == part)
				len++;
			size_t done = 0;
			while (done < len) {
				int n = spate_push(p->run->e, part, recs + off + done, len - done);
				if (n < 0) {
					fprintf(stderr, "two_engines: %s: push: %s\n", p->run->name,
					        spate_err2str(n));
					failures++;
					return NULL;
				}
				if (n == 0) {
					if (p->until_over && atomic_load(&p->run->over))
						goto out;
					usleep(200); /* the stage is full: the engine takes it */
				}
				for (int j = 0; j < n; j++)
					if (strstr(recs[off + done + (size_t)j].value, "poison"))
						p->poison++;
				done += (size_t)n;
				p->pushed += (size_t)n;
			}
			off += len;
		}
		id += k;
	}
out:
	return NULL;
}

/* Reads both engines' gauges and counters while they run. */
typedef struct watcher {
	run_t *runs[2];
	uint64_t reads;
	bool regressed;
} watcher_t;

static void *watch_main(void *arg)
{
	watcher_t *w = arg;
	uint64_t last[2] = {0, 0};
	for (int i = 0; i < 2; i++)
		if (!wait_started(w->runs[i]))
			return NULL;
	while (!atomic_load(&w->runs[0]->over) || !atomic_load(&w->runs[1]->over)) {
		for (int i = 0; i < 2; i++) {
			spate_stats_t st;
			spate_summary_t su;
			spate_engine_stats(w->runs[i]->e, &st);
			spate_engine_summary(w->runs[i]->e, &su);
			if (st.records < last[i])
				w->regressed = true;
			last[i] = st.records;
			w->reads++;
		}
		usleep(500);
	}
	return NULL;
}

/* B is stopped from this thread once it has DONE STOP_AFTER records. */
static void *stop_main(void *arg)
{
	run_t *r = arg;
	if (!wait_started(r))
		return NULL;
	for (;;) {
		spate_stats_t st;
		spate_engine_stats(r->e, &st);
		if (st.records >= STOP_AFTER || atomic_load(&r->over))
			break;
		usleep(1000);
	}
	spate_engine_stop(r->e);
	return NULL;
}

static uint64_t touch_sum(const hstate_t *s)
{
	uint64_t n = 0;
	for (int p = 0; p < 8; p++)
		for (int k = 0; k < KEYS; k++)
			n += s->touch[p][k];
	return n;
}

static hstate_t *hstate_new(const char *name, size_t ids, bool whole, int fail_init)
{
	hstate_t *s = calloc(1, sizeof(*s));
	if (!s || !(s->seen = calloc(ids, sizeof(*s->seen)))) {
		fprintf(stderr, "two_engines: out of memory\n");
		exit(1);
	}
	s->name = name;
	s->ids = ids;
	s->whole_batch = whole;
	s->fail_init_worker = fail_init;
	return s;
}

static spate_engine_t *engine_new(const char *const *kv, hstate_t *s)
{
	spate_conf_t *c = conf_of(kv);
	if (!c)
		exit(1);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION,
	                     .name = s->name,
	                     .init = h_init,
	                     .handle = h_handle,
	                     .fini = h_fini,
	                     .opaque = s};
	char err[512];
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	if (!e) {
		fprintf(stderr, "two_engines: %s: %s\n", s->name, err);
		exit(1);
	}
	return e;
}

static void check_a(run_t *r, hstate_t *s, pusher_t *ps)
{
	size_t pushed = 0, poison = 0;
	for (int i = 0; i < A_PUSHERS; i++) {
		pushed += ps[i].pushed;
		poison += ps[i].poison;
	}
	spate_summary_t su;
	spate_engine_summary(r->e, &su);
	printf("A: pushed %zu (poison %zu); records %" PRIu64 " dropped %" PRIu64 " failed %" PRIu64
	       " retries %" PRIu64 " workers %d..%d inits %d\n",
	       pushed, poison, su.records, su.dropped, su.failed, su.retries, su.workers_min, su.workers_max,
	       atomic_load(&s->inits));
	CHECK(r->rc == SPATE_OK, "A: run: %s (%s)", r->err, spate_err2name(r->rc));
	CHECK(pushed == (size_t)A_PUSHERS * A_PER_PUSHER, "A: pushed %zu, want %d", pushed,
	      A_PUSHERS * A_PER_PUSHER);
	CHECK(su.records == pushed, "A: records %" PRIu64 ", want %zu", su.records, pushed);
	CHECK(su.dropped == poison, "A: dropped %" PRIu64 ", want the %zu poison records", su.dropped,
	      poison);
	CHECK(su.dlq == 0, "A: dlq %" PRIu64 " without a DLQ", su.dlq);
	/* each poison record fails at least once per attempt: the first and max.retry.attempts
	 * more (more when it sat behind another failed item: items behind the first are
	 * charged too) */
	CHECK(su.failed >= 3 * poison, "A: failed %" PRIu64 ", want at least 3 x %zu", su.failed, poison);
	size_t missing = 0;
	for (size_t id = 0; id < s->ids; id++)
		if (id % POISON_EVERY != POISON_EVERY - 1 && !atomic_load(&s->seen[id]))
			missing++;
	CHECK(missing == 0, "A: %zu records never handled", missing);
	CHECK(touch_sum(s) == atomic_load(&s->calls), "A: per-lane counts %" PRIu64 " != calls %" PRIu64,
	      touch_sum(s), (uint64_t)atomic_load(&s->calls));
}

static void check_b(run_t *r, hstate_t *s, pusher_t *ps)
{
	size_t pushed = 0, poison = 0;
	for (int i = 0; i < B_PUSHERS; i++) {
		pushed += ps[i].pushed;
		poison += ps[i].poison;
	}
	spate_summary_t su;
	spate_engine_summary(r->e, &su);
	printf("B: pushed %zu (poison %zu); records %" PRIu64 " dlq %" PRIu64 " failed %" PRIu64
	       " retries %" PRIu64 "\n",
	       pushed, poison, su.records, su.dlq, su.failed, su.retries);
	CHECK(r->rc == SPATE_OK, "B: run: %s (%s)", r->err, spate_err2name(r->rc));
	CHECK(su.records >= STOP_AFTER, "B: stopped after %" PRIu64 " records, want at least %d", su.records,
	      STOP_AFTER);
	CHECK(su.records <= pushed, "B: records %" PRIu64 " > pushed %zu", su.records, pushed);
	CHECK(su.dlq <= poison, "B: dlq %" PRIu64 " > poison pushed %zu", su.dlq, poison);
	CHECK(su.dropped == 0, "B: dropped %" PRIu64 " with a DLQ", su.dropped);
	CHECK(su.dlq_errors == 0, "B: %" PRIu64 " DLQ write errors", su.dlq_errors);
	CHECK(touch_sum(s) == atomic_load(&s->calls), "B: per-lane counts %" PRIu64 " != calls %" PRIu64,
	      touch_sum(s), (uint64_t)atomic_load(&s->calls));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: two_engines DIR\n");
		return 2;
	}
	char dlq[1024];
	snprintf(dlq, sizeof(dlq), "log:%s/dlq", argv[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);

	hstate_t *sa = hstate_new("stress-a", (size_t)A_PUSHERS * A_PER_PUSHER, false, -1);
	hstate_t *sb = hstate_new("stress-b", (size_t)B_PUSHERS * B_MAX_PER_PUSHER, true, -1);
	const char *ka[] = {"source",
	                    "push",
	                    "push.partitions",
	                    "4",
	                    "parallelization.factor",
	                    "2",
	                    "report.item.failures",
	                    "true",
	                    "max.retry.attempts",
	                    "2",
	                    "retry.backoff.ms",
	                    "1",
	                    "retry.backoff.max.ms",
	                    "4",
	                    "min.concurrency",
	                    "0",
	                    "max.concurrency",
	                    "3",
	                    "scale.down.idle.ms",
	                    "1",
	                    "batch.size",
	                    "16",
	                    "stop.at.end",
	                    "true",
	                    "max.inflight.bytes",
	                    "256k",
	                    "store",
	                    "none",
	                    "log.level",
	                    "error",
	                    NULL};
	const char *kb[] = {"source",
	                    "push",
	                    "push.partitions",
	                    "2",
	                    "bisect.on.error",
	                    "true",
	                    "max.retry.attempts",
	                    "1",
	                    "retry.backoff.ms",
	                    "1",
	                    "retry.backoff.max.ms",
	                    "2",
	                    "min.concurrency",
	                    "2",
	                    "max.concurrency",
	                    "2",
	                    "batch.size",
	                    "32",
	                    "dlq",
	                    dlq,
	                    "max.inflight.bytes",
	                    "256k",
	                    "store",
	                    "none",
	                    "log.level",
	                    "error",
	                    NULL};
	run_t ra = {.name = "A", .e = engine_new(ka, sa)};
	run_t rb = {.name = "B", .e = engine_new(kb, sb)};
	pusher_t pa[A_PUSHERS], pb[B_PUSHERS];
	for (int i = 0; i < A_PUSHERS; i++)
		pa[i] = (pusher_t){.run = &ra,
		                   .index = i,
		                   .parts = A_PARTS,
		                   .first_id = (size_t)i * A_PER_PUSHER,
		                   .count = A_PER_PUSHER};
	for (int i = 0; i < B_PUSHERS; i++)
		pb[i] = (pusher_t){.run = &rb,
		                   .index = i,
		                   .parts = B_PARTS,
		                   .first_id = (size_t)i * B_MAX_PER_PUSHER,
		                   .count = B_MAX_PER_PUSHER,
		                   .until_over = true};
	watcher_t wt = {.runs = {&ra, &rb}};
	pthread_t tpa[A_PUSHERS], tpb[B_PUSHERS], twt, tstop;
	pthread_create(&ra.th, NULL, engine_main, &ra);
	pthread_create(&rb.th, NULL, engine_main, &rb);
	for (int i = 0; i < A_PUSHERS; i++)
		pthread_create(&tpa[i], NULL, push_main, &pa[i]);
	for (int i = 0; i < B_PUSHERS; i++)
		pthread_create(&tpb[i], NULL, push_main, &pb[i]);
	pthread_create(&twt, NULL, watch_main, &wt);
	pthread_create(&tstop, NULL, stop_main, &rb);
	/* A ends by itself once its pushers are done and closed it */
	for (int i = 0; i < A_PUSHERS; i++)
		pthread_join(tpa[i], NULL);
	spate_push_close(ra.e);
	pthread_join(ra.th, NULL);
	pthread_join(rb.th, NULL);
	pthread_join(tstop, NULL);
	for (int i = 0; i < B_PUSHERS; i++)
		pthread_join(tpb[i], NULL);
	pthread_join(twt, NULL);
	CHECK(!wt.regressed, "spate_engine_stats: records went down between two reads");
	printf("watcher: %" PRIu64 " reads of stats and summary\n", wt.reads);
	check_a(&ra, sa, pa);
	check_b(&rb, sb, pb);
	spate_engine_destroy(ra.e);
	spate_engine_destroy(rb.e);
	CHECK(atomic_load(&sa->bad_ctx) == 0 && atomic_load(&sb->bad_ctx) == 0,
	      "a handler call without its worker context");
	CHECK(atomic_load(&sa->inits) == atomic_load(&sa->finis), "A: %d inits, %d finis",
	      atomic_load(&sa->inits), atomic_load(&sa->finis));
	CHECK(atomic_load(&sb->inits) == atomic_load(&sb->finis), "B: %d inits, %d finis",
	      atomic_load(&sb->inits), atomic_load(&sb->finis));

	/* C: the handler's init fails on worker 1: the run ends with that error */
	hstate_t *sc = hstate_new("stress-c", 1, false, 1);
	const char *kc[] = {"source",
	                    "gen",
	                    "gen.records",
	                    "0",
	                    "gen.partitions",
	                    "2",
	                    "min.concurrency",
	                    "2",
	                    "max.concurrency",
	                    "2",
	                    "log.level",
	                    "error",
	                    NULL};
	run_t rc = {.name = "C", .e = engine_new(kc, sc)};
	pthread_create(&rc.th, NULL, engine_main, &rc);
	pthread_join(rc.th, NULL);
	printf("C: %s (%s)\n", rc.err, spate_err2name(rc.rc));
	CHECK(rc.rc == SPATE_ERR_HANDLER && strstr(rc.err, "worker 1"),
	      "C: run returned %s: \"%s\", want ERR_HANDLER naming worker 1", spate_err2name(rc.rc), rc.err);
	spate_engine_destroy(rc.e);
	CHECK(atomic_load(&sc->inits) == atomic_load(&sc->finis), "C: %d inits, %d finis",
	      atomic_load(&sc->inits), atomic_load(&sc->finis));

	free(sa->seen);
	free(sb->seen);
	free(sc->seen);
	free(sa);
	free(sb);
	free(sc);
	if (failures) {
		fprintf(stderr, "two_engines: %d checks failed\n", failures);
		return 1;
	}
	printf("two_engines: every check held\n");
	return 0;
}
