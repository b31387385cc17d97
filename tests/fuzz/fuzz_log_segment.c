/* fuzz_log_segment.c - a partition's segment and its sparse index, as files.
 *
 * Input: flags u8 | target u8 | next u8 | index length u8 (in 8-byte entries) | the
 * index's bytes | the segment's bytes. The harness writes them as
 * 0/00000000000000000000.log and .index in its scratch directory (the segment's batches
 * with their CRCs recomputed when flags & FIX_CRC, as fuzz_log_batch does), takes
 * "seg=0 len=L next=N" as what the durable file says (L: the whole segment, or half of it
 * with HALF_DURABLE; N: the next byte), and runs what reads them: sp_log_index_lookup,
 * the reader's seek (sp_log_locate), with TS_AND_LAST sp_log_find_ts and
 * sp_log_last_record (locate.c), and the scanner (segment.c) the way `spate log verify`
 * and the writer's recovery walk a segment: every batch whole with its CRC and the offset
 * checks, a resync after a bad one. The oracle: an index hit is a position inside the
 * readable bytes with an offset at or below the target; the batch located, and every
 * batch the scanner returns, lie inside them, one after the other; a resync finds a batch
 * after the bad one; the timestamp's offset and the last record stay below the durable
 * next offset. (The writer's
 * recovery and verify themselves open, lock and fsync files: too slow to fuzz here; the
 * scanner they use is what runs.)
 */
#include "connectors/log/log.h"
#include "fuzz.h"

#include <stdbool.h>

enum { FIX_CRC = 1, HALF_DURABLE = 2, WITH_OFFSETS = 4, TS_AND_LAST = 8 };
#define PARAM_BYTES 4

static void fix_crcs(uint8_t *buf, size_t len)
{
	size_t off = 0, total;
	sp_log_batch_hdr_t h;
	while (off < len && sp_log_batch_header(buf + off, len - off, &h, &total, NULL) == SP_LOG_HDR_OK &&
	       total <= len - off) {
		uint32_t c = sp_crc32c(buf + off + SP_LOG_CRC_START, total - SP_LOG_CRC_START);
		buf[off + 17] = (uint8_t)(c >> 24);
		buf[off + 18] = (uint8_t)(c >> 16);
		buf[off + 19] = (uint8_t)(c >> 8);
		buf[off + 20] = (uint8_t)c;
		off += total;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < PARAM_BYTES)
		return 0;
	uint8_t flags = data[0];
	uint64_t target = data[1], next = data[2];
	size_t ilen = (size_t)data[3] * SP_LOG_INDEX_ENTRY;
	data += PARAM_BYTES;
	size -= PARAM_BYTES;
	if (ilen > size)
		ilen = size;
	size_t slen = size - ilen;
	uint8_t *seg = malloc(slen ? slen : 1);
	FUZZ_CHECK(seg);
	memcpy(seg, data + ilen, slen);
	if (flags & FIX_CRC)
		fix_crcs(seg, slen);

	char pdir[600], path[700], err[512];
	snprintf(pdir, sizeof(pdir), "%s/0", fuzz_dir());
	mkdir(pdir, 0700);
	sp_log_seg_path(path, sizeof(path), pdir, 0, "log");
	fuzz_write(path, seg, slen);
	sp_log_seg_path(path, sizeof(path), pdir, 0, "index");
	fuzz_write(path, data, ilen);
	sp_log_durable_t d = {0, flags & HALF_DURABLE ? slen / 2 : slen, next};

	uint64_t entry;
	uint64_t at = sp_log_index_lookup(pdir, 0, target, d.len, &entry);
	FUZZ_CHECK(at == 0 ? entry == 0 : at < d.len && entry <= target);

	sp_log_seg_path(path, sizeof(path), pdir, 0, "log");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	uint64_t pos, lo, steps;
	FUZZ_CHECK(sp_log_locate(pdir, 0, fd, d.len, d.next, target, &pos, &lo, &steps) == SPATE_OK);
	FUZZ_CHECK(pos <= d.len);

	if (flags & TS_AND_LAST) { /* they open the files again: a flag, to keep the rest fast */
		sp_log_seglist_t segs = {.base = (uint64_t[]){0}, .n = 1, .cap = 1};
		uint64_t off, last;
		bool has;
		FUZZ_CHECK(sp_log_find_ts(pdir, &d, &segs, (int64_t)target, &off, err, sizeof(err)) ==
		           SPATE_OK);
		FUZZ_CHECK(off <= d.next);
		FUZZ_CHECK(sp_log_last_record(pdir, &d, &segs, &has, &last, err, sizeof(err)) == SPATE_OK);
		FUZZ_CHECK(!has || last < d.next);
	}

	/* the walk of verify and recovery */
	sp_log_scan_t sc;
	FUZZ_CHECK(sp_log_scan_init(&sc, fd, 0, slen) == SPATE_OK);
	if (flags & WITH_OFFSETS)
		sp_log_scan_offsets(&sc, 0, d.next);
	uint64_t end = 0;
	for (int s; (s = sp_log_scan_next(&sc, true, true)) != SP_LOG_SCAN_END;) {
		FUZZ_CHECK(s != SP_LOG_SCAN_IO);
		FUZZ_CHECK(sc.bpos == end && sc.bpos < slen);
		if (s == SP_LOG_SCAN_BATCH) {
			FUZZ_CHECK(sc.total <= slen - sc.bpos && sc.data && sc.pos == sc.bpos + sc.total);
			end = sc.pos;
			continue;
		}
		FUZZ_CHECK(sc.why);
		uint64_t found;
		int v = sp_log_scan_resync(&sc, sc.bpos, 0, &found);
		FUZZ_CHECK(v == 0 || (v == 1 && found > sc.bpos && found < slen));
		if (v != 1)
			break;
		sp_log_scan_seek(&sc, found);
		if (flags & WITH_OFFSETS)
			sp_log_scan_offsets(&sc, 0, d.next);
		end = found;
	}
	sp_log_scan_free(&sc);
	close(fd);
	free(seg);
	return 0;
}
