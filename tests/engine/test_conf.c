/* test_conf.c - tests engine/conf.c: every error path names the key; defaults; dup. */
#include "engine/engine.h"

#include <criterion/criterion.h>
#include <string.h>

static spate_conf_t *c;
static char err[512];

static void setup(void)
{
	c = spate_conf_new();
	err[0] = 0;
}
static void teardown(void)
{
	spate_conf_destroy(c);
}

TestSuite(conf, .init = setup, .fini = teardown);

#define EXPECT_REJECT(key, val, res)                                                                \
	do {                                                                                        \
		err[0] = 0;                                                                         \
		cr_assert_eq(spate_conf_set(c, key, val, err, sizeof(err)), res, "%s=%s: %s", key, val, err); \
		cr_assert(strstr(err, key) != NULL, "message does not name %s: %s", key, err);      \
	} while (0)

Test(conf, unknown_key_named_with_suggestion)
{
	EXPECT_REJECT("batch.sise", "10", SPATE_CONF_UNKNOWN);
	cr_assert(strstr(err, "batch.size"), "no suggestion: %s", err);
	EXPECT_REJECT("nonsense", "1", SPATE_CONF_UNKNOWN);
}

Test(conf, int_errors_name_key_and_range)
{
	EXPECT_REJECT("batch.size", "0", SPATE_CONF_INVALID);
	cr_assert(strstr(err, "1..10000"), "%s", err);
	EXPECT_REJECT("batch.size", "10001", SPATE_CONF_INVALID);
	EXPECT_REJECT("batch.size", "ten", SPATE_CONF_INVALID);
	EXPECT_REJECT("batch.size", "", SPATE_CONF_INVALID);
	EXPECT_REJECT("batch.size", "12abc", SPATE_CONF_INVALID);
	EXPECT_REJECT("batch.size", "99999999999999999999999", SPATE_CONF_INVALID);
	EXPECT_REJECT("max.retry.attempts", "-2", SPATE_CONF_INVALID);
	EXPECT_REJECT("parallelization.factor", "1025", SPATE_CONF_INVALID);
	EXPECT_REJECT("max.concurrency", "0", SPATE_CONF_INVALID);
	EXPECT_REJECT("max.record.age.ms", "604800001", SPATE_CONF_INVALID);
}

Test(conf, size_values)
{
	cr_assert_eq(spate_conf_set(c, "max.inflight.bytes", "64M", err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	cr_assert_eq(sp_conf_int(c, "max.inflight.bytes"), 64LL << 20);
	cr_assert_eq(spate_conf_set(c, "segment.bytes", "1k", err, sizeof(err)), SPATE_CONF_INVALID);
	cr_assert(strstr(err, "segment.bytes"));
	EXPECT_REJECT("max.inflight.bytes", "12X", SPATE_CONF_INVALID);
	EXPECT_REJECT("max.inflight.bytes", "0", SPATE_CONF_INVALID);
}

Test(conf, bool_and_enum_errors)
{
	EXPECT_REJECT("stop.at.end", "maybe", SPATE_CONF_INVALID);
	EXPECT_REJECT("bisect.on.error", "2", SPATE_CONF_INVALID);
	EXPECT_REJECT("gen.kind", "xml", SPATE_CONF_INVALID);
	cr_assert(strstr(err, "fraud|sensor|bytes"), "%s", err);
	EXPECT_REJECT("log.level", "verbose", SPATE_CONF_INVALID);
	EXPECT_REJECT("log.on.corruption", "ignore", SPATE_CONF_INVALID);
}

Test(conf, wiring_errors)
{
	EXPECT_REJECT("source", "carrier-pigeon", SPATE_CONF_INVALID);
	EXPECT_REJECT("source", "", SPATE_CONF_INVALID);
	EXPECT_REJECT("handler", "nope:1", SPATE_CONF_INVALID);
	EXPECT_REJECT("handler", "", SPATE_CONF_INVALID);
	EXPECT_REJECT("store", "floppy:/a", SPATE_CONF_INVALID);
	EXPECT_REJECT("dlq", "sqs:queue", SPATE_CONF_INVALID);
	EXPECT_REJECT("starting.position", "middle", SPATE_CONF_INVALID);
	EXPECT_REJECT("starting.position", "at-timestamp:x", SPATE_CONF_INVALID);
	cr_assert_eq(spate_conf_set(c, "starting.position", "at-timestamp:1700000000000", err, sizeof(err)),
	             SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "store", "", err, sizeof(err)), SPATE_CONF_OK);
}

Test(conf, engine_new_cross_key_errors_name_keys)
{
	spate_conf_set(c, "retry.backoff.ms", "500", err, sizeof(err));
	spate_conf_set(c, "retry.backoff.max.ms", "100", err, sizeof(err));
	spate_engine_t *e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_null(e);
	cr_assert(strstr(err, "retry.backoff.max.ms"), "%s", err);

	spate_conf_set(c, "retry.backoff.max.ms", "1000", err, sizeof(err));
	spate_conf_set(c, "handler", "sleep:abc", err, sizeof(err));
	e = spate_engine_new(c, NULL, err, sizeof(err));
	cr_assert_null(e);
	cr_assert(strstr(err, "handler"), "%s", err);

	spate_handler_t h = {.version = 99};
	e = spate_engine_new(c, &h, err, sizeof(err));
	cr_assert_null(e);
	cr_assert(strstr(err, "handler"), "%s", err);
}

Test(conf, defaults_get_set_dup)
{
	char buf[64];
	size_t sz = sizeof(buf);
	cr_assert_eq(spate_conf_get(c, "batch.size", buf, &sz), SPATE_CONF_OK);
	cr_assert_str_eq(buf, "100");
	cr_assert_eq(sz, 4);
	cr_assert_eq(spate_conf_set(c, "batch.size", "250", err, sizeof(err)), SPATE_CONF_OK);
	cr_assert_eq(spate_conf_set(c, "kafka.sasl.password", "s3cret", err, sizeof(err)), SPATE_CONF_OK);
	spate_conf_t *d = spate_conf_dup(c);
	sz = sizeof(buf);
	cr_assert_eq(spate_conf_get(d, "batch.size", buf, &sz), SPATE_CONF_OK);
	cr_assert_str_eq(buf, "250");
	sz = sizeof(buf);
	cr_assert_eq(spate_conf_get(d, "kafka.sasl.password", buf, &sz), SPATE_CONF_OK);
	cr_assert_str_eq(buf, "s3cret");
	sz = 0;
	cr_assert_eq(spate_conf_get(d, "kafka.sasl.password", NULL, &sz), SPATE_CONF_OK);
	cr_assert_eq(sz, 7);
	sz = sizeof(buf);
	cr_assert_eq(spate_conf_get(d, "no.such.key", buf, &sz), SPATE_CONF_UNKNOWN);
	/* the dup is independent */
	spate_conf_set(c, "batch.size", "7", err, sizeof(err));
	sz = sizeof(buf);
	spate_conf_get(d, "batch.size", buf, &sz);
	cr_assert_str_eq(buf, "250");
	spate_conf_destroy(d);
	/* a rejected value leaves the old one */
	cr_assert_eq(spate_conf_set(c, "batch.size", "0", err, sizeof(err)), SPATE_CONF_INVALID);
	cr_assert_eq(sp_conf_int(c, "batch.size"), 7);
}

Test(conf, property_table_is_complete)
{
	size_t n;
	const spate_conf_prop_t *p = spate_conf_properties(&n);
	cr_assert_gt(n, 20);
	for (size_t i = 0; i < n; i++) {
		cr_assert(p[i].name && *p[i].name);
		cr_assert(p[i].doc && *p[i].doc, "%s has no doc", p[i].name);
		cr_assert(p[i].def);
		/* every default is accepted by its own check */
		cr_assert_eq(spate_conf_set(c, p[i].name, p[i].def, err, sizeof(err)), SPATE_CONF_OK, "%s=%s: %s",
		             p[i].name, p[i].def, err);
	}
}

Test(conf, errors_have_names)
{
	for (int e = 0; e > SPATE_ERR__END; e--) {
		cr_assert_str_neq(spate_err2name(e), "ERR_UNKNOWN_CODE", "code %d", e);
		cr_assert(strlen(spate_err2str(e)) > 0);
	}
	cr_assert_str_eq(spate_err2name(SPATE_ERR_INVALID), "ERR_INVALID");
	cr_assert_str_eq(spate_err2name(-1000), "ERR_UNKNOWN_CODE");
}

Test(conf, positions_and_checkpoints_round_trip)
{
	spate_position_t a = sp_pos(42), b = {.w = {1, 2, 3}}, x;
	char buf[80];
	cr_assert_eq(sp_position_parse(spate_position_fmt(&a, buf, sizeof(buf)), &x), 0);
	cr_assert_eq(spate_position_cmp(&a, &x), 0);
	cr_assert_eq(sp_position_parse(spate_position_fmt(&b, buf, sizeof(buf)), &x), 0);
	cr_assert_eq(spate_position_cmp(&b, &x), 0);
	cr_assert_lt(spate_position_cmp(&a, &b), 0);
	sp_ckpt_t ck = {.beginning = true}, y;
	cr_assert_eq(sp_ckpt_parse(sp_ckpt_fmt(&ck, buf, sizeof(buf)), &y), 0);
	cr_assert(y.beginning);
	cr_assert_eq(sp_position_parse("-1", &x), -1);
	cr_assert_eq(sp_position_parse("12z", &x), -1);
	cr_assert_eq(sp_position_parse("", &x), -1);
}

Test(conf, position_parse_rejects_overflow_and_signs)
{
	spate_position_t x;
	cr_assert_eq(sp_position_parse("18446744073709551615", &x), 0);
	cr_assert_eq(x.w[2], UINT64_MAX);
	cr_assert_eq(sp_position_parse("18446744073709551616", &x), -1);
	cr_assert_eq(sp_position_parse("+5", &x), -1);
	cr_assert_eq(sp_position_parse(" 5", &x), -1);
	cr_assert_eq(sp_position_parse("1: 2:3", &x), -1);
	cr_assert_eq(sp_position_parse("1:+2:3", &x), -1);
	cr_assert_eq(sp_position_parse("1:2", &x), -1);
	cr_assert_eq(sp_position_parse("1:2:3", &x), 0);
	cr_assert_eq(x.w[0], 1);
	cr_assert_eq(x.w[2], 3);
}
