/* lease.c - lease coordination for sources without a group protocol (the log, Kinesis),
 * over a store that keeps leases (redis).
 *
 * KCL's model. Each partition has a lease in the store: an owner, a counter (the fencing
 * token, raised by every acquire) and the checkpoint. Every lease.timeout.ms/3 this
 * process
 *  - checks the store's epoch marker (a store that lost its data stops the run);
 *  - renews the leases it holds (conditional on owner and counter: a lease another
 *    process took is gone, and its partition is released as lost, like a Kafka revoke);
 *  - lists the leases, takes the free and expired ones first (up to its fair share,
 *    the partitions divided by the processes holding live leases, rounded up), and when
 *    it took none steals one lease from the process holding the most, while that one
 *    holds at least two more than this one does.
 * Partitions may be named while running (Kinesis shards made by a split or a merge). A
 * partition with parents is not taken before the store shows every parent's checkpoint
 * at SPATE_POSITION_CLOSED (SHARD_END): what this process finished locally does not
 * count until it is in the store, so the rule holds whichever process read the parent.
 * A partition checkpointed at SHARD_END is finished: its holder gives its lease up and
 * nobody takes it, and it counts in no process's share.
 * It stops working a partition at a local monotonic deadline: the time the last
 * successful renewal was sent + lease.timeout.ms - a margin. Until then a transient
 * store error is only retried, so a short outage drops nothing; a paused process
 * (SIGSTOP) finds its deadline passed when it runs again and hands no further records of
 * the partition to its handler, and the store refuses its checkpoint writes anyway.
 *
 * Audit trail: every lease change is logged at debug level with owner and counter
 * ("lease audit: ..."), as checkpoint.c logs every checkpoint write.
 * @locality the engine thread only.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

void sp_engine_fatal(sp_engine_t *e, int rc, const char *msg)
{
	if (e->fatal_rc)
		return;
	e->fatal_rc = rc;
	snprintf(e->fatal_err, sizeof(e->fatal_err), "%s", msg);
	sp_msg(e, SP_MSG_ERROR, "%s", msg);
}

bool sp_engine_leased(sp_engine_t *e)
{
	return e->leased;
}

int sp_engine_lease_candidate(sp_engine_t *e, int index, const char *source, const char *topic,
                              int32_t partition, const char *shard, const char *parents, bool has_end,
                              const spate_position_t *end)
{
	if (e->ncands == e->cands_cap) {
		size_t cap = e->cands_cap ? e->cands_cap * 2 : 16;
		struct sp_lease_cand *n = realloc(e->cands, cap * sizeof(*n));
		if (!n)
			return SPATE_ERR_NOMEM;
		e->cands = n;
		e->cands_cap = cap;
	}
	struct sp_lease_cand *c = &e->cands[e->ncands];
	memset(c, 0, sizeof(*c));
	char name[512];
	if (shard)
		snprintf(name, sizeof(name), "%s/%s/%s", source, topic, shard);
	else
		snprintf(name, sizeof(name), "%s/%s/%" PRId32, source, topic, partition);
	c->name = strdup(name);
	c->source = strdup(source);
	c->topic = strdup(topic);
	c->shard = shard ? strdup(shard) : NULL;
	c->parents = parents ? strdup(parents) : NULL;
	c->partition = partition;
	c->index = index;
	c->has_end = has_end;
	if (end)
		c->end = *end;
	c->late = e->running;
	if (!c->name || !c->source || !c->topic || (shard && !c->shard) || (parents && !c->parents)) {
		free(c->name);
		free(c->source);
		free(c->topic);
		free(c->shard);
		free(c->parents);
		return SPATE_ERR_NOMEM;
	}
	e->ncands++;
	return SPATE_OK;
}

void sp_lease_free(sp_engine_t *e)
{
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		free(c->name);
		free(c->source);
		free(c->topic);
		free(c->shard);
		free(c->parents);
	}
	free(e->cands);
	e->cands = NULL;
	e->ncands = e->cands_cap = 0;
}

int sp_lease_init(sp_engine_t *e, char *err, size_t sz)
{
	e->lease_timeout_ms = sp_conf_int(e->conf, "lease.timeout.ms");
	/* the margin: a renewal period's worth of slack is too much; a tenth, at least 50 ms */
	e->lease_margin_ms = e->lease_timeout_ms / 10 > 50 ? e->lease_timeout_ms / 10 : 50;
	const char *o = sp_conf_str(e->conf, "lease.owner");
	if (*o) {
		snprintf(e->lease_owner, sizeof(e->lease_owner), "%s", o);
	} else {
		char host[64] = "host";
		gethostname(host, sizeof(host));
		host[sizeof(host) - 1] = 0;
		uint32_t r = 0;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint32_t)sp_now_ns();
		snprintf(e->lease_owner, sizeof(e->lease_owner), "%s-%d-%08x", host, (int)getpid(), r);
	}
	if (!e->ncands)
		return sp_err(err, sz, SPATE_ERR_INVALID, "source: \"%s\" has no partitions",
		              sp_conf_str(e->conf, "source"));
	e->lease_next_ms = 0;
	sp_msg(e, SP_MSG_INFO, "leases: owner %s, %zu partitions, lease.timeout.ms=%" PRId64 " (store %s)",
	       e->lease_owner, e->ncands, e->lease_timeout_ms, e->store_uri);
	return SPATE_OK;
}

static struct sp_lease_cand *cand_of(sp_engine_t *e, sp_part_t *p)
{
	if (!p->eng->lease_cand || p->eng->lease_cand > e->ncands)
		return NULL;
	struct sp_lease_cand *c = &e->cands[p->eng->lease_cand - 1];
	return c->part == p ? c : NULL;
}

static void lose(sp_engine_t *e, struct sp_lease_cand *c, const char *why)
{
	sp_part_t *p = c->part;
	if (!p)
		return;
	sp_msg(e, SP_MSG_DEBUG, "lease audit: lost %s owner=%s counter=%" PRIu64 ": %s", c->name,
	       e->lease_owner, c->counter, why);
	sp_msg(e, SP_MSG_INFO, "%s: lease lost (%s): no longer worked here", c->name, why);
	c->part = NULL;
	sp_engine_partition_release(e, p, 0, true);
}

void sp_lease_lost(sp_engine_t *e, sp_part_t *p, const char *why)
{
	struct sp_lease_cand *c = cand_of(e, p);
	if (c)
		lose(e, c, why);
}

void sp_lease_released(sp_engine_t *e, sp_part_t *p, bool lost)
{
	struct sp_lease_cand *c = cand_of(e, p);
	if (!c)
		return;
	c->part = NULL;
	if (lost)
		return;
	char err[600];
	int rc =
	    e->store.ops->lease_release(&e->store, c->name, e->lease_owner, c->counter, err, sizeof(err));
	sp_msg(e, SP_MSG_DEBUG, "lease audit: release %s owner=%s counter=%" PRIu64 ": %s", c->name,
	       e->lease_owner, c->counter, rc ? err : "released");
}

void sp_lease_release_all(sp_engine_t *e)
{
	if (!e->leased || !e->store_open)
		return;
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (!c->part)
			continue;
		char err[600];
		int rc = e->store.ops->lease_release(&e->store, c->name, e->lease_owner, c->counter, err,
		                                     sizeof(err));
		sp_msg(e, SP_MSG_DEBUG, "lease audit: release %s owner=%s counter=%" PRIu64 ": %s", c->name,
		       e->lease_owner, c->counter, rc ? err : "released");
		c->part = NULL;
	}
}

/* Whether the store, at the last list, showed c's checkpoint at SPATE_POSITION_CLOSED
 * (a Kinesis shard read to SHARD_END): it is finished, whoever read it. */
static bool store_closed(const struct sp_lease_cand *c)
{
	return c->has_ckpt && !c->ckpt.beginning && sp_pos_is_closed(&c->ckpt.after);
}

/* The candidate named SOURCE/TOPIC/id, or NULL. */
static struct sp_lease_cand *cand_by_id(sp_engine_t *e, const struct sp_lease_cand *of, const char *id,
                                        size_t len)
{
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->shard && strlen(c->shard) == len && !strncmp(c->shard, id, len) &&
		    !strcmp(c->source, of->source) && !strcmp(c->topic, of->topic))
			return c;
	}
	return NULL;
}

/* Whether the store shows every parent of c at SHARD_END (a parent that is no candidate,
 * no longer listed by the source, is not waited for). Only the store counts: a parent
 * this process finished is ready once its checkpoint is written and listed. */
static bool parents_done(sp_engine_t *e, const struct sp_lease_cand *c)
{
	for (const char *p = c->parents; p && *p;) {
		size_t n = strcspn(p, ",");
		const struct sp_lease_cand *par = cand_by_id(e, c, p, n);
		if (par && !store_closed(par))
			return false;
		p += n + (p[n] == ',');
	}
	return true;
}

/* Whether this process should work c when it does not hold it: not finished, not read
 * to its end here already (stop.at.end), its parents at SHARD_END in the store. */
static bool wanted(sp_engine_t *e, const struct sp_lease_cand *c)
{
	return !c->done_here && !store_closed(c) && parents_done(e, c);
}

/* A held partition with nothing left to do gives its lease up (a graceful release: its
 * checkpoint is saved, the lease released): read to SHARD_END with that checkpoint
 * saved, or, with stop.at.end and an end noted while reading (part_ended), read to that
 * end with the checkpoint saved there. */
static void retire_if_done(sp_engine_t *e, struct sp_lease_cand *c)
{
	sp_part_t *p = c->part;
	struct sp_part_eng *pe = p->eng;
	if (!pe->started || pe->releasing || pe->revoked || pe->dirty || pe->held_head || pe->fifo_head)
		return;
	const sp_ckpt_t *ck = &pe->ckpt;
	bool closed = !ck->beginning && sp_pos_is_closed(&ck->after);
	bool ended = false;
	if (!closed && e->stop_at_end && !c->has_end && e->src.ops->part_ended &&
	    e->src.ops->part_ended(&e->src, p))
		ended = !p->has_end || (!ck->beginning && spate_position_cmp(&ck->after, &p->end) >= 0);
	if (!closed && !ended)
		return;
	sp_msg(e, SP_MSG_INFO, "%s: %s: its lease is given up", c->name,
	       closed ? "read to SHARD_END" : "read to its end (stop.at.end)");
	if (closed) { /* what the store now holds, before the next list shows it */
		c->has_ckpt = true;
		c->ckpt = *ck;
	} else {
		c->done_here = true;
	}
	sp_engine_partition_release(e, p, 0, false);
}

bool sp_lease_all_at_end(sp_engine_t *e)
{
	bool any = false;
	bool noted = e->stop_at_end && e->src.ops->part_ended; /* ends noted while reading */
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->late)
			continue; /* named while running: stop.at.end's ends are those at open */
		if (!c->has_end) {
			if (!noted)
				continue;
			any = true;
			if (!c->done_here && !store_closed(c))
				return false;
			continue;
		}
		any = true;
		const sp_ckpt_t *ck;
		if (c->part) {
			if (c->part->eng->held_head || !c->part->eng->started)
				return false;
			ck = &c->part->eng->ckpt;
		} else {
			if (!c->has_ckpt)
				return false;
			ck = &c->ckpt;
		}
		if (ck->beginning || spate_position_cmp(&ck->after, &c->end) < 0)
			return false;
	}
	return any;
}

static void on_lease(void *arg, const sp_lease_t *l)
{
	sp_engine_t *e = arg;
	int64_t now = sp_now_ms();
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (strcmp(c->name, l->name))
			continue;
		/* since when the counter and owner are what they are now (listed is cleared before
		 * every list: it cannot tell a first sighting) */
		if (!c->seen_since_ms || c->seen_counter != l->counter || strcmp(c->owner, l->owner))
			c->seen_since_ms = now;
		c->listed = true;
		snprintf(c->owner, sizeof(c->owner), "%s", l->owner);
		c->seen_counter = l->counter;
		c->expired = l->expired;
		if (c->expired < 0) /* no clock in the store: the counter did not move for a timeout */
			c->expired = now - c->seen_since_ms >= e->lease_timeout_ms;
		c->has_ckpt = l->has_ckpt;
		if (l->has_ckpt)
			c->ckpt = l->ckpt;
		if (!c->parents && l->parents[0]) /* recorded by the process that took it */
			c->parents = strdup(l->parents);
		return;
	}
}

static void store_error(sp_engine_t *e, int rc, const char *what, const char *err)
{
	if (rc == SPATE_ERR_STORE_LOST) {
		sp_engine_fatal(e, rc, err);
		return;
	}
	atomic_fetch_add_explicit(&e->store_errors, 1, memory_order_relaxed);
	sp_msg(e, SP_MSG_WARN, "leases: %s: %s (retried; partitions are kept until their deadlines)", what,
	       err);
}

/* Take c's lease (conditional on what the list showed) and start working it. */
static bool take(sp_engine_t *e, struct sp_lease_cand *c, bool steal)
{
	sp_lease_t seen, got;
	memset(&seen, 0, sizeof(seen));
	seen.name = c->name;
	if (c->listed) {
		snprintf(seen.owner, sizeof(seen.owner), "%s", c->owner);
		seen.counter = c->seen_counter;
	}
	if (c->parents)
		snprintf(seen.parents, sizeof(seen.parents), "%s", c->parents);
	char err[600];
	int64_t t0 = sp_now_ms();
	int rc = e->store.ops->lease_acquire(&e->store, c->name, e->lease_owner, &seen, steal,
	                                     e->lease_timeout_ms, &got, err, sizeof(err));
	if (rc == SPATE_ERR_LEASE) {
		sp_msg(e, SP_MSG_DEBUG,
		       "lease audit: acquire %s owner=%s lost the race (seen owner=%s counter=%" PRIu64 ")",
		       c->name, e->lease_owner, seen.owner, seen.counter);
		return false;
	}
	if (rc) {
		store_error(e, rc, "acquire", err);
		return false;
	}
	sp_msg(e, SP_MSG_DEBUG,
	       "lease audit: acquire %s owner=%s counter=%" PRIu64 " done=%" PRId64
	       " (from owner=%s counter=%" PRIu64 "%s)",
	       c->name, e->lease_owner, got.counter, sp_wall_ms(), seen.owner[0] ? seen.owner : "-",
	       seen.counter, steal ? ", stolen" : "");
	char perr[600] = "";
	sp_part_t *p = e->src.ops->take(&e->src, c->index, perr, sizeof(perr));
	if (!p) {
		sp_engine_fatal(e, SPATE_ERR_SOURCE,
		                perr[0] ? perr : "source: cannot take a leased partition");
		return false;
	}
	if (c->has_end) { /* stop.at.end: the end noted at open */
		p->has_end = true;
		p->end = c->end;
	}
	c->part = p;
	c->counter = got.counter;
	c->renewed_ms = t0;
	p->eng->lease_cand = (size_t)(c - e->cands) + 1;
	p->eng->lease_counter = got.counter;
	atomic_store_explicit(&p->eng->lease_deadline, t0 + e->lease_timeout_ms - e->lease_margin_ms,
	                      memory_order_relaxed);
	rc = sp_engine_partition_start(e, p, perr, sizeof(perr));
	if (rc == SPATE_ERR_LEASE) {
		lose(e, c, "taken again before its start was saved");
		return false;
	}
	if (rc) {
		char m[700];
		snprintf(m, sizeof(m), "%s: %s", c->name, perr);
		sp_engine_fatal(e, rc, m);
		return false;
	}
	sp_msg(e, SP_MSG_INFO, "%s: lease taken (counter %" PRIu64 "%s)", c->name, got.counter,
	       steal ? ", stolen" : "");
	return true;
}

void sp_lease_tick(sp_engine_t *e)
{
	if (!e->leased || e->fatal_rc)
		return;
	int64_t now = sp_now_ms();
	if (e->lease_last_tick && now - e->lease_last_tick > e->lease_timeout_ms / 3)
		sp_msg(e, SP_MSG_DEBUG,
		       "leases: the engine thread was away %" PRId64 " ms (more than a renewal period)",
		       now - e->lease_last_tick);
	e->lease_last_tick = now;
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->part && now >= c->renewed_ms + e->lease_timeout_ms - e->lease_margin_ms)
			lose(e, c, "its deadline passed without a renewal");
	}
	if (now < e->lease_next_ms || atomic_load(&e->stop_req))
		return;
	e->lease_next_ms = now + e->lease_timeout_ms / 3;
	char err[600];
	int rc;
	if (e->store.ops->epoch && (rc = e->store.ops->epoch(&e->store, err, sizeof(err)))) {
		store_error(e, rc, "epoch check", err);
		return;
	}
	size_t mine = 0;
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (!c->part)
			continue;
		int64_t t0 = sp_now_ms();
		uint64_t ctr = c->counter;
		rc = e->store.ops->lease_renew(&e->store, c->name, e->lease_owner, &ctr, e->lease_timeout_ms,
		                               err, sizeof(err));
		if (rc == SPATE_OK) {
			if (ctr != c->counter)
				sp_msg(e, SP_MSG_DEBUG,
				       "lease audit: renew %s owner=%s counter=%" PRIu64 "->%" PRIu64,
				       c->name, e->lease_owner, c->counter, ctr);
			c->counter = ctr;
			c->part->eng->lease_counter = ctr;
			c->renewed_ms = t0;
			atomic_store_explicit(&c->part->eng->lease_deadline,
			                      t0 + e->lease_timeout_ms - e->lease_margin_ms,
			                      memory_order_relaxed);
			mine++;
		} else if (rc == SPATE_ERR_LEASE) {
			lose(e, c, "another process took it");
		} else {
			store_error(e, rc, "renewal", err);
			if (e->fatal_rc)
				return;
			mine++;
		}
	}
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->part && !c->part->eng->releasing) {
			retire_if_done(e, c);
			if (c->part->eng->releasing && mine)
				mine--;
		}
	}
	for (size_t i = 0; i < e->ncands; i++)
		e->cands[i].listed = false;
	if ((rc = e->store.ops->lease_list(&e->store, on_lease, e, err, sizeof(err)))) {
		store_error(e, rc, "list", err);
		return;
	}
	/* the processes holding live leases, and how many each holds, of the partitions
	 * that have work left (not finished, parents at SHARD_END) */
	const char *owners[64];
	size_t counts[64], nowners = 0, active = 0;
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->part ? !c->part->eng->releasing : !store_closed(c) && parents_done(e, c))
			active++;
		if (!c->listed || !c->owner[0] || c->expired || c->part ||
		    !strcmp(c->owner, e->lease_owner) || store_closed(c))
			continue;
		size_t k = 0;
		while (k < nowners && strcmp(owners[k], c->owner))
			k++;
		if (k == nowners) {
			if (nowners == 64)
				continue;
			owners[nowners] = c->owner;
			counts[nowners++] = 0;
		}
		counts[k]++;
	}
	size_t target = (active + nowners) / (nowners + 1); /* ceil(active / (nowners + 1)) */
	size_t taken = 0;
	for (size_t i = 0; i < e->ncands && mine < target; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (c->part ||
		    (c->listed && c->owner[0] && !c->expired && strcmp(c->owner, e->lease_owner)) ||
		    !wanted(e, c))
			continue;
		if (take(e, c, c->listed && !strcmp(c->owner, e->lease_owner))) {
			mine++;
			taken++;
		}
		if (e->fatal_rc)
			return;
	}
	if (taken || mine >= target || !nowners)
		return;
	size_t most = 0;
	for (size_t k = 1; k < nowners; k++)
		if (counts[k] > counts[most])
			most = k;
	if (counts[most] < mine + 2)
		return;
	for (size_t i = 0; i < e->ncands; i++) {
		struct sp_lease_cand *c = &e->cands[i];
		if (!c->part && c->listed && !c->expired && !strcmp(c->owner, owners[most]) && wanted(e, c)) {
			take(e, c, true);
			return; /* one steal a round */
		}
	}
}
