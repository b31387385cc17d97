/* test_emit.c - handlers that produce (engine/emit.c) and batch.window.ms, through the
 * public API with the push source:
 *  - every record's emit reaches its log sink with a spate.origin header naming it, and
 *    an origin is DONE only after its emits are durable (the checkpoint never passes an
 *    origin whose emit is not in the sink);
 *  - a handler that emits and then fails: its emits are discarded, the retry emits again;
 *  - a sink that fails (SPATE_FAULT_SINK_<NAME>) makes only its lane retry: the other
 *    lanes' records and their emits go on, and nothing is lost;
 *  - an unknown sink name and an origin out of range are refused;
 *  - batch.window.ms: a trickle is handed over in batches that span at most the window;
 *    with 0, a batch holds what was there. */
#include <spate/spate.h>

#include "connectors/log/log.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/util.h"

enum { N = 3000, KEYS = 16 };

typedef struct st {
	int fail_first;           /* fail the first batch after emitting (emits discarded) */
	_Atomic int calls;
	_Atomic int refused;      /* spate_batch_emit refusals that should not happen */
	int bad_key;              /* records of this key go to sink "bad" (fails N times) */
	_Atomic uint64_t handled[N];
	_Atomic int64_t first_bad_done_ns, other_done_ns;
} st_t;

/* A record's bytes as a number ("k12" -> 12 with skip 1): they are not NUL-terminated. */
static unsigned num(const void *p, size_t len, size_t skip)
{
	char buf[32];
	size_t n = len - skip < sizeof(buf) - 1 ? len - skip : sizeof(buf) - 1;
	memcpy(buf, (const char *)p + skip, n);
	buf[n] = 0;
	return (unsigned)strtoul(buf, NULL, 10);
}

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	st_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	size_t n = spate_batch_count(b);
	for (size_t i = 0; i < n; i++) {
		unsigned key = num(r[i]->key, r[i]->key_len, 1);
		const char *sink = (int)key == s->bad_key ? "bad" : "out";
		spate_header_t h = {"from", 4, "test", 4};
		if (spate_batch_emit(b, i, sink, r[i]->key, r[i]->key_len, r[i]->value, r[i]->value_len, &h, 1))
			atomic_fetch_add(&s->refused, 1);
	}
	if (s->fail_first && atomic_fetch_add(&s->calls, 1) == 0)
		return SPATE_HANDLER_FAIL; /* what it emitted is discarded */
	for (size_t i = 0; i < n; i++) {
		unsigned id = num(r[i]->value, r[i]->value_len, 0);
		atomic_fetch_add(&s->handled[id], 1);
	}
	return SPATE_HANDLER_OK;
}

static void *pusher(void *a)
{
	spate_engine_t *e = a;
	for (int i = 0; i < N; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%d", i % KEYS);
		snprintf(v, sizeof(v), "%d", i);
		spate_push_record_t rec = {.key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
		while (spate_push(e, i % 2, &rec, 1) == 0)
			t_sleep_ms(1);
	}
	spate_push_close(e);
	return NULL;
}

/* Every record of the sink log at dir: value -> count, and each has spate.origin naming
 * push/push/P/POS and our own header. Returns the records read. */
static size_t read_sink(const char *dir, uint32_t *count, int *bad_origin)
{
	size_t total = 0;
	for (int p = 0; p < 8; p++) {
		char pdir[600];
		snprintf(pdir, sizeof(pdir), "%s/%d", dir, p);
		sp_log_seglist_t segs = {0};
		if (sp_log_seglist(pdir, &segs, NULL, 0) != SPATE_OK)
			break;
		for (size_t k = 0; k < segs.n; k++) {
			char path[700];
			sp_log_seg_path(path, sizeof(path), pdir, segs.base[k], "log");
			size_t len;
			uint8_t *d = (uint8_t *)t_read_file(path, &len);
			cr_assert_not_null(d, "%s", path);
			for (size_t off = 0; off + SP_LOG_BATCH_HEADER <= len;) {
				sp_log_batch_hdr_t h;
				size_t tot;
				cr_assert_eq(sp_log_batch_header(d + off, len - off, &h, &tot, NULL), SP_LOG_HDR_OK);
				sp_log_rec_iter_t it;
				sp_log_rec_iter_init(&it, d + off, tot, &h);
				sp_log_rec_t rec;
				while (sp_log_rec_next(&it, &rec, NULL) == 1) {
					char v[32] = "";
					memcpy(v, rec.value, (size_t)rec.value_len < sizeof(v) - 1 ? (size_t)rec.value_len : sizeof(v) - 1);
					count[strtoul(v, NULL, 10)]++;
					total++;
					const uint8_t *hp = rec.hdrs;
					bool origin = false, ours = false;
					for (int32_t x = 0; x < rec.hdr_cnt; x++) {
						spate_header_t hh;
						cr_assert_eq(sp_log_hdr_next(&hp, rec.hdrs_end, &hh), 0);
						if (hh.key_len == 12 && !memcmp(hh.key, "spate.origin", 12) &&
						    !memcmp(hh.value, "push/push/", 10))
							origin = true;
						if (hh.key_len == 4 && !memcmp(hh.key, "from", 4))
							ours = true;
					}
					if (!origin || !ours)
						(*bad_origin)++;
				}
				off += tot;
			}
			free(d);
		}
		sp_log_seglist_free(&segs);
	}
	return total;
}

static spate_summary_t run(st_t *s, const char *out, const char *bad, const char *const *kv)
{
	char err[512], a[600], b[600];
	spate_conf_t *c = spate_conf_new();
	snprintf(a, sizeof(a), "log:%s", out);
	snprintf(b, sizeof(b), "log:%s", bad);
	const char *base[] = {"source", "push", "push.partitions", "2", "stop.at.end", "true", "parallelization.factor", "4",
	                      "batch.size", "50", "retry.backoff.ms", "5", "retry.backoff.max.ms", "20", "sink.out", a,
	                      "sink.bad", b, "sink.out.flush.ms", "0", "log.level", "error", NULL};
	for (int i = 0; base[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, base[i], base[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s", base[i], err);
	for (int i = 0; kv && kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s: %s", kv[i], err);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "emit", .handle = handle, .opaque = s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	pthread_t th;
	pthread_create(&th, NULL, pusher, e);
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	pthread_join(th, NULL);
	spate_summary_t sum;
	spate_engine_summary(e, &sum);
	spate_engine_destroy(e);
	return sum;
}

Test(emit, every_emit_reaches_its_sink_with_its_origin, .timeout = 120)
{
	char dir[256], out[300], bad[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	st_t *s = calloc(1, sizeof(*s));
	s->bad_key = -1;
	s->fail_first = 1;
	spate_summary_t sum = run(s, out, bad, NULL);
	cr_assert_eq(sum.records, N);
	cr_assert_eq(atomic_load(&s->refused), 0);
	cr_assert_geq(sum.failed, 1, "the first batch failed");
	uint32_t *count = calloc(N, sizeof(*count));
	int bad_origin = 0;
	size_t got = read_sink(out, count, &bad_origin);
	/* each record emitted exactly once: the failed batch's emits were discarded */
	cr_assert_eq(got, N, "the sink holds %zu records, not %d", got, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(count[i], 1, "record %d emitted %u times", i, count[i]);
	cr_assert_eq(bad_origin, 0, "%d emitted records lack spate.origin or their own header", bad_origin);
	free(count);
	free(s);
	t_rmrf(dir);
}

Test(emit, a_failing_sink_makes_only_its_lane_retry, .timeout = 120)
{
	char dir[256], out[300], bad[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	st_t *s = calloc(1, sizeof(*s));
	s->bad_key = 3; /* key k3's emits go to "bad", whose first 30 writes fail */
	setenv("SPATE_FAULT_SINK_bad", "fail:30", 1);
	const char *kv[] = {"max.retry.attempts", "-1", NULL};
	spate_summary_t sum = run(s, out, bad, kv);
	unsetenv("SPATE_FAULT_SINK_bad");
	cr_assert_eq(sum.records, N);
	cr_assert_eq(sum.dropped, 0);
	cr_assert_geq(sum.retries, 30, "the bad sink's failures were not retried (retries %llu failed %llu)", (unsigned long long)sum.retries, (unsigned long long)sum.failed);
	uint32_t *cout = calloc(N, sizeof(*cout)), *cbad = calloc(N, sizeof(*cbad));
	int bo = 0;
	size_t got_out = read_sink(out, cout, &bo), got_bad = read_sink(bad, cbad, &bo);
	size_t want_bad = 0;
	for (int i = 0; i < N; i++) {
		bool isbad = i % KEYS == 3;
		want_bad += isbad;
		/* nothing lost: every record is in its sink at least once */
		cr_assert_geq(isbad ? cbad[i] : cout[i], 1, "record %d's emit is missing", i);
		cr_assert_eq(isbad ? cout[i] : cbad[i], 0);
		if (!isbad)
			cr_assert_eq(cout[i], 1, "record %d of a healthy lane was emitted %u times", i, cout[i]);
	}
	cr_assert_eq(got_out, N - want_bad);
	cr_assert_geq(got_bad, want_bad);
	cr_assert_eq(bo, 0);
	free(cout);
	free(cbad);
	free(s);
	t_rmrf(dir);
}

static int refuse_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	st_t *s = opaque;
	if (spate_batch_emit(b, 0, "nosuch", "k", 1, "v", 1, NULL, 0) == SPATE_ERR_NOT_FOUND &&
	    spate_batch_emit(b, spate_batch_count(b), "out", "k", 1, "v", 1, NULL, 0) == SPATE_ERR_INVALID)
		atomic_fetch_add(&s->calls, 1);
	else
		atomic_fetch_add(&s->refused, 1);
	return SPATE_HANDLER_OK;
}

Test(emit, unknown_sinks_and_bad_origins_are_refused, .timeout = 60)
{
	char dir[256], a[600], err[512];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(a, sizeof(a), "log:%s/out", dir);
	st_t *s = calloc(1, sizeof(*s));
	spate_conf_t *c = spate_conf_new();
	cr_assert_eq(spate_conf_set(c, "source", "gen", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "gen.records", "500", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "sink.out", a, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "refuse", .handle = refuse_handle, .opaque = s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_engine_destroy(e);
	cr_assert_gt(atomic_load(&s->calls), 0);
	cr_assert_eq(atomic_load(&s->refused), 0);
	/* and a sink of an unknown kind is an error naming it */
	c = spate_conf_new();
	cr_assert_eq(spate_conf_set(c, "sink.x", "nosuch:abc", err, sizeof(err)), SPATE_CONF_OK);
	e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_not_null(e);
	cr_assert_neq(spate_engine_start(e, err, sizeof(err)), SPATE_OK);
	cr_assert(strstr(err, "sink.x") && strstr(err, "nosuch"), "%s", err);
	spate_engine_destroy(e);
	free(s);
	t_rmrf(dir);
}

/* ---- batch.window.ms ---------------------------------------------------------------- */

typedef struct win {
	_Atomic int batches, records;
	_Atomic int64_t max_span_ms; /* the most a batch's records' timestamps spread */
} win_t;

static int win_handle(void *opaque, void *ctx, spate_batch_t *b)
{
	win_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	size_t n = spate_batch_count(b);
	int64_t span = r[n - 1]->timestamp_ms - r[0]->timestamp_ms;
	int64_t cur = atomic_load(&s->max_span_ms);
	while (span > cur && !atomic_compare_exchange_weak(&s->max_span_ms, &cur, span))
		;
	atomic_fetch_add(&s->batches, 1);
	atomic_fetch_add(&s->records, (int)n);
	return SPATE_HANDLER_OK;
}

static void *trickle(void *a)
{
	spate_engine_t *e = a;
	for (int i = 0; i < 60; i++) { /* one record every 20 ms: about 1.2 s */
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		spate_push_record_t rec = {.key = "k", .key_len = 1, .value = v, .value_len = strlen(v)};
		while (spate_push(e, 0, &rec, 1) == 0)
			t_sleep_ms(1);
		t_sleep_ms(20);
	}
	spate_push_close(e);
	return NULL;
}

static win_t window_run(const char *window)
{
	char err[512];
	win_t s = {0};
	spate_conf_t *c = spate_conf_new();
	const char *kv[] = {"source", "push", "batch.size", "1000", "batch.window.ms", window, "log.level", "error", NULL};
	for (int i = 0; kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "win", .handle = win_handle, .opaque = &s};
	spate_engine_t *e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_not_null(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	pthread_t th;
	pthread_create(&th, NULL, trickle, e);
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	pthread_join(th, NULL);
	spate_engine_destroy(e);
	return s;
}

Test(emit, a_trickle_is_batched_within_the_window, .timeout = 60)
{
	win_t w = window_run("300");
	cr_assert_eq(w.records, 60);
	/* batched: a 300 ms window over 20 ms arrivals holds several records per batch... */
	cr_assert_lt(w.batches, 30, "%d batches for 60 records: the window did not batch", w.batches);
	/* ...and never more than the window's span (plus the arrivals' own jitter) */
	cr_assert_leq(w.max_span_ms, 300 + 150, "a batch spans %lld ms, more than the 300 ms window",
	              (long long)w.max_span_ms);
	win_t z = window_run("0");
	cr_assert_eq(z.records, 60);
	cr_assert_gt(z.batches, 30, "with no window a trickle goes one by one: %d batches", z.batches);
}
