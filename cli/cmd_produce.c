/* cmd_produce.c - `spate produce DIR`: append records to the embedded log, or with
 * --kafka TOPIC produce them to a Kafka topic (through the Kafka sink: idempotent,
 * acks=all, each batch written only once every delivery report said delivered), or with
 * --kinesis STREAM to a Kinesis stream (through the Kinesis sink: PutRecords, each batch
 * written only once every entry succeeded).
 *
 * Records come from stdin, one per line (the whole line is the value; with
 * --key-separator C the line is split at its first C into key and value, and a line
 * without C is keyless), or from the gen pool (--gen fraud|sensor|bytes), which replays
 * records pre-generated from a seed, as the gen source does. The log is created when
 * missing (--partitions, default 8). A record goes to --partition P, or to
 * XXH3_64bits(key) % partitions, or round robin when keyless.
 *
 * The writers batch records, compress each batch with `compression` (and
 * `compression.level`) and fsync by flush.ms / flush.records (-X key=value sets them and
 * segment.bytes); everything is flushed before exit, also on SIGINT/SIGTERM.
 * A progress line (records, MB, rate) is drawn on stderr only when it is a terminal.
 */
#include "cmds.h"
#include "gen.h"
#include "sp_registry.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Partitions of a log produce creates without --partitions. */
#define DEFAULT_PARTITIONS 8
/* Records handed to the producer per call (the log's writers batch on their own; a
 * Kafka write waits for its delivery reports, so it takes more at once). */
#define SEND_BATCH       1024
#define KAFKA_SEND_BATCH 32768
/* stdin is read in pieces of this size (grown for a longer line). */
#define READ_CHUNK       ((size_t)1 << 20)
#define KAFKA_READ_CHUNK ((size_t)8 << 20)
/* With --kafka, a partial buffer of lines is sent once stdin stays quiet this long. */
#define KAFKA_LINGER_MS 10
/* The progress line is redrawn at most this often. */
#define PROGRESS_MS 250
/* Records in the gen pool at most (the pool is replayed to reach --records). */
#define GEN_POOL_MAX 65536
/* gen defaults, as the gen.* keys' defaults */
#define GEN_DEFAULT_RECORDS     1000000
#define GEN_DEFAULT_KEYS        10000
#define GEN_DEFAULT_VALUE_BYTES 100
#define GEN_DEFAULT_SEED        1

static const char usage_text[] =
    "usage: spate produce DIR [--partitions N] [--partition P] [--key-separator C]\n"
    "                         [--gen fraud|sensor|bytes [--records N] [--value-bytes B]\n"
    "                          [--keys K] [--seed S]] [-X key=value]...\n"
    "       spate produce --kafka TOPIC -X kafka.bootstrap.servers=H:P [same record options]\n"
    "       spate produce --kinesis STREAM [-X kinesis.region=R] [same record options]\n"
    "\n"
    "Append records to the embedded log at DIR, creating it when missing; or, with --kafka,\n"
    "produce them to TOPIC (idempotent, acks=all; keyless records are spread evenly,\n"
    "kafka.sticky.partitioning.linger.ms=0 unless set; every kafka.* key goes to librdkafka);\n"
    "or, with --kinesis, put them to STREAM (PutRecords; a keyless record gets a unique\n"
    "partition key; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).\n"
    "\n"
    "  --partitions N      partitions of a new log (default %d); an existing log must match\n"
    "  --partition P       write every record to partition P (default: XXH3(key) %% N,\n"
    "                      round robin for keyless records)\n"
    "  --key-separator C   split each line at its first C into key and value\n"
    "                      (a line without C is keyless); default: the line is the value\n"
    "  --gen KIND          instead of stdin, replay pre-generated records: fraud, sensor, bytes\n"
    "  --records N         gen: records to write (default %d)\n"
    "  --value-bytes B     gen bytes: value size (default %d)\n"
    "  --keys K            gen: distinct keys (default %d)\n"
    "  --seed S            gen: seed (default %d)\n"
    "  --kafka TOPIC       produce to this Kafka topic instead of a log (no --partition(s))\n"
    "  --kinesis STREAM    put to this Kinesis stream instead of a log (no --partition(s))\n"
    "  -X key=value        segment.bytes, flush.ms, flush.records, compression=none|gzip|\n"
    "                      snappy|lz4|zstd, compression.level (see `spate config`),\n"
    "                      kafka.* with --kafka, kinesis.* with --kinesis\n"
    "\n"
    "Everything is fsync'd (Kafka, Kinesis: acknowledged) before exit (also on SIGINT/SIGTERM). A\n"
    "progress line is shown on stderr when it is a terminal. A partition's writer opens\n"
    "with the first record that goes to it: with no input nothing is published (segments\n"
    "copied into a log are published by `spate log publish DIR`).\n";

static void usage(FILE *f)
{
	fprintf(f, usage_text, DEFAULT_PARTITIONS, GEN_DEFAULT_RECORDS, GEN_DEFAULT_VALUE_BYTES,
	        GEN_DEFAULT_KEYS, GEN_DEFAULT_SEED);
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

typedef struct progress {
	bool tty;
	uint64_t records, bytes;
	int64_t start_ms, last_ms;
} progress_t;

static void progress_draw(progress_t *pg, bool final)
{
	if (!pg->tty)
		return;
	int64_t now = sp_now_ms();
	if (!final && now - pg->last_ms < PROGRESS_MS)
		return;
	pg->last_ms = now;
	double s = (double)(now - pg->start_ms) / 1000.0;
	fprintf(stderr, "\r%" PRIu64 " records, %.1f MB, %.0f records/s   ", pg->records,
	        (double)pg->bytes / 1e6, s > 0 ? (double)pg->records / s : 0.0);
	if (final)
		fputc('\n', stderr);
}

typedef struct popts {
	const char *dir;
	const char *kafka;   /* --kafka TOPIC */
	const char *kinesis; /* --kinesis STREAM */
	const char *remote;  /* "kafka" or "kinesis" when one of them is given */
	size_t batch;        /* records per send */
	long long partitions, partition, records, value_bytes, keys, seed;
	int sep;
	const char *gen;
	spate_conf_t *conf;
} popts_t;

static int num(const char *name, const char *v, long long min, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min) {
		fprintf(stderr, "spate produce: %s: \"%s\" is not a number >= %lld\n", name, v, min);
		return -1;
	}
	*out = x;
	return 0;
}

/* 0, 1 for --help, -1 on a usage error (printed). */
static int parse(int argc, char **argv, popts_t *o)
{
	o->partitions = o->partition = -1;
	o->records = GEN_DEFAULT_RECORDS;
	o->value_bytes = GEN_DEFAULT_VALUE_BYTES;
	o->keys = GEN_DEFAULT_KEYS;
	o->seed = GEN_DEFAULT_SEED;
	o->sep = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return 1;
		if (a[0] != '-') {
			if (o->dir) {
				fprintf(stderr, "spate produce: unexpected argument \"%s\"\n", a);
				return -1;
			}
			o->dir = a;
			continue;
		}
		const char *eq = strchr(a, '='), *v;
		char name[32];
		size_t nl = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
		if (nl >= sizeof(name))
			nl = sizeof(name) - 1;
		memcpy(name, a, nl);
		name[nl] = 0;
		if (eq && a[1] == '-')
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else {
			fprintf(stderr, "spate produce: %s needs a value\n", name);
			return -1;
		}
		int rc = 0;
		if (!strcmp(name, "--partitions"))
			rc = num(name, v, 1, &o->partitions);
		else if (!strcmp(name, "--partition"))
			rc = num(name, v, 0, &o->partition);
		else if (!strcmp(name, "--records"))
			rc = num(name, v, 0, &o->records);
		else if (!strcmp(name, "--value-bytes"))
			rc = num(name, v, 1, &o->value_bytes);
		else if (!strcmp(name, "--keys"))
			rc = num(name, v, 1, &o->keys);
		else if (!strcmp(name, "--seed"))
			rc = num(name, v, 0, &o->seed);
		else if (!strcmp(name, "--gen"))
			o->gen = v;
		else if (!strcmp(name, "--kafka"))
			o->kafka = v;
		else if (!strcmp(name, "--kinesis"))
			o->kinesis = v;
		else if (!strcmp(name, "--key-separator")) {
			if (strlen(v) != 1) {
				fprintf(stderr,
				        "spate produce: --key-separator takes one character, not \"%s\"\n",
				        v);
				return -1;
			}
			o->sep = (unsigned char)v[0];
		} else if (!strcmp(name, "-X")) {
			char key[128], err[512];
			const char *e2 = strchr(v, '=');
			if (!e2 || (size_t)(e2 - v) >= sizeof(key)) {
				/* not shown: an argument without its key may still be a secret */
				fprintf(stderr,
				        "spate produce: -X takes key=value (a key of at most %zu bytes, then "
				        "=)\n",
				        sizeof(key) - 1);
				return -1;
			}
			memcpy(key, v, (size_t)(e2 - v));
			key[e2 - v] = 0;
			if (spate_conf_set(o->conf, key, e2 + 1, err, sizeof(err)) != SPATE_CONF_OK) {
				fprintf(stderr, "spate produce: -X %s\n", err);
				return -1;
			}
			spate_cli_warn_arg(key, e2 + 1);
		} else {
			fprintf(stderr, "spate produce: unknown option \"%s\" (see --help)\n", a);
			return -1;
		}
		if (rc < 0)
			return -1;
	}
	if (o->kafka && o->kinesis) {
		fprintf(stderr, "spate produce: --kafka and --kinesis: choose one\n");
		return -1;
	}
	o->remote = o->kafka ? "kafka" : o->kinesis ? "kinesis" : NULL;
	if (o->remote && (o->dir || o->partitions >= 0 || o->partition >= 0)) {
		fprintf(stderr,
		        "spate produce: --%s %s takes no DIR, --partitions or --partition (the %s "
		        "exists; the key picks the %s)\n",
		        o->remote, o->kafka ? o->kafka : o->kinesis, o->kafka ? "topic" : "stream",
		        o->kafka ? "partition" : "shard");
		return -1;
	}
	if (!o->dir && !o->remote) {
		fprintf(stderr, "spate produce: DIR is missing (see --help)\n");
		return -1;
	}
	o->batch = o->remote ? KAFKA_SEND_BATCH : SEND_BATCH;
	return 0;
}

/* Where records go: the log's producer, or the Kafka sink. */
typedef struct target {
	sp_log_producer_t *log;
	sp_sink_t sink;
} target_t;

static int target_send(target_t *t, const popts_t *o, const spate_push_record_t *recs, size_t n, char *err,
                       size_t size)
{
	if (t->log)
		return sp_log_producer_send(t->log, recs, n, (int)o->partition, err, size);
	return t->sink.ops->write(&t->sink, recs, n, err, size);
}

/* The log's time-based flush: ms until the next one is due (-1 none), *e on an error. */
static int64_t target_tick(target_t *t, char *err, size_t size, int *e)
{
	*e = 0;
	return t->log ? sp_log_producer_tick(t->log, err, size, e) : -1;
}

static int send_batch(target_t *p, const popts_t *o, spate_push_record_t *recs, size_t n, progress_t *pg)
{
	if (!n)
		return 0;
	char err[1024];
	if (target_send(p, o, recs, n, err, sizeof(err))) {
		fprintf(stderr, "%sspate produce: %s\n", pg->tty ? "\n" : "", err);
		return -1;
	}
	pg->records += n;
	for (size_t i = 0; i < n; i++)
		pg->bytes += recs[i].key_len + recs[i].value_len;
	progress_draw(pg, false);
	return 0;
}

static void line_record(const popts_t *o, char *line, size_t len, spate_push_record_t *r)
{
	memset(r, 0, sizeof(*r));
	char *s = o->sep >= 0 ? memchr(line, o->sep, len) : NULL;
	if (s) {
		r->key = line;
		r->key_len = (size_t)(s - line);
		r->value = s + 1;
		r->value_len = len - r->key_len - 1;
	} else {
		r->value = line;
		r->value_len = len;
	}
}

/* Wait for stdin while flushing on time. 1 readable, 0 stop, -1 error. */
static int wait_stdin(target_t *p)
{
	char err[1024];
	for (;;) {
		if (stop_flag)
			return 0;
		int e;
		int64_t due = target_tick(p, err, sizeof(err), &e);
		if (e) {
			fprintf(stderr, "spate produce: %s\n", err);
			return -1;
		}
		struct pollfd pf = {0, POLLIN, 0};
		int n = poll(&pf, 1, due < 0 ? -1 : (int)due);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "spate produce: stdin: %s\n", strerror(errno));
			return -1;
		}
	}
}

/* Whether stdin has more to read within ms. */
static bool stdin_ready(int ms)
{
	struct pollfd pf = {0, POLLIN, 0};
	return poll(&pf, 1, ms) > 0;
}

static int from_stdin(target_t *p, const popts_t *o, progress_t *pg)
{
	/* a Kafka write waits for its delivery reports: it gets a bigger buffer of lines */
	size_t cap = o->remote ? KAFKA_READ_CHUNK : READ_CHUNK, len = 0;
	char *buf = malloc(cap);
	spate_push_record_t *recs = malloc(o->batch * sizeof(*recs));
	int rc = 0;
	if (!buf || !recs) {
		fprintf(stderr, "spate produce: out of memory\n");
		rc = -1;
		goto out;
	}
	for (bool eof = false; !eof && rc == 0;) {
		int w = wait_stdin(p);
		if (w <= 0) {
			rc = w;
			break;
		}
		if (len == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				fprintf(stderr, "spate produce: out of memory for a line of %zu bytes\n",
				        len);
				rc = -1;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(0, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "spate produce: stdin: %s\n", strerror(errno));
			rc = -1;
			break;
		}
		if (n == 0)
			eof = true;
		len += (size_t)n;
		/* a pipe gives 64 KiB a read: fill the buffer while more comes, so a write takes
		 * many lines (a Kafka write waits a round trip for its delivery reports, and the
		 * writer blocks on the full pipe meanwhile: it lingers KAFKA_LINGER_MS) */
		if (!eof && len < cap && stdin_ready(o->remote ? KAFKA_LINGER_MS : 0))
			continue;
		/* every complete line (and at EOF the last one without a newline) */
		size_t start = 0, cnt = 0;
		for (;;) {
			char *nl = memchr(buf + start, '\n', len - start);
			if (!nl && !(eof && start < len))
				break;
			size_t end = nl ? (size_t)(nl - buf) : len;
			line_record(o, buf + start, end - start, &recs[cnt++]);
			start = nl ? end + 1 : len;
			if (cnt == o->batch) {
				if ((rc = send_batch(p, o, recs, cnt, pg)))
					break;
				cnt = 0;
			}
		}
		if (rc == 0)
			rc = send_batch(p, o, recs, cnt, pg);
		memmove(buf, buf + start, len - start);
		len -= start;
	}
out:
	free(buf);
	free(recs);
	return rc;
}

static int from_gen(target_t *p, const popts_t *o, progress_t *pg)
{
	char err[1024];
	sp_gen_pool_t *pool;
	uint32_t n = o->records > 0 && o->records < GEN_POOL_MAX ? (uint32_t)o->records : GEN_POOL_MAX;
	if (sp_gen_pool_new(o->gen, n, (uint64_t)o->keys, (uint32_t)o->value_bytes, (uint64_t)o->seed, &pool,
	                    err, sizeof(err))) {
		fprintf(stderr, "spate produce: --gen: %s\n", err);
		return -1;
	}
	const sp_gen_rec_t *g = sp_gen_pool_recs(pool);
	uint32_t cnt = sp_gen_pool_count(pool);
	spate_push_record_t *recs = calloc(o->batch, sizeof(*recs));
	int rc = recs ? 0 : -1;
	if (!recs)
		fprintf(stderr, "spate produce: out of memory\n");
	for (long long done = 0; done < o->records && rc == 0 && !stop_flag;) {
		size_t k = 0;
		for (; k < o->batch && done < o->records; k++, done++) {
			const sp_gen_rec_t *r = &g[(uint64_t)done % cnt];
			recs[k].key = r->key;
			recs[k].key_len = r->key_len;
			recs[k].value = r->value;
			recs[k].value_len = r->value_len;
		}
		rc = send_batch(p, o, recs, k, pg);
		int e;
		target_tick(p, err, sizeof(err), &e);
		if (e && rc == 0) {
			fprintf(stderr, "spate produce: %s\n", err);
			rc = -1;
		}
	}
	free(recs);
	sp_gen_pool_free(pool);
	return rc;
}

static int produce_records(target_t *t, const popts_t *o, progress_t *pg)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return o->gen ? from_gen(t, o, pg) : from_stdin(t, o, pg);
}

/* --kafka TOPIC or --kinesis STREAM: that sink, opened on the -X configuration. */
static int produce_remote(popts_t *o)
{
	char err[1024];
	target_t t = {0};
	t.sink.ops = sp_find_sink(o->remote);
	if (!t.sink.ops) {
		fprintf(stderr, "spate produce: --%s: this spate was built without %s\n", o->remote,
		        o->kafka ? "librdkafka" : "libcurl, jansson and libcrypto");
		spate_conf_destroy(o->conf);
		return 1;
	}
	t.sink.arg = o->kafka ? o->kafka : o->kinesis;
	t.sink.conf = o->conf;
	if (t.sink.ops->open(&t.sink, err, sizeof(err))) {
		fprintf(stderr, "spate produce: %s\n", err);
		spate_conf_destroy(o->conf);
		return 1;
	}
	progress_t pg = {isatty(2) == 1, 0, 0, sp_now_ms(), 0};
	int rc = produce_records(&t, o, &pg);
	t.sink.ops->close(&t.sink);
	spate_conf_destroy(o->conf);
	progress_draw(&pg, true);
	return rc ? 1 : 0;
}

int spate_cmd_produce(int argc, char **argv)
{
	popts_t o;
	memset(&o, 0, sizeof(o));
	o.conf = spate_conf_new();
	if (!o.conf) {
		fprintf(stderr, "spate produce: out of memory\n");
		return 1;
	}
	/* --kafka: keyless records spread evenly (librdkafka's sticky partitioner fills one
	 * partition at a time); a -X sets it otherwise */
	char serr[256];
	spate_conf_set(o.conf, "kafka.sticky.partitioning.linger.ms", "0", serr, sizeof(serr));
	if (spate_cli_load_env(o.conf)) { /* SPATE_KAFKA_*, as for spate run */
		spate_conf_destroy(o.conf);
		return 1;
	}
	int pr = parse(argc, argv, &o);
	if (pr != 0) {
		if (pr > 0)
			usage(stdout);
		spate_conf_destroy(o.conf);
		return pr > 0 ? 0 : 2;
	}
	if (o.gen && sp_gen_kind_parse(o.gen) < 0) {
		fprintf(stderr, "spate produce: --gen: \"%s\" is not fraud, sensor or bytes\n", o.gen);
		spate_conf_destroy(o.conf);
		return 2;
	}
	char err[1024];
	if (o.remote)
		return produce_remote(&o);
	sp_log_wopts_t wo;
	sp_log_wopts_from_conf(&wo, o.conf);
	spate_conf_destroy(o.conf);
	o.conf = NULL;
	if (o.partitions > 0 && sp_log_create(o.dir, (int)o.partitions, err, sizeof(err))) {
		fprintf(stderr, "spate produce: %s\n", err);
		return 1;
	}
	target_t t = {0};
	if (sp_log_producer_open(o.dir, DEFAULT_PARTITIONS, &wo, &t.log, err, sizeof(err))) {
		fprintf(stderr, "spate produce: %s\n", err);
		return 1;
	}
	sp_log_producer_t *p = t.log;
	if (o.partition >= sp_log_producer_partitions(p)) {
		fprintf(stderr, "spate produce: %s: partition %lld does not exist (the log has %d)\n", o.dir,
		        o.partition, sp_log_producer_partitions(p));
		sp_log_producer_close(p, NULL, 0);
		return 1;
	}
	progress_t pg = {isatty(2) == 1, 0, 0, sp_now_ms(), 0};
	int rc = produce_records(&t, &o, &pg);
	if (sp_log_producer_close(p, err, sizeof(err))) {
		fprintf(stderr, "spate produce: %s\n", err);
		rc = -1;
	}
	progress_draw(&pg, true);
	return rc ? 1 : 0;
}
