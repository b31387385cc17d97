/* test_file_modes.c - what spate creates is private to the user: directories 0700 and
 * files 0600 under umask 022 (a stricter umask still applies: modes are asked for, then
 * masked).
 *
 * `spate produce` makes a log (directory, partition folders, segments, indexes, durable
 * and metadata files); a pipeline over it writes dead letters to a log DLQ
 * (handler=fail-if), checkpoints to a file store (its file and lock; the default store
 * under the log's checkpoints/ folder too), summary.json and stats.file; another one
 * writes the journal handler's files. Every file and folder under the test's directory
 * is then looked at with lstat: nothing there was made by the test itself.
 */
#include "tests/common/util.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bound of one spate command (a hang fails the test, never blocks the suite). */
#define RUN_MS 60000

static char dir[64];

static void setup(void)
{
	t_mkdtemp(dir, sizeof(dir));
}

static void teardown(void)
{
	t_rmrf(dir);
}

TestSuite(file_modes, .init = setup, .fini = teardown);

/* Run argv with RUN_MS as its bound; it must exit 0. */
static void run_argv(const char *name, const char **argv)
{
	char out[128], err[128];
	snprintf(out, sizeof(out), "/tmp/spate-modes-%d-%s.out", (int)getpid(), name);
	snprintf(err, sizeof(err), "/tmp/spate-modes-%d-%s.err", (int)getpid(), name);
	int pid = t_spawn((char *const *)argv, out, err, 0);
	cr_assert(pid > 0);
	int status;
	cr_assert_eq(t_wait_exit(pid, RUN_MS, &status), 0, "spate %s did not end in %d ms", name, RUN_MS);
	char *e = t_read_file(err, NULL);
	cr_assert_eq(status, 0, "spate %s exited %d: %s", name, status, e ? e : "");
	free(e);
	unlink(out);
	unlink(err);
}

/* spate with args (NULL-terminated). */
static void spate(const char *name, const char *const *args)
{
	const char *argv[32] = {t_spate_cli()};
	size_t n = 1;
	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	run_argv(name, argv);
}

/* sh -c script with $0 the spate command and $1 arg. */
static void run_sh(const char *name, const char *script, const char *arg)
{
	const char *argv[] = {"/bin/sh", "-c", script, t_spate_cli(), arg, NULL};
	run_argv(name, argv);
}

/* What the walk found. */
static size_t nfiles, ndirs, nbad;
static char bad[4096];

static int look(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if (!strcmp(path, dir))
		return 0; /* the test's own directory */
	mode_t want = S_ISDIR(st->st_mode) ? 0700 : 0600;
	S_ISDIR(st->st_mode) ? ndirs++ : nfiles++;
	if ((st->st_mode & 07777) != want) {
		nbad++;
		size_t l = strlen(bad);
		snprintf(bad + l, sizeof(bad) - l, "  %04o (want %04o) %s\n", (unsigned)(st->st_mode & 07777),
		         (unsigned)want, path + strlen(dir));
	}
	return 0;
}

static bool exists(const char *rel)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return access(p, F_OK) == 0;
}

Test(file_modes, logs_stores_dlqs_journal_summary_stats_are_private)
{
	mode_t old = umask(022);
	char log[128], src[160], dlq[160], store[160], sdir[128], summary[160], stats[160], journal[160];
	snprintf(log, sizeof(log), "%s/a/b/log", dir); /* mkdir -p of missing parents too */
	snprintf(src, sizeof(src), "source=log:%s", log);
	snprintf(dlq, sizeof(dlq), "dlq=log:%s/dlq", dir);
	snprintf(sdir, sizeof(sdir), "%s/store", dir);
	cr_assert_eq(mkdir(sdir, 0700), 0); /* the file store's folder is the user's to make */
	snprintf(store, sizeof(store), "store=file:%s/ckpt", sdir);
	snprintf(summary, sizeof(summary), "summary.json=%s/summary.json", dir);
	snprintf(stats, sizeof(stats), "stats.file=%s/stats.jsonl", dir);
	snprintf(journal, sizeof(journal), "handler=journal:%s/journal", dir);

	/* six records, two of which (x...) the first pipeline sends to its DLQ */
	run_sh("produce", "printf 'a1\\nx2\\nb3\\nx4\\nc5\\nd6\\n' | \"$0\" produce \"$1\" --partitions 2", log);
	const char *run[] = {"run",  "-X",   src,       "-X", "handler=fail-if:x", "-X", "max.retry.attempts=0",
	                     "-X",   dlq,    "-X",      store, "-X",               summary, "-X",
	                     stats,  "-X",   "stop.at.end=true", "--stats", NULL};
	spate("run", run);
	const char *run2[] = {"run", "-X", src, "-X", journal, "-X", "stop.at.end=true", NULL};
	spate("journal", run2);
	umask(old);

	/* what must be there, so the walk below looked at each kind */
	const char *made[] = {"a/b/log/spate-log.meta", "a/b/log/0/00000000000000000000.log",
	                      "a/b/log/0/00000000000000000000.index", "a/b/log/1/durable",
	                      "dlq/spate-log.meta", "dlq/0/durable", "store/ckpt", "store/ckpt.lock",
	                      "summary.json", "stats.jsonl", "journal.0", "a/b/log/checkpoints",
	                      NULL};
	for (size_t i = 0; made[i]; i++)
		cr_assert(exists(made[i]), "spate did not make %s", made[i]);
	cr_assert_eq(nftw(dir, look, 16, FTW_PHYS), 0);
	cr_assert_eq(nbad, 0, "%zu of %zu files and %zu folders are not private under umask 022:\n%s", nbad,
	             nfiles, ndirs, bad);
}
