/* test_dynamodb_store.c - store=dynamodb:TABLE against a dynalite started here: round
 * trip in KCL's lease shape, conditional writes on owner and counter, 20 racing
 * acquirers, checkpoints that may not move backwards, a missing table (refused, or
 * created), the table emptied under a running process (store lost), reset and the CLI. */
#include "engine/spi/sp_registry.h"
#include "tests/common/dynalite.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <pthread.h>
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
	memset(st, 0, sizeof(*st));
	st->ops = &sp_store_dynamodb;
	st->arg = table;
	st->ns = ns;
	char err[1400] = "";
	cr_assert_eq(st->ops->open(st, err, sizeof(err)), SPATE_OK, "open %s: %s", table, err);
}

static sp_ckpt_t at(uint64_t off)
{
	sp_ckpt_t c = {.beginning = false, .after = sp_pos(off)};
	return c;
}

static int save1(sp_store_t *st, const char *name, sp_ckpt_t ck, const char *owner, uint64_t counter,
                 char *err, size_t sz)
{
	int rc = -999;
	sp_store_entry_t e = {.name = name, .ckpt = ck, .owner = owner, .counter = counter, .rc = &rc};
	int r = st->ops->save(st, &e, 1, err, sz);
	cr_assert_eq(r, rc, "save's result %d and the entry's %d differ", r, rc);
	return r;
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

Test(dynamodb_store, save_load_round_trip)
{
	sp_store_t st;
	open_store(&st, "leases", "rt");
	char err[1400] = "";
	sp_ckpt_t ck;
	cr_assert_eq(st.ops->load(&st, "log/t/0", &ck, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "log/t/0", "a", NULL, false, 10000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(got.counter, 1);
	cr_assert(!got.has_ckpt);
	cr_assert_eq(save1(&st, "log/t/0", at(41), "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	/* KCL's lease shape */
	expect_attr("rt/log/t/0", "leaseOwner", "a");
	expect_attr("rt/log/t/0", "leaseCounter", "1");
	expect_attr("rt/log/t/0", "checkpoint", "41");
	expect_attr("rt/log/t/0", "checkpointSubSequenceNumber", "0");
	expect_attr("rt/log/t/0", "ownerSwitchesSinceCheckpoint", "0");
	sp_ckpt_t beg = {.beginning = true};
	cr_assert_eq(save1(&st, "log/t/0", beg, "a", 1, err, sizeof(err)), SPATE_ERR_INVALID,
	             "a checkpoint moved back to the beginning");
	/* wide positions compare as big numbers, not as text */
	sp_ckpt_t wide = {.after = {{1, 0, 5}}};
	cr_assert_eq(save1(&st, "log/t/0", wide, "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(save1(&st, "log/t/0", at(UINT64_MAX - 1), "a", 1, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "before the stored one"), "%s", err);
	/* the same position again is fine (a repeated write) */
	cr_assert_eq(save1(&st, "log/t/0", wide, "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	st.ops->close(&st);

	/* another store instance (a restarted process) reads what was saved */
	open_store(&st, "leases", "rt");
	cr_assert_eq(st.ops->load(&st, "log/t/0", &ck, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert(!ck.beginning);
	cr_assert_eq(spate_position_cmp(&ck.after, &wide.after), 0);
	/* another namespace (pipeline) does not see it */
	sp_store_t other;
	open_store(&other, "leases", "other");
	cr_assert_eq(other.ops->load(&other, "log/t/0", &ck, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	other.ops->close(&other);
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
	cr_assert_eq(save1(&a, "p", at(10), "A", la.counter, err, sizeof(err)), SPATE_OK, "%s", err);
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
	cr_assert_eq(save1(&a, "p", at(20), "A", ca, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert(strstr(err, "no longer holds"), "%s", err);
	uint64_t c = ca;
	cr_assert_eq(a.ops->lease_renew(&a, "p", "A", &c, 60000, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert_eq(a.ops->lease_release(&a, "p", "A", ca, err, sizeof(err)), SPATE_ERR_LEASE);
	/* a write naming B with A's counter is refused too: owner and counter both count */
	cr_assert_eq(save1(&a, "p", at(20), "B", ca, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert_eq(save1(&b, "p", at(20), "B", lb.counter, err, sizeof(err)), SPATE_OK, "%s", err);
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
	sp_store_entry_t bare = {.name = "p", .ckpt = at(30)};
	cr_assert_eq(a.ops->save(&a, &bare, 1, err, sizeof(err)), SPATE_ERR_INVALID);
	a.ops->close(&a);
	b.ops->close(&b);
}

struct racer {
	int id;
	int rc;
	pthread_barrier_t *bar;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	sp_store_t st = {.ops = &sp_store_dynamodb, .arg = "leases", .ns = "race"};
	char err[1400];
	if (st.ops->open(&st, err, sizeof(err))) {
		r->rc = -1000;
		pthread_barrier_wait(r->bar);
		return NULL;
	}
	char owner[32];
	snprintf(owner, sizeof(owner), "racer-%d", r->id);
	sp_lease_t got;
	pthread_barrier_wait(r->bar);
	r->rc = st.ops->lease_acquire(&st, "log/t/3", owner, NULL, false, 60000, &got, err, sizeof(err));
	st.ops->close(&st);
	return NULL;
}

Test(dynamodb_store, twenty_acquirers_one_wins)
{
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 20);
	pthread_t th[20];
	struct racer rs[20];
	for (int i = 0; i < 20; i++) {
		rs[i] = (struct racer){.id = i, .rc = -999, .bar = &bar};
		cr_assert_eq(pthread_create(&th[i], NULL, race, &rs[i]), 0);
	}
	int won = 0, lost = 0;
	for (int i = 0; i < 20; i++) {
		pthread_join(th[i], NULL);
		if (rs[i].rc == SPATE_OK)
			won++;
		else if (rs[i].rc == SPATE_ERR_LEASE)
			lost++;
	}
	pthread_barrier_destroy(&bar);
	cr_assert_eq(won, 1, "%d acquirers won", won);
	cr_assert_eq(lost, 19);
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

Test(dynamodb_store, emptied_table_is_store_lost)
{
	sp_store_t st;
	open_store(&st, "leases", "fl");
	char err[1400] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(save1(&st, "p", at(5), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.ops->epoch(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	t_dyn_empty_table(srv, "leases");
	cr_assert_eq(st.ops->epoch(&st, err, sizeof(err)), SPATE_ERR_STORE_LOST);
	cr_assert(strstr(err, "dynamodb:leases") && strstr(err, "lost its data"), "%s", err);
	cr_assert_eq(save1(&st, "p", at(6), "A", got.counter, err, sizeof(err)), SPATE_ERR_STORE_LOST, "%s",
	             err);
	uint64_t c = got.counter;
	cr_assert_eq(st.ops->lease_renew(&st, "p", "A", &c, 60000, err, sizeof(err)), SPATE_ERR_STORE_LOST);
	/* a deleted table is lost too */
	free(t_dyn_ok(srv, "DeleteTable", "{\"TableName\":\"leases\"}"));
	cr_assert_eq(st.ops->epoch(&st, err, sizeof(err)), SPATE_ERR_STORE_LOST);
	cr_assert(strstr(err, "the table is gone"), "%s", err);
	st.ops->close(&st);
}

Test(dynamodb_store, reset_writes_a_new_epoch)
{
	sp_store_t a, b;
	open_store(&a, "leases", "rs");
	open_store(&b, "leases", "rs");
	char err[1400] = "";
	sp_lease_t got;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 60000, &got, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(b.ops->reset(&b, "q", err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	cr_assert_eq(b.ops->reset(&b, NULL, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(a.ops->epoch(&a, err, sizeof(err)), SPATE_ERR_STORE_LOST,
	             "a reset under a running process");
	cr_assert_eq(b.ops->epoch(&b, err, sizeof(err)), SPATE_OK, "%s", err);
	a.ops->close(&a);
	b.ops->close(&b);
}

Test(dynamodb_store, checkpoint_cli)
{
	sp_store_t st;
	open_store(&st, "leases", "clipipe");
	char err[1400] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "log/o/1", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(save1(&st, "log/o/1", at(12), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
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
