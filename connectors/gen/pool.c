/* pool.c - builds the pre-generated record pool of the synthetic source.
 *
 * A pool is built once, before a run, from a seed: the gen source and `spate produce
 * --gen` then replay it, so the cost of making a record (snprintf, random numbers) is
 * paid once per pool record and never on the hot path. Everything derives from one
 * splitmix64 stream seeded with gen.seed, so the same arguments give the same bytes.
 *
 * Layout: one byte buffer holds every key and value (JSON kinds: key then value, record
 * after record; bytes kind: all keys, then a region of distinct random values), and one
 * array holds the record index that points into it. While building, the buffer grows,
 * so the index first holds offsets in a scratch array and becomes pointers at the end.
 */
#include "gen.h"

#include "sp_spi.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound of one JSON record (key + value) as the formats below write it; the
 * buffer always has this much room before a record is written. */
#define GEN_JSON_REC_MAX 320
/* First guess of the bytes per JSON record, for the first allocation. */
#define GEN_JSON_REC_GUESS 160
/* Upper bound of a bytes-kind key ("k-" and 20 digits). */
#define GEN_BYTES_KEY_MAX 24
/* Highest gen.keys a pool takes (the conf table's bound; card numbers stay distinct
 * up to 10^10 keys). */
#define GEN_KEYS_MAX 100000000ULL
/* The "ts" field of record i is GEN_TS_BASE_MS + i * GEN_TS_STEP_MS: fixed, so pools
 * are reproducible (record timestamps in the engine are the wall clock instead). */
#define GEN_TS_BASE_MS UINT64_C(1700000000000)
#define GEN_TS_STEP_MS 10
/* Card numbers: a 10-digit tail is k * GEN_CARD_MUL + offset mod 10^10, a bijection
 * because the multiplier is coprime to 10, so distinct keys have distinct cards. */
#define GEN_CARD_MUL 2654435761ULL
#define GEN_CARD_MOD 10000000000ULL
/* Clean fraud amounts, in cents: most are small, one in GEN_AMOUNT_LARGE_ONE_IN is up
 * to the default fraud.amount.max; flagged ones are above it up to GEN_AMOUNT_FLAG_MAX. */
#define GEN_AMOUNT_SMALL_MAX    19999ULL
#define GEN_AMOUNT_LARGE_ONE_IN 10
#define GEN_AMOUNT_LIMIT        500000ULL
#define GEN_AMOUNT_FLAG_MAX     10000000ULL
/* Merchant ids are m-0000 .. m-9999; the two below are the default blocked ones. */
#define GEN_MERCHANTS          10000U
#define GEN_MERCHANT_BLOCKED_A 666U
#define GEN_MERCHANT_BLOCKED_B 1313U

struct sp_gen_pool {
	sp_gen_kind_t kind;
	uint32_t n;
	sp_gen_rec_t *recs;
	uint8_t *bytes;
	size_t bytes_len;
	uint64_t total; /* sum of key and value lengths */
};

/* Countries and their currency: the table the fraud kind draws from. The fraud
 * handler keeps its own table (operators do not include connectors); a test checks
 * that the records made here trip it exactly as intended. */
static const struct {
	char country[3], currency[4];
} gen_countries[] = {
    {"DE", "EUR"}, {"FR", "EUR"}, {"ES", "EUR"}, {"IT", "EUR"}, {"NL", "EUR"}, {"US", "USD"},
    {"GB", "GBP"}, {"JP", "JPY"}, {"CH", "CHF"}, {"SE", "SEK"}, {"CA", "CAD"}, {"AU", "AUD"},
};
#define GEN_NCOUNTRIES (sizeof(gen_countries) / sizeof(gen_countries[0]))

/* splitmix64: small, fast, and good enough to make test data; one stream per pool. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A number in [0, n) (n > 0) by multiply-high: no division, bias below 2^-32 here. */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(s) * n) >> 64);
}

int sp_gen_kind_parse(const char *kind)
{
	if (!kind)
		return -1;
	if (!strcmp(kind, "fraud"))
		return SP_GEN_FRAUD;
	if (!strcmp(kind, "sensor"))
		return SP_GEN_SENSOR;
	if (!strcmp(kind, "bytes"))
		return SP_GEN_BYTES;
	return -1;
}

/* The card number of key k. Keys k with k % SP_GEN_FRAUD_PERIOD == PERIOD-1 are the
 * blocked cards (prefix 4000-66); the others start with 4100..4999. */
static int card_fmt(char *buf, size_t size, uint64_t k, uint64_t seed)
{
	uint64_t v = (k * GEN_CARD_MUL + seed % GEN_CARD_MOD) % GEN_CARD_MOD;
	unsigned a = (unsigned)(v / 100000000ULL), b = (unsigned)(v / 10000 % 10000),
	         c = (unsigned)(v % 10000);
	if (k % SP_GEN_FRAUD_PERIOD == SP_GEN_FRAUD_PERIOD - 1)
		return snprintf(buf, size, "4000-66%02u-%04u-%04u", a, b, c);
	uint64_t h = (k ^ seed) * 0x9e3779b97f4a7c15ULL;
	unsigned g1 = 4100 + (unsigned)((h >> 32) % 900), g2 = (unsigned)((h >> 16) % 100);
	return snprintf(buf, size, "%04u-%02u%02u-%04u-%04u", g1, g2, a, b, c);
}

/* A key that is not a blocked card: the m-th of the keys k < keys with k % PERIOD !=
 * PERIOD-1 (there are keys - keys/PERIOD of them, never 0 since keys >= 1). */
static uint64_t clean_card_key(uint64_t *rng, uint64_t keys)
{
	const uint64_t per = SP_GEN_FRAUD_PERIOD - 1;
	uint64_t m = rng_below(rng, keys - keys / SP_GEN_FRAUD_PERIOD);
	return m / per * SP_GEN_FRAUD_PERIOD + m % per;
}

/* Write pool record i of the fraud kind at dst: the card, then the JSON value. */
static void fraud_rec(uint8_t *dst, uint32_t i, uint64_t keys, uint64_t seed, uint64_t *rng, uint32_t *klen,
                      uint32_t *vlen)
{
	unsigned rule = i % SP_GEN_FRAUD_PERIOD;
	uint64_t nblocked = keys / SP_GEN_FRAUD_PERIOD;
	uint64_t k;
	if (rule == SP_GEN_FRAUD_AT_CARD && nblocked)
		k = rng_below(rng, nblocked) * SP_GEN_FRAUD_PERIOD + SP_GEN_FRAUD_PERIOD - 1;
	else
		k = clean_card_key(rng, keys);
	char card[32];
	int cl = card_fmt(card, sizeof(card), k, seed);

	unsigned merchant;
	if (rule == SP_GEN_FRAUD_AT_MERCHANT) {
		merchant = rng_below(rng, 2) ? GEN_MERCHANT_BLOCKED_B : GEN_MERCHANT_BLOCKED_A;
	} else {
		merchant = (unsigned)rng_below(rng, GEN_MERCHANTS - 2);
		if (merchant >= GEN_MERCHANT_BLOCKED_A)
			merchant++;
		if (merchant >= GEN_MERCHANT_BLOCKED_B)
			merchant++;
	}

	uint64_t cents;
	if (rule == SP_GEN_FRAUD_AT_AMOUNT)
		cents = GEN_AMOUNT_LIMIT + 1 + rng_below(rng, GEN_AMOUNT_FLAG_MAX - GEN_AMOUNT_LIMIT);
	else if (rng_below(rng, GEN_AMOUNT_LARGE_ONE_IN) == 0)
		cents = 1 + rng_below(rng, GEN_AMOUNT_LIMIT);
	else
		cents = 1 + rng_below(rng, GEN_AMOUNT_SMALL_MAX);

	size_t c = rng_below(rng, GEN_NCOUNTRIES), cur = c;
	if (rule == SP_GEN_FRAUD_AT_CURRENCY) {
		/* any currency but the country's own: draw until it differs */
		do
			cur = rng_below(rng, GEN_NCOUNTRIES);
		while (!strcmp(gen_countries[cur].currency, gen_countries[c].currency));
	}

	memcpy(dst, card, (size_t)cl);
	*klen = (uint32_t)cl;
	int vl =
	    snprintf((char *)dst + cl, GEN_JSON_REC_MAX - (size_t)cl,
	             "{\"tx\":\"t-%" PRIu32 "\",\"card\":\"%s\",\"merchant\":\"m-%04u\","
	             "\"amount\":%" PRIu64 ".%02u,\"currency\":\"%s\",\"country\":\"%s\","
	             "\"ts\":%" PRIu64 "}",
	             i, card, merchant, cents / 100, (unsigned)(cents % 100), gen_countries[cur].currency,
	             gen_countries[c].country, GEN_TS_BASE_MS + (uint64_t)i * GEN_TS_STEP_MS);
	*vlen = (uint32_t)vl;
}

/* Write pool record i of the sensor kind at dst: the sensor id, then the JSON value. */
static void sensor_rec(uint8_t *dst, uint32_t i, uint64_t keys, uint64_t *rng, uint32_t *klen, uint32_t *vlen)
{
	char id[32];
	int kl = snprintf(id, sizeof(id), "s-%05" PRIu64, rng_below(rng, keys));
	/* temperature -10.0..45.0 C, humidity 10.0..95.0 %, battery 3.00..4.20 V */
	int temp = (int)rng_below(rng, 551) - 100;
	unsigned hum = 100 + (unsigned)rng_below(rng, 851);
	unsigned bat = 300 + (unsigned)rng_below(rng, 121);
	unsigned at = (unsigned)(temp < 0 ? -temp : temp);
	int vl = snprintf((char *)dst + kl, GEN_JSON_REC_MAX - (size_t)kl,
	                  "{\"sensor\":\"%s\",\"temp_c\":%s%u.%u,\"humidity\":%u.%u,"
	                  "\"battery\":%u.%02u,\"ts\":%" PRIu64 "}",
	                  id, temp < 0 ? "-" : "", at / 10, at % 10, hum / 10, hum % 10, bat / 100, bat % 100,
	                  GEN_TS_BASE_MS + (uint64_t)i * GEN_TS_STEP_MS);
	memcpy(dst, id, (size_t)kl);
	*klen = (uint32_t)kl;
	*vlen = (uint32_t)vl;
}

static int build_json(sp_gen_pool_t *p, uint64_t keys, uint64_t seed, uint64_t *rng, uint64_t *offs,
                      char *errstr, size_t size)
{
	size_t cap = (size_t)p->n * GEN_JSON_REC_GUESS + GEN_JSON_REC_MAX, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		goto nomem;
	for (uint32_t i = 0; i < p->n; i++) {
		if (cap - len < GEN_JSON_REC_MAX) {
			size_t ncap = cap + cap / 2 + GEN_JSON_REC_MAX;
			uint8_t *nb = realloc(buf, ncap);
			if (!nb)
				goto nomem;
			buf = nb;
			cap = ncap;
		}
		uint32_t kl, vl;
		if (p->kind == SP_GEN_FRAUD)
			fraud_rec(buf + len, i, keys, seed, rng, &kl, &vl);
		else
			sensor_rec(buf + len, i, keys, rng, &kl, &vl);
		offs[i] = len;
		p->recs[i].key_len = kl;
		p->recs[i].value_len = vl;
		len += (size_t)kl + vl;
	}
	p->bytes = buf;
	p->bytes_len = len;
	for (uint32_t i = 0; i < p->n; i++) {
		sp_gen_rec_t *r = &p->recs[i];
		r->key = buf + offs[i];
		r->value = r->key + r->key_len;
		p->total += (uint64_t)r->key_len + r->value_len;
	}
	return SPATE_OK;
nomem:
	free(buf);
	return sp_err(errstr, size, SPATE_ERR_NOMEM, "gen.pool: out of memory building %" PRIu32 " records",
	              p->n);
}

static int build_bytes(sp_gen_pool_t *p, uint64_t keys, uint32_t vb, uint64_t *rng, uint64_t *offs,
                       char *errstr, size_t size)
{
	size_t nvals = SP_GEN_BYTES_VALUES_MAX / vb;
	if (nvals < 1)
		nvals = 1;
	if (nvals > p->n)
		nvals = p->n;
	size_t keys_cap = (size_t)p->n * GEN_BYTES_KEY_MAX, len = 0;
	uint8_t *buf = malloc(keys_cap + nvals * vb);
	if (!buf)
		return sp_err(errstr, size, SPATE_ERR_NOMEM,
		              "gen.pool: out of memory for %" PRIu32 " records of %" PRIu32
		              " bytes (gen.value.bytes)",
		              p->n, vb);
	for (uint32_t i = 0; i < p->n; i++) {
		int kl = snprintf((char *)buf + len, GEN_BYTES_KEY_MAX, "k-%" PRIu64, rng_below(rng, keys));
		offs[i] = len;
		p->recs[i].key_len = (uint32_t)kl;
		p->recs[i].value_len = vb;
		len += (size_t)kl;
	}
	/* The values follow the keys; fill them 8 bytes at a time. */
	uint8_t *vals = buf + len;
	size_t vbytes = nvals * vb;
	for (size_t off = 0; off < vbytes; off += 8) {
		uint64_t r = rng_next(rng);
		memcpy(vals + off, &r, vbytes - off < 8 ? vbytes - off : 8);
	}
	p->bytes = buf;
	p->bytes_len = len + vbytes;
	for (uint32_t i = 0; i < p->n; i++) {
		sp_gen_rec_t *r = &p->recs[i];
		r->key = buf + offs[i];
		r->value = vals + (size_t)(i % nvals) * vb;
		p->total += (uint64_t)r->key_len + r->value_len;
	}
	return SPATE_OK;
}

int sp_gen_pool_new(const char *kind, uint32_t n, uint64_t keys, uint32_t value_bytes, uint64_t seed,
                    sp_gen_pool_t **out, char *errstr, size_t size)
{
	*out = NULL;
	int k = sp_gen_kind_parse(kind);
	if (k < 0)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "gen.kind: \"%s\" is not allowed (allowed: fraud, sensor, bytes)",
		              kind ? kind : "");
	if (n < 1)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "gen.pool: must be at least 1 record");
	if (keys < 1 || keys > GEN_KEYS_MAX)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "gen.keys: %" PRIu64 " is out of range (allowed: 1..%llu)", keys, GEN_KEYS_MAX);
	if (k == SP_GEN_BYTES && value_bytes < 1)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "gen.value.bytes: must be at least 1");

	sp_gen_pool_t *p = calloc(1, sizeof(*p));
	uint64_t *offs = malloc((size_t)n * sizeof(*offs));
	if (p)
		p->recs = malloc((size_t)n * sizeof(*p->recs));
	if (!p || !offs || !p->recs) {
		free(offs);
		sp_gen_pool_free(p);
		return sp_err(errstr, size, SPATE_ERR_NOMEM,
		              "gen.pool: out of memory for %" PRIu32 " records", n);
	}
	p->kind = (sp_gen_kind_t)k;
	p->n = n;
	/* The stream's start mixes the seed once, so seeds 1 and 2 do not give streams that
	 * are one step apart. */
	uint64_t rng = seed;
	rng = rng_next(&rng);
	int rc = k == SP_GEN_BYTES ? build_bytes(p, keys, value_bytes, &rng, offs, errstr, size)
	                           : build_json(p, keys, seed, &rng, offs, errstr, size);
	free(offs);
	if (rc != SPATE_OK) {
		sp_gen_pool_free(p);
		return rc;
	}
	*out = p;
	return SPATE_OK;
}

void sp_gen_pool_free(sp_gen_pool_t *p)
{
	if (!p)
		return;
	free(p->bytes);
	free(p->recs);
	free(p);
}

uint32_t sp_gen_pool_count(const sp_gen_pool_t *p)
{
	return p->n;
}

sp_gen_kind_t sp_gen_pool_kind(const sp_gen_pool_t *p)
{
	return p->kind;
}

const sp_gen_rec_t *sp_gen_pool_recs(const sp_gen_pool_t *p)
{
	return p->recs;
}

const sp_gen_rec_t *sp_gen_pool_rec(const sp_gen_pool_t *p, uint32_t i)
{
	return i < p->n ? &p->recs[i] : NULL;
}

uint64_t sp_gen_pool_bytes(const sp_gen_pool_t *p)
{
	return p->total;
}
