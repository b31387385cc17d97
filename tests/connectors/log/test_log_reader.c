/* test_log_reader.c - tests of connectors/log/reader.c: never past the durable length
 * and never a changed file, tailing appends of another process, a concurrent writer
 * process, offset seeks through the index, the pread fallback, at-timestamp, the end
 * noted for stop.at.end, out-of-range seeks. */
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Polls that must return nothing to call a reader idle (each waits this long). */
#define IDLE_POLLS   3
#define IDLE_WAIT_MS 100

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

/* Poll a few times and expect nothing. */
static void expect_idle(sp_log_reader_t *rd, lt_recs_t *recs)
{
	char err[1024];
	size_t before = recs->n;
	for (int i = 0; i < IDLE_POLLS; i++) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		poll(&pf, 1, IDLE_WAIT_MS);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		lt_take(out, n, recs);
	}
	cr_assert_eq(recs->n, before, "nothing past the durable length");
}

Test(log_reader, never_past_durable_and_never_changes_a_file)
{
	for (int mode = 0; mode < 2; mode++) {
		char *dir = lt_mkdtemp();
		char err[1024], path[4096];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		sp_log_wopts_t o;
		lt_wopts(&o, 1 << 20, 300);
		sp_log_writer_t *w;
		cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
		put_range(w, 0, 100);
		cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
		put_range(w, 100, 150); /* written in full batches, not fsync'd, not published */
		sp_log_durable_t d;
		sp_log_writer_durable(w, &d);
		lt_seg(path, sizeof(path), dir, 0, 0);
		struct stat st;
		stat(path, &st);
		cr_assert_gt((uint64_t)st.st_size, d.len, "the file holds unpublished batches");
		cr_assert_eq(d.next, 100);
		uint64_t tree0 = lt_hash_tree(dir);

		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		sp_part_t part;
		sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
		lt_recs_t recs = {0};
		lt_read_until(rd, &recs, 100);
		expect_idle(rd, &recs);
		cr_assert_eq(sp_log_reader_lag(rd), 0);
		cr_assert_eq(lt_hash_tree(dir), tree0, "the reader changed no file");
		for (uint64_t i = 0; i < 100; i++)
			lt_check(&recs.v[i], i, i);

		/* the writer publishes: the tailing reader sees exactly the rest */
		cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
		lt_read_until(rd, &recs, 150);
		expect_idle(rd, &recs);
		for (uint64_t i = 100; i < 150; i++)
			lt_check(&recs.v[i], i, i);
		sp_log_reader_close(rd);
		sp_log_writer_close(w, NULL, 0);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
}

/* A child process writes with flushes now and then; the parent tails and checks every
 * record it gets against the durable file read right after: never past it. */
Test(log_reader, concurrent_writer_process)
{
	const uint64_t total = 20000;
	char *dir = lt_mkdtemp();
	char err[1024], pdir[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sp_log_wopts_t o;
		lt_wopts(&o, 256 << 10, 2048);
		sp_log_writer_t *w;
		if (sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)))
			_exit(2);
		uint64_t seed = 42;
		for (uint64_t i = 0; i < total; i++) {
			spate_push_record_t r;
			lt_make(i, 0, &r);
			if (sp_log_writer_put(w, &r, r.timestamp_ms, NULL, err, sizeof(err)))
				_exit(3);
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			if ((seed >> 33) % 300 == 0 && sp_log_writer_flush(w, err, sizeof(err)))
				_exit(4);
		}
		_exit(sp_log_writer_close(w, err, sizeof(err)) ? 5 : 0);
	}
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_part_t part;
	sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
	lt_recs_t recs = {0};
	while (recs.n < total) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0, "no progress at %zu records", recs.n);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		size_t before = recs.n;
		lt_take(out, n, &recs);
		if (recs.n > before) {
			sp_log_durable_t d;
			cr_assert_eq(sp_log_durable_read(pdir, &d, err, sizeof(err)), SPATE_OK, "%s", err);
			cr_assert_lt(
			    recs.v[recs.n - 1].offset, d.next, "offset %llu is past the durable %llu",
			    (unsigned long long)recs.v[recs.n - 1].offset, (unsigned long long)d.next);
		}
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child status %d", status);
	for (uint64_t i = 0; i < total; i++)
		lt_check(&recs.v[i], i, i);
	expect_idle(rd, &recs);
	cr_assert_gt(lt_segments(dir, 0), 3, "the reader followed segment rolls");
	sp_log_reader_close(rd);
	lt_recs_free(&recs);
	lt_rmrf(dir);
	free(dir);
}

Test(log_reader, tailing_sees_appends_of_another_process)
{
	for (int mode = 0; mode < 2; mode++) {
		char *dir = lt_mkdtemp();
		char err[1024];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		sp_log_wopts_t o;
		lt_wopts(&o, 1 << 20, 4096);
		sp_log_writer_t *w;
		cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
		put_range(w, 0, 100);
		cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		sp_part_t part;
		sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
		lt_recs_t recs = {0};
		lt_read_until(rd, &recs, 100);
		expect_idle(rd, &recs); /* now it waits on inotify */
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			if (sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)))
				_exit(2);
			for (uint64_t b = 0; b < 5; b++) {
				for (uint64_t i = 100 + b * 10; i < 110 + b * 10; i++) {
					spate_push_record_t r;
					lt_make(i, 0, &r);
					if (sp_log_writer_put(w, &r, r.timestamp_ms, NULL, err, sizeof(err)))
						_exit(3);
				}
				if (sp_log_writer_flush(w, err, sizeof(err)))
					_exit(4);
				usleep(20000);
			}
			_exit(sp_log_writer_close(w, err, sizeof(err)) ? 5 : 0);
		}
		lt_read_until(rd, &recs, 150);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
		expect_idle(rd, &recs);
		for (uint64_t i = 0; i < 150; i++)
			lt_check(&recs.v[i], i, i);
		sp_log_reader_close(rd);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
}

/* ---- seeks ------------------------------------------------------------------------------ */

#define SEEK_RECORDS 30000
#define SEEK_TRIES   1000

static char *seek_log(void)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 4 << 20, 1024);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	uint64_t seed = 7;
	for (uint64_t i = 0; i < SEEK_RECORDS; i++) {
		put_range(w, i, i + 1);
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		if ((seed >> 33) % 6 == 0) /* batches of 1 to ~8 records */
			cr_assert_eq(sp_log_writer_end_batch(w, err, sizeof(err)), SPATE_OK);
	}
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	return dir;
}

/* Seek to `tries` random offsets; return the largest number of batch headers a seek walked. */
static uint64_t random_seeks(const char *dir, int tries, uint64_t seed)
{
	char err[1024];
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_part_t part;
	sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
	uint64_t max_steps = 0;
	for (int t = 0; t < tries; t++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t off = (seed >> 33) % SEEK_RECORDS;
		cr_assert_eq(sp_log_reader_seek(rd, 0, off, err, sizeof(err)), SPATE_OK, "%s", err);
		uint64_t steps = sp_log_reader_seek_steps(rd, 0);
		if (steps > max_steps)
			max_steps = steps;
		lt_recs_t recs = {0};
		while (recs.n == 0) { /* the first record after the seek is all it checks */
			struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
			cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0);
			sp_chunk_t *out[1];
			int n = sp_log_reader_poll(rd, out, 1, UINT64_MAX, err, sizeof(err));
			cr_assert_geq(n, 0, "%s", err);
			lt_take_at_most(out, n, &recs, 1);
		}
		lt_check(&recs.v[0], off, off);
		lt_recs_free(&recs);
	}
	sp_log_reader_close(rd);
	return max_steps;
}

Test(log_reader, index_seek_1000_random_offsets)
{
	char *dir = seek_log();
	cr_assert_geq(lt_segments(dir, 0), 2);
	uint64_t steps = random_seeks(dir, SEEK_TRIES, 99);
	/* An index entry every SP_LOG_INDEX_INTERVAL bytes: a seek walks at most the batches
	 * between two entries (each >= SP_LOG_BATCH_HEADER bytes, the last one up to a
	 * batch's size past the interval), not the thousands of its segment. */
	uint64_t bound = (SP_LOG_INDEX_INTERVAL + 1024 + 4 * 400) / SP_LOG_BATCH_HEADER + 2;
	cr_assert_leq(steps, bound, "a seek walked %llu batches (bound %llu)", (unsigned long long)steps,
	              (unsigned long long)bound);

	/* without the index (missing, then cut short) seeks still land right, by scanning */
	char copy[256], path[512];
	snprintf(copy, sizeof(copy), "%s-noindex", dir);
	lt_copy_tree(dir, copy);
	sp_log_seglist_t l = {0};
	snprintf(path, sizeof(path), "%s/0", copy);
	cr_assert_eq(sp_log_seglist(path, &l, NULL, 0), SPATE_OK);
	for (size_t i = 0; i < l.n; i++) {
		char idx[512];
		snprintf(idx, sizeof(idx), "%s/0/%020llu.index", copy, (unsigned long long)l.base[i]);
		if (i == 0)
			cr_assert_eq(unlink(idx), 0);
		else
			cr_assert_eq(truncate(idx, 8 * 3), 0);
	}
	sp_log_seglist_free(&l);
	uint64_t scan_steps = random_seeks(copy, 100, 5);
	cr_assert_gt(scan_steps, bound, "without an index the reader scans (%llu steps)",
	             (unsigned long long)scan_steps);
	lt_rmrf(copy);
	lt_rmrf(dir);
	free(dir);
}

Test(log_reader, pread_fallback_by_env)
{
	char *dir = seek_log();
	char err[1024];
	setenv("SPATE_LOG_NO_URING", "1", 1);
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	cr_assert_not(sp_log_reader_uses_uring(rd));
	sp_log_reader_close(rd);
	lt_recs_t recs = {0};
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, SEEK_RECORDS);
	for (uint64_t i = 0; i < SEEK_RECORDS; i++)
		lt_check(&recs.v[i], i, i);
	lt_recs_free(&recs);
	unsetenv("SPATE_LOG_NO_URING");
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	cr_assert(sp_log_reader_uses_uring(rd), "io_uring is available on this machine");
	sp_log_reader_close(rd);
	lt_rmrf(dir);
	free(dir);
}

Test(log_reader, at_timestamp)
{
	char *dir = seek_log();
	char err[1024];
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	const uint64_t probes[] = {0, 1, 13, 500, 12345, SEEK_RECORDS - 1};
	for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
		spate_push_record_t r;
		lt_make(probes[k], 0, &r);
		int64_t ts = r.timestamp_ms;
		uint64_t want = SEEK_RECORDS;
		for (uint64_t i = 0; i < SEEK_RECORDS; i++) {
			lt_make(i, 0, &r);
			if (r.timestamp_ms >= ts) {
				want = i;
				break;
			}
		}
		uint64_t got;
		cr_assert_eq(sp_log_reader_find_ts(rd, 0, ts, &got, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(got, want, "timestamp %lld: offset %llu, expected %llu", (long long)ts,
		             (unsigned long long)got, (unsigned long long)want);
	}
	uint64_t got;
	cr_assert_eq(sp_log_reader_find_ts(rd, 0, INT64_MAX, &got, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(got, SEEK_RECORDS, "past the last timestamp: the end");
	cr_assert_eq(sp_log_reader_find_ts(rd, 0, 0, &got, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(got, 0);
	sp_log_reader_close(rd);
	lt_rmrf(dir);
	free(dir);
}

Test(log_reader, end_noted_at_start_is_where_it_stops)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 2, err, sizeof(err)), SPATE_OK);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 500);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
	put_range(w, 0, 100);
	cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	sp_part_t parts[2];
	memset(parts, 0, sizeof(parts));
	uint64_t start, next;
	cr_assert_eq(sp_log_reader_bounds(rd, 0, &start, &next, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(start, 0);
	cr_assert_eq(next, 100);
	sp_log_reader_set_end(rd, 0, true, next - 1);
	cr_assert_eq(sp_log_reader_bounds(rd, 1, &start, &next, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(next, 0, "partition 1 is empty (no writer ever opened it)");
	sp_log_reader_set_end(rd, 1, false, 0);
	for (int i = 0; i < 2; i++) {
		sp_log_reader_bind(rd, i, &parts[i]);
		cr_assert_eq(sp_log_reader_seek(rd, i, 0, err, sizeof(err)), SPATE_OK, "%s", err);
	}
	cr_assert_not(sp_log_reader_ended(rd));
	cr_assert_eq(sp_log_reader_lag(rd), 100);
	/* appended after the end was noted: not delivered */
	put_range(w, 100, 130);
	cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
	lt_recs_t recs = {0};
	bool end_marker = false;
	while (!sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		for (int k = 0; k < n; k++)
			end_marker = out[k]->end_marker;
		lt_take(out, n, &recs);
	}
	cr_assert_eq(recs.n, 100);
	cr_assert(end_marker, "the last chunk says the partition ended");
	cr_assert_eq(sp_log_reader_lag(rd), 0);
	for (uint64_t i = 0; i < 100; i++)
		lt_check(&recs.v[i], i, i);
	lt_recs_free(&recs);
	sp_log_reader_close(rd);
	sp_log_writer_close(w, NULL, 0);
	lt_rmrf(dir);
	free(dir);
}

Test(log_reader, seek_out_of_range_names_the_range)
{
	char *dir = lt_mkdtemp();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, NULL, &w, err, sizeof(err)), SPATE_OK);
	put_range(w, 0, 10);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK);
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_log_reader_t *rd;
	cr_assert_eq(sp_log_reader_open(dir, &ro, &rd, err, sizeof(err)), SPATE_OK);
	cr_assert_eq(sp_log_reader_seek(rd, 0, 11, err, sizeof(err)), SPATE_ERR_OUT_OF_RANGE);
	cr_assert(strstr(err, "partition 0"), "%s", err);
	cr_assert(strstr(err, "0..10"), "%s", err);
	cr_assert_eq(sp_log_reader_seek(rd, 0, 10, err, sizeof(err)), SPATE_OK, "the end itself is fine");
	sp_log_reader_close(rd);
	lt_rmrf(dir);
	free(dir);
}

/* A partition no writer ever opened has nothing readable (no durable file); a reader
 * seeked there waits, and sees the first writer's records once they are published. */
Test(log_reader, waits_for_the_first_writer)
{
	for (int mode = 0; mode < 2; mode++) {
		char *dir = lt_mkdtemp();
		char err[1024];
		cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK);
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		sp_part_t part;
		sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
		lt_recs_t recs = {0};
		expect_idle(rd, &recs);
		sp_log_writer_t *w;
		sp_log_wopts_t o;
		lt_wopts(&o, 1 << 20, 1000);
		cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK);
		expect_idle(rd, &recs);
		put_range(w, 0, 25);
		cr_assert_eq(sp_log_writer_end_batch(w, err, sizeof(err)), SPATE_OK);
		expect_idle(rd, &recs); /* in the file, not published */
		cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK);
		lt_read_until(rd, &recs, 25);
		for (uint64_t i = 0; i < 25; i++)
			lt_check(&recs.v[i], i, i);
		sp_log_reader_close(rd);
		sp_log_writer_close(w, NULL, 0);
		lt_recs_free(&recs);
		lt_rmrf(dir);
		free(dir);
	}
}

/* Read the whole seek log with io_uring; return the reader's I/O counters. */
static void read_with_stats(const char *dir, sp_log_reader_stats_t *st)
{
	char err[1024];
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	sp_part_t part;
	sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, 0);
	cr_assert(sp_log_reader_uses_uring(rd));
	sp_log_reader_set_end(rd, 0, true, SEEK_RECORDS - 1);
	lt_recs_t recs = {0};
	while (!sp_log_reader_ended(rd)) {
		struct pollfd pf = {sp_log_reader_fd(rd), POLLIN, 0};
		cr_assert_gt(poll(&pf, 1, LT_WAIT_MS), 0);
		sp_chunk_t *out[8];
		int n = sp_log_reader_poll(rd, out, 8, UINT64_MAX, err, sizeof(err));
		cr_assert_geq(n, 0, "%s", err);
		lt_take(out, n, &recs);
	}
	cr_assert_eq(recs.n, SEEK_RECORDS);
	for (uint64_t i = 0; i < SEEK_RECORDS; i += 997)
		lt_check(&recs.v[i], i, i);
	lt_recs_free(&recs);
	sp_log_reader_stats(rd, st);
	sp_log_reader_close(rd);
}

Test(log_reader, registered_buffers_where_memlock_allows)
{
	/* registered buffers are the ring's: io_uring also when the suite runs with
	 * SPATE_LOG_NO_URING=1 (as pread_fallback_by_env ends) */
	unsetenv("SPATE_LOG_NO_URING");
	char *dir = seek_log();
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	/* 1 partition: 2 reads in flight + 2, within half the memlock limit */
	size_t want = 2 * 1 + 2;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 / SP_LOG_POOL_BUF_BYTES < want)
		want = (size_t)(rl.rlim_cur / 2 / SP_LOG_POOL_BUF_BYTES);
	sp_log_reader_stats_t st;
	read_with_stats(dir, &st);
	cr_assert_eq(st.registered, want, "registered %zu, expected %zu", st.registered, want);
	cr_assert_geq(st.reads, 5, "a ~5 MB log in ~1 MiB reads");
	if (want)
		cr_assert_gt(st.fixed_reads, 0, "registered buffers are read with READ_FIXED");
	/* with a memlock limit too small for one buffer: plain buffers, same records */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct rlimit small = {SP_LOG_POOL_BUF_BYTES, rl.rlim_max};
		if (setrlimit(RLIMIT_MEMLOCK, &small))
			_exit(2);
		read_with_stats(dir, &st);
		_exit(st.registered == 0 && st.fixed_reads == 0 && st.reads >= 5 ? 0 : 3);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	lt_rmrf(dir);
	free(dir);
}

/* ---- log.read.direct ---------------------------------------------------------------------- */

/* A folder for direct reads on the disk that holds the build (O_DIRECT needs a file
 * system that reads directly, and /tmp may be another one). */
static char *direct_dir(void)
{
	const char *b = getenv("SPATE_BUILD_DIR");
	cr_assert(b && *b, "SPATE_BUILD_DIR is set by meson test");
	char *d;
	cr_assert(asprintf(&d, "%s/direct-XXXXXX", b) > 0);
	cr_assert(mkdtemp(d), "mkdtemp %s", d);
	return d;
}

/* O_DIRECT reads (both backends) return exactly what the page-cache path returns: every
 * record of a log of many segments whose batches cross every read boundary (so a batch's
 * tail is carried into the next aligned read), from offset 0 and from offsets whose
 * batches start at unaligned bytes (a first read with a lead), and while tailing a
 * writer whose published length ends at unaligned bytes. */
Test(log_reader, direct_reads_return_what_the_page_cache_path_does, .timeout = 120)
{
	enum { N = 40000, ROUNDS = 20 };
	char *dir = direct_dir();
	char err[1024];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t o;
	lt_wopts(&o, 3 << 20, 3000); /* 3 MiB segments: several reads and a few segments */
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	put_range(w, 0, N);
	cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_geq(lt_segments(dir, 0), 2);
	for (int mode = 0; mode < 2; mode++) {
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		ro.direct = true;
		lt_recs_t recs = {0};
		cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
		cr_assert_eq(recs.n, N, "direct (%s) read %zu of %d records", mode ? "pread" : "io_uring",
		             recs.n, N);
		for (uint64_t i = 0; i < N; i++)
			lt_check(&recs.v[i], i, i);
		lt_recs_free(&recs);
		/* seeks: the first read starts at the batch's byte, rarely a multiple of 4096 */
		uint64_t seed = 11 + (uint64_t)mode;
		for (int t = 0; t < 8; t++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			uint64_t from = (seed >> 33) % N;
			lt_recs_t part = {0};
			cr_assert_eq(lt_read(dir, 0, from, &ro, &part, err, sizeof(err)), SPATE_OK, "%s",
			             err);
			cr_assert_eq(part.n, N - from, "from %llu: %zu records", (unsigned long long)from,
			             part.n);
			for (uint64_t i = 0; i < part.n; i++)
				lt_check(&part.v[i], from + i, from + i);
			lt_recs_free(&part);
		}
	}
	/* tailing: each round publishes a length that ends mid-page */
	for (int mode = 0; mode < 2; mode++) {
		sp_log_ropts_t ro;
		lt_ropts(&ro);
		ro.no_uring = mode;
		ro.direct = true;
		sp_part_t part;
		uint64_t base = N + (uint64_t)mode * ROUNDS * 777;
		sp_log_reader_t *rd = lt_open_at(dir, &ro, &part, base);
		lt_recs_t recs = {0};
		for (int k = 0; k < ROUNDS; k++) {
			put_range(w, base + (uint64_t)k * 777, base + (uint64_t)(k + 1) * 777);
			cr_assert_eq(sp_log_writer_flush(w, err, sizeof(err)), SPATE_OK, "%s", err);
			lt_read_until(rd, &recs, (size_t)(k + 1) * 777);
		}
		expect_idle(rd, &recs);
		for (uint64_t i = 0; i < recs.n; i++)
			lt_check(&recs.v[i], base + i, base + i);
		sp_log_reader_close(rd);
		lt_recs_free(&recs);
	}
	sp_log_writer_close(w, NULL, 0);
	lt_rmrf(dir);
	free(dir);
}
