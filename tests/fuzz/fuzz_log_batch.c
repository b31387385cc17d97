/* fuzz_log_batch.c - the embedded log's RecordBatch decoder, as the reader uses it.
 *
 * Input: 4 parameter bytes, then the bytes of a read buffer (one or more batches, as in a
 * segment). Byte 0 holds flags (FIX_CRC: recompute each batch's CRC32C before parsing,
 * so mutations get past the checksum to the framing behind it; HAS_END, REDRIVE, HI,
 * MORE: the reader's parse settings); bytes 1..3 are `from`, `end` and `passed`.
 *
 * What runs: the walk of connectors/log/format.c (sp_log_batch_header, the CRC,
 * sp_log_rec_iter_init/next, the headers), then the reader's path in parse.c, fast scan
 * and fill, and when the fill refuses, the exact scan and fill, as reader.c does. The
 * oracle: after an exact scan the fill takes exactly the records the scan counted; what
 * the parse accepts (the batches before `used`) is what `spate log verify` accepts
 * (records in order, inside their batch's offsets); every record with an offset in
 * [from, end] of an accepted batch is delivered, once, in order, its bytes inside the
 * buffer or in the parse's decode arena); a redriven record carries no spate.* header.
 * Compressed batches (gzip, snappy, lz4, zstd: codec.c) are decompressed the reader's way,
 * each parse with its own arena (sp_log_dec_t), and the walk and the oracle decompress
 * them with sp_log_dec_batch too; the seed-codec-* inputs hold batches of each codec.
 */
#include "connectors/log/log.h"
#include "fuzz.h"

#include <stdbool.h>

enum { FIX_CRC = 1, HAS_END = 2, REDRIVE = 4, HI = 8, MORE = 16 };
#define PARAM_BYTES 4
/* The timestamp a redriven record gets (any positive value). */
#define REDRIVE_MS 1234567

/* Recompute the CRC of every whole batch in buf (in place), as far as headers hold. */
static void fix_crcs(uint8_t *buf, size_t len)
{
	size_t off = 0, total;
	sp_log_batch_hdr_t h;
	while (off < len && sp_log_batch_header(buf + off, len - off, &h, &total, NULL) == SP_LOG_HDR_OK &&
	       total <= len - off) {
		uint32_t c = sp_crc32c(buf + off + SP_LOG_CRC_START, total - SP_LOG_CRC_START);
		buf[off + 17] = (uint8_t)(c >> 24);
		buf[off + 18] = (uint8_t)(c >> 16);
		buf[off + 19] = (uint8_t)(c >> 8);
		buf[off + 20] = (uint8_t)c;
		off += total;
	}
}

/* The decode arenas: the walk's, the oracle's and one per parse (a scan's descriptors
 * point into its own). Made once, reset for each input. */
static sp_log_dec_t dec_walk, dec_oracle, dec_fast, dec_exact;

/* The records section of the whole, CRC-checked batch at p (decompressed into d when it
 * is compressed): true and [*recs, *end), or false when it does not decode. */
static bool records_of(sp_log_dec_t *d, const uint8_t *p, size_t total, const sp_log_batch_hdr_t *h,
                       const uint8_t **recs, const uint8_t **end)
{
	size_t len;
	char why[256];
	sp_log_dec_reset(d);
	if (sp_log_dec_batch(d, p, total, h, recs, &len, why, sizeof(why)) != SPATE_OK)
		return false;
	*end = *recs + len;
	return true;
}

/* Walk the records in [p, end) (count of them) with the format's iterator, each one's
 * bytes and headers checked against the bounds. True when the framing holds and the
 * records' offsets rise inside [base, last]: what verify accepts. */
static bool batch_walk(const uint8_t *p, const uint8_t *end, const sp_log_batch_hdr_t *h)
{
	sp_log_rec_iter_t it;
	sp_log_rec_iter_init_recs(&it, p, (size_t)(end - p), h);
	sp_log_rec_t r;
	const char *why = NULL;
	int64_t prev = -1;
	int k;
	bool sane = true;
	while ((k = sp_log_rec_next(&it, &r, &why)) == 1) {
		FUZZ_CHECK(!r.key || (r.key >= p && r.key + r.key_len <= end));
		FUZZ_CHECK(!r.value || (r.value >= p && r.value + r.value_len <= end));
		FUZZ_CHECK(r.hdrs >= p && r.hdrs <= r.hdrs_end && r.hdrs_end <= end);
		const uint8_t *hp = r.hdrs;
		spate_header_t hd;
		int32_t i;
		for (i = 0; i < r.hdr_cnt && sp_log_hdr_next(&hp, r.hdrs_end, &hd) == 0; i++) {
			FUZZ_CHECK((const uint8_t *)hd.key >= r.hdrs &&
			           (const uint8_t *)hd.key + hd.key_len <= hp);
			FUZZ_CHECK(!hd.value || ((const uint8_t *)hd.value >= r.hdrs &&
			                         (const uint8_t *)hd.value + hd.value_len <= hp));
		}
		bool hdrs_ok = i == r.hdr_cnt && hp == r.hdrs_end;
		FUZZ_CHECK(hdrs_ok == (sp_log_rec_check_hdrs(&r) == 0));
		if (!hdrs_ok || r.offset <= prev || r.offset > sp_log_batch_last(h))
			sane = false;
		prev = r.offset;
	}
	FUZZ_CHECK(k == 0 || why);
	return sane && k == 0;
}

/* The direct walk of format.c over every batch of buf. */
static void walk(const uint8_t *buf, size_t len)
{
	size_t off = 0, total;
	sp_log_batch_hdr_t h;
	const char *why;
	int hr;
	while (off < len &&
	       (hr = sp_log_batch_header(buf + off, len - off, &h, &total, &why)) == SP_LOG_HDR_OK) {
		FUZZ_CHECK(total >= SP_LOG_BATCH_HEADER && total <= SP_LOG_MAX_BATCH_BYTES);
		if (total > len - off)
			return;
		const uint8_t *recs, *rend;
		if (sp_log_batch_crc_ok(buf + off, total, NULL) &&
		    records_of(&dec_walk, buf + off, total, &h, &recs, &rend))
			batch_walk(recs, rend, &h);
		off += total;
	}
}

/* Every record with an offset in [from, end] of the batches in buf[0..used): what the
 * parse must deliver once it accepted them. False when an accepted batch breaks what
 * verify checks (then the parse should not have accepted it). */
static bool expected(const uint8_t *buf, const sp_log_parse_t *in, size_t used, uint32_t *n)
{
	size_t off = 0, total;
	sp_log_batch_hdr_t h;
	*n = 0;
	while (off < used) {
		FUZZ_CHECK(sp_log_batch_header(buf + off, used - off, &h, &total, NULL) == SP_LOG_HDR_OK);
		if (!(h.attributes & SP_LOG_ATTR_CONTROL)) {
			const uint8_t *recs, *rend;
			if (!records_of(&dec_oracle, buf + off, total, &h, &recs, &rend) ||
			    !batch_walk(recs, rend, &h))
				return false;
			sp_log_rec_iter_t it;
			sp_log_rec_t r;
			const char *why;
			sp_log_rec_iter_init_recs(&it, recs, (size_t)(rend - recs), &h);
			while (sp_log_rec_next(&it, &r, &why) == 1)
				*n += (uint64_t)r.offset >= in->from &&
				      (!in->has_end || (uint64_t)r.offset <= in->end);
		}
		off += total;
	}
	return true;
}

/* Fill a chunk from a scan; check what it holds. 0, or the fill's -1. */
/* Whether [p, p + n) lies in buf[0..len) or in the decode arena d. */
static bool inside(const void *p, size_t n, const uint8_t *buf, size_t len, const sp_log_dec_t *d)
{
	const uint8_t *q = p;
	return (q >= buf && q + n <= buf + len) || (d && d->mem && q >= d->mem && q + n <= d->mem + d->used);
}

static int fill(const uint8_t *buf, size_t len, const sp_log_parse_t *ps, uint64_t *offs)
{
	static sp_part_t part = {.pub = {"log", "fuzz", 0, NULL, "log/fuzz/0"}};
	sp_chunk_t c = {.part = &part, .n = ps->nrec, .hdr_cap = ps->nhdr};
	c.recs = calloc(ps->nrec ? ps->nrec : 1, sizeof(*c.recs));
	c.hdrs = calloc(ps->nhdr ? ps->nhdr : 1, sizeof(*c.hdrs));
	FUZZ_CHECK(c.recs && c.hdrs);
	int rc = sp_log_parse_fill(buf, ps, &c);
	for (uint32_t i = 0; rc == 0 && i < c.n; i++) {
		const spate_record_t *d = &c.recs[i];
		uint64_t o = d->position.w[2];
		FUZZ_CHECK(o >= ps->from && (!ps->has_end || o <= ps->end) && o < ps->next);
		FUZZ_CHECK(i == 0 || o > offs[i - 1]);
		offs[i] = o;
		FUZZ_CHECK(!d->key || inside(d->key, d->key_len, buf, len, ps->dec));
		FUZZ_CHECK(!d->value || inside(d->value, d->value_len, buf, len, ps->dec));
		FUZZ_CHECK(!ps->redrive_ms || d->timestamp_ms == ps->redrive_ms);
		for (size_t j = 0; j < d->header_cnt; j++) {
			const spate_header_t *hd = &d->headers[j];
			FUZZ_CHECK(hd >= c.hdrs && hd < c.hdrs + c.hdr_cap);
			FUZZ_CHECK(inside(hd->key, hd->key_len, buf, len, ps->dec));
			FUZZ_CHECK(!ps->redrive_ms || hd->key_len <= 6 || memcmp(hd->key, "spate.", 6));
		}
	}
	free(c.recs);
	free(c.hdrs);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < PARAM_BYTES)
		return 0;
	static bool made;
	if (!made) {
		sp_log_dec_init(&dec_walk);
		sp_log_dec_init(&dec_oracle);
		sp_log_dec_init(&dec_fast);
		sp_log_dec_init(&dec_exact);
		made = true;
	}
	sp_log_dec_reset(&dec_fast);
	sp_log_dec_reset(&dec_exact);
	uint8_t flags = data[0];
	size_t len = size - PARAM_BYTES;
	/* a copy of exactly len bytes, so ASan sees any read past the buffer */
	uint8_t *buf = malloc(len ? len : 1);
	FUZZ_CHECK(buf);
	memcpy(buf, data + PARAM_BYTES, len);
	if (flags & FIX_CRC)
		fix_crcs(buf, len);
	walk(buf, len);

	sp_log_parse_t init = {.from = data[1],
	                       .has_end = flags & HAS_END,
	                       .end = data[2],
	                       .passed = data[3],
	                       .hi = flags & HI ? (uint64_t)data[2] + data[3] + 1 : UINT64_MAX,
	                       .more = flags & MORE ? SP_LOG_READ_BYTES : 0,
	                       .redrive_ms = flags & REDRIVE ? REDRIVE_MS : 0};
	sp_log_parse_t fast = init, exact = init;
	fast.fast = true;
	fast.dec = &dec_fast;
	exact.dec = &dec_exact;
	sp_log_parse_scan(buf, len, &fast);
	sp_log_parse_scan(buf, len, &exact);
	FUZZ_CHECK(exact.used <= len && fast.used <= len);
	FUZZ_CHECK(exact.stop != SP_LOG_PARSE_CORRUPT || exact.why);
	uint64_t *offs = calloc(exact.nrec > fast.nrec ? exact.nrec + 1 : fast.nrec + 1, sizeof(uint64_t));
	FUZZ_CHECK(offs);
	/* the reader's order: the fast scan's fill, and when it refuses, the exact pair */
	if (fast.nrec > 0 && fill(buf, len, &fast, offs) == 0)
		FUZZ_CHECK(fast.nrec == exact.nrec);
	FUZZ_CHECK(exact.nrec == 0 || fill(buf, len, &exact, offs) == 0);
	uint32_t want;
	FUZZ_CHECK(expected(buf, &init, exact.used, &want));
	FUZZ_CHECK(want == exact.nrec);
	free(offs);
	free(buf);
	return 0;
}
