/* reader_pread.c - the log reader's pread backend (the interface is in reader.h).
 *
 * Where io_uring_queue_init fails (EPERM under Docker's default seccomp profile) or it
 * is turned off (the no_uring option, SPATE_LOG_NO_URING=1), the core's state machine
 * runs on pread: a read is done, short reads and EINTR retried, when start_read returns,
 * and the engine's epoll set holds the inotify fd itself instead of a ring. Nothing is
 * ever in the kernel, so close has nothing to wait for. This is also the backend a reader
 * has until open picked one.
 *
 * Threads: the engine thread only.
 */
#include "reader.h"

#include <errno.h>
#include <unistd.h>

static bool pr_start_read(sp_log_reader_t *r, req_t *q)
{
	r->stats.reads++;
	for (;;) {
		int fd;
		uint8_t *dst;
		size_t len;
		uint64_t off;
		sp_log_rd_piece(q, &fd, &dst, &len, &off);
		ssize_t n = pread(fd, dst, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			q->err = -errno;
			break;
		}
		if (n == 0) {
			q->eof = true;
			break;
		}
		if (sp_log_rd_advance(q, (size_t)n))
			break;
	}
	q->done = true;
	return true;
}

/* Nothing completes later: only the inotify fd has news. */
static void pr_reap(sp_log_reader_t *r)
{
	sp_log_rd_inotify_drain(r);
}

/* The epoll set holds the inotify fd: nothing to arm or submit. */
static void pr_nothing(sp_log_reader_t *r)
{
	(void)r;
}

static int pr_fd(const sp_log_reader_t *r)
{
	return r->ino_fd;
}

static bool pr_close(sp_log_reader_t *r)
{
	(void)r;
	return true;
}

const sp_log_rd_backend_t sp_log_rd_pread = {
    .sync = true,
    .start_read = pr_start_read,
    .reap = pr_reap,
    .arm_wait = pr_nothing,
    .submit = pr_nothing,
    .fd = pr_fd,
    .close = pr_close,
};
