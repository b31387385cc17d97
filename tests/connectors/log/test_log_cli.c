/* test_log_cli.c - `spate produce` and `spate log create|ls|dump|verify|publish` as a
 * user runs them: exit codes, exact output lines, errors that name files and offsets,
 * that ls, dump and verify change no file, and that publish makes copied segments
 * readable. */
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* Run `sh -c cmd` with SPATE set to the CLI; exit status, stdout and stderr. */
static int sh(const char *cmd, char **out, char **err)
{
	char full[8192];
	snprintf(full, sizeof(full), "SPATE='%s'; %s", t_spate_cli(), cmd);
	char *argv[] = {"/bin/sh", "-c", full, NULL};
	return t_run(argv, out, err);
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* The number after "\nNAME " in a `spate run` summary, or -1. */
static long summary_field(const char *out, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\n%s ", name);
	size_t len = strlen(out);
	char *buf = malloc(len + 2);
	buf[0] = '\n';
	memcpy(buf + 1, out, len + 1);
	char *p = strstr(buf, pat);
	long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
	free(buf);
	return v;
}

Test(log_cli, help_for_every_command)
{
	const char *cmds[] = {"log --help",        "log create --help",  "log ls --help", "log dump --help",
	                      "log verify --help", "log publish --help", "produce --help"};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char cmd[256], *out, *err;
		snprintf(cmd, sizeof(cmd), "\"$SPATE\" %s", cmds[i]);
		cr_assert_eq(sh(cmd, &out, &err), 0, "%s: %s", cmds[i], err);
		cr_assert(strstr(out, "usage: spate"), "%s prints its usage on stdout", cmds[i]);
		free(out);
		free(err);
	}
	char *out, *err;
	cr_assert_eq(sh("\"$SPATE\" log frobnicate /tmp", &out, &err), 2);
	cr_assert(strstr(err, "unknown command \"frobnicate\""), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(sh("\"$SPATE\" produce /tmp/x --bogus 1", &out, &err), 2);
	cr_assert(strstr(err, "--bogus"), "%s", err);
	free(out);
	free(err);
}

Test(log_cli, produce_lines_then_dump)
{
	char *dir = lt_mkdtemp(), cmd[4096], *out, *err;
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log create %s --partitions 3", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "created log with 3 partitions"), "%s", out);
	free(out);
	free(err);
	/* a:1 and b:2 keyed, "c" keyless, ":x" empty key, "d:" empty value, "e:f:g" splits at the first ':'
	 */
	snprintf(cmd, sizeof(cmd),
	         "printf 'a:1\\nb:2\\nc\\n:x\\nd:\\ne:f:g' | \"$SPATE\" produce %s --key-separator :", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_str_eq(err, "", "no progress line when stderr is not a terminal");
	free(out);
	free(err);
	uint64_t tree = lt_hash_tree(dir);
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s | sed 's/ ts=[0-9]*//' | sort", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(count_lines(out), 6, "%s", out);
	/* placement: XXH3(key) % 3, keyless round robin from partition 0 */
	const char *keys[] = {"a", "b", "", "d", "e"};
	const char *vals[] = {"1", "2", "x", "", "f:g"};
	for (int i = 0; i < 5; i++) {
		char line[128];
		int p = (int)(XXH3_64bits(keys[i], strlen(keys[i])) % 3);
		snprintf(line, sizeof(line), " key=\"%s\" value=\"%s\" headers=[]", keys[i], vals[i]);
		char *at = strstr(out, line);
		cr_assert(at, "missing %s in\n%s", line, out);
		while (at > out && at[-1] != '\n')
			at--;
		cr_assert_eq(atoi(at), p, "key %s in partition %d:\n%s", keys[i], p, out);
	}
	cr_assert(strstr(out, "0:0 key=null value=\"c\" headers=[]") ||
	              strstr(out, "0:1 key=null value=\"c\" headers=[]") ||
	              strstr(out, "0:2 key=null value=\"c\" headers=[]"),
	          "the keyless line went to partition 0:\n%s", out);
	free(out);
	free(err);
	/* ls, dump, verify never change a file */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log ls %s && \"$SPATE\" log verify %s", dir, dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "format 1, 3 partitions"), "%s", out);
	cr_assert(strstr(out, "00000000000000000000.log"), "%s", out);
	/* a line per partition, then the totals and a line per codec seen */
	cr_assert_eq(count_lines(strstr(out, "partition 0: ok")), 5, "%s", out);
	cr_assert(strstr(out, "partition 0: ok: 1 segments, 1 batches, 2 records, 80 bytes (none: 1 batches, "
	                      "2 records)\n"),
	          "%s", out);
	cr_assert(strstr(out, "total: 3 partitions (3 ok, 0 bad), 3 segments, 3 batches, 6 records, 236 bytes;"),
	          "%s", out);
	cr_assert(strstr(out, "\ncodec none: 3 batches, 6 records\n"), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(lt_hash_tree(dir), tree);
	lt_rmrf(dir);
	free(dir);
}

Test(log_cli, produce_gen_dump_window_and_verify_corruption)
{
	char *dir = lt_mkdtemp(), cmd[4096], *out, *err;
	snprintf(cmd, sizeof(cmd),
	         "\"$SPATE\" produce %s --partitions 2 --gen bytes --records 5000 "
	         "--value-bytes 20 --keys 10 --seed 3 -X segment.bytes=65536",
	         dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log verify %s", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	long r0 = 0, r1 = 0;
	char *a = strstr(out, "partition 0: ok:"), *b = strstr(out, "partition 1: ok:");
	cr_assert(a && b, "%s", out);
	sscanf(strstr(a, "batches, ") + 9, "%ld", &r0);
	sscanf(strstr(b, "batches, ") + 9, "%ld", &r1);
	cr_assert_eq(r0 + r1, 5000, "%s", out);
	free(out);
	free(err);
	cr_assert_gt(lt_segments(dir, 0), 1, "segment.bytes=65536 rolled segments");
	/* a window: partition 0 from offset 10, 3 records */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s --partition 0 --from 10 --count 3", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(count_lines(out), 3, "%s", out);
	cr_assert(!strncmp(out, "0:10 ", 5), "%s", out);
	cr_assert(strstr(out, "\n0:11 ") && strstr(out, "\n0:12 "), "%s", out);
	free(out);
	free(err);
	/* a flipped byte: verify names the file and the byte offset, exit 1 */
	char path[4200];
	lt_seg(path, sizeof(path), dir, 1, 0);
	int fd = open(path, O_RDWR);
	uint8_t x;
	cr_assert_eq(pread(fd, &x, 1, 3000), 1);
	x ^= 0xff;
	cr_assert_eq(pwrite(fd, &x, 1, 3000), 1);
	close(fd);
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log verify %s", dir);
	cr_assert_eq(sh(cmd, &out, &err), 1, "%s", out);
	cr_assert(strstr(err, "partition 1: BAD:"), "%s", err);
	cr_assert(strstr(err, "/1/00000000000000000000.log: byte "), "%s", err);
	cr_assert(strstr(out, "partition 0: ok"), "the other partition is still checked: %s", out);
	free(out);
	free(err);
	/* dump of the bad partition stops with the same kind of message */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s --partition 1 >/dev/null", dir);
	cr_assert_eq(sh(cmd, &out, &err), 1);
	cr_assert(strstr(err, "00000000000000000000.log: byte "), "%s", err);
	free(out);
	free(err);
	/* an existing log must match --partitions */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" produce %s --partitions 3 </dev/null", dir);
	cr_assert_eq(sh(cmd, &out, &err), 1);
	cr_assert(strstr(err, "exists with 2 partitions, not 3"), "%s", err);
	free(out);
	free(err);
	lt_rmrf(dir);
	free(dir);
}

Test(log_cli, publish_makes_copied_segments_readable)
{
	char *src = lt_mkdtemp(), *dst = lt_mkdtemp(), cmd[4096], want[8192], *out, *err;
	/* a log written by one writer: 10000 records over several segments */
	snprintf(cmd, sizeof(cmd),
	         "\"$SPATE\" produce %s --partitions 1 --gen bytes --records 10000 --value-bytes 20 "
	         "--keys 10 --seed 3 -X segment.bytes=65536",
	         src);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_geq(lt_segments(src, 0), 3, "several segments");

	/* its segment files alone (no durable file, no index) into partition 1 of a fresh log,
	 * as Kafka's .log files are copied; the last one ends in 30 bytes of a batch that
	 * never finished */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log create %s --partitions 2 && cp %s/0/*.log %s/1/", dst, src,
	         dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	char pdir[4200], last[4200];
	snprintf(pdir, sizeof(pdir), "%s/1", dst);
	sp_log_seglist_t segs = {0};
	cr_assert_eq(sp_log_seglist(pdir, &segs, NULL, 0), SPATE_OK);
	cr_assert_eq(segs.n, lt_segments(src, 0));
	uint64_t base = segs.base[segs.n - 1];
	sp_log_seglist_free(&segs);
	lt_seg(last, sizeof(last), dst, 1, base);
	uint64_t len;
	lt_hash_file(last, &len);
	int fd = open(last, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0, "%s", last);
	static const uint8_t torn[30];
	cr_assert_eq(write(fd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
	close(fd);

	/* not readable yet: ls says so, dump and a pipeline see nothing (and produce with
	 * nothing to write opens no writer: docs/log.md says so) */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" produce %s --partition 1 </dev/null && \"$SPATE\" log ls %s",
	         dst, dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "\npartition 0: never opened by a writer (no durable file)\n"), "%s", out);
	cr_assert(strstr(out, "\npartition 1: never opened by a writer (no durable file): its segments are "
	                      "not readable until `spate log publish`\n"),
	          "%s", out);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s", dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd),
	         "\"$SPATE\" run -X source=log:%s -X stop.at.end=true -X handler=noop -X log.level=error",
	         dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(summary_field(out, "records"), 0, "%s", out);
	free(out);
	free(err);

	/* publish partition 1: the torn tail is cut (named with file and byte offset), the rest
	 * is published, and it says what */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log publish %s --partition 1", dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	snprintf(want, sizeof(want),
	         "partition 1: published up to offset 10000 (next), segment %020llu.log, %llu bytes (before: "
	         "never opened by a writer); truncated a torn tail of 30 bytes\n",
	         (unsigned long long)base, (unsigned long long)len);
	cr_assert_str_eq(out, want);
	snprintf(want, sizeof(want), "%s: truncated a torn tail of 30 bytes at byte %llu", last,
	         (unsigned long long)len);
	cr_assert(strstr(err, want), "%s", err);
	free(out);
	free(err);

	/* now ls, dump and a pipeline see every record; partition 0 was left alone */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log ls %s", dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "\npartition 0: never opened by a writer (no durable file)\n"), "%s", out);
	snprintf(want, sizeof(want),
	         "\npartition 1: durable up to offset 10000 (next), segment %020llu.log, %llu bytes\n",
	         (unsigned long long)base, (unsigned long long)len);
	cr_assert(strstr(out, want), "%s", out);
	free(out);
	free(err);
	char *out_src;
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s | sed 's/^0:/1:/'", src);
	cr_assert_eq(sh(cmd, &out_src, &err), 0, "%s", err);
	free(err);
	cr_assert_eq(count_lines(out_src), 10000);
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log dump %s", dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(count_lines(out), 10000);
	cr_assert(!strcmp(out, out_src), "the copy dumps as the original");
	free(out);
	free(out_src);
	free(err);
	snprintf(cmd, sizeof(cmd),
	         "\"$SPATE\" run -X source=log:%s -X stop.at.end=true -X handler=noop -X log.level=error",
	         dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(summary_field(out, "records"), 10000, "%s", out);
	cr_assert_eq(summary_field(out, "failed"), 0, "%s", out);
	free(out);
	free(err);

	/* every partition: 0 is published empty, 1 is unchanged; verify agrees */
	snprintf(cmd, sizeof(cmd), "\"$SPATE\" log publish %s && \"$SPATE\" log verify %s", dst, dst);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	snprintf(want, sizeof(want),
	         "partition 0: published up to offset 0 (next), segment 00000000000000000000.log, 0 bytes "
	         "(before: never opened by a writer)\n"
	         "partition 1: published up to offset 10000 (next), segment %020llu.log, %llu bytes "
	         "(unchanged)\n"
	         "partition 0: ok: 1 segments, 0 batches, 0 records, 0 bytes\n",
	         (unsigned long long)base, (unsigned long long)len);
	cr_assert(!strncmp(out, want, strlen(want)), "%s", out);
	snprintf(want, sizeof(want), "\npartition 1: ok: %zu segments, ", lt_segments(src, 0));
	cr_assert(strstr(out, want), "%s", out);
	cr_assert(strstr(out, " batches, 10000 records, "), "%s", out);
	cr_assert_str_eq(err, "");
	free(out);
	free(err);
	lt_rmrf(src);
	lt_rmrf(dst);
	free(src);
	free(dst);
}

/* Guarantee 6: a run is killed before anything is DONE (the resolved start, offset 0, is
 * saved at once); then the oldest segment is removed (retention). The rerun stops with an
 * error naming the partition, the removed range and the way out, instead of starting at
 * the new first offset and exiting 0. */
Test(log_cli, a_start_that_retention_removed_is_an_error)
{
	char dir[256], cmd[4096];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd),
	         "seq 1 30000 | sed 's/^/record /' | $SPATE produce %s/log --partitions 1 -X segment.bytes=65536 && "
	         "ls %s/log/0/*.log | wc -l",
	         dir, dir);
	char *out = NULL, *err = NULL;
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_gt(atoi(out), 3, "30,000 records made only %s segments", out);
	free(out);
	free(err);
	/* a run that handles nothing: its resolved start is in the store, then it is killed */
	char src[320], st[320], errf[300], store[300];
	snprintf(src, sizeof(src), "source=log:%s/log", dir);
	snprintf(store, sizeof(store), "%s/ckpt", dir);
	snprintf(st, sizeof(st), "store=file:%s", store);
	snprintf(errf, sizeof(errf), "%s/run.err", dir);
	char *argv[] = {(char *)t_spate_cli(), "run", "-X", src, "-X", st, "-X", "handler=sleep:600000", NULL};
	int pid = t_spawn(argv, NULL, errf, 0);
	cr_assert_gt(pid, 0);
	bool saved = false;
	for (int64_t until = t_now_ms() + 30000; !saved && t_now_ms() < until;) {
		char *s = t_read_file(store, NULL);
		saved = s && strstr(s, "log/log/0\tbeginning");
		free(s);
		t_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	int status;
	t_wait_exit(pid, 10000, &status);
	cr_assert(saved, "the resolved start was not saved");
	/* retention: the oldest segment (and its index) goes */
	snprintf(cmd, sizeof(cmd),
	         "rm %s/log/0/00000000000000000000.log %s/log/0/00000000000000000000.index && "
	         "basename $(ls %s/log/0/*.log | head -1) .log",
	         dir, dir, dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	long first = atol(out);
	cr_assert_gt(first, 0);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "$SPATE run -X source=log:%s/log -X store=file:%s -X stop.at.end=true", dir, store);
	int rc = sh(cmd, &out, &err);
	cr_assert_neq(rc, 0, "the rerun exited 0 past removed records: %s%s", out, err);
	char want[128];
	snprintf(want, sizeof(want), "log/log/0: records at offsets 0..%ld were removed", first - 1);
	cr_assert(strstr(err, want), "want \"%s\" in: %s", want, err);
	cr_assert(strstr(err, "spate checkpoint reset"), "the way out is not named: %s", err);
	cr_assert_eq(summary_field(out, "records"), -1, "a run that did not start printed a summary: %s", out);
	free(out);
	free(err);
	t_rmrf(dir);
}

/* The log's default store: with no store key a second run resumes after the first (it
 * handles nothing new); another pipeline.name keeps its own checkpoints; store=none keeps
 * none. Every run says where its checkpoints are. */
Test(log_cli, the_default_store_is_inside_the_log_per_pipeline)
{
	char dir[256], cmd[4096];
	t_mkdtemp(dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd), "seq 1 5000 | $SPATE produce %s/log --partitions 2", dir);
	char *out = NULL, *err = NULL;
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	const char *runs[][2] = {{"", "5000"},                        /* the first run of pipeline noop */
	                         {"", "0"},                           /* resumes: nothing new */
	                         {"-X pipeline.name=audit", "5000"},  /* another pipeline: its own */
	                         {"-X pipeline.name=audit", "0"},
	                         {"-X store=none", "5000"},           /* no checkpoints */
	                         {"-X store=none", "5000"}};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		snprintf(cmd, sizeof(cmd), "$SPATE run -X source=log:%s/log -X stop.at.end=true %s", dir, runs[i][0]);
		cr_assert_eq(sh(cmd, &out, &err), 0, "%s: %s", cmd, err);
		cr_assert_eq(summary_field(out, "records"), atol(runs[i][1]), "run %zu (%s): %s", i, runs[i][0], out);
		if (i < 4) {
			char where[512];
			snprintf(where, sizeof(where), "checkpoints: file:%s/log/checkpoints/%s", dir, i < 2 ? "noop" : "audit");
			cr_assert(strstr(err, where), "run %zu does not say where its checkpoints are (%s): %s", i, where, err);
		}
		free(out);
		free(err);
	}
	/* the pipeline files are the file store's, readable by spate checkpoint show */
	snprintf(cmd, sizeof(cmd), "$SPATE checkpoint show file:%s/log/checkpoints/noop", dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "log/log/0 2499\n") && strstr(out, "log/log/1 2499\n"), "%s", out);
	free(out);
	free(err);
	t_rmrf(dir);
}

/* How many times line (a whole line, without its newline) occurs in text. */
static int line_count(const char *text, const char *line)
{
	int n = 0;
	size_t len = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += len)
		if ((p == text || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0'))
			n++;
	return n;
}

/* Guarantee 5: with no DLQ, a record whose retries are exhausted is dropped, and each
 * drop is logged once, naming the partition, the position and the error, and counted.
 * The poison records' partitions and offsets come from `spate log dump`, so the test
 * does not depend on how keyless lines are placed. One record per batch, so each poison
 * record fails exactly max.retry.attempts + 1 = 2 times. */
Test(log_cli, each_drop_is_logged_naming_partition_position_and_error)
{
	char dir[256], cmd[4096], *out = NULL, *err = NULL;
	t_mkdtemp(dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd),
	         "seq 0 2999 | awk '{ if ($1 %% 100 == 7) print $1 \":poison\"; else print $1 }' | "
	         "$SPATE produce %s/orders --partitions 2",
	         dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "$SPATE log dump %s/orders | grep -F ':poison'", dir);
	char *dump = NULL;
	cr_assert_eq(sh(cmd, &dump, &err), 0, "%s", err);
	free(err);
	cr_assert_eq(count_lines(dump), 30, "%s", dump);
	snprintf(cmd, sizeof(cmd),
	         "$SPATE run -X source=log:%s/orders -X store=none -X stop.at.end=true "
	         "-X handler=fail-if:poison -X report.item.failures=true -X max.retry.attempts=1 "
	         "-X batch.size=1 -X retry.backoff.ms=1 -X retry.backoff.max.ms=2",
	         dir);
	cr_assert_eq(sh(cmd, &out, &err), 0, "%s", err);
	cr_assert_eq(summary_field(out, "records"), 3000, "%s", out);
	cr_assert_eq(summary_field(out, "dropped"), 30, "%s", out);
	cr_assert_eq(summary_field(out, "dlq"), 0, "%s", out);
	/* one line per drop, and no other */
	int drops = 0;
	for (const char *p = err; (p = strstr(p, "dropped ")); p++)
		drops++;
	cr_assert_eq(drops, 30, "%d drop lines, 30 drops:\n%s", drops, err);
	/* each poison record's line names its partition, its position and the error */
	for (const char *l = dump; *l;) {
		int part = -1;
		unsigned long long off = 0;
		cr_assert_eq(sscanf(l, "%d:%llu ", &part, &off), 2, "dump line: %s", l);
		char want[512];
		snprintf(want, sizeof(want),
		         "spate: warn: dropped log/orders/%d position %llu after 2 attempts "
		         "(RetryAttemptsExhausted): value contains \"poison\" (no dlq configured)",
		         part, off);
		cr_assert_eq(line_count(err, want), 1, "want once: %s\nin:\n%s", want, err);
		l = strchr(l, '\n');
		l = l ? l + 1 : "";
	}
	free(dump);
	free(out);
	free(err);
	t_rmrf(dir);
}
