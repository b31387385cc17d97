/* route.c - the route operator: each route.SINK=PATTERN sends the records that match
 * PATTERN (EventBridge pattern syntax, as for the filter key) to the named sink SINK,
 * unchanged (key, value, headers; the engine adds spate.origin). Redpanda Connect's
 * switch output, EventBridge Pipes' filter + target.
 *
 * A record goes to every route it matches (not only the first), and a record that
 * matches none succeeds without output (counted in route.unmatched). The patterns are
 * compiled once at create; each worker matches with its own scratch (init), so a record
 * costs one scan of its value per route whose pattern looks into it, and no allocation.
 */
#include "sp_filter.h"
#include "sp_spi.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most routes (named sinks a pipeline may have). */
#define ROUTE_MAX 64

typedef struct route {
	char *sink; /* the sink's name (route.SINK) */
	sp_filter_t *f;
	_Atomic uint64_t sent;
} route_t;

typedef struct router {
	route_t r[ROUTE_MAX];
	size_t n;
	_Atomic uint64_t records, unmatched;
	/* create: the first error seen while walking the keys */
	int rc;
	char *err;
	size_t sz;
	const spate_conf_t *conf;
} router_t;

/* Whether the pipeline names a sink NAME (sink.NAME=...): the pass-through keys. */
typedef struct sink_find {
	const char *name;
	bool found;
} sink_find_t;

static void sink_seen(void *arg, const char *key, const char *val)
{
	sink_find_t *s = arg;
	if (!strcmp(key + strlen("sink."), s->name) && *val)
		s->found = true;
}

static bool has_sink(const spate_conf_t *conf, const char *name)
{
	sink_find_t s = {name, false};
	sp_conf_foreach_prefix(conf, "sink.", sink_seen, &s);
	return s.found;
}

static void add_route(void *arg, const char *key, const char *val)
{
	router_t *t = arg;
	const char *name = key + strlen("route.");
	if (t->rc)
		return;
	if (!*name || strchr(name, '.')) {
		t->rc = sp_err(t->err, t->sz, SPATE_ERR_INVALID,
		               "%s: want route.SINK=PATTERN (a sink name without dots)", key);
		return;
	}
	if (!has_sink(t->conf, name)) {
		t->rc =
		    sp_err(t->err, t->sz, SPATE_ERR_INVALID,
		           "%s: no sink named \"%s\" (set sink.%s=log:DIR or kafka:TOPIC)", key, name, name);
		return;
	}
	if (t->n == ROUTE_MAX) {
		t->rc = sp_err(t->err, t->sz, SPATE_ERR_INVALID, "%s: more than %d routes", key, ROUTE_MAX);
		return;
	}
	char why[512];
	sp_filter_t *f = sp_filter_compile(&val, 1, why, sizeof(why));
	if (!f) {
		const char *msg = strncmp(why, "pattern 1 of 1, ", 16) ? why : why + 16;
		t->rc = sp_err(t->err, t->sz, SPATE_ERR_INVALID, "%s: %s", key, msg);
		return;
	}
	t->r[t->n].sink = strdup(name);
	t->r[t->n++].f = f;
	if (!t->r[t->n - 1].sink)
		t->rc = sp_err(t->err, t->sz, SPATE_ERR_NOMEM, "%s: out of memory", key);
}

static void route_free(router_t *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->r[i].sink);
		sp_filter_free(t->r[i].f);
	}
	free(t);
}

static int route_init(void *opaque, int worker_id, void **wctx)
{
	*wctx = sp_filter_scratch_new();
	return *wctx ? SPATE_OK : SPATE_ERR_NOMEM;
}

static void route_fini(void *opaque, void *wctx)
{
	sp_filter_scratch_free(wctx);
}

static int route_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	router_t *t = opaque;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *recs = spate_batch_records(b);
	sp_filter_scratch_t *s = wctx;
	sp_filter_scratch_t *own = NULL;
	if (!s) { /* called without init (an embedder's own loop) */
		s = own = sp_filter_scratch_new();
		if (!s)
			return SPATE_HANDLER_FAIL;
	}
	uint64_t sent[ROUTE_MAX] = {0}, unmatched = 0;
	int res = SPATE_HANDLER_OK;
	for (size_t i = 0; i < n && res == SPATE_HANDLER_OK; i++) {
		const spate_record_t *r = recs[i];
		bool any = false;
		for (size_t k = 0; k < t->n; k++) {
			int m = sp_filter_match(t->r[k].f, r, s);
			if (m == 0)
				continue;
			if (m < 0 || spate_batch_emit(b, i, t->r[k].sink, r->key, r->key_len, r->value,
			                              r->value_len, r->headers, r->header_cnt) != SPATE_OK) {
				res = SPATE_HANDLER_FAIL; /* out of memory: the batch retries */
				break;
			}
			sent[k]++;
			any = true;
		}
		unmatched += !any;
	}
	sp_filter_scratch_free(own);
	if (res != SPATE_HANDLER_OK)
		return res;
	atomic_fetch_add_explicit(&t->records, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->unmatched, unmatched, memory_order_relaxed);
	for (size_t k = 0; k < t->n; k++)
		if (sent[k])
			atomic_fetch_add_explicit(&t->r[k].sent, sent[k], memory_order_relaxed);
	return SPATE_HANDLER_OK;
}

static int route_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                        char *err, size_t sz)
{
	if (arg && *arg)
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "handler: route takes no argument, got \"route:%s\" (set route.SINK=PATTERN keys)", arg);
	if (!conf)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "handler: route needs a configuration (route.SINK keys)");
	router_t *t = calloc(1, sizeof(*t));
	if (!t)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	t->err = err;
	t->sz = sz;
	t->conf = conf;
	sp_conf_foreach_prefix(conf, "route.", add_route, t);
	if (!t->rc && !t->n)
		t->rc = sp_err(err, sz, SPATE_ERR_INVALID,
		               "handler: route needs at least one route.SINK=PATTERN (and sink.SINK=log:DIR "
		               "or kafka:TOPIC)");
	if (t->rc) {
		int rc = t->rc;
		route_free(t);
		return rc;
	}
	memset(h, 0, sizeof(*h));
	h->version = SPATE_HANDLER_VERSION;
	h->name = "route";
	h->init = route_init;
	h->handle = route_handle;
	h->fini = route_fini;
	h->opaque = t;
	return SPATE_OK;
}

static void route_destroy(spate_handler_t *h)
{
	route_free(h->opaque);
	h->opaque = NULL;
}

static void route_report(spate_handler_t *h, FILE *fp)
{
	router_t *t = h->opaque;
	fprintf(fp, "route.records %" PRIu64 "\n", atomic_load(&t->records));
	for (size_t k = 0; k < t->n; k++)
		fprintf(fp, "route.%s %" PRIu64 "\n", t->r[k].sink, atomic_load(&t->r[k].sent));
	fprintf(fp, "route.unmatched %" PRIu64 "\n", atomic_load(&t->unmatched));
}

const sp_operator_ops_t sp_op_route = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "route",
    .desc = "sends each record to every sink whose pattern it matches (route.SINK=PATTERN, EventBridge "
            "syntax), unchanged",
    .syntax = "route",
    .create = route_create,
    .destroy = route_destroy,
    .report = route_report,
};
