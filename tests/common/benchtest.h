/* benchtest.h - what the `spate bench` tests share (tests/cli/test_bench.c,
 * tests/connectors/kinesis/test_kinesis_bench.c): run it, read its JSON report, check the
 * counts (never the speed). */
#ifndef SPATE_TESTS_BENCHTEST_H
#define SPATE_TESTS_BENCHTEST_H

#include <jansson.h>

/* Run argv (a `spate bench` with --json json): it must exit 0 and say it consumed nrec
 * records; returns the parsed report (json_decref it). */
json_t *t_bench_run(char *const *argv, const char *json, long nrec);
/* The report j of a run on target ("log", "kafka", "kinesis"): nrec records produced and
 * consumed, complete, their bytes those of values of vbytes with short keys, latency
 * percentiles in order, a worker. */
void t_bench_check(json_t *j, const char *target, long nrec, long vbytes);

#endif
