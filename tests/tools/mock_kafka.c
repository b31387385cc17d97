/* mock_kafka.c - `mock-kafka`: librdkafka's mock cluster as a standalone test server.
 *
 * Starts a mock Kafka cluster of N brokers (librdkafka 2.x rd_kafka_mock_cluster_new,
 * listeners on 127.0.0.1, ports picked by the kernel), creates the topics named on the
 * command line, then announces readiness twice: the bootstrap list goes to the file
 * given by --bootstrap-file (written to PATH.tmp and renamed, so a reader never sees
 * half a line) and to stdout as the first line. After that stdin takes fault commands,
 * one per line, and stdout answers each with exactly one line, "ok" or "error: ...":
 *
 *   broker down ID|all         refuse connections and drop open ones (no leader change)
 *   broker up ID|all           accept connections again
 *   rtt ID|all MS              delay every response of the broker by MS
 *   error APIKEY ERRCODE [N]   the next N requests (default 1) of that API, on any
 *                              broker, fail with ERRCODE (by name like Fetch,
 *                              OffsetCommit, Produce or number; error by name like
 *                              NOT_LEADER_FOR_PARTITION, _TRANSPORT or number)
 *   delay APIKEY ID|all MS [N] the next N responses (default 1) of that API from broker
 *                              ID (from each broker with all) are held back MS ms, with
 *                              no error: a consumer group held in its SyncGroup, say
 *   clear                      drop every queued request error
 *   reset                      clear, every broker up, every rtt 0
 *   topic create NAME PARTITIONS [REPLICATION]
 *   leader TOPIC PARTITION ID  move a partition's leader
 *   quit                       answer ok and stop
 * Blank lines and lines starting with '#' are ignored and get no answer.
 *
 * Lifetime: SIGTERM or SIGINT stop it cleanly (exit 0, the bootstrap file removed).
 * End of file on stdin stops it only with --stdin ("stdin is the lifeline": a test
 * that holds the write end of a pipe can crash and still take the cluster with it);
 * without --stdin, EOF just ends command input, so `mock-kafka ... </dev/null &` keeps
 * running in the background until signalled.
 *
 * Facts of the librdkafka 2.0.2 mock this relies on: it has no CreateTopics admin API
 * (topics come from here, or are auto-created with 4 partitions by the first metadata
 * request that names them), it keeps only about 5 MiB per partition (use many
 * partitions for big runs), and `broker down` does not move partition leaders.
 * The cluster hangs off an rd_kafka_t made only for it (rd_kafka_mock_cluster_new);
 * that handle never produces. Exit status: 0 after a clean stop, 2 for a bad command
 * line, 1 when the cluster could not start.
 *
 * `delay` queues on the broker (rd_kafka_mock_broker_push_request_error_rtts), `error`
 * on the cluster. The 2.0.2 mock looks at a broker's own queue for an API first and at
 * the cluster's only when the broker has none, even an emptied one: after a `delay` of
 * an API, `error` of that API no longer reaches that broker. 2.0.2 has no call that
 * drops a broker's queue, so `clear` and `reset` leave delays still queued.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

enum {
	DEFAULT_BROKERS = 3,
	MAX_BROKERS = 64,
	/* replication of a topic when --topic does not say: min(this, brokers) */
	DEFAULT_REPLICATION = 3,
	MAX_PARTITIONS = 100000,
	MAX_TOPICS = 256,
	/* API keys accepted by number; the Kafka protocol defines fewer than this */
	MAX_API_KEY = 128,
	/* count of one `error` or `delay` command */
	MAX_ERROR_COUNT = 100000,
	/* longest `delay` (an hour) */
	MAX_DELAY_MS = 3600000,
	/* a command line longer than this is rejected */
	LINE_MAX_BYTES = 4096,
	/* exit status for a bad command line or a failed start */
	EXIT_USAGE = 2,
	EXIT_START = 1,
};

/* Kafka protocol API keys by name (the protocol's own numbering). */
static const struct {
	const char *name;
	int16_t key;
} api_keys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"DescribeConfigs", 32},
    {"AlterConfigs", 33},
    {"SaslAuthenticate", 36},
    {"CreatePartitions", 37},
    {"DeleteGroups", 42},
    {"OffsetDelete", 47},
};

typedef struct mock {
	rd_kafka_t *rk; /* the handle the cluster hangs off; never produces */
	rd_kafka_mock_cluster_t *mc;
	int brokers;
	const char *bootstrap_file;
	bool pushed[MAX_API_KEY]; /* API keys with queued errors, for `clear` */
} mock_t;

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: mock-kafka [--brokers N] [--topic NAME:PARTITIONS[:REPLICATION]]...\n"
	        "                  [--bootstrap-file PATH] [--stdin] [--debug CONTEXTS]\n"
	        "A librdkafka mock Kafka cluster on 127.0.0.1. Prints the bootstrap list, then\n"
	        "reads fault commands on stdin (see the top of tests/tools/mock_kafka.c):\n"
	        "  broker down|up ID|all, rtt ID|all MS, error APIKEY ERRCODE [COUNT],\n"
	        "  delay APIKEY ID|all MS [COUNT], clear, reset,\n"
	        "  topic create NAME PARTITIONS [REPLICATION], leader TOPIC PART ID, quit\n"
	        "  --brokers N        brokers, ids 1..N (default %d)\n"
	        "  --topic T:P[:R]    create topic T with P partitions (repeatable)\n"
	        "  --bootstrap-file F write the bootstrap list to F once ready (removed at exit)\n"
	        "  --stdin            stop at end of file on stdin (default: keep running)\n"
	        "  --debug CONTEXTS   librdkafka debug contexts, e.g. mock,protocol\n",
	        DEFAULT_BROKERS);
}

/* Parse a whole decimal integer in [min, max]. 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Write one answer line: printf-style text, newline added, flushed. */
static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static int create_topic(mock_t *m, const char *name, long parts, long repl, char *err, size_t size)
{
	rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, name, (int)parts, (int)repl);
	if (e) {
		snprintf(err, size, "topic %.250s: %s", name, rd_kafka_err2str(e));
		return -1;
	}
	return 0;
}

/* A topic to create at start. */
typedef struct topic_spec {
	char name[256];
	long partitions, replication;
} topic_spec_t;

/* Parse "NAME:PARTITIONS[:REPLICATION]" from --topic (before the cluster starts). */
static int topic_arg(int brokers, const char *arg, topic_spec_t *t)
{
	char buf[sizeof(t->name) + 64];
	if (strlen(arg) >= sizeof(buf))
		goto bad;
	strcpy(buf, arg);
	char *parts = strchr(buf, ':');
	char *repl = parts ? strchr(parts + 1, ':') : NULL;
	if (parts)
		*parts++ = 0;
	if (repl)
		*repl++ = 0;
	t->replication = brokers < DEFAULT_REPLICATION ? brokers : DEFAULT_REPLICATION;
	if (!*buf || strlen(buf) >= sizeof(t->name) || !parts ||
	    parse_long(parts, 1, MAX_PARTITIONS, &t->partitions) ||
	    (repl && parse_long(repl, 1, brokers, &t->replication)))
		goto bad;
	strcpy(t->name, buf);
	return 0;
bad:
	fprintf(stderr,
	        "mock-kafka: --topic: \"%s\" is not NAME:PARTITIONS[:REPLICATION] (partitions 1..%d, "
	        "replication 1..%d)\n",
	        arg, MAX_PARTITIONS, brokers);
	return -1;
}

/* Write the bootstrap list to path.tmp, then rename it to path. */
static int write_bootstrap(const char *path, const char *bootstrap, char *err, size_t size)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, size, "--bootstrap-file: path too long");
		return -1;
	}
	FILE *f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, size, "--bootstrap-file: cannot create %.700s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "%s\n", bootstrap);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		snprintf(err, size, "--bootstrap-file: cannot write %.700s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* A broker id for a command: 1..brokers, or "all" / -1 for every broker. */
static int broker_arg(const mock_t *m, const char *s, int32_t *id)
{
	long v;
	if (s && !strcmp(s, "all")) {
		*id = -1;
		return 0;
	}
	if (parse_long(s, -1, m->brokers, &v) || v == 0)
		return -1;
	*id = (int32_t)v;
	return 0;
}

static int api_key_arg(const char *s, int16_t *key)
{
	long v;
	if (!parse_long(s, 0, MAX_API_KEY - 1, &v)) {
		*key = (int16_t)v;
		return 0;
	}
	for (size_t i = 0; s && i < sizeof(api_keys) / sizeof(api_keys[0]); i++)
		if (!strcasecmp(s, api_keys[i].name)) {
			*key = api_keys[i].key;
			return 0;
		}
	return -1;
}

/* An error code by number or by librdkafka's name (with or without RD_KAFKA_RESP_ERR_). */
static int err_code_arg(const char *s, rd_kafka_resp_err_t *code)
{
	const struct rd_kafka_err_desc *d;
	size_t n;
	rd_kafka_get_err_descs(&d, &n);
	long v;
	bool num = !parse_long(s, INT_MIN, INT_MAX, &v);
	const char *prefix = "RD_KAFKA_RESP_ERR_";
	if (s && !strncasecmp(s, prefix, strlen(prefix)))
		s += strlen(prefix);
	for (size_t i = 0; s && i < n; i++) {
		if (!d[i].name)
			continue;
		if (num ? d[i].code == v : !strcasecmp(d[i].name, s)) {
			*code = d[i].code;
			return 0;
		}
	}
	return -1;
}

static void cmd_reset(mock_t *m, bool everything)
{
	for (int k = 0; k < MAX_API_KEY; k++)
		if (m->pushed[k]) {
			rd_kafka_mock_clear_request_errors(m->mc, (int16_t)k);
			m->pushed[k] = false;
		}
	if (everything) {
		rd_kafka_mock_broker_set_up(m->mc, -1);
		rd_kafka_mock_broker_set_rtt(m->mc, -1, 0);
	}
}

/* Run one command line (split into argv). Returns false for quit. Answers exactly once. */
static bool run_command(mock_t *m, int argc, char **argv)
{
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
	const char *cmd = argv[0];
	int32_t id;
	long v, cnt = 1;
	if (!strcmp(cmd, "broker")) {
		if (argc != 3 || (strcmp(argv[1], "down") && strcmp(argv[1], "up")) ||
		    broker_arg(m, argv[2], &id)) {
			answer("error: usage: broker down|up ID|all (ID 1..%d)", m->brokers);
			return true;
		}
		e = !strcmp(argv[1], "down") ? rd_kafka_mock_broker_set_down(m->mc, id)
		                             : rd_kafka_mock_broker_set_up(m->mc, id);
	} else if (!strcmp(cmd, "rtt")) {
		if (argc != 3 || broker_arg(m, argv[1], &id) || parse_long(argv[2], 0, INT_MAX, &v)) {
			answer("error: usage: rtt ID|all MS (ID 1..%d, MS >= 0)", m->brokers);
			return true;
		}
		e = rd_kafka_mock_broker_set_rtt(m->mc, id, (int)v);
	} else if (!strcmp(cmd, "error")) {
		int16_t key;
		rd_kafka_resp_err_t code;
		if (argc < 3 || argc > 4) {
			answer("error: usage: error APIKEY ERRCODE [COUNT]");
			return true;
		}
		if (api_key_arg(argv[1], &key)) {
			answer("error: unknown API key \"%s\" (a name like Produce, Fetch, OffsetCommit, or "
			       "0..%d)",
			       argv[1], MAX_API_KEY - 1);
			return true;
		}
		if (err_code_arg(argv[2], &code)) {
			answer("error: unknown error code \"%s\" (a librdkafka name like "
			       "NOT_LEADER_FOR_PARTITION, "
			       "or a number)",
			       argv[2]);
			return true;
		}
		if (argc == 4 && parse_long(argv[3], 1, MAX_ERROR_COUNT, &cnt)) {
			answer("error: COUNT \"%s\" is not 1..%d", argv[3], MAX_ERROR_COUNT);
			return true;
		}
		rd_kafka_resp_err_t *codes = malloc((size_t)cnt * sizeof(*codes));
		if (!codes) {
			answer("error: out of memory");
			return true;
		}
		for (long i = 0; i < cnt; i++)
			codes[i] = code;
		rd_kafka_mock_push_request_errors_array(m->mc, key, (size_t)cnt, codes);
		free(codes);
		m->pushed[key] = true;
	} else if (!strcmp(cmd, "delay")) {
		int16_t key;
		if (argc < 4 || argc > 5 || api_key_arg(argv[1], &key) || broker_arg(m, argv[2], &id) ||
		    parse_long(argv[3], 1, MAX_DELAY_MS, &v) ||
		    (argc == 5 && parse_long(argv[4], 1, MAX_ERROR_COUNT, &cnt))) {
			answer(
			    "error: usage: delay APIKEY ID|all MS [COUNT] (ID 1..%d, MS 1..%d, COUNT 1..%d)",
			    m->brokers, MAX_DELAY_MS, MAX_ERROR_COUNT);
			return true;
		}
		for (int32_t b = id < 0 ? 1 : id; !e && b <= (id < 0 ? m->brokers : id); b++)
			for (long i = 0; !e && i < cnt; i++)
				e = rd_kafka_mock_broker_push_request_error_rtts(
				    m->mc, b, key, 1, RD_KAFKA_RESP_ERR_NO_ERROR, (int)v);
	} else if (!strcmp(cmd, "clear") || !strcmp(cmd, "reset")) {
		if (argc != 1) {
			answer("error: usage: %s", cmd);
			return true;
		}
		cmd_reset(m, !strcmp(cmd, "reset"));
	} else if (!strcmp(cmd, "topic")) {
		long parts, repl = m->brokers < DEFAULT_REPLICATION ? m->brokers : DEFAULT_REPLICATION;
		char err[512];
		if (argc < 4 || argc > 5 || strcmp(argv[1], "create") ||
		    parse_long(argv[3], 1, MAX_PARTITIONS, &parts) ||
		    (argc == 5 && parse_long(argv[4], 1, m->brokers, &repl))) {
			answer("error: usage: topic create NAME PARTITIONS [REPLICATION] (partitions 1..%d, "
			       "replication 1..%d)",
			       MAX_PARTITIONS, m->brokers);
			return true;
		}
		if (create_topic(m, argv[2], parts, repl, err, sizeof(err))) {
			answer("error: %s", err);
			return true;
		}
	} else if (!strcmp(cmd, "leader")) {
		long part;
		if (argc != 4 || parse_long(argv[2], 0, MAX_PARTITIONS - 1, &part) ||
		    parse_long(argv[3], 1, m->brokers, &v)) {
			answer("error: usage: leader TOPIC PARTITION ID (ID 1..%d)", m->brokers);
			return true;
		}
		e = rd_kafka_mock_partition_set_leader(m->mc, argv[1], (int32_t)part, (int32_t)v);
	} else if (!strcmp(cmd, "quit")) {
		answer("ok");
		return false;
	} else {
		answer("error: unknown command \"%s\" (broker, rtt, error, delay, clear, reset, topic, "
		       "leader, quit)",
		       cmd);
		return true;
	}
	if (e)
		answer("error: %s: %s", cmd, rd_kafka_err2str(e));
	else
		answer("ok");
	return true;
}

/* Split line at blanks and run it. Returns false for quit. */
static bool run_line(mock_t *m, char *line)
{
	enum { MAX_ARGS = 8 };
	char *argv[MAX_ARGS + 1], *save = NULL;
	int argc = 0;
	line += strspn(line, " \t\r");
	if (!*line || *line == '#')
		return true;
	for (char *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
		if (argc == MAX_ARGS) {
			answer("error: too many words (at most %d)", MAX_ARGS);
			return true;
		}
		argv[argc++] = tok;
	}
	argv[argc] = NULL;
	return run_command(m, argc, argv);
}

static int start(mock_t *m, const char *debug, char *err, size_t size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[512];
	/* warnings and worse only: the handle never connects anywhere, so librdkafka's
	 * notice about a missing bootstrap.servers is noise */
	if (rd_kafka_conf_set(conf, "log_level", "4", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
	    (debug && rd_kafka_conf_set(conf, "debug", debug, e, sizeof(e)) != RD_KAFKA_CONF_OK)) {
		snprintf(err, size, "%s", e);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (!m->rk) {
		snprintf(err, size, "rd_kafka_new: %s", e);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	m->mc = rd_kafka_mock_cluster_new(m->rk, m->brokers);
	if (!m->mc) {
		snprintf(err, size, "rd_kafka_mock_cluster_new failed (%d brokers)", m->brokers);
		return -1;
	}
	return 0;
}

static void stop(mock_t *m)
{
	if (m->bootstrap_file)
		unlink(m->bootstrap_file);
	if (m->mc)
		rd_kafka_mock_cluster_destroy(m->mc);
	if (m->rk)
		rd_kafka_destroy(m->rk);
}

/* Serve stdin and the signal fd until quit, a signal, or (with lifeline) EOF. */
static void serve(mock_t *m, int sigfd, bool lifeline)
{
	char buf[LINE_MAX_BYTES + 1];
	size_t len = 0;
	bool in_open = true, skipping = false;
	for (;;) {
		struct pollfd p[2] = {{.fd = sigfd, .events = POLLIN},
		                      {.fd = in_open ? 0 : -1, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "mock-kafka: poll: %s\n", strerror(errno));
			return;
		}
		if (p[0].revents)
			return; /* SIGTERM or SIGINT */
		if (!p[1].revents)
			continue;
		ssize_t n = read(0, buf + len, LINE_MAX_BYTES - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (lifeline)
				return;
			in_open = false;
			continue;
		}
		len += (size_t)n;
		char *nl;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = 0;
			bool go_on = skipping ? true : run_line(m, buf);
			if (skipping) {
				answer("error: line longer than %d bytes", LINE_MAX_BYTES);
				skipping = false;
			}
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
			if (!go_on)
				return;
		}
		if (len == LINE_MAX_BYTES) { /* no newline in a full buffer: drop up to the next one */
			skipping = true;
			len = 0;
		}
	}
}

int main(int argc, char **argv)
{
	mock_t m = {.brokers = DEFAULT_BROKERS};
	static topic_spec_t topics[MAX_TOPICS];
	const char *topic_args[MAX_TOPICS];
	int ntopics = 0;
	const char *debug = NULL, *bootstrap_file = NULL;
	bool lifeline = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;
		long v;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--stdin")) {
			lifeline = true;
		} else if (!strcmp(a, "--brokers") && has_val) {
			if (parse_long(argv[++i], 1, MAX_BROKERS, &v)) {
				fprintf(stderr, "mock-kafka: --brokers: \"%s\" is not 1..%d\n", argv[i],
				        MAX_BROKERS);
				return EXIT_USAGE;
			}
			m.brokers = (int)v;
		} else if (!strcmp(a, "--topic") && has_val) {
			if (ntopics == MAX_TOPICS) {
				fprintf(stderr, "mock-kafka: --topic: at most %d topics\n", MAX_TOPICS);
				return EXIT_USAGE;
			}
			topic_args[ntopics++] = argv[++i];
		} else if (!strcmp(a, "--bootstrap-file") && has_val) {
			bootstrap_file = argv[++i];
		} else if (!strcmp(a, "--debug") && has_val) {
			debug = argv[++i];
		} else {
			fprintf(stderr, "mock-kafka: unknown or incomplete option \"%s\"\n", a);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	for (int i = 0; i < ntopics; i++) /* after --brokers, wherever it came */
		if (topic_arg(m.brokers, topic_args[i], &topics[i]))
			return EXIT_USAGE;
	/* Block the stop signals before librdkafka starts threads (they inherit the mask),
	 * so they arrive only through the signalfd, on this thread. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN); /* a reader that went away must not kill us mid-answer */
	int sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sigfd < 0) {
		fprintf(stderr, "mock-kafka: signalfd: %s\n", strerror(errno));
		return EXIT_START;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	char err[1024];
	if (start(&m, debug, err, sizeof(err)))
		goto fail;
	for (int i = 0; i < ntopics; i++)
		if (create_topic(&m, topics[i].name, topics[i].partitions, topics[i].replication, err,
		                 sizeof(err)))
			goto fail;
	const char *bootstrap = rd_kafka_mock_cluster_bootstraps(m.mc);
	if (bootstrap_file) {
		if (write_bootstrap(bootstrap_file, bootstrap, err, sizeof(err)))
			goto fail;
		m.bootstrap_file = bootstrap_file; /* ours to remove from now on */
	}
	answer("%s", bootstrap);

	serve(&m, sigfd, lifeline);
	stop(&m);
	close(sigfd);
	return 0;
fail:
	fprintf(stderr, "mock-kafka: %s\n", err);
	stop(&m);
	close(sigfd);
	return EXIT_START;
}
