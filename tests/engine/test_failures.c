/* test_failures.c - failure semantics through the public API (push source, no DLQ):
 * bisect isolates exactly the poison records, bisect off drops whole failing batches,
 * item failures retry from the failed item only, a poison key does not stall the other
 * lanes, record age is judged only on records that failed themselves. */
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "tests/common/engine.h"

enum { PARTS = 2 };

typedef struct st {
	size_t n;
	_Atomic uint32_t *ok;      /* successful deliveries per id */
	_Atomic uint32_t *fails;   /* failed deliveries per id */
	int poison_mod;            /* id % poison_mod == poison_rem is poison (always fails) */
	int poison_rem;
	int transient;             /* poison fails this many times, then succeeds (0 = always) */
	bool items;                /* report failures per item */
	int poison_key;            /* >= 0: every record of this key is poison */
	int keys;
	_Atomic int64_t last_healthy_ns, last_poison_ns;
	_Atomic int64_t first_other_done_ns; /* when every record of the other lanes was handled */
	_Atomic size_t other_left;           /* records of lanes other than the poison's, not yet handled */
	uint32_t poison_lane;
	_Atomic uint64_t batches_with_poison, records_in_poison_batches;
	int64_t ts_old_ms;          /* records with id % 2 == 0 get this timestamp when non-zero */
	int slow_healthy_us;        /* every batch without poison sleeps this long */
} st_t;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t lane_of(unsigned key, uint32_t factor)
{
	char k[16];
	int kl = snprintf(k, sizeof(k), "k%u", key);
	return (uint32_t)(XXH3_64bits(k, (size_t)kl + 1) % factor);
}

static bool is_poison(st_t *s, unsigned id, unsigned key)
{
	if (s->poison_key >= 0)
		return (int)id == s->poison_key; /* one poison record, of key poison_key % keys */
	if (s->poison_mod && (int)(id % (unsigned)s->poison_mod) == s->poison_rem)
		return !s->transient || atomic_load(&s->fails[id]) < (uint32_t)s->transient;
	return false;
}

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	st_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	size_t n = spate_batch_count(b);
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		unsigned id, key;
		sscanf(r[i]->value, "%u", &id);
		sscanf(r[i]->key, "k%u", &key);
		if (is_poison(s, id, key)) {
			any = true;
			if (s->items)
				spate_batch_fail_item(b, i, "poison record");
		}
	}
	if (!any && s->slow_healthy_us) {
		struct timespec ts = {0, s->slow_healthy_us * 1000L};
		nanosleep(&ts, NULL);
	}
	if (any) {
		atomic_fetch_add(&s->batches_with_poison, 1);
		atomic_fetch_add(&s->records_in_poison_batches, n);
	}
	/* count deliveries: with item failures, items before the first failed one succeed */
	size_t first_fail = n;
	if (any && s->items) {
		for (size_t i = 0; i < n && first_fail == n; i++) {
			unsigned id, key;
			sscanf(r[i]->value, "%u", &id);
			sscanf(r[i]->key, "k%u", &key);
			if (is_poison(s, id, key))
				first_fail = i;
		}
	} else if (any) {
		first_fail = 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned id;
		sscanf(r[i]->value, "%u", &id);
		if (i < first_fail) {
			if (atomic_fetch_add(&s->ok[id], 1) == 0 && s->poison_key >= 0 &&
			    lane_of(id % (unsigned)s->keys, 8) != s->poison_lane &&
			    atomic_fetch_sub(&s->other_left, 1) == 1)
				atomic_store(&s->first_other_done_ns, now_ns());
		}
		else
			atomic_fetch_add(&s->fails[id], 1);
	}
	int64_t t = now_ns();
	if (any)
		atomic_store(&s->last_poison_ns, t);
	else
		atomic_store(&s->last_healthy_ns, t);
	if (!any)
		return SPATE_HANDLER_OK;
	if (s->items)
		return SPATE_HANDLER_ITEM_FAILURES;
	spate_batch_set_error(b, "batch has a poison record");
	return SPATE_HANDLER_FAIL;
}

/* During the run: every record of s in runs of 100 per partition, then push_close. */
static void push_all(t_during_t *d)
{
	st_t *s = d->arg;
	enum { CH = 100 };
	char vals[CH][16], keys[CH][16];
	spate_push_record_t recs[CH];
	for (size_t id = 0; id < s->n;) {
		int part = (int)((id / CH) % PARTS);
		size_t k = 0;
		for (; k < CH && id + k < s->n; k++) {
			int vl = snprintf(vals[k], 16, "%zu", id + k);
			int kl = snprintf(keys[k], 16, "k%zu", (id + k) % (size_t)s->keys);
			recs[k] = (spate_push_record_t){.key = keys[k], .key_len = (size_t)kl + 1, .value = vals[k],
			                                .value_len = (size_t)vl + 1};
			if (s->ts_old_ms && (id + k) % 2 == 0)
				recs[k].timestamp_ms = s->ts_old_ms;
		}
		int rc = t_push_all(d->e, part, recs, k);
		t_require(rc == 0, "push: %s", spate_err2str(rc));
		id += k;
	}
	spate_push_close(d->e);
}

static spate_summary_t run(st_t *s, const char *const *kv)
{
	const char *base[] = {"source", "push", "push.partitions", "2", "stop.at.end", "true", "max.concurrency", "2",
	                      "retry.backoff.ms", "1", "retry.backoff.max.ms", "4", "log.level", "error", NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .handle = handle, .opaque = s};
	t_run_t r = t_engine_run(
	    &(t_engine_opts_t){.conf = base, .conf_more = kv, .handler = &h, .during = push_all, .arg = s});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	return r.sum;
}

static void init(st_t *s, size_t n)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->ok = calloc(n, sizeof(*s->ok));
	s->fails = calloc(n, sizeof(*s->fails));
	s->poison_key = -1;
	s->keys = 1000;
}

Test(failures, bisect_isolates_exactly_the_poison_records)
{
	st_t s;
	init(&s, 50000);
	s.poison_mod = 10000 / 2; /* 1 in 5,000 ... */
	s.poison_rem = 1234;
	const char *kv[] = {"bisect.on.error", "true", "max.retry.attempts", "2", "batch.size", "100", NULL};
	spate_summary_t sum = run(&s, kv);
	size_t poison = 0;
	for (size_t i = 0; i < s.n; i++) {
		if ((int)(i % (size_t)s.poison_mod) == s.poison_rem) {
			poison++;
			cr_assert_eq(atomic_load(&s.ok[i]), 0);
		} else {
			cr_assert_geq(atomic_load(&s.ok[i]), 1, "healthy record %zu never succeeded", i);
		}
	}
	cr_assert_eq(poison, 10);
	cr_assert_eq(sum.dropped, poison, "dropped %llu, poison %zu", (unsigned long long)sum.dropped, poison);
	cr_assert_eq(sum.records, s.n);
	free(s.ok);
	free(s.fails);
}

Test(failures, bisect_off_drops_whole_failing_batches)
{
	st_t s;
	init(&s, 20000);
	s.poison_mod = 5000;
	s.poison_rem = 777;
	const char *kv[] = {"bisect.on.error", "false", "max.retry.attempts", "1", "batch.size", "100", NULL};
	spate_summary_t sum = run(&s, kv);
	/* every dropped record was in a failing batch; healthy records that shared one are
	 * dropped with it (as Lambda does without bisect) */
	cr_assert_gt(sum.dropped, 4, "only the poison records were dropped: %llu", (unsigned long long)sum.dropped);
	cr_assert_eq(sum.records, s.n);
	size_t never_ok = 0;
	for (size_t i = 0; i < s.n; i++)
		if (!atomic_load(&s.ok[i]))
			never_ok++;
	cr_assert_eq(never_ok, sum.dropped, "records never handled %zu != dropped %llu", never_ok,
	             (unsigned long long)sum.dropped);
	free(s.ok);
	free(s.fails);
}

Test(failures, item_failures_retry_from_the_failed_item_only)
{
	st_t s;
	init(&s, 20000);
	s.poison_mod = 1000;
	s.poison_rem = 500;
	s.transient = 3; /* fails 3 times, then succeeds */
	s.items = true;
	s.keys = 1; /* one key: one lane per partition, so the batch order is the lane order */
	const char *kv[] = {"report.item.failures", "true", "max.retry.attempts", "-1", "batch.size", "50", NULL};
	spate_summary_t sum = run(&s, kv);
	cr_assert_eq(sum.records, s.n);
	cr_assert_eq(sum.dropped, 0);
	for (size_t i = 0; i < s.n; i++) {
		if (i % 1000 == 500) {
			cr_assert_eq(atomic_load(&s.fails[i]), 3, "record %zu failed %u times", i, atomic_load(&s.fails[i]));
			cr_assert_eq(atomic_load(&s.ok[i]), 1);
		} else {
			/* records before the failed item are never redelivered */
			cr_assert_eq(atomic_load(&s.ok[i]), 1, "record %zu succeeded %u times", i, atomic_load(&s.ok[i]));
		}
	}
	free(s.ok);
	free(s.fails);
}

/* Failed items that are not next to each other in a batch, max.retry.attempts=1: every
 * poison record reaches the handler exactly twice (the call and one retry), then leaves.
 * Item failures send the first failed item to the DLQ with the spent ones right behind
 * it; before the lane ended the next batch in front of a spent item further back, that
 * item was handled a third time in the middle of the next batch. */
Test(failures, item_failures_never_pass_max_retry_attempts)
{
	st_t s;
	init(&s, 7000);
	s.poison_mod = 7; /* ids 3, 10, 17, ...: several per batch, healthy records between */
	s.poison_rem = 3;
	s.items = true;
	s.keys = 1; /* one lane per partition: the batches follow the lane order */
	const char *kv[] = {"report.item.failures", "true", "max.retry.attempts", "1", "batch.size", "50",
	                    "bisect.on.error", "false", NULL};
	spate_summary_t sum = run(&s, kv);
	cr_assert_eq(sum.records, s.n);
	size_t poison = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (i % 7 == 3) {
			poison++;
			cr_assert_eq(atomic_load(&s.fails[i]), 2, "poison record %zu reached the handler %u times",
			             i, atomic_load(&s.fails[i]));
			cr_assert_eq(atomic_load(&s.ok[i]), 0);
		} else {
			cr_assert_geq(atomic_load(&s.ok[i]), 1, "healthy record %zu never succeeded", i);
		}
	}
	cr_assert_eq(sum.dropped, poison, "dropped %llu, poison %zu", (unsigned long long)sum.dropped, poison);
	free(s.ok);
	free(s.fails);
}

/* A poison key's lane retries for about 2 s (6 attempts, backoff 200..800 ms), or with
 * one_long_retry_ms after one retry that long; healthy batches take slow_healthy_us. */
static void poison_lane_case(const char *inflight, int slow_healthy_us, const char *one_long_retry_ms)
{
	st_t s;
	init(&s, 40000);
	s.slow_healthy_us = slow_healthy_us;
	s.keys = 64;
	s.poison_key = 5; /* record 5, key k5 */
	s.poison_lane = lane_of(5, 8);
	for (size_t i = 0; i < s.n; i++)
		if (lane_of((unsigned)(i % 64), 8) != s.poison_lane)
			s.other_left++;
	const char *r = one_long_retry_ms;
	const char *kv[] = {"parallelization.factor", "8", "max.retry.attempts", r ? "1" : "5", "retry.backoff.ms",
	                    r ? r : "200", "retry.backoff.max.ms", r ? r : "800", "batch.size", "20",
	                    "bisect.on.error", "true", "max.inflight.bytes", inflight, NULL};
	spate_summary_t sum = run(&s, kv);
	cr_assert_eq(sum.records, s.n);
	cr_assert_eq(sum.dropped, 1);
	/* bisect splits, then the counted attempts */
	cr_assert_geq(atomic_load(&s.fails[5]), r ? 2 : 6);
	uint32_t poison_lane = s.poison_lane;
	size_t other = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (i == 5)
			continue;
		cr_assert_geq(atomic_load(&s.ok[i]), 1, "healthy record %zu not handled", i);
		if (lane_of((unsigned)(i % 64), 8) != poison_lane)
			other++;
	}
	cr_assert_gt(other, s.n / 2);
	cr_assert_eq(atomic_load(&s.other_left), 0);
	/* every record of the other lanes was handled before the poison record's last
	 * attempt: s.last_healthy_ns is only written by batches without poison, and the
	 * poison lane's later records wait behind it (per-key order) */
	cr_log_info("max.inflight.bytes %s: the other lanes were done %.0f ms before the poison's last attempt",
	            inflight,
	            (double)(atomic_load(&s.last_poison_ns) - atomic_load(&s.first_other_done_ns)) / 1e6);
	cr_assert_lt(atomic_load(&s.first_other_done_ns), atomic_load(&s.last_poison_ns));
	free(s.ok);
	free(s.fails);
}

Test(failures, poison_key_does_not_stall_other_lanes)
{
	poison_lane_case("256M", 0, NULL);
}

/* The stream (40,000 records of about 12 bytes: about 7 MB as chunks, with the engine's
 * descriptors of them, 136 bytes each since positions are 512 bits) is far larger than
 * 4 MiB in flight: the retrying lane must copy its queued records out and release the
 * chunks, or its partition stays paused until the poison record is dead-lettered (with
 * the copies turned off this test fails at 4 MiB). What the lane copies (1/8 of its
 * partition's records with their descriptors, about 0.7 MB) counts in the bound and fits
 * its partition's share (2 MiB); a lane whose copies pass its share pauses its partition
 * and no other (test_flow.c). */
Test(failures, retrying_lane_releases_chunks_under_a_small_inflight_bound)
{
	poison_lane_case("4M", 0, NULL);
}

/* The same at 3 MiB (1.5 MiB a partition), with healthy batches of 1 ms, so the lanes
 * hold a backlog and the partition fills its share before the poison lane parks, and
 * one retry 5 s later. The push source's chunks of small records reach 1.5 MB, about the
 * share: once the lane has copied its records (about 0.5 MB with the chunks' remains),
 * no such chunk fits the rest of the share, and the other partition's reserve is kept
 * for it. Before, the partition waited for the poison record's retry with nothing left
 * to handle (the other lanes done 0.4 s after it, in every run); now a chunk enters a
 * partition where no lane reads any (sp_flow_fits), and a parked lane's copy that
 * found no room looks again (SP_MIG_RETRY_MS) and goes before batches. */
Test(failures, retrying_lane_does_not_stall_its_partition_when_chunks_are_large, .timeout = 120)
{
	poison_lane_case("3M", 1000, "5000");
}

Test(failures, record_age_only_for_records_that_failed)
{
	st_t s;
	init(&s, 4000);
	s.poison_mod = 1000;
	s.poison_rem = 2; /* even ids: old timestamps; the poison ones are even too */
	s.ts_old_ms = 1000; /* 1970: older than any max.record.age.ms */
	const char *kv[] = {"bisect.on.error", "true", "max.retry.attempts", "-1", "max.record.age.ms", "60000",
	                    "batch.size", "10", NULL};
	spate_summary_t sum = run(&s, kv);
	cr_assert_eq(sum.records, s.n);
	cr_assert_eq(sum.dropped, 4, "dropped %llu", (unsigned long long)sum.dropped);
	for (size_t i = 0; i < s.n; i++)
		if (i % 1000 != 2)
			cr_assert_geq(atomic_load(&s.ok[i]), 1, "old healthy record %zu was not handled", i);
	free(s.ok);
	free(s.fails);
}
