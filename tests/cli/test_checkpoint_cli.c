/* test_checkpoint_cli.c - tests cli/cmd_checkpoint.c through the built `spate` command.
 *
 * The store is filled through the file store's vtable, then `spate checkpoint show`
 * must print exactly its `partition checkpoint` lines, sorted; `reset --partition` and
 * `reset` must remove exactly what they name; `show` reads a store held open elsewhere
 * (a running `spate run` included) while `reset` refuses it; a corrupt file, a PATH.tmp
 * that is no torn save, and bad usage must fail with their exit codes and messages.
 */
#include "engine/engine.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern const sp_store_ops_t sp_store_file;

typedef struct fixture {
	char dir[64];
	char path[128];
	char uri[160];
} fixture_t;

static void fixture_init(fixture_t *f)
{
	t_mkdtemp(f->dir, sizeof f->dir);
	snprintf(f->path, sizeof f->path, "%s/ckpt", f->dir);
	snprintf(f->uri, sizeof f->uri, "file:%s", f->path);
}

static void open_store(sp_store_t *st, const char *path)
{
	char err[512] = "";
	memset(st, 0, sizeof *st);
	st->ops = &sp_store_file;
	st->arg = path;
	cr_assert_eq(st->ops->open(st, err, sizeof err), SPATE_OK, "%s", err);
}

static void fill(const char *path)
{
	/* saved out of order: show must sort */
	const sp_store_entry_t e[] = {
	    {.name = "log/b/1", .ckpt = {false, {.w = {0, 0, 41}}}},
	    {.name = "kinesis/s/shardId-0", .ckpt = {false, {.w = {1, 2, 3}}}},
	    {.name = "log/b/0", .ckpt = {true, {.w = {0, 0, 0}}}},
	    {.name = "gen/g/0", .ckpt = {false, {.w = {0, 0, 18446744073709551615ULL}}}},
	};
	sp_store_t st;
	char err[512] = "";
	open_store(&st, path);
	cr_assert_eq(st.ops->save(&st, e, 4, err, sizeof err), SPATE_OK, "%s", err);
	st.ops->close(&st);
}

/* Run `spate checkpoint ARGS...`; out and err are malloc'd. */
static int run(char **out, char **err, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = {
	    (char *)t_spate_cli(), "checkpoint", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
	return t_run(argv, out, err);
}

Test(checkpoint_cli, show_prints_sorted_lines)
{
	fixture_t f;
	fixture_init(&f);
	fill(f.path);
	char *out, *err;
	int rc = run(&out, &err, "show", f.uri, NULL, NULL);
	cr_assert_eq(rc, 0, "rc %d: %s", rc, err);
	cr_assert_str_eq(out, "gen/g/0 18446744073709551615\n"
	                      "kinesis/s/shardId-0 1:0000000000000002:0000000000000003\n"
	                      "log/b/0 beginning\n"
	                      "log/b/1 41\n");
	free(out);
	free(err);
	t_rmrf(f.dir);
}

Test(checkpoint_cli, show_of_a_new_store_prints_nothing)
{
	fixture_t f;
	fixture_init(&f);
	char *out, *err;
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 0, "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	t_rmrf(f.dir);
}

Test(checkpoint_cli, reset_one_partition_then_all)
{
	fixture_t f;
	fixture_init(&f);
	fill(f.path);
	char *out, *err;
	cr_assert_eq(run(&out, &err, "reset", f.uri, "--partition", "log/b/0"), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 0, "%s", err);
	cr_assert_str_eq(out, "gen/g/0 18446744073709551615\n"
	                      "kinesis/s/shardId-0 1:0000000000000002:0000000000000003\n"
	                      "log/b/1 41\n");
	free(out);
	free(err);

	/* an unknown partition is an error naming it, and changes nothing */
	cr_assert_eq(run(&out, &err, "reset", f.uri, "--partition=log/b/0", NULL), 1);
	cr_assert(strstr(err, "log/b/0"), "%s", err);
	free(out);
	free(err);

	cr_assert_eq(run(&out, &err, "reset", f.uri, NULL, NULL), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 0, "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	t_rmrf(f.dir);
}

Test(checkpoint_cli, store_in_use_is_refused_by_reset_but_shown)
{
	fixture_t f;
	fixture_init(&f);
	fill(f.path);
	sp_store_t st;
	open_store(&st, f.path); /* as a running pipeline holds it */
	char *out, *err;
	cr_assert_eq(run(&out, &err, "reset", f.uri, NULL, NULL), 1);
	cr_assert(strstr(err, f.path) && strstr(err, "in use") && strstr(err, "running pipeline") &&
	              strstr(err, "stop it first"),
	          "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	/* show only looks: it takes no lock and reads what was saved */
	int rc = run(&out, &err, "show", f.uri, NULL, NULL);
	cr_assert_eq(rc, 0, "show of a store in use: rc %d: %s", rc, err);
	cr_assert_str_eq(out, "gen/g/0 18446744073709551615\n"
	                      "kinesis/s/shardId-0 1:0000000000000002:0000000000000003\n"
	                      "log/b/0 beginning\n"
	                      "log/b/1 41\n");
	free(out);
	free(err);
	st.ops->close(&st);
	/* nothing was reset */
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 0, "%s", err);
	cr_assert(strstr(out, "log/b/1 41\n"), "%s", out);
	free(out);
	free(err);
	t_rmrf(f.dir);
}

Test(checkpoint_cli, corrupt_store_fails_naming_the_file)
{
	fixture_t f;
	fixture_init(&f);
	FILE *fp = fopen(f.path, "w");
	cr_assert(fp);
	fputs("not a checkpoint file\n", fp);
	fclose(fp);
	char *out, *err;
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 1);
	cr_assert(strstr(err, f.path) && strstr(err, "line 1"), "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	t_rmrf(f.dir);
}

/* No checkpoint file, and a PATH.tmp whose checksum line fails: that is no save a crash
 * cut short, so show fails naming it and its line rather than printing its entries. */
Test(checkpoint_cli, bad_tmp_alone_fails_naming_it)
{
	fixture_t f;
	fixture_init(&f);
	fill(f.path);
	char tmp[200];
	snprintf(tmp, sizeof tmp, "%s.tmp", f.path);
	size_t len;
	char *buf = t_read_file(f.path, &len);
	cr_assert(buf);
	char *p = strstr(buf, "log/b/1\t41\n");
	cr_assert(p, "%s", buf);
	p[8] = '9'; /* 91: ahead of what was done; the checksum no longer matches */
	FILE *fp = fopen(tmp, "w");
	cr_assert(fp);
	cr_assert_eq(fwrite(buf, 1, len, fp), len);
	fclose(fp);
	free(buf);
	cr_assert_eq(unlink(f.path), 0);
	char *out, *err;
	cr_assert_eq(run(&out, &err, "show", f.uri, NULL, NULL), 1, "%s", out);
	cr_assert(strstr(err, tmp) && strstr(err, "line 6: checksum mismatch"), "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	t_rmrf(f.dir);
}

/* ---- a running pipeline ------------------------------------------------------------- */

/* Partitions of the pipeline that show watches. */
#define RUN_PARTS 2
/* Waits for the pipeline's first checkpoint file: RUN_WAIT_TRIES pauses of RUN_PAUSE_MS. */
#define RUN_WAIT_TRIES 1500
#define RUN_PAUSE_MS   10
/* show runs at least SHOW_MIN times, and until a checkpoint moved or SHOW_MAX times. */
#define SHOW_MIN 5
#define SHOW_MAX 500
/* In show's output: a partition it does not list, and "beginning". */
#define CK_ABSENT    (-2LL)
#define CK_BEGINNING (-1LL)

/* The `spate run` of the pipeline test, and its directory: the fini kills and removes
 * them also when an assertion ended the test. */
static pid_t g_child = -1;
static char g_dir[64];

static void pipeline_fini(void)
{
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		while (waitpid(g_child, NULL, 0) < 0 && errno == EINTR)
			;
		g_child = -1;
	}
	if (g_dir[0])
		t_rmrf(g_dir);
}

/* The end of the pipeline's stderr, for messages. */
static char *run_err(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/run.err", g_dir);
	char *s = t_read_file(path, NULL);
	if (!s)
		return strdup("(no stderr)");
	size_t n = strlen(s);
	if (n > 1000)
		memmove(s, s + n - 1000, 1001);
	return s;
}

/* show's output into ck[partition]: CK_BEGINNING, a position, or CK_ABSENT. Every line
 * must be a checkpoint of one of the pipeline's partitions. */
static void parse_show(const char *out, long long ck[RUN_PARTS])
{
	for (int p = 0; p < RUN_PARTS; p++)
		ck[p] = CK_ABSENT;
	for (const char *line = out; *line;) {
		const char *nl = strchr(line, '\n');
		cr_assert(nl, "show's output does not end its last line: %s", out);
		int p, used = 0;
		char val[32];
		cr_assert(sscanf(line, "gen/gen/%d %31[^\n]%n", &p, val, &used) == 2 && line + used == nl &&
		              p >= 0 && p < RUN_PARTS && ck[p] == CK_ABSENT,
		          "unexpected line in show's output:\n%s", out);
		if (!strcmp(val, "beginning")) {
			ck[p] = CK_BEGINNING;
		} else {
			char *end;
			errno = 0;
			ck[p] = strtoll(val, &end, 10);
			cr_assert(!errno && *end == '\0' && ck[p] >= 0, "bad checkpoint \"%s\" in:\n%s", val,
			          out);
		}
		line = nl + 1;
	}
}

/* While `spate run` saves checkpoints, show succeeds every time, prints checkpoints that
 * never go back and that move on; reset is refused; the pipeline still stops cleanly. */
Test(checkpoint_cli, show_while_a_pipeline_runs, .fini = pipeline_fini)
{
	char path[128], a_store[160], uri[160], a_parts[32], errfile[128];
	t_mkdtemp(g_dir, sizeof g_dir);
	snprintf(path, sizeof path, "%s/ckpt", g_dir);
	snprintf(a_store, sizeof a_store, "store=file:%s", path);
	snprintf(uri, sizeof uri, "file:%s", path);
	snprintf(a_parts, sizeof a_parts, "gen.partitions=%d", RUN_PARTS);
	snprintf(errfile, sizeof errfile, "%s/run.err", g_dir);
	/* endless and slow (a 20 ms handler, 2000 records/s), checkpointing often */
	const char *keys[] = {"source=gen",
	                      "gen.records=0",
	                      a_parts,
	                      "gen.rate=2000",
	                      "handler=sleep:20",
	                      a_store,
	                      "checkpoint.interval.ms=20",
	                      "log.level=warn"};
	char *argv[2 + 2 * (sizeof keys / sizeof keys[0]) + 1];
	size_t n = 0;
	argv[n++] = (char *)t_spate_cli();
	argv[n++] = "run";
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		argv[n++] = "-X";
		argv[n++] = (char *)keys[i];
	}
	argv[n] = NULL;
	g_child = t_spawn(argv, NULL, errfile, 0);
	cr_assert(g_child > 0, "fork: %s", strerror(errno));

	struct stat sb;
	int tries = 0;
	while (stat(path, &sb) != 0) {
		int st = 0;
		if (waitpid(g_child, &st, WNOHANG) == g_child) {
			g_child = -1;
			cr_assert_fail("spate run ended (status 0x%x) before it saved a checkpoint: %s", st,
			               run_err());
		}
		cr_assert_lt(++tries, RUN_WAIT_TRIES, "spate run saved no checkpoint file %s: %s", path,
		             run_err());
		t_sleep_ms(RUN_PAUSE_MS);
	}

	long long first[RUN_PARTS], last[RUN_PARTS], now[RUN_PARTS];
	bool moved = false;
	int shows = 0;
	char *out, *err;
	for (int p = 0; p < RUN_PARTS; p++)
		first[p] = last[p] = CK_ABSENT;
	while (shows < SHOW_MIN || (!moved && shows < SHOW_MAX)) {
		int rc = run(&out, &err, "show", uri, NULL, NULL);
		cr_assert_eq(rc, 0, "show %d while the pipeline runs: rc %d: %s", shows, rc, err);
		parse_show(out, now);
		for (int p = 0; p < RUN_PARTS; p++) {
			cr_assert_geq(now[p], last[p],
			              "show %d: the checkpoint of gen/gen/%d went back from %lld to %lld",
			              shows, p, last[p], now[p]);
			if (shows == 0)
				first[p] = now[p];
			else if (now[p] > first[p])
				moved = true;
			last[p] = now[p];
		}
		free(out);
		free(err);
		shows++;
		t_sleep_ms(RUN_PAUSE_MS);
	}
	cr_assert(moved, "in %d shows no checkpoint moved; the last show said gen/gen/0 %lld: %s", shows,
	          last[0], run_err());

	/* reset would change checkpoints under the pipeline: refused, saying why */
	cr_assert_eq(run(&out, &err, "reset", uri, NULL, NULL), 1, "%s", out);
	cr_assert(strstr(err, path) && strstr(err, "in use") && strstr(err, "running pipeline"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "reset", uri, "--partition", "gen/gen/0"), 1, "%s", out);
	cr_assert(strstr(err, "running pipeline"), "%s", err);
	free(out);
	free(err);

	kill(g_child, SIGTERM);
	int st = 0;
	while (waitpid(g_child, &st, 0) < 0 && errno == EINTR)
		;
	g_child = -1;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "spate run after SIGTERM: status 0x%x: %s", st,
	          run_err());

	/* nothing was reset: the final checkpoints are at or past the last ones shown */
	cr_assert_eq(run(&out, &err, "show", uri, NULL, NULL), 0, "%s", err);
	parse_show(out, now);
	for (int p = 0; p < RUN_PARTS; p++)
		cr_assert_geq(now[p], last[p], "after the run gen/gen/%d is at %lld, show had %lld", p,
		              now[p], last[p]);
	free(out);
	free(err);
}

Test(checkpoint_cli, help_and_usage_errors)
{
	char *out, *err;
	cr_assert_eq(run(&out, &err, "--help", NULL, NULL, NULL), 0);
	cr_assert(strstr(out, "spate checkpoint show STORE") &&
	              strstr(out, "spate checkpoint reset STORE [--partition NAME]"),
	          "%s", out);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, NULL, NULL, NULL, NULL), 2);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "show", NULL, NULL, NULL), 2);
	cr_assert(strstr(err, "which store"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "drop", "file:/tmp/x", NULL, NULL), 2);
	cr_assert(strstr(err, "unknown action \"drop\""), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "show", "file:/tmp/x", "--partition", "a"), 2);
	free(out);
	free(err);
	cr_assert_eq(run(&out, &err, "show", "nosuch:/tmp/x", NULL, NULL), 1);
	cr_assert(strstr(err, "nosuch"), "%s", err);
	free(out);
	free(err);
}
