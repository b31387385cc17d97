/* test_redis_tls.c - store=rediss:// against a redis-server with a TLS port, started here
 * with certificates made for the test (a CA, the server's for IP 127.0.0.1 only, a
 * client's): checkpoints and leases over TLS with a client certificate, AUTH over TLS,
 * every refusal naming its cause (an untrusted CA, a name the certificate does not hold,
 * no client certificate, TLS to a plain port), a reconnect after a server restart, and a
 * pipeline run from the command line (`spate run`, `spate checkpoint show -X`). */
#include "engine/spi/sp_registry.h"
#include "tests/common/redis.h"
#include "tests/common/util.h"
#include "tests/connectors/stores/storetest.h"

#include <criterion/criterion.h>
#include <spate/spate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const sp_store_ops_t sp_store_rediss;

static t_redis_t srv;
static spate_conf_t *conf;

/* key = dir/file */
static void set(spate_conf_t *c, const char *key, const char *dir, const char *file)
{
	char v[600], err[600];
	snprintf(v, sizeof(v), "%s/%s", dir, file);
	cr_assert_eq(spate_conf_set(c, key, v, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
}

/* A conf with redis.tls.ca = the test CA, and the client's certificate and key when
 * with_cert; redis.timeout.ms 2000. */
static spate_conf_t *tls_conf(bool with_cert)
{
	spate_conf_t *c = spate_conf_new();
	cr_assert(c);
	set(c, "redis.tls.ca", srv.tls_dir, "ca.crt");
	if (with_cert) {
		set(c, "redis.tls.cert", srv.tls_dir, "client.crt");
		set(c, "redis.tls.key", srv.tls_dir, "client.key");
	}
	return c;
}

static void setup(void)
{
	t_redis_start_tls(&srv, true); /* Redis' default: clients show a certificate */
	conf = tls_conf(true);
	stt_conf = conf;
}

static void teardown(void)
{
	stt_conf = NULL;
	spate_conf_destroy(conf);
	conf = NULL;
	t_redis_stop(&srv);
}

TestSuite(redis_tls, .init = setup, .fini = teardown, .timeout = 120);

Test(redis_tls, checkpoints_and_leases_over_tls_with_a_client_certificate)
{
	sp_store_t st;
	stt_round_trip(&st, &sp_store_rediss, srv.tls_uri, "rt", NULL, NULL);
	st.ops->close(&st);
	/* what went over TLS is in the server, as the plain store writes it */
	char *v = t_redis_cmd(&srv, "HGET spate:rt:{log/t/0} owner");
	cr_assert(v && !strcmp(v, "a"), "owner %s", v ? v : "(null)");
	free(v);
	/* twenty connections handshaking at once, from twenty threads: one acquire wins */
	stt_acquirers_one_wins(&sp_store_rediss, srv.tls_uri, "race", "log/t/3", 20);
	v = t_redis_cmd(&srv, "HGET spate:race:{log/t/3} token");
	cr_assert(v && !strcmp(v, "1"), "token %s", v ? v : "(null)");
	free(v);
	/* an old holder's writes are refused over TLS as over TCP */
	sp_store_t a, b;
	stt_open(&a, &sp_store_rediss, srv.tls_uri, "old");
	stt_open(&b, &sp_store_rediss, srv.tls_uri, "old");
	char err[600] = "";
	sp_lease_t la, lb;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 60000, &la, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	sp_lease_t seen = {.name = "p", .counter = la.counter};
	snprintf(seen.owner, sizeof(seen.owner), "A");
	cr_assert_eq(b.ops->lease_acquire(&b, "p", "B", &seen, true, 60000, &lb, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	stt_old_holder_refused(&a, &b, "p", la.counter, lb.counter);
	a.ops->close(&a);
	b.ops->close(&b);
}

/* Open arg with c; returns the result, the error in err. */
static int try_open(const char *arg, const spate_conf_t *c, char *err, size_t size)
{
	sp_store_t st = {.ops = &sp_store_rediss, .arg = arg, .ns = "x", .conf = c};
	err[0] = 0;
	int rc = st.ops->open(&st, err, size);
	if (rc == SPATE_OK)
		st.ops->close(&st);
	return rc;
}

Test(redis_tls, auth_over_tls_never_shows_the_password)
{
	free(t_redis_cmd(&srv, "CONFIG SET requirepass topsecret"));
	char uri[200], err[600];
	cr_assert_eq(try_open(srv.tls_uri, conf, err, sizeof(err)), SPATE_ERR_STORE, "no password: refused");
	snprintf(uri, sizeof(uri), "rediss://wrongpass@127.0.0.1:%d", srv.tls_port);
	cr_assert_eq(try_open(uri, conf, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "AUTH refused"), "%s", err);
	cr_assert(!strstr(err, "wrongpass"), "the password is not in the error: %s", err);
	snprintf(uri, sizeof(uri), "rediss://topsecret@127.0.0.1:%d/2", srv.tls_port);
	sp_store_t st;
	stt_open(&st, &sp_store_rediss, uri, "au");
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(stt_save1(&st, "p", stt_at(9), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	st.ops->close(&st);
}

Test(redis_tls, each_refusal_names_its_cause)
{
	char err[600], uri[200];
	/* the system's CAs do not know the test CA */
	spate_conf_t *none = spate_conf_new();
	cr_assert_eq(try_open(srv.tls_uri, none, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "not trusted") && strstr(err, srv.tls_uri + 9), "%s", err);
	/* another CA */
	set(none, "redis.tls.ca", srv.tls_dir, "other-ca.crt");
	cr_assert_eq(try_open(srv.tls_uri, none, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "not trusted"), "%s", err);
	/* a CA file that is not there */
	set(none, "redis.tls.ca", srv.tls_dir, "missing.crt");
	cr_assert_eq(try_open(srv.tls_uri, none, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "redis.tls.ca") && strstr(err, "missing.crt"), "%s", err);
	spate_conf_destroy(none);
	/* the certificate names 127.0.0.1, not localhost */
	snprintf(uri, sizeof(uri), "rediss://localhost:%d", srv.tls_port);
	cr_assert_eq(try_open(uri, conf, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "does not name localhost"), "%s", err);
	/* the server asks for a client certificate */
	spate_conf_t *nocert = tls_conf(false);
	cr_assert_eq(try_open(srv.tls_uri, nocert, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "client certificate") && strstr(err, "redis.tls.cert"), "%s", err);
	/* a certificate without its key */
	set(nocert, "redis.tls.cert", srv.tls_dir, "client.crt");
	cr_assert_eq(try_open(srv.tls_uri, nocert, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "go together"), "%s", err);
	/* a key that is not the certificate's */
	set(nocert, "redis.tls.key", srv.tls_dir, "server.key");
	cr_assert_eq(try_open(srv.tls_uri, nocert, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "does not match"), "%s", err);
	spate_conf_destroy(nocert);
	/* TLS to the plain port */
	snprintf(uri, sizeof(uri), "rediss://127.0.0.1:%d", srv.port);
	cr_assert_eq(try_open(uri, conf, err, sizeof(err)), SPATE_ERR_STORE);
	cr_assert(strstr(err, "TLS handshake"), "%s", err);
	/* TLS keys with a plain URI: the user meant TLS */
	sp_store_t st = {.ops = &sp_store_rediss, .arg = srv.uri, .ns = "x", .conf = conf};
	cr_assert_eq(st.ops->open(&st, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "rediss://"), "%s", err);
}

Test(redis_tls, server_restart_reconnects_over_tls)
{
	sp_store_t st;
	stt_open(&st, &sp_store_rediss, srv.tls_uri, "rr");
	char err[600] = "";
	sp_lease_t got;
	cr_assert_eq(st.ops->lease_acquire(&st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(stt_save1(&st, "p", stt_at(77), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	t_redis_restart(&srv, false);
	cr_assert_eq(stt_save1(&st, "p", stt_at(78), "A", got.counter, err, sizeof(err)), SPATE_ERR_STORE,
	             "a write while the server is down is a transient error");
	t_redis_restart(&srv, true);
	/* the same store instance makes a new TLS connection; the AOF kept what was written */
	sp_ckpt_t ck;
	cr_assert_eq(st.ops->load(&st, "p", &ck, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(ck.after.w[2], 77);
	cr_assert_eq(stt_save1(&st, "p", stt_at(79), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	st.ops->close(&st);
}

Test(redis_tls, a_pipeline_run_over_tls)
{
	char dir[256], logdir[300], x_src[400], x_store[120], x_ca[400], x_cert[400], x_key[400];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	char *prod[] = {(char *)t_spate_cli(), "produce", logdir, "--partitions", "2", "--gen", "bytes",
	                "--records", "300", NULL};
	char *out = NULL, *errs = NULL;
	cr_assert_eq(t_run(prod, &out, &errs), 0, "%s", errs ? errs : "");
	free(out);
	free(errs);
	snprintf(x_src, sizeof(x_src), "source=log:%s", logdir);
	snprintf(x_store, sizeof(x_store), "store=%s", srv.tls_uri);
	snprintf(x_ca, sizeof(x_ca), "redis.tls.ca=%s/ca.crt", srv.tls_dir);
	snprintf(x_cert, sizeof(x_cert), "redis.tls.cert=%s/client.crt", srv.tls_dir);
	snprintf(x_key, sizeof(x_key), "redis.tls.key=%s/client.key", srv.tls_dir);
	char *run[] = {(char *)t_spate_cli(), "run", "-X", x_src, "-X", "handler=noop", "-X", x_store,
	               "-X", x_ca, "-X", x_cert, "-X", x_key, "-X", "pipeline.name=tlsrun",
	               "-X", "stop.at.end=true", "-X", "lease.timeout.ms=3000", NULL};
	cr_assert_eq(t_run(run, &out, &errs), 0, "spate run: %s", errs ? errs : "");
	cr_assert(out && strstr(out, "records 300\n"), "%s", out ? out : "");
	free(out);
	free(errs);
	/* the checkpoints, read back over TLS by the command line: every record done */
	char *show[] = {(char *)t_spate_cli(), "checkpoint", "show", srv.tls_uri, "--pipeline", "tlsrun",
	                "-X", x_ca, "-X", x_cert, "-X", x_key, NULL};
	cr_assert_eq(t_run(show, &out, &errs), 0, "%s", errs ? errs : "");
	long a = -1, b = -1;
	char pa[64] = "", pb[64] = "";
	cr_assert(out && sscanf(out, "%63s %ld\n%63s %ld", pa, &a, pb, &b) == 4, "show printed \"%s\"",
	          out ? out : "");
	cr_assert(strstr(pa, "/0") && strstr(pb, "/1"), "%s", out);
	cr_assert_eq((a + 1) + (b + 1), 300, "checkpoints %ld and %ld: the last offsets of 300 records", a, b);
	free(out);
	free(errs);
	/* without the client's certificate the command line is refused, naming the key */
	char *bare[] = {(char *)t_spate_cli(), "checkpoint", "show", srv.tls_uri, "-X", x_ca, NULL};
	cr_assert_eq(t_run(bare, &out, &errs), 1);
	cr_assert(errs && strstr(errs, "redis.tls.cert"), "%s", errs ? errs : "");
	free(out);
	free(errs);
	t_rmrf(dir);
}
