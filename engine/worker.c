/* worker.c - the worker pool: threads that claim lanes and invoke the handler.
 *
 * A worker takes a ready lane off the queue (under e->mu, once per claim), then runs up
 * to SP_LANE_BURST batches of it back to back without a lock: the claim is what keeps
 * per-key order, since no other worker touches the lane meanwhile. A batch is built by
 * peeking at the lane's runs; the lane's cursor moves only over records that are DONE
 * (handled, sent to the DLQ, or dropped), so a failed record stays at the head of its
 * lane and is retried from there. Completions go to the engine thread over this worker's
 * single-producer ring, one entry per chunk a batch spans.
 *
 * Failure handling (Lambda's rules, per lane instead of per partition):
 *  - whole-batch failure with bisect.on.error: retry at once with half the batch size,
 *    recursively, until the failing records are isolated; splits charge no attempts;
 *  - a failed attempt that counts charges every record it held (items only, with
 *    report.item.failures), then parks the lane on a timer with exponential backoff and
 *    jitter; a parked lane is re-queued by whichever worker next looks for work;
 *  - records past max.retry.attempts or max.record.age.ms go to the DLQ (durably, before
 *    they are DONE), or are dropped, logged and counted when no DLQ is configured; a DLQ
 *    that cannot be written parks the lane and tries again: nothing is skipped.
 */
#include "engine/engine.h"
#include "engine/filter.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the public batch API -------------------------------------------------------- */

size_t spate_batch_count(const spate_batch_t *b)
{
	return b->n;
}

const spate_record_t *const *spate_batch_records(const spate_batch_t *b)
{
	return b->recs;
}

spate_err_t spate_batch_fail_item(spate_batch_t *b, size_t i, const char *msg)
{
	if (i >= b->n)
		return SPATE_ERR_INVALID;
	if (!b->failed[i]) {
		b->failed[i] = 1;
		b->nfailed++;
	}
	sp_worker_t *w = b->w;
	b->w->item_err[i] = UINT32_MAX;
	if (msg) {
		size_t len = strlen(msg) + 1;
		if (w->errbuf_len + len > w->errbuf_cap) {
			size_t cap = (w->errbuf_cap + len) * 2;
			char *nb = realloc(w->errbuf, cap);
			if (!nb)
				return SPATE_OK; /* the failure counts; only its message is lost */
			w->errbuf = nb;
			w->errbuf_cap = cap;
		}
		memcpy(w->errbuf + w->errbuf_len, msg, len);
		w->item_err[i] = (uint32_t)w->errbuf_len;
		w->errbuf_len += len;
	}
	return SPATE_OK;
}

void spate_batch_set_error(spate_batch_t *b, const char *msg)
{
	snprintf(b->err, sizeof(b->err), "%s", msg ? msg : "");
}

/* ---- lanes: ready queue and parking (under e->mu) ------------------------------------ */

static void push_ready_locked(sp_engine_t *e, sp_lane_t *l)
{
	l->state = LANE_QUEUED;
	e->nready++;
	l->next = NULL;
	if (e->ready_tail)
		e->ready_tail->next = l;
	else
		e->ready_head = l;
	e->ready_tail = l;
}

/* The parked lane at *pp leaves PARKED for the ready queue: its deadlines and its wish
 * for a copy go with it (nmig counts only parked lanes; a new park copies what is queued
 * then). */
static void leave_parked_locked(sp_engine_t *e, sp_lane_t **pp)
{
	sp_lane_t *l = *pp;
	*pp = l->next;
	l->park_until_ms = 0;
	l->window_wait = false;
	if (l->mig_wanted)
		e->nmig--;
	l->mig_wanted = false;
	l->mig_retry_ms = 0;
	push_ready_locked(e, l);
}

/* The link that points at parked lane l in e->parked. */
static sp_lane_t **parked_link_locked(sp_engine_t *e, const sp_lane_t *l)
{
	sp_lane_t **pp = &e->parked;
	while (*pp != l)
		pp = &(*pp)->next;
	return pp;
}

void sp_lanes_ready(sp_engine_t *e, sp_lane_t **lanes, size_t n)
{
	size_t queued = 0;
	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < n; i++) {
		if (lanes[i]->state == LANE_IDLE) {
			push_ready_locked(e, lanes[i]);
			queued++;
		} else if (lanes[i]->state == LANE_PARKED && lanes[i]->window_wait) {
			/* waiting to fill its batch (batch.window.ms): look again with the new runs */
			leave_parked_locked(e, parked_link_locked(e, lanes[i]));
			queued++;
		} else if (lanes[i]->state == LANE_PARKED && !lanes[i]->mig_wanted) {
			/* new runs behind a retrying lane: a worker copies them out */
			lanes[i]->mig_wanted = true;
			e->nmig++;
			queued++;
		}
	}
	if (queued && !e->active)
		sp_autoscale_wake_locked(e);
	int idle = queued ? e->idle_workers : 0;
	pthread_mutex_unlock(&e->mu);
	/* signalled after the unlock: a worker woken while this thread still held mu would
	 * only block on it again (two context switches per handoff instead of one) */
	if (idle > 1 && queued > 1)
		pthread_cond_broadcast(&e->work_cv);
	else if (idle)
		pthread_cond_signal(&e->work_cv);
}

void sp_lanes_defer(sp_engine_t *e, sp_lane_t **lanes, size_t n)
{
	if (n > SP_READY_PEND) {
		sp_lanes_flush(e);
		sp_lanes_ready(e, lanes, n);
		return;
	}
	if (e->npend + n > SP_READY_PEND)
		sp_lanes_flush(e);
	memcpy(e->pend + e->npend, lanes, n * sizeof(*lanes));
	e->npend += n;
	/* the round's first lanes at once, so a worker starts while the engine thread
	 * dispatches the rest; then every SP_READY_BATCH lanes */
	if (e->pend_first || e->npend >= SP_READY_BATCH) {
		e->pend_first = false;
		sp_lanes_flush(e);
	}
}

void sp_lanes_flush(sp_engine_t *e)
{
	if (!e->npend)
		return;
	sp_lanes_ready(e, e->pend, e->npend);
	e->npend = 0;
}

/* Move parked lanes whose time came to the ready queue. Returns the earliest deadline
 * still pending (monotonic ms), or 0 when none. */
static int64_t unpark_locked(sp_engine_t *e, int64_t now)
{
	int64_t next = 0;
	sp_lane_t **pp = &e->parked;
	while (*pp) {
		sp_lane_t *l = *pp;
		if (l->park_until_ms <= now) {
			leave_parked_locked(e, pp); /* it runs now */
		} else {
			if (!next || l->park_until_ms < next)
				next = l->park_until_ms;
			if (l->mig_retry_ms && l->mig_retry_ms <= now) {
				/* its copy found no room: look again (take_migration_locked) */
				l->mig_retry_ms = 0;
				if (!l->mig_wanted) {
					l->mig_wanted = true;
					e->nmig++;
				}
			} else if (l->mig_retry_ms && l->mig_retry_ms < next) {
				next = l->mig_retry_ms;
			}
			pp = &l->next;
		}
	}
	e->park_due_ms = next;
	return next;
}

/* A parked lane with runs to copy into its arena, taken off the parked list (it keeps
 * its deadline and goes back after the copy), or NULL. */
static sp_lane_t *take_migration_locked(sp_engine_t *e)
{
	if (!e->nmig)
		return NULL;
	for (sp_lane_t **pp = &e->parked; *pp; pp = &(*pp)->next) {
		sp_lane_t *l = *pp;
		if (l->mig_wanted) {
			*pp = l->next;
			l->mig_retry_ms = 0;
			e->nmig--;
			return l;
		}
	}
	return NULL;
}

/* Whether a parked lane waits for a worker to copy its runs (a stopped pool wakes up). */
static bool migration_wanted_locked(const sp_engine_t *e)
{
	return e->nmig > 0;
}

/* The next ready lane, or NULL; while the store holds the handlers (e->store_hold),
 * only a lane of a released partition (its records are dropped, not handled). */
static sp_lane_t *take_ready_locked(sp_engine_t *e)
{
	bool hold = atomic_load_explicit(&e->store_hold, memory_order_relaxed);
	sp_lane_t *prev = NULL;
	for (sp_lane_t *l = e->ready_head; l; prev = l, l = l->next) {
		if (hold && !atomic_load_explicit(&l->released, memory_order_acquire))
			continue;
		if (prev)
			prev->next = l->next;
		else
			e->ready_head = l->next;
		if (e->ready_tail == l)
			e->ready_tail = prev;
		e->nready--;
		return l;
	}
	return NULL;
}

/* Whether a worker may run another batch of l: not while stopping, nor while the store
 * holds the handlers (unless l's partition was released). */
static bool may_run(sp_engine_t *e, sp_lane_t *l)
{
	return !atomic_load_explicit(&e->draining, memory_order_relaxed) &&
	       (!atomic_load_explicit(&e->store_hold, memory_order_relaxed) ||
	        atomic_load_explicit(&l->released, memory_order_acquire));
}

void sp_workers_hold(sp_engine_t *e, bool hold)
{
	if (atomic_load_explicit(&e->store_hold, memory_order_relaxed) == hold)
		return;
	pthread_mutex_lock(&e->mu);
	atomic_store_explicit(&e->store_hold, hold, memory_order_relaxed);
	if (!hold && e->ready_head) {
		if (e->idle_workers)
			pthread_cond_broadcast(&e->work_cv);
		else if (!e->active)
			sp_autoscale_wake_locked(e);
	}
	pthread_mutex_unlock(&e->mu);
}

static bool lane_has_work(sp_lane_t *l)
{
	return l->dlq_pending || l->mq_off < l->mq_len || sp_ring_nonempty(&l->rq);
}

/* The other half of engine_sleep's handshake (a Dekker pair): the engine stores
 * sleeping = 1 and then reads every completion ring's head; a worker makes its
 * completions visible and then reads sleeping. All four are seq_cst, so one of the two
 * sees the other. The read-modify-write of the ring's head (the worker is its only
 * writer, adding 0 changes nothing) stands for a seq_cst fence: ThreadSanitizer does not
 * model fences (gcc refuses atomic_thread_fence under -fsanitize=thread) but does model
 * this, and on x86 it costs the same locked instruction. Once per lane burst. */
static void wake_engine_if_sleeping(sp_worker_t *w)
{
	atomic_fetch_add_explicit(&w->cq.head, 0, memory_order_seq_cst);
	if (atomic_load_explicit(&w->e->sleeping, memory_order_seq_cst))
		sp_engine_wake(w->e);
	w->owed_ns = 0;
}

/* After a lane burst: the engine learns of the completions it left when this worker
 * is about to wait (settle), or at once when they fill a quarter of the ring or the
 * oldest of them waited SP_WAKE_DEFER_NS. A round of many small lanes (a Kafka fetch
 * spans dozens of partitions) then costs the engine one wakeup, not one per lane. */
static void burst_done(sp_worker_t *w)
{
	int64_t now = sp_now_ns();
	if (!w->owed_ns)
		w->owed_ns = now;
	if (SP_COMP_RING - sp_ring_room(&w->cq, SP_COMP_RING) >= SP_COMP_RING / 4 ||
	    now - w->owed_ns >= SP_WAKE_DEFER_NS)
		wake_engine_if_sleeping(w);
}

/* Before this worker waits: wake the engine for the completions it was not told of. */
static void settle(sp_worker_t *w)
{
	if (w->owed_ns)
		wake_engine_if_sleeping(w);
}

/* ---- batches ---------------------------------------------------------------------- */

static void first_record(sp_engine_t *e)
{
	if (!atomic_load_explicit(&e->first_ns, memory_order_relaxed)) {
		int64_t zero = 0;
		atomic_compare_exchange_strong(&e->first_ns, &zero, sp_now_ns());
	}
}

/* Run one batch of the lane. Returns false when the lane should be released (empty,
 * parked, or stopping). */
/* The lane's partition was released: everything it holds leaves as DONE, unhandled
 * (the partition is never checkpointed again; its new owner handles the records). */
static void drop_released(sp_worker_t *w, sp_lane_t *l)
{
	uint32_t n;
	while ((n = sp_lane_build_batch(w, l, w->e->batch_size)))
		sp_lane_consume(w, l, w->refs, n);
	l->dlq_pending = 0;
	l->bisect_limit = 0;
	l->bisect_depth = 0;
	l->park_until_ms = 0;
}

/* End-to-end latency of the batch of n records at monotonic now_ns / wall now_us: from
 * each record's stream timestamp and from its arrival in the engine. The oldest and the
 * newest record stand for half of the batch each. */
static void latency(sp_worker_t *w, sp_hist_t *from_ts, sp_hist_t *from_in, uint32_t n, int64_t now_ns,
                    int64_t now_us)
{
	const sp_bref_t *ref[2] = {&w->refs[0], &w->refs[n - 1]};
	uint64_t weight[2] = {n - n / 2, n / 2};
	for (int k = 0; k < 2; k++) {
		if (!weight[k])
			continue;
		int64_t ts = sp_bref_rec(ref[k])->timestamp_ms * 1000;
		sp_hist_add(from_ts, now_us > ts ? (uint64_t)(now_us - ts) : 0, weight[k]);
		if (!ref[k]->m) { /* a copied record's arrival is gone with its chunk's body */
			int64_t in = ref[k]->c->arrived_ns;
			sp_hist_add(from_in, now_ns > in ? (uint64_t)(now_ns - in) / 1000 : 0, weight[k]);
		}
	}
}

/* batch.window.ms: the monotonic ms when the batch of n records (not full) may be handed
 * over, or 0 when it may be now: its first record came window ms ago, it is retried (a
 * copied record), or it ends its partition (the source's end marker). */
static int64_t window_due(sp_worker_t *w, uint32_t n)
{
	sp_engine_t *e = w->e;
	const sp_bref_t *first = &w->refs[0], *last = &w->refs[n - 1];
	if (first->m)
		return 0;
	if (!last->m && last->c->pub.end_marker && last->ord + 1 == last->c->pub.n)
		return 0;
	int64_t due = first->c->arrived_ms + e->window_ms, now = sp_now_ms();
	return due > now ? due : 0;
}

/* filter: whether record r of the batch reaches the handler (a record the scratch has
 * no room for passes: the handler decides, nothing is lost). */
static bool passes(sp_worker_t *w, const spate_record_t *r)
{
	return sp_filter_match(w->e->filter, r, w->fscratch) != 0;
}

/* filter: the lane's head records the filter drops are DONE at once, without a handler
 * call. Returns how many were consumed (0: the batch's first record passes). */
static uint32_t drop_filtered_head(sp_worker_t *w, sp_lane_t *l, uint32_t n)
{
	uint32_t k = 0;
	while (k < n && !passes(w, w->ptrs[k]))
		k++;
	if (k) {
		atomic_fetch_add_explicit(&w->st.filtered, k, memory_order_relaxed);
		sp_lane_consume(w, l, w->refs, k);
	}
	return k;
}

/* filter: the batch's first record passes; keep in w->ptrs only the records that pass
 * (w->hmap: each one's index in the batch, w->refs stays whole). Returns how many. */
static uint32_t compact_passing(sp_worker_t *w, uint32_t n)
{
	uint32_t m = 1;
	w->hmap[0] = 0;
	for (uint32_t i = 1; i < n; i++)
		if (passes(w, w->ptrs[i])) {
			w->hmap[m] = i;
			w->ptrs[m++] = w->ptrs[i];
		}
	return m;
}

/* filter: spread the handler's item failures (indexes 0..m) to the batch's indexes
 * (0..n), the filtered records not failed. hmap is increasing with hmap[j] >= j, so
 * this runs from the end in place. */
static void spread_failures(sp_worker_t *w, uint32_t m, uint32_t n)
{
	uint32_t j = m;
	for (uint32_t i = n; i-- > 0;) {
		if (j && w->hmap[j - 1] == i) {
			j--;
			w->failed[i] = w->failed[j];
			w->item_err[i] = w->item_err[j];
		} else {
			w->failed[i] = 0;
		}
	}
}

static bool run_batch(sp_worker_t *w, sp_lane_t *l)
{
	sp_engine_t *e = w->e;
	if (atomic_load_explicit(&l->released, memory_order_acquire)) {
		drop_released(w, l);
		return false;
	}
	if (e->leased) {
		/* lease mode: past the partition's local deadline (a process paused past its
		 * lease) no record of it reaches the handler; the lane waits until the engine
		 * thread releases the partition (its records are never DONE here) */
		int64_t dl = atomic_load_explicit(&l->part->eng->lease_deadline, memory_order_relaxed);
		if (dl && sp_now_ms() >= dl) {
			l->park_until_ms = sp_now_ms() + 5;
			l->window_wait = true; /* a wait, not a retry: nothing is copied */
			return false;
		}
	}
	if (l->dlq_pending) {
		uint32_t k = sp_lane_build_batch(w, l, l->dlq_pending);
		if (k < l->dlq_pending)
			l->dlq_pending = k;
		return k && sp_lane_dead_letter(w, l, w->refs, k, l->dlq_condition, NULL);
	}
	uint32_t limit = e->batch_size;
	if (l->bisect_limit && l->bisect_limit < limit)
		limit = l->bisect_limit;
	uint32_t n = sp_lane_build_batch(w, l, limit);
	if (!n)
		return false;
	/* failed items whose attempts are spent, at the head: they leave without another
	 * handler call (item failures send the first failed item and the spent ones right
	 * behind it; a spent one further back reaches the head so: sp_retry_failed ends the
	 * batch before it). One check per batch, none per record. */
	int spent;
	uint32_t k = sp_retry_spent_run(w, 0, n, n, NULL, &spent);
	if (k) {
		if (!sp_lane_dead_letter(w, l, w->refs, k, spent, NULL))
			return false;
		sp_retry_cut_before_spent(w, l, k, n);
		return true;
	}
	if (e->filter && drop_filtered_head(w, l, n))
		return true; /* the lane's next batch starts at a record that passes */
	l->window_wait = false;
	if (e->window_ms && !l->bisect_limit && n < limit && !w->bytes_full) {
		int64_t due = window_due(w, n);
		if (due) {
			/* batch.window.ms: wait for more (new runs wake the lane) */
			l->park_until_ms = due;
			l->window_wait = true;
			return false;
		}
	}
	/* m: the records the handler sees (all n without a filter) */
	uint32_t m = e->filter ? compact_passing(w, n) : n;
	memset(w->failed, 0, n);
	w->errbuf_len = 0;
	spate_batch_t b = {.recs = w->ptrs, .n = m, .failed = w->failed, .w = w};
	first_record(e);
	if (atomic_load_explicit(&e->cold_ns, memory_order_relaxed))
		sp_autoscale_cold_done(e);
	int64_t t0 = sp_now_ns(), wall0 = sp_wall_us();
	latency(w, &w->st.ts_start, &w->st.in_start, n, t0, wall0);
	/* completions this worker left unannounced wait for no handler call that may be long
	 * (the last one took more than a tenth of the deferral): the engine would otherwise
	 * learn of them only after it, or at its tick, and hold checkpoints and admission */
	if (w->owed_ns && w->last_took_ns > SP_WAKE_DEFER_NS / 10)
		wake_engine_if_sleeping(w);
	int res = e->h.handle(e->h.opaque, w->hctx, &b);
	uint64_t took = (uint64_t)(sp_now_ns() - t0);
	w->last_took_ns = took;
	atomic_fetch_add_explicit(&w->st.busy_ns, took, memory_order_relaxed);
	sp_hist_add(&w->st.handler, took / 1000, 1);
	atomic_fetch_add_explicit(&w->st.batches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st.records_in, m, memory_order_relaxed);

	if (res != SPATE_HANDLER_OK && res != SPATE_HANDLER_FAIL && res != SPATE_HANDLER_ITEM_FAILURES) {
		/* -1, a negative spate_err_t, anything else: the batch failed (guarantee 1) */
		if (!atomic_exchange(&e->bad_result_said, true))
			sp_msg(e, SP_MSG_ERROR,
			       "handler %s returned %d, which is not a spate_handler_res_t (OK %d, FAIL %d, "
			       "ITEM_FAILURES %d): its batch counts as failed (said once)",
			       e->h.name ? e->h.name : "(unnamed)", res, SPATE_HANDLER_OK, SPATE_HANDLER_FAIL,
			       SPATE_HANDLER_ITEM_FAILURES);
		if (!b.err[0])
			snprintf(b.err, sizeof(b.err), "handler returned %d (not a spate_handler_res_t)",
			         res);
		res = SPATE_HANDLER_FAIL;
	}
	bool items = e->item_failures && b.nfailed > 0 && res != SPATE_HANDLER_FAIL;
	bool whole =
	    !items && (res == SPATE_HANDLER_FAIL || (res == SPATE_HANDLER_ITEM_FAILURES && b.nfailed));
	if (w->nem) {
		/* what the handler emitted for the origins that succeeded reaches its sinks
		 * before they are DONE; a sink that fails fails the batch */
		uint32_t ok = 0;
		if (items)
			while (!w->failed[ok])
				ok++;
		else if (!whole)
			ok = m;
		char emsg[sizeof(b.err)];
		if (ok && sp_emit_flush(w, ok, emsg, sizeof(emsg)) != SPATE_OK) {
			snprintf(b.err, sizeof(b.err), "%s", emsg);
			res = SPATE_HANDLER_FAIL;
			items = false;
			whole = true;
		}
		sp_emit_reset(w);
	}
	if (!items && !whole) {
		latency(w, &w->st.ts_done, &w->st.in_done, n, sp_now_ns(), sp_wall_us());
		if (m < n)
			atomic_fetch_add_explicit(&w->st.filtered, n - m, memory_order_relaxed);
		sp_lane_consume(w, l, w->refs, n);
		sp_lane_bisect_next(l);
		return true;
	}
	sp_hist_bump(&w->st.errors, 1);
	if (m < n) {
		/* the retry works on the batch's records in lane order: the filtered ones are
		 * never failed, charged or dead-lettered */
		if (items) {
			/* the records before the first failed item are DONE: count the filtered ones */
			uint32_t jf = 0;
			while (!w->failed[jf])
				jf++;
			atomic_fetch_add_explicit(&w->st.filtered, w->hmap[jf] - jf, memory_order_relaxed);
			spread_failures(w, m, n);
		} else {
			/* a whole failure holds the passing records before the first filtered one;
			 * the rest stays at the lane's head and is built into the next batch */
			uint32_t pass = 1;
			while (pass < m && w->hmap[pass] == pass)
				pass++;
			n = pass;
		}
	}
	return sp_retry_failed(w, l, &b, res, n, items);
}

/* ---- the thread ------------------------------------------------------------------- */

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
	if (!deadline_ms) {
		pthread_cond_wait(cv, mu);
		return;
	}
	struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000};
	pthread_cond_timedwait(cv, mu, &ts);
}

/* Run the handler's init (activation) or fini (deactivation) on this thread, like a
 * Lambda execution environment that starts and stops. Called and returns with e->mu
 * held. Returns false when init failed (the engine stops with the error). */
static bool set_instance(sp_worker_t *w, bool up)
{
	sp_engine_t *e = w->e;
	pthread_mutex_unlock(&e->mu);
	int rc = SPATE_OK;
	if (up && e->h.init)
		rc = e->h.init(e->h.opaque, w->id, &w->hctx);
	else if (!up && e->h.fini)
		e->h.fini(e->h.opaque, w->hctx);
	if (!up)
		w->hctx = NULL;
	pthread_mutex_lock(&e->mu);
	if (rc != SPATE_OK) {
		if (!atomic_load_explicit(&e->init_failed, memory_order_relaxed)) /* under mu */
			snprintf(e->init_err, sizeof(e->init_err), "handler: init failed on worker %d: %s",
			         w->id, spate_err2str(rc));
		atomic_store_explicit(&e->init_failed, 1, memory_order_release); /* publishes init_err */
		sp_engine_wake(e);
		return false;
	}
	w->inited = up;
	return true;
}

static void *worker_main(void *arg)
{
	sp_worker_t *w = arg;
	sp_engine_t *e = w->e;
	pthread_mutex_lock(&e->mu);
	for (;;) {
		sp_lane_t *l = NULL;
		while (!atomic_load_explicit(&e->quit, memory_order_relaxed)) { /* under mu */
			bool active = w->id < e->active;
			if (active != w->inited) {
				if (!set_instance(w, active))
					goto leave; /* the engine stops with the error */
				continue;
			}
			if (!active) {
				/* a stopped worker; with none active it still minds the retry timers,
				 * so a parked lane wakes the pool up when its time comes */
				int64_t next = 0;
				if (!e->active && e->parked) {
					next = unpark_locked(e, sp_now_ms());
					if (e->ready_head || migration_wanted_locked(e))
						sp_autoscale_wake_locked(e);
				}
				settle(w);
				timed_wait(&e->idle_cv, &e->mu, next);
				continue;
			}
			if (atomic_load_explicit(&e->draining, memory_order_relaxed)) {
				/* a graceful stop: nothing new starts */
				e->idle_workers++;
				settle(w);
				timed_wait(&e->work_cv, &e->mu, 0);
				e->idle_workers--;
				continue;
			}
			/* parked lanes whose time came, even while lanes are ready: a retry, or a
			 * copy's second look, must not wait until the ready queue runs dry */
			if (e->park_due_ms) {
				int64_t now = sp_now_ms();
				if (now >= e->park_due_ms)
					unpark_locked(e, now);
			}
			/* copies before batches: a retrying lane that pins its chunks holds its
			 * partition's admission (and its other lanes), and a copy is short */
			if ((l = take_migration_locked(e)))
				break;
			if ((l = take_ready_locked(e)))
				break;
			int64_t next = e->parked ? unpark_locked(e, sp_now_ms()) : 0;
			if (e->ready_head && !atomic_load_explicit(&e->store_hold, memory_order_relaxed))
				continue;
			if ((l = take_ready_locked(e)))
				break; /* held: a released lane unparked just now */
			if ((l = take_migration_locked(e)))
				break;
			e->idle_workers++;
			settle(w);
			timed_wait(&e->work_cv, &e->mu, next);
			e->idle_workers--;
		}
		if (!l)
			break;
		l->state = LANE_RUNNING;
		e->nrunning++;
		pthread_mutex_unlock(&e->mu);

		int b = 0;
		if (!l->mig_wanted)
			while (b++ < SP_LANE_BURST && may_run(e, l) && run_batch(w, l) &&
			       !atomic_load_explicit(&e->quit, memory_order_relaxed))
				;
		bool copied = true;
		if (l->park_until_ms && !l->window_wait)
			copied = sp_lane_migrate(w, l);
		burst_done(w);

		pthread_mutex_lock(&e->mu);
		e->nrunning--;
		/* runs the engine queued after the copy (it saw the lane running, so it asked
		 * nobody to copy them), or runs the copy left for want of room: copy them next,
		 * or a full ring would wait forever. Not at once when nothing could be copied
		 * (no loop): then mig_retry_ms, or runs that come (sp_lanes_ready). */
		bool left = l->park_until_ms && !l->window_wait && sp_ring_nonempty(&l->rq);
		l->mig_wanted = copied && left;
		/* nothing fitted: room may come without a wake (chunks released, or this lane
		 * left as the last reader of its oldest chunk), so look again shortly; without
		 * this, the lane would pin its chunks until its next attempt, its partition
		 * would stay paused, and its other lanes would wait for the poison (guarantee 4) */
		l->mig_retry_ms = !copied && left ? sp_now_ms() + SP_MIG_RETRY_MS : 0;
		if (l->park_until_ms) {
			l->state = LANE_PARKED;
			l->next = e->parked;
			e->parked = l;
			if (l->mig_wanted)
				e->nmig++;
			int64_t due = l->mig_retry_ms && l->mig_retry_ms < l->park_until_ms ? l->mig_retry_ms
			                                                                    : l->park_until_ms;
			if (!e->park_due_ms || due < e->park_due_ms)
				e->park_due_ms = due;
			/* an idle worker must learn the new deadline (this one may be stopped) */
			if (e->idle_workers)
				pthread_cond_signal(&e->work_cv);
			else if (!e->active)
				pthread_cond_broadcast(&e->idle_cv);
		} else if (lane_has_work(l)) {
			push_ready_locked(e, l);
			/* this worker may have been stopped meanwhile (the autoscaler scaled down):
			 * without a wakeup the lane would wait while an active worker sleeps */
			if (e->idle_workers)
				pthread_cond_signal(&e->work_cv);
			else if (!e->active)
				sp_autoscale_wake_locked(e);
		} else {
			l->state = LANE_IDLE;
		}
	}
leave:
	/* also after a failed init: sp_workers_stop waits for exited before it joins */
	if (w->inited)
		set_instance(w, false);
	pthread_mutex_unlock(&e->mu);
	atomic_store_explicit(&w->exited, true, memory_order_release);
	sp_engine_wake(e);
	return NULL;
}

int sp_workers_start(sp_engine_t *e, char *err, size_t sz)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&e->work_cv);
	pthread_cond_init(&e->work_cv, &ca);
	pthread_cond_init(&e->idle_cv, &ca);
	e->workers_cv_ready = true;
	pthread_condattr_destroy(&ca);

	e->workers = calloc((size_t)e->nworkers, sizeof(*e->workers));
	if (!e->workers)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
	for (int i = 0; i < e->nworkers; i++) {
		sp_worker_t *w = aligned_alloc(64, (sizeof(sp_worker_t) + 63) & ~(size_t)63);
		if (!w)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
		memset(w, 0, sizeof(*w));
		e->workers[i] = w;
		w->e = e;
		w->id = i;
		w->rng = (uint64_t)sp_now_ns() ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL);
		if (!w->rng)
			w->rng = 1;
		w->ptrs = calloc(e->batch_size, sizeof(*w->ptrs));
		w->refs = calloc(e->batch_size, sizeof(*w->refs));
		w->failed = calloc(e->batch_size, 1);
		w->item_err = calloc(e->batch_size, sizeof(uint32_t));
		w->dlqrecs = calloc(e->batch_size, sizeof(*w->dlqrecs));
		if (!w->ptrs || !w->refs || !w->failed || !w->item_err || !w->dlqrecs)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
		if (e->filter) {
			w->fscratch = sp_filter_scratch_new();
			w->hmap = calloc(e->batch_size, sizeof(*w->hmap));
			if (!w->fscratch || !w->hmap)
				return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
		}
	}
	for (int i = 0; i < e->nworkers; i++) {
		int rc = pthread_create(&e->workers[i]->th, NULL, worker_main, e->workers[i]);
		if (rc)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "pthread_create: %s", strerror(rc));
		e->workers[i]->started = true;
	}
	return SPATE_OK;
}

void sp_workers_quit(sp_engine_t *e)
{
	if (!e->workers)
		return;
	pthread_mutex_lock(&e->mu);
	atomic_store_explicit(&e->quit, true, memory_order_relaxed);
	pthread_cond_broadcast(&e->work_cv);
	if (e->workers_cv_ready)
		pthread_cond_broadcast(&e->idle_cv);
	pthread_mutex_unlock(&e->mu);
}

void sp_workers_stop(sp_engine_t *e)
{
	if (!e->workers)
		return;
	sp_workers_quit(e);
	/* A worker may wait for room in its completion ring (push_comp): keep draining the
	 * rings until every worker has left its loop, then join. */
	for (;;) {
		bool all = true;
		for (int i = 0; i < e->nworkers; i++) {
			sp_worker_t *w = e->workers[i];
			if (w && w->started && !atomic_load_explicit(&w->exited, memory_order_acquire))
				all = false;
		}
		if (all)
			break;
		if (!sp_tracker_drain(e)) {
			struct pollfd pf = {.fd = e->wakefd, .events = POLLIN};
			if (poll(&pf, 1, 10) > 0) {
				uint64_t v;
				ssize_t r = read(e->wakefd, &v, sizeof(v));
				(void)r;
			}
		}
	}
	for (int i = 0; i < e->nworkers; i++) {
		sp_worker_t *w = e->workers[i];
		if (w && w->started) {
			pthread_join(w->th, NULL);
			w->started = false;
		}
	}
}

void sp_workers_free(sp_engine_t *e)
{
	if (!e->workers)
		return;
	for (int i = 0; i < e->nworkers; i++) {
		sp_worker_t *w = e->workers[i];
		if (!w)
			continue;
		free(w->ptrs);
		free(w->refs);
		free(w->failed);
		free(w->item_err);
		free(w->errbuf);
		free(w->dlqbuf);
		free(w->dlqrecs);
		free(w->dlqhdrs);
		free(w->hmap);
		sp_filter_scratch_free(w->fscratch);
		sp_emit_free(w);
		free(w);
	}
	free(e->workers);
	e->workers = NULL;
}

void sp_lanes_release(sp_engine_t *e, sp_part_t *p)
{
	pthread_mutex_lock(&e->mu);
	for (uint32_t i = 0; i < e->factor; i++) {
		sp_lane_t *l = p->eng->lanes[i];
		atomic_store_explicit(&l->released, true, memory_order_release);
		if (l->state == LANE_PARKED) {
			leave_parked_locked(e, parked_link_locked(e, l));
		} else if (l->state == LANE_IDLE && lane_has_work(l)) {
			push_ready_locked(e, l);
		}
	}
	if (e->ready_head) {
		if (e->idle_workers)
			pthread_cond_broadcast(&e->work_cv);
		else if (!e->active)
			sp_autoscale_wake_locked(e);
	}
	pthread_mutex_unlock(&e->mu);
}

bool sp_lanes_quiet(sp_engine_t *e, sp_part_t *p)
{
	bool quiet = true;
	pthread_mutex_lock(&e->mu);
	for (uint32_t i = 0; quiet && i < e->factor; i++) {
		sp_lane_t *l = p->eng->lanes[i];
		quiet = l->state == LANE_IDLE && !lane_has_work(l) && !l->arena && !l->mq;
	}
	pthread_mutex_unlock(&e->mu);
	return quiet;
}

void sp_lanes_free_arenas(sp_engine_t *e)
{
	for (size_t i = 0; i < e->nparts; i++)
		for (uint32_t l = 0; e->parts[i]->eng->lane_block && l < e->factor; l++) {
			sp_lane_t *ln = &e->parts[i]->eng->lane_block[l];
			while (ln->arena) {
				sp_arena_t *a = ln->arena;
				ln->arena = a->next;
				free(a);
			}
			free(ln->mq);
			ln->mq = NULL;
		}
}
