/* journal.c - handler=journal:PATH_PREFIX, an at-least-once audit trail for tests and demos.
 *
 * Every worker appends to its own file, PATH_PREFIX.<worker_id> (opened with
 * O_APPEND|O_CREAT in init, closed in fini), one line per record it handled:
 *
 *     <partition name> <position>\n        e.g.  log/orders/3 123456
 *
 * A batch is formatted into the worker's buffer and written with one write() and made
 * durable with one fdatasync() before the handler returns OK, so a record the engine
 * counts as DONE is in the journal, whatever happens to the process afterwards. That is
 * what lets a crash test compare checkpoints with journals: every position at or before
 * a checkpoint must appear in some journal (guarantee 1), and after a restart only
 * positions after the last checkpoint may appear again (guarantee 2).
 *
 * A failed write or fdatasync returns SPATE_HANDLER_FAIL with an error naming the file;
 * the engine retries the batch (a partly written batch may then appear twice: the
 * journal is at-least-once, like everything it audits). No syscall or malloc per
 * record: the buffer grows (rarely) per batch, and a batch holds records of one
 * partition, so one name length bounds every line.
 */
#include "sp_spi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What spate_position_fmt needs for any position. */
#define JOURNAL_POS_MAX SPATE_POSITION_MAX
/* The first buffer of a worker; it grows to fit the largest batch seen. */
#define JOURNAL_BUF_INIT (64 * 1024)

typedef struct journal_op {
	spate_engine_t *eng; /* for sp_log; may be NULL */
	int64_t sleep_ms;    /* journal.sleep.ms: a slow handler for the lease tests */
	char prefix[];       /* PATH_PREFIX */
} journal_op_t;

typedef struct journal_worker {
	int fd;
	char *buf;
	size_t cap;
	char path[]; /* PATH_PREFIX.<worker_id> */
} journal_worker_t;

static int journal_init(void *opaque, int worker_id, void **wctx)
{
	journal_op_t *o = opaque;
	size_t plen = strlen(o->prefix) + 16;
	journal_worker_t *w = calloc(1, sizeof(*w) + plen);
	if (!w)
		return SPATE_ERR_NOMEM;
	snprintf(w->path, plen, "%s.%d", o->prefix, worker_id);
	w->cap = JOURNAL_BUF_INIT;
	w->buf = malloc(w->cap);
	if (!w->buf) {
		free(w);
		return SPATE_ERR_NOMEM;
	}
	w->fd = open(w->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, SP_FILE_MODE);
	if (w->fd < 0) {
		sp_msg(o->eng, SP_MSG_ERROR, "handler: journal cannot open %s: %s", w->path, strerror(errno));
		free(w->buf);
		free(w);
		return SPATE_ERR_IO;
	}
	*wctx = w;
	return SPATE_OK;
}

static void journal_fini(void *opaque, void *wctx)
{
	journal_worker_t *w = wctx;
	if (!w)
		return;
	close(w->fd);
	free(w->buf);
	free(w);
}

static int journal_fail(spate_batch_t *b, journal_worker_t *w, const char *what, int err)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "journal %s: %s: %s", w->path, what, strerror(err));
	spate_batch_set_error(b, msg);
	return SPATE_HANDLER_FAIL;
}

static int journal_handle(void *opaque, void *wctx, spate_batch_t *b)
{
	journal_worker_t *w = wctx;
	size_t n = spate_batch_count(b);
	if (!n)
		return SPATE_HANDLER_OK;
	const spate_record_t *const *recs = spate_batch_records(b);

	/* One partition per batch, so one name for every line; still take the longest in
	 * case a later version mixes partitions (a strlen per record, no syscall). */
	size_t name_max = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(recs[i]->partition->name);
		if (l > name_max)
			name_max = l;
	}
	size_t need = n * (name_max + 1 + JOURNAL_POS_MAX + 1);
	if (need > w->cap) {
		size_t cap = w->cap;
		while (cap < need)
			cap *= 2;
		char *nb = realloc(w->buf, cap);
		if (!nb)
			return journal_fail(b, w, "buffer", ENOMEM);
		w->buf = nb;
		w->cap = cap;
	}

	char *p = w->buf;
	for (size_t i = 0; i < n; i++) {
		const spate_record_t *r = recs[i];
		size_t l = strlen(r->partition->name);
		memcpy(p, r->partition->name, l);
		p += l;
		*p++ = ' ';
		spate_position_fmt(&r->position, p, JOURNAL_POS_MAX);
		p += strlen(p);
		*p++ = '\n';
	}

	size_t len = (size_t)(p - w->buf), off = 0;
	while (off < len) {
		ssize_t wr = write(w->fd, w->buf + off, len - off);
		if (wr < 0) {
			if (errno == EINTR)
				continue;
			return journal_fail(b, w, "write", errno);
		}
		off += (size_t)wr;
	}
	while (fdatasync(w->fd) < 0) {
		if (errno != EINTR)
			return journal_fail(b, w, "fdatasync", errno);
	}
	journal_op_t *o = opaque;
	if (o->sleep_ms) {
		struct timespec ts = {o->sleep_ms / 1000, (o->sleep_ms % 1000) * 1000000}, left;
		while (nanosleep(&ts, &left) < 0 && errno == EINTR)
			ts = left;
	}
	return SPATE_HANDLER_OK;
}

static int journal_create(const char *arg, const spate_conf_t *conf, spate_engine_t *e, spate_handler_t *h,
                          char *err, size_t sz)
{
	if (!arg || !*arg)
		return sp_err(err, sz, SPATE_ERR_INVALID,
		              "handler: journal needs a path prefix (journal:PATH_PREFIX; each worker "
		              "appends to PATH_PREFIX.<worker id>), got \"\"");
	size_t len = strlen(arg);
	journal_op_t *o = calloc(1, sizeof(*o) + len + 1);
	if (!o)
		return sp_err(err, sz, SPATE_ERR_NOMEM, "handler: out of memory");
	o->eng = e;
	o->sleep_ms = conf ? sp_conf_int(conf, "journal.sleep.ms") : 0;
	memcpy(o->prefix, arg, len + 1);
	memset(h, 0, sizeof(*h));
	h->version = SPATE_HANDLER_VERSION;
	h->name = "journal";
	h->init = journal_init;
	h->handle = journal_handle;
	h->fini = journal_fini;
	h->opaque = o;
	return SPATE_OK;
}

static void journal_destroy(spate_handler_t *h)
{
	free(h->opaque);
	h->opaque = NULL;
}

static const sp_opt_t journal_opts[] = {
    {"journal.sleep.ms", SP_OPT_INT, 0, 60000, NULL, "0",
     "journal: sleep this long after each batch is written (tests: a slow handler that still records what it "
     "handled)"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_operator_ops_t sp_op_journal = {
    .version = SP_OPERATOR_OPS_VERSION,
    .name = "journal",
    .desc = "journal:PATH_PREFIX appends \"partition position\" per record to PATH_PREFIX.<worker>, "
            "fdatasync'd per batch",
    .syntax = "journal:PATH_PREFIX",
    .opts = journal_opts,
    .create = journal_create,
    .ignores_headers = true,
    .destroy = journal_destroy,
};
