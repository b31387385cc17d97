/* chunk.c - chunks: allocation, the engine's caches of freed ones, freeing.
 *
 * A chunk is a header (sp_ck_t, which embeds the source-visible sp_chunk_t first) and a
 * body: one allocation of the records' descriptors, their states, the order array and
 * the header storage. Freed headers and bodies are kept in per-engine caches for reuse
 * (a body is about 0.5 MiB, above glibc's mmap threshold: without reuse every chunk's
 * pages would fault in anew); the cached bodies hold at most a quarter of
 * max.inflight.bytes (SP_CHUNK_CACHE_DIV), memory outside the bound that docs/semantics.md
 * states. Bodies are allocated in size classes (body_class), and one
 * is reused only when it wastes at most 1/SP_CHUNK_SLACK_DIV of what is needed, since its
 * size counts in the in-flight bound.
 * @locality the engine thread (sources call sp_chunk_new from poll).
 */
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

/* need rounded up to its size class: SP_CHUNK_SLACK_DIV classes per power of two (a
 * class wastes less than 1/SP_CHUNK_SLACK_DIV of need). Chunks whose record counts differ
 * a little (a compressed log's reads: the records of one 1.25 MiB read vary with the
 * compression) then share bodies through the cache; sized exactly, a body fitted only
 * chunks of its size or a little smaller, every other chunk allocated a new body, and
 * its pages (above glibc's mmap threshold) faulted in anew. */
static size_t body_class(size_t need)
{
	if (need <= 4096)
		return need;
	size_t pow = (size_t)1 << (63 - __builtin_clzll((unsigned long long)need));
	size_t step = pow / SP_CHUNK_SLACK_DIV;
	return (need + step - 1) / step * step;
}

/* A body allocation from the engine's cache: one that fits without wasting more than
 * 1/SP_CHUNK_SLACK_DIV of what is needed (the slack counts in the bound, so a source that
 * sizes a chunk to a budget leaves that much room: SP_CHUNK_BUDGET), else a new one.
 * *size gets its size. */
static void *body_get(spate_engine_t *e, size_t need, size_t *size)
{
	for (int i = 0; e && i < e->chunk_cached; i++) {
		if (e->chunk_cache[i].size >= need && e->chunk_cache[i].size - need <= need / SP_CHUNK_SLACK_DIV) {
			void *m = e->chunk_cache[i].mem;
			*size = e->chunk_cache[i].size;
			e->chunk_cached_bytes -= *size;
			e->chunk_cache[i] = e->chunk_cache[--e->chunk_cached];
			return m;
		}
	}
	*size = body_class(need);
	return malloc(*size);
}

void sp_chunk_body_put(spate_engine_t *e, void *body, size_t size)
{
	if (!body)
		return;
	if (e && e->chunk_cached < SP_CHUNK_CACHE &&
	    e->chunk_cached_bytes + size <= e->max_inflight_bytes / SP_CHUNK_CACHE_DIV) {
		e->chunk_cached_bytes += size;
		e->chunk_cache[e->chunk_cached].mem = body;
		e->chunk_cache[e->chunk_cached].size = size;
		e->chunk_cached++;
		return;
	}
	free(body);
}

static sp_ck_t *chunk_alloc(sp_part_t *p, uint32_t n, uint32_t hdr_cap, bool init_recs)
{
	size_t off_st = (size_t)n * sizeof(spate_record_t);
	size_t off_order = off_st + (size_t)n * sizeof(sp_rstate_t);
	size_t off_hdrs = (off_order + (size_t)n * sizeof(uint32_t) + 15) & ~(size_t)15;
	size_t total = off_hdrs + (size_t)hdr_cap * sizeof(spate_header_t);
	spate_engine_t *e = p->eng ? p->eng->engine : NULL;
	sp_ck_t *c;
	if (e && e->hdr_cached)
		c = e->hdr_cache[--e->hdr_cached];
	else if (!(c = malloc(sizeof(*c))))
		return NULL;
	memset(c, 0, sizeof(*c));
	char *m = NULL;
	size_t size = 0;
	if (total && !(m = body_get(e, total, &size))) {
		free(c);
		return NULL;
	}
	c->body = m;
	c->body_size = size;
	c->pub.part = p;
	c->pub.n = n;
	c->pending = n;
	c->pub.recs = (spate_record_t *)m;
	c->st = n ? (sp_rstate_t *)(m + off_st) : NULL;
	c->order = n ? (uint32_t *)(m + off_order) : NULL;
	c->pub.hdrs = hdr_cap ? (spate_header_t *)(m + off_hdrs) : NULL;
	c->pub.hdr_cap = hdr_cap;
	if (n)
		memset(c->st, 0, (size_t)n * sizeof(sp_rstate_t));
	for (uint32_t i = 0; init_recs && i < n; i++) {
		spate_record_t *r = &c->pub.recs[i];
		memset(r, 0, sizeof(*r));
		r->version = SPATE_RECORD_VERSION;
		r->partition = &p->pub;
	}
	return c;
}

sp_chunk_t *sp_chunk_new(sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	sp_ck_t *c = chunk_alloc(p, n, hdr_cap, true);
	return c ? &c->pub : NULL;
}

sp_chunk_t *sp_chunk_new_bare(sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	sp_ck_t *c = chunk_alloc(p, n, hdr_cap, false);
	return c ? &c->pub : NULL;
}

sp_chunk_t *sp_chunk_skip(sp_part_t *p, spate_position_t to)
{
	sp_ck_t *c = chunk_alloc(p, 0, 0, false);
	if (!c)
		return NULL;
	c->pub.skip = true;
	c->pub.skip_to = to;
	return &c->pub;
}

void sp_ck_free(sp_ck_t *c)
{
	if (c->pub.release && !c->bytes_released)
		c->pub.release(&c->pub, c->pub.release_opaque);
	spate_engine_t *e = c->pub.part && c->pub.part->eng ? c->pub.part->eng->engine : NULL;
	sp_chunk_body_put(e, c->body, c->body_size);
	free(c->ghost);
	if (e && e->hdr_cached < SP_CHUNK_CACHE) {
		e->hdr_cache[e->hdr_cached++] = c;
		return;
	}
	free(c);
}

void sp_chunk_free(sp_chunk_t *c)
{
	if (c)
		sp_ck_free(sp_ck(c));
}

void sp_chunk_cache_clear(spate_engine_t *e)
{
	while (e->chunk_cached)
		free(e->chunk_cache[--e->chunk_cached].mem);
	e->chunk_cached_bytes = 0;
	while (e->hdr_cached)
		free(e->hdr_cache[--e->hdr_cached]);
}

