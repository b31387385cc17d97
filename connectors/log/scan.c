/* scan.c - walking a segment's batches: the buffered scanner and the resync search.
 *
 * The scanner is a buffered, forward-only reader of the batches of one segment file
 * (pread), used by the writer's recovery, `spate log verify`, and the reader's seek and
 * corruption handling; it checks each batch's header, its CRC when asked, and its offsets
 * against the batch before it and the bound of the segment. The resync search finds the
 * next valid batch after a bad one (log.on.corruption=skip). `spate log verify` (verify.c)
 * walks every batch with the scanner. Nothing here writes a file.
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

/* The scanner's buffer: one pread fills this much (grown for a bigger batch). The fuzz
 * build makes it small (-DSP_LOG_SCAN_BUF_BYTES=4096): refills and growth run often,
 * and a sanitized 1 MiB allocation per scan costs more than the scan. */
#ifdef SP_LOG_SCAN_BUF_BYTES
#define SCAN_BUF_BYTES ((size_t)SP_LOG_SCAN_BUF_BYTES)
#else
#define SCAN_BUF_BYTES ((size_t)1 << 20)
#endif

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
