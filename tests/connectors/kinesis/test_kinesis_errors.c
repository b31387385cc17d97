/* test_kinesis_errors.c - what a Kinesis pipeline says when it cannot work:
 *  - an unknown stream, a bad endpoint, malformed credentials: `spate run` and `spate
 *    produce --kinesis` exit non-zero with an error naming the stream or endpoint (or
 *    the variable), and no secret appears in anything they print;
 *  - malformed JSON in a reply (ListShards, GetShardIterator, GetRecords), served by a
 *    small fake endpoint in this process: reported with the operation, never a crash.
 *  - ListShards in two pages (a fake endpoint: kinesalite never pages): the second page is
 *    asked with the NextToken alone, and its shard is read;
 *  - GetRecords throttled and failing (ProvisionedThroughputExceeded, LimitExceeded, 500,
 *    503): retried with backoff, every record read once, the run ends without error.
 * Part of the kinesis test executable. */
#include "tests/connectors/kinesis/kintest.h"
#include "tests/common/util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* `spate run` on stream with endpoint; its exit status, stderr into *err. */
static int run_cli(const char *endpoint, const char *stream, char **err)
{
	char a_ep[300], a_st[300];
	snprintf(a_ep, sizeof(a_ep), "kinesis.endpoint=%s", endpoint);
	snprintf(a_st, sizeof(a_st), "kinesis.stream=%s", stream);
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=kinesis",
	                      "-X",
	                      a_st,
	                      "-X",
	                      a_ep,
	                      "-X",
	                      "kinesis.region=" T_KIN_REGION,
	                      "-X",
	                      "stop.at.end=true",
	                      "-X",
	                      "store=none",
	                      NULL};
	char *out = NULL;
	int st = t_run(argv, &out, err);
	free(out);
	return st;
}

static void no_secret(const char *text)
{
	cr_assert_null(strstr(text, T_KIN_SECRET), "the secret key appears in: %s", text);
	cr_assert_null(strstr(text, "wJalrXUtnFEMI"), "part of the secret key appears in: %s", text);
}

Test(kinesis, unknown_stream_bad_endpoint_and_credentials_are_named, .timeout = 120)
{
	t_kin_t *k = t_kinesalite_start();
	char *err = NULL;
	int st = run_cli(t_kin_endpoint(k), "no-such-stream", &err);
	cr_assert_neq(st, 0, "spate run on an unknown stream exited 0");
	cr_assert(strstr(err, "no-such-stream") && strstr(err, "ResourceNotFoundException") &&
	              strstr(err, "ListShards"),
	          "the error does not name the stream, the operation and AWS's error: %s", err);
	no_secret(err);
	free(err);
	/* nothing listens on port 1 */
	st = run_cli("http://127.0.0.1:1", "anything", &err);
	cr_assert_neq(st, 0);
	cr_assert(strstr(err, "http://127.0.0.1:1"), "the error does not name the endpoint: %s", err);
	no_secret(err);
	free(err);
	/* produce to an unknown stream */
	char a_ep[300];
	snprintf(a_ep, sizeof(a_ep), "kinesis.endpoint=%s", t_kin_endpoint(k));
	char *const pargv[] = {(char *)t_spate_cli(),
	                       "produce",
	                       "--kinesis",
	                       "missing-stream",
	                       "--gen",
	                       "bytes",
	                       "--records",
	                       "10",
	                       "-X",
	                       a_ep,
	                       NULL};
	char *out = NULL;
	st = t_run(pargv, &out, &err);
	cr_assert_neq(st, 0);
	cr_assert(strstr(err, "missing-stream"), "%s", err);
	free(out);
	free(err);
	/* malformed credentials: named, the values never shown */
	t_kin_create(k, "s", 1);
	setenv("AWS_ACCESS_KEY_ID", "not a key id", 1);
	st = run_cli(t_kin_endpoint(k), "s", &err);
	cr_assert_neq(st, 0);
	cr_assert(strstr(err, "AWS_ACCESS_KEY_ID is malformed"), "%s", err);
	cr_assert_null(strstr(err, "not a key id"), "the key id appears in: %s", err);
	no_secret(err);
	free(err);
	t_kin_env();
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI with spaces", 1);
	st = run_cli(t_kin_endpoint(k), "s", &err);
	cr_assert_neq(st, 0);
	cr_assert(strstr(err, "AWS_SECRET_ACCESS_KEY is malformed"), "%s", err);
	no_secret(err);
	free(err);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	st = run_cli(t_kin_endpoint(k), "s", &err);
	cr_assert_neq(st, 0);
	cr_assert(strstr(err, "AWS_SECRET_ACCESS_KEY is not set"), "%s", err);
	free(err);
	t_kin_env();
	/* with good credentials the same run works: the failures above were the credentials */
	st = run_cli(t_kin_endpoint(k), "s", &err);
	cr_assert_eq(st, 0, "%s", err);
	free(err);
	t_kinesalite_stop(k);
}

/* ---- a fake endpoint: canned replies by operation ------------------------------------ */

enum { FAKE_CONNS = 16 };

typedef struct fake_conn {
	int fd; /* -1: free */
	size_t len;
	char buf[16384];
} fake_conn_t;

typedef struct fake {
	int lfd, port;
	pthread_t th;
	_Atomic int stop;
	const char *list, *iter, *records; /* reply bodies */
	_Atomic int calls_records;
	/* pages: ListShards in two pages, per-shard iterators and records (see below) */
	bool pages;
	_Atomic int page1, page2, bad_page;
	/* paged: the first throttles GetRecords calls fail (400 ProvisionedThroughputExceeded,
	 * 400 LimitExceeded, 500 InternalFailure, 503, in turn) */
	int throttles;
	_Atomic int throttled;
	fake_conn_t conns[FAKE_CONNS];
} fake_t;

static void reply_status(int fd, int status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: "
	                 "%zu\r\n\r\n",
	                 status, status == 200 ? "OK" : "Error", strlen(body));
	if (write(fd, head, (size_t)n) != n || write(fd, body, strlen(body)) != (ssize_t)strlen(body))
		return;
}

/* The paged stream: shard 0 on ListShards' first page (with a NextToken), shard 1 on the
 * second, which must be asked with the NextToken alone (the API refuses a StreamName
 * beside it). Each shard holds one record, "rec N" with key kN, then is caught up. */
static const char *paged(fake_t *f, const char *op, const char *body, char *out, size_t size)
{
	if (!strncmp(op, "ListShards", 10)) {
		bool tok = strstr(body, "\"NextToken\"") != NULL, name = strstr(body, "StreamName") != NULL;
		if (tok == name) {
			atomic_fetch_add(&f->bad_page, 1);
			return "{\"Shards\":[]}";
		}
		atomic_fetch_add(tok ? &f->page2 : &f->page1, 1);
		snprintf(out, size,
		         "{\"Shards\":[{\"ShardId\":\"shardId-00000000000%d\",\"HashKeyRange\":{"
		         "\"StartingHashKey\":\"%s\",\"EndingHashKey\":\"%s\"},\"SequenceNumberRange\":{"
		         "\"StartingSequenceNumber\":\"%d\"}}]%s}",
		         tok, tok ? "170141183460469231731687303715884105728" : "0",
		         tok ? "340282366920938463463374607431768211455"
		             : "170141183460469231731687303715884105727",
		         tok + 1, tok ? "" : ",\"NextToken\":\"page-2-token\"");
		return out;
	}
	if (!strncmp(op, "GetShardIterator", 16)) {
		const char *id = strstr(body, "shardId-00000000000");
		snprintf(out, size, "{\"ShardIterator\":\"it-%c-1\"}", id ? id[19] : '0');
		return out;
	}
	if (!strncmp(op, "GetRecords", 10)) {
		const char *it = strstr(body, "\"it-");
		if (!it)
			return "{}";
		char shard = it[4];
		if (it[6] == '1') { /* the first call: the shard's one record */
			snprintf(out, size,
			         "{\"Records\":[{\"SequenceNumber\":\"%d\",\"ApproximateArrivalTimestamp\":"
			         "1700000000.5,\"Data\":\"%s\",\"PartitionKey\":\"k%c\"}],"
			         "\"NextShardIterator\":\"it-%c-2\",\"MillisBehindLatest\":0}",
			         shard - '0' + 1, shard == '0' ? "cmVjIDA=" : "cmVjIDE=", shard, shard);
			return out;
		}
		snprintf(out, size,
		         "{\"Records\":[],\"NextShardIterator\":\"it-%c-2\",\"MillisBehindLatest\":0}",
		         shard);
		return out;
	}
	return "{}";
}

/* Take what came on c; answer every complete request. false: the connection is done. */
static bool serve(fake_t *f, fake_conn_t *c)
{
	ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (r <= 0)
		return false;
	c->len += (size_t)r;
	for (;;) {
		c->buf[c->len] = 0;
		char *end = strstr(c->buf, "\r\n\r\n");
		if (!end)
			return true;
		char *cl = strcasestr(c->buf, "Content-Length:");
		size_t body = cl && cl < end ? (size_t)atol(cl + 15) : 0;
		size_t need = (size_t)(end + 4 - c->buf) + body;
		if (c->len < need)
			return true;
		char save = c->buf[need];
		c->buf[need] = 0;
		const char *t = strstr(c->buf, "Kinesis_20131202.");
		const char *out = "{}";
		char tmp[1024];
		if (t && f->pages)
			out = paged(f, t + 17, end + 4, tmp, sizeof(tmp));
		else if (t && !strncmp(t + 17, "ListShards", 10))
			out = f->list;
		else if (t && !strncmp(t + 17, "GetShardIterator", 16))
			out = f->iter;
		else if (t && !strncmp(t + 17, "GetRecords", 10))
			out = f->records;
		if (t && !strncmp(t + 17, "GetRecords", 10))
			atomic_fetch_add(&f->calls_records, 1);
		c->buf[need] = save;
		int status = 200;
		if (t && f->pages && !strncmp(t + 17, "GetRecords", 10)) {
			int k = atomic_load(&f->throttled);
			if (k < f->throttles) {
				static const struct {
					int status;
					const char *body;
				} fail[] = {
				    {400, "{\"__type\":\"ProvisionedThroughputExceededException\","
				          "\"message\":\"slow "
				          "down\"}"},
				    {400, "{\"__type\":\"LimitExceededException\",\"message\":\"too many\"}"},
				    {500, "{\"__type\":\"InternalFailure\"}"},
				    {503, ""},
				};
				atomic_fetch_add(&f->throttled, 1);
				status = fail[k % 4].status;
				out = fail[k % 4].body;
			}
		}
		reply_status(c->fd, status, out);
		memmove(c->buf, c->buf + need, c->len - need);
		c->len -= need;
	}
}

/* One thread serves every connection (libcurl opens one per shard at once). */
static void *fake_main(void *arg)
{
	fake_t *f = arg;
	for (int i = 0; i < FAKE_CONNS; i++)
		f->conns[i].fd = -1;
	while (!atomic_load(&f->stop)) {
		struct pollfd p[FAKE_CONNS + 1] = {{f->lfd, POLLIN, 0}};
		for (int i = 0; i < FAKE_CONNS; i++)
			p[i + 1] = (struct pollfd){f->conns[i].fd, POLLIN, 0}; /* fd -1 is ignored */
		if (poll(p, FAKE_CONNS + 1, 50) <= 0)
			continue;
		for (int i = 0; i < FAKE_CONNS; i++)
			if (p[i + 1].revents && !serve(f, &f->conns[i])) {
				close(f->conns[i].fd);
				f->conns[i].fd = -1;
				f->conns[i].len = 0;
			}
		if (p[0].revents & POLLIN) {
			int fd = accept(f->lfd, NULL, NULL);
			int i = 0;
			while (i < FAKE_CONNS && f->conns[i].fd >= 0)
				i++;
			if (fd >= 0 && i < FAKE_CONNS)
				f->conns[i].fd = fd;
			else if (fd >= 0)
				close(fd);
		}
	}
	for (int i = 0; i < FAKE_CONNS; i++)
		if (f->conns[i].fd >= 0)
			close(f->conns[i].fd);
	return NULL;
}

static void fake_start(fake_t *f)
{
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(f->lfd, 8) == 0);
	socklen_t l = sizeof(a);
	getsockname(f->lfd, (struct sockaddr *)&a, &l);
	f->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
	atomic_store(&f->stop, 1);
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static const char *const good_list =
    "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"SequenceNumberRange\":{\"StartingSequenceNumber\":"
    "\"49590338271490256608559692538361571095921575989136588898\"}}]}";
static const char *const good_iter = "{\"ShardIterator\":\"it\"}";

/* Run a pipeline against the fake (plus the more pairs, may be NULL); the error of start
 * or run, and the summary into *sum when not NULL. */
static int fake_run_kv(fake_t *f, const char *const *more, char *err, size_t size, spate_summary_t *sum)
{
	t_kin_env();
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", f->port);
	const char *kv[] = {"source",
	                    "kinesis",
	                    "kinesis.stream",
	                    "fake",
	                    "kinesis.endpoint",
	                    ep,
	                    "store",
	                    "none",
	                    "kinesis.idle.ms",
	                    "10",
	                    NULL};
	t_run_t r = t_engine_run(&(t_engine_opts_t){.conf = kv, .conf_more = more});
	snprintf(err, size, "%s", r.err);
	if (sum)
		*sum = r.sum;
	return r.rc;
}

static int fake_run(fake_t *f, char *err, size_t size)
{
	return fake_run_kv(f, NULL, err, size, NULL);
}

Test(kinesis, malformed_json_replies_are_reported, .timeout = 120)
{
	const char *bad[] = {"{\"Shards\":[{\"ShardId\":", "not json at all", "{\"Records\":[{}]}",
	                     "[1,2,3]"};
	char err[1024];
	/* ListShards: the start fails naming the operation */
	for (int i = 0; i < 2; i++) {
		fake_t f = {.list = bad[i], .iter = good_iter, .records = "{}"};
		fake_start(&f);
		int rc = fake_run(&f, err, sizeof(err));
		fake_stop(&f);
		cr_assert_neq(rc, SPATE_OK);
		cr_assert(strstr(err, "ListShards") && strstr(err, "malformed JSON") &&
		              strstr(err, "stream fake"),
		          "%s", err);
	}
	/* GetShardIterator */
	fake_t f = {.list = good_list, .iter = "{\"ShardIterator\":[]}", .records = "{}"};
	fake_start(&f);
	int rc = fake_run(&f, err, sizeof(err));
	fake_stop(&f);
	cr_assert_neq(rc, SPATE_OK);
	cr_assert(strstr(err, "GetShardIterator") && strstr(err, "shardId-000000000000"), "%s", err);
	/* GetRecords: asked again a few times, then the run fails naming stream, shard, op */
	for (int i = 1; i < 4; i++) {
		fake_t g = {.list = good_list, .iter = good_iter, .records = bad[i]};
		fake_start(&g);
		rc = fake_run(&g, err, sizeof(err));
		fake_stop(&g);
		cr_assert_neq(rc, SPATE_OK);
		cr_assert(strstr(err, "GetRecords") && strstr(err, "malformed reply") &&
		              strstr(err, "stream fake") && strstr(err, "shard shardId-000000000000"),
		          "%s", err);
		cr_assert_geq(atomic_load(&g.calls_records), 2,
		              "a malformed reply is asked again before it is fatal");
	}
}

/* ListShards in pages (kinesalite never pages): the second page is asked with the
 * NextToken alone, and the shard it names is read like the first page's. */
Test(kinesis, list_shards_pages_are_followed, .timeout = 120)
{
	fake_t f = {.pages = true};
	fake_start(&f);
	char err[1024];
	spate_summary_t sum;
	const char *kv[] = {"stop.at.end", "true", NULL};
	int rc = fake_run_kv(&f, kv, err, sizeof(err), &sum);
	fake_stop(&f);
	cr_assert_eq(rc, SPATE_OK, "%s", err);
	cr_assert_eq(atomic_load(&f.bad_page), 0,
	             "a ListShards page named both or neither of StreamName and NextToken");
	cr_assert_geq(atomic_load(&f.page1), 1);
	cr_assert_geq(atomic_load(&f.page2), 1, "the NextToken of the first page was not followed");
	cr_assert_eq(sum.records, 2, "%" PRIu64 " records: the shard of the second page was not read",
	             sum.records);
}

/* GetRecords answers 400 ProvisionedThroughputExceeded, 400 LimitExceeded, 500 and 503
 * (twice each) before it answers: each is retried with backoff, every record is read
 * once, and the run ends without error. */
Test(kinesis, throttling_and_5xx_are_retried, .timeout = 120)
{
	fake_t f = {.pages = true, .throttles = 8};
	fake_start(&f);
	char err[1024];
	spate_summary_t sum;
	const char *kv[] = {"stop.at.end", "true", NULL};
	int rc = fake_run_kv(&f, kv, err, sizeof(err), &sum);
	fake_stop(&f);
	cr_assert_eq(rc, SPATE_OK, "%s", err);
	cr_assert_eq(atomic_load(&f.throttled), 8, "only %d of the 8 failing replies were asked for",
	             atomic_load(&f.throttled));
	cr_assert_eq(sum.records, 2, "%" PRIu64 " records after the retries, not 2", sum.records);
	cr_assert_eq(sum.dlq + sum.dropped, 0);
}
