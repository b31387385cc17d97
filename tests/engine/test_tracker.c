/* test_tracker.c - tests engine/tracker.c: a property test over random completion
 * orders, with gaps in positions: the checkpoint never passes a record that is not
 * DONE, always equals the last DONE record before the first one that is not, and
 * reaches the end; finished chunks are released. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed_state;
static uint64_t rnd(void)
{
	uint64_t z = (seed_state += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

typedef struct ref {
	sp_ck_t *c;
	uint32_t i;
	uint32_t seq; /* delivery order within the partition */
} ref_t;

static int released;
static void on_release(sp_chunk_t *c, void *o)
{
	(void)c;
	(void)o;
	released++;
}

/* An engine with only what the tracker touches: one worker's completion ring, factor 1. */
static spate_engine_t *bare_engine(sp_worker_t **wout)
{
	spate_engine_t *e = calloc(1, sizeof(*e));
	sp_worker_t *w = aligned_alloc(64, (sizeof(sp_worker_t) + 63) & ~(size_t)63);
	cr_assert(e && w);
	memset(w, 0, sizeof(*w));
	e->workers = calloc(1, sizeof(*e->workers));
	cr_assert_not_null(e->workers);
	e->workers[0] = w;
	e->nworkers = 1;
	e->factor = 1;
	*wout = w;
	return e;
}

static void free_bare_engine(spate_engine_t *e, sp_worker_t *w)
{
	free(e->workers);
	free(w);
	free(e);
}

static void run_property(uint64_t seed)
{
	seed_state = seed;
	sp_worker_t *w;
	spate_engine_t *e = bare_engine(&w);
	enum { P = 3 };
	sp_part_t *parts[P];
	for (int p = 0; p < P; p++) {
		parts[p] = sp_engine_add_partition(e, "test", "t", p, NULL);
		cr_assert_not_null(parts[p]);
	}
	/* chunks with random sizes and positions with random gaps */
	size_t total = 0, cap = 4096;
	ref_t *refs = malloc(cap * sizeof(*refs));
	spate_position_t *pos_of[P];
	uint8_t *done_of[P];
	uint32_t count_of[P];
	released = 0;
	int nchunks = 0;
	for (int p = 0; p < P; p++) {
		uint64_t pos = rnd() % 10;
		uint32_t seq = 0;
		pos_of[p] = malloc(2000 * sizeof(spate_position_t));
		done_of[p] = calloc(2000, 1);
		int chunks = 1 + (int)(rnd() % 8);
		for (int k = 0; k < chunks; k++) {
			uint32_t n = 1 + (uint32_t)(rnd() % 200);
			sp_ck_t *c = sp_ck(sp_chunk_new(parts[p], n, 0));
			c->pub.release = on_release;
			/* odd seeds take the in-order prefix path of factor 1 where it applies */
			c->identity = seed & 1;
			for (uint32_t i = 0; i < n; i++) {
				pos += 1 + (rnd() % 4 == 0 ? rnd() % 1000 : 0); /* gaps */
				c->pub.recs[i].position = sp_pos(pos);
				c->order[i] = i;
				pos_of[p][seq] = c->pub.recs[i].position;
				if (total == cap)
					refs = realloc(refs, (cap *= 2) * sizeof(*refs));
				refs[total++] = (ref_t){c, i, seq | ((uint32_t)p << 24)};
				seq++;
			}
			c->pub.bytes = n * 10;
			sp_tracker_add(e, c);
			nchunks++;
		}
		count_of[p] = seq;
	}
	cr_assert_eq(e->inflight_records, total);
	/* shuffle the completion order */
	for (size_t i = total; i > 1; i--) {
		size_t j = rnd() % i;
		ref_t t = refs[i - 1];
		refs[i - 1] = refs[j];
		refs[j] = t;
	}
	size_t k = 0;
	while (k < total) {
		/* a burst of completions, as a worker would push them */
		size_t burst = 1 + rnd() % 50;
		for (size_t b = 0; b < burst && k < total; b++, k++) {
			uint32_t head = sp_ring_prod_next(&w->cq);
			w->ring[head & (SP_COMP_RING - 1)] = (sp_comp_t){.c = refs[k].c, .begin = refs[k].i, .len = 1, .kind = COMP_DONE};
			sp_ring_publish(&w->cq, 1);
			done_of[refs[k].seq >> 24][refs[k].seq & 0xFFFFFF] = 1;
		}
		cr_assert_gt(sp_tracker_drain(e), 0);
		for (int p = 0; p < P; p++) {
			uint32_t first_not = 0;
			while (first_not < count_of[p] && done_of[p][first_not])
				first_not++;
			const sp_ckpt_t *ck = &parts[p]->eng->ckpt;
			if (first_not == 0) {
				cr_assert(ck->beginning, "seed %llu: partition %d checkpointed before any DONE",
				          (unsigned long long)seed, p);
			} else {
				cr_assert(!ck->beginning);
				cr_assert_eq(spate_position_cmp(&ck->after, &pos_of[p][first_not - 1]), 0,
				             "seed %llu: partition %d checkpoint %llu, expected %llu",
				             (unsigned long long)seed, p, (unsigned long long)ck->after.w[2],
				             (unsigned long long)pos_of[p][first_not - 1].w[2]);
				if (first_not < count_of[p])
					cr_assert_lt(spate_position_cmp(&ck->after, &pos_of[p][first_not]), 0);
			}
		}
	}
	for (int p = 0; p < P; p++) {
		cr_assert_eq(spate_position_cmp(&parts[p]->eng->ckpt.after, &pos_of[p][count_of[p] - 1]), 0);
		cr_assert_null(parts[p]->eng->fifo_head);
		free(pos_of[p]);
		free(done_of[p]);
	}
	cr_assert_eq(released, nchunks, "seed %llu: %d of %d chunks released", (unsigned long long)seed,
	             released, nchunks);
	cr_assert_eq(e->inflight_records, 0);
	cr_assert_eq(e->inflight_bytes, 0);
	cr_assert_eq(e->records_done, total);
	sp_chunk_cache_clear(e);
	for (size_t i = 0; i < e->nparts; i++)
		sp_part_free(e->parts[i]);
	free(e->parts);
	free(refs);
	free_bare_engine(e, w);
}

Test(tracker, random_completion_orders_with_gaps)
{
	for (uint64_t seed = 1; seed <= 200; seed++)
		run_property(seed);
}

/* Push one completion (records [begin, begin+len) of c's order) as a worker would. */
static void complete(sp_worker_t *w, sp_ck_t *c, uint32_t begin, uint32_t len)
{
	uint32_t head = sp_ring_prod_next(&w->cq);
	w->ring[head & (SP_COMP_RING - 1)] = (sp_comp_t){.c = c, .begin = begin, .len = len, .kind = COMP_DONE};
	sp_ring_publish(&w->cq, 1);
}

/* A partition whose tail is not records (a Kafka transaction's commit marker, aborted
 * records under read_committed, compaction): offsets 0..9 are records, 10 and 11 hold
 * nothing to deliver, the end is 12 (the last offset is 11). The source says so with a
 * skip chunk after the records; the checkpoint reaches 11, so the committed offset
 * (after + 1) reaches the end, only once every record before it is DONE. */
Test(tracker, skip_chunk_carries_the_checkpoint_over_a_tail_gap)
{
	sp_worker_t *w;
	spate_engine_t *e = bare_engine(&w);
	sp_part_t *p = sp_engine_add_partition(e, "kafka", "t", 0, NULL);
	cr_assert_not_null(p);
	p->has_end = true;
	p->end = sp_pos(11);
	released = 0;
	sp_ck_t *c = sp_ck(sp_chunk_new(p, 10, 0));
	c->pub.release = on_release;
	for (uint32_t i = 0; i < 10; i++) {
		c->pub.recs[i].position = sp_pos(i);
		c->order[i] = i;
	}
	c->pub.bytes = 100;
	sp_tracker_add(e, c);
	sp_ck_t *s = sp_ck(sp_chunk_skip(p, sp_pos(11)));
	cr_assert_not_null(s);
	sp_tracker_add(e, s);
	/* nothing DONE: the skip waits behind the records */
	cr_assert(p->eng->ckpt.beginning);
	cr_assert_eq(e->inflight_records, 10);
	complete(w, c, 0, 6);
	cr_assert_gt(sp_tracker_drain(e), 0);
	cr_assert(!p->eng->ckpt.beginning);
	cr_assert_eq(p->eng->ckpt.after.w[2], 5, "checkpoint %llu, expected 5 (records 6..9 not DONE)",
	             (unsigned long long)p->eng->ckpt.after.w[2]);
	cr_assert_eq(p->eng->fifo_head, c);
	/* the rest: the checkpoint passes the records and then the gap, to the end */
	complete(w, c, 6, 4);
	cr_assert_gt(sp_tracker_drain(e), 0);
	cr_assert_eq(p->eng->ckpt.after.w[2], 11, "checkpoint %llu, expected the end 11",
	             (unsigned long long)p->eng->ckpt.after.w[2]);
	cr_assert(spate_position_cmp(&p->eng->ckpt.after, &p->end) >= 0, "stop.at.end would not end");
	cr_assert(p->eng->dirty, "the store would not get the end");
	cr_assert_null(p->eng->fifo_head);
	cr_assert_eq(released, 1);
	cr_assert_eq(e->inflight_records, 0);
	cr_assert_eq(e->inflight_bytes, 0);

	/* a skip with nothing before it moves the checkpoint at once */
	sp_ck_t *s2 = sp_ck(sp_chunk_skip(p, sp_pos(20)));
	sp_tracker_add(e, s2);
	cr_assert_eq(p->eng->ckpt.after.w[2], 20);
	cr_assert_null(p->eng->fifo_head);
	/* and one behind the checkpoint never moves it back */
	sp_ck_t *s3 = sp_ck(sp_chunk_skip(p, sp_pos(15)));
	sp_tracker_add(e, s3);
	cr_assert_eq(p->eng->ckpt.after.w[2], 20);

	sp_chunk_cache_clear(e);
	sp_part_free(p);
	free(e->parts);
	free_bare_engine(e, w);
}
