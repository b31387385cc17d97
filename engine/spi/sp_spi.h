/* sp_spi.h - the plugin interface: what a connector (source, store, sink) or an operator
 * sees of the engine, and what the engine knows of it.
 *
 * A plugin is one `const struct` of callbacks (a vtable) with a version, a name, a
 * one-line description and its option table (its keys, as Fluent Bit's config_map),
 * listed in lib/registry.c. The engine calls it only through the vtable; the runtime
 * instance (sp_source_t, sp_store_t, sp_sink_t) holds the plugin's own state in ctx.
 * New callbacks are appended at the end of a vtable and its version raised (SQLite's
 * iVersion): a plugin compiled against an older layout keeps working.
 *
 * This header, sp_base.h and the public spate/spate.h are all a plugin may include of
 * the engine; the build gives plugins no path to anything else. docs/plugins.md walks
 * through a minimal source.
 *
 * Data path objects a source makes:
 *  - sp_part_t: one partition of the source, registered with sp_engine_add_partition.
 *  - sp_chunk_t: the bytes of one read or fetch of one partition, parsed into public
 *    spate_record_t descriptors that point into those bytes (sp_chunk_new). The engine
 *    owns a chunk from the moment poll returns it; its release callback frees the bytes
 *    once no record of it is read any more. The engine keeps its own state of a chunk
 *    behind it (it embeds sp_chunk_t as its first member).
 *
 * @locality unless a callback says otherwise, the engine calls it on the engine thread
 * (the caller of spate_engine_run).
 */
#ifndef SPATE_SP_SPI_H
#define SPATE_SP_SPI_H

#include "sp_base.h"

#include <stdio.h>

typedef struct sp_chunk sp_chunk_t;
typedef struct sp_part sp_part_t;
typedef struct sp_source sp_source_t;
typedef struct sp_store sp_store_t;
typedef struct sp_sink sp_sink_t;

/* ---- option tables ----------------------------------------------------------------- */

/** Types of an option. SP_OPT_SIZE takes binary multiples (1k, 4M, 1G). */
enum sp_opt_type { SP_OPT_INT, SP_OPT_BOOL, SP_OPT_STR, SP_OPT_ENUM, SP_OPT_SIZE };

/** One key of a plugin's (or the engine's) option table. A table ends with an entry
 *  whose name is NULL. The configuration reference (docs/configuration.md, `spate
 *  config`, `spate run --help`) is generated from the union of every table. */
typedef struct sp_opt {
	const char *name;    /* "gen.records" */
	int type;            /* enum sp_opt_type */
	int64_t min, max;    /* range for ints and sizes */
	const char *allowed; /* enums: "a|b|c" */
	const char *def;     /* default, as text ("" for none) */
	const char *doc;     /* one line */
} sp_opt_t;

/* ---- partitions and chunks -------------------------------------------------------- */

/** A partition of the source, as the source sees it. */
struct sp_part {
	spate_partition_t pub;
	int index;     /* in the engine's partition array (may change) */
	void *src_ctx; /* the source's per-partition state */
	/* stop.at.end: the last position at start; has_end=false when the partition was empty */
	bool has_end;
	spate_position_t end;
	/* Set by the engine: the partition is over its share of the in-flight bounds (the
	 * engine holds a chunk of it back). A source should hand out no chunk of a paused
	 * partition (and may pause its fetching) until the flag clears; what it hands out
	 * anyway waits in the engine. Read on the engine thread. */
	bool paused;
	struct sp_part_eng *eng; /* the engine's state of the partition (opaque) */
};

/** Called once no record of the chunk is read any more (on the engine thread): frees
 *  what the source put in buf. The engine frees the chunk itself. */
typedef void (*sp_chunk_release_fn)(sp_chunk_t *c, void *opaque);

/** What a source fills in a chunk. */
struct sp_chunk {
	sp_part_t *part;
	uint32_t n;           /* records */
	spate_record_t *recs; /* n descriptors */
	spate_header_t *hdrs; /* header storage the source may use (hdr_cap entries) */
	uint32_t hdr_cap;
	uint64_t bytes; /* the bytes this chunk holds (what its buf costs) */
	void *buf;      /* the source's bytes (optional) */
	sp_chunk_release_fn release;
	void *release_opaque;
	bool end_marker; /* the source says: nothing follows in this partition */
	/* a record-less chunk (n == 0): the positions up to skip_to hold nothing to deliver
	 * (transaction markers, aborted or compacted records at a partition's tail); once
	 * every chunk before it is DONE the checkpoint moves to skip_to */
	bool skip;
	spate_position_t skip_to;
};

/** What each record of a chunk costs the engine beyond its bytes (descriptor, state,
 *  order slot): part of what max.inflight.bytes bounds. A source sizing a chunk to a
 *  poll's budget counts it. */
#define SP_CHUNK_REC_COST (sizeof(spate_record_t) + 24 + sizeof(uint32_t))
/** A reused chunk allocation may be up to 1/SP_CHUNK_SLACK_DIV larger than needed. */
#define SP_CHUNK_SLACK_DIV 8
/** Of a poll's budget, what one chunk's record bytes and SP_CHUNK_REC_COST may add up to,
 *  so that the chunk with its header and allocation slack stays within the budget. */
#define SP_CHUNK_BUDGET(b) ((b) > 1024 ? (b) - (b) / SP_CHUNK_SLACK_DIV - 512 : (b))

/** A chunk of partition p for n records and hdr_cap headers, recs[i].version and
 *  .partition set. NULL when out of memory. @locality the engine thread */
sp_chunk_t *sp_chunk_new(sp_part_t *p, uint32_t n, uint32_t hdr_cap);
/** Like sp_chunk_new, but recs are left uninitialized: the source writes every field of
 *  every record (version and partition included). Saves a pass over the array. */
sp_chunk_t *sp_chunk_new_bare(sp_part_t *p, uint32_t n, uint32_t hdr_cap);
/** A record-less chunk that moves p's checkpoint to `to` once every chunk before it is
 *  DONE (see sp_chunk_t.skip). NULL when out of memory. */
sp_chunk_t *sp_chunk_skip(sp_part_t *p, spate_position_t to);
/** Free a chunk that was never handed to the engine (its release runs first). */
void sp_chunk_free(sp_chunk_t *c);

/* ---- what a source may ask of the engine ------------------------------------------- */

/** Register a partition of the source. topic and shard are copied (shard may be NULL).
 *  NULL when out of memory. @locality inside open(), or later (a Kafka assignment). */
sp_part_t *sp_engine_add_partition(sp_engine_t *e, const char *source, const char *topic, int32_t partition,
                                   const char *shard);
size_t sp_engine_partition_count(sp_engine_t *e);
sp_part_t *sp_engine_partition(sp_engine_t *e, size_t i);
const spate_conf_t *sp_engine_conf(sp_engine_t *e);
/** The pipeline's name: pipeline.name, else the handler key with ':' and '/' as '-'
 *  (for a handler given as a struct, its name). Only [A-Za-z0-9._-]. */
const char *sp_engine_pipeline_name(sp_engine_t *e);
/** Whether anything in the pipeline reads records' headers: false only when the handler
 *  is a built-in operator that ignores them, no dlq is set (dead letters carry the
 *  original headers) and no filter pattern names "headers". A source whose headers cost
 *  work to decode (Kafka: librdkafka parses them per message) may then hand records
 *  without them (header_cnt 0). */
bool sp_engine_wants_headers(sp_engine_t *e);
/** A partition added after spate_engine_start() (a Kafka assignment): load its checkpoint
 *  from the store and seek the source after it (or resolve starting.position and save it
 *  at once). */
int sp_engine_partition_start(sp_engine_t *e, sp_part_t *p, char *errstr, size_t size);
/**
 * Release partition p (a revoke): the engine drops p's chunks not yet dispatched and
 * stops handing p's records to handlers; on its own loop it waits up to timeout_ms for
 * the handler calls of p already running, saves p's checkpoint of what is DONE (unless
 * lost: the assignment is gone and nothing may be committed for it), then calls the
 * source's released() and forgets p (late results are discarded). Returns at once;
 * when the engine is not running (before spate_engine_run, or after it returned: a
 * source's close), the release completes and released() is called before it returns.
 * A later assignment of the same partition is a new sp_part_t.
 */
int sp_engine_partition_release(sp_engine_t *e, sp_part_t *p, int64_t timeout_ms, bool lost);
/** A source skipped a region it could not read (log.on.corruption=skip): write one
 *  metadata-only DLQ record with condition Corrupt naming it (spate.position is the first
 *  position it may have held, spate.position.last the last; spate.error says where and
 *  why), durably. With no DLQ configured it is logged and counted as dropped. Returns
 *  SPATE_OK or the DLQ's error (the source then stops: nothing is skipped silently). */
int sp_engine_dead_letter_range(sp_engine_t *e, sp_part_t *p, const spate_position_t *first,
                                const spate_position_t *last, const char *error, char *errstr, size_t size);
/** Wake the engine thread. @locality any thread, or a signal handler */
void sp_engine_wake(sp_engine_t *e);
/** The checkpoint the store holds for the partition named name ("source/topic/shard"),
 *  which need not be one of this engine's partitions (a Kinesis child shard waits until
 *  the store shows each parent at SHARD_END, whoever read the parent). With no store
 *  (store=none) it is what this engine has DONE of its partition of that name.
 *  SPATE_OK, SPATE_ERR_NOT_FOUND, or the store's error. @locality the engine thread */
int sp_engine_checkpoint_load(sp_engine_t *e, const char *name, sp_ckpt_t *out, char *errstr, size_t size);

/* ---- sources ---------------------------------------------------------------------- */

#define SP_SOURCE_OPS_VERSION 3

struct sp_source {
	const struct sp_source_ops *ops;
	sp_engine_t *eng;
	const char *arg; /* what followed "name:" in the source key ("" when none) */
	void *ctx;
	/* Set by open: the most bytes and records the source buffers outside the engine's
	 * count (librdkafka's prefetch queue). The engine takes them off max.inflight.bytes
	 * and max.inflight.records, so the bounds hold for everything fetched. */
	uint64_t held_bytes, held_records;
};

typedef struct sp_source_ops {
	int version;
	const char *name; /* what the "source" key says before any ':' */
	const char *desc;
	const sp_opt_t *opts;    /* the source's keys, or NULL */
	const char *conf_prefix; /* keys with this prefix pass through unchecked ("kafka."), or NULL */
	/** Check the conf, open the stream and register every partition with
	 *  sp_engine_add_partition(). Sets has_end/end of each partition when
	 *  stop.at.end is on. Returns SPATE_OK or an error with errstr naming the key. */
	int (*open)(sp_source_t *s, char *errstr, size_t size);
	/** Start reading partition p after ckpt (the store's checkpoint), or, when ckpt is
	 *  NULL, at starting.position; in that case write the resolved start into *resolved
	 *  (a concrete position whenever there is one) so the engine checkpoints it at once. */
	int (*seek)(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ckpt, sp_ckpt_t *resolved, char *errstr,
	            size_t size);
	/** Return up to max parsed chunks in out without blocking; 0 when nothing is ready;
	 *  a negative spate_err_t on a fatal error (message in errstr). budget_bytes is a
	 *  hint of how much may be admitted (record bytes plus SP_CHUNK_REC_COST per record;
	 *  the first chunk of a poll may pass it). Chunks of a paused partition
	 *  (sp_part_t.paused) should not be returned. */
	int (*poll)(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
	            size_t size);
	/** An fd the engine thread polls for POLLIN before calling poll again, or -1 when
	 *  poll should be called on the engine's tick. May be NULL. */
	int (*fd)(sp_source_t *s);
	/** Milliseconds until the source has more (gen.rate), or -1 for "when fd says".
	 *  May be NULL. */
	int (*next_ms)(sp_source_t *s);
	/** The smallest max.inflight.bytes the source can work with (one read of every
	 *  partition, its own prefetch, ...); what it is made of goes into why. A bound below
	 *  it is refused, naming the minimum and why. May be NULL (no minimum). */
	uint64_t (*min_inflight_bytes)(sp_source_t *s, char *why, size_t size);
	/** Records known to exist but not yet returned by poll (-1 unknown). May be NULL. */
	int64_t (*lag)(sp_source_t *s);
	/** Called on every turn of the engine thread, also while partitions are paused
	 *  (Kafka must serve rebalances and heartbeats). stopping: the engine stops and
	 *  polls no more. Returns SPATE_OK or a fatal error. May be NULL. */
	int (*service)(sp_source_t *s, bool stopping, char *errstr, size_t size);
	/** Take records the embedding program pushes (spate_push): the push source, or the
	 *  log source with log.push=true (durably). The number taken, their positions in
	 *  positions when not NULL, or a negative spate_err_t. May be NULL. @locality any thread */
	int (*push)(sp_source_t *s, int32_t partition, const spate_push_record_t *recs, size_t cnt,
	            spate_position_t *positions);
	void (*push_close)(sp_source_t *s);
	/** True once the source will produce nothing more for any partition: a finite source
	 *  (gen with a record count, push after close) ends the run then; a stream (log,
	 *  kafka) says so only with stop.at.end past the noted ends. */
	bool (*ended)(sp_source_t *s);
	void (*close)(sp_source_t *s);
	/** The checkpoint store used when the store key is not set ("kafka": the consumer
	 *  group), or NULL for none. An explicit store= overrides it. */
	const char *default_store;
	/** Or, computed: write the default store's URI for the pipeline named pipeline into
	 *  buf (the log: a file inside its directory) and return SPATE_OK, or an error with
	 *  errstr saying why it cannot serve (the engine then names store=). May be NULL. */
	int (*default_store_uri)(sp_source_t *s, const char *pipeline, char *buf, size_t size, char *errstr,
	                         size_t errsize);
	/** A store the source itself provides (store=kafka: the consumer group, sharing the
	 *  source's consumer): fill *out (ops, ctx) for the store kind `kind` and return
	 *  SPATE_OK, or SPATE_ERR_UNKNOWN when the kind is not the source's (the engine then
	 *  opens it from the registry). May be NULL. */
	int (*open_store)(sp_source_t *s, const char *kind, const char *arg, sp_store_t *out, char *errstr,
	                  size_t size);
	/** Partition p, given to sp_engine_partition_release, is released: its checkpoint is
	 *  saved (saved=false: lost, or the save failed and was logged) and the engine will
	 *  never touch p again; the source may unassign it. May be NULL. */
	void (*released)(sp_source_t *s, sp_part_t *p, bool saved);
	/** How the "source" key names it ("log:DIR"), for help and errors. */
	const char *syntax;
	/* ---- version 3 ---- */
	/** Partition p's records known to exist but not yet returned by poll (its offset
	 *  lag), or -1 unknown. Must not block (the metrics endpoint's partition gauges; the
	 *  engine calls it a few times a second). May be NULL. */
	int64_t (*part_lag)(sp_source_t *s, sp_part_t *p);
	/** How far partition p's reading is behind the newest record of the stream, in
	 *  milliseconds, as the service reports it (Kinesis MillisBehindLatest), or -1 when
	 *  not known. Replaces the engine's own estimate of the partition's iterator age in
	 *  the metrics. Must not block; engine thread. May be NULL. */
	int64_t (*part_behind_ms)(sp_source_t *s, sp_part_t *p);
	/** Lease mode: with a store that keeps leases (sp_store_ops_t.leases), several
	 *  processes share the source's partitions, each working those it holds the lease of
	 *  (engine/lease.c). open() then registers no partition but names every one with
	 *  sp_engine_lease_candidate() (sp_engine_leased() says which mode is on); once the
	 *  engine holds candidate `index`'s lease it calls take(), which registers the
	 *  partition (sp_engine_add_partition, with has_end/end under stop.at.end) and
	 *  returns it; the engine then starts it at the lease's checkpoint. A lost or given
	 *  up lease is released like a Kafka revoke (sp_engine_partition_release, then
	 *  released()). NULL: the source has no lease mode (a lease store is refused). */
	sp_part_t *(*take)(sp_source_t *s, int index, char *errstr, size_t size);
	/** Lease mode with stop.at.end, for a partition whose end is not known at open (a
	 *  Kinesis shard still open: its end is what was read when it caught up): true once
	 *  p was read to its end and every record up to it was handed over (p->has_end /
	 *  p->end then name the last one, has_end=false when there was none). The engine
	 *  then gives the lease up once the checkpoint is saved there, and ends the run when
	 *  this process saw every such partition at its end (engine/lease.c). NULL: the ends
	 *  are those named at open (sp_engine_lease_candidate). Engine thread. */
	bool (*part_ended)(sp_source_t *s, sp_part_t *p);
} sp_source_ops_t;

/** True when the engine runs the source in lease mode (see sp_source_ops_t.take).
 *  @locality from open() on */
bool sp_engine_leased(sp_engine_t *e);
/** In lease mode, name partition `index` of the source (its name is made as
 *  sp_engine_add_partition makes it). parents: the ids of the partitions that must be
 *  read to their end first, comma-separated (Kinesis parent shards), or NULL: the lease
 *  is not taken before the store shows each parent's checkpoint at
 *  SPATE_POSITION_CLOSED (SHARD_END), whichever process wrote it, and the acquire
 *  records them in the store (sp_lease_t.parents). A parent that is no candidate is not
 *  waited for. has_end / end: stop.at.end's end of the partition. A partition whose
 *  checkpoint is at SPATE_POSITION_CLOSED is finished: its lease is given up and taken
 *  by nobody. @locality inside open(), or later on the engine thread for a partition
 *  that appears while running (a Kinesis child: stop.at.end does not wait for it) */
int sp_engine_lease_candidate(sp_engine_t *e, int index, const char *source, const char *topic,
                              int32_t partition, const char *shard, const char *parents, bool has_end,
                              const spate_position_t *end);

/** Use ops as the source instead of the one the "source" key names (a source that is
 *  not in the registry: tests, docs/plugins.md). Before spate_engine_start. */
void sp_engine_set_source_ops(sp_engine_t *e, const sp_source_ops_t *ops);

/* ---- checkpoint stores ---------------------------------------------------------------- */

#define SP_STORE_OPS_VERSION 3

struct sp_store {
	const struct sp_store_ops *ops;
	sp_engine_t *eng; /* NULL when opened by the CLI outside an engine */
	const char *arg;
	void *ctx;
	/* version 3: the configuration when there is no engine (the CLI), else NULL (the
	 * store reads sp_engine_conf(eng)); and the namespace of the pipeline's checkpoints
	 * in a shared store (its pipeline name; NULL: "pipeline") */
	const spate_conf_t *conf;
	const char *ns;
};

/** One partition's checkpoint, by partition name ("source/topic/partition"). */
typedef struct sp_store_entry {
	const char *name;
	sp_ckpt_t ckpt;
	/* version 3: the lease the write is conditional on, for a store with leases: the
	 * owner and the counter it last got from acquire or renew. A store with leases
	 * refuses an entry without an owner; the file store refuses one with an owner. */
	const char *owner;
	uint64_t counter;
	/* where a store with leases writes this entry's result (may be NULL): SPATE_OK,
	 * SPATE_ERR_LEASE (the lease is gone: stop working the partition),
	 * SPATE_ERR_STORE_LOST, or a transient error */
	int *rc;
} sp_store_entry_t;

/** The longest lease owner (NUL included). */
#define SP_LEASE_OWNER_MAX 128
/** The longest list of parent partitions a lease names (NUL included). */
#define SP_LEASE_PARENTS_MAX 256

/** A partition's lease as the store holds it. */
typedef struct sp_lease {
	const char *name;               /* the partition */
	char owner[SP_LEASE_OWNER_MAX]; /* "" when nobody holds it */
	/* the fencing token: raised by every acquire (DynamoDB also raises it on renew, as
	 * KCL's leaseCounter); every write is conditional on it and on the owner */
	uint64_t counter;
	/* the store's own judgement of expiry by its own clock (Redis' TIME): 1 expired, 0
	 * live; -1: the store has no clock, the taker judges (the counter has not moved
	 * for lease.timeout.ms of its monotonic time) */
	int expired;
	bool has_ckpt; /* a checkpoint is stored */
	sp_ckpt_t ckpt;
	char parents[SP_LEASE_PARENTS_MAX]; /* comma-separated, or "" */
} sp_lease_t;

typedef struct sp_store_ops {
	int version;
	const char *name;
	const char *desc;
	const sp_opt_t *opts; /* the store's keys, or NULL */
	int (*open)(sp_store_t *s, char *errstr, size_t size);
	/** Load the checkpoint of one partition: SPATE_OK, SPATE_ERR_NOT_FOUND, or an error. */
	int (*load)(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size);
	/** Save these partitions' checkpoints, durably. Others keep theirs. SPATE_ERR_BUSY:
	 *  not now (a Kafka group in a rebalance); the engine tries again later, and its
	 *  workers start no new handler batch until a save goes through. A store with
	 *  leases writes each entry conditionally on its lease (owner and counter) and never
	 *  moves a checkpoint backwards; it sets each entry's *rc and returns the first error. */
	int (*save)(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size);
	/** List every entry: fn per entry. May be NULL. */
	int (*list)(sp_store_t *s, void (*fn)(void *arg, const sp_store_entry_t *ent), void *arg,
	            char *errstr, size_t size);
	/** Remove one partition's checkpoint (name) or all of them (NULL; a store with an
	 *  epoch marker writes a new one). May be NULL. */
	int (*reset)(sp_store_t *s, const char *name, char *errstr, size_t size);
	void (*close)(sp_store_t *s);
	/** Open only to read (load, list): no lock, nothing written, so it works while a
	 *  pipeline holds the store (`spate checkpoint show`); save and reset then fail.
	 *  May be NULL (the store has no such mode: open is used). */
	int (*open_readonly)(sp_store_t *s, char *errstr, size_t size);
	/** How the "store" key names it ("file:PATH"), for help and errors. */
	const char *syntax;
	/* ---- version 3: leases (engine/lease.c) and the epoch marker ---- */
	/** True when the store keeps leases: several processes share it. */
	bool leases;
	/** Check the store's epoch marker against the one seen at open: SPATE_OK, or
	 *  SPATE_ERR_STORE_LOST naming the store when it lost its data (guarantee 6), or a
	 *  transient error. May be NULL. */
	int (*epoch)(sp_store_t *s, char *errstr, size_t size);
	/** Every lease the namespace holds: fn per lease (valid during the call). */
	int (*lease_list)(sp_store_t *s, void (*fn)(void *arg, const sp_lease_t *l), void *arg, char *errstr,
	                  size_t size);
	/** Take partition name's lease for owner, conditionally on what the caller saw last
	 *  (seen->owner and seen->counter; "" and 0 for a lease never seen); seen->parents,
	 *  when not "", is recorded with the lease (KCL's parentShardId). Without steal
	 *  the lease must also be free or expired. On success *out holds the new lease (its
	 *  counter, its checkpoint). SPATE_ERR_LEASE when it changed meanwhile (another
	 *  process won), SPATE_ERR_STORE_LOST, or a transient error. */
	int (*lease_acquire)(sp_store_t *s, const char *name, const char *owner, const sp_lease_t *seen,
	                     bool steal, int64_t timeout_ms, sp_lease_t *out, char *errstr, size_t size);
	/** Extend owner's lease by timeout_ms, conditionally on owner and *counter (which a
	 *  store may raise: the new value is written back). SPATE_ERR_LEASE when it is gone. */
	int (*lease_renew)(sp_store_t *s, const char *name, const char *owner, uint64_t *counter,
	                   int64_t timeout_ms, char *errstr, size_t size);
	/** Give the lease up (the checkpoint stays), conditionally on owner and counter. */
	int (*lease_release)(sp_store_t *s, const char *name, const char *owner, uint64_t counter,
	                     char *errstr, size_t size);
} sp_store_ops_t;

/* ---- sinks (the DLQ, and later outputs) --------------------------------------------- */

#define SP_SINK_OPS_VERSION 2

struct sp_sink {
	const struct sp_sink_ops *ops;
	sp_engine_t *eng;
	const char *arg;
	void *ctx;
	/* the configuration when there is no engine (spate produce --kafka) */
	const spate_conf_t *conf;
};

typedef struct sp_sink_ops {
	int version;
	const char *name;
	const char *desc;
	const sp_opt_t *opts;    /* the sink's keys, or NULL */
	const char *conf_prefix; /* keys with this prefix pass through unchecked, or NULL */
	int (*open)(sp_sink_t *s, char *errstr, size_t size);
	/** Write n records; when it returns SPATE_OK they are durable. @locality worker
	 *  threads, concurrently. The key picks the partition. */
	int (*write)(sp_sink_t *s, const spate_push_record_t *recs, size_t n, char *errstr, size_t size);
	/** The largest record (key + value + headers) the target takes. */
	size_t (*max_record_bytes)(sp_sink_t *s);
	void (*close)(sp_sink_t *s);
	/** How the "dlq" key names it ("kafka:TOPIC"), for help and errors. */
	const char *syntax;
} sp_sink_ops_t;

/* ---- operators (built-in handlers) ------------------------------------------------- */

/* 3: ignores_headers */
#define SP_OPERATOR_OPS_VERSION 3

typedef struct sp_operator_ops {
	int version;
	const char *name; /* what the "handler" key says before any ':' */
	const char *desc;
	const sp_opt_t *opts; /* the operator's keys, or NULL */
	/** Fill *h for handler=name:arg. Returns SPATE_OK or an error naming the key. */
	int (*create)(const char *arg, const spate_conf_t *conf, sp_engine_t *e, spate_handler_t *h,
	              char *errstr, size_t size);
	/** Free what create allocated (h->opaque). May be NULL. */
	void (*destroy)(spate_handler_t *h);
	/** Print what the operator counted (e.g. fraud flags) at the end. May be NULL. */
	void (*report)(spate_handler_t *h, FILE *fp);
	/** How the "handler" key names it ("sleep:MS"), for help and errors. */
	const char *syntax;
	/** version 3: the handlers it makes never read a record's headers (nor emit records
	 *  carrying them); then a source may leave them out when nothing else in the
	 *  pipeline reads them either (sp_engine_wants_headers). */
	bool ignores_headers;
} sp_operator_ops_t;

/* ---- messages from a plugin ---------------------------------------------------------- */

/** A message from a plugin instance (a source, store or sink), prefixed with its name:
 *  SP_PMSG(s, SP_MSG_WARN, "...", ...). */
#define SP_PMSG(inst, level, ...) sp_msg_from((inst)->eng, (inst)->ops->name, level, __VA_ARGS__)

#endif /* SPATE_SP_SPI_H */
