/* internal.h - what the engine, connectors and operators share, and nobody else sees.
 *
 * The engine knows sources, stores, sinks and operators only through the vtables
 * declared here (each a `const struct` with a version, a name and callbacks, like
 * Fluent Bit's plugins). Connectors and operators include this header and never each
 * other; the one table that lists them all is lib/registry.c.
 *
 * Data path objects:
 *  - sp_chunk_t: the bytes of one read or fetch of one partition, parsed once into an
 *    array of public spate_record_t descriptors that point into those bytes. A chunk
 *    lives until its last record is DONE; the tracker thread owns that count.
 *  - sp_part_t: the engine's state of one partition: its lanes, its chunk FIFO, its
 *    checkpoint.
 */
#ifndef SPATE_ENGINE_INTERNAL_H
#define SPATE_ENGINE_INTERNAL_H

#include <spate/spate.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sp_chunk sp_chunk_t;
typedef struct sp_part sp_part_t;
typedef struct sp_lane sp_lane_t;
typedef struct sp_source sp_source_t;
typedef struct sp_store sp_store_t;
typedef struct sp_sink sp_sink_t;
typedef struct spate_engine_s sp_engine_t; /* the same object as spate_engine_t */

/* ---- time and logging ------------------------------------------------------------ */

/** Monotonic milliseconds / nanoseconds. */
int64_t sp_now_ms(void);
int64_t sp_now_ns(void);
/** Wall clock ms since the epoch (record timestamps). */
int64_t sp_wall_ms(void);

enum sp_log_level { SP_LOG_ERROR = 0, SP_LOG_WARN = 1, SP_LOG_INFO = 2, SP_LOG_DEBUG = 3 };

/** Log through the engine's logger (stderr by default; level from log.level).
 *  e may be NULL (then stderr at info). Thread-safe. Never pass secrets. */
void sp_log(sp_engine_t *e, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool sp_log_enabled(sp_engine_t *e, int level);

/** snprintf into an errstr that may be NULL. Returns err so callers can `return sp_err(...)`. */
int sp_err(char *errstr, size_t size, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- configuration (engine/conf.c) ---------------------------------------------- */

/** Typed getters for keys of the property table; abort on an unknown key (a bug). */
int64_t sp_conf_int(const spate_conf_t *c, const char *key);
bool sp_conf_bool(const spate_conf_t *c, const char *key);
const char *sp_conf_str(const spate_conf_t *c, const char *key); /* never NULL ("" when unset) */
/** True when the key was set explicitly (not a default). */
bool sp_conf_is_set(const spate_conf_t *c, const char *key);
/** Call fn for every pass-through key that starts with prefix ("kafka."). */
void sp_conf_foreach_prefix(const spate_conf_t *c, const char *prefix,
                            void (*fn)(void *arg, const char *key, const char *val), void *arg);
/** Parse "123", "1k", "4M", "1G" (binary multiples) into *out. 0 or -1. */
int sp_parse_size(const char *s, int64_t *out);

/* ---- positions and checkpoints ---------------------------------------------------- */

/** A checkpoint: either "nothing of this partition is DONE yet" (beginning) or "every
 *  record up to and including `after` is DONE". */
typedef struct sp_ckpt {
	bool beginning;
	spate_position_t after;
} sp_ckpt_t;

/** "beginning" or the position's text (spate_position_fmt) into buf. */
char *sp_ckpt_fmt(const sp_ckpt_t *c, char *buf, size_t size);
/** Parse what sp_ckpt_fmt wrote. 0 or -1. */
int sp_ckpt_parse(const char *s, sp_ckpt_t *out);
/** Parse a position as spate_position_fmt writes it. 0 or -1. */
int sp_position_parse(const char *s, spate_position_t *out);

static inline spate_position_t sp_pos(uint64_t off)
{
	spate_position_t p = {{0, 0, off}};
	return p;
}

/* ---- chunks and partitions ------------------------------------------------------ */

/** Per-record state the engine keeps beside each descriptor. */
typedef struct sp_rstate {
	uint8_t done;        /* set by the tracker thread only */
	uint8_t pad;
	uint16_t attempts;   /* failed invocations that counted (worker that owns the lane) */
	uint32_t lane;       /* lane index within the partition */
	int64_t first_fail_ms;
	int64_t last_fail_ms;
} sp_rstate_t;

/** Called when the chunk's last record is DONE (on the tracker thread). Frees what the
 *  source put in buf; the engine frees the chunk itself afterwards. */
typedef void (*sp_chunk_release_fn)(sp_chunk_t *c, void *opaque);

struct sp_chunk {
	sp_part_t *part;
	uint32_t n;               /* records */
	uint32_t pending;         /* records not DONE (tracker thread) */
	uint32_t cursor;          /* tracker: records [0, cursor) are DONE */
	uint32_t done_prefix;     /* tracker: with identity order, [0, done_prefix) are DONE
	                           * without their done bytes set (in-order completions) */
	bool identity;            /* order[i] == i (parallelization.factor 1) */
	uint64_t bytes;           /* what this chunk counts toward max.inflight.bytes */
	spate_record_t *recs;     /* n descriptors, filled by the source */
	sp_rstate_t *st;          /* n states, zeroed */
	uint32_t *order;          /* n record indices grouped by lane (dispatch) */
	spate_header_t *hdrs;     /* header storage the source may use (hdr_cap entries) */
	uint32_t hdr_cap;
	void *buf;                /* the source's bytes (optional) */
	sp_chunk_release_fn release;
	void *release_opaque;
	sp_chunk_t *next;         /* partition FIFO (tracker thread) */
	sp_chunk_t *prev;
	/* later chunks that were DONE while this one was not were freed into it: once this
	 * chunk is passed, the checkpoint moves on to tail_to (tracker thread) */
	bool has_tail;
	spate_position_t tail_to;
	uint64_t seq;             /* chunk number within the partition */
	int64_t created_ns;
	bool end_marker;          /* the source says: nothing follows in this partition (stop.at.end) */
	/* a record-less chunk (n == 0): the positions up to skip_to hold nothing to deliver
	 * (transaction markers, aborted or compacted records at a partition's tail); once
	 * every chunk before it is DONE the checkpoint moves to skip_to */
	bool skip;
	spate_position_t skip_to;
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
};

/** What each record of a chunk costs the engine beyond its bytes (descriptor, state,
 *  order slot): part of what max.inflight.bytes bounds. A source sizing a chunk to a
 *  poll's budget counts it. */
#define SP_CHUNK_REC_COST (sizeof(spate_record_t) + sizeof(sp_rstate_t) + sizeof(uint32_t))
/** A reused chunk allocation may be up to 1/SP_CHUNK_SLACK_DIV larger than needed. */
#define SP_CHUNK_SLACK_DIV 8
/** Of a poll's budget, what one chunk's record bytes and SP_CHUNK_REC_COST may add up to,
 *  so that the chunk with its header and allocation slack stays within the budget. */
#define SP_CHUNK_BUDGET(b) ((b) > 1024 ? (b) - (b) / SP_CHUNK_SLACK_DIV - 512 : (b))

/** Allocate a chunk for n records and hdr_cap headers, with recs[i].version,
 *  .partition set and states zeroed. NULL when out of memory.
 *  @locality the engine thread (sources call it from poll). */
sp_chunk_t *sp_chunk_new(sp_part_t *p, uint32_t n, uint32_t hdr_cap);
/** Like sp_chunk_new, but recs are left uninitialized: the source must write every field
 *  of every record (version and partition included). Saves a pass over the array. */
sp_chunk_t *sp_chunk_new_bare(sp_part_t *p, uint32_t n, uint32_t hdr_cap);
/** A record-less chunk that moves partition p's checkpoint to `to` once every chunk
 *  before it is DONE (see sp_chunk_t.skip). A source returns it from poll after the
 *  chunks it follows. NULL when out of memory. @locality the engine thread. */
sp_chunk_t *sp_chunk_skip(sp_part_t *p, spate_position_t to);
/** Free a chunk that was never handed to the engine. */
void sp_chunk_free(sp_chunk_t *c);

/** The engine's view of one partition. Sources add partitions while they open. */
struct sp_part {
	spate_partition_t pub;
	int index;                /* in the engine's partition array */
	void *src_ctx;            /* the source's per-partition state */
	/* stop.at.end: the last position at start; has_end=false when the partition was empty */
	bool has_end;
	spate_position_t end;
	/* Set by the engine: the partition is over its share of the in-flight bounds (the
	 * engine holds a chunk of it back). A source should hand out no chunk of a paused
	 * partition (and may pause its fetching) until the flag clears; what it hands out
	 * anyway waits in the engine. Read on the engine thread. */
	bool paused;
	/* engine-owned state follows in engine.c (opaque to sources) */
	struct sp_part_eng *eng;
};

/** Register a partition of the source. topic and shard are copied (shard may be NULL).
 *  @locality the engine thread, inside source open(). */
sp_part_t *sp_engine_add_partition(sp_engine_t *e, const char *source, const char *topic,
                                   int32_t partition, const char *shard);
size_t sp_engine_partition_count(sp_engine_t *e);
/** A partition added after spate_engine_start() (a Kafka assignment): load its checkpoint
 *  from the store and seek the source after it (or resolve starting.position and save it
 *  at once). @locality the engine thread (inside poll or service). */
int sp_engine_partition_start(sp_engine_t *e, sp_part_t *p, char *errstr, size_t size);
/** Release partition p (a Kafka revoke): drop its chunks not yet dispatched; unless lost,
 *  wait up to timeout_ms for its in-flight records and save its checkpoint; then never
 *  checkpoint it again (late results are discarded). A later assignment of the same
 *  partition is a new sp_part_t. @locality the engine thread. */
int sp_engine_partition_revoke(sp_engine_t *e, sp_part_t *p, int64_t timeout_ms, bool lost, char *errstr,
                               size_t size);
sp_part_t *sp_engine_partition(sp_engine_t *e, size_t i);
const spate_conf_t *sp_engine_conf(sp_engine_t *e);
/** A source skipped a region it could not read (log.on.corruption=skip): write one
 *  metadata-only DLQ record with condition Corrupt naming it (spate.position is the first
 *  position it may have held, spate.position.last the last; spate.error says where and
 *  why), durably. With no DLQ configured it is logged and counted as dropped. Returns
 *  SPATE_OK or the DLQ's error (the source then stops: nothing is skipped silently).
 *  @locality the engine thread (inside poll). */
int sp_engine_dead_letter_range(sp_engine_t *e, sp_part_t *p, const spate_position_t *first,
                                const spate_position_t *last, const char *error, char *errstr, size_t size);
/** Let a built-in handler print what it counted (fraud flags) to fp (a FILE *). */
void sp_engine_report(sp_engine_t *e, void *fp);
/** After spate_engine_run returned: a handler call outlived shutdown.timeout.ms or a stop
 *  at once, and spate_engine_destroy would wait for it (the CLI exits instead). */
bool sp_engine_workers_busy(sp_engine_t *e);
/** The pipeline's name: pipeline.name, else the handler key with ':' and '/' as '-'
 *  (for a handler given as a struct, its name). Only [A-Za-z0-9._-]. */
const char *sp_engine_pipeline_name(sp_engine_t *e);
/** Wake the engine thread (from any thread, or a signal handler). */
void sp_engine_wake(sp_engine_t *e);

/* ---- sources ---------------------------------------------------------------------- */

#define SP_SOURCE_OPS_VERSION 1

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
	/** Check the conf, open the stream and register every partition with
	 *  sp_engine_add_partition(). Sets has_end/end of each partition when
	 *  stop.at.end is on. Returns SPATE_OK or an error with errstr naming the key. */
	int (*open)(sp_source_t *s, char *errstr, size_t size);
	/** Start reading partition p after ckpt (the store's checkpoint), or, when ckpt is
	 *  NULL, at starting.position; in that case write the resolved start into *resolved
	 *  so the engine can checkpoint it at once. */
	int (*seek)(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ckpt, sp_ckpt_t *resolved,
	            char *errstr, size_t size);
	/** Return up to max parsed chunks in out without blocking; 0 when nothing is ready;
	 *  a negative spate_err_t on a fatal error (message in errstr). budget_bytes is a
	 *  hint of how much may be admitted (record bytes plus SP_CHUNK_REC_COST per record;
	 *  the first chunk of a poll may pass it). Chunks of a paused partition
	 *  (sp_part_t.paused) should not be returned. @locality the engine thread */
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
	/** Called on every turn of the engine thread, also while the source is paused at the
	 *  in-flight bounds (Kafka must serve rebalances and heartbeats). paused says whether
	 *  poll will be called. Returns SPATE_OK or a fatal error. May be NULL. */
	int (*service)(sp_source_t *s, bool paused, char *errstr, size_t size);
	/** push source only: copy records in (any thread). */
	int (*push)(sp_source_t *s, int32_t partition, const spate_push_record_t *recs, size_t cnt);
	void (*push_close)(sp_source_t *s);
	/** True once the source will produce nothing more for any partition (gen with a
	 *  record count, push after close, log/kafka with stop.at.end past the noted ends). */
	bool (*ended)(sp_source_t *s);
	void (*close)(sp_source_t *s);
	/** The checkpoint store used when the store key is not set ("kafka": the consumer
	 *  group), or NULL for none. An explicit store= (even empty) overrides it. */
	const char *default_store;
	/** Or, computed: write the default store's URI for the pipeline named pipeline into
	 *  buf (the log: a file inside its directory) and return SPATE_OK, or an error with
	 *  errstr saying why it cannot serve (the engine then names store=). May be NULL. */
	int (*default_store_uri)(sp_source_t *s, const char *pipeline, char *buf, size_t size, char *errstr,
	                         size_t errsize);
} sp_source_ops_t;

/** Use ops as the source instead of the one the "source" key names (a source that is
 *  not in the registry: tests). Before spate_engine_start. */
void sp_engine_set_source_ops(sp_engine_t *e, const sp_source_ops_t *ops);

/* ---- checkpoint stores ---------------------------------------------------------------- */

/* 2: open_readonly */
#define SP_STORE_OPS_VERSION 2

struct sp_store {
	const struct sp_store_ops *ops;
	sp_engine_t *eng; /* NULL when opened by the CLI outside an engine */
	const char *arg;
	void *ctx;
};

/** One partition's checkpoint, by partition name ("source/topic/partition"). */
typedef struct sp_store_entry {
	const char *name;
	sp_ckpt_t ckpt;
} sp_store_entry_t;

typedef struct sp_store_ops {
	int version;
	const char *name;
	const char *desc;
	int (*open)(sp_store_t *s, char *errstr, size_t size);
	/** Load the checkpoint of one partition: SPATE_OK, SPATE_ERR_NOT_FOUND, or an error. */
	int (*load)(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size);
	/** Save these partitions' checkpoints, durably. Others keep theirs. */
	int (*save)(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size);
	/** List every entry: fn per entry. May be NULL. */
	int (*list)(sp_store_t *s, void (*fn)(void *arg, const sp_store_entry_t *ent), void *arg,
	            char *errstr, size_t size);
	/** Remove one partition's checkpoint (name) or all of them (NULL). May be NULL. */
	int (*reset)(sp_store_t *s, const char *name, char *errstr, size_t size);
	void (*close)(sp_store_t *s);
	/* ---- version 2 ---- */
	/** Open the store only to look at it (`spate checkpoint show` while a pipeline runs):
	 *  take no lock and wait for none, write nothing, so a pipeline that uses the store
	 *  is neither disturbed nor refused. Such an instance serves load and list from one
	 *  complete, verified state of the store; save and reset fail; close frees it. May
	 *  be NULL (the store offers no read-only look); read it only when version >= 2. */
	int (*open_readonly)(sp_store_t *s, char *errstr, size_t size);
} sp_store_ops_t;

/* ---- sinks (the DLQ, and later outputs) --------------------------------------------- */

#define SP_SINK_OPS_VERSION 1

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
	int (*open)(sp_sink_t *s, char *errstr, size_t size);
	/** Write n records; when it returns SPATE_OK they are durable. Thread-safe: worker
	 *  threads call it. The key picks the partition. */
	int (*write)(sp_sink_t *s, const spate_push_record_t *recs, size_t n, char *errstr,
	             size_t size);
	/** The largest record (key + value + headers) the target takes. */
	size_t (*max_record_bytes)(sp_sink_t *s);
	void (*close)(sp_sink_t *s);
} sp_sink_ops_t;

/* ---- operators (built-in handlers) ------------------------------------------------- */

#define SP_OPERATOR_OPS_VERSION 1

typedef struct sp_operator_ops {
	int version;
	const char *name; /* what the "handler" key says before any ':' */
	const char *desc;
	/** Fill *h for handler=name:arg. Returns SPATE_OK or an error naming the key. */
	int (*create)(const char *arg, const spate_conf_t *conf, spate_engine_t *e,
	              spate_handler_t *h, char *errstr, size_t size);
	/** Free what create allocated (h->opaque). May be NULL. */
	void (*destroy)(spate_handler_t *h);
	/** Print what the operator counted (e.g. fraud flags) at the end. May be NULL. */
	void (*report)(spate_handler_t *h, void *fp_stdio_file);
} sp_operator_ops_t;

/* ---- the registry (lib/registry.c) --------------------------------------------------- */

const sp_source_ops_t *sp_find_source(const char *name);
const sp_store_ops_t *sp_find_store(const char *name);
const sp_sink_ops_t *sp_find_sink(const char *name);
const sp_operator_ops_t *sp_find_operator(const char *name);
/** NULL-terminated lists, for --help. */
const sp_source_ops_t *const *sp_sources(void);
const sp_store_ops_t *const *sp_stores(void);
const sp_sink_ops_t *const *sp_sinks(void);
const sp_operator_ops_t *const *sp_operators(void);

/** Split "name:arg" at the first ':' into name (copied into buf) and arg (pointer into s).
 *  "redis://h:p" keeps the whole string as arg with name "redis". */
const char *sp_split_uri(const char *s, char *name, size_t name_size);

/** Open a store from a "store" value (file:PATH, ...) outside an engine (the CLI). */
int sp_store_open_uri(const char *uri, sp_store_t *st, char *errstr, size_t size);
/** The same through the store's open_readonly (no lock, nothing written); a store
 *  without one is opened as sp_store_open_uri opens it. */
int sp_store_open_uri_readonly(const char *uri, sp_store_t *st, char *errstr, size_t size);

#endif /* SPATE_ENGINE_INTERNAL_H */
