/* test_sensor.c - the sensor operator on hand-built batches: each check alone (range,
 * NaN, unit, stale, stuck per key), combined, malformed readings, the bound on tracked
 * keys, and bad options refused with their key. */
#include "tests/operators/batch.h"

extern const sp_operator_ops_t sp_op_sensor;

static spate_conf_t *conf_of(const char *const *kv)
{
	spate_conf_t *c = spate_conf_new();
	char err[256];
	for (int i = 0; kv && kv[i]; i += 2)
		cr_assert_eq(spate_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)), SPATE_CONF_OK, "%s", err);
	return c;
}

/* Handle readings (key, value, record timestamp) in one batch through a sensor made from
 * kv; the handler is left for report_value. */
typedef struct rd {
	const char *key, *value;
	int64_t ts;
} rd_t;

static void run(const char *const *kv, const rd_t *r, size_t n, spate_handler_t *h)
{
	spate_conf_t *c = conf_of(kv);
	char err[256] = "";
	cr_assert_eq(sp_op_sensor.create("", c, NULL, h, err, sizeof(err)), SPATE_OK, "%s", err);
	spate_conf_destroy(c);
	tbatch_t t;
	tbatch_init(&t, n);
	for (size_t i = 0; i < n; i++) {
		tbatch_set(&t, i, r[i].value);
		t.recs[i].key = r[i].key;
		t.recs[i].key_len = r[i].key ? strlen(r[i].key) : 0;
		t.recs[i].timestamp_ms = r[i].ts;
	}
	cr_assert_eq(h->handle(h->opaque, NULL, &t.b), SPATE_HANDLER_OK);
	tbatch_free(&t);
}

static unsigned long long v(spate_handler_t *h, const char *name)
{
	return report_value(&sp_op_sensor, h, name);
}

Test(sensor, each_check_alone_and_combined)
{
	const char *kv[] = {"sensor.min",
	                    "-40",
	                    "sensor.max",
	                    "85",
	                    "sensor.unit",
	                    "C",
	                    "sensor.stale.ms",
	                    "60000",
	                    "sensor.stuck.readings",
	                    "3",
	                    NULL};
	const rd_t r[] = {
	    {"s1", "{\"value\": 21.5, \"unit\": \"C\", \"ts\": 1000000}", 1000000}, /* fine */
	    {"s2", "{\"value\": 85.01, \"unit\": \"C\"}", 0},                       /* range */
	    {"s2", "{\"value\": -40, \"unit\": \"C\"}", 0},                  /* fine: bounds inclusive */
	    {"s3", "{\"value\": null, \"unit\": \"C\"}", 0},                 /* nan */
	    {"s3", "{\"unit\": \"C\", \"value\": \"NaN\"}", 0},              /* nan */
	    {"s4", "{\"value\": 20, \"unit\": \"F\"}", 0},                   /* unit */
	    {"s4", "{\"value\": 21}", 0},                                    /* unit (missing) */
	    {"s5", "{\"value\": 20, \"unit\": \"C\", \"ts\": 1000}", 61001}, /* stale */
	    {"s5", "{\"value\": 21, \"unit\": \"C\", \"ts\": 1000}", 61000}, /* fine: 60 s exactly */
	    {"s6", "{\"value\": 7, \"unit\": \"C\"}", 0},
	    {"s7", "{\"value\": 7, \"unit\": \"C\"}", 0}, /* another key: its own run */
	    {"s6", "{\"value\": 7, \"unit\": \"C\", \"extra\": {\"a\": [1, \"}\"]}}", 0},
	    {"s6", "{\"value\": 7.0, \"unit\": \"C\"}", 0},                 /* stuck (third 7 of s6) */
	    {"s6", "{\"value\": 7, \"unit\": \"C\"}", 0},                   /* stuck */
	    {"s6", "{\"value\": 8, \"unit\": \"C\"}", 0},                   /* fine: the run ends */
	    {"s8", "{\"value\": 100, \"unit\": \"K\", \"ts\": 0}", 999999}, /* range, unit, stale */
	    {"s9", "not json", 0},
	    {"s9", "{\"unit\": \"C\"}", 0},                      /* no value */
	    {"s9", "{\"value\": \"warm\", \"unit\": \"C\"}", 0}, /* not a number */
	    {"s9", "{\"value\": 1, \"value\": 2}", 0},           /* twice */
	    {"s9", NULL, 0},
	};
	spate_handler_t h;
	run(kv, r, sizeof(r) / sizeof(r[0]), &h);
	cr_assert_eq(v(&h, "sensor.records"), 21);
	cr_assert_eq(v(&h, "sensor.range"), 2);
	cr_assert_eq(v(&h, "sensor.nan"), 2);
	cr_assert_eq(v(&h, "sensor.unit"), 3);
	cr_assert_eq(v(&h, "sensor.stale"), 2);
	cr_assert_eq(v(&h, "sensor.stuck"), 2);
	cr_assert_eq(v(&h, "sensor.malformed"), 5);
	cr_assert_eq(v(&h, "sensor.anomalous"), 9);
	cr_assert_eq(v(&h, "sensor.untracked"), 0);
	sp_op_sensor.destroy(&h);
}

Test(sensor, keys_beyond_the_bound_are_untracked)
{
	const char *kv[] = {"sensor.stuck.readings", "2", "sensor.keys.max", "2", NULL};
	const rd_t r[] = {
	    {"a", "{\"value\": 1}", 0}, {"b", "{\"value\": 1}", 0}, {"c", "{\"value\": 1}", 0},
	    {"a", "{\"value\": 1}", 0}, {"b", "{\"value\": 1}", 0}, {"c", "{\"value\": 1}", 0},
	};
	spate_handler_t h;
	run(kv, r, 6, &h);
	cr_assert_eq(v(&h, "sensor.stuck"), 2, "a and b are stuck");
	cr_assert_eq(v(&h, "sensor.untracked"), 2, "c is not tracked");
	sp_op_sensor.destroy(&h);
}

static void refused(const char *k, const char *val, const char *want)
{
	const char *kv[] = {k, val, NULL};
	spate_conf_t *c = conf_of(kv);
	spate_handler_t h;
	char err[256] = "";
	cr_assert_neq(sp_op_sensor.create("", c, NULL, &h, err, sizeof(err)), SPATE_OK, "%s=%s was taken", k,
	              val);
	cr_assert(strstr(err, want), "error \"%s\" does not say \"%s\"", err, want);
	spate_conf_destroy(c);
}

Test(sensor, bad_options_are_refused)
{
	refused("sensor.min", "cold", "sensor.min: \"cold\" is not a number");
	refused("sensor.max", "-1e400x", "sensor.max:");
	refused("sensor.min", "inf", "sensor.min: inf is above sensor.max");
	refused("sensor.sink", "alerts", "sensor.sink: no sink named \"alerts\"");
}
