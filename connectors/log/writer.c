/* writer.c - the one writer of a log partition (the producer over all of them: producer.c).
 *
 * A writer holds an exclusive flock on its partition's folder for as long as it is
 * open, so a second writer (in this process or another) gets SPATE_ERR_BUSY. Opening
 * repairs the last segment: complete, valid batches are kept; a torn tail (a partial
 * or bad last region with nothing valid after it) is truncated; a bad batch with valid
 * data after it is corruption, logged with file and byte offset and never truncated
 * (readers report it). Then the segment's index is rebuilt and, when what the partition
 * now holds differs from what was published, it is made durable (fdatasync of the
 * segments from the published one on, the index, an fsync of the folder) before the
 * durable length is published: a writer killed with batches in the page cache, or a
 * segment copied in, leaves bytes no one fsync'd.
 *
 * Records are encoded into an in-memory RecordBatch; a full batch (SP_LOG_BATCH_BYTES of
 * records) is compressed with the `compression` codec, when there is one (codec.c: per
 * batch, only its records, the CRC over the compressed bytes, as Kafka's producers do),
 * and written to the segment with one pwrite. A flush writes the open batch, fsyncs the
 * segment and publishes the durable length (the `durable` file, replaced by rename),
 * which is all readers ever read up to. A segment rolls before a batch would take it
 * past segment.bytes: the old one is fsync'd in full first, so a segment before the
 * published one is always complete.
 *
 * Not thread-safe: one thread at a time per writer (the sink adds a mutex).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct sp_log_writer {
	char dir[SP_LOG_PATH_MAX];
	char pdir[SP_LOG_PATH_MAX];
	int partition;
	sp_log_wopts_t o;
	int dirfd; /* the partition folder; holds the flock */
	uint64_t seg_base;
	int seg_fd, idx_fd;
	uint64_t seg_len;     /* bytes written to the segment */
	uint64_t since_index; /* segment bytes since the last index entry */
	uint8_t *idx_pend;    /* index entries not yet written */
	size_t idx_pend_len, idx_pend_cap;
	uint64_t next_offset; /* the next record's offset */
	sp_log_enc_t enc;     /* the open batch (enc.count records) */
	sp_log_comp_t *comp;  /* the compressor of finished batches */
	sp_log_durable_t pub; /* last published */
	bool have_pub;
	int64_t unflushed;          /* records put since the last flush */
	int64_t first_unflushed_ms; /* monotonic time of the first of them */
	bool dirty;                 /* bytes written since the last fsync */
	uint64_t truncated;
	int broken; /* a write failed: every later call returns this */
};

void sp_log_wopts_default(sp_log_wopts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->segment_bytes = (uint64_t)128 << 20;
	o->flush_ms = 100;
	o->flush_records = 10000;
	o->batch_bytes = SP_LOG_BATCH_BYTES;
	o->codec = SP_LOG_CODEC_NONE;
	o->level = -1;
}

void sp_log_wopts_from_conf(sp_log_wopts_t *o, const spate_conf_t *conf)
{
	sp_log_wopts_default(o);
	o->segment_bytes = (uint64_t)sp_conf_int(conf, "segment.bytes");
	o->flush_ms = sp_conf_int(conf, "flush.ms");
	o->flush_records = sp_conf_int(conf, "flush.records");
	/* the option table allows only the codecs' names */
	int codec = sp_log_codec_parse(sp_conf_str(conf, "compression"));
	o->codec = codec < 0 ? SP_LOG_CODEC_NONE : codec;
	o->level = sp_conf_int(conf, "compression.level");
}

int sp_log_wopts_check(const sp_log_wopts_t *o, char *errstr, size_t size)
{
	int lv;
	return sp_log_codec_level(o->codec, o->level, &lv, errstr, size);
}

static int publish(sp_log_writer_t *w, uint64_t seg, uint64_t len, uint64_t next, char *errstr, size_t size)
{
	sp_log_durable_t d = {seg, len, next};
	if (w->have_pub && !memcmp(&d, &w->pub, sizeof(d)))
		return SPATE_OK;
	int rc = sp_log_durable_write(w->dirfd, w->pdir, &d, errstr, size);
	if (rc == SPATE_OK) {
		w->pub = d;
		w->have_pub = true;
	}
	return rc;
}

/* The offset after the last record that is in the segment file (not the open batch). */
static uint64_t written_next(const sp_log_writer_t *w)
{
	return w->enc.count ? (uint64_t)w->enc.base_offset : w->next_offset;
}

/* Write pending index entries, fsync the segment, publish. */
static int sync_publish(sp_log_writer_t *w, char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX];
	if (w->idx_pend_len) {
		/* The index is a hint that readers validate: losing its tail costs a scan. */
		if (write(w->idx_fd, w->idx_pend, w->idx_pend_len) != (ssize_t)w->idx_pend_len) {
			sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "index");
			sp_msg(w->o.eng, SP_MSG_WARN, "%s: index write failed (%s); readers will scan", path,
			       strerror(errno));
		}
		w->idx_pend_len = 0;
	}
	if (w->dirty) {
		if (fdatasync(w->seg_fd) < 0) {
			sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "log");
			w->broken = SPATE_ERR_IO;
			return sp_err(errstr, size, SPATE_ERR_IO, "%s: fdatasync: %s", path, strerror(errno));
		}
		w->dirty = false;
	}
	return publish(w, w->seg_base, w->seg_len, written_next(w), errstr, size);
}

/* Create (or reuse an empty) segment file and its index at base; fsync the folder. */
static int create_segment(sp_log_writer_t *w, uint64_t base, char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX];
	sp_log_seg_path(path, sizeof(path), w->pdir, base, "log");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, SP_FILE_MODE);
	if (fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size != 0) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "%s: a segment with this base offset already holds data", path);
	}
	sp_log_seg_path(path, sizeof(path), w->pdir, base, "index");
	int ifd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, SP_FILE_MODE);
	if (ifd < 0) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	}
	int rc = sp_log_fsync_dir(w->dirfd, w->pdir, errstr, size);
	if (rc) {
		close(fd);
		close(ifd);
		return rc;
	}
	w->seg_fd = fd;
	w->idx_fd = ifd;
	w->seg_base = base;
	w->seg_len = 0;
	w->since_index = 0;
	return SPATE_OK;
}

/* Close the current segment (complete and fsync'd) and start one at new_base. */
static int roll(sp_log_writer_t *w, uint64_t new_base, char *errstr, size_t size)
{
	int rc = sync_publish(w, errstr, size);
	if (rc)
		return rc;
	fdatasync(w->idx_fd); /* so older segments keep a whole index */
	close(w->idx_fd);
	close(w->seg_fd);
	w->idx_fd = w->seg_fd = -1;
	if ((rc = create_segment(w, new_base, errstr, size))) {
		w->broken = rc;
		return rc;
	}
	return publish(w, new_base, 0, new_base, errstr, size);
}

static int add_index_entry(sp_log_writer_t *w, uint64_t offset, uint64_t pos)
{
	if (w->idx_pend_len + SP_LOG_INDEX_ENTRY > w->idx_pend_cap) {
		size_t cap = w->idx_pend_cap ? w->idx_pend_cap * 2 : 64 * SP_LOG_INDEX_ENTRY;
		uint8_t *nb = realloc(w->idx_pend, cap);
		if (!nb)
			return SPATE_ERR_NOMEM;
		w->idx_pend = nb;
		w->idx_pend_cap = cap;
	}
	sp_log_index_put(w->idx_pend + w->idx_pend_len, (uint32_t)(offset - w->seg_base), (uint32_t)pos);
	w->idx_pend_len += SP_LOG_INDEX_ENTRY;
	return SPATE_OK;
}

/* Write the open batch to the segment (rolling first when it would not fit). */
static int write_batch(sp_log_writer_t *w, char *errstr, size_t size)
{
	const uint8_t *bytes;
	size_t total;
	int rc = sp_log_comp_batch(w->comp, &w->enc, &bytes, &total, errstr, size);
	if (rc) {
		/* nothing written; the batch's records are lost like on a failed write */
		w->broken = rc;
		return sp_err(errstr, size, rc, "%s: %s compression failed", w->pdir,
		              sp_log_codec_name(w->o.codec));
	}
	if (w->seg_len > 0 && w->seg_len + total > w->o.segment_bytes &&
	    (rc = roll(w, (uint64_t)w->enc.base_offset, errstr, size)))
		return rc;
	if (w->since_index >= SP_LOG_INDEX_INTERVAL && w->seg_len > 0) {
		if (add_index_entry(w, (uint64_t)w->enc.base_offset, w->seg_len))
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", w->pdir);
		w->since_index = 0;
	}
	if (sp_write_all(w->seg_fd, bytes, total, (off_t)w->seg_len) < 0) {
		char path[SP_LOG_PATH_MAX];
		int e = errno;
		sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "log");
		/* Leave no partial batch behind; the batch's records are lost (not durable,
		 * never acknowledged), and the writer refuses further work. */
		if (ftruncate(w->seg_fd, (off_t)w->seg_len) < 0)
			sp_msg(w->o.eng, SP_MSG_ERROR, "%s: could not cut a partial write at byte %" PRIu64,
			       path, w->seg_len);
		w->broken = SPATE_ERR_IO;
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: write at byte %" PRIu64 ": %s", path,
		              w->seg_len, strerror(e));
	}
	w->seg_len += total;
	w->since_index += total;
	w->dirty = true;
	w->enc.count = 0;
	return SPATE_OK;
}

/* ---- open and recovery ------------------------------------------------------------- */

/* The existing index of the segment being recovered: its entries (position order). */
typedef struct oldidx {
	uint32_t *rel, *pos;
	size_t n;        /* trusted (increasing) entries */
	size_t file_len; /* bytes in the file */
	bool exists;
} oldidx_t;

static void oldidx_load(const char *path, oldidx_t *x)
{
	memset(x, 0, sizeof(*x));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size > ((size_t)64 << 20)) {
		close(fd);
		return;
	}
	size_t len = (size_t)st.st_size, cnt = len / SP_LOG_INDEX_ENTRY;
	uint8_t *b = malloc(len + 1);
	x->rel = malloc((cnt + 1) * sizeof(uint32_t));
	x->pos = malloc((cnt + 1) * sizeof(uint32_t));
	ssize_t got = b && x->rel && x->pos ? pread(fd, b, len, 0) : -1;
	close(fd);
	if (got != (ssize_t)len) {
		free(b);
		free(x->rel);
		free(x->pos);
		memset(x, 0, sizeof(*x));
		return;
	}
	x->exists = true;
	x->file_len = len;
	for (size_t i = 0; i < cnt; i++) {
		const uint8_t *e = b + i * SP_LOG_INDEX_ENTRY;
		uint32_t rel = (uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 | (uint32_t)e[2] << 8 | e[3];
		uint32_t pos = (uint32_t)e[4] << 24 | (uint32_t)e[5] << 16 | (uint32_t)e[6] << 8 | e[7];
		if (i > 0 && (rel <= x->rel[i - 1] || pos <= x->pos[i - 1]))
			break;
		x->rel[i] = rel;
		x->pos[i] = pos;
		x->n++;
	}
	free(b);
}

static void oldidx_free(oldidx_t *x)
{
	free(x->rel);
	free(x->pos);
}

/* Check the old index against a batch boundary at pos (base < 0: a bad batch, whose
 * offset is unknown). Entries that point between boundaries make the index untrusted. */
static void oldidx_boundary(oldidx_t *x, size_t *k, bool *ok, uint64_t seg_base, uint64_t pos, int64_t base)
{
	while (*k < x->n && x->pos[*k] < pos) {
		*ok = false; /* points inside a batch */
		(*k)++;
	}
	if (*k < x->n && x->pos[*k] == pos) {
		if (base >= 0 && seg_base + x->rel[*k] != (uint64_t)base)
			*ok = false;
		(*k)++;
	}
}

/* Scan the last segment: keep valid batches, report corruption, truncate a torn tail.
 * The index is kept when every entry points at a batch (entries past a truncated tail
 * are cut off); otherwise it is rebuilt into a temporary file renamed into place. */
static int recover(sp_log_writer_t *w, char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX], ipath[SP_LOG_PATH_MAX], tmp[SP_LOG_PATH_MAX];
	sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "log");
	sp_log_seg_path(ipath, sizeof(ipath), w->pdir, w->seg_base, "index");
	struct stat st;
	if (fstat(w->seg_fd, &st) < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	uint64_t fsize = (uint64_t)st.st_size;
	sp_log_scan_t sc;
	if (sp_log_scan_init(&sc, w->seg_fd, 0, fsize))
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", path);
	oldidx_t old;
	oldidx_load(ipath, &old);
	size_t ok_k = 0;
	bool idx_ok = old.exists;
	int64_t expect = (int64_t)w->seg_base;
	uint64_t valid_end = 0;
	int rc = SPATE_OK;
	/* the readers' offset checks (nothing bounds the last segment's offsets from above) */
	sp_log_scan_offsets(&sc, w->seg_base, UINT64_MAX);
	for (;;) {
		int r = sp_log_scan_next(&sc, true, true);
		if (r == SP_LOG_SCAN_END)
			break;
		if (r == SP_LOG_SCAN_IO) {
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: read at byte %" PRIu64 ": %s", path,
			            sc.bpos, strerror(sc.err_no));
			break;
		}
		if (r == SP_LOG_SCAN_BATCH) {
			oldidx_boundary(&old, &ok_k, &idx_ok, w->seg_base, sc.bpos, sc.h.base_offset);
			if (w->since_index >= SP_LOG_INDEX_INTERVAL && sc.bpos > 0) {
				if (add_index_entry(w, (uint64_t)sc.h.base_offset, sc.bpos)) {
					rc = sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", path);
					break;
				}
				w->since_index = 0;
			}
			w->since_index += sc.total;
			expect = sp_log_batch_last(&sc.h) + 1;
			valid_end = sc.pos;
			continue;
		}
		uint64_t found;
		int v = sp_log_scan_resync(&sc, sc.bpos, expect, &found);
		if (v == SP_LOG_SCAN_IO) {
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: read: %s", path, strerror(sc.err_no));
			break;
		}
		if (v == 1) {
			sp_msg(w->o.eng, SP_MSG_ERROR,
			       "%s: bytes %" PRIu64 "..%" PRIu64 " are corrupt (%s) with valid batches after "
			       "them; kept as they are (readers report them; see log.on.corruption)",
			       path, sc.bpos, found, sc.why ? sc.why : "bad batch");
			oldidx_boundary(&old, &ok_k, &idx_ok, w->seg_base, sc.bpos, -1);
			w->since_index += found - sc.bpos;
			sp_log_scan_seek(&sc, found);
			continue; /* sc.passed is still the offset after the last valid batch */
		}
		/* A torn tail: nothing valid after it. */
		if (ftruncate(w->seg_fd, (off_t)sc.bpos) < 0) {
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: truncate to byte %" PRIu64 ": %s", path,
			            sc.bpos, strerror(errno));
			break;
		}
		w->truncated = fsize - sc.bpos;
		sp_msg(w->o.eng, SP_MSG_WARN,
		       "%s: truncated a torn tail of %" PRIu64 " bytes at byte %" PRIu64 " (%s)", path,
		       w->truncated, sc.bpos, sc.why ? sc.why : "bad batch");
		if (fdatasync(w->seg_fd) < 0)
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: fdatasync: %s", path, strerror(errno));
		break;
	}
	sp_log_scan_free(&sc);
	if (rc) {
		oldidx_free(&old);
		return rc;
	}
	w->seg_len = valid_end;
	w->next_offset = (uint64_t)expect;
	/* Entries at or past the valid end go (a truncated tail); the rest must all have
	 * matched a batch boundary. */
	size_t keep = 0;
	while (keep < old.n && old.pos[keep] < valid_end)
		keep++;
	if (ok_k < keep)
		idx_ok = false; /* an entry inside the last batch: never met a boundary */
	if (idx_ok) {
		int ifd = open(ipath, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (ifd >= 0 && (old.file_len == keep * SP_LOG_INDEX_ENTRY ||
		                 ftruncate(ifd, (off_t)(keep * SP_LOG_INDEX_ENTRY)) == 0)) {
			w->idx_fd = ifd;
			w->idx_pend_len = 0;
			w->since_index = valid_end - (keep ? old.pos[keep - 1] : 0);
			oldidx_free(&old);
			return SPATE_OK;
		}
		if (ifd >= 0)
			close(ifd); /* could not cut it: rebuild it */
	}
	oldidx_free(&old);
	/* Rebuild: readers holding the old file keep reading it (and validate it). */
	size_t il = strlen(ipath);
	if (il + 5 > sizeof(tmp))
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: path too long", ipath);
	memcpy(tmp, ipath, il);
	memcpy(tmp + il, ".tmp", 5);
	int ifd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SP_FILE_MODE);
	if (ifd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", tmp, strerror(errno));
	if (w->idx_pend_len && write(ifd, w->idx_pend, w->idx_pend_len) != (ssize_t)w->idx_pend_len) {
		int e = errno;
		close(ifd);
		unlink(tmp);
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: write: %s", tmp, strerror(e));
	}
	w->idx_pend_len = 0;
	close(ifd);
	if (rename(tmp, ipath) < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: rename: %s", ipath, strerror(errno));
	w->idx_fd = open(ipath, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (w->idx_fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", ipath, strerror(errno));
	return SPATE_OK;
}

/* fdatasync one segment file that is not open (path names it). */
static int sync_segment_file(const char *path, char *errstr, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	struct stat st;
	int rc = SPATE_OK;
	if (fstat(fd, &st) < 0)
		rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	else if (fdatasync(fd) < 0)
		rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: fdatasync of bytes 0..%" PRIu64 ": %s", path,
		            (uint64_t)st.st_size, strerror(errno));
	close(fd);
	return rc;
}

/*
 * Make durable what open is about to publish (guarantee 1): nothing past what the last
 * writer published (old; NULL when none ever did) was necessarily fsync'd. A writer
 * killed with batches in the page cache leaves them in the last segment; a roll cut short
 * or a copy (Kafka segments) leaves whole segments and folder entries. So: fdatasync every
 * segment from old->seg on (all of them without old; those before it were complete and
 * fsync'd before old->seg existed), the last one's index, and fsync the folder (the
 * segments' names, the index's rename). Errors name the file.
 */
static int sync_recovered(sp_log_writer_t *w, const sp_log_seglist_t *segs, const sp_log_durable_t *old,
                          char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX];
	int rc;
	for (size_t i = 0; i + 1 < segs->n; i++) {
		if (old && segs->base[i] < old->seg)
			continue;
		sp_log_seg_path(path, sizeof(path), w->pdir, segs->base[i], "log");
		if ((rc = sync_segment_file(path, errstr, size)))
			return rc;
	}
	if (fdatasync(w->seg_fd) < 0) {
		sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "log");
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: fdatasync of bytes 0..%" PRIu64 ": %s", path,
		              w->seg_len, strerror(errno));
	}
	if (fdatasync(w->idx_fd) < 0) {
		/* The index is a hint that readers validate: losing its tail costs a scan. */
		sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "index");
		sp_msg(w->o.eng, SP_MSG_WARN, "%s: fdatasync: %s; readers may scan", path, strerror(errno));
	}
	return sp_log_fsync_dir(w->dirfd, w->pdir, errstr, size);
}

static void writer_free(sp_log_writer_t *w)
{
	if (w->seg_fd >= 0)
		close(w->seg_fd);
	if (w->idx_fd >= 0)
		close(w->idx_fd);
	if (w->dirfd >= 0)
		close(w->dirfd); /* releases the flock */
	sp_log_enc_free(&w->enc);
	sp_log_comp_free(w->comp);
	free(w->idx_pend);
	free(w);
}

int sp_log_writer_open(const char *dir, int partition, const sp_log_wopts_t *o, sp_log_writer_t **out,
                       char *errstr, size_t size)
{
	int parts, rc = sp_log_meta_read(dir, &parts, errstr, size);
	if (rc)
		return rc;
	if (partition < 0 || partition >= parts)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: partition %d does not exist (the log has %d: 0..%d)", dir, partition,
		              parts, parts - 1);
	sp_log_writer_t *w = calloc(1, sizeof(*w));
	if (!w)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	w->seg_fd = w->idx_fd = -1;
	w->partition = partition;
	if (o)
		w->o = *o;
	else
		sp_log_wopts_default(&w->o);
	if (!w->o.batch_bytes)
		w->o.batch_bytes = SP_LOG_BATCH_BYTES;
	sp_log_enc_init(&w->enc);
	if ((rc = sp_log_comp_new(w->o.codec, w->o.level, &w->comp, errstr, size))) {
		w->dirfd = -1;
		writer_free(w);
		return rc;
	}
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	sp_log_part_path(w->pdir, sizeof(w->pdir), dir, partition);
	w->dirfd = open(w->pdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		rc = sp_err(errstr, size, errno == ENOENT ? SPATE_ERR_NOT_FOUND : SPATE_ERR_IO, "%s: %s",
		            w->pdir, strerror(errno));
		goto fail;
	}
	if (flock(w->dirfd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK
		         ? sp_err(errstr, size, SPATE_ERR_BUSY, "%s: another writer holds this partition",
		                  w->pdir)
		         : sp_err(errstr, size, SPATE_ERR_IO, "%s: flock: %s", w->pdir, strerror(errno));
		goto fail;
	}
	sp_log_durable_t old;
	bool have_old = sp_log_durable_read(w->pdir, &old, NULL, 0) == SPATE_OK;
	sp_log_seglist_t segs = {0};
	if ((rc = sp_log_seglist(w->pdir, &segs, errstr, size)))
		goto fail;
	if (segs.n == 0) {
		rc = create_segment(w, 0, errstr, size);
		w->next_offset = 0;
	} else {
		char path[SP_LOG_PATH_MAX];
		w->seg_base = segs.base[segs.n - 1];
		sp_log_seg_path(path, sizeof(path), w->pdir, w->seg_base, "log");
		w->seg_fd = open(path, O_RDWR | O_CLOEXEC);
		if (w->seg_fd < 0)
			rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
		else
			rc = recover(w, errstr, size);
	}
	/* Publish nothing unsynced; a partition as it was published needs no sync. */
	sp_log_durable_t now = {w->seg_base, w->seg_len, w->next_offset};
	if (rc == SPATE_OK && segs.n > 0 && (!have_old || memcmp(&now, &old, sizeof(now))))
		rc = sync_recovered(w, &segs, have_old ? &old : NULL, errstr, size);
	sp_log_seglist_free(&segs);
	if (rc)
		goto fail;
	if (have_old && (old.seg > w->seg_base || old.next > w->next_offset ||
	                 (old.seg == w->seg_base && old.len > w->seg_len)))
		sp_msg(w->o.eng, SP_MSG_WARN,
		       "%s: records up to offset %" PRIu64 " were published durable, but the partition now "
		       "ends at %" PRIu64 " (fsync'd data was lost)",
		       w->pdir, old.next, w->next_offset);
	if (have_old) {
		w->pub = old;
		w->have_pub = true;
	}
	if ((rc = publish(w, w->seg_base, w->seg_len, w->next_offset, errstr, size)))
		goto fail;
	*out = w;
	return SPATE_OK;
fail:
	writer_free(w);
	return rc;
}

int sp_log_writer_put(sp_log_writer_t *w, const spate_push_record_t *r, int64_t ts, uint64_t *offset,
                      char *errstr, size_t size)
{
	if (w->broken)
		return sp_err(errstr, size, w->broken, "%s: the writer failed earlier", w->pdir);
	size_t bytes = r->key_len + r->value_len;
	for (size_t i = 0; i < r->header_cnt; i++)
		bytes += r->headers[i].key_len + r->headers[i].value_len;
	if (bytes > SP_LOG_MAX_RECORD_BYTES)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: a record of %zu bytes is larger than the log takes (%zu)", w->pdir, bytes,
		              SP_LOG_MAX_RECORD_BYTES);
	int rc;
	if (w->enc.count > 0 && w->enc.len + sp_log_enc_record_size(&w->enc, r, ts) > w->o.batch_bytes &&
	    (rc = write_batch(w, errstr, size)))
		return rc;
	if (w->enc.count == 0)
		sp_log_enc_begin(&w->enc, (int64_t)w->next_offset, ts);
	if ((rc = sp_log_enc_add(&w->enc, r, ts)))
		return sp_err(errstr, size, rc, "%s: %s", w->pdir,
		              rc == SPATE_ERR_NOMEM ? "out of memory" : "record field too large");
	if (offset)
		*offset = w->next_offset;
	w->next_offset++;
	if (w->unflushed++ == 0)
		w->first_unflushed_ms = sp_now_ms();
	return SPATE_OK;
}

int sp_log_writer_flush(sp_log_writer_t *w, char *errstr, size_t size)
{
	if (w->broken)
		return sp_err(errstr, size, w->broken, "%s: the writer failed earlier", w->pdir);
	int rc;
	if (w->enc.count > 0 && (rc = write_batch(w, errstr, size)))
		return rc;
	if ((rc = sync_publish(w, errstr, size)))
		return rc;
	w->unflushed = 0;
	return SPATE_OK;
}

int sp_log_writer_sync_begin(sp_log_writer_t *w, sp_log_wsync_t *t, char *errstr, size_t size)
{
	t->fd = -1;
	if (w->broken)
		return sp_err(errstr, size, w->broken, "%s: the writer failed earlier", w->pdir);
	int rc;
	if (w->enc.count > 0 && (rc = write_batch(w, errstr, size)))
		return rc;
	if (w->idx_pend_len) {
		/* the index is a hint readers validate: losing its tail costs a scan */
		if (write(w->idx_fd, w->idx_pend, w->idx_pend_len) != (ssize_t)w->idx_pend_len)
			sp_msg(w->o.eng, SP_MSG_WARN, "%s: index write failed (%s); readers will scan", w->pdir,
			       strerror(errno));
		w->idx_pend_len = 0;
	}
	t->seg = w->seg_base;
	t->len = w->seg_len;
	t->next = written_next(w);
	if (w->dirty) {
		/* a duplicate: a roll may close the segment's fd while the caller syncs */
		if ((t->fd = dup(w->seg_fd)) < 0) {
			w->broken = SPATE_ERR_IO;
			return sp_err(errstr, size, SPATE_ERR_IO, "%s: dup: %s", w->pdir, strerror(errno));
		}
		w->dirty = false;
	}
	w->unflushed = 0;
	return SPATE_OK;
}

int sp_log_writer_sync_end(sp_log_writer_t *w, sp_log_wsync_t *t, int sync_errno, char *errstr, size_t size)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (sync_errno) {
		char path[SP_LOG_PATH_MAX];
		sp_log_seg_path(path, sizeof(path), w->pdir, t->seg, "log");
		w->broken = SPATE_ERR_IO;
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: fdatasync: %s", path, strerror(sync_errno));
	}
	/* a roll meanwhile synced and published the segment (and a later one): nothing to do */
	if (w->have_pub && (w->pub.seg > t->seg || (w->pub.seg == t->seg && w->pub.len >= t->len)))
		return SPATE_OK;
	return publish(w, t->seg, t->len, t->next, errstr, size);
}

int sp_log_writer_end_batch(sp_log_writer_t *w, char *errstr, size_t size)
{
	if (w->broken)
		return sp_err(errstr, size, w->broken, "%s: the writer failed earlier", w->pdir);
	return w->enc.count > 0 ? write_batch(w, errstr, size) : SPATE_OK;
}

int64_t sp_log_writer_flush_due(const sp_log_writer_t *w, int64_t now_ms)
{
	if (!w->unflushed)
		return -1;
	if (w->o.flush_ms == 0 || (w->o.flush_records > 0 && w->unflushed >= w->o.flush_records))
		return 0;
	int64_t due = w->first_unflushed_ms + w->o.flush_ms - now_ms;
	return due < 0 ? 0 : due;
}

int sp_log_writer_maybe_flush(sp_log_writer_t *w, int64_t now_ms, char *errstr, size_t size)
{
	if (sp_log_writer_flush_due(w, now_ms) == 0)
		return sp_log_writer_flush(w, errstr, size);
	return SPATE_OK;
}

int sp_log_writer_append(sp_log_writer_t *w, const spate_push_record_t *recs, size_t n, char *errstr,
                         size_t size)
{
	int64_t now = sp_wall_ms();
	for (size_t i = 0; i < n; i++) {
		int rc = sp_log_writer_put(w, &recs[i], recs[i].timestamp_ms ? recs[i].timestamp_ms : now,
		                           NULL, errstr, size);
		if (rc)
			return rc;
	}
	return sp_log_writer_maybe_flush(w, sp_now_ms(), errstr, size);
}

uint64_t sp_log_writer_next_offset(const sp_log_writer_t *w)
{
	return w->next_offset;
}

void sp_log_writer_durable(const sp_log_writer_t *w, sp_log_durable_t *d)
{
	*d = w->pub;
}

uint64_t sp_log_writer_truncated(const sp_log_writer_t *w)
{
	return w->truncated;
}

int sp_log_writer_close(sp_log_writer_t *w, char *errstr, size_t size)
{
	if (!w)
		return SPATE_OK;
	int rc = w->broken ? SPATE_OK : sp_log_writer_flush(w, errstr, size);
	if (w->idx_fd >= 0)
		fdatasync(w->idx_fd);
	writer_free(w);
	return rc;
}
