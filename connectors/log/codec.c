/* codec.c - the codecs of compressed RecordBatches: gzip, snappy, lz4 and zstd.
 *
 * A RecordBatch v2 names its codec in attributes bits 0-2 (1 gzip, 2 snappy, 3 lz4,
 * 4 zstd). Only the records section is compressed, as one stream: the 61-byte header stays
 * as it is (its records count is the count of records inside), and the CRC covers the
 * compressed bytes. The streams are those Kafka's clients write:
 *
 *  - gzip: RFC 1952 (Java's GZIPOutputStream, librdkafka's deflate with a gzip wrapper);
 *    zlib reads it (and a zlib wrapper, and members back to back).
 *  - snappy: Java's producer writes snappy-java's "xerial" framing: a 16-byte header
 *    (0x82 "SNAPPY" 0x00, version and compatible version as int32) and then blocks, each an
 *    int32 big-endian length and a raw snappy block of at most 32 KiB of input;
 *    librdkafka writes one raw snappy block. Both are read; this code writes the xerial
 *    form (what Java and kafka-python write, and what every reader takes).
 *  - lz4: the LZ4 frame format (Kafka since 0.10: magic v1 fixed the header checksum),
 *    frames back to back read as one; written as Java's producer writes it: 64 KiB
 *    independent blocks, no content size, no checksums beyond the header's.
 *  - zstd: zstd frames, back to back read as one; written with the content size.
 *
 * Decompression goes into a decode arena (sp_log_dec_t, see log.h): the records of the
 * compressed batches of one read buffer back to back in one block that grows (realloc)
 * and is kept for the arena's next use, so in the steady state a batch costs its
 * decompression and nothing else. A batch says, or its codec tells early, how big its
 * records are where it can (snappy's length preamble, the summed xerial blocks, a zstd
 * or lz4 frame's content size): a size past the limit is refused before anything is
 * allocated, and a stream that does not say is decompressed into at most the limit plus
 * one byte. Everything that goes wrong names the batch's offsets and codec.
 *
 * Compression (the writer) keeps its contexts and output buffer between batches.
 */
#include "log.h"

#include <inttypes.h>
#include <lz4frame.h>
#include <stdarg.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* The first block of an arena; it doubles as needed. */
#define DEC_MIN_BYTES ((size_t)256 << 10)
/* Entries of an arena's batch table at first. */
#define DEC_MIN_ENTRIES 64
/* A stream that does not say how big it is gets room for this many times its size at
 * first (typical ratios are 2-5). */
#define DEC_GUESS_RATIO 4
/* The xerial framing's header: 0x82 "SNAPPY" 0x00, then version and compatible version. */
#define XERIAL_HEADER 16
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
/* Input of one xerial block, as snappy-java writes them (its default block size). */
#define XERIAL_BLOCK ((size_t)32 << 10)
/* The LZ4 frame magic number, little-endian. */
#define LZ4_FRAME_MAGIC 0x184D2204u
/* Kafka's default levels (KIP-390): gzip -1 is zlib's default (6). */
#define GZIP_DEFAULT_LEVEL Z_DEFAULT_COMPRESSION
#define LZ4_DEFAULT_LEVEL  9
#define ZSTD_DEFAULT_LEVEL 3
#define LZ4_MAX_LEVEL      17
#define ZSTD_MIN_LEVEL     (-131072)
#define ZSTD_MAX_LEVEL     22

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int sp_log_codec_parse(const char *name)
{
	for (int c = 0; c <= SP_LOG_CODEC_ZSTD; c++)
		if (!strcmp(name, sp_log_codec_name(c)))
			return c;
	return -1;
}

int sp_log_codec_level(int codec, int64_t level, int *resolved, char *errstr, size_t size)
{
	switch (codec) {
	case SP_LOG_CODEC_GZIP:
		if (level == -1 || (level >= 1 && level <= 9)) {
			*resolved = level == -1 ? GZIP_DEFAULT_LEVEL : (int)level;
			return SPATE_OK;
		}
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "compression.level: %" PRId64 " is not a gzip level (1..9, -1: the default, 6)",
		              level);
	case SP_LOG_CODEC_LZ4:
		if (level == -1 || (level >= 1 && level <= LZ4_MAX_LEVEL)) {
			*resolved = level == -1 ? LZ4_DEFAULT_LEVEL : (int)level;
			return SPATE_OK;
		}
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "compression.level: %" PRId64
		              " is not an lz4 level (1..%d, -1: the default, %d)",
		              level, LZ4_MAX_LEVEL, LZ4_DEFAULT_LEVEL);
	case SP_LOG_CODEC_ZSTD:
		if (level >= ZSTD_MIN_LEVEL && level <= ZSTD_MAX_LEVEL) {
			*resolved = level == -1 ? ZSTD_DEFAULT_LEVEL : (int)level;
			return SPATE_OK;
		}
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "compression.level: %" PRId64
		              " is not a zstd level (%d..%d, -1: the default, %d)",
		              level, ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL, ZSTD_DEFAULT_LEVEL);
	case SP_LOG_CODEC_NONE:
	case SP_LOG_CODEC_SNAPPY:
		if (level == -1) {
			*resolved = 0;
			return SPATE_OK;
		}
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "compression.level: compression=%s takes no level (only -1)",
		              sp_log_codec_name(codec));
	default:
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "compression: codec %d is not none, gzip, snappy, "
		              "lz4 or zstd",
		              codec);
	}
}

/* ---- the decode arena ---------------------------------------------------------------- */

void sp_log_dec_init(sp_log_dec_t *d)
{
	memset(d, 0, sizeof(*d));
}

void sp_log_dec_free(sp_log_dec_t *d)
{
	if (d->gz) {
		inflateEnd(d->gz);
		free(d->gz);
	}
	ZSTD_freeDCtx(d->zstd);
	LZ4F_freeDecompressionContext(d->lz4);
	free(d->mem);
	free(d->ent);
	free(d->hdrs);
	memset(d, 0, sizeof(*d));
}

void sp_log_dec_reset(sp_log_dec_t *d)
{
	d->used = d->n = d->cursor = 0;
}

void sp_log_dec_rewind(sp_log_dec_t *d)
{
	d->cursor = 0;
}

void sp_log_dec_trim(sp_log_dec_t *d, size_t keep)
{
	sp_log_dec_reset(d);
	if (d->cap > keep) {
		free(d->mem);
		d->mem = NULL;
		d->cap = 0;
	}
}

size_t sp_log_dec_bytes(const sp_log_dec_t *d)
{
	return d->cap;
}

size_t sp_log_dec_used(const sp_log_dec_t *d)
{
	return d->used;
}

bool sp_log_dec_cached(const sp_log_dec_t *d, const uint8_t *batch)
{
	return d->cursor < d->n && d->ent[d->cursor].src == batch;
}

/* Room for want more bytes after what the arena holds. 0 or -1 (out of memory). */
static int dec_reserve(sp_log_dec_t *d, size_t want)
{
	if (d->cap - d->used >= want)
		return 0;
	size_t cap = d->cap ? d->cap : DEC_MIN_BYTES;
	while (cap - d->used < want)
		cap *= 2;
	uint8_t *m = realloc(d->mem, cap);
	if (!m)
		return -1;
	d->mem = m;
	d->cap = cap;
	return 0;
}

/* A batch being decompressed: what it may grow to and where it failed. */
typedef struct job {
	sp_log_dec_t *d;
	const sp_log_batch_hdr_t *h;
	const uint8_t *src;
	size_t slen;
	size_t limit; /* the most bytes its records may have */
	size_t out;   /* bytes written after d->used */
	char *why;
	size_t why_size;
} job_t;

static int job_fail(job_t *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int job_fail(job_t *j, int rc, const char *fmt, ...)
{
	char msg[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(j->why, j->why_size, "the batch of offsets %" PRId64 "..%" PRId64 " (%s): %s",
	         j->h->base_offset, sp_log_batch_last(j->h), sp_log_codec_name(sp_log_batch_codec(j->h)),
	         msg);
	return rc;
}

static int job_bomb(job_t *j, const char *what, uint64_t bytes)
{
	if (bytes)
		return job_fail(j, SPATE_ERR_CORRUPT,
		                "its records %s %" PRIu64 " bytes, more than the limit of %zu "
		                "(SP_LOG_MAX_DECOMPRESSED_BYTES; a decompression bomb?)",
		                what, bytes, j->limit);
	return job_fail(j, SPATE_ERR_CORRUPT,
	                "its records decompress to more than the limit of %zu bytes "
	                "(SP_LOG_MAX_DECOMPRESSED_BYTES; a decompression bomb?)",
	                j->limit);
}

/* Room after j->out for a streaming codec: the output window, grown (about doubling,
 * from hint) but never past limit + 1 bytes in all (the extra byte shows a stream that
 * goes on past the limit). 0 when the window is at that bound; -1 out of memory. */
static ssize_t job_room(job_t *j, size_t hint)
{
	sp_log_dec_t *d = j->d;
	size_t bound = j->limit + 1, have = d->cap - d->used;
	if (have > bound)
		have = bound;
	if (have > j->out)
		return (ssize_t)(have - j->out);
	if (j->out >= bound)
		return 0;
	size_t want = j->out ? j->out * 2 : (hint ? hint : DEC_MIN_BYTES);
	if (want > bound)
		want = bound;
	if (want <= j->out)
		want = j->out + 1;
	if (dec_reserve(d, want) < 0)
		return -1;
	have = d->cap - d->used;
	if (have > bound)
		have = bound;
	return (ssize_t)(have - j->out);
}

static uint8_t *job_dst(job_t *j)
{
	return j->d->mem + j->d->used + j->out;
}

/* A size guess for a stream that does not say (bounded by the limit). */
static size_t guess(const job_t *j, uint64_t said)
{
	uint64_t g = said ? said : (uint64_t)j->slen * DEC_GUESS_RATIO;
	if (g < 64)
		g = 64;
	return g > j->limit ? j->limit + 1 : (size_t)g;
}

static int dec_gzip(job_t *j)
{
	sp_log_dec_t *d = j->d;
	z_stream *zs = d->gz;
	if (!zs) {
		if (!(zs = calloc(1, sizeof(*zs))))
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory");
		/* 15 + 32: a gzip or a zlib wrapper, detected */
		if (inflateInit2(zs, 15 + 32) != Z_OK) {
			free(zs);
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory for zlib");
		}
		d->gz = zs;
	} else {
		inflateReset(zs);
	}
	/* gzip's trailer says the size modulo 2^32: a hint only */
	uint32_t isize = j->slen >= 18 ? le32(j->src + j->slen - 4) : 0;
	zs->next_in = (Bytef *)(uintptr_t)j->src;
	zs->avail_in = (uInt)j->slen;
	for (;;) {
		ssize_t room = job_room(j, guess(j, isize));
		if (room < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory");
		if (room == 0)
			return job_bomb(j, "decompress to", 0);
		zs->next_out = job_dst(j);
		zs->avail_out = room > UINT32_MAX ? UINT32_MAX : (uInt)room;
		uInt before = zs->avail_out;
		int rc = inflate(zs, Z_NO_FLUSH);
		j->out += before - zs->avail_out;
		if (j->out > j->limit)
			return job_bomb(j, "decompress to", 0);
		if (rc == Z_STREAM_END) {
			if (zs->avail_in == 0)
				return SPATE_OK;
			inflateReset(zs); /* another member follows */
			continue;
		}
		if (rc == Z_BUF_ERROR && zs->avail_out > 0)
			return job_fail(j, SPATE_ERR_CORRUPT, "its gzip stream ends early");
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return job_fail(j, rc == Z_MEM_ERROR ? SPATE_ERR_NOMEM : SPATE_ERR_CORRUPT,
			                "its gzip stream is damaged (%s)", zs->msg ? zs->msg : zError(rc));
	}
}

/* The uncompressed length of a raw snappy block, checked against what is left. */
static int snappy_len(job_t *j, const uint8_t *p, size_t n, size_t *len)
{
	if (snappy_uncompressed_length((const char *)p, n, len) != SNAPPY_OK)
		return job_fail(j, SPATE_ERR_CORRUPT, "its snappy data is damaged (no length preamble)");
	return SPATE_OK;
}

static int snappy_block(job_t *j, const uint8_t *p, size_t n, size_t len)
{
	size_t got = len;
	if (snappy_uncompress((const char *)p, n, (char *)job_dst(j), &got) != SNAPPY_OK || got != len)
		return job_fail(j, SPATE_ERR_CORRUPT, "its snappy data is damaged");
	j->out += len;
	return SPATE_OK;
}

static int dec_snappy(job_t *j)
{
	size_t len;
	int rc;
	if (j->slen < XERIAL_HEADER || memcmp(j->src, xerial_magic, sizeof(xerial_magic))) {
		/* one raw block: its preamble says its size */
		if ((rc = snappy_len(j, j->src, j->slen, &len)))
			return rc;
		if (len > j->limit)
			return job_bomb(j, "say they hold", len);
		if (dec_reserve(j->d, len) < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory for %zu bytes", len);
		return snappy_block(j, j->src, j->slen, len);
	}
	/* xerial: sum the blocks' sizes first, then decompress them back to back */
	const uint8_t *end = j->src + j->slen;
	uint64_t total = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (const uint8_t *p = j->src + XERIAL_HEADER; p < end;) {
			if (end - p < 4 || (int32_t)be32(p) < 0 || be32(p) > (size_t)(end - p - 4))
				return job_fail(
				    j, SPATE_ERR_CORRUPT,
				    "its xerial snappy framing is damaged at byte %zu of the records",
				    (size_t)(p - j->src));
			size_t n = be32(p);
			p += 4;
			if ((rc = snappy_len(j, p, n, &len)))
				return rc;
			if (pass == 0) {
				total += len;
				if (total > j->limit)
					return job_bomb(j, "say they hold at least", total);
			} else if ((rc = snappy_block(j, p, n, len))) {
				return rc;
			}
			p += n;
		}
		if (pass == 0 && dec_reserve(j->d, (size_t)total) < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory for %" PRIu64 " bytes", total);
	}
	return SPATE_OK;
}

/* An LZ4 frame's content size when its header says it (0 when not, or no frame). */
static uint64_t lz4_content_size(const uint8_t *p, size_t n)
{
	if (n < 15 || le32(p) != LZ4_FRAME_MAGIC || !(p[4] & 0x08))
		return 0;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[6 + i];
	return v;
}

static int dec_lz4(job_t *j)
{
	sp_log_dec_t *d = j->d;
	LZ4F_dctx *z = d->lz4;
	if (!z) {
		if (LZ4F_isError(LZ4F_createDecompressionContext(&z, LZ4F_VERSION)))
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory for an lz4 context");
		d->lz4 = z;
	}
	LZ4F_resetDecompressionContext(z);
	uint64_t said = lz4_content_size(j->src, j->slen);
	if (said > j->limit)
		return job_bomb(j, "say they hold", said);
	size_t in = 0;
	for (;;) {
		ssize_t room = job_room(j, guess(j, said));
		if (room < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory");
		if (room == 0)
			return job_bomb(j, "decompress to", 0);
		size_t isz = j->slen - in, osz = (size_t)room;
		size_t r = LZ4F_decompress(z, job_dst(j), &osz, j->src + in, &isz, NULL);
		if (LZ4F_isError(r))
			return job_fail(j, SPATE_ERR_CORRUPT, "its lz4 frame is damaged (%s)",
			                LZ4F_getErrorName(r));
		in += isz;
		j->out += osz;
		if (j->out > j->limit)
			return job_bomb(j, "decompress to", 0);
		if (r == 0 && in == j->slen)
			return SPATE_OK; /* the last frame is complete */
		if ((in == j->slen && osz < (size_t)room) || (isz == 0 && osz == 0))
			return job_fail(j, SPATE_ERR_CORRUPT, "its lz4 frame ends early");
		/* else: another frame follows, or the output window is full */
	}
}

static int dec_zstd(job_t *j)
{
	sp_log_dec_t *d = j->d;
	if (!d->zstd && !(d->zstd = ZSTD_createDCtx()))
		return job_fail(j, SPATE_ERR_NOMEM, "out of memory for a zstd context");
	ZSTD_DCtx *z = d->zstd;
	unsigned long long fcs = ZSTD_getFrameContentSize(j->src, j->slen);
	if (fcs == ZSTD_CONTENTSIZE_ERROR)
		return job_fail(j, SPATE_ERR_CORRUPT, "its records are not a zstd frame");
	bool known = fcs != ZSTD_CONTENTSIZE_UNKNOWN;
	if (known && fcs > j->limit)
		return job_bomb(j, "say they hold", fcs);
	if (known && ZSTD_findFrameCompressedSize(j->src, j->slen) == j->slen) {
		/* one frame that says its size: straight into the arena */
		if (dec_reserve(d, (size_t)fcs) < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory for %llu bytes", fcs);
		size_t r = ZSTD_decompressDCtx(z, job_dst(j), (size_t)fcs, j->src, j->slen);
		if (ZSTD_isError(r) || r != fcs)
			return job_fail(j, SPATE_ERR_CORRUPT, "its zstd frame is damaged (%s)",
			                ZSTD_isError(r) ? ZSTD_getErrorName(r) : "shorter than it says");
		j->out = r;
		return SPATE_OK;
	}
	ZSTD_DCtx_reset(z, ZSTD_reset_session_only);
	ZSTD_inBuffer in = {j->src, j->slen, 0};
	for (;;) {
		ssize_t room = job_room(j, guess(j, known ? fcs : 0));
		if (room < 0)
			return job_fail(j, SPATE_ERR_NOMEM, "out of memory");
		if (room == 0)
			return job_bomb(j, "decompress to", 0);
		ZSTD_outBuffer ob = {job_dst(j), (size_t)room, 0};
		size_t before = in.pos;
		size_t r = ZSTD_decompressStream(z, &ob, &in);
		if (ZSTD_isError(r))
			return job_fail(j, SPATE_ERR_CORRUPT, "its zstd stream is damaged (%s)",
			                ZSTD_getErrorName(r));
		j->out += ob.pos;
		if (j->out > j->limit)
			return job_bomb(j, "decompress to", 0);
		if (r == 0 && in.pos == in.size)
			return SPATE_OK;
		if (in.pos == in.size && ob.pos < ob.size)
			return job_fail(j, SPATE_ERR_CORRUPT, "its zstd stream ends early");
		if (ob.pos == 0 && in.pos == before)
			return job_fail(j, SPATE_ERR_CORRUPT, "its zstd stream makes no progress");
	}
}

int sp_log_dec_batch(sp_log_dec_t *d, const uint8_t *batch, size_t total, const sp_log_batch_hdr_t *h,
                     const uint8_t **recs, size_t *len, char *why, size_t why_size)
{
	int codec = sp_log_batch_codec(h);
	if (codec == SP_LOG_CODEC_NONE) {
		*recs = batch + SP_LOG_BATCH_HEADER;
		*len = total - SP_LOG_BATCH_HEADER;
		return SPATE_OK;
	}
	if (sp_log_dec_cached(d, batch)) {
		const sp_log_dec_ent_t *e = &d->ent[d->cursor++];
		*recs = d->mem + e->off;
		*len = e->len;
		return SPATE_OK;
	}
	/* a walk that went another way than the last one: forget from here on */
	d->n = d->cursor;
	d->used = d->n ? d->ent[d->n - 1].off + d->ent[d->n - 1].len : 0;
	job_t j = {d,
	           h,
	           batch + SP_LOG_BATCH_HEADER,
	           total - SP_LOG_BATCH_HEADER,
	           d->limit ? d->limit : SP_LOG_MAX_DECOMPRESSED_BYTES,
	           0,
	           why,
	           why_size};
	if (dec_reserve(d, 1) < 0) /* a block to point into, also for empty records */
		return job_fail(&j, SPATE_ERR_NOMEM, "out of memory");
	if (d->n == d->ent_cap) {
		size_t cap = d->ent_cap ? d->ent_cap * 2 : DEC_MIN_ENTRIES;
		sp_log_dec_ent_t *ne = realloc(d->ent, cap * sizeof(*ne));
		if (!ne)
			return job_fail(&j, SPATE_ERR_NOMEM, "out of memory");
		d->ent = ne;
		d->ent_cap = cap;
	}
	int rc;
	switch (codec) {
	case SP_LOG_CODEC_GZIP:
		rc = dec_gzip(&j);
		break;
	case SP_LOG_CODEC_SNAPPY:
		rc = dec_snappy(&j);
		break;
	case SP_LOG_CODEC_LZ4:
		rc = dec_lz4(&j);
		break;
	case SP_LOG_CODEC_ZSTD:
		rc = dec_zstd(&j);
		break;
	default:
		rc = job_fail(&j, SPATE_ERR_UNSUPPORTED, "codec %d is not one Kafka defines", codec);
		break;
	}
	if (rc == SPATE_OK && (size_t)h->count * SP_LOG_MIN_RECORD_BYTES > j.out)
		rc = job_fail(&j, SPATE_ERR_CORRUPT,
		              "its %d records cannot fit the %zu bytes they decompress to", h->count, j.out);
	if (rc)
		return rc;
	sp_log_dec_ent_t *e = &d->ent[d->n++];
	e->src = batch;
	e->off = d->used;
	e->len = j.out;
	d->used += j.out;
	d->cursor = d->n;
	*recs = d->mem + e->off;
	*len = e->len;
	return SPATE_OK;
}

/* ---- compression --------------------------------------------------------------------- */

struct sp_log_comp {
	int codec, level;
	uint8_t *buf; /* the finished batch: header, then the compressed records */
	size_t cap;
	z_stream *gz;
	ZSTD_CCtx *zstd;
	LZ4F_cctx *lz4;
};

/* Kafka's lz4 frames: 64 KiB independent blocks, no content size, no checksums. */
static void lz4_prefs(const sp_log_comp_t *c, LZ4F_preferences_t *p)
{
	memset(p, 0, sizeof(*p));
	p->frameInfo.blockSizeID = LZ4F_max64KB;
	p->frameInfo.blockMode = LZ4F_blockIndependent;
	/* Kafka's level 1 is lz4's fast compressor; liblz4 takes 0 for it */
	p->compressionLevel = c->level <= 1 ? 0 : c->level;
}

int sp_log_comp_new(int codec, int64_t level, sp_log_comp_t **out, char *errstr, size_t size)
{
	int lv, rc = sp_log_codec_level(codec, level, &lv, errstr, size);
	if (rc)
		return rc;
	sp_log_comp_t *c = calloc(1, sizeof(*c));
	if (!c)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	c->codec = codec;
	c->level = lv;
	bool ok = true;
	if (codec == SP_LOG_CODEC_GZIP) {
		/* 15 + 16: a gzip wrapper, as Java's GZIPOutputStream writes */
		ok = (c->gz = calloc(1, sizeof(*c->gz))) &&
		     deflateInit2(c->gz, lv, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
		if (!ok) {
			free(c->gz);
			c->gz = NULL;
		}
	} else if (codec == SP_LOG_CODEC_ZSTD) {
		ok = (c->zstd = ZSTD_createCCtx()) != NULL;
	} else if (codec == SP_LOG_CODEC_LZ4) {
		ok = !LZ4F_isError(LZ4F_createCompressionContext(&c->lz4, LZ4F_VERSION));
	}
	if (!ok) {
		sp_log_comp_free(c);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory for a %s compressor",
		              sp_log_codec_name(codec));
	}
	*out = c;
	return SPATE_OK;
}

void sp_log_comp_free(sp_log_comp_t *c)
{
	if (!c)
		return;
	if (c->gz) {
		deflateEnd(c->gz);
		free(c->gz);
	}
	ZSTD_freeCCtx(c->zstd);
	LZ4F_freeCompressionContext(c->lz4);
	free(c->buf);
	free(c);
}

/* The most bytes src_len bytes compress to. */
static size_t comp_bound(sp_log_comp_t *c, size_t n)
{
	LZ4F_preferences_t p;
	switch (c->codec) {
	case SP_LOG_CODEC_GZIP:
		return deflateBound(c->gz, (uLong)n);
	case SP_LOG_CODEC_SNAPPY:
		return XERIAL_HEADER +
		       (n / XERIAL_BLOCK + 1) * (4 + snappy_max_compressed_length(XERIAL_BLOCK));
	case SP_LOG_CODEC_LZ4:
		lz4_prefs(c, &p);
		return LZ4F_compressFrameBound(n, &p);
	default:
		return ZSTD_compressBound(n);
	}
}

/* Compress src into dst (cap bytes, at least comp_bound): SPATE_OK and *out. */
static int comp_records(sp_log_comp_t *c, const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out,
                        char *errstr, size_t size)
{
	switch (c->codec) {
	case SP_LOG_CODEC_GZIP: {
		deflateReset(c->gz);
		c->gz->next_in = (Bytef *)(uintptr_t)src;
		c->gz->avail_in = (uInt)n;
		c->gz->next_out = dst;
		c->gz->avail_out = (uInt)cap;
		int rc = deflate(c->gz, Z_FINISH);
		if (rc != Z_STREAM_END)
			return sp_err(errstr, size, SPATE_ERR_IO, "gzip: deflate failed (%s)", zError(rc));
		*out = c->gz->total_out;
		return SPATE_OK;
	}
	case SP_LOG_CODEC_SNAPPY: {
		uint8_t *p = dst;
		memcpy(p, xerial_magic, sizeof(xerial_magic));
		put_be32(p + 8, 1);  /* version */
		put_be32(p + 12, 1); /* the oldest version that reads it */
		p += XERIAL_HEADER;
		for (size_t off = 0; off < n; off += XERIAL_BLOCK) {
			size_t in = n - off < XERIAL_BLOCK ? n - off : XERIAL_BLOCK;
			size_t z = (size_t)(dst + cap - p - 4);
			if (snappy_compress((const char *)src + off, in, (char *)p + 4, &z) != SNAPPY_OK)
				return sp_err(errstr, size, SPATE_ERR_IO, "snappy: compression failed");
			put_be32(p, (uint32_t)z);
			p += 4 + z;
		}
		*out = (size_t)(p - dst);
		return SPATE_OK;
	}
	case SP_LOG_CODEC_LZ4: {
		LZ4F_preferences_t pr;
		lz4_prefs(c, &pr);
		size_t h = LZ4F_compressBegin(c->lz4, dst, cap, &pr), u = 0, e = 0;
		if (!LZ4F_isError(h))
			u = LZ4F_compressUpdate(c->lz4, dst + h, cap - h, src, n, NULL);
		if (!LZ4F_isError(h) && !LZ4F_isError(u))
			e = LZ4F_compressEnd(c->lz4, dst + h + u, cap - h - u, NULL);
		size_t bad = LZ4F_isError(h) ? h : LZ4F_isError(u) ? u : e;
		if (LZ4F_isError(bad))
			return sp_err(errstr, size, SPATE_ERR_IO, "lz4: %s", LZ4F_getErrorName(bad));
		*out = h + u + e;
		return SPATE_OK;
	}
	default: {
		size_t r = ZSTD_compressCCtx(c->zstd, dst, cap, src, n, c->level);
		if (ZSTD_isError(r))
			return sp_err(errstr, size, SPATE_ERR_IO, "zstd: %s", ZSTD_getErrorName(r));
		*out = r;
		return SPATE_OK;
	}
	}
}

int sp_log_comp_batch(sp_log_comp_t *c, sp_log_enc_t *e, const uint8_t **out, size_t *len, char *errstr,
                      size_t size)
{
	const uint8_t *recs = e->buf + SP_LOG_BATCH_HEADER;
	size_t n = e->len - SP_LOG_BATCH_HEADER;
	if (c->codec == SP_LOG_CODEC_NONE) {
		*len = sp_log_enc_finish(e);
		*out = e->buf;
		return SPATE_OK;
	}
	size_t need = SP_LOG_BATCH_HEADER + comp_bound(c, n);
	if (need > c->cap) {
		uint8_t *nb = realloc(c->buf, need);
		if (!nb)
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		c->buf = nb;
		c->cap = need;
	}
	size_t z = 0;
	int rc = comp_records(c, recs, n, c->buf + SP_LOG_BATCH_HEADER, c->cap - SP_LOG_BATCH_HEADER, &z,
	                      errstr, size);
	if (rc)
		return rc;
	if (z >= n) { /* compression did not help: the batch goes uncompressed */
		*len = sp_log_enc_finish(e);
		*out = e->buf;
		return SPATE_OK;
	}
	sp_log_enc_seal(e, c->buf, SP_LOG_BATCH_HEADER + z, c->codec);
	*out = c->buf;
	*len = SP_LOG_BATCH_HEADER + z;
	return SPATE_OK;
}
