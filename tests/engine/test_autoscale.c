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
#include "tests/common/util.h"

static double fieldf(const char *out, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "%s ", name);
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, pat, strlen(pat)))
			return strtod(p + strlen(pat), NULL);
	return -1;
}

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
	char *argv[] = {(char *)t_spate_cli(), "run", "-X", "source=gen", "-X", "gen.partitions=16", "-X", rec,
	                "-X", "handler=sleep:2", "-X", mc, "-X", "stop.at.end=true", "-X", "log.level=debug", NULL};
	char *out;
	cr_assert_eq(t_run(argv, &out, errout), 0, "%s", *errout);
	return out;
}

Test(autoscale, io_bound_handler_scales_up)
{
	char *err1, *err16;
	char *out16 = run_gen(16, "300000", &err16);
	char *out1 = run_gen(1, "100000", &err1);
	/* the decision log shows the worker count reaching at least 12 within 10 s */
	long reached_ms = -1;
	for (char *p = strstr(err16, "autoscale: t="); p; p = strstr(p + 1, "autoscale: t=")) {
		long t, from, to;
		if (sscanf(p, "autoscale: t=%ldms workers %ld -> %ld", &t, &from, &to) == 3 && to >= 12 &&
		    reached_ms < 0)
			reached_ms = t;
	}
	cr_assert_geq(reached_ms, 0, "never reached 12 workers:\n%s", err16);
	cr_assert_leq(reached_ms, 10000, "reached 12 workers only at %ld ms", reached_ms);
	cr_assert_geq(field(out16, "workers_max"), 12);
	/* handler calls per second: at least 4 times those of one worker */
	double r16 = (double)field(out16, "batches") / (fieldf(out16, "first_to_last_s") * 1000);
	double r1 = (double)field(out1, "batches") / (fieldf(out1, "first_to_last_s") * 1000);
	cr_assert_geq(r16, 4 * r1, "max.concurrency 16: %.1f calls/ms, 1: %.1f calls/ms", r16, r1);
	cr_assert_eq(field(out1, "workers_max"), 1);
	free(out16), free(err16), free(out1), free(err1);
}

typedef struct st {
	_Atomic uint64_t handled;
	_Atomic int inits, finis;
} st_t;

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
		spate_push_record_t r = {.key = k, .key_len = (size_t)kl, .value = v, .value_len = (size_t)vl};
		int rc = t_push_all(e, i % 4, &r, 1);
		t_require(rc == 0, "push: %s", spate_err2str(rc));
	}
}

/* Wait (bounded) until cond holds for the engine's stats; returns when it did, in ms. */
static int64_t wait_stats(spate_engine_t *e, int want_workers, uint64_t want_records)
{
	int64_t t0 = sp_now_ms();
	while (sp_now_ms() - t0 < 20000) {
		spate_stats_t s;
		spate_engine_stats(e, &s);
		if ((want_workers < 0 || s.workers_active == want_workers) && s.records >= want_records)
			return sp_now_ms();
		usleep(5000);
	}
	t_require(false, "stats did not reach workers=%d records=%llu in 20 s", want_workers,
	          (unsigned long long)want_records);
	return -1;
}

typedef struct scale_down {
	st_t s;
	int minc;
} scale_down_t;

/* While it runs: a burst, back to min.concurrency once idle, one record more (with min
 * 0: a cold start), then the stop. */
static void scale_down_while_running(t_during_t *d)
{
	scale_down_t *x = d->arg;
	st_t *s = &x->s;
	int minc = x->minc;
	push_burst(d->e, 20000);
	int64_t done = wait_stats(d->e, -1, 20000);
	/* back at min.concurrency within scale.down.idle.ms plus 5 ticks of 100 ms */
	int64_t back = wait_stats(d->e, minc, 20000);
	t_require(back - done <= 300 + 5 * 100, "took %lld ms to scale down to %d", (long long)(back - done),
	          minc);
	/* the next record is handled (with min 0: a cold start on a restarted worker) */
	if (minc == 0) /* at zero every started worker runs fini (on its own thread, soon) */
		for (int k = 0; k < 4000 && atomic_load(&s->inits) != atomic_load(&s->finis); k++)
			usleep(5000);
	int inits_idle = atomic_load(&s->inits);
	if (minc == 0)
		t_require(inits_idle == atomic_load(&s->finis), "at zero every started worker ran fini");
	push_burst(d->e, 1);
	wait_stats(d->e, -1, 20001);
	if (minc == 0)
		t_require(atomic_load(&s->inits) > inits_idle, "no worker ran init again after scaling to 0");
	spate_engine_stop(d->e);
}

static void scale_down_case(int minc)
{
	char v[16];
	snprintf(v, sizeof(v), "%d", minc);
	const char *kv[] = {"source", "push", "push.partitions", "4", "max.concurrency", "8",
	                    "parallelization.factor", "4", "scale.down.idle.ms", "300", "batch.size", "10",
	                    "min.concurrency", v, NULL};
	scale_down_t x = {.minc = minc};
	st_t *s = &x.s;
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .init = h_init, .handle = h_handle,
	                     .fini = h_fini, .opaque = s};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = kv, .handler = &h, .during = scale_down_while_running, .arg = &x});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(atomic_load(&s->handled), 20001);
	cr_assert_geq(sum.workers_max, 2, "it never scaled up");
	cr_assert_eq(sum.workers_min, minc);
	if (minc == 0) {
		cr_assert_geq(sum.cold_starts, 2, "the first record and the one after idling are cold starts");
		cr_assert_gt(sum.cold_p99_ms, 0);
	}
	/* every worker instance that was started was stopped, on its own thread */
	cr_assert_eq(atomic_load(&s->inits), atomic_load(&s->finis));
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
} sampler_t;

/* While it runs, until it returned: the largest inflight_bytes seen. */
static void sample(t_during_t *d)
{
	sampler_t *s = d->arg;
	while (!atomic_load(&d->ended)) {
		spate_stats_t st;
		spate_engine_stats(d->e, &st);
		if (st.inflight_bytes > s->max_seen)
			s->max_seen = st.inflight_bytes;
		s->samples++;
		usleep(500);
	}
}

Test(autoscale, inflight_bytes_stay_under_the_bound)
{
	const char *kv[] = {"source", "gen", "gen.records", "200000", "gen.partitions", "8", "gen.kind", "bytes",
	                    "gen.value.bytes", "200", "handler", "sleep:1", "batch.size", "200",
	                    "max.concurrency", "4", "max.inflight.bytes", "2M", "stop.at.end", "true", NULL};
	sampler_t s = {0};
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = kv, .during = sample, .arg = &s});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, 200000);
	cr_assert_gt(s.samples, 10);
	cr_assert_gt(s.max_seen, 0);
	cr_assert_leq(s.max_seen, 2u << 20, "in flight %llu > 2 MiB", (unsigned long long)s.max_seen);
}
