/* verify.c - `spate log verify`: check every batch and every record of a log.
 *
 * Each batch of each segment is read whole (the scanner, segment.c) and checked: its
 * header, its CRC32C, its offsets against the batches around it (the readers' rules), and
 * then its records: a compressed batch is decompressed (codec.c, with the same limit as
 * the readers) and every record of every batch is decoded, its framing, headers and
 * offsets checked. The counts are kept per codec. The first bad batch of a partition is
 * named with its segment file and byte offset; a partial batch past the durable length
 * of the last segment is a torn tail the writer truncates, counted and not an error.
 *
 * Partitions are verified on threads (sp_log_verify_log), one partition at a time per
 * thread, each thread with its own decode arena: the work is CRC and decompression,
 * which is what the cores are for. Nothing here changes a file.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What one verify of a partition carries: the arena compressed batches go to. */
typedef struct vctx {
	sp_log_dec_t dec;
	char why[256];
} vctx_t;

/* Check the records of a complete, CRC-checked batch (decompressed first when it is
 * compressed). NULL, or what is wrong (static text or v->why); *rc the error's code. */
static const char *check_records(vctx_t *v, const uint8_t *p, size_t total, const sp_log_batch_hdr_t *h,
                                 uint64_t *records, int *rc)
{
	const uint8_t *recs;
	size_t len;
	*rc = SPATE_ERR_CORRUPT;
	sp_log_dec_reset(&v->dec);
	int d = sp_log_dec_batch(&v->dec, p, total, h, &recs, &len, v->why, sizeof(v->why));
	if (d) {
		*rc = d;
		return v->why;
	}
	sp_log_rec_iter_t it;
	sp_log_rec_t r;
	const char *why = NULL;
	sp_log_rec_iter_init_recs(&it, recs, len, h); /* it checks the records' offsets too */
	int k;
	while ((k = sp_log_rec_next(&it, &r, &why)) == 1) {
		if (sp_log_rec_check_hdrs(&r) < 0)
			return "bad record headers";
		(*records)++;
	}
	return k < 0 ? why : NULL;
}

/* The error for a bad or partial batch at sc->bpos (v: whether valid batches follow). */
static int bad_batch(const char *path, const sp_log_scan_t *sc, int r, int64_t before, int v, char *errstr,
                     size_t size)
{
	const char *follow = v == 1 ? " (valid batches follow)" : "";
	if (r == SP_LOG_SCAN_BAD && sc->why && !strcmp(sc->why, "CRC32C mismatch"))
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "%s: byte %" PRIu64 ": bad batch (base offset %" PRId64
		              "): CRC32C mismatch (stored 0x%08x, computed 0x%08x)",
		              path, sc->bpos, sc->h.base_offset, sc->h.crc, sc->crc_computed);
	if (r == SP_LOG_SCAN_BAD && sc->bad_offsets && sc->h.base_offset < before)
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "%s: byte %" PRIu64 ": batch base offset %" PRId64 " is before %" PRId64, path,
		              sc->bpos, sc->h.base_offset, before);
	if (r == SP_LOG_SCAN_BAD && sc->bad_offsets)
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "%s: byte %" PRIu64 ": bad batch: offsets %" PRId64 "..%" PRId64
		              " (the next offset is %" PRId64 "): %s%s",
		              path, sc->bpos, sc->h.base_offset, sp_log_batch_last(&sc->h), before, sc->why,
		              follow);
	return sp_err(errstr, size, SPATE_ERR_CORRUPT, "%s: byte %" PRIu64 ": bad batch: %s%s", path,
	              sc->bpos, sc->why ? sc->why : "?", follow);
}

/* Verify one segment file. hi: the bound of its offsets within the durable bytes (the
 * next segment's base, or the durable next offset); batches past durable_limit are not
 * published yet and may go past it. */
static int verify_segment(vctx_t *v, const char *path, uint64_t base, uint64_t durable_limit, uint64_t hi,
                          bool last, int64_t *expect, sp_log_verify_stats_t *st, char *errstr, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(e));
	}
	uint64_t fsize = (uint64_t)sb.st_size;
	int rc = SPATE_OK;
	if (durable_limit != UINT64_MAX && durable_limit > fsize) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "%s: the file is %" PRIu64 " bytes but %" PRIu64 " were published durable",
		              path, fsize, durable_limit);
	}
	sp_log_scan_t sc;
	if (sp_log_scan_init(&sc, fd, 0, fsize)) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", path);
	}
	st->segments++;
	sp_log_scan_offsets(&sc, *expect > (int64_t)base ? (uint64_t)*expect : base, hi);
	for (;;) {
		if (sc.pos >= durable_limit)
			sc.hi = UINT64_MAX; /* not published yet: the durable file does not bound it */
		int64_t before = (int64_t)sc.passed;
		int r = sp_log_scan_next(&sc, true, true);
		if (r == SP_LOG_SCAN_END)
			break;
		if (r == SP_LOG_SCAN_IO) {
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: read at byte %" PRIu64 ": %s", path,
			            sc.bpos, strerror(sc.err_no));
			break;
		}
		if (r == SP_LOG_SCAN_TORN || r == SP_LOG_SCAN_BAD) {
			/* A bad or partial last batch past the durable length of the last segment,
			 * with nothing valid after it, is a torn tail the writer truncates. */
			uint64_t found;
			int vf = sp_log_scan_resync(&sc, sc.bpos, *expect, &found);
			if (last && vf == 0 && durable_limit != UINT64_MAX && sc.bpos >= durable_limit) {
				st->torn_tail += fsize - sc.bpos;
				break;
			}
			rc = bad_batch(path, &sc, r, before, vf, errstr, size);
			break;
		}
		int codec = sp_log_batch_codec(&sc.h), crc;
		uint64_t records = 0;
		const char *why = check_records(v, sc.data, sc.total, &sc.h, &records, &crc);
		if (why) {
			rc =
			    sp_err(errstr, size, crc == SPATE_ERR_NOMEM ? crc : SPATE_ERR_CORRUPT,
			           "%s: byte %" PRIu64 ": batch at offset %" PRId64 " has a valid CRC but %s",
			           path, sc.bpos, sc.h.base_offset, why);
			break;
		}
		st->batches++;
		st->bytes += sc.total;
		st->records += records;
		st->codec_batches[codec]++;
		st->codec_records[codec] += records;
		if (codec)
			st->decompressed += sp_log_dec_used(&v->dec);
		*expect = sp_log_batch_last(&sc.h) + 1;
	}
	sp_log_scan_free(&sc);
	close(fd);
	return rc;
}

static int verify_partition(vctx_t *v, const char *dir, int partition, sp_log_verify_stats_t *st,
                            char *errstr, size_t size)
{
	char pdir[SP_LOG_PATH_MAX], path[SP_LOG_PATH_MAX];
	sp_log_part_path(pdir, sizeof(pdir), dir, partition);
	sp_log_durable_t dur;
	int rc = sp_log_durable_read(pdir, &dur, errstr, size);
	bool have_dur = rc == SPATE_OK;
	if (rc && rc != SPATE_ERR_NOT_FOUND)
		return rc;
	sp_log_seglist_t segs = {0};
	if ((rc = sp_log_seglist(pdir, &segs, errstr, size)))
		return rc;
	int64_t expect = 0;
	for (size_t i = 0; i < segs.n && rc == SPATE_OK; i++) {
		uint64_t base = segs.base[i];
		uint64_t lim = UINT64_MAX, hi = i + 1 < segs.n ? segs.base[i + 1] : UINT64_MAX;
		if (have_dur) {
			lim = base < dur.seg ? UINT64_MAX : base == dur.seg ? dur.len : 0;
			if (base == dur.seg)
				hi = dur.next;
		}
		sp_log_seg_path(path, sizeof(path), pdir, base, "log");
		rc = verify_segment(v, path, base, lim, hi, i + 1 == segs.n, &expect, st, errstr, size);
	}
	/* The durable next offset may not pass the data: the end of the last batch, or the
	 * base of an empty last segment. */
	uint64_t end = expect > 0 ? (uint64_t)expect : 0;
	if (segs.n && segs.base[segs.n - 1] > end)
		end = segs.base[segs.n - 1];
	if (rc == SPATE_OK && have_dur && dur.next > end)
		rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
		            "%s/%s: says records up to offset %" PRIu64
		            " are durable, but the segments end at %" PRId64,
		            pdir, SP_LOG_DURABLE_NAME, dur.next, expect);
	sp_log_seglist_free(&segs);
	return rc;
}

int sp_log_verify_partition(const char *dir, int partition, sp_log_verify_stats_t *st, char *errstr,
                            size_t size)
{
	vctx_t v;
	sp_log_dec_init(&v.dec);
	int rc = verify_partition(&v, dir, partition, st, errstr, size);
	sp_log_dec_free(&v.dec);
	return rc;
}

/* ---- every partition, on threads ------------------------------------------------------- */

typedef struct vjob {
	const char *dir;
	int first, count;
	atomic_int next;
	sp_log_verify_part_t *out;
} vjob_t;

static void *verify_thread(void *arg)
{
	vjob_t *j = arg;
	vctx_t v;
	sp_log_dec_init(&v.dec);
	int i;
	while ((i = atomic_fetch_add(&j->next, 1)) < j->count) {
		sp_log_verify_part_t *o = &j->out[i];
		memset(&o->st, 0, sizeof(o->st));
		o->partition = j->first + i;
		o->rc = verify_partition(&v, j->dir, o->partition, &o->st, o->err, sizeof(o->err));
	}
	sp_log_dec_free(&v.dec);
	return NULL;
}

int sp_log_verify_log(const char *dir, int first, int count, int threads, sp_log_verify_part_t *out)
{
	vjob_t j = {dir, first, count, 0, out};
	if (threads > count)
		threads = count;
	if (threads < 1)
		threads = 1;
	pthread_t *t = calloc((size_t)threads, sizeof(*t));
	int started = 0;
	/* the calling thread is one of them; a thread that cannot start leaves its share to
	 * the others */
	for (int k = 1; t && k < threads; k++)
		if (pthread_create(&t[started], NULL, verify_thread, &j) == 0)
			started++;
	verify_thread(&j);
	for (int k = 0; k < started; k++)
		pthread_join(t[k], NULL);
	free(t);
	return started + 1;
}
