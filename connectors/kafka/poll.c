/* poll.c - the Kafka source's poll() (see source.c for the whole picture): messages
 * taken from the consumer queue wait in a FIFO, the stash, and go out as chunks, one per
 * partition, in arrival order, whose records point into the rd_kafka_message_t's (no
 * copy); a chunk owns its messages and destroys them when released. What did not fit
 * (the budget, the chunk count) stays in the stash and goes first next time. A
 * partition's end (PARTITION_EOF) past its last record becomes a skip chunk.
 * @locality the engine thread (chunk release: the tracker thread).
 */
#include "consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sp_kafka_drain_pipe(ksrc_t *x)
{
	char buf[256];
	while (read(x->pipefd[0], buf, sizeof(buf)) > 0)
		;
}

/* ---- the stash ------------------------------------------------------------------- */

size_t sp_kafka_stash_len(const ksrc_t *x)
{
	return x->stash_n - x->stash_head;
}

/* What a message counts toward max.inflight.bytes. */
static uint64_t msg_bytes(const rd_kafka_message_t *m)
{
	return m->len + m->key_len + KSRC_MSG_OVERHEAD;
}

/* The stash is full: poll() takes no more from the queue (librdkafka's queue bounds
 * then stop its fetching). Over twice that (service() kept what arrived while poll()
 * was not called), every partition is paused. */
bool sp_kafka_stash_full(const ksrc_t *x, unsigned times)
{
	return sp_kafka_stash_len(x) >= x->stash_max * times || x->stash_bytes >= x->stash_max_bytes * times;
}

int sp_kafka_stash_push(ksrc_t *x, rd_kafka_message_t *m)
{
	if (x->stash_head && x->stash_head == x->stash_n)
		x->stash_head = x->stash_n = 0;
	if (x->stash_n == x->stash_cap) {
		if (x->stash_head) { /* compact first */
			memmove(x->stash, x->stash + x->stash_head,
			        sp_kafka_stash_len(x) * sizeof(*x->stash));
			x->stash_n -= x->stash_head;
			x->stash_head = 0;
		}
		if (x->stash_n == x->stash_cap) {
			size_t cap = x->stash_cap ? x->stash_cap * 2 : 1024;
			rd_kafka_message_t **n = realloc(x->stash, cap * sizeof(*n));
			if (!n)
				return SPATE_ERR_NOMEM;
			x->stash = n;
			x->stash_cap = cap;
		}
	}
	x->stash[x->stash_n++] = m;
	x->stash_bytes += msg_bytes(m);
	return SPATE_OK;
}

void sp_kafka_stash_drop(ksrc_t *x, const char *topic, int32_t partition)
{
	size_t w = x->stash_head;
	for (size_t i = x->stash_head; i < x->stash_n; i++) {
		rd_kafka_message_t *m = x->stash[i];
		if (m->partition == partition && m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), topic)) {
			x->stash_bytes -= msg_bytes(m);
			rd_kafka_message_destroy(m);
		} else
			x->stash[w++] = m;
	}
	x->stash_n = w;
}

void sp_kafka_stash_clear(ksrc_t *x)
{
	for (size_t i = x->stash_head; i < x->stash_n; i++)
		rd_kafka_message_destroy(x->stash[i]);
	x->stash_head = x->stash_n = 0;
	x->stash_bytes = 0;
}

void sp_kafka_stash_free(ksrc_t *x)
{
	sp_kafka_stash_clear(x);
	free(x->stash);
	free(x->sel);
	free(x->hdr);
	x->stash = NULL;
	x->sel = NULL;
	x->hdr = NULL;
}

/* ---- poll --------------------------------------------------------------------------- */

typedef struct group {
	kpart_t *k;
	uint32_t n, hdrs;
	uint64_t bytes;
	uint32_t fill;
	sp_chunk_t *c;
	rd_kafka_message_t **msgs;
} group_t;

static void release_msgs(sp_chunk_t *c, void *opaque)
{
	(void)opaque;
	rd_kafka_message_t **m = c->buf;
	for (uint32_t i = 0; m && i < c->n; i++)
		rd_kafka_message_destroy(m[i]);
	free(m);
	c->buf = NULL;
}

/* A consume error: PARTITION_EOF is the end of what there is; out of range is fatal;
 * the rest are transient (librdkafka retries) and logged. */
static int msg_error(ksrc_t *x, rd_kafka_message_t *m, char *errstr, size_t size)
{
	const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return SPATE_OK;
	if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
	    m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
		kpart_t *k = sp_kafka_kp_find(x, topic, m->partition);
		int64_t lo = -1, hi = -1;
		rd_kafka_get_watermark_offsets(x->rk, topic, m->partition, &lo, &hi);
		if (lo < 0)
			rd_kafka_query_watermark_offsets(x->rk, topic, m->partition, &lo, &hi,
			                                 KSRC_REQUEST_MS);
		int64_t at = k ? k->next : m->offset;
		return sp_err(errstr, size, SPATE_ERR_OUT_OF_RANGE,
		              "kafka/%s/%" PRId32 ": topic %s partition %" PRId32 ": offset %" PRId64
		              " is out of range (log start %" PRId64 ", end %" PRId64 "): offsets %" PRId64
		              "..%" PRId64 " were deleted before they were handled (%s)",
		              topic, m->partition, topic, m->partition, at, lo, hi, at, lo - 1,
		              rd_kafka_message_errstr(m));
	}
	char clean[512];
	sp_kafka_redact(&x->secrets, rd_kafka_message_errstr(m), clean, sizeof(clean));
	sp_msg(x->eng, SP_MSG_WARN, "kafka: consume error on %s [%" PRId32 "]: %s", topic, m->partition,
	       clean);
	return SPATE_OK;
}

/* The partition of message m: the previous message's, most of the time. */
static kpart_t *msg_part(ksrc_t *x, const rd_kafka_message_t *m)
{
	kpart_t *k = x->last;
	if (k && k->rkt == m->rkt && k->partition == m->partition)
		return k;
	if (!m->rkt)
		return NULL;
	k = sp_kafka_kp_find(x, rd_kafka_topic_name(m->rkt), m->partition);
	if (k)
		x->last = k;
	return k;
}

/* Take what the consumer queue has, up to the stash's room. */
static int take_queue(ksrc_t *x, char *errstr, size_t size)
{
	if (sp_kafka_stash_full(x, 1))
		return SPATE_OK;
	size_t want = x->stash_max - sp_kafka_stash_len(x);
	rd_kafka_message_t *buf[KSRC_BATCH];
	ssize_t got = rd_kafka_consume_batch_queue(x->q, 0, buf, want < KSRC_BATCH ? want : KSRC_BATCH);
	for (ssize_t i = 0; i < got; i++)
		if (sp_kafka_stash_push(x, buf[i])) {
			for (ssize_t j = i; j < got; j++)
				rd_kafka_message_destroy(buf[j]);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		}
	return SPATE_OK;
}

static int scratch_reserve(ksrc_t *x, size_t n)
{
	if (n <= x->scratch_cap)
		return SPATE_OK;
	size_t cap = x->scratch_cap ? x->scratch_cap : 1024;
	while (cap < n)
		cap *= 2;
	int8_t *sel = realloc(x->sel, cap * sizeof(*sel));
	if (sel)
		x->sel = sel;
	rd_kafka_headers_t **hdr = realloc(x->hdr, cap * sizeof(*hdr));
	if (hdr)
		x->hdr = hdr;
	if (!sel || !hdr)
		return SPATE_ERR_NOMEM;
	x->scratch_cap = cap;
	return SPATE_OK;
}

int sp_kafka_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	x->last_poll_ms = sp_now_ms();
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	sp_kafka_drain_pipe(x);
	/* what waits first, then the queue (which also serves rebalances) */
	int rc = take_queue(x, errstr, size);
	if (rc)
		return rc;
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	if (scratch_reserve(x, sp_kafka_stash_len(x)))
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	group_t groups[KSRC_MAX_GROUPS];
	/* tail gaps: a partition's end (EOF) past its last record: skip chunks after the groups */
	struct {
		kpart_t *k;
		int64_t to;
	} skips[KSRC_MAX_GROUPS];
	int ngroups = 0, nskips = 0, maxg = max < KSRC_MAX_GROUPS ? max : KSRC_MAX_GROUPS;
	uint64_t bytes = 0;
	size_t head = x->stash_head, i = head;
	int8_t *sel = x->sel - head;
	rd_kafka_headers_t **hdr = x->hdr - head;
	/* pass 1: which messages go into which chunk (a prefix of the stash is used up) */
	for (; i < x->stash_n; i++) {
		rd_kafka_message_t *m = x->stash[i];
		sel[i] = -1;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* everything before m->offset was delivered: offsets between the last
			 * record and it are transaction markers, aborted or compacted records */
			kpart_t *k = msg_part(x, m);
			if (k) {
				int64_t lo = -1, hi = -1;
				rd_kafka_get_watermark_offsets(x->rk, k->topic, k->partition, &lo, &hi);
				k->eof = m->offset;
				k->eof_hi = hi;
			}
			if (k && k->p && !k->releasing && m->offset > k->next) {
				if (ngroups + nskips == maxg)
					break;
				skips[nskips].k = k;
				skips[nskips++].to = m->offset - 1;
				k->next = m->offset;
			}
			continue;
		}
		if (m->err) {
			if ((rc = msg_error(x, m, errstr, size)))
				return rc; /* fatal: the stashed messages are destroyed at close */
			continue;
		}
		kpart_t *k = msg_part(x, m);
		if (!k || !k->p || k->releasing || m->offset < k->next)
			continue;    /* stale: revoked, or before the partition's start */
		int g = ngroups - 1; /* runs: the latest group first */
		while (g >= 0 && groups[g].k != k)
			g--;
		uint64_t b = msg_bytes(m);
		if ((g < 0 && ngroups + nskips == maxg) || (bytes && bytes + b > budget_bytes))
			break;
		if (g < 0) {
			g = ngroups++;
			groups[g] = (group_t){.k = k};
		}
		hdr[i] = NULL;
		if (x->want_hdrs && !rd_kafka_message_headers(m, &hdr[i]) && hdr[i])
			groups[g].hdrs += (uint32_t)rd_kafka_header_cnt(hdr[i]);
		groups[g].n++;
		groups[g].bytes += b;
		bytes += b;
		sel[i] = (int8_t)g;
		k->next = m->offset + 1;
	}
	size_t cut = i;
	/* pass 2: allocate the chunks */
	for (int g = 0; g < ngroups; g++) {
		groups[g].c = sp_chunk_new_bare(groups[g].k->p, groups[g].n, groups[g].hdrs);
		groups[g].msgs = malloc(groups[g].n * sizeof(rd_kafka_message_t *));
		if (!groups[g].c || !groups[g].msgs) {
			for (int j = 0; j <= g; j++) {
				sp_chunk_free(groups[j].c);
				free(groups[j].msgs);
			}
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory for %u records",
			              groups[g].n);
		}
		groups[g].c->bytes = groups[g].bytes;
		groups[g].hdrs = 0; /* from now: headers used */
	}
	/* pass 3: fill them; everything before cut leaves the stash */
	for (size_t j = head; j < cut; j++) {
		rd_kafka_message_t *m = x->stash[j];
		x->stash_bytes -= msg_bytes(m);
		int g = sel[j];
		if (g < 0) {
			rd_kafka_message_destroy(m);
			continue;
		}
		group_t *gr = &groups[g];
		spate_record_t *r = &gr->c->recs[gr->fill];
		rd_kafka_timestamp_type_t tt;
		int64_t ts = rd_kafka_message_timestamp(m, &tt);
		*r = (spate_record_t){
		    .version = SPATE_RECORD_VERSION,
		    .key = m->key,
		    .key_len = m->key_len,
		    .value = m->payload,
		    .value_len = m->len,
		    .timestamp_ms = ts >= 0 ? ts : sp_wall_ms(),
		    .partition = &gr->k->p->pub,
		    .position = sp_pos((uint64_t)m->offset),
		};
		rd_kafka_headers_t *h = hdr[j];
		if (h) {
			size_t hc = rd_kafka_header_cnt(h);
			r->headers = &gr->c->hdrs[gr->hdrs];
			r->header_cnt = hc;
			for (size_t q = 0; q < hc; q++) {
				const char *name;
				const void *val;
				size_t vlen;
				rd_kafka_header_get_all(h, q, &name, &val, &vlen);
				gr->c->hdrs[gr->hdrs++] = (spate_header_t){name, strlen(name), val, vlen};
			}
		}
		gr->msgs[gr->fill++] = m;
	}
	x->stash_head = cut;
	if (x->stash_head == x->stash_n)
		x->stash_head = x->stash_n = 0;
	int nout = 0;
	for (int g = 0; g < ngroups; g++) {
		sp_chunk_t *c = groups[g].c;
		c->buf = groups[g].msgs;
		c->release = release_msgs;
		out[nout++] = c;
	}
	for (int j = 0; j < nskips; j++) {
		sp_chunk_t *c = sp_chunk_skip(skips[j].k->p, sp_pos((uint64_t)skips[j].to));
		if (!c) {
			for (int q = 0; q < nout; q++)
				sp_chunk_free(out[q]);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		}
		sp_msg(x->eng, SP_MSG_DEBUG,
		       "%s: offsets up to %" PRId64 " hold no records (end of the partition)",
		       skips[j].k->p->pub.name, skips[j].to);
		out[nout++] = c;
	}
	return nout;
}
