/* source.c - Kinesis Data Streams as a source (`source=kinesis`), over the JSON API
 * (application/x-amz-json-1.1, X-Amz-Target: Kinesis_20131202.<Op>).
 *
 * Keys: kinesis.stream (name or ARN), kinesis.region, kinesis.endpoint, and the AWS
 * credentials from the environment (aws.c). Every shard is a partition named
 * kinesis/STREAM/SHARD; shards.c keeps the table (ListShards, the shard sync, parents).
 *
 * Threads: one I/O thread (http.c) serves every shard: it only moves bytes. The engine
 * thread, in poll(), takes the finished requests, parses them (JSON, base64, KPL:
 * parse.c, kpl.c) into chunks, and sends the next requests. At most one request per
 * shard is in flight, so replies of a shard come in order.
 *
 * A shard's reading: GetShardIterator (TRIM_HORIZON, LATEST, AT_TIMESTAMP,
 * AFTER_SEQUENCE_NUMBER or AT_SEQUENCE_NUMBER, see seek), then GetRecords with the
 * NextShardIterator of each reply, at most 5 calls a second, Limit from the engine's
 * bounds (the poll's byte budget over the average record, at most the shard's share of
 * max.inflight.records, at most 10,000), and after a reply of B bytes no call before B / 2 MiB s (a shard
 * reads 2 MiB/s; a 10 MiB reply waits 5 s, as the API asks). A shard that is caught up (no records and
 * MillisBehindLatest 0) waits kinesis.idle.ms. A paused partition is not fetched.
 * The record key is the partition key, the timestamp ApproximateArrivalTimestamp, the
 * position (sequence number, sub-sequence number), lag() the largest MillisBehindLatest.
 *
 * Errors: ProvisionedThroughputExceeded, LimitExceeded, other throttling, 5xx and
 * transport errors are retried with backoff (100 ms doubling to 10 s);
 * ExpiredIteratorException re-acquires AFTER_SEQUENCE_NUMBER of the last record
 * fetched (not the checkpoint: nothing is fetched twice), or the shard's first start
 * when nothing was fetched yet; a malformed reply is retried a few times, then fatal;
 * any other error is fatal and names the stream, shard, operation, HTTP status, AWS's
 * error type and the position.
 *
 * Lease mode (a store with leases, engine/lease.c): each shard is a lease candidate;
 * take() registers the shard the engine holds the lease of, released() forgets it (its
 * chunks not yet polled are freed, a reply still in flight is dropped by its gen), and
 * under stop.at.end part_ended() says when a shard was read to the end noted for it.
 *
 * End of a shard: a reply without NextShardIterator (the shard was closed and is read)
 * hands over its records and then a skip chunk to SHARD_END, so the checkpoint becomes
 * SHARD_END once they are DONE; the children start when the store shows that.
 *
 * @locality every callback on the engine thread; chunk release on the tracker thread
 * (the engine thread too).
 */
#include "source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const char *const it_names[] = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER",
                                       "AT_SEQUENCE_NUMBER"};

/* Where a shard is, for messages: the last record fetched, else how it starts. */
static const char *where(const kshard_t *s, char *buf, size_t size)
{
	if (s->has_last)
		snprintf(buf, size, "after sequence number %s", s->last_seq);
	else if (s->it_kind == IT_AFTER_SEQ || s->it_kind == IT_AT_SEQ)
		snprintf(buf, size, "%s %s", it_names[s->it_kind], s->it_seq);
	else if (s->it_kind == IT_AT_TIMESTAMP)
		snprintf(buf, size, "AT_TIMESTAMP %" PRId64 " ms", s->it_ts_ms);
	else
		snprintf(buf, size, "%s", it_names[s->it_kind]);
	return buf;
}

/* ---- requests of a shard ----------------------------------------------------------- */

static void ask_iterator(kin_src_t *x, kshard_t *s)
{
	char b[1400];
	size_t n = (size_t)snprintf(b, sizeof(b), "{%s,\"ShardId\":\"%s\",\"ShardIteratorType\":\"%s\"",
	                            x->stream_member, s->id, it_names[s->it_kind]);
	if (s->it_kind == IT_AFTER_SEQ || s->it_kind == IT_AT_SEQ)
		n += (size_t)snprintf(b + n, sizeof(b) - n, ",\"StartingSequenceNumber\":\"%s\"", s->it_seq);
	else if (s->it_kind == IT_AT_TIMESTAMP)
		n += (size_t)snprintf(b + n, sizeof(b) - n, ",\"Timestamp\":%" PRId64 ".%03d",
		                      s->it_ts_ms / 1000, (int)(s->it_ts_ms % 1000));
	n += (size_t)snprintf(b + n, sizeof(b) - n, "}");
	char *body = strdup(b);
	kin_req_t *r = body ? kin_req_new("GetShardIterator", body, n) : NULL;
	if (!r)
		return; /* tried again on the next turn */
	r->kind = RQ_ITER;
	r->shard = s;
	r->gen = s->gen;
	s->state = KS_BUSY;
	kin_send(x, r);
}

static void ask_records(kin_src_t *x, kshard_t *s, uint64_t budget)
{
	uint64_t per = (uint64_t)s->avg_rec + SP_CHUNK_REC_COST;
	uint64_t limit = budget / per;
	if (limit < 1)
		limit = 1;
	/* and at most a shard's share of max.inflight.records */
	uint64_t share =
	    (uint64_t)sp_conf_int(x->conf, "max.inflight.records") / (x->nshards ? x->nshards : 1);
	if (limit > share)
		limit = share ? share : 1;
	if (limit > KIN_GET_LIMIT_MAX)
		limit = KIN_GET_LIMIT_MAX;
	size_t cap = strlen(s->iter) + 64;
	char *b = malloc(cap);
	if (!b)
		return;
	int n = snprintf(b, cap, "{\"ShardIterator\":\"%s\",\"Limit\":%" PRIu64 "}", s->iter, limit);
	kin_req_t *r = kin_req_new("GetRecords", b, (size_t)n);
	if (!r)
		return;
	r->kind = RQ_GET;
	r->shard = s;
	r->gen = s->gen;
	int64_t now = sp_now_ms();
	s->calls[s->call_at] = now;
	s->call_at = (s->call_at + 1) % KIN_GETS_PER_S;
	s->state = KS_BUSY;
	kin_send(x, r);
}

static int64_t backoff_ms(int n)
{
	int64_t ms = KIN_BACKOFF_MIN_MS;
	for (int i = 1; i < n && ms < KIN_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < KIN_BACKOFF_MAX_MS ? ms : KIN_BACKOFF_MAX_MS;
}

/* ---- replies ------------------------------------------------------------------------- */

static void release_buf(sp_chunk_t *c, void *opaque)
{
	(void)opaque;
	free(c->buf);
	c->buf = NULL;
}

static void push_chunk(kin_src_t *x, sp_chunk_t *c)
{
	x->ready[x->nready++] = c;
}

/* Records of a reply -> one chunk (the reply's buffer goes with it). */
static int make_chunk(kin_src_t *x, kshard_t *s, kin_records_t *rr)
{
	size_t first = 0;
	if (s->has_filter) { /* AT_SEQUENCE_NUMBER after a checkpoint inside an aggregate */
		while (first < rr->n && spate_position_cmp(&rr->recs[first].pos, &s->filter) <= 0)
			first++;
		if (first < rr->n)
			s->has_filter = false; /* past the checkpoint */
	}
	size_t n = rr->n - first;
	if (!n)
		return SPATE_OK;
	sp_chunk_t *c = sp_chunk_new_bare(s->p, (uint32_t)n, (uint32_t)rr->nhdrs);
	if (!c)
		return SPATE_ERR_NOMEM;
	uint32_t h = 0;
	for (size_t i = 0; i < n; i++) {
		const kin_rec_t *k = &rr->recs[first + i];
		spate_record_t *r = &c->recs[i];
		*r = (spate_record_t){.version = SPATE_RECORD_VERSION,
		                      .key = k->key,
		                      .key_len = k->key_len,
		                      .value = k->data,
		                      .value_len = k->data_len,
		                      .timestamp_ms = k->ts_ms ? k->ts_ms : sp_wall_ms(),
		                      .partition = &s->p->pub,
		                      .position = k->pos};
		if (k->hdr_n) {
			r->headers = &c->hdrs[h];
			r->header_cnt = k->hdr_n;
			memcpy(&c->hdrs[h], &rr->hdrs[k->hdr_at], k->hdr_n * sizeof(spate_header_t));
			h += k->hdr_n;
		}
	}
	c->bytes = rr->buf_len + n * 16;
	c->buf = rr->buf;
	c->release = release_buf;
	rr->buf = NULL; /* the chunk owns it */
	s->avg_rec = s->avg_rec * 0.5 + 0.5 * ((double)c->bytes / (double)n);
	s->last_pos = rr->recs[rr->n - 1].pos;
	s->handed = true;
	push_chunk(x, c);
	return SPATE_OK;
}

static void end_of_shard(kin_src_t *x, kshard_t *s, const kin_records_t *rr)
{
	sp_chunk_t *c = sp_chunk_skip(s->p, sp_pos_closed());
	if (!c) {
		kin_fatal(x, SPATE_ERR_NOMEM, "out of memory");
		return;
	}
	push_chunk(x, c);
	s->state = KS_ENDED;
	free(s->iter);
	s->iter = NULL;
	sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO, "stream %s: shard %s is read to its end (SHARD_END)%s",
	            x->aws.stream, s->id, rr->n_children ? "; its children come next" : "");
	for (size_t i = 0; i < rr->n_children; i++)
		if (!kin_shard_find(x, rr->children[i]))
			sp_msg_from(x->eng, KIN_NAME, SP_MSG_DEBUG,
			            "stream %s: child shard %s (from ChildShards)", x->aws.stream,
			            rr->children[i]);
	kin_sync_maybe(x, true); /* the children (ListShards names their parents) */
}

static void on_records(kin_src_t *x, kshard_t *s, kin_req_t *r)
{
	char why[300], pos[SPATE_POSITION_MAX + 40];
	kin_records_t rr;
	int rc = kin_parse_records(r->resp, r->resp_len, &rr, why, sizeof(why));
	if (rc == SPATE_ERR_CORRUPT) {
		if (++s->malformed_n >= KIN_MALFORMED_TRIES) {
			kin_fatal(x, SPATE_ERR_SOURCE,
			          "kinesis: stream %s shard %s: GetRecords: HTTP %ld: malformed reply (%s), "
			          "%d times in a row, "
			          "%s",
			          x->aws.stream, s->id, r->status, why, s->malformed_n,
			          where(s, pos, sizeof(pos)));
			return;
		}
		sp_msg_from(x->eng, KIN_NAME, SP_MSG_WARN,
		            "stream %s shard %s: GetRecords: malformed reply (%s); asking again",
		            x->aws.stream, s->id, why);
		s->state = KS_READY;
		s->not_before = sp_now_ms() + backoff_ms(s->malformed_n);
		return;
	}
	if (rc) {
		kin_fatal(x, rc, "kinesis: stream %s shard %s: GetRecords: %s", x->aws.stream, s->id, why);
		return;
	}
	s->malformed_n = 0;
	s->backoff_n = 0;
	size_t kinesis_recs = rr.last_seq ? 1 : 0; /* any record at all */
	if ((rc = make_chunk(x, s, &rr))) {
		kin_records_free(&rr);
		kin_fatal(x, rc, "out of memory for a chunk of %zu records", rr.n);
		return;
	}
	if (rr.last_seq) {
		snprintf(s->last_seq, sizeof(s->last_seq), "%s", rr.last_seq);
		s->has_last = true;
	}
	if (rr.bad_aggregates)
		sp_msg_from(x->eng, KIN_NAME, SP_MSG_DEBUG,
		            "stream %s shard %s: %u records with the KPL magic failed their MD5 or body: "
		            "handed on as plain "
		            "records",
		            x->aws.stream, s->id, rr.bad_aggregates);
	s->behind_ms = rr.behind_ms;
	int64_t now = sp_now_ms();
	bool caught_up = !kinesis_recs && rr.behind_ms <= 0;
	if (x->stop_at_end && s->at_open && !s->closed && caught_up && !s->end_noted) {
		s->end_noted = true; /* the end of an open shard: what was read when it caught up */
		s->p->has_end = s->handed;
		if (s->handed)
			s->p->end = s->last_pos;
	}
	if (!rr.next_iter) {
		end_of_shard(x, s, &rr);
	} else {
		free(s->iter);
		s->iter = rr.next_iter;
		rr.next_iter = NULL;
		s->state = KS_READY;
		/* the shard reads 2 MiB/s: a reply of B bytes waits B / 2 MiB s (10 MiB: 5 s) */
		int64_t pace = (int64_t)((uint64_t)rr.data_bytes * 1000 / KIN_SHARD_READ_BPS);
		int64_t nb = now + pace;
		if (caught_up && now + x->idle_ms > nb)
			nb = now + x->idle_ms;
		s->not_before = nb;
	}
	kin_records_free(&rr);
}

/* An error reply of a shard's request. */
static void on_shard_error(kin_src_t *x, kshard_t *s, kin_req_t *r, int next_state)
{
	char what[900], pos[SPATE_POSITION_MAX + 40];
	kin_error_t e;
	kin_parse_error(r->resp, r->resp_len, &e);
	kin_req_what(r, what, sizeof(what));
	if (!r->curl_rc && !strcmp(e.type, "ExpiredIteratorException")) {
		/* re-acquire after the last record fetched: nothing is fetched twice */
		if (s->has_last) {
			s->it_kind = IT_AFTER_SEQ;
			snprintf(s->it_seq, sizeof(s->it_seq), "%s", s->last_seq);
			s->has_filter = false;
		}
		sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO,
		            "stream %s shard %s: the iterator expired; asking for a new one %s",
		            x->aws.stream, s->id, where(s, pos, sizeof(pos)));
		free(s->iter);
		s->iter = NULL;
		s->state = KS_NEED_ITER;
		return;
	}
	if (r->curl_rc || kin_error_retryable(r->status, e.type)) {
		s->backoff_n++;
		int64_t ms = backoff_ms(s->backoff_n);
		sp_msg_from(x->eng, KIN_NAME, s->backoff_n > 3 ? SP_MSG_WARN : SP_MSG_DEBUG,
		            "stream %s shard %s: %s (attempt %d; again in %" PRId64 " ms)", x->aws.stream,
		            s->id, what, s->backoff_n, ms);
		s->state = next_state;
		s->not_before = sp_now_ms() + ms;
		return;
	}
	kin_fatal(x, SPATE_ERR_SOURCE, "kinesis: stream %s shard %s: %s (%s)", x->aws.stream, s->id, what,
	          where(s, pos, sizeof(pos)));
}

static void on_reply(kin_src_t *x, kin_req_t *r)
{
	x->inflight--;
	if (r->kind == RQ_LIST) {
		kin_on_list(x, r);
		return;
	}
	kshard_t *s = r->shard;
	if (!s->p || r->gen != s->gen)
		return; /* its partition was released meanwhile (lease mode) */
	bool ok = !r->curl_rc && r->status == 200;
	if (r->kind == RQ_ITER) {
		if (!ok) {
			on_shard_error(x, s, r, KS_NEED_ITER);
			return;
		}
		char why[300], pos[SPATE_POSITION_MAX + 40];
		free(s->iter);
		int rc = kin_parse_iterator(r->resp, r->resp_len, &s->iter, why, sizeof(why));
		if (rc == SPATE_ERR_CORRUPT && ++s->malformed_n < KIN_MALFORMED_TRIES) {
			s->state = KS_NEED_ITER;
			s->not_before = sp_now_ms() + backoff_ms(s->malformed_n);
			return;
		}
		if (rc) {
			kin_fatal(x, rc, "kinesis: stream %s shard %s: GetShardIterator: HTTP %ld: %s (%s)",
			          x->aws.stream, s->id, r->status, why, where(s, pos, sizeof(pos)));
			return;
		}
		s->malformed_n = 0;
		s->backoff_n = 0;
		s->state = KS_READY;
		return;
	}
	if (!ok) {
		on_shard_error(x, s, r, KS_READY);
		return;
	}
	on_records(x, s, r);
}

/* Take what the I/O thread finished. */
static void take_done(kin_src_t *x)
{
	uint64_t v;
	ssize_t rd = read(x->evfd, &v, sizeof(v));
	(void)rd;
	pthread_mutex_lock(&x->mu);
	kin_req_t *r = x->done_head;
	x->done_head = x->done_tail = NULL;
	pthread_mutex_unlock(&x->mu);
	while (r) {
		kin_req_t *next = r->next;
		on_reply(x, r);
		kin_req_free(r);
		r = next;
	}
}

/* Send what is due: iterators, records (not of paused shards, at most 5 calls/s). */
static void schedule(kin_src_t *x, uint64_t budget)
{
	int64_t now = sp_now_ms();
	for (size_t i = 0; i < x->nshards && x->nready < KSRC_MAX_CHUNKS - 2; i++) {
		kshard_t *s = x->shards[i];
		if (!s->p || now < s->not_before)
			continue;
		if (s->state == KS_WAIT_PARENTS && now >= s->gate_at) {
			s->gate_at = now + KSRC_GATE_CHECK_MS;
			if (kin_parents_done(x, s)) {
				sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO,
				            "stream %s: shard %s starts: its parents are at SHARD_END",
				            x->aws.stream, s->id);
				s->state = KS_NEED_ITER;
			}
		}
		if (s->state == KS_NEED_ITER) {
			ask_iterator(x, s);
		} else if (s->state == KS_READY && !s->p->paused && !(x->stop_at_end && s->end_noted)) {
			int64_t oldest = s->calls[s->call_at]; /* the call KIN_GETS_PER_S calls ago */
			if (oldest && now - oldest < 1000) {
				s->not_before = oldest + 1000;
				continue;
			}
			ask_records(x, s, budget);
		}
	}
}

/* ---- the plugin ---------------------------------------------------------------------------- */

static void ksrc_free(kin_src_t *x)
{
	if (!x)
		return;
	kin_http_free(x->http); /* ends what runs: their done callbacks queue them */
	pthread_mutex_lock(&x->mu);
	kin_req_t *r = x->done_head;
	x->done_head = x->done_tail = NULL;
	pthread_mutex_unlock(&x->mu);
	while (r) {
		kin_req_t *n = r->next;
		kin_req_free(r);
		r = n;
	}
	for (int i = 0; i < x->nready; i++)
		sp_chunk_free(x->ready[i]);
	for (size_t i = 0; i < x->nshards; i++) {
		kshard_t *s = x->shards[i];
		free(s->id);
		free(s->parent);
		free(s->adj);
		free(s->iter);
		free(s);
	}
	free(x->shards);
	kin_shard_list_free(&x->list);
	if (x->evfd >= 0)
		close(x->evfd);
	pthread_mutex_destroy(&x->mu);
	kin_aws_clear(&x->aws);
	free(x);
}

static int ksrc_open(sp_source_t *s, char *errstr, size_t size)
{
	if (s->arg && *s->arg)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "source: kinesis takes no argument (\"kinesis:%s\"); name the stream with "
		              "kinesis.stream=",
		              s->arg);
	kin_src_t *x = calloc(1, sizeof(*x));
	if (!x)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	x->eng = s->eng;
	x->conf = sp_engine_conf(s->eng);
	x->evfd = -1;
	pthread_mutex_init(&x->mu, NULL);
	int rc = kin_aws_init(&x->aws, x->conf, NULL, errstr, size);
	if (rc)
		goto fail;
	kin_aws_stream_member(&x->aws, x->stream_member, sizeof(x->stream_member));
	x->stop_at_end = sp_conf_bool(x->conf, "stop.at.end");
	const char *store = sp_conf_str(x->conf, "store");
	x->no_store = !*store || !strcmp(store, "none"); /* the source has no default store */
	x->sync_ms = sp_conf_int(x->conf, "kinesis.shard.sync.ms");
	x->idle_ms = sp_conf_int(x->conf, "kinesis.idle.ms");
	x->resolve_ms = sp_wall_ms();
	x->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (x->evfd < 0) {
		rc = sp_err(errstr, size, SPATE_ERR_SOURCE, "kinesis: eventfd: %s", strerror(errno));
		goto fail;
	}
	if (!(x->http = kin_http_new(&x->aws, errstr, size))) {
		rc = SPATE_ERR_SOURCE;
		goto fail;
	}
	x->leased = sp_engine_leased(x->eng);
	if ((rc = kin_list_sync(x, errstr, size)) || (rc = kin_shards_merge(x, errstr, size)))
		goto fail;
	if (!x->nshards) {
		rc =
		    sp_err(errstr, size, SPATE_ERR_SOURCE, "kinesis: stream %s has no shards", x->aws.stream);
		goto fail;
	}
	x->next_sync = sp_now_ms() + x->sync_ms;
	sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO, "stream %s at %s: %zu shards", x->aws.stream,
	            x->aws.endpoint, x->nshards);
	s->ctx = x;
	return SPATE_OK;
fail:
	ksrc_free(x);
	return rc;
}

static int ksrc_seek(sp_source_t *src, sp_part_t *p, const sp_ckpt_t *ck, sp_ckpt_t *resolved, char *errstr,
                     size_t size)
{
	kin_src_t *x = src->ctx;
	kshard_t *s = p->src_ctx;
	s->state = s->parent || s->adj ? KS_WAIT_PARENTS : KS_NEED_ITER;
	s->has_filter = false;
	if (ck) {
		char seq[SPATE_POSITION_MAX];
		if (ck->beginning) {
			s->it_kind = IT_TRIM_HORIZON;
		} else if (sp_pos_is_closed(&ck->after)) {
			s->state = KS_ENDED; /* read to its end by an earlier run */
			s->end_noted = true;
		} else if (!sp_pos_is_wide(&ck->after) ||
		           sp_position_seq_fmt(&ck->after, seq, sizeof(seq)) < 0) {
			char b[SPATE_POSITION_MAX];
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "%s: checkpoint %s is not a Kinesis position (SEQ.SUB)", p->pub.name,
			              spate_position_fmt(&ck->after, b, sizeof(b)));
		} else if (!strcmp(seq, "0")) {
			/* a start resolved at a time, before any record was DONE (see below) */
			s->it_kind = IT_AT_TIMESTAMP;
			s->it_ts_ms = (int64_t)ck->after.w[2];
		} else if (ck->after.w[2] == 0) {
			s->it_kind = IT_AFTER_SEQ; /* a plain record */
			snprintf(s->it_seq, sizeof(s->it_seq), "%s", seq);
		} else {
			/* inside a KPL aggregate: read it again and drop its sub-records up to here */
			s->it_kind = IT_AT_SEQ;
			snprintf(s->it_seq, sizeof(s->it_seq), "%s", seq);
			s->has_filter = true;
			s->filter = ck->after;
		}
		return SPATE_OK;
	}
	/* no checkpoint: a shard that appeared while running is a child (TRIM_HORIZON);
	 * otherwise starting.position, resolved to something concrete and saved at once
	 * (in lease mode also when its lease is first taken after the run began) */
	const char *sp = sp_conf_str(x->conf, "starting.position");
	memset(resolved, 0, sizeof(*resolved));
	if (!s->at_open || !strcmp(sp, "earliest")) {
		s->it_kind = IT_TRIM_HORIZON;
		resolved->beginning = true;
		return SPATE_OK;
	}
	int64_t t = x->resolve_ms;
	if (!strncmp(sp, "at-timestamp:", 13))
		t = strtoll(sp + 13, NULL, 10);
	else if (s->closed) {
		/* latest on a closed shard: it holds nothing newer */
		s->state = KS_ENDED;
		s->end_noted = true;
		resolved->after = sp_pos_closed();
		return SPATE_OK;
	}
	if (x->no_store && strncmp(sp, "at-timestamp:", 13)) {
		s->it_kind = IT_LATEST; /* nothing is saved: the API's LATEST */
		resolved->beginning = true;
		return SPATE_OK;
	}
	/* latest or at-timestamp with a store: AT_TIMESTAMP t, saved as position "0.t"
	 * (sequence number 0 is below every real one), so a restart starts at the same
	 * time and skips nothing that came after it */
	s->it_kind = IT_AT_TIMESTAMP;
	s->it_ts_ms = t;
	if (sp_position_wide("0", 1, (uint64_t)t, &resolved->after))
		resolved->beginning = true;
	return SPATE_OK;
}

static int ksrc_poll(sp_source_t *src, sp_chunk_t **out, int max, uint64_t budget, char *errstr, size_t size)
{
	kin_src_t *x = src->ctx;
	x->running = true;
	take_done(x);
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	kin_sync_maybe(x, false);
	schedule(x, budget);
	if (x->fatal_rc)
		return sp_err(errstr, size, x->fatal_rc, "%s", x->fatal);
	int n = x->nready < max ? x->nready : max;
	memcpy(out, x->ready, (size_t)n * sizeof(*out));
	memmove(x->ready, x->ready + n, (size_t)(x->nready - n) * sizeof(*out));
	x->nready -= n;
	return n;
}

static int ksrc_fd(sp_source_t *src)
{
	kin_src_t *x = src->ctx;
	return x->evfd;
}

static int ksrc_next_ms(sp_source_t *src)
{
	kin_src_t *x = src->ctx;
	if (x->nready)
		return 0;
	int64_t now = sp_now_ms(), next = now + KSRC_TICK_MS * 20;
	for (size_t i = 0; i < x->nshards; i++) {
		kshard_t *s = x->shards[i];
		if (s->state == KS_BUSY || s->state == KS_ENDED || s->state == KS_UNSTARTED || !s->p ||
		    (x->stop_at_end && s->end_noted && s->state == KS_READY))
			continue;
		int64_t t =
		    s->state == KS_WAIT_PARENTS && s->gate_at > s->not_before ? s->gate_at : s->not_before;
		if (s->state == KS_READY && s->p && s->p->paused)
			t = now + KSRC_TICK_MS;
		if (t < next)
			next = t;
	}
	if (next < now)
		next = now;
	return (int)(next - now);
}

static int64_t ksrc_lag(sp_source_t *src)
{
	kin_src_t *x = src->ctx;
	int64_t lag = -1;
	for (size_t i = 0; i < x->nshards; i++)
		if (x->shards[i]->behind_ms > lag)
			lag = x->shards[i]->behind_ms;
	return lag;
}

/* A shard's MillisBehindLatest from its last GetRecords (the metrics' iterator age). */
static int64_t ksrc_part_behind_ms(sp_source_t *src, sp_part_t *p)
{
	(void)src;
	const kshard_t *s = p->src_ctx;
	return s ? s->behind_ms : -1;
}

static bool ksrc_ended(sp_source_t *src)
{
	kin_src_t *x = src->ctx;
	if (!x->stop_at_end)
		return false;
	for (size_t i = 0; i < x->nshards; i++) {
		kshard_t *s = x->shards[i];
		if (s->at_open && s->state != KS_ENDED && !s->end_noted)
			return false;
	}
	return x->nready == 0;
}

/* Lease mode: this process took the lease of shard index; register it (the engine then
 * starts it at the lease's checkpoint through seek). */
static sp_part_t *ksrc_take(sp_source_t *src, int index, char *errstr, size_t size)
{
	kin_src_t *x = src->ctx;
	if (index < 0 || (size_t)index >= x->nshards || x->shards[index]->p) {
		sp_err(errstr, size, SPATE_ERR_INVALID, "kinesis: stream %s: no shard %d to take",
		       x->aws.stream, index);
		return NULL;
	}
	kshard_t *s = x->shards[index];
	sp_part_t *p = sp_engine_add_partition(x->eng, KIN_NAME, x->aws.stream, -1, s->id);
	if (!p) {
		sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		return NULL;
	}
	p->src_ctx = s;
	s->p = p;
	s->state = KS_UNSTARTED;
	s->has_last = s->handed = s->end_noted = s->has_filter = false;
	s->backoff_n = s->malformed_n = 0;
	s->not_before = s->gate_at = 0;
	s->behind_ms = -1;
	return p;
}

/* Partition p was released (lease mode: its lease was lost or given up): forget it.
 * Its chunks not yet polled are freed; a request still in flight is dropped when it
 * comes back (its gen is older). */
static void ksrc_released(sp_source_t *src, sp_part_t *p, bool saved)
{
	(void)saved;
	kin_src_t *x = src->ctx;
	kshard_t *s = p->src_ctx;
	if (!x || !s || s->p != p)
		return;
	int k = 0;
	for (int i = 0; i < x->nready; i++) {
		if (x->ready[i]->part == p)
			sp_chunk_free(x->ready[i]);
		else
			x->ready[k++] = x->ready[i];
	}
	x->nready = k;
	s->p = NULL;
	s->gen++;
	free(s->iter);
	s->iter = NULL;
	s->state = KS_UNSTARTED;
	s->behind_ms = -1;
}

/* Lease mode, stop.at.end: shard p was read to its end (SHARD_END, or caught up: the
 * end noted then is p->has_end / p->end) and every chunk of it was polled. */
static bool ksrc_part_ended(sp_source_t *src, sp_part_t *p)
{
	kin_src_t *x = src->ctx;
	const kshard_t *s = p->src_ctx;
	if (!x->stop_at_end || !s || s->p != p || (s->state != KS_ENDED && !s->end_noted) ||
	    s->state == KS_BUSY)
		return false;
	for (int i = 0; i < x->nready; i++)
		if (x->ready[i]->part == p)
			return false;
	return true;
}

static void ksrc_close(sp_source_t *src)
{
	ksrc_free(src->ctx);
	src->ctx = NULL;
}

static uint64_t ksrc_min_inflight(sp_source_t *src, char *why, size_t size)
{
	snprintf(why, size, "one GetRecords reply of 1 MiB");
	return 1 << 20;
}

/* The keys of the Kinesis connector (the sink and DLQ read them too). */
static const sp_opt_t kinesis_opts[] = {
    {"kinesis.stream", SP_OPT_STR, 0, 0, NULL, "", "kinesis source: the stream, a name or an ARN"},
    {"kinesis.region", SP_OPT_STR, 0, 0, NULL, "",
     "kinesis: the AWS region (unset: from the ARN, AWS_REGION or AWS_DEFAULT_REGION)"},
    {"kinesis.endpoint", SP_OPT_STR, 0, 0, NULL, "",
     "kinesis: the endpoint URL (unset: https://kinesis.REGION.amazonaws.com)"},
    {"kinesis.shard.sync.ms", SP_OPT_INT, 100, 3600000, NULL, "10000",
     "kinesis source: list the shards this often (new shards after resharding)"},
    {"kinesis.idle.ms", SP_OPT_INT, 0, 60000, NULL, "1000",
     "kinesis source: a caught-up shard waits this long between GetRecords calls"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_source_ops_t sp_source_kinesis = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = KIN_NAME,
    .desc = "Kinesis Data Streams: kinesis.stream=NAME kinesis.region=R (credentials from AWS_* variables)",
    .opts = kinesis_opts,
    .syntax = "kinesis",
    .open = ksrc_open,
    .seek = ksrc_seek,
    .poll = ksrc_poll,
    .fd = ksrc_fd,
    .next_ms = ksrc_next_ms,
    .min_inflight_bytes = ksrc_min_inflight,
    .lag = ksrc_lag,
    .part_behind_ms = ksrc_part_behind_ms,
    .ended = ksrc_ended,
    .close = ksrc_close,
    .released = ksrc_released,
    .take = ksrc_take,
    .part_ended = ksrc_part_ended,
};
