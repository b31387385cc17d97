/* fuzz_kinesis_reply.c - the Kinesis replies spate parses (connectors/kinesis/parse.c):
 * GetRecords (JSON, base64 data, KPL aggregates, the header envelope), ListShards,
 * GetShardIterator and PutRecords, the bytes a server (or anything answering on its
 * port) sends back.
 *
 * The input's first byte picks the reply (its value modulo 4: records, shards, iterator,
 * put) and, for PutRecords, how many records were sent (its value / 4 % 8 + 1); the rest
 * is the body. The oracle: no crash, leak or undefined behaviour; a refusal says why; a
 * GetRecords reply that parses hands out records whose key, data and headers lie in the
 * reply's own buffer (each byte is read: ASan sees a pointer past it), headers within
 * the header array, and a next iterator or an end; a ListShards page names every shard
 * and parses the same again (appended: twice the shards); PutRecords counts as failed
 * exactly the entries it marks, never more than were sent.
 */
#include "connectors/kinesis/kinesis.h"
#include "fuzz.h"

#include <stdbool.h>

static unsigned sum; /* of every byte read (keeps the reads) */

static bool in_buf(const kin_records_t *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	return n == 0 || (b && r->buf && b >= r->buf && b <= r->buf + r->buf_len &&
	                  n <= (size_t)(r->buf + r->buf_len - b));
}

static void touch(const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sum += ((const uint8_t *)p)[i];
}

static void records(const char *body, size_t len)
{
	kin_records_t r;
	memset(&r, 0, sizeof(r));
	char why[256] = "";
	int rc = kin_parse_records(body, len, &r, why, sizeof(why));
	if (rc != SPATE_OK) {
		FUZZ_CHECK(rc == SPATE_ERR_CORRUPT || rc == SPATE_ERR_NOMEM);
		FUZZ_CHECK(why[0]);
	} else {
		for (size_t i = 0; i < r.n; i++) {
			const kin_rec_t *x = &r.recs[i];
			FUZZ_CHECK(in_buf(&r, x->key, x->key_len));
			FUZZ_CHECK(in_buf(&r, x->data, x->data_len));
			touch(x->key, x->key_len);
			touch(x->data, x->data_len);
			FUZZ_CHECK(x->hdr_at <= r.nhdrs && x->hdr_n <= r.nhdrs - x->hdr_at);
			for (uint32_t h = x->hdr_at; h < x->hdr_at + x->hdr_n; h++) {
				FUZZ_CHECK(in_buf(&r, r.hdrs[h].key, r.hdrs[h].key_len));
				FUZZ_CHECK(in_buf(&r, r.hdrs[h].value, r.hdrs[h].value_len));
				touch(r.hdrs[h].key, r.hdrs[h].key_len);
				touch(r.hdrs[h].value, r.hdrs[h].value_len);
			}
		}
		for (size_t i = 0; i < r.n_children; i++)
			FUZZ_CHECK(r.children[i]);
		if (r.n)
			FUZZ_CHECK(r.last_seq);
	}
	kin_records_free(&r);
}

static void shards(const char *body, size_t len)
{
	kin_shard_list_t l;
	memset(&l, 0, sizeof(l));
	char why[256] = "";
	int rc = kin_parse_list_shards(body, len, &l, why, sizeof(why));
	if (rc != SPATE_OK) {
		FUZZ_CHECK(rc == SPATE_ERR_CORRUPT || rc == SPATE_ERR_NOMEM);
		FUZZ_CHECK(why[0]);
	} else {
		size_t n = l.n;
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(l.shards[i].id);
			FUZZ_CHECK(l.shards[i].start_seq);
		}
		/* a second page appends */
		FUZZ_CHECK(kin_parse_list_shards(body, len, &l, why, sizeof(why)) == SPATE_OK);
		FUZZ_CHECK(l.n == 2 * n);
	}
	kin_shard_list_free(&l);
}

static void iterator(const char *body, size_t len)
{
	char *it = NULL, why[256] = "";
	int rc = kin_parse_iterator(body, len, &it, why, sizeof(why));
	if (rc == SPATE_OK) {
		FUZZ_CHECK(it);
		touch(it, strlen(it));
	} else {
		FUZZ_CHECK(why[0]);
	}
	free(it);
}

static void put(const char *body, size_t len, size_t sent)
{
	bool failed[8];
	memset(failed, 0, sizeof(failed));
	char first[128], why[256] = "";
	int cnt = kin_parse_put_records(body, len, sent, failed, first, sizeof(first), why, sizeof(why));
	if (cnt < 0) {
		FUZZ_CHECK(cnt == -1);
		FUZZ_CHECK(why[0]);
		return;
	}
	int marked = 0;
	for (size_t i = 0; i < sent; i++)
		marked += failed[i];
	FUZZ_CHECK((size_t)cnt <= sent);
	FUZZ_CHECK(cnt == marked);
	if (cnt)
		FUZZ_CHECK(first[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	char *body = malloc(len ? len : 1); /* exactly len bytes: ASan sees a read past it */
	FUZZ_CHECK(body);
	memcpy(body, data + 1, len);
	switch (data[0] % 4) {
	case 0:
		records(body, len);
		break;
	case 1:
		shards(body, len);
		break;
	case 2:
		iterator(body, len);
		break;
	default:
		put(body, len, (size_t)(data[0] / 4 % 8) + 1);
		break;
	}
	free(body);
	return 0;
}
