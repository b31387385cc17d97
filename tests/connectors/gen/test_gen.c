/* test_gen.c - tests of connectors/gen/gen.c: the synthetic source.
 *
 * Two levels. First the vtable itself, driven by hand on an engine that is never
 * started (open registers partitions; seek, poll, lag, ended and next_ms are then
 * called directly), so chunk shapes, positions, budgets and seeks are checked exactly.
 * Then whole runs through the public API, as an embedder would: every partition's
 * records arrive once, at consecutive positions from 0, holding the pool record gen
 * promises; a stopped run resumes after its checkpoint; a checkpoint past the end is
 * an error; handler=fraud over gen counts exactly the flags gen planted.
 */
#include "connectors/gen/gen.h"
#include "engine/engine.h"
#include "tests/common/engine.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const sp_source_ops_t sp_source_gen;

/* The stride gen.c walks the pool with per partition (its GEN_PART_STRIDE). */
#define PART_STRIDE 7919
/* The chunk size gen.c promises at most (its GEN_CHUNK_RECORDS). */
#define CHUNK_MAX 4096

static int noop(void *opaque, void *wctx, spate_batch_t *b)
{
	return SPATE_HANDLER_OK;
}

/* ---- the vtable by hand ------------------------------------------------------------------ */

typedef struct rig {
	spate_engine_t *e;
	sp_source_t s;
	bool open;
} rig_t;

/* An engine that is never started, and the gen source opened on it by hand. Returns the
 * source's open() result; err gets its message. */
static int rig_open(rig_t *r, const char *const *kv, const char *arg, char *err, size_t sz)
{
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "noop", .handle = noop};
	memset(r, 0, sizeof(*r));
	r->e = spate_engine_new(t_conf(kv), &h, err, sz);
	cr_assert_not_null(r->e, "%s", err);
	r->s = (sp_source_t){.ops = &sp_source_gen, .eng = r->e, .arg = arg};
	int rc = sp_source_gen.open(&r->s, err, sz);
	r->open = rc == SPATE_OK;
	return rc;
}

static void rig_close(rig_t *r)
{
	if (r->open)
		sp_source_gen.close(&r->s);
	spate_engine_destroy(r->e);
}

/* Seek every partition with no checkpoint; returns partitions. */
static size_t seek_all_fresh(rig_t *r, sp_ckpt_t *resolved)
{
	size_t n = sp_engine_partition_count(r->e);
	char err[256] = "";
	for (size_t i = 0; i < n; i++) {
		sp_ckpt_t res = {.beginning = false, .after = sp_pos(12345)};
		cr_assert_eq(
		    sp_source_gen.seek(&r->s, sp_engine_partition(r->e, i), NULL, &res, err, sizeof(err)),
		    SPATE_OK, "%s", err);
		if (resolved)
			resolved[i] = res;
	}
	return n;
}

Test(gen_source, partitions_and_ends)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "5",        "gen.records", "23", "stop.at.end",
	                    "true",           "gen.pool", "100",         NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_engine_partition_count(r.e), 5);
	const uint64_t totals[] = {5, 5, 5, 4, 4};
	for (size_t i = 0; i < 5; i++) {
		sp_part_t *p = sp_engine_partition(r.e, i);
		char name[32];
		snprintf(name, sizeof(name), "gen/gen/%zu", i);
		cr_assert_str_eq(p->pub.name, name);
		cr_assert_str_eq(p->pub.source, "gen");
		cr_assert_eq(p->pub.partition, (int32_t)i);
		cr_assert(p->has_end);
		cr_assert_eq(p->end.w[2], totals[i] - 1);
		cr_assert_eq(p->end.w[0] | p->end.w[1], 0);
	}
	seek_all_fresh(&r, NULL);
	cr_assert_eq(sp_source_gen.lag(&r.s), 23);
	rig_close(&r);

	/* fewer records than partitions: the empty ones have no end */
	const char *kv2[] = {"gen.partitions", "5",        "gen.records", "3", "stop.at.end",
	                     "true",           "gen.pool", "100",         NULL};
	cr_assert_eq(rig_open(&r, kv2, "", err, sizeof(err)), SPATE_OK, "%s", err);
	for (size_t i = 0; i < 5; i++) {
		sp_part_t *p = sp_engine_partition(r.e, i);
		cr_assert_eq(p->has_end, i < 3, "partition %zu", i);
		if (i < 3)
			cr_assert_eq(p->end.w[2], 0);
	}
	rig_close(&r);

	/* without stop.at.end no end is noted */
	const char *kv3[] = {"gen.partitions", "2", "gen.records", "10", "gen.pool", "10", NULL};
	cr_assert_eq(rig_open(&r, kv3, "", err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert(!sp_engine_partition(r.e, 0)->has_end);
	rig_close(&r);
}

/* Drains the source with a large budget and checks every chunk: at most CHUNK_MAX
 * records, bytes = sum of key and value lengths, one timestamp, consecutive positions
 * from start[p], the promised pool record, the end marker only on the last chunk. */
static void drain_and_check(rig_t *r, const sp_gen_pool_t *pool, const uint64_t *start, const uint64_t *total,
                            size_t nparts)
{
	uint64_t next[64];
	cr_assert_leq(nparts, 64);
	memcpy(next, start, nparts * sizeof(*next));
	uint32_t pool_n = sp_gen_pool_count(pool);
	char err[256] = "";
	size_t expect_part = SIZE_MAX; /* round-robin: the partition after the last one served */
	for (int polls = 0;; polls++) {
		cr_assert_lt(polls, 100000, "the source never ends");
		int64_t lag = sp_source_gen.lag(&r->s);
		uint64_t left = 0;
		for (size_t p = 0; p < nparts; p++)
			left += total[p] - next[p];
		cr_assert_eq(lag, (int64_t)left);
		cr_assert_eq(sp_source_gen.ended(&r->s), left == 0);
		sp_chunk_t *out[16];
		int n = sp_source_gen.poll(&r->s, out, 16, UINT64_MAX / 2, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		if (left == 0) {
			cr_assert_eq(n, 0);
			break;
		}
		cr_assert_gt(n, 0, "records are left but poll gave nothing");
		for (int k = 0; k < n; k++) {
			sp_chunk_t *c = out[k];
			size_t p = (size_t)c->part->pub.partition;
			if (expect_part != SIZE_MAX) {
				/* the next partition with records left, after the last one served */
				size_t q = expect_part;
				while (next[q] == total[q])
					q = (q + 1) % nparts;
				cr_assert_eq(p, q, "round-robin: got partition %zu, want %zu", p, q);
			}
			expect_part = (p + 1) % nparts;
			cr_assert_gt(c->n, 0);
			cr_assert_leq(c->n, CHUNK_MAX);
			cr_assert_null(c->buf);
			uint64_t bytes = 0;
			for (uint32_t i = 0; i < c->n; i++) {
				const spate_record_t *rec = &c->recs[i];
				uint64_t pos = next[p] + i;
				cr_assert_eq(rec->position.w[2], pos);
				cr_assert_eq(rec->position.w[0] | rec->position.w[1], 0);
				cr_assert_eq(rec->timestamp_ms, c->recs[0].timestamp_ms);
				cr_assert_gt(rec->timestamp_ms, 0);
				cr_assert_eq(rec->partition, &c->part->pub);
				const sp_gen_rec_t *g =
				    sp_gen_pool_rec(pool, (uint32_t)((p * PART_STRIDE + pos) % pool_n));
				cr_assert(rec->key_len > 0 && rec->key_len == g->key_len &&
				              !memcmp(rec->key, g->key, g->key_len) &&
				              rec->value_len == g->value_len &&
				              !memcmp(rec->value, g->value, g->value_len),
				          "partition %zu position %llu: not the promised pool record", p,
				          (unsigned long long)pos);
				bytes += rec->key_len + rec->value_len;
			}
			cr_assert_eq(c->bytes, bytes);
			next[p] += c->n;
			cr_assert_eq(c->end_marker, next[p] == total[p]);
			sp_chunk_free(c);
		}
	}
	for (size_t p = 0; p < nparts; p++)
		cr_assert_eq(next[p], total[p]);
}

/* The pool gen.c builds for these settings, built again here. */
static sp_gen_pool_t *pool_of(const char *kind, uint32_t n, uint64_t keys, uint32_t vb, uint64_t seed)
{
	char err[256] = "";
	sp_gen_pool_t *p = NULL;
	cr_assert_eq(sp_gen_pool_new(kind, n, keys, vb, seed, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	return p;
}

Test(gen_source, poll_every_record_once_in_order)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "3",        "gen.records", "20003",    "gen.pool",
	                    "1000",           "gen.kind", "sensor",      "gen.keys", "50",
	                    "gen.seed",       "17",       NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t res[3];
	seek_all_fresh(&r, res);
	for (int i = 0; i < 3; i++)
		cr_assert(res[i].beginning, "earliest resolves to the beginning");
	sp_gen_pool_t *pool = pool_of("sensor", 1000, 50, 100, 17);
	const uint64_t start[] = {0, 0, 0}, total[] = {6668, 6668, 6667};
	drain_and_check(&r, pool, start, total, 3);
	sp_gen_pool_free(pool);
	rig_close(&r);
}

/* The budget bounds the bytes of a poll, but one chunk of one record always goes out. */
Test(gen_source, budget)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "2",     "gen.records",     "10000", "gen.pool", "500",
	                    "gen.kind",       "bytes", "gen.value.bytes", "100",   NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	seek_all_fresh(&r, NULL);
	sp_chunk_t *out[16];
	cr_assert_eq(sp_source_gen.poll(&r.s, out, 16, 0, err, sizeof(err)), 0);
	cr_assert_eq(sp_source_gen.poll(&r.s, out, 16, 1, err, sizeof(err)), 1);
	cr_assert_eq(out[0]->n, 1);
	sp_chunk_free(out[0]);
	/* about a dozen records' worth: the budget counts each record's bytes and what the
	 * engine keeps per record (SP_CHUNK_REC_COST), with room for a chunk's slack */
	const uint64_t budget = 4000, cap = SP_CHUNK_BUDGET(budget);
	int n = sp_source_gen.poll(&r.s, out, 16, budget, err, sizeof(err));
	cr_assert_geq(n, 1);
	uint64_t bytes = 0, recs = 0;
	for (int i = 0; i < n; i++) {
		bytes += out[i]->bytes;
		recs += out[i]->n;
		sp_chunk_free(out[i]);
	}
	cr_assert_leq(bytes + recs * SP_CHUNK_REC_COST, budget);
	cr_assert_geq(recs, cap / (106 + SP_CHUNK_REC_COST), "a budget of %llu holds %llu records of 103..106 bytes",
	              (unsigned long long)budget, (unsigned long long)(cap / (106 + SP_CHUNK_REC_COST)));
	cr_assert_eq(sp_source_gen.lag(&r.s), (int64_t)(10000 - 1 - recs));
	/* max bounds the chunks of one poll */
	cr_assert_eq(sp_source_gen.poll(&r.s, out, 1, UINT64_MAX, err, sizeof(err)), 1);
	cr_assert_eq(out[0]->n, CHUNK_MAX);
	sp_chunk_free(out[0]);
	rig_close(&r);
}

/* A chunk holds about 1 MiB at most: 1 MiB values go one per chunk. */
Test(gen_source, large_values_one_per_chunk)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "1",     "gen.records",     "5",       "gen.pool", "3",
	                    "gen.kind",       "bytes", "gen.value.bytes", "1048576", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	seek_all_fresh(&r, NULL);
	sp_chunk_t *out[16];
	int n = sp_source_gen.poll(&r.s, out, 16, UINT64_MAX, err, sizeof(err));
	cr_assert_eq(n, 5);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(out[i]->n, 1);
		cr_assert_eq(out[i]->recs[0].value_len, 1048576);
		cr_assert_eq(out[i]->recs[0].position.w[2], (uint64_t)i);
		sp_chunk_free(out[i]);
	}
	cr_assert(sp_source_gen.ended(&r.s));
	rig_close(&r);
}

Test(gen_source, seek_checkpoints)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "2", "gen.records", "100", "gen.pool", "64", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	sp_part_t *p0 = sp_engine_partition(r.e, 0), *p1 = sp_engine_partition(r.e, 1);
	sp_ckpt_t after9 = {.beginning = false, .after = sp_pos(9)}, begin = {.beginning = true};
	cr_assert_eq(sp_source_gen.seek(&r.s, p0, &after9, NULL, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_source_gen.seek(&r.s, p1, &begin, NULL, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_source_gen.lag(&r.s), 40 + 50);
	sp_gen_pool_t *pool = pool_of("fraud", 64, 10000, 100, 1);
	const uint64_t start[] = {10, 0}, total[] = {50, 50};
	drain_and_check(&r, pool, start, total, 2);
	sp_gen_pool_free(pool);

	/* the last record: nothing is left */
	sp_ckpt_t last = {.beginning = false, .after = sp_pos(49)};
	cr_assert_eq(sp_source_gen.seek(&r.s, p0, &last, NULL, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(sp_source_gen.seek(&r.s, p1, &last, NULL, err, sizeof(err)), SPATE_OK);
	cr_assert(sp_source_gen.ended(&r.s));
	cr_assert_eq(sp_source_gen.lag(&r.s), 0);

	/* past the end, or not a gen position: an error naming the partition and the range */
	sp_ckpt_t past = {.beginning = false, .after = sp_pos(50)};
	err[0] = 0;
	cr_assert_eq(sp_source_gen.seek(&r.s, p1, &past, NULL, err, sizeof(err)), SPATE_ERR_OUT_OF_RANGE);
	cr_assert(strstr(err, "gen/gen/1") && strstr(err, "0..49"), "%s", err);
	sp_ckpt_t wide = {.beginning = false, .after = {.w = {1, 0, 3}}};
	err[0] = 0;
	cr_assert_eq(sp_source_gen.seek(&r.s, p0, &wide, NULL, err, sizeof(err)), SPATE_ERR_OUT_OF_RANGE);
	cr_assert(strstr(err, "gen/gen/0"), "%s", err);
	rig_close(&r);
}

Test(gen_source, starting_positions)
{
	rig_t r;
	char err[256] = "";
	/* latest: at the end; the resolved checkpoint is the last record (beginning when empty) */
	const char *kv[] = {"gen.partitions",    "3",      "gen.records", "5", "gen.pool", "8",
	                    "starting.position", "latest", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t res[3];
	seek_all_fresh(&r, res);
	cr_assert(!res[0].beginning && res[0].after.w[2] == 1);
	cr_assert(!res[1].beginning && res[1].after.w[2] == 1);
	cr_assert(!res[2].beginning && res[2].after.w[2] == 0);
	cr_assert(sp_source_gen.ended(&r.s));
	cr_assert_eq(sp_source_gen.lag(&r.s), 0);
	sp_chunk_t *out[4];
	cr_assert_eq(sp_source_gen.poll(&r.s, out, 4, UINT64_MAX, err, sizeof(err)), 0);
	rig_close(&r);

	const char *kv2[] = {"gen.partitions",    "6",      "gen.records", "5", "gen.pool", "8",
	                     "starting.position", "latest", NULL};
	cr_assert_eq(rig_open(&r, kv2, "", err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t res6[6];
	seek_all_fresh(&r, res6);
	cr_assert(res6[5].beginning, "an empty partition resolves to the beginning");
	rig_close(&r);

	/* at-timestamp: gen records are stamped now, so every record is after any timestamp */
	const char *kv3[] = {"gen.partitions",
	                     "2",
	                     "gen.records",
	                     "7",
	                     "gen.pool",
	                     "8",
	                     "starting.position",
	                     "at-timestamp:1700000000000",
	                     NULL};
	cr_assert_eq(rig_open(&r, kv3, "", err, sizeof(err)), SPATE_OK, "%s", err);
	seek_all_fresh(&r, res);
	cr_assert(res[0].beginning && res[1].beginning);
	cr_assert_eq(sp_source_gen.lag(&r.s), 7);
	rig_close(&r);
}

Test(gen_source, endless)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.partitions", "2", "gen.records", "0", "gen.pool", "100", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t res[2];
	seek_all_fresh(&r, res);
	cr_assert_eq(sp_source_gen.lag(&r.s), -1);
	sp_chunk_t *out[16];
	uint64_t pos[2] = {0, 0};
	for (int round = 0; round < 3; round++) {
		int n = sp_source_gen.poll(&r.s, out, 16, UINT64_MAX, err, sizeof(err));
		cr_assert_eq(n, 16);
		for (int i = 0; i < n; i++) {
			int p = out[i]->part->pub.partition;
			cr_assert_eq(out[i]->n, CHUNK_MAX);
			cr_assert_eq(out[i]->recs[0].position.w[2], pos[p]);
			cr_assert(!out[i]->end_marker);
			pos[p] += out[i]->n;
			sp_chunk_free(out[i]);
		}
		cr_assert(!sp_source_gen.ended(&r.s));
	}
	cr_assert_eq(pos[0], pos[1]);
	rig_close(&r);
}

Test(gen_source, open_errors_name_the_key)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.records", "0", "stop.at.end", "true", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "stop.at.end") && strstr(err, "gen.records"), "%s", err);
	rig_close(&r);
	err[0] = 0;
	const char *kv2[] = {"gen.pool", "10", NULL};
	cr_assert_eq(rig_open(&r, kv2, "fraud", err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(!strncmp(err, "source: ", 8) && strstr(err, "gen.kind"), "%s", err);
	rig_close(&r);
}

/* gen.rate: the bucket never holds more than 100 ms of records, so a first poll at
 * 1000 records/s gives at most 100 of them, whatever the timing; next_ms says when
 * more come. */
Test(gen_source, rate_bounds_a_poll)
{
	rig_t r;
	char err[256] = "";
	const char *kv[] = {"gen.records", "100000", "gen.rate", "1000", "gen.pool", "100", NULL};
	cr_assert_eq(rig_open(&r, kv, "", err, sizeof(err)), SPATE_OK, "%s", err);
	seek_all_fresh(&r, NULL);
	sp_chunk_t *out[16];
	int n = sp_source_gen.poll(&r.s, out, 16, UINT64_MAX, err, sizeof(err));
	uint64_t recs = 0;
	for (int i = 0; i < n; i++) {
		recs += out[i]->n;
		sp_chunk_free(out[i]);
	}
	cr_assert_geq(recs, 1);
	cr_assert_leq(recs, 100);
	cr_assert_geq(sp_source_gen.next_ms(&r.s), 0);
	cr_assert_eq(sp_source_gen.lag(&r.s), (int64_t)(100000 - recs));
	rig_close(&r);

	/* without a rate, next_ms leaves the timing to the engine */
	const char *kv2[] = {"gen.records", "10", "gen.pool", "10", NULL};
	cr_assert_eq(rig_open(&r, kv2, "", err, sizeof(err)), SPATE_OK, "%s", err);
	seek_all_fresh(&r, NULL);
	cr_assert_eq(sp_source_gen.next_ms(&r.s), -1);
	rig_close(&r);
}

/* ---- whole runs through the public API ------------------------------------------------- */

#define MAXP 8

typedef struct run_state {
	const sp_gen_pool_t *pool;
	spate_engine_t *e;
	uint64_t first[MAXP]; /* first position expected per partition */
	int64_t last[MAXP];   /* last position seen (lane order makes this safe) */
	_Atomic uint64_t count[MAXP];
	_Atomic uint64_t handled;
	_Atomic int violations;
	char why[256];       /* the first violation */
	uint64_t stop_after; /* 0 = never call spate_engine_stop */
	_Atomic int stopped;
} run_state_t;

static void violation(run_state_t *s, const char *what, int p, uint64_t pos)
{
	if (atomic_fetch_add(&s->violations, 1) == 0)
		snprintf(s->why, sizeof(s->why), "partition %d position %llu: %s", p, (unsigned long long)pos,
		         what);
}

static int run_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	run_state_t *s = opaque;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *recs = spate_batch_records(b);
	uint32_t pool_n = sp_gen_pool_count(s->pool);
	for (size_t i = 0; i < n; i++) {
		const spate_record_t *r = recs[i];
		int p = r->partition->partition;
		uint64_t pos = r->position.w[2];
		if (p < 0 || p >= MAXP) {
			violation(s, "partition out of range", p, pos);
			continue;
		}
		int64_t want = s->last[p] < 0 ? (int64_t)s->first[p] : s->last[p] + 1;
		if ((int64_t)pos != want)
			violation(s, "not the next position", p, pos);
		s->last[p] = (int64_t)pos;
		const sp_gen_rec_t *g =
		    sp_gen_pool_rec(s->pool, (uint32_t)(((uint64_t)p * PART_STRIDE + pos) % pool_n));
		if (!r->key || r->key_len != g->key_len || memcmp(r->key, g->key, g->key_len) ||
		    r->value_len != g->value_len || memcmp(r->value, g->value, g->value_len))
			violation(s, "not the promised pool record", p, pos);
		if (strcmp(r->partition->source, "gen"))
			violation(s, "source is not gen", p, pos);
		atomic_fetch_add(&s->count[p], 1);
	}
	uint64_t h = atomic_fetch_add(&s->handled, n) + n;
	if (s->stop_after && h >= s->stop_after && !atomic_exchange(&s->stopped, 1))
		spate_engine_stop(s->e);
	return SPATE_HANDLER_OK;
}

static void state_init(run_state_t *s, const sp_gen_pool_t *pool)
{
	memset(s, 0, sizeof(*s));
	s->pool = pool;
	for (int p = 0; p < MAXP; p++)
		s->last[p] = -1;
}

static void note_engine(spate_engine_t *e, void *arg)
{
	run_state_t *s = arg;
	s->e = e; /* for run_handle's stop */
}

/* A run over gen with the run_state handler on s (or the conf's handler when s is NULL);
 * keep: the caller destroys the engine (r.e). */
static t_run_t run(run_state_t *s, const char *const *kv, bool keep)
{
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "check", .handle = run_handle, .opaque = s};
	return t_engine_run(&(t_engine_opts_t){
	    .conf = kv, .handler = s ? &h : NULL, .started = s ? note_engine : NULL, .arg = s, .keep = keep});
}

Test(gen_run, exact_counts_consecutive_positions)
{
	sp_gen_pool_t *pool = pool_of("sensor", 1000, 64, 100, 5);
	run_state_t s;
	state_init(&s, pool);
	const char *kv[] = {"source",         "gen", "gen.kind",    "sensor", "gen.records",     "10007",
	                    "gen.partitions", "3",   "gen.pool",    "1000",   "gen.keys",        "64",
	                    "gen.seed",       "5",   "stop.at.end", "true",   "max.concurrency", "2",
	                    "batch.size",     "100", NULL};
	t_run_t r = run(&s, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(atomic_load(&s.violations), 0, "%s", s.why);
	cr_assert_eq(atomic_load(&s.count[0]), 3336);
	cr_assert_eq(atomic_load(&s.count[1]), 3336);
	cr_assert_eq(atomic_load(&s.count[2]), 3335);
	cr_assert_eq(s.last[0], 3335);
	cr_assert_eq(s.last[2], 3334);
	cr_assert_eq(sum.records, 10007);
	cr_assert_eq(sum.failed, 0);
	sp_gen_pool_free(pool);
}

/* The checkpoint a store holds for one partition. */
static sp_ckpt_t stored(const char *store, const char *part)
{
	sp_store_t st;
	char err[256] = "";
	cr_assert_eq(sp_store_open_uri(store, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t ck;
	cr_assert_eq(st.ops->load(&st, part, &ck, err, sizeof(err)), SPATE_OK, "%s: %s", part, err);
	if (st.ops->close)
		st.ops->close(&st);
	return ck;
}

/* A run stopped partway checkpoints what it did; the next run resumes right after it:
 * together the two runs hand over every record once, at consecutive positions. */
Test(gen_run, resume_from_checkpoint)
{
	char dir[64], store[128];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "file:%s/ckpt", dir);
	sp_gen_pool_t *pool = pool_of("fraud", 2000, 1000, 100, 3);
	const char *kv[] = {"source",
	                    "gen",
	                    "gen.records",
	                    "200000",
	                    "gen.partitions",
	                    "2",
	                    "gen.pool",
	                    "2000",
	                    "gen.keys",
	                    "1000",
	                    "gen.seed",
	                    "3",
	                    "stop.at.end",
	                    "true",
	                    "store",
	                    store,
	                    "max.inflight.records",
	                    "3000",
	                    "max.concurrency",
	                    "2",
	                    NULL};
	run_state_t s1;
	state_init(&s1, pool);
	s1.stop_after = 5000;
	t_run_t r = run(&s1, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s1.violations), 0, "%s", s1.why);
	uint64_t done1 = atomic_load(&s1.handled);
	cr_assert_geq(done1, 5000);
	cr_assert_lt(done1, 200000, "the stop came after the whole stream: nothing left to resume");

	/* the store holds exactly what the first run handled */
	run_state_t s2;
	state_init(&s2, pool);
	for (int p = 0; p < 2; p++) {
		char name[32];
		snprintf(name, sizeof(name), "gen/gen/%d", p);
		sp_ckpt_t ck = stored(store, name);
		if (s1.last[p] < 0) {
			cr_assert(ck.beginning, "%s", name);
		} else {
			cr_assert(!ck.beginning, "%s", name);
			cr_assert_eq(ck.after.w[2], (uint64_t)s1.last[p], "%s", name);
		}
		s2.first[p] = (uint64_t)(s1.last[p] + 1);
	}

	r = run(&s2, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s2.violations), 0, "%s", s2.why);
	for (int p = 0; p < 2; p++) {
		cr_assert_eq(atomic_load(&s1.count[p]) + atomic_load(&s2.count[p]), 100000, "partition %d",
		             p);
		cr_assert_eq(s2.last[p], 99999);
	}
	cr_assert_eq(done1 + atomic_load(&s2.handled), 200000);
	sp_gen_pool_free(pool);
	t_rmrf(dir);
}

/* A checkpoint past the partition's end (gen.records shrank) is an error naming the
 * partition, never a silent jump. */
Test(gen_run, checkpoint_past_end_is_an_error)
{
	char dir[64], store[128];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "file:%s/ckpt", dir);
	sp_gen_pool_t *pool = pool_of("fraud", 100, 10000, 100, 1);
	run_state_t s;
	state_init(&s, pool);
	const char *kv[] = {"gen.records", "400",  "gen.partitions", "2",   "gen.pool", "100",
	                    "stop.at.end", "true", "store",          store, NULL};
	t_run_t r = run(&s, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s.handled), 400);
	cr_assert_eq(stored(store, "gen/gen/1").after.w[2], 199);

	const char *kv2[] = {"gen.records", "100",  "gen.partitions", "2",   "gen.pool", "100",
	                     "stop.at.end", "true", "store",          store, NULL};
	state_init(&s, pool);
	r = run(&s, kv2, false);
	cr_assert(!r.started, "the start succeeded");
	cr_assert_eq(r.rc, SPATE_ERR_OUT_OF_RANGE, "%d: %s", r.rc, r.err);
	cr_assert(strstr(r.err, "gen/gen/0") && strstr(r.err, "199"), "%s", r.err);
	cr_assert_eq(atomic_load(&s.handled), 0);
	sp_gen_pool_free(pool);
	t_rmrf(dir);
}

/* starting.position=latest with stop.at.end: nothing to read, the run ends at once. */
Test(gen_run, latest_reads_nothing)
{
	sp_gen_pool_t *pool = pool_of("fraud", 100, 10000, 100, 1);
	run_state_t s;
	state_init(&s, pool);
	const char *kv[] = {"gen.records",       "1000",   "gen.pool", "100", "stop.at.end", "true",
	                    "starting.position", "latest", NULL};
	t_run_t r = run(&s, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, 0);
	cr_assert_eq(atomic_load(&s.handled), 0);
	sp_gen_pool_free(pool);
}

/* gen.rate still delivers every record (the time it takes is not asserted). */
Test(gen_run, rate_limited_run_is_complete)
{
	sp_gen_pool_t *pool = pool_of("bytes", 50, 10, 16, 1);
	run_state_t s;
	state_init(&s, pool);
	const char *kv[] = {"gen.kind",    "bytes", "gen.value.bytes", "16",   "gen.keys", "10",
	                    "gen.records", "1500",  "gen.partitions",  "3",    "gen.pool", "50",
	                    "gen.rate",    "20000", "stop.at.end",     "true", NULL};
	t_run_t r = run(&s, kv, false);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s.violations), 0, "%s", s.why);
	for (int p = 0; p < 3; p++)
		cr_assert_eq(atomic_load(&s.count[p]), 500);
	sp_gen_pool_free(pool);
}

/* handler=fraud over gen.kind=fraud: each partition walks a stretch of the pool without
 * wrapping, so every rule is hit in exactly one record per SP_GEN_FRAUD_PERIOD. */
Test(gen_run, fraud_handler_counts_planted_flags)
{
	const char *kv[] = {"gen.kind", "fraud", "gen.records", "20000", "gen.partitions",  "4",
	                    "handler",  "fraud", "stop.at.end", "true",  "max.concurrency", "3",
	                    NULL};
	t_run_t r = run(NULL, kv, true);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	cr_assert_not_null(fp);
	spate_engine_report(r.e, fp);
	fclose(fp);
	spate_engine_destroy(r.e);
	const char *want = "fraud.records 20000\nfraud.flagged 800\nfraud.amount 200\nfraud.merchant 200\n"
	                   "fraud.card_prefix 200\nfraud.currency 200\nfraud.malformed 0\n";
	cr_assert_str_eq(text, want);
	free(text);
}

/* Guarantee 6 for gen: the resolved start of every partition is in the store before the
 * first record reaches a handler (periodic and count checkpoints out of reach, so only
 * the save at start can have written it). */
Test(gen_run, the_resolved_start_is_saved_before_the_first_record)
{
	char dir[64], path[128], store[160];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/ckpt", dir);
	snprintf(store, sizeof(store), "file:%s", path);
	t_first_snap_t f = {.path = path};
	const char *kv[] = {"source",
	                    "gen",
	                    "gen.records",
	                    "1000",
	                    "gen.partitions",
	                    "2",
	                    "stop.at.end",
	                    "true",
	                    "store",
	                    store,
	                    "checkpoint.interval.ms",
	                    "3600000",
	                    "checkpoint.records",
	                    "1000000000",
	                    NULL};
	spate_handler_t h = t_first_snap_handler(&f);
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = kv, .handler = &h});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(r.sum.records, 1000);
	cr_assert_not_null(f.snap, "no store file at the first handler call");
	cr_assert(strstr(f.snap, "\ngen/gen/0\tbeginning\n") && strstr(f.snap, "\ngen/gen/1\tbeginning\n"),
	          "the starts are not in the store at the first handler call:\n%s", f.snap);
	free(f.snap);
	t_rmrf(dir);
}
