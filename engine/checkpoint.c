/* checkpoint.c - the coordinator that loads checkpoints at start and flushes the
 * tracker's watermarks to the store: on an interval, after a count of DONE records, and
 * at stop.
 *
 * At start each partition's checkpoint is loaded; a partition without one starts at
 * starting.position, which is resolved once by the source and saved at once
 * (guarantee 6: a later restart never re-resolves "latest" and skips records).
 * A failed save is logged and retried on the next tick; the tracker's state is not lost.
 * A store that answers SPATE_ERR_BUSY (a Kafka group in a rebalance) is not failing: the
 * save is retried on the next tick without counting or logging an error. Until a save
 * goes through, the workers start no new handler batch (sp_workers_hold): what is
 * handled meanwhile could not be checkpointed, and a crash would have it handled again,
 * so the engine does not run ahead of its last checkpoint by more than about a
 * checkpoint interval. A partition being released does not wait for its in-flight
 * records then (they would not be handled): its release completes at once.
 * @locality the engine thread only.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Whether p's checkpoint may be written: it is not released, nor being released lost. */
static bool savable(const sp_part_t *p)
{
	return p->eng->dirty && !p->eng->revoked && !(p->eng->releasing && p->eng->release_lost);
}

/* The entry of p's checkpoint: in lease mode conditional on its lease. */
static sp_store_entry_t entry_of(sp_engine_t *e, sp_part_t *p, int *rc)
{
	sp_store_entry_t ent = {.name = p->pub.name, .ckpt = p->eng->ckpt, .rc = rc};
	if (e->leased) {
		ent.owner = e->lease_owner;
		ent.counter = p->eng->lease_counter;
	}
	if (rc)
		*rc = SPATE_ERR_STORE; /* a store that does not set it: the save's own result */
	return ent;
}

/* The audit line of a checkpoint write, and what a refused one means. sent: the
 * wall-clock ms before the write was sent (what an audit compares with the time another
 * process's acquire returned). */
static void audited(sp_engine_t *e, sp_part_t *p, const sp_store_entry_t *ent, int rc, const char *err,
                    int64_t sent)
{
	if (!e->leased)
		return;
	char b[80];
	sp_msg(e, SP_MSG_DEBUG,
	       "lease audit: checkpoint %s owner=%s counter=%" PRIu64 " at=%s sent=%" PRId64 ": %s",
	       ent->name, ent->owner, ent->counter, sp_ckpt_fmt(&ent->ckpt, b, sizeof(b)), sent,
	       rc == SPATE_OK          ? "written"
	       : rc == SPATE_ERR_LEASE ? "refused (lease gone)"
	                               : err);
	if (rc == SPATE_ERR_LEASE)
		sp_lease_lost(e, p, "a checkpoint write was refused");
	else if (rc == SPATE_ERR_STORE_LOST)
		sp_engine_fatal(e, rc, err);
}

static int save_dirty(sp_engine_t *e, char *err, size_t sz)
{
	size_t n = 0;
	for (size_t i = 0; i < e->nparts; i++)
		if (savable(e->parts[i]))
			n++;
	if (!n)
		return SPATE_OK;
	if (!e->store_open) {
		for (size_t i = 0; i < e->nparts; i++)
			e->parts[i]->eng->dirty = false;
		return SPATE_OK;
	}
	sp_store_entry_t stack[64];
	int rstack[64];
	sp_part_t *pstack[64];
	sp_store_entry_t *ents = n <= 64 ? stack : malloc(n * sizeof(*ents));
	int *rcs = n <= 64 ? rstack : malloc(n * sizeof(*rcs));
	sp_part_t **ps = n <= 64 ? pstack : malloc(n * sizeof(*ps));
	if (!ents || !rcs || !ps) {
		if (ents != stack)
			free(ents);
		if (rcs != rstack)
			free(rcs);
		if (ps != pstack)
			free(ps);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
	}
	size_t k = 0;
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		if (savable(p)) {
			ps[k] = p;
			ents[k] = entry_of(e, p, &rcs[k]);
			k++;
		}
	}
	int64_t sent = sp_wall_ms();
	int rc = e->store.ops->save(&e->store, ents, k, err, sz);
	bool per_entry = e->leased && e->store.ops->version >= 3 && e->store.ops->leases;
	int ret = rc;
	if (per_entry)
		ret = SPATE_OK;
	if (rc == SPATE_OK)
		sp_hist_bump(&e->ckpt_commits, 1);
	for (size_t j = 0; j < k; j++) {
		int r = per_entry ? rcs[j] : rc;
		if (r == SPATE_OK) {
			ps[j]->eng->saved = ents[j].ckpt;
			ps[j]->eng->dirty = false;
		} else if (per_entry && r != SPATE_ERR_LEASE && ret == SPATE_OK) {
			ret = r;
		}
		if (per_entry)
			audited(e, ps[j], &ents[j], r, err, sent);
	}
	if (ents != stack)
		free(ents);
	if (rcs != rstack)
		free(rcs);
	if (ps != pstack)
		free(ps);
	return ret;
}

int sp_checkpoint_maybe_flush(sp_engine_t *e, bool force)
{
	int64_t now = sp_now_ms();
	if (!force && now - e->last_flush_ms < e->ckpt_interval_ms &&
	    e->done_since_flush < (uint64_t)e->ckpt_records)
		return SPATE_OK;
	char err[512] = "";
	int rc = save_dirty(e, err, sizeof(err));
	e->last_flush_ms = now;
	if (rc == SPATE_ERR_BUSY) {
		atomic_fetch_add_explicit(&e->store_busy, 1, memory_order_relaxed);
		if (!atomic_load_explicit(&e->store_hold, memory_order_relaxed))
			sp_msg(e, SP_MSG_INFO,
			       "checkpoint store: %s; no new handler batches until it takes a checkpoint",
			       err);
		else
			sp_msg(e, SP_MSG_DEBUG, "checkpoint store: %s (deferred)", err);
		sp_workers_hold(e, true);
		return rc;
	}
	if (!rc && atomic_load_explicit(&e->store_hold, memory_order_relaxed)) {
		sp_msg(e, SP_MSG_INFO, "checkpoint store: takes checkpoints again; handlers resume");
		sp_workers_hold(e, false);
	}
	if (rc == SPATE_ERR_STORE_LOST) {
		/* the store lost its data (guarantee 6): saving on would start every partition over */
		atomic_fetch_add_explicit(&e->store_errors, 1, memory_order_relaxed);
		sp_engine_fatal(e, rc, err);
		return rc;
	}
	if (rc) {
		uint64_t n = atomic_fetch_add_explicit(&e->store_errors, 1, memory_order_relaxed) + 1;
		sp_msg(e, SP_MSG_ERROR, "checkpoint store: %s (will retry; %" PRIu64 " failures so far)", err,
		       n);
		return rc;
	}
	e->done_since_flush = 0;
	return SPATE_OK;
}

/* Load p's checkpoint and seek the source after it, or resolve starting.position. Sets
 * *resolved when the start was resolved (and so must be saved at once). */
static int start_one(sp_engine_t *e, sp_part_t *p, bool *resolved_out, char *err, size_t sz)
{
	sp_ckpt_t ck;
	int rc = SPATE_ERR_NOT_FOUND;
	if (e->store_open) {
		rc = e->store.ops->load(&e->store, p->pub.name, &ck, err, sz);
		if (rc && rc != SPATE_ERR_NOT_FOUND)
			return rc;
	}
	if (rc == SPATE_OK) {
		if ((rc = e->src.ops->seek(&e->src, p, &ck, NULL, err, sz)))
			return rc;
		p->eng->ckpt = p->eng->saved = ck;
		char b[SPATE_POSITION_MAX];
		sp_msg(e, SP_MSG_DEBUG, "%s: resuming after checkpoint %s", p->pub.name,
		       sp_ckpt_fmt(&ck, b, sizeof(b)));
	} else {
		sp_ckpt_t resolved = {.beginning = true};
		if ((rc = e->src.ops->seek(&e->src, p, NULL, &resolved, err, sz)))
			return rc;
		p->eng->ckpt = resolved;
		p->eng->dirty = true; /* checkpointed at once (guarantee 6) */
		*resolved_out = true;
	}
	p->eng->started = true;
	sp_flow_count(e, p, true);
	return SPATE_OK;
}

/* Save the starts just resolved (guarantee 6: at once, before the first record). A store
 * that is busy (a Kafka group that rebalances again: a member joined while this one was
 * being assigned) is no error: the starts stay dirty, the handlers hold until the store
 * takes a checkpoint (sp_checkpoint_maybe_flush saves them and lets the handlers go), so
 * no record is handled before its partition's start is saved. Before, the busy answer
 * failed the partition's start, and with it the run. */
static int save_resolved(sp_engine_t *e, char *err, size_t sz)
{
	int rc = save_dirty(e, err, sz);
	if (rc != SPATE_ERR_BUSY)
		return rc;
	atomic_fetch_add_explicit(&e->store_busy, 1, memory_order_relaxed);
	sp_msg(e, SP_MSG_INFO, "checkpoint store: %s; no new handler batches until it saves the resolved starts",
	       err);
	sp_workers_hold(e, true);
	return SPATE_OK;
}

int sp_checkpoint_load_and_seek(sp_engine_t *e, char *err, size_t sz)
{
	bool any_resolved = false;
	for (size_t i = 0; i < e->nparts; i++) {
		int rc = start_one(e, e->parts[i], &any_resolved, err, sz);
		if (rc)
			return rc;
	}
	if (any_resolved && e->store_open) {
		int rc = save_resolved(e, err, sz);
		if (rc)
			return rc;
	}
	return SPATE_OK;
}

int sp_engine_checkpoint_load(sp_engine_t *e, const char *name, sp_ckpt_t *out, char *err, size_t sz)
{
	if (e->store_open)
		return e->store.ops->load(&e->store, name, out, err, sz);
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		if (p->eng->started && !p->eng->revoked && !strcmp(p->pub.name, name)) {
			*out = p->eng->ckpt;
			return SPATE_OK;
		}
	}
	return SPATE_ERR_NOT_FOUND;
}

int sp_engine_partition_start(sp_engine_t *e, sp_part_t *p, char *err, size_t sz)
{
	bool resolved = false;
	int rc = start_one(e, p, &resolved, err, sz);
	if (!rc && resolved && e->store_open)
		rc = save_resolved(e, err, sz);
	return rc;
}

/* p's release ends: save its checkpoint of what is DONE (unless lost), forget it (never
 * checkpointed again, late results discarded, what its lanes still hold dropped) and tell
 * the source. Returns whether the checkpoint was saved. */
static bool release_finish(sp_engine_t *e, sp_part_t *p, bool lost, char *err, size_t sz)
{
	struct sp_part_eng *pe = p->eng;
	int rc = SPATE_OK;
	bool saved = false;
	if (!lost && pe->started) {
		saved = true;
		if (pe->dirty && e->store_open) {
			int erc;
			sp_store_entry_t ent = entry_of(e, p, &erc);
			int64_t sent = sp_wall_ms();
			rc = e->store.ops->save(&e->store, &ent, 1, err, sz);
			if (e->leased)
				audited(e, p, &ent, rc, err, sent);
			if (rc == SPATE_OK) {
				sp_hist_bump(&e->ckpt_commits, 1);
				pe->saved = pe->ckpt;
				pe->dirty = false;
			} else {
				saved = false;
				/* a store that is busy (a group that rebalances again) is no failure */
				sp_msg(e, rc == SPATE_ERR_BUSY ? SP_MSG_INFO : SP_MSG_ERROR,
				       "%s: released without its last checkpoint: %s (the new owner "
				       "handles again what came after the previous one)",
				       p->pub.name, err);
			}
		}
		if (pe->fifo_head)
			sp_msg(e, SP_MSG_WARN,
			       "%s: released with records still in flight; their results are "
			       "discarded (the new owner handles them again)",
			       p->pub.name);
	}
	pe->releasing = false;
	pe->revoked = true; /* never checkpointed again; late results are discarded */
	sp_flow_count(e, p, false);
	pe->dirty = false;
	p->has_end = false;
	e->nrevoked++;
	if (pe->lanes)
		sp_lanes_release(e, p); /* what is still in flight is dropped, not handled */
	return saved;
}

int sp_engine_partition_release(sp_engine_t *e, sp_part_t *p, int64_t timeout_ms, bool lost)
{
	struct sp_part_eng *pe = p->eng;
	if (pe->revoked || pe->releasing)
		return SPATE_OK;
	/* chunks of p not yet dispatched are dropped: their records were never handled */
	sp_flow_drop_held(e, p);
	pe->releasing = true;
	pe->release_lost = lost || !pe->started;
	pe->release_deadline = sp_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	e->nreleasing++;
	if (pe->release_lost && pe->lanes)
		sp_lanes_release(e, p); /* nothing of it may be committed: stop handling it now */
	if (!e->running)                /* no loop will come: the engine is not running (or done) */
		sp_engine_releases(e, true);
	else
		sp_engine_wake(e);
	return SPATE_OK;
}

void sp_engine_releases(sp_engine_t *e, bool now)
{
	if (!e->nreleasing)
		return;
	int64_t t = sp_now_ms();
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		struct sp_part_eng *pe = p->eng;
		if (!pe->releasing)
			continue;
		/* its dispatched records finish (or are dropped when lost), up to the deadline */
		if (!now && pe->fifo_head && t < pe->release_deadline &&
		    !atomic_load_explicit(&e->store_hold, memory_order_relaxed))
			continue; /* records still in flight (a lost partition's are being dropped) */
		char err[512];
		bool saved = release_finish(e, p, pe->release_lost, err, sizeof(err));
		e->nreleasing--;
		sp_msg(e, SP_MSG_DEBUG, "%s: released (%s)", p->pub.name,
		       saved ? "checkpoint saved" : "nothing committed");
		if (e->leased)
			sp_lease_released(e, p, pe->release_lost);
		if (e->src.ops->released)
			e->src.ops->released(&e->src, p, saved);
	}
}

void sp_engine_reap(sp_engine_t *e)
{
	size_t w = 0, freed = 0;
	bool drained = false;
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		if (p->eng->revoked && !p->eng->fifo_head && (!p->eng->lanes || sp_lanes_quiet(e, p))) {
			/* a worker that freed a lane's arena pushed that before the lane went quiet:
			 * take it in before the partition it names is freed */
			if (!drained) {
				sp_tracker_drain(e);
				drained = true;
			}
			sp_msg(e, SP_MSG_DEBUG, "%s: released partition forgotten", p->pub.name);
			if (p->eng->lanes)
				e->nlanes -= e->factor;
			sp_part_free(p);
			freed++;
			continue;
		}
		p->index = (int)w;
		e->parts[w++] = p;
	}
	e->nparts = w;
	e->nrevoked -= freed;
	e->nforgotten += freed;
}
