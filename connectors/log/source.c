/* source.c - the embedded log as a source: `source=log:DIR`.
 *
 * A thin layer over reader.c: open() registers every partition of the log with the
 * engine (topic = the directory's base name, so ids are "log/NAME/P/OFFSET") and, with
 * stop.at.end, notes each partition's last durable offset as its end; seek() turns a
 * checkpoint or starting.position into an offset; poll() hands out the reader's chunks.
 * Positions are offsets: sp_pos(offset).
 *
 * log.on.corruption=fail stops the run with SPATE_ERR_CORRUPT naming the segment file
 * and byte offset; skip skips to the next valid batch and reports the range through
 * the reader's hook, which writes a DLQ entry with condition Corrupt for it
 * (sp_engine_dead_letter_range); the reader then hands on a record-less chunk
 * (sp_chunk_skip) that lets the checkpoint pass the offsets the region held, so a
 * region at a partition's end does not keep stop.at.end from ending.
 *
 * @locality every callback runs on the engine thread.
 */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* The topic name is the directory's base name, cut to this many bytes. */
#define TOPIC_MAX 256

typedef struct src {
	sp_log_reader_t *rd;
	char topic[TOPIC_MAX];
	bool stop_at_end;
	uint64_t corrupt_regions;
	int dlq_rc; /* a Corrupt DLQ entry could not be written: poll fails */
	char dlq_err[2048];
	sp_engine_t *eng;
	sp_log_push_t *lp; /* log.push=true: spate_push() appends durably (lpush.c) */
} src_t;

static sp_chunk_t *chunk_alloc(void *opaque, sp_part_t *p, uint32_t n, uint32_t hdr_cap)
{
	(void)opaque;
	return sp_chunk_new_bare(p, n, hdr_cap); /* sp_log_parse_fill writes every field */
}

static void chunk_free(void *opaque, sp_chunk_t *c)
{
	(void)opaque;
	c->release = NULL; /* the reader released the buffer already */
	c->buf = NULL;
	sp_chunk_free(c);
}

/* Offsets up to `to` hold no record to deliver (a skipped corrupt region, or what lies
 * between the last record and the stop.at.end end): the checkpoint may pass them. */
static sp_chunk_t *chunk_skip(void *opaque, sp_part_t *p, uint64_t to)
{
	(void)opaque;
	return sp_chunk_skip(p, sp_pos(to));
}

/* The reader skipped a bad region (log.on.corruption=skip): a DLQ entry with condition
 * Corrupt describes it. If that cannot be written the source stops with the error, so the
 * region is read (and reported) again after a restart: nothing is skipped silently. */
static void on_corrupt(void *opaque, const sp_log_corrupt_info_t *info)
{
	src_t *x = opaque;
	x->corrupt_regions++;
	sp_part_t *p = NULL;
	for (size_t i = 0; i < sp_engine_partition_count(x->eng); i++)
		if (sp_engine_partition(x->eng, i)->pub.partition == info->partition)
			p = sp_engine_partition(x->eng, i);
	if (!p || x->dlq_rc)
		return;
	char why[1024];
	snprintf(why, sizeof(why), "corrupt log data: %s: bytes %" PRIu64 "..%" PRIu64 ": %s", info->file,
	         info->byte, info->byte + info->bytes, info->why ? info->why : "bad batch");
	spate_position_t a = sp_pos(info->first_offset), b = sp_pos(info->last_offset);
	char err[400];
	int rc = sp_engine_dead_letter_range(x->eng, p, &a, &b, why, err, sizeof(err));
	if (rc) {
		x->dlq_rc = rc;
		snprintf(x->dlq_err, sizeof(x->dlq_err),
		         "%.200s: cannot write the Corrupt DLQ entry for %.1024s: %.400s", p->pub.name, why,
		         err);
	}
}

static void topic_of(const char *dir, char *out, size_t size)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	size_t b = n;
	while (b > 0 && dir[b - 1] != '/')
		b--;
	size_t len = n - b;
	if (len >= size)
		len = size - 1;
	memcpy(out, dir + b, len);
	out[len] = 0;
}

static int log_open(sp_source_t *s, char *errstr, size_t size)
{
	const char *dir = s->arg;
	if (!dir || !*dir)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "source: log needs a directory (source=log:DIR)");
	const spate_conf_t *conf = sp_engine_conf(s->eng);
	src_t *x = calloc(1, sizeof(*x));
	if (!x)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	x->eng = s->eng;
	x->stop_at_end = sp_conf_bool(conf, "stop.at.end");
	topic_of(dir, x->topic, sizeof(x->topic));
	sp_log_ropts_t o = {0};
	o.skip_corrupt = !strcmp(sp_conf_str(conf, "log.on.corruption"), "skip");
	o.redrive = sp_conf_bool(conf, "source.redrive");
	o.direct = sp_conf_bool(conf, "log.read.direct");
	o.decode_threads = (int)sp_conf_int(conf, "log.decode.threads");
	o.decode_min_bytes = (size_t)sp_conf_int(conf, "log.decode.min.bytes");
	o.alloc = chunk_alloc;
	o.free = chunk_free;
	o.skip = chunk_skip;
	o.on_corrupt = on_corrupt;
	o.corrupt_opaque = x;
	o.eng = s->eng;
	char err[1024];
	int rc;
	bool push = sp_conf_bool(conf, "log.push");
	if (push) {
		/* the log the program pushes into: made with push.partitions when missing */
		int np;
		rc = sp_log_meta_read(dir, &np, err, sizeof(err));
		if (rc == SPATE_ERR_NOT_FOUND)
			rc = sp_log_create(dir, (int)sp_conf_int(conf, "push.partitions"), err, sizeof(err));
		if (rc) {
			free(x);
			return sp_err(errstr, size, rc, "source=log:%s (log.push): %s", dir, err);
		}
	}
	rc = sp_log_reader_open(dir, &o, &x->rd, err, sizeof(err));
	if (rc) {
		free(x);
		return sp_err(errstr, size, rc, "source=log:%s: %s", dir, err);
	}
	int n = sp_log_reader_partitions(x->rd);
	bool leased = sp_engine_leased(s->eng);
	for (int i = 0; i < n; i++) {
		sp_part_t *p = NULL;
		if (!leased) {
			p = sp_engine_add_partition(s->eng, "log", x->topic, i, NULL);
			if (!p) {
				sp_log_reader_close(x->rd);
				free(x);
				return sp_err(errstr, size, SPATE_ERR_NOMEM, "source=log:%s: out of memory",
				              dir);
			}
			sp_log_reader_bind(x->rd, i, p);
		}
		if (!x->stop_at_end) {
			if (leased && sp_engine_lease_candidate(s->eng, i, "log", x->topic, i, NULL, NULL,
			                                        false, NULL)) {
				sp_log_reader_close(x->rd);
				free(x);
				return sp_err(errstr, size, SPATE_ERR_NOMEM, "source=log:%s: out of memory",
				              dir);
			}
			continue;
		}
		/* The end is the last record there is, not the durable next offset minus one:
		 * a trailing control batch (Kafka transactions) is never delivered. */
		bool has;
		uint64_t last = 0;
		if ((rc = sp_log_reader_last_record(x->rd, i, &has, &last, err, sizeof(err)))) {
			sp_log_reader_close(x->rd);
			free(x);
			return sp_err(errstr, size, rc, "source=log:%s: %s", dir, err);
		}
		spate_position_t end = sp_pos(last);
		if (p) {
			p->has_end = has;
			p->end = end;
		} else if (sp_engine_lease_candidate(s->eng, i, "log", x->topic, i, NULL, NULL, has, &end)) {
			sp_log_reader_close(x->rd);
			free(x);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "source=log:%s: out of memory", dir);
		}
		sp_log_reader_set_end(x->rd, i, has, last);
	}
	if (push) {
		sp_log_wopts_t wo;
		sp_log_wopts_from_conf(&wo, conf);
		wo.eng = s->eng;
		rc = sp_log_push_open(dir, n, &wo, (uint64_t)sp_conf_int(conf, "log.push.max.lag"), s->eng,
		                      &x->lp, err, sizeof(err));
		if (rc) {
			sp_log_reader_close(x->rd);
			free(x);
			return sp_err(errstr, size, rc, "source=log:%s (log.push): %s", dir, err);
		}
	}
	s->ctx = x;
	return SPATE_OK;
}

static int log_seek(sp_source_t *s, sp_part_t *p, const sp_ckpt_t *ckpt, sp_ckpt_t *resolved, char *errstr,
                    size_t size)
{
	src_t *x = s->ctx;
	int i = p->pub.partition;
	uint64_t start, next, off;
	int rc = sp_log_reader_bounds(x->rd, i, &start, &next, errstr, size);
	if (rc)
		return rc;
	if (ckpt) {
		/* "beginning" is offset 0: a start resolved past 0 is saved as the offset before
		 * it, so a checkpoint always names a concrete offset (guarantee 6) */
		if (ckpt->beginning) {
			off = 0;
		} else {
			if (!sp_pos_is_offset(&ckpt->after) || ckpt->after.w[2] == UINT64_MAX)
				return sp_err(errstr, size, SPATE_ERR_INVALID,
				              "%s: checkpoint is not a log offset", p->pub.name);
			off = ckpt->after.w[2] + 1;
		}
		if (off < start) {
			const char *st = sp_conf_str(sp_engine_conf(s->eng), "store");
			return sp_err(
			    errstr, size, SPATE_ERR_OUT_OF_RANGE,
			    "%s: records at offsets %" PRIu64 "..%" PRIu64
			    " were removed from log:%s before they "
			    "were handled (the checkpoint resumes at offset %" PRIu64
			    ", the partition now starts "
			    "at %" PRIu64 "); nothing is skipped silently: to start this partition again at "
			    "starting.position, run `spate checkpoint reset %s --partition %s`",
			    p->pub.name, off, start - 1, s->arg, off, start, *st ? st : "STORE", p->pub.name);
		}
		return sp_log_reader_seek(x->rd, i, off, errstr, size);
	}
	const char *sp = sp_conf_str(sp_engine_conf(s->eng), "starting.position");
	if (!strcmp(sp, "latest")) {
		off = next;
	} else if (!strncmp(sp, "at-timestamp:", 13)) {
		int64_t ts = strtoll(sp + 13, NULL, 10);
		if ((rc = sp_log_reader_find_ts(x->rd, i, ts, &off, errstr, size)))
			return rc;
	} else {
		off = start;
	}
	if ((rc = sp_log_reader_seek(x->rd, i, off, errstr, size)))
		return rc;
	if (resolved) {
		memset(resolved, 0, sizeof(*resolved));
		if (off == 0) {
			resolved->beginning = true;
		} else {
			resolved->beginning = false;
			resolved->after = sp_pos(off - 1);
		}
	}
	return SPATE_OK;
}

static int log_poll(sp_source_t *s, sp_chunk_t **out, int max, uint64_t budget_bytes, char *errstr,
                    size_t size)
{
	src_t *x = s->ctx;
	int n = sp_log_reader_poll(x->rd, out, max, budget_bytes, errstr, size);
	if (x->lp) /* the lag of the durable push: what is durable and not yet read */
		for (int i = 0; i < sp_log_reader_partitions(x->rd); i++)
			sp_log_push_delivered(x->lp, i, sp_log_reader_next(x->rd, i));
	if (x->dlq_rc && n >= 0) {
		for (int i = 0; i < n; i++)
			sp_chunk_free(out[i]);
		return sp_err(errstr, size, x->dlq_rc, "%s", x->dlq_err);
	}
	return n;
}

static int log_fd(sp_source_t *s)
{
	src_t *x = s->ctx;
	return sp_log_reader_fd(x->rd);
}

static uint64_t log_min_inflight(sp_source_t *s, char *why, size_t size)
{
	src_t *x = s->ctx;
	size_t n = sp_log_reader_partitions(x->rd);
	snprintf(why, size, "one read of each of the %zu partitions of log:%s", n, s->arg);
	return (uint64_t)n * SP_LOG_POOL_BUF_BYTES;
}

/* The default store: DIR/checkpoints/PIPELINE, a file store beside the partitions (the
 * folder is made, private to the user, when missing). */
static int log_default_store(sp_source_t *s, const char *pipeline, char *buf, size_t size, char *errstr,
                             size_t errsize)
{
	char d[SP_LOG_PATH_MAX];
	snprintf(d, sizeof(d), "%s/%s", s->arg, SP_LOG_CKPT_DIR);
	if (mkdir(d, SP_DIR_MODE) < 0 && errno != EEXIST)
		return sp_err(errstr, errsize, SPATE_ERR_IO, "cannot make %s: %s", d, strerror(errno));
	if ((size_t)snprintf(buf, size, "file:%s/%s", d, pipeline) >= size)
		return sp_err(errstr, errsize, SPATE_ERR_INVALID, "the path %s/%s is too long", d, pipeline);
	return SPATE_OK;
}

static int64_t log_lag(sp_source_t *s)
{
	src_t *x = s->ctx;
	return sp_log_reader_lag(x->rd);
}

static int64_t log_part_lag(sp_source_t *s, sp_part_t *p)
{
	src_t *x = s->ctx;
	return sp_log_reader_part_lag(x->rd, p->pub.partition);
}

static bool log_ended(sp_source_t *s)
{
	src_t *x = s->ctx;
	/* a durable push ends once the program closed it and everything pushed is read: what
	 * the pushes appended, not what the reader has seen of it yet */
	if (x->lp)
		return sp_log_push_closed(x->lp) && sp_log_push_all_delivered(x->lp) &&
		       sp_log_reader_lag(x->rd) == 0;
	return x->stop_at_end && sp_log_reader_ended(x->rd);
}

static int log_push(sp_source_t *s, int32_t partition, const spate_push_record_t *recs, size_t cnt,
                    spate_position_t *positions)
{
	src_t *x = s->ctx;
	if (!x->lp)
		return SPATE_ERR_STATE; /* log.push is off */
	return sp_log_push(x->lp, partition, recs, cnt, positions);
}

static void log_push_close(sp_source_t *s)
{
	src_t *x = s->ctx;
	if (x->lp)
		sp_log_push_close_input(x->lp);
}

/* Lease mode: this process took partition index's lease. */
static sp_part_t *log_take(sp_source_t *s, int index, char *errstr, size_t size)
{
	src_t *x = s->ctx;
	if (index < 0 || index >= sp_log_reader_partitions(x->rd)) {
		sp_err(errstr, size, SPATE_ERR_INVALID, "source=log:%s: no partition %d", s->arg, index);
		return NULL;
	}
	sp_part_t *p = sp_engine_add_partition(s->eng, "log", x->topic, index, NULL);
	if (!p) {
		sp_err(errstr, size, SPATE_ERR_NOMEM, "source=log:%s: out of memory", s->arg);
		return NULL;
	}
	sp_log_reader_bind(x->rd, index, p);
	return p;
}

/* A partition given to sp_engine_partition_release is released (lease mode: the lease is
 * lost or given up): the reader stops reading it. */
static void log_released(sp_source_t *s, sp_part_t *p, bool saved)
{
	src_t *x = s->ctx;
	if (x && p->pub.partition >= 0 && p->pub.partition < sp_log_reader_partitions(x->rd))
		sp_log_reader_unbind(x->rd, p->pub.partition, p);
}

static void log_close(sp_source_t *s)
{
	src_t *x = s->ctx;
	if (!x)
		return;
	if (x->corrupt_regions)
		sp_msg(x->eng, SP_MSG_WARN,
		       "log: %" PRIu64 " corrupt regions were skipped (log.on.corruption=skip)",
		       x->corrupt_regions);
	sp_log_push_free(x->lp);
	sp_log_reader_close(x->rd);
	free(x);
	s->ctx = NULL;
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t log_reader_opts[] = {
    {"log.on.corruption", SP_OPT_ENUM, 0, 0, "fail|skip", "fail",
     "log reader: on a bad batch with data after it, stop with an error or skip it (logged and counted)"},
    {"log.read.direct", SP_OPT_BOOL, 0, 1, NULL, "false",
     "log reader: read segments with O_DIRECT into aligned buffers, bypassing the page cache (for "
     "logs far larger than memory, read once; the file system must support O_DIRECT)"},
    {"log.decode.threads", SP_OPT_INT, -1, 64, NULL, "-1",
     "log reader: threads that check CRCs, decompress and decode records (the decode stage); "
     "-1: one per core; 0: the engine thread does it"},
    {"log.decode.min.bytes", SP_OPT_INT, 0, 64 << 20, NULL, "65536",
     "log reader: a read of fewer bytes (a reader at the log's tail) is decoded on the engine "
     "thread, skipping the decode stage's two thread hand-offs (lower latency); 0: every read "
     "goes to the stage"},
    {"source.redrive", SP_OPT_BOOL, 0, 1, NULL, "false",
     "log source: read a DLQ back (spate dlq redrive): drop spate.* headers, timestamps = now"},
    {"log.push", SP_OPT_BOOL, 0, 1, NULL, "false",
     "log source: spate_push() appends to the log durably (group commit) and the pipeline reads it "
     "back; a new log gets push.partitions partitions"},
    {"log.push.max.lag", SP_OPT_INT, 1, INT64_MAX, NULL, "1000000",
     "log source with log.push: records a partition holds durable but not yet read before a push "
     "takes no more (backpressure)"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_source_ops_t sp_source_log = {
    .version = SP_SOURCE_OPS_VERSION,
    .name = "log",
    .desc = "the embedded log: log:DIR (Kafka RecordBatch v2 segments, io_uring reads)",
    .opts = log_reader_opts,
    .syntax = "log:DIR",
    .open = log_open,
    .seek = log_seek,
    .poll = log_poll,
    .fd = log_fd,
    .min_inflight_bytes = log_min_inflight,
    .next_ms = NULL,
    .lag = log_lag,
    .part_lag = log_part_lag,
    .push = log_push,
    .push_close = log_push_close,
    .ended = log_ended,
    .close = log_close,
    .default_store_uri = log_default_store,
    .released = log_released,
    .take = log_take,
};
