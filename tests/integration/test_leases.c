/* test_leases.c - several spate processes share an 8-partition log through store=redis
 * (redis-server started here, AOF with appendfsync always) and through store=dynamodb
 * (dynalite started here): the partitions split 4/4, a SIGKILLed process's partitions are
 * taken over and the run finishes with every record handled at least once, a process
 * paused past its leases writes nothing for them after SIGCONT; a Redis restart loses no
 * checkpoint, and a FLUSHALL (or an emptied DynamoDB table) stops spate with the
 * store-lost error. Timing is never asserted: waits are generous upper bounds. */
#include "tests/common/redis.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SPATE_HAVE_DYNAMODB /* built with the AWS client */
#include "tests/common/dynalite.h"
#endif

#define NPART    8
#define LEASE_MS "1500"

static t_redis_t srv;
static char dir[256], logdir[300];
static uint64_t next_off[NPART]; /* each partition's next offset: records 0..next-1 */

/* ---- the store under test: what the two-process tests need of it ---- */

struct backend {
	char uri[128];
	/* partition i's lease owner and checkpoint as the store holds them (malloc'd, or NULL) */
	char *(*owner)(int part);
	char *(*ckpt)(int part);
};
static struct backend be;

static char *redis_owner(int part)
{
	return t_redis_cmd(&srv, "HGET spate:p:{log/orders/%d} owner", part);
}

static char *redis_ckpt(int part)
{
	return t_redis_cmd(&srv, "HGET spate:p:{log/orders/%d} ckpt", part);
}

static void setup(void)
{
	t_redis_start(&srv);
	be = (struct backend){.owner = redis_owner, .ckpt = redis_ckpt};
	snprintf(be.uri, sizeof(be.uri), "%s", srv.uri);
	t_mkdtemp(dir, sizeof(dir));
	snprintf(logdir, sizeof(logdir), "%s/orders", dir);
}

static void teardown(void)
{
	t_redis_stop(&srv);
	t_rmrf(dir);
}

#ifdef SPATE_HAVE_DYNAMODB
/* store=dynamodb:leases against dynalite; the processes find it through
 * AWS_ENDPOINT_URL_DYNAMODB (t_dynalite_start sets it, the children inherit it) */
static t_dyn_t *dyn;

static char *dyn_attr(int part, const char *attr)
{
	char key[64];
	snprintf(key, sizeof(key), "p/log/orders/%d", part);
	return t_dyn_attr(dyn, "leases", key, attr);
}

static char *dyn_owner(int part)
{
	return dyn_attr(part, "leaseOwner");
}

static char *dyn_ckpt(int part)
{
	return dyn_attr(part, "spateCheckpoint");
}

static void setup_dyn(void)
{
	dyn = t_dynalite_start();
	t_dyn_create_table(dyn, "leases");
	be = (struct backend){.uri = "dynamodb:leases", .owner = dyn_owner, .ckpt = dyn_ckpt};
	t_mkdtemp(dir, sizeof(dir));
	snprintf(logdir, sizeof(logdir), "%s/orders", dir);
}

static void teardown_dyn(void)
{
	t_dynalite_fini();
	dyn = NULL;
	t_rmrf(dir);
}

TestSuite(leases_dynamodb, .init = setup_dyn, .fini = teardown_dyn, .timeout = 600);
#endif

TestSuite(leases, .init = setup, .fini = teardown, .timeout = 600);

static void produce(int records)
{
	char n[32], *out = NULL, *err = NULL;
	snprintf(n, sizeof(n), "%d", records);
	char *argv[] = {
	    (char *)t_spate_cli(), "produce", logdir,          "--partitions", "8", "--gen", "bytes",
	    "--records",           n,         "--value-bytes", "20",           NULL};
	int st = t_run(argv, &out, &err);
	cr_assert_eq(st, 0, "produce: %s", err ? err : "");
	free(out);
	free(err);
	char *lsv[] = {(char *)t_spate_cli(), "log", "ls", logdir, NULL};
	cr_assert_eq(t_run(lsv, &out, &err), 0);
	for (int i = 0; i < NPART; i++) {
		char pat[64];
		snprintf(pat, sizeof(pat), "partition %d: durable up to offset ", i);
		const char *at = strstr(out, pat);
		cr_assert(at, "log ls: %s", out);
		next_off[i] = strtoull(at + strlen(pat), NULL, 10);
		cr_assert_gt(next_off[i], 0);
	}
	free(out);
	free(err);
}

/* Start spate with owner name `who` (journal DIR/j<who>, stderr DIR/<who>.err). */
static int start(const char *who, const char *sleep_ms)
{
	char handler[400], owner[64], errf[400], sl[64];
	snprintf(handler, sizeof(handler), "handler=journal:%s/j%s", dir, who);
	snprintf(owner, sizeof(owner), "lease.owner=%s", who);
	snprintf(errf, sizeof(errf), "%s/%s.err", dir, who);
	snprintf(sl, sizeof(sl), "journal.sleep.ms=%s", sleep_ms);
	char src[400], store[160];
	snprintf(src, sizeof(src), "source=log:%s", logdir);
	snprintf(store, sizeof(store), "store=%s", be.uri);
	char *argv[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                src,
	                "-X",
	                store,
	                "-X",
	                "pipeline.name=p",
	                "-X",
	                handler,
	                "-X",
	                owner,
	                "-X",
	                sl,
	                "-X",
	                "batch.size=20",
	                "-X",
	                "stop.at.end=true",
	                "-X",
	                "lease.timeout.ms=" LEASE_MS,
	                "-X",
	                "log.level=debug",
	                "-X",
	                "max.concurrency=2",
	                NULL};
	int pid = t_spawn(argv, NULL, errf, 0);
	cr_assert_gt(pid, 0);
	return pid;
}

/* How many partitions' leases `who` holds in the store. */
static int held_by(const char *who)
{
	int n = 0;
	for (int i = 0; i < NPART; i++) {
		char *v = be.owner(i);
		if (v && !strcmp(v, who))
			n++;
		free(v);
	}
	return n;
}

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
	(void)arg;
	return held_by("A") == 4 && held_by("B") == 4;
}

static bool holds_all(void *arg)
{
	return held_by(arg) == NPART;
}

/* Every record of every partition is in some journal. */
static void check_journals(const char *const *whos, int n)
{
	uint8_t *seen[NPART];
	for (int i = 0; i < NPART; i++)
		cr_assert(seen[i] = calloc(next_off[i], 1));
	for (int k = 0; k < n; k++)
		for (int w = 0; w < 8; w++) {
			char path[400];
			snprintf(path, sizeof(path), "%s/j%s.%d", dir, whos[k], w);
			char *buf = t_read_file(path, NULL);
			if (!buf)
				continue;
			for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
				int part;
				uint64_t off;
				if (sscanf(line, "log/orders/%d %" SCNu64, &part, &off) == 2 && part >= 0 &&
				    part < NPART && off < next_off[part])
					seen[part][off] = 1;
			}
			free(buf);
		}
	for (int i = 0; i < NPART; i++) {
		for (uint64_t o = 0; o < next_off[i]; o++)
			cr_assert(seen[i][o], "record log/orders/%d %" PRIu64 " was never handled", i, o);
		free(seen[i]);
	}
}

/* The final checkpoints in the store are the partitions' last records. */
static void check_final_checkpoints(void)
{
	for (int i = 0; i < NPART; i++) {
		char *v = be.ckpt(i);
		cr_assert(v && strtoull(v, NULL, 10) == next_off[i] - 1,
		          "partition %d checkpoint %s, last record %" PRIu64, i, v ? v : "(none)",
		          next_off[i] - 1);
		free(v);
	}
}

struct acq {
	char part[64], owner[32];
	uint64_t counter;
	int64_t done;
};

/* The audit: no checkpoint was written (sent) by a process for a partition after
 * another process's acquire of it with a higher counter had returned. Returns the
 * number of checkpoint writes audited. */
static int check_audit(const char *const *whos, int n)
{
	struct acq acqs[4096];
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
			           "spate: debug: lease audit: acquire %63s owner=%31s counter=%" SCNu64
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
			char part[64], owner[32], at[64], res[32];
			uint64_t ctr;
			int64_t sent;
			if (sscanf(l,
			           "spate: debug: lease audit: checkpoint %63s owner=%31s counter=%" SCNu64
			           " at=%63s sent=%" SCNd64 ": %31s",
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

static void split_kill_one_other_finishes(void)
{
	produce(40000); /* 5,000 a partition; 20 a batch, 20 ms a batch: minutes for one worker */
	int a = start("A", "20");
	t_sleep_ms(300);
	int b = start("B", "20");
	cr_assert(wait_for(split_evenly, NULL, 120000), "the partitions did not split 4/4 (A %d, B %d)",
	          held_by("A"), held_by("B"));
	kill(b, SIGKILL);
	int st;
	t_wait_exit(b, 10000, &st);
	cr_assert(wait_for(holds_all, "A", 120000), "A did not take all 8 partitions (it holds %d)",
	          held_by("A"));
	cr_assert_eq(t_wait_exit(a, 400000, &st), 0, "A did not finish");
	cr_assert_eq(st, 0, "A exited %d", st);
	const char *whos[] = {"A", "B"};
	check_journals(whos, 2);
	check_final_checkpoints();
	cr_assert_gt(check_audit(whos, 2), 0);
}

static size_t count_in(const char *path, size_t from, const char *needle)
{
	size_t len = 0, n = 0;
	char *buf = t_read_file(path, &len);
	if (!buf)
		return 0;
	for (const char *p = buf + (from < len ? from : len); (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(buf);
	return n;
}

static void paused_process_writes_nothing(void)
{
	produce(40000);
	int a = start("A", "20");
	t_sleep_ms(300);
	int b = start("B", "20");
	cr_assert(wait_for(split_evenly, NULL, 120000), "the partitions did not split 4/4 (A %d, B %d)",
	          held_by("A"), held_by("B"));
	bool had[NPART];
	for (int i = 0; i < NPART; i++) {
		char *v = be.owner(i);
		had[i] = v && !strcmp(v, "B");
		free(v);
	}
	kill(b, SIGSTOP);
	cr_assert(wait_for(holds_all, "A", 120000), "A did not take B's partitions while B was stopped");
	/* what B's journals and log hold now: B may finish the batch each handler was
	 * running when it stopped, and nothing more of the partitions it lost */
	size_t before[8] = {0}, errlen = 0;
	for (int w = 0; w < 8; w++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/jB.%d", dir, w);
		free(t_read_file(path, &before[w]));
	}
	char berr[400];
	snprintf(berr, sizeof(berr), "%s/B.err", dir);
	free(t_read_file(berr, &errlen));
	kill(b, SIGCONT);
	/* B finds its leases gone on its next round (and may steal one back in it) */
	int64_t until = t_now_ms() + 60000;
	while (count_in(berr, errlen, "lease lost") < 4 && t_now_ms() < until)
		t_sleep_ms(20);
	cr_assert_geq(count_in(berr, errlen, "lease lost"), 4, "B did not report its 4 lost leases");
	kill(b, SIGKILL);
	int st;
	t_wait_exit(b, 10000, &st);
	/* the partitions B took back after SIGCONT are not judged: it holds new leases */
	bool retaken[NPART] = {false};
	char *log = t_read_file(berr, NULL);
	for (int i = 0; i < NPART; i++) {
		char needle[80];
		snprintf(needle, sizeof(needle), "lease audit: acquire log/orders/%d owner=B", i);
		for (const char *p = log + errlen; (p = strstr(p, needle)); p += strlen(needle))
			retaken[i] = true;
	}
	free(log);
	size_t extra[NPART] = {0};
	for (int w = 0; w < 8; w++) {
		char path[400];
		size_t len = 0;
		snprintf(path, sizeof(path), "%s/jB.%d", dir, w);
		char *buf = t_read_file(path, &len);
		if (buf && len > before[w])
			for (char *l = strtok(buf + before[w], "\n"); l; l = strtok(NULL, "\n")) {
				int part;
				if (sscanf(l, "log/orders/%d", &part) == 1 && part >= 0 && part < NPART)
					extra[part]++;
			}
		free(buf);
	}
	int judged = 0;
	for (int i = 0; i < NPART; i++) {
		if (!had[i] || retaken[i])
			continue;
		judged++;
		/* at most the batch a handler was running when B stopped (batch.size 20 each,
		 * 2 workers) */
		cr_assert_leq(extra[i], 2 * 20,
		              "B handed %zu records of log/orders/%d to its handler after its deadline",
		              extra[i], i);
	}
	cr_assert_gt(judged, 0, "B took back every partition it lost: nothing to judge");
	cr_assert_eq(t_wait_exit(a, 400000, &st), 0, "A did not finish");
	cr_assert_eq(st, 0);
	const char *whos[] = {"A", "B"};
	check_journals(whos, 2);
	check_final_checkpoints();
	check_audit(whos, 2);
}

Test(leases, two_processes_split_kill_one_other_finishes)
{
	split_kill_one_other_finishes();
}

Test(leases, paused_process_writes_nothing_for_lost_partitions)
{
	paused_process_writes_nothing();
}

#ifdef SPATE_HAVE_DYNAMODB
Test(leases_dynamodb, two_processes_split_kill_one_other_finishes)
{
	split_kill_one_other_finishes();
}

Test(leases_dynamodb, paused_process_writes_nothing_for_lost_partitions)
{
	paused_process_writes_nothing();
}

Test(leases_dynamodb, emptied_table_stops_with_store_lost)
{
	produce(16000);
	int a = start("A", "20");
	cr_assert(wait_for(holds_all, "A", 60000));
	t_dyn_empty_table(dyn, "leases");
	int st;
	cr_assert_eq(t_wait_exit(a, 60000, &st), 0, "A did not stop after the table was emptied");
	cr_assert_neq(st, 0, "A went on after its store lost its data");
	char path[400];
	snprintf(path, sizeof(path), "%s/A.err", dir);
	char *err = t_read_file(path, NULL);
	cr_assert(err && strstr(err, "lost its data") && strstr(err, "dynamodb:leases"), "%s",
	          err ? err : "");
	free(err);
	/* it did not start over: no lease or checkpoint was written back */
	for (int i = 0; i < NPART; i++) {
		char *v = be.owner(i);
		cr_assert_null(v, "partition %d's lease was written again (owner %s)", i, v);
	}
	char *v = t_dyn_attr(dyn, "leases", "p#epoch", "spateEpoch");
	cr_assert_null(v, "the epoch marker was written again: %s", v);
}
#endif

Test(leases, redis_restart_loses_no_checkpoint)
{
	produce(16000);
	int a = start("A", "10");
	cr_assert(wait_for(holds_all, "A", 60000));
	t_sleep_ms(1000);
	uint64_t ck[NPART];
	for (int i = 0; i < NPART; i++) {
		char *v = t_redis_cmd(&srv, "HGET spate:p:{log/orders/%d} ckpt", i);
		ck[i] = v && *v && strcmp(v, "beginning") ? strtoull(v, NULL, 10) : 0;
		free(v);
	}
	t_redis_restart(&srv, true);
	for (int i = 0; i < NPART; i++) {
		char *v = t_redis_cmd(&srv, "HGET spate:p:{log/orders/%d} ckpt", i);
		uint64_t now = v && *v && strcmp(v, "beginning") ? strtoull(v, NULL, 10) : 0;
		cr_assert_geq(now, ck[i],
		              "partition %d: checkpoint %" PRIu64 " before the restart, %" PRIu64 " after", i,
		              ck[i], now);
		free(v);
	}
	int st;
	cr_assert_eq(t_wait_exit(a, 400000, &st), 0, "A did not finish");
	cr_assert_eq(st, 0, "A exited %d after the Redis restart", st);
	const char *whos[] = {"A"};
	check_journals(whos, 1);
	check_final_checkpoints();
}

Test(leases, flushall_stops_with_store_lost)
{
	produce(16000);
	int a = start("A", "20");
	cr_assert(wait_for(holds_all, "A", 60000));
	free(t_redis_cmd(&srv, "FLUSHALL"));
	int st;
	cr_assert_eq(t_wait_exit(a, 60000, &st), 0, "A did not stop after FLUSHALL");
	cr_assert_neq(st, 0, "A went on after its store lost its data");
	char path[400];
	snprintf(path, sizeof(path), "%s/A.err", dir);
	char *err = t_read_file(path, NULL);
	cr_assert(err && strstr(err, "lost its data") && strstr(err, srv.uri), "%s", err ? err : "");
	/* it did not start over: nothing was written back but what a stale write could not */
	char *v = t_redis_cmd(&srv, "GET spate:p:epoch");
	cr_assert(v && !*v, "the epoch marker was written again: %s", v ? v : "(null)");
	free(v);
	free(err);
}

Test(leases, file_store_refuses_leases)
{
	produce(100);
	char src[400], *out = NULL, *err = NULL;
	snprintf(src, sizeof(src), "source=log:%s", logdir);
	char *argv[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                src,
	                "-X",
	                "handler=noop",
	                "-X",
	                "lease.timeout.ms=5000",
	                "-X",
	                "stop.at.end=true",
	                NULL};
	int st = t_run(argv, &out, &err);
	cr_assert_neq(st, 0);
	cr_assert(err && strstr(err, "lease.timeout.ms") && strstr(err, "keeps no leases"), "%s",
	          err ? err : "");
	free(out);
	free(err);
}
