/* test_kafka_sink.c - the Kafka sink (dlq=kafka:TOPIC) against mock-kafka, called
 * through its vtable as the engine calls it: every record written comes back once with
 * its key, value and headers; a write while every broker is down returns an error and
 * the same write succeeds once they are back; configuration errors name their key; a
 * password never shows in an error or on stderr. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

TestSuite(kafka_sink, .fini = t_kafka_fini);

enum {
	RECORDS = 10000,
	PARTS = 16,
	WRITERS = 4,              /* worker threads writing at once */
	BATCH = 250,              /* records per write() */
	HDRS = 3,                 /* headers per record */
	KEYS = 97,                /* distinct keys */
	OUTAGE_TIMEOUT_MS = 1500, /* kafka.message.timeout.ms while brokers are down */
	/* how many writes after "broker up" may still fail while the producer reconnects */
	RECONNECT_TRIES = 20,
};

#define SECRET "Pa55w0rd-never-shown-4711"

/* An engine that is never started: the sink reads its kafka.* keys from it. */
static spate_engine_t *engine_with(const char *const *kv)
{
	spate_conf_t *c = spate_conf_new();
	char err[512];
	cr_assert_eq(spate_conf_set(c, "source", "push", err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	for (size_t i = 0; kv && kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s",
		             kv[i], err);
	spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	return e;
}

static sp_sink_t sink_for(spate_engine_t *e, const char *topic)
{
	const sp_sink_ops_t *ops = sp_find_sink("kafka");
	cr_assert_not_null(ops, "no kafka sink registered (SPATE_HAVE_KAFKA)");
	return (sp_sink_t){.ops = ops, .eng = e, .arg = topic};
}

/* Record i: key k<i % KEYS>, value v<i>, headers h0..h2 (h2 has a null value). */
typedef struct recbuf {
	char key[16], val[32], hv0[32], hv1[8];
	spate_header_t h[HDRS];
} recbuf_t;

static void make_record(size_t i, recbuf_t *b, spate_push_record_t *r)
{
	snprintf(b->key, sizeof(b->key), "k%zu", i % KEYS);
	snprintf(b->val, sizeof(b->val), "v%zu", i);
	snprintf(b->hv0, sizeof(b->hv0), "id-%zu", i);
	b->h[0] = (spate_header_t){"h0", 2, b->hv0, strlen(b->hv0)};
	b->h[1] = (spate_header_t){"h1", 2, b->hv1, 0}; /* empty, not null */
	b->h[2] = (spate_header_t){"h2", 2, NULL, 0};   /* null */
	*r = (spate_push_record_t){.key = b->key,
	                           .key_len = strlen(b->key),
	                           .value = b->val,
	                           .value_len = strlen(b->val),
	                           .headers = b->h,
	                           .header_cnt = HDRS};
}

typedef struct writer {
	sp_sink_t *sink;
	size_t from, to;
	int failures;
	char err[512];
} writer_t;

static void *write_range(void *arg)
{
	writer_t *w = arg;
	static __thread recbuf_t bufs[BATCH];
	spate_push_record_t recs[BATCH];
	for (size_t i = w->from; i < w->to;) {
		size_t n = 0;
		for (; n < BATCH && i < w->to; n++, i++)
			make_record(i, &bufs[n], &recs[n]);
		if (w->sink->ops->write(w->sink, recs, n, w->err, sizeof(w->err)) != SPATE_OK)
			w->failures++;
	}
	return NULL;
}

/* Every record 0..n-1 with its key, value and headers, one partition per key; exactly
 * once with `exact`, else at least once (a write that failed may have delivered some). */
static void check_records(const char *bs, const char *topic, size_t n, bool exact)
{
	int64_t stored = kt_count(bs, topic);
	if (exact)
		cr_assert_eq(stored, (int64_t)n, "the topic holds %lld records, not the %zu written",
		             (long long)stored, n);
	else
		cr_assert(stored >= (int64_t)n, "the topic holds %lld records, fewer than %zu",
		          (long long)stored, n);
	kt_msg_t *m = kt_consume(bs, topic, (size_t)stored);
	unsigned char *seen = calloc(n, 1);
	int32_t key_part[KEYS];
	for (int i = 0; i < KEYS; i++)
		key_part[i] = -1;
	for (size_t i = 0; i < (size_t)stored; i++) {
		size_t id;
		cr_assert_eq(sscanf(m[i].value, "v%zu", &id), 1, "value \"%s\"", (char *)m[i].value);
		cr_assert(id < n, "record %zu was never written", id);
		cr_assert(!exact || !seen[id], "record %zu twice", id);
		seen[id] = 1;
		char want[32];
		snprintf(want, sizeof(want), "k%zu", id % KEYS);
		cr_assert_eq(m[i].key_len, strlen(want));
		cr_assert_str_eq(m[i].key, want);
		int32_t *kp = &key_part[id % KEYS];
		cr_assert(*kp < 0 || *kp == m[i].partition, "key %s in partitions %d and %d", want, *kp,
		          m[i].partition);
		*kp = m[i].partition;
		cr_assert_eq(m[i].hdr_cnt, HDRS, "record %zu has %zu headers", id, m[i].hdr_cnt);
		snprintf(want, sizeof(want), "id-%zu", id);
		cr_assert_str_eq(m[i].hdrs[0].key, "h0");
		cr_assert_eq(m[i].hdrs[0].value_len, strlen(want));
		cr_assert_str_eq(m[i].hdrs[0].value, want);
		cr_assert_str_eq(m[i].hdrs[1].key, "h1");
		cr_assert_not_null(m[i].hdrs[1].value, "an empty header value became null");
		cr_assert_eq(m[i].hdrs[1].value_len, 0);
		cr_assert_str_eq(m[i].hdrs[2].key, "h2");
		cr_assert_null(m[i].hdrs[2].value, "a null header value became non-null");
	}
	for (size_t id = 0; id < n; id++)
		cr_assert(seen[id], "record %zu is missing", id);
	free(seen);
	kt_free(m, (size_t)stored);
}

Test(kafka_sink, writes_10000_records_with_headers)
{
	const char *topics[] = {"out:16", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	const char *kv[] = {"kafka.bootstrap.servers", bs, NULL};
	spate_engine_t *e = engine_with(kv);
	sp_sink_t s = sink_for(e, "out");
	char err[512] = "";
	cr_assert_eq(s.ops->open(&s, err, sizeof(err)), SPATE_OK, "%s", err);
	/* message.max.bytes 1000000 by default, less the margin for framing */
	size_t max = s.ops->max_record_bytes(&s);
	cr_assert(max > 900000 && max < 1000000, "max_record_bytes %zu", max);

	pthread_t th[WRITERS];
	writer_t w[WRITERS];
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (writer_t){.sink = &s,
		                  .from = (size_t)i * RECORDS / WRITERS,
		                  .to = (size_t)(i + 1) * RECORDS / WRITERS};
		pthread_create(&th[i], NULL, write_range, &w[i]);
	}
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].failures, 0, "writer %d: %s", i, w[i].err);
	}
	s.ops->close(&s);
	spate_engine_destroy(e);
	cr_assert_eq(kt_partitions(bs, "out"), PARTS);
	check_records(bs, "out", RECORDS, true);
	cr_assert_eq(t_kafka_stop(k), 0);
}

Test(kafka_sink, error_while_all_brokers_down_ok_after)
{
	const char *topics[] = {"dlq:4", NULL};
	t_kafka_t *k = t_kafka_start(3, topics);
	const char *bs = t_kafka_bootstrap(k);
	char tmo[16];
	snprintf(tmo, sizeof(tmo), "%d", OUTAGE_TIMEOUT_MS);
	const char *kv[] = {"kafka.bootstrap.servers", bs, "kafka.message.timeout.ms", tmo, NULL};
	spate_engine_t *e = engine_with(kv);
	sp_sink_t s = sink_for(e, "dlq");
	char err[512] = "";
	cr_assert_eq(s.ops->open(&s, err, sizeof(err)), SPATE_OK, "%s", err);

	enum { N = 50 };
	recbuf_t bufs[N];
	spate_push_record_t recs[N];
	for (size_t i = 0; i < N; i++)
		make_record(i, &bufs[i], &recs[i]);

	t_kafka_ok(k, "broker down all");
	for (int round = 0; round < 2; round++) { /* and again: a failed write leaves no state behind */
		err[0] = 0;
		int rc = s.ops->write(&s, recs, N, err, sizeof(err));
		cr_assert_eq(rc, SPATE_ERR_SINK, "write with every broker down returned %d (%s)", rc, err);
		cr_assert_not_null(strstr(err, "kafka:dlq"), "the error names the target: %s", err);
		cr_assert_not_null(strstr(err, "not delivered"), "the error says what: %s", err);
	}
	t_kafka_ok(k, "broker up all");
	int rc = -1, tries = 0;
	while (tries < RECONNECT_TRIES && rc != SPATE_OK) {
		rc = s.ops->write(&s, recs, N, err, sizeof(err));
		tries++;
	}
	cr_assert_eq(rc, SPATE_OK, "after the brokers came back: %s", err);
	s.ops->close(&s);
	spate_engine_destroy(e);
	/* The writes while down delivered nothing (no broker took a connection). A write
	 * that failed while the producer reconnected may have stored records it could not
	 * confirm (at-least-once); when the first write after "up" succeeded, each record
	 * is stored exactly once. */
	check_records(bs, "dlq", N, tries == 1);
	cr_assert_eq(t_kafka_stop(k), 0);
}

/* Run fn with fd 2 going to a file; return what was written there (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char path[] = "/tmp/spate-kafka-stderr-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	char *out = t_read_file(path, NULL);
	unlink(path);
	cr_assert_not_null(out);
	return out;
}

typedef struct fatal_run {
	sp_sink_t *s;
	recbuf_t bufs[10];
	spate_push_record_t recs[10];
	int first_rc, final_rc, tries;
	char first_err[512], final_err[512];
} fatal_run_t;

static void fatal_scenario(void *arg)
{
	fatal_run_t *f = arg;
	f->first_rc = f->s->ops->write(f->s, f->recs, 10, f->first_err, sizeof(f->first_err));
	f->final_rc = -1;
	for (f->tries = 0; f->tries < RECONNECT_TRIES && f->final_rc != SPATE_OK; f->tries++)
		f->final_rc = f->s->ops->write(f->s, f->recs, 10, f->final_err, sizeof(f->final_err));
}

Test(kafka_sink, fatal_producer_error_recovers)
{
	/* An out-of-order sequence answer is fatal for librdkafka's idempotent producer: it
	 * fails everything afterwards. The write that meets it returns an error, and a later
	 * write replaces the producer and succeeds. */
	const char *topics[] = {"t:1:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	const char *kv[] = {"kafka.bootstrap.servers", bs, NULL};
	spate_engine_t *e = engine_with(kv);
	sp_sink_t s = sink_for(e, "t");
	char err[512] = "";
	cr_assert_eq(s.ops->open(&s, err, sizeof(err)), SPATE_OK, "%s", err);
	fatal_run_t f = {.s = &s};
	for (size_t i = 0; i < 10; i++)
		make_record(i, &f.bufs[i], &f.recs[i]);
	t_kafka_ok(k, "error Produce OUT_OF_ORDER_SEQUENCE_NUMBER 1");
	char *log = capture_stderr(fatal_scenario, &f);
	cr_assert_eq(f.first_rc, SPATE_ERR_SINK, "the write that met the fatal error returned %d",
	             f.first_rc);
	cr_assert_not_null(strstr(f.first_err, "kafka:t"), "%s", f.first_err);
	cr_assert_eq(f.final_rc, SPATE_OK, "no write succeeded after the fatal error: %s\n%s", f.final_err,
	             log);
	cr_assert_not_null(strstr(log, "starting a new one"), "the producer was not replaced:\n%s", log);
	free(log);
	s.ops->close(&s);
	spate_engine_destroy(e);
	check_records(bs, "t", 10, f.tries == 1);
	cr_assert_eq(t_kafka_stop(k), 0);
}

Test(kafka_sink, max_record_bytes_fits_what_librdkafka_takes)
{
	enum { MAX_BYTES = 100000, DLQ_HDRS = 9, DLQ_HDR_BYTES = 1024 };
	const char *topics[] = {"big:1:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	char mmb[16];
	snprintf(mmb, sizeof(mmb), "%d", MAX_BYTES);
	const char *kv[] = {"kafka.bootstrap.servers", bs, "kafka.message.max.bytes", mmb, NULL};
	spate_engine_t *e = engine_with(kv);
	sp_sink_t s = sink_for(e, "big");
	char err[512] = "";
	cr_assert_eq(s.ops->open(&s, err, sizeof(err)), SPATE_OK, "%s", err);
	size_t max = s.ops->max_record_bytes(&s);
	cr_assert(max > 0 && max < MAX_BYTES, "max_record_bytes %zu for message.max.bytes %d", max,
	          MAX_BYTES);

	/* the largest record the engine sends whole: key + value + DLQ_HDRS headers whose
	 * keys and values add up to DLQ_HDR_BYTES, max bytes in all */
	static char value[MAX_BYTES + 1], hval[DLQ_HDR_BYTES];
	memset(value, 'v', sizeof(value));
	memset(hval, 'h', sizeof(hval));
	spate_header_t h[DLQ_HDRS];
	size_t per = DLQ_HDR_BYTES / DLQ_HDRS; /* key "hN" (2 bytes) + value per - 2 */
	for (int i = 0; i < DLQ_HDRS; i++)
		h[i] = (spate_header_t){i % 2 ? "h1" : "h0", 2, hval, per - 2};
	const char *key = "key";
	size_t used = strlen(key) + DLQ_HDRS * per;
	spate_push_record_t r = {.key = key,
	                         .key_len = strlen(key),
	                         .value = value,
	                         .value_len = max - used,
	                         .headers = h,
	                         .header_cnt = DLQ_HDRS};
	cr_assert_eq(s.ops->write(&s, &r, 1, err, sizeof(err)), SPATE_OK, "a record of max_record_bytes: %s",
	             err);

	/* one larger than message.max.bytes itself is refused with an error, not dropped */
	r.value_len = MAX_BYTES + 1;
	r.header_cnt = 0;
	cr_assert_eq(s.ops->write(&s, &r, 1, err, sizeof(err)), SPATE_ERR_SINK);
	cr_assert_not_null(strstr(err, "not accepted"), "%s", err);
	s.ops->close(&s);
	spate_engine_destroy(e);
	cr_assert_eq(kt_count(bs, "big"), 1);
	cr_assert_eq(t_kafka_stop(k), 0);
}

/* Open a sink on these keys; returns the open's result with its error in err. */
static int open_with(const char *topic, const char *const *kv, char *err, size_t size)
{
	spate_engine_t *e = engine_with(kv);
	sp_sink_t s = sink_for(e, topic);
	err[0] = 0;
	int rc = s.ops->open(&s, err, size);
	if (rc == SPATE_OK)
		s.ops->close(&s);
	spate_engine_destroy(e);
	return rc;
}

Test(kafka_sink, configuration_errors_name_the_key)
{
	/* no cluster needed: every case fails before anything connects */
	char err[512];
	const char *none[] = {NULL};
	cr_assert_neq(open_with("t", none, err, sizeof(err)), SPATE_OK);
	cr_assert_not_null(strstr(err, "kafka.bootstrap.servers"), "%s", err);

	const struct {
		const char *topic, *key, *val, *named;
	} cases[] = {
	    {"", "kafka.bootstrap.servers", "127.0.0.1:1", "dlq=kafka:TOPIC"},
	    {"bad topic!", "kafka.bootstrap.servers", "127.0.0.1:1", "bad topic!"},
	    {"t", "kafka.no.such.property", "1", "kafka.no.such.property"},
	    {"t", "kafka.linger.ms", "soon", "kafka.linger.ms"},
	    {"t", "kafka.acks", "1", "kafka.acks"},
	    {"t", "kafka.enable.idempotence", "false", "kafka.enable.idempotence"},
	    {"t", "kafka.transactional.id", "tx", "kafka.transactional.id"},
	    {"t", "kafka.message.timeout.ms", "0", "kafka.message.timeout.ms"},
	    {"t", "kafka.sasl.password.typo", SECRET, "kafka.sasl.password.typo"}, /* named, not shown */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *kv[] = {"kafka.bootstrap.servers", "127.0.0.1:1", cases[i].key, cases[i].val,
		                    NULL};
		cr_assert_neq(open_with(cases[i].topic, kv, err, sizeof(err)), SPATE_OK, "case %zu opened",
		              i);
		cr_assert_not_null(strstr(err, cases[i].named), "case %zu: \"%s\" does not name %s", i, err,
		                   cases[i].named);
		cr_assert_null(strstr(err, SECRET), "case %zu shows the secret: %s", i, err);
	}
}

Test(kafka_sink, cli_never_shows_secrets)
{
	/* through the command, as an operator runs it: the DLQ cannot open (librdkafka rejects
	 * a value and its message quotes it), and the password is nowhere in the output */
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=gen",
	                      "-X",
	                      "gen.records=10",
	                      "-X",
	                      "dlq=kafka:t",
	                      "-X",
	                      "kafka.bootstrap.servers=127.0.0.1:1",
	                      "-X",
	                      "kafka.sasl.password=" SECRET,
	                      "-X",
	                      "kafka.ssl.key.password=" SECRET,
	                      "-X",
	                      "kafka.compression.codec=" SECRET,
	                      "-X",
	                      "log.level=debug",
	                      NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run(argv, &out, &err);
	cr_assert_neq(rc, 0, "spate run started with an invalid kafka.compression.codec");
	cr_assert_not_null(strstr(err, "kafka.compression.codec"), "the error does not name the key: %s",
	                   err);
	cr_assert_null(strstr(err, SECRET), "stderr shows the secret: %s", err);
	cr_assert_null(strstr(out, SECRET), "stdout shows the secret: %s", out);
	free(out);
	free(err);
}

typedef struct secret_run {
	const char *bootstrap;
	char errs[4][512]; /* every error text the sink returned */
	int rcs[4];
} secret_run_t;

static void secret_scenarios(void *arg)
{
	secret_run_t *r = arg;
	/* 1: SASL against a cluster that does not speak it, with librdkafka's debug logs on:
	 *    the write fails and says why */
	const char *kv1[] = {"kafka.bootstrap.servers",
	                     r->bootstrap,
	                     "kafka.security.protocol",
	                     "sasl_plaintext",
	                     "kafka.sasl.mechanisms",
	                     "PLAIN",
	                     "kafka.sasl.username",
	                     "spate",
	                     "kafka.sasl.password",
	                     SECRET,
	                     "kafka.message.timeout.ms",
	                     "1000",
	                     "kafka.debug",
	                     "conf,security,broker",
	                     "log.level",
	                     "debug",
	                     NULL};
	spate_engine_t *e = engine_with(kv1);
	sp_sink_t s = sink_for(e, "t");
	r->rcs[0] = s.ops->open(&s, r->errs[0], sizeof(r->errs[0]));
	if (r->rcs[0] == SPATE_OK) {
		spate_push_record_t rec = {.value = "x", .value_len = 1};
		r->rcs[1] = s.ops->write(&s, &rec, 1, r->errs[1], sizeof(r->errs[1]));
		s.ops->close(&s);
	}
	spate_engine_destroy(e);
	/* 2: the password given as the value of another key that librdkafka rejects with a
	 *    message quoting the value (compression.codec does): the text is redacted */
	const char *kv2[] = {"kafka.bootstrap.servers",
	                     r->bootstrap,
	                     "kafka.sasl.password",
	                     SECRET,
	                     "kafka.compression.codec",
	                     SECRET,
	                     NULL};
	r->rcs[2] = open_with("t", kv2, r->errs[2], sizeof(r->errs[2]));
	/* 3: a private key that is not PEM, which fails in rd_kafka_new, with a key password */
	const char *kv3[] = {"kafka.bootstrap.servers",
	                     r->bootstrap,
	                     "kafka.security.protocol",
	                     "ssl",
	                     "kafka.ssl.key.pem",
	                     SECRET,
	                     "kafka.ssl.key.password",
	                     SECRET,
	                     NULL};
	r->rcs[3] = open_with("t", kv3, r->errs[3], sizeof(r->errs[3]));
}

Test(kafka_sink, secrets_never_shown)
{
	const char *topics[] = {"t:1", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	secret_run_t r = {.bootstrap = t_kafka_bootstrap(k)};
	char *log = capture_stderr(secret_scenarios, &r);
	cr_assert_eq(r.rcs[0], SPATE_OK, "open with SASL settings: %s", r.errs[0]);
	cr_assert_eq(r.rcs[1], SPATE_ERR_SINK, "a SASL write to a broker without SASL succeeded");
	cr_assert_neq(r.rcs[2], SPATE_OK);
	cr_assert_not_null(strstr(r.errs[2], "kafka.compression.codec"), "%s", r.errs[2]);
	cr_assert_not_null(strstr(r.errs[2], "***"), "librdkafka's text was not redacted: %s", r.errs[2]);
	cr_assert_neq(r.rcs[3], SPATE_OK);
	for (int i = 0; i < 4; i++)
		cr_assert_null(strstr(r.errs[i], SECRET), "error %d shows the secret: %s", i, r.errs[i]);
	cr_assert(strlen(log) > 0, "nothing was logged: the check below would prove nothing");
	cr_assert_not_null(strstr(log, "librdkafka"), "librdkafka's logs did not come through the sink");
	cr_assert_null(strstr(log, SECRET), "stderr shows the secret:\n%s", log);
	free(log);
	cr_assert_eq(t_kafka_stop(k), 0);
}

/* `spate produce --kafka TOPIC`: loads a topic through this sink, from the gen pool and
 * from stdin; keyless records spread over every partition. */
Test(kafka_sink, produce_command_loads_a_topic, .timeout = 120)
{
	const char *topics[] = {"p1:8", "p2:4", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	const char *bs = t_kafka_bootstrap(k);
	char bsopt[512];
	snprintf(bsopt, sizeof(bsopt), "kafka.bootstrap.servers=%s", bs);
	/* gen: 20,000 records of 100 bytes */
	char *const gen[] = {(char *)t_spate_cli(), "produce", "--kafka", "p1", "--gen", "bytes", "--records", "20000",
	                     "--value-bytes", "100", "-X", bsopt, NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run(gen, &out, &err);
	cr_assert_eq(rc, 0, "produce --gen: exit %d: %s", rc, err);
	free(out);
	free(err);
	cr_assert_eq(kt_count(bs, "p1"), 20000);
	/* stdin: keyed lines k<i>:v<i> and keyless lines, 3,000 each */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "{ seq 0 2999 | sed 's/.*/k&:v&/'; seq 3000 5999 | sed 's/.*/v&/'; } | '%s' produce --kafka p2 "
	         "--key-separator : -X '%s'",
	         t_spate_cli(), bsopt);
	char *const sh[] = {"sh", "-c", cmd, NULL};
	rc = t_run(sh, &out, &err);
	cr_assert_eq(rc, 0, "produce from stdin: exit %d: %s", rc, err);
	free(out);
	free(err);
	int64_t n = kt_count(bs, "p2");
	cr_assert_eq(n, 6000, "p2 holds %lld records", (long long)n);
	kt_msg_t *m = kt_consume(bs, "p2", (size_t)n);
	unsigned char seen[6000] = {0};
	int keyless_in[4] = {0};
	for (int64_t i = 0; i < n; i++) {
		int id;
		cr_assert_eq(sscanf(m[i].value, "v%d", &id), 1, "value \"%s\"", (char *)m[i].value);
		cr_assert(id >= 0 && id < 6000 && !seen[id], "record v%d twice or unknown", id);
		seen[id] = 1;
		if (id < 3000) {
			char want[16];
			snprintf(want, sizeof(want), "k%d", id);
			cr_assert_eq(m[i].key_len, strlen(want), "v%d: key length %zu", id, m[i].key_len);
			cr_assert(!memcmp(m[i].key, want, m[i].key_len), "v%d: wrong key", id);
		} else {
			cr_assert_null(m[i].key, "v%d: a keyless line got a key", id);
			keyless_in[m[i].partition]++;
		}
	}
	for (int p = 0; p < 4; p++)
		cr_assert_gt(keyless_in[p], 0, "no keyless record in partition %d (not spread)", p);
	kt_free(m, (size_t)n);
	/* --kafka takes no DIR */
	char *const bad[] = {(char *)t_spate_cli(), "produce", "/tmp/x", "--kafka", "p1", "-X", bsopt, NULL};
	rc = t_run(bad, &out, &err);
	cr_assert_eq(rc, 2);
	cr_assert(strstr(err, "--kafka"), "%s", err);
	free(out);
	free(err);
	t_kafka_stop(k);
}
