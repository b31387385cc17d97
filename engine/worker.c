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

#include <errno.h>
#include <poll.h>
#include <unistd.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exhausted failed items of one batch sent to the DLQ in one write. */
#define SP_ITEM_DLQ_MAX 64
/* Headers spate adds to a DLQ record. */
#define SP_DLQ_HDRS 9
/* Bytes of header values one DLQ record needs at most (ids, numbers, an error). */
#define SP_DLQ_VALBYTES 1024

enum { COND_ATTEMPTS = 0, COND_AGE, COND_CORRUPT, COND_PAYLOAD };
static const char *const cond_names[] = {"RetryAttemptsExhausted", "RecordAgeExceeded", "Corrupt",
                                         "MaximumPayloadSizeExceeded"};

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

void sp_lanes_ready(sp_engine_t *e, sp_lane_t **lanes, size_t n)
{
	size_t queued = 0;
	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < n; i++) {
		if (lanes[i]->state == LANE_IDLE) {
			push_ready_locked(e, lanes[i]);
			queued++;
		} else if (lanes[i]->state == LANE_PARKED && !lanes[i]->mig_wanted) {
			/* new runs behind a retrying lane: a worker copies them out */
			lanes[i]->mig_wanted = true;
			queued++;
		}
	}
	if (queued && !e->active)
		sp_autoscale_wake_locked(e);
	if (queued && e->idle_workers) {
		if (queued > 1 && e->idle_workers > 1)
			pthread_cond_broadcast(&e->work_cv);
		else
			pthread_cond_signal(&e->work_cv);
	}
	pthread_mutex_unlock(&e->mu);
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
			*pp = l->next;
			l->park_until_ms = 0;
			l->mig_wanted = false; /* it runs now; a new park copies what is queued */
			push_ready_locked(e, l);
		} else {
			if (!next || l->park_until_ms < next)
				next = l->park_until_ms;
			pp = &l->next;
		}
	}
	return next;
}

/* A parked lane with runs to copy into its arena, taken off the parked list (it keeps
 * its deadline and goes back after the copy), or NULL. */
static sp_lane_t *take_migration_locked(sp_engine_t *e)
{
	for (sp_lane_t **pp = &e->parked; *pp; pp = &(*pp)->next) {
		sp_lane_t *l = *pp;
		if (l->mig_wanted) {
			*pp = l->next;
			return l;
		}
	}
	return NULL;
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
	return l->dlq_pending || l->mq_off < l->mq_len ||
	       atomic_load_explicit(&l->head, memory_order_acquire) !=
	           atomic_load_explicit(&l->tail, memory_order_relaxed);
}

/* ---- completions ------------------------------------------------------------------- */

static void push_comp(sp_worker_t *w, sp_ck_t *c, uint32_t begin, uint32_t len, uint32_t kind)
{
	uint32_t head = atomic_load_explicit(&w->chead, memory_order_relaxed);
	while (head - atomic_load_explicit(&w->ctail, memory_order_acquire) == SP_COMP_RING) {
		/* the engine thread is behind: make sure it runs, then let it */
		sp_engine_wake(w->e);
		sched_yield();
	}
	sp_comp_t *cp = &w->ring[head & (SP_COMP_RING - 1)];
	cp->c = c;
	cp->begin = begin;
	cp->len = len;
	cp->kind = kind;
	atomic_store_explicit(&w->chead, head + 1, memory_order_release);
}

/* The retry arena of a lane of p grew or shrank by delta bytes: they count toward p's
 * share of max.inflight.bytes (the tracker thread keeps the count). */
static void push_arena(sp_worker_t *w, sp_part_t *p, int64_t delta)
{
	uint32_t head = atomic_load_explicit(&w->chead, memory_order_relaxed);
	while (head - atomic_load_explicit(&w->ctail, memory_order_acquire) == SP_COMP_RING) {
		sp_engine_wake(w->e);
		sched_yield();
	}
	sp_comp_t *cp = &w->ring[head & (SP_COMP_RING - 1)];
	cp->part = p;
	cp->delta = delta;
	cp->kind = COMP_ARENA;
	atomic_store_explicit(&w->chead, head + 1, memory_order_release);
}

static void wake_engine_if_sleeping(sp_engine_t *e)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&e->sleeping))
		sp_engine_wake(e);
}

/* One lane no longer reads chunk c's bytes: the last one tells the tracker to release
 * them. Must be pushed before the DONE entries of the same records (see consume). */
static void unpin(sp_worker_t *w, sp_ck_t *c)
{
	if (atomic_fetch_sub_explicit(&c->lane_refs, 1, memory_order_acq_rel) == 1)
		push_comp(w, c, 0, 0, COMP_UNPIN);
}

static void arena_free(sp_worker_t *w, sp_lane_t *l);

/* Records refs[0..k) are DONE: advance the lane's cursor over them (the migrated queue
 * first, then the ring) and report them, one completion per contiguous run of one
 * chunk. Runs the cursor finishes are unpinned first, so the tracker sees the UNPIN
 * before the DONE that could free the chunk. */
static void consume(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k)
{
	if (!k)
		return;
	uint32_t left = k;
	if (l->mq_off < l->mq_len) {
		uint32_t take = l->mq_len - l->mq_off < left ? l->mq_len - l->mq_off : left;
		l->mq_off += take; /* migrated: unpinned when copied */
		left -= take;
	}
	uint32_t tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
	uint32_t off = l->off;
	while (left) {
		sp_run_t *r = &l->ring[tail & (SP_LANE_RING - 1)];
		uint32_t take = r->len - off < left ? r->len - off : left;
		off += take;
		left -= take;
		if (off == r->len) {
			unpin(w, r->c);
			tail++;
			off = 0;
		}
	}
	uint32_t i = 0;
	while (i < k) {
		uint32_t j = i + 1;
		if (refs[i].m) {
			/* copied records complete by index (their chunk may be compacted) */
			while (j < k && refs[j].m && refs[j].c == refs[i].c && refs[j].m->idx == refs[j - 1].m->idx + 1)
				j++;
			push_comp(w, refs[i].c, refs[i].m->idx, j - i, COMP_DONE_IDX);
		} else {
			while (j < k && !refs[j].m && refs[j].c == refs[i].c && refs[j].ord == refs[j - 1].ord + 1)
				j++;
			push_comp(w, refs[i].c, refs[i].ord, j - i, COMP_DONE);
		}
		i = j;
	}
	l->off = off;
	atomic_store_explicit(&l->tail, tail, memory_order_release);
	if (l->mq_len && l->mq_off == l->mq_len)
		arena_free(w, l);
}

/* ---- the retry arena -------------------------------------------------------------- */

/* A block of bytes copied out of chunks for a retrying lane. */
typedef struct sp_arena {
	struct sp_arena *next;
	size_t len;
	char bytes[];
} sp_arena_t;

/* The migrated queue was passed: free it and the arena, and take them off the bound. */
static void arena_free(sp_worker_t *w, sp_lane_t *l)
{
	while (l->arena) {
		sp_arena_t *a = l->arena;
		l->arena = a->next;
		free(a);
	}
	free(l->mq);
	l->mq = NULL;
	l->mq_off = l->mq_len = l->mq_cap = 0;
	if (l->arena_counted) {
		atomic_fetch_sub_explicit(&w->st.arena_bytes, l->arena_counted, memory_order_relaxed);
		push_arena(w, l->part, -(int64_t)l->arena_counted);
		l->arena_counted = 0;
	}
}

static size_t rec_bytes(const spate_record_t *r)
{
	size_t n = r->key_len + r->value_len;
	for (size_t h = 0; h < r->header_cnt; h++)
		n += r->headers[h].key_len + r->headers[h].value_len;
	return n;
}

static const void *copy_in(char **p, const void *src, size_t n)
{
	if (!src)
		return NULL;
	void *d = *p;
	memcpy(d, src, n);
	*p += n;
	return d;
}

/* The lane retries: copy every record queued in its ring (descriptor, state, key,
 * value, headers) into an arena block, queue the copies (freeing the ring slots) and
 * unpin the chunks, so one poison key holds neither read buffers nor ring slots, and
 * once a chunk's other records are DONE the tracker frees its body too (compact() in
 * tracker.c). What is copied counts in the partition's in-flight bytes (flow.c), so a
 * lane that retries forever pauses its own partition at its share and nothing else.
 * Only the worker that holds the lane calls it. On out-of-memory nothing changes. */
static void migrate(sp_worker_t *w, sp_lane_t *l)
{
	uint32_t head = atomic_load_explicit(&l->head, memory_order_acquire);
	uint32_t tail = atomic_load_explicit(&l->tail, memory_order_relaxed);
	if (tail == head)
		return;
	size_t total = 0;
	uint32_t k = 0;
	for (uint32_t t = tail; t != head; t++) {
		sp_run_t *r = &l->ring[t & (SP_LANE_RING - 1)];
		for (uint32_t j = t == tail ? l->off : 0; j < r->len; j++, k++) {
			const spate_record_t *rec = &r->c->pub.recs[r->c->order[r->begin + j]];
			total += sizeof(sp_mrec_t) + rec->header_cnt * sizeof(spate_header_t) + rec_bytes(rec);
		}
	}
	/* make room in the queue: drop what was consumed, then grow */
	if (l->mq_off) {
		memmove(l->mq, l->mq + l->mq_off, (size_t)(l->mq_len - l->mq_off) * sizeof(*l->mq));
		l->mq_len -= l->mq_off;
		l->mq_off = 0;
	}
	uint32_t old_cap = l->mq_cap;
	if (l->mq_len + k > l->mq_cap) {
		uint32_t cap = l->mq_cap ? l->mq_cap : 64;
		while (cap < l->mq_len + k)
			cap *= 2;
		sp_mrec_t **nq = realloc(l->mq, (size_t)cap * sizeof(*nq));
		if (!nq) {
			sp_msg(w->e, SP_MSG_WARN, "retry queue: out of memory for %u records; the lane keeps its chunks", k);
			return;
		}
		l->mq = nq;
		l->mq_cap = cap;
	}
	sp_arena_t *a = malloc(sizeof(*a) + total);
	if (!a) {
		sp_msg(w->e, SP_MSG_WARN, "retry arena: out of memory for %zu bytes; the lane keeps its chunks",
		       total);
		return;
	}
	a->len = total;
	a->next = l->arena;
	l->arena = a;
	/* the copies count before the chunks are unpinned, so the bound never sees a dip */
	uint64_t add = sizeof(*a) + total + (uint64_t)(l->mq_cap - old_cap) * sizeof(*l->mq);
	l->arena_counted += add;
	push_arena(w, l->part, (int64_t)add);
	atomic_fetch_add_explicit(&w->st.arena_bytes, add, memory_order_relaxed);
	/* mrecs first (aligned: the block's bytes are max-aligned), then headers, then bytes */
	sp_mrec_t *mr = (sp_mrec_t *)a->bytes;
	size_t nh = 0;
	for (uint32_t t = tail; t != head; t++) {
		sp_run_t *r = &l->ring[t & (SP_LANE_RING - 1)];
		for (uint32_t j = t == tail ? l->off : 0; j < r->len; j++)
			nh += r->c->pub.recs[r->c->order[r->begin + j]].header_cnt;
	}
	spate_header_t *hp = (spate_header_t *)(mr + k);
	char *p = (char *)(hp + nh);
	for (uint32_t t = tail; t != head; t++) {
		sp_run_t *r = &l->ring[t & (SP_LANE_RING - 1)];
		uint32_t moved = 0;
		for (uint32_t j = t == tail ? l->off : 0; j < r->len; j++, moved++) {
			uint32_t idx = r->c->order[r->begin + j];
			const spate_record_t *rec = &r->c->pub.recs[idx];
			sp_mrec_t *m = mr++;
			m->rec = *rec;
			m->st = r->c->st[idx];
			m->c = r->c;
			m->idx = idx;
			m->rec.key = copy_in(&p, rec->key, rec->key_len);
			m->rec.value = copy_in(&p, rec->value, rec->value_len);
			if (rec->header_cnt) {
				m->rec.headers = hp;
				for (size_t x = 0; x < rec->header_cnt; x++, hp++) {
					hp->key = copy_in(&p, rec->headers[x].key, rec->headers[x].key_len);
					hp->key_len = rec->headers[x].key_len;
					hp->value = copy_in(&p, rec->headers[x].value, rec->headers[x].value_len);
					hp->value_len = rec->headers[x].value_len;
				}
			}
			l->mq[l->mq_len++] = m;
		}
		if (moved)
			push_comp(w, r->c, 0, moved, COMP_MIGRATED);
		unpin(w, r->c);
	}
	l->off = 0;
	atomic_store_explicit(&l->tail, head, memory_order_release); /* the ring slots are free */
	atomic_fetch_add_explicit(&w->st.migrated, 1, memory_order_relaxed);
}

/* ---- batches ---------------------------------------------------------------------- */

/* Peek up to limit records (and batch.max.bytes) from the lane's head into w->ptrs and
 * w->refs. Returns how many. */
static uint32_t build_batch(sp_worker_t *w, sp_lane_t *l, uint32_t limit)
{
	sp_engine_t *e = w->e;
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (uint32_t q = l->mq_off; q < l->mq_len && n < limit; q++) {
		sp_mrec_t *m = l->mq[q];
		uint64_t rb = m->rec.key_len + m->rec.value_len;
		if (n > 0 && bytes + rb > e->batch_max_bytes)
			return n;
		bytes += rb;
		w->ptrs[n] = &m->rec;
		w->refs[n] = (sp_bref_t){m->c, 0, m};
		n++;
	}
	uint32_t head = atomic_load_explicit(&l->head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&l->tail, memory_order_relaxed);
	uint32_t off = l->off;
	while (n < limit && t != head) {
		sp_run_t *r = &l->ring[t & (SP_LANE_RING - 1)];
		for (; off < r->len && n < limit; off++) {
			uint32_t ord = r->begin + off;
			const spate_record_t *rec = &r->c->pub.recs[r->c->order[ord]];
			uint64_t rb = rec->key_len + rec->value_len;
			if (n > 0 && bytes + rb > e->batch_max_bytes)
				return n;
			bytes += rb;
			w->ptrs[n] = rec;
			w->refs[n] = (sp_bref_t){r->c, ord, NULL};
			n++;
		}
		if (off == r->len) {
			t++;
			off = 0;
		}
	}
	return n;
}

static sp_rstate_t *st_of(const sp_bref_t *r)
{
	return r->m ? &r->m->st : &r->c->st[r->c->order[r->ord]];
}

static const spate_record_t *rec_of(const sp_bref_t *r)
{
	return r->m ? &r->m->rec : &r->c->pub.recs[r->c->order[r->ord]];
}

static uint64_t next_rand(sp_worker_t *w)
{
	/* xorshift64*: jitter only */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ULL;
}

/* Park the lane for the backoff of attempt n (1 = first retry). */
static void park(sp_worker_t *w, sp_lane_t *l, uint32_t n)
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
		return COND_AGE;
	if (e->max_retry >= 0 && st->attempts > e->max_retry)
		return COND_ATTEMPTS;
	return -1;
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
static bool dead_letter(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k, int cond,
                        const char *const *errs)
{
	sp_engine_t *e = w->e;
	if (!e->dlq_open) {
		for (uint32_t i = 0; i < k; i++) {
			const spate_record_t *r = rec_of(&refs[i]);
			char pos[64];
			sp_msg(e, SP_MSG_WARN, "dropped %s position %s after %u attempts (%s): %s (no dlq configured)",
			       r->partition->name, spate_position_fmt(&r->position, pos, sizeof(pos)),
			       st_of(&refs[i])->attempts, cond_names[cond], errs && errs[i] ? errs[i] : l->last_err);
		}
		atomic_fetch_add_explicit(&w->st.dropped, k, memory_order_relaxed);
		consume(w, l, refs, k);
		l->dlq_pending = 0;
		return true;
	}
	size_t nh = 0;
	for (uint32_t i = 0; i < k; i++)
		nh += rec_of(&refs[i])->header_cnt + SP_DLQ_HDRS;
	if (grow((void **)&w->dlqhdrs, &w->dlqhdrs_cap, nh, sizeof(spate_header_t)) ||
	    grow((void **)&w->dlqbuf, &w->dlqbuf_cap, (size_t)k * SP_DLQ_VALBYTES, 1)) {
		sp_msg(e, SP_MSG_ERROR, "dlq: out of memory for %u records; will retry", k);
		park(w, l, 1);
		l->dlq_pending = k;
		l->dlq_condition = cond;
		return false;
	}
	spate_push_record_t *out = w->dlqrecs; /* batch_size entries, k <= batch_size */
	size_t max_bytes = e->dlq.ops->max_record_bytes ? e->dlq.ops->max_record_bytes(&e->dlq) : SIZE_MAX;
	spate_header_t *h = w->dlqhdrs;
	char *vb = w->dlqbuf;
	for (uint32_t i = 0; i < k; i++) {
		const spate_record_t *r = rec_of(&refs[i]);
		const sp_rstate_t *st = st_of(&refs[i]);
		int c = cond;
		size_t orig = r->key_len + r->value_len;
		for (size_t j = 0; j < r->header_cnt; j++)
			orig += r->headers[j].key_len + r->headers[j].value_len;
		bool meta_only = orig + SP_DLQ_VALBYTES > max_bytes;
		if (meta_only)
			c = COND_PAYLOAD;
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
		char *base = vb;
		const char *err = errs && errs[i] ? errs[i] : l->last_err;
#define ADD(name, ...)                                                                            \
	do {                                                                                      \
		int len_ = snprintf(vb, SP_DLQ_VALBYTES - (size_t)(vb - base), __VA_ARGS__);      \
		if (len_ < 0)                                                                     \
			len_ = 0;                                                                 \
		if ((size_t)len_ >= SP_DLQ_VALBYTES - (size_t)(vb - base))                        \
			len_ = (int)(SP_DLQ_VALBYTES - (size_t)(vb - base)) - 1;                  \
		h[hn++] = (spate_header_t){name, sizeof(name) - 1, vb, (size_t)len_};             \
		vb += len_;                                                                       \
	} while (0)
		char pos[64];
		spate_position_fmt(&r->position, pos, sizeof(pos));
		ADD("spate.id", "%s/%s", r->partition->name, pos);
		ADD("spate.condition", "%s", cond_names[c]);
		ADD("spate.attempts", "%u", st->attempts);
		ADD("spate.source", "%s", r->partition->source);
		ADD("spate.partition", "%s", r->partition->name);
		ADD("spate.position", "%s", pos);
		ADD("spate.first.attempt.ms", "%" PRId64, st->first_fail_ms);
		ADD("spate.last.attempt.ms", "%" PRId64, st->last_fail_ms);
		ADD("spate.error", "%.400s", err && *err ? err : "handler failed");
#undef ADD
		vb = base + SP_DLQ_VALBYTES;
		out[i].header_cnt = hn;
		h += hn;
	}
	char errstr[256] = "";
	int rc = sp_dlq_write(e, out, k, errstr, sizeof(errstr));
	if (rc != SPATE_OK) {
		atomic_fetch_add_explicit(&w->st.dlq_errors, 1, memory_order_relaxed);
		const spate_record_t *r = rec_of(&refs[0]);
		char pos[64];
		sp_msg(e, SP_MSG_ERROR, "dlq: cannot write %u records of %s from position %s: %s; the lane waits and retries",
		       k, r->partition->name, spate_position_fmt(&r->position, pos, sizeof(pos)), errstr);
		l->dlq_pending = k;
		l->dlq_condition = cond;
		park(w, l, (uint32_t)(atomic_load(&w->st.dlq_errors) % 8) + 1);
		if (!l->park_until_ms)
			l->park_until_ms = sp_now_ms() + 1;
		return false;
	}
	atomic_fetch_add_explicit(&w->st.dlq, k, memory_order_relaxed);
	consume(w, l, refs, k);
	l->dlq_pending = 0;
	return true;
}

static void first_record(sp_engine_t *e)
{
	if (!atomic_load_explicit(&e->first_ns, memory_order_relaxed)) {
		int64_t zero = 0;
		atomic_compare_exchange_strong(&e->first_ns, &zero, sp_now_ns());
	}
}

/* A batch of the bisect region is done: the next batch is the pending second half of the
 * innermost split, or a normal batch once no split is pending. */
static void bisect_next(sp_lane_t *l)
{
	if (!l->bisect_limit)
		return;
	l->bisect_limit = l->bisect_depth ? l->bisect_stack[--l->bisect_depth] : 0;
}

/* Run one batch of the lane. Returns false when the lane should be released (empty,
 * parked, or stopping). */
/* The lane's partition was released: everything it holds leaves as DONE, unhandled
 * (the partition is never checkpointed again; its new owner handles the records). */
static void drop_released(sp_worker_t *w, sp_lane_t *l)
{
	uint32_t n;
	while ((n = build_batch(w, l, w->e->batch_size)))
		consume(w, l, w->refs, n);
	l->dlq_pending = 0;
	l->bisect_limit = 0;
	l->bisect_depth = 0;
	l->park_until_ms = 0;
}

static bool run_batch(sp_worker_t *w, sp_lane_t *l)
{
	sp_engine_t *e = w->e;
	if (atomic_load_explicit(&l->released, memory_order_acquire)) {
		drop_released(w, l);
		return false;
	}
	if (l->dlq_pending) {
		uint32_t k = build_batch(w, l, l->dlq_pending);
		if (k < l->dlq_pending)
			l->dlq_pending = k;
		return k && dead_letter(w, l, w->refs, k, l->dlq_condition, NULL);
	}
	uint32_t limit = e->batch_size;
	if (l->bisect_limit && l->bisect_limit < limit)
		limit = l->bisect_limit;
	uint32_t n = build_batch(w, l, limit);
	if (!n)
		return false;
	memset(w->failed, 0, n);
	w->errbuf_len = 0;
	spate_batch_t b = {.recs = w->ptrs, .n = n, .failed = w->failed, .w = w};
	first_record(e);
	if (atomic_load_explicit(&e->cold_ns, memory_order_relaxed))
		sp_autoscale_cold_done(e);
	int64_t t0 = sp_now_ns();
	int res = e->h.handle(e->h.opaque, w->hctx, &b);
	uint64_t took = (uint64_t)(sp_now_ns() - t0);
	atomic_fetch_add_explicit(&w->st.busy_ns, took, memory_order_relaxed);
	unsigned us = (unsigned)(took / 1000), bucket = 0;
	while (us > 1 && bucket < SP_LAT_BUCKETS - 1) {
		us >>= 1;
		bucket++;
	}
	atomic_fetch_add_explicit(&w->st.lat[bucket], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st.batches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st.records_in, n, memory_order_relaxed);

	if (res != SPATE_HANDLER_OK && res != SPATE_HANDLER_FAIL && res != SPATE_HANDLER_ITEM_FAILURES) {
		/* -1, a negative spate_err_t, anything else: the batch failed (guarantee 1) */
		if (!atomic_exchange(&e->bad_result_said, true))
			sp_msg(e, SP_MSG_ERROR,
			       "handler %s returned %d, which is not a spate_handler_res_t (OK %d, FAIL %d, "
			       "ITEM_FAILURES %d): its batch counts as failed (said once)",
			       e->h.name ? e->h.name : "(unnamed)", res, SPATE_HANDLER_OK, SPATE_HANDLER_FAIL,
			       SPATE_HANDLER_ITEM_FAILURES);
		if (!b.err[0])
			snprintf(b.err, sizeof(b.err), "handler returned %d (not a spate_handler_res_t)", res);
		res = SPATE_HANDLER_FAIL;
	}
	bool items = e->item_failures && b.nfailed > 0 && res != SPATE_HANDLER_FAIL;
	bool whole = !items && (res == SPATE_HANDLER_FAIL || (res == SPATE_HANDLER_ITEM_FAILURES && b.nfailed));
	if (!items && !whole) {
		consume(w, l, w->refs, n);
		bisect_next(l);
		return true;
	}
	int64_t wall = sp_wall_ms();
	if (items) {
		uint32_t f = 0;
		while (!w->failed[f])
			f++;
		atomic_fetch_add_explicit(&w->st.failed, b.nfailed, memory_order_relaxed);
		consume(w, l, w->refs, f);
		for (uint32_t i = f; i < n; i++)
			if (w->failed[i])
				charge(st_of(&w->refs[i]), wall);
		const char *msg = w->item_err[f] != UINT32_MAX ? w->errbuf + w->item_err[f] : "item failed";
		snprintf(l->last_err, sizeof(l->last_err), "%s", msg);
		int cond = exhausted(e, rec_of(&w->refs[f]), st_of(&w->refs[f]));
		if (cond >= 0) {
			/* the failed item and the exhausted failed items right behind it leave
			 * together, each with its own message (at most SP_ITEM_DLQ_MAX at once) */
			const char *errs[SP_ITEM_DLQ_MAX];
			uint32_t k = 0;
			while (f + k < n && k < SP_ITEM_DLQ_MAX && w->failed[f + k] &&
			       (k == 0 || exhausted(e, rec_of(&w->refs[f + k]), st_of(&w->refs[f + k])) == cond)) {
				uint32_t o = w->item_err[f + k];
				errs[k] = o != UINT32_MAX ? w->errbuf + o : "item failed";
				k++;
			}
			return dead_letter(w, l, &w->refs[f], k, cond, errs);
		}
		park(w, l, st_of(&w->refs[f])->attempts);
		return l->park_until_ms == 0;
	}
	/* the whole batch failed */
	atomic_fetch_add_explicit(&w->st.failed, n, memory_order_relaxed);
	snprintf(l->last_err, sizeof(l->last_err), "%s",
	         b.err[0] ? b.err : (res == SPATE_HANDLER_FAIL ? "handler failed the batch" : "item failed"));
	if (e->bisect && n > 1) {
		/* split: retry at once with half the size; no attempt is charged */
		if (l->bisect_depth < SP_BISECT_DEPTH)
			l->bisect_stack[l->bisect_depth++] = n - n / 2;
		l->bisect_limit = n / 2;
		atomic_fetch_add_explicit(&w->st.retries, 1, memory_order_relaxed);
		return true;
	}
	for (uint32_t i = 0; i < n; i++)
		charge(st_of(&w->refs[i]), wall);
	/* attempts never grow along a lane, so exhausted records form a prefix */
	uint32_t k = 0;
	int cond = -1;
	while (k < n) {
		int c = exhausted(e, rec_of(&w->refs[k]), st_of(&w->refs[k]));
		if (c < 0)
			break;
		if (cond < 0)
			cond = c;
		k++;
	}
	if (k) {
		if (!dead_letter(w, l, w->refs, k, cond, NULL))
			return false;
		if (k == n)
			bisect_next(l);
		return true;
	}
	park(w, l, st_of(&w->refs[0])->attempts);
	return l->park_until_ms == 0;
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
		if (!e->init_failed)
			snprintf(e->init_err, sizeof(e->init_err), "handler: init failed on worker %d: %s", w->id,
			         spate_err2str(rc));
		e->init_failed = 1;
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
		while (!e->quit) {
			bool active = w->id < e->active;
			if (active != w->inited) {
				if (!set_instance(w, active)) {
					pthread_mutex_unlock(&e->mu);
					return NULL;
				}
				continue;
			}
			if (!active) {
				/* a stopped worker; with none active it still minds the retry timers,
				 * so a parked lane wakes the pool up when its time comes */
				int64_t next = 0;
				if (!e->active && e->parked) {
					next = unpark_locked(e, sp_now_ms());
					if (e->ready_head)
						sp_autoscale_wake_locked(e);
				}
				timed_wait(&e->idle_cv, &e->mu, next);
				continue;
			}
			if (atomic_load_explicit(&e->draining, memory_order_relaxed)) {
				/* a graceful stop: nothing new starts */
				e->idle_workers++;
				timed_wait(&e->work_cv, &e->mu, 0);
				e->idle_workers--;
				continue;
			}
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
			while (b++ < SP_LANE_BURST && may_run(e, l) && run_batch(w, l) && !e->quit)
				;
		if (l->park_until_ms)
			migrate(w, l);
		wake_engine_if_sleeping(e);

		pthread_mutex_lock(&e->mu);
		e->nrunning--;
		/* runs the engine queued after the copy (it saw the lane running, so it asked
		 * nobody to copy them): copy them next, or a full ring would wait forever */
		l->mig_wanted = l->park_until_ms &&
		                atomic_load_explicit(&l->head, memory_order_acquire) !=
		                    atomic_load_explicit(&l->tail, memory_order_relaxed);
		if (l->park_until_ms) {
			l->state = LANE_PARKED;
			l->next = e->parked;
			e->parked = l;
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
	e->quit = true;
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
			for (sp_lane_t **pp = &e->parked; *pp; pp = &(*pp)->next)
				if (*pp == l) {
					*pp = l->next;
					break;
				}
			l->park_until_ms = 0;
			l->mig_wanted = false;
			push_ready_locked(e, l);
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
