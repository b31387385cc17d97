/* sink.c - the embedded log as a sink and DLQ: `dlq=log:DIR`.
 *
 * write() appends the records (the key's XXH3 hash picks the partition, keyless ones go
 * round robin), fsyncs every partition it touched (and the folder when a segment
 * rolls) and publishes the durable lengths before it returns SPATE_OK, so a record the
 * engine counts as DLQ'd survives a power loss. A missing log is created with one
 * partition. One mutex serializes writers: worker threads call write(). Its option table
 * holds the log writer's keys, which `spate produce` uses too (compression among them).
 */
#include "log.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct sink {
	pthread_mutex_t mu;
	sp_log_producer_t *prod;
} sink_t;

static int sink_open(sp_sink_t *s, char *errstr, size_t size)
{
	const char *dir = s->arg;
	if (!dir || !*dir)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "dlq: log needs a directory (dlq=log:DIR)");
	sp_log_wopts_t o;
	if (s->conf) /* a named sink's own, or spate produce's */
		sp_log_wopts_from_conf(&o, s->conf);
	else if (s->eng)
		sp_log_wopts_from_conf(&o, sp_engine_conf(s->eng));
	else
		sp_log_wopts_default(&o);
	o.eng = s->eng;
	sink_t *k = calloc(1, sizeof(*k));
	if (!k)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	char err[1024];
	int rc = sp_log_producer_open(dir, 1, &o, &k->prod, err, sizeof(err));
	if (rc) {
		free(k);
		return sp_err(errstr, size, rc, "log:%s: %s", dir, err);
	}
	pthread_mutex_init(&k->mu, NULL);
	s->ctx = k;
	return SPATE_OK;
}

/* @locality any worker thread */
static int sink_write(sp_sink_t *s, const spate_push_record_t *recs, size_t n, char *errstr, size_t size)
{
	sink_t *k = s->ctx;
	pthread_mutex_lock(&k->mu);
	int rc = sp_log_producer_send(k->prod, recs, n, -1, errstr, size);
	if (rc == SPATE_OK)
		rc = sp_log_producer_flush(k->prod, errstr, size);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

static size_t sink_max_record_bytes(sp_sink_t *s)
{
	(void)s;
	return SP_LOG_MAX_RECORD_BYTES;
}

static void sink_close(sp_sink_t *s)
{
	sink_t *k = s->ctx;
	if (!k)
		return;
	char err[512];
	if (sp_log_producer_close(k->prod, err, sizeof(err)))
		sp_msg(s->eng, SP_MSG_ERROR, "dlq: %s", err);
	pthread_mutex_destroy(&k->mu);
	free(k);
	s->ctx = NULL;
}

/* The keys of this plugin (its part of the configuration reference). */
static const sp_opt_t log_writer_opts[] = {
    {"segment.bytes", SP_OPT_SIZE, 65536, 1073741824, NULL, "134217728", "log: roll a segment past this size"},
    {"flush.ms", SP_OPT_INT, 0, 3600000, NULL, "100", "log writer: fsync at least this often (0 = every append)"},
    {"flush.records", SP_OPT_INT, 0, INT64_MAX, NULL, "10000", "log writer: fsync after this many records (0 = off)"},
    {"compression", SP_OPT_ENUM, 0, 0, "none|gzip|snappy|lz4|zstd", "none",
     "log writer: compress each batch's records (Kafka's compression.type; snappy in the xerial framing)"},
    {"compression.level", SP_OPT_INT, -131072, 22, NULL, "-1",
     "log writer: the codec's level as Kafka's compression.<codec>.level: gzip 1..9, lz4 1..17, zstd "
     "-131072..22; -1 = Kafka's default (gzip 6, lz4 9, zstd 3); snappy takes none"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_sink_ops_t sp_sink_log = {
    .version = SP_SINK_OPS_VERSION,
    .name = "log",
    .desc = "the embedded log: log:DIR (created with 1 partition when missing; fsync per write)",
    .opts = log_writer_opts,
    .syntax = "log:DIR",
    .open = sink_open,
    .write = sink_write,
    .max_record_bytes = sink_max_record_bytes,
    .close = sink_close,
};
