/* test_emit_crash.c - emit under kill -9 (issue 15's crash-loop test for emit).
 *
 * A pipeline reads 200,000 of gen's fraud records from a log of 4 partitions and, with
 * handler=route and a pattern every record matches, emits one record per input to a log
 * sink. The test kills it with SIGKILL (ROUNDS times: each once the checkpoint passed the
 * kill's slice of the stream, then 0-200 ms later), restarts it after each kill, and lets
 * the last run finish. Run k emits into its own sink directory
 * DIR/out<k>, so what each run emitted is known. After each kill the checkpoint store is
 * read (C_k: the process is dead, it is stable). Then:
 *  - no loss: every input record has at least one emitted record (by spate.origin) in
 *    the sinks together; and every record at or before C_k has one in out0..outk (a
 *    checkpoint never passes an origin whose emit is not durable);
 *  - duplicates only past the checkpoint: every record run k+1 emits has its origin after
 *    C_k, so an input emitted twice is one the last checkpoint had not passed;
 *  - the kills did land mid-stream: some run before the last emitted something and the
 *    last run emitted less than the whole stream.
 * A kill -9 leaves what the process wrote in the page cache, so this holds the order
 * (emit written, then DONE, then checkpointed), not the fdatasync itself.
 * Timing only picks kill moments; nothing asserts on time. SPATE_TEST_SEED=N replays the
 * kill delays. */
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum { PARTS = 4, RECORDS = 200000, ROUNDS = 6 };

static uint64_t g_rng;

static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static char *run_cli(char *const argv[], int *rc)
{
	char *out = NULL, *err = NULL;
	*rc = t_run(argv, &out, &err);
	free(err);
	return out;
}

/* The checkpoint per partition of the file store at path (-1: none or "beginning"). */
static void read_ckpt(const char *path, int64_t *c)
{
	char store[600];
	snprintf(store, sizeof(store), "file:%s", path);
	char *argv[] = {(char *)t_spate_cli(), "checkpoint", "show", store, NULL};
	int rc;
	char *out = run_cli(argv, &rc);
	for (int p = 0; p < PARTS; p++)
		c[p] = -1;
	for (char *l = out; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		char name[256];
		char val[64];
		if (sscanf(l, "%255s %63s", name, val) == 2) {
			char *slash = strrchr(name, '/');
			int p = slash ? atoi(slash + 1) : -1;
			if (p >= 0 && p < PARTS && val[0] >= '0' && val[0] <= '9')
				c[p] = strtoll(val, NULL, 10);
		}
		l = nl ? nl + 1 : NULL;
	}
	free(out);
}

/* Count, per origin (partition, position), the records of the sink log at dir into
 * cnt[p][pos]; returns how many records it read. lo[p]: the lowest position seen. */
static int64_t read_sink(const char *dir, uint8_t **cnt, int64_t *lo)
{
	for (int p = 0; p < PARTS; p++)
		lo[p] = INT64_MAX;
	if (access(dir, F_OK))
		return 0; /* killed before the sink was made: it emitted nothing */
	char *argv[] = {(char *)t_spate_cli(), "log", "dump", (char *)dir, NULL};
	int rc;
	char *out = run_cli(argv, &rc); /* a torn tail may end the dump with an error */
	int64_t n = 0;
	for (char *l = out; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		char *o = strstr(l, "\"spate.origin\"=\"log/");
		if (o) {
			char *q = strchr(o + 20, '"'); /* the closing quote */
			cr_assert_not_null(q, "%s", l);
			*q = 0;
			char *s2 = strrchr(o, '/');
			*s2 = 0;
			char *s1 = strrchr(o, '/');
			int p = atoi(s1 + 1);
			int64_t pos = strtoll(s2 + 1, NULL, 10);
			cr_assert(p >= 0 && p < PARTS && pos >= 0 && pos < RECORDS, "bad origin in %s", dir);
			if (cnt[p][pos] < 255)
				cnt[p][pos]++;
			if (pos < lo[p])
				lo[p] = pos;
			n++;
		}
		l = nl ? nl + 1 : NULL;
	}
	free(out);
	return n;
}

Test(emit_crash, emitted_records_survive_kill_9_at_least_once, .timeout = 600)
{
	const char *seed_env = getenv("SPATE_TEST_SEED");
	unsigned long long seed = seed_env ? strtoull(seed_env, NULL, 10) : (unsigned long long)t_now_ms();
	g_rng = seed ? seed : 1;
	fprintf(stderr, "emit_crash: seed %llu\n", seed);

	char dir[256], in[300], ck[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(in, sizeof(in), "%s/in", dir);
	snprintf(ck, sizeof(ck), "%s/ckpt", dir);
	char parts[8], recs[16];
	snprintf(parts, sizeof(parts), "%d", PARTS);
	snprintf(recs, sizeof(recs), "%d", RECORDS);
	int rc;
	char *a1[] = {(char *)t_spate_cli(), "log", "create", in, "--partitions", parts, NULL};
	free(run_cli(a1, &rc));
	cr_assert_eq(rc, 0);
	char *a2[] = {(char *)t_spate_cli(), "produce", in, "--gen", "fraud", "--records", recs, NULL};
	free(run_cli(a2, &rc));
	cr_assert_eq(rc, 0);
	/* records per partition, by dumping the input once */
	int64_t count[PARTS] = {0};
	{
		char *a3[] = {(char *)t_spate_cli(), "log", "dump", in, NULL};
		char *out = run_cli(a3, &rc);
		cr_assert_eq(rc, 0);
		for (char *l = out; *l;) {
			count[atoi(l)]++;
			char *nl = strchr(l, '\n');
			if (!nl)
				break;
			l = nl + 1;
		}
		free(out);
	}

	uint8_t *cnt[PARTS];
	for (int p = 0; p < PARTS; p++)
		cnt[p] = calloc(RECORDS, 1);
	int64_t ckpt[ROUNDS + 1][PARTS], emitted[ROUNDS + 1];
	int killed = 0;
	for (int k = 0; k <= ROUNDS; k++) {
		char src[320], sink[340], log_path[320], store[320];
		snprintf(src, sizeof(src), "source=log:%s", in);
		snprintf(sink, sizeof(sink), "sink.out=log:%s/out%d", dir, k);
		snprintf(store, sizeof(store), "store=file:%s", ck);
		snprintf(log_path, sizeof(log_path), "%s/run%d.err", dir, k);
		char *argv[] = {(char *)t_spate_cli(),
		                "run",
		                "-X",
		                src,
		                "-X",
		                store,
		                "-X",
		                "stop.at.end=true",
		                "-X",
		                "handler=route",
		                "-X",
		                sink,
		                "-X",
		                "route.out={\"value\": {\"tx\": [{\"exists\": true}]}}",
		                "-X",
		                "batch.size=200",
		                "-X",
		                "checkpoint.interval.ms=20",
		                NULL};
		int pid = t_spawn(argv, NULL, log_path, 0);
		cr_assert_gt(pid, 0);
		int status;
		if (k < ROUNDS) {
			/* kill once the checkpoint passed this round's slice of the stream, then
			 * 0-200 ms later (mid-batch, mid-write, mid-save) */
			int64_t target = (int64_t)RECORDS * (k + 1) / (ROUNDS + 2), c[PARTS];
			int64_t until = t_now_ms() + 120000;
			for (;;) {
				read_ckpt(ck, c);
				int64_t sum = 0;
				for (int p = 0; p < PARTS; p++)
					sum += c[p] + 1;
				if (sum >= target || t_now_ms() > until)
					break;
				t_sleep_ms(20);
			}
			t_sleep_ms((int)(rnd() % 200));
			kill(pid, SIGKILL);
			cr_assert_eq(t_wait_exit(pid, 60000, &status), 0);
			killed += status == 128 + SIGKILL;
		} else {
			cr_assert_eq(t_wait_exit(pid, 500000, &status), 0);
			cr_assert_eq(status, 0, "the last run exited %d (see %s)", status, log_path);
		}
		read_ckpt(ck, ckpt[k]);
		if (getenv("SPATE_TEST_TRACE"))
			fprintf(stderr,
			        "run %d: status %d, checkpoints %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
			        "\n",
			        k, status, ckpt[k][0], ckpt[k][1], ckpt[k][2], ckpt[k][3]);

		/* what run k emitted: all after the checkpoint before it */
		char out[320];
		snprintf(out, sizeof(out), "%s/out%d", dir, k);
		int64_t lo[PARTS];
		emitted[k] = read_sink(out, cnt, lo);
		if (k > 0)
			for (int p = 0; p < PARTS; p++)
				cr_assert(lo[p] == INT64_MAX || lo[p] > ckpt[k - 1][p],
				          "seed %llu: run %d emitted for partition %d position %" PRId64
				          ", which the checkpoint before it (%" PRId64 ") had passed",
				          seed, k, p, lo[p], ckpt[k - 1][p]);
		/* everything the checkpoint passed has its emitted record */
		for (int p = 0; p < PARTS; p++)
			for (int64_t pos = 0; pos <= ckpt[k][p]; pos++)
				cr_assert(cnt[p][pos] > 0,
				          "seed %llu: after run %d the checkpoint of partition %d is %" PRId64
				          " but position %" PRId64 " has no emitted record",
				          seed, k, p, ckpt[k][p], pos);
	}
	int64_t total = 0, before_last = 0;
	for (int k = 0; k <= ROUNDS; k++) {
		total += emitted[k];
		if (k < ROUNDS)
			before_last += emitted[k];
	}
	for (int p = 0; p < PARTS; p++) {
		cr_assert_eq(ckpt[ROUNDS][p], count[p] - 1, "partition %d ends at %" PRId64 " of %" PRId64, p,
		             ckpt[ROUNDS][p], count[p]);
		for (int64_t pos = 0; pos < count[p]; pos++)
			cr_assert(cnt[p][pos] > 0,
			          "seed %llu: partition %d position %" PRId64 " was never emitted", seed, p,
			          pos);
	}
	fprintf(stderr,
	        "emit_crash: %d kills, %" PRId64 " emitted for %d records (%" PRId64
	        " before the last run)\n",
	        killed, total, RECORDS, before_last);
	cr_assert_geq(total, RECORDS);
	cr_assert_gt(before_last, 0, "no run was killed after it emitted anything");
	cr_assert_lt(emitted[ROUNDS], RECORDS, "the last run emitted the whole stream again");
	for (int p = 0; p < PARTS; p++)
		free(cnt[p]);
	t_rmrf(dir);
}
