/* test_dynamodb_store.c - store=dynamodb:TABLE against a dynalite started here: round
 * trip in KCL's lease shape, conditional writes on owner and counter, 20 racing
 * acquirers, checkpoints that may not move backwards, a missing table (refused, or
 * created), the table emptied under a running process (store lost), reset and the CLI. */
#include "engine/spi/sp_registry.h"
#include "tests/common/dynalite.h"
#include "tests/common/util.h"
#include "tests/connectors/stores/storetest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const sp_store_ops_t sp_store_dynamodb;

static t_dyn_t *srv;

static void setup(void)
{
	srv = t_dynalite_start();
	t_dyn_create_table(srv, "leases");
}

static void teardown(void)
{
	t_dynalite_fini();
	srv = NULL;
}

static void open_store(sp_store_t *st, const char *table, const char *ns)
{
	stt_open(st, &sp_store_dynamodb, table, ns);
}

static void expect_attr(const char *key, const char *attr, const char *want)
{
	char *v = t_dyn_attr(srv, "leases", key, attr);
	if (!want)
		cr_assert_null(v, "%s.%s is \"%s\", expected none", key, attr, v);
	else
		cr_assert(v && !strcmp(v, want), "%s.%s is \"%s\", expected \"%s\"", key, attr,
		          v ? v : "(none)", want);
	free(v);
}

struct seen_all {
	int n;
	sp_lease_t l;
};

static void on_lease(void *arg, const sp_lease_t *l)
{
	struct seen_all *s = arg;
	s->n++;
	s->l = *l;
}

TestSuite(dynamodb_store, .init = setup, .fini = teardown, .timeout = 120);

/* KCL's lease shape, after the round trip's first save */
static void kcl_shape(sp_store_t *st, void *arg)
{
	(void)st;
	(void)arg;
	expect_attr("rt/log/t/0", "leaseOwner", "a");
	expect_attr("rt/log/t/0", "leaseCounter", "1");
	expect_attr("rt/log/t/0", "checkpoint", "41");
	expect_attr("rt/log/t/0", "checkpointSubSequenceNumber", "0");
	expect_attr("rt/log/t/0", "ownerSwitchesSinceCheckpoint", "0");
}

Test(dynamodb_store, save_load_round_trip)
{
	sp_store_t st;
	stt_round_trip(&st, &sp_store_dynamodb, "leases", "rt", kcl_shape, NULL);
	st.ops->close(&st);
}

Test(dynamodb_store, stale_counter_refused)
{
	sp_store_t a, b;
	open_store(&a, "leases", "st");
	open_store(&b, "leases", "st");
	char err[1400] = "";
	sp_lease_t la, lb;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 60000, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(stt_save1(&a, "p", stt_at(10), "A", la.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	/* a renewal raises the counter (KCL's leaseCounter) */
	uint64_t ca = la.counter;
	cr_assert_eq(a.ops->lease_renew(&a, "p", "A", &ca, 60000, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(ca, la.counter + 1);
	/* B with the counter seen before that renewal, or with no view at all, is refused */
	sp_lease_t seen = {.name = "p", .counter = la.counter};
	snprintf(seen.owner, sizeof(seen.owner), "A");
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &seen, true, 60000, &lb, err, sizeof(err)),
	             SPATE_ERR_LEASE);
	cr_assert(strstr(err, "changed meanwhile"), "%s", err);
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", NULL, true, 60000, &lb, err, sizeof(err)),
	             SPATE_ERR_LEASE);
	/* with the current view B takes it */
	seen.counter = ca;
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &seen, true, 60000, &lb, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_gt(lb.counter, ca);
	cr_assert(lb.has_ckpt && lb.ckpt.after.w[2] == 10, "the new owner sees the checkpoint");
	expect_attr("st/p", "ownerSwitchesSinceCheckpoint", "1");
	/* A's writes with its old counter are refused: checkpoint, renewal, release */
	stt_old_holder_refused(&a, &b, "p", ca, lb.counter);
	expect_attr("st/p", "checkpoint", "20");
	/* a released lease is free (no leaseOwner): taken without stealing, higher counter */
	cr_assert_eq(b.ops->lease_release(&b, "p", "B", lb.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	expect_attr("st/p", "leaseOwner", NULL);
	seen.counter = lb.counter + 1;
	seen.owner[0] = 0;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", &seen, false, 60000, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_gt(la.counter, lb.counter + 1);
	/* every lease is listed with its owner and counter; expiry is the taker's to judge */
	struct seen_all sa = {0};
	cr_assert_eq(b.ops->lease_list(&b, on_lease, &sa, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sa.n, 1);
	cr_assert_str_eq(sa.l.owner, "A");
	cr_assert_eq(sa.l.counter, la.counter);
	cr_assert_eq(sa.l.expired, -1);
	/* a write without a lease is refused by this store */
	stt_bare_save_refused(&a, "p");
	a.ops->close(&a);
	b.ops->close(&b);
}

Test(dynamodb_store, twenty_acquirers_one_wins)
{
	stt_acquirers_one_wins(&sp_store_dynamodb, "leases", "race", "log/t/3", 20);
	expect_attr("race/log/t/3", "leaseCounter", "1");
}

Test(dynamodb_store, missing_table)
{
	char err[1400] = "";
	sp_store_t st = {.ops = &sp_store_dynamodb, .arg = "nosuchtable", .ns = "mt"};
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	cr_assert(strstr(err, "table nosuchtable does not exist") && strstr(err, "dynamodb.create.table"),
	          "%s", err);
	/* a read-only open (checkpoint show) sees an empty store */
	cr_assert_eq(st.ops->open_readonly(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t ck;
	cr_assert_eq(st.ops->load(&st, "p", &ck, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	st.ops->close(&st);
	/* dynamodb.create.table=true creates it and waits until it is ACTIVE */
	spate_conf_t *conf = spate_conf_new();
	cr_assert_eq(spate_conf_set(conf, "dynamodb.create.table", "true", err, sizeof(err)), SPATE_CONF_OK,
	             "%s", err);
	st = (sp_store_t){.ops = &sp_store_dynamodb, .arg = "newtable", .ns = "mt", .conf = conf};
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	st.ops->close(&st);
	/* a table keyed otherwise is not a lease table */
	free(t_dyn_ok(srv, "CreateTable",
	              "{\"TableName\":\"other\",\"AttributeDefinitions\":[{\"AttributeName\":\"id\","
	              "\"AttributeType\":\"S\"}],\"KeySchema\":[{\"AttributeName\":\"id\",\"KeyType\":"
	              "\"HASH\"}],\"BillingMode\":\"PAY_PER_REQUEST\"}"));
	st = (sp_store_t){.ops = &sp_store_dynamodb, .arg = "other", .ns = "mt", .conf = conf};
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "not a lease table"), "%s", err);
	spate_conf_destroy(conf);
	/* bad names and settings are refused, naming the key; the keys are never shown */
	sp_store_t bad;
	cr_assert_eq(sp_store_open_uri("dynamodb:x", &bad, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "table name"), "%s", err);
	setenv("AWS_SECRET_ACCESS_KEY", "has a space", 1);
	cr_assert_eq(sp_store_open_uri("dynamodb:leases", &bad, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "AWS_SECRET_ACCESS_KEY is malformed") && !strstr(err, "has a space"), "%s",
	          err);
}

static void empty_table(void *arg)
{
	t_dyn_empty_table(srv, arg);
}

Test(dynamodb_store, emptied_table_is_store_lost)
{
	sp_store_t st;
	open_store(&st, "leases", "fl");
	stt_wiped_is_store_lost(&st, empty_table, "leases", "dynamodb:leases");
	/* a deleted table is lost too */
	char err[1400] = "";
	free(t_dyn_ok(srv, "DeleteTable", "{\"TableName\":\"leases\"}"));
	cr_assert_eq(st.ops->epoch(&st, err, sizeof(err)), SPATE_ERR_STORE_LOST);
	cr_assert(strstr(err, "the table is gone"), "%s", err);
	st.ops->close(&st);
}

Test(dynamodb_store, reset_writes_a_new_epoch)
{
	stt_reset_writes_new_epoch(&sp_store_dynamodb, "leases", "rs");
}

Test(dynamodb_store, checkpoint_cli)
{
	sp_store_t st;
	open_store(&st, "leases", "clipipe");
	char err[1400] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "log/o/1", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(stt_save1(&st, "log/o/1", stt_at(12), "A", got.counter, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	st.ops->close(&st);
	/* the CLI reads the endpoint from AWS_ENDPOINT_URL_DYNAMODB (t_dynalite_start set it) */
	char *out = NULL, *errs = NULL;
	char *argv[] = {(char *)t_spate_cli(), "checkpoint", "show", "dynamodb:leases",
	                "--pipeline",          "clipipe",    NULL};
	cr_assert_eq(t_run(argv, &out, &errs), 0, "%s", errs ? errs : "");
	cr_assert(out && !strcmp(out, "log/o/1 12\n"), "show printed \"%s\"", out ? out : "");
	free(out);
	free(errs);
	char *argv2[] = {(char *)t_spate_cli(), "checkpoint", "reset",
	                 "dynamodb:leases",     "--pipeline", "clipipe",
	                 "--partition",         "log/o/1",    NULL};
	cr_assert_eq(t_run(argv2, &out, &errs), 0, "%s", errs ? errs : "");
	free(out);
	free(errs);
	cr_assert_eq(t_run(argv, &out, &errs), 0, "%s", errs ? errs : "");
	cr_assert(out && !*out, "show after reset printed \"%s\"", out ? out : "");
	free(out);
	free(errs);
	expect_attr("clipipe/log/o/1", "leaseOwner", NULL);
}
