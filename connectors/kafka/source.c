/* source.c - Kafka as a source (`source=kafka`) and the consumer group as a checkpoint
 * store (`store=kafka`), through librdkafka's high-level consumer. This file is the
 * consumer (open, seek, service, lag); poll.c turns messages into chunks; group.c is
 * the group side (rebalances and releases, the group's join_state, membership, stop.at.end,
 * closing); store.c is store=kafka; consumer.h is what they share.
 *
 * Keys: `topics` (comma list), `group.id`, `kafka.bootstrap.servers`; every other
 * `kafka.*` key goes to librdkafka without the prefix (kafka.debug and kafka.log_level
 * too, as they are). The consumer always runs with enable.auto.commit=false,
 * enable.auto.offset.store=false, enable.partition.eof=true and auto.offset.reset=error
 * (those keys are refused), with statistics.interval.ms=KSRC_STATS_MS unless
 * kafka.statistics.interval.ms says otherwise (the group's cgrp.join_state comes from the
 * statistics), and with the cooperative-sticky assignor unless
 * kafka.partition.assignment.strategy says otherwise (eager assignors work too).
 *
 * Partitions come and go with the group: the rebalance callback (served inside
 * rd_kafka_consume_batch_queue or rd_kafka_consumer_poll, i.e. inside poll() or
 * service(), on the engine thread) adds each assigned partition to the engine as a NEW
 * sp_part_t named kafka/TOPIC/P, starts it (the engine loads its checkpoint and calls
 * seek(), or resolves starting.position and saves it at once) and assigns it at the
 * offset seek() chose. A checkpoint before the log start is an error naming topic,
 * partition and the lost range (guarantee 6); so is an out-of-range fetch later
 * (auto.offset.reset=error). On revoke each partition is handed to
 * sp_engine_partition_release and the callback returns: the engine waits for its
 * in-flight records on its own loop (up to kafka.max.poll.interval.ms, default 30 s)
 * and saves its checkpoint unless the assignment was lost; once every partition of the
 * revoke is released (released()), the source unassigns them (group.c).
 *
 * poll() (poll.c) takes a batch from the consumer queue and groups it by partition
 * into chunks. Messages that did not fit and messages served by service() while paused
 * wait in a FIFO (the stash). While the engine is paused (or the stash is large) every
 * assigned partition is paused, and service() still serves the group's callbacks and
 * heartbeats.
 *
 * stop.at.end: open() notes the high watermark (the last stable offset with
 * isolation.level=read_committed) of every partition of the topics; ended() is true
 * once the group's committed offsets of ALL those partitions (those other members own
 * too) reach them, checked at most every KSRC_ENDED_CHECK_MS. With a store that is not
 * the group, or none (store= empty: nothing is committed, as kcat -e), the consumer
 * must hold every partition: ended() is true once it has handed each over up to its
 * end, and the engine then waits for its own checkpoint (with no store, the DONE
 * watermark) to reach the end too (p->end, set at assignment). A partition whose tail
 * is not records (a transaction's commit or abort marker, aborted records under
 * read_committed, compaction) would never "reach" its end through records alone: at
 * PARTITION_EOF (offset E) with E past the next expected offset, poll() returns a skip
 * chunk to E-1 after the partition's records, and the tracker moves the checkpoint
 * there once those are DONE, so the commit reaches E.
 *
 * Prefetch: librdkafka keeps its own queue of fetched messages. Its bounds are set
 * from the engine's (1/8 of max.inflight.bytes and max.inflight.records, at most
 * 64 MiB and 1,000,000, unless kafka.queued.max.messages.kbytes / kafka.queued.min.messages
 * say otherwise) and what it and the stash may hold is declared in held_bytes /
 * held_records, which the engine takes off its bounds. librdkafka 2.0.2 re-checks a
 * full queue only about once a second, so a small prefetch costs throughput (see
 * docs/kafka.md).
 *
 * store=kafka (store.c): the engine asks the source for it (open_store), and the store
 * commits through this consumer; any other source refuses it.
 *
 * Closing: librdkafka before 2.3.0 aborts when a cooperative-sticky consumer is
 * destroyed after its group chose the assignor but before the first assignment
 * (librdkafka issue #4312); close() then serves the group until that assignment comes,
 * at most for session.timeout.ms (see group.c, sp_kafka_close).
 *
 * Secrets: values of kafka.* keys that name a password, secret or key never reach an
 * error text or a log line (errors name the key only; librdkafka's log lines have such
 * values replaced by "***").
 *
 * @locality every callback runs on the engine thread, except chunk release (the
 * tracker thread: rd_kafka_message_destroy is thread-safe).
 */
#include "consumer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------ */

static unsigned hash_tp(const char *topic, int32_t partition)
{
	uint32_t h = 2166136261u;
	for (const char *c = topic; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	h = (h ^ (uint32_t)partition) * 16777619u;
	return h % KSRC_BUCKETS;
}

kpart_t *sp_kafka_kp_find(ksrc_t *x, const char *topic, int32_t partition)
{
	for (kpart_t *k = x->buckets[hash_tp(topic, partition)]; k; k = k->hnext)
		if (k->partition == partition && !strcmp(k->topic, topic))
			return k;
	return NULL;
}

kpart_t *sp_kafka_kp_get(ksrc_t *x, const char *topic, int32_t partition)
{
	kpart_t *k = sp_kafka_kp_find(x, topic, partition);
	if (k)
		return k;
	if (x->nall == x->cap_all) {
		size_t cap = x->cap_all ? x->cap_all * 2 : 64;
		kpart_t **n = realloc(x->all, cap * sizeof(*n));
		if (!n)
			return NULL;
		x->all = n;
		x->cap_all = cap;
	}
	k = calloc(1, sizeof(*k));
	if (!k || !(k->topic = strdup(topic))) {
		free(k);
		return NULL;
	}
	if (!x->rk) {
		free(k->topic);
		free(k);
		return NULL;
	}
	k->partition = partition;
	k->committed = k->loaded = k->acked = -1;
	k->eof = k->eof_hi = -1;
	k->rkt = rd_kafka_topic_new(x->rk, topic, NULL);
	if (!k->rkt) {
		free(k->topic);
		free(k);
		return NULL;
	}
	unsigned b = hash_tp(topic, partition);
	k->hnext = x->buckets[b];
	x->buckets[b] = k;
	x->all[x->nall++] = k;
	return k;
}

/* "kafka/TOPIC/P" -> the kpart (topic may contain '/': the partition is after the last). */
kpart_t *sp_kafka_kp_by_name(ksrc_t *x, const char *name, bool create)
{
	size_t pre = strlen(KSRC_NAME "/");
	if (strncmp(name, KSRC_NAME "/", pre))
		return NULL;
	const char *slash = strrchr(name, '/');
	if (!slash || slash < name + pre + 1)
		return NULL;
	char *end;
	long v = strtol(slash + 1, &end, 10);
	if (*end || end == slash + 1 || v < 0 || v > INT32_MAX)
		return NULL;
	char topic[512];
	size_t n = (size_t)(slash - (name + pre));
	if (n >= sizeof(topic))
		return NULL;
	memcpy(topic, name + pre, n);
	topic[n] = 0;
	return create ? sp_kafka_kp_get(x, topic, (int32_t)v) : sp_kafka_kp_find(x, topic, (int32_t)v);
}

void sp_kafka_set_fatal(ksrc_t *x, int rc, const char *fmt, ...)
{
	if (x->fatal_rc)
		return; /* the first error is the one reported */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->fatal, sizeof(x->fatal), fmt, ap);
	va_end(ap);
	x->fatal_rc = rc;
}

/* ---- pause and resume ---------------------------------------------------------------- */

static void pause_all(ksrc_t *x, bool pause)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(x->rk, &a) || !a)
		return;
	if (a->cnt) {
		rd_kafka_resp_err_t err =
		    pause ? rd_kafka_pause_partitions(x->rk, a) : rd_kafka_resume_partitions(x->rk, a);
		if (err)
			sp_msg(x->eng, SP_MSG_WARN, "kafka: %s partitions: %s",
			       pause ? "pausing" : "resuming", rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(a);
}

/* Pause fetching the partitions the engine paused (over their share of the in-flight
 * bounds: a retrying lane, a slow key) and resume those it resumed; what was fetched
 * for them meanwhile waits in the engine. Other partitions are not touched. */
static void sync_paused(ksrc_t *x)
{
	for (size_t i = 0; i < x->nall; i++) {
		kpart_t *k = x->all[i];
		bool want = k->p && k->p->paused;
		if (want == k->paused || (!k->p && !k->paused))
			continue;
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(l, k->topic, k->partition);
		rd_kafka_resp_err_t err =
		    want ? rd_kafka_pause_partitions(x->rk, l) : rd_kafka_resume_partitions(x->rk, l);
		rd_kafka_topic_partition_list_destroy(l);
		if (err)
			sp_msg(x->eng, SP_MSG_WARN, "kafka: %s %s [%" PRId32 "]: %s",
			       want ? "pausing" : "resuming", k->topic, k->partition, rd_kafka_err2str(err));
		k->paused = want;
	}
}

/* ---- open ---------------------------------------------------------------------- */

typedef struct conf_walk {
	ksrc_t *x;
	rd_kafka_conf_t *conf;
	int rc;
	char *err;
	size_t size;
} conf_walk_t;

static void collect_secret(void *arg, const char *key, const char *val)
{
	conf_walk_t *w = arg;
	int rc = sp_kafka_secrets_add(&w->x->secrets, key, val, w->err, w->size);
	if (rc && !w->rc)
		w->rc = rc;
}

/* Keys the source sets itself: what the delivery guarantees rest on. */
static const char *const fixed_keys[] = {"enable.auto.commit",
                                         "enable.auto.offset.store",
                                         "enable.partition.eof",
                                         "auto.offset.reset",
                                         "group.id",
                                         NULL};

static void apply_key(void *arg, const char *key, const char *val)
{
	conf_walk_t *w = arg;
	if (w->rc)
		return;
	const char *rk_key = key + strlen(KSRC_PREFIX);
	for (int i = 0; fixed_keys[i]; i++)
		if (!strcmp(rk_key, fixed_keys[i])) {
			w->rc = sp_err(w->err, w->size, SPATE_ERR_INVALID,
			               "%s: set by the kafka source itself and may not be changed%s", key,
			               !strcmp(rk_key, "group.id") ? " (use the group.id key)" : "");
			return;
		}
	char rkerr[512];
	if (rd_kafka_conf_set(w->conf, rk_key, val, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
		if (sp_kafka_secret_key(rk_key))
			w->rc = sp_err(w->err, w->size, SPATE_ERR_INVALID,
			               "%s: rejected by librdkafka (value not shown)", key);
		else
			w->rc = sp_err(w->err, w->size, SPATE_ERR_INVALID, "%s: %s", key, rkerr);
	}
}

typedef struct kget {
	const char *key;
	const char *val;
} kget_t;

static void kget_fn(void *arg, const char *key, const char *val)
{
	kget_t *g = arg;
	if (!strcmp(key, g->key))
		g->val = val;
}

/* The value of a pass-through kafka.* key, or NULL when unset. */
static const char *kconf(const spate_conf_t *c, const char *key)
{
	kget_t g = {key, NULL};
	sp_conf_foreach_prefix(c, KSRC_PREFIX, kget_fn, &g);
	return g.val;
}

/* A kafka.* duration in ms, or dflt when unset or not positive. */
static int64_t kconf_ms(const spate_conf_t *c, const char *key, int64_t dflt)
{
	const char *v = kconf(c, key);
	long long n = v ? strtoll(v, NULL, 10) : 0;
	return n > 0 ? n : dflt;
}

static int set_fixed(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr, size_t size)
{
	char rkerr[512];
	if (rd_kafka_conf_set(conf, k, v, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "kafka source: %s=%s: %s", k, v, rkerr);
	return SPATE_OK;
}

/* stop.at.end: note the end of every partition of the topics. */
static int note_ends(ksrc_t *x, const char *topics, char *errstr, size_t size)
{
	char *list = strdup(topics), *save = NULL;
	if (!list)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	int rc = SPATE_OK;
	for (char *t = strtok_r(list, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(x->rk, t, NULL);
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(x->rk, 0, rkt, &md, KSRC_REQUEST_MS)
		                            : RD_KAFKA_RESP_ERR__INVALID_ARG;
		if (!e && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0))
			e = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
			                                            : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
		if (e) {
			rc = sp_err(errstr, size, SPATE_ERR_SOURCE,
			            "topics: cannot read the metadata of topic \"%s\": %s", t,
			            rd_kafka_err2str(e));
		}
		for (int i = 0; !rc && i < md->topics[0].partition_cnt; i++) {
			int32_t part = md->topics[0].partitions[i].id;
			int64_t lo = 0, hi = 0;
			e = rd_kafka_query_watermark_offsets(x->rk, t, part, &lo, &hi, KSRC_REQUEST_MS);
			if (e) {
				rc = sp_err(errstr, size, SPATE_ERR_SOURCE,
				            "stop.at.end: cannot read the end of kafka/%s/%" PRId32 ": %s", t,
				            part, rd_kafka_err2str(e));
				break;
			}
			kpart_t *k = sp_kafka_kp_get(x, t, part);
			if (!k) {
				rc = sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
				break;
			}
			k->has_end = true;
			k->end = hi;
			k->at_end = hi <= lo; /* empty: nothing to wait for */
		}
		if (md)
			rd_kafka_metadata_destroy(md);
		if (rkt)
			rd_kafka_topic_destroy(rkt);
	}
	free(list);
	return rc;
}

static uint64_t rk_conf_u64(rd_kafka_t *rk, const char *key)
{
	char v[64];
	size_t n = sizeof(v);
	if (rd_kafka_conf_get(rd_kafka_conf(rk), key, v, &n) != RD_KAFKA_CONF_OK)
		return 0;
	long long r = strtoll(v, NULL, 10);
	return r > 0 ? (uint64_t)r : 0;
}

/* The prefetch librdkafka settled on (it lowers fetch.max.bytes to the queue size) and
 * the stash's share. */
static void read_prefetch(ksrc_t *x)
{
	x->prefetch_bytes = rk_conf_u64(x->rk, "queued.max.messages.kbytes") * 1024;
	x->prefetch_msgs = rk_conf_u64(x->rk, "queued.min.messages");
	x->fetch_max_bytes = rk_conf_u64(x->rk, "fetch.max.bytes");
	x->part_fetch_bytes = rk_conf_u64(x->rk, "max.partition.fetch.bytes");
	x->stash_max = x->prefetch_msgs < KSRC_BATCH ? x->prefetch_msgs : KSRC_BATCH;
	if (!x->stash_max)
		x->stash_max = 1;
	x->stash_max_bytes = x->prefetch_bytes / 4 ? x->prefetch_bytes / 4 : 1;
}

static void ksrc_free(ksrc_t *x)
{
	sp_kafka_stash_clear(x);
	if (x->q)
		rd_kafka_queue_destroy(x->q);
	if (x->rk && !sp_kafka_close(x))
		return; /* librdkafka issue #4312: the handle, and x its callbacks hold, stay */
	if (x->pending)
		rd_kafka_topic_partition_list_destroy(x->pending);
	if (x->commit_q) /* consumer_close waited for the commits in flight */
		rd_kafka_queue_destroy(x->commit_q);
	for (size_t i = 0; i < x->nall; i++) /* topic references go before the handle */
		if (x->all[i]->rkt)
			rd_kafka_topic_destroy(x->all[i]->rkt);
	if (x->rk)
		rd_kafka_destroy(x->rk);
	for (int i = 0; i < 2; i++)
		if (x->pipefd[i] >= 0)
			close(x->pipefd[i]);
	for (size_t i = 0; i < x->nall; i++) {
		free(x->all[i]->topic);
		free(x->all[i]);
	}
	free(x->all);
	sp_kafka_stash_free(x);
	sp_kafka_secrets_free(&x->secrets);
	free(x);
}

static int ksrc_open(sp_source_t *s, char *errstr, size_t size)
{
	const spate_conf_t *c = sp_engine_conf(s->eng);
	const char *topics = sp_conf_str(c, "topics");
	const char *group = sp_conf_str(c, "group.id");
	if (s->arg && *s->arg)
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "source: kafka takes no argument (\"kafka:%s\"); name the topics with topics=", s->arg);
	if (!*topics)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "topics: must be set for source=kafka (a comma list)");
	if (!*group)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "group.id: must be set for source=kafka");
	ksrc_t *x = calloc(1, sizeof(*x));
	if (!x)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	x->eng = s->eng;
	x->want_hdrs = sp_engine_wants_headers(s->eng);
	x->pipefd[0] = x->pipefd[1] = -1;
	x->group = group;
	x->topics = topics;
	const char *store = sp_conf_str(c, "store");
	char sname[64];
	sp_split_uri(store, sname, sizeof(sname));
	if (*store && strcmp(sname, KSRC_NAME))
		x->foreign_store = store;
	x->no_store = !*store && sp_conf_is_set(c, "store"); /* as the engine decides */
	x->stop_at_end = sp_conf_bool(c, "stop.at.end");
	x->revoke_ms = kconf_ms(c, "kafka.max.poll.interval.ms", KSRC_REVOKE_MS);
	x->partial_grace_ms = 2 * kconf_ms(c, "kafka.session.timeout.ms", KSRC_SESSION_TIMEOUT_MS);
	int rc = SPATE_OK;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	conf_walk_t w = {x, conf, 0, errstr, size};
	sp_conf_foreach_prefix(c, KSRC_PREFIX, collect_secret, &w);
	const char *bs = kconf(c, "kafka.bootstrap.servers");
	if (!bs || !*bs) {
		rc = sp_err(errstr, size, SPATE_ERR_INVALID,
		            "kafka.bootstrap.servers: must be set for source=kafka");
		goto fail;
	}
	if ((rc = set_fixed(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, size)) ||
	    (rc = set_fixed(conf, "enable.auto.commit", "false", errstr, size)) ||
	    (rc = set_fixed(conf, "enable.auto.offset.store", "false", errstr, size)) ||
	    (rc = set_fixed(conf, "enable.partition.eof", "true", errstr, size)) ||
	    (rc = set_fixed(conf, "auto.offset.reset", "error", errstr, size)))
		goto fail;
	/* librdkafka's prefetch is a share of the in-flight bounds unless kafka.* sets it */
	char num[32];
	int64_t kb = sp_conf_int(c, "max.inflight.bytes") / KSRC_PREFETCH_DIV / 1024;
	int64_t msgs = sp_conf_int(c, "max.inflight.records") / KSRC_PREFETCH_DIV;
	snprintf(num, sizeof(num), "%" PRId64,
	         kb < 1                      ? 1
	         : kb > KSRC_PREFETCH_MAX_KB ? KSRC_PREFETCH_MAX_KB
	                                     : kb);
	if ((rc = set_fixed(conf, "queued.max.messages.kbytes", num, errstr, size)))
		goto fail;
	snprintf(num, sizeof(num), "%" PRId64,
	         msgs < 1                        ? 1
	         : msgs > KSRC_PREFETCH_MAX_MSGS ? KSRC_PREFETCH_MAX_MSGS
	                                         : msgs);
	if ((rc = set_fixed(conf, "queued.min.messages", num, errstr, size)))
		goto fail;
	char rkerr[512];
	if (rd_kafka_conf_set(conf, "group.id", group, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
		rc = sp_err(errstr, size, SPATE_ERR_INVALID, "group.id: %s", rkerr);
		goto fail;
	}
	sp_conf_foreach_prefix(c, KSRC_PREFIX, apply_key, &w);
	if ((rc = w.rc))
		goto fail;
	/* the group's cgrp.join_state comes from librdkafka's statistics (kafka.debug and
	 * kafka.log_level go to librdkafka as they are) */
	char stats[32];
	size_t sn = sizeof(stats);
	if (!kconf(c, "kafka.statistics.interval.ms") ||
	    rd_kafka_conf_get(conf, "statistics.interval.ms", stats, &sn) != RD_KAFKA_CONF_OK) {
		snprintf(stats, sizeof(stats), "%d", KSRC_STATS_MS);
		if ((rc = set_fixed(conf, "statistics.interval.ms", stats, errstr, size)))
			goto fail;
	}
	rd_kafka_conf_set_opaque(conf, x);
	rd_kafka_conf_set_rebalance_cb(conf, sp_kafka_on_rebalance);
	rd_kafka_conf_set_error_cb(conf, sp_kafka_on_error);
	rd_kafka_conf_set_log_cb(conf, sp_kafka_on_log);
	rd_kafka_conf_set_stats_cb(conf, sp_kafka_on_stats);
	if (rd_kafka_conf_interceptor_add_on_new(conf, KSRC_NAME "-source", sp_kafka_on_new, x)) {
		rc = sp_err(errstr, size, SPATE_ERR_SOURCE, "source=kafka: cannot add its interceptor");
		goto fail;
	}
	x->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
	if (!x->rk) {
		char clean[512];
		sp_kafka_redact(&x->secrets, rkerr, clean, sizeof(clean));
		rc = sp_err(errstr, size, SPATE_ERR_SOURCE, "source=kafka: cannot create the consumer: %s",
		            clean);
		goto fail;
	}
	conf = NULL; /* owned by rk now */
	read_prefetch(x);
	x->stats_ms = (int64_t)rk_conf_u64(x->rk, "statistics.interval.ms");
	x->bug_4312 = sp_kafka_has_bug_4312(x);
	x->session_ms = (int64_t)rk_conf_u64(x->rk, "session.timeout.ms");
	if (!x->session_ms)
		x->session_ms = KSRC_SESSION_TIMEOUT_MS;
	s->held_bytes = 2 * (x->prefetch_bytes + x->fetch_max_bytes + x->stash_max_bytes);
	s->held_records = 2 * (x->prefetch_msgs + x->stash_max);
	rd_kafka_poll_set_consumer(x->rk);
	x->q = rd_kafka_queue_get_consumer(x->rk);
	if (pipe2(x->pipefd, O_NONBLOCK | O_CLOEXEC)) {
		rc = sp_err(errstr, size, SPATE_ERR_IO, "source=kafka: pipe: %s", strerror(errno));
		goto fail;
	}
	rd_kafka_queue_io_event_enable(x->q, x->pipefd[1], "1", 1);
	if (x->stop_at_end && (rc = note_ends(x, topics, errstr, size)))
		goto fail;
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(4);
	char *list = strdup(topics), *save = NULL;
	for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
		rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
	free(list);
	rd_kafka_resp_err_t e = sub->cnt ? rd_kafka_subscribe(x->rk, sub) : RD_KAFKA_RESP_ERR__INVALID_ARG;
	rd_kafka_topic_partition_list_destroy(sub);
	if (e) {
		rc = sp_err(errstr, size, SPATE_ERR_SOURCE, "topics: cannot subscribe to \"%s\": %s", topics,
		            rd_kafka_err2str(e));
		goto fail;
	}
	x->subscribed = true;
	x->last_poll_ms = sp_now_ms();
	s->ctx = x;
	return SPATE_OK;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	ksrc_free(x);
	return rc;
}

/* ---- seek ------------------------------------------------------------------------- */

static int ksrc_seek(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ckpt, sp_ckpt_t *resolved, char *errstr,
                     size_t size)
{
	ksrc_t *x = s->ctx;
	kpart_t *k = p->src_ctx;
	const char *topic = p->pub.topic;
	int32_t part = p->pub.partition;
	int64_t lo = 0, hi = 0, off;
	rd_kafka_resp_err_t e =
	    rd_kafka_query_watermark_offsets(x->rk, topic, part, &lo, &hi, KSRC_REQUEST_MS);
	if (e)
		return sp_err(errstr, size, SPATE_ERR_SOURCE, "%s: cannot read the watermarks: %s",
		              p->pub.name, rd_kafka_err2str(e));
	k->low = lo;
	if (ckpt) {
		if (!ckpt->beginning &&
		    (!sp_pos_is_offset(&ckpt->after) || ckpt->after.w[2] >= (uint64_t)INT64_MAX))
			return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: checkpoint is not a Kafka offset",
			              p->pub.name);
		int64_t committed = k->loaded;
		k->loaded = -1;
		/* "beginning" is offset 0 (a start resolved past it is saved as the offset
		 * before it): a log start past 0 is a range retention removed (guarantee 6) */
		if (ckpt->beginning)
			off = committed >= 0 ? committed : 0;
		else
			off = (int64_t)ckpt->after.w[2] + 1;
		if (off < lo)
			return sp_err(
			    errstr, size, SPATE_ERR_OUT_OF_RANGE,
			    "%s: topic %s partition %" PRId32 ": the checkpoint (next offset %" PRId64
			    ") is below the log start %" PRId64 ": offsets %" PRId64 "..%" PRId64
			    " were deleted before they were handled; nothing is skipped silently: to start "
			    "again at starting.position, reset this partition's checkpoint (`spate "
			    "checkpoint "
			    "reset STORE --partition %s`, or the group's offset with kafka-consumer-groups "
			    "--reset-offsets for store=kafka)",
			    p->pub.name, topic, part, off, lo, off, lo - 1, p->pub.name);
		if (off > hi)
			return sp_err(errstr, size, SPATE_ERR_OUT_OF_RANGE,
			              "%s: topic %s partition %" PRId32
			              ": the checkpoint (next offset %" PRId64
			              ") is past the end of the log (high watermark %" PRId64 ")",
			              p->pub.name, topic, part, off, hi);
	} else {
		const char *sp = sp_conf_str(sp_engine_conf(s->eng), "starting.position");
		if (!strcmp(sp, "latest")) {
			off = hi;
		} else if (!strncmp(sp, "at-timestamp:", 13)) {
			rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
			rd_kafka_topic_partition_list_add(l, topic, part)->offset =
			    strtoll(sp + 13, NULL, 10);
			e = rd_kafka_offsets_for_times(x->rk, l, KSRC_REQUEST_MS);
			if (!e)
				e = l->elems[0].err;
			off = l->elems[0].offset;
			rd_kafka_topic_partition_list_destroy(l);
			if (e)
				return sp_err(errstr, size, SPATE_ERR_SOURCE, "starting.position: %s: %s: %s",
				              sp, p->pub.name, rd_kafka_err2str(e));
			if (off < 0) /* no record at or after the time */
				off = hi;
		} else {
			off = lo;
		}
		if (off < lo)
			off = lo;
		if (resolved) {
			memset(resolved, 0, sizeof(*resolved));
			if (off == 0)
				resolved->beginning = true;
			else
				resolved->after = sp_pos((uint64_t)off - 1);
		}
	}
	k->next = off;
	return SPATE_OK;
}

/* ---- service, fd, lag, ended ------------------------------------------------------------ */

static int ksrc_service(sp_source_t *s, bool paused, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	if (x->partial_since_ms && sp_now_ms() - x->partial_since_ms >= x->partial_grace_ms)
		sp_kafka_check_single_member(x, NULL);
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	bool want = paused || sp_kafka_stash_full(x, 2);
	if (want != x->paused) {
		x->paused = want;
		pause_all(x, want);
		for (size_t i = 0; i < x->nall; i++)
			x->all[i]->paused = want;
	}
	if (!x->paused)
		sync_paused(x);
	/* serve rebalances when poll() does not: keep what arrives (once partitions are
	 * paused, librdkafka drops what it had fetched for them and little arrives) */
	if (paused || sp_now_ms() - x->last_poll_ms >= KSRC_SERVE_MS) {
		sp_kafka_drain_pipe(x);
		/* in batches, as poll() takes them (a message at a time cost half again as much) */
		rd_kafka_message_t *buf[KSRC_SERVE_BATCH];
		ssize_t got;
		while (x->paused || !sp_kafka_stash_full(x, 2)) {
			size_t take = KSRC_SERVE_BATCH, len = sp_kafka_stash_len(x);
			if (!x->paused && 2 * x->stash_max - len < take)
				take = 2 * x->stash_max - len; /* not full: len < 2 * stash_max */
			if ((got = rd_kafka_consume_batch_queue(x->q, 0, buf, take)) <= 0)
				break;
			for (ssize_t i = 0; i < got; i++)
				if (sp_kafka_stash_push(x, buf[i])) {
					for (ssize_t j = i; j < got; j++)
						rd_kafka_message_destroy(buf[j]);
					return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
				}
		}
		if (!paused)
			x->last_poll_ms = sp_now_ms();
	}
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	return SPATE_OK;
}

/* librdkafka's prefetch, the stash, and room for one partition's fetch in the engine. */
static uint64_t ksrc_min_inflight(sp_source_t *s, char *why, size_t size)
{
	ksrc_t *x = s->ctx;
	snprintf(why, size,
	         "the Kafka consumer's prefetch (kafka.queued.max.messages.kbytes=%" PRIu64
	         " and one fetch of kafka.fetch.max.bytes=%" PRIu64
	         ", twice, and the source's stash) and one "
	         "kafka.max.partition.fetch.bytes=%" PRIu64,
	         x->prefetch_bytes / 1024, x->fetch_max_bytes, x->part_fetch_bytes);
	return s->held_bytes + x->part_fetch_bytes;
}

static int ksrc_fd(sp_source_t *s)
{
	ksrc_t *x = s->ctx;
	return x->pipefd[0];
}

static int ksrc_next_ms(sp_source_t *s)
{
	ksrc_t *x = s->ctx;
	if (!x->assigned_once || x->revoking || x->paused || x->stop_at_end || sp_kafka_stash_len(x))
		return KSRC_TICK_MS;
	return -1;
}

static int64_t ksrc_lag(sp_source_t *s)
{
	ksrc_t *x = s->ctx;
	int64_t lag = 0;
	for (size_t i = 0; i < x->nall; i++) {
		kpart_t *k = x->all[i];
		if (!k->p)
			continue;
		int64_t lo, hi;
		if (rd_kafka_get_watermark_offsets(x->rk, k->topic, k->partition, &lo, &hi) || hi < 0)
			continue;
		/* at the end it can read (records past the last stable offset wait for their
		 * transaction) until the high watermark moves */
		if (k->eof >= 0 && k->next >= k->eof && hi == k->eof_hi)
			continue;
		if (hi > k->next)
			lag += hi - k->next;
	}
	return lag + (int64_t)sp_kafka_stash_len(x);
}

/* p's share of ksrc_lag, from librdkafka's cached watermarks (no request). */
static int64_t ksrc_part_lag(sp_source_t *s, sp_part_t *p)
{
	ksrc_t *x = s->ctx;
	kpart_t *k = p->src_ctx;
	int64_t lo, hi;
	if (!k || rd_kafka_get_watermark_offsets(x->rk, k->topic, k->partition, &lo, &hi) || hi < 0)
		return -1;
	if (k->eof >= 0 && k->next >= k->eof && hi == k->eof_hi)
		return 0;
	return hi > k->next ? hi - k->next : 0;
}

static void ksrc_close(sp_source_t *s)
{
	ksrc_t *x = s->ctx;
	if (!x)
		return;
	x->closing = true;
	ksrc_free(x);
	s->ctx = NULL;
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t kafka_source_opts[] = {
    {"topics", SP_OPT_STR, 0, 0, NULL, "", "kafka source: the topics to consume, a comma list"},
    {"group.id", SP_OPT_STR, 0, 0, NULL, "", "kafka source: the consumer group (store=kafka commits to it)"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_source_ops_t sp_source_kafka = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = KSRC_NAME,
    .desc = "Kafka through a consumer group: topics=T1,T2 group.id=G kafka.bootstrap.servers=H:P",
    .opts = kafka_source_opts,
    .conf_prefix = KSRC_PREFIX,
    .syntax = "kafka",
    .open = ksrc_open,
    .seek = ksrc_seek,
    .poll = sp_kafka_poll,
    .fd = ksrc_fd,
    .next_ms = ksrc_next_ms,
    .min_inflight_bytes = ksrc_min_inflight,
    .lag = ksrc_lag,
    .part_lag = ksrc_part_lag,
    .service = ksrc_service,
    .push = NULL,
    .push_close = NULL,
    .ended = sp_kafka_ended,
    .close = ksrc_close,
    .default_store = "kafka",
    .default_store_uri = NULL,
    .open_store = sp_kafka_open_store,
    .released = sp_kafka_released,
};
