/* log.h - the embedded log's internal API: format, segments, writer, reader.
 *
 * A log is a directory with a metadata file and a folder per partition; a partition is
 * a sequence of segment files of Kafka RecordBatch v2 (magic 2) batches, each with a
 * sparse offset index, plus a small `durable` file in which the one writer of the
 * partition publishes how much of it is fsync'd. docs/log.md describes the bytes.
 *
 * Layers, bottom up:
 *  - format.c:  CRC32C, varints, RecordBatch v2 encode/decode (no I/O)
 *  - segment.c: directory layout, metadata, segment lists, the index, the durable
 *               file
 *  - scan.c:    a buffered batch scanner (pread) used by recovery, verify, seek; the
 *               resync search after a bad batch; verify
 *  - writer.c:  one partition's writer (flock, recovery, batching, rolling, fsync
 *               policy)
 *  - producer.c: a producer over all partitions (key hash / round robin)
 *  - codec.c:   gzip, snappy, lz4, zstd: compressed batches decoded into an arena,
 *               and the writer's compressor
 *  - reader.c:  the io_uring (or pread) reader over all partitions, producing parsed
 *               sp_chunk_t descriptors that point into the read buffers (parse.c) and
 *               their decode arenas (bufpool.c), with reader_open.c, and its backends
 *               reader_uring.c and reader_pread.c behind the private reader.h; its
 *               decode stage (CRC, decompression, descriptors on threads) is
 *               reader_decode.c
 *  - scan.c:    the buffered batch scanner and the resync search
 *  - verify.c:  `spate log verify`: every batch and record, on threads
 *  - lpush.c:   durable push (spate_push into the log, group commit)
 *  - source.c, sink.c: the engine vtables sp_source_log and sp_sink_log
 * The CLI (cli/cmd_log.c, cli/cmd_produce.c) and the tests use this header.
 *
 * Nothing here but the writer changes a file, and the writer repairs only the torn
 * tail of a partition's last segment.
 */
#ifndef SPATE_CONNECTORS_LOG_H
#define SPATE_CONNECTORS_LOG_H

#include "sp_spi.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- format (format.c) ------------------------------------------------------------ */

/** The on-disk format version this code writes and reads (the metadata file says it). */
#define SP_LOG_FORMAT_VERSION 1

/** Bytes before batchLength's end: baseOffset (8) + batchLength (4). */
#define SP_LOG_LOG_OVERHEAD 12
/** Fixed RecordBatch v2 header bytes, from baseOffset through the records count. */
#define SP_LOG_BATCH_HEADER 61
/** Where the CRC'd bytes start: the attributes field. */
#define SP_LOG_CRC_START 21
/** Largest batch (whole, with its header) this code accepts: anything longer is taken
 *  to be a corrupt length field. Kafka's default message.max.bytes is about 1 MiB. */
#define SP_LOG_MAX_BATCH_BYTES ((size_t)64 << 20)
/** Largest record (key + value + headers) the writer and sink take. */
#define SP_LOG_MAX_RECORD_BYTES ((size_t)16 << 20)

/* attributes bits of a RecordBatch v2 */
#define SP_LOG_ATTR_CODEC_MASK    0x07
#define SP_LOG_ATTR_TS_LOG_APPEND 0x08
#define SP_LOG_ATTR_TRANSACTIONAL 0x10
#define SP_LOG_ATTR_CONTROL       0x20

/** The header of a RecordBatch v2, as the Kafka protocol guide lays it out. */
typedef struct sp_log_batch_hdr {
	int64_t base_offset;
	int32_t length; /* batchLength: bytes after this field */
	int32_t leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_ts;
	int64_t max_ts;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_seq;
	int32_t count;
} sp_log_batch_hdr_t;

/** What sp_log_batch_header() found at a position. */
enum sp_log_hdr_res {
	SP_LOG_HDR_OK = 0,    /* a sane header; the whole batch is `total` bytes */
	SP_LOG_HDR_SHORT = 1, /* fewer bytes than the header needs: read more */
	SP_LOG_HDR_BAD = 2    /* not a v2 batch header (bad length, magic or count) */
};


/**
 * Parse and sanity-check the batch header at p (avail bytes there). On SP_LOG_HDR_OK
 * fills *h and *total (the whole batch's bytes, which may exceed avail). On
 * SP_LOG_HDR_BAD, *why (when not NULL) says what is wrong in a static string.
 * Does not check the CRC.
 */
int sp_log_batch_header(const uint8_t *p, size_t avail, sp_log_batch_hdr_t *h, size_t *total,
                        const char **why);
/** True when the CRC of the complete batch at p (total bytes) matches; *computed gets
 *  the computed value when not NULL. */
bool sp_log_batch_crc_ok(const uint8_t *p, size_t total, uint32_t *computed);
/**
 * The checks of a batch's offsets. Its baseOffset is outside the CRC, so a reader checks it
 * against what surrounds the batch: `passed` is the offset after the previous batch (the
 * segment's base before its first batch), `hi` the first offset the batch may not reach
 * (the next segment's base, or in the segment being written the durable next offset;
 * UINT64_MAX when unknown), `next` the header of the batch after it in the same segment,
 * or NULL when there is none (yet). A batch that leaves a gap after `passed` (Kafka's
 * compaction does that) is wrong when the next batch starts inside the gap or inside the
 * batch's own offsets: then this one's baseOffset moved, not the next one's. Returns NULL
 * when the offsets fit, else why (static text).
 */
const char *sp_log_batch_offsets_bad(const sp_log_batch_hdr_t *h, uint64_t passed, uint64_t hi,
                                     const sp_log_batch_hdr_t *next);
/** True when the batch leaves a gap after passed (sp_log_batch_offsets_bad then wants the
 *  next batch's header to decide). */
static inline bool sp_log_batch_gap(const sp_log_batch_hdr_t *h, uint64_t passed)
{
	return (uint64_t)h->base_offset > passed;
}
/** The compression codec (attributes & 7) and its name: "none", "gzip", "snappy", "lz4",
 *  "zstd", or "unknown" for 5..7. */
int sp_log_batch_codec(const sp_log_batch_hdr_t *h);
const char *sp_log_codec_name(int codec);
/** The last offset a batch covers. */
static inline int64_t sp_log_batch_last(const sp_log_batch_hdr_t *h)
{
	return h->base_offset + h->last_offset_delta;
}

/** The smallest record: length, attributes, three one-byte varints, two -1 lengths, a zero
 *  header count. A batch's record count must fit its record bytes at this size each. */
#define SP_LOG_MIN_RECORD_BYTES 7

/** Zigzag varint / varlong: bytes written (at most 5 / 10). */
size_t sp_log_put_varint(uint8_t *p, int32_t v);
size_t sp_log_put_varlong(uint8_t *p, int64_t v);
size_t sp_log_varlong_size(int64_t v);
/** Read a zigzag varlong from [p, end): bytes consumed, or 0 when malformed or cut. */
size_t sp_log_get_varlong(const uint8_t *p, const uint8_t *end, int64_t *v);

/** One decoded record of a batch: pointers into the batch bytes. */
typedef struct sp_log_rec {
	int64_t offset;
	int64_t timestamp;
	const uint8_t *key; /* NULL when key_len == -1 */
	int32_t key_len;
	const uint8_t *value; /* NULL when value_len == -1 */
	int32_t value_len;
	int32_t hdr_cnt;
	const uint8_t *hdrs; /* hdr_cnt raw headers in [hdrs, hdrs_end) */
	const uint8_t *hdrs_end;
} sp_log_rec_t;

typedef struct sp_log_rec_iter {
	const uint8_t *p, *end;
	int32_t left;
	int64_t base_offset, base_ts;
	int64_t last_offset; /* the batch's last offset: no record goes past it */
	int64_t prev_offset; /* the record before (base_offset - 1 at first) */
} sp_log_rec_iter_t;

/** Iterate the records of an uncompressed batch (p, total bytes, header h). */
void sp_log_rec_iter_init(sp_log_rec_iter_t *it, const uint8_t *p, size_t total, const sp_log_batch_hdr_t *h);
/** Iterate the records section recs[0..len) of a batch with header h (a compressed batch's
 *  records once decompressed: sp_log_dec_batch). The iterator checks that the records'
 *  offsets rise inside the batch's offsets. */
void sp_log_rec_iter_init_recs(sp_log_rec_iter_t *it, const uint8_t *recs, size_t len, const sp_log_batch_hdr_t *h);
/** 1 and *r for the next record; 0 after the last (when the bytes were used exactly);
 *  -1 when the framing is wrong or a record's offset does not rise inside the batch's
 *  offsets (*why says how; what `spate log verify` and every reader refuse). Headers are
 *  not walked here. */
int sp_log_rec_next(sp_log_rec_iter_t *it, sp_log_rec_t *r, const char **why);
/** Decode the next raw header at *p (before end) into *h (pointers into the bytes);
 *  0, or -1 when malformed. */
int sp_log_hdr_next(const uint8_t **p, const uint8_t *end, spate_header_t *h);
/** Walk all headers of r to check their framing: 0 or -1. */
int sp_log_rec_check_hdrs(const sp_log_rec_t *r);

/** Builds one RecordBatch v2 in memory, as the writer appends it. */
typedef struct sp_log_enc {
	uint8_t *buf;
	size_t len, cap;
	int64_t base_offset, base_ts, max_ts;
	int32_t count;
} sp_log_enc_t;

/** The batch-level fields every batch this code writes carries (documented in docs/log.md). */
#define SP_LOG_WRITE_LEADER_EPOCH   0
#define SP_LOG_WRITE_PRODUCER_ID    (-1)
#define SP_LOG_WRITE_PRODUCER_EPOCH (-1)
#define SP_LOG_WRITE_BASE_SEQ       (-1)

void sp_log_enc_init(sp_log_enc_t *e);
void sp_log_enc_free(sp_log_enc_t *e);
/** Start a batch at base_offset whose first record has timestamp base_ts. */
void sp_log_enc_begin(sp_log_enc_t *e, int64_t base_offset, int64_t base_ts);
/** Bytes record r at timestamp ts would add to the current batch (with its length). */
size_t sp_log_enc_record_size(const sp_log_enc_t *e, const spate_push_record_t *r, int64_t ts);
/** Append r with timestamp ts (its offset is base_offset + count). SPATE_OK or
 *  SPATE_ERR_NOMEM / SPATE_ERR_INVALID (a field over 2 GiB). */
int sp_log_enc_add(sp_log_enc_t *e, const spate_push_record_t *r, int64_t ts);
/** Fill in the header and CRC; returns the batch's bytes (e->buf[0..n)). */
size_t sp_log_enc_finish(sp_log_enc_t *e);
/** Write the header of e's batch into b, whose records section b[61..len) is e's records
 *  compressed with codec (attributes say so), and the CRC over them. */
void sp_log_enc_seal(const sp_log_enc_t *e, uint8_t *b, size_t len, int codec);

/* ---- codecs (codec.c) --------------------------------------------------------------- */

/* The codecs of attributes bits 0-2, as Kafka numbers them; 5..7 are not defined. */
#define SP_LOG_CODEC_NONE   0
#define SP_LOG_CODEC_GZIP   1
#define SP_LOG_CODEC_SNAPPY 2
#define SP_LOG_CODEC_LZ4    3
#define SP_LOG_CODEC_ZSTD   4

/**
 * The most bytes one batch's records may decompress to: a batch that says or turns out to
 * hold more is refused as corrupt (a decompression bomb), before anything past this is
 * allocated. 4 x SP_LOG_MAX_BATCH_BYTES: the biggest batch this code accepts (64 MiB)
 * compressed 4:1, which is what text and JSON reach with lz4 and snappy, and room for a
 * Kafka-sized batch (message.max.bytes, about 1 MiB) compressed 256:1. One batch's
 * records at most this size are all the memory one decode takes.
 */
#define SP_LOG_MAX_DECOMPRESSED_BYTES (4 * SP_LOG_MAX_BATCH_BYTES)
/** A parse (one read buffer) decompresses no further batch once its arena holds this
 *  many bytes: the rest of the buffer is parsed again into the next chunk. This bounds a
 *  chunk's decompressed bytes (many small batches each under the limit above) to this
 *  plus one batch. */
#define SP_LOG_DEC_PARSE_BYTES ((size_t)64 << 20)
/** An arena whose buffer goes back to the pool keeps its memory for the next parse up to
 *  this size (more is freed). */
#define SP_LOG_DEC_KEEP_BYTES ((size_t)16 << 20)

/** "none", "gzip", "snappy", "lz4", "zstd" to the codec number; -1 for anything else. */
int sp_log_codec_parse(const char *name);
/**
 * Check a compression level for codec as Kafka's compression.<codec>.level means it and
 * resolve -1 to Kafka's default: gzip 1..9 (default -1: zlib's 6), lz4 1..17 (default 9;
 * 1 is the fast compressor, 3..12 liblz4's HC levels, above 12 the same as 12), zstd
 * -131072..22 without -1 (default 3); none and snappy take -1 only. SPATE_OK and
 * *resolved, or SPATE_ERR_INVALID naming the compression.level key and the range.
 */
int sp_log_codec_level(int codec, int64_t level, int *resolved, char *errstr, size_t size);

/** One batch's records in an arena: which batch (its bytes), where its records are. */
typedef struct sp_log_dec_ent {
	const uint8_t *src;
	size_t off, len;
} sp_log_dec_ent_t;

/**
 * A decode arena: the decompressed records of the compressed batches of one read buffer,
 * back to back in one block (mem), so the records of a chunk point into it and it lives
 * as long as the chunk (it belongs to the chunk's read buffer: sp_log_pool_dec). A
 * parse walks a buffer's batches from its start, and the arena hands back what it
 * decompressed before for the same batch in the same order (a second walk decompresses
 * nothing again). The codec contexts are made on first use and kept for the arena's next
 * use. Reused through the buffer pool, an arena costs no allocation per batch once its
 * block has grown to what a read's batches decompress to. One thread at a time.
 */
typedef struct sp_log_dec {
	uint8_t *mem; /* the decompressed records */
	size_t used, cap;
	sp_log_dec_ent_t *ent; /* the batches in mem, in the order they were decoded */
	size_t n, ent_cap;
	size_t cursor;         /* the next batch a walk expects (sp_log_dec_rewind) */
	size_t limit;          /* per batch; 0 = SP_LOG_MAX_DECOMPRESSED_BYTES (tests lower it) */
	void *gz, *zstd, *lz4; /* decompression contexts */
	/* header descriptors of the buffer's records when its chunk was filled by the decode
	 * stage (reader_decode.c: the chunk was allocated before its headers were counted);
	 * kept with the buffer like mem, grown, never shrunk */
	spate_header_t *hdrs;
	uint32_t hdr_cap;
} sp_log_dec_t;

void sp_log_dec_init(sp_log_dec_t *d);
/** Free its memory and contexts (d itself is the caller's). */
void sp_log_dec_free(sp_log_dec_t *d);
/** Forget every batch (keep the memory and contexts). */
void sp_log_dec_reset(sp_log_dec_t *d);
/** Start a walk from the buffer's first batch again (what was decoded stays). */
void sp_log_dec_rewind(sp_log_dec_t *d);
/** Forget every batch and free the block when it is bigger than keep. */
void sp_log_dec_trim(sp_log_dec_t *d, size_t keep);
/** Bytes of memory the arena holds (its block): what a chunk that owns it costs. */
size_t sp_log_dec_bytes(const sp_log_dec_t *d);
/** Decompressed bytes of the batches in it. */
size_t sp_log_dec_used(const sp_log_dec_t *d);
/** True when the next batch of the walk is in the arena already (costs nothing). */
bool sp_log_dec_cached(const sp_log_dec_t *d, const uint8_t *batch);

/**
 * The records section of the complete, CRC-checked batch at batch (total bytes, header
 * h): for an uncompressed batch the bytes after its header, for a compressed one its
 * records decompressed into d (nothing of a file is needed: fuzzers call this on a
 * buffer). *recs stays valid until d decodes another batch that is not in it, or is
 * reset. SPATE_OK; SPATE_ERR_CORRUPT when the compressed bytes are damaged, decompress
 * to more than the limit, or hold fewer bytes than the record count needs;
 * SPATE_ERR_UNSUPPORTED for codecs 5..7; SPATE_ERR_NOMEM. why (why_size bytes) then
 * names the batch's offsets, its codec and what is wrong.
 */
int sp_log_dec_batch(sp_log_dec_t *d, const uint8_t *batch, size_t total, const sp_log_batch_hdr_t *h,
                     const uint8_t **recs, size_t *len, char *why, size_t why_size);

/** A compressor of batches for one codec and level; its contexts and output buffer are
 *  kept between batches. */
typedef struct sp_log_comp sp_log_comp_t;

/** level: as sp_log_codec_level (-1: Kafka's default). SPATE_OK, SPATE_ERR_INVALID (the
 *  codec or level, naming the key) or SPATE_ERR_NOMEM. */
int sp_log_comp_new(int codec, int64_t level, sp_log_comp_t **out, char *errstr, size_t size);
void sp_log_comp_free(sp_log_comp_t *c);
/**
 * Finish e's batch (at least one record added): its records compressed, the header and
 * the CRC over the compressed bytes. When compression does not make the records smaller
 * (as librdkafka and kafka-python do) the batch is written uncompressed. *out and *len
 * are the batch's bytes (in c's buffer or e's), valid until the next call. SPATE_OK,
 * SPATE_ERR_NOMEM, or SPATE_ERR_IO when the codec library fails (errstr says how).
 */
int sp_log_comp_batch(sp_log_comp_t *c, sp_log_enc_t *e, const uint8_t **out, size_t *len, char *errstr,
                      size_t size);

/* ---- layout, index, durable file (segment.c), scanner (scan.c) --------------------- */

/** The metadata file in the log directory. */
#define SP_LOG_META_NAME "spate-log.meta"
/** The folder in a log directory where the log source keeps its default checkpoint
 *  stores, one file store per pipeline name. */
#define SP_LOG_CKPT_DIR "checkpoints"
/** The per-partition file where the writer publishes the durable length. */
#define SP_LOG_DURABLE_NAME "durable"
/** Most partitions a log may have. */
#define SP_LOG_MAX_PARTITIONS 4096
/** One sparse index entry per this many bytes of segment (Kafka's index.interval.bytes). */
#define SP_LOG_INDEX_INTERVAL 4096
/** An index entry: 4-byte relative offset, 4-byte file position, both big-endian (the
 *  layout of Kafka's .index files). */
#define SP_LOG_INDEX_ENTRY 8
/** Paths are built into buffers of this size. */
#define SP_LOG_PATH_MAX 4096

/** Create the log at dir with `partitions` partitions (mkdir -p of dir, a folder per
 *  partition, the metadata file written atomically). An existing log is fine when its
 *  partition count matches (or partitions <= 0); otherwise SPATE_ERR_INVALID naming both
 *  counts. */
int sp_log_create(const char *dir, int partitions, char *errstr, size_t size);
/** Read the metadata: SPATE_OK and *partitions, SPATE_ERR_NOT_FOUND when dir holds no
 *  log, SPATE_ERR_CORRUPT / SPATE_ERR_UNSUPPORTED (another format version) naming the file. */
int sp_log_meta_read(const char *dir, int *partitions, char *errstr, size_t size);

/** "DIR/P" and "PDIR/%020llu.EXT" into buf. */
void sp_log_part_path(char *buf, size_t size, const char *dir, int partition);
void sp_log_seg_path(char *buf, size_t size, const char *pdir, uint64_t base, const char *ext);

/** The segments of a partition, by base offset, ascending. */
typedef struct sp_log_seglist {
	uint64_t *base;
	size_t n, cap;
} sp_log_seglist_t;

/** List PDIR/ *.log. SPATE_OK (possibly n == 0) or SPATE_ERR_IO naming the folder. */
int sp_log_seglist(const char *pdir, sp_log_seglist_t *out, char *errstr, size_t size);
void sp_log_seglist_free(sp_log_seglist_t *l);

/** What the writer published: the segment being written, how many of its bytes are
 *  fsync'd, and the offset after the last fsync'd record. Segments before `seg` are
 *  complete and durable in full. */
typedef struct sp_log_durable {
	uint64_t seg;
	uint64_t len;
	uint64_t next;
} sp_log_durable_t;

/** Read PDIR/durable: SPATE_OK, SPATE_ERR_NOT_FOUND (no writer ever opened the
 *  partition), or SPATE_ERR_CORRUPT naming the file. */
int sp_log_durable_read(const char *pdir, sp_log_durable_t *d, char *errstr, size_t size);
/** Write it atomically (temporary file, rename) in the folder dirfd. */
int sp_log_durable_write(int dirfd, const char *pdir, const sp_log_durable_t *d, char *errstr, size_t size);

/** Encode one index entry. */
void sp_log_index_put(uint8_t *p, uint32_t rel, uint32_t pos);
/**
 * Look up target in the index file of the segment at seg_base: the file position of the
 * last entry whose offset is <= target and whose position is < limit (entries past the
 * readable bytes are not trusted), and in *entry (when not NULL) that entry's offset, the
 * base offset the batch there should have. 0 (and *entry = seg_base) when the file is
 * missing, short or holds nothing useful (the caller scans from there). Entries stop at
 * the first one that does not increase (Kafka pre-allocates its index files with zeros).
 */
uint64_t sp_log_index_lookup(const char *pdir, uint64_t seg_base, uint64_t target, uint64_t limit,
                             uint64_t *entry);

/** Scanner statuses beyond the batch itself. */
enum sp_log_scan_res {
	SP_LOG_SCAN_BATCH = 1, /* a complete batch (CRC checked when asked) */
	SP_LOG_SCAN_END = 0,   /* exactly at the limit */
	SP_LOG_SCAN_TORN = -1, /* the bytes up to the limit end inside a batch */
	SP_LOG_SCAN_BAD = -2,  /* a bad header or a CRC mismatch */
	SP_LOG_SCAN_IO = -3    /* read error (errno in err_no) */
};

/** A buffered, forward-only batch reader over [pos, limit) of a segment file (pread). */
typedef struct sp_log_scan {
	int fd;
	uint64_t limit;
	uint64_t pos; /* the next batch's file position */
	uint8_t *buf;
	size_t cap;
	uint64_t buf_pos; /* file position of buf[0] */
	size_t buf_len;
	/* the current batch (after SP_LOG_SCAN_BATCH) or the problem */
	sp_log_batch_hdr_t h;
	uint64_t bpos;       /* its file position */
	size_t total;        /* its bytes */
	const uint8_t *data; /* its bytes in buf (when read whole) */
	uint32_t crc_computed;
	const char *why; /* static text for BAD / TORN */
	bool bad_offsets; /* BAD by sp_log_batch_offsets_bad */
	int err_no;
	/* offset checks (sp_log_scan_offsets): off until turned on */
	bool offsets;
	uint64_t passed; /* the offset after the last batch returned */
	uint64_t hi;     /* batches' offsets must stay below this */
} sp_log_scan_t;

/** Start at pos with limit (the readable bytes). SPATE_OK or SPATE_ERR_NOMEM. */
int sp_log_scan_init(sp_log_scan_t *s, int fd, uint64_t pos, uint64_t limit);
void sp_log_scan_free(sp_log_scan_t *s);
/** The next batch. With whole, the batch's bytes are read (s->data) and, with crc, its
 *  CRC checked; without whole only the header is. On SP_LOG_SCAN_BATCH the scanner
 *  advances past the batch; otherwise it stays at the problem (s->bpos). */
int sp_log_scan_next(sp_log_scan_t *s, bool whole, bool crc);
/** Move to pos (a batch boundary found some other way). With offset checks on, the
 *  caller says what `passed` is there (sp_log_scan_offsets). */
void sp_log_scan_seek(sp_log_scan_t *s, uint64_t pos);
/**
 * Turn on the reader's offset checks (sp_log_batch_offsets_bad) for the batches from the
 * scanner's position on: passed is the offset after the batch before it (the segment's
 * base at its start), hi the bound of the segment's offsets (UINT64_MAX: none). A batch
 * that fails them is SP_LOG_SCAN_BAD with bad_offsets set; a batch that leaves a gap
 * costs a look at the next header. sp_log_scan_resync then also wants offsets below hi.
 */
void sp_log_scan_offsets(sp_log_scan_t *s, uint64_t passed, uint64_t hi);
/**
 * Search for the next valid batch (sane header, magic 2, CRC match, base offset >=
 * min_offset, and with offset checks on, offsets below hi) starting after the bad batch
 * at `from`. 1 and *found when there is one before the limit, 0 when none,
 * SP_LOG_SCAN_IO on a read error.
 */
int sp_log_scan_resync(sp_log_scan_t *s, uint64_t from, int64_t min_offset, uint64_t *found);

/** fsync a directory by path or fd (SPATE_OK or SPATE_ERR_IO naming it). */
int sp_log_fsync_dir(int dirfd, const char *path, char *errstr, size_t size);

/* ---- writer (writer.c), producer (producer.c) ------------------------------------------ */

/** Writer settings (sp_log_wopts_from_conf fills them from segment.bytes, flush.ms,
 *  flush.records, compression, compression.level). */
typedef struct sp_log_wopts {
	uint64_t segment_bytes; /* roll past this size */
	int64_t flush_ms;       /* fsync at least this often; 0 = at every append call */
	int64_t flush_records;  /* fsync after this many records; 0 = off */
	size_t batch_bytes;     /* close a batch at this size (its records uncompressed); 0 =
	                         * SP_LOG_BATCH_BYTES */
	int codec;              /* SP_LOG_CODEC_*: each batch's records compressed with it */
	int64_t level;          /* compression.level: -1 = the codec's Kafka default */
	sp_engine_t *eng;       /* for sp_log; may be NULL */
} sp_log_wopts_t;

/** Default target size of a batch the writer builds: big enough to amortize the
 *  header and CRC, small enough that the reader's carry headroom holds a split one. */
#define SP_LOG_BATCH_BYTES ((size_t)64 << 10)

void sp_log_wopts_default(sp_log_wopts_t *o);
void sp_log_wopts_from_conf(sp_log_wopts_t *o, const spate_conf_t *conf);
/** Check the codec and level together: SPATE_OK or SPATE_ERR_INVALID naming the key. */
int sp_log_wopts_check(const sp_log_wopts_t *o, char *errstr, size_t size);

typedef struct sp_log_writer sp_log_writer_t;

/**
 * Open partition `partition` of the log at dir for writing (SPATE_ERR_INVALID for a bad
 * codec or level, sp_log_wopts_check): take the flock on its folder
 * (SPATE_ERR_BUSY when another writer holds it), truncate a torn tail of the last segment
 * (keeping every complete batch before it; corruption with valid data after it is
 * logged with file and byte offset and left alone), rebuild that segment's index, and
 * publish the durable length. When that differs from what was published (a writer
 * killed with batches not yet fsync'd, segments copied in), the segments from the
 * published one on, the last one's index and the folder are fsync'd first, so nothing is
 * published that a power loss can take back. SPATE_ERR_IO naming the file when an
 * fdatasync fails.
 * @locality any thread; one thread at a time per writer
 */
int sp_log_writer_open(const char *dir, int partition, const sp_log_wopts_t *o, sp_log_writer_t **out,
                       char *errstr, size_t size);
/** Add one record (ts = its timestamp; 0 in r is replaced by the caller). Full batches
 *  are written to the segment (not fsync'd). *offset gets the record's offset when not
 *  NULL. */
int sp_log_writer_put(sp_log_writer_t *w, const spate_push_record_t *r, int64_t ts, uint64_t *offset,
                      char *errstr, size_t size);
/** Write the open batch, fsync, publish the durable length. */
int sp_log_writer_flush(sp_log_writer_t *w, char *errstr, size_t size);
/** A sync in two steps, for group commit (many callers, one fdatasync): begin writes the
 *  open batch and notes what a sync makes durable (with a duplicate of the segment's fd);
 *  the caller runs fdatasync(t->fd) without the writer's lock (when t->fd >= 0), then end
 *  publishes the durable length unless a later one was published meanwhile (a roll).
 *  Both under the caller's lock of the writer; end always closes t->fd. */
typedef struct sp_log_wsync {
	int fd;
	uint64_t seg, len, next;
} sp_log_wsync_t;
int sp_log_writer_sync_begin(sp_log_writer_t *w, sp_log_wsync_t *t, char *errstr, size_t size);
/** sync_errno: what fdatasync set (0 when it succeeded or was not needed). */
int sp_log_writer_sync_end(sp_log_writer_t *w, sp_log_wsync_t *t, int sync_errno, char *errstr, size_t size);
/** Close the open batch: write it to the segment without fsync (the next record starts
 *  a new batch). Not durable until a flush. */
int sp_log_writer_end_batch(sp_log_writer_t *w, char *errstr, size_t size);
/** Flush when the policy says so (flush.ms elapsed, flush.records reached, or flush.ms
 *  = 0 and something is pending). */
int sp_log_writer_maybe_flush(sp_log_writer_t *w, int64_t now_ms, char *errstr, size_t size);
/** Milliseconds until a time-based flush is due; -1 when nothing is pending. */
int64_t sp_log_writer_flush_due(const sp_log_writer_t *w, int64_t now_ms);
/** put every record (timestamp 0 = now) then maybe_flush. */
int sp_log_writer_append(sp_log_writer_t *w, const spate_push_record_t *recs, size_t n, char *errstr,
                         size_t size);
/** The next offset to be assigned, and what is published durable. */
uint64_t sp_log_writer_next_offset(const sp_log_writer_t *w);
void sp_log_writer_durable(const sp_log_writer_t *w, sp_log_durable_t *d);
/** Bytes truncated at open (the torn tail); for tests and logs. */
uint64_t sp_log_writer_truncated(const sp_log_writer_t *w);
/** Flush, close and unlock. Returns the flush's result (the writer is freed anyway). */
int sp_log_writer_close(sp_log_writer_t *w, char *errstr, size_t size);

typedef struct sp_log_producer sp_log_producer_t;

/** Open the log at dir for appending, creating it with create_partitions partitions when
 *  missing (create_partitions <= 0: it must exist). Partition writers open lazily; the
 *  options are checked here (sp_log_wopts_check). */
int sp_log_producer_open(const char *dir, int create_partitions, const sp_log_wopts_t *o,
                         sp_log_producer_t **out, char *errstr, size_t size);
int sp_log_producer_partitions(const sp_log_producer_t *p);
/** The partition a key goes to: XXH3_64bits(key) % partitions; keyless: round robin. */
int sp_log_producer_pick(sp_log_producer_t *p, const void *key, size_t key_len, bool keyless);
/** Append n records (timestamp 0 = now) to `partition`, or by key when partition < 0,
 *  then apply the flush policy to the partitions touched. */
int sp_log_producer_send(sp_log_producer_t *p, const spate_push_record_t *recs, size_t n, int partition,
                         char *errstr, size_t size);
/** Flush every open partition. */
int sp_log_producer_flush(sp_log_producer_t *p, char *errstr, size_t size);
/** Apply the time-based policy; returns ms until the next flush is due (-1 none). */
int64_t sp_log_producer_tick(sp_log_producer_t *p, char *errstr, size_t size, int *err);
/** Flush and close everything. */
int sp_log_producer_close(sp_log_producer_t *p, char *errstr, size_t size);

/* ---- locating (locate.c) ----------------------------------------------------------- */

/** In the segment at seg_base (fd, limit readable bytes, its offsets below hi): the file
 *  position of the batch holding target (the first whose last offset >= target; the limit
 *  when none does, or a bad batch's position, which reading then reports), found from the
 *  index and a walk of batch headers with the reader's offset checks. *lo gets the offset
 *  after the batch before it (the lowest base offset it may have: the reader's `passed`),
 *  *steps the headers walked. SPATE_OK or SPATE_ERR_NOMEM. */
int sp_log_locate(const char *pdir, uint64_t seg_base, int fd, uint64_t limit, uint64_t hi, uint64_t target,
                  uint64_t *pos, uint64_t *lo, uint64_t *steps);
/** The offset of the first record with timestamp >= ts among what d says is durable
 *  (segments segs), or d->next when there is none. A bad batch on the way (header, offsets,
 *  CRC) ends the search at the offset where it starts: reading from there meets it. */
int sp_log_find_ts(const char *pdir, const sp_log_durable_t *d, const sp_log_seglist_t *segs, int64_t ts,
                   uint64_t *offset, char *errstr, size_t size);
/** The offset of the last durable record (skipping trailing control batches and offsets
 *  compaction removed); *has=false when there is none. When a bad batch (header, offsets,
 *  CRC) is in the way, the bound of that segment's offsets less one (the durable next
 *  offset - 1 in the segment being written): an end that is never before the bad batch
 *  and never made up by a bad baseOffset. */
int sp_log_last_record(const char *pdir, const sp_log_durable_t *d, const sp_log_seglist_t *segs, bool *has,
                       uint64_t *last, char *errstr, size_t size);

/* ---- reader (reader.c, reader_open.c) ------------------------------------------------ */

/** About this many bytes per read. */
#define SP_LOG_READ_BYTES ((size_t)1 << 20)
/** The smallest read a compressed log's reads are sized down to (reader.c: read_size). */
#define SP_LOG_READ_MIN_BYTES ((size_t)64 << 10)
/** Reads in flight per partition. */
#define SP_LOG_READS_IN_FLIGHT 2
/** Room in front of each read buffer for the tail of the previous read (a batch split by
 *  the read boundary); a longer tail re-reads from the batch's start instead. */
#define SP_LOG_READ_HEADROOM ((size_t)256 << 10)
/** log.read.direct=true: O_DIRECT reads start and end at multiples of this many bytes of
 *  the file and of memory (the logical block size of every disk Linux reads directly). */
#define SP_LOG_DIRECT_ALIGN ((size_t)4096)

/* ---- parsing a read buffer (parse.c) ------------------------------------------------- */

enum sp_log_parse_stop {
	SP_LOG_PARSE_MORE = 0,        /* parsed to the end of the bytes (maybe a partial batch left),
	                               * or up to a compressed batch the next chunk takes */
	SP_LOG_PARSE_CORRUPT = 1,     /* a bad batch at `used` (why says how; also damaged compressed
	                               * records, or more than SP_LOG_MAX_DECOMPRESSED_BYTES) */
	SP_LOG_PARSE_UNSUPPORTED = 2, /* a batch at `used` that cannot be decoded and is not corrupt:
	                               * err says why (SPATE_ERR_UNSUPPORTED: codec 5..7 or no dec;
	                               * SPATE_ERR_NOMEM), why how; h is its header */
	SP_LOG_PARSE_END = 3          /* past `end`: nothing more to deliver */
};

/** One parse of a buffer: what goes in, what comes out. */
typedef struct sp_log_parse {
	/* in */
	uint64_t from; /* records before this offset are skipped */
	bool has_end;
	uint64_t end;    /* records after this offset are skipped */
	uint64_t passed; /* in and out: the offset after the last batch parsed (the lowest base
	                  * offset the next batch may have) */
	uint64_t hi;     /* batches' offsets must stay below this (UINT64_MAX: unknown) */
	uint64_t more;   /* readable bytes of the segment after the data (for a lookahead) */
	bool fast;       /* count whole in-range batches from their headers; fill validates */
	int64_t redrive_ms; /* > 0: a DLQ redrive: drop spate.* headers, stamp this time */
	sp_log_dec_t *dec;  /* where compressed batches' records are decompressed (the read
	                     * buffer's arena, sp_log_pool_dec); NULL: they stop the parse */
	bool headers_only;  /* the decode stage's pre-scan (reader_decode.c): walk batch
	                     * headers only (no CRC, no decompression, no record), counting
	                     * whole batches; a batch not delivered whole sets edge and stops */
	/* out */
	size_t used;         /* bytes of complete, valid batches from the start */
	size_t need;         /* bytes from `used` the next batch needs (0: none begun) */
	uint32_t nrec, nhdr; /* records to deliver, and their headers */
	uint64_t next;       /* `from` after them */
	int stop;            /* enum sp_log_parse_stop */
	int err;             /* with SP_LOG_PARSE_UNSUPPORTED: the spate_err_t */
	const char *why;
	char why_buf[224];   /* where why points when it names a compressed batch */
	bool bad_offsets;     /* CORRUPT by sp_log_batch_offsets_bad (h says which) */
	bool edge;            /* headers_only: stopped at a batch partly before `from`, partly
	                       * after `end`, or with no records: parse it exactly */
	sp_log_batch_hdr_t h; /* the header at `used` when stop is CORRUPT/UNSUPPORTED */
} sp_log_parse_t;

/** Validate and count the complete batches of data[0..len) (ps's in-fields set),
 *  decompressing compressed ones into ps->dec. Needs no file: a fuzzer may call it (and
 *  sp_log_parse_fill) on any buffer. */
void sp_log_parse_scan(const uint8_t *data, size_t len, sp_log_parse_t *ps);
/** Fill c (ps->nrec records, ps->nhdr headers) from what sp_log_parse_scan accepted.
 *  Returns 0, or -1 after a fast scan when a record fails its framing or has headers (c
 *  has no room for them): then scan again with fast=false, which reports it exactly. */
int sp_log_parse_fill(const uint8_t *data, const sp_log_parse_t *ps, sp_chunk_t *c);

/* ---- read buffers (bufpool.c) -------------------------------------------------------- */

/** Bytes of a full-size read buffer: headroom for a carried batch tail, then the read. */
#define SP_LOG_POOL_BUF_BYTES (SP_LOG_READ_HEADROOM + SP_LOG_READ_BYTES)

typedef struct sp_log_pool sp_log_pool_t;

/** A pool with one reference (the caller's). NULL when out of memory. */
sp_log_pool_t *sp_log_pool_new(void);
/** Hand the pool n registered buffers of SP_LOG_POOL_BUF_BYTES at mem (one allocation,
 *  which the pool frees). */
int sp_log_pool_adopt(sp_log_pool_t *pl, uint8_t *mem, size_t n);
size_t sp_log_pool_registered(const sp_log_pool_t *pl);
/** A buffer of cap bytes; *reg gets its registered index, or -1. Takes a reference.
 *  NULL when out of memory. @locality any thread */
uint8_t *sp_log_pool_get(sp_log_pool_t *pl, size_t cap, int *reg);
/** Give a buffer back (its decode arena forgets its batches); drops its reference.
 *  @locality any thread */
void sp_log_pool_put(sp_log_pool_t *pl, uint8_t *b);
/** The decode arena of buffer b (from sp_log_pool_get): what a parse of b decompresses
 *  goes there and lives as long as b. Never NULL. @locality the thread that holds b */
sp_log_dec_t *sp_log_pool_dec(sp_log_pool_t *pl, uint8_t *b);
/** Drop the caller's reference; the pool goes with its last one. */
void sp_log_pool_unref(sp_log_pool_t *pl);
/** The chunk release callback (opaque = the pool): gives chunk->buf back.
 *  @locality the engine's tracker thread, any time, also after the reader closed */
void sp_log_pool_chunk_release(sp_chunk_t *c, void *opaque);

/** What the reader reports when log.on.corruption=skip skips a bad region. */
typedef struct sp_log_corrupt_info {
	int partition;
	const char *file;      /* the segment file */
	uint64_t byte;         /* where the bad region starts */
	uint64_t bytes;        /* its length */
	uint64_t first_offset; /* offsets the region may have held (first..last, approximate) */
	uint64_t last_offset;
	const char *why;
} sp_log_corrupt_info_t;

typedef void (*sp_log_corrupt_fn)(void *opaque, const sp_log_corrupt_info_t *info);
/** Make a chunk for n records and hdr_cap headers of partition p (the engine's
 *  sp_chunk_new, or a test's own); NULL when out of memory. */
typedef sp_chunk_t *(*sp_log_chunk_alloc_fn)(void *opaque, sp_part_t *p, uint32_t n, uint32_t hdr_cap);
/** Free a chunk that was never handed out (its buffer is released before). */
typedef void (*sp_log_chunk_free_fn)(void *opaque, sp_chunk_t *c);
/** Make a record-less chunk of partition p that moves its checkpoint to offset `to` (the
 *  engine's sp_chunk_skip); NULL when out of memory. */
typedef sp_chunk_t *(*sp_log_skip_fn)(void *opaque, sp_part_t *p, uint64_t to);

typedef struct sp_log_ropts {
	bool skip_corrupt; /* log.on.corruption=skip */
	bool no_uring;     /* use pread (also when SPATE_LOG_NO_URING=1 is in the environment) */
	bool redrive;      /* reading a DLQ back: drop spate.* headers, timestamps = now */
	bool direct;       /* log.read.direct: segments read with O_DIRECT (not via the page cache) */
	/* log.decode.threads: threads that check CRCs, decompress and fill descriptors (the
	 * decode stage, reader_decode.c); 0: the thread that polls does it; < 0: one per core */
	int decode_threads;
	/* log.decode.min.bytes: with the stage, a read of fewer bytes is parsed by the thread
	 * that polls when none of its partition's reads is in the stage (a tailing reader's
	 * small reads skip two thread hand-offs); 0: every read goes to the stage */
	size_t decode_min_bytes;
	sp_log_chunk_alloc_fn alloc;
	sp_log_chunk_free_fn free;
	/* may be NULL: then nothing moves a checkpoint over offsets that hold no record (a
	 * skipped region, the tail after the last record before a stop.at.end end) */
	sp_log_skip_fn skip;
	void *alloc_opaque;
	sp_log_corrupt_fn on_corrupt; /* may be NULL */
	void *corrupt_opaque;
	sp_engine_t *eng; /* for sp_log; may be NULL */
} sp_log_ropts_t;

typedef struct sp_log_reader sp_log_reader_t;

/** Open the log at dir for reading every partition (none is read until seeked). Watches
 *  each partition folder with inotify. Never changes a file. */
int sp_log_reader_open(const char *dir, const sp_log_ropts_t *o, sp_log_reader_t **out, char *errstr,
                       size_t size);
int sp_log_reader_partitions(const sp_log_reader_t *r);
/** The engine partition chunks of partition i belong to. */
void sp_log_reader_bind(sp_log_reader_t *r, int i, sp_part_t *p);
/** Lease mode: partition i is no longer worked here (its lease was lost or given up):
 *  its reads and parsed chunks are dropped and it reads nothing until bound and sought
 *  again. Nothing happens when i is bound to another partition than part by now. */
void sp_log_reader_unbind(sp_log_reader_t *r, int i, const sp_part_t *part);
/** Re-read partition i's durable file: *start = its first offset, *next = the offset
 *  after its last durable record. */
int sp_log_reader_bounds(sp_log_reader_t *r, int i, uint64_t *start, uint64_t *next, char *errstr,
                         size_t size);
/** Read partition i from offset (start <= offset <= next, else SPATE_ERR_OUT_OF_RANGE
 *  naming the partition and the range). Drops whatever was read before. */
int sp_log_reader_seek(sp_log_reader_t *r, int i, uint64_t offset, char *errstr, size_t size);
/** The offset of the first record of partition i with timestamp >= ts, or next when
 *  none (scans batch headers). */
int sp_log_reader_find_ts(sp_log_reader_t *r, int i, int64_t ts, uint64_t *offset, char *errstr, size_t size);
/** The offset of partition i's last durable record (skipping trailing control batches
 *  and offsets compaction removed): *has=false when it holds none. For stop.at.end. */
int sp_log_reader_last_record(sp_log_reader_t *r, int i, bool *has, uint64_t *last, char *errstr,
                              size_t size);
/** Deliver partition i only up to last (stop.at.end); has_end=false: nothing. The durable
 *  length as it is now is noted too: reading never goes past it (whatever the offsets
 *  say), and once there, or past last, the partition is done and (with ropts.skip) a
 *  record-less chunk moves its checkpoint to last. */
void sp_log_reader_set_end(sp_log_reader_t *r, int i, bool has_end, uint64_t last);
/**
 * Up to max parsed chunks into out, their bytes summed at most budget_bytes; 0 when
 * nothing is ready; a negative spate_err_t (message in errstr) on a partition error:
 * SPATE_ERR_CORRUPT (file and byte offset named), SPATE_ERR_UNSUPPORTED (a compressed
 * batch, codec named), SPATE_ERR_IO. Never blocks.
 */
int sp_log_reader_poll(sp_log_reader_t *r, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
                       size_t size);
/** An fd that is readable when poll has something to do (an epoll fd). */
int sp_log_reader_fd(const sp_log_reader_t *r);
/** Records between what was delivered and the durable end, all partitions. */
int64_t sp_log_reader_lag(const sp_log_reader_t *r);
/** Partition i's share of sp_log_reader_lag (-1: no such partition). */
int64_t sp_log_reader_part_lag(const sp_log_reader_t *r, int i);
/** The next offset partition i delivers. */
uint64_t sp_log_reader_next(const sp_log_reader_t *r, int i);
/** True when every partition with an end (set_end) was delivered up to it (including the
 *  record-less chunk that moves its checkpoint there). */
bool sp_log_reader_ended(const sp_log_reader_t *r);
bool sp_log_reader_uses_uring(const sp_log_reader_t *r);
/** Bad regions skipped so far (log.on.corruption=skip). */
uint64_t sp_log_reader_skipped(const sp_log_reader_t *r);

/** I/O counters, for tests and debugging. */
typedef struct sp_log_reader_stats {
	uint64_t reads;       /* reads issued (a resubmitted short read counts again) */
	uint64_t fixed_reads; /* of them into registered buffers (READ_FIXED) */
	uint64_t short_reads; /* short reads resubmitted for the rest */
	uint64_t decoded;     /* chunks the decode threads decoded (log.decode.threads) */
	uint64_t parsed_here; /* reads the polling thread parsed itself (no stage, or smaller
	                       * than decode_min_bytes, the end of a file, a pre-scan refused) */
	uint64_t decode_redo; /* of reads a decode thread found different from their pre-scan
	                       * (corruption, ...): parsed again on the engine thread */
	size_t registered;    /* registered buffers */
} sp_log_reader_stats_t;

void sp_log_reader_stats(const sp_log_reader_t *r, sp_log_reader_stats_t *st);
/** Batch headers walked by the last seek of partition i (to show the index was used). */
uint64_t sp_log_reader_seek_steps(const sp_log_reader_t *r, int i);
void sp_log_reader_close(sp_log_reader_t *r);

/* ---- verify (verify.c), used by `spate log verify` and the tests ---------------------- */

typedef struct sp_log_verify_stats {
	uint64_t segments, batches, records, bytes;
	/* by codec (attributes & 7: none, gzip, snappy, lz4, zstd, then undefined ones) */
	uint64_t codec_batches[8], codec_records[8];
	uint64_t decompressed; /* bytes the compressed batches' records decompressed to */
	uint64_t torn_tail;    /* bytes past the durable length in a partial batch */
} sp_log_verify_stats_t;

/** Check every batch of partition i (CRC, header, offsets) and every record of it
 *  (compressed batches decompressed; framing, headers, offsets). SPATE_OK, or
 *  SPATE_ERR_CORRUPT with errstr naming the file and byte offset of the first bad batch
 *  (SPATE_ERR_IO, SPATE_ERR_NOMEM). */
int sp_log_verify_partition(const char *dir, int partition, sp_log_verify_stats_t *st, char *errstr,
                            size_t size);

/** One partition's result of sp_log_verify_log. */
typedef struct sp_log_verify_part {
	int partition;
	int rc; /* sp_log_verify_partition's */
	char err[1024];
	sp_log_verify_stats_t st;
} sp_log_verify_part_t;

/** Verify partitions first..first+count-1 on up to `threads` threads (the caller's among
 *  them), out[k] for partition first+k. Returns the threads that ran. */
int sp_log_verify_log(const char *dir, int first, int count, int threads, sp_log_verify_part_t *out);

/* ---- the durable push (lpush.c) ---------------------------------------------------------- */

typedef struct sp_log_push sp_log_push_t;

/** Open the writers of the nparts partitions of the log at dir for durable pushes;
 *  max_lag bounds the records a partition holds durable but not yet read. */
int sp_log_push_open(const char *dir, int nparts, const sp_log_wopts_t *wo, uint64_t max_lag, sp_engine_t *eng,
                     sp_log_push_t **out, char *errstr, size_t size);
void sp_log_push_free(sp_log_push_t *lp);
/** Append records to partition part and return once they are durable (group commit):
 *  the number taken (positions[i] their offsets when not NULL; 0 when the partition's lag
 *  bound took none), or a negative error. @locality any thread */
int sp_log_push(sp_log_push_t *lp, int32_t part, const spate_push_record_t *recs, size_t cnt,
                spate_position_t *positions);
/** The reader's next offset to deliver of partition part (the lag's other end).
 *  @locality the engine thread */
void sp_log_push_delivered(sp_log_push_t *lp, int part, uint64_t next);
void sp_log_push_close_input(sp_log_push_t *lp);
bool sp_log_push_closed(const sp_log_push_t *lp);
/** Whether the reader delivered every record pushed so far (each partition's next
 *  delivery offset, as sp_log_push_delivered last set it, is past the last record
 *  appended). The reader's own lag is not enough: it learns of a new durable length
 *  through inotify, after the push that made it has returned. @locality the engine thread */
bool sp_log_push_all_delivered(sp_log_push_t *lp);
/** Push calls and fdatasync calls so far (group commit's effect; tests). */
void sp_log_push_counts(const sp_log_push_t *lp, uint64_t *calls, uint64_t *syncs);

#endif /* SPATE_CONNECTORS_LOG_H */
