/* retry.c - what a failed batch does to its lane: item failures, bisect, attempts,
 * record age, backoff, and the DLQ (Lambda's rules, per lane instead of per partition).
 *
 *  - whole-batch failure with bisect.on.error: retry at once with half the batch size,
 *    recursively, until the failing records are isolated; splits charge no attempts;
 *  - a failed attempt that counts charges every record it held (items only, with
 *    report.item.failures), then parks the lane on a timer with exponential backoff and
 *    jitter; a parked lane is re-queued by whichever worker next looks for work;
 *  - records past max.retry.attempts or max.record.age.ms go to the DLQ (durably, before
 *    they are DONE), or are dropped, logged and counted when no DLQ is configured; a DLQ
 *    that cannot be written parks the lane and tries again: nothing is skipped.
 * @locality the worker that holds the lane.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exhausted failed items of one batch sent to the DLQ in one write. */
#define SP_ITEM_DLQ_MAX 64

static uint64_t next_rand(sp_worker_t *w)
{
	/* xorshift64*: jitter only */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ULL;
}

/* Park the lane for the backoff of attempt n (1 = first retry). */
void sp_lane_park(sp_worker_t *w, sp_lane_t *l, uint32_t n)
{
	sp_engine_t *e = w->e;
	int64_t d = e->backoff_ms;
	for (uint32_t i = 1; i < n && d < e->backoff_max_ms; i++)
		d *= 2;
	if (d > e->backoff_max_ms)
		d = e->backoff_max_ms;
	if (d > 1)
		d = d / 2 + (int64_t)(next_rand(w) % (uint64_t)(d / 2 + 1)); /* jitter in [d/2, d] */
	atomic_fetch_add_explicit(&w->st.retries, 1, memory_order_relaxed);
	l->park_until_ms = sp_now_ms() + (d > 0 ? d : 0);
	if (d <= 0)
		l->park_until_ms = 0; /* no backoff: retry at once */
}

/* The condition under which a failed record leaves, or -1 while it may still retry. */
static int exhausted(sp_engine_t *e, const spate_record_t *r, const sp_rstate_t *st)
{
	if (e->max_age_ms >= 0 && sp_wall_ms() - r->timestamp_ms > e->max_age_ms)
		return SP_DLQ_AGE;
	if (e->max_retry >= 0 && st->attempts > e->max_retry)
		return SP_DLQ_ATTEMPTS;
	return -1;
}

int sp_retry_exhausted(sp_engine_t *e, const spate_record_t *r, const sp_rstate_t *st)
{
	return st->attempts ? exhausted(e, r, st) : -1;
}

void sp_retry_cut_before_spent(sp_worker_t *w, sp_lane_t *l, uint32_t s, uint32_t n)
{
	for (uint32_t j = s + 1; j < n; j++) {
		if (sp_retry_exhausted(w->e, sp_bref_rec(&w->refs[j]), sp_bref_st(&w->refs[j])) >= 0) {
			uint32_t cut = j - s;
			if (!l->bisect_limit || cut < l->bisect_limit)
				l->bisect_limit = cut;
			return;
		}
	}
}

uint32_t sp_retry_spent_run(sp_worker_t *w, uint32_t s, uint32_t n, uint32_t max, const uint8_t *only,
                            int *cond)
{
	*cond = sp_retry_exhausted(w->e, sp_bref_rec(&w->refs[s]), sp_bref_st(&w->refs[s]));
	if (*cond < 0)
		return 0;
	uint32_t k = 1;
	while (s + k < n && k < max && (!only || only[s + k]) &&
	       sp_retry_exhausted(w->e, sp_bref_rec(&w->refs[s + k]), sp_bref_st(&w->refs[s + k])) == *cond)
		k++;
	return k;
}

static void charge(sp_rstate_t *st, int64_t wall)
{
	if (st->attempts < UINT16_MAX)
		st->attempts++;
	if (!st->first_fail_ms)
		st->first_fail_ms = wall;
	st->last_fail_ms = wall;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (*cap >= need)
		return 0;
	size_t nc = need * 2;
	void *np = realloc(*p, nc * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

/* Write refs[0..k) to the DLQ (or drop them when none is configured), then consume them.
 * errs[i] (may be NULL) is each record's error. Returns false when the DLQ failed: the
 * records stay at the head with l->dlq_pending set and the lane parked. */
bool sp_lane_dead_letter(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k, int cond,
                        const char *const *errs)
{
	sp_engine_t *e = w->e;
	if (!e->dlq_open) {
		for (uint32_t i = 0; i < k; i++) {
			const spate_record_t *r = sp_bref_rec(&refs[i]);
			char pos[SPATE_POSITION_MAX];
			sp_msg(e, SP_MSG_WARN, "dropped %s position %s after %u attempts (%s): %s (no dlq configured)",
			       r->partition->name, spate_position_fmt(&r->position, pos, sizeof(pos)),
			       sp_bref_st(&refs[i])->attempts, sp_dlq_conditions[cond], errs && errs[i] ? errs[i] : l->last_err);
		}
		atomic_fetch_add_explicit(&w->st.dropped, k, memory_order_relaxed);
		sp_lane_consume(w, l, refs, k);
		l->dlq_pending = 0;
		return true;
	}
	size_t nh = 0;
	for (uint32_t i = 0; i < k; i++)
		nh += sp_bref_rec(&refs[i])->header_cnt + SP_DLQ_HDRS;
	if (grow((void **)&w->dlqhdrs, &w->dlqhdrs_cap, nh, sizeof(spate_header_t)) ||
	    grow((void **)&w->dlqbuf, &w->dlqbuf_cap, (size_t)k * SP_DLQ_VALBYTES, 1)) {
		sp_msg(e, SP_MSG_ERROR, "dlq: out of memory for %u records; will retry", k);
		sp_lane_park(w, l, 1);
		l->dlq_pending = k;
		l->dlq_condition = cond;
		return false;
	}
	spate_push_record_t *out = w->dlqrecs; /* batch_size entries, k <= batch_size */
	size_t max_bytes = e->dlq.ops->max_record_bytes ? e->dlq.ops->max_record_bytes(&e->dlq) : SIZE_MAX;
	spate_header_t *h = w->dlqhdrs;
	char *vb = w->dlqbuf;
	for (uint32_t i = 0; i < k; i++) {
		const spate_record_t *r = sp_bref_rec(&refs[i]);
		const sp_rstate_t *st = sp_bref_st(&refs[i]);
		int c = cond;
		size_t orig = r->key_len + r->value_len;
		for (size_t j = 0; j < r->header_cnt; j++)
			orig += r->headers[j].key_len + r->headers[j].value_len;
		bool meta_only = orig + SP_DLQ_VALBYTES > max_bytes;
		if (meta_only)
			c = SP_DLQ_PAYLOAD;
		out[i] = (spate_push_record_t){.key = r->key,
		                               .key_len = r->key_len,
		                               .value = meta_only ? NULL : r->value,
		                               .value_len = meta_only ? 0 : r->value_len,
		                               .headers = h,
		                               .timestamp_ms = r->timestamp_ms};
		size_t hn = 0;
		if (!meta_only)
			for (size_t j = 0; j < r->header_cnt; j++)
				h[hn++] = r->headers[j];
		const char *err = errs && errs[i] ? errs[i] : l->last_err;
		char pos[SPATE_POSITION_MAX];
		spate_position_fmt(&r->position, pos, sizeof(pos));
		sp_dlq_meta_t m = {.condition = c,
		                   .attempts = st->attempts,
		                   .source = r->partition->source,
		                   .partition = r->partition->name,
		                   .position = pos,
		                   .first_ms = st->first_fail_ms,
		                   .last_ms = st->last_fail_ms,
		                   .error = err};
		hn += sp_dlq_headers(h + hn, vb, SP_DLQ_VALBYTES, &m);
		vb += SP_DLQ_VALBYTES;
		out[i].header_cnt = hn;
		h += hn;
	}
	char errstr[256] = "";
	int rc = sp_dlq_write(e, out, k, errstr, sizeof(errstr));
	if (rc != SPATE_OK) {
		atomic_fetch_add_explicit(&w->st.dlq_errors, 1, memory_order_relaxed);
		const spate_record_t *r = sp_bref_rec(&refs[0]);
		char pos[SPATE_POSITION_MAX];
		sp_msg(e, SP_MSG_ERROR, "dlq: cannot write %u records of %s from position %s: %s; the lane waits and retries",
		       k, r->partition->name, spate_position_fmt(&r->position, pos, sizeof(pos)), errstr);
		l->dlq_pending = k;
		l->dlq_condition = cond;
		sp_lane_park(w, l, (uint32_t)(atomic_load(&w->st.dlq_errors) % 8) + 1);
		if (!l->park_until_ms)
			l->park_until_ms = sp_now_ms() + 1;
		return false;
	}
	atomic_fetch_add_explicit(&w->st.dlq, k, memory_order_relaxed);
	sp_lane_consume(w, l, refs, k);
	l->dlq_pending = 0;
	return true;
}

/* A batch of the bisect region is done: the next batch is the pending second half of the
 * innermost split, or a normal batch once no split is pending. */
void sp_lane_bisect_next(sp_lane_t *l)
{
	if (!l->bisect_limit)
		return;
	l->bisect_limit = l->bisect_depth ? l->bisect_stack[--l->bisect_depth] : 0;
}

/* The batch b of n records (w->refs) failed (res FAIL, or ITEM_FAILURES with items
 * marked; items: they count as item failures, report.item.failures): item failures retry from the first failed item; a whole-batch failure bisects (no
 * attempt charged) or charges the records, sends the exhausted ones to the DLQ and parks
 * the lane for the backoff. Returns whether the worker may run the lane's next batch at
 * once (false: parked, or the DLQ failed). */
bool sp_retry_failed(sp_worker_t *w, sp_lane_t *l, const spate_batch_t *bp, int res, uint32_t n, bool items)
{
	sp_engine_t *e = w->e;
	const spate_batch_t *b = bp;
	int64_t wall = sp_wall_ms();
	if (items) {
		uint32_t f = 0;
		while (!w->failed[f])
			f++;
		atomic_fetch_add_explicit(&w->st.failed, b->nfailed, memory_order_relaxed);
		sp_lane_consume(w, l, w->refs, f);
		for (uint32_t i = f; i < n; i++)
			if (w->failed[i])
				charge(sp_bref_st(&w->refs[i]), wall);
		const char *msg = w->item_err[f] != UINT32_MAX ? w->errbuf + w->item_err[f] : "item failed";
		snprintf(l->last_err, sizeof(l->last_err), "%s", msg);
		/* the failed item and the exhausted failed items right behind it leave together,
		 * each with its own message (at most SP_ITEM_DLQ_MAX at once) */
		int cond;
		uint32_t k = sp_retry_spent_run(w, f, n, SP_ITEM_DLQ_MAX, w->failed, &cond);
		if (k) {
			const char *errs[SP_ITEM_DLQ_MAX];
			for (uint32_t i = 0; i < k; i++) {
				uint32_t o = w->item_err[f + i];
				errs[i] = o != UINT32_MAX ? w->errbuf + o : "item failed";
			}
			if (!sp_lane_dead_letter(w, l, &w->refs[f], k, cond, errs))
				return false;
			sp_retry_cut_before_spent(w, l, f + k, n);
			return true;
		}
		sp_retry_cut_before_spent(w, l, f, n);
		sp_lane_park(w, l, sp_bref_st(&w->refs[f])->attempts);
		return l->park_until_ms == 0;
	}
	/* the whole batch failed */
	atomic_fetch_add_explicit(&w->st.failed, n, memory_order_relaxed);
	snprintf(l->last_err, sizeof(l->last_err), "%s",
	         b->err[0] ? b->err : (res == SPATE_HANDLER_FAIL ? "handler failed the batch" : "item failed"));
	if (e->bisect && n > 1) {
		/* split: retry at once with half the size; no attempt is charged */
		if (l->bisect_depth < SP_BISECT_DEPTH)
			l->bisect_stack[l->bisect_depth++] = n - n / 2;
		l->bisect_limit = n / 2;
		atomic_fetch_add_explicit(&w->st.retries, 1, memory_order_relaxed);
		return true;
	}
	for (uint32_t i = 0; i < n; i++)
		charge(sp_bref_st(&w->refs[i]), wall);
	/* attempts never grow along a lane, so exhausted records form a prefix; those of
	 * the head's condition leave now, any others of another condition behind them at the
	 * head of the next batch (run_batch) */
	int cond;
	uint32_t k = sp_retry_spent_run(w, 0, n, n, NULL, &cond);
	if (k) {
		if (!sp_lane_dead_letter(w, l, w->refs, k, cond, NULL))
			return false;
		if (k == n)
			sp_lane_bisect_next(l);
		else
			sp_retry_cut_before_spent(w, l, k, n);
		return true;
	}
	sp_retry_cut_before_spent(w, l, 0, n); /* a spent one behind (its age) is not handled again */
	sp_lane_park(w, l, sp_bref_st(&w->refs[0])->attempts);
	return l->park_until_ms == 0;
}
