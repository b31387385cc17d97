/* counter_source.c - a minimal spate source: `counter` hands out the numbers 0..999 in
 * each of two partitions, keyed "k<number mod 10>", and then ends (a finite source).
 * It includes only the plugin interface; docs/plugins.md walks through it. */
#include "sp_spi.h"

#include <stdio.h>
#include <stdlib.h>

#define COUNTER_PARTITIONS 2
#define COUNTER_RECORDS 1000 /* per partition */
#define COUNTER_CHUNK 64     /* records per chunk */

typedef struct cpart {
	sp_part_t *part;
	uint64_t next;                     /* the next number to hand out */
	bool lent;                         /* a chunk points into vals */
	char vals[COUNTER_CHUNK][24];      /* the bytes of that chunk's values */
} cpart_t;

/* open: register the partitions. */
static int counter_open(sp_source_t *s, char *err, size_t size)
{
	cpart_t *parts = calloc(COUNTER_PARTITIONS, sizeof(*parts));
	if (!parts)
		return sp_err(err, size, SPATE_ERR_NOMEM, "counter: out of memory");
	s->ctx = parts;
	for (int i = 0; i < COUNTER_PARTITIONS; i++) {
		parts[i].part = sp_engine_add_partition(s->eng, "counter", "numbers", i, NULL);
		if (!parts[i].part)
			return sp_err(err, size, SPATE_ERR_NOMEM, "counter: out of memory");
		parts[i].part->src_ctx = &parts[i];
		parts[i].part->has_end = true; /* the last position, for stop.at.end */
		parts[i].part->end = sp_pos(COUNTER_RECORDS - 1);
	}
	return SPATE_OK;
}

/* seek: start after the checkpoint, or (none yet) at the beginning, position 0. */
static int counter_seek(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ck, sp_ckpt_t *resolved, char *err,
                        size_t size)
{
	cpart_t *cp = p->src_ctx;
	cp->next = ck && !ck->beginning ? ck->after.w[2] + 1 : 0;
	if (resolved)
		resolved->beginning = true;
	return SPATE_OK;
}

/* The engine no longer reads the chunk's bytes: vals may be reused. */
static void counter_release(sp_chunk_t *c, void *opaque)
{
	cpart_t *cp = opaque;
	cp->lent = false;
}

/* poll: one chunk per partition at a time, none of a paused one; never blocks. */
static int counter_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget, char *err, size_t size)
{
	cpart_t *parts = s->ctx;
	int got = 0;
	for (int i = 0; i < COUNTER_PARTITIONS && got < max; i++) {
		cpart_t *cp = &parts[i];
		if (cp->next >= COUNTER_RECORDS || cp->part->paused || cp->lent)
			continue;
		uint32_t k = COUNTER_RECORDS - cp->next < COUNTER_CHUNK ? (uint32_t)(COUNTER_RECORDS - cp->next)
		                                                          : COUNTER_CHUNK;
		sp_chunk_t *c = sp_chunk_new(cp->part, k, 0);
		if (!c)
			return got ? got : sp_err(err, size, SPATE_ERR_NOMEM, "counter: out of memory");
		for (uint32_t j = 0; j < k; j++) {
			uint64_t v = cp->next + j;
			int len = snprintf(cp->vals[j], sizeof(cp->vals[j]), "%llu", (unsigned long long)v);
			c->recs[j].value = cp->vals[j];
			c->recs[j].value_len = (size_t)len;
			c->recs[j].key = &"k0k1k2k3k4k5k6k7k8k9"[2 * (v % 10)];
			c->recs[j].key_len = 2;
			c->recs[j].timestamp_ms = sp_wall_ms();
			c->recs[j].position = sp_pos(v);
			c->bytes += (uint64_t)len + 2;
		}
		c->release = counter_release;
		c->release_opaque = cp;
		cp->lent = true;
		cp->next += k;
		out[got++] = c;
	}
	return got;
}

/* ended: a finite source; the run ends once everything it handed out is DONE. */
static bool counter_ended(sp_source_t *s)
{
	cpart_t *parts = s->ctx;
	for (int i = 0; i < COUNTER_PARTITIONS; i++)
		if (parts[i].next < COUNTER_RECORDS)
			return false;
	return true;
}

static void counter_close(sp_source_t *s)
{
	free(s->ctx);
}

const sp_source_ops_t counter_source = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = "counter",
    .desc = "the numbers 0..999 in two partitions",
    .syntax = "counter",
    .open = counter_open,
    .seek = counter_seek,
    .poll = counter_poll,
    .ended = counter_ended,
    .close = counter_close,
};
