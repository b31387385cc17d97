/* file.c - the file checkpoint store: every partition's checkpoint in one local file.
 *
 * store=file:PATH is the embedded default store, for one process on one machine. The
 * whole set of checkpoints lives in memory and in the file at PATH; a save merges the
 * new checkpoints into that set and rewrites the file the crash-safe way: write PATH.tmp,
 * fsync it, rename it over PATH, fsync the directory. A crash at any instant therefore
 * leaves PATH holding either the old set or the new one, never a mix. An flock on
 * PATH.lock, held while the store is open, keeps a second process (or a second open in
 * this one) away; the lock file is left in place on close, since unlinking a lock file
 * races with the next process that opens it.
 *
 * open_readonly (what `spate checkpoint show` uses) takes no lock and writes nothing, so
 * it can look at the store of a running pipeline: because PATH is only ever replaced by a
 * rename, whoever opens it reads the old or the new complete file, verified like at open.
 *
 * PATH.tmp is read only when PATH is missing (the very first save did not complete).
 * Then it is used when it is whole (a save not yet renamed) or torn (it ends before its
 * checksum line: a crash cut the write short, and its complete lines are what the save
 * had written). A PATH.tmp that is neither (its checksum line fails, a complete line in
 * it does not parse, it is not a checkpoint file) is no torn save of real data: the open
 * fails naming it, and nothing of it is loaded. Next to a PATH it is always ignored.
 *
 * The file is text, so an operator can read it: a header line with the format version,
 * the epoch and the creation time, one line per partition, and a checksum line
 * (file_format.c writes and reads the bytes). A file that fails its checksum, or fails
 * to parse, is SPATE_ERR_CORRUPT with the file and line named, never an empty store. The
 * epoch is a random value written when the file is created and renewed when every
 * checkpoint is reset, so a file that was replaced can be told from the one that was
 * saved.
 *
 * The file store is the one-process subset of the store interface: load, save, list,
 * reset and the epoch marker, but no leases (sp_store_ops_t.leases is false): the engine
 * refuses lease.timeout.ms with it, and a save of an entry under a lease (an owner) is
 * refused as SPATE_ERR_UNSUPPORTED.
 *
 * Tests stop a save between its steps with sp_store_file_save_fault() (file.h), and
 * integration tests make saves fail with SPATE_FAULT_STORE=fail or fail:N (the next N
 * saves), read once at open into the store instance.
 */
#include "file.h"
#include "fstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* The environment switch that makes save() fail, read at open. */
#define FSTORE_FAULT_ENV "SPATE_FAULT_STORE"

/* A store instance (sp_store_t.ctx). mu guards everything below it. */
typedef struct fstore {
	sp_engine_t *eng;
	char *path;      /* PATH */
	char *tmp_path;  /* PATH.tmp: the next version while it is written */
	char *lock_path; /* PATH.lock: flocked while open */
	char *dir_path;  /* the directory that holds PATH, fsynced after a rename */
	int lock_fd;     /* -1 when opened read-only */
	bool readonly;   /* open_readonly: no lock; save and reset fail */
	pthread_mutex_t mu;
	fent_t *ents; /* n entries, sorted by name (strcmp), names unique */
	size_t n;
	uint64_t epoch;
	int64_t created_ms;
	int64_t fault_left; /* SPATE_FAULT_STORE: saves still to fail (INT64_MAX: all); 0 off */
	bool on_disk;       /* PATH holds this store's set: it was loaded from PATH, or saved to it */
} fstore_t;

/* Bytes read from the start of PATH to find its header line (longer than any header). */
#define FSTORE_HEAD_READ 256

/* ---- small helpers ----------------------------------------------------------------- */

static void fents_free(fent_t *ents, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
}

/* A random, non-zero epoch; the clock and pid stand in if getrandom() is refused. */
static uint64_t new_epoch(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
		v = ((uint64_t)sp_wall_ms() << 20) ^ (uint64_t)sp_now_ns() ^ ((uint64_t)getpid() << 40);
	return v ? v : 1;
}

/* ---- reading ------------------------------------------------------------------------ */

/* Read all of path into a new buffer. SPATE_ERR_NOT_FOUND (no message) when it does not
 * exist; SPATE_ERR_IO or SPATE_ERR_CORRUPT (too large) with a message naming it. */
static int read_whole(const char *path, char **bufp, size_t *lenp, char *errstr, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return SPATE_ERR_NOT_FOUND;
		return sp_err(errstr, size, SPATE_ERR_IO, "checkpoint file %s: cannot open: %s", path,
		              strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int r = sp_err(errstr, size, SPATE_ERR_IO, "checkpoint file %s: cannot stat: %s", path,
		               strerror(errno));
		close(fd);
		return r;
	}
	if ((uint64_t)st.st_size > FSTORE_MAX_BYTES) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_CORRUPT,
		              "checkpoint file %s: %lld bytes is more than a checkpoint file holds (%zu)",
		              path, (long long)st.st_size, FSTORE_MAX_BYTES);
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "checkpoint file %s: out of memory", path);
	}
	for (;;) {
		ssize_t got = read(fd, buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int r = sp_err(errstr, size, SPATE_ERR_IO, "checkpoint file %s: read failed: %s",
			               path, strerror(errno));
			free(buf);
			close(fd);
			return r;
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (len == cap) { /* it grew since fstat: nobody else should write it */
			free(buf);
			close(fd);
			return sp_err(errstr, size, SPATE_ERR_IO,
			              "checkpoint file %s: changed while it was read", path);
		}
	}
	close(fd);
	*bufp = buf;
	*lenp = len;
	return SPATE_OK;
}

/* Read and parse the checkpoint file at path, which must be whole. SPATE_OK with *fp
 * filled (the caller frees fp->ents); SPATE_ERR_NOT_FOUND (no message) when it does not
 * exist; else the error naming the file (and the line), with nothing in *fp. */
static int read_parse(const char *path, fparse_t *fp, char *errstr, size_t size)
{
	char *buf = NULL;
	size_t len = 0;
	memset(fp, 0, sizeof *fp);
	int r = read_whole(path, &buf, &len, errstr, size);
	if (r != SPATE_OK)
		return r;
	r = sp_fstore_parse(path, buf, len, fp, errstr, size);
	free(buf);
	if (r != SPATE_OK) {
		fents_free(fp->ents, fp->n);
		memset(fp, 0, sizeof *fp);
	}
	return r;
}

/* Read PATH.tmp when PATH is missing: SPATE_OK with *fp filled when it is whole, or torn
 * (*torn set, the parse error in why): then fp holds its complete lines, which is what
 * the interrupted save had written. SPATE_ERR_NOT_FOUND (no message) when there is none.
 * SPATE_ERR_CORRUPT naming PATH.tmp and the line when it is neither: a checksum line
 * that fails, a complete line that does not parse, or no checkpoint file at all is
 * damage or a foreign file, never a torn save, and nothing of it may be used. */
static int read_tmp(const fstore_t *fs, fparse_t *fp, bool *torn, char *why, size_t why_size, char *errstr,
                    size_t size)
{
	char *buf = NULL;
	size_t len = 0;
	*torn = false;
	memset(fp, 0, sizeof *fp);
	int r = read_whole(fs->tmp_path, &buf, &len, errstr, size);
	if (r != SPATE_OK)
		return r;
	r = sp_fstore_parse(fs->tmp_path, buf, len, fp, why, why_size);
	free(buf);
	if (r == SPATE_ERR_CORRUPT && fp->truncated) {
		*torn = true;
		return SPATE_OK;
	}
	if (r == SPATE_OK)
		return SPATE_OK;
	fents_free(fp->ents, fp->n);
	memset(fp, 0, sizeof *fp);
	if (r != SPATE_ERR_CORRUPT)
		return sp_err(errstr, size, r, "%s", why);
	return sp_err(errstr, size, r,
	              "%s; with %s missing, only a save cut short before its checksum line may be "
	              "used, so nothing of it is loaded (look at it, or remove it to start over)",
	              why, fs->path);
}

/* Say on the log that fp came from PATH.tmp (read_tmp). */
static void log_tmp_use(const fstore_t *fs, const fparse_t *fp, bool torn, const char *why)
{
	const char *verb = fs->readonly ? "showing" : "loaded";
	if (!torn)
		sp_msg(fs->eng, SP_MSG_WARN,
		       "file store: %s is missing; %s %zu checkpoints from %s, a complete save that was "
		       "not renamed",
		       fs->path, verb, fp->n, fs->tmp_path);
	else
		sp_msg(fs->eng, SP_MSG_WARN,
		       "file store: %s is missing; %s the %zu checkpoints in the complete lines of %s, a "
		       "first save %s (%s)",
		       fs->path, verb, fp->n, fs->tmp_path,
		       fs->readonly ? "still being written or cut short by a crash" : "cut short by a crash",
		       why);
}

/* Take what fp holds as the store's set; a torn file without its header line gets a new
 * epoch. */
static void use_parse(fstore_t *fs, fparse_t *fp)
{
	if (!fp->have_header) {
		fp->epoch = new_epoch();
		fp->created_ms = sp_wall_ms();
	}
	fs->ents = fp->ents;
	fs->n = fp->n;
	fs->epoch = fp->epoch;
	fs->created_ms = fp->created_ms;
}

/* Fill fs->ents from PATH, or from PATH.tmp when only that exists (read_tmp), under the
 * store's lock. A missing PATH and PATH.tmp is an empty store with a new epoch. */
static int load_files(fstore_t *fs, char *errstr, size_t size)
{
	fparse_t fp;
	int r = read_parse(fs->path, &fp, errstr, size);
	if (r == SPATE_OK) {
		fs->on_disk = true;
		if (access(fs->tmp_path, F_OK) == 0)
			sp_msg(fs->eng, SP_MSG_INFO,
			       "file store: ignoring %s, left by an interrupted save; %s holds the last "
			       "complete one",
			       fs->tmp_path, fs->path);
	} else if (r != SPATE_ERR_NOT_FOUND) {
		return r;
	} else {
		bool torn;
		char why[512];
		r = read_tmp(fs, &fp, &torn, why, sizeof why, errstr, size);
		if (r == SPATE_ERR_NOT_FOUND) {
			fs->epoch = new_epoch();
			fs->created_ms = sp_wall_ms();
			return SPATE_OK;
		}
		if (r != SPATE_OK)
			return r;
		log_tmp_use(fs, &fp, torn, why);
	}
	use_parse(fs, &fp);
	return SPATE_OK;
}

/* Fill fs->ents for a read-only look, without the lock: a pipeline may be saving while we
 * read. Saves replace PATH by rename, so the PATH we open is a complete file, old or new,
 * verified like at open; PATH.tmp next to it is a save in progress and is not read. When
 * PATH is missing, PATH.tmp is read as load_files reads it; a save may rename it to PATH
 * between the two opens, so PATH is looked at once more when PATH.tmp is gone, cannot be
 * used, or was read while PATH appeared. Nothing found is an empty store (epoch 0), but a
 * missing directory is an error, as the locked open would find it. */
static int load_readonly(fstore_t *fs, char *errstr, size_t size)
{
	fparse_t fp;
	int r = read_parse(fs->path, &fp, errstr, size);
	if (r == SPATE_ERR_NOT_FOUND) {
		bool torn;
		char why[512];
		r = read_tmp(fs, &fp, &torn, why, sizeof why, errstr, size);
		if (r != SPATE_OK || access(fs->path, F_OK) == 0) {
			int tmp_r = r;
			if (r == SPATE_OK)
				fents_free(fp.ents, fp.n);
			r = read_parse(fs->path, &fp, errstr, size);
			if (r == SPATE_ERR_NOT_FOUND && tmp_r != SPATE_ERR_NOT_FOUND)
				return tmp_r; /* errstr still says what was wrong with PATH.tmp */
		} else {
			log_tmp_use(fs, &fp, torn, why);
		}
	}
	if (r == SPATE_ERR_NOT_FOUND) {
		struct stat st;
		if (stat(fs->dir_path, &st) != 0)
			return sp_err(errstr, size, SPATE_ERR_IO,
			              "file store %s: cannot open its directory %s: %s", fs->path,
			              fs->dir_path, strerror(errno));
		fs->epoch = 0;
		fs->created_ms = 0;
		return SPATE_OK;
	}
	if (r != SPATE_OK)
		return r;
	use_parse(fs, &fp);
	return SPATE_OK;
}

/* ---- writing ------------------------------------------------------------------------- */

static int fault_stop(fstore_t *fs, int step, char *errstr, size_t size)
{
	static const char *const what[] = {"", "a partial write of the tmp file",
	                                   "the full write, before fsync", "fsync, before rename",
	                                   "rename, before the directory fsync"};
	return sp_err(errstr, size, SPATE_ERR_STORE, "file store %s: fault injected after step %d (%s)",
	              fs->path, step, what[step]);
}

/* Write ents as the new content of PATH, crash-safe. stop_after (sp_file_fault_step)
 * ends the save early for tests. On a real failure PATH.tmp is removed and PATH is the
 * old version (unless the rename already happened: then only the directory fsync
 * failed). Returns SPATE_OK or SPATE_ERR_STORE naming the file. Caller holds fs->mu. */
static int write_file(fstore_t *fs, const fent_t *ents, size_t n, uint64_t epoch, int64_t created_ms,
                      int stop_after, char *errstr, size_t size)
{
	sbuf_t b = {0};
	int r = sp_fstore_serialize(ents, n, epoch, created_ms, &b);
	if (r != SPATE_OK) {
		free(b.p);
		return sp_err(errstr, size, r, "file store %s: out of memory", fs->path);
	}
	const char *op = "open";
	int fd = open(fs->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SP_FILE_MODE);
	if (fd < 0)
		goto fail;
	if (stop_after == SP_FILE_FAULT_PARTIAL_WRITE) {
		r = sp_write_all(fd, b.p, b.len / 2, -1);
		close(fd);
		free(b.p);
		return r ? sp_err(errstr, size, SPATE_ERR_STORE, "%s: write: %s", fs->tmp_path,
		                  strerror(errno))
		         : fault_stop(fs, stop_after, errstr, size);
	}
	op = "write";
	if (sp_write_all(fd, b.p, b.len, -1) != 0)
		goto fail_fd;
	if (stop_after == SP_FILE_FAULT_BEFORE_FSYNC) {
		close(fd);
		free(b.p);
		return fault_stop(fs, stop_after, errstr, size);
	}
	op = "fsync";
	if (fsync(fd) != 0)
		goto fail_fd;
	op = "close";
	if (close(fd) != 0)
		goto fail;
	free(b.p);
	b.p = NULL;
	if (stop_after == SP_FILE_FAULT_BEFORE_RENAME)
		return fault_stop(fs, stop_after, errstr, size);
	if (rename(fs->tmp_path, fs->path) != 0) {
		r = sp_err(errstr, size, SPATE_ERR_STORE, "file store: cannot rename %s to %s: %s",
		           fs->tmp_path, fs->path, strerror(errno));
		unlink(fs->tmp_path);
		return r;
	}
	fs->on_disk = true;
	if (stop_after == SP_FILE_FAULT_BEFORE_DIRSYNC)
		return fault_stop(fs, stop_after, errstr, size);
	int dfd = open(fs->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		r = sp_err(errstr, size, SPATE_ERR_STORE, "file store %s: cannot fsync its directory %s: %s",
		           fs->path, fs->dir_path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return r;
	}
	close(dfd);
	return SPATE_OK;

fail_fd:
	r = errno;
	close(fd);
	errno = r;
fail:
	r = sp_err(errstr, size, SPATE_ERR_STORE, "file store %s: %s of %s failed: %s", fs->path, op,
	           fs->tmp_path, strerror(errno));
	free(b.p);
	unlink(fs->tmp_path);
	return r;
}

/* SPATE_ERR_STORE_LOST naming the store and what happened to PATH. */
static int lost_err(const fstore_t *fs, char *errstr, size_t size, const char *what)
{
	return sp_err(errstr, size, SPATE_ERR_STORE_LOST,
	              "file store %s lost its data: %s (epoch %016" PRIx64 " when this process opened it); "
	              "something removed or replaced it while this process held its lock (%s), so spate "
	              "stops rather than overwrite it or start over; `spate checkpoint reset` starts over "
	              "deliberately",
	              fs->path, what, fs->epoch, fs->lock_path);
}

/* Before a save: PATH is still this store's file. While the store holds the lock only it
 * writes PATH, so a PATH that vanished after it was loaded or saved, one that appeared
 * without a save, or one under another epoch was removed or replaced behind its back
 * (guarantee 6): SPATE_ERR_STORE_LOST. SPATE_ERR_STORE when PATH cannot be read. Reads
 * the header line only. Caller holds fs->mu. */
static int check_same_file(const fstore_t *fs, char *errstr, size_t size)
{
	int fd = open(fs->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return sp_err(errstr, size, SPATE_ERR_STORE, "file store %s: cannot open it: %s",
			              fs->path, strerror(errno));
		return fs->on_disk ? lost_err(fs, errstr, size, "the file is gone") : SPATE_OK;
	}
	char head[FSTORE_HEAD_READ], why[512];
	ssize_t got;
	do
		got = pread(fd, head, sizeof head, 0);
	while (got < 0 && errno == EINTR);
	int err = errno;
	close(fd);
	if (got < 0)
		return sp_err(errstr, size, SPATE_ERR_STORE, "file store %s: cannot read it: %s", fs->path,
		              strerror(err));
	uint64_t epoch;
	if (sp_fstore_head_epoch(fs->path, head, (size_t)got, &epoch, why, sizeof why) != SPATE_OK) {
		char what[600];
		snprintf(what, sizeof what, "it is no longer a checkpoint file of this store (%s)", why);
		return lost_err(fs, errstr, size, what);
	}
	if (!fs->on_disk || epoch != fs->epoch) {
		char what[200];
		snprintf(what, sizeof what, "%s with epoch %016" PRIx64,
		         fs->on_disk ? "it was replaced by a file"
		                     : "a file this process did not write appeared",
		         epoch);
		return lost_err(fs, errstr, size, what);
	}
	return SPATE_OK;
}

/* ---- merging ------------------------------------------------------------------------- */

typedef struct upd_ref {
	const char *name;
	size_t idx; /* position in the caller's array: the later of two equal names wins */
} upd_ref_t;

static int upd_cmp(const void *a, const void *b)
{
	const upd_ref_t *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The sorted union of fs->ents and ents (ents win) in *outp and *outn. Names of fs->ents
 * are shared with the result; names new to the store are copies, flagged in *freshp so a
 * failed save frees just those. SPATE_OK, SPATE_ERR_INVALID or SPATE_ERR_NOMEM. */
static int merge(const fstore_t *fs, const sp_store_entry_t *ents, size_t n, fent_t **outp, size_t *outn,
                 bool **freshp, char *errstr, size_t size)
{
	upd_ref_t *u = malloc((n ? n : 1) * sizeof *u);
	fent_t *out = malloc((fs->n + n ? fs->n + n : 1) * sizeof *out);
	bool *fresh = calloc(fs->n + n ? fs->n + n : 1, sizeof *fresh);
	size_t i = 0, j = 0, k = 0;
	if (!u || !out || !fresh)
		goto nomem;
	for (size_t x = 0; x < n; x++) {
		if (!ents[x].name || !ents[x].name[0]) {
			free(u);
			free(out);
			free(fresh);
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "file store %s: entry %zu of the save has no partition name", fs->path,
			              x);
		}
		u[x].name = ents[x].name;
		u[x].idx = x;
	}
	qsort(u, n, sizeof *u, upd_cmp);
	while (i < fs->n || j < n) {
		/* of several updates to one name, only the last (highest idx) counts */
		while (j + 1 < n && strcmp(u[j].name, u[j + 1].name) == 0)
			j++;
		int c = i == fs->n ? 1 : j == n ? -1 : strcmp(fs->ents[i].name, u[j].name);
		if (c < 0) {
			out[k++] = fs->ents[i++];
		} else if (c == 0) {
			out[k].name = fs->ents[i++].name;
			out[k++].ckpt = ents[u[j++].idx].ckpt;
		} else {
			out[k].name = strdup(u[j].name);
			if (!out[k].name)
				goto nomem;
			fresh[k] = true;
			out[k++].ckpt = ents[u[j++].idx].ckpt;
		}
	}
	free(u);
	*outp = out;
	*outn = k;
	*freshp = fresh;
	return SPATE_OK;
nomem:
	for (size_t x = 0; x < k; x++)
		if (fresh[x])
			free(out[x].name);
	free(u);
	free(out);
	free(fresh);
	return sp_err(errstr, size, SPATE_ERR_NOMEM, "file store %s: out of memory", fs->path);
}

/* ---- the vtable ------------------------------------------------------------------------- */

static void fstore_free(fstore_t *fs)
{
	if (!fs)
		return;
	fents_free(fs->ents, fs->n);
	if (fs->lock_fd >= 0)
		close(fs->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&fs->mu);
	free(fs->path);
	free(fs->tmp_path);
	free(fs->lock_path);
	free(fs->dir_path);
	free(fs);
}

/* path followed by suffix, in a new string; NULL when out of memory. */
static char *path_with(const char *path, const char *suffix)
{
	size_t a = strlen(path), b = strlen(suffix);
	char *p = malloc(a + b + 1);
	if (p) {
		memcpy(p, path, a);
		memcpy(p + a, suffix, b + 1);
	}
	return p;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* Take the store's flock on PATH.lock (created when missing), without waiting. */
static int take_lock(fstore_t *fs, char *errstr, size_t size)
{
	fs->lock_fd = open(fs->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, SP_FILE_MODE);
	if (fs->lock_fd < 0)
		return sp_err(errstr, size, SPATE_ERR_IO, "file store %s: cannot open its lock file %s: %s",
		              fs->path, fs->lock_path, strerror(errno));
	while (flock(fs->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			return sp_err(errstr, size, SPATE_ERR_BUSY,
			              "file store %s is in use by another process (%s is locked); a file "
			              "store serves one process",
			              fs->path, fs->lock_path);
		return sp_err(errstr, size, SPATE_ERR_IO, "file store %s: cannot lock %s: %s", fs->path,
		              fs->lock_path, strerror(errno));
	}
	return SPATE_OK;
}

/* Open store=file:PATH: take the lock, then load PATH (see load_files); or, readonly,
 * load it without the lock (see load_readonly). Errors: SPATE_ERR_INVALID (no path, bad
 * SPATE_FAULT_STORE), SPATE_ERR_BUSY (locked by another), SPATE_ERR_IO,
 * SPATE_ERR_CORRUPT, SPATE_ERR_UNSUPPORTED, SPATE_ERR_NOMEM. */
static int open_store(sp_store_t *s, bool readonly, char *errstr, size_t size)
{
	const char *path = s->arg;
	if (!path || !*path)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "store=file: needs a path (file:PATH)");
	if (path[strlen(path) - 1] == '/')
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "store=file:%s names a directory; give a file path (file:DIR/ckpt)", path);
	int64_t fault = readonly ? 0 : sp_fault_hook(FSTORE_FAULT_ENV, errstr, size);
	if (fault < 0)
		return SPATE_ERR_INVALID;
	int r;
	fstore_t *fs = calloc(1, sizeof *fs);
	if (!fs)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "file store %s: out of memory", path);
	fs->lock_fd = -1;
	fs->readonly = readonly;
	fs->eng = s->eng;
	fs->fault_left = fault;
	pthread_mutex_init(&fs->mu, NULL);
	fs->path = strdup(path);
	fs->tmp_path = path_with(path, ".tmp");
	fs->lock_path = path_with(path, ".lock");
	fs->dir_path = dir_of(path);
	if (!fs->path || !fs->tmp_path || !fs->lock_path || !fs->dir_path) {
		r = sp_err(errstr, size, SPATE_ERR_NOMEM, "file store %s: out of memory", path);
		goto fail;
	}
	if (readonly)
		r = load_readonly(fs, errstr, size);
	else if ((r = take_lock(fs, errstr, size)) == SPATE_OK)
		r = load_files(fs, errstr, size);
	if (r != SPATE_OK)
		goto fail;
	if (fs->fault_left == INT64_MAX)
		sp_msg(fs->eng, SP_MSG_WARN, "file store %s: %s is set: every save will fail", path,
		       FSTORE_FAULT_ENV);
	else if (fs->fault_left > 0)
		sp_msg(fs->eng, SP_MSG_WARN, "file store %s: %s is set: the next %" PRId64 " saves will fail", path,
		       FSTORE_FAULT_ENV, fs->fault_left);
	s->ctx = fs;
	return SPATE_OK;
fail:
	fstore_free(fs);
	return r;
}

static int fstore_open(sp_store_t *s, char *errstr, size_t size)
{
	return open_store(s, false, errstr, size);
}

/* A look at the store that takes no lock and writes nothing (sp_store_ops_t). */
static int fstore_open_readonly(sp_store_t *s, char *errstr, size_t size)
{
	return open_store(s, true, errstr, size);
}

/* SPATE_ERR_INVALID naming the store when it was opened read-only; else SPATE_OK. */
static int check_writable(const fstore_t *fs, const char *what, char *errstr, size_t size)
{
	if (!fs->readonly)
		return SPATE_OK;
	return sp_err(errstr, size, SPATE_ERR_INVALID, "file store %s was opened read-only: it cannot %s",
	              fs->path, what);
}

static const fent_t *find(const fstore_t *fs, const char *name)
{
	size_t lo = 0, hi = fs->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(fs->ents[mid].name, name);
		if (c == 0)
			return &fs->ents[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* SPATE_OK with *out set, or SPATE_ERR_NOT_FOUND (no message: it is not a failure). */
static int fstore_load(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size)
{
	fstore_t *fs = s->ctx;
	if (!name)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "file store %s: load without a name",
		              fs->path);
	pthread_mutex_lock(&fs->mu);
	const fent_t *e = find(fs, name);
	if (e)
		*out = e->ckpt;
	pthread_mutex_unlock(&fs->mu);
	return e ? SPATE_OK : SPATE_ERR_NOT_FOUND;
}

static int save_locked(fstore_t *fs, const sp_store_entry_t *ents, size_t n, int stop_after, char *errstr,
                       size_t size)
{
	int r = check_writable(fs, "save", errstr, size);
	if (r != SPATE_OK)
		return r;
	/* the one-process subset of the store interface: no leases */
	for (size_t i = 0; i < n; i++)
		if (ents[i].owner && ents[i].owner[0])
			return sp_err(errstr, size, SPATE_ERR_UNSUPPORTED,
			              "file store %s keeps no leases (one process per store, held by a lock): a "
			              "checkpoint of %s under owner %s's lease is refused; share partitions between "
			              "processes with store=redis://host:port",
			              fs->path, ents[i].name, ents[i].owner);
	if (fs->fault_left) {
		if (fs->fault_left != INT64_MAX)
			fs->fault_left--;
		return sp_err(errstr, size, SPATE_ERR_STORE,
		              "file store %s: save failed on purpose (%s is set)", fs->path,
		              FSTORE_FAULT_ENV);
	}
	fent_t *merged = NULL;
	if ((r = check_same_file(fs, errstr, size)) != SPATE_OK)
		return r;
	size_t mn = 0;
	bool *fresh = NULL;
	r = merge(fs, ents, n, &merged, &mn, &fresh, errstr, size);
	if (r != SPATE_OK)
		return r;
	r = write_file(fs, merged, mn, fs->epoch, fs->created_ms, stop_after, errstr, size);
	if (r != SPATE_OK || stop_after != SP_FILE_FAULT_NONE) {
		for (size_t i = 0; i < mn; i++)
			if (fresh[i])
				free(merged[i].name);
		free(merged);
	} else {
		free(fs->ents); /* the names moved into merged */
		fs->ents = merged;
		fs->n = mn;
	}
	free(fresh);
	return r;
}

/* Merge ents into the store and write it, durably. On failure the store (memory and
 * PATH) still holds the previous set. @locality any thread; saves are serialized. */
static int fstore_save(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size)
{
	fstore_t *fs = s->ctx;
	pthread_mutex_lock(&fs->mu);
	int r = save_locked(fs, ents, n, SP_FILE_FAULT_NONE, errstr, size);
	pthread_mutex_unlock(&fs->mu);
	return r;
}

int sp_store_file_save_fault(sp_store_t *s, const sp_store_entry_t *ents, size_t n, int stop_after,
                             char *errstr, size_t size)
{
	fstore_t *fs = s->ctx;
	if (stop_after < SP_FILE_FAULT_NONE || stop_after > SP_FILE_FAULT_BEFORE_DIRSYNC)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "file store %s: no fault step %d", fs->path,
		              stop_after);
	pthread_mutex_lock(&fs->mu);
	int r = save_locked(fs, ents, n, stop_after, errstr, size);
	pthread_mutex_unlock(&fs->mu);
	return r;
}

uint64_t sp_store_file_epoch(sp_store_t *s)
{
	fstore_t *fs = s->ctx;
	pthread_mutex_lock(&fs->mu);
	uint64_t e = fs->epoch;
	pthread_mutex_unlock(&fs->mu);
	return e;
}

/* fn is called with the store's lock held: it must not call back into the store. */
static int fstore_list(sp_store_t *s, void (*fn)(void *arg, const sp_store_entry_t *ent), void *arg,
                       char *errstr, size_t size)
{
	fstore_t *fs = s->ctx;
	(void)errstr; /* listing memory cannot fail */
	(void)size;
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->n; i++) {
		sp_store_entry_t ent = {.name = fs->ents[i].name, .ckpt = fs->ents[i].ckpt};
		fn(arg, &ent);
	}
	pthread_mutex_unlock(&fs->mu);
	return SPATE_OK;
}

/* Remove one checkpoint (SPATE_ERR_NOT_FOUND naming it when absent) or, with name NULL,
 * all of them under a new epoch. Written like a save. */
static int fstore_reset(sp_store_t *s, const char *name, char *errstr, size_t size)
{
	fstore_t *fs = s->ctx;
	int r = check_writable(fs, "reset", errstr, size);
	if (r != SPATE_OK)
		return r;
	pthread_mutex_lock(&fs->mu);
	if (!name) {
		uint64_t epoch = new_epoch();
		int64_t created = sp_wall_ms();
		r = write_file(fs, NULL, 0, epoch, created, SP_FILE_FAULT_NONE, errstr, size);
		if (r == SPATE_OK) {
			fents_free(fs->ents, fs->n);
			fs->ents = NULL;
			fs->n = 0;
			fs->epoch = epoch;
			fs->created_ms = created;
		}
		goto out;
	}
	const fent_t *e = find(fs, name);
	if (!e) {
		r = sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "file store %s: no checkpoint for partition %s",
		           fs->path, name);
		goto out;
	}
	size_t at = (size_t)(e - fs->ents);
	fent_t *rest = malloc((fs->n > 1 ? fs->n - 1 : 1) * sizeof *rest);
	if (!rest) {
		r = sp_err(errstr, size, SPATE_ERR_NOMEM, "file store %s: out of memory", fs->path);
		goto out;
	}
	memcpy(rest, fs->ents, at * sizeof *rest);
	memcpy(rest + at, fs->ents + at + 1, (fs->n - at - 1) * sizeof *rest);
	r = write_file(fs, rest, fs->n - 1, fs->epoch, fs->created_ms, SP_FILE_FAULT_NONE, errstr, size);
	if (r == SPATE_OK) {
		free(fs->ents[at].name);
		free(fs->ents);
		fs->ents = rest;
		fs->n--;
	} else {
		free(rest);
	}
out:
	pthread_mutex_unlock(&fs->mu);
	return r;
}

static void fstore_close(sp_store_t *s)
{
	fstore_free(s->ctx);
	s->ctx = NULL;
}

const sp_store_ops_t sp_store_file = {
    .version = SP_STORE_OPS_VERSION,
    .name = "file",
    .desc = "file:PATH - every checkpoint in one local file, written crash-safe (one process)",
    .syntax = "file:PATH",
    .open = fstore_open,
    .load = fstore_load,
    .save = fstore_save,
    .list = fstore_list,
    .reset = fstore_reset,
    .close = fstore_close,
    .open_readonly = fstore_open_readonly,
};
