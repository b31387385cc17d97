/* cmd_log.c - `spate log create|ls|dump|verify|publish DIR`: the embedded log by hand.
 *
 * create makes a log (or checks an existing one); ls lists partitions and segments with
 * their base and last offsets and sizes; dump prints records; verify checks every batch
 * (CRC32C, header, offsets) and decodes every record (compressed batches decompressed),
 * partitions on threads, counts batches and records per codec, and names the file and byte
 * offset of the first bad batch of each partition; publish opens each partition's writer once, which
 * recovers the last segment and fsyncs and publishes what the partition holds (segments
 * copied in, e.g. Kafka's, become readable), and says what it published. Only create
 * and publish write anything; ls, dump and verify open files read-only and never change
 * them (dump reads through the same reader the source uses, so it shows only what the
 * writer published durable).
 *
 * Exit codes: 0 fine, 1 a failure (bad data, I/O), 2 a usage error.
 */
#include "cmds.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Partitions of a log `spate log create` makes without --partitions (as produce). */
#define DEFAULT_PARTITIONS 8
/* dump: chunks taken per poll, and how long one wait for the reader may take before
 * the dump gives up on data that was published but cannot be read. */
#define DUMP_POLL_MAX 16
#define DUMP_WAIT_MS  10000

static const char usage_text[] =
    "usage: spate log create DIR [--partitions N]\n"
    "       spate log ls DIR\n"
    "       spate log dump DIR [--partition P] [--from OFFSET] [--count N]\n"
    "       spate log verify DIR [--partition P]\n"
    "       spate log publish DIR [--partition P]\n"
    "\n"
    "The embedded log: a directory with a folder per partition of Kafka RecordBatch v2\n"
    "segments (docs/log.md). Only create and publish write; ls, dump and verify never\n"
    "change a file.\n"
    "\n"
    "  create   make the log (default %d partitions); an existing log must match --partitions\n"
    "  ls       partitions, segments, base and last offsets, sizes, the durable length\n"
    "  dump     print records: partition:offset, timestamp, key, value, headers\n"
    "           (default: every partition, from its first offset, all durable records)\n"
    "  verify   check every batch (CRC32C, header, offsets) and decode every record (compressed\n"
    "           batches decompressed), partitions on all cores; counts per codec; name the\n"
    "           first bad batch's file and byte offset; exit 1 when any partition is bad\n"
    "  publish  make segments copied into a partition folder (Kafka's .log files) readable:\n"
    "           open the partition's writer once (every partition, or P), which checks the\n"
    "           last segment (truncates a torn tail, reports corruption with file and byte\n"
    "           offset), fsyncs and publishes what is there; prints what it published.\n"
    "           `spate produce` publishes only partitions it writes a record to.\n";

static void usage(FILE *f)
{
	fprintf(f, usage_text, DEFAULT_PARTITIONS);
}

/* Option parsing: "--name VALUE" or "--name=VALUE". */
typedef struct opts {
	const char *dir;
	long long partitions, partition, from, count;
	bool help;
} opts_t;

static int parse_num(const char *name, const char *v, long long min, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min) {
		fprintf(stderr, "spate log: --%s: \"%s\" is not a number >= %lld\n", name, v, min);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse_opts(int argc, char **argv, const char *allowed, opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->partitions = -1;
	o->partition = -1;
	o->from = -1;
	o->count = -1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			o->help = true;
			return 0;
		}
		if (strncmp(a, "--", 2)) {
			if (o->dir) {
				fprintf(stderr, "spate log: unexpected argument \"%s\"\n", a);
				return -1;
			}
			o->dir = a;
			continue;
		}
		char name[32];
		const char *eq = strchr(a, '='), *val;
		size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (nl >= sizeof(name))
			nl = sizeof(name) - 1;
		memcpy(name, a + 2, nl);
		name[nl] = 0;
		char key[40];
		snprintf(key, sizeof(key), " %s ", name);
		if (!strstr(allowed, key)) {
			fprintf(stderr, "spate log: unknown option \"%s\" (see --help)\n", a);
			return -1;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "spate log: --%s needs a value\n", name);
			return -1;
		}
		long long *dst = !strcmp(name, "partitions")  ? &o->partitions
		                 : !strcmp(name, "partition") ? &o->partition
		                 : !strcmp(name, "from")      ? &o->from
		                                              : &o->count;
		if (parse_num(name, val, !strcmp(name, "partitions") ? 1 : 0, dst) < 0)
			return -1;
	}
	if (!o->dir) {
		fprintf(stderr, "spate log: DIR is missing (see --help)\n");
		return -1;
	}
	return 0;
}

static int cmd_create(const opts_t *o)
{
	char err[1024];
	int parts = o->partitions > 0 ? (int)o->partitions : DEFAULT_PARTITIONS;
	int have;
	bool existed = sp_log_meta_read(o->dir, &have, NULL, 0) == SPATE_OK;
	int rc = sp_log_create(o->dir, o->partitions > 0 ? parts : (existed ? 0 : parts), err, sizeof(err));
	if (rc) {
		fprintf(stderr, "spate log create: %s\n", err);
		return 1;
	}
	sp_log_meta_read(o->dir, &have, NULL, 0);
	printf("%s: %s log with %d partitions\n", o->dir, existed ? "existing" : "created", have);
	return 0;
}

/* ---- ls --------------------------------------------------------------------------- */

/* Last offset of a segment (scanning from its last index entry); -1 when empty. */
static int64_t seg_last(const char *pdir, uint64_t base, uint64_t *size)
{
	char path[SP_LOG_PATH_MAX];
	sp_log_seg_path(path, sizeof(path), pdir, base, "log");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	*size = 0;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	*size = (uint64_t)st.st_size;
	int64_t last = -1;
	uint64_t pos = sp_log_index_lookup(pdir, base, UINT64_MAX, *size, NULL);
	sp_log_scan_t sc;
	if (sp_log_scan_init(&sc, fd, pos, *size) == SPATE_OK) {
		int r;
		while ((r = sp_log_scan_next(&sc, false, false)) == SP_LOG_SCAN_BATCH)
			last = sp_log_batch_last(&sc.h);
		if (r != SP_LOG_SCAN_END && pos) { /* the index led astray: from the start */
			sp_log_scan_seek(&sc, 0);
			while (sp_log_scan_next(&sc, false, false) == SP_LOG_SCAN_BATCH)
				last = sp_log_batch_last(&sc.h);
		}
		sp_log_scan_free(&sc);
	}
	close(fd);
	return last;
}

static int cmd_ls(const opts_t *o)
{
	char err[1024], pdir[SP_LOG_PATH_MAX], path[SP_LOG_PATH_MAX];
	int parts;
	if (sp_log_meta_read(o->dir, &parts, err, sizeof(err))) {
		fprintf(stderr, "spate log ls: %s\n", err);
		return 1;
	}
	printf("log %s: format %d, %d partitions\n", o->dir, SP_LOG_FORMAT_VERSION, parts);
	int bad = 0;
	for (int i = 0; i < parts; i++) {
		sp_log_part_path(pdir, sizeof(pdir), o->dir, i);
		sp_log_durable_t d;
		int rc = sp_log_durable_read(pdir, &d, err, sizeof(err));
		sp_log_seglist_t segs = {0};
		char lerr[1024];
		int lrc = sp_log_seglist(pdir, &segs, lerr, sizeof(lerr));
		if (rc == SPATE_OK)
			printf("partition %d: durable up to offset %" PRIu64 " (next), segment %020" PRIu64
			       ".log, %" PRIu64 " bytes\n",
			       i, d.next, d.seg, d.len);
		else if (rc == SPATE_ERR_NOT_FOUND)
			printf("partition %d: never opened by a writer (no durable file)%s\n", i,
			       segs.n ? ": its segments are not readable until `spate log publish`" : "");
		else
			printf("partition %d: %s\n", i, err);
		if (lrc) {
			fprintf(stderr, "spate log ls: %s\n", lerr);
			sp_log_seglist_free(&segs);
			bad = 1;
			continue;
		}
		if (segs.n)
			printf("  %-24s %20s %20s %12s %10s\n", "SEGMENT", "BASE", "LAST", "BYTES", "INDEX");
		for (size_t j = 0; j < segs.n; j++) {
			uint64_t size;
			int64_t last = seg_last(pdir, segs.base[j], &size);
			struct stat st;
			sp_log_seg_path(path, sizeof(path), pdir, segs.base[j], "index");
			long long isize = stat(path, &st) == 0 ? (long long)st.st_size : -1;
			char lastbuf[32], ibuf[32];
			if (last < 0)
				snprintf(lastbuf, sizeof(lastbuf), "-");
			else
				snprintf(lastbuf, sizeof(lastbuf), "%" PRId64, last);
			if (isize < 0)
				snprintf(ibuf, sizeof(ibuf), "missing");
			else
				snprintf(ibuf, sizeof(ibuf), "%lld", isize);
			printf("  %020" PRIu64 ".log %20" PRIu64 " %20s %12" PRIu64 " %10s\n", segs.base[j],
			       segs.base[j], lastbuf, size, ibuf);
		}
		sp_log_seglist_free(&segs);
	}
	return bad;
}

/* ---- dump -------------------------------------------------------------------------- */

static void put_escaped(FILE *f, const void *p, size_t n)
{
	const unsigned char *s = p;
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void put_bytes(FILE *f, const void *p, size_t n)
{
	if (!p)
		fputs("null", f);
	else
		put_escaped(f, p, n);
}

static void print_record(const spate_record_t *r, int partition)
{
	printf("%d:%" PRIu64 " ts=%" PRId64 " key=", partition, r->position.w[2], r->timestamp_ms);
	put_bytes(stdout, r->key, r->key_len);
	fputs(" value=", stdout);
	put_bytes(stdout, r->value, r->value_len);
	fputs(" headers=[", stdout);
	for (size_t i = 0; i < r->header_cnt; i++) {
		if (i)
			fputs(", ", stdout);
		put_escaped(stdout, r->headers[i].key, r->headers[i].key_len);
		fputc('=', stdout);
		put_bytes(stdout, r->headers[i].value, r->headers[i].value_len);
	}
	fputs("]\n", stdout);
}

static sp_chunk_t *dump_alloc(void *opaque, sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	(void)opaque;
	sp_chunk_t *c = calloc(1, sizeof(*c) + n * sizeof(spate_record_t) + hdr_cap * sizeof(spate_header_t));
	if (!c)
		return NULL;
	c->part = p;
	c->n = n;
	c->recs = (spate_record_t *)(c + 1);
	c->hdrs = (spate_header_t *)(c->recs + n);
	c->hdr_cap = hdr_cap;
	for (uint32_t i = 0; i < n; i++) {
		c->recs[i].version = SPATE_RECORD_VERSION;
		c->recs[i].partition = &p->pub;
	}
	return c;
}

static void dump_free(void *opaque, sp_chunk_t *c)
{
	(void)opaque;
	free(c);
}

/* Dump one partition; 0, or 1 on an error (printed). */
static int dump_partition(const opts_t *o, int i, int parts)
{
	char err[1024];
	sp_log_ropts_t ro = {0};
	ro.alloc = dump_alloc;
	ro.free = dump_free;
	sp_log_reader_t *rd;
	if (sp_log_reader_open(o->dir, &ro, &rd, err, sizeof(err))) {
		fprintf(stderr, "spate log dump: %s\n", err);
		return 1;
	}
	sp_part_t part;
	memset(&part, 0, sizeof(part));
	part.pub.source = "log";
	part.pub.partition = i;
	int rc = 0;
	uint64_t start, next;
	if (sp_log_reader_bounds(rd, i, &start, &next, err, sizeof(err))) {
		fprintf(stderr, "spate log dump: %s\n", err);
		sp_log_reader_close(rd);
		return 1;
	}
	uint64_t from = o->from >= 0 ? (uint64_t)o->from : start;
	if (from < start)
		from = start;
	if (from > next)
		fprintf(stderr,
		        "spate log dump: partition %d: --from %" PRIu64
		        " is past its end (next offset %" PRIu64 ")\n",
		        i, from, next);
	for (int j = 0; j < parts; j++)
		sp_log_reader_set_end(rd, j, j == i && next > from, next ? next - 1 : 0);
	sp_log_reader_bind(rd, i, &part);
	if (from <= next && sp_log_reader_seek(rd, i, from, err, sizeof(err))) {
		fprintf(stderr, "spate log dump: %s\n", err);
		sp_log_reader_close(rd);
		return 1;
	}
	long long left = o->count;
	while (left != 0 && !sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		if (poll(&pf, 1, DUMP_WAIT_MS) == 0) {
			fprintf(stderr, "spate log dump: partition %d: no progress in %d ms\n", i,
			        DUMP_WAIT_MS);
			rc = 1;
			break;
		}
		sp_chunk_t *out[DUMP_POLL_MAX];
		int n = sp_log_reader_poll(rd, out, DUMP_POLL_MAX, UINT64_MAX, err, sizeof(err));
		if (n < 0) {
			fprintf(stderr, "spate log dump: %s\n", err);
			rc = 1;
			break;
		}
		for (int k = 0; k < n; k++) {
			for (uint32_t m = 0; m < out[k]->n && left != 0; m++) {
				print_record(&out[k]->recs[m], i);
				if (left > 0)
					left--;
			}
			out[k]->release(out[k], out[k]->release_opaque);
			free(out[k]);
		}
	}
	sp_log_reader_close(rd);
	return rc;
}

static int cmd_dump(const opts_t *o)
{
	char err[1024];
	int parts;
	if (sp_log_meta_read(o->dir, &parts, err, sizeof(err))) {
		fprintf(stderr, "spate log dump: %s\n", err);
		return 1;
	}
	if (o->partition >= parts) {
		fprintf(stderr, "spate log dump: %s: partition %lld does not exist (the log has %d)\n",
		        o->dir, o->partition, parts);
		return 1;
	}
	int rc = 0;
	for (int i = 0; i < parts; i++)
		if (o->partition < 0 || o->partition == i)
			rc |= dump_partition(o, i, parts);
	return rc;
}

/* ---- verify ------------------------------------------------------------------------ */

/* "; lz4: 31 batches, 12500 records" for each codec the stats saw. */
static void print_codecs(const sp_log_verify_stats_t *st)
{
	const char *sep = " (";
	for (int c = 0; c < 8; c++) {
		if (!st->codec_batches[c])
			continue;
		printf("%s%s: %" PRIu64 " batches, %" PRIu64 " records", sep,
		       c <= SP_LOG_CODEC_ZSTD ? sp_log_codec_name(c) : "unknown", st->codec_batches[c],
		       st->codec_records[c]);
		sep = "; ";
	}
	if (*sep == ';')
		printf(")");
}

static int cmd_verify(const opts_t *o)
{
	char err[1024];
	int parts;
	if (sp_log_meta_read(o->dir, &parts, err, sizeof(err))) {
		fprintf(stderr, "spate log verify: %s\n", err);
		return 1;
	}
	if (o->partition >= parts) {
		fprintf(stderr, "spate log verify: %s: partition %lld does not exist (the log has %d)\n",
		        o->dir, o->partition, parts);
		return 1;
	}
	int first = o->partition >= 0 ? (int)o->partition : 0, count = o->partition >= 0 ? 1 : parts;
	sp_log_verify_part_t *res = calloc((size_t)count, sizeof(*res));
	if (!res) {
		fprintf(stderr, "spate log verify: out of memory\n");
		return 1;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = sp_log_verify_log(o->dir, first, count, cores > 0 ? (int)cores : 1, res);
	sp_log_verify_stats_t all = {0};
	int bad = 0;
	for (int k = 0; k < count; k++) {
		const sp_log_verify_part_t *r = &res[k];
		if (r->rc) {
			fprintf(stderr, "partition %d: BAD: %s\n", r->partition, r->err);
			bad++;
			continue;
		}
		const sp_log_verify_stats_t *st = &r->st;
		printf("partition %d: ok: %" PRIu64 " segments, %" PRIu64 " batches, %" PRIu64
		       " records, %" PRIu64 " bytes",
		       r->partition, st->segments, st->batches, st->records, st->bytes);
		print_codecs(st);
		if (st->torn_tail)
			printf(", %" PRIu64
			       " bytes of torn tail past the durable length (the writer truncates them)",
			       st->torn_tail);
		printf("\n");
		all.segments += st->segments;
		all.batches += st->batches;
		all.records += st->records;
		all.bytes += st->bytes;
		all.decompressed += st->decompressed;
		for (int c = 0; c < 8; c++) {
			all.codec_batches[c] += st->codec_batches[c];
			all.codec_records[c] += st->codec_records[c];
		}
	}
	printf("total: %d partitions (%d ok, %d bad), %" PRIu64 " segments, %" PRIu64 " batches, %" PRIu64
	       " records, %" PRIu64 " bytes; %d threads\n",
	       count, count - bad, bad, all.segments, all.batches, all.records, all.bytes, threads);
	for (int c = 0; c < 8; c++) {
		if (!all.codec_batches[c])
			continue;
		printf("codec %s: %" PRIu64 " batches, %" PRIu64 " records",
		       c <= SP_LOG_CODEC_ZSTD ? sp_log_codec_name(c) : "unknown", all.codec_batches[c],
		       all.codec_records[c]);
		if (c != SP_LOG_CODEC_NONE)
			printf(" (decompressed and decoded)");
		printf("\n");
	}
	if (all.decompressed)
		printf("decompressed: %" PRIu64 " bytes of records\n", all.decompressed);
	free(res);
	return bad ? 1 : 0;
}

/* ---- publish ----------------------------------------------------------------------- */

/* Open partition i's writer once and close it: the open recovers the last segment (a
 * torn tail truncated, corruption logged with file and byte offset), fsyncs what the
 * partition holds and publishes it. Prints what was published; 0, or 1 on an error
 * (printed, naming the file). */
static int publish_partition(const char *dir, int i)
{
	char err[1024], pdir[SP_LOG_PATH_MAX], before[96];
	sp_log_part_path(pdir, sizeof(pdir), dir, i);
	sp_log_durable_t old, d;
	int orc = sp_log_durable_read(pdir, &old, NULL, 0);
	sp_log_wopts_t wo;
	sp_log_wopts_default(&wo);
	sp_log_writer_t *w;
	if (sp_log_writer_open(dir, i, &wo, &w, err, sizeof(err))) {
		fprintf(stderr, "spate log publish: partition %d: %s\n", i, err);
		return 1;
	}
	sp_log_writer_durable(w, &d);
	uint64_t cut = sp_log_writer_truncated(w);
	if (sp_log_writer_close(w, err, sizeof(err))) {
		fprintf(stderr, "spate log publish: partition %d: %s\n", i, err);
		return 1;
	}
	if (orc == SPATE_ERR_NOT_FOUND)
		snprintf(before, sizeof(before), "before: never opened by a writer");
	else if (orc != SPATE_OK)
		snprintf(before, sizeof(before), "before: an unreadable durable file");
	else if (!memcmp(&old, &d, sizeof(d)))
		snprintf(before, sizeof(before), "unchanged");
	else
		snprintf(before, sizeof(before), "before: up to offset %" PRIu64, old.next);
	printf("partition %d: published up to offset %" PRIu64 " (next), segment %020" PRIu64 ".log, %" PRIu64
	       " bytes (%s)",
	       i, d.next, d.seg, d.len, before);
	if (cut)
		printf("; truncated a torn tail of %" PRIu64 " bytes", cut);
	printf("\n");
	return 0;
}

static int cmd_publish(const opts_t *o)
{
	char err[1024];
	int parts;
	if (sp_log_meta_read(o->dir, &parts, err, sizeof(err))) {
		fprintf(stderr, "spate log publish: %s\n", err);
		return 1;
	}
	if (o->partition >= parts) {
		fprintf(stderr, "spate log publish: %s: partition %lld does not exist (the log has %d)\n",
		        o->dir, o->partition, parts);
		return 1;
	}
	int bad = 0;
	for (int i = 0; i < parts; i++)
		if (o->partition < 0 || o->partition == i)
			bad |= publish_partition(o->dir, i);
	return bad;
}

int spate_cmd_log(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	const char *allowed = !strcmp(sub, "create")    ? " partitions "
	                      : !strcmp(sub, "ls")      ? " "
	                      : !strcmp(sub, "dump")    ? " partition from count "
	                      : !strcmp(sub, "verify")  ? " partition "
	                      : !strcmp(sub, "publish") ? " partition "
	                                                : NULL;
	if (!allowed) {
		fprintf(stderr, "spate log: unknown command \"%s\"\n\n", sub);
		usage(stderr);
		return 2;
	}
	opts_t o;
	if (parse_opts(argc - 2, argv + 2, allowed, &o) < 0)
		return 2;
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(sub, "create"))
		return cmd_create(&o);
	if (!strcmp(sub, "ls"))
		return cmd_ls(&o);
	if (!strcmp(sub, "dump"))
		return cmd_dump(&o);
	if (!strcmp(sub, "publish"))
		return cmd_publish(&o);
	return cmd_verify(&o);
}
