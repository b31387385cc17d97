/* test_ingest.c - the example ingest service (examples/ingest/ingest.c), driven with curl.
 *
 * Each test starts build/examples/spate-ingest (SPATE_INGEST) on 127.0.0.1 port 0 (the
 * service binds a free port and prints it), waits until GET /health answers, then talks
 * to it with the curl command as a client would. The service is a child of the test's
 * process with PR_SET_PDEATHSIG (t_spawn), so a failing test never leaves it running.
 *
 *  - a POST answers 200 with one id per event; after SIGTERM the service exits 0, every
 *    id is a record of the log with the event's key, the pipeline handled each one
 *    (its summary counts them and its checkpoint passed them);
 *  - log.push.max.lag=2: a request of 5 events into one partition answers 429 with
 *    Retry-After, ids for the 2 taken and null for the others;
 *  - bad JSON and bad events answer 400 naming the byte, the event and the field, and
 *    nothing of such a request reaches the log;
 *  - SIGTERM while four clients post: the service drains and exits 0, and every event a
 *    client got an id for is in the log and was handled, exactly the service's count.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/util.h"

/* How long the service may take to listen, and to drain and exit after SIGTERM. */
#define START_TIMEOUT_MS 20000
#define EXIT_TIMEOUT_MS  60000
/* The drain test: client processes, requests each, and 200s seen before the SIGTERM. */
#define DRAIN_CLIENTS  4
#define DRAIN_REQUESTS 100000
#define DRAIN_MIN_OK   40

typedef struct svc {
	char dir[PATH_MAX];
	char out[PATH_MAX + 16], err[PATH_MAX + 16];
	char url[128];
	int pid;
} svc_t;

static const char *ingest_bin(void)
{
	const char *s = getenv("SPATE_INGEST");
	return s && *s ? s : "build/examples/spate-ingest";
}

/* Start the service in a fresh directory with the extra arguments (NULL-terminated). */
static void svc_start(svc_t *s, const char *const *extra)
{
	t_mkdtemp(s->dir, sizeof(s->dir));
	snprintf(s->out, sizeof(s->out), "%s/out", s->dir);
	snprintf(s->err, sizeof(s->err), "%s/err", s->dir);
	char svcdir[PATH_MAX + 8], store[PATH_MAX + 16];
	snprintf(svcdir, sizeof(svcdir), "%s/svc", s->dir);
	snprintf(store, sizeof(store), "store=file:%s/ckpt", s->dir);
	const char *argv[32] = {ingest_bin(), "--dir", svcdir, "--listen", "127.0.0.1:0", "-X", store};
	size_t n = 7;
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	s->pid = t_spawn((char *const *)argv, s->out, s->err, 0);
	cr_assert(s->pid > 0, "spawn %s: %s", ingest_bin(), strerror(errno));
	/* the port it bound: "spate-ingest: listening on http://127.0.0.1:PORT/events, ..." */
	int port = 0;
	for (int64_t end = t_now_ms() + START_TIMEOUT_MS; !port && t_now_ms() < end; t_sleep_ms(10)) {
		char *e = t_read_file(s->err, NULL);
		const char *p = e ? strstr(e, "listening on http://127.0.0.1:") : NULL;
		if (p)
			port = atoi(p + strlen("listening on http://127.0.0.1:"));
		free(e);
		int st;
		cr_assert(!(waitpid(s->pid, &st, WNOHANG) == s->pid), "spate-ingest exited at start: %s",
		          t_read_file(s->err, NULL));
	}
	cr_assert(port > 0, "spate-ingest did not listen within %d ms: %s", START_TIMEOUT_MS,
	          t_read_file(s->err, NULL));
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", port);
}

/* One request with curl: returns the HTTP status (0 when curl failed), the body and the
 * response headers (malloc'd; may be NULL). */
static int http(const svc_t *s, const char *method, const char *path, const char *body, char **resp,
                char **hdrs)
{
	char url[256], bfile[PATH_MAX + 16], hfile[PATH_MAX + 16];
	snprintf(url, sizeof(url), "%s%s", s->url, path);
	snprintf(bfile, sizeof(bfile), "%s/resp", s->dir);
	snprintf(hfile, sizeof(hfile), "%s/hdrs", s->dir);
	unlink(bfile);
	unlink(hfile);
	const char *argv[24] = {"curl", "-sS", "--max-time", "30",           "-o", bfile,
	                        "-D",   hfile, "-w",         "%{http_code}", "-X", method};
	size_t n = 12;
	if (body) {
		argv[n++] = "-H";
		argv[n++] = "Content-Type: application/json";
		argv[n++] = "--data-binary";
		argv[n++] = body;
	}
	argv[n++] = url;
	argv[n] = NULL;
	char *out = NULL, *err = NULL;
	int rc = t_run((char *const *)argv, &out, &err);
	cr_assert(rc == 0, "curl %s %s: exit %d: %s", method, url, rc, err);
	int code = atoi(out);
	free(out);
	free(err);
	if (resp)
		*resp = t_read_file(bfile, NULL);
	if (hdrs)
		*hdrs = t_read_file(hfile, NULL);
	return code;
}

/* SIGTERM: the service drains and must exit 0 within EXIT_TIMEOUT_MS. Returns its stdout. */
static char *svc_term(svc_t *s)
{
	cr_assert(kill(s->pid, SIGTERM) == 0);
	int st = -1;
	cr_assert(t_wait_exit(s->pid, EXIT_TIMEOUT_MS, &st) == 0,
	          "spate-ingest did not exit within %d ms of SIGTERM", EXIT_TIMEOUT_MS);
	s->pid = 0;
	char *err = t_read_file(s->err, NULL);
	cr_assert(st == 0, "spate-ingest exited %d after SIGTERM: %s", st, err);
	cr_assert(strstr(err, "draining"), "no drain notice: %s", err);
	free(err);
	char *out = t_read_file(s->out, NULL);
	cr_assert(out);
	return out;
}

static void svc_cleanup(svc_t *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		int st;
		t_wait_exit(s->pid, 10000, &st);
	}
	t_rmrf(s->dir);
}

/* The value of a `name value` line of the service's output (the summary, its own counts). */
static uint64_t out_count(const char *out, const char *name)
{
	char pat[128];
	snprintf(pat, sizeof(pat), "\n%s ", name);
	const char *p = strncmp(out, pat + 1, strlen(pat + 1)) ? strstr(out, pat) : out - 1;
	cr_assert(p, "no \"%s\" line in the output: %s", name, out);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* "ingest: accepted N events" */
static uint64_t out_accepted(const char *out)
{
	const char *p = strstr(out, "ingest: accepted ");
	cr_assert(p, "no \"ingest: accepted\" line: %s", out);
	return strtoull(p + strlen("ingest: accepted "), NULL, 10);
}

/* `spate log dump DIR/svc/events`: one line per durable record. */
static char *log_dump(const svc_t *s)
{
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/svc/events", s->dir);
	const char *argv[] = {t_spate_cli(), "log", "dump", dir, NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run((char *const *)argv, &out, &err);
	cr_assert(rc == 0, "spate log dump %s: exit %d: %s", dir, rc, err);
	free(err);
	return out;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The checkpoint of log partition p (its last DONE offset): `spate checkpoint show`
 * prints `NAME OFFSET` lines, NAME ending in "/p". -1 when there is none. */
static int64_t checkpoint_of(const svc_t *s, int part)
{
	char store[PATH_MAX + 16];
	snprintf(store, sizeof(store), "file:%s/ckpt", s->dir);
	const char *argv[] = {t_spate_cli(), "checkpoint", "show", store, NULL};
	char *out = NULL, *err = NULL;
	int rc = t_run((char *const *)argv, &out, &err);
	cr_assert(rc == 0, "spate checkpoint show %s: exit %d: %s", store, rc, err);
	free(err);
	char suffix[32];
	snprintf(suffix, sizeof(suffix), "/%d ", part);
	int64_t ck = -1;
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		size_t nl = (size_t)(sp - line) + 1, sl = strlen(suffix);
		if (nl >= sl && !strncmp(line + nl - sl, suffix, sl))
			ck = strtoll(sp + 1, NULL, 10);
	}
	free(out);
	return ck;
}

/* The id "P/OFFSET" names a record of the dump whose key is `key`, and the pipeline's
 * checkpoint of P reached it (it was DONE). */
static void expect_in_log(const svc_t *s, const char *dump, const char *id, const char *key)
{
	int part = -1;
	uint64_t off = 0;
	cr_assert(sscanf(id, "%d/%" SCNu64, &part, &off) == 2, "id \"%s\" is not P/OFFSET", id);
	char head[64], k[256];
	snprintf(head, sizeof(head), "%d:%" PRIu64 " ts=", part, off);
	snprintf(k, sizeof(k), " key=\"%s\" ", key);
	const char *line = NULL;
	for (const char *p = dump; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, head, strlen(head))) {
			line = p;
			break;
		}
	cr_assert(line, "id %s (key %s) is not in the log:\n%s", id, key, dump);
	const char *eol = strchr(line, '\n');
	char *l = strndup(line, eol ? (size_t)(eol - line) : strlen(line));
	cr_assert(strstr(l, k), "id %s: the log's record is not the event of key %s: %s", id, key, l);
	free(l);
	int64_t ck = checkpoint_of(s, part);
	cr_assert(ck >= (int64_t)off,
	          "id %s: the checkpoint of partition %d is %" PRId64 ": the record was not handled", id,
	          part, ck);
}

/* The "ids" array of a response body (a borrowed reference into *root). */
static json_t *resp_ids(const char *body, json_t **root)
{
	json_error_t je;
	*root = json_loads(body, 0, &je);
	cr_assert(*root, "response is not JSON (%s): %s", je.text, body);
	json_t *ids = json_object_get(*root, "ids");
	cr_assert(json_is_array(ids), "response without \"ids\": %s", body);
	return ids;
}

static void health_ok(const svc_t *s)
{
	char *body = NULL;
	int code = http(s, "GET", "/health", NULL, &body, NULL);
	cr_assert_eq(code, 200, "GET /health: %d %s", code, body);
	cr_assert_str_eq(body, "ok\n");
	free(body);
}

/* A card transaction as the fraud rules read it. */
#define TX(card, amount)                                                                                     \
	"{\"tx\":\"t-" card "\",\"card\":\"" card "\",\"merchant\":\"m-9435\",\"amount\":" amount            \
	",\"currency\":\"EUR\",\"country\":\"ES\",\"ts\":1700000000000}"

Test(ingest, post_answers_ids_that_are_in_the_log_and_handled, .timeout = 120)
{
	svc_t s = {0};
	const char *extra[] = {"--partitions", "2", NULL};
	svc_start(&s, extra);
	health_ok(&s);

	char *body = NULL;
	int code = http(&s, "POST", "/events", TX("c-0", "12.50"), &body, NULL);
	cr_assert_eq(code, 200, "POST one event: %d %s", code, body);
	json_t *r1, *ids1 = resp_ids(body, &r1);
	cr_assert_eq(json_array_size(ids1), 1, "%s", body);
	free(body);
	code = http(&s, "POST", "/events",
	            "[" TX("c-1", "1.00") "," TX("c-2", "9000.00") "," TX("c-3", "3.00") "]", &body, NULL);
	cr_assert_eq(code, 200, "POST three events: %d %s", code, body);
	json_t *r2, *ids2 = resp_ids(body, &r2);
	cr_assert_eq(json_array_size(ids2), 3, "%s", body);
	free(body);

	/* what the service refuses before reading a body */
	code = http(&s, "GET", "/events", NULL, &body, NULL);
	cr_assert_eq(code, 405, "GET /events: %d %s", code, body);
	free(body);
	code = http(&s, "POST", "/nope", "{}", &body, NULL);
	cr_assert_eq(code, 404, "POST /nope: %d %s", code, body);
	free(body);

	char *out = svc_term(&s);
	cr_assert_eq(out_accepted(out), 4, "%s", out);
	cr_assert_eq(out_count(out, "records"), 4, "the pipeline did not handle the 4 events: %s", out);
	cr_assert_eq(out_count(out, "dlq"), 0, "%s", out);
	/* the fraud rules read every event, and flagged the one above fraud.amount.max */
	cr_assert_eq(out_count(out, "fraud.records"), 4, "%s", out);
	cr_assert_eq(out_count(out, "fraud.malformed"), 0, "%s", out);
	cr_assert_eq(out_count(out, "fraud.amount"), 1, "%s", out);
	char *dump = log_dump(&s);
	cr_assert_eq(count_lines(dump), 4, "the log holds other than the 4 events:\n%s", dump);
	expect_in_log(&s, dump, json_string_value(json_array_get(ids1, 0)), "c-0");
	for (int i = 0; i < 3; i++) {
		json_t *id = json_array_get(ids2, (size_t)i);
		cr_assert(json_is_string(id));
		char key[16];
		snprintf(key, sizeof(key), "c-%d", i + 1);
		expect_in_log(&s, dump, json_string_value(id), key);
	}
	free(dump);
	free(out);
	json_decref(r1);
	json_decref(r2);
	svc_cleanup(&s);
}

Test(ingest, a_full_partition_answers_429_with_retry_after, .timeout = 120)
{
	svc_t s = {0};
	const char *extra[] = {"--partitions", "1", "-X", "log.push.max.lag=2", NULL};
	svc_start(&s, extra);
	health_ok(&s);
	char *body = NULL, *hdrs = NULL;
	int code =
	    http(&s, "POST", "/events",
	         "[{\"card\":\"a\"},{\"card\":\"b\"},{\"card\":\"c\"},{\"card\":\"d\"},{\"card\":\"e\"}]",
	         &body, &hdrs);
	cr_assert_eq(code, 429, "POST 5 events with log.push.max.lag=2: %d %s", code, body);
	cr_assert(strcasestr(hdrs, "\nRetry-After: 1\r\n"), "no Retry-After header: %s", hdrs);
	json_t *root, *ids = resp_ids(body, &root);
	cr_assert_eq(json_array_size(ids), 5, "%s", body);
	/* the bound took the first two; the others are null: the client sends them again */
	cr_assert(json_is_string(json_array_get(ids, 0)) && json_is_string(json_array_get(ids, 1)), "%s",
	          body);
	for (size_t i = 2; i < 5; i++)
		cr_assert(json_is_null(json_array_get(ids, i)), "event %zu: %s", i, body);
	const char *err = json_string_value(json_object_get(root, "error"));
	cr_assert(err && strstr(err, "partition 0 is full (log.push.max.lag): 2 of 5 events accepted"), "%s",
	          body);
	free(body);
	free(hdrs);

	char *out = svc_term(&s);
	cr_assert_eq(out_accepted(out), 2, "%s", out);
	cr_assert_eq(out_count(out, "records"), 2, "%s", out);
	char *dump = log_dump(&s);
	cr_assert_eq(count_lines(dump), 2, "the log holds other than the 2 accepted events:\n%s", dump);
	expect_in_log(&s, dump, json_string_value(json_array_get(ids, 0)), "a");
	expect_in_log(&s, dump, json_string_value(json_array_get(ids, 1)), "b");
	free(dump);
	free(out);
	json_decref(root);
	svc_cleanup(&s);
}

/* POST body; expect 400 and an error message equal to want. */
static void expect_400(const svc_t *s, const char *body, const char *want)
{
	char *resp = NULL;
	int code = http(s, "POST", "/events", body, &resp, NULL);
	cr_assert_eq(code, 400, "POST %s: %d %s", body, code, resp);
	json_error_t je;
	json_t *root = json_loads(resp, 0, &je);
	cr_assert(root, "400 body is not JSON: %s", resp);
	const char *err = json_string_value(json_object_get(root, "error"));
	cr_assert(err, "400 without \"error\": %s", resp);
	cr_assert_str_eq(err, want, "POST %s", body);
	cr_assert_null(json_object_get(root, "ids"), "a 400 accepted nothing, yet has ids: %s", resp);
	json_decref(root);
	free(resp);
}

Test(ingest, bad_json_and_bad_events_answer_400_naming_them, .timeout = 120)
{
	svc_t s = {0};
	svc_start(&s, NULL);
	health_ok(&s);
	expect_400(&s, "{\"card\":\"x\",\"amount\":}",
	           "body: invalid JSON at line 1, column 22 (byte 22): unexpected token near '}'");
	expect_400(&s, "[{\"card\":\"x\"},\n{\"card\":\"y\",]",
	           "body: invalid JSON at line 2, column 13 (byte 28): string or '}' expected near ']'");
	/* valid JSON, a bad event: it is named, and the good ones before it are not pushed */
	expect_400(&s, "[{\"card\":\"x\"},{\"amount\":3}]", "event 1: field \"card\" is missing");
	expect_400(&s, "[{\"card\":\"x\"},{\"card\":\"y\"},{\"card\":7}]",
	           "event 2: field \"card\" is not a string");
	expect_400(&s, "[{\"card\":\"x\"},5]", "event 1: a JSON object expected");
	expect_400(&s, "{\"card\":\"\"}", "event 0: field \"card\" is empty");
	expect_400(&s, "[]", "body: an empty array");
	expect_400(&s, "\"card\"",
	           "body: invalid JSON at line 1, column 6 (byte 6): '[' or '{' expected near '\"card\"'");

	char *out = svc_term(&s);
	cr_assert_eq(out_accepted(out), 0, "%s", out);
	cr_assert(strstr(out, "0 requests answered 429, 8 answered 400"), "%s", out);
	cr_assert_eq(out_count(out, "records"), 0, "%s", out);
	char *dump = log_dump(&s);
	cr_assert_str_eq(dump, "", "a 400 request reached the log");
	free(dump);
	free(out);
	svc_cleanup(&s);
}

/* The client processes of the drain test: each posts up to DRAIN_REQUESTS events with
 * unique cards, one request at a time, and writes `CODE CARD BODY` per request; it stops
 * after the first request with no answer (CODE 000: refused once the service stopped
 * listening). */
static const char CLIENT_SH[] =
    "i=0; while [ $i -lt \"$3\" ]; do\n"
    "  card=\"k$2-$i\"\n"
    "  code=$(curl -s --max-time 30 -o \"$4.body\" -w '%{http_code}' -H 'Content-Type: application/json' \\\n"
    "         --data-binary \"{\\\"card\\\":\\\"$card\\\",\\\"amount\\\":$i}\" \"$1/events\")\n"
    "  echo \"$code $card $(tr -d '\\n' < \"$4.body\" 2>/dev/null)\"\n"
    "  rm -f \"$4.body\"\n"
    "  [ \"$code\" = 000 ] && break\n"
    "  i=$((i+1))\n"
    "done\n";

static size_t count_ok(const char *file)
{
	char *t = t_read_file(file, NULL);
	size_t n = 0;
	for (const char *p = t; p && (p = strstr(p, "200 ")); p += 4)
		n += p == t || p[-1] == '\n';
	free(t);
	return n;
}

Test(ingest, sigterm_drains_and_every_accepted_event_is_handled, .timeout = 300)
{
	svc_t s = {0};
	svc_start(&s, NULL);
	health_ok(&s);
	int pids[DRAIN_CLIENTS];
	char files[DRAIN_CLIENTS][PATH_MAX + 16];
	for (int c = 0; c < DRAIN_CLIENTS; c++) {
		snprintf(files[c], sizeof(files[c]), "%s/client%d", s.dir, c);
		char cn[16], nreq[16];
		snprintf(cn, sizeof(cn), "%d", c);
		snprintf(nreq, sizeof(nreq), "%d", DRAIN_REQUESTS);
		const char *argv[] = {"/bin/sh", "-c", CLIENT_SH, "client", s.url, cn, nreq, files[c], NULL};
		pids[c] = t_spawn((char *const *)argv, files[c], NULL, 0);
		cr_assert(pids[c] > 0);
	}
	/* SIGTERM while the clients post (they go on: what comes after is refused) */
	size_t ok = 0;
	for (int64_t end = t_now_ms() + 120000; ok < DRAIN_MIN_OK && t_now_ms() < end; t_sleep_ms(20)) {
		ok = 0;
		for (int c = 0; c < DRAIN_CLIENTS; c++)
			ok += count_ok(files[c]);
	}
	cr_assert(ok >= DRAIN_MIN_OK, "only %zu requests answered 200 in 120 s", ok);
	char *out = svc_term(&s);
	for (int c = 0; c < DRAIN_CLIENTS; c++) {
		int st;
		cr_assert(t_wait_exit(pids[c], 120000, &st) == 0 && st == 0, "client %d: exit %d", c, st);
	}

	/* every id a client got is a record of the log, handled; nothing else was accepted */
	char *dump = log_dump(&s);
	size_t accepted = 0, refused = 0, after = 0;
	for (int c = 0; c < DRAIN_CLIENTS; c++) {
		char *t = t_read_file(files[c], NULL);
		cr_assert(t);
		char *save = NULL;
		for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char card[64];
			int code, used = 0;
			cr_assert(sscanf(line, "%d %63s %n", &code, card, &used) == 2, "client %d: \"%s\"", c,
			          line);
			if (code == 200) {
				json_t *root, *ids = resp_ids(line + used, &root);
				cr_assert_eq(json_array_size(ids), 1, "%s", line);
				expect_in_log(&s, dump, json_string_value(json_array_get(ids, 0)), card);
				json_decref(root);
				accepted++;
			} else {
				/* after the SIGTERM: 503 (draining) or no connection at all */
				cr_assert(code == 503 || code == 0, "client %d: %s", c, line);
				refused += code == 503;
				after++;
			}
		}
		free(t);
	}
	cr_assert_eq(out_accepted(out), accepted, "the clients got %zu ids: %s", accepted, out);
	cr_assert_eq(out_count(out, "records"), accepted,
	             "the pipeline handled other than the %zu accepted: %s", accepted, out);
	cr_assert_eq(count_lines(dump), accepted, "the log holds other than the %zu accepted events",
	             accepted);
	cr_log_info("drain: %zu accepted, %zu answered 503, %zu not answered", accepted, refused,
	            after - refused);
	free(dump);
	free(out);
	svc_cleanup(&s);
}
