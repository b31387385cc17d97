/* source.h - what the Kinesis source's two files share: source.c (the plugin: open,
 * seek, poll, fetching and replies) and shards.c (the shard table: ListShards with
 * pagination, the periodic shard sync, and the rule that a child starts only once the
 * store shows every parent at SHARD_END). Internal to connectors/kinesis. */
#ifndef SPATE_CONNECTORS_KINESIS_SOURCE_H
#define SPATE_CONNECTORS_KINESIS_SOURCE_H

#include "kinesis.h"

enum {
	KSRC_GATE_CHECK_MS = 100,  /* a waiting child looks at its parents' checkpoints this often */
	KSRC_TICK_MS = 50,         /* next_ms() while requests are in flight */
	KSRC_MAX_CHUNKS = 256,     /* chunks made but not yet returned by poll(), at most */
	KSRC_AVG_REC_BYTES = 1024, /* the first guess of a record's size, for Limit */
};

/* How a shard's iterator is asked for. */
enum { IT_TRIM_HORIZON, IT_LATEST, IT_AT_TIMESTAMP, IT_AFTER_SEQ, IT_AT_SEQ };

/* A shard's state. */
enum {
	KS_UNSTARTED,    /* registered, seek() not yet called */
	KS_WAIT_PARENTS, /* a child whose parents are not all at SHARD_END in the store */
	KS_NEED_ITER,    /* an iterator must be asked for */
	KS_READY,        /* holds an iterator; fetches when its time comes */
	KS_BUSY,         /* a request of it is in flight */
	KS_ENDED,        /* read to its end (SHARD_END handed over), or finished at start */
};

/* Request kinds (kin_req_t.kind). */
enum { RQ_LIST, RQ_ITER, RQ_GET };

typedef struct kshard {
	char *id, *parent, *adj; /* parents NULL when none */
	bool closed;             /* the listing had an EndingSequenceNumber */
	bool listed;             /* in the latest complete listing */
	bool at_open;            /* known at open (stop.at.end notes its end) */
	sp_part_t *p;            /* the engine's partition (lease mode: NULL unless held) */
	uint64_t gen;            /* raised when p is released: replies of an older gen are dropped */
	int state;
	/* how to (re)acquire the iterator */
	int it_kind;
	char it_seq[SPATE_POSITION_MAX];
	int64_t it_ts_ms;
	bool has_filter; /* drop records at or before filter (AT_SEQUENCE_NUMBER) */
	spate_position_t filter;
	char *iter;
	/* the last Kinesis record fetched (ExpiredIterator re-acquires after it) */
	char last_seq[SPATE_POSITION_MAX];
	bool has_last;
	spate_position_t last_pos; /* the last record handed over (stop.at.end) */
	bool handed;
	int64_t calls[KIN_GETS_PER_S]; /* times of the last GetRecords calls (ring) */
	int call_at;
	int64_t not_before; /* monotonic ms: no request before */
	int64_t gate_at;    /* next look at the parents */
	int backoff_n, malformed_n;
	int64_t behind_ms;
	bool end_noted; /* stop.at.end: the end of an open shard was noted */
	bool warned_orphan;
	double avg_rec; /* average record bytes seen (Limit) */
} kshard_t;

typedef struct kin_src {
	sp_engine_t *eng;
	const spate_conf_t *conf;
	kin_aws_t aws;
	kin_http_t *http;
	char stream_member[600]; /* "StreamName":"..." or "StreamARN":"..." */
	kshard_t **shards;
	size_t nshards, cap;
	bool stop_at_end, no_store, running;
	bool leased; /* lease mode: shards are lease candidates, worked once taken */
	int64_t sync_ms, idle_ms;
	int64_t resolve_ms; /* starting.position=latest: the time every shard starts at */
	/* the shard sync */
	bool listing; /* a ListShards walk is in flight */
	int64_t next_sync;
	int64_t token_at; /* when the NextToken in list was issued */
	kin_shard_list_t list;
	/* finished requests from the I/O thread (under mu), and its wake-up */
	pthread_mutex_t mu;
	kin_req_t *done_head, *done_tail;
	int evfd;
	int inflight;
	/* chunks made, waiting for poll() */
	sp_chunk_t *ready[KSRC_MAX_CHUNKS];
	int nready;
	int fatal_rc;
	char fatal[1024];
} kin_src_t;

/* ---- shards.c ---- */
/** The shard of id, or NULL. */
kshard_t *kin_shard_find(kin_src_t *x, const char *id);
/** List every shard synchronously (open): pages of ListShards into x->list. */
int kin_list_sync(kin_src_t *x, char *errstr, size_t size);
/** Merge x->list into the shard table; register new shards (after start: start them).
 *  Marks shards no longer listed. */
int kin_shards_merge(kin_src_t *x, char *errstr, size_t size);
/** Start a ListShards walk when due (or now when force). */
void kin_sync_maybe(kin_src_t *x, bool force);
/** A ListShards reply came. */
void kin_on_list(kin_src_t *x, kin_req_t *r);
/** A waiting child: whether every parent is at SHARD_END in the store (or gone). */
bool kin_parents_done(kin_src_t *x, kshard_t *s);
/** Send r (any kind) through the I/O thread; its reply comes back to poll(). */
void kin_send(kin_src_t *x, kin_req_t *r);
/** Keep the first fatal error; poll() returns it. */
void kin_fatal(kin_src_t *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** "OP: HTTP S TYPE: MESSAGE" or the transport error of a finished request, into buf. */
void kin_req_what(const kin_req_t *r, char *buf, size_t size);

#endif
