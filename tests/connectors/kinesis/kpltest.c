/* kpltest.c - see kpltest.h. */
#include "tests/connectors/kinesis/kpltest.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <string.h>

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = b | (v ? 0x80 : 0);
	} while (v);
	return n;
}

/* field number f, wire type 2, bytes s of len n */
static size_t put_bytes(uint8_t *p, unsigned f, const void *s, size_t n)
{
	size_t o = put_varint(p, (uint64_t)f << 3 | 2);
	o += put_varint(p + o, n);
	memcpy(p + o, s, n);
	return o + n;
}

size_t t_kpl_build(const char *const *keys, size_t nkeys, const size_t *key_idx, const char *const *datas,
                   size_t n, uint8_t *out, size_t cap)
{
	uint8_t *pb = out + 4, rec[65536];
	size_t o = 0;
	for (size_t i = 0; i < nkeys; i++)
		o += put_bytes(pb + o, 1, keys[i], strlen(keys[i]));
	o += put_bytes(pb + o, 2, "1", 1); /* an explicit hash key table entry, unused */
	for (size_t i = 0; i < n; i++) {
		size_t r = put_varint(rec, 1 << 3 | 0);
		r += put_varint(rec + r, key_idx[i]);
		r += put_bytes(rec + r, 3, datas[i], strlen(datas[i]));
		r += put_bytes(rec + r, 4, "\x0a\x01t", 3); /* a tag (key "t"), skipped */
		o += put_bytes(pb + o, 3, rec, r);
	}
	cr_assert(4 + o + 16 <= cap, "aggregate too large for the test buffer");
	memcpy(out, "\xF3\x89\x9A\xC2", 4);
	unsigned int mlen = 0;
	EVP_Digest(pb, o, out + 4 + o, &mlen, EVP_md5(), NULL);
	cr_assert_eq(mlen, 16);
	return 4 + o + 16;
}
