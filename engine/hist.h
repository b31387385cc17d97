/* hist.h - log-linear histograms: one writer, any readers, merged when read.
 *
 * A value (microseconds, a count) falls in one of SP_HIST_BUCKETS buckets: values below
 * SP_HIST_SUB exactly, above that SP_HIST_SUB buckets per power of two (so a bucket's
 * width is at most 1/SP_HIST_SUB of its values: quantiles are within about 12%). Each
 * worker owns its histograms and is their only writer: an add is a relaxed load and a
 * relaxed store (no locked instruction), readers (the stats line, the summary, a metrics
 * scrape) load relaxed and add the workers' histograms up.
 */
#ifndef SPATE_ENGINE_HIST_H
#define SPATE_ENGINE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define SP_HIST_SUB_BITS 3
#define SP_HIST_SUB (1u << SP_HIST_SUB_BITS)
#define SP_HIST_BUCKETS (64u * SP_HIST_SUB)

typedef struct sp_hist {
	_Atomic uint64_t b[SP_HIST_BUCKETS];
	_Atomic uint64_t max;
	_Atomic uint64_t count, sum;
} sp_hist_t;

static inline unsigned sp_hist_bucket(uint64_t v)
{
	if (v < SP_HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SP_HIST_SUB_BITS */
	return (e - SP_HIST_SUB_BITS + 1) * SP_HIST_SUB + (unsigned)((v >> (e - SP_HIST_SUB_BITS)) & (SP_HIST_SUB - 1));
}

/* The smallest value of bucket i. */
static inline uint64_t sp_hist_lower(unsigned i)
{
	if (i < SP_HIST_SUB)
		return i;
	unsigned e = i / SP_HIST_SUB + SP_HIST_SUB_BITS - 1, m = i % SP_HIST_SUB;
	return ((uint64_t)SP_HIST_SUB + m) << (e - SP_HIST_SUB_BITS);
}

static inline void sp_hist_bump(_Atomic uint64_t *x, uint64_t d)
{
	atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + d, memory_order_relaxed);
}

/** Add n observations of value v. @locality the histogram's one writer */
static inline void sp_hist_add(sp_hist_t *h, uint64_t v, uint64_t n)
{
	sp_hist_bump(&h->b[sp_hist_bucket(v)], n);
	sp_hist_bump(&h->count, n);
	sp_hist_bump(&h->sum, v * n);
	if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
		atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

/* A merged snapshot. */
typedef struct sp_hist_snap {
	uint64_t b[SP_HIST_BUCKETS];
	uint64_t max, count, sum;
} sp_hist_snap_t;

/** Add h into s (any thread). */
static inline void sp_hist_merge(sp_hist_snap_t *s, const sp_hist_t *h)
{
	for (unsigned i = 0; i < SP_HIST_BUCKETS; i++)
		s->b[i] += atomic_load_explicit(&h->b[i], memory_order_relaxed);
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);
	if (m > s->max)
		s->max = m;
	s->count += atomic_load_explicit(&h->count, memory_order_relaxed);
	s->sum += atomic_load_explicit(&h->sum, memory_order_relaxed);
}

/** The value at quantile q (0..1) of s: the upper edge of its bucket, at most the max;
 *  0 when empty. */
static inline uint64_t sp_hist_quantile(const sp_hist_snap_t *s, double q)
{
	if (!s->count)
		return 0;
	uint64_t want = (uint64_t)((double)s->count * q + 0.5), acc = 0;
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < SP_HIST_BUCKETS; i++) {
		acc += s->b[i];
		if (acc >= want) {
			uint64_t hi = i + 1 < SP_HIST_BUCKETS ? sp_hist_lower(i + 1) - 1 : UINT64_MAX;
			return hi < s->max ? hi : s->max;
		}
	}
	return s->max;
}

#endif /* SPATE_ENGINE_HIST_H */
