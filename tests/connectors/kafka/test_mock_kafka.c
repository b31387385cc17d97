/* test_mock_kafka.c - the mock-kafka test tool does what the Kafka tests rely on:
 * it starts, creates topics with the asked partition counts, serves produce and fetch,
 * answers every command with ok or error, its faults take effect, and it stops cleanly
 * on SIGTERM and at end of input with --stdin. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

TestSuite(mock_kafka, .fini = t_kafka_fini);

enum {
	PARTS = 16,
	PER_PART = 25, /* messages produced into each partition */
	/* a produce that must fail while brokers are down gives up after this */
	SHORT_TIMEOUT_MS = 1500,
};

Test(mock_kafka, topics_produce_and_read_back)
{
	const char *topics[] = {"sixteen:16", "one:1:1", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	cr_assert_eq(kt_partitions(bs, "sixteen"), PARTS);
	cr_assert_eq(kt_partitions(bs, "one"), 1);

	rd_kafka_t *p = kt_producer(bs, NULL);
	for (int part = 0; part < PARTS; part++)
		for (int i = 0; i < PER_PART; i++) {
			char key[32], val[64];
			snprintf(key, sizeof(key), "k%d", i);
			snprintf(val, sizeof(val), "p%d-m%d", part, i);
			cr_assert_eq(kt_produce_sync(p, "sixteen", part, key, val),
			             RD_KAFKA_RESP_ERR_NO_ERROR);
		}
	rd_kafka_destroy(p);

	cr_assert_eq(kt_count(bs, "sixteen"), PARTS * PER_PART);
	kt_msg_t *m = kt_consume(bs, "sixteen", PARTS * PER_PART);
	int next[PARTS] = {0}; /* per partition, messages come in produce order */
	for (size_t i = 0; i < PARTS * PER_PART; i++) {
		int part = m[i].partition;
		cr_assert(part >= 0 && part < PARTS);
		char want[64], key[32];
		snprintf(want, sizeof(want), "p%d-m%d", part, next[part]);
		snprintf(key, sizeof(key), "k%d", next[part]);
		cr_assert_str_eq(m[i].value, want);
		cr_assert_str_eq(m[i].key, key);
		cr_assert_eq(m[i].offset, next[part]);
		next[part]++;
	}
	kt_free(m, PARTS * PER_PART);
	cr_assert_eq(t_kafka_stop(k), 0, "mock-kafka did not exit 0 on SIGTERM");
}

Test(mock_kafka, commands_answer)
{
	t_kafka_t *k = t_kafka_start(2, NULL);
	char ans[512];
	const char *ok[] = {"broker down 1",
	                    "broker up 1",
	                    "broker down all",
	                    "broker up all",
	                    "rtt 2 5",
	                    "rtt all 0",
	                    "error Produce NOT_LEADER_FOR_PARTITION 2",
	                    "error 1 6",
	                    "error OffsetCommit REBALANCE_IN_PROGRESS",
	                    "clear",
	                    "reset",
	                    "topic create later 8",
	                    "topic create later2 3 2",
	                    "leader later 0 2",
	                    "   # a comment gets no answer; the next line does",
	                    "error fetch _transport 1",
	                    "delay SyncGroup all 100",
	                    "delay 14 2 50 3",
	                    "clear"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strchr(ok[i], '#')) { /* no answer: send it along with the next command */
			t_kafka_ok(k, "%s\nbroker up 2", ok[i]);
			continue;
		}
		cr_assert_eq(t_kafka_cmd(k, ans, sizeof(ans), "%s", ok[i]), 0, "\"%s\" answered \"%s\"",
		             ok[i], ans);
		cr_assert_str_eq(ans, "ok");
	}
	const char *bad[] = {"broker down 3",
	                     "broker down 0",
	                     "broker sideways 1",
	                     "rtt 1",
	                     "rtt 1 -5",
	                     "error Nope NOT_LEADER_FOR_PARTITION",
	                     "error Produce NOPE",
	                     "error Produce 6 0",
	                     "error Produce",
	                     "topic create later 8",
	                     "topic create x 0",
	                     "topic create x 1 3",
	                     "topic delete later",
	                     "leader later 0 9",
	                     "delay SyncGroup 3 100",
	                     "delay SyncGroup all 0",
	                     "delay Nope all 100",
	                     "delay SyncGroup all 100 0",
	                     "frobnicate"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(t_kafka_cmd(k, ans, sizeof(ans), "%s", bad[i]), -1, "\"%s\" answered \"%s\"",
		             bad[i], ans);
		cr_assert(!strncmp(ans, "error: ", 7), "\"%s\" answered \"%s\"", bad[i], ans);
	}
	cr_assert_eq(kt_partitions(t_kafka_bootstrap(k), "later"), 8);
	cr_assert_eq(kt_partitions(t_kafka_bootstrap(k), "later2"), 3);
	cr_assert_eq(t_kafka_cmd(k, ans, sizeof(ans), "quit"), 0);
	cr_assert_eq(t_kafka_stop(k), 0, "mock-kafka did not exit 0 after quit");
}

Test(mock_kafka, broker_down_then_up)
{
	const char *topics[] = {"t:4", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	char tmo[16];
	snprintf(tmo, sizeof(tmo), "%d", SHORT_TIMEOUT_MS);
	/* a short reconnect backoff: librdkafka times messages out and reconnects only when
	 * a broker thread wakes, and by default it sleeps up to 10 s between attempts */
	const char *conf[] = {"message.timeout.ms", tmo, "reconnect.backoff.max.ms", "500", NULL};
	rd_kafka_t *p = kt_producer(bs, conf);
	cr_assert_eq(kt_produce_sync(p, "t", 0, "a", "before"), RD_KAFKA_RESP_ERR_NO_ERROR);

	t_kafka_ok(k, "broker down all");
	rd_kafka_resp_err_t e = kt_produce_sync(p, "t", 0, "a", "while-down");
	cr_assert_neq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "a produce succeeded with every broker down");
	cr_assert_eq(e, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "while down: %s", rd_kafka_err2name(e));

	t_kafka_ok(k, "broker up all");
	/* reconnecting may take a few backoffs; the message timeout bounds each try */
	enum { TRIES = 20 };
	for (int i = 0; i < TRIES && (e = kt_produce_sync(p, "t", 0, "a", "after")); i++)
		;
	cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "after up: %s", rd_kafka_err2name(e));
	rd_kafka_destroy(p);

	cr_assert_eq(kt_count(bs, "t"), 2, "only \"before\" and \"after\" are stored");
	kt_msg_t *m = kt_consume(bs, "t", 2);
	cr_assert_str_eq(m[0].value, "before");
	cr_assert_str_eq(m[1].value, "after");
	kt_free(m, 2);
	cr_assert_eq(t_kafka_stop(k), 0);
}

Test(mock_kafka, request_errors_take_effect_and_clear)
{
	const char *topics[] = {"t:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	/* not idempotent, no retries: the injected error reaches the delivery report */
	const char *conf[] = {"enable.idempotence", "false", "retries", "0", "acks", "all", NULL};
	rd_kafka_t *p = kt_producer(bs, conf);
	cr_assert_eq(kt_produce_sync(p, "t", 0, NULL, "warm-up"), RD_KAFKA_RESP_ERR_NO_ERROR);

	t_kafka_ok(k, "error Produce NOT_ENOUGH_REPLICAS 1");
	rd_kafka_resp_err_t e = kt_produce_sync(p, "t", 0, NULL, "refused");
	cr_assert_eq(e, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "injected error: %s", rd_kafka_err2name(e));
	e = kt_produce_sync(p, "t", 0, NULL, "second");
	cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "COUNT 1 failed more: %s", rd_kafka_err2name(e));

	t_kafka_ok(k, "error 0 19 3"); /* by number: Produce, NOT_ENOUGH_REPLICAS */
	t_kafka_ok(k, "clear");
	e = kt_produce_sync(p, "t", 0, NULL, "third");
	cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "clear kept errors: %s", rd_kafka_err2name(e));
	rd_kafka_destroy(p);

	cr_assert_eq(kt_count(bs, "t"), 3);
	kt_msg_t *m = kt_consume(bs, "t", 3);
	cr_assert_str_eq(m[0].value, "warm-up");
	cr_assert_str_eq(m[1].value, "second");
	cr_assert_str_eq(m[2].value, "third");
	kt_free(m, 3);
	cr_assert_eq(t_kafka_stop(k), 0);
}

Test(mock_kafka, cli_contract)
{
	char *out = NULL, *err = NULL;
	/* --stdin: end of input stops it (t_run gives /dev/null), after the bootstrap line */
	char *const lifeline[] = {
	    (char *)t_kafka_tool(), "--stdin", "--brokers", "2", "--topic", "x:3", NULL};
	cr_assert_eq(t_run(lifeline, &out, &err), 0, "stderr: %s", err);
	cr_assert(!strncmp(out, "127.0.0.1:", 10), "stdout: %s", out);
	cr_assert_eq(strchr(out, '\n') - out + 1, (long)strlen(out), "one line: %s", out);
	cr_assert_not_null(strchr(out, ','), "two brokers: %s", out);
	free(out);
	free(err);
	/* bad arguments: exit 2 with a message naming the option */
	const char *const bad[][4] = {{"--brokers", "0", NULL},
	                              {"--topic", "x", NULL},
	                              {"--topic", "x:2:4", "--stdin"}, /* 3 brokers by default */
	                              {"--frob", NULL}};
	const char *named[] = {"--brokers", "--topic", "--topic", "--frob"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[6] = {(char *)t_kafka_tool()};
		for (int j = 0; j < 4 && bad[i][j]; j++)
			argv[j + 1] = (char *)bad[i][j];
		cr_assert_eq(t_run(argv, &out, &err), 2, "case %zu", i);
		cr_assert_not_null(strstr(err, named[i]), "stderr: %s", err);
		free(out);
		free(err);
	}
}
