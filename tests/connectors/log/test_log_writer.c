/* test_log_writer.c - tests of connectors/log/writer.c and segment.c: round trips over
 * segments and partitions, the writer's repair of a torn tail (cut at every byte of the
 * last batch), corruption that must never be truncated, the flock, the durable file and
 * the flush policy. */
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Append records [from, to) of the test stream to partition 0 through one writer. */
static void put_range(sp_log_writer_t *w, uint64_t from, uint64_t to)
{
	char err[1024];
	for (uint64_t i = from; i < to; i++) {
		spate_push_record_t r;
		lt_make(i, 0, &r);
		uint64_t off;
		cr_assert_eq(sp_log_writer_put(w, &r, r.timestamp_ms, &off, err, sizeof(err)), SPATE_OK, "%s",
		             err);
		cr_assert_eq(off, i);
	}
}

static uint8_t *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* Batch positions of a segment file: pos[i], and their base offsets. */
typedef struct batches {
	uint64_t pos[4096], total[4096];
	int64_t base[4096];
	size_t n;
} batches_t;

static void scan_batches(const char *path, batches_t *b)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	fstat(fd, &st);
	sp_log_scan_t sc;
	cr_assert_eq(sp_log_scan_init(&sc, fd, 0, (uint64_t)st.st_size), SPATE_OK);
	b->n = 0;
	int r;
	while ((r = sp_log_scan_next(&sc, true, true)) == SP_LOG_SCAN_BATCH) {
		b->pos[b->n] = sc.bpos;
		b->total[b->n] = sc.total;
		b->base[b->n] = sc.h.base_offset;
		b->n++;
	}
	cr_assert_eq(r, SP_LOG_SCAN_END);
	sp_log_scan_free(&sc);
	close(fd);
}

/* ---- round trips ----------------------------------------------------------------- */

static void round_trip(int parts, uint64_t n, uint64_t segment_bytes, size_t batch_bytes, bool pread)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, segment_bytes, batch_bytes);
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, parts, &o, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_producer_partitions(p), parts);
	/* where each record must land: XXH3(key) % parts, keyless round robin */
	uint64_t *want_part = calloc(n, sizeof(uint64_t)), *want_off = calloc(n, sizeof(uint64_t));
	uint64_t *count = calloc((size_t)parts, sizeof(uint64_t)), rr = 0;
	for (uint64_t i = 0; i < n; i++) {
		spate_push_record_t r;
		lt_make(i, 0, &r);
		int pi = r.key ? (int)(XXH3_64bits(r.key, r.key_len) % (uint64_t)parts)
		               : (int)(rr++ % (uint64_t)parts);
		want_part[i] = (uint64_t)pi;
		want_off[i] = count[pi]++;
		cr_assert_eq(sp_log_producer_send(p, &r, 1, -1, err, sizeof(err)), SPATE_OK, "%s", err);
		if (i % 333 == 0)
			cr_assert_eq(sp_log_producer_flush(p, err, sizeof(err)), SPATE_OK);
	}
	cr_assert_eq(sp_log_producer_close(p, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	ro.no_uring = pread;
	for (int pi = 0; pi < parts; pi++) {
		lt_recs_t recs = {0};
		cr_assert_eq(lt_read(dir, pi, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, count[pi], "partition %d: %zu records, expected %llu", pi, recs.n,
		             (unsigned long long)count[pi]);
		size_t k = 0;
		for (uint64_t i = 0; i < n; i++)
			if (want_part[i] == (uint64_t)pi)
				lt_check(&recs.v[k++], i, want_off[i]);
		lt_recs_free(&recs);
		sp_log_verify_stats_t st = {0};
		cr_assert_eq(sp_log_verify_partition(dir, pi, &st, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(st.records, count[pi]);
		cr_assert_eq(st.torn_tail, 0);
	}
	free(want_part);
	free(want_off);
	free(count);
	lt_rmrf(dir);
	free(dir);
}

Test(log_writer, round_trip_partitions_segments)
{
	/* 3 partitions, 16 KiB segments of ~1 KiB batches: many segments each */
	round_trip(3, 3000, 16384, 1024, false);
	char *dir = lt_mkdtemp();
	char err[1024];
	sp_log_wopts_t o;
	lt_wopts(&o, 16384, 1024);
	sp_log_producer_t *p;
	cr_assert_eq(sp_log_producer_open(dir, 3, &o, &p, err, sizeof(err)), SPATE_OK);
	for (uint64_t i = 0; i < 3000; i++) {
		spate_push_record_t r;
		lt_make(i, 0, &r);
		cr_assert_eq(sp_log_producer_send(p, &r, 1, -1, err, sizeof(err)), SPATE_OK);
	}
	sp_log_producer_close(p, err, sizeof(err));
	for (int pi = 0; pi < 3; pi++)
		cr_assert_geq(lt_segments(dir, pi), 5, "partition %d has several segments", pi);
	lt_rmrf(dir);
	free(dir);
}

Test(log_writer, round_trip_pread)
{
	round_trip(2, 2000, 16384, 700, true);
}

Test(log_writer, round_trip_reads_split_batches)
{
	/* 64 KiB batches and 1 MiB reads: batches are cut by read boundaries and carried */
	round_trip(1, 40000, (uint64_t)4 << 20, SP_LOG_BATCH_BYTES, false);
}

Test(log_writer, record_bigger_than_a_read)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, SP_LOG_BATCH_BYTES);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	size_t big = (size_t)3 << 20;
	uint8_t *v = malloc(big);
	for (size_t i = 0; i < big; i++)
		v[i] = (uint8_t)(i * 31 + 7);
	for (int i = 0; i < 5; i++) {
		spate_push_record_t r = {"a", 1, "small", 5, NULL, 0, 1000 + i};
		cr_assert_eq(sp_log_writer_put(w, &r, r.timestamp_ms, NULL, err, sizeof(err)), SPATE_OK);
		if (i == 2) {
			spate_push_record_t b = {"big", 3, v, big, NULL, 0, 2000};
			cr_assert_eq(sp_log_writer_put(w, &b, b.timestamp_ms, NULL, err, sizeof(err)),
			             SPATE_OK);
		}
	}
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	for (int mode = 0; mode < 2; mode++) {
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		lt_recs_t recs = {0};
		cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, 6);
		cr_assert_eq(recs.v[3].offset, 3);
		cr_assert_eq(recs.v[3].value_len, big);
		cr_assert_eq(memcmp(recs.v[3].value, v, big), 0);
		cr_assert_eq(recs.v[5].offset, 5);
		cr_assert_eq(recs.v[5].ts, 1004);
		lt_recs_free(&recs);
	}
	free(v);
	lt_rmrf(dir);
	free(dir);
}

/* ---- torn tails -------------------------------------------------------------------- */

Test(log_writer, torn_tail_every_byte_of_last_batch)
{
	char *orig = lt_mkdtemp();
	char err[1024], path[4096], pdir[4096];
	cr_assert_eq(sp_log_create(orig, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 400);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(orig, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	put_range(w, 0, 60);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	lt_seg(path, sizeof(path), orig, 0, 0);
	batches_t b;
	scan_batches(path, &b);
	cr_assert_geq(b.n, 5);
	uint64_t S = b.pos[b.n - 1], E = S + b.total[b.n - 1];
	int64_t B = b.base[b.n - 1];
	size_t olen;
	uint8_t *obytes = slurp(path, &olen);
	cr_assert_eq(olen, E);

	for (uint64_t cut = S; cut < E; cut++) {
		char *dir = lt_mkdtemp();
		lt_copy_tree(orig, dir);
		lt_seg(path, sizeof(path), dir, 0, 0);
		cr_assert_eq(truncate(path, (off_t)cut), 0);
		/* as if the last batch had been written but not yet fsync'd and published */
		snprintf(pdir, sizeof(pdir), "%s/0", dir);
		int dfd = open(pdir, O_RDONLY | O_DIRECTORY);
		sp_log_durable_t d = {0, S, (uint64_t)B};
		cr_assert_eq(sp_log_durable_write(dfd, pdir, &d, err, sizeof(err)), SPATE_OK);
		close(dfd);

		cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "cut %llu: %s",
		             (unsigned long long)cut, err);
		cr_assert_eq(sp_log_writer_truncated(w), cut - S, "cut %llu", (unsigned long long)cut);
		cr_assert_eq(sp_log_writer_next_offset(w), (uint64_t)B);
		sp_log_durable_t pub;
		sp_log_writer_durable(w, &pub);
		cr_assert_eq(pub.len, S);
		cr_assert_eq(pub.next, (uint64_t)B);
		/* everything before the torn batch is kept byte for byte */
		size_t nlen;
		uint8_t *nbytes = slurp(path, &nlen);
		cr_assert_eq(nlen, S);
		cr_assert_eq(memcmp(nbytes, obytes, S), 0);
		free(nbytes);
		/* and appending continues at the torn batch's base offset */
		spate_push_record_t r;
		lt_make(1000, 0, &r);
		uint64_t off;
		cr_assert_eq(sp_log_writer_put(w, &r, r.timestamp_ms, &off, err, sizeof(err)), SPATE_OK);
		cr_assert_eq(off, (uint64_t)B);
		cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);

		sp_log_verify_stats_t st = {0};
		cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_OK, "cut %llu: %s",
		             (unsigned long long)cut, err);
		cr_assert_eq(st.records, (uint64_t)B + 1);
		lt_recs_t recs = {0};
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, (size_t)B + 1);
		for (int64_t i = 0; i < B; i++)
			lt_check(&recs.v[i], (uint64_t)i, (uint64_t)i);
		lt_check(&recs.v[B], 1000, (uint64_t)B);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
	free(obytes);
	lt_rmrf(orig);
	free(orig);
}

Test(log_writer, bad_last_batch_is_a_torn_tail)
{
	char *dir = lt_mkdtemp();
	char err[1024], path[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 400);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	put_range(w, 0, 40);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	lt_seg(path, sizeof(path), dir, 0, 0);
	batches_t b;
	scan_batches(path, &b);
	uint64_t S = b.pos[b.n - 1];
	int fd = open(path, O_RDWR);
	uint8_t x;
	cr_assert_eq(pread(fd, &x, 1, (off_t)(S + 30)), 1);
	x ^= 0x40;
	cr_assert_eq(pwrite(fd, &x, 1, (off_t)(S + 30)), 1);
	close(fd);
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(sp_log_writer_truncated(w), b.total[b.n - 1]);
	cr_assert_eq(sp_log_writer_next_offset(w), (uint64_t)b.base[b.n - 1]);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	struct stat st;
	stat(path, &st);
	cr_assert_eq((uint64_t)st.st_size, S);
	lt_rmrf(dir);
	free(dir);
}

/* ---- corruption is never truncated ---------------------------------------------------- */

typedef struct hook {
	int calls;
	sp_log_corrupt_info_t last;
	char file[4096];
} hook_t;

static void on_corrupt(void *opaque, const sp_log_corrupt_info_t *info)
{
	hook_t *h = opaque;
	h->calls++;
	h->last = *info;
	snprintf(h->file, sizeof(h->file), "%s", info->file);
}

Test(log_writer, flipped_byte_in_middle_batch)
{
	char *dir = lt_mkdtemp();
	char err[1024], path[4096], needle[128];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 500);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	put_range(w, 0, 120);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	lt_seg(path, sizeof(path), dir, 0, 0);
	batches_t b;
	scan_batches(path, &b);
	cr_assert_geq(b.n, 6);
	size_t k = b.n / 2;
	uint64_t P = b.pos[k], T = b.total[k];
	uint64_t B = (uint64_t)b.base[k], B2 = (uint64_t)b.base[k + 1];
	int fd = open(path, O_RDWR);
	uint8_t x;
	cr_assert_eq(pread(fd, &x, 1, (off_t)(P + T / 2)), 1);
	x ^= 0x01;
	cr_assert_eq(pwrite(fd, &x, 1, (off_t)(P + T / 2)), 1);
	close(fd);
	uint64_t size0, h0 = lt_hash_file(path, &size0), tree0 = lt_hash_tree(dir);
	snprintf(needle, sizeof(needle), "byte %llu", (unsigned long long)P);

	/* verify names the file and the byte offset of the bad batch */
	sp_log_verify_stats_t st = {0};
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_ERR_CORRUPT);
	cr_assert(strstr(err, "00000000000000000000.log"), "%s", err);
	cr_assert(strstr(err, needle), "%s", err);
	cr_assert_eq(st.batches, k, "the batches before it were fine");

	/* the reader with log.on.corruption=fail: the records before it, then the error */
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	lt_recs_t recs = {0};
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_ERR_CORRUPT);
	cr_assert(strstr(err, "00000000000000000000.log"), "%s", err);
	cr_assert(strstr(err, needle), "%s", err);
	cr_assert_eq(recs.n, B);
	for (uint64_t i = 0; i < B; i++)
		lt_check(&recs.v[i], i, i);
	lt_recs_free(&recs);

	/* with skip: every record but the bad batch's, and one report of the range */
	for (int mode = 0; mode < 2; mode++) {
		hook_t h = {0};
		lt_ropts(&ro);
		ro.skip_corrupt = true;
		ro.no_uring = mode;
		ro.on_corrupt = on_corrupt;
		ro.corrupt_opaque = &h;
		cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, 120 - (B2 - B));
		size_t j = 0;
		for (uint64_t i = 0; i < 120; i++)
			if (i < B || i >= B2)
				lt_check(&recs.v[j++], i, i);
		lt_recs_free(&recs);
		cr_assert_eq(h.calls, 1);
		cr_assert_eq(h.last.partition, 0);
		cr_assert_eq(h.last.byte, P);
		cr_assert_eq(h.last.bytes, T);
		cr_assert_eq(h.last.first_offset, B);
		cr_assert_eq(h.last.last_offset, B2 - 1);
		cr_assert(strstr(h.file, "00000000000000000000.log"));
	}

	/* none of that changed a byte */
	uint64_t size1;
	cr_assert_eq(lt_hash_file(path, &size1), h0);
	cr_assert_eq(size1, size0);
	cr_assert_eq(lt_hash_tree(dir), tree0);

	/* the writer keeps the corrupt batch (valid data follows it) and appends after */
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(sp_log_writer_truncated(w), 0);
	cr_assert_eq(sp_log_writer_next_offset(w), 120);
	cr_assert_eq(lt_hash_file(path, &size1), h0);
	cr_assert_eq(size1, size0);
	cr_assert_eq(lt_hash_tree(dir), tree0, "opening rewrote nothing but identical bytes");
	put_range(w, 120, 130);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	size_t nlen;
	uint8_t *now = slurp(path, &nlen);
	cr_assert_gt(nlen, size0);
	cr_assert_eq(XXH3_64bits(now, size0), h0, "the old bytes are untouched");
	free(now);
	cr_assert_eq(sp_log_verify_partition(dir, 0, &st, err, sizeof(err)), SPATE_ERR_CORRUPT);
	cr_assert(strstr(err, needle), "%s", err);
	lt_rmrf(dir);
	free(dir);
}

/* ---- lock, durable file, flush policy -------------------------------------------------- */

Test(log_writer, one_writer_per_partition)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 2, err, sizeof(err)), SPATE_OK);
	sp_log_writer_t *w1, *w2, *w3;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w1, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w2, err, sizeof(err)), SPATE_ERR_BUSY);
	cr_assert(strstr(err, "another writer"), "%s", err);
	cr_assert_eq(sp_log_writer_open(dir, 1, NULL, &w3, err, sizeof(err)), SPATE_OK,
	             "other partitions are free");
	cr_assert_eq(sp_log_writer_open(dir, 2, NULL, &w2, err, sizeof(err)), SPATE_ERR_INVALID);
	sp_log_writer_close(w1, NULL, 0);
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w2, err, sizeof(err)), SPATE_OK);
	sp_log_writer_close(w2, NULL, 0);
	sp_log_writer_close(w3, NULL, 0);
	/* an existing log must match a given partition count */
	cr_assert_eq(sp_log_create(dir, 3, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "2 partitions"), "%s", err);
	cr_assert_eq(sp_log_create(dir, 2, err, sizeof(err)), SPATE_OK);
	lt_rmrf(dir);
	free(dir);
}

static sp_log_durable_t read_durable(const char *dir)
{
	char pdir[4096], err[512];
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	sp_log_durable_t d;
	cr_assert_eq(sp_log_durable_read(pdir, &d, err, sizeof(err)), SPATE_OK, "%s", err);
	return d;
}

Test(log_writer, durable_file_follows_fsync)
{
	char *dir = lt_mkdtemp();
	char err[1024], path[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 65536, 300);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	sp_log_durable_t d = read_durable(dir);
	cr_assert_eq(d.seg, 0);
	cr_assert_eq(d.len, 0);
	cr_assert_eq(d.next, 0);
	put_range(w, 0, 30); /* full batches reach the file, but nothing is fsync'd */
	lt_seg(path, sizeof(path), dir, 0, 0);
	struct stat st;
	stat(path, &st);
	cr_assert_gt(st.st_size, 0);
	d = read_durable(dir);
	cr_assert_eq(d.len, 0, "not published before a flush");
	cr_assert_eq(d.next, 0);
	cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
	d = read_durable(dir);
	stat(path, &st);
	cr_assert_eq(d.next, 30);
	cr_assert_eq(d.len, (uint64_t)st.st_size);
	/* past segment.bytes the writer rolls (a roll fsyncs the old segment and
	 * publishes the new one); the published segment follows */
	put_range(w, 30, 1000);
	cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
	d = read_durable(dir);
	cr_assert_gt(d.seg, 0);
	cr_assert_eq(d.next, 1000);
	lt_seg(path, sizeof(path), dir, 0, d.seg);
	stat(path, &st);
	cr_assert_eq(d.len, (uint64_t)st.st_size);
	cr_assert_leq(st.st_size, 65536);
	sp_log_seglist_t l = {0};
	char pdir[4200];
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	cr_assert_eq(sp_log_seglist(pdir, &l, NULL, 0), SPATE_OK);
	cr_assert_geq(l.n, 2);
	for (size_t i = 0; i + 1 < l.n; i++) { /* every earlier segment is within segment.bytes */
		lt_seg(path, sizeof(path), dir, 0, l.base[i]);
		stat(path, &st);
		cr_assert_leq(st.st_size, 65536);
		cr_assert_gt(st.st_size, 65536 - 2000, "rolled only when the next batch did not fit");
	}
	cr_assert_eq(l.base[l.n - 1], d.seg);
	sp_log_seglist_free(&l);
	sp_log_writer_close(w, NULL, 0);
	lt_rmrf(dir);
	free(dir);
}

Test(log_writer, flush_policy)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 1 << 16);
	o.flush_records = 10; /* flush.records=10, flush.ms far away */
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	spate_push_record_t r[4];
	for (int i = 0; i < 4; i++)
		lt_make((uint64_t)i, i, &r[i]);
	cr_assert_eq(sp_log_writer_append(w, r, 4, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(read_durable(dir).next, 0);
	cr_assert_gt(sp_log_writer_flush_due(w, sp_now_ms()), 0);
	cr_assert_eq(sp_log_writer_append(w, r, 4, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(read_durable(dir).next, 0);
	cr_assert_eq(sp_log_writer_append(w, r, 4, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(read_durable(dir).next, 12, "flushed once 10 records were pending");
	cr_assert_eq(sp_log_writer_flush_due(w, sp_now_ms()), -1);
	sp_log_writer_close(w, NULL, 0);
	/* flush.ms=0: every append is durable when it returns */
	o.flush_records = 0;
	o.flush_ms = 0;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(sp_log_writer_append(w, r, 1, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(read_durable(dir).next, 13);
	cr_assert_eq(sp_log_writer_append(w, r, 3, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(read_durable(dir).next, 16);
	sp_log_writer_close(w, NULL, 0);
	lt_rmrf(dir);
	free(dir);
}
