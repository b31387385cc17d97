/* ring.h - the single-producer, single-consumer ring protocol, in one place.
 *
 * A ring is an array of a power-of-two number of typed slots and an sp_ring_t of two free
 * running 32-bit indices: head (written by the producer only) and tail (written by the
 * consumer only), on separate cache lines. Slot i of the array is slot (i & (size - 1)).
 * The producer writes slots, then publishes them with one release store of head; the
 * consumer sees them with one acquire load of head, reads (or peeks at) them, and frees
 * them with one release store of tail. Like DPDK's rte_ring sp/sc calls, a burst moves
 * many slots per pair of atomic operations. Two rings use it: each lane's ring of runs
 * (producer: the engine thread's dispatch; consumer: the worker that holds the lane) and
 * each worker's completion ring (producer: the worker; consumer: the engine thread).
 */
#ifndef SPATE_ENGINE_RING_H
#define SPATE_ENGINE_RING_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct sp_ring {
	_Alignas(64) _Atomic uint32_t head; /* producer: the next slot it writes */
	_Alignas(64) _Atomic uint32_t tail; /* consumer: the next slot it reads */
} sp_ring_t;

/* ---- producer ------------------------------------------------------------------------ */

/** The index of the next slot the producer writes. */
static inline uint32_t sp_ring_prod_next(const sp_ring_t *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed);
}

/** Free slots of a ring of size slots: what the producer may write before publishing. */
static inline uint32_t sp_ring_room(const sp_ring_t *r, uint32_t size)
{
	return size - (atomic_load_explicit(&r->head, memory_order_relaxed) -
	               atomic_load_explicit(&r->tail, memory_order_acquire));
}

/** Publish the n slots written after sp_ring_prod_next(). */
static inline void sp_ring_publish(sp_ring_t *r, uint32_t n)
{
	uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	atomic_store_explicit(&r->head, h + n, memory_order_release);
}

/* ---- consumer ------------------------------------------------------------------------ */

/** The index of the next slot the consumer reads. */
static inline uint32_t sp_ring_cons_next(const sp_ring_t *r)
{
	return atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/** The published index: slots [sp_ring_cons_next, sp_ring_cons_end) are readable. */
static inline uint32_t sp_ring_cons_end(const sp_ring_t *r)
{
	return atomic_load_explicit(&r->head, memory_order_acquire);
}

/** Whether the ring holds a slot the consumer has not freed. */
static inline int sp_ring_nonempty(const sp_ring_t *r)
{
	return sp_ring_cons_end(r) != sp_ring_cons_next(r);
}

/** Free every slot before index `to` (the consumer is done with them). */
static inline void sp_ring_free_to(sp_ring_t *r, uint32_t to)
{
	atomic_store_explicit(&r->tail, to, memory_order_release);
}

#endif /* SPATE_ENGINE_RING_H */
