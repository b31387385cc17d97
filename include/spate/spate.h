/* spate.h - the one public header of libspate.
 *
 * spate reads partitioned streams (the embedded log, Kafka, a synthetic generator, or
 * records pushed by the embedding application, Kinesis), fans the records
 * out to stateless handlers that run on a pool of worker threads, tracks which records
 * are DONE, and writes per-partition checkpoints to a store. Poison records go to a
 * dead-letter queue.
 *
 * Control-plane objects (configuration, engine) are opaque handles. The record is a
 * public, versioned struct handed to handlers in batches, so a handler reads fields
 * directly instead of calling a function per field per record.
 *
 * Threads: every spate_conf_* function may be called from any thread on a conf that is
 * not used by another thread at the same time. spate_engine_* functions are documented
 * one by one. Handler callbacks run on worker threads (see spate_handler_t).
 */
#ifndef SPATE_SPATE_H
#define SPATE_SPATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SPATE_BUILDING) && defined(__GNUC__)
#define SPATE_API __attribute__((visibility("default")))
#else
#define SPATE_API
#endif

/** Version of the library, as 0xMMmmpp (major, minor, patch). */
#define SPATE_VERSION 0x000100
/** Version of the library as a string. */
#define SPATE_VERSION_STR "0.1.0"

/** The library's version at run time (may differ from SPATE_VERSION at build time). */
SPATE_API int spate_version(void);
/** The library's version string at run time. */
SPATE_API const char *spate_version_str(void);

/* ------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------- */

/** Error codes. SPATE_OK is 0; every error is negative. */
typedef enum spate_err {
	SPATE_OK = 0,
	SPATE_ERR_INVALID = -1,     /**< an argument or configuration value is invalid */
	SPATE_ERR_UNKNOWN = -2,     /**< unknown configuration key or name */
	SPATE_ERR_NOMEM = -3,       /**< out of memory */
	SPATE_ERR_IO = -4,          /**< an I/O error (the message names the file) */
	SPATE_ERR_STATE = -5,       /**< the call is not valid in the object's state */
	SPATE_ERR_CORRUPT = -6,     /**< stored data failed a checksum or format check */
	SPATE_ERR_NOT_FOUND = -7,   /**< no such partition, file or entry */
	SPATE_ERR_UNSUPPORTED = -8, /**< valid data this version cannot handle */
	SPATE_ERR_OUT_OF_RANGE = -9,/**< a position outside what the stream holds */
	SPATE_ERR_TIMEOUT = -10,    /**< a deadline passed */
	SPATE_ERR_FULL = -11,       /**< a bounded queue or buffer is full; try again */
	SPATE_ERR_BUSY = -12,       /**< a resource is held by someone else (a lock) */
	SPATE_ERR_HANDLER = -13,    /**< the handler failed */
	SPATE_ERR_STORE = -14,      /**< the checkpoint store failed */
	SPATE_ERR_SOURCE = -15,     /**< the source failed */
	SPATE_ERR_SINK = -16,       /**< a sink or the DLQ failed */
	SPATE_ERR_LEASE = -17,      /**< a lease-conditional write was refused: another process
	                             *   holds the partition's lease (or took it) */
	SPATE_ERR_STORE_LOST = -18, /**< the checkpoint store lost its data (its epoch marker is
	                             *   gone or changed); `spate checkpoint reset` starts over */
	SPATE_ERR__END = -19        /**< (not an error: one past the last code) */
} spate_err_t;

/** A human-readable description of err, never NULL. */
SPATE_API const char *spate_err2str(spate_err_t err);
/** The enum name of err without the SPATE_ prefix, e.g. "ERR_INVALID", never NULL. */
SPATE_API const char *spate_err2name(spate_err_t err);

/* ------------------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------------------- */

/** An opaque set of key=value pairs that describes a pipeline. */
typedef struct spate_conf_s spate_conf_t;

/** Result of spate_conf_set(). */
typedef enum spate_conf_res {
	SPATE_CONF_OK = 0,
	SPATE_CONF_INVALID = -1, /**< the key is known but the value is not allowed */
	SPATE_CONF_UNKNOWN = -2  /**< no such key */
} spate_conf_res_t;

/** A new configuration holding every key's default. NULL only when out of memory. */
SPATE_API spate_conf_t *spate_conf_new(void);
/** A deep copy of conf. NULL only when out of memory. */
SPATE_API spate_conf_t *spate_conf_dup(const spate_conf_t *conf);
/** Free conf. Do not call it on a conf whose ownership passed to spate_engine_new(). */
SPATE_API void spate_conf_destroy(spate_conf_t *conf);

/**
 * Set key to value after checking it against the key's type and range.
 * On failure a message naming the key and what is allowed is written to errstr
 * (which may be NULL), and the conf is unchanged.
 * Keys that start with "kafka." pass through to librdkafka (docs/kafka.md); the
 * Kinesis connector's keys start with "kinesis." (docs/kinesis.md).
 */
SPATE_API spate_conf_res_t spate_conf_set(spate_conf_t *conf, const char *key, const char *value,
                                          char *errstr, size_t errstr_size);

/**
 * Copy the value of key (its default if never set) into dest, NUL-terminated.
 * *dest_size is set to the size needed including the NUL; dest may be NULL to ask it.
 * Returns SPATE_CONF_UNKNOWN for an unknown key.
 */
SPATE_API spate_conf_res_t spate_conf_get(const spate_conf_t *conf, const char *key, char *dest,
                                          size_t *dest_size);

/** One key of the property table, as spate_conf_properties() returns them. */
typedef struct spate_conf_prop {
	const char *name;    /**< the key, e.g. "batch.size" */
	const char *type;    /**< "int", "bool", "string", "enum" */
	int64_t min, max;    /**< range for ints */
	const char *allowed; /**< for enums: values separated by '|'; else NULL */
	const char *def;     /**< default value as a string ("" for none) */
	const char *doc;     /**< one line */
} spate_conf_prop_t;

/** The property table: *cnt entries, in documentation order. Static storage. */
SPATE_API const spate_conf_prop_t *spate_conf_properties(size_t *cnt);

/* ------------------------------------------------------------------------------------
 * Records and batches
 * ---------------------------------------------------------------------------------- */

/** The version of spate_record_t this header describes. Version 2 widened
 *  spate_position_t from 192 to 512 bits (Kinesis sequence numbers of up to 129 digits). */
#define SPATE_RECORD_VERSION 2

/** Where a record came from: the source, its topic or stream, and its partition or shard. */
typedef struct spate_partition {
	const char *source;  /**< "gen", "push", "log", "kafka", "kinesis" */
	const char *topic;   /**< topic, stream or log directory name */
	int32_t partition;   /**< partition number; -1 for Kinesis shards */
	const char *shard;   /**< Kinesis shard id, else NULL */
	const char *name;    /**< "source/topic/partition": the prefix of every record id */
} spate_partition_t;

/**
 * An opaque, totally ordered position in a partition: compare with
 * spate_position_cmp(). It is one unsigned 512-bit number, most significant word first:
 * x[0..4] then w[0..2]. Kafka and log offsets and gen sequence numbers fill w[2] (the
 * other words are 0). A Kinesis position (record version 2) sets the top bit of x[0]
 * (SPATE_POSITION_WIDE), holds the sequence number (up to 129 decimal digits) in the
 * bits below it down to w[1], and the KPL sub-sequence number in w[2], so comparing the
 * numbers orders (sequence number, sub-sequence number). Every bit set is
 * SPATE_POSITION_CLOSED: after every record of a partition that has ended (a Kinesis
 * shard read to SHARD_END).
 */
typedef struct spate_position {
	uint64_t x[5]; /**< the high words (0 for offsets); record version 2 */
	uint64_t w[3]; /**< the low words; offsets fill w[2] */
} spate_position_t;

/** The flag bit of x[0] that marks a wide (sequence number, sub-sequence) position. */
#define SPATE_POSITION_WIDE (UINT64_C(1) << 63)
/** The most bytes spate_position_fmt writes, NUL included ("SEQ.SUB" with a 129-digit
 *  sequence number, or eight hex words). */
#define SPATE_POSITION_MAX 160

/** <0, 0, >0 as a is before, equal to, or after b. */
SPATE_API int spate_position_cmp(const spate_position_t *a, const spate_position_t *b);
/**
 * Format a position into buf (SPATE_POSITION_MAX bytes hold any): decimal when only
 * w[2] is used; "SEQ.SUB" (two decimals) for a wide position; "SHARD_END" for
 * SPATE_POSITION_CLOSED; else the words in hex, "w0:w1:w2" when x is 0, else all eight
 * "x0:x1:x2:x3:x4:w0:w1:w2". Returns buf.
 */
SPATE_API char *spate_position_fmt(const spate_position_t *pos, char *buf, size_t size);

/** A record header: a key and an optional binary value. */
typedef struct spate_header {
	const char *key;
	size_t key_len;
	const void *value; /**< NULL for a null value */
	size_t value_len;
} spate_header_t;

/**
 * A record as a handler sees it. Pointers stay valid until the handler returns; copy
 * what must outlive the call. Fields are appended in later versions; check version.
 */
typedef struct spate_record {
	int32_t version;                   /**< SPATE_RECORD_VERSION */
	uint32_t flags;                    /**< reserved, 0 */
	const void *key;                   /**< NULL for a keyless record */
	size_t key_len;
	const void *value;                 /**< NULL for a null (tombstone) value */
	size_t value_len;
	const spate_header_t *headers;     /**< header_cnt headers, or NULL */
	size_t header_cnt;
	int64_t timestamp_ms;              /**< stream timestamp, ms since the epoch */
	const spate_partition_t *partition;/**< the record's partition, never NULL */
	spate_position_t position;         /**< the record's position in its partition */
} spate_record_t;

/**
 * The record's stable id, "source/topic/partition/position", into buf. The same
 * record always has the same id, across restarts and redeliveries, so a handler can
 * use it to be idempotent. Returns the length written (truncated to size-1), or the
 * length needed when buf is NULL.
 */
SPATE_API size_t spate_record_id(const spate_record_t *rec, char *buf, size_t size);

/** A batch of records from one lane of one partition, in position order. */
typedef struct spate_batch spate_batch_t;

/** Number of records in the batch. */
SPATE_API size_t spate_batch_count(const spate_batch_t *batch);
/** The batch's records (count of them). Valid until the handler returns. */
SPATE_API const spate_record_t *const *spate_batch_records(const spate_batch_t *batch);
/**
 * Mark record i of the batch as failed (like Lambda's batchItemFailures). With
 * report.item.failures=true, only the lanes holding failed items retry, from their
 * first failed item. errmsg (may be NULL) is copied and travels to the DLQ as
 * spate.error. Only valid inside the handler call. Returns SPATE_ERR_INVALID for a bad i.
 */
SPATE_API spate_err_t spate_batch_fail_item(spate_batch_t *batch, size_t i, const char *errmsg);
/** Set the error message of a whole-batch failure (copied). Only inside the handler call. */
SPATE_API void spate_batch_set_error(spate_batch_t *batch, const char *errmsg);

/**
 * Emit a record to the sink named sink (configured as `sink.NAME=log:DIR`, `kafka:TOPIC`
 * ...) on behalf of record `origin` of the batch. key, value and headers are copied (no
 * allocation per record once the worker's buffer has grown). The record reaches the sink
 * after the handler returns and only if its origin succeeded; the origin is DONE only
 * once every record emitted for it is acknowledged by its sink (durable in a log, acked by
 * Kafka), so a crash never loses an emitted record. An emitted record carries the header
 * `spate.origin` (its origin's record id), so a consumer can drop the duplicates a retry
 * or a crash can make: emits of a batch that fails are discarded, and a sink that fails
 * fails the batch (it is retried and may emit again).
 * Returns SPATE_OK, SPATE_ERR_NOT_FOUND (no sink of that name), SPATE_ERR_INVALID
 * (origin out of range) or SPATE_ERR_NOMEM. Only inside the handler call.
 */
SPATE_API spate_err_t spate_batch_emit(spate_batch_t *batch, size_t origin, const char *sink, const void *key,
                                       size_t key_len, const void *value, size_t value_len,
                                       const spate_header_t *headers, size_t header_cnt);

/** What a handler returns. */
typedef enum spate_handler_res {
	SPATE_HANDLER_OK = 0,           /**< every record succeeded (marked items fail, see below) */
	SPATE_HANDLER_FAIL = 1,         /**< the whole batch failed */
	SPATE_HANDLER_ITEM_FAILURES = 2 /**< only items marked with spate_batch_fail_item() failed */
} spate_handler_res_t;

/**
 * A handler: the operator that processes batches. Copy into spate_engine_new's argument;
 * the struct is read once. All callbacks may be NULL except handle.
 *
 * A worker thread is like a Lambda execution environment: init runs on the worker
 * thread when it starts, fini on the same thread when it stops; whatever init stores in
 * *worker_ctx is passed to every handle call on that worker.
 */
typedef struct spate_handler {
	int32_t version; /**< SPATE_HANDLER_VERSION */
	const char *name;
	/** @locality a worker thread, once when it starts. Return SPATE_OK or an error,
	 *  which stops the engine with that error. */
	int (*init)(void *opaque, int worker_id, void **worker_ctx);
	/** @locality a worker thread, once per batch; never two calls for one lane at once.
	 *  Returns a spate_handler_res_t. */
	int (*handle)(void *opaque, void *worker_ctx, spate_batch_t *batch);
	/** @locality the worker thread that ran init, once when it stops. */
	void (*fini)(void *opaque, void *worker_ctx);
	/** passed to every callback */
	void *opaque;
} spate_handler_t;

/** The version of spate_handler_t this header describes. */
#define SPATE_HANDLER_VERSION 1

/* ------------------------------------------------------------------------------------
 * Engine
 * ---------------------------------------------------------------------------------- */

/** An opaque running pipeline. */
typedef struct spate_engine_s spate_engine_t;

/**
 * Create an engine from conf. handler may be NULL, then the conf's "handler" key names
 * a built-in handler; when not NULL it overrides that key. On success the engine owns
 * conf; on failure conf still belongs to the caller and errstr names the key at fault.
 * @locality any thread
 */
SPATE_API spate_engine_t *spate_engine_new(spate_conf_t *conf, const spate_handler_t *handler,
                                           char *errstr, size_t errstr_size);

/**
 * Open the source, store and DLQ, load checkpoints and start the worker threads.
 * Returns SPATE_OK or an error with its message in errstr.
 * @locality the thread that will call spate_engine_run()
 */
SPATE_API spate_err_t spate_engine_start(spate_engine_t *e, char *errstr, size_t errstr_size);

/**
 * Run the pipeline on the calling thread until the source ends, or spate_engine_stop()
 * is called, or a fatal error. A finite source ends once every record is DONE (gen with
 * gen.records > 0; push after spate_push_close); a log or Kafka source is a stream and
 * ends only with stop.at.end=true. Writes the final checkpoint before it returns.
 * @locality the thread that called spate_engine_start()
 */
SPATE_API spate_err_t spate_engine_run(spate_engine_t *e, char *errstr, size_t errstr_size);

/**
 * Ask the engine to stop: handler calls already running finish (up to
 * shutdown.timeout.ms), no new one starts, and records fetched but not yet handed to
 * the handler are left for the next run; spate_engine_run() then writes a final
 * checkpoint of what is DONE and returns (SPATE_OK unless that save fails).
 * Async-signal-safe. A second call stops at once, without waiting for running calls and
 * without a final checkpoint.
 * @locality any thread, or a signal handler
 */
SPATE_API void spate_engine_stop(spate_engine_t *e);

/** Stop if running, join the workers, close everything and free e. Waits for a handler
 *  call that is still running (see spate_engine_busy). */
SPATE_API void spate_engine_destroy(spate_engine_t *e);

/**
 * After spate_engine_run returned: 1 when a handler call outlived the stop (it ran past
 * shutdown.timeout.ms, or the stop was at once) and spate_engine_destroy would wait for
 * it to return; a program that is exiting may exit instead. Else 0.
 * @locality the thread that called spate_engine_run()
 */
SPATE_API int spate_engine_busy(spate_engine_t *e);

/** Write what a built-in handler counted (the fraud rules' flags) to fp as `name value`
 *  lines; nothing for a handler given as a struct. @locality after spate_engine_run */
SPATE_API void spate_engine_report(spate_engine_t *e, FILE *fp);

/** Latency percentiles (from log-linear histograms: within about 12%). */
typedef struct spate_latency {
	double p50_ms, p90_ms, p99_ms, p999_ms, max_ms;
} spate_latency_t;

/** End-of-run (or so-far) counters. */
typedef struct spate_summary {
	uint64_t records;          /**< records handled (DONE, including dlq and dropped) */
	uint64_t batches;          /**< handler invocations */
	uint64_t failed;           /**< records in failed handler attempts */
	uint64_t dlq;              /**< records written to the DLQ */
	uint64_t dropped;          /**< records dropped after retries, with no DLQ */
	uint64_t retries;          /**< retried batches */
	uint64_t filtered;         /**< records skipped by design (DONE without a handler call) */
	double elapsed_s;          /**< from start to the end of run */
	double first_to_last_s;    /**< from the first record handed to a handler to the last DONE */
	double records_per_s;      /**< records / first_to_last_s */
	int workers_min, workers_max;
	double workers_mean;       /**< time-weighted mean of the active worker count */
	uint64_t dlq_errors;       /**< failed DLQ writes (the records stayed and were retried) */
	uint64_t store_errors;     /**< failed checkpoint saves (retried on the next tick) */
	uint64_t throttled;        /**< autoscaler ticks at max.concurrency with lanes waiting */
	uint64_t cold_starts;      /**< records that arrived with no worker active */
	double cold_p50_ms, cold_p99_ms; /**< from such a record's arrival to its handler start */
	uint64_t emitted;          /**< records emitted to named sinks (spate_batch_emit), durable */
	/** End-to-end latency of the records handled: from a record's stream timestamp to its
	 *  handler call and to DONE (its emits durable), and the same from its arrival in the
	 *  engine. Each batch's oldest and newest records stand for it. */
	spate_latency_t latency_start, latency_done, arrival_start, arrival_done;
} spate_summary_t;

/** Live gauges, as the stats lines print them. */
typedef struct spate_stats {
	int workers_active;        /**< workers the autoscaler runs now */
	uint64_t lanes_waiting;    /**< lanes with work and no worker (the backlog) */
	uint64_t lanes_running;    /**< lanes a worker holds */
	int64_t lag;               /**< the source's records not yet read (-1 unknown) */
	uint64_t inflight_bytes;   /**< fetched-but-not-DONE bytes (bounded by max.inflight.bytes) */
	uint64_t inflight_records;
	uint64_t records;          /**< DONE so far */
	uint64_t throttled;
	uint64_t cold_starts;
	double handler_p50_ms, handler_p99_ms; /**< handler time per batch, since the start */
	double latency_p50_ms, latency_p99_ms; /**< stream timestamp to DONE, since the start */
	uint64_t filtered; /**< records the filter dropped (DONE without a handler call), so far */
} spate_stats_t;

/** Fill *s with the engine's gauges. @locality any thread, while the engine exists */
SPATE_API void spate_engine_stats(spate_engine_t *e, spate_stats_t *s);

/** Fill *s with the engine's counters. @locality any thread */
SPATE_API void spate_engine_summary(spate_engine_t *e, spate_summary_t *s);

/** Write the summary as one JSON object into buf. Returns the length (as snprintf). The
 *  names and units are those of spate_summary_text: counts, seconds (elapsed_s,
 *  first_to_last_s), records_per_s, workers_mean, cold_start_p50_ms / _p99_ms. */
SPATE_API int spate_summary_json(const spate_summary_t *s, char *buf, size_t size);
/** Write the summary as `name value` lines into buf, the same fields, names and values as
 *  spate_summary_json (what `spate run` prints). Returns the length (as snprintf). */
SPATE_API int spate_summary_text(const spate_summary_t *s, char *buf, size_t size);

/* ------------------------------------------------------------------------------------
 * The push source (source=push): the application pushes records
 * ---------------------------------------------------------------------------------- */

/** A record to push: what is copied into the engine. */
typedef struct spate_push_record {
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	const spate_header_t *headers;
	size_t header_cnt;
	int64_t timestamp_ms; /**< 0: now */
} spate_push_record_t;

/**
 * Push cnt records into partition. Two sources take them:
 *  - source=push (in memory): the records are copied into the engine and the call
 *    returns at once. A crash loses what was pushed and not yet checkpointed, and the
 *    caller cannot know which: use it where the caller can replay (tests, benchmarks).
 *  - source=log:DIR with log.push=true (durable): the records are appended to the
 *    embedded log and the call returns only once they are fsync'd (many callers share one
 *    fdatasync: group commit); the pipeline reads them back from the log with every
 *    guarantee. What a call returned survives a crash.
 * Returns the number of records taken: cnt, or fewer under backpressure (the partition's
 * bound is reached: the in-flight bounds, or log.push.max.lag; 0 when it took none: push
 * the rest later), or a negative spate_err_t. Never blocks
 * without a bound (a durable push waits for its sync). One lock per call, not per
 * record: push in batches.
 * @locality any thread, after spate_engine_start()
 */
SPATE_API int spate_push(spate_engine_t *e, int32_t partition, const spate_push_record_t *recs, size_t cnt);

/** spate_push(), and the positions it assigned to the records it took in positions[]
 *  (at least cnt entries): log offsets for a durable push, in-order positions in memory.
 *  A record's id is then "SOURCE/TOPIC/PARTITION/POSITION" (spate_record_id). */
SPATE_API int spate_push_positions(spate_engine_t *e, int32_t partition, const spate_push_record_t *recs,
                                   size_t cnt, spate_position_t *positions);

/**
 * Tell the push source no more records come: the run then ends once everything pushed
 * is DONE and checkpointed (no stop.at.end needed).
 * @locality any thread
 */
SPATE_API void spate_push_close(spate_engine_t *e);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_SPATE_H */
