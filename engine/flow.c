/* flow.c - the in-flight bounds (max.inflight.bytes, max.inflight.records), per partition.
 *
 * What a partition has in flight: the bytes of its chunks that are not released yet, the
 * engine's allocation of each chunk (descriptors and states) until the chunk is freed,
 * and the retry arenas of its lanes (a retrying lane copies its queued records there,
 * see worker.c); and its records that are not DONE. A record that is DONE leaves the
 * count at once, even while an earlier record of its partition still retries.
 *
 * Each partition that takes part (started, not released) has a share of each bound:
 * bound / partitions. Its share is reserved for it: what the others may take is the bound
 * minus what is reserved and unused. So a partition that cannot make progress (a poison
 * record retried forever) fills at most what the others leave, and every other partition
 * can always take its own share: one stalled lane never pauses the source as a whole.
 * Admission of a chunk to partition p (u = p's use, T = the engine's total, R = the sum
 * over partitions of max(0, share - use), B = the bound), for bytes and for records:
 *
 *     u + x <= share   or   T + x + (R - max(0, share - u)) <= B
 *
 * keeps T + R <= B, so every partition's reserve stays available. One chunk always
 * enters a partition with nothing in flight, so progress never deadlocks (with N
 * partitions the engine can pass the bound by at most one chunk of each).
 *
 * A chunk that may not enter is held, in order, behind p's other held chunks, and
 * p->paused tells the source to hand out no more of p (the log reader then stops reading
 * p; the Kafka source pauses fetching it). Held chunks are admitted as records become
 * DONE; the partition resumes once it is below 3/4 of its share or the engine below 3/4
 * of the bound (SP_RESUME_DIV), so a source is not toggled for every chunk.
 *
 * @locality the engine (tracker) thread only.
 */
#include "engine/engine.h"

#include <stdlib.h>

/* What p leaves unused of its share. */
static uint64_t unused(uint64_t use, uint64_t share)
{
	return use < share ? share - use : 0;
}

static void total_add(_Atomic uint64_t *t, int64_t d)
{
	/* one writer (this thread): a plain load and store, no locked instruction */
	uint64_t v = atomic_load_explicit(t, memory_order_relaxed);
	atomic_store_explicit(t, v + (uint64_t)d, memory_order_relaxed);
}

/* What a retrying lane of p may copy now, p's use being use: what p's share leaves
 * (copies never borrow from the other partitions' reserves, so no other partition's count
 * can make it stale), on top of the copies already counted (see mig_limit in engine.h). */
static void mig_publish(sp_engine_t *e, struct sp_part_eng *pe, uint64_t use)
{
	atomic_store_explicit(&pe->mig_limit, pe->mig_seen + unused(use, e->share_bytes), memory_order_seq_cst);
}

void sp_flow_add(sp_engine_t *e, sp_part_t *p, int64_t dbytes, int64_t drecords)
{
	struct sp_part_eng *pe = p->eng;
	if (pe->counted) {
		e->res_bytes -= unused(pe->infl_bytes, e->share_bytes);
		e->res_records -= unused(pe->infl_records, e->share_records);
	}
	pe->infl_bytes += (uint64_t)dbytes;
	pe->infl_records += (uint64_t)drecords;
	if (pe->counted) {
		e->res_bytes += unused(pe->infl_bytes, e->share_bytes);
		e->res_records += unused(pe->infl_records, e->share_records);
	}
	if (dbytes) {
		mig_publish(e, pe, pe->infl_bytes);
		total_add(&e->inflight_bytes, dbytes);
		uint64_t t = atomic_load_explicit(&e->inflight_bytes, memory_order_relaxed);
		if (t > e->peak_inflight_bytes)
			e->peak_inflight_bytes = t;
	}
	if (drecords)
		total_add(&e->inflight_records, drecords);
}

/* Shares and reserves from scratch (the number of counted partitions changed). */
static void reshare(sp_engine_t *e)
{
	size_t n = e->ncounted ? e->ncounted : 1;
	e->share_bytes = e->max_inflight_bytes / n;
	e->share_records = e->max_inflight_records / n;
	e->res_bytes = e->res_records = 0;
	for (size_t i = 0; i < e->nparts; i++) {
		struct sp_part_eng *pe = e->parts[i]->eng;
		mig_publish(e, pe, pe->infl_bytes);
		if (!pe->counted)
			continue;
		e->res_bytes += unused(pe->infl_bytes, e->share_bytes);
		e->res_records += unused(pe->infl_records, e->share_records);
	}
}

void sp_flow_count(sp_engine_t *e, sp_part_t *p, bool counted)
{
	if (p->eng->counted == counted)
		return;
	p->eng->counted = counted;
	if (counted)
		e->ncounted++;
	else
		e->ncounted--;
	reshare(e);
}

/* One bound's test: x more of it for a partition using use. */
static bool dim_fits(uint64_t use, uint64_t x, uint64_t share, uint64_t total, uint64_t reserved,
                     uint64_t bound, bool counted)
{
	if (use + x <= share)
		return true;
	uint64_t others = reserved - (counted ? unused(use, share) : 0);
	return total + x + others <= bound;
}

/* The reserves (unused shares) of the partitions other than self that hold something:
 * records in flight or chunks held back. Called only for a partition that holds nothing
 * but retrying lanes' copies (sp_flow_fits), so its loop over the partitions is rare. */
static uint64_t busy_reserves(const sp_engine_t *e, const struct sp_part_eng *self)
{
	uint64_t r = 0;
	for (size_t i = 0; i < e->nparts; i++) {
		const struct sp_part_eng *q = e->parts[i]->eng;
		if (q != self && q->counted && (q->infl_records || q->held_head))
			r += unused(q->infl_bytes, e->share_bytes);
	}
	return r;
}

bool sp_flow_fits(sp_engine_t *e, const sp_ck_t *c)
{
	struct sp_part_eng *pe = c->pub.part->eng;
	uint64_t x = c->pub.bytes + sizeof(*c) + c->body_size;
	/* A retrying lane's copy and this chunk must not take the same room: lower the
	 * copies' limit as if the chunk entered, then count what workers reserved and the
	 * tracker has not counted yet. A worker looks at the limit again after it reserved
	 * (sp_lane_migrate), and both sides are sequentially consistent, so one of the two
	 * always sees the other. */
	mig_publish(e, pe, pe->infl_bytes + x);
	if (!pe->infl_records)
		return true;
	/* No lane reads any chunk of p: what it holds are retrying lanes' copies and what
	 * is left of the chunks they came from. Under its share, one chunk enters wherever
	 * the engine's bound has room beside the reserves of the partitions that hold
	 * something, the idle ones' reserves lent: else a chunk larger than the share's rest
	 * (push chunks of small records are up to 1.5 MB) would wait for the poison records
	 * while p's other lanes have nothing (guarantee 4), however empty the engine. The
	 * total stays within the bound; an idle partition that then fills its own reserve may
	 * pass it by that one chunk until it is handled. */
	uint64_t out = atomic_load_explicit(&pe->mig_taken, memory_order_seq_cst) - pe->mig_seen;
	uint64_t tb = atomic_load_explicit(&e->inflight_bytes, memory_order_relaxed);
	uint64_t tr = atomic_load_explicit(&e->inflight_records, memory_order_relaxed);
	if (!pe->live_chunks && pe->infl_bytes < e->share_bytes && tr + c->pub.n <= e->max_inflight_records &&
	    tb + x + out + busy_reserves(e, pe) <= e->max_inflight_bytes)
		return true;
	if (dim_fits(pe->infl_bytes, x + out, e->share_bytes, tb, e->res_bytes, e->max_inflight_bytes, pe->counted) &&
	    dim_fits(pe->infl_records, c->pub.n, e->share_records, tr, e->res_records, e->max_inflight_records,
	             pe->counted))
		return true;
	sp_flow_unfit(e, c);
	return false;
}

void sp_flow_unfit(sp_engine_t *e, const sp_ck_t *c)
{
	struct sp_part_eng *pe = c->pub.part->eng;
	mig_publish(e, pe, pe->infl_bytes);
}

void sp_flow_hold(sp_engine_t *e, sp_ck_t *c)
{
	sp_part_t *p = c->pub.part;
	struct sp_part_eng *pe = p->eng;
	c->next = NULL;
	if (pe->held_tail)
		pe->held_tail->next = c;
	else
		pe->held_head = c;
	pe->held_tail = c;
	pe->held_bytes += c->pub.bytes;
	e->held_bytes += c->pub.bytes;
	if (!p->paused) {
		p->paused = true;
		e->nheld_parts++;
	}
}

void sp_flow_drop_held(sp_engine_t *e, sp_part_t *p)
{
	struct sp_part_eng *pe = p->eng;
	while (pe->held_head) {
		sp_ck_t *c = pe->held_head;
		pe->held_head = c->next;
		sp_ck_free(c);
	}
	pe->held_tail = NULL;
	e->held_bytes -= pe->held_bytes;
	pe->held_bytes = 0;
	if (p->paused) {
		p->paused = false;
		e->nheld_parts--;
	}
}

/* Below the low mark: p may be asked for more. */
static bool may_resume(sp_engine_t *e, const struct sp_part_eng *pe)
{
	if (!pe->infl_records)
		return true;
	if (pe->infl_bytes <= e->share_bytes / SP_RESUME_DIV * (SP_RESUME_DIV - 1) &&
	    pe->infl_records <= e->share_records / SP_RESUME_DIV * (SP_RESUME_DIV - 1))
		return true;
	uint64_t tb = atomic_load_explicit(&e->inflight_bytes, memory_order_relaxed) + e->held_bytes;
	uint64_t tr = atomic_load_explicit(&e->inflight_records, memory_order_relaxed);
	return tb <= e->max_inflight_bytes / SP_RESUME_DIV * (SP_RESUME_DIV - 1) &&
	       tr <= e->max_inflight_records / SP_RESUME_DIV * (SP_RESUME_DIV - 1);
}

int sp_flow_release(sp_engine_t *e, bool (*admit)(sp_engine_t *, sp_ck_t *))
{
	int moved = 0;
	if (!e->nheld_parts)
		return 0;
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		struct sp_part_eng *pe = p->eng;
		if (!p->paused)
			continue;
		while (pe->held_head) {
			sp_ck_t *c = pe->held_head, *nx = c->next;
			if (!admit(e, c))
				break;
			pe->held_head = nx;
			if (!nx)
				pe->held_tail = NULL;
			pe->held_bytes -= c->pub.bytes;
			e->held_bytes -= c->pub.bytes;
			moved++;
		}
		if (!pe->held_head && may_resume(e, pe)) {
			p->paused = false;
			e->nheld_parts--;
		}
	}
	return moved;
}
