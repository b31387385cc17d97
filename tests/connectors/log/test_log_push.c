/* test_log_push.c - the durable push (connectors/log/lpush.c: source=log:DIR with
 * log.push=true):
 *  - pushes from several threads return positions; the pipeline handles each once and
 *    the run ends after spate_push_close;
 *  - group commit: with 8 threads pushing to one partition, fdatasync calls (counted
 *    through a link-time wrap) are far fewer than push calls, and a push never returns before its records are
 *    synced (the durable file covers them when it returns);
 *  - a process pushing from 4 threads is SIGKILLed at random moments, 10 times: every
 *    position a push returned is in the log afterwards, and a pipeline over the log
 *    handles each at least once;
 *  - backpressure: a partition past log.push.max.lag takes nothing (0), at once;
 *  - spate_push_close right after the last push: the run ends only once that push is
 *    handled too. */
#include <spate/spate.h>

#include "connectors/log/log.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/engine.h"
#include "tests/common/util.h"

/* ---- fdatasync, counted ------------------------------------------------------------------ */

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
static _Atomic uint64_t syncs;

int __wrap_fdatasync(int fd)
{
	atomic_fetch_add(&syncs, 1);
	return __real_fdatasync(fd);
}

/* ---- a pipeline that counts what it handles ------------------------------------------------ */

#define MAXPOS 1000000

typedef struct seen {
	_Atomic uint32_t *count[4]; /* per partition, per offset */
} seen_t;

static int count_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	seen_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		int p = r[i]->partition->partition;
		uint64_t pos = r[i]->position.w[2];
		if (p >= 0 && p < 4 && pos < MAXPOS)
			atomic_fetch_add(&s->count[p][pos], 1);
	}
	return SPATE_HANDLER_OK;
}

static spate_engine_t *make(const char *dir, seen_t *s, const char *max_lag)
{
	char err[512], src[600];
	snprintf(src, sizeof(src), "log:%s", dir);
	spate_conf_t *c = spate_conf_new();
	const char *kv[] = {"source", src, "log.push", "true", "push.partitions", "4", "store", "none",
	                    "log.push.max.lag", max_lag, "log.level", "error", NULL};
	for (int i = 0; kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s", kv[i], err);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	return e;
}

typedef struct pusher {
	spate_engine_t *e;
	const char *dir;
	int id, calls, per_call;
	int part; /* >= 0: every call pushes to it; else they rotate over the 4 partitions */
	int bad; /* pushes that returned before their records were durable */
	int fd;  /* >= 0: each returned position is written here (the crash test) */
} pusher_t;

static void *push_thread(void *a)
{
	pusher_t *p = a;
	for (int k = 0; k < p->calls; k++) {
		spate_push_record_t recs[16];
		spate_position_t pos[16];
		char vals[16][32];
		for (int j = 0; j < p->per_call; j++) {
			int len = snprintf(vals[j], sizeof(vals[j]), "t%d-%d-%d", p->id, k, j);
			recs[j] = (spate_push_record_t){.key = vals[j], .key_len = (size_t)len, .value = vals[j],
			                                .value_len = (size_t)len};
		}
		int part = p->part >= 0 ? p->part : (p->id + k) % 4;
		int n = spate_push_positions(p->e, part, recs, (size_t)p->per_call, pos);
		if (n <= 0) {
			k--; /* full or failed: again (the crash test's child dies meanwhile) */
			t_sleep_ms(1);
			continue;
		}
		if (p->fd >= 0) {
			char line[64];
			for (int j = 0; j < n; j++) {
				int len = snprintf(line, sizeof(line), "%d %llu\n", part, (unsigned long long)pos[j].w[2]);
				if (write(p->fd, line, (size_t)len) != len)
					_exit(20);
			}
		} else if (k % 16 == 0) {
			/* it returned: its records are covered by the published durable length */
			char pdir[600];
			sp_log_part_path(pdir, sizeof(pdir), p->dir, part);
			sp_log_durable_t d;
			if (sp_log_durable_read(pdir, &d, NULL, 0) != SPATE_OK || d.next <= pos[n - 1].w[2])
				p->bad++;
		}
	}
	return NULL;
}

typedef struct run {
	spate_engine_t *e;
	int rc;
} run_t;

static void *runner(void *a)
{
	run_t *r = a;
	char err[512];
	r->rc = spate_engine_run(r->e, err, sizeof(err));
	return NULL;
}

static void free_seen(seen_t *s)
{
	for (int p = 0; p < 4; p++)
		free(s->count[p]);
}

static void new_seen(seen_t *s)
{
	for (int p = 0; p < 4; p++)
		s->count[p] = calloc(MAXPOS, sizeof(uint32_t));
}

Test(log_push, eight_threads_share_their_fdatasyncs, .timeout = 120)
{
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	seen_t s;
	new_seen(&s);
	spate_engine_t *e = make(dir, &s, "1000000");
	pthread_t run, th[8];
	pusher_t ps[8];
	/* the engine runs on its own thread meanwhile */
	run_t r = {e, -1};
	pthread_create(&run, NULL, runner, &r);
	uint64_t before = atomic_load(&syncs);
	for (int i = 0; i < 8; i++) {
		ps[i] = (pusher_t){.e = e, .dir = dir, .id = i, .calls = 500, .per_call = 1, .part = 0, .fd = -1};
		pthread_create(&th[i], NULL, push_thread, &ps[i]);
	}
	int bad = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		bad += ps[i].bad;
	}
	uint64_t used = atomic_load(&syncs) - before;
	spate_push_close(e);
	pthread_join(run, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "the run ended with %d", r.rc);
	spate_summary_t sum;
	spate_engine_summary(e, &sum);
	spate_engine_destroy(e);
	cr_assert_eq(bad, 0, "%d pushes returned before their records were in the durable length", bad);
	cr_assert_eq(sum.records, 4000, "the pipeline handled %llu of 4000", (unsigned long long)sum.records);
	cr_log_info("4000 push calls, %llu fdatasync calls", (unsigned long long)used);
	cr_assert_lt(used, 4000 / 2, "%llu fdatasync calls for 4000 push calls: no group commit", (unsigned long long)used);
	for (int i = 0; i < 4000; i++)
		cr_assert_eq(atomic_load(&s.count[0][i]), 1, "offset %d handled %u times", i, atomic_load(&s.count[0][i]));
	free_seen(&s);
	t_rmrf(dir);
}

Test(log_push, a_full_partition_takes_nothing_at_once, .timeout = 60)
{
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	seen_t s;
	new_seen(&s);
	/* the engine is started but not run: nothing is read, so the lag only grows */
	spate_engine_t *e = make(dir, &s, "100");
	spate_push_record_t recs[150];
	for (int i = 0; i < 150; i++)
		recs[i] = (spate_push_record_t){.value = "v", .value_len = 1};
	cr_assert_eq(spate_push(e, 0, recs, 150), 100, "a push past log.push.max.lag took more than the bound");
	cr_assert_eq(spate_push(e, 0, recs, 10), 0, "a full partition took records");
	cr_assert_eq(spate_push(e, 1, recs, 10), 10, "another partition is not full");
	spate_engine_destroy(e);
	free_seen(&s);
	t_rmrf(dir);
}

/* ---- kill -9 while pushing ---------------------------------------------------------------- */

static void child_push(const char *dir, const char *posfile)
{
	seen_t s;
	new_seen(&s);
	char err[512], src[600];
	snprintf(src, sizeof(src), "log:%s", dir);
	spate_conf_t *c = spate_conf_new();
	const char *kv[] = {"source", src, "log.push", "true", "push.partitions", "4", "store", "none",
	                    "log.level", "error", NULL};
	for (int i = 0; kv[i]; i += 2)
		if (spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)))
			_exit(10);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = &s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	if (!e || spate_engine_start(e, err, sizeof(err)))
		_exit(11);
	int fd = open(posfile, O_WRONLY | O_APPEND | O_CREAT, 0600);
	pthread_t th[4];
	pusher_t ps[4];
	for (int i = 0; i < 4; i++) {
		ps[i] = (pusher_t){.e = e, .dir = dir, .id = i, .calls = 5000, .per_call = 8, .part = -1, .fd = fd};
		pthread_create(&th[i], NULL, push_thread, &ps[i]);
	}
	spate_engine_run(e, err, sizeof(err)); /* until killed */
	_exit(12);
}

Test(log_push, every_returned_position_survives_kill_9, .timeout = 300)
{
	char dir[256], posfile[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(posfile, sizeof(posfile), "%s.positions", dir);
	unlink(posfile);
	srand(42);
	for (int round = 0; round < 10; round++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0)
			child_push(dir, posfile);
		/* once this round's pushes are returning, at a random moment */
		struct stat st0;
		off_t had = stat(posfile, &st0) == 0 ? st0.st_size : 0;
		for (int w = 0; w < 60000; w++) {
			if (stat(posfile, &st0) == 0 && st0.st_size > had)
				break;
			t_sleep_ms(1);
		}
		t_sleep_ms(rand() % 300);
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		cr_assert(WIFSIGNALED(st), "the pushing process ended on its own (status %d)", st);
	}
	/* every position a push returned is durable in its partition */
	FILE *f = fopen(posfile, "r");
	cr_assert_not_null(f);
	seen_t want;
	new_seen(&want);
	int part;
	unsigned long long pos;
	size_t returned = 0;
	uint64_t maxpos[4] = {0};
	while (fscanf(f, "%d %llu", &part, &pos) == 2) {
		cr_assert(part >= 0 && part < 4 && pos < MAXPOS);
		want.count[part][pos] = 1;
		if (pos + 1 > maxpos[part])
			maxpos[part] = pos + 1;
		returned++;
	}
	fclose(f);
	cr_assert_gt(returned, 1000, "only %zu positions were returned in 10 runs", returned);
	for (int p = 0; p < 4; p++) {
		char pdir[600];
		sp_log_part_path(pdir, sizeof(pdir), dir, p);
		sp_log_durable_t d;
		cr_assert_eq(sp_log_durable_read(pdir, &d, NULL, 0), SPATE_OK);
		cr_assert_geq(d.next, maxpos[p], "partition %d: a push returned offset %llu, the log holds up to %llu", p,
		              (unsigned long long)maxpos[p] - 1, (unsigned long long)d.next);
	}
	/* and a pipeline over the log handles each of them */
	seen_t s;
	new_seen(&s);
	char err[512], src[600];
	snprintf(src, sizeof(src), "log:%s", dir);
	spate_conf_t *c = spate_conf_new();
	const char *kv[] = {"source", src, "store", "none", "stop.at.end", "true", "log.level", "error", NULL};
	for (int i = 0; kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = &s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_engine_destroy(e);
	for (int p = 0; p < 4; p++)
		for (uint64_t i = 0; i < maxpos[p]; i++)
			if (want.count[p][i])
				cr_assert_geq(atomic_load(&s.count[p][i]), 1, "partition %d offset %llu was returned but not handled",
				              p, (unsigned long long)i);
	free_seen(&s);
	free_seen(&want);
	unlink(posfile);
	t_rmrf(dir);
}

/* ---- close right after the last push ------------------------------------------------------- */

/* Rounds of the close race below, and the pushes (one record, one sync each) of a round. */
#define CLOSE_ROUNDS 20
#define CLOSE_PUSHES 100

/* The during thread: a stream of pushes of one record each, then the close at once. */
static void push_then_close(t_during_t *d)
{
	for (int i = 0; i < CLOSE_PUSHES; i++) {
		spate_push_record_t rec = {.key = "k", .key_len = 1, .value = "v", .value_len = 1};
		int n = spate_push(d->e, 0, &rec, 1);
		t_require(n == 1, "push %d returned %d", i, n);
	}
	spate_push_close(d->e);
}

Test(log_push, a_close_right_after_the_last_push_ends_the_run_only_once_it_is_handled, .timeout = 300)
{
	/* spate_push_close right after the last of a stream of pushes returned: the run must
	 * still read and handle that push, though the reader may not have seen its durable
	 * length yet (it learns of it through inotify, after the push returned). The engine
	 * thread polls the reader and checks for the end while the pushes go on, as in an
	 * ingest service; before the fix about one benchmark run in ten ended a record or two
	 * short (benchmarks/push_durable.c checks the count). The default store, as there. */
	for (int round = 0; round < CLOSE_ROUNDS; round++) {
		char dir[256], src[300];
		t_mkdtemp(dir, sizeof(dir));
		snprintf(src, sizeof(src), "log:%s", dir);
		seen_t s;
		new_seen(&s);
		const char *kv[] = {"source", src,         "log.push", "true", "push.partitions",
		                    "4",      "log.level", "error",    NULL};
		spate_handler_t h = {
		    .version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = &s};
		t_engine_opts_t o = {.conf = kv, .handler = &h, .during = push_then_close};
		t_run_t r = t_engine_run(&o);
		cr_assert_eq(r.rc, SPATE_OK, "round %d: %s", round, r.err);
		cr_assert_eq(r.sum.records, CLOSE_PUSHES,
		             "round %d: the run ended having handled %llu of the %d pushed", round,
		             (unsigned long long)r.sum.records, CLOSE_PUSHES);
		for (int i = 0; i < CLOSE_PUSHES; i++)
			cr_assert_eq(atomic_load(&s.count[0][i]), 1, "round %d: offset %d handled %u times",
			             round, i, atomic_load(&s.count[0][i]));
		free_seen(&s);
		t_rmrf(dir);
	}
}
