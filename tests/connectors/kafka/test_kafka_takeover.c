/* test_kafka_takeover.c - how much a group member that dies in a rebalance costs its
 * survivor: member A (a `spate run` process, store=kafka, handler=journal) runs alone,
 * member B joins, and A is SIGKILLed while the group rebalances. Nothing may be lost
 * (every record is in A's or B's journal), and what B handles again of what A had
 * handled must stay within about a checkpoint interval of A's work: A's commits stop
 * once B joins (the group takes none during a join), so A must not run on far past its
 * last commit. Before A held its handlers while its commits were refused, B handled
 * again about three quarters of what A had handled (93,660 of 134,920 records here).
 *
 * The bound is computed from A's journal as the test saw it grow (sampled every
 * SAMPLE_MS): the most A handled in any BOUND_INTERVALS checkpoint intervals, plus one
 * batch per partition. A learns of the rebalance at its next commit, so about one
 * interval of its work is repeated; the bound allows three, because on a loaded machine
 * the engine thread's commit comes late while the workers run. No timing is asserted:
 * the samples only measure A's own pace.
 * Its own test executable (suite kafka_takeover), run with Criterion's --jobs 1: other
 * tests running alongside would change A's pace between the samples and the kill. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	TO_PARTS = 16,
	TO_RECORDS = 200000,
	TO_PER_PART = TO_RECORDS / TO_PARTS,
	TO_BATCH = 10,              /* batch.size: one journal write and fdatasync per 10 records */
	TO_CKPT_MS = 200,           /* checkpoint.interval.ms of both members */
	BOUND_INTERVALS = 3,        /* the bound: A's most in this many checkpoint intervals */
	A_ALONE_MS = 4000,          /* A runs alone this long (its first join takes about 3 s) */
	KILL_AFTER_MS = 3000,       /* B joins; A is killed this much later (the join takes 5 s) */
	SAMPLE_MS = 10,             /* how often the test looks at A's journal */
	MAX_SAMPLES = 8192,         /* ... at most (about 80 s) */
	START_BOUND_MS = 60000,     /* A must have journalled records by then */
	SURVIVOR_BOUND_MS = 180000, /* B must end (stop.at.end) by then */
	PRODUCE_FLUSH_MS = 60000,
	MAX_ARGS = 48,
};

/* TO_RECORDS records round-robin over the partitions, TO_PER_PART each. */
static void produce_even(const char *bs, const char *topic)
{
	char err[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	cr_assert_eq(rd_kafka_conf_set(c, "bootstrap.servers", bs, err, sizeof(err)), RD_KAFKA_CONF_OK, "%s",
	             err);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
	cr_assert(rk, "producer: %s", err);
	for (int i = 0; i < TO_RECORDS; i++) {
		char val[32];
		snprintf(val, sizeof(val), "v%d", i);
		for (;;) {
			rd_kafka_resp_err_t e =
			    rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % TO_PARTS),
			                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			                      RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_END);
			if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				rd_kafka_poll(rk, 10);
				continue;
			}
			cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
			break;
		}
	}
	cr_assert_eq(rd_kafka_flush(rk, PRODUCE_FLUSH_MS), RD_KAFKA_RESP_ERR_NO_ERROR,
	             "producer: not delivered in time");
	rd_kafka_destroy(rk);
	int64_t hi[TO_PARTS];
	kt_ends(bs, topic, TO_PARTS, hi);
	for (int p = 0; p < TO_PARTS; p++)
		cr_assert_eq(hi[p], TO_PER_PART, "partition %d holds %lld records", p, (long long)hi[p]);
}

/* `spate run` as a member of group on topic, journalling to DIR/NAME.<worker>, output in
 * DIR/NAME.out and DIR/NAME.err; extra: more key=value pairs (NULL-terminated, may be
 * NULL). */
static pid_t spawn_member(const char *bs, const char *dir, const char *name, const char *topic,
                          const char *group, const char *const *extra)
{
	char a_topic[128], a_group[128], a_handler[512], a_bs[512], a_batch[32], a_ckpt[48], out[512],
	    err[512];
	snprintf(a_topic, sizeof(a_topic), "topics=%s", topic);
	snprintf(a_group, sizeof(a_group), "group.id=%s", group);
	snprintf(a_handler, sizeof(a_handler), "handler=journal:%s/%s", dir, name);
	snprintf(a_bs, sizeof(a_bs), "kafka.bootstrap.servers=%s", bs);
	snprintf(a_batch, sizeof(a_batch), "batch.size=%d", TO_BATCH);
	snprintf(a_ckpt, sizeof(a_ckpt), "checkpoint.interval.ms=%d", TO_CKPT_MS);
	snprintf(out, sizeof(out), "%s/%s.out", dir, name);
	snprintf(err, sizeof(err), "%s/%s.err", dir, name);
	const char *fixed[] = {"source=kafka",
	                       a_topic,
	                       a_group,
	                       "store=kafka",
	                       "stop.at.end=true",
	                       a_handler,
	                       a_bs,
	                       "kafka.session.timeout.ms=6000",
	                       "kafka.heartbeat.interval.ms=500",
	                       a_batch,
	                       a_ckpt,
	                       "log.level=info",
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

/* Is file a journal of member name (NAME.<digits>)? */
static bool journal_of(const char *file, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(file, name, n) || file[n] != '.' || !file[n + 1])
		return false;
	for (const char *c = file + n + 1; *c; c++)
		if (*c < '0' || *c > '9')
			return false;
	return true;
}

/* Counts the lines of a member's journals as they grow: each look reads only what was
 * appended since the last. */
typedef struct growth {
	char name[16];
	struct {
		char file[256];
		off_t off;
	} f[64];
	int nf;
	long long lines;
} growth_t;

static long long growth_look(growth_t *g, const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	for (struct dirent *de; (de = readdir(d));) {
		if (!journal_of(de->d_name, g->name))
			continue;
		int i = 0;
		while (i < g->nf && strcmp(g->f[i].file, de->d_name))
			i++;
		if (i == g->nf) {
			cr_assert(g->nf < 64, "too many journals");
			snprintf(g->f[g->nf].file, sizeof(g->f[g->nf].file), "%s", de->d_name);
			g->f[g->nf++].off = 0;
		}
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		char buf[65536];
		ssize_t r;
		while ((r = pread(fd, buf, sizeof(buf), g->f[i].off)) > 0) {
			/* count whole lines only: a line being written is counted next time */
			ssize_t upto = r;
			while (upto > 0 && buf[upto - 1] != '\n')
				upto--;
			for (ssize_t j = 0; j < upto; j++)
				g->lines += buf[j] == '\n';
			g->f[i].off += upto;
			if (upto < r)
				break;
		}
		close(fd);
	}
	closedir(d);
	return g->lines;
}

/* Mark every "kafka/TOPIC/P OFFSET" line of member name's journals in seen[P][OFFSET]
 * (bit `bit`); lines that name anything else count in *bad. Returns the lines read. */
static long long journal_mark(const char *dir, const char *name, const char *topic,
                              uint8_t (*seen)[TO_PER_PART], uint8_t bit, long long *bad)
{
	long long lines = 0;
	char want[128];
	int wl = snprintf(want, sizeof(want), "kafka/%s/", topic);
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	for (struct dirent *de; (de = readdir(d));) {
		if (!journal_of(de->d_name, name))
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *buf = t_read_file(path, NULL);
		cr_assert(buf, "read %s", path);
		for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			lines++;
			char *end;
			if (strncmp(l, want, (size_t)wl)) {
				(*bad)++;
				continue;
			}
			long p = strtol(l + wl, &end, 10);
			long long off = *end == ' ' ? strtoll(end + 1, &end, 10) : -1;
			if (*end || p < 0 || p >= TO_PARTS || off < 0 || off >= TO_PER_PART)
				(*bad)++;
			else
				seen[p][off] |= bit;
		}
		free(buf);
	}
	closedir(d);
	return lines;
}

typedef struct sample {
	int64_t ms;
	long long lines;
} sample_t;

/* Sample A's journal until deadline (monotonic ms) into s[*n]; fails the test if A
 * exits. */
static void sample_until(growth_t *g, const char *dir, pid_t a, sample_t *s, int *n, int64_t deadline)
{
	while (t_now_ms() < deadline) {
		cr_assert(*n < MAX_SAMPLES, "too many samples");
		s[*n].lines = growth_look(g, dir);
		s[*n].ms = t_now_ms();
		(*n)++;
		if (waitpid(a, NULL, WNOHANG) == a) {
			kt_print_tail(dir, "a.err");
			cr_assert_fail("member A exited before it was killed");
		}
		t_sleep_ms(SAMPLE_MS);
	}
}

/* The most A handled in any window of window_ms, from the samples. */
static long long most_in_window(const sample_t *s, int n, int64_t window_ms)
{
	long long most = 0;
	for (int i = 0, j = 0; i < n; i++) {
		/* j: the last sample at or before s[i].ms - window_ms (an earlier one only widens
		 * the window: the bound stays loose) */
		while (j + 1 < i && s[j + 1].ms <= s[i].ms - window_ms)
			j++;
		long long d = s[i].lines - s[j].lines;
		if (d > most)
			most = d;
	}
	return most;
}

static void killed_in_a_rebalance(const char *topic, const char *group, const char *const *extra)
{
	char spec[64];
	snprintf(spec, sizeof(spec), "%s:%d", topic, TO_PARTS);
	const char *topics[] = {spec, NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce_even(bs, topic);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	sample_t *s = calloc(MAX_SAMPLES, sizeof(*s));
	cr_assert(s);
	int n = 0;
	growth_t ga = {.name = "a"};
	pid_t a = spawn_member(bs, dir, "a", topic, group, extra);
	int64_t t0 = t_now_ms();
	sample_until(&ga, dir, a, s, &n, t0 + A_ALONE_MS);
	pid_t b = spawn_member(bs, dir, "b", topic, group, extra);
	sample_until(&ga, dir, a, s, &n, t_now_ms() + KILL_AFTER_MS);
	kill(a, SIGKILL);
	int st = kt_wait_exit(a, START_BOUND_MS);
	cr_assert_eq(st, 128 + SIGKILL, "member A: status %d", st);
	s[n].lines = growth_look(&ga, dir); /* what A's journal holds now is all it handled */
	s[n].ms = t_now_ms();
	n++;
	long long a_at_b = 0; /* A's journal when B was started */
	for (int i = 0; i < n && s[i].ms <= t0 + A_ALONE_MS; i++)
		a_at_b = s[i].lines;
	st = kt_wait_exit(b, SURVIVOR_BOUND_MS);
	if (st != 0) {
		kt_print_tail(dir, "b.err");
		cr_assert_fail("member B: status %d, want 0 (-1: still running after %d ms)", st,
		               SURVIVOR_BOUND_MS);
	}
	/* nothing lost; what B handled again of A's */
	uint8_t(*seen)[TO_PER_PART] = calloc(TO_PARTS, sizeof(*seen));
	cr_assert(seen);
	long long bad = 0;
	long long la = journal_mark(dir, "a", topic, seen, 1, &bad);
	long long lb = journal_mark(dir, "b", topic, seen, 2, &bad);
	cr_assert_eq(bad, 0, "%lld journal lines name another partition or offset", bad);
	long long a_handled = 0, repeated = 0, lost = 0;
	for (int p = 0; p < TO_PARTS; p++)
		for (int o = 0; o < TO_PER_PART; o++) {
			a_handled += (seen[p][o] & 1) != 0;
			repeated += seen[p][o] == 3;
			lost += seen[p][o] == 0;
		}
	long long window = most_in_window(s, n, (int64_t)BOUND_INTERVALS * TO_CKPT_MS);
	long long bound = window + TO_PARTS * TO_BATCH;
	cr_log_info(
	    "member A handled %lld records (%lld lines; %lld when B started), B %lld lines; B handled again "
	    "%lld of A's; bound %lld (A's most in %d ms: %lld, plus %d)",
	    a_handled, la, a_at_b, lb, repeated, bound, BOUND_INTERVALS * TO_CKPT_MS, window,
	    TO_PARTS * TO_BATCH);
	cr_assert_eq(lost, 0, "%lld records are in no journal", lost);
	cr_assert(a_at_b > 0, "member A handled nothing in its %d ms alone", A_ALONE_MS);
	cr_assert(a_handled < TO_RECORDS,
	          "member A handled every record before it was killed: nothing to take over");
	cr_assert(repeated <= bound,
	          "member B handled again %lld of the %lld records A had handled: more than A handles in %d "
	          "checkpoint intervals (%lld) plus a batch per partition (%d)",
	          repeated, a_handled, BOUND_INTERVALS, window, TO_PARTS * TO_BATCH);
	free(seen);
	free(s);
	t_rmrf(dir);
	t_kafka_stop(k);
}

Test(kafka_takeover, a_member_killed_in_a_rebalance_costs_about_a_checkpoint_interval, .timeout = 300)
{
	killed_in_a_rebalance("t20", "g20", NULL);
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_takeover, a_member_killed_in_a_rebalance_costs_about_a_checkpoint_interval_with_kafka_log_level_3,
     .timeout = 300)
{
	const char *extra[] = {"kafka.log_level=3", NULL};
	killed_in_a_rebalance("t20", "g20", extra);
}
