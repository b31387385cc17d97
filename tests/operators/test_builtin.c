/* test_builtin.c - tests of operators/builtin.c: noop, sleep, spin, fail-if.
 *
 * create() must refuse bad arguments with a message naming the `handler` key and what
 * is allowed; each handler must return what it promises on a hand-built batch; fail-if
 * must mark exactly the records whose value holds its substring. No timing is asserted.
 */
#include "batch.h"

extern const sp_operator_ops_t sp_op_noop, sp_op_sleep, sp_op_spin, sp_op_fail_if;

/* create must fail with SPATE_ERR_INVALID and an errstr holding every one of words. */
static void refuses(const sp_operator_ops_t *op, const char *arg, const char *w1, const char *w2)
{
	char err[256] = "";
	spate_handler_t h;
	memset(&h, 0x5a, sizeof(h));
	int rc = op->create(arg, NULL, NULL, &h, err, sizeof(err));
	cr_assert_eq(rc, SPATE_ERR_INVALID, "%s:%s was accepted", op->name, arg ? arg : "(null)");
	cr_assert(!strncmp(err, "handler: ", 9), "%s:%s: error does not name the key: %s", op->name, arg,
	          err);
	cr_assert(strstr(err, w1) && (!w2 || strstr(err, w2)), "%s:%s: %s", op->name, arg, err);
}

static void make(const sp_operator_ops_t *op, const char *arg, spate_handler_t *h)
{
	char err[256] = "";
	int rc = op->create(arg, NULL, NULL, h, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "%s:%s: %s", op->name, arg, err);
	cr_assert_eq(h->version, SPATE_HANDLER_VERSION);
	cr_assert_str_eq(h->name, op->name);
	cr_assert_not_null(h->handle);
}

static void drop(const sp_operator_ops_t *op, spate_handler_t *h)
{
	if (op->destroy)
		op->destroy(h);
}

Test(builtin, noop)
{
	refuses(&sp_op_noop, "x", "noop takes no argument", "\"noop:x\"");
	spate_handler_t h;
	make(&sp_op_noop, "", &h);
	tbatch_t t;
	tbatch_init(&t, 3);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(t.b.nfailed, 0);
	tbatch_free(&t);
	drop(&sp_op_noop, &h);
}

Test(builtin, sleep_create_errors)
{
	const char *bad[] = {"", "x", "-1", "+5", " 5", "5 ", "1.5", "3600001", "99999999999999999999", NULL};
	for (int i = 0; bad[i]; i++)
		refuses(&sp_op_sleep, bad[i], "sleep needs a whole number of milliseconds 0..3600000",
		        bad[i]);
	refuses(&sp_op_sleep, NULL, "sleep needs", NULL);
}

Test(builtin, sleep_runs_per_batch)
{
	spate_handler_t h;
	make(&sp_op_sleep, "1", &h);
	tbatch_t t;
	tbatch_init(&t, 5);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(report_value(&sp_op_sleep, &h, "sleep.batches"), 2);
	tbatch_free(&t);
	drop(&sp_op_sleep, &h);
	make(&sp_op_sleep, "3600000", &h); /* the bound itself is allowed */
	drop(&sp_op_sleep, &h);
}

Test(builtin, spin_create_errors)
{
	const char *bad[] = {"", "abc", "-5", "10000001", "1e3", NULL};
	for (int i = 0; bad[i]; i++)
		refuses(&sp_op_spin, bad[i], "spin needs a whole number of microseconds 0..10000000", bad[i]);
}

/* spin busy-loops; only the result and the count are checked, never the time. */
Test(builtin, spin_counts_records)
{
	spate_handler_t h;
	make(&sp_op_spin, "20", &h);
	tbatch_t t;
	tbatch_init(&t, 50);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(t.b.nfailed, 0);
	tbatch_free(&t);
	tbatch_init(&t, 7);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(report_value(&sp_op_spin, &h, "spin.records"), 57);
	tbatch_free(&t);
	drop(&sp_op_spin, &h);
	make(&sp_op_spin, "0", &h);
	tbatch_init(&t, 1000);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(report_value(&sp_op_spin, &h, "spin.records"), 1000);
	tbatch_free(&t);
	drop(&sp_op_spin, &h);
}

Test(builtin, fail_if_create_errors)
{
	refuses(&sp_op_fail_if, "", "fail-if needs a non-empty substring", NULL);
	refuses(&sp_op_fail_if, NULL, "fail-if needs a non-empty substring", NULL);
}

/* Exactly the records whose value contains the substring fail, each with the message. */
Test(builtin, fail_if_marks_exactly_the_matches)
{
	spate_handler_t h;
	make(&sp_op_fail_if, "BAD", &h);
	const char *vals[] = {"ok", "xxBADxx", NULL, "BA", "BAD", "bad", "D BAD", "B", "BABAD", "AD"};
	const bool expect[] = {false, true, false, false, true, false, true, false, true, false};
	const size_t n = sizeof(vals) / sizeof(vals[0]);
	tbatch_t t;
	tbatch_init(&t, n);
	for (size_t i = 0; i < n; i++)
		tbatch_set(&t, i, vals[i]);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_ITEM_FAILURES);
	cr_assert_eq(t.b.nfailed, 4);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(t.failed[i], expect[i], "record %zu (%s)", i, vals[i] ? vals[i] : "null");
		if (expect[i])
			cr_assert_str_eq(tbatch_err(&t, i), "value contains \"BAD\"");
	}
	tbatch_free(&t);

	/* a batch without a match succeeds and marks nothing */
	tbatch_init(&t, 3);
	tbatch_set(&t, 0, "fine");
	tbatch_set(&t, 1, "BA D");
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(t.b.nfailed, 0);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(t.failed[i], 0);
	tbatch_free(&t);
	cr_assert_eq(report_value(&sp_op_fail_if, &h, "fail_if.records"), n + 3);
	cr_assert_eq(report_value(&sp_op_fail_if, &h, "fail_if.failed"), 4);
	drop(&sp_op_fail_if, &h);
}

/* Binary values are searched as bytes, NULs included; the substring may hold ':'. */
Test(builtin, fail_if_binary_values)
{
	spate_handler_t h;
	make(&sp_op_fail_if, "a:b", &h);
	static const char v0[] = {'\0', 'a', ':', 'b', '\0'}, v1[] = {'a', '\0', ':', 'b'};
	tbatch_t t;
	tbatch_init(&t, 2);
	t.recs[0].value = v0;
	t.recs[0].value_len = sizeof(v0);
	t.recs[1].value = v1;
	t.recs[1].value_len = sizeof(v1);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_ITEM_FAILURES);
	cr_assert_eq(t.failed[0], 1);
	cr_assert_eq(t.failed[1], 0);
	cr_assert_str_eq(tbatch_err(&t, 0), "value contains \"a:b\"");
	tbatch_free(&t);
	drop(&sp_op_fail_if, &h);
}

/* The vtables carry the names the handler key uses. */
Test(builtin, names)
{
	cr_assert_str_eq(sp_op_noop.name, "noop");
	cr_assert_str_eq(sp_op_sleep.name, "sleep");
	cr_assert_str_eq(sp_op_spin.name, "spin");
	cr_assert_str_eq(sp_op_fail_if.name, "fail-if");
	cr_assert_eq(sp_op_fail_if.version, SP_OPERATOR_OPS_VERSION);
}
