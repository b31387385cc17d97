/* kintest.c - see kintest.h. */
#include "tests/connectors/kinesis/kintest.h"
#include "engine/spi/sp_registry.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kt_seen_init(kt_seen_t *s, int keys, int per_key)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->keys = keys;
	s->per_key = per_key;
	s->last = malloc((size_t)keys * sizeof(int));
	s->count = calloc((size_t)keys * (size_t)per_key, 1);
	cr_assert(s->last && s->count);
	for (int i = 0; i < keys; i++)
		s->last[i] = -1;
}

void kt_seen_free(kt_seen_t *s)
{
	free(s->last);
	free(s->count);
	pthread_mutex_destroy(&s->mu);
}

kt_part_t *kt_part(kt_seen_t *s, const char *name)
{
	for (int i = 0; i < s->nparts; i++)
		if (!strcmp(s->parts[i].name, name))
			return &s->parts[i];
	if (!t_expect(s->nparts < KT_MAX_PARTS, "more than %d partitions", KT_MAX_PARTS))
		return &s->spare;
	kt_part_t *p = &s->parts[s->nparts++];
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->first_in = -1;
	return p;
}

static int handle(void *opaque, void *wctx, spate_batch_t *b)
{
	kt_seen_t *s = opaque;
	while (atomic_load(&s->block)) {
		atomic_store(&s->blocked, 1);
		t_sleep_ms(5);
	}
	if (s->delay_ms)
		t_sleep_ms(s->delay_ms);
	size_t n = spate_batch_count(b);
	const spate_record_t *const *r = spate_batch_records(b);
	pthread_mutex_lock(&s->mu);
	long in = s->tick++;
	for (size_t i = 0; i < n; i++) {
		int k = -1, q = -1;
		char v[64];
		size_t vl = r[i]->value_len < sizeof(v) - 1 ? r[i]->value_len : sizeof(v) - 1;
		memcpy(v, r[i]->value, vl);
		v[vl] = 0;
		if (sscanf(v, "k%d:%d", &k, &q) != 2 || k < 0 || k >= s->keys || q < 0 || q >= s->per_key ||
		    r[i]->key_len != 4 || memcmp(r[i]->key, v, 4)) {
			s->foreign++;
			continue;
		}
		char hv[16];
		int hl = snprintf(hv, sizeof(hv), "%d", q);
		if (r[i]->header_cnt != 1 || r[i]->headers[0].key_len != 1 ||
		    r[i]->headers[0].value_len != (size_t)hl ||
		    memcmp(r[i]->headers[0].value, hv, (size_t)hl))
			s->bad_header++;
		uint8_t *c = &s->count[(size_t)k * (size_t)s->per_key + (size_t)q];
		if (*c < UINT8_MAX)
			++*c;
		if (*c > 1) {
			s->dups++;
		} else {
			s->distinct++;
			if (q <= s->last[k])
				s->disorder++;
		}
		if (q > s->last[k])
			s->last[k] = q;
		kt_part_t *p = kt_part(s, r[i]->partition->name);
		if (p->first_in < 0) {
			p->first_in = in;
			if (s->first_of)
				s->first_of(s, p->name);
		}
		p->n++;
		if (spate_position_cmp(&r[i]->position, &p->last) > 0)
			p->last = r[i]->position;
		for (int m = 0; m < s->nmin; m++)
			if (!strcmp(s->min_names[m], r[i]->partition->name) &&
			    spate_position_cmp(&r[i]->position, &s->min_pos[m]) <= 0)
				s->before_ckpt++;
		s->total++;
	}
	long out = s->tick++;
	for (size_t i = 0; i < n; i++) {
		kt_part_t *p = kt_part(s, r[i]->partition->name);
		p->last_out = out;
	}
	/* once only: a second spate_engine_stop stops at once, without the final checkpoint
	 * (and with 2 workers, two batches may end past stop_after) */
	spate_engine_t *stop = NULL;
	if (s->stop_after && s->total >= s->stop_after && !s->stopped) {
		stop = s->e;
		s->stopped = stop != NULL;
	}
	pthread_mutex_unlock(&s->mu);
	if (stop)
		spate_engine_stop(stop);
	return SPATE_HANDLER_OK;
}

void kt_assert_exactly_once(kt_seen_t *s)
{
	long missing = 0;
	for (size_t i = 0; i < (size_t)s->keys * (size_t)s->per_key; i++)
		missing += s->count[i] == 0;
	cr_assert_eq(missing, 0, "%ld records never handled (of %d)", missing, s->keys * s->per_key);
	cr_assert_eq(s->dups, 0, "%ld records handled twice", s->dups);
	cr_assert_eq(s->disorder, 0, "%ld records out of per-key order", s->disorder);
	cr_assert_eq(s->foreign, 0, "%ld records not written by the test", s->foreign);
	cr_assert_eq(s->bad_header, 0, "%ld records without their header", s->bad_header);
	cr_assert_eq(s->total, (long)s->keys * s->per_key);
}

void kt_put(t_kin_t *k, const char *stream, int keys, int first_seq, int per_key)
{
	spate_conf_t *c = spate_conf_new();
	char err[1024];
	t_require(spate_conf_set(c, "kinesis.endpoint", t_kin_endpoint(k), err, sizeof(err)) == SPATE_CONF_OK,
	          "%s", err);
	t_require(spate_conf_set(c, "kinesis.region", T_KIN_REGION, err, sizeof(err)) == SPATE_CONF_OK, "%s",
	          err);
	sp_sink_t sk = {0};
	sk.ops = sp_find_sink("kinesis");
	t_require(sk.ops, "no kinesis sink in the registry");
	sk.arg = stream;
	sk.conf = c;
	t_require(sk.ops->open(&sk, err, sizeof(err)) == SPATE_OK, "%s", err);
	enum { BATCH = 2000 };
	static spate_push_record_t recs[BATCH];
	static spate_header_t hdrs[BATCH];
	static char vals[BATCH][32], hv[BATCH][16];
	size_t n = 0;
	for (int q = first_seq; q < first_seq + per_key; q++)
		for (int key = 0; key < keys; key++) {
			int vl = snprintf(vals[n], sizeof(vals[n]), "k%03d:%d", key, q);
			int hl = snprintf(hv[n], sizeof(hv[n]), "%d", q);
			hdrs[n] = (spate_header_t){"n", 1, hv[n], (size_t)hl};
			recs[n] = (spate_push_record_t){.key = vals[n],
			                                .key_len = 4,
			                                .value = vals[n],
			                                .value_len = (size_t)vl,
			                                .headers = &hdrs[n],
			                                .header_cnt = 1};
			if (++n == BATCH) {
				t_require(sk.ops->write(&sk, recs, n, err, sizeof(err)) == SPATE_OK, "%s",
				          err);
				n = 0;
			}
		}
	if (n)
		t_require(sk.ops->write(&sk, recs, n, err, sizeof(err)) == SPATE_OK, "%s", err);
	sk.ops->close(&sk);
	spate_conf_destroy(c);
}

void kt_conf_init(kt_conf_t *cf, t_kin_t *k, const char *stream, const char *dir)
{
	snprintf(cf->store, sizeof(cf->store), "file:%s/ck", dir);
	const char *base[] = {"source",
	                      "kinesis",
	                      "kinesis.stream",
	                      stream,
	                      "kinesis.endpoint",
	                      t_kin_endpoint(k),
	                      "kinesis.region",
	                      T_KIN_REGION,
	                      "store",
	                      cf->store,
	                      "checkpoint.interval.ms",
	                      "100",
	                      "kinesis.idle.ms",
	                      "50",
	                      "kinesis.shard.sync.ms",
	                      "200",
	                      "max.concurrency",
	                      "4",
	                      "batch.size",
	                      "500",
	                      NULL};
	_Static_assert(sizeof(base) <= sizeof(cf->kv), "kt_conf_t.kv is too small");
	memcpy(cf->kv, base, sizeof(base));
}

typedef struct kt_ctx {
	kt_seen_t *s;
	void (*during)(t_during_t *);
	void *arg;
} kt_ctx_t;

static void kt_started(spate_engine_t *e, void *arg)
{
	kt_ctx_t *x = arg;
	pthread_mutex_lock(&x->s->mu);
	x->s->e = e; /* for stop_after */
	pthread_mutex_unlock(&x->s->mu);
}

static void kt_during(t_during_t *d)
{
	kt_ctx_t *x = d->arg;
	d->arg = x->arg;
	x->during(d);
}

spate_handler_t kt_handler(kt_seen_t *s)
{
	return (spate_handler_t){
	    .version = SPATE_HANDLER_VERSION, .name = "kt", .handle = handle, .opaque = s};
}

void kt_run(const kt_conf_t *cf, const char *const *more, kt_seen_t *s, void (*during)(t_during_t *),
            void *arg)
{
	spate_handler_t h = kt_handler(s);
	kt_ctx_t x = {.s = s, .during = during, .arg = arg};
	t_engine_opts_t o = {.conf = cf->kv,
	                     .conf_more = more,
	                     .handler = &h,
	                     .started = kt_started,
	                     .during = during ? kt_during : NULL,
	                     .arg = &x};
	t_run_t r = t_engine_run(&o);
	s->e = NULL;
	cr_assert(r.started, "start: %s", r.err);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
}

void kt_wait_total(kt_seen_t *s, long n, int ms)
{
	int64_t deadline = t_now_ms() + ms;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		long t = s->total;
		pthread_mutex_unlock(&s->mu);
		if (t >= n)
			return;
		t_require(t_now_ms() < deadline, "only %ld of %ld records handled within %d ms", t, n, ms);
		t_sleep_ms(20);
	}
}

void kt_ckpt(const char *dir, const char *name, char *out, size_t size)
{
	char uri[600], err[1024];
	snprintf(uri, sizeof(uri), "file:%s/ck", dir);
	sp_store_t st;
	t_require(sp_store_open_uri_readonly(uri, &st, err, sizeof(err)) == SPATE_OK, "%s", err);
	sp_ckpt_t ck;
	int rc = st.ops->load(&st, name, &ck, err, sizeof(err));
	out[0] = 0;
	if (rc == SPATE_OK)
		sp_ckpt_fmt(&ck, out, size);
	else
		t_require(rc == SPATE_ERR_NOT_FOUND, "%s", err);
	st.ops->close(&st);
}

static unsigned __int128 dec128(const char *s)
{
	unsigned __int128 v = 0;
	for (; *s; s++)
		v = v * 10 + (unsigned)(*s - '0');
	return v;
}

static void fmt128(unsigned __int128 v, char *buf, size_t size)
{
	char tmp[48];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v);
	for (int i = 0; i < n && (size_t)i < size - 1; i++)
		buf[i] = tmp[n - 1 - i];
	buf[(size_t)n < size ? (size_t)n : size - 1] = 0;
}

void kt_mid_hash(const t_shard_t *sh, char *buf, size_t size)
{
	fmt128((dec128(sh->start_hash) + dec128(sh->end_hash)) / 2 + 1, buf, size);
}
