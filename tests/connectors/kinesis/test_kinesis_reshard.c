/* test_kinesis_reshard.c - source=kinesis while the stream changes under it, against
 * kinesalite (which sends no ChildShards: children are found by ListShards):
 *  - one shard split and two others merged mid-run: every record read exactly once, the
 *    records of a key in order across parent and child, no child read before its parents
 *    ended (its first handler call starts after the parents' last one returned), and each
 *    parent's checkpoint is SHARD_END;
 *  - ExpiredIterator: with the handler held, the source pauses its shards; kinesalite's
 *    clock then moves 400 s ahead (past an iterator's 5 minutes) and every held iterator
 *    is expired; the run resumes without duplicates or gaps, re-acquiring after the last
 *    record fetched.
 * Part of the kinesis test executable. */
#include "tests/connectors/kinesis/kintest.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	RS_KEYS = 40,
	RS_PER_KEY = 100, /* 4,000 records, half before the resharding, half after */
	EX_KEYS = 20,
	EX_PER_KEY = 100,
	WAIT_MS = 120000, /* generous bounds: kinesalite on a busy machine, ASan */
};

typedef struct rs_ctx {
	t_kin_t *k;
	kt_seen_t *s;
} rs_ctx_t;

/* On the during thread: once an eighth is read, split shard 0 and merge shards 2 and 3,
 * put the second half (into the children), wait for every record, stop. */
static void reshard_during(t_during_t *d)
{
	rs_ctx_t *x = d->arg;
	t_kin_t *k = x->k;
	kt_wait_total(x->s, RS_KEYS * RS_PER_KEY / 8, WAIT_MS); /* mid-run */
	t_shard_t sh[16];
	int n = t_kin_shards(k, "rs", sh, 16);
	t_require(n == 4, "%d shards", n);
	char mid[48];
	kt_mid_hash(&sh[0], mid, sizeof(mid));
	free(t_kin_ok(k, "SplitShard",
	              "{\"StreamName\":\"rs\",\"ShardToSplit\":\"%s\",\"NewStartingHashKey\":\"%s\"}",
	              sh[0].id, mid));
	t_kin_wait_active(k, "rs");
	free(t_kin_ok(k, "MergeShards",
	              "{\"StreamName\":\"rs\",\"ShardToMerge\":\"%s\",\"AdjacentShardToMerge\":\"%s\"}",
	              sh[2].id, sh[3].id));
	t_kin_wait_active(k, "rs");
	kt_put(k, "rs", RS_KEYS, RS_PER_KEY / 2, RS_PER_KEY / 2); /* into the children */
	kt_wait_total(x->s, RS_KEYS * RS_PER_KEY, WAIT_MS);
	spate_engine_stop(d->e);
}

Test(kinesis, split_and_merge_mid_run, .timeout = 300)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "rs", 4);
	kt_put(k, "rs", RS_KEYS, 0, RS_PER_KEY / 2);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	kt_seen_t s;
	kt_seen_init(&s, RS_KEYS, RS_PER_KEY);
	kt_conf_t cf;
	kt_conf_init(&cf, k, "rs", dir);
	rs_ctx_t x = {k, &s};
	kt_run(&cf, NULL, &s, reshard_during, &x);
	kt_assert_exactly_once(&s);
	t_shard_t sh[16];
	int n = t_kin_shards(k, "rs", sh, 16);
	cr_assert_eq(n, 7, "4 shards, 2 children of the split, 1 of the merge: %d", n);
	int children = 0;
	for (int i = 0; i < n; i++) {
		if (!sh[i].parent[0])
			continue;
		children++;
		char cname[160];
		snprintf(cname, sizeof(cname), "kinesis/rs/%.63s", sh[i].id);
		kt_part_t *c = kt_part(&s, cname);
		cr_assert_gt(c->n, 0, "child %s got none of the records put after the resharding", cname);
		const char *pars[2] = {sh[i].parent, sh[i].adj};
		for (int j = 0; j < 2; j++) {
			if (!pars[j][0])
				continue;
			char pname[160], ck[SPATE_POSITION_MAX];
			snprintf(pname, sizeof(pname), "kinesis/rs/%.63s", pars[j]);
			kt_part_t *p = kt_part(&s, pname);
			cr_assert_gt(p->n, 0, "parent %s was not read", pname);
			cr_assert_gt(
			    c->first_in, p->last_out,
			    "child %s was handed a record (tick %ld) before its parent %s ended (tick %ld)",
			    cname, c->first_in, pname, p->last_out);
			kt_ckpt(dir, pname, ck, sizeof(ck));
			cr_assert_str_eq(ck, "SHARD_END", "parent %s: checkpoint %s", pname, ck);
		}
	}
	cr_assert_eq(children, 3);
	kt_seen_free(&s);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}

/* On the during thread: once the handler waits (the shards fill their share and pause),
 * move kinesalite's clock past an iterator's life, let the handler go, wait for every
 * record, stop. */
static void expire_during(t_during_t *d)
{
	rs_ctx_t *x = d->arg;
	int64_t deadline = t_now_ms() + WAIT_MS;
	while (!atomic_load(&x->s->blocked) && t_now_ms() < deadline)
		t_sleep_ms(10);
	t_sleep_ms(500);          /* let the source reach the bound; nothing asserts on this */
	t_kin_skew(x->k, 400000); /* every iterator made so far is now older than 5 minutes */
	atomic_store(&x->s->block, 0);
	kt_wait_total(x->s, EX_KEYS * EX_PER_KEY, WAIT_MS);
	spate_engine_stop(d->e);
}

Test(kinesis, expired_iterator_resumes_without_duplicates_or_gaps, .timeout = 300)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "ex", 2);
	kt_put(k, "ex", EX_KEYS, 0, EX_PER_KEY);
	char dir[256], logf[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(logf, sizeof(logf), "%s/log", dir);
	kt_seen_t s;
	kt_seen_init(&s, EX_KEYS, EX_PER_KEY);
	atomic_store(&s.block, 1); /* the first batch waits: the shards fill their share and pause */
	/* the engine's log (stderr) goes to a file for the duration */
	fflush(stderr);
	int saved = dup(2), fd = open(logf, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	cr_assert(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	close(fd);
	const char *kv[] = {"max.inflight.records", "400", "batch.size", "20", NULL};
	kt_conf_t cf;
	kt_conf_init(&cf, k, "ex", dir);
	rs_ctx_t x = {k, &s};
	kt_run(&cf, kv, &s, expire_during, &x);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	kt_assert_exactly_once(&s);
	char *log = t_read_file(logf, NULL);
	cr_assert(log);
	cr_assert(strstr(log, "the iterator expired; asking for a new one after sequence number"),
	          "no shard met an expired iterator: the test tested nothing; log:\n%s", log);
	free(log);
	kt_seen_free(&s);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}
