/* format.c - Kafka RecordBatch v2 (magic 2): CRC32C, varints, encode and decode.
 *
 * The bytes are those Kafka keeps in its .log segments and sends in produce and fetch
 * requests, field by field as the Kafka protocol guide lays them out:
 *
 *   baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (2)
 *   | crc uint32 | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64
 *   | maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32
 *   | records count int32 | records...
 *
 * all big-endian; the CRC is CRC-32C over everything from attributes to the end. A
 * record is: length varint | attributes int8 | timestampDelta varlong | offsetDelta
 * varint | keyLength varint | key | valueLength varint | value | headers count varint |
 * headers (keyLength varint, key, valueLength varint, value), where every varint is
 * zigzag-encoded and a length of -1 means null.
 *
 * Nothing here does I/O or allocates on the decode path: decoding yields pointers into
 * the batch bytes (a compressed batch's records are decompressed first, by codec.c, and
 * the iterator walks them there). The encoder builds one batch in a growing buffer.
 */
#include "log.h"

#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>

/* Batch header field positions (bytes from the batch start). */
enum {
	F_BASE_OFFSET = 0,
	F_LENGTH = 8,
	F_LEADER_EPOCH = 12,
	F_MAGIC = 16,
	F_CRC = 17,
	F_ATTRIBUTES = 21,
	F_LAST_DELTA = 23,
	F_BASE_TS = 27,
	F_MAX_TS = 35,
	F_PRODUCER_ID = 43,
	F_PRODUCER_EPOCH = 51,
	F_BASE_SEQ = 53,
	F_COUNT = 57,
};

/* Size of the initial encode buffer; it doubles as needed. */
#define ENC_INITIAL_CAP ((size_t)64 << 10)

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

int sp_log_batch_header(const uint8_t *p, size_t avail, sp_log_batch_hdr_t *h, size_t *total,
                        const char **why)
{
	if (avail < SP_LOG_LOG_OVERHEAD)
		return SP_LOG_HDR_SHORT;
	int32_t length = (int32_t)get32(p + F_LENGTH);
	if (length < SP_LOG_BATCH_HEADER - SP_LOG_LOG_OVERHEAD ||
	    (size_t)length > SP_LOG_MAX_BATCH_BYTES - SP_LOG_LOG_OVERHEAD) {
		if (why)
			*why = "batch length out of range";
		return SP_LOG_HDR_BAD;
	}
	if (avail <= F_MAGIC)
		return SP_LOG_HDR_SHORT;
	if (p[F_MAGIC] != 2) {
		if (why)
			*why = "magic is not 2 (not a RecordBatch v2)";
		return SP_LOG_HDR_BAD;
	}
	if (avail < SP_LOG_BATCH_HEADER)
		return SP_LOG_HDR_SHORT;
	h->base_offset = (int64_t)get64(p + F_BASE_OFFSET);
	h->length = length;
	h->leader_epoch = (int32_t)get32(p + F_LEADER_EPOCH);
	h->magic = (int8_t)p[F_MAGIC];
	h->crc = get32(p + F_CRC);
	h->attributes = (int16_t)get16(p + F_ATTRIBUTES);
	h->last_offset_delta = (int32_t)get32(p + F_LAST_DELTA);
	h->base_ts = (int64_t)get64(p + F_BASE_TS);
	h->max_ts = (int64_t)get64(p + F_MAX_TS);
	h->producer_id = (int64_t)get64(p + F_PRODUCER_ID);
	h->producer_epoch = (int16_t)get16(p + F_PRODUCER_EPOCH);
	h->base_seq = (int32_t)get32(p + F_BASE_SEQ);
	h->count = (int32_t)get32(p + F_COUNT);
	size_t t = (size_t)length + SP_LOG_LOG_OVERHEAD;
	if (h->base_offset < 0 || h->last_offset_delta < 0) {
		if (why)
			*why = "negative base offset or last offset delta";
		return SP_LOG_HDR_BAD;
	}
	/* its last offset (sp_log_batch_last) must be an offset: fuzz_log_batch found
	 * 9223372036853940234 + 2054847098 overflowing in every caller that adds them */
	if (h->base_offset > INT64_MAX - h->last_offset_delta) {
		if (why)
			*why = "base offset plus last offset delta past the largest offset (2^63 - 1)";
		return SP_LOG_HDR_BAD;
	}
	/* Compressed record bytes can be smaller than SP_LOG_MIN_RECORD_BYTES per record:
	 * sp_log_dec_batch checks the count against them once decompressed. */
	if (h->count < 0 || ((h->attributes & SP_LOG_ATTR_CODEC_MASK) == 0 &&
	                     (size_t)h->count * SP_LOG_MIN_RECORD_BYTES > t - SP_LOG_BATCH_HEADER)) {
		if (why)
			*why = "record count does not fit the batch length";
		return SP_LOG_HDR_BAD;
	}
	*total = t;
	return SP_LOG_HDR_OK;
}

bool sp_log_batch_crc_ok(const uint8_t *p, size_t total, uint32_t *computed)
{
	uint32_t c = sp_crc32c(p + SP_LOG_CRC_START, total - SP_LOG_CRC_START);
	if (computed)
		*computed = c;
	return c == get32(p + F_CRC);
}

const char *sp_log_batch_offsets_bad(const sp_log_batch_hdr_t *h, uint64_t passed, uint64_t hi,
                                     const sp_log_batch_hdr_t *next)
{
	uint64_t base = (uint64_t)h->base_offset, last = (uint64_t)sp_log_batch_last(h);
	if (base < passed)
		return "its base offset is before the end of the batch before it";
	if (last >= hi)
		return "its offsets reach the next segment's base offset or the durable end";
	if (base > passed && next && (uint64_t)next->base_offset >= passed &&
	    (uint64_t)next->base_offset <= last)
		return "its base offset leaves a gap in which, or in its own offsets, the next batch starts";
	return NULL;
}

int sp_log_batch_codec(const sp_log_batch_hdr_t *h)
{
	return h->attributes & SP_LOG_ATTR_CODEC_MASK;
}

const char *sp_log_codec_name(int codec)
{
	static const char *const names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
	return codec >= 0 && codec <= 4 ? names[codec] : "unknown";
}

/* ---- varints --------------------------------------------------------------------------- */

size_t sp_log_put_varlong(uint8_t *p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;
	while (z >= 0x80) {
		p[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	p[n++] = (uint8_t)z;
	return n;
}

size_t sp_log_put_varint(uint8_t *p, int32_t v)
{
	return sp_log_put_varlong(p, v);
}

size_t sp_log_varlong_size(int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 1;
	while (z >= 0x80) {
		z >>= 7;
		n++;
	}
	return n;
}

size_t sp_log_get_varlong(const uint8_t *p, const uint8_t *end, int64_t *v)
{
	uint64_t z = 0;
	for (size_t i = 0; i < 10; i++) {
		if (p + i >= end)
			return 0;
		z |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
			return i + 1;
		}
	}
	return 0;
}

/* The common one- and two-byte varints inline; longer ones through the loop. Records
 * have about six varints each, so this is most of the parse cost. */
static inline size_t get_varlong_fast(const uint8_t *p, const uint8_t *end, int64_t *v)
{
	if (end - p >= 2) {
		uint64_t z;
		if (!(p[0] & 0x80)) {
			z = p[0];
			*v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
			return 1;
		}
		if (!(p[1] & 0x80)) {
			z = (uint64_t)(p[0] & 0x7f) | ((uint64_t)p[1] << 7);
			*v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
			return 2;
		}
	}
	return sp_log_get_varlong(p, end, v);
}

/* A varint field that must fit an int32 (lengths, deltas, counts). */
static inline bool get_varint32(const uint8_t **p, const uint8_t *end, int32_t *v)
{
	int64_t x;
	size_t n = get_varlong_fast(*p, end, &x);
	if (!n || x < INT32_MIN || x > INT32_MAX)
		return false;
	*p += n;
	*v = (int32_t)x;
	return true;
}

/* A length-prefixed byte field: -1 is null; anything else must fit before end. */
static inline bool get_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **out, int32_t *len)
{
	if (!get_varint32(p, end, len) || *len < -1 || (*len > 0 && *len > end - *p))
		return false;
	if (*len == -1) {
		*out = NULL;
	} else {
		*out = *p;
		*p += *len;
	}
	return true;
}

/* ---- decode ------------------------------------------------------------------------ */

void sp_log_rec_iter_init(sp_log_rec_iter_t *it, const uint8_t *p, size_t total, const sp_log_batch_hdr_t *h)
{
	sp_log_rec_iter_init_recs(it, p + SP_LOG_BATCH_HEADER, total - SP_LOG_BATCH_HEADER, h);
}

void sp_log_rec_iter_init_recs(sp_log_rec_iter_t *it, const uint8_t *recs, size_t len,
                               const sp_log_batch_hdr_t *h)
{
	it->p = recs;
	it->end = recs + len;
	it->left = h->count;
	it->base_offset = h->base_offset;
	it->base_ts = h->base_ts;
	it->last_offset = sp_log_batch_last(h);
	it->prev_offset = h->base_offset - 1;
}

int sp_log_rec_next(sp_log_rec_iter_t *it, sp_log_rec_t *r, const char **why)
{
	if (it->left == 0) {
		if (it->p != it->end) {
			*why = "bytes left after the last record";
			return -1;
		}
		return 0;
	}
	const uint8_t *p = it->p;
	int32_t len;
	if (!get_varint32(&p, it->end, &len) || len < 1 || len > it->end - p) {
		*why = "record length out of range";
		return -1;
	}
	const uint8_t *rend = p + len;
	p++; /* record attributes: unused by v2 */
	int64_t ts_delta;
	size_t n = get_varlong_fast(p, rend, &ts_delta);
	if (!n) {
		*why = "bad timestamp delta";
		return -1;
	}
	p += n;
	int32_t off_delta;
	if (!get_varint32(&p, rend, &off_delta) || off_delta < 0) {
		*why = "bad offset delta";
		return -1;
	}
	if (!get_bytes(&p, rend, &r->key, &r->key_len) || !get_bytes(&p, rend, &r->value, &r->value_len)) {
		*why = "key or value length out of range";
		return -1;
	}
	if (!get_varint32(&p, rend, &r->hdr_cnt) || r->hdr_cnt < 0 || r->hdr_cnt > (rend - p) / 2) {
		*why = "bad header count";
		return -1;
	}
	/* in unsigned arithmetic, as Java's long wraps: a base offset near INT64_MAX gives an
	 * offset that is refused below instead of an overflow */
	r->offset = (int64_t)((uint64_t)it->base_offset + (uint64_t)off_delta);
	/* Offsets rise inside [baseOffset, baseOffset + lastOffsetDelta] (compaction leaves
	 * gaps, never disorder): a record past the batch's last offset would move a reader's
	 * next offset over the next batch's records, which would be skipped as delivered. */
	if (r->offset <= it->prev_offset || r->offset > it->last_offset) {
		*why = "record offsets out of order or past lastOffsetDelta";
		return -1;
	}
	it->prev_offset = r->offset;
	r->timestamp = (int64_t)((uint64_t)it->base_ts + (uint64_t)ts_delta); /* wraps as in Java */
	r->hdrs = p;
	r->hdrs_end = rend;
	it->p = rend;
	it->left--;
	return 1;
}

int sp_log_hdr_next(const uint8_t **p, const uint8_t *end, spate_header_t *h)
{
	const uint8_t *k, *v;
	int32_t kl, vl;
	if (!get_bytes(p, end, &k, &kl) || kl < 0 || !get_bytes(p, end, &v, &vl))
		return -1;
	h->key = (const char *)k;
	h->key_len = (size_t)kl;
	h->value = v;
	h->value_len = vl < 0 ? 0 : (size_t)vl;
	return 0;
}

int sp_log_rec_check_hdrs(const sp_log_rec_t *r)
{
	const uint8_t *p = r->hdrs;
	spate_header_t h;
	for (int32_t i = 0; i < r->hdr_cnt; i++)
		if (sp_log_hdr_next(&p, r->hdrs_end, &h) < 0)
			return -1;
	return p == r->hdrs_end ? 0 : -1;
}

/* ---- encode -------------------------------------------------------------------------- */

void sp_log_enc_init(sp_log_enc_t *e)
{
	memset(e, 0, sizeof(*e));
}

void sp_log_enc_free(sp_log_enc_t *e)
{
	free(e->buf);
	memset(e, 0, sizeof(*e));
}

void sp_log_enc_begin(sp_log_enc_t *e, int64_t base_offset, int64_t base_ts)
{
	e->len = SP_LOG_BATCH_HEADER;
	e->base_offset = base_offset;
	e->base_ts = base_ts;
	e->max_ts = base_ts;
	e->count = 0;
}

static size_t bytes_size(const void *p, size_t len)
{
	return p ? sp_log_varlong_size((int64_t)len) + len : 1;
}

/* The record's bytes after its length varint. */
static size_t body_size(const sp_log_enc_t *e, const spate_push_record_t *r, int64_t ts)
{
	size_t n = 1 + sp_log_varlong_size(ts - e->base_ts) + sp_log_varlong_size(e->count);
	n += bytes_size(r->key, r->key_len) + bytes_size(r->value, r->value_len);
	n += sp_log_varlong_size((int64_t)r->header_cnt);
	for (size_t i = 0; i < r->header_cnt; i++) {
		const spate_header_t *h = &r->headers[i];
		n += sp_log_varlong_size((int64_t)h->key_len) + h->key_len;
		n += bytes_size(h->value, h->value_len);
	}
	return n;
}

size_t sp_log_enc_record_size(const sp_log_enc_t *e, const spate_push_record_t *r, int64_t ts)
{
	size_t b = body_size(e, r, ts);
	return sp_log_varlong_size((int64_t)b) + b;
}

static size_t put_bytes(uint8_t *p, const void *v, size_t len)
{
	if (!v)
		return sp_log_put_varint(p, -1);
	size_t n = sp_log_put_varint(p, (int32_t)len);
	memcpy(p + n, v, len);
	return n + len;
}

int sp_log_enc_add(sp_log_enc_t *e, const spate_push_record_t *r, int64_t ts)
{
	/* Every length is an int32 on the wire. */
	if (r->key_len > INT32_MAX || r->value_len > INT32_MAX || r->header_cnt > INT32_MAX)
		return SPATE_ERR_INVALID;
	for (size_t i = 0; i < r->header_cnt; i++)
		if (r->headers[i].key_len > INT32_MAX || r->headers[i].value_len > INT32_MAX)
			return SPATE_ERR_INVALID;
	size_t body = body_size(e, r, ts);
	size_t need = e->len + sp_log_varlong_size((int64_t)body) + body;
	if (body > INT32_MAX || need > INT32_MAX)
		return SPATE_ERR_INVALID;
	if (need > e->cap) {
		size_t cap = e->cap ? e->cap : ENC_INITIAL_CAP;
		while (cap < need)
			cap *= 2;
		uint8_t *nb = realloc(e->buf, cap);
		if (!nb)
			return SPATE_ERR_NOMEM;
		e->buf = nb;
		e->cap = cap;
	}
	uint8_t *p = e->buf + e->len;
	p += sp_log_put_varint(p, (int32_t)body);
	*p++ = 0; /* record attributes */
	p += sp_log_put_varlong(p, ts - e->base_ts);
	p += sp_log_put_varint(p, e->count);
	p += put_bytes(p, r->key, r->key_len);
	p += put_bytes(p, r->value, r->value_len);
	p += sp_log_put_varint(p, (int32_t)r->header_cnt);
	for (size_t i = 0; i < r->header_cnt; i++) {
		const spate_header_t *h = &r->headers[i];
		p += put_bytes(p, h->key ? h->key : "", h->key_len);
		p += put_bytes(p, h->value, h->value_len);
	}
	e->len = (size_t)(p - e->buf);
	if (ts > e->max_ts)
		e->max_ts = ts;
	e->count++;
	return SPATE_OK;
}

/* Only call it after at least one sp_log_enc_add (the buffer exists then). */
size_t sp_log_enc_finish(sp_log_enc_t *e)
{
	sp_log_enc_seal(e, e->buf, e->len, SP_LOG_CODEC_NONE);
	return e->len;
}

void sp_log_enc_seal(const sp_log_enc_t *e, uint8_t *b, size_t len, int codec)
{
	put64(b + F_BASE_OFFSET, (uint64_t)e->base_offset);
	put32(b + F_LENGTH, (uint32_t)(len - SP_LOG_LOG_OVERHEAD));
	put32(b + F_LEADER_EPOCH, (uint32_t)SP_LOG_WRITE_LEADER_EPOCH);
	b[F_MAGIC] = 2;
	put16(b + F_ATTRIBUTES, (uint16_t)(codec & SP_LOG_ATTR_CODEC_MASK));
	put32(b + F_LAST_DELTA, (uint32_t)(e->count > 0 ? e->count - 1 : 0));
	put64(b + F_BASE_TS, (uint64_t)e->base_ts);
	put64(b + F_MAX_TS, (uint64_t)e->max_ts);
	put64(b + F_PRODUCER_ID, (uint64_t)(int64_t)SP_LOG_WRITE_PRODUCER_ID);
	put16(b + F_PRODUCER_EPOCH, (uint16_t)(int16_t)SP_LOG_WRITE_PRODUCER_EPOCH);
	put32(b + F_BASE_SEQ, (uint32_t)(int32_t)SP_LOG_WRITE_BASE_SEQ);
	put32(b + F_COUNT, (uint32_t)e->count);
	put32(b + F_CRC, sp_crc32c(b + SP_LOG_CRC_START, len - SP_LOG_CRC_START));
}
