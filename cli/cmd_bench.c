/* cmd_bench.c - `spate bench`: a load generator and a consumer in one run.
 *
 * A producer thread writes records of --record-bytes with --keys distinct keys into a
 * log (--log DIR, created with --partitions), a Kafka topic (--kafka TOPIC, through
 * the Kafka sink: idempotent, acks=all) or a Kinesis stream (--kinesis STREAM, through
 * the Kinesis sink: PutRecords), at --rate records/s held open loop (the
 * schedule says how many records should be out by now; the producer never waits for
 * the consumer, and when it falls behind the schedule it says so) or as fast as it can
 * (--rate 0). Meanwhile a pipeline (the engine, on this thread) consumes the stream with
 * --handler. Once the producer is done and the pipeline has every record DONE, the run
 * stops and reports: records/s and MB/s produced and consumed in the steady state (the
 * span between 10% and 90% of the records), end-to-end latency percentiles (from the
 * record's stream timestamp and from its arrival in the engine, to DONE), workers, and
 * CPU seconds per million records (the process minus the producer thread). A progress
 * line is drawn on stderr when it is a terminal; --json FILE writes the report as JSON.
 */
#include "cmds.h"
#include "gen.h"
#include "log.h"
#include "sp_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Records per producer call at most (a Kafka write waits for its delivery reports: it
 * takes more at once; the Kinesis sink splits a call into PutRecords of at most 500). */
#define BENCH_SEND_BATCH       1024
#define BENCH_KAFKA_SEND_BATCH 16384
/* Samples of the counters, for the progress line and the steady-state rates. */
#define BENCH_SAMPLE_MS 100
/* The steady state: from the sample where this fraction of the records was reached to
 * the one where 1 - it was. */
#define BENCH_STEADY_EDGE 0.10
/* After the producer is done, the pipeline may take this long without progress before
 * the run ends short (a record lost or stuck is then reported, not waited for). */
#define BENCH_DRAIN_IDLE_MS 30000
/* Records in the pre-generated pool at most (it is replayed). */
#define BENCH_POOL_MAX 65536
/* Samples kept at most (a sample per BENCH_SAMPLE_MS: 10 hours). */
#define BENCH_SAMPLES_MAX 360000

static const char usage_text[] =
    "usage: spate bench (--log DIR | --kafka TOPIC -X kafka.bootstrap.servers=H:P |\n"
    "                    --kinesis STREAM [-X kinesis.region=R] [-X kinesis.endpoint=URL])\n"
    "                   [--rate R] [--records N | --duration S] [--record-bytes B]\n"
    "                   [--keys K] [--partitions P] [--handler H] [--json FILE]\n"
    "                   [-X key=value]...\n"
    "\n"
    "Produce records into a new log, a Kafka topic or a Kinesis stream while a pipeline\n"
    "consumes them, then report records/s and MB/s produced and consumed (steady state:\n"
    "between 10% and 90% of the records), end-to-end latency percentiles, workers and CPU\n"
    "per million records.\n"
    "\n"
    "  --log DIR          a new log at DIR (created with --partitions; must not hold records)\n"
    "  --kafka TOPIC      an existing topic (its records before the run are consumed too:\n"
    "                     use a new one); the pipeline reads it in a new consumer group\n"
    "  --kinesis STREAM   an existing, active stream (its records before the run are\n"
    "                     consumed too: use a new one); credentials from the environment\n"
    "  --rate R           records/s, held open loop (default 0: as fast as possible)\n"
    "  --records N        records to produce (default 1000000)\n"
    "  --duration S       produce for S seconds instead (with --rate: R*S records)\n"
    "  --record-bytes B   value bytes per record (default 100)\n"
    "  --keys K           distinct keys (default 10000)\n"
    "  --partitions P     partitions of the new log (default 8)\n"
    "  --handler H        the pipeline's handler (default noop; see `spate config`)\n"
    "  --warmup S         first produce one record and wait (at most S seconds, default\n"
    "                     60) until the pipeline has handled it, so the load and its\n"
    "                     latencies start once the consumer is ready (a Kafka group\n"
    "                     joined); 0: start at once\n"
    "  --json FILE        write the report as one JSON object to FILE\n"
    "  -X key=value       pipeline keys (max.concurrency, batch.size, ...), the log's\n"
    "                     writer keys (flush.ms, compression, ...), kafka.* keys,\n"
    "                     kinesis.* keys\n";

typedef struct bopts {
	const char *dir, *kafka, *kinesis, *handler, *json;
	long long rate, records, duration, bytes, keys, partitions, warmup;
	spate_conf_t *conf; /* the -X keys */
} bopts_t;

typedef struct sample {
	int64_t ms;
	uint64_t produced, consumed;
} sample_t;

typedef struct bench {
	bopts_t o;
	spate_engine_t *e;
	sp_log_producer_t *log;
	sp_sink_t sink;
	bool sink_open;
	sp_gen_pool_t *pool;
	/* the producer thread's */
	_Atomic uint64_t produced, produced_bytes;
	_Atomic bool producer_done;
	_Atomic uint64_t behind_max; /* records the producer was behind its schedule at most */
	int prc;
	char perr[1024];
	double producer_cpu_s;
	int64_t p_start_ms, p_end_ms;
	/* the monitor's */
	sample_t *samples;
	size_t nsamples;
	bool short_end; /* stopped without every record DONE */
	_Atomic bool quit;
} bench_t;

static volatile sig_atomic_t bench_signal;
static spate_engine_t *volatile bench_engine;

static void on_signal(int sig)
{
	(void)sig;
	bench_signal = 1;
	if (bench_engine)
		spate_engine_stop(bench_engine);
}

static int num(const char *name, const char *v, long long min, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min) {
		fprintf(stderr, "spate bench: %s: \"%s\" is not a number >= %lld\n", name, v, min);
		return -1;
	}
	*out = x;
	return 0;
}

/* 0, 1 for --help, -1 on a usage error (printed). */
static int parse(int argc, char **argv, bopts_t *o)
{
	o->records = 1000000;
	o->bytes = 100;
	o->keys = 10000;
	o->partitions = 8;
	o->handler = "noop";
	o->warmup = 60;
	bool records_set = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return 1;
		if (i + 1 >= argc) {
			fprintf(stderr, "spate bench: %s needs a value (see --help)\n", a);
			return -1;
		}
		const char *v = argv[++i];
		int rc = 0;
		if (!strcmp(a, "--log"))
			o->dir = v;
		else if (!strcmp(a, "--kafka"))
			o->kafka = v;
		else if (!strcmp(a, "--kinesis"))
			o->kinesis = v;
		else if (!strcmp(a, "--handler"))
			o->handler = v;
		else if (!strcmp(a, "--json"))
			o->json = v;
		else if (!strcmp(a, "--rate"))
			rc = num(a, v, 0, &o->rate);
		else if (!strcmp(a, "--records"))
			rc = num(a, v, 1, &o->records), records_set = true;
		else if (!strcmp(a, "--duration"))
			rc = num(a, v, 1, &o->duration);
		else if (!strcmp(a, "--record-bytes"))
			rc = num(a, v, 1, &o->bytes);
		else if (!strcmp(a, "--keys"))
			rc = num(a, v, 1, &o->keys);
		else if (!strcmp(a, "--partitions"))
			rc = num(a, v, 1, &o->partitions);
		else if (!strcmp(a, "--warmup"))
			rc = num(a, v, 0, &o->warmup);
		else if (!strcmp(a, "-X")) {
			char key[128], err[512];
			const char *eq = strchr(v, '=');
			if (!eq || (size_t)(eq - v) >= sizeof(key)) {
				fprintf(stderr, "spate bench: -X takes key=value, not \"%s\"\n", v);
				return -1;
			}
			memcpy(key, v, (size_t)(eq - v));
			key[eq - v] = 0;
			if (spate_conf_set(o->conf, key, eq + 1, err, sizeof(err)) != SPATE_CONF_OK) {
				fprintf(stderr, "spate bench: -X %s\n", err);
				return -1;
			}
		} else {
			fprintf(stderr, "spate bench: unknown option \"%s\" (see --help)\n", a);
			return -1;
		}
		if (rc)
			return -1;
	}
	if (!!o->dir + !!o->kafka + !!o->kinesis != 1) {
		fprintf(stderr, "spate bench: give one of --log DIR, --kafka TOPIC and --kinesis STREAM "
		                "(see --help)\n");
		return -1;
	}
	if (o->duration && records_set) {
		fprintf(stderr, "spate bench: --records and --duration exclude each other\n");
		return -1;
	}
	return 0;
}

/* ---- the producer ------------------------------------------------------------------ */

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Sleep to the next whole millisecond of the wall clock. Records get a timestamp in whole
 * ms (timestamp 0 = now, floored), and end-to-end latency is measured from it: sent at a
 * random point of a millisecond, a record's latency reads up to 1 ms (0.5 ms on average)
 * high; sent right after the millisecond begins, by the wake-up's delay only. A signal
 * ends the sleep early (the caller checks). */
static void sleep_to_next_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec = (ts.tv_nsec / 1000000 + 1) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
}

static int send_recs(bench_t *b, const spate_push_record_t *recs, size_t n)
{
	if (b->log)
		return sp_log_producer_send(b->log, recs, n, -1, b->perr, sizeof(b->perr));
	return b->sink.ops->write(&b->sink, recs, n, b->perr, sizeof(b->perr));
}

/* --warmup: record 0 alone, then wait until the pipeline has it DONE (a Kafka consumer
 * that handled a record holds its partitions: it is the group's only member). 0, or -1
 * with b->perr set. *sent and *bytes count it. */
static int warm_up(bench_t *b, const sp_gen_rec_t *g, uint64_t *sent, uint64_t *bytes)
{
	spate_push_record_t r = {.key = g->key, .key_len = g->key_len, .value = g->value,
	                         .value_len = g->value_len};
	if (send_recs(b, &r, 1) ||
	    (b->log && sp_log_producer_flush(b->log, b->perr, sizeof(b->perr))))
		return -1;
	*sent = 1;
	*bytes = r.key_len + r.value_len;
	atomic_store_explicit(&b->produced, 1, memory_order_relaxed);
	atomic_store_explicit(&b->produced_bytes, *bytes, memory_order_relaxed);
	int64_t until = sp_now_ms() + b->o.warmup * 1000;
	for (;;) {
		spate_stats_t st;
		spate_engine_stats(b->e, &st);
		if (st.records >= 1)
			return 0;
		if (bench_signal || atomic_load(&b->quit))
			return 0; /* the run ends anyway */
		if (sp_now_ms() >= until) {
			snprintf(b->perr, sizeof(b->perr),
			         "the pipeline did not handle the warm-up record within --warmup %lld s",
			         b->o.warmup);
			return -1;
		}
		sleep_ms(10);
	}
}

static void *producer_main(void *arg)
{
	bench_t *b = arg;
	const bopts_t *o = &b->o;
	const sp_gen_rec_t *g = sp_gen_pool_recs(b->pool);
	uint32_t cnt = sp_gen_pool_count(b->pool);
	size_t batch = b->log ? BENCH_SEND_BATCH : BENCH_KAFKA_SEND_BATCH;
	/* this thread's sleeps end on time: the default 50 us of timer slack would be added
	 * to every record's measured latency */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	spate_push_record_t *recs = calloc(batch, sizeof(*recs));
	if (!recs) {
		snprintf(b->perr, sizeof(b->perr), "out of memory");
		b->prc = -1;
		goto out;
	}
	double cpu0 = thread_cpu_s();
	uint64_t sent = 0, bytes = 0;
	if (o->warmup && warm_up(b, g, &sent, &bytes)) {
		b->prc = -1;
		goto out;
	}
	/* the schedule starts now: with --rate, R records/s from here */
	int64_t start = sp_now_ms(), end_ms = o->duration ? start + o->duration * 1000 : 0;
	int64_t start_us = sp_wall_us(); /* the rate's schedule: on the wall clock, whose whole
	                                    milliseconds the sends wait for (sleep_to_next_ms) */
	b->p_start_ms = start;
	uint64_t base = sent;
	for (;;) {
		if (bench_signal || atomic_load(&b->quit))
			break;
		int64_t now = sp_now_ms();
		if (end_ms && now >= end_ms)
			break;
		if (!end_ms && sent >= (uint64_t)o->records)
			break;
		uint64_t want = batch;
		if (o->rate) {
			/* open loop: the records due by now, whatever the consumer does */
			int64_t into = sp_wall_us() - start_us;
			uint64_t due = base + (uint64_t)((double)(into > 0 ? into : 0) * (double)o->rate / 1e6);
			if (due <= sent) {
				int e;
				int64_t t =
				    b->log ? sp_log_producer_tick(b->log, b->perr, sizeof(b->perr), &e) : -1;
				if (b->log && e) {
					b->prc = -1;
					break;
				}
				(void)t;
				sleep_to_next_ms();
				continue;
			}
			if (due - sent > atomic_load_explicit(&b->behind_max, memory_order_relaxed))
				atomic_store_explicit(&b->behind_max, due - sent, memory_order_relaxed);
			want = due - sent < batch ? due - sent : batch;
		}
		if (!end_ms && sent + want > (uint64_t)o->records)
			want = (uint64_t)o->records - sent;
		for (uint64_t k = 0; k < want; k++) {
			const sp_gen_rec_t *r = &g[(sent + k) % cnt];
			recs[k] = (spate_push_record_t){.key = r->key,
			                                .key_len = r->key_len,
			                                .value = r->value,
			                                .value_len = r->value_len};
			bytes += r->key_len + r->value_len;
		}
		if (send_recs(b, recs, want)) {
			b->prc = -1;
			break;
		}
		sent += want;
		atomic_store_explicit(&b->produced, sent, memory_order_relaxed);
		atomic_store_explicit(&b->produced_bytes, bytes, memory_order_relaxed);
		if (b->log) {
			int e;
			sp_log_producer_tick(b->log, b->perr, sizeof(b->perr), &e);
			if (e) {
				b->prc = -1;
				break;
			}
		}
	}
	if (b->log && !b->prc && sp_log_producer_flush(b->log, b->perr, sizeof(b->perr)))
		b->prc = -1;
	b->p_end_ms = sp_now_ms();
	b->producer_cpu_s = thread_cpu_s() - cpu0;
out:
	free(recs);
	atomic_store(&b->producer_done, true);
	if (b->prc && b->e)
		spate_engine_stop(b->e);
	return NULL;
}

/* ---- the monitor ------------------------------------------------------------------- */

static void progress(const bench_t *b, const sample_t *s, const sample_t *prev, bool tty)
{
	if (!tty || !prev)
		return;
	double dt = (double)(s->ms - prev->ms) / 1000.0;
	spate_stats_t st;
	spate_engine_stats(b->e, &st);
	fprintf(stderr,
	        "\rproduced %" PRIu64 " (%.0f/s)  consumed %" PRIu64 " (%.0f/s)  behind %" PRIu64
	        "  workers %d  p99 %.2f ms   ",
	        s->produced, dt > 0 ? (double)(s->produced - prev->produced) / dt : 0, s->consumed,
	        dt > 0 ? (double)(s->consumed - prev->consumed) / dt : 0, s->produced - s->consumed,
	        st.workers_active, st.latency_p99_ms);
}

static void *monitor_main(void *arg)
{
	bench_t *b = arg;
	bool tty = isatty(2) == 1;
	int64_t last_progress = sp_now_ms();
	uint64_t last_consumed = 0;
	while (!atomic_load(&b->quit)) {
		sleep_ms(BENCH_SAMPLE_MS);
		spate_stats_t st;
		spate_engine_stats(b->e, &st);
		sample_t s = {sp_now_ms(), atomic_load(&b->produced), st.records};
		if (b->nsamples < BENCH_SAMPLES_MAX)
			b->samples[b->nsamples++] = s;
		progress(b, &s, b->nsamples > 1 ? &b->samples[b->nsamples - 2] : NULL, tty);
		if (s.consumed != last_consumed) {
			last_consumed = s.consumed;
			last_progress = s.ms;
		}
		if (atomic_load(&b->producer_done)) {
			bool all = s.consumed >= atomic_load(&b->produced);
			if (all || s.ms - last_progress > BENCH_DRAIN_IDLE_MS) {
				b->short_end = !all;
				spate_engine_stop(b->e);
				break;
			}
		}
	}
	if (tty)
		fputc('\n', stderr);
	return NULL;
}

/* Records/s of one counter between BENCH_STEADY_EDGE and 1 - it of its final value. */
static double steady_rate(const bench_t *b, bool consumed, uint64_t total)
{
	int64_t t0 = -1, t1 = -1;
	uint64_t c0 = 0, c1 = 0;
	for (size_t i = 0; i < b->nsamples; i++) {
		uint64_t c = consumed ? b->samples[i].consumed : b->samples[i].produced;
		if (t0 < 0 && (double)c >= (double)total * BENCH_STEADY_EDGE)
			t0 = b->samples[i].ms, c0 = c;
		if (t1 < 0 && (double)c >= (double)total * (1 - BENCH_STEADY_EDGE))
			t1 = b->samples[i].ms, c1 = c;
	}
	return t0 >= 0 && t1 > t0 ? (double)(c1 - c0) * 1000.0 / (double)(t1 - t0) : 0;
}

static double process_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- setup ------------------------------------------------------------------------- */

/* The bounds check reads no record: its reader never allocates a chunk. */
static sp_chunk_t *no_alloc(void *opaque, sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	return NULL;
}

static void no_free(void *opaque, sp_chunk_t *c)
{
}

/* The consumer counts every record of the log: one that holds records already would
 * count them too. True (printed) when it does or cannot be read. */
static bool log_has_records(const char *dir)
{
	char err[1024];
	sp_log_ropts_t ro = {.alloc = no_alloc, .free = no_free};
	sp_log_reader_t *rd;
	if (sp_log_reader_open(dir, &ro, &rd, err, sizeof(err))) {
		fprintf(stderr, "spate bench: %s\n", err);
		return true;
	}
	bool has = false;
	for (int i = 0; i < sp_log_reader_partitions(rd) && !has; i++) {
		uint64_t start, next;
		if (sp_log_reader_bounds(rd, i, &start, &next, err, sizeof(err))) {
			fprintf(stderr, "spate bench: %s\n", err);
			has = true;
		} else if (next > start) {
			fprintf(stderr,
			        "spate bench: %s holds records (partition %d: %" PRIu64
			        "): give a new folder\n",
			        dir, i, next - start);
			has = true;
		}
	}
	sp_log_reader_close(rd);
	return has;
}

static int open_target(bench_t *b)
{
	char err[1024];
	const bopts_t *o = &b->o;
	if (o->dir) {
		if (sp_log_create(o->dir, (int)o->partitions, err, sizeof(err))) {
			fprintf(stderr, "spate bench: %s\n", err);
			return -1;
		}
		if (log_has_records(o->dir))
			return -1;
		sp_log_wopts_t wo;
		sp_log_wopts_from_conf(&wo, o->conf);
		if (sp_log_producer_open(o->dir, (int)o->partitions, &wo, &b->log, err, sizeof(err))) {
			fprintf(stderr, "spate bench: %s\n", err);
			return -1;
		}
		return 0;
	}
	b->sink.ops = sp_find_sink(o->kafka ? "kafka" : "kinesis");
	if (!b->sink.ops) {
		fprintf(stderr, "spate bench: --%s: this spate was built without it\n",
		        o->kafka ? "kafka" : "kinesis");
		return -1;
	}
	b->sink.arg = o->kafka ? o->kafka : o->kinesis;
	b->sink.conf = o->conf;
	if (b->sink.ops->open(&b->sink, err, sizeof(err))) {
		fprintf(stderr, "spate bench: %s\n", err);
		return -1;
	}
	b->sink_open = true;
	return 0;
}

static int set(spate_conf_t *c, const char *k, const char *v)
{
	char err[512];
	if (spate_conf_set(c, k, v, err, sizeof(err)) != SPATE_CONF_OK) {
		fprintf(stderr, "spate bench: %s\n", err);
		return -1;
	}
	return 0;
}

/* The pipeline's conf: the -X keys, then the source and handler. */
static spate_conf_t *pipeline_conf(const bopts_t *o)
{
	spate_conf_t *c = spate_conf_dup(o->conf);
	if (!c)
		return NULL;
	char src[4200], group[96];
	int rc = 0;
	if (o->dir) {
		snprintf(src, sizeof(src), "log:%s", o->dir);
		rc |= set(c, "source", src);
		rc |= set(c, "store", "none");
	} else if (o->kinesis) {
		rc |= set(c, "source", "kinesis");
		rc |= set(c, "kinesis.stream", o->kinesis);
		rc |= set(c, "store", "none");
	} else {
		snprintf(group, sizeof(group), "spate-bench-%d-%lld", (int)getpid(), (long long)sp_wall_ms());
		rc |= set(c, "source", "kafka");
		rc |= set(c, "topics", o->kafka);
		rc |= set(c, "group.id", group);
		rc |= set(c, "store", "none");
	}
	rc |= set(c, "starting.position", "earliest");
	rc |= set(c, "handler", o->handler);
	if (rc) {
		spate_conf_destroy(c);
		return NULL;
	}
	return c;
}

/* ---- the report -------------------------------------------------------------------- */

typedef struct report {
	uint64_t produced, consumed, produced_bytes;
	double produce_rate, consume_rate, produce_mbs, consume_mbs, producer_s, elapsed_s;
	double cpu_s, cpu_per_m, producer_cpu_s;
	uint64_t behind_max;
	/* the rates are of the steady state; false: the run was too short for one (under
	 * about three samples) and they are of the whole run */
	bool steady;
	spate_summary_t sum;
} report_t;

static void lat_json(FILE *f, const char *name, const spate_latency_t *l)
{
	fprintf(f,
	        "\"%s\":{\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}",
	        name, l->p50_ms, l->p90_ms, l->p99_ms, l->p999_ms, l->max_ms);
}

static void write_json(FILE *f, const bench_t *b, const report_t *r)
{
	const bopts_t *o = &b->o;
	fprintf(f, "{\"target\":\"%s\",\"name\":\"", o->dir ? "log" : o->kafka ? "kafka" : "kinesis");
	for (const char *p = o->dir ? o->dir : o->kafka ? o->kafka : o->kinesis; *p; p++)
		fprintf(f, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
	fprintf(f,
	        "\",\"handler\":\"%s\",\"rate_target\":%lld,\"record_bytes\":%lld,\"keys\":%lld,"
	        "\"partitions\":%lld,"
	        "\"produced\":%" PRIu64 ",\"consumed\":%" PRIu64
	        ",\"complete\":%s,\"produced_bytes\":%" PRIu64
	        ",\"produce_records_per_s\":%.0f,\"produce_mb_per_s\":%.2f,\"consume_records_per_s\":%.0f,"
	        "\"consume_mb_per_s\":%.2f,\"producer_behind_max\":%" PRIu64 ",\"elapsed_s\":%.3f,"
	        "\"workers_max\":%d,\"workers_mean\":%.2f,\"cpu_s\":%.3f,\"producer_cpu_s\":%.3f,"
	        "\"cpu_s_per_million\":%.3f,\"steady\":%s,",
	        o->handler, o->rate, o->bytes, o->keys, o->dir ? o->partitions : -1, r->produced, r->consumed,
	        b->short_end ? "false" : "true", r->produced_bytes, r->produce_rate, r->produce_mbs,
	        r->consume_rate, r->consume_mbs, r->behind_max, r->elapsed_s, r->sum.workers_max,
	        r->sum.workers_mean, r->cpu_s, r->producer_cpu_s, r->cpu_per_m, r->steady ? "true" : "false");
	lat_json(f, "latency_done", &r->sum.latency_done);
	fputc(',', f);
	lat_json(f, "latency_start", &r->sum.latency_start);
	fputc(',', f);
	lat_json(f, "arrival_done", &r->sum.arrival_done);
	fputs("}\n", f);
}

static void print_report(FILE *f, const bench_t *b, const report_t *r)
{
	fprintf(f, "produced %" PRIu64 " records (%.1f MB) in %.2f s\n", r->produced,
	        (double)r->produced_bytes / 1e6, r->producer_s);
	fprintf(f, "consumed %" PRIu64 " records%s\n", r->consumed,
	        b->short_end ? " (NOT all: see the log)" : "");
	const char *how = r->steady ? "steady" : "whole run: too short for a steady state";
	fprintf(f, "produce  %.0f records/s  %.2f MB/s (%s)%s\n", r->produce_rate, r->produce_mbs, how,
	        b->o.rate && r->behind_max > (uint64_t)b->o.rate / 10 ? "  (fell behind the target rate)"
	                                                              : "");
	fprintf(f, "consume  %.0f records/s  %.2f MB/s (%s)\n", r->consume_rate, r->consume_mbs, how);
	const spate_latency_t *l = &r->sum.latency_done, *a = &r->sum.arrival_done;
	fprintf(f, "latency  timestamp->done p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms\n", l->p50_ms,
	        l->p90_ms, l->p99_ms, l->p999_ms, l->max_ms);
	fprintf(f, "latency  arrival->done   p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms\n", a->p50_ms,
	        a->p90_ms, a->p99_ms, a->p999_ms, a->max_ms);
	fprintf(f, "workers  max %d mean %.2f\n", r->sum.workers_max, r->sum.workers_mean);
	fprintf(f, "cpu      %.2f s consumer (%.3f s per million records), %.2f s producer\n", r->cpu_s,
	        r->cpu_per_m, r->producer_cpu_s);
}

int spate_cmd_bench(int argc, char **argv)
{
	bench_t *b = calloc(1, sizeof(*b));
	if (!b || !(b->o.conf = spate_conf_new())) {
		fprintf(stderr, "spate bench: out of memory\n");
		free(b);
		return 1;
	}
	int ret = 1;
	/* keyless-free records, but keep the Kafka sink's partitioner from filling one
	 * partition at a time (as spate produce); a -X sets it otherwise */
	char serr[256];
	spate_conf_set(b->o.conf, "kafka.sticky.partitioning.linger.ms", "0", serr, sizeof(serr));
	int pr = parse(argc, argv, &b->o);
	if (pr) {
		if (pr > 0)
			fputs(usage_text, stdout);
		ret = pr > 0 ? 0 : 2;
		goto out;
	}
	char err[1024];
	uint32_t pool_n = b->o.records < BENCH_POOL_MAX ? (uint32_t)b->o.records : BENCH_POOL_MAX;
	if (sp_gen_pool_new("bytes", pool_n, (uint64_t)b->o.keys, (uint32_t)b->o.bytes, 1, &b->pool, err,
	                    sizeof(err))) {
		fprintf(stderr, "spate bench: %s\n", err);
		goto out;
	}
	if (!(b->samples = malloc(BENCH_SAMPLES_MAX * sizeof(*b->samples)))) {
		fprintf(stderr, "spate bench: out of memory\n");
		goto out;
	}
	if (open_target(b))
		goto out;
	spate_conf_t *pc = pipeline_conf(&b->o);
	if (!pc)
		goto out;
	b->e = spate_engine_new(pc, NULL, err, sizeof(err));
	if (!b->e) {
		spate_conf_destroy(pc);
		fprintf(stderr, "spate bench: %s\n", err);
		goto out;
	}
	if (spate_engine_start(b->e, err, sizeof(err))) {
		fprintf(stderr, "spate bench: %s\n", err);
		goto out;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	bench_engine = b->e;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	double cpu0 = process_cpu_s();
	pthread_t pth, mth;
	if (pthread_create(&pth, NULL, producer_main, b)) {
		fprintf(stderr, "spate bench: cannot start the producer thread\n");
		goto out;
	}
	if (pthread_create(&mth, NULL, monitor_main, b)) {
		atomic_store(&b->quit, true);
		pthread_join(pth, NULL);
		fprintf(stderr, "spate bench: cannot start the monitor thread\n");
		goto out;
	}
	int rrc = spate_engine_run(b->e, err, sizeof(err));
	atomic_store(&b->quit, true);
	pthread_join(pth, NULL);
	pthread_join(mth, NULL);
	bench_engine = NULL;
	double cpu = process_cpu_s() - cpu0;
	if (rrc)
		fprintf(stderr, "spate bench: the pipeline: %s\n", err);
	if (b->prc)
		fprintf(stderr, "spate bench: the producer: %s\n", b->perr);
	report_t r = {0};
	spate_engine_summary(b->e, &r.sum);
	r.produced = atomic_load(&b->produced);
	r.produced_bytes = atomic_load(&b->produced_bytes);
	r.consumed = r.sum.records;
	r.behind_max = atomic_load(&b->behind_max);
	r.producer_s = (double)(b->p_end_ms - b->p_start_ms) / 1000.0;
	r.elapsed_s = r.sum.elapsed_s;
	double per_rec = r.produced ? (double)r.produced_bytes / (double)r.produced : 0;
	r.produce_rate = steady_rate(b, false, r.produced);
	r.consume_rate = steady_rate(b, true, r.consumed);
	r.steady = r.produce_rate > 0 && r.consume_rate > 0;
	if (!r.steady) { /* a run of a few samples: the whole run's rates rather than none */
		r.produce_rate = r.producer_s > 0 ? (double)r.produced / r.producer_s : 0;
		r.consume_rate = r.sum.records_per_s;
	}
	r.produce_mbs = r.produce_rate * per_rec / 1e6;
	r.consume_mbs = r.consume_rate * per_rec / 1e6;
	r.producer_cpu_s = b->producer_cpu_s;
	r.cpu_s = cpu - b->producer_cpu_s;
	r.cpu_per_m = r.consumed ? r.cpu_s / ((double)r.consumed / 1e6) : 0;
	print_report(stdout, b, &r);
	if (b->o.json) {
		FILE *f = fopen(b->o.json, "w");
		if (!f) {
			fprintf(stderr, "spate bench: --json: cannot write %s: %s\n", b->o.json,
			        strerror(errno));
			goto out;
		}
		write_json(f, b, &r);
		if (fclose(f)) {
			fprintf(stderr, "spate bench: --json: %s: %s\n", b->o.json, strerror(errno));
			goto out;
		}
	}
	ret = rrc || b->prc || b->short_end || bench_signal ? 1 : 0;
out:
	spate_engine_destroy(b->e);
	if (b->log && sp_log_producer_close(b->log, err, sizeof(err)))
		fprintf(stderr, "spate bench: %s\n", err);
	if (b->sink_open)
		b->sink.ops->close(&b->sink);
	sp_gen_pool_free(b->pool);
	free(b->samples);
	spate_conf_destroy(b->o.conf);
	free(b);
	return ret;
}
