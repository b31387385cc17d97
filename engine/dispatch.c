/* dispatch.c - chunk -> lanes: route records by XXH3(key) into index runs.
 *
 * A chunk's records are grouped by lane with one counting sort into c->order, so each
 * lane gets one run (chunk, begin, len) per chunk: no record bytes are copied and a lane
 * queue operation moves a whole run, not a record. Keyless records go to lane 0 with
 * parallelization.factor 1 (order kept), and are spread by position above 1 (order
 * between keyless records is then lost; documented in docs/architecture.md).
 * @locality the engine thread only.
 */
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

uint32_t sp_lane_of(const spate_record_t *r, uint32_t factor)
{
	if (factor == 1)
		return 0;
	if (!r->key)
		return (uint32_t)(r->position.w[2] % factor);
	return (uint32_t)(XXH3_64bits(r->key, r->key_len) % factor);
}

static uint32_t ring_free(sp_lane_t *l)
{
	return sp_ring_room(&l->rq, SP_LANE_RING);
}

static void ring_push(sp_lane_t *l, sp_ck_t *c, uint32_t begin, uint32_t len)
{
	l->ring[sp_ring_prod_next(&l->rq) & (SP_LANE_RING - 1)] = (sp_run_t){c, begin, len};
	sp_ring_publish(&l->rq, 1);
}

bool sp_dispatch(sp_engine_t *e, sp_ck_t *c)
{
	sp_part_t *p = c->pub.part;
	uint32_t F = e->factor;
	sp_lane_t **lanes = p->eng->lanes;

	if (F == 1) {
		if (!ring_free(lanes[0]))
			return false;
		for (uint32_t i = 0; i < c->pub.n; i++)
			c->order[i] = i;
		c->identity = true;
		atomic_store_explicit(&c->lane_refs, 1, memory_order_relaxed);
		sp_tracker_add(e, c);
		ring_push(lanes[0], c, 0, c->pub.n);
		sp_lanes_defer(e, lanes, 1);
		return true;
	}

	/* Counting sort by lane. counts[] lives on the stack for small factors. */
	uint32_t stack_counts[64];
	uint32_t *counts = F <= 64 ? stack_counts : calloc(F, sizeof(uint32_t));
	if (!counts)
		return false;
	memset(counts, 0, F * sizeof(uint32_t));
	for (uint32_t i = 0; i < c->pub.n; i++) {
		uint32_t l = sp_lane_of(&c->pub.recs[i], F);
		c->st[i].lane = l;
		counts[l]++;
	}
	for (uint32_t l = 0; l < F; l++)
		if (counts[l] && !ring_free(lanes[l])) {
			if (counts != stack_counts)
				free(counts);
			return false;
		}
	/* prefix sums -> starting slots; then place indices in record order */
	uint32_t sum = 0;
	for (uint32_t l = 0; l < F; l++) {
		uint32_t k = counts[l];
		counts[l] = sum;
		sum += k;
	}
	for (uint32_t i = 0; i < c->pub.n; i++)
		c->order[counts[c->st[i].lane]++] = i;
	/* counts[l] is now the end of lane l's run */
	uint32_t runs = 0, prev = 0;
	for (uint32_t l = 0; l < F; l++) {
		runs += counts[l] > prev;
		prev = counts[l];
	}
	atomic_store_explicit(&c->lane_refs, runs, memory_order_relaxed);
	sp_tracker_add(e, c);
	sp_lane_t *touched_stack[64];
	sp_lane_t **touched = F <= 64 ? touched_stack : malloc(F * sizeof(*touched));
	size_t nt = 0;
	uint32_t begin = 0;
	for (uint32_t l = 0; l < F; l++) {
		uint32_t end = counts[l];
		if (end > begin) {
			ring_push(lanes[l], c, begin, end - begin);
			if (touched)
				touched[nt++] = lanes[l];
		}
		begin = end;
	}
	if (touched) {
		sp_lanes_defer(e, touched, nt);
	} else {
		/* out of memory for the list: mark every lane of the partition */
		sp_lanes_defer(e, lanes, F);
	}
	if (touched && touched != touched_stack)
		free(touched);
	if (counts != stack_counts)
		free(counts);
	return true;
}
