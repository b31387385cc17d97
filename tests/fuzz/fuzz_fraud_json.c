/* fuzz_fraud_json.c - the fraud handler's JSON scanner (operators/fraud.c), on record
 * values: the first parser of record bytes a handler has, and the pattern for the JSON
 * scanner and filter patterns to come.
 *
 * The input is one record's value. The handler is made as the engine makes it (its ops'
 * create, with the default fraud.* keys) and handles a batch of that one record, once
 * with the value as given and once with it cut at each of a few points (a value ends
 * anywhere). The oracle: the handler never fails a batch, and each record counts once,
 * as flagged, malformed or neither (its report's counters).
 */
#include "engine/engine.h"
#include "fuzz.h"

#include <inttypes.h>
#include <stdbool.h>

extern const sp_operator_ops_t sp_op_fraud;

static spate_handler_t h;
static bool made;

/* handle() of a one-record batch holding value[0..len). */
static void handle(const uint8_t *value, size_t len)
{
	static spate_partition_t part = {"log", "fuzz", 0, NULL, "log/fuzz/0"};
	uint8_t *copy = malloc(len ? len : 1); /* exactly len bytes: ASan sees a read past it */
	FUZZ_CHECK(copy);
	memcpy(copy, value, len);
	spate_record_t r = {
	    .version = SPATE_RECORD_VERSION, .partition = &part, .value = copy, .value_len = len};
	const spate_record_t *recs[1] = {&r};
	uint8_t failed[1] = {0};
	struct spate_batch b = {.recs = recs, .n = 1, .failed = failed};
	FUZZ_CHECK(h.handle(h.opaque, NULL, &b) == SPATE_HANDLER_OK);
	free(copy);
}

/* The handler's counters, from its report: records, flagged, malformed. */
static void counters(uint64_t *records, uint64_t *flagged, uint64_t *malformed)
{
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	FUZZ_CHECK(f);
	sp_op_fraud.report(&h, f);
	fclose(f);
	FUZZ_CHECK(sscanf(text,
	                  "fraud.records %" SCNu64 "\nfraud.flagged %" SCNu64 "\nfraud.amount %*" SCNu64
	                  "\nfraud.merchant %*" SCNu64 "\nfraud.card_prefix %*" SCNu64
	                  "\nfraud.currency %*" SCNu64 "\nfraud.malformed %" SCNu64,
	                  records, flagged, malformed) == 3);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (!made) {
		FUZZ_CHECK(sp_op_fraud.create(NULL, NULL, NULL, &h, err, sizeof(err)) == SPATE_OK);
		made = true;
	}
	uint64_t r0, f0, m0, r1, f1, m1;
	counters(&r0, &f0, &m0);
	handle(data, size);
	handle(data, size / 2);
	handle(data, size ? size - 1 : 0);
	counters(&r1, &f1, &m1);
	FUZZ_CHECK(r1 - r0 == 3);
	FUZZ_CHECK(f1 - f0 + m1 - m0 <= 3);
	return 0;
}
