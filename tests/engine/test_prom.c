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
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
	spate_engine_t *e;
	_Atomic int port; /* > 0 once serving, < 0 when the start failed */
	_Atomic uint64_t calls, fails;
	int rc;
	char err[512];
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

static void *run_main(void *arg)
{
	run_t *r = arg;
	r->rc = spate_engine_start(r->e, r->err, sizeof(r->err));
	if (r->rc) {
		atomic_store(&r->port, -1);
		return NULL;
	}
	atomic_store(&r->port, sp_prom_port(r->e));
	r->rc = spate_engine_run(r->e, r->err, sizeof(r->err));
	return NULL;
}

static spate_conf_t *conf_of(const char *const *kv)
{
	spate_conf_t *c = spate_conf_new();
	char err[256];
	for (size_t i = 0; kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK,
		             "%s=%s: %s", kv[i], kv[i + 1], err);
	return c;
}

static void start(run_t *r, pthread_t *th)
{
	const char *kv[] = {"source",
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
	spate_handler_t h = {
	    .version = SPATE_HANDLER_VERSION, .name = "promtest", .handle = handle, .opaque = r};
	char err[512];
	r->e = spate_engine_new(conf_of(kv), &h, err, sizeof(err));
	cr_assert(r->e, "%s", err);
	cr_assert_eq(pthread_create(th, NULL, run_main, r), 0);
	int64_t until = t_now_ms() + 30000;
	while (atomic_load(&r->port) == 0 && t_now_ms() < until)
		t_sleep_ms(5);
	cr_assert_gt(atomic_load(&r->port), 0, "the engine did not start serving: %s", r->err);
}

/* Scrape with prometheus_client; returns its exit status, its output in *out, *err. */
static int scrape(int port, const char *summary, const char *expect, char **out, char **err)
{
	char url[64], path[1024], parts[16];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
	const char *src = getenv("SPATE_SOURCE_DIR");
	snprintf(path, sizeof(path), "%s/tests/engine/prom_scrape.py", src ? src : ".");
	snprintf(parts, sizeof(parts), "%d", NPARTS);
	char *argv[] = {PYTHON, path, url, parts, (char *)summary, (char *)expect, NULL};
	if (!summary)
		argv[4] = NULL;
	return t_run(argv, out, err);
}

Test(prom, scrape_parses_and_agrees_with_the_summary)
{
	run_t r = {0};
	pthread_t th;
	start(&r, &th);
	int port = atomic_load(&r.port);
	/* while it runs: every family parses, with 4 partition labels */
	int live = 0;
	while (live < 2) {
		char *out, *err;
		int st = scrape(port, NULL, NULL, &out, &err);
		cr_assert_eq(st, 0, "live scrape: %s%s", out, err);
		live++;
		free(out), free(err);
	}
	pthread_join(th, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t s;
	spate_engine_summary(r.e, &s);
	cr_assert_eq(s.records, 300000);
	cr_assert_gt(atomic_load(&r.fails), 0);
	char sum[4096], expect[512];
	spate_summary_json(&s, sum, sizeof(sum));
	snprintf(expect, sizeof(expect), "{\"spate_errors_total\": %llu, \"spate_invocations_total\": %llu}",
	         (unsigned long long)atomic_load(&r.fails), (unsigned long long)atomic_load(&r.calls));
	char *out, *err;
	int st = scrape(port, sum, expect, &out, &err);
	cr_assert_eq(st, 0, "final scrape: %s%s\nsummary %s", out, err, sum);
	free(out), free(err);
	spate_engine_destroy(r.e);
}

Test(prom, refuses_non_loopback_unless_asked)
{
	char err[512];
	const char *bad[][2] = {{"0.0.0.0:0", "loopback"},   {"192.0.2.1:9464", "loopback"},
	                        {"[::]:0", "loopback"},      {"127.0.0.1", "ADDR:PORT"},
	                        {"127.0.0.1:99999", "port"}, {"example.com:9464", "numeric"}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *kv[] = {"source", "gen", "metrics.listen", bad[i][0], NULL};
		spate_conf_t *c = conf_of(kv);
		err[0] = 0;
		spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
		cr_assert_null(e, "metrics.listen=%s was accepted", bad[i][0]);
		cr_assert(strstr(err, "metrics.listen") && strstr(err, bad[i][1]), "metrics.listen=%s: %s",
		          bad[i][0], err);
		spate_conf_destroy(c);
	}
	/* asked: it binds every address */
	const char *kv[] = {
	    "source", "gen", "gen.records", "1000", "metrics.listen", "0.0.0.0:0", "metrics.listen.remote",
	    "true",   NULL};
	spate_engine_t *e = spate_engine_new(conf_of(kv), NULL, err, sizeof(err));
	cr_assert(e, "%s", err);
	cr_assert_eq(spate_engine_start(e, err, sizeof(err)), SPATE_OK, "%s", err);
	int port = sp_prom_port(e);
	cr_assert_gt(port, 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cr_assert_eq(spate_engine_run(e, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_engine_destroy(e);
}

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

Test(prom, survives_slow_and_garbage_clients)
{
	run_t r = {0};
	pthread_t th;
	start(&r, &th);
	int port = atomic_load(&r.port);
	/* a request that never ends, and one of garbage bytes */
	int slow = connect_to(port);
	const char half[] = "GET /metr";
	cr_assert_eq(write(slow, half, sizeof(half) - 1), (ssize_t)sizeof(half) - 1);
	int junk = connect_to(port);
	unsigned char garbage[4096];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(garbage); i++) {
		x = x * 1103515245u + 12345u;
		garbage[i] = (unsigned char)(x >> 16);
	}
	garbage[sizeof(garbage) - 2] = '\r';
	garbage[sizeof(garbage) - 1] = '\n';
	(void)!write(junk, garbage, sizeof(garbage));
	/* the garbage gets an error status or a closed connection, not a hang */
	struct timeval tv = {.tv_sec = 20};
	setsockopt(junk, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char resp[256] = "";
	ssize_t k = read(junk, resp, sizeof(resp) - 1);
	cr_assert(k == 0 || (k > 0 && !strncmp(resp, "HTTP/1.", 7) && !strstr(resp, " 200 ")),
	          "garbage got %zd bytes: %.*s", k, (int)(k > 0 ? k : 0), resp);
	close(junk);
	/* a real scrape is served while the slow client holds its connection */
	char *out, *err;
	int st = scrape(port, NULL, NULL, &out, &err);
	cr_assert_eq(st, 0, "scrape beside a stuck client: %s%s", out, err);
	free(out), free(err);
	/* and the pipeline runs to its end meanwhile */
	pthread_join(th, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	spate_summary_t s;
	spate_engine_summary(r.e, &s);
	cr_assert_eq(s.records, 300000);
	close(slow);
	spate_engine_destroy(r.e);
}
