/* test_kinesis_bench.c - `spate bench --kinesis STREAM` (cli/cmd_bench.c) against
 * kinesalite: its report counts exactly the records it put and the pipeline consumed,
 * and their bytes (never its speed); a second target named with it is refused. */
#include <spate/spate.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/benchtest.h"
#include "tests/common/kinesalite.h"
#include "tests/common/util.h"

TestSuite(kinesis_bench, .fini = t_kinesalite_fini);

/* kinesalite takes a few thousand PutRecords records/s here: a short run */
#define RECORDS "3000"
#define NREC    3000
#define RATE    "1500"
#define VBYTES  64

Test(kinesis_bench, counts_match, .timeout = 240)
{
	t_kin_t *k = t_kinesalite_start();
	t_kin_create(k, "bench", 2);
	t_kin_wait_active(k, "bench");
	char dir[256], json[300], ep[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(json, sizeof(json), "%s/report.json", dir);
	snprintf(ep, sizeof(ep), "kinesis.endpoint=%s", t_kin_endpoint(k));
	char *argv[] = {(char *)t_spate_cli(),
	                "bench",
	                "--kinesis",
	                "bench",
	                "--records",
	                RECORDS,
	                "--rate",
	                RATE,
	                "--record-bytes",
	                "64",
	                "--json",
	                json,
	                "-X",
	                ep,
	                "-X",
	                "kinesis.region=" T_KIN_REGION,
	                NULL};
	json_t *j = t_bench_run(argv, json, NREC);
	t_bench_check(j, "kinesis", NREC, VBYTES);
	cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "bench");
	json_decref(j);
	/* the stream holds exactly what was put: the shards' records add up */
	t_shard_t sh[8];
	int ns = t_kin_shards(k, "bench", sh, 8);
	cr_assert_eq(ns, 2);
	long total = 0;
	for (int i = 0; i < ns; i++) {
		char last[128];
		total += t_kin_read_shard(k, "bench", sh[i].id, last, sizeof(last));
	}
	cr_assert_eq(total, NREC);
	/* one target only */
	char *two[] = {(char *)t_spate_cli(), "bench", "--kinesis", "bench", "--kafka", "t", NULL};
	char *out, *err;
	cr_assert_eq(t_run(two, &out, &err), 2);
	cr_assert(strstr(err, "give one of"), "%s", err);
	free(out), free(err);
	t_kinesalite_stop(k);
	t_rmrf(dir);
}
