/* producer.c - a producer over all partitions of a log, on their writers (writer.c).
 *
 * Each record goes to the partition given, or to the one its key hashes to
 * (XXH3_64bits(key) % partitions), keyless records round robin. A partition's writer is
 * opened on its first record; after a send, the partitions it touched apply their flush
 * policy, and tick applies the time-based one. `spate produce`, the log sink and the
 * tests write through it.
 *
 * Not thread-safe: one thread at a time per producer, like its writers.
 */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

struct sp_log_producer {
	char dir[SP_LOG_PATH_MAX];
	int nparts;
	sp_log_wopts_t o;
	sp_log_writer_t **w; /* opened on first use */
	uint8_t *touched;
	uint64_t rr; /* round robin for keyless records */
};

int sp_log_producer_open(const char *dir, int create_partitions, const sp_log_wopts_t *o,
                         sp_log_producer_t **out, char *errstr, size_t size)
{
	int parts, rc = o ? sp_log_wopts_check(o, errstr, size) : SPATE_OK;
	if (rc)
		return rc;
	rc = sp_log_meta_read(dir, &parts, errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND && create_partitions > 0) {
		if ((rc = sp_log_create(dir, create_partitions, errstr, size)))
			return rc;
		rc = sp_log_meta_read(dir, &parts, errstr, size);
	}
	if (rc)
		return rc;
	sp_log_producer_t *p = calloc(1, sizeof(*p));
	if (!p || !(p->w = calloc((size_t)parts, sizeof(*p->w))) ||
	    !(p->touched = calloc((size_t)parts, 1))) {
		if (p)
			free(p->w);
		free(p);
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	}
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	p->nparts = parts;
	if (o)
		p->o = *o;
	else
		sp_log_wopts_default(&p->o);
	*out = p;
	return SPATE_OK;
}

int sp_log_producer_partitions(const sp_log_producer_t *p)
{
	return p->nparts;
}

int sp_log_producer_pick(sp_log_producer_t *p, const void *key, size_t key_len, bool keyless)
{
	if (keyless)
		return (int)(p->rr++ % (uint64_t)p->nparts);
	return (int)(XXH3_64bits(key, key_len) % (uint64_t)p->nparts);
}

int sp_log_producer_send(sp_log_producer_t *p, const spate_push_record_t *recs, size_t n, int partition,
                         char *errstr, size_t size)
{
	if (partition >= p->nparts)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "%s: partition %d does not exist (the log has %d: 0..%d)", p->dir, partition,
		              p->nparts, p->nparts - 1);
	int64_t now = sp_wall_ms();
	int rc = SPATE_OK;
	for (size_t i = 0; i < n && rc == SPATE_OK; i++) {
		const spate_push_record_t *r = &recs[i];
		int pi = partition >= 0 ? partition : sp_log_producer_pick(p, r->key, r->key_len, !r->key);
		if (!p->w[pi] && (rc = sp_log_writer_open(p->dir, pi, &p->o, &p->w[pi], errstr, size)))
			break;
		p->touched[pi] = 1;
		rc = sp_log_writer_put(p->w[pi], r, r->timestamp_ms ? r->timestamp_ms : now, NULL, errstr,
		                       size);
	}
	int64_t mono = sp_now_ms();
	for (int i = 0; i < p->nparts; i++) {
		if (!p->touched[i])
			continue;
		p->touched[i] = 0;
		int r2 = sp_log_writer_maybe_flush(p->w[i], mono, rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r2;
	}
	return rc;
}

int sp_log_producer_flush(sp_log_producer_t *p, char *errstr, size_t size)
{
	int rc = SPATE_OK;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->w[i])
			continue;
		int r = sp_log_writer_flush(p->w[i], rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r;
	}
	return rc;
}

int64_t sp_log_producer_tick(sp_log_producer_t *p, char *errstr, size_t size, int *err)
{
	int64_t now = sp_now_ms(), next = -1;
	*err = SPATE_OK;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->w[i])
			continue;
		int rc = sp_log_writer_maybe_flush(p->w[i], now, *err ? NULL : errstr, size);
		if (rc && *err == SPATE_OK)
			*err = rc;
		int64_t due = sp_log_writer_flush_due(p->w[i], now);
		if (due >= 0 && (next < 0 || due < next))
			next = due;
	}
	return next;
}

int sp_log_producer_close(sp_log_producer_t *p, char *errstr, size_t size)
{
	if (!p)
		return SPATE_OK;
	int rc = SPATE_OK;
	for (int i = 0; i < p->nparts; i++) {
		if (!p->w[i])
			continue;
		int r = sp_log_writer_close(p->w[i], rc ? NULL : errstr, size);
		if (rc == SPATE_OK)
			rc = r;
	}
	free(p->w);
	free(p->touched);
	free(p);
	return rc;
}
