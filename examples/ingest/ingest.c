/* ingest.c - an example ingest service embedding libspate (docs/embedding.md).
 *
 * An HTTP front end (libmicrohttpd) that accepts card transactions as JSON and answers
 * "accepted" only once they cannot be lost: each POST pushes its events durably into the
 * embedded log (source=log:DIR with log.push=true: spate_push_positions returns once the
 * records are fdatasync'd, many connections sharing one sync), and a pipeline in the
 * same process reads them back and runs the fraud rules (handler=fraud), with a DLQ.
 *
 *   spate-ingest --dir /var/lib/ingest [--listen 127.0.0.1:8080] [--partitions 4]
 *                [--key-field card] [--max-body BYTES] [-X key=value ...]
 *
 * HTTP:
 *   POST /events   a JSON object, or an array of them (at most --max-events). Each event
 *                  must be an object whose --key-field is a non-empty string: events of
 *                  one key go to one partition, in order.
 *     200 {"ids":["P/OFFSET",...]}  every event is durable; the pipeline's record id of
 *                  event i is "log/events/" + ids[i] (spate_record_id)
 *     429 {"error":...,"ids":[...]} with Retry-After: a partition is full (its durable
 *                  but unread records reached log.push.max.lag). Events with an id were
 *                  accepted; those with null were not: send only those again.
 *     400 {"error":...}  the body is not JSON, or event i is not an object or lacks its
 *                  key; nothing of the request was accepted
 *     413 the body is larger than --max-body; 503 while draining; 404/405 otherwise
 *   GET /health    200 "ok"
 *
 * SIGTERM/SIGINT drain: stop accepting connections, let requests in flight finish,
 * close the push input; the pipeline handles everything accepted, writes its last
 * checkpoint, prints its summary and the process exits 0. A second signal stops at once
 * (what is accepted stays in the log for the next start).
 *
 * Threads: libmicrohttpd runs a thread per connection (bounded by --max-connections);
 * a request's thread blocks in spate_push_positions for the group commit it joins. The
 * main thread runs the engine (spate_engine_start/run must share a thread), a third
 * waits for signals.
 */
#include <spate/spate.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_X 64

typedef struct svc {
	spate_engine_t *e;
	struct MHD_Daemon *d;
	int partitions;
	const char *key_field;
	size_t max_body, max_events;
	_Atomic int inflight;   /* requests between their first byte and their response */
	_Atomic bool draining;
	_Atomic uint64_t accepted, full, bad;
} svc_t;

/* One POST's body as it arrives. */
typedef struct req {
	char *buf;
	size_t len, cap;
	bool too_large;
} req_t;

static void usage(FILE *fp)
{
	fprintf(fp, "usage: spate-ingest --dir DIR [--listen ADDR:PORT] [--partitions N] [--key-field NAME]\n"
	            "                    [--max-body BYTES] [--max-events N] [--max-connections N] [-X key=value ...]\n"
	            "  --dir DIR          the service's directory: DIR/events (the log), DIR/dlq (the DLQ)\n"
	            "  --listen ADDR:PORT where to listen (default 127.0.0.1:8080; port 0: any free one)\n"
	            "  --partitions N     partitions of a new log (default 4)\n"
	            "  --key-field NAME   the event field that keys it (default card)\n"
	            "  --max-body BYTES   largest request body (default 1048576)\n"
	            "  --max-events N     most events in one request (default 1000)\n"
	            "  -X key=value       any spate setting (spate config lists them), e.g.\n"
	            "                     -X log.push.max.lag=100000 -X fraud.amount.max=5000\n");
}

/* ---- responses ----------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, const char *type,
                             int retry_after)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (retry_after > 0) {
		char s[16];
		snprintf(s, sizeof(s), "%d", retry_after);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, s);
	}
	enum MHD_Result rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* {"error": msg} (and "ids" when not NULL, which it takes) */
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg, json_t *ids,
                                   int retry_after)
{
	json_t *o = json_object();
	json_object_set_new(o, "error", json_string(msg));
	if (ids)
		json_object_set_new(o, "ids", ids);
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!body)
		return MHD_NO;
	size_t n = strlen(body);
	char *nl = realloc(body, n + 2);
	if (nl) {
		body = nl;
		memcpy(body + n, "\n", 2);
	}
	return reply(c, status, body, "application/json", retry_after);
}

/* ---- POST /events ---------------------------------------------------------------------- */

static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

typedef struct ev {
	char *value;      /* the event, compact JSON */
	const char *key;  /* its key field (in the parsed document) */
	size_t key_len;
	int part;
	spate_position_t pos;
	bool taken;
} ev_t;

static enum MHD_Result post_events(svc_t *s, struct MHD_Connection *c, req_t *q)
{
	char msg[512];
	if (q->too_large) {
		snprintf(msg, sizeof(msg), "body: larger than --max-body (%zu bytes)", s->max_body);
		return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, msg, NULL, 0);
	}
	json_error_t je;
	json_t *root = json_loadb(q->buf ? q->buf : "", q->len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(msg, sizeof(msg), "body: invalid JSON at line %d, column %d (byte %d): %s", je.line, je.column,
		         je.position, je.text);
		atomic_fetch_add(&s->bad, 1);
		return reply_error(c, MHD_HTTP_BAD_REQUEST, msg, NULL, 0);
	}
	size_t n = json_is_array(root) ? json_array_size(root) : 1;
	const char *what = NULL;
	if (!json_is_array(root) && !json_is_object(root))
		what = "body: a JSON object or an array of objects expected";
	else if (n == 0)
		what = "body: an empty array";
	if (!what && n > s->max_events) {
		snprintf(msg, sizeof(msg), "body: %zu events, more than --max-events (%zu)", n, s->max_events);
		what = msg;
	}
	ev_t *evs = what ? NULL : calloc(n, sizeof(ev_t));
	if (!what && !evs)
		what = "out of memory";
	/* every event is checked before any is pushed: a 400 accepted nothing */
	for (size_t i = 0; !what && i < n; i++) {
		json_t *ev = json_is_array(root) ? json_array_get(root, i) : root;
		if (!json_is_object(ev)) {
			snprintf(msg, sizeof(msg), "event %zu: a JSON object expected", i);
			what = msg;
			break;
		}
		json_t *k = json_object_get(ev, s->key_field);
		if (!k || !json_is_string(k) || json_string_length(k) == 0) {
			snprintf(msg, sizeof(msg), "event %zu: field \"%s\" is %s", i, s->key_field,
			         !k ? "missing" : !json_is_string(k) ? "not a string" : "empty");
			what = msg;
			break;
		}
		evs[i].key = json_string_value(k);
		evs[i].key_len = json_string_length(k);
		evs[i].part = (int)(fnv1a(evs[i].key, evs[i].key_len) % (uint32_t)s->partitions);
		if (!(evs[i].value = json_dumps(ev, JSON_COMPACT)))
			what = "out of memory";
	}
	if (what) {
		bool oom = evs && !strcmp(what, "out of memory");
		if (evs)
			for (size_t i = 0; i < n; i++)
				free(evs[i].value);
		free(evs);
		json_decref(root);
		if (!oom)
			atomic_fetch_add(&s->bad, 1);
		return reply_error(c, oom ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST, what, NULL, 0);
	}

	/* One push per partition, its events in request order: a key's events stay in order,
	 * and a partition that takes only some takes a prefix of them. */
	spate_push_record_t *recs = calloc(n, sizeof(*recs));
	spate_position_t *pos = calloc(n, sizeof(*pos));
	size_t *idx = calloc(n, sizeof(*idx));
	int fail = 0, full_part = -1;
	if (!recs || !pos || !idx)
		fail = SPATE_ERR_NOMEM;
	for (int p = 0; !fail && p < s->partitions; p++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (evs[i].part == p) {
				idx[m] = i;
				recs[m++] = (spate_push_record_t){.key = evs[i].key, .key_len = evs[i].key_len,
				                                  .value = evs[i].value, .value_len = strlen(evs[i].value)};
			}
		if (!m)
			continue;
		int rc = spate_push_positions(s->e, p, recs, m, pos);
		if (rc < 0) {
			fail = rc;
			break;
		}
		for (int j = 0; j < rc; j++) {
			evs[idx[j]].taken = true;
			evs[idx[j]].pos = pos[j];
		}
		atomic_fetch_add(&s->accepted, (uint64_t)rc);
		if ((size_t)rc < m && full_part < 0)
			full_part = p;
	}
	json_t *ids = json_array();
	size_t taken = 0;
	for (size_t i = 0; i < n; i++) {
		if (evs[i].taken) {
			char b[64], id[96];
			snprintf(id, sizeof(id), "%d/%s", evs[i].part, spate_position_fmt(&evs[i].pos, b, sizeof(b)));
			json_array_append_new(ids, json_string(id));
			taken++;
		} else {
			json_array_append_new(ids, json_null());
		}
		free(evs[i].value);
	}
	free(evs);
	free(recs);
	free(pos);
	free(idx);
	json_decref(root);
	if (fail) {
		/* SPATE_ERR_STATE: the input is closed (draining); others: the log failed */
		snprintf(msg, sizeof(msg), "push: %s (%s)%s", spate_err2str(fail), spate_err2name(fail),
		         taken ? "; events with an id were accepted" : "");
		return reply_error(c, fail == SPATE_ERR_STATE ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_INTERNAL_SERVER_ERROR,
		                   msg, ids, fail == SPATE_ERR_STATE ? 1 : 0);
	}
	if (full_part >= 0) {
		atomic_fetch_add(&s->full, 1);
		snprintf(msg, sizeof(msg),
		         "partition %d is full (log.push.max.lag): %zu of %zu events accepted; send those whose id is "
		         "null again later",
		         full_part, taken, n);
		return reply_error(c, MHD_HTTP_TOO_MANY_REQUESTS, msg, ids, 1);
	}
	json_t *o = json_object();
	json_object_set_new(o, "ids", ids);
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!body)
		return MHD_NO;
	size_t bl = strlen(body);
	char *nl = realloc(body, bl + 2);
	if (nl) {
		body = nl;
		memcpy(body + bl, "\n", 2);
	}
	return reply(c, MHD_HTTP_OK, body, "application/json", 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	svc_t *s = cls;
	(void)version;
	if (!*con_cls) {
		/* the request's first call: headers only */
		if (!strcmp(url, "/health") && !strcmp(method, "GET"))
			return reply(c, MHD_HTTP_OK, strdup("ok\n"), "text/plain", 0);
		if (strcmp(url, "/events"))
			return reply_error(c, MHD_HTTP_NOT_FOUND, "no such path: POST /events or GET /health", NULL, 0);
		if (strcmp(method, "POST"))
			return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "/events takes POST", NULL, 0);
		if (atomic_load(&s->draining))
			return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "draining: the service is stopping", NULL, 1);
		req_t *q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		atomic_fetch_add(&s->inflight, 1);
		*con_cls = q;
		return MHD_YES;
	}
	req_t *q = *con_cls;
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (q->too_large || q->len + n > s->max_body) {
			q->too_large = true; /* read on, answer 413 at the end */
			return MHD_YES;
		}
		if (q->len + n > q->cap) {
			size_t cap = q->cap ? q->cap : 4096;
			while (cap < q->len + n)
				cap *= 2;
			char *b = realloc(q->buf, cap);
			if (!b)
				return MHD_NO;
			q->buf = b;
			q->cap = cap;
		}
		memcpy(q->buf + q->len, upload, n);
		q->len += n;
		return MHD_YES;
	}
	return post_events(s, c, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	svc_t *s = cls;
	(void)c;
	(void)toe;
	req_t *q = *con_cls;
	if (!q)
		return;
	free(q->buf);
	free(q);
	*con_cls = NULL;
	atomic_fetch_sub(&s->inflight, 1);
}

/* ---- signals: drain, then stop ------------------------------------------------------------ */

static void *signal_thread(void *a)
{
	svc_t *s = a;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	for (int n = 0;; n++) {
		int sig;
		if (sigwait(&set, &sig))
			continue;
		if (n > 0) {
			fprintf(stderr, "spate-ingest: %s again: stopping now\n", strsignal(sig));
			spate_engine_stop(s->e);
			spate_engine_stop(s->e);
			continue;
		}
		fprintf(stderr, "spate-ingest: %s: draining\n", strsignal(sig));
		atomic_store(&s->draining, true);
		/* no new connection; requests in flight finish (their pushes are durable) */
		MHD_socket ls = MHD_quiesce_daemon(s->d);
		if (ls != MHD_INVALID_SOCKET)
			close(ls);
		for (int i = 0; i < 30000 && atomic_load(&s->inflight) > 0; i++) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		}
		/* the pipeline handles what was accepted, then spate_engine_run returns */
		spate_push_close(s->e);
	}
	return NULL;
}

/* ---- main ------------------------------------------------------------------------------- */

static int parse_listen(const char *v, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(v, ':');
	if (!colon || (size_t)(colon - v) >= sizeof(host))
		return -1;
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int parse_size(const char *opt, const char *v, size_t lo, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || !*v || n < lo) {
		fprintf(stderr, "spate-ingest: %s %s: a number of at least %zu expected\n", opt, v, lo);
		return -1;
	}
	*out = (size_t)n;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *listen = "127.0.0.1:8080";
	size_t partitions = 4, max_conns = 256;
	svc_t s = {.key_field = "card", .max_body = 1 << 20, .max_events = 1000};
	const char *xs[MAX_X];
	int nx = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "spate-ingest: %s: missing its value (or unknown)\n", a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--listen"))
			listen = v;
		else if (!strcmp(a, "--key-field"))
			s.key_field = v;
		else if (!strcmp(a, "--partitions")) {
			if (parse_size(a, v, 1, &partitions))
				return 2;
		} else if (!strcmp(a, "--max-body")) {
			if (parse_size(a, v, 2, &s.max_body))
				return 2;
		} else if (!strcmp(a, "--max-events")) {
			if (parse_size(a, v, 1, &s.max_events))
				return 2;
		} else if (!strcmp(a, "--max-connections")) {
			if (parse_size(a, v, 1, &max_conns))
				return 2;
		} else if (!strcmp(a, "-X")) {
			if (nx == MAX_X) {
				fprintf(stderr, "spate-ingest: more than %d -X settings\n", MAX_X);
				return 2;
			}
			xs[nx++] = v;
		} else {
			fprintf(stderr, "spate-ingest: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "spate-ingest: --dir is required\n");
		usage(stderr);
		return 2;
	}
	if (partitions > 4096) {
		fprintf(stderr, "spate-ingest: --partitions %zu: at most 4096\n", partitions);
		return 2;
	}
	s.partitions = (int)partitions;
	struct sockaddr_in sa;
	if (parse_listen(listen, &sa)) {
		fprintf(stderr, "spate-ingest: --listen %s: ADDR:PORT expected, ADDR an IPv4 address\n", listen);
		return 2;
	}
	/* private, as spate makes its logs and DLQs (0700) */
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "spate-ingest: %s: %s\n", dir, strerror(errno));
		return 1;
	}

	/* the pipeline: the durable push into DIR/events, the fraud rules, a DLQ in DIR/dlq */
	char err[1024], src[4096], dlq[4096], nparts[16];
	snprintf(src, sizeof(src), "log:%s/events", dir);
	snprintf(dlq, sizeof(dlq), "log:%s/dlq", dir);
	snprintf(nparts, sizeof(nparts), "%d", s.partitions);
	spate_conf_t *conf = spate_conf_new();
	const char *kv[] = {"source", src, "log.push", "true", "push.partitions", nparts, "handler", "fraud",
	                    "dlq", dlq, NULL};
	for (int i = 0; kv[i]; i += 2)
		if (spate_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "spate-ingest: %s\n", err);
			return 2;
		}
	for (int i = 0; i < nx; i++) {
		char key[256];
		const char *eq = strchr(xs[i], '=');
		if (!eq || eq == xs[i] || (size_t)(eq - xs[i]) >= sizeof(key)) {
			fprintf(stderr, "spate-ingest: -X %s: key=value expected\n", xs[i]);
			return 2;
		}
		memcpy(key, xs[i], (size_t)(eq - xs[i]));
		key[eq - xs[i]] = 0;
		if (spate_conf_set(conf, key, eq + 1, err, sizeof(err)) != SPATE_CONF_OK) {
			fprintf(stderr, "spate-ingest: -X %s: %s\n", xs[i], err);
			return 2;
		}
	}

	/* signals are taken by the signal thread alone: block them before any thread starts */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	s.e = spate_engine_new(conf, NULL, err, sizeof(err));
	if (!s.e) {
		spate_conf_destroy(conf);
		fprintf(stderr, "spate-ingest: %s\n", err);
		return 2;
	}
	if (spate_engine_start(s.e, err, sizeof(err)) != SPATE_OK) {
		fprintf(stderr, "spate-ingest: %s\n", err);
		spate_engine_destroy(s.e);
		return 1;
	}
	s.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
	                           MHD_USE_ERROR_LOG,
	                       0, NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                       MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s, MHD_OPTION_CONNECTION_LIMIT,
	                       (unsigned)max_conns, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (!s.d) {
		fprintf(stderr, "spate-ingest: cannot listen on %s: %s\n", listen, strerror(errno));
		spate_engine_destroy(s.e);
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_BIND_PORT);
	char host[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
	fprintf(stderr, "spate-ingest: listening on http://%s:%u/events, log %s/events\n", host,
	        info ? info->port : ntohs(sa.sin_port), dir);
	pthread_t sig;
	pthread_create(&sig, NULL, signal_thread, &s);

	int rc = spate_engine_run(s.e, err, sizeof(err));
	MHD_stop_daemon(s.d);
	if (rc != SPATE_OK)
		fprintf(stderr, "spate-ingest: %s\n", err);
	spate_summary_t sum;
	spate_engine_summary(s.e, &sum);
	char text[8192];
	if (spate_summary_text(&sum, text, sizeof(text)) > 0)
		fputs(text, stdout);
	spate_engine_report(s.e, stdout); /* the fraud rules' counts */
	printf("ingest: accepted %" PRIu64 " events; %" PRIu64 " requests answered 429, %" PRIu64 " answered 400\n",
	       atomic_load(&s.accepted), atomic_load(&s.full), atomic_load(&s.bad));
	fflush(stdout);
	spate_engine_destroy(s.e);
	return rc == SPATE_OK ? 0 : 1;
}
