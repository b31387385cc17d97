/* test_log_source.c - the log as a source and as a DLQ, end to end through the public
 * API: every record handled once with the right id, position, timestamp and headers;
 * a restart resumes after the checkpoint; starting.position latest and at-timestamp;
 * stop.at.end with a tiny max.inflight.bytes; log.on.corruption fail and skip; records
 * that fail go to a dlq=log:DIR, durably, with their bytes. */
#include "tests/common/engine.h"
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PARTS = 3, N1 = 6000, N2 = 1500, MAXREC = N1 + N2 };

typedef struct state {
	_Atomic uint32_t seen[MAXREC];
	_Atomic uint64_t handled;
	_Atomic int bad;
	char topic[64];
} state_t;

/* Record i: key "k<i%50>", value "<i>" (or "<i>:poison" every 100th), timestamp
 * 1700000000000 + i, header "n" = "<i>". */
static void make_rec(uint32_t i, char *key, char *val, char *hv, spate_header_t *h, spate_push_record_t *r)
{
	int kl = snprintf(key, 16, "k%u", i % 50);
	int vl = snprintf(val, 32, i % 100 == 7 ? "%u:poison" : "%u", i);
	int hl = snprintf(hv, 16, "%u", i);
	*h = (spate_header_t){"n", 1, hv, (size_t)hl};
	*r = (spate_push_record_t){key, (size_t)kl, val, (size_t)vl, h, 1, 1700000000000LL + i};
}

static void produce(const char *dir, uint32_t from, uint32_t to)
{
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 64 << 10, 4096);
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, PARTS, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	for (uint32_t i = from; i < to; i++) {
		char k[16], v[32], hv[16];
		spate_header_t h;
		spate_push_record_t r;
		make_rec(i, k, v, hv, &h, &r);
		cr_assert_eq(sp_log_producer_send(p, &r, 1, -1, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
}

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	(void)ctx;
	state_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		char v[64], id[256], want[256];
		size_t n = r[i]->value_len < sizeof(v) - 1 ? r[i]->value_len : sizeof(v) - 1;
		memcpy(v, r[i]->value, n);
		v[n] = 0;
		unsigned x = (unsigned)strtoul(v, NULL, 10);
		if (x >= MAXREC || r[i]->timestamp_ms != 1700000000000LL + x || r[i]->header_cnt != 1 ||
		    r[i]->headers[0].value_len != strlen(v) - (strchr(v, ':') ? 7 : 0)) {
			atomic_fetch_add(&s->bad, 1);
			continue;
		}
		spate_record_id(r[i], id, sizeof(id));
		snprintf(want, sizeof(want), "log/%s/%d/%llu", s->topic, r[i]->partition->partition,
		         (unsigned long long)r[i]->position.w[2]);
		if (strcmp(id, want) || strcmp(r[i]->partition->source, "log"))
			atomic_fetch_add(&s->bad, 1);
		atomic_fetch_add(&s->seen[x], 1);
	}
	atomic_fetch_add(&s->handled, spate_batch_count(b));
	return SPATE_HANDLER_OK;
}

/* A run over the log at dir with stop.at.end and 2 workers, store the store URI (NULL:
 * none, as the log's default store would resume the next run), the suite's handler on s
 * (NULL: the conf's handler) and the test's own conf kv (may be NULL). */
static t_run_t run(state_t *s, const char *dir, const char *store, const char *const *kv)
{
	char src[512];
	snprintf(src, sizeof(src), "log:%s", dir);
	const char *base[] = {"source", src, "stop.at.end", "true", "max.concurrency", "2",
	                      "store", store ? store : "none", NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "t", .handle = handle, .opaque = s};
	return t_engine_run(&(t_engine_opts_t){.conf = base, .conf_more = kv, .handler = s ? &h : NULL});
}

static state_t *new_state(const char *dir)
{
	state_t *s = calloc(1, sizeof(*s));
	const char *b = strrchr(dir, '/');
	snprintf(s->topic, sizeof(s->topic), "%s", b ? b + 1 : dir);
	return s;
}

Test(log_source, every_record_once_then_resume_after_checkpoint)
{
	char *dir = lt_mkdtemp(), *sd = lt_mkdtemp();
	char store[512];
	snprintf(store, sizeof(store), "file:%s/ckpt", sd);
	produce(dir, 0, N1);
	state_t *s = new_state(dir);
	t_run_t r = run(s, dir, store, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, N1);
	cr_assert_eq(atomic_load(&s->handled), N1);
	cr_assert_eq(atomic_load(&s->bad), 0);
	for (uint32_t i = 0; i < N1; i++)
		cr_assert_eq(atomic_load(&s->seen[i]), 1, "record %u seen %u times", i,
		             atomic_load(&s->seen[i]));
	/* more records; the second run starts after the checkpoint */
	produce(dir, N1, MAXREC);
	r = run(s, dir, store, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	sum = r.sum;
	cr_assert_eq(sum.records, N2);
	for (uint32_t i = 0; i < MAXREC; i++)
		cr_assert_eq(atomic_load(&s->seen[i]), 1, "record %u seen %u times", i,
		             atomic_load(&s->seen[i]));
	cr_assert_eq(atomic_load(&s->bad), 0);
	free(s);
	lt_rmrf(dir);
	lt_rmrf(sd);
	free(dir);
	free(sd);
}

Test(log_source, inflight_bound_below_one_read_per_partition_is_refused)
{
	char *dir = lt_mkdtemp();
	char min[64];
	produce(dir, 0, N1);
	state_t *s = new_state(dir);
	const char *kv[] = {"max.inflight.bytes", "1", NULL};
	t_run_t r = run(s, dir, NULL, kv);
	cr_assert_eq(r.rc, SPATE_ERR_INVALID, "%s", r.err);
	snprintf(min, sizeof(min), "%llu", (unsigned long long)PARTS * SP_LOG_POOL_BUF_BYTES);
	cr_assert(strstr(r.err, "max.inflight.bytes") && strstr(r.err, min), "%s", r.err);
	/* the minimum itself works: one read per partition in flight */
	const char *kv2[] = {"max.inflight.bytes", min, NULL};
	r = run(s, dir, NULL, kv2);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s->handled), N1);
	free(s);
	lt_rmrf(dir);
	free(dir);
}

Test(log_source, starting_positions)
{
	char *dir = lt_mkdtemp();
	produce(dir, 0, N1);
	state_t *s = new_state(dir);
	const char *latest[] = {"starting.position", "latest", NULL};
	t_run_t r = run(s, dir, NULL, latest);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s->handled), 0, "latest: nothing that was there before");
	/* at-timestamp: records with timestamps >= T, i.e. ids >= 4000 */
	const char *ts[] = {"starting.position", "at-timestamp:1700000004000", NULL};
	r = run(s, dir, NULL, ts);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s->handled), N1 - 4000);
	for (uint32_t i = 0; i < N1; i++)
		cr_assert_eq(atomic_load(&s->seen[i]), i >= 4000 ? 1u : 0u, "record %u", i);
	free(s);
	lt_rmrf(dir);
	free(dir);
}

Test(log_source, failed_records_go_to_a_log_dlq)
{
	char *dir = lt_mkdtemp(), *dlq = lt_mkdtemp();
	char err[1024], dlqarg[512];
	produce(dir, 0, N1);
	lt_rmrf(dlq); /* the sink creates it */
	snprintf(dlqarg, sizeof(dlqarg), "log:%s", dlq);
	const char *kv[] = {"handler", "fail-if:poison",       "dlq",  dlqarg, "max.retry.attempts",
	                    "0",       "report.item.failures", "true", NULL};
	t_run_t r = run(NULL, dir, NULL, kv);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t sum = r.sum;
	cr_assert_eq(sum.records, N1);
	cr_assert_eq(sum.dlq, N1 / 100);
	int parts;
	cr_assert_eq(sp_log_meta_read(dlq, &parts, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(parts, 1, "a missing DLQ log is created with one partition");
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dlq, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, N1 / 100);
	for (size_t i = 0; i < recs.n; i++) {
		cr_assert_not_null(recs.v[i].value);
		cr_assert(memmem(recs.v[i].value, recs.v[i].value_len, ":poison", 7),
		          "the record's own value");
		bool named = false;
		for (size_t h = 0; h < recs.v[i].hcnt; h++)
			if (recs.v[i].hdrs[h].key_len > 6 && !memcmp(recs.v[i].hdrs[h].key, "spate.", 6))
				named = true;
		cr_assert(named, "spate.* headers name the error");
	}
	lt_recs_free(&recs);
	lt_rmrf(dir);
	lt_rmrf(dlq);
	free(dir);
	free(dlq);
}

/* Flip a byte in the middle of partition 0's first segment. */
static void corrupt_partition0(const char *dir)
{
	char path[4200];
	lt_seg(path, sizeof(path), dir, 0, 0);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t x;
	cr_assert_eq(pread(fd, &x, 1, size / 2), 1);
	x ^= 0x10;
	cr_assert_eq(pwrite(fd, &x, 1, size / 2), 1);
	close(fd);
}

Test(log_source, corruption_fail_and_skip)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	produce(dir, 0, N1);
	corrupt_partition0(dir);
	state_t *s = new_state(dir);
	t_run_t r = run(s, dir, NULL, NULL);
	cr_assert_eq(r.rc, SPATE_ERR_CORRUPT, "rc %d: %s", r.rc, r.err);
	cr_assert(strstr(r.err, "00000000000000000000.log"), "%s", r.err);
	cr_assert(strstr(r.err, "byte "), "%s", r.err);
	free(s);
	s = new_state(dir);
	const char *skip[] = {"log.on.corruption", "skip", NULL};
	r = run(s, dir, NULL, skip);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	uint64_t h = atomic_load(&s->handled);
	cr_assert_lt(h, N1, "the bad batch's records were skipped");
	cr_assert_gt(h, N1 - 200, "only one batch was skipped");
	cr_assert_eq(atomic_load(&s->bad), 0);
	free(s);

	/* skip with a DLQ: one metadata-only record with condition Corrupt names the region */
	char *dlq = lt_mkdtemp(), dlqarg[600];
	lt_rmrf(dlq);
	snprintf(dlqarg, sizeof(dlqarg), "log:%s", dlq);
	s = new_state(dir);
	const char *skip_dlq[] = {"log.on.corruption", "skip", "dlq", dlqarg, NULL};
	r = run(s, dir, NULL, skip_dlq);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(r.sum.dlq, 1);
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dlq, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, 1);
	cr_assert_null(recs.v[0].value, "metadata only");
	bool corrupt = false, names_file = false, has_last = false;
	for (size_t k = 0; k < recs.v[0].hcnt; k++) {
		const spate_header_t *hh = &recs.v[0].hdrs[k];
		if (hh->key_len == 15 && !memcmp(hh->key, "spate.condition", 15))
			corrupt = hh->value_len == 7 && !memcmp(hh->value, "Corrupt", 7);
		if (hh->key_len == 11 && !memcmp(hh->key, "spate.error", 11))
			names_file = memmem(hh->value, hh->value_len, "00000000000000000000.log", 24) != NULL;
		if (hh->key_len == 19 && !memcmp(hh->key, "spate.position.last", 19))
			has_last = true;
	}
	cr_assert(corrupt && names_file && has_last, "Corrupt entry headers");
	lt_recs_free(&recs);
	free(s);

	/* skip while the DLQ cannot be written: the run stops with the error, nothing skipped
	 * silently */
	lt_rmrf(dlq);
	setenv("SPATE_FAULT_DLQ", "fail", 1);
	s = new_state(dir);
	r = run(s, dir, NULL, skip_dlq);
	unsetenv("SPATE_FAULT_DLQ");
	cr_assert_neq(r.rc, SPATE_OK);
	cr_assert(strstr(r.err, "Corrupt DLQ entry"), "%s", r.err);
	free(s);
	lt_rmrf(dlq);
	free(dlq);
	lt_rmrf(dir);
	free(dir);
}

/* ---- guarantee 6: the resolved start is saved before the first record --------------- */

/* Records [N1, HALF) are appended once the run started (after the start was resolved),
 * [HALF, MAXREC) after the first run ended. */
enum { HALF = N1 + N2 / 2 };

typedef struct first_call {
	state_t *s;
	char store_path[512];
	char dir[256];
	t_first_snap_t snap; /* the store file as the first handler call found it */
	uint64_t want;       /* records the first run handles before it is stopped */
} first_t;

static void append_after_start(spate_engine_t *e, void *arg)
{
	(void)e;
	first_t *f = arg;
	produce(f->dir, N1, HALF);
}

static void stop_once_handled(t_during_t *d)
{
	first_t *f = d->arg;
	int64_t until = t_now_ms() + 60000;
	while (atomic_load(&f->s->handled) < f->want && t_now_ms() < until && !atomic_load(&d->ended))
		t_sleep_ms(5);
	t_require(atomic_load(&f->s->handled) >= f->want, "handled %llu of %llu",
	          (unsigned long long)atomic_load(&f->s->handled), (unsigned long long)f->want);
	spate_engine_stop(d->e);
}

/* A first run with starting.position=pos whose handler copies the store file at its
 * first call: the file already holds every partition's resolved start (no periodic or
 * count checkpoint can have saved it: both are an hour and a billion records away). A
 * SIGKILL at that call would leave exactly that file (saves replace it by rename), so
 * the test puts it back after the run, appends more records, and reruns with
 * starting.position=latest: the rerun resumes from the saved start and handles exactly
 * the records from it on, those appended after the "kill" included; with nothing saved
 * it would resolve latest again and handle none. first_id: the first record the start
 * takes in. */
static void start_saved_before_first_record(const char *pos, uint32_t first_id)
{
	char *dir = lt_mkdtemp(), *sd = lt_mkdtemp();
	produce(dir, 0, N1);
	first_t f = {.s = new_state(dir)};
	snprintf(f.dir, sizeof(f.dir), "%s", dir);
	snprintf(f.store_path, sizeof(f.store_path), "%s/ckpt", sd);
	f.want = HALF - first_id;
	char src[512], store[600];
	snprintf(src, sizeof(src), "log:%s", dir);
	snprintf(store, sizeof(store), "file:%s", f.store_path);
	const char *kv[] = {"source",
	                    src,
	                    "store",
	                    store,
	                    "starting.position",
	                    pos,
	                    "max.concurrency",
	                    "2",
	                    "checkpoint.interval.ms",
	                    "3600000",
	                    "checkpoint.records",
	                    "1000000000",
	                    NULL};
	spate_handler_t inner = {.version = SPATE_HANDLER_VERSION, .name = "t", .handle = handle, .opaque = f.s};
	f.snap = (t_first_snap_t){.path = f.store_path, .inner = &inner};
	spate_handler_t h = t_first_snap_handler(&f.snap);
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = kv,
	                                            .handler = &h,
	                                            .started = append_after_start,
	                                            .during = stop_once_handled,
	                                            .arg = &f});
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert(atomic_load(&f.snap.called));
	cr_assert_not_null(f.snap.snap, "%s: no store file at the first handler call", pos);
	for (int p = 0; p < PARTS; p++) {
		char name[128];
		snprintf(name, sizeof(name), "\nlog/%s/%d\t%s", f.s->topic, p,
		         !strcmp(pos, "earliest") ? "beginning\n" : "");
		cr_assert(strstr(f.snap.snap, name),
		          "%s: partition %d's start is not in the store at the first "
		          "handler call:\n%s",
		          pos, p, f.snap.snap);
	}
	/* the store as a SIGKILL at the first handler call leaves it */
	FILE *fp = fopen(f.store_path, "wb");
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(f.snap.snap, 1, f.snap.snap_len, fp), f.snap.snap_len);
	cr_assert_eq(fclose(fp), 0);
	produce(dir, HALF, MAXREC);
	state_t *s2 = new_state(dir);
	const char *latest[] = {"starting.position", "latest", NULL};
	r = run(s2, dir, store, latest);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s2->handled), MAXREC - first_id, "%s: the rerun handled %llu", pos,
	             (unsigned long long)atomic_load(&s2->handled));
	for (uint32_t i = 0; i < MAXREC; i++)
		cr_assert_eq(atomic_load(&s2->seen[i]), i >= first_id ? 1u : 0u,
		             "%s: record %u seen %u times", pos, i, atomic_load(&s2->seen[i]));
	cr_assert_eq(atomic_load(&s2->bad), 0);
	free(f.snap.snap);
	free(f.s);
	free(s2);
	lt_rmrf(dir);
	lt_rmrf(sd);
	free(dir);
	free(sd);
}

Test(log_source, earliest_start_is_saved_before_the_first_record)
{
	start_saved_before_first_record("earliest", 0);
}

Test(log_source, latest_start_is_saved_before_the_first_record)
{
	start_saved_before_first_record("latest", N1);
}

Test(log_source, at_timestamp_start_is_saved_before_the_first_record)
{
	start_saved_before_first_record("at-timestamp:1700000004000", 4000);
}

/* The store's file replaced by another store's (another epoch) while a run holds it: the
 * run's next save stops it with ERR_STORE_LOST naming the file, and the replacement is
 * not overwritten. The file is replaced after the start (which saved the resolved
 * starts) and before the run, so no save of the run can race with the replacement. */
static void replace_store(spate_engine_t *e, void *arg)
{
	(void)e;
	const char *const *paths = arg;
	t_require(rename(paths[0], paths[1]) == 0, "rename %s: %s", paths[0], strerror(errno));
}

Test(log_source, a_store_file_replaced_mid_run_stops_the_run)
{
	char *dir = lt_mkdtemp(), *sd = lt_mkdtemp();
	produce(dir, 0, N1);
	char other[512], mine[512], store[600];
	snprintf(other, sizeof(other), "%s/other", sd);
	snprintf(mine, sizeof(mine), "%s/ckpt", sd);
	/* another pipeline's store: a whole file under its own epoch */
	snprintf(store, sizeof(store), "file:%s", other);
	state_t *s = new_state(dir);
	t_run_t r = run(s, dir, store, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	size_t len0;
	char *replacement = t_read_file(other, &len0);
	cr_assert_not_null(replacement);
	free(s);
	s = new_state(dir);
	snprintf(store, sizeof(store), "file:%s", mine);
	char src[512];
	snprintf(src, sizeof(src), "log:%s", dir);
	const char *kv[] = {"source", src, "store", store, "checkpoint.interval.ms", "10", NULL};
	const char *paths[] = {other, mine};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "t", .handle = handle, .opaque = s};
	r = t_engine_run(&(t_engine_opts_t){
	    .conf = kv, .handler = &h, .started = replace_store, .arg = paths, .child_ms = 60000});
	cr_assert_eq(r.rc, SPATE_ERR_STORE_LOST, "rc %d: %s", r.rc, r.err);
	char want[700];
	snprintf(want, sizeof(want), "file store %s lost its data: it was replaced by a file with epoch",
	         mine);
	cr_assert(strstr(r.err, want), "want \"%s\" in: %s", want, r.err);
	size_t len1;
	char *now = t_read_file(mine, &len1);
	cr_assert(now && len1 == len0 && !memcmp(now, replacement, len0), "the replacement was overwritten");
	free(now);
	free(replacement);
	free(s);
	lt_rmrf(dir);
	lt_rmrf(sd);
	free(dir);
	free(sd);
}
