/* push_durable.c - durable pushes per second and push-call latency (docs/embedding.md).
 *
 * An embedding program as an ingest service is one: an engine with source=log:DIR and
 * log.push=true (handler noop) runs on the main thread while THREADS threads call
 * spate_push() for SECONDS, each call BATCH records of VALUE_BYTES bytes (8-byte keys),
 * thread t into partition t % PARTITIONS. Every call returns once its records are
 * fdatasync'd (group commit). Then the input is closed and the pipeline finishes reading
 * what was pushed. Prints one line:
 *
 *   threads T batch B records N calls C seconds S records_per_s R calls_per_s Q
 *   p50_us X p99_us Y p999_us Z max_us M full F handled H
 *
 * p50/p99/... are of the wall time of one spate_push() call (clock_gettime around it),
 * over every call of every thread; full counts calls that took nothing (the lag bound;
 * log.push.max.lag is raised so it should stay 0). Links the shared libspate through the
 * public header only, as an application would.
 *
 * usage: push_durable DIR THREADS SECONDS [VALUE_BYTES] [PARTITIONS] [BATCH]
 */
#include <spate/spate.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The most call latencies one thread keeps (later calls are counted, not sampled). */
#define MAX_SAMPLES (4u << 20)
/* How long a thread waits after a push that took nothing (the lag bound), in ns. */
#define FULL_BACKOFF_NS 100000

typedef struct bench {
	spate_engine_t *e;
	int threads, partitions, batch;
	size_t value_bytes;
	double seconds;
	_Atomic int ready, done;
	_Atomic bool go;
	int64_t t_start, t_end; /* ns, monotonic: the first call, the last return */
} bench_t;

typedef struct worker {
	bench_t *b;
	int id;
	pthread_t th;
	uint64_t records, calls, full;
	uint32_t *lat_ns; /* one per call, up to MAX_SAMPLES */
	size_t nlat;
	int err;
} worker_t;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *pusher(void *a)
{
	worker_t *w = a;
	bench_t *b = w->b;
	spate_push_record_t *recs = calloc((size_t)b->batch, sizeof(*recs));
	char *keys = calloc((size_t)b->batch, 16), *value = malloc(b->value_bytes);
	w->lat_ns = malloc(MAX_SAMPLES * sizeof(uint32_t));
	if (!recs || !keys || !value || !w->lat_ns) {
		w->err = SPATE_ERR_NOMEM;
		goto out;
	}
	memset(value, 'v', b->value_bytes);
	for (int i = 0; i < b->batch; i++) {
		snprintf(keys + 16 * i, 16, "k%02d%05d", w->id % 100, i % 100000);
		recs[i] = (spate_push_record_t){
		    .key = keys + 16 * i, .key_len = 8, .value = value, .value_len = b->value_bytes};
	}
	int part = w->id % b->partitions;
	atomic_fetch_add(&b->ready, 1);
	while (!atomic_load(&b->go))
		;
	int64_t end = b->t_start + (int64_t)(b->seconds * 1e9);
	for (;;) {
		int64_t t0 = now_ns();
		if (t0 >= end)
			break;
		int rc = spate_push(b->e, part, recs, (size_t)b->batch);
		int64_t t1 = now_ns();
		if (rc < 0) {
			w->err = rc;
			break;
		}
		w->calls++;
		w->records += (uint64_t)rc;
		if (w->nlat < MAX_SAMPLES)
			w->lat_ns[w->nlat++] = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
		if (rc == 0) {
			w->full++;
			struct timespec ts = {0, FULL_BACKOFF_NS};
			nanosleep(&ts, NULL);
		}
	}
out:
	free(recs);
	free(keys);
	free(value);
	/* the last pusher ends the input: the run ends once everything pushed is handled */
	if (atomic_fetch_add(&b->done, 1) + 1 == b->threads) {
		b->t_end = now_ns();
		spate_push_close(b->e);
	}
	return NULL;
}

/* Releases the pushers at once when all are ready, so the clock starts together. */
static void *starter(void *a)
{
	bench_t *b = a;
	while (atomic_load(&b->ready) < b->threads)
		;
	b->t_start = now_ns();
	atomic_store(&b->go, true);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
		        "usage: push_durable DIR THREADS SECONDS [VALUE_BYTES] [PARTITIONS] [BATCH]\n");
		return 2;
	}
	bench_t b = {.threads = atoi(argv[2]),
	             .seconds = atof(argv[3]),
	             .value_bytes = argc > 4 ? (size_t)atol(argv[4]) : 100,
	             .partitions = argc > 5 ? atoi(argv[5]) : 4,
	             .batch = argc > 6 ? atoi(argv[6]) : 1};
	if (b.threads < 1 || b.seconds <= 0 || b.partitions < 1 || b.batch < 1) {
		fprintf(stderr, "push_durable: bad arguments\n");
		return 2;
	}
	char src[4096], parts[16], err[1024];
	snprintf(src, sizeof(src), "log:%s", argv[1]);
	snprintf(parts, sizeof(parts), "%d", b.partitions);
	spate_conf_t *conf = spate_conf_new();
	const char *kv[] = {"source",  src,    "log.push",         "true",      "push.partitions",   parts,
	                    "handler", "noop", "log.push.max.lag", "100000000", "stats.interval.ms", "0",
	                    NULL};
	for (int i = 0; kv[i]; i += 2)
		if (spate_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "push_durable: %s\n", err);
			return 2;
		}
	b.e = spate_engine_new(conf, NULL, err, sizeof(err));
	if (!b.e || spate_engine_start(b.e, err, sizeof(err)) != SPATE_OK) {
		fprintf(stderr, "push_durable: %s\n", err);
		return 1;
	}
	worker_t *ws = calloc((size_t)b.threads, sizeof(*ws));
	pthread_t st;
	pthread_create(&st, NULL, starter, &b);
	for (int i = 0; i < b.threads; i++) {
		ws[i] = (worker_t){.b = &b, .id = i};
		pthread_create(&ws[i].th, NULL, pusher, &ws[i]);
	}
	int rc = spate_engine_run(b.e, err, sizeof(err));
	pthread_join(st, NULL);
	uint64_t records = 0, calls = 0, full = 0;
	size_t nlat = 0;
	int werr = 0;
	for (int i = 0; i < b.threads; i++) {
		pthread_join(ws[i].th, NULL);
		records += ws[i].records;
		calls += ws[i].calls;
		full += ws[i].full;
		nlat += ws[i].nlat;
		if (ws[i].err)
			werr = ws[i].err;
	}
	if (rc != SPATE_OK || werr) {
		fprintf(stderr, "push_durable: %s %s\n", rc ? err : "", werr ? spate_err2str(werr) : "");
		return 1;
	}
	uint32_t *all = malloc((nlat ? nlat : 1) * sizeof(uint32_t));
	size_t k = 0;
	for (int i = 0; i < b.threads; i++) {
		memcpy(all + k, ws[i].lat_ns, ws[i].nlat * sizeof(uint32_t));
		k += ws[i].nlat;
		free(ws[i].lat_ns);
	}
	qsort(all, nlat, sizeof(uint32_t), cmp_u32);
#define PCT(q) (nlat ? all[(size_t)((double)(nlat - 1) * (q))] / 1000.0 : 0.0)
	spate_summary_t sum;
	spate_engine_summary(b.e, &sum);
	double secs = (double)(b.t_end - b.t_start) / 1e9;
	printf("threads %d batch %d records %" PRIu64 " calls %" PRIu64
	       " seconds %.2f records_per_s %.0f calls_per_s %.0f"
	       " p50_us %.0f p99_us %.0f p999_us %.0f max_us %.0f full %" PRIu64 " handled %" PRIu64 "\n",
	       b.threads, b.batch, records, calls, secs, (double)records / secs, (double)calls / secs,
	       PCT(0.50), PCT(0.99), PCT(0.999), nlat ? all[nlat - 1] / 1000.0 : 0.0, full, sum.records);
	free(all);
	free(ws);
	spate_engine_destroy(b.e);
	if (sum.records != records) {
		fprintf(stderr,
		        "push_durable: the pipeline handled %" PRIu64 " of the %" PRIu64 " records pushed\n",
		        sum.records, records);
		return 1;
	}
	return 0;
}
