/* push.c - the push source: the embedding application pushes records into partitions.
 *
 * spate_push() copies a call's records into the partition's staging area under one
 * mutex (one lock per call, not per record). The engine thread's poll() swaps each
 * staging area out whole and turns it into a chunk whose descriptors point into the
 * swapped-out bytes, so the copy made at push time is the only one.
 * Positions are assigned in push order, starting after the partition's checkpoint.
 */
#include "sp_spi.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A partition's stage becomes one chunk: it holds at most this many records and bytes
 * (a chunk of about 1 MiB, as the log source reads), so a chunk always fits a partition's
 * share of the in-flight bounds; a full stage refuses more until the engine takes it. */
#define PUSH_CHUNK_RECORDS 8192
#define PUSH_CHUNK_BYTES ((uint64_t)1 << 20)

/* A staged record: offsets into the staging bytes (they move when the buffer grows). */
typedef struct staged {
	size_t key_off, key_len, val_off, val_len, hdr_first, hdr_cnt;
	int64_t ts;
	uint8_t has_key, has_val;
	uint64_t pos; /* assigned at push, in order */
} staged_t;

typedef struct staged_hdr {
	size_t key_off, key_len, val_off, val_len;
	uint8_t has_val;
} staged_hdr_t;

typedef struct stage {
	char *bytes;
	size_t len, cap;
	staged_t *recs;
	size_t nrec, rec_cap;
	staged_hdr_t *hdrs;
	size_t nhdr, hdr_cap;
} stage_t;

typedef struct ppart {
	sp_part_t *part;
	stage_t st;
	uint64_t next_pos;  /* the checkpoint's next position (seek) */
	uint64_t next_push; /* the position the next pushed record gets (under mu) */
} ppart_t;

typedef struct push_ctx {
	pthread_mutex_t mu;
	ppart_t *parts;
	int n;
	bool closed;
	uint64_t staged_bytes;
	/* staged-but-not-polled bytes per partition (max.inflight.bytes / partitions; one
	 * record always fits an empty stage), so a paused partition's stage cannot take the
	 * room of the others */
	uint64_t max_part_staged;
	int rr; /* next partition poll() looks at */
} push_ctx_t;

static int push_open(sp_source_t *s, char *err, size_t sz)
{
	const spate_conf_t *c = sp_engine_conf(s->eng);
	int n = (int)sp_conf_int(c, "push.partitions");
	push_ctx_t *x = calloc(1, sizeof(*x));
	if (!x || !(x->parts = calloc((size_t)n, sizeof(ppart_t)))) {
		free(x);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "source: out of memory");
	}
	pthread_mutex_init(&x->mu, NULL);
	x->n = n;
	/* Staged-but-not-polled bytes are bounded like in-flight bytes, per partition. */
	x->max_part_staged = (uint64_t)sp_conf_int(c, "max.inflight.bytes") / (uint64_t)n;
	if (x->max_part_staged > PUSH_CHUNK_BYTES)
		x->max_part_staged = PUSH_CHUNK_BYTES;
	s->ctx = x;
	for (int i = 0; i < n; i++) {
		x->parts[i].part = sp_engine_add_partition(s->eng, "push", "push", i, NULL);
		if (!x->parts[i].part)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "source: out of memory");
		x->parts[i].part->src_ctx = &x->parts[i];
		x->parts[i].part->has_end = false; /* the end is when the application closes */
	}
	return SPATE_OK;
}

static int push_seek(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ck, sp_ckpt_t *resolved, char *err,
                     size_t sz)
{
	ppart_t *pp = p->src_ctx;
	if (ck) {
		pp->next_pos = ck->beginning ? 0 : ck->after.w[2] + 1;
		pp->next_push = pp->next_pos;
	} else {
		/* earliest, latest and at-timestamp all mean "what is pushed from now on" */
		pp->next_pos = pp->next_push = 0;
		resolved->beginning = true;
	}
	return SPATE_OK;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (*cap >= need)
		return 0;
	size_t nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	void *np = realloc(*p, nc * elem);
	if (!np)
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

static size_t put(stage_t *st, const void *b, size_t n)
{
	size_t off = st->len;
	if (n)
		memcpy(st->bytes + off, b, n);
	st->len += n;
	return off;
}

static int push_push(sp_source_t *s, int32_t partition, const spate_push_record_t *recs, size_t cnt,
                     spate_position_t *positions)
{
	push_ctx_t *x = s->ctx;
	if (partition < 0 || partition >= x->n)
		return SPATE_ERR_NOT_FOUND;
	pthread_mutex_lock(&x->mu);
	if (x->closed) {
		pthread_mutex_unlock(&x->mu);
		return SPATE_ERR_STATE;
	}
	stage_t *st = &x->parts[partition].st;
	size_t i;
	int64_t now = 0;
	for (i = 0; i < cnt; i++) {
		const spate_push_record_t *r = &recs[i];
		size_t need = r->key_len + r->value_len;
		for (size_t h = 0; h < r->header_cnt; h++)
			need += r->headers[h].key_len + r->headers[h].value_len;
		if (st->nrec && (st->len + need > x->max_part_staged || st->nrec >= PUSH_CHUNK_RECORDS))
			break; /* full: the caller pushes the rest later */
		if (grow((void **)&st->bytes, &st->cap, st->len + need, 1) ||
		    grow((void **)&st->recs, &st->rec_cap, st->nrec + 1, sizeof(staged_t)) ||
		    grow((void **)&st->hdrs, &st->hdr_cap, st->nhdr + r->header_cnt, sizeof(staged_hdr_t)))
			break;
		staged_t *d = &st->recs[st->nrec++];
		d->pos = x->parts[partition].next_push++;
		if (positions)
			positions[i] = sp_pos(d->pos);
		d->has_key = r->key != NULL;
		d->key_len = r->key_len;
		d->key_off = put(st, r->key, r->key_len);
		d->has_val = r->value != NULL;
		d->val_len = r->value_len;
		d->val_off = put(st, r->value, r->value_len);
		d->hdr_first = st->nhdr;
		d->hdr_cnt = r->header_cnt;
		for (size_t h = 0; h < r->header_cnt; h++) {
			staged_hdr_t *sh = &st->hdrs[st->nhdr++];
			sh->key_len = r->headers[h].key_len;
			sh->key_off = put(st, r->headers[h].key, r->headers[h].key_len);
			sh->has_val = r->headers[h].value != NULL;
			sh->val_len = r->headers[h].value_len;
			sh->val_off = put(st, r->headers[h].value, r->headers[h].value_len);
		}
		if (r->timestamp_ms)
			d->ts = r->timestamp_ms;
		else
			d->ts = now ? now : (now = sp_wall_ms());
		x->staged_bytes += need;
	}
	pthread_mutex_unlock(&x->mu);
	return (int)i;
}

static void push_close_in(sp_source_t *s)
{
	push_ctx_t *x = s->ctx;
	pthread_mutex_lock(&x->mu);
	x->closed = true;
	pthread_mutex_unlock(&x->mu);
}

static void release_bytes(sp_chunk_t *c, void *opaque)
{
	free(c->buf);
}

/* Turn a swapped-out stage into a chunk. Frees the stage's index arrays. */
static sp_chunk_t *to_chunk(ppart_t *pp, stage_t *st)
{
	sp_chunk_t *c = sp_chunk_new(pp->part, (uint32_t)st->nrec, (uint32_t)st->nhdr);
	if (!c)
		return NULL;
	for (size_t h = 0; h < st->nhdr; h++) {
		staged_hdr_t *sh = &st->hdrs[h];
		c->hdrs[h] = (spate_header_t){st->bytes + sh->key_off, sh->key_len,
		                              sh->has_val ? st->bytes + sh->val_off : NULL, sh->val_len};
	}
	uint64_t bytes = 0;
	for (size_t i = 0; i < st->nrec; i++) {
		staged_t *d = &st->recs[i];
		spate_record_t *r = &c->recs[i];
		r->key = d->has_key ? st->bytes + d->key_off : NULL;
		r->key_len = d->key_len;
		r->value = d->has_val ? st->bytes + d->val_off : NULL;
		r->value_len = d->val_len;
		r->headers = d->hdr_cnt ? &c->hdrs[d->hdr_first] : NULL;
		r->header_cnt = d->hdr_cnt;
		r->timestamp_ms = d->ts;
		r->position = sp_pos(d->pos);
		bytes += d->key_len + d->val_len;
	}
	c->bytes = st->len > bytes ? st->len : bytes;
	c->buf = st->bytes;
	c->release = release_bytes;
	return c;
}

static int push_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget, char *err, size_t sz)
{
	push_ctx_t *x = s->ctx;
	int got = 0;
	pthread_mutex_lock(&x->mu);
	for (int k = 0; k < x->n && got < max; k++) {
		ppart_t *pp = &x->parts[(x->rr + k) % x->n];
		stage_t *st = &pp->st;
		if (!st->nrec || pp->part->paused)
			continue; /* a paused partition's records wait here (its stage is bounded) */
		sp_chunk_t *c = to_chunk(pp, st);
		if (!c) {
			pthread_mutex_unlock(&x->mu);
			return sp_err(err, sz, SPATE_ERR_NOMEM, "push: out of memory");
		}
		x->staged_bytes -= st->len < x->staged_bytes ? st->len : x->staged_bytes;
		/* the bytes now belong to the chunk; the index arrays are reused */
		st->bytes = NULL;
		st->len = st->cap = 0;
		st->nrec = st->nhdr = 0;
		out[got++] = c;
	}
	x->rr = (x->rr + 1) % x->n;
	pthread_mutex_unlock(&x->mu);
	return got;
}

static bool push_ended(sp_source_t *s)
{
	push_ctx_t *x = s->ctx;
	pthread_mutex_lock(&x->mu);
	bool ended = x->closed;
	for (int i = 0; ended && i < x->n; i++)
		if (x->parts[i].st.nrec)
			ended = false;
	pthread_mutex_unlock(&x->mu);
	return ended;
}

static int64_t push_lag(sp_source_t *s)
{
	push_ctx_t *x = s->ctx;
	int64_t n = 0;
	pthread_mutex_lock(&x->mu);
	for (int i = 0; i < x->n; i++)
		n += (int64_t)x->parts[i].st.nrec;
	pthread_mutex_unlock(&x->mu);
	return n;
}

static void push_close(sp_source_t *s)
{
	push_ctx_t *x = s->ctx;
	if (!x)
		return;
	for (int i = 0; i < x->n; i++) {
		free(x->parts[i].st.bytes);
		free(x->parts[i].st.recs);
		free(x->parts[i].st.hdrs);
	}
	pthread_mutex_destroy(&x->mu);
	free(x->parts);
	free(x);
	s->ctx = NULL;
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t push_opts[] = {
    {"push.partitions", SP_OPT_INT, 1, 4096, NULL, "1", "push: partitions the application pushes into"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_source_ops_t sp_source_push = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = "push",
    .desc = "records the embedding application pushes with spate_push()",
    .opts = push_opts,
    .syntax = "push",
    .open = push_open,
    .seek = push_seek,
    .poll = push_poll,
    .lag = push_lag,
    .push = push_push,
    .push_close = push_close_in,
    .ended = push_ended,
    .close = push_close,
};
