/* sink.c - Kinesis as a sink and DLQ (`dlq=kinesis:STREAM`, `spate produce --kinesis
 * STREAM`): PutRecords in batches of at most 500 records and 5 MiB (data and keys), each
 * record at most 1 MiB; a reply's failed entries (throttling, internal failures) are sent
 * again, alone, with backoff, until kinesis.sink.timeout.ms; write() returns OK only
 * once every entry succeeded, so a record is DONE only then.
 *
 * The partition key is the record key; an empty key becomes the record's id (its
 * spate.id header, which the DLQ always writes), else a unique "spate-PID-N" (a key is 1
 * to 256 characters; a longer one is an error naming the record). Headers, which Kinesis
 * lacks, travel in an envelope in front of the value (kinesis.h, docs/kinesis.md) that
 * spate's own source unwraps.
 *
 * @locality open and close on the engine (or CLI) thread; write on worker threads,
 * concurrently: each call builds its own batches and waits on the shared I/O thread.
 */
#include "kinesis.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct kin_sink {
	kin_aws_t aws;
	kin_http_t *http;
	char member[600];
	int64_t timeout_ms;
	_Atomic uint64_t seq; /* generated partition keys */
} kin_sink_t;

/* One record prepared for PutRecords. */
typedef struct prep {
	const char *key;
	size_t key_len;
	char keybuf[48];
	size_t data_len; /* envelope + value */
	const spate_push_record_t *rec;
} prep_t;

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* The partition key of r: its key, else its spate.id, else a unique one. */
static int prepare(kin_sink_t *k, const spate_push_record_t *r, prep_t *p, size_t idx, char *errstr,
                   size_t size)
{
	p->rec = r;
	p->key = r->key;
	p->key_len = r->key_len;
	if (!p->key_len) {
		for (size_t i = 0; i < r->header_cnt; i++) {
			const spate_header_t *h = &r->headers[i];
			if (h->key_len == 8 && !memcmp(h->key, "spate.id", 8) && h->value && h->value_len) {
				p->key = h->value;
				/* an id longer than a key may be keeps its end (the position) */
				p->key_len = h->value_len;
				if (p->key_len > KIN_KEY_MAX) {
					p->key += p->key_len - KIN_KEY_MAX;
					p->key_len = KIN_KEY_MAX;
				}
				break;
			}
		}
	}
	if (!p->key_len) {
		uint64_t n = atomic_fetch_add_explicit(&k->seq, 1, memory_order_relaxed);
		p->key_len =
		    (size_t)snprintf(p->keybuf, sizeof(p->keybuf), "spate-%ld-%" PRIu64, (long)getpid(), n);
		p->key = p->keybuf;
	}
	if (p->key_len > KIN_KEY_MAX)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis sink: stream %s: record %zu has a key of %zu bytes; partition keys "
		              "are 1 to %d characters",
		              k->aws.stream, idx, p->key_len, KIN_KEY_MAX);
	p->data_len = kin_env_size(r->headers, r->header_cnt) + r->value_len;
	if (p->data_len + p->key_len > KIN_RECORD_BYTES_MAX)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis sink: stream %s: record %zu takes %zu bytes with its key and headers, "
		              "more than the "
		              "%d a Kinesis record may",
		              k->aws.stream, idx, p->data_len + p->key_len, KIN_RECORD_BYTES_MAX);
	return SPATE_OK;
}

/* The PutRecords body of the records ps[idx[0..n)]. NULL when out of memory. */
static char *body_of(kin_sink_t *k, prep_t *ps, const size_t *idx, size_t n, size_t *len)
{
	size_t cap = 64 + strlen(k->member);
	for (size_t i = 0; i < n; i++)
		cap += 48 + (ps[idx[i]].data_len + 2) / 3 * 4 + ps[idx[i]].key_len * 6;
	char *b = malloc(cap);
	uint8_t *tmp = NULL;
	size_t tcap = 0;
	if (!b)
		return NULL;
	size_t o = (size_t)snprintf(b, cap, "{%s,\"Records\":[", k->member);
	for (size_t i = 0; i < n; i++) {
		prep_t *p = &ps[idx[i]];
		const spate_push_record_t *r = p->rec;
		o += (size_t)snprintf(b + o, cap - o, "%s{\"Data\":\"", i ? "," : "");
		if (r->header_cnt) { /* envelope + value, encoded together */
			if (p->data_len > tcap) {
				uint8_t *t = realloc(tmp, p->data_len);
				if (!t) {
					free(tmp);
					free(b);
					return NULL;
				}
				tmp = t;
				tcap = p->data_len;
			}
			size_t e = kin_env_write(r->headers, r->header_cnt, tmp);
			if (r->value_len)
				memcpy(tmp + e, r->value, r->value_len);
			o += kin_b64_encode(tmp, p->data_len, b + o);
		} else {
			o += kin_b64_encode(r->value, r->value_len, b + o);
		}
		o += (size_t)snprintf(b + o, cap - o, "\",\"PartitionKey\":");
		if (!kin_json_str(b, cap, &o, p->key, p->key_len)) {
			free(tmp);
			free(b);
			return NULL;
		}
		b[o++] = '}';
	}
	o += (size_t)snprintf(b + o, cap - o, "]}");
	free(tmp);
	*len = o;
	return b;
}

/* Put ps[idx[0..n)] until each entry succeeded or the deadline passed. */
static int put_batch(kin_sink_t *k, prep_t *ps, size_t *idx, size_t n, int64_t deadline, char *errstr,
                     size_t size)
{
	bool failed[KIN_PUT_RECORDS_MAX];
	char first[512] = "", what[900] = "";
	for (int attempt = 1;; attempt++) {
		size_t len;
		char *body = body_of(k, ps, idx, n, &len);
		kin_req_t *r = body ? kin_req_new("PutRecords", body, len) : NULL;
		if (!r)
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "kinesis sink: out of memory");
		kin_http_call(k->http, r);
		bool retry = true;
		if (!r->curl_rc && r->status == 200) {
			char why[256];
			int nf = kin_parse_put_records(r->resp, r->resp_len, n, failed, first, sizeof(first),
			                               why, sizeof(why));
			if (nf == 0) {
				kin_req_free(r);
				return SPATE_OK;
			}
			if (nf > 0) { /* only the entries that failed go again */
				size_t w = 0;
				for (size_t i = 0; i < n; i++)
					if (failed[i])
						idx[w++] = idx[i];
				n = w;
				snprintf(what, sizeof(what), "PutRecords: %d entries failed (first: %s)", nf,
				         first);
			} else {
				snprintf(what, sizeof(what), "PutRecords: HTTP 200: %s", why);
			}
		} else {
			kin_error_t e;
			kin_parse_error(r->resp, r->resp_len, &e);
			char rw[700];
			snprintf(rw, sizeof(rw), "PutRecords: %s", r->curl_rc ? r->curl_err : "");
			if (r->curl_rc)
				snprintf(what, sizeof(what), "%s", rw);
			else
				snprintf(what, sizeof(what), "PutRecords: HTTP %ld %s%s%s", r->status,
				         e.type[0] ? e.type : "(no error type)", e.message[0] ? ": " : "",
				         e.message);
			retry = r->curl_rc || kin_error_retryable(r->status, e.type);
		}
		kin_req_free(r);
		int64_t ms = KIN_BACKOFF_MIN_MS;
		for (int i = 1; i < attempt && ms < KIN_BACKOFF_MAX_MS; i++)
			ms *= 2;
		if (ms > KIN_BACKOFF_MAX_MS)
			ms = KIN_BACKOFF_MAX_MS;
		if (!retry || sp_now_ms() + ms > deadline)
			return sp_err(errstr, size, SPATE_ERR_SINK,
			              "kinesis sink: stream %s at %s: %s (%zu records not written%s)",
			              k->aws.stream, k->aws.endpoint, what, n,
			              retry ? ", kinesis.sink.timeout.ms passed" : "");
		sleep_ms(ms);
	}
}

static int ksink_write(sp_sink_t *s, const spate_push_record_t *recs, size_t n, char *errstr, size_t size)
{
	kin_sink_t *k = s->ctx;
	if (!n)
		return SPATE_OK;
	prep_t *ps = malloc(n * sizeof(*ps));
	size_t *idx = malloc(KIN_PUT_RECORDS_MAX * sizeof(*idx));
	if (!ps || !idx) {
		free(ps);
		free(idx);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "kinesis sink: out of memory");
	}
	int rc = SPATE_OK;
	for (size_t i = 0; i < n && !rc; i++)
		rc = prepare(k, &recs[i], &ps[i], i, errstr, size);
	int64_t deadline = sp_now_ms() + k->timeout_ms;
	for (size_t i = 0; i < n && !rc;) {
		size_t cnt = 0, bytes = 0;
		while (i < n && cnt < KIN_PUT_RECORDS_MAX &&
		       bytes + ps[i].data_len + ps[i].key_len <= KIN_PUT_BYTES_MAX) {
			bytes += ps[i].data_len + ps[i].key_len;
			idx[cnt++] = i++;
		}
		rc = put_batch(k, ps, idx, cnt, deadline, errstr, size);
	}
	free(ps);
	free(idx);
	return rc;
}

static size_t ksink_max(sp_sink_t *s)
{
	return KIN_RECORD_BYTES_MAX - KIN_KEY_MAX;
}

static void ksink_close(sp_sink_t *s)
{
	kin_sink_t *k = s->ctx;
	if (!k)
		return;
	kin_http_free(k->http);
	kin_aws_clear(&k->aws);
	free(k);
	s->ctx = NULL;
}

static int ksink_open(sp_sink_t *s, char *errstr, size_t size)
{
	const spate_conf_t *c = s->eng ? sp_engine_conf(s->eng) : s->conf;
	if (!s->arg || !*s->arg)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "kinesis sink: name the stream: kinesis:STREAM");
	kin_sink_t *k = calloc(1, sizeof(*k));
	if (!k)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	s->ctx = k;
	int rc = kin_aws_init(&k->aws, c, s->arg, errstr, size);
	if (rc)
		goto fail;
	kin_aws_stream_member(&k->aws, k->member, sizeof(k->member));
	k->timeout_ms = sp_conf_int(c, "kinesis.sink.timeout.ms");
	if (!(k->http = kin_http_new(&k->aws, errstr, size))) {
		rc = SPATE_ERR_SINK;
		goto fail;
	}
	/* the stream must exist: one DescribeStreamSummary, tried a few times */
	for (int tries = 1;; tries++) {
		char b[700];
		int n = snprintf(b, sizeof(b), "{%s}", k->member);
		char *body = strdup(b);
		kin_req_t *r = body ? kin_req_new("DescribeStreamSummary", body, (size_t)n) : NULL;
		if (!r) {
			rc = sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
			goto fail;
		}
		kin_http_call(k->http, r);
		if (!r->curl_rc && r->status == 200) {
			kin_req_free(r);
			break;
		}
		kin_error_t e;
		kin_parse_error(r->resp, r->resp_len, &e);
		bool again = r->curl_rc || kin_error_retryable(r->status, e.type);
		if (!again || tries >= KIN_OPEN_TRIES) {
			if (r->curl_rc)
				rc = sp_err(errstr, size, SPATE_ERR_SINK,
				            "kinesis sink: stream %s at %s: DescribeStreamSummary: %s",
				            k->aws.stream, k->aws.endpoint, r->curl_err);
			else
				rc = sp_err(
				    errstr, size, SPATE_ERR_SINK,
				    "kinesis sink: stream %s at %s: DescribeStreamSummary: HTTP %ld %s%s%s",
				    k->aws.stream, k->aws.endpoint, r->status,
				    e.type[0] ? e.type : "(no error type)", e.message[0] ? ": " : "",
				    e.message);
			kin_req_free(r);
			goto fail;
		}
		kin_req_free(r);
		sleep_ms(KIN_BACKOFF_MIN_MS << tries);
	}
	return SPATE_OK;
fail:
	ksink_close(s);
	return rc;
}

static const sp_opt_t kinesis_sink_opts[] = {
    {"kinesis.sink.timeout.ms", SP_OPT_INT, 100, 3600000, NULL, "30000",
     "kinesis sink: how long a write retries failed entries before it fails"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_sink_ops_t sp_sink_kinesis = {
    .version = SP_SINK_OPS_VERSION,
    .name = KIN_NAME,
    .desc =
        "Kinesis Data Streams through PutRecords: kinesis:STREAM (kinesis.region, credentials from AWS_*)",
    .opts = kinesis_sink_opts,
    .syntax = "kinesis:STREAM",
    .open = ksink_open,
    .write = ksink_write,
    .max_record_bytes = ksink_max,
    .close = ksink_close,
};
