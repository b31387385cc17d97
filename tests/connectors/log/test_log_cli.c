/* test_log_cli.c - `spate produce` and `spate log create|ls|dump|verify` as a user runs
 * them: exit codes, exact output lines, errors that name files and offsets, and that
 * ls, dump and verify change no file. */
#include "tests/common/util.h"
#include "tests/connectors/log/logtest.h"

#include <criterion/criterion.h>
#include <fcntl.h>
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

Test(log_cli, help_for_every_command)
{
	const char *cmds[] = {"log --help",      "log create --help", "log ls --help",
	                      "log dump --help", "log verify --help", "produce --help"};
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
	cr_assert_eq(count_lines(strstr(out, "partition 0: ok")), 3, "%s", out);
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
