/* test_kinesis_leases.c - several spate processes share one Kinesis stream (kinesalite)
 * through a store with leases (redis-server; both started here):
 *  - two `spate run` processes on a 4-shard stream: the shards split 2/2; one is
 *    SIGKILLed and the other takes all 4 over and finishes (stop.at.end); every record
 *    is in some journal, the final checkpoints are the shards' last records, and the
 *    audit trail (debug log) shows no checkpoint written by a process for a shard after
 *    another process acquired it with a higher counter. Written once per store
 *    (two_processes(store)): a store is its URI and the keys spate needs for it, so a
 *    DynamoDB variant is one more Test calling it.
 *  - two engines (two lease owners, in this process so that one handler sees both and
 *    judges per-key order across them) while a shard is split: a child's first record is
 *    handled only once the store shows its parent at SHARD_END, after the parent's last
 *    record, and the acquire recorded the child's parent in the store.
 * The store is read through its own plugin (lease_list), whatever it is. Timing is never
 * asserted: waits are generous bounds; how many lease timeouts each step took is printed. */
#include "engine/spi/sp_registry.h"
#include "tests/common/kinesalite.h"
#include "tests/common/redis.h"
#ifdef SPATE_HAVE_DYNAMODB
#include "tests/common/dynalite.h"
#endif
#include "tests/common/util.h"
#include "tests/connectors/kinesis/kintest.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	NSHARD = 4,
	KEYS = 40,
	PER_KEY = 200,    /* 8,000 records: 2,000 a shard, at 10 a batch and 50 ms a batch */
	WAIT_MS = 120000, /* generous bounds: kinesalite and the CLI on a busy machine */
};
#define LEASE_MS   1500
#define LEASE_MS_S "1500"
#define PIPELINE   "p"

/* A checkpoint store under test: its URI and the keys spate needs for it (key, value
 * pairs, NULL-terminated: e.g. dynamodb.endpoint). */
typedef struct lt_store {
	char uri[256];
	const char *kv[8];
} lt_store_t;

static t_redis_t srv;
static bool srv_up;
static char dir[256];

static void teardown(void)
{
	if (srv_up)
		t_redis_stop(&srv);
	srv_up = false;
#ifdef SPATE_HAVE_DYNAMODB
	t_dynalite_fini();
#endif
	t_kinesalite_fini();
	if (dir[0])
		t_rmrf(dir);
	dir[0] = 0;
}

TestSuite(kinesis_leases, .fini = teardown, .timeout = 900);

static void redis_store(lt_store_t *st)
{
	t_redis_start(&srv);
	srv_up = true;
	memset(st, 0, sizeof(*st));
	snprintf(st->uri, sizeof(st->uri), "%s", srv.uri);
}

#ifdef SPATE_HAVE_DYNAMODB
/* store=dynamodb:kinesis-leases against dynalite (its endpoint also in AWS_ENDPOINT_URL_DYNAMODB,
 * which t_dynalite_start sets and the spawned processes inherit) */
static void dynamodb_store(lt_store_t *st)
{
	t_dyn_t *d = t_dynalite_start();
	t_dyn_create_table(d, "kinesis-leases");
	static char ep[256];
	snprintf(ep, sizeof(ep), "%s", t_dyn_endpoint(d));
	memset(st, 0, sizeof(*st));
	snprintf(st->uri, sizeof(st->uri), "dynamodb:kinesis-leases");
	st->kv[0] = "dynamodb.endpoint";
	st->kv[1] = ep;
	st->kv[2] = "dynamodb.region";
	st->kv[3] = "us-east-1";
}
#endif

/* ---- the store, through its plugin ---------------------------------------------------- */

typedef struct lt_view {
	int n;
	char name[32][128];
	sp_lease_t l[32];
} lt_view_t;

static void on_lease(void *arg, const sp_lease_t *l)
{
	lt_view_t *v = arg;
	if (v->n == 32)
		return;
	snprintf(v->name[v->n], sizeof(v->name[v->n]), "%s", l->name);
	v->l[v->n] = *l;
	v->l[v->n].name = v->name[v->n];
	v->n++;
}

/* Every lease of the pipeline as the store shows it, read through the store's own plugin
 * opened read-only with the store's keys (st->kv). Any thread (t_require). */
static void view(const lt_store_t *st, lt_view_t *v)
{
	char name[64], err[1024];
	memset(v, 0, sizeof(*v));
	const char *arg = sp_split_uri(st->uri, name, sizeof(name));
	const sp_store_ops_t *ops = sp_find_store(name);
	t_require(ops && ops->lease_list, "store %s lists no leases", st->uri);
	spate_conf_t *conf = t_conf(st->kv);
	sp_store_t s = {.ops = ops, .arg = arg, .conf = conf, .ns = PIPELINE};
	int rc =
	    ops->open_readonly ? ops->open_readonly(&s, err, sizeof(err)) : ops->open(&s, err, sizeof(err));
	if (rc == SPATE_OK) {
		rc = ops->lease_list(&s, on_lease, v, err, sizeof(err));
		ops->close(&s);
	}
	spate_conf_destroy(conf);
	t_require(rc == SPATE_OK, "%s", err);
}

static const sp_lease_t *lease_of(const lt_view_t *v, const char *name)
{
	for (int i = 0; i < v->n; i++)
		if (!strcmp(v->name[i], name))
			return &v->l[i];
	return NULL;
}

/* How many of the stream's shards' leases `who` holds (live). */
static int held_by(const lt_store_t *st, const char *stream, const char *who)
{
	lt_view_t v;
	view(st, &v);
	char pre[64];
	snprintf(pre, sizeof(pre), "kinesis/%s/", stream);
	int n = 0;
	for (int i = 0; i < v.n; i++)
		if (!strncmp(v.name[i], pre, strlen(pre)) && !strcmp(v.l[i].owner, who) &&
		    v.l[i].expired != 1)
			n++;
	return n;
}

/* ---- two processes ---------------------------------------------------------------------- */

/* Start `spate run` as owner `who` (journal DIR/j<who>, stderr DIR/<who>.err). */
static int start(t_kin_t *k, const lt_store_t *st, const char *stream, const char *who)
{
	char handler[400], owner[64], errf[400], store[300], strm[128], ep[128];
	snprintf(handler, sizeof(handler), "handler=journal:%s/j%s", dir, who);
	snprintf(owner, sizeof(owner), "lease.owner=%s", who);
	snprintf(errf, sizeof(errf), "%s/%s.err", dir, who);
	snprintf(store, sizeof(store), "store=%s", st->uri);
	snprintf(strm, sizeof(strm), "kinesis.stream=%s", stream);
	snprintf(ep, sizeof(ep), "kinesis.endpoint=%s", t_kin_endpoint(k));
	char more[8][300];
	char *argv[64] = {(char *)t_spate_cli(),
	                  "run",
	                  "-X",
	                  "source=kinesis",
	                  "-X",
	                  strm,
	                  "-X",
	                  ep,
	                  "-X",
	                  "kinesis.region=" T_KIN_REGION,
	                  "-X",
	                  "kinesis.idle.ms=50",
	                  "-X",
	                  "kinesis.shard.sync.ms=500",
	                  "-X",
	                  store,
	                  "-X",
	                  "pipeline.name=" PIPELINE,
	                  "-X",
	                  handler,
	                  "-X",
	                  owner,
	                  "-X",
	                  "journal.sleep.ms=50",
	                  "-X",
	                  "batch.size=10",
	                  "-X",
	                  "starting.position=earliest",
	                  "-X",
	                  "stop.at.end=true",
	                  "-X",
	                  "lease.timeout.ms=" LEASE_MS_S,
	                  "-X",
	                  "checkpoint.interval.ms=200",
	                  "-X",
	                  "log.level=debug",
	                  "-X",
	                  "max.concurrency=2",
	                  NULL};
	int n = 0;
	while (argv[n])
		n++;
	for (int i = 0; st->kv[i] && st->kv[i + 1] && i < 16; i += 2) {
		snprintf(more[i / 2], sizeof(more[i / 2]), "%s=%s", st->kv[i], st->kv[i + 1]);
		argv[n++] = "-X";
		argv[n++] = more[i / 2];
	}
	argv[n] = NULL;
	int pid = t_spawn(argv, NULL, errf, 0);
	cr_assert_gt(pid, 0);
	return pid;
}

typedef struct split_arg {
	const lt_store_t *st;
	const char *stream, *who;
	int want;
} split_arg_t;

static bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
	int64_t until = t_now_ms() + ms;
	while (t_now_ms() < until) {
		if (cond(arg))
			return true;
		t_sleep_ms(100);
	}
	return cond(arg);
}

static bool split_evenly(void *arg)
{
	split_arg_t *a = arg;
	return held_by(a->st, a->stream, "A") == NSHARD / 2 && held_by(a->st, a->stream, "B") == NSHARD / 2;
}

/* `who` holds a shard whose checkpoint in the store is past the start: it handled records. */
static bool checkpointed(void *arg)
{
	split_arg_t *a = arg;
	lt_view_t v;
	view(a->st, &v);
	for (int i = 0; i < v.n; i++)
		if (!strcmp(v.l[i].owner, a->who) && v.l[i].has_ckpt && !v.l[i].ckpt.beginning)
			return true;
	return false;
}

static bool holds(void *arg)
{
	split_arg_t *a = arg;
	return held_by(a->st, a->stream, a->who) == a->want;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every record of every shard is in some journal: the distinct (shard, position) pairs
 * the journals hold are as many as the shard's records (a journal line is a record that
 * was read from that shard, so as many distinct ones are all of them). */
static void check_journals(t_kin_t *k, const char *stream, const char *const *whos, int n)
{
	t_shard_t sh[16];
	int ns = t_kin_shards(k, stream, sh, 16);
	long total = 0;
	for (int s = 0; s < ns; s++) {
		char pname[160], last[160];
		snprintf(pname, sizeof(pname), "kinesis/%.20s/%.63s", stream, sh[s].id);
		long want = t_kin_read_shard(k, stream, sh[s].id, last, sizeof(last));
		total += want;
		/* the positions seen, as text, sorted and counted distinct */
		size_t cap = 1024, cnt = 0;
		char **pos = malloc(cap * sizeof(*pos));
		cr_assert(pos);
		for (int j = 0; j < n; j++)
			for (int w = 0; w < 8; w++) {
				char path[400];
				snprintf(path, sizeof(path), "%s/j%s.%d", dir, whos[j], w);
				char *buf = t_read_file(path, NULL);
				if (!buf)
					continue;
				for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
					char part[160], at[160];
					if (sscanf(l, "%159s %159s", part, at) != 2 || strcmp(part, pname))
						continue;
					if (cnt == cap) {
						cap *= 2;
						cr_assert(pos = realloc(pos, cap * sizeof(*pos)));
					}
					cr_assert(pos[cnt++] = strdup(at));
				}
				free(buf);
			}
		qsort(pos, cnt, sizeof(*pos), cmp_str);
		long distinct = 0;
		for (size_t i = 0; i < cnt; i++) {
			if (!i || strcmp(pos[i], pos[i - 1]))
				distinct++;
			free(i ? pos[i - 1] : NULL);
		}
		if (cnt)
			free(pos[cnt - 1]);
		free(pos);
		cr_assert_eq(distinct, want, "%s: %ld records, %ld of them in the journals", pname, want,
		             distinct);
	}
	cr_assert_eq(total, (long)KEYS * PER_KEY, "the stream holds %ld records", total);
}

/* The final checkpoints are the shards' last records. */
static void check_final_checkpoints(t_kin_t *k, const lt_store_t *st, const char *stream)
{
	t_shard_t sh[16];
	int ns = t_kin_shards(k, stream, sh, 16);
	lt_view_t v;
	view(st, &v);
	for (int s = 0; s < ns; s++) {
		char pname[160], last[160], want[200], got[SPATE_POSITION_MAX] = "(none)";
		snprintf(pname, sizeof(pname), "kinesis/%.20s/%.63s", stream, sh[s].id);
		t_kin_read_shard(k, stream, sh[s].id, last, sizeof(last));
		snprintf(want, sizeof(want), "%s.0", last);
		const sp_lease_t *l = lease_of(&v, pname);
		if (l && l->has_ckpt)
			sp_ckpt_fmt(&l->ckpt, got, sizeof(got));
		cr_assert_str_eq(got, want, "%s: checkpoint %s, last record %s", pname, got, want);
	}
}

struct acq {
	char part[128], owner[32];
	uint64_t counter;
	int64_t done;
};

/* The audit: no checkpoint was written (sent) by a process for a shard after another
 * process's acquire of it with a higher counter had returned. Returns the writes
 * audited. */
static int check_audit(const char *const *whos, int n)
{
	static struct acq acqs[4096];
	int na = 0;
	for (int k = 0; k < n; k++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/%s.err", dir, whos[k]);
		char *buf = t_read_file(path, NULL);
		cr_assert(buf, "%s", path);
		for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
			struct acq a;
			if (na < 4096 &&
			    sscanf(l,
			           "spate: debug: lease audit: acquire %127s owner=%31s counter=%" SCNu64
			           " done=%" SCNd64,
			           a.part, a.owner, &a.counter, &a.done) == 4)
				acqs[na++] = a;
		}
		free(buf);
	}
	cr_assert_gt(na, 0, "no acquire in the audit trail");
	int writes = 0;
	for (int k = 0; k < n; k++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/%s.err", dir, whos[k]);
		char *buf = t_read_file(path, NULL);
		for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
			char part[128], owner[32], at[200], res[32];
			uint64_t ctr;
			int64_t sent;
			if (sscanf(l,
			           "spate: debug: lease audit: checkpoint %127s owner=%31s counter=%" SCNu64
			           " at=%199s sent=%" SCNd64 ": %31s",
			           part, owner, &ctr, at, &sent, res) != 6 ||
			    strcmp(res, "written"))
				continue;
			writes++;
			for (int j = 0; j < na; j++)
				cr_assert(!(!strcmp(acqs[j].part, part) && strcmp(acqs[j].owner, owner) &&
				            acqs[j].counter > ctr && acqs[j].done < sent),
				          "%s wrote a checkpoint of %s (counter %" PRIu64 ", sent at %" PRId64
				          ") after %s acquired it with counter %" PRIu64 " (at %" PRId64 ")",
				          owner, part, ctr, sent, acqs[j].owner, acqs[j].counter,
				          acqs[j].done);
		}
		free(buf);
	}
	return writes;
}

/* Two processes on a 4-shard stream through store st: split, kill one, the other
 * finishes. */
static void two_processes(const lt_store_t *st)
{
	t_kin_env();
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "kl", NSHARD);
	kt_put(k, "kl", KEYS, 0, PER_KEY);
	t_mkdtemp(dir, sizeof(dir));
	int64_t t0 = t_now_ms();
	int a = start(k, st, "kl", "A");
	t_sleep_ms(300);
	int b = start(k, st, "kl", "B");
	split_arg_t sa = {st, "kl", "A", NSHARD};
	cr_assert(wait_for(split_evenly, &sa, WAIT_MS), "the shards did not split 2/2 (A %d, B %d)",
	          held_by(st, "kl", "A"), held_by(st, "kl", "B"));
	int64_t t1 = t_now_ms();
	split_arg_t sb = {st, "kl", "B", 0};
	cr_assert(wait_for(checkpointed, &sb, WAIT_MS), "B wrote no checkpoint of the shards it holds");
	cr_assert_eq(held_by(st, "kl", "B"), NSHARD / 2, "B holds %d shards when it is killed",
	             held_by(st, "kl", "B"));
	int64_t tk = t_now_ms();
	kill(b, SIGKILL);
	int status;
	t_wait_exit(b, 10000, &status);
	cr_assert(wait_for(holds, &sa, WAIT_MS), "A did not take all %d shards (it holds %d)", NSHARD,
	          held_by(st, "kl", "A"));
	int64_t t2 = t_now_ms();
	fprintf(stderr,
	        "kinesis leases (%s): split 2/2 %.1f lease timeouts after the first start; A held "
	        "all %d %.1f lease timeouts after the kill\n",
	        st->uri, (double)(t1 - t0) / LEASE_MS, NSHARD, (double)(t2 - tk) / LEASE_MS);
	cr_assert_eq(t_wait_exit(a, 400000, &status), 0, "A did not finish");
	cr_assert_eq(status, 0, "A exited %d", status);
	const char *whos[] = {"A", "B"};
	check_journals(k, "kl", whos, 2);
	check_final_checkpoints(k, st, "kl");
	cr_assert_gt(check_audit(whos, 2), 0, "no checkpoint write in the audit trail");
	/* A took B's shards over from B's checkpoints: with higher counters */
	char aerr[400];
	snprintf(aerr, sizeof(aerr), "%s/A.err", dir);
	char *alog = t_read_file(aerr, NULL);
	cr_assert(alog && strstr(alog, "lease audit: acquire kinesis/kl/") &&
	              strstr(alog, "(from owner=B counter="),
	          "A never took a shard over from B");
	free(alog);
	t_kinesalite_stop(k);
}

Test(kinesis_leases, two_processes_split_kill_one_other_finishes_redis)
{
	lt_store_t st;
	redis_store(&st);
	two_processes(&st);
}

#ifdef SPATE_HAVE_DYNAMODB
Test(kinesis_leases, two_processes_split_kill_one_other_finishes_dynamodb)
{
	lt_store_t st;
	dynamodb_store(&st);
	two_processes(&st);
}
#endif

/* ---- resharding with two lease owners --------------------------------------------------- */

enum { RS_KEYS = 40, RS_PER_KEY = 100 }; /* half before the split, half after */

static unsigned __int128 dec128(const char *s)
{
	unsigned __int128 v = 0;
	for (; *s; s++)
		v = v * 10 + (unsigned)(*s - '0');
	return v;
}

static void fmt128(unsigned __int128 v, char *buf, size_t size)
{
	char tmp[48];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v);
	for (int i = 0; i < n && (size_t)i < size - 1; i++)
		buf[i] = tmp[n - 1 - i];
	buf[(size_t)n < size ? (size_t)n : size - 1] = 0;
}

typedef struct rs_ctx {
	t_kin_t *k;
	const lt_store_t *st;
	kt_seen_t *s;
	kt_conf_t *cf;
	const char *const *more_b;
	long gated; /* children whose first record found their parents at SHARD_END */
} rs_ctx_t;

/* A partition's first record (under s->mu, on a worker): when the store names parents
 * for it, each must be at SHARD_END in the store now. */
static void first_record(kt_seen_t *s, const char *part)
{
	rs_ctx_t *x = s->hook_arg;
	lt_view_t v;
	view(x->st, &v);
	const sp_lease_t *l = lease_of(&v, part);
	if (!t_expect(l, "no lease of %s in the store while its records are handled", part) || !l->parents[0])
		return;
	char pars[SP_LEASE_PARENTS_MAX];
	snprintf(pars, sizeof(pars), "%s", l->parents);
	for (char *id = strtok(pars, ","); id; id = strtok(NULL, ",")) {
		char pname[200], ck[SPATE_POSITION_MAX] = "(none)";
		snprintf(pname, sizeof(pname), "kinesis/rs/%s", id);
		const sp_lease_t *pl = lease_of(&v, pname);
		if (pl && pl->has_ckpt)
			sp_ckpt_fmt(&pl->ckpt, ck, sizeof(ck));
		t_expect(!strcmp(ck, "SHARD_END"),
		         "%s's first record was handled while its parent %s was at %s", part, pname, ck);
	}
	x->gated++;
}

static void *run_b(void *arg)
{
	spate_engine_t *e = arg;
	char err[1024];
	int rc = spate_engine_run(e, err, sizeof(err));
	t_expect(rc == SPATE_OK, "engine B: %s", err);
	return NULL;
}

static long distinct_of(kt_seen_t *s)
{
	pthread_mutex_lock(&s->mu);
	long n = s->distinct;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* On A's during thread: start B, wait for the 2/2 split, split shard 0, put the second
 * half (into the children), wait for every record, stop both. */
static void reshard_during(t_during_t *d)
{
	rs_ctx_t *x = d->arg;
	spate_conf_t *c = t_conf(x->cf->kv);
	t_conf_set(c, x->more_b);
	spate_handler_t h = kt_handler(x->s);
	char err[1024];
	spate_engine_t *b = spate_engine_new(c, &h, err, sizeof(err));
	t_require(b, "engine B: %s", err);
	t_require(spate_engine_start(b, err, sizeof(err)) == SPATE_OK, "engine B: %s", err);
	pthread_t th;
	t_require(pthread_create(&th, NULL, run_b, b) == 0);
	int64_t until = t_now_ms() + WAIT_MS;
	while ((held_by(x->st, "rs", "A") != 2 || held_by(x->st, "rs", "B") != 2) && t_now_ms() < until)
		t_sleep_ms(100);
	bool split = held_by(x->st, "rs", "A") == 2 && held_by(x->st, "rs", "B") == 2;
	if (split) {
		t_shard_t sh[16];
		int n = t_kin_shards(x->k, "rs", sh, 16);
		t_expect(n == 4, "%d shards", n);
		char mid[48];
		fmt128((dec128(sh[0].start_hash) + dec128(sh[0].end_hash)) / 2 + 1, mid, sizeof(mid));
		free(t_kin_ok(x->k, "SplitShard",
		              "{\"StreamName\":\"rs\",\"ShardToSplit\":\"%s\",\"NewStartingHashKey\":\"%s\"}",
		              sh[0].id, mid));
		t_kin_wait_active(x->k, "rs");
		kt_put(x->k, "rs", RS_KEYS, RS_PER_KEY / 2, RS_PER_KEY / 2); /* into the children */
		until = t_now_ms() + WAIT_MS;
		while (distinct_of(x->s) < (long)RS_KEYS * RS_PER_KEY && t_now_ms() < until)
			t_sleep_ms(50);
	}
	spate_engine_stop(b);
	pthread_join(th, NULL);
	spate_engine_destroy(b);
	t_expect(split, "the shards did not split 2/2 between A and B");
	spate_engine_stop(d->e);
}

/* A split of a parent while owners A and B (two engines) run over store st. */
static void split_with_two_owners(const lt_store_t *st_)
{
	lt_store_t st = *st_;
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "rs", 4);
	kt_put(k, "rs", RS_KEYS, 0, RS_PER_KEY / 2);
	t_mkdtemp(dir, sizeof(dir));
	kt_seen_t s;
	kt_seen_init(&s, RS_KEYS, RS_PER_KEY);
	s.delay_ms = 20; /* the parents are still being read when the split comes */
	kt_conf_t cf;
	kt_conf_init(&cf, k, "rs", dir);
	char store[300];
	snprintf(store, sizeof(store), "%s", st.uri);
	const char *more_a[20] = {"store",
	                          store,
	                          "pipeline.name",
	                          PIPELINE,
	                          "lease.owner",
	                          "A",
	                          "lease.timeout.ms",
	                          LEASE_MS_S,
	                          "batch.size",
	                          "20",
	                          NULL};
	for (int i = 0; st.kv[i] && st.kv[i + 1] && i < 8; i += 2) { /* the store's own keys */
		more_a[10 + i] = st.kv[i];
		more_a[11 + i] = st.kv[i + 1];
	}
	const char *more_b[20] = {"store",
	                          store,
	                          "pipeline.name",
	                          PIPELINE,
	                          "lease.owner",
	                          "B",
	                          "lease.timeout.ms",
	                          LEASE_MS_S,
	                          "batch.size",
	                          "20",
	                          NULL};
	for (int i = 0; st.kv[i] && st.kv[i + 1] && i < 8; i += 2) { /* the store's own keys */
		more_b[10 + i] = st.kv[i];
		more_b[11 + i] = st.kv[i + 1];
	}
	rs_ctx_t x = {.k = k, .st = &st, .s = &s, .cf = &cf, .more_b = more_b};
	s.first_of = first_record;
	s.hook_arg = &x;
	kt_run(&cf, more_a, &s, reshard_during, &x);
	long missing = 0;
	for (size_t i = 0; i < (size_t)RS_KEYS * RS_PER_KEY; i++)
		missing += s.count[i] == 0;
	cr_assert_eq(missing, 0, "%ld records never handled", missing);
	cr_assert_eq(s.disorder, 0, "%ld records out of per-key order", s.disorder);
	cr_assert_eq(s.foreign, 0);
	t_shard_t sh[16];
	int n = t_kin_shards(k, "rs", sh, 16);
	cr_assert_eq(n, 6, "4 shards and the 2 children of the split: %d", n);
	lt_view_t v;
	view(&st, &v);
	int children = 0;
	for (int i = 0; i < n; i++) {
		if (!sh[i].parent[0])
			continue;
		children++;
		char cname[160], pname[160], ck[SPATE_POSITION_MAX] = "(none)";
		snprintf(cname, sizeof(cname), "kinesis/rs/%.63s", sh[i].id);
		snprintf(pname, sizeof(pname), "kinesis/rs/%.63s", sh[i].parent);
		kt_part_t *c = kt_part(&s, cname), *p = kt_part(&s, pname);
		cr_assert_gt(c->n, 0, "child %s got none of the records put after the split", cname);
		cr_assert_gt(p->n, 0, "parent %s was not read", pname);
		cr_assert_gt(c->first_in, p->last_out,
		             "child %s was handed a record (tick %ld) before its parent %s's last (tick %ld)",
		             cname, c->first_in, pname, p->last_out);
		const sp_lease_t *cl = lease_of(&v, cname), *pl = lease_of(&v, pname);
		cr_assert(cl, "no lease of child %s in the store", cname);
		cr_assert_str_eq(cl->parents, sh[i].parent, "child %s: the store records parents \"%s\"",
		                 cname, cl->parents);
		if (pl && pl->has_ckpt)
			sp_ckpt_fmt(&pl->ckpt, ck, sizeof(ck));
		cr_assert_str_eq(ck, "SHARD_END", "parent %s: checkpoint %s", pname, ck);
	}
	cr_assert_eq(children, 2);
	cr_assert_eq(x.gated, 2, "%ld children's first records were checked against their parents", x.gated);
	fprintf(stderr,
	        "kinesis leases: split with two owners: %ld records handled again after a lease moved\n",
	        s.dups);
	kt_seen_free(&s);
	t_kinesalite_stop(k);
}

Test(kinesis_leases, split_while_two_owners_run_children_after_parents_at_shard_end_redis)
{
	lt_store_t st;
	redis_store(&st);
	split_with_two_owners(&st);
}

#ifdef SPATE_HAVE_DYNAMODB
Test(kinesis_leases, split_while_two_owners_run_children_after_parents_at_shard_end_dynamodb)
{
	lt_store_t st;
	dynamodb_store(&st);
	split_with_two_owners(&st);
}
#endif
