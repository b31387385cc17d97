/* fuzz_kpl.c - KPL de-aggregation (connectors/kinesis/kpl.c): the protobuf reader of
 * aggregated records, the bytes a Kinesis producer that is not ours wrote.
 *
 * The input goes in twice: as a record's data as it is (most inputs fail the magic or
 * the MD5: the plain-record path), and wrapped as an aggregate (the magic, the input as
 * the protobuf, its MD5), so that every input reaches the protobuf reader. The oracle:
 * kin_kpl_count and kin_kpl_deaggregate agree (-1 and no callback for what is not an
 * aggregate; else the count, one callback per sub-record); every key and data a callback
 * sees lies inside the aggregate (each byte is read, so ASan sees a pointer past it); a
 * callback that stops after the first of several sub-records gets -2.
 */
#include "connectors/kinesis/kinesis.h"
#include "fuzz.h"

#include <stdbool.h>

typedef struct walk {
	const uint8_t *lo, *hi; /* the aggregate */
	int n;                  /* callbacks so far */
	int stop_at;            /* > 0: return false at this callback */
	unsigned sum;           /* of every byte seen (keeps the reads) */
} walk_t;

static bool inside(const walk_t *w, const void *p, size_t n)
{
	const uint8_t *b = p;
	return n == 0 || (b && b >= w->lo && b <= w->hi && n <= (size_t)(w->hi - b));
}

static bool each(void *arg, const kin_kpl_rec_t *r)
{
	walk_t *w = arg;
	FUZZ_CHECK(inside(w, r->key, r->key_len));
	FUZZ_CHECK(inside(w, r->data, r->data_len));
	for (size_t i = 0; i < r->key_len; i++)
		w->sum += (uint8_t)r->key[i];
	for (size_t i = 0; i < r->data_len; i++)
		w->sum += r->data[i];
	w->n++;
	return !w->stop_at || w->n < w->stop_at;
}

/* The properties on data[0..len), copied to exactly len bytes. */
static void check(const uint8_t *data, size_t len)
{
	uint8_t *a = malloc(len ? len : 1);
	FUZZ_CHECK(a);
	memcpy(a, data, len);
	int cnt = kin_kpl_count(a, len);
	walk_t w = {.lo = a, .hi = a + len};
	int n = kin_kpl_deaggregate(a, len, each, &w);
	if (cnt < 0) {
		FUZZ_CHECK(cnt == -1);
		FUZZ_CHECK(n == -1);
		FUZZ_CHECK(w.n == 0);
	} else {
		FUZZ_CHECK(cnt > 0);
		FUZZ_CHECK(n == cnt);
		FUZZ_CHECK(w.n == cnt);
		if (cnt > 1) {
			walk_t s = {.lo = a, .hi = a + len, .stop_at = 1};
			FUZZ_CHECK(kin_kpl_deaggregate(a, len, each, &s) == -2);
			FUZZ_CHECK(s.n == 1);
		}
	}
	free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size);
	size_t len = KIN_KPL_MAGIC_LEN + size + KIN_KPL_MD5_LEN;
	uint8_t *agg = malloc(len);
	FUZZ_CHECK(agg);
	memcpy(agg, KIN_KPL_MAGIC, KIN_KPL_MAGIC_LEN);
	memcpy(agg + KIN_KPL_MAGIC_LEN, data, size);
	kin_md5(data, size, agg + KIN_KPL_MAGIC_LEN + size);
	check(agg, len);
	free(agg);
	return 0;
}
