/* fuzz_dlq_headers.c - a dead letter's headers, written and read back by a redrive.
 *
 * A dead letter carries the record's own headers and the spate.* headers of engine/dlq.c;
 * `spate dlq redrive` reads the DLQ with the log source in redrive mode
 * (source.redrive=true), whose parse (connectors/log/parse.c, sp_log_parse_fill) drops
 * every spate.* header and stamps the redrive time. The input describes one record:
 *
 *   flags u8 | condition u8 | attempts u8 | error: len u8 + bytes
 *   | key: len u8 (255: null) + bytes | value: len u8 (255: null) + bytes
 *   | then headers until the input ends: key len u8 + bytes, value len u8 (255: null) + bytes
 *
 * (a length past the input's end takes what is left). The record is built the way
 * engine/retry.c builds a dead letter (its headers, then sp_dlq_headers), encoded by the
 * log's writer path (sp_log_enc_*), and parsed back as the reader does, with and without
 * redrive. The oracle: without redrive every header comes back, bytes equal; with it,
 * exactly the record's own headers that do not start with "spate." (longer than the
 * prefix), in order; key and value unchanged; the timestamp is the redrive's.
 */
#include "connectors/log/log.h"
#include "engine/engine.h"
#include "fuzz.h"

#include <stdbool.h>

/* Most headers of the record's own the harness builds. */
#define MAX_OWN    32
#define REDRIVE_MS 987654321
#define NULL_LEN   255

typedef struct rd {
	const uint8_t *p, *end;
} rd_t;

static bool take(rd_t *r, const uint8_t **out, size_t *len, bool nullable)
{
	if (r->p >= r->end)
		return false;
	size_t n = *r->p++;
	if (nullable && n == NULL_LEN) {
		*out = NULL;
		*len = 0;
		return true;
	}
	if (n > (size_t)(r->end - r->p))
		n = (size_t)(r->end - r->p);
	*out = r->p;
	*len = n;
	r->p += n;
	return true;
}

static bool is_spate(const spate_header_t *h)
{
	return h->key_len > 6 && !memcmp(h->key, "spate.", 6);
}

static bool same_bytes(const void *a, size_t al, const void *b, size_t bl)
{
	return al == bl && (!al || !memcmp(a, b, al));
}

/* Parse the one-record batch back (redrive_ms 0: not a redrive) and compare. */
static void read_back(const uint8_t *batch, size_t len, const spate_push_record_t *rec, int64_t redrive_ms)
{
	static sp_part_t part = {.pub = {"log", "dlq", 0, NULL, "log/dlq/0"}};
	sp_log_parse_t ps = {.hi = UINT64_MAX, .redrive_ms = redrive_ms};
	sp_log_parse_scan(batch, len, &ps);
	FUZZ_CHECK(ps.stop == SP_LOG_PARSE_MORE && ps.used == len && ps.nrec == 1);
	FUZZ_CHECK(ps.nhdr == rec->header_cnt);
	sp_chunk_t c = {.part = &part, .n = 1, .hdr_cap = ps.nhdr};
	spate_record_t d;
	c.recs = &d;
	c.hdrs = calloc(ps.nhdr ? ps.nhdr : 1, sizeof(*c.hdrs));
	FUZZ_CHECK(c.hdrs);
	FUZZ_CHECK(sp_log_parse_fill(batch, &ps, &c) == 0);
	FUZZ_CHECK(same_bytes(d.key, d.key_len, rec->key, rec->key_len) && !d.key == !rec->key);
	FUZZ_CHECK(same_bytes(d.value, d.value_len, rec->value, rec->value_len) && !d.value == !rec->value);
	FUZZ_CHECK(d.timestamp_ms == (redrive_ms ? redrive_ms : rec->timestamp_ms));
	size_t k = 0;
	for (size_t i = 0; i < rec->header_cnt; i++) {
		const spate_header_t *h = &rec->headers[i];
		if (redrive_ms && is_spate(h))
			continue;
		FUZZ_CHECK(k < d.header_cnt);
		const spate_header_t *g = &d.headers[k++];
		FUZZ_CHECK(same_bytes(g->key, g->key_len, h->key, h->key_len));
		FUZZ_CHECK(same_bytes(g->value, g->value_len, h->value, h->value_len) &&
		           !g->value == !h->value);
	}
	FUZZ_CHECK(k == d.header_cnt);
	FUZZ_CHECK(k || !d.headers);
	free(c.hdrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rd_t r = {data, data + size};
	if (size < 3)
		return 0;
	uint8_t flags = *r.p++, cond = *r.p++, attempts = *r.p++;
	const uint8_t *err, *key, *value;
	size_t errlen, key_len, value_len;
	if (!take(&r, &err, &errlen, false) || !take(&r, &key, &key_len, true) ||
	    !take(&r, &value, &value_len, true))
		return 0;
	spate_header_t h[MAX_OWN + SP_DLQ_HDRS];
	size_t hn = 0;
	while (hn < MAX_OWN && r.p < r.end) {
		const uint8_t *k, *v;
		size_t kl, vl;
		if (!take(&r, &k, &kl, false) || !take(&r, &v, &vl, true))
			break;
		h[hn++] = (spate_header_t){(const char *)k, kl, v, vl};
	}
	/* the failure's text as a C string, as the worker has it */
	char *error = strndup((const char *)err, errlen);
	FUZZ_CHECK(error);
	char vals[SP_DLQ_VALBYTES];
	sp_dlq_meta_t m = {.condition = cond % 4,
	                   .attempts = attempts,
	                   .source = "log",
	                   .partition = "log/in/0",
	                   .position = "42",
	                   .position_last = flags & 1 ? "43" : NULL,
	                   .first_ms = 1,
	                   .last_ms = 2,
	                   .error = error};
	size_t dn = sp_dlq_headers(h + hn, vals, sizeof(vals), &m);
	FUZZ_CHECK(dn <= SP_DLQ_HDRS);
	for (size_t i = 0; i < dn; i++)
		FUZZ_CHECK(is_spate(&h[hn + i]));
	spate_push_record_t rec = {.key = key,
	                           .key_len = key_len,
	                           .value = value,
	                           .value_len = value_len,
	                           .headers = h,
	                           .header_cnt = hn + dn,
	                           .timestamp_ms = 1700000000000};
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	sp_log_enc_begin(&e, 0, rec.timestamp_ms);
	FUZZ_CHECK(sp_log_enc_add(&e, &rec, rec.timestamp_ms) == SPATE_OK);
	size_t len = sp_log_enc_finish(&e);
	read_back(e.buf, len, &rec, 0);
	read_back(e.buf, len, &rec, REDRIVE_MS);
	sp_log_enc_free(&e);
	free(error);
	return 0;
}
