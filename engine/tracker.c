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
 * in-flight count).
 * @locality the engine thread only.
 */
#include "engine/engine.h"

#include <stdlib.h>

static void advance(sp_engine_t *e, sp_part_t *p);

void sp_tracker_add(sp_engine_t *e, sp_chunk_t *c)
{
	struct sp_part_eng *pe = c->part->eng;
	c->next = NULL;
	c->seq = pe->next_seq++;
	if (pe->fifo_tail)
		pe->fifo_tail->next = c;
	else
		pe->fifo_head = c;
	pe->fifo_tail = c;
	e->inflight_bytes += c->bytes;
	e->inflight_records += c->n;
	if (e->inflight_bytes > e->peak_inflight_bytes)
		e->peak_inflight_bytes = e->inflight_bytes;
	if (c->skip && pe->fifo_head == c) /* nothing before it: no completion will come */
		advance(e, c->part);
}

/* Move the partition's cursor over DONE records; release finished chunks. */
static void advance(sp_engine_t *e, sp_part_t *p)
{
	struct sp_part_eng *pe = p->eng;
	sp_chunk_t *c;
	while ((c = pe->fifo_head)) {
		uint32_t cur = c->cursor > c->done_prefix ? c->cursor : c->done_prefix;
		if (c->pending == 0) {
			cur = c->n;
		} else {
			while (cur < c->n && c->st[cur].done)
				cur++;
		}
		if (cur > c->cursor) {
			pe->ckpt.beginning = false;
			pe->ckpt.after = c->recs[cur - 1].position;
			pe->dirty = true;
			c->cursor = cur;
		}
		if (cur < c->n)
			break;
		if (c->skip && (pe->ckpt.beginning || spate_position_cmp(&c->skip_to, &pe->ckpt.after) > 0)) {
			pe->ckpt.beginning = false;
			pe->ckpt.after = c->skip_to;
			pe->dirty = true;
		}
		pe->fifo_head = c->next;
		if (!pe->fifo_head)
			pe->fifo_tail = NULL;
		if (!c->bytes_released)
			e->inflight_bytes -= c->bytes;
		e->inflight_records -= c->n;
		sp_chunk_free(c);
	}
	pe->head_dirty = false;
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
		uint32_t tail = atomic_load_explicit(&w->ctail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&w->chead, memory_order_acquire);
		for (; tail != head; tail++) {
			sp_comp_t *cp = &w->ring[tail & (SP_COMP_RING - 1)];
			sp_chunk_t *c = cp->c;
			if (cp->kind == COMP_UNPIN) {
				/* its bytes are no longer read: they leave the in-flight count now,
				 * the records' state stays until they are DONE */
				if (!c->bytes_released) {
					if (c->release)
						c->release(c, c->release_opaque);
					c->bytes_released = true;
					e->inflight_bytes -= c->bytes;
				}
				entries++;
				continue;
			}
			if (c->identity && cp->begin == c->done_prefix) {
				/* one lane, completions in order: a prefix, no per-record marks */
				c->done_prefix += cp->len;
			} else {
				for (uint32_t k = cp->begin; k < cp->begin + cp->len; k++)
					c->st[c->order[k]].done = 1;
			}
			c->pending -= cp->len;
			recs += cp->len;
			struct sp_part_eng *pe = c->part->eng;
			if (pe->fifo_head == c && !pe->head_dirty) {
				pe->head_dirty = true;
				if (nt < 64)
					touched[nt++] = c->part;
				else
					overflow = true;
			}
			entries++;
		}
		atomic_store_explicit(&w->ctail, tail, memory_order_release);
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
	e->records_done += recs;
	e->done_since_flush += recs;
	e->last_done_ns = sp_now_ns();
	return entries;
}

void sp_tracker_free_all(sp_engine_t *e)
{
	for (size_t i = 0; i < e->nparts; i++) {
		struct sp_part_eng *pe = e->parts[i]->eng;
		sp_chunk_t *c = pe->fifo_head;
		while (c) {
			sp_chunk_t *n = c->next;
			sp_chunk_free(c);
			c = n;
		}
		pe->fifo_head = pe->fifo_tail = NULL;
	}
}
