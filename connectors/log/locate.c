/* locate.c - where things are in a partition: the batch holding an offset, the first
 * record at a timestamp, the last record.
 *
 * These read files with pread through the scanner (segment.c) and keep no state; the
 * reader calls them when it seeks and when the source opens. They look only at what
 * the durable file `d` says is readable: segments before d->seg in full, segment d->seg
 * up to d->len.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sp_log_locate(const char *pdir, uint64_t seg_base, int fd, uint64_t limit, uint64_t hi, uint64_t target,
                  uint64_t *pos, uint64_t *lo, uint64_t *steps)
{
	uint64_t entry;
	uint64_t from = sp_log_index_lookup(pdir, seg_base, target, limit, &entry);
	sp_log_scan_t sc;
	if (sp_log_scan_init(&sc, fd, from, limit))
		return SPATE_ERR_NOMEM;
	sp_log_scan_offsets(&sc, entry, hi);
	*pos = limit;
	*lo = target;
	*steps = 0;
	/* the batch walked before (its header only): where it is and its lowest base */
	uint64_t prev_pos = UINT64_MAX, prev_lo = 0;
	for (bool first = true;; first = false) {
		uint64_t before = sc.passed;
		int s = sp_log_scan_next(&sc, false, false);
		(*steps)++;
		/* An index entry must point at a batch with the entry's offset; one that does
		 * not (or a lying index) sends the walk to the segment's start. */
		if (first && from && (s != SP_LOG_SCAN_BATCH || (uint64_t)sc.h.base_offset != entry)) {
			sp_log_scan_seek(&sc, 0);
			sp_log_scan_offsets(&sc, seg_base, hi);
			from = 0;
			prev_pos = UINT64_MAX;
			continue;
		}
		if (s == SP_LOG_SCAN_END) {
			*lo = sc.passed;
			break;
		}
		if (s != SP_LOG_SCAN_BATCH && !sc.bad_offsets && prev_pos != UINT64_MAX) {
			/* No header where the batch before said the next one starts: its length
			 * may be what is wrong, which only its CRC tells. Reading starts there. */
			*pos = prev_pos;
			*lo = prev_lo;
			break;
		}
		if (s != SP_LOG_SCAN_BATCH || (uint64_t)sp_log_batch_last(&sc.h) >= target) {
			*pos = sc.bpos; /* the batch holding target, or a bad one, which reading reports */
			*lo = before;
			break;
		}
		prev_pos = sc.bpos;
		prev_lo = before;
	}
	sp_log_scan_free(&sc);
	return SPATE_OK;
}

/* The bound of the offsets in segment j of segs under d: the next segment's base, or in
 * the segment being written the durable next offset; UINT64_MAX when unknown. */
static uint64_t seg_hi(const sp_log_durable_t *d, const sp_log_seglist_t *segs, size_t j)
{
	if (segs->base[j] == d->seg)
		return d->next;
	return j + 1 < segs->n ? segs->base[j + 1] : UINT64_MAX;
}

/* Open segment `base` of pdir and its readable length under d. */
static int open_seg(const char *pdir, const sp_log_durable_t *d, uint64_t base, int *fd, uint64_t *limit,
                    char *path, size_t psize, char *errstr, size_t size)
{
	sp_log_seg_path(path, psize, pdir, base, "log");
	struct stat st;
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &st) < 0) {
		int e = errno;
		if (*fd >= 0)
			close(*fd);
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(e));
	}
	*limit = base == d->seg ? d->len : (uint64_t)st.st_size;
	return SPATE_OK;
}

/* Read the batch at bpos whole (CRC checked) again, after its header was walked: the
 * offset checks are off for it (they passed it already). The scanner ends up after it. */
static bool reread(sp_log_scan_t *sc, uint64_t bpos)
{
	bool offsets = sc->offsets;
	sc->offsets = false;
	sp_log_scan_seek(sc, bpos);
	int s = sp_log_scan_next(sc, true, true);
	sc->offsets = offsets;
	return s == SP_LOG_SCAN_BATCH;
}

/* In the batch at bpos: the first record with timestamp >= ts. false when the batch
 * cannot be read whole (a CRC mismatch). */
static bool ts_in_batch(sp_log_scan_t *sc, uint64_t bpos, int64_t ts, uint64_t *offset, bool *found)
{
	if (!reread(sc, bpos))
		return false;
	sp_log_rec_iter_t it;
	sp_log_rec_t rec;
	const char *why;
	sp_log_rec_iter_init(&it, sc->data, sc->total, &sc->h);
	while (sp_log_rec_next(&it, &rec, &why) == 1)
		if (rec.timestamp >= ts) {
			*offset = (uint64_t)rec.offset;
			*found = true;
			break;
		}
	return true;
}

int sp_log_find_ts(const char *pdir, const sp_log_durable_t *d, const sp_log_seglist_t *segs, int64_t ts,
                   uint64_t *offset, char *errstr, size_t size)
{
	*offset = d->next;
	bool found = false;
	int rc = SPATE_OK;
	uint64_t passed = 0;
	for (size_t j = 0; rc == SPATE_OK && j < segs->n && !found && segs->base[j] <= d->seg; j++) {
		char path[SP_LOG_PATH_MAX];
		int fd;
		uint64_t limit;
		if ((rc = open_seg(pdir, d, segs->base[j], &fd, &limit, path, sizeof(path), errstr, size)))
			break;
		sp_log_scan_t sc;
		if (sp_log_scan_init(&sc, fd, 0, limit)) {
			close(fd);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		}
		if (passed < segs->base[j])
			passed = segs->base[j];
		sp_log_scan_offsets(&sc, passed, seg_hi(d, segs, j));
		/* batch headers first: maxTimestamp says whether a batch can hold it */
		int s = SP_LOG_SCAN_END;
		uint64_t before = sc.passed;
		while (!found && (s = sp_log_scan_next(&sc, false, false)) == SP_LOG_SCAN_BATCH) {
			if (!(sc.h.max_ts < ts || (sc.h.attributes & SP_LOG_ATTR_CONTROL))) {
				if (sp_log_batch_codec(&sc.h) ||
				    (sc.h.attributes & SP_LOG_ATTR_TS_LOG_APPEND)) {
					*offset =
					    (uint64_t)sc.h.base_offset; /* cannot look inside: its start */
					found = true;
				} else if (!ts_in_batch(&sc, sc.bpos, ts, offset, &found)) {
					s = SP_LOG_SCAN_BAD;
					break;
				}
			}
			before = sc.passed;
		}
		if (!found && s == SP_LOG_SCAN_IO)
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: read at byte %" PRIu64 ": %s", path,
			            sc.bpos, strerror(sc.err_no));
		else if (!found && s != SP_LOG_SCAN_END) {
			/* A bad batch: what it held is unknown, so start there and let reading
			 * report it (log.on.corruption), never past it. */
			*offset = before;
			found = true;
		}
		passed = sc.passed;
		sp_log_scan_free(&sc);
		close(fd);
	}
	return rc;
}

/* The last record offset of the batch at bpos (read whole): 1, 0 when it has none, -1 when
 * it cannot be read whole (a CRC mismatch). */
static int batch_last_record(sp_log_scan_t *sc, uint64_t bpos, uint64_t *last)
{
	if (!reread(sc, bpos))
		return -1;
	if (sp_log_batch_codec(&sc->h)) {
		*last = (uint64_t)sp_log_batch_last(&sc->h); /* cannot look inside */
		return 1;
	}
	sp_log_rec_iter_t it;
	sp_log_rec_t rec;
	const char *why;
	int any = 0;
	sp_log_rec_iter_init(&it, sc->data, sc->total, &sc->h);
	while (sp_log_rec_next(&it, &rec, &why) == 1) {
		*last = (uint64_t)rec.offset;
		any = 1;
	}
	return any;
}

/* The last data record of the segment scanned by sc from `from` (whose batch should have
 * base offset `entry`) on: 1 and *last, 0 when there is none, -1 when a batch on the way
 * is bad (or the index entry does not match). */
static int seg_last_record(sp_log_scan_t *sc, uint64_t from, uint64_t entry, uint64_t hi, uint64_t *last)
{
	uint64_t cand[2] = {UINT64_MAX, UINT64_MAX}; /* the last two data batches */
	sp_log_scan_seek(sc, from);
	sp_log_scan_offsets(sc, entry, hi);
	int s;
	while ((s = sp_log_scan_next(sc, false, false)) == SP_LOG_SCAN_BATCH) {
		if (sc->bpos == from && from && (uint64_t)sc->h.base_offset != entry)
			return -1;
		if (!(sc->h.attributes & SP_LOG_ATTR_CONTROL) && sc->h.count > 0) {
			cand[0] = cand[1];
			cand[1] = sc->bpos;
		}
	}
	if (s != SP_LOG_SCAN_END)
		return -1;
	for (int k = 1; k >= 0; k--) {
		if (cand[k] == UINT64_MAX)
			continue;
		int r = batch_last_record(sc, cand[k], last);
		if (r != 0)
			return r;
	}
	return 0;
}

int sp_log_last_record(const char *pdir, const sp_log_durable_t *d, const sp_log_seglist_t *segs, bool *has,
                       uint64_t *last, char *errstr, size_t size)
{
	*has = false;
	int rc = SPATE_OK;
	for (size_t j = segs->n; rc == SPATE_OK && j-- > 0 && !*has;) {
		uint64_t base = segs->base[j];
		if (base > d->seg)
			continue;
		char path[SP_LOG_PATH_MAX];
		int fd;
		uint64_t limit;
		if ((rc = open_seg(pdir, d, base, &fd, &limit, path, sizeof(path), errstr, size)))
			break;
		uint64_t hi = seg_hi(d, segs, j), entry;
		/* From the last index entry, then (when only control batches follow it, or the
		 * index led astray) from 0. */
		uint64_t from = sp_log_index_lookup(pdir, base, UINT64_MAX, limit, &entry);
		sp_log_scan_t sc;
		if (sp_log_scan_init(&sc, fd, from, limit)) {
			close(fd);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
		}
		int r = seg_last_record(&sc, from, entry, hi, last);
		if (r != 1 && from)
			r = seg_last_record(&sc, 0, base, hi, last);
		if (r < 0) {
			/* A bad batch: the end cannot be known from the batches, so it is the bound
			 * of the segment's offsets, which reading reaches (it reports the bad batch
			 * or skips it, and stops at the end noted in bytes). Never an end before the
			 * bad batch (that would end a run without meeting it) nor one that a bad
			 * baseOffset made up. */
			uint64_t bound = hi != UINT64_MAX ? hi : d->next;
			if (bound > base) {
				*last = bound - 1;
				*has = true;
			}
		} else if (r == 1) {
			*has = true;
		}
		sp_log_scan_free(&sc);
		close(fd);
	}
	return rc;
}
