/* batch.h - hand-built batches and report parsing for the operator tests.
 *
 * A worker hands a handler a struct spate_batch (engine/engine.h) whose item failures
 * land in the worker's scratch arrays; tbatch_t builds the same thing without an
 * engine, so a handler's handle() can be called directly and its item failures read
 * back exactly.
 */
#ifndef SPATE_TESTS_OPERATORS_BATCH_H
#define SPATE_TESTS_OPERATORS_BATCH_H

#include "engine/engine.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tbatch {
	struct spate_batch b;
	sp_worker_t *w;
	spate_record_t *recs;
	const spate_record_t **ptrs;
	uint8_t *failed;
	spate_partition_t part;
} tbatch_t;

/* A batch of n records at positions 0..n-1, every value NULL until tbatch_set. */
static inline void tbatch_init(tbatch_t *t, size_t n)
{
	memset(t, 0, sizeof(*t));
	size_t wsz = (sizeof(sp_worker_t) + 63) / 64 * 64;
	t->w = aligned_alloc(64, wsz);
	cr_assert_not_null(t->w);
	memset(t->w, 0, wsz);
	t->w->item_err = calloc(n + 1, sizeof(uint32_t));
	t->recs = calloc(n + 1, sizeof(*t->recs));
	t->ptrs = calloc(n + 1, sizeof(*t->ptrs));
	t->failed = calloc(n + 1, 1);
	cr_assert(t->w->item_err && t->recs && t->ptrs && t->failed);
	t->part = (spate_partition_t){"test", "t", 0, NULL, "test/t/0"};
	for (size_t i = 0; i < n; i++) {
		t->recs[i].version = SPATE_RECORD_VERSION;
		t->recs[i].partition = &t->part;
		t->recs[i].position.w[2] = i;
		t->ptrs[i] = &t->recs[i];
	}
	t->b.recs = t->ptrs;
	t->b.n = n;
	t->b.failed = t->failed;
	t->b.w = t->w;
}

/* Record i's value: a string (without its NUL), or NULL for a null value. */
static inline void tbatch_set(tbatch_t *t, size_t i, const char *value)
{
	t->recs[i].value = value;
	t->recs[i].value_len = value ? strlen(value) : 0;
}

/* The message of failed item i, or NULL when it has none. */
static inline const char *tbatch_err(const tbatch_t *t, size_t i)
{
	uint32_t off = t->w->item_err[i];
	return off == UINT32_MAX || !t->w->errbuf ? NULL : t->w->errbuf + off;
}

static inline void tbatch_free(tbatch_t *t)
{
	free(t->w->item_err);
	free(t->w->errbuf);
	free(t->w);
	free(t->recs);
	free(t->ptrs);
	free(t->failed);
}

/* The value of line "name value" in what report() printed; aborts the test when absent. */
static inline unsigned long long report_value(const sp_operator_ops_t *op, spate_handler_t *h,
                                              const char *name)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	cr_assert_not_null(fp);
	op->report(h, fp);
	fclose(fp);
	size_t nl = strlen(name);
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n');
		cr_assert_not_null(end, "report line without a newline: %s", line);
		if (!strncmp(line, name, nl) && line[nl] == ' ') {
			char *num_end;
			unsigned long long v = strtoull(line + nl + 1, &num_end, 10);
			cr_assert_eq(num_end, end, "report line is not `name integer`: %.*s",
			             (int)(end - line), line);
			free(text);
			return v;
		}
		line = end + 1;
	}
	cr_assert_fail("report has no line %s:\n%s", name, text);
	free(text);
	return 0;
}

#endif
