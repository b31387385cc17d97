/* test_operators_emit.c - the operators that emit, through the spate command with gen's
 * fraud transactions and log sinks (read back with `spate log dump`):
 *  - fraud with fraud.sink: each flagged transaction once in the sink, with the rules
 *    that fired in fraud.rules and its origin in spate.origin;
 *  - route: each route.SINK=PATTERN gets exactly the records its pattern matches (the
 *    same pattern as a filter passes as many), unchanged; a record matching two routes
 *    goes to both; with a filter in front, only what passes is routed;
 * *  - sensor with sensor.sink: each anomalous reading once, with its anomalies;
 *  - sensor with sensor.sink: each anomalous reading once, with its anomalies;
 *  - a route or fraud.sink naming no sink, and a bad pattern, are refused. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/util.h"

/* Run the spate command with args (NULL-terminated, after "spate"); returns stdout. */
static char *spate(int want_rc, char **err_out, ...)
{
	char *argv[64];
	int n = 0;
	argv[n++] = (char *)t_spate_cli();
	va_list ap;
	va_start(ap, err_out);
	for (char *a; (a = va_arg(ap, char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	char *out = NULL, *err = NULL;
	int rc = t_run(argv, &out, &err);
	cr_assert_eq(rc, want_rc, "%s %s exited %d: %s", argv[1], argv[2], rc, err ? err : "");
	if (err_out)
		*err_out = err;
	else
		free(err);
	return out;
}

/* The value of a `name value` line of a summary. */
static long long line_value(const char *out, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, name, nl) && p[nl] == ' ')
			return atoll(p + nl + 1);
	cr_assert_fail("no line \"%s\" in:\n%s", name, out);
	return -1;
}

/* Lines of `spate log dump dir`, and how many contain each of up to 4 needles. */
static int dump(const char *dir, const char *const *needles, int *hits)
{
	char *out = spate(0, NULL, "log", "dump", dir, NULL);
	int lines = 0;
	for (char *p = out, *e; *p; p = e + 1) {
		e = strchr(p, '\n');
		cr_assert_not_null(e);
		*e = 0;
		lines++;
		cr_assert_not_null(strstr(p, "\"spate.origin\"=\"gen/gen/"), "no spate.origin: %s", p);
		for (int k = 0; needles && needles[k]; k++)
			hits[k] += strstr(p, needles[k]) != NULL;
	}
	free(out);
	return lines;
}

Test(operators_emit, fraud_emits_each_flagged_transaction_with_its_rules, .timeout = 120)
{
	char dir[256], sink[340], alerts[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(alerts, sizeof(alerts), "%s/alerts", dir);
	snprintf(sink, sizeof(sink), "sink.alerts=log:%s", alerts);
	char *out = spate(0, NULL, "run", "-X", "source=gen", "-X", "gen.records=20000", "-X",
	                  "handler=fraud", "-X", sink, "-X", "fraud.sink=alerts", NULL);
	/* gen plants exactly 200 of each rule in 20,000 records, none breaking two */
	cr_assert_eq(line_value(out, "fraud.flagged"), 800);
	cr_assert_eq(line_value(out, "emitted"), 800);
	free(out);
	const char *rules[] = {"\"fraud.rules\"=\"amount\"", "\"fraud.rules\"=\"merchant\"",
	                       "\"fraud.rules\"=\"card_prefix\"", "\"fraud.rules\"=\"currency\"", NULL};
	int hits[4] = {0};
	cr_assert_eq(dump(alerts, rules, hits), 800);
	for (int k = 0; k < 4; k++)
		cr_assert_eq(hits[k], 200, "%s on %d alerts, want 200", rules[k], hits[k]);
	t_rmrf(dir);
}

#define BIG "{\"value\": {\"amount\": [{\"numeric\": [\">\", 5000]}]}}"
#define EUR "{\"value\": {\"currency\": [\"EUR\"]}}"

/* How many of gen's first 20000 records pattern passes, by the filter key. */
static long long passing(const char *pattern)
{
	char f[600];
	snprintf(f, sizeof(f), "filter=%s", pattern);
	char *out = spate(0, NULL, "run", "-X", "source=gen", "-X", "gen.records=20000", "-X", f, NULL);
	long long n = line_value(out, "records") - line_value(out, "filtered");
	free(out);
	return n;
}

Test(operators_emit, route_sends_each_record_to_every_sink_it_matches, .timeout = 180)
{
	char dir[256], big[300], eur[300], s1[320], s2[320];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(big, sizeof(big), "%s/big", dir);
	snprintf(eur, sizeof(eur), "%s/eur", dir);
	snprintf(s1, sizeof(s1), "sink.big=log:%s", big);
	snprintf(s2, sizeof(s2), "sink.eur=log:%s", eur);
	char *out =
	    spate(0, NULL, "run", "-X", "source=gen", "-X", "gen.records=20000", "-X", "handler=route", "-X",
	          s1, "-X", s2, "-X", "route.big=" BIG, "-X", "route.eur=" EUR, NULL);
	long long nbig = line_value(out, "route.big"), neur = line_value(out, "route.eur");
	cr_assert_eq(line_value(out, "emitted"), nbig + neur);
	free(out);
	cr_assert_eq(nbig, 200, "gen plants 200 amounts above 5000 in 20,000 records");
	cr_assert_eq(neur, passing(EUR));
	cr_assert_gt(neur, 1000);

	const char *eur_needle[] = {"\\\"currency\\\":\\\"EUR\\\"", NULL};
	int hits[4] = {0};
	cr_assert_eq(dump(eur, eur_needle, hits), neur);
	cr_assert_eq(hits[0], neur, "records in the eur sink that are not in EUR");
	memset(hits, 0, sizeof(hits));
	cr_assert_eq(dump(big, eur_needle, hits), nbig);
	cr_assert_gt(hits[0], 0, "no big EUR amount went to both sinks");

	/* a filter in front: only German transactions reach route */
	t_rmrf(dir);
	t_mkdtemp(dir, sizeof(dir));
	snprintf(eur, sizeof(eur), "%s/eur", dir);
	snprintf(s2, sizeof(s2), "sink.eur=log:%s", eur);
	out =
	    spate(0, NULL, "run", "-X", "source=gen", "-X", "gen.records=20000", "-X", "handler=route", "-X",
	          s2, "-X", "route.eur=" EUR, "-X", "filter={\"value\": {\"country\": [\"DE\"]}}", NULL);
	long long de_eur = line_value(out, "route.eur");
	cr_assert_eq(line_value(out, "route.records"), 20000 - line_value(out, "filtered"));
	free(out);
	cr_assert_gt(de_eur, 0);
	cr_assert_lt(de_eur, neur);
	const char *de[] = {"\\\"country\\\":\\\"DE\\\"", NULL};
	memset(hits, 0, sizeof(hits));
	cr_assert_eq(dump(eur, de, hits), de_eur);
	cr_assert_eq(hits[0], de_eur, "a record the filter dropped was routed");
	t_rmrf(dir);
}

static void refused(const char *want, const char *a, const char *b, const char *c)
{
	char *err = NULL;
	free(spate(1, &err, "run", "-X", a, "-X", b, "-X", c, NULL));
	cr_assert(err && strstr(err, want), "stderr \"%s\" does not say \"%s\"", err ? err : "", want);
	free(err);
}

Test(operators_emit, missing_sinks_and_bad_patterns_are_refused, .timeout = 60)
{
	refused("route.x: no sink named \"x\"", "handler=route", "route.x={\"a\": [1]}", "log.level=error");
	refused("fraud.sink: no sink named \"nope\"", "handler=fraud", "fraud.sink=nope", "log.level=error");
	refused("route.x: byte 8: not valid JSON", "handler=route", "sink.x=log:/tmp/never-opened",
	        "route.x={\"a\":[1,]}");
	refused("route needs at least one route.SINK=PATTERN", "handler=route", "log.level=error",
	        "source=gen");
}

Test(operators_emit, sensor_emits_each_anomalous_reading, .timeout = 120)
{
	char dir[256], sink[340], anom[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(anom, sizeof(anom), "%s/anom", dir);
	snprintf(sink, sizeof(sink), "sink.anom=log:%s", anom);
	char *out =
	    spate(0, NULL, "run", "-X", "source=gen", "-X", "gen.kind=sensor", "-X", "gen.records=20000",
	          "-X", "handler=sensor", "-X", "sensor.field=temp_c", "-X", "sensor.min=-20", "-X",
	          "sensor.max=40", "-X", sink, "-X", "sensor.sink=anom", NULL);
	long long anomalous = line_value(out, "sensor.anomalous");
	cr_assert_eq(line_value(out, "sensor.records"), 20000);
	cr_assert_eq(line_value(out, "sensor.range"), anomalous);
	cr_assert_eq(line_value(out, "emitted"), anomalous);
	cr_assert_gt(anomalous, 0);
	cr_assert_lt(anomalous, 20000);
	free(out);
	const char *range[] = {"\"sensor.anomalies\"=\"range\"", NULL};
	int hits[4] = {0};
	cr_assert_eq(dump(anom, range, hits), anomalous);
	cr_assert_eq(hits[0], anomalous);
	t_rmrf(dir);
}
