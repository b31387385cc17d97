/* test_checkpoint_cli.c - tests cli/cmd_checkpoint.c through the built `spate` command.
 *
 * The store is filled through the file store's vtable, then `spate checkpoint show`
 * must print exactly its `partition checkpoint` lines, sorted; `reset --partition` and
 * `reset` must remove exactly what they name; a store held open elsewhere, a corrupt
 * file and bad usage must fail with their exit codes and messages.
 */
#include "engine/internal.h"
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	    {"log/b/1", {false, {{0, 0, 41}}}},
	    {"kinesis/s/shardId-0", {false, {{1, 2, 3}}}},
	    {"log/b/0", {true, {{0, 0, 0}}}},
	    {"gen/g/0", {false, {{0, 0, 18446744073709551615ULL}}}},
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

Test(checkpoint_cli, store_in_use_is_refused)
{
	fixture_t f;
	fixture_init(&f);
	fill(f.path);
	sp_store_t st;
	open_store(&st, f.path); /* as a running pipeline holds it */
	char *out, *err;
	cr_assert_eq(run(&out, &err, "reset", f.uri, NULL, NULL), 1);
	cr_assert(strstr(err, f.path) && strstr(err, "in use"), "%s", err);
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
