/* test_log_codec.c - tests of connectors/log/codec.c and the compressed paths around it.
 *
 * - the writer's compression=/compression.level: every codec at several levels, read back
 *   by the reader field by field, counted by verify under its codec;
 * - framings other producers write (librdkafka's raw snappy, linked lz4 blocks with
 *   checksums and a content size, several lz4 and zstd frames, zstd without a content
 *   size, gzip members back to back, a zlib wrapper), mixed in one segment;
 * - the decompression bomb limit, per codec, on a buffer (the decode entry point fuzzers
 *   call) with the arena's limit lowered, and at the real limit through `spate run` with
 *   log.on.corruption=fail (file, byte, batch named) and skip (a Corrupt DLQ entry);
 * - the parse budget: one read whose batches decompress to more than
 *   SP_LOG_DEC_PARSE_BYTES becomes several chunks, each counting its arena in its bytes;
 * - damaged compressed bytes with a valid CRC: corruption, never a crash.
 */
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <poll.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define TS0 1700000000000LL

static const char *const codec_names[] = {"none", "gzip", "snappy", "lz4", "zstd"};

/* ---- building batches by hand -------------------------------------------------------- */

/* How a test batch's records are compressed. */
enum framing {
	F_SPATE,          /* sp_log_comp_batch (the writer's) */
	F_SNAPPY_RAW,     /* one raw snappy block (librdkafka) */
	F_LZ4_LINKED,     /* linked blocks, content size, content and block checksums */
	F_LZ4_TWO_FRAMES, /* two frames back to back */
	F_ZSTD_NO_SIZE,   /* no content size in the frame header */
	F_ZSTD_TWO_FRAMES,
	F_GZIP_TWO_MEMBERS,
	F_ZLIB, /* a zlib wrapper instead of gzip's */
};

typedef struct buf {
	uint8_t *p;
	size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void lz4_frame(buf_t *out, const uint8_t *src, size_t n, const LZ4F_preferences_t *pr)
{
	size_t cap = LZ4F_compressFrameBound(n, pr);
	uint8_t *z = malloc(cap);
	size_t r = LZ4F_compressFrame(z, cap, src, n, pr);
	cr_assert(!LZ4F_isError(r), "%s", LZ4F_getErrorName(r));
	buf_put(out, z, r);
	free(z);
}

static void zstd_frame(buf_t *out, const uint8_t *src, size_t n, bool size)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size ? 1 : 0);
	size_t cap = ZSTD_compressBound(n);
	uint8_t *z = malloc(cap);
	ZSTD_outBuffer ob = {z, cap, 0};
	ZSTD_inBuffer ib = {src, n, 0};
	cr_assert_eq(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end), 0);
	buf_put(out, z, ob.pos);
	free(z);
	ZSTD_freeCCtx(c);
}

static void deflate_to(buf_t *out, const uint8_t *src, size_t n, int wbits)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	cr_assert_eq(deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&zs, n);
	uint8_t *z = malloc(cap);
	zs.next_in = (Bytef *)src;
	zs.avail_in = (uInt)n;
	zs.next_out = z;
	zs.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
	buf_put(out, z, zs.total_out);
	deflateEnd(&zs);
	free(z);
}

/* Compress the records section recs[0..n) as f says into out (codec: what attributes say). */
static int compress_as(enum framing f, const uint8_t *recs, size_t n, buf_t *out)
{
	LZ4F_preferences_t pr;
	memset(&pr, 0, sizeof(pr));
	size_t half = n / 2;
	switch (f) {
	case F_SNAPPY_RAW: {
		size_t cap = snappy_max_compressed_length(n);
		uint8_t *z = malloc(cap);
		cr_assert_eq(snappy_compress((const char *)recs, n, (char *)z, &cap), SNAPPY_OK);
		buf_put(out, z, cap);
		free(z);
		return SP_LOG_CODEC_SNAPPY;
	}
	case F_LZ4_LINKED:
		pr.frameInfo.blockMode = LZ4F_blockLinked;
		pr.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
		pr.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
		pr.frameInfo.contentSize = n;
		lz4_frame(out, recs, n, &pr);
		return SP_LOG_CODEC_LZ4;
	case F_LZ4_TWO_FRAMES:
		lz4_frame(out, recs, half, &pr);
		lz4_frame(out, recs + half, n - half, &pr);
		return SP_LOG_CODEC_LZ4;
	case F_ZSTD_NO_SIZE:
		zstd_frame(out, recs, n, false);
		return SP_LOG_CODEC_ZSTD;
	case F_ZSTD_TWO_FRAMES:
		zstd_frame(out, recs, half, true);
		zstd_frame(out, recs + half, n - half, false);
		return SP_LOG_CODEC_ZSTD;
	case F_GZIP_TWO_MEMBERS:
		deflate_to(out, recs, half, 15 + 16);
		deflate_to(out, recs + half, n - half, 15 + 16);
		return SP_LOG_CODEC_GZIP;
	case F_ZLIB:
		deflate_to(out, recs, n, 15);
		return SP_LOG_CODEC_GZIP;
	default:
		cr_assert_fail("framing %d", f);
		return -1;
	}
}

/* A batch of records first..first+n-1 (lt_make_text) at base offset base, compressed as f
 * (F_SPATE: with codec at Kafka's default level), appended to seg. */
static void add_batch(buf_t *seg, uint64_t base, uint64_t first, int n, enum framing f, int codec)
{
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	for (int k = 0; k < n; k++) {
		spate_push_record_t r;
		lt_make_text(first + (uint64_t)k, 0, &r);
		if (k == 0)
			sp_log_enc_begin(&e, (int64_t)base, r.timestamp_ms);
		cr_assert_eq(sp_log_enc_add(&e, &r, r.timestamp_ms), SPATE_OK);
	}
	if (f == F_SPATE) {
		sp_log_comp_t *c;
		char err[256];
		cr_assert_eq(sp_log_comp_new(codec, -1, &c, err, sizeof(err)), SPATE_OK, "%s", err);
		const uint8_t *out;
		size_t len;
		cr_assert_eq(sp_log_comp_batch(c, &e, &out, &len, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(out[22] & 7, codec, "the batch is compressed with %s", codec_names[codec]);
		buf_put(seg, out, len);
		sp_log_comp_free(c);
	} else {
		buf_t z = {0};
		buf_put(&z, e.buf, SP_LOG_BATCH_HEADER);
		int cd = compress_as(f, e.buf + SP_LOG_BATCH_HEADER, e.len - SP_LOG_BATCH_HEADER, &z);
		sp_log_enc_seal(&e, z.p, z.len, cd);
		buf_put(seg, z.p, z.len);
		free(z.p);
	}
	sp_log_enc_free(&e);
}

/* A one-partition log at dir holding seg as its first segment, published by a writer. */
static void write_log(const char *dir, const buf_t *seg)
{
	char err[1024], path[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	lt_seg(path, sizeof(path), dir, 0, 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, seg->p, seg->len), (ssize_t)seg->len);
	close(fd);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_truncated(w), 0, "the writer keeps every batch");
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
}

/* ---- the writer's codecs and levels --------------------------------------------------- */

/* Every codec at the levels that change its code path, through the writer (several
 * batches, two segments), read back field by field; verify counts them under the codec. */
Test(log_codec, writer_codecs_and_levels_read_back)
{
	static const struct {
		int codec;
		int level;
	} cases[] = {{SP_LOG_CODEC_NONE, -1}, {SP_LOG_CODEC_GZIP, -1},   {SP_LOG_CODEC_GZIP, 1},
	             {SP_LOG_CODEC_GZIP, 9},  {SP_LOG_CODEC_SNAPPY, -1}, {SP_LOG_CODEC_LZ4, -1},
	             {SP_LOG_CODEC_LZ4, 1},   {SP_LOG_CODEC_LZ4, 17},    {SP_LOG_CODEC_ZSTD, -1},
	             {SP_LOG_CODEC_ZSTD, 1},  {SP_LOG_CODEC_ZSTD, 19},   {SP_LOG_CODEC_ZSTD, -5}};
	enum { N = 3000 };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *dir = lt_mkdtemp(), err[1024];
		sp_log_wopts_t o;
		lt_wopts(&o, 32 << 10, 16 << 10);
		o.codec = cases[c].codec;
		o.level = cases[c].level;
		sp_log_producer_t *p;
		cr_assert_eq(sp_log_producer_open(dir, 1, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
		for (uint64_t i = 0; i < N; i++) {
			spate_push_record_t r;
			lt_make_text(i, 0, &r);
			cr_assert_eq(sp_log_producer_send(p, &r, 1, 0, err, sizeof(err)), SPATE_OK, "%s",
			             err);
		}
		cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
		lt_recs_t recs = {0};
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s: %s",
		             codec_names[cases[c].codec], err);
		cr_assert_eq(recs.n, N);
		for (uint64_t i = 0; i < N; i++)
			lt_check_text(&recs.v[i], i, i);
		lt_recs_free(&recs);
		/* a seek into the middle of a compressed batch delivers from there */
		cr_assert_eq(lt_read(dir, 0, 1234, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, N - 1234);
		lt_check_text(&recs.v[0], 1234, 1234);
		lt_recs_free(&recs);
		sp_log_verify_stats_t st = {0};
		cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_gt(st.segments, 1, "%s: rolled", codec_names[cases[c].codec]);
		cr_assert_eq(st.records, N);
		cr_assert_eq(st.codec_records[cases[c].codec], N, "%s level %d: every batch compressed",
		             codec_names[cases[c].codec], cases[c].level);
		cr_assert_eq(st.codec_batches[cases[c].codec], st.batches);
		if (cases[c].codec)
			cr_assert_lt(st.bytes * 2, st.decompressed, "%s compresses text at least 2:1",
			             codec_names[cases[c].codec]);
		lt_rmrf(dir);
		free(dir);
	}
}

/* Records that do not compress (random bytes) go uncompressed, as librdkafka and
 * kafka-python do it: the batch is readable either way. */
Test(log_codec, incompressible_batches_are_written_plain)
{
	char *dir = lt_mkdtemp(), err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 16 << 10);
	o.codec = SP_LOG_CODEC_LZ4;
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, 1, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	uint8_t v[1000];
	uint64_t x = 88172645463325252ULL;
	for (uint64_t i = 0; i < 500; i++) {
		for (size_t k = 0; k < sizeof(v); k++) { /* xorshift: bytes no codec shrinks */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			v[k] = (uint8_t)x;
		}
		spate_push_record_t r = {.value = v, .value_len = sizeof(v)};
		cr_assert_eq(sp_log_producer_send(p, &r, 1, 0, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_verify_stats_t st = {0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.records, 500);
	cr_assert_eq(st.codec_records[SP_LOG_CODEC_NONE], 500, "lz4 %llu",
	             (unsigned long long)st.codec_records[SP_LOG_CODEC_LZ4]);
	lt_rmrf(dir);
	free(dir);
}

Test(log_codec, levels_are_checked_naming_the_key)
{
	char err[256];
	int lv;
	struct {
		int codec;
		int64_t level;
		int ok, resolved;
	} cases[] = {
	    {SP_LOG_CODEC_GZIP, -1, 1, Z_DEFAULT_COMPRESSION},
	    {SP_LOG_CODEC_GZIP, 9, 1, 9},
	    {SP_LOG_CODEC_GZIP, 0, 0, 0},
	    {SP_LOG_CODEC_GZIP, 10, 0, 0},
	    {SP_LOG_CODEC_LZ4, -1, 1, 9},
	    {SP_LOG_CODEC_LZ4, 17, 1, 17},
	    {SP_LOG_CODEC_LZ4, 18, 0, 0},
	    {SP_LOG_CODEC_LZ4, 0, 0, 0},
	    {SP_LOG_CODEC_ZSTD, -1, 1, 3},
	    {SP_LOG_CODEC_ZSTD, 22, 1, 22},
	    {SP_LOG_CODEC_ZSTD, -131072, 1, -131072},
	    {SP_LOG_CODEC_ZSTD, 23, 0, 0},
	    {SP_LOG_CODEC_SNAPPY, -1, 1, 0},
	    {SP_LOG_CODEC_SNAPPY, 3, 0, 0},
	    {SP_LOG_CODEC_NONE, 5, 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = sp_log_codec_level(cases[i].codec, cases[i].level, &lv, err, sizeof(err));
		if (cases[i].ok) {
			cr_assert_eq(rc, SPATE_OK, "%s %lld: %s", codec_names[cases[i].codec],
			             (long long)cases[i].level, err);
			cr_assert_eq(lv, cases[i].resolved);
		} else {
			cr_assert_eq(rc, SPATE_ERR_INVALID, "%s %lld", codec_names[cases[i].codec],
			             (long long)cases[i].level);
			cr_assert(strstr(err, "compression.level"), "%s", err);
		}
	}
	/* the writer and the producer refuse them before anything is written */
	char *dir = lt_mkdtemp();
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 16 << 10);
	o.codec = SP_LOG_CODEC_GZIP;
	o.level = 12;
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, 1, &o, &p, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "compression.level: 12 is not a gzip level"), "%s", err);
	/* the keys: an unknown codec is refused when set */
	spate_conf_t *conf = spate_conf_new();
	cr_assert_eq(spate_conf_set(conf, "compression", "brotli", err, sizeof(err)), SPATE_CONF_INVALID);
	cr_assert(strstr(err, "none|gzip|snappy|lz4|zstd"), "%s", err);
	cr_assert_eq(spate_conf_set(conf, "compression.level", "23", err, sizeof(err)), SPATE_CONF_INVALID);
	cr_assert_eq(spate_conf_set(conf, "compression", "zstd", err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	cr_assert_eq(spate_conf_set(conf, "compression.level", "7", err, sizeof(err)), SPATE_CONF_OK, "%s",
	             err);
	sp_log_wopts_from_conf(&o, conf);
	cr_assert_eq(o.codec, SP_LOG_CODEC_ZSTD);
	cr_assert_eq(o.level, 7);
	spate_conf_destroy(conf);
	lt_rmrf(dir);
	free(dir);
}

/* ---- framings of other producers ------------------------------------------------------ */

/* One segment with a batch in every framing (and the writer's own, and an uncompressed
 * one): every record read back, field by field, by the reader and verify. */
Test(log_codec, other_producers_framings_in_one_segment)
{
	static const struct {
		enum framing f;
		int codec;
	} b[] = {{F_SPATE, SP_LOG_CODEC_NONE},
	         {F_SPATE, SP_LOG_CODEC_GZIP},
	         {F_SPATE, SP_LOG_CODEC_SNAPPY},
	         {F_SPATE, SP_LOG_CODEC_LZ4},
	         {F_SPATE, SP_LOG_CODEC_ZSTD},
	         {F_SNAPPY_RAW, 0},
	         {F_LZ4_LINKED, 0},
	         {F_LZ4_TWO_FRAMES, 0},
	         {F_ZSTD_NO_SIZE, 0},
	         {F_ZSTD_TWO_FRAMES, 0},
	         {F_GZIP_TWO_MEMBERS, 0},
	         {F_ZLIB, 0}};
	enum { PER = 150 };
	size_t nb = sizeof(b) / sizeof(b[0]);
	buf_t seg = {0};
	for (size_t k = 0; k < nb; k++)
		add_batch(&seg, k * PER, k * PER, PER, b[k].f, b[k].codec);
	char *dir = lt_mkdtemp(), err[1024];
	write_log(dir, &seg);
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, nb * PER);
	for (uint64_t i = 0; i < nb * PER; i++)
		lt_check_text(&recs.v[i], i, i);
	lt_recs_free(&recs);
	sp_log_verify_stats_t st = {0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.records, nb * PER);
	uint64_t want[5] = {1, 3, 2, 3, 3};
	for (int c = 0; c < 5; c++)
		cr_assert_eq(st.codec_batches[c], want[c], "%s: %llu batches", codec_names[c],
		             (unsigned long long)st.codec_batches[c]);
	free(seg.p);
	lt_rmrf(dir);
	free(dir);
}

/* ---- the bomb limit -------------------------------------------------------------------- */

/* A batch of one record whose value is `bytes` bytes of 'a', compressed as f. */
static void bomb_batch(buf_t *out, size_t bytes, enum framing f, int codec)
{
	uint8_t *v = malloc(bytes);
	memset(v, 'a', bytes);
	spate_push_record_t r = {.value = v, .value_len = bytes};
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	sp_log_enc_begin(&e, 10, TS0);
	cr_assert_eq(sp_log_enc_add(&e, &r, TS0), SPATE_OK);
	free(v);
	if (f == F_SPATE) {
		sp_log_comp_t *c;
		char err[256];
		cr_assert_eq(sp_log_comp_new(codec, -1, &c, err, sizeof(err)), SPATE_OK);
		const uint8_t *o;
		size_t len;
		cr_assert_eq(sp_log_comp_batch(c, &e, &o, &len, err, sizeof(err)), SPATE_OK);
		buf_put(out, o, len);
		sp_log_comp_free(c);
	} else {
		buf_t z = {0};
		buf_put(&z, e.buf, SP_LOG_BATCH_HEADER);
		int cd = compress_as(f, e.buf + SP_LOG_BATCH_HEADER, e.len - SP_LOG_BATCH_HEADER, &z);
		sp_log_enc_seal(&e, z.p, z.len, cd);
		buf_put(out, z.p, z.len);
		free(z.p);
	}
	sp_log_enc_free(&e);
}

/* On a bare buffer (what a fuzzer calls): a batch one byte under the arena's limit
 * decodes, one over it is corrupt naming the batch and the limit, whether the stream
 * says its size (raw snappy, xerial, a zstd or lz4 frame with a content size: refused
 * before anything is allocated) or not (gzip, lz4 and zstd streams: the arena never
 * grows past the limit and a byte). */
Test(log_codec, bomb_limit_per_codec_on_a_buffer)
{
	static const struct {
		enum framing f;
		int codec;
		bool says;
	} cases[] = {{F_SPATE, SP_LOG_CODEC_GZIP, false},  {F_ZLIB, 0, false},
	             {F_SPATE, SP_LOG_CODEC_SNAPPY, true}, {F_SNAPPY_RAW, 0, true},
	             {F_SPATE, SP_LOG_CODEC_LZ4, false},   {F_LZ4_LINKED, 0, true},
	             {F_SPATE, SP_LOG_CODEC_ZSTD, true},   {F_ZSTD_NO_SIZE, 0, false},
	             {F_ZSTD_TWO_FRAMES, 0, false}};
	const size_t limit = (size_t)1 << 20;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int over = 0; over < 2; over++) {
			/* the record's framing takes a few bytes beyond its value */
			buf_t b = {0};
			bomb_batch(&b, over ? limit : limit - 64, cases[c].f, cases[c].codec);
			sp_log_batch_hdr_t h;
			size_t total;
			cr_assert_eq(sp_log_batch_header(b.p, b.len, &h, &total, NULL), SP_LOG_HDR_OK);
			cr_assert(sp_log_batch_crc_ok(b.p, total, NULL));
			cr_assert_neq(sp_log_batch_codec(&h), 0);
			sp_log_dec_t d;
			sp_log_dec_init(&d);
			d.limit = limit;
			const uint8_t *recs;
			size_t len;
			char why[256] = "";
			int rc = sp_log_dec_batch(&d, b.p, total, &h, &recs, &len, why, sizeof(why));
			if (!over) {
				cr_assert_eq(rc, SPATE_OK, "case %zu: %s", c, why);
				cr_assert_gt(len, limit - 64);
			} else {
				cr_assert_eq(rc, SPATE_ERR_CORRUPT, "case %zu (%s): rc %d", c,
				             codec_names[sp_log_batch_codec(&h)], rc);
				cr_assert(strstr(why, "limit of 1048576"), "%s", why);
				cr_assert(strstr(why, "offsets 10..10"), "names the batch: %s", why);
				cr_assert(strstr(why, codec_names[sp_log_batch_codec(&h)]),
				          "names the codec: %s", why);
				if (cases[c].says)
					cr_assert_leq(sp_log_dec_bytes(&d), (size_t)256 << 10,
					              "case %zu: refused before it was allocated (%zu)", c,
					              sp_log_dec_bytes(&d));
				else
					cr_assert_leq(sp_log_dec_bytes(&d), 2 * limit, "case %zu: %zu", c,
					              sp_log_dec_bytes(&d));
			}
			sp_log_dec_free(&d);
			free(b.p);
		}
	}
}

/* A zstd frame that says it holds `size` bytes of 'a' in RLE blocks (a real bomb: a few
 * bytes per 128 KiB). */
static void zstd_rle_bomb(buf_t *out, uint64_t size)
{
	const uint8_t head[] = {0x28,
	                        0xb5,
	                        0x2f,
	                        0xfd, /* magic */
	                        0xa0, /* 4-byte content size, single segment */
	                        (uint8_t)size,
	                        (uint8_t)(size >> 8),
	                        (uint8_t)(size >> 16),
	                        (uint8_t)(size >> 24)};
	buf_put(out, head, sizeof(head));
	for (uint64_t left = size; left > 0;) {
		uint32_t n = left > (128 << 10) ? (128 << 10) : (uint32_t)left;
		left -= n;
		uint32_t bh = (n << 3) | (1u << 1) | (left == 0); /* size, RLE, last */
		uint8_t blk[4] = {(uint8_t)bh, (uint8_t)(bh >> 8), (uint8_t)(bh >> 16), 'a'};
		buf_put(out, blk, sizeof(blk));
	}
}

/* A log of three batches: 0..9 plain, 10..19 a zstd batch whose frame says 300 MiB (over
 * SP_LOG_MAX_DECOMPRESSED_BYTES), 20..29 lz4. fail: the run stops naming the file, the
 * byte and the batch; skip: the batch is skipped, a Corrupt DLQ entry names it, every
 * other record is handled. */
Test(log_codec, bomb_in_a_log_fail_and_skip)
{
	buf_t seg = {0};
	add_batch(&seg, 0, 0, 10, F_SPATE, SP_LOG_CODEC_NONE);
	size_t bomb_at = seg.len;
	{
		sp_log_enc_t e;
		sp_log_enc_init(&e);
		spate_push_record_t r;
		sp_log_enc_begin(&e, 10, TS0);
		for (int k = 0; k < 10; k++) {
			lt_make_text(10 + (uint64_t)k, 0, &r);
			cr_assert_eq(sp_log_enc_add(&e, &r, TS0), SPATE_OK);
		}
		buf_t z = {0};
		buf_put(&z, e.buf, SP_LOG_BATCH_HEADER);
		zstd_rle_bomb(&z, (uint64_t)300 << 20);
		sp_log_enc_seal(&e, z.p, z.len, SP_LOG_CODEC_ZSTD);
		buf_put(&seg, z.p, z.len);
		free(z.p);
		sp_log_enc_free(&e);
	}
	size_t bomb_end = seg.len;
	add_batch(&seg, 20, 20, 10, F_SPATE, SP_LOG_CODEC_LZ4);
	char *root = lt_mkdtemp(), dir[300], pos[64], src[400], err_path[400], out_path[400], dlq[400],
	     jr[400];
	snprintf(dir, sizeof(dir), "%s/L", root);
	write_log(dir, &seg);
	snprintf(src, sizeof(src), "source=log:%s", dir);
	snprintf(err_path, sizeof(err_path), "%s/err", root);
	snprintf(out_path, sizeof(out_path), "%s/out", root);

	char *fail_argv[] = {(char *)t_spate_cli(),
	                     "run",
	                     "-X",
	                     src,
	                     "-X",
	                     "stop.at.end=true",
	                     "-X",
	                     "handler=noop",
	                     "-X",
	                     "store=none",
	                     "-X",
	                     "log.on.corruption=fail",
	                     NULL};
	int st;
	int pid = t_spawn(fail_argv, out_path, err_path, 0);
	cr_assert_eq(t_wait_exit(pid, 60000, &st), 0);
	cr_assert_eq(st, 1);
	char *text = t_read_file(err_path, NULL);
	snprintf(pos, sizeof(pos), "byte %zu", bomb_at);
	cr_assert(strstr(text, "00000000000000000000.log"), "names the file: %s", text);
	cr_assert(strstr(text, pos), "names the byte: %s", text);
	cr_assert(strstr(text, "offsets 10..19 (zstd)"), "names the batch: %s", text);
	cr_assert(strstr(text, "say they hold 314572800 bytes, more than the limit of 268435456"), "%s",
	          text);
	free(text);

	snprintf(dlq, sizeof(dlq), "dlq=log:%s/dlq", root);
	snprintf(jr, sizeof(jr), "handler=journal:%s/journal", root);
	char *skip_argv[] = {(char *)t_spate_cli(),
	                     "run",
	                     "-X",
	                     src,
	                     "-X",
	                     "stop.at.end=true",
	                     "-X",
	                     jr,
	                     "-X",
	                     "store=none",
	                     "-X",
	                     "log.on.corruption=skip",
	                     "-X",
	                     dlq,
	                     NULL};
	pid = t_spawn(skip_argv, out_path, err_path, 0);
	cr_assert_eq(t_wait_exit(pid, 60000, &st), 0);
	text = t_read_file(err_path, NULL);
	cr_assert_eq(st, 0, "%s", text);
	free(text);
	/* the journal: offsets 0..9 and 20..29, once each */
	char cmd[1400];
	snprintf(cmd, sizeof(cmd), "cat %s/journal.* | awk '{print $NF}' | sort -n | tr '\\n' ' '", root);
	char *argv_sh[] = {"/bin/sh", "-c", cmd, NULL}, *jo = NULL, *je = NULL;
	cr_assert_eq(t_run(argv_sh, &jo, &je), 0, "%s", je);
	cr_assert_str_eq(jo, "0 1 2 3 4 5 6 7 8 9 20 21 22 23 24 25 26 27 28 29 ");
	free(jo);
	free(je);
	/* the DLQ: one Corrupt entry for offsets 10..19 naming the bytes */
	char dlqdir[400], where[128], e2[1024];
	snprintf(dlqdir, sizeof(dlqdir), "%s/dlq", root);
	snprintf(where, sizeof(where), "bytes %zu..%zu: ", bomb_at, bomb_end);
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dlqdir, 0, 0, &ro, &recs, e2, sizeof(e2)), SPATE_OK, "%s", e2);
	cr_assert_eq(recs.n, 1);
	bool cond = false, first = false, last = false, named = false;
	for (size_t k = 0; k < recs.v[0].hcnt; k++) {
		const spate_header_t *h = &recs.v[0].hdrs[k];
		char v[1024];
		snprintf(v, sizeof(v), "%.*s", (int)h->value_len, (const char *)h->value);
		if (h->key_len == 15 && !memcmp(h->key, "spate.condition", 15))
			cond = !strcmp(v, "Corrupt");
		if (h->key_len == 14 && !memcmp(h->key, "spate.position", 14))
			first = !strcmp(v, "10");
		if (h->key_len == 19 && !memcmp(h->key, "spate.position.last", 19))
			last = !strcmp(v, "19");
		if (h->key_len == 11 && !memcmp(h->key, "spate.error", 11))
			named = strstr(v, where) && strstr(v, "limit");
	}
	cr_assert(cond && first && last && named, "the DLQ entry is Corrupt for 10..19 naming %s", where);
	lt_recs_free(&recs);
	free(seg.p);
	lt_rmrf(root);
	free(root);
}

/* Read partition 0 of dir through a reader (decode_threads as log.decode.threads) to
 * offset last, calling each(c, arg) on every chunk in order before it is released. */
static void read_chunks(const char *dir, int decode_threads, uint64_t last,
                        void (*each)(const sp_chunk_t *c, void *arg), void *arg)
{
	char err[1024];
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	ro.decode_threads = decode_threads;
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_part_t part;
	memset(&part, 0, sizeof(part));
	sp_log_reader_bind(rd, 0, &part);
	sp_log_reader_set_end(rd, 0, true, last);
	cr_assert_eq(sp_log_reader_seek(rd, 0, 0, err, sizeof(err)), SPATE_OK, "%s", err);
	while (!sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0);
		sp_chunk_t *out[4];
		int n = sp_log_reader_poll(rd, out, 4, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		for (int i = 0; i < n; i++) {
			each(out[i], arg);
			out[i]->release(out[i], out[i]->release_opaque);
			free(out[i]);
		}
	}
	sp_log_reader_close(rd);
}

/* ---- the parse budget ------------------------------------------------------------------- */

typedef struct budget {
	size_t vbytes;
	uint64_t next;
	int chunks;
} budget_t;

static void budget_chunk(const sp_chunk_t *c, void *arg)
{
	budget_t *b = arg;
	uint64_t dec = 0;
	for (uint32_t k = 0; k < c->n; k++, b->next++) {
		const spate_record_t *r = &c->recs[k];
		cr_assert_eq(r->position.w[2], b->next);
		cr_assert_eq(r->value_len, b->vbytes);
		cr_assert_eq(((const uint8_t *)r->value)[0], 'a' + b->next);
		cr_assert_eq(((const uint8_t *)r->value)[b->vbytes - 1], 'a' + b->next);
		dec += r->value_len;
	}
	if (c->n) {
		b->chunks++;
		cr_assert_geq(c->bytes, dec, "the chunk counts its decompressed bytes");
		cr_assert_leq(dec, SP_LOG_DEC_PARSE_BYTES + b->vbytes + 4096);
	}
}

/* 24 zstd batches of one 4 MiB record each (96 MiB in all, a few KiB on disk, one read):
 * the parse stops once its arena holds SP_LOG_DEC_PARSE_BYTES, so they come in several
 * chunks, each of which counts its decompressed bytes, and every record arrives intact. */
Test(log_codec, one_read_decompressing_past_the_budget_is_several_chunks)
{
	enum { BATCHES = 24 };
	const size_t vbytes = (size_t)4 << 20;
	buf_t seg = {0};
	uint8_t *v = malloc(vbytes);
	for (int k = 0; k < BATCHES; k++) {
		memset(v, 'a' + k, vbytes);
		spate_push_record_t r = {.value = v, .value_len = vbytes};
		sp_log_enc_t e;
		sp_log_enc_init(&e);
		sp_log_enc_begin(&e, k, TS0 + k);
		cr_assert_eq(sp_log_enc_add(&e, &r, TS0 + k), SPATE_OK);
		sp_log_comp_t *c;
		char err[256];
		cr_assert_eq(sp_log_comp_new(SP_LOG_CODEC_ZSTD, -1, &c, err, sizeof(err)), SPATE_OK);
		const uint8_t *o;
		size_t len;
		cr_assert_eq(sp_log_comp_batch(c, &e, &o, &len, err, sizeof(err)), SPATE_OK);
		buf_put(&seg, o, len);
		sp_log_comp_free(c);
		sp_log_enc_free(&e);
	}
	free(v);
	cr_assert_lt(seg.len, SP_LOG_READ_BYTES, "one read holds them all");
	char *dir = lt_mkdtemp();
	write_log(dir, &seg);
	budget_t b = {.vbytes = vbytes};
	read_chunks(dir, 0, BATCHES - 1, budget_chunk, &b);
	cr_assert_eq(b.next, BATCHES);
	cr_assert_geq(b.chunks, 2, "%d chunks", b.chunks);
	free(seg.p);
	lt_rmrf(dir);
	free(dir);
}

/* ---- damaged compressed bytes ------------------------------------------------------------ */

/* Every byte of each codec's compressed records changed (the CRC recomputed, so the
 * reader's checks pass), parsed and filled from a bare buffer: a changed batch is either
 * corrupt (named), or decodes to records the fill takes; nothing crashes (ASan runs it). */
Test(log_codec, changed_compressed_bytes_are_corruption_or_records)
{
	for (int codec = 1; codec <= 4; codec++) {
		buf_t b = {0};
		add_batch(&b, 0, 0, 12, F_SPATE, codec);
		sp_log_dec_t d;
		sp_log_dec_init(&d);
		int corrupt = 0;
		for (size_t at = SP_LOG_BATCH_HEADER; at < b.len; at++) {
			uint8_t *m = malloc(b.len);
			memcpy(m, b.p, b.len);
			m[at] ^= (uint8_t)(1u << (at % 8));
			uint32_t c = sp_crc32c(m + SP_LOG_CRC_START, b.len - SP_LOG_CRC_START);
			m[17] = (uint8_t)(c >> 24);
			m[18] = (uint8_t)(c >> 16);
			m[19] = (uint8_t)(c >> 8);
			m[20] = (uint8_t)c;
			sp_log_parse_t ps = {.hi = UINT64_MAX, .dec = &d};
			sp_log_parse_scan(m, b.len, &ps);
			if (ps.stop == SP_LOG_PARSE_CORRUPT) {
				corrupt++;
				cr_assert(ps.why && *ps.why);
			} else {
				cr_assert_eq(ps.stop, SP_LOG_PARSE_MORE, "%s byte %zu: stop %d",
				             codec_names[codec], at, ps.stop);
				sp_part_t part;
				memset(&part, 0, sizeof(part));
				sp_chunk_t *ch = calloc(1, sizeof(*ch) + ps.nrec * sizeof(spate_record_t) +
				                               ps.nhdr * sizeof(spate_header_t));
				ch->part = &part;
				ch->n = ps.nrec;
				ch->recs = (spate_record_t *)(ch + 1);
				ch->hdrs = (spate_header_t *)(ch->recs + ps.nrec);
				ch->hdr_cap = ps.nhdr;
				cr_assert_eq(sp_log_parse_fill(m, &ps, ch), 0);
				free(ch);
			}
			free(m);
		}
		cr_assert_gt(corrupt, 0, "%s: some changes are corruption", codec_names[codec]);
		sp_log_dec_free(&d);
		free(b.p);
	}
}

/* ---- read sizes of a compressed log ------------------------------------------------------ */

enum {
	RS_TEXT = 60000,   /* text records (about 10:1 with zstd) before and after the big batch */
	RS_PER_BATCH = 200,
	RS_BIG = 40,       /* records of RS_BIG_BYTES random bytes: one batch that does not shrink */
	RS_BIG_BYTES = 16 << 10,
};

/* Record i's random value (RS_BIG_BYTES), the same for the writer and the check. */
static void rs_random(uint64_t i, uint8_t *v)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
	for (size_t k = 0; k < RS_BIG_BYTES; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[k] = (uint8_t)x;
	}
}

typedef struct rs {
	uint8_t *want;
	uint64_t next, most;
	int chunks;
} rs_t;

static void rs_chunk(const sp_chunk_t *c, void *arg)
{
	rs_t *x = arg;
	uint64_t bytes = 0;
	for (uint32_t k = 0; k < c->n; k++, x->next++) {
		const spate_record_t *r = &c->recs[k];
		uint64_t next = x->next;
		cr_assert_eq(r->position.w[2], next, "record %u of chunk %d", k, x->chunks);
		bytes += r->value_len + r->key_len;
		if (next >= RS_TEXT && next < RS_TEXT + RS_BIG) {
			rs_random(next, x->want);
			cr_assert_eq(r->value_len, RS_BIG_BYTES);
			cr_assert(!memcmp(r->value, x->want, RS_BIG_BYTES), "record %llu", (unsigned long long)next);
		} else {
			uint64_t t = next < RS_TEXT ? next : next - RS_BIG;
			spate_push_record_t e;
			lt_make_text(t, 0, &e);
			cr_assert_eq(r->value_len, e.value_len, "record %llu", (unsigned long long)next);
			cr_assert(!e.value_len || !memcmp(r->value, e.value, e.value_len));
		}
	}
	/* the first reads of a partition (2 in flight, 3 more in the decode stage) are sized
	 * before one says how the log expands */
	if (c->n && x->chunks++ >= 5 && bytes > x->most)
		x->most = bytes;
}

static void rs_read(const char *dir, uint64_t total, int decode_threads)
{
	rs_t x = {.want = malloc(RS_BIG_BYTES)};
	read_chunks(dir, decode_threads, total - 1, rs_chunk, &x);
	cr_assert_eq(x.next, total, "records read with log.decode.threads=%d", decode_threads);
	cr_log_info("log.decode.threads=%d: %d chunks, at most %llu bytes of records in one after the "
	            "first 5",
	            decode_threads, x.chunks, (unsigned long long)x.most);
	/* a full read (1 MiB) of this log would be a chunk of about 10 MiB of records */
	cr_assert_leq(x.most, 2 * SP_LOG_READ_BYTES,
	              "a chunk of %llu bytes of records: reads are not sized by what they decompress to",
	              (unsigned long long)x.most);
	cr_assert_gt(x.chunks, 10);
	free(x.want);
}

/* A zstd log of about 10:1 with one batch in the middle that does not compress (bigger
 * than a read sized for 10:1, smaller than a full one): the reader sizes reads by what they
 * decompress to, so a chunk holds about a full read's bytes of records (not ten times
 * that), and the big batch, cut by such a read, is read whole; every record comes back
 * once, in order, from the engine thread's parse and from the decode stage. */
Test(log_codec, a_compressed_log_is_read_in_reads_sized_by_what_they_decompress_to)
{
	buf_t seg = {0};
	uint64_t off = 0;
	for (uint64_t i = 0; i < RS_TEXT; i += RS_PER_BATCH, off += RS_PER_BATCH)
		add_batch(&seg, off, i, RS_PER_BATCH, F_SPATE, SP_LOG_CODEC_ZSTD);
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	uint8_t *v = malloc(RS_BIG_BYTES);
	for (int k = 0; k < RS_BIG; k++) {
		rs_random(off + (uint64_t)k, v);
		spate_push_record_t r = {.value = v, .value_len = RS_BIG_BYTES, .timestamp_ms = TS0};
		if (k == 0)
			sp_log_enc_begin(&e, (int64_t)off, TS0);
		cr_assert_eq(sp_log_enc_add(&e, &r, TS0), SPATE_OK);
	}
	free(v);
	buf_t z = {0};
	buf_put(&z, e.buf, SP_LOG_BATCH_HEADER);
	zstd_frame(&z, e.buf + SP_LOG_BATCH_HEADER, e.len - SP_LOG_BATCH_HEADER, true);
	sp_log_enc_seal(&e, z.p, z.len, SP_LOG_CODEC_ZSTD);
	cr_assert_gt(z.len, (size_t)600 << 10, "the big batch stays big compressed (%zu bytes)", z.len);
	buf_put(&seg, z.p, z.len);
	free(z.p);
	sp_log_enc_free(&e);
	off += RS_BIG;
	for (uint64_t i = RS_TEXT; i < 2 * RS_TEXT; i += RS_PER_BATCH, off += RS_PER_BATCH)
		add_batch(&seg, off, i, RS_PER_BATCH, F_SPATE, SP_LOG_CODEC_ZSTD);
	cr_log_info("segment: %zu bytes for %llu records", seg.len, (unsigned long long)off);
	cr_assert_gt(seg.len, 2 * SP_LOG_READ_BYTES, "several full reads of compressed bytes");
	char *dir = lt_mkdtemp();
	write_log(dir, &seg);
	rs_read(dir, off, 0);
	rs_read(dir, off, 2);
	free(seg.p);
	lt_rmrf(dir);
	free(dir);
}
