/* bufpool.c - the reader's read buffers, shared with the chunks that own them.
 *
 * A read lands in a buffer that becomes its chunk's (chunk->buf); the engine releases
 * it when the chunk's last record is DONE, on its tracker thread, possibly after the
 * reader is closed. So the pool is reference counted (the reader plus every buffer out
 * of it) and guarded by a mutex (one lock per read buffer, never per record).
 *
 * Full-size buffers (SP_LOG_POOL_BUF_BYTES) come first from the registered ones (memory
 * the reader registered with its ring, read with READ_FIXED), then from plain ones kept
 * for reuse, then from malloc; other sizes are malloc'd and freed. A plain buffer
 * carries a small header with its size in front of its data.
 *
 * Every buffer has a decode arena (sp_log_pool_dec): the parse of the buffer decompresses
 * its compressed batches there, so the chunk's records that point into decompressed bytes
 * live exactly as long as the ones that point into the buffer, and go back with it in the
 * one release. A plain buffer's arena is in its header, a registered buffer's in an array
 * beside them. An arena keeps its memory (up to SP_LOG_DEC_KEEP_BYTES) and its codec
 * contexts while its buffer waits in the pool, so reading a compressed log allocates
 * nothing per batch once the buffers in circulation have grown their arenas.
 */
#include "log.h"

#include <pthread.h>
#include <stdlib.h>

/* Plain full-size buffers kept for reuse once chunks release them. */
#define POOL_KEEP_PLAIN 64

typedef struct bufhdr {
	_Alignas(16) size_t cap; /* the struct's size is a multiple of 16: the data after it
	                          * stays 16-byte aligned */
	sp_log_dec_t dec;
} bufhdr_t;

struct sp_log_pool {
	pthread_mutex_t mu;
	int refs;     /* the owner, plus each buffer out of the pool */
	uint8_t *reg; /* n_reg registered buffers, contiguous */
	size_t n_reg;
	sp_log_dec_t *reg_dec; /* their decode arenas */
	int *reg_free;
	size_t reg_free_n;
	bufhdr_t *plain[POOL_KEEP_PLAIN];
	size_t plain_n;
};

sp_log_pool_t *sp_log_pool_new(void)
{
	sp_log_pool_t *pl = calloc(1, sizeof(*pl));
	if (!pl)
		return NULL;
	pthread_mutex_init(&pl->mu, NULL);
	pl->refs = 1;
	return pl;
}

int sp_log_pool_adopt(sp_log_pool_t *pl, uint8_t *mem, size_t n)
{
	int *fr = calloc(n, sizeof(int));
	sp_log_dec_t *dec = calloc(n, sizeof(*dec)); /* zeroed: sp_log_dec_init */
	if (!fr || !dec) {
		free(fr);
		free(dec);
		return SPATE_ERR_NOMEM;
	}
	pthread_mutex_lock(&pl->mu);
	pl->reg = mem;
	pl->n_reg = n;
	pl->reg_dec = dec;
	pl->reg_free = fr;
	for (size_t i = 0; i < n; i++)
		pl->reg_free[pl->reg_free_n++] = (int)(n - 1 - i);
	pthread_mutex_unlock(&pl->mu);
	return SPATE_OK;
}

size_t sp_log_pool_registered(const sp_log_pool_t *pl)
{
	return pl->n_reg;
}

static void pool_destroy(sp_log_pool_t *pl)
{
	for (size_t i = 0; i < pl->plain_n; i++) {
		sp_log_dec_free(&pl->plain[i]->dec);
		free(pl->plain[i]);
	}
	for (size_t i = 0; i < pl->n_reg; i++)
		sp_log_dec_free(&pl->reg_dec[i]);
	free(pl->reg_dec);
	free(pl->reg);
	free(pl->reg_free);
	pthread_mutex_destroy(&pl->mu);
	free(pl);
}

uint8_t *sp_log_pool_get(sp_log_pool_t *pl, size_t cap, int *reg)
{
	*reg = -1;
	uint8_t *b = NULL;
	pthread_mutex_lock(&pl->mu);
	if (cap == SP_LOG_POOL_BUF_BYTES && pl->reg_free_n) {
		*reg = pl->reg_free[--pl->reg_free_n];
		b = pl->reg + (size_t)*reg * SP_LOG_POOL_BUF_BYTES;
	} else if (cap == SP_LOG_POOL_BUF_BYTES && pl->plain_n) {
		b = (uint8_t *)(pl->plain[--pl->plain_n] + 1);
	}
	pl->refs++; /* taken back below when the malloc fails */
	pthread_mutex_unlock(&pl->mu);
	if (b)
		return b;
	bufhdr_t *h = malloc(sizeof(*h) + cap);
	if (!h) {
		sp_log_pool_unref(pl);
		return NULL;
	}
	h->cap = cap;
	sp_log_dec_init(&h->dec);
	return (uint8_t *)(h + 1);
}

/* Registered buffers are adopted before the first one is handed out and never change, so
 * pl->reg and n_reg are read without the lock by whoever holds a buffer. */
static bool is_registered(const sp_log_pool_t *pl, const uint8_t *b)
{
	return pl->reg && b >= pl->reg && b < pl->reg + pl->n_reg * SP_LOG_POOL_BUF_BYTES;
}

sp_log_dec_t *sp_log_pool_dec(sp_log_pool_t *pl, uint8_t *b)
{
	if (is_registered(pl, b))
		return &pl->reg_dec[(size_t)(b - pl->reg) / SP_LOG_POOL_BUF_BYTES];
	return &((bufhdr_t *)b - 1)->dec;
}

void sp_log_pool_put(sp_log_pool_t *pl, uint8_t *b)
{
	/* while b is still this thread's alone: its arena forgets its batches */
	sp_log_dec_trim(sp_log_pool_dec(pl, b), SP_LOG_DEC_KEEP_BYTES);
	pthread_mutex_lock(&pl->mu);
	if (is_registered(pl, b)) {
		pl->reg_free[pl->reg_free_n++] = (int)((size_t)(b - pl->reg) / SP_LOG_POOL_BUF_BYTES);
		b = NULL;
	} else {
		bufhdr_t *h = (bufhdr_t *)b - 1;
		if (h->cap == SP_LOG_POOL_BUF_BYTES && pl->plain_n < POOL_KEEP_PLAIN) {
			pl->plain[pl->plain_n++] = h;
			b = NULL;
		}
	}
	bool last = --pl->refs == 0;
	pthread_mutex_unlock(&pl->mu);
	if (b) {
		sp_log_dec_free(&((bufhdr_t *)b - 1)->dec);
		free((bufhdr_t *)b - 1);
	}
	if (last)
		pool_destroy(pl);
}

void sp_log_pool_unref(sp_log_pool_t *pl)
{
	pthread_mutex_lock(&pl->mu);
	bool last = --pl->refs == 0;
	pthread_mutex_unlock(&pl->mu);
	if (last)
		pool_destroy(pl);
}

void sp_log_pool_chunk_release(sp_chunk_t *c, void *opaque)
{
	if (c->buf)
		sp_log_pool_put(opaque, c->buf);
	c->buf = NULL;
}
