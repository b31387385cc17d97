/* shards.c - the Kinesis source's shard table.
 *
 * ListShards is walked page by page: the first page names the stream, every later page
 * sends only the NextToken (the API refuses both), and a token older than 300 s, or one
 * the service calls expired, restarts the walk. At open the walk is synchronous; later
 * one runs every kinesis.shard.sync.ms through the I/O thread, and at once when a shard
 * was read to its end (its children appear then: ChildShards in the GetRecords reply
 * when the service sends them, ListShards' ParentShardId and AdjacentParentShardId
 * otherwise, as kinesalite).
 *
 * Every listed shard is a partition ("kinesis/STREAM/SHARD"); shards that appear later
 * are added and started then (a child without a checkpoint starts at TRIM_HORIZON).
 * In lease mode (a store with leases: several processes share the stream) a shard is
 * only named to the engine as a lease candidate, with its parents; the engine takes its
 * lease once the store shows the parents at SHARD_END and then registers it (take() in
 * source.c).
 * A child is not read before the store shows each of its parents at SHARD_END, so the
 * rule holds whichever process read the parent. A parent that ListShards no longer
 * returns (its retention passed: none of it can be read any more) is not waited for;
 * the child then starts with a warning naming both.
 *
 * @locality the engine thread (the sync walk at open too).
 */
#include "source.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kin_fatal(kin_src_t *x, int rc, const char *fmt, ...)
{
	if (x->fatal_rc)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->fatal, sizeof(x->fatal), fmt, ap);
	va_end(ap);
	x->fatal_rc = rc;
}

void kin_req_what(const kin_req_t *r, char *buf, size_t size)
{
	if (r->curl_rc) {
		snprintf(buf, size, "%s: %s", r->op, r->curl_err);
		return;
	}
	kin_error_t e;
	kin_parse_error(r->resp, r->resp_len, &e);
	snprintf(buf, size, "%s: HTTP %ld %s%s%s", r->op, r->status, e.type[0] ? e.type : "(no error type)",
	         e.message[0] ? ": " : "", e.message);
}

kshard_t *kin_shard_find(kin_src_t *x, const char *id)
{
	for (size_t i = 0; i < x->nshards; i++)
		if (!strcmp(x->shards[i]->id, id))
			return x->shards[i];
	return NULL;
}

/* The body of a ListShards page: the stream on the first, only the token after. */
static kin_req_t *list_req(kin_src_t *x, const char *token)
{
	size_t cap = 1024 + (token ? strlen(token) * 2 : 0);
	char *b = malloc(cap);
	if (!b)
		return NULL;
	size_t n;
	if (token) {
		n = (size_t)snprintf(b, cap, "{\"NextToken\":");
		if (!kin_json_str(b, cap, &n, token, strlen(token))) {
			free(b);
			return NULL;
		}
		n += (size_t)snprintf(b + n, cap - n, "}");
	} else {
		n = (size_t)snprintf(b, cap, "{%s}", x->stream_member);
	}
	kin_req_t *r = kin_req_new("ListShards", b, n);
	if (r)
		r->kind = RQ_LIST;
	return r;
}

/* Whether the page failed because its NextToken expired (the walk starts again). */
static bool token_expired(const kin_req_t *r)
{
	kin_error_t e;
	kin_parse_error(r->resp, r->resp_len, &e);
	return !strcmp(e.type, "ExpiredNextTokenException") ||
	       (!strcmp(e.type, "InvalidArgumentException") && strstr(e.message, "NextToken"));
}

int kin_list_sync(kin_src_t *x, char *errstr, size_t size)
{
	kin_shard_list_free(&x->list);
	char *token = NULL;
	int malformed = 0;
	for (int tries = 0;;) {
		kin_req_t *r = list_req(x, token);
		if (!r) {
			free(token);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		}
		kin_http_call(x->http, r);
		char what[900];
		if (!r->curl_rc && r->status == 200) {
			char why[256];
			int rc = kin_parse_list_shards(r->resp, r->resp_len, &x->list, why, sizeof(why));
			kin_req_free(r);
			if (rc == SPATE_ERR_CORRUPT && ++malformed < KIN_OPEN_TRIES)
				continue;
			if (rc) {
				free(token);
				return sp_err(errstr, size, rc == SPATE_ERR_NOMEM ? rc : SPATE_ERR_SOURCE,
				              "kinesis: stream %s at %s: ListShards: HTTP 200: %s",
				              x->aws.stream, x->aws.endpoint, why);
			}
			free(token);
			token = x->list.next_token ? strdup(x->list.next_token) : NULL;
			if (!token)
				return SPATE_OK;
			continue;
		}
		kin_req_what(r, what, sizeof(what));
		bool transport = r->curl_rc != 0;
		kin_error_t e;
		kin_parse_error(r->resp, r->resp_len, &e);
		bool again = transport || kin_error_retryable(r->status, e.type);
		if (token && token_expired(r)) { /* start the walk again */
			kin_shard_list_free(&x->list);
			free(token);
			token = NULL;
			kin_req_free(r);
			continue;
		}
		kin_req_free(r);
		if (again && ++tries < KIN_OPEN_TRIES) {
			usleep(KIN_BACKOFF_MIN_MS * 1000 * (1u << tries));
			continue;
		}
		free(token);
		return sp_err(errstr, size, SPATE_ERR_SOURCE, "kinesis: stream %s at %s: %s", x->aws.stream,
		              x->aws.endpoint, what);
	}
}

static int add_shard(kin_src_t *x, const kin_shard_info_t *in, kshard_t **out)
{
	if (x->nshards == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		kshard_t **n = realloc(x->shards, cap * sizeof(*n));
		if (!n)
			return SPATE_ERR_NOMEM;
		x->shards = n;
		x->cap = cap;
	}
	kshard_t *s = calloc(1, sizeof(*s));
	if (!s || !(s->id = strdup(in->id)) || (in->parent && !(s->parent = strdup(in->parent))) ||
	    (in->adj_parent && !(s->adj = strdup(in->adj_parent)))) {
		if (s) {
			free(s->id);
			free(s->parent);
			free(s);
		}
		return SPATE_ERR_NOMEM;
	}
	s->avg_rec = KSRC_AVG_REC_BYTES;
	s->behind_ms = -1;
	x->shards[x->nshards++] = s;
	*out = s;
	return SPATE_OK;
}

/* Lease mode: name shard s (the last one added) to the engine, with its parents and,
 * under stop.at.end, the end of a shard closed at open (SHARD_END). */
static int candidate(kin_src_t *x, kshard_t *s, char *errstr, size_t size)
{
	char parents[SP_LEASE_PARENTS_MAX] = "";
	if (s->parent && s->adj)
		snprintf(parents, sizeof(parents), "%s,%s", s->parent, s->adj);
	else if (s->parent || s->adj)
		snprintf(parents, sizeof(parents), "%s", s->parent ? s->parent : s->adj);
	spate_position_t end = sp_pos_closed();
	bool has_end = x->stop_at_end && s->at_open && s->closed;
	if (sp_engine_lease_candidate(x->eng, (int)(x->nshards - 1), KIN_NAME, x->aws.stream, -1, s->id,
	                              parents[0] ? parents : NULL, has_end, &end))
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	if (x->running)
		sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO,
		            "stream %s: new shard %s (parents %s): its lease is taken once the store shows "
		            "them at SHARD_END",
		            x->aws.stream, s->id, parents[0] ? parents : "none");
	return SPATE_OK;
}

int kin_shards_merge(kin_src_t *x, char *errstr, size_t size)
{
	int crc;
	for (size_t i = 0; i < x->nshards; i++)
		x->shards[i]->listed = false;
	for (size_t i = 0; i < x->list.n; i++) {
		const kin_shard_info_t *in = &x->list.shards[i];
		kshard_t *s = kin_shard_find(x, in->id);
		bool fresh = !s;
		if (fresh && add_shard(x, in, &s))
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		s->listed = true;
		s->closed = in->end_seq != NULL;
		if (!fresh)
			continue;
		s->at_open = !x->running;
		if (x->leased) {
			if ((crc = candidate(x, s, errstr, size)))
				return crc;
			continue;
		}
		s->p = sp_engine_add_partition(x->eng, KIN_NAME, x->aws.stream, -1, s->id);
		if (!s->p)
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		s->p->src_ctx = s;
		if (x->stop_at_end && s->at_open && s->closed) {
			s->p->has_end = true; /* a closed shard ends at SHARD_END */
			s->p->end = sp_pos_closed();
		}
		if (x->running) {
			sp_msg_from(x->eng, KIN_NAME, SP_MSG_INFO, "stream %s: new shard %s (parents %s%s%s)",
			            x->aws.stream, s->id, s->parent ? s->parent : "none", s->adj ? ", " : "",
			            s->adj ? s->adj : "");
			int rc = sp_engine_partition_start(x->eng, s->p, errstr, size);
			if (rc)
				return rc;
		}
	}
	return SPATE_OK;
}

/* The I/O thread finished r: queue it for poll() and wake the engine thread.
 * @locality the I/O thread */
static void on_done(kin_req_t *r)
{
	kin_src_t *x = r->arg;
	pthread_mutex_lock(&x->mu);
	r->next = NULL;
	if (x->done_tail)
		x->done_tail->next = r;
	else
		x->done_head = r;
	x->done_tail = r;
	pthread_mutex_unlock(&x->mu);
	uint64_t one = 1;
	ssize_t w = write(x->evfd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is non-zero, the engine wakes anyway */
}

void kin_send(kin_src_t *x, kin_req_t *r)
{
	r->done = on_done;
	r->arg = x;
	x->inflight++;
	kin_http_submit(x->http, r);
}

void kin_sync_maybe(kin_src_t *x, bool force)
{
	int64_t now = sp_now_ms();
	if (x->listing || (!force && now < x->next_sync))
		return;
	kin_req_t *r = list_req(x, NULL);
	if (!r)
		return; /* tried again on the next turn */
	kin_shard_list_free(&x->list);
	x->listing = true;
	x->token_at = now;
	kin_send(x, r);
}

void kin_on_list(kin_src_t *x, kin_req_t *r)
{
	int64_t now = sp_now_ms();
	char why[256], what[900];
	if (!r->curl_rc && r->status == 200) {
		int rc = kin_parse_list_shards(r->resp, r->resp_len, &x->list, why, sizeof(why));
		if (rc) {
			sp_msg_from(x->eng, KIN_NAME, SP_MSG_WARN,
			            "stream %s: ListShards: HTTP 200: %s (the shard sync is "
			            "tried again in %" PRId64 " ms)",
			            x->aws.stream, why, x->sync_ms);
			goto again_later;
		}
		if (x->list.next_token) {
			if (now - x->token_at >= KIN_NEXT_TOKEN_LIFE_MS)
				goto restart; /* the token expired before it could be used */
			kin_req_t *n = list_req(x, x->list.next_token);
			if (!n)
				goto again_later;
			x->token_at = now;
			kin_send(x, n);
			return;
		}
		x->listing = false;
		x->next_sync = now + x->sync_ms;
		char err[512];
		if ((rc = kin_shards_merge(x, err, sizeof(err))))
			kin_fatal(x, rc, "%s", err);
		return;
	}
	if (r->curl_rc == 0 && token_expired(r))
		goto restart;
	kin_req_what(r, what, sizeof(what));
	sp_msg_from(x->eng, KIN_NAME, SP_MSG_WARN,
	            "stream %s: shard sync: %s (tried again in %" PRId64 " ms)", x->aws.stream, what,
	            x->sync_ms);
again_later:
	x->listing = false;
	x->next_sync = now + x->sync_ms;
	return;
restart:
	x->listing = false;
	kin_sync_maybe(x, true);
}

/* One parent: at SHARD_END in the store, or gone from the listing. */
static bool parent_done(kin_src_t *x, kshard_t *s, const char *pid)
{
	kshard_t *ps = kin_shard_find(x, pid);
	if (!ps || !ps->listed) {
		if (!s->warned_orphan)
			sp_msg_from(x->eng, KIN_NAME, SP_MSG_WARN,
			            "stream %s: shard %s: its parent %s is no longer listed (its retention "
			            "passed, nothing "
			            "of it can be read): not waiting for it",
			            x->aws.stream, s->id, pid);
		s->warned_orphan = true;
		return true;
	}
	char name[600], err[512];
	snprintf(name, sizeof(name), "%s/%s/%s", KIN_NAME, x->aws.stream, pid);
	sp_ckpt_t ck;
	int rc = sp_engine_checkpoint_load(x->eng, name, &ck, err, sizeof(err));
	if (rc && rc != SPATE_ERR_NOT_FOUND) {
		sp_msg_from(x->eng, KIN_NAME, SP_MSG_WARN,
		            "stream %s: shard %s: cannot read its parent's checkpoint: %s", x->aws.stream,
		            s->id, err);
		return false;
	}
	return rc == SPATE_OK && !ck.beginning && sp_pos_is_closed(&ck.after);
}

bool kin_parents_done(kin_src_t *x, kshard_t *s)
{
	return (!s->parent || parent_done(x, s, s->parent)) && (!s->adj || parent_done(x, s, s->adj));
}
