/* reader.h - the log reader's private structures and its read backends (reader*.c only).
 *
 * The reader is five files:
 *  - reader.c:        the core: each partition's state machine (the table is there), what
 *                     to read next, the parsing of a finished read into a chunk, corruption,
 *                     seek, set_end and poll;
 *  - reader_open.c:   open (the inotify watches, the epoll fd, the choice of backend),
 *                     close, and the queries (bounds, lag, ended, stats);
 *  - reader_uring.c:  the io_uring backend;
 *  - reader_pread.c:  the pread backend, where io_uring is unavailable or turned off.
 *  - reader_decode.c: the decode stage: threads that check CRCs, decompress and fill the
 *                     descriptors of the reads the core pre-scanned (log.decode.threads).
 * The core decides what to read; a backend only moves requests to the kernel and back,
 * through the small interface below (as Redis keeps ae_epoll.c and ae_select.c behind
 * ae.c). Everything runs on the engine thread, except the chunk release callback
 * (bufpool.c), which may run on any thread, and the decode threads, which touch only the
 * requests queued to them (their buffer, arena and chunk) until they mark them done.
 */
#ifndef SPATE_CONNECTORS_LOG_READER_H
#define SPATE_CONNECTORS_LOG_READER_H

#include "log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/inotify.h>

/* Parsed chunks a partition holds before poll hands them out. */
#define READY_MAX 2
/* Bytes of the inotify read buffer (many events per read). */
#define INOTIFY_BUF_BYTES 4096

/* An open segment file; requests hold references so it outlives a partition's move on. */
typedef struct segh {
	int fd;
	int dfd; /* the same file opened with O_DIRECT (log.read.direct), or -1 */
	uint64_t base;
	int refs;
} segh_t;

struct rpart;

/* One read of a partition's segment, from the start of its request to its parse. */
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
	/* log.read.direct: the read covers the aligned region from file_pos - lead, rounded up
	 * to SP_LOG_DIRECT_ALIGN, into buf + head - lead (aligned); dgot bytes of it came */
	bool direct;
	size_t lead, dgot;
	int err; /* negative errno */
	bool done, eof, inflight, discard;
	/* the decode stage (reader_decode.c): once pre-scanned, the request waits in its
	 * partition's decode FIFO (dnext) while a decode thread fills dc; jnext links the
	 * stage's job queue. dstate: DEC_QUEUED, DEC_RUNNING, DEC_DONE (written under the
	 * stage's mutex; ddone is what the engine thread reads without it). dok: dc holds
	 * exactly what the pre-scan promised. The snapshot is the partition's state before the
	 * pre-scan, restored when the decode differs (corruption, ...) and the read is parsed
	 * again on the engine thread. */
	sp_chunk_t *dc;
	sp_log_parse_t dps; /* the parse's inputs */
	size_t exp_used;    /* what the pre-scan found: the decode must agree */
	uint64_t exp_next, exp_passed;
	int dstate;
	_Atomic bool ddone;
	bool dok;
	struct req *dnext, *jnext;
	uint64_t snap_parse_pos, snap_next_deliver, snap_passed;
	size_t snap_need, snap_big_need;
	bool snap_skip_pending;
	uint64_t snap_skip_to;
	bool dend;        /* the pre-scan reached the stop.at.end end: the partition is done after it */
	struct req *next; /* the partition's FIFO */
	struct req *all_prev, *all_next; /* every live request of the reader */
} req_t;

/* A partition's state; reader.c has the table of its transitions. */
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
	uint32_t expand16;     /* 16 x (bytes read + bytes decompressed) / bytes read, of the last
	                        * full read (16: uncompressed): sizes the next reads (pump) */
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
	req_t *d_head, *d_tail; /* pre-scanned reads being decoded, in order */
	int ndec;
	sp_chunk_t *ready[READY_MAX];
	int r_head, nready;
	bool dirty; /* inotify: the durable file or segments changed */
	int err;
	char *errmsg;
	uint64_t seek_steps;
} rpart_t;

typedef struct sp_log_rd_backend sp_log_rd_backend_t;

struct sp_log_reader {
	char dir[SP_LOG_PATH_MAX];
	int nparts;
	rpart_t *parts;
	sp_log_ropts_t o;
	const sp_log_rd_backend_t *be; /* how reads reach the kernel */
	void *be_ctx;                  /* the backend's own state (the ring) */
	int ino_fd;
	_Alignas(struct inotify_event) uint8_t ino_buf[INOTIFY_BUF_BYTES];
	int epfd, kick_fd;
	bool kicked;
	bool closing; /* no resubmits while close() drains the backend */
	sp_log_pool_t *pool;
	int rr;
	uint64_t skipped;
	sp_log_reader_stats_t stats;
	req_t *all;                  /* live requests */
	struct sp_log_decoders *dec; /* the decode stage, or NULL: parse on this thread */
	_Atomic bool dec_kicked;     /* a decode thread wrote kick_fd since poll last read it */
};

/* ---- the read backends -------------------------------------------------------------- */

static inline size_t sp_log_rd_align_up(size_t n)
{
	return (n + SP_LOG_DIRECT_ALIGN - 1) & ~(SP_LOG_DIRECT_ALIGN - 1);
}

/* The next piece of q's read: on which fd, into where, how many bytes, from where. */
static inline void sp_log_rd_piece(const req_t *q, int *fd, uint8_t **dst, size_t *len, uint64_t *off)
{
	if (q->direct) {
		*fd = q->seg->dfd;
		*dst = q->buf + q->head - q->lead + q->dgot;
		*len = sp_log_rd_align_up(q->lead + q->want) - q->dgot;
		*off = q->file_pos - q->lead + q->dgot;
		return;
	}
	*fd = q->seg->fd;
	*dst = q->buf + q->head + q->got;
	*len = q->want - q->got;
	*off = q->file_pos + q->got;
}

/* res > 0 bytes of the piece arrived: true when q is done (with q->eof when the file
 * ended first). A direct read returns less than asked only at the end of the file. */
static inline bool sp_log_rd_advance(req_t *q, size_t res)
{
	if (!q->direct) {
		q->got += res;
		return q->got >= q->want;
	}
	q->dgot += res;
	size_t have = q->dgot > q->lead ? q->dgot - q->lead : 0;
	q->got = have < q->want ? have : q->want;
	if (q->got >= q->want)
		return true;
	if (res % SP_LOG_DIRECT_ALIGN) {
		q->eof = true;
		return true;
	}
	return false;
}

/* How reads reach the kernel and how the reader learns they finished. */
struct sp_log_rd_backend {
	const char *name;
	/* A read is complete when start_read returns (pread): the core parses it at once
	 * instead of waiting for a reap. */
	bool sync;
	/* Start (or, when sync, do) the rest of q's read: q->want - q->got bytes at
	 * q->file_pos + q->got into q->buf + q->head + q->got; q->done is set (with q->err or
	 * q->eof when so) once it finished. Counts r->stats. false when it cannot be queued
	 * now (a full ring): the request is not started, the next poll tries again. */
	bool (*start_read)(sp_log_reader_t *r, req_t *q);
	/* Take in what finished: completed reads, and the inotify fd's events
	 * (sp_log_rd_inotify_drain). A discarded request that comes back is freed. */
	void (*reap)(sp_log_reader_t *r);
	/* Some partition waits for its folder to change: see that an inotify event makes the
	 * backend's fd readable. */
	void (*arm_wait)(sp_log_reader_t *r);
	/* Hand what start_read and arm_wait queued to the kernel. */
	void (*submit)(sp_log_reader_t *r);
	/* The fd the reader's epoll set waits on for I/O (besides its eventfd). */
	int (*fd)(const sp_log_reader_t *r);
	/* With r->closing set: get back every request the kernel holds, and free what the
	 * backend holds. false when some did not come back in time: their buffers (and the
	 * pool) must be leaked rather than freed under the kernel. */
	bool (*close)(sp_log_reader_t *r);
};

/* ---- the decode stage (reader_decode.c) ----------------------------------------------- */

/* Pre-scanned reads a partition may have in the decode stage beyond READY_MAX parsed ones
 * (with 8 partitions one each keeps the threads busy; 2 only added memory: about 10% more
 * RSS for the same rate, docs/benchmarks.md). */
#define SP_LOG_DECODE_DEPTH 1
enum { DEC_QUEUED = 1, DEC_RUNNING, DEC_DONE };

/* Start n decode threads for r (r->dec). SPATE_OK or SPATE_ERR_NOMEM (errstr says). */
int sp_log_rd_dec_start(sp_log_reader_t *r, int n, char *errstr, size_t size);
/* Stop and join them (every job must be finished or cancelled before). */
void sp_log_rd_dec_stop(sp_log_reader_t *r);
/* Queue q's decode (q->dc, q->dps set). */
void sp_log_rd_dec_submit(sp_log_reader_t *r, req_t *q);
/* Take q back from the stage: out of the queue when no thread took it yet, else wait
 * until its thread is done with it. Then q may be freed. */
void sp_log_rd_dec_cancel(sp_log_reader_t *r, req_t *q);
/* Take p's reads out of the decode stage after `after` (NULL: all), waiting for those a
 * thread decodes, and free them with their chunks (reader.c). */
void sp_log_rd_dec_drop(sp_log_reader_t *r, rpart_t *p, req_t *after);
/* Decode q on the calling thread (what a decode thread runs): CRC, decompression,
 * descriptors. Sets q->dok. */
void sp_log_rd_decode(sp_log_reader_t *r, req_t *q);

extern const sp_log_rd_backend_t sp_log_rd_pread;
extern const sp_log_rd_backend_t sp_log_rd_uring;

/* Set up an io_uring sized for r->nparts partitions and register what it can of the
 * buffer pool. Returns 0 with r->be and r->be_ctx set, or the negative errno of
 * io_uring_queue_init with r unchanged (the caller reads with pread). */
int sp_log_rd_uring_open(sp_log_reader_t *r);
/* With the decode stage: a read through the page cache is handed to io_uring's workers
 * (IOSQE_ASYNC, at most `workers` of them), so the copy from the page cache runs beside
 * the engine thread instead of inline in its submit. Direct reads are not: they copy
 * nothing; nor are reads smaller than log.decode.min.bytes (a reader at the tail), which
 * the engine thread parses itself. */
void sp_log_rd_uring_offload(sp_log_reader_t *r, unsigned workers);

/* ---- what the core lends the other reader files (reader.c) -------------------------- */

/* Free a request that is in no partition's FIFO, and its buffer unless a chunk took it. */
void sp_log_rd_req_free(sp_log_reader_t *r, req_t *q);
/* Read every pending inotify event and mark the partitions whose folder changed. */
void sp_log_rd_inotify_drain(sp_log_reader_t *r);
void sp_log_rd_seg_unref(segh_t *s);
/* Re-read the partition's durable file. */
void sp_log_rd_refresh(sp_log_reader_t *r, rpart_t *p);
/* Unlink requests after `after` (or all when NULL) from p's FIFO: those in the kernel are
 * freed when they come back. Reading restarts at parse_pos. */
void sp_log_rd_drop_reqs(sp_log_reader_t *r, rpart_t *p, req_t *after);
/* Release and free p's parsed chunks that were not handed out. */
void sp_log_rd_drop_ready(sp_log_reader_t *r, rpart_t *p);
/* First offset of the partition and the offset after its last readable record (the
 * durable file re-read); segs gets its segment list, freed by the caller. */
int sp_log_rd_bounds(sp_log_reader_t *r, rpart_t *p, sp_log_seglist_t *segs, uint64_t *start, uint64_t *next,
                     char *errstr, size_t size);

#endif
