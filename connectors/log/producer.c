/* producer.c - a producer over all partitions of a log, on their writers (writer.c).
 *
 * Each record goes to the partition given, or to the one its key hashes to
 * (XXH3_64bits(key) % partitions), keyless records round robin. A partition's writer is
 * opened on its first record; after a send, the partitions it touched apply their flush
 * policy, and tick applies the time-based one. `spate produce`, the log sink and the
 * tests write through it.
 *
 * The partitions due at one moment are flushed together: each writes its open batch and
 * notes what a sync makes durable (sp_log_writer_sync_begin), their fdatasyncs run at once
 * (io_uring IORING_OP_FSYNC with IORING_FSYNC_DATASYNC: the kernel's workers sync the
 * files in parallel, where the filesystem can merge them into one journal commit), then
 * each publishes its durable length. Eight partitions then cost about one fdatasync, not
 * eight in a row (on this machine's disk, 8 serial fdatasyncs took a median 35-44 ms, 8
 * parallel ones 6-23 ms), which is most of a record's time from producer to consumer.
 * Without io_uring (refused by a seccomp profile) the syncs run one after the other.
 *
 * Not thread-safe: one thread at a time per producer, like its writers.
 */
#include "log.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

struct sp_log_producer {
	char dir[SP_LOG_PATH_MAX];
	int nparts;
	sp_log_wopts_t o;
	sp_log_writer_t **w; /* opened on first use */
	uint8_t *touched;
	uint64_t rr; /* round robin for keyless records */
	/* parallel syncs: the partitions being flushed and their syncs */
	int *due;
	sp_log_wsync_t *sync;
	int *errs;
	int ring_state; /* 0: not tried yet, 1: ring ready, -1: io_uring refused (serial syncs) */
	struct io_uring ring;
};

int sp_log_producer_open(const char *dir, int create_partitions, const sp_log_wopts_t *o,
                         sp_log_producer_t **out, char *errstr, size_t size)
{
	int parts, rc = o ? sp_log_wopts_check(o, errstr, size) : SPATE_OK;
	if (rc)
		return rc;
	rc = sp_log_meta_read(dir, &parts, errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND && create_partitions > 0) {
		if ((rc = sp_log_create(dir, create_partitions, errstr, size)))
			return rc;
		rc = sp_log_meta_read(dir, &parts, errstr, size);
	}
	if (rc)
		return rc;
	sp_log_producer_t *p = calloc(1, sizeof(*p));
	if (!p || !(p->w = calloc((size_t)parts, sizeof(*p->w))) ||
	    !(p->touched = calloc((size_t)parts, 1)) || !(p->due = calloc((size_t)parts, sizeof(*p->due))) ||
	    !(p->sync = calloc((size_t)parts, sizeof(*p->sync))) ||
	    !(p->errs = calloc((size_t)parts, sizeof(*p->errs)))) {
		if (p) {
			free(p->w);
			free(p->touched);
			free(p->due);
			free(p->sync);
		}
		free(p);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	}
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	p->nparts = parts;
	if (o)
		p->o = *o;
	else
		sp_log_wopts_default(&p->o);
	*out = p;
	return SPATE_OK;
}

int sp_log_producer_partitions(const sp_log_producer_t *p)
{
	return p->nparts;
}

int sp_log_producer_pick(sp_log_producer_t *p, const void *key, size_t key_len, bool keyless)
{
	if (keyless)
		return (int)(p->rr++ % (uint64_t)p->nparts);
	return (int)(XXH3_64bits(key, key_len) % (uint64_t)p->nparts);
}

/* fdatasync the n files of fds (-1: nothing to sync) at once; errs[i] gets the errno of
 * fds[i]'s sync (0 when it succeeded). Through the ring when io_uring is there, else one
 * after the other. */
static void sync_all(sp_log_producer_t *p, const sp_log_wsync_t *t, int n, int *errs)
{
	int want = 0;
	for (int i = 0; i < n; i++) {
		errs[i] = 0;
		want += t[i].fd >= 0;
	}
	if (want > 1 && p->ring_state == 0) {
		unsigned entries = 1;
		while (entries < (unsigned)p->nparts && entries < 256)
			entries <<= 1;
		p->ring_state = io_uring_queue_init(entries, &p->ring, 0) == 0 ? 1 : -1;
	}
	int i = 0;
	while (want > 1 && p->ring_state > 0 && i < n) {
		/* at most a ring's worth at a time */
		int sub = 0, first = i;
		for (; i < n; i++) {
			if (t[i].fd < 0)
				continue;
			struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
			if (!sqe)
				break;
			io_uring_prep_fsync(sqe, t[i].fd, IORING_FSYNC_DATASYNC);
			io_uring_sqe_set_data64(sqe, (uint64_t)i);
			sub++;
		}
		int out = 0, got = 0;
		while (out < sub) {
			int rc = io_uring_submit(&p->ring);
			if (rc == -EINTR || rc == -EAGAIN)
				continue;
			if (rc <= 0)
				break;
			out += rc;
		}
		while (got < out) {
			struct io_uring_cqe *cqe;
			int rc = io_uring_wait_cqe(&p->ring, &cqe);
			if (rc == -EINTR)
				continue;
			if (rc < 0)
				break;
			int k = (int)io_uring_cqe_get_data64(cqe);
			errs[k] = cqe->res < 0 ? -cqe->res : 0;
			io_uring_cqe_seen(&p->ring, cqe);
			got++;
		}
		if (out < sub || got < out) {
			/* the ring failed: drop it (and what is still queued in it) and sync this
			 * round's files the plain way; later rounds sync one after the other */
			io_uring_queue_exit(&p->ring);
			p->ring_state = -1;
			i = first;
		}
	}
	for (; i < n; i++)
		if (t[i].fd >= 0 && fdatasync(t[i].fd) < 0)
			errs[i] = errno;
}

/* Flush the writers p->due[0..n-1] together: each writes its open batch and notes what a
 * sync makes durable, the syncs run at once, then each publishes. The first error goes to
 * errstr (NULL: it is not wanted). */
static int flush_due(sp_log_producer_t *p, int n, char *errstr, size_t size)
{
	if (n == 1)
		return sp_log_writer_flush(p->w[p->due[0]], errstr, size);
	int rc = SPATE_OK, m = 0;
	int *errs = p->errs;
	for (int k = 0; k < n; k++) {
		sp_log_writer_t *w = p->w[p->due[k]];
		int r = sp_log_writer_sync_begin(w, &p->sync[m], rc ? NULL : errstr, size);
		if (r) {
			if (rc == SPATE_OK)
				rc = r;
			continue;
		}
		p->due[m++] = p->due[k];
	}
	sync_all(p, p->sync, m, errs);
	for (int k = 0; k < m; k++) {
		int r =
		    sp_log_writer_sync_end(p->w[p->due[k]], &p->sync[k], errs[k], rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r;
	}
	return rc;
}

int sp_log_producer_send(sp_log_producer_t *p, const spate_push_record_t *recs, size_t n, int partition,
                         char *errstr, size_t size)
{
	if (partition >= p->nparts)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: partition %d does not exist (the log has %d: 0..%d)", p->dir, partition,
		              p->nparts, p->nparts - 1);
	int64_t now = sp_wall_ms();
	int rc = SPATE_OK;
	for (size_t i = 0; i < n && rc == SPATE_OK; i++) {
		const spate_push_record_t *r = &recs[i];
		int pi = partition >= 0 ? partition : sp_log_producer_pick(p, r->key, r->key_len, !r->key);
		if (!p->w[pi] && (rc = sp_log_writer_open(p->dir, pi, &p->o, &p->w[pi], errstr, size)))
			break;
		p->touched[pi] = 1;
		rc = sp_log_writer_put(p->w[pi], r, r->timestamp_ms ? r->timestamp_ms : now, NULL, errstr,
		                       size);
	}
	int64_t mono = sp_now_ms();
	int nd = 0;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->touched[i])
			continue;
		p->touched[i] = 0;
		if (sp_log_writer_flush_due(p->w[i], mono) == 0)
			p->due[nd++] = i;
	}
	if (nd) {
		int r2 = flush_due(p, nd, rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r2;
	}
	return rc;
}

int sp_log_producer_flush(sp_log_producer_t *p, char *errstr, size_t size)
{
	int n = 0;
	for (int i = 0; i < p->nparts; i++)
		if (p->w[i])
			p->due[n++] = i;
	return n ? flush_due(p, n, errstr, size) : SPATE_OK;
}

int64_t sp_log_producer_tick(sp_log_producer_t *p, char *errstr, size_t size, int *err)
{
	int64_t now = sp_now_ms(), next = -1;
	int n = 0;
	for (int i = 0; i < p->nparts; i++)
		if (p->w[i] && sp_log_writer_flush_due(p->w[i], now) == 0)
			p->due[n++] = i;
	*err = n ? flush_due(p, n, errstr, size) : SPATE_OK;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->w[i])
			continue;
		int64_t due = sp_log_writer_flush_due(p->w[i], now);
		if (due >= 0 && (next < 0 || due < next))
			next = due;
	}
	return next;
}

int sp_log_producer_close(sp_log_producer_t *p, char *errstr, size_t size)
{
	if (!p)
		return SPATE_OK;
	int rc = SPATE_OK;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->w[i])
			continue;
		int r = sp_log_writer_close(p->w[i], rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r;
	}
	if (p->ring_state > 0)
		io_uring_queue_exit(&p->ring);
	free(p->w);
	free(p->touched);
	free(p->due);
	free(p->sync);
	free(p->errs);
	free(p);
	return rc;
}
