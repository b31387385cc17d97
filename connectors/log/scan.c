/* scan.c - walking a segment's batches: the buffered scanner, the resync search, verify.
 *
 * The scanner is a buffered, forward-only reader of the batches of one segment file
 * (pread), used by the writer's recovery, `spate log verify`, and the reader's seek and
 * corruption handling; it checks each batch's header, its CRC when asked, and its offsets
 * against the batch before it and the bound of the segment. The resync search finds the
 * next valid batch after a bad one (log.on.corruption=skip). Verify walks every batch of
 * a partition with the scanner (header, CRC, record framing, offsets) and checks that
 * the durable file claims no more than the segments hold. Nothing here writes a file.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The scanner's buffer: one pread fills this much (grown for a bigger batch). */
#define SCAN_BUF_BYTES ((size_t)1 << 20)

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- the scanner ---------------------------------------------------------------------- */

int sp_log_scan_init(sp_log_scan_t *s, int fd, uint64_t pos, uint64_t limit)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->pos = pos;
	s->limit = limit;
	s->cap = SCAN_BUF_BYTES;
	s->buf = malloc(s->cap);
	return s->buf ? SPATE_OK : SPATE_ERR_NOMEM;
}

void sp_log_scan_free(sp_log_scan_t *s)
{
	free(s->buf);
	s->buf = NULL;
}

void sp_log_scan_seek(sp_log_scan_t *s, uint64_t pos)
{
	s->pos = pos;
}

void sp_log_scan_offsets(sp_log_scan_t *s, uint64_t passed, uint64_t hi)
{
	s->offsets = true;
	s->passed = passed;
	s->hi = hi;
}

/* Make [pos, pos+need) available in the buffer as far as the limit and the file allow.
 * Returns the bytes available from pos (maybe fewer than need), or -1 on a read error. */
static ssize_t scan_ensure(sp_log_scan_t *s, uint64_t pos, size_t need)
{
	if (pos >= s->limit)
		return 0;
	if (need > s->limit - pos)
		need = (size_t)(s->limit - pos);
	if (pos >= s->buf_pos && pos + need <= s->buf_pos + s->buf_len)
		return (ssize_t)(s->buf_pos + s->buf_len - pos);
	if (need > s->cap) {
		uint8_t *nb = realloc(s->buf, need);
		if (!nb) {
			s->err_no = ENOMEM;
			return -1;
		}
		s->buf = nb;
		s->cap = need;
	}
	size_t want = s->cap;
	if (want > s->limit - pos)
		want = (size_t)(s->limit - pos);
	size_t got = 0;
	while (got < want) {
		ssize_t n = pread(s->fd, s->buf + got, want - got, (off_t)(pos + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->err_no = errno;
			s->buf_len = 0;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	s->buf_pos = pos;
	s->buf_len = got;
	return (ssize_t)got;
}

/* The offset checks of the batch in s->h (sp_log_scan_offsets): NULL or why. A batch with
 * a gap before it is judged with the next batch's header; reading that moves the buffer. */
static const char *scan_check_offsets(sp_log_scan_t *s, int *io)
{
	sp_log_batch_hdr_t nh, *nx = NULL;
	uint64_t np = s->pos + s->total;
	if (sp_log_batch_gap(&s->h, s->passed) && np < s->limit) {
		size_t nt;
		ssize_t avail = scan_ensure(s, np, SP_LOG_BATCH_HEADER);
		if (avail < 0) {
			*io = 1;
			return NULL;
		}
		if (sp_log_batch_header(s->buf + (np - s->buf_pos), (size_t)avail, &nh, &nt, NULL) ==
		    SP_LOG_HDR_OK)
			nx = &nh;
	}
	return sp_log_batch_offsets_bad(&s->h, s->passed, s->hi, nx);
}

int sp_log_scan_next(sp_log_scan_t *s, bool whole, bool crc)
{
	s->bpos = s->pos;
	s->data = NULL;
	s->why = NULL;
	s->bad_offsets = false;
	if (s->pos >= s->limit)
		return SP_LOG_SCAN_END;
	ssize_t avail = scan_ensure(s, s->pos, SP_LOG_BATCH_HEADER);
	if (avail < 0)
		return SP_LOG_SCAN_IO;
	const uint8_t *p = s->buf + (s->pos - s->buf_pos);
	int r = sp_log_batch_header(p, (size_t)avail, &s->h, &s->total, &s->why);
	if (r == SP_LOG_HDR_SHORT) {
		s->why = "the bytes end inside a batch header";
		return SP_LOG_SCAN_TORN;
	}
	if (r == SP_LOG_HDR_BAD)
		return SP_LOG_SCAN_BAD;
	if (s->total > s->limit - s->pos) {
		s->why = "the bytes end inside a batch";
		return SP_LOG_SCAN_TORN;
	}
	/* checked first (the look at the next header moves the buffer), reported after a
	 * CRC mismatch, which says more */
	const char *owhy = NULL;
	if (s->offsets) {
		int io = 0;
		owhy = scan_check_offsets(s, &io);
		if (io)
			return SP_LOG_SCAN_IO;
	}
	if (whole) {
		avail = scan_ensure(s, s->pos, s->total);
		if (avail < 0)
			return SP_LOG_SCAN_IO;
		if ((size_t)avail < s->total) {
			s->why = "the file ends inside a batch";
			return SP_LOG_SCAN_TORN;
		}
		s->data = s->buf + (s->pos - s->buf_pos);
		if (crc && !sp_log_batch_crc_ok(s->data, s->total, &s->crc_computed)) {
			s->why = "CRC32C mismatch";
			return SP_LOG_SCAN_BAD;
		}
	}
	if (owhy) {
		s->why = owhy;
		s->bad_offsets = true;
		return SP_LOG_SCAN_BAD;
	}
	s->pos += s->total;
	if (s->offsets)
		s->passed = (uint64_t)sp_log_batch_last(&s->h) + 1;
	return SP_LOG_SCAN_BATCH;
}

/* Is there a valid batch (sane header, CRC match, base >= min_offset, offsets below hi
 * when the checks are on) at q? 1, 0, or -1. */
static int valid_at(sp_log_scan_t *s, uint64_t q, int64_t min_offset)
{
	ssize_t avail = scan_ensure(s, q, SP_LOG_BATCH_HEADER);
	if (avail < 0)
		return -1;
	if (avail < SP_LOG_BATCH_HEADER)
		return 0;
	const uint8_t *p = s->buf + (q - s->buf_pos);
	sp_log_batch_hdr_t h;
	size_t total;
	if (p[16] != 2 || sp_log_batch_header(p, (size_t)avail, &h, &total, NULL) != SP_LOG_HDR_OK ||
	    h.base_offset < min_offset || total > s->limit - q ||
	    (s->offsets && (uint64_t)sp_log_batch_last(&h) >= s->hi))
		return 0;
	avail = scan_ensure(s, q, total);
	if (avail < 0)
		return -1;
	if ((size_t)avail < total)
		return 0;
	return sp_log_batch_crc_ok(s->buf + (q - s->buf_pos), total, NULL) ? 1 : 0;
}

int sp_log_scan_resync(sp_log_scan_t *s, uint64_t from, int64_t min_offset, uint64_t *found)
{
	/* Where the bad batch's own length says the next one starts is the likely place
	 * (a flipped byte in a batch's body leaves its length intact). */
	ssize_t avail = scan_ensure(s, from, SP_LOG_LOG_OVERHEAD);
	if (avail < 0)
		return SP_LOG_SCAN_IO;
	if (avail >= SP_LOG_LOG_OVERHEAD) {
		const uint8_t *p = s->buf + (from - s->buf_pos);
		int32_t len = (int32_t)be32(p + 8);
		if (len > 0 && (uint64_t)len + SP_LOG_LOG_OVERHEAD < s->limit - from) {
			uint64_t q = from + SP_LOG_LOG_OVERHEAD + (uint64_t)len;
			int v = valid_at(s, q, min_offset);
			if (v < 0)
				return SP_LOG_SCAN_IO;
			if (v) {
				*found = q;
				return 1;
			}
		}
	}
	/* Otherwise every byte position after it, cheapest test first (the magic byte). */
	for (uint64_t q = from + 1; q + SP_LOG_BATCH_HEADER <= s->limit; q++) {
		avail = scan_ensure(s, q, SP_LOG_BATCH_HEADER);
		if (avail < 0)
			return SP_LOG_SCAN_IO;
		if (avail < SP_LOG_BATCH_HEADER)
			break;
		if (s->buf[q - s->buf_pos + 16] != 2)
			continue;
		int v = valid_at(s, q, min_offset);
		if (v < 0)
			return SP_LOG_SCAN_IO;
		if (v) {
			*found = q;
			return 1;
		}
	}
	return 0;
}

/* ---- verify ------------------------------------------------------------------------- */

/* Check the record framing of a complete uncompressed batch. NULL or what is wrong. */
static const char *check_records(const uint8_t *p, size_t total, const sp_log_batch_hdr_t *h,
                                 uint64_t *records)
{
	sp_log_rec_iter_t it;
	sp_log_rec_t r;
	const char *why = NULL;
	int64_t prev = -1;
	sp_log_rec_iter_init(&it, p, total, h);
	int k;
	while ((k = sp_log_rec_next(&it, &r, &why)) == 1) {
		if (sp_log_rec_check_hdrs(&r) < 0)
			return "bad record headers";
		if (r.offset <= prev || r.offset > sp_log_batch_last(h))
			return "record offsets out of order or past lastOffsetDelta";
		prev = r.offset;
		(*records)++;
	}
	return k < 0 ? why : NULL;
}

/* Verify one segment file. hi: the bound of its offsets within the durable bytes (the
 * next segment's base, or the durable next offset); batches past durable_limit are not
 * published yet and may go past it. */
static int verify_segment(const char *path, uint64_t base, uint64_t durable_limit, uint64_t hi, bool last,
                          int64_t *expect, sp_log_verify_stats_t *st, char *errstr, size_t size)
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
			int v = sp_log_scan_resync(&sc, sc.bpos, *expect, &found);
			if (last && v == 0 && durable_limit != UINT64_MAX && sc.bpos >= durable_limit) {
				st->torn_tail += fsize - sc.bpos;
				break;
			}
			if (r == SP_LOG_SCAN_BAD && sc.why && !strcmp(sc.why, "CRC32C mismatch"))
				rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
				            "%s: byte %" PRIu64 ": bad batch (base offset %" PRId64
				            "): CRC32C mismatch (stored 0x%08x, computed 0x%08x)",
				            path, sc.bpos, sc.h.base_offset, sc.h.crc, sc.crc_computed);
			else if (r == SP_LOG_SCAN_BAD && sc.bad_offsets && sc.h.base_offset < before)
				rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
				            "%s: byte %" PRIu64 ": batch base offset %" PRId64
				            " is before %" PRId64,
				            path, sc.bpos, sc.h.base_offset, before);
			else if (r == SP_LOG_SCAN_BAD && sc.bad_offsets)
				rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
				            "%s: byte %" PRIu64 ": bad batch: offsets %" PRId64 "..%" PRId64
				            " (the next offset is %" PRId64 "): %s%s",
				            path, sc.bpos, sc.h.base_offset, sp_log_batch_last(&sc.h), before,
				            sc.why, v == 1 ? " (valid batches follow)" : "");
			else
				rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
				            "%s: byte %" PRIu64 ": bad batch: %s%s", path, sc.bpos,
				            sc.why ? sc.why : "?", v == 1 ? " (valid batches follow)" : "");
			break;
		}
		st->batches++;
		st->bytes += sc.total;
		if (sp_log_batch_codec(&sc.h)) {
			st->compressed++;
		} else {
			const char *why = check_records(sc.data, sc.total, &sc.h, &st->records);
			if (why) {
				rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
				            "%s: byte %" PRIu64 ": batch at offset %" PRId64
				            " has a valid CRC but %s",
				            path, sc.bpos, sc.h.base_offset, why);
				break;
			}
		}
		*expect = sp_log_batch_last(&sc.h) + 1;
	}
	sp_log_scan_free(&sc);
	close(fd);
	return rc;
}

int sp_log_verify_partition(const char *dir, int partition, sp_log_verify_stats_t *st, char *errstr,
                            size_t size)
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
		rc = verify_segment(path, base, lim, hi, i + 1 == segs.n, &expect, st, errstr, size);
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
