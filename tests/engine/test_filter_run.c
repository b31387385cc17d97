/* test_filter_run.c - the filter in the data path (filter, filter.1 .. filter.9), through
 * the public API with the log source and its checkpoint store:
 *  - a record the filter drops never reaches the handler, is counted once in `filtered`
 *    (and in the stats), and is DONE: the checkpoint passes it, so a second run over the
 *    same log has nothing left, the trailing filtered records included;
 *  - item failures and a whole-batch failure in batches that hold filtered records retry
 *    only records that pass: nothing filtered is failed, charged, or counted twice;
 *  - bad criteria are refused when the engine is made, naming the key and the byte. */
#include <spate/spate.h>

#include "connectors/log/log.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/engine.h"
#include "tests/common/util.h"

enum { PARTS = 2, PER = 1000, N = PARTS * PER };

typedef struct st {
	_Atomic int calls;
	_Atomic int leaked;          /* records the filter should have dropped */
	_Atomic uint32_t handled[N]; /* successful handler passes per record */
	_Atomic uint32_t failed_once[N];
} st_t;

/* Record i of partition p: kept (matches the filter) when i % 10 is 3 or 4, except the
 * last five of each partition. Every 97th is plain text, not JSON: Lambda's Kafka table
 * skips a JSON-shaped value part for it, so it passes (docs/filters.md). */
static bool kept(int i)
{
	return ((i % 10 == 3 || i % 10 == 4) && i < PER - 5) || i % 97 == 0;
}

static void value_of(int p, int i, char *buf, size_t size)
{
	if (i % 97 == 0)
		snprintf(buf, size, "plain text %d", p * PER + i);
	else
		snprintf(buf, size, "{\"id\":%d,\"keep\":%s}", p * PER + i, kept(i) ? "true" : "false");
}

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	st_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	size_t n = spate_batch_count(b);
	if (atomic_fetch_add(&s->calls, 1) == 0)
		return SPATE_HANDLER_FAIL; /* the first batch fails whole */
	int ret = SPATE_HANDLER_OK;
	for (size_t i = 0; i < n; i++) {
		char v[64] = "";
		memcpy(v, r[i]->value, r[i]->value_len < sizeof(v) - 1 ? r[i]->value_len : sizeof(v) - 1);
		bool text = !strncmp(v, "plain text ", 11);
		if (!text && !strstr(v, "\"keep\":true")) {
			atomic_fetch_add(&s->leaked, 1);
			continue;
		}
		int id = atoi(v + (text ? 11 : strlen("{\"id\":")));
		if (!t_expect(id >= 0 && id < N, "a record with id %d", id))
			continue;
		if (id % 50 == 3 && !atomic_exchange(&s->failed_once[id], 1)) {
			spate_batch_fail_item(b, i, "first attempt fails");
			ret = SPATE_HANDLER_ITEM_FAILURES;
			continue;
		}
		atomic_fetch_add(&s->handled[id], 1);
	}
	return ret;
}

static spate_summary_t run(st_t *s, const char *dir)
{
	char src[300];
	snprintf(src, sizeof(src), "log:%s", dir);
	/* clang-format off */
	const char *kv[] = {"source", src, "stop.at.end", "true", "parallelization.factor", "4",
	                    "batch.size", "10", "report.item.failures", "true", "max.retry.attempts", "-1",
	                    "retry.backoff.ms", "1", "retry.backoff.max.ms", "5",
	                    "filter", "{\"value\": {\"keep\": [true]}}",
	                    "filter.4", "{\"value\": {\"nothing\": [\"here\"]}}",
	                    "log.level", "error", NULL};
	/* clang-format on */
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "filtered", .handle = handle, .opaque = s};
	t_engine_opts_t o = {.conf = kv, .handler = &h, .keep = true};
	t_run_t r = t_engine_run(&o);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_stats_t stats;
	spate_engine_stats(r.e, &stats);
	spate_engine_destroy(r.e);
	cr_assert_eq(stats.filtered, r.sum.filtered,
	             "the stats say %" PRIu64 " filtered, the summary %" PRIu64, stats.filtered,
	             r.sum.filtered);
	return r.sum;
}

Test(filter_run, dropped_records_never_reach_the_handler_and_the_checkpoint_passes_them, .timeout = 120)
{
	char dir[256], err[512];
	t_mkdtemp(dir, sizeof(dir));
	cr_assert_eq(sp_log_create(dir, PARTS, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t wo;
	sp_log_wopts_default(&wo);
	int want_kept = 0;
	for (int p = 0; p < PARTS; p++) {
		sp_log_writer_t *w;
		cr_assert_eq(sp_log_writer_open(dir, p, &wo, &w, err, sizeof(err)), SPATE_OK, "%s", err);
		for (int i = 0; i < PER; i++) {
			char k[16], v[64];
			snprintf(k, sizeof(k), "k%d", i % 8);
			value_of(p, i, v, sizeof(v));
			spate_push_record_t rec = {
			    .key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
			cr_assert_eq(sp_log_writer_put(w, &rec, 1700000000000 + i, NULL, err, sizeof(err)),
			             SPATE_OK, "%s", err);
			want_kept += kept(i);
		}
		cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	}

	st_t *s = calloc(1, sizeof(*s));
	spate_summary_t sum = run(s, dir);
	cr_assert_eq(atomic_load(&s->leaked), 0, "%d filtered records reached the handler",
	             atomic_load(&s->leaked));
	cr_assert_eq(sum.records, N, "%" PRIu64 " of %d records DONE", sum.records, N);
	cr_assert_eq(sum.filtered, (uint64_t)(N - want_kept), "filtered %" PRIu64 ", want %d", sum.filtered,
	             N - want_kept);
	cr_assert_geq(sum.failed, 1, "the failures ran");
	for (int p = 0; p < PARTS; p++)
		for (int i = 0; i < PER; i++) {
			int id = p * PER + i;
			/* records after a failed item run again with it: at least once */
			uint32_t got = atomic_load(&s->handled[id]);
			cr_assert(kept(i) ? got >= 1 : got == 0, "record %d (%s) handled %u times", id,
			          kept(i) ? "kept" : "filtered", got);
		}
	cr_assert_eq(sum.dlq + sum.dropped, 0);

	/* the checkpoint passed every record, the five filtered ones at each end included */
	st_t *again = calloc(1, sizeof(*again));
	sum = run(again, dir);
	cr_assert_eq(sum.records, 0, "a second run found %" PRIu64 " records the checkpoint had not passed",
	             sum.records);
	cr_assert_eq(sum.filtered, 0);
	cr_assert_eq(atomic_load(&again->calls), 0);
	free(again);
	free(s);
	t_rmrf(dir);
}

static void refused(const char *key, const char *pattern, const char *want)
{
	char err[512] = "";
	spate_conf_t *c = spate_conf_new();
	cr_assert_eq(spate_conf_set(c, "source", "gen", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "filter", "{\"value\": {\"ok\": [1]}}", err, sizeof(err)),
	             SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, key, pattern, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_null(e, "%s=%s was taken", key, pattern);
	cr_assert(!strncmp(err, want, strlen(want)), "error \"%s\", want it to start with \"%s\"", err, want);
}

Test(filter_run, bad_criteria_are_refused_naming_the_key_and_byte)
{
	refused("filter.2", "{\"a\": [{\"prefix\": 1}]}",
	        "filter.2: byte 18: \"prefix\" needs a string or {\"equals-ignore-case\": \"...\"}");
	refused("filter", "{\"value\": {\"a\": [1, }}", "filter: byte 20: not valid JSON");
	refused("filter.9", "[1]", "filter.9: byte 0: ");
}
