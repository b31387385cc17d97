/* kinesis.h - what the files of the Kinesis connector share (internal to
 * connectors/kinesis):
 *  - aws.c: the stream (a name or an ARN) and the request bodies;
 *  - ../aws (aws.h, shared with the DynamoDB store): the credentials, the endpoint, and
 *    one I/O thread per connection that drives libcurl's multi-socket interface from an
 *    io_uring loop; requests go in from any thread and come back through a callback on
 *    that thread;
 *  - parse.c: the reply parsers (ListShards, GetShardIterator, GetRecords, PutRecords;
 *    error replies: ../aws/aws.c), base64, and the header envelope of the sink; each
 *    runs on a (bytes, length) buffer with no network, so a fuzzer can drive it;
 *  - kpl.c: the de-aggregator of KPL records (its own small protobuf reader) and MD5;
 *  - source.c (shards, iterators, resharding) and sink.c (PutRecords, the DLQ).
 */
#ifndef SPATE_CONNECTORS_KINESIS_H
#define SPATE_CONNECTORS_KINESIS_H

#include "../aws/aws.h"
#include "sp_spi.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KIN_NAME "kinesis"

enum {
	/* the API's bounds */
	KIN_GET_LIMIT_MAX = 10000,       /* records per GetRecords */
	KIN_PUT_RECORDS_MAX = 500,       /* entries per PutRecords */
	KIN_PUT_BYTES_MAX = 5 << 20,     /* bytes per PutRecords (data and keys) */
	KIN_RECORD_BYTES_MAX = 1 << 20,  /* data and partition key of one record */
	KIN_KEY_MAX = 256,               /* partition key characters */
	KIN_GETS_PER_S = 5,              /* GetRecords calls per shard per second */
	KIN_SHARD_READ_BPS = 2 << 20,    /* a shard's read limit, bytes per second: a reply
	                                  * of B bytes waits B / this before the next call
	                                  * (10 MiB: 5 s, as GetRecords asks) */
	KIN_ITERATOR_LIFE_MS = 300000,   /* an iterator expires 5 minutes after it was made */
	KIN_NEXT_TOKEN_LIFE_MS = 300000, /* a ListShards NextToken expires after 300 s */
	/* requests (their timeouts: aws.h) */
	KIN_BACKOFF_MIN_MS = 100,   /* retryable errors: backoff doubles from here */
	KIN_BACKOFF_MAX_MS = 10000, /* ... up to here */
	KIN_OPEN_TRIES = 3,         /* a request at open is tried this often */
	KIN_MALFORMED_TRIES = 5,    /* malformed replies in a row before it is fatal */
};

/* ---- aws.c: the stream --------------------------------------------------------------- */

/** Fill *a from the conf keys kinesis.stream (arg overrides: the sink's STREAM),
 *  kinesis.region, kinesis.endpoint and the AWS environment variables. Errors name the
 *  key or variable, never a secret's value. */
int kin_aws_init(kin_aws_t *a, const spate_conf_t *c, const char *stream_arg, char *errstr, size_t size);
/** `"StreamName":"NAME"` or `"StreamARN":"ARN"` as JSON members (no braces) into buf. */
void kin_aws_stream_member(const kin_aws_t *a, char *buf, size_t size);

/* ---- parse.c: replies ---------------------------------------------------------------- */

typedef struct kin_shard_info {
	char *id, *parent, *adj_parent; /* parent ids NULL when none */
	char *start_seq, *end_seq;      /* end_seq NULL while the shard is open */
} kin_shard_info_t;

typedef struct kin_shard_list {
	kin_shard_info_t *shards;
	size_t n, cap;
	char *next_token; /* NULL on the last page */
} kin_shard_list_t;

/** Parse a ListShards reply, appending its shards to out (out->next_token replaced).
 *  SPATE_OK or SPATE_ERR_CORRUPT with why. */
int kin_parse_list_shards(const char *body, size_t len, kin_shard_list_t *out, char *why, size_t size);
void kin_shard_list_free(kin_shard_list_t *l);

/** Parse a GetShardIterator reply: *iter (malloc'd). */
int kin_parse_iterator(const char *body, size_t len, char **iter, char *why, size_t size);

/** One record of a GetRecords reply, decoded (pointers into the reply's data buffer). */
typedef struct kin_rec {
	const char *key;
	size_t key_len;
	const uint8_t *data;
	size_t data_len;
	int64_t ts_ms;
	spate_position_t pos;
	/* headers from the envelope (into the data buffer): hdr_n of them at hdr_at in the
	 * reply's header array */
	uint32_t hdr_at, hdr_n;
} kin_rec_t;

typedef struct kin_records {
	kin_rec_t *recs;
	size_t n, cap;
	spate_header_t *hdrs;
	size_t nhdrs, hdr_cap;
	uint8_t *buf; /* every record's bytes: owned, goes to the chunk */
	size_t buf_len;
	size_t data_bytes; /* decoded data of the reply (for the read pacing) */
	char *next_iter;   /* NULL: the shard is closed and read to its end */
	int64_t behind_ms; /* MillisBehindLatest (-1 when absent) */
	char **children;   /* ChildShards' ids (n_children) */
	size_t n_children;
	char *last_seq;          /* the last Kinesis record's sequence number (not sub-records) */
	uint32_t aggregated;     /* KPL records de-aggregated */
	uint32_t bad_aggregates; /* records with the KPL magic whose MD5 or body failed */
} kin_records_t;

/** Parse a GetRecords reply into out: base64 decoded, KPL de-aggregated, envelopes
 *  unwrapped. SPATE_OK or SPATE_ERR_CORRUPT with why. */
int kin_parse_records(const char *body, size_t len, kin_records_t *out, char *why, size_t size);
void kin_records_free(kin_records_t *r);

/** Parse a PutRecords reply: failed[i] set for each entry that failed (n entries sent),
 *  its ErrorCode into first_err (the first one). Returns the failed count, or -1 with
 *  why (malformed). */
int kin_parse_put_records(const char *body, size_t len, size_t n, bool *failed, char *first_err,
                          size_t errsize, char *why, size_t size);

/** Base64 (RFC 4648, padded) of src into dst (room for 4 * ((n + 2) / 3)); returns the
 *  length. */
size_t kin_b64_encode(const uint8_t *src, size_t n, char *dst);
/** Decode base64 (padding optional) into dst (room for n * 3 / 4 + 3); the length, or
 *  -1 on a bad character or length. */
ssize_t kin_b64_decode(const char *src, size_t n, uint8_t *dst);

/* The header envelope: a record with headers is written as
 *   F5 'S' 'H' 01 | varint count | (varint klen, key, varint vlen+1 or 0 for null, value)*
 *   | CRC-32C (4 bytes, little-endian) of everything before it | the value.
 * Data that does not start so, or fails the CRC, is a plain value. */
#define KIN_ENV_MAGIC     "\xF5SH\x01"
#define KIN_ENV_MAGIC_LEN 4
/** The envelope's size for these headers (0 when there are none). */
size_t kin_env_size(const spate_header_t *h, size_t n);
/** Write the envelope for h into dst (kin_env_size bytes); returns its length. */
size_t kin_env_write(const spate_header_t *h, size_t n, uint8_t *dst);
/** Unwrap data: when it holds an envelope, write up to cap headers into h (pointers into
 *  data), the value's offset into *value_at and return the header count; 0 for a plain
 *  value (*value_at = 0). Returns -1 when there are more than cap headers (the count in
 *  *need). */
int kin_env_read(const uint8_t *data, size_t len, spate_header_t *h, size_t cap, size_t *value_at,
                 size_t *need);

/* ---- kpl.c: KPL aggregation ----------------------------------------------------------- */

#define KIN_KPL_MAGIC     "\xF3\x89\x9A\xC2"
#define KIN_KPL_MAGIC_LEN 4
#define KIN_KPL_MD5_LEN   16

/** One user record of an aggregate (pointers into the aggregate). */
typedef struct kin_kpl_rec {
	const char *key;
	size_t key_len;
	const uint8_t *data;
	size_t data_len;
} kin_kpl_rec_t;

/** De-aggregate a KPL record (magic, protobuf AggregatedRecord, MD5 of the protobuf).
 *  Calls fn once per sub-record in order. Returns the sub-record count, or -1 when data
 *  is not a valid aggregate (bad magic, MD5, protobuf, or an index past a table): the
 *  caller then treats it as one plain record (fn may not be called then). fn returns
 *  false to stop (then -2). */
int kin_kpl_deaggregate(const uint8_t *data, size_t len, bool (*fn)(void *arg, const kin_kpl_rec_t *r),
                        void *arg);
/** The number of sub-records of a valid aggregate, or -1 (no callback). */
int kin_kpl_count(const uint8_t *data, size_t len);
/** MD5 of buf into out. */
void kin_md5(const void *buf, size_t len, uint8_t out[KIN_KPL_MD5_LEN]);

#endif
