/* test_bench.c - tests `spate bench` (cli/cmd_bench.c): against a new log and against a
 * mock-kafka topic, its report counts exactly the records produced, consumed and their
 * bytes (never its speed); it refuses a log that holds records. --kinesis is tested
 * against kinesalite in tests/connectors/kinesis/test_kinesis_bench.c. */
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/kafka.h"
#include "tests/common/util.h"

TestSuite(bench, .fini = t_kafka_fini);

/* Records of each run, at a rate that keeps the runs short on a shared machine. */
#define RECORDS "20000"
#define NREC    20000
#define RATE    "20000"
#define VBYTES  64
/* gen bytes records: a key "k" plus digits, a value of VBYTES; the report's bytes are
 * keys plus values, so they are at least NREC * VBYTES */

static json_t *run_bench(char *const *argv, const char *json)
{
	char *out, *err;
	int st = t_run(argv, &out, &err);
	cr_assert_eq(st, 0, "spate bench exited %d:\n%s\n%s", st, out, err);
	cr_assert(strstr(out, "consumed " RECORDS " records\n"), "%s", out);
	json_error_t je;
	json_t *j = json_load_file(json, 0, &je);
	cr_assert(j, "%s: %s", json, je.text);
	free(out), free(err);
	return j;
}

static void check_counts(json_t *j, const char *target)
{
	cr_assert_str_eq(json_string_value(json_object_get(j, "target")), target);
	cr_assert_eq(json_integer_value(json_object_get(j, "produced")), NREC);
	cr_assert_eq(json_integer_value(json_object_get(j, "consumed")), NREC);
	cr_assert(json_is_true(json_object_get(j, "complete")));
	json_int_t bytes = json_integer_value(json_object_get(j, "produced_bytes"));
	cr_assert_geq(bytes, (json_int_t)NREC * VBYTES);
	cr_assert_leq(bytes, (json_int_t)NREC * (VBYTES + 16));
	json_t *lat = json_object_get(j, "latency_done");
	cr_assert(json_is_object(lat));
	cr_assert_geq(json_number_value(json_object_get(lat, "max_ms")),
	              json_number_value(json_object_get(lat, "p50_ms")));
	cr_assert_geq(json_integer_value(json_object_get(j, "workers_max")), 1);
}

Test(bench, log_counts_match)
{
	char dir[256], log[300], json[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(json, sizeof(json), "%s/report.json", dir);
	char *argv[] = {(char *)t_spate_cli(),
	                "bench",
	                "--log",
	                log,
	                "--records",
	                RECORDS,
	                "--rate",
	                RATE,
	                "--record-bytes",
	                "64",
	                "--partitions",
	                "4",
	                "--json",
	                json,
	                "-X",
	                "flush.ms=5",
	                NULL};
	json_t *j = run_bench(argv, json);
	check_counts(j, "log");
	json_decref(j);
	/* the log now holds records: a second run is refused, naming the folder */
	char *out, *err;
	cr_assert_neq(t_run(argv, &out, &err), 0, "a log with records was accepted: %s", out);
	free(out), free(err);
	t_rmrf(dir);
}

Test(bench, mock_kafka_counts_match, .timeout = 300)
{
	const char *topics[] = {"bench:4", NULL};
	t_kafka_t *k = t_kafka_start(1, topics);
	char dir[256], json[300], bs[512];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(json, sizeof(json), "%s/report.json", dir);
	snprintf(bs, sizeof(bs), "kafka.bootstrap.servers=%s", t_kafka_bootstrap(k));
	char *argv[] = {
	    (char *)t_spate_cli(), "bench", "--kafka", "bench", "--records", RECORDS, "--rate", RATE,
	    "--record-bytes",      "64",    "--json",  json,    "-X",        bs,      NULL};
	json_t *j = run_bench(argv, json);
	check_counts(j, "kafka");
	json_decref(j);
	t_kafka_stop(k);
	t_rmrf(dir);
}

/* --warmup: the warm-up record must be handled in time, or the run fails naming the
 * option (a handler that takes 3 s per batch, a warm-up of 1 s). */
Test(bench, a_warmup_not_handled_in_time_is_an_error_naming_it)
{
	char dir[256], log[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/log", dir);
	char *argv[] = {(char *)t_spate_cli(), "bench", "--log", log, "--records", "100", "--handler",
	                "sleep:3000", "--warmup", "1", "-X", "flush.ms=5", NULL};
	char *out, *err;
	int st = t_run(argv, &out, &err);
	cr_assert_neq(st, 0, "a warm-up that was not handled in time passed:\n%s", out);
	cr_assert(strstr(err, "warm-up record") && strstr(err, "--warmup 1 s"), "%s", err);
	free(out), free(err);
	t_rmrf(dir);
}
