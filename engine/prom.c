/* prom.c - the Prometheus endpoint: metrics.listen=ADDR:PORT serves /metrics.
 *
 * libmicrohttpd runs the server on its own thread (one event loop for every
 * connection: a client that never finishes its request or sends garbage holds a socket
 * until metrics.timeout, never the loop, and never a worker). A scrape reads what the
 * stats API reads: the workers' counters and histograms (relaxed atomics, each worker
 * their only writer, summed at the scrape: hist.h) and the engine's atomics, and takes
 * e->mu for as long as spate_engine_stats does (three ints). The partitions belong to
 * the engine thread: every SP_PROM_PUBLISH_MS it writes their gauges (offset lag from the
 * source's part_lag, iterator age, records DONE) into a scratch array and swaps it with
 * the published one under a mutex it only tries to take (a scrape that holds it makes
 * the engine thread publish on its next turn instead), so the engine thread never waits
 * for a scrape either. The text follows the exposition format 0.0.4 (# HELP, # TYPE),
 * names and meanings in docs/metrics.md.
 */
#include "engine/engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef SPATE_HAVE_MHD
#include <microhttpd.h>
#endif

/* How often the engine thread publishes the partitions' gauges. */
#define SP_PROM_PUBLISH_MS 250
/* Seconds an idle or unfinished connection is kept (a slow or stuck client). */
#define SP_PROM_CONN_TIMEOUT_S 10u
/* Connections served at once; more are refused (each holds a socket and a buffer). */
#define SP_PROM_CONN_LIMIT 32u
/* Listen backlog. */
#define SP_PROM_BACKLOG 16
/* The histogram buckets exposed: le = 2^k microseconds for k in [LO, HI] (8 us to about
 * 2.4 hours), plus +Inf. Each edge is a bucket edge of hist.h, so the counts are exact
 * (a value is stored in whole microseconds: below 2^k us is below 2^k stored). */
#define SP_PROM_LE_LO 3
#define SP_PROM_LE_HI 33
/* The first size of a scrape's buffer (it grows as needed). */
#define SP_PROM_BUF0 (64 * 1024)
/* A partition's name in a label, at most (longer names are cut). */
#define SP_PROM_NAME_MAX 256

typedef struct prom_part {
	char name[SP_PROM_NAME_MAX];
	int64_t lag;   /* -1 unknown */
	double age_s;  /* iterator age */
	uint64_t done; /* records DONE */
	uint64_t inflight;
} prom_part_t;

typedef struct prom_snap {
	prom_part_t *p;
	size_t n, cap;
	size_t total; /* partitions in all (n may be the bound plus "_other") */
	int64_t src_lag;
	double max_age_s;
} prom_snap_t;

typedef struct sp_prom {
#ifdef SPATE_HAVE_MHD
	struct MHD_Daemon *d;
#endif
	int fd;
	int port;
	size_t max_parts;
	pthread_mutex_t mu;  /* guards pub */
	prom_snap_t pub;     /* what scrapes read */
	prom_snap_t scratch; /* the engine thread's */
	int64_t next_ns;
	/* from metrics.listen, checked in spate_engine_new */
	struct sockaddr_storage sa;
	socklen_t salen;
	char listen[256];
} sp_prom_t;

/* ---- the address ------------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(a))
			return a->s6_addr[12] == 127;
	}
	return false;
}

/* Parse "HOST:PORT" or "[V6]:PORT" (a numeric address, or localhost) into *p. */
static int parse_listen(sp_prom_t *p, const char *v, bool remote, char *err, size_t sz)
{
	char host[256];
	const char *port;
	if (*v == '[') {
		const char *end = strchr(v, ']');
		if (!end || end[1] != ':' || (size_t)(end - v - 1) >= sizeof(host))
			return sp_err(err, sz, SPATE_ERR_INVALID, "metrics.listen: \"%s\" is not [ADDR]:PORT",
			              v);
		memcpy(host, v + 1, (size_t)(end - v - 1));
		host[end - v - 1] = 0;
		port = end + 2;
	} else {
		const char *c = strrchr(v, ':');
		if (!c || (size_t)(c - v) >= sizeof(host) || c == v)
			return sp_err(err, sz, SPATE_ERR_INVALID,
			              "metrics.listen: \"%s\" is not ADDR:PORT (e.g. 127.0.0.1:9464)", v);
		memcpy(host, v, (size_t)(c - v));
		host[c - v] = 0;
		port = c + 1;
	}
	char *pe;
	errno = 0;
	long pn = strtol(port, &pe, 10);
	if (!*port || *pe || errno || pn < 0 || pn > 65535)
		return sp_err(err, sz, SPATE_ERR_INVALID, "metrics.listen: port \"%s\" is not 0..65535",
		              port);
	struct addrinfo hints = {.ai_flags = AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
	if (strcmp(host, "localhost"))
		hints.ai_flags |= AI_NUMERICHOST;
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc || !ai)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "metrics.listen: \"%s\" is not a numeric address: %s", host, gai_strerror(rc));
	memcpy(&p->sa, ai->ai_addr, ai->ai_addrlen);
	p->salen = ai->ai_addrlen;
	freeaddrinfo(ai);
	if (!remote && !is_loopback((const struct sockaddr *)&p->sa))
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "metrics.listen: %s is not a loopback address; set metrics.listen.remote=true to serve "
		    "metrics to other hosts",
		    host);
	snprintf(p->listen, sizeof(p->listen), "%s", v);
	return SPATE_OK;
}

int sp_prom_check(sp_engine_t *e, char *err, size_t sz)
{
	const char *v = sp_conf_str(e->conf, "metrics.listen");
	if (!*v)
		return SPATE_OK;
#ifndef SPATE_HAVE_MHD
	return sp_err(err, sz, SPATE_ERR_INVALID,
	              "metrics.listen: this spate was built without libmicrohttpd");
#else
	sp_prom_t *p = calloc(1, sizeof(*p));
	if (!p)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
	p->fd = -1;
	p->max_parts = (size_t)sp_conf_int(e->conf, "metrics.partitions.max");
	int rc = parse_listen(p, v, sp_conf_bool(e->conf, "metrics.listen.remote"), err, sz);
	if (rc) {
		free(p);
		return rc;
	}
	pthread_mutex_init(&p->mu, NULL);
	e->prom = p;
	return SPATE_OK;
#endif
}

int sp_prom_port(sp_engine_t *e)
{
	return e->prom ? e->prom->port : 0;
}

/* ---- the partitions' gauges (engine thread) ---------------------------------------- */

static prom_part_t *snap_slot(prom_snap_t *s)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		prom_part_t *np = realloc(s->p, cap * sizeof(*np));
		if (!np)
			return NULL;
		s->p = np;
		s->cap = cap;
	}
	return &s->p[s->n++];
}

void sp_prom_tick(sp_engine_t *e, int64_t now_ns, bool force)
{
	sp_prom_t *p = e->prom;
	if (!p || (!force && now_ns < p->next_ns))
		return;
	prom_snap_t *s = &p->scratch;
	s->n = 0;
	s->total = e->nparts;
	s->max_age_s = 0;
	s->src_lag = e->src_open && e->src.ops->lag ? e->src.ops->lag(&e->src) : -1;
	bool has_part_lag = e->src_open && e->src.ops->version >= 3 && e->src.ops->part_lag;
	int64_t wall = sp_wall_ms();
	prom_part_t *other = NULL;
	for (size_t i = 0; i < e->nparts; i++) {
		sp_part_t *sp = e->parts[i];
		struct sp_part_eng *pe = sp->eng;
		if (pe->revoked)
			continue;
		int64_t lag = has_part_lag ? e->src.ops->part_lag(&e->src, sp) : -1;
		/* the iterator age: how old the newest record read was, while the partition
		 * has records to read or in flight; 0 once it is caught up */
		bool behind = lag > 0 || pe->infl_records > 0 || pe->held_head;
		double age = behind && pe->newest_ts_ms > 0 && wall > pe->newest_ts_ms
		                 ? (double)(wall - pe->newest_ts_ms) / 1000.0
		                 : 0;
		/* a service that says how far behind the reading is (Kinesis) is believed */
		int64_t behind_ms = e->src_open && e->src.ops->version >= 3 && e->src.ops->part_behind_ms
		                        ? e->src.ops->part_behind_ms(&e->src, sp)
		                        : -1;
		if (behind_ms >= 0)
			age = (double)behind_ms / 1000.0;
		if (age > s->max_age_s)
			s->max_age_s = age;
		prom_part_t *q;
		if (s->n < p->max_parts) {
			if (!(q = snap_slot(s)))
				return; /* out of memory: publish next time */
			*q = (prom_part_t){
			    .lag = lag, .age_s = age, .done = pe->done, .inflight = pe->infl_records};
			snprintf(q->name, sizeof(q->name), "%s", sp->pub.name);
			continue;
		}
		if (!other) {
			if (!(other = snap_slot(s)))
				return;
			*other = (prom_part_t){.lag = 0};
			snprintf(other->name, sizeof(other->name), "_other");
		}
		if (lag >= 0 && other->lag >= 0)
			other->lag += lag;
		else
			other->lag = -1;
		if (age > other->age_s)
			other->age_s = age;
		other->done += pe->done;
		other->inflight += pe->infl_records;
	}
	if (pthread_mutex_trylock(&p->mu))
		return; /* a scrape reads the published one: next turn */
	prom_snap_t t = p->pub;
	p->pub = *s;
	*s = t;
	pthread_mutex_unlock(&p->mu);
	p->next_ns = now_ns + SP_PROM_PUBLISH_MS * 1000000LL;
}

/* ---- the exposition ------------------------------------------------------------------ */

typedef struct out {
	char *b;
	size_t n, cap;
	bool oom;
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *fmt, ...)
{
	if (o->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(o->b + o->n, o->cap - o->n, fmt, ap);
		va_end(ap);
		if (k < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)k < o->cap - o->n) {
			o->n += (size_t)k;
			return;
		}
		size_t cap = (o->cap + (size_t)k + 1) * 2;
		char *nb = realloc(o->b, cap);
		if (!nb) {
			o->oom = true;
			return;
		}
		o->b = nb;
		o->cap = cap;
	}
}

static void head(out_t *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(out_t *o, const char *name, const char *help, uint64_t v)
{
	head(o, name, "counter", help);
	put(o, "%s %" PRIu64 "\n", name, v);
}

static void gauge(out_t *o, const char *name, const char *help, double v)
{
	head(o, name, "gauge", help);
	put(o, "%s %.17g\n", name, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void put_label(out_t *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(o, "\\%c", *v);
		else if (*v == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *v);
	}
}

/* One histogram series (labels: "" or `k="v",...` without braces) from the workers'
 * histograms at offset off of sp_wstats_t. */
static void histogram(out_t *o, sp_engine_t *e, const char *name, const char *labels, size_t off,
                      sp_hist_snap_t *h)
{
	memset(h, 0, sizeof(*h));
	for (int i = 0; e->workers && i < e->nworkers; i++)
		if (e->workers[i])
			sp_hist_merge(
			    h, (const sp_hist_t *)(const void *)((const char *)&e->workers[i]->st + off));
	const char *sep = *labels ? "," : "";
	uint64_t acc = 0;
	unsigned i = 0;
	for (unsigned k = SP_PROM_LE_LO; k <= SP_PROM_LE_HI; k++) {
		for (unsigned end = sp_hist_bucket(1ull << k); i < end; i++)
			acc += h->b[i];
		put(o, "%s_bucket{%s%sle=\"%.6g\"} %" PRIu64 "\n", name, labels, sep,
		    (double)(1ull << k) / 1e6, acc);
	}
	for (; i < SP_HIST_BUCKETS; i++)
		acc += h->b[i];
	/* the count is the buckets' sum (a worker may be between its bucket and its count) */
	put(o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, acc);
	put(o, "%s_sum%s%s%s %.9g\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
	    (double)h->sum / 1e6);
	put(o, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", acc);
}

static uint64_t wsum(sp_engine_t *e, size_t off)
{
	uint64_t v = 0;
	for (int i = 0; e->workers && i < e->nworkers; i++)
		if (e->workers[i])
			v += atomic_load_explicit(
			    (const _Atomic uint64_t *)(const void *)((const char *)&e->workers[i]->st + off),
			    memory_order_relaxed);
	return v;
}
#define WSUM(e, f) wsum(e, offsetof(sp_wstats_t, f))

static void part_gauges(out_t *o, sp_prom_t *p)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
	    {"spate_partition_offset_lag", "gauge",
	     "Records of the partition known to exist and not yet read (Lambda OffsetLag)"},
	    {"spate_partition_iterator_age_seconds", "gauge",
	     "Age of the newest record read from the partition while it has records to read or in flight, "
	     "else 0 (Lambda IteratorAge)"},
	    {"spate_partition_records_total", "counter", "Records of the partition DONE"},
	    {"spate_partition_inflight_records", "gauge", "Records of the partition read and not yet DONE"},
	};
	pthread_mutex_lock(&p->mu);
	const prom_snap_t *s = &p->pub;
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		head(o, fam[f].name, fam[f].type, fam[f].help);
		for (size_t i = 0; i < s->n; i++) {
			const prom_part_t *q = &s->p[i];
			if (f == 0 && q->lag < 0)
				continue;
			put(o, "%s{partition=\"", fam[f].name);
			put_label(o, q->name);
			if (f == 0)
				put(o, "\"} %" PRId64 "\n", q->lag);
			else if (f == 1)
				put(o, "\"} %.3f\n", q->age_s);
			else
				put(o, "\"} %" PRIu64 "\n", f == 2 ? q->done : q->inflight);
		}
	}
	gauge(o, "spate_partitions", "Partitions the pipeline reads", (double)s->total);
	if (s->src_lag >= 0)
		gauge(o, "spate_offset_lag",
		      "Records of every partition known to exist and not yet read (Lambda OffsetLag)",
		      (double)s->src_lag);
	gauge(o, "spate_iterator_age_seconds", "The largest partition iterator age (Lambda IteratorAge)",
	      s->max_age_s);
	pthread_mutex_unlock(&p->mu);
}

/* The whole exposition into o. @locality the server's thread */
static void expose(sp_engine_t *e, out_t *o)
{
	spate_stats_t st;
	spate_engine_stats(e, &st);
	spate_summary_t sum;
	memset(&sum, 0, sizeof(sum));
	if (e->as)
		sp_autoscale_summary(e, &sum);
	head(o, "spate_info", "gauge", "The pipeline: its name, source, handler and spate's version");
	put(o, "spate_info{pipeline=\"");
	put_label(o, sp_engine_pipeline_name(e));
	put(o, "\",source=\"");
	put_label(o, e->src.ops ? e->src.ops->name : "");
	put(o, "\",handler=\"");
	put_label(o, e->op ? sp_conf_str(e->conf, "handler") : (e->h.name ? e->h.name : ""));
	put(o, "\",version=\"%s\"} 1\n", spate_version_str());
	uint64_t dropped = WSUM(e, dropped) + atomic_load_explicit(&e->corrupt_dropped, memory_order_relaxed);
	uint64_t dlq = WSUM(e, dlq) + atomic_load_explicit(&e->corrupt_dlq, memory_order_relaxed);
	counter(o, "spate_records_total", "Records DONE (handled, filtered, sent to the DLQ or dropped)",
	        st.records);
	counter(o, "spate_polled_events_total", "Records read from the source (Lambda PolledEventCount)",
	        atomic_load_explicit(&e->records_polled, memory_order_relaxed));
	counter(o, "spate_filtered_out_events_total",
	        "Records DONE without a handler call by design (Lambda FilteredOutEventCount)",
	        WSUM(e, filtered));
	counter(o, "spate_dropped_events_total",
	        "Records dropped after their retries with no DLQ configured (Lambda DroppedEventCount)",
	        dropped);
	counter(o, "spate_invocations_total", "Handler invocations (Lambda Invocations)", WSUM(e, batches));
	counter(o, "spate_errors_total",
	        "Handler invocations that failed, whole or some items (Lambda Errors)", WSUM(e, errors));
	counter(o, "spate_failed_records_total", "Records in failed handler invocations", WSUM(e, failed));
	counter(o, "spate_retries_total", "Batches retried (backoff or bisect)", WSUM(e, retries));
	counter(o, "spate_throttles_total",
	        "Autoscaler ticks at max.concurrency with lanes waiting for a worker (Lambda Throttles)",
	        sum.throttled);
	counter(o, "spate_cold_starts_total", "Records that arrived while no worker was active",
	        sum.cold_starts);
	counter(o, "spate_dlq_delivered_total", "Records written to the DLQ (Lambda on-failure destination)",
	        dlq);
	counter(o, "spate_dlq_delivery_failures_total",
	        "DLQ writes that failed; their records stayed and were retried (Lambda "
	        "DestinationDeliveryFailures)",
	        WSUM(e, dlq_errors));
	counter(o, "spate_emitted_total", "Records handlers emitted to named sinks, durable",
	        WSUM(e, emitted));
	counter(o, "spate_checkpoint_commits_total", "Checkpoint saves the store accepted",
	        atomic_load_explicit(&e->ckpt_commits, memory_order_relaxed));
	counter(o, "spate_checkpoint_failures_total",
	        "Checkpoint saves that failed (retried on the next tick)",
	        atomic_load_explicit(&e->store_errors, memory_order_relaxed));
	head(o, "spate_handler_busy_seconds_total", "counter", "Time spent in handler calls, all workers");
	put(o, "spate_handler_busy_seconds_total %.9g\n", (double)WSUM(e, busy_ns) / 1e9);
	gauge(o, "spate_concurrent_executions",
	      "Workers the autoscaler runs now (Lambda ConcurrentExecutions)", st.workers_active);
	gauge(o, "spate_workers_max", "max.concurrency", e->nworkers);
	gauge(o, "spate_lanes_waiting", "Lanes with records and no worker (the backlog)",
	      (double)st.lanes_waiting);
	gauge(o, "spate_lanes_running", "Lanes a worker holds", (double)st.lanes_running);
	gauge(o, "spate_inflight_bytes", "Bytes read and not yet DONE (bounded by max.inflight.bytes)",
	      (double)st.inflight_bytes);
	gauge(o, "spate_inflight_records", "Records read and not yet DONE", (double)st.inflight_records);
	int64_t end = atomic_load_explicit(&e->finished, memory_order_acquire) ? e->end_ns : sp_now_ns();
	gauge(o, "spate_uptime_seconds", "Seconds since the engine started (to the end of its run)",
	      e->start_ns ? (double)(end - e->start_ns) / 1e9 : 0);
	part_gauges(o, e->prom);
	sp_hist_snap_t *h = malloc(sizeof(*h));
	if (!h) {
		o->oom = true;
		return;
	}
	head(o, "spate_handler_duration_seconds", "histogram",
	     "Handler time per invocation (Lambda Duration)");
	histogram(o, e, "spate_handler_duration_seconds", "", offsetof(sp_wstats_t, handler), h);
	static const struct {
		const char *labels;
		size_t off;
	} lat[] = {
	    {"from=\"timestamp\",to=\"start\"", offsetof(sp_wstats_t, ts_start)},
	    {"from=\"timestamp\",to=\"done\"", offsetof(sp_wstats_t, ts_done)},
	    {"from=\"arrival\",to=\"start\"", offsetof(sp_wstats_t, in_start)},
	    {"from=\"arrival\",to=\"done\"", offsetof(sp_wstats_t, in_done)},
	};
	head(o, "spate_latency_seconds", "histogram",
	     "End-to-end latency of records: from their stream timestamp or their arrival in the engine to "
	     "their "
	     "handler call (start) or to DONE");
	for (size_t i = 0; i < sizeof(lat) / sizeof(lat[0]); i++)
		histogram(o, e, "spate_latency_seconds", lat[i].labels, lat[i].off, h);
	free(h);
}

#ifdef SPATE_HAVE_MHD

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body,
                             size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size,
                                  void **con_cls)
{
	sp_engine_t *e = cls;
	static char text[] = "text/plain; charset=utf-8";
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		static char msg[] = "only GET /metrics\n";
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, msg, sizeof(msg) - 1,
		             MHD_RESPMEM_PERSISTENT);
	}
	if (strcmp(url, "/metrics")) {
		static char msg[] = "spate: metrics at /metrics\n";
		return reply(conn, strcmp(url, "/") ? MHD_HTTP_NOT_FOUND : MHD_HTTP_OK, text, msg,
		             sizeof(msg) - 1, MHD_RESPMEM_PERSISTENT);
	}
	out_t o = {.cap = SP_PROM_BUF0};
	if (!(o.b = malloc(o.cap)))
		o.oom = true;
	else
		expose(e, &o);
	if (o.oom) {
		free(o.b);
		static char msg[] = "out of memory\n";
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, msg, sizeof(msg) - 1,
		             MHD_RESPMEM_PERSISTENT);
	}
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", o.b, o.n,
	             MHD_RESPMEM_MUST_FREE);
}

int sp_prom_start(sp_engine_t *e, char *err, size_t sz)
{
	sp_prom_t *p = e->prom;
	if (!p)
		return SPATE_OK;
	sp_prom_tick(e, sp_now_ns(), true);
	/* the name is computed on first use: do it here, so scrapes only read it */
	sp_engine_pipeline_name(e);
	p->fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (p->fd < 0)
		return sp_err(err, sz, SPATE_ERR_IO, "metrics.listen: socket: %s", strerror(errno));
	int one = 1;
	setsockopt(p->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(p->fd, (struct sockaddr *)&p->sa, p->salen) < 0 || listen(p->fd, SP_PROM_BACKLOG) < 0)
		return sp_err(err, sz, SPATE_ERR_IO, "metrics.listen: cannot listen on %s: %s", p->listen,
		              strerror(errno));
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	if (getsockname(p->fd, (struct sockaddr *)&got, &gl) == 0)
		p->port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&got)->sin6_port
		                                          : ((struct sockaddr_in *)(void *)&got)->sin_port);
	p->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC |
	                            (p->sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	                        0, NULL, NULL, on_request, e, MHD_OPTION_LISTEN_SOCKET, p->fd,
	                        MHD_OPTION_CONNECTION_TIMEOUT, SP_PROM_CONN_TIMEOUT_S,
	                        MHD_OPTION_CONNECTION_LIMIT, SP_PROM_CONN_LIMIT, MHD_OPTION_END);
	if (!p->d)
		return sp_err(err, sz, SPATE_ERR_IO, "metrics.listen: cannot start the HTTP server on %s",
		              p->listen);
	p->fd = -1; /* the daemon's now: MHD_stop_daemon closes it */
	sp_msg(e, SP_MSG_INFO, "metrics: serving /metrics on %s (port %d)", p->listen, p->port);
	return SPATE_OK;
}

#else

int sp_prom_start(sp_engine_t *e, char *err, size_t sz)
{
	(void)expose;
	return SPATE_OK;
}

#endif

void sp_prom_free(sp_engine_t *e)
{
	sp_prom_t *p = e->prom;
	if (!p)
		return;
#ifdef SPATE_HAVE_MHD
	if (p->d)
		MHD_stop_daemon(p->d); /* waits for a scrape that runs */
#endif
	if (p->fd >= 0)
		close(p->fd);
	pthread_mutex_destroy(&p->mu);
	free(p->pub.p);
	free(p->scratch.p);
	free(p);
	e->prom = NULL;
}
