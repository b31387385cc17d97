/* reader.c - reads every partition of a log into parsed chunks: the core.
 *
 * Per partition: about 1 MiB reads (SP_LOG_READ_BYTES), two in flight, POSIX_FADV_SEQUENTIAL,
 * into buffers from a pool (bufpool.c). A completed read is parsed once: its complete
 * batches are CRC-checked and become one chunk whose record descriptors point into the
 * read buffer (the chunk owns the buffer: chunk->buf, chunk->release; see bufpool.c and
 * parse.c). A batch cut by the end of a read is copied into the headroom in front of the
 * next read's data (or, when it does not fit there, read again from its start).
 *
 * Reads never pass the durable length the writer publishes (the partition's `durable`
 * file, see segment.c), so nothing not fsync'd is ever delivered. At the end of the durable
 * data a partition waits: the reader watches each partition folder with inotify
 * (reader_open.c) and re-reads the durable file when it is replaced.
 *
 * A batch's baseOffset is not covered by its CRC: every batch's offsets are checked
 * against the batch before it, the one after it and the bound of its segment (the next
 * segment's base, or the durable next offset), and one that fails is corruption like a CRC
 * mismatch (log.on.corruption). With stop.at.end the durable length is noted with the end
 * offset, so a partition ends even when a damaged header made the end offset unreachable;
 * offsets that hold no record (a skipped region, what lies before the end) are handed on
 * as record-less chunks that move the checkpoint (ropts.skip).
 *
 * This file decides what to read and what a finished read means; how a read reaches the
 * kernel is a backend's (reader.h): io_uring, one ring shared by all partitions, with
 * registered buffers and the inotify fd polled through the ring (reader_uring.c), or
 * pread where io_uring is unavailable or turned off (reader_pread.c). The engine thread
 * waits on one epoll fd (sp_log_reader_fd) that holds the backend's fd and an eventfd the
 * reader signals when it has work without I/O.
 *
 * With the decode stage (log.decode.threads, reader_decode.c) a finished read is first
 * pre-scanned here (batch headers only: dec_prescan) and decoded on a decode thread; the
 * decoded chunks come back in read order (dec_finish), and a read whose decode differs
 * from its pre-scan (corruption, ...) is parsed here after all, as without the stage.
 *
 * Threads: every function runs on one thread (the engine thread), except the chunk
 * release callback, which may run on any thread (the buffer pool has a mutex), and
 * sp_log_rd_decode on the decode threads.
 */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
 * parsed before it are handed out; DONE and ERROR are left only by a seek. The states
 * (enum pstate) and a partition's fields (rpart_t) are in reader.h.
 */

/* ---- small helpers ------------------------------------------------------------------ */

void sp_log_rd_seg_unref(segh_t *s)
{
	if (s && --s->refs == 0) {
		close(s->fd);
		if (s->dfd >= 0)
			close(s->dfd);
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

void sp_log_rd_req_free(sp_log_reader_t *r, req_t *q)
{
	if (q->all_prev)
		q->all_prev->all_next = q->all_next;
	else
		r->all = q->all_next;
	if (q->all_next)
		q->all_next->all_prev = q->all_prev;
	if (q->buf)
		sp_log_pool_put(r->pool, q->buf);
	sp_log_rd_seg_unref(q->seg);
	free(q);
}

/* Unlink requests after `after` (or all when NULL) from p's FIFO: those in the kernel are
 * freed when they complete. Reading restarts at parse_pos. */
void sp_log_rd_drop_reqs(sp_log_reader_t *r, rpart_t *p, req_t *after)
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
			sp_log_rd_req_free(r, q);
		q = n;
	}
	p->read_pos = p->parse_pos;
}

void sp_log_rd_drop_ready(sp_log_reader_t *r, rpart_t *p)
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
void sp_log_rd_refresh(sp_log_reader_t *r, rpart_t *p)
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
	int dfd = -1;
	if (r->o.direct && (dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT)) < 0) {
		int en = errno;
		close(fd);
		set_error(r, p, en == EINVAL ? SPATE_ERR_UNSUPPORTED : SPATE_ERR_IO,
		          "log %s partition %d: %s: log.read.direct=true: open with O_DIRECT: %s%s", r->dir,
		          p->id, path, strerror(en),
		          en == EINVAL
		              ? " (this file system does not read directly: set log.read.direct=false)"
		              : "");
		return -1;
	}
	segh_t *s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		if (dfd >= 0)
			close(dfd);
		set_error(r, p, SPATE_ERR_NOMEM, "log %s partition %d: out of memory", r->dir, p->id);
		return -1;
	}
	s->fd = fd;
	s->dfd = dfd;
	s->base = base;
	s->refs = 1;
	sp_log_rd_seg_unref(p->seg);
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
	sp_log_rd_drop_reqs(r, p, NULL);
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

/* ---- reads ---------------------------------------------------------------------------- */

/* Issue a read of want bytes at p->read_pos. */
/* The bytes of a full-size read: a direct one leaves room in its buffer to align both
 * ends. */
static size_t read_full(const sp_log_reader_t *r)
{
	return r->o.direct ? SP_LOG_READ_BYTES - 2 * SP_LOG_DIRECT_ALIGN : SP_LOG_READ_BYTES;
}

/* The size of p's next read: a full one, or for a compressed log one that decompresses
 * to about a full read's bytes (not for direct reads: their sizes are aligned). Each read
 * becomes one chunk, with the decompressed records in its buffer's arena and a
 * descriptor per record: a full read of a log that compresses 5 to 1 made chunks of 6 MiB
 * of records and arenas of 8 MiB, five times an uncompressed read's, and the pages of
 * every such arena and chunk body were faulted in once each (most of a compressed read's
 * system time on this machine). */
static size_t read_size(const sp_log_reader_t *r, const rpart_t *p)
{
	size_t full = read_full(r);
	if (r->o.direct || p->expand16 == 16)
		return full;
	/* until a read says (the first reads of a partition, up to 5 with the decode stage),
	 * as if it expanded 8 to 1 */
	uint32_t x16 = p->expand16 ? p->expand16 : 8 * 16;
	size_t want = (size_t)((uint64_t)full * 16 / x16);
	if (want < SP_LOG_READ_MIN_BYTES)
		want = SP_LOG_READ_MIN_BYTES;
	/* a read from the batch that needs more: that batch whole, if it fits in a full read
	 * (a read after one in flight starts further on: need says nothing about it) */
	if (p->need > want && p->read_pos == p->parse_pos)
		want = p->need < full ? p->need : full;
	return want;
}

/* A read of got bytes whose batches decompressed to used bytes (0: uncompressed): what
 * the next reads are sized by (read_size). A read that expands more counts at once (the
 * next reads shrink: memory); one that expands less moves the estimate a quarter of the
 * way (one incompressible batch does not make the next read of a 10:1 log 10 MiB of
 * records). Reads shorter than SP_LOG_READ_MIN_BYTES (the end of the data) say too
 * little. */
static void note_expansion(rpart_t *p, size_t got, size_t used)
{
	if (got < SP_LOG_READ_MIN_BYTES)
		return;
	uint64_t x = 16 * ((uint64_t)got + used) / got;
	if (p->expand16 && x < p->expand16)
		x = (3 * (uint64_t)p->expand16 + x) / 4;
	p->expand16 = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}

/* Read want bytes at p->read_pos; pooled: into a full-size buffer from the pool (with the
 * headroom a carried batch tail needs), else an exact one. */
static bool issue_read(sp_log_reader_t *r, rpart_t *p, size_t want, bool pooled)
{
	req_t *q = calloc(1, sizeof(*q));
	if (!q)
		return false;
	/* Full-size reads (and a compressed log's reads, sized to what they decompress to) get
	 * a pooled buffer with headroom (a following read may carry a batch tail into it); a
	 * shorter read at the end of the data, or one for a batch bigger than a pooled
	 * buffer, gets an exact one. A direct read also needs room to align its start and end
	 * (sp_log_rd_piece). */
	const size_t A = SP_LOG_DIRECT_ALIGN;
	q->direct = r->o.direct;
	q->cap = pooled ? SP_LOG_POOL_BUF_BYTES : want + (q->direct ? 3 * A : 0);
	q->head = pooled ? SP_LOG_READ_HEADROOM : 0;
	q->buf = sp_log_pool_get(r->pool, q->cap, &q->reg);
	if (!q->buf) {
		free(q);
		return false;
	}
	if (q->direct) {
		/* buf + head - lead on a multiple of A: pooled, head moves up by less than A
		 * (head - lead + align_up(lead + want) <= HEADROOM + want + 2A = the cap); an
		 * exact buffer starts its region at its first aligned byte */
		q->lead = p->read_pos % A;
		uintptr_t at = (uintptr_t)(q->buf + q->head) - q->lead;
		if (!pooled)
			at = (uintptr_t)q->buf;
		size_t pad = (A - at % A) % A;
		q->head = pooled ? q->head + pad : pad + q->lead;
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
	if (!r->be->start_read(r, q)) {
		sp_log_rd_req_free(r, q);
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

/* ---- corruption ----------------------------------------------------------------------- */

/* A bad batch at file position bpos of p's segment (detail: more about it, or "").
 * fail: the partition stops with SPATE_ERR_CORRUPT. skip: find the next valid batch, report
 * the skipped range and the offsets it may have held, go on; a record-less chunk moves the
 * checkpoint over those offsets. */
static void corrupt(sp_log_reader_t *r, rpart_t *p, uint64_t bpos, const char *why, const char *detail)
{
	char path[SP_LOG_PATH_MAX];
	seg_name(p, p->seg->base, path, sizeof(path));
	sp_log_rd_drop_reqs(r, p, NULL);
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

/* What a parse of the finished read q of p starts from: the partition's position and
 * end, the readable bytes after the read, the read buffer's decode arena. */
static sp_log_parse_t parse_init(sp_log_reader_t *r, rpart_t *p, const req_t *q)
{
	uint64_t end_pos = q->file_pos + q->got; /* the file position after the read's data */
	bool final;
	uint64_t limit = seg_limit(p, &final);
	return (sp_log_parse_t){.from = p->next_deliver,
	                        .has_end = p->has_end,
	                        .end = p->end,
	                        .passed = p->passed,
	                        .hi = part_hi(r, p),
	                        .more = limit > end_pos ? limit - end_pos : 0,
	                        .redrive_ms = r->o.redrive ? sp_wall_ms() : 0,
	                        .dec = sp_log_pool_dec(r->pool, q->buf)};
}

/* Parse the complete batches of a finished read (the FIFO head) into a chunk queued on
 * p->ready; carry a cut batch to the next read or read it again; free the request. */
static void parse_req(sp_log_reader_t *r, rpart_t *p, req_t *q)
{
	char path[SP_LOG_PATH_MAX];
	const uint8_t *data = q->buf + q->head - q->carry;
	size_t len = q->carry + q->got;
	uint64_t dpos = q->file_pos - q->carry;
	r->stats.parsed_here++;
	if (q->err) {
		seg_name(p, p->seg->base, path, sizeof(path));
		set_error(r, p, SPATE_ERR_IO, "log %s partition %d: %s: read at byte %" PRIu64 ": %s", r->dir,
		          p->id, path, q->file_pos, strerror(-q->err));
		sp_log_rd_drop_reqs(r, p, NULL);
		return;
	}
	sp_log_parse_t init = parse_init(r, p, q);
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
			sp_log_rd_drop_reqs(r, p, NULL);
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
		/* a direct read with a lead writes the bytes just before its head itself: no
		 * copy into it while it is in flight */
		if (nx && !eof && tail <= nx->head && nx->file_pos == q->file_pos + q->got &&
		    !(nx->lead && !nx->done)) {
			memcpy(nx->buf + nx->head - tail, data + ps.used, tail);
			nx->carry = tail;
		} else {
			sp_log_rd_drop_reqs(r, p, q); /* read again from parse_pos */
		}
	}
	if (c) {
		c->buf = q->buf;
		c->release = sp_log_pool_chunk_release;
		c->release_opaque = r->pool;
		c->bytes = q->cap + sp_log_dec_bytes(init.dec); /* decompressed records too */
		note_expansion(p, q->got, sp_log_dec_used(init.dec));
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
	sp_log_rd_req_free(r, q);
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
		sp_log_rd_drop_reqs(r, p, NULL);
		set_error(r, p, ps.err ? ps.err : SPATE_ERR_UNSUPPORTED,
		          "log %s partition %d: %s: byte %" PRIu64 ": cannot decode %s", r->dir, p->id, path,
		          dpos + ps.used, ps.why);
		break;
	default:
		break;
	}
}

/* ---- the decode stage (reader_decode.c) ------------------------------------------------ */

/* Hand the finished read q (p's FIFO head) to the decode stage: walk its batch headers
 * (no CRC, no record), allocate its chunk for the records they count, carry a cut batch
 * to the next read, and move the partition on as parse_req would. false, with nothing
 * changed, when the read must be parsed here instead: an error, the end of the file, a
 * batch not delivered whole (a seek into it, a stop.at.end end inside it, no records),
 * a bad header, the end, only control batches. */
static bool dec_prescan(sp_log_reader_t *r, rpart_t *p, req_t *q)
{
	if (q->err || q->eof)
		return false;
	const uint8_t *data = q->buf + q->head - q->carry;
	size_t len = q->carry + q->got;
	uint64_t dpos = q->file_pos - q->carry;
	sp_log_parse_t init = parse_init(r, p, q);
	sp_log_parse_t ps = init;
	ps.headers_only = true;
	sp_log_parse_scan(data, len, &ps);
	if ((ps.stop != SP_LOG_PARSE_MORE && ps.stop != SP_LOG_PARSE_END) || ps.edge || ps.nrec == 0)
		return false;
	sp_chunk_t *c = r->o.alloc(r->o.alloc_opaque, p->part, ps.nrec, 0);
	if (!c)
		return false; /* parse_req says it */
	q->dc = c;
	q->dps = init;
	q->exp_used = ps.used;
	q->exp_next = ps.next;
	q->exp_passed = ps.passed;
	q->snap_parse_pos = p->parse_pos;
	q->snap_next_deliver = p->next_deliver;
	q->snap_passed = p->passed;
	q->snap_need = p->need;
	q->snap_big_need = p->big_need;
	q->snap_skip_pending = p->skip_pending;
	q->snap_skip_to = p->skip_to;
	q->dend = ps.stop == SP_LOG_PARSE_END;
	/* as parse_req: the cut batch goes in front of the next read, or is read again */
	size_t tail = len - ps.used;
	req_t *nx = q->next;
	p->parse_pos = dpos + ps.used;
	if (tail > 0 && !q->dend) {
		if (nx && tail <= nx->head && nx->file_pos == q->file_pos + q->got &&
		    !(nx->lead && !nx->done)) {
			memcpy(nx->buf + nx->head - tail, data + ps.used, tail);
			nx->carry = tail;
		} else {
			sp_log_rd_drop_reqs(r, p, q);
		}
	}
	p->next_deliver = ps.next;
	p->passed = ps.passed;
	p->need = q->dend ? 0 : ps.need;
	if (p->need > SP_LOG_READ_BYTES && p->q_head == q && !q->next)
		p->big_need = p->need;
	p->q_head = q->next;
	if (!p->q_head)
		p->q_tail = NULL;
	p->nq--;
	q->next = NULL;
	q->dnext = NULL;
	if (p->d_tail)
		p->d_tail->dnext = q;
	else
		p->d_head = q;
	p->d_tail = q;
	p->ndec++;
	sp_log_rd_dec_submit(r, q);
	if (q->dend)
		part_done(r, p); /* its skip chunk waits for the decoded ones (poll) */
	return true;
}

/* Take every read of p out of the decode stage (waiting for the ones a thread decodes)
 * and free them with their chunks: a seek, an unbind, a close, or a decode that differed
 * (then from `after` on; NULL: all). */
void sp_log_rd_dec_drop(sp_log_reader_t *r, rpart_t *p, req_t *after)
{
	req_t *q = after ? after->dnext : p->d_head;
	if (after) {
		after->dnext = NULL;
		p->d_tail = after;
	} else {
		p->d_head = p->d_tail = NULL;
	}
	while (q) {
		req_t *n = q->dnext;
		sp_log_rd_dec_cancel(r, q);
		if (q->dc)
			r->o.free(r->o.alloc_opaque, q->dc);
		q->dc = NULL;
		p->ndec--;
		sp_log_rd_req_free(r, q);
		q = n;
	}
}

/* The head of p's decode FIFO is decoded: its chunk joins p's ready ones. When the decode
 * differed from the pre-scan, everything read after it is dropped, the partition goes
 * back to where it was before it, and parse_req parses it here (and reports what is
 * wrong with it exactly as without the stage). */
static void dec_finish(sp_log_reader_t *r, rpart_t *p)
{
	req_t *q = p->d_head;
	if (q->dok) {
		sp_chunk_t *c = q->dc;
		c->buf = q->buf;
		c->release = sp_log_pool_chunk_release;
		c->release_opaque = r->pool;
		c->bytes = q->cap + sp_log_dec_bytes(q->dps.dec);
		note_expansion(p, q->got, sp_log_dec_used(q->dps.dec));
		c->end_marker = q->dend;
		q->buf = NULL;
		q->dc = NULL;
		p->ready[(p->r_head + p->nready) % READY_MAX] = c;
		p->nready++;
		p->d_head = q->dnext;
		if (!p->d_head)
			p->d_tail = NULL;
		p->ndec--;
		r->stats.decoded++;
		sp_log_rd_req_free(r, q);
		return;
	}
	r->stats.decode_redo++;
	sp_log_rd_dec_drop(r, p, q);
	r->o.free(r->o.alloc_opaque, q->dc);
	q->dc = NULL;
	p->d_head = p->d_tail = NULL;
	p->ndec--;
	p->parse_pos = q->snap_parse_pos;
	sp_log_rd_drop_reqs(r, p, NULL); /* read_pos = parse_pos */
	p->next_deliver = q->snap_next_deliver;
	p->passed = q->snap_passed;
	p->need = q->snap_need;
	p->big_need = q->snap_big_need;
	p->skip_pending = q->snap_skip_pending;
	p->skip_to = q->snap_skip_to;
	/* as at its pre-scan, which runs only ACTIVE (a later read that reached the end made
	 * the partition DONE: that end is found again) */
	p->st = P_ACTIVE;
	q->next = NULL;
	p->q_head = p->q_tail = q;
	p->nq = 1;
	parse_req(r, p, q);
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
	while (p->st == P_ACTIVE && p->nq < SP_LOG_READS_IN_FLIGHT &&
	       p->nready + p->ndec < READY_MAX + (r->dec ? SP_LOG_DECODE_DEPTH : 0)) {
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
		/* what waits on the decode stage comes first: nothing below may move the
		 * partition on (another segment, its end, an error) before it is handed out */
		bool final;
		uint64_t limit = seg_limit(p, &final);
		if (p->nq == 0 && p->ndec &&
		    (at_end_bytes(p) || p->read_pos >= limit ||
		     (p->need && p->have_dur && (p->parse_pos >= limit || limit - p->parse_pos < p->need))))
			return;
		if (p->nq == 0 && at_end_bytes(p)) {
			part_done(r, p);
			return;
		}
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
		size_t full = read_full(r), planned = read_size(r, p);
		size_t want = p->big_need > full ? p->big_need : planned;
		if (r->o.direct && want == full && p->read_pos % SP_LOG_DIRECT_ALIGN)
			want -= (size_t)((p->read_pos + want) %
			                 SP_LOG_DIRECT_ALIGN); /* the next one starts aligned */
		if (want > limit - p->read_pos)
			want = (size_t)(limit - p->read_pos);
		if (!issue_read(r, p, want, want == planned))
			return; /* ring full or out of memory: the next poll tries again */
		p->big_need = 0;
	}
}

/* Parse what finished and read more, until p has nothing to do without waiting. */
static void service(sp_log_reader_t *r, rpart_t *p)
{
	for (;;) {
		for (bool progress = true; progress;) {
			progress = false;
			/* decoded reads, in read order */
			while (p->d_head && atomic_load(&p->d_head->ddone) && p->nready < READY_MAX) {
				dec_finish(r, p);
				progress = true;
			}
			while (p->st == P_ACTIVE && p->q_head && p->q_head->done) {
				req_t *q = p->q_head;
				/* small reads (a reader at the tail) are parsed here, unless one
				 * before them is in the stage */
				if (r->dec && p->nready + p->ndec < READY_MAX + SP_LOG_DECODE_DEPTH &&
				    (p->ndec || q->carry + q->got >= r->o.decode_min_bytes) &&
				    dec_prescan(r, p, q)) {
					progress = true;
					continue;
				}
				/* parsed here: after every read before it is handed out */
				if (p->ndec || p->nready >= READY_MAX)
					break;
				parse_req(r, p, q);
				progress = true;
			}
		}
		if (p->st != P_ACTIVE)
			return;
		int before = p->nq;
		pump(r, p);
		/* io_uring completes later; pread has completed what pump issued: parse it */
		if (!r->be->sync || p->nq == before)
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

void sp_log_rd_inotify_drain(sp_log_reader_t *r)
{
	ssize_t n;
	while ((n = read(r->ino_fd, r->ino_buf, sizeof(r->ino_buf))) > 0)
		ino_events(r, r->ino_buf, (size_t)n);
}

/* ---- seek, end, poll ------------------------------------------------------------------ */

void sp_log_reader_unbind(sp_log_reader_t *r, int i, const sp_part_t *part)
{
	rpart_t *p = &r->parts[i];
	if (p->part != part)
		return; /* bound again meanwhile (the lease was taken back) */
	sp_log_rd_drop_reqs(r, p, NULL);
	sp_log_rd_dec_drop(r, p, NULL);
	sp_log_rd_drop_ready(r, p);
	p->skip_pending = false;
	p->st = P_IDLE;
	p->part = NULL;
}

/* First offset of the partition and the offset after its last readable record. */
int sp_log_rd_bounds(sp_log_reader_t *r, rpart_t *p, sp_log_seglist_t *segs, uint64_t *start, uint64_t *next,
                     char *errstr, size_t size)
{
	sp_log_rd_refresh(r, p);
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

int sp_log_reader_seek(sp_log_reader_t *r, int i, uint64_t offset, char *errstr, size_t size)
{
	rpart_t *p = &r->parts[i];
	sp_log_rd_drop_reqs(r, p, NULL);
	sp_log_rd_dec_drop(r, p, NULL);
	sp_log_rd_drop_ready(r, p);
	free(p->errmsg);
	p->errmsg = NULL;
	p->err = 0;
	p->seek_steps = 0;
	sp_log_seglist_t segs = {0};
	uint64_t start = 0, next = 0;
	int rc = sp_log_rd_bounds(r, p, &segs, &start, &next, errstr, size);
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
		sp_log_rd_seg_unref(p->seg);
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
			sp_log_rd_drop_reqs(r, p, NULL);
		if (p->st != P_ERROR)
			p->st = P_DONE;
	}
}

int sp_log_reader_poll(sp_log_reader_t *r, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
                       size_t size)
{
	uint64_t junk;
	if (r->kicked || (r->dec && atomic_load(&r->dec_kicked))) {
		if (read(r->kick_fd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
			return sp_err(errstr, size, SPATE_ERR_IO, "log %s: eventfd: %s", r->dir,
			              strerror(errno));
		r->kicked = false;
		/* after the read: a decode that ends from now on writes the eventfd again */
		atomic_store(&r->dec_kicked, false);
	}
	r->be->reap(r);
	for (int i = 0; i < r->nparts; i++) {
		rpart_t *p = &r->parts[i];
		if (p->dirty) {
			p->dirty = false;
			sp_log_rd_refresh(r, p);
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
		if (!paused && !p->nready && !p->ndec && p->skip_pending && n < max) {
			/* after every chunk of records before it; out of memory: the next poll */
			sp_chunk_t *c = r->o.skip ? r->o.skip(r->o.alloc_opaque, p->part, p->skip_to) : NULL;
			if (c || !r->o.skip)
				p->skip_pending = false;
			if (c)
				out[n++] = c;
		}
		if (!p->nready && !p->ndec && p->st == P_ERROR && err == SPATE_OK && n == 0) {
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
		    (p->st == P_ACTIVE && p->nq == 0 && p->ndec == 0 && p->nready < READY_MAX) ||
		    (p->st == P_ERROR && !p->nready))
			more = true; /* an error is reported by the next poll */
		if (p->st == P_WAIT)
			tail_wait = true;
	}
	if (tail_wait)
		r->be->arm_wait(r);
	r->be->submit(r);
	if (more && !budget_blocked)
		kick(r);
	if (n == 0 && err)
		return err;
	return n;
}
