/* test_log_decode.c - the log reader's decode stage (connectors/log/reader_decode.c):
 * CRCs, decompression and descriptors on decode threads, handed back in read order.
 *
 * Reader level, with 2 decode threads: a partition of many reads (records with 0..3
 * headers) comes back whole and in offset order, decoded on the threads (the reader's
 * counters say so, and that nothing was parsed again); zstd and lz4 batches the same;
 * a CRC mismatch in a batch far into the partition (its read goes to a thread, whose
 * decode differs from the header walk) with log.on.corruption=fail delivers exactly the
 * records before the bad batch and fails naming the segment and the batch's byte, and with
 * skip reports exactly that batch (byte, offsets) and delivers every other record.
 * Engine level: 2 workers and 2 decode threads over 4 partitions, every record handled
 * once and each partition's records in position order; the same CRC mismatch ends a
 * fail run naming segment and byte, and a skip run writes one Corrupt DLQ entry naming
 * the segment and the batch's bytes. */
#include "tests/common/engine.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	N = 60000,    /* records of partition 0: several 1 MiB reads */
	BATCH = 8192, /* batch bytes: many batches per read */
	VALUE = 80,   /* value bytes of the engine-level records */
	EPARTS = 4,   /* partitions of the engine-level log */
	EN = 80000,   /* records of the engine-level log */
};

/* The records of partition 0 with lt_make (text: lt_make_text), written with codec. */
static void write_part(const char *dir, int codec, bool text)
{
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 1ULL << 30, BATCH);
	o.codec = codec;
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, 1, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	for (uint64_t i = 0; i < N; i++) {
		spate_push_record_t r;
		if (text)
			lt_make_text(i, 0, &r);
		else
			lt_make(i, 0, &r);
		cr_assert_eq(sp_log_producer_send(p, &r, 1, 0, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
}

/* Read partition 0 of dir to its end with the decode stage on; the poll's result. */
static int read_all(const char *dir, const sp_log_ropts_t *o, lt_recs_t *recs, sp_log_reader_stats_t *st,
                    char *err, size_t size)
{
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, o, &rd, err, size), SPATE_OK, "%s", err);
	sp_part_t p;
	memset(&p, 0, sizeof(p));
	uint64_t start, next;
	cr_assert_eq(sp_log_reader_bounds(rd, 0, &start, &next, err, size), SPATE_OK, "%s", err);
	sp_log_reader_set_end(rd, 0, true, next - 1);
	sp_log_reader_bind(rd, 0, &p);
	cr_assert_eq(sp_log_reader_seek(rd, 0, 0, err, size), SPATE_OK, "%s", err);
	int rc = SPATE_OK;
	while (!sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0, "no progress at %zu records", recs->n);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, size);
		if (n < 0) {
			rc = n;
			break;
		}
		lt_take(out, n, recs);
	}
	sp_log_reader_stats(rd, st);
	sp_log_reader_close(rd);
	return rc;
}

static void dec_opts(sp_log_ropts_t *o)
{
	lt_ropts(o);
	o->decode_threads = 2;
}

/* Read dir's partition to its end with 2 decode threads: its N records into recs. */
static void read_decoded(const char *dir, lt_recs_t *recs, sp_log_reader_stats_t *st)
{
	char err[1024];
	sp_log_ropts_t o;
	dec_opts(&o);
	cr_assert_eq(read_all(dir, &o, recs, st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs->n, N);
}

Test(log_decode, every_record_in_order_decoded_on_the_threads)
{
	char *dir = lt_mkdtemp();
	write_part(dir, SP_LOG_CODEC_NONE, false);
	lt_recs_t recs = {0};
	sp_log_reader_stats_t st;
	read_decoded(dir, &recs, &st);
	for (size_t i = 0; i < recs.n; i++)
		lt_check(&recs.v[i], i, i);
	cr_assert_gt(st.reads, 3, "several reads");
	cr_assert_geq(st.decoded, st.reads - 1,
	              "every read but maybe one decoded on a thread (%" PRIu64 " of %" PRIu64 ")", st.decoded,
	              st.reads);
	cr_assert_eq(st.decode_redo, 0);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}

Test(log_decode, compressed_batches_decoded_on_the_threads)
{
	const int codecs[] = {SP_LOG_CODEC_ZSTD, SP_LOG_CODEC_LZ4, SP_LOG_CODEC_GZIP};
	for (size_t c = 0; c < sizeof(codecs) / sizeof(codecs[0]); c++) {
		char *dir = lt_mkdtemp(), err[1024];
		write_part(dir, codecs[c], true);
		sp_log_verify_stats_t vs = {0};
		cr_assert_eq(sp_log_verify_partition(dir, 0, &vs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(vs.codec_records[codecs[c]], N, "every batch compressed (%s)",
		             sp_log_codec_name(codecs[c]));
		lt_recs_t recs = {0};
		sp_log_reader_stats_t st;
		read_decoded(dir, &recs, &st);
		for (size_t i = 0; i < recs.n; i++)
			lt_check_text(&recs.v[i], i, i);
		cr_assert_gt(st.decoded, 0, "%s: decoded on the threads", sp_log_codec_name(codecs[c]));
		cr_assert_eq(st.decode_redo, 0);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
}

/* The batch of partition p of dir that starts at or after byte `after` of its first
 * segment: its byte, first and last offset. Flips a byte of its records (CRC mismatch). */
static void damage(const char *dir, int p, uint64_t after, uint64_t *pos, uint64_t *first, uint64_t *last)
{
	char path[1024];
	lt_seg(path, sizeof(path), dir, p, 0);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s", path);
	uint64_t off = 0;
	for (;;) {
		uint8_t h[SP_LOG_BATCH_HEADER];
		cr_assert_eq(pread(fd, h, sizeof(h), (off_t)off), (ssize_t)sizeof(h),
		             "a batch after byte %" PRIu64, after);
		sp_log_batch_hdr_t bh;
		size_t total;
		cr_assert_eq(sp_log_batch_header(h, sizeof(h), &bh, &total, NULL), SP_LOG_HDR_OK);
		if (off >= after) {
			*pos = off;
			*first = (uint64_t)bh.base_offset;
			*last = (uint64_t)sp_log_batch_last(&bh);
			uint8_t b;
			uint64_t at = off + SP_LOG_BATCH_HEADER + 10;
			cr_assert_eq(pread(fd, &b, 1, (off_t)at), 1);
			b ^= 0x5a;
			cr_assert_eq(pwrite(fd, &b, 1, (off_t)at), 1);
			break;
		}
		off += total;
	}
	close(fd);
}

static void on_corrupt(void *opaque, const sp_log_corrupt_info_t *info)
{
	sp_log_corrupt_info_t *seen = opaque;
	if (!seen->file) {
		*seen = *info;
		seen->file = "seen";
	} else {
		seen->partition = -1; /* more than one region */
	}
}

Test(log_decode, corruption_found_on_a_thread_fails_or_skips_exactly)
{
	char *dir = lt_mkdtemp(), err[1024], want[64];
	write_part(dir, SP_LOG_CODEC_NONE, false);
	uint64_t pos, first, last;
	damage(dir, 0, 5u << 19, &pos, &first, &last); /* in the third read or later */
	cr_assert_gt(first, 0);

	sp_log_ropts_t o;
	dec_opts(&o);
	lt_recs_t recs = {0};
	sp_log_reader_stats_t st;
	cr_assert_eq(read_all(dir, &o, &recs, &st, err, sizeof(err)), SPATE_ERR_CORRUPT);
	cr_assert(strstr(err, "00000000000000000000.log"), "%s", err);
	snprintf(want, sizeof(want), "byte %" PRIu64 ":", pos);
	cr_assert(strstr(err, want), "%s names %s", err, want);
	cr_assert(strstr(err, "CRC32C mismatch"), "%s", err);
	cr_assert_eq(recs.n, first, "exactly the records before the bad batch");
	for (size_t i = 0; i < recs.n; i++)
		lt_check(&recs.v[i], i, i);
	cr_assert_geq(st.decode_redo, 1, "found by a decode thread, parsed again");
	cr_assert_gt(st.decoded, 0);
	lt_recs_free(&recs);

	sp_log_corrupt_info_t seen = {0};
	dec_opts(&o);
	o.skip_corrupt = true;
	o.on_corrupt = on_corrupt;
	o.corrupt_opaque = &seen;
	cr_assert_eq(read_all(dir, &o, &recs, &st, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(seen.partition, 0, "one region");
	cr_assert_eq(seen.byte, pos);
	cr_assert_eq(seen.first_offset, first);
	cr_assert_eq(seen.last_offset, last);
	cr_assert_eq(recs.n, N - (last - first + 1), "every record but the bad batch's");
	for (size_t i = 0, k = 0; i < recs.n; i++, k++) {
		if (k == first)
			k = last + 1;
		lt_check(&recs.v[i], k, k);
	}
	cr_assert_geq(st.decode_redo, 1);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}

/* A bad batch in the read before the last one: that read's decode differs while the last
 * read (which reaches the end) may already be pre-scanned. Skipping it must read on to
 * the end whatever the order the two decodes finished in. */
Test(log_decode, corruption_before_the_last_read_skips_and_reads_on)
{
	char *dir = lt_mkdtemp(), err[1024], path[1024];
	write_part(dir, SP_LOG_CODEC_NONE, false);
	lt_seg(path, sizeof(path), dir, 0, 0);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_gt(sb.st_size, 3 << 20);
	uint64_t pos, first, last;
	/* reads cover whole MiBs of the file: a batch in the middle of the one before the last */
	uint64_t lastread = ((uint64_t)sb.st_size >> 20) << 20;
	damage(dir, 0, lastread - (1u << 19), &pos, &first, &last);
	/* decodes wait: later reads are pre-scanned (the last one reaching the end) while the
	 * bad one is still in the stage */
	setenv("SPATE_LOG_DECODE_DELAY_MS", "30", 1);
	for (int round = 0; round < 3; round++) {
		sp_log_corrupt_info_t seen = {0};
		sp_log_ropts_t o;
		dec_opts(&o);
		o.skip_corrupt = true;
		o.on_corrupt = on_corrupt;
		o.corrupt_opaque = &seen;
		lt_recs_t recs = {0};
		sp_log_reader_stats_t st;
		cr_assert_eq(read_all(dir, &o, &recs, &st, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(seen.byte, pos);
		cr_assert_eq(recs.n, N - (last - first + 1), "round %d: every record but the bad batch's",
		             round);
		cr_assert_eq(recs.v[recs.n - 1].offset, N - 1, "read to the end");
		cr_assert_geq(st.decode_redo, 1);
		lt_recs_free(&recs);
	}
	unsetenv("SPATE_LOG_DECODE_DELAY_MS");
	lt_rmrf(dir);
	free(dir);
}

/* ---- engine level ---------------------------------------------------------------------- */

typedef struct estate {
	_Atomic uint64_t handled;
	_Atomic int out_of_order, bad;
	_Atomic uint64_t next[EPARTS]; /* per partition: the position after the last handled */
	_Atomic uint8_t seen[EN];
} estate_t;

static int ehandle(void *opaque, void *ctx, spate_batch_t *b)
{
	(void)ctx;
	estate_t *s = opaque;
	const spate_record_t *const *r = spate_batch_records(b);
	for (size_t i = 0; i < spate_batch_count(b); i++) {
		int p = r[i]->partition->partition;
		uint64_t pos = r[i]->position.w[2];
		/* the value starts with the record's number */
		char v[16];
		size_t n = r[i]->value_len < 15 ? r[i]->value_len : 15;
		memcpy(v, r[i]->value, n);
		v[n] = 0;
		unsigned long x = strtoul(v, NULL, 10);
		if (p < 0 || p >= EPARTS || x >= EN) {
			atomic_fetch_add(&s->bad, 1);
			continue;
		}
		/* lanes of a partition are claimed by one worker at a time, in order */
		if (pos < atomic_load(&s->next[p]))
			atomic_fetch_add(&s->out_of_order, 1);
		atomic_store(&s->next[p], pos + 1);
		atomic_fetch_add(&s->seen[x], 1);
	}
	atomic_fetch_add(&s->handled, spate_batch_count(b));
	return SPATE_HANDLER_OK;
}

static void eproduce(const char *dir)
{
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 1ULL << 30, BATCH);
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, EPARTS, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	char val[VALUE + 1];
	for (uint32_t i = 0; i < EN; i++) {
		char key[16];
		int kl = snprintf(key, sizeof(key), "k%u", i % 997);
		memset(val, 'v', VALUE);
		int vl = snprintf(val, sizeof(val), "%u:", i);
		val[vl] = 'v';
		spate_push_record_t r = {key, (size_t)kl, val, VALUE, NULL, 0, 1700000000000LL + i};
		cr_assert_eq(sp_log_producer_send(p, &r, 1, (int)(i % EPARTS), err, sizeof(err)), SPATE_OK,
		             "%s", err);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
}

static t_run_t erun(estate_t *s, const char *dir, const char *const *kv)
{
	char src[512];
	snprintf(src, sizeof(src), "log:%s", dir);
	const char *base[] = {"source",
	                      src,
	                      "stop.at.end",
	                      "true",
	                      "max.concurrency",
	                      "2",
	                      "store",
	                      "none",
	                      "log.decode.threads",
	                      "2",
	                      NULL};
	spate_handler_t h = {.version = SPATE_HANDLER_VERSION, .name = "t", .handle = ehandle, .opaque = s};
	return t_engine_run(&(t_engine_opts_t){.conf = base, .conf_more = kv, .handler = &h});
}

Test(log_decode, engine_two_workers_order_and_corruption)
{
	char *dir = lt_mkdtemp(), err[1024], want[128];
	eproduce(dir);
	estate_t *s = calloc(1, sizeof(*s));
	t_run_t r = erun(s, dir, NULL);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(atomic_load(&s->handled), EN);
	cr_assert_eq(atomic_load(&s->bad), 0);
	cr_assert_eq(atomic_load(&s->out_of_order), 0, "each partition's records in position order");
	for (uint32_t i = 0; i < EN; i++)
		cr_assert_eq(atomic_load(&s->seen[i]), 1, "record %u handled once", i);
	free(s);

	uint64_t pos, first, last;
	damage(dir, 1, 3u << 19, &pos, &first, &last);
	s = calloc(1, sizeof(*s));
	r = erun(s, dir, NULL);
	cr_assert_eq(r.rc, SPATE_ERR_CORRUPT, "rc %d: %s", r.rc, r.err);
	cr_assert(strstr(r.err, "partition 1: "), "%s", r.err);
	cr_assert(strstr(r.err, "00000000000000000000.log"), "%s", r.err);
	snprintf(want, sizeof(want), "byte %" PRIu64 ":", pos);
	cr_assert(strstr(r.err, want), "%s names %s", r.err, want);
	cr_assert_leq(atomic_load(&s->next[1]), first, "nothing of partition 1 from the bad batch on");
	cr_assert_eq(atomic_load(&s->out_of_order), 0);
	free(s);

	char *dlq = lt_mkdtemp(), dlqarg[600];
	lt_rmrf(dlq);
	snprintf(dlqarg, sizeof(dlqarg), "log:%s", dlq);
	const char *skip[] = {"log.on.corruption", "skip", "dlq", dlqarg, NULL};
	s = calloc(1, sizeof(*s));
	r = erun(s, dir, skip);
	cr_assert_eq(r.rc, SPATE_OK, "%s", r.err);
	cr_assert_eq(r.sum.dlq, 1);
	cr_assert_eq(atomic_load(&s->handled), EN - (last - first + 1));
	cr_assert_eq(atomic_load(&s->out_of_order), 0);
	lt_recs_t recs = {0};
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	cr_assert_eq(lt_read(dlq, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, 1);
	snprintf(want, sizeof(want), "00000000000000000000.log: bytes %" PRIu64 "..", pos);
	bool corrupt = false, names = false;
	for (size_t k = 0; k < recs.v[0].hcnt; k++) {
		const spate_header_t *hh = &recs.v[0].hdrs[k];
		if (hh->key_len == 15 && !memcmp(hh->key, "spate.condition", 15))
			corrupt = hh->value_len == 7 && !memcmp(hh->value, "Corrupt", 7);
		if (hh->key_len == 11 && !memcmp(hh->key, "spate.error", 11))
			names = memmem(hh->value, hh->value_len, want, strlen(want)) != NULL;
	}
	cr_assert(corrupt && names, "a Corrupt entry naming %s", want);
	lt_recs_free(&recs);
	free(s);
	lt_rmrf(dlq);
	free(dlq);
	lt_rmrf(dir);
	free(dir);
}

/* log.decode.min.bytes (64 KiB, the default): a reader catching up reads about 1 MiB at a
 * time and hands its reads to the decode threads; at the tail, each small append is read
 * and parsed by the polling thread itself (no two hand-offs), in order after the decoded
 * ones, and decoded is not counted for them. */
Test(log_decode, small_reads_at_the_tail_are_parsed_by_the_polling_thread)
{
	char *dir = lt_mkdtemp(), err[1024];
	write_part(dir, SP_LOG_CODEC_NONE, false);
	sp_log_ropts_t o;
	dec_opts(&o);
	o.decode_min_bytes = 64 << 10;
	sp_part_t p;
	sp_log_reader_t *rd = lt_open_at(dir, &o, &p, 0);
	lt_recs_t recs = {0};
	lt_read_until(rd, &recs, N);
	sp_log_reader_stats_t caught_up;
	sp_log_reader_stats(rd, &caught_up);
	cr_assert_gt(caught_up.decoded, 3, "catching up, the reads went to the decode threads (%" PRIu64 ")",
	             caught_up.decoded);

	/* the tail: 20 appends of 10 records, each flushed and read before the next */
	enum { APPENDS = 20, PER = 10 };
	sp_log_wopts_t wo;
	lt_wopts(&wo, 1ULL << 30, BATCH);
	sp_log_producer_t *w;
	cr_assert_eq(sp_log_producer_open(dir, 1, &wo, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	for (int a = 0; a < APPENDS; a++) {
		for (int k = 0; k < PER; k++) {
			spate_push_record_t r;
			lt_make(recs.n + (size_t)k, 0, &r);
			cr_assert_eq(sp_log_producer_send(w, &r, 1, 0, err, sizeof(err)), SPATE_OK, "%s", err);
		}
		cr_assert_eq(sp_log_producer_flush(w, err, sizeof(err)), SPATE_OK, "%s", err);
		lt_read_until(rd, &recs, recs.n + PER);
	}
	cr_assert_eq(sp_log_producer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, (size_t)N + APPENDS * PER);
	for (size_t i = 0; i < recs.n; i++)
		lt_check(&recs.v[i], i, i);
	sp_log_reader_stats_t tail;
	sp_log_reader_stats(rd, &tail);
	cr_assert_eq(tail.decoded, caught_up.decoded, "a small read at the tail went to a decode thread");
	cr_assert_geq(tail.parsed_here - caught_up.parsed_here, APPENDS,
	              "each append parsed by the polling thread (%" PRIu64 " reads for %d appends)",
	              tail.parsed_here - caught_up.parsed_here, APPENDS);
	cr_assert_eq(tail.decode_redo, 0);
	sp_log_reader_close(rd);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}
