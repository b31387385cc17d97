/* test_cli.c - tests cli/: `spate run` rejects bad configuration naming the key (and the
 * file and line), prints a summary of plain integers, and docs/configuration.md agrees
 * with the property table. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/util.h"

static int run_cli(char **out, char **err, const char *a1, const char *a2, const char *a3, const char *a4,
                   const char *a5)
{
	char *argv[] = {
	    (char *)t_spate_cli(), (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
	return t_run(argv, out, err);
}

Test(cli, misspelled_key_exits_nonzero_naming_it)
{
	char *out, *err;
	int rc = run_cli(&out, &err, "run", "-X", "batch.sise=10", NULL, NULL);
	cr_assert_neq(rc, 0);
	cr_assert(strstr(err, "batch.sise"), "stderr: %s", err);
	cr_assert(strstr(err, "batch.size"), "no suggestion: %s", err);
	free(out);
	free(err);
}

Test(cli, batch_size_zero_exits_nonzero_naming_it)
{
	char *out, *err;
	int rc = run_cli(&out, &err, "run", "-X", "batch.size=0", NULL, NULL);
	cr_assert_neq(rc, 0);
	cr_assert(strstr(err, "batch.size"), "stderr: %s", err);
	cr_assert(strstr(err, "1..10000"), "allowed range missing: %s", err);
	free(out);
	free(err);
}

Test(cli, config_file_errors_name_file_line_and_key)
{
	char dir[64], path[128];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "# a comment\nsource=gen\n\nmax.concurrency=0\n");
	fclose(f);
	char *out, *err;
	int rc = run_cli(&out, &err, "run", path, NULL, NULL, NULL);
	cr_assert_neq(rc, 0);
	char want[160];
	snprintf(want, sizeof(want), "%s:4:", path);
	cr_assert(strstr(err, want), "no FILE:LINE in: %s", err);
	cr_assert(strstr(err, "max.concurrency"), "%s", err);
	free(out);
	free(err);
	f = fopen(path, "w");
	fprintf(f, "source=gen\nthis line has no equals sign\n");
	fclose(f);
	rc = run_cli(&out, &err, "run", path, NULL, NULL, NULL);
	cr_assert_neq(rc, 0);
	snprintf(want, sizeof(want), "%s:2:", path);
	cr_assert(strstr(err, want), "%s", err);
	free(out);
	free(err);
	/* -X overrides the file even when given before it */
	f = fopen(path, "w");
	fprintf(f, "source=gen\ngen.records=1000\ngen.partitions=2\nstop.at.end=true\nbatch.size=0x\n");
	fclose(f);
	rc = run_cli(&out, &err, "run", path, NULL, NULL, NULL);
	cr_assert_neq(rc, 0);
	cr_assert(strstr(err, "batch.size"), "%s", err);
	free(out);
	free(err);
	t_rmrf(dir);
}

static long field(const char *out, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\n%s ", name);
	char *buf = malloc(strlen(out) + 2);
	buf[0] = '\n';
	strcpy(buf + 1, out);
	char *p = strstr(buf, pat);
	long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
	free(buf);
	return v;
}

Test(cli, run_prints_summary_and_json)
{
	char dir[64], js[128], jsarg[160];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(js, sizeof(js), "%s/summary.json", dir);
	snprintf(jsarg, sizeof(jsarg), "summary.json=%s", js);
	char *argv[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                "source=gen",
	                "-X",
	                "gen.records=20000",
	                "-X",
	                "gen.partitions=4",
	                "-X",
	                "stop.at.end=true",
	                "-X",
	                "handler=fraud",
	                "-X",
	                jsarg,
	                NULL};
	char *out, *err;
	int rc = t_run(argv, &out, &err);
	cr_assert_eq(rc, 0, "stderr: %s", err);
	cr_assert_eq(field(out, "records"), 20000, "%s", out);
	cr_assert_eq(field(out, "failed"), 0);
	cr_assert_eq(field(out, "dlq"), 0);
	cr_assert_eq(field(out, "dropped"), 0);
	cr_assert_geq(field(out, "batches"), 200);
	cr_assert_geq(field(out, "elapsed_s"), 0);
	cr_assert_geq(field(out, "records_per_s"), 1);
	char *j = t_read_file(js, NULL);
	cr_assert_not_null(j);
	cr_assert(strstr(j, "\"records\":20000"), "%s", j);
	cr_assert(strstr(j, "\"records_per_s\":"), "%s", j);
	/* one set of names and values: every printed line is the JSON's field, and back */
	size_t lines = 0;
	for (char *l = out; l && *l;) {
		char *nl = strchr(l, '\n');
		char *sp = strchr(l, ' ');
		if (!sp || (nl && sp > nl) || !strncmp(l, "fraud.", 6))
			break; /* the fraud report (fraud.* lines) follows the summary */
		char want[256];
		snprintf(want, sizeof(want), "\"%.*s\":%.*s", (int)(sp - l), l,
		         (int)((nl ? nl : l + strlen(l)) - sp - 1), sp + 1);
		cr_assert(strstr(j, want), "summary line %.*s is not %s in summary.json: %s", (int)(sp - l),
		          l, want, j);
		lines++;
		l = nl ? nl + 1 : NULL;
	}
	size_t keys = 0;
	for (const char *c = j; *c; c++)
		keys += *c == ':';
	cr_assert_eq(lines, keys, "%zu summary lines, %zu JSON fields", lines, keys);
	free(j);
	free(out);
	free(err);
	t_rmrf(dir);
}

Test(cli, help_and_version)
{
	char *out, *err;
	cr_assert_eq(run_cli(&out, &err, "--help", NULL, NULL, NULL, NULL), 0);
	cr_assert(strstr(out, "run"));
	free(out);
	free(err);
	cr_assert_eq(run_cli(&out, &err, "run", "--help", NULL, NULL, NULL), 0);
	cr_assert(strstr(out, "batch.size"));
	cr_assert(strstr(out, "parallelization.factor"));
	free(out);
	free(err);
	cr_assert_eq(run_cli(&out, &err, "version", NULL, NULL, NULL, NULL), 0);
	cr_assert(strstr(out, "spate 0."));
	free(out);
	free(err);
	cr_assert_neq(run_cli(&out, &err, "frobnicate", NULL, NULL, NULL, NULL), 0);
	cr_assert(strstr(err, "frobnicate"));
	free(out);
	free(err);
}

Test(cli, configuration_md_agrees_with_the_table)
{
	char *out, *err;
	cr_assert_eq(run_cli(&out, &err, "config", "--markdown", NULL, NULL, NULL), 0);
	const char *src = getenv("SPATE_SOURCE_DIR");
	char path[512];
	snprintf(path, sizeof(path), "%s/docs/configuration.md", src ? src : ".");
	char *doc = t_read_file(path, NULL);
	cr_assert_not_null(doc, "cannot read %s", path);
	cr_assert_str_eq(doc, out,
	                 "docs/configuration.md is out of date: regenerate with "
	                 "`build/cli/spate config --markdown > docs/configuration.md`");
	free(doc);
	free(out);
	free(err);
}

/* The last stats line's value of "name" in file path (-1 when there is none yet). */
static long stats_field(const char *path, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", name);
	char *s = t_read_file(path, NULL);
	long v = -1;
	for (char *p = s ? strstr(s, pat) : NULL; p; p = strstr(p + 1, pat))
		v = strtol(p + strlen(pat), NULL, 10);
	free(s);
	return v;
}

/* The records a checkpoint store says are DONE: the sum over its partitions of the last
 * offset + 1 (`spate checkpoint show` prints "SOURCE/PIPELINE/PARTITION OFFSET"). */
static long ckpt_done(const char *store)
{
	char *argv[] = {(char *)t_spate_cli(), "checkpoint", "show", (char *)store, NULL};
	char *out, *err;
	cr_assert_eq(t_run(argv, &out, &err), 0, "%s", err);
	long sum = 0;
	for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char *sp = strchr(l, ' ');
		if (sp && !strncmp(l, "gen/", 4) && sp[1] >= '0' && sp[1] <= '9')
			sum += strtol(sp + 1, NULL, 10) + 1;
	}
	free(out);
	free(err);
	return sum;
}

/* SIGTERM while handler calls run (sleep:100 per batch, an unbounded source): the calls
 * finish, the final checkpoint is written (the periodic ones are off, so only the final
 * one can hold progress) and holds exactly what the summary says was handled, and the
 * exit status is 0. The signal goes once records are being handled (the stats file says
 * so), not after a sleep. */
Test(cli, sigterm_drains_and_exits_zero, .timeout = 180)
{
	char dir[64], ck[192], store[160], stats[160], st_arg[192], out[160];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(store, sizeof(store), "file:%s/ckpt", dir);
	snprintf(ck, sizeof(ck), "store=%s", store);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	snprintf(st_arg, sizeof(st_arg), "stats.file=%s", stats);
	snprintf(out, sizeof(out), "%s/out", dir);
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=gen",
	                      "-X",
	                      "gen.records=0",
	                      "-X",
	                      "gen.rate=20000",
	                      "-X",
	                      "gen.partitions=2",
	                      "-X",
	                      ck,
	                      "-X",
	                      "handler=sleep:100",
	                      "-X",
	                      "checkpoint.interval.ms=3600000",
	                      "-X",
	                      "checkpoint.records=1000000000",
	                      "-X",
	                      "stats.interval.ms=50",
	                      "-X",
	                      st_arg,
	                      NULL};
	int pid = t_spawn(argv, out, NULL, 0);
	cr_assert_geq(pid, 0);
	long before = -1;
	for (int64_t until = t_now_ms() + 60000;
	     (before = stats_field(stats, "records")) <= 0 && t_now_ms() < until;)
		t_sleep_ms(20);
	if (before <= 0)
		kill(pid, SIGKILL);
	cr_assert_gt(before, 0, "no record was handled in 60 s");
	cr_assert_eq(ckpt_done(store), 0, "a checkpoint was written before the signal");
	kill(pid, SIGTERM);
	int st;
	cr_assert_eq(t_wait_exit(pid, 60000, &st), 0, "spate run did not exit in 60 s after SIGTERM");
	cr_assert_eq(st, 0, "exit status %d", st);
	char *sum = t_read_file(out, NULL);
	cr_assert_not_null(sum);
	long handled = field(sum, "records");
	cr_assert_geq(handled, before, "%s", sum);
	long done = ckpt_done(store);
	cr_assert_eq(done, handled,
	             "the final checkpoint holds %ld records, the summary says %ld were handled", done,
	             handled);
	free(sum);
	t_rmrf(dir);
}

/* Guarantee 8's timeout: a handler call of 10 minutes and shutdown.timeout.ms=500; one
 * SIGTERM once the call runs: the run stops without it (within the test's hang guard, far
 * less than the call), says so, exits 0, and no checkpoint covers the call's records. */
Test(cli, sigterm_stops_at_the_shutdown_timeout, .timeout = 180)
{
	char dir[64], ck[160], path[160], errp[160], stats[160], st_arg[192];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(ck, sizeof(ck), "store=file:%s/ckpt", dir);
	snprintf(path, sizeof(path), "%s/out", dir);
	snprintf(errp, sizeof(errp), "%s/err", dir);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	snprintf(st_arg, sizeof(st_arg), "stats.file=%s", stats);
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=gen",
	                      "-X",
	                      "gen.records=0",
	                      "-X",
	                      ck,
	                      "-X",
	                      "handler=sleep:600000",
	                      "-X",
	                      "shutdown.timeout.ms=500",
	                      "-X",
	                      "checkpoint.interval.ms=50",
	                      "-X",
	                      "stats.interval.ms=50",
	                      "-X",
	                      st_arg,
	                      NULL};
	int pid = t_spawn(argv, path, errp, 0);
	cr_assert_geq(pid, 0);
	long running = -1;
	for (int64_t until = t_now_ms() + 60000;
	     (running = stats_field(stats, "lanes_running")) <= 0 && t_now_ms() < until;)
		t_sleep_ms(20);
	if (running <= 0)
		kill(pid, SIGKILL);
	cr_assert_gt(running, 0, "no handler call started in 60 s");
	kill(pid, SIGTERM);
	int st;
	cr_assert_eq(t_wait_exit(pid, 60000, &st), 0, "spate run did not stop at shutdown.timeout.ms");
	cr_assert_eq(st, 0, "exit status %d", st);
	char *err = t_read_file(errp, NULL);
	cr_assert(err && strstr(err, "shutdown.timeout.ms (500) passed with a handler call still running"),
	          "the stop without the running call is not said: %s", err);
	free(err);
	cr_assert_eq(ckpt_done(ck + 6), 0, "a checkpoint covers records of the call that did not finish");
	t_rmrf(dir);
}

/* Count lines of `spate log dump DIR` (one record each) and the ones containing s. */
static int dump_count(const char *dir, const char *s, int *with)
{
	char *argv[] = {(char *)t_spate_cli(), "log", "dump", (char *)dir, "--count", "1000000", NULL};
	char *out, *err;
	cr_assert_eq(t_run(argv, &out, &err), 0, "%s", err);
	int n = 0;
	*with = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		n++;
		if (s && strstr(line, s))
			(*with)++;
	}
	free(out);
	free(err);
	return n;
}

Test(cli, dlq_redrive_replays_original_records_and_checkpoints_progress)
{
	char dir[64], log[128], dlq[128], dlq2[128], conf[160], src[160], dlqa[160];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(dlq, sizeof(dlq), "%s/dlq", dir);
	snprintf(dlq2, sizeof(dlq2), "%s/dlq2", dir);
	snprintf(conf, sizeof(conf), "%s/redrive.conf", dir);
	char *out, *err;
	char *prod[] = {(char *)t_spate_cli(), "produce", log, "--partitions", "2", "--gen", "fraud",
	                "--records",           "20000",   NULL};
	cr_assert_eq(t_run(prod, &out, &err), 0, "%s", err);
	free(out), free(err);
	snprintf(src, sizeof(src), "source=log:%s", log);
	snprintf(dlqa, sizeof(dlqa), "dlq=log:%s", dlq);
	char *run1[] = {(char *)t_spate_cli(),
	                "run",
	                "-X",
	                src,
	                "-X",
	                "handler=fail-if:m-0666",
	                "-X",
	                "max.retry.attempts=0",
	                "-X",
	                "report.item.failures=true",
	                "-X",
	                dlqa,
	                "-X",
	                "stop.at.end=true",
	                "-X",
	                "log.level=error",
	                NULL};
	cr_assert_eq(t_run(run1, &out, &err), 0, "%s", err);
	long dlqn = field(out, "dlq");
	cr_assert_gt(dlqn, 0);
	free(out), free(err);
	int with;
	cr_assert_eq(dump_count(dlq, "m-0666", &with), dlqn);
	cr_assert_eq(with, dlqn, "only the failing records are dead letters");

	FILE *f = fopen(conf, "w");
	fprintf(f,
	        "handler=fail-if:m-0666\nmax.retry.attempts=0\nreport.item.failures=true\n"
	        "dlq=log:%s\nstore=file:%s/ckpt\nlog.level=error\n",
	        dlq2, dir);
	fclose(f);
	usleep(20 * 1000);
	char *re[] = {(char *)t_spate_cli(), "dlq", "redrive", dlq, "--to", conf, NULL};
	cr_assert_eq(t_run(re, &out, &err), 0, "%s", err);
	cr_assert_eq(field(out, "records"), dlqn);
	cr_assert_eq(field(out, "dlq"), dlqn, "the same records fail again into dlq2");
	free(out), free(err);
	/* dlq2 holds the original records: the spate.* headers of the first DLQ were dropped
	 * (each record has one set, not two), and the ids name the redriven DLQ */
	cr_assert_eq(dump_count(dlq2, "\"spate.condition\"", &with), dlqn);
	cr_assert_eq(with, dlqn);
	char *dump[] = {(char *)t_spate_cli(), "log", "dump", dlq2, "--count", "1000000", NULL};
	cr_assert_eq(t_run(dump, &out, &err), 0);
	for (char *p = strstr(out, "\"spate.condition\""); p; p = strstr(p + 1, "\"spate.condition\"")) {
		char *eol = strchr(p, '\n');
		char *again = strstr(p + 1, "\"spate.condition\"");
		cr_assert(!again || (eol && again > eol), "a record carries two spate.condition headers");
	}
	cr_assert(strstr(out, "\"spate.id\"=\"log/dlq/"), "ids name the redriven DLQ: %.300s", out);
	free(out), free(err);
	/* a second redrive continues after the checkpoint: nothing left */
	cr_assert_eq(t_run(re, &out, &err), 0, "%s", err);
	cr_assert_eq(field(out, "records"), 0);
	free(out), free(err);
	/* the pipeline's DLQ cannot be the one being redriven */
	f = fopen(conf, "w");
	fprintf(f, "dlq=log:%s\n", dlq);
	fclose(f);
	cr_assert_neq(t_run(re, &out, &err), 0);
	cr_assert(strstr(err, "dlq"), "%s", err);
	free(out), free(err);
	t_rmrf(dir);
}

/* Whether signal sig is still pending for process pid (not yet delivered). */
static int signal_pending(int pid, int sig)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int pending = 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "ShdPnd:", 7))
			pending = (strtoull(line + 7, NULL, 16) >> (sig - 1)) & 1;
	fclose(f);
	return pending;
}

/* A handler call that would run for 10 minutes, and a shutdown.timeout.ms of an hour:
 * the first SIGTERM waits for the call; a second one stops at once (the process exits
 * within the test's hang guard, far less than the call), with status 0, and no
 * checkpoint covers the records of the call that did not finish. */
Test(cli, second_sigterm_stops_at_once, .timeout = 180)
{
	char dir[64], ck[160], path[160], stats[160], st_arg[192];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(ck, sizeof(ck), "store=file:%s/ckpt", dir);
	snprintf(path, sizeof(path), "%s/out", dir);
	snprintf(stats, sizeof(stats), "%s/stats", dir);
	snprintf(st_arg, sizeof(st_arg), "stats.file=%s", stats);
	char *const argv[] = {(char *)t_spate_cli(),
	                      "run",
	                      "-X",
	                      "source=gen",
	                      "-X",
	                      "gen.records=0",
	                      "-X",
	                      ck,
	                      "-X",
	                      "handler=sleep:600000",
	                      "-X",
	                      "shutdown.timeout.ms=3600000",
	                      "-X",
	                      "checkpoint.interval.ms=50",
	                      "-X",
	                      "stats.interval.ms=50",
	                      "-X",
	                      st_arg,
	                      NULL};
	int pid = t_spawn(argv, path, NULL, 0);
	cr_assert_geq(pid, 0);
	/* once a handler call is running */
	long running = -1;
	for (int64_t until = t_now_ms() + 60000;
	     (running = stats_field(stats, "lanes_running")) <= 0 && t_now_ms() < until;)
		t_sleep_ms(20);
	if (running <= 0)
		kill(pid, SIGKILL);
	cr_assert_gt(running, 0, "no handler call started in 60 s");
	kill(pid, SIGTERM);
	/* the second signal only once the first was delivered (two pending ones are one) */
	for (int64_t until = t_now_ms() + 10000; signal_pending(pid, SIGTERM) && t_now_ms() < until;)
		t_sleep_ms(1);
	kill(pid, SIGTERM);
	int st;
	cr_assert_eq(t_wait_exit(pid, 60000, &st), 0, "spate run did not stop at the second SIGTERM");
	cr_assert_eq(st, 0, "exit status %d", st);
	char *out = t_read_file(path, NULL);
	long records = field(out, "records");
	cr_assert_geq(records, 0, "%s", out);
	/* no checkpoint past unfinished work: the stored positions cover at most what was
	 * handled */
	char *cargv[] = {(char *)t_spate_cli(), "checkpoint", "show", ck + 6, NULL};
	char *cko, *cke;
	cr_assert_eq(t_run(cargv, &cko, &cke), 0, "%s", cke);
	long covered = 0;
	for (char *line = strtok(cko, "\n"); line; line = strtok(NULL, "\n")) {
		char *sp = strrchr(line, ' ');
		if (sp && strcmp(sp + 1, "beginning"))
			covered += atol(sp + 1) + 1;
	}
	cr_assert_leq(covered, records, "checkpoints cover %ld records, %ld were handled", covered, records);
	free(out), free(cko), free(cke);
	t_rmrf(dir);
}

/* A finite source ends the run without stop.at.end (defect 8): gen with a record count
 * handles every record, checkpoints and exits 0. */
Test(cli, a_gen_run_with_a_record_count_ends)
{
	char dir[256], out[300], errf[300];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(errf, sizeof(errf), "%s/err", dir);
	char *argv[] = {(char *)t_spate_cli(), "run", "-X",           "source=gen", "-X",
	                "gen.records=400000",  "-X",  "handler=noop", NULL};
	int pid = t_spawn(argv, out, errf, 0);
	cr_assert_gt(pid, 0);
	int status = -1;
	cr_assert_eq(t_wait_exit(pid, 60000, &status), 0, "a gen run with gen.records=400000 did not end");
	cr_assert_eq(status, 0);
	char *o = t_read_file(out, NULL);
	cr_assert_eq(field(o, "records"), 400000, "%s", o);
	free(o);
	t_rmrf(dir);
}

/* A run that fails to start prints its error and no summary of zeros (defect 13). */
Test(cli, a_run_that_fails_to_start_prints_no_summary)
{
	char *argv[] = {(char *)t_spate_cli(), "run", "-X", "source=log:/nonexistent/spate-log", NULL};
	char *out, *err;
	int rc = t_run(argv, &out, &err);
	cr_assert_eq(rc, 1, "status %d", rc);
	cr_assert(strstr(err, "/nonexistent/spate-log"), "the error does not name the directory: %s", err);
	cr_assert_str_empty(out, "a run that did not start printed: %s", out);
	free(out);
	free(err);
	char *argv2[] = {(char *)t_spate_cli(), "run", "-X", "source=kafka", NULL};
	rc = t_run(argv2, &out, &err);
	cr_assert_eq(rc, 1, "status %d", rc);
	cr_assert(strstr(err, "topics"), "the error does not name the key: %s", err);
	cr_assert_str_empty(out, "a run that did not start printed: %s", out);
	free(out);
	free(err);
}

/* A secret given with -X is warned about by key and never echoed; SPATE_KAFKA_* sets
 * kafka.*; a CONFIG others may read that holds a secret is warned about; --help says so. */
Test(cli, secrets_stay_out_of_output_and_come_from_the_environment)
{
	const char *pw = "Xq7-never-shown-9931";
	char arg[128];
	snprintf(arg, sizeof(arg), "kafka.sasl.password=%s", pw);
	char *out, *err;
	char *argv[] = {(char *)t_spate_cli(), "run", "-X", "source=gen", "-X", "gen.records=100", "-X",
	                "handler=noop",        "-X",  arg,  NULL};
	int rc = t_run(argv, &out, &err);
	cr_assert_eq(rc, 0, "stderr: %s", err);
	cr_assert(strstr(err, "warning: -X kafka.sasl.password"), "no warning: %s", err);
	cr_assert_null(strstr(err, pw), "stderr shows the secret: %s", err);
	cr_assert_null(strstr(out, pw), "stdout shows the secret: %s", out);
	free(out);
	free(err);

	/* the environment: a bad value is named by its variable, never shown */
	setenv("SPATE_KAFKA_SASL_PASSWORD", pw, 1);
	setenv("SPATE_KAFKA_QUEUE_BUFFERING_MAX_MS", "not-a-number", 1);
	char *argv2[] = {(char *)t_spate_cli(), "run", "-X",           "source=gen", "-X",
	                 "gen.records=100",     "-X",  "handler=noop", NULL};
	rc = t_run(argv2, &out, &err);
	unsetenv("SPATE_KAFKA_QUEUE_BUFFERING_MAX_MS");
	if (rc != 0) /* librdkafka checks kafka.* values only with a Kafka source or sink */
		cr_assert(strstr(err, "SPATE_KAFKA_QUEUE_BUFFERING_MAX_MS"), "the variable is not named: %s",
		          err);
	cr_assert_null(strstr(err, pw), "%s", err);
	free(out);
	free(err);
	rc = t_run(argv2, &out, &err);
	unsetenv("SPATE_KAFKA_SASL_PASSWORD");
	cr_assert_eq(rc, 0, "stderr: %s", err);
	cr_assert_null(strstr(err, "warning"), "the environment is not warned about: %s", err);
	cr_assert_null(strstr(err, pw), "%s", err);
	free(out);
	free(err);

	/* a CONFIG others may read that holds a secret */
	char dir[64], path[128];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/p.conf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "source=gen\ngen.records=100\nhandler=noop\nkafka.sasl.password=%s\n", pw);
	fclose(f);
	chmod(path, 0644);
	cr_assert_eq(run_cli(&out, &err, "run", path, NULL, NULL, NULL), 0, "%s", err);
	cr_assert(strstr(err, "chmod 600"), "no warning for a readable CONFIG: %s", err);
	cr_assert_null(strstr(err, pw), "%s", err);
	free(out);
	free(err);
	chmod(path, 0600);
	cr_assert_eq(run_cli(&out, &err, "run", path, NULL, NULL, NULL), 0, "%s", err);
	cr_assert_null(strstr(err, "chmod 600"), "a private CONFIG is warned about: %s", err);
	free(out);
	free(err);
	t_rmrf(dir);

	cr_assert_eq(run_cli(&out, &err, "run", "--help", NULL, NULL, NULL), 0);
	cr_assert(strstr(out, "SPATE_KAFKA_SASL_PASSWORD"), "--help does not say how to give secrets");
	free(out);
	free(err);
}
