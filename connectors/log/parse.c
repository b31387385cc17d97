/* parse.c - the complete batches of a read buffer, into record descriptors.
 *
 * Two walks over the bytes the reader read: sp_log_parse_scan validates every complete
 * batch (header, CRC32C, record framing) and counts the records and headers to deliver,
 * so the chunk is allocated once at its exact size; sp_log_parse_fill then writes the
 * descriptors, pointing into the bytes (no copy, no allocation per record).
 * The fast scan (ps->fast) takes a batch that lies wholly in range by its header's record
 * count and leaves the record framing to the fill, so records are decoded once; a record
 * that fails there, or has headers, sends the caller back to the exact two-walk path. Control
 * batches (transaction markers) are offsets, not records: skipped. Records before
 * `from` (a seek into a batch) and after `end` (stop.at.end) are skipped too.
 * Every batch's baseOffset, which its CRC does not cover, is checked against the batch
 * before it, the next one and `hi` (sp_log_batch_offsets_bad): a wrong one is corruption,
 * never records delivered at the wrong positions or dropped as "before `from`". So is a
 * record whose offset does not rise inside its batch's offsets (sp_log_rec_next refuses
 * it, for every reader).
 *
 * A compressed batch's records are decompressed by the scan into ps->dec, the decode arena
 * of the read buffer (codec.c, bufpool.c), and its descriptors point there; the fill (and a
 * second scan) finds them in the arena without decompressing again. Damaged compressed
 * data, or records past SP_LOG_MAX_DECOMPRESSED_BYTES, is corruption like a CRC mismatch.
 * Once the arena holds SP_LOG_DEC_PARSE_BYTES the scan stops before the next compressed
 * batch (as at the end of the bytes), so one chunk's decompressed bytes stay bounded.
 */
#include "log.h"

#include <string.h>

void sp_log_parse_scan(const uint8_t *data, size_t len, sp_log_parse_t *ps)
{
	size_t off = 0;
	uint64_t nd = ps->from;
	ps->used = ps->need = 0;
	ps->nrec = ps->nhdr = 0;
	ps->stop = SP_LOG_PARSE_MORE;
	ps->why = NULL;
	ps->err = SPATE_OK;
	ps->bad_offsets = false;
	ps->edge = false;
	if (ps->dec)
		sp_log_dec_rewind(ps->dec);
	while (off < len && ps->stop == SP_LOG_PARSE_MORE) {
		size_t total;
		int hr = sp_log_batch_header(data + off, len - off, &ps->h, &total, &ps->why);
		if (hr == SP_LOG_HDR_SHORT) {
			ps->need = len - off + 1; /* more than there is */
			break;
		}
		if (hr == SP_LOG_HDR_BAD) {
			ps->stop = SP_LOG_PARSE_CORRUPT;
			break;
		}
		if (total > len - off) {
			ps->need = total;
			break;
		}
		if (!ps->headers_only && !sp_log_batch_crc_ok(data + off, total, NULL)) {
			ps->why = "CRC32C mismatch";
			ps->stop = SP_LOG_PARSE_CORRUPT;
			break;
		}
		/* baseOffset is outside the CRC: check it against its neighbours. A gap after the
		 * previous batch is judged by the next batch's header, read first when the
		 * segment has one. */
		sp_log_batch_hdr_t nh, *nx = NULL;
		if (sp_log_batch_gap(&ps->h, ps->passed)) {
			size_t after = len - off - total, nt;
			if (after >= SP_LOG_BATCH_HEADER) {
				if (sp_log_batch_header(data + off + total, after, &nh, &nt, NULL) ==
				    SP_LOG_HDR_OK)
					nx = &nh;
			} else if (after + ps->more >= SP_LOG_BATCH_HEADER) {
				ps->need = total + SP_LOG_BATCH_HEADER;
				break;
			}
		}
		if ((ps->why = sp_log_batch_offsets_bad(&ps->h, ps->passed, ps->hi, nx))) {
			ps->bad_offsets = true;
			ps->stop = SP_LOG_PARSE_CORRUPT;
			break;
		}
		const uint8_t *recs = data + off + SP_LOG_BATCH_HEADER;
		size_t rlen = total - SP_LOG_BATCH_HEADER;
		uint64_t last = (uint64_t)sp_log_batch_last(&ps->h);
		bool whole =
		    (uint64_t)ps->h.base_offset >= nd && (!ps->has_end || last <= ps->end) && ps->h.count > 0;
		if (ps->headers_only && !(ps->h.attributes & SP_LOG_ATTR_CONTROL) && !whole) {
			/* a batch not delivered whole: the caller parses this read exactly */
			ps->edge = true;
			break;
		}
		if (sp_log_batch_codec(&ps->h) && !(ps->h.attributes & SP_LOG_ATTR_CONTROL) &&
		    !ps->headers_only) {
			if (!ps->dec) {
				ps->err = SPATE_ERR_UNSUPPORTED;
				ps->why = "a compressed batch, and this parse decompresses nothing (no "
				          "decode arena)";
				ps->stop = SP_LOG_PARSE_UNSUPPORTED;
				break;
			}
			/* enough decompressed for one chunk: the next one starts here */
			if (off > 0 && !sp_log_dec_cached(ps->dec, data + off) &&
			    sp_log_dec_used(ps->dec) >= SP_LOG_DEC_PARSE_BYTES)
				break;
			int rc = sp_log_dec_batch(ps->dec, data + off, total, &ps->h, &recs, &rlen,
			                          ps->why_buf, sizeof(ps->why_buf));
			if (rc) {
				ps->err = rc;
				ps->why = ps->why_buf;
				ps->stop =
				    rc == SPATE_ERR_CORRUPT ? SP_LOG_PARSE_CORRUPT : SP_LOG_PARSE_UNSUPPORTED;
				break;
			}
		}
		if (!(ps->h.attributes & SP_LOG_ATTR_CONTROL) && (ps->fast || ps->headers_only) && whole) {
			ps->nrec += (uint32_t)ps->h.count;
			nd = last + 1;
		} else if (!(ps->h.attributes & SP_LOG_ATTR_CONTROL)) {
			sp_log_rec_iter_t it;
			sp_log_rec_t rec;
			int k;
			/* a batch counts whole or not at all: the fill takes only batches before
			 * `used`, so a bad record takes back what its batch added */
			uint32_t nrec0 = ps->nrec, nhdr0 = ps->nhdr;
			uint64_t nd0 = nd;
			sp_log_rec_iter_init_recs(&it, recs, rlen, &ps->h);
			while ((k = sp_log_rec_next(&it, &rec, &ps->why)) == 1) {
				if (sp_log_rec_check_hdrs(&rec) < 0) {
					k = -1;
					ps->why = "bad record headers";
					break;
				}
				if ((uint64_t)rec.offset < nd ||
				    (ps->has_end && (uint64_t)rec.offset > ps->end))
					continue;
				ps->nrec++;
				ps->nhdr += (uint32_t)rec.hdr_cnt;
				nd = (uint64_t)rec.offset + 1;
			}
			if (k < 0) {
				ps->nrec = nrec0;
				ps->nhdr = nhdr0;
				nd = nd0;
				ps->stop = SP_LOG_PARSE_CORRUPT;
				break;
			}
		}
		off += total;
		ps->passed = (uint64_t)sp_log_batch_last(&ps->h) + 1;
		if (ps->has_end && ps->passed > ps->end)
			ps->stop = SP_LOG_PARSE_END;
	}
	ps->used = off;
	ps->next = nd;
}

int sp_log_parse_fill(const uint8_t *data, const sp_log_parse_t *ps, sp_chunk_t *c)
{
	uint32_t k = 0, hk = 0;
	uint64_t nd = ps->from;
	if (ps->dec)
		sp_log_dec_rewind(ps->dec);
	for (size_t off = 0; off < ps->used;) {
		size_t total;
		sp_log_batch_hdr_t b;
		sp_log_batch_header(data + off, ps->used - off, &b, &total, NULL);
		if (!(b.attributes & SP_LOG_ATTR_CONTROL)) {
			sp_log_rec_iter_t it;
			sp_log_rec_t rec;
			const char *why;
			bool log_append = b.attributes & SP_LOG_ATTR_TS_LOG_APPEND;
			const uint8_t *recs = data + off + SP_LOG_BATCH_HEADER;
			size_t rlen = total - SP_LOG_BATCH_HEADER;
			char wb[8];
			/* the scan decompressed it: the arena hands back where */
			if (sp_log_batch_codec(&b) &&
			    (!ps->dec ||
			     sp_log_dec_batch(ps->dec, data + off, total, &b, &recs, &rlen, wb, sizeof(wb))))
				return -1;
			sp_log_rec_iter_init_recs(&it, recs, rlen, &b);
			int got;
			while ((got = sp_log_rec_next(&it, &rec, &why)) == 1) {
				if ((uint64_t)rec.offset < nd ||
				    (ps->has_end && (uint64_t)rec.offset > ps->end))
					continue;
				/* bytes after the last header (or instead of none) are bad framing too */
				if (k == c->n ||
				    (rec.hdrs != rec.hdrs_end && (hk + (uint32_t)rec.hdr_cnt > c->hdr_cap ||
				                                  sp_log_rec_check_hdrs(&rec) < 0)))
					return -1;
				spate_record_t *d = &c->recs[k++];
				d->version = SPATE_RECORD_VERSION;
				d->partition = &c->part->pub;
				d->flags = 0;
				d->key = rec.key;
				d->key_len = rec.key_len > 0 ? (size_t)rec.key_len : 0;
				d->value = rec.value;
				d->value_len = rec.value_len > 0 ? (size_t)rec.value_len : 0;
				/* LogAppendTime: the broker's time, the batch's maxTimestamp */
				d->timestamp_ms = log_append ? b.max_ts : rec.timestamp;
				if (ps->redrive_ms)
					d->timestamp_ms =
					    ps->redrive_ms; /* its age counts from the redrive */
				d->position = sp_pos((uint64_t)rec.offset);
				d->header_cnt = (size_t)rec.hdr_cnt;
				d->headers = rec.hdr_cnt ? &c->hdrs[hk] : NULL;
				const uint8_t *hp = rec.hdrs;
				for (int32_t i = 0; i < rec.hdr_cnt; i++) {
					sp_log_hdr_next(&hp, rec.hdrs_end, &c->hdrs[hk]);
					/* a redriven record goes with its original headers only */
					if (ps->redrive_ms && c->hdrs[hk].key_len > 6 &&
					    !memcmp(c->hdrs[hk].key, "spate.", 6)) {
						d->header_cnt--;
						continue;
					}
					hk++;
				}
				if (!d->header_cnt)
					d->headers = NULL;
				nd = (uint64_t)rec.offset + 1;
			}
			if (got < 0)
				return -1;
		}
		off += total;
	}
	return k == c->n ? 0 : -1;
}
