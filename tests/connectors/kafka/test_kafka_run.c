/* test_kafka_run.c - source=kafka run as `spate run` processes against mock-kafka, for what
 * only a whole process shows (its exit status, its summary):
 *  - a group member with stop.at.end=true that finds everything committed and ends before
 *    its first assignment exits 0: librdkafka 2.0.2 aborts when a cooperative-sticky
 *    consumer is destroyed in that state (librdkafka issue #4312);
 *  - a member stopped by SIGTERM while it is joining (held in its SyncGroup) exits 0,
 *    also when no assignment comes within the session timeout while it closes;
 *  - stop.at.end with no store (store= empty) ends once every record was handled, and
 *    commits nothing;
 *  - with store=file, a saved start that retention has since deleted is an error naming
 *    the partition and the range (guarantee 6).
 * Part of the kafka_source test executable (suite kafka_source). */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

enum {
	RUN_PARTS = 16,
	RUN_RECORDS = 4000,         /* about 250 per partition */
	RUN_EXIT_BOUND_MS = 120000, /* a `spate run` that should end must end by then */
	COMMIT_BOUND_MS = 120000,   /* member A's commits must reach the ends by then */
	JOIN_BOUND_MS = 60000,      /* a member must be in its SyncGroup by then */
	SYNC_DELAY_MS = 3000,       /* SyncGroup responses held back, below the session timeout */
	LONG_SYNC_DELAY_MS = 20000, /* ... and past it (librdkafka times the request out at 9 s) */
	LONG_SYNC_DELAYS = 10,      /* ... for the SyncGroups of every rejoin meanwhile */
	POLL_MS = 10,               /* how often the tests look at a child's output */
	COMMIT_POLL_MS = 200,       /* ... and at the group's commits */
	MAX_ARGS = 48,
};

/* kafka.log_level of the members (NULL: unset, librdkafka's default); a test sets it
 * for its _with_kafka_log_level_3 twin (each test runs in its own process) */
static const char *g_kafka_log_level;

/* Load topic with n records through `spate produce --kafka` (spread evenly). */
static void produce_cli(const char *bs, const char *topic, int n)
{
	char a_n[32], a_bs[512];
	snprintf(a_n, sizeof(a_n), "%d", n);
	snprintf(a_bs, sizeof(a_bs), "kafka.bootstrap.servers=%s", bs);
	char *const argv[] = {(char *)t_spate_cli(), "produce", "--kafka", (char *)topic, "--gen", "bytes",
	                      "--records",           a_n,       "-X",      a_bs,          NULL};
	char *out = NULL, *err = NULL;
	int st = t_run(argv, &out, &err);
	cr_assert_eq(st, 0, "spate produce --kafka %s: status %d: %s", topic, st, err);
	free(out);
	free(err);
	cr_assert_eq(kt_count(bs, topic), n, "topic %s does not hold the %d records produced", topic, n);
}

/* `spate run` of source=kafka on topic in group, as DIR/NAME.out and DIR/NAME.err, with
 * the fast rejoin settings and the extra -X key=value pairs in extra (NULL-terminated). */
static pid_t spawn_run(const char *bs, const char *dir, const char *name, const char *topic,
                       const char *group, const char *const *extra)
{
	char a_topic[128], a_group[128], a_bs[512], a_ll[48], out[512], err[512];
	snprintf(a_ll, sizeof(a_ll), "kafka.log_level=%s", g_kafka_log_level ? g_kafka_log_level : "");
	snprintf(a_topic, sizeof(a_topic), "topics=%s", topic);
	snprintf(a_group, sizeof(a_group), "group.id=%s", group);
	snprintf(a_bs, sizeof(a_bs), "kafka.bootstrap.servers=%s", bs);
	snprintf(out, sizeof(out), "%s/%s.out", dir, name);
	snprintf(err, sizeof(err), "%s/%s.err", dir, name);
	const char *fixed[] = {"source=kafka",
	                       a_topic,
	                       a_group,
	                       a_bs,
	                       "kafka.session.timeout.ms=6000",
	                       "kafka.heartbeat.interval.ms=500",
	                       "checkpoint.interval.ms=200",
	                       g_kafka_log_level ? a_ll : NULL,
	                       NULL};
	char *argv[MAX_ARGS];
	int n = 0;
	argv[n++] = (char *)t_spate_cli();
	argv[n++] = "run";
	for (int pass = 0; pass < 2; pass++)
		for (const char *const *kv = pass ? extra : fixed; kv && *kv; kv++) {
			cr_assert(n + 3 < MAX_ARGS, "too many arguments");
			argv[n++] = "-X";
			argv[n++] = (char *)*kv;
		}
	argv[n] = NULL;
	pid_t pid = t_spawn(argv, out, err, 0);
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	return pid;
}

/* The value of the summary line "name N" in DIR/FILE, or -1 when there is none. */
static long long summary_value(const char *dir, const char *file, const char *name)
{
	char path[1024], want[64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int wl = snprintf(want, sizeof(want), "%s ", name);
	char *s = t_read_file(path, NULL);
	long long v = -1;
	for (char *save = NULL, *l = s ? strtok_r(s, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
		if (!strncmp(l, want, (size_t)wl))
			v = strtoll(l + wl, NULL, 10);
	free(s);
	return v;
}

/* Whether DIR/FILE holds text. */
static bool file_has(const char *dir, const char *file, const char *text)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *s = t_read_file(path, NULL);
	bool has = s && strstr(s, text);
	free(s);
	return has;
}

/* Fail the test (after killing pid and logging its stderr) unless it exits with want. */
static void expect_exit(const char *dir, const char *name, pid_t pid, int want)
{
	int st = kt_wait_exit(pid, RUN_EXIT_BOUND_MS);
	if (st == want)
		return;
	char file[160];
	snprintf(file, sizeof(file), "%s.err", name);
	kt_print_tail(dir, file);
	cr_assert_fail("member %s: status %d, want %d (-1: still running after %d ms; 134: aborted)", name,
	               st, want, RUN_EXIT_BOUND_MS);
}

/* The defect sequence: member A consumes a 16-partition topic on 3 brokers to its end and
 * keeps running; member B, stop.at.end=true, starts in the same group, finds everything
 * committed and ends while the group still makes it wait for A in its SyncGroup. With
 * librdkafka 2.0.2 closing it there aborted (status 134) in
 * rd_kafka_sticky_assignor_state_destroy. */
static void a_member_that_ends_before_its_first_assignment_exits_0_run(void)
{
	const char *topics[] = {"r11:16", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce_cli(bs, "r11", RUN_RECORDS);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	const char *a_args[] = {"log.level=info", NULL};
	pid_t a = spawn_run(bs, dir, "a", "r11", "g11", a_args);
	/* A has handled everything and committed the ends */
	int64_t com[RUN_PARTS], hi[RUN_PARTS];
	kt_ends(bs, "r11", RUN_PARTS, hi);
	bool at_end = false;
	for (int64_t deadline = sp_now_ms() + COMMIT_BOUND_MS; !at_end && sp_now_ms() < deadline;) {
		t_sleep_ms(COMMIT_POLL_MS);
		kt_committed(bs, "r11", "g11", RUN_PARTS, com);
		at_end = true;
		for (int p = 0; p < RUN_PARTS; p++)
			at_end = at_end && com[p] == hi[p];
	}
	if (!at_end || waitpid(a, NULL, WNOHANG) == a) {
		kill(a, SIGKILL);
		waitpid(a, NULL, 0);
		kt_print_tail(dir, "a.err");
		cr_assert_fail("member A did not commit every end while running");
	}
	const char *b_args[] = {"stop.at.end=true", "log.level=info", NULL};
	pid_t b = spawn_run(bs, dir, "b", "r11", "g11", b_args);
	int st = kt_wait_exit(b, RUN_EXIT_BOUND_MS);
	if (st != 0) {
		kill(a, SIGKILL);
		waitpid(a, NULL, 0);
		kt_print_tail(dir, "b.err");
		cr_assert_fail("member B: status %d, want 0 (-1: still running after %d ms; 134: aborted)",
		               st, RUN_EXIT_BOUND_MS);
	}
	cr_log_info("member B: records %lld", summary_value(dir, "b.out", "records"));
	cr_assert_eq(summary_value(dir, "b.out", "records"), 0, "member B handled committed records");
	/* A served the rebalances B caused and stops as usual, having handled each record once */
	cr_assert_eq(waitpid(a, NULL, WNOHANG), 0, "member A ended while B came and went");
	kill(a, SIGTERM);
	expect_exit(dir, "a", a, 0);
	cr_assert_eq(summary_value(dir, "a.out", "records"), RUN_RECORDS);
	kt_committed(bs, "r11", "g11", RUN_PARTS, com);
	for (int p = 0; p < RUN_PARTS; p++)
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com[p],
		             (long long)hi[p]);
	t_rmrf(dir);
	t_kafka_stop(k);
}

Test(kafka_source, a_member_that_ends_before_its_first_assignment_exits_0, .timeout = 300)
{
	a_member_that_ends_before_its_first_assignment_exits_0_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, a_member_that_ends_before_its_first_assignment_exits_0_with_kafka_log_level_3,
     .timeout = 300)
{
	g_kafka_log_level = "3";
	a_member_that_ends_before_its_first_assignment_exits_0_run();
}

/* Start a member of group on topic (16 partitions, 3 brokers, records in it) whose
 * SyncGroup responses mock-kafka holds back for delay_ms, count times; send it SIGTERM
 * once it is past its JoinGroup (the assignor chosen) and before its first assignment;
 * return its exit status. Its output is DIR/m.out and DIR/m.err. */
static int sigterm_in_syncgroup(const char *dir, const char *topic, const char *group, int delay_ms,
                                int count)
{
	char spec[64];
	snprintf(spec, sizeof(spec), "%s:%d", topic, RUN_PARTS);
	const char *topics[] = {spec, NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce_cli(bs, topic, RUN_RECORDS);
	t_kafka_ok(k, "delay SyncGroup all %d %d", delay_ms, count);
	/* the source's own debug line of each cgrp.join_state librdkafka's statistics report
	 * shows when it is in its SyncGroup (statistics every 100 ms, so that the report comes
	 * early in the SyncGroup's delay) */
	const char *args[] = {"log.level=debug", "kafka.statistics.interval.ms=100", NULL};
	pid_t m = spawn_run(bs, dir, "m", topic, group, args);
	bool syncing = false;
	for (int64_t deadline = sp_now_ms() + JOIN_BOUND_MS; !syncing && sp_now_ms() < deadline;) {
		t_sleep_ms(POLL_MS);
		syncing = file_has(dir, "m.err", "cgrp.join_state wait-sync");
		if (waitpid(m, NULL, WNOHANG) == m) {
			kt_print_tail(dir, "m.err");
			cr_assert_fail("the member exited before it joined");
		}
	}
	if (!syncing) {
		kill(m, SIGKILL);
		waitpid(m, NULL, 0);
		kt_print_tail(dir, "m.err");
		cr_assert_fail("the member did not reach its SyncGroup within %d ms", JOIN_BOUND_MS);
	}
	bool assigned = file_has(dir, "m.err", "assigned, starting at offset") ||
	                file_has(dir, "m.err", "cgrp.join_state wait-assign-call") ||
	                file_has(dir, "m.err", "cgrp.join_state steady");
	kill(m, SIGTERM);
	cr_log_info("SIGTERM in the SyncGroup (first assignment already there: %s)", assigned ? "yes" : "no");
	cr_assert(!assigned, "the first assignment came before the signal: the SyncGroup was not held back");
	int st = kt_wait_exit(m, RUN_EXIT_BOUND_MS);
	if (st)
		kt_print_tail(dir, "m.err");
	t_kafka_stop(k);
	return st;
}

/* SIGTERM while a member is joining: it exits 0 (graceful stop), not 134. */
static void sigterm_while_joining_exits_0_run(void)
{
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	int st = sigterm_in_syncgroup(dir, "r13", "g13", SYNC_DELAY_MS, 1);
	cr_assert_eq(st, 0, "status %d (134: aborted; -1: still running after %d ms)", st, RUN_EXIT_BOUND_MS);
	t_rmrf(dir);
}

Test(kafka_source, sigterm_while_joining_exits_0, .timeout = 300)
{
	sigterm_while_joining_exits_0_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, sigterm_while_joining_exits_0_with_kafka_log_level_3, .timeout = 300)
{
	g_kafka_log_level = "3";
	sigterm_while_joining_exits_0_run();
}

/* The same, but the SyncGroup is held back past the session timeout (6 s) each time it
 * is sent: no first assignment comes while the member closes. It still exits 0, and says
 * it left the consumer handle to the process exit instead of destroying it. */
static void a_member_without_an_assignment_after_the_session_timeout_exits_0_run(void)
{
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	int st = sigterm_in_syncgroup(dir, "r14", "g14", LONG_SYNC_DELAY_MS, LONG_SYNC_DELAYS);
	cr_assert_eq(st, 0, "status %d (134: aborted; -1: still running after %d ms)", st, RUN_EXIT_BOUND_MS);
	cr_assert(file_has(dir, "m.err", "its handle is left to the process exit"),
	          "no warning that the consumer handle was left undestroyed");
	t_rmrf(dir);
}

Test(kafka_source, a_member_without_an_assignment_after_the_session_timeout_exits_0, .timeout = 300)
{
	a_member_without_an_assignment_after_the_session_timeout_exits_0_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, a_member_without_an_assignment_after_the_session_timeout_exits_0_with_kafka_log_level_3,
     .timeout = 300)
{
	g_kafka_log_level = "3";
	a_member_without_an_assignment_after_the_session_timeout_exits_0_run();
}

/* store= (empty): no checkpoints, like kcat -e. stop.at.end compares what the source
 * handed over and the engine has DONE with the ends noted at start. */
Test(kafka_source, no_store_stop_at_end_handles_everything_and_exits, .timeout = 300)
{
	const char *topics[] = {"r12:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce_cli(bs, "r12", RUN_RECORDS);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	const char *args[] = {"store=", "stop.at.end=true", "log.level=info", NULL};
	pid_t m = spawn_run(bs, dir, "m", "r12", "g12", args);
	expect_exit(dir, "m", m, 0);
	long long records = summary_value(dir, "m.out", "records");
	cr_assert_eq(records, RUN_RECORDS, "handled %lld of %d records", records, RUN_RECORDS);
	/* and nothing was committed to the group */
	int64_t com[RUN_PARTS];
	kt_committed(bs, "r12", "g12", RUN_PARTS, com);
	for (int p = 0; p < RUN_PARTS; p++)
		cr_assert_eq(com[p], -1, "partition %d: committed %lld without a store", p,
		             (long long)com[p]);
	t_rmrf(dir);
	t_kafka_stop(k);
}

/* Guarantee 6 with store=file: a run is killed before anything is DONE (its resolved
 * start, offset 0, is saved at once), then retention (mock-kafka keeps about 5 MiB per
 * partition) deletes the start of the partition. The rerun stops with an error naming
 * the partition and the deleted range, instead of starting at the new log start. */
Test(kafka_source, a_start_retention_passed_is_an_error_with_store_file, .timeout = 300)
{
	const char *topics[] = {"r15:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	const char *pconf[] = {"linger.ms", "5", NULL};
	rd_kafka_t *pr = kt_producer(bs, pconf);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(kt_produce_sync(pr, "r15", 0, NULL, "early record"), RD_KAFKA_RESP_ERR_NO_ERROR);
	char dir[256], store[300], a_store[320];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "%s/ckpt", dir);
	snprintf(a_store, sizeof(a_store), "store=file:%s", store);
	const char *args[] = {a_store, "handler=sleep:600000", "log.level=info", NULL};
	pid_t m = spawn_run(bs, dir, "m", "r15", "g15", args);
	bool saved = false;
	for (int64_t deadline = sp_now_ms() + JOIN_BOUND_MS; !saved && sp_now_ms() < deadline;) {
		t_sleep_ms(POLL_MS);
		char *s = t_read_file(store, NULL);
		saved = s && strstr(s, "kafka/r15/0\tbeginning");
		free(s);
	}
	kill(m, SIGKILL);
	waitpid(m, NULL, 0);
	cr_assert(saved, "the resolved start of kafka/r15/0 was not saved");
	/* about 8 MB more: the mock cluster drops the partition's oldest records (a producer
	 * without kt_producer's per-message delivery reports) */
	rd_kafka_destroy(pr);
	char perr[256];
	rd_kafka_conf_t *pc = rd_kafka_conf_new();
	cr_assert_eq(rd_kafka_conf_set(pc, "bootstrap.servers", bs, perr, sizeof(perr)), RD_KAFKA_CONF_OK,
	             "%s", perr);
	cr_assert_eq(rd_kafka_conf_set(pc, "linger.ms", "5", perr, sizeof(perr)), RD_KAFKA_CONF_OK, "%s",
	             perr);
	pr = rd_kafka_new(RD_KAFKA_PRODUCER, pc, perr, sizeof(perr));
	cr_assert_not_null(pr, "%s", perr);
	static char val[1000];
	memset(val, 'x', sizeof(val) - 1);
	for (int i = 0; i < 8000; i++)
		while (rd_kafka_producev(pr, RD_KAFKA_V_TOPIC("r15"), RD_KAFKA_V_PARTITION(0),
		                         RD_KAFKA_V_VALUE(val, sizeof(val) - 1),
		                         RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(pr, 10);
	cr_assert_eq(rd_kafka_flush(pr, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
	int64_t lo = -1, hi = -1;
	cr_assert_eq(rd_kafka_query_watermark_offsets(pr, "r15", 0, &lo, &hi, 10000),
	             RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(pr);
	cr_assert_gt(lo, 0, "retention did not move the log start (low %lld, high %lld)", (long long)lo,
	             (long long)hi);
	const char *args2[] = {a_store, "stop.at.end=true", "log.level=info", NULL};
	pid_t m2 = spawn_run(bs, dir, "m2", "r15", "g15", args2);
	int st = kt_wait_exit(m2, RUN_EXIT_BOUND_MS);
	kt_print_tail(dir, "m2.err");
	cr_assert_neq(st, 0, "the rerun exited 0 past a deleted range");
	cr_assert_neq(st, -1, "the rerun did not end");
	char range[96];
	snprintf(range, sizeof(range), "offsets 0..%lld were deleted before they were handled",
	         (long long)lo - 1);
	cr_assert(file_has(dir, "m2.err", "kafka/r15/0"), "the error does not name the partition");
	cr_assert(file_has(dir, "m2.err", range), "the error does not name the range (%s)", range);
	cr_assert(file_has(dir, "m2.err", "spate checkpoint reset"), "the error does not name the way out");
	t_rmrf(dir);
	t_kafka_stop(k);
}
