/* engine.h - the engine's own structures, shared by the files of engine/ only.
 *
 * Threads and who owns what:
 *  - the engine thread (the caller of spate_engine_run) owns the source, the tracker
 *    (every partition's chunk FIFO and checkpoint), the checkpoint coordinator and the
 *    producer side of every lane's run ring;
 *  - a worker owns the lane it has claimed (the consumer side of its ring and its retry
 *    state) and the producer side of its own completion ring;
 *  - e->mu guards only the ready queue, lane states and the parked list: it is taken
 *    once per dispatched chunk and once per lane claim, never per record.
 */
#ifndef SPATE_ENGINE_ENGINE_H
#define SPATE_ENGINE_ENGINE_H

#include "engine/internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* Runs a lane can queue: a run is one chunk's records for that lane. When a lane's ring
 * is full the engine holds the next chunk back (backpressure), so this bounds memory per
 * lane, not throughput. Power of two. */
#define SP_LANE_RING 256
/* Completion entries per worker ring: a batch produces one entry per chunk it spans.
 * Power of two. */
#define SP_COMP_RING 4096
/* Batches a worker runs back to back on one lane before it requeues the lane behind
 * others, so one busy lane cannot starve the rest. */
#define SP_LANE_BURST 8
/* The most lanes an engine runs (partitions x parallelization.factor). */
#define SP_MAX_LANES 65536
/* Freed chunk allocations kept for reuse: a chunk is one allocation of about 0.5 MiB,
 * above glibc's mmap threshold, so without reuse every chunk's pages fault in anew. */
#define SP_CHUNK_CACHE 64

/* The source resumes once in-flight bytes and records are below (DIV-1)/DIV of their
 * bounds. */
#define SP_RESUME_DIV 4

/* How long the final checkpoint waits for a busy store (a Kafka group in a rebalance). */
#define SP_FINAL_BUSY_MS 10000

/* The autoscaler's tick. */
#define SP_AUTOSCALE_TICK_MS 100

/* The engine thread's longest sleep when nothing wakes it: the tick of the checkpoint
 * coordinator and of the stop checks. */
#define SP_TICK_MS 100

/* Depth of the bisect stack: halving batch.size (at most 10,000) reaches 1 in 14 steps. */
#define SP_BISECT_DEPTH 32

enum lane_state { LANE_IDLE = 0, LANE_QUEUED, LANE_RUNNING, LANE_PARKED };

typedef struct sp_run {
	sp_chunk_t *c;
	uint32_t begin; /* into c->order */
	uint32_t len;
} sp_run_t;

struct sp_lane {
	/* producer side: the engine thread */
	_Alignas(64) _Atomic uint32_t head;
	/* consumer side: the claiming worker */
	_Alignas(64) _Atomic uint32_t tail;
	uint32_t off;          /* records of ring[tail] already consumed */
	uint32_t bisect_limit; /* 0 = batch.size; else the size of the next batch while bisecting */
	uint32_t bisect_depth; /* pending second halves on the stack */
	uint32_t bisect_stack[SP_BISECT_DEPTH];
	uint32_t dlq_pending;  /* head records exhausted and waiting for the DLQ */
	int dlq_condition;     /* their condition */
	int64_t park_until_ms; /* monotonic; valid in LANE_PARKED */
	char last_err[256];    /* the last error seen at the head (for the DLQ) */
	/* runs in [tail, mig_head) were copied into the arena (their chunks are unpinned) */
	uint32_t mig_head;
	struct sp_arena *arena; /* blocks of copied record bytes, freed when passed */
	bool mig_wanted;        /* under e->mu: a parked lane got new runs to copy */
	/* its partition was released (a Kafka revoke): whoever holds the lane drops its
	 * records as DONE without the handler or the DLQ (set under e->mu) */
	_Atomic bool released;
	/* under e->mu */
	int state;
	sp_lane_t *next; /* ready queue or parked list */
	/* constant */
	sp_part_t *part;
	uint32_t index;
	sp_run_t ring[SP_LANE_RING];
};

/* The engine's per-partition state (tracker and lanes), owned by the engine thread. */
struct sp_part_eng {
	spate_engine_t *engine;
	sp_lane_t **lanes; /* factor lanes */
	sp_lane_t *lane_block;
	bool started;      /* checkpoint loaded, source seeked */
	bool revoked;      /* released (Kafka rebalance): never checkpointed again, and
	                    * freed once nothing refers to it (sp_engine_reap) */
	sp_chunk_t *fifo_head, *fifo_tail;
	uint64_t next_seq;
	sp_ckpt_t ckpt;        /* what the tracker has DONE */
	sp_ckpt_t saved;       /* what the store holds */
	bool dirty;
	bool head_dirty;       /* completions touched the head chunk since the last advance */
	uint64_t done;         /* records DONE */
};

enum comp_kind {
	COMP_DONE = 0, /* records c->order[begin .. begin+len) are DONE */
	COMP_UNPIN = 1 /* no lane reads c's bytes any more: release them */
};

typedef struct sp_comp {
	sp_chunk_t *c;
	uint32_t begin; /* into c->order */
	uint32_t len;
	uint32_t kind;
} sp_comp_t;

/* Worker counters: written by the worker only, read relaxed by anyone. */
/* Handler latency histogram: bucket i counts batches of [2^i, 2^(i+1)) microseconds. */
#define SP_LAT_BUCKETS 40

typedef struct sp_wstats {
	_Atomic uint64_t lat[SP_LAT_BUCKETS];
	_Atomic uint64_t batches, failed, dlq, dropped, retries, dlq_errors, busy_ns, records_in;
	_Atomic uint64_t migrated, arena_bytes;
} sp_wstats_t;

typedef struct sp_worker {
	sp_engine_t *e;
	int id;
	pthread_t th;
	bool started;
	/* completion ring: this worker produces, the engine thread consumes */
	_Alignas(64) _Atomic uint32_t chead;
	_Alignas(64) _Atomic uint32_t ctail;
	sp_comp_t ring[SP_COMP_RING];
	_Alignas(64) sp_wstats_t st;
	/* scratch for one batch (worker only) */
	const spate_record_t **ptrs;
	struct sp_bref *refs;
	uint8_t *failed;
	uint32_t *item_err; /* offsets into errbuf, per failed item */
	char *errbuf;
	size_t errbuf_len, errbuf_cap;
	char *dlqbuf; /* header values for DLQ records */
	size_t dlqbuf_cap;
	spate_push_record_t *dlqrecs;
	spate_header_t *dlqhdrs;
	size_t dlqhdrs_cap;
	void *hctx;
	bool inited; /* the handler's init ran on this worker and fini has not */
	uint64_t rng;
} sp_worker_t;

/* A record of the current batch: where it lives. */
typedef struct sp_bref {
	sp_chunk_t *c;
	uint32_t ord; /* index into c->order */
} sp_bref_t;

struct spate_batch {
	const spate_record_t *const *recs;
	size_t n;
	uint8_t *failed;
	uint32_t nfailed;
	sp_worker_t *w;
	char err[256];
};

struct spate_engine_s {
	spate_conf_t *conf;
	spate_handler_t h;
	const sp_operator_ops_t *op; /* when the handler is built in */
	bool handler_created;
	int log_level;

	/* settings read once */
	uint32_t batch_size;
	uint64_t batch_max_bytes;
	uint32_t factor;
	int64_t max_retry, max_age_ms, backoff_ms, backoff_max_ms;
	bool bisect, item_failures, stop_at_end;
	uint64_t max_inflight_bytes, max_inflight_records;
	int64_t shutdown_timeout_ms, ckpt_interval_ms, ckpt_records;
	int nworkers;      /* threads: max.concurrency */
	int min_workers;
	int64_t scale_down_idle_ms;
	int64_t stats_interval_ms;

	sp_source_t src;
	bool src_open;
	sp_store_t store;
	bool store_open;
	sp_sink_t dlq;
	bool dlq_open;
	/* test fault hook: SPATE_FAULT_DLQ=fail:N makes the next N DLQ writes fail (read at
	 * start, per engine; CI runs as root, so permissions cannot simulate an outage) */
	_Atomic int64_t fault_dlq_left;

	sp_part_t **parts;
	size_t nparts, parts_cap;
	size_t nlanes; /* in all partitions */
	bool lanes_ready;

	sp_worker_t **workers;

	/* ready queue and parked lanes, under mu */
	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* active workers wait here for lanes */
	pthread_cond_t idle_cv; /* stopped workers wait here to be started */
	sp_lane_t *ready_head, *ready_tail;
	sp_lane_t *parked;
	int idle_workers;
	int active;        /* workers allowed to claim lanes (the autoscaler sets it) */
	int nready;        /* lanes in the ready queue */
	int nrunning;      /* lanes claimed by a worker */
	_Atomic int64_t cold_ns; /* a record arrived while no worker was active (0: none pending) */
	bool quit; /* workers exit */
	bool workers_cv_ready; /* idle_cv was initialized */
	int init_failed;
	char init_err[256];

	/* engine thread state */
	int wakefd;
	_Atomic int sleeping;
	_Atomic int stop_req; /* 1: graceful, 2: at once */
	bool started, running, finished;
	sp_chunk_t *held;     /* a chunk that could not be dispatched yet */
	size_t nrevoked;      /* revoked partitions not yet freed */
	uint64_t nforgotten;  /* revoked partitions freed (sp_engine_reap) */
	bool paused;          /* the source is paused at the in-flight bounds */
	struct {
		void *mem;
		size_t size;
	} chunk_cache[SP_CHUNK_CACHE]; /* engine thread only */
	int chunk_cached;
	_Atomic uint64_t inflight_bytes, inflight_records; /* engine thread writes; stats read */
	uint64_t peak_inflight_bytes;
	uint64_t done_since_flush;
	int64_t last_flush_ms;
	_Atomic uint64_t records_done;
	uint64_t store_errors;
	uint64_t corrupt_dlq, corrupt_dropped; /* skipped regions sent to the DLQ / dropped */
	int64_t start_ns, end_ns;
	_Atomic int64_t first_ns;
	int64_t last_done_ns;
	uint64_t rng;
	struct sp_autoscale *as; /* autoscale.c */
	struct sp_metrics *mx;   /* metrics.c */
};

/** Free the chunk allocations kept for reuse. */
void sp_chunk_cache_clear(spate_engine_t *e);

/** Write to the DLQ through the test fault hook (SPATE_FAULT_DLQ). Any thread. */
int sp_dlq_write(sp_engine_t *e, const spate_push_record_t *recs, size_t n, char *errstr, size_t size);

/* dispatch.c */
/** Dispatch chunk c into its partition's lanes. Returns false (and does nothing) when a
 *  lane's ring has no room: the caller holds the chunk and tries again later. */
bool sp_dispatch(sp_engine_t *e, sp_chunk_t *c);
/** Lane of a record: XXH3_64bits(key) % factor; keyless records by position. */
uint32_t sp_lane_of(const spate_record_t *r, uint32_t factor);

/* worker.c */
int sp_workers_start(sp_engine_t *e, char *errstr, size_t size);
void sp_workers_stop(sp_engine_t *e);
void sp_workers_free(sp_engine_t *e);
/** Free the retry arenas still held by lanes (at destroy). */
void sp_lanes_free_arenas(sp_engine_t *e);
/** Make lanes ready under e->mu and wake workers. */
void sp_lanes_ready(sp_engine_t *e, sp_lane_t **lanes, size_t n);
/** Partition p was released: its lanes drop what they still hold (parked ones are woken
 *  for it). @locality the engine thread. */
void sp_lanes_release(sp_engine_t *e, sp_part_t *p);
/** No worker holds or will run a lane of p, and its lanes hold nothing. */
bool sp_lanes_quiet(sp_engine_t *e, sp_part_t *p);

/* tracker.c */
/** Drain every worker's completion ring; returns the number of entries. */
size_t sp_tracker_drain(sp_engine_t *e);
/** Append a dispatched chunk to its partition's FIFO. */
void sp_tracker_add(sp_engine_t *e, sp_chunk_t *c);
/** Free every chunk still held (at destroy). */
void sp_tracker_free_all(sp_engine_t *e);

/* autoscale.c */
int sp_autoscale_new(sp_engine_t *e, char *errstr, size_t size);
void sp_autoscale_free(sp_engine_t *e);
/** Every SP_AUTOSCALE_TICK_MS on the engine thread: set e->active from the load. */
void sp_autoscale_tick(sp_engine_t *e, int64_t now_ns);
/** Under e->mu, when lanes became ready: scale up from zero at once (a cold start). */
void sp_autoscale_wake_locked(sp_engine_t *e);
/** A worker starts a batch: if a cold start is pending, measure it. */
void sp_autoscale_cold_done(sp_engine_t *e);
/** Worker count over time (min, max, time-weighted mean) and cold starts, into s. */
void sp_autoscale_summary(sp_engine_t *e, spate_summary_t *s);

/* metrics.c */
int sp_metrics_new(sp_engine_t *e, char *errstr, size_t size);
void sp_metrics_free(sp_engine_t *e);
/** On the engine thread: write a stats line when due. */
void sp_metrics_tick(sp_engine_t *e, int64_t now_ns);

/* checkpoint.c */
/** Flush dirty checkpoints when due (force: now). Returns SPATE_OK or a store error. */
int sp_checkpoint_maybe_flush(sp_engine_t *e, bool force);
/** Load every partition's checkpoint and seek the source; checkpoint resolved starts. */
int sp_checkpoint_load_and_seek(sp_engine_t *e, char *errstr, size_t size);
/** Free revoked partitions nothing refers to any more (no chunk in flight, lanes quiet).
 *  @locality the engine thread. */
void sp_engine_reap(sp_engine_t *e);
/** Free partition p's memory (its lanes, names). */
void sp_part_free(sp_part_t *p);

#endif
