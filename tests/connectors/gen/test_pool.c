/* test_pool.c - tests of connectors/gen/pool.c: the pre-generated record pool.
 *
 * A pool must be a pure function of its arguments (same seed, same bytes; another
 * seed, other bytes), keep its keys within gen.keys, and make records of the promised
 * shape: JSON that parses, with a known share breaking each fraud rule exactly once.
 * The JSON is checked with jansson here, independently of the fraud handler's scanner.
 */
#include "connectors/gen/gen.h"
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static sp_gen_pool_t *make(const char *kind, uint32_t n, uint64_t keys, uint32_t vb, uint64_t seed)
{
	char err[256] = "";
	sp_gen_pool_t *p = NULL;
	int rc = sp_gen_pool_new(kind, n, keys, vb, seed, &p, err, sizeof(err));
	cr_assert_eq(rc, SPATE_OK, "sp_gen_pool_new(%s): %s", kind, err);
	cr_assert_not_null(p);
	cr_assert_eq(sp_gen_pool_count(p), n);
	return p;
}

static bool rec_eq(const sp_gen_rec_t *a, const sp_gen_rec_t *b)
{
	return a->key_len == b->key_len && a->value_len == b->value_len &&
	       !memcmp(a->key, b->key, a->key_len) && !memcmp(a->value, b->value, a->value_len);
}

static void check_same_seed(const char *kind)
{
	sp_gen_pool_t *a = make(kind, 3000, 500, 64, 42), *b = make(kind, 3000, 500, 64, 42);
	for (uint32_t i = 0; i < 3000; i++)
		cr_assert(rec_eq(sp_gen_pool_rec(a, i), sp_gen_pool_rec(b, i)), "%s: record %u differs", kind,
		          i);
	cr_assert_eq(sp_gen_pool_bytes(a), sp_gen_pool_bytes(b));
	sp_gen_pool_t *c = make(kind, 3000, 500, 64, 43);
	uint32_t differ = 0;
	for (uint32_t i = 0; i < 3000; i++)
		differ += !rec_eq(sp_gen_pool_rec(a, i), sp_gen_pool_rec(c, i));
	/* another seed redraws every key and field: nearly every record differs */
	cr_assert_gt(differ, 2900, "%s: only %u of 3000 records differ with another seed", kind, differ);
	sp_gen_pool_free(a);
	sp_gen_pool_free(b);
	sp_gen_pool_free(c);
}

Test(pool, same_seed_same_bytes_fraud)
{
	check_same_seed("fraud");
}
Test(pool, same_seed_same_bytes_sensor)
{
	check_same_seed("sensor");
}
Test(pool, same_seed_same_bytes_bytes)
{
	check_same_seed("bytes");
}

/* The pool's byte count is the sum of its records' key and value lengths. */
Test(pool, bytes_is_the_sum)
{
	sp_gen_pool_t *p = make("sensor", 1000, 10, 1, 7);
	uint64_t sum = 0;
	for (uint32_t i = 0; i < 1000; i++)
		sum += sp_gen_pool_rec(p, i)->key_len + sp_gen_pool_rec(p, i)->value_len;
	cr_assert_eq(sp_gen_pool_bytes(p), sum);
	cr_assert_null(sp_gen_pool_rec(p, 1000));
	sp_gen_pool_free(p);
}

static int cmp_key(const void *a, const void *b)
{
	const sp_gen_rec_t *x = *(const sp_gen_rec_t *const *)a, *y = *(const sp_gen_rec_t *const *)b;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return memcmp(x->key, y->key, x->key_len);
}

/* Distinct keys of a pool. */
static uint64_t distinct_keys(const sp_gen_pool_t *p)
{
	uint32_t n = sp_gen_pool_count(p);
	const sp_gen_rec_t **v = malloc(n * sizeof(*v));
	cr_assert_not_null(v);
	for (uint32_t i = 0; i < n; i++) {
		v[i] = sp_gen_pool_rec(p, i);
		cr_assert_gt(v[i]->key_len, 0, "record %u has an empty key", i);
	}
	qsort(v, n, sizeof(*v), cmp_key);
	uint64_t d = n ? 1 : 0;
	for (uint32_t i = 1; i < n; i++)
		d += cmp_key(&v[i - 1], &v[i]) != 0;
	free(v);
	return d;
}

/* gen.keys bounds the key cardinality; with many more records than keys every key shows up. */
Test(pool, key_cardinality)
{
	const char *kinds[] = {"fraud", "sensor", "bytes"};
	for (int k = 0; k < 3; k++) {
		sp_gen_pool_t *p = make(kinds[k], 20000, 300, 16, 5);
		cr_assert_eq(distinct_keys(p), 300, "%s", kinds[k]);
		sp_gen_pool_free(p);
		p = make(kinds[k], 1000, 1, 16, 5);
		cr_assert_eq(distinct_keys(p), 1, "%s with one key", kinds[k]);
		sp_gen_pool_free(p);
	}
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_string(v), "field %s missing or not a string", k);
	return json_string_value(v);
}

/* The country -> currency pairs gen draws from, written out again here. */
static const char *currency_of(const char *country)
{
	static const char *const t[][2] = {{"DE", "EUR"}, {"FR", "EUR"}, {"ES", "EUR"}, {"IT", "EUR"},
	                                   {"NL", "EUR"}, {"US", "USD"}, {"GB", "GBP"}, {"JP", "JPY"},
	                                   {"CH", "CHF"}, {"SE", "SEK"}, {"CA", "CAD"}, {"AU", "AUD"}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(t[i][0], country))
			return t[i][1];
	cr_assert_fail("country %s is not in gen's table", country);
	return NULL;
}

/* Every fraud record is JSON with the promised fields; exactly one record per
 * SP_GEN_FRAUD_PERIOD breaks each rule, at its offset, and no record breaks two. */
Test(pool, fraud_records_parse_and_trip_rules_exactly)
{
	const uint32_t n = 10000;
	sp_gen_pool_t *p = make("fraud", n, 5000, 0, 9);
	uint32_t amount = 0, merchant = 0, card = 0, currency = 0;
	for (uint32_t i = 0; i < n; i++) {
		const sp_gen_rec_t *r = sp_gen_pool_rec(p, i);
		json_error_t je;
		json_t *o = json_loadb((const char *)r->value, r->value_len, 0, &je);
		cr_assert_not_null(o, "record %u: %s: %.*s", i, je.text, (int)r->value_len, r->value);
		cr_assert_eq(json_object_size(o), 7, "record %u has %zu fields", i, json_object_size(o));
		const char *c = jstr(o, "card");
		cr_assert_eq(strlen(c), 19);
		cr_assert(r->key_len == 19 && !memcmp(r->key, c, 19), "record %u: key is not the card", i);
		char tx[32];
		snprintf(tx, sizeof(tx), "t-%u", i);
		cr_assert_str_eq(jstr(o, "tx"), tx);
		const char *m = jstr(o, "merchant");
		cr_assert(strlen(m) == 6 && !strncmp(m, "m-", 2));
		json_t *a = json_object_get(o, "amount");
		cr_assert(json_is_number(a));
		cr_assert(json_is_integer(json_object_get(o, "ts")));
		cr_assert_gt(json_number_value(a), 0);
		unsigned hits = 0, rule = i % SP_GEN_FRAUD_PERIOD;
		if (json_number_value(a) > 5000.0) {
			amount++;
			hits++;
			cr_assert_eq(rule, SP_GEN_FRAUD_AT_AMOUNT, "record %u", i);
		}
		if (!strcmp(m, "m-0666") || !strcmp(m, "m-1313")) {
			merchant++;
			hits++;
			cr_assert_eq(rule, SP_GEN_FRAUD_AT_MERCHANT, "record %u", i);
		}
		if (!strncmp(c, "4000-66", 7)) {
			card++;
			hits++;
			cr_assert_eq(rule, SP_GEN_FRAUD_AT_CARD, "record %u", i);
		}
		if (strcmp(currency_of(jstr(o, "country")), jstr(o, "currency"))) {
			currency++;
			hits++;
			cr_assert_eq(rule, SP_GEN_FRAUD_AT_CURRENCY, "record %u", i);
		}
		cr_assert_leq(hits, 1, "record %u breaks %u rules", i, hits);
		json_decref(o);
	}
	cr_assert_eq(amount, n / SP_GEN_FRAUD_PERIOD);
	cr_assert_eq(merchant, n / SP_GEN_FRAUD_PERIOD);
	cr_assert_eq(card, n / SP_GEN_FRAUD_PERIOD);
	cr_assert_eq(currency, n / SP_GEN_FRAUD_PERIOD);
	sp_gen_pool_free(p);
}

/* With fewer keys than SP_GEN_FRAUD_PERIOD there is no blocked card at all. */
Test(pool, fraud_few_keys_no_blocked_card)
{
	sp_gen_pool_t *p = make("fraud", 2000, 99, 0, 3);
	for (uint32_t i = 0; i < 2000; i++) {
		const sp_gen_rec_t *r = sp_gen_pool_rec(p, i);
		cr_assert(memcmp(r->key, "4000-66", 7) != 0, "record %u has a blocked card", i);
	}
	cr_assert_eq(distinct_keys(p), 99);
	sp_gen_pool_free(p);
}

Test(pool, sensor_records_parse)
{
	sp_gen_pool_t *p = make("sensor", 5000, 100000, 0, 11);
	for (uint32_t i = 0; i < 5000; i++) {
		const sp_gen_rec_t *r = sp_gen_pool_rec(p, i);
		json_error_t je;
		json_t *o = json_loadb((const char *)r->value, r->value_len, 0, &je);
		cr_assert_not_null(o, "record %u: %s: %.*s", i, je.text, (int)r->value_len, r->value);
		const char *s = jstr(o, "sensor");
		cr_assert(strlen(s) == r->key_len && !memcmp(s, r->key, r->key_len),
		          "record %u: key is not the sensor", i);
		cr_assert(!strncmp(s, "s-", 2) && strtoull(s + 2, NULL, 10) < 100000);
		double t = json_number_value(json_object_get(o, "temp_c"));
		double h = json_number_value(json_object_get(o, "humidity"));
		double b = json_number_value(json_object_get(o, "battery"));
		cr_assert(t >= -10.0 && t <= 45.0, "record %u: temp_c %f", i, t);
		cr_assert(h >= 10.0 && h <= 95.0, "record %u: humidity %f", i, h);
		cr_assert(b >= 3.0 && b <= 4.2, "record %u: battery %f", i, b);
		cr_assert(json_is_integer(json_object_get(o, "ts")));
		cr_assert_eq(json_object_size(o), 5);
		json_decref(o);
	}
	sp_gen_pool_free(p);
}

Test(pool, bytes_records)
{
	sp_gen_pool_t *p = make("bytes", 4000, 1000, 333, 13);
	for (uint32_t i = 0; i < 4000; i++) {
		const sp_gen_rec_t *r = sp_gen_pool_rec(p, i);
		cr_assert_eq(r->value_len, 333);
		char k[32];
		cr_assert_lt(r->key_len, sizeof(k));
		memcpy(k, r->key, r->key_len);
		k[r->key_len] = 0;
		char *end;
		cr_assert(!strncmp(k, "k-", 2), "key %s", k);
		unsigned long long v = strtoull(k + 2, &end, 10);
		cr_assert(*end == 0 && end > k + 2 && v < 1000, "key %s", k);
	}
	/* below the value cap each record has its own value bytes */
	cr_assert_neq(sp_gen_pool_rec(p, 0)->value, sp_gen_pool_rec(p, 1)->value);
	cr_assert(memcmp(sp_gen_pool_rec(p, 0)->value, sp_gen_pool_rec(p, 1)->value, 333) != 0);
	sp_gen_pool_free(p);
}

/* Each bad argument is refused with a message naming its key. */
Test(pool, errors_name_the_key)
{
	char err[256];
	sp_gen_pool_t *p = (sp_gen_pool_t *)1;
	err[0] = 0;
	cr_assert_eq(sp_gen_pool_new("json", 10, 10, 10, 1, &p, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert_null(p);
	cr_assert(strstr(err, "gen.kind") && strstr(err, "fraud, sensor, bytes"), "%s", err);
	err[0] = 0;
	cr_assert_eq(sp_gen_pool_new("fraud", 0, 10, 10, 1, &p, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "gen.pool"), "%s", err);
	err[0] = 0;
	cr_assert_eq(sp_gen_pool_new("sensor", 10, 0, 10, 1, &p, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "gen.keys"), "%s", err);
	err[0] = 0;
	cr_assert_eq(sp_gen_pool_new("bytes", 10, 10, 0, 1, &p, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, "gen.value.bytes"), "%s", err);
	cr_assert_eq(sp_gen_kind_parse("sensor"), SP_GEN_SENSOR);
	cr_assert_eq(sp_gen_kind_parse("Sensor"), -1);
	sp_gen_pool_free(NULL);
}
