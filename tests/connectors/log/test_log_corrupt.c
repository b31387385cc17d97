/* test_log_corrupt.c - a damaged batch header, one byte at a time, as a run meets it.
 *
 * The fields of a RecordBatch header before its CRC (baseOffset, batchLength,
 * partitionLeaderEpoch, magic: bytes 0..16; the CRC covers byte 21 on) are the ones a reader
 * must check itself. A partition of five segments written by the writer; every single-byte
 * change (+1, ^0x80, 0x00, 0xff; one that leaves the byte as it was is no change) of each
 * of those bytes, in three batches: the FIRST batch of the second segment, a MIDDLE one of
 * it (the one its index entry points at), and the LAST batch of the partition (which holds
 * the end stop.at.end notes). For each, `spate run` with log.on.corruption=fail and =skip
 * must end (a run still going after HARD_KILL_MS is killed and is a failure), and:
 *  - fail: exit 1, stderr naming the segment file and the batch's byte offset;
 *  - skip: exit 0, that batch's records (and only those) not handled, every other record
 *    handled once at its own position (handler=journal), one Corrupt DLQ entry naming the
 *    file, the batch's bytes and its offsets, and `dlq 1` in the summary.
 * Benign: partitionLeaderEpoch. Kafka changes it at every leader change and writes -1 when
 * it is unknown, it is not in the CRC and says nothing about where the records are, so a
 * reader does not check it (docs/log.md): a changed epoch leaves every record deliverable
 * at its own offset, and the runs must handle all of them, in both modes, with no DLQ entry.
 *
 * The second test takes the same changes through what a run does before it reads: the end
 * noted for stop.at.end (sp_log_reader_last_record), a seek into the damaged segment (the
 * index and the header walk of locate.c), and at-timestamp (sp_log_reader_find_ts). */
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
	SEGS = 5,        /* segments of the partition */
	BATCHES = 8,     /* batches per segment */
	BATCH_RECS = 20, /* records per batch */
	N = SEGS * BATCHES * BATCH_RECS,
	VALUE_BYTES = 40,                 /* about 1 KiB batches: the index gets an entry at batch 4 */
	SEG_BYTES = 9000,                 /* room for BATCHES batches, not one more */
	FIELD_BYTES = 17,                 /* baseOffset 0-7, batchLength 8-11, leader epoch 12-15, magic 16 */
	OPS = 4,                          /* +1, ^0x80, =0x00, =0xff */
	PAR = 3,                          /* runs at once (CI machines have two cores, shared) */
	HARD_KILL_MS = 20000,             /* a run still going after this hangs: killed, a failure */
	MAX_MUTS = 3 * FIELD_BYTES * OPS, /* three targets */
	MAX_HANGS = 6,                    /* runs killed before no more are started */
};

#define TS0 1700000000000LL

/* The three damaged batches: segment, batch in it. */
static const struct {
	const char *name;
	int seg, batch;
} targets[] = {{"FIRST", 1, 0}, {"MIDDLE", 1, 4}, {"LAST", SEGS - 1, BATCHES - 1}};
#define NTARGETS ((int)(sizeof(targets) / sizeof(targets[0])))

static const char *const op_names[OPS] = {"+1", "^0x80", "=0x00", "=0xff"};

static uint8_t apply_op(uint8_t b, int op)
{
	switch (op) {
	case 0:
		return (uint8_t)(b + 1);
	case 1:
		return b ^ 0x80;
	case 2:
		return 0x00;
	default:
		return 0xff;
	}
}

static const char *field_name(int byte)
{
	return byte < 8    ? "baseOffset"
	       : byte < 12 ? "batchLength"
	       : byte < 16 ? "partitionLeaderEpoch"
	                   : "magic";
}

static bool benign(int byte)
{
	return byte >= 12 && byte < 16; /* partitionLeaderEpoch: see the file comment */
}

/* Where the batches are: per segment its base and size, per batch its position and base. */
typedef struct layout {
	uint64_t seg_base[SEGS], seg_size[SEGS];
	uint64_t pos[SEGS][BATCHES], base[SEGS][BATCHES];
} layout_t;

/* Record i: key "k<i%10>", a fixed-size value, timestamp TS0 + i, no headers (so the
 * reader's fast parse takes it). */
static void make(uint32_t i, char *key, char *val, spate_push_record_t *r)
{
	int kl = snprintf(key, 8, "k%u", i % 10);
	snprintf(val, VALUE_BYTES + 1, "value-%06u-%027u", i, i);
	*r = (spate_push_record_t){key, (size_t)kl, val, VALUE_BYTES, NULL, 0, TS0 + i};
}

static void write_log(const char *dir, layout_t *l)
{
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t o;
	lt_wopts(&o, SEG_BYTES, (size_t)1 << 20);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	for (uint32_t i = 0; i < N; i++) {
		char k[8], v[VALUE_BYTES + 1];
		spate_push_record_t r;
		make(i, k, v, &r);
		cr_assert_eq(sp_log_writer_put(w, &r, r.timestamp_ms, NULL, err, sizeof(err)), SPATE_OK, "%s",
		             err);
		if (i % BATCH_RECS == BATCH_RECS - 1)
			cr_assert_eq(sp_log_writer_end_batch(w, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	/* the layout the test counts on */
	char pdir[4096], path[4200];
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	sp_log_seglist_t segs = {0};
	cr_assert_eq(sp_log_seglist(pdir, &segs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(segs.n, SEGS);
	for (int s = 0; s < SEGS; s++) {
		l->seg_base[s] = segs.base[s];
		cr_assert_eq(segs.base[s], (uint64_t)s * BATCHES * BATCH_RECS);
		lt_seg(path, sizeof(path), dir, 0, segs.base[s]);
		int fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0);
		l->seg_size[s] = (uint64_t)lseek(fd, 0, SEEK_END);
		sp_log_scan_t sc;
		cr_assert_eq(sp_log_scan_init(&sc, fd, 0, l->seg_size[s]), SPATE_OK);
		for (int b = 0; b < BATCHES; b++) {
			cr_assert_eq(sp_log_scan_next(&sc, true, true), SP_LOG_SCAN_BATCH);
			cr_assert_eq(sc.h.count, BATCH_RECS);
			l->pos[s][b] = sc.bpos;
			l->base[s][b] = (uint64_t)sc.h.base_offset;
			cr_assert_eq(l->base[s][b], segs.base[s] + (uint64_t)b * BATCH_RECS);
		}
		cr_assert_eq(sp_log_scan_next(&sc, false, false), SP_LOG_SCAN_END);
		sp_log_scan_free(&sc);
		close(fd);
	}
	/* the MIDDLE batch is the one the index points at (a seek there starts with it):
	 * the first entry of segment 1's index */
	uint8_t e[SP_LOG_INDEX_ENTRY], want[SP_LOG_INDEX_ENTRY];
	sp_log_seg_path(path, sizeof(path), pdir, l->seg_base[1], "index");
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(pread(fd, e, sizeof(e), 0), (ssize_t)sizeof(e));
	close(fd);
	sp_log_index_put(want, (uint32_t)(l->base[1][4] - l->seg_base[1]), (uint32_t)l->pos[1][4]);
	cr_assert(!memcmp(e, want, sizeof(e)), "segment 1's index starts at batch 4");
	sp_log_seglist_free(&segs);
}

/* One change: target t, byte of the header, op. false when it leaves the byte as it was. */
typedef struct mut {
	int t, byte, op;
} mut_t;

static bool mutate(const char *dir, const layout_t *l, const mut_t *m)
{
	char path[4200];
	int s = targets[m->t].seg, b = targets[m->t].batch;
	lt_seg(path, sizeof(path), dir, 0, l->seg_base[s]);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s", path);
	uint8_t x;
	off_t at = (off_t)(l->pos[s][b] + (uint64_t)m->byte);
	cr_assert_eq(pread(fd, &x, 1, at), 1);
	uint8_t y = apply_op(x, m->op);
	if (y != x)
		cr_assert_eq(pwrite(fd, &y, 1, at), 1);
	close(fd);
	return y != x;
}

/* Every change of every target that changes a byte, into muts; how many. */
static int all_changes(const char *dir, const layout_t *l, mut_t *muts)
{
	int n = 0;
	for (int t = 0; t < NTARGETS; t++) {
		char path[4200];
		int s = targets[t].seg, b = targets[t].batch;
		lt_seg(path, sizeof(path), dir, 0, l->seg_base[s]);
		int fd = open(path, O_RDONLY);
		uint8_t hdr[FIELD_BYTES];
		cr_assert_eq(pread(fd, hdr, FIELD_BYTES, (off_t)l->pos[s][b]), FIELD_BYTES);
		close(fd);
		for (int byte = 0; byte < FIELD_BYTES; byte++)
			for (int op = 0; op < OPS; op++)
				if (apply_op(hdr[byte], op) != hdr[byte])
					muts[n++] = (mut_t){t, byte, op};
	}
	return n;
}

/* The damaged batch's offsets and where its bytes end. */
static void target_span(const layout_t *l, int t, uint64_t *first, uint64_t *last, uint64_t *pos,
                        uint64_t *end)
{
	int s = targets[t].seg, b = targets[t].batch;
	*first = l->base[s][b];
	*last = *first + BATCH_RECS - 1;
	*pos = l->pos[s][b];
	*end = b + 1 < BATCHES ? l->pos[s][b + 1] : l->seg_size[s];
}

/* ---- the runs ------------------------------------------------------------------------- */

typedef struct job {
	mut_t m;
	bool skip;
	char dir[256];
	pid_t pid;
	int64_t started;
} job_t;

static char failures[16384];
static size_t nfail;

static void failf(const job_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void failf(const job_t *j, const char *fmt, ...)
{
	nfail++;
	size_t len = strlen(failures);
	if (len + 600 > sizeof(failures))
		return;
	snprintf(failures + len, sizeof(failures) - len,
	         "%s batch byte %d (%s) %s, %s: ", targets[j->m.t].name, j->m.byte, field_name(j->m.byte),
	         op_names[j->m.op], j->skip ? "skip" : "fail");
	len = strlen(failures);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + len, sizeof(failures) - len, fmt, ap);
	va_end(ap);
	len = strlen(failures);
	snprintf(failures + len, sizeof(failures) - len, "\n");
}

static void start(job_t *j, const char *pristine, const char *root, int k, const layout_t *l)
{
	snprintf(j->dir, sizeof(j->dir), "%s/j%d", root, k);
	cr_assert_eq(mkdir(j->dir, 0777), 0, "%s: %s", j->dir, strerror(errno));
	char log[300], src[320], handler[340], dlq[320], out[300], err[300];
	snprintf(log, sizeof(log), "%s/L", j->dir);
	lt_copy_tree(pristine, log);
	cr_assert(mutate(log, l, &j->m));
	snprintf(src, sizeof(src), "source=log:%s", log);
	snprintf(handler, sizeof(handler), j->skip ? "handler=journal:%s/journal" : "handler=noop", j->dir);
	snprintf(dlq, sizeof(dlq), "dlq=log:%s/dlq", j->dir);
	snprintf(out, sizeof(out), "%s/out", j->dir);
	snprintf(err, sizeof(err), "%s/err", j->dir);
	char *argv[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                src,
	                "-X",
	                "stop.at.end=true",
	                "-X",
	                handler,
	                "-X",
	                j->skip ? "log.on.corruption=skip" : "log.on.corruption=fail",
	                j->skip ? "-X" : NULL,
	                dlq,
	                NULL};
	j->started = sp_now_ms();
	j->pid = t_spawn(argv, out, err, 0);
	cr_assert_gt(j->pid, 0);
}

/* A summary line `name value` of the run's stdout; -1 when missing. */
static long long summary(const char *out, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = out; p && *p;) {
		if (!strncmp(p, name, nl) && p[nl] == ' ')
			return strtoll(p + nl + 1, NULL, 10);
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	return -1;
}

/* Positions the journal says were handled: counts per offset into seen[N]; false when a
 * line names something else. */
static bool read_journal(const char *dir, uint32_t *seen)
{
	DIR *d = opendir(dir);
	cr_assert(d);
	struct dirent *de;
	bool ok = true;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "journal.", 8))
			continue;
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *text = t_read_file(path, NULL);
		cr_assert(text, "%s", path);
		for (char *line = text; *line;) {
			char *eol = strchr(line, '\n');
			if (eol)
				*eol = 0;
			char *sp = strrchr(line, ' ');
			unsigned long long off = sp ? strtoull(sp + 1, NULL, 10) : N;
			if (off < N && !strncmp(line, "log/L/0 ", 8))
				seen[off]++;
			else
				ok = false;
			if (!eol)
				break;
			line = eol + 1;
		}
		free(text);
	}
	closedir(d);
	return ok;
}

static const spate_header_t *header(const lt_rec_t *r, const char *key)
{
	for (size_t k = 0; k < r->hcnt; k++)
		if (r->hdrs[k].key_len == strlen(key) && !memcmp(r->hdrs[k].key, key, r->hdrs[k].key_len))
			return &r->hdrs[k];
	return NULL;
}

static bool header_is(const lt_rec_t *r, const char *key, const char *want)
{
	const spate_header_t *h = header(r, key);
	return h && h->value_len == strlen(want) && !memcmp(h->value, want, h->value_len);
}

/* Check what run j did (it exited with status st). */
static void check(const job_t *j, int st, const layout_t *l)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/out", j->dir);
	char *out = t_read_file(path, NULL);
	snprintf(path, sizeof(path), "%s/err", j->dir);
	char *err = t_read_file(path, NULL);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	uint64_t first, last, pos, end;
	target_span(l, j->m.t, &first, &last, &pos, &end);
	char seg[400], where[500];
	snprintf(seg, sizeof(seg), "%s/L/0/%020" PRIu64 ".log", j->dir, l->seg_base[targets[j->m.t].seg]);
	bool bad = !benign(j->m.byte);
	if (!j->skip && bad) {
		snprintf(where, sizeof(where), "%s: byte %" PRIu64 ": ", seg, pos);
		if (code != 1)
			failf(j, "exit %d, not 1; stderr: %.300s", code, err);
		else if (!strstr(err, where))
			failf(j, "stderr does not name \"%s\": %.400s", where, err);
		goto out;
	}
	if (code != 0) {
		failf(j, "exit %d, not 0; stderr: %.300s", code, err);
		goto out;
	}
	long long want = bad ? N - BATCH_RECS : N;
	if (summary(out, "records") != want)
		failf(j, "summary records %lld, not %lld", summary(out, "records"), want);
	if (!j->skip)
		goto out;
	if (summary(out, "dlq") != (bad ? 1 : 0))
		failf(j, "summary dlq %lld, not %d", summary(out, "dlq"), bad ? 1 : 0);
	uint32_t *seen = calloc(N, sizeof(*seen));
	if (!read_journal(j->dir, seen))
		failf(j, "the journal names a position outside the partition's offsets");
	for (uint64_t o = 0; o < N; o++) {
		uint32_t expect = bad && o >= first && o <= last ? 0 : 1;
		if (seen[o] != expect) {
			failf(j, "offset %" PRIu64 " handled %u times, not %u", o, seen[o], expect);
			break;
		}
	}
	free(seen);
	/* the DLQ: one metadata-only Corrupt entry naming the file, the bytes and offsets */
	char dlq[300], e[1024];
	snprintf(dlq, sizeof(dlq), "%s/dlq", j->dir);
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	int rc = bad ? lt_read(dlq, 0, 0, &ro, &recs, e, sizeof(e)) : SPATE_OK;
	if (rc != SPATE_OK) {
		failf(j, "reading the DLQ: %s", e);
	} else if (bad) {
		char a[32], b[32];
		snprintf(where, sizeof(where), "%s: bytes %" PRIu64 "..%" PRIu64 ": ", seg, pos, end);
		snprintf(a, sizeof(a), "%" PRIu64, first);
		snprintf(b, sizeof(b), "%" PRIu64, last);
		const spate_header_t *eh = recs.n == 1 ? header(&recs.v[0], "spate.error") : NULL;
		if (recs.n != 1)
			failf(j, "%zu DLQ entries, not 1", recs.n);
		else if (!header_is(&recs.v[0], "spate.condition", "Corrupt") ||
		         !header_is(&recs.v[0], "spate.position", a) ||
		         !header_is(&recs.v[0], "spate.position.last", b))
			failf(j, "the DLQ entry is not Corrupt for offsets %s..%s", a, b);
		else if (!eh || !memmem(eh->value, eh->value_len, where, strlen(where)))
			failf(j, "the DLQ entry's spate.error does not name \"%s\": %.*s", where,
			      eh ? (int)eh->value_len : 0, eh ? (const char *)eh->value : "");
	}
	lt_recs_free(&recs);
out:
	free(out);
	free(err);
}

Test(log_corrupt, a_run_meets_every_header_byte_change)
{
	char *root = lt_mkdtemp(), pristine[300];
	snprintf(pristine, sizeof(pristine), "%s/pristine", root);
	layout_t l;
	write_log(pristine, &l);
	static mut_t muts[MAX_MUTS];
	static job_t jobs[2 * MAX_MUTS];
	int nmuts = all_changes(pristine, &l, muts), njobs = 0;
	for (int i = 0; i < nmuts; i++)
		for (int skip = 0; skip < 2; skip++)
			jobs[njobs++] = (job_t){.m = muts[i], .skip = skip};
	int next = 0, running = 0, hangs = 0;
	while (running > 0 || (next < njobs && hangs < MAX_HANGS)) {
		while (running < PAR && next < njobs && hangs < MAX_HANGS) {
			start(&jobs[next], pristine, root, next, &l);
			next++;
			running++;
		}
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0) {
			int64_t now = sp_now_ms();
			for (int k = 0; k < next; k++)
				if (jobs[k].pid > 0 && now - jobs[k].started > HARD_KILL_MS) {
					failf(&jobs[k], "still running after %d ms: killed (a hang)",
					      HARD_KILL_MS);
					kill(jobs[k].pid, SIGKILL);
					waitpid(jobs[k].pid, &st, 0);
					jobs[k].pid = 0;
					running--;
					hangs++;
					lt_rmrf(jobs[k].dir);
				}
			t_sleep_ms(2);
			continue;
		}
		for (int k = 0; k < next; k++)
			if (jobs[k].pid == pid) {
				jobs[k].pid = 0;
				check(&jobs[k], st, &l);
				lt_rmrf(jobs[k].dir);
				running--;
			}
	}
	lt_rmrf(root);
	free(root);
	cr_assert_eq(nfail, 0, "%zu of %d runs went wrong%s:\n%s", nfail, next,
	             next < njobs ? " (the other runs were not started after so many hangs)" : "", failures);
}

/* ---- before the reading: the end, a seek, a timestamp ------------------------------------ */

/* Read partition 0 of dir from `from` to its end (log.on.corruption skip or fail): the
 * poll's result; seen[o] counts the records delivered at offset o, each checked to be
 * record o. */
static int read_from(const char *dir, uint64_t from, bool skip, uint32_t *seen, char *err, size_t size)
{
	sp_log_ropts_t o;
	lt_ropts(&o);
	o.skip_corrupt = skip;
	lt_recs_t recs = {0};
	int rc = lt_read(dir, 0, from, &o, &recs, err, size);
	memset(seen, 0, N * sizeof(*seen));
	for (size_t i = 0; i < recs.n; i++) {
		char k[8], v[VALUE_BYTES + 1];
		spate_push_record_t r;
		cr_assert_lt(recs.v[i].offset, N);
		make((uint32_t)recs.v[i].offset, k, v, &r);
		cr_assert(recs.v[i].value_len == VALUE_BYTES && !memcmp(recs.v[i].value, v, VALUE_BYTES),
		          "offset %" PRIu64 " holds another record", recs.v[i].offset);
		seen[recs.v[i].offset]++;
	}
	lt_recs_free(&recs);
	return rc;
}

static void check_reads(const char *dir, const layout_t *l, const mut_t *m, uint32_t *seen)
{
	uint64_t first, last, pos, end;
	target_span(l, m->t, &first, &last, &pos, &end);
	int s = targets[m->t].seg;
	bool bad = !benign(m->byte);
	char where[4300], err[2048];
	lt_seg(where, sizeof(where), dir, 0, l->seg_base[s]);
	snprintf(where + strlen(where), sizeof(where) - strlen(where), ": byte %" PRIu64 ": ", pos);
	/* from the damaged segment's start, from inside the batch, from inside the one after */
	uint64_t froms[3] = {l->seg_base[s], first + 5, last + 3};
	for (int f = 0; f < (last + 3 < N ? 3 : 2); f++)
		for (int skip = 0; skip < 2; skip++) {
			uint64_t from = froms[f];
			int rc = read_from(dir, from, skip, seen, err, sizeof(err));
			const char *how = skip ? "skip" : "fail";
			if (bad && !skip) {
				cr_assert_eq(rc, SPATE_ERR_CORRUPT,
				             "%s byte %d %s, from %" PRIu64 ", fail: rc %d: %s",
				             targets[m->t].name, m->byte, op_names[m->op], from, rc, err);
				cr_assert(strstr(err, where),
				          "%s byte %d %s, from %" PRIu64 ": \"%s\" not in: %s",
				          targets[m->t].name, m->byte, op_names[m->op], from, where, err);
			} else {
				cr_assert_eq(rc, SPATE_OK, "%s byte %d %s, from %" PRIu64 ", %s: %s",
				             targets[m->t].name, m->byte, op_names[m->op], from, how, err);
			}
			for (uint64_t o = 0; o < N; o++) {
				uint32_t want = o >= from;
				if (bad && (skip ? o >= first && o <= last : o >= first))
					want = 0; /* skip: the batch's records; fail: nothing from the batch
					             on */
				cr_assert_eq(seen[o], want,
				             "%s byte %d %s, from %" PRIu64 ", %s: offset %" PRIu64
				             " delivered %u times, not %u",
				             targets[m->t].name, m->byte, op_names[m->op], from, how, o,
				             seen[o], want);
			}
		}
}

Test(log_corrupt, the_end_a_seek_and_a_timestamp_meet_every_header_byte_change)
{
	char *root = lt_mkdtemp(), pristine[300], copy[300], err[1024];
	snprintf(pristine, sizeof(pristine), "%s/pristine", root);
	snprintf(copy, sizeof(copy), "%s/L", root);
	layout_t l;
	write_log(pristine, &l);
	static mut_t muts[MAX_MUTS];
	int nmuts = all_changes(pristine, &l, muts);
	uint32_t *seen = calloc(N, sizeof(*seen));
	for (int i = 0; i < nmuts; i++) {
		const mut_t *m = &muts[i];
		uint64_t first, last, pos, end;
		target_span(&l, m->t, &first, &last, &pos, &end);
		lt_copy_tree(pristine, copy);
		cr_assert(mutate(copy, &l, m));
		sp_log_ropts_t o;
		lt_ropts(&o);
		sp_log_reader_t *r;
		cr_assert_eq(sp_log_reader_open(copy, &o, &r, err, sizeof(err)), SPATE_OK, "%s", err);
		/* stop.at.end's end: the last record there is, whatever a header says (a run
		 * must reach it, and meet the damaged batch on the way) */
		bool has;
		uint64_t end_off = 0, ts_off = 0;
		cr_assert_eq(sp_log_reader_last_record(r, 0, &has, &end_off, err, sizeof(err)), SPATE_OK,
		             "%s", err);
		cr_assert(has && end_off == N - 1, "%s byte %d %s: end %d/%" PRIu64 ", not %d",
		          targets[m->t].name, m->byte, op_names[m->op], has, end_off, N - 1);
		/* at-timestamp of a record of the batch: that record, or with the batch damaged its
		 * start (reading from there meets the damage), never past it */
		cr_assert_eq(sp_log_reader_find_ts(r, 0, TS0 + (int64_t)first + 5, &ts_off, err, sizeof(err)),
		             SPATE_OK, "%s", err);
		uint64_t want = benign(m->byte) ? first + 5 : first;
		cr_assert_eq(ts_off, want, "%s byte %d %s: at-timestamp gave %" PRIu64 ", not %" PRIu64,
		             targets[m->t].name, m->byte, op_names[m->op], ts_off, want);
		sp_log_reader_close(r);
		check_reads(copy, &l, m, seen);
		lt_rmrf(copy);
	}
	free(seen);
	lt_rmrf(root);
	free(root);
}

/* ---- gaps -------------------------------------------------------------------------------- */

/* Write segment 0 of partition 0 of a new log at dir: batches of two records at the given
 * base offsets; the writer then publishes it (keeping every batch: the last one is valid).
 * pos gets the byte position of each batch. */
static void write_bases(const char *dir, const int64_t *bases, int n, uint64_t *pos)
{
	char err[1024], path[4200];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	lt_seg(path, sizeof(path), dir, 0, 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	sp_log_enc_t e;
	sp_log_enc_init(&e);
	uint64_t at = 0;
	for (int i = 0; i < n; i++) {
		sp_log_enc_begin(&e, bases[i], TS0 + bases[i]);
		for (int k = 0; k < 2; k++) {
			char key[8], v[VALUE_BYTES + 1];
			spate_push_record_t r;
			make((uint32_t)(bases[i] + k), key, v, &r);
			cr_assert_eq(sp_log_enc_add(&e, &r, r.timestamp_ms), SPATE_OK);
		}
		size_t len = sp_log_enc_finish(&e);
		cr_assert_eq(write(fd, e.buf, len), (ssize_t)len);
		pos[i] = at;
		at += len;
	}
	sp_log_enc_free(&e);
	close(fd);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_truncated(w), 0, "the writer truncated a valid last batch");
	cr_assert_eq(sp_log_writer_next_offset(w), (uint64_t)bases[n - 1] + 2);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
}

/* Kafka's compaction leaves gaps between batches: not corruption. A gap that the next
 * batch starts in is: the batch that left it has the wrong baseOffset, and it is the one
 * named (never the good one after it, and never records delivered at wrong offsets). */
Test(log_corrupt, compaction_gaps_are_not_corruption_but_a_gap_the_next_batch_starts_in_is)
{
	char *dir = lt_mkdtemp(), err[2048];
	const int64_t gaps[] = {0, 5, 9};
	uint64_t pos[3];
	write_bases(dir, gaps, 3, pos);
	sp_log_verify_stats_t st = {0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st.records, 6);
	sp_log_ropts_t o;
	lt_ropts(&o);
	const uint64_t want[] = {0, 1, 5, 6, 9, 10};
	for (int f = 0; f < 2; f++) {
		uint64_t from = f ? 3 : 0; /* from the start, and from inside a gap */
		lt_recs_t recs = {0};
		cr_assert_eq(lt_read(dir, 0, from, &o, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		size_t skip = f ? 2 : 0;
		cr_assert_eq(recs.n, 6 - skip);
		for (size_t i = 0; i < recs.n; i++)
			cr_assert_eq(recs.v[i].offset, want[i + skip]);
		lt_recs_free(&recs);
	}
	sp_log_reader_t *r;
	cr_assert_eq(sp_log_reader_open(dir, &o, &r, err, sizeof(err)), SPATE_OK, "%s", err);
	bool has;
	uint64_t last;
	cr_assert_eq(sp_log_reader_last_record(r, 0, &has, &last, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert(has && last == 10);
	sp_log_reader_close(r);
	lt_rmrf(dir);

	/* the second batch says 5..6, the third starts at 6: the second one is wrong, and the
	 * writer too keeps the third (it is not a torn tail) */
	const int64_t overlap[] = {0, 5, 6};
	uint64_t opos[3];
	write_bases(dir, overlap, 3, opos);
	char where[4300];
	lt_seg(where, sizeof(where), dir, 0, 0);
	snprintf(where + strlen(where), sizeof(where) - strlen(where), ": byte %" PRIu64 ": ", opos[1]);
	st = (sp_log_verify_stats_t){0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_ERR_CORRUPT);
	cr_assert(strstr(err, where), "verify names the batch that left the gap: %s", err);
	lt_recs_t recs = {0};
	cr_assert_eq(lt_read(dir, 0, 0, &o, &recs, err, sizeof(err)), SPATE_ERR_CORRUPT, "%s", err);
	cr_assert(strstr(err, where), "the reader names the batch that left the gap: %s", err);
	cr_assert_eq(recs.n, 2, "only the records before it");
	lt_recs_free(&recs);
	o.skip_corrupt = true;
	cr_assert_eq(lt_read(dir, 0, 0, &o, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, 4, "all but the bad batch's");
	const uint64_t kept[] = {0, 1, 6, 7};
	for (size_t i = 0; i < recs.n; i++)
		cr_assert_eq(recs.v[i].offset, kept[i]);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}
