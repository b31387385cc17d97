/* test_log_format.c - tests of connectors/log/format.c: CRC32C, varints, and a golden
 * RecordBatch v2 built by hand from the Kafka protocol guide's field layout, which must
 * decode to the right records and which the encoder and the writer must reproduce
 * byte for byte. Also: batches that cannot be decompressed are reported naming their codec. */
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The golden batch: offsets 0 and 1, written by a non-transactional, non-idempotent
 * producer (producerId -1, producerEpoch -1, baseSequence -1), leader epoch 0,
 * CreateTime timestamps, no compression.
 *   record 0: key "k", value "v1", timestamp 1700000000000, no headers
 *   record 1: key "k2", value null, timestamp 1700000000005, headers h="x", n=null
 * Varints are zigzag: 0 -> 00, 1 -> 02, 2 -> 04, 5 -> 0a, -1 -> 01, 9 -> 12, 15 -> 1e.
 * The CRC (0xa0cbc6f6) was computed independently of this code, with a bitwise CRC-32C
 * (polynomial 0x82F63B78) over bytes 21..86.
 */
/* One field per line, as the protocol guide lists them. */
/* clang-format off */
static const uint8_t golden[87] = {
    /*  0 baseOffset            int64 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /*  8 batchLength           int32 = 87 - 12 = 75 */ 0x00, 0x00, 0x00, 0x4b,
    /* 12 partitionLeaderEpoch  int32 */ 0x00, 0x00, 0x00, 0x00,
    /* 16 magic                 int8  */ 0x02,
    /* 17 crc                   uint32 (CRC-32C of bytes 21..86) */ 0xa0, 0xcb, 0xc6, 0xf6,
    /* 21 attributes            int16: no codec, CreateTime, not transactional, not control */
    0x00, 0x00,
    /* 23 lastOffsetDelta       int32 */ 0x00, 0x00, 0x00, 0x01,
    /* 27 baseTimestamp         int64 = 1700000000000 = 0x0000018bcfe56800 */
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,
    /* 35 maxTimestamp          int64 = 1700000000005 */ 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05,
    /* 43 producerId            int64 = -1 */ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    /* 51 producerEpoch         int16 = -1 */ 0xff, 0xff,
    /* 53 baseSequence          int32 = -1 */ 0xff, 0xff, 0xff, 0xff,
    /* 57 records count         int32 = 2 */ 0x00, 0x00, 0x00, 0x02,
    /* 61 record 0: length 9 */ 0x12,
    /* 62   attributes */ 0x00,
    /* 63   timestampDelta 0 */ 0x00,
    /* 64   offsetDelta 0 */ 0x00,
    /* 65   keyLength 1, "k" */ 0x02, 0x6b,
    /* 67   valueLength 2, "v1" */ 0x04, 0x76, 0x31,
    /* 70   headers count 0 */ 0x00,
    /* 71 record 1: length 15 */ 0x1e,
    /* 72   attributes */ 0x00,
    /* 73   timestampDelta 5 */ 0x0a,
    /* 74   offsetDelta 1 */ 0x02,
    /* 75   keyLength 2, "k2" */ 0x04, 0x6b, 0x32,
    /* 78   valueLength -1 (null) */ 0x01,
    /* 79   headers count 2 */ 0x04,
    /* 80     header keyLength 1, "h", valueLength 1, "x" */ 0x02, 0x68, 0x02, 0x78,
    /* 84     header keyLength 1, "n", valueLength -1 (null) */ 0x02, 0x6e, 0x01,
};
/* clang-format on */

static const spate_header_t golden_hdrs[2] = {{"h", 1, "x", 1}, {"n", 1, NULL, 0}};

static void golden_input(spate_push_record_t r[2])
{
	memset(r, 0, 2 * sizeof(*r));
	r[0].key = "k";
	r[0].key_len = 1;
	r[0].value = "v1";
	r[0].value_len = 2;
	r[0].timestamp_ms = 1700000000000LL;
	r[1].key = "k2";
	r[1].key_len = 2;
	r[1].value = NULL;
	r[1].headers = golden_hdrs;
	r[1].header_cnt = 2;
	r[1].timestamp_ms = 1700000000005LL;
}

Test(log_format, crc32c_check_value)
{
	cr_assert_eq(sp_crc32c("123456789", 9), 0xE3069283u);
	cr_assert_eq(sp_crc32c("", 0), 0u);
}

Test(log_format, varints_roundtrip_and_sizes)
{
	const int64_t vals[] = {0, 1, -1, 63, -64, 64, -65, 300, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN};
	const size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 5, 5, 10, 10};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint8_t buf[10];
		size_t n = sp_log_put_varlong(buf, vals[i]);
		cr_assert_eq(n, sizes[i], "size of %lld", (long long)vals[i]);
		cr_assert_eq(sp_log_varlong_size(vals[i]), n);
		int64_t back;
		cr_assert_eq(sp_log_get_varlong(buf, buf + n, &back), n);
		cr_assert_eq(back, vals[i]);
		if (n > 1)
			cr_assert_eq(sp_log_get_varlong(buf, buf + n - 1, &back), 0,
			             "a cut varint is refused");
	}
	uint8_t b[5];
	cr_assert_eq(sp_log_put_varint(b, -1), 1);
	cr_assert_eq(b[0], 0x01);
	cr_assert_eq(sp_log_put_varint(b, 9), 1);
	cr_assert_eq(b[0], 0x12);
}

Test(log_format, golden_batch_decodes)
{
	sp_log_batch_hdr_t h;
	size_t total;
	const char *why = NULL;
	cr_assert_eq(sp_log_batch_header(golden, sizeof(golden), &h, &total, &why), SP_LOG_HDR_OK);
	cr_assert_eq(total, 87);
	cr_assert_eq(h.base_offset, 0);
	cr_assert_eq(h.length, 75);
	cr_assert_eq(h.leader_epoch, 0);
	cr_assert_eq(h.magic, 2);
	cr_assert_eq(h.crc, 0xa0cbc6f6u);
	cr_assert_eq(h.attributes, 0);
	cr_assert_eq(h.last_offset_delta, 1);
	cr_assert_eq(h.base_ts, 1700000000000LL);
	cr_assert_eq(h.max_ts, 1700000000005LL);
	cr_assert_eq(h.producer_id, -1);
	cr_assert_eq(h.producer_epoch, -1);
	cr_assert_eq(h.base_seq, -1);
	cr_assert_eq(h.count, 2);
	uint32_t computed;
	cr_assert(sp_log_batch_crc_ok(golden, total, &computed));
	cr_assert_eq(computed, 0xa0cbc6f6u);

	sp_log_rec_iter_t it;
	sp_log_rec_t r;
	sp_log_rec_iter_init(&it, golden, total, &h);
	cr_assert_eq(sp_log_rec_next(&it, &r, &why), 1);
	cr_assert_eq(r.offset, 0);
	cr_assert_eq(r.timestamp, 1700000000000LL);
	cr_assert_eq(r.key_len, 1);
	cr_assert_eq(memcmp(r.key, "k", 1), 0);
	cr_assert_eq(r.value_len, 2);
	cr_assert_eq(memcmp(r.value, "v1", 2), 0);
	cr_assert_eq(r.hdr_cnt, 0);
	cr_assert_eq(r.key, golden + 66, "decoding points into the bytes");

	cr_assert_eq(sp_log_rec_next(&it, &r, &why), 1);
	cr_assert_eq(r.offset, 1);
	cr_assert_eq(r.timestamp, 1700000000005LL);
	cr_assert_eq(r.key_len, 2);
	cr_assert_eq(memcmp(r.key, "k2", 2), 0);
	cr_assert_null(r.value);
	cr_assert_eq(r.value_len, -1);
	cr_assert_eq(r.hdr_cnt, 2);
	const uint8_t *hp = r.hdrs;
	spate_header_t hd;
	cr_assert_eq(sp_log_hdr_next(&hp, r.hdrs_end, &hd), 0);
	cr_assert_eq(hd.key_len, 1);
	cr_assert_eq(hd.key[0], 'h');
	cr_assert_eq(hd.value_len, 1);
	cr_assert_eq(((const char *)hd.value)[0], 'x');
	cr_assert_eq(sp_log_hdr_next(&hp, r.hdrs_end, &hd), 0);
	cr_assert_eq(hd.key[0], 'n');
	cr_assert_null(hd.value);
	cr_assert_eq(hp, r.hdrs_end);
	cr_assert_eq(sp_log_rec_next(&it, &r, &why), 0, "exactly two records");
}

Test(log_format, encoder_reproduces_golden)
{
	spate_push_record_t in[2];
	golden_input(in);
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	sp_log_enc_begin(&e, 0, in[0].timestamp_ms);
	cr_assert_eq(sp_log_enc_record_size(&e, &in[0], in[0].timestamp_ms), 10);
	cr_assert_eq(sp_log_enc_add(&e, &in[0], in[0].timestamp_ms), SPATE_OK);
	cr_assert_eq(sp_log_enc_record_size(&e, &in[1], in[1].timestamp_ms), 16);
	cr_assert_eq(sp_log_enc_add(&e, &in[1], in[1].timestamp_ms), SPATE_OK);
	size_t n = sp_log_enc_finish(&e);
	cr_assert_eq(n, sizeof(golden));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(e.buf[i], golden[i], "byte %zu: 0x%02x, expected 0x%02x", i, e.buf[i],
		             golden[i]);
	sp_log_enc_free(&e);
}

Test(log_format, writer_writes_golden_bytes)
{
	char *dir = lt_mkdtemp();
	char err[1024], path[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 1 << 16);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_push_record_t in[2];
	golden_input(in);
	cr_assert_eq(sp_log_writer_append(w, in, 2, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	lt_seg(path, sizeof(path), dir, 0, 0);
	uint8_t buf[200];
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	cr_assert_eq(n, (ssize_t)sizeof(golden), "the segment holds exactly the golden batch");
	cr_assert_eq(memcmp(buf, golden, sizeof(golden)), 0);
	/* and the reader gives back the input */
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, 2);
	cr_assert_eq(recs.v[0].ts, 1700000000000LL);
	cr_assert_eq(recs.v[1].ts, 1700000000005LL);
	cr_assert_null(recs.v[1].value);
	cr_assert_eq(recs.v[1].hcnt, 2);
	cr_assert_null(recs.v[1].hdrs[1].value);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}

Test(log_format, bad_headers_are_refused)
{
	uint8_t b[87];
	sp_log_batch_hdr_t h;
	size_t total;
	const char *why;
	memcpy(b, golden, sizeof(b));
	cr_assert_eq(sp_log_batch_header(b, 11, &h, &total, &why), SP_LOG_HDR_SHORT);
	cr_assert_eq(sp_log_batch_header(b, 60, &h, &total, &why), SP_LOG_HDR_SHORT);
	b[16] = 1; /* magic 1 */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_BAD);
	cr_assert_str_eq(why, "magic is not 2 (not a RecordBatch v2)");
	memcpy(b, golden, sizeof(b));
	b[8] = 0x7f; /* batchLength far too large */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_BAD);
	memcpy(b, golden, sizeof(b));
	b[60] = 50; /* 50 records cannot fit 26 bytes */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_BAD);
	/* a last offset past 2^63 - 1 (fuzz_log_batch: base + delta overflowed where they are
	 * added); base 2^63 - 6 with delta 5 is the largest that is fine */
	memcpy(b, golden, sizeof(b));
	memset(b, 0xff, 8);
	b[0] = 0x7f;
	b[7] = 0xfe; /* base offset 2^63 - 2 */
	memset(b + 23, 0, 4);
	b[26] = 5; /* last offset delta 5 */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_BAD);
	cr_assert(strstr(why, "largest offset"), "%s", why);
	b[7] = 0xfa; /* 2^63 - 6 */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_OK);
	cr_assert_eq(sp_log_batch_last(&h), INT64_MAX);
	memcpy(b, golden, sizeof(b));
	b[69] ^= 1; /* a flipped value byte: the header is fine, the CRC is not */
	cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, &why), SP_LOG_HDR_OK);
	cr_assert_not(sp_log_batch_crc_ok(b, total, NULL));
}

/* The golden batch with codec bits set (and its CRC fixed): a valid compressed batch. */
static void compressed_batch(uint8_t *b, int codec)
{
	memcpy(b, golden, sizeof(golden));
	b[22] = (uint8_t)codec;
	uint32_t c = sp_crc32c(b + 21, sizeof(golden) - 21);
	b[17] = (uint8_t)(c >> 24);
	b[18] = (uint8_t)(c >> 16);
	b[19] = (uint8_t)(c >> 8);
	b[20] = (uint8_t)c;
}

Test(log_format, codec_names)
{
	const char *names[] = {"none", "gzip", "snappy", "lz4", "zstd", "unknown", "unknown", "unknown"};
	for (int c = 0; c < 8; c++) {
		uint8_t b[87];
		compressed_batch(b, c);
		sp_log_batch_hdr_t h;
		size_t total;
		cr_assert_eq(sp_log_batch_header(b, sizeof(b), &h, &total, NULL), SP_LOG_HDR_OK);
		cr_assert(sp_log_batch_crc_ok(b, total, NULL));
		cr_assert_eq(sp_log_batch_codec(&h), c);
		cr_assert_str_eq(sp_log_codec_name(sp_log_batch_codec(&h)), names[c]);
	}
}

/* A log whose partition 0 holds one uncompressed batch, then one whose codec bits say
 * codec while its records are not compressed (the writer keeps it: its CRC is valid). A
 * codec Kafka does not define (5..7) is SPATE_ERR_UNSUPPORTED naming it; gzip..zstd
 * records that do not decompress are corruption naming the codec; both name the file, the
 * byte offset and the batch, after the batch before it is delivered. */
Test(log_format, compressed_batch_undecodable_reported_with_codec)
{
	const char *names[] = {NULL, "gzip", "snappy", "lz4", "zstd", "codec 5", "codec 6", "codec 7"};
	for (int codec = 1; codec <= 7; codec++) {
		char *dir = lt_mkdtemp();
		char err[1024], path[4096];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		uint8_t seg[87 * 2];
		memcpy(seg, golden, 87);
		compressed_batch(seg + 87, codec);
		seg[87 + 7] = 2; /* base offset 2 (outside the CRC'd bytes) */
		lt_seg(path, sizeof(path), dir, 0, 0);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		cr_assert_eq(write(fd, seg, sizeof(seg)), (ssize_t)sizeof(seg));
		close(fd);
		/* the writer keeps it (it is valid) and publishes it durable */
		sp_log_writer_t *w;
		cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(sp_log_writer_truncated(w), 0);
		cr_assert_eq(sp_log_writer_next_offset(w), 4);
		cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
		lt_recs_t recs = {0};
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		int rc = lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err));
		cr_assert_eq(rc, codec <= 4 ? SPATE_ERR_CORRUPT : SPATE_ERR_UNSUPPORTED, "codec %d rc %d: %s", codec,
		             rc, err);
		cr_assert_eq(recs.n, 2, "the batch before it is delivered");
		cr_assert(strstr(err, names[codec]), "message names the codec: %s", err);
		cr_assert(strstr(err, "00000000000000000000.log"), "message names the file: %s", err);
		cr_assert(strstr(err, "byte 87"), "message names the byte offset: %s", err);
		cr_assert(strstr(err, "offsets 2..3"), "message names the batch: %s", err);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
}

/* Kafka segments may hold control batches (transaction markers): they are offsets but
 * not records. A trailing one must not become the end noted for stop.at.end, or the
 * checkpoint could never reach it. */
Test(log_format, control_batches_are_skipped)
{
	char *dir = lt_mkdtemp();
	char err[1024], path[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	uint8_t seg[87 * 3];
	memcpy(seg, golden, 87);      /* offsets 0, 1 */
	memcpy(seg + 87, golden, 87); /* offsets 2, 3 */
	seg[87 + 7] = 2;
	memcpy(seg + 174, golden, 87); /* a control batch at offsets 4, 5 */
	seg[174 + 7] = 4;
	seg[174 + 22] = SP_LOG_ATTR_CONTROL | SP_LOG_ATTR_TRANSACTIONAL;
	uint32_t c = sp_crc32c(seg + 174 + 21, 87 - 21);
	seg[174 + 17] = (uint8_t)(c >> 24);
	seg[174 + 18] = (uint8_t)(c >> 16);
	seg[174 + 19] = (uint8_t)(c >> 8);
	seg[174 + 20] = (uint8_t)c;
	lt_seg(path, sizeof(path), dir, 0, 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(write(fd, seg, sizeof(seg)), (ssize_t)sizeof(seg));
	close(fd);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_next_offset(w), 6);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);

	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	bool has;
	uint64_t last;
	cr_assert_eq(sp_log_reader_last_record(rd, 0, &has, &last, err, sizeof(err)), SPATE_OK);
	cr_assert(has);
	cr_assert_eq(last, 3, "the last record, not the control batch's offsets");
	sp_log_reader_close(rd);

	lt_recs_t recs = {0};
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, 4);
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(recs.v[i].offset, i);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}
