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

#include "engine/hist.h"
#include "engine/ring.h"
#include "engine/spi/sp_registry.h"
#include "engine/spi/sp_spi.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct sp_lane sp_lane_t;

/* Per-record state the engine keeps beside each descriptor. */
typedef struct sp_rstate {
	uint8_t done;        /* set by the tracker thread only */
	uint8_t pad;
	uint16_t attempts;   /* failed invocations that counted (worker that owns the lane) */
	uint32_t lane;       /* lane index within the partition */
	int64_t first_fail_ms;
	int64_t last_fail_ms;
} sp_rstate_t;

_Static_assert(sizeof(spate_record_t) + sizeof(sp_rstate_t) + sizeof(uint32_t) == SP_CHUNK_REC_COST,
               "SP_CHUNK_REC_COST (sp_spi.h) is what a record costs the engine");

/* The engine's chunk: the source-visible sp_chunk_t first (sources get &ck->pub), then
 * the tracker's and the lanes' state of it. */
typedef struct sp_ck {
	sp_chunk_t pub;
	uint32_t pending;         /* records not DONE (tracker thread) */
	uint32_t cursor;          /* tracker: records [0, cursor) are DONE */
	uint32_t done_prefix;     /* tracker: with identity order, [0, done_prefix) are DONE
	                           * without their done bytes set (in-order completions) */
	bool identity;            /* order[i] == i (parallelization.factor 1) */
	sp_rstate_t *st;          /* n states, zeroed */
	uint32_t *order;          /* n record indices grouped by lane (dispatch) */
	struct sp_ck *next;       /* partition FIFO, or a paused partition's held list */
	struct sp_ck *prev;
	/* later chunks that were DONE while this one was not were freed into it: once this
	 * chunk is passed, the checkpoint moves on to tail_to (tracker thread) */
	bool has_tail;
	spate_position_t tail_to;
	uint64_t seq;             /* chunk number within the partition */
	int64_t arrived_ms;       /* monotonic ms it entered the engine (batch.window.ms) */
	int64_t arrived_ns;       /* ... in ns (end-to-end latency from arrival) */
	/* lanes whose runs still point into buf (set by dispatch, dropped by workers as runs
	 * are consumed or copied into a retrying lane's arena); at 0 the bytes are released
	 * before the records are DONE, so a retrying lane pins no read buffer */
	_Atomic uint32_t lane_refs;
	bool bytes_released; /* tracker thread */
	/* the engine's memory of the chunk: recs, st, order and hdrs live in one body
	 * allocation (reused through a cache), apart from this header, so that a chunk whose
	 * only unfinished records were copied into a retrying lane's arena can free its body
	 * and keep a small summary (ghost) until they are DONE (tracker.c) */
	void *body;
	size_t body_size;
	struct sp_ghost *ghost;
	uint64_t mem;         /* what the chunk's own memory counts in the bound (tracker) */
	uint32_t mig_pending; /* tracker: pending records that a lane copied into its arena */
} sp_ck_t;

/* The engine's chunk of a chunk a source made (sp_chunk_new allocates an sp_ck_t). */
static inline sp_ck_t *sp_ck(sp_chunk_t *c)
{
	return (sp_ck_t *)c;
}

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
/* A retrying lane whose copy found no room in its partition's share (sp_lane_migrate)
 * tries again this many ms later, while it stays parked: room comes when the tracker
 * releases chunks, or when the lane becomes the last reader of its oldest chunk, and
 * neither wakes a parked lane by itself. */
#define SP_MIG_RETRY_MS 5
/* Lanes one feed round collects before it makes them ready (one lock and one wakeup for
 * all of them); more flush early. */
#define SP_READY_PEND 256
/* ... and makes ready every this many (a worker runs the first while the engine thread
 * dispatches the rest of the round). */
#define SP_READY_BATCH 16
/* Longest a worker that keeps running lanes leaves its completions unannounced to a
 * sleeping engine thread (worker.c burst_done): 1 ms. */
#define SP_WAKE_DEFER_NS 1000000
/* The most lanes an engine runs (partitions x parallelization.factor). */
#define SP_MAX_LANES 65536
/* Freed chunk allocations kept for reuse: a chunk is one allocation of about 0.5 MiB,
 * above glibc's mmap threshold, so without reuse every chunk's pages fault in anew. */
#define SP_CHUNK_CACHE 64
/* The freed chunk bodies kept for reuse (chunk.c) hold at most this part of
 * max.inflight.bytes: they are memory outside the bound, and a body of small records
 * (8,192 descriptors, 1.4 MiB) times 64 was more than a small bound itself. */
#define SP_CHUNK_CACHE_DIV 4

/* A paused partition resumes once its held chunks are admitted and its in-flight bytes
 * and records are below (DIV-1)/DIV of its share, or the engine's total is below
 * (DIV-1)/DIV of the bound (hysteresis: a source is not toggled for every chunk). */
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

/*
 * A lane's state machine. The state is read and written under e->mu only; the ring of
 * runs (ring.h) is not (its producer and consumer need no lock).
 *
 *   from      to        when                                              by (worker.c)
 *   IDLE      QUEUED    runs were dispatched to it                         sp_lanes_ready
 *   IDLE      QUEUED    its partition was released while it holds runs     sp_lanes_release
 *   QUEUED    RUNNING   a worker claims it off the ready queue (while the  worker_main
 *                       store holds the handlers, e->store_hold, only a    (take_ready_locked)
 *                       lane of a released partition)
 *   RUNNING   IDLE      its batches ran and nothing is left                worker_main
 *   RUNNING   QUEUED    SP_LANE_BURST batches ran and more wait (fairness) worker_main
 *   RUNNING   QUEUED    the store holds the handlers (e->store_hold) and   worker_main
 *                       more wait                                          (may_run)
 *   RUNNING   PARKED    a failure set park_until_ms (retry backoff, or a   worker_main (after
 *                       DLQ that could not be written); the queued runs    migrate)
 *                       were copied to its arena first
 *   PARKED    QUEUED    its time came                                      unpark_locked
 *   PARKED    QUEUED    its partition was released                         sp_lanes_release
 *   PARKED    RUNNING   runs came while it waits (mig_wanted): a worker    take_migration_locked,
 *                       copies them to the arena, then it parks again      worker_main
 *   RUNNING   PARKED    its batch is not full and batch.window.ms has not  worker_main (run_batch,
 *                       passed since its first record (window_wait; no     window_due)
 *                       copy to the arena: it is not retrying)
 *   PARKED    QUEUED    a window-parked lane got runs: it looks again      sp_lanes_ready
 *
 * mig_wanted is set by sp_lanes_ready on a parked lane that gets runs, by worker_main
 * when runs came while the lane was being copied or runs were left for want of room, and
 * by unpark_locked when mig_retry_ms (a copy that found no room at all) comes; cleared
 * when a worker takes the lane for the copy or when it leaves PARKED.
 */
enum lane_state { LANE_IDLE = 0, LANE_QUEUED, LANE_RUNNING, LANE_PARKED };

typedef struct sp_run {
	sp_ck_t *c;
	uint32_t begin; /* into c->order */
	uint32_t len;
} sp_run_t;

struct sp_lane {
	/* the ring of runs: the engine thread produces (dispatch), the claiming worker
	 * consumes (ring.h) */
	sp_ring_t rq;
	uint32_t off;          /* records of ring[tail] already consumed */
	uint32_t bisect_limit; /* 0 = batch.size; else the size of the next batch while bisecting */
	uint32_t bisect_depth; /* pending second halves on the stack */
	uint32_t bisect_stack[SP_BISECT_DEPTH];
	uint32_t dlq_pending;  /* head records exhausted and waiting for the DLQ */
	int dlq_condition;     /* their condition */
	int64_t park_until_ms; /* monotonic; valid in LANE_PARKED */
	bool window_wait;      /* parked for batch.window.ms, not for a retry: new runs wake it */
	char last_err[256];    /* the last error seen at the head (for the DLQ) */
	/* A retrying lane's queued records, moved out of the ring (so a lane that retries
	 * for long holds no ring slots and pins no read buffers): refs in order, consumed
	 * before the ring; their bytes were copied into the arena. Claiming worker only. */
	struct sp_mrec **mq;
	uint32_t mq_off, mq_len, mq_cap;
	struct sp_arena *arena; /* blocks of copied record bytes, freed when mq is passed */
	uint64_t arena_counted; /* bytes of arena and mq counted in the in-flight bound */
	bool mig_wanted;        /* under e->mu: a parked lane got new runs to copy */
	int64_t mig_retry_ms;   /* under e->mu: its copy found no room; try again then (0: no) */
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
	bool counted;      /* takes part in the shares of the in-flight bounds */
	/* sp_engine_partition_release: its dispatched records finish (or, lost, are dropped)
	 * until release_deadline (monotonic ms), then it is released (sp_engine_releases) */
	bool releasing, release_lost;
	int64_t release_deadline;
	/* what this partition has in flight (see flow.c): bytes of chunks not yet released
	 * plus its lanes' retry arenas; records not yet DONE */
	uint64_t infl_bytes, infl_records;
	/* chunks in the tracker whose bytes lanes still read (not yet bytes_released): none,
	 * with records in flight, means that only retrying lanes' copies and the chunks they
	 * came from are (sp_flow_fits) */
	uint32_t live_chunks;
	/* the budget of a retrying lane's copies (sp_lane_migrate): a worker reserves what
	 * it copies in mig_taken (bytes reserved since the start; a copy that fails gives
	 * its reservation back) while that stays at or under mig_limit, which the tracker sets to mig_seen (the reserved bytes
	 * it has counted in infl_bytes) plus what the partition's share leaves (flow.c). So
	 * copies reserved and not yet counted never pass the share either. */
	_Atomic uint64_t mig_taken, mig_limit;
	uint64_t mig_seen;
	/* a copy past the share is under way (sp_lane_migrate): one at a time */
	atomic_bool mig_over;
	/* chunks the source returned that may not enter yet (their partition is over its
	 * share, or a lane ring is full), in delivery order; p->paused is set meanwhile */
	sp_ck_t *held_head, *held_tail;
	uint64_t held_bytes;
	sp_ck_t *fifo_head, *fifo_tail;
	uint64_t next_seq;
	sp_ckpt_t ckpt;        /* what the tracker has DONE */
	sp_ckpt_t saved;       /* what the store holds */
	bool dirty;
	bool head_dirty;       /* completions touched the head chunk since the last advance */
	uint64_t done;         /* records DONE */
	/* lease mode (lease.c): 1 + the index of the partition's candidate (0: none), and
	 * the counter of its lease every checkpoint write is conditional on */
	size_t lease_cand;
	uint64_t lease_counter;
	/* the local deadline of its lease (monotonic ms; 0: none): workers hand no batch of
	 * it to the handler from then on (the engine thread writes, workers read) */
	_Atomic int64_t lease_deadline;
	int64_t newest_ts_ms;  /* stream timestamp of the newest record dispatched (iterator age) */
};

/* A partition of a source in lease mode (lease.c): named by the source at open, worked
 * once this process holds its lease. */
struct sp_lease_cand {
	char *name, *source, *topic, *shard, *parents;
	int32_t partition;
	int index; /* the source's index of it (sp_source_ops_t.take) */
	bool has_end;
	spate_position_t end;
	sp_part_t *part;    /* held: the partition taken; NULL otherwise */
	uint64_t counter;   /* held: the lease's counter */
	int64_t renewed_ms; /* held: when the last successful renewal (or the acquire) was sent */
	/* the store's view at the last list */
	bool listed;
	char owner[SP_LEASE_OWNER_MAX];
	uint64_t seen_counter;
	int expired;
	int64_t seen_since_ms; /* a store without a clock: when seen_counter was first seen */
	bool has_ckpt;
	sp_ckpt_t ckpt;
	/* named while running (a Kinesis child): stop.at.end does not wait for it */
	bool late;
	/* stop.at.end, an end not known at open (sp_source_ops_t.part_ended): this process
	 * read it to its end and gave its lease up; it does not take it again */
	bool done_here;
};

enum comp_kind {
	COMP_DONE = 0,     /* records c->order[begin .. begin+len) are DONE */
	COMP_UNPIN = 1,    /* no lane reads c's bytes any more: release them */
	COMP_ARENA = 2,    /* a lane of part's retry arena grew (delta > 0) or was freed (< 0) */
	COMP_MIGRATED = 3, /* len records of c were copied into a lane's arena */
	COMP_DONE_IDX = 4, /* records with indices begin .. begin+len of c (copied ones) are DONE */
	COMP_ARENA_OVER = 5 /* COMP_ARENA of the copy that passed part's share (mig_over), sent
	                     * after its UNPIN: part may make another such copy */
};

typedef struct sp_comp {
	union {
		sp_ck_t *c;
		sp_part_t *part; /* COMP_ARENA, COMP_ARENA_OVER */
	};
	union {
		struct {
			uint32_t begin; /* into c->order */
			uint32_t len;
		};
		int64_t delta; /* COMP_ARENA, COMP_ARENA_OVER: bytes */
	};
	uint32_t kind;
} sp_comp_t;

/* Worker counters: written by the worker only, read relaxed by anyone. */
/* Per-worker counters and histograms: written by the worker only, read relaxed by anyone
 * (hist.h). Latencies are microseconds. A batch's oldest and newest records stand for its
 * records in the end-to-end histograms (half of the batch each), so a record costs no
 * histogram update of its own. */
typedef struct sp_wstats {
	sp_hist_t handler;      /* handler time per batch */
	sp_hist_t ts_start;     /* from a record's stream timestamp to its handler call */
	sp_hist_t ts_done;      /* ... to DONE (after its emits are durable) */
	sp_hist_t in_start;     /* from its arrival in the engine to its handler call */
	sp_hist_t in_done;      /* ... to DONE */
	_Atomic uint64_t batches, failed, dlq, dropped, retries, dlq_errors, busy_ns, records_in;
	_Atomic uint64_t migrated, arena_bytes, emitted, filtered;
	_Atomic uint64_t errors; /* handler invocations that failed (a whole batch or items) */
} sp_wstats_t;

typedef struct sp_worker {
	sp_engine_t *e;
	int id;
	pthread_t th;
	bool started;
	/* completion ring: this worker produces, the engine thread consumes (ring.h) */
	sp_ring_t cq;
	sp_comp_t ring[SP_COMP_RING];
	/* when the oldest completion the engine was not woken for was pushed (0: none) */
	int64_t owed_ns;
	/* how long this worker's last handler call took (worker only) */
	uint64_t last_took_ns;
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
	/* records the handler emitted in the current batch (emit.c): staged here, written
	 * to their sinks after the handler returns, then reset; the buffers are reused */
	struct sp_emit_rec *em;
	uint32_t nem, em_cap;
	char *ebuf;
	size_t ebuf_len, ebuf_cap;
	struct sp_emit_hdr *eh;
	uint32_t neh, eh_cap;
	spate_push_record_t *eout; /* one sink's records for its write */
	spate_header_t *eouth;
	size_t eout_cap, eouth_cap;
	char *eids; /* the spate.origin values */
	size_t eids_cap;
	bool bytes_full; /* the last batch built stopped at batch.max.bytes */
	/* filter (NULL without one): the scratch it matches in, and for a batch with filtered
	 * records, each handler record's index in the batch (w->ptrs holds only those) */
	struct sp_filter_scratch *fscratch;
	uint32_t *hmap;
	void *hctx;
	bool inited; /* the handler's init ran on this worker and fini has not */
	_Atomic bool exited; /* the thread left its loop (it only joins from here) */
	uint64_t rng;
} sp_worker_t;

/* A block of a retrying lane's arena (lane.c): copied records, headers and bytes. */
typedef struct sp_arena {
	struct sp_arena *next;
	size_t len;
	char bytes[];
} sp_arena_t;

/* A record a retrying lane copied into its arena (lane.c): the descriptor and state
 * the worker uses from then on, and where the record came from (the tracker marks it
 * DONE there by index). */
typedef struct sp_mrec {
	spate_record_t rec;
	sp_rstate_t st;
	sp_ck_t *c;
	uint32_t idx;
} sp_mrec_t;

/* A record of the current batch: where it lives. */
typedef struct sp_bref {
	sp_ck_t *c;
	uint32_t ord;  /* index into c->order (unless m) */
	sp_mrec_t *m;  /* the arena copy, for a record a retrying lane copied */
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
	bool wants_headers; /* sp_engine_wants_headers */
	int log_level;

	/* settings read once */
	uint32_t batch_size;
	uint64_t batch_max_bytes;
	int64_t window_ms; /* batch.window.ms */
	struct sp_filter *filter; /* filter, filter.1..9 (NULL: every record passes) */
	uint32_t factor;
	int64_t max_retry, max_age_ms, backoff_ms, backoff_max_ms;
	bool bisect, item_failures, stop_at_end;
	uint64_t max_inflight_bytes, max_inflight_records;
	int64_t shutdown_timeout_ms, ckpt_interval_ms, ckpt_records;
	int nworkers;      /* threads: max.concurrency */
	int min_workers;
	int64_t scale_down_idle_ms;
	int64_t stats_interval_ms;

	char pipeline[128];  /* sp_engine_pipeline_name */
	char store_uri[4200]; /* the store opened (the source's default when store is unset) */
	sp_source_t src;
	const sp_source_ops_t *src_override; /* sp_engine_set_source_ops (tests) */
	bool src_open;
	sp_store_t store;
	bool store_open;
	/* lease mode (lease.c): the store keeps leases and the source works the partitions
	 * this process holds the lease of */
	bool leased;
	struct sp_lease_cand *cands;
	size_t ncands, cands_cap;
	char lease_owner[SP_LEASE_OWNER_MAX];
	int64_t lease_timeout_ms, lease_margin_ms;
	int64_t lease_next_ms; /* the next renewal and balancing round (monotonic ms) */
	int64_t lease_last_tick;
	/* a fatal error found off the loop's own path (the store lost its data): the loop
	 * stops with it */
	int fatal_rc;
	char fatal_err[1024];
	sp_sink_t dlq;
	bool dlq_open;
	/* the named sinks handlers emit to (sink.NAME=...), opened at start (emit.c) */
	struct sp_named_sink *sinks;
	uint32_t nsinks;
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
	/* lanes dispatched to in this feed round, made ready together at its end (engine
	 * thread only; sp_lanes_defer, sp_lanes_flush) */
	sp_lane_t *pend[SP_READY_PEND];
	size_t npend;
	bool pend_first; /* no lane of this round was made ready yet */
	sp_lane_t *parked;
	int nmig;            /* parked lanes with mig_wanted (workers take their copies first) */
	int64_t park_due_ms; /* no parked lane is due before this, 0: none (may be early) */
	int idle_workers;
	int active;        /* workers allowed to claim lanes (the autoscaler sets it) */
	int nready;        /* lanes in the ready queue */
	int nrunning;      /* lanes claimed by a worker */
	_Atomic int64_t cold_ns; /* a record arrived while no worker was active (0: none pending) */
	/* workers exit: set under mu (with the broadcasts); a worker running a lane also
	 * reads it without mu between batches, to stop early (relaxed: a hint) */
	_Atomic bool quit;
	/* a graceful stop: workers finish the batch they run and start no other */
	_Atomic bool draining;
	/* the store answered SPATE_ERR_BUSY (a Kafka group in a rebalance) and has taken no
	 * checkpoint since: workers finish the batch they run and start none of a partition
	 * that is not released, so what is handled stays within about a checkpoint interval
	 * of what the store holds (written under mu by the engine thread) */
	_Atomic bool store_hold;
	bool workers_cv_ready; /* idle_cv was initialized */
	/* a handler init failed: a worker writes init_err once, under mu, then sets
	 * init_failed (release); the engine thread reads the flag without mu (acquire, once
	 * per turn) and init_err only after it saw the flag */
	_Atomic int init_failed;
	char init_err[256];

	/* engine thread state */
	int wakefd;
	_Atomic int sleeping;
	_Atomic int stop_req; /* 1: graceful, 2: at once */
	_Atomic bool bad_result_said; /* a handler's unknown result was logged */
	bool started, running;
	/* the run is over and end_ns holds its end: the engine thread writes end_ns, then
	 * stores finished (release); the summary and stats read it from any thread (acquire) */
	_Atomic bool finished;
	bool workers_busy;    /* the stop's shutdown.timeout.ms passed with a handler running */
	size_t nrevoked;      /* revoked partitions not yet freed */
	size_t nreleasing;    /* partitions being released (sp_engine_partition_release) */
	uint64_t nforgotten;  /* revoked partitions freed (sp_engine_reap) */
	/* flow control (flow.c): each counted partition has a share of the bounds that is
	 * reserved for it; the unreserved rest is shared first come, first served */
	size_t ncounted;                  /* partitions that take part in the shares */
	uint64_t share_bytes, share_records;
	uint64_t res_bytes, res_records;  /* sum over counted partitions of share - use (>= 0) */
	size_t nheld_parts;               /* paused partitions (p->paused) */
	uint64_t held_bytes;              /* bytes of every held chunk */
	uint64_t arena_bytes;             /* retry arenas (part of inflight_bytes) */
	struct {
		void *mem;
		size_t size;
	} chunk_cache[SP_CHUNK_CACHE]; /* engine thread only */
	int chunk_cached;
	size_t chunk_cached_bytes; /* at most max_inflight_bytes / SP_CHUNK_CACHE_DIV */
	sp_ck_t *hdr_cache[SP_CHUNK_CACHE]; /* freed chunk headers (engine thread only) */
	int hdr_cached;
	_Atomic uint64_t inflight_bytes, inflight_records; /* engine thread writes; stats read */
	uint64_t peak_inflight_bytes;
	uint64_t done_since_flush;
	int64_t last_flush_ms;
	/* what spate_engine_summary reads (any thread) and the engine thread writes: atomic */
	_Atomic uint64_t records_done;
	_Atomic uint64_t store_errors;
	_Atomic uint64_t store_busy; /* saves the store deferred (SPATE_ERR_BUSY: a group rebalancing) */
	_Atomic uint64_t corrupt_dlq, corrupt_dropped; /* skipped regions sent to the DLQ / dropped */
	_Atomic uint64_t records_polled; /* records the source returned that entered (engine thread writes) */
	_Atomic uint64_t ckpt_commits;   /* checkpoint saves the store accepted (engine thread writes) */
	int64_t start_ns, end_ns;
	_Atomic int64_t first_ns;
	_Atomic int64_t last_done_ns; /* relaxed: a time, it publishes nothing */
	uint64_t rng;
	struct sp_autoscale *as; /* autoscale.c */
	struct sp_metrics *mx;   /* metrics.c */
	struct sp_prom *prom;    /* prom.c: the metrics endpoint (metrics.listen) */
};

/** Free the chunk allocations kept for reuse. */
void sp_chunk_cache_clear(spate_engine_t *e);
/** Free an engine chunk (its release runs first when its bytes were not released). */
void sp_ck_free(sp_ck_t *c);
/** Give a chunk body back to the cache (or free it). @locality the engine thread */
void sp_chunk_body_put(spate_engine_t *e, void *body, size_t size);

/* A chunk whose unfinished records all sit in retrying lanes' arenas, compacted
 * (tracker.c): one entry per such record, in record order. */
typedef struct sp_ghost_ent {
	uint32_t idx;          /* the record's index in the chunk */
	uint8_t done;
	uint8_t has_pred;      /* idx > 0: pred is the position of record idx - 1 */
	spate_position_t pred;
} sp_ghost_ent_t;

typedef struct sp_ghost {
	uint32_t cnt, cursor;     /* entries; [0, cursor) are DONE */
	spate_position_t last;    /* the chunk's last record's position */
	sp_ghost_ent_t ent[];
} sp_ghost_t;

/** Write to the DLQ through the test fault hook (SPATE_FAULT_DLQ). Any thread. */
int sp_dlq_write(sp_engine_t *e, const spate_push_record_t *recs, size_t n, char *errstr, size_t size);

/* lane.c (the worker that holds the lane) */
/** Peek up to limit records (and batch.max.bytes) from the lane's head into w->ptrs and
 *  w->refs: its retry queue first, then its ring. Returns how many. */
uint32_t sp_lane_build_batch(sp_worker_t *w, sp_lane_t *l, uint32_t limit);
/** refs[0..k) (the head of the lane) are DONE: move past them and report them. */
void sp_lane_consume(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k);
/** The lane parks: copy what its ring holds into its arena and retry queue, as many whole
 * runs as its partition's share leaves room for. False when nothing could be copied. */
bool sp_lane_migrate(sp_worker_t *w, sp_lane_t *l);

/* retry.c (the worker that holds the lane) */
/** Park the lane for the backoff of attempt n (1 = first retry); 0 ms: retry at once. */
void sp_lane_park(sp_worker_t *w, sp_lane_t *l, uint32_t n);
/** Send refs[0..k) to the DLQ with condition cond (or drop them without one), then
 *  consume them. errs[i] (may be NULL) is each record's error. False when the DLQ
 *  failed: the records stay at the head (l->dlq_pending) and the lane is parked. */
bool sp_lane_dead_letter(sp_worker_t *w, sp_lane_t *l, const sp_bref_t *refs, uint32_t k, int cond,
                         const char *const *errs);
/** A bisect region's batch is done: the next batch is the pending second half. */
void sp_lane_bisect_next(sp_lane_t *l);
/** A failed batch (see retry.c). */
bool sp_retry_failed(sp_worker_t *w, sp_lane_t *l, const spate_batch_t *b, int res, uint32_t n, bool items);
/* The DLQ condition under which record r (its state st) leaves now, or -1: it never failed,
 * or it may still retry. */
int sp_retry_exhausted(sp_engine_t *e, const spate_record_t *r, const sp_rstate_t *st);
/* The lane's next batch starts at w->refs[s] (of the n just built or handled): end it
 * before the first record behind s whose attempts are spent, so that record reaches the
 * head and leaves without another handler call (run_batch) instead of being handled once
 * more in the middle of a batch. A bisect in progress keeps the smaller limit. */
void sp_retry_cut_before_spent(sp_worker_t *w, sp_lane_t *l, uint32_t s, uint32_t n);
/* The spent run at w->refs[s] (s < n): how many records from s on, at most max, leave
 * together under w->refs[s]'s condition (*cond; -1 and 0 when s may still retry). With
 * only (w->failed), records not marked end the run too. Every DLQ hand-off of spent
 * records takes its group from here, so one group never mixes conditions. */
uint32_t sp_retry_spent_run(sp_worker_t *w, uint32_t s, uint32_t n, uint32_t max, const uint8_t *only,
                            int *cond);

/* The record and state of a batch entry: its arena copy for a copied one. */
static inline sp_rstate_t *sp_bref_st(const sp_bref_t *r)
{
	return r->m ? &r->m->st : &r->c->st[r->c->order[r->ord]];
}

static inline const spate_record_t *sp_bref_rec(const sp_bref_t *r)
{
	return r->m ? &r->m->rec : &r->c->pub.recs[r->c->order[r->ord]];
}

/* emit.c */
/** Open the named sinks (sink.NAME=kind:arg, options sink.NAME.KEY). SPATE_OK or an
 *  error naming the sink. @locality the engine thread, at start */
int sp_sinks_open(sp_engine_t *e, char *errstr, size_t size);
void sp_sinks_close(sp_engine_t *e);
/** Write what the handler emitted for origins [0, upto) of the batch to their sinks
 *  (durably), then forget every staged record. SPATE_OK, or the first sink's error (in
 *  errstr, naming the sink): nothing of the batch may then be DONE. @locality the worker */
int sp_emit_flush(sp_worker_t *w, uint32_t upto, char *errstr, size_t size);
/** Forget what the handler emitted (its batch failed). */
void sp_emit_reset(sp_worker_t *w);
/** Free a worker's emit buffers. */
void sp_emit_free(sp_worker_t *w);

/* dlq.c */
/* Headers spate adds to a dead letter, at most; bytes of their values, at most. */
#define SP_DLQ_HDRS 10
#define SP_DLQ_VALBYTES 1024
enum { SP_DLQ_ATTEMPTS = 0, SP_DLQ_AGE, SP_DLQ_CORRUPT, SP_DLQ_PAYLOAD };
/** The conditions by number: RetryAttemptsExhausted, RecordAgeExceeded, Corrupt,
 *  MaximumPayloadSizeExceeded. */
extern const char *const sp_dlq_conditions[];
/** What a dead letter's spate.* headers say. */
typedef struct sp_dlq_meta {
	int condition;             /* SP_DLQ_* */
	uint32_t attempts;
	const char *source, *partition, *position;
	const char *position_last; /* a range's last position, or NULL */
	int64_t first_ms, last_ms;
	const char *error;         /* NULL: "handler failed" */
} sp_dlq_meta_t;
/** Write the spate.* headers of m into h (at most SP_DLQ_HDRS), their values copied into
 *  vb (vbsize bytes, values cut to fit). Returns the headers written. @locality any */
size_t sp_dlq_headers(spate_header_t *h, char *vb, size_t vbsize, const sp_dlq_meta_t *m);

/* dispatch.c */
/** Dispatch chunk c into its partition's lanes (made ready by the next sp_lanes_flush).
 *  Returns false (and does nothing) when a lane's ring has no room: the caller holds the
 *  chunk and tries again later. */
bool sp_dispatch(sp_engine_t *e, sp_ck_t *c);
/** Lane of a record: XXH3_64bits(key) % factor; keyless records by position. */
uint32_t sp_lane_of(const spate_record_t *r, uint32_t factor);

/* worker.c */
int sp_workers_start(sp_engine_t *e, char *errstr, size_t size);
/** Tell every worker to leave once its current batch is done; does not wait. */
void sp_workers_quit(sp_engine_t *e);
/** Quit and join every worker, draining the completion rings meanwhile (a worker may
 *  wait for room in its ring). @locality the engine thread. */
void sp_workers_stop(sp_engine_t *e);
void sp_workers_free(sp_engine_t *e);
/** Free the retry arenas still held by lanes (at destroy). */
void sp_lanes_free_arenas(sp_engine_t *e);
/** Make lanes ready under e->mu and wake workers. */
void sp_lanes_ready(sp_engine_t *e, sp_lane_t **lanes, size_t n);
/** Note lanes that got runs; they are made ready by the next sp_lanes_flush (early when
 *  the list is full). @locality the engine thread. */
void sp_lanes_defer(sp_engine_t *e, sp_lane_t **lanes, size_t n);
/** Make the noted lanes ready: one lock of e->mu and one wakeup for the round.
 *  @locality the engine thread. */
void sp_lanes_flush(sp_engine_t *e);
/** Partition p was released: its lanes drop what they still hold (parked ones are woken
 *  for it). @locality the engine thread. */
void sp_lanes_release(sp_engine_t *e, sp_part_t *p);
/** No worker holds or will run a lane of p, and its lanes hold nothing. */
bool sp_lanes_quiet(sp_engine_t *e, sp_part_t *p);
/** Hold (or let go) the handlers while the store cannot take a checkpoint (e->store_hold).
 *  @locality the engine thread. */
void sp_workers_hold(sp_engine_t *e, bool hold);

/* tracker.c */
/** Drain every worker's completion ring; returns the number of entries. */
size_t sp_tracker_drain(sp_engine_t *e);
/** Append a dispatched chunk to its partition's FIFO. */
void sp_tracker_add(sp_engine_t *e, sp_ck_t *c);
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

/* flow.c: the in-flight bounds, per partition (tracker thread only) */
/** Account delta bytes and records to partition p (and the engine's totals). */
void sp_flow_add(sp_engine_t *e, sp_part_t *p, int64_t dbytes, int64_t drecords);
/** Whether chunk c may enter p now without passing the bounds. When it may, the room
 * of p's copies (mig_limit) is lowered as if it entered: enter it (sp_tracker_add) or
 * call sp_flow_unfit. */
bool sp_flow_fits(sp_engine_t *e, const sp_ck_t *c);
/** c fitted (sp_flow_fits) but did not enter: give its room back to p's copies. */
void sp_flow_unfit(sp_engine_t *e, const sp_ck_t *c);
/** p starts or stops taking part in the shares (started, released). */
void sp_flow_count(sp_engine_t *e, sp_part_t *p, bool counted);
/** Hold chunk c behind p's other held chunks; p is paused. */
void sp_flow_hold(sp_engine_t *e, sp_ck_t *c);
/** Drop every held chunk of p (a revoke). */
void sp_flow_drop_held(sp_engine_t *e, sp_part_t *p);
/** Admit the held chunks that fit now, in order, and resume partitions that may take
 *  more. admit is the engine's dispatch (false: keep holding). Returns chunks admitted. */
int sp_flow_release(sp_engine_t *e, bool (*admit)(sp_engine_t *, sp_ck_t *));

/* metrics.c */
int sp_metrics_new(sp_engine_t *e, char *errstr, size_t size);
void sp_metrics_free(sp_engine_t *e);
/** On the engine thread: write a stats line when due. */
void sp_metrics_tick(sp_engine_t *e, int64_t now_ns);

/* prom.c: the Prometheus endpoint (metrics.listen) */
/** Check metrics.listen (and metrics.listen.remote): SPATE_OK or an error naming the key.
 *  @locality spate_engine_new */
int sp_prom_check(sp_engine_t *e, char *errstr, size_t size);
/** Start serving, when metrics.listen is set. @locality spate_engine_start, after the
 *  workers exist */
int sp_prom_start(sp_engine_t *e, char *errstr, size_t size);
/** On the engine thread: publish the partitions' gauges when due (force: now). Never
 *  blocks: a scrape that holds the snapshot defers the publication to the next turn. */
void sp_prom_tick(sp_engine_t *e, int64_t now_ns, bool force);
/** Stop serving and free (first thing at destroy: a scrape reads the workers). */
void sp_prom_free(sp_engine_t *e);
/** The port served (0 when not serving): for tests and the log line. */
int sp_prom_port(sp_engine_t *e);

/* checkpoint.c */
/** Lease mode: set up at start (the owner, the timeout). */
int sp_lease_init(sp_engine_t *e, char *err, size_t sz);
/** Lease mode, every turn of the loop: stop working partitions past their deadline;
 *  when due, check the epoch, renew, list, take and steal (lease.c). */
void sp_lease_tick(sp_engine_t *e);
/** Lease mode: a checkpoint write of p was refused (its lease is gone): release it lost. */
void sp_lease_lost(sp_engine_t *e, sp_part_t *p, const char *why);
/** Lease mode: p was released; give its lease up unless it was lost. */
void sp_lease_released(sp_engine_t *e, sp_part_t *p, bool lost);
/** Lease mode, at stop: give up every lease held. */
void sp_lease_release_all(sp_engine_t *e);
/** Lease mode: every candidate with an end has its checkpoint (here or in the store) at it. */
bool sp_lease_all_at_end(sp_engine_t *e);
/** Free the candidates. */
void sp_lease_free(sp_engine_t *e);
/** Record a fatal error for the loop (first one wins). */
void sp_engine_fatal(sp_engine_t *e, int rc, const char *msg);

/** Flush dirty checkpoints when due (force: now). Returns SPATE_OK or a store error. */
int sp_checkpoint_maybe_flush(sp_engine_t *e, bool force);
/** Load every partition's checkpoint and seek the source; checkpoint resolved starts. */
int sp_checkpoint_load_and_seek(sp_engine_t *e, char *errstr, size_t size);
/** Release the partitions whose release is due (their records DONE, or their deadline
 *  passed; all of them when now), saving their checkpoints and telling the source.
 *  @locality the engine thread, on its loop. */
void sp_engine_releases(sp_engine_t *e, bool now);
/** Free revoked partitions nothing refers to any more (no chunk in flight, lanes quiet).
 *  @locality the engine thread. */
void sp_engine_reap(sp_engine_t *e);
/** Free partition p's memory (its lanes, names). */
void sp_part_free(sp_part_t *p);

#endif
