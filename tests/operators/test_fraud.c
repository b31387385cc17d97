/* test_fraud.c - tests of operators/fraud.c: the fraud handler's rules and counts.
 *
 * Hand-written transactions hit and miss each rule; malformed values are counted as
 * malformed and never fail the batch; the fraud.* lists are parsed as documented and
 * bad entries are refused naming their key; a gen pool of the fraud kind trips each
 * rule exactly as gen promises (one record in SP_GEN_FRAUD_PERIOD per rule).
 */
#include "batch.h"
#include "connectors/gen/gen.h"

extern const sp_operator_ops_t sp_op_fraud;

/* What one value counts as, one bit per counter that moved. */
enum { R_AMOUNT = 1, R_MERCHANT = 2, R_CARD = 4, R_CURRENCY = 8, R_MALFORMED = 16 };

static const char *const rule_names[] = {"fraud.amount", "fraud.merchant", "fraud.card_prefix",
                                         "fraud.currency", "fraud.malformed"};

static spate_conf_t *conf_with(const char *k1, const char *v1, const char *k2, const char *v2)
{
	spate_conf_t *c = spate_conf_new();
	char err[256];
	cr_assert_not_null(c);
	if (k1)
		cr_assert_eq(spate_conf_set(c, k1, v1, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	if (k2)
		cr_assert_eq(spate_conf_set(c, k2, v2, err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	return c;
}

static void make(spate_conf_t *conf, spate_handler_t *h)
{
	char err[256] = "";
	cr_assert_eq(sp_op_fraud.create("", conf, NULL, h, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_str_eq(h->name, "fraud");
	cr_assert_not_null(h->init);
	cr_assert_not_null(h->fini);
}

typedef struct counts {
	unsigned long long v[5], records, flagged;
} counts_t;

static counts_t read_counts(spate_handler_t *h)
{
	counts_t c;
	for (int k = 0; k < 5; k++)
		c.v[k] = report_value(&sp_op_fraud, h, rule_names[k]);
	c.records = report_value(&sp_op_fraud, h, "fraud.records");
	c.flagged = report_value(&sp_op_fraud, h, "fraud.flagged");
	return c;
}

/* Run one value through a handler made from conf (NULL: defaults) and return which
 * counters moved. */
static unsigned classify_with(spate_conf_t *conf, const char *value)
{
	spate_handler_t h;
	make(conf, &h);
	tbatch_t t;
	tbatch_init(&t, 1);
	tbatch_set(&t, 0, value);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(t.b.nfailed, 0, "fraud never fails a record");
	tbatch_free(&t);
	counts_t c = read_counts(&h);
	cr_assert_eq(c.records, 1);
	unsigned bits = 0;
	for (int k = 0; k < 5; k++) {
		cr_assert_leq(c.v[k], 1);
		bits |= c.v[k] ? 1u << k : 0;
	}
	cr_assert_eq(c.flagged, (bits & ~(unsigned)R_MALFORMED) ? 1 : 0, "%s", value);
	sp_op_fraud.destroy(&h);
	return bits;
}

static unsigned classify(const char *value)
{
	return classify_with(NULL, value);
}

/* A transaction from its parts. */
static const char *tx(const char *card, const char *merchant, const char *amount, const char *currency,
                      const char *country)
{
	static char buf[4][512];
	static int k;
	char *b = buf[k++ & 3];
	snprintf(b, 512,
	         "{\"tx\":\"t-1\",\"card\":\"%s\",\"merchant\":\"%s\",\"amount\":%s,\"currency\":\"%s\","
	         "\"country\":\"%s\",\"ts\":1700000000000}",
	         card, merchant, amount, currency, country);
	return b;
}

#define CLEAN_CARD "4111-1111-1111-1111"

Test(fraud, clean_transaction_hits_nothing)
{
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-0042", "123.45", "EUR", "DE")), 0);
	/* whitespace between tokens and fields in another order are fine */
	cr_assert_eq(classify(" {\n \"amount\" : 1 , \"country\":\"US\",\"currency\":\"USD\","
	                      "\"merchant\":\"m-1\",\"card\":\"" CLEAN_CARD "\" }\t"),
	             0);
}

Test(fraud, amount_rule)
{
	const char *miss[] = {"5000",        "5000.00",   "5e3",
	                      "0.5e4",       "500000e-2", "4999.999999",
	                      "-99999",      "0",         "5000.000000000000000000000000",
	                      "50000000e-4", NULL};
	const char *hit[] = {"5000.01",   "5000.0000000000000000000001",
	                     "5.00001e3", "1e4",
	                     "50000",     "123456789012345678901234567890",
	                     "1E400",     "5001",
	                     "500001e-2", NULL};
	for (int i = 0; miss[i]; i++)
		cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", miss[i], "EUR", "DE")), 0, "amount %s", miss[i]);
	for (int i = 0; hit[i]; i++)
		cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", hit[i], "EUR", "DE")), R_AMOUNT, "amount %s",
		             hit[i]);
	/* fraud.amount.max moves the bound */
	spate_conf_t *c = conf_with("fraud.amount.max", "100", NULL, NULL);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-1", "100.01", "EUR", "DE")), R_AMOUNT);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-1", "100", "EUR", "DE")), 0);
	spate_conf_destroy(c);
	c = conf_with("fraud.amount.max", "0", NULL, NULL);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-1", "0.001", "EUR", "DE")), R_AMOUNT);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-1", "0.000", "EUR", "DE")), 0);
	spate_conf_destroy(c);
}

Test(fraud, merchant_rule)
{
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-0666", "1", "EUR", "DE")), R_MERCHANT);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1313", "1", "EUR", "DE")), R_MERCHANT);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-06660", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-066", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "M-0666", "1", "EUR", "DE")), 0);
	/* escapes do not hide a blocked merchant */
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-\\u0030666", "1", "EUR", "DE")), R_MERCHANT);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m\\/0666", "1", "EUR", "DE")), 0);
}

Test(fraud, card_prefix_rule)
{
	cr_assert_eq(classify(tx("4000-6612-3456-7890", "m-1", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify(tx("4000661234567890", "m-1", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify(tx("4000 6612 3456 7890", "m-1", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify(tx("4000-6712-3456-7890", "m-1", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify(tx("4000-6", "m-1", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify(tx("5400-0066-0000-0000", "m-1", "1", "EUR", "DE")), 0);
}

Test(fraud, currency_rule)
{
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "USD", "DE")), R_CURRENCY);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "EUR", "US")), R_CURRENCY);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "EURO", "FR")), R_CURRENCY);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "USD", "US")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "GBP", "GB")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "JPY", "JP")), 0);
	/* a country outside the table, or not a code, never trips the rule */
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "USD", "XX")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "USD", "de")), 0);
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-1", "1", "USD", "DEU")), 0);
}

Test(fraud, several_rules_flag_once)
{
	cr_assert_eq(classify(tx("4000-6600-0000-0000", "m-1313", "9999.99", "USD", "DE")),
	             R_AMOUNT | R_MERCHANT | R_CARD | R_CURRENCY);
}

Test(fraud, malformed_values)
{
	const char *bad[] = {
	    "",
	    "not json",
	    "{}",
	    "[]",
	    "\"a string\"",
	    "{\"card\":\"" CLEAN_CARD "\",\"merchant\":\"m-1\",\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":\"123\",\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":4111,\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD "\",\"merchant\":\"m-1\",\"merchant\":\"m-0666\",\"amount\":1,"
	    "\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\"} x",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\"",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":01,\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1.,\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\",}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-\\x\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-\\ud800\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\"}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\",\"x\":tru}",
	    "{\"card\":\"" CLEAN_CARD
	    "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\",\"country\":\"DE\",\"x\":[1,}",
	    NULL};
	for (int i = 0; bad[i]; i++)
		cr_assert_eq(classify(bad[i]), R_MALFORMED, "value %d: %s", i, bad[i]);
	spate_handler_t h;
	make(NULL, &h);
	tbatch_t t;
	tbatch_init(&t, 1); /* a null value */
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(report_value(&sp_op_fraud, &h, "fraud.malformed"), 1);
	tbatch_free(&t);
	sp_op_fraud.destroy(&h);
}

/* Fields the rules do not read may hold any JSON, nested included; escapes decode. */
Test(fraud, other_fields_and_escapes)
{
	cr_assert_eq(
	    classify("{\"meta\":{\"a\":[1,2.5e-3,{\"b\":null}],\"c\":\"}\\\"{\"},\"ok\":true,\"no\":false,"
	             "\"card\":\"" CLEAN_CARD "\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\","
	             "\"country\":\"DE\",\"list\":[]}"),
	    0);
	cr_assert_eq(
	    classify("{\"c\\u0061rd\":\"4000-66\",\"merchant\":\"m-1\",\"amount\":1,\"currency\":\"EUR\","
	             "\"country\":\"D\\u0045\"}"),
	    R_CARD);
	/* a surrogate pair decodes; the merchant is then not a blocked one */
	cr_assert_eq(classify(tx(CLEAN_CARD, "m-\\ud83d\\ude00", "1", "EUR", "DE")), 0);
}

/* The lists: comma-separated, trimmed, empty items skipped, separators in prefixes ignored. */
Test(fraud, lists)
{
	spate_conf_t *c = conf_with("fraud.block.merchants", " m-1 , ,m-2,", "fraud.block.card.prefixes",
	                            "5500, 4000-66 ,37");
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-1", "1", "EUR", "DE")), R_MERCHANT);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-2", "1", "EUR", "DE")), R_MERCHANT);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "m-0666", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify_with(c, tx(CLEAN_CARD, "", "1", "EUR", "DE")), 0);
	cr_assert_eq(classify_with(c, tx("5500-0000-0000-0000", "m-3", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify_with(c, tx("3712-3456-7890-123", "m-3", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify_with(c, tx("4000-6600-0000-0000", "m-3", "1", "EUR", "DE")), R_CARD);
	cr_assert_eq(classify_with(c, tx("4000-6700-0000-0000", "m-3", "1", "EUR", "DE")), 0);
	spate_conf_destroy(c);
	/* empty lists switch their rules off */
	c = conf_with("fraud.block.merchants", "", "fraud.block.card.prefixes", " , ");
	cr_assert_eq(classify_with(c, tx("4000-6600-0000-0000", "m-0666", "1", "EUR", "DE")), 0);
	spate_conf_destroy(c);
}

static void refuses(spate_conf_t *conf, const char *arg, const char *w1, const char *w2)
{
	char err[256] = "";
	spate_handler_t h;
	cr_assert_eq(sp_op_fraud.create(arg, conf, NULL, &h, err, sizeof(err)), SPATE_ERR_INVALID);
	cr_assert(strstr(err, w1) && strstr(err, w2), "%s", err);
}

Test(fraud, create_errors_name_the_key)
{
	refuses(NULL, "x", "handler: fraud takes no argument", "fraud.*");
	spate_conf_t *c = conf_with("fraud.block.card.prefixes", "4000,40x0", NULL, NULL);
	refuses(c, "", "fraud.block.card.prefixes: \"40x0\" is not allowed", "digits");
	spate_conf_destroy(c);
	c = conf_with("fraud.block.card.prefixes", "4000, - ", NULL, NULL);
	refuses(c, "", "fraud.block.card.prefixes: \"-\"", "digits");
	spate_conf_destroy(c);
	c = conf_with("fraud.block.merchants", "m-1,m-\x01", NULL, NULL);
	refuses(c, "", "fraud.block.merchants: ", "merchant id");
	spate_conf_destroy(c);
}

/* Per-worker counts reach the totals when the worker stops; without a worker context
 * they reach them per batch. */
Test(fraud, worker_counts)
{
	spate_handler_t h;
	make(NULL, &h);
	void *w1 = NULL, *w2 = NULL;
	cr_assert_eq(h.init(h.opaque, 0, &w1), SPATE_OK);
	cr_assert_eq(h.init(h.opaque, 1, &w2), SPATE_OK);
	tbatch_t t;
	tbatch_init(&t, 3);
	tbatch_set(&t, 0, tx(CLEAN_CARD, "m-0666", "1", "EUR", "DE"));
	tbatch_set(&t, 1, "junk");
	tbatch_set(&t, 2, tx(CLEAN_CARD, "m-1", "1", "EUR", "DE"));
	cr_assert_eq(h.handle(h.opaque, w1, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(h.handle(h.opaque, w2, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(h.handle(h.opaque, w2, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(h.handle(h.opaque, NULL, &t.b), SPATE_HANDLER_OK);
	cr_assert_eq(report_value(&sp_op_fraud, &h, "fraud.records"), 3);
	h.fini(h.opaque, w1);
	cr_assert_eq(report_value(&sp_op_fraud, &h, "fraud.records"), 6);
	h.fini(h.opaque, w2);
	counts_t c = read_counts(&h);
	cr_assert_eq(c.records, 12);
	cr_assert_eq(c.flagged, 4);
	cr_assert_eq(c.v[1], 4);
	cr_assert_eq(c.v[4], 4);
	cr_assert_eq(c.v[0] + c.v[2] + c.v[3], 0);
	tbatch_free(&t);
	sp_op_fraud.destroy(&h);
}

/* A gen pool of the fraud kind trips each rule in exactly one record per period. */
Test(fraud, gen_pool_trips_rules_exactly)
{
	const uint32_t n = 20000;
	char err[256] = "";
	sp_gen_pool_t *p = NULL;
	cr_assert_eq(sp_gen_pool_new("fraud", n, 10000, 0, 77, &p, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_handler_t h;
	make(NULL, &h);
	void *w = NULL;
	cr_assert_eq(h.init(h.opaque, 0, &w), SPATE_OK);
	const size_t bs = 100;
	tbatch_t t;
	tbatch_init(&t, bs);
	for (uint32_t i = 0; i < n; i += bs) {
		for (size_t j = 0; j < bs; j++) {
			const sp_gen_rec_t *r = sp_gen_pool_rec(p, i + (uint32_t)j);
			t.recs[j].value = r->value;
			t.recs[j].value_len = r->value_len;
		}
		cr_assert_eq(h.handle(h.opaque, w, &t.b), SPATE_HANDLER_OK);
	}
	h.fini(h.opaque, w);
	counts_t c = read_counts(&h);
	cr_assert_eq(c.records, n);
	cr_assert_eq(c.v[4], 0, "gen records are never malformed");
	for (int k = 0; k < 4; k++)
		cr_assert_eq(c.v[k], n / SP_GEN_FRAUD_PERIOD, "%s", rule_names[k]);
	cr_assert_eq(c.flagged, 4 * n / SP_GEN_FRAUD_PERIOD);
	tbatch_free(&t);
	sp_op_fraud.destroy(&h);
	sp_gen_pool_free(p);
}
