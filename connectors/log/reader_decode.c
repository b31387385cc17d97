/* reader_decode.c - the decode stage: threads that check CRCs, decompress and fill the
 * record descriptors of the reads the engine thread pre-scanned.
 *
 * The engine thread (reader.c) reads, walks each finished read's batch headers (which
 * are never compressed: batch boundaries, record counts and offsets, so positions and
 * the carry of a cut batch are known at once), allocates the chunk for that many
 * records and queues the read here. A decode thread then does what costs per record:
 * the CRC32C of every batch, decompression into the buffer's arena, and the descriptors
 * (sp_log_parse_scan and sp_log_parse_fill, the same calls as the engine-thread path).
 * The engine thread takes the chunks back in each partition's read order, so the
 * tracker still sees a partition's records in position order.
 *
 * A decode that finds anything the pre-scan could not see (a CRC mismatch, damaged
 * compressed data, bad record framing, a records count that does not match, more
 * decompressed bytes than one chunk may hold) fills nothing: the engine thread then
 * drops what it read after that read, restores the partition's state from before it and
 * parses it again itself, which reports it exactly as without this stage
 * (log.on.corruption, the Corrupt DLQ entry, the error naming file and byte).
 *
 * One mutex guards the job queue; it is taken once per chunk (about 1 MiB of batches),
 * never per record. A finished job writes the reader's eventfd at most once until the
 * engine thread reads it.
 */
#include "reader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* More threads than this are not started, whatever the cores. */
#define DEC_THREADS_MAX 64

struct sp_log_decoders {
	pthread_mutex_t mu;
	pthread_cond_t work_cv, done_cv;
	req_t *head, *tail; /* queued jobs */
	int idle, waiters;
	bool quit;
	int n;
	/* SPATE_LOG_DECODE_DELAY_MS (tests): each job waits this long before it decodes, so a
	 * test sees later reads pre-scanned while an earlier one is still being decoded */
	int delay_ms;
	pthread_t th[DEC_THREADS_MAX];
};

/* Tell the engine thread a job finished: one eventfd write until poll reads it. */
static void kick_done(sp_log_reader_t *r)
{
	if (!atomic_exchange(&r->dec_kicked, true)) {
		uint64_t one = 1;
		ssize_t w = write(r->kick_fd, &one, sizeof(one));
		(void)w; /* EAGAIN: the counter is non-zero already */
	}
}

void sp_log_rd_decode(sp_log_reader_t *r, req_t *q)
{
	(void)r;
	const uint8_t *data = q->buf + q->head - q->carry;
	size_t len = q->carry + q->got;
	sp_chunk_t *c = q->dc;
	sp_log_parse_t in = q->dps, ps = in;
	int stop = q->dend ? SP_LOG_PARSE_END : SP_LOG_PARSE_MORE;
	ps.fast = true;
	ps.headers_only = false;
	sp_log_parse_scan(data, len, &ps);
	bool ok = ps.stop == stop && ps.used == q->exp_used && ps.nrec == c->n && ps.next == q->exp_next &&
	          ps.passed == q->exp_passed;
	if (ok && sp_log_parse_fill(data, &ps, c) != 0) {
		/* headers (c has no room for them yet), or a record the fast scan left unchecked */
		ps = in;
		ps.fast = false;
		ps.headers_only = false;
		sp_log_parse_scan(data, len, &ps);
		ok = ps.stop == stop && ps.used == q->exp_used && ps.nrec == c->n && ps.next == q->exp_next &&
		     ps.passed == q->exp_passed;
		sp_log_dec_t *d = ps.dec;
		if (ok && ps.nhdr > d->hdr_cap) {
			/* kept with the buffer: grows only until buffers in circulation are big enough */
			uint32_t cap = d->hdr_cap * 2 > ps.nhdr ? d->hdr_cap * 2 : ps.nhdr;
			spate_header_t *h = realloc(d->hdrs, (size_t)cap * sizeof(*h));
			if (h) {
				d->hdrs = h;
				d->hdr_cap = cap;
			} else {
				ok = false;
			}
		}
		if (ok) {
			c->hdrs = ps.nhdr ? d->hdrs : NULL;
			c->hdr_cap = ps.nhdr;
			ok = sp_log_parse_fill(data, &ps, c) == 0;
		}
	}
	q->dok = ok;
}

static void *dec_main(void *arg)
{
	sp_log_reader_t *r = arg;
	struct sp_log_decoders *d = r->dec;
	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (!d->head && !d->quit) {
			d->idle++;
			pthread_cond_wait(&d->work_cv, &d->mu);
			d->idle--;
		}
		if (!d->head)
			break;
		req_t *q = d->head;
		d->head = q->jnext;
		if (!d->head)
			d->tail = NULL;
		q->dstate = DEC_RUNNING;
		pthread_mutex_unlock(&d->mu);
		if (d->delay_ms)
			usleep((useconds_t)d->delay_ms * 1000);
		sp_log_rd_decode(r, q);
		pthread_mutex_lock(&d->mu);
		q->dstate = DEC_DONE;
		atomic_store(&q->ddone, true);
		if (d->waiters)
			pthread_cond_broadcast(&d->done_cv);
		pthread_mutex_unlock(&d->mu);
		kick_done(r);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int sp_log_rd_dec_start(sp_log_reader_t *r, int n, char *errstr, size_t size)
{
	if (n > DEC_THREADS_MAX)
		n = DEC_THREADS_MAX;
	struct sp_log_decoders *d = calloc(1, sizeof(*d));
	if (!d)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->work_cv, NULL);
	pthread_cond_init(&d->done_cv, NULL);
	const char *delay = getenv("SPATE_LOG_DECODE_DELAY_MS");
	d->delay_ms = delay ? atoi(delay) : 0;
	r->dec = d;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&d->th[i], NULL, dec_main, r)) {
			sp_log_rd_dec_stop(r);
			return sp_err(errstr, size, SPATE_ERR_NOMEM,
			              "log %s: cannot start decode thread %d of %d", r->dir, i + 1, n);
		}
		d->n++;
	}
	return SPATE_OK;
}

void sp_log_rd_dec_stop(sp_log_reader_t *r)
{
	struct sp_log_decoders *d = r->dec;
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->quit = true;
	pthread_cond_broadcast(&d->work_cv);
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < d->n; i++)
		pthread_join(d->th[i], NULL);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->work_cv);
	pthread_cond_destroy(&d->done_cv);
	free(d);
	r->dec = NULL;
}

void sp_log_rd_dec_submit(sp_log_reader_t *r, req_t *q)
{
	struct sp_log_decoders *d = r->dec;
	q->jnext = NULL;
	atomic_store_explicit(&q->ddone, false, memory_order_relaxed);
	pthread_mutex_lock(&d->mu);
	q->dstate = DEC_QUEUED;
	if (d->tail)
		d->tail->jnext = q;
	else
		d->head = q;
	d->tail = q;
	if (d->idle)
		pthread_cond_signal(&d->work_cv);
	pthread_mutex_unlock(&d->mu);
}

void sp_log_rd_dec_cancel(sp_log_reader_t *r, req_t *q)
{
	struct sp_log_decoders *d = r->dec;
	pthread_mutex_lock(&d->mu);
	if (q->dstate == DEC_QUEUED) {
		req_t *prev = NULL;
		for (req_t *j = d->head; j; prev = j, j = j->jnext)
			if (j == q) {
				if (prev)
					prev->jnext = q->jnext;
				else
					d->head = q->jnext;
				if (d->tail == q)
					d->tail = prev;
				break;
			}
		q->dstate = DEC_DONE;
	}
	d->waiters++;
	while (q->dstate != DEC_DONE)
		pthread_cond_wait(&d->done_cv, &d->mu);
	d->waiters--;
	pthread_mutex_unlock(&d->mu);
}
