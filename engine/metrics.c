/* metrics.c - gauges, the periodic stats line, and the end-of-run summary.
 *
 * spate_engine_stats() reads the engine's gauges from any thread (atomics, or e->mu for
 * the lane counts). With stats.interval.ms > 0 the engine thread writes one JSON object
 * per interval to stats.file (stderr when empty): workers_active, the backlog, the
 * source's lag, records/s over the interval, handler p50/p99, in-flight bytes,
 * throttled and cold starts.
 */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sp_metrics {
	FILE *out;
	bool own;
	int64_t next_ns, last_ns;
	uint64_t last_records;
} sp_metrics_t;

int sp_metrics_new(sp_engine_t *e, char *err, size_t sz)
{
	if (e->stats_interval_ms <= 0)
		return SPATE_OK;
	sp_metrics_t *m = calloc(1, sizeof(*m));
	if (!m)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "out of memory");
	const char *path = sp_conf_str(e->conf, "stats.file");
	if (*path) {
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, SP_FILE_MODE);
		if (fd < 0 || !(m->out = fdopen(fd, "a"))) {
			if (fd >= 0)
				close(fd);
			free(m);
			return sp_err(err, sz, SPATE_ERR_IO, "stats.file: cannot open %s: %s", path, strerror(errno));
		}
		m->own = true;
	} else {
		m->out = stderr;
	}
	m->last_ns = sp_now_ns();
	m->next_ns = m->last_ns + e->stats_interval_ms * 1000000LL;
	e->mx = m;
	return SPATE_OK;
}

void sp_metrics_free(sp_engine_t *e)
{
	sp_metrics_t *m = e->mx;
	if (!m)
		return;
	if (m->own)
		fclose(m->out);
	free(m);
	e->mx = NULL;
}

/* The workers' histograms of one kind, merged. */
static void merged(spate_engine_t *e, size_t off, sp_hist_snap_t *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; e->workers && i < e->nworkers; i++)
		if (e->workers[i])
			sp_hist_merge(out, (const sp_hist_t *)((const char *)&e->workers[i]->st + off));
}

static double q_ms(const sp_hist_snap_t *h, double q)
{
	return (double)sp_hist_quantile(h, q) / 1000.0;
}

static void latency_of(spate_engine_t *e, size_t off, spate_latency_t *l)
{
	sp_hist_snap_t *h = malloc(sizeof(*h));
	if (!h)
		return;
	merged(e, off, h);
	*l = (spate_latency_t){q_ms(h, 0.50), q_ms(h, 0.90), q_ms(h, 0.99), q_ms(h, 0.999), (double)h->max / 1000.0};
	free(h);
}

void spate_engine_stats(spate_engine_t *e, spate_stats_t *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&e->mu);
	s->workers_active = e->active;
	s->lanes_waiting = (uint64_t)e->nready;
	s->lanes_running = (uint64_t)e->nrunning;
	pthread_mutex_unlock(&e->mu);
	s->lag = -1; /* the source is the engine thread's; the stats line reports it */
	s->inflight_bytes = atomic_load(&e->inflight_bytes);
	s->inflight_records = atomic_load(&e->inflight_records);
	s->records = atomic_load(&e->records_done);
	spate_summary_t sum;
	memset(&sum, 0, sizeof(sum));
	if (e->as)
		sp_autoscale_summary(e, &sum);
	s->throttled = sum.throttled;
	s->cold_starts = sum.cold_starts;
	spate_latency_t hl = {0}, dl = {0};
	latency_of(e, offsetof(sp_wstats_t, handler), &hl);
	latency_of(e, offsetof(sp_wstats_t, ts_done), &dl);
	s->handler_p50_ms = hl.p50_ms;
	s->handler_p99_ms = hl.p99_ms;
	s->latency_p50_ms = dl.p50_ms;
	s->latency_p99_ms = dl.p99_ms;
}

void sp_metrics_tick(sp_engine_t *e, int64_t now)
{
	sp_metrics_t *m = e->mx;
	if (!m || now < m->next_ns)
		return;
	m->next_ns = now + e->stats_interval_ms * 1000000LL;
	spate_stats_t s;
	spate_engine_stats(e, &s);
	int64_t lag = e->src.ops && e->src.ops->lag ? e->src.ops->lag(&e->src) : -1;
	double dt = (double)(now - m->last_ns) / 1e9;
	double rate = dt > 0 ? (double)(s.records - m->last_records) / dt : 0;
	m->last_ns = now;
	m->last_records = s.records;
	fprintf(m->out,
	        "{\"t_ms\":%" PRId64 ",\"workers_active\":%d,\"backlog_lanes\":%" PRIu64 ",\"lanes_running\":%" PRIu64
	        ",\"lag\":%" PRId64 ",\"records\":%" PRIu64 ",\"records_per_s\":%.0f,\"handler_p50_ms\":%.3f"
	        ",\"handler_p99_ms\":%.3f,\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"inflight_bytes\":%" PRIu64 ",\"inflight_records\":%" PRIu64
	        ",\"throttled\":%" PRIu64 ",\"cold_starts\":%" PRIu64 "}\n",
	        (now - e->start_ns) / 1000000, s.workers_active, s.lanes_waiting, s.lanes_running, lag, s.records,
	        rate, s.handler_p50_ms, s.handler_p99_ms, s.latency_p50_ms, s.latency_p99_ms, s.inflight_bytes, s.inflight_records, s.throttled,
	        s.cold_starts);
	fflush(m->out);
}

/* ---- the end-of-run summary ------------------------------------------------------------ */

void spate_engine_summary(spate_engine_t *e, spate_summary_t *s)
{
	memset(s, 0, sizeof(*s));
	s->records = atomic_load_explicit(&e->records_done, memory_order_relaxed);
	s->store_errors = atomic_load_explicit(&e->store_errors, memory_order_relaxed);
	s->dlq += atomic_load_explicit(&e->corrupt_dlq, memory_order_relaxed);
	s->dropped += atomic_load_explicit(&e->corrupt_dropped, memory_order_relaxed);
	for (int i = 0; e->workers && i < e->nworkers; i++) {
		sp_worker_t *w = e->workers[i];
		if (!w)
			continue;
		s->batches += atomic_load_explicit(&w->st.batches, memory_order_relaxed);
		s->failed += atomic_load_explicit(&w->st.failed, memory_order_relaxed);
		s->dlq += atomic_load_explicit(&w->st.dlq, memory_order_relaxed);
		s->dropped += atomic_load_explicit(&w->st.dropped, memory_order_relaxed);
		s->retries += atomic_load_explicit(&w->st.retries, memory_order_relaxed);
		s->dlq_errors += atomic_load_explicit(&w->st.dlq_errors, memory_order_relaxed);
		s->emitted += atomic_load_explicit(&w->st.emitted, memory_order_relaxed);
		s->filtered += atomic_load_explicit(&w->st.filtered, memory_order_relaxed);
	}
	latency_of(e, offsetof(sp_wstats_t, ts_start), &s->latency_start);
	latency_of(e, offsetof(sp_wstats_t, ts_done), &s->latency_done);
	latency_of(e, offsetof(sp_wstats_t, in_start), &s->arrival_start);
	latency_of(e, offsetof(sp_wstats_t, in_done), &s->arrival_done);
	int64_t end = atomic_load_explicit(&e->finished, memory_order_acquire) ? e->end_ns : sp_now_ns();
	s->elapsed_s = e->start_ns ? (double)(end - e->start_ns) / 1e9 : 0;
	int64_t first = atomic_load(&e->first_ns);
	int64_t last = atomic_load_explicit(&e->last_done_ns, memory_order_relaxed);
	if (first && last > first)
		s->first_to_last_s = (double)(last - first) / 1e9;
	s->records_per_s = s->first_to_last_s > 0 ? (double)s->records / s->first_to_last_s : 0;
	sp_autoscale_summary(e, s);
}

/* The summary's fields, in order, with one name and one unit each: the JSON object and
 * the `name value` lines are written from this one table. */
enum sum_kind { SUM_U64, SUM_INT, SUM_SECONDS, SUM_RATE, SUM_MEAN, SUM_MS };
static const struct sum_field {
	const char *name;
	enum sum_kind kind;
	size_t off;
} sum_fields[] = {
#define F(n, k, m) {n, k, offsetof(spate_summary_t, m)}
    F("records", SUM_U64, records),
    F("batches", SUM_U64, batches),
    F("failed", SUM_U64, failed),
    F("dlq", SUM_U64, dlq),
    F("dropped", SUM_U64, dropped),
    F("retries", SUM_U64, retries),
    F("filtered", SUM_U64, filtered),
    F("elapsed_s", SUM_SECONDS, elapsed_s),
    F("first_to_last_s", SUM_SECONDS, first_to_last_s),
    F("records_per_s", SUM_RATE, records_per_s),
    F("workers_min", SUM_INT, workers_min),
    F("workers_max", SUM_INT, workers_max),
    F("workers_mean", SUM_MEAN, workers_mean),
    F("dlq_errors", SUM_U64, dlq_errors),
    F("store_errors", SUM_U64, store_errors),
    F("throttled", SUM_U64, throttled),
    F("cold_starts", SUM_U64, cold_starts),
    F("cold_start_p50_ms", SUM_MS, cold_p50_ms),
    F("cold_start_p99_ms", SUM_MS, cold_p99_ms),
    F("emitted", SUM_U64, emitted),
#define LAT(n, m)                                                                                  \
	F(n "_p50_ms", SUM_MS, m.p50_ms), F(n "_p90_ms", SUM_MS, m.p90_ms), F(n "_p99_ms", SUM_MS, m.p99_ms), \
	    F(n "_p999_ms", SUM_MS, m.p999_ms), F(n "_max_ms", SUM_MS, m.max_ms)
    LAT("latency_start", latency_start),
    LAT("latency_done", latency_done),
    LAT("arrival_start", arrival_start),
    LAT("arrival_done", arrival_done),
#undef LAT
#undef F
};

static int sum_value(const spate_summary_t *s, const struct sum_field *f, char *buf, size_t size)
{
	const char *p = (const char *)s + f->off;
	switch (f->kind) {
	case SUM_U64:
		return snprintf(buf, size, "%" PRIu64, *(const uint64_t *)(const void *)p);
	case SUM_INT:
		return snprintf(buf, size, "%d", *(const int *)(const void *)p);
	case SUM_SECONDS:
		return snprintf(buf, size, "%.6f", *(const double *)(const void *)p);
	case SUM_RATE:
		return snprintf(buf, size, "%.0f", *(const double *)(const void *)p);
	default:
		return snprintf(buf, size, "%.3f", *(const double *)(const void *)p);
	}
}

/* Write the fields as JSON (json) or as lines; returns the length as snprintf does. */
static int summary_write(const spate_summary_t *s, bool json, char *buf, size_t size)
{
	size_t n = 0;
	char v[64], none[1];
	/* past the end (or without a buffer) the length is still counted, as snprintf does */
#define PUT(...)                                                                                  \
	do {                                                                                      \
		bool in_ = buf && n < size;                                                       \
		int k_ = snprintf(in_ ? buf + n : none, in_ ? size - n : 0, __VA_ARGS__);         \
		n += k_ > 0 ? (size_t)k_ : 0;                                                     \
	} while (0)
	if (json)
		PUT("{");
	for (size_t i = 0; i < sizeof(sum_fields) / sizeof(sum_fields[0]); i++) {
		sum_value(s, &sum_fields[i], v, sizeof(v));
		if (json)
			PUT("%s\"%s\":%s", i ? "," : "", sum_fields[i].name, v);
		else
			PUT("%s %s\n", sum_fields[i].name, v);
	}
	if (json)
		PUT("}");
#undef PUT
	return (int)n;
}

int spate_summary_json(const spate_summary_t *s, char *buf, size_t size)
{
	return summary_write(s, true, buf, size);
}

int spate_summary_text(const spate_summary_t *s, char *buf, size_t size)
{
	return summary_write(s, false, buf, size);
}
