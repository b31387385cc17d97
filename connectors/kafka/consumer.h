/* consumer.h - what the Kafka source's files share: source.c (the consumer: open, seek,
 * service, lag), poll.c (the stash and poll()'s chunks), group.c (the consumer group:
 * rebalance callbacks, releases, the group's join_state, membership, stop.at.end, closing the
 * consumer) and store.c (store=kafka, the group's committed offsets through this
 * consumer). Internal to connectors/kafka. */
#ifndef SPATE_CONNECTORS_KAFKA_CONSUMER_H
#define SPATE_CONNECTORS_KAFKA_CONSUMER_H

#include "secrets.h"
#include "sp_spi.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

enum {
	/* most messages asked of the consumer queue per poll(), and the most the stash keeps */
	KSRC_BATCH = 4096,
	/* bytes a message counts toward max.inflight.bytes beyond its key and value */
	KSRC_MSG_OVERHEAD = 64,
	/* default prefetch (queued.max.messages.kbytes, queued.min.messages): this share of
	 * max.inflight.bytes / max.inflight.records, capped below */
	KSRC_PREFETCH_DIV = 8,
	KSRC_PREFETCH_MAX_KB = 65536,
	KSRC_PREFETCH_MAX_MSGS = 1000000,
	/* next_ms() while a first assignment, a pause or a stop.at.end check is pending */
	KSRC_TICK_MS = 50,
	/* service() serves callbacks itself when poll() was not called for this long */
	KSRC_SERVE_MS = 100,
	/* messages service() takes from the consumer queue per call of
	 * rd_kafka_consume_batch_queue (an array of them on the stack) */
	KSRC_SERVE_BATCH = 1024,
	/* stop.at.end: the group's committed offsets are read at most this often */
	KSRC_ENDED_CHECK_MS = 200,
	/* bound of synchronous metadata, watermark and committed-offset requests */
	KSRC_REQUEST_MS = 10000,
	/* store=kafka waits for a commit's answer half a checkpoint.interval.ms, within these
	 * bounds; a later answer is collected by the next save (the group's coordinator holds
	 * a commit behind this member's JoinGroup until the rebalance is over) */
	KSRC_COMMIT_WAIT_MIN_MS = 50,
	KSRC_COMMIT_WAIT_MAX_MS = 1000,
	/* revoke waits this long for in-flight records without kafka.max.poll.interval.ms */
	KSRC_REVOKE_MS = 30000,
	/* statistics.interval.ms unless kafka.statistics.interval.ms says otherwise: how
	 * fresh the group's cgrp.join_state is. Each report is a JSON document librdkafka
	 * builds on its main thread and the source parses on the engine thread (15 KB and
	 * about 0.6 ms with 16 partitions, 46 KB and 1.5-2 ms with 64, measured here); the
	 * rebalance callback and the JoinGroup count carry what must not wait for it */
	KSRC_STATS_MS = 1000,
	/* librdkafka's session.timeout.ms default */
	KSRC_SESSION_TIMEOUT_MS = 45000,
	/* the first librdkafka (rd_kafka_version()) that destroys a cooperative-sticky
	 * consumer before its first assignment without aborting: 2.3.0 (librdkafka issue
	 * #4312, fixed by PR #4381); any 2.3.0 pre-release has the fix too */
	KSRC_RDK_FIXED_4312 = 0x02030000,
	/* the Kafka protocol's ApiKey of JoinGroup (on_request_sent) */
	KSRC_API_JOINGROUP = 11,
	/* partition hash buckets */
	KSRC_BUCKETS = 256,
	/* most chunks (partitions) one poll() returns */
	KSRC_MAX_GROUPS = 64,
};

#define KSRC_PREFIX "kafka."
#define KSRC_NAME   "kafka"

/* One partition of a subscribed topic (known from metadata or an assignment). */
typedef struct kpart {
	char *topic;
	int32_t partition;
	rd_kafka_topic_t *rkt; /* a reference kept, so messages are matched by pointer */
	sp_part_t *p;          /* the engine's partition while assigned, else NULL */
	int64_t next;          /* next offset expected (offsets below it are stale) */
	int64_t low;           /* log start seen at seek */
	int64_t committed;     /* committed offset fetched at assignment (-1 none) */
	bool has_committed;    /* committed is valid (cleared when used) */
	int64_t loaded;        /* what load() returned from the group (-1 none) */
	int64_t acked;         /* store=kafka: the group's committed offset as this consumer last
	                        * read or committed it (-1 none) */
	int64_t eof;           /* the last PARTITION_EOF offset (the end the consumer can read:
	                        * the last stable offset under read_committed), -1 none */
	int64_t eof_hi;        /* ... and the high watermark then */
	bool has_end;          /* stop.at.end: an end was noted at open */
	int64_t end;           /* ... the high watermark / last stable offset then */
	bool at_end;           /* the group's committed offset reached end (or it was empty) */
	bool paused;           /* fetching paused because the engine paused p (p->paused) */
	bool releasing;        /* revoked: p is being released; nothing more of it is handed out */
	struct kpart *hnext;
} kpart_t;

typedef struct ksrc {
	sp_engine_t *eng;
	/* sp_engine_wants_headers: when false, librdkafka's per-message header parse (a
	 * calloc, a parse and a free per message, even for a message with none) is skipped
	 * and records go without headers */
	bool want_hdrs;
	rd_kafka_t *rk;
	rd_kafka_queue_t *q;
	int pipefd[2];
	kpart_t *buckets[KSRC_BUCKETS];
	kpart_t **all; /* every kpart, for lag and stop.at.end */
	size_t nall, cap_all;
	/* messages taken from the queue but not yet in a chunk, in arrival order; at most
	 * stash_max messages and about stash_max_bytes (one consume may overshoot it) */
	rd_kafka_message_t **stash;
	size_t stash_n, stash_cap, stash_head;
	uint64_t stash_bytes, stash_max_bytes;
	size_t stash_max;
	/* poll()'s scratch, one per stashed message: its chunk and its headers */
	int8_t *sel;
	rd_kafka_headers_t **hdr;
	size_t scratch_cap;
	kpart_t *last; /* the partition of the previous message (they come in runs) */
	/* librdkafka's prefetch as configured: queued.max.messages.kbytes (bytes),
	 * queued.min.messages, fetch.max.bytes, max.partition.fetch.bytes */
	uint64_t prefetch_bytes, prefetch_msgs, fetch_max_bytes, part_fetch_bytes;
	bool paused;        /* every assigned partition is paused */
	bool subscribed;    /* rd_kafka_subscribe succeeded: the consumer joins its group */
	bool assigned_once; /* a first assignment arrived (even an empty one) */
	bool closing;       /* closing: assignments make no engine partitions */
	bool stop_at_end, ended;
	bool store_on; /* store=kafka uses this consumer */
	/* store=kafka's commits: answers come on commit_q; pending is the commit whose answer
	 * has not come yet (sent at pending_ms), NULL when none */
	rd_kafka_queue_t *commit_q;
	rd_kafka_topic_partition_list_t *pending;
	int64_t pending_ms, commit_wait_ms;
	/* The group's cgrp.join_state from librdkafka's statistics (statistics.interval.ms, the
	 * stats callback: cgrp.join_state and cgrp.rebalance_cnt; served on the engine
	 * thread). Commits outside a rebalance wait while the state is not "steady", because
	 * an OffsetCommit racing a rejoin fails with ILLEGAL_GENERATION and librdkafka then
	 * drops the whole assignment as lost (librdkafka issue #4059). */
	bool stats_seen;    /* a report with a cgrp object came */
	bool steady;        /* ... and its join_state was "steady" */
	bool join_answered; /* a report showed a join_state past wait-join: a JoinGroup
	                     * was answered (librdkafka issue #4312, see sp_kafka_close) */
	int rebalance_cnt;  /* cgrp.rebalance_cnt of the last report */
	/* JoinGroup requests this consumer sent (librdkafka's on_request_sent interceptor, on
	 * a broker thread): the statistics show a rejoin up to statistics.interval.ms late,
	 * and a commit sent after the member's own JoinGroup waits behind it at the
	 * coordinator and fails with ILLEGAL_GENERATION (librdkafka issue #4059);
	 * joins_seen is the count at the last rebalance callback (a join round ended) */
	_Atomic unsigned joins_sent;
	unsigned joins_seen;
	char join_state[32]; /* cgrp.join_state of the last report ("" none) */
	int64_t stats_ms;    /* statistics.interval.ms as librdkafka took it (0: off) */
	/* A revoke being released: librdkafka waits in its join_state wait-unassign-call
	 * until the source unassigns; the source does that once the engine has released
	 * every partition of it (sp_engine_partition_release, released()). */
	rd_kafka_topic_partition_list_t *revoking; /* its partitions, or NULL */
	int releasing;                             /* of them, the engine has not released this many yet */
	bool bug_4312;                             /* the installed librdkafka has it, and the assignor may be
	                                            * cooperative-sticky */
	_Atomic bool detached; /* the handle was left to the process exit: callbacks return */
	int64_t session_ms;    /* session.timeout.ms as librdkafka took it */
	bool in_rebalance;     /* inside the rebalance callback (commits there are valid) */
	/* the store is not the group (store=file:...): it keeps checkpoints for a single
	 * consumer, so another member in the group is an error */
	const char *foreign_store;
	/* no store (store= set empty): no checkpoints; with stop.at.end the ends are reached
	 * by what this consumer hands over, so another member is an error too */
	bool no_store;
	const char *group, *topics;
	int total_parts;          /* partitions of the subscribed topics (0: not read yet) */
	int64_t partial_since_ms; /* a single consumer: assigned fewer than all since (0: not) */
	int64_t partial_grace_ms; /* ... refused after this (twice session.timeout.ms) */
	int64_t last_poll_ms, last_ended_check_ms;
	int64_t revoke_ms;
	int fatal_rc;
	char fatal[1024];
	sp_kafka_secrets_t secrets;
} ksrc_t;

/* ---- source.c ---- */
/** The kpart of topic/partition, or NULL. */
kpart_t *sp_kafka_kp_find(ksrc_t *x, const char *topic, int32_t partition);
/** The kpart of topic/partition, made when missing (NULL when out of memory). */
kpart_t *sp_kafka_kp_get(ksrc_t *x, const char *topic, int32_t partition);
/** "kafka/TOPIC/P" -> its kpart (made when create), or NULL. */
kpart_t *sp_kafka_kp_by_name(ksrc_t *x, const char *name, bool create);
/** Keep the first fatal error; poll() and service() return it. */
void sp_kafka_set_fatal(ksrc_t *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- poll.c ---- */
/** Empty the consumer queue's wakeup pipe (the engine polls its read end). */
void sp_kafka_drain_pipe(ksrc_t *x);
/** Messages in the stash. */
size_t sp_kafka_stash_len(const ksrc_t *x);
/** The stash holds its share (times 1), or twice that (times 2: every partition is
 *  paused then). */
bool sp_kafka_stash_full(const ksrc_t *x, unsigned times);
/** Append m to the stash (it owns m then). SPATE_OK or SPATE_ERR_NOMEM. */
int sp_kafka_stash_push(ksrc_t *x, rd_kafka_message_t *m);
/** Drop the stashed messages of one partition (revoked), keeping the others' order. */
void sp_kafka_stash_drop(ksrc_t *x, const char *topic, int32_t partition);
/** Destroy every stashed message. */
void sp_kafka_stash_clear(ksrc_t *x);
/** Free the stash and poll()'s scratch. */
void sp_kafka_stash_free(ksrc_t *x);
/** The source's poll(). */
int sp_kafka_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
                  size_t size);

/* ---- group.c ---- */
/** librdkafka's callbacks (opaque: the ksrc_t). The rebalance and stats callbacks are
 *  served on the engine thread (inside poll() or service()); on_log on librdkafka's. */
void sp_kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                           void *opaque);
void sp_kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
void sp_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
int sp_kafka_on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
/** The on_new interceptor (ic_opaque: the ksrc_t): adds the on_request_sent one that
 *  counts JoinGroup requests. */
rd_kafka_resp_err_t sp_kafka_on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *ic_opaque,
                                    char *errstr, size_t errstr_size);
/** The source's released(): partition p of a revoke is released; once every partition
 *  of the revoke is, the source unassigns them. */
void sp_kafka_released(sp_source_t *s, sp_part_t *p, bool saved);
/** With a store that is not the group, or no store and stop.at.end: refuse another member
 *  (why: a revoke's text, or NULL to check the assignment). */
void sp_kafka_check_single_member(ksrc_t *x, const char *why);
/** The source's ended(): stop.at.end through the group's commits; with another store or
 *  none, once every partition is held and handed over up to its end (the engine then
 *  compares its own checkpoints, p->end). */
bool sp_kafka_ended(sp_source_t *s);
/** Whether the installed librdkafka aborts destroying this consumer before its first
 *  assignment (librdkafka issue #4312). Call once the handle exists. */
bool sp_kafka_has_bug_4312(ksrc_t *x);
/** Leave the group and close the consumer (rd_kafka_consumer_close), first serving the
 *  group until the first assignment when the installed librdkafka would abort in
 *  rd_kafka_destroy() otherwise. Returns false when the handle must not be destroyed
 *  (that state outlasted the session timeout): it is left to the process exit, with x,
 *  whose callbacks then return at once. @locality the engine thread. */
bool sp_kafka_close(ksrc_t *x);

/* ---- store.c ---- */
/** The source's open_store(): store=kafka commits through this consumer. */
int sp_kafka_open_store(sp_source_t *s, const char *kind, const char *arg, sp_store_t *out, char *errstr,
                        size_t size);

#endif
