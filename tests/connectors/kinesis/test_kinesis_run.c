/* test_kinesis_run.c - source=kinesis pipelines against kinesalite:
 *  - a 4-shard stream, 20,000 records put through spate's own sink: every record read
 *    once, in per-key order, headers unwrapped, and each shard's checkpoint is its last
 *    sequence number (as a plain GetRecords loop finds it);
 *  - a restart after half: the rest is read, nothing at or before the checkpoints again;
 *  - KPL aggregates (built here, with a real MD5) are de-aggregated, a corrupted MD5 gives
 *    one plain record;
 *  - dlq=kinesis:STREAM: a failed record reaches the DLQ stream with its key, value and
 *    the spate.* headers, read back through the source;
 *  - starting.position=latest: each shard's start is checkpointed at once (the start's
 *    time, "0.T"), before any record; records put before the start are not read, every
 *    one put after is, and a restart reads none again.
 * Part of the kinesis test executable (with test_kinesis_reshard.c and
 * test_kinesis_errors.c). */
#include "tests/connectors/kinesis/kintest.h"
#include "tests/connectors/kinesis/kpltest.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	RUN_KEYS = 200,
	RUN_PER_KEY = 100, /* 20,000 records */
	HALF_KEYS = 50,
	HALF_PER_KEY = 80, /* 4,000 records */
	LATE_KEYS = 20,
	LATE_OLD = 10, /* per key, put before the start */
	LATE_NEW = 10, /* per key, put after it */
	LATE_WAIT_MS = 120000,
};

TestSuite(kinesis, .fini = t_kinesalite_fini);

Test(kinesis, four_shards_20000_records_in_order_with_checkpoints, .timeout = 240)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "orders", 4);
	kt_put(k, "orders", RUN_KEYS, 0, RUN_PER_KEY);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	kt_seen_t s;
	kt_seen_init(&s, RUN_KEYS, RUN_PER_KEY);
	const char *kv[] = {"stop.at.end", "true", NULL};
	kt_conf_t cf;
	kt_conf_init(&cf, k, "orders", dir);
	kt_run(&cf, kv, &s, NULL, NULL);
	kt_assert_exactly_once(&s);
	cr_assert_eq(s.nparts, 4, "records came from %d shards", s.nparts);
	t_shard_t sh[8];
	int n = t_kin_shards(k, "orders", sh, 8);
	cr_assert_eq(n, 4);
	long sum = 0;
	for (int i = 0; i < n; i++) {
		char last[200], name[200], ck[SPATE_POSITION_MAX], want[220];
		long cnt = t_kin_read_shard(k, "orders", sh[i].id, last, sizeof(last));
		sum += cnt;
		snprintf(name, sizeof(name), "kinesis/orders/%.63s", sh[i].id);
		kt_ckpt(dir, name, ck, sizeof(ck));
		snprintf(want, sizeof(want), "%s.0", last);
		cr_assert(cnt > 0, "shard %s holds no records", sh[i].id);
		cr_assert_str_eq(ck, want, "%s: checkpoint %s, its last sequence number is %s", name, ck,
		                 last);
		cr_assert_eq(kt_part(&s, name)->n, cnt, "%s: %ld handled, the shard holds %ld", name,
		             kt_part(&s, name)->n, cnt);
	}
	cr_assert_eq(sum, (long)RUN_KEYS * RUN_PER_KEY);
	kt_seen_free(&s);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}

Test(kinesis, restart_after_half_reads_the_rest_only, .timeout = 240)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "half", 4);
	kt_put(k, "half", HALF_KEYS, 0, HALF_PER_KEY);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	const long total = (long)HALF_KEYS * HALF_PER_KEY;
	/* run 1: stopped (gracefully: a final checkpoint) after half */
	kt_seen_t a;
	kt_seen_init(&a, HALF_KEYS, HALF_PER_KEY);
	a.stop_after = total / 2;
	a.delay_ms = 5; /* 80 batches of 50 on 2 workers: the stop lands mid-stream */
	const char *kv1[] = {"batch.size", "50", "max.concurrency", "2", NULL};
	kt_conf_t cf;
	kt_conf_init(&cf, k, "half", dir);
	kt_run(&cf, kv1, &a, NULL, NULL);
	cr_assert_geq(a.total, total / 2);
	cr_assert_lt(a.total, total, "run 1 read everything (%ld): no restart to test", a.total);
	cr_assert_eq(a.dups, 0);
	/* the checkpoints run 1 left */
	t_shard_t sh[8];
	int n = t_kin_shards(k, "half", sh, 8);
	kt_seen_t b;
	kt_seen_init(&b, HALF_KEYS, HALF_PER_KEY);
	spate_position_t mins[8];
	char names[8][128];
	int ncheck = 0;
	for (int i = 0; i < n; i++) {
		char ck[SPATE_POSITION_MAX];
		snprintf(names[ncheck], sizeof(names[ncheck]), "kinesis/half/%.63s", sh[i].id);
		kt_ckpt(dir, names[ncheck], ck, sizeof(ck));
		cr_assert(ck[0], "%s has no checkpoint after run 1", names[ncheck]);
		if (!strcmp(ck, "beginning"))
			continue;
		cr_assert_eq(sp_position_parse(ck, &mins[ncheck]), 0, "%s", ck);
		ncheck++;
	}
	cr_assert_gt(ncheck, 0, "no shard moved past its beginning in run 1");
	b.min_pos = mins;
	b.min_names = names;
	b.nmin = ncheck;
	const char *kv2[] = {"stop.at.end", "true", NULL};
	kt_run(&cf, kv2, &b, NULL, NULL);
	cr_assert_eq(b.before_ckpt, 0, "%ld records at or before a checkpoint were read again",
	             b.before_ckpt);
	cr_assert_eq(b.dups, 0);
	cr_assert_eq(b.disorder, 0);
	/* together every record at least once; what both runs handled is only what run 1
	 * handled past its last checkpoint (its in-flight tail) */
	long both = 0, none = 0;
	for (size_t i = 0; i < (size_t)total; i++) {
		both += a.count[i] && b.count[i];
		none += !a.count[i] && !b.count[i];
	}
	cr_assert_eq(none, 0, "%ld records were never handled", none);
	cr_assert_eq(a.total + b.total - both, total);
	kt_seen_free(&a);
	kt_seen_free(&b);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}

/* A handler that keeps every record's key, value and position (KPL and DLQ tests). */
typedef struct keep {
	pthread_mutex_t mu;
	int n;
	char key[64][64], val[64][256];
	size_t vlen[64];
	spate_position_t pos[64];
	char hdrs[64][1024];
} keep_t;

static int keep_handle(void *opaque, void *w, spate_batch_t *b)
{
	keep_t *k = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	pthread_mutex_lock(&k->mu);
	for (size_t i = 0; i < spate_batch_count(b) && k->n < 64; i++) {
		int j = k->n++;
		snprintf(k->key[j], sizeof(k->key[j]), "%.*s", (int)r[i]->key_len, (const char *)r[i]->key);
		k->vlen[j] = r[i]->value_len < sizeof(k->val[j]) ? r[i]->value_len : sizeof(k->val[j]);
		memcpy(k->val[j], r[i]->value, k->vlen[j]);
		k->pos[j] = r[i]->position;
		size_t o = 0;
		for (size_t h = 0; h < r[i]->header_cnt && o < sizeof(k->hdrs[j]) - 1; h++)
			o += (size_t)snprintf(k->hdrs[j] + o, sizeof(k->hdrs[j]) - o, "%.*s=%.*s;",
			                      (int)r[i]->headers[h].key_len, r[i]->headers[h].key,
			                      (int)r[i]->headers[h].value_len,
			                      (const char *)r[i]->headers[h].value);
	}
	pthread_mutex_unlock(&k->mu);
	return SPATE_HANDLER_OK;
}

/* Run source=kinesis on stream to its end (stop.at.end) with the keep handler. */
static void keep_run(t_kin_t *kin, const char *stream, const char *dir, keep_t *k)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->mu, NULL);
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "keep", .handle = keep_handle, .opaque = k};
	kt_conf_t cf;
	kt_conf_init(&cf, kin, stream, dir);
	const char *kv[] = {"stop.at.end", "true", NULL};
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = cf.kv, .conf_more = kv, .handler = &h});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
}

static int find_val(keep_t *k, const char *v)
{
	for (int i = 0; i < k->n; i++)
		if (k->vlen[i] == strlen(v) && !memcmp(k->val[i], v, k->vlen[i]))
			return i;
	return -1;
}

Test(kinesis, kpl_aggregates_are_deaggregated_and_a_bad_md5_is_one_record, .timeout = 120)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "kpl", 1);
	const char *keys[] = {"user-a", "user-b", "user-c"};
	size_t idx[] = {0, 1, 2, 1};
	const char *datas[] = {"first", "second", "third", "fourth"};
	uint8_t agg[1024];
	size_t n = t_kpl_build(keys, 3, idx, datas, 4, agg, sizeof(agg));
	char *seq = t_kin_put(k, "kpl", "outer", agg, n);
	uint8_t bad[1024];
	memcpy(bad, agg, n);
	bad[n - 3] ^= 0x40; /* the MD5 no longer matches */
	char *seq_bad = t_kin_put(k, "kpl", "outer2", bad, n);
	char *seq_plain = t_kin_put(k, "kpl", "plain", "just data", 9);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	keep_t got;
	keep_run(k, "kpl", dir, &got);
	cr_assert_eq(got.n, 6, "%d records: 4 sub-records, 1 bad aggregate, 1 plain", got.n);
	char s1[SPATE_POSITION_MAX];
	for (int i = 0; i < 4; i++) {
		int j = find_val(&got, datas[i]);
		cr_assert_geq(j, 0, "sub-record \"%s\" not delivered", datas[i]);
		cr_assert_str_eq(got.key[j], keys[idx[i]], "sub-record %d has its own partition key", i);
		sp_position_seq_fmt(&got.pos[j], s1, sizeof(s1));
		cr_assert_str_eq(s1, seq);
		cr_assert_eq(got.pos[j].w[2], (uint64_t)i + 1, "sub-record %d has sub-sequence number %d", i,
		             i + 1);
	}
	int jb = -1;
	for (int i = 0; i < got.n; i++)
		if (got.vlen[i] == n && !memcmp(got.val[i], bad, n))
			jb = i;
	cr_assert_geq(jb, 0, "the aggregate with a bad MD5 is not one plain record with its bytes");
	cr_assert_str_eq(got.key[jb], "outer2");
	sp_position_seq_fmt(&got.pos[jb], s1, sizeof(s1));
	cr_assert_str_eq(s1, seq_bad);
	cr_assert_eq(got.pos[jb].w[2], 0);
	int jp = find_val(&got, "just data");
	cr_assert_geq(jp, 0);
	sp_position_seq_fmt(&got.pos[jp], s1, sizeof(s1));
	cr_assert_str_eq(s1, seq_plain);
	/* the checkpoint is the last record; a restart reads nothing again */
	char ck[SPATE_POSITION_MAX], want[240];
	kt_ckpt(dir, "kinesis/kpl/shardId-000000000000", ck, sizeof(ck));
	snprintf(want, sizeof(want), "%s.0", seq_plain);
	cr_assert_str_eq(ck, want);
	keep_t again;
	keep_run(k, "kpl", dir, &again);
	cr_assert_eq(again.n, 0, "%d records read again after the checkpoint", again.n);
	free(seq);
	free(seq_bad);
	free(seq_plain);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}

/* A checkpoint inside an aggregate (its second sub-record): a restart reads the rest of
 * that aggregate (AT_SEQUENCE_NUMBER, dropping what is at or before the checkpoint). */
Test(kinesis, restart_inside_an_aggregate, .timeout = 120)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "kpl2", 1);
	const char *keys[] = {"a"};
	size_t idx[] = {0, 0, 0};
	const char *datas[] = {"s1", "s2", "s3"};
	uint8_t agg[512];
	size_t n = t_kpl_build(keys, 1, idx, datas, 3, agg, sizeof(agg));
	char *seq = t_kin_put(k, "kpl2", "o", agg, n);
	char dir[256], path[400], ckline[600];
	t_mkdtemp(dir, sizeof(dir));
	/* a store whose checkpoint is sub-record 2 of the aggregate, written by the store */
	char uri[300], err[512];
	snprintf(uri, sizeof(uri), "file:%s/ck", dir);
	sp_store_t st;
	cr_assert_eq(sp_store_open_uri(uri, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_store_entry_t ent = {.name = "kinesis/kpl2/shardId-000000000000", .ckpt = {.beginning = false}};
	cr_assert_eq(sp_position_wide(seq, strlen(seq), 2, &ent.ckpt.after), 0);
	cr_assert_eq(st.ops->save(&st, &ent, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	st.ops->close(&st);
	(void)path;
	(void)ckline;
	keep_t got;
	keep_run(k, "kpl2", dir, &got);
	cr_assert_eq(got.n, 1, "%d records after a checkpoint at sub-record 2 of 3", got.n);
	cr_assert_eq(find_val(&got, "s3"), 0);
	free(seq);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}

Test(kinesis, dlq_stream_gets_the_failed_record_with_its_headers, .timeout = 120)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "in", 2);
	t_kin_create(k, "dead", 1);
	free(t_kin_put(k, "in", "k1", "good one", 8));
	free(t_kin_put(k, "in", "k2", "bad one", 7));
	free(t_kin_put(k, "in", "k3", "good two", 8));
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	kt_conf_t cf;
	kt_conf_init(&cf, k, "in", dir);
	const char *kv[] = {"handler",     "fail-if:bad", "max.retry.attempts",
	                    "0",           "dlq",         "kinesis:dead",
	                    "stop.at.end", "true",        NULL};
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = cf.kv, .conf_more = kv});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(r.sum.records, 3);
	cr_assert_eq(r.sum.dlq, 1);
	/* read the DLQ stream back through the source: the envelope is unwrapped */
	char dir2[256];
	t_mkdtemp(dir2, sizeof(dir2));
	keep_t got;
	keep_run(k, "dead", dir2, &got);
	cr_assert_eq(got.n, 1);
	cr_assert_str_eq(got.key[0], "k2", "the DLQ record keeps the original key");
	cr_assert_eq(got.vlen[0], 7);
	cr_assert_eq(memcmp(got.val[0], "bad one", 7), 0);
	cr_assert(strstr(got.hdrs[0], "spate.condition=RetryAttemptsExhausted;"), "headers: %s", got.hdrs[0]);
	cr_assert(strstr(got.hdrs[0], "spate.partition=kinesis/in/shardId-"), "headers: %s", got.hdrs[0]);
	cr_assert(strstr(got.hdrs[0], "spate.id=kinesis/in/shardId-"), "headers: %s", got.hdrs[0]);
	t_kinesalite_stop(k);
	t_rmrf(dir);
	t_rmrf(dir2);
}

typedef struct late_ctx {
	t_kin_t *k;
	kt_seen_t *s;
	const char *dir;
} late_ctx_t;

/* On the during thread: wait for both shards' start checkpoints ("0.T": no record was
 * DONE yet, none is in the stream after T), then put the new records and wait for them. */
static void late_during(t_during_t *d)
{
	late_ctx_t *x = d->arg;
	int64_t deadline = t_now_ms() + LATE_WAIT_MS;
	for (int i = 0; i < 2; i++) {
		char name[64], ck[SPATE_POSITION_MAX];
		snprintf(name, sizeof(name), "kinesis/late/shardId-00000000000%d", i);
		for (kt_ckpt(x->dir, name, ck, sizeof(ck)); !ck[0]; kt_ckpt(x->dir, name, ck, sizeof(ck))) {
			t_require(t_now_ms() < deadline, "%s: no checkpoint after the start", name);
			t_sleep_ms(20);
		}
		t_require(!strncmp(ck, "0.", 2), "%s: checkpoint %s before any new record, not 0.T", name,
		          ck);
		t_expect(x->s->total == 0, "%ld records handled before any was put after the start",
		         x->s->total);
	}
	kt_put(x->k, "late", LATE_KEYS, LATE_OLD, LATE_NEW);
	kt_wait_total(x->s, LATE_KEYS * LATE_NEW, LATE_WAIT_MS);
	t_sleep_ms(300); /* a record read twice or an old one would arrive meanwhile */
	spate_engine_stop(d->e);
}

Test(kinesis, latest_is_checkpointed_at_once_and_reads_only_what_follows, .timeout = 240)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "late", 2);
	kt_put(k, "late", LATE_KEYS, 0, LATE_OLD);
	t_sleep_ms(20); /* the start's time is after every old record's arrival */
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	kt_seen_t s;
	kt_seen_init(&s, LATE_KEYS, LATE_OLD + LATE_NEW);
	kt_conf_t cf;
	kt_conf_init(&cf, k, "late", dir);
	const char *kv[] = {"starting.position", "latest", NULL};
	late_ctx_t x = {k, &s, dir};
	/* kinesalite leaves a GetShardIterator AT_TIMESTAMP unanswered while no record is at
	 * or after the time: the request times out (30 s) and is asked again, then finds the
	 * new records */
	kt_run(&cf, kv, &s, late_during, &x);
	for (int key = 0; key < LATE_KEYS; key++)
		for (int q = 0; q < LATE_OLD + LATE_NEW; q++) {
			int c = s.count[key * (LATE_OLD + LATE_NEW) + q];
			if (q < LATE_OLD)
				cr_assert_eq(c, 0, "k%03d:%d was put before the start and read", key, q);
			else
				cr_assert_eq(c, 1, "k%03d:%d was put after the start and read %d times", key,
				             q, c);
		}
	cr_assert_eq(s.disorder, 0);
	cr_assert_eq(s.foreign + s.bad_header, 0);
	/* a restart (stop.at.end) after the checkpoints reads nothing again */
	kt_seen_t again;
	kt_seen_init(&again, LATE_KEYS, LATE_OLD + LATE_NEW);
	const char *kv2[] = {"starting.position", "latest", "stop.at.end", "true", NULL};
	kt_run(&cf, kv2, &again, NULL, NULL);
	cr_assert_eq(again.total, 0, "%ld records read again after a restart", again.total);
	kt_seen_free(&s);
	kt_seen_free(&again);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}
