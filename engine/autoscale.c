/* autoscale.c - the controller that sets how many workers run, from the load.
 *
 * Every SP_AUTOSCALE_TICK_MS the engine thread looks at how much work is waiting, not at
 * whether the backlog grows (under backpressure it stops growing): lanes with queued work
 * and no worker (ready lanes), lanes being worked, the source's lag, and the workers'
 * busy time (wall time inside the handler, so I/O-bound handlers count as busy).
 *  - Up: when lanes wait and the active workers are busy, the count doubles (at least +1),
 *    never past max.concurrency nor past the lanes that have work.
 *  - Down: once no lane has waited and some workers had nothing to do for
 *    scale.down.idle.ms, the count drops to the most lanes worked at once during that
 *    window (at least min.concurrency), so a bursty load keeps the workers its bursts
 *    need; with min.concurrency=0 an idle pipeline goes to zero.
 *  - From zero: the first lane that becomes ready starts a worker at once (not at the next
 *    tick); the time from that record's arrival to its handler start is a cold start.
 * Each decision is logged at debug level with its inputs.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Share of the active workers' time in the handler above which waiting lanes justify
 * more workers (below it the workers are starved by something else, e.g. the source). */
#define SP_SCALE_UP_BUSY 0.5
/* Cold-start samples kept for p50/p99 (a ring: the newest ones). */
#define SP_COLD_SAMPLES 1024

typedef struct sp_autoscale {
	int64_t next_tick_ns;
	int64_t idle_since_ns; /* 0: not idle */
	int peak_running;      /* most lanes worked at once at a tick of the idle window */
	uint64_t last_busy_ns;
	int64_t last_ns;
	/* worker count over time */
	int64_t changed_ns;
	double area; /* workers x seconds */
	int wmin, wmax;
	uint64_t throttled;
	/* cold starts (under e->mu) */
	uint64_t cold;
	double cold_ms[SP_COLD_SAMPLES];
} sp_autoscale_t;

int sp_autoscale_new(sp_engine_t *e, char *err, size_t sz)
{
	sp_autoscale_t *a = calloc(1, sizeof(*a));
	if (!a)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
	e->as = a;
	int64_t now = sp_now_ns();
	a->next_tick_ns = now + SP_AUTOSCALE_TICK_MS * 1000000LL;
	a->last_ns = a->changed_ns = now;
	e->active = e->min_workers;
	a->wmin = a->wmax = e->active;
	return SPATE_OK;
}

void sp_autoscale_free(sp_engine_t *e)
{
	free(e->as);
	e->as = NULL;
}

/* Under e->mu: account the time at the old count, switch, start or stop workers. */
static void set_active_locked(sp_engine_t *e, int n, int64_t now)
{
	sp_autoscale_t *a = e->as;
	if (n == e->active)
		return;
	a->area += (double)e->active * (double)(now - a->changed_ns) / 1e9;
	a->changed_ns = now;
	e->active = n;
	if (n < a->wmin)
		a->wmin = n;
	if (n > a->wmax)
		a->wmax = n;
	pthread_cond_broadcast(&e->idle_cv);  /* started workers run init */
	pthread_cond_broadcast(&e->work_cv);  /* stopped ones run fini */
}

void sp_autoscale_wake_locked(sp_engine_t *e)
{
	if (e->active || !e->as || e->nworkers == 0)
		return;
	int64_t now = sp_now_ns();
	int64_t zero = 0;
	atomic_compare_exchange_strong(&e->cold_ns, &zero, now);
	set_active_locked(e, 1, now);
	e->as->idle_since_ns = 0;
	sp_msg(e, SP_MSG_DEBUG, "autoscale: t=%" PRId64 "ms workers 0 -> 1 (cold start: a lane became ready)",
	       (now - e->start_ns) / 1000000);
}

void sp_autoscale_cold_done(sp_engine_t *e)
{
	int64_t t = atomic_exchange(&e->cold_ns, 0);
	if (!t)
		return;
	double ms = (double)(sp_now_ns() - t) / 1e6;
	pthread_mutex_lock(&e->mu);
	sp_autoscale_t *a = e->as;
	a->cold_ms[a->cold % SP_COLD_SAMPLES] = ms;
	a->cold++;
	pthread_mutex_unlock(&e->mu);
}

void sp_autoscale_tick(sp_engine_t *e, int64_t now)
{
	sp_autoscale_t *a = e->as;
	if (!a || now < a->next_tick_ns)
		return;
	a->next_tick_ns = now + SP_AUTOSCALE_TICK_MS * 1000000LL;
	uint64_t busy = 0;
	for (int i = 0; i < e->nworkers; i++)
		busy += atomic_load_explicit(&e->workers[i]->st.busy_ns, memory_order_relaxed);
	int64_t dt = now - a->last_ns;
	double util = 0;
	pthread_mutex_lock(&e->mu);
	int active = e->active, ready = e->nready, running = e->nrunning;
	if (active > 0 && dt > 0)
		util = (double)(busy - a->last_busy_ns) / ((double)dt * active);
	a->last_busy_ns = busy;
	a->last_ns = now;
	int64_t lag = e->src.ops && e->src.ops->lag ? e->src.ops->lag(&e->src) : -1;
	int want = active;
	const char *why = NULL;
	if (ready > 0 && active < e->nworkers && (util >= SP_SCALE_UP_BUSY || running >= active)) {
		want = active * 2 > active + 1 ? active * 2 : active + 1;
		if (want > ready + running)
			want = ready + running; /* never more than the lanes that have work */
		if (want > e->nworkers)
			want = e->nworkers;
		why = "lanes waiting, workers busy";
		a->idle_since_ns = 0;
	} else if (ready > 0 && active == e->nworkers) {
		a->throttled++; /* the concurrency bound holds work back */
		a->idle_since_ns = 0;
	} else if (ready == 0 && running < active) {
		if (!a->idle_since_ns) {
			a->idle_since_ns = now;
			a->peak_running = 0;
		}
		if (running > a->peak_running)
			a->peak_running = running;
		if (now - a->idle_since_ns >= e->scale_down_idle_ms * 1000000LL) {
			want = a->peak_running > e->min_workers ? a->peak_running : e->min_workers;
			why = "workers idle for scale.down.idle.ms";
			a->idle_since_ns = 0;
		}
	} else {
		a->idle_since_ns = 0;
	}
	if (want != active) {
		set_active_locked(e, want, now);
		sp_msg(e, SP_MSG_DEBUG,
		       "autoscale: t=%" PRId64 "ms workers %d -> %d (%s; lanes waiting %d, running %d, lag %" PRId64
		       ", busy %.2f, in flight %" PRIu64 " B)",
		       (now - e->start_ns) / 1000000, active, want, why, ready, running, lag, util,
		       (uint64_t)e->inflight_bytes);
	}
	pthread_mutex_unlock(&e->mu);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

void sp_autoscale_summary(sp_engine_t *e, spate_summary_t *s)
{
	sp_autoscale_t *a = e->as;
	if (!a) {
		s->workers_min = s->workers_max = 0;
		return;
	}
	pthread_mutex_lock(&e->mu);
	int64_t end = atomic_load_explicit(&e->finished, memory_order_acquire) ? e->end_ns : sp_now_ns();
	double area = a->area + (double)e->active * (double)(end - a->changed_ns) / 1e9;
	double secs = (double)(end - e->start_ns) / 1e9;
	s->workers_min = a->wmin;
	s->workers_max = a->wmax;
	s->workers_mean = secs > 0 ? area / secs : e->active;
	s->throttled = a->throttled;
	s->cold_starts = a->cold;
	size_t n = a->cold < SP_COLD_SAMPLES ? a->cold : SP_COLD_SAMPLES;
	double sorted[SP_COLD_SAMPLES];
	memcpy(sorted, a->cold_ms, n * sizeof(double));
	pthread_mutex_unlock(&e->mu);
	if (n) {
		qsort(sorted, n, sizeof(double), cmp_double);
		s->cold_p50_ms = sorted[(n - 1) / 2];
		s->cold_p99_ms = sorted[(n * 99 + 99) / 100 - 1];
	}
}
