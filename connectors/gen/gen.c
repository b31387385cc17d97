/* gen.c - the synthetic source (source=gen): replays a pre-generated pool of records.
 *
 * open() builds one pool (pool.c) from the gen.* keys and registers gen.partitions
 * partitions. Partition p holds gen.records / gen.partitions records (the first
 * gen.records % gen.partitions partitions one more); its record at position i is pool
 * record (p * GEN_PART_STRIDE + i) % gen.pool, so a partition's records are a pure
 * function of the configuration: after a restart the same positions hold the same
 * bytes, which is what makes resuming from a checkpoint testable.
 *
 * poll() hands out chunks round-robin over the partitions whose descriptors point into
 * the pool: nothing is copied and the chunk owns no buffer. One clock read per chunk
 * stamps its records. gen.rate limits records per second with one token bucket for the
 * whole source; next_ms() tells the engine when the bucket holds enough for a chunk.
 */
#include "gen.h"

#include "sp_spi.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Records per chunk at most: big enough that per-chunk costs (an allocation, a clock
 * read, one dispatch) vanish per record, small enough to spread over lanes and workers
 * soon after the start. */
#define GEN_CHUNK_RECORDS 4096
/* Key and value bytes per chunk at most (the design's "about 1 MiB" of one read), so a
 * pool of large values does not make chunks that pin max.inflight.bytes alone. A chunk
 * always holds at least one record. */
#define GEN_CHUNK_BYTES ((uint64_t)1 << 20)
/* Partition p starts its walk through the pool at p * GEN_PART_STRIDE (a prime), so
 * partitions do not replay the same records in step. */
#define GEN_PART_STRIDE 7919
/* With gen.rate: a chunk is made once the bucket holds this many milliseconds' worth of
 * records (at least one record), so a slow rate gives few small chunks, not one chunk
 * per record. */
#define GEN_RATE_SLICE_MS 10
/* With gen.rate: the bucket holds at most this many milliseconds' worth of records, so
 * a pause (backpressure) is not followed by an unbounded burst. */
#define GEN_RATE_BURST_MS 100

typedef struct gen_part {
	sp_part_t *part;
	uint64_t index; /* the partition number */
	uint64_t total; /* records in this partition; UINT64_MAX when endless */
	uint64_t next;  /* position of the next record poll() returns */
} gen_part_t;

typedef struct gen_ctx {
	sp_gen_pool_t *pool;
	const sp_gen_rec_t *recs;
	uint32_t pool_n;
	gen_part_t *parts;
	uint32_t nparts;
	uint32_t rr; /* the partition poll() serves first */
	bool endless;
	/* gen.rate's token bucket (0 = unlimited) */
	uint64_t rate;
	double tokens, slice, burst;
	int64_t last_ns;
} gen_ctx_t;

static void gen_close(sp_source_t *s)
{
	gen_ctx_t *x = s->ctx;
	if (!x)
		return;
	sp_gen_pool_free(x->pool);
	free(x->parts);
	free(x);
	s->ctx = NULL;
}

static int gen_open(sp_source_t *s, char *err, size_t sz)
{
	const spate_conf_t *c = sp_engine_conf(s->eng);
	if (s->arg && *s->arg)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "source: gen takes no argument, got \"gen:%s\" (shape it with gen.kind, "
		              "gen.records, ...)",
		              s->arg);
	uint64_t records = (uint64_t)sp_conf_int(c, "gen.records");
	uint32_t nparts = (uint32_t)sp_conf_int(c, "gen.partitions");
	bool stop_at_end = sp_conf_bool(c, "stop.at.end");
	if (stop_at_end && records == 0)
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "stop.at.end: gen.records=0 is endless and never reaches an end; set gen.records");

	gen_ctx_t *x = calloc(1, sizeof(*x));
	if (!x || !(x->parts = calloc(nparts, sizeof(*x->parts)))) {
		free(x);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "source: out of memory");
	}
	s->ctx = x;
	int rc =
	    sp_gen_pool_new(sp_conf_str(c, "gen.kind"), (uint32_t)sp_conf_int(c, "gen.pool"),
	                    (uint64_t)sp_conf_int(c, "gen.keys"), (uint32_t)sp_conf_int(c, "gen.value.bytes"),
	                    (uint64_t)sp_conf_int(c, "gen.seed"), &x->pool, err, sz);
	if (rc != SPATE_OK) {
		gen_close(s);
		return rc;
	}
	x->recs = sp_gen_pool_recs(x->pool);
	x->pool_n = sp_gen_pool_count(x->pool);
	x->nparts = nparts;
	x->endless = records == 0;
	x->rate = (uint64_t)sp_conf_int(c, "gen.rate");
	if (x->rate) {
		x->slice =
		    fmax(1.0, fmin((double)GEN_CHUNK_RECORDS, (double)x->rate * GEN_RATE_SLICE_MS / 1000.0));
		x->burst = fmax(x->slice, (double)x->rate * GEN_RATE_BURST_MS / 1000.0);
		x->tokens = x->slice; /* the first chunk goes out at once */
		x->last_ns = sp_now_ns();
	}
	for (uint32_t p = 0; p < nparts; p++) {
		gen_part_t *gp = &x->parts[p];
		gp->part = sp_engine_add_partition(s->eng, "gen", "gen", (int32_t)p, NULL);
		if (!gp->part) {
			gen_close(s);
			return sp_err(err, sz, SPATE_ERR_NOMEM,
			              "source: out of memory registering partition %" PRIu32, p);
		}
		gp->index = p;
		gp->total = x->endless ? UINT64_MAX : records / nparts + (p < records % nparts ? 1 : 0);
		gp->part->src_ctx = gp;
		if (stop_at_end) {
			gp->part->has_end = gp->total > 0;
			gp->part->end = sp_pos(gp->total > 0 ? gp->total - 1 : 0);
		}
	}
	return SPATE_OK;
}

static int gen_seek(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ckpt, sp_ckpt_t *resolved, char *err,
                    size_t sz)
{
	gen_part_t *gp = p->src_ctx;
	if (ckpt) {
		if (ckpt->beginning) {
			gp->next = 0;
			return SPATE_OK;
		}
		char buf[SPATE_POSITION_MAX];
		const spate_position_t *a = &ckpt->after;
		if (!sp_pos_is_offset(a) || a->w[2] == UINT64_MAX)
			return sp_err(err, sz, SPATE_ERR_OUT_OF_RANGE,
			              "%s: checkpoint %s is not a gen position", p->pub.name,
			              spate_position_fmt(a, buf, sizeof(buf)));
		if (!gp->total)
			return sp_err(err, sz, SPATE_ERR_OUT_OF_RANGE,
			              "%s: checkpoint %" PRIu64
			              " is past the partition's end (it holds no records); "
			              "did gen.records or gen.partitions change?",
			              p->pub.name, a->w[2]);
		if (a->w[2] >= gp->total)
			return sp_err(
			    err, sz, SPATE_ERR_OUT_OF_RANGE,
			    "%s: checkpoint %" PRIu64 " is past the partition's end (it holds %" PRIu64
			    " records, positions 0..%" PRIu64 "); did gen.records or gen.partitions change?",
			    p->pub.name, a->w[2], gp->total, gp->total - 1);
		gp->next = a->w[2] + 1;
		return SPATE_OK;
	}
	const char *start = sp_conf_str(sp_engine_conf(s->eng), "starting.position");
	resolved->beginning = true;
	resolved->after = sp_pos(0);
	gp->next = 0;
	/* latest: the end of what exists; an endless generator has nothing before "now".
	 * at-timestamp: every gen record is stamped "now", so it starts at the beginning. */
	if (!strcmp(start, "latest") && gp->total != UINT64_MAX) {
		gp->next = gp->total;
		if (gp->total > 0) {
			resolved->beginning = false;
			resolved->after = sp_pos(gp->total - 1);
		}
	}
	return SPATE_OK;
}

/* Add the tokens earned since the last refill, up to the burst. */
static void refill(gen_ctx_t *x)
{
	int64_t now = sp_now_ns();
	double earned = (double)(now - x->last_ns) * (double)x->rate / 1e9;
	x->last_ns = now;
	x->tokens = fmin(x->burst, x->tokens + earned);
}

/* How many of partition gp's next records make one chunk: at most max_recs records,
 * GEN_CHUNK_BYTES bytes and budget bytes, but never none when a record fits the
 * budget, and at least one when the chunk is the poll's first (so progress never
 * waits on the budget). Their bytes go to *bytes. */
static uint32_t fit(const gen_ctx_t *x, const gen_part_t *gp, uint64_t max_recs, uint64_t budget, bool first,
                    uint64_t *bytes)
{
	const sp_gen_rec_t *recs = x->recs;
	uint32_t idx = (uint32_t)((gp->index * GEN_PART_STRIDE + gp->next) % x->pool_n), n = 0;
	uint64_t sum = 0, cap = budget < GEN_CHUNK_BYTES ? budget : GEN_CHUNK_BYTES;
	uint64_t mem = 0; /* what the chunk counts in the bound: bytes and descriptors */
	budget = SP_CHUNK_BUDGET(budget);
	while (n < max_recs) {
		uint64_t len = (uint64_t)recs[idx].key_len + recs[idx].value_len;
		uint64_t cost = len + SP_CHUNK_REC_COST;
		bool ok = n == 0 ? first || cost <= budget : sum + len <= cap && mem + cost <= budget;
		if (!ok)
			break;
		sum += len;
		mem += cost;
		n++;
		if (++idx == x->pool_n)
			idx = 0;
	}
	*bytes = sum;
	return n;
}

/* A chunk of partition gp's next n records (n > 0), pointing into the pool. NULL when
 * out of memory. */
static sp_chunk_t *make_chunk(gen_ctx_t *x, gen_part_t *gp, uint32_t n, uint64_t bytes)
{
	sp_chunk_t *c = sp_chunk_new_bare(gp->part, n, 0); /* every field is written below */
	if (!c)
		return NULL;
	const sp_gen_rec_t *recs = x->recs;
	uint32_t idx = (uint32_t)((gp->index * GEN_PART_STRIDE + gp->next) % x->pool_n);
	int64_t ts = sp_wall_ms();
	uint64_t pos = gp->next;
	for (uint32_t i = 0; i < n; i++) {
		spate_record_t *r = &c->recs[i];
		const sp_gen_rec_t *g = &recs[idx];
		r->version = SPATE_RECORD_VERSION;
		r->flags = 0;
		r->headers = NULL;
		r->header_cnt = 0;
		r->partition = &gp->part->pub;
		r->key = g->key;
		r->key_len = g->key_len;
		r->value = g->value;
		r->value_len = g->value_len;
		r->timestamp_ms = ts;
		r->position = sp_pos(pos + i);
		if (++idx == x->pool_n)
			idx = 0;
	}
	c->bytes = bytes;
	gp->next += n;
	c->end_marker = gp->next == gp->total;
	return c;
}

/* Chunks round-robin over the partitions with records left, while max, the budget
 * (bytes; the first chunk always gets one record) and gen.rate's tokens allow. */
static int gen_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget, char *err, size_t sz)
{
	gen_ctx_t *x = s->ctx;
	if (max <= 0 || budget == 0)
		return 0;
	uint64_t allow = UINT64_MAX;
	if (x->rate) {
		refill(x);
		if (x->tokens < x->slice)
			return 0;
		allow = (uint64_t)x->tokens;
	}
	int got = 0;
	uint64_t used = 0, given = 0;
	uint32_t exhausted = 0; /* partitions seen in a row with nothing to give */
	while (got < max && given < allow && used < budget && exhausted < x->nparts) {
		gen_part_t *gp = &x->parts[x->rr];
		/* a partition the engine holds back (paused) waits; the others go on */
		if (gp->next >= gp->total || gp->part->paused) {
			x->rr = x->rr + 1 == x->nparts ? 0 : x->rr + 1;
			exhausted++;
			continue;
		}
		exhausted = 0;
		uint64_t max_recs = gp->total - gp->next, bytes;
		if (max_recs > GEN_CHUNK_RECORDS)
			max_recs = GEN_CHUNK_RECORDS;
		if (max_recs > allow - given)
			max_recs = allow - given;
		uint32_t n = fit(x, gp, max_recs, budget - used, got == 0, &bytes);
		if (n == 0)
			break; /* the budget is spent; this partition goes first next time */
		sp_chunk_t *c = make_chunk(x, gp, n, bytes);
		used += (uint64_t)n * SP_CHUNK_REC_COST;
		if (!c) {
			if (got > 0)
				break; /* hand over what we have; the next poll reports it */
			return sp_err(err, sz, SPATE_ERR_NOMEM, "%s: out of memory for a chunk",
			              gp->part->pub.name);
		}
		x->rr = x->rr + 1 == x->nparts ? 0 : x->rr + 1;
		out[got++] = c;
		used += bytes;
		given += n;
	}
	if (x->rate)
		x->tokens -= (double)given;
	return got;
}

static bool gen_ended(sp_source_t *s)
{
	gen_ctx_t *x = s->ctx;
	if (x->endless)
		return false;
	for (uint32_t p = 0; p < x->nparts; p++)
		if (x->parts[p].next < x->parts[p].total)
			return false;
	return true;
}

static int gen_next_ms(sp_source_t *s)
{
	gen_ctx_t *x = s->ctx;
	/* Unlimited: records are always ready, the engine polls whenever it has room. */
	if (!x->rate || gen_ended(s))
		return -1;
	refill(x);
	if (x->tokens >= x->slice)
		return 0;
	double ms = ceil((x->slice - x->tokens) * 1000.0 / (double)x->rate);
	return ms < 1 ? 1 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static int64_t gen_lag(sp_source_t *s)
{
	gen_ctx_t *x = s->ctx;
	if (x->endless)
		return -1;
	uint64_t lag = 0;
	for (uint32_t p = 0; p < x->nparts; p++)
		lag += x->parts[p].total - x->parts[p].next;
	return lag > INT64_MAX ? INT64_MAX : (int64_t)lag;
}

static int64_t gen_part_lag(sp_source_t *s, sp_part_t *p)
{
	const gen_part_t *gp = p->src_ctx;
	if (!gp || gp->total == UINT64_MAX)
		return -1;
	uint64_t lag = gp->total - gp->next;
	return lag > INT64_MAX ? INT64_MAX : (int64_t)lag;
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t gen_opts[] = {
    {"gen.kind", SP_OPT_ENUM, 0, 0, "fraud|sensor|bytes", "fraud",
     "gen: what records look like: JSON card transactions, JSON sensor readings, or random bytes"},
    {"gen.records", SP_OPT_INT, 0, INT64_MAX, NULL, "1000000", "gen: records in all (0 = endless)"},
    {"gen.partitions", SP_OPT_INT, 1, 4096, NULL, "4", "gen: partitions"},
    {"gen.keys", SP_OPT_INT, 1, 100000000, NULL, "10000", "gen: distinct keys (card or sensor ids)"},
    {"gen.value.bytes", SP_OPT_INT, 1, 16777216, NULL, "100", "gen: value size for gen.kind=bytes"},
    {"gen.rate", SP_OPT_INT, 0, INT64_MAX, NULL, "0", "gen: records/s in all (0 = as fast as possible)"},
    {"gen.seed", SP_OPT_INT, 0, INT64_MAX, NULL, "1", "gen: seed of the pre-generated pool (same seed, same records)"},
    {"gen.pool", SP_OPT_INT, 1, 10000000, NULL, "65536", "gen: records in the pre-generated pool that is replayed"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_source_ops_t sp_source_gen = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = "gen",
    .desc = "synthetic records replayed from a pre-generated pool (gen.kind=fraud|sensor|bytes)",
    .opts = gen_opts,
    .syntax = "gen",
    .open = gen_open,
    .seek = gen_seek,
    .poll = gen_poll,
    .fd = NULL,
    .next_ms = gen_next_ms,
    .lag = gen_lag,
    .part_lag = gen_part_lag,
    .push = NULL,
    .push_close = NULL,
    .ended = gen_ended,
    .close = gen_close,
};
