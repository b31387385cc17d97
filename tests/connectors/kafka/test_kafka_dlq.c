/* test_kafka_dlq.c - dlq=kafka:TOPIC through the public API, as an embedder runs it:
 * poison records reach the DLQ topic with their key, value and headers and the spate.*
 * headers, and the healthy ones do not; while every broker is down the DLQ write fails,
 * is reported, nothing counts as dead-lettered and the run does not end; once the
 * brokers are back every poison record is in the topic and the run ends (guarantee 5:
 * nothing is lost silently). */
#include "engine/engine.h"
#include <spate/spate.h>

#include <criterion/criterion.h>
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
#include "tests/connectors/kafka/ktest.h"

TestSuite(kafka_dlq, .fini = t_kafka_fini);

enum {
	RECORDS = 2000,
	POISON_EVERY = 20, /* record i is poison when i % POISON_EVERY == 0 */
	POISONED = RECORDS / POISON_EVERY,
	PARTS = 2, /* push partitions */
	KEYS = 31,
	CHUNK = 100, /* records per spate_push */
	/* bounded waits (generous: ASan on a loaded machine) */
	RUN_END_MS = 120000,
	LOG_WAIT_MS = 60000,
	POLL_MS = 20,
	OUTAGE_TIMEOUT_MS = 1000, /* kafka.message.timeout.ms during the outage */
};

typedef struct run {
	spate_engine_t *e;
	int rc;
	char err[512];
	_Atomic int done;
} run_t;

static void *run_main(void *arg)
{
	run_t *r = arg;
	r->rc = spate_engine_run(r->e, r->err, sizeof(r->err));
	atomic_store(&r->done, 1);
	return NULL;
}

static spate_engine_t *start_engine(const char *bs, const char *extra_key, const char *extra_val)
{
	spate_conf_t *c = spate_conf_new();
	const char *kv[] = {"source",
	                    "push",
	                    "push.partitions",
	                    "2",
	                    "handler",
	                    "fail-if:POISON",
	                    "report.item.failures",
	                    "true",
	                    "max.retry.attempts",
	                    "0",
	                    "dlq",
	                    "kafka:dead",
	                    "kafka.bootstrap.servers",
	                    bs,
	                    "stop.at.end",
	                    "true",
	                    "retry.backoff.ms",
	                    "50",
	                    "retry.backoff.max.ms",
	                    "500",
	                    "max.concurrency",
	                    "2",
	                    extra_key,
	                    extra_val,
	                    NULL};
	char err[512];
	for (size_t i = 0; kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s",
		             kv[i], err);
	spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	return e;
}

/* Push records 0..RECORDS-1 (partition i % PARTS) with one header each, then close. */
static void push_all(spate_engine_t *e)
{
	static char keys[CHUNK][16], vals[CHUNK][32], hv[CHUNK][32];
	spate_header_t hdr[CHUNK];
	spate_push_record_t recs[CHUNK];
	for (int p = 0; p < PARTS; p++) {
		size_t n = 0;
		for (size_t i = (size_t)p; i < RECORDS; i += PARTS) {
			snprintf(keys[n], sizeof(keys[n]), "k%zu", i % KEYS);
			snprintf(vals[n], sizeof(vals[n]), i % POISON_EVERY ? "ok-%zu" : "POISON-%zu", i);
			snprintf(hv[n], sizeof(hv[n]), "a%zu", i);
			hdr[n] = (spate_header_t){"app", 3, hv[n], strlen(hv[n])};
			recs[n] = (spate_push_record_t){.key = keys[n],
			                                .key_len = strlen(keys[n]),
			                                .value = vals[n],
			                                .value_len = strlen(vals[n]),
			                                .headers = &hdr[n],
			                                .header_cnt = 1};
			if (++n == CHUNK || i + PARTS >= RECORDS) {
				size_t off = 0;
				int64_t deadline = sp_now_ms() + RUN_END_MS;
				while (off < n) {
					int got = spate_push(e, p, recs + off, n - off);
					cr_assert(got >= 0, "spate_push: %d", got);
					off += (size_t)got;
					if (off < n) {
						cr_assert(sp_now_ms() < deadline, "push stalled");
						t_sleep_ms(POLL_MS);
					}
				}
				n = 0;
			}
		}
	}
	spate_push_close(e);
}

static void join_run(pthread_t th, run_t *r)
{
	int64_t deadline = sp_now_ms() + RUN_END_MS;
	while (!atomic_load(&r->done) && sp_now_ms() < deadline)
		t_sleep_ms(POLL_MS);
	if (!atomic_load(&r->done)) {
		spate_engine_stop(r->e);
		spate_engine_stop(r->e);
	}
	pthread_join(th, NULL);
	cr_assert(atomic_load(&r->done), "the run did not end within %d ms", RUN_END_MS);
	cr_assert_eq(r->rc, SPATE_OK, "run: %s", r->err);
}

/* The DLQ topic holds every poison record (at least once; with `exact`, exactly once) and
 * nothing else, each with its key, value, header and the spate.* headers. */
static void check_dlq(const char *bs, bool exact)
{
	int64_t n = kt_count(bs, "dead");
	if (exact)
		cr_assert_eq(n, POISONED, "the DLQ topic holds %lld records", (long long)n);
	else
		cr_assert(n >= POISONED, "the DLQ topic holds %lld records", (long long)n);
	kt_msg_t *m = kt_consume(bs, "dead", (size_t)n);
	unsigned seen[RECORDS] = {0};
	for (int64_t i = 0; i < n; i++) {
		size_t id;
		cr_assert_eq(sscanf(m[i].value, "POISON-%zu", &id), 1, "a healthy record in the DLQ: %s",
		             (char *)m[i].value);
		cr_assert(id < RECORDS && id % POISON_EVERY == 0);
		seen[id]++;
		char want[32];
		snprintf(want, sizeof(want), "k%zu", id % KEYS);
		cr_assert_str_eq(m[i].key, want);
		const kt_hdr_t *h = kt_header(&m[i], "app");
		snprintf(want, sizeof(want), "a%zu", id);
		cr_assert(h && h->value, "record %zu lost its header", id);
		cr_assert_str_eq(h->value, want);
		h = kt_header(&m[i], "spate.condition");
		cr_assert(h && h->value);
		cr_assert_str_eq(h->value, "RetryAttemptsExhausted");
		h = kt_header(&m[i], "spate.source");
		cr_assert(h && h->value);
		cr_assert_str_eq(h->value, "push");
		h = kt_header(&m[i], "spate.error");
		cr_assert(h && h->value && strstr(h->value, "POISON"), "spate.error: %s",
		          h ? (char *)h->value : "");
		h = kt_header(&m[i], "spate.id");
		cr_assert(h && h->value && !strncmp(h->value, "push/", 5), "spate.id: %s",
		          h ? (char *)h->value : "");
	}
	for (size_t id = 0; id < RECORDS; id += POISON_EVERY)
		cr_assert(seen[id] >= 1, "poison record %zu is not in the DLQ", id);
	kt_free(m, (size_t)n);
}

Test(kafka_dlq, poison_records_reach_the_topic)
{
	const char *topics[] = {"dead:8", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	run_t r = {.e = start_engine(bs, NULL, NULL)};
	pthread_t th;
	pthread_create(&th, NULL, run_main, &r);
	push_all(r.e);
	join_run(th, &r);
	spate_summary_t s;
	spate_engine_summary(r.e, &s);
	spate_engine_destroy(r.e);
	cr_assert_eq(s.records, RECORDS);
	cr_assert_eq(s.dlq, POISONED);
	cr_assert_eq(s.dropped, 0);
	check_dlq(bs, true);
	cr_assert_eq(t_kafka_stop(k), 0);
}

/* Does the file at path contain needle? */
static bool file_has(const char *path, const char *needle)
{
	char *s = t_read_file(path, NULL);
	bool has = s && strstr(s, needle);
	free(s);
	return has;
}

Test(kafka_dlq, outage_holds_records_until_the_brokers_return)
{
	const char *topics[] = {"dead:8", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	char tmo[16];
	snprintf(tmo, sizeof(tmo), "%d", OUTAGE_TIMEOUT_MS);
	run_t r = {.e = start_engine(bs, "kafka.message.timeout.ms", tmo)};

	/* the engine's stderr goes to a file: the failed DLQ writes must be reported there */
	char logpath[] = "/tmp/spate-kafka-dlq-XXXXXX";
	int logfd = mkstemp(logpath);
	cr_assert(logfd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(logfd, 2);

	t_kafka_ok(k, "broker down all");
	pthread_t th;
	pthread_create(&th, NULL, run_main, &r);
	push_all(r.e);
	int64_t deadline = sp_now_ms() + LOG_WAIT_MS;
	bool reported = false;
	while (!(reported = file_has(logpath, "dlq: cannot write")) && sp_now_ms() < deadline)
		t_sleep_ms(POLL_MS);
	spate_summary_t s;
	spate_engine_summary(r.e, &s);
	bool ended_early = atomic_load(&r.done);

	t_kafka_ok(k, "broker up all");
	join_run(th, &r);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(logfd);
	char *log = t_read_file(logpath, NULL);
	unlink(logpath);

	cr_assert(reported, "no failed DLQ write was reported within %d ms; stderr:\n%s", LOG_WAIT_MS, log);
	cr_assert_not_null(strstr(log, "kafka:dead"), "the report does not name the DLQ:\n%s", log);
	cr_assert_eq(s.dlq, 0, "%llu records counted as dead-lettered while every broker was down",
	             (unsigned long long)s.dlq);
	cr_assert_eq(s.dropped, 0);
	cr_assert(s.records < RECORDS, "every record DONE while the DLQ was unreachable");
	cr_assert(!ended_early, "the run ended while the DLQ was unreachable");
	free(log);

	spate_engine_summary(r.e, &s);
	spate_engine_destroy(r.e);
	cr_assert_eq(s.records, RECORDS);
	cr_assert_eq(s.dlq, POISONED);
	cr_assert_eq(s.dropped, 0);
	check_dlq(bs, false); /* a write that timed out while the brokers came back may have landed too */
	cr_assert_eq(t_kafka_stop(k), 0);
}

/* A poison record larger than the DLQ target takes (kafka.message.max.bytes) goes there
 * as metadata only, with condition MaximumPayloadSizeExceeded; a small one goes whole. */
Test(kafka_dlq, oversized_dead_letter_goes_as_metadata_only)
{
	const char *topics[] = {"dead:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	run_t r = {.e = start_engine(bs, "kafka.message.max.bytes", "20000")};
	pthread_t th;
	pthread_create(&th, NULL, run_main, &r);
	static char big[50000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "POISON-big", 10);
	spate_push_record_t recs[2] = {
	    {.key = "kbig", .key_len = 4, .value = big, .value_len = sizeof(big)},
	    {.key = "ksmall", .key_len = 6, .value = "POISON-small", .value_len = 12},
	};
	cr_assert_eq(spate_push(r.e, 0, &recs[0], 1), 1);
	cr_assert_eq(spate_push(r.e, 1, &recs[1], 1), 1);
	spate_push_close(r.e);
	join_run(th, &r);
	spate_summary_t s;
	spate_engine_summary(r.e, &s);
	spate_engine_destroy(r.e);
	cr_assert_eq(s.dlq, 2);
	cr_assert_eq(kt_count(bs, "dead"), 2);
	kt_msg_t *m = kt_consume(bs, "dead", 2);
	int meta = 0, whole = 0;
	for (int i = 0; i < 2; i++) {
		const kt_hdr_t *h = kt_header(&m[i], "spate.condition");
		cr_assert(h && h->value);
		if (!strcmp(m[i].key, "kbig")) {
			cr_assert_str_eq(h->value, "MaximumPayloadSizeExceeded");
			cr_assert_null(m[i].value, "the oversized record's value was sent");
			cr_assert_not_null(kt_header(&m[i], "spate.id"));
			meta++;
		} else {
			cr_assert_str_eq(h->value, "RetryAttemptsExhausted");
			cr_assert_not_null(m[i].value);
			whole++;
		}
	}
	cr_assert_eq(meta, 1);
	cr_assert_eq(whole, 1);
	kt_free(m, 2);
	cr_assert_eq(t_kafka_stop(k), 0);
}
