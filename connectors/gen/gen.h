/* gen.h - the pre-generated record pool of the synthetic source.
 *
 * The gen source (gen.c) and `spate produce --gen` replay a pool of records built once
 * from a seed, so a benchmark measures the engine and the broker, not snprintf. The
 * pool holds all its bytes in one allocation and its record index in another; records
 * point into those bytes and stay valid until the pool is freed. A pool is read-only
 * once built, so any number of threads may read it at once.
 *
 * Kinds:
 *  - fraud:  JSON card transactions, key = the card number. A fixed share of records
 *            trips each rule of the fraud handler at its default settings (see
 *            SP_GEN_FRAUD_* below), so a run's flag counts are known in advance.
 *  - sensor: JSON sensor readings, key = the sensor id.
 *  - bytes:  random values of value_bytes bytes, key = "k-<n>".
 * In every kind the key is one of `keys` distinct keys, and every record has a key.
 */
#ifndef SPATE_CONNECTORS_GEN_H
#define SPATE_CONNECTORS_GEN_H

#include <stddef.h>
#include <stdint.h>

/* The fraud kind is laid out in periods of SP_GEN_FRAUD_PERIOD pool records: within a
 * period, the record at each offset below breaks exactly one rule of the fraud handler
 * (at its defaults: amount above 5000, merchants m-0666 and m-1313, card prefix
 * 4000-66, currency that does not match the country); every other record breaks none.
 * The card rule needs blocked cards among the keys: with fewer than
 * SP_GEN_FRAUD_PERIOD keys there are none, and that record breaks no rule. */
#define SP_GEN_FRAUD_PERIOD      100
#define SP_GEN_FRAUD_AT_AMOUNT   7
#define SP_GEN_FRAUD_AT_MERCHANT 31
#define SP_GEN_FRAUD_AT_CARD     53
#define SP_GEN_FRAUD_AT_CURRENCY 79

/* Distinct values of the bytes kind are capped at this many bytes in all; past it,
 * records share values round-robin (keys stay distinct per record), so a pool of
 * 1 MiB values does not need gen.pool MiB of memory. */
#define SP_GEN_BYTES_VALUES_MAX ((size_t)256 << 20)

typedef enum sp_gen_kind { SP_GEN_FRAUD = 0, SP_GEN_SENSOR = 1, SP_GEN_BYTES = 2 } sp_gen_kind_t;

/** One record of a pool: pointers into the pool's bytes. */
typedef struct sp_gen_rec {
	const uint8_t *key;
	const uint8_t *value;
	uint32_t key_len;
	uint32_t value_len;
} sp_gen_rec_t;

typedef struct sp_gen_pool sp_gen_pool_t;

/** "fraud", "sensor" or "bytes" to its kind; -1 for anything else. */
int sp_gen_kind_parse(const char *kind);

/**
 * Build a pool of n records of kind ("fraud", "sensor" or "bytes") over `keys`
 * distinct keys, deterministic in seed: the same arguments give the same bytes on
 * every run and machine. value_bytes is the value size of the bytes kind (ignored by
 * the others). Returns SPATE_OK and *out, or SPATE_ERR_INVALID / SPATE_ERR_NOMEM with
 * errstr naming the gen.* key at fault. n, keys and value_bytes must be at least 1.
 * @locality any thread; the pool is built on the calling thread
 */
int sp_gen_pool_new(const char *kind, uint32_t n, uint64_t keys, uint32_t value_bytes, uint64_t seed,
                    sp_gen_pool_t **out, char *errstr, size_t size);

/** Free a pool and everything its records point to. NULL is ignored. */
void sp_gen_pool_free(sp_gen_pool_t *pool);

/** Records in the pool. */
uint32_t sp_gen_pool_count(const sp_gen_pool_t *pool);

/** The pool's kind. */
sp_gen_kind_t sp_gen_pool_kind(const sp_gen_pool_t *pool);

/** The record index: sp_gen_pool_count() entries, valid until the pool is freed. */
const sp_gen_rec_t *sp_gen_pool_recs(const sp_gen_pool_t *pool);

/** Record i (i < count); NULL when i is out of range. */
const sp_gen_rec_t *sp_gen_pool_rec(const sp_gen_pool_t *pool, uint32_t i);

/** Sum of key and value lengths over all records (what replaying the pool once moves). */
uint64_t sp_gen_pool_bytes(const sp_gen_pool_t *pool);

#endif /* SPATE_CONNECTORS_GEN_H */
