/* test_kafka_headers.c - a Kafka record's headers reach whatever reads them, and are not
 * decoded when nothing does (sp_engine_wants_headers): librdkafka parses a message's
 * headers per call of rd_kafka_message_headers (a calloc, a parse and a free, even for a
 * message with none), which a built-in handler that ignores headers (noop, fail-if, ...)
 * need not pay for, unless a DLQ (dead letters keep their headers) or a filter on
 * headers is set. Each case runs a pipeline over a mock cluster's topic whose records
 * carry two headers (app = v<i>, tier = gold|silver). */
#include "engine/engine.h"
#include "tests/common/kafka.h"
#include "tests/common/util.h"
#include "tests/connectors/kafka/ktest.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <spate/spate.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	PARTS = 4,
	N = 400,                  /* records; every 10th is POISON */
	PRODUCE_FLUSH_MS = 60000, /* bound for the producer's delivery reports */
};

TestSuite(kafka_headers, .fini = t_kafka_fini, .timeout = 300);

static const char *const topics[] = {"h:4", "dead:1", NULL};

/* Record i: key k<i>, value "ok-i" or "POISON-i", headers app=v<i> and tier=gold (even
 * i) or silver (odd i), partition i % PARTS. */
static void produce(const char *bs)
{
	rd_kafka_t *rk = kt_producer(bs, NULL);
	for (int i = 0; i < N; i++) {
		char key[16], val[32], app[16];
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "%s-%d", i % 10 ? "ok" : "POISON", i);
		snprintf(app, sizeof(app), "v%d", i);
		const char *tier = i % 2 ? "silver" : "gold";
		rd_kafka_resp_err_t err = rd_kafka_producev(
		    rk, RD_KAFKA_V_TOPIC("h"), RD_KAFKA_V_PARTITION(i % PARTS), RD_KAFKA_V_KEY(key, strlen(key)),
		    RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_HEADER("app", app, (ssize_t)strlen(app)),
		    RD_KAFKA_V_HEADER("tier", tier, (ssize_t)strlen(tier)), RD_KAFKA_V_END);
		cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(err));
	}
	cr_assert_eq(rd_kafka_flush(rk, PRODUCE_FLUSH_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(rk);
	cr_assert_eq(kt_count(bs, "h"), N, "the topic holds every record produced");
}

/* The number in a value "ok-17" / "POISON-17", or -1. */
static int value_num(const void *v, size_t len)
{
	char buf[32];
	if (!v || len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, v, len);
	buf[len] = 0;
	const char *dash = strchr(buf, '-');
	return dash ? atoi(dash + 1) : -1;
}

/* Whether headers hold app=v<i> and tier=gold|silver as record i was produced with. */
static bool headers_of(int i, const char *app, size_t app_len, const char *tier, size_t tier_len)
{
	char want[16];
	int wl = snprintf(want, sizeof(want), "v%d", i);
	const char *wt = i % 2 ? "silver" : "gold";
	return app && tier && app_len == (size_t)wl && !memcmp(app, want, app_len) && tier_len == strlen(wt) &&
	       !memcmp(tier, wt, tier_len);
}

/* A pipeline over topic h as group, with kv (NULL-terminated key, value pairs) and
 * handler h (NULL: the conf's). Run to the end of the topic (stop.at.end). */
static spate_engine_t *start(const char *bs, const char *group, const char *const *kv, const spate_handler_t *h)
{
	spate_conf_t *c = spate_conf_new();
	const char *base[] = {"source", "kafka", "topics", "h", "group.id", group, "kafka.bootstrap.servers", bs,
	                      "store", "kafka", "stop.at.end", "true", "kafka.session.timeout.ms", "6000",
	                      "kafka.heartbeat.interval.ms", "500", NULL};
	char err[512];
	for (size_t i = 0; base[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, base[i], base[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	for (size_t i = 0; kv && kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s", kv[i],
		             err);
	spate_engine_t *e = spate_engine_new(c, h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	return e;
}

static void run(spate_engine_t *e, spate_summary_t *s)
{
	char err[512];
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_engine_summary(e, s);
	spate_engine_destroy(e);
}

static t_kafka_t *cluster(void)
{
	t_kafka_t *k = t_kafka_start(1, topics);
	produce(t_kafka_bootstrap(k));
	return k;
}

/* ---- a handler given as a struct: it may read anything ------------------------------ */

static _Atomic int g_right, g_seen;

static int check_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	(void)opaque;
	(void)wctx;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < n; i++) {
		const char *app = NULL, *tier = NULL;
		size_t al = 0, tl = 0;
		for (size_t h = 0; h < r[i]->header_cnt; h++) {
			const spate_header_t *x = &r[i]->headers[h];
			if (x->key_len == 3 && !memcmp(x->key, "app", 3)) {
				app = x->value;
				al = x->value_len;
			} else if (x->key_len == 4 && !memcmp(x->key, "tier", 4)) {
				tier = x->value;
				tl = x->value_len;
			}
		}
		atomic_fetch_add(&g_seen, 1);
		if (headers_of(value_num(r[i]->value, r[i]->value_len), app, al, tier, tl))
			atomic_fetch_add(&g_right, 1);
	}
	return SPATE_HANDLER_OK;
}

Test(kafka_headers, a_handler_given_as_a_struct_gets_every_header)
{
	t_kafka_t *k = cluster();
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "check", .handle = check_handle};
	spate_engine_t *e = start(t_kafka_bootstrap(k), "g-struct", NULL, &h);
	cr_assert(sp_engine_wants_headers(e), "a handler of the embedding program may read headers");
	spate_summary_t s;
	run(e, &s);
	cr_assert_eq(s.records, N);
	cr_assert_eq(atomic_load(&g_seen), N);
	cr_assert_eq(atomic_load(&g_right), N, "%d of %d records had their headers", atomic_load(&g_right), N);
}

Test(kafka_headers, noop_with_a_filter_on_headers_filters_on_them)
{
	t_kafka_t *k = cluster();
	const char *kv[] = {"handler", "noop", "filter", "{\"headers\": {\"tier\": [\"gold\"]}}", NULL};
	spate_engine_t *e = start(t_kafka_bootstrap(k), "g-filter", kv, NULL);
	cr_assert(sp_engine_wants_headers(e), "the filter reads headers");
	spate_summary_t s;
	run(e, &s);
	cr_assert_eq(s.records, N);
	/* the silver half is dropped; without the headers every record would be */
	cr_assert_eq(s.filtered, N / 2, "filtered %" PRIu64 " of %d", s.filtered, N);
}

Test(kafka_headers, dead_letters_of_a_built_in_handler_keep_their_headers)
{
	t_kafka_t *k = cluster();
	const char *kv[] = {"handler", "fail-if:POISON", "report.item.failures", "true", "max.retry.attempts", "0",
	                    "retry.backoff.ms", "20", "dlq", "kafka:dead", NULL};
	spate_engine_t *e = start(t_kafka_bootstrap(k), "g-dlq", kv, NULL);
	cr_assert(sp_engine_wants_headers(e), "dead letters carry the original headers");
	spate_summary_t s;
	run(e, &s);
	cr_assert_eq(s.records, N);
	cr_assert_eq(s.dlq, N / 10);
	kt_msg_t *m = kt_consume(t_kafka_bootstrap(k), "dead", N / 10);
	for (size_t i = 0; i < N / 10; i++) {
		int num = value_num(m[i].value, m[i].value_len);
		const kt_hdr_t *app = kt_header(&m[i], "app"), *tier = kt_header(&m[i], "tier");
		cr_assert(num >= 0 && num % 10 == 0, "dead letter %zu is record %d", i, num);
		cr_assert(app && tier &&
		              headers_of(num, app->value, app->value_len, tier->value, tier->value_len),
		          "dead letter of record %d lost its headers", num);
		cr_assert_not_null(kt_header(&m[i], "spate.error"));
	}
	kt_free(m, N / 10);
}

Test(kafka_headers, noop_alone_decodes_no_headers)
{
	t_kafka_t *k = cluster();
	const char *kv[] = {"handler", "noop", "filter", "{\"value\": [{\"prefix\": \"ok\"}]}", NULL};
	spate_engine_t *e = start(t_kafka_bootstrap(k), "g-noop", kv, NULL);
	cr_assert(!sp_engine_wants_headers(e), "nothing reads headers: noop, a filter on the value, no dlq");
	spate_summary_t s;
	run(e, &s);
	cr_assert_eq(s.records, N);
	cr_assert_eq(s.filtered, N / 10, "the POISON records do not start with ok");
}
