/* filter_match.c - records per second of sp_filter_match() (engine/filter.h) on gen's
 * fraud records, one thread, for a few filters.
 *
 * The records are a gen fraud pool (connectors/gen/pool.c): JSON values of about 120
 * bytes, {"tx":..,"card":..,"merchant":..,"amount":..,"currency":..,"country":..,"ts":..},
 * with the card as key. The filters: one that passes every record, one that passes the
 * 1% with an amount above 5000, three patterns ORed (a blocked merchant, a blocked card
 * prefix, a large amount: about 3%), the same three as one pattern's "$or", one on the
 * key alone (the value is never read), and, for scale, the scanner alone checking the
 * value. Each is run `runs` times, interleaved; the median is printed. Rates are records
 * per second of the thread's CPU time, so a busy machine slows them less than wall time.
 *
 *   filter_match [RECORDS [RUNS]]     (defaults 1000000 and 5)
 *
 * A benchmark() target (benchmarks/meson.build), never part of `meson test`.
 */
#include "engine/filter.h"
#include "engine/json.h"
#include "gen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Distinct records in the pool; the benchmark cycles over them. */
#define POOL_RECORDS 100000
#define MAX_RUNS     25

typedef struct bench {
	const char *name;
	const char *const *patterns; /* NULL: the scanner alone */
	size_t n;
	sp_filter_t *f;
	double rate[MAX_RUNS];
	uint64_t passed;
} bench_t;

static const char *const all[] = {"{\"value\": {\"amount\": [{\"numeric\": [\">=\", 0]}]}}"};
static const char *const one_pct[] = {"{\"value\": {\"amount\": [{\"numeric\": [\">\", 5000]}]}}"};
static const char *const three[] = {
    "{\"value\": {\"merchant\": [\"m-0666\", \"m-1313\"]}}",
    "{\"value\": {\"card\": [{\"prefix\": \"4000-66\"}]}}",
    "{\"value\": {\"amount\": [{\"numeric\": [\">\", 5000]}]}}",
};
static const char *const or3[] = {"{\"value\": {\"$or\": [{\"merchant\": [\"m-0666\", \"m-1313\"]}, "
                                  "{\"card\": [{\"prefix\": \"4000-66\"}]}, "
                                  "{\"amount\": [{\"numeric\": [\">\", 5000]}]}]}}"};
static const char *const key[] = {"{\"key\": [{\"prefix\": \"4000-66\"}]}"};

/* The thread's CPU time: the machine is shared, and wall time would count the time
 * other processes had the core. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	uint64_t records = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	int runs = argc > 2 ? atoi(argv[2]) : 5;
	bench_t b[] = {
	    {"pass-all", all, 1, NULL, {0}, 0},        {"pass-1%", one_pct, 1, NULL, {0}, 0},
	    {"or-3-patterns", three, 3, NULL, {0}, 0}, {"or-3-in-$or", or3, 1, NULL, {0}, 0},
	    {"key-only", key, 1, NULL, {0}, 0},        {"scan-only", NULL, 0, NULL, {0}, 0},
	};
	const size_t nb = sizeof(b) / sizeof(b[0]);
	char err[512];
	sp_gen_pool_t *pool;
	spate_partition_t part = {.source = "gen", .topic = "fraud", .partition = 0, .name = "gen/fraud/0"};
	spate_record_t *recs;
	uint64_t value_bytes = 0;

	if (runs < 1 || runs > MAX_RUNS || records < 1) {
		fprintf(stderr, "usage: filter_match [RECORDS [RUNS 1..%d]]\n", MAX_RUNS);
		return 2;
	}
	if (sp_gen_pool_new("fraud", POOL_RECORDS, POOL_RECORDS, 0, 1, &pool, err, sizeof(err)) != SPATE_OK) {
		fprintf(stderr, "filter_match: %s\n", err);
		return 1;
	}
	recs = calloc(POOL_RECORDS, sizeof(*recs));
	if (!recs)
		return 1;
	for (uint32_t i = 0; i < POOL_RECORDS; i++) {
		const sp_gen_rec_t *g = sp_gen_pool_rec(pool, i);
		recs[i] = (spate_record_t){.version = SPATE_RECORD_VERSION,
		                           .key = g->key,
		                           .key_len = g->key_len,
		                           .value = g->value,
		                           .value_len = g->value_len,
		                           .partition = &part,
		                           .timestamp_ms = 1700000000000,
		                           .position = {{0, 0, i}}};
		value_bytes += g->value_len;
	}
	for (size_t k = 0; k < nb; k++)
		if (b[k].patterns && !(b[k].f = sp_filter_compile(b[k].patterns, b[k].n, err, sizeof(err)))) {
			fprintf(stderr, "filter_match: %s: %s\n", b[k].name, err);
			return 1;
		}

	sp_filter_scratch_t *s = sp_filter_scratch_new();
	sp_json_buf_t jb = SP_JSON_BUF_INIT;
	for (int run = 0; run < runs; run++) {
		for (size_t k = 0; k < nb; k++) {
			uint64_t passed = 0;
			double t0 = now();
			for (uint64_t i = 0; i < records; i++) {
				const spate_record_t *r = &recs[i % POOL_RECORDS];
				if (b[k].f)
					passed += sp_filter_match(b[k].f, r, s) == 1;
				else
					passed += sp_json_scan(r->value, r->value_len, NULL, &jb, NULL) == 0;
			}
			b[k].rate[run] = (double)records / (now() - t0);
			b[k].passed = passed;
		}
	}
	printf("filter_match: %" PRIu64
	       " records per run, %d runs, gen fraud values of %.0f bytes on average\n",
	       records, runs, (double)value_bytes / POOL_RECORDS);
	for (size_t k = 0; k < nb; k++) {
		double sorted[MAX_RUNS];
		memcpy(sorted, b[k].rate, sizeof(double) * (size_t)runs);
		qsort(sorted, (size_t)runs, sizeof(double), cmp_double);
		printf("%-14s median %6.2f M records/s (min %.2f, max %.2f), passed %.2f%%\n", b[k].name,
		       sorted[runs / 2] / 1e6, sorted[0] / 1e6, sorted[runs - 1] / 1e6,
		       100.0 * (double)b[k].passed / (double)records);
		sp_filter_free(b[k].f);
	}
	sp_json_buf_free(&jb);
	sp_filter_scratch_free(s);
	free(recs);
	sp_gen_pool_free(pool);
	return 0;
}
