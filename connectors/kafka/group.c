/* group.c - the Kafka source's consumer group (see source.c for the whole picture):
 *  - the rebalance callback: an assigned partition becomes a new engine partition,
 *    started at its checkpoint; a revoked one is handed to sp_engine_partition_release
 *    and the callback returns without unassigning: librdkafka waits in its join_state
 *    wait-unassign-call (heartbeating, the assigned partitions paused) for the
 *    application's unassign, which the source makes once the engine has released every
 *    partition of the revoke (their in-flight records waited for on the engine's loop
 *    and their checkpoints committed, unless the assignment was lost): released();
 *  - the group's cgrp.join_state from librdkafka's statistics (statistics.interval.ms, the
 *    stats callback; cgrp.join_state and cgrp.rebalance_cnt of STATISTICS.md, read with
 *    jansson): store=kafka commits outside a rebalance only while it is "steady"
 *    (store.c), because an OffsetCommit racing a rejoin fails with ILLEGAL_GENERATION
 *    and librdkafka then drops the whole assignment as lost (librdkafka issue #4059);
 *  - with a store that is not the group, another member is refused;
 *  - stop.at.end through the group's committed offsets; with another store or none,
 *    through what this consumer handed over and the engine has DONE (and then, as a
 *    single consumer, another member is refused);
 *  - closing the consumer: librdkafka before 2.3.0 aborts in rd_kafka_destroy() when a
 *    cooperative-sticky consumer's group has chosen its assignor (a JoinGroup was
 *    answered) but no SyncGroup has given the assignor its state yet (librdkafka issue
 *    #4312, fixed by PR #4381 in 2.3.0). A source that ends or is stopped while it
 *    joins (stop.at.end finding everything committed, SIGTERM) first serves the group
 *    until that first assignment (the rebalance callback says when it comes), at most
 *    for session.timeout.ms.
 * librdkafka's log lines are forwarded as they come (kafka.log_level and kafka.debug are
 * librdkafka's own); none is read for what it says.
 * @locality the engine thread (librdkafka's threads call on_log).
 */
#include "consumer.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rebalance -------------------------------------------------------------------- */

static bool cooperative(ksrc_t *x)
{
	const char *p = rd_kafka_rebalance_protocol(x->rk);
	return p && !strcmp(p, "COOPERATIVE");
}

/* Partitions of the subscribed topics, from metadata (read once). */
static int subscribed_partitions(ksrc_t *x)
{
	if (x->total_parts)
		return x->total_parts;
	char *list = strdup(x->topics), *save = NULL;
	int total = 0;
	for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(x->rk, t, NULL);
		const struct rd_kafka_metadata *md = NULL;
		if (rkt && !rd_kafka_metadata(x->rk, 0, rkt, &md, KSRC_REQUEST_MS) && md->topic_cnt == 1)
			total += md->topics[0].partition_cnt;
		if (md)
			rd_kafka_metadata_destroy(md);
		if (rkt)
			rd_kafka_topic_destroy(rkt);
	}
	free(list);
	x->total_parts = total;
	return total;
}

/* The group holds nothing this consumer's progress is measured by: a store that is not
 * the group keeps checkpoints for this consumer alone, and with no store stop.at.end
 * counts what this consumer handed over. It must hold every partition. */
static bool single_consumer(const ksrc_t *x)
{
	return x->foreign_store || (x->no_store && x->stop_at_end);
}

/* For a single consumer, another member is a configuration error: one that takes
 * partitions from this consumer (a revoke that is not a loss) at once; an assignment of
 * fewer than all partitions once it lasts partial_grace_ms (a member that crashed holds
 * its partitions until its session times out, so a restart after a crash starts with a
 * partial assignment). why: the revoke's text, or NULL for the check of the assignment
 * (at assign, and from service()). */
void sp_kafka_check_single_member(ksrc_t *x, const char *why)
{
	if (!single_consumer(x) || x->closing || x->fatal_rc)
		return;
	int total = 0, held = 0;
	if (!why) {
		rd_kafka_topic_partition_list_t *a = NULL;
		if (!rd_kafka_assignment(x->rk, &a) && a)
			held = a->cnt;
		if (a)
			rd_kafka_topic_partition_list_destroy(a);
		total = subscribed_partitions(x);
		if (total <= 0 || held >= total) {
			x->partial_since_ms = 0;
			return;
		}
		int64_t now = sp_now_ms();
		if (!x->partial_since_ms)
			x->partial_since_ms = now;
		if (now - x->partial_since_ms < x->partial_grace_ms)
			return;
	}
	char what[160];
	if (!why)
		snprintf(what, sizeof(what),
		         "this consumer has held %d of the %d partitions for %" PRId64 " ms", held, total,
		         x->partial_grace_ms);
	if (x->foreign_store)
		sp_kafka_set_fatal(x, SPATE_ERR_INVALID,
		                   "store=%s keeps checkpoints for a single consumer, but group.id \"%s\" "
		                   "has another member (%s); "
		                   "use store=kafka (the default for source=kafka) to share the topics %s",
		                   x->foreign_store, x->group, why ? why : what, x->topics);
	else
		sp_kafka_set_fatal(
		    x, SPATE_ERR_INVALID,
		    "stop.at.end with no store (store= empty) ends once this consumer has handled every "
		    "partition to its end, but group.id \"%s\" has another member (%s); use store=kafka (the "
		    "default for source=kafka) to share the topics %s",
		    x->group, why ? why : what, x->topics);
}

static void on_assign(ksrc_t *x, rd_kafka_topic_partition_list_t *parts)
{
	char err[1024];
	/* the group's committed offsets of all new partitions in one request (store=kafka) */
	if (x->store_on && parts->cnt) {
		rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
		rd_kafka_resp_err_t e = rd_kafka_committed(x->rk, c, KSRC_REQUEST_MS);
		for (int i = 0; !e && i < c->cnt; i++) {
			kpart_t *k = sp_kafka_kp_get(x, c->elems[i].topic, c->elems[i].partition);
			if (k && !c->elems[i].err) {
				k->committed = c->elems[i].offset >= 0 ? c->elems[i].offset : -1;
				k->has_committed = true;
			}
		}
		rd_kafka_topic_partition_list_destroy(c);
	}
	rd_kafka_topic_partition_list_t *go = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		const char *topic = parts->elems[i].topic;
		int32_t part = parts->elems[i].partition;
		kpart_t *k = sp_kafka_kp_get(x, topic, part);
		sp_part_t *p = k ? sp_engine_add_partition(x->eng, KSRC_NAME, topic, part, NULL) : NULL;
		if (!p) {
			sp_kafka_set_fatal(x, SPATE_ERR_NOMEM,
			                   "kafka/%s/%" PRId32 ": out of memory on assignment", topic, part);
			break;
		}
		p->src_ctx = k;
		k->p = p;
		if (single_consumer(x) && k->has_end && !k->at_end) {
			/* the group's commits do not count: the engine's own checkpoint must reach the
			 * end (with no store, its DONE watermark) */
			p->has_end = true;
			p->end = sp_pos((uint64_t)k->end - 1);
		}
		k->releasing = false;
		int rc = sp_engine_partition_start(x->eng, p, err, sizeof(err));
		if (rc) {
			/* never assigned: nothing of it is read or committed (the engine forgets it;
			 * its released() finds k->p no longer p) */
			k->p = NULL;
			sp_engine_partition_release(x->eng, p, 0, true);
			sp_kafka_set_fatal(x, rc, "%s", err);
			break;
		}
		rd_kafka_topic_partition_list_add(go, topic, part)->offset = k->next;
		sp_msg(x->eng, SP_MSG_DEBUG, "%s: assigned, starting at offset %" PRId64, p->pub.name,
		       k->next);
	}
	rd_kafka_error_t *e = NULL;
	rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (cooperative(x))
		e = rd_kafka_incremental_assign(x->rk, go);
	else
		re = rd_kafka_assign(x->rk, go);
	if (e) {
		sp_kafka_set_fatal(x, SPATE_ERR_SOURCE, "kafka: incremental assign: %s",
		                   rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	} else if (re) {
		sp_kafka_set_fatal(x, SPATE_ERR_SOURCE, "kafka: assign: %s", rd_kafka_err2str(re));
	}
	if (!e && !re) {
		/* the assign call moved cgrp.join_state from wait-assign-call to steady: commits
		 * need not wait for the next statistics to say so */
		x->steady = true;
		snprintf(x->join_state, sizeof(x->join_state), "steady");
	}
	if (x->paused && go->cnt)
		rd_kafka_pause_partitions(x->rk, go);
	rd_kafka_topic_partition_list_destroy(go);
	sp_kafka_check_single_member(x, NULL);
}

/* Every partition of the revoke being released is: unassign them (librdkafka then goes
 * on: a cooperative member rejoins, an eager one too). */
static void finish_revoke(ksrc_t *x)
{
	rd_kafka_topic_partition_list_t *parts = x->revoking;
	x->revoking = NULL;
	x->releasing = 0;
	if (cooperative(x)) {
		rd_kafka_error_t *e = rd_kafka_incremental_unassign(x->rk, parts);
		if (e) {
			sp_msg(x->eng, SP_MSG_WARN, "kafka: incremental unassign of %d partitions: %s",
			       parts->cnt, rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
		}
	} else {
		rd_kafka_resp_err_t re = rd_kafka_assign(x->rk, NULL);
		if (re)
			sp_msg(x->eng, SP_MSG_WARN, "kafka: unassign: %s", rd_kafka_err2str(re));
	}
	rd_kafka_topic_partition_list_destroy(parts);
}

/* A revoke (or a rebalance error): each partition the engine holds is released on the
 * engine's loop (in-flight records waited for up to revoke_ms, the checkpoint committed
 * unless lost); the unassign waits for the last released(). While the source closes,
 * the engine no longer runs: the partitions are unassigned at once, and nothing of them
 * is committed here (the run's final checkpoint was). */
static void on_revoke(ksrc_t *x, rd_kafka_topic_partition_list_t *parts)
{
	bool lost = rd_kafka_assignment_lost(x->rk);
	if (x->revoking) {
		/* librdkafka calls once per rebalance and waits for the unassign: not expected */
		sp_msg(x->eng, SP_MSG_WARN,
		       "kafka: a revoke while another is being released; unassigning that one now");
		for (int i = 0; i < x->revoking->cnt; i++) {
			kpart_t *k =
			    sp_kafka_kp_find(x, x->revoking->elems[i].topic, x->revoking->elems[i].partition);
			if (k && k->releasing) {
				k->releasing = false;
				k->p = NULL;
			}
		}
		finish_revoke(x);
	}
	x->revoking = rd_kafka_topic_partition_list_copy(parts);
	x->releasing = 1; /* held until every release below was asked (one may complete at once) */
	for (int i = 0; i < parts->cnt; i++) {
		kpart_t *k = sp_kafka_kp_find(x, parts->elems[i].topic, parts->elems[i].partition);
		sp_kafka_stash_drop(x, parts->elems[i].topic, parts->elems[i].partition);
		if (!k || !k->p)
			continue;
		k->has_committed = false;
		if (x->closing) {
			k->p = NULL;
			continue;
		}
		sp_msg(x->eng, SP_MSG_DEBUG, "%s: revoked%s; releasing it", k->p->pub.name,
		       lost ? " (lost)" : "");
		k->releasing = true;
		x->releasing++;
		sp_engine_partition_release(x->eng, k->p, x->revoke_ms, lost);
	}
	if (!lost && parts->cnt)
		sp_kafka_check_single_member(x, "partitions were revoked from this consumer for another");
	if (--x->releasing == 0)
		finish_revoke(x);
}

void sp_kafka_released(sp_source_t *s, sp_part_t *p, bool saved)
{
	ksrc_t *x = s->ctx;
	kpart_t *k = p->src_ctx;
	if (!x || !k || k->p != p)
		return; /* a partition that never started (on_assign) */
	k->p = NULL;
	k->has_committed = false;
	if (!k->releasing)
		return;
	k->releasing = false;
	if (!saved)
		sp_msg(x->eng, SP_MSG_INFO,
		       "%s: released without a checkpoint; its new owner handles the records after "
		       "the last committed offset again",
		       p->pub.name);
	if (x->revoking && --x->releasing == 0)
		finish_revoke(x);
}

/* An assignment while closing: librdkafka waits for the assign call (consumer_close
 * would not finish without it), so it is made, but no engine partition is; the
 * partitions are revoked as the consumer closes (during consumer_close librdkafka
 * takes an assign as an unassign). Nothing of them is handed over or committed. */
static void assign_closing(ksrc_t *x, rd_kafka_topic_partition_list_t *parts)
{
	if (!cooperative(x)) {
		rd_kafka_assign(x->rk, parts);
		return;
	}
	rd_kafka_error_t *e = rd_kafka_incremental_assign(x->rk, parts);
	if (e) {
		sp_msg(x->eng, SP_MSG_DEBUG, "kafka: incremental assign while closing: %s",
		       rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
}

void sp_kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                           void *opaque)
{
	(void)rk;
	ksrc_t *x = opaque;
	x->in_rebalance = true;
	/* a join round ended (its SyncGroup answered): JoinGroups sent before this are over */
	x->joins_seen = atomic_load(&x->joins_sent);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		/* the assignor got its state before librdkafka handed this over: the window of
		 * librdkafka issue #4312 is over for good */
		x->assigned_once = true;
		if (x->closing)
			assign_closing(x, parts);
		else
			on_assign(x, parts);
	} else {
		if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			sp_msg(x->eng, SP_MSG_ERROR, "kafka: rebalance error: %s", rd_kafka_err2str(err));
		on_revoke(x, parts);
	}
	x->in_rebalance = false;
}

void sp_kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	ksrc_t *x = opaque;
	if (atomic_load(&x->detached))
		return;
	char clean[1024];
	sp_kafka_redact(&x->secrets, reason, clean, sizeof(clean));
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char why[512];
		rd_kafka_resp_err_t f = rd_kafka_fatal_error(rk, why, sizeof(why));
		sp_kafka_redact(&x->secrets, why, clean, sizeof(clean));
		sp_kafka_set_fatal(x, SPATE_ERR_SOURCE, "kafka: fatal consumer error: %s: %s",
		                   rd_kafka_err2name(f), clean);
		return;
	}
	sp_msg(x->eng, SP_MSG_WARN, "kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), clean);
}

void sp_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ksrc_t *x = rd_kafka_opaque(rk);
	if (!x || atomic_load(&x->detached))
		return;
	/* librdkafka passes on only what its log_level (kafka.log_level; 7 with kafka.debug)
	 * lets through */
	int lvl = level <= 4 ? SP_MSG_WARN : level <= 6 ? SP_MSG_INFO : SP_MSG_DEBUG;
	if (!sp_msg_enabled(x->eng, lvl))
		return;
	char clean[1024];
	sp_kafka_redact(&x->secrets, buf, clean, sizeof(clean));
	sp_msg(x->eng, lvl, "kafka: %s: %s", fac, clean);
}

/* Counts the JoinGroup requests written to the coordinator. @locality a broker thread:
 * no librdkafka call, nothing that blocks. */
static rd_kafka_resp_err_t on_request_sent(rd_kafka_t *rk, int sockfd, const char *brokername,
                                           int32_t brokerid, int16_t api_key, int16_t api_version,
                                           int32_t corr_id, size_t size, void *ic_opaque)
{
	(void)rk, (void)sockfd, (void)brokername, (void)brokerid, (void)api_version, (void)corr_id,
	    (void)size;
	ksrc_t *x = ic_opaque;
	if (api_key == KSRC_API_JOINGROUP)
		atomic_fetch_add(&x->joins_sent, 1);
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}

rd_kafka_resp_err_t sp_kafka_on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *ic_opaque,
                                    char *errstr, size_t errstr_size)
{
	(void)conf, (void)errstr, (void)errstr_size;
	return rd_kafka_interceptor_add_on_request_sent(rk, KSRC_NAME "-source", on_request_sent, ic_opaque);
}

/* The join_state values before a JoinGroup was answered (rd_kafka_cgrp_join_state_names
 * of 2.0.2): every other one comes after a JoinGroup response chose the assignor. */
static bool before_join_answer(const char *state)
{
	return !strcmp(state, "init") || !strcmp(state, "wait-join");
}

/* The text of the report's top-level "cgrp" object, or NULL (*len its length). A report
 * is mostly its brokers' and partitions' objects (about 90 KB with 128 partitions), and
 * parsing all of it each second cost more than a million records' worth of work in a
 * 10 s run; librdkafka writes "cgrp" after "topics", so its last `"cgrp":` key is the
 * group's even when a topic is named cgrp. Strings are skipped while matching braces. */
static const char *cgrp_text(const char *json, size_t json_len, size_t *len)
{
	static const char key[] = "\"cgrp\":";
	const char *at = NULL;
	for (const char *p = json, *end = json + json_len;
	     (p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)); p += sizeof(key) - 1)
		at = p;
	if (!at)
		return NULL;
	const char *end = json + json_len, *p = at + sizeof(key) - 1;
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
		p++;
	if (p == end || *p != '{')
		return NULL;
	int depth = 0;
	bool str = false;
	for (const char *q = p; q < end; q++) {
		if (str) {
			if (*q == '\\')
				q++;
			else if (*q == '"')
				str = false;
		} else if (*q == '"')
			str = true;
		else if (*q == '{')
			depth++;
		else if (*q == '}' && --depth == 0) {
			*len = (size_t)(q + 1 - p);
			return p;
		}
	}
	return NULL;
}

int sp_kafka_on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
	(void)rk;
	ksrc_t *x = opaque;
	if (!x || atomic_load(&x->detached))
		return 0;
	size_t clen = 0;
	const char *ctext = cgrp_text(json, json_len, &clen);
	json_error_t jerr;
	json_t *root = ctext ? json_loadb(ctext, clen, 0, &jerr) : NULL;
	json_t *cgrp = root;
	const char *state = json_string_value(json_object_get(cgrp, "join_state"));
	json_t *cnt = json_object_get(cgrp, "rebalance_cnt");
	if (!state || !json_is_integer(cnt)) {
		json_decref(root); /* not a group consumer's report (or not JSON): nothing learnt */
		return 0;
	}
	bool was_steady = x->steady;
	x->stats_seen = true;
	x->steady = !strcmp(state, "steady");
	if (!before_join_answer(state))
		x->join_answered = true;
	x->rebalance_cnt = (int)json_integer_value(cnt);
	if (strcmp(x->join_state, state))
		sp_msg(x->eng, SP_MSG_DEBUG, "kafka: group \"%s\": cgrp.join_state %s (rebalance_cnt %d)%s",
		       x->group, state, x->rebalance_cnt,
		       was_steady && !x->steady ? ": commits wait for it to be steady" : "");
	snprintf(x->join_state, sizeof(x->join_state), "%s", state);
	json_decref(root);
	return 0; /* librdkafka frees json */
}

bool sp_kafka_ended(sp_source_t *s)
{
	ksrc_t *x = s->ctx;
	if (!x->stop_at_end)
		return false;
	if (x->ended)
		return true;
	if (single_consumer(x)) {
		/* once it holds every partition and has handed each over up to its end, the
		 * engine compares its own checkpoints (what is DONE) with the ends (p->end); the
		 * group has no commits of it to read (with no store, none at all) */
		for (size_t i = 0; i < x->nall; i++) {
			const kpart_t *k = x->all[i];
			if (k->has_end && !k->at_end && (!k->p || k->next < k->end))
				return false;
		}
		return true;
	}
	/* the group's offsets are not all at the ends while a partition this consumer holds
	 * has not had its end committed by it (and asking during a rebalance would hold the
	 * engine thread behind this member's JoinGroup, the coordinator answering after it) */
	for (size_t i = 0; i < x->nall; i++) {
		const kpart_t *k = x->all[i];
		if (k->p && k->has_end && !k->at_end && k->acked < k->end)
			return false;
	}
	int64_t now = sp_now_ms();
	if (now - x->last_ended_check_ms < KSRC_ENDED_CHECK_MS)
		return false;
	x->last_ended_check_ms = now;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)x->nall);
	for (size_t i = 0; i < x->nall; i++)
		if (x->all[i]->has_end && !x->all[i]->at_end)
			rd_kafka_topic_partition_list_add(l, x->all[i]->topic, x->all[i]->partition);
	bool done = true;
	if (l->cnt) {
		rd_kafka_resp_err_t e = rd_kafka_committed(x->rk, l, KSRC_REQUEST_MS);
		if (e) {
			sp_msg(x->eng, SP_MSG_DEBUG, "stop.at.end: reading the group's offsets: %s",
			       rd_kafka_err2str(e));
			done = false;
		}
		for (int i = 0; !e && i < l->cnt; i++) {
			kpart_t *k = sp_kafka_kp_find(x, l->elems[i].topic, l->elems[i].partition);
			if (k && !l->elems[i].err && l->elems[i].offset >= k->end)
				k->at_end = true;
			else
				done = false;
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	x->ended = done;
	return done;
}

/* ---- closing ---------------------------------------------------------------------- */

bool sp_kafka_has_bug_4312(ksrc_t *x)
{
	if (rd_kafka_version() >= KSRC_RDK_FIXED_4312)
		return false;
	/* only the sticky assignor keeps state (range and roundrobin have none to destroy) */
	char v[256];
	size_t n = sizeof(v);
	if (rd_kafka_conf_get(rd_kafka_conf(x->rk), "partition.assignment.strategy", v, &n) !=
	    RD_KAFKA_CONF_OK)
		return true;
	return strstr(v, "cooperative-sticky") != NULL;
}

/* Whether the group may have chosen the assignor without giving it state yet (librdkafka
 * issue #4312): joining (subscribed), no first assignment, and a JoinGroup answered, as
 * the statistics saw it or, fresher, as the member id says (librdkafka sets it from a
 * JoinGroup response; a broker that asks for one first (MEMBER_ID_REQUIRED) sets it
 * earlier, which only makes the close wait when it need not). */
static bool assignor_may_lack_state(ksrc_t *x)
{
	if (!x->bug_4312 || !x->subscribed || x->assigned_once)
		return false;
	if (x->join_answered)
		return true;
	char *id = rd_kafka_memberid(x->rk);
	bool answered = id && *id;
	rd_kafka_mem_free(x->rk, id);
	return answered;
}

bool sp_kafka_close(ksrc_t *x)
{
	x->closing = true;
	if (x->revoking) {
		/* the engine no longer releases anything: unassign what it still held */
		for (int i = 0; i < x->revoking->cnt; i++) {
			kpart_t *k =
			    sp_kafka_kp_find(x, x->revoking->elems[i].topic, x->revoking->elems[i].partition);
			if (k && k->releasing) {
				k->releasing = false;
				k->p = NULL;
			}
		}
		finish_revoke(x);
	}
	/* once a JoinGroup was answered, a JoinGroup answered after consumer_close began is
	 * ignored, and the assignor's state is never dropped once set: after the wait below
	 * this no longer changes */
	bool wait = assignor_may_lack_state(x);
	if (wait) {
		sp_msg(x->eng, SP_MSG_INFO,
		       "kafka: group \"%s\": closing before the first assignment; serving the group until it "
		       "comes "
		       "(at most session.timeout.ms=%" PRId64
		       "), because librdkafka %s aborts when it closes sooner "
		       "(librdkafka issue #4312, fixed in 2.3.0)",
		       x->group, x->session_ms, rd_kafka_version_str());
		int64_t deadline = sp_now_ms() + x->session_ms;
		while (!x->assigned_once && sp_now_ms() < deadline) {
			/* serves the rebalance callback; records are not handed over any more */
			rd_kafka_message_t *m = rd_kafka_consumer_poll(x->rk, KSRC_TICK_MS);
			if (m)
				rd_kafka_message_destroy(m);
		}
	}
	rd_kafka_consumer_close(x->rk);
	if (x->revoking) /* a revoke served by consumer_close (it unassigns at once then) */
		finish_revoke(x);
	if (!wait || x->assigned_once)
		return true;
	sp_msg(
	    x->eng, SP_MSG_WARN,
	    "kafka: group \"%s\": no first assignment within session.timeout.ms=%" PRId64
	    "; the consumer has "
	    "left the group, and its handle is left to the process exit, because librdkafka %s aborts when "
	    "it is destroyed now (librdkafka issue #4312, fixed in 2.3.0)",
	    x->group, x->session_ms, rd_kafka_version_str());
	atomic_store(&x->detached, true);
	return false;
}
