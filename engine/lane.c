/* lane.c - a lane's queue: its ring of runs and its retry queue, and the completions
 * that report what it consumed.
 *
 * A lane holds, in order, the records of its partition whose XXH3(key) % factor is its
 * index: first its retry queue (mq: records a retrying lane copied into its arena, each
 * with its descriptor and state), then the runs of its ring (chunk, begin, len: index
 * runs into a chunk's order, no record bytes copied). Only the worker that holds the lane
 * reads or changes them (see the lane state machine in engine.h). A batch is built by
 * peeking at the head (sp_lane_build_batch); the cursor moves only over records that are
 * DONE (sp_lane_consume), so a failed record stays at the head and is retried from there.
 * Completions go to the engine thread over the worker's completion ring (ring.h), one
 * entry per contiguous run of one chunk.
 */
#include "engine/engine.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

static void arena_free(sp_worker_t *w, sp_lane_t *l);

/* ---- completions ------------------------------------------------------------------- */

static void push_comp(sp_worker_t *w, sp_ck_t *c, uint32_t begin, uint32_t len, uint32_t kind)
{
	while (!sp_ring_room(&w->cq, SP_COMP_RING)) {
		/* the engine thread is behind: make sure it runs, then let it */
		sp_engine_wake(w->e);
		sched_yield();
	}
	sp_comp_t *cp = &w->ring[sp_ring_prod_next(&w->cq) & (SP_COMP_RING - 1)];
	cp->c = c;
	cp->begin = begin;
	cp->len = len;
	cp->kind = kind;
	sp_ring_publish(&w->cq, 1);
}

/* The retry arena of a lane of p grew or shrank by delta bytes: they count toward p's
 * share of max.inflight.bytes (the tracker thread keeps the count). */
static void push_arena_kind(sp_worker_t *w, sp_part_t *p, int64_t delta, uint32_t kind)
{
	while (!sp_ring_room(&w->cq, SP_COMP_RING)) {
		sp_engine_wake(w->e);
		sched_yield();
	}
	sp_comp_t *cp = &w->ring[sp_ring_prod_next(&w->cq) & (SP_COMP_RING - 1)];
	cp->part = p;
	cp->delta = delta;
	cp->kind = kind;
	sp_ring_publish(&w->cq, 1);
}

static void push_arena(sp_worker_t *w, sp_part_t *p, int64_t delta)
{
	push_arena_kind(w, p, delta, COMP_ARENA);
}

/* One lane no longer reads chunk c's bytes: the last one tells the tracker to release
 * them. Must be pushed before the DONE entries of the same records (see consume). */
static void unpin(sp_worker_t *w, sp_ck_t *c)
{
	if (atomic_fetch_sub_explicit(&c->lane_refs, 1, memory_order_acq_rel) == 1)
		push_comp(w, c, 0, 0, COMP_UNPIN);
}

/* Records refs[0..k) are DONE: advance the lane's cursor over them (the migrated queue
 * first, then the ring) and report them, one completion per contiguous run of one
 * chunk. Runs the cursor finishes are unpinned first, so the tracker sees the UNPIN
 * before the DONE that could free the chunk. */
void sp_lane_consume(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k)
{
	if (!k)
		return;
	uint32_t left = k;
	if (l->mq_off < l->mq_len) {
		uint32_t take = l->mq_len - l->mq_off < left ? l->mq_len - l->mq_off : left;
		l->mq_off += take; /* migrated: unpinned when copied */
		left -= take;
	}
	uint32_t tail = sp_ring_cons_next(&l->rq);
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
	sp_ring_free_to(&l->rq, tail);
	if (l->mq_len && l->mq_off == l->mq_len)
		arena_free(w, l);
}

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

/* The copy of run r from its record from on: records k, headers nh, bytes (descriptors,
 * headers, key, value and header bytes). */
static size_t run_copy_bytes(const sp_run_t *r, uint32_t from, uint32_t *k, size_t *nh)
{
	size_t total = 0;
	for (uint32_t j = from; j < r->len; j++) {
		const spate_record_t *rec = &r->c->pub.recs[r->c->order[r->begin + j]];
		total += sizeof(sp_mrec_t) + rec->header_cnt * sizeof(spate_header_t) + rec_bytes(rec);
		*nh += rec->header_cnt;
	}
	*k += r->len - from;
	return total;
}

/* The retry queue's capacity for n records. */
static uint32_t mq_cap_for(uint32_t cap, uint32_t n)
{
	if (n <= cap)
		return cap;
	cap = cap ? cap : 64;
	while (cap < n)
		cap *= 2;
	return cap;
}

/* What a copy of k records of total bytes adds to the lane's count: the arena block and
 * the retry queue's growth to hold them beside its live copies (*cap gets its capacity). */
static uint64_t copy_add(const sp_lane_t *l, uint32_t live, uint32_t k, size_t total, uint32_t *cap)
{
	*cap = mq_cap_for(l->mq_cap, live + k);
	return sizeof(sp_arena_t) + total + (uint64_t)(*cap - l->mq_cap) * sizeof(*l->mq);
}

/* A reserved copy that is not made: its reservation goes back, and a copy past the share
 * lets the next one be tried. */
static void give_back(struct sp_part_eng *pe, uint64_t add, bool over)
{
	atomic_fetch_sub_explicit(&pe->mig_taken, add, memory_order_relaxed);
	if (over)
		atomic_store_explicit(&pe->mig_over, false, memory_order_release);
}

/* The lane retries: copy the records queued in its ring (descriptor, state, key, value,
 * headers) into an arena block, queue the copies (freeing the ring slots) and unpin the
 * chunks, so one poison key holds neither read buffers nor ring slots, and once a
 * chunk's other records are DONE the tracker frees its body too (compact() in
 * tracker.c). What is copied counts in the partition's in-flight bytes (flow.c), and is
 * reserved first against what the partition's share leaves (mig_limit): the copies
 * count while the chunks they came from still do, and a copy is larger than what it
 * replaces when records are small (a descriptor each), so copying without the
 * reservation let many retrying lanes pass the bound. Whole runs are copied, oldest
 * first, as many as the reservation allows; the rest stay in the ring (pinned, as if the
 * lane did not retry) until a later copy finds room. Only the worker that holds the lane
 * calls it. Returns false when it copied nothing that was there to copy (no room, or out
 * of memory): nothing changed then. */
bool sp_lane_migrate(sp_worker_t *w, sp_lane_t *l)
{
	uint32_t head = sp_ring_cons_end(&l->rq);
	uint32_t tail = sp_ring_cons_next(&l->rq);
	if (tail == head)
		return true;
	struct sp_part_eng *pe = l->part->eng;
	uint32_t live = l->mq_len - l->mq_off; /* queued copies kept after the compaction below */
	uint32_t k = 0, cap = l->mq_cap;
	size_t total = 0, nh = 0;
	uint64_t add = 0;
	uint32_t end = tail; /* runs [tail, end) are copied */
	uint64_t taken = atomic_load_explicit(&pe->mig_taken, memory_order_relaxed);
	for (;;) {
		uint64_t limit = atomic_load_explicit(&pe->mig_limit, memory_order_seq_cst);
		/* the longest prefix of runs whose copy fits */
		k = 0;
		total = nh = 0;
		add = 0;
		end = tail;
		cap = l->mq_cap;
		for (uint32_t t = tail; t != head; t++) {
			uint32_t k2 = k;
			size_t nh2 = nh;
			size_t tot2 = total + run_copy_bytes(&l->ring[t & (SP_LANE_RING - 1)], t == tail ? l->off : 0,
			                                     &k2, &nh2);
			uint32_t cap2;
			uint64_t add2 = copy_add(l, live, k2, tot2, &cap2);
			if (taken + add2 > limit)
				break;
			k = k2;
			nh = nh2;
			total = tot2;
			cap = cap2;
			add = add2;
			end = t + 1;
		}
		if (end == tail)
			break;
		if (atomic_compare_exchange_weak_explicit(&pe->mig_taken, &taken, taken + add, memory_order_seq_cst,
		                                          memory_order_relaxed))
			break;
	}
	bool over = false;
	if (end == tail) {
		/* No room. The oldest run may still be copied past the share when this lane is
		 * the last to read its chunk and other lanes share the partition: the chunk's
		 * other records are DONE, so the copy releases it (bytes and, compacted, its
		 * descriptors), about what the copy takes; without it the lane would pin the
		 * chunk, the partition would stay paused at its share, and the other lanes would
		 * wait for the poison (guarantee 4). One such copy at a time per partition; its
		 * count goes after the chunk's release (COMP_ARENA_OVER), and admission counts it
		 * meanwhile as a reservation. */
		sp_run_t *r = &l->ring[tail & (SP_LANE_RING - 1)];
		bool no = false;
		if (w->e->factor < 2 || atomic_load_explicit(&r->c->lane_refs, memory_order_acquire) != 1 ||
		    !atomic_compare_exchange_strong_explicit(&pe->mig_over, &no, true, memory_order_acq_rel,
		                                             memory_order_relaxed))
			return false;
		over = true;
		total = run_copy_bytes(r, l->off, &k, &nh);
		add = copy_add(l, live, k, total, &cap);
		end = tail + 1;
		taken = atomic_fetch_add_explicit(&pe->mig_taken, add, memory_order_seq_cst);
	} else if (taken + add > atomic_load_explicit(&pe->mig_limit, memory_order_seq_cst)) {
		/* the tracker may be admitting a chunk into the same room: it lowers the limit
		 * first, then reads mig_taken (sp_flow_fits); seen from here after the
		 * reservation, one of the two sees the other */
		give_back(pe, add, false);
		return false;
	}
	/* reserved: from here on each part of add is counted (push_arena) or given back */
	if (l->mq_off) { /* make room in the queue: drop what was consumed, then grow */
		memmove(l->mq, l->mq + l->mq_off, (size_t)live * sizeof(*l->mq));
		l->mq_len = live;
		l->mq_off = 0;
	}
	if (cap != l->mq_cap) {
		sp_mrec_t **nq = realloc(l->mq, (size_t)cap * sizeof(*nq));
		if (!nq) {
			sp_msg(w->e, SP_MSG_WARN, "retry queue: out of memory for %u records; the lane keeps its chunks", k);
			give_back(pe, add, over);
			return false;
		}
		uint64_t grew = (uint64_t)(cap - l->mq_cap) * sizeof(*nq);
		l->mq = nq;
		l->mq_cap = cap;
		l->arena_counted += grew;
		push_arena(w, l->part, (int64_t)grew);
		atomic_fetch_add_explicit(&w->st.arena_bytes, grew, memory_order_relaxed);
		add -= grew;
	}
	sp_arena_t *a = malloc(sizeof(*a) + total);
	if (!a) {
		sp_msg(w->e, SP_MSG_WARN, "retry arena: out of memory for %zu bytes; the lane keeps its chunks",
		       total);
		give_back(pe, add, over);
		return false;
	}
	a->len = total;
	a->next = l->arena;
	l->arena = a;
	/* the copies count before the chunks are unpinned, so the bound never sees a dip;
	 * a copy past the share counts after (it is a reservation meanwhile) */
	l->arena_counted += add;
	if (!over)
		push_arena(w, l->part, (int64_t)add);
	atomic_fetch_add_explicit(&w->st.arena_bytes, add, memory_order_relaxed);
	/* mrecs first (aligned: the block's bytes are max-aligned), then headers, then bytes */
	sp_mrec_t *mr = (sp_mrec_t *)a->bytes;
	spate_header_t *hp = (spate_header_t *)(mr + k);
	char *p = (char *)(hp + nh);
	for (uint32_t t = tail; t != end; t++) {
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
	sp_ring_free_to(&l->rq, end); /* the ring slots are free */
	if (over)
		push_arena_kind(w, l->part, (int64_t)add, COMP_ARENA_OVER);
	atomic_fetch_add_explicit(&w->st.migrated, 1, memory_order_relaxed);
	return true;
}

/* Peek up to limit records (and batch.max.bytes) from the lane's head into w->ptrs and
 * w->refs. Returns how many. */
uint32_t sp_lane_build_batch(sp_worker_t *w, sp_lane_t *l, uint32_t limit)
{
	w->bytes_full = false;
	sp_engine_t *e = w->e;
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (uint32_t q = l->mq_off; q < l->mq_len && n < limit; q++) {
		sp_mrec_t *m = l->mq[q];
		uint64_t rb = m->rec.key_len + m->rec.value_len;
		if (n > 0 && bytes + rb > e->batch_max_bytes) {
			w->bytes_full = true;
			return n;
		}
		bytes += rb;
		w->ptrs[n] = &m->rec;
		w->refs[n] = (sp_bref_t){m->c, 0, m};
		n++;
	}
	uint32_t head = sp_ring_cons_end(&l->rq);
	uint32_t t = sp_ring_cons_next(&l->rq);
	uint32_t off = l->off;
	while (n < limit && t != head) {
		sp_run_t *r = &l->ring[t & (SP_LANE_RING - 1)];
		for (; off < r->len && n < limit; off++) {
			uint32_t ord = r->begin + off;
			const spate_record_t *rec = &r->c->pub.recs[r->c->order[ord]];
			uint64_t rb = rec->key_len + rec->value_len;
			if (n > 0 && bytes + rb > e->batch_max_bytes) {
				w->bytes_full = true;
				return n;
			}
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
