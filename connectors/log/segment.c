/* segment.c - the log's files: metadata, segments, the sparse index, the durable file.
 *
 * Layout of a log directory DIR (docs/log.md has the details):
 *
 *   DIR/spate-log.meta                    "format=1" and "partitions=N" lines
 *   DIR/P/                                one folder per partition, P = 0..N-1
 *   DIR/P/00000000000000000000.log        segments named by base offset (%020llu)
 *   DIR/P/00000000000000000000.index      sparse offset index of that segment
 *   DIR/P/durable                         "seg=B len=L next=O": what the writer fsync'd
 *
 * Only the metadata and durable writers change files; everything else only reads. What
 * walks a segment's batches (the scanner, the resync search) is in scan.c, verify in
 * verify.c.
 */
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An index file longer than this is not read (Kafka's default is 10 MiB). */
#define INDEX_MAX_BYTES ((size_t)64 << 20)
/* The metadata and durable files are a line or two; reading more is an error. */
#define SMALL_FILE_MAX 512

/* ---- small file helpers ----------------------------------------------------------- */

/* Read a small file into buf (NUL-terminated). Its length, or -1 with errno. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0 || got + (size_t)n >= size - 1) {
			got += (size_t)n;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

int sp_log_fsync_dir(int dirfd, const char *path, char *errstr, size_t size)
{
	int fd = dirfd;
	if (fd < 0 && (fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: open: %s", path, strerror(errno));
	int rc = fsync(fd);
	int e = errno;
	if (fd != dirfd)
		close(fd);
	if (rc < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: fsync: %s", path, strerror(e));
	return SPATE_OK;
}

/* Log directories are limited to SP_LOG_PATH_MAX - DIR_RESERVE bytes (sp_log_meta_read
 * and sp_log_create check it), so the paths below always fit. */
#define DIR_RESERVE 64

/* Join parts into buf (cut at size - 1); built by hand so the compiler need not prove
 * that a path fits. */
static void join(char *buf, size_t size, const char *const *parts, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		for (const char *p = parts[i]; *p && len + 1 < size; p++)
			buf[len++] = *p;
	buf[len] = 0;
}

void sp_log_part_path(char *buf, size_t size, const char *dir, int partition)
{
	char num[16];
	int n = snprintf(num, sizeof(num), "%d", partition);
	(void)n;
	const char *parts[] = {dir, "/", num};
	join(buf, size, parts, 3);
}

void sp_log_seg_path(char *buf, size_t size, const char *pdir, uint64_t base, const char *ext)
{
	char num[21];
	for (int i = 19; i >= 0; i--) {
		num[i] = (char)('0' + base % 10);
		base /= 10;
	}
	num[20] = 0;
	const char *parts[] = {pdir, "/", num, ".", ext};
	join(buf, size, parts, 5);
}

/* ---- metadata ------------------------------------------------------------------------ */

static int parse_meta(const char *path, const char *text, int *partitions, char *errstr, size_t size)
{
	int format = -1, parts = -1;
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[128];
		if (len >= sizeof(line))
			return sp_err(errstr, size, SPATE_ERR_CORRUPT, "%s: line too long", path);
		memcpy(line, p, len);
		line[len] = 0;
		char *end;
		if (!strncmp(line, "format=", 7)) {
			long v = strtol(line + 7, &end, 10);
			if (*end || end == line + 7)
				return sp_err(errstr, size, SPATE_ERR_CORRUPT, "%s: bad line \"%s\"", path,
				              line);
			format = (int)v;
		} else if (!strncmp(line, "partitions=", 11)) {
			long v = strtol(line + 11, &end, 10);
			if (*end || end == line + 11 || v < 1 || v > SP_LOG_MAX_PARTITIONS)
				return sp_err(errstr, size, SPATE_ERR_CORRUPT, "%s: bad line \"%s\"", path,
				              line);
			parts = (int)v;
		} /* other lines (comments, later keys) are ignored */
		p += len + (eol ? 1 : 0);
	}
	if (format < 0 || parts < 0)
		return sp_err(errstr, size, SPATE_ERR_CORRUPT, "%s: missing format= or partitions= line",
		              path);
	if (format != SP_LOG_FORMAT_VERSION)
		return sp_err(errstr, size, SPATE_ERR_UNSUPPORTED,
		              "%s: log format version %d; this spate reads version %d", path, format,
		              SP_LOG_FORMAT_VERSION);
	*partitions = parts;
	return SPATE_OK;
}

int sp_log_meta_read(const char *dir, int *partitions, char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX], text[SMALL_FILE_MAX];
	if (strlen(dir) > SP_LOG_PATH_MAX - DIR_RESERVE)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "log directory path longer than %d bytes",
		              SP_LOG_PATH_MAX - DIR_RESERVE);
	const char *mp[] = {dir, "/", SP_LOG_META_NAME};
	join(path, sizeof(path), mp, 3);
	ssize_t n = read_small(path, text, sizeof(text));
	if (n < 0 && errno == ENOENT)
		return sp_err(errstr, size, SPATE_ERR_NOT_FOUND,
		              "%s: no log here (no %s; `spate log create %s`)", dir, SP_LOG_META_NAME, dir);
	if (n < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	return parse_meta(path, text, partitions, errstr, size);
}

static int mkdir_p(const char *dir, char *errstr, size_t size)
{
	char tmp[SP_LOG_PATH_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(tmp))
		return sp_err(errstr, size, SPATE_ERR_INVALID, "log directory \"%s\": empty or too long",
		              dir);
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, SP_DIR_MODE) < 0 && errno != EEXIST)
			return sp_err(errstr, size, SPATE_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, SP_DIR_MODE) < 0 && errno != EEXIST)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));
	struct stat st;
	if (stat(tmp, &st) < 0 || !S_ISDIR(st.st_mode))
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: not a directory", tmp);
	return SPATE_OK;
}

static int make_partition_dirs(const char *dir, int partitions, char *errstr, size_t size)
{
	char pdir[SP_LOG_PATH_MAX];
	for (int i = 0; i < partitions; i++) {
		sp_log_part_path(pdir, sizeof(pdir), dir, i);
		if (mkdir(pdir, SP_DIR_MODE) < 0 && errno != EEXIST)
			return sp_err(errstr, size, SPATE_ERR_IO, "%s: mkdir: %s", pdir, strerror(errno));
	}
	return SPATE_OK;
}

int sp_log_create(const char *dir, int partitions, char *errstr, size_t size)
{
	if (partitions > SP_LOG_MAX_PARTITIONS)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: %d partitions is more than %d", dir,
		              partitions, SP_LOG_MAX_PARTITIONS);
	if (strlen(dir) > SP_LOG_PATH_MAX - DIR_RESERVE)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "log directory path longer than %d bytes",
		              SP_LOG_PATH_MAX - DIR_RESERVE);
	int rc = mkdir_p(dir, errstr, size);
	if (rc)
		return rc;
	int have;
	rc = sp_log_meta_read(dir, &have, errstr, size);
	if (rc == SPATE_OK) {
		if (partitions > 0 && have != partitions)
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "%s: the log exists with %d partitions, not %d", dir, have, partitions);
		return make_partition_dirs(dir, have, errstr, size);
	}
	if (rc != SPATE_ERR_NOT_FOUND)
		return rc;
	if (partitions < 1)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "%s: partitions must be at least 1", dir);
	if ((rc = make_partition_dirs(dir, partitions, errstr, size)))
		return rc;
	/* Write a private temporary file and link() it into place: of two processes
	 * creating the same log, exactly one wins and the other reads what it wrote. */
	char tmp[SP_LOG_PATH_MAX], path[SP_LOG_PATH_MAX], text[128];
	const char *tp[] = {dir, "/.", SP_LOG_META_NAME, ".XXXXXX"}, *mp[] = {dir, "/", SP_LOG_META_NAME};
	join(tmp, sizeof(tmp), tp, 4);
	join(path, sizeof(path), mp, 3);
	int len =
	    snprintf(text, sizeof(text), "# spate embedded log (docs/log.md)\nformat=%d\npartitions=%d\n",
	             SP_LOG_FORMAT_VERSION, partitions);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", tmp, strerror(errno));
	if (sp_write_all(fd, text, (size_t)len, -1) < 0 || fsync(fd) < 0) {
		rc = sp_err(errstr, size, SPATE_ERR_IO, "%s: write: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd); /* mkstemp made it SP_FILE_MODE (0600) */
	if (link(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		if (e != EEXIST)
			return sp_err(errstr, size, SPATE_ERR_IO, "%s: link: %s", path, strerror(e));
		return sp_log_create(dir, partitions, errstr, size); /* someone else won: compare */
	}
	unlink(tmp);
	return sp_log_fsync_dir(-1, dir, errstr, size);
}

/* ---- segments ---------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int sp_log_seglist(const char *pdir, sp_log_seglist_t *out, char *errstr, size_t size)
{
	out->n = 0;
	DIR *d = opendir(pdir);
	if (!d)
		return sp_err(errstr, size, errno == ENOENT ? SPATE_ERR_NOT_FOUND : SPATE_ERR_IO, "%s: %s",
		              pdir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		/* exactly 20 digits + ".log" */
		if (strlen(nm) != 24 || strcmp(nm + 20, ".log"))
			continue;
		uint64_t v = 0;
		bool ok = true;
		for (int i = 0; i < 20 && ok; i++) {
			ok = nm[i] >= '0' && nm[i] <= '9';
			v = v * 10 + (uint64_t)(nm[i] - '0');
		}
		if (!ok)
			continue;
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 16;
			uint64_t *nb = realloc(out->base, cap * sizeof(*nb));
			if (!nb) {
				closedir(d);
				return sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", pdir);
			}
			out->base = nb;
			out->cap = cap;
		}
		out->base[out->n++] = v;
	}
	closedir(d);
	if (out->n > 1)
		qsort(out->base, out->n, sizeof(uint64_t), cmp_u64);
	return SPATE_OK;
}

void sp_log_seglist_free(sp_log_seglist_t *l)
{
	free(l->base);
	memset(l, 0, sizeof(*l));
}

/* ---- the durable file ------------------------------------------------------------------- */

int sp_log_durable_read(const char *pdir, sp_log_durable_t *d, char *errstr, size_t size)
{
	char path[SP_LOG_PATH_MAX], text[SMALL_FILE_MAX];
	const char *dp[] = {pdir, "/", SP_LOG_DURABLE_NAME};
	join(path, sizeof(path), dp, 3);
	ssize_t n = read_small(path, text, sizeof(text));
	if (n < 0 && errno == ENOENT)
		return sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "%s: no writer has opened this partition",
		              path);
	if (n < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s: %s", path, strerror(errno));
	uint64_t seg, len, next;
	int used = 0;
	if (sscanf(text, "seg=%" SCNu64 " len=%" SCNu64 " next=%" SCNu64 "\n%n", &seg, &len, &next, &used) !=
	        3 ||
	    used != n || next < seg)
		return sp_err(
		    errstr, size, SPATE_ERR_CORRUPT,
		    "%s: not \"seg=B len=L next=O\" (the partition's writer rewrites it when it opens)",
		    path);
	d->seg = seg;
	d->len = len;
	d->next = next;
	return SPATE_OK;
}

int sp_log_durable_write(int dirfd, const char *pdir, const sp_log_durable_t *d, char *errstr, size_t size)
{
	/* Only the writer holding the partition's flock writes here, so one fixed
	 * temporary name suffices. No fsync: after a crash the writer rewrites the file
	 * when it opens, and whatever a reader saw before was already fsync'd data. */
	static const char tmpname[] = SP_LOG_DURABLE_NAME ".tmp";
	char text[128];
	int len = snprintf(text, sizeof(text), "seg=%" PRIu64 " len=%" PRIu64 " next=%" PRIu64 "\n", d->seg,
	                   d->len, d->next);
	int fd = openat(dirfd, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SP_FILE_MODE);
	if (fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s/%s: %s", pdir, tmpname, strerror(errno));
	if (sp_write_all(fd, text, (size_t)len, -1) < 0) {
		int e = errno;
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_IO, "%s/%s: write: %s", pdir, tmpname, strerror(e));
	}
	close(fd);
	if (renameat(dirfd, tmpname, dirfd, SP_LOG_DURABLE_NAME) < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "%s/%s: rename: %s", pdir, SP_LOG_DURABLE_NAME,
		              strerror(errno));
	return SPATE_OK;
}

/* ---- the index ---------------------------------------------------------------------- */

void sp_log_index_put(uint8_t *p, uint32_t rel, uint32_t pos)
{
	p[0] = (uint8_t)(rel >> 24);
	p[1] = (uint8_t)(rel >> 16);
	p[2] = (uint8_t)(rel >> 8);
	p[3] = (uint8_t)rel;
	p[4] = (uint8_t)(pos >> 24);
	p[5] = (uint8_t)(pos >> 16);
	p[6] = (uint8_t)(pos >> 8);
	p[7] = (uint8_t)pos;
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t sp_log_index_lookup(const char *pdir, uint64_t seg_base, uint64_t target, uint64_t limit,
                             uint64_t *entry)
{
	if (entry)
		*entry = seg_base;
	if (target <= seg_base)
		return 0;
	char path[SP_LOG_PATH_MAX];
	sp_log_seg_path(path, sizeof(path), pdir, seg_base, "index");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	uint64_t best = 0;
	if (fstat(fd, &st) < 0 || st.st_size < SP_LOG_INDEX_ENTRY || (size_t)st.st_size > INDEX_MAX_BYTES) {
		close(fd);
		return 0;
	}
	size_t n = (size_t)st.st_size / SP_LOG_INDEX_ENTRY * SP_LOG_INDEX_ENTRY;
	uint8_t *buf = malloc(n);
	ssize_t got = buf ? pread(fd, buf, n, 0) : -1;
	close(fd);
	if (got < SP_LOG_INDEX_ENTRY) {
		free(buf);
		return 0;
	}
	size_t cnt = (size_t)got / SP_LOG_INDEX_ENTRY;
	/* The trusted prefix: strictly increasing entries that point inside the readable
	 * bytes. A stale or pre-allocated tail ends it. */
	size_t valid = 0;
	uint64_t prev_rel = 0, prev_pos = 0;
	for (size_t i = 0; i < cnt; i++) {
		uint32_t rel = be32(buf + i * SP_LOG_INDEX_ENTRY);
		uint32_t pos = be32(buf + i * SP_LOG_INDEX_ENTRY + 4);
		if (pos >= limit || (i > 0 && (rel <= prev_rel || pos <= prev_pos)))
			break;
		prev_rel = rel;
		prev_pos = pos;
		valid++;
	}
	/* Binary search: the last entry with seg_base + rel <= target. */
	size_t lo = 0, hi = valid;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (seg_base + be32(buf + mid * SP_LOG_INDEX_ENTRY) <= target)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		best = be32(buf + (lo - 1) * SP_LOG_INDEX_ENTRY + 4);
		if (entry && best)
			*entry = seg_base + be32(buf + (lo - 1) * SP_LOG_INDEX_ENTRY);
	}
	free(buf);
	return best;
}
