/* kpl.c - de-aggregation of records written by the Kinesis Producer Library, as KCL
 * reads them.
 *
 * An aggregated record's data is the magic F3 89 9A C2, a protobuf AggregatedRecord, and
 * the 16-byte MD5 of the protobuf bytes:
 *   AggregatedRecord { repeated string partition_key_table = 1;
 *                      repeated string explicit_hash_key_table = 2;
 *                      repeated Record records = 3; }
 *   Record { required uint64 partition_key_index = 1; optional uint64
 *            explicit_hash_key_index = 2; required bytes data = 3; repeated Tag tags = 4; }
 * Data with a bad magic, a bad MD5, a protobuf that does not parse or an index past its
 * table is not an aggregate: the caller hands it on as one plain record (KCL does the
 * same).
 *
 * The protobuf reader is written here (varints, length-delimited fields, skipping the
 * wire types it does not need): Debian's protobuf-c would need code generated from a
 * .proto by protoc-c at build time for three small messages, and libprotobuf is C++.
 * MD5 is OpenSSL's (libcrypto, which libcurl's TLS already brings).
 * Everything works on a (bytes, length) buffer, so a fuzzer can drive it.
 */
#include "kinesis.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* protobuf wire types */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

typedef struct pb {
	const uint8_t *p, *end;
} pb_t;

static int pb_varint(pb_t *b, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64 && b->p < b->end; shift += 7) {
		uint8_t c = *b->p++;
		r |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* The next field: its number and wire type, and for PB_LEN its bytes in *sub. */
static int pb_field(pb_t *b, uint32_t *num, int *wt, uint64_t *val, pb_t *sub)
{
	uint64_t key;
	if (pb_varint(b, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return -1;
	*num = (uint32_t)(key >> 3);
	*wt = (int)(key & 7);
	switch (*wt) {
	case PB_VARINT:
		return pb_varint(b, val);
	case PB_I64:
		if (b->end - b->p < 8)
			return -1;
		b->p += 8;
		return 0;
	case PB_I32:
		if (b->end - b->p < 4)
			return -1;
		b->p += 4;
		return 0;
	case PB_LEN: {
		uint64_t n;
		if (pb_varint(b, &n) || n > (uint64_t)(b->end - b->p))
			return -1;
		sub->p = b->p;
		sub->end = b->p + n;
		b->p += n;
		return 0;
	}
	default:
		return -1; /* groups (3, 4) and unknown types: not a KPL aggregate */
	}
}

void kin_md5(const void *buf, size_t len, uint8_t out[KIN_KPL_MD5_LEN])
{
	unsigned int n = 0;
	EVP_Digest(buf, len, out, &n, EVP_md5(), NULL);
}

/* The protobuf bytes of a valid aggregate (magic and MD5 checked), or false. */
static bool envelope(const uint8_t *data, size_t len, pb_t *body)
{
	if (len < KIN_KPL_MAGIC_LEN + KIN_KPL_MD5_LEN || memcmp(data, KIN_KPL_MAGIC, KIN_KPL_MAGIC_LEN))
		return false;
	const uint8_t *pbs = data + KIN_KPL_MAGIC_LEN;
	size_t pbn = len - KIN_KPL_MAGIC_LEN - KIN_KPL_MD5_LEN;
	uint8_t md5[KIN_KPL_MD5_LEN];
	kin_md5(pbs, pbn, md5);
	if (memcmp(md5, pbs + pbn, KIN_KPL_MD5_LEN))
		return false;
	body->p = pbs;
	body->end = pbs + pbn;
	return true;
}

/* Read one Record: its key index and data. */
static int read_record(pb_t rec, uint64_t *kidx, pb_t *data)
{
	bool has_k = false, has_d = false;
	while (rec.p < rec.end) {
		uint32_t num;
		int wt;
		uint64_t v = 0;
		pb_t sub = {0};
		if (pb_field(&rec, &num, &wt, &v, &sub))
			return -1;
		if (num == 1 && wt == PB_VARINT) {
			*kidx = v;
			has_k = true;
		} else if (num == 3 && wt == PB_LEN) {
			*data = sub;
			has_d = true;
		} else if ((num == 1 || num == 2) && wt != PB_VARINT) {
			return -1;
		} else if ((num == 3 || num == 4) && wt != PB_LEN) {
			return -1;
		}
	}
	return has_k && has_d ? 0 : -1;
}

/* Walk an aggregate: keys[] filled with the partition key table (at most nkeys), each
 * record checked; fn called per record when set. The record count, or -1. */
static int walk(pb_t body, pb_t *keys, size_t *nkeys, size_t cap, bool (*fn)(void *, const kin_kpl_rec_t *),
                void *arg)
{
	/* pass 1: the key table (it may come after the records in the bytes) */
	size_t nk = 0;
	pb_t b = body;
	while (b.p < b.end) {
		uint32_t num;
		int wt;
		uint64_t v;
		pb_t sub = {0};
		if (pb_field(&b, &num, &wt, &v, &sub))
			return -1;
		if ((num >= 1 && num <= 3) && wt != PB_LEN)
			return -1;
		if (num == 1) {
			if (keys && nk < cap)
				keys[nk] = sub;
			nk++;
		}
	}
	*nkeys = nk;
	if (keys && nk > cap)
		return -1;
	/* pass 2: the records */
	int cnt = 0;
	b = body;
	while (b.p < b.end) {
		uint32_t num;
		int wt;
		uint64_t v;
		pb_t sub = {0};
		pb_field(&b, &num, &wt, &v, &sub); /* checked in pass 1 */
		if (num != 3)
			continue;
		uint64_t kidx = 0;
		pb_t data = {0};
		if (read_record(sub, &kidx, &data) || kidx >= nk || cnt == INT32_MAX)
			return -1;
		if (fn) {
			kin_kpl_rec_t r = {.key = (const char *)keys[kidx].p,
			                   .key_len = (size_t)(keys[kidx].end - keys[kidx].p),
			                   .data = data.p,
			                   .data_len = (size_t)(data.end - data.p)};
			if (!fn(arg, &r))
				return -2;
		}
		cnt++;
	}
	return cnt;
}

int kin_kpl_count(const uint8_t *data, size_t len)
{
	pb_t body;
	if (!envelope(data, len, &body))
		return -1;
	size_t nk = 0;
	int n = walk(body, NULL, &nk, 0, NULL, NULL);
	return n > 0 ? n : -1; /* an aggregate of no records is not one */
}

int kin_kpl_deaggregate(const uint8_t *data, size_t len, bool (*fn)(void *arg, const kin_kpl_rec_t *r),
                        void *arg)
{
	pb_t body;
	if (!envelope(data, len, &body))
		return -1;
	size_t nk = 0;
	if (walk(body, NULL, &nk, 0, NULL, NULL) <= 0)
		return -1;
	pb_t *keys = malloc((nk ? nk : 1) * sizeof(*keys));
	if (!keys)
		return -1;
	int n = walk(body, keys, &nk, nk, fn, arg);
	free(keys);
	return n;
}
