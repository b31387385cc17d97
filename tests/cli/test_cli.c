/* test_cli.c - tests cli/: `spate run` rejects bad configuration naming the key (and the
 * file and line), prints a summary of plain integers, and docs/configuration.md agrees
 * with the property table. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/util.h"

static int run_cli(char **out, char **err, const char *a1, const char *a2, const char *a3, const char *a4,
                   const char *a5)
{
	char *argv[] = {(char *)t_spate_cli(), (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
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
	char *argv[] = {(char *)t_spate_cli(), "run", "-X", "source=gen", "-X", "gen.records=20000", "-X",
	                "gen.partitions=4", "-X", "stop.at.end=true", "-X", "handler=fraud", "-X", jsarg, NULL};
	char *out, *err;
	int rc = t_run(argv, &out, &err);
	cr_assert_eq(rc, 0, "stderr: %s", err);
	cr_assert_eq(field(out, "records"), 20000, "%s", out);
	cr_assert_eq(field(out, "failed"), 0);
	cr_assert_eq(field(out, "dlq"), 0);
	cr_assert_eq(field(out, "dropped"), 0);
	cr_assert_geq(field(out, "batches"), 200);
	cr_assert_geq(field(out, "elapsed_ms"), 0);
	cr_assert_geq(field(out, "records_per_s"), 1);
	char *j = t_read_file(js, NULL);
	cr_assert_not_null(j);
	cr_assert(strstr(j, "\"records\":20000"), "%s", j);
	cr_assert(strstr(j, "\"records_per_s\":"), "%s", j);
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

Test(cli, sigterm_drains_and_exits_zero)
{
	char dir[64], ck[160];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(ck, sizeof(ck), "store=file:%s/ckpt", dir);
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", 1);
		dup2(nul, 1);
		dup2(nul, 2);
		execl(t_spate_cli(), "spate", "run", "-X", "source=gen", "-X", "gen.records=0", "-X", "gen.rate=20000",
		      "-X", ck, "-X", "handler=sleep:1", (char *)NULL);
		_exit(127);
	}
	usleep(1500 * 1000);
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st), "killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	cr_assert_eq(WEXITSTATUS(st), 0);
	/* the final checkpoint holds progress: some partition is past the beginning */
	char *out, *err;
	char storearg[160];
	snprintf(storearg, sizeof(storearg), "file:%s/ckpt", dir);
	cr_assert_eq(run_cli(&out, &err, "checkpoint", "show", storearg, NULL, NULL), 0, "%s", err);
	cr_assert(strstr(out, "gen/gen/0"), "%s", out);
	cr_assert(!strstr(out, "gen/gen/0\tbeginning") && !strstr(out, "gen/gen/0 beginning"), "%s", out);
	free(out);
	free(err);
	t_rmrf(dir);
}
