/* reader.c - reads every partition of a log into parsed chunks, through io_uring.
 *
 * Per partition: about 1 MiB reads (SP_LOG_READ_BYTES), two in flight, on one ring shared
 * by all partitions, POSIX_FADV_SEQUENTIAL, into buffers from a pool whose first buffers
 * are registered with the ring (READ_FIXED) as far as RLIMIT_MEMLOCK allows. Short reads
 * are resubmitted for the rest. A completed read is parsed once: its complete batches
 * are CRC-checked and become one chunk whose record descriptors point into the read
 * buffer (the chunk owns the buffer: chunk->buf, chunk->release; see bufpool.c and
 * parse.c). A batch cut by the end of a read is copied into the headroom in front of the
 * next read's data (or, when it does not fit there, read again from its start).
 *
 * Reads never pass the durable length the writer publishes (the partition's `durable`
 * file, see segment.c), so nothing not fsync'd is ever delivered. At the end of the durable
 * data a partition waits: the reader watches each partition folder with inotify, waits
 * for the inotify fd through the ring (a one-shot poll request, re-armed while some
 * partition waits), and re-reads the durable file when it is replaced.
 *
 * A batch's baseOffset is not covered by its CRC: every batch's offsets are checked
 * against the batch before it, the one after it and the bound of its segment (the next
 * segment's base, or the durable next offset), and one that fails is corruption like a CRC
 * mismatch (log.on.corruption). With stop.at.end the durable length is noted with the end
 * offset, so a partition ends even when a damaged header made the end offset unreachable;
 * offsets that hold no record (a skipped region, what lies before the end) are handed on
 * as record-less chunks that move the checkpoint (ropts.skip).
 *
 * The engine thread waits on one epoll fd (sp_log_reader_fd) that holds the ring fd and
 * an eventfd the reader signals when it has work without I/O.
 *
 * Where io_uring_queue_init fails (EPERM under Docker's default seccomp profile) or
 * SPATE_LOG_NO_URING=1 is set, the same state machine runs on pread, and the epoll fd
 * holds the inotify fd instead of the ring; that is said once per process.
 *
 * Threads: every function runs on one thread (the engine thread), except the chunk
 * release callback, which may run on any thread (the buffer pool has a mutex).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* At most this many pooled buffers are registered with the ring. */
#define POOL_MAX_REGISTERED 32
/* Use at most this share (1/N) of RLIMIT_MEMLOCK for registered buffers; the rest is
 * left for the ring itself and anything else the process locks. */
#define MEMLOCK_SHARE 2
/* Parsed chunks a partition holds before poll hands them out. */
#define READY_MAX 2
/* Ring size bounds (entries); the ring gets 2 per partition plus a few. */
#define RING_MIN_ENTRIES 8
#define RING_MAX_ENTRIES 4096
/* Bytes of the inotify read buffer (many events per read). */
#define INOTIFY_BUF_BYTES 4096
/* On close, how long to wait for cancelled requests to come back. */
#define CLOSE_WAIT_MS 5000

/* user_data of the ring's own requests (request pointers are never this small). */
#define UD_INOTIFY 1
#define UD_CANCEL  2

/* ---- state --------------------------------------------------------------------------- */

/* An open segment file; requests hold references so it outlives a partition's move on. */
typedef struct segh {
	int fd;
	uint64_t base;
	int refs;
} segh_t;

struct rpart;

typedef struct req {
	struct rpart *p;
	segh_t *seg;
	uint8_t *buf; /* buffer base: chunk->buf when it becomes a chunk */
	size_t cap;   /* buffer bytes */
	size_t head;  /* the read's data starts at buf + head */
	int reg;      /* registered buffer index or -1 */
	uint64_t file_pos;
	size_t want, got;
	size_t carry; /* bytes of the previous read's tail copied just before buf + head */
	int err;      /* negative errno */
	bool done, eof, inflight, discard;
	struct req *next;                /* the partition's FIFO */
	struct req *all_prev, *all_next; /* every live request of the reader */
} req_t;

/*
 * A partition's state machine (engine thread only):
 *
 *   from          to       when                                           by
 *   IDLE          WAIT     seeked (before any segment is readable)        sp_log_reader_seek
 *   IDLE, any     ACTIVE   seeked to an offset in a readable segment      sp_log_reader_seek
 *   IDLE, any     DONE     seeked past its stop.at.end end                sp_log_reader_seek
 *   ACTIVE        WAIT     every durable byte is read or in flight        pump
 *   WAIT          ACTIVE   its durable file or a segment changed          sp_log_reader_poll
 *                          (inotify)
 *   ACTIVE        DONE     read up to its end, or its noted durable       part_done (parse_req)
 *                          length (stop.at.end)
 *   ACTIVE, WAIT  DONE     an end is set that it is already past          sp_log_reader_set_end
 *   any           ERROR    a read failed, corruption with                 set_error
 *                          log.on.corruption=fail, out of memory
 *
 * Reads are issued only in ACTIVE; ERROR is reported by the next poll once the chunks
 * parsed before it are handed out; DONE and ERROR are left only by a seek.
 */
enum pstate { P_IDLE, P_ACTIVE, P_WAIT, P_DONE, P_ERROR };

typedef struct rpart {
	int id;
	sp_part_t *part;
	char pdir[SP_LOG_PATH_MAX];
	int wd;
	enum pstate st;
	sp_log_durable_t dur;
	bool have_dur; /* no durable file: no writer ever published, nothing is readable */
	segh_t *seg;
	uint64_t seg_size;     /* file size when last checked */
	uint64_t read_pos;     /* file position of the next read */
	uint64_t parse_pos;    /* file position of the first unparsed byte */
	size_t need;           /* bytes from parse_pos the next batch needs (0: unknown/none) */
	size_t big_need;       /* the next read must hold this many bytes */
	uint64_t next_deliver; /* records before this offset are not delivered */
	uint64_t passed;       /* offset after the last batch parsed: the next one's lowest base */
	uint64_t seg_hi;       /* the next segment's base (UINT64_MAX: not known yet) */
	bool end_set, has_end;
	uint64_t end;             /* last offset to deliver (stop.at.end) */
	bool end_bytes;           /* end_dur is the durable length noted with the end */
	sp_log_durable_t end_dur; /* reading stops there too, whatever the offsets say */
	bool skip_pending;        /* a record-less chunk moves the checkpoint to skip_to */
	uint64_t skip_to;
	req_t *q_head, *q_tail;
	int nq;
	sp_chunk_t *ready[READY_MAX];
	int r_head, nready;
	bool dirty; /* inotify: the durable file or segments changed */
	int err;
	char *errmsg;
	uint64_t seek_steps;
} rpart_t;

struct sp_log_reader {
	char dir[SP_LOG_PATH_MAX];
	int nparts;
	rpart_t *parts;
	sp_log_ropts_t o;
	bool uring;
	struct io_uring ring;
	unsigned inflight; /* requests in the kernel (reads, inotify, cancels) */
	bool to_submit;
	int ino_fd;
	bool ino_armed;
	_Alignas(struct inotify_event) uint8_t ino_buf[INOTIFY_BUF_BYTES];
	int epfd, kick_fd;
	bool kicked;
	bool closing; /* no resubmits while close() drains the ring */
	sp_log_pool_t *pool;
	int rr;
	uint64_t skipped;
	sp_log_reader_stats_t stats;
	req_t *all; /* live requests */
};

static atomic_bool said_pread; /* "io_uring unavailable" is said once per process */

/* ---- small helpers ------------------------------------------------------------------ */

static void seg_unref(segh_t *s)
{
	if (s && --s->refs == 0) {
		close(s->fd);
		free(s);
	}
}

static void seg_name(const rpart_t *p, uint64_t base, char *buf, size_t size)
{
	sp_log_seg_path(buf, size, p->pdir, base, "log");
}

static void set_error(sp_log_reader_t *r, rpart_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(sp_log_reader_t *r, rpart_t *p, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	free(p->errmsg);
	p->errmsg = strdup(msg);
	p->err = code;
	p->st = P_ERROR;
	(void)r;
}

static void kick(sp_log_reader_t *r)
{
	if (r->kicked)
		return;
	uint64_t one = 1;
	if (write(r->kick_fd, &one, sizeof(one)) == sizeof(one))
		r->kicked = true;
}

static void req_free(sp_log_reader_t *r, req_t *q)
{
	if (q->all_prev)
		q->all_prev->all_next = q->all_next;
	else
		r->all = q->all_next;
	if (q->all_next)
		q->all_next->all_prev = q->all_prev;
	if (q->buf)
		sp_log_pool_put(r->pool, q->buf);
	seg_unref(q->seg);
	free(q);
}

/* Unlink requests after `after` (or all when NULL) from p's FIFO: those in the kernel are
 * freed when they complete. Reading restarts at parse_pos. */
static void drop_reqs(sp_log_reader_t *r, rpart_t *p, req_t *after)
{
	req_t *q = after ? after->next : p->q_head;
	if (after)
		after->next = NULL;
	else
		p->q_head = NULL;
	p->q_tail = after;
	while (q) {
		req_t *n = q->next;
		p->nq--;
		if (q->inflight)
			q->discard = true;
		else
			req_free(r, q);
		q = n;
	}
	p->read_pos = p->parse_pos;
}

static void drop_ready(sp_log_reader_t *r, rpart_t *p)
{
	while (p->nready) {
		sp_chunk_t *c = p->ready[p->r_head];
		p->r_head = (p->r_head + 1) % READY_MAX;
		p->nready--;
		if (c->release)
			c->release(c, c->release_opaque);
		r->o.free(r->o.alloc_opaque, c);
	}
	p->r_head = 0;
}

/* Re-read the partition's durable file. */
static void refresh(sp_log_reader_t *r, rpart_t *p)
{
	char err[512];
	sp_log_durable_t d;
	int rc = sp_log_durable_read(p->pdir, &d, err, sizeof(err));
	if (rc == SPATE_OK) {
		p->dur = d;
		p->have_dur = true;
	} else if (rc == SPATE_ERR_NOT_FOUND) {
		p->have_dur = false;
	} else {
		sp_msg(r->o.eng, SP_MSG_WARN, "%s (kept the previous durable length)", err);
	}
}

/* Open the segment at base as p's current one. */
static int open_seg(sp_log_reader_t *r, rpart_t *p, uint64_t base)
{
	char path[SP_LOG_PATH_MAX];
	seg_name(p, base, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_error(r, p, SPATE_ERR_IO, "log %s partition %d: %s: %s", r->dir, p->id, path,
		          strerror(errno));
		return -1;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	segh_t *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		set_error(r, p, SPATE_ERR_NOMEM, "log %s partition %d: out of memory", r->dir, p->id);
		return -1;
	}
	s->fd = fd;
	s->base = base;
	s->refs = 1;
	seg_unref(p->seg);
	p->seg = s;
	p->seg_size = 0;
	p->seg_hi = UINT64_MAX;
	p->read_pos = p->parse_pos = 0;
	p->need = p->big_need = 0;
	return 0;
}

/* Readable bytes of the current segment, and whether that is its final size. */
static uint64_t seg_limit(rpart_t *p, bool *final)
{
	*final = false;
	if (!p->seg || !p->have_dur || p->seg->base > p->dur.seg)
		return 0;
	if (p->seg->base == p->dur.seg)
		return p->dur.len;
	/* before the published segment: complete and durable in full */
	if (p->read_pos >= p->seg_size) {
		struct stat st;
		if (fstat(p->seg->fd, &st) == 0)
			p->seg_size = (uint64_t)st.st_size;
	}
	*final = true;
	return p->seg_size;
}

/* The next segment after the current one that may be read, or false. */
static bool next_seg(sp_log_reader_t *r, rpart_t *p, uint64_t *base)
{
	sp_log_seglist_t l = {0};
	bool found = false;
	if (p->have_dur && sp_log_seglist(p->pdir, &l, NULL, 0) == SPATE_OK)
		for (size_t i = 0; i < l.n && !found; i++)
			if (l.base[i] > p->seg->base && l.base[i] <= p->dur.seg) {
				*base = l.base[i];
				found = true;
			}
	sp_log_seglist_free(&l);
	(void)r;
	return found;
}

/* The bound of the current segment's offsets (sp_log_batch_offsets_bad's hi): the durable
 * next offset in the segment being written, else the next segment's base; UINT64_MAX when
 * not known. */
static uint64_t part_hi(sp_log_reader_t *r, rpart_t *p)
{
	if (!p->seg || !p->have_dur)
		return UINT64_MAX;
	if (p->seg->base == p->dur.seg)
		return p->dur.next;
	uint64_t nb;
	if (p->seg_hi == UINT64_MAX && p->seg->base < p->dur.seg && next_seg(r, p, &nb))
		p->seg_hi = nb;
	return p->seg_hi;
}

/* A record-less chunk is to move p's checkpoint to `to` (handed out after p's ready chunks). */
static void mark_skip(rpart_t *p, uint64_t to)
{
	if (!p->skip_pending || to > p->skip_to)
		p->skip_to = to;
	p->skip_pending = true;
}

/* p was read up to its stop.at.end end: done. Whatever lay between its last record and the
 * end (control batches, a skipped region) holds no record, so its checkpoint may go there. */
static void part_done(sp_log_reader_t *r, rpart_t *p)
{
	drop_reqs(r, p, NULL);
	p->st = P_DONE;
	if (p->has_end)
		mark_skip(p, p->end);
}

/* Reading reached the durable length noted with the end (stop.at.end): nothing past it is
 * read, even when the offsets (a bad baseOffset, a durable file that claims more) say the
 * end is still ahead. */
static bool at_end_bytes(const rpart_t *p)
{
	if (!p->end_bytes || !p->has_end || !p->seg)
		return false;
	return p->seg->base > p->end_dur.seg ||
	       (p->seg->base == p->end_dur.seg && p->parse_pos >= p->end_dur.len);
}

/* ---- I/O ---------------------------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(sp_log_reader_t *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		io_uring_submit(&r->ring);
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

/* Queue (or, with pread, do) the rest of q's read. false when the ring is full. */
static bool start_read(sp_log_reader_t *r, req_t *q)
{
	uint8_t *dst = q->buf + q->head + q->got;
	size_t len = q->want - q->got;
	uint64_t off = q->file_pos + q->got;
	if (!r->uring) {
		r->stats.reads++;
		while (q->got < q->want) {
			ssize_t n = pread(q->seg->fd, q->buf + q->head + q->got, q->want - q->got,
			                  (off_t)(q->file_pos + q->got));
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
			q->got += (size_t)n;
		}
		q->done = true;
		return true;
	}
	struct io_uring_sqe *sqe = get_sqe(r);
	if (!sqe)
		return false;
	r->stats.reads++;
	if (q->got)
		r->stats.short_reads++;
	if (q->reg >= 0)
		r->stats.fixed_reads++;
	if (q->reg >= 0)
		io_uring_prep_read_fixed(sqe, q->seg->fd, dst, (unsigned)len, off, q->reg);
	else
		io_uring_prep_read(sqe, q->seg->fd, dst, (unsigned)len, off);
	io_uring_sqe_set_data(sqe, q);
	q->inflight = true;
	r->inflight++;
	r->to_submit = true;
	return true;
}

/* Issue a read of want bytes at p->read_pos. */
static bool issue_read(sp_log_reader_t *r, rpart_t *p, size_t want)
{
	req_t *q = calloc(1, sizeof(*q));
	if (!q)
		return false;
	/* Full-size reads get a pooled buffer with headroom (a following read may carry a
	 * batch tail into it); a shorter read at the end of the data, or one for a batch
	 * bigger than a pooled buffer, gets an exact one. */
	q->cap = want == SP_LOG_READ_BYTES ? SP_LOG_POOL_BUF_BYTES : want;
	q->head = want == SP_LOG_READ_BYTES ? SP_LOG_READ_HEADROOM : 0;
	q->buf = sp_log_pool_get(r->pool, q->cap, &q->reg);
	if (!q->buf) {
		free(q);
		return false;
	}
	q->p = p;
	q->seg = p->seg;
	p->seg->refs++;
	q->file_pos = p->read_pos;
	q->want = want;
	q->all_next = r->all;
	if (r->all)
		r->all->all_prev = q;
	r->all = q;
	if (!start_read(r, q)) {
		req_free(r, q);
		return false;
	}
	if (p->q_tail)
		p->q_tail->next = q;
	else
		p->q_head = q;
	p->q_tail = q;
	p->nq++;
	p->read_pos += want;
	return true;
}

/* A completion from the ring. */
static void complete(sp_log_reader_t *r, req_t *q, int res)
{
	q->inflight = false;
	if (q->discard) {
		req_free(r, q);
		return;
	}
	if (r->closing) {
		q->done = true;
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		start_read(r, q);
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
	q->got += (size_t)res;
	if (q->got < q->want)
		start_read(r, q); /* a short read: ask for the rest */
	else
		q->done = true;
}

/* ---- corruption ----------------------------------------------------------------------- */

/* A bad batch at file position bpos of p's segment (detail: more about it, or "").
 * fail: the partition stops with SPATE_ERR_CORRUPT. skip: find the next valid batch, report
 * the skipped range and the offsets it may have held, go on; a record-less chunk moves the
 * checkpoint over those offsets. */
static void corrupt(sp_log_reader_t *r, rpart_t *p, uint64_t bpos, const char *why, const char *detail)
{
	char path[SP_LOG_PATH_MAX];
	seg_name(p, p->seg->base, path, sizeof(path));
	drop_reqs(r, p, NULL);
	if (!r->o.skip_corrupt) {
		set_error(r, p, SPATE_ERR_CORRUPT,
		          "log %s partition %d: %s: byte %" PRIu64 ": bad batch after offset %" PRIu64
		          ": %s%s (log.on.corruption=fail; `spate log verify %s`)",
		          r->dir, p->id, path, bpos, p->passed ? p->passed - 1 : 0, why, detail, r->dir);
		return;
	}
	bool final;
	uint64_t limit = seg_limit(p, &final), found = limit, hi = part_hi(r, p);
	sp_log_scan_t sc;
	if (sp_log_scan_init(&sc, p->seg->fd, bpos, limit)) {
		set_error(r, p, SPATE_ERR_NOMEM, "log %s partition %d: out of memory", r->dir, p->id);
		return;
	}
	sp_log_scan_offsets(&sc, p->passed, hi);
	int v = sp_log_scan_resync(&sc, bpos, (int64_t)p->passed, &found);
	/* The offsets the region may have held: up to the next valid batch's base, or with
	 * none after it, up to the bound of the segment's offsets. */
	uint64_t next = p->passed;
	if (v == 1) {
		sp_log_scan_seek(&sc, found);
		sc.offsets = false; /* resync checked them */
		if (sp_log_scan_next(&sc, false, false) == SP_LOG_SCAN_BATCH)
			next = (uint64_t)sc.h.base_offset;
	} else if (v == 0 && hi != UINT64_MAX) {
		next = hi;
	}
	sp_log_scan_free(&sc);
	if (v == SP_LOG_SCAN_IO) {
		set_error(r, p, SPATE_ERR_IO, "log %s partition %d: %s: read: %s", r->dir, p->id, path,
		          strerror(sc.err_no));
		return;
	}
	if (v == 0)
		found = limit;
	sp_log_corrupt_info_t info = {
	    p->id, path, bpos, found - bpos, p->passed, next > p->passed ? next - 1 : p->passed, why};
	r->skipped++;
	sp_msg(r->o.eng, SP_MSG_ERROR,
	       "log %s partition %d: %s: skipped corrupt bytes %" PRIu64 "..%" PRIu64
	       " (%s%s), which may have held offsets %" PRIu64 "..%" PRIu64 " (log.on.corruption=skip)",
	       r->dir, p->id, path, bpos, found, why, detail, info.first_offset, info.last_offset);
	if (r->o.on_corrupt)
		r->o.on_corrupt(r->o.corrupt_opaque, &info);
	p->parse_pos = p->read_pos = found;
	p->need = p->big_need = 0;
	if (next > p->passed) {
		/* at a stop.at.end end, the checkpoint goes no further than the end */
		mark_skip(p, p->has_end && next - 1 > p->end ? p->end : next - 1);
		p->passed = next;
	}
	if (p->has_end && p->passed > p->end)
		part_done(r, p);
}

/* ---- parsing ------------------------------------------------------------------------- */

/* Parse the complete batches of a finished read (the FIFO head) into a chunk queued on
 * p->ready; carry a cut batch to the next read or read it again; free the request. */
static void parse_req(sp_log_reader_t *r, rpart_t *p, req_t *q)
{
	char path[SP_LOG_PATH_MAX];
	const uint8_t *data = q->buf + q->head - q->carry;
	size_t len = q->carry + q->got;
	uint64_t dpos = q->file_pos - q->carry;
	if (q->err) {
		seg_name(p, p->seg->base, path, sizeof(path));
		set_error(r, p, SPATE_ERR_IO, "log %s partition %d: %s: read at byte %" PRIu64 ": %s", r->dir,
		          p->id, path, q->file_pos, strerror(-q->err));
		drop_reqs(r, p, NULL);
		return;
	}
	bool final;
	uint64_t limit = seg_limit(p, &final);
	sp_log_parse_t init = {.from = p->next_deliver,
	                       .has_end = p->has_end,
	                       .end = p->end,
	                       .passed = p->passed,
	                       .hi = part_hi(r, p),
	                       .more = limit > dpos + len ? limit - (dpos + len) : 0,
	                       .redrive_ms = r->o.redrive ? sp_wall_ms() : 0,
	                       .dec = sp_log_pool_dec(r->pool, q->buf)};
	sp_log_parse_t ps = init;
	ps.fast = true;
	sp_log_parse_scan(data, len, &ps);
	sp_chunk_t *c = NULL;
	for (int pass = 0; ps.nrec > 0 && pass < 2; pass++) {
		c = r->o.alloc(r->o.alloc_opaque, p->part, ps.nrec, ps.nhdr);
		if (!c) {
			set_error(r, p, SPATE_ERR_NOMEM,
			          "log %s partition %d: out of memory for a chunk of %u records", r->dir,
			          p->id, ps.nrec);
			drop_reqs(r, p, NULL);
			return;
		}
		if (sp_log_parse_fill(data, &ps, c) == 0)
			break;
		/* headers, or a record the fast scan left unchecked: the exact two walks */
		r->o.free(r->o.alloc_opaque, c);
		c = NULL;
		ps = init;
		sp_log_parse_scan(data, len, &ps);
	}
	/* The tail (a batch cut by the read's end) goes in front of the next read, or is read
	 * again; it must be copied before this buffer can become a chunk. */
	size_t tail = len - ps.used;
	req_t *nx = q->next;
	bool eof = q->eof;
	p->parse_pos = dpos + ps.used;
	if (ps.stop == SP_LOG_PARSE_MORE && (tail > 0 || eof)) {
		if (nx && !eof && tail <= nx->head && nx->file_pos == q->file_pos + q->got) {
			memcpy(nx->buf + nx->head - tail, data + ps.used, tail);
			nx->carry = tail;
		} else {
			drop_reqs(r, p, q); /* read again from parse_pos */
		}
	}
	if (c) {
		c->buf = q->buf;
		c->release = sp_log_pool_chunk_release;
		c->release_opaque = r->pool;
		c->bytes = q->cap + sp_log_dec_bytes(init.dec); /* decompressed records too */
		c->end_marker = ps.stop == SP_LOG_PARSE_END;
		q->buf = NULL; /* the chunk owns it now */
		p->ready[(p->r_head + p->nready) % READY_MAX] = c;
		p->nready++;
	}
	p->next_deliver = ps.next;
	p->passed = ps.passed;
	p->need = ps.stop == SP_LOG_PARSE_MORE ? ps.need : 0;
	if (p->need > SP_LOG_READ_BYTES && p->q_head == q && !q->next)
		p->big_need = p->need; /* a batch bigger than a read: one read of its size */
	/* q is the FIFO head: unlink and free it (and its buffer unless chunked) */
	p->q_head = q->next;
	if (!p->q_head)
		p->q_tail = NULL;
	p->nq--;
	req_free(r, q);
	if (eof && ps.stop == SP_LOG_PARSE_MORE && p->have_dur) {
		ps.stop = SP_LOG_PARSE_CORRUPT;
		ps.why = "the file is shorter than its published durable length";
	}
	char detail[256] = "";
	if (ps.stop == SP_LOG_PARSE_CORRUPT && ps.bad_offsets) {
		char hi[64] = "";
		if (init.hi != UINT64_MAX)
			snprintf(hi, sizeof(hi), ", below %" PRIu64, init.hi);
		snprintf(detail, sizeof(detail),
		         " (its header says offsets %" PRId64 "..%" PRId64 "; expected from %" PRIu64 "%s)",
		         ps.h.base_offset, sp_log_batch_last(&ps.h), ps.passed, hi);
	}
	switch (ps.stop) {
	case SP_LOG_PARSE_END:
		part_done(r, p);
		break;
	case SP_LOG_PARSE_CORRUPT:
		corrupt(r, p, dpos + ps.used, ps.why, detail);
		break;
	case SP_LOG_PARSE_UNSUPPORTED:
		seg_name(p, p->seg->base, path, sizeof(path));
		drop_reqs(r, p, NULL);
		set_error(r, p, ps.err ? ps.err : SPATE_ERR_UNSUPPORTED,
		          "log %s partition %d: %s: byte %" PRIu64 ": cannot decode %s", r->dir, p->id, path,
		          dpos + ps.used, ps.why);
		break;
	default:
		break;
	}
}

/* The first segment that may be read, or false. */
static bool first_seg(rpart_t *p, uint64_t *base)
{
	sp_log_seglist_t l = {0};
	bool found = false;
	if (p->have_dur && sp_log_seglist(p->pdir, &l, NULL, 0) == SPATE_OK && l.n &&
	    l.base[0] <= p->dur.seg) {
		*base = l.base[0];
		found = true;
	}
	sp_log_seglist_free(&l);
	return found;
}

/* Issue reads while p may have more; move to the next segment at the end of one. */
static void pump(sp_log_reader_t *r, rpart_t *p)
{
	while (p->st == P_ACTIVE && p->nq < SP_LOG_READS_IN_FLIGHT && p->nready < READY_MAX) {
		uint64_t nb;
		if (!p->seg) {
			if (!first_seg(p, &nb)) {
				p->st = P_WAIT;
				return;
			}
			if (open_seg(r, p, nb) < 0)
				return;
			if (p->passed < nb)
				p->passed = nb; /* a segment's name is the lowest offset it may hold */
			continue;
		}
		if (p->nq == 0 && at_end_bytes(p)) {
			part_done(r, p);
			return;
		}
		bool final;
		uint64_t limit = seg_limit(p, &final);
		if (p->nq == 0 && p->need && p->have_dur &&
		    (p->parse_pos >= limit || limit - p->parse_pos < p->need)) {
			/* The next batch does not fit in what is readable: the writer publishes
			 * whole batches only, so its length field or the file is damaged. */
			corrupt(r, p, p->parse_pos,
			        final ? "the segment ends inside a batch"
			              : "a batch crosses the published durable length",
			        "");
			continue;
		}
		if (p->read_pos >= limit) {
			if (p->nq > 0)
				return;
			if (final && next_seg(r, p, &nb)) {
				if (open_seg(r, p, nb) < 0)
					return;
				if (p->passed < nb)
					p->passed = nb;
				continue;
			}
			p->st = P_WAIT;
			return;
		}
		size_t want = p->big_need > SP_LOG_READ_BYTES ? p->big_need : SP_LOG_READ_BYTES;
		if (want > limit - p->read_pos)
			want = (size_t)(limit - p->read_pos);
		if (!issue_read(r, p, want))
			return; /* ring full or out of memory: the next poll tries again */
		p->big_need = 0;
	}
}

/* Parse what finished and read more, until p has nothing to do without waiting. */
static void service(sp_log_reader_t *r, rpart_t *p)
{
	for (;;) {
		while (p->st == P_ACTIVE && p->q_head && p->q_head->done && p->nready < READY_MAX)
			parse_req(r, p, p->q_head);
		if (p->st != P_ACTIVE)
			return;
		int before = p->nq;
		pump(r, p);
		/* io_uring completes later; pread has completed what pump issued: parse it */
		if (r->uring || p->nq == before)
			return;
	}
}

/* ---- inotify ----------------------------------------------------------------------------- */

static void ino_events(sp_log_reader_t *r, const uint8_t *buf, size_t len)
{
	for (size_t off = 0; off + sizeof(struct inotify_event) <= len;) {
		const struct inotify_event *ev = (const void *)(buf + off);
		off += sizeof(*ev) + ev->len;
		if (ev->mask & IN_Q_OVERFLOW) {
			for (int i = 0; i < r->nparts; i++)
				r->parts[i].dirty = true;
			continue;
		}
		for (int i = 0; i < r->nparts; i++) {
			rpart_t *p = &r->parts[i];
			if (p->wd != ev->wd)
				continue;
			const char *nm = ev->len ? ev->name : "";
			size_t nl = strlen(nm);
			if (!strcmp(nm, SP_LOG_DURABLE_NAME) || (nl > 4 && !strcmp(nm + nl - 4, ".log")))
				p->dirty = true;
		}
	}
}

static void arm_inotify(sp_log_reader_t *r)
{
	if (!r->uring || r->ino_armed)
		return;
	/* A one-shot poll through the ring, not a read: the inotify fd is non-blocking, and
	 * io_uring completes a read of a non-blocking fd with -EAGAIN instead of waiting. */
	struct io_uring_sqe *sqe = get_sqe(r);
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, r->ino_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UD_INOTIFY);
	r->ino_armed = true;
	r->inflight++;
	r->to_submit = true;
}

/* ---- the public API --------------------------------------------------------------------- */

static int setup_uring(sp_log_reader_t *r)
{
	unsigned entries = RING_MIN_ENTRIES;
	while (entries < (unsigned)r->nparts * SP_LOG_READS_IN_FLIGHT + 4 && entries < RING_MAX_ENTRIES)
		entries *= 2;
	const char *env = getenv("SPATE_LOG_NO_URING");
	int rc = -EPERM;
	if (r->o.no_uring || (env && *env && strcmp(env, "0"))) {
		if (!atomic_exchange(&said_pread, true))
			sp_msg(r->o.eng, SP_MSG_WARN, "log: io_uring disabled (%s); reading with pread",
			       r->o.no_uring ? "by option" : "SPATE_LOG_NO_URING");
		return 0;
	}
	rc = io_uring_queue_init(entries, &r->ring, 0);
	if (rc < 0) {
		if (!atomic_exchange(&said_pread, true))
			sp_msg(r->o.eng, SP_MSG_WARN,
			       "log: io_uring is not available (%s%s); reading with pread", strerror(-rc),
			       rc == -EPERM ? ": a seccomp profile such as Docker's default blocks it" : "");
		return 0;
	}
	r->uring = true;
	/* Register as many pooled buffers as the memlock limit allows. */
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
		return 0;
	struct iovec *iov = calloc(n, sizeof(*iov));
	if (!iov) {
		free(mem);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = mem + i * SP_LOG_POOL_BUF_BYTES;
		iov[i].iov_len = SP_LOG_POOL_BUF_BYTES;
	}
	rc = io_uring_register_buffers(&r->ring, iov, (unsigned)n);
	free(iov);
	if (rc < 0) {
		sp_msg(r->o.eng, SP_MSG_DEBUG, "log: registering %zu read buffers failed (%s); plain buffers",
		       n, strerror(-rc));
		free(mem);
		return 0;
	}
	if (sp_log_pool_adopt(r->pool, mem, n)) {
		io_uring_unregister_buffers(&r->ring);
		free(mem);
	}
	return 0;
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
		refresh(r, p);
	}
	setup_uring(r);
	struct epoll_event ev = {.events = EPOLLIN};
	ev.data.fd = r->kick_fd;
	epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->kick_fd, &ev);
	ev.data.fd = r->uring ? r->ring.ring_fd : r->ino_fd;
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

void sp_log_reader_unbind(sp_log_reader_t *r, int i, const sp_part_t *part)
{
	rpart_t *p = &r->parts[i];
	if (p->part != part)
		return; /* bound again meanwhile (the lease was taken back) */
	drop_reqs(r, p, NULL);
	drop_ready(r, p);
	p->skip_pending = false;
	p->st = P_IDLE;
	p->part = NULL;
}

/* First offset of the partition and the offset after its last readable record. */
static int bounds(sp_log_reader_t *r, rpart_t *p, sp_log_seglist_t *segs, uint64_t *start, uint64_t *next,
                  char *errstr, size_t size)
{
	refresh(r, p);
	int rc = sp_log_seglist(p->pdir, segs, errstr, size);
	if (rc)
		return rc;
	*start = segs->n ? segs->base[0] : 0;
	if (p->have_dur) {
		*next = p->dur.next;
		if (*start > *next)
			*start = *next;
		return SPATE_OK;
	}
	/* No writer ever published: nothing is durable, so nothing is readable yet. */
	*next = *start;
	return SPATE_OK;
}

int sp_log_reader_bounds(sp_log_reader_t *r, int i, uint64_t *start, uint64_t *next, char *errstr,
                         size_t size)
{
	sp_log_seglist_t segs = {0};
	int rc = bounds(r, &r->parts[i], &segs, start, next, errstr, size);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_reader_seek(sp_log_reader_t *r, int i, uint64_t offset, char *errstr, size_t size)
{
	rpart_t *p = &r->parts[i];
	drop_reqs(r, p, NULL);
	drop_ready(r, p);
	free(p->errmsg);
	p->errmsg = NULL;
	p->err = 0;
	p->seek_steps = 0;
	sp_log_seglist_t segs = {0};
	uint64_t start = 0, next = 0;
	int rc = bounds(r, p, &segs, &start, &next, errstr, size);
	if (rc)
		goto out;
	if (offset < start || offset > next) {
		rc = sp_err(errstr, size, SPATE_ERR_OUT_OF_RANGE,
		            "log %s partition %d: offset %" PRIu64 " is outside what the partition holds "
		            "(%" PRIu64 "..%" PRIu64 ")",
		            r->dir, i, offset, start, next);
		goto out;
	}
	p->next_deliver = p->passed = offset;
	p->skip_pending = false;
	p->st = P_WAIT;
	if (p->end_set && (!p->has_end || offset > p->end))
		p->st = P_DONE;
	/* the segment holding offset: the last one whose base is <= offset */
	size_t k = segs.n;
	for (size_t j = 0; j < segs.n; j++)
		if (p->have_dur && segs.base[j] <= offset && segs.base[j] <= p->dur.seg)
			k = j;
	if (k == segs.n) {
		seg_unref(p->seg);
		p->seg = NULL;
		goto out; /* nothing written yet: wait for the first segment */
	}
	if (open_seg(r, p, segs.base[k]) < 0) {
		rc = sp_err(errstr, size, p->err, "%s", p->errmsg);
		goto out;
	}
	bool final;
	uint64_t limit = seg_limit(p, &final), land, lo;
	if (sp_log_locate(p->pdir, p->seg->base, p->seg->fd, limit, part_hi(r, p), offset, &land, &lo,
	                  &p->seek_steps)) {
		rc = sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (lo < p->passed)
		p->passed = lo; /* where the batch before the landing one ended: its lowest base */
	p->read_pos = p->parse_pos = land;
	if (p->st != P_DONE)
		p->st = P_ACTIVE;
out:
	/* Always: the next poll reads, or arms the wait for a partition with nothing yet. */
	kick(r);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_reader_find_ts(sp_log_reader_t *r, int i, int64_t ts, uint64_t *offset, char *errstr, size_t size)
{
	rpart_t *p = &r->parts[i];
	sp_log_seglist_t segs = {0};
	uint64_t start = 0, next = 0;
	int rc = bounds(r, p, &segs, &start, &next, errstr, size);
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
	int rc = bounds(r, p, &segs, &start, &next, errstr, size);
	if (rc == SPATE_OK && next > start)
		rc = sp_log_last_record(p->pdir, &p->dur, &segs, has, last, errstr, size);
	sp_log_seglist_free(&segs);
	return rc;
}

void sp_log_reader_set_end(sp_log_reader_t *r, int i, bool has_end, uint64_t last)
{
	rpart_t *p = &r->parts[i];
	p->end_set = true;
	p->has_end = has_end;
	p->end = last;
	p->end_bytes = p->have_dur;
	p->end_dur = p->dur;
	if (!has_end || p->next_deliver > last) {
		if (p->st == P_ACTIVE || p->st == P_WAIT)
			drop_reqs(r, p, NULL);
		if (p->st != P_ERROR)
			p->st = P_DONE;
	}
}

static void drain_inotify(sp_log_reader_t *r)
{
	ssize_t n;
	while ((n = read(r->ino_fd, r->ino_buf, sizeof(r->ino_buf))) > 0)
		ino_events(r, r->ino_buf, (size_t)n);
}

/* Reap the ring's completions (or, with pread, drain inotify). */
static void reap(sp_log_reader_t *r)
{
	if (!r->uring) {
		drain_inotify(r);
		return;
	}
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&r->ring, head, cqe)
	{
		seen++;
		r->inflight--;
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		if (ud == UD_INOTIFY) {
			r->ino_armed = false;
			if (!r->closing)
				drain_inotify(r);
		} else if (ud != UD_CANCEL) {
			complete(r, (req_t *)(uintptr_t)ud, cqe->res);
		}
	}
	io_uring_cq_advance(&r->ring, seen);
}

int sp_log_reader_poll(sp_log_reader_t *r, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
                       size_t size)
{
	uint64_t junk;
	if (r->kicked) {
		if (read(r->kick_fd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
			return sp_err(errstr, size, SPATE_ERR_IO, "log %s: eventfd: %s", r->dir,
			              strerror(errno));
		r->kicked = false;
	}
	reap(r);
	for (int i = 0; i < r->nparts; i++) {
		rpart_t *p = &r->parts[i];
		if (p->dirty) {
			p->dirty = false;
			refresh(r, p);
			if (p->st == P_WAIT)
				p->st = P_ACTIVE;
		}
		service(r, p);
	}
	int n = 0, err = SPATE_OK;
	uint64_t used = 0;
	bool budget_blocked = false;
	for (int k = 0; k < r->nparts && n < max; k++) {
		rpart_t *p = &r->parts[(r->rr + k) % r->nparts];
		/* a partition the engine holds back keeps its chunks (and reads no more once
		 * READY_MAX are parsed); the others go on */
		bool paused = p->part && p->part->paused;
		while (!paused && p->nready && n < max) {
			sp_chunk_t *c = p->ready[p->r_head];
			/* The first chunk is always admitted: the engine polls only with room, and
			 * with nothing in flight it must get one chunk even past the bound. */
			if (n > 0 && used + c->bytes > budget_bytes) {
				budget_blocked = true;
				break;
			}
			used += c->bytes;
			out[n++] = c;
			p->r_head = (p->r_head + 1) % READY_MAX;
			p->nready--;
		}
		if (!paused && !p->nready && p->skip_pending && n < max) {
			/* after every chunk of records before it; out of memory: the next poll */
			sp_chunk_t *c = r->o.skip ? r->o.skip(r->o.alloc_opaque, p->part, p->skip_to) : NULL;
			if (c || !r->o.skip)
				p->skip_pending = false;
			if (c)
				out[n++] = c;
		}
		if (!p->nready && p->st == P_ERROR && err == SPATE_OK && n == 0) {
			err = p->err;
			sp_err(errstr, size, err, "%s", p->errmsg ? p->errmsg : "log: partition failed");
		}
	}
	r->rr = r->nparts ? (r->rr + 1) % r->nparts : 0;
	/* Freed ready slots: read more now, so the ring has work while the engine is busy. */
	bool more = false;
	bool tail_wait = false;
	for (int i = 0; i < r->nparts; i++) {
		rpart_t *p = &r->parts[i];
		service(r, p);
		/* work that needs no I/O wait: chunks to hand out, or reads not yet issued */
		bool paused = p->part && p->part->paused;
		if ((!paused && (p->nready || p->skip_pending)) ||
		    (p->st == P_ACTIVE && p->nq == 0 && p->nready < READY_MAX) || (p->st == P_ERROR && !p->nready))
			more = true; /* an error is reported by the next poll */
		if (p->st == P_WAIT)
			tail_wait = true;
	}
	if (tail_wait)
		arm_inotify(r);
	if (r->to_submit) {
		io_uring_submit(&r->ring);
		r->to_submit = false;
	}
	if (more && !budget_blocked)
		kick(r);
	if (n == 0 && err)
		return err;
	return n;
}

int sp_log_reader_fd(const sp_log_reader_t *r)
{
	return r->epfd;
}

uint64_t sp_log_reader_next(const sp_log_reader_t *r, int i)
{
	return r->parts[i].next_deliver;
}

int64_t sp_log_reader_lag(const sp_log_reader_t *r)
{
	int64_t lag = 0;
	for (int i = 0; i < r->nparts; i++) {
		const rpart_t *p = &r->parts[i];
		if (p->st == P_IDLE)
			continue;
		uint64_t end = p->have_dur ? p->dur.next : p->next_deliver;
		if (p->has_end && end > p->end + 1)
			end = p->end + 1;
		if (p->end_set && !p->has_end)
			continue;
		if (end > p->next_deliver)
			lag += (int64_t)(end - p->next_deliver);
	}
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
		if (p->st != P_DONE || p->nready || p->skip_pending)
			return false;
	}
	return any;
}

bool sp_log_reader_uses_uring(const sp_log_reader_t *r)
{
	return r->uring;
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
	bool leak = false;
	r->closing = true;
	if (r->uring) {
		/* Cancel what is in the kernel and wait for it: a read may still be copying
		 * into a buffer that is about to be freed. */
		for (req_t *q = r->all; q; q = q->all_next)
			if (q->inflight) {
				struct io_uring_sqe *sqe = get_sqe(r);
				if (sqe) {
					io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q, 0);
					io_uring_sqe_set_data64(sqe, UD_CANCEL);
					r->inflight++;
				}
			}
		if (r->ino_armed) {
			struct io_uring_sqe *sqe = get_sqe(r);
			if (sqe) {
				io_uring_prep_cancel64(sqe, UD_INOTIFY, 0);
				io_uring_sqe_set_data64(sqe, UD_CANCEL);
				r->inflight++;
			}
		}
		io_uring_submit(&r->ring);
		int64_t deadline = sp_now_ms() + CLOSE_WAIT_MS;
		while (r->inflight > 0 && sp_now_ms() < deadline) {
			struct io_uring_cqe *cqe;
			struct __kernel_timespec ts = {0, 100 * 1000000};
			if (io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts) == 0 || r->inflight)
				reap(r);
		}
		if (r->inflight > 0) {
			leak = true;
			sp_msg(r->o.eng, SP_MSG_WARN,
			       "log %s: %u reads did not finish; their buffers are leaked", r->dir,
			       r->inflight);
		}
		io_uring_queue_exit(&r->ring);
	}
	for (int i = 0; r->parts && i < r->nparts; i++) {
		rpart_t *p = &r->parts[i];
		if (!leak)
			drop_reqs(r, p, NULL);
		drop_ready(r, p);
		seg_unref(p->seg);
		free(p->errmsg);
	}
	while (r->all && !leak)
		req_free(r, r->all); /* discarded ones whose completion was never seen */
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
