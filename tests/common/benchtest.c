/* benchtest.c - see benchtest.h. */
#include "tests/common/benchtest.h"

#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *t_bench_run(char *const *argv, const char *json, long nrec)
{
	char *out, *err, want[64];
	int st = t_run(argv, &out, &err);
	cr_assert_eq(st, 0, "spate bench exited %d:\n%s\n%s", st, out, err);
	snprintf(want, sizeof(want), "consumed %ld records\n", nrec);
	cr_assert(strstr(out, want), "%s", out);
	free(out), free(err);
	json_error_t je;
	json_t *j = json_load_file(json, 0, &je);
	cr_assert(j, "%s: %s", json, je.text);
	return j;
}

void t_bench_check(json_t *j, const char *target, long nrec, long vbytes)
{
	cr_assert_str_eq(json_string_value(json_object_get(j, "target")), target);
	cr_assert_eq(json_integer_value(json_object_get(j, "produced")), nrec);
	cr_assert_eq(json_integer_value(json_object_get(j, "consumed")), nrec);
	cr_assert(json_is_true(json_object_get(j, "complete")));
	/* gen bytes records: a key "k" plus digits and a value of vbytes */
	json_int_t bytes = json_integer_value(json_object_get(j, "produced_bytes"));
	cr_assert_geq(bytes, (json_int_t)nrec * vbytes);
	cr_assert_leq(bytes, (json_int_t)nrec * (vbytes + 16));
	json_t *lat = json_object_get(j, "latency_done");
	cr_assert(json_is_object(lat));
	cr_assert_geq(json_number_value(json_object_get(lat, "max_ms")),
	              json_number_value(json_object_get(lat, "p50_ms")));
	cr_assert_geq(json_integer_value(json_object_get(j, "workers_max")), 1);
}
