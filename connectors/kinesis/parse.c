/* parse.c - the Kinesis connector's reply parsers, base64, and the header envelope.
 *
 * Each parser takes a reply body as (bytes, length), needs no network and no state,
 * and reports a malformed reply as SPATE_ERR_CORRUPT with why (never a crash), so a
 * fuzzer can drive each one (tests/connectors/kinesis/test_kinesis_parse.c runs them on
 * good, cut and altered replies). JSON is read with jansson.
 *
 * GetRecords: every record's partition key and decoded data go into one buffer (one
 * allocation per reply) that the chunk made of it owns; KPL aggregates are
 * de-aggregated there (kpl.c: sub-record i gets sub-sequence number i + 1, a plain
 * record 0, so a checkpoint tells whether it lies inside an aggregate), and records
 * written by spate's sink with headers have their envelope unwrapped.
 */
#include "kinesis.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 ------------------------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t kin_b64_encode(const uint8_t *src, size_t n, char *dst)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		dst[o++] = b64_alphabet[v >> 18];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = b64_alphabet[(v >> 6) & 63];
		dst[o++] = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < n ? (uint32_t)src[i + 1] << 8 : 0);
		dst[o++] = b64_alphabet[v >> 18];
		dst[o++] = b64_alphabet[(v >> 12) & 63];
		dst[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	return o;
}

/* The value of each base64 character, 64 for padding, 0xff for anything else. */
static uint8_t b64_rev[256];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
	memset(b64_rev, 0xff, sizeof(b64_rev));
	for (int i = 0; i < 64; i++)
		b64_rev[(unsigned char)b64_alphabet[i]] = (uint8_t)i;
	b64_rev['='] = 64;
}

ssize_t kin_b64_decode(const char *src, size_t n, uint8_t *dst)
{
	pthread_once(&b64_once, b64_init);
	while (n && src[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -1;
	size_t o = 0, i = 0;
	for (; i + 4 <= n; i += 4) {
		uint8_t a = b64_rev[(unsigned char)src[i]], b = b64_rev[(unsigned char)src[i + 1]],
		        c = b64_rev[(unsigned char)src[i + 2]], d = b64_rev[(unsigned char)src[i + 3]];
		if ((a | b | c | d) & 0xc0)
			return -1;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
		dst[o++] = (uint8_t)(v >> 16);
		dst[o++] = (uint8_t)(v >> 8);
		dst[o++] = (uint8_t)v;
	}
	size_t rest = n - i;
	if (rest) {
		uint8_t a = b64_rev[(unsigned char)src[i]], b = b64_rev[(unsigned char)src[i + 1]];
		uint8_t c = rest == 3 ? b64_rev[(unsigned char)src[i + 2]] : 0;
		if ((a | b | c) & 0xc0)
			return -1;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
		dst[o++] = (uint8_t)(v >> 16);
		if (rest == 3)
			dst[o++] = (uint8_t)(v >> 8);
	}
	return (ssize_t)o;
}

#define CORRUPT(...) sp_err(why, size, SPATE_ERR_CORRUPT, __VA_ARGS__)

static json_t *load(const char *body, size_t len, char *why, size_t size)
{
	json_error_t je;
	json_t *j = json_loadb(body, len, 0, &je);
	if (!j) {
		CORRUPT("malformed JSON at byte %d: %s", je.position, je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		CORRUPT("the reply is not a JSON object");
		return NULL;
	}
	return j;
}

/* An optional string member: NULL when absent or null; *bad when present with another type. */
static const char *opt_str(json_t *o, const char *k, bool *bad)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

/* ---- ListShards ------------------------------------------------------------------------- */

void kin_shard_list_free(kin_shard_list_t *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->shards[i].id);
		free(l->shards[i].parent);
		free(l->shards[i].adj_parent);
		free(l->shards[i].start_seq);
		free(l->shards[i].end_seq);
	}
	free(l->shards);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static bool seq_ok(const char *s)
{
	spate_position_t p;
	return s && sp_position_wide(s, strlen(s), 0, &p) == 0;
}

int kin_parse_list_shards(const char *body, size_t len, kin_shard_list_t *out, char *why, size_t size)
{
	json_t *j = load(body, len, why, size);
	if (!j)
		return SPATE_ERR_CORRUPT;
	int rc = SPATE_OK;
	bool bad = false, oom = false;
	json_t *arr = json_object_get(j, "Shards");
	const char *tok = opt_str(j, "NextToken", &bad);
	if (!json_is_array(arr) || bad) {
		rc = CORRUPT("ListShards: no Shards array%s",
		             bad ? " (or a NextToken that is not a string)" : "");
		goto out;
	}
	size_t i;
	json_t *sh;
	json_array_foreach(arr, i, sh)
	{
		const char *id = opt_str(sh, "ShardId", &bad);
		const char *par = opt_str(sh, "ParentShardId", &bad);
		const char *adj = opt_str(sh, "AdjacentParentShardId", &bad);
		json_t *range = json_object_get(sh, "SequenceNumberRange");
		const char *st =
		    json_is_object(range) ? opt_str(range, "StartingSequenceNumber", &bad) : NULL;
		const char *en = json_is_object(range) ? opt_str(range, "EndingSequenceNumber", &bad) : NULL;
		if (!json_is_object(sh) || !id || !*id || bad || strlen(id) > 128 || !seq_ok(st) ||
		    (en && !seq_ok(en))) {
			rc = CORRUPT(
			    "ListShards: shard %zu is malformed (a ShardId and a SequenceNumberRange with "
			    "decimal sequence numbers are required)",
			    i);
			goto out;
		}
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 16;
			kin_shard_info_t *n = realloc(out->shards, cap * sizeof(*n));
			if (!n) {
				oom = true;
				break;
			}
			out->shards = n;
			out->cap = cap;
		}
		kin_shard_info_t *s = &out->shards[out->n++];
		s->id = dup_or_null(id, &oom);
		s->parent = dup_or_null(par && *par ? par : NULL, &oom);
		s->adj_parent = dup_or_null(adj && *adj ? adj : NULL, &oom);
		s->start_seq = dup_or_null(st, &oom);
		s->end_seq = dup_or_null(en, &oom);
	}
	free(out->next_token);
	out->next_token = tok && *tok ? strdup(tok) : NULL;
	if (tok && *tok && !out->next_token)
		oom = true;
	if (oom)
		rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
out:
	json_decref(j);
	return rc;
}

/* ---- GetShardIterator ------------------------------------------------------------------- */

int kin_parse_iterator(const char *body, size_t len, char **iter, char *why, size_t size)
{
	*iter = NULL;
	json_t *j = load(body, len, why, size);
	if (!j)
		return SPATE_ERR_CORRUPT;
	bool bad = false;
	const char *it = opt_str(j, "ShardIterator", &bad);
	int rc = SPATE_OK;
	if (!it || !*it || bad)
		rc = CORRUPT("GetShardIterator: no ShardIterator string in the reply");
	else if (!(*iter = strdup(it)))
		rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
	json_decref(j);
	return rc;
}

/* ---- GetRecords ---------------------------------------------------------------------------- */

void kin_records_free(kin_records_t *r)
{
	free(r->recs);
	free(r->hdrs);
	free(r->buf);
	free(r->next_iter);
	for (size_t i = 0; i < r->n_children; i++)
		free(r->children[i]);
	free(r->children);
	free(r->last_seq);
	memset(r, 0, sizeof(*r));
}

static bool grow_recs(kin_records_t *r, size_t more)
{
	if (r->n + more <= r->cap)
		return true;
	size_t cap = r->cap ? r->cap : 64;
	while (cap < r->n + more)
		cap *= 2;
	kin_rec_t *n = realloc(r->recs, cap * sizeof(*n));
	if (!n)
		return false;
	r->recs = n;
	r->cap = cap;
	return true;
}

/* Unwrap the envelope of the record just added (its headers into r->hdrs). */
static int unwrap(kin_records_t *r, kin_rec_t *x)
{
	if (x->data_len < KIN_ENV_MAGIC_LEN || memcmp(x->data, KIN_ENV_MAGIC, KIN_ENV_MAGIC_LEN))
		return SPATE_OK;
	size_t at = 0, need = 0;
	int n = kin_env_read(x->data, x->data_len, r->hdrs ? r->hdrs + r->nhdrs : NULL, r->hdr_cap - r->nhdrs,
	                     &at, &need);
	if (n < 0) {
		size_t cap = r->hdr_cap ? r->hdr_cap : 64;
		while (cap < r->nhdrs + need)
			cap *= 2;
		spate_header_t *h = realloc(r->hdrs, cap * sizeof(*h));
		if (!h)
			return SPATE_ERR_NOMEM;
		r->hdrs = h;
		r->hdr_cap = cap;
		n = kin_env_read(x->data, x->data_len, r->hdrs + r->nhdrs, r->hdr_cap - r->nhdrs, &at, &need);
	}
	if (n <= 0)
		return SPATE_OK; /* a plain value that only looked like an envelope */
	x->hdr_at = (uint32_t)r->nhdrs;
	x->hdr_n = (uint32_t)n;
	r->nhdrs += (size_t)n;
	x->data += at;
	x->data_len -= at;
	return SPATE_OK;
}

typedef struct agg_walk {
	kin_records_t *r;
	const char *seq;
	size_t seq_len;
	int64_t ts;
	uint64_t sub;
	int rc;
} agg_walk_t;

static bool agg_one(void *arg, const kin_kpl_rec_t *k)
{
	agg_walk_t *w = arg;
	kin_rec_t *x = &w->r->recs[w->r->n];
	*x = (kin_rec_t){
	    .key = k->key, .key_len = k->key_len, .data = k->data, .data_len = k->data_len, .ts_ms = w->ts};
	/* sub-record i has sub-sequence number i + 1: 0 is a plain record */
	if (sp_position_wide(w->seq, w->seq_len, ++w->sub, &x->pos)) {
		w->rc = SPATE_ERR_CORRUPT;
		return false;
	}
	w->r->n++;
	if ((w->rc = unwrap(w->r, x)))
		return false;
	return true;
}

/* A record's ApproximateArrivalTimestamp (seconds, a JSON number) in ms; 0 (unknown, as
 * when absent) for one that is not a time (negative, past the year 9999, not finite):
 * converting it would overflow, and one bad field must not refuse the shard's reply. */
static int64_t arrival_ms(const json_t *ts)
{
	if (!ts)
		return 0;
	double v = json_number_value(ts);
	if (!(v >= 0.0 && v <= 253402300799.0))
		return 0;
	return (int64_t)(v * 1000.0 + 0.5);
}

int kin_parse_records(const char *body, size_t len, kin_records_t *out, char *why, size_t size)
{
	memset(out, 0, sizeof(*out));
	out->behind_ms = -1;
	json_t *j = load(body, len, why, size);
	if (!j)
		return SPATE_ERR_CORRUPT;
	int rc = SPATE_OK;
	bool bad = false;
	json_t *arr = json_object_get(j, "Records");
	const char *next = opt_str(j, "NextShardIterator", &bad);
	json_t *behind = json_object_get(j, "MillisBehindLatest");
	if (!json_is_array(arr) || bad || (behind && !json_is_null(behind) && !json_is_integer(behind))) {
		rc = CORRUPT("GetRecords: no Records array, or a NextShardIterator or MillisBehindLatest of "
		             "the wrong type");
		goto out;
	}
	out->behind_ms = json_is_integer(behind) ? (int64_t)json_integer_value(behind) : -1;
	/* pass 1: check every record and size the buffer */
	size_t i, total = 0, nrec = json_array_size(arr);
	json_t *rec;
	json_array_foreach(arr, i, rec)
	{
		const char *seq = opt_str(rec, "SequenceNumber", &bad);
		const char *data = opt_str(rec, "Data", &bad);
		const char *key = opt_str(rec, "PartitionKey", &bad);
		json_t *ts = json_object_get(rec, "ApproximateArrivalTimestamp");
		if (!json_is_object(rec) || bad || !seq_ok(seq) || !data || !key ||
		    (ts && !json_is_number(ts))) {
			rc = CORRUPT("GetRecords: record %zu is malformed (SequenceNumber, Data and "
			             "PartitionKey strings are "
			             "required)",
			             i);
			goto out;
		}
		total += json_string_length(json_object_get(rec, "Data")) / 4 * 3 + 3 +
		         json_string_length(json_object_get(rec, "PartitionKey"));
	}
	out->buf = malloc(total ? total : 1);
	if (!out->buf || !grow_recs(out, nrec)) {
		rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory for a GetRecords reply of %zu records",
		            nrec);
		goto out;
	}
	/* pass 2: copy keys, decode data, de-aggregate, unwrap */
	size_t off = 0;
	json_array_foreach(arr, i, rec)
	{
		json_t *jseq = json_object_get(rec, "SequenceNumber"), *jdata = json_object_get(rec, "Data"),
		       *jkey = json_object_get(rec, "PartitionKey");
		const char *seq = json_string_value(jseq);
		size_t klen = json_string_length(jkey);
		char *key = (char *)out->buf + off;
		memcpy(key, json_string_value(jkey), klen);
		off += klen;
		ssize_t dl =
		    kin_b64_decode(json_string_value(jdata), json_string_length(jdata), out->buf + off);
		if (dl < 0) {
			rc =
			    CORRUPT("GetRecords: record %zu (sequence number %s) has Data that is not base64",
			            i, seq);
			goto out;
		}
		uint8_t *data = out->buf + off;
		off += (size_t)dl;
		out->data_bytes += (size_t)dl;
		json_t *ts = json_object_get(rec, "ApproximateArrivalTimestamp");
		int64_t ts_ms = arrival_ms(ts);
		int cnt = (size_t)dl >= KIN_KPL_MAGIC_LEN && !memcmp(data, KIN_KPL_MAGIC, KIN_KPL_MAGIC_LEN)
		              ? kin_kpl_count(data, (size_t)dl)
		              : -1;
		if (cnt > 0) {
			if (!grow_recs(out, (size_t)cnt)) {
				rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
				goto out;
			}
			agg_walk_t w = {
			    .r = out, .seq = seq, .seq_len = json_string_length(jseq), .ts = ts_ms};
			if (kin_kpl_deaggregate(data, (size_t)dl, agg_one, &w) < 0 || w.rc) {
				rc = w.rc == SPATE_ERR_NOMEM
				         ? sp_err(why, size, SPATE_ERR_NOMEM, "out of memory")
				         : CORRUPT(
				               "GetRecords: record %zu: a KPL aggregate that cannot be read",
				               i);
				goto out;
			}
			out->aggregated++;
		} else {
			if ((size_t)dl >= KIN_KPL_MAGIC_LEN &&
			    !memcmp(data, KIN_KPL_MAGIC, KIN_KPL_MAGIC_LEN))
				out->bad_aggregates++; /* the magic but a bad MD5 or body: a plain record, as
				                          KCL */
			if (!grow_recs(out, 1)) {
				rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
				goto out;
			}
			kin_rec_t *x = &out->recs[out->n];
			*x = (kin_rec_t){.key = key,
			                 .key_len = klen,
			                 .data = data,
			                 .data_len = (size_t)dl,
			                 .ts_ms = ts_ms};
			if (sp_position_wide(seq, json_string_length(jseq), 0, &x->pos)) {
				rc = CORRUPT("GetRecords: record %zu: sequence number %s", i, seq);
				goto out;
			}
			out->n++;
			if ((rc = unwrap(out, x))) {
				sp_err(why, size, rc, "out of memory");
				goto out;
			}
		}
		if (i + 1 == nrec && !(out->last_seq = strdup(seq))) {
			rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	out->buf_len = off;
	if (next && *next && !(out->next_iter = strdup(next))) {
		rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
		goto out;
	}
	json_t *kids = json_object_get(j, "ChildShards");
	if (kids && !json_is_null(kids)) {
		if (!json_is_array(kids)) {
			rc = CORRUPT("GetRecords: ChildShards is not an array");
			goto out;
		}
		size_t nk = json_array_size(kids);
		out->children = calloc(nk ? nk : 1, sizeof(char *));
		if (!out->children) {
			rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
			goto out;
		}
		json_t *k;
		json_array_foreach(kids, i, k)
		{
			const char *id = opt_str(k, "ShardId", &bad);
			if (!json_is_object(k) || !id || !*id || bad) {
				rc = CORRUPT("GetRecords: child shard %zu has no ShardId", i);
				goto out;
			}
			if (!(out->children[out->n_children] = strdup(id))) {
				rc = sp_err(why, size, SPATE_ERR_NOMEM, "out of memory");
				goto out;
			}
			out->n_children++;
		}
	}
out:
	json_decref(j);
	if (rc)
		kin_records_free(out);
	return rc;
}

/* ---- PutRecords ------------------------------------------------------------------------- */

int kin_parse_put_records(const char *body, size_t len, size_t n, bool *failed, char *first_err,
                          size_t errsize, char *why, size_t size)
{
	if (first_err && errsize)
		first_err[0] = 0;
	json_t *j = load(body, len, why, size);
	if (!j)
		return -1;
	int cnt = -1;
	json_t *arr = json_object_get(j, "Records");
	json_t *fc = json_object_get(j, "FailedRecordCount");
	if (!json_is_array(arr) || json_array_size(arr) != n || (fc && !json_is_integer(fc))) {
		CORRUPT("PutRecords: the reply has %zu entries for %zu records sent",
		        json_is_array(arr) ? json_array_size(arr) : 0, n);
		goto out;
	}
	cnt = 0;
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		bool bad = false;
		const char *code = json_is_object(e) ? opt_str(e, "ErrorCode", &bad) : NULL;
		const char *seq = json_is_object(e) ? opt_str(e, "SequenceNumber", &bad) : NULL;
		if (!json_is_object(e) || bad || (!code && !seq_ok(seq))) {
			CORRUPT("PutRecords: entry %zu has neither an ErrorCode nor a SequenceNumber", i);
			cnt = -1;
			goto out;
		}
		failed[i] = code != NULL;
		if (code) {
			if (!cnt && first_err) {
				const char *msg = opt_str(e, "ErrorMessage", &bad);
				/* an empty code still says the entry failed (found by fuzz_kinesis_reply) */
				snprintf(first_err, errsize, "%s%s%s", code[0] ? code : "an empty ErrorCode",
				         msg ? ": " : "", msg ? msg : "");
			}
			cnt++;
		}
	}
	if (fc && json_integer_value(fc) != cnt) {
		CORRUPT("PutRecords: FailedRecordCount %lld, but %d entries failed",
		        (long long)json_integer_value(fc), cnt);
		cnt = -1;
	}
out:
	json_decref(j);
	return cnt;
}

/* ---- the header envelope ------------------------------------------------------------------ */

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* A varint at *p (below end): 0 and *v, or -1. */
static int varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

size_t kin_env_size(const spate_header_t *h, size_t n)
{
	if (!n)
		return 0;
	size_t s = KIN_ENV_MAGIC_LEN + varint_len(n) + 4;
	for (size_t i = 0; i < n; i++) {
		s += varint_len(h[i].key_len) + h[i].key_len;
		s += varint_len(h[i].value ? h[i].value_len + 1 : 0) + (h[i].value ? h[i].value_len : 0);
	}
	return s;
}

size_t kin_env_write(const spate_header_t *h, size_t n, uint8_t *dst)
{
	size_t o = KIN_ENV_MAGIC_LEN;
	memcpy(dst, KIN_ENV_MAGIC, KIN_ENV_MAGIC_LEN);
	o += varint_put(dst + o, n);
	for (size_t i = 0; i < n; i++) {
		o += varint_put(dst + o, h[i].key_len);
		memcpy(dst + o, h[i].key, h[i].key_len);
		o += h[i].key_len;
		o += varint_put(dst + o, h[i].value ? h[i].value_len + 1 : 0);
		if (h[i].value) {
			memcpy(dst + o, h[i].value, h[i].value_len);
			o += h[i].value_len;
		}
	}
	uint32_t crc = sp_crc32c(dst, o);
	for (int i = 0; i < 4; i++)
		dst[o++] = (uint8_t)(crc >> (8 * i));
	return o;
}

int kin_env_read(const uint8_t *data, size_t len, spate_header_t *h, size_t cap, size_t *value_at,
                 size_t *need)
{
	*value_at = 0;
	if (len < KIN_ENV_MAGIC_LEN + 5 || memcmp(data, KIN_ENV_MAGIC, KIN_ENV_MAGIC_LEN))
		return 0;
	const uint8_t *p = data + KIN_ENV_MAGIC_LEN, *end = data + len;
	uint64_t n;
	if (varint_get(&p, end, &n) || n == 0 || n > len)
		return 0;
	/* walk once to check the bounds and the CRC before writing anything */
	const uint8_t *q = p;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t kl, vl;
		if (varint_get(&q, end, &kl) || kl > (uint64_t)(end - q))
			return 0;
		q += kl;
		if (varint_get(&q, end, &vl) || (vl && vl - 1 > (uint64_t)(end - q)))
			return 0;
		q += vl ? vl - 1 : 0;
	}
	if (end - q < 4)
		return 0;
	uint32_t crc = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
	if (crc != sp_crc32c(data, (size_t)(q - data)))
		return 0;
	if (n > cap) {
		*need = n;
		return -1;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t kl = 0, vl = 0; /* checked in the walk above */
		varint_get(&p, end, &kl);
		h[i].key = (const char *)p;
		h[i].key_len = kl;
		p += kl;
		varint_get(&p, end, &vl);
		h[i].value = vl ? p : NULL;
		h[i].value_len = vl ? vl - 1 : 0;
		p += vl ? vl - 1 : 0;
	}
	*value_at = (size_t)(q + 4 - data);
	return (int)n;
}
