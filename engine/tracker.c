/* tracker.c - per-partition DONE state -> the checkpoint.
 *
 * Each partition keeps its dispatched chunks in delivery order (a FIFO). A completion
 * marks records DONE in their chunk's state array; the partition's head chunk then
 * advances a cursor over DONE records, and the checkpoint becomes the position of the
 * last record the cursor passed: the last DONE record before the first one that is not
 * DONE, in delivery order. Positions are never used for arithmetic, so gaps (Kafka
 * compaction, transaction markers, Kinesis sequence numbers) need no special case;
 * a gap at a partition's tail, after its last record, comes as a skip chunk (no
 * records) that moves the checkpoint to its position once everything before it is
 * DONE, so a checkpoint can reach an end that is not a record.
 * A chunk whose records are all DONE and passed is released (its bytes leave the
 * in-flight count). A later chunk that is wholly DONE while an earlier one is not (a
 * lane retries) is folded into the chunk before it: it is freed and its end noted there,
 * so what a retrying record pins is its own chunk, not everything read after it.
 * Records leave the in-flight count as they become DONE (flow.c), not when their chunk
 * leaves the FIFO.
 * @locality the engine thread only.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdlib.h>

static void advance(sp_engine_t *e, sp_part_t *p);

/* The position a checkpoint reaches once every record of c (and what was freed into it)
 * is DONE. */
static spate_position_t end_of(const sp_ck_t *c)
{
	if (c->has_tail)
		return c->tail_to;
	if (c->ghost)
		return c->ghost->last;
	return c->pub.n ? c->pub.recs[c->pub.n - 1].position : c->pub.skip_to;
}

static void unlink_chunk(struct sp_part_eng *pe, sp_ck_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		pe->fifo_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		pe->fifo_tail = c->prev;
}

/* c leaves the tracker: its memory and unreleased bytes leave the bound. */
static void release_chunk(sp_engine_t *e, sp_ck_t *c)
{
	if (!c->bytes_released)
		c->pub.part->eng->live_chunks--;
	sp_flow_add(e, c->pub.part, -(int64_t)(c->mem + (c->bytes_released ? 0 : c->pub.bytes)), 0);
	sp_ck_free(c);
}

/* Chunk c, not the head, is wholly DONE: fold it into the chunk before it and free it,
 * so an earlier record that still retries pins no more than its own chunk. */
static void fold(sp_engine_t *e, sp_ck_t *c)
{
	struct sp_part_eng *pe = c->pub.part->eng;
	sp_ck_t *prev = c->prev;
	prev->has_tail = true;
	prev->tail_to = end_of(c);
	unlink_chunk(pe, c);
	release_chunk(e, c);
}

/* Every unfinished record of c sits in a retrying lane's arena (no lane reads c, every
 * other record is DONE): keep one small entry per unfinished record and free the body,
 * so a lane that retries for long pins its own records, not the chunks they came in. */
static void compact(sp_engine_t *e, sp_ck_t *c)
{
	uint32_t cnt = c->pending;
	sp_ghost_t *g = malloc(sizeof(*g) + (size_t)cnt * sizeof(sp_ghost_ent_t));
	if (!g)
		return; /* the body stays; nothing is lost */
	g->cnt = 0;
	g->cursor = 0;
	g->last = c->pub.recs[c->pub.n - 1].position;
	uint32_t from = c->cursor > c->done_prefix ? c->cursor : c->done_prefix;
	for (uint32_t i = from; i < c->pub.n && g->cnt < cnt; i++) {
		if (c->st[i].done)
			continue;
		sp_ghost_ent_t *en = &g->ent[g->cnt++];
		en->idx = i;
		en->done = 0;
		en->has_pred = i > 0;
		if (i > 0)
			en->pred = c->pub.recs[i - 1].position;
	}
	if (g->cnt != cnt) { /* a bug: keep the body rather than lose a record */
		sp_msg(e, SP_MSG_ERROR, "tracker: %s chunk %" PRIu64 ": %u unfinished records, found %u; not compacted",
		       c->pub.part->pub.name, c->seq, cnt, g->cnt);
		free(g);
		return;
	}
	uint64_t before = c->mem;
	sp_chunk_body_put(e, c->body, c->body_size);
	c->body = NULL;
	c->pub.recs = NULL;
	c->st = NULL;
	c->order = NULL;
	c->pub.hdrs = NULL;
	c->ghost = g;
	c->mem = sizeof(*c) + sizeof(*g) + (size_t)cnt * sizeof(sp_ghost_ent_t);
	sp_flow_add(e, c->pub.part, (int64_t)c->mem - (int64_t)before, 0);
}

static void maybe_compact(sp_engine_t *e, sp_ck_t *c)
{
	if (c->bytes_released && !c->ghost && c->pending && c->pending == c->mig_pending)
		compact(e, c);
}

void sp_tracker_add(sp_engine_t *e, sp_ck_t *c)
{
	struct sp_part_eng *pe = c->pub.part->eng;
	c->next = NULL;
	c->prev = pe->fifo_tail;
	c->seq = pe->next_seq++;
	c->arrived_ns = sp_now_ns(); /* one clock read per chunk: latency from arrival, the window */
	c->arrived_ms = c->arrived_ns / 1000000;
	if (pe->fifo_tail)
		pe->fifo_tail->next = c;
	else
		pe->fifo_head = c;
	pe->fifo_tail = c;
	/* the chunk's own memory counts too: a retrying record keeps it until it is DONE
	 * or its chunk is compacted */
	c->mem = sizeof(*c) + c->body_size;
	sp_flow_add(e, c->pub.part, (int64_t)(c->pub.bytes + c->mem), c->pub.n);
	pe->live_chunks++;
	if (c->pub.skip) {
		if (pe->fifo_head == c) /* nothing before it: no completion will come */
			advance(e, c->pub.part);
		else
			fold(e, c);
	}
}

/* Move the checkpoint over a compacted head chunk's DONE entries. Returns true when the
 * whole chunk is DONE. */
static bool advance_ghost(struct sp_part_eng *pe, sp_ck_t *c)
{
	sp_ghost_t *g = c->ghost;
	uint32_t k = g->cursor;
	while (k < g->cnt && g->ent[k].done)
		k++;
	if (k == g->cnt)
		return true;
	if (k > g->cursor || !g->cursor) {
		/* every record before entry k is DONE: the checkpoint is the one before it */
		const sp_ghost_ent_t *en = &g->ent[k];
		if (en->has_pred && (pe->ckpt.beginning || spate_position_cmp(&en->pred, &pe->ckpt.after) > 0)) {
			pe->ckpt.beginning = false;
			pe->ckpt.after = en->pred;
			pe->dirty = true;
		}
	}
	g->cursor = k;
	return false;
}

/* Move the partition's cursor over DONE records; release finished chunks. */
static void advance(sp_engine_t *e, sp_part_t *p)
{
	struct sp_part_eng *pe = p->eng;
	sp_ck_t *c;
	while ((c = pe->fifo_head)) {
		if (c->ghost) {
			if (c->pending && !advance_ghost(pe, c))
				break;
		} else {
			uint32_t cur = c->cursor > c->done_prefix ? c->cursor : c->done_prefix;
			if (c->pending == 0) {
				cur = c->pub.n;
			} else {
				while (cur < c->pub.n && c->st[cur].done)
					cur++;
			}
			if (cur > c->cursor) {
				pe->ckpt.beginning = false;
				pe->ckpt.after = c->pub.recs[cur - 1].position;
				pe->dirty = true;
				c->cursor = cur;
			}
			if (cur < c->pub.n)
				break;
		}
		spate_position_t end = end_of(c);
		if ((c->pub.skip || c->has_tail || c->ghost) &&
		    (pe->ckpt.beginning || spate_position_cmp(&end, &pe->ckpt.after) > 0)) {
			pe->ckpt.beginning = false;
			pe->ckpt.after = end;
			pe->dirty = true;
		}
		unlink_chunk(pe, c);
		release_chunk(e, c);
	}
	pe->head_dirty = false;
}

/* Records with indices [first, first+len) of c, copied into an arena, are DONE. */
static void done_idx(sp_ck_t *c, uint32_t first, uint32_t len)
{
	if (!c->ghost) {
		for (uint32_t k = first; k < first + len; k++)
			c->st[k].done = 1;
		return;
	}
	sp_ghost_t *g = c->ghost;
	for (uint32_t k = first; k < first + len; k++) {
		uint32_t lo = 0, hi = g->cnt;
		while (lo < hi) {
			uint32_t mid = (lo + hi) / 2;
			if (g->ent[mid].idx < k)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < g->cnt && g->ent[lo].idx == k)
			g->ent[lo].done = 1;
	}
}

size_t sp_tracker_drain(sp_engine_t *e)
{
	size_t entries = 0;
	uint64_t recs = 0;
	sp_part_t *touched[64];
	size_t nt = 0;
	bool overflow = false;
	for (int i = 0; i < e->nworkers; i++) {
		sp_worker_t *w = e->workers[i];
		if (!w)
			continue;
		uint32_t tail = sp_ring_cons_next(&w->cq);
		uint32_t head = sp_ring_cons_end(&w->cq);
		for (; tail != head; tail++) {
			sp_comp_t *cp = &w->ring[tail & (SP_COMP_RING - 1)];
			entries++;
			if (cp->kind == COMP_ARENA || cp->kind == COMP_ARENA_OVER) {
				if (cp->delta > 0) /* a copy reserved in mig_taken: counted now */
					cp->part->eng->mig_seen += (uint64_t)cp->delta;
				sp_flow_add(e, cp->part, cp->delta, 0);
				e->arena_bytes += (uint64_t)cp->delta;
				if (cp->kind == COMP_ARENA_OVER) /* its chunk was released just before */
					atomic_store_explicit(&cp->part->eng->mig_over, false, memory_order_release);
				continue;
			}
			sp_ck_t *c = cp->c;
			if (cp->kind == COMP_MIGRATED) {
				c->mig_pending += cp->len;
				continue;
			}
			if (cp->kind == COMP_UNPIN) {
				/* its bytes are no longer read: they leave the in-flight count now,
				 * the records' state stays until they are DONE */
				if (!c->bytes_released) {
					if (c->pub.release)
						c->pub.release(&c->pub, c->pub.release_opaque);
					c->bytes_released = true;
					c->pub.part->eng->live_chunks--;
					if (c->pub.bytes)
						sp_flow_add(e, c->pub.part, -(int64_t)c->pub.bytes, 0);
				}
				maybe_compact(e, c);
				continue;
			}
			if (cp->kind == COMP_DONE_IDX) {
				done_idx(c, cp->begin, cp->len);
				c->mig_pending -= cp->len;
			} else if (c->identity && cp->begin == c->done_prefix) {
				/* one lane, completions in order: a prefix, no per-record marks */
				c->done_prefix += cp->len;
			} else {
				for (uint32_t k = cp->begin; k < cp->begin + cp->len; k++)
					c->st[c->order[k]].done = 1;
			}
			c->pending -= cp->len;
			recs += cp->len;
			sp_flow_add(e, c->pub.part, 0, -(int64_t)cp->len);
			struct sp_part_eng *pe = c->pub.part->eng;
			pe->done += cp->len;
			if (pe->fifo_head == c) {
				if (!pe->head_dirty) {
					pe->head_dirty = true;
					if (nt < 64)
						touched[nt++] = c->pub.part;
					else
						overflow = true;
				}
			} else if (c->pending == 0) {
				fold(e, c);
				continue;
			}
			if (cp->kind == COMP_DONE)
				maybe_compact(e, c);
		}
		sp_ring_free_to(&w->cq, tail);
	}
	if (!entries)
		return 0;
	if (overflow) {
		for (size_t i = 0; i < e->nparts; i++)
			if (e->parts[i]->eng->head_dirty)
				advance(e, e->parts[i]);
	} else {
		for (size_t i = 0; i < nt; i++)
			advance(e, touched[i]);
	}
	if (recs) {
		atomic_fetch_add_explicit(&e->records_done, recs, memory_order_relaxed);
		e->done_since_flush += recs;
		atomic_store_explicit(&e->last_done_ns, sp_now_ns(), memory_order_relaxed);
	}
	return entries;
}

void sp_tracker_free_all(sp_engine_t *e)
{
	for (size_t i = 0; i < e->nparts; i++) {
		struct sp_part_eng *pe = e->parts[i]->eng;
		sp_ck_t *c = pe->fifo_head;
		while (c) {
			sp_ck_t *n = c->next;
			sp_ck_free(c);
			c = n;
		}
		pe->fifo_head = pe->fifo_tail = NULL;
	}
}
