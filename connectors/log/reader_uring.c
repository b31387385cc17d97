/* reader_uring.c - the log reader's io_uring backend (the interface is in reader.h).
 *
 * One ring shared by all partitions, 2 entries per partition plus a few. The pool's first
 * buffers are registered with the ring (READ_FIXED) as far as RLIMIT_MEMLOCK allows; the
 * others are read into with plain reads. Reads are queued as SQEs and submitted once per
 * poll; a short read, or one that came back with EAGAIN or EINTR, is resubmitted for the
 * rest. The inotify fd is waited for through the ring too: a one-shot poll request,
 * re-armed while some partition waits, so the engine's epoll set holds only the ring's
 * fd. Close cancels what is in the kernel and waits for it, up to CLOSE_WAIT_MS: a read
 * may still be copying into a buffer that is about to be freed.
 *
 * Threads: the engine thread only.
 */
#include "reader.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* At most this many pooled buffers are registered with the ring. */
#define POOL_MAX_REGISTERED 32
/* Use at most this share (1/N) of RLIMIT_MEMLOCK for registered buffers; the rest is
 * left for the ring itself and anything else the process locks. */
#define MEMLOCK_SHARE 2
/* Ring size bounds (entries); the ring gets 2 per partition plus a few. */
#define RING_MIN_ENTRIES 8
#define RING_MAX_ENTRIES 4096
/* On close, how long to wait for cancelled requests to come back. */
#define CLOSE_WAIT_MS 5000

/* user_data of the ring's own requests (request pointers are never this small). */
#define UD_INOTIFY 1
#define UD_CANCEL  2

/* The backend's state (r->be_ctx). */
typedef struct uring {
	struct io_uring ring;
	unsigned inflight; /* requests in the kernel (reads, inotify, cancels) */
	bool to_submit;
	bool ino_armed;
	bool offload; /* reads through the page cache are copied by io_uring's workers */
} uring_t;

static struct io_uring_sqe *get_sqe(uring_t *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static bool ur_start_read(sp_log_reader_t *r, req_t *q)
{
	uring_t *u = r->be_ctx;
	int fd;
	uint8_t *dst;
	size_t len;
	uint64_t off;
	sp_log_rd_piece(q, &fd, &dst, &len, &off);
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe)
		return false;
	r->stats.reads++;
	if (q->got || q->dgot)
		r->stats.short_reads++;
	if (q->reg >= 0)
		r->stats.fixed_reads++;
	if (q->reg >= 0)
		io_uring_prep_read_fixed(sqe, fd, dst, (unsigned)len, off, q->reg);
	else
		io_uring_prep_read(sqe, fd, dst, (unsigned)len, off);
	/* the copy on io_uring's workers; a small read (at the tail: log.decode.min.bytes)
	 * completes in the submit instead, a thread hand-off sooner */
	if (u->offload && !q->direct && len >= r->o.decode_min_bytes)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_sqe_set_data(sqe, q);
	q->inflight = true;
	u->inflight++;
	u->to_submit = true;
	return true;
}

/* A completion from the ring. */
static void complete(sp_log_reader_t *r, req_t *q, int res)
{
	q->inflight = false;
	if (q->discard) {
		sp_log_rd_req_free(r, q);
		return;
	}
	if (r->closing) {
		q->done = true;
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		ur_start_read(r, q);
		return;
	}
	if (res < 0) {
		q->err = res;
		q->done = true;
		return;
	}
	if (res == 0) {
		q->eof = true;
		q->done = true;
		return;
	}
	if (sp_log_rd_advance(q, (size_t)res))
		q->done = true;
	else
		ur_start_read(r, q); /* a short read: ask for the rest */
}

/* Reap the ring's completions. */
static void ur_reap(sp_log_reader_t *r)
{
	uring_t *u = r->be_ctx;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		seen++;
		u->inflight--;
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		if (ud == UD_INOTIFY) {
			u->ino_armed = false;
			if (!r->closing)
				sp_log_rd_inotify_drain(r);
		} else if (ud != UD_CANCEL) {
			complete(r, (req_t *)(uintptr_t)ud, cqe->res);
		}
	}
	io_uring_cq_advance(&u->ring, seen);
}

static void ur_arm_wait(sp_log_reader_t *r)
{
	uring_t *u = r->be_ctx;
	if (u->ino_armed)
		return;
	/* A one-shot poll through the ring, not a read: the inotify fd is non-blocking, and
	 * io_uring completes a read of a non-blocking fd with -EAGAIN instead of waiting. */
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, r->ino_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD_INOTIFY);
	u->ino_armed = true;
	u->inflight++;
	u->to_submit = true;
}

static void ur_submit(sp_log_reader_t *r)
{
	uring_t *u = r->be_ctx;
	if (u->to_submit) {
		io_uring_submit(&u->ring);
		u->to_submit = false;
	}
}

static int ur_fd(const sp_log_reader_t *r)
{
	const uring_t *u = r->be_ctx;
	return u->ring.ring_fd;
}

/* Cancel what is in the kernel and wait for it: a read may still be copying into a
 * buffer that is about to be freed. */
static bool ur_close(sp_log_reader_t *r)
{
	uring_t *u = r->be_ctx;
	bool leak = false;
	for (req_t *q = r->all; q; q = q->all_next)
		if (q->inflight) {
			struct io_uring_sqe *sqe = get_sqe(u);
			if (sqe) {
				io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q, 0);
				io_uring_sqe_set_data64(sqe, UD_CANCEL);
				u->inflight++;
			}
		}
	if (u->ino_armed) {
		struct io_uring_sqe *sqe = get_sqe(u);
		if (sqe) {
			io_uring_prep_cancel64(sqe, UD_INOTIFY, 0);
			io_uring_sqe_set_data64(sqe, UD_CANCEL);
			u->inflight++;
		}
	}
	io_uring_submit(&u->ring);
	int64_t deadline = sp_now_ms() + CLOSE_WAIT_MS;
	while (u->inflight > 0 && sp_now_ms() < deadline) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {0, 100 * 1000000};
		if (io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0 || u->inflight)
			ur_reap(r);
	}
	if (u->inflight > 0) {
		leak = true;
		sp_msg(r->o.eng, SP_MSG_WARN, "log %s: %u reads did not finish; their buffers are leaked",
		       r->dir, u->inflight);
	}
	io_uring_queue_exit(&u->ring);
	free(u);
	r->be_ctx = NULL;
	return !leak;
}

const sp_log_rd_backend_t sp_log_rd_uring = {
    .sync = false,
    .start_read = ur_start_read,
    .reap = ur_reap,
    .arm_wait = ur_arm_wait,
    .submit = ur_submit,
    .fd = ur_fd,
    .close = ur_close,
};

/* Register as many pooled buffers as the memlock limit allows; without them reads use
 * plain buffers. */
static void register_buffers(sp_log_reader_t *r, uring_t *u)
{
	size_t n = (size_t)r->nparts * SP_LOG_READS_IN_FLIGHT + 2;
	if (n > POOL_MAX_REGISTERED)
		n = POOL_MAX_REGISTERED;
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		size_t fit = (size_t)(rl.rlim_cur / MEMLOCK_SHARE / SP_LOG_POOL_BUF_BYTES);
		if (n > fit)
			n = fit;
	}
	uint8_t *mem;
	if (n == 0 || posix_memalign((void **)&mem, 4096, n * SP_LOG_POOL_BUF_BYTES))
		return;
	struct iovec *iov = calloc(n, sizeof(*iov));
	if (!iov) {
		free(mem);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = mem + i * SP_LOG_POOL_BUF_BYTES;
		iov[i].iov_len = SP_LOG_POOL_BUF_BYTES;
	}
	int rc = io_uring_register_buffers(&u->ring, iov, (unsigned)n);
	free(iov);
	if (rc < 0) {
		sp_msg(r->o.eng, SP_MSG_DEBUG, "log: registering %zu read buffers failed (%s); plain buffers",
		       n, strerror(-rc));
		free(mem);
		return;
	}
	if (sp_log_pool_adopt(r->pool, mem, n)) {
		io_uring_unregister_buffers(&u->ring);
		free(mem);
	}
}

int sp_log_rd_uring_open(sp_log_reader_t *r)
{
	unsigned entries = RING_MIN_ENTRIES;
	while (entries < (unsigned)r->nparts * SP_LOG_READS_IN_FLIGHT + 4 && entries < RING_MAX_ENTRIES)
		entries *= 2;
	uring_t *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	int rc = io_uring_queue_init(entries, &u->ring, 0);
	if (rc < 0) {
		free(u);
		return rc;
	}
	r->be = &sp_log_rd_uring;
	r->be_ctx = u;
	register_buffers(r, u);
	return 0;
}

void sp_log_rd_uring_offload(sp_log_reader_t *r, unsigned workers)
{
	uring_t *u = r->be_ctx;
	unsigned max[2] = {workers, workers}; /* bounded (file reads), unbounded */
	io_uring_register_iowq_max_workers(&u->ring, max);
	u->offload = true;
}
