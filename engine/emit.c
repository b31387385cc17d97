/* emit.c - handlers that produce: named sinks and spate_batch_emit().
 *
 * A pipeline names its sinks with keys `sink.NAME=kind:arg` (log:DIR, kafka:TOPIC: the
 * sinks of the registry) and gives each its own options as `sink.NAME.KEY=VALUE` (the
 * sink sees them as KEY=VALUE over the pipeline's configuration). Each sink is opened
 * once, at start, and shared by the workers (a sink's write is thread-safe).
 *
 * A handler emits records on behalf of the records of its batch (their origins). The
 * worker copies what is emitted into its own buffers (reused: no allocation per record
 * once they have grown) and, after the handler returned, writes the records of the
 * origins that succeeded to their sinks, in emit order, one write per sink, each record
 * with a `spate.origin` header (the origin's record id). Only once every write returned
 * (durable) does the worker mark the origins DONE, so the checkpoint never passes an
 * origin whose emitted records could be lost. Emits of origins that failed are dropped
 * (their retry emits again); a sink that fails fails the batch like a failing handler
 * (retries, then the DLQ for the origins), and what another sink already took for it is
 * written again by the retry: duplicates a consumer drops by spate.origin.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A sink a pipeline named. */
typedef struct sp_named_sink {
	char *name;
	sp_sink_t sink;
	spate_conf_t *conf; /* the pipeline's configuration with sink.NAME.* applied */
	bool open;
	/* test fault hook: SPATE_FAULT_SINK_<NAME>=fail:N makes its next N writes fail (read
	 * at open; CI runs as root, so permissions cannot simulate an outage) */
	_Atomic int64_t fault_left;
} sp_named_sink_t;

/* A record the handler emitted: offsets into the worker's byte buffer. */
typedef struct sp_emit_rec {
	uint32_t origin, sink;
	size_t key_off, key_len, val_off, val_len;
	uint32_t hdr_first, hdr_cnt;
	bool has_key, has_val;
} sp_emit_rec_t;

typedef struct sp_emit_hdr {
	size_t key_off, key_len, val_off, val_len;
	bool has_val;
} sp_emit_hdr_t;

/* The most named sinks a pipeline may have. */
#define SP_MAX_SINKS 64

/* ---- the named sinks ----------------------------------------------------------------- */

typedef struct walk {
	sp_engine_t *e;
	const char *names[SP_MAX_SINKS];
	const char *vals[SP_MAX_SINKS];
	size_t n;
	int rc;
	char *err;
	size_t sz;
} walk_t;

static void collect(void *arg, const char *key, const char *val)
{
	walk_t *w = arg;
	const char *name = key + strlen("sink.");
	if (strchr(name, '.') || w->rc)
		return; /* an option of a sink (sink.NAME.KEY) */
	if (w->n == SP_MAX_SINKS) {
		w->rc = sp_err(w->err, w->sz, SPATE_ERR_INVALID, "%s: more than %d sinks", key, SP_MAX_SINKS);
		return;
	}
	w->names[w->n] = name;
	w->vals[w->n++] = val;
}

typedef struct optwalk {
	spate_conf_t *conf;
	const char *name;
	int rc;
	char *err;
	size_t sz;
} optwalk_t;

static void apply_option(void *arg, const char *key, const char *val)
{
	optwalk_t *o = arg;
	size_t nl = strlen(o->name);
	const char *rest = key + strlen("sink.");
	if (o->rc || strncmp(rest, o->name, nl) || rest[nl] != '.')
		return;
	char e2[512];
	if (spate_conf_set(o->conf, rest + nl + 1, val, e2, sizeof(e2)) != SPATE_CONF_OK)
		o->rc = sp_err(o->err, o->sz, SPATE_ERR_INVALID, "%s: %s", key, e2);
}

int sp_sinks_open(sp_engine_t *e, char *err, size_t sz)
{
	walk_t w = {.e = e, .err = err, .sz = sz};
	sp_conf_foreach_prefix(e->conf, "sink.", collect, &w);
	if (w.rc)
		return w.rc;
	if (!w.n)
		return SPATE_OK;
	e->sinks = calloc(w.n, sizeof(*e->sinks));
	if (!e->sinks)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory for %zu sinks", w.n);
	for (size_t i = 0; i < w.n; i++) {
		sp_named_sink_t *s = &e->sinks[e->nsinks++];
		char kind[64];
		s->name = strdup(w.names[i]);
		const char *arg = sp_split_uri(w.vals[i], kind, sizeof(kind));
		const sp_sink_ops_t *ops = sp_find_sink(kind);
		if (!s->name)
			return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
		if (!*s->name)
			return sp_err(err, sz, SPATE_ERR_INVALID, "sink.: a sink needs a name (sink.NAME=kind:arg)");
		if (!ops)
			return sp_err(err, sz, SPATE_ERR_INVALID, "sink.%s: unknown kind \"%s\" in \"%s\" (allowed: %s)",
			              s->name, kind, w.vals[i], sp_registry_kinds("sink"));
		if (!(s->conf = spate_conf_dup(e->conf)))
			return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
		optwalk_t o = {.conf = s->conf, .name = s->name, .err = err, .sz = sz};
		sp_conf_foreach_prefix(e->conf, "sink.", apply_option, &o);
		if (o.rc)
			return o.rc;
		s->sink = (sp_sink_t){.ops = ops, .eng = e, .arg = arg, .conf = s->conf};
		char env[128], e2[512];
		snprintf(env, sizeof(env), "SPATE_FAULT_SINK_%s", s->name);
		int64_t f = sp_fault_hook(env, err, sz);
		if (f < 0)
			return SPATE_ERR_INVALID;
		if (f)
			sp_msg(e, SP_MSG_WARN, "%s is set: writes to sink %s will fail on purpose", env, s->name);
		atomic_store(&s->fault_left, f);
		int rc = ops->open(&s->sink, e2, sizeof(e2));
		if (rc)
			return sp_err(err, sz, rc, "sink.%s=%s: %s", s->name, w.vals[i], e2);
		s->open = true;
		sp_msg(e, SP_MSG_DEBUG, "sink %s: %s", s->name, w.vals[i]);
	}
	return SPATE_OK;
}

void sp_sinks_close(sp_engine_t *e)
{
	for (uint32_t i = 0; i < e->nsinks; i++) {
		sp_named_sink_t *s = &e->sinks[i];
		if (s->open && s->sink.ops->close)
			s->sink.ops->close(&s->sink);
		spate_conf_destroy(s->conf);
		free(s->name);
	}
	free(e->sinks);
	e->sinks = NULL;
	e->nsinks = 0;
}

/* ---- emitting ---------------------------------------------------------------------- */

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

static int grow32(void **p, uint32_t *cap, size_t need, size_t elem)
{
	size_t c = *cap;
	int rc = grow(p, &c, need, elem);
	*cap = (uint32_t)c;
	return rc;
}

static size_t put(sp_worker_t *w, const void *b, size_t n)
{
	size_t off = w->ebuf_len;
	if (n)
		memcpy(w->ebuf + off, b, n);
	w->ebuf_len += n;
	return off;
}

spate_err_t spate_batch_emit(spate_batch_t *b, size_t origin, const char *sink, const void *key, size_t key_len,
                             const void *value, size_t value_len, const spate_header_t *headers,
                             size_t header_cnt)
{
	sp_worker_t *w = b->w;
	sp_engine_t *e = w->e;
	if (origin >= b->n)
		return SPATE_ERR_INVALID;
	uint32_t si = 0;
	while (si < e->nsinks && strcmp(e->sinks[si].name, sink ? sink : ""))
		si++;
	if (si == e->nsinks)
		return SPATE_ERR_NOT_FOUND;
	size_t bytes = key_len + value_len;
	for (size_t h = 0; h < header_cnt; h++)
		bytes += headers[h].key_len + headers[h].value_len;
	if (grow32((void **)&w->em, &w->em_cap, (size_t)w->nem + 1, sizeof(*w->em)) ||
	    grow32((void **)&w->eh, &w->eh_cap, (size_t)w->neh + header_cnt, sizeof(*w->eh)) ||
	    grow((void **)&w->ebuf, &w->ebuf_cap, w->ebuf_len + bytes, 1))
		return SPATE_ERR_NOMEM;
	sp_emit_rec_t *r = &w->em[w->nem++];
	r->origin = (uint32_t)origin;
	r->sink = si;
	r->has_key = key != NULL;
	r->key_len = key_len;
	r->key_off = put(w, key, key ? key_len : 0);
	r->has_val = value != NULL;
	r->val_len = value_len;
	r->val_off = put(w, value, value ? value_len : 0);
	r->hdr_first = w->neh;
	r->hdr_cnt = (uint32_t)header_cnt;
	for (size_t h = 0; h < header_cnt; h++) {
		sp_emit_hdr_t *x = &w->eh[w->neh++];
		x->key_len = headers[h].key_len;
		x->key_off = put(w, headers[h].key, headers[h].key_len);
		x->has_val = headers[h].value != NULL;
		x->val_len = headers[h].value_len;
		x->val_off = put(w, headers[h].value, headers[h].value ? headers[h].value_len : 0);
	}
	return SPATE_OK;
}

void sp_emit_reset(sp_worker_t *w)
{
	w->nem = 0;
	w->neh = 0;
	w->ebuf_len = 0;
}

/* Bytes of a record id: the partition name, '/', the position. */
#define SP_ID_BYTES 640

int sp_emit_flush(sp_worker_t *w, uint32_t upto, char *err, size_t sz)
{
	sp_engine_t *e = w->e;
	int rc = SPATE_OK;
	if (grow((void **)&w->eids, &w->eids_cap, (size_t)w->nem * SP_ID_BYTES, 1) ||
	    grow((void **)&w->eout, &w->eout_cap, w->nem, sizeof(*w->eout)) ||
	    grow((void **)&w->eouth, &w->eouth_cap, (size_t)w->neh + w->nem, sizeof(*w->eouth))) {
		sp_emit_reset(w);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "emit: out of memory for %u records", w->nem);
	}
	for (uint32_t si = 0; si < e->nsinks && rc == SPATE_OK; si++) {
		size_t n = 0, nh = 0;
		for (uint32_t i = 0; i < w->nem; i++) {
			const sp_emit_rec_t *r = &w->em[i];
			if (r->sink != si || r->origin >= upto)
				continue;
			spate_header_t *h = &w->eouth[nh];
			for (uint32_t k = 0; k < r->hdr_cnt; k++) {
				const sp_emit_hdr_t *x = &w->eh[r->hdr_first + k];
				w->eouth[nh++] = (spate_header_t){w->ebuf + x->key_off, x->key_len,
				                                  x->has_val ? w->ebuf + x->val_off : NULL, x->val_len};
			}
			char *id = w->eids + (size_t)i * SP_ID_BYTES;
			size_t idl = spate_record_id(w->ptrs[r->origin], id, SP_ID_BYTES);
			if (idl >= SP_ID_BYTES)
				idl = SP_ID_BYTES - 1;
			w->eouth[nh++] = (spate_header_t){"spate.origin", 12, id, idl};
			w->eout[n++] = (spate_push_record_t){.key = r->has_key ? w->ebuf + r->key_off : NULL,
			                                     .key_len = r->key_len,
			                                     .value = r->has_val ? w->ebuf + r->val_off : NULL,
			                                     .value_len = r->val_len,
			                                     .headers = h,
			                                     .header_cnt = r->hdr_cnt + 1,
			                                     .timestamp_ms = 0};
		}
		if (!n)
			continue;
		sp_named_sink_t *s = &e->sinks[si];
		char e2[512] = "";
		int64_t left = atomic_load_explicit(&s->fault_left, memory_order_relaxed);
		if (left == INT64_MAX || (left > 0 && atomic_fetch_sub(&s->fault_left, 1) > 0))
			rc = sp_err(e2, sizeof(e2), SPATE_ERR_SINK, "injected fault (SPATE_FAULT_SINK_%s)", s->name);
		else
			rc = s->sink.ops->write(&s->sink, w->eout, n, e2, sizeof(e2));
		if (rc)
			sp_err(err, sz, rc, "sink %s: %s", s->name, e2);
		else
			atomic_fetch_add_explicit(&w->st.emitted, n, memory_order_relaxed);
	}
	sp_emit_reset(w);
	return rc;
}

void sp_emit_free(sp_worker_t *w)
{
	free(w->em);
	free(w->eh);
	free(w->ebuf);
	free(w->eout);
	free(w->eouth);
	free(w->eids);
}
