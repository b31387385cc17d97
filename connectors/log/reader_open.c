/* reader_open.c - opening and closing a log reader, and what it answers without reading.
 *
 * Open reads the metadata, watches every partition folder with inotify (before the first
 * read of its durable file, so no change is missed), makes the epoll fd the engine thread
 * waits on and the eventfd the core kicks, and picks the read backend: io_uring unless it
 * is turned off (the no_uring option, SPATE_LOG_NO_URING=1) or io_uring_queue_init fails
 * (EPERM under Docker's default seccomp profile); then pread, said once per process.
 * Close lets the backend get back what the kernel holds before anything is freed. The
 * queries (bounds, lag, ended, stats) read the partitions' state the core keeps.
 *
 * Threads: the engine thread, like the core (reader.c).
 */
#include "reader.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

static atomic_bool said_pread; /* "io_uring unavailable" is said once per process */

/* Read through io_uring unless it is turned off or unavailable: then with pread (r->be
 * stays sp_log_rd_pread), said once per process. */
static void pick_backend(sp_log_reader_t *r)
{
	const char *env = getenv("SPATE_LOG_NO_URING");
	if (r->o.no_uring || (env && *env && strcmp(env, "0"))) {
		if (!atomic_exchange(&said_pread, true))
			sp_msg(r->o.eng, SP_MSG_WARN, "log: io_uring disabled (%s); reading with pread",
			       r->o.no_uring ? "by option" : "SPATE_LOG_NO_URING");
		return;
	}
	int rc = sp_log_rd_uring_open(r);
	if (rc < 0 && !atomic_exchange(&said_pread, true))
		sp_msg(r->o.eng, SP_MSG_WARN, "log: io_uring is not available (%s%s); reading with pread",
		       strerror(-rc),
		       rc == -EPERM ? ": a seccomp profile such as Docker's default blocks it" : "");
}

int sp_log_reader_open(const char *dir, const sp_log_ropts_t *o, sp_log_reader_t **out, char *errstr,
                       size_t size)
{
	int parts, rc = sp_log_meta_read(dir, &parts, errstr, size);
	if (rc)
		return rc;
	if (!o || !o->alloc || !o->free)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "log reader: no chunk allocator");
	sp_log_reader_t *r = calloc(1, sizeof(*r));
	if (!r)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	r->ino_fd = r->epfd = r->kick_fd = -1;
	r->be = &sp_log_rd_pread; /* until pick_backend: nothing to wait for at close */
	r->o = *o;
	r->nparts = parts;
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	r->parts = calloc((size_t)parts, sizeof(*r->parts));
	r->pool = sp_log_pool_new();
	if (!r->parts || !r->pool) {
		free(r->parts);
		if (r->pool)
			sp_log_pool_unref(r->pool);
		free(r);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	}
	r->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->ino_fd < 0 || r->epfd < 0 || r->kick_fd < 0) {
		rc = sp_err(errstr, size, SPATE_ERR_IO, "log %s: inotify/epoll/eventfd: %s", dir,
		            strerror(errno));
		goto fail;
	}
	for (int i = 0; i < parts; i++) {
		rpart_t *p = &r->parts[i];
		p->id = i;
		sp_log_part_path(p->pdir, sizeof(p->pdir), dir, i);
		/* The watch comes before any read of the durable file, so no change is missed. */
		p->wd = inotify_add_watch(r->ino_fd, p->pdir, IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE);
		if (p->wd < 0) {
			rc = sp_err(errstr, size, errno == ENOENT ? SPATE_ERR_NOT_FOUND : SPATE_ERR_IO,
			            "%s: inotify: %s", p->pdir, strerror(errno));
			goto fail;
		}
		sp_log_rd_refresh(r, p);
	}
	pick_backend(r);
	/* SPATE_LOG_DECODE_THREADS=N overrides the option (tests run the reader's suites both
	 * ways with it) */
	const char *denv = getenv("SPATE_LOG_DECODE_THREADS");
	long n = denv && *denv ? strtol(denv, NULL, 10) : o->decode_threads;
	if (n) {
		if (n < 0 && (n = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
			n = 1;
		if ((rc = sp_log_rd_dec_start(r, (int)n, errstr, size)))
			goto fail;
		if (r->be == &sp_log_rd_uring)
			sp_log_rd_uring_offload(r, (unsigned)n);
	}
	struct epoll_event ev = {.events = EPOLLIN};
	ev.data.fd = r->kick_fd;
	epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->kick_fd, &ev);
	ev.data.fd = r->be->fd(r);
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0) {
		rc = sp_err(errstr, size, SPATE_ERR_IO, "log %s: epoll: %s", dir, strerror(errno));
		goto fail;
	}
	*out = r;
	return SPATE_OK;
fail:
	sp_log_reader_close(r);
	return rc;
}

int sp_log_reader_partitions(const sp_log_reader_t *r)
{
	return r->nparts;
}

void sp_log_reader_bind(sp_log_reader_t *r, int i, sp_part_t *p)
{
	r->parts[i].part = p;
}

int sp_log_reader_bounds(sp_log_reader_t *r, int i, uint64_t *start, uint64_t *next, char *errstr,
                         size_t size)
{
	sp_log_seglist_t segs = {0};
	int rc = sp_log_rd_bounds(r, &r->parts[i], &segs, start, next, errstr, size);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_reader_find_ts(sp_log_reader_t *r, int i, int64_t ts, uint64_t *offset, char *errstr, size_t size)
{
	rpart_t *p = &r->parts[i];
	sp_log_seglist_t segs = {0};
	uint64_t start = 0, next = 0;
	int rc = sp_log_rd_bounds(r, p, &segs, &start, &next, errstr, size);
	*offset = next;
	if (rc == SPATE_OK && p->have_dur)
		rc = sp_log_find_ts(p->pdir, &p->dur, &segs, ts, offset, errstr, size);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_reader_last_record(sp_log_reader_t *r, int i, bool *has, uint64_t *last, char *errstr, size_t size)
{
	rpart_t *p = &r->parts[i];
	sp_log_seglist_t segs = {0};
	uint64_t start = 0, next = 0;
	*has = false;
	int rc = sp_log_rd_bounds(r, p, &segs, &start, &next, errstr, size);
	if (rc == SPATE_OK && next > start)
		rc = sp_log_last_record(p->pdir, &p->dur, &segs, has, last, errstr, size);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_reader_fd(const sp_log_reader_t *r)
{
	return r->epfd;
}

/* The next offset p delivers, not counting reads in the decode stage: their records are
 * not parsed for the engine yet (a durable push's lag and end wait for them). */
static uint64_t next_of(const rpart_t *p)
{
	return p->d_head ? p->d_head->snap_next_deliver : p->next_deliver;
}

uint64_t sp_log_reader_next(const sp_log_reader_t *r, int i)
{
	return next_of(&r->parts[i]);
}

int64_t sp_log_reader_part_lag(const sp_log_reader_t *r, int i)
{
	if (i < 0 || i >= r->nparts)
		return -1;
	const rpart_t *p = &r->parts[i];
	if (p->st == P_IDLE)
		return 0;
	uint64_t next = next_of(p), end = p->have_dur ? p->dur.next : next;
	if (p->has_end && end > p->end + 1)
		end = p->end + 1;
	if (p->end_set && !p->has_end)
		return 0;
	return end > next ? (int64_t)(end - next) : 0;
}

int64_t sp_log_reader_lag(const sp_log_reader_t *r)
{
	int64_t lag = 0;
	for (int i = 0; i < r->nparts; i++)
		lag += sp_log_reader_part_lag(r, i);
	return lag;
}

bool sp_log_reader_ended(const sp_log_reader_t *r)
{
	bool any = false;
	for (int i = 0; i < r->nparts; i++) {
		const rpart_t *p = &r->parts[i];
		if (!p->end_set)
			continue;
		any = true;
		if (p->st != P_DONE || p->nready || p->ndec || p->skip_pending)
			return false;
	}
	return any;
}

bool sp_log_reader_uses_uring(const sp_log_reader_t *r)
{
	return r->be == &sp_log_rd_uring;
}

uint64_t sp_log_reader_skipped(const sp_log_reader_t *r)
{
	return r->skipped;
}

void sp_log_reader_stats(const sp_log_reader_t *r, sp_log_reader_stats_t *st)
{
	*st = r->stats;
	st->registered = sp_log_pool_registered(r->pool);
}

uint64_t sp_log_reader_seek_steps(const sp_log_reader_t *r, int i)
{
	return r->parts[i].seek_steps;
}

void sp_log_reader_close(sp_log_reader_t *r)
{
	if (!r)
		return;
	r->closing = true;
	/* the decode stage first: its threads read buffers that are about to be freed */
	for (int i = 0; r->dec && r->parts && i < r->nparts; i++)
		sp_log_rd_dec_drop(r, &r->parts[i], NULL);
	sp_log_rd_dec_stop(r);
	/* The backend first: a read may still be copying into a buffer that is about to be
	 * freed. */
	bool leak = !r->be->close(r);
	for (int i = 0; r->parts && i < r->nparts; i++) {
		rpart_t *p = &r->parts[i];
		if (!leak)
			sp_log_rd_drop_reqs(r, p, NULL);
		sp_log_rd_drop_ready(r, p);
		sp_log_rd_seg_unref(p->seg);
		free(p->errmsg);
	}
	while (r->all && !leak)
		sp_log_rd_req_free(r, r->all); /* discarded ones whose completion was never seen */
	if (r->ino_fd >= 0)
		close(r->ino_fd);
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->kick_fd >= 0)
		close(r->kick_fd);
	if (r->pool && !leak)
		sp_log_pool_unref(r->pool);
	free(r->parts);
	free(r);
}
