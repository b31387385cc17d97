/* test_prom.c - tests engine/prom.c, the Prometheus endpoint (metrics.listen).
 *
 * A pipeline runs on a thread while prometheus_client (Debian's python3-prometheus-client,
 * tests/engine/prom_scrape.py) scrapes it: every family parses with its type, the
 * histograms are well formed, the partitions carry labels; after the run the counters
 * equal the engine's summary and the handler errors the test counted. The endpoint
 * refuses a non-loopback address unless metrics.listen.remote is set, and a client that
 * never finishes its request or sends garbage stalls neither the pipeline nor a scrape.
 */
#include "engine/engine.h"
#include <spate/spate.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/common/engine.h"
#include "tests/common/util.h"

/* Debian's interpreter, for which python3-prometheus-client is installed. */
#define PYTHON "/usr/bin/python3"
/* Records of the runs, at GEN_RATE records/s: the run lasts a few seconds, long enough
 * to be scraped while it runs. */
#define GEN_RECORDS "300000"
#define GEN_RATE    "100000"
#define NPARTS      4
/* The handler fails every FAIL_EVERY-th call (it is retried and then succeeds). */
#define FAIL_EVERY 37

typedef struct run {
	int port;
	_Atomic uint64_t calls, fails;
	int live_scrapes;
	bool slow_clients; /* the during thread also holds a stuck and a garbage client */
	int slow_fd;
} run_t;

static int handle(void *opaque, void *wctx, spate_batch_t *b)
{
	run_t *r = opaque;
	uint64_t n = atomic_fetch_add(&r->calls, 1) + 1;
	if (n % FAIL_EVERY == 0) {
		atomic_fetch_add(&r->fails, 1);
		spate_batch_set_error(b, "test failure");
		return SPATE_HANDLER_FAIL;
	}
	return SPATE_HANDLER_OK;
}

static const char *const run_conf[] = {"source",
                                       "gen",
                                       "gen.records",
                                       GEN_RECORDS,
                                       "gen.rate",
                                       GEN_RATE,
                                       "gen.partitions",
                                       "4",
                                       "batch.size",
                                       "100",
                                       "max.concurrency",
                                       "2",
                                       "retry.backoff.ms",
                                       "1",
                                       "retry.backoff.max.ms",
                                       "2",
                                       "metrics.listen",
                                       "127.0.0.1:0",
                                       NULL};

/* Scrape with prometheus_client; returns its exit status, its output in *out, *err. */
static int scrape_n(int port, int nparts, const char *summary, const char *expect, char **out, char **err)
{
	char url[64], path[1024], parts[16];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
	const char *src = getenv("SPATE_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/tests/engine/prom_scrape.py", src ? src : ".");
	snprintf(parts, sizeof(parts), "%d", nparts);
	char *argv[] = {PYTHON, path, url, parts, (char *)summary, (char *)expect, NULL};
	if (!summary)
		argv[4] = NULL;
	return t_run(argv, out, err);
}

static int scrape(int port, const char *summary, const char *expect, char **out, char **err)
{
	return scrape_n(port, NPARTS, summary, expect, out, err);
}

static void started(spate_engine_t *e, void *arg)
{
	run_t *r = arg;
	r->port = sp_prom_port(e);
	cr_assert_gt(r->port, 0, "the engine does not serve metrics");
}

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t_require(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
	          strerror(errno));
	return fd;
}

/* A request that never ends stays open; garbage bytes get an error status or a closed
 * connection, not a hang. */
static void slow_and_garbage(run_t *r)
{
	r->slow_fd = connect_to(r->port);
	const char half[] = "GET /metr";
	t_require(write(r->slow_fd, half, sizeof(half) - 1) == (ssize_t)sizeof(half) - 1);
	int junk = connect_to(r->port);
	unsigned char garbage[4096];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(garbage); i++) {
		x = x * 1103515245u + 12345u;
		garbage[i] = (unsigned char)(x >> 16);
	}
	garbage[sizeof(garbage) - 2] = '\r';
	garbage[sizeof(garbage) - 1] = '\n';
	(void)!write(junk, garbage, sizeof(garbage));
	struct timeval tv = {.tv_sec = 20};
	setsockopt(junk, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char resp[256] = "";
	ssize_t k = read(junk, resp, sizeof(resp) - 1);
	t_require(k == 0 || (k > 0 && !strncmp(resp, "HTTP/1.", 7) && !strstr(resp, " 200 ")),
	          "garbage got %zd bytes: %.*s", k, (int)(k > 0 ? k : 0), resp);
	close(junk);
}

/* While the pipeline runs: every family parses, with 4 partition labels (twice). */
static void during(t_during_t *d)
{
	run_t *r = d->arg;
	if (r->slow_clients)
		slow_and_garbage(r);
	for (; r->live_scrapes < 2; r->live_scrapes++) {
		char *out, *err;
		int st = scrape(r->port, NULL, NULL, &out, &err);
		t_require(st == 0, "live scrape: %s%s", out, err);
		free(out), free(err);
	}
}

static t_run_t run_scraped(run_t *r)
{
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "promtest", .handle = handle, .opaque = r};
	t_engine_opts_t o = {
	    .conf = run_conf, .handler = &h, .started = started, .during = during, .arg = r, .keep = true};
	t_run_t tr = t_engine_run(&o);
	cr_assert_eq(tr.rc, SPATE_OK, "%s", tr.err);
	cr_assert_eq(r->live_scrapes, 2);
	cr_assert_eq(tr.sum.records, 300000);
	return tr;
}

Test(prom, scrape_parses_and_agrees_with_the_summary)
{
	run_t r = {0};
	t_run_t tr = run_scraped(&r);
	cr_assert_gt(atomic_load(&r.fails), 0);
	/* after the run, before destroy: the counters equal the summary's */
	char sum[4096], expect[512];
	spate_summary_json(&tr.sum, sum, sizeof(sum));
	snprintf(expect, sizeof(expect), "{\"spate_errors_total\": %llu, \"spate_invocations_total\": %llu}",
	         (unsigned long long)atomic_load(&r.fails), (unsigned long long)atomic_load(&r.calls));
	char *out, *err;
	int st = scrape(r.port, sum, expect, &out, &err);
	spate_engine_destroy(tr.e);
	cr_assert_eq(st, 0, "final scrape: %s%s\nsummary %s", out, err, sum);
	free(out), free(err);
}

static void remote_started(spate_engine_t *e, void *arg)
{
	run_t *r = arg;
	r->port = sp_prom_port(e);
	cr_assert_gt(r->port, 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	close(fd);
}

Test(prom, refuses_non_loopback_unless_asked)
{
	char err[512];
	const char *bad[][2] = {{"0.0.0.0:0", "loopback"},   {"192.0.2.1:9464", "loopback"},
	                        {"[::]:0", "loopback"},      {"127.0.0.1", "ADDR:PORT"},
	                        {"127.0.0.1:99999", "port"}, {"example.com:9464", "numeric"}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *kv[] = {"source", "gen", "metrics.listen", bad[i][0], NULL};
		spate_conf_t *c = t_conf(kv);
		err[0] = 0;
		spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
		cr_assert_null(e, "metrics.listen=%s was accepted", bad[i][0]);
		cr_assert(strstr(err, "metrics.listen") && strstr(err, bad[i][1]), "metrics.listen=%s: %s",
		          bad[i][0], err);
		spate_conf_destroy(c);
	}
	/* asked: it binds every address, loopback included */
	const char *kv[] = {
	    "source", "gen", "gen.records", "1000", "metrics.listen", "0.0.0.0:0", "metrics.listen.remote",
	    "true",   NULL};
	run_t r = {0};
	t_engine_opts_t o = {.conf = kv, .started = remote_started, .arg = &r};
	t_run_t tr = t_engine_run(&o);
	cr_assert_eq(tr.rc, SPATE_OK, "%s", tr.err);
	cr_assert_gt(r.port, 0);
}

Test(prom, survives_slow_and_garbage_clients)
{
	/* the scrapes are served and the pipeline runs to its end while a client that never
	 * finishes its request holds its connection */
	run_t r = {.slow_clients = true, .slow_fd = -1};
	t_run_t tr = run_scraped(&r);
	close(r.slow_fd);
	spate_engine_destroy(tr.e);
}

Test(prom, partitions_beyond_the_bound_are_summed)
{
	/* 4 partitions, 2 reported one by one: the other two are partition="_other" */
	const char *more[] = {"metrics.partitions.max", "2", "gen.rate", "0", NULL};
	run_t r = {0};
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "promtest", .handle = handle, .opaque = &r};
	t_engine_opts_t o = {
	    .conf = run_conf, .conf_more = more, .handler = &h, .started = started, .arg = &r, .keep = true};
	t_run_t tr = t_engine_run(&o);
	cr_assert_eq(tr.rc, SPATE_OK, "%s", tr.err);
	char sum[4096];
	spate_summary_json(&tr.sum, sum, sizeof(sum));
	char *out, *err;
	int st = scrape_n(r.port, 3, sum, "{}", &out, &err);
	spate_engine_destroy(tr.e);
	cr_assert_eq(st, 0, "%s%s", out, err);
	cr_assert(strstr(out, "\"_other\""), "%s", out);
	free(out), free(err);
}
