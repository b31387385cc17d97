/* sink.c - Kafka as a sink and DLQ: `dlq=kafka:TOPIC`, through librdkafka's producer.
 *
 * The producer is idempotent with acks=all (no duplicates from librdkafka's own
 * retries, and a record is on every in-sync replica before it counts). Every `kafka.*`
 * key of the pipeline's configuration goes to librdkafka without the prefix;
 * kafka.bootstrap.servers is required. The same keys configure the Kafka source, so
 * consumer-only keys are accepted here and ignored by librdkafka (it logs a warning).
 *
 * write() produces the n records (key, value, headers, timestamp; the partitioner
 * picks the partition from the key: murmur2_random unless kafka.partitioner says
 * otherwise, the Java client's placement) and returns SPATE_OK only once the delivery
 * report of every one of them said delivered. Any failed report, a produce error or
 * a report that does not come in time makes it return SPATE_ERR_SINK with the first
 * error's text: the engine keeps the records and retries the write, so nothing is
 * dropped (some records of a failed write may have been delivered: at-least-once).
 *
 * Threads: worker threads call write() at once. Delivery reports are served by a
 * poller thread of the sink (rd_kafka_poll) that counts them into each write's batch
 * under one mutex and wakes the writers. A fatal producer error (the idempotent
 * producer's, after which librdkafka fails everything) makes the next write rebuild
 * the producer: it waits for the writes in flight (a writer-preferring rwlock), then
 * creates a new rd_kafka_t from the saved configuration.
 *
 * Secrets: values of keys that name a password, secret or key (and the OAUTHBEARER
 * config) never reach a log line or an error text. Errors for those keys name the key
 * only, and every text that comes out of librdkafka (its logs, config and delivery
 * errors) has each secret value replaced by "***" before it is logged or returned.
 */
#include "secrets.h"
#include "sp_spi.h"

#include <librdkafka/rdkafka.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
	/* message.timeout.ms when kafka.message.timeout.ms is not set. librdkafka's 300000
	 * would hold a worker five minutes per failed write during an outage. */
	KSINK_DEFAULT_MESSAGE_TIMEOUT_MS = 30000,
	/* reconnect.backoff.max.ms when kafka.reconnect.backoff.max.ms is not set. librdkafka
	 * times messages out only when a broker thread wakes, and a thread waiting to
	 * reconnect sleeps up to this long (librdkafka's 10000 made reports of a 1.5 s
	 * message timeout take 10 s with the brokers down, and recovery after they came back
	 * as long); one connection attempt per second per broker is cheap. */
	KSINK_DEFAULT_RECONNECT_BACKOFF_MAX_MS = 1000,
	/* librdkafka's reconnect.backoff.max.ms default, used when its value cannot be read */
	KSINK_LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS = 10000,
	/* librdkafka's message.max.bytes default, used when its value cannot be read */
	KSINK_DEFAULT_MESSAGE_MAX_BYTES = 1000000,
	/* max_record_bytes() = message.max.bytes minus this: a record's own framing (up to
	 * 36 bytes of varints), its headers' length varints (10 bytes each), the record
	 * batch header (61 bytes) and the produce request's topic and client id */
	KSINK_OVERHEAD_MARGIN = 4096,
	/* the poller's rd_kafka_poll timeout; bounds how long stopping the poller takes */
	KSINK_POLL_MS = 100,
	/* a write waits this long past message.timeout.ms + reconnect.backoff.max.ms (from
	 * its last produce) for the last delivery report before it gives up and returns an
	 * error */
	KSINK_REPORT_GRACE_MS = 5000,
	/* while librdkafka's queue is full, retry the produce this often */
	KSINK_QUEUE_FULL_WAIT_MS = 10,
	/* open: how long to wait for the topic's metadata before going on without it */
	KSINK_OPEN_METADATA_MS = 5000,
	/* close: how long to wait for abandoned deliveries before purging them */
	KSINK_CLOSE_FLUSH_MS = 5000,
	/* after a purge: how long serving the purged messages' reports may take */
	KSINK_PURGE_FLUSH_MS = 5000,
	/* the same librdkafka error is logged at most once per this interval */
	KSINK_ERROR_LOG_INTERVAL_MS = 10000,
	/* texts from librdkafka are formatted into this much before they are redacted, so
	 * that a secret is rarely cut in the middle */
	KSINK_RAWSTR = 4096,
	KSINK_ERRSTR = 512,
};

#define KSINK_PREFIX   "kafka."

/* One write()'s records: counted down by delivery reports (ksink.mu). */
typedef struct kbatch {
	size_t pending;          /* reports still to come */
	size_t failed;           /* reports that said not delivered */
	rd_kafka_resp_err_t err; /* the first failure */
	char errstr[KSINK_ERRSTR];
	bool abandoned; /* write() stopped waiting: the last report frees the batch */
} kbatch_t;

typedef struct ksink {
	sp_engine_t *eng;
	const char *role; /* "dlq", or "produce" (spate produce --kafka, no engine) */
	char *topic;
	rd_kafka_conf_t *conf; /* the template each producer is made from (rd_kafka_conf_dup) */
	int message_timeout_ms;
	int report_wait_ms; /* how long a write waits for its reports after its last produce */
	size_t message_max_bytes;

	/* held shared by write(), exclusively by a rebuild after a fatal error */
	pthread_rwlock_t gen_lock;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	pthread_t poller;
	bool poller_running;
	atomic_bool poller_stop;
	atomic_bool fatal; /* the current producer raised a fatal error */

	pthread_mutex_t mu; /* batches, and the error log limiter */
	pthread_cond_t cv;  /* a batch finished (CLOCK_MONOTONIC) */
	rd_kafka_resp_err_t last_logged_err;
	int64_t last_logged_ms;

	sp_kafka_secrets_t secrets;
} ksink_t;

/* sp_err with the message redacted. */
static int ksink_err(const ksink_t *k, char *errstr, size_t size, int err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int ksink_err(const ksink_t *k, char *errstr, size_t size, int err, const char *fmt, ...)
{
	char raw[KSINK_RAWSTR], clean[KSINK_ERRSTR];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	sp_kafka_redact(&k->secrets, raw, clean, sizeof(clean));
	return sp_err(errstr, size, err, "%s", clean);
}

/* ---- librdkafka callbacks ------------------------------------------------------------ */

/* Delivery report. @locality the sink's poller thread (or close()'s flush) */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	ksink_t *k = opaque;
	kbatch_t *b = m->_private;
	if (!b)
		return;
	pthread_mutex_lock(&k->mu);
	if (m->err) {
		if (!b->failed++) {
			b->err = m->err;
			/* not rd_kafka_message_errstr: for some errors it returns the payload */
			sp_kafka_redact(&k->secrets, rd_kafka_err2str(m->err), b->errstr, sizeof(b->errstr));
		}
		if (m->err == RD_KAFKA_RESP_ERR__FATAL)
			atomic_store(&k->fatal, true);
	}
	bool last = --b->pending == 0;
	if (last && b->abandoned)
		free(b);
	else if (last)
		pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mu);
}

/* Client-level errors: most are transient (librdkafka reconnects and retries by itself)
 * and only logged, at most once per error code per interval (a connection failure not at
 * all: librdkafka's own log line already says it); a fatal one marks the producer for
 * rebuilding. @locality the poller thread */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	ksink_t *k = opaque;
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT)
		return;
	char raw[KSINK_RAWSTR], clean[KSINK_ERRSTR];
	snprintf(raw, sizeof(raw), "%s", reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		atomic_store(&k->fatal, true);
		rd_kafka_fatal_error(rk, raw, sizeof(raw));
	}
	sp_kafka_redact(&k->secrets, err == RD_KAFKA_RESP_ERR__FATAL ? raw : reason, clean, sizeof(clean));
	int64_t now = sp_now_ms();
	pthread_mutex_lock(&k->mu);
	bool quiet = err == k->last_logged_err && now - k->last_logged_ms < KSINK_ERROR_LOG_INTERVAL_MS &&
	             err != RD_KAFKA_RESP_ERR__FATAL;
	if (!quiet) {
		k->last_logged_err = err;
		k->last_logged_ms = now;
	}
	pthread_mutex_unlock(&k->mu);
	if (!quiet)
		sp_msg(k->eng, err == RD_KAFKA_RESP_ERR__FATAL ? SP_MSG_ERROR : SP_MSG_WARN,
		       "%s kafka:%s: %s%s: %s", k->role, k->topic, err == RD_KAFKA_RESP_ERR__FATAL ? "fatal " : "",
		       rd_kafka_err2name(err), clean);
}

/* librdkafka's own log lines, redacted, at the matching level.
 * @locality any librdkafka thread */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ksink_t *k = rd_kafka_opaque(rk);
	int lv = level <= 3   ? SP_MSG_ERROR
	         : level == 4 ? SP_MSG_WARN
	         : level <= 6 ? SP_MSG_INFO
	                      : SP_MSG_DEBUG;
	if (!k || !sp_msg_enabled(k->eng, lv))
		return;
	char clean[1024];
	sp_kafka_redact(&k->secrets, buf, clean, sizeof(clean));
	sp_msg(k->eng, lv, "%s kafka:%s: librdkafka %s: %s", k->role, k->topic, fac, clean);
}

/* ---- configuration --------------------------------------------------------------------- */

typedef struct conf_walk {
	ksink_t *k;
	rd_kafka_conf_t *conf;
	bool has_bootstrap;
	int rc; /* the first error, with its text in err */
	char err[KSINK_ERRSTR];
} conf_walk_t;

/* First pass: remember secret values, so that any later text can be redacted. */
static void collect_secret(void *arg, const char *key, const char *val)
{
	conf_walk_t *w = arg;
	int rc = sp_kafka_secrets_add(&w->k->secrets, key, val, w->err, sizeof(w->err));
	if (rc && !w->rc)
		w->rc = rc;
}

static bool is_true(const char *v)
{
	return !strcmp(v, "true") || !strcmp(v, "1");
}

/* Second pass: hand each kafka.* key to librdkafka, refusing the few that would break
 * the sink's promise (durable on OK, no transactions). */
static void apply_key(void *arg, const char *key, const char *val)
{
	conf_walk_t *w = arg;
	if (w->rc)
		return;
	const char *rk_key = key + strlen(KSINK_PREFIX);
	if (!strcmp(rk_key, "bootstrap.servers"))
		w->has_bootstrap = *val != 0;
	if ((!strcmp(rk_key, "message.timeout.ms") || !strcmp(rk_key, "delivery.timeout.ms")) &&
	    !strcmp(val, "0")) { /* librdkafka: never time out; a write must end */
		w->rc = sp_err(w->err, sizeof(w->err), SPATE_ERR_INVALID,
		               "%s: 0 (wait forever) is not allowed for dlq=kafka (a write must end)", key);
		return;
	}
	if ((!strcmp(rk_key, "acks") || !strcmp(rk_key, "request.required.acks")) && strcmp(val, "all") &&
	    strcmp(val, "-1")) {
		w->rc = sp_err(w->err, sizeof(w->err), SPATE_ERR_INVALID,
		               "%s: dlq=kafka needs all (or -1): a write is durable only with acks=all", key);
		return;
	}
	if (!strcmp(rk_key, "enable.idempotence") && !is_true(val)) {
		w->rc = sp_err(w->err, sizeof(w->err), SPATE_ERR_INVALID,
		               "%s: dlq=kafka needs the idempotent producer (true)", key);
		return;
	}
	if (!strcmp(rk_key, "transactional.id")) {
		w->rc = sp_err(w->err, sizeof(w->err), SPATE_ERR_INVALID,
		               "%s: dlq=kafka does not produce in transactions", key);
		return;
	}
	char rkerr[KSINK_RAWSTR];
	rd_kafka_conf_res_t r = rd_kafka_conf_set(w->conf, rk_key, val, rkerr, sizeof(rkerr));
	if (r == RD_KAFKA_CONF_OK)
		return;
	int code = r == RD_KAFKA_CONF_UNKNOWN ? SPATE_ERR_UNKNOWN : SPATE_ERR_INVALID;
	if (sp_kafka_secret_key(rk_key)) /* librdkafka's text may quote the value */
		w->rc =
		    sp_err(w->err, sizeof(w->err), code, "%s: librdkafka rejects this %s (value not shown)",
		           key, r == RD_KAFKA_CONF_UNKNOWN ? "key" : "value");
	else {
		char clean[KSINK_ERRSTR];
		sp_kafka_redact(&w->k->secrets, rkerr, clean, sizeof(clean));
		w->rc = sp_err(w->err, sizeof(w->err), code, "%s: %s", key, clean);
	}
}

static int set_conf(rd_kafka_conf_t *conf, const char *key, const char *val, char *errstr, size_t size)
{
	char rkerr[KSINK_ERRSTR];
	if (rd_kafka_conf_set(conf, key, val, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "dlq kafka: librdkafka refuses %s=%s: %s", key,
		              val, rkerr);
	return SPATE_OK;
}

static int64_t conf_int(rd_kafka_conf_t *conf, const char *key, int64_t def)
{
	char buf[64];
	size_t n = sizeof(buf);
	if (rd_kafka_conf_get(conf, key, buf, &n) != RD_KAFKA_CONF_OK)
		return def;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	return errno || *end || v <= 0 ? def : v;
}

/* Build k->conf from the engine's kafka.* keys. */
static int build_conf(ksink_t *k, const spate_conf_t *c, char *errstr, size_t size)
{
	conf_walk_t w = {.k = k, .conf = rd_kafka_conf_new()};
	if (!w.conf)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	k->conf = w.conf;
	sp_conf_foreach_prefix(c, KSINK_PREFIX, collect_secret, &w);
	if (w.rc)
		return sp_err(errstr, size, w.rc, "%s", w.err);
	/* The sink's own settings go first; the user's keys may override all but the ones
	 * apply_key refuses, and the two set again afterwards. */
	char tmo[32], backoff[32];
	snprintf(tmo, sizeof(tmo), "%d", KSINK_DEFAULT_MESSAGE_TIMEOUT_MS);
	snprintf(backoff, sizeof(backoff), "%d", KSINK_DEFAULT_RECONNECT_BACKOFF_MAX_MS);
	int rc;
	if ((rc = set_conf(w.conf, "message.timeout.ms", tmo, errstr, size)) ||
	    (rc = set_conf(w.conf, "reconnect.backoff.max.ms", backoff, errstr, size)) ||
	    (rc = set_conf(w.conf, "partitioner", "murmur2_random", errstr, size)) ||
	    (rc = set_conf(w.conf, "client.id", "spate-dlq", errstr, size)))
		return rc;
	sp_conf_foreach_prefix(c, KSINK_PREFIX, apply_key, &w);
	if (w.rc)
		return sp_err(errstr, size, w.rc, "%s", w.err);
	if (!w.has_bootstrap)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kafka.bootstrap.servers: must be set for dlq=kafka:%s (host:port,...)",
		              k->topic);
	if ((rc = set_conf(w.conf, "enable.idempotence", "true", errstr, size)) ||
	    (rc = set_conf(w.conf, "acks", "all", errstr, size)))
		return rc;
	rd_kafka_conf_set_dr_msg_cb(w.conf, on_delivery);
	rd_kafka_conf_set_error_cb(w.conf, on_error);
	rd_kafka_conf_set_log_cb(w.conf, on_log);
	rd_kafka_conf_set_opaque(w.conf, k);
	k->message_timeout_ms = (int)conf_int(w.conf, "message.timeout.ms", KSINK_DEFAULT_MESSAGE_TIMEOUT_MS);
	k->message_max_bytes = (size_t)conf_int(w.conf, "message.max.bytes", KSINK_DEFAULT_MESSAGE_MAX_BYTES);
	k->report_wait_ms =
	    k->message_timeout_ms + KSINK_REPORT_GRACE_MS +
	    (int)conf_int(w.conf, "reconnect.backoff.max.ms", KSINK_LIBRDKAFKA_RECONNECT_BACKOFF_MAX_MS);
	return SPATE_OK;
}

/* ---- the producer ----------------------------------------------------------------------- */

/* @locality the sink's own thread */
static void *poller_main(void *arg)
{
	ksink_t *k = arg;
	while (!atomic_load(&k->poller_stop))
		rd_kafka_poll(k->rk, KSINK_POLL_MS);
	return NULL;
}

/* Create the producer, its topic handle and its poller. Caller holds gen_lock exclusively
 * (or is open()). */
static int producer_start(ksink_t *k, char *errstr, size_t size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(k->conf);
	if (!conf)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	char rkerr[KSINK_RAWSTR];
	k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
	if (!k->rk) {
		rd_kafka_conf_destroy(conf);
		return ksink_err(k, errstr, size, SPATE_ERR_INVALID,
		                 "%s kafka:%s: cannot create the producer: %s", k->role, k->topic, rkerr);
	}
	k->rkt = rd_kafka_topic_new(k->rk, k->topic, NULL);
	if (!k->rkt) {
		int e = rd_kafka_last_error();
		rd_kafka_destroy(k->rk);
		k->rk = NULL;
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s kafka:%s: %s", k->role, k->topic,
		              rd_kafka_err2str((rd_kafka_resp_err_t)e));
	}
	atomic_store(&k->fatal, false);
	atomic_store(&k->poller_stop, false);
	if (pthread_create(&k->poller, NULL, poller_main, k)) {
		rd_kafka_topic_destroy(k->rkt);
		rd_kafka_destroy(k->rk);
		k->rkt = NULL;
		k->rk = NULL;
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s kafka:%s: cannot start the poller thread",
		              k->role, k->topic);
	}
	k->poller_running = true;
	return SPATE_OK;
}

/* Stop the poller, give what is still queued flush_ms to be delivered, purge the rest
 * and serve the purged messages' reports (they free abandoned batches), then destroy the
 * producer. Caller holds gen_lock exclusively (or is close()). */
static void producer_stop(ksink_t *k, int flush_ms)
{
	if (k->poller_running) {
		atomic_store(&k->poller_stop, true);
		rd_kafka_yield(k->rk);
		pthread_join(k->poller, NULL);
		k->poller_running = false;
	}
	if (!k->rk)
		return;
	if (rd_kafka_flush(k->rk, flush_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		if (rd_kafka_flush(k->rk, KSINK_PURGE_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
			sp_msg(k->eng, SP_MSG_WARN, "%s kafka:%s: %d messages still queued at close",
			       k->role, k->topic, rd_kafka_outq_len(k->rk));
	}
	rd_kafka_topic_destroy(k->rkt);
	rd_kafka_destroy(k->rk);
	k->rkt = NULL;
	k->rk = NULL;
}

/* Replace a producer that raised a fatal error. Takes gen_lock exclusively, so every
 * write in flight has finished (they fail fast once the producer is fatal). */
static int producer_rebuild(ksink_t *k, char *errstr, size_t size)
{
	int rc = SPATE_OK;
	pthread_rwlock_wrlock(&k->gen_lock);
	if (atomic_load(&k->fatal) || !k->rk) {
		sp_msg(k->eng, SP_MSG_WARN, "%s kafka:%s: the producer failed fatally; starting a new one",
		       k->role, k->topic);
		producer_stop(k, 0);
		rc = producer_start(k, errstr, size);
	}
	pthread_rwlock_unlock(&k->gen_lock);
	return rc;
}

/* Warn early about a topic that does not exist; brokers that do not answer in time are
 * not an error here (writes fail and retry until they do). */
static void check_topic(ksink_t *k)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 0, k->rkt, &md, KSINK_OPEN_METADATA_MS);
	if (e) {
		sp_msg(k->eng, SP_MSG_WARN,
		       "%s kafka:%s: no metadata within %d ms (%s); writes wait for the brokers", k->role, k->topic,
		       KSINK_OPEN_METADATA_MS, rd_kafka_err2str(e));
		return;
	}
	if (md->topic_cnt == 1 && md->topics[0].err)
		sp_msg(k->eng, SP_MSG_WARN, "%s kafka:%s: %s; writes fail until the topic exists", k->role, k->topic,
		       rd_kafka_err2str(md->topics[0].err));
	rd_kafka_metadata_destroy(md);
}

/* ---- the sink ---------------------------------------------------------------------------- */

/* Kafka's legal topic names: 1..249 of [a-zA-Z0-9._-]. */
static bool valid_topic(const char *t)
{
	enum { TOPIC_MAX = 249 };
	size_t n = strlen(t);
	if (n == 0 || n > TOPIC_MAX || !strcmp(t, ".") || !strcmp(t, ".."))
		return false;
	return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void ksink_free(ksink_t *k)
{
	if (k->rk)
		producer_stop(k, KSINK_CLOSE_FLUSH_MS);
	if (k->conf)
		rd_kafka_conf_destroy(k->conf);
	sp_kafka_secrets_free(&k->secrets);
	pthread_rwlock_destroy(&k->gen_lock);
	pthread_mutex_destroy(&k->mu);
	pthread_cond_destroy(&k->cv);
	free(k->topic);
	free(k);
}

static int sink_open(sp_sink_t *s, char *errstr, size_t size)
{
	const char *topic = s->arg;
	if (!topic || !*topic)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "dlq: kafka needs a topic (dlq=kafka:TOPIC)");
	if (!valid_topic(topic))
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "dlq: \"%s\" is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)", topic);
	const spate_conf_t *conf = s->conf ? s->conf : sp_engine_conf(s->eng); /* a named sink's own */
	if (!conf)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "kafka:%s: needs a configuration for its kafka.* keys",
		              topic);
	ksink_t *k = calloc(1, sizeof(*k));
	if (!k || !(k->topic = strdup(topic))) {
		free(k);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	}
	k->eng = s->eng;
	k->role = s->eng ? "dlq" : "produce";
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* a rebuild must not starve behind a stream of writes */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&k->gen_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&k->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);

	int rc = build_conf(k, conf, errstr, size);
	if (!rc)
		rc = producer_start(k, errstr, size);
	if (rc) {
		ksink_free(k);
		return rc;
	}
	check_topic(k);
	s->ctx = k;
	return SPATE_OK;
}

/* Wait on k->cv until deadline (monotonic ms). Caller holds k->mu. */
static void wait_until(ksink_t *k, int64_t deadline_ms)
{
	struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
	pthread_cond_timedwait(&k->cv, &k->mu, &ts);
}

/* Hand one record to librdkafka, waiting while its queue is full (until deadline).
 * Returns the produce error (NO_ERROR when queued; then the report counts it down). */
static rd_kafka_resp_err_t produce_one(ksink_t *k, kbatch_t *b, const spate_push_record_t *r,
                                       int64_t deadline_ms)
{
	for (;;) {
		rd_kafka_headers_t *hdrs = NULL;
		if (r->header_cnt) {
			hdrs = rd_kafka_headers_new(r->header_cnt);
			for (size_t j = 0; j < r->header_cnt; j++) {
				const spate_header_t *h = &r->headers[j];
				rd_kafka_header_add(hdrs, h->key, (ssize_t)h->key_len, h->value,
				                    h->value ? (ssize_t)h->value_len : 0);
			}
		}
		rd_kafka_resp_err_t e = rd_kafka_producev(
		    k->rk, RD_KAFKA_V_RKT(k->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_KEY(r->key, r->key ? r->key_len : 0),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)r->value, r->value ? r->value_len : 0),
		    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_TIMESTAMP(r->timestamp_ms), RD_KAFKA_V_OPAQUE(b),
		    RD_KAFKA_V_END);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
			return e; /* the message owns hdrs now */
		if (hdrs)
			rd_kafka_headers_destroy(hdrs);
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || sp_now_ms() >= deadline_ms)
			return e;
		pthread_mutex_lock(&k->mu); /* the poller frees room as reports come */
		wait_until(k, sp_now_ms() + KSINK_QUEUE_FULL_WAIT_MS);
		pthread_mutex_unlock(&k->mu);
	}
}

/* @locality any worker thread */
static int sink_write(sp_sink_t *s, const spate_push_record_t *recs, size_t n, char *errstr, size_t size)
{
	ksink_t *k = s->ctx;
	if (n == 0)
		return SPATE_OK;
	if (atomic_load(&k->fatal)) {
		int rc = producer_rebuild(k, errstr, size);
		if (rc)
			return rc == SPATE_ERR_NOMEM ? rc : SPATE_ERR_SINK;
	}
	kbatch_t *b = calloc(1, sizeof(*b));
	if (!b)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s kafka:%s: out of memory", k->role, k->topic);
	pthread_rwlock_rdlock(&k->gen_lock);
	if (!k->rk) { /* a rebuild failed; the next write tries again */
		pthread_rwlock_unlock(&k->gen_lock);
		free(b);
		atomic_store(&k->fatal, true);
		return sp_err(errstr, size, SPATE_ERR_SINK, "%s kafka:%s: no producer (creating it failed)",
		              k->role, k->topic);
	}
	/* Count every record before the first produce: a report may come before the loop ends. */
	pthread_mutex_lock(&k->mu);
	b->pending = n;
	pthread_mutex_unlock(&k->mu);

	int64_t start = sp_now_ms();
	int64_t produce_deadline = start + k->message_timeout_ms;
	rd_kafka_resp_err_t perr = RD_KAFKA_RESP_ERR_NO_ERROR;
	size_t queued = 0;
	for (; queued < n; queued++) {
		perr = produce_one(k, b, &recs[queued], produce_deadline);
		if (perr)
			break;
	}
	int64_t deadline = sp_now_ms() + k->report_wait_ms;

	pthread_mutex_lock(&k->mu);
	b->pending -= n - queued; /* never queued: no report will come */
	while (b->pending > 0 && sp_now_ms() < deadline)
		wait_until(k, deadline);
	size_t missing = b->pending, failed = b->failed;
	char first[KSINK_ERRSTR];
	snprintf(first, sizeof(first), "%s", b->errstr);
	if (missing)
		b->abandoned = true; /* the last report frees it */
	else
		free(b);
	pthread_mutex_unlock(&k->mu);
	pthread_rwlock_unlock(&k->gen_lock);

	if (perr) {
		size_t rec_bytes = recs[queued].key_len + recs[queued].value_len;
		return ksink_err(
		    k, errstr, size, SPATE_ERR_SINK,
		    "%s kafka:%s: record %zu of %zu (%zu key+value bytes, %zu headers) not accepted: %s",
		    k->role, k->topic, queued + 1, n, rec_bytes, recs[queued].header_cnt, rd_kafka_err2str(perr));
	}
	if (missing)
		return sp_err(errstr, size, SPATE_ERR_SINK,
		              "%s kafka:%s: %zu of %zu delivery reports did not come within %d ms", k->role, k->topic,
		              missing, n, k->report_wait_ms);
	if (failed)
		return sp_err(errstr, size, SPATE_ERR_SINK,
		              "%s kafka:%s: %zu of %zu records not delivered: %s", k->role, k->topic, failed, n,
		              first);
	return SPATE_OK;
}

static size_t sink_max_record_bytes(sp_sink_t *s)
{
	ksink_t *k = s->ctx;
	return k->message_max_bytes > KSINK_OVERHEAD_MARGIN ? k->message_max_bytes - KSINK_OVERHEAD_MARGIN
	                                                    : 0;
}

static void sink_close(sp_sink_t *s)
{
	ksink_t *k = s->ctx;
	if (!k)
		return;
	ksink_free(k);
	s->ctx = NULL;
}

const sp_sink_ops_t sp_sink_kafka = {
    .version = SP_SINK_OPS_VERSION,
    .name = "kafka",
    .desc = "Kafka through librdkafka: kafka:TOPIC (idempotent, acks=all; kafka.* keys go to librdkafka)",
    .conf_prefix = "kafka.",
    .syntax = "kafka:TOPIC",
    .open = sink_open,
    .write = sink_write,
    .max_record_bytes = sink_max_record_bytes,
    .close = sink_close,
};
