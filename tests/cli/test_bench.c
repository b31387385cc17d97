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

#include "tests/common/benchtest.h"
#include "tests/common/kafka.h"
#include "tests/common/util.h"

TestSuite(bench, .fini = t_kafka_fini);

/* Records of each run, at a rate that keeps the runs short on a shared machine. */
#define RECORDS "20000"
#define NREC    20000
#define RATE    "20000"
#define VBYTES  64

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
	json_t *j = t_bench_run(argv, json, NREC);
	t_bench_check(j, "log", NREC, VBYTES);
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
	json_t *j = t_bench_run(argv, json, NREC);
	t_bench_check(j, "kafka", NREC, VBYTES);
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

/* A run too short for a steady state (a few of the 100 ms samples) reports its whole
 * run's rates, and says so, rather than 0 records/s (benchmarks/run --quick took its
 * maximum from such a run and offered a load of 0). */
Test(bench, a_short_run_reports_whole_run_rates)
{
	char dir[256], log[300], json[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(json, sizeof(json), "%s/report.json", dir);
	char *argv[] = {(char *)t_spate_cli(), "bench", "--log", log, "--records", "2000", "--json", json, NULL};
	json_t *j = t_bench_run(argv, json, 2000);
	/* (a machine loaded enough may stretch it to a steady state: then that is reported) */
	cr_assert(json_is_boolean(json_object_get(j, "steady")));
	cr_assert_gt(json_number_value(json_object_get(j, "consume_records_per_s")), 0);
	cr_assert_gt(json_number_value(json_object_get(j, "produce_records_per_s")), 0);
	json_decref(j);
	t_rmrf(dir);
}
