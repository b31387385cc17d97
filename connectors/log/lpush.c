/* lpush.c - the durable push: spate_push() into the embedded log, with group commit.
 *
 * With `source=log:DIR` and `log.push=true`, the log source also takes records from the
 * embedding program (spate_push): each call appends its records to the partition's
 * writer and returns only once they are fsync'd and published as durable, with the
 * offsets it assigned. The pipeline then reads them back through the log reader, with
 * every guarantee of a log source (checkpoints, retries, restarts): what a push call
 * returned survives a crash of the process.
 *
 * Group commit (as databases do): the callers of one partition append under its mutex;
 * one of them (the leader) writes the open batch and runs fdatasync without the mutex,
 * while the others append more and wait; when the sync returns the leader publishes the
 * durable length and wakes every caller whose records it covered. So one fdatasync serves
 * every caller waiting on it, and a caller never returns before its records are synced.
 *
 * Backpressure: a partition whose records are durable but not yet read by the pipeline
 * (log.push.max.lag records) takes no more: the call returns at once with what it took
 * (0: nothing); it never blocks without a bound (only for the sync its records wait for).
 *
 * @locality sp_log_push may be called from any thread; sp_log_push_delivered from the
 * engine thread.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct lpart {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	sp_log_writer_t *w;
	uint64_t next;          /* the offset the next pushed record gets */
	uint64_t durable_next;  /* offsets below it are durable and published */
	bool syncing;           /* a leader is in fdatasync */
	int err;                /* the writer failed: every later push returns this */
	char errmsg[512];
	_Atomic uint64_t delivered; /* the reader's next offset to deliver (engine thread) */
} lpart_t;

struct sp_log_push {
	lpart_t *parts;
	int n;
	uint64_t max_lag;
	_Atomic bool closed;
	_Atomic uint64_t syncs, calls;
	sp_engine_t *eng;
};

int sp_log_push_open(const char *dir, int nparts, const sp_log_wopts_t *wo, uint64_t max_lag, sp_engine_t *eng,
                     sp_log_push_t **out, char *err, size_t sz)
{
	sp_log_push_t *lp = calloc(1, sizeof(*lp));
	if (!lp || !(lp->parts = calloc((size_t)nparts, sizeof(lpart_t)))) {
		free(lp);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "log push %s: out of memory", dir);
	}
	lp->n = nparts;
	lp->max_lag = max_lag;
	lp->eng = eng;
	for (int i = 0; i < nparts; i++) {
		lpart_t *p = &lp->parts[i];
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->cv, NULL);
		int rc = sp_log_writer_open(dir, i, wo, &p->w, err, sz);
		if (rc) {
			lp->n = i;
			sp_log_push_free(lp);
			return rc;
		}
		sp_log_durable_t d;
		sp_log_writer_durable(p->w, &d);
		p->next = p->durable_next = d.next;
	}
	*out = lp;
	return SPATE_OK;
}

void sp_log_push_free(sp_log_push_t *lp)
{
	if (!lp)
		return;
	for (int i = 0; i < lp->n; i++) {
		lpart_t *p = &lp->parts[i];
		char err[512];
		if (p->w && sp_log_writer_close(p->w, err, sizeof(err)))
			sp_msg(lp->eng, SP_MSG_WARN, "log push: closing partition %d: %s", i, err);
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
	}
	free(lp->parts);
	free(lp);
}

/* Make p's records up to `target` durable: lead a sync, or wait for the one running.
 * Called and returns with p->mu held. */
static void wait_durable(sp_log_push_t *lp, lpart_t *p, uint64_t target)
{
	while (p->durable_next < target && !p->err) {
		if (p->syncing) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		p->syncing = true;
		sp_log_wsync_t t;
		int rc = sp_log_writer_sync_begin(p->w, &t, p->errmsg, sizeof(p->errmsg));
		int e = 0;
		if (rc == SPATE_OK) {
			pthread_mutex_unlock(&p->mu); /* the others append meanwhile */
			if (t.fd >= 0 && fdatasync(t.fd) < 0)
				e = errno;
			pthread_mutex_lock(&p->mu);
			rc = sp_log_writer_sync_end(p->w, &t, e, p->errmsg, sizeof(p->errmsg));
			atomic_fetch_add_explicit(&lp->syncs, 1, memory_order_relaxed);
		}
		if (rc)
			p->err = rc;
		else if (t.next > p->durable_next)
			p->durable_next = t.next;
		p->syncing = false;
		pthread_cond_broadcast(&p->cv);
	}
}

int sp_log_push(sp_log_push_t *lp, int32_t part, const spate_push_record_t *recs, size_t cnt,
                spate_position_t *positions)
{
	if (part < 0 || part >= lp->n)
		return SPATE_ERR_NOT_FOUND;
	if (atomic_load(&lp->closed))
		return SPATE_ERR_STATE;
	atomic_fetch_add_explicit(&lp->calls, 1, memory_order_relaxed);
	lpart_t *p = &lp->parts[part];
	pthread_mutex_lock(&p->mu);
	if (p->err) {
		int rc = p->err;
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	uint64_t lag = p->next - atomic_load_explicit(&p->delivered, memory_order_acquire);
	size_t take = cnt;
	if (lag >= lp->max_lag)
		take = 0;
	else if (lp->max_lag - lag < take)
		take = (size_t)(lp->max_lag - lag);
	int64_t now = 0;
	size_t i = 0;
	for (; i < take; i++) {
		int64_t ts = recs[i].timestamp_ms ? recs[i].timestamp_ms : (now ? now : (now = sp_wall_ms()));
		uint64_t off;
		int rc = sp_log_writer_put(p->w, &recs[i], ts, &off, p->errmsg, sizeof(p->errmsg));
		if (rc) {
			/* this record was refused (too large, ...): what came before is still pushed */
			if (i == 0) {
				pthread_mutex_unlock(&p->mu);
				return rc;
			}
			break;
		}
		if (positions)
			positions[i] = sp_pos(off);
		p->next = off + 1;
	}
	if (i)
		wait_durable(lp, p, p->next);
	int rc = p->err;
	pthread_mutex_unlock(&p->mu);
	if (rc)
		return rc;
	return (int)i; /* 0: the partition is full (its lag bound) */
}

void sp_log_push_delivered(sp_log_push_t *lp, int part, uint64_t next)
{
	if (part >= 0 && part < lp->n)
		atomic_store_explicit(&lp->parts[part].delivered, next, memory_order_release);
}

void sp_log_push_close_input(sp_log_push_t *lp)
{
	atomic_store(&lp->closed, true);
}

bool sp_log_push_closed(const sp_log_push_t *lp)
{
	return atomic_load(&lp->closed);
}

bool sp_log_push_all_delivered(sp_log_push_t *lp)
{
	for (int i = 0; i < lp->n; i++) {
		lpart_t *p = &lp->parts[i];
		pthread_mutex_lock(&p->mu);
		/* a failed writer's records past its durable length can never be read */
		uint64_t end = p->err ? p->durable_next : p->next;
		pthread_mutex_unlock(&p->mu);
		if (atomic_load_explicit(&p->delivered, memory_order_acquire) < end)
			return false;
	}
	return true;
}

void sp_log_push_counts(const sp_log_push_t *lp, uint64_t *calls, uint64_t *syncs)
{
	*calls = atomic_load(&lp->calls);
	*syncs = atomic_load(&lp->syncs);
}
