/* test_dlq.c - failure semantics with a real DLQ (dlq=log:DIR) over the embedded log:
 * poison records land in the DLQ with the headers of the contract, bisect keeps healthy
 * records out of it, a DLQ outage loses nothing and holds the checkpoint before the
 * first undeliverable record, and record age is judged per record: each dead letter
 * carries its own condition. */
#include "connectors/log/log.h"
#include "tests/common/engine.h"
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <spate/spate.h>

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PARTS = 4, N = 40000, POISON_EVERY = 10000, POISON_AT = 4321 };

static bool is_poison(unsigned id)
{
	return id % POISON_EVERY == POISON_AT;
}

/* record i: key "k<i%97>", value "<i>", one header "h" = "<i>", timestamp ts (even i:
 * ts_even when not 0) */
static void produce_ts(const char *dir, int64_t ts, int64_t ts_even)
{
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 256 << 10, 8192);
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, PARTS, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	for (unsigned i = 0; i < N; i++) {
		char k[16], v[16];
		int kl = snprintf(k, sizeof(k), "k%u", i % 97), vl = snprintf(v, sizeof(v), "%u", i);
		spate_header_t h = {"h", 1, v, (size_t)vl};
		spate_push_record_t r = {.key = k, .key_len = (size_t)kl, .value = v, .value_len = (size_t)vl,
		                         .headers = &h, .header_cnt = 1,
		                         .timestamp_ms = ts_even && i % 2 == 0 ? ts_even : ts};
		cr_assert_eq(sp_log_producer_send(p, &r, 1, -1, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
}

static void produce(const char *dir, int64_t ts)
{
	produce_ts(dir, ts, 0);
}

typedef struct st {
	_Atomic uint32_t ok[N];
	_Atomic uint32_t fails[N];
} st_t;

static unsigned id_of(const spate_record_t *r)
{
	char v[16];
	size_t n = r->value_len < 15 ? r->value_len : 15;
	memcpy(v, r->value, n);
	v[n] = 0;
	return (unsigned)strtoul(v, NULL, 10);
}

static int handle(void *opaque, void *ctx, spate_batch_t *b)
{
	(void)ctx;
	st_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	size_t n = spate_batch_count(b);
	bool bad = false;
	for (size_t i = 0; i < n; i++)
		bad |= is_poison(id_of(r[i]));
	for (size_t i = 0; i < n; i++)
		atomic_fetch_add(bad ? &s->fails[id_of(r[i])] : &s->ok[id_of(r[i])], 1);
	if (!bad)
		return SPATE_HANDLER_OK;
	spate_batch_set_error(b, "poison in batch");
	return SPATE_HANDLER_FAIL;
}

/* A run over the log at log into the DLQ log at dlq (a file store at store when not NULL,
 * else the log's default), with the suite's handler on s and the conf kv of the test. */
static t_run_t run(st_t *s, const char *log, const char *dlq, const char *store, const char *const *kv,
                   t_engine_opts_t o)
{
	char src[600], dl[600], st[600];
	snprintf(src, sizeof(src), "log:%s", log);
	snprintf(dl, sizeof(dl), "log:%s", dlq);
	snprintf(st, sizeof(st), "file:%s", store ? store : "");
	const char *base[] = {"source", src, "dlq", dl, "stop.at.end", "true", "retry.backoff.ms", "1",
	                      "retry.backoff.max.ms", "5", "log.level", "error", "checkpoint.interval.ms", "20",
	                      store ? "store" : NULL, st, NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .handle = handle, .opaque = s};
	o.conf = base;
	o.conf_more = kv;
	o.handler = &h;
	return t_engine_run(&o);
}

/* The value of header key of r, its length in *len; NULL with *len 0 when r has none
 * (so *len is always set, also on the path a failed assertion leaves). */
static const char *hdr(const lt_rec_t *r, const char *key, size_t *len)
{
	*len = 0;
	for (size_t h = 0; h < r->hcnt; h++)
		if (r->hdrs[h].key_len == strlen(key) && !memcmp(r->hdrs[h].key, key, r->hdrs[h].key_len)) {
			*len = r->hdrs[h].value_len;
			return r->hdrs[h].value;
		}
	return NULL;
}

static char *hdr_str(const lt_rec_t *r, const char *key)
{
	size_t len;
	const char *v = hdr(r, key, &len);
	t_require(v, "DLQ record without header %s", key);
	char *s = malloc(len + 1);
	memcpy(s, v, len);
	s[len] = 0;
	return s;
}

static void read_dlq(const char *dlq, lt_recs_t *recs)
{
	char err[1024];
	int parts;
	memset(recs, 0, sizeof(*recs));
	if (access(dlq, F_OK) != 0)
		return;
	int rc = sp_log_meta_read(dlq, &parts, err, sizeof(err));
	t_require(rc == SPATE_OK, "%s", err);
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	for (int p = 0; p < parts; p++) {
		rc = lt_read(dlq, p, 0, &ro, recs, err, sizeof(err));
		t_require(rc == SPATE_OK, "%s", err);
	}
}

static unsigned rec_id(const lt_rec_t *r)
{
	char v[16];
	size_t n = r->value_len < 15 ? r->value_len : 15;
	memcpy(v, r->value, n);
	v[n] = 0;
	return (unsigned)strtoul(v, NULL, 10);
}

Test(dlq, bisect_sends_exactly_the_poison_records_with_contract_headers)
{
	char *log = lt_mkdtemp(), *dlq = lt_mkdtemp();
	lt_rmrf(dlq);
	produce(log, 1700000000000LL);
	st_t *s = calloc(1, sizeof(*s));
	const char *kv[] = {"bisect.on.error", "true", "max.retry.attempts", "2", "batch.size", "100", NULL};
	t_run_t ran = run(s, log, dlq, NULL, kv, (t_engine_opts_t){0});
	cr_assert_eq(ran.rc, SPATE_OK, "%s", ran.err);
	spate_summary_t sum = ran.sum;
	cr_assert_eq(sum.records, N);
	cr_assert_eq(sum.dlq, N / POISON_EVERY);
	cr_assert_eq(sum.dropped, 0);
	for (unsigned i = 0; i < N; i++)
		if (!is_poison(i))
			cr_assert_geq(atomic_load(&s->ok[i]), 1, "healthy record %u not handled", i);
	lt_recs_t recs;
	read_dlq(dlq, &recs);
	cr_assert_eq(recs.n, N / POISON_EVERY);
	for (size_t i = 0; i < recs.n; i++) {
		lt_rec_t *r = &recs.v[i];
		unsigned id = rec_id(r);
		cr_assert(is_poison(id), "healthy record %u in the DLQ", id);
		/* the original key, value and header */
		char k[16];
		snprintf(k, sizeof(k), "k%u", id % 97);
		cr_assert_eq(r->key_len, strlen(k));
		cr_assert(!memcmp(r->key, k, r->key_len));
		size_t hl;
		const char *hv = hdr(r, "h", &hl);
		cr_assert_not_null(hv);
		cr_assert_eq(hl, r->value_len);
		cr_assert(!memcmp(hv, r->value, hl));
		/* the contract's headers */
		char *cond = hdr_str(r, "spate.condition"), *att = hdr_str(r, "spate.attempts"),
		     *src = hdr_str(r, "spate.source"), *part = hdr_str(r, "spate.partition"),
		     *pos = hdr_str(r, "spate.position"), *sid = hdr_str(r, "spate.id"),
		     *first = hdr_str(r, "spate.first.attempt.ms"), *last = hdr_str(r, "spate.last.attempt.ms"),
		     *error = hdr_str(r, "spate.error");
		cr_assert_str_eq(cond, "RetryAttemptsExhausted");
		cr_assert_str_eq(att, "3", "2 retries after the first attempt: %s", att);
		cr_assert_str_eq(src, "log");
		cr_assert(!strncmp(part, "log/", 4), "%s", part);
		char want[256];
		snprintf(want, sizeof(want), "%s/%s", part, pos);
		cr_assert_str_eq(sid, want);
		cr_assert_str_eq(error, "poison in batch");
		long long f = atoll(first), l = atoll(last);
		cr_assert_gt(f, 1700000000000LL);
		cr_assert_geq(l, f);
		free(cond), free(att), free(src), free(part), free(pos), free(sid), free(first), free(last), free(error);
	}
	lt_recs_free(&recs);
	lt_rmrf(log), lt_rmrf(dlq);
	free(log), free(dlq), free(s);
}

Test(dlq, bisect_off_sends_whole_failing_batches)
{
	char *log = lt_mkdtemp(), *dlq = lt_mkdtemp();
	lt_rmrf(dlq);
	produce(log, 1700000000000LL);
	st_t *s = calloc(1, sizeof(*s));
	const char *kv[] = {"bisect.on.error", "false", "max.retry.attempts", "1", "batch.size", "100", NULL};
	t_run_t ran = run(s, log, dlq, NULL, kv, (t_engine_opts_t){0});
	cr_assert_eq(ran.rc, SPATE_OK, "%s", ran.err);
	spate_summary_t sum = ran.sum;
	cr_assert_eq(sum.records, N);
	lt_recs_t recs;
	read_dlq(dlq, &recs);
	cr_assert_eq(recs.n, sum.dlq);
	cr_assert_gt(recs.n, N / POISON_EVERY, "only poison records: the batches were split");
	cr_assert_leq(recs.n, 100 * (N / POISON_EVERY));
	/* exactly the records that never succeeded: each shared a failing batch */
	size_t never = 0, poison_in = 0;
	for (unsigned i = 0; i < N; i++)
		never += atomic_load(&s->ok[i]) == 0;
	for (size_t i = 0; i < recs.n; i++) {
		unsigned id = rec_id(&recs.v[i]);
		cr_assert_eq(atomic_load(&s->ok[id]), 0, "record %u succeeded and is in the DLQ", id);
		poison_in += is_poison(id);
	}
	cr_assert_eq(never, recs.n);
	cr_assert_eq(poison_in, N / POISON_EVERY);
	lt_recs_free(&recs);
	lt_rmrf(log), lt_rmrf(dlq);
	free(log), free(dlq), free(s);
}

/* Parse the file store's `name<TAB>ckpt` lines; 0 when the file is absent. */
static int read_ckpts(const char *path, char names[][64], int64_t *pos, int max)
{
	char *text = t_read_file(path, NULL);
	if (!text)
		return 0;
	int n = 0;
	for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
		char *tab = strchr(line, '\t');
		if (!tab || line[0] == '#' || !strncmp(line, "spate-", 6))
			continue;
		*tab = 0;
		snprintf(names[n], 64, "%s", line);
		pos[n] = strcmp(tab + 1, "beginning") ? atoll(tab + 1) : -1;
		n++;
	}
	free(text);
	return n;
}

/* Where each partition's poison records are, and what the sampler saw. */
typedef struct outage {
	const char *store, *dlq;
	int64_t poison_pos[PARTS][8];
	int npoison[PARTS];
	int samples, held;
} outage_t;

/* Once the engine started (with SPATE_FAULT_DLQ read): the fault hook is not left set. */
static void unset_fault(spate_engine_t *e, void *arg)
{
	unsetenv("SPATE_FAULT_DLQ");
}

/* While it runs: no sampled checkpoint passes a poison record that is not yet in the DLQ
 * (the DLQ is read after the checkpoint, so it can only hold more). */
static void sample_checkpoints(t_during_t *d)
{
	outage_t *o = d->arg;
	for (int k = 0; k < 100000; k++) {
		char names[PARTS * 2][64];
		int64_t pos[PARTS * 2];
		int n = read_ckpts(o->store, names, pos, PARTS * 2);
		lt_recs_t dl;
		read_dlq(o->dlq, &dl);
		for (int i = 0; i < n; i++) {
			int p = atoi(strrchr(names[i], '/') + 1);
			for (int j = 0; j < o->npoison[p]; j++) {
				if (pos[i] < o->poison_pos[p][j])
					continue;
				bool in = false;
				for (size_t x = 0; x < dl.n && !in; x++) {
					char *pp = hdr_str(&dl.v[x], "spate.position"),
					     *pa = hdr_str(&dl.v[x], "spate.partition");
					in = atoll(pp) == o->poison_pos[p][j] && !strcmp(pa, names[i]);
					free(pp), free(pa);
				}
				t_require(in,
				          "checkpoint %s at %" PRId64 " passed poison record %" PRId64
				          " that is not in the DLQ",
				          names[i], pos[i], o->poison_pos[p][j]);
			}
			for (int j = 0; j < o->npoison[p]; j++)
				o->held += pos[i] == o->poison_pos[p][j] - 1;
		}
		lt_recs_free(&dl);
		o->samples++;
		spate_summary_t sum;
		spate_engine_summary(d->e, &sum);
		if (sum.records == N || atomic_load(&d->ended))
			break;
		usleep(2000);
	}
}

Test(dlq, outage_loses_nothing_and_holds_the_checkpoint)
{
	char *log = lt_mkdtemp(), *dlq = lt_mkdtemp(), *tmp = lt_mkdtemp();
	char store[512];
	snprintf(store, sizeof(store), "%s/ckpt", tmp);
	lt_rmrf(dlq);
	produce(log, 1700000000000LL);
	/* where each partition's poison records are: the log places records by key hash */
	outage_t o = {.store = store, .dlq = dlq};
	lt_recs_t all = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	char err[1024];
	for (int p = 0; p < PARTS; p++) {
		size_t before = all.n;
		cr_assert_eq(lt_read(log, p, 0, &ro, &all, err, sizeof(err)), SPATE_OK, "%s", err);
		for (size_t i = before; i < all.n; i++)
			if (is_poison(rec_id(&all.v[i])))
				o.poison_pos[p][o.npoison[p]++] = (int64_t)all.v[i].offset;
	}
	lt_recs_free(&all);
	setenv("SPATE_FAULT_DLQ", "fail:60", 1);
	st_t *s = calloc(1, sizeof(*s));
	const char *kv[] = {"bisect.on.error", "true", "max.retry.attempts", "0", "batch.size", "100",
	                    "retry.backoff.ms", "20", "retry.backoff.max.ms", "40", NULL};
	t_run_t ran = run(s, log, dlq, store, kv,
	                  (t_engine_opts_t){.started = unset_fault, .during = sample_checkpoints, .arg = &o});
	unsetenv("SPATE_FAULT_DLQ"); /* when the start failed */
	cr_assert_eq(ran.rc, SPATE_OK, "%s", ran.err);
	spate_summary_t sum = ran.sum;
	cr_assert_eq(sum.records, N);
	cr_assert_geq(sum.dlq_errors, 60, "the fault hook did not fire: %" PRIu64, sum.dlq_errors);
	cr_assert_eq(sum.dlq, N / POISON_EVERY);
	cr_assert_gt(o.samples, 0);
	cr_assert_gt(o.held, 0, "no sample saw a checkpoint held right before a poison record");
	lt_recs_t d;
	read_dlq(dlq, &d);
	cr_assert_eq(d.n, N / POISON_EVERY);
	for (size_t i = 0; i < d.n; i++)
		cr_assert(is_poison(rec_id(&d.v[i])));
	for (unsigned i = 0; i < N; i++)
		if (!is_poison(i))
			cr_assert_geq(atomic_load(&s->ok[i]), 1, "healthy record %u lost", i);
	lt_recs_free(&d);
	lt_rmrf(log), lt_rmrf(dlq), lt_rmrf(tmp);
	free(log), free(dlq), free(tmp), free(s);
}

Test(dlq, record_age_sends_only_failed_old_records)
{
	char *log = lt_mkdtemp(), *dlq = lt_mkdtemp();
	lt_rmrf(dlq);
	produce(log, 1000); /* 1970: every record is older than max.record.age.ms */
	st_t *s = calloc(1, sizeof(*s));
	const char *kv[] = {"bisect.on.error", "true", "max.retry.attempts", "-1", "max.record.age.ms", "60000",
	                    "batch.size", "100", NULL};
	t_run_t ran = run(s, log, dlq, NULL, kv, (t_engine_opts_t){0});
	cr_assert_eq(ran.rc, SPATE_OK, "%s", ran.err);
	spate_summary_t sum = ran.sum;
	cr_assert_eq(sum.records, N);
	lt_recs_t recs;
	read_dlq(dlq, &recs);
	cr_assert_eq(recs.n, N / POISON_EVERY, "healthy old records of failing batches reached the DLQ");
	for (size_t i = 0; i < recs.n; i++) {
		cr_assert(is_poison(rec_id(&recs.v[i])));
		char *cond = hdr_str(&recs.v[i], "spate.condition");
		cr_assert_str_eq(cond, "RecordAgeExceeded");
		free(cond);
	}
	lt_recs_free(&recs);
	lt_rmrf(log), lt_rmrf(dlq);
	free(log), free(dlq), free(s);
}

/* Bisect off, no retry (max.retry.attempts 0): a failing batch leaves whole, each record
 * under its own condition, though the two alternate along a lane (keys i % 97: ids of one
 * key alternate in parity): even ids are from 1970 (RecordAgeExceeded, judged first),
 * odd ones are new (RetryAttemptsExhausted). A group handed to the DLQ at once used to
 * take its head's condition for all of its records. */
Test(dlq, each_dead_letter_of_a_failed_batch_carries_its_own_condition)
{
	char *log = lt_mkdtemp(), *dlq = lt_mkdtemp();
	lt_rmrf(dlq);
	produce_ts(log, sp_wall_ms(), 1000);
	st_t *s = calloc(1, sizeof(*s));
	const char *kv[] = {"bisect.on.error", "false", "max.retry.attempts", "0", "max.record.age.ms", "600000",
	                    "batch.size", "100", NULL};
	t_run_t ran = run(s, log, dlq, NULL, kv, (t_engine_opts_t){0});
	cr_assert_eq(ran.rc, SPATE_OK, "%s", ran.err);
	cr_assert_eq(ran.sum.records, N);
	lt_recs_t recs;
	read_dlq(dlq, &recs);
	cr_assert_eq(recs.n, ran.sum.dlq);
	cr_assert_gt(recs.n, N / POISON_EVERY, "whole batches left");
	size_t age = 0, attempts = 0;
	for (size_t i = 0; i < recs.n; i++) {
		unsigned id = rec_id(&recs.v[i]);
		cr_assert_eq(atomic_load(&s->ok[id]), 0, "record %u succeeded and is in the DLQ", id);
		cr_assert_eq(atomic_load(&s->fails[id]), 1, "record %u handled %u times, not once", id,
		             atomic_load(&s->fails[id]));
		char *cond = hdr_str(&recs.v[i], "spate.condition");
		const char *want = id % 2 == 0 ? "RecordAgeExceeded" : "RetryAttemptsExhausted";
		cr_assert_str_eq(cond, want, "record %u (%s): %s", id, id % 2 ? "new" : "from 1970", cond);
		free(cond);
		age += id % 2 == 0;
		attempts += id % 2;
	}
	cr_assert_gt(age, 0);
	cr_assert_gt(attempts, 0);
	lt_recs_free(&recs);
	lt_rmrf(log), lt_rmrf(dlq);
	free(log), free(dlq), free(s);
}
