/* test_autoscale.c - tests engine/autoscale.c and the in-flight bounds (run serially:
 * they measure concurrency). I/O-bound handlers scale up; idle workers go back to
 * min.concurrency and to zero, and the next record is a cold start; handler instances
 * start and stop with their workers; in-flight bytes never exceed max.inflight.bytes. */
#include "engine/engine.h"
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/engine.h"
#include "tests/common/engine.h"
#include "tests/common/util.h"

static long field(const char *out, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\n%s ", name);
	size_t n = strlen(out);
	char *buf = malloc(n + 2);
	buf[0] = '\n';
	memcpy(buf + 1, out, n + 1);
	char *p = strstr(buf, pat);
	long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
	free(buf);
	return v;
}

static char *run_gen(int maxc, const char *records, char **errout)
{
	char mc[32], rec[48];
	snprintf(mc, sizeof(mc), "max.concurrency=%d", maxc);
	snprintf(rec, sizeof(rec), "gen.records=%s", records);
	char *argv[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                "source=gen",
	                "-X",
	                "gen.partitions=16",
	                "-X",
	                rec,
	                "-X",
	                "handler=sleep:2",
	                "-X",
	                mc,
	                "-X",
	                "stop.at.end=true",
	                "-X",
	                "log.level=debug",
	                NULL};
	char *out;
	cr_assert_eq(t_run(argv, &out, errout), 0, "%s", *errout);
	return out;
}

/* With an I/O-bound handler the autoscaler adds workers up to max.concurrency (the
 * decision log shows the count reaching 12 or more), and max.concurrency=1 keeps one.
 * How fast it gets there and the throughput it gains are figures, measured by
 * benchmarks/autoscale.sh, not asserted here. */
Test(autoscale, io_bound_handler_scales_up)
{
	char *err1, *err16;
	char *out16 = run_gen(16, "300000", &err16);
	char *out1 = run_gen(1, "20000", &err1);
	long reached = 0, above = 0;
	for (char *p = strstr(err16, "autoscale: t="); p; p = strstr(p + 1, "autoscale: t=")) {
		long t, from, to;
		if (sscanf(p, "autoscale: t=%ldms workers %ld -> %ld", &t, &from, &to) == 3) {
			reached = to > reached ? to : reached;
			above += to > 16;
		}
	}
	cr_assert_geq(reached, 12, "the decisions never reached 12 workers:\n%s", err16);
	cr_assert_eq(above, 0, "a decision went past max.concurrency 16:\n%s", err16);
	cr_assert_geq(field(out16, "workers_max"), 12);
	cr_assert_leq(field(out16, "workers_max"), 16);
	cr_assert_eq(field(out16, "records"), 300000);
	cr_assert_eq(field(out1, "records"), 20000);
	cr_assert_eq(field(out1, "workers_max"), 1);
	free(out16), free(err16), free(out1), free(err1);
}

typedef struct st {
	_Atomic uint64_t handled;
	_Atomic int inits, finis;
} st_t;

/* The handler's callbacks run on worker threads: t_expect there, never cr_assert. */
static int h_init(void *o, int id, void **ctx)
{
	st_t *s = o;
	atomic_fetch_add(&s->inits, 1);
	*ctx = s;
	return SPATE_OK;
}

static void h_fini(void *o, void *ctx)
{
	st_t *s = o;
	t_expect(ctx == s, "fini got another context than init gave");
	atomic_fetch_add(&s->finis, 1);
}

static int h_handle(void *o, void *ctx, spate_batch_t *b)
{
	st_t *s = o;
	t_expect(ctx == s, "handle without its worker's init");
	usleep(1000);
	atomic_fetch_add(&s->handled, spate_batch_count(b));
	return SPATE_HANDLER_OK;
}

static void push_burst(spate_engine_t *e, int n)
{
	char k[16], v[16];
	for (int i = 0; i < n; i++) {
		int kl = snprintf(k, sizeof(k), "k%d", i % 64), vl = snprintf(v, sizeof(v), "%d", i);
		spate_push_record_t r = {
		    .key = k, .key_len = (size_t)kl, .value = v, .value_len = (size_t)vl};
		t_require(t_push_all(e, i % 4, &r, 1) == 0, "push %d", i);
	}
}

/* A hang guard, not a timing requirement: how long a wait below may take before the test
 * calls it a hang (the engine's own figures are in benchmarks/autoscale.sh). */
#define HANG_MS 60000

/* Wait until the engine's stats show want_workers active (-1: any) and want_records
 * handled; false when they did not within HANG_MS. */
static bool wait_stats(spate_engine_t *e, int want_workers, uint64_t want_records)
{
	int64_t t0 = t_now_ms();
	while (t_now_ms() - t0 < HANG_MS) {
		spate_stats_t s;
		spate_engine_stats(e, &s);
		if ((want_workers < 0 || s.workers_active == want_workers) && s.records >= want_records)
			return true;
		t_sleep_ms(5);
	}
	return false;
}

typedef struct down {
	st_t s;
	int minc;
	int peak;                   /* workers active while the burst ran */
	int inits_idle, finis_idle; /* once back at min.concurrency */
} down_t;

/* While it runs: a burst of 20000 records, then idle until the workers are back at
 * min.concurrency (however long that takes, within the hang guard), then one more record,
 * then stop. */
static void scale_down_during(t_during_t *d)
{
	down_t *x = d->arg;
	push_burst(d->e, 20000);
	int64_t t0 = t_now_ms();
	for (;;) {
		spate_stats_t st;
		spate_engine_stats(d->e, &st);
		if (st.workers_active > x->peak)
			x->peak = st.workers_active;
		if (st.records >= 20000)
			break;
		t_require(t_now_ms() - t0 < HANG_MS, "only %llu of 20000 records handled",
		          (unsigned long long)st.records);
		t_sleep_ms(2);
	}
	t_require(wait_stats(d->e, x->minc, 20000), "the idle workers did not go back to %d", x->minc);
	/* at zero every started worker runs fini, on its own thread, once it has stopped */
	for (int64_t t1 = t_now_ms(); x->minc == 0 && t_now_ms() - t1 < HANG_MS &&
	                              atomic_load(&x->s.inits) != atomic_load(&x->s.finis);)
		t_sleep_ms(5);
	x->inits_idle = atomic_load(&x->s.inits);
	x->finis_idle = atomic_load(&x->s.finis);
	/* the next record is handled (with min 0: a cold start on a restarted worker) */
	push_burst(d->e, 1);
	t_require(wait_stats(d->e, -1, 20001), "the record after idling was not handled");
	spate_engine_stop(d->e);
}

static void scale_down_case(int minc)
{
	char mc[16];
	snprintf(mc, sizeof(mc), "%d", minc);
	const char *kv[] = {"source",
	                    "push",
	                    "push.partitions",
	                    "4",
	                    "max.concurrency",
	                    "8",
	                    "parallelization.factor",
	                    "4",
	                    "scale.down.idle.ms",
	                    "300",
	                    "batch.size",
	                    "10",
	                    "min.concurrency",
	                    mc,
	                    NULL};
	down_t x = {.minc = minc};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION,
	                     .init = h_init,
	                     .handle = h_handle,
	                     .fini = h_fini,
	                     .opaque = &x.s};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = kv, .handler = &h, .during = scale_down_during, .arg = &x});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&x.s.handled), 20001);
	cr_assert_geq(r.sum.workers_max, 2, "it never scaled up");
	cr_assert_geq(x.peak, 2, "the burst ran on %d worker(s)", x.peak);
	cr_assert_eq(r.sum.workers_min, minc);
	if (minc == 0) {
		cr_assert_eq(x.inits_idle, x.finis_idle,
		             "at zero every started worker ran fini (%d inits, %d finis)", x.inits_idle,
		             x.finis_idle);
		cr_assert_gt(atomic_load(&x.s.inits), x.inits_idle,
		             "no worker ran init again after scaling to 0");
		cr_assert_geq(r.sum.cold_starts, 2,
		              "the first record and the one after idling are cold starts");
		cr_assert_gt(r.sum.cold_p99_ms, 0);
	}
	/* every worker instance that was started was stopped, on its own thread */
	cr_assert_eq(atomic_load(&x.s.inits), atomic_load(&x.s.finis));
}

Test(autoscale, idle_workers_return_to_min)
{
	scale_down_case(1);
}

Test(autoscale, idle_pipeline_scales_to_zero_and_cold_starts)
{
	scale_down_case(0);
}

typedef struct sampler {
	uint64_t max_seen, samples;
	int64_t heap0, heap_max; /* the allocator's live bytes: once started, the most seen */
} sampler_t;

static void sample_started(spate_engine_t *e, void *arg)
{
	sampler_t *s = arg;
	s->heap0 = s->heap_max = t_heap_live_bytes();
}

/* While it runs, until it returned: the largest inflight_bytes seen. */
static void sample(t_during_t *d)
{
	sampler_t *s = d->arg;
	while (!atomic_load(&d->ended)) {
		spate_stats_t st;
		spate_engine_stats(d->e, &st);
		if (st.inflight_bytes > s->max_seen)
			s->max_seen = st.inflight_bytes;
		int64_t h = t_heap_live_bytes();
		if (h > s->heap_max)
			s->heap_max = h;
		s->samples++;
		usleep(500);
	}
}

/* What the live heap may grow by after the start: the 2 MiB bound and 4 MiB for gen's
 * chunk being built, the allocator and the engine's tables. Measured: 1.5-1.9 MiB; with
 * the bound at 64M instead it grew by 16.4 MiB. */
#define HEAP_LIMIT (6 << 20)
Test(autoscale, inflight_bytes_stay_under_the_bound)
{
	const char *kv[] = {"source",
	                    "gen",
	                    "gen.records",
	                    "200000",
	                    "gen.partitions",
	                    "8",
	                    "gen.kind",
	                    "bytes",
	                    "gen.value.bytes",
	                    "200",
	                    "handler",
	                    "sleep:1",
	                    "batch.size",
	                    "200",
	                    "max.concurrency",
	                    "4",
	                    "max.inflight.bytes",
	                    "2M",
	                    "stop.at.end",
	                    "true",
	                    NULL};
	sampler_t s = {0};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = kv, .started = sample_started, .during = sample, .arg = &s});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, 200000);
	cr_assert_gt(s.samples, 10);
	cr_assert_gt(s.max_seen, 0);
	cr_assert_leq(s.max_seen, 2u << 20, "in flight %llu > 2 MiB", (unsigned long long)s.max_seen);
	/* the counter above is the one that gates admission: the allocator's own count checks
	 * it independently */
	int64_t grew = s.heap_max - s.heap0;
	cr_assert_gt(grew, 0, "the live heap did not grow while records were in flight");
	cr_assert_leq(grew, HEAP_LIMIT, "the live heap grew by %lld KiB, more than %d KiB",
	              (long long)grew >> 10, HEAP_LIMIT >> 10);
}
