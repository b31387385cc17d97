/* test_redis_store.c - store=redis:// against a redis-server started here (AOF,
 * appendfsync always): round trip, conditional writes on owner and counter, 20 racing
 * acquirers, checkpoints that may not move backwards, the epoch marker after FLUSHALL,
 * a server restart, AUTH, and what is refused (bad URIs, the file store's leases). */
#include "engine/spi/sp_registry.h"
#include "tests/common/redis.h"
#include "tests/common/util.h"
#include "tests/connectors/stores/storetest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const sp_store_ops_t sp_store_redis, sp_store_file;

static t_redis_t srv;

static void setup(void)
{
	t_redis_start(&srv);
}

static void teardown(void)
{
	t_redis_stop(&srv);
}

static void open_store(sp_store_t *st, const char *uri, const char *ns)
{
	stt_open(st, &sp_store_redis, uri, ns);
}

TestSuite(redis_store, .init = setup, .fini = teardown, .timeout = 120);

Test(redis_store, save_load_round_trip)
{
	sp_store_t st;
	stt_round_trip(&st, &sp_store_redis, srv.uri, "rt", NULL, NULL);
	/* the key carries the partition in a {hash tag} */
	char *v = t_redis_cmd(&srv, "HGET spate:rt:{log/t/0} owner");
	cr_assert(v && !strcmp(v, "a"), "%s", v ? v : "(null)");
	free(v);
	st.ops->close(&st);
}

Test(redis_store, stale_counter_refused)
{
	sp_store_t a, b;
	open_store(&a, srv.uri, "st");
	open_store(&b, srv.uri, "st");
	char err[600] = "";
	sp_lease_t la, lb;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 60000, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(stt_save1(&a, "p", stt_at(10), "A", la.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	/* B may not take a live lease without stealing; with a stale view it may not steal */
	sp_lease_t seen = {.name = "p", .counter = la.counter};
	snprintf(seen.owner, sizeof(seen.owner), "A");
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &seen, false, 60000, &lb, err, sizeof(err)),
	             SPATE_ERR_LEASE);
	sp_lease_t stale = seen;
	stale.counter = 0;
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &stale, true, 60000, &lb, err, sizeof(err)),
	             SPATE_ERR_LEASE);
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &seen, true, 60000, &lb, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_gt(lb.counter, la.counter);
	cr_assert(lb.has_ckpt && lb.ckpt.after.w[2] == 10, "the new owner sees the checkpoint");
	/* A's writes with its old counter are refused: checkpoint, renewal, release */
	stt_old_holder_refused(&a, &b, "p", la.counter, lb.counter);
	uint64_t c = lb.counter;
	cr_assert_eq(b.ops->lease_renew(&b, "p", "B", &c, 60000, err, sizeof(err)), SPATE_OK, "%s", err);
	/* a released lease is free: taken without stealing, with a higher counter */
	cr_assert_eq(b.ops->lease_release(&b, "p", "B", lb.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	seen.counter = lb.counter;
	seen.owner[0] = 0;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", &seen, false, 60000, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_gt(la.counter, lb.counter);
	/* a write without a lease is refused by this store */
	stt_bare_save_refused(&a, "p");
	a.ops->close(&a);
	b.ops->close(&b);
}

Test(redis_store, expired_lease_taken_without_steal)
{
	sp_store_t a;
	open_store(&a, srv.uri, "ex");
	char err[600] = "";
	sp_lease_t la, lb;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 300, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	t_sleep_ms(700); /* the server's clock passes the expiry */
	sp_lease_t seen = {.name = "p", .counter = la.counter};
	snprintf(seen.owner, sizeof(seen.owner), "A");
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "B", &seen, false, 60000, &lb, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	a.ops->close(&a);
}

Test(redis_store, twenty_acquirers_one_wins)
{
	stt_acquirers_one_wins(&sp_store_redis, srv.uri, "race", "log/t/3", 20);
	char *v = t_redis_cmd(&srv, "HGET spate:race:{log/t/3} token");
	cr_assert(v && !strcmp(v, "1"), "token %s", v ? v : "(null)");
	free(v);
}

static void flushall(void *arg)
{
	(void)arg;
	free(t_redis_cmd(&srv, "FLUSHALL"));
}

Test(redis_store, flushall_is_store_lost)
{
	sp_store_t st;
	open_store(&st, srv.uri, "fl");
	stt_wiped_is_store_lost(&st, flushall, NULL, srv.uri);
	st.ops->close(&st);
}

Test(redis_store, reset_writes_a_new_epoch)
{
	stt_reset_writes_new_epoch(&sp_store_redis, srv.uri, "rs");
}

Test(redis_store, server_restart_keeps_checkpoints)
{
	sp_store_t st;
	open_store(&st, srv.uri, "rr");
	char err[600] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK);
	cr_assert_eq(stt_save1(&st, "p", stt_at(77), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s",
	             err);
	free(t_redis_cmd(&srv, "EVAL %s 0",
	                 "for i=1,5000 do redis.call('SET','filler:'..i,'x') end return 1"));
	t_redis_restart(&srv, false);
	cr_assert_eq(stt_save1(&st, "p", stt_at(78), "A", got.counter, err, sizeof(err)), SPATE_ERR_STORE,
	             "a write while the server is down is a transient error");
	/* the restarted server reads its AOF slowly (5,000 filler keys, 50 us each: about
	 * 0.5 s, answering clients every 1,024 keys): the store's first command meets LOADING
	 * and waits it out (up to redis.timeout.ms, 2 s); it used to fail at once */
	srv.key_load_delay_us = 50;
	t_redis_restart(&srv, true);
	srv.key_load_delay_us = 0;
	/* (not asserted: a test process starved for the whole load would miss it) */
	char *info = t_redis_cmd(&srv, "INFO persistence");
	if (!info || !strstr(info, "loading:1"))
		cr_log_warn("the restarted server had loaded its AOF before the store asked");
	free(info);
	/* the same store instance reconnects; the AOF kept the checkpoint, lease and epoch */
	cr_assert_eq(st.ops->epoch(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_ckpt_t ck;
	cr_assert_eq(st.ops->load(&st, "p", &ck, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(ck.after.w[2], 77);
	cr_assert_eq(stt_save1(&st, "p", stt_at(79), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s",
	             err);
	st.ops->close(&st);
}

Test(redis_store, auth_and_uri)
{
	free(t_redis_cmd(&srv, "ACL SETUSER spate on >s3cret ~* +@all"));
	free(t_redis_cmd(&srv, "CONFIG SET requirepass topsecret"));
	char uri[200], err[600] = "";
	sp_store_t st = {.ops = &sp_store_redis, .arg = srv.uri, .ns = "au"};
	cr_assert_neq(st.ops->open(&st, err, sizeof(err)), SPATE_OK, "no password: refused");
	snprintf(uri, sizeof(uri), "redis://spate:wrong@127.0.0.1:%d", srv.port);
	st.arg = uri;
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(!strstr(err, "wrong"), "the password is not in the error: %s", err);
	snprintf(uri, sizeof(uri), "redis://spate:s3cret@127.0.0.1:%d/3", srv.port);
	st.arg = uri;
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK);
	st.ops->close(&st);
	snprintf(uri, sizeof(uri), "redis://topsecret@127.0.0.1:%d/3", srv.port);
	st.arg = uri;
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.ops->load(&st, "p", &(sp_ckpt_t){0}, err, sizeof(err)), SPATE_ERR_NOT_FOUND,
	             "db 3 holds the lease but no checkpoint");
	st.ops->close(&st);
}

Test(redis_store, refused_uris)
{
	char err[600] = "";
	sp_store_t st;
	/* rediss:// is TLS (test_redis_tls.c); nothing listens on port 1 */
	cr_assert_eq(sp_store_open_uri("rediss://127.0.0.1:1", &st, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "rediss://127.0.0.1:1/0") && strstr(err, "cannot connect"), "%s", err);
	cr_assert_eq(sp_store_open_uri("rediss://127.0.0.1:bad", &st, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "rediss://127.0.0.1: bad port"), "%s", err);
	cr_assert_eq(sp_store_open_uri("redis://127.0.0.1:notaport", &st, err, sizeof(err)),
	             SPATE_ERR_INVALID);
	cr_assert(strstr(err, "bad port"), "%s", err);
	cr_assert_eq(sp_store_open_uri("redis:127.0.0.1:1", &st, err, sizeof(err)), SPATE_ERR_INVALID);
}

Test(redis_store, file_store_refuses_leases)
{
	char dir[256], path[300], err[600] = "";
	t_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "file:%s/ck", dir);
	sp_store_t st;
	cr_assert_eq(sp_store_open_uri(path, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert(!st.ops->leases);
	sp_store_entry_t e = {.name = "p", .ckpt = stt_at(1), .owner = "A", .counter = 1};
	cr_assert_eq(st.ops->save(&st, &e, 1, err, sizeof(err)), SPATE_ERR_UNSUPPORTED);
	cr_assert(strstr(err, "keeps no leases"), "%s", err);
	st.ops->close(&st);
	t_rmrf(dir);
}

Test(redis_store, checkpoint_cli_reads_a_pipeline)
{
	sp_store_t st;
	open_store(&st, srv.uri, "clipipe");
	char err[600] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "log/o/1", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK);
	cr_assert_eq(stt_save1(&st, "log/o/1", stt_at(12), "A", got.counter, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	st.ops->close(&st);
	char *out = NULL, *errs = NULL;
	char *argv[] = {(char *)t_spate_cli(), "checkpoint", "show", srv.uri, "--pipeline", "clipipe", NULL};
	cr_assert_eq(t_run(argv, &out, &errs), 0, "%s", errs ? errs : "");
	cr_assert(out && !strcmp(out, "log/o/1 12\n"), "show printed \"%s\"", out ? out : "");
	free(out);
	free(errs);
	char *argv2[] = {(char *)t_spate_cli(), "checkpoint", "show", srv.uri, NULL};
	cr_assert_eq(t_run(argv2, &out, &errs), 0);
	cr_assert(out && !*out, "another pipeline's checkpoints were shown: \"%s\"", out ? out : "");
	free(out);
	free(errs);
}
