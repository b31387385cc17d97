/* test_log_writer_sync.c - what a writer's open fsyncs before it publishes (guarantee 1).
 *
 * A writer killed with batches in the page cache leaves them past the durable length; a
 * segment copied in by hand was never fsync'd at all. The next writer to open the
 * partition publishes them durable, so it must make them durable first. This file is
 * linked with -Wl,--wrap=fdatasync,--wrap=fsync,--wrap=renameat (tests/connectors/log/
 * meson.build): the wrappers note, in order, every file fdatasync'd or fsync'd and every
 * `durable` file published (read back right after its rename), and the tests check the
 * order. The wrappers pass every call through unchanged.
 */
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/* Events one open may cause at most (a few per segment). */
#define MAX_EVENTS 256

enum ev_kind { EV_FDATASYNC, EV_FSYNC, EV_PUBLISH };

/* One observed call: the file it was on (from /proc/self/fd), and for a publish what the
 * durable file said right after the rename. */
typedef struct ev {
	enum ev_kind kind;
	char path[SP_LOG_PATH_MAX];
	sp_log_durable_t dur;
} ev_t;

static ev_t evs[MAX_EVENTS];
static int nev;
static bool recording;

static void fd_path(int fd, char *buf, size_t size)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, size - 1);
	buf[n < 0 ? 0 : n] = 0;
}

static ev_t *note(enum ev_kind kind)
{
	if (!recording || nev == MAX_EVENTS)
		return NULL;
	ev_t *e = &evs[nev++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	return e;
}

int __wrap_fdatasync(int fd)
{
	ev_t *e = note(EV_FDATASYNC);
	if (e)
		fd_path(fd, e->path, sizeof(e->path));
	return __real_fdatasync(fd);
}

int __wrap_fsync(int fd)
{
	ev_t *e = note(EV_FSYNC);
	if (e)
		fd_path(fd, e->path, sizeof(e->path));
	return __real_fsync(fd);
}

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	int rc = __real_renameat(olddirfd, oldpath, newdirfd, newpath);
	if (rc == 0 && !strcmp(newpath, SP_LOG_DURABLE_NAME)) {
		ev_t *e = note(EV_PUBLISH);
		if (e) {
			fd_path(newdirfd, e->path, sizeof(e->path));
			cr_assert_eq(sp_log_durable_read(e->path, &e->dur, NULL, 0), SPATE_OK, "%s", e->path);
		}
	}
	return rc;
}

/* The first event of kind on a path ending in suffix, before event `before`; -1 if none. */
static int find(enum ev_kind kind, const char *suffix, int before)
{
	size_t sl = strlen(suffix);
	for (int i = 0; i < before; i++) {
		size_t pl = strlen(evs[i].path);
		if (evs[i].kind == kind && pl >= sl && !strcmp(evs[i].path + pl - sl, suffix))
			return i;
	}
	return -1;
}

static void start_recording(void)
{
	nev = 0;
	recording = true;
}

static void stop_recording(void)
{
	recording = false;
	cr_assert_lt(nev, MAX_EVENTS, "events were dropped");
}

/* Append records [from, to) of the test stream, closing a batch every `per` records. */
static void put_range(sp_log_writer_t *w, uint64_t from, uint64_t to, uint64_t per)
{
	char err[1024];
	for (uint64_t i = from; i < to; i++) {
		spate_push_record_t r;
		lt_make(i, 0, &r);
		uint64_t off;
		cr_assert_eq(sp_log_writer_put(w, &r, r.timestamp_ms, &off, err, sizeof(err)), SPATE_OK, "%s",
		             err);
		cr_assert_eq(off, i);
		if ((i + 1) % per == 0)
			cr_assert_eq(sp_log_writer_end_batch(w, err, sizeof(err)), SPATE_OK, "%s", err);
	}
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return (uint64_t)st.st_size;
}

/* Read partition 0 back: exactly records 0..n-1 at offsets 0..n-1. */
static void check_records(const char *dir, uint64_t n)
{
	char err[1024];
	sp_log_ropts_t ro;
	lt_ropts(&ro);
	lt_recs_t recs = {0};
	cr_assert_eq(lt_read(dir, 0, 0, &ro, &recs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(recs.n, n, "%zu records, expected %llu", recs.n, (unsigned long long)n);
	for (uint64_t i = 0; i < n; i++)
		lt_check(&recs.v[i], i, i);
	lt_recs_free(&recs);
}

Test(log_writer_sync, killed_writer_batches_are_synced_before_they_are_published)
{
	char *dir = lt_mkdtemp();
	char err[1024], seg[4096];
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t o;
	lt_wopts(&o, 1 << 20, 1 << 20);
	/* 20 records published durable by a writer that closed */
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	put_range(w, 0, 20, 10);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	lt_seg(seg, sizeof(seg), dir, 0, 0);
	uint64_t len0 = file_size(seg);
	char pdir[4096];
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	sp_log_durable_t d0;
	cr_assert_eq(sp_log_durable_read(pdir, &d0, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(d0.seg, 0);
	cr_assert_eq(d0.len, len0);
	cr_assert_eq(d0.next, 20);

	/* a writer that writes 40 more records in 4 batches, never flushes, and dies */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sp_log_writer_t *k;
		if (sp_log_writer_open(dir, 0, &o, &k, err, sizeof(err)) != SPATE_OK)
			_exit(2);
		for (uint64_t i = 20; i < 60; i++) {
			spate_push_record_t r;
			lt_make(i, 0, &r);
			if (sp_log_writer_put(k, &r, r.timestamp_ms, NULL, err, sizeof(err)) != SPATE_OK)
				_exit(3);
			if ((i + 1) % 10 == 0 && sp_log_writer_end_batch(k, err, sizeof(err)) != SPATE_OK)
				_exit(4);
		}
		_exit(0);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	uint64_t len1 = file_size(seg);
	cr_assert_gt(len1, len0, "the killed writer's batches are in the file");
	cr_assert_eq(sp_log_durable_read(pdir, &d0, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(d0.len, len0, "and not published");
	cr_assert_eq(d0.next, 20);

	/* the next writer keeps them (they are valid) and publishes them */
	start_recording();
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	stop_recording();
	cr_assert_eq(sp_log_writer_truncated(w), 0);
	cr_assert_eq(sp_log_writer_next_offset(w), 60);
	int pub = -1;
	for (int i = 0; i < nev && pub < 0; i++)
		if (evs[i].kind == EV_PUBLISH && (evs[i].dur.len > len0 || evs[i].dur.next > 20))
			pub = i;
	cr_assert_geq(pub, 0, "the open published the killed writer's batches");
	cr_assert_eq(evs[pub].dur.seg, 0);
	cr_assert_eq(evs[pub].dur.len, len1);
	cr_assert_eq(evs[pub].dur.next, 60);
	/* before that: the segment's bytes, its index and the folder's entries were synced */
	cr_assert_geq(find(EV_FDATASYNC, "/0/00000000000000000000.log", pub), 0,
	              "the segment was not fdatasync'd before its length %llu was published (%d events)",
	              (unsigned long long)len1, nev);
	cr_assert_geq(find(EV_FDATASYNC, "/0/00000000000000000000.index", pub), 0,
	              "the segment's index was not fdatasync'd before the publish");
	cr_assert_geq(find(EV_FSYNC, "/0", pub), 0,
	              "the partition folder was not fsync'd before the publish");
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	check_records(dir, 60);

	/* a clean reopen publishes nothing new and syncs nothing */
	start_recording();
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	stop_recording();
	cr_assert_eq(nev, 0, "%d events, the first on %s", nev, nev ? evs[0].path : "");
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	lt_rmrf(dir);
	free(dir);
}

Test(log_writer_sync, copied_segments_are_synced_before_they_are_published)
{
	char *src = lt_mkdtemp(), *dir = lt_mkdtemp();
	char err[1024], from[4096], to[4096], pdir[4096];
	cr_assert_eq(sp_log_create(src, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	sp_log_wopts_t o;
	lt_wopts(&o, 16384, 1024);
	sp_log_writer_t *w;
	cr_assert_eq(sp_log_writer_open(src, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	put_range(w, 0, 400, 1000);
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	snprintf(pdir, sizeof(pdir), "%s/0", src);
	sp_log_seglist_t segs = {0};
	cr_assert_eq(sp_log_seglist(pdir, &segs, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_geq(segs.n, 3, "several segments");

	/* the segment files alone (no index, no durable file) into a fresh log */
	cr_assert_eq(sp_log_create(dir, 1, err, sizeof(err)), SPATE_OK, "%s", err);
	for (size_t i = 0; i < segs.n; i++) {
		lt_seg(from, sizeof(from), src, 0, segs.base[i]);
		lt_seg(to, sizeof(to), dir, 0, segs.base[i]);
		size_t len;
		char *bytes = t_read_file(from, &len);
		cr_assert(bytes, "read %s", from);
		int fd = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
		cr_assert_geq(fd, 0, "%s", to);
		cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
		close(fd);
		free(bytes);
	}
	snprintf(pdir, sizeof(pdir), "%s/0", dir);
	sp_log_durable_t d;
	cr_assert_eq(sp_log_durable_read(pdir, &d, err, sizeof(err)), SPATE_ERR_NOT_FOUND);

	start_recording();
	cr_assert_eq(sp_log_writer_open(dir, 0, &o, &w, err, sizeof(err)), SPATE_OK, "%s", err);
	stop_recording();
	cr_assert_eq(sp_log_writer_next_offset(w), 400);
	int pub = find(EV_PUBLISH, "/0", nev);
	cr_assert_geq(pub, 0, "the open published");
	cr_assert_eq(evs[pub].dur.seg, segs.base[segs.n - 1]);
	cr_assert_eq(evs[pub].dur.next, 400);
	/* every copied segment (the earlier ones are published complete), and the folder that
	 * holds their names, were synced first */
	for (size_t i = 0; i < segs.n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "/0/%020llu.log", (unsigned long long)segs.base[i]);
		cr_assert_geq(find(EV_FDATASYNC, name, pub), 0, "%s was not fdatasync'd before the publish",
		              name);
	}
	cr_assert_geq(find(EV_FSYNC, "/0", pub), 0,
	              "the partition folder was not fsync'd before the publish");
	cr_assert_eq(sp_log_writer_close(w, err, sizeof(err)), SPATE_OK, "%s", err);
	check_records(dir, 400);
	sp_log_seglist_free(&segs);
	lt_rmrf(src);
	lt_rmrf(dir);
	free(src);
	free(dir);
}
