/* test_kafka_source.c - source=kafka with store=kafka against mock-kafka: every record
 * of a 16-partition topic is handled and the group's committed offsets end at the
 * partitions' ends; a stopped run resumes after its commits without handling a
 * committed record again; a broker outage mid-run loses nothing; a commit below the log
 * start stops the run with an error naming topic, partition and range; configuration
 * errors name their key. */
#include "engine/internal.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/kafka.h"
#include "tests/common/util.h"

TestSuite(kafka_source, .fini = t_kafka_fini);

enum {
	PARTS = 16,
	RECORDS = 20000,
	MAX_OFF = 4096,            /* offsets per partition the counters hold */
	PRODUCE_FLUSH_MS = 60000,  /* bound for the producer's delivery reports */
	RUN_BOUND_MS = 180000,     /* a run that takes longer is stopped and fails the test */
	REQUEST_MS = 10000,        /* bound of the test's own metadata / committed requests */
	OUTAGE_AFTER = 5000,       /* records handled before the broker goes down */
	OUTAGE_MS = 3000,          /* how long it stays down */
	BIG_VALUE = 100000,        /* bytes per record of the retention test */
	BIG_RECORDS = 80,          /* 8 MB into one partition: past the mock's ~5 MiB */
	MEMBER_DELAY_MS = 5000,    /* the second member joins after the first got everything */
	BATCH_SLEEP_MS = 100,      /* a slow handler, per batch */
};

/* ---- handler: counts per (partition, offset) ---------------------------------------- */

typedef struct counts {
	_Atomic uint16_t n[PARTS][MAX_OFF];
	_Atomic uint64_t total;
	_Atomic uint64_t bad; /* records outside the table or with a wrong key/value */
	uint64_t stop_after;  /* 0 = never; else spate_engine_stop once total reaches it */
	_Atomic(spate_engine_t *) eng;
	_Atomic bool stopped;
	t_kafka_t *outage;    /* take the broker down once OUTAGE_AFTER records were handled */
	_Atomic bool run_over; /* the run returned: the outage thread stops waiting */
	int sleep_ms;          /* per batch: a slow handler */
} counts_t;

static counts_t *g_counts;

static int count_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	(void)wctx;
	counts_t *c = opaque;
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
	cr_assert_eq(rd_kafka_conf_set(c, "bootstrap.servers", bs, err, sizeof(err)), RD_KAFKA_CONF_OK, "%s", err);
	if (group)
		cr_assert_eq(rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)), RD_KAFKA_CONF_OK, "%s", err);
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
			    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			    RD_KAFKA_V_KEY(key, strlen(key)),
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

static void set(spate_conf_t *c, const char *k, const char *v)
{
	char err[512];
	cr_assert_eq(spate_conf_set(c, k, v, err, sizeof(err)), SPATE_CONF_OK, "%s=%s: %s", k, v, err);
}

static spate_conf_t *kafka_conf(const char *bs, const char *topic, const char *group)
{
	spate_conf_t *c = spate_conf_new();
	set(c, "source", "kafka");
	set(c, "topics", topic);
	set(c, "group.id", group);
	set(c, "store", "kafka");
	set(c, "stop.at.end", "true");
	set(c, "kafka.bootstrap.servers", bs);
	set(c, "kafka.session.timeout.ms", "6000");
	set(c, "kafka.heartbeat.interval.ms", "500");
	set(c, "max.concurrency", "4");
	set(c, "checkpoint.interval.ms", "200");
	set(c, "log.level", "warn");
	return c;
}

/* Run to the end (or a stop); the run's result and error text. */
static int run(spate_conf_t *c, counts_t *cnt, char *err, size_t size)
{
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "count", .handle = count_handle, .opaque = cnt};
	spate_engine_t *e = spate_engine_new(c, &h, err, size);
	cr_assert(e, "engine: %s", err);
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
	cr_assert(!atomic_load(&w.fired), "the run did not end within %d ms", RUN_BOUND_MS);
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
	int rc = run(kafka_conf(bs, "t1", "g1"), cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	cr_assert_eq(atomic_load(&cnt->bad), 0, "records with a wrong key or position");
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert_eq(atomic_load(&cnt->n[p][o]), 1, "kafka/t1/%d/%d handled %d times", p, o,
			             atomic_load(&cnt->n[p][o]));
	cr_assert_eq(atomic_load(&cnt->total), RECORDS);
	int64_t com[PARTS], hi[PARTS];
	offsets(bs, "t1", "g1", PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++) {
		cr_assert_eq(hi[p], RECORDS / PARTS);
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com[p],
		             (long long)hi[p]);
	}
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
		cr_assert(com1[p] >= 0 && com1[p] <= hi[p], "partition %d: committed %lld", p, (long long)com1[p]);
		committed += com1[p];
		/* a commit never passes a record that was not handled */
		for (int64_t o = 0; o < com1[p]; o++)
			cr_assert(atomic_load(&first->n[p][o]) >= 1, "kafka/t2/%d/%lld committed but not handled", p,
			          (long long)o);
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
				cr_assert_eq(n2, 0, "kafka/t2/%d/%lld was committed by run 1 and handled again", p, (long long)o);
			else
				cr_assert_eq(n2, 1, "kafka/t2/%d/%lld handled %d times by run 2", p, (long long)o, n2);
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
	usleep(OUTAGE_MS * 1000);
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
	cr_assert_eq(rc, SPATE_OK, "run: %s", err);
	for (int p = 0; p < PARTS; p++)
		for (int o = 0; o < RECORDS / PARTS; o++)
			cr_assert(atomic_load(&cnt->n[p][o]) >= 1, "kafka/t3/%d/%d never handled", p, o);
	int64_t com[PARTS], hi[PARTS];
	offsets(bs, "t3", "g3", PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com[p],
		             (long long)hi[p]);
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
	cr_assert(lo[0] > 1, "the mock kept everything (log start %lld): retention changed?", (long long)lo[0]);

	counts_t *cnt = counts_new();
	char err[1024] = "";
	int rc = run(kafka_conf(bs, "t4", "g4"), cnt, err, sizeof(err));
	cr_assert_eq(rc, SPATE_ERR_OUT_OF_RANGE, "run: %d %s", rc, err);
	cr_log_info("out of range: %s", err);
	char want[128];
	snprintf(want, sizeof(want), "offsets 1..%lld", (long long)lo[0] - 1);
	cr_assert(strstr(err, "topic t4 partition 0") && strstr(err, want), "error does not name the range: %s", err);
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
		cr_assert(strstr(err, cases[i].want) || strstr(err, "kafka.security.protocol"), "%s: %s", cases[i].k,
		          err);
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

typedef struct member {
	counts_t *cnt;
	const char *bs;
	int delay_ms; /* join this much later than the first member (a rebalance mid-run) */
	int rc;
	char err[1024];
} member_t;

static void *member_run(void *arg)
{
	member_t *m = arg;
	usleep((useconds_t)m->delay_ms * 1000);
	spate_conf_t *c = kafka_conf(m->bs, "t5", "g5");
	m->rc = run(c, m->cnt, m->err, sizeof(m->err));
	return NULL;
}

Test(kafka_source, two_members_share_the_group, .timeout = 300)
{
	const char *topics[] = {"t5:16", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	produce(bs, "t5", RECORDS, 0);
	/* the first member is slow (about 8 s for everything alone); the second joins once the
	 * first holds every partition, so partitions move mid-run (cooperative revoke) */
	member_t m[2] = {{.cnt = counts_new(), .bs = bs}, {.cnt = counts_new(), .bs = bs, .delay_ms = MEMBER_DELAY_MS}};
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
	int64_t com[PARTS], hi[PARTS];
	offsets(bs, "t5", "g5", PARTS, com, hi, NULL);
	for (int p = 0; p < PARTS; p++)
		cr_assert_eq(com[p], hi[p], "partition %d: committed %lld, end %lld", p, (long long)com[p],
		             (long long)hi[p]);
	free(m[0].cnt);
	free(m[1].cnt);
	t_kafka_stop(k);
}
