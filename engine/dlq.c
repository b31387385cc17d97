/* dlq.c - the dead-letter queue: the one builder of a dead letter's spate.* headers, the
 * write (through the test fault hook), and the Corrupt record of a skipped region.
 *
 * A dead letter carries the original key, value and headers, plus spate.id,
 * spate.condition, spate.attempts, spate.source, spate.partition, spate.position (and
 * spate.position.last for a range), spate.first.attempt.ms, spate.last.attempt.ms and
 * spate.error (docs/semantics.md). Both the workers (retry.c: records past their retries
 * or age) and a source skipping a corrupt region build them here.
 */
#include "engine/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *const sp_dlq_conditions[] = {"RetryAttemptsExhausted", "RecordAgeExceeded", "Corrupt",
                                         "MaximumPayloadSizeExceeded"};

size_t sp_dlq_headers(spate_header_t *h, char *vb, size_t vbsize, const sp_dlq_meta_t *m)
{
	size_t hn = 0;
	char *base = vb;
	/* each value is copied into vb, cut to what is left of vbsize */
#define ADD(name, ...)                                                                            \
	do {                                                                                      \
		size_t left_ = vbsize - (size_t)(vb - base);                                      \
		int len_ = left_ ? snprintf(vb, left_, __VA_ARGS__) : 0;                          \
		if (len_ < 0)                                                                     \
			len_ = 0;                                                                 \
		if (left_ && (size_t)len_ >= left_)                                               \
			len_ = (int)left_ - 1;                                                    \
		h[hn++] = (spate_header_t){name, sizeof(name) - 1, vb, (size_t)len_};             \
		vb += len_;                                                                       \
	} while (0)
	ADD("spate.id", "%s/%s", m->partition, m->position);
	ADD("spate.condition", "%s", sp_dlq_conditions[m->condition]);
	ADD("spate.attempts", "%u", m->attempts);
	ADD("spate.source", "%s", m->source);
	ADD("spate.partition", "%s", m->partition);
	ADD("spate.position", "%s", m->position);
	if (m->position_last)
		ADD("spate.position.last", "%s", m->position_last);
	ADD("spate.first.attempt.ms", "%" PRId64, m->first_ms);
	ADD("spate.last.attempt.ms", "%" PRId64, m->last_ms);
	ADD("spate.error", "%.400s", m->error && *m->error ? m->error : "handler failed");
#undef ADD
	return hn;
}

int sp_dlq_write(sp_engine_t *e, const spate_push_record_t *recs, size_t n, char *errstr, size_t size)
{
	int64_t left = atomic_load_explicit(&e->fault_dlq_left, memory_order_relaxed);
	if (left == INT64_MAX || (left > 0 && atomic_fetch_sub(&e->fault_dlq_left, 1) > 0))
		return sp_err(errstr, size, SPATE_ERR_SINK, "injected fault (SPATE_FAULT_DLQ)");
	return e->dlq.ops->write(&e->dlq, recs, n, errstr, size);
}


int sp_engine_dead_letter_range(sp_engine_t *e, sp_part_t *p, const spate_position_t *first,
                                const spate_position_t *last, const char *error, char *errstr, size_t size)
{
	char a[SPATE_POSITION_MAX], b[SPATE_POSITION_MAX], vals[SP_DLQ_VALBYTES];
	spate_position_fmt(first, a, sizeof(a));
	spate_position_fmt(last, b, sizeof(b));
	if (!e->dlq_open) {
		sp_msg(e, SP_MSG_ERROR, "%s: dropped a corrupt region (positions %s..%s): %s (no dlq configured)",
		       p->pub.name, a, b, error);
		atomic_fetch_add_explicit(&e->corrupt_dropped, 1, memory_order_relaxed);
		return SPATE_OK;
	}
	int64_t now = sp_wall_ms();
	sp_dlq_meta_t m = {.condition = SP_DLQ_CORRUPT, .attempts = 0, .source = p->pub.source, .partition = p->pub.name,
	                   .position = a, .position_last = b, .first_ms = now, .last_ms = now, .error = error};
	spate_header_t h[SP_DLQ_HDRS];
	size_t hn = sp_dlq_headers(h, vals, sizeof(vals), &m);
	spate_push_record_t r = {.headers = h, .header_cnt = hn, .timestamp_ms = now};
	int rc = sp_dlq_write(e, &r, 1, errstr, size);
	if (rc == SPATE_OK)
		atomic_fetch_add_explicit(&e->corrupt_dlq, 1, memory_order_relaxed);
	return rc;
}

