/* engine.c - lifecycle: new, start, run, drain, stop; wires source, lanes, workers,
 * tracker, checkpoints.
 *
 * spate_engine_run() is the engine thread: it polls the source for chunks while the
 * in-flight bounds allow, dispatches them into lanes, drains the workers' completion
 * rings in bursts into the tracker, flushes checkpoints, and sleeps on an eventfd (plus
 * the source's fd) when there is nothing to do. Workers wake it only when it sleeps.
 */
#include "engine/engine.h"
#include "engine/filter.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Chunks asked of the source per poll call. */
#define SP_POLL_BATCH 16

static int level_of(const char *s)
{
	if (!strcmp(s, "error"))
		return SP_MSG_ERROR;
	if (!strcmp(s, "warn"))
		return SP_MSG_WARN;
	if (!strcmp(s, "debug"))
		return SP_MSG_DEBUG;
	return SP_MSG_INFO;
}

const spate_conf_t *sp_engine_conf(sp_engine_t *e)
{
	return e->conf;
}

size_t sp_engine_partition_count(sp_engine_t *e)
{
	return e->nparts;
}

sp_part_t *sp_engine_partition(sp_engine_t *e, size_t i)
{
	return i < e->nparts ? e->parts[i] : NULL;
}

void spate_engine_report(spate_engine_t *e, FILE *fp)
{
	if (e->handler_created && e->op->report)
		e->op->report(&e->h, fp);
}

void sp_engine_wake(sp_engine_t *e)
{
	uint64_t one = 1;
	ssize_t r = write(e->wakefd, &one, sizeof(one));
	(void)r; /* EAGAIN: the counter is already non-zero, the engine will wake */
}

static int part_lanes(spate_engine_t *e, sp_part_t *p);

sp_part_t *sp_engine_add_partition(sp_engine_t *e, const char *source, const char *topic,
                                   int32_t partition, const char *shard)
{
	if (e->nparts == e->parts_cap) {
		size_t cap = e->parts_cap ? e->parts_cap * 2 : 16;
		sp_part_t **np = realloc(e->parts, cap * sizeof(*np));
		if (!np)
			return NULL;
		e->parts = np;
		e->parts_cap = cap;
	}
	sp_part_t *p = calloc(1, sizeof(*p) + sizeof(struct sp_part_eng));
	if (!p)
		return NULL;
	p->eng = (struct sp_part_eng *)(p + 1);
	char name[512];
	if (shard)
		snprintf(name, sizeof(name), "%s/%s/%s", source, topic, shard);
	else
		snprintf(name, sizeof(name), "%s/%s/%" PRId32, source, topic, partition);
	p->pub.source = strdup(source);
	p->pub.topic = strdup(topic);
	p->pub.partition = partition;
	p->pub.shard = shard ? strdup(shard) : NULL;
	p->pub.name = strdup(name);
	if (!p->pub.source || !p->pub.topic || !p->pub.name || (shard && !p->pub.shard)) {
		sp_part_free(p);
		return NULL;
	}
	p->index = (int)e->nparts;
	p->eng->engine = e;
	if (e->lanes_ready && part_lanes(e, p)) {
		sp_part_free(p);
		return NULL;
	}
	p->eng->ckpt.beginning = true;
	p->eng->saved.beginning = true;
	e->parts[e->nparts++] = p;
	return p;
}

void sp_part_free(sp_part_t *p)
{
	free(p->eng->lane_block);
	free(p->eng->lanes);
	free((char *)p->pub.source);
	free((char *)p->pub.topic);
	free((char *)p->pub.shard);
	free((char *)p->pub.name);
	free(p);
}

static int read_settings(spate_engine_t *e, char *err, size_t sz)
{
	const spate_conf_t *c = e->conf;
	e->log_level = level_of(sp_conf_str(c, "log.level"));
	e->batch_size = (uint32_t)sp_conf_int(c, "batch.size");
	e->batch_max_bytes = (uint64_t)sp_conf_int(c, "batch.max.bytes");
	e->window_ms = sp_conf_int(c, "batch.window.ms");
	e->factor = (uint32_t)sp_conf_int(c, "parallelization.factor");
	e->max_retry = sp_conf_int(c, "max.retry.attempts");
	e->max_age_ms = sp_conf_int(c, "max.record.age.ms");
	e->backoff_ms = sp_conf_int(c, "retry.backoff.ms");
	e->backoff_max_ms = sp_conf_int(c, "retry.backoff.max.ms");
	e->bisect = sp_conf_bool(c, "bisect.on.error");
	e->item_failures = sp_conf_bool(c, "report.item.failures");
	e->stop_at_end = sp_conf_bool(c, "stop.at.end");
	e->max_inflight_bytes = (uint64_t)sp_conf_int(c, "max.inflight.bytes");
	e->max_inflight_records = (uint64_t)sp_conf_int(c, "max.inflight.records");
	e->shutdown_timeout_ms = sp_conf_int(c, "shutdown.timeout.ms");
	e->ckpt_interval_ms = sp_conf_int(c, "checkpoint.interval.ms");
	e->ckpt_records = sp_conf_int(c, "checkpoint.records");
	e->nworkers = (int)sp_conf_int(c, "max.concurrency");
	e->min_workers = (int)sp_conf_int(c, "min.concurrency");
	e->scale_down_idle_ms = sp_conf_int(c, "scale.down.idle.ms");
	e->stats_interval_ms = sp_conf_int(c, "stats.interval.ms");
	if (e->min_workers > e->nworkers)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "min.concurrency: %d is above max.concurrency (%d)", e->min_workers, e->nworkers);
	if (e->backoff_max_ms < e->backoff_ms)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "retry.backoff.max.ms: %" PRId64 " is below retry.backoff.ms (%" PRId64 ")",
		              e->backoff_max_ms, e->backoff_ms);
	if (e->max_age_ms >= 0 && e->max_age_ms < 1)
		return sp_err(err, sz, SPATE_ERR_INVALID, "max.record.age.ms: must be -1 or positive");
	return sp_prom_check(e, err, sz);
}

/* filter, filter.1 .. filter.9: compiled once into e->filter (NULL when none is set). Each
 * pattern is compiled alone first, so an error names its key and the byte of it at fault. */
static int compile_filter(spate_engine_t *e, char *err, size_t sz)
{
	const char *pats[SP_FILTER_MAX_PATTERNS];
	size_t n = 0;
	for (int i = 0; i < SP_FILTER_MAX_PATTERNS; i++) {
		char key[16];
		if (i)
			snprintf(key, sizeof(key), "filter.%d", i);
		else
			snprintf(key, sizeof(key), "filter");
		const char *v = sp_conf_str(e->conf, key);
		if (!v || !*v)
			continue;
		char why[512];
		sp_filter_t *one = sp_filter_compile(&v, 1, why, sizeof(why));
		if (!one) {
			const char *msg = why;
			if (!strncmp(msg, "pattern 1 of 1, ", 16))
				msg += 16;
			else if (!strncmp(msg, "pattern 1 of 1: ", 16))
				msg += 16;
			return sp_err(err, sz, SPATE_ERR_INVALID, "%s: %s", key, msg);
		}
		sp_filter_free(one);
		pats[n++] = v;
	}
	if (!n)
		return SPATE_OK;
	char why[512];
	e->filter = sp_filter_compile(pats, n, why, sizeof(why));
	if (!e->filter)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "filter: %s", why);
	return SPATE_OK;
}

/* Does anything read the records' headers? Everything might, unless the handler is an
 * operator that says it ignores them, no DLQ keeps them and no filter names them. */
static bool wants_headers(const spate_engine_t *e)
{
	if (!e->op || e->op->version < 3 || !e->op->ignores_headers)
		return true;
	const char *dlq = sp_conf_str(e->conf, "dlq");
	return (dlq && *dlq) || sp_filter_uses_headers(e->filter);
}

bool sp_engine_wants_headers(sp_engine_t *e)
{
	return !e || e->wants_headers;
}

spate_engine_t *spate_engine_new(spate_conf_t *conf, const spate_handler_t *handler, char *err,
                                 size_t sz)
{
	if (!conf) {
		sp_err(err, sz, 0, "conf: must not be NULL");
		return NULL;
	}
	spate_engine_t *e = calloc(1, sizeof(*e));
	if (!e) {
		sp_err(err, sz, 0, "out of memory");
		return NULL;
	}
	e->conf = conf;
	e->wakefd = -1;
	if (read_settings(e, err, sz) || compile_filter(e, err, sz))
		goto fail;
	if (handler) {
		if (handler->version != SPATE_HANDLER_VERSION || !handler->handle) {
			sp_err(err, sz, 0, "handler: version %d or a NULL handle callback is not supported (want %d)",
			       handler->version, SPATE_HANDLER_VERSION);
			goto fail;
		}
		e->h = *handler;
	} else {
		char name[64];
		const char *hv = sp_conf_str(conf, "handler");
		const char *arg = sp_split_uri(hv, name, sizeof(name));
		e->op = sp_find_operator(name);
		if (!e->op) {
			sp_err(err, sz, 0, "handler: unknown handler \"%s\"", hv);
			goto fail;
		}
		if (e->op->create(arg, conf, e, &e->h, err, sz) != SPATE_OK)
			goto fail;
		e->handler_created = true;
	}
	e->wants_headers = wants_headers(e);
	e->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->wakefd < 0) {
		sp_err(err, sz, 0, "eventfd: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->work_cv, NULL);
	e->rng = (uint64_t)sp_now_ns() | 1;
	return e;
fail:
	if (e->handler_created && e->op->destroy)
		e->op->destroy(&e->h);
	if (e->wakefd >= 0)
		close(e->wakefd);
	sp_prom_free(e); /* metrics.listen was checked: nothing serves yet */
	sp_filter_free(e->filter);
	free(e);
	return NULL;
}

void sp_engine_set_source_ops(spate_engine_t *e, const sp_source_ops_t *ops)
{
	e->src_override = ops;
}

static int open_plugins(spate_engine_t *e, char *err, size_t sz)
{
	char name[64];
	const char *v = sp_conf_str(e->conf, "source");
	const char *arg = sp_split_uri(v, name, sizeof(name));
	const sp_source_ops_t *so = e->src_override ? e->src_override : sp_find_source(name);
	if (!so)
		return sp_err(err, sz, SPATE_ERR_INVALID, "source: unknown source \"%s\"", v);
	e->src = (sp_source_t){.ops = so, .eng = e, .arg = arg};
	/* lease mode: an explicit store that keeps leases; the source then names its
	 * partitions as candidates and registers those whose lease this process takes */
	{
		const char *sv = sp_conf_str(e->conf, "store");
		char sname[64];
		sp_split_uri(sv, sname, sizeof(sname));
		const sp_store_ops_t *st = *sv ? sp_find_store(sname) : NULL;
		if (st && st->version >= 3 && st->leases) {
			if (so->version < 3 || !so->take)
				return sp_err(err, sz, SPATE_ERR_INVALID,
				              "store: %s keeps leases for sources without a group protocol (log:DIR, kinesis); source %s "
				              "cannot share its partitions through it (use store=file:PATH, or kafka's group)",
				              sname, name);
			e->leased = true;
		} else if (sp_conf_is_set(e->conf, "lease.timeout.ms")) {
			return sp_err(err, sz, SPATE_ERR_INVALID,
			              "lease.timeout.ms: the checkpoint store %s keeps no leases (%s); leases need "
			              "store=redis://host:port or store=dynamodb:TABLE",
			              *sv ? sv : "(the source's default)",
			              st && !strcmp(st->name, "file") ? "file: one process per store, held by a lock"
			                                              : "one process per store");
		}
	}
	int rc = so->open(&e->src, err, sz);
	if (rc)
		return rc;
	e->src_open = true;
	if (so->min_inflight_bytes) {
		char why[256] = "";
		uint64_t need = so->min_inflight_bytes(&e->src, why, sizeof(why));
		if (e->max_inflight_bytes < need)
			return sp_err(err, sz, SPATE_ERR_INVALID,
			              "max.inflight.bytes: %" PRIu64 " cannot hold %s; the minimum is %" PRIu64 " (%" PRIu64
			              "M)",
			              e->max_inflight_bytes, why, need, (need + (1 << 20) - 1) >> 20);
	}
	/* what the source buffers outside the count is part of the bounds */
	if (e->src.held_bytes || e->src.held_records) {
		if (e->src.held_bytes >= e->max_inflight_bytes || e->src.held_records >= e->max_inflight_records)
			return sp_err(err, sz, SPATE_ERR_INVALID,
			              "max.inflight.bytes/max.inflight.records: %" PRIu64 " bytes / %" PRIu64
			              " records leave nothing beyond what %s itself buffers (%" PRIu64 " bytes / %" PRIu64
			              " records)",
			              e->max_inflight_bytes, e->max_inflight_records, v, e->src.held_bytes,
			              e->src.held_records);
		e->max_inflight_bytes -= e->src.held_bytes;
		e->max_inflight_records -= e->src.held_records;
	}
	if (e->nparts == 0 && !so->service && !e->leased) /* a Kafka source adds partitions as assigned */
		return sp_err(err, sz, SPATE_ERR_INVALID, "source: \"%s\" has no partitions", v);
	if ((e->leased ? e->ncands : e->nparts) * e->factor > SP_MAX_LANES)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "parallelization.factor: %u lanes per partition x %zu partitions is more than %d lanes",
		              e->factor, e->leased ? e->ncands : e->nparts, SP_MAX_LANES);

	v = sp_conf_str(e->conf, "store");
	bool dflt = !*v && !sp_conf_is_set(e->conf, "store");
	if (dflt && so->default_store_uri) {
		char why[512] = "";
		if (so->default_store_uri(&e->src, sp_engine_pipeline_name(e), e->store_uri, sizeof(e->store_uri), why,
		                          sizeof(why)))
			return sp_err(err, sz, SPATE_ERR_STORE,
			              "store: the default store of source %s cannot serve: %s (set store=file:PATH, or "
			              "store=none for no checkpoints)",
			              name, why);
		v = e->store_uri;
	} else if (dflt && so->default_store) {
		v = so->default_store;
	}
	if (!strcmp(v, "none"))
		v = ""; /* no checkpoints: every run starts at starting.position */
	if (v != e->store_uri)
		snprintf(e->store_uri, sizeof(e->store_uri), "%s", v);
	if (*v) {
		arg = sp_split_uri(v, name, sizeof(name));
		/* a store the source provides itself (store=kafka: its consumer group) first */
		e->store = (sp_store_t){.eng = e, .arg = arg};
		rc = so->open_store ? so->open_store(&e->src, name, arg, &e->store, err, sz) : SPATE_ERR_UNKNOWN;
		if (rc == SPATE_ERR_UNKNOWN) {
			const sp_store_ops_t *st = sp_find_store(name);
			if (!st)
				return sp_err(err, sz, SPATE_ERR_INVALID, "store: unknown store \"%s\"", v);
			e->store = (sp_store_t){.ops = st, .eng = e, .arg = arg};
			rc = st->open(&e->store, err, sz);
		}
		if (rc) {
			if (dflt && v == e->store_uri) {
				char inner[512];
				snprintf(inner, sizeof(inner), "%s", err);
				sp_err(err, sz, rc,
				       "store: the default store %s cannot be opened: %s (set store=file:PATH, or store=none "
				       "for no checkpoints)",
				       v, inner);
			}
			return rc;
		}
		if (dflt)
			sp_msg(e, SP_MSG_INFO, "checkpoints: %s (the default of source=%s for pipeline %s)", v,
			       sp_conf_str(e->conf, "source"), sp_engine_pipeline_name(e));
		e->store_open = true;
		if (e->leased && (rc = sp_lease_init(e, err, sz)))
			return rc;
	}
	v = sp_conf_str(e->conf, "dlq");
	if (*v) {
		arg = sp_split_uri(v, name, sizeof(name));
		const sp_sink_ops_t *dk = sp_find_sink(name);
		if (!dk)
			return sp_err(err, sz, SPATE_ERR_INVALID, "dlq: unknown DLQ \"%s\"", v);
		e->dlq = (sp_sink_t){.ops = dk, .eng = e, .arg = arg};
		int64_t n = sp_fault_hook("SPATE_FAULT_DLQ", err, sz);
		if (n < 0)
			return SPATE_ERR_INVALID;
		if (n) {
			atomic_store(&e->fault_dlq_left, n);
			sp_msg(e, SP_MSG_WARN, "SPATE_FAULT_DLQ=%s: DLQ writes will fail on purpose", getenv("SPATE_FAULT_DLQ"));
		}
		if ((rc = dk->open(&e->dlq, err, sz)))
			return rc;
		e->dlq_open = true;
	}
	return sp_sinks_open(e, err, sz);
}

/* Lanes of one partition: one aligned block of factor lanes. */
static int part_lanes(spate_engine_t *e, sp_part_t *p)
{
	if (p->eng->lanes)
		return SPATE_OK;
	size_t bytes = ((size_t)e->factor * sizeof(sp_lane_t) + 63) & ~(size_t)63;
	sp_lane_t *block = aligned_alloc(64, bytes);
	sp_lane_t **ptrs = calloc(e->factor, sizeof(*ptrs));
	if (!block || !ptrs) {
		free(block);
		free(ptrs);
		return SPATE_ERR_NOMEM;
	}
	memset(block, 0, (size_t)e->factor * sizeof(sp_lane_t));
	for (uint32_t l = 0; l < e->factor; l++) {
		block[l].part = p;
		block[l].index = l;
		ptrs[l] = &block[l];
	}
	p->eng->lane_block = block;
	p->eng->lanes = ptrs;
	e->nlanes += e->factor;
	return SPATE_OK;
}

static int make_lanes(spate_engine_t *e, char *err, size_t sz)
{
	for (size_t i = 0; i < e->nparts; i++)
		if (part_lanes(e, e->parts[i]))
			return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory for the lanes of %zu partitions", e->nparts);
	e->lanes_ready = true; /* partitions added from now on get lanes at once */
	return SPATE_OK;
}

spate_err_t spate_engine_start(spate_engine_t *e, char *err, size_t sz)
{
	if (e->started)
		return sp_err(err, sz, SPATE_ERR_STATE, "engine already started");
	e->started = true;
	e->start_ns = sp_now_ns();
	int rc = open_plugins(e, err, sz);
	if (!rc)
		rc = make_lanes(e, err, sz);
	if (!rc)
		rc = sp_checkpoint_load_and_seek(e, err, sz);
	if (!rc)
		rc = sp_autoscale_new(e, err, sz);
	if (!rc)
		rc = sp_metrics_new(e, err, sz);
	if (!rc)
		rc = sp_workers_start(e, err, sz);
	if (!rc)
		rc = sp_prom_start(e, err, sz);
	if (rc)
		return rc;
	e->running = true;
	e->last_flush_ms = sp_now_ms();
	sp_msg(e, SP_MSG_DEBUG, "started: %zu partitions, %zu lanes, %d workers", e->nparts, e->nlanes,
	       e->nworkers);
	return SPATE_OK;
}

void spate_engine_stop(spate_engine_t *e)
{
	/* async-signal-safe: an atomic and a write(2) */
	int prev = atomic_fetch_add(&e->stop_req, 1);
	(void)prev;
	uint64_t one = 1;
	ssize_t r = write(e->wakefd, &one, sizeof(one));
	(void)r;
}

static bool all_at_end(spate_engine_t *e)
{
	if (atomic_load_explicit(&e->inflight_records, memory_order_relaxed) || e->held_bytes)
		return false;
	if (e->leased)
		return sp_lease_all_at_end(e);
	if (!e->src.ops->ended || !e->src.ops->ended(&e->src))
		return false;
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *p = e->parts[i];
		if (p->eng->held_head)
			return false;
		if (!p->has_end || p->eng->revoked)
			continue;
		const sp_ckpt_t *c = &p->eng->ckpt;
		if (c->beginning || spate_position_cmp(&c->after, &p->end) < 0)
			return false;
	}
	return true;
}

static bool rings_nonempty(spate_engine_t *e)
{
	for (int i = 0; i < e->nworkers; i++) {
		sp_worker_t *w = e->workers[i];
		/* seq_cst: after the seq_cst store of sleeping (see wake_engine_if_sleeping) */
		if (atomic_load_explicit(&w->cq.head, memory_order_seq_cst) != sp_ring_cons_next(&w->cq))
			return true;
	}
	return false;
}

/* Sleep until a worker completes something, the source has data, a stop, or timeout. */
static void engine_sleep(spate_engine_t *e, int timeout_ms)
{
	atomic_store(&e->sleeping, 1);
	if (rings_nonempty(e)) {
		atomic_store(&e->sleeping, 0);
		return;
	}
	struct pollfd pf[2] = {{.fd = e->wakefd, .events = POLLIN}, {.fd = -1}};
	int n = 1;
	if (e->src.ops->fd && !atomic_load(&e->stop_req)) {
		int fd = e->src.ops->fd(&e->src);
		if (fd >= 0) {
			pf[1] = (struct pollfd){.fd = fd, .events = POLLIN};
			n = 2;
		}
	}
	poll(pf, n, timeout_ms);
	atomic_store(&e->sleeping, 0);
	if (pf[0].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(e->wakefd, &v, sizeof(v));
		(void)r;
	}
}

/* Hand chunk c to the lanes, or false when it must wait (its partition is over its
 * share, or a lane ring of it is full). A skip chunk has no records and goes straight
 * to its partition's FIFO. */
static bool admit(spate_engine_t *e, sp_ck_t *c)
{
	if (c->pub.skip) {
		sp_tracker_add(e, c);
		return true;
	}
	if (!sp_flow_fits(e, c))
		return false;
	if (!sp_dispatch(e, c)) {
		sp_flow_unfit(e, c);
		return false;
	}
	/* what the metrics endpoint reports: PolledEventCount and the iterator age */
	sp_hist_bump(&e->records_polled, c->pub.n);
	int64_t ts = c->pub.recs[c->pub.n - 1].timestamp_ms;
	if (ts > c->pub.part->eng->newest_ts_ms)
		c->pub.part->eng->newest_ts_ms = ts;
	return true;
}

/* Admit what waits, then poll the source once and dispatch what it returns. Returns the
 * chunks admitted or held, or a negative error. A chunk that may not enter waits in its
 * partition's held list (outside the in-flight count) and its partition is paused: the
 * source gives no more of it, while the other partitions go on (see flow.c).
 * One poll per call: the loop drains the workers' completions before the next, so a
 * fast source (the log in the page cache) does not fill the whole window with chunks
 * whose records are DONE but not yet retired. Filling it cost 4x the CPU per record at
 * the default 256 MiB (fresh pages, cold caches, workers waiting on a full completion
 * ring; docs/benchmarks.md). */
static int feed_round(spate_engine_t *e, char *err, size_t sz)
{
	int moved = sp_flow_release(e, admit);
	if (atomic_load(&e->stop_req))
		return moved;
	uint64_t bytes = atomic_load_explicit(&e->inflight_bytes, memory_order_relaxed) + e->held_bytes;
	/* a hint of how much may enter: what the bound leaves, at most one partition's
	 * share (so a chunk fits a share), and one share when the bound is reached (a
	 * partition under its share may still take that much) */
	uint64_t budget = bytes < e->max_inflight_bytes ? e->max_inflight_bytes - bytes : e->share_bytes;
	if (budget > e->share_bytes)
		budget = e->share_bytes;
	if (!budget)
		budget = 1;
	sp_chunk_t *out[SP_POLL_BATCH];
	int n = e->src.ops->poll(&e->src, out, SP_POLL_BATCH, budget, err, sz);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		sp_ck_t *c = sp_ck(out[i]);
		if (c->pub.n == 0 && !c->pub.skip) {
			sp_ck_free(c);
			continue;
		}
		if (c->pub.part->eng->revoked || c->pub.part->eng->releasing) {
			sp_ck_free(c); /* released meanwhile: its new owner reads it */
			continue;
		}
		if (c->pub.n == 1 && c->pub.bytes > e->max_inflight_bytes) {
			/* guarantee 7: one record larger than the bound is an error naming it */
			char pos[SPATE_POSITION_MAX];
			sp_err(err, sz, SPATE_ERR_INVALID,
			       "max.inflight.bytes: the record at %s position %s takes %" PRIu64
			       " bytes, more than the bound of %" PRIu64,
			       c->pub.part->pub.name, spate_position_fmt(&c->pub.recs[0].position, pos, sizeof(pos)),
			       c->pub.bytes, e->max_inflight_bytes);
			for (int j = i; j < n; j++)
				sp_chunk_free(out[j]);
			return SPATE_ERR_INVALID;
		}
		if (c->pub.part->eng->held_head || !admit(e, c))
			sp_flow_hold(e, c);
		moved++;
	}
	return moved;
}

/* One feed round; the lanes it dispatched to are made ready the first at once, then in
 * groups of SP_READY_BATCH and the rest at its end (a lock and a wakeup per group, not
 * per chunk: a Kafka poll returns a chunk for each of up to 64 partitions). */
static int feed(spate_engine_t *e, char *err, size_t sz)
{
	e->pend_first = true;
	int rc = feed_round(e, err, sz);
	sp_lanes_flush(e);
	return rc;
}

static int timeout_for(spate_engine_t *e)
{
	int t = SP_TICK_MS;
	int64_t since = sp_now_ms() - e->last_flush_ms;
	int64_t left = e->ckpt_interval_ms - since;
	if (left < t)
		t = left < 1 ? 1 : (int)left;
	if (e->src.ops->next_ms && !atomic_load(&e->stop_req)) {
		int n = e->src.ops->next_ms(&e->src);
		if (n >= 0 && n < t)
			t = n;
	}
	return t;
}

/* Whether a worker runs a handler (or holds a lane) now. */
static bool workers_running(spate_engine_t *e)
{
	pthread_mutex_lock(&e->mu);
	bool r = e->nrunning > 0;
	pthread_mutex_unlock(&e->mu);
	return r;
}

/* A graceful stop: workers finish the batches they run and claim nothing more. */
static void begin_drain(spate_engine_t *e)
{
	pthread_mutex_lock(&e->mu);
	atomic_store(&e->draining, true);
	pthread_cond_broadcast(&e->work_cv);
	if (e->workers_cv_ready)
		pthread_cond_broadcast(&e->idle_cv);
	pthread_mutex_unlock(&e->mu);
}

spate_err_t spate_engine_run(spate_engine_t *e, char *err, size_t sz)
{
	if (!e->running)
		return sp_err(err, sz, SPATE_ERR_STATE, "engine not started (call spate_engine_start)");
	int rc = SPATE_OK;
	int64_t stop_deadline = 0;
	bool source_ended = false;
	for (;;) {
		size_t drained = sp_tracker_drain(e);
		if (atomic_load_explicit(&e->init_failed, memory_order_acquire)) { /* then init_err is written */
			rc = sp_err(err, sz, SPATE_ERR_HANDLER, "%s", e->init_err);
			break;
		}
		int st = atomic_load(&e->stop_req);
		if (st >= 2)
			break;
		if (e->leased)
			sp_lease_tick(e);
		if (e->fatal_rc) { /* a lost lease store, or a store that lost its data */
			rc = sp_err(err, sz, e->fatal_rc, "%s", e->fatal_err);
			break;
		}
		int fed = 0;
		if (e->src.ops->service) {
			int src_rc = e->src.ops->service(&e->src, st != 0, err, sz);
			if (src_rc) {
				rc = src_rc;
				break;
			}
		}
		if (!st) {
			fed = feed(e, err, sz);
			if (fed < 0) {
				rc = fed;
				break;
			}
		} else {
			/* guarantee 8: the handler calls already running finish; what was fetched
			 * but not handed to a handler stays after the checkpoint, for the next run */
			if (!stop_deadline) {
				stop_deadline = sp_now_ms() + e->shutdown_timeout_ms;
				begin_drain(e);
			}
			if (!workers_running(e))
				break;
			if (sp_now_ms() >= stop_deadline) {
				sp_msg(e, SP_MSG_WARN,
				       "shutdown.timeout.ms (%" PRId64 ") passed with a handler call still running; "
				       "stopping without it (its records are handled again next run)",
				       e->shutdown_timeout_ms);
				e->workers_busy = true;
				break;
			}
		}
		if (e->nreleasing)
			sp_engine_releases(e, false);
		if (e->nrevoked)
			sp_engine_reap(e);
		int64_t now_ns = sp_now_ns();
		sp_autoscale_tick(e, now_ns);
		sp_metrics_tick(e, now_ns);
		sp_prom_tick(e, now_ns, false);
		/* a finite source (gen with a record count, push after close) ends the run once
		 * everything is DONE; a log or Kafka source only with stop.at.end (its ended()) */
		if (sp_checkpoint_maybe_flush(e, false) == SPATE_OK && all_at_end(e)) {
			/* the checkpoints reach the ends; make sure the store has them */
			if (!source_ended && !e->stop_at_end)
				sp_msg(e, SP_MSG_DEBUG, "the source is finite and every record is DONE: ending the run");
			source_ended = true;
			if (sp_checkpoint_maybe_flush(e, true) == SPATE_OK)
				break;
		}
		if (!drained && !fed)
			engine_sleep(e, st ? 10 : timeout_for(e));
	}
	bool at_once = atomic_load(&e->stop_req) >= 2;
	if (at_once || e->workers_busy) {
		/* a handler may still run: do not wait for it (spate_engine_destroy does) */
		begin_drain(e);
		sp_workers_quit(e);
		e->workers_busy = workers_running(e);
		if (!e->workers_busy)
			sp_workers_stop(e);
	} else {
		sp_workers_stop(e);
	}
	if (!at_once) {
		sp_tracker_drain(e);
		sp_engine_releases(e, true); /* what is being released is released now */
		int frc = sp_checkpoint_maybe_flush(e, true);
		/* a store that is busy (a Kafka group in a rebalance) gets a while, with the
		 * source serving its callbacks, before the final save counts as failed */
		int64_t busy_until = sp_now_ms() + SP_FINAL_BUSY_MS;
		while (frc == SPATE_ERR_BUSY && sp_now_ms() < busy_until) {
			char serr[256];
			if (e->src.ops->service && e->src.ops->service(&e->src, true, serr, sizeof(serr)))
				break;
			struct timespec ts = {0, 20 * 1000000};
			nanosleep(&ts, NULL);
			frc = sp_checkpoint_maybe_flush(e, true);
		}
		if (frc && !rc)
			rc = sp_err(err, sz, frc, "final checkpoint failed (see the log)");
	}
	if (e->fatal_rc && !rc)
		rc = sp_err(err, sz, e->fatal_rc, "%s", e->fatal_err);
	if (!e->fatal_rc)
		sp_lease_release_all(e); /* another process may take them at once */
	e->running = false;
	e->end_ns = sp_now_ns();
	atomic_store_explicit(&e->finished, true, memory_order_release); /* publishes end_ns */
	sp_prom_tick(e, e->end_ns, true); /* the endpoint serves the final partition gauges */
	return rc;
}

const char *sp_engine_pipeline_name(spate_engine_t *e)
{
	if (e->pipeline[0])
		return e->pipeline;
	const char *n = sp_conf_str(e->conf, "pipeline.name");
	if (!*n)
		n = e->op ? sp_conf_str(e->conf, "handler") : (e->h.name && *e->h.name ? e->h.name : "handler");
	size_t k = 0;
	for (; *n && k < sizeof(e->pipeline) - 1; n++) {
		char ch = *n;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		          ch == '_' || ch == '-';
		e->pipeline[k++] = ok ? ch : '-';
	}
	e->pipeline[k] = 0;
	if (!k || !strcmp(e->pipeline, ".") || !strcmp(e->pipeline, ".."))
		snprintf(e->pipeline, sizeof(e->pipeline), "pipeline");
	return e->pipeline;
}

int spate_engine_busy(spate_engine_t *e)
{
	return e->workers_busy;
}

void spate_engine_destroy(spate_engine_t *e)
{
	if (!e)
		return;
	sp_prom_free(e); /* its scrapes read the workers */
	if (e->running) {
		atomic_store(&e->stop_req, 2);
		e->running = false;
	}
	sp_workers_stop(e);
	sp_workers_free(e);
	sp_tracker_free_all(e);
	for (size_t i = 0; i < e->nparts; i++)
		sp_flow_drop_held(e, e->parts[i]);
	if (e->src_open && e->src.ops->close)
		e->src.ops->close(&e->src);
	if (e->store_open && e->store.ops->close)
		e->store.ops->close(&e->store);
	sp_lease_free(e);
	if (e->dlq_open && e->dlq.ops->close)
		e->dlq.ops->close(&e->dlq);
	sp_sinks_close(e);
	sp_chunk_cache_clear(e);
	sp_lanes_free_arenas(e);
	for (size_t i = 0; i < e->nparts; i++)
		sp_part_free(e->parts[i]);
	free(e->parts);
	if (e->handler_created && e->op->destroy)
		e->op->destroy(&e->h);
	if (e->wakefd >= 0)
		close(e->wakefd);
	sp_autoscale_free(e);
	sp_metrics_free(e);
	sp_filter_free(e->filter);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->work_cv);
	if (e->workers_cv_ready)
		pthread_cond_destroy(&e->idle_cv);
	spate_conf_destroy(e->conf);
	free(e);
}

int spate_push(spate_engine_t *e, int32_t partition, const spate_push_record_t *recs, size_t cnt)
{
	return spate_push_positions(e, partition, recs, cnt, NULL);
}

int spate_push_positions(spate_engine_t *e, int32_t partition, const spate_push_record_t *recs, size_t cnt,
                         spate_position_t *positions)
{
	if (!e->started || !e->src.ops || !e->src.ops->push)
		return SPATE_ERR_STATE;
	int n = e->src.ops->push(&e->src, partition, recs, cnt, positions);
	/* a full stage (n < cnt) also wakes the engine: it empties the stage */
	if (n >= 0 && atomic_load_explicit(&e->sleeping, memory_order_seq_cst))
		sp_engine_wake(e);
	return n;
}

void spate_push_close(spate_engine_t *e)
{
	if (e->src.ops && e->src.ops->push_close) {
		e->src.ops->push_close(&e->src);
		sp_engine_wake(e);
	}
}
