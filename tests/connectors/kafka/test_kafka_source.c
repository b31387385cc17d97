/* test_kafka_source.c - source=kafka with store=kafka against mock-kafka: every record
 * of a 16-partition topic is handled and the group's committed offsets end at the
 * partitions' ends; a stopped run resumes after its commits without handling a
 * committed record again; a broker outage mid-run loses nothing; a commit below the log
 * start stops the run with an error naming topic, partition and range; configuration
 * errors name their key; a `spate run` member SIGKILLed mid-run has its partitions taken
 * over by the other, which ends only once the commits reach every end; injected Fetch
 * and OffsetCommit errors lose nothing; transaction control markers (written with a raw
 * Produce request, as the 2.0.2 mock cluster writes none) are passed, and the commits
 * reach each partition's end past its tail markers. (Aborted records: the 2.0.2 mock
 * cluster sends no aborted-transaction list, so read_committed consumers get them.) */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/engine.h"
#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

TestSuite(kafka_source, .fini = t_kafka_fini);

enum {
	PARTS = 16,
	RECORDS = 20000,
	MAX_OFF = 4096,           /* offsets per partition the counters hold */
	PRODUCE_FLUSH_MS = 60000, /* bound for the producer's delivery reports */
	RUN_BOUND_MS = 180000,    /* a run that takes longer is stopped and fails the test */
	REQUEST_MS = 10000,       /* bound of the test's own metadata / committed requests */
	OUTAGE_AFTER = 5000,      /* records handled before the broker goes down */
	OUTAGE_MS = 3000,         /* how long it stays down */
	BIG_VALUE = 100000,       /* bytes per record of the retention test */
	BIG_RECORDS = 80,         /* 8 MB into one partition: past the mock's ~5 MiB */
	MEMBER_DELAY_MS = 5000,   /* the second member joins after the first got everything */
	BATCH_SLEEP_MS = 100,     /* a slow handler, per batch */
};

/* ---- handler: counts per (partition, offset) ---------------------------------------- */

typedef struct counts {
	_Atomic uint16_t n[PARTS][MAX_OFF];
	_Atomic uint64_t total;
	_Atomic uint64_t bad; /* records outside the table or with a wrong key/value */
	uint64_t stop_after;  /* 0 = never; else spate_engine_stop once total reaches it */
	_Atomic(spate_engine_t *) eng;
	_Atomic bool stopped;
	t_kafka_t *outage;     /* take the broker down once OUTAGE_AFTER records were handled */
	_Atomic bool run_over; /* the run returned: the outage thread stops waiting */
	/* the outage thread: records handled when the broker went down, and whether the run
	 * was still going then and when it came back (-1, false: no outage happened) */
	int64_t down_at;
	bool down_mid, up_mid;
	int sleep_ms;          /* per batch: a slow handler */
	uint64_t store_errors; /* the engine's failed checkpoint saves (retried), at the end */
	uint64_t store_busy;   /* and the saves it deferred while the group rebalanced */
	size_t revoked_left;   /* revoked partitions still in the engine at the end */
	int64_t lag_end;       /* the source's lag once the run returned */
	uint64_t forgotten;    /* revoked partitions the engine freed */
	/* a client of the group (NULL: none): the handler's first call reads the group's
	 * committed offsets through it into first_committed (-1: none), first_err */
	rd_kafka_t *first_check;
	_Atomic bool first_done;
	int64_t first_committed[PARTS];
	rd_kafka_resp_err_t first_err;
	const char *first_topic;
} counts_t;

static counts_t *g_counts;

/* kafka.log_level of the runs (NULL: unset, librdkafka's default); a test sets it for
 * its _with_kafka_log_level_3 twin (each test runs in its own process) */
static const char *g_kafka_log_level;

/* What the group has committed when the first batch is handled (no cr_assert: a worker
 * thread; the test asserts on what it recorded). */
static void first_check(counts_t *c)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
	for (int i = 0; i < PARTS; i++)
		rd_kafka_topic_partition_list_add(l, c->first_topic, i);
	c->first_err = rd_kafka_committed(c->first_check, l, REQUEST_MS);
	for (int i = 0; i < PARTS; i++)
		c->first_committed[i] = l->elems[i].offset;
	rd_kafka_topic_partition_list_destroy(l);
}

static int count_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	(void)wctx;
	counts_t *c = opaque;
	if (c->first_check && !atomic_exchange(&c->first_done, true))
		first_check(c);
	size_t n = spate_batch_count(b);
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < n; i++) {
		int32_t p = r[i]->partition->partition;
		uint64_t off = r[i]->position.w[2];
		char want[32];
		int len = snprintf(want, sizeof(want), "k%d", (int)p);
		if (p < 0 || p >= PARTS || off >= MAX_OFF || r[i]->key_len != (size_t)len ||
		    memcmp(r[i]->key, want, (size_t)len) || strcmp(r[i]->partition->topic, "") == 0) {
			atomic_fetch_add(&c->bad, 1);
			continue;
		}
		atomic_fetch_add(&c->n[p][off], 1);
	}
	if (c->sleep_ms)
		usleep((useconds_t)c->sleep_ms * 1000);
	uint64_t t = atomic_fetch_add(&c->total, n) + n;
	if (c->stop_after && t >= c->stop_after && !atomic_exchange(&c->stopped, true))
		spate_engine_stop(atomic_load(&c->eng));
	return SPATE_HANDLER_OK;
}

/* ---- producing and reading the group's offsets ----------------------------------------- */

static _Atomic int g_dr_errors;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		atomic_fetch_add(&g_dr_errors, 1);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bs, const char *group)
{
	char err[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	cr_assert_eq(rd_kafka_conf_set(c, "bootstrap.servers", bs, err, sizeof(err)), RD_KAFKA_CONF_OK, "%s",
	             err);
	if (group)
		cr_assert_eq(rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)), RD_KAFKA_CONF_OK,
		             "%s", err);
	if (type == RD_KAFKA_PRODUCER)
		rd_kafka_conf_set_dr_msg_cb(c, on_dr);
	rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
	cr_assert(rk, "rd_kafka_new: %s", err);
	return rk;
}

/* n records round-robin over the partitions (key "kP", value "vI"), value_bytes when > 0
 * into partition 0 only. */
static void produce(const char *bs, const char *topic, int n, int value_bytes)
{
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bs, NULL);
	char *big = value_bytes > 0 ? calloc(1, (size_t)value_bytes) : NULL;
	atomic_store(&g_dr_errors, 0);
	for (int i = 0; i < n; i++) {
		int32_t p = value_bytes > 0 ? 0 : i % PARTS;
		char key[16], val[32];
		snprintf(key, sizeof(key), "k%d", (int)p);
		snprintf(val, sizeof(val), "v%d", i);
		if (big)
			memcpy(big, val, strlen(val));
		for (;;) {
			rd_kafka_resp_err_t e = rd_kafka_producev(
			    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p),
			    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, strlen(key)),
			    RD_KAFKA_V_VALUE(big ? big : val, big ? (size_t)value_bytes : strlen(val)),
			    RD_KAFKA_V_HEADER("h", "x", 1), RD_KAFKA_V_END);
			if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				rd_kafka_poll(rk, 10);
				continue;
			}
			cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
			break;
		}
		rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, PRODUCE_FLUSH_MS);
	cr_assert_eq(rd_kafka_outq_len(rk), 0, "producer: messages not delivered in time");
	cr_assert_eq(atomic_load(&g_dr_errors), 0, "producer: failed deliveries");
	free(big);
	rd_kafka_destroy(rk);
}

/* The group's committed offsets (-1 none) and the high watermarks of partitions 0..np-1. */
static void offsets(const char *bs, const char *topic, const char *group, int np, int64_t *committed,
                    int64_t *high, int64_t *low)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bs, group);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(l, topic, i);
	rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, REQUEST_MS);
	cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "committed: %s", rd_kafka_err2str(e));
	for (int i = 0; i < np; i++) {
		committed[i] = l->elems[i].offset;
		int64_t lo = 0, hi = 0;
		e = rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, REQUEST_MS);
		cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks: %s", rd_kafka_err2str(e));
		if (high)
			high[i] = hi;
		if (low)
			low[i] = lo;
	}
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

/* The group's commits reached every partition's end (each end is want when want >= 0). */
static void assert_commits_at_ends(const char *bs, const char *topic, const char *group, int64_t want)
{
	int64_t com[PARTS], hi[PARTS];
	offsets(bs, topic, group, PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++) {
		if (want >= 0)
			cr_assert_eq(hi[p], want, "partition %d: end %lld, produced %lld", p, (long long)hi[p],
			             (long long)want);
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com[p],
		             (long long)hi[p]);
	}
}

/* Every record of the topic's RECORDS was handled exactly once. */
static void assert_each_once(counts_t *cnt, const char *topic)
{
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert_eq(atomic_load(&cnt->n[p][o]), 1, "kafka/%s/%d/%d handled %d times", topic, p, o,
			             atomic_load(&cnt->n[p][o]));
}

/* ---- running the engine ------------------------------------------------------------ */

typedef struct watchdog {
	spate_engine_t *e;
	_Atomic bool done, fired;
} watchdog_t;

static void *watch(void *arg)
{
	watchdog_t *w = arg;
	for (int waited = 0; waited < RUN_BOUND_MS && !atomic_load(&w->done); waited += 50)
		usleep(50 * 1000);
	if (!atomic_load(&w->done)) {
		atomic_store(&w->fired, true);
		spate_engine_stop(w->e);
	}
	return NULL;
}

/* set, kafka_conf_store and run are called on the test's thread and on member threads
 * (two members in one process): t_require, a Criterion failure on the test's thread and a
 * failure with the message (abort) on another, where Criterion cannot jump back. */
static void set(spate_conf_t *c, const char *k, const char *v)
{
	char err[512];
	int rc = spate_conf_set(c, k, v, err, sizeof(err));
	t_require(rc == SPATE_CONF_OK, "%s=%s: %s", k, v, err);
}

/* A Kafka source conf; store NULL leaves the store key unset (the source's default). */
static spate_conf_t *kafka_conf_store(const char *bs, const char *topic, const char *group, const char *store)
{
	spate_conf_t *c = spate_conf_new();
	set(c, "source", "kafka");
	set(c, "topics", topic);
	set(c, "group.id", group);
	if (store)
		set(c, "store", store);
	set(c, "stop.at.end", "true");
	set(c, "kafka.bootstrap.servers", bs);
	set(c, "kafka.session.timeout.ms", "6000");
	set(c, "kafka.heartbeat.interval.ms", "500");
	set(c, "max.concurrency", "4");
	/* debugging aids: T_KDEBUG=cgrp,fetch (librdkafka's debug contexts), T_LOG=debug */
	if (getenv("T_KDEBUG"))
		set(c, "kafka.debug", getenv("T_KDEBUG"));
	set(c, "checkpoint.interval.ms", "200");
	set(c, "log.level", getenv("T_LOG") ? getenv("T_LOG") : "warn");
	if (g_kafka_log_level)
		set(c, "kafka.log_level", g_kafka_log_level);
	return c;
}

static spate_conf_t *kafka_conf(const char *bs, const char *topic, const char *group)
{
	return kafka_conf_store(bs, topic, group, "kafka");
}

/* Run to the end (or a stop); the run's result and error text. */
static int run(spate_conf_t *c, counts_t *cnt, char *err, size_t size)
{
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = cnt};
	spate_engine_t *e = spate_engine_new(c, &h, err, size);
	t_require(e, "engine: %s", err);
	atomic_store(&cnt->eng, e);
	int rc = spate_engine_start(e, err, size);
	if (rc) {
		spate_engine_destroy(e);
		return rc;
	}
	watchdog_t w = {.e = e};
	pthread_t th;
	pthread_create(&th, NULL, watch, &w);
	rc = spate_engine_run(e, err, size);
	atomic_store(&w.done, true);
	pthread_join(th, NULL);
	t_require(!atomic_load(&w.fired), "the run did not end within %d ms", RUN_BOUND_MS);
	cnt->store_errors = e->store_errors;
	cnt->store_busy = e->store_busy;
	cnt->lag_end = e->src.ops->lag(&e->src); /* the engine thread is done: safe here */
	cnt->revoked_left = e->nrevoked;
	cnt->forgotten = e->nforgotten;
	for (size_t i = 0; i < e->nparts; i++)
		if (e->parts[i]->eng->revoked)
			cnt->revoked_left += 1000; /* counted apart from nrevoked: both must say 0 */
	spate_engine_destroy(e);
	return rc;
}

static counts_t *counts_new(void)
{
	counts_t *c = calloc(1, sizeof(*c));
	cr_assert(c);
	g_counts = c;
	return c;
}

/* ---- tests -------------------------------------------------------------------------- */

Test(kafka_source, every_record_handled_and_commits_reach_the_ends, .timeout = 300)
{
	const char *topics[] = {"t1:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t1", RECORDS, 0);
	counts_t *cnt = counts_new();
	char err[1024] = "";
	/* no store key: a Kafka source commits to its group by default; kafka.log_level=3
	 * must not hide the join state the commits wait for (the run would not end) */
	spate_conf_t *c = kafka_conf_store(bs, "t1", "g1", NULL);
	set(c, "kafka.log_level", "3");
	int rc = run(c, cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	cr_assert_eq(atomic_load(&cnt->bad), 0, "records with a wrong key or position");
	assert_each_once(cnt, "t1");
	cr_assert_eq(atomic_load(&cnt->total), RECORDS);
	cr_assert_eq(cnt->lag_end, 0, "lag %lld after everything was read", (long long)cnt->lag_end);
	assert_commits_at_ends(bs, "t1", "g1", RECORDS / PARTS);
	free(cnt);
	t_kafka_stop(k);
}

/* A new member's partitions have no committed offset: their starts are resolved and
 * saved at once (guarantee 6). When the group answers that save with
 * REBALANCE_IN_PROGRESS (another member joined meanwhile: a member killed in CI this way,
 * exit 1 naming the commit), the start stays to be saved, the handlers wait for it, and
 * the run goes on: every start is in the group when the first record is handled, every
 * record is handled once, the commits reach the ends. */
Test(kafka_source, a_busy_group_at_the_first_commit_is_waited_for, .timeout = 300)
{
	const char *topics[] = {"tb:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "tb", RECORDS, 0);
	/* the next 18 OffsetCommit requests are refused: the saves of the 16 resolved starts,
	 * one per partition as the assignment starts them, then two periodic saves (a second
	 * apart) while the handlers hold; without the hold the first record was handled with
	 * nothing committed (-1001) */
	t_kafka_ok(k, "error OffsetCommit REBALANCE_IN_PROGRESS 18");
	counts_t *cnt = counts_new();
	cnt->first_check = client(RD_KAFKA_CONSUMER, bs, "gb");
	cnt->first_topic = "tb";
	char err[1024] = "";
	spate_conf_t *c = kafka_conf_store(bs, "tb", "gb", NULL);
	int rc = run(c, cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	/* guarantee 6: every start was in the group before the first record was handled */
	cr_assert(atomic_load(&cnt->first_done));
	cr_assert_eq(cnt->first_err, RD_KAFKA_RESP_ERR_NO_ERROR, "committed at the first call: %s",
	             rd_kafka_err2str(cnt->first_err));
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(cnt->first_committed[p], 0,
		             "partition %d: committed %lld when the first record was handled (0: its resolved "
		             "start, the beginning)",
		             p, (long long)cnt->first_committed[p]);
	rd_kafka_destroy(cnt->first_check);
	cr_assert_gt(cnt->store_busy, 0, "the refused commits were not seen as a busy group");
	cr_assert_eq(atomic_load(&cnt->bad), 0, "records with a wrong key or position");
	assert_each_once(cnt, "tb");
	assert_commits_at_ends(bs, "tb", "gb", RECORDS / PARTS);
	free(cnt);
	t_kafka_stop(k);
}

/* Transaction control markers, through the source (the tracker's side is in
 * test_tracker.c): a commit marker between two runs of records of every partition, and at
 * every partition's tail a commit marker, plus an abort marker in odd partitions (markers
 * take offsets that no consumer hands out; kt_append_control writes them, as 2.0.2's mock
 * cluster writes none). Under the default isolation.level=read_committed the run hands
 * every record to the handler once and no marker offset, its commits pass the tail
 * markers up to each partition's end (else stop.at.end would never end it), and a rerun
 * handles nothing again. Aborted records are not tested here: the 2.0.2 mock cluster
 * sends no aborted-transaction list, so its consumers deliver them. */
Test(kafka_source, transaction_markers_are_passed_and_commits_reach_the_end, .timeout = 300)
{
	enum { ROUND = PARTS * 100 };
	const char *topics[] = {"tx:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "tx", ROUND, 0); /* offsets 0..99 of every partition */
	for (int p = 0; p < PARTS; p++)
		kt_append_control(bs, "tx", p, 1); /* 100 */
	produce(bs, "tx", ROUND, 0);               /* 101..200 */
	for (int p = 0; p < PARTS; p++) {
		kt_append_control(bs, "tx", p, 1); /* 201 */
		if (p % 2)
			kt_append_control(bs, "tx", p, 0); /* 202 */
	}
	int64_t com[PARTS], hi[PARTS];
	offsets(bs, "tx", "gtx", PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(hi[p], 202 + p % 2, "partition %d ends at %lld", p, (long long)hi[p]);
	counts_t *cnt = counts_new();
	char err[1024] = "";
	int rc = run(kafka_conf(bs, "tx", "gtx"), cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	cr_assert_eq(atomic_load(&cnt->bad), 0, "records with a wrong key or position");
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < 203; o++)
			cr_assert_eq(atomic_load(&cnt->n[p][o]), o == 100 || o > 200 ? 0 : 1,
			             "kafka/tx/%d/%d handled %d times", p, o, atomic_load(&cnt->n[p][o]));
	cr_assert_eq(atomic_load(&cnt->total), 2 * ROUND);
	offsets(bs, "tx", "gtx", PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld (past its tail markers)",
		             p, (long long)com[p], (long long)hi[p]);
	free(cnt);
	/* a rerun of the group handles nothing again */
	cnt = counts_new();
	rc = run(kafka_conf(bs, "tx", "gtx"), cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "rerun: %s", err);
	cr_assert_eq(atomic_load(&cnt->total), 0, "the rerun handled %llu records again",
	             (unsigned long long)atomic_load(&cnt->total));
	free(cnt);
	t_kafka_stop(k);
}

Test(kafka_source, restart_resumes_after_the_commits, .timeout = 300)
{
	const char *topics[] = {"t2:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t2", RECORDS, 0);
	counts_t *first = counts_new();
	first->stop_after = RECORDS / 2;
	char err[1024] = "";
	spate_conf_t *c = kafka_conf(bs, "t2", "g2");
	set(c, "stop.at.end", "false");
	int rc = run(c, first, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "first run: %s", err);
	cr_assert(atomic_load(&first->total) >= RECORDS / 2);
	int64_t com1[PARTS], hi[PARTS];
	offsets(bs, "t2", "g2", PARTS, com1, hi, NULL);
	int64_t committed = 0;
	for (int p = 0; p < PARTS; p++) {
		cr_assert(com1[p] >= 0 && com1[p] <= hi[p], "partition %d: committed %lld", p,
		          (long long)com1[p]);
		committed += com1[p];
		/* a commit never passes a record that was not handled */
		for (int64_t o = 0; o < com1[p]; o++)
			cr_assert(atomic_load(&first->n[p][o]) >= 1,
			          "kafka/t2/%d/%lld committed but not handled", p, (long long)o);
	}
	cr_assert(committed < RECORDS, "the first run committed everything (%lld); nothing left to resume",
	          (long long)committed);

	counts_t *second = counts_new();
	rc = run(kafka_conf(bs, "t2", "g2"), second, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "second run: %s", err);
	cr_assert_eq(atomic_load(&second->bad), 0);
	for (int p = 0; p < PARTS; p++)
		for (int64_t o = 0; o < hi[p]; o++) {
			int n2 = atomic_load(&second->n[p][o]);
			if (o < com1[p])
				cr_assert_eq(n2, 0,
				             "kafka/t2/%d/%lld was committed by run 1 and handled again", p,
				             (long long)o);
			else
				cr_assert_eq(n2, 1, "kafka/t2/%d/%lld handled %d times by run 2", p,
				             (long long)o, n2);
		}
	int64_t com2[PARTS];
	offsets(bs, "t2", "g2", PARTS, com2, NULL, NULL);
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(com2[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com2[p],
		             (long long)hi[p]);
	free(first);
	free(second);
	t_kafka_stop(k);
}

/* Takes the broker down for OUTAGE_MS once the handler saw OUTAGE_AFTER records. */
static void *outage(void *arg)
{
	counts_t *c = arg;
	for (int waited = 0; waited < RUN_BOUND_MS && atomic_load(&c->total) < OUTAGE_AFTER; waited += 10) {
		if (atomic_load(&c->run_over))
			return NULL;
		usleep(10 * 1000);
	}
	t_kafka_ok(c->outage, "broker down all");
	c->down_at = (int64_t)atomic_load(&c->total);
	c->down_mid = !atomic_load(&c->run_over);
	usleep(OUTAGE_MS * 1000);
	c->up_mid = !atomic_load(&c->run_over);
	t_kafka_ok(c->outage, "broker up all");
	return NULL;
}

Test(kafka_source, broker_outage_loses_nothing, .timeout = 300)
{
	const char *topics[] = {"t3:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t3", RECORDS, 0);
	counts_t *cnt = counts_new();
	cnt->outage = k;
	cnt->down_at = -1;
	spate_conf_t *c = kafka_conf(bs, "t3", "g3");
	set(c, "kafka.max.partition.fetch.bytes", "4096"); /* many fetches: the outage falls mid-run */
	set(c, "max.inflight.records", "2000");
	pthread_t th;
	pthread_create(&th, NULL, outage, cnt);
	char err[1024] = "";
	int rc = run(c, cnt, err, sizeof(err));
	atomic_store(&cnt->run_over, true);
	pthread_join(th, NULL);
	cr_assert(atomic_load(&cnt->total) >= OUTAGE_AFTER);
	/* the outage fell mid-run: the broker went down and came back while the run went on,
	 * with records still to handle (a test whose outage came after the end proves nothing) */
	cr_assert(cnt->down_at >= 0 && cnt->down_mid, "the broker never went down during the run");
	cr_assert_lt(cnt->down_at, RECORDS, "the broker went down after every record was handled");
	cr_assert(cnt->up_mid, "the run ended while the broker was down");
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert(atomic_load(&cnt->n[p][o]) >= 1, "kafka/t3/%d/%d never handled", p, o);
	assert_commits_at_ends(bs, "t3", "g3", -1);
	free(cnt);
	t_kafka_stop(k);
}

Test(kafka_source, commit_below_the_log_start_is_an_error_naming_the_range, .timeout = 300)
{
	const char *topics[] = {"t4:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t4", 2, BIG_VALUE);
	/* commit offset 1 for the group, then push the log start past it */
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bs, "g4");
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, "t4", 0)->offset = 1;
	cr_assert_eq(rd_kafka_commit(rk, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	produce(bs, "t4", BIG_RECORDS, BIG_VALUE);
	int64_t com[1], lo[1];
	offsets(bs, "t4", "g4", 1, com, NULL, lo);
	cr_assert_eq(com[0], 1);
	cr_assert(lo[0] > 1, "the mock kept everything (log start %lld): retention changed?",
	          (long long)lo[0]);

	counts_t *cnt = counts_new();
	char err[1024] = "";
	int rc = run(kafka_conf(bs, "t4", "g4"), cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_ERR_OUT_OF_RANGE, "run: %d %s", rc, err);
	cr_log_info("out of range: %s", err);
	char want[128];
	snprintf(want, sizeof(want), "offsets 1..%lld", (long long)lo[0] - 1);
	cr_assert(strstr(err, "topic t4 partition 0") && strstr(err, want),
	          "error does not name the range: %s", err);
	cr_assert_eq(atomic_load(&cnt->total), 0, "records were handled past a lost range");
	free(cnt);
	t_kafka_stop(k);
}

Test(kafka_source, configuration_errors_name_their_key)
{
	struct {
		const char *k, *v, *want;
	} cases[] = {
	    {"topics", "", "topics"},
	    {"group.id", "", "group.id"},
	    {"kafka.enable.auto.commit", "true", "kafka.enable.auto.commit"},
	    {"kafka.ssl.key.password", "Pa55-never-shown", "kafka.ssl.key.password"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		spate_conf_t *c = kafka_conf("127.0.0.1:1", "t", "g");
		set(c, cases[i].k, cases[i].v);
		if (!strcmp(cases[i].k, "kafka.ssl.key.password"))
			set(c, "kafka.security.protocol", "bogus");
		counts_t *cnt = counts_new();
		char err[1024] = "";
		int rc = run(c, cnt, err, sizeof(err));
		cr_assert_neq(rc, SPATE_OK, "%s=%s accepted", cases[i].k, cases[i].v);
		cr_log_info("%s: %s", cases[i].k, err);
		cr_assert(strstr(err, cases[i].want) || strstr(err, "kafka.security.protocol"), "%s: %s",
		          cases[i].k, err);
		cr_assert(!strstr(err, "Pa55-never-shown"), "a secret in an error: %s", err);
		free(cnt);
	}
	/* store=kafka without source=kafka */
	spate_conf_t *c = spate_conf_new();
	set(c, "source", "gen");
	set(c, "store", "kafka");
	counts_t *cnt = counts_new();
	char err[1024] = "";
	int rc = run(c, cnt, err, sizeof(err));
	cr_assert_neq(rc, SPATE_OK);
	cr_assert(strstr(err, "store") && strstr(err, "source=kafka"), "%s", err);
	free(cnt);
}

/* librdkafka's prefetch counts toward max.inflight.bytes: a bound that cannot hold it is
 * refused at start, naming the minimum and what it is made of. */
Test(kafka_source, a_bound_below_the_prefetch_is_refused_naming_the_minimum)
{
	struct {
		const char *bound, *prefetch_kb;
	} cases[] = {{"1M", NULL}, {"64M", "65536"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		spate_conf_t *c = kafka_conf("127.0.0.1:1", "t", "g");
		set(c, "stop.at.end", "false"); /* no broker is asked anything before the check */
		set(c, "max.inflight.bytes", cases[i].bound);
		if (cases[i].prefetch_kb)
			set(c, "kafka.queued.max.messages.kbytes", cases[i].prefetch_kb);
		counts_t *cnt = counts_new();
		char err[1024] = "";
		int rc = run(c, cnt, err, sizeof(err));
		cr_log_info("max.inflight.bytes=%s: %s", cases[i].bound, err);
		cr_assert_eq(rc, SPATE_ERR_INVALID, "max.inflight.bytes=%s accepted (%d: %s)", cases[i].bound,
		             rc, err);
		cr_assert(strstr(err, "max.inflight.bytes") && strstr(err, "the minimum is") &&
		              strstr(err, "kafka.queued.max.messages.kbytes"),
		          "%s", err);
		free(cnt);
	}
}

typedef struct member {
	counts_t *cnt;
	const char *bs;
	int delay_ms; /* join this much later than the first member (a rebalance mid-run) */
	const char *topic, *group, *store; /* NULL: t5, g5, kafka */
	int rc;
	char err[1024];
} member_t;

static void *member_run(void *arg)
{
	member_t *m = arg;
	usleep((useconds_t)m->delay_ms * 1000);
	spate_conf_t *c = kafka_conf_store(m->bs, m->topic ? m->topic : "t5", m->group ? m->group : "g5",
	                                   m->store ? m->store : "kafka");
	m->rc = run(c, m->cnt, m->err, sizeof(m->err));
	return NULL;
}

static void two_members_share_the_group_run(void)
{
	const char *topics[] = {"t5:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t5", RECORDS, 0);
	/* the first member is slow (about 8 s for everything alone); the second joins once the
	 * first holds every partition, so partitions move mid-run (cooperative revoke) */
	member_t m[2] = {{.cnt = counts_new(), .bs = bs},
	                 {.cnt = counts_new(), .bs = bs, .delay_ms = MEMBER_DELAY_MS}};
	m[0].cnt->sleep_ms = m[1].cnt->sleep_ms = BATCH_SLEEP_MS;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, member_run, &m[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(m[i].rc, SPATE_OK, "member %d: %s", i, m[i].err);
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert(atomic_load(&m[0].cnt->n[p][o]) + atomic_load(&m[1].cnt->n[p][o]) >= 1,
			          "kafka/t5/%d/%d never handled", p, o);
	cr_log_info("member 0 handled %llu, member 1 %llu", (unsigned long long)atomic_load(&m[0].cnt->total),
	            (unsigned long long)atomic_load(&m[1].cnt->total));
	/* the first member gave partitions up mid-run; once released, they are forgotten */
	cr_log_info("member 0: %llu released partitions forgotten, %zu left",
	            (unsigned long long)m[0].cnt->forgotten, m[0].cnt->revoked_left);
	cr_assert_gt(m[0].cnt->forgotten, 0, "member 0 forgot no released partition");
	for (int i = 0; i < 2; i++)
		cr_assert_eq(m[i].cnt->revoked_left, 0,
		             "member %d: released partitions still in the engine (%zu)", i,
		             m[i].cnt->revoked_left);
	assert_commits_at_ends(bs, "t5", "g5", -1);
	free(m[0].cnt);
	free(m[1].cnt);
	t_kafka_stop(k);
}

Test(kafka_source, two_members_share_the_group, .timeout = 300)
{
	two_members_share_the_group_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, two_members_share_the_group_with_kafka_log_level_3, .timeout = 300)
{
	g_kafka_log_level = "3";
	two_members_share_the_group_run();
}

/* store=file keeps checkpoints for one consumer: a second member in the group is refused
 * with an error that says so (the first member, whose partitions the second takes). */
static void a_file_store_with_two_members_is_refused_run(void)
{
	const char *topics[] = {"t9:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t9", RECORDS, 0);
	char dir[256], st[2][300];
	t_mkdtemp(dir, sizeof(dir));
	for (int i = 0; i < 2; i++)
		snprintf(st[i], sizeof(st[i]), "file:%s/ckpt%d", dir, i);
	member_t m[2] = {{.cnt = counts_new(), .bs = bs, .topic = "t9", .group = "g9", .store = st[0]},
	                 {.cnt = counts_new(),
	                  .bs = bs,
	                  .topic = "t9",
	                  .group = "g9",
	                  .store = st[1],
	                  .delay_ms = MEMBER_DELAY_MS}};
	/* slow enough (about 20 s alone) that the second member joins mid-run */
	m[0].cnt->sleep_ms = m[1].cnt->sleep_ms = 4 * BATCH_SLEEP_MS;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, member_run, &m[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_log_info("member 0: %d %s", m[0].rc, m[0].err);
	cr_log_info("member 1: %d %s", m[1].rc, m[1].err);
	cr_assert_eq(m[0].rc, SPATE_ERR_INVALID, "member 0 ran on with another member (%d: %s)", m[0].rc,
	             m[0].err);
	cr_assert(strstr(m[0].err, st[0]) && strstr(m[0].err, "another member") && strstr(m[0].err, "g9") &&
	              strstr(m[0].err, "store=kafka"),
	          "%s", m[0].err);
	free(m[0].cnt);
	free(m[1].cnt);
	t_kafka_stop(k);
}

Test(kafka_source, a_file_store_with_two_members_is_refused, .timeout = 300)
{
	a_file_store_with_two_members_is_refused_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, a_file_store_with_two_members_is_refused_with_kafka_log_level_3, .timeout = 300)
{
	g_kafka_log_level = "3";
	a_file_store_with_two_members_is_refused_run();
}

/* ---- a member killed mid-run: two `spate run` processes in one group ---------------------- */

enum {
	KILL_RECORDS = 200000, /* 12,500 per partition: 10 s or more for one member alone */
	KILL_PER_PART = KILL_RECORDS / PARTS,
	KILL_BOTH_BOUND_MS = 60000,      /* both members must have journalled records by then */
	KILL_SURVIVOR_BOUND_MS = 120000, /* the survivor must exit by then */
};

/* `spate run` as a member of group on topic, journalling to DIR/NAME.<worker>, with its
 * stdout and stderr in DIR/NAME.out and DIR/NAME.err. */
static pid_t spawn_member(const char *bs, const char *dir, const char *name, const char *topic,
                          const char *group)
{
	char a_topic[128], a_group[128], a_handler[512], a_bs[512], a_ll[48], out[512], err[512];
	snprintf(a_ll, sizeof(a_ll), "kafka.log_level=%s", g_kafka_log_level ? g_kafka_log_level : "");
	snprintf(a_topic, sizeof(a_topic), "topics=%s", topic);
	snprintf(a_group, sizeof(a_group), "group.id=%s", group);
	snprintf(a_handler, sizeof(a_handler), "handler=journal:%s/%s", dir, name);
	snprintf(a_bs, sizeof(a_bs), "kafka.bootstrap.servers=%s", bs);
	snprintf(out, sizeof(out), "%s/%s.out", dir, name);
	snprintf(err, sizeof(err), "%s/%s.err", dir, name);
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=kafka",
	                      "-X",
	                      a_topic,
	                      "-X",
	                      a_group,
	                      "-X",
	                      "store=kafka",
	                      "-X",
	                      "stop.at.end=true",
	                      "-X",
	                      a_handler,
	                      "-X",
	                      a_bs,
	                      "-X",
	                      "kafka.session.timeout.ms=6000",
	                      "-X",
	                      "kafka.heartbeat.interval.ms=500",
	                      "-X",
	                      "checkpoint.interval.ms=200",
	                      "-X",
	                      /* at most 2 workers x 100 records per 10 ms: one member alone takes
	                       * 10 s or more for the topic, so the second one joins the group
	                       * while there is work left, however loaded the machine is */
	                      "journal.sleep.ms=10",
	                      "-X",
	                      "log.level=info",
	                      g_kafka_log_level ? "-X" : NULL,
	                      a_ll,
	                      NULL};
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

/* Bytes in the journals of member name (0 when none yet). */
static long long journal_bytes(const char *dir, const char *name)
{
	long long sum = 0;
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	for (struct dirent *de; (de = readdir(d));) {
		if (!journal_of(de->d_name, name))
			continue;
		char path[1024];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!stat(path, &st))
			sum += st.st_size;
	}
	closedir(d);
	return sum;
}

/* Mark every "kafka/TOPIC/P OFFSET" line of member name's journals in seen[P][OFFSET];
 * lines of other partitions or out of range count in *bad. Returns the lines read. */
static long long journal_read(const char *dir, const char *name, const char *topic,
                              uint8_t (*seen)[KILL_PER_PART], long long *bad)
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
			if (*end || p < 0 || p >= PARTS || off < 0 || off >= KILL_PER_PART)
				(*bad)++;
			else
				seen[p][off] = 1;
		}
		free(buf);
	}
	closedir(d);
	return lines;
}

static void a_killed_member_s_partitions_are_taken_over_run(void)
{
	const char *topics[] = {"t6:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t6", KILL_RECORDS, 0);
	char dir[256];
	t_mkdtemp(dir, sizeof(dir));
	pid_t a = spawn_member(bs, dir, "a", "t6", "g6");
	pid_t b = spawn_member(bs, dir, "b", "t6", "g6");
	/* both have handled records (their journals grew) before one is killed */
	long long ja = 0, jb = 0;
	for (int waited = 0; waited < KILL_BOTH_BOUND_MS; waited += 10) {
		ja = journal_bytes(dir, "a");
		jb = journal_bytes(dir, "b");
		if (ja > 0 && jb > 0)
			break;
		usleep(10 * 1000);
	}
	int st_b = -1, st_a = -1;
	bool b_over = waitpid(b, &st_b, WNOHANG) == b;
	bool a_over = waitpid(a, &st_a, WNOHANG) == a;
	if (!(ja > 0 && jb > 0) || b_over || a_over) {
		kill(a, SIGKILL);
		kill(b, SIGKILL);
		if (!a_over)
			waitpid(a, NULL, 0);
		if (!b_over)
			waitpid(b, NULL, 0);
		kt_print_tail(dir, "a.err");
		kt_print_tail(dir, "b.err");
		cr_assert_fail("both members did not handle records while both ran (journal bytes a %lld, "
		               "b %lld; a %s %d, b %s %d)",
		               ja, jb, a_over ? "exited with status" : "ran", a_over ? st_a : 0,
		               b_over ? "exited with status" : "ran", b_over ? st_b : 0);
	}
	kill(b, SIGKILL);
	st_b = kt_wait_exit(b, KILL_SURVIVOR_BOUND_MS);
	cr_assert_eq(st_b, 128 + SIGKILL, "the killed member: status %d", st_b);
	cr_log_info("killed b after journal bytes a %lld, b %lld", ja, journal_bytes(dir, "b"));
	int st = kt_wait_exit(a, KILL_SURVIVOR_BOUND_MS);
	if (st != 0) {
		kt_print_tail(dir, "a.err");
		cr_assert_fail("the survivor exited with %d (-1: not within %d ms)", st,
		               KILL_SURVIVOR_BOUND_MS);
	}
	/* every record in some journal */
	uint8_t(*seen)[KILL_PER_PART] = calloc(PARTS, sizeof(*seen));
	cr_assert(seen);
	long long bad = 0;
	long long la = journal_read(dir, "a", "t6", seen, &bad);
	long long lb = journal_read(dir, "b", "t6", seen, &bad);
	cr_log_info("journal lines: survivor %lld, killed %lld (%lld records)", la, lb,
	            (long long)KILL_RECORDS);
	cr_assert_eq(bad, 0, "%lld journal lines name another partition or offset", bad);
	cr_assert(lb > 0, "the killed member handled nothing");
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < KILL_PER_PART; o++)
			cr_assert(seen[p][o], "kafka/t6/%d/%d is in no journal", p, o);
	/* and the survivor ended only once the group's commits reached every end */
	assert_commits_at_ends(bs, "t6", "g6", KILL_PER_PART);
	free(seen);
	t_rmrf(dir);
	t_kafka_stop(k);
}

Test(kafka_source, a_killed_member_s_partitions_are_taken_over, .timeout = 300)
{
	a_killed_member_s_partitions_are_taken_over_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, a_killed_member_s_partitions_are_taken_over_with_kafka_log_level_3, .timeout = 300)
{
	g_kafka_log_level = "3";
	a_killed_member_s_partitions_are_taken_over_run();
}

/* ---- injected Fetch and OffsetCommit errors ------------------------------------------- */

enum { FAULT_AFTER = 2000 }; /* records handled before the errors are injected */

typedef struct faults {
	counts_t *cnt;
	t_kafka_t *k;
	_Atomic bool run_over;
	_Atomic bool injected;
} faults_t;

static void *inject(void *arg)
{
	faults_t *f = arg;
	for (int waited = 0; waited < RUN_BOUND_MS && atomic_load(&f->cnt->total) < FAULT_AFTER;
	     waited += 10) {
		if (atomic_load(&f->run_over))
			return NULL;
		usleep(10 * 1000);
	}
	/* librdkafka refreshes the leader and fetches again; a failed commit comes back to the
	 * engine as a failed checkpoint save, which it retries on the next tick */
	t_kafka_ok(f->k, "error Fetch NOT_LEADER_FOR_PARTITION 5");
	t_kafka_ok(f->k, "error OffsetCommit COORDINATOR_NOT_AVAILABLE 3");
	usleep(1000 * 1000);
	t_kafka_ok(f->k, "error OffsetCommit REBALANCE_IN_PROGRESS 3");
	t_kafka_ok(f->k, "error Fetch UNKNOWN_TOPIC_OR_PART 3");
	atomic_store(&f->injected, true);
	return NULL;
}

static void injected_fetch_and_commit_errors_lose_nothing_run(void)
{
	const char *topics[] = {"t7:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t7", RECORDS, 0);
	counts_t *cnt = counts_new();
	cnt->sleep_ms = 20; /* about 5 s in all: the errors fall mid-run */
	spate_conf_t *c = kafka_conf(bs, "t7", "g7");
	set(c, "kafka.max.partition.fetch.bytes", "4096");
	set(c, "max.inflight.records", "2000");
	faults_t f = {.cnt = cnt, .k = k};
	pthread_t th;
	pthread_create(&th, NULL, inject, &f);
	char err[1024] = "";
	int rc = run(c, cnt, err, sizeof(err));
	atomic_store(&f.run_over, true);
	pthread_join(th, NULL);
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	cr_assert(atomic_load(&f.injected), "the run ended before the errors were injected (%llu records)",
	          (unsigned long long)atomic_load(&cnt->total));
	cr_log_info("handled %llu records, %llu failed checkpoint saves (retried)",
	            (unsigned long long)atomic_load(&cnt->total), (unsigned long long)cnt->store_errors);
	/* the injected commit errors reached the engine as failed saves, and were retried (the
	 * committed offsets below are at the ends) */
	/* (REBALANCE_IN_PROGRESS is the group's answer, not a failure: a deferred save) */
	cr_assert_gt(cnt->store_errors + cnt->store_busy, 0,
	             "no failed or deferred checkpoint save: the commit errors were not injected");
	cr_assert_eq(atomic_load(&cnt->bad), 0);
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert(atomic_load(&cnt->n[p][o]) >= 1, "kafka/t7/%d/%d never handled", p, o);
	assert_commits_at_ends(bs, "t7", "g7", -1);
	free(cnt);
	t_kafka_stop(k);
}

Test(kafka_source, injected_fetch_and_commit_errors_lose_nothing, .timeout = 300)
{
	injected_fetch_and_commit_errors_lose_nothing_run();
}

/* the same with kafka.log_level=3: librdkafka's own log level changes nothing */
Test(kafka_source, injected_fetch_and_commit_errors_lose_nothing_with_kafka_log_level_3, .timeout = 300)
{
	g_kafka_log_level = "3";
	injected_fetch_and_commit_errors_lose_nothing_run();
}
