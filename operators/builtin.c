/* builtin.c - the handlers for benchmarks, tests and demos: noop, sleep, spin, fail-if.
 *
 *  - noop:              does nothing; measures the engine alone.
 *  - sleep:MS           sleeps MS milliseconds per batch: a stand-in for an I/O-bound
 *                       handler (a call to a remote service), which scales with workers.
 *  - spin:US            busy-loops US microseconds per record on the monotonic clock: a
 *                       stand-in for a CPU-bound handler, which scales with cores.
 *  - fail-if:SUBSTRING  fails every record whose value contains SUBSTRING (as a batch
 *                       item failure), for tests of retries, bisection and the DLQ.
 *
 * create() checks the argument and names the `handler` key and what is allowed. Each
 * handler counts what it did with one relaxed atomic add per batch (never per record)
 * and report() prints those counts as `name value` lines.
 */
#include "sp_spi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest sleep:MS (one hour), as for the engine's other millisecond keys. */
#define SLEEP_MS_MAX 3600000
/* Largest spin:US (ten seconds per record); beyond it a batch would outlive any
 * reasonable shutdown.timeout.ms. */
#define SPIN_US_MAX 10000000
/* Multiply-adds between two clock reads in spin, so the loop mostly computes. */
#define SPIN_WORK_STEPS 64

/* A whole decimal number 0..max with no sign, spaces or suffix; -1 otherwise. */
static int64_t parse_whole(const char *s, int64_t max)
{
	if (!s || !*s)
		return -1;
	int64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > max)
			return -1;
	}
	return v;
}

static void fill(spate_handler_t *h, const char *name, int (*handle)(void *, void *, spate_batch_t *),
                 void *opaque)
{
	memset(h, 0, sizeof(*h));
	h->version = SPATE_HANDLER_VERSION;
	h->name = name;
	h->handle = handle;
	h->opaque = opaque;
}

static void free_opaque(spate_handler_t *h)
{
	free(h->opaque);
	h->opaque = NULL;
}

/* ---- noop ---------------------------------------------------------------------------- */

static int noop_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	return SPATE_HANDLER_OK;
}

static int noop_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                       char *err, size_t sz)
{
	if (arg && *arg)
		return sp_err(err, sz, SPATE_ERR_INVALID, "handler: noop takes no argument, got \"noop:%s\"",
		              arg);
	fill(h, "noop", noop_handle, NULL);
	return SPATE_OK;
}

const sp_operator_ops_t sp_op_noop = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "noop",
    .desc = "does nothing (measures the engine alone)",
    .syntax = "noop",
    .create = noop_create,
    .ignores_headers = true,
};

/* ---- sleep:MS ------------------------------------------------------------------------- */

typedef struct sleep_op {
	struct timespec ts;
	_Atomic uint64_t batches;
} sleep_op_t;

static int sleep_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	sleep_op_t *o = opaque;
	struct timespec left = o->ts;
	/* a signal cuts the sleep short: sleep what is left */
	while (nanosleep(&left, &left) < 0 && errno == EINTR)
		;
	atomic_fetch_add_explicit(&o->batches, 1, memory_order_relaxed);
	return SPATE_HANDLER_OK;
}

static int sleep_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                        char *err, size_t sz)
{
	int64_t ms = parse_whole(arg, SLEEP_MS_MAX);
	if (ms < 0)
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "handler: sleep needs a whole number of milliseconds 0..%d (sleep:MS), got \"%s\"",
		    SLEEP_MS_MAX, arg ? arg : "");
	sleep_op_t *o = calloc(1, sizeof(*o));
	if (!o)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	o->ts.tv_sec = (time_t)(ms / 1000);
	o->ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	fill(h, "sleep", sleep_handle, o);
	return SPATE_OK;
}

static void sleep_report(spate_handler_t *h, FILE *fp)
{
	sleep_op_t *o = h->opaque;
	fprintf(fp, "sleep.batches %" PRIu64 "\n", atomic_load(&o->batches));
}

const sp_operator_ops_t sp_op_sleep = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "sleep",
    .desc = "sleep:MS sleeps MS milliseconds per batch (an I/O-bound stand-in)",
    .syntax = "sleep:MS",
    .create = sleep_create,
    .ignores_headers = true,
    .destroy = free_opaque,
    .report = sleep_report,
};

/* ---- spin:US -------------------------------------------------------------------------- */

typedef struct spin_op {
	int64_t ns_per_record;
	_Atomic uint64_t records;
} spin_op_t;

static int spin_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	spin_op_t *o = opaque;
	size_t n = spate_batch_count(b);
	/* One deadline for the batch: n records' worth of busy time, without the overshoot
	 * that n separate waits would add up. clock_gettime is a vDSO call, no syscall. */
	int64_t deadline = sp_now_ns() + (int64_t)n * o->ns_per_record;
	uint64_t x = (uint64_t)n | 1;
	while (sp_now_ns() < deadline)
		for (int k = 0; k < SPIN_WORK_STEPS; k++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	/* keep the work observable so the compiler cannot drop it */
	__asm__ volatile("" : : "r"(x) : "memory");
	atomic_fetch_add_explicit(&o->records, n, memory_order_relaxed);
	return SPATE_HANDLER_OK;
}

static int spin_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                       char *err, size_t sz)
{
	int64_t us = parse_whole(arg, SPIN_US_MAX);
	if (us < 0)
		return sp_err(
		    err, sz, SPATE_ERR_INVALID,
		    "handler: spin needs a whole number of microseconds 0..%d (spin:US), got \"%s\"",
		    SPIN_US_MAX, arg ? arg : "");
	spin_op_t *o = calloc(1, sizeof(*o));
	if (!o)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	o->ns_per_record = us * 1000;
	fill(h, "spin", spin_handle, o);
	return SPATE_OK;
}

static void spin_report(spate_handler_t *h, FILE *fp)
{
	spin_op_t *o = h->opaque;
	fprintf(fp, "spin.records %" PRIu64 "\n", atomic_load(&o->records));
}

const sp_operator_ops_t sp_op_spin = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "spin",
    .desc = "spin:US busy-loops US microseconds per record (a CPU-bound stand-in)",
    .syntax = "spin:US",
    .create = spin_create,
    .ignores_headers = true,
    .destroy = free_opaque,
    .report = spin_report,
};

/* ---- fail-if:SUBSTRING ------------------------------------------------------------------ */

typedef struct fail_if_op {
	_Atomic uint64_t records, failed;
	size_t len;
	char *msg;  /* "value contains \"SUBSTRING\"", made once */
	char sub[]; /* the substring, len bytes and a NUL */
} fail_if_op_t;

static int fail_if_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	fail_if_op_t *o = opaque;
	size_t n = spate_batch_count(b);
	const spate_record_t *const *recs = spate_batch_records(b);
	uint64_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		const spate_record_t *r = recs[i];
		if (r->value && r->value_len >= o->len && memmem(r->value, r->value_len, o->sub, o->len)) {
			spate_batch_fail_item(b, i, o->msg);
			failed++;
		}
	}
	atomic_fetch_add_explicit(&o->records, n, memory_order_relaxed);
	if (!failed)
		return SPATE_HANDLER_OK;
	atomic_fetch_add_explicit(&o->failed, failed, memory_order_relaxed);
	return SPATE_HANDLER_ITEM_FAILURES;
}

static int fail_if_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                          char *err, size_t sz)
{
	if (!arg || !*arg)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "handler: fail-if needs a non-empty substring (fail-if:SUBSTRING), got \"\"");
	size_t len = strlen(arg);
	fail_if_op_t *o = calloc(1, sizeof(*o) + len + 1);
	int ml = snprintf(NULL, 0, "value contains \"%s\"", arg);
	if (o)
		o->msg = malloc((size_t)ml + 1);
	if (!o || !o->msg) {
		free(o);
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	}
	snprintf(o->msg, (size_t)ml + 1, "value contains \"%s\"", arg);
	memcpy(o->sub, arg, len + 1);
	o->len = len;
	fill(h, "fail-if", fail_if_handle, o);
	return SPATE_OK;
}

static void fail_if_destroy(spate_handler_t *h)
{
	fail_if_op_t *o = h->opaque;
	if (o)
		free(o->msg);
	free_opaque(h);
}

static void fail_if_report(spate_handler_t *h, FILE *fp)
{
	fail_if_op_t *o = h->opaque;
	fprintf(fp, "fail_if.records %" PRIu64 "\nfail_if.failed %" PRIu64 "\n", atomic_load(&o->records),
	        atomic_load(&o->failed));
}

const sp_operator_ops_t sp_op_fail_if = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "fail-if",
    .desc = "fail-if:SUBSTRING fails every record whose value contains SUBSTRING",
    .syntax = "fail-if:SUBSTRING",
    .create = fail_if_create,
    .ignores_headers = true,
    .destroy = fail_if_destroy,
    .report = fail_if_report,
};
