/* store.c - store=kafka: checkpoints are the consumer group's committed offsets,
 * committed through the Kafka source's own consumer (see source.c for the whole
 * picture).
 *
 * The engine asks the source for the store first (sp_source_ops_t.open_store): the
 * Kafka source fills the store instance with the ops below and its own consumer as ctx.
 * sp_store_kafka, listed in lib/registry.c, is only the name the `store` key is checked
 * against: opened on its own (another source, `spate checkpoint show kafka`) it fails,
 * naming source=kafka.
 *
 * save() commits offset = after + 1 (beginning: offset 0) and waits for the answer, at
 * most commit_wait_ms (half a checkpoint interval, KSRC_COMMIT_WAIT_MIN_MS to
 * KSRC_COMMIT_WAIT_MAX_MS): the group's coordinator answers a commit that comes behind
 * this member's JoinGroup only once the rebalance is over, and the engine thread must
 * not wait that long. An answer that comes later is collected by the next save. The
 * answers SPATE_ERR_BUSY (the engine tries again on its next checkpoint without counting
 * a failure, and holds its handlers meanwhile) while:
 *  - the group's cgrp.join_state (librdkafka's statistics, group.c) is not "steady", outside a
 *    rebalance callback and outside a revoke being released: nothing is sent, because an
 *    OffsetCommit racing a rejoin fails with ILLEGAL_GENERATION and librdkafka then drops
 *    the whole assignment as lost (librdkafka issue #4059);
 *  - the group refuses the commit because it rebalances (REBALANCE_IN_PROGRESS,
 *    ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID);
 *  - the answer has not come yet.
 * load() reads the committed offset (fetched once per assignment for all its
 * partitions, group.c).
 * @locality the engine thread.
 */
#include "consumer.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commits may go to the group now: no JoinGroup was sent since the last join round
 * ended, and the member is inside the rebalance callback, or librdkafka waits for the
 * unassign of a revoke (both in the current generation), or the statistics say the
 * group is steady (without statistics, kafka.statistics.interval.ms=0, they do not hold
 * anything back). */
static bool commits_open(const ksrc_t *x)
{
	if (atomic_load(&x->joins_sent) != x->joins_seen)
		return false;
	return x->in_rebalance || x->revoking || !x->stats_seen || x->steady;
}

/* The group refuses commits because it rebalances (this member must rejoin first). */
static bool rebalancing(rd_kafka_resp_err_t e)
{
	return e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
	       e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

/* What a commit's error means for the engine: SPATE_ERR_BUSY while the group rebalances,
 * else a store error; what names the partitions. */
static int commit_error(ksrc_t *x, rd_kafka_resp_err_t e, const char *what, char *errstr, size_t size)
{
	if (rebalancing(e))
		return sp_err(errstr, size, SPATE_ERR_BUSY,
		              "store=kafka: commit of %s: %s: group \"%s\" is rebalancing%s", what,
		              rd_kafka_err2name(e), x->group,
		              e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS
		                  ? ""
		                  : " (librdkafka drops this member's assignment as lost: issue #4059)");
	return sp_err(errstr, size, SPATE_ERR_STORE, "store=kafka: commit of %s: %s", what,
	              rd_kafka_err2str(e));
}

static int kstore_load(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	kpart_t *k = sp_kafka_kp_by_name(x, name, true);
	if (!k)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "store=kafka: \"%s\" is not a Kafka partition",
		              name);
	int64_t off = -1;
	if (k->has_committed) {
		off = k->committed;
		k->has_committed = false;
	} else {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(l, k->topic, k->partition);
		rd_kafka_resp_err_t e = rd_kafka_committed(x->rk, l, KSRC_REQUEST_MS);
		if (!e)
			e = l->elems[0].err;
		off = l->elems[0].offset;
		rd_kafka_topic_partition_list_destroy(l);
		if (e)
			return sp_err(errstr, size, SPATE_ERR_STORE,
			              "store=kafka: %s: reading the committed offset: %s", name,
			              rd_kafka_err2str(e));
	}
	if (off < 0)
		return SPATE_ERR_NOT_FOUND;
	k->loaded = off;
	k->acked = off;
	memset(out, 0, sizeof(*out));
	if (off == 0)
		out->beginning = true;
	else
		out->after = sp_pos((uint64_t)off - 1);
	return SPATE_OK;
}

/* Every entry's offset is one the group has confirmed for this consumer. */
static bool acked(ksrc_t *x, const sp_store_entry_t *ents, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		kpart_t *k = sp_kafka_kp_by_name(x, ents[i].name, false);
		int64_t off = ents[i].ckpt.beginning ? 0 : (int64_t)ents[i].ckpt.after.w[2] + 1;
		if (!k || k->acked < off)
			return false;
	}
	return true;
}

/* The answer to the commit in flight (x->pending), waiting up to wait_ms for it:
 * SPATE_OK (the partitions' acked offsets move), SPATE_ERR_BUSY (no answer yet: pending
 * stays; or the group refused it because it rebalances), or a store error. */
static int commit_answer(ksrc_t *x, int wait_ms, char *errstr, size_t size)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(x->commit_q, wait_ms);
	while (ev && rd_kafka_event_type(ev) != RD_KAFKA_EVENT_OFFSET_COMMIT) {
		rd_kafka_event_destroy(ev); /* nothing else is sent to this queue */
		ev = rd_kafka_queue_poll(x->commit_q, 0);
	}
	if (!ev)
		return sp_err(
		    errstr, size, SPATE_ERR_BUSY,
		    "store=kafka: group \"%s\" has not answered the commit of %d partitions sent %" PRId64
		    " ms ago (its coordinator answers after a rebalance)",
		    x->group, x->pending->cnt, sp_now_ms() - x->pending_ms);
	rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
	const rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
	int rc = SPATE_OK;
	char what[600];
	if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		snprintf(what, sizeof(what), "%d partitions", x->pending->cnt);
		rc = commit_error(x, e, what, errstr, size);
	}
	for (int i = 0; !rc && l && i < l->cnt; i++)
		if (l->elems[i].err) {
			snprintf(what, sizeof(what), "kafka/%s/%" PRId32, l->elems[i].topic,
			         l->elems[i].partition);
			rc = commit_error(x, l->elems[i].err, what, errstr, size);
		}
	for (int i = 0; !rc && i < x->pending->cnt; i++) {
		kpart_t *k = sp_kafka_kp_find(x, x->pending->elems[i].topic, x->pending->elems[i].partition);
		if (k && x->pending->elems[i].offset > k->acked)
			k->acked = x->pending->elems[i].offset;
	}
	rd_kafka_event_destroy(ev);
	rd_kafka_topic_partition_list_destroy(x->pending);
	x->pending = NULL;
	return rc;
}

static int kstore_save(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	if (x->pending) {
		/* one commit at a time: the one in flight first */
		int rc = commit_answer(x, 0, errstr, size);
		if (x->pending)
			return rc;
		if (!rc && acked(x, ents, n))
			return SPATE_OK;
	}
	if (!commits_open(x))
		return sp_err(errstr, size, SPATE_ERR_BUSY,
		              "store=kafka: group \"%s\" is rebalancing (%s); %zu commits wait for it",
		              x->group,
		              atomic_load(&x->joins_sent) != x->joins_seen ? "this member sent a JoinGroup"
		                                                           : x->join_state,
		              n);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
	for (size_t i = 0; i < n; i++) {
		kpart_t *k = sp_kafka_kp_by_name(x, ents[i].name, false);
		if (!k) {
			rd_kafka_topic_partition_list_destroy(l);
			return sp_err(errstr, size, SPATE_ERR_STORE,
			              "store=kafka: \"%s\" is not a partition of this consumer",
			              ents[i].name);
		}
		int64_t off = ents[i].ckpt.beginning ? 0 : (int64_t)ents[i].ckpt.after.w[2] + 1;
		rd_kafka_topic_partition_list_add(l, k->topic, k->partition)->offset = off;
	}
	rd_kafka_resp_err_t e = rd_kafka_commit_queue(x->rk, l, x->commit_q, NULL, NULL);
	if (e) {
		char what[64];
		snprintf(what, sizeof(what), "%zu partitions", n);
		rd_kafka_topic_partition_list_destroy(l);
		return commit_error(x, e, what, errstr, size);
	}
	x->pending = l;
	x->pending_ms = sp_now_ms();
	return commit_answer(x, (int)x->commit_wait_ms, errstr, size);
}

static void kstore_close(sp_store_t *s)
{
	s->ctx = NULL; /* the consumer belongs to the source */
}

/* The store the Kafka source hands the engine: ctx is its ksrc_t. */
static const sp_store_ops_t kstore_ops = {
    .version = SP_STORE_OPS_VERSION,
    .name = KSRC_NAME,
    .desc = "commit offsets to the Kafka source's consumer group",
    .open = NULL, /* opened by the source (open_store) */
    .load = kstore_load,
    .save = kstore_save,
    .list = NULL,
    .reset = NULL,
    .close = kstore_close,
};

int sp_kafka_open_store(sp_source_t *s, const char *kind, const char *arg, sp_store_t *out, char *errstr,
                        size_t size)
{
	if (strcmp(kind, KSRC_NAME))
		return SPATE_ERR_UNKNOWN; /* a store of the registry */
	if (arg && *arg)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "store: kafka takes no argument (\"kafka:%s\")", arg);
	ksrc_t *x = s->ctx;
	if (!x->commit_q && !(x->commit_q = rd_kafka_queue_new(x->rk)))
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "store=kafka: out of memory");
	int64_t wait = sp_conf_int(sp_engine_conf(s->eng), "checkpoint.interval.ms") / 2;
	x->commit_wait_ms = wait < KSRC_COMMIT_WAIT_MIN_MS   ? KSRC_COMMIT_WAIT_MIN_MS
	                    : wait > KSRC_COMMIT_WAIT_MAX_MS ? KSRC_COMMIT_WAIT_MAX_MS
	                                                     : wait;
	x->store_on = true;
	out->ops = &kstore_ops;
	out->ctx = x;
	return SPATE_OK;
}

/* store=kafka outside a Kafka source: what the registry lists, so that the store key
 * knows the name; it never opens. */
static int kstore_refuse(sp_store_t *s, char *errstr, size_t size)
{
	if (!s->eng)
		return sp_err(
		    errstr, size, SPATE_ERR_INVALID,
		    "store: kafka commits to the consumer group of a running source=kafka pipeline; "
		    "it cannot be opened on its own");
	return sp_err(
	    errstr, size, SPATE_ERR_INVALID,
	    "store: kafka commits offsets to the Kafka source's consumer group and needs source=kafka "
	    "(source is \"%s\")",
	    sp_conf_str(sp_engine_conf(s->eng), "source"));
}

const sp_store_ops_t sp_store_kafka = {
    .version = SP_STORE_OPS_VERSION,
    .name = KSRC_NAME,
    .desc = "commit offsets to the Kafka source's consumer group (source=kafka only)",
    .syntax = "kafka",
    .open = kstore_refuse,
    .load = NULL,
    .save = NULL,
    .list = NULL,
    .reset = NULL,
    .close = NULL,
    .open_readonly = kstore_refuse,
};
